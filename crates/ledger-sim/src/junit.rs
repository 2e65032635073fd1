//! `--junit FILE`: the verdict of `run` or `replay` as JUnit XML, for CI systems that show
//! test reports (GitHub Actions, GitLab, Jenkins). One test suite; one test case per invariant
//! checked over the seeds run; a broken invariant is a failure carrying its detail, the
//! shortest trace's steps, the trace file and the command that replays it. Written whole, then
//! renamed into place.

use std::fmt::Write as _;
use std::path::Path;

use ledger_harness::Invariant;
use ledger_simulator::coverage::Coverage;
use ledger_simulator::report::ViolationReport;

/// How the line of a failure's body that gives its replay command begins. The command runs
/// from the directory the command that wrote the file was started in: its paths (the trace,
/// `--vectors`, those in `--exec`) are relative to it, so that the file holds the same bytes
/// wherever that is (the text report gives one that works pasted anywhere).
pub const REPLAY_LABEL: &str = "replay (from the directory the run started in):";

/// The text of XML character data or an attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot hold at all (its `Char`: tab, newline, carriage
            // return, U+0020..U+D7FF, U+E000..U+FFFD, U+10000.. ; a Rust char is no surrogate).
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            '\u{FFFE}' | '\u{FFFF}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// One test case: its name, and its failure (message, type, body) if it failed.
pub struct Case {
    /// The case's name.
    pub name: String,
    /// `(message, type, body)` of its failure.
    pub failure: Option<(String, String, String)>,
    /// Why it was not checked at all (a run of no seed), if it was not.
    pub skipped: Option<String>,
    /// What a reader of a passed or failed case should know besides (`system-out`).
    pub output: Option<String>,
}

/// The JUnit XML of one suite `name`, with `properties` and `cases`.
pub fn render_cases(name: &str, properties: &[(&str, String)], cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let skipped = cases.iter().filter(|c| c.skipped.is_some()).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites><testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
        escape(name),
        cases.len()
    );
    x.push_str("  <properties>");
    for (k, v) in properties {
        let _ = write!(x, "<property name=\"{}\" value=\"{}\"/>", escape(k), escape(v));
    }
    x.push_str("</properties>\n");
    for case in cases {
        let _ = write!(x, "  <testcase classname=\"{}\" name=\"{}\"", escape(name), escape(&case.name));
        let output = case.output.as_deref().map(|o| format!("    <system-out>{}</system-out>\n", escape(o)));
        match &case.failure {
            None if case.skipped.is_some() => {
                let why = case.skipped.as_deref().unwrap_or_default();
                let _ = write!(x, ">\n    <skipped message=\"{}\"/>\n  </testcase>\n", escape(why));
            }
            None => match output {
                None => x.push_str("/>\n"),
                Some(output) => {
                    let _ = write!(x, ">\n{output}  </testcase>\n");
                }
            },
            Some((message, kind, body)) => {
                let _ = write!(
                    x,
                    ">\n    <failure message=\"{}\" type=\"{}\">{}</failure>\n{}  </testcase>\n",
                    escape(message),
                    escape(kind),
                    escape(body),
                    output.unwrap_or_default()
                );
            }
        }
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}

/// The JUnit XML of a run: suite `name`, one case per invariant of `checked`, then one failed
/// case per other kind of finding the run reported (a `divergence` from the reference, a
/// concurrent run's `engine_error` or `deadlock`, an exec implementation's `crash` or
/// `no_answer`): a finding the suite leaves out would pass a CI whose run failed. A run of no
/// seed (`A..A`: a signal stopped it before its first) checked nothing: every case is
/// skipped, not passed, so that a CI's test report does not show it green.
pub fn render(name: &str, seeds: &str, checked: &[Invariant], violations: &[ViolationReport]) -> String {
    render_judged(name, seeds, checked, violations, &Coverage::default())
}

