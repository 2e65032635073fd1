//! loom model of the locking protocol `ledger-pg` really runs for one command per transaction
//! (`crates/ledger-pg/sql/functions/`: the striped pool of `ledger_pool_debit`,
//! `pool_journal_move` and `ledger_pool_lock_all`, with its one-stripe fast path and its
//! lock-every-stripe slow path; a grant's insert closes the reservation `record` already holds),
//! checked over every interleaving of three client threads within the preemption bound. The
//! batch protocol (lanes, the batch lock, the exclusive rerun) is modelled in
//! `loom_pg_batches.rs`.
//!
//! Rows are `loom::sync::Mutex`es, and each SQL statement is one step that takes exactly the row
//! locks PostgreSQL would take, held to commit (READ COMMITTED, as the adapter runs):
//!
//! - `decide(r)`: the advisory lock on `r`; a plain read of request `r` (a repeat answers from
//!   it); the identity `FOR UPDATE`; then, when the daily remaining covers the estimate, the
//!   debit's fast path (below); when it does not, a plain read of the home stripe
//!   (`ledger_pool_at_least`) or, if that stripe is short of the remaining, every stripe in stripe
//!   order (`ledger_pool_lock_all`, which also evens the stripes out); the new request row and,
//!   for a free answer, the reservation become visible at commit.
//! - `reserve_partial(r)`: a plain read of request `r`, then its row `FOR UPDATE` (it serialises
//!   duplicates); a plain read of reservation `r`; `refused_reservations` (read and written under
//!   the request lock); the identity `FOR UPDATE`; then the same pool steps as `decide`.
//! - `record(r)` / `release(r)`: a plain read of reservation `r`; when there is none, a plain
//!   read of request `r` (none: `unknown_request`), then of reservation `r` again (none:
//!   `not_reserved`), each statement with a newer snapshot; then its row `FOR UPDATE`, the
//!   identity (`UPDATE`), the home stripe (the journal trigger's `UPDATE`).
//! - `credit(p)`: the payment key (the plain read and the `ON CONFLICT` wait on a concurrent
//!   insert of the same id, as one lock), then the payment's stripe (the journal trigger).
//! - The debit's fast path is `pool_journal_move`'s conditional `UPDATE .. WHERE balance_sats +
//!   amount >= 0` on the home stripe, in a subtransaction (`ledger_pool_debit`'s `BEGIN ..
//!   EXCEPTION` block, which only a shared batch skips): the statement reads the committed
//!   stripe; when that fails the condition, nothing is locked. Otherwise it takes the row lock
//!   (waiting for a holder), re-reads the latest committed version and re-checks the condition
//!   (PostgreSQL's EvalPlanQual); when the re-check fails, the row is locked although nothing
//!   was updated, and the subtransaction rolls back, which releases that lock (it was the
//!   subtransaction's). The slow path then locks every stripe in stripe order.
//!
//! Deadlocks. Every command takes identities before stripes, and stripes either one (its home,
//! holding no other) or all in stripe order, so no cycle of waits can form. Before the fast path
//! had its subtransaction, one whose re-check failed kept its home stripe `k` and then wanted
//! stripes `0..k`: with a second transaction in the slow path holding stripe 0 and waiting for
//! `k`, a cycle, which PostgreSQL broke by aborting one transaction with 40P01 after
//! `deadlock_timeout` (and `ledger_pg::reference::apply` retried it). The model keeps a
//! wait-for graph beside the loom locks: a transaction about to wait on a row checks whether
//! that closes a cycle, and if so it is the victim: it rolls back (every row it wrote gets its
//! value back), releases its locks and runs again. `loom_pg_stripes_never_deadlock` asserts
//! that loom reaches fast paths whose re-check fails while another transaction is in the slow
//! path, and that no execution has a victim. (Before the subtransaction, the same mix found the
//! deadlock in 5,639 of its 49,348 executions; now 4,075 of 56,829 reach the failed re-check
//! with the slow path waiting, and the stripe goes to the slow path.)
//!
//! The checks, in every execution: I1 (no stripe below zero, at every commit and at the end); I2
//! (initial + credits = sum of stripes + reserved + absorbed; each stripe equals the sum of its
//! journal; stripes, identities and outstanding reservations agree on what is reserved); I3 (a
//! charge is reduced by exactly what the journal debited for that request); I4 (absorbed +
//! reserved within the identity's budget at every commit that reserves); I5 (grants sum to the
//! absorption, at most one close per request, and each close journalled once); I6 (nothing left
//! outstanding). And the answers: some serial order of the committed commands, each thread's in
//! program order, gives every answer and the end balances when replayed on
//! `ledger_core::Ledger` (the commit order is tried first; it almost always is that order).
//! `loom_pg_record_racing_its_decide_answers_serially` asserts that loom reaches a `record`
//! whose first look finds no reservation and whose look at the request finds it, its `decide`
//! having committed in between, and that every answer has a serial order. (When `ledger_record`
//! answered `not_reserved` there, without the second look at the reservation, 4,594 of the
//! mix's 20,461 executions had no serial order.)
//!
//! Differences from the SQL, on purpose: 2 stripes instead of 16; one clock instant, so no window
//! resets and no expiry; no `set_tier`; the overflow guards (plain sums of the stripes in
//! `credit` and `record`, locking every stripe only near 2^61) are left out, since no amount here
//! comes near them; the deadlock victim is always the transaction that closes the cycle (in
//! PostgreSQL it is whichever waiter's `deadlock_timeout` runs the check first; either way the
//! victim rolls back completely and is retried).
//!
//! Preemption bound: 3 for every mix: 20k-60k executions each, about 11-18 s for the three
//! mixes in release mode on 2 cores. Bound 2 (2k-5k executions, 2 s) already reaches the failed
//! re-check that releases its stripe to a waiting slow path and the record's second look, which
//! each need one preemption; 3 lets a third thread cut in as well. Each extra preemption
//! multiplies the executions by about ten, so 4 would go past this suite's share of its time
//! budget.
#![cfg(ledger_loom)]

mod loom_support;

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;

use ledger_core::{
    Bps, Budgets, Command, Config, Decision, GateReason, Ledger, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats,
    Tier, TimeMs,
};
use loom::sync::atomic::{AtomicBool, AtomicI64};
use loom::sync::{Arc, Mutex, MutexGuard};
use loom::thread;
use loom_support::{explore, Report, Trace};

/// Preemption bound of every mix in this file; see the module docs.
const PREEMPTION_BOUND: usize = 3;
const N_STRIPES: usize = 2;
const N_REQUESTS: usize = 4;
const N_IDENTITIES: usize = 3;
const N_PAYMENTS: usize = 1;
const N_THREADS: usize = 3;
/// How many times a command is run again after a deadlock before the model gives up.
const MAX_ATTEMPTS: usize = 4;
const NOW: TimeMs = TimeMs(1_000);

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn config(pool_initial_sats: u64) -> Config {
    Config {
        budget_sats: Budgets { new: Sats::ZERO, established: sats(20), trusted: sats(50), elite: sats(100) },
        pool_initial_sats: sats(pool_initial_sats),
        credit_bps: Bps::new(1_000).unwrap(),
        reservation_ttl_ms: 600_000,
    }
}

