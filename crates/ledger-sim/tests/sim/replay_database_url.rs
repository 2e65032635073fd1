//! `replay --database-url`: a pg-seed counterexample found on a given database replays on that
//! database, by the command the run printed, reset first by `run`'s rules (a database holding
//! tables ledger-pg did not create is refused unless `--reset-database`); the URL's password is
//! never printed; a garbled URL is refused before any connection. Needs PostgreSQL and fails
//! (never skips) when a throwaway cluster cannot start.

use std::process::Command;
use std::time::{Duration, Instant};

use ledger_pg::testpg::{TestPg, TimeLimit};

use crate::common::{Ended, Running};

const PASSWORD: &str = "hunter2";

/// How long one child here may run before it is killed and the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// `cmd` run to its end, at most [`CHILD_LIMIT`], without `DATABASE_URL` or `PGPASSWORD`.
fn ended(mut cmd: Command, env: &[(&str, &str)], what: &str) -> Ended {
    cmd.env_remove("DATABASE_URL").env_remove("PGPASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!("{what} did not end within {} s", CHILD_LIMIT.as_secs());
    Running::spawn(&mut cmd).wait(Instant::now(), CHILD_LIMIT, &what)
}

fn sim(args: &[&str], env: &[(&str, &str)]) -> Ended {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-sim"));
    cmd.args(args);
    ended(cmd, env, &format!("ledger-sim {}", args.join(" ")))
}

fn text(out: &Ended) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

/// `command` as a user pastes it, with this build's `ledger-sim` first on the path.
fn shell(command: &str, env: &[(&str, &str)]) -> Ended {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_ledger-sim")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", command]).env("PATH", path);
    ended(cmd, env, command)
}

/// The tables of the `public` schema of the database at `pg`.
fn tables(rt: &tokio::runtime::Runtime, pool: &sqlx::PgPool) -> Vec<String> {
    rt.block_on(
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            .fetch_all(pool),
    )
    .unwrap()
}

/// The line a run or a replay says once before it first resets the database at `url` (shown
/// without its password).
fn announced_reset(url: &str) -> String {
    format!("ledger-sim: resetting the database at {} before each run on it", ledger_pg::redacted(url))
}

/// The password carried by a `postgres://user:password@...` URL (a throwaway cluster's).
fn password_in(url: &str) -> &str {
    let authority = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let userinfo = &authority[..authority.rfind('@').expect("a user")];
    userinfo.split_once(':').expect("a password in the URL").1
}

