//! `ledger-sim check-trace`: clean vectors pass, a tampered trace is caught at its first
//! divergence with the invariants it breaks, bad input exits 2 naming the line (and, with
//! `--json`, as an object on stdout), a trace cut short is bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ledger_harness::conformance::check::{check_bytes, VIOLATIONS_KEPT};
use ledger_harness::conformance::Footer;

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger-sim")).args(args).output().unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance")
}

fn tmp(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ledger-sim-check-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn commands_jsonl() -> String {
    std::fs::read_to_string(fixtures().join("commands.jsonl")).unwrap()
}

/// `text`, a trace whose lines were edited, with its footer written again: what an
/// implementation that produced those lines would write.
fn sealed(text: &str) -> String {
    let body: String = text.lines().filter(|l| !l.starts_with("{\"footer\"")).map(|l| format!("{l}\n")).collect();
    let segments = body.lines().filter(|l| l.starts_with("{\"format\"")).count();
    let steps = body.lines().count() - segments;
    format!("{body}{}\n", Footer::of(body.as_bytes(), segments, steps).to_line())
}

#[test]
fn every_conformance_vector_checks_clean() {
    let mut n = 0;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            let bytes = std::fs::read(&path).unwrap();
            let report = check_bytes(&path.display().to_string(), &bytes, 3).unwrap();
            assert!(report.ok(), "{}: {report:#?}", path.display());
            n += report.segments;
        }
    }
    assert!(n >= 300);
    let out = sim(&["check-trace", fixtures().join("daily-window.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: the trace matches"));
}

#[test]
fn a_wrong_balance_is_the_first_divergence_and_breaks_conservation() {
    // An implementation whose pool forgot one debit of 40 in the `decide/free` case.
    let text = commands_jsonl();
    let i = text.find("\"case\":\"decide/free\"").unwrap();
    let (head, tail) = text.split_at(i);
    let tampered = format!("{head}{}", tail.replacen("\"pool_sats\":9960", "\"pool_sats\":10000", 1));
    let line = head.lines().count() + 2;
    let out = sim(&["check-trace", "--json", &tmp("wrong-balance.jsonl", &sealed(&tampered))]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v["divergence"];
    assert_eq!(d["line"], line);
    assert_eq!(d["case"], "decide/free");
    assert_eq!(d["fields"][0]["field"], "totals.pool_sats");
    assert_eq!(d["fields"][0]["trace"], 10000);
    assert_eq!(d["fields"][0]["reference"], 9960);
    let context: Vec<u64> = d["context"].as_array().unwrap().iter().map(|c| c["line"].as_u64().unwrap()).collect();
    assert!(context.contains(&(line as u64 - 1)) && context.contains(&(line as u64 + 1)), "{context:?}");
    let violations = v["violations"].as_array().unwrap();
    assert!(violations.iter().any(|x| x["invariant"] == "I2" && x["line"] == line), "{violations:?}");
}

#[test]
fn a_double_credit_is_caught_as_divergence_and_violation() {
    // An implementation that credits a webhook delivered twice: the repeat's totals grow.
    let text = commands_jsonl();
    let case = text.find("\"case\":\"credit/credited\"").unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = text[..case].lines().count();
    // Line n+1 credits payment 1 (1000 paid, 100 credited); deliver it again, credited again.
    let first = lines[n].clone();
    let again = first
        .replace("\"pool_sats\":10100", "\"pool_sats\":10200")
        .replace("\"credited_sats\":100,\"overrun", "\"credited_sats\":200,\"overrun");
    assert_ne!(first, again);
    lines.insert(n + 1, again);
    let junit = tmp("double-credit.xml", "");
    let out = sim(&["check-trace", &tmp("double-credit.jsonl", &sealed(&lines.join("\n"))), "--junit", &junit]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("DIVERGENCE at line {} (case credit/credited)", n + 2)), "{stdout}");
    assert!(stdout.contains("VIOLATION") && stdout.contains("I2 conservation"), "{stdout}");
    // The same verdict for a CI's test view: the divergence and I2 fail, the rest pass.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"7\" failures=\"2\""), "{xml}");
    assert!(xml.contains("<testsuite name=\"ledger-sim check-trace: /"), "{xml}");
    assert!(xml.contains("type=\"divergence\"") && xml.contains("type=\"I2\""), "{xml}");
}

