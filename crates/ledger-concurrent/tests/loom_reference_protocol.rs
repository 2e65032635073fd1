//! loom model of the reference locking protocol (SPEC.md on a database): loom checks I1-I6
//! over every interleaving of three client threads, within the preemption bound.
//!
//! Each command is one transaction that keeps every row lock it takes until it commits
//! (two-phase locking, as `SELECT .. FOR UPDATE` does), and rows are locked in one order:
//!
//! - `decide(r)` and `reserve_partial(r)`: identity, pool, request row `r`, reservation row `r`.
//!   The request row carries the decision and whether a reservation exists; it is the unique key
//!   that makes a repeated `decide` or `reserve_partial` return the first outcome. A new
//!   reservation row is taken only when the request row says none exists.
//! - `record(r)` and `release(r)`: reservation row `r`, identity, pool. When the reservation is not
//!   outstanding they stop at the first lock.
//! - `credit(p)`: payment row `p`, pool.
//!
//! No cycle can form: `record` waits for the identity while holding reservation `r` only when `r`
//! is outstanding, and then nobody who holds the identity still wants row `r` (it was created, and
//! the request row says so). loom reports a deadlock as a failure, so it checks this too.
//!
//! The checks: I1 by checked arithmetic in every transaction; I2 (initial + credits = pool +
//! reserved + absorbed) inside every transaction that holds both the identity and the pool, so in
//! every reachable committed state; I4 (absorbed + reserved within the budget of the tier held
//! when the sats are granted) in every debit; I3 (a charge is reduced by exactly what was
//! reserved), I5 (grants sum to the absorption, nothing recorded twice or both recorded and
//! released) and I6 (nothing left outstanding) at the end.
//!
//! One identity, so that every request contends for the same budget and pool: that is where the
//! seed breaks. No clock moves (windows are `ledger-core`'s business, not the locking's).
//!
//! Preemption bound: 4 for each mix below (about 20k-60k executions, 9 s for the three mixes in
//! release mode). Every bug of the seed needs one preemption; 4 lets all three threads cut into
//! each other's transactions twice over. Bound 6 explores 1.4 million executions in 107 s and
//! found nothing more, which is over this suite's share of its 5-minute budget.
#![cfg(ledger_loom)]

mod loom_support;

use loom::sync::{Arc, Mutex};
use loom::thread;
use loom_support::{explore, Trace};

/// Preemption bound of every mix in this file; see the module docs.
const PREEMPTION_BOUND: usize = 4;
const N_REQUESTS: usize = 2;
const N_PAYMENTS: usize = 1;
const CREDIT_BPS: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Free { reserved_sats: u64 },
    Partial { offer_sats: u64 },
    Gate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResState {
    /// No row (or not yet committed: invisible to other transactions).
    Absent,
    Outstanding {
        amount_sats: u64,
    },
    Recorded {
        actual_sats: u64,
        absorbed_sats: u64,
    },
    Released {
        amount_sats: u64,
    },
}

struct IdentityRow {
    budget_sats: u64,
    absorbed_sats: u64,
    reserved_sats: u64,
}

struct PoolRow {
    balance_sats: u64,
    credited_sats: u64,
}

#[derive(Clone, Copy)]
struct RequestRow {
    estimated_sats: u64,
    decision: Decision,
    /// Amount of the reservation made for this request, if one was.
    reserved_sats: Option<u64>,
}

/// What the model records beside the database, to check I5: every grant and every release that
/// changed something. A `std` mutex: it is bookkeeping, not a row anybody locks.
#[derive(Default)]
struct Audit {
    grants: Vec<(usize, u64)>,
    releases: Vec<usize>,
}

struct Db {
    initial_pool_sats: u64,
    identity: Mutex<IdentityRow>,
    pool: Mutex<PoolRow>,
    requests: Vec<Mutex<Option<RequestRow>>>,
    reservations: Vec<Mutex<ResState>>,
    payments: Vec<Mutex<Option<u64>>>,
    audit: std::sync::Mutex<Audit>,
}

impl Db {
    fn new(budget_sats: u64, initial_pool_sats: u64) -> Db {
        Db {
            initial_pool_sats,
            identity: Mutex::new(IdentityRow { budget_sats, absorbed_sats: 0, reserved_sats: 0 }),
            pool: Mutex::new(PoolRow { balance_sats: initial_pool_sats, credited_sats: 0 }),
            requests: (0..N_REQUESTS).map(|_| Mutex::new(None)).collect(),
            reservations: (0..N_REQUESTS).map(|_| Mutex::new(ResState::Absent)).collect(),
            payments: (0..N_PAYMENTS).map(|_| Mutex::new(None)).collect(),
            audit: std::sync::Mutex::default(),
        }
    }
}

