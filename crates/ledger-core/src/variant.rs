//! The points at which a test harness may make the reference [`Ledger`](crate::Ledger)
//! deliberately wrong, to measure whether its checks notice.
//!
//! Every method's default is the rule as specified, and [`Exact`] (what [`Ledger`](crate::Ledger)
//! means when no variant is named) takes every default; the compiler folds them away. A service
//! that embeds the ledger never names this trait. A rule of `SPEC.md` is broken through
//! [`Variant::breaks`]; the other methods are the points where a wrong variant needs a value
//! (a window length, a settlement, a credit share, a decision). The catalog of named wrong
//! variants lives with the test harness (`ledger-harness`), each breaking one rule.

use std::fmt;

use crate::command::Decision;
use crate::ids::Tier;
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

    /// The decision given for a new request, from the one the rules give.
    fn decision(&self, decision: Decision) -> Decision {
        decision
    }

    /// What recording `actual` against a reservation of `reserved` absorbs, returns and
    /// overruns.
    fn settle(&self, reserved: Sats, actual: Sats) -> Settlement {
        rules::settle(reserved, actual)
    }

    /// Whether `record` returns the unused part of the reservation to the pool.
    fn record_returns_unused(&self) -> bool {
        true
    }

    /// What a payment of `paid` credits at `rate` (the rule: rounded down), or `None` on
    /// overflow.
    fn credit_share(&self, paid: Sats, rate: Bps) -> Option<Sats> {
        Some(paid.share_bps(rate))
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
