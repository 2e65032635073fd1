//! The command line contract: exit codes, JSON fields, errors that name what and where.

use std::os::unix::fs::FileTypeExt;
use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger-sim")).args(args).output().unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ledger-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn clean_run_exits_zero_with_the_contract_fields() {
    let out = sim(&["run", "--seeds", "0..3", "--users", "50", "--steps", "500", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["engine", "seeds", "steps", "requests", "violations", "coverage", "trace_hash", "steps_per_sec"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["engine"], "reference");
    assert_eq!(v["seeds"], "0..3");
    assert_eq!(v["violations"].as_array().unwrap().len(), 0);
    assert!(v["coverage"]["lost_ack_retry"].is_u64());
}

#[test]
fn violation_exits_one_and_its_trace_replays() {
    let dir = tmp("traces");
    let out = sim(&[
        "run",
        "--engine",
        "seed",
        "--seed",
        "0",
        "--users",
        "40",
        "--steps",
        "600",
        "--json",
        "--trace-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &v["violations"][0];
    assert!(first["invariant"].as_str().unwrap().starts_with('I'));
    assert_eq!(first["seed"], 0);
    let trace = first["trace"].as_str().unwrap();
    assert_eq!(first["replay"].as_str().unwrap(), format!("ledger-sim replay {trace}"));
    let replayed = sim(&["replay", trace, "--json"]);
    assert_eq!(replayed.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert!(r["violations"].as_array().unwrap().iter().any(|x| x["invariant"] == first["invariant"]));
}

#[test]
fn bad_input_exits_two_naming_what_and_where() {
    // A shard of one seed, and every shard of a split into more shards than seeds; a run of
    // no steps (it would check nothing and pass); a trace directory that is a file, refused
    // before the seeds run rather than when their counterexamples are written.
    let not_a_dir = tmp("trace-dir-file");
    std::fs::write(&not_a_dir, "").unwrap();
    for (args, says) in [
        (&["run", "--seed", "1", "--shard", "1/2"][..], "cannot be used with"),
        (&["run", "--seeds", "0..3", "--shard", "1/4"][..], "fewer seeds than shards"),
        (&["run", "--seeds", "0..3", "--shard", "4/4"][..], "fewer seeds than shards"),
        (&["run", "--steps", "0"][..], "--steps 0: must be in 1..=100000000"),
        (&["run", "--engine", "seed", "--trace-dir", not_a_dir.to_str().unwrap()][..], "not a directory"),
    ] {
        let out = sim(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let scenario = tmp("bad.toml");
    std::fs::write(&scenario, "n_users = 10\nn_stepz = 5\n").unwrap();
    let out = sim(&["run", "--scenario", scenario.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("n_stepz") && err.contains("line 2"), "{err}");

    std::fs::write(&scenario, "[ledger]\ncredit_pct = 150\n").unwrap();
    let err = String::from_utf8_lossy(&sim(&["run", "--scenario", scenario.to_str().unwrap()]).stderr).to_string();
    assert!(err.contains("credit_pct"), "{err}");

    std::fs::write(&scenario, "[faults]\ncrash = 1.5\n").unwrap();
    let out = sim(&["run", "--scenario", scenario.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("faults.crash"));

    // A negative number is refused by the flag it was given to, named.
    for (args, flag) in [
        (vec!["run", "--steps", "-1"], "--steps"),
        (vec!["run", "--users", "-5"], "--users"),
        (vec!["plan", "fixtures/scenarios/plan-launch.toml", "--days", "-3"], "--days"),
    ] {
        let out = sim(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains("invalid value"), "{args:?}: {err}");
    }
    let out = sim(&["run", "--seeds", "5..5"]);
    assert_eq!(out.status.code(), Some(2));
    let out = sim(&["run", "--engine", "postgres-of-my-dreams"]);
    assert_eq!(out.status.code(), Some(2));

    let trace = tmp("garbled.jsonl");
    let good = tmp("good");
    let run = sim(&[
        "run",
        "--engine",
        "seed",
        "--seed",
        "0",
        "--users",
        "40",
        "--steps",
        "600",
        "--json",
        "--trace-dir",
        good.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let text = std::fs::read_to_string(v["violations"][0]["trace"].as_str().unwrap()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "{\"line\":\"flow\",\"id\":");
    std::fs::write(&trace, lines.join("\n")).unwrap();
    let out = sim(&["replay", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("garbled.jsonl:3:"), "{err}");
    // An amount no ledger can hold (above Sats::MAX) is an error naming the line, not a panic.
    let huge = tmp("huge.jsonl");
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.contains("\"estimated_sats\"") && !l.contains("18446744073709551615") {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let mut v = v.as_object().unwrap().clone();
                v.insert("estimated_sats".into(), serde_json::json!(u64::MAX));
                serde_json::to_string(&v).unwrap()
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&huge, edited.join("\n")).unwrap();
    let out = sim(&["replay", huge.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("huge.jsonl:") && err.contains("estimated_sats 18446744073709551615"), "{err}");
}

/// `plan` checks what it can before any work: the report path, the sweep, the memory a run
/// would need. Each refusal exits 2 naming the flag, and writes nothing.
#[test]
fn plan_refuses_bad_outputs_repeated_sweeps_and_plans_too_big_before_any_work() {
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/plan-launch.toml");
    let dir = tmp("plan-outputs");
    std::fs::create_dir_all(&dir).unwrap();
    let big = tmp("big.toml");
    let text = std::fs::read_to_string(scenario).unwrap();
    std::fs::write(&big, text.replacen("new = 3000", "new = 9990000", 1)).unwrap();
    // A directory is made for an output, unless a file is in the way.
    let missing = big.join("plan.html");
    // A thousand configurations of 100,000 seeds of 10 years: little to simulate, far too much
    // to keep (about 21 TiB of balances by day).
    let tiny = tmp("tiny.toml");
    std::fs::write(&tiny, "days = 3650\nseeds = 100000\n[population]\nnew = 1\n[requests]\nper_user_per_day = { dist = \"fixed\", value = 0 }\n").unwrap();
    let tiny = tiny.to_str().unwrap().to_owned();
    let thousand = format!("budget.new={}", (1..=1000).map(|v| v.to_string()).collect::<Vec<_>>().join(","));
    let values = |n: u32| {
        format!(
            "budget.{}={}",
            ["new", "established", "trusted"][n as usize],
            (1..=100).map(|v| v.to_string()).collect::<Vec<_>>().join(",")
        )
    };
    let (grid, grid2, grid3) = (values(0), values(1), values(2));
    let history = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/history/fit-small.csv").to_owned();
    let fifo = tmp("fifo.csv");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (args, says) in [
        (vec!["plan", scenario, "--days", "2", "--report", dir.to_str().unwrap()], "a directory"),
        (vec!["plan", scenario, "--days", "2", "--report", missing.to_str().unwrap()], "cannot make the directory"),
        (vec!["plan", scenario, "--days", "2", "--report", "/dev/full"], "not a regular file"),
        (vec!["plan", scenario, "--days", "2", "--sweep", "credit_pct=10", "--sweep", "credit_pct=20"], "swept twice"),
        (
            vec!["plan", scenario, "--days", "2", "--set", "credit_pct=10", "--set", "credit_pct=20"],
            "--set credit_pct is given twice (=10, then =20): give it once",
        ),
        (
            vec!["plan", scenario, "--days", "2", "--set", "budget.trusted=100.0"],
            "100.0 is written as a fraction: give 100: budget.trusted counts in whole numbers, 0 or more",
        ),
        (vec!["plan", scenario, "--days", "2", "--set", "budget.trusted=-5"], "-5 is negative"),
        (vec!["plan", scenario, "--days", "2", "--set", "seed=x"], "the first seed is a whole number"),
        (
            vec![
                "plan",
                scenario,
                "--target",
                "p_dry <= 0.05",
                "--target",
                "p_dry(day=90) <= 0.05",
                "--solve",
                "credit_pct=0..100",
            ],
            "the same target as \"p_dry <= 0.05\", given before",
        ),
        (vec!["plan", big.to_str().unwrap(), "--seeds", "1"], "GiB is available"),
        (vec!["plan", &tiny, "--json", "--sweep", &thousand], "results need about"),
        (
            vec!["plan", scenario, "--days", "1", "--sweep", &grid, "--sweep", &grid2, "--sweep", &grid3],
            "configurations",
        ),
        (vec!["plan", scenario, "--sweep", "days=1,3"], "days cannot be swept"),
        (
            vec!["plan", scenario, "--target", "p_dry<=0.05", "--solve", "credit_pct=0..100", "--seeds", "5"],
            "--max-seeds",
        ),
        (vec!["plan", scenario, "--sweep", "credit_pct=10,1e1"], "1e1 is 10 again"),
        (vec!["plan", scenario, "--sweep", "credit_pct=10,,20"], "an empty value"),
        (vec!["plan", scenario, "--days", "2", "--shard", "1/2"], "give --json"),
        (
            vec!["plan", scenario, "--days", "1", "--history-out", "/dev/null"],
            "--history-out /dev/null: not a regular file",
        ),
        (vec!["plan", "--fit", &history, "--out", "/dev/null"], "--out /dev/null: not a regular file"),
        (vec!["plan", "--fit", &history, "--out", fifo.to_str().unwrap()], "not a regular file"),
    ] {
        let out = sim(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        // Refused before the simulation: it never printed its run summary.
        assert!(!err.contains("run(s),"), "{args:?} ran first: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed a partial output");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "a refused report left {leftovers:?}");
    assert!(!std::fs::metadata("/dev/null").unwrap().is_file(), "/dev/null is still a device");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the pipe is still a pipe");
}

/// What the command line prints about a user's files never carries a secret or a gigabyte, a
/// scenario the engine cannot honour is refused as input, and a malformed environment variable
/// is named.
#[test]
fn errors_hide_secrets_and_refuse_what_cannot_be_simulated() {
    let plan_scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/plan-tipping.toml");
    let envlike = tmp("envlike.toml");
    std::fs::write(&envlike, "DATABASE_URL = \"postgres://u:hunter2@127.0.0.1/db\"\n").unwrap();
    let huge = tmp("huge-scenario.toml");
    std::fs::File::create(&huge).unwrap().set_len(64 << 20).unwrap();
    let escape = tmp("escape.toml");
    std::fs::write(&escape, "name = \"x\\u001b]0;pwned\\u0007\"\n").unwrap();
    let step = tmp("step.toml");
    std::fs::write(&step, "n_users = 40\nn_steps = 600\nstep_ms = 100000000000000000\n").unwrap();
    let weights = tmp("weights.toml");
    std::fs::write(&weights, "n_users = 40\nn_steps = 600\n[tiers]\nnew = 1e308\nestablished = 1e308\n").unwrap();
    let pool = tmp("pool.toml");
    std::fs::write(&pool, "n_users = 40\nn_steps = 600\n[ledger]\npool_initial_sats = 9223372036854775000\n").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    for (args, says) in [
        (vec!["plan".to_owned(), path(&envlike)], "postgres://u:***@127.0.0.1/db"),
        (vec!["plan".to_owned(), path(&huge)], "more than the 16777216 this input may have"),
        (vec!["plan".to_owned(), path(&escape)], "a control character"),
        (vec!["run".to_owned(), "--scenario".to_owned(), path(&step)], "step_ms"),
        (vec!["run".to_owned(), "--scenario".to_owned(), path(&weights)], "positive, finite sum"),
        (vec!["run".to_owned(), "--scenario".to_owned(), path(&pool)], "ledger.pool_initial_sats"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sim(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("hunter2") && !err.contains('\u{1b}') && err.len() < 10_000, "{args:?}: {err}");
    }
    for (threads, says) in [("-1", "not a whole number"), ("2000", "more than 1024 threads")] {
        let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
            .args(["plan", plan_scenario, "--days", "1", "--seeds", "1"])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{threads}: {err}");
        assert!(err.contains(&format!("RAYON_NUM_THREADS=\"{threads}\"")) && err.contains(says), "{err}");
    }
}

/// The seed's environment variables configure a service, not a simulated run: set (even to
/// garbage) they change nothing, and `ledger-sim` says that it ignores them.
#[test]
fn the_seeds_environment_variables_are_said_to_be_ignored() {
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-sim"));
        cmd.args(["run", "--steps", "1000", "--users", "20", "--json"]).env_remove("DATABASE_URL");
        for name in ledger_core::config::ENV_VARS {
            cmd.env_remove(name);
        }
        cmd.envs(vars.iter().copied());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (report["trace_hash"].clone(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (plain, quiet) = run(&[]);
    assert!(!quiet.contains("ignoring"), "{quiet}");
    let (with_vars, said) = run(&[("FREE_TIER_BUDGET_TRUSTED", "abc"), ("FREE_TIER_POOL_CREDIT_PCT", "5")]);
    assert_eq!(with_vars, plain, "the variables changed the run");
    assert!(
        said.contains("ignoring FREE_TIER_BUDGET_TRUSTED, FREE_TIER_POOL_CREDIT_PCT from the environment"),
        "{said}"
    );
}

/// `run --for` soaks fresh seeds for a while, says at the end how many it ran, and `--junit`
/// writes the verdict for CI: a clean engine passes every case; the seed model fails with its
/// counterexamples and replay commands.
#[test]
fn a_soak_writes_junit_and_fails_on_any_violation() {
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/ci-small.toml");
    let junit = tmp("soak.xml");
    let traces = tmp("soak-traces");
    let out = sim(&[
        "run",
        "--scenario",
        scenario,
        "--for",
        "2s",
        "--junit",
        junit.to_str().unwrap(),
        "--trace-dir",
        traces.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("soak: 2 s of seeds from "), "{err}");
    // Shorter than the progress period, it still says what it ran.
    assert!(err.contains("soak: done: ") && err.contains(" seeds/s, 0 violating seed(s)"), "{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    // I1-I6 and I8 (I7 is judged only on PostgreSQL).
    assert!(xml.contains("tests=\"7\" failures=\"0\""), "{xml}");

    let out = sim(&[
        "run",
        "--engine",
        "seed",
        "--scenario",
        scenario,
        "--for",
        "1s",
        "--junit",
        junit.to_str().unwrap(),
        "--trace-dir",
        traces.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("broke at seed") && err.contains("ledger-sim replay"), "{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    // The replay runs from where the run started (its trace relative to it), and says so.
    assert!(
        xml.contains("<failure") && xml.contains("replay (from the directory the run started in): ledger-sim replay"),
        "{xml}"
    );

    for (args, says) in [
        (vec!["run", "--for", "0s"], "--for"),
        (vec!["run", "--for", "10x"], "--for"),
        (vec!["run", "--for", "5s", "--seeds", "0..3"], "--seeds"),
        (vec!["run", "--engine", "pg-reference", "--for", "5s"], "--for"),
    ] {
        let out = sim(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A seed range split into shards and merged back reports what one run over the range
/// reports, trace hash included; a gap or an overlap is refused.
#[test]
fn sharded_runs_merge_into_the_whole_range() {
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/ci-small.toml");
    let traces = tmp("shard-traces");
    let common = ["run", "--engine", "seed", "--scenario", scenario, "--json", "--trace-dir", traces.to_str().unwrap()];
    let mut files = Vec::new();
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let out = sim(&[&common[..], &["--seeds", "0..40", "--shard", &shard]].concat());
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let file = tmp(&format!("shard{i}.json"));
        std::fs::write(&file, &out.stdout).unwrap();
        files.push(file);
    }
    let whole = sim(&[&common[..], &["--seeds", "0..40"]].concat());
    let whole: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    let names: Vec<&str> = files.iter().rev().map(|f| f.to_str().unwrap()).collect();
    let merged = sim(&[&["merge-runs"][..], &names].concat());
    assert_eq!(merged.status.code(), Some(1), "{}", String::from_utf8_lossy(&merged.stderr));
    let merged: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    for key in ["seeds", "steps", "requests", "coverage", "violations", "seeds_reaching", "never_reached", "trace_hash"]
    {
        assert_eq!(merged[key], whole[key], "{key}");
    }
    let gap = sim(&["merge-runs", names[0], names[2]]);
    assert_eq!(gap.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gap.stderr).contains("a shard is missing"));
    // A report says which shard of which range it is: a missing end shard is named.
    let ends = sim(&["merge-runs", names[1], names[0]]);
    assert_eq!(ends.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ends.stderr).contains("shard(s) 1/3 of 0..40 missing"), "{ends:?}");
    // Ranges run apart merge when they tile, and runs of another scenario do not.
    let mut apart = Vec::new();
    for (range, extra) in [("0..10", &[][..]), ("10..40", &[][..]), ("10..40", &["--users", "50"][..])] {
        let out = sim(&[&common[..], &["--seeds", range], extra].concat());
        let file = tmp(&format!("apart{}.json", apart.len()));
        std::fs::write(&file, &out.stdout).unwrap();
        apart.push(file.to_str().unwrap().to_owned());
    }
    let merged = sim(&["merge-runs", &apart[0], &apart[1]]);
    assert_eq!(merged.status.code(), Some(1), "{}", String::from_utf8_lossy(&merged.stderr));
    let merged: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    for key in ["seeds", "steps", "requests", "coverage", "violations", "trace_hash"] {
        assert_eq!(merged[key], whole[key], "{key}");
    }
    let other = sim(&["merge-runs", &apart[0], &apart[2]]);
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("shards of different runs"), "{other:?}");
}

/// `--steer` says which marks it boosted (text and JSON), and is refused where it cannot run.
#[test]
fn a_steered_run_reports_the_marks_it_boosted() {
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/ci-small.toml");
    let out = sim(&["run", "--scenario", scenario, "--seeds", "0..200", "--steer", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let boosted = v["steering"]["boosted"].as_object().unwrap();
    assert!(boosted.contains_key("window_rollover_in_flight"), "{boosted:?}");
    assert_eq!(v["never_reached"], serde_json::json!([]));
    assert!(v["seeds_reaching"]["window_rollover_in_flight"].as_u64().unwrap() > 0);
    let text = sim(&["run", "--scenario", scenario, "--seeds", "0..200", "--steer"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("boosted window_rollover_in_flight: "), "{text}");
    let pg = sim(&["run", "--engine", "pg-reference", "--steer"]);
    assert_eq!(pg.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&pg.stderr).contains("--steer runs in-memory engines only"));
}

#[test]
#[cfg(not(feature = "mutants"))]
fn a_pg_mutant_needs_a_build_with_the_mutants_feature() {
    let out = sim(&[
        "run",
        "--engine",
        "pg-reference",
        "--pg-mutant",
        "fixtures/pg-mutants/ledger_decide_locked_no_for_update.sql",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pg-mutant needs a build with `--features mutants`"), "{err}");
    // Its replay too, before the trace is read.
    let out = sim(&[
        "replay",
        "no-such-trace.jsonl",
        "--pg-mutant",
        "fixtures/pg-mutants/ledger_decide_locked_no_for_update.sql",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pg-mutant needs a build with `--features mutants`"), "{err}");
}

#[test]
fn an_unreachable_database_is_named_at_once_once_and_without_its_password() {
    let out = sim(&[
        "run",
        "--engine",
        "pg-reference",
        "--database-url",
        "postgres://someone:hunter2@127.0.0.1:1/x",
        "--seeds",
        "0..1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("hunter2") && !String::from_utf8_lossy(&out.stdout).contains("hunter2"), "{stderr}");
    assert!(stderr.contains("postgres://someone:***@127.0.0.1:1/x"), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("ledger-sim: error:")).expect("an error line");
    assert_eq!(error.matches("Connection refused").count(), 1, "the cause once, not repeated: {error}");
}

/// A counterexample that was only cut after its first violation, not shrunk (here the
/// shrinker on the implementation has no replays to spend), says so: `"reduction": "cut"` in
/// JSON and "cut to", never "shrunk to", in the text and in JUnit.
#[test]
fn a_counterexample_only_cut_is_not_called_shrunk() {
    let sim_bin = env!("CARGO_BIN_EXE_ledger-sim");
    // `ledger-sim serve` behind a filter that credits more than the rules give: a bug the
    // in-memory twin does not have, so it is not shrunk on the twin.
    let sed = r#"s/"outcome":"credited","credited_sats":\([1-9][0-9]*\)}/"outcome":"credited","credited_sats":1\1}/"#;
    let exec = format!("'{sim_bin}' serve | sed -u '{sed}'");
    let traces = tmp("cut-traces");
    let junit = tmp("cut.xml");
    let args = |json: bool| {
        let mut a = vec!["run", "--engine", "exec", "--exec", &exec, "--seeds", "0..1", "--users", "40"];
        a.extend(["--steps", "600", "--max-replays", "0", "--trace-dir", traces.to_str().unwrap()]);
        a.extend(if json { vec!["--json"] } else { vec!["--junit", junit.to_str().unwrap()] });
        a
    };
    let out = sim(&args(true));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cut: Vec<&serde_json::Value> =
        r["violations"].as_array().unwrap().iter().filter(|v| v["invariant"] != "divergence").collect();
    assert!(!cut.is_empty(), "{text}");
    for v in &cut {
        assert_eq!(v["reduction"], "cut", "{v}");
        assert!(v["detail"].as_str().unwrap().contains("[not shrunk: cut after event "), "{v}");
    }
    let out = sim(&args(false));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  cut to ") && text.contains("after its first violation, not shrunk:"), "{text}");
    assert!(!text.contains("shrunk to"), "{text}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("cut to ") && !xml.contains("shrunk to"), "{xml}");
}

#[test]
fn exec_timeout_takes_seconds_or_a_duration_from_one_second_to_an_hour() {
    let sim_bin = env!("CARGO_BIN_EXE_ledger-sim");
    let serve = format!("'{sim_bin}' serve");
    for spelled in ["3", "3s", "1500ms", "2m"] {
        let out = sim(&[
            "run",
            "--engine",
            "exec",
            "--exec",
            &serve,
            "--exec-timeout",
            spelled,
            "--seeds",
            "0..1",
            "--users",
            "5",
            "--steps",
            "50",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{spelled}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for (spelled, says) in [
        ("500ms", "from 1 s to 1 h"),
        ("0", "from 1 s to 1 h"),
        ("3601", "from 1 s to 1 h"),
        ("2h", "from 1 s to 1 h"),
        ("3x", "expected a duration"),
        ("1.5s", "expected a duration"),
        ("", "expected a duration"),
    ] {
        for command in [&["run", "--engine", "exec", "--exec", &serve][..], &["conform", "--exec", &serve][..]] {
            let args = [command, &["--exec-timeout", spelled]].concat();
            let out = sim(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(&format!("--exec-timeout {spelled}: ")), "{args:?}: {err}");
            assert!(err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
        }
    }

    // The replay command of an exec counterexample carries the timeout as it parses back.
    let sed = r#"s/"outcome":"credited","credited_sats":\([1-9][0-9]*\)}/"outcome":"credited","credited_sats":1\1}/"#;
    let exec = format!("'{sim_bin}' serve | sed -u '{sed}'");
    let traces = tmp("timeout-traces");
    let out = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--exec-timeout",
        "1500ms",
        "--seeds",
        "0..1",
        "--users",
        "40",
        "--steps",
        "600",
        "--max-replays",
        "0",
        "--json",
        "--trace-dir",
        traces.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let replay = r["violations"][0]["replay"].as_str().unwrap();
    assert!(replay.ends_with(" --exec-timeout 1500ms"), "{replay}");
    let bin_dir = std::path::Path::new(sim_bin).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let replayed = Command::new("sh").args(["-c", replay]).env("PATH", path).output().unwrap();
    assert_eq!(
        replayed.status.code(),
        Some(1),
        "`{replay}`: {}{}",
        String::from_utf8_lossy(&replayed.stdout),
        String::from_utf8_lossy(&replayed.stderr)
    );
}

/// A database URL that is not PostgreSQL's, or does not parse, is refused before any
/// connection (sqlx would try localhost:5432), naming the option or the variable it came from
/// and never printing its password.
#[test]
fn a_garbled_database_url_is_refused_before_any_connection() {
    let sim_bin = env!("CARGO_BIN_EXE_ledger-sim");
    let pg_run = ["run", "--engine", "pg-reference", "--seeds", "0..1", "--users", "5", "--steps", "20"];
    let serve = format!("'{sim_bin}' serve");
    let exec_run = ["run", "--engine", "exec", "--exec", &serve, "--exec-db", "--seeds", "0..1"];
    let flag = |command: &[&str], url: &str| -> (Vec<String>, Option<String>) {
        let mut args: Vec<String> = command.iter().map(|a| a.to_string()).collect();
        args.extend(["--database-url".to_owned(), url.to_owned()]);
        (args, None)
    };
    let var = |command: &[&str], url: &str| -> (Vec<String>, Option<String>) {
        (command.iter().map(|a| a.to_string()).collect(), Some(url.to_owned()))
    };
    for ((args, env), named, shown, says) in [
        (flag(&pg_run, "gar:bage//x"), "--database-url", "<unparseable URL, not shown>", "not a PostgreSQL URL"),
        (flag(&["audit"], "gar:bage//x"), "--database-url", "<unparseable URL, not shown>", "not a PostgreSQL URL"),
        (var(&pg_run, "gar:bage//x"), "DATABASE_URL", "<unparseable URL, not shown>", "not a PostgreSQL URL"),
        (var(&["audit"], "gar:bage//x"), "DATABASE_URL", "<unparseable URL, not shown>", "not a PostgreSQL URL"),
        (var(&exec_run, "gar:bage//x"), "DATABASE_URL", "<unparseable URL, not shown>", "not a PostgreSQL URL"),
        (flag(&pg_run, "mysql://u:hunter2@h/db"), "--database-url", "mysql://u:***@h/db", "not a PostgreSQL URL"),
        (
            flag(&["audit"], "postgres:u:hunter2@h/db"),
            "--database-url",
            "<unparseable URL, not shown>",
            "not a PostgreSQL URL",
        ),
        (
            var(&pg_run, "u:hunter2@127.0.0.1/db"),
            "DATABASE_URL",
            "<unparseable URL, not shown>",
            "not a PostgreSQL URL",
        ),
        (var(&["audit"], "gar:u:hunter2@x//y"), "DATABASE_URL", "<unparseable URL, not shown>", "not a PostgreSQL URL"),
        // libpq's key/value form is not taken, and its password is not shown either.
        (
            flag(&["audit"], "host=127.0.0.1 port=1 password=hunter2"),
            "--database-url",
            "host=127.0.0.1 port=1 password=***",
            "not a PostgreSQL URL",
        ),
        (
            flag(&pg_run, "postgres://u:hunter2@127.0.0.1:notaport/db"),
            "--database-url",
            // Does not parse: where its password ends is anyone's guess, so the scheme alone.
            "postgres://<unparseable URL, not shown>",
            "not a valid PostgreSQL URL",
        ),
        (
            var(&["audit"], "postgresql://u:hunter2@127.0.0.1:99999/db"),
            "DATABASE_URL",
            "postgresql://<unparseable URL, not shown>",
            "not a valid PostgreSQL URL",
        ),
    ] {
        let mut cmd = Command::new(sim_bin);
        cmd.args(&args).env_remove("DATABASE_URL");
        if let Some(url) = &env {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {all}");
        assert!(err.contains(&format!("{named} \"{shown}\": {says}")), "{args:?} {env:?}: {err}");
        assert!(!all.contains("hunter2") && !all.contains("panicked"), "{args:?} {env:?}: {all}");
        // Refused, not tried: no connection, no throwaway cluster, no database made.
        for tried in ["refused", "localhost", "throwaway", "waiting at most", "resetting"] {
            assert!(!err.contains(tried), "{args:?} {env:?}: {err}");
        }
    }
}

/// A negative number, or a value that starts like an option (`-1s`, `-1/2`, `-1..3`), given to
/// a number or duration option of any subcommand is refused by that option's own parser,
/// naming it: never clap's "unexpected argument", which blames a flag the user did not mean.
#[test]
fn a_negative_value_is_refused_by_its_options_parser() {
    let sim_bin = env!("CARGO_BIN_EXE_ledger-sim");
    let serve = format!("'{sim_bin}' serve");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/plan-launch.toml");
    let trace = tmp("no-such-trace.jsonl");
    let trace = trace.to_str().unwrap();
    let exec_run = ["run", "--engine", "exec", "--exec", &serve, "--seeds", "0..1"];
    let pg_run = ["run", "--engine", "pg-reference", "--seeds", "0..1"];
    for (command, option, value, says) in [
        (&["conform", "--exec", &serve][..], "--exec-timeout", "-1", "--exec-timeout -1: expected a duration"),
        (&["conform", "--exec", &serve], "--exec-timeout", "-1s", "--exec-timeout -1s: expected a duration"),
        (&["bench-exec", "--exec", &serve], "--exec-timeout", "-3", "--exec-timeout -3: expected a duration"),
        (&["bench-exec", "--exec", &serve], "--calls", "-5", "invalid value '-5' for '--calls"),
        (&["bench-exec", "--exec", &serve], "--in-flight", "-1", "invalid value '-1' for '--in-flight"),
        (&["replay", trace], "--exec-timeout", "-1", "--exec-timeout -1: expected a duration"),
        (&["replay", trace], "--kill-child-at", "-1", "invalid value '-1' for '--kill-child-at"),
        (&["check-trace", trace], "--context", "-1", "invalid value '-1' for '--context"),
        (&exec_run, "--exec-timeout", "-1", "--exec-timeout -1: expected a duration"),
        (&exec_run, "--exec-timeout", "-1500ms", "--exec-timeout -1500ms: expected a duration"),
        (&exec_run, "--kill-child-at", "-1", "invalid value '-1' for '--kill-child-at"),
        (&["run"], "--for", "-5m", "\"-5m\": expected a duration"),
        (&["run"], "--seeds", "-1..3", "bad range start \"-1\""),
        (&["run", "--seeds", "0..4"], "--shard", "-1/2", "invalid value '-1/2' for '--shard"),
        (&["plan", scenario, "--json"], "--shard", "-1/2", "invalid value '-1/2' for '--shard"),
        (&["run"], "--kill-connections", "-0.5", "--kill-connections needs --engine pg-reference or pg-seed"),
        (&pg_run, "--concurrency", "-1", "invalid value '-1' for '--concurrency"),
        (&pg_run, "--kill-connections", "-0.5", "--kill-connections -0.5: must be a probability in 0..=1"),
        (&pg_run, "--lost-ack", "-1e-3", "--lost-ack -0.001: must be a probability in 0..=1"),
        (&pg_run, "--crash-server-at", "-1", "invalid value '-1' for '--crash-server-at"),
        (&pg_run, "--give-up-after", "-1", "invalid value '-1' for '--give-up-after"),
        (&pg_run, "--batch-lanes", "-1", "invalid value '-1' for '--batch-lanes"),
    ] {
        let args = [command, &[option, value]].concat();
        let out = Command::new(sim_bin).args(&args).env_remove("DATABASE_URL").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// An output named as one of the command's inputs is refused, exit 2, and the input is left as
/// it was: a `--junit` over the trace replayed or the scenario run would lose the user's data.
/// A missing directory of an output is made (the README's `--junit target/ledger-sim/junit.xml`
/// in a fresh checkout).
#[test]
fn an_output_never_replaces_an_input_and_its_directory_is_made() {
    let trace = tmp("same-trace.jsonl");
    let out = sim(&[
        "run",
        "--engine",
        "seed",
        "--seed",
        "0",
        "--users",
        "40",
        "--steps",
        "300",
        "--max-replays",
        "0",
        "--json",
        "--trace-dir",
        tmp("same-traces").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::copy(v["violations"][0]["trace"].as_str().unwrap(), &trace).unwrap();
    let vectors = tmp("same-vectors.jsonl");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/conformance/commands.jsonl"), &vectors).unwrap();
    let scenario = tmp("same-scenario.toml");
    std::fs::write(&scenario, "n_users = 10\nn_steps = 50\n").unwrap();
    let run_report = tmp("same-run.json");
    std::fs::write(&run_report, sim(&["run", "--scenario", scenario.to_str().unwrap(), "--json"]).stdout).unwrap();
    let plan_part = tmp("same-plan.json");
    let tipping = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/plan-tipping.toml");
    std::fs::write(&plan_part, sim(&["plan", tipping, "--seeds", "2", "--json"]).stdout).unwrap();
    let [trace_s, vectors_s, scenario_s, run_s, plan_s] =
        [&trace, &vectors, &scenario, &run_report, &plan_part].map(|p| p.to_str().unwrap());
    // `check-trace`, `merge-runs` and `merge` read their inputs after checking their outputs:
    // the inputs are announced first, so the refusal still comes before the work.
    for (args, input, flag) in [
        (vec!["replay", trace_s, "--junit", trace_s], &trace, "--junit"),
        (vec!["check-trace", vectors_s, "--junit", vectors_s], &vectors, "--junit"),
        (vec!["run", "--scenario", scenario_s, "--junit", scenario_s], &scenario, "--junit"),
        (vec!["merge-runs", run_s, "--junit", run_s], &run_report, "--junit"),
        (vec!["merge", plan_s, "--report", plan_s], &plan_part, "--report"),
    ] {
        let before = std::fs::read(input).unwrap();
        let out = sim(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains("the same file as the input"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: refused before any output");
        assert_eq!(std::fs::read(input).unwrap(), before, "{args:?}: the input is as it was");
    }

    // An --out naming the history --fit reads is refused, and the history is as it was.
    let history = tmp("same-history.csv");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/history/fit-small.csv"), &history).unwrap();
    let h = history.to_str().unwrap();
    let out = sim(&["plan", "--fit", h, "--out", h]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--out") && err.contains("the same file as the input"), "{err}");
    let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/history/fit-small.csv")).unwrap();
    assert_eq!(std::fs::read(&history).unwrap(), fixture);

    let junit = tmp("made/for/it/junit.xml");
    let out = sim(&["run", "--scenario", scenario_s, "--junit", junit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<testsuite"));
}

/// A run whose seeds would not fit in memory is refused before any seed, naming what it needs
/// and what to give less of, instead of being aborted by a failed allocation with nothing said.
/// A thousand seeds at a time of the largest scenario fit on no machine.
#[test]
fn a_run_too_big_for_memory_is_refused_before_any_seed() {
    let scenario = tmp("too-big.toml");
    std::fs::write(&scenario, "n_users = 10000000\nn_steps = 100000000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["run", "--scenario", scenario.to_str().unwrap(), "--seeds", "0..1000"])
        .env("RAYON_NUM_THREADS", "1000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("this run needs about") && err.contains("1000 seed(s) at a time"), "{err}");
    assert!(err.contains("give fewer steps") && err.contains("GiB is available"), "{err}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&out.stdout));
}
