//! The `ledger-sim` binary; see [`ledger_sim::cli`].

fn main() -> std::process::ExitCode {
    ledger_sim::cli::main()
}
