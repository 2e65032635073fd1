//! What the two loom models of `ledger-pg`'s locking share (`loom_pg_protocol.rs`, one command
//! per transaction, and `loom_pg_batches.rs`, a batch of commands per transaction): the tables as
//! rows PostgreSQL locks, a transaction's row locks held to commit with the wait-for graph
//! PostgreSQL's deadlock detector walks, the steps of the SQL functions both run the same way, and
//! the end checks (I1-I6, and a serial order of the committed transactions on
//! `ledger_core::Ledger`).
//!
//! Rows are `loom::sync::Mutex`es, and each SQL statement is one step that takes exactly the row
//! locks PostgreSQL would take, held to commit (READ COMMITTED). A row inserted by a transaction
//! ([`Inserted`]) becomes visible to the others at its commit; a stripe's committed balance, for
//! plain reads, is a loom atomic written at the commit. What the models do differently stays in
//! their own files: what a transaction is (its commit, rollback and retry), and the steps of
//! [`Txn`] ([`apply`] runs the rest): what a fast path whose re-check failed does with its stripe,
//! `ledger_before_lock_all`, how `record` and `release` look for a reservation, and whether
//! `decide` locks the identity before it looks at the estimate.
//!
//! Two stripes instead of 16, three identities, one clock instant (no window resets, no expiry).

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;

use ledger_core::{
    Bps, Budgets, Command, Config, Decision, GateReason, Ledger, Outcome, Pubkey, Refusal, Sats, Tier, TimeMs,
};
use loom::sync::atomic::{AtomicBool, AtomicI64};
use loom::sync::{Mutex, MutexGuard};

use super::Trace;

pub const N_STRIPES: usize = 2;
pub const N_IDENTITIES: usize = 3;
/// How many times a transaction is run again (after a deadlock, or `LDB01` in a batch) before
/// the model gives up.
pub const MAX_ATTEMPTS: usize = 4;
pub const NOW: TimeMs = TimeMs(1_000);

pub fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

pub fn config(pool_initial_sats: u64) -> Config {
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
pub enum Row {
    Advisory(usize),
    Request(usize),
    Reservation(usize),
    Identity(usize),
    Stripe(usize),
    Payment(usize),
}

#[derive(Clone, Debug)]
pub struct IdentityRow {
    pub budget: u64,
    pub absorbed: u64,
    pub reserved: u64,
}

/// What a journal row is for; `pool_journal.kind` with its request or payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Genesis,
    Debit(usize),
    Release(usize),
    Record(usize),
    Credit(usize),
    Rebalance,
}

#[derive(Clone, Debug, Default)]
pub struct StripeRow {
    pub balance: i64,
    pub reserved: i64,
    pub absorbed: i64,
    pub credited: i64,
    pub n_grants: i64,
    pub journal: Vec<(Kind, i64)>,
}

impl StripeRow {
    /// A journal row and the stripe update its trigger makes.
    pub fn journal(&mut self, kind: Kind, amount: i64, d_reserved: i64) {
        self.balance += amount;
        self.reserved += d_reserved;
        self.journal.push((kind, amount));
    }
}

/// The immutable part of a request row.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead {
    pub identity: usize,
    pub estimated: u64,
    pub decision: Decision,
}

/// The immutable part of a reservation row.
#[derive(Clone, Copy, Debug)]
pub struct ResHead {
    pub identity: usize,
    pub amount: u64,
    pub by_decide: bool,
    pub stripe: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResState {
    Reserved,
    Recorded { actual: u64, absorbed: u64, returned: u64, overrun: u64 },
    Released,
}

/// An immutable row that becomes visible at its inserter's commit. The data is `std` (loom need
/// not see it: it is written once, before the flag, and read only after the flag); the flag is
/// loom's, so loom orders every plain read against the commit.
pub struct Inserted<T> {
    visible: AtomicBool,
    data: std::sync::Mutex<Option<T>>,
}

impl<T: Copy> Inserted<T> {
    fn new() -> Self {
        Inserted { visible: AtomicBool::new(false), data: std::sync::Mutex::new(None) }
    }

