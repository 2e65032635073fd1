//! A lockstep counterexample of a bug that only the exec implementation has (the in-memory
//! reference it is shrunk on does not) is still short: cut after its first violation and
//! shrunk on the implementation itself, not the whole seed.

use std::time::Duration;

use crate::common::{broken, json, root, scratch, sim_in, sim_in_within};

#[test]
fn a_bug_the_reference_lacks_is_shrunk_on_the_implementation() {
    // `ledger-sim serve` behind a filter that credits more than the rules give: 7 becomes 17.
    let exec =
        broken(r#"s/"outcome":"credited","credited_sats":\([1-9][0-9]*\)}/"outcome":"credited","credited_sats":1\1}/"#);
    let dir = scratch("own-bug");
    let (code, out, err) = sim_in_within(
        &root(),
        &[
            "run",
            "--engine",
            "exec",
            "--exec",
            &exec,
            "--seeds",
            "0..2",
            "--users",
            "40",
            "--steps",
            "600",
            "--json",
            "--trace-dir",
            &dir,
        ],
        // A shrink on the implementation is bounded: the run ends well before this.
        Duration::from_secs(120),
    );
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let violations = r["violations"].as_array().unwrap();
    let invariants: Vec<&str> = violations.iter().map(|v| v["invariant"].as_str().unwrap()).collect();
    assert!(invariants.contains(&"I2") && invariants.contains(&"I8"), "{invariants:?}: {out}");
    for v in violations.iter().filter(|v| v["invariant"] != "divergence") {
        let (flows, events) = (v["shrunk_flows"].as_u64().unwrap(), v["shrunk_events"].as_u64().unwrap());
        assert!(
            flows <= 3 && events <= 12,
            "{} should shrink to a few steps, not {flows} flows, {events} events: {v}",
            v["invariant"]
        );
        assert!(v["steps"].as_array().unwrap().len() <= 30, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("credited"), "{v}");
        // The shrunk trace breaks on the implementation when replayed.
        let trace = v["trace"].as_str().unwrap();
        let (code, out, err) = sim_in(&root(), &["replay", trace, "--exec", &exec]);
        assert_eq!(code, 1, "replaying {trace}: {out}{err}");
    }
    // The divergence from the reference too: one credit.
    let d = violations.iter().find(|v| v["invariant"] == "divergence").expect("a divergence");
    assert!(d["shrunk_events"].as_u64().unwrap() <= 12, "{d}");
    assert!(d["detail"].as_str().unwrap().contains(r#""call":{"call":"credit""#), "{d}");
    assert!(err.contains("shrinking it on `"), "the shrink on the implementation should be said: {err}");
}
