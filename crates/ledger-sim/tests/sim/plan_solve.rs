//! `plan --target --solve` and `--over` end to end: the verdict, its JSON and its report from the
//! binary, the same bytes on one thread and two, progress on stderr, and bad input refused
//! before any work with nothing written.

use std::path::Path;
use std::process::Command;

use crate::common::{json, scratch, SIM};

/// Seven days of 70 users whose pool runs dry in about 40 % of seeds at a 10 % credit: a
/// boundary between 0 and 100 % that takes a few hundred small seeds to place.
const SCENARIO: &str = include_str!("../../../../fixtures/scenarios/plan-tipping.toml");

const TARGET: &str = "p_dry(day=7) <= 0.05";

/// `ledger-sim ARGS` on `threads` threads: exit code, stdout, stderr.
fn sim(threads: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(SIM)
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .env_remove("DATABASE_URL")
        .output()
        .expect("ledger-sim runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn scenario(dir: &str) -> String {
    let path = format!("{dir}/s.toml");
    std::fs::write(&path, SCENARIO).unwrap();
    path
}

#[test]
fn a_solve_gives_its_verdict_json_and_report_the_same_on_any_thread_count() {
    let dir = scratch("plan-solve");
    let s = scenario(&dir);
    let report = format!("{dir}/solve.html");
    let args = ["plan", &s, "--target", TARGET, "--solve", "credit_pct=0..100", "--resolution", "5"];

    let (code, text, err) = sim("2", &[&args[..], &["--report", &report]].concat());
    assert_eq!(code, 0, "{err}");
    let verdict = text.lines().next().unwrap();
    assert!(verdict.starts_with(&format!("{TARGET}: credit_pct between ")), "{text}");
    assert!(verdict.contains("95 % confidence") && verdict.contains("seeds spent"), "{verdict}");
    // Progress on stderr, one line per decision as it is made, scout and sure.
    assert!(err.contains("credit_pct=0 scout fails after"), "{err}");
    assert!(err.contains(" sure meets after ") && err.contains(" sure fails after "), "{err}");
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.contains("credit_pct between"), "the report says the answer");

    let (code, one, err) = sim("1", &[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let (_, two, _) = sim("2", &[&args[..], &["--json"]].concat());
    assert!(one == two, "the JSON differs between one thread and two");
    let v = json(&one);
    assert_eq!(v["format"], "ledger-sim-solve/2");
    assert_eq!(v["violations"], 0);
    let result = &v["results"][0];
    assert_eq!(result["verdict"]["kind"], "between");
    assert_eq!(result["line"].as_str().unwrap(), verdict);
    // The verdict rests on sure decisions at both of its values.
    let (meets_at, fails_at) = (&result["verdict"]["meets_at"], &result["verdict"]["fails_at"]);
    let sure = |value: &serde_json::Value, decision: &str| {
        result["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| &s["value"] == value && s["level"] == "sure" && s["decision"] == decision)
    };
    assert!(sure(meets_at, "meets") && sure(fails_at, "fails"), "{result}");
    let (_, one_text, _) = sim("1", &args);
    assert_eq!(one_text, text, "the text differs between one thread and two");
    // Carrying runs up the key changes what the solve runs, never what it finds; stderr
    // says how many of the seeds read were carried.
    assert!(err.contains(" seed(s) read (") && !err.contains("(0 of them carried up"), "{err}");
    // Runs and seeds read add up: those run and never read are counted apart.
    let number_before = |words: &str| -> u64 {
        let at = err.find(words).unwrap_or_else(|| panic!("{words:?} in {err}"));
        err[..at].rsplit([' ', '(', '\n']).next().unwrap().parse().unwrap()
    };
    let (read, carried, runs) =
        (number_before(" seed(s) read"), number_before(" of them carried up"), number_before(" run(s)"));
    let unread = if err.contains(" of them past the seed that decided a test") {
        number_before(" of them past the seed that decided a test")
    } else {
        0
    };
    assert_eq!(read - carried + unread, runs, "{err}");
    let (code, every, err) = sim("2", &[&args[..], &["--json", "--no-carry"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(every == two, "--no-carry changed the JSON");
    assert!(err.contains("(0 of them carried up from a lower value)"), "{err}");
}

#[test]
fn a_frontier_gives_a_row_per_value_and_a_report() {
    let dir = scratch("plan-frontier");
    let s = scenario(&dir);
    let report = format!("{dir}/frontier.html");
    let (code, text, err) = sim(
        "2",
        &[
            "plan",
            &s,
            "--target",
            TARGET,
            "--solve",
            "credit_pct=0..100",
            "--resolution",
            "5",
            "--over",
            "budget.established=20,50",
            "--report",
            &report,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(text.starts_with(&format!("{TARGET}: credit_pct that meets it, for each budget.established")), "{text}");
    let row = |value: &str| text.lines().find(|l| l.trim_start().starts_with(&format!("{value} "))).unwrap_or("");
    assert!(row("20").contains("all of 0..100 meet"), "{text}");
    assert!(row("50").contains("between"), "{text}");
    assert!(err.contains("budget.established=50  p_dry(day=7) <= 0.05: credit_pct="), "{err}");
    assert!(Path::new(&report).is_file());
}

#[test]
fn bad_input_exits_two_before_any_work_and_writes_no_report() {
    let dir = scratch("plan-solve-bad");
    let s = scenario(&dir);
    let report = format!("{dir}/never.html");
    for (args, want) in [
        (vec!["--solve", "credit_pct=0..500"], "credit_pct = 500: percentage over 100"),
        (vec!["--solve", "credit_pct=5..5"], "empty range"),
        (vec!["--solve", "budget.gold=0..10"], "unknown field `gold`"),
        (vec!["--solve", "credit_pct=0..100", "--over", "credit_pct=1,2"], "credit_pct"),
        (vec!["--solve", "credit_pct=0..100", "--over", "budget.trusted=10,10"], "budget.trusted"),
        (vec!["--solve", "credit_pct=0..100", "--alpha", "0.9"], "alpha = 0.9"),
        (vec!["--solve", "credit_pct=0..100", "--max-seeds", "0"], "seed cap"),
        (
            vec!["--solve", "credit_pct=0..100", "--max-seeds", "139"],
            "--max-seeds 139: the test of \"p_dry(day=7) <= 0.05\" needs at least 140 seeds to decide that a value \
             meets it",
        ),
        (vec!["--solve", "days=1..10"], "set them with --days"),
        (vec!["--solve", "credit_pct=0..100", "--over", "days=5,6"], "set them with --days"),
        (vec!["--solve", "credit_pct=0..100", "--seeds", "5"], "--seeds 5 does not apply"),
        (vec!["--solve", "credit_pct=0..100", "--band", "1e-12"], "--band 1e-12 is narrower than a billionth"),
    ] {
        let all = [&["plan", s.as_str(), "--target", TARGET, "--report", report.as_str()][..], &args[..]].concat();
        let (code, out, err) = sim("2", &all);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err:?} should contain {want:?}");
        assert!(!err.contains("scout"), "{args:?}: no work before the error: {err}");
        assert!(!Path::new(&report).exists(), "{args:?} wrote a report");
    }
    for (target, want) in [
        ("p_dry(day=8) <= 0.05", "day 8 is not in 1..=7"),
        ("p_dry(day=7,day=3) <= 0.3", "day is given twice"),
        ("free_p10(tier=new,tier=elite) >= 0.2", "tier is given twice"),
        ("pool_p5(day=7) >= -100", "always met"),
        ("peak_locked_p95 <= -5", "never met"),
    ] {
        let (code, _, err) = sim("2", &["plan", &s, "--target", target, "--solve", "credit_pct=0..100"]);
        assert_eq!(code, 2, "{target}: {err}");
        assert!(err.contains(want), "{target}: {err:?} should contain {want:?}");
    }
}

/// A verdict resting on values the test left undecided at the seed cap claims no confidence, in
/// the text and in the JSON, and the default resolution of a narrow range is a step the key
/// takes.
#[test]
fn undecided_verdicts_say_so_and_narrow_ranges_solve() {
    let dir = scratch("plan-solve-undecided");
    let s = scenario(&dir);
    // Near the boundary, where the chance of the event is inside the band at both ends: the
    // smallest cap that could decide a "meets" (140 seeds without the event) decides neither.
    let args = ["plan", &s, "--target", TARGET, "--solve", "credit_pct=14..16", "--resolution", "1"];
    let (code, text, err) = sim("2", &[&args[..], &["--max-seeds", "140"]].concat());
    assert_eq!(code, 0, "{err}");
    let verdict = text.lines().next().unwrap();
    assert!(verdict.contains("after the 140-seed cap: raise --max-seeds"), "{verdict}");
    assert!(verdict.contains("no credit_pct in 14..16 is shown to meet it: undecided at 14 and 16"), "{verdict}");
    assert!(!verdict.contains("confidence"), "{verdict}");
    let (_, out, _) = sim("2", &[&args[..], &["--max-seeds", "140", "--json"]].concat());
    let v = json(&out);
    let result = &v["results"][0];
    assert!(!result["undecided_at"].as_array().unwrap().is_empty(), "{result}");
    assert_eq!(result["line"].as_str().unwrap(), verdict);

    let (code, out, err) = sim(
        "2",
        &["plan", &s, "--target", "p_dry(day=7) <= 0.3", "--solve", "credit_pct=10..13", "--max-seeds", "20", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["resolution"], 0.02);
}