// ── rows ──────────────────────────────────────────────────────────────────────────────────

/// A lockable row, for the wait-for graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Row {
    Advisory(usize),
    Request(usize),
    Reservation(usize),
    Identity(usize),
    Stripe(usize),
    Payment(usize),
}

#[derive(Clone, Debug)]
struct IdentityRow {
    budget: u64,
    absorbed: u64,
    reserved: u64,
}

/// What a journal row is for; `pool_journal.kind` with its request or payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Genesis,
    Debit(usize),
    Release(usize),
    Record(usize),
    Credit(usize),
    Rebalance,
}

#[derive(Clone, Debug, Default)]
struct StripeRow {
    balance: i64,
    reserved: i64,
    absorbed: i64,
    credited: i64,
    n_grants: i64,
    journal: Vec<(Kind, i64)>,
}

impl StripeRow {
    /// A journal row and the stripe update its trigger makes.
    fn journal(&mut self, kind: Kind, amount: i64, d_reserved: i64) {
        self.balance += amount;
        self.reserved += d_reserved;
        self.journal.push((kind, amount));
    }
}

/// The immutable part of a request row.
#[derive(Clone, Copy, Debug)]
struct RequestHead {
    identity: usize,
    estimated: u64,
    decision: Decision,
}

/// The immutable part of a reservation row.
#[derive(Clone, Copy, Debug)]
struct ResHead {
    identity: usize,
    amount: u64,
    by_decide: bool,
    stripe: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResState {
    Reserved,
    Recorded { actual: u64, absorbed: u64, returned: u64, overrun: u64 },
    Released,
}

/// An immutable row that becomes visible at its inserter's commit. The data is `std` (loom need
/// not see it: it is written once, before the flag, and read only after the flag); the flag is
/// loom's, so loom orders every plain read against the commit.
struct Inserted<T> {
    visible: AtomicBool,
    data: std::sync::Mutex<Option<T>>,
}

impl<T: Copy> Inserted<T> {
    fn new() -> Self {
        Inserted { visible: AtomicBool::new(false), data: std::sync::Mutex::new(None) }
    }

    /// A plain `SELECT`: the committed row, if any.
    fn read(&self) -> Option<T> {
        if self.visible.load(SeqCst) {
            *self.data.lock().unwrap()
        } else {
            None
        }
    }

