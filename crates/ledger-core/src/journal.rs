//! The journal: every movement of sats a command makes, in the order it makes them.
//!
//! [`Ledger::apply`](crate::Ledger::apply) appends one [`Movement`] per transfer between the
//! pool, a reservation, the absorbed total and the outside world. Summed, the journal is the
//! pool's balance; an invariant checker keeps its books from it, independently of the
//! ledger's own totals.

use serde::{Deserialize, Serialize};

use crate::ids::{PaymentId, Pubkey, RequestId};
use crate::sats::Sats;

/// One movement of sats, as the engine made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "move", rename_all = "snake_case")]
pub enum Movement {
    /// Pool -> reservation: a grant to `pubkey` for `request_id`.
    Debit {
        /// The request.
        request_id: RequestId,
        /// The user granted.
        pubkey: Pubkey,
        /// Amount.
        amount_sats: Sats,
    },
    /// Reservation -> pool, because the caller released it.
    Release {
        /// The request.
        request_id: RequestId,
        /// Amount.
        amount_sats: Sats,
    },
    /// Reservation -> pool, because its deadline passed.
    Expire {
        /// The request.
        request_id: RequestId,
        /// Amount.
        amount_sats: Sats,
    },
    /// Reservation -> absorbed (an audit grant) and the rest back to the pool.
    Record {
        /// The request.
        request_id: RequestId,
        /// The user.
        pubkey: Pubkey,
        /// Absorbed: written to the audit grant and the daily counter.
        absorbed_sats: Sats,
        /// Returned to the pool.
        returned_sats: Sats,
    },
    /// Outside -> pool: a credit from a paid invoice.
    Credit {
        /// The payment.
        payment_id: PaymentId,
        /// Amount.
        amount_sats: Sats,
    },
}
