//! loom model of the locking protocol `ledger-pg` really runs for one command per transaction
//! (`crates/ledger-pg/sql/functions/`: the striped pool of `ledger_pool_debit`,
//! `pool_journal_move` and `ledger_pool_lock_all`, with its one-stripe fast path and its
//! lock-every-stripe slow path; a grant's insert closes the reservation `record` already holds),
//! checked over every interleaving of three client threads within the preemption bound. The
//! batch protocol (lanes, the batch lock, the exclusive rerun) is modelled in
//! `loom_pg_batches.rs`; the rows, the locks and wait-for graph, the steps both models run the
//! same way and the end checks are shared, in `loom_support/pg.rs`.
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
//! journal; each payment journalled once; stripes, identities and outstanding reservations agree
//! on what is reserved); I3 (a charge is reduced by exactly what the journal debited for that
//! request); I4 (absorbed + reserved within the identity's budget at every commit that
//! reserves); I5 (grants sum to the absorption, at most one close per request, and each close
//! journalled once); I6 (nothing left outstanding). And the answers: some serial order of the committed commands, each thread's in
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

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;

use ledger_core::{Command, Decision, Outcome, PaymentId, Refusal, RequestId, Tier};
use loom::sync::Arc;
use loom::thread;
use loom_support::pg::{self, config, sats, Deadlock, ResHead, ResState, Row, Sizes, MAX_ATTEMPTS, N_IDENTITIES};
use loom_support::{explore, Report, Trace};

/// Preemption bound of every mix in this file; see the module docs.
const PREEMPTION_BOUND: usize = 3;
const N_REQUESTS: usize = 4;
const N_PAYMENTS: usize = 1;
const N_THREADS: usize = 3;

/// One committed command and its answer, for the serial replay.
#[derive(Clone, Debug)]
struct Committed {
    thread: usize,
    answer: (Command, Result<Outcome, Refusal>),
}

/// What this model adds to the database: the commit log, and what the tests look for.
#[derive(Default)]
struct Commands {
    log: std::sync::Mutex<Vec<Committed>>,
    /// Fast paths whose re-check failed after a wait (their subtransaction rolled back).
    failed_rechecks: AtomicU64,
    /// Of those, the ones that released the stripe to a transaction in the slow path, which
    /// held a lower stripe and waited for this one: the cycle, had the stripe been kept.
    released_to_slow_path: AtomicU64,
    /// `record`s and `release`s that found no reservation, then the request, then the
    /// reservation after all (its decide committed between their statements).
    reservations_found_again: AtomicU64,
}

type Db = pg::Db<Commands>;
/// One command's transaction.
type Tx<'a> = pg::Tx<'a, Commands>;

// ── transactions ──────────────────────────────────────────────────────────────────────────

/// The debit's fast path rolls its subtransaction back: the stripe's lock, taken by a re-check
/// that failed (nothing was written under it), is released, and a waiter may take it.
/// Returns the transaction it releases it to when that one waits for it holding another
/// stripe (in the slow path).
fn release_stripe(tx: &mut Tx<'_>, s: usize) -> Option<usize> {
    let at = tx.stripes.iter().position(|h| h.idx == s).expect("model: releasing a stripe not held");
    let held = tx.stripes.remove(at);
    assert_eq!(held.guard.journal.len(), held.before.journal.len(), "model: stripe {s} written in the subtransaction");
    let slow_path_waiter = {
        let mut table = tx.db.locks.lock().unwrap();
        table.holder.remove(&Row::Stripe(s));
        (0..N_THREADS).find(|&t| {
            table.waiting[t] == Some(Row::Stripe(s))
                && table.holder.iter().any(|(row, &h)| h == t && matches!(row, Row::Stripe(_)))
        })
    };
    drop(held);
    slow_path_waiter
}

fn release_locks(tx: Tx<'_>) {
    tx.forget_locks();
    // Dropping the guards releases the loom locks: waiters may run from here.
    drop(tx);
}

/// 40P01: every row this transaction wrote gets its value back; nothing becomes visible.
fn rollback(mut tx: Tx<'_>) {
    tx.restore();
    release_locks(tx);
}

/// Makes the inserted rows and the stripes' balances visible, checks the rows it holds, logs
/// the answer, then releases every lock.
fn commit(tx: Tx<'_>, command: &Command, result: &Result<Outcome, Refusal>) {
    tx.publish();
    tx.step(format!("{command:?} -> {result:?}"));
    let answer = (command.clone(), result.clone());
    tx.db.model.log.lock().unwrap().push(Committed { thread: tx.me, answer });
    release_locks(tx);
}

// ── the steps of this model (`pg::apply` runs the rest) ──────────────────────────────────

