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
    let shown = format!("{}{}", String::from_utf8_lossy(&replayed.stdout), String::from_utf8_lossy(&replayed.stderr));
    assert_eq!(replayed.status.code(), Some(1), "`{replay}` must reproduce {}:\n{shown}", first["invariant"]);
    let _ = std::fs::remove_dir_all(&traces);
}
