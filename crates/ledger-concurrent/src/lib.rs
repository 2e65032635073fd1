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

mod pool;
mod shared;
mod sync;

pub use shared::{SharedLedger, DEFAULT_N_SHARDS};
