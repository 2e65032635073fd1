//! A lockstep run on `--database-url` confirms its counterexamples on that server, never on a
//! throwaway cluster of its own beside it (a user without PostgreSQL's programs, or on a
//! managed server, would fail or wait for `initdb`): in a fresh database when the URL's role
//! may create one, else in the given database, reset as before each seed. Each case runs in a
//! child process of this test binary, whose standard error is read: it must not start a
//! cluster. Needs PostgreSQL and fails (never skips) when a throwaway cluster cannot start.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger_pg::testpg::TestPg;
use ledger_pg_runs::{PgArgs, PgRun};
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::EngineKind;
use ledger_simulator::scenario::Scenario;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: Duration = Duration::from_secs(300);
/// How long one child run may take.
const CHILD_LIMIT: Duration = Duration::from_secs(200);

/// The variable that makes [`child_run_on_the_given_url`] run, with its URL.
const CHILD_URL: &str = "LEDGER_PG_RUNS_TEST_CONFIRM_URL";

/// What a cluster start says ([`TestPg`]'s private clusters).
const CLUSTER_START: &str = "starting a throwaway PostgreSQL";

fn fixture(dir: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(dir).join(file)
}

/// The child's half: a lockstep run on the URL in [`CHILD_URL`] with a mutant whose I2 the
/// run confirms; nothing when the variable is not set (a plain `cargo test`).
#[test]
fn child_run_on_the_given_url() {
    let Some(url) = std::env::var(CHILD_URL).ok() else { return };
    let path = fixture("scenarios", "ci-small.toml");
    let text = std::fs::read_to_string(&path).expect("the scenario file");
    let s = Scenario::from_toml_str(&text, &path.display().to_string()).expect("a valid scenario");
    let dir = std::env::temp_dir().join(format!("ledger-sim-pg-confirm-{}", std::process::id()));
    let run = PgRun {
        kind: EngineKind::PgReference,
        scenario: &s,
        scenario_file: Some(&path),
        seeds: (0, 3),
        scheduler: SchedulerKind::Random,
        fail_fast: true,
        trace_dir: &dir,
        // Where it confirms is the point here, not how small the shrink gets.
        max_replays: 20,
        shrink_for: Some(ledger_pg_runs::SHRINK_ON_ENGINE),
        exec: None,
        stop: None,
    };
    let args = PgArgs {
        database_url: Some(url),
        pg_mutant: Some(fixture("pg-mutants", "ledger_record_returns_the_whole_reservation.sql")),
        ..PgArgs::default()
    };
    let r = ledger_pg_runs::run(&run, &args).expect("the run on the given URL finishes");
    let found: Vec<&str> = r.violations.iter().map(|v| v.invariant.as_str()).collect();
    assert!(found.contains(&"I2"), "{found:?}");
    eprintln!("CHILD FOUND {found:?}");
}

/// Runs [`child_run_on_the_given_url`] on `url` in a child process: its exit status and
/// standard error.
fn child(url: &str) -> (bool, String) {
    let exe = std::env::current_exe().expect("this test binary");
    let mut c = Command::new(exe)
        .args(["--exact", "pg_confirm_url::child_run_on_the_given_url", "--nocapture", "--test-threads", "1"])
        .env(CHILD_URL, url)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts");
    let mut err = c.stderr.take().expect("its stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = c.try_wait().expect("waiting for the child") {
            break status;
        }
        if started.elapsed() > CHILD_LIMIT {
            let _ = c.kill();
            let _ = c.wait();
            panic!("the child run did not end within {} s: {}", CHILD_LIMIT.as_secs(), reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.success(), reader.join().expect("the stderr reader"))
}

/// Runs `sql` on the cluster's `postgres` database as its superuser.
fn admin(pg: &TestPg, sql: &str) {
    crate::run_sql(pg.connect_options().database("postgres"), sql);
}

#[test]
fn a_counterexample_is_confirmed_on_the_database_url_server_not_a_cluster_of_its_own() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        format!(
            "{}::a_counterexample_is_confirmed_on_the_database_url_server_not_a_cluster_of_its_own",
            module_path!()
        ),
        TIME_LIMIT,
    );
    let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start");
    let port = pg.connect_options().get_port();

    // A superuser: every replay gets a fresh database on the server.
    let (ok, err) = child(pg.url());
    assert!(ok && err.contains("CHILD FOUND"), "{err}");
    assert!(!err.contains(CLUSTER_START), "no second cluster is started to confirm on:\n{err}");
    let said = format!(
        "confirming the counterexample on the run's server, in a fresh database (dropped after each replay) on {}",
        ledger_pg::redacted(pg.url())
    );
    assert!(err.contains(&said), "it says where it confirms:\n{err}");

    // A role that may not create a database, with a password: the given database, reset.
    let password = "no-one-sees-this-pw";
    admin(&pg, &format!("CREATE ROLE ledger_confirm_owner LOGIN NOCREATEDB PASSWORD '{password}'"));
    admin(&pg, "CREATE DATABASE ledger_confirm_given OWNER ledger_confirm_owner");
    let url = format!("postgres://ledger_confirm_owner:{password}@127.0.0.1:{port}/ledger_confirm_given");
    let (ok, err) = child(&url);
    assert!(ok && err.contains("CHILD FOUND"), "{}", err.replace(password, "<the password>"));
    assert!(!err.contains(password), "the password is never printed:\n{}", err.replace(password, "<the password>"));
    assert!(!err.contains(CLUSTER_START), "no second cluster is started to confirm on:\n{err}");
    let said = format!(
        "confirming the counterexample on the run's database {}, reset before each replay",
        ledger_pg::redacted(&url)
    );
    assert!(err.contains(&said), "it says where it confirms:\n{err}");
}
