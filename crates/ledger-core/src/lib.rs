//! `ledger-core`: the generosity-pool ledger's types, reference engine, seed model,
//! invariant checker and trace format.
//!
//! This crate is the executable specification (DESIGN §3) and the oracle for everything
//! else. It is sans-IO in the manner of `quinn-proto`: it does no I/O, reads no clock, draws
//! no random numbers and starts no threads. Time comes in as a `now` argument; the caller
//! owns the clock, the database and the threads.
//!
//! It is not a service: there is no persistence, no network and no concurrency here. The
//! Postgres adapter (`ledger-pg`), the concurrent engine (`ledger-concurrent`) and the
//! simulator (`ledger-sim`) build on it.
//!
//! - [`sats`], [`ids`], [`config`]: domain types that make wrong states hard to write.
//! - [`reference`]: the reference engine, [`Ledger`].
//! - [`seed`]: the original TypeScript, ported one database round trip per step.
//! - [`engine`]: the [`Engine`] interface the simulator drives.
//! - [`invariants`]: I1-I6 as an incremental [`Checker`].
#![warn(missing_docs, unreachable_pub)]

pub mod command;
pub mod config;
pub mod conformance;
pub mod engine;
pub mod ids;
pub mod invariants;
pub mod mutants;
pub mod reference;
pub mod sats;
pub mod seed;

pub use command::{Command, Decision, GateReason, Outcome, Refusal};
pub use config::{Budgets, Config, ConfigError};
pub use engine::{Call, Engine, Movement, Observed, ReferenceEngine, Reply};
pub use ids::{PaymentId, Pubkey, PubkeyError, RequestId, Tier, TimeMs, DAY_MS};
pub use invariants::{Checker, Invariant, Violation};
pub use reference::{Identity, Ledger, Totals};
pub use sats::{AmountError, Bps, Sats};
pub use seed::SeedEngine;
