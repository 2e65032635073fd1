//! `ledger-sim`: the command line of the generosity-pool ledger's simulator, planner and
//! conformance checker. A thin layer: parsing, printing and exit codes; the work is done by
//! `ledger-simulator`, `ledger-pg-runs`, `ledger-plan` and `ledger-harness`.
//!
//! Exit codes: 0 when no invariant broke, 1 on a violation, 2 on bad input.

mod bench_exec;
mod check_trace;
mod child_args;
mod cli;
mod conform;
mod input;
mod interrupt;
mod junit;
mod memory;
mod merge_runs;
mod plan_cmd;
mod soak;

fn main() -> std::process::ExitCode {
    cli::main()
}
