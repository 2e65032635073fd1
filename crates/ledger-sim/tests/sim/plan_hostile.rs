//! `plan` and `merge` against hostile input, end to end: scenarios at the edges of their
//! ranges, hand-edited shards. Every refusal is exit 2 with a message naming what and where,
//! never a panic (exit 101).

use crate::common::{scratch, sim_in};

/// Writes `text` to `dir/name`; its path.
fn file(dir: &str, name: &str, text: &str) -> String {
    let path = format!("{dir}/{name}");
    std::fs::write(&path, text).unwrap();
    path
}

/// A billion-sat estimate whose actual cost is a log-normal percentage around 1000 % with no
/// `max`: half of its draws lie beyond the key's 1000 %, some beyond what a u64 holds.
const HUGE_ACTUAL: &str = r#"
days = 3
seeds = 2
[population]
new = 100
established = 0
trusted = 0
elite = 0
[requests]
per_user_per_day = { dist = "fixed", value = 50 }
[cost]
estimate_sats = { dist = "fixed", value = 1000000000 }
actual_pct = { dist = "lognormal", median = 1000, sigma = 5 }
"#;

#[test]
fn plan_clamps_a_lognormal_without_max_to_its_keys_range() {
    let dir = scratch("plan-hostile-clamp");
    let s = file(&dir, "act.toml", HUGE_ACTUAL);
    let (code, table, err) = sim_in(dir.as_ref(), &["plan", &s]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("viol"), "{table}");
    // What --history-out writes, --fit reads.
    let (code, _, err) = sim_in(dir.as_ref(), &["plan", &s, "--history-out", "act.csv"]);
    assert_eq!(code, 0, "{err}");
    let (code, fitted, err) = sim_in(dir.as_ref(), &["plan", "--fit", "act.csv"]);
    assert_eq!(code, 0, "{err}");
    assert!(fitted.contains("actual_pct"), "{fitted}");
    // Requests per user per day: memory is sized for at most 10,000 a day, not for the mean
    // of the unclamped log-normal (which asked for 118,396.7 GiB).
    let counts = r#"
days = 3
seeds = 1
[population]
new = 47
established = 0
trusted = 0
elite = 0
[requests]
per_user_per_day = { dist = "lognormal", median = 10000, sigma = 5 }
"#;
    let s = file(&dir, "count.toml", counts);
    let (code, _, err) = sim_in(dir.as_ref(), &["plan", &s]);
    assert_eq!(code, 0, "{err}");
}

/// The two `--json` shards of a small plan (two days of the tipping fixture, three seeds),
/// written to `dir/s1.json` and `dir/s2.json`; their texts.
fn shards(dir: &str) -> (String, String) {
    let root = crate::common::root();
    let scenario = root.join("fixtures/scenarios/plan-tipping.toml");
    let scenario = scenario.to_str().unwrap();
    let mut texts = Vec::new();
    for i in 1..=2 {
        let shard = format!("{i}/2");
        let args = ["plan", scenario, "--days", "2", "--seeds", "3", "--shard", &shard, "--json"];
        let (code, json, err) = sim_in(dir.as_ref(), &args);
        assert_eq!(code, 0, "{err}");
        texts.push(json);
    }
    (texts.remove(0), texts.remove(0))
}

#[test]
fn merge_refuses_a_shard_count_of_zero() {
    let dir = scratch("plan-hostile-shard-count");
    let (s1, s2) = shards(&dir);
    assert!(s1.contains("\"count\": 2"), "{s1}");
    file(&dir, "s1.json", &s1.replace("\"count\": 2", "\"count\": 0"));
    file(&dir, "s2.json", &s2);
    for files in [["s1.json", "s2.json"], ["s2.json", "s1.json"]] {
        let (code, out, err) = sim_in(dir.as_ref(), &["merge", files[0], files[1]]);
        assert_eq!((code, out.as_str()), (2, ""), "{err}");
        assert!(err.contains("s1.json: shard 1/0: a shard I/N has 1 <= I <= N"), "{err}");
    }
}

/// `text` (a shard's JSON) with `edit` applied.
fn edited(text: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    let mut v = crate::common::json(text);
    edit(&mut v);
    serde_json::to_string_pretty(&v).unwrap()
}

