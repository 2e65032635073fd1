//! The tests of the PostgreSQL engines and their SQL, one module each, in one test binary: one
//! build and link for all of them, and one throwaway cluster shared by the tests that can share
//! it (`TestPg::new`; a test that kills or restarts its server starts a private one). Each needs
//! PostgreSQL and fails (never skips) when a throwaway cluster cannot start.
//!
//! One module: `cargo test --release -p ledger-pg --test postgres stripes::`.

mod audit;
mod batcher;
mod conformance;
mod deadlock_free;
mod engines;
mod hostile_server;
mod private_cluster;
mod reference_sql;
mod schema;
mod seed_sql;
mod stripes;
mod testpg;
