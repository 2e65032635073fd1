//! `ledger-core`: the generosity-pool ledger, as a service embeds it.
//!
//! The domain types, the configuration, the commands and their outcomes, and the reference
//! [`Ledger`]: the rules as a pure, deterministic state machine,
//! `state + command + now -> state' + outcome + movements`. It is the executable
//! specification and the oracle every other implementation is held to.
//!
//! It is sans-IO in the manner of `quinn-proto`: it does no I/O, reads no clock, draws no
//! random numbers and starts no threads. Time comes in as a `now` argument; the caller owns
//! the clock, the database and the threads.
//!
//! It is not the test harness: the engine interface the simulator drives, the model of the
//! original TypeScript service, the invariant checker and the conformance format are
//! `ledger-harness`. There is no persistence, no network and no concurrency here; the
//! Postgres adapter (`ledger-pg`) and the concurrent engine (`ledger-concurrent`) build on it.
//!
//! - [`sats`], [`ids`], [`config`]: domain types that make wrong states hard to write.
//! - [`command`]: what a caller asks and what the ledger answers.
//! - [`rules`]: the rules as pure functions (the daily window, a decide's answer, a settlement).
//! - [`reference`]: the reference engine, [`Ledger`]; [`journal`]: the [`Movement`]s it makes;
//!   [`snapshot`]: its whole state as data, to persist and restore; [`variant`]: the seam
//!   through which a test harness runs deliberately wrong variants of it.
//! - [`spec`]: the rules of `SPEC.md` (the normative specification, at the repository root)
//!   by their ids.
//!
//! ```
//! use ledger_core::{Command, Config, Decision, Ledger, Outcome, Pubkey, RequestId, Sats, Tier, TimeMs};
//!
//! let mut ledger = Ledger::new(Config::default());
//! let alice = Pubkey::from_bytes([7; 32]);
//! let mut journal = Vec::new();
//! ledger.apply(&Command::SetTier { pubkey: alice, tier: Tier::Trusted }, TimeMs(0), &mut journal).unwrap();
//! let decide = Command::Decide { request_id: RequestId(1), pubkey: alice, estimated_sats: Sats::new(20).unwrap() };
//! let outcome = ledger.apply(&decide, TimeMs(1_000), &mut journal).unwrap();
//! assert!(matches!(outcome, Outcome::Decided { decision: Decision::Free { .. } }));
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod balances;
pub mod command;
pub mod config;
pub mod idmap;
pub mod ids;
pub mod journal;
pub mod keyindex;
pub mod reference;
pub mod rules;
pub mod sats;
pub mod snapshot;
pub mod spec;
pub mod variant;

pub use balances::{Identity, Totals};
pub use command::{Command, Decision, GateReason, Outcome, Refusal};
pub use config::{Budgets, Config, ConfigError, ConfigJson};
pub use idmap::IdMap;
pub use ids::{PaymentId, Pubkey, PubkeyError, RequestId, Tier, TimeMs, DAY_MS};
pub use journal::{implied_movements, Movement};
pub use keyindex::KeyIndex;
pub use reference::{Ledger, Undo};
pub use sats::{AmountError, Bps, Sats};
pub use snapshot::{RestoreError, Snapshot};
pub use spec::Rule;