/// `merge` adds up what it is handed with checked sums and checks the scenario as `plan`
/// checks a scenario file: a hand-edited shard is an error naming it, exit 2, never a wrong
/// verdict or an escape sequence on the terminal.
#[test]
fn merge_refuses_edited_shards_it_used_to_trust() {
    let dir = scratch("plan-hostile-merge-edited");
    let (s1, s2) = shards(&dir);
    let merge = |a: &str, b: &str| {
        file(&dir, "a.json", a);
        file(&dir, "b.json", b);
        sim_in(dir.as_ref(), &["merge", "a.json", "b.json"])
    };
    let (code, _, err) = merge(&s1, &s2);
    assert_eq!(code, 0, "{err}");
    // 2^63 violations in one run of each shard: the sum wrapped to 0, and merge said "viol 0".
    let huge = |v: &mut serde_json::Value| {
        v["runs"][0]["violations"] = serde_json::json!(1u64 << 63);
        v["runs"][0]["first_violation"] = serde_json::json!("I3");
    };
    let (code, out, err) = merge(&edited(&s1, huge), &edited(&s2, huge));
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("b.json: run (config 0, seed ") && err.contains("its violations"), "{err}");
    // A name with an escape sequence, and values `plan` refuses in a scenario file.
    for (key, value, said) in [
        ("name", serde_json::json!("\u{1b}[2Jowned"), r#"a.json: name = "\u{1b}[2Jowned": a control character"#),
        ("credit_pct", serde_json::json!(500.0), "a.json: credit_pct = 500: "),
        ("seeds", serde_json::json!(0), "a.json: seeds = 0: must be in 1..=100000"),
        ("days", serde_json::json!(0), "a.json: days = 0: must be in 1..=3650"),
    ] {
        let set = |v: &mut serde_json::Value| v["scenario"][key] = value.clone();
        let (code, out, err) = merge(&edited(&s1, set), &edited(&s2, set));
        assert_eq!((code, out.as_str()), (2, ""), "{key}: {err}");
        assert!(err.contains(said), "{key}: {err}");
        assert!(!err.contains('\u{1b}'), "an escape character printed raw: {err:?}");
    }
}

/// 600,000 requests: a run of about 100 MB, whose history would hold as much again.
const BUSY: &str = r#"
days = 2
seeds = 1
[population]
new = 30000
established = 0
trusted = 0
elite = 0
[requests]
per_user_per_day = { dist = "fixed", value = 10 }
"#;

/// Runs `ledger-sim ARGS` in `dir`, its output to /dev/null: its exit status and its peak
/// resident memory in kB (`VmHWM`, read until it ends).
#[cfg(target_os = "linux")]
fn peak_kb(dir: &str, args: &[&str]) -> (std::process::ExitStatus, u64) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::common::SIM)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        assert!(started.elapsed() < crate::common::CHILD_LIMIT, "ledger-sim {args:?} did not end");
        let hwm = std::fs::read_to_string(&status_file).ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        peak = peak.max(hwm.unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `--history-out` writes each row as the run decides it: its peak memory is the run's, as
/// the memory check before it counts, where it held every row and then the CSV text too
/// (twice the run's: 837 MB against 427 MB for 3 M requests).
#[cfg(target_os = "linux")]
#[test]
fn history_out_needs_no_more_memory_than_the_plan() {
    let dir = scratch("plan-hostile-history-memory");
    let s = file(&dir, "busy.toml", BUSY);
    let (status, plan_kb) = peak_kb(&dir, &["plan", &s]);
    assert!(status.success(), "{status}");
    let (status, history_kb) = peak_kb(&dir, &["plan", &s, "--history-out", "h.csv"]);
    assert!(status.success(), "{status}");
    let rows = std::fs::read_to_string(format!("{dir}/h.csv")).unwrap().lines().count();
    assert_eq!(rows, 600_001);
    assert!(plan_kb > 50_000, "the plan's peak, {plan_kb} kB, was not seen");
    assert!(history_kb < plan_kb + plan_kb / 5, "--history-out peaked at {history_kb} kB, the plan at {plan_kb} kB");
}

/// A signal that ends `--history-out` mid-run leaves neither the output nor the temporary
/// file it was being written to.
#[cfg(target_os = "linux")]
#[test]
fn history_out_stopped_by_a_signal_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let dir = scratch("plan-hostile-history-signal");
    let s = file(&dir, "busy.toml", &BUSY.replace("days = 2", "days = 6"));
    let mut child = Command::new(crate::common::SIM)
        .args(["plan", &s, "--history-out", "h.csv"])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The temporary file's name: `.h.csv.PID.` and a part no other process can guess.
    let tmp = format!(".h.csv.{}.", child.id());
    let written = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&tmp) && e.metadata().is_ok_and(|m| m.len() > 0))
    };
    let started = std::time::Instant::now();
    // Rows in it, not only a file by its name: the check before the run makes and removes an
    // empty probe beside it before the signal is handled, and a SIGINT then would kill the
    // process between the two.
    while !written() {
        assert!(child.try_wait().unwrap().is_none(), "ended before it wrote {tmp}");
        assert!(started.elapsed() < crate::common::CHILD_LIMIT, "no {tmp}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(2), "{status}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["busy.toml"], "left behind");
}

