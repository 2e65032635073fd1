//! loom model of the batch protocol of `ledger-pg` (`crates/ledger-pg/src/batch.rs`, the
//! `Batcher`, and `sql/functions/ledger_apply_batch.sql` with `ledger_batch_lock_identities` and
//! `ledger_before_lock_all`): two lanes, each a thread running its batches one after another,
//! each batch one transaction of several callers' commands, checked over every interleaving
//! within the preemption bound.
//!
//! Rows are `loom::sync::Mutex`es and each SQL statement is one step taking exactly the row
//! locks PostgreSQL takes, held to commit, as in `loom_pg_protocol.rs`: the rows, the locks and
//! wait-for graph, the steps of the commands both models run the same way and the end checks are
//! shared with it, in `loom_support/pg.rs`. A batch, as `ledger_apply_batch` runs it:
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
use std::ops::{Deref, DerefMut};

use ledger_core::{Command, Decision, Outcome, PaymentId, Refusal, RequestId, Tier};
use loom::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use loom::thread;
use loom_support::pg::{
    self, config, identity_of, sats, Deadlock, ResHead, ResState, Row, Sizes, MAX_ATTEMPTS, N_IDENTITIES,
};
use loom_support::{explore, Report, Trace};

/// Preemption bound of the mixes with the protocol as written; see the module docs.
const PREEMPTION_BOUND: usize = 20;
/// Preemption bound of the planted mistakes: each deadlock needs one preemption.
const MISTAKE_BOUND: usize = 2;
const N_LANES: usize = 2;
const N_REQUESTS: usize = 6;
const N_PAYMENTS: usize = 2;
/// `ledger_pg::batch::EXCLUSIVE_STREAK`.
const EXCLUSIVE_STREAK: u32 = 16;

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

/// One committed batch, for the serial replay.
#[derive(Clone, Debug)]
struct CommittedBatch {
    lane: usize,
    /// The batch's place in its lane (0, 1, ...).
    seq: usize,
    exclusive: bool,
    commands: Vec<(Command, Result<Outcome, Refusal>)>,
}

/// What this model adds to the database: the protocol, the batch lock, the log of batches.
struct Batches {
    protocol: Protocol,
    /// The advisory batch lock, `(1279607111, 1)`.
    batch_lock: RwLock<()>,
    /// Which lanes are inside a batch (hold the batch lock), and whether exclusively.
    in_batch: std::sync::Mutex<[Option<bool>; N_LANES]>,
    log: std::sync::Mutex<Vec<CommittedBatch>>,
    exclusive_reruns: std::sync::Mutex<u64>,
}

type Db = pg::Db<Batches>;

// ── transactions ──────────────────────────────────────────────────────────────────────────

/// Why a batch's transaction stopped before its commit.
enum Abort {
    /// PostgreSQL found a cycle and chose this transaction (40P01): waiting for the row, held
    /// by the lane, would have closed it.
    Deadlock(Row, usize),
    /// `ledger_before_lock_all` in a shared batch (`LDB01`).
    NeedsExclusive,
}

impl From<Deadlock> for Abort {
    fn from(Deadlock(row, holder): Deadlock) -> Abort {
        Abort::Deadlock(row, holder)
    }
}

/// The batch lock as this transaction holds it.
enum BatchGuard<'a> {
    Shared(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

/// A batch's transaction: the batch lock, then its rows (dropped in that order). A shared batch
/// may lock only its lane's stripes (`pg::Tx::own_stripes_of`).
struct Tx<'a> {
    exclusive: bool,
    batch: Option<BatchGuard<'a>>,
    rows: pg::Tx<'a, Batches>,
}

impl<'a> Deref for Tx<'a> {
    type Target = pg::Tx<'a, Batches>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.rows
    }
}

impl<'a> Tx<'a> {
    fn new(db: &'a Db, me: usize, who: &'a str, trace: &'a Trace, exclusive: bool) -> Tx<'a> {
        let mut rows = pg::Tx::new(db, me, who, trace);
        rows.own_stripes_of = (!exclusive).then_some(N_LANES);
        Tx { exclusive, batch: None, rows }
    }

    /// `pg_advisory_xact_lock_shared(1279607111, 1)`, or the exclusive lock. Nothing else is
    /// held yet, so this wait closes no cycle: it is not in the wait-for graph.
    fn batch_lock(&mut self) {
        assert!(self.held_rows().is_empty(), "model: the batch lock is taken first");
        let db = self.db;
        let exclusive = self.exclusive && db.model.protocol != Protocol::RerunTakesBatchLockShared;
        self.batch = Some(if exclusive {
            BatchGuard::Exclusive(db.model.batch_lock.write().unwrap())
        } else {
            BatchGuard::Shared(db.model.batch_lock.read().unwrap())
        });
        self.step(if exclusive { "batch lock, exclusive" } else { "batch lock, shared" });
        let mut in_batch = db.model.in_batch.lock().unwrap();
        in_batch[self.me] = Some(self.exclusive);
        for (lane, other) in in_batch.iter().enumerate() {
            if lane != self.me && other.is_some() && (self.exclusive || *other == Some(true)) {
                db.violation(format!("exclusive: lanes {} and {lane} in a batch at once, one exclusive", self.me));
            }
        }
    }

    fn release_locks(self) {
        self.forget_locks();
        self.db.model.in_batch.lock().unwrap()[self.me] = None;
        // Dropping the guards releases the loom locks (the batch lock with them): waiters may
        // run from here.
        drop(self);
    }

    /// The batch rolls back: every row it wrote gets its value back; nothing becomes visible.
    fn rollback(mut self) {
        self.restore();
        self.release_locks();
    }

    /// Makes the inserted rows and the stripes' balances visible, checks the rows it holds, logs
    /// the batch, then releases every lock.
    fn commit(self, seq: usize, commands: &[Command], answers: &[Result<Outcome, Refusal>]) {
        self.publish();
        self.step(format!("commit: {answers:?}"));
        self.db.model.log.lock().unwrap().push(CommittedBatch {
            lane: self.me,
            seq,
            exclusive: self.exclusive,
            commands: commands.iter().cloned().zip(answers.iter().cloned()).collect(),
        });
        self.release_locks();
    }
}

// ── the steps of this model (`pg::apply` runs the rest) ──────────────────────────────────

/// `ledger_before_lock_all`: `LDB01` in a shared batch.
fn before_lock_all(tx: &mut Tx<'_>) -> Result<(), Abort> {
    if !tx.exclusive && tx.db.model.protocol != Protocol::SharedBatchLocksAllStripes {
        tx.step("before_lock_all: a shared batch needs every stripe: LDB01");
        return Err(Abort::NeedsExclusive);
    }
    Ok(())
}

impl<'a> pg::Txn<'a> for Tx<'a> {
    type Model = Batches;
    type Abort = Abort;
    /// `ledger_decide_locked` looks at the estimate first (a batch holds its identities anyway).
    const IDENTITY_BEFORE_ESTIMATE: bool = false;

