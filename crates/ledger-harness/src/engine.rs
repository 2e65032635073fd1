//! The one interface the simulator drives: [`Engine`].
//!
//! A caller issues a [`Call`] (the seed's API, a superset of the reference commands), gets
//! back an operation in flight, and the scheduler advances it one atomic step at a time with
//! [`Engine::step`]. The reference engine finishes every call in one step; the seed model
//! takes one step per database round trip of the TypeScript, so other operations can run
//! between them exactly as they could in production.
//!
//! Every step appends the pool movements it made to a journal. The invariant checker sums
//! the journal independently of the engine's own books.

use ledger_core::variant::{Exact, Variant};
use serde::{Deserialize, Serialize};

use ledger_core::{
    Command, Config, Ledger, Movement, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats, Tier, TimeMs, Totals,
};

/// A call from a caller (a job or session flow) to an engine.
///
/// It carries what both APIs need: the reference identifies a reservation by request id,
/// the seed by the amounts its caller remembers (`releaseReservation(absorbSats)`,
/// `recordGrant(pubkey, hash, actual, reserved)`). Each engine reads what its API takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Create or change an identity's tier.
    SetTier {
        /// Whose.
        pubkey: Pubkey,
        /// The new tier.
        tier: Tier,
    },
    /// `decide(pubkey, estimated)`.
    Decide {
        /// The request.
        request_id: RequestId,
        /// The user.
        pubkey: Pubkey,
        /// Estimated cost.
        estimated_sats: Sats,
    },
    /// `reservePartialGrant(amount, pubkey)` / `reserve_partial`.
    ReservePartial {
        /// The request.
        request_id: RequestId,
        /// The user.
        pubkey: Pubkey,
        /// The share to reserve.
        amount_sats: Sats,
    },
    /// `releaseReservation(amount)` / `release(request)`.
    Release {
        /// The request.
        request_id: RequestId,
        /// What the caller believes is reserved.
        amount_sats: Sats,
    },
    /// `recordGrant(pubkey, requestHash, actual, reserved)` / `record(request, actual)`.
    Record {
        /// The request.
        request_id: RequestId,
        /// The user.
        pubkey: Pubkey,
        /// The pool's share of the actual cost.
        actual_sats: Sats,
        /// What the caller believes is reserved.
        reserved_sats: Sats,
    },
    /// `credit(paid)` / `credit(payment, paid)`.
    Credit {
        /// The payment.
        payment_id: PaymentId,
        /// What was paid.
        paid_sats: Sats,
    },
    /// `expire(now)`; the seed has no such thing and does nothing.
    Expire,
}

impl Call {
    /// The reference command this call is.
    pub fn to_command(&self) -> Command {
        match *self {
            Call::SetTier { pubkey, tier } => Command::SetTier { pubkey, tier },
            Call::Decide { request_id, pubkey, estimated_sats } => {
                Command::Decide { request_id, pubkey, estimated_sats }
            }
            Call::ReservePartial { request_id, pubkey, amount_sats } => {
                Command::ReservePartial { request_id, pubkey, amount_sats }
            }
            Call::Release { request_id, .. } => Command::Release { request_id },
            Call::Record { request_id, actual_sats, .. } => Command::Record { request_id, actual_sats },
            Call::Credit { payment_id, paid_sats } => Command::Credit { payment_id, paid_sats },
            Call::Expire => Command::Expire,
        }
    }

    /// The call's name as used in traces.
    pub fn name(&self) -> &'static str {
        self.to_command().name()
    }

    /// The request the call is about, if it is about one.
    pub fn request_id(&self) -> Option<RequestId> {
        match *self {
            Call::Decide { request_id, .. }
            | Call::ReservePartial { request_id, .. }
            | Call::Release { request_id, .. }
            | Call::Record { request_id, .. } => Some(request_id),
            Call::SetTier { .. } | Call::Credit { .. } | Call::Expire => None,
        }
    }
}

/// The answer to a finished call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The call took effect (or was an idempotent repeat).
    Ok(Outcome),
    /// The engine refused the call; nothing changed.
    Refused(Refusal),
    /// The call failed (a database error); the caller may retry.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl From<Result<Outcome, Refusal>> for Reply {
    fn from(result: Result<Outcome, Refusal>) -> Reply {
        match result {
            Ok(outcome) => Reply::Ok(outcome),
            Err(refusal) => Reply::Refused(refusal),
        }
    }
}

