//! The journal: every movement of sats a command makes, in the order it makes them.
//!
//! [`Ledger::apply`](crate::Ledger::apply) appends one [`Movement`] per transfer between the
//! pool, a reservation, the absorbed total and the outside world. Summed, the journal is the
//! pool's balance; an invariant checker keeps its books from it, independently of the
//! ledger's own totals.

use serde::{Deserialize, Serialize};

use crate::command::{Command, Decision, Outcome};
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

/// A `record` outcome was given without the pubkey that holds its reservation, which its
/// movement names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a record of request {0} needs the pubkey that holds its reservation")]
pub struct UnknownHolder(pub u64);

/// The movements a *fresh* `outcome` of `command` implies (an idempotent repeat implies
/// none; telling the two apart is the caller's): a free decision or a reservation debits the
/// pool, a release or an expiry returns what was reserved, a record absorbs part and returns
/// the rest, a credit adds to the pool. A `record` does not name its pubkey, so its
/// reservation's `holder` must be given.
///
/// This is how an implementation that reports outcomes but no journal (the SQL engine, a
/// conformance trace) is held to the same books as the reference, which journals as it goes.
pub fn implied_movements(
    command: &Command,
    outcome: &Outcome,
    holder: Option<Pubkey>,
) -> Result<Vec<Movement>, UnknownHolder> {
    Ok(match (command, outcome) {
        (
            Command::Decide { request_id, pubkey, .. },
            Outcome::Decided { decision: Decision::Free { reserved_sats } },
        )
        | (Command::ReservePartial { request_id, pubkey, .. }, Outcome::Reserved { reserved_sats }) => {
            vec![Movement::Debit { request_id: *request_id, pubkey: *pubkey, amount_sats: *reserved_sats }]
        }
        (Command::Release { request_id }, Outcome::Released { returned_sats }) => {
            vec![Movement::Release { request_id: *request_id, amount_sats: *returned_sats }]
        }
        (Command::Record { request_id, .. }, Outcome::Recorded { absorbed_sats, returned_sats, .. }) => {
            vec![Movement::Record {
                request_id: *request_id,
                pubkey: holder.ok_or(UnknownHolder(request_id.0))?,
                absorbed_sats: *absorbed_sats,
                returned_sats: *returned_sats,
            }]
        }
        (Command::Credit { payment_id, .. }, Outcome::Credited { credited_sats }) => {
            vec![Movement::Credit { payment_id: *payment_id, amount_sats: *credited_sats }]
        }
        (Command::Expire, Outcome::Expired { released }) => {
            released.iter().map(|&(request_id, amount_sats)| Movement::Expire { request_id, amount_sats }).collect()
        }
        _ => Vec::new(),
    })
}
