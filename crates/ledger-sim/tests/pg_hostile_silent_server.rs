//! A "server" that accepts TCP connections and never says a word (`nc -l` on a port): every
//! command that waits on a database must give up on it in bounded time, say on stderr what it
//! waits for, exit 2 naming the server, and never print the URL's password. Needs no
//! PostgreSQL: the silent server is a listener of the test's own.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("ledger-sim");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for ledger-sim") {
            break status;
        }
        if started.elapsed() > HUNG_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!("`ledger-sim {}` hung on a server that never answers; its stderr:\n{text}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = reader.join().expect("the stderr reader");
    (status.code().unwrap_or(-1), text)
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
