//! `examples/python-reference`: the reference API in Python, written from SPEC.md alone by
//! someone who did not read the Rust reference. It passes every conformance case, served on one
//! thread and on four; it is the reference, trace hash for trace hash, in lockstep; with 32 calls
//! in flight on eight threads, answered out of order, and lost acknowledgements, its answers fit
//! a serial order of the reference and break no invariant; the traces it writes pass
//! `check-trace`; and one plausible misreading of the daily window is caught by `conform`.

use crate::common::{json, root, scratch, sim_in};

fn sim(args: &[&str]) -> (i32, String, String) {
    sim_in(&root(), args)
}

const ADAPTER: &str = "python3 examples/python-reference/adapter.py";

#[test]
fn the_python_reference_passes_every_conformance_case() {
    for exec in [ADAPTER.to_owned(), format!("{ADAPTER} --threads 4")] {
        let (code, out, err) = sim(&["conform", "--exec", &exec, "--json"]);
        assert_eq!(code, 0, "{exec}: {out}{err}");
        let r = json(&out);
        assert_eq!(r["failed"], 0, "{exec}: {r}");
        assert!(r["cases"].as_u64().unwrap() >= 348, "{exec}: {r}");
    }
}

#[test]
fn the_python_reference_is_the_reference_in_lockstep() {
    let common = ["--seeds", "0..3", "--users", "50", "--steps", "3000", "--json"];
    let (code, reference, err) = sim(&[&["run", "--engine", "reference"], &common[..]].concat());
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = sim(&[&["run", "--engine", "exec", "--exec", ADAPTER], &common[..]].concat());
    assert_eq!(code, 0, "{out}{err}");
    let (reference, out) = (json(&reference), json(&out));
    assert_eq!(out["trace_hash"], reference["trace_hash"], "{out}");
    assert_eq!(out["violations"].as_array().map(Vec::len), Some(0), "{out}");
}

#[test]
fn the_python_reference_holds_with_calls_in_flight() {
    let exec = format!("{ADAPTER} --threads 8");
    let (code, out, err) = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--seeds",
        "0..2",
        "--users",
        "50",
        "--steps",
        "3000",
        "--concurrency",
        "32",
        "--lost-ack",
        "0.05",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["violations"].as_array().map(Vec::len), Some(0), "{r}");
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn the_traces_of_the_python_reference_pass_check_trace() {
    let trace = format!("{}/python.jsonl", scratch("python-reference-trace"));
    let status = std::process::Command::new("python3")
        .args(["examples/python-reference/gen_trace.py", &trace, "3", "6", "300"])
        .current_dir(root())
        .status()
        .expect("python3 runs");
    assert!(status.success());
    let (code, out, err) = sim(&["check-trace", &trace, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["steps"], 1800, "{out}");
}

/// A misreading of R-WINDOW-2 (a new window at the old start plus whole days, not at the
/// absorption's `now`) is caught by `conform`, naming a case of the daily window.
#[test]
fn a_misread_daily_window_fails_conform() {
    let dir = scratch("python-reference-window");
    for file in ["adapter.py", "ledger.py"] {
        let text = std::fs::read_to_string(root().join("examples/python-reference").join(file)).unwrap();
        let text = if file == "ledger.py" {
            let rule = "            ident.absorbed_reset_at_ms = now\n";
            assert!(text.contains(rule), "the window's rule in ledger.py");
            text.replace(
                rule,
                "            ident.absorbed_reset_at_ms += (now - ident.absorbed_reset_at_ms) // DAY_MS * DAY_MS\n",
            )
        } else {
            text
        };
        std::fs::write(format!("{dir}/{file}"), text).unwrap();
    }
    let (code, out, err) = sim(&["conform", "--exec", &format!("python3 {dir}/adapter.py"), "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    assert!(r["failed"].as_u64().unwrap() > 0, "{r}");
    assert!(r.to_string().contains("window/"), "a case of the daily window is named: {r}");
}

/// `conform --protocol-errors`: the Python reference answers the protocol's error rules as
/// SPEC.md requires; one that ignores an unknown key of a config (a misspelt setting taken
/// silently) fails that case, named, with exit 1, though every vector passes.
#[test]
fn the_protocol_error_rules_are_checked_with_protocol_errors() {
    let (code, out, err) = sim(&["conform", "--exec", ADAPTER, "--protocol-errors", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["protocol_errors"]["failed"], serde_json::json!([]), "{r}");
    assert!(r["protocol_errors"]["passed"].as_array().unwrap().len() >= 19, "{r}");

    let dir = scratch("python-reference-config-key");
    for file in ["adapter.py", "ledger.py"] {
        let text = std::fs::read_to_string(root().join("examples/python-reference").join(file)).unwrap();
        let text = if file == "adapter.py" {
            let rule = r#"raise Malformed("%s: unknown key %r" % (where, k))"#;
            assert!(text.contains(rule), "the config's key check in adapter.py");
            text.replace(rule, "pass")
        } else {
            text
        };
        std::fs::write(format!("{dir}/{file}"), text).unwrap();
    }
    let exec = format!("python3 {dir}/adapter.py");
    let (code, out, err) = sim(&["conform", "--exec", &exec, "--protocol-errors"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(" 0 failed\n"), "every vector passes: {out}");
    assert!(out.contains("FAILED protocol/config-unknown-key"), "{out}");
    assert!(out.contains("protocol error rules (SPEC.md §9.1, §9.2): 19 cases, 1 failed"), "{out}");
}
