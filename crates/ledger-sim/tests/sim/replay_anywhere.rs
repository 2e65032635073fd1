//! Where a finding's replay command works: the report with `--json` and `--junit` names the
//! trace relative to the directory the run started in (the same bytes from any directory), and
//! the command printed for a person (the text report's `replay:`, stderr with `--json`) works
//! pasted into a shell in any directory, an `--exec` command's own relative paths included.
//! Also the flags `replay` and `run` refuse, naming the flag given and the engines that take it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{json, root, scratch, sim_in, Running, SIM};

/// Runs `line` with `sh -c` in `dir`, `ledger-sim` on the PATH, at most two minutes.
fn pasted(dir: &Path, line: &str) -> (i32, String, String) {
    let bin = Path::new(SIM).parent().unwrap().display().to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", line]).current_dir(dir).env("PATH", path).env_remove("DATABASE_URL");
    let ended = Running::spawn(&mut cmd).wait(Instant::now(), Duration::from_secs(120), line);
    (ended.code, ended.stdout, ended.stderr)
}

/// The value after `label` on the first line that has it.
fn labelled<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines().find_map(|l| l.trim_start().strip_prefix(label)).unwrap_or_else(|| panic!("{label} in {text}")).trim()
}

#[test]
fn a_report_is_the_same_bytes_from_any_directory_and_its_replay_works_from_anywhere() {
    let scenario = root().join("fixtures/scenarios/seed-races.toml");
    let scenario = scenario.to_str().unwrap();
    let (a, b) = (scratch("anywhere-a"), scratch("anywhere-b"));
    let mut reports = Vec::new();
    for dir in [&a, &b] {
        let args = ["run", "--engine", "seed", "--scenario", scenario, "--seeds", "2..3", "--json", "--junit", "j.xml"];
        let (code, out, err) = sim_in(Path::new(dir), &args);
        assert_eq!(code, 1, "{out}{err}");
        let mut r = json(&out);
        r.as_object_mut().unwrap().remove("steps_per_sec");
        let junit = std::fs::read_to_string(Path::new(dir).join("j.xml")).unwrap();
        reports.push((r, junit, err));
    }
    assert_eq!(reports[0].0, reports[1].0, "the report depends on the directory");
    assert_eq!(reports[0].1, reports[1].1, "the JUnit file depends on the directory");
    let first = &reports[0].0["violations"][0];
    let trace = first["trace"].as_str().unwrap();
    assert!(Path::new(trace).is_relative(), "{first}");
    assert_eq!(first["replay"].as_str().unwrap(), format!("ledger-sim replay {trace}"));
    assert!(!reports[0].1.contains(&a), "{}", reports[0].1);
    // Stderr gives the command that works pasted anywhere.
    let err = &reports[0].2;
    let line = err.lines().find(|l| l.contains("from any directory: ")).unwrap_or_else(|| panic!("{err}"));
    let command = line.split_once("from any directory: ").unwrap().1;
    assert_eq!(command, format!("ledger-sim replay {a}/{trace}"));
    let (code, out, err) = pasted(&std::env::temp_dir(), command);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("VIOLATION"), "{out}");
}

/// A Python service whose pool starts one sat high: the final sweep alone shows it, so the
/// counterexample shrinks to no flow and no event. It is called shrunk (not a concurrent
/// finding), and its replay, `--exec 'python3 adapter.py'` relative to the run's directory,
/// works pasted anywhere.
#[test]
fn an_exec_counterexample_of_nothing_is_shrunk_and_replays_from_anywhere() {
    let dir = scratch("anywhere-python");
    for file in ["adapter.py", "ledger.py"] {
        std::fs::copy(root().join("examples/python-reference").join(file), Path::new(&dir).join(file)).unwrap();
    }
    let ledger = Path::new(&dir).join("ledger.py");
    let source = std::fs::read_to_string(&ledger).unwrap();
    let planted = "        self.pool = self.pool_initial\n";
    assert!(source.contains(planted), "the Python reference still sets its pool so");
    std::fs::write(&ledger, source.replace(planted, "        self.pool = self.pool_initial + 1\n")).unwrap();
    let scenario = root().join("fixtures/scenarios/ci-small.toml");
    let args = [
        "run",
        "--engine",
        "exec",
        "--exec",
        "python3 adapter.py",
        "--scenario",
        scenario.to_str().unwrap(),
        "--seeds",
        "0..1",
        "--max-replays",
        "200",
    ];
    let (code, out, err) = sim_in(Path::new(&dir), &args);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("  shrunk to 0 flow(s), 0 event(s):"), "{out}");
    assert!(!out.contains("real concurrency") && !out.contains("has no replay"), "{out}");
    assert!(out.contains("next: run a replay command above"), "{out}");
    let replay = labelled(&out, "replay:");
    assert!(replay.starts_with(&format!("(cd {dir} && ledger-sim replay target/")), "{replay}");
    assert!(replay.ends_with(" --exec 'python3 adapter.py')"), "{replay}");
    let (code, replayed, err) = pasted(&std::env::temp_dir(), replay);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(replayed.contains("VIOLATION I2"), "{replayed}");
    // The JSON report holds it relative to the run's directory.
    let (code, out, err) = sim_in(Path::new(&dir), &[&args[..], &["--json"]].concat());
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let first = &r["violations"][0];
    assert_eq!(first["reduction"], "shrunk", "{first}");
    assert_eq!(
        first["replay"].as_str().unwrap(),
        format!("ledger-sim replay {} --exec 'python3 adapter.py'", first["trace"].as_str().unwrap())
    );
    assert!(err.contains(&format!("from any directory: (cd {dir} && ledger-sim replay")), "{err}");
}

/// `replay` refuses `--kill-child-at` (a replay runs one call at a time: nothing would kill
/// the child), and an exec option given for a trace of another engine is named as given.
#[test]
fn replay_refuses_an_exec_flag_it_would_ignore_naming_it() {
    let trace = root().join("fixtures/counterexamples/seed/seed-seed0-I2.jsonl");
    let trace = trace.to_str().unwrap();
    let serve = format!("'{SIM}' serve");
    let (code, _, err) = sim_in(&root(), &["replay", trace, "--exec", &serve, "--kill-child-at", "3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--kill-child-at is not taken by replay"), "{err}");
    let (code, _, err) = sim_in(&root(), &["replay", trace, "--exec-timeout", "3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--exec-timeout replays an exec trace"), "{err}");
    assert!(!err.contains("--exec "), "{err}");
    let (code, _, err) = sim_in(&root(), &["replay", trace, "--exec-db"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--exec-db replays an exec trace"), "{err}");
}

/// `--concurrency` and `--lost-ack` on an in-memory engine name every engine that takes them,
/// exec among them; a Postgres fault names the Postgres engines.
#[test]
fn a_concurrency_flag_on_an_in_memory_engine_names_every_engine_that_takes_it() {
    let scenario = root().join("fixtures/scenarios/ci-small.toml");
    let scenario = scenario.to_str().unwrap();
    for (flag, value) in [("--concurrency", "4"), ("--lost-ack", "0.5")] {
        let (code, _, err) = sim_in(&root(), &["run", "--scenario", scenario, flag, value]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(&format!("{flag} needs --engine pg-reference, pg-seed or exec")), "{err}");
        assert!(err.contains("this run's engine is reference"), "{err}");
    }
    let (code, _, err) = sim_in(&root(), &["run", "--kill-connections", "0.1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--kill-connections needs --engine pg-reference or pg-seed"), "{err}");
}
