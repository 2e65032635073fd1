//! PostgreSQL as a hostile user or a failing machine serves it, in one test binary: a server
//! killed mid-run, a counterexample's printed replay command pasted into a shell, and a
//! "server" that accepts connections and never answers.

use crate::common::{Ended, Running};

mod killed_server {
    //! The database killed (SIGKILL to the postmaster) in the middle of a `ledger-sim run`, as a
    //! hostile user or a crashing machine would: the run ends in bounded time with exit 2 and an
    //! error that names the database, panics not, writes no counterexample (a lost server is not
    //! the engine's fault) and prints no report. Needs PostgreSQL and fails (never skips) when a
    //! throwaway cluster cannot start.

    use std::process::Command;
    use std::time::{Duration, Instant};

    use ledger_pg::testpg::{TestPg, TimeLimit};

    use super::{Ended, Running};

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

    /// Starts `ledger-sim run --database-url URL args`, kills the server once the run is under
    /// way, and waits (at most [`HUNG_AFTER`]) for the run to end.
    fn run_and_kill(name: &str, args: &[&str]) -> (Ended, std::path::PathBuf) {
        let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start for this test");
        let traces = std::env::temp_dir().join(format!("ledger-sim-pg-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&traces);
        let traces_arg = traces.display().to_string();
        let running = Running::spawn(
            Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
                .args(["run", "--engine", "pg-reference", "--users", "50", "--steps", "2000", "--json"])
                .args(["--database-url", pg.url(), "--trace-dir", &traces_arg])
                .args(args)
                .env_remove("DATABASE_URL"),
        );
        wait_for_traffic(&pg, 200);
        pg.kill_server().expect("SIGKILL to the postmaster");
        let ended = running.wait(Instant::now(), HUNG_AFTER, "the run did not end after its server was killed");
        (ended, traces)
    }

    fn assert_ended_on_the_lost_server(ended: &Ended, traces: &std::path::Path) {
        let text = &ended.stderr;
        assert_eq!(ended.code, 2, "{text}");
        assert!(!text.contains("panicked"), "{text}");
        assert!(
            !text.contains("VIOLATION") && !text.contains("divergence"),
            "a lost server blamed on the engine:\n{text}"
        );
        assert!(ended.stdout.is_empty(), "a report was printed for a run that failed:\n{}", ended.stdout);
        assert!(
            text.contains("the database at postgres://postgres:***@127.0.0.1:"),
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
}

mod replay_command {
    //! The replay command a Postgres run prints for its counterexample is pasted into a shell as it
    //! is: it must run, and reproduce the violation. (The command line hands its empty `--exec`
    //! options to every Postgres run; a pg-seed or pg-reference counterexample's command once
    //! ended in `--exec ''`, which `replay` refuses for a trace that is not of an exec engine.)
    //! Needs PostgreSQL and fails (never skips) when a throwaway cluster cannot start.

    use std::process::Command;

    #[test]
    fn a_pg_seed_counterexample_replays_with_the_command_printed() {
        let _limit = ledger_pg::testpg::TimeLimit::new(
            concat!(module_path!(), "::a_pg_seed_counterexample_replays_with_the_command_printed"),
            std::time::Duration::from_secs(420),
        );
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ledger-sim"));
        let traces = std::env::temp_dir().join(format!("ledger-sim-pg-hostile-replay-{}", std::process::id()));
        let out = Command::new(bin)
            .args(["run", "--engine", "pg-seed", "--seeds", "0..1", "--users", "50", "--steps", "2000", "--json"])
            .args(["--fail-fast", "--trace-dir", traces.to_str().expect("a UTF-8 path")])
            .env_remove("DATABASE_URL")
            .output()
            .expect("ledger-sim runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "the seed's bugs must be found:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
        let first = &report["violations"][0];
        let replay = first["replay"].as_str().expect("a replay command");
        assert!(!replay.contains("--exec"), "{replay}");
        // The command as printed, through a shell that finds `ledger-sim` on its PATH.
        let path = format!(
            "{}:{}",
            bin.parent().expect("the binary's directory").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let replayed =
            Command::new("sh").args(["-c", replay]).env("PATH", path).env_remove("DATABASE_URL").output().expect("sh");
        let shown =
            format!("{}{}", String::from_utf8_lossy(&replayed.stdout), String::from_utf8_lossy(&replayed.stderr));
        assert_eq!(replayed.status.code(), Some(1), "`{replay}` must reproduce {}:\n{shown}", first["invariant"]);
        let _ = std::fs::remove_dir_all(&traces);
    }
}

mod silent_server {
    //! A "server" that accepts TCP connections and never says a word (`nc -l` on a port): every
    //! command that waits on a database must give up on it in bounded time, say on stderr what it
    //! waits for, exit 2 naming the server, and never print the URL's password. Needs no
    //! PostgreSQL: the silent server is a listener of the test's own.

    use std::net::TcpListener;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::Running;

    /// The longest any command here may take before the test calls it hung: the commands' own
    /// bounds are at most a minute (a throwaway database's admin connection), so this is a bound on
    /// the wait, not a measurement.
    const HUNG_AFTER: Duration = Duration::from_secs(240);

    const PASSWORD: &str = "Sekr3tPw";

    /// A listener that accepts every connection and keeps it open without reading or writing.
    fn silent_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                // Held, never answered: the client waits for the server's first byte.
                held.extend(conn.ok());
            }
        });
        port
    }

    /// Runs `ledger-sim args` with `env`, waiting at most [`HUNG_AFTER`]; its exit code and stderr.
    fn ledger_sim(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-sim"));
        cmd.args(args).env_remove("DATABASE_URL").current_dir(std::env::temp_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let what = format!("`ledger-sim {}` hung on a server that never answers", args.join(" "));
        let ended = Running::spawn(&mut cmd).wait(Instant::now(), HUNG_AFTER, &what);
        (ended.code, ended.stderr)
    }

    fn assert_bounded_failure(code: i32, text: &str, port: u16) {
        assert_eq!(code, 2, "{text}");
        assert!(!text.contains(PASSWORD), "the password was printed:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "the error must name the server:\n{text}");
        assert!(text.contains("no answer within"), "the error must say the server did not answer:\n{text}");
        assert!(text.contains("waiting at most"), "the wait must be announced:\n{text}");
    }

    #[test]
    fn audit_gives_up_on_a_server_that_never_answers() {
        let port = silent_server();
        let url = format!("postgres://auditor:{PASSWORD}@127.0.0.1:{port}/ledger");
        let (code, text) = ledger_sim(&["audit", "--database-url", &url], &[]);
        assert_bounded_failure(code, &text, port);
    }

    #[test]
    fn a_run_gives_up_on_a_database_url_server_that_never_answers() {
        let port = silent_server();
        let url = format!("postgres://runner:{PASSWORD}@127.0.0.1:{port}/ledger");
        let (code, text) = ledger_sim(
            &[
                "run",
                "--engine",
                "pg-reference",
                "--seeds",
                "0..2",
                "--users",
                "5",
                "--steps",
                "20",
                "--database-url",
                &url,
            ],
            &[],
        );
        assert_bounded_failure(code, &text, port);
    }

    /// `DATABASE_URL` names the server on which each seed gets a fresh database (`TestPg`): making
    /// that database waits on the server too.
    #[test]
    fn a_run_gives_up_on_a_database_url_variable_whose_server_never_answers() {
        let port = silent_server();
        let url = format!("postgres://runner:{PASSWORD}@127.0.0.1:{port}/postgres");
        let (code, text) = ledger_sim(
            &["run", "--engine", "pg-reference", "--seeds", "0..2", "--users", "5", "--steps", "20"],
            &[("DATABASE_URL", &url)],
        );
        assert_bounded_failure(code, &text, port);
    }
}

mod silenced_server {
    //! A server that stops answering in the middle of a run (a postmaster stopped by SIGSTOP, a
    //! lost network): the run reaches a real throwaway cluster through a proxy of the test's own,
    //! which, once the run is under way, stops forwarding and holds every connection (and every
    //! new one) without a word. Every wait of the run on the database is bounded and says on
    //! stderr what it waits for and how long it waits at most, before it gives up: a lockstep run
    //! waited 40 s, a batched run 60 s, without a line. Needs PostgreSQL and fails (never skips)
    //! when a throwaway cluster cannot start.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use ledger_pg::testpg::{TestPg, TimeLimit};

    use super::Running;

    /// No test here may take longer than this.
    const TIME_LIMIT: Duration = Duration::from_secs(420);

    /// The longest the run may take after the server went silent before the test calls it hung:
    /// its own bounds (a statement 40 s, a call 30 s then `--give-up-after`) are well inside it.
    const HUNG_AFTER: Duration = Duration::from_secs(240);

    /// Copies `from` to `to` until `silent`; then holds both, forwarding nothing.
    fn pipe(mut from: TcpStream, mut to: TcpStream, silent: Arc<AtomicBool>) {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if silent.load(Ordering::SeqCst) {
                    // Held, never answered, until the test process ends.
                    let _held = (from, to);
                    loop {
                        std::thread::park();
                    }
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }

    /// A proxy on a loopback port to the server on `upstream`, and the switch that silences it.
    fn proxy(upstream: u16) -> (u16, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let silent = Arc::new(AtomicBool::new(false));
        let switch = Arc::clone(&silent);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for client in listener.incoming().flatten() {
                if silent.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
                pipe(client, server, Arc::clone(&silent));
                pipe(s2, c2, Arc::clone(&silent));
            }
        });
        (port, switch)
    }

    /// Waits (at most two minutes) until the database at `pg` has `n` movements in its journal.
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
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `ledger-sim run --engine pg-reference args` through the proxy, silences it once the
    /// run has written some movements, and returns the run's exit code and stderr.
    fn run_and_silence(args: &[&str]) -> (i32, String) {
        let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start for this test");
        let upstream: u16 =
            pg.url().rsplit(':').next().and_then(|p| p.split('/').next()?.parse().ok()).expect("a port");
        let (port, silent) = proxy(upstream);
        // The cluster's own URL (its password with it), through the proxy's port.
        let url = pg.url().replacen(&format!("@127.0.0.1:{upstream}/"), &format!("@127.0.0.1:{port}/"), 1);
        assert_ne!(url, pg.url(), "the URL goes through the proxy");
        let running = Running::spawn(
            Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
                .args(["run", "--engine", "pg-reference", "--users", "50", "--steps", "4000", "--seeds", "0..50"])
                .args(["--database-url", &url])
                .args(args)
                .env_remove("DATABASE_URL"),
        );
        wait_for_traffic(&pg, 100);
        silent.store(true, Ordering::SeqCst);
        let ended = running.wait(Instant::now(), HUNG_AFTER, "the run did not end after its server went silent");
        (ended.code, ended.stderr)
    }

    /// The run ended on the silent server, and said what it waited for before it gave up.
    fn assert_announced_then_gave_up(code: i32, text: &str) {
        assert_eq!(code, 2, "{text}");
        assert!(!text.contains("panicked"), "{text}");
        let said = text.find("waiting for the database to answer");
        let gave_up = text.find("error:");
        assert!(said.is_some(), "the wait on the silent server was never said:\n{text}");
        assert!(gave_up.is_some(), "the run must end with an error:\n{text}");
        assert!(said < gave_up, "the wait was said only after it was given up:\n{text}");
        assert!(text.contains("no answer"), "the error must say the server did not answer:\n{text}");
    }

    #[test]
    fn a_lockstep_run_says_what_it_waits_for_when_its_server_goes_silent() {
        let _limit = TimeLimit::new(
            concat!(module_path!(), "::a_lockstep_run_says_what_it_waits_for_when_its_server_goes_silent"),
            TIME_LIMIT,
        );
        let (code, text) = run_and_silence(&[]);
        assert_announced_then_gave_up(code, &text);
    }

    #[test]
    fn a_batched_run_says_what_it_waits_for_when_its_server_goes_silent() {
        let _limit = TimeLimit::new(
            concat!(module_path!(), "::a_batched_run_says_what_it_waits_for_when_its_server_goes_silent"),
            TIME_LIMIT,
        );
        let (code, text) = run_and_silence(&["--concurrency", "8", "--batch-lanes", "2", "--give-up-after", "5"]);
        assert_announced_then_gave_up(code, &text);
        assert!(text.contains("a batch of"), "the batch's wait must be said:\n{text}");
    }
}

mod pg_bin {
    //! `PG_BIN` names the one directory the throwaway cluster's programs come from: one that does
    //! not hold them is an error naming it, not a quiet fall back to the machine's PostgreSQL.

    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::Running;

    #[test]
    fn a_run_with_a_pg_bin_that_holds_no_postgresql_is_refused_naming_it() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-sim"));
        cmd.args(["run", "--engine", "pg-reference", "--seeds", "0..1", "--users", "5", "--steps", "20"])
            .env_remove("DATABASE_URL")
            .env("PG_BIN", "/nonexistent/pg/bin");
        let ended = Running::spawn(&mut cmd).wait(Instant::now(), Duration::from_secs(240), "the run hung");
        assert_eq!(ended.code, 2, "{}", ended.stderr);
        assert!(
            ended.stderr.contains("PG_BIN is set to \"/nonexistent/pg/bin\", which holds no PostgreSQL program initdb"),
            "{}",
            ended.stderr
        );
        assert!(!ended.stderr.contains("starting a throwaway PostgreSQL"), "{}", ended.stderr);
    }
}
