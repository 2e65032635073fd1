//! Named mutants: deliberately wrong variants of the reference engine.
//!
//! They exist to measure the harness: a simulator or test suite that cannot tell a mutant
//! from the reference is not testing what it claims. Each mutant breaks one rule through
//! [`ledger_core::variant::Variant`] (most through `Variant::breaks`, as a `SPEC.md` rule
//! broken at its place in the reference); the reference ledger runs it through
//! [`Ledger::with_variant`](ledger_core::Ledger::with_variant). The simulator's engine for a
//! mutant, [`ReferenceEngine::with_mutant`](crate::ReferenceEngine::with_mutant), exists only
//! with this crate's `mutants` feature, so a build that does not ask for mutants cannot run one.

use ledger_core::rules::{self, Settlement};
use ledger_core::variant::Variant;
use ledger_core::{Bps, Decision, GateReason, Rule, Sats, Tier};
use serde::{Deserialize, Serialize};

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutant {
    /// The daily window ends an hour early (a 23 h day).
    WindowHourShort,
    /// Every absorption overwrites the day's counter instead of adding to it.
    WindowOverwrites,
    /// `decide` answers free without debiting; `record` debits later (the seed's first bug).
    DebitOutsideAtomicStep,
    /// A repeated `record` absorbs again.
    RecordNotIdempotent,
    /// A repeated `credit` credits again.
    CreditNotIdempotent,
    /// Credits round up instead of down.
    CreditRoundsUp,
    /// `release` returns the reservation whatever its state (even recorded).
    ReleaseIgnoresState,
    /// Daily remaining ignores outstanding reservations.
    RemainingIgnoresReservations,
    /// `reserve_partial` grants what is available instead of all or nothing.
    ReservePartialShort,
    /// `expire` closes reservations without returning their sats.
    ExpireKeepsSats,
    /// `record` absorbs the actual cost uncapped by the reservation.
    RecordUncapped,
    /// `record` keeps the over-reservation instead of returning it.
    RecordKeepsOverReservation,
    /// Every tier gets the elite budget.
    BudgetIgnoresTier,
    /// Every request is gated (too strict: it keeps every money invariant).
    GatesEverything,
    /// The daily window lasts one millisecond too long (24 h + 1 ms).
    WindowOneMsLong,
    /// The credit rate is truncated to whole percents (12.5 % credits 12 %).
    CreditWholePercent,
    /// A partial offer is one sat short of what the pool and the day cover (too strict).
    OfferOneShort,
    /// A repeated `decide` is answered afresh instead of with the first decision (R-IDEM-1).
    DecideAnsweredAfresh,
    /// `expire` takes a reservation whose deadline is `now` (`<=` for `<`, R-EXPIRE-2).
    ExpireAtDeadline,
    /// A record after the deadline is refused although no `expire` took the reservation
    /// (too strict, R-RECORD-4).
    RecordRefusedAfterDeadline,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 20] = [
        Mutant::WindowHourShort,
        Mutant::WindowOverwrites,
        Mutant::DebitOutsideAtomicStep,
        Mutant::RecordNotIdempotent,
        Mutant::CreditNotIdempotent,
        Mutant::CreditRoundsUp,
        Mutant::ReleaseIgnoresState,
        Mutant::RemainingIgnoresReservations,
        Mutant::ReservePartialShort,
        Mutant::ExpireKeepsSats,
        Mutant::RecordUncapped,
        Mutant::RecordKeepsOverReservation,
        Mutant::BudgetIgnoresTier,
        Mutant::GatesEverything,
        Mutant::WindowOneMsLong,
        Mutant::CreditWholePercent,
        Mutant::OfferOneShort,
        Mutant::DecideAnsweredAfresh,
        Mutant::ExpireAtDeadline,
        Mutant::RecordRefusedAfterDeadline,
    ];

    /// The mutant's name (snake case).
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// The mutant named `name`.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl Variant for Mutant {
    fn budget_tier(&self, tier: Tier) -> Tier {
        if *self == Mutant::BudgetIgnoresTier {
            Tier::Elite
        } else {
            tier
        }
    }

    fn window_ms(&self) -> u64 {
        if *self == Mutant::WindowHourShort {
            rules::WINDOW_MS - 3_600_000
        } else {
            rules::WINDOW_MS
        }
    }

    fn decision(&self, decision: Decision) -> Decision {
        let one = Sats::new(1).expect("one");
        match (self, decision) {
            (Mutant::GatesEverything, _) => {
                Decision::Gate { reason: GateReason::PoolEmpty, charge_sats: decision.estimated_sats() }
            }
            (Mutant::OfferOneShort, Decision::Partial { offer_sats, charge_sats }) if offer_sats > one => {
                Decision::Partial {
                    offer_sats: offer_sats.checked_sub(one).expect("above one"),
                    charge_sats: charge_sats.checked_add(one).expect("below the estimate"),
                }
            }
            _ => decision,
        }
    }

    /// Most named mutants are a rule of `SPEC.md` broken at its place in the reference.
    fn breaks(&self, rule: Rule) -> bool {
        matches!(
            (self, rule),
            (Mutant::WindowOverwrites, Rule::WindowAddsUp)
                | (Mutant::WindowOneMsLong, Rule::WindowLength)
                | (Mutant::DebitOutsideAtomicStep, Rule::DecideFreeDebits)
                | (Mutant::RecordNotIdempotent, Rule::RecordRepeat)
                | (Mutant::CreditNotIdempotent, Rule::CreditRepeat)
                | (Mutant::CreditRoundsUp, Rule::CreditRounding)
                | (Mutant::ReleaseIgnoresState, Rule::ReleaseRepeat)
                | (Mutant::RemainingIgnoresReservations, Rule::RemainingCountsReservations)
                | (Mutant::ReservePartialShort, Rule::PartialAllOrNothing)
                | (Mutant::ExpireKeepsSats, Rule::ExpireReturns)
                | (Mutant::DecideAnsweredAfresh, Rule::DecideRepeat)
                | (Mutant::ExpireAtDeadline, Rule::ExpireStrict)
                | (Mutant::RecordRefusedAfterDeadline, Rule::RecordAfterDeadline)
        )
    }

    fn settle(&self, reserved: Sats, actual: Sats) -> Settlement {
        if *self == Mutant::RecordUncapped {
            Settlement { absorbed: actual, returned: reserved.saturating_sub(actual), overrun: Sats::ZERO }
        } else {
            rules::settle(reserved, actual)
        }
    }

    fn record_returns_unused(&self) -> bool {
        *self != Mutant::RecordKeepsOverReservation
    }

    fn credit_share(&self, paid: Sats, rate: Bps) -> Option<Sats> {
        if *self == Mutant::CreditWholePercent {
            return Some(paid.share_bps(Bps::new(rate.to_u16() / 100 * 100).expect("a smaller rate")));
        }
        Some(paid.share_bps(rate))
    }
}

/// The reference with exactly one rule of `SPEC.md` broken, by the one-line change that
/// [`Variant::breaks`] guards in the reference. The conformance vectors must catch each
/// (`tests/spec.rs`): a rule that can be broken unnoticed is a rule the vectors do not pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaks(pub Rule);

impl Variant for Breaks {
    fn breaks(&self, rule: Rule) -> bool {
        rule == self.0
    }
}
