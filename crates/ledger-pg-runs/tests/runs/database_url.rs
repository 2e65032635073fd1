//! A database the user names, by `--database-url` or `DATABASE_URL`: what a run may drop from
//! it, what it keeps, and who else may use it meanwhile.

use std::process::Command;

use clap::{Args as _, FromArgMatches as _};
use ledger_pg_runs::{AuditArgs, PgArgs, PgRun};
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::EngineKind;
use ledger_simulator::scenario::Scenario;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

/// Set in the environment of a copy of this test binary that runs one test's child part.
const CHILD: &str = "LEDGER_PG_RUNS_TEST_CHILD";

/// A small lockstep run of pg-reference on `args`.
fn try_run(args: &PgArgs, name: &str) -> anyhow::Result<ledger_simulator::report::RunReport> {
    lockstep_run(args, name, 60, (0, 1), None)
}

/// A lockstep run of pg-reference on `args` of `n_steps` a seed over `seeds`, which `stop`,
/// when given, ends at its next seed.
fn lockstep_run(
    args: &PgArgs,
    name: &str,
    n_steps: u64,
    seeds: (u64, u64),
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ledger_simulator::report::RunReport> {
    let scenario = Scenario { n_users: 10, n_steps, max_in_flight: 16, ..Scenario::default() };
    let dir = std::env::temp_dir().join(format!("ledger-sim-pg-test-{}-{name}", std::process::id()));
    let run = PgRun {
        kind: EngineKind::PgReference,
        scenario: &scenario,
        scenario_file: None,
        seeds,
        scheduler: SchedulerKind::Random,
        fail_fast: false,
        trace_dir: &dir,
        max_replays: 10,
        shrink_for: Some(ledger_pg_runs::SHRINK_ON_ENGINE),
        exec: None,
        stop,
    };
    ledger_pg_runs::run(&run, args)
}

/// `ledger-sim audit` with `flags`.
fn audit(flags: &[&str]) -> anyhow::Result<bool> {
    let cmd = AuditArgs::augment_args(clap::Command::new("audit"));
    let matches = cmd.try_get_matches_from(std::iter::once("audit").chain(flags.iter().copied()))?;
    ledger_pg_runs::audit_cmd(&AuditArgs::from_arg_matches(&matches)?)
}

/// Runs the test `name` of this binary again in a process of its own, with `env` set (and
/// [`CHILD`]), and asserts that it passed there: for what a test cannot set in its own
/// process, where the other tests run in parallel. Its output.
fn in_child(name: &str, env: &[(&str, std::ffi::OsString)]) -> String {
    let exe = std::env::current_exe().expect("this test binary");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"]).env(CHILD, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the test binary runs again");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the child part of {name} failed:\n{text}");
    text
}

/// A `DATABASE_URL` that is not UTF-8 is refused, naming the variable, by a run and by
/// `audit`. Before, both read it as unset: the run went to a throwaway cluster of its own and
/// the audit said DATABASE_URL was not set.
#[test]
fn a_database_url_that_is_not_utf8_is_refused() {
    let name = "database_url::a_database_url_that_is_not_utf8_is_refused";
    if std::env::var_os(CHILD).is_none() {
        let _limit = ledger_pg::testpg::TimeLimit::new(name, TIME_LIMIT);
        use std::os::unix::ffi::OsStringExt;
        let bad = std::ffi::OsString::from_vec(b"postgres://u@127.0.0.1:1/caf\xe9".to_vec());
        in_child(name, &[("DATABASE_URL", bad)]);
        return;
    }
    let err = try_run(&PgArgs::default(), "not-utf8").expect_err("a run must refuse it");
    assert!(format!("{err:#}").contains("DATABASE_URL is not valid UTF-8"), "{err:#}");
    let err = audit(&[]).expect_err("the audit must refuse it");
    assert!(format!("{err:#}").contains("DATABASE_URL is not valid UTF-8"), "{err:#}");
}

/// An empty `DATABASE_URL` names no server: it is taken as unset, and said so.
#[test]
fn an_empty_database_url_is_taken_as_unset() {
    let name = "database_url::an_empty_database_url_is_taken_as_unset";
    if std::env::var_os(CHILD).is_none() {
        let _limit = ledger_pg::testpg::TimeLimit::new(name, TIME_LIMIT);
        let text = in_child(name, &[("DATABASE_URL", "".into())]);
        assert!(text.contains("DATABASE_URL is set but empty: ignored, as if unset"), "{text}");
        return;
    }
    let err = audit(&[]).expect_err("the audit has no database");
    assert_eq!(format!("{err:#}"), "audit needs --database-url URL (or DATABASE_URL)");
}

