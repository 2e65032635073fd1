//! What can be read of a ledger: an identity's standing and the balance sheet.

use serde::{Deserialize, Serialize};

use crate::ids::{Tier, TimeMs};
use crate::rules;
use crate::sats::Sats;

/// One identity's standing: tier and daily window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Current tier.
    pub tier: Tier,
    /// Absorbed in the window that began at `absorbed_reset_at`.
    pub sats_absorbed_today: Sats,
    /// Start of the current daily window.
    pub absorbed_reset_at: TimeMs,
    /// Outstanding reservations, which count against the daily remaining.
    pub reserved_sats: Sats,
}

impl Identity {
    /// Absorption of the window containing `now` (zero once 24 h have passed since its start).
    pub fn absorbed_in_window(&self, now: TimeMs) -> Sats {
        rules::absorbed_in_window(self.sats_absorbed_today, self.absorbed_reset_at, now, rules::WINDOW_MS)
    }

    /// What the identity may still be granted at `now` under `budget`.
    pub fn daily_remaining(&self, budget: Sats, now: TimeMs) -> Sats {
        rules::daily_remaining(budget, self.absorbed_in_window(now), self.reserved_sats)
    }
}

/// Running totals: the ledger's balance sheet (also the `totals` of a conformance step).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// The pool's balance.
    pub pool_sats: Sats,
    /// Sum of outstanding reservations.
    pub reserved_sats: Sats,
    /// Sum of all absorbed (recorded) sats: the sum of audit grants.
    pub absorbed_sats: Sats,
    /// Sum of credits, once per payment.
    pub credited_sats: Sats,
    /// Sum of overruns reported by `record` (paid outside the pool).
    pub overrun_sats: Sats,
    /// Number of audit grants written.
    pub n_grants: u64,
}
