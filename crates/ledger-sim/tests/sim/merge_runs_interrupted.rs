//! `ledger-sim merge-runs` with the report of a shard a signal stopped (a CI job's timeout):
//! the rest of the shard, run as the shard's stderr says, merges with the shards into what
//! one run over the whole range reports.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{json, root, scratch, sim_in, Running, SIM};

/// What a run and its merged shards must report alike: all but the speed, the shard and the
/// signal.
const SAME: [&str; 8] =
    ["seeds", "steps", "requests", "coverage", "violations", "seeds_reaching", "never_reached", "trace_hash"];

/// The CPU time `pid` has used so far (user and system, all its threads), in clock ticks,
/// from `/proc/PID/stat` (after the last ')', since the command's name may hold anything).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    fields.iter().sum()
}

/// Whether `pid` has a handler for signal `number` (`SigCgt` of `/proc/PID/status`): one sent
/// before would end it by the default action, before it could report anything.
fn handles(pid: u32, number: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught =
        status.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    caught.is_some_and(|mask| mask & (1 << (number - 1)) != 0)
}

/// Runs `ledger-sim ARGS` (a `--json` run) and stops it with SIGTERM once it has taken the
/// signal and worked `ticks` clock ticks of CPU: its exit code, report and stderr.
fn stopped_by_sigterm(args: &[&str], ticks: u64) -> (i32, serde_json::Value, String) {
    let mut cmd = Command::new(SIM);
    cmd.args(args).current_dir(root()).env_remove("DATABASE_URL");
    let started = Instant::now();
    let run = Running::spawn(&mut cmd);
    while !handles(run.id(), 15) || cpu_ticks(run.id()) < ticks {
        assert!(started.elapsed() < Duration::from_secs(60), "ledger-sim {args:?} did not start working within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(Command::new("kill").args(["-s", "TERM", &run.id().to_string()]).status().unwrap().success());
    let ended = run.wait(started, Duration::from_secs(120), "the stopped shard did not end within 120 s");
    (ended.code, json(&ended.stdout), ended.stderr)
}

/// Writes `text` to `dir/name` and returns its path.
fn save(dir: &str, name: &str, text: &str) -> String {
    let path = format!("{dir}/{name}");
    std::fs::write(&path, text).unwrap();
    path
}

/// Shard 2/2 is stopped by SIGTERM; its stderr says which `--seeds` run the rest. That run's
/// report merges with shard 1/2 and the stopped shard's into the report of one run over the
/// whole range: the same seeds, steps, counterexamples and trace hash, no `interrupted_by`.
#[test]
fn the_rest_of_a_stopped_shard_merges_into_the_whole_run() {
    let dir = scratch("merge-rest");
    // A seed of 20,000 steps takes some 20 ms of CPU: the signal comes mid-shard.
    let run = ["run", "--steps", "20000", "--json", "--trace-dir", &dir];
    let (code, one, err) = sim_in(&root(), &[&run[..], &["--seeds", "0..120", "--shard", "1/2"]].concat());
    assert_eq!(code, 0, "{err}");
    let one = save(&dir, "shard1.json", &one);
    let tick = Command::new("getconf").arg("CLK_TCK").output().expect("getconf runs");
    let per_second: u64 = String::from_utf8_lossy(&tick.stdout).trim().parse().expect("CLK_TCK is a number");
    let (code, two, err) =
        stopped_by_sigterm(&[&run[..], &["--seeds", "0..120", "--shard", "2/2"]].concat(), per_second / 4);
    assert_eq!(code, 143, "{err}");
    assert_eq!(two["interrupted_by"], "SIGTERM", "{two}");
    let end: u64 =
        two["seeds"].as_str().and_then(|s| s.strip_prefix("60..")).and_then(|e| e.parse().ok()).expect("60..E");
    assert!(60 < end && end < 120, "the signal should stop shard 2/2 (60..120) mid-way: {two}");
    let two = save(&dir, "shard2.json", &two.to_string());
    // "(`--seeds E..120` runs the rest)": that, in place of the shard's `--seeds` and `--shard`.
    let hint =
        err.split("(`--seeds ").nth(1).and_then(|h| h.split('`').next()).unwrap_or_else(|| panic!("no hint: {err}"));
    assert_eq!(hint, format!("{end}..120"), "{err}");
    let (code, rest, err) = sim_in(&root(), &[&run[..], &["--seeds", hint]].concat());
    assert_eq!(code, 0, "{err}");
    let rest = save(&dir, "rest.json", &rest);

    let (code, merged, err) = sim_in(&root(), &["merge-runs", &rest, &two, &one]);
    assert_eq!(code, 0, "{err}");
    let merged = json(&merged);
    let (code, whole, err) = sim_in(&root(), &[&run[..], &["--seeds", "0..120"]].concat());
    assert_eq!(code, 0, "{err}");
    let whole = json(&whole);
    for key in SAME {
        assert_eq!(merged[key], whole[key], "{key}");
    }
    assert!(merged.get("interrupted_by").is_none(), "{merged}");
}
