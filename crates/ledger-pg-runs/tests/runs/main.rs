//! The runs on PostgreSQL, end to end, one module each, in one test binary (one build and link
//! against sqlx for all, and one shared throwaway cluster for the tests that can share it): the
//! engines' runs, their counterexamples and confirmations, the named SQL mutants, and
//! linearizability. Each needs PostgreSQL and fails (never skips) when a cluster cannot start.
//!
//! One module: `cargo test --release -p ledger-pg-runs --test runs pg_mutants::`.

mod linearizability;
mod pg;
mod pg_confirm_url;
mod pg_mutants;
