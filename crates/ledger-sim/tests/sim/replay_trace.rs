//! `ledger-sim replay`'s traces (`ledger-sim-trace`): version 2 ends with a footer, so a trace
//! cut short or altered is refused naming the file and line; version 1 (the committed
//! counterexamples) is still read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ledger_simulator::history::{Event, History, TRACE_VERSION};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger-sim")).args(args).output().unwrap()
}

/// A committed counterexample, written by version 1.
fn version_1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/counterexamples/seed-races/seed-seed0-I4.jsonl")
}

fn tmp(name: &str, bytes: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("ledger-sim-replay-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn read(bytes: &[u8]) -> Result<History, String> {
    History::read_jsonl(bytes, "t.jsonl").map_err(|e| e.to_string())
}

/// The committed counterexample, and the same history as version 2 writes it.
fn both() -> (History, Vec<u8>) {
    let v1 = std::fs::read(version_1()).unwrap();
    assert!(String::from_utf8_lossy(&v1).starts_with(r#"{"line":"header","format":"ledger-sim-trace","version":1,"#));
    let h = read(&v1).unwrap();
    let mut v2 = Vec::new();
    h.write_jsonl(&mut v2).unwrap();
    (h, v2)
}

#[test]
fn version_2_ends_with_a_footer_and_reads_back() {
    let (h, v2) = both();
    let text = String::from_utf8(v2.clone()).unwrap();
    assert!(text.contains(&format!("\"version\":{TRACE_VERSION},")));
    let last = text.lines().last().unwrap();
    let footer = format!(
        r#"{{"line":"footer","users":{},"flows":{},"events":{},"sha256":""#,
        h.users.len(),
        h.flows.len(),
        h.events.len()
    );
    assert!(last.starts_with(&footer), "{last}");
    assert_eq!(read(&v2).unwrap(), h);
}

#[test]
fn a_version_2_trace_cut_at_any_line_is_refused() {
    let (_, v2) = both();
    let ends: Vec<usize> = v2.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1).collect();
    for (i, &end) in ends[..ends.len() - 1].iter().enumerate() {
        let e = read(&v2[..end]).unwrap_err();
        let want = format!("t.jsonl:{}: the trace ends after line {} without its footer", i + 2, i + 1);
        assert!(e.starts_with(&want), "cut after line {}: {e}", i + 1);
    }
    // Cut before its first line, or left only blank lines, it has no header: refused at the
    // line the header should be on.
    assert_eq!(read(b"").unwrap_err(), "t.jsonl:1: the trace is empty: its first line must be the header");
    assert_eq!(read(b"\n \n").unwrap_err(), "t.jsonl:3: the trace is empty: its first line must be the header");
    // And the command line names the file and the line, exit 2.
    let cut = tmp("cut.jsonl", &v2[..ends[2]]);
    let out = sim(&["replay", &cut]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{cut}:4: the trace ends after line 3 without its footer")), "{stderr}");
}

#[test]
fn a_footer_that_does_not_match_is_refused() {
    let (_, v2) = both();
    let text = String::from_utf8(v2).unwrap();
    let n = text.lines().count();
    let (body, footer) = text.trim_end().rsplit_once('\n').unwrap();
    for (bad, line, words) in [
        (text.replacen("\"actual_sats\":", "\"actual_sats\":1", 1), n, "hash to"),
        (format!("{body}\n{}\n", footer.replacen("\"events\":", "\"events\":9", 1)), n, "the footer counts"),
        (format!("{text}{footer}\n"), n + 1, "a line after the footer"),
        (format!("{body}\n{}\n", footer.replacen("\"sha256\":\"", "\"sha256\":\"0", 1)), n, "hash to"),
    ] {
        let e = read(bad.as_bytes()).unwrap_err();
        assert!(e.starts_with(&format!("t.jsonl:{line}: ")) && e.contains(words), "{e}");
    }
    // A footer in a version 1 trace is refused too: footers came with version 2.
    let v1 = std::fs::read_to_string(version_1()).unwrap();
    let e = read(format!("{v1}{footer}\n").as_bytes()).unwrap_err();
    assert!(e.contains("a footer in a version 1 trace"), "{e}");
}

#[test]
fn version_1_traces_still_replay() {
    // The committed counterexamples are version 1: no footer, a cut cannot be detected.
    let v1 = std::fs::read(version_1()).unwrap();
    let shorter = &v1[..v1[..v1.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1];
    assert!(read(shorter).is_ok());
    let out = sim(&["replay", version_1().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("VIOLATION I4"));
}

/// A hostile trace of version 2, from its lines (the header first), with the footer that
/// matches them: the hash cannot catch what the reader must refuse itself.
fn hostile(lines: &[String]) -> Vec<u8> {
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let count = |kind: &str| lines.iter().filter(|l| l.contains(&format!("\"line\":\"{kind}\""))).count();
    let users: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.contains("\"line\":\"user\""))
        .map(|l| l.split("\"user\":").nth(1).unwrap().split([',', '}']).next().unwrap())
        .collect();
    let sha256 = ledger_harness::conformance::Sha256Hex::of(text.as_bytes());
    text.push_str(&format!(
        "{{\"line\":\"footer\",\"users\":{},\"flows\":{},\"events\":{},\"sha256\":\"{sha256}\"}}\n",
        users.len(),
        count("flow"),
        count("event")
    ));
    text.into_bytes()
}

/// The header of a reference trace, the default configuration with `edit` applied to it.
fn header(edit: impl Fn(String) -> String) -> String {
    let config = r#"{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":10000,"credit_bps":1000,"reservation_ttl_ms":600000}"#;
    format!(
        r#"{{"line":"header","format":"ledger-sim-trace","version":2,"engine":"reference","seed":0,"step_ms":250,"config":{}}}"#,
        edit(config.to_owned())
    )
}

/// Replays `bytes` as `name`: a bad input is exit 2 with `file:line: ` and `words` on stderr,
/// and nothing on stdout (no step, no verdict, no blame on the engine).
fn refused(name: &str, bytes: &[u8], line: usize, words: &str) {
    let path = tmp(name, bytes);
    let out = sim(&["replay", &path]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{name}: {stdout}{stderr}");
    assert!(stdout.is_empty(), "{name}: {stdout}");
    assert!(stderr.contains(&format!("{path}:{line}: ")) && stderr.contains(words), "{name}: {stderr}");
}

/// An elite user's session whose worker crashes after its decide: the drain jumps past the
/// reservation's deadline and `expire` releases it.
fn crashed_session(header: String) -> Vec<String> {
    let mut lines = vec![
        header,
        r#"{"line":"user","user":1,"tier":"elite"}"#.to_owned(),
        r#"{"line":"flow","id":1,"kind":"session","user":1,"estimated_sats":100,"actual_sats":100,"crash_after":1}"#
            .to_owned(),
        r#"{"line":"event","ev":{"start":1}}"#.to_owned(),
    ];
    lines.extend((0..6).map(|_| r#"{"line":"event","ev":{"step":1}}"#.to_owned()));
    lines
}

#[test]
fn a_reservation_ttl_past_the_bound_is_refused_not_blamed_on_the_reference() {
    // At the default TTL the reference holds: the drain expires the crashed worker's
    // reservation.
    let ok = tmp("ttl-ok.jsonl", &hostile(&crashed_session(header(|c| c))));
    let out = sim(&["replay", &ok]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // At u64::MAX, TTL + 1 wrapped to a jump of 0 ms and I5 and I6 blamed the reference.
    let ttl = |c: String| c.replace("600000", &u64::MAX.to_string());
    let bytes = hostile(&crashed_session(header(ttl)));
    refused("ttl.jsonl", &bytes, 1, "config.reservation_ttl_ms 18446744073709551615: more than 2^61");
    // And `run` refuses a scenario with such a TTL (TOML's largest integer) before any seed,
    // where its drain took the clock out of SPEC's range and blamed the reference too.
    let scenario = tmp(
        "ttl.toml",
        format!("n_users = 10\nn_steps = 100\n[ledger]\nreservation_ttl_ms = {}\n", i64::MAX).as_bytes(),
    );
    let out = sim(&["run", "--scenario", &scenario, "--seeds", "0..4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("ledger.reservation_ttl_ms = 9223372036854775807: must be at most 31536000000 (365 days)"),
        "{stderr}"
    );
}

#[test]
fn amounts_past_the_scenarios_bounds_are_refused_not_blamed_on_the_reference() {
    // Two gated jobs of Sats::MAX at a credit of 100 %: the second credit overflowed, and I1
    // blamed the reference.
    let max = i64::MAX;
    let mut lines = vec![
        header(|c| c.replace("\"credit_bps\":1000", "\"credit_bps\":10000")),
        r#"{"line":"user","user":1,"tier":"new"}"#.to_owned(),
    ];
    for id in [1, 2] {
        lines.push(format!(
            r#"{{"line":"flow","id":{id},"kind":"job","user":1,"estimated_sats":{max},"actual_sats":{max}}}"#
        ));
    }
    for id in [1, 2] {
        lines.push(format!(r#"{{"line":"event","ev":{{"start":{id}}}}}"#));
        lines.extend((0..4).map(|_| format!(r#"{{"line":"event","ev":{{"step":{id}}}}}"#)));
    }
    refused("amounts.jsonl", &hostile(&lines), 3, &format!("flow 1: estimated_sats {max} is above 1000000000001"));
    // A pool above the 1e15 a scenario takes, likewise.
    let mut pool =
        crashed_session(header(|c| c.replace("\"pool_initial_sats\":10000", &format!("\"pool_initial_sats\":{max}"))));
    refused("pool.jsonl", &hostile(&pool), 1, &format!("config.pool_initial_sats {max}: more than 1e15"));
    pool[0] = header(|c| c.replace("\"pool_initial_sats\":10000", "\"pool_initial_sats\":1000000000000000"));
    let out = sim(&["replay", &tmp("pool-ok.jsonl", &hostile(&pool))]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_clock_jump_past_the_schedules_bound_is_refused() {
    let mut lines = crashed_session(header(|c| c));
    lines.insert(4, format!(r#"{{"line":"event","ev":{{"jump":{}}}}}"#, u64::MAX));
    // It was read, and the clock stopped at u64::MAX, past SPEC's times, with no word said.
    refused("jump.jsonl", &hostile(&lines), 5, "ev.jump 18446744073709551615: the clock would reach");
    // A day is a jump like a run's.
    lines[4] = r#"{"line":"event","ev":{"jump":86400000}}"#.to_owned();
    let out = sim(&["replay", &tmp("jump-ok.jsonl", &hostile(&lines))]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("clock jumps 86400000 ms"));
}

#[test]
fn a_misspelt_or_missing_key_is_refused_not_defaulted() {
    // The worker's crash was dropped without a word, and another flow was replayed.
    let mut lines = crashed_session(header(|c| c));
    lines[2] = lines[2].replace("crash_after", "crash_afterr");
    refused("typo.jsonl", &hostile(&lines), 3, "unknown field `crash_afterr`");
    // A header's misspelt key, and a configuration without its TTL, which took the default.
    let lines = crashed_session(header(|c| c).replace("\"seed\":0", "\"seed\":0,\"step_mss\":1"));
    refused("header-typo.jsonl", &hostile(&lines), 1, "unknown field `step_mss`");
    let lines = crashed_session(header(|c| c.replace(",\"reservation_ttl_ms\":600000", "")));
    refused("no-ttl.jsonl", &hostile(&lines), 1, "missing field `reservation_ttl_ms`");
}

#[test]
fn a_second_line_for_a_user_is_refused() {
    // The second line replaced the user's tier without a word.
    let mut lines = crashed_session(header(|c| c));
    lines.insert(1, r#"{"line":"user","user":1,"tier":"new"}"#.to_owned());
    refused("user-twice.jsonl", &hostile(&lines), 3, "a second line for user 1");
}

#[test]
fn an_event_before_its_flows_start_or_a_second_start_is_refused() {
    // The step before the start did nothing, without a word.
    let mut lines = crashed_session(header(|c| c));
    lines.insert(3, r#"{"line":"event","ev":{"step":1}}"#.to_owned());
    refused("early-step.jsonl", &hostile(&lines), 5, "flow 1 starts after line 4 named it");
    let mut lines = crashed_session(header(|c| c));
    lines.push(r#"{"line":"event","ev":{"start":1}}"#.to_owned());
    refused("second-start.jsonl", &hostile(&lines), 11, "flow 1 starts a second time (it started at line 4)");
}

/// A trace `run` writes when its shrinker runs out of replays (`run --engine seed --scenario
/// fixtures/scenarios/ci-small.toml --seed 8 --max-replays 50`): the shrinker took the start
/// events of some flows out and kept their steps, each a step of the clock the violation
/// needs. Such events name flows that never start, and the trace replays as it was written.
#[test]
fn a_shrunk_trace_with_steps_of_flows_that_never_start_replays() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/traces/ci-small-seed8-max-replays-50-I6.jsonl");
    let h = read(&std::fs::read(&path).unwrap()).unwrap();
    let started: std::collections::BTreeSet<u32> =
        h.events.iter().filter_map(|ev| if let Event::Start(id) = ev { Some(*id) } else { None }).collect();
    assert!(h.events.iter().any(|ev| matches!(ev, Event::Step(id) if !started.contains(id))));
    let out = sim(&["replay", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("VIOLATION I6 no leak: 29 sats still held"));
}
