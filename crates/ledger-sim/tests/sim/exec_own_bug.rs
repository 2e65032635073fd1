//! A lockstep counterexample of a bug that only the exec implementation has (the in-memory
//! reference it is shrunk on does not) is still short: cut after its first violation and
//! shrunk on the implementation itself, not the whole seed; once for a bug that both diverges
//! from the reference and breaks an invariant.

use std::time::Duration;

use crate::common::{broken, json, root, scratch, sim_in, sim_in_within};

fn sim(args: &[&str]) -> (i32, String, String) {
    sim_in(&root(), args)
}

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
    // Shrunk once on the implementation, for the divergence, whose trace I2 and I8 then take.
    assert!(err.contains("shrinking the divergence of seed 0") && err.contains("` itself (at most"), "{err}");
    assert!(err.contains("I2 takes the counterexample of the divergence"), "{err}");
}

/// One bug, one counterexample: a refusal that quotes one more sat than the rules give breaks
/// I8 and diverges from the reference at the same answer. The divergence is shrunk on the
/// implementation once and the I8 entry takes its trace, so the two entries quote the same
/// numbers from the same run, the one their replay commands replay. (Each used to be shrunk on
/// its own, each stopped by its own time bound, and a slow implementation got two traces that
/// quoted different numbers for the same request.)
#[test]
fn an_answer_that_breaks_i8_and_diverges_is_one_counterexample() {
    // `ledger-sim serve` behind a filter: an insufficient-funds refusal says 1N sats for N.
    let exec = broken(
        r#"s/"refusal":"insufficient_funds","available_sats":\([0-9]*\)/"refusal":"insufficient_funds","available_sats":1\1/"#,
    );
    let dir = scratch("one-counterexample");
    let (code, out, err) = sim_in_within(
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
            "40",
            "--steps",
            "1500",
            "--json",
            "--trace-dir",
            &dir,
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let violations = r["violations"].as_array().unwrap();
    let i8 = violations.iter().find(|v| v["invariant"] == "I8").unwrap_or_else(|| panic!("I8: {out}"));
    let d = violations.iter().find(|v| v["invariant"] == "divergence").unwrap_or_else(|| panic!("a divergence: {out}"));
    assert_eq!(i8["seed"], d["seed"], "{out}");
    // Shrunk once, on the implementation, for both.
    assert!(err.contains("I8 takes the counterexample of the divergence"), "{err}");
    assert!(!err.contains("the I8 counterexample does not break on the in-memory twin"), "shrunk twice: {err}");
    let (i8_detail, d_detail) = (i8["detail"].as_str().unwrap(), d["detail"].as_str().unwrap());
    assert!(
        i8_detail.contains("the counterexample of the divergence from the reference, which breaks this too]"),
        "{i8_detail}"
    );
    let read = |v: &serde_json::Value| std::fs::read_to_string(v["trace"].as_str().unwrap()).unwrap();
    assert_eq!(read(i8), read(d), "one trace for the two entries");
    assert_eq!((&i8["shrunk_flows"], &i8["shrunk_events"]), (&d["shrunk_flows"], &d["shrunk_events"]));
    assert_eq!(i8["steps"], d["steps"], "the same replay's steps");
    // The same answer in both, with the same numbers: the divergence's refusal is the one I8
    // quotes.
    let quoted = |text: &str, after: &str| -> String {
        let at = text.find(after).unwrap_or_else(|| panic!("{after:?} in {text}")) + after.len();
        text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().to_owned()
    };
    let key = r#""refusal":"insufficient_funds","available_sats":"#;
    let answered = quoted(i8_detail, &format!("answered refused {{{key}"));
    assert_eq!(quoted(d_detail, &format!("exec replied {{\"reply\":\"refused\",{key}")), answered, "{d_detail}");
    let request = quoted(i8_detail, r#"{"cmd":"reserve_partial","request_id":"#);
    assert!(d_detail.contains(&format!(r#""request_id":{request},"#)), "the same request: {d_detail}");
    // The replay command of the I8 entry shows those numbers again.
    let (code, replayed, err) = sim(&["replay", i8["trace"].as_str().unwrap(), "--exec", &exec]);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(replayed.contains(&format!("{key}{answered}}}; the rules give")), "{replayed}");
}
