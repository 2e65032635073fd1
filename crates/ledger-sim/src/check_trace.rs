//! `ledger-sim check-trace FILE`: the command line of [`ledger_harness::conformance::check`].
//!
//! Exit 2 when the file cannot be read or is not a valid trace; with `--json` the error is
//! also printed on stdout, as one object, so that a caller parsing stdout always gets one.

use std::io::Write;
use std::path::PathBuf;

use ledger_harness::conformance::check::{check_bytes, write_text, CheckReport};
use ledger_harness::Invariant;

/// Arguments of `check-trace`.
#[derive(clap::Args, Debug)]
pub struct CheckTraceArgs {
    /// A conformance trace (JSON Lines, format `ledger-conformance` version 2, or version 1,
    /// which has no footer: a cut version 1 trace cannot be detected).
    pub file: PathBuf,
    /// Print one JSON object instead of text. On exit 2 (a file that cannot be read, or is
    /// not a valid trace) the object is {"file", "error": {"line", "kind", "message"}}, with
    /// the error also on stderr; "line" is null and "kind" is "unreadable" when the file
    /// itself cannot be read.
    #[arg(long)]
    pub json: bool,
    /// Lines of context shown before and after a divergence.
    #[arg(long, default_value_t = 3)]
    pub context: usize,
    /// Also write the verdict as JUnit XML: a case for agreeing with the reference step by
    /// step, and one per invariant of the trace's own claims.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
}

/// The `check-trace` subcommand: `Ok(true)` when the trace is clean.
pub fn check_trace_cmd(args: &CheckTraceArgs) -> anyhow::Result<bool> {
    let path = args.file.display().to_string();
    if let Some(junit) = &args.junit {
        crate::input::will_read(&args.file);
        crate::input::check_output("--junit", junit)?;
    }
    let report = match read_and_check(args, &path) {
        Ok(report) => report,
        Err(e) => {
            if args.json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &e.to_json(&path))?;
                writeln!(out)?;
            }
            anyhow::bail!("{path}: {}", e.message);
        }
    };
    if let Some(junit) = &args.junit {
        crate::junit::write(junit, &junit_xml(&report))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        // A case's name and description are the trace's: control characters in them are
        // shown as escapes, not obeyed by the terminal.
        let mut text = Vec::new();
        write_text(&mut text, &report)?;
        out.write_all(ledger_harness::text::printable(&String::from_utf8_lossy(&text)).as_bytes())?;
    }
    Ok(report.ok())
}

/// Why a file is no trace to check: exit 2.
struct BadInput {
    /// The trace's line at fault; `None` when the file cannot be read at all.
    line: Option<usize>,
    /// A [`ledger_harness::conformance::ErrorKind`]'s name, or `unreadable`.
    kind: &'static str,
    /// The problem in words, without the file's name.
    message: String,
}

impl BadInput {
    /// The object `--json` prints.
    fn to_json(&self, path: &str) -> serde_json::Value {
        serde_json::json!({ "file": path, "error": { "line": self.line, "kind": self.kind, "message": self.message } })
    }
}

fn read_and_check(args: &CheckTraceArgs, path: &str) -> Result<CheckReport, BadInput> {
    let bytes = crate::input::read_bytes(&args.file).map_err(|e| {
        let words = e.to_string();
        let message = words.strip_prefix(&format!("{path}: ")).map_or(words.clone(), str::to_owned);
        BadInput { line: None, kind: "unreadable", message }
    })?;
    check_bytes(path, &bytes, args.context).map_err(|e| BadInput {
        line: Some(e.line),
        kind: e.kind.name(),
        message: e.to_string(),
    })
}

/// The verdict of `check-trace` as JUnit XML.
fn junit_xml(report: &CheckReport) -> String {
    let mut cases = vec![crate::junit::Case {
        name: "every step as the reference engine answers it".to_owned(),
        failure: report.divergence.as_ref().map(|d| {
            let message = format!("line {} ({}, {}): the trace and the reference disagree", d.line, d.case, d.command);
            let mut body = String::new();
            for f in &d.fields {
                body.push_str(&format!("{}: trace {} / reference {}\n", f.field, f.trace, f.reference));
            }
            for c in &d.context {
                body.push_str(&format!("{:>6} | {}\n", c.line, c.text));
            }
            (message, "divergence".to_owned(), body)
        }),
        skipped: None,
        output: None,
    }];
    // The trace's claims are judged by I1-I6; its answers by the step-by-step comparison above.
    for inv in Invariant::ALL.into_iter().filter(|i| !matches!(i, Invariant::I7 | Invariant::I8)) {
        let broken: Vec<_> = report.violations.iter().filter(|v| v.invariant == inv.id()).collect();
        let n = report.violation_counts.get(inv.id()).copied().unwrap_or_default();
        cases.push(crate::junit::Case {
            name: format!("{} {}", inv.id(), inv.name()),
            failure: broken.first().map(|v| {
                let message = format!("line {} ({}): {} ({n} time(s) in the trace)", v.line, v.case, v.detail);
                let mut body: String =
                    broken.iter().map(|v| format!("line {} ({}): {}\n", v.line, v.case, v.detail)).collect();
                if n > broken.len() {
                    body.push_str(&format!("... and {} more {} violations\n", n - broken.len(), inv.id()));
                }
                (message, inv.id().to_owned(), body)
            }),
            skipped: None,
            output: None,
        });
    }
    let props =
        [("file", report.file.clone()), ("segments", report.segments.to_string()), ("steps", report.steps.to_string())];
    // Named as `run`'s and `conform`'s suites are: the command, then what it read.
    crate::junit::render_cases(&format!("ledger-sim check-trace: {}", report.file), &props, &cases)
}
