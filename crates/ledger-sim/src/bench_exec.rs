//! `ledger-sim bench-exec --exec COMMAND`: calls per second over the engine protocol
//! ([`ledger_exec::bench`]), with the in-process reference as the baseline of the same run.
//! A `reference` implementation's replies are compared with the reference's: the first that
//! differs ends the benchmark, is printed, and the exit code is 1 (a wrong implementation's
//! speed is no figure).

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
        let checked = if report.answers_checked {
            "every reply compared with the reference's"
        } else {
            "replies not compared: a seed implementation answers another API"
        };
        writeln!(
            out,
            "bench-exec {} ({:?}), {} calls a measurement, {checked}",
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
    if let Some(w) = &report.wrong_answer {
        // On stderr too with --json, so that a script that keeps only stdout still sees why.
        let text = format!(
            "bench-exec: {} answered call {} of the workload ({}) differently from the reference:\n  \
             sent     {}\n  expected {}\n  got      {}\n\
             The benchmark stops here: the speed of an implementation that answers wrongly is no figure. \
             `ledger-sim conform --exec {}` names the rule it breaks.",
            report.implementation,
            w.call_index,
            w.mode,
            w.call,
            w.expected,
            w.got,
            ledger_simulator::report::shell_quote(&report.command)
        );
        if args.json {
            ledger_exec::say!("{text}");
        } else {
            writeln!(out, "{text}")?;
        }
        return Ok(false);
    }
    Ok(true)
}
