//! `ledger-concurrent`: the generosity-pool ledger shared by many threads of one process, and the
//! loom models of its locking protocols.
//!
//! What it is: an in-process, thread-safe engine for services that embed the reference semantics
//! of `ledger-core` without a database, whose locks and atomics come from [`sync`] so that loom
//! checks the real code under `--cfg ledger_loom`; and, under `tests/loom_*.rs`, loom models of the
//! database locking protocols (the seed's and the reference one).
//!
//! What it is not: a database adapter (that is `ledger-pg`), a source of time (callers pass `now`),
//! or a second specification: the semantics are `ledger-core`'s, and this crate only decides who
//! may touch which part of the state at once.
#![warn(missing_docs, unreachable_pub)]

// The shim is used by the engine that lands in a later commit.
#[allow(unused_imports)]
mod sync;
