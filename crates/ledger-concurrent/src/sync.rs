//! The one place this crate takes its locks and atomics from.
//!
//! Normally these are `std::sync`; under `--cfg ledger_loom` they are `loom::sync`, so the loom
//! tests explore every interleaving of the real code rather than of a copy. This is tokio's
//! pattern (`tokio/src/loom/mod.rs`). The cfg is a project cfg, not plain `loom`, because plain
//! `--cfg loom` would also switch tokio (pulled in by sqlx) into its own loom mode.

#[cfg(not(ledger_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(ledger_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Atomics, from `std` normally and from loom under `--cfg ledger_loom`.
pub(crate) mod atomic {
    #[cfg(not(ledger_loom))]
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

    #[cfg(ledger_loom)]
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
}

/// Schedule noise: at every lock and atomic step of the ledger, a thread that asked for it now
/// and then yields or spins a little, so that the windows between two steps (where a broken
/// ledger races) are hit by other threads whatever the machine's load. Only with the `mutants`
/// feature and only on threads that call [`noise::set`]: the concurrent tests turn it on for
/// their workers, to make thread timing not decide whether a mutant is caught.
#[cfg(all(feature = "mutants", not(ledger_loom)))]
pub(crate) mod noise {
    use std::cell::Cell;

    thread_local! {
        /// One point in this many makes noise; 0 for none.
        static ONE_IN: Cell<u64> = const { Cell::new(0) };
        static RNG: Cell<u64> = const { Cell::new(1) };
    }

    /// Makes noise at one point in `one_in` (0: never) on this thread, from `seed`.
    pub(crate) fn set(one_in: u64, seed: u64) {
        ONE_IN.set(one_in);
        RNG.set(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    }

    /// A point where another thread may run.
    pub(crate) fn point() {
        let one_in = ONE_IN.get();
        if one_in == 0 {
            return;
        }
        let mut x = RNG.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        RNG.set(x);
        if x % one_in != 0 {
            return;
        }
        if (x >> 32) & 1 == 0 {
            std::thread::yield_now();
        } else {
            for _ in 0..(x >> 40) % 256 {
                std::hint::spin_loop();
            }
        }
    }
}

/// Without the `mutants` feature (or under loom, which explores every interleaving itself) there
/// is no schedule noise.
#[cfg(not(all(feature = "mutants", not(ledger_loom))))]
pub(crate) mod noise {
    /// Nothing.
    #[inline(always)]
    pub(crate) fn point() {}
}