/// [`render`], with what the run's `coverage` says was not judged: I8 in the seeds whose
/// history the linearizability search could neither order nor rule out
/// (`linearizability_undecided`). Not judged in any seed, the case is skipped, not passed; in
/// some, it passes on the others and its `system-out` says how many were not judged.
pub fn render_judged(
    name: &str,
    seeds: &str,
    checked: &[Invariant],
    violations: &[ViolationReport],
    coverage: &Coverage,
) -> String {
    let empty = seeds.split_once("..").is_some_and(|(a, b)| a == b);
    let skipped = empty.then(|| format!("no seed ran (seeds {seeds})"));
    let n_seeds = seeds.split_once("..").and_then(|(a, b)| b.parse::<u64>().ok()?.checked_sub(a.parse().ok()?));
    let undecided = coverage.0.get("linearizability_undecided").copied().unwrap_or(0);
    let unjudged = |inv: &Invariant| (*inv == Invariant::I8 && undecided > 0).then_some(undecided);
    let failure = |v: &ViolationReport| {
        let message = format!("seed {} ({} seed(s) broke it): {}", v.seed, v.n_seeds(), v.detail);
        let how = v.how_reduced().unwrap_or_else(|| "not shrunk (real concurrency)".to_owned());
        let mut body = format!("{}\n\n{how}:\n", v.detail);
        for s in &v.steps {
            body.push_str(s);
            body.push('\n');
        }
        let _ = write!(body, "\ntrace:  {}\n{REPLAY_LABEL} {}\n", v.trace, v.replay);
        (message, v.invariant.clone(), body)
    };
    let mut cases: Vec<Case> = checked
        .iter()
        .map(|inv| Case {
            skipped: skipped.clone().or_else(|| {
                let n = unjudged(inv)?;
                (Some(n) >= n_seeds && !violations.iter().any(|v| v.invariant == inv.id())).then(|| {
                    format!(
                        "not judged in any of the {n} seed(s): no serial order found within the search's budget, and \
                         none ruled out"
                    )
                })
            }),
            output: unjudged(inv).map(|n| {
                format!(
                    "not judged in {n} of {} seed(s): no serial order found within the search's budget, and none \
                     ruled out",
                    n_seeds.map_or_else(|| "the".to_owned(), |s| s.to_string())
                )
            }),
            name: format!("{} {}", inv.id(), inv.name()),
            failure: violations.iter().find(|v| v.invariant == inv.id()).map(failure),
        })
        .collect();
    let mut others: Vec<&str> = Vec::new();
    for v in violations {
        if checked.iter().any(|inv| inv.id() == v.invariant) || others.contains(&v.invariant.as_str()) {
            continue;
        }
        others.push(&v.invariant);
        cases.push(Case {
            name: format!("{} {}", v.invariant, v.name),
            failure: Some(failure(v)),
            skipped: None,
            output: None,
        });
    }
    render_cases(name, &[("seeds", seeds.to_owned())], &cases)
}

/// The suite's name: what ran, so that a CI's dashboard keeps lockstep runs, concurrent runs
/// and merged fleets apart, and the same for every run of the same command: `ledger-sim run:
/// exec-reference (concurrency 8), concurrent, seeds 0..20`, `ledger-sim merge-runs:
/// reference, lockstep, seeds 0..1000 from 4 shard(s)`. `what` is the subcommand, `deterministic`
/// the report's (false only for a concurrent run), `shards` what was merged or which shard ran.
pub fn suite_name(what: &str, engine: &str, deterministic: bool, seeds: &str, shards: Option<&str>) -> String {
    let mode = if deterministic { "lockstep" } else { "concurrent" };
    let shards = shards.map(|s| format!(" {s}")).unwrap_or_default();
    format!("ledger-sim {what}: {engine}, {mode}, seeds {seeds}{shards}")
}