/// The first column of every row `sql` returns on the database `opts` names, as text.
fn texts(opts: sqlx::postgres::PgConnectOptions, sql: &str) -> Vec<String> {
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            let rows: Vec<Option<String>> =
                sqlx::query_scalar(&sql).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.expect("close");
            rows.into_iter().map(|r| r.unwrap_or_else(|| "NULL".to_owned())).collect()
        })
    })
    .join()
    .expect("the SQL thread")
}

/// A database holding a user's objects of any kind is refused, naming them, and kept: tables
/// named as ledger-pg's (`requests`, `identities`, `ledger_config`) with rows, a sequence, a
/// function, an enum type, and a view in another schema that reads a table of `public`.
/// Before, only table names were checked: all of these were dropped, and the run exited 0.
/// `--reset-database` drops them; a database of ledger-pg's own objects is reset without
/// asking; one where a user added a function to ledger-pg's is refused again.
#[test]
fn a_database_holding_a_users_objects_of_any_kind_is_refused_and_kept() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_database_holding_a_users_objects_of_any_kind_is_refused_and_kept"),
        TIME_LIMIT,
    );
    let pg = ledger_pg::testpg::TestPg::new().expect("a throwaway PostgreSQL must start");
    let users = "CREATE TABLE requests (note text); INSERT INTO requests VALUES ('keep me'); \
                 CREATE TABLE identities (email text); INSERT INTO identities VALUES ('a@example.com'); \
                 CREATE TABLE ledger_config (k text, v text); INSERT INTO ledger_config VALUES ('mine', 'too'); \
                 CREATE SEQUENCE invoice_no; \
                 CREATE FUNCTION my_total() RETURNS int LANGUAGE sql AS 'SELECT 1'; \
                 CREATE TYPE mood AS ENUM ('ok'); \
                 CREATE SCHEMA reports; CREATE VIEW reports.notes AS SELECT note FROM requests;";
    crate::run_sql(pg.connect_options(), users);
    let kept = |pg: &ledger_pg::testpg::TestPg| {
        texts(
            pg.connect_options(),
            "SELECT concat_ws(' ', (SELECT note FROM requests), (SELECT email FROM identities), \
             (SELECT v FROM ledger_config), to_regclass('invoice_no'), to_regproc('my_total'), to_regtype('mood'), \
             to_regclass('reports.notes'))",
        )
    };
    let all_kept = ["keep me a@example.com too invoice_no my_total mood reports.notes".to_owned()];
    let args = PgArgs { database_url: Some(pg.url().to_owned()), ..PgArgs::default() };
    let err = try_run(&args, "users-objects").expect_err("a database with a user's objects must be refused");
    let msg = format!("{err:#}");
    for name in [
        "table requests",
        "table identities",
        "table ledger_config",
        "sequence invoice_no",
        "function my_total()",
        "type mood",
        "view reports.notes",
        "--reset-database",
    ] {
        assert!(msg.contains(name), "the refusal names {name}: {msg}");
    }
    assert_eq!(kept(&pg), all_kept, "the user's objects were dropped");

    let reset = PgArgs { reset_database: true, ..args.clone() };
    let r = try_run(&reset, "users-objects").expect("--reset-database runs");
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    let gone = texts(
        pg.connect_options(),
        "SELECT concat_ws(' ', to_regclass('invoice_no'), to_regproc('my_total'), to_regtype('mood'), \
         to_regclass('reports.notes'), (SELECT count(*) FROM pg_attribute \
             WHERE attrelid = 'requests'::regclass AND attname = 'note'))",
    );
    assert_eq!(gone, ["0"], "--reset-database drops everything");
    // ledger-pg's own objects (the run above made them) are reset without asking.
    try_run(&args, "users-objects").expect("ledger-pg's own objects are reset without asking");
    // A function a user added beside them is not.
    crate::run_sql(pg.connect_options(), "CREATE FUNCTION my_total() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    let err = try_run(&args, "users-objects").expect_err("a user's function must be refused");
    assert!(format!("{err:#}").contains("function my_total()"), "{err:#}");
}