    /// A plain `SELECT`: the committed row, if any.
    pub fn read(&self) -> Option<T> {
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

/// Who holds and who waits: the wait-for graph PostgreSQL's deadlock detector walks, indexed by
/// the model's transactions (its client threads or lanes). `std`: it is updated right beside the
/// loom lock operations it mirrors, with no loom operation between.
pub struct LockTable {
    pub holder: HashMap<Row, usize>,
    pub waiting: Vec<Option<Row>>,
}

/// The database: every row of the model, the lock table, what went wrong, and `model`, what one
/// model adds (its batch lock, its log, its counters).
pub struct Db<M> {
    pub config: Config,
    /// What the model adds; built before the rows (its loom objects come first).
    pub model: M,
    pub advisory: Vec<Mutex<()>>,
    pub request_head: Vec<Inserted<RequestHead>>,
    /// The request row's lock; it guards the request's `refused_reservations` rows.
    pub request_lock: Vec<Mutex<Vec<(u64, u64)>>>,
    pub res_head: Vec<Inserted<ResHead>>,
    pub res_state: Vec<Mutex<ResState>>,
    pub identities: Vec<Mutex<IdentityRow>>,
    pub stripes: Vec<Mutex<StripeRow>>,
    /// Each stripe's committed balance, for plain reads.
    pub stripe_committed: Vec<AtomicI64>,
    pub payments: Vec<Mutex<Option<(u64, u64)>>>,
    pub locks: std::sync::Mutex<LockTable>,
    pub violations: std::sync::Mutex<Vec<String>>,
    pub deadlocks: std::sync::Mutex<u64>,
}

/// How many of each row a model has.
pub struct Sizes {
    pub requests: usize,
    pub payments: usize,
    /// Transactions running at once: the wait-for graph's nodes.
    pub transactions: usize,
}

impl<M> Db<M> {
    pub fn new(config: Config, budgets: [u64; N_IDENTITIES], sizes: Sizes, model: M) -> Db<M> {
        let initial = config.pool_initial_sats.to_u64() as i64;
        let n = N_STRIPES as i64;
        let genesis = |s: usize| initial / n + i64::from((s as i64) < initial % n);
        Db {
            config,
            model,
            advisory: (0..sizes.requests).map(|_| Mutex::new(())).collect(),
            request_head: (0..sizes.requests).map(|_| Inserted::new()).collect(),
            request_lock: (0..sizes.requests).map(|_| Mutex::new(Vec::new())).collect(),
            res_head: (0..sizes.requests).map(|_| Inserted::new()).collect(),
            res_state: (0..sizes.requests).map(|_| Mutex::new(ResState::Reserved)).collect(),
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
            payments: (0..sizes.payments).map(|_| Mutex::new(None)).collect(),
            locks: std::sync::Mutex::new(LockTable { holder: HashMap::new(), waiting: vec![None; sizes.transactions] }),
            violations: std::sync::Mutex::default(),
            deadlocks: std::sync::Mutex::default(),
        }
    }

    pub fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

// ── transactions ──────────────────────────────────────────────────────────────────────────

/// PostgreSQL found a cycle and chose this transaction (40P01): waiting for the row, held by
/// the transaction, would have closed it.
pub struct Deadlock(pub Row, pub usize);

/// A row this transaction locked, and its value before, for a rollback.
pub struct Held<'a, T> {
    pub idx: usize,
    pub guard: MutexGuard<'a, T>,
    pub before: T,
}

/// Takes `row`'s lock for transaction `me`, unless waiting for it would close a cycle of waits.
fn acquire<'a, T: Clone>(db: &Db<impl Sized>, me: usize, row: Row, m: &'a Mutex<T>) -> Result<Held<'a, T>, Deadlock> {
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
            assert!(hops <= table.waiting.len(), "model: wait-for walk loops without this transaction");
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
    db: &'a Db<impl Sized>,
    me: usize,
    held: &'b mut Vec<Held<'a, T>>,
    row: Row,
    idx: usize,
    m: &'a Mutex<T>,
) -> Result<&'b mut T, Deadlock> {
    let at = match held.iter().position(|h| h.idx == idx) {
        Some(at) => at,
        None => {
            held.push(acquire(db, me, row, m)?);
            held.len() - 1
        }
    };
    Ok(&mut held[at].guard)
}