/// Writes `xml` to `path` whole or not at all.
pub fn write(path: &Path, xml: &str) -> anyhow::Result<()> {
    crate::input::write_whole("--junit", path, xml.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_simulator::report::Reduction;

    #[test]
    fn a_failure_carries_its_counterexample_escaped() {
        let v = ViolationReport {
            invariant: "I3".into(),
            name: "charge reduction equals debit".into(),
            seed: 7,
            seeds: vec![7, 9],
            seeds_unlisted: 0,
            detail: "reduced by 5 < debit 10 & more".into(),
            shrunk_flows: 1,
            shrunk_events: 4,
            reduction: Reduction::Shrunk,
            steps: vec!["[0] decide -> <free>".into()],
            trace: "t.jsonl".into(),
            replay: "ledger-sim replay t.jsonl".into(),
        };
        let xml = render("reference", "0..10", &[Invariant::I1, Invariant::I3], &[v]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"I1 pool never negative\"/>"), "{xml}");
        assert!(xml.contains("debit 10 &amp; more"), "{xml}");
        assert!(xml.contains("decide -&gt; &lt;free&gt;"), "{xml}");
        assert!(xml.contains("replay (from the directory the run started in): ledger-sim replay t.jsonl"), "{xml}");
        assert!(!xml.contains("& more"), "{xml}");
        assert!(xml.contains("shrunk to 1 flow(s), 4 event(s):"), "{xml}");
    }

    /// What XML 1.0 cannot hold (control characters, U+FFFE, U+FFFF) never reaches the file,
    /// which a reader would refuse as not well-formed; what it can (U+FFFD, astral) is kept.
    #[test]
    fn characters_xml_cannot_hold_are_replaced() {
        assert_eq!(escape("a\u{0}b\u{1b}c\u{FFFE}d\u{FFFF}e\u{FFFD}\u{1F600}\t"), "a?b?c?d?e\u{FFFD}\u{1F600}\t");
    }

    /// A run of no seed (stopped before its first) passes nothing: every case is skipped.
    #[test]
    fn a_run_of_no_seed_is_skipped_not_passed() {
        let xml = render("reference", "5..5", &[Invariant::I1, Invariant::I3], &[]);
        assert!(xml.contains("tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"2\""), "{xml}");
        assert!(xml.contains("<skipped message=\"no seed ran (seeds 5..5)\"/>"), "{xml}");
        let ran = render("reference", "5..6", &[Invariant::I1], &[]);
        assert!(ran.contains("skipped=\"0\"") && !ran.contains("<skipped"), "{ran}");
    }

    /// I8 not judged in some seeds passes on the others and says how many it was not judged
    /// in; not judged in any, it is skipped, not passed.
    #[test]
    fn i8_not_judged_is_not_shown_as_passed() {
        let mut coverage = Coverage::default();
        coverage.0.insert("linearizability_undecided", 3);
        let xml =
            render_judged("exec-reference (concurrency 16)", "0..20", &[Invariant::I1, Invariant::I8], &[], &coverage);
        assert!(xml.contains("skipped=\"0\""), "{xml}");
        assert!(xml.contains("name=\"I1 pool never negative\"/>"), "{xml}");
        assert!(xml.contains("<system-out>not judged in 3 of 20 seed(s): no serial order found"), "{xml}");
        let xml =
            render_judged("exec-reference (concurrency 16)", "0..3", &[Invariant::I1, Invariant::I8], &[], &coverage);
        assert!(xml.contains("skipped=\"1\""), "{xml}");
        assert!(xml.contains("<skipped message=\"not judged in any of the 3 seed(s)"), "{xml}");
        assert!(!render("r", "0..3", &[Invariant::I8], &[]).contains("judged"));
    }

    /// A finding that is no invariant (a divergence, an implementation's crash, a concurrent
    /// run's engine_error) is a failed case of its own: the suite never passes a failed run.
    #[test]
    fn a_finding_that_is_no_invariant_is_a_failed_case() {
        let finding = |id: &str, name: &str| ViolationReport {
            invariant: id.into(),
            name: name.into(),
            seed: 4,
            seeds: vec![4, 6],
            seeds_unlisted: 0,
            detail: "at engine step 2 (event 3): `svc` answered record with an indefinite error".into(),
            shrunk_flows: 1,
            shrunk_events: 1,
            reduction: Reduction::Shrunk,
            steps: vec!["[3] record -> failed: crash".into()],
            trace: "t.jsonl".into(),
            replay: "ledger-sim replay t.jsonl --exec svc".into(),
        };
        let found = [finding("crash", "the implementation failed"), finding("engine_error", "kept failing a call")];
        let xml = render("exec-reference", "0..10", &[Invariant::I1], &found);
        assert!(xml.contains("tests=\"3\" failures=\"2\""), "{xml}");
        assert!(xml.contains("name=\"crash the implementation failed\">"), "{xml}");
        assert!(xml.contains("type=\"engine_error\""), "{xml}");
        assert!(
            xml.contains("replay (from the directory the run started in): ledger-sim replay t.jsonl --exec svc"),
            "{xml}"
        );
    }

    /// Lockstep, concurrent and merged runs are suites of their own names.
    #[test]
    fn suite_names_say_what_ran() {
        let lockstep = suite_name("run", "exec-reference", true, "0..20", None);
        let concurrent = suite_name("run", "exec-reference (concurrency 8)", false, "0..20", None);
        let merged = suite_name("merge-runs", "exec-reference", true, "0..20", Some("from 4 shard(s)"));
        assert_eq!(lockstep, "ledger-sim run: exec-reference, lockstep, seeds 0..20");
        assert_eq!(concurrent, "ledger-sim run: exec-reference (concurrency 8), concurrent, seeds 0..20");
        assert_eq!(merged, "ledger-sim merge-runs: exec-reference, lockstep, seeds 0..20 from 4 shard(s)");
    }

    /// A counterexample only cut at its first violation is not called shrunk.
    #[test]
    fn a_counterexample_only_cut_says_so() {
        let v = ViolationReport {
            invariant: "I4".into(),
            name: "daily budget".into(),
            seed: 3,
            seeds: vec![3],
            seeds_unlisted: 0,
            detail: "over budget [not shrunk: cut after event 40, its first violation]".into(),
            shrunk_flows: 12,
            shrunk_events: 41,
            reduction: Reduction::Cut,
            steps: Vec::new(),
            trace: "t.jsonl".into(),
            replay: "ledger-sim replay t.jsonl".into(),
        };
        let xml = render("exec-reference", "0..10", &[Invariant::I4], &[v]);
        assert!(xml.contains("cut to 12 flow(s), 41 event(s) after its first violation, not shrunk:"), "{xml}");
        assert!(!xml.contains("shrunk to"), "{xml}");
    }
}
