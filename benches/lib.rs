//! Criterion benches of the workspace: `benches/engine.rs` (the reference engine's
//! lifecycles per second) and `benches/sim.rs` (the simulator's scheduler steps per second
//! with invariant checks on). This library is empty; run `cargo bench -p ledger-benches`.
