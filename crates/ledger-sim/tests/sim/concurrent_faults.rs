//! A concurrent run judges what a service did, not how its answers reached the harness: a
//! correct service that applies a call and then answers an indefinite error, or sheds load
//! with a definite one during the setup, is no finding; one that credits a payment twice and
//! answers both as fresh is; and a run ends however high `--lost-ack` is.
//!
//! The services are `ledger-sim serve` (correct) behind a proxy (`PROXY`, Python) that
//! rewrites its traffic, deterministically: every Nth answer or call.

use std::time::Duration;

use crate::common::{root, scratch, sim_in_within, SIM};

/// `proxy.py MODE N`: `ledger-sim serve` behind a rewrite of its traffic.
/// - `indefinite N`: every Nth answer to a call (not a set_tier), the final sweep's included,
///   is replaced by `timeout` (indefinite): the call was applied, its answer lost.
/// - `unavailable N`: every Nth set_tier is answered `unavailable` (definite) and not sent on.
/// - `double-credit`: a credit of a payment already sent is sent on under a new payment id, so
///   the service credits it again and answers it as fresh.
const PROXY: &str = r#"
import json, subprocess, sys, threading
mode, every = sys.argv[1], int(sys.argv[2])
child = subprocess.Popen([sys.argv[3], "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
lock = threading.Lock()
calls = {}
def out(line):
    with lock:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
def answers():
    n = 0
    for line in child.stdout:
        msg = json.loads(line)
        with lock:
            name = calls.pop(msg.get("id"), None)
        if mode == "indefinite" and msg.get("type") == "reply" and name not in (None, "set_tier"):
            n += 1
            if n % every == 0:
                line = (json.dumps({"id": msg["id"], "type": "error", "code": "timeout", "definite": False,
                                    "text": "applied; the answer was lost"}) + "\n").encode()
        out(line)
    sys.exit(0)
threading.Thread(target=answers, daemon=True).start()
setups, paid = 0, set()
for line in sys.stdin.buffer:
    if not line.strip():
        continue
    msg = json.loads(line)
    call = msg.get("call", {}).get("call") if msg.get("type") == "call" else None
    if mode == "unavailable" and call == "set_tier":
        setups += 1
        if setups % every == 0:
            out((json.dumps({"id": msg["id"], "type": "error", "code": "unavailable", "definite": True,
                             "text": "shedding load"}) + "\n").encode())
            continue
    if mode == "double-credit" and call == "credit":
        payment = msg["call"]["payment_id"]
        if payment in paid:
            msg["call"]["payment_id"] = payment + 10**12
            line = (json.dumps(msg) + "\n").encode()
        paid.add(payment)
    with lock:
        calls[msg.get("id")] = call
    child.stdin.write(line)
    child.stdin.flush()
child.stdin.close()
child.wait()
"#;

/// `run --engine exec --exec EXEC` on the small scenario under `--concurrency 8`, its traces in
/// `dir`, and `extra`: exit code, stdout, stderr.
fn concurrent_run(dir: &str, exec: &str, extra: &[&str]) -> (i32, String, String) {
    let scenario = root().join("fixtures/scenarios/ci-small.toml").display().to_string();
    let mut args = vec![
        "run",
        "--engine",
        "exec",
        "--exec",
        exec,
        "--scenario",
        &scenario,
        "--concurrency",
        "8",
        "--trace-dir",
        dir,
    ];
    args.extend_from_slice(extra);
    sim_in_within(&root(), &args, Duration::from_secs(240))
}

/// `run --engine exec` of `ledger-sim serve` behind the proxy in `mode`, on the small scenario,
/// under `--concurrency 8` and `extra`: exit code, stdout, stderr.
fn proxied(mode: &str, every: u32, extra: &[&str]) -> (i32, String, String) {
    let dir = scratch(&format!("proxy-{mode}"));
    let proxy = format!("{dir}/proxy.py");
    std::fs::write(&proxy, PROXY).unwrap();
    let exec = format!("python3 '{proxy}' {mode} {every} '{SIM}'");
    concurrent_run(&dir, &exec, extra)
}

#[test]
fn a_call_applied_then_answered_with_an_indefinite_error_is_no_finding() {
    for lost_ack in ["0", "0.1"] {
        let (code, out, err) = proxied("indefinite", 7, &["--seeds", "0..4", "--lost-ack", lost_ack, "--json"]);
        assert_eq!(code, 0, "--lost-ack {lost_ack}: {out}{err}");
        let r = crate::common::json(&out);
        assert!(r["coverage"]["indefinite_error"].as_u64().unwrap() > 20, "{out}");
    }
}

#[test]
fn a_definite_error_in_the_setup_is_retried_not_a_finding() {
    let (code, out, err) = proxied("unavailable", 5, &["--seeds", "0..3", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = crate::common::json(&out);
    assert!(r["coverage"]["failed_call_retried"].as_u64().unwrap() >= 3 * 40 / 5, "{out}");
}

#[test]
fn a_payment_credited_twice_is_caught_however_the_sums_balance() {
    let (code, out, err) = proxied("double-credit", 0, &["--seeds", "0..4", "--lost-ack", "0.2"]);
    assert_eq!(code, 1, "{out}{err}");
    // The books take one credit a payment, the pool holds two: I2; and the second was said to
    // be new: I8.
    assert!(out.contains("VIOLATION I2 conservation"), "{out}");
    assert!(out.contains("VIOLATION I8"), "{out}");
    assert!(out.contains("\"call\":\"credit\"") && out.contains("was answered as fresh 2 times"), "{out}");
}

#[test]
fn every_answer_lost_still_ends() {
    let serve = format!("'{SIM}' serve");
    let scenario = root().join("fixtures/scenarios/ci-small.toml").display().to_string();
    let args = [
        "run",
        "--engine",
        "exec",
        "--exec",
        &serve,
        "--scenario",
        &scenario,
        "--seeds",
        "0..2",
        "--concurrency",
        "8",
        "--lost-ack",
        "1",
        "--json",
    ];
    let (code, out, err) = sim_in_within(&root(), &args, Duration::from_secs(120));
    assert_eq!(code, 0, "{out}{err}");
    let r = crate::common::json(&out);
    assert!(r["coverage"]["lost_ack_retry"].as_u64().unwrap() > 1000, "{out}");
}

/// `durable.py MODE JOURNAL SIM`: `ledger-sim serve` made durable by a journal of the requests
/// that change it (a reset starts it again), replayed into a new `serve` when it starts.
/// - `keep`: a correct durable implementation.
/// - `renumber-credits`: the replay gives each credit a new payment id: the totals survive a
///   kill, the payments' records do not.
const DURABLE: &str = r#"
import json, os, subprocess, sys
mode, journal, sim = sys.argv[1], sys.argv[2], sys.argv[3]
child = subprocess.Popen([sim, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
def ask(line):
    child.stdin.write(line)
    child.stdin.flush()
    return child.stdout.readline()
for line in sys.stdin.buffer:
    if not line.strip():
        continue
    msg = json.loads(line)
    kind = msg.get("type")
    if kind == "hello":
        answer = json.loads(ask(line))
        answer["state"] = "durable"
        if os.path.exists(journal):
            for old in open(journal, "rb"):
                was = json.loads(old)
                if mode == "renumber-credits" and was.get("type") == "call" and was["call"]["call"] == "credit":
                    was["call"]["payment_id"] += 10**12
                ask((json.dumps(was) + "\n").encode())
        sys.stdout.buffer.write((json.dumps(answer) + "\n").encode())
        sys.stdout.buffer.flush()
        continue
    if kind in ("reset", "call"):
        with open(journal, "wb" if kind == "reset" else "ab") as j:
            j.write(line)
    sys.stdout.buffer.write(ask(line))
    sys.stdout.buffer.flush()
"#;

/// `run --engine exec --concurrency 8 --kill-child-at 300` of `serve` made durable (`DURABLE`).
fn durable(mode: &str) -> (i32, String, String) {
    let dir = scratch(&format!("durable-{mode}"));
    let script = format!("{dir}/durable.py");
    std::fs::write(&script, DURABLE).unwrap();
    let _ = std::fs::remove_file(format!("{dir}/journal"));
    let exec = format!("python3 '{script}' {mode} '{dir}/journal' '{SIM}'");
    concurrent_run(&dir, &exec, &["--kill-child-at", "300", "--seeds", "0..3"])
}

/// After a kill, every call acknowledged before it must be answered as a repeat of its first
/// answer: a durable service that keeps its totals and loses its payments' records is I7.
#[test]
fn a_kill_that_loses_records_but_keeps_totals_is_i7() {
    let (code, out, err) = durable("keep");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("child_killed") && !out.contains("VIOLATION"), "{out}");
    let (code, out, err) = durable("renumber-credits");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("VIOLATION I7"), "{out}");
    assert!(out.contains("acknowledged before the kill otherwise than as a repeat of their first answer"), "{out}");
    assert!(out.contains(r#"{"call":"credit","payment_id""#), "{out}");
    assert!(!out.contains("showed pool"), "the totals survived the kill: {out}");
}