/// `1e300` and `1e-300` given on the command line are quoted back as written, not as 301
/// digits.
#[test]
fn errors_write_huge_and_tiny_numbers_compactly() {
    let dir = scratch("plan-hostile-compact");
    let s = crate::common::root().join("fixtures/scenarios/plan-tipping.toml");
    let s = s.to_str().unwrap();
    let target = "p_dry(day=2) <= 0.05";
    for (args, said) in [
        (
            vec!["--solve", "pool_initial_sats=0..1e300"],
            "ledger-sim: error: --solve pool_initial_sats=0..1e300: 1e300 is too large: pool_initial_sats counts in whole numbers, \
             0 or more",
        ),
        (
            vec!["--solve", "pool_initial_sats=0..1000", "--resolution", "1e-300"],
            "ledger-sim: error: --solve pool_initial_sats: --resolution 1e-300 is finer than a billionth",
        ),
    ] {
        let (code, _, err) = sim_in(dir.as_ref(), &[&["plan", s, "--target", target][..], &args].concat());
        assert_eq!(code, 2, "{err}");
        assert!(err.starts_with(said), "{err}");
        assert!(err.len() < 200, "{err}");
    }
}

/// `--set KEY=VALUE` asks a question of a changed scenario without editing its file: the plan
/// runs the scenario with the key set (the same as a file that says so, byte for byte), and a
/// setting that cannot be applied is named as given, before any work.
#[test]
fn set_changes_the_scenario_as_an_edited_file_would() {
    let dir = scratch("plan-hostile-set");
    let base = crate::common::root().join("fixtures/scenarios/plan-tipping.toml");
    let text = std::fs::read_to_string(&base).unwrap();
    let base = base.to_str().unwrap();
    assert!(text.contains("credit_pct = 10\n"), "the fixture's credit");
    let edited = file(dir.as_ref(), "edited.toml", &text.replace("credit_pct = 10\n", "credit_pct = 12.5\n"));
    let run = |s: &str, extra: &[&str]| {
        let (code, out, err) = sim_in(dir.as_ref(), &[&["plan", s, "--seeds", "3", "--json"][..], extra].concat());
        assert_eq!(code, 0, "{err}");
        let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["scenario"]["name"] = serde_json::Value::Null;
        v
    };
    let set = run(base, &["--set", "credit_pct=12.5"]);
    assert_eq!(set["scenario"]["credit_pct"], 12.5);
    assert_eq!(set, run(&edited, &[]), "--set runs what the edited file runs");
    assert_ne!(set, run(base, &[]), "and not the file as it is");
    // The first seed is set, not swept: the runs of other seeds.
    let seeded = run(base, &["--set", "seed=5"]);
    assert_eq!(seeded["scenario"]["seed"], 5);
    assert_ne!(seeded["runs"], run(base, &[])["runs"], "other seeds, other runs");
    for (args, said) in [
        (vec!["--set", "credit_pct=500"], "--set credit_pct=500: credit_pct = 500: percentage over 100"),
        (vec!["--set", "budget.gold=5"], "--set budget.gold=5: unknown field `gold`, expected one of"),
        (vec!["--set", "requests.even=1"], "--set requests.even: not a numeric key"),
        (vec!["--set", "seeds=5"], "--set seeds=5: give --seeds 5"),
        (vec!["--set", "credit_pct"], "--set credit_pct: expected KEY=VALUE"),
        (
            vec!["--set", "credit_pct=12", "--sweep", "credit_pct=10,20"],
            "--set credit_pct=12: the same key is given to --sweep, --solve or --over",
        ),
    ] {
        let (code, out, err) = sim_in(dir.as_ref(), &[&["plan", base][..], &args].concat());
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.starts_with(&format!("ledger-sim: error: {said}")), "{args:?}: {err}");
    }
}
