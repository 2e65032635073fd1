//! The end-to-end tests of the `ledger-sim` binary, one module each, in one test binary (one
//! build and link for all, and their waits on child processes, servers and node overlap): each
//! runs the binary as a user would and checks its output, exit status and files.
//!
//! One module: `cargo test --release -p ledger-sim --test sim typescript::`.

mod common;

mod audit;
mod bench_exec;
mod breaking_count;
mod check_trace;
mod cli;
mod concurrent_faults;
mod concurrent_scale;
mod conform_output;
mod database_url_secrets;
mod determinism;
mod exec;
mod exec_failures;
mod exec_own_bug;
mod exec_shrink_bound;
mod exec_stop;
mod files_hostile;
mod gone_reader;
mod hostile;
mod input_refusals;
mod interrupted_run;
mod killed_run;
mod merge_runs_hostile;
mod merge_runs_interrupted;
mod pg_hostile;
mod plan_fit;
mod plan_fit_export;
mod plan_hostile;
mod plan_solve;
mod python_reference;
mod replay_anywhere;
mod replay_database_url;
mod replay_trace;
mod typescript;
