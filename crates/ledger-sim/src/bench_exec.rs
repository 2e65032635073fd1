//! `ledger-sim bench-exec --exec COMMAND`: calls per second over the engine protocol
//! ([`ledger_exec::bench`]), with the in-process reference as the baseline of the same run.

use std::io::Write;

/// Arguments of `bench-exec`.
#[derive(clap::Args, Debug)]
pub struct BenchExecArgs {
    /// The implementation.
    #[command(flatten)]
    pub child: crate::child_args::ChildArgs,
    /// Calls in each measurement (1,000 to 100,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub calls: usize,
    /// Calls in flight at once in the concurrent measurement (1 to 4,096).
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The `bench-exec` subcommand.
pub fn bench_exec_cmd(args: &BenchExecArgs) -> anyhow::Result<bool> {
    if !(1_000..=100_000_000).contains(&args.calls) {
        anyhow::bail!("--calls {}: must be 1000 to 100000000", args.calls);
    }
    if !(1..=4096).contains(&args.in_flight) {
        anyhow::bail!("--in-flight {}: must be 1 to 4096", args.in_flight);
    }
    let exec = args.child.exec()?;
    let config = ledger_core::Config::default();
    let (mut child, db) = ledger_pg_runs::start_exec(&exec, &config)?;
    let calls = ledger_exec::bench::workload(args.calls);
    let report = ledger_exec::bench::bench(&mut child, config, &calls, args.in_flight)?;
    drop(child);
    drop(db);
    let mut out = std::io::stdout().lock();
    if args.json {
        crate::child_args::write_json(&mut out, &report)?;
    } else {
        writeln!(
            out,
            "bench-exec {} ({:?}), {} calls a measurement",
            report.command, report.implementation, args.calls
        )?;
        for f in &report.figures {
            writeln!(
                out,
                "  {:<44} {:>12.0} calls/s   {:>7.1}x the in-process time",
                f.mode, f.calls_per_sec, f.slower_than_in_process
            )?;
        }
    }
    Ok(true)
}
