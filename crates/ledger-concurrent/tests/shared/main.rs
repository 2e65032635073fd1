//! The tests of [`ledger_concurrent::SharedLedger`] without loom, one module each, in one test
//! binary (the loom models are the `loom_*` binaries beside it, built with `--cfg ledger_loom`).
//!
//! One module: `cargo test -p ledger-concurrent --release --test shared shared_mutants -- --nocapture`.

mod conformance;
mod shared_ledger;
mod shared_mutants;
mod shared_support;