#[test]
fn a_garbled_line_exits_two_with_its_line_number() {
    let text = commands_jsonl();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[4] = "{\"now\": 1, \"command\": ";
    let out = sim(&["check-trace", &tmp("garbled.jsonl", &lines.join("\n"))]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 5: not_json"), "{stderr}");

    let big = fixtures().join("bad-input/paid-i64-max-plus-1.jsonl");
    let out = sim(&["check-trace", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: number_out_of_range") && stderr.contains("9223372036854775808"), "{stderr}");

    let out = sim(&["check-trace", "/nonexistent/trace.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn with_json_bad_input_is_an_object_on_stdout() {
    let text = commands_jsonl();
    let lines: Vec<&str> = text.lines().collect();
    let cut = tmp("cut.jsonl", &(lines[..10].join("\n") + "\n"));
    for (file, line, kind) in [
        (cut.clone(), serde_json::json!(11), "missing_footer"),
        (
            tmp("tampered.jsonl", &text.replacen("\"pool_sats\":9960", "\"pool_sats\":9961", 1)),
            serde_json::json!(lines.len()),
            "bad_footer",
        ),
        ("/nonexistent/trace.jsonl".to_owned(), serde_json::Value::Null, "unreadable"),
    ] {
        let out = sim(&["check-trace", "--json", &file]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (&v["file"], &v["error"]["line"], &v["error"]["kind"]),
            (&serde_json::json!(file), &line, &serde_json::json!(kind)),
            "{v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message) && stderr.contains(&file), "{stderr} / {message}");
    }
    // Without --json, stdout stays empty: the error is on stderr only.
    let out = sim(&["check-trace", &cut]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 11: missing_footer"));
}

#[test]
fn violations_are_kept_ten_per_invariant_and_all_counted() {
    // An implementation whose pool claims one sat too many wherever it holds 10000.
    let tampered = sealed(&commands_jsonl().replace("\"pool_sats\":10000,", "\"pool_sats\":10001,"));
    let path = tmp("many-violations.jsonl", &tampered);
    let out = sim(&["check-trace", "--json", &path]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = v["violation_counts"]["I2"].as_u64().unwrap() as usize;
    assert!(n > VIOLATIONS_KEPT, "{n}");
    let kept = v["violations"].as_array().unwrap().iter().filter(|x| x["invariant"] == "I2").count();
    assert_eq!(kept, VIOLATIONS_KEPT);
    let out = sim(&["check-trace", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("I2 conservation").count(), VIOLATIONS_KEPT, "{stdout}");
    assert!(stdout.contains(&format!("... and {} more I2 violations", n - VIOLATIONS_KEPT)), "{stdout}");
}

#[test]
fn a_version_1_trace_is_checked_and_said_to_be_uncut_only_by_trust() {
    let path = fixtures().join("version-1/commands.jsonl");
    let out = sim(&["check-trace", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("version 1 trace: no footer, a cut trace cannot be detected"), "{stdout}");
    let out = sim(&["check-trace", "--json", path.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["version"], &v["footer"]), (&serde_json::json!(1), &serde_json::json!(false)));
    let out = sim(&["check-trace", "--json", fixtures().join("commands.jsonl").to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["version"], &v["footer"]), (&serde_json::json!(2), &serde_json::json!(true)));
}

/// A trace is another implementation's record of what it did: a pool it claims below zero
/// (`"pool_sats":-42`), or beyond what 64 signed bits hold, is a divergence from the reference
/// at that line and a broken I1 (exit 1, in --json and --junit), not malformed input. A line
/// that is malformed is still refused (exit 2): an amount written as a string, totals without
/// a key, a negative amount in a command.
#[test]
fn a_negative_or_overflowing_pool_is_a_divergence_and_breaks_i1() {
    let text = commands_jsonl();
    let i = text.find("\"case\":\"decide/free\"").unwrap();
    let (head, tail) = text.split_at(i);
    let line = head.lines().count() + 2;
    for (pool, says) in [
        ("-42", "I1 pool never negative: pool balance -42 out of 0..=Sats::MAX"),
        ("9223372036854775808", "I1 pool never negative: pool balance 9223372036854775808 out of 0..=Sats::MAX"),
    ] {
        let tampered = format!("{head}{}", tail.replacen("\"pool_sats\":9960", &format!("\"pool_sats\":{pool}"), 1));
        let path = tmp(&format!("pool{pool}.jsonl"), &sealed(&tampered));
        let junit = tmp(&format!("pool{pool}.xml"), "");
        let out = sim(&["check-trace", "--json", &path, "--junit", &junit]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{pool}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &v["divergence"];
        assert_eq!((&d["line"], &d["case"]), (&serde_json::json!(line), &serde_json::json!("decide/free")), "{v}");
        assert_eq!(d["fields"][0]["field"], "totals.pool_sats", "{v}");
        assert_eq!(d["fields"][0]["trace"].to_string(), pool, "{v}");
        assert_eq!(d["fields"][0]["reference"], 9960, "{v}");
        let violations = v["violations"].as_array().unwrap();
        let i1 = violations.iter().find(|x| x["invariant"] == "I1").unwrap_or_else(|| panic!("no I1: {v}"));
        assert_eq!(i1["line"], line, "{v}");
        assert!(i1["detail"].as_str().unwrap().contains(says), "{i1}");
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.contains(r#"type="divergence""#) && xml.contains(r#"type="I1""#), "{xml}");
        // And in text.
        let out = sim(&["check-trace", &path]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains(&format!("DIVERGENCE at line {line} (case decide/free)")), "{stdout}");
        assert!(stdout.contains(&format!("  totals.pool_sats: trace {pool} / reference 9960")), "{stdout}");
        assert!(stdout.contains(&format!("VIOLATION line {line} (case decide/free): {says}")), "{stdout}");
    }
    // Malformed lines are still refused, naming the line.
    for (name, from, to, kind) in [
        ("string-pool", "\"pool_sats\":9960", "\"pool_sats\":\"-42\"", "bad_field"),
        ("no-pool", "\"pool_sats\":9960,", "", "bad_field"),
        ("negative-estimate", "\"estimated_sats\":40", "\"estimated_sats\":-40", "number_out_of_range"),
        ("negative-zero-pool", "\"pool_sats\":9960", "\"pool_sats\":-0", "number_out_of_range"),
        ("pool-beyond-64-bits", "\"pool_sats\":9960", "\"pool_sats\":18446744073709551616", "number_out_of_range"),
    ] {
        let tampered = format!("{head}{}", tail.replacen(from, to, 1));
        let out = sim(&["check-trace", "--json", &tmp(&format!("{name}.jsonl"), &sealed(&tampered))]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", String::from_utf8_lossy(&out.stdout));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (&v["error"]["line"], &v["error"]["kind"]),
            (&serde_json::json!(line), &serde_json::json!(kind)),
            "{name}: {v}"
        );
    }
}
