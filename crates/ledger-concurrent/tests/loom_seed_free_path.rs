//! loom model of the seed's free path in `decide` (`fixtures/seed/free-tier.ts`).
//!
//! The seed reads the pool with `getPoolBalance()` (a plain `SELECT`, no lock kept), decides
//! "free" when that balance covers the estimate, and only then debits in `_atomicPoolDebit`, a
//! transaction that locks the pool row `FOR UPDATE` and debits `min(requested, balance)`. It
//! answers `free` with `chargeSats: 0` whenever the debit is above zero, so when the pool shrank
//! between the read and the lock, the user's charge is reduced by the whole estimate while the
//! pool gave up less: invariant I3 breaks.
//!
//! The model: the `timmy_config` pool row is a `loom::sync::Mutex<u64>`; each SQL statement is one
//! step that holds the locks it takes (the `FOR UPDATE` transaction holds the row lock from the
//! `SELECT` to the commit). Two `decide` calls race with a third transaction that debits the pool
//! (a `reservePartialGrant` confirming payment elsewhere). The identity read is left out: the
//! daily budget is large here, and `loom_seed_daily_budget.rs` models that part.
//!
//! Preemption bound: 3. Each thread runs two statements, so 3 covers every interleaving of
//! them; the bug needs only one preemption (between a `getPoolBalance` and its debit).
#![cfg(ledger_loom)]

mod loom_support;

use loom::sync::{Arc, Mutex};
use loom::thread;
use loom_support::{explore, Trace};

/// Preemption bound of this model; see the module docs.
const PREEMPTION_BOUND: usize = 3;
const POOL_INITIAL_SATS: u64 = 10;
const ESTIMATE_A_SATS: u64 = 6;
const ESTIMATE_B_SATS: u64 = 6;
const OTHER_DEBIT_SATS: u64 = 5;

/// The rows the free path touches.
struct Db {
    /// `timmy_config` row `generosity_pool_sats`.
    pool_sats: Mutex<u64>,
}

/// What `decide` answered, with what the pool really gave up for it.
#[derive(Debug, Clone, Copy)]
struct Answer {
    serve: &'static str,
    charge_sats: u64,
    debited_sats: u64,
}

/// `getPoolBalance()`: one `SELECT`; the lock is not kept.
fn get_pool_balance(db: &Db, trace: &Trace, who: &str) -> u64 {
    let balance_sats = *db.pool_sats.lock().unwrap();
    trace.step(who, format!("getPoolBalance() reads {balance_sats}"));
    balance_sats
}

/// `_atomicPoolDebit(requested)`: `BEGIN; SELECT .. FOR UPDATE; UPDATE; COMMIT`, one step that
/// holds the pool row lock throughout. Debits `min(requested, balance)`.
fn atomic_pool_debit(db: &Db, trace: &Trace, who: &str, requested_sats: u64) -> u64 {
    let mut row = db.pool_sats.lock().unwrap();
    let balance_sats = *row;
    if balance_sats == 0 {
        trace.step(who, "_atomicPoolDebit: FOR UPDATE reads 0, debits nothing");
        return 0;
    }
    let debited_sats = requested_sats.min(balance_sats);
    *row = balance_sats - debited_sats;
    trace.step(
        who,
        format!(
            "_atomicPoolDebit({requested_sats}): FOR UPDATE reads {balance_sats}, debits {debited_sats}, pool now {}",
            *row
        ),
    );
    debited_sats
}

/// The seed's `decide`, from the pool read on (the identity has budget to spare).
fn decide(db: &Db, trace: &Trace, who: &str, estimated_sats: u64) -> Answer {
    let gate = Answer { serve: "gate", charge_sats: estimated_sats, debited_sats: 0 };
    let pool_balance_sats = get_pool_balance(db, trace, who);
    if pool_balance_sats == 0 {
        return gate;
    }
    let can_absorb_sats = pool_balance_sats.min(estimated_sats);
    if can_absorb_sats >= estimated_sats {
        let debited_sats = atomic_pool_debit(db, trace, who, can_absorb_sats);
        if debited_sats == 0 {
            return gate;
        }
        trace.step(who, format!("answers free: absorbSats {debited_sats}, chargeSats 0 (estimate {estimated_sats})"));
        return Answer { serve: "free", charge_sats: 0, debited_sats };
    }
    // Partial is advisory: no debit now, and no charge reduction until the payment.
    Answer { serve: "partial", charge_sats: estimated_sats, debited_sats: 0 }
}

/// One execution; `Some` when a free answer reduced a charge by more than the pool gave up.
fn model(trace: &Trace) -> Option<String> {
    let db = Arc::new(Db { pool_sats: Mutex::new(POOL_INITIAL_SATS) });
    let spawn_decide = |who: &'static str, estimated_sats: u64| {
        let db = Arc::clone(&db);
        let trace = trace.clone();
        thread::spawn(move || (who, estimated_sats, decide(&db, &trace, who, estimated_sats)))
    };
    let a = spawn_decide("decide A", ESTIMATE_A_SATS);
    let b = spawn_decide("decide B", ESTIMATE_B_SATS);
    let other = {
        let db = Arc::clone(&db);
        let trace = trace.clone();
        thread::spawn(move || atomic_pool_debit(&db, &trace, "debit C", OTHER_DEBIT_SATS))
    };
    let answers = [a.join().unwrap(), b.join().unwrap()];
    let other_debited_sats = other.join().unwrap();

    // Sanity of the model itself: the seed's debits never overdraw and every sat is accounted.
    let pool_sats = *db.pool_sats.lock().unwrap();
    let debited_sats: u64 = answers.iter().map(|(_, _, a)| a.debited_sats).sum();
    assert_eq!(pool_sats + debited_sats + other_debited_sats, POOL_INITIAL_SATS);

    answers.iter().find_map(|(who, estimated_sats, answer)| {
        let reduction_sats = estimated_sats - answer.charge_sats;
        (reduction_sats > answer.debited_sats).then(|| {
            format!(
                "I3 broken: {who} answered {} and cut the charge by {reduction_sats} sats, \
                 but the pool gave up only {} sats",
                answer.serve, answer.debited_sats
            )
        })
    })
}

#[test]
fn loom_finds_free_answer_with_short_debit() {
    let report = explore("seed free path", PREEMPTION_BOUND, model);
    report.print();
    let (what, interleaving) =
        report.first.as_ref().expect("loom must find the free answer whose debit is short of the estimate");
    assert!(what.starts_with("I3 broken"), "{what}");
    assert!(interleaving.len() >= 4, "{interleaving:?}");
}
