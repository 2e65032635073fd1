//! `bench-exec`: calls per second of an implementation over the protocol, and only of one that
//! answers as the reference does: a `reference` implementation's replies are compared with the
//! reference's, and the first that differs ends the benchmark with exit 1, saying which call,
//! what was expected and what came.

use crate::common::{json, root, scratch, sim_in, SIM};

fn sim(args: &[&str]) -> (i32, String, String) {
    sim_in(&root(), args)
}

/// The Python reference of `examples/python-reference`, copied into `dir`, with the credit
/// rounded up instead of down (a plausible bug that every fifth call of the workload meets).
fn python_rounding_up(dir: &str) -> String {
    for file in ["adapter.py", "ledger.py"] {
        let text = std::fs::read_to_string(root().join("examples/python-reference").join(file)).unwrap();
        let text = if file == "ledger.py" {
            let rule = "        credited = paid_sats * self.credit_bps // 10_000\n";
            assert!(text.contains(rule), "the credit's rounding in ledger.py");
            text.replace(rule, "        credited = -(-paid_sats * self.credit_bps // 10_000)\n")
        } else {
            text
        };
        std::fs::write(format!("{dir}/{file}"), text).unwrap();
    }
    format!("python3 {dir}/adapter.py")
}

#[test]
fn a_right_implementation_is_measured_and_its_every_reply_compared() {
    let serve = format!("{SIM} serve");
    let (code, out, err) = sim(&["bench-exec", "--exec", &serve, "--calls", "3000", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["answers_checked"], true, "{r}");
    assert_eq!(r["figures"].as_array().map(Vec::len), Some(3), "{r}");
    assert!(r.get("wrong_answer").is_none(), "{r}");
    let (code, out, err) = sim(&["bench-exec", "--exec", &serve, "--calls", "3000"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every reply compared with the reference's"), "{out}");
}

#[test]
fn a_wrong_reply_ends_the_benchmark_with_the_call_and_both_answers() {
    let dir = scratch("bench-exec-wrong");
    let exec = python_rounding_up(&dir);
    let (code, out, err) = sim(&["bench-exec", "--exec", &exec, "--calls", "3000"]);
    assert_eq!(code, 1, "{out}{err}");
    // The workload's first credit: a payment of 100 sats at the default 10 %, 10 exactly, so
    // the first that differs is one whose tenth is not whole.
    assert!(out.contains("differently from the reference"), "{out}");
    assert!(out.contains(r#""outcome":"credited""#), "{out}");
    assert!(out.contains("ledger-sim conform --exec"), "{out}");
    assert!(!out.contains("in flight"), "no figure after the wrong answer: {out}");
    let (code, out, err) = sim(&["bench-exec", "--exec", &exec, "--calls", "3000", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let w = &r["wrong_answer"];
    assert_eq!(w["call"]["call"], "credit", "{r}");
    let (want, got) = (w["expected"]["credited_sats"].as_u64().unwrap(), w["got"]["credited_sats"].as_u64().unwrap());
    assert_eq!(got, want + 1, "{r}");
    assert_eq!(r["figures"].as_array().map(Vec::len), Some(1), "only the in-process figure: {r}");
    assert!(err.contains("differently from the reference"), "said on stderr with --json too: {err}");
}
