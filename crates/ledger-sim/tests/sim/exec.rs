//! `run --engine exec`, `serve`, `conform` and `replay --exec`: the engine protocol of
//! SPEC.md §9, end to end through the binary. The reference served over the protocol must be
//! the in-memory reference bit for bit; an implementation that breaks the rules must be caught
//! in lockstep and concurrent runs; a child that misbehaves must end the run with an error that
//! names it, within its time limit, never a hang.

use std::process::Command;
use std::time::Duration;

use crate::common::{broken, json, root, scratch, sim_env_within, sim_in, sim_in_within, SIM};

fn serve() -> String {
    format!("'{SIM}' serve")
}

/// Runs `ledger-sim ARGS` from the repository's root.
fn sim(args: &[&str]) -> (i32, String, String) {
    sim_in(&root(), args)
}

#[test]
fn the_reference_over_the_protocol_is_the_in_memory_reference_bit_for_bit() {
    let common = ["--seeds", "0..4", "--users", "60", "--steps", "4000", "--json"];
    let (code, out, err) = sim(&[&["run", "--engine", "reference"], &common[..]].concat());
    assert_eq!(code, 0, "{err}");
    let in_memory = json(&out);
    let exec = serve();
    let (code, out, err) = sim(&[&["run", "--engine", "exec", "--exec", &exec], &common[..]].concat());
    assert_eq!(code, 0, "{out}{err}");
    let over_protocol = json(&out);
    assert_eq!(over_protocol["engine"], "exec-reference");
    assert_eq!(over_protocol["trace_hash"], in_memory["trace_hash"], "the same seeds must give the same trace");
    assert_eq!(over_protocol["steps"], in_memory["steps"]);
    assert_eq!(over_protocol["violations"], serde_json::json!([]));
}

