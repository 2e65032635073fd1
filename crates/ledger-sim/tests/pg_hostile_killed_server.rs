//! The database killed (SIGKILL to the postmaster) in the middle of a `ledger-sim run`, as a
//! hostile user or a crashing machine would: the run ends in bounded time with exit 2 and an
//! error that names the database, panics not, writes no counterexample (a lost server is not
//! the engine's fault) and prints no report. Needs PostgreSQL and fails (never skips) when a
//! throwaway cluster cannot start.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger_pg::testpg::{TestPg, TimeLimit};

/// No test here may wait on the server longer than this.
const TIME_LIMIT: Duration = Duration::from_secs(420);

/// The longest the run may take after the kill before the test calls it hung: its own bounds
/// (a connection 5 s, a call 40 s, giving up after `--give-up-after`) are well inside it. A
/// bound on the wait, not a measurement.
const HUNG_AFTER: Duration = Duration::from_secs(240);

/// Waits (at most two minutes) until the run has written `n` movements to the journal of
/// the database at `pg`: it is then in the middle of its first seed.
fn wait_for_traffic(pg: &TestPg, n: i64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let started = Instant::now();
    loop {
        let seen: Option<i64> = rt.block_on(async {
            let mut conn = pg.connect().await.ok()?;
            sqlx::query_scalar("SELECT count(*) FROM pool_journal").fetch_one(&mut conn).await.ok()
        });
        if seen.is_some_and(|seen| seen >= n) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the run never wrote {n} movements");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Ended {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Starts `ledger-sim run --database-url URL args`, kills the server once the run is under
/// way, and waits (at most [`HUNG_AFTER`]) for the run to end.
fn run_and_kill(name: &str, args: &[&str]) -> (Ended, std::path::PathBuf) {
    let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start for this test");
    let traces = std::env::temp_dir().join(format!("ledger-sim-pg-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&traces);
    let traces_arg = traces.display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["run", "--engine", "pg-reference", "--users", "50", "--steps", "2000", "--json"])
        .args(["--database-url", pg.url(), "--trace-dir", &traces_arg])
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ledger-sim");
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    wait_for_traffic(&pg, 200);
    pg.kill_server().expect("SIGKILL to the postmaster");
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for ledger-sim") {
            break status;
        }
        if killed.elapsed() > HUNG_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end after its server was killed; stderr:\n{}", err.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ended = Ended {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("the stdout reader"),
        stderr: err.join().expect("the stderr reader"),
    };
    (ended, traces)
}

fn assert_ended_on_the_lost_server(ended: &Ended, traces: &std::path::Path) {
    let text = &ended.stderr;
    assert_eq!(ended.code, 2, "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains("VIOLATION") && !text.contains("divergence"), "a lost server blamed on the engine:\n{text}");
    assert!(ended.stdout.is_empty(), "a report was printed for a run that failed:\n{}", ended.stdout);
    assert!(
        text.contains("the database at postgres://postgres@127.0.0.1:"),
        "the error must name the database:\n{text}"
    );
    let written: Vec<_> =
        std::fs::read_dir(traces).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(written.is_empty(), "counterexamples were written for a lost server: {written:?}");
}

#[test]
fn a_lockstep_run_ends_with_the_database_named_when_its_server_is_killed() {
    let _limit = TimeLimit::new(
        concat!(module_path!(), "::a_lockstep_run_ends_with_the_database_named_when_its_server_is_killed"),
        TIME_LIMIT,
    );
    let (ended, traces) = run_and_kill("lockstep", &["--seeds", "0..50"]);
    assert_ended_on_the_lost_server(&ended, &traces);
    assert!(ended.stderr.contains("lockstep run"), "{}", ended.stderr);
}

#[test]
fn a_concurrent_run_ends_with_the_database_named_when_its_server_is_killed() {
    let _limit = TimeLimit::new(
        concat!(module_path!(), "::a_concurrent_run_ends_with_the_database_named_when_its_server_is_killed"),
        TIME_LIMIT,
    );
    let (ended, traces) =
        run_and_kill("concurrent", &["--seeds", "0..50", "--concurrency", "32", "--give-up-after", "5"]);
    assert_ended_on_the_lost_server(&ended, &traces);
    assert!(ended.stderr.contains("failed every call for 5 s"), "{}", ended.stderr);
}
