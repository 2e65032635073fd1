//! The simulator's tests, one module each, in one test binary: the invariants on the seed and
//! reference engines, every named mutant caught, and steering.
//!
//! One module: `cargo test -p ledger-simulator --release --test simulate steer::`.

mod invariants;
mod mutants;
mod steer;
