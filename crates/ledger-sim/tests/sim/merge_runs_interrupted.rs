//! `ledger-sim merge-runs` with the report of a run a signal stopped (a CI job's timeout): the
//! merged report is cut short as that run was (`interrupted_by`, exit 128 + N, the seeds not
//! run and the command that runs them named), unless the rest, run as the stopped run's
//! stderr says, is merged too: then it is what one run over the whole range reports.

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
    // "(`--seeds E..120`, without `--shard`, runs the rest)": that, in place of the shard's
    // `--seeds` and `--shard`.
    let hint =
        err.split("(`--seeds ").nth(1).and_then(|h| h.split('`').next()).unwrap_or_else(|| panic!("no hint: {err}"));
    assert_eq!(hint, format!("{end}..120"), "{err}");
    assert!(err.contains(&format!("(`--seeds {hint}`, without `--shard`, runs the rest)")), "{err}");
    // Without the rest, the merged run is cut short as the shard was, and says so.
    let (code, cut, said) = sim_in(&root(), &["merge-runs", &two, &one]);
    assert_eq!(code, 143, "{said}");
    let cut = json(&cut);
    assert_eq!((cut["seeds"].as_str(), cut["interrupted_by"].as_str()), (Some(&*format!("0..{end}")), Some("SIGTERM")));
    assert!(said.contains(&format!("`ledger-sim run --seeds {hint}` (the shard's other options, without `--shard`)")));
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

/// A run of `ledger-sim ARGS`: its report, after its exit code was `code`.
fn report_of(args: &[&str], code: i32) -> serde_json::Value {
    let (got, out, err) = sim_in(&root(), args);
    assert_eq!(got, code, "{args:?}: {err}");
    json(&out)
}

/// What a run that SIGTERM stopped writes, its report marked: `shard` of `--seeds 0..40
/// --shard I/4`, if any, and `interrupted_by`. A run stopped after seed `B - 1` reports
/// exactly what a run of `A..B` reports (`interrupted_run.rs` holds them equal).
fn stopped(mut report: serde_json::Value, shard: Option<u64>) -> serde_json::Value {
    if let Some(i) = shard {
        report["shard"] = serde_json::json!({"index": i, "count": 4, "seeds": "0..40"});
    }
    report["interrupted_by"] = "SIGTERM".into();
    report
}

