//! An implementation that fails a request on its own, through the binary: in lockstep a crash
//! (an indefinite error, an exit), a hang (no answer within `--exec-timeout`) or a line that is
//! not a response of the protocol to the request (`bad_answer`: not JSON, a negative amount, a
//! pool beyond 2^63-1, another id, another kind of answer) is a finding of the run on that seed
//! at that step, with a trace that replays it, and the run goes on with the next seed; under
//! concurrency a call the implementation keeps failing until the run gives it up is a finding
//! (`engine_error`), never a pass, and so are a hang and a line out of the protocol. Never an
//! error of the tool (exit 2). Every child is bounded: a hang sleeps at most 30 s, and the run
//! kills its process group after `--exec-timeout`.

use std::time::Duration;

use crate::common::{broken, json, root, scratch, sim_in_within, SIM};

/// Runs `ledger-sim ARGS` from the repository's root, killed (the test failing) after 120 s.
fn sim(args: &[&str]) -> (i32, String, String) {
    sim_in_within(&root(), args, Duration::from_secs(120))
}

/// A script in `dir` that serves the reference but answers every record that reports an
/// overrun with `then` (a shell command that prints the answer, hangs or exits), as an
/// implementation with a bug in its overrun accounting would: its command line.
fn failing_on_overruns(dir: &str, name: &str, then: &str) -> String {
    let script = format!("{dir}/{name}.sh");
    let text = [
        format!("'{SIM}' serve | while IFS= read -r line; do"),
        r#"  case "$line" in"#.to_owned(),
        format!(r#"    *'"outcome":"recorded"'*'"overrun_sats":'[1-9]*) {then} ;;"#),
        r#"    *) printf '%s\n' "$line" ;;"#.to_owned(),
        "  esac".to_owned(),
        "done\n".to_owned(),
    ]
    .join("\n");
    std::fs::write(&script, text).unwrap();
    format!("sh {script}")
}

/// The answer a crashing implementation gives, its text holding a password and an escape.
const CRASH: &str = concat!(
    r#"id=${line#'{"id":'}; id=${id%%,*}; "#,
    r#"printf '{"id":%s,"type":"error","code":"crash","definite":false,"#,
    r#""text":"RuntimeError: overrun for postgres://svc:hunter2@db/ledger \\u001b[31m"}\n' "$id""#,
);

/// A Python service in front of the command of its arguments (the reference served): it
/// answers every `record` of more than was reserved with an indefinite error, before the
/// record is applied, as a service whose overrun accounting raises does.
const CRASHES_ON_OVERRUNS: &str = r#"
import json, subprocess, sys, threading
served = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
lock = threading.Lock()
def answer(line):
    with lock:
        sys.stdout.write(line)
        sys.stdout.flush()
def relay():
    for line in served.stdout:
        answer(line)
threading.Thread(target=relay, daemon=True).start()
for line in sys.stdin:
    request = json.loads(line)
    call = request.get("call") or {}
    if call.get("call") == "record" and call["actual_sats"] > call["reserved_sats"]:
        text = "RuntimeError: overrun for postgres://svc:hunter2@db/ledger"
        error = {"id": request["id"], "type": "error", "code": "crash", "definite": False, "text": text}
        answer(json.dumps(error) + "\n")
        continue
    served.stdin.write(line)
    served.stdin.flush()
served.stdin.close()
served.wait()
"#;

fn violation<'a>(r: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["invariant"] == id)
        .unwrap_or_else(|| panic!("no {id} reported: {r}"))
}