#[test]
fn a_counterexample_found_on_a_database_url_replays_on_it() {
    let _limit = TimeLimit::new(
        "replay_database_url::a_counterexample_found_on_a_database_url_replays_on_it (a throwaway server, a \
         pg-seed run and replays on it)",
        std::time::Duration::from_secs(600),
    );
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    // The throwaway server's URL carries its password; the replay the run prints leaves it out,
    // and is given it in PGPASSWORD, as the run says.
    let url = pg.url().to_owned();
    let password = password_in(&url).to_owned();
    let bare = url.replacen(&format!(":{password}@"), "@", 1);
    assert_ne!(bare, url);
    let with_password = [("PGPASSWORD", password.as_str())];
    let dir = std::env::temp_dir().join(format!("ledger-sim-replay-url-{}", std::process::id()));
    let dir = dir.to_str().unwrap();
    let out = sim(
        &[
            "run",
            "--engine",
            "pg-seed",
            "--database-url",
            &url,
            "--seed",
            "0",
            "--users",
            "40",
            "--steps",
            "600",
            "--max-replays",
            "20",
            "--json",
            "--trace-dir",
            dir,
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.code, 1, "{all}");
    assert!(!all.contains(&password), "{all}");
    assert!(all.contains("without its password: give it in PGPASSWORD"), "{all}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let first = &report["violations"][0];
    let (invariant, trace) = (first["invariant"].as_str().unwrap(), first["trace"].as_str().unwrap());
    let replay = first["replay"].as_str().unwrap();
    assert_eq!(replay, format!("ledger-sim replay {trace} --database-url {bare}"));

    // The run left ledger-pg's tables; a table of someone else's makes the database one a
    // replay refuses to reset, as a run does, naming it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = rt.block_on(pg.pool()).unwrap();
    rt.block_on(sqlx::raw_sql("CREATE TABLE precious (x int)").execute(&pool)).unwrap();
    let out = shell(replay, &with_password);
    let all = text(&out);
    assert_eq!(out.code, 2, "{all}");
    assert!(all.contains("ledger-pg did not create (table precious)") && all.contains("--reset-database"), "{all}");
    assert!(!all.contains(&announced_reset(&bare)), "a refused replay announces no reset: {all}");
    assert!(tables(&rt, &pool).contains(&"precious".to_owned()), "a refused replay dropped nothing");

    // With --reset-database it replays there, and finds what the run found.
    let out = shell(&format!("{replay} --reset-database --json"), &with_password);
    let all = text(&out);
    assert_eq!(out.code, 1, "{all}");
    let replayed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(replayed["violations"].as_array().unwrap().iter().any(|v| v["invariant"] == invariant), "{all}");
    assert!(all.contains(&announced_reset(&bare)), "{all}");
    let after = tables(&rt, &pool);
    assert!(!after.contains(&"precious".to_owned()) && after.contains(&"timmy_config".to_owned()), "{after:?}");

    // The replay as printed, again: the database now holds ledger-pg's tables only.
    let out = shell(replay, &with_password);
    assert_eq!(out.code, 1, "{}", text(&out));
    // Without the password it cannot connect, and says so without printing one.
    let out = shell(replay, &[]);
    assert_eq!(out.code, 2, "{}", text(&out));

    // Given with its password, which is never printed.
    let out = sim(&["replay", trace, "--database-url", &url], &[]);
    let all = text(&out);
    assert_eq!(out.code, 1, "{all}");
    assert!(!all.contains(&password) && all.contains("postgres://postgres:***@"), "{all}");
    rt.block_on(pool.close());
}

/// What `run --database-url` refuses, `replay --database-url` refuses the same way, before it
/// reads the trace or connects anywhere.
#[test]
fn replay_refuses_a_garbled_database_url_and_a_reset_without_one() {
    let dir = std::env::temp_dir().join(format!("ledger-sim-replay-url-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("no-such-trace.jsonl");
    let trace = trace.to_str().unwrap();
    for (args, says) in [
        (
            vec!["replay", trace, "--database-url", "gar:u:hunter2@x//y"],
            "--database-url \"<unparseable URL, not shown>\": not a PostgreSQL URL",
        ),
        (
            vec!["replay", trace, "--database-url", "mysql://u:hunter2@h/db"],
            "--database-url \"mysql://u:***@h/db\": not a PostgreSQL URL",
        ),
        (
            vec!["replay", trace, "--database-url", "postgres://u:hunter2@127.0.0.1:notaport/db"],
            "--database-url \"postgres://<unparseable URL, not shown>\": not a valid PostgreSQL URL",
        ),
        (vec!["replay", trace, "--reset-database"], "--reset-database needs --database-url"),
    ] {
        let out = sim(&args, &[]);
        let all = text(&out);
        assert_eq!(out.code, 2, "{args:?}: {all}");
        assert!(all.contains(says), "{args:?}: {all}");
        assert!(!all.contains(PASSWORD) && !all.contains("panicked"), "{args:?}: {all}");
        for tried in ["refused", "localhost", "throwaway", "waiting at most", "resetting", "no-such-trace"] {
            assert!(!all.contains(tried), "{args:?}: {all}");
        }
    }
    // A trace of an engine that does not run on PostgreSQL takes no database.
    let seed_trace =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/counterexamples/seed-races/seed-seed0-I4.jsonl");
    let out = sim(&["replay", seed_trace, "--database-url", "postgres://u:hunter2@127.0.0.1:1/db"], &[]);
    let all = text(&out);
    assert_eq!(out.code, 2, "{all}");
    assert!(all.contains("--database-url and --reset-database replay a pg-reference or pg-seed trace"), "{all}");
    assert!(!all.contains(PASSWORD), "{all}");
}

/// A run given a database that holds a table ledger-pg did not create refuses it before it
/// says anything of a reset: the refusal is the first thing said about the database, and the
/// table is kept. Before, stderr said "resetting the database at ..." and then refused. The
/// same database, once the table is gone, is announced and reset as usual.
#[test]
fn a_run_refuses_a_database_holding_a_users_table_before_announcing_a_reset() {
    let _limit = TimeLimit::new(
        "replay_database_url::a_run_refuses_a_database_holding_a_users_table_before_announcing_a_reset (a \
         throwaway server and two short pg-reference runs on it)",
        std::time::Duration::from_secs(420),
    );
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let url = pg.url().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = rt.block_on(pg.pool()).unwrap();
    rt.block_on(sqlx::raw_sql("CREATE TABLE precious (x int)").execute(&pool)).unwrap();
    let dir = std::env::temp_dir().join(format!("ledger-sim-refused-first-{}", std::process::id()));
    let dir = dir.to_str().unwrap();
    let args = [
        "run",
        "--engine",
        "pg-reference",
        "--database-url",
        &url,
        "--seeds",
        "0..1",
        "--users",
        "10",
        "--steps",
        "50",
        "--trace-dir",
        dir,
    ];
    let out = sim(&args, &[]);
    let all = text(&out);
    assert_eq!(out.code, 2, "{all}");
    let refusal = "it holds 1 object(s) ledger-pg did not create (table precious)";
    assert!(out.stderr.contains(refusal), "{all}");
    assert!(!out.stderr.contains(&announced_reset(&url)), "the refusal comes before any reset is announced: {all}");
    assert!(tables(&rt, &pool).contains(&"precious".to_owned()), "a refused run dropped nothing");

    // Without the table, the reset is announced (once) and done.
    rt.block_on(sqlx::raw_sql("DROP TABLE precious").execute(&pool)).unwrap();
    let out = sim(&args, &[]);
    let all = text(&out);
    assert_eq!(out.code, 0, "{all}");
    assert_eq!(out.stderr.matches(&announced_reset(&url)).count(), 1, "{all}");
    assert!(tables(&rt, &pool).contains(&"timmy_config".to_owned()), "the run made ledger-pg's tables");
    rt.block_on(pool.close());
}
