//! What the end-to-end tests of the binary share.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The binary under test.
pub const SIM: &str = env!("CARGO_BIN_EXE_ledger-sim");

/// Runs `ledger-sim ARGS` in `dir` without `DATABASE_URL`: exit code, stdout, stderr.
pub fn sim_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(SIM).args(args).current_dir(dir).env_remove("DATABASE_URL").output().expect("ledger-sim runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
