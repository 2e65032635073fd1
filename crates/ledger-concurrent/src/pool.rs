//! The generosity pool as one atomic word: debits and credits are compare-and-swap loops that
//! check the new balance before they store it, so the balance is never negative and never above
//! [`Sats::MAX`], and no lock is taken.

use ledger_core::Sats;

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::noise;

/// A balance of sats that many threads debit and credit at once.
#[derive(Debug)]
pub(crate) struct AtomicSats(AtomicU64);

impl AtomicSats {
    pub(crate) fn new(amount: Sats) -> AtomicSats {
        AtomicSats(AtomicU64::new(amount.to_u64()))
    }

    /// The balance at some instant.
    pub(crate) fn load(&self) -> Sats {
        noise::point();
        to_sats(self.0.load(Ordering::Acquire))
    }

    /// Replaces the balance `b` by `next(b)` in one atomic step, or leaves it alone when `next`
    /// answers `None`. Returns the balance the decision was made on, as `Ok` when it was
    /// replaced and `Err` when not.
    ///
    /// A plain load and `compare_exchange` loop rather than `fetch_update`, so that loom sees the
    /// window between the read and the swap and explores the retry.
    pub(crate) fn update(&self, next: impl Fn(Sats) -> Option<Sats>) -> Result<Sats, Sats> {
        noise::point();
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let Some(new) = next(to_sats(current)) else {
                return Err(to_sats(current));
            };
            noise::point();
            match self.0.compare_exchange(current, new.to_u64(), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(to_sats(current)),
                Err(actual) => current = actual,
            }
        }
    }

    /// [`AtomicSats::update`] broken as a load then a store (the `debit_load_then_store`
    /// mutant): a movement that lands between the two is overwritten.
    #[cfg(feature = "mutants")]
    pub(crate) fn update_by_load_then_store(&self, next: impl Fn(Sats) -> Option<Sats>) -> Result<Sats, Sats> {
        let current = self.load();
        let Some(new) = next(current) else {
            return Err(current);
        };
        noise::point();
        self.0.store(new.to_u64(), Ordering::Release);
        Ok(current)
    }

    /// [`AtomicSats::update`] broken as a check of a loaded balance, then a subtraction of what
    /// it decided in a second atomic step, floored at zero (the `debit_check_then_subtract`
    /// mutant): two debits that both saw enough take more than there is.
    #[cfg(feature = "mutants")]
    pub(crate) fn update_by_check_then_subtract(&self, next: impl Fn(Sats) -> Option<Sats>) -> Result<Sats, Sats> {
        let current = self.load();
        let Some(new) = next(current) else {
            return Err(current);
        };
        let amount = current.checked_sub(new).expect("a debit");
        let _ = self.update(|balance| Some(balance.checked_sub(amount).unwrap_or(Sats::ZERO)));
        Ok(current)
    }

    /// Takes exactly `amount`, or nothing when the balance is short; `Err` carries the balance.
    pub(crate) fn debit(&self, amount: Sats) -> Result<Sats, Sats> {
        self.update(|balance| balance.checked_sub(amount))
    }

    /// Adds `amount`, or nothing when the sum would pass [`Sats::MAX`].
    pub(crate) fn credit(&self, amount: Sats) -> Result<Sats, Sats> {
        self.update(|balance| balance.checked_add(amount))
    }

    /// Adds back sats that were taken from this balance before. Returning them cannot pass
    /// [`Sats::MAX`] because every sat is in exactly one place (I2) and the sum of the places is
    /// bounded when credits are accepted.
    pub(crate) fn give_back(&self, amount: Sats) {
        self.credit(amount).expect("returned sats fit: they were in the pool before");
    }
}

fn to_sats(raw: u64) -> Sats {
    Sats::new(raw).expect("the atomic only ever holds a valid amount")
}
