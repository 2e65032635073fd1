//! A counterexample shrunk on an `--exec` implementation itself is bounded by 30 s of wall
//! time unless `--max-replays` is given: then by replays alone, so that the same command
//! reports the same bytes however fast the implementation answers (a CI's two runs of one
//! commit must agree).

use crate::common::{broken, json, root, scratch, sim_in};

#[test]
fn with_max_replays_a_shrink_on_the_implementation_reports_the_same_bytes() {
    // Every credit is said to be larger than it is (a 1 written before its digits): a divergence the in-memory twin does
    // not have, shrunk on the implementation.
    let exec = broken(r#"s/"credited_sats":\([1-9][0-9]*\)/"credited_sats":1\1/"#);
    let dir = scratch("exec-shrink-bound");
    let run = || {
        let (code, out, err) = sim_in(
            &root(),
            &[
                "run",
                "--engine",
                "exec",
                "--exec",
                &exec,
                "--seeds",
                "0..3",
                "--users",
                "30",
                "--steps",
                "600",
                "--max-replays",
                "25",
                "--json",
                "--trace-dir",
                &dir,
            ],
        );
        assert_eq!(code, 1, "{out}{err}");
        let mut report = json(&out);
        report["steps_per_sec"] = serde_json::Value::Null;
        (report, err)
    };
    let (first, err) = run();
    assert!(err.contains("itself (at most 25 replays)"), "no wall-time bound: {err}");
    assert!(!err.contains("s bound"), "{err}");
    let said = first.to_string();
    assert!(said.contains("stopped at its 25 replays") || !said.contains("stopped at"), "{said}");
    let (second, _) = run();
    assert_eq!(first, second, "the same command, the same report");
}
