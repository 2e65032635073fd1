//! `ledger-concurrent`: the generosity-pool ledger shared by many threads of one process, and the
//! loom models of its locking protocols.
//!
//! What it is: [`SharedLedger`], an in-process, thread-safe engine with the reference semantics
//! of `ledger-core`, for services that embed the ledger without a database. Commands about
//! different identities run in parallel (sharded identity locks, an atomic pool debited by
//! compare-and-swap). Its locks and atomics come from one `sync` shim, `std` normally and loom
//! under `--cfg ledger_loom`, so the loom tests (`tests/loom_*.rs`) check this very code. Beside
//! them are loom models of the database locking protocols: the seed's, where loom finds its
//! bugs, and the reference one, where it finds none.
//!
//! With the `mutants` feature (turned on only by this crate's own tests) it also has named
//! mutants, `SharedLedger::with_mutant`: realistic one-line concurrency bugs that the concurrent
//! runs of `tests/shared/shared_mutants.rs` must catch, and schedule noise for those runs
//! (`set_schedule_noise`). A build without the feature has neither.
//!
//! What it is not: a database adapter (that is `ledger-pg`), a source of time (callers pass
//! `now`), or a second specification: the semantics are `ledger-core`'s, and this crate only
//! decides who may touch which part of the state at once.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ledger_concurrent::SharedLedger;
//! use ledger_core::{Command, Config, Pubkey, RequestId, Sats, Tier, TimeMs};
//!
//! let ledger = Arc::new(SharedLedger::new(Config::default()));
//! let threads: Vec<_> = (0..4u8)
//!     .map(|t| {
//!         let ledger = Arc::clone(&ledger);
//!         std::thread::spawn(move || {
//!             let user = Pubkey::from_bytes([t; 32]);
//!             let mut journal = Vec::new();
//!             ledger.apply(&Command::SetTier { pubkey: user, tier: Tier::Trusted }, TimeMs(0), &mut journal).unwrap();
//!             let decide = Command::Decide {
//!                 request_id: RequestId(u64::from(t)),
//!                 pubkey: user,
//!                 estimated_sats: Sats::new(10).unwrap(),
//!             };
//!             ledger.apply(&decide, TimeMs(1), &mut journal).unwrap();
//!         })
//!     })
//!     .collect();
//! for t in threads {
//!     t.join().unwrap();
//! }
//! // Four free requests of 10 sats each are reserved out of the pool.
//! assert_eq!(ledger.totals().reserved_sats, Sats::new(40).unwrap());
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(feature = "mutants")]
mod mutants;
mod pool;
mod shared;
mod sync;

#[cfg(feature = "mutants")]
pub use mutants::SharedMutant;
pub use shared::{SharedLedger, DEFAULT_N_SHARDS};

/// Turns schedule noise on for the calling thread (test builds only, `mutants` feature): at one
/// lock or atomic step of the ledger in `one_in` (0: never), the thread yields or spins a little,
/// so that the windows between two steps are hit by other threads whatever the machine's load.
/// Noise changes only timing: a correct ledger answers the same.
#[cfg(all(feature = "mutants", not(ledger_loom)))]
pub fn set_schedule_noise(one_in: u64, seed: u64) {
    sync::noise::set(one_in, seed);
}
