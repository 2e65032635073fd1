//! The points at which a test harness may make the reference [`Ledger`](crate::Ledger)
//! deliberately wrong, to measure whether its checks notice.
//!
//! Every method's default is the rule as specified, and [`Exact`] (what [`Ledger`](crate::Ledger)
//! means when no variant is named) takes every default; the compiler folds them away. A service
//! that embeds the ledger never names this trait. The catalog of named wrong variants lives
//! with the test harness (`ledger-harness`), each overriding one method.

use std::fmt;

use crate::command::Decision;
use crate::ids::{Tier, TimeMs};
use crate::rules::{self, Settlement};
use crate::sats::{Bps, Sats};
use crate::spec::Rule;

/// A variant of the rules. Each method is one rule the reference applies; the default is
/// the rule itself.
pub trait Variant: Clone + fmt::Debug {
    /// The tier whose budget applies to an identity of `tier`.
    fn budget_tier(&self, tier: Tier) -> Tier {
        tier
    }

    /// The length of the daily window.
    fn window_ms(&self) -> u64 {
        rules::WINDOW_MS
    }

    /// Whether outstanding reservations count against the daily remaining.
    fn remaining_counts_reservations(&self) -> bool {
        true
    }

    /// The decision given for a new request, from the one the rules give.
    fn decision(&self, decision: Decision) -> Decision {
        decision
    }

    /// Whether a free decision debits the pool in the same step (otherwise the debit comes
    /// late, at `record`, and may come short).
    fn decide_debits(&self) -> bool {
        true
    }

    /// Whether `reserve_partial` grants what is available when it cannot grant what was
    /// asked (the rule: all or nothing).
    fn partial_grants_what_is_available(&self) -> bool {
        false
    }

    /// Whether `release` of a released or recorded reservation returns its sats again (the
    /// rule: a repeat returns nothing, a release after a record is refused).
    fn release_ignores_state(&self) -> bool {
        false
    }

    /// What recording `actual` against a reservation of `reserved` absorbs, returns and
    /// overruns.
    fn settle(&self, reserved: Sats, actual: Sats) -> Settlement {
        rules::settle(reserved, actual)
    }

    /// Whether a repeated `record` absorbs again (the rule: a repeat absorbs nothing).
    fn repeated_record_absorbs(&self) -> bool {
        false
    }

    /// Whether `record` returns the unused part of the reservation to the pool.
    fn record_returns_unused(&self) -> bool {
        true
    }

    /// The daily window after absorbing `absorbed` at `now`: see [`rules::absorb`].
    fn absorb(
        &self,
        absorbed_today: Sats,
        window_start: TimeMs,
        absorbed: Sats,
        now: TimeMs,
        window_ms: u64,
    ) -> Option<(Sats, TimeMs)> {
        rules::absorb(absorbed_today, window_start, absorbed, now, window_ms)
    }

    /// Whether a repeated `credit` credits again (the rule: a repeat credits nothing).
    fn repeated_credit_credits(&self) -> bool {
        false
    }

    /// What a payment of `paid` credits at `rate` (the rule: rounded down), or `None` on
    /// overflow.
    fn credit_share(&self, paid: Sats, rate: Bps) -> Option<Sats> {
        Some(paid.share_bps(rate))
    }

    /// Whether `expire` returns an expired reservation's sats to the pool.
    fn expire_returns(&self) -> bool {
        true
    }

    /// Whether to break `rule` of `SPEC.md` (see [`crate::spec`]): each rule has one place in
    /// the reference where a one-line change breaks it, guarded by this, so that a test can
    /// show that the conformance vectors catch every rule broken.
    fn breaks(&self, rule: Rule) -> bool {
        let _ = rule;
        false
    }
}

/// The rules exactly as specified: every default of [`Variant`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exact;

impl Variant for Exact {}
