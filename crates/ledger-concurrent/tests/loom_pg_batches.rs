//! loom model of the batch protocol of `ledger-pg` (`crates/ledger-pg/src/batch.rs`, the
//! `Batcher`, and `sql/functions/ledger_apply_batch.sql` with `ledger_batch_lock_identities` and
//! `ledger_before_lock_all`): two lanes, each a thread running its batches one after another,
//! each batch one transaction of several callers' commands, checked over every interleaving
//! within the preemption bound.
//!
//! Rows are `loom::sync::Mutex`es and each SQL statement is one step taking exactly the row
//! locks PostgreSQL takes, held to commit, as in `loom_pg_protocol.rs` (whose one-command steps
//! this file repeats for the commands a batch runs). A batch, as `ledger_apply_batch` runs it:
//!
//! 1. the advisory batch lock, shared (`pg_advisory_xact_lock_shared`), or exclusively when the
//!    lane is in its exclusive streak (a `loom::sync::RwLock`: a batch takes it before any row,
//!    so it never holds a row while waiting for it);
//! 2. the advisory locks of the batch's decides, in request order;
//! 3. `ledger_batch_lock_identities`: a plain read of the reservations of the batch's records and
//!    releases (their identity), then every identity of the batch `FOR UPDATE` in one order
//!    (pubkey order; here the identity index, which orders the harness's pubkeys the same way);
//! 4. the commands in batch order, each with the steps of its one-command function; the
//!    identities they lock are already held. A command that must lock every stripe calls
//!    `ledger_before_lock_all` first, which in a shared batch raises `LDB01`: the whole batch
//!    rolls back (every row it wrote gets its value back, nothing it inserted becomes visible)
//!    and the lane runs it again holding the batch lock exclusively, then stays exclusive for
//!    `EXCLUSIVE_STREAK` batches;
//! 5. the commit: the inserted rows and the stripes' balances become visible, every lock goes.
//!
//! A lane carries the requests and payments whose home stripe is its own (`id % 2` here, as
//! `Batcher::lane_of`), and a caller sends its next command only after its answer: a lane's
//! second batch holds the follow-ups of its first (record, release, or reserve_partial of a
//! partial offer) and new decides, and so on. Two lanes, because lanes must divide the stripes
//! (`BatcherOptions::check`) and the model has two; three mixes of 3-7 commands per lane over
//! three identities (see each mix's docs): lanes whose every batch shares identities, lanes
//! running side by side on disjoint identities and then competing for one, and lanes whose first
//! batches both need every stripe.
//!
//! Deadlocks. The model keeps the wait-for graph of `loom_pg_protocol.rs` beside the loom locks:
//! a lane about to wait on a row checks whether that closes a cycle, and if so it is
//! PostgreSQL's victim (40P01): its batch rolls back and the lane reruns it (batch.rs retries a
//! deadlock like a serialization failure). With the protocol as written loom finds none, in any
//! execution: the only rows lanes share are identities, taken all at once in one order before
//! anything else, and a shared batch never waits on another lane's stripe. Serialization
//! failures cannot happen at READ COMMITTED (the server's default, which the adapter keeps). So
//! the one abort the protocol can hit is `LDB01`, and the exclusive rerun is what the model
//! exercises.
//!
//! The checks, in every execution: no deadlock; no shared batch locks a stripe of another lane,
//! no exclusive batch runs beside another batch, and no debit's fast path finds its stripe
//! moved while it waited for it (PostgreSQL's EvalPlanQual re-check, which the one-command
//! protocol can hit, is unreachable in a batch); every batch committed exactly once, in its
//! lane's order, and each caller's answer is the committed one (a batch rolled back by `LDB01`
//! and run again changes nothing twice: I2, I3 and I5 would see a double debit, credit or
//! close: a rollback that kept the stripes' writes, tried by hand, is caught so in both mixes
//! with reruns); I1-I6 as in `loom_pg_protocol.rs`; and
//! some serial order of the committed *batches* (each lane's in order, each batch's commands in
//! batch order) gives every answer and the end balances when replayed on `ledger_core::Ledger`
//! (the commit order is tried first).
//!
//! The model can fail: each `loom_pg_batches_mistake_*` test plants one protocol mistake behind
//! `Protocol` and asserts that loom finds the deadlock it causes, and that PostgreSQL's abort
//! (40P01) and the lane's rerun then resolve it with I1-I6, exactly-once and the serial answers
//! intact: lane 1 locking its identities in the opposite order; batches locking identities only
//! as their commands reach them (as one command alone does); `ledger_before_lock_all` not
//! raising, so a shared batch locks every stripe (also caught as a lane locking another's
//! stripe); and the rerun taking the batch lock shared (also caught as an exclusive batch beside
//! another).
//!
//! Left out on purpose: `set_tier` and `expire` (expire runs alone holding the batch lock
//! exclusively, and one clock instant here means no window resets and no expiry); the overflow
//! guards of `record` and `credit` (amounts here are far from 2^61, so they never lock every
//! stripe); a batch's split into single commands after one command's database error, and a lost
//! connection (both leave the batch's transaction rolled back, as `LDB01` does); calls outside
//! the batcher running beside it; two batchers on one database (their lanes would share
//! stripes); duplicate deliveries (`loom_pg_protocol.rs` has them); two stripes instead of 16.
//!
//! Preemption bound: 20 for the three mixes with the protocol as written, which no execution
//! reaches: bound 200 explores exactly the same executions (bound 12 misses a few: 26,721 of
//! the first mix's 26,775), so every interleaving of the two lanes is explored. Most of each
//! batch is the lane's own rows, and batches that share an identity run one after the other,
//! which keeps that small: 26,775 executions (lanes sharing identities), 12,600 (lanes side by
//! side) and 8,829 (exclusive reruns), 5-8 s for the whole file in release mode on 2 shared
//! cores (3.0-4.8 s, 1.2-3.6 s and 1.0-2.8 s, alone or side by side with the other tests). The planted mistakes run at bound 2 (each
//! deadlock needs one preemption): 124-420 executions, under 0.1 s each.
#![cfg(ledger_loom)]