    fn publish(&self, row: T) {
        *self.data.lock().unwrap() = Some(row);
        self.visible.store(true, SeqCst);
    }
}

/// Who holds and who waits: the wait-for graph PostgreSQL's deadlock detector walks. `std`: it
/// is updated right beside the loom lock operations it mirrors, with no loom operation between.
#[derive(Default)]
struct LockTable {
    holder: HashMap<Row, usize>,
    waiting: [Option<Row>; N_THREADS],
}

/// One committed command, for the serial replay.
#[derive(Clone, Debug)]
struct Committed {
    thread: usize,
    command: Command,
    result: Result<Outcome, Refusal>,
}

struct Db {
    config: Config,
    advisory: Vec<Mutex<()>>,
    request_head: Vec<Inserted<RequestHead>>,
    /// The request row's lock; it guards the request's `refused_reservations` rows.
    request_lock: Vec<Mutex<Vec<(u64, u64)>>>,
    res_head: Vec<Inserted<ResHead>>,
    res_state: Vec<Mutex<ResState>>,
    identities: Vec<Mutex<IdentityRow>>,
    stripes: Vec<Mutex<StripeRow>>,
    /// Each stripe's committed balance, for plain reads.
    stripe_committed: Vec<AtomicI64>,
    payments: Vec<Mutex<Option<(u64, u64)>>>,
    locks: std::sync::Mutex<LockTable>,
    log: std::sync::Mutex<Vec<Committed>>,
    violations: std::sync::Mutex<Vec<String>>,
    deadlocks: std::sync::Mutex<u64>,
    /// Fast paths whose re-check failed after a wait (their subtransaction rolled back).
    failed_rechecks: std::sync::atomic::AtomicU64,
    /// Of those, the ones that released the stripe to a transaction in the slow path, which
    /// held a lower stripe and waited for this one: the cycle, had the stripe been kept.
    released_to_slow_path: std::sync::atomic::AtomicU64,
    /// `record`s and `release`s that found no reservation, then the request, then the
    /// reservation after all (its decide committed between their statements).
    reservations_found_again: std::sync::atomic::AtomicU64,
}

impl Db {
    fn new(config: Config, budgets: [u64; N_IDENTITIES]) -> Db {
        let initial = config.pool_initial_sats.to_u64() as i64;
        let n = N_STRIPES as i64;
        let genesis = |s: usize| initial / n + i64::from((s as i64) < initial % n);
        Db {
            config,
            advisory: (0..N_REQUESTS).map(|_| Mutex::new(())).collect(),
            request_head: (0..N_REQUESTS).map(|_| Inserted::new()).collect(),
            request_lock: (0..N_REQUESTS).map(|_| Mutex::new(Vec::new())).collect(),
            res_head: (0..N_REQUESTS).map(|_| Inserted::new()).collect(),
            res_state: (0..N_REQUESTS).map(|_| Mutex::new(ResState::Reserved)).collect(),
            identities: budgets
                .iter()
                .map(|&budget| Mutex::new(IdentityRow { budget, absorbed: 0, reserved: 0 }))
                .collect(),
            stripes: (0..N_STRIPES)
                .map(|s| {
                    let mut row = StripeRow::default();
                    row.journal(Kind::Genesis, genesis(s), 0);
                    Mutex::new(row)
                })
                .collect(),
            stripe_committed: (0..N_STRIPES).map(|s| AtomicI64::new(genesis(s))).collect(),
            payments: (0..N_PAYMENTS).map(|_| Mutex::new(None)).collect(),
            locks: std::sync::Mutex::default(),
            log: std::sync::Mutex::default(),
            violations: std::sync::Mutex::default(),
            deadlocks: std::sync::Mutex::default(),
            failed_rechecks: std::sync::atomic::AtomicU64::new(0),
            released_to_slow_path: std::sync::atomic::AtomicU64::new(0),
            reservations_found_again: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

// ── transactions ──────────────────────────────────────────────────────────────────────────

/// PostgreSQL found a cycle and chose this transaction (40P01): waiting for the row, held by
/// the thread, would have closed it.
struct Deadlock(Row, usize);

/// A row this transaction locked, and its value before, for a rollback.
struct Held<'a, T> {
    idx: usize,
    guard: MutexGuard<'a, T>,
    before: T,
}

struct Tx<'a> {
    db: &'a Db,
    me: usize,
    who: &'a str,
    trace: &'a Trace,
    advisory: Vec<(usize, MutexGuard<'a, ()>)>,
    requests: Vec<Held<'a, Vec<(u64, u64)>>>,
    reservations: Vec<Held<'a, ResState>>,
    identities: Vec<Held<'a, IdentityRow>>,
    stripes: Vec<Held<'a, StripeRow>>,
    payments: Vec<Held<'a, Option<(u64, u64)>>>,
    new_request: Option<(usize, RequestHead)>,
    new_reservation: Option<(usize, ResHead)>,
}

/// Takes `row`'s lock for thread `me`, unless waiting for it would close a cycle of waits.
fn acquire<'a, T: Clone>(db: &Db, me: usize, row: Row, m: &'a Mutex<T>) -> Result<Held<'a, T>, Deadlock> {
    {
        let mut table = db.locks.lock().unwrap();
        let mut next = table.holder.get(&row).copied();
        let mut hops = 0;
        while let Some(t) = next {
            if t == me {
                let holder = table.holder[&row];
                return Err(Deadlock(row, holder));
            }
            hops += 1;
            assert!(hops <= N_THREADS, "model: wait-for walk loops without this thread");
            next = table.waiting[t].and_then(|w| table.holder.get(&w).copied());
        }
        table.waiting[me] = Some(row);
    }
    let guard = m.lock().unwrap();
    {
        let mut table = db.locks.lock().unwrap();
        table.waiting[me] = None;
        let previous = table.holder.insert(row, me);
        assert!(previous.is_none(), "model: {row:?} held twice");
    }
    let before = (*guard).clone();
    let idx = match row {
        Row::Advisory(i) | Row::Request(i) | Row::Reservation(i) | Row::Identity(i) | Row::Stripe(i) => i,
        Row::Payment(i) => i,
    };
    Ok(Held { idx, guard, before })
}

impl<'a> Tx<'a> {
    fn new(db: &'a Db, me: usize, who: &'a str, trace: &'a Trace) -> Tx<'a> {
        Tx {
            db,
            me,
            who,
            trace,
            advisory: Vec::new(),
            requests: Vec::new(),
            reservations: Vec::new(),
            identities: Vec::new(),
            stripes: Vec::new(),
            payments: Vec::new(),
            new_request: None,
            new_reservation: None,
        }
    }

    fn step(&self, what: impl AsRef<str>) {
        self.trace.step(self.who, what);
    }

    fn advisory_lock(&mut self, r: usize) -> Result<(), Deadlock> {
        if !self.advisory.iter().any(|(i, _)| *i == r) {
            let held = acquire(self.db, self.me, Row::Advisory(r), &self.db.advisory[r])?;
            self.advisory.push((r, held.guard));
        }
        Ok(())
    }

    fn request(&mut self, r: usize) -> Result<&mut Vec<(u64, u64)>, Deadlock> {
        let db = self.db;
        let at = match self.requests.iter().position(|h| h.idx == r) {
            Some(at) => at,
            None => {
                self.requests.push(acquire(db, self.me, Row::Request(r), &db.request_lock[r])?);
                self.requests.len() - 1
            }
        };
        Ok(&mut self.requests[at].guard)
    }

    fn reservation(&mut self, r: usize) -> Result<&mut ResState, Deadlock> {
        let db = self.db;
        let at = match self.reservations.iter().position(|h| h.idx == r) {
            Some(at) => at,
            None => {
                self.reservations.push(acquire(db, self.me, Row::Reservation(r), &db.res_state[r])?);
                self.reservations.len() - 1
            }
        };
        Ok(&mut self.reservations[at].guard)
    }

    fn identity(&mut self, i: usize) -> Result<&mut IdentityRow, Deadlock> {
        let db = self.db;
        let at = match self.identities.iter().position(|h| h.idx == i) {
            Some(at) => at,
            None => {
                self.identities.push(acquire(db, self.me, Row::Identity(i), &db.identities[i])?);
                self.identities.len() - 1
            }
        };
        Ok(&mut self.identities[at].guard)
    }

    fn holds_stripe(&self, s: usize) -> bool {
        self.stripes.iter().any(|h| h.idx == s)
    }

    fn stripe(&mut self, s: usize) -> Result<&mut StripeRow, Deadlock> {
        let db = self.db;
        let at = match self.stripes.iter().position(|h| h.idx == s) {
            Some(at) => at,
            None => {
                self.stripes.push(acquire(db, self.me, Row::Stripe(s), &db.stripes[s])?);
                self.stripes.len() - 1
            }
        };
        Ok(&mut self.stripes[at].guard)
    }

    /// The debit's fast path rolls its subtransaction back: the stripe's lock, taken by a re-check
    /// that failed (nothing was written under it), is released, and a waiter may take it.
    /// Returns the transaction it releases it to when that one waits for it holding another
    /// stripe (in the slow path).
    fn release_stripe(&mut self, s: usize) -> Option<usize> {
        let at = self.stripes.iter().position(|h| h.idx == s).expect("model: releasing a stripe not held");
        let held = self.stripes.remove(at);
        assert_eq!(
            held.guard.journal.len(),
            held.before.journal.len(),
            "model: stripe {s} written in the subtransaction"
        );
        let slow_path_waiter = {
            let mut table = self.db.locks.lock().unwrap();
            table.holder.remove(&Row::Stripe(s));
            (0..N_THREADS).find(|&t| {
                table.waiting[t] == Some(Row::Stripe(s))
                    && table.holder.iter().any(|(row, &h)| h == t && matches!(row, Row::Stripe(_)))
            })
        };
        drop(held);
        slow_path_waiter
    }

    fn payment(&mut self, p: usize) -> Result<&mut Option<(u64, u64)>, Deadlock> {
        let db = self.db;
        let at = match self.payments.iter().position(|h| h.idx == p) {
            Some(at) => at,
            None => {
                self.payments.push(acquire(db, self.me, Row::Payment(p), &db.payments[p])?);
                self.payments.len() - 1
            }
        };
        Ok(&mut self.payments[at].guard)
    }

    /// Every row lock this transaction holds, to forget in the lock table.
    fn held_rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self.advisory.iter().map(|(i, _)| Row::Advisory(*i)).collect();
        rows.extend(self.requests.iter().map(|h| Row::Request(h.idx)));
        rows.extend(self.reservations.iter().map(|h| Row::Reservation(h.idx)));
        rows.extend(self.identities.iter().map(|h| Row::Identity(h.idx)));
        rows.extend(self.stripes.iter().map(|h| Row::Stripe(h.idx)));
        rows.extend(self.payments.iter().map(|h| Row::Payment(h.idx)));
        rows
    }

    fn release_locks(self) {
        let rows = self.held_rows();
        {
            let mut table = self.db.locks.lock().unwrap();
            for row in rows {
                table.holder.remove(&row);
            }
        }
        // Dropping the guards releases the loom locks: waiters may run from here.
        drop(self);
    }

