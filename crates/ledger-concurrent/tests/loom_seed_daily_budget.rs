//! loom model of the seed's daily budget (`fixtures/seed/free-tier.ts`).
//!
//! `decide` checks the daily budget against `sats_absorbed_today` as read by
//! `getIdentityWithDecay`, but nothing writes that column until `recordGrant`, after the work. Two
//! requests of one identity that both read the identity before either records are both served
//! free against the same remaining budget, and both records then push the day's absorption past
//! the tier's budget: invariant I4 breaks.
//!
//! The model: the identity row and the pool row are `loom::sync::Mutex`es; each SQL statement is
//! one step holding the row locks it takes. `getIdentityWithDecay` and `getPoolBalance` are plain
//! reads, `_atomicPoolDebit` holds the pool row from `SELECT .. FOR UPDATE` to commit, and the
//! `recordGrant` transaction holds the identity row from its `UPDATE` to commit (reading the pool
//! and inserting the audit row in between). Both threads run a free job that succeeds: `decide`,
//! then `recordGrant(actual = estimate)`. The window never rolls over here (no clock moves).
//!
//! Preemption bound: 2. The bug needs one preemption (between the first thread's identity read and
//! its record); 2 keeps the run to well under a second.
#![cfg(ledger_loom)]

mod loom_support;

use loom::sync::{Arc, Mutex};
use loom::thread;
use loom_support::{explore, Trace};

/// Preemption bound of this model; see the module docs.
const PREEMPTION_BOUND: usize = 2;
/// The identity's tier budget (the seed's default for `established`).
const DAILY_BUDGET_SATS: u64 = 50;
const POOL_INITIAL_SATS: u64 = 1_000;
const ESTIMATE_SATS: u64 = 30;

struct Db {
    /// `nostr_identities.sats_absorbed_today` of the one identity.
    absorbed_today_sats: Mutex<u64>,
    /// `timmy_config` row `generosity_pool_sats`.
    pool_sats: Mutex<u64>,
}

/// The seed's `decide`; returns the sats debited for a free answer, 0 for partial or gate.
fn decide(db: &Db, trace: &Trace, who: &str, estimated_sats: u64) -> u64 {
    // getIdentityWithDecay: one SELECT.
    let absorbed_today_sats = *db.absorbed_today_sats.lock().unwrap();
    let daily_remaining_sats = DAILY_BUDGET_SATS.saturating_sub(absorbed_today_sats);
    trace.step(
        who,
        format!(
            "getIdentityWithDecay reads sats_absorbed_today {absorbed_today_sats}, remaining {daily_remaining_sats}"
        ),
    );
    if daily_remaining_sats == 0 {
        trace.step(who, "answers gate");
        return 0;
    }
    // getPoolBalance: one SELECT.
    let pool_balance_sats = *db.pool_sats.lock().unwrap();
    let can_absorb_sats = daily_remaining_sats.min(pool_balance_sats).min(estimated_sats);
    if can_absorb_sats < estimated_sats {
        trace.step(who, format!("answers partial, advisory absorbSats {can_absorb_sats}; the user walks away"));
        return 0;
    }
    // _atomicPoolDebit: SELECT .. FOR UPDATE; UPDATE; COMMIT.
    let debited_sats = {
        let mut pool = db.pool_sats.lock().unwrap();
        let debited_sats = can_absorb_sats.min(*pool);
        *pool -= debited_sats;
        debited_sats
    };
    trace.step(who, format!("debits the pool {debited_sats}, answers free"));
    debited_sats
}

/// The seed's `recordGrant(actual, reserved)` transaction.
fn record_grant(db: &Db, trace: &Trace, who: &str, actual_sats: u64, reserved_sats: u64) {
    let over_reserved_sats = reserved_sats.saturating_sub(actual_sats);
    if over_reserved_sats > 0 {
        *db.pool_sats.lock().unwrap() += over_reserved_sats;
    }
    // UPDATE nostr_identities: the row lock is held to commit.
    let mut absorbed = db.absorbed_today_sats.lock().unwrap();
    *absorbed += actual_sats;
    // SELECT the pool balance for the audit row, then INSERT it.
    let pool_after_sats = *db.pool_sats.lock().unwrap();
    trace.step(
        who,
        format!(
            "recordGrant({actual_sats}): sats_absorbed_today now {}, grant row pool_balance_after {pool_after_sats}",
            *absorbed
        ),
    );
}

fn model(trace: &Trace) -> Option<String> {
    let db = Arc::new(Db { absorbed_today_sats: Mutex::new(0), pool_sats: Mutex::new(POOL_INITIAL_SATS) });
    let jobs: Vec<_> = ["job A", "job B"]
        .into_iter()
        .map(|who| {
            let db = Arc::clone(&db);
            let trace = trace.clone();
            thread::spawn(move || {
                let reserved_sats = decide(&db, &trace, who, ESTIMATE_SATS);
                if reserved_sats > 0 {
                    // A free job: work starts at once, succeeds at the estimated cost.
                    record_grant(&db, &trace, who, ESTIMATE_SATS, reserved_sats);
                }
            })
        })
        .collect();
    for job in jobs {
        job.join().unwrap();
    }
    let absorbed_today_sats = *db.absorbed_today_sats.lock().unwrap();
    (absorbed_today_sats > DAILY_BUDGET_SATS).then(|| {
        format!(
            "I4 broken: the identity absorbed {absorbed_today_sats} sats today, its tier budget is {DAILY_BUDGET_SATS}"
        )
    })
}

#[test]
fn loom_finds_two_decides_over_one_budget() {
    let report = explore("seed daily budget", PREEMPTION_BOUND, model);
    report.print();
    let (what, _) =
        report.first.as_ref().expect("loom must find two free answers that together exceed the daily budget");
    assert!(what.starts_with("I4 broken"), "{what}");
}