/// I2 on a state whose identity and pool rows the caller holds.
fn check_rows(db: &Db, identity: &IdentityRow, pool: &PoolRow) {
    let held_sats = pool.balance_sats + identity.reserved_sats + identity.absorbed_sats;
    assert_eq!(
        db.initial_pool_sats + pool.credited_sats,
        held_sats,
        "I2 broken: initial + credits != pool + reserved + absorbed"
    );
}

/// Moves `amount` from the pool into a reservation of the identity (both rows held), and checks
/// I4 against the budget of the tier held now, when the sats are granted. A later tier decay may
/// leave earlier grants above the new budget; that is allowed, granting more is not.
fn debit(identity: &mut IdentityRow, pool: &mut PoolRow, amount_sats: u64) {
    pool.balance_sats = pool.balance_sats.checked_sub(amount_sats).expect("I1: pool never negative");
    identity.reserved_sats += amount_sats;
    assert!(
        identity.absorbed_sats + identity.reserved_sats <= identity.budget_sats,
        "I4 broken: absorbed {} + reserved {} > budget {}",
        identity.absorbed_sats,
        identity.reserved_sats,
        identity.budget_sats
    );
}

fn decide(db: &Db, trace: &Trace, who: &str, r: usize, estimated_sats: u64) -> Decision {
    let mut identity = db.identity.lock().unwrap();
    let mut pool = db.pool.lock().unwrap();
    let mut request = db.requests[r].lock().unwrap();
    if let Some(first) = *request {
        assert_eq!(first.estimated_sats, estimated_sats, "model: same estimate on repeat");
        trace.step(who, format!("decide(r{r}) repeated: {:?}", first.decision));
        return first.decision;
    }
    let remaining_sats = identity.budget_sats.saturating_sub(identity.absorbed_sats + identity.reserved_sats);
    let can_absorb_sats = remaining_sats.min(pool.balance_sats).min(estimated_sats);
    let decision = if can_absorb_sats == 0 {
        Decision::Gate
    } else if can_absorb_sats == estimated_sats {
        Decision::Free { reserved_sats: estimated_sats }
    } else {
        Decision::Partial { offer_sats: can_absorb_sats }
    };
    let mut reserved_sats = None;
    if let Decision::Free { reserved_sats: amount_sats } = decision {
        let mut reservation = db.reservations[r].lock().unwrap();
        assert_eq!(*reservation, ResState::Absent, "model: the request row said none");
        debit(&mut identity, &mut pool, amount_sats);
        *reservation = ResState::Outstanding { amount_sats };
        reserved_sats = Some(amount_sats);
    }
    *request = Some(RequestRow { estimated_sats, decision, reserved_sats });
    check_rows(db, &identity, &pool);
    trace.step(who, format!("decide(r{r}, {estimated_sats}): {decision:?}, pool now {}", pool.balance_sats));
    decision
}

/// All or nothing: `Ok(amount)` when exactly `amount` was reserved, `Err(available)` otherwise.
fn reserve_partial(db: &Db, trace: &Trace, who: &str, r: usize, amount_sats: u64) -> Result<u64, u64> {
    let mut identity = db.identity.lock().unwrap();
    let mut pool = db.pool.lock().unwrap();
    let mut request_row = db.requests[r].lock().unwrap();
    let Some(request) = request_row.as_mut() else {
        trace.step(who, format!("reserve_partial(r{r}): unknown request"));
        return Err(0);
    };
    if let Some(existing_sats) = request.reserved_sats {
        trace.step(who, format!("reserve_partial(r{r}) repeated: {existing_sats} reserved before"));
        return if existing_sats == amount_sats { Ok(amount_sats) } else { Err(0) };
    }
    let remaining_sats = identity.budget_sats.saturating_sub(identity.absorbed_sats + identity.reserved_sats);
    let available_sats = remaining_sats.min(pool.balance_sats);
    if amount_sats == 0 || amount_sats > request.estimated_sats || amount_sats > available_sats {
        trace.step(who, format!("reserve_partial(r{r}, {amount_sats}): refused, {available_sats} available"));
        return Err(available_sats);
    }
    let mut reservation = db.reservations[r].lock().unwrap();
    assert_eq!(*reservation, ResState::Absent, "model: the request row said none");
    debit(&mut identity, &mut pool, amount_sats);
    *reservation = ResState::Outstanding { amount_sats };
    request.reserved_sats = Some(amount_sats);
    check_rows(db, &identity, &pool);
    trace.step(who, format!("reserve_partial(r{r}, {amount_sats}): reserved, pool now {}", pool.balance_sats));
    Ok(amount_sats)
}