    /// 40P01: every row this transaction wrote gets its value back; nothing becomes visible.
    fn rollback(mut self) {
        fn restore<T: Clone>(held: &mut [Held<'_, T>]) {
            for h in held {
                *h.guard = h.before.clone();
            }
        }
        restore(&mut self.requests);
        restore(&mut self.reservations);
        restore(&mut self.identities);
        restore(&mut self.stripes);
        restore(&mut self.payments);
        self.release_locks();
    }

    /// Makes the inserted rows and the stripes' balances visible, checks the rows it holds, logs
    /// the answer, then releases every lock.
    fn commit(self, command: &Command, result: &Result<Outcome, Refusal>) {
        let db = self.db;
        if let Some((r, head)) = self.new_reservation {
            db.res_head[r].publish(head);
        }
        if let Some((r, head)) = self.new_request {
            db.request_head[r].publish(head);
        }
        for h in &self.stripes {
            let s = &h.guard;
            if s.balance < 0 {
                db.violation(format!("I1: stripe {} at {}", h.idx, s.balance));
            }
            let journal: i64 = s.journal.iter().map(|(_, a)| a).sum();
            if journal != s.balance {
                db.violation(format!("I2: stripe {} holds {} but its journal sums to {journal}", h.idx, s.balance));
            }
            if s.balance != h.before.balance {
                db.stripe_committed[h.idx].store(s.balance, SeqCst);
            }
        }
        for h in &self.identities {
            let i = &h.guard;
            if i.reserved > h.before.reserved && i.absorbed + i.reserved > i.budget {
                db.violation(format!(
                    "I4: identity {} absorbed {} + reserved {} > budget {}",
                    h.idx, i.absorbed, i.reserved, i.budget
                ));
            }
        }
        self.step(format!("{command:?} -> {result:?}"));
        db.log.lock().unwrap().push(Committed { thread: self.me, command: command.clone(), result: result.clone() });
        self.release_locks();
    }
}

// ── the pool helpers (sql/functions/ledger_pool_*.sql) ───────────────────────────────────

/// `ledger_pool_lock_all`: every stripe in stripe order, the exact total, and the stripes evened
/// out (journalled as `rebalance`).
fn lock_all(tx: &mut Tx<'_>) -> Result<i64, Deadlock> {
    let mut total = 0;
    for s in 0..N_STRIPES {
        total += tx.stripe(s)?.balance;
    }
    let n = N_STRIPES as i64;
    for s in 0..N_STRIPES {
        let target = total / n + i64::from((s as i64) < total % n);
        let stripe = tx.stripe(s)?;
        if target != stripe.balance {
            let amount = target - stripe.balance;
            stripe.journal(Kind::Rebalance, amount, 0);
        }
    }
    tx.step(format!("lock_all: every stripe locked, pool {total}, evened out"));
    Ok(total)
}

/// `ledger_pool_at_least`: a plain read of the home stripe's committed balance.
fn pool_at_least(tx: &mut Tx<'_>, home: usize, amount: u64) -> bool {
    let balance = if tx.holds_stripe(home) {
        tx.stripes.iter().find(|h| h.idx == home).unwrap().guard.balance
    } else {
        tx.db.stripe_committed[home].load(SeqCst)
    };
    tx.step(format!("pool_at_least(stripe {home}, {amount}): stripe holds {balance}"));
    balance >= amount as i64
}

/// `ledger_pool_debit`: `Ok(())` when exactly `amount` was debited for request `r` (the
/// reservation is booked on `home`), `Err(total)` with the exact pool balance otherwise.
fn pool_debit(tx: &mut Tx<'_>, home: usize, r: usize, amount: u64) -> Result<Result<(), i64>, Deadlock> {
    let amount = amount as i64;
    // The fast path, in a subtransaction: the journal row's BEFORE INSERT trigger, a conditional
    // UPDATE of the home stripe. It reads the committed row; a row that fails the condition is
    // not locked.
    let held_before = tx.holds_stripe(home);
    let snapshot = if held_before { tx.stripe(home)?.balance } else { tx.db.stripe_committed[home].load(SeqCst) };
    if snapshot >= amount {
        let stripe = tx.stripe(home)?;
        if stripe.balance >= amount {
            stripe.journal(Kind::Debit(r), -amount, amount);
            tx.step(format!("debit r{r} {amount} on stripe {home} (fast path)"));
            return Ok(Ok(()));
        }
        // EvalPlanQual: re-checked on the version a concurrent commit left, it fails, with the
        // row locked although nothing was updated. The subtransaction rolls back (`RAISE ..
        // LDB02`, caught): the lock was its own, and is released.
        let balance = stripe.balance;
        tx.db.failed_rechecks.fetch_add(1, SeqCst);
        let to = match if held_before { None } else { tx.release_stripe(home) } {
            Some(t) => {
                tx.db.released_to_slow_path.fetch_add(1, SeqCst);
                format!(" to thread {t}, which waits for it holding another stripe")
            }
            None => String::new(),
        };
        tx.step(format!(
            "fast path r{r}: stripe {home} fell to {balance} while waiting; the subtransaction rolls back, \
             releasing it{to}"
        ));
    } else {
        tx.step(format!("fast path r{r}: stripe {home} holds {snapshot} < {amount}, nothing locked"));
    }
    let total = lock_all(tx)?;
    if total < amount {
        return Ok(Err(total));
    }
    let mut left = amount;
    let order = std::iter::once(home).chain((0..N_STRIPES).filter(|s| *s != home));
    for s in order {
        let stripe = tx.stripe(s)?;
        let take = stripe.balance.min(left);
        if take > 0 || s == home {
            let d_reserved = if s == home { amount } else { 0 };
            stripe.journal(Kind::Debit(r), -take, d_reserved);
        }
        left -= take;
        if left == 0 {
            break;
        }
    }
    tx.step(format!("debit r{r} {amount} spread over the stripes (slow path)"));
    Ok(Ok(()))
}

// ── the functions ─────────────────────────────────────────────────────────────────────────

fn remaining(identity: &IdentityRow) -> u64 {
    identity.budget.saturating_sub(identity.absorbed + identity.reserved)
}

fn decide(tx: &mut Tx<'_>, r: usize, i: usize, estimated: u64) -> Result<Result<Outcome, Refusal>, Deadlock> {
    let home = r % N_STRIPES;
    tx.advisory_lock(r)?;
    if let Some(req) = tx.db.request_head[r].read() {
        if req.identity != i {
            return Ok(Err(Refusal::ExistsWithDifferentPubkey));
        }
        if req.estimated != estimated {
            return Ok(Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: sats(req.estimated) }));
        }
        return Ok(Ok(Outcome::Decided { decision: req.decision }));
    }
    let gate = |reason| Decision::Gate { reason, charge_sats: sats(estimated) };
    let identity = tx.identity(i)?;
    let left = remaining(identity);
    let mut pool = None;
    let mut decision = None;
    if estimated == 0 {
        decision = Some(gate(GateReason::ZeroEstimate));
    } else if identity.budget == 0 {
        decision = Some(gate(GateReason::ZeroBudget));
    } else if left == 0 {
        decision = Some(gate(GateReason::DailyBudgetExhausted));
    } else if left >= estimated {
        match pool_debit(tx, home, r, estimated)? {
            Ok(()) => decision = Some(Decision::Free { reserved_sats: sats(estimated) }),
            Err(total) => pool = Some(total as u64),
        }
    } else if pool_at_least(tx, home, left) {
        pool = Some(left);
    } else {
        pool = Some(lock_all(tx)? as u64);
    }
    let decision = decision.unwrap_or_else(|| {
        let pool = pool.expect("the pool was read");
        if pool == 0 {
            gate(GateReason::PoolEmpty)
        } else {
            let offer = left.min(pool).min(estimated);
            Decision::Partial { offer_sats: sats(offer), charge_sats: sats(estimated - offer) }
        }
    });
    tx.new_request = Some((r, RequestHead { identity: i, estimated, decision }));
    if let Decision::Free { .. } = decision {
        tx.new_reservation = Some((r, ResHead { identity: i, amount: estimated, by_decide: true, stripe: home }));
        tx.identity(i)?.reserved += estimated;
    }
    Ok(Ok(Outcome::Decided { decision }))
}

