//! Input that looks harmless and is not: an empty scenario, numbers too big for 64 bits, a bad
//! key deep in a table, the wrong kind of file. Each is refused (exit 2) naming the file, the
//! line when there is one, and what is wrong, with nothing on stdout.

use std::path::Path;

use crate::common::{root, scratch, sim_in};

/// `ledger-sim ARGS` in `dir`, which must refuse: its stderr.
fn refused(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = sim_in(dir, args);
    assert_eq!((code, out.as_str()), (2, ""), "ledger-sim {}: {err}", args.join(" "));
    err
}

#[test]
fn an_empty_scenario_is_refused_not_run_as_the_defaults() {
    let dir = scratch("empty-scenario");
    let dir = Path::new(&dir);
    for (name, text) in
        [("empty.toml", ""), ("blank.toml", " \n\n\t\n"), ("comments.toml", "# n_users = 40\n\n[ledger]\n")]
    {
        std::fs::write(dir.join(name), text).unwrap();
        let err = refused(dir, &["run", "--scenario", name, "--seeds", "0..1"]);
        assert!(err.contains(&format!("{name}: the scenario is empty")), "{err}");
        assert!(err.contains("run without --scenario"), "{err}");
        let err = refused(dir, &["plan", name]);
        assert!(err.contains(&format!("{name}: the scenario is empty")), "{err}");
        assert!(err.contains("`days = 30`"), "{err}");
    }
    // The shell empties the file before the run reads it.
    let s2 = dir.join("s2.toml");
    std::fs::copy(root().join("fixtures/scenarios/ci-small.toml"), &s2).unwrap();
    let out = std::fs::File::create(&s2).unwrap();
    let status = std::process::Command::new(crate::common::SIM)
        .args(["run", "--scenario", "s2.toml", "--json"])
        .current_dir(dir)
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    // A scenario that sets one key to its default runs.
    std::fs::write(dir.join("one.toml"), "n_users = 40\nn_steps = 50\n").unwrap();
    let (code, _, err) = sim_in(dir, &["run", "--scenario", "one.toml", "--seeds", "0..1"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_number_too_big_for_64_bits_is_out_of_range_not_a_float() {
    let dir = scratch("big-numbers");
    let dir = Path::new(&dir);
    let trace = std::fs::read_to_string(root().join("fixtures/traces/ci-small-seed8-max-replays-50-I6.jsonl")).unwrap();
    let at = trace.find("\"estimated_sats\":").unwrap() + "\"estimated_sats\":".len();
    let end = at + trace[at..].find(',').unwrap();
    let line = trace[..at].lines().count();
    std::fs::write(dir.join("big.jsonl"), format!("{}99999999999999999999999{}", &trace[..at], &trace[end..])).unwrap();
    let err = refused(dir, &["replay", "big.jsonl"]);
    assert!(
        err.contains(&format!(
            "big.jsonl:{line}: \"estimated_sats\": 99999999999999999999999 is out of range: a number of a trace is a \
             whole number in 0..=18446744073709551615"
        )),
        "{err}"
    );
    assert!(!err.contains("floating point"), "{err}");

    let plan = root().join("fixtures/scenarios/plan-steady.toml").display().to_string();
    let err = refused(dir, &["plan", &plan, "--set", "budget.trusted=9223372036854775808"]);
    assert!(
        err.contains("--set budget.trusted=9223372036854775808: out of range: must be in 0..=1000000000000"),
        "{err}"
    );
    let err = refused(dir, &["plan", &plan, "--sweep", "population.new=1,99999999999999999999999"]);
    assert!(err.contains("population.new=99999999999999999999999: out of range: must be in 0..=10000000"), "{err}");
    let err = refused(dir, &["plan", &plan, "--set", "budget.trusted=-99999999999999999999"]);
    assert!(err.contains("out of range: below -9223372036854775808, the smallest TOML integer"), "{err}");
}

#[test]
fn an_error_names_its_file_and_the_line_of_its_key() {
    let dir = scratch("error-lines");
    let dir = Path::new(&dir);
    let trace = std::fs::read_to_string(root().join("fixtures/traces/ci-small-seed8-max-replays-50-I6.jsonl")).unwrap();
    let header = trace.lines().next().unwrap();
    let engine = header.find("\"engine\":\"seed\"").unwrap();
    let rest = &trace[header.len() + 1..];
    let renamed = format!("{}\"engine\":\"nosuch\"{}\n{rest}", &header[..engine], &header[engine + 15..]);
    // With the footer's hash of the lines as they now are: the engine is what is wrong.
    let body: String =
        renamed.lines().filter(|l| !l.contains("\"line\":\"footer\"")).map(|l| format!("{l}\n")).collect();
    let footer = renamed.lines().find(|l| l.contains("\"line\":\"footer\"")).unwrap();
    let old = footer.split("\"sha256\":\"").nth(1).unwrap().split('"').next().unwrap();
    let sha256 = ledger_harness::conformance::Sha256Hex::of(body.as_bytes());
    std::fs::write(dir.join("engine.jsonl"), format!("{body}{}\n", footer.replace(old, &sha256.to_string()))).unwrap();
    let err = refused(dir, &["replay", "engine.jsonl"]);
    assert!(err.contains("engine.jsonl:1: engine: unknown engine \"nosuch\""), "{err}");

    for (text, want) in [
        (
            "n_users = 40\nn_steps = 100\n\n[ledger]\npool_initial_sats = 500\ncredit_pct = 12.345\n",
            "s.toml:6: ledger.credit_pct=\"12.345\": at most two decimals",
        ),
        (
            "n_users = 40\n[ledger]\npool_initial_sats = 500\nreservation_ttl_ms = 0\n",
            "s.toml:4: ledger.reservation_ttl_ms: must be at least 1",
        ),
        (
            "n_users = 40\n[ledger]\n\nreservation_ttl_ms = 99999999999999\n",
            "s.toml:4: ledger.reservation_ttl_ms = 99999999999999: must be at most",
        ),
        ("n_steps = 10\n\nn_users = 0\n", "s.toml:3: n_users = 0: must be in 1..=10000000"),
        ("n_users = 4\n[faults]\ncrash = 2.0\n", "s.toml:3: faults.crash = 2: a rate must be in 0..=1"),
    ] {
        std::fs::write(dir.join("s.toml"), text).unwrap();
        let err = refused(dir, &["run", "--scenario", "s.toml", "--seeds", "0..1"]);
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn the_wrong_kind_of_file_is_named_with_the_command_that_reads_it() {
    let dir = scratch("wrong-kind");
    let dir = Path::new(&dir);
    let vectors = root().join("fixtures/conformance/commands.jsonl").display().to_string();
    let err = refused(dir, &["replay", &vectors]);
    assert!(err.contains("commands.jsonl:1: this is a conformance trace"), "{err}");
    assert!(err.contains("`ledger-sim check-trace`"), "{err}");

    let scenario = root().join("fixtures/scenarios/ci-small.toml").display().to_string();
    let (code, report, err) =
        sim_in(dir, &["run", "--scenario", &scenario, "--seeds", "0..1", "--steps", "50", "--json"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.join("run.json"), &report).unwrap();
    let err = refused(dir, &["merge", "run.json"]);
    assert!(
        err.contains("run.json: a run report (`ledger-sim run --json`), which `ledger-sim merge-runs` merges"),
        "{err}"
    );
    // merge-runs prints JSON whatever is asked, and takes --json as run and merge do.
    let (code, merged, err) = sim_in(dir, &["merge-runs", "run.json", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(crate::common::json(&merged)["seeds"], "0..1", "{merged}");

    // A scenario of the other kind: named as such, with the command that reads it.
    let plan = root().join("fixtures/scenarios/plan-launch.toml").display().to_string();
    let err = refused(dir, &["run", "--scenario", &plan]);
    assert!(err.contains("plan-launch.toml: a plan scenario (it sets `name`, `days`, `seeds`)"), "{err}");
    assert!(err.contains(&format!("which `ledger-sim plan {plan}` reads")), "{err}");
    let err = refused(dir, &["plan", &scenario]);
    assert!(err.contains("ci-small.toml: a run scenario (it sets `n_users`, `n_steps`"), "{err}");
    assert!(err.contains(&format!("which `ledger-sim run --scenario {scenario}` reads")), "{err}");
    // One that sets keys of both kinds keeps the parser's own error, at its line.
    std::fs::write(dir.join("mixed.toml"), "n_users = 5\ndays = 3\n").unwrap();
    let err = refused(dir, &["run", "--scenario", "mixed.toml"]);
    assert!(err.contains("line 2") && err.contains("unknown field `days`"), "{err}");
}

/// A value given by a flag is named as that flag, not as the scenario key it sets; a key the
/// ledger's configuration refuses as a whole reads as a sentence after its table's name.
#[test]
fn a_flags_bad_value_is_named_as_the_flag() {
    let dir = scratch("flag-names");
    let dir = Path::new(&dir);
    let err = refused(dir, &["run", "--users", "0"]);
    assert!(err.contains("--users 0: must be in 1..=10000000"), "{err}");
    let err = refused(dir, &["run", "--steps", "0"]);
    assert!(err.contains("--steps 0: must be in 1..=100000000"), "{err}");
    std::fs::write(dir.join("both.toml"), "[ledger]\ncredit_pct = 10\ncredit_bps = 1000\n").unwrap();
    let err = refused(dir, &["run", "--scenario", "both.toml"]);
    assert!(err.contains("both.toml:2: ledger.credit_pct and credit_bps are both given: give one"), "{err}");
    for (args, says) in [
        (&["run", "--linearizability-budget", "5000"][..], "--linearizability-budget needs --engine pg-reference"),
        (&["run", "--engine", "exec", "--exec", "x", "--linearizability-budget", "5000"][..], "needs --concurrency N"),
        (
            &["run", "--engine", "exec", "--exec", "x", "--concurrency", "2", "--linearizability-budget", "999"][..],
            "--linearizability-budget 999: must be 1000 to 10000000000 attempts",
        ),
    ] {
        let err = refused(dir, args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // replay takes --exec's options but not --kill-child-at, and its help does not offer it.
    let (code, help, _) = sim_in(dir, &["replay", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("--exec-timeout") && !help.contains("--kill-child-at"), "{help}");
    let (_, help, _) = sim_in(dir, &["run", "--help"]);
    assert!(help.contains("--kill-child-at"), "{help}");
}

#[test]
fn an_empty_rayon_num_threads_is_taken_as_unset_and_said() {
    let dir = scratch("empty-rayon");
    let scenario = root().join("fixtures/scenarios/ci-small.toml").display().to_string();
    let mut cmd = std::process::Command::new(crate::common::SIM);
    cmd.args(["run", "--scenario", &scenario, "--seeds", "0..1", "--steps", "50"])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env("RAYON_NUM_THREADS", "");
    let ended = crate::common::Running::spawn(&mut cmd).wait(
        std::time::Instant::now(),
        crate::common::CHILD_LIMIT,
        "an empty RAYON_NUM_THREADS",
    );
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert!(ended.stderr.contains("RAYON_NUM_THREADS is set but empty: ignored, as if unset"), "{}", ended.stderr);
}

#[test]
fn merge_runs_refuses_invented_invariants_coverage_keys_and_negative_counts() {
    let dir = scratch("tampered-shards");
    let dir = Path::new(&dir);
    let scenario = root().join("fixtures/scenarios/ci-small.toml").display().to_string();
    let (code, report, err) =
        sim_in(dir, &["run", "--scenario", &scenario, "--seeds", "0..1", "--steps", "50", "--json"]);
    assert_eq!(code, 0, "{err}");
    let clean = crate::common::json(&report);
    let tampered = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut r = clean.clone();
        edit(&mut r);
        std::fs::write(dir.join("shard.json"), r.to_string()).unwrap();
        refused(dir, &["merge-runs", "shard.json"])
    };
    let err = tampered(&|r| r["violations"] = serde_json::json!([{"invariant": "I9", "seeds": [0]}]));
    assert!(err.contains("shard.json: a violation of invariant \"I9\", which is none of I1 to I8"), "{err}");
    let err = tampered(&|r| r["coverage"]["made_up_mark"] = serde_json::json!(3));
    assert!(err.contains("shard.json: coverage counts \"made_up_mark\", which is no coverage mark"), "{err}");
    let err = tampered(&|r| r["steps"] = serde_json::json!(-5));
    assert!(err.contains("shard.json: steps is negative (-5)"), "{err}");
    // Untouched, it merges.
    std::fs::write(dir.join("shard.json"), &report).unwrap();
    let (code, _, err) = sim_in(dir, &["merge-runs", "shard.json"]);
    assert_eq!(code, 0, "{err}");
}
