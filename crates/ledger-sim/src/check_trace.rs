//! `ledger-sim check-trace FILE`: the command line of [`ledger_harness::conformance::check`].

use std::io::Write;
use std::path::PathBuf;

use ledger_harness::conformance::check::{check_bytes, write_text, CheckReport};
use ledger_harness::Invariant;

/// Arguments of `check-trace`.
#[derive(clap::Args, Debug)]
pub struct CheckTraceArgs {
    /// A conformance trace (JSON Lines, format `ledger-conformance` version 1).
    pub file: PathBuf,
    /// Print one JSON object instead of text.
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
    let bytes = crate::input::read_bytes(&args.file)?;
    let report = check_bytes(&path, &bytes, args.context).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    if let Some(junit) = &args.junit {
        crate::junit::write(junit, &junit_xml(&report))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    Ok(report.ok())
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
    }];
    for inv in Invariant::ALL.into_iter().filter(|i| *i != Invariant::I7) {
        let broken: Vec<_> = report.violations.iter().filter(|v| v.invariant == inv.id()).collect();
        cases.push(crate::junit::Case {
            name: format!("{} {}", inv.id(), inv.name()),
            failure: broken.first().map(|v| {
                let message =
                    format!("line {} ({}): {} ({} time(s) in the trace)", v.line, v.case, v.detail, broken.len());
                let body = broken.iter().map(|v| format!("line {} ({}): {}\n", v.line, v.case, v.detail)).collect();
                (message, inv.id().to_owned(), body)
            }),
        });
    }
    let props =
        [("file", report.file.clone()), ("segments", report.segments.to_string()), ("steps", report.steps.to_string())];
    crate::junit::render_cases("check-trace", &props, &cases)
}