fn reserve_partial(tx: &mut Tx<'_>, r: usize, i: usize, amount: u64) -> Result<Result<Outcome, Refusal>, Deadlock> {
    let home = r % N_STRIPES;
    let Some(req) = tx.db.request_head[r].read() else {
        return Ok(Err(Refusal::UnknownRequest));
    };
    tx.request(r)?;
    if req.identity != i {
        return Ok(Err(Refusal::ExistsWithDifferentPubkey));
    }
    if let Some(res) = tx.db.res_head[r].read() {
        return Ok(if !res.by_decide && res.amount == amount {
            Ok(Outcome::Reserved { reserved_sats: sats(amount) })
        } else {
            Err(Refusal::ReservationExists { reserved_sats: sats(res.amount) })
        });
    }
    if amount == 0 {
        return Ok(Err(Refusal::ZeroAmount));
    }
    if amount > req.estimated {
        return Ok(Err(Refusal::AmountAboveEstimate { estimated_sats: sats(req.estimated) }));
    }
    if let Some(&(_, available)) = tx.request(r)?.iter().find(|(a, _)| *a == amount) {
        return Ok(Err(Refusal::InsufficientFunds { available_sats: sats(available) }));
    }
    let left = remaining(tx.identity(i)?);
    let pool = if amount <= left {
        pool_debit(tx, home, r, amount)?.err().map(|total| total as u64)
    } else if pool_at_least(tx, home, left) {
        Some(left)
    } else {
        Some(lock_all(tx)? as u64)
    };
    if let Some(pool) = pool {
        let available = left.min(pool);
        tx.request(r)?.push((amount, available));
        return Ok(Err(Refusal::InsufficientFunds { available_sats: sats(available) }));
    }
    tx.new_reservation = Some((r, ResHead { identity: i, amount, by_decide: false, stripe: home }));
    tx.identity(i)?.reserved += amount;
    Ok(Ok(Outcome::Reserved { reserved_sats: sats(amount) }))
}

/// The reservation of `r`, found by a plain read, then locked `FOR UPDATE`. When there is none,
/// the request, then the reservation again: each a statement of its own, with a newer snapshot.
fn find_reservation(tx: &mut Tx<'_>, r: usize) -> Result<Result<(ResHead, ResState), Refusal>, Deadlock> {
    let head = match tx.db.res_head[r].read() {
        Some(head) => head,
        None => {
            tx.step(format!("reservation r{r}: no committed row"));
            if tx.db.request_head[r].read().is_none() {
                tx.step(format!("request r{r}: no committed row"));
                return Ok(Err(Refusal::UnknownRequest));
            }
            tx.step(format!("request r{r}: committed; the reservation again"));
            let Some(head) = tx.db.res_head[r].read() else {
                tx.step(format!("reservation r{r}: still no committed row"));
                return Ok(Err(Refusal::NotReserved));
            };
            tx.db.reservations_found_again.fetch_add(1, SeqCst);
            tx.step(format!("reservation r{r}: committed now"));
            head
        }
    };
    let state = *tx.reservation(r)?;
    Ok(Ok((head, state)))
}

fn release(tx: &mut Tx<'_>, r: usize) -> Result<Result<Outcome, Refusal>, Deadlock> {
    let (head, state) = match find_reservation(tx, r)? {
        Ok(found) => found,
        Err(refusal) => return Ok(Err(refusal)),
    };
    match state {
        ResState::Released => return Ok(Ok(Outcome::Released { returned_sats: sats(head.amount) })),
        ResState::Recorded { .. } => return Ok(Err(Refusal::AlreadyRecorded)),
        ResState::Reserved => {}
    }
    tx.identity(head.identity)?.reserved -= head.amount;
    *tx.reservation(r)? = ResState::Released;
    let amount = head.amount as i64;
    tx.stripe(head.stripe)?.journal(Kind::Release(r), amount, -amount);
    Ok(Ok(Outcome::Released { returned_sats: sats(head.amount) }))
}

fn record(tx: &mut Tx<'_>, r: usize, actual: u64) -> Result<Result<Outcome, Refusal>, Deadlock> {
    let (head, state) = match find_reservation(tx, r)? {
        Ok(found) => found,
        Err(refusal) => return Ok(Err(refusal)),
    };
    match state {
        ResState::Recorded { actual: first, absorbed, returned, overrun } => {
            return Ok(if first == actual {
                Ok(Outcome::Recorded {
                    absorbed_sats: sats(absorbed),
                    returned_sats: sats(returned),
                    overrun_sats: sats(overrun),
                })
            } else {
                Err(Refusal::RecordedWithDifferentAmount { actual_sats: sats(first) })
            });
        }
        ResState::Released => return Ok(Err(Refusal::AlreadyReleased)),
        ResState::Reserved => {}
    }
    let absorbed = actual.min(head.amount);
    let returned = head.amount - absorbed;
    let overrun = actual - absorbed;
    let identity = tx.identity(head.identity)?;
    identity.reserved -= head.amount;
    identity.absorbed += absorbed;
    *tx.reservation(r)? = ResState::Recorded { actual, absorbed, returned, overrun };
    let stripe = tx.stripe(head.stripe)?;
    stripe.journal(Kind::Record(r), returned as i64, -(head.amount as i64));
    stripe.absorbed += absorbed as i64;
    stripe.n_grants += 1;
    Ok(Ok(Outcome::Recorded {
        absorbed_sats: sats(absorbed),
        returned_sats: sats(returned),
        overrun_sats: sats(overrun),
    }))
}

fn credit(tx: &mut Tx<'_>, p: usize, paid: u64) -> Result<Result<Outcome, Refusal>, Deadlock> {
    let bps = u64::from(tx.db.config.credit_bps.to_u16());
    let payment = tx.payment(p)?;
    if let Some((first_paid, credited)) = *payment {
        return Ok(if first_paid == paid {
            Ok(Outcome::Credited { credited_sats: sats(credited) })
        } else {
            Err(Refusal::PaymentWithDifferentAmount { paid_sats: sats(first_paid) })
        });
    }
    let credited = (paid / 10_000) * bps + (paid % 10_000) * bps / 10_000;
    *payment = Some((paid, credited));
    let stripe = tx.stripe(p % N_STRIPES)?;
    stripe.journal(Kind::Credit(p), credited as i64, 0);
    stripe.credited += credited as i64;
    Ok(Ok(Outcome::Credited { credited_sats: sats(credited) }))
}

