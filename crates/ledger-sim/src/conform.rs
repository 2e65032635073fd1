//! `ledger-sim conform --exec COMMAND`: the conformance vectors through the engine protocol
//! ([`ledger_exec::conform`]).

use std::io::Write;
use std::path::PathBuf;

/// Arguments of `conform`.
#[derive(clap::Args, Debug)]
pub struct ConformArgs {
    /// The implementation (of the reference API).
    #[command(flatten)]
    pub child: crate::child_args::ChildArgs,
    /// The directory of vectors (`*.jsonl`).
    #[arg(long, default_value = "fixtures/conformance")]
    pub vectors: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The `conform` subcommand: `Ok(true)` when every case passes.
pub fn conform_cmd(args: &ConformArgs) -> anyhow::Result<bool> {
    let exec = args.child.exec()?;
    let files = ledger_harness::conformance::read_dir(&args.vectors).map_err(|e| anyhow::anyhow!("{e}"))?;
    if files.is_empty() {
        anyhow::bail!("{}: no conformance vectors (*.jsonl) here", args.vectors.display());
    }
    let config = files[0].1.first().map(|s| s.header.config).unwrap_or_default();
    let (mut child, _db) = ledger_pg_runs::start_exec(&exec, &config)?;
    let report = ledger_exec::conform::conform(&mut child, &files)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let failures: Vec<serde_json::Value> = report
            .failures
            .iter()
            .map(|f| serde_json::json!({"file": f.file, "case": f.case, "line": f.line, "detail": f.detail}))
            .collect();
        let v = serde_json::json!({
            "implementation": child.hello().name,
            "cases": report.cases,
            "steps": report.steps,
            "failed": report.failures.len(),
            "failures": failures,
        });
        crate::child_args::write_json(&mut out, &v)?;
    } else {
        writeln!(
            out,
            "conform {} ({:?}): {} cases, {} steps, {} failed",
            args.child.command,
            child.hello().name,
            report.cases,
            report.steps,
            report.failures.len()
        )?;
        for f in &report.failures {
            writeln!(out, "FAIL {}:{} {}: {}", f.file, f.line, f.case, f.detail)?;
        }
    }
    // The implementation goes before its database.
    drop(child);
    drop(_db);
    Ok(report.failures.is_empty())
}