fn record(db: &Db, trace: &Trace, who: &str, r: usize, actual_sats: u64) {
    let mut reservation = db.reservations[r].lock().unwrap();
    let ResState::Outstanding { amount_sats } = *reservation else {
        trace.step(who, format!("record(r{r}, {actual_sats}): nothing outstanding ({:?})", *reservation));
        return;
    };
    let mut identity = db.identity.lock().unwrap();
    let mut pool = db.pool.lock().unwrap();
    let absorbed_sats = actual_sats.min(amount_sats);
    let returned_sats = amount_sats - absorbed_sats;
    identity.reserved_sats = identity.reserved_sats.checked_sub(amount_sats).expect("identity holds it");
    identity.absorbed_sats += absorbed_sats;
    pool.balance_sats += returned_sats;
    *reservation = ResState::Recorded { actual_sats, absorbed_sats };
    db.audit.lock().unwrap().grants.push((r, absorbed_sats));
    check_rows(db, &identity, &pool);
    trace.step(
        who,
        format!(
            "record(r{r}, {actual_sats}): absorbed {absorbed_sats}, returned {returned_sats}, pool now {}",
            pool.balance_sats
        ),
    );
}

fn release(db: &Db, trace: &Trace, who: &str, r: usize) {
    let mut reservation = db.reservations[r].lock().unwrap();
    let ResState::Outstanding { amount_sats } = *reservation else {
        trace.step(who, format!("release(r{r}): nothing outstanding ({:?})", *reservation));
        return;
    };
    let mut identity = db.identity.lock().unwrap();
    let mut pool = db.pool.lock().unwrap();
    identity.reserved_sats = identity.reserved_sats.checked_sub(amount_sats).expect("identity holds it");
    pool.balance_sats += amount_sats;
    *reservation = ResState::Released { amount_sats };
    db.audit.lock().unwrap().releases.push(r);
    check_rows(db, &identity, &pool);
    trace.step(who, format!("release(r{r}): returned {amount_sats}, pool now {}", pool.balance_sats));
}

fn credit(db: &Db, trace: &Trace, who: &str, p: usize, paid_sats: u64) {
    let mut payment = db.payments[p].lock().unwrap();
    if payment.is_some() {
        trace.step(who, format!("credit(p{p}) repeated: nothing"));
        return;
    }
    let credited_sats = paid_sats * CREDIT_BPS / 10_000;
    let mut pool = db.pool.lock().unwrap();
    pool.balance_sats += credited_sats;
    pool.credited_sats += credited_sats;
    *payment = Some(credited_sats);
    trace.step(who, format!("credit(p{p}, {paid_sats}): +{credited_sats}, pool now {}", pool.balance_sats));
}

/// Sets the identity's budget (its tier changed); I4 counts against the budget at grant time,
/// so only grants after this are held to the new budget.
fn set_budget(db: &Db, trace: &Trace, who: &str, budget_sats: u64) {
    let mut identity = db.identity.lock().unwrap();
    identity.budget_sats = budget_sats;
    trace.step(who, format!("tier change: budget now {budget_sats}"));
}

/// A job as SPEC.md §0 runs it: decide; a free answer starts work at once; a partial answer is
/// reserved on payment, and the charge is reduced only by what `reserve_partial` reserved; the
/// work then succeeds (`record`) or fails (`release`). Returns the charge reduction.
fn job(db: &Db, trace: &Trace, who: &str, r: usize, estimated_sats: u64, actual_sats: Option<u64>) -> u64 {
    let reduction_sats = match decide(db, trace, who, r, estimated_sats) {
        Decision::Free { reserved_sats } => reserved_sats,
        Decision::Partial { offer_sats } => match reserve_partial(db, trace, who, r, offer_sats) {
            Ok(reserved_sats) => reserved_sats,
            // Re-quoted: the user pays in full this time, the pool gave nothing.
            Err(_) => return 0,
        },
        Decision::Gate => return 0,
    };
    match actual_sats {
        Some(actual_sats) => record(db, trace, who, r, actual_sats),
        None => release(db, trace, who, r),
    }
    reduction_sats
}