/// The merge of `files` (in `dir`): exit code, report and stderr.
fn merged(dir: &str, files: &[(&str, &serde_json::Value)], junit: Option<&str>) -> (i32, serde_json::Value, String) {
    let mut args = vec!["merge-runs".to_owned()];
    args.extend(files.iter().map(|(name, r)| save(dir, name, &r.to_string())));
    args.extend(junit.iter().flat_map(|j| ["--junit".to_owned(), j.to_string()]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = sim_in(&root(), &args);
    (code, serde_json::from_str(&out).unwrap_or_default(), err)
}

/// A shard a signal stopped never merges into a report that looks whole: the last one cut
/// short leaves the merged report cut short (the seeds run, `interrupted_by`, exit 143, the
/// shard, the seeds not run and the command that runs them on stderr); one cut short before
/// another is refused, naming the same; one that stopped while shrinking leaves its mark. A
/// report cut short that says neither why is refused. A run of ranges run apart that a
/// signal stopped last keeps its mark; one whose rest follows it does not.
#[test]
fn a_run_a_signal_stopped_never_merges_into_a_whole_report() {
    let dir = scratch("merge-stopped");
    let scenario = root().join("fixtures/scenarios/ci-small.toml").display().to_string();
    let run = ["run", "--scenario", &scenario, "--json"];
    let shards: Vec<serde_json::Value> = (1..=4)
        .map(|i| report_of(&[&run[..], &["--seeds", "0..40", "--shard", &format!("{i}/4")]].concat(), 0))
        .collect();
    let whole = report_of(&[&run[..], &["--seeds", "0..40"]].concat(), 0);
    let range = |seeds: &str| report_of(&[&run[..], &["--seeds", seeds]].concat(), 0);

    // The last shard, stopped after seed 34 of its 30..40.
    let junit = format!("{dir}/junit.xml");
    let four = stopped(range("30..35"), Some(4));
    let set = [("s1.json", &shards[0]), ("s2.json", &shards[1]), ("s3.json", &shards[2]), ("s4.json", &four)];
    let (code, v, err) = merged(&dir, &set, Some(&junit));
    assert_eq!(code, 143, "{err}");
    assert_eq!((v["seeds"].as_str(), v["interrupted_by"].as_str()), (Some("0..35"), Some("SIGTERM")), "{v}");
    for said in [
        "s4.json (shard 4/4 of 0..40) was stopped by SIGTERM after seeds 30..35: seeds 35..40 were not run",
        "`ledger-sim run --seeds 35..40` (the shard's other options, without `--shard`) runs them",
        "stopped by SIGTERM: the report covers seeds 0..35 of 0..40",
    ] {
        assert!(err.contains(said), "{said:?} not in: {err}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<property name=\"seeds\" value=\"0..35\"/>"), "{xml}");

    // A middle shard, stopped after seed 12 of its 10..20: refused, naming it.
    let two = stopped(range("10..13"), Some(2));
    let set = [("s1.json", &shards[0]), ("s2.json", &two), ("s3.json", &shards[2]), ("s4.json", &shards[3])];
    let (code, _, err) = merged(&dir, &set, None);
    assert_eq!(code, 2, "{err}");
    let said = "s2.json (shard 2/4 of 0..40) covers seeds 10..13 of its 10..20: seeds 13..20 were not run, as SIGTERM \
                stopped it: `ledger-sim run --seeds 13..20` (the shard's other options, without `--shard`) runs them";
    assert!(err.contains(said), "{err}");

    // A last shard cut short whose report says neither that a signal stopped it nor that an
    // invariant broke (it would have stopped under `--fail-fast`).
    let mut silent = four.clone();
    silent.as_object_mut().unwrap().remove("interrupted_by");
    let set = [("s1.json", &shards[0]), ("s2.json", &shards[1]), ("s3.json", &shards[2]), ("s4.json", &silent)];
    let (code, _, err) = merged(&dir, &set, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("seeds 35..40 were not run, and its report says neither that a signal stopped it"), "{err}");

    // A shard stopped once its seeds had run, while shrinking: every seed is in, the mark too.
    let shrinking = stopped(shards[1].clone(), None);
    let set = [("s1.json", &shards[0]), ("s2.json", &shrinking), ("s3.json", &shards[2]), ("s4.json", &shards[3])];
    let (code, v, err) = merged(&dir, &set, None);
    assert_eq!(code, 143, "{err}");
    assert_eq!((v["seeds"].as_str(), v["interrupted_by"].as_str()), (Some("0..40"), Some("SIGTERM")), "{v}");
    assert!(err.contains("stopped by SIGTERM after every seed had run: the report covers seeds 0..40"), "{err}");

    // Ranges run apart: one stopped after seed 6 keeps its mark, alone or last; followed by the
    // rest, which its stderr named (`--seeds 7..40`), the merge is the whole run.
    let first = stopped(range("0..7"), None);
    let (code, v, err) = merged(&dir, &[("r1.json", &first)], None);
    assert_eq!(code, 143, "{err}");
    assert_eq!((v["seeds"].as_str(), v["interrupted_by"].as_str()), (Some("0..7"), Some("SIGTERM")), "{v}");
    assert!(err.contains("r1.json, the last report, was stopped by SIGTERM after seeds 0..7"), "{err}");
    let (code, v, err) = merged(&dir, &[("r1.json", &first), ("r2.json", &range("7..40"))], None);
    assert_eq!(code, 0, "{err}");
    for key in SAME {
        assert_eq!(v[key], whole[key], "{key}");
    }
    assert!(v.get("interrupted_by").is_none(), "{v}");
}
