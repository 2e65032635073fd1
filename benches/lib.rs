//! Criterion benches of the workspace: `benches/engine.rs` (the reference engine's
//! lifecycles per second), `benches/sim.rs` (the simulator's scheduler steps per second
//! with invariant checks on), `benches/plan.rs` (the planner) and `benches/linear.rs` (the
//! linearizability checker on long concurrent histories). Run `cargo bench -p ledger-benches`.
//!
//! The library holds what a bench and a test both need: [`histories`].

pub mod histories;