/// The end-of-execution checks; `reductions` is what each request's client took off the charge.
fn check_end(db: &Db, reductions: &[(usize, u64)]) {
    let identity = db.identity.lock().unwrap();
    let pool = db.pool.lock().unwrap();
    assert_eq!(
        db.initial_pool_sats + pool.credited_sats,
        pool.balance_sats + identity.reserved_sats + identity.absorbed_sats,
        "I2 at the end"
    );
    let audit = db.audit.lock().unwrap();
    let granted_sats: u64 = audit.grants.iter().map(|(_, sats)| sats).sum();
    assert_eq!(granted_sats, identity.absorbed_sats, "I5: grants sum to the absorption");
    for r in 0..N_REQUESTS {
        let n_closes =
            audit.grants.iter().filter(|(g, _)| *g == r).count() + audit.releases.iter().filter(|g| **g == r).count();
        assert!(n_closes <= 1, "I5: r{r} closed {n_closes} times");
        let state = *db.reservations[r].lock().unwrap();
        assert!(!matches!(state, ResState::Outstanding { .. }), "I6: r{r} left outstanding");
        let gross_debit_sats = match state {
            ResState::Absent => 0,
            ResState::Outstanding { amount_sats } | ResState::Released { amount_sats } => amount_sats,
            ResState::Recorded { actual_sats, absorbed_sats } => {
                let request = db.requests[r].lock().unwrap().expect("recorded, so decided");
                let reserved_sats = request.reserved_sats.expect("recorded, so reserved");
                assert_eq!(absorbed_sats, actual_sats.min(reserved_sats));
                reserved_sats
            }
        };
        for (_, reduction_sats) in reductions.iter().filter(|(q, _)| *q == r) {
            assert_eq!(*reduction_sats, gross_debit_sats, "I3: r{r} charge reduction equals its debit");
        }
    }
    assert_eq!(identity.reserved_sats, 0, "I6: nothing reserved at the end");
}

type Client = Box<dyn FnOnce(&Db, &Trace) -> Vec<(usize, u64)> + Send>;

/// Runs three clients against one fresh database and checks the end state.
fn run(trace: &Trace, budget_sats: u64, initial_pool_sats: u64, clients: [Client; 3]) -> Option<String> {
    let db = Arc::new(Db::new(budget_sats, initial_pool_sats));
    let handles: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let db = Arc::clone(&db);
            let trace = trace.clone();
            thread::spawn(move || client(&db, &trace))
        })
        .collect();
    let reductions: Vec<(usize, u64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    check_end(&db, &reductions);
    None
}

/// Two jobs of one identity compete for a pool and a budget smaller than their estimates, while
/// a paid invoice's credit webhook is delivered twice.
#[test]
fn loom_reference_contention() {
    let report = explore("reference: contention", PREEMPTION_BOUND, |trace| {
        run(
            trace,
            50,
            40,
            [
                Box::new(|db, t| vec![(0, job(db, t, "job r0", 0, 30, Some(20)))]),
                Box::new(|db, t| vec![(1, job(db, t, "job r1", 1, 30, None))]),
                Box::new(|db, t| {
                    credit(db, t, "webhook", 0, 100);
                    credit(db, t, "webhook", 0, 100);
                    vec![]
                }),
            ],
        )
    });
    report.print();
    assert_eq!(report.violating_executions, 0);
}

/// At-least-once delivery: a job runs while its `record` is delivered again and a confused
/// retry releases it, and a duplicate `decide` and `reserve_partial` arrive for the same request.
#[test]
fn loom_reference_duplicates() {
    let report = explore("reference: duplicates", PREEMPTION_BOUND, |trace| {
        run(
            trace,
            50,
            40,
            [
                Box::new(|db, t| vec![(0, job(db, t, "job r0", 0, 30, Some(30)))]),
                Box::new(|db, t| {
                    record(db, t, "redelivery", 0, 30);
                    release(db, t, "redelivery", 0);
                    vec![]
                }),
                Box::new(|db, t| {
                    let _ = decide(db, t, "duplicate", 0, 30);
                    let _ = reserve_partial(db, t, "duplicate", 0, 10);
                    record(db, t, "duplicate", 0, 25);
                    vec![]
                }),
            ],
        )
    });
    report.print();
    assert_eq!(report.violating_executions, 0);
}

/// Partial offers re-checked at payment time against a pool another job drains, a credit that
/// refills it, and a tier decay that shrinks the budget mid-flight.
#[test]
fn loom_reference_partial_and_tier_change() {
    let report = explore("reference: partial + tier change", PREEMPTION_BOUND, |trace| {
        run(
            trace,
            50,
            20,
            [
                Box::new(|db, t| vec![(0, job(db, t, "job r0", 0, 30, Some(30)))]),
                Box::new(|db, t| vec![(1, job(db, t, "job r1", 1, 15, Some(10)))]),
                Box::new(|db, t| {
                    credit(db, t, "webhook", 0, 100);
                    set_budget(db, t, "trust", 20);
                    vec![]
                }),
            ],
        )
    });
    report.print();
    assert_eq!(report.violating_executions, 0);
}
