//! What the end-to-end tests of the binary share.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub const SIM: &str = env!("CARGO_BIN_EXE_ledger-sim");

/// How long one `ledger-sim` of these tests may run before it is killed and its test fails
/// with its stderr: no test waits forever on a child that hangs.
pub const CHILD_LIMIT: Duration = Duration::from_secs(300);

/// Runs `ledger-sim ARGS` in `dir` without `DATABASE_URL`: exit code, stdout, stderr. At most
/// [`CHILD_LIMIT`].
pub fn sim_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    sim_in_within(dir, args, CHILD_LIMIT)
}

/// [`sim_in`] with a bound of its own: past `limit` the child is killed and the test fails,
/// saying so, with the child's stderr.
pub fn sim_in_within(dir: &Path, args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut cmd = Command::new(SIM);
    cmd.args(args).current_dir(dir).env_remove("DATABASE_URL");
    let what = format!("ledger-sim {} did not end within {} s", args.join(" "), limit.as_secs());
    let ended = Running::spawn(&mut cmd).wait(Instant::now(), limit, &what);
    (ended.code, ended.stdout, ended.stderr)
}

/// [`sim_in_within`] with `env` set in the environment of `ledger-sim` (and `DATABASE_URL`
/// removed unless `env` sets it).
pub fn sim_env_within(dir: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> (i32, String, String) {
    let mut cmd = Command::new(SIM);
    cmd.args(args).current_dir(dir).env_remove("DATABASE_URL").envs(env.iter().copied());
    let what = format!("ledger-sim {} did not end within {} s", args.join(" "), limit.as_secs());
    let ended = Running::spawn(&mut cmd).wait(Instant::now(), limit, &what);
    (ended.code, ended.stdout, ended.stderr)
}

/// The repository's root.
pub fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// `text` as JSON, or a failure that shows it.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A fresh directory for one test's files.
pub fn scratch(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ledger-sim-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

/// `ledger-sim serve` behind a `sed` filter that rewrites its answers: an implementation with
/// one realistic bug, for the harness to catch.
pub fn broken(sed: &str) -> String {
    format!("'{SIM}' serve | sed -u '{sed}'")
}

/// A started `ledger-sim` whose stdout and stderr are read on threads of their own (so a full
/// pipe never stalls it). Dropped before [`Running::wait`] (a test that panicked first), it
/// kills the process, so that a failed test leaves nothing running.
pub struct Running {
    child: Child,
    output: Option<(JoinHandle<String>, JoinHandle<String>)>,
}

/// How a `ledger-sim` ended: its exit code (-1 when killed by a signal) and what it printed.
pub struct Ended {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    /// Starts `cmd` with no stdin and its stdout and stderr piped to the readers.
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ledger-sim");
        let stdout = read_all(child.stdout.take().expect("piped stdout"));
        let stderr = read_all(child.stderr.take().expect("piped stderr"));
        Running { child, output: Some((stdout, stderr)) }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the end, at most `limit` from `since`: past it, kills the child and panics
    /// with `what` and its stderr.
    pub fn wait(mut self, since: Instant, limit: Duration, what: &str) -> Ended {
        let (stdout, stderr) = self.output.take().expect("waited for once");
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for ledger-sim") {
                break status;
            }
            if since.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{what}; its stderr:\n{}", stderr.join().unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ended {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().expect("the stdout reader"),
            stderr: stderr.join().expect("the stderr reader"),
        }
    }
}

impl Running {
    /// [`Running::wait`], watching the child's peak resident memory (`VmHWM` of its
    /// `/proc/PID/status`, read every few milliseconds until it ends; a peak only grows): past
    /// `bound_kb` the child is killed and the test fails, saying so, long before a run whose
    /// memory grows without bound takes the machine's. How it ended, and its peak in kB.
    #[cfg(target_os = "linux")]
    pub fn wait_watching_memory(mut self, since: Instant, limit: Duration, bound_kb: u64, what: &str) -> (Ended, u64) {
        let status_file = format!("/proc/{}/status", self.child.id());
        let mut peak = 0;
        loop {
            let hwm = std::fs::read_to_string(&status_file).ok().and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            });
            peak = peak.max(hwm.unwrap_or(0));
            if peak > bound_kb {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (_, stderr) = self.output.take().expect("waited for once");
                panic!(
                    "{what}: its peak resident memory reached {peak} kB, over the bound of {bound_kb} kB; it was \
                     killed; its stderr:\n{}",
                    stderr.join().unwrap_or_default()
                );
            }
            if self.child.try_wait().expect("waiting for ledger-sim").is_some() {
                return (self.wait(since, limit, what), peak);
            }
            if since.elapsed() > limit {
                return (self.wait(since, limit, what), peak);
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.output.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}