fn identity_of(pubkey: &Pubkey) -> usize {
    ledger_harness::user_of(pubkey).expect("a model pubkey") as usize
}

/// One command as the adapter runs it: one transaction, run again after a deadlock.
fn run_command(db: &Db, trace: &Trace, me: usize, who: &str, command: Command) -> Result<Outcome, Refusal> {
    for _attempt in 0..MAX_ATTEMPTS {
        let mut tx = Tx::new(db, me, who, trace);
        let done = match command {
            Command::Decide { request_id, pubkey, estimated_sats } => {
                decide(&mut tx, request_id.0 as usize, identity_of(&pubkey), estimated_sats.to_u64())
            }
            Command::ReservePartial { request_id, pubkey, amount_sats } => {
                reserve_partial(&mut tx, request_id.0 as usize, identity_of(&pubkey), amount_sats.to_u64())
            }
            Command::Release { request_id } => release(&mut tx, request_id.0 as usize),
            Command::Record { request_id, actual_sats } => record(&mut tx, request_id.0 as usize, actual_sats.to_u64()),
            Command::Credit { payment_id, paid_sats } => credit(&mut tx, payment_id.0 as usize, paid_sats.to_u64()),
            Command::SetTier { .. } | Command::Expire => unreachable!("not modelled"),
        };
        match done {
            Ok(result) => {
                tx.commit(&command, &result);
                return result;
            }
            Err(Deadlock(row, holder)) => {
                tx.step(format!(
                    "{command:?}: waiting for {row:?}, held by thread {holder}, closes a cycle: deadlock (40P01), \
                     rolled back; the adapter retries"
                ));
                tx.rollback();
                *db.deadlocks.lock().unwrap() += 1;
                // The client gets 40P01 and sends the statement again: the transactions it
                // waited for, queued on its rows before it asks again, go first.
                thread::yield_now();
            }
        }
    }
    db.violation(format!("{who}: {command:?} deadlocked {MAX_ATTEMPTS} times"));
    Err(Refusal::Overflow)
}

// ── clients ───────────────────────────────────────────────────────────────────────────────

/// A thread's handle on the database: its index in the wait-for graph and its name.
struct Client<'a> {
    db: &'a Db,
    trace: &'a Trace,
    me: usize,
    who: &'static str,
}

impl Client<'_> {
    fn run(&self, command: Command) -> Result<Outcome, Refusal> {
        run_command(self.db, self.trace, self.me, self.who, command)
    }

    fn decide(&self, r: u64, i: u64, estimated: u64) -> Result<Outcome, Refusal> {
        self.run(Command::Decide {
            request_id: RequestId(r),
            pubkey: ledger_harness::user_pubkey(i),
            estimated_sats: sats(estimated),
        })
    }

    fn reserve_partial(&self, r: u64, i: u64, amount: u64) -> Result<Outcome, Refusal> {
        self.run(Command::ReservePartial {
            request_id: RequestId(r),
            pubkey: ledger_harness::user_pubkey(i),
            amount_sats: sats(amount),
        })
    }

    fn record(&self, r: u64, actual: u64) -> Result<Outcome, Refusal> {
        self.run(Command::Record { request_id: RequestId(r), actual_sats: sats(actual) })
    }

    fn release(&self, r: u64) -> Result<Outcome, Refusal> {
        self.run(Command::Release { request_id: RequestId(r) })
    }

    fn credit(&self, p: u64, paid: u64) -> Result<Outcome, Refusal> {
        self.run(Command::Credit { payment_id: PaymentId(p), paid_sats: sats(paid) })
    }

    /// A job as SPEC.md §0 runs it: decide; a partial offer is reserved on payment; the work then
    /// succeeds (`record`) or fails (`release`). Returns the request and its charge reduction.
    fn job(&self, r: u64, i: u64, estimated: u64, actual: Option<u64>) -> (usize, u64) {
        let reduction = match self.decide(r, i, estimated) {
            Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }) => reserved_sats.to_u64(),
            Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, .. } }) => {
                match self.reserve_partial(r, i, offer_sats.to_u64()) {
                    Ok(Outcome::Reserved { reserved_sats }) => reserved_sats.to_u64(),
                    // Re-quoted: the user pays in full this time.
                    _ => return (r as usize, 0),
                }
            }
            _ => return (r as usize, 0),
        };
        let _ = match actual {
            Some(actual) => self.record(r, actual),
            None => self.release(r),
        };
        (r as usize, reduction)
    }
}

