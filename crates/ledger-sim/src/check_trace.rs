//! `ledger-sim check-trace FILE`: the command line of [`ledger_harness::conformance::check`].

use std::io::Write;
use std::path::PathBuf;

use ledger_harness::conformance::check::{check_bytes, write_text};

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
}

/// The `check-trace` subcommand: `Ok(true)` when the trace is clean.
pub fn check_trace_cmd(args: &CheckTraceArgs) -> anyhow::Result<bool> {
    let path = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let report = check_bytes(&path, &bytes, args.context).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    Ok(report.ok())
}