#[test]
fn the_conformance_vectors_pass_over_the_protocol() {
    let exec = serve();
    let (code, out, err) = sim(&["conform", "--exec", &exec, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json(&out);
    assert!(r["cases"].as_u64().unwrap() >= 300, "{out}");
    assert_eq!(r["failed"], 0, "{out}");
    assert_eq!(r["vectors"], "built in", "{out}");
    // From any directory, with the vectors built in; and from the repository's directory.
    let (code, out, err) = sim_in(&std::env::temp_dir(), &["conform", "--exec", &exec, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["cases"], r["cases"], "{out}");
    let (code, out, err) = sim(&["conform", "--exec", &exec, "--json", "--vectors", "fixtures/conformance"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["cases"], r["cases"], "{out}");
    assert_eq!(json(&out)["vectors"], "fixtures/conformance", "{out}");
    let (code, _, err) = sim(&["conform", "--exec", &exec, "--vectors", "no/such/dir"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--vectors no/such/dir"), "{err}");
}

#[test]
fn a_repeat_answered_as_fresh_is_caught_in_lockstep_and_replayed() {
    // Every idempotent repeat claims to have moved sats again (a service that is not
    // idempotent): the books no longer add up.
    let exec = broken(r#"s/"fresh":false,"reply":{"reply":"ok"/"fresh":true,"reply":{"reply":"ok"/"#);
    let dir = scratch("repeat-as-fresh");
    let (code, out, err) = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--seeds",
        "0..6",
        "--users",
        "40",
        "--steps",
        "3000",
        "--json",
        "--trace-dir",
        &dir,
        "--max-replays",
        "200",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let violations = r["violations"].as_array().unwrap();
    assert!(!violations.is_empty(), "{out}");
    let first = &violations[0];
    let replay = first["replay"].as_str().unwrap();
    assert!(replay.contains("--exec"), "the replay command names the implementation: {replay}");
    // The written trace replays on the implementation and shows the violation again.
    let trace = first["trace"].as_str().unwrap();
    let (code, out, err) = sim(&["replay", trace, "--exec", &exec]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("VIOLATION") || out.contains("DIVERGENCE"), "{out}");
    // The divergence's trace replayed with --junit fails its case: a CI does not read a replay
    // that exits 1 as passed.
    let diverged = violations.iter().find(|v| v["invariant"] == "divergence").expect("a divergence");
    let junit = format!("{dir}/replay.xml");
    let (code, out, err) = sim(&["replay", diverged["trace"].as_str().unwrap(), "--exec", &exec, "--junit", &junit]);
    assert_eq!(code, 1, "{out}{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"type="divergence""#) && !xml.contains(r#"failures="0""#), "{xml}");
    // A replay of an exec trace without --exec says what it needs.
    let (code, _, err) = sim(&["replay", trace]);
    assert_eq!(code, 2);
    assert!(err.contains("--exec"), "{err}");
}

/// A right reply with a wrong `fresh` (SPEC.md §9.2): only a repeated record says it took
/// effect again. The implementation's state and replies are the reference's; the harness's
/// books, which follow `fresh`, are not. The report says so first, as `conform` does, and marks
/// the broken books as following from it, in the protocol's JSON, the same on every run.
#[test]
fn a_right_reply_with_a_wrong_fresh_is_named_first_and_the_books_follow_from_it() {
    let exec = broken(
        r#"s/"fresh":false,"reply":{"reply":"ok","outcome":"recorded"/"fresh":true,"reply":{"reply":"ok","outcome":"recorded"/"#,
    );
    let dir = scratch("fresh-on-a-repeat");
    let args = ["run", "--engine", "exec", "--exec", &exec, "--seeds", "0..3", "--users", "40", "--steps", "1500"];
    let trace_dir = ["--trace-dir", &dir];
    let (code, out, err) = sim(&[&args[..], &trace_dir, &["--json"]].concat());
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let violations = r["violations"].as_array().unwrap();
    let first = &violations[0];
    assert_eq!(first["invariant"], "divergence", "the wrong \"fresh\" comes first: {out}");
    assert_eq!(first["name"], "exec-reference gives the right reply with the wrong \"fresh\"", "{first}");
    let detail = first["detail"].as_str().unwrap();
    assert!(
        detail.contains(r#"the reply is right but "fresh" is true on a repeat, the reference's is false"#),
        "said as conform says it: {detail}"
    );
    assert!(detail.contains(r#"the harness books the movements of a call from "fresh" (SPEC.md §9.2)"#), "{detail}");
    // In the protocol's JSON: the request, the answer and what was booked.
    assert!(
        detail.contains(r#"{"type":"call","now_ms":"#) && detail.contains(r#""call":{"call":"record""#),
        "{detail}"
    );
    assert!(
        detail.contains(r#"answered {"type":"reply","fresh":true,"reply":{"reply":"ok","outcome":"recorded""#),
        "{detail}"
    );
    assert!(
        detail.contains(r#"booked [{"move":"record""#) && detail.contains("the reference moved nothing"),
        "{detail}"
    );
    assert!(!detail.contains("Record {") && !detail.contains("RequestId("), "no Rust Debug notation: {detail}");
    // The books' invariants that broke follow from it, and each says so.
    let books: Vec<&serde_json::Value> = violations
        .iter()
        .filter(|v| ["I2", "I3", "I4", "I5", "I6"].contains(&v["invariant"].as_str().unwrap()))
        .collect();
    assert!(books.iter().any(|v| v["invariant"] == "I2"), "{out}");
    for v in &books {
        let id = v["invariant"].as_str().unwrap();
        assert!(detail.contains(id), "the divergence names {id} as following from it: {detail}");
        assert!(v["detail"].as_str().unwrap().contains(r#"[follows from the wrong "fresh" reported first"#), "{v}");
    }
    assert!(detail.contains(r#"fix "fresh" first"#), "{detail}");
    // Its trace shows it again on a replay.
    let (code, replayed, err) = sim(&["replay", first["trace"].as_str().unwrap(), "--exec", &exec]);
    assert_eq!(code, 1, "{replayed}{err}");
    assert!(
        replayed.contains(r#"DIVERGENCE from the reference engine at engine step 3: the reply is right but "fresh""#),
        "{replayed}"
    );
    // As text, the same order; and the same report on another run.
    let (_, text, _) = sim(&[&args[..], &trace_dir].concat());
    let violation_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("VIOLATION")).collect();
    assert!(violation_lines[0].starts_with("VIOLATION divergence exec-reference gives the right reply"), "{text}");
    let (_, again, _) = sim(&[&args[..], &trace_dir].concat());
    assert_eq!(text, again, "a lockstep report is the same on every run");
}

/// `--scheduler` chooses the next step of a lockstep run; a concurrent run has none, so the two
/// together are refused rather than the scheduler ignored while the report names it. So are
/// the Postgres options an exec run would ignore: `--give-up-after` (it waits out no database
/// outage) and `--crash-server-at` in lockstep (it crashes no server).
#[test]
fn a_scheduler_with_concurrency_and_options_an_exec_run_ignores_are_refused() {
    let exec = serve();
    for engine in [&["--engine", "exec", "--exec", &exec][..], &["--engine", "pg-reference"][..]] {
        for scheduler in ["pct", "random"] {
            let (code, out, err) = sim(&[
                &["run", "--seeds", "0..1", "--steps", "100", "--concurrency", "8", "--scheduler", scheduler][..],
                engine,
            ]
            .concat());
            assert_eq!(code, 2, "{engine:?} {scheduler}: {out}{err}");
            assert!(
                err.contains(&format!(
                    "--scheduler {scheduler} with --concurrency 8: a concurrent run has no scheduler"
                )),
                "{err}"
            );
            assert!(!err.contains("starting"), "refused before the implementation starts: {err}");
        }
        // Nor a shrinker: --max-replays would be ignored.
        let (code, out, err) =
            sim(&[&["run", "--seeds", "0..1", "--concurrency", "8", "--max-replays", "10"][..], engine].concat());
        assert_eq!(code, 2, "{engine:?}: {out}{err}");
        assert!(
            err.contains("--max-replays 10 with --concurrency 8: a concurrent run's findings are not shrunk"),
            "{err}"
        );
    }
    // A concurrent run's report names no scheduler: its header, and `null` in --json.
    let concurrent = [
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--concurrency",
        "4",
        "--seeds",
        "0..1",
        "--users",
        "20",
        "--steps",
        "200",
        "--lost-ack",
        "0.05",
    ];
    let (code, out, err) = sim(&concurrent);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ledger-sim run: engine=exec-reference (concurrency 4) seeds=0..1\n"), "{out}");
    // The faults the run injects are in its header, beside the scenario's.
    assert!(out.contains("\n  injected by the run: --lost-ack 0.05\n"), "{out}");
    let (code, out, err) = sim(&[&concurrent[..], &["--json"]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["scheduler"], serde_json::Value::Null, "{out}");
    let (code, out, err) =
        sim(&["run", "--engine", "exec", "--exec", &exec, "--concurrency", "4", "--give-up-after", "5"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--give-up-after 5: an exec run has no database outage"), "{err}");
    // Nor does an exec lockstep run crash a server.
    let (code, out, err) = sim(&["run", "--engine", "exec", "--exec", &exec, "--crash-server-at", "5"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--crash-server-at crashes the PostgreSQL server of pg-reference and pg-seed"), "{err}");
    // Lockstep takes it, and says which it used.
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
        "--scheduler",
        "pct",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ledger-sim run: engine=exec-reference scheduler=Pct"), "{out}");
}

#[test]
fn a_short_credit_is_caught_under_concurrency() {
    // Every credit is reported one sat short of what was added: I2 in concurrent mode.
    let exec = broken(r#"s/"credited_sats":\([1-9][0-9]*\)/"credited_sats":1\1/"#);
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
        "2000",
        "--concurrency",
        "16",
        "--lost-ack",
        "0.05",
        "--json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["engine"], "exec-reference (concurrency 16)");
    let ids: Vec<&str> = r["violations"].as_array().unwrap().iter().map(|v| v["invariant"].as_str().unwrap()).collect();
    assert!(ids.contains(&"I2"), "{out}");
}

#[test]
fn the_reference_keeps_every_invariant_under_concurrency_and_lost_acknowledgements() {
    let exec = serve();
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
        "3000",
        "--concurrency",
        "32",
        "--lost-ack",
        "0.05",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json(&out);
    assert!(r["coverage"]["lost_ack_retry"].as_u64().unwrap_or(0) > 0, "{out}");
    assert!(r["coverage"]["duplicate_delivered"].as_u64().unwrap_or(0) > 0, "{out}");
}

/// Contention by design over the protocol (`fixtures/scenarios/hot-set.toml`): six elite
/// identities, every request free, 32 calls in flight with lost acknowledgements, so every call
/// lands on six identities and the one pool; the served reference keeps every invariant.
#[test]
fn the_reference_holds_a_hot_set_under_concurrency() {
    let exec = serve();
    let (code, out, err) = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--scenario",
        "fixtures/scenarios/hot-set.toml",
        "--seeds",
        "0..2",
        "--concurrency",
        "32",
        "--lost-ack",
        "0.02",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["engine"], "exec-reference (concurrency 32)");
    let requests = r["requests"].as_u64().unwrap();
    assert!(requests > 1000, "{out}");
    // Every decision free (a few requests end in a crash before theirs).
    let free = r["coverage"]["decision_free"].as_u64().unwrap();
    assert!(free * 100 >= requests * 95, "{free} free of {requests}: {out}");
    assert!(r["coverage"]["lost_ack_retry"].as_u64().unwrap_or(0) > 0, "{out}");
}

/// Runs `ledger-sim run --engine exec --exec CHILD` with a 2 s bound on answers; the run must
/// end with exit 2 and an error containing every one of `says`, and is killed (the test
/// failing) if it has not ended after 60 s: a child that misbehaves never hangs the run.
fn misbehaving(child: &str, says: &[&str]) {
    let (code, out, err) = sim_in_within(
        &root(),
        &["run", "--engine", "exec", "--exec", child, "--exec-timeout", "2", "--users", "5", "--steps", "50"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 2, "{child}: {out}{err}");
    for s in says {
        assert!(err.contains(s), "{child}: expected {s:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// [`misbehaving`] for a child that starts (its `hello` answered) and misbehaves in the seed:
/// the implementation's failure, a finding of `kind` (exit 1) whose detail holds every one of
/// `says`, never an error of the tool.
fn misbehaving_in_a_seed(child: &str, kind: &str, says: &[&str]) {
    let (code, out, err) = sim_in_within(
        &root(),
        &[
            &["run", "--engine", "exec", "--exec", child, "--exec-timeout", "2", "--users", "5", "--steps", "50"][..],
            &["--max-replays", "20", "--trace-dir", &scratch("misbehaving"), "--json"],
        ]
        .concat(),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{child}: a finding, not an error: {out}{err}");
    let r = json(&out);
    let found = r["violations"].as_array().unwrap().iter().find(|v| v["invariant"] == kind);
    let detail = found.unwrap_or_else(|| panic!("{child}: no {kind} in {out}"))["detail"].as_str().unwrap();
    for s in says {
        assert!(detail.contains(s), "{child}: expected {s:?} in: {detail}");
    }
    assert!(!err.contains("panicked") && !err.contains("error:"), "{err}");
}

#[test]
fn a_child_that_misbehaves_ends_the_run_with_an_error_naming_it() {
    // Never answers: bounded by --exec-timeout (hello waits longer, so answer hello first).
    // Past its hello, that is the implementation's failure: a finding of the seed.
    let hello =
        r#"{"id":0,"type":"hello_ok","protocol":1,"name":"x","api":"reference","clock":"harness","state":"memory"}"#;
    misbehaving_in_a_seed(
        &format!("read l; echo '{hello}'; sleep 30"),
        "no_answer",
        &["seed 0 at the reset: ", "did not answer reset within 2 s (--exec-timeout)"],
    );
    // Garbage instead of a response: the line is named.
    misbehaving("read l; echo 'this is not json'; sleep 30", &["line 1", "this is not json"]);
    // Exits at once.
    misbehaving("exit 3", &["`exit 3`", "exit status: 3"]);
    // Reads its hello and exits: the request it left unanswered is named.
    misbehaving("read l; exit 3", &["closed its output (it exited: exit status: 3) before answering request 0 (hello"]);
    // An id that was never asked.
    let wrong = hello.replace(r#""id":0"#, r#""id":7"#);
    misbehaving(&format!("read l; echo '{wrong}'; sleep 30"), &["id 7 is not a request in flight"]);
    // Its own clock.
    let wall = hello.replace("harness", "wall");
    misbehaving(&format!("read l; echo '{wall}'; sleep 30"), &["the harness owns the clock"]);
    // A definite flag that contradicts its code.
    let lie = r#"{"id":0,"type":"error","code":"crash","definite":true,"text":"x"}"#;
    misbehaving(&format!("read l; echo '{lie}'; sleep 30"), &["error crash is indefinite"]);
    // Output that is not UTF-8, and a line without end (bounded at 16 MiB, never read whole).
    misbehaving(r"printf '\377\376\n'; sleep 30", &["line 1", "not UTF-8"]);
    misbehaving("head -c 40000000 /dev/zero | tr '\\0' a; sleep 30", &["line 1", "(a line longer than 16 MiB)\n"]);
    // A variant named by its index, which serde would read as the variant of that index: a
    // hello_ok as `"type":0`, and (behind the reference, so every answer is otherwise right) a
    // tier_set as `"outcome":0`.
    misbehaving(
        &format!("read l; echo '{}'; sleep 30", hello.replace(r#""type":"hello_ok""#, r#""type":0"#)),
        &["line 1", r#""type": 0 is a number, not the name of a variant"#],
    );
    misbehaving_in_a_seed(
        &format!(r#"{} | sed -u 's/"outcome":"tier_set"/"outcome":0/'"#, serve()),
        "bad_answer",
        &[r#""outcome": 0 is a number, not the name of a variant"#, "answered set_tier with a line that is not"],
    );
    // No such command.
    misbehaving("/nonexistent/adapter", &["exit status: 127"]);
}

/// What an implementation writes for people, and the user's own command, are shown without a
/// password and without control characters a terminal would obey, on every line of the run.
#[test]
fn an_implementations_text_and_the_command_never_show_a_password_or_an_escape() {
    let hello = r#"{"id":0,"type":"hello_ok","protocol":1,"name":"x\u001b[2J","api":"reference","clock":"harness","state":"memory"}"#;
    let error = r#"{"id":1,"type":"error","code":"crash","definite":false,"text":"connect to postgres://admin:hunter2@db/x failed \u001b[31m password=s3cr3t"}"#;
    let script = format!("{}/child.sh", scratch("secrets"));
    std::fs::write(&script, format!("read l; echo '{hello}'; read l; echo '{error}'; sleep 30\n")).unwrap();
    let child = format!("PGPASSWORD=pw3 DATABASE_URL=postgres://u:pw4@h/db sh {script}");
    let (code, out, err) = sim_in_within(
        &root(),
        &["run", "--engine", "exec", "--exec", &child, "--exec-timeout", "2", "--users", "5", "--steps", "50"],
        Duration::from_secs(60),
    );
    // A crash at the reset is the implementation's failure: a finding of the seed.
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refused reset: crash: connect to postgres://admin:***@db/x failed \\u{1b}[31m password=***"),
        "{err}"
    );
    for secret in ["hunter2", "s3cr3t", "pw3", "pw4", "\u{1b}"] {
        assert!(!err.contains(secret) && !out.contains(secret), "{secret:?} shown: {err}");
    }
    // A line that is no response is quoted cut short: hidden before the cut, not after, or a
    // URL cut before its `@` would show its password.
    let garbled =
        format!(r#"{{"id":0,"type":"hello_ok","name":"{} postgres://u:hunter2secret@h/db"}}"#, "x".repeat(239));
    std::fs::write(&script, format!("read l; echo '{garbled}'; sleep 30\n")).unwrap();
    let (code, out, err) = sim_in_within(
        &root(),
        &["run", "--engine", "exec", "--exec", &format!("sh {script}"), "--exec-timeout", "2", "--users", "5"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("not a response of protocol 1") && !err.contains("hunter2"), "{err}");
}

#[test]
fn bad_exec_options_are_refused_before_anything_starts() {
    for (args, says) in [
        (vec!["run", "--engine", "exec"], "needs --exec COMMAND"),
        (vec!["run", "--engine", "exec", "--exec", " "], "the command is empty"),
        (vec!["run", "--engine", "reference", "--exec", "x"], "need --engine exec"),
        (vec!["run", "--engine", "exec", "--exec", "x", "--exec-timeout", "0"], "--exec-timeout 0"),
        (vec!["run", "--engine", "exec", "--exec", "x", "--kill-child-at", "5"], "--kill-child-at needs --concurrency"),
        (vec!["run", "--engine", "exec", "--exec", "x", "--database-url", "postgres://h/db"], "needs --exec-db"),
    ] {
        let (code, out, err) = sim(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: expected {says:?} in {err}");
    }
    // A memory-only implementation cannot be killed and judged.
    let exec = serve();
    let (code, _, err) = sim(&[
        "run",
        "--engine",
        "exec",
        "--exec",
        &exec,
        "--concurrency",
        "4",
        "--kill-child-at",
        "10",
        "--steps",
        "50",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only an implementation with durable state"), "{err}");
}

#[test]
fn serve_answers_bad_lines_with_errors_and_keeps_going() {
    use std::io::Write;
    let mut child = Command::new(SIM)
        .arg("serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let input = concat!(
        "{\"id\":1,\"type\":\"call\",\"now_ms\":5,\"call\":{\"call\":\"expire\"}}\n",
        "{\"id\":2,\"type\":\"hello\",\"protocol\":2,\"config\":{\"budget_sats\":{\"new\":0,\"established\":50,\"trusted\":200,\"elite\":1000},\"pool_initial_sats\":10000,\"credit_bps\":1000,\"reservation_ttl_ms\":600000}}\n",
        "{\"id\":3,\"type\":\"hello\",\"protocol\":1,\"config\":{\"budget_sats\":{\"new\":0,\"established\":50,\"trusted\":200,\"elite\":1000},\"pool_initial_sats\":10000,\"credit_bps\":1000,\"reservation_ttl_ms\":600000}}\n",
        "{\"id\":4,\"type\":\"call\",\"now_ms\":5,\"call\":{\"call\":\"credit\",\"payment_id\":1,\"paid_sats\":-5}}\n",
        "\u{0}\u{1}binary\n",
        "{\"id\":5,\"type\":\"teleport\"}\n",
        "{\"id\":6,\"type\":\"call\",\"now_ms\":5,\"call\":{\"call\":\"credit\",\"payment_id\":1,\"paid_sats\":100}}\n",
    );
    let mut bytes = b"\xff\xfe not UTF-8\n".to_vec();
    bytes.extend_from_slice(input.as_bytes());
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by_id =
        |id: u64| lines.iter().find(|l| l["id"] == id).unwrap_or_else(|| panic!("no answer to {id}: {lines:?}"));
    assert_eq!(by_id(1)["code"], "unavailable", "a call before hello");
    assert_eq!(by_id(2)["code"], "not_supported");
    assert_eq!(by_id(3)["type"], "hello_ok");
    assert_eq!(by_id(4)["code"], "out_of_range", "a negative amount (SPEC §9.1)");
    assert_eq!(by_id(5)["code"], "malformed");
    assert_eq!(by_id(6)["reply"]["credited_sats"], 10);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("line 1 cannot be read: a line that is not UTF-8"), "{log}");
    assert!(log.contains("line 6"), "the line without an id is reported on stderr: {log}");
}

/// An implementation of the seed's API is compared in lockstep, answer by answer, with the seed
/// model one call per step: the Python port with one planted slip (an offer one sat short of
/// what the seed's rule gives) keeps I4 but is named at the first answer that differs.
#[test]
fn a_seed_api_implementation_that_strays_from_the_seed_is_caught_in_lockstep() {
    let dir = scratch("python-stray");
    for file in ["adapter.py", "free_tier.py"] {
        let text = std::fs::read_to_string(root().join("examples/python").join(file)).unwrap();
        let text = if file == "free_tier.py" {
            let rule = "can_absorb = min(daily_remaining, pool_balance, estimated_sats)";
            assert!(text.contains(rule), "the Python port's offer rule");
            text.replace(rule, "can_absorb = min(daily_remaining, pool_balance, estimated_sats - 1)")
        } else {
            text
        };
        std::fs::write(format!("{dir}/{file}"), text).unwrap();
    }
    let exec = format!("python3 {dir}/adapter.py");
    let (code, out, err) = sim(&[
        "run", "--engine", "exec", "--exec", &exec, "--seeds", "0..2", "--users", "20", "--steps", "500", "--json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    let divergence = r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["invariant"] == "divergence")
        .unwrap_or_else(|| panic!("no divergence reported: {out}"));
    let detail = divergence["detail"].as_str().unwrap();
    // In the protocol's JSON, not Rust's Debug notation.
    assert!(detail.contains(r#""call":{"call":"decide""#) && detail.contains("exec replied {"), "{detail}");
    assert!(!detail.contains("Decide {") && !detail.contains("Some("), "{detail}");
}

/// The Python example of the README (`examples/python`): the seed's service ported to Python
/// behind a protocol adapter. One call at a time, it is the seed model one call per step
/// (`Atomic<SeedEngine>`), trace hash for trace hash, and it breaks what the seed breaks.
#[test]
fn the_python_example_is_the_seed_model_one_call_at_a_time() {
    use ledger_harness::{Atomic, SeedEngine};
    use ledger_simulator::gen::{run_seed, SchedulerKind};
    let scenario = ledger_simulator::scenario::Scenario { n_users: 50, n_steps: 3000, ..Default::default() };
    for seed in 0..3u64 {
        let (model, _) = run_seed(|c| Atomic(SeedEngine::new(c)), "exec-seed", &scenario, seed, SchedulerKind::Random);
        let seed_arg = seed.to_string();
        let (code, out, _) = sim(&[
            "run",
            "--engine",
            "exec",
            "--exec",
            "python3 examples/python/adapter.py",
            "--seed",
            &seed_arg,
            "--users",
            "50",
            "--steps",
            "3000",
            "--json",
        ]);
        let r = json(&out);
        // A report's hash folds its seeds' trace hashes, here one.
        let folded =
            ledger_simulator::report::fold_trace_hash(ledger_simulator::report::EMPTY_TRACE_HASH, model.trace_hash);
        assert_eq!(r["trace_hash"], format!("{folded:016x}"), "seed {seed}: {r}");
        let mut want: Vec<&str> = model.violations.iter().map(|v| v.invariant.id()).collect();
        want.sort_unstable();
        want.dedup();
        let got: Vec<&str> =
            r["violations"].as_array().unwrap().iter().map(|v| v["invariant"].as_str().unwrap()).collect();
        assert_eq!(got, want, "seed {seed}");
        assert_eq!(code, if want.is_empty() { 0 } else { 1 });
    }
}

/// An implementation resets its state at every seed, on whatever database its environment
/// names: `DATABASE_URL` and libpq's variables of the run's environment reach it only when
/// passed on by name (`--exec-env`), and stderr names (never shows) what was withheld.
#[test]
fn a_users_database_variables_reach_an_implementation_only_when_passed_on() {
    let dir = scratch("exec-env");
    let seen = format!("{dir}/child.env");
    let child = format!("env > '{seen}'; exec '{SIM}' serve");
    let env = [("DATABASE_URL", "postgres://me:hunter2@prod/ledger"), ("PGPASSWORD", "s3cr3t"), ("PGHOST", "prod")];
    let quick = ["--users", "5", "--steps", "50"];
    let limit = Duration::from_secs(120);
    let (code, out, err) =
        sim_env_within(&root(), &[&["run", "--engine", "exec", "--exec", &child][..], &quick].concat(), &env, limit);
    assert_eq!(code, 0, "{out}{err}");
    let child_env = std::fs::read_to_string(&seen).unwrap();
    for name in ["DATABASE_URL=", "PGPASSWORD=", "PGHOST="] {
        assert!(!child_env.lines().any(|l| l.starts_with(name)), "{name} reached the child:\n{child_env}");
    }
    assert!(err.contains("starts without DATABASE_URL, PGHOST, PGPASSWORD of this environment"), "{err}");
    for secret in ["hunter2", "s3cr3t"] {
        assert!(!err.contains(secret) && !out.contains(secret), "{secret} shown: {err}");
    }

    // Passed on by name: that one, and only that one.
    let args = [&["run", "--engine", "exec", "--exec-env", "DATABASE_URL", "--exec", &child][..], &quick].concat();
    let (code, out, err) = sim_env_within(&root(), &args, &env, limit);
    assert_eq!(code, 0, "{out}{err}");
    let child_env = std::fs::read_to_string(&seen).unwrap();
    assert!(child_env.lines().any(|l| l == "DATABASE_URL=postgres://me:hunter2@prod/ledger"), "{child_env}");
    assert!(!child_env.lines().any(|l| l.starts_with("PGPASSWORD=")), "{child_env}");
    assert!(err.contains("starts without PGHOST, PGPASSWORD of this environment"), "{err}");
    assert!(!err.contains("hunter2") && !err.contains("s3cr3t"), "{err}");

    // A finding's replay passes the same variables on.
    let credit = r#"s/"credited_sats":\([1-9][0-9]*\)/"credited_sats":1\1/"#;
    let buggy = format!("env > '{seen}'; {}", broken(credit));
    let args = [
        "run",
        "--engine",
        "exec",
        "--exec-env",
        "PGHOST",
        "--exec",
        &buggy,
        "--users",
        "20",
        "--steps",
        "2000",
        "--trace-dir",
        &dir,
    ];
    let (code, out, err) = sim_env_within(&root(), &args, &env, limit);
    assert_eq!(code, 1, "{out}{err}");
    let replay = out.lines().find(|l| l.contains("replay:")).unwrap_or_else(|| panic!("no replay line: {out}"));
    assert!(replay.contains("--exec-env PGHOST"), "{replay}");

    // Refused before any work, exit 2, naming what is wrong.
    for (flag, says) in [
        (
            "NOT_SET_ANYWHERE_4711",
            "--exec-env NOT_SET_ANYWHERE_4711: NOT_SET_ANYWHERE_4711 is not set in this environment",
        ),
        ("DATABASE_URL=postgres://x", "not a variable's name"),
        ("", "not a variable's name"),
    ] {
        let args = [&["run", "--engine", "exec", "--exec-env", flag, "--exec", &child][..], &quick].concat();
        let (code, out, err) = sim_env_within(&root(), &args, &env, limit);
        assert_eq!(code, 2, "{flag}: {out}{err}");
        assert!(err.contains(says), "{flag}: {err}");
    }
    let (code, _, err) = sim_env_within(&root(), &["run", "--exec-env", "PGHOST"], &env, limit);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--exec-env and --exec-timeout need --engine exec"), "{err}");
    let args = ["conform", "--exec", &child, "--exec-db", "--exec-env", "DATABASE_URL"];
    let (code, _, err) = sim_env_within(&root(), &args, &env, limit);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("give one or the other"), "{err}");
}