    fn rows(&mut self) -> &mut pg::Tx<'a, Batches> {
        &mut self.rows
    }

    /// The stripe moved while this transaction waited for it. A lane's stripe is written by no
    /// other batch while a shared batch runs, and by nothing while an exclusive one does, so in a
    /// batch this is unreachable (whether the failed re-check keeps the row locked, as
    /// `pool_journal_move`'s UPDATE alone does, or releases it with a subtransaction, does not
    /// matter here).
    fn recheck_failed(&mut self, home: usize, r: usize, balance: i64, _held_before: bool) {
        self.db.violation(format!("lanes: lane {} waited for stripe {home}, which moved meanwhile", self.me));
        self.step(format!("fast path r{r}: stripe {home} fell to {balance} while waiting; it stays locked"));
    }

    /// `ledger_before_lock_all`, then every stripe in stripe order, the exact total, and the
    /// stripes evened out (journalled as `rebalance`).
    fn lock_all(&mut self) -> Result<i64, Abort> {
        before_lock_all(self)?;
        Ok(pg::lock_all_stripes(&mut self.rows)?)
    }

    /// `SELECT .. FROM reservations .. FOR UPDATE`, and when there is none the request's row,
    /// read in a second statement. In a batch both rows are the lane's own, committed by its
    /// earlier batches or written by this one: no other transaction commits them meanwhile, so
    /// the order of those reads (the one-command race `loom_pg_protocol.rs` looks at) does not
    /// matter here.
    fn find_reservation(&mut self, r: usize) -> Result<Result<(ResHead, ResState), Refusal>, Abort> {
        let Some(head) = self.res_head(r) else {
            let request = self.request_head(r).is_some();
            return Ok(Err(if request { Refusal::NotReserved } else { Refusal::UnknownRequest }));
        };
        let state = *self.reservation(r)?;
        Ok(Ok((head, state)))
    }
}

// ── batches ───────────────────────────────────────────────────────────────────────────────

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
    if tx.db.model.protocol != Protocol::IdentitiesLockedByCommands {
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
        if tx.db.model.protocol == Protocol::IdentitiesReversedOnLane1 && tx.me == 1 {
            ids.reverse();
        }
        for &i in &ids {
            tx.step(format!("identity {i} FOR UPDATE"));
            tx.identity(i)?;
        }
    }
    commands.iter().map(|c| pg::apply(tx, c)).collect()
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
                    *self.db.model.exclusive_reruns.lock().unwrap() += 1;
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

/// Every batch a lane ran committed exactly once, in the lane's order, and what the lane
/// answered its callers is what committed.
fn check_once(db: &Db, answered: &[Vec<Vec<Result<Outcome, Refusal>>>]) -> Vec<String> {
    let log = db.model.log.lock().unwrap();
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

/// The serial check (`pg::serial_order_fits`), each batch a transaction of its lane.
fn check_serial(db: &Db, tiers: &[Tier; N_IDENTITIES]) -> Option<String> {
    let log = db.model.log.lock().unwrap().clone();
    let committed: Vec<(usize, &pg::Answers)> = log.iter().map(|b| (b.lane, b.commands.as_slice())).collect();
    let end = pg::serial_order_fits(db, tiers, N_LANES, &committed).err()?;
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
            // The batch lock first: the rows' loom objects come after it, as they always have.
            let batches = Batches {
                protocol: mix.protocol,
                batch_lock: RwLock::new(()),
                in_batch: std::sync::Mutex::default(),
                log: std::sync::Mutex::default(),
                exclusive_reruns: std::sync::Mutex::default(),
            };
            let sizes = Sizes { requests: N_REQUESTS, payments: N_PAYMENTS, transactions: N_LANES };
            let db = Arc::new(Db::new(config(mix.pool_initial_sats), budgets, sizes, batches));
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
            if *db.model.exclusive_reruns.lock().unwrap() > 0 {
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
            money.extend(pg::check_end(&db, &reductions));
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