impl<'a> pg::Txn<'a> for Tx<'a> {
    type Model = Commands;
    type Abort = Deadlock;
    /// `ledger_decide` locks the identity first.
    const IDENTITY_BEFORE_ESTIMATE: bool = true;

    fn rows(&mut self) -> &mut Tx<'a> {
        self
    }

    /// The fast path ran in a subtransaction (`ledger_pool_debit`'s `BEGIN .. EXCEPTION` block):
    /// re-checked on the version a concurrent commit left, its condition fails, with the row
    /// locked although nothing was updated. The subtransaction rolls back (`RAISE .. LDB02`,
    /// caught): the lock was its own, and is released.
    fn recheck_failed(&mut self, home: usize, r: usize, balance: i64, held_before: bool) {
        self.db.model.failed_rechecks.fetch_add(1, SeqCst);
        let to = match if held_before { None } else { release_stripe(self, home) } {
            Some(t) => {
                self.db.model.released_to_slow_path.fetch_add(1, SeqCst);
                format!(" to thread {t}, which waits for it holding another stripe")
            }
            None => String::new(),
        };
        self.step(format!(
            "fast path r{r}: stripe {home} fell to {balance} while waiting; the subtransaction rolls back, \
             releasing it{to}"
        ));
    }

    fn lock_all(&mut self) -> Result<i64, Deadlock> {
        pg::lock_all_stripes(self)
    }

    /// The reservation of `r`, found by a plain read, then locked `FOR UPDATE`. When there is
    /// none, the request, then the reservation again: each a statement of its own, with a newer
    /// snapshot.
    fn find_reservation(&mut self, r: usize) -> Result<Result<(ResHead, ResState), Refusal>, Deadlock> {
        let head = match self.db.res_head[r].read() {
            Some(head) => head,
            None => {
                self.step(format!("reservation r{r}: no committed row"));
                if self.db.request_head[r].read().is_none() {
                    self.step(format!("request r{r}: no committed row"));
                    return Ok(Err(Refusal::UnknownRequest));
                }
                self.step(format!("request r{r}: committed; the reservation again"));
                let Some(head) = self.db.res_head[r].read() else {
                    self.step(format!("reservation r{r}: still no committed row"));
                    return Ok(Err(Refusal::NotReserved));
                };
                self.db.model.reservations_found_again.fetch_add(1, SeqCst);
                self.step(format!("reservation r{r}: committed now"));
                head
            }
        };
        let state = *self.reservation(r)?;
        Ok(Ok((head, state)))
    }
}

/// One command as the adapter runs it: one transaction, run again after a deadlock.
fn run_command(db: &Db, trace: &Trace, me: usize, who: &str, command: Command) -> Result<Outcome, Refusal> {
    for _attempt in 0..MAX_ATTEMPTS {
        let mut tx = Tx::new(db, me, who, trace);
        let done = pg::apply(&mut tx, &command);
        match done {
            Ok(result) => {
                commit(tx, &command, &result);
                return result;
            }
            Err(Deadlock(row, holder)) => {
                tx.step(format!(
                    "{command:?}: waiting for {row:?}, held by thread {holder}, closes a cycle: deadlock (40P01), \
                     rolled back; the adapter retries"
                ));
                rollback(tx);
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

/// The serial check (`pg::serial_order_fits`), each command a transaction of its own.
fn check_serial(db: &Db, tiers: &[Tier; N_IDENTITIES]) -> Option<String> {
    let log = db.model.log.lock().unwrap().clone();
    let committed: Vec<(usize, &pg::Answers)> =
        log.iter().map(|c| (c.thread, std::slice::from_ref(&c.answer))).collect();
    let end = pg::serial_order_fits(db, tiers, N_THREADS, &committed).err()?;
    let answers: Vec<String> =
        log.iter().map(|c| format!("t{} {:?} -> {:?}", c.thread, c.answer.0, c.answer.1)).collect();
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
            let sizes = Sizes { requests: N_REQUESTS, payments: N_PAYMENTS, transactions: N_THREADS };
            let db = Arc::new(Db::new(config(mix.pool_initial_sats), budgets, sizes, Commands::default()));
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
                if db.model.failed_rechecks.load(SeqCst) > 0 {
                    seen[1].note(trace);
                }
                if db.model.released_to_slow_path.load(SeqCst) > 0 {
                    seen[2].note(trace);
                }
                if db.model.reservations_found_again.load(SeqCst) > 0 {
                    seen[3].note(trace);
                }
            }
            let mut bad = db.violations.lock().unwrap().clone();
            bad.extend(pg::check_end(&db, &reductions));
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
