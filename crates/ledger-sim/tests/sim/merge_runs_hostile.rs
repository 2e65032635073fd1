//! `ledger-sim merge-runs` against shards a hostile tester handed it: concurrent shards, shards
//! of different runs, steered shards, a missing shard, counts that overflow, a full disk.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

const SIM: &str = env!("CARGO_BIN_EXE_ledger-sim");

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ledger-sim-merge-runs-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A clean in-memory `run --json` report of `seeds`, with `changes` written over it.
fn report(seeds: &str, changes: Value) -> Value {
    let mut r = json!({
        "engine": "reference",
        "scheduler": "random",
        "seeds": seeds,
        "steps": 100,
        "requests": 20,
        "violations": [],
        "coverage": {"decision_free": 3, "decision_gate": 0},
        "trace_hash": "0123456789abcdef",
        "steps_per_sec": 1000,
        "seeds_reaching": {"decision_free": 2, "decision_gate": 0},
        "never_reached": ["decision_gate"],
    });
    for (k, v) in changes.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

/// Writes each report to a file named after it and merges them.
fn merge(reports: &[(&str, Value)]) -> (Output, Value) {
    let d = dir();
    let files: Vec<String> = reports
        .iter()
        .map(|(name, r)| {
            let f = d.join(name);
            std::fs::write(&f, serde_json::to_vec_pretty(r).unwrap()).unwrap();
            f.display().to_string()
        })
        .collect();
    let out = Command::new(SIM).arg("merge-runs").args(&files).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn refused(out: &Output, says: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for s in says {
        assert!(err.contains(s), "{s:?} not in: {err}");
    }
}

/// `run --engine exec --concurrency N --shard I/N` reports have no trace hash to fold
/// (`"trace_hash": null, "deterministic": false`); their shards merge all the same, to none.
/// Reports of an older `run`, which wrote a text in its place, still merge, with new ones too.
#[test]
fn concurrent_shards_merge_to_no_trace_hash() {
    let new = json!({"engine": "exec-reference (concurrency 4)", "trace_hash": null, "deterministic": false});
    let old = json!({"engine": "exec-reference (concurrency 4)", "trace_hash": "concurrent (not deterministic)"});
    let strip = |mut r: Value| {
        r.as_object_mut().unwrap().remove("seeds_reaching");
        r.as_object_mut().unwrap().remove("never_reached");
        r
    };
    for (first, second) in [(&new, &new), (&old, &old), (&old, &new)] {
        let (out, v) = merge(&[
            ("cs1.json", strip(report("0..2", first.clone()))),
            ("cs2.json", strip(report("2..4", second.clone()))),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!((&v["trace_hash"], &v["deterministic"]), (&Value::Null, &json!(false)), "{v}");
        assert_eq!((v["seeds"].as_str(), v["steps"].as_u64()), (Some("0..4"), Some(200)));
    }
    let (_, v) = merge(&[("d1.json", report("0..2", json!({}))), ("d2.json", report("2..4", json!({})))]);
    assert_eq!(v["deterministic"], true, "{v}");
    assert!(v["trace_hash"].as_str().is_some_and(|h| h.len() == 16), "{v}");
    for odd in [json!({"trace_hash": null}), json!({"trace_hash": "concurrent (not deterministic)"})] {
        let (out, _) = merge(&[("det.json", report("0..2", json!({}))), ("conc.json", report("2..4", odd))]);
        refused(&out, &["det.json", "conc.json", "different runs"]);
    }
    // A report at odds with itself, or with a hash that is not one.
    let (out, _) = merge(&[("liar.json", report("0..2", json!({"deterministic": false})))]);
    refused(&out, &["liar.json", "deterministic is false but trace_hash is \"0123456789abcdef\""]);
    let (out, _) = merge(&[("nohash.json", report("0..2", json!({"trace_hash": null, "deterministic": true})))]);
    refused(&out, &["nohash.json", "deterministic is true but trace_hash is null"]);
    let (out, _) = merge(&[("text.json", report("0..2", json!({"trace_hash": "concurrent"})))]);
    refused(&out, &["text.json", "neither a hex number nor null"]);
}

/// Shards of different runs are refused, naming both files and what differs: steered with
/// unsteered, and (when the reports record it) another scenario.
#[test]
fn shards_of_different_runs_are_refused_naming_what_differs() {
    let steering = json!({"steering": {"block": 32, "window_blocks": 4, "aimed_seeds": 1, "warmup_seeds": 0, "boosted": {}, "favoured": {}}});
    let (out, _) = merge(&[("steered.json", report("0..2", steering)), ("plain.json", report("2..4", json!({})))]);
    refused(&out, &["steered.json", "plain.json", "steering \"--steer\" vs \"no --steer\""]);
    let small = json!({"scenario": {"n_users": 40, "n_steps": 600}});
    let other = json!({"scenario": {"n_users": 50, "n_steps": 600}});
    let (out, _) = merge(&[("small.json", report("0..2", small.clone())), ("other.json", report("2..4", other))]);
    refused(&out, &["small.json", "other.json", "scenario.n_users 40 vs 50"]);
    let (out, _) = merge(&[("small.json", report("0..2", small)), ("none.json", report("2..4", json!({})))]);
    refused(&out, &["scenario", "not recorded"]);
    // Sizes no `--shard I/N` split gives: 2 seeds, then 5.
    let (out, _) = merge(&[("a.json", report("0..2", json!({}))), ("b.json", report("2..7", json!({})))]);
    refused(&out, &["a.json has 2 seeds", "b.json has 5", "different splits"]);
}

/// The `steering` of steered shards is merged: counts add up mark by mark, the latest
/// shard's favoured options kept.
#[test]
fn steered_shards_merge_their_steering() {
    let st = |aimed: u64, reached: u64, warm: u64, fav: &str| {
        json!({"steering": {"block": 32, "window_blocks": 4, "aimed_seeds": aimed, "warmup_seeds": warm,
            "boosted": {"window_rollover_in_flight": {"aimed_seeds": aimed, "reached": reached}},
            "favoured": {"window_rollover_in_flight": [fav]}}})
    };
    let (out, v) = merge(&[
        ("s1.json", report("0..54", st(11, 2, 0, "ttl=1ms"))),
        ("s2.json", report("54..107", st(16, 5, 128, "ttl=250ms"))),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = &v["steering"];
    assert_eq!(
        (s["aimed_seeds"].as_u64(), s["warmup_seeds"].as_u64(), s["block"].as_u64()),
        (Some(27), Some(128), Some(32)),
        "{s}"
    );
    assert_eq!(s["boosted"]["window_rollover_in_flight"], json!({"aimed_seeds": 27, "reached": 7}));
    assert_eq!(s["favoured"]["window_rollover_in_flight"], json!(["ttl=250ms"]));
}

/// Reports that say which shard they are (`"shard": {"index", "count", "seeds"}`) are checked
/// to be a whole set: a missing first or last shard is named.
#[test]
fn a_missing_end_shard_is_named_when_the_reports_say_which_shard_they_are() {
    let sh = |i: u64| json!({"shard": {"index": i, "count": 3, "seeds": "0..20"}});
    let (out, _) = merge(&[("sh_2.json", report("7..14", sh(2))), ("sh_3.json", report("14..20", sh(3)))]);
    refused(&out, &["shard(s) 1/3 of 0..20 missing"]);
    let (out, v) = merge(&[
        ("sh_1.json", report("0..7", sh(1))),
        ("sh_2.json", report("7..14", sh(2))),
        ("sh_3.json", report("14..20", sh(3))),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(v["seeds"], "0..20");
    let other = json!({"shard": {"index": 3, "count": 3, "seeds": "0..21"}});
    let (out, _) = merge(&[
        ("sh_1.json", report("0..7", sh(1))),
        ("sh_2.json", report("7..14", sh(2))),
        ("x.json", report("14..21", other)),
    ]);
    refused(&out, &["x.json is shard 3/3 of 0..21", "different runs"]);
}

/// `{"shard": ...}` of shard `index`/`count` of `whole`.
fn shard(index: u64, count: u64, whole: &str) -> Value {
    json!({"shard": {"index": index, "count": count, "seeds": whole}})
}

/// A shard missing between two others is named by its number and seeds, not only as "a shard";
/// every missing one is, wherever it is.
#[test]
fn a_missing_middle_shard_is_named() {
    let (out, _) = merge(&[
        ("m_1.json", report("0..5", shard(1, 4, "0..20"))),
        ("m_3.json", report("10..15", shard(3, 4, "0..20"))),
        ("m_4.json", report("15..20", shard(4, 4, "0..20"))),
    ]);
    refused(
        &out,
        &[
            "m_1.json covers seeds 0..5 and",
            "m_3.json starts at 10: a shard is missing, shard(s) 2/4 of 0..20 (seeds 5..10)",
        ],
    );
    let (out, _) = merge(&[
        ("m_2.json", report("5..10", shard(2, 4, "0..20"))),
        ("m_4.json", report("15..20", shard(4, 4, "0..20"))),
    ]);
    refused(
        &out,
        &[
            "shard(s) 1/4 of 0..20 missing (seeds 0..5), before ",
            "m_2.json (the first report)",
            "shard(s) 3/4 of 0..20 (seeds 10..15)",
        ],
    );
}

/// A shard of another split of the same range (2/5 among /4 shards) overlaps its neighbours:
/// what is said is that the shard counts differ, naming it, not that a shard was given twice.
#[test]
fn shards_of_different_counts_are_named_as_such() {
    let (out, _) = merge(&[
        ("c_1.json", report("0..5", shard(1, 4, "0..20"))),
        ("c2of5.json", report("4..8", shard(2, 5, "0..20"))),
        ("c_3.json", report("10..15", shard(3, 4, "0..20"))),
        ("c_4.json", report("15..20", shard(4, 4, "0..20"))),
    ]);
    refused(&out, &["c2of5.json is shard 2/5 of 0..20 but", "c_1.json is shard 1/4 of 0..20", "shard counts differ"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("overlap"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A report that does not say which shard it is, among shards, is the one named as such,
/// wherever it sorts.
#[test]
fn the_report_that_is_no_shard_is_the_one_named() {
    let (out, _) = merge(&[
        ("p_rest.json", report("7..10", json!({}))),
        ("p_1.json", report("0..7", shard(1, 3, "0..20"))),
        ("p_2.json", report("7..10", shard(2, 3, "0..20"))),
        ("p_3.json", report("14..20", shard(3, 3, "0..20"))),
    ]);
    refused(&out, &["says which shard it is and", "p_rest.json does not"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("p_1.json does not"));
}

/// Reports of `run --seeds A..B` without `--shard` fill what the shards of a set left (the
/// rest of a shard a signal stopped, a shard run again), when the reports record their
/// scenario; what still lies in no report, and what is covered twice, is named.
#[test]
fn reports_without_a_shard_fill_the_gaps_of_a_shard_set() {
    let scenario = json!({"n_users": 40, "n_steps": 600});
    let sh = |i: u64, seeds: &str| {
        let mut r = report(seeds, shard(i, 4, "0..20"));
        r["scenario"] = scenario.clone();
        r
    };
    let plain = |seeds: &str| report(seeds, json!({"scenario": scenario}));
    // The rest of shard 2 (cut at 7), and shard 3 run again as a range.
    let (out, v) = merge(&[
        ("f_1.json", sh(1, "0..5")),
        ("f_2.json", sh(2, "5..7")),
        ("f_rest.json", plain("7..10")),
        ("f_3.json", plain("10..15")),
        ("f_4.json", sh(4, "15..20")),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((v["seeds"].as_str(), v["steps"].as_u64()), (Some("0..20"), Some(500)), "{v}");
    // A rest that stops short, one run over more than the shard left, one outside the range.
    let (out, _) = merge(&[
        ("f_1.json", sh(1, "0..5")),
        ("f_2.json", sh(2, "5..7")),
        ("f_rest.json", plain("7..9")),
        ("f_34.json", plain("10..20")),
    ]);
    refused(&out, &["seeds 9..10 of shard 2/4 are in no report, between ", "f_rest.json and "]);
    let (out, _) = merge(&[("f_1.json", sh(1, "0..5")), ("f_2.json", sh(2, "5..7")), ("f_more.json", plain("6..20"))]);
    refused(&out, &["f_2.json covers seeds 5..7 and ", "f_more.json covers seeds 6..20: they overlap"]);
    // The rest run with `--shard` kept: a shard of another range, and said so.
    let mut kept = sh(2, "11..14");
    kept["shard"]["seeds"] = json!("7..20");
    let (out, _) = merge(&[("f_1.json", sh(1, "0..5")), ("f_2.json", sh(2, "5..7")), ("f_kept.json", kept)]);
    refused(&out, &["f_kept.json is shard 2/4 of 7..20 but", "without `--shard`: its report then fills the gap"]);
    let (out, _) = merge(&[("f_1.json", sh(1, "0..5")), ("f_out.json", plain("5..25"))]);
    refused(&out, &["f_out.json covers seeds 5..25, outside 0..20, the range of the shards"]);
    // Without the scenario, nothing says the range is of the same run.
    let (out, _) =
        merge(&[("n_1.json", report("0..10", shard(1, 2, "0..20"))), ("n_2.json", report("10..20", json!({})))]);
    refused(
        &out,
        &["n_1.json says which shard it is and ", "n_2.json does not, and they do not record their scenario"],
    );
}

/// Counts that do not fit a u64 together are refused, not wrapped around.
#[test]
fn counts_that_overflow_are_refused() {
    let max = u64::MAX;
    let (out, _) = merge(&[
        ("o1.json", report("0..2", json!({"steps": max}))),
        ("o2.json", report("2..4", json!({"steps": max}))),
    ]);
    refused(&out, &["o2.json", "steps", "overflows"]);
    let cov = json!({"coverage": {"decision_free": max, "decision_gate": 0}});
    let (out, _) = merge(&[("c1.json", report("0..2", cov.clone())), ("c2.json", report("2..4", cov))]);
    refused(&out, &["c2.json", "coverage.decision_free", "overflows"]);
    let (out, _) = merge(&[
        ("f1.json", report("0..2", json!({"coverage": {"decision_free": "many"}}))),
        ("f2.json", report("2..4", json!({}))),
    ]);
    refused(&out, &["f1.json", "coverage.decision_free is not a whole number"]);
}

/// A full disk is an error (exit 2), not a panic.
#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let d = dir();
    let (a, b) = (d.join("full1.json"), d.join("full2.json"));
    std::fs::write(&a, report("0..2", json!({})).to_string()).unwrap();
    std::fs::write(&b, report("2..4", json!({})).to_string()).unwrap();
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
    let out = Command::new(SIM).arg("merge-runs").arg(&a).arg(&b).stdout(full).output().unwrap();
    refused(&out, &["writing the merged report"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// The report of a run a signal stopped before its first seed covers no seed: it is refused by
/// name, with what to do, not read as a broken range.
#[test]
fn a_report_of_no_seed_is_named_as_such() {
    let (out, _) = merge(&[("empty.json", report("0..0", json!({}))), ("rest.json", report("0..10", json!({})))]);
    refused(&out, &["empty.json: seeds \"0..0\" covers no seed", "leave it out"]);
}

/// The merged JUnit says in how many seeds I8 was not judged (the linearizability search out
/// of its budget), as each shard's coverage counted them; in none of them, it is skipped.
#[test]
fn the_merged_junit_says_where_i8_was_not_judged() {
    let concurrent = |seeds: &str, undecided: u64| {
        let mut r = report(
            seeds,
            json!({"engine": "exec-reference (concurrency 4)", "scheduler": null, "trace_hash": null, "deterministic": false}),
        );
        r["coverage"]["linearizability_undecided"] = json!(undecided);
        r.as_object_mut().unwrap().remove("seeds_reaching");
        r.as_object_mut().unwrap().remove("never_reached");
        r
    };
    let d = dir();
    for (undecided, said) in [
        ((1, 0), "<system-out>not judged in 1 of 4 seed(s)"),
        ((2, 2), "<skipped message=\"not judged in any of the 4 seed(s)"),
    ] {
        let files: Vec<String> =
            [("u1.json", concurrent("0..2", undecided.0)), ("u2.json", concurrent("2..4", undecided.1))]
                .iter()
                .map(|(name, r)| {
                    let f = d.join(name);
                    std::fs::write(&f, serde_json::to_vec(r).unwrap()).unwrap();
                    f.display().to_string()
                })
                .collect();
        let junit = d.join("u.xml");
        let out = Command::new(SIM).arg("merge-runs").args(&files).arg("--junit").arg(&junit).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.contains(said), "{xml}");
    }
}

/// The JUnit suite says what ran: a lockstep run, a shard of a fleet and the merged fleet each
/// have a name of their own (mode, engine, seeds, shards), the same on every run.
#[test]
fn junit_suites_of_a_run_a_shard_and_a_fleet_are_named_apart() {
    use crate::common::{root, scratch, sim_in};
    let d = scratch("junit-suite-names");
    let suite = |path: &str| {
        let xml = std::fs::read_to_string(path).unwrap();
        let start = xml.find("<testsuite name=\"").unwrap() + "<testsuite name=\"".len();
        xml[start..start + xml[start..].find('"').unwrap()].to_owned()
    };
    let small = ["--users", "10", "--steps", "100"];
    let whole = format!("{d}/whole.xml");
    let (code, out, err) = sim_in(&root(), &[&["run", "--seeds", "0..4", "--junit", &whole][..], &small].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(suite(&whole), "ledger-sim run: reference, lockstep, seeds 0..4");
    let mut shards = Vec::new();
    for i in 1..=2 {
        let (json, xml) = (format!("{d}/shard{i}.json"), format!("{d}/shard{i}.xml"));
        let shard = format!("{i}/2");
        let args = ["run", "--seeds", "0..4", "--shard", &shard, "--json", "--junit", &xml];
        let (code, out, err) = sim_in(&root(), &[&args[..], &small].concat());
        assert_eq!(code, 0, "{err}");
        std::fs::write(&json, out).unwrap();
        shards.push(json);
        let seeds = if i == 1 { "0..2" } else { "2..4" };
        assert_eq!(suite(&xml), format!("ledger-sim run: reference, lockstep, seeds {seeds} (shard {i}/2 of 0..4)"));
    }
    let merged = format!("{d}/merged.xml");
    let (code, _, err) = sim_in(&root(), &["merge-runs", &shards[0], &shards[1], "--junit", &merged]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(suite(&merged), "ledger-sim merge-runs: reference, lockstep, seeds 0..4 from 2 shard(s)");
}

/// Shards of an exec run merge their findings that are no invariant (a divergence, an
/// implementation's `bad_answer`, `crash` or `no_answer`, a concurrent run's `engine_error`):
/// each in the merged report and as a failed case of its JUnit (exit 1), never refused as an
/// unknown invariant (exit 2), which threw the fleet's findings away.
#[test]
fn findings_that_are_no_invariant_merge() {
    let finding = |id: &str, seed: u64| {
        json!({
            "invariant": id, "name": format!("{id} found"), "seed": seed, "seeds": [seed],
            "detail": format!("seed {seed}: what {id} says"), "shrunk_flows": 1, "shrunk_events": 1,
            "reduction": "shrunk", "steps": [], "trace": format!("t/{id}-{seed}.jsonl"),
            "replay": format!("ledger-sim replay t/{id}-{seed}.jsonl --exec svc"),
        })
    };
    // An exec run's report: no seeds_reaching, as a lockstep run on a child writes none.
    let exec = |seeds: &str, found: Vec<Value>| {
        let mut r = report(seeds, json!({"engine": "exec-reference", "violations": found}));
        let o = r.as_object_mut().unwrap();
        o.remove("seeds_reaching");
        o.remove("never_reached");
        r
    };
    let d = dir();
    let junit = d.join("findings.xml");
    let files: Vec<String> = [
        ("exec-a.json", exec("0..2", vec![finding("bad_answer", 0), finding("divergence", 1)])),
        ("exec-b.json", exec("2..4", vec![finding("bad_answer", 3), finding("crash", 2), finding("no_answer", 3)])),
    ]
    .iter()
    .map(|(name, r)| {
        let f = d.join(name);
        std::fs::write(&f, serde_json::to_vec_pretty(r).unwrap()).unwrap();
        f.display().to_string()
    })
    .collect();
    let out = Command::new(SIM).arg("merge-runs").args(&files).arg("--junit").arg(&junit).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let merged: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> =
        merged["violations"].as_array().unwrap().iter().map(|v| v["invariant"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bad_answer", "crash", "divergence", "no_answer"], "{merged}");
    assert_eq!(merged["violations"][0]["seeds"], json!([0, 3]), "{merged}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    for id in ids {
        assert!(xml.contains(&format!("type=\"{id}\"")), "{id}: {xml}");
    }
}
