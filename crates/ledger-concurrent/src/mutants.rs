//! Named mutants of [`SharedLedger`](crate::SharedLedger): realistic one-line concurrency bugs,
//! planted behind the `mutants` feature so that a build that does not ask for them carries no
//! trace of them (no field, no branch).
//!
//! Each one is a bug a reviewer could miss. All but `PartialIgnoresReservations` give the
//! reference's answer to every command that runs alone, so only threads that meet in the wrong
//! window can see them; that one breaks as soon as an identity has a reservation outstanding
//! while it reserves again, which a caller holding several requests at once does. They exist to
//! measure the concurrent runs (`tests/shared/shared_mutants.rs`): a run that cannot tell a mutant from
//! the real ledger is not testing what it claims.

/// One deliberate concurrency bug of [`SharedLedger`](crate::SharedLedger).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SharedMutant {
    /// `totals` does not take the payment shards, so a snapshot can fall between a credit's two
    /// steps: the credited total raised, the pool not yet.
    TotalsWithoutPaymentShards,
    /// `reserve_partial` computes the remaining without the identity's outstanding
    /// reservations, so it offers again what is already reserved.
    PartialIgnoresReservations,
    /// A pool debit is a load then a store instead of a compare-and-swap: a movement that lands
    /// between the two is lost.
    DebitLoadThenStore,
    /// A pool debit checks a loaded balance, then subtracts in a second atomic step (floored at
    /// zero): two debits that both saw enough take the pool below what each checked.
    DebitCheckThenSubtract,
    /// `release` checks the reservation's state under the identity lock, unlocks, and closes it
    /// under a second lock without checking again: a record or release in between closes it
    /// twice.
    ReleaseChecksThenRelocks,
}

impl SharedMutant {
    /// Every mutant.
    pub const ALL: [SharedMutant; 5] = [
        SharedMutant::TotalsWithoutPaymentShards,
        SharedMutant::PartialIgnoresReservations,
        SharedMutant::DebitLoadThenStore,
        SharedMutant::DebitCheckThenSubtract,
        SharedMutant::ReleaseChecksThenRelocks,
    ];

    /// The mutant's name (snake case).
    pub const fn name(self) -> &'static str {
        match self {
            SharedMutant::TotalsWithoutPaymentShards => "totals_without_payment_shards",
            SharedMutant::PartialIgnoresReservations => "partial_ignores_reservations",
            SharedMutant::DebitLoadThenStore => "debit_load_then_store",
            SharedMutant::DebitCheckThenSubtract => "debit_check_then_subtract",
            SharedMutant::ReleaseChecksThenRelocks => "release_checks_then_relocks",
        }
    }

    /// The mutant named `name`.
    pub fn from_name(name: &str) -> Option<SharedMutant> {
        SharedMutant::ALL.into_iter().find(|m| m.name() == name)
    }

    /// What the bug is, in one line (the variant's documentation).
    pub const fn description(self) -> &'static str {
        match self {
            SharedMutant::TotalsWithoutPaymentShards => {
                "totals() does not take the payment shards: a snapshot can see a credit half applied"
            }
            SharedMutant::PartialIgnoresReservations => {
                "reserve_partial's remaining ignores the identity's outstanding reservations"
            }
            SharedMutant::DebitLoadThenStore => "a pool debit is a load then a store, not a compare-and-swap",
            SharedMutant::DebitCheckThenSubtract => {
                "a pool debit checks a loaded balance, then subtracts in a second step (floored at zero)"
            }
            SharedMutant::ReleaseChecksThenRelocks => {
                "release checks the reservation under the identity lock, then closes it under a second lock"
            }
        }
    }
}

impl std::fmt::Display for SharedMutant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
