//! `ledger-simulator`: the seeded deterministic simulator of the generosity-pool ledger.
//!
//! It interleaves thousands of concurrent callers (job and session flows) against an
//! [`Engine`](ledger_harness::Engine), injects faults, checks the invariants I1-I6 after every
//! step, and turns every violation into a short replayable counterexample. The same seed and
//! arguments give the same trace hash and report, bit for bit: all randomness comes from one
//! `rand_chacha` generator per seed, and time is virtual.
//!
//! It does no database or network I/O (no `sqlx`, no `tokio`: the Postgres runs are
//! `ledger-pg-runs`), is not a load generator for a real service, and reads no wall clock in a
//! simulated result (only the `steps_per_sec` figure of a report is measured).
//!
//! - [`scenario`]: what a run simulates, with the [`fault`]s it injects; [`gen`]: a seed's world and schedule;
//! - [`exec`]: a history played against an engine; [`shrink`]: counterexamples made small;
//! - [`history`]: the JSON Lines trace format; [`report`]: what a run reports;
//! - [`coverage`]: the rare states a run reached, as [`coverage::Mark`]s.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod coverage;
pub mod exec;
pub mod fault;
pub mod gen;
pub mod history;
pub mod report;
pub mod scenario;
pub mod shrink;
