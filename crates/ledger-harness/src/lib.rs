//! `ledger-harness`: what it takes to test an implementation of the generosity-pool ledger
//! against the reference `ledger_core::Ledger`.
//!
//! - [`engine`]: the [`Engine`] interface the simulator drives (a [`Call`] begins an
//!   operation, the scheduler advances it one atomic step at a time, a [`Reply`] ends it), and
//!   the reference engine behind it, [`ReferenceEngine`].
//! - [`seed`]: the original TypeScript service (`free-tier.ts`), ported one database round
//!   trip per step, flaws included: [`SeedEngine`].
//! - [`invariants`]: I1-I6 as an incremental [`Checker`] that keeps its own books from the
//!   journal of movements and the callers' facts.
//! - [`conformance`]: the conformance trace format other implementations write, and
//!   [`conformance::check`], which replays such a trace against the reference.
//! - [`users`]: simulated users' pubkeys, and their names in reports (`user#11`).
//! - [`linear`]: whether a concurrent history's answers could come from one serial order
//!   consistent with real time on the reference (linearizability).
//! - [`mutants`]: named, deliberately wrong variants of the reference, to measure the harness.
//!
//! It does no I/O beyond what a caller hands it (bytes to parse, or the directory of vector
//! files [`conformance::read_dir`] reads) and reads no clock. It is not
//! what a service embeds: that is `ledger-core`.
//!
//! ```
//! use ledger_core::{Config, Pubkey, RequestId, Sats, Tier, TimeMs};
//! use ledger_harness::{Call, Checker, Engine, Reply, SeedEngine};
//!
//! // Drive the model of the original service and check I1-I6 after every step.
//! let config = Config::default();
//! let mut engine = SeedEngine::new(config.clone());
//! let mut checker = Checker::new(&config);
//! let user = Pubkey::from_bytes([7; 32]);
//! let now = TimeMs(1_000);
//! checker.on_tier(user, Tier::Trusted, now);
//! for call in [
//!     Call::SetTier { pubkey: user, tier: Tier::Trusted },
//!     Call::Decide { request_id: RequestId(1), pubkey: user, estimated_sats: Sats::new(20).unwrap() },
//! ] {
//!     let mut op = engine.begin(&call);
//!     loop {
//!         let mut journal = Vec::new();
//!         let reply = engine.step(&mut op, now, &mut journal);
//!         checker.on_movements(&journal, now);
//!         checker.after_step(&engine.observe());
//!         if let Some(reply) = reply {
//!             assert!(matches!(reply, Reply::Ok(_)), "{reply:?}");
//!             break;
//!         }
//!     }
//! }
//! assert!(checker.violations().is_empty());
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod conformance;
pub mod engine;
pub mod invariants;
pub mod linear;
pub mod mutants;
pub mod oracle;
pub mod seed;
pub mod text;
pub mod users;

pub use engine::{Atomic, Call, Engine, Observed, ReferenceEngine, Reply};
pub use invariants::{Checker, Invariant, Violation};
pub use seed::SeedEngine;
pub use users::{user_of, user_pubkey, Named};
