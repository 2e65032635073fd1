//! A ledger's whole state as plain data: what [`Ledger::snapshot`](crate::Ledger::snapshot)
//! writes and [`Ledger::restore`](crate::Ledger::restore) reads back, so that a service can
//! persist the reference ledger (serde: JSON, or any format) and resume it, or a test can fork
//! one.
//!
//! A snapshot is ordered (identities in creation order, requests and payments by id), so the
//! same ledger always gives the same snapshot. Restoring checks that its books balance: the
//! balance sheet adds up, every outstanding reservation is booked on its identity, nothing is
//! listed twice.

use serde::{Deserialize, Serialize};

use crate::balances::{Identity, Totals};
use crate::command::Decision;
use crate::config::Config;
use crate::ids::{PaymentId, Pubkey, RequestId, TimeMs};
use crate::sats::Sats;

/// The snapshot format this crate writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A ledger's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The configuration the ledger runs under.
    pub config: Config,
    /// The balance sheet.
    pub totals: Totals,
    /// Every identity, in the order they were created.
    pub identities: Vec<(Pubkey, Identity)>,
    /// Every request ever decided, by id.
    pub requests: Vec<RequestRecord>,
    /// Every payment credited, by id.
    pub payments: Vec<PaymentRecord>,
}

/// One request: what was decided, what is reserved for it, what was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRecord {
    /// Its id.
    pub request_id: RequestId,
    /// Whose it is.
    pub pubkey: Pubkey,
    /// The decision (its total is the estimate).
    pub decision: Decision,
    /// Its reservation, if one was made.
    pub reservation: Option<ReservationRecord>,
    /// `(amount, available)` of each refused `reserve_partial`, in order: a repeat is refused
    /// again with the same answer.
    pub refused: Vec<(Sats, Sats)>,
}

/// A request's reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRecord {
    /// What was reserved.
    pub amount_sats: Sats,
    /// When `expire` may release it (it does once `deadline < now`).
    pub deadline: TimeMs,
    /// Made by a free `decide` (true) or by `reserve_partial`.
    pub by_decide: bool,
    /// Where it stands.
    pub state: ReservationStateRecord,
}

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReservationStateRecord {
    /// Held, counted in the identity's and the ledger's reserved sats.
    Outstanding,
    /// Recorded against `actual_sats`.
    Recorded {
        /// The actual cost the record carried.
        actual_sats: Sats,
    },
    /// Released by its caller.
    Released,
    /// Released by `expire`.
    Expired,
}

/// One credited payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRecord {
    /// Its id.
    pub payment_id: PaymentId,
    /// What was paid.
    pub paid_sats: Sats,
    /// What the pool was credited.
    pub credited_sats: Sats,
}

/// Why a snapshot cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Written by another version of the format.
    #[error("snapshot version {found}, this build reads version {SNAPSHOT_VERSION}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// An identity, request or payment is listed twice.
    #[error("{what} is listed twice")]
    Duplicate {
        /// Which.
        what: String,
    },
    /// A reservation held by a pubkey that has no identity.
    #[error("request {request_id} holds a reservation, but its pubkey has no identity")]
    ReservationWithoutIdentity {
        /// The request.
        request_id: u64,
    },
    /// A sum does not add up.
    #[error("{what}: the snapshot says {stated}, its records add up to {computed}")]
    DoesNotAddUp {
        /// Which sum.
        what: String,
        /// What the snapshot states.
        stated: u128,
        /// What its records give.
        computed: u128,
    },
}