type ClientFn = Box<dyn Fn(&Client<'_>) -> Vec<(usize, u64)> + Send + Sync>;

/// A mix: three clients, the identities' tiers and the pool at genesis.
struct Mix {
    name: &'static str,
    pool_initial_sats: u64,
    tiers: [Tier; N_IDENTITIES],
    clients: [(&'static str, ClientFn); N_THREADS],
}

// ── the checks ────────────────────────────────────────────────────────────────────────────

/// I1-I6 on the end state; `reductions` is what each client took off a request's charge.
fn check_end(db: &Db, reductions: &[(usize, u64)]) -> Vec<String> {
    let mut bad = Vec::new();
    let stripes: Vec<StripeRow> = db.stripes.iter().map(|s| s.lock().unwrap().clone()).collect();
    let identities: Vec<IdentityRow> = db.identities.iter().map(|i| i.lock().unwrap().clone()).collect();
    let res: Vec<(Option<ResHead>, ResState)> =
        (0..N_REQUESTS).map(|r| (db.res_head[r].read(), *db.res_state[r].lock().unwrap())).collect();
    let sum = |f: fn(&StripeRow) -> i64| stripes.iter().map(f).sum::<i64>();
    let (pool, reserved, absorbed, credited) =
        (sum(|s| s.balance), sum(|s| s.reserved), sum(|s| s.absorbed), sum(|s| s.credited));
    for (s, stripe) in stripes.iter().enumerate() {
        if stripe.balance < 0 || stripe.reserved < 0 {
            bad.push(format!("I1: stripe {s} balance {} reserved {}", stripe.balance, stripe.reserved));
        }
        let journal: i64 = stripe.journal.iter().map(|(_, a)| a).sum();
        if journal != stripe.balance {
            bad.push(format!("I2: stripe {s} holds {} but its journal sums to {journal}", stripe.balance));
        }
    }
    let initial = db.config.pool_initial_sats.to_u64() as i64;
    if initial + credited != pool + reserved + absorbed {
        bad.push(format!(
            "I2: initial {initial} + credits {credited} != stripes {pool} + reserved {reserved} + absorbed {absorbed}"
        ));
    }
    let outstanding: u64 =
        res.iter().filter(|(h, s)| h.is_some() && *s == ResState::Reserved).map(|(h, _)| h.unwrap().amount).sum();
    let identity_reserved: u64 = identities.iter().map(|i| i.reserved).sum();
    if outstanding as i64 != reserved || identity_reserved as i64 != reserved {
        bad.push(format!(
            "I2: reserved: stripes {reserved}, identities {identity_reserved}, reservations {outstanding}"
        ));
    }
    let grants: Vec<u64> = res
        .iter()
        .filter_map(|(_, s)| match s {
            ResState::Recorded { absorbed, .. } => Some(*absorbed),
            _ => None,
        })
        .collect();
    let identity_absorbed: u64 = identities.iter().map(|i| i.absorbed).sum();
    if grants.iter().sum::<u64>() as i64 != absorbed || identity_absorbed as i64 != absorbed {
        bad.push(format!("I5: grants {grants:?}, stripes absorbed {absorbed}, identities {identity_absorbed}"));
    }
    if grants.len() as i64 != sum(|s| s.n_grants) {
        bad.push(format!("I5: {} grants, stripes count {}", grants.len(), sum(|s| s.n_grants)));
    }
    let journal: Vec<(Kind, i64)> = stripes.iter().flat_map(|s| s.journal.iter().copied()).collect();
    for (r, (head, state)) in res.iter().enumerate() {
        let closes = journal.iter().filter(|(k, _)| matches!(k, Kind::Record(q) | Kind::Release(q) if *q == r)).count();
        let expected = usize::from(head.is_some() && *state != ResState::Reserved);
        if closes != expected {
            bad.push(format!("I5: r{r} ({state:?}) closed {closes} times in the journal"));
        }
        if head.is_some() && *state == ResState::Reserved {
            bad.push(format!("I6: r{r} left outstanding"));
        }
        let debited: i64 = -journal.iter().filter(|(k, _)| *k == Kind::Debit(r)).map(|(_, a)| a).sum::<i64>();
        let reserved_r = head.map_or(0, |h| h.amount) as i64;
        if debited != reserved_r {
            bad.push(format!("I3: r{r} reserved {reserved_r} but the journal debited {debited}"));
        }
        for (_, reduction) in reductions.iter().filter(|(q, _)| *q == r) {
            if *reduction as i64 != debited {
                bad.push(format!("I3: r{r} charge reduced by {reduction}, debited {debited}"));
            }
        }
    }
    for (i, identity) in identities.iter().enumerate() {
        if identity.absorbed + identity.reserved > identity.budget {
            bad.push(format!(
                "I4: identity {i} absorbed {} + reserved {} > {}",
                identity.absorbed, identity.reserved, identity.budget
            ));
        }
    }
    bad
}

/// The end balances the serial replay must reach: pool, reserved, absorbed, credited, and each
/// identity's reserved and absorbed.
fn model_balances(db: &Db) -> (Vec<u64>, Vec<(u64, u64)>) {
    let stripes: Vec<StripeRow> = db.stripes.iter().map(|s| s.lock().unwrap().clone()).collect();
    let sum = |f: fn(&StripeRow) -> i64| stripes.iter().map(f).sum::<i64>() as u64;
    let totals = vec![sum(|s| s.balance), sum(|s| s.reserved), sum(|s| s.absorbed), sum(|s| s.credited)];
    let identities = db.identities.iter().map(|i| i.lock().unwrap()).map(|i| (i.reserved, i.absorbed)).collect();
    (totals, identities)
}

fn ledger_balances(ledger: &Ledger) -> (Vec<u64>, Vec<(u64, u64)>) {
    let t = ledger.totals();
    let totals =
        vec![t.pool_sats, t.reserved_sats, t.absorbed_sats, t.credited_sats].into_iter().map(Sats::to_u64).collect();
    let identities = (0..N_IDENTITIES as u64)
        .map(|i| ledger.identity(&ledger_harness::user_pubkey(i)).expect("created at setup"))
        .map(|i| (i.reserved_sats.to_u64(), i.sats_absorbed_today.to_u64()))
        .collect();
    (totals, identities)
}

/// Is there an order of the threads' committed commands, each thread's in program order, that
/// gives every answer and the end balances on the reference? Depth-first, pruned at the first
/// answer that differs.
fn serial_order_exists(
    ledger: &Ledger,
    threads: &[Vec<Committed>],
    at: &mut [usize; N_THREADS],
    end: &(Vec<u64>, Vec<(u64, u64)>),
) -> bool {
    if threads.iter().zip(at.iter()).all(|(cmds, &n)| n == cmds.len()) {
        return ledger_balances(ledger) == *end;
    }
    for t in 0..N_THREADS {
        let Some(next) = threads[t].get(at[t]) else { continue };
        let mut replay = ledger.clone();
        if replay.apply(&next.command, NOW, &mut Vec::new()) != next.result {
            continue;
        }
        at[t] += 1;
        let found = serial_order_exists(&replay, threads, at, end);
        at[t] -= 1;
        if found {
            return true;
        }
    }
    false
}

/// The serial check: the commit order first (one replay), then any order.
fn check_serial(db: &Db, tiers: &[Tier; N_IDENTITIES]) -> Option<String> {
    let log = db.log.lock().unwrap().clone();
    let mut genesis = Ledger::new(db.config);
    for (i, tier) in tiers.iter().enumerate() {
        genesis
            .apply(
                &Command::SetTier { pubkey: ledger_harness::user_pubkey(i as u64), tier: *tier },
                NOW,
                &mut Vec::new(),
            )
            .unwrap();
    }
    let end = model_balances(db);
    let mut in_commit_order = genesis.clone();
    let commit_order_fits = log.iter().all(|c| in_commit_order.apply(&c.command, NOW, &mut Vec::new()) == c.result);
    if commit_order_fits && ledger_balances(&in_commit_order) == end {
        return None;
    }
    let threads: Vec<Vec<Committed>> =
        (0..N_THREADS).map(|t| log.iter().filter(|c| c.thread == t).cloned().collect()).collect();
    if serial_order_exists(&genesis, &threads, &mut [0; N_THREADS], &end) {
        return None;
    }
    let answers: Vec<String> = log.iter().map(|c| format!("t{} {:?} -> {:?}", c.thread, c.command, c.result)).collect();
    Some(format!("no serial order of the reference gives these answers and balances {end:?}: {answers:#?}"))
}

/// Executions in which something happened, and the first one's trace.
#[derive(Default)]
struct Seen {
    executions: u64,
    first: Option<Vec<String>>,
}

impl Seen {
    fn note(&mut self, trace: &Trace) {
        self.executions += 1;
        if self.first.is_none() {
            self.first = Some(trace.lines());
        }
    }

    fn print_first(&self, what: &str) {
        println!("  first {what}:");
        for (n, line) in self.first.clone().unwrap_or_default().iter().enumerate() {
            println!("    {:>2}. {line}", n + 1);
        }
    }
}

/// What one mix's exploration found.
struct Found {
    report: Report,
    /// Executions that broke I1-I6 (the rest of the violating ones only failed the serial check).
    executions_breaking_invariants: u64,
    deadlocks: Seen,
    failed_rechecks: Seen,
    released_to_slow_path: Seen,
    reservations_found_again: Seen,
}

fn explore_mix(mix: Mix) -> Found {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(<[Seen; 4]>::default()));
    let breaking = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mix = std::sync::Arc::new(mix);
    let report = {
        let seen = std::sync::Arc::clone(&seen);
        let breaking = std::sync::Arc::clone(&breaking);
        let mix = std::sync::Arc::clone(&mix);
        explore(mix.name, PREEMPTION_BOUND, move |trace| {
            let budgets = mix.tiers.map(|t| config(mix.pool_initial_sats).budget(t).to_u64());
            let db = Arc::new(Db::new(config(mix.pool_initial_sats), budgets));
            let handles: Vec<_> = (0..N_THREADS)
                .map(|me| {
                    let db = Arc::clone(&db);
                    let trace = trace.clone();
                    let mix = std::sync::Arc::clone(&mix);
                    thread::spawn(move || {
                        let (who, client) = &mix.clients[me];
                        client(&Client { db: &db, trace: &trace, me, who })
                    })
                })
                .collect();
            let reductions: Vec<(usize, u64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
            {
                let mut seen = seen.lock().unwrap();
                if *db.deadlocks.lock().unwrap() > 0 {
                    seen[0].note(trace);
                }
                if db.failed_rechecks.load(SeqCst) > 0 {
                    seen[1].note(trace);
                }
                if db.released_to_slow_path.load(SeqCst) > 0 {
                    seen[2].note(trace);
                }
                if db.reservations_found_again.load(SeqCst) > 0 {
                    seen[3].note(trace);
                }
            }
            let mut bad = db.violations.lock().unwrap().clone();
            bad.extend(check_end(&db, &reductions));
            if !bad.is_empty() {
                breaking.fetch_add(1, SeqCst);
            }
            bad.extend(check_serial(&db, &mix.tiers));
            (!bad.is_empty()).then(|| bad.join("; "))
        })
    };
    report.print();
    let [deadlocks, failed_rechecks, released_to_slow_path, reservations_found_again] =
        std::mem::take(&mut *seen.lock().unwrap());
    println!("  executions with a deadlock (rolled back and retried): {}", deadlocks.executions);
    println!("  executions with a fast path whose re-check failed: {}", failed_rechecks.executions);
    println!(
        "  ... that released its stripe to a slow path waiting for it (a deadlock had it kept it): {}",
        released_to_slow_path.executions
    );
    println!(
        "  executions with a record or release that found its reservation on the second look: {}",
        reservations_found_again.executions
    );
    let executions_breaking_invariants = breaking.load(SeqCst);
    println!("  executions breaking I1-I6: {executions_breaking_invariants}");
    Found {
        report,
        executions_breaking_invariants,
        deadlocks,
        failed_rechecks,
        released_to_slow_path,
        reservations_found_again,
    }
}

// ── the mixes ─────────────────────────────────────────────────────────────────────────────

/// Three identities race for a pool of 40 (20 per stripe): r1 and r3 share stripe 1, so the
/// second fast path finds it short (or waits on it and fails its re-check); r2's estimate is
/// above its stripe, so it takes the slow path at once and then reserves a partial offer. A
/// credit lands mid-way. Loom must reach the failed re-checks, with r2 in the slow path, that
/// deadlocked when the fast path kept its stripe, and find no deadlock.
#[test]
fn loom_pg_stripes_never_deadlock() {
    let found = explore_mix(Mix {
        name: "pg: stripes, fast and slow paths",
        pool_initial_sats: 40,
        tiers: [Tier::Trusted, Tier::Trusted, Tier::Elite],
        clients: [
            ("job r1", Box::new(|c| vec![c.job(1, 0, 15, Some(10))])),
            ("job r3", Box::new(|c| vec![c.job(3, 1, 15, None)])),
            (
                "job r2",
                Box::new(|c| {
                    let job = c.job(2, 2, 30, Some(30));
                    let _ = c.credit(0, 100);
                    vec![job]
                }),
            ),
        ],
    });
    assert_eq!(found.report.violating_executions, 0, "{:?}", found.report.first);
    assert_eq!(found.executions_breaking_invariants, 0);
    assert!(found.failed_rechecks.executions > 0, "loom must reach a fast path that fails its re-check");
    assert!(
        found.released_to_slow_path.executions > 0,
        "loom must reach a failed re-check while a slow path holding the other stripe waits for this one"
    );
    found.released_to_slow_path.print_first("stripe released to a waiting slow path");
    if found.deadlocks.executions > 0 {
        found.deadlocks.print_first("deadlock");
    }
    assert_eq!(found.deadlocks.executions, 0, "a fast path that fails its re-check must not keep its stripe");
}

/// At-least-once delivery on one identity: a job whose decide is partial, a duplicate of its
/// decide and reserve_partial and of its record, a release that arrives late, a credit webhook
/// delivered twice, and a second job of the same identity competing for the budget.
#[test]
fn loom_pg_duplicates() {
    let found = explore_mix(Mix {
        name: "pg: duplicates",
        pool_initial_sats: 40,
        tiers: [Tier::Trusted, Tier::Established, Tier::Established],
        clients: [
            ("job r0", Box::new(|c| vec![c.job(0, 0, 60, Some(50))])),
            (
                "duplicate",
                Box::new(|c| {
                    if let Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, .. } }) = c.decide(0, 0, 60)
                    {
                        let _ = c.reserve_partial(0, 0, offer_sats.to_u64());
                    }
                    let _ = c.record(0, 50);
                    let _ = c.release(0);
                    vec![]
                }),
            ),
            (
                "job r1 + webhook",
                Box::new(|c| {
                    let job = c.job(1, 0, 10, None);
                    let _ = c.credit(0, 100);
                    let _ = c.credit(0, 100);
                    vec![job]
                }),
            ),
        ],
    });
    assert_eq!(found.report.violating_executions, 0, "{:?}", found.report.first);
}