/// A live ledger that a service made with `ledger_pg::migrate` holds exactly ledger-pg's
/// objects; a run on it is refused while its tables hold rows, naming them and saying why, and
/// the rows are kept, unless `--reset-database` is given. The harness's own reset leaves a sign
/// (`ledger_sim_reset`), and a database that carries it is reset without asking, as before, rows
/// and all; an empty one that a service migrated is reset without asking too. Before, a run reset
/// the live ledger with one line on stderr.
#[test]
fn a_live_ledger_made_by_migrate_is_refused_unless_reset_database() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_live_ledger_made_by_migrate_is_refused_unless_reset_database"),
        TIME_LIMIT,
    );
    let pg = ledger_pg::testpg::TestPg::new().expect("a throwaway PostgreSQL must start");
    let opts = pg.connect_options();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use ledger_core::{Command as LedgerCommand, Config, Sats, Tier, TimeMs};
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
            ledger_pg::migrate(&pool).await.expect("migrate");
            ledger_pg::reference::genesis(&pool, &Config::default(), TimeMs(0)).await.expect("genesis");
            let pubkey = ledger_harness::user_pubkey(1);
            let cmd = LedgerCommand::SetTier { pubkey, tier: Tier::Elite };
            ledger_pg::reference::apply(&pool, &cmd, TimeMs(1)).await.expect("set_tier");
            let rid = ledger_core::RequestId(1);
            let cmd = LedgerCommand::Decide { request_id: rid, pubkey, estimated_sats: Sats::new(100).unwrap() };
            ledger_pg::reference::apply(&pool, &cmd, TimeMs(2)).await.expect("decide");
            pool.close().await;
        })
    })
    .join()
    .expect("the service's thread");
    let kept = |pg: &ledger_pg::testpg::TestPg| {
        texts(
            pg.connect_options(),
            "SELECT concat_ws(' ', (SELECT count(*) FROM ledger_config), (SELECT count(*) FROM identities), \
             (SELECT count(*) FROM requests))",
        )
    };
    let live = ["1 1 1".to_owned()];
    assert_eq!(kept(&pg), live);
    let args = PgArgs { database_url: Some(pg.url().to_owned()), ..PgArgs::default() };
    let err = try_run(&args, "live-ledger").expect_err("a live ledger must be refused");
    let msg = format!("{err:#}");
    for said in [
        "it holds a ledger's data in ledger-pg's tables (",
        "identities: 1 row",
        "ledger_config: 1 row",
        "requests: 1 row",
        "no sign that a ledger-sim run reset it before",
        "ledger_pg::migrate",
        "--reset-database",
    ] {
        assert!(msg.contains(said), "the refusal says {said:?}: {msg}");
    }
    assert!(!msg.contains("_sqlx_migrations") && !msg.contains("ledger_pg_objects"), "{msg}");
    assert_eq!(kept(&pg), live, "the live ledger's rows were dropped");

    // Told to, it resets it; and, the sign left, the next run resets it without asking.
    let reset = PgArgs { reset_database: true, ..args.clone() };
    try_run(&reset, "live-ledger").expect("--reset-database runs");
    assert_eq!(
        texts(pg.connect_options(), "SELECT note FROM ledger_sim_reset"),
        ["ledger-sim reset this database before a run on it (--database-url): a later run resets it again, \
          dropping everything in its public schema, without asking"
            .to_owned()]
    );
    try_run(&args, "live-ledger").expect("a database the harness reset is reset without asking");
    try_run(&args, "live-ledger").expect("again");
    // Without the sign (its row gone), it is a database of someone else's again.
    crate::run_sql(pg.connect_options(), "DELETE FROM ledger_sim_reset");
    try_run(&args, "live-ledger").expect_err("a database without the sign, holding rows, is refused");

    // A migrated database whose tables hold no rows loses nothing: reset without asking.
    let empty = ledger_pg::testpg::TestPg::new().expect("a throwaway PostgreSQL must start");
    let opts = empty.connect_options();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
            ledger_pg::migrate(&pool).await.expect("migrate");
            pool.close().await;
        })
    })
    .join()
    .expect("the migration's thread");
    let args = PgArgs { database_url: Some(empty.url().to_owned()), ..PgArgs::default() };
    try_run(&args, "empty-ledger").expect("an empty migrated database is reset without asking");
}