mod loom_support;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;

use ledger_core::{
    Bps, Budgets, Command, Config, Decision, GateReason, Ledger, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats,
    Tier, TimeMs,
};
use loom::sync::atomic::{AtomicBool, AtomicI64};
use loom::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use loom::thread;
use loom_support::{explore, Report, Trace};

/// Preemption bound of the mixes with the protocol as written; see the module docs.
const PREEMPTION_BOUND: usize = 20;
/// Preemption bound of the planted mistakes: each deadlock needs one preemption.
const MISTAKE_BOUND: usize = 2;
const N_STRIPES: usize = 2;
const N_LANES: usize = 2;
const N_REQUESTS: usize = 6;
const N_IDENTITIES: usize = 3;
const N_PAYMENTS: usize = 2;
/// `ledger_pg::batch::EXCLUSIVE_STREAK`.
const EXCLUSIVE_STREAK: u32 = 16;
/// How many times a batch is run again (after `LDB01` or a deadlock) before the model gives up.
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

/// The protocol the lanes run: as written, or with one planted mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// `ledger_apply_batch` as written.
    AsWritten,
    /// Lane 1 locks its batch's identities in the opposite order.
    IdentitiesReversedOnLane1,
    /// No identity is locked up front: each command locks its own when it runs, as alone.
    IdentitiesLockedByCommands,
    /// `ledger_before_lock_all` does not raise: a shared batch locks every stripe itself.
    SharedBatchLocksAllStripes,
    /// The rerun after `LDB01` takes the batch lock shared, not exclusively (it may still lock
    /// every stripe: `ledger.batch` says exclusive).
    RerunTakesBatchLockShared,
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

/// An immutable row that becomes visible at its inserter's commit (see `loom_pg_protocol.rs`):
/// the data is `std`, written once before the flag; the flag is loom's.
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
    waiting: [Option<Row>; N_LANES],
}

/// One committed batch, for the serial replay.
#[derive(Clone, Debug)]
struct CommittedBatch {
    lane: usize,
    /// The batch's place in its lane (0, 1, ...).
    seq: usize,
    exclusive: bool,
    commands: Vec<(Command, Result<Outcome, Refusal>)>,
}

struct Db {
    config: Config,
    protocol: Protocol,
    /// The advisory batch lock, `(1279607111, 1)`.
    batch_lock: RwLock<()>,
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
    /// Which lanes are inside a batch (hold the batch lock), and whether exclusively.
    in_batch: std::sync::Mutex<[Option<bool>; N_LANES]>,
    log: std::sync::Mutex<Vec<CommittedBatch>>,
    violations: std::sync::Mutex<Vec<String>>,
    deadlocks: std::sync::Mutex<u64>,
    exclusive_reruns: std::sync::Mutex<u64>,
}

impl Db {
    fn new(config: Config, budgets: [u64; N_IDENTITIES], protocol: Protocol) -> Db {
        let initial = config.pool_initial_sats.to_u64() as i64;
        let n = N_STRIPES as i64;
        let genesis = |s: usize| initial / n + i64::from((s as i64) < initial % n);
        Db {
            config,
            protocol,
            batch_lock: RwLock::new(()),
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
            in_batch: std::sync::Mutex::default(),
            log: std::sync::Mutex::default(),
            violations: std::sync::Mutex::default(),
            deadlocks: std::sync::Mutex::default(),
            exclusive_reruns: std::sync::Mutex::default(),
        }
    }

    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

// ── transactions ──────────────────────────────────────────────────────────────────────────

/// Why a batch's transaction stopped before its commit.
enum Abort {
    /// PostgreSQL found a cycle and chose this transaction (40P01): waiting for the row, held
    /// by the lane, would have closed it.
    Deadlock(Row, usize),
    /// `ledger_before_lock_all` in a shared batch (`LDB01`).
    NeedsExclusive,
}

/// A row this transaction locked, and its value before, for a rollback.
struct Held<'a, T> {
    idx: usize,
    guard: MutexGuard<'a, T>,
    before: T,
}