/// What can be read of an engine's state after a step, in O(1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The pool balance as stored (signed: a broken engine may drive it below zero).
    pub pool_sats: i128,
    /// Outstanding reservations as the engine books them; `None` when it keeps no such books
    /// (the seed).
    pub reserved_sats: Option<i128>,
    /// Sum of audit grants.
    pub granted_sats: i128,
    /// Number of audit grants.
    pub n_grants: u64,
}

impl Observed {
    /// What the reference [`Ledger`] shows: its totals.
    pub fn of<V: Variant>(ledger: &Ledger<V>) -> Observed {
        Observed::from(ledger.totals())
    }
}

impl From<Totals> for Observed {
    fn from(t: Totals) -> Observed {
        Observed {
            pool_sats: t.pool_sats.to_i128(),
            reserved_sats: Some(t.reserved_sats.to_i128()),
            granted_sats: t.absorbed_sats.to_i128(),
            n_grants: t.n_grants,
        }
    }
}

/// An engine the simulator can drive.
pub trait Engine {
    /// An operation in flight.
    type Op: std::fmt::Debug;

    /// The engine's name, as `--engine` spells it.
    fn name(&self) -> &'static str;

    /// The configuration the engine runs under.
    fn config(&self) -> &Config;

    /// Start `call`; nothing happens until the first [`Engine::step`].
    fn begin(&mut self, call: &Call) -> Self::Op;

    /// Run the next atomic step of `op` at `now`, appending its pool movements to
    /// `journal`. Returns the reply once the call is finished.
    fn step(&mut self, op: &mut Self::Op, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply>;

    /// The engine's observable state.
    fn observe(&self) -> Observed;

    /// Whether the engine speaks the reference API of `SPEC.md`, so that every answer it gives
    /// can be judged against the rules (I8). The seed's API cannot be.
    fn speaks_reference_api(&self) -> bool {
        true
    }

    /// What `pubkey` may still be granted today, as the engine sees it (for coverage marks).
    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        let _ = (pubkey, now);
        None
    }
}

/// The reference engine behind the [`Engine`] interface: every call is one step.
/// `V` is the rules' [`Variant`]: [`Exact`] unless it runs a [`crate::mutants::Mutant`].
#[derive(Clone, Debug)]
pub struct ReferenceEngine<V: Variant = Exact> {
    ledger: Ledger<V>,
}

impl ReferenceEngine {
    /// A reference engine at genesis.
    pub fn new(config: Config) -> ReferenceEngine {
        ReferenceEngine { ledger: Ledger::new(config) }
    }

    /// A reference engine with one deliberate bug (see [`crate::mutants`]).
    #[cfg(feature = "mutants")]
    pub fn with_mutant(config: Config, mutant: crate::mutants::Mutant) -> ReferenceEngine<crate::mutants::Mutant> {
        ReferenceEngine { ledger: Ledger::with_variant(config, mutant) }
    }
}

impl<V: Variant> ReferenceEngine<V> {
    /// The ledger inside.
    pub fn ledger(&self) -> &Ledger<V> {
        &self.ledger
    }
}

impl<V: Variant + 'static> Engine for ReferenceEngine<V> {
    type Op = Command;

    fn name(&self) -> &'static str {
        "reference"
    }

    fn config(&self) -> &Config {
        self.ledger.config()
    }

    fn begin(&mut self, call: &Call) -> Command {
        call.to_command()
    }

    fn step(&mut self, op: &mut Command, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        Some(self.ledger.apply(op, now, journal).into())
    }

    fn observe(&self) -> Observed {
        Observed::of(&self.ledger)
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        let id = self.ledger.identity(pubkey)?;
        Some(id.daily_remaining(self.ledger.config().budget(id.tier), now))
    }
}

/// An engine whose every call is one step: each step of `E` runs the call to its end. The
/// seed model takes one step per database round trip, so that the scheduler can interleave
/// them; an implementation driven one call at a time through the engine protocol cannot be
/// interleaved, and `Atomic<SeedEngine>` is its in-memory twin.
#[derive(Clone, Debug)]
pub struct Atomic<E>(pub E);

impl<E: Engine> Engine for Atomic<E> {
    type Op = E::Op;

    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn config(&self) -> &Config {
        self.0.config()
    }

    fn begin(&mut self, call: &Call) -> E::Op {
        self.0.begin(call)
    }

    fn step(&mut self, op: &mut E::Op, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        loop {
            if let Some(reply) = self.0.step(op, now, journal) {
                return Some(reply);
            }
        }
    }

    fn observe(&self) -> Observed {
        self.0.observe()
    }

    fn speaks_reference_api(&self) -> bool {
        self.0.speaks_reference_api()
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        self.0.daily_remaining(pubkey, now)
    }
}
