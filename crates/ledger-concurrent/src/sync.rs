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
