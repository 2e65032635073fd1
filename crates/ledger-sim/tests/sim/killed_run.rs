//! A Postgres run killed by a signal (SIGKILL runs no destructor) leaves no throwaway server
//! behind: the cluster's watchdog stops it once the run's process is gone.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_killed_run_leaves_no_server_running() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["run", "--engine", "pg-reference", "--concurrency", "4", "--users", "40", "--steps", "10000000"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "ledger-sim: connecting to postgres://postgres:***@127.0.0.1:PORT/..." names the server.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("@127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().ok());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the run never said which server it connects to within 120 s")
        })
        .expect("a port number");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok(), "the server should be up");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        assert!(killed.elapsed() < Duration::from_secs(60), "the server on port {port} outlived its run by 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}