/// One transaction: the row locks it holds (to its commit or rollback) and the rows it inserted.
pub struct Tx<'a, M> {
    pub db: &'a Db<M>,
    /// Its node in the wait-for graph.
    pub me: usize,
    pub who: &'a str,
    pub trace: &'a Trace,
    /// `Some(n)`: a shared batch of lane `me` of `n`, which must lock no stripe but its lane's
    /// (`s % n == me`); a stripe of another lane is a violation (`lanes: ..`).
    pub own_stripes_of: Option<usize>,
    pub advisory: Vec<(usize, MutexGuard<'a, ()>)>,
    pub requests: Vec<Held<'a, Vec<(u64, u64)>>>,
    pub reservations: Vec<Held<'a, ResState>>,
    pub identities: Vec<Held<'a, IdentityRow>>,
    pub stripes: Vec<Held<'a, StripeRow>>,
    pub payments: Vec<Held<'a, Option<(u64, u64)>>>,
    /// Rows this transaction inserted: visible to it at once, to others at its commit.
    pub new_requests: Vec<(usize, RequestHead)>,
    pub new_reservations: Vec<(usize, ResHead)>,
}

impl<'a, M> Tx<'a, M> {
    pub fn new(db: &'a Db<M>, me: usize, who: &'a str, trace: &'a Trace) -> Tx<'a, M> {
        Tx {
            db,
            me,
            who,
            trace,
            own_stripes_of: None,
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

    pub fn step(&self, what: impl AsRef<str>) {
        self.trace.step(self.who, what);
    }

    pub fn advisory_lock(&mut self, r: usize) -> Result<(), Deadlock> {
        if !self.advisory.iter().any(|(i, _)| *i == r) {
            let held = acquire(self.db, self.me, Row::Advisory(r), &self.db.advisory[r])?;
            self.advisory.push((r, held.guard));
        }
        Ok(())
    }

    /// The request row as this transaction sees it (its own insert, or the committed row).
    pub fn request_head(&self, r: usize) -> Option<RequestHead> {
        match self.new_requests.iter().find(|(q, _)| *q == r) {
            Some((_, head)) => Some(*head),
            None => self.db.request_head[r].read(),
        }
    }

    /// The reservation row as this transaction sees it (its own insert, or the committed row).
    pub fn res_head(&self, r: usize) -> Option<ResHead> {
        match self.new_reservations.iter().find(|(q, _)| *q == r) {
            Some((_, head)) => Some(*head),
            None => self.db.res_head[r].read(),
        }
    }

    pub fn request(&mut self, r: usize) -> Result<&mut Vec<(u64, u64)>, Deadlock> {
        let db = self.db;
        row_of(db, self.me, &mut self.requests, Row::Request(r), r, &db.request_lock[r])
    }

    pub fn reservation(&mut self, r: usize) -> Result<&mut ResState, Deadlock> {
        let db = self.db;
        row_of(db, self.me, &mut self.reservations, Row::Reservation(r), r, &db.res_state[r])
    }

    pub fn identity(&mut self, i: usize) -> Result<&mut IdentityRow, Deadlock> {
        let db = self.db;
        row_of(db, self.me, &mut self.identities, Row::Identity(i), i, &db.identities[i])
    }

    pub fn holds_stripe(&self, s: usize) -> bool {
        self.stripes.iter().any(|h| h.idx == s)
    }

    pub fn stripe(&mut self, s: usize) -> Result<&mut StripeRow, Deadlock> {
        if let Some(n) = self.own_stripes_of {
            if s % n != self.me && !self.holds_stripe(s) {
                self.db.violation(format!("lanes: a shared batch of lane {} locks stripe {s}", self.me));
            }
        }
        let db = self.db;
        row_of(db, self.me, &mut self.stripes, Row::Stripe(s), s, &db.stripes[s])
    }

    pub fn payment(&mut self, p: usize) -> Result<&mut Option<(u64, u64)>, Deadlock> {
        let db = self.db;
        row_of(db, self.me, &mut self.payments, Row::Payment(p), p, &db.payments[p])
    }

    /// Every row lock this transaction holds, to forget in the lock table.
    pub fn held_rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self.advisory.iter().map(|(i, _)| Row::Advisory(*i)).collect();
        rows.extend(self.requests.iter().map(|h| Row::Request(h.idx)));
        rows.extend(self.reservations.iter().map(|h| Row::Reservation(h.idx)));
        rows.extend(self.identities.iter().map(|h| Row::Identity(h.idx)));
        rows.extend(self.stripes.iter().map(|h| Row::Stripe(h.idx)));
        rows.extend(self.payments.iter().map(|h| Row::Payment(h.idx)));
        rows
    }

    /// Forgets every row lock this transaction holds in the lock table; dropping the
    /// transaction then releases the loom locks.
    pub fn forget_locks(&self) {
        let rows = self.held_rows();
        let mut table = self.db.locks.lock().unwrap();
        for row in rows {
            table.holder.remove(&row);
        }
    }

    /// The rollback's writes: every row this transaction wrote gets its value back (nothing it
    /// inserted was published).
    pub fn restore(&mut self) {
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
    }

    /// The commit's writes: the inserted rows and the stripes' balances become visible; and the
    /// checks of the rows it holds (I1, I2 per stripe, I4 on identities that reserved more).
    pub fn publish(&self) {
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
    }
}

// ── the pool helpers (sql/functions/ledger_pool_*.sql) ───────────────────────────────────

/// `ledger_pool_lock_all` once it may lock every stripe: every stripe in stripe order, the exact
/// total, and the stripes evened out (journalled as `rebalance`).
pub fn lock_all_stripes<M>(tx: &mut Tx<'_, M>) -> Result<i64, Deadlock> {
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
fn pool_at_least<M>(tx: &mut Tx<'_, M>, home: usize, amount: u64) -> bool {
    let balance = if tx.holds_stripe(home) {
        tx.stripes.iter().find(|h| h.idx == home).unwrap().guard.balance
    } else {
        tx.db.stripe_committed[home].load(SeqCst)
    };
    tx.step(format!("pool_at_least(stripe {home}, {amount}): stripe holds {balance}"));
    balance >= amount as i64
}

/// How the debit's fast path ended.
pub enum FastPath {
    /// The home stripe covered the amount and is debited.
    Debited,
    /// The committed home stripe is short: nothing was locked.
    Short,
    /// The home stripe covered the amount when read, but this transaction waited for its lock
    /// and PostgreSQL's EvalPlanQual re-check on the latest committed version fails: the row is
    /// locked although nothing was updated. `held_before`: it was locked before the statement.
    RecheckFailed { balance: i64, held_before: bool },
}

/// The debit's fast path: `pool_journal_move`'s conditional `UPDATE .. WHERE balance_sats +
/// amount >= 0` on the home stripe (the journal row's BEFORE INSERT trigger). It reads the
/// committed row; a row that fails the condition is not locked.
fn fast_debit<M>(tx: &mut Tx<'_, M>, home: usize, r: usize, amount: i64) -> Result<FastPath, Deadlock> {
    let held_before = tx.holds_stripe(home);
    let snapshot = if held_before { tx.stripe(home)?.balance } else { tx.db.stripe_committed[home].load(SeqCst) };
    if snapshot < amount {
        tx.step(format!("fast path r{r}: stripe {home} holds {snapshot} < {amount}, nothing locked"));
        return Ok(FastPath::Short);
    }
    let stripe = tx.stripe(home)?;
    if stripe.balance >= amount {
        stripe.journal(Kind::Debit(r), -amount, amount);
        tx.step(format!("debit r{r} {amount} on stripe {home} (fast path)"));
        return Ok(FastPath::Debited);
    }
    Ok(FastPath::RecheckFailed { balance: stripe.balance, held_before })
}

/// The debit's slow path, every stripe locked and their total at least `amount`: the home stripe
/// first, then the others; the reservation is booked on `home`.
fn spread_debit<M>(tx: &mut Tx<'_, M>, home: usize, r: usize, amount: i64) -> Result<(), Deadlock> {
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
    Ok(())
}

// ── the functions ─────────────────────────────────────────────────────────────────────────

fn remaining(identity: &IdentityRow) -> u64 {
    identity.budget.saturating_sub(identity.absorbed + identity.reserved)
}

pub fn identity_of(pubkey: &Pubkey) -> usize {
    ledger_harness::user_of(pubkey).expect("a model pubkey") as usize
}

/// A model's transaction: the shared rows, and the steps the model runs its own way.
pub trait Txn<'a> {
    /// What the model adds to the database.
    type Model: 'a;
    /// Why the transaction stops before its commit: a deadlock, or what else the model has.
    type Abort: From<Deadlock>;
    /// Does `decide` lock the identity before it looks at the estimate (`ledger_decide`), or
    /// only for an estimate above zero (`ledger_decide_locked`, in a batch)?
    const IDENTITY_BEFORE_ESTIMATE: bool;

    fn rows(&mut self) -> &mut Tx<'a, Self::Model>;

    /// The debit's fast path waited for the home stripe, whose re-check then failed
    /// ([`FastPath::RecheckFailed`]): what becomes of the row lock it took. The slow path follows.
    fn recheck_failed(&mut self, home: usize, r: usize, balance: i64, held_before: bool);

    /// `ledger_pool_lock_all`: every stripe, the exact total (see [`lock_all_stripes`]).
    fn lock_all(&mut self) -> Result<i64, Self::Abort>;

    /// `record`'s and `release`'s look for reservation `r`, then its row `FOR UPDATE`.
    fn find_reservation(&mut self, r: usize) -> Result<Result<(ResHead, ResState), Refusal>, Self::Abort>;
}

/// `ledger_pool_debit`: `Ok(())` when exactly `amount` was debited for request `r` (the
/// reservation is booked on `home`), `Err(total)` with the exact pool balance otherwise: the
/// fast path, then, unless it debited, every stripe and the slow path.
fn pool_debit<'a, T: Txn<'a>>(tx: &mut T, home: usize, r: usize, amount: u64) -> Result<Result<(), i64>, T::Abort> {
    let amount = amount as i64;
    match fast_debit(tx.rows(), home, r, amount)? {
        FastPath::Debited => return Ok(Ok(())),
        FastPath::Short => {}
        FastPath::RecheckFailed { balance, held_before } => tx.recheck_failed(home, r, balance, held_before),
    }
    let total = tx.lock_all()?;
    if total < amount {
        return Ok(Err(total));
    }
    spread_debit(tx.rows(), home, r, amount)?;
    Ok(Ok(()))
}

/// The pool steps of `decide` and `reserve_partial` once the identity's remaining `left` is
/// known: when it covers `amount`, the debit (`None`: debited); when it does not, a plain read
/// of the home stripe (`ledger_pool_at_least`) or, if that stripe is short of the remaining,
/// every stripe. `Some(pool)`: what the pool can give.
fn pool_steps<'a, T: Txn<'a>>(
    tx: &mut T,
    home: usize,
    r: usize,
    amount: u64,
    left: u64,
) -> Result<Option<u64>, T::Abort> {
    Ok(if amount <= left {
        pool_debit(tx, home, r, amount)?.err().map(|total| total as u64)
    } else if pool_at_least(tx.rows(), home, left) {
        Some(left)
    } else {
        Some(tx.lock_all()? as u64)
    })
}

/// `decide(r)`: the advisory lock on `r`; a plain read of request `r` (a repeat answers from
/// it); the identity `FOR UPDATE` (see [`Txn::IDENTITY_BEFORE_ESTIMATE`]); then the gates, or
/// the pool steps; the new request row and, for a free answer, the reservation become visible
/// at commit.
pub fn decide<'a, T: Txn<'a>>(
    tx: &mut T,
    r: usize,
    i: usize,
    estimated: u64,
) -> Result<Result<Outcome, Refusal>, T::Abort> {
    let home = r % N_STRIPES;
    tx.rows().advisory_lock(r)?;
    if let Some(req) = tx.rows().request_head(r) {
        if req.identity != i {
            return Ok(Err(Refusal::ExistsWithDifferentPubkey));
        }
        if req.estimated != estimated {
            return Ok(Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: sats(req.estimated) }));
        }
        return Ok(Ok(Outcome::Decided { decision: req.decision }));
    }
    let gate = |reason| Decision::Gate { reason, charge_sats: sats(estimated) };
    if T::IDENTITY_BEFORE_ESTIMATE {
        tx.rows().identity(i)?;
    }
    let mut pool = None;
    let mut decision = None;
    let mut left = 0;
    if estimated == 0 {
        decision = Some(gate(GateReason::ZeroEstimate));
    } else {
        let identity = tx.rows().identity(i)?;
        left = remaining(identity);
        if identity.budget == 0 {
            decision = Some(gate(GateReason::ZeroBudget));
        } else if left == 0 {
            decision = Some(gate(GateReason::DailyBudgetExhausted));
        } else {
            match pool_steps(tx, home, r, estimated, left)? {
                None => decision = Some(Decision::Free { reserved_sats: sats(estimated) }),
                Some(found) => pool = Some(found),
            }
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
    let tx = tx.rows();
    tx.new_requests.push((r, RequestHead { identity: i, estimated, decision }));
    if let Decision::Free { .. } = decision {
        tx.new_reservations.push((r, ResHead { identity: i, amount: estimated, by_decide: true, stripe: home }));
        tx.identity(i)?.reserved += estimated;
    }
    tx.step(format!("decide r{r}: {decision:?}"));
    Ok(Ok(Outcome::Decided { decision }))
}

/// `reserve_partial(r)`: a plain read of request `r`, then its row `FOR UPDATE` (it serialises
/// duplicates); a plain read of reservation `r`; `refused_reservations` (read and written under
/// the request lock); the identity `FOR UPDATE`; then the same pool steps as `decide`.
pub fn reserve_partial<'a, T: Txn<'a>>(
    tx: &mut T,
    r: usize,
    i: usize,
    amount: u64,
) -> Result<Result<Outcome, Refusal>, T::Abort> {
    let home = r % N_STRIPES;
    let rows = tx.rows();
    let Some(req) = rows.request_head(r) else {
        return Ok(Err(Refusal::UnknownRequest));
    };
    rows.request(r)?;
    if req.identity != i {
        return Ok(Err(Refusal::ExistsWithDifferentPubkey));
    }
    if let Some(res) = rows.res_head(r) {
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
    if let Some(&(_, available)) = rows.request(r)?.iter().find(|(a, _)| *a == amount) {
        return Ok(Err(Refusal::InsufficientFunds { available_sats: sats(available) }));
    }
    let left = remaining(rows.identity(i)?);
    let pool = pool_steps(tx, home, r, amount, left)?;
    let tx = tx.rows();
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

/// One command's steps in transaction `tx` (`set_tier` and `expire` are not modelled).
pub fn apply<'a, T: Txn<'a>>(tx: &mut T, command: &Command) -> Result<Result<Outcome, Refusal>, T::Abort> {
    match *command {
        Command::Decide { request_id, pubkey, estimated_sats } => {
            decide(tx, request_id.0 as usize, identity_of(&pubkey), estimated_sats.to_u64())
        }
        Command::ReservePartial { request_id, pubkey, amount_sats } => {
            reserve_partial(tx, request_id.0 as usize, identity_of(&pubkey), amount_sats.to_u64())
        }
        Command::Release { request_id } => {
            let r = request_id.0 as usize;
            match tx.find_reservation(r)? {
                Ok((head, state)) => Ok(release_found(tx.rows(), r, head, state)?),
                Err(refusal) => Ok(Err(refusal)),
            }
        }
        Command::Record { request_id, actual_sats } => {
            let r = request_id.0 as usize;
            match tx.find_reservation(r)? {
                Ok((head, state)) => Ok(record_found(tx.rows(), r, head, state, actual_sats.to_u64())?),
                Err(refusal) => Ok(Err(refusal)),
            }
        }
        Command::Credit { payment_id, paid_sats } => Ok(credit(tx.rows(), payment_id.0 as usize, paid_sats.to_u64())?),
        Command::SetTier { .. } | Command::Expire => unreachable!("not modelled"),
    }
}

/// `release(r)` once its reservation is found and locked `FOR UPDATE`: the identity, then the
/// home stripe (the journal trigger).
fn release_found<M>(
    tx: &mut Tx<'_, M>,
    r: usize,
    head: ResHead,
    state: ResState,
) -> Result<Result<Outcome, Refusal>, Deadlock> {
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

/// `record(r)` once its reservation is found and locked `FOR UPDATE`: the identity, then the
/// home stripe (the journal trigger).
fn record_found<M>(
    tx: &mut Tx<'_, M>,
    r: usize,
    head: ResHead,
    state: ResState,
    actual: u64,
) -> Result<Result<Outcome, Refusal>, Deadlock> {
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

/// `credit(p)`: the payment key (the plain read and the `ON CONFLICT` wait on a concurrent
/// insert of the same id, as one lock), then the payment's stripe (the journal trigger).
fn credit<M>(tx: &mut Tx<'_, M>, p: usize, paid: u64) -> Result<Result<Outcome, Refusal>, Deadlock> {
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

// ── the checks ────────────────────────────────────────────────────────────────────────────

/// I1-I6 on the end state; `reductions` is what each caller's charge was reduced by.
pub fn check_end<M>(db: &Db<M>, reductions: &[(usize, u64)]) -> Vec<String> {
    let mut bad = Vec::new();
    let stripes: Vec<StripeRow> = db.stripes.iter().map(|s| s.lock().unwrap().clone()).collect();
    let identities: Vec<IdentityRow> = db.identities.iter().map(|i| i.lock().unwrap().clone()).collect();
    let res: Vec<(Option<ResHead>, ResState)> =
        db.res_head.iter().zip(&db.res_state).map(|(head, state)| (head.read(), *state.lock().unwrap())).collect();
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
    for (p, payment) in db.payments.iter().enumerate() {
        let credits = journal.iter().filter(|(k, _)| *k == Kind::Credit(p)).count();
        let expected = usize::from(payment.lock().unwrap().is_some());
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

/// The end balances: pool, reserved, absorbed, credited, and each identity's reserved and
/// absorbed.
pub type Balances = (Vec<u64>, Vec<(u64, u64)>);

/// The end balances the serial replay must reach.
pub fn model_balances<M>(db: &Db<M>) -> Balances {
    let stripes: Vec<StripeRow> = db.stripes.iter().map(|s| s.lock().unwrap().clone()).collect();
    let sum = |f: fn(&StripeRow) -> i64| stripes.iter().map(f).sum::<i64>() as u64;
    let totals = vec![sum(|s| s.balance), sum(|s| s.reserved), sum(|s| s.absorbed), sum(|s| s.credited)];
    let identities = db.identities.iter().map(|i| i.lock().unwrap()).map(|i| (i.reserved, i.absorbed)).collect();
    (totals, identities)
}

fn ledger_balances(ledger: &Ledger) -> Balances {
    let t = ledger.totals();
    let totals =
        vec![t.pool_sats, t.reserved_sats, t.absorbed_sats, t.credited_sats].into_iter().map(Sats::to_u64).collect();
    let identities = (0..N_IDENTITIES as u64)
        .map(|i| ledger.identity(&ledger_harness::user_pubkey(i)).expect("created at setup"))
        .map(|i| (i.reserved_sats.to_u64(), i.sats_absorbed_today.to_u64()))
        .collect();
    (totals, identities)
}

/// The commands of one committed transaction, each with its answer.
pub type Answers = [(Command, Result<Outcome, Refusal>)];

/// `commands` replayed on `ledger`: `None` when an answer differs.
fn replay(ledger: &Ledger, commands: &Answers) -> Option<Ledger> {
    let mut replay = ledger.clone();
    let fits = commands.iter().all(|(c, result)| replay.apply(c, NOW, &mut Vec::new()) == *result);
    fits.then_some(replay)
}

/// Is there an order of the committed transactions, each client's in order, that gives every
/// answer and the end balances on the reference? Depth-first, pruned at the first answer that
/// differs.
fn serial_order_exists(ledger: &Ledger, clients: &[Vec<&Answers>], at: &mut [usize], end: &Balances) -> bool {
    if clients.iter().zip(at.iter()).all(|(txs, &n)| n == txs.len()) {
        return ledger_balances(ledger) == *end;
    }
    for c in 0..clients.len() {
        let Some(next) = clients[c].get(at[c]) else { continue };
        let Some(after) = replay(ledger, next) else { continue };
        at[c] += 1;
        let found = serial_order_exists(&after, clients, at, end);
        at[c] -= 1;
        if found {
            return true;
        }
    }
    false
}

/// The serial check: does some order of the committed transactions (`log`, in commit order, each
/// with its client: a thread or a lane), each client's in order, replayed on `ledger_core::Ledger`
/// with the identities at `tiers`, give every answer and the end balances? The commit order is
/// tried first (one replay), then any order. `Err` holds the end balances when none does.
pub fn serial_order_fits<M>(
    db: &Db<M>,
    tiers: &[Tier; N_IDENTITIES],
    n_clients: usize,
    log: &[(usize, &Answers)],
) -> Result<(), Balances> {
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
    for (_, commands) in log {
        in_commit_order = in_commit_order.and_then(|l| replay(&l, commands));
    }
    if in_commit_order.is_some_and(|l| ledger_balances(&l) == end) {
        return Ok(());
    }
    let clients: Vec<Vec<&Answers>> =
        (0..n_clients).map(|c| log.iter().filter(|(of, _)| *of == c).map(|(_, a)| *a).collect()).collect();
    if serial_order_exists(&genesis, &clients, &mut vec![0; n_clients], &end) {
        return Ok(());
    }
    Err(end)
}
