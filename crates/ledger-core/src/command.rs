//! Commands, outcomes and refusals of the reference semantics (SPEC.md §3).
//!
//! These are values: the engine answers a [`Command`] with an [`Outcome`] or a [`Refusal`],
//! never by calling out. Business outcomes (a gated request, an empty pool) are variants;
//! a broken internal assumption is an `assert!`.

use serde::{Deserialize, Serialize};

use crate::ids::{PaymentId, Pubkey, RequestId, Tier};
use crate::sats::Sats;

/// Something that happens to the ledger. Every mutating command carries the id that makes
/// it idempotent: repeating it returns the first outcome and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Create an identity with `tier`, or move an existing one to `tier` (trust grew or decayed).
    SetTier {
        /// Whose tier.
        pubkey: Pubkey,
        /// The new tier.
        tier: Tier,
    },
    /// Answer free, partial or gate for a request of `estimated_sats`; a free answer debits
    /// the pool and reserves the estimate in the same step.
    Decide {
        /// The request.
        request_id: RequestId,
        /// The user.
        pubkey: Pubkey,
        /// Estimated cost.
        estimated_sats: Sats,
    },
    /// Reserve exactly `amount_sats` for a partial request, or nothing.
    ReservePartial {
        /// The request, decided before.
        request_id: RequestId,
        /// The user, as in the decision.
        pubkey: Pubkey,
        /// The pool's share to reserve.
        amount_sats: Sats,
    },
    /// Return an outstanding reservation to the pool (the work failed or was not run).
    Release {
        /// The request.
        request_id: RequestId,
    },
    /// Commit a reservation against the work's actual cost.
    Record {
        /// The request.
        request_id: RequestId,
        /// What the work really cost the pool's share (an overrun above the reservation is
        /// reported, never absorbed).
        actual_sats: Sats,
    },
    /// Credit the pool with its share of a paid invoice.
    Credit {
        /// The payment; a second delivery of the same payment credits nothing.
        payment_id: PaymentId,
        /// What the user paid.
        paid_sats: Sats,
    },
    /// Release every reservation whose deadline has passed (its worker crashed).
    Expire,
}

impl Command {
    /// The command's name as used in traces.
    pub const fn name(&self) -> &'static str {
        match self {
            Command::SetTier { .. } => "set_tier",
            Command::Decide { .. } => "decide",
            Command::ReservePartial { .. } => "reserve_partial",
            Command::Release { .. } => "release",
            Command::Record { .. } => "record",
            Command::Credit { .. } => "credit",
            Command::Expire => "expire",
        }
    }
}

/// Why a request is gated (the user pays all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateReason {
    /// No identity is known for the pubkey.
    UnknownIdentity,
    /// The estimate is zero: nothing to subsidise.
    ZeroEstimate,
    /// The tier's budget is zero.
    ZeroBudget,
    /// Absorption plus outstanding reservations have used the day's budget.
    DailyBudgetExhausted,
    /// The pool is empty.
    PoolEmpty,
}

/// The answer to [`Command::Decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "serve", rename_all = "snake_case")]
pub enum Decision {
    /// The pool pays all: `reserved_sats` was debited and reserved; the user is charged 0.
    Free {
        /// What the pool reserved (the reference: always the estimate).
        reserved_sats: Sats,
    },
    /// An advisory offer: the pool could pay `offer_sats`, the user would pay `charge_sats`.
    /// Nothing is debited until [`Command::ReservePartial`].
    Partial {
        /// The pool's share on offer.
        offer_sats: Sats,
        /// The user's share.
        charge_sats: Sats,
    },
    /// The user pays all.
    Gate {
        /// Why.
        reason: GateReason,
        /// The full charge (the estimate).
        charge_sats: Sats,
    },
}

impl Decision {
    /// The estimate the decision was made for: what the pool and the user share.
    pub fn estimated_sats(&self) -> Sats {
        match *self {
            Decision::Free { reserved_sats } => reserved_sats,
            Decision::Partial { offer_sats, charge_sats } => {
                offer_sats.checked_add(charge_sats).expect("offer + charge is the estimate")
            }
            Decision::Gate { charge_sats, .. } => charge_sats,
        }
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The identity now has the tier; `previous` is `None` when it was created.
    TierSet {
        /// The tier before, if the identity existed.
        previous: Option<Tier>,
    },
    /// A decision.
    Decided {
        /// The decision.
        decision: Decision,
    },
    /// `reserved_sats` was debited from the pool and reserved.
    Reserved {
        /// The amount reserved.
        reserved_sats: Sats,
    },
    /// The reservation went back to the pool.
    Released {
        /// The amount returned.
        returned_sats: Sats,
    },
    /// The reservation was committed.
    Recorded {
        /// Absorbed by the pool: `min(actual, reserved)`.
        absorbed_sats: Sats,
        /// Returned to the pool: `reserved - absorbed`.
        returned_sats: Sats,
        /// Cost above the reservation, paid outside the pool.
        overrun_sats: Sats,
    },
    /// The pool was credited (once per payment).
    Credited {
        /// `floor(paid * bp / 10000)`.
        credited_sats: Sats,
    },
    /// Reservations past their deadline went back to the pool.
    Expired {
        /// Each released request and its amount, in deadline order.
        released: Vec<(RequestId, Sats)>,
    },
}

/// A command the ledger refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    /// No identity for the pubkey.
    #[error("unknown identity")]
    UnknownIdentity,
    /// No decision was made for the request id.
    #[error("unknown request")]
    UnknownRequest,
    /// A zero amount where a positive one is needed.
    #[error("amount must be positive")]
    ZeroAmount,
    /// The pool or the daily budget cannot cover the whole amount; re-quote with at most
    /// `available_sats` before reducing any charge.
    #[error("only {available_sats} sats are available")]
    InsufficientFunds {
        /// What could be reserved now.
        available_sats: Sats,
    },
    /// The request id was decided with another pubkey.
    #[error("request exists with a different pubkey")]
    ExistsWithDifferentPubkey,
    /// The request id was decided with another estimate.
    #[error("request exists with a different estimate ({estimated_sats} sats)")]
    ExistsWithDifferentEstimate {
        /// The first estimate.
        estimated_sats: Sats,
    },
    /// The request already has a reservation of another amount (or one made by `decide`).
    #[error("request already has a reservation of {reserved_sats} sats")]
    ReservationExists {
        /// The existing reservation.
        reserved_sats: Sats,
    },
    /// A partial reservation larger than the decided estimate.
    #[error("amount is above the request's estimate of {estimated_sats} sats")]
    AmountAboveEstimate {
        /// The decided estimate.
        estimated_sats: Sats,
    },
    /// The request was recorded with another actual cost.
    #[error("request was recorded with a different actual cost ({actual_sats} sats)")]
    RecordedWithDifferentAmount {
        /// The first actual cost.
        actual_sats: Sats,
    },
    /// The payment was credited with another paid amount.
    #[error("payment was credited with a different amount ({paid_sats} sats)")]
    PaymentWithDifferentAmount {
        /// The first paid amount.
        paid_sats: Sats,
    },
    /// The request has no reservation.
    #[error("request has no reservation")]
    NotReserved,
    /// The reservation was already recorded.
    #[error("reservation already recorded")]
    AlreadyRecorded,
    /// The reservation was already released.
    #[error("reservation already released")]
    AlreadyReleased,
    /// The reservation passed its deadline and was released by `expire`.
    #[error("reservation expired")]
    ReservationExpired,
    /// The command would push an amount past `Sats::MAX`.
    #[error("amount overflow")]
    Overflow,
}