/// An implementation that answers a call with an indefinite error (`crash`) has failed at that
/// step: the run reports it as a finding (exit 1), with the seed, the step, the request sent and
/// the implementation's text (its password hidden, its escape shown as such), a trace that
/// replays it on the implementation, and the replay command; every seed is run, and JSON and
/// JUnit carry it.
#[test]
fn a_crash_in_lockstep_is_a_finding_with_a_trace_that_replays_it() {
    let dir = scratch("lockstep-crash");
    let exec = failing_on_overruns(&dir, "crash", CRASH);
    let junit = format!("{dir}/junit.xml");
    let args = ["run", "--engine", "exec", "--exec", &exec, "--seeds", "0..4", "--users", "40", "--steps", "600"];
    let (code, out, err) = sim(&[&args[..], &["--trace-dir", &dir, "--json", "--junit", &junit]].concat());
    assert_eq!(code, 1, "a finding, not an error: {out}{err}");
    let r = json(&out);
    assert_eq!(r["seeds"], "0..4", "the run goes on past a crash: {out}");
    let crash = violation(&r, "crash");
    let seeds = crash["seeds"].as_array().unwrap();
    assert!(!seeds.is_empty() && seeds.len() < 4, "some seeds crash, not all: {crash}");
    let detail = crash["detail"].as_str().unwrap();
    let seed = crash["seed"].as_u64().unwrap();
    assert!(detail.starts_with(&format!("seed {seed} at engine step ")), "{detail}");
    assert!(detail.contains("answered record with an indefinite error (crash: RuntimeError: overrun for"), "{detail}");
    assert!(detail.contains(r#"the request sent: {"type":"call","now_ms":"#), "{detail}");
    assert!(detail.contains(r#""call":{"call":"record""#), "{detail}");
    assert!(detail.contains(r"postgres://svc:***@db/ledger \u{1b}[31m"), "{detail}");
    for shown in [&out, &err] {
        assert!(!shown.contains("hunter2") && !shown.contains('\u{1b}'), "{shown}");
    }
    assert_ne!(crash["reduction"], "none", "{crash}");
    let steps: Vec<&str> = crash["steps"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(steps.last().is_some_and(|s| s.contains("record(") && s.contains("-> failed: crash:")), "{steps:?}");
    assert!(!err.contains("cannot be judged past it"), "{err}");
    // The trace replays it on the implementation: a finding of the replay too.
    let replay = crash["replay"].as_str().unwrap();
    assert!(replay.contains("--exec"), "{replay}");
    let trace = crash["trace"].as_str().unwrap();
    let (code, replayed, err) = sim(&["replay", trace, "--exec", &exec]);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(
        replayed.contains("VIOLATION crash ") && replayed.contains("answered record with an indefinite error (crash:"),
        "{replayed}"
    );
    let (code, replayed, _) = sim(&["replay", trace, "--exec", &exec, "--json"]);
    assert_eq!(code, 1);
    assert!(json(&replayed)["failure"].as_str().unwrap().starts_with("crash "), "{replayed}");
    // JUnit carries it as a failed case.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"<failure message="seed "#) && xml.contains(r#"type="crash""#), "{xml}");
    // The text report names it like a broken invariant.
    let (code, text, _) = sim(&[&args[..], &["--trace-dir", &dir]].concat());
    assert_eq!(code, 1);
    assert!(text.contains("VIOLATION crash the implementation failed in the middle of a request"), "{text}");
}

/// An implementation that does not answer a call within `--exec-timeout` has failed at that
/// step: a finding (`no_answer`) naming the seed, the step and the request (not the harness's
/// own numbering alone), its process group killed and a new child started for the next seed,
/// and a trace that replays it.
#[test]
fn a_hang_in_lockstep_is_a_finding_and_the_next_seed_gets_a_new_child() {
    let dir = scratch("lockstep-hang");
    let exec = failing_on_overruns(&dir, "hang", "sleep 30");
    let args = [
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--exec-timeout",
        "1",
        "--seeds",
        "0..4",
        "--users",
        "40",
        "--steps",
        "600",
        "--trace-dir",
        &dir,
        "--json",
    ];
    let (code, out, err) = sim(&args);
    assert_eq!(code, 1, "a finding, not an error: {out}{err}");
    let r = json(&out);
    assert_eq!(r["seeds"], "0..4", "{out}");
    let hang = violation(&r, "no_answer");
    assert!(hang["seeds"].as_array().unwrap().len() > 1, "a new child after a hang, that hangs again: {hang}");
    let detail = hang["detail"].as_str().unwrap();
    let seed = hang["seed"].as_u64().unwrap();
    assert!(detail.starts_with(&format!("seed {seed} at engine step ")), "{detail}");
    assert!(detail.contains("did not answer record within 1 s (--exec-timeout)"), "{detail}");
    assert!(detail.contains(r#""call":{"call":"record""#), "{detail}");
    assert!(err.contains("failed: killing its process group and starting it again"), "{err}");
    assert!(!err.contains("did not answer request "), "named by seed and step: {err}");
    let trace = hang["trace"].as_str().unwrap();
    let (code, replayed, err) = sim(&["replay", trace, "--exec", &exec, "--exec-timeout", "1"]);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(
        replayed.contains("VIOLATION no_answer ") && replayed.contains("did not answer record within 1 s"),
        "{replayed}"
    );
}

/// An implementation that exits in the middle of a call has crashed at that step: a finding
/// (`crash`), and the next seed gets a new child.
#[test]
fn an_exit_in_lockstep_is_a_crash_and_the_next_seed_gets_a_new_child() {
    let dir = scratch("lockstep-exit");
    // The whole process group goes, as a process that dies takes its pipes with it.
    let exec = failing_on_overruns(&dir, "exit", "kill 0");
    let (code, out, err) = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--seeds",
        "0..4",
        "--users",
        "40",
        "--steps",
        "600",
        "--trace-dir",
        &dir,
        "--json",
    ]);
    assert_eq!(code, 1, "a finding, not an error: {out}{err}");
    let r = json(&out);
    let crash = violation(&r, "crash");
    assert!(crash["seeds"].as_array().unwrap().len() > 1, "{crash}");
    let detail = crash["detail"].as_str().unwrap();
    assert!(
        detail.contains("closed its output (it exited: ") && detail.contains("before answering record"),
        "{detail}"
    );
    let (code, replayed, err) = sim(&["replay", crash["trace"].as_str().unwrap(), "--exec", &exec]);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(replayed.contains("VIOLATION crash "), "{replayed}");
}

/// Under concurrency a call the implementation keeps failing is given up and
/// reported (`engine_error`, exit 1, a failed JUnit case), with the call and its error: no
/// fault of the run fails a call. So is a final sweep that never succeeds, and the books are
/// still checked.
#[test]
fn a_call_that_always_crashes_under_concurrency_is_a_finding() {
    let dir = scratch("concurrent-crash");
    // In front of the reference, a service that raises before it applies a record of more than
    // was reserved: nothing it stores or answers otherwise breaks a rule, so only the calls it
    // fails tell.
    let script = format!("{dir}/crash.py");
    std::fs::write(&script, CRASHES_ON_OVERRUNS).unwrap();
    let exec = format!("python3 {script} '{SIM}' serve");
    let junit = format!("{dir}/junit.xml");
    let (code, out, err) = sim(&[
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
        "--concurrency",
        "8",
        "--lost-ack",
        "0.02",
        "--trace-dir",
        &dir,
        "--json",
        "--junit",
        &junit,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["violations"].as_array().unwrap().len(), 1, "only the calls it failed tell: {out}");
    assert!(r["coverage"]["call_gave_up"].as_u64().unwrap_or(0) > 0, "{out}");
    let e = violation(&r, "engine_error");
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.contains("failed") && detail.contains("call(s) until the run gave them up (60 tries each)"),
        "{detail}"
    );
    assert!(
        detail.contains(r#": {"type":"call","now_ms":"#) && detail.contains(r#""call":{"call":"record""#),
        "{detail}"
    );
    assert!(detail.contains("tries: crash: RuntimeError: overrun for postgres://svc:***@db/ledger"), "{detail}");
    assert!(!out.contains("hunter2"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"type="engine_error""#) && !xml.contains(r#"failures="0""#), "{xml}");

    // A sweep (`expire`) that always crashes: given up and reported, not an error of the run.
    let exec = format!(
        r#"'{SIM}' serve | sed -u '/"outcome":"expired"/s/^{{"id":\([0-9]*\),.*/{{"id":\1,"type":"error","code":"crash","definite":false,"text":"no sweeper"}}/'"#
    );
    let (code, out, err) = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--seeds",
        "0..1",
        "--users",
        "20",
        "--steps",
        "200",
        "--concurrency",
        "4",
        "--trace-dir",
        &dir,
        "--json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let detail = violation(&json(&out), "engine_error")["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(r#"the final sweep: {"type":"call""#) && detail.contains("crash: no sweeper"), "{detail}");
}

/// Under concurrency an implementation that stops answering (here it sleeps on every record
/// of an overrun) has hung in that seed: a finding (`no_answer`, exit 1), naming the seed, the
/// calls left without an answer and the bound waited, with the seed's calls written and the
/// command that runs it again; its process group is killed and the next seed gets a new child.
#[test]
fn a_hang_under_concurrency_is_a_finding_and_the_next_seed_gets_a_new_child() {
    let dir = scratch("concurrent-hang");
    let exec = failing_on_overruns(&dir, "hang", "sleep 30");
    let junit = format!("{dir}/junit.xml");
    let (code, out, err) = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--exec-timeout",
        "1",
        "--seeds",
        "0..3",
        "--users",
        "40",
        "--steps",
        "600",
        "--concurrency",
        "4",
        "--trace-dir",
        &dir,
        "--json",
        "--junit",
        &junit,
    ]);
    assert_eq!(code, 1, "a finding, not an error: {out}{err}");
    let r = json(&out);
    assert_eq!(r["seeds"], "0..3", "the run goes on past a hang: {out}");
    let hang = violation(&r, "no_answer");
    assert!(hang["seeds"].as_array().unwrap().len() > 1, "a new child after a hang, that hangs again: {hang}");
    let seed = hang["seed"].as_u64().unwrap();
    let detail = hang["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("seed {seed}: `{exec}` left ")), "{detail}");
    assert!(detail.contains("call(s) without an answer within 1 s (--exec-timeout)"), "{detail}");
    assert!(detail.contains(r#""call":{"call":"record""#) && detail.contains("on the wire"), "{detail}");
    let steps = hang["steps"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.iter().all(|s| s.as_str().unwrap().starts_with("flow ")), "{steps:?}");
    let trace = std::fs::read_to_string(hang["trace"].as_str().unwrap()).unwrap();
    assert!(trace.lines().last().unwrap().contains(r#""fault":"no_answer""#), "{trace}");
    let replay = hang["replay"].as_str().unwrap();
    assert!(replay.contains("--concurrency 4") && replay.ends_with(&format!("--seed {seed}")), "{replay}");
    assert!(err.contains(&format!("no longer answers (seed {seed}): killing its process group")), "{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"type="no_answer""#), "{xml}");
    let suite = r#"<testsuite name="ledger-sim run: exec-reference (concurrency 4), concurrent, seeds 0..3""#;
    assert!(xml.contains(suite), "{xml}");
}

/// An implementation that crashes when a user's tier is set: the finding is on `set_tier`, and
/// its trace, shrunk, still fails there (the shrink keeps the user whose setup fails, though no
/// flow names it), so that `replay` shows the same failure.
#[test]
fn a_crash_in_a_users_setup_shrinks_to_a_trace_that_fails_the_same_way() {
    let dir = scratch("setup-crash");
    let script = format!("{dir}/crash-on-tier.sh");
    let text = [
        format!("'{SIM}' serve | while IFS= read -r line; do"),
        r#"  case "$line" in"#.to_owned(),
        format!(r#"    *'"outcome":"tier_set"'*) {CRASH} ;;"#),
        r#"    *) printf '%s\n' "$line" ;;"#.to_owned(),
        "  esac".to_owned(),
        "done\n".to_owned(),
    ]
    .join("\n");
    std::fs::write(&script, text).unwrap();
    let exec = format!("sh {script}");
    let args = ["run", "--engine", "exec", "--exec", &exec, "--seeds", "0..1", "--users", "5", "--steps", "50"];
    let (code, out, err) = sim(&[&args[..], &["--trace-dir", &dir, "--json", "--max-replays", "200"]].concat());
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let crash = violation(&r, "crash");
    assert!(crash["detail"].as_str().unwrap().contains("answered set_tier with an indefinite error"), "{crash}");
    let trace = format!("{dir}/{}", crash["trace"].as_str().unwrap().rsplit('/').next().unwrap());
    let (code, replayed, err) = sim(&["replay", &trace, "--exec", &exec]);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(replayed.contains("answered set_tier with an indefinite error"), "{replayed}");
}

/// The answer of an implementation whose pool went below zero: a refusal that quotes a
/// negative amount, which protocol 1 cannot carry (amounts are in `0..=2^63-1`).
const NEGATIVE: &str = concat!(
    r#"id=${line#'{"id":'}; id=${id%%,*}; "#,
    r#"printf '{"id":%s,"type":"reply","fresh":true,"reply":{"reply":"refused","refusal":"insufficient_funds","available_sats":-1}}\n' "$id""#,
);

/// An implementation that answers a call with a line protocol 1 cannot read (here a refusal
/// quoting a negative amount) has failed at that step: a finding of the run (`bad_answer`,
/// exit 1, never the tool's exit 2), naming the seed, the step, the request it answered and
/// the line it wrote, saying that a negative amount is evidence that I1 broke; the run goes on
/// with the next seed on a new child, its trace replays it, and the text, JSON and JUnit
/// reports carry it.
#[test]
fn a_line_out_of_the_protocol_in_lockstep_is_a_finding_with_a_trace_that_replays_it() {
    let dir = scratch("lockstep-bad-answer");
    let exec = failing_on_overruns(&dir, "negative", NEGATIVE);
    let junit = format!("{dir}/junit.xml");
    let args = ["run", "--engine", "exec", "--exec", &exec, "--seeds", "0..4", "--users", "40", "--steps", "600"];
    let bounded = [&args[..], &["--max-replays", "60", "--trace-dir", &dir]].concat();
    let (code, out, err) = sim(&[&bounded[..], &["--json", "--junit", &junit]].concat());
    assert_eq!(code, 1, "a finding, not an error: {out}{err}");
    let r = json(&out);
    assert_eq!(r["seeds"], "0..4", "the run goes on past a bad answer: {out}");
    let bad = violation(&r, "bad_answer");
    let seeds = bad["seeds"].as_array().unwrap();
    assert!(!seeds.is_empty() && seeds.len() < 4, "some seeds answer so, not all: {bad}");
    let seed = bad["seed"].as_u64().unwrap();
    let detail = bad["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("seed {seed} at engine step ")), "{detail}");
    assert!(detail.contains("answered record with a line that is not a response of protocol 1 ("), "{detail}");
    assert!(
        detail
            .contains("reply.available_sats is -1: a negative amount, evidence that I1 broke (the pool never negative"),
        "{detail}"
    );
    assert!(detail.contains(r#""refusal":"insufficient_funds","available_sats":-1}}"#), "the line it wrote: {detail}");
    assert!(detail.contains(r#"the request sent: {"type":"call","now_ms":"#), "{detail}");
    assert!(detail.contains(r#""call":{"call":"record""#), "{detail}");
    assert!(!err.contains("error:"), "{err}");
    let steps: Vec<&str> = bad["steps"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(steps.last().is_some_and(|s| s.contains("record(") && s.contains("available_sats\":-1")), "{steps:?}");
    // The trace replays it on the implementation: a finding of the replay too.
    let trace = bad["trace"].as_str().unwrap();
    assert!(bad["replay"].as_str().unwrap().contains(" --exec "), "{bad}");
    let (code, replayed, err) = sim(&["replay", trace, "--exec", &exec]);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(replayed.contains("VIOLATION bad_answer ") && replayed.contains("evidence that I1 broke"), "{replayed}");
    // The replay's JUnit fails it too: a CI does not read a replay that exits 1 as passed.
    let replay_junit = format!("{dir}/replay.xml");
    let (code, replayed, err) = sim(&["replay", trace, "--exec", &exec, "--junit", &replay_junit]);
    assert_eq!(code, 1, "{replayed}{err}");
    let xml = std::fs::read_to_string(&replay_junit).unwrap();
    assert!(xml.contains(r#"type="bad_answer""#) && !xml.contains(r#"failures="0""#), "{xml}");
    // JUnit carries it as a failed case.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"type="bad_answer""#) && xml.contains("available_sats"), "{xml}");
    // The text report names it like a broken invariant, with its trace and replay.
    let (code, text, _) = sim(&bounded);
    assert_eq!(code, 1);
    assert!(
        text.contains(
            "VIOLATION bad_answer the implementation answered a request with a line that is not a protocol 1"
        ),
        "{text}"
    );
    assert!(text.contains("  trace:  ") && text.contains("  replay: "), "{text}");
    // --fail-fast stops at the first seed that answers so, and reports it.
    let (code, out, err) = sim(&[&bounded[..], &["--json", "--fail-fast"]].concat());
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["seeds"], format!("0..{}", seed + 1), "{out}");
    assert_eq!(violation(&r, "bad_answer")["seeds"], serde_json::json!([seed]), "{out}");
}

/// Every kind of line that is not a protocol 1 answer to the request is the implementation's
/// finding (`bad_answer`, exit 1): one that is not JSON, one naming an id not in flight, an
/// answer of another kind, and an observed pool beyond 2^63-1 (an overflow: evidence of I1).
#[test]
fn every_line_out_of_the_protocol_is_a_finding_in_lockstep() {
    let dir = scratch("lockstep-bad-lines");
    let id = r#"id=${line#'{"id":'}; id=${id%%,*}; "#;
    let cases = [
        (
            "not-json",
            r"printf 'Traceback (most recent call last): KeyError pool\n'".to_owned(),
            "(expected value at line 1 column 1): Traceback (most recent call last): KeyError pool",
        ),
        (
            "other-id",
            r#"printf '{"id":999999,"type":"reset_ok"}\n'"#.to_owned(),
            "(id 999999 is not a request in flight): {\"id\":999999,\"type\":\"reset_ok\"}",
        ),
        (
            "other-kind",
            format!(r#"{id}printf '{{"id":%s,"type":"reset_ok"}}\n' "$id""#),
            "answered record with reset_ok: {\"id\":",
        ),
    ];
    let run = |exec: &str| {
        let args = ["run", "--engine", "exec", "--exec", exec, "--seeds", "0..3", "--users", "40", "--steps", "600"];
        sim(&[&args[..], &["--max-replays", "20", "--trace-dir", &dir, "--json"]].concat())
    };
    for (name, then, says) in cases {
        let exec = failing_on_overruns(&dir, name, &then);
        let (code, out, err) = run(&exec);
        assert_eq!(code, 1, "{name}: a finding, not an error: {out}{err}");
        let r = json(&out);
        assert_eq!(r["seeds"], "0..3", "{name}: {out}");
        let detail = violation(&r, "bad_answer")["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(says), "{name}: {detail}");
    }
    // Every observed pool shown one beyond what 64 signed bits hold.
    let exec = broken(r#"s/"type":"observed","pool_sats":[0-9]*/"type":"observed","pool_sats":9223372036854775808/"#);
    let (code, out, err) = run(&exec);
    assert_eq!(code, 1, "a finding, not an error: {out}{err}");
    let r = json(&out);
    let bad = violation(&r, "bad_answer");
    assert_eq!(bad["seeds"], serde_json::json!([0, 1, 2]), "a new child for each seed, which answers so again: {bad}");
    let detail = bad["detail"].as_str().unwrap();
    assert!(detail.contains("at the observe after event "), "{detail}");
    assert!(
        detail.contains("pool_sats is 9223372036854775808: an amount beyond 2^63-1, evidence that I1 broke"),
        "{detail}"
    );
}

/// Under concurrency, a line that is not a protocol 1 answer (a refusal quoting a negative
/// amount) is a finding of that seed (`bad_answer`, exit 1): the request it answered, the line
/// it wrote, the calls left in flight and the seed's calls written, the command that runs the
/// seed again; its process group is killed and the next seed gets a new child.
#[test]
fn a_line_out_of_the_protocol_under_concurrency_is_a_finding_and_the_next_seed_gets_a_new_child() {
    let dir = scratch("concurrent-bad-answer");
    let exec = failing_on_overruns(&dir, "negative", NEGATIVE);
    let junit = format!("{dir}/junit.xml");
    let (code, out, err) = sim(&[
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
        "600",
        "--concurrency",
        "4",
        "--trace-dir",
        &dir,
        "--json",
        "--junit",
        &junit,
    ]);
    assert_eq!(code, 1, "a finding, not an error: {out}{err}");
    let r = json(&out);
    assert_eq!(r["seeds"], "0..3", "the run goes on past it: {out}");
    let bad = violation(&r, "bad_answer");
    assert!(bad["seeds"].as_array().unwrap().len() > 1, "a new child, that answers so again: {bad}");
    let seed = bad["seed"].as_u64().unwrap();
    let detail = bad["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("seed {seed}: `{exec}` answered flow ")), "{detail}");
    assert!(
        detail.contains(r#"'s {"type":"call","now_ms":"#) && detail.contains(r#""call":{"call":"record""#),
        "{detail}"
    );
    assert!(detail.contains("with a line that is not a response of protocol 1 ("), "{detail}");
    assert!(detail.contains("reply.available_sats is -1: a negative amount, evidence that I1 broke"), "{detail}");
    assert!(detail.contains(r#""available_sats":-1}}"#), "the line it wrote: {detail}");
    let trace = std::fs::read_to_string(bad["trace"].as_str().unwrap()).unwrap();
    assert!(trace.lines().last().unwrap().contains(r#""fault":"bad_answer""#), "{trace}");
    let replay = bad["replay"].as_str().unwrap();
    assert!(replay.contains("--concurrency 4") && replay.ends_with(&format!("--seed {seed}")), "{replay}");
    assert!(err.contains(&format!("wrote what is not an answer (seed {seed}): killing its process group")), "{err}");
    assert!(!err.contains("error:"), "{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"type="bad_answer""#), "{xml}");
}

/// An implementation that fails in a seed and then cannot be started again (its second start
/// exits before its hello) ends the seeds there, but the finding already made is reported
/// (exit 1, the report covering the seeds run, the finding saying why the run stopped), in
/// lockstep and under concurrency: never thrown away for an error of the tool.
#[test]
fn a_child_that_cannot_be_started_again_keeps_the_findings_made() {
    let dir = scratch("once");
    let serves = failing_on_overruns(&dir, "negative", NEGATIVE);
    let script = format!("{dir}/once.sh");
    let marker = format!("{dir}/started");
    std::fs::write(
        &script,
        format!("if [ -e '{marker}' ]; then echo 'cannot start twice' >&2; exit 3; fi\ntouch '{marker}'\n{serves}\n"),
    )
    .unwrap();
    let exec = format!("sh {script}");
    for concurrency in [None, Some("4")] {
        let _ = std::fs::remove_file(&marker);
        let mut args = vec!["run", "--engine", "exec", "--exec", &exec, "--seeds", "0..4", "--users", "40"];
        args.extend(["--steps", "600", "--trace-dir", &dir, "--json"]);
        if let Some(n) = concurrency {
            args.extend(["--concurrency", n]);
        }
        let (code, out, err) = sim(&args);
        assert_eq!(code, 1, "{concurrency:?}: the finding made, not an error: {out}{err}");
        let r = json(&out);
        let bad = violation(&r, "bad_answer");
        let seed = bad["seed"].as_u64().unwrap();
        assert_eq!(r["seeds"], format!("0..{}", seed + 1), "{concurrency:?}: the seeds run: {out}");
        let detail = bad["detail"].as_str().unwrap();
        assert!(detail.contains("[the implementation could not be started again "), "{detail}");
        assert!(detail.contains("exit status: 3") && detail.contains("the run stopped its seeds there"), "{detail}");
        assert!(!err.contains("error:"), "{err}");
    }
}
