//! Named mutants: deliberately wrong variants of the reference engine.
//!
//! They exist to measure the harness: a simulator or test suite that cannot tell a mutant
//! from the reference is not testing what it claims. A mutant is only reachable through
//! [`Ledger::with_mutant`](crate::Ledger::with_mutant), which exists only with the
//! `mutants` feature; without it every mutation point compiles to `false`.

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
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 13] = [
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