/// The batch lock as this transaction holds it.
enum BatchGuard<'a> {
    Shared(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

struct Tx<'a> {
    db: &'a Db,
    me: usize,
    who: &'a str,
    trace: &'a Trace,
    exclusive: bool,
    batch: Option<BatchGuard<'a>>,
    advisory: Vec<(usize, MutexGuard<'a, ()>)>,
    requests: Vec<Held<'a, Vec<(u64, u64)>>>,
    reservations: Vec<Held<'a, ResState>>,
    identities: Vec<Held<'a, IdentityRow>>,
    stripes: Vec<Held<'a, StripeRow>>,
    payments: Vec<Held<'a, Option<(u64, u64)>>>,
    /// Rows this transaction inserted: visible to it at once, to others at its commit.
    new_requests: Vec<(usize, RequestHead)>,
    new_reservations: Vec<(usize, ResHead)>,
}

/// Takes `row`'s lock for lane `me`, unless waiting for it would close a cycle of waits.
fn acquire<'a, T: Clone>(db: &Db, me: usize, row: Row, m: &'a Mutex<T>) -> Result<Held<'a, T>, Abort> {
    {
        let mut table = db.locks.lock().unwrap();
        let mut next = table.holder.get(&row).copied();
        let mut hops = 0;
        while let Some(t) = next {
            if t == me {
                let holder = table.holder[&row];
                return Err(Abort::Deadlock(row, holder));
            }
            hops += 1;
            assert!(hops <= N_LANES, "model: wait-for walk loops without this lane");
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

/// The held row `idx` of `held`, taking its lock first when this transaction has not.
fn row_of<'a, 'b, T: Clone>(
    db: &'a Db,
    me: usize,
    held: &'b mut Vec<Held<'a, T>>,
    row: Row,
    idx: usize,
    m: &'a Mutex<T>,
) -> Result<&'b mut T, Abort> {
    let at = match held.iter().position(|h| h.idx == idx) {
        Some(at) => at,
        None => {
            held.push(acquire(db, me, row, m)?);
            held.len() - 1
        }
    };
    Ok(&mut held[at].guard)
}

impl<'a> Tx<'a> {
    fn new(db: &'a Db, me: usize, who: &'a str, trace: &'a Trace, exclusive: bool) -> Tx<'a> {
        Tx {
            db,
            me,
            who,
            trace,
            exclusive,
            batch: None,
            advisory: Vec::new(),
            requests: Vec::new(),
            reservations: Vec::new(),
            identities: Vec::new(),
            stripes: Vec::new(),
            payments: Vec::new(),
            new_requests: Vec::new(),
            new_reservations: Vec::new(),
        }
    }

    fn step(&self, what: impl AsRef<str>) {
        self.trace.step(self.who, what);
    }

    /// `pg_advisory_xact_lock_shared(1279607111, 1)`, or the exclusive lock. Nothing else is
    /// held yet, so this wait closes no cycle: it is not in the wait-for graph.
    fn batch_lock(&mut self) {
        assert!(self.held_rows().is_empty(), "model: the batch lock is taken first");
        let db = self.db;
        let exclusive = self.exclusive && db.protocol != Protocol::RerunTakesBatchLockShared;
        self.batch = Some(if exclusive {
            BatchGuard::Exclusive(db.batch_lock.write().unwrap())
        } else {
            BatchGuard::Shared(db.batch_lock.read().unwrap())
        });
        self.step(if exclusive { "batch lock, exclusive" } else { "batch lock, shared" });
        let mut in_batch = db.in_batch.lock().unwrap();
        in_batch[self.me] = Some(self.exclusive);
        for (lane, other) in in_batch.iter().enumerate() {
            if lane != self.me && other.is_some() && (self.exclusive || *other == Some(true)) {
                db.violation(format!("exclusive: lanes {} and {lane} in a batch at once, one exclusive", self.me));
            }
        }
    }

    fn advisory_lock(&mut self, r: usize) -> Result<(), Abort> {
        if !self.advisory.iter().any(|(i, _)| *i == r) {
            let held = acquire(self.db, self.me, Row::Advisory(r), &self.db.advisory[r])?;
            self.advisory.push((r, held.guard));
        }
        Ok(())
    }

    /// The request row as this transaction sees it (its own insert, or the committed row).
    fn request_head(&self, r: usize) -> Option<RequestHead> {
        match self.new_requests.iter().find(|(q, _)| *q == r) {
            Some((_, head)) => Some(*head),
            None => self.db.request_head[r].read(),
        }
    }

    fn res_head(&self, r: usize) -> Option<ResHead> {
        match self.new_reservations.iter().find(|(q, _)| *q == r) {
            Some((_, head)) => Some(*head),
            None => self.db.res_head[r].read(),
        }
    }

    fn request(&mut self, r: usize) -> Result<&mut Vec<(u64, u64)>, Abort> {
        let db = self.db;
        row_of(db, self.me, &mut self.requests, Row::Request(r), r, &db.request_lock[r])
    }

    fn reservation(&mut self, r: usize) -> Result<&mut ResState, Abort> {
        let db = self.db;
        row_of(db, self.me, &mut self.reservations, Row::Reservation(r), r, &db.res_state[r])
    }

    fn identity(&mut self, i: usize) -> Result<&mut IdentityRow, Abort> {
        let db = self.db;
        row_of(db, self.me, &mut self.identities, Row::Identity(i), i, &db.identities[i])
    }

    fn holds_stripe(&self, s: usize) -> bool {
        self.stripes.iter().any(|h| h.idx == s)
    }

    fn stripe(&mut self, s: usize) -> Result<&mut StripeRow, Abort> {
        if !self.exclusive && s % N_LANES != self.me && !self.holds_stripe(s) {
            self.db.violation(format!("lanes: a shared batch of lane {} locks stripe {s}", self.me));
        }
        let db = self.db;
        row_of(db, self.me, &mut self.stripes, Row::Stripe(s), s, &db.stripes[s])
    }

    fn payment(&mut self, p: usize) -> Result<&mut Option<(u64, u64)>, Abort> {
        let db = self.db;
        row_of(db, self.me, &mut self.payments, Row::Payment(p), p, &db.payments[p])
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
        self.db.in_batch.lock().unwrap()[self.me] = None;
        // Dropping the guards releases the loom locks (the batch lock with them): waiters may
        // run from here.
        drop(self);
    }

    /// The batch rolls back: every row it wrote gets its value back; nothing becomes visible.
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
    /// the batch, then releases every lock.
    fn commit(self, seq: usize, commands: &[Command], answers: &[Result<Outcome, Refusal>]) {
        let db = self.db;
        for (r, head) in &self.new_reservations {
            db.res_head[*r].publish(*head);
        }
        for (r, head) in &self.new_requests {
            db.request_head[*r].publish(*head);
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
        self.step(format!("commit: {answers:?}"));
        db.log.lock().unwrap().push(CommittedBatch {
            lane: self.me,
            seq,
            exclusive: self.exclusive,
            commands: commands.iter().cloned().zip(answers.iter().cloned()).collect(),
        });
        self.release_locks();
    }
}

// ── the pool helpers (sql/functions/ledger_pool_*.sql, ledger_before_lock_all.sql) ──────

/// `ledger_before_lock_all`: `LDB01` in a shared batch.
fn before_lock_all(tx: &mut Tx<'_>) -> Result<(), Abort> {
    if !tx.exclusive && tx.db.protocol != Protocol::SharedBatchLocksAllStripes {
        tx.step("before_lock_all: a shared batch needs every stripe: LDB01");
        return Err(Abort::NeedsExclusive);
    }
    Ok(())
}

/// `ledger_pool_lock_all`: every stripe in stripe order, the exact total, and the stripes evened
/// out (journalled as `rebalance`).
fn lock_all(tx: &mut Tx<'_>) -> Result<i64, Abort> {
    before_lock_all(tx)?;
    let mut total = 0;
    for s in 0..N_STRIPES {
        if !tx.holds_stripe(s) {
            tx.step(format!("lock_all: stripe {s} FOR UPDATE"));
        }
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

/// `ledger_pool_at_least`: a plain read of the home stripe (this transaction's own version when
/// it has written it).
fn pool_at_least(tx: &mut Tx<'_>, home: usize, amount: u64) -> bool {
    let balance = if tx.holds_stripe(home) {
        tx.stripes.iter().find(|h| h.idx == home).unwrap().guard.balance
    } else {
        tx.db.stripe_committed[home].load(SeqCst)
    };
    tx.step(format!("pool_at_least(stripe {home}, {amount}): stripe holds {balance}"));
    balance >= amount as i64
}

/// `ledger_pool_debit` (and the inline first try of `ledger_decide_locked`): `Ok(())` when
/// exactly `amount` was debited for request `r`, `Err(total)` with the exact pool balance
/// otherwise. The fast path is `pool_journal_move`'s conditional `UPDATE` of the home stripe,
/// with PostgreSQL's EvalPlanQual re-check when it had to wait for the row.
fn pool_debit(tx: &mut Tx<'_>, home: usize, r: usize, amount: u64) -> Result<Result<(), i64>, Abort> {
    let amount = amount as i64;
    let snapshot =
        if tx.holds_stripe(home) { tx.stripe(home)?.balance } else { tx.db.stripe_committed[home].load(SeqCst) };
    if snapshot >= amount {
        let stripe = tx.stripe(home)?;
        if stripe.balance >= amount {
            stripe.journal(Kind::Debit(r), -amount, amount);
            tx.step(format!("debit r{r} {amount} on stripe {home} (fast path)"));
            return Ok(Ok(()));
        }
        // EvalPlanQual: the stripe moved while this transaction waited for it. A lane's stripe
        // is written by no other batch while a shared batch runs, and by nothing while an
        // exclusive one does, so in a batch this is unreachable (whether the failed re-check
        // keeps the row locked, as `pool_journal_move`'s UPDATE alone does, or releases it with
        // a subtransaction, does not matter here).
        let balance = stripe.balance;
        tx.db.violation(format!("lanes: lane {} waited for stripe {home}, which moved meanwhile", tx.me));
        tx.step(format!("fast path r{r}: stripe {home} fell to {balance} while waiting; it stays locked"));
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

// ── the functions a batch calls ───────────────────────────────────────────────────────────

fn remaining(identity: &IdentityRow) -> u64 {
    identity.budget.saturating_sub(identity.absorbed + identity.reserved)
}

/// `ledger_decide_locked`: the batch already holds the request's advisory lock.
fn decide(tx: &mut Tx<'_>, r: usize, i: usize, estimated: u64) -> Result<Result<Outcome, Refusal>, Abort> {
    let home = r % N_STRIPES;
    tx.advisory_lock(r)?;
    if let Some(req) = tx.request_head(r) {
        if req.identity != i {
            return Ok(Err(Refusal::ExistsWithDifferentPubkey));
        }
        if req.estimated != estimated {
            return Ok(Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: sats(req.estimated) }));
        }
        return Ok(Ok(Outcome::Decided { decision: req.decision }));
    }
    let gate = |reason| Decision::Gate { reason, charge_sats: sats(estimated) };
    let mut pool = None;
    let mut decision = None;
    let mut left = 0;
    if estimated == 0 {
        decision = Some(gate(GateReason::ZeroEstimate));
    } else {
        let identity = tx.identity(i)?;
        left = remaining(identity);
        if identity.budget == 0 {
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
    tx.new_requests.push((r, RequestHead { identity: i, estimated, decision }));
    if let Decision::Free { .. } = decision {
        tx.new_reservations.push((r, ResHead { identity: i, amount: estimated, by_decide: true, stripe: home }));
        tx.identity(i)?.reserved += estimated;
    }
    tx.step(format!("decide r{r}: {decision:?}"));
    Ok(Ok(Outcome::Decided { decision }))
}

fn reserve_partial(tx: &mut Tx<'_>, r: usize, i: usize, amount: u64) -> Result<Result<Outcome, Refusal>, Abort> {
    let home = r % N_STRIPES;
    // `SELECT .. FROM requests .. FOR UPDATE`: a row this transaction sees, then its lock.
    let Some(req) = tx.request_head(r) else {
        return Ok(Err(Refusal::UnknownRequest));
    };
    tx.request(r)?;
    if req.identity != i {
        return Ok(Err(Refusal::ExistsWithDifferentPubkey));
    }
    if let Some(res) = tx.res_head(r) {
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
    tx.new_reservations.push((r, ResHead { identity: i, amount, by_decide: false, stripe: home }));
    tx.identity(i)?.reserved += amount;
    tx.step(format!("reserve_partial r{r}: {amount} reserved"));
    Ok(Ok(Outcome::Reserved { reserved_sats: sats(amount) }))
}

/// `SELECT .. FROM reservations .. FOR UPDATE`, and when there is none the request's row, read
/// in a second statement. In a batch both rows are the lane's own, committed by its earlier
/// batches or written by this one: no other transaction commits them meanwhile, so the order of
/// those reads (the one-command race `loom_pg_protocol.rs` looks at) does not matter here.
fn find_reservation(tx: &mut Tx<'_>, r: usize) -> Result<Result<(ResHead, ResState), Refusal>, Abort> {
    let Some(head) = tx.res_head(r) else {
        let request = tx.request_head(r).is_some();
        return Ok(Err(if request { Refusal::NotReserved } else { Refusal::UnknownRequest }));
    };
    let state = *tx.reservation(r)?;
    Ok(Ok((head, state)))
}

fn release(tx: &mut Tx<'_>, r: usize) -> Result<Result<Outcome, Refusal>, Abort> {
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
    tx.step(format!("release r{r}: {amount} back on stripe {}", head.stripe));
    Ok(Ok(Outcome::Released { returned_sats: sats(head.amount) }))
}

fn record(tx: &mut Tx<'_>, r: usize, actual: u64) -> Result<Result<Outcome, Refusal>, Abort> {
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
    tx.step(format!("record r{r}: {absorbed} absorbed, {returned} back on stripe {}", head.stripe));
    Ok(Ok(Outcome::Recorded {
        absorbed_sats: sats(absorbed),
        returned_sats: sats(returned),
        overrun_sats: sats(overrun),
    }))
}

fn credit(tx: &mut Tx<'_>, p: usize, paid: u64) -> Result<Result<Outcome, Refusal>, Abort> {
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
    tx.step(format!("credit p{p}: {credited} on stripe {}", p % N_STRIPES));
    Ok(Ok(Outcome::Credited { credited_sats: sats(credited) }))
}

fn identity_of(pubkey: &Pubkey) -> usize {
    ledger_harness::user_of(pubkey).expect("a model pubkey") as usize
}

fn apply(tx: &mut Tx<'_>, command: &Command) -> Result<Result<Outcome, Refusal>, Abort> {
    match *command {
        Command::Decide { request_id, pubkey, estimated_sats } => {
            decide(tx, request_id.0 as usize, identity_of(&pubkey), estimated_sats.to_u64())
        }
        Command::ReservePartial { request_id, pubkey, amount_sats } => {
            reserve_partial(tx, request_id.0 as usize, identity_of(&pubkey), amount_sats.to_u64())
        }
        Command::Release { request_id } => release(tx, request_id.0 as usize),
        Command::Record { request_id, actual_sats } => record(tx, request_id.0 as usize, actual_sats.to_u64()),
        Command::Credit { payment_id, paid_sats } => credit(tx, payment_id.0 as usize, paid_sats.to_u64()),
        Command::SetTier { .. } | Command::Expire => unreachable!("not modelled"),
    }
}

/// `ledger_apply_batch` after the batch lock: the decides' advisory locks in request order, the
/// identities in one order, then every command.
fn apply_batch(tx: &mut Tx<'_>, commands: &[Command]) -> Result<Vec<Result<Outcome, Refusal>>, Abort> {
    let mut decides: Vec<usize> = commands
        .iter()
        .filter_map(|c| match c {
            Command::Decide { request_id, .. } => Some(request_id.0 as usize),
            _ => None,
        })
        .collect();
    decides.sort_unstable();
    decides.dedup();
    for r in decides {
        tx.advisory_lock(r)?;
    }
    if tx.db.protocol != Protocol::IdentitiesLockedByCommands {
        // `ledger_batch_lock_identities`: the record's and release's identity is their
        // reservation's, read without a lock (a committed row: it is immutable).
        let mut ids: Vec<usize> = Vec::new();
        for c in commands {
            match c {
                Command::Decide { pubkey, .. } | Command::ReservePartial { pubkey, .. } => {
                    ids.push(identity_of(pubkey))
                }
                Command::Record { request_id, .. } | Command::Release { request_id } => {
                    ids.extend(tx.db.res_head[request_id.0 as usize].read().map(|h| h.identity))
                }
                _ => {}
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if tx.db.protocol == Protocol::IdentitiesReversedOnLane1 && tx.me == 1 {
            ids.reverse();
        }
        for &i in &ids {
            tx.step(format!("identity {i} FOR UPDATE"));
            tx.identity(i)?;
        }
    }
    commands.iter().map(|c| apply(tx, c)).collect()
}

// ── lanes ─────────────────────────────────────────────────────────────────────────────────

/// A lane: its index (= its stripe), its name, and `Lane::exclusive_left` of `batch.rs`.
struct Lane<'a> {
    db: &'a Db,
    trace: &'a Trace,
    me: usize,
    who: &'static str,
    exclusive_left: Cell<u32>,
    batches: Cell<usize>,
    /// What the lane answered its callers, batch by batch.
    answered: RefCell<Vec<Vec<Result<Outcome, Refusal>>>>,
}

impl Lane<'_> {
    /// `Lane::run_batch`: the batch until it commits; `LDB01` reruns it holding the batch lock
    /// exclusively, a deadlock reruns it as it was.
    fn batch(&self, commands: Vec<Command>) -> Vec<Result<Outcome, Refusal>> {
        let seq = self.batches.get();
        self.batches.set(seq + 1);
        for _attempt in 0..MAX_ATTEMPTS {
            let exclusive = self.exclusive_left.get() > 0;
            let mut tx = Tx::new(self.db, self.me, self.who, self.trace, exclusive);
            tx.batch_lock();
            match apply_batch(&mut tx, &commands) {
                Ok(answers) => {
                    tx.commit(seq, &commands, &answers);
                    self.exclusive_left.set(self.exclusive_left.get().saturating_sub(1));
                    self.answered.borrow_mut().push(answers.clone());
                    return answers;
                }
                Err(Abort::NeedsExclusive) => {
                    assert!(!exclusive, "model: an exclusive batch asked for exclusivity");
                    tx.step("batch rolled back; the lane runs it again exclusively");
                    tx.rollback();
                    self.exclusive_left.set(EXCLUSIVE_STREAK);
                    *self.db.exclusive_reruns.lock().unwrap() += 1;
                }
                Err(Abort::Deadlock(row, holder)) => {
                    tx.step(format!(
                        "waiting for {row:?}, held by lane {holder}, closes a cycle: deadlock (40P01), batch \
                         rolled back; the lane runs it again"
                    ));
                    tx.rollback();
                    *self.db.deadlocks.lock().unwrap() += 1;
                    thread::yield_now();
                }
            }
        }
        self.db.violation(format!("{}: batch {seq} aborted {MAX_ATTEMPTS} times", self.who));
        let answers = vec![Err(Refusal::Overflow); commands.len()];
        self.answered.borrow_mut().push(answers.clone());
        answers
    }
}

/// A caller's job as SPEC.md §0 runs it, one command per batch of its lane (a caller sends its
/// next command when its answer is back): decide; a partial offer is reserved; a reservation is
/// then recorded (`Some(actual)`) or released (`None`).
#[derive(Clone, Copy)]
struct Job {
    r: u64,
    i: u64,
    estimated: u64,
    actual: Option<u64>,
    /// The lane's batch its decide is sent in.
    from_batch: usize,
}

const fn job(r: u64, i: u64, estimated: u64, actual: Option<u64>, from_batch: usize) -> Job {
    Job { r, i, estimated, actual, from_batch }
}

impl Job {
    fn decide(&self) -> Command {
        Command::Decide {
            request_id: RequestId(self.r),
            pubkey: ledger_harness::user_pubkey(self.i),
            estimated_sats: sats(self.estimated),
        }
    }

    fn close(&self) -> Command {
        let request_id = RequestId(self.r);
        match self.actual {
            Some(actual) => Command::Record { request_id, actual_sats: sats(actual) },
            None => Command::Release { request_id },
        }
    }

    /// The command after `answer`, if any, and what that answer took off the charge.
    fn next(&self, answer: &Result<Outcome, Refusal>) -> (Option<Command>, u64) {
        match answer {
            Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }) => {
                (Some(self.close()), reserved_sats.to_u64())
            }
            Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, .. } }) => {
                let pubkey = ledger_harness::user_pubkey(self.i);
                let command =
                    Command::ReservePartial { request_id: RequestId(self.r), pubkey, amount_sats: *offer_sats };
                (Some(command), 0)
            }
            Ok(Outcome::Reserved { reserved_sats }) => (Some(self.close()), reserved_sats.to_u64()),
            _ => (None, 0),
        }
    }
}

impl Lane<'_> {
    /// The lane's callers: `extra` (credits) go in its first batch; each job's commands one per
    /// batch from `from_batch` on. Returns each request's charge reduction.
    fn run(&self, jobs: &[Job], extra: &[Command]) -> Vec<(usize, u64)> {
        let mut next: Vec<Option<Command>> = vec![None; jobs.len()];
        let mut started = vec![false; jobs.len()];
        let mut reductions: Vec<(usize, u64)> = jobs.iter().map(|j| (j.r as usize, 0)).collect();
        for seq in 0.. {
            let mut commands: Vec<Command> = if seq == 0 { extra.to_vec() } else { Vec::new() };
            let mut whose = Vec::new();
            for (k, job) in jobs.iter().enumerate() {
                if !started[k] && job.from_batch == seq {
                    started[k] = true;
                    next[k] = Some(job.decide());
                }
                if let Some(command) = next[k].take() {
                    whose.push((k, commands.len()));
                    commands.push(command);
                }
            }
            if commands.is_empty() && started.iter().all(|s| *s) {
                return reductions;
            }
            if commands.is_empty() {
                continue;
            }
            let answers = self.batch(commands);
            for (k, at) in whose {
                let (command, reduced) = jobs[k].next(&answers[at]);
                next[k] = command;
                reductions[k].1 += reduced;
            }
        }
        unreachable!()
    }
}

fn credit_cmd(p: u64, paid: u64) -> Command {
    Command::Credit { payment_id: PaymentId(p), paid_sats: sats(paid) }
}

type LaneFn = Box<dyn Fn(&Lane<'_>) -> Vec<(usize, u64)> + Send + Sync>;

/// A mix: two lanes' programs, the identities' tiers and the pool at genesis.
struct Mix {
    name: &'static str,
    protocol: Protocol,
    bound: usize,
    pool_initial_sats: u64,
    tiers: [Tier; N_IDENTITIES],
    lanes: [(&'static str, LaneFn); N_LANES],
}

// ── the checks ────────────────────────────────────────────────────────────────────────────

/// I1-I6 on the end state; `reductions` is what each caller's charge was reduced by.
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
    for p in 0..N_PAYMENTS {
        let credits = journal.iter().filter(|(k, _)| *k == Kind::Credit(p)).count();
        let expected = usize::from(db.payments[p].lock().unwrap().is_some());
        if credits != expected {
            bad.push(format!("I2: payment p{p} journalled {credits} times"));
        }
    }
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

/// Every batch a lane ran committed exactly once, in the lane's order, and what the lane
/// answered its callers is what committed.
fn check_once(db: &Db, answered: &[Vec<Vec<Result<Outcome, Refusal>>>]) -> Vec<String> {
    let log = db.log.lock().unwrap();
    let mut bad = Vec::new();
    for (lane, answered) in answered.iter().enumerate() {
        let committed: Vec<&CommittedBatch> = log.iter().filter(|b| b.lane == lane).collect();
        let seqs: Vec<usize> = committed.iter().map(|b| b.seq).collect();
        if seqs != (0..answered.len()).collect::<Vec<_>>() {
            bad.push(format!("once: lane {lane} ran {} batches, committed {seqs:?}", answered.len()));
            continue;
        }
        for (batch, answers) in committed.iter().zip(answered) {
            let logged: Vec<_> = batch.commands.iter().map(|(_, a)| a.clone()).collect();
            if logged != *answers {
                bad.push(format!("once: lane {lane} batch {} answered {answers:?}, committed {logged:?}", batch.seq));
            }
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

/// `batch` replayed on `ledger`: `None` when an answer differs.
fn replay(ledger: &Ledger, batch: &CommittedBatch) -> Option<Ledger> {
    let mut replay = ledger.clone();
    let fits = batch.commands.iter().all(|(c, result)| replay.apply(c, NOW, &mut Vec::new()) == *result);
    fits.then_some(replay)
}

/// Is there an order of the committed batches, each lane's in order, that gives every answer and
/// the end balances on the reference? Depth-first, pruned at the first answer that differs.
fn serial_order_exists(
    ledger: &Ledger,
    lanes: &[Vec<CommittedBatch>],
    at: &mut [usize; N_LANES],
    end: &(Vec<u64>, Vec<(u64, u64)>),
) -> bool {
    if lanes.iter().zip(at.iter()).all(|(batches, &n)| n == batches.len()) {
        return ledger_balances(ledger) == *end;
    }
    for lane in 0..N_LANES {
        let Some(next) = lanes[lane].get(at[lane]) else { continue };
        let Some(after) = replay(ledger, next) else { continue };
        at[lane] += 1;
        let found = serial_order_exists(&after, lanes, at, end);
        at[lane] -= 1;
        if found {
            return true;
        }
    }
    false
}

/// The serial check: the commit order first (one replay), then any order of the batches.
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
    let mut in_commit_order = Some(genesis.clone());
    for batch in &log {
        in_commit_order = in_commit_order.and_then(|l| replay(&l, batch));
    }
    if in_commit_order.is_some_and(|l| ledger_balances(&l) == end) {
        return None;
    }
    let lanes: Vec<Vec<CommittedBatch>> =
        (0..N_LANES).map(|lane| log.iter().filter(|b| b.lane == lane).cloned().collect()).collect();
    if serial_order_exists(&genesis, &lanes, &mut [0; N_LANES], &end) {
        return None;
    }
    let answers: Vec<String> = log
        .iter()
        .map(|b| format!("lane {} batch {} (exclusive: {}): {:?}", b.lane, b.seq, b.exclusive, b.commands))
        .collect();
    Some(format!("no serial order of the batches gives these answers and balances {end:?}: {answers:#?}"))
}

/// What one mix's exploration found.
struct Found {
    report: Report,
    /// Executions that broke I1-I6 or ran a batch twice (the rest of the violating ones only
    /// failed the serial check).
    executions_breaking_invariants: u64,
    /// Executions that broke I1-I6, exactly-once or the serial check.
    executions_breaking_money_or_answers: u64,
    /// Executions where a shared batch locked another lane's stripe, or an exclusive batch ran
    /// beside another.
    executions_breaking_protocol: u64,
    executions_with_deadlock: u64,
    executions_with_exclusive_rerun: u64,
    first_deadlock: Option<Vec<String>>,
}

#[derive(Default)]
struct Tally {
    with_deadlock: u64,
    with_exclusive_rerun: u64,
    breaking: u64,
    breaking_money_or_answers: u64,
    breaking_protocol: u64,
    first_deadlock: Option<Vec<String>>,
}

fn explore_mix(mix: Mix) -> Found {
    let tally = std::sync::Arc::new(std::sync::Mutex::new(Tally::default()));
    let mix = std::sync::Arc::new(mix);
    let report = {
        let tally = std::sync::Arc::clone(&tally);
        let mix = std::sync::Arc::clone(&mix);
        explore(mix.name, mix.bound, move |trace| {
            let budgets = mix.tiers.map(|t| config(mix.pool_initial_sats).budget(t).to_u64());
            let db = Arc::new(Db::new(config(mix.pool_initial_sats), budgets, mix.protocol));
            let handles: Vec<_> = (0..N_LANES)
                .map(|me| {
                    let db = Arc::clone(&db);
                    let trace = trace.clone();
                    let mix = std::sync::Arc::clone(&mix);
                    thread::spawn(move || {
                        let (who, program) = &mix.lanes[me];
                        let lane = Lane {
                            db: &db,
                            trace: &trace,
                            me,
                            who,
                            exclusive_left: Cell::new(0),
                            batches: Cell::new(0),
                            answered: RefCell::new(Vec::new()),
                        };
                        let reductions = program(&lane);
                        (reductions, lane.answered.into_inner())
                    })
                })
                .collect();
            let mut reductions = Vec::new();
            let mut answered = Vec::new();
            for h in handles {
                let (r, a) = h.join().unwrap();
                reductions.extend(r);
                answered.push(a);
            }
            let mut t = tally.lock().unwrap();
            if *db.deadlocks.lock().unwrap() > 0 {
                t.with_deadlock += 1;
                if t.first_deadlock.is_none() {
                    t.first_deadlock = Some(trace.lines());
                }
            }
            if *db.exclusive_reruns.lock().unwrap() > 0 {
                t.with_exclusive_rerun += 1;
            }
            // The protocol's own rules ("lanes:", "exclusive:"), then the money and the answers.
            let (mut bad, money): (Vec<String>, Vec<String>) = db
                .violations
                .lock()
                .unwrap()
                .iter()
                .cloned()
                .partition(|v| v.starts_with("lanes:") || v.starts_with("exclusive:"));
            if !bad.is_empty() {
                t.breaking_protocol += 1;
            }
            let mut money = money;
            money.extend(check_end(&db, &reductions));
            money.extend(check_once(&db, &answered));
            if !money.is_empty() {
                t.breaking += 1;
            }
            money.extend(check_serial(&db, &mix.tiers));
            if !money.is_empty() {
                t.breaking_money_or_answers += 1;
            }
            bad.extend(money);
            if *db.deadlocks.lock().unwrap() > 0 && mix.protocol == Protocol::AsWritten {
                bad.push("a deadlock with the protocol as written".to_string());
            }
            (!bad.is_empty()).then(|| bad.join("; "))
        })
    };
    report.print();
    let t = std::mem::take(&mut *tally.lock().unwrap());
    println!("  executions with an exclusive rerun (LDB01): {}", t.with_exclusive_rerun);
    println!("  executions with a deadlock (rolled back and run again): {}", t.with_deadlock);
    println!("  executions breaking I1-I6, exactly-once or the serial answers: {}", t.breaking_money_or_answers);
    println!("  executions breaking the lanes' stripes or the exclusivity: {}", t.breaking_protocol);
    Found {
        report,
        executions_breaking_invariants: t.breaking,
        executions_breaking_money_or_answers: t.breaking_money_or_answers,
        executions_breaking_protocol: t.breaking_protocol,
        executions_with_deadlock: t.with_deadlock,
        executions_with_exclusive_rerun: t.with_exclusive_rerun,
        first_deadlock: t.first_deadlock,
    }
}

fn print_first_deadlock(found: &Found) {
    println!("  first deadlock:");
    for (n, line) in found.first_deadlock.clone().unwrap_or_default().iter().enumerate() {
        println!("    {:>2}. {line}", n + 1);
    }
}

// ── the mixes ─────────────────────────────────────────────────────────────────────────────

/// Three identities shared by both lanes (0 and 1 Established, 20 each; 2 Trusted, 50), a pool
/// of 40 (20 per stripe) and a credit on each lane. Identity 1's budget cannot cover r2 and r1
/// both: whichever lane goes second gets a partial offer (and reserves it in its next batch);
/// when r2 goes first lane 0's stripe is short for it, so that batch needs every stripe
/// (`LDB01`, an exclusive rerun) in some executions only. The second batches carry the
/// follow-ups and new decides on the identities the other lane is using.
fn shared_identities(protocol: Protocol, bound: usize) -> Mix {
    Mix {
        name: "pg batches: lanes sharing identities",
        protocol,
        bound,
        pool_initial_sats: 40,
        tiers: [Tier::Established, Tier::Established, Tier::Trusted],
        lanes: [
            (
                "lane 0",
                Box::new(|lane| {
                    let jobs = [job(0, 0, 12, Some(10), 0), job(2, 1, 10, None, 0), job(4, 2, 15, Some(20), 1)];
                    lane.run(&jobs, &[credit_cmd(0, 10)])
                }),
            ),
            (
                "lane 1",
                Box::new(|lane| {
                    let jobs = [job(1, 1, 15, None, 0), job(3, 0, 10, Some(5), 0), job(5, 0, 10, Some(10), 1)];
                    lane.run(&jobs, &[credit_cmd(1, 100)])
                }),
            ),
        ],
    }
}

/// The lanes' first batches share no identity and both need every stripe: lane 0's credit and
/// r0 (35, above its stripe's 30), lane 1's r1 (15 of its 20) and r3 (10 more). Both raise
/// `LDB01` after writing, roll back and run again exclusively, one after the other; each lane
/// then stays exclusive for its next batches, where r2 and r5 compete for identity 2.
fn exclusive_reruns(protocol: Protocol, bound: usize) -> Mix {
    Mix {
        name: "pg batches: exclusive reruns",
        protocol,
        bound,
        pool_initial_sats: 40,
        tiers: [Tier::Trusted, Tier::Trusted, Tier::Trusted],
        lanes: [
            (
                "lane 0",
                Box::new(|lane| lane.run(&[job(0, 0, 35, Some(30), 0), job(2, 2, 10, None, 1)], &[credit_cmd(0, 100)])),
            ),
            (
                "lane 1",
                Box::new(|lane| {
                    lane.run(&[job(1, 1, 15, Some(15), 0), job(3, 1, 10, None, 0), job(5, 2, 45, Some(40), 1)], &[])
                }),
            ),
        ],
    }
}

/// Lanes running side by side, no batch needing every stripe: the first batches share no
/// identity and run at once (lane 0's credit, r0 on identity 0; lane 1's r1 and r3 on identity
/// 1); the second batches both want identity 2 (Established, 20), which cannot cover r2 and r5
/// both, so the second of them gets a partial offer and reserves it in a third batch.
fn parallel_lanes(protocol: Protocol, bound: usize) -> Mix {
    Mix {
        name: "pg batches: lanes side by side",
        protocol,
        bound,
        pool_initial_sats: 40,
        tiers: [Tier::Trusted, Tier::Trusted, Tier::Established],
        lanes: [
            (
                "lane 0",
                Box::new(|lane| {
                    let jobs = [job(0, 0, 10, Some(10), 0), job(2, 2, 10, Some(15), 1), job(4, 0, 5, None, 1)];
                    lane.run(&jobs, &[credit_cmd(0, 100)])
                }),
            ),
            (
                "lane 1",
                Box::new(|lane| {
                    let jobs = [job(1, 1, 10, None, 0), job(3, 1, 5, Some(5), 0), job(5, 2, 15, Some(10), 1)];
                    lane.run(&jobs, &[])
                }),
            ),
        ],
    }
}

// ── the tests ─────────────────────────────────────────────────────────────────────────────

fn assert_clean(found: &Found) {
    assert_eq!(found.report.violating_executions, 0, "{:?}", found.report.first);
    assert_eq!(found.executions_breaking_invariants, 0);
    assert_eq!(found.executions_with_deadlock, 0, "the batch protocol as written cannot deadlock");
}

#[test]
fn loom_pg_batches_shared_identities() {
    let found = explore_mix(shared_identities(Protocol::AsWritten, PREEMPTION_BOUND));
    assert_clean(&found);
    assert!(found.executions_with_exclusive_rerun > 0, "some executions need every stripe");
    assert!(found.executions_with_exclusive_rerun < found.report.executions, "and some do not");
}

#[test]
fn loom_pg_batches_parallel_lanes() {
    let found = explore_mix(parallel_lanes(Protocol::AsWritten, PREEMPTION_BOUND));
    assert_clean(&found);
    assert_eq!(found.executions_with_exclusive_rerun, 0);
}

#[test]
fn loom_pg_batches_exclusive_reruns() {
    let found = explore_mix(exclusive_reruns(Protocol::AsWritten, PREEMPTION_BOUND));
    assert_clean(&found);
    assert_eq!(found.executions_with_exclusive_rerun, found.report.executions);
}

/// A planted mistake must be found: the deadlock it causes, which PostgreSQL's abort and the
/// lane's rerun then resolve (every other check passes).
fn assert_finds_deadlock(found: &Found) {
    assert!(found.executions_with_deadlock > 0, "loom must find the deadlock of the planted mistake");
    assert_eq!(found.executions_breaking_money_or_answers, 0, "{:?}", found.report.first);
    print_first_deadlock(found);
}

#[test]
fn loom_pg_batches_mistake_identities_reversed() {
    let found = explore_mix(shared_identities(Protocol::IdentitiesReversedOnLane1, MISTAKE_BOUND));
    assert_finds_deadlock(&found);
}

#[test]
fn loom_pg_batches_mistake_identities_locked_by_commands() {
    let found = explore_mix(shared_identities(Protocol::IdentitiesLockedByCommands, MISTAKE_BOUND));
    assert_finds_deadlock(&found);
}

#[test]
fn loom_pg_batches_mistake_shared_batch_locks_all_stripes() {
    let found = explore_mix(exclusive_reruns(Protocol::SharedBatchLocksAllStripes, MISTAKE_BOUND));
    assert!(found.executions_breaking_protocol > 0, "loom must find a shared batch locking another lane's stripe");
    assert_finds_deadlock(&found);
}

#[test]
fn loom_pg_batches_mistake_rerun_takes_batch_lock_shared() {
    let found = explore_mix(exclusive_reruns(Protocol::RerunTakesBatchLockShared, MISTAKE_BOUND));
    assert!(found.executions_breaking_protocol > 0, "loom must find an exclusive batch beside another");
    assert_finds_deadlock(&found);
}