/// A run's reset keeps the `public` schema's owner and privileges (on PostgreSQL 15,
/// `pg_database_owner` and `USAGE` for PUBLIC), so a role that may only read can still audit.
/// Before, the schema was dropped and made again: owned by the run's role, no `USAGE` for
/// anyone else, and the read-only role's audit failed.
#[test]
fn a_run_keeps_the_public_schemas_owner_and_privileges() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_run_keeps_the_public_schemas_owner_and_privileges"),
        TIME_LIMIT,
    );
    // A cluster of its own: the test makes a role.
    let pg = ledger_pg::testpg::TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start");
    let schema = |pg: &ledger_pg::testpg::TestPg| {
        texts(
            pg.connect_options(),
            "SELECT nspowner::regrole::text || ' ' || coalesce(nspacl::text, 'default') FROM pg_namespace \
             WHERE nspname = 'public'",
        )
    };
    let before = schema(&pg);
    let args = PgArgs { database_url: Some(pg.url().to_owned()), ..PgArgs::default() };
    try_run(&args, "schema-privileges").expect("the first run");
    try_run(&args, "schema-privileges").expect("a run that resets the first one's objects");
    assert_eq!(schema(&pg), before, "the public schema's owner and privileges");

    crate::run_sql(
        pg.connect_options(),
        "CREATE ROLE ledger_reader LOGIN PASSWORD 'reader-pw'; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO ledger_reader",
    );
    let port = pg.connect_options().get_port();
    let url = format!("postgres://ledger_reader:reader-pw@127.0.0.1:{port}/{}", pg.database_name());
    let clean = audit(&["--database-url", &url]).expect("the read-only role audits");
    assert!(clean, "no invariant broke");
}

/// The advisory lock a ledger-sim run holds on a database it was given.
const RUN_LOCK_KEY: i64 = i64::from_be_bytes(*b"ledgrsim");

/// Two runs on one `--database-url` reset each other's tables before each seed and reported
/// each other's data as violations (I3, I4, I7, divergences). A run now holds an advisory lock
/// on the database for its whole run: a second run is refused at once, naming the database
/// and the holder, and so is an audit (which would judge half-made books); once the run ends,
/// both may go. The holder may be a run of another machine: the lock is the server's.
#[test]
fn a_second_run_on_a_database_in_use_is_refused_at_once_and_so_is_an_audit() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_second_run_on_a_database_in_use_is_refused_at_once_and_so_is_an_audit"),
        TIME_LIMIT,
    );
    let pg = ledger_pg::testpg::TestPg::new().expect("a throwaway PostgreSQL must start");
    let args = PgArgs { database_url: Some(pg.url().to_owned()), ..PgArgs::default() };
    let shown = ledger_pg::redacted(pg.url());
    let holding = |pid: &str| {
        texts(
            pg.connect_options(),
            &format!(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ({RUN_LOCK_KEY}::bigint >> 32)::oid \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND l.objid = ({RUN_LOCK_KEY}::bigint & 4294967295)::oid AND a.application_name LIKE '%{pid}%'"
            ),
        )
    };

    // A run of this process, stopped once the checks are made.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| lockstep_run(&args, "in-use", 200, (0, 10_000), Some(&stop)));
        // The first run stops at its next seed however this ends, so that a failed check
        // below fails the test instead of waiting for 10,000 seeds.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stopping = StopOnDrop(&stop);
        let me = format!("(pid {})", std::process::id());
        let waited = std::time::Instant::now();
        while holding(&me).is_empty() {
            assert!(waited.elapsed() < std::time::Duration::from_secs(60), "the first run never took its lock");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let started = std::time::Instant::now();
        let err = try_run(&args, "in-use").expect_err("a second run on a database in use must be refused");
        let msg = format!("{err:#}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "refused at once: {:?}", started.elapsed());
        for said in [
            format!("the database at {shown} is in use by another ledger-sim run"),
            format!("application_name \"ledger-sim run {me}\""),
            "server process ".to_owned(),
        ] {
            assert!(msg.contains(&said), "the refusal says {said:?}: {msg}");
        }
        let err = audit(&["--database-url", pg.url()]).expect_err("an audit during a run must be refused");
        let msg = format!("{err:#}");
        assert!(msg.contains("a ledger-sim run is using this database") && msg.contains(&me), "{msg}");
        drop(stopping);
        let r = first.join().expect("the first run's thread").expect("the first run ends well");
        assert!(r.violations.is_empty(), "the first run was not disturbed: {:#?}", r.violations);
    });
    assert!(holding("").is_empty(), "the run let go of the database");
    audit(&["--database-url", pg.url()]).expect("an audit after the run");

    // A lock held by a run elsewhere (any session of the server) keeps this run out too.
    let other = std::thread::spawn({
        let opts = pg.connect_options().application_name("ledger-sim run (pid 4242)");
        move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect_with(&opts).await.unwrap();
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(RUN_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                assert!(taken);
                conn
            })
        }
    })
    .join()
    .unwrap();
    let err = try_run(&args, "in-use").expect_err("a run while another holds the database");
    assert!(format!("{err:#}").contains("application_name \"ledger-sim run (pid 4242)\""), "{err:#}");
    drop(other);
}
