//! `ledger-sim`: the seeded deterministic simulator of the generosity-pool ledger.
//!
//! It interleaves thousands of concurrent callers (job and session flows of DESIGN §1)
//! against an [`Engine`](ledger_core::Engine), injects the faults of DESIGN §5, checks the
//! invariants I1-I6 after every step, and turns every violation into a short replayable
//! counterexample. The same seed and arguments give the same trace hash and report, bit for
//! bit: all randomness comes from one `rand_chacha` generator per seed, and time is virtual.
//!
//! It is not a load generator for a real service and reads no wall clock in a simulated
//! result (only the `steps_per_sec` figure of a report is measured).
#![warn(missing_docs, unreachable_pub)]

pub mod check_trace;
pub mod cli;
pub mod exec;
pub mod gen;
pub mod history;
pub mod pg;
pub mod plan;
pub mod scenario;
pub mod shrink;