/// A `record` redelivered while its free `decide` commits: `ledger_record` reads the reservation
/// (not there yet), then, in a second statement with a newer snapshot, the request (there now).
/// Answering `not_reserved` there, as it once did, no serial order gives (before the decide it
/// is `unknown_request`, after it the record succeeds); it reads the reservation again and finds
/// it. Loom must reach that interleaving, and every execution must have a serial order.
#[test]
fn loom_pg_record_racing_its_decide_answers_serially() {
    let found = explore_mix(Mix {
        name: "pg: record races its decide",
        pool_initial_sats: 40,
        tiers: [Tier::Trusted, Tier::Trusted, Tier::Established],
        clients: [
            ("job r1", Box::new(|c| vec![c.job(1, 0, 15, Some(10))])),
            (
                "early redelivery",
                Box::new(|c| {
                    let _ = c.record(1, 10);
                    vec![]
                }),
            ),
            ("job r3", Box::new(|c| vec![c.job(3, 1, 30, None)])),
        ],
    });
    assert_eq!(found.report.violating_executions, 0, "{:?}", found.report.first);
    assert_eq!(found.executions_breaking_invariants, 0);
    assert!(
        found.reservations_found_again.executions > 0,
        "loom must reach the record that finds the request before its reservation"
    );
    found.reservations_found_again.print_first("reservation found on the second look");
}
