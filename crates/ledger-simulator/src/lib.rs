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
//! - [`caller`]: one job or session caller, a sans-IO state machine every driver runs;
//! - [`exec`]: a history played against an engine; [`shrink`]: counterexamples made small;
//! - [`history`]: the JSON Lines trace format; [`report`]: what a run reports;
//! - [`coverage`]: the rare states a run reached, as [`coverage::Mark`]s; [`steer`]: the marks
//!   of earlier seeds choosing the swarm mix of later ones (`run --steer`).
//!
//! ```
//! use ledger_harness::{ReferenceEngine, SeedEngine};
//! use ledger_simulator::gen::{run_seed, SchedulerKind};
//! use ledger_simulator::scenario::Scenario;
//!
//! // One seed of a small scenario: the reference holds, and the same seed replays bit for bit.
//! let s = Scenario::small();
//! let (run, history) = run_seed(ReferenceEngine::new, "reference", &s, 7, SchedulerKind::Random);
//! assert!(run.violations.is_empty());
//! let again = ledger_simulator::gen::replay(ReferenceEngine::new, &history, false);
//! assert_eq!(again.trace_hash, run.trace_hash);
//!
//! // The model of the original service breaks the invariants under the same kind of traffic.
//! let broken = (0..50).any(|seed| !run_seed(SeedEngine::new, "seed", &s, seed, SchedulerKind::Random).0.violations.is_empty());
//! assert!(broken);
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod caller;
pub mod coverage;
pub mod exec;
pub mod fault;
pub mod files;
pub mod gen;
pub mod history;
pub mod report;
pub mod scenario;
pub mod shrink;
pub mod steer;
