//! One concurrent run of a [`SharedLedger`], judged by everything the harness has: threads hammer
//! one ledger with contention by design, every call is recorded with when it was sent and
//! answered on one clock, and the run is judged by
//!
//! - the balance sheet (I1, I2) of every snapshot taken while the workers run (by an observer
//!   thread and by each worker now and then: `totals` concurrent with credits, debits and closes),
//!   and the daily budget (I4) of every identity's standing read with it;
//! - the books at the end, when every flow is closed: the engine's totals and identities against
//!   what the callers were answered (I2, I3, I5, I6) and against the union of the journals (each
//!   request debited once for what it was answered and closed exactly once, the journals summing
//!   to the pool);
//! - linearizability of the whole history on the reference (I8, [`ledger_harness::linear`]);
//! - the engine's own assertions: a panic in any call is a finding.
//!
//! The workload, per [`Scene`]:
//!
//! - [`Scene::Roomy`]: a pool no run can drain, a hot set of four rich elite identities (every
//!   request free, so every worker contends for their locks and for the one pool), two tight
//!   identities whose small budget makes `reserve_partial` run while their other reservations are
//!   outstanding, credits throughout, each worker keeping a few reservations open while it makes
//!   others, and closes delivered twice at once (a worker hands a request it is about to close to
//!   the next worker, which sends a release or a record for it too). The linearizability check
//!   splits this history by identity.
//! - [`Scene::Scarce`]: a short run on a pool the workers drain and refill, so that every decide
//!   reads it: debits race at the edge of the pool. Its history is searched whole.
//!
//! Every thread of a run makes schedule noise ([`ledger_concurrent::set_schedule_noise`]): at one
//! lock or atomic step of the ledger in [`NOISE_ONE_IN`] it yields or spins a little, so that the
//! window between two steps where a mutant races is hit by another thread whether the machine is
//! idle or loaded (without it, a loaded 2-core machine ran the workers one after the other and
//! caught the pool mutants in a few runs out of sixty).
//!
//! The verdict on the real ledger does not depend on thread timing: every check holds for every
//! interleaving (a linearizability search that runs out of budget is reported as undecided, not as
//! a finding). Whether a mutant is caught does; the hunt ([`hunt`]) plays seeds until a run
//! catches it.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use ledger_concurrent::{SharedLedger, SharedMutant};
use ledger_core::{
    Budgets, Command, Config, Decision, Ledger, Movement, Outcome, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs,
    Totals,
};
use ledger_harness::linear::{self, Op, Verdict};
use ledger_harness::{Call, Reply};

/// Identity shards (and owner and payment shards) of the ledger under test: few, so that the hot
/// set shares them.
pub const N_SHARDS: usize = 4;
/// Worker threads.
pub const N_WORKERS: u64 = 4;
const NOW: TimeMs = TimeMs(5_000);
/// Prefix of the name of the threads of a run on a mutant, whose panics are expected and not
/// printed.
const MUTANT_THREAD: &str = "hammer-mutant";

/// Which workload a run plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scene {
    /// A pool no run can drain: a hot set of rich identities, tight identities, credits,
    /// snapshots, closes delivered twice at once. Long.
    Roomy,
    /// A pool the workers drain and refill, every decide reads it. Short.
    Scarce,
}

impl Scene {
    /// Both, in the order a hunt plays them.
    pub const ALL: [Scene; 2] = [Scene::Scarce, Scene::Roomy];

    fn config(self) -> Config {
        let budget_sats = Budgets { elite: sats(1_000_000_000), trusted: sats(300), ..Config::default().budget_sats };
        let pool = match self {
            Scene::Roomy => 1_000_000_000_000,
            Scene::Scarce => 300,
        };
        Config { pool_initial_sats: sats(pool), budget_sats, ..Config::default() }
    }

    fn flows_per_worker(self) -> u64 {
        match self {
            Scene::Roomy => 1_500,
            Scene::Scarce => 300,
        }
    }

    /// Rich identities (elite: budget never binds) and tight ones (trusted, 300 sats a day).
    fn identities(self) -> (Vec<Pubkey>, Vec<Pubkey>) {
        let rich = (0..4).map(ledger_harness::user_pubkey).collect();
        let tight = match self {
            Scene::Roomy => (10..12).map(ledger_harness::user_pubkey).collect(),
            Scene::Scarce => Vec::new(),
        };
        (rich, tight)
    }

    /// One close in this many is handed over to the next worker to be sent twice at once.
    fn hand_over_one_in(self) -> Option<u64> {
        match self {
            Scene::Roomy => Some(6),
            Scene::Scarce => None,
        }
    }

    /// Reservations a worker keeps open while it makes others.
    fn open_per_worker(self) -> usize {
        match self {
            Scene::Roomy => 4,
            Scene::Scarce => 2,
        }
    }
}

impl fmt::Display for Scene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scene::Roomy => "roomy",
            Scene::Scarce => "scarce",
        })
    }
}

/// Which check found something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// I1/I2 on a snapshot taken while the workers ran.
    SnapshotBalanceSheet,
    /// I4 on an identity's standing read while the workers ran.
    SnapshotDailyBudget,
    /// The books at the end against the callers' answers and the journals (I2, I3, I4, I5, I6).
    Books,
    /// No serial order consistent with real time gives the answers (I8).
    Linearizability,
    /// The engine's own assertion fired.
    EnginePanic,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::SnapshotBalanceSheet => "snapshot balance sheet (I2)",
            Check::SnapshotDailyBudget => "snapshot daily budget (I4)",
            Check::Books => "end books (I2-I6)",
            Check::Linearizability => "linearizability (I8)",
            Check::EnginePanic => "engine assertion",
        })
    }
}

/// Something a check found.
#[derive(Clone, Debug)]
pub struct Finding {
    /// Which check.
    pub check: Check,
    /// What it saw.
    pub detail: String,
}

/// What a run did and found.
#[derive(Debug)]
pub struct Report {
    /// The scene played.
    pub scene: Scene,
    /// The seed.
    pub seed: u64,
    /// Calls made.
    pub n_calls: usize,
    /// Snapshots the observer took.
    pub n_snapshots: u64,
    /// The linearizability verdict, in short (`linearizable in N part(s)`, `undecided`, ...).
    pub linear: String,
    /// Everything found; empty for a ledger that passed.
    pub findings: Vec<Finding>,
    /// How long the threads ran.
    pub ran: Duration,
    /// How long the checks at the end took.
    pub checked: Duration,
}

impl Report {
    /// The checks that found something, each once.
    pub fn checks(&self) -> BTreeSet<Check> {
        self.findings.iter().map(|f| f.check).collect()
    }
}

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

/// A small deterministic generator, so the workload needs no dependency and replays its choices.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every panic of a thread of a mutant's run is expected (the engine's assertions catch some
/// mutants); the others print as usual.
fn quiet_mutant_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !thread::current().name().is_some_and(|n| n.starts_with(MUTANT_THREAD)) {
                default(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Everything a worker brings back.
#[derive(Default)]
struct WorkerLog {
    ops: Vec<Op>,
    journal: Vec<Movement>,
    panic: Option<String>,
    /// What its own snapshots found.
    findings: Vec<Finding>,
    n_snapshots: u64,
}

/// A reservation a worker holds open.
#[derive(Clone, Copy)]
struct Open {
    flow: u32,
    request_id: RequestId,
    pubkey: Pubkey,
    reserved: Sats,
    rich: bool,
}

/// A request handed to another worker to close at the same time: packed in one word, 0 for none.
fn pack(open: &Open, who: u64) -> u64 {
    (u64::from(open.flow) << 24) | (who << 16) | open.reserved.to_u64()
}

/// Schedule noise of the run's threads: one lock or atomic step of the ledger in this many yields
/// or spins a little ([`ledger_concurrent::set_schedule_noise`]).
const NOISE_ONE_IN: u64 = 8;

/// Spins the observer pauses between snapshots.
const OBSERVER_PAUSE_SPINS: u32 = 200;

/// A worker takes a snapshot once per this many flows.
const SNAPSHOT_EVERY: u64 = 32;

/// Times a worker yields at most waiting for the next worker to take a close it handed over.
const HAND_OVER_WAITS: u32 = 100;

/// One worker: flows over the scene's identities, calls recorded on the shared clock.
struct Worker<'a> {
    ledger: &'a SharedLedger,
    clock: &'a AtomicU64,
    rng: XorShift,
    log: WorkerLog,
    identities: &'a [Pubkey],
    /// Closes handed over to this worker.
    mine: &'a AtomicU64,
    /// Closes this worker hands over.
    next: &'a AtomicU64,
}

impl Worker<'_> {
    /// Sends `call` as [`Worker::call`] does, after the close handed over to this worker, if any.
    fn send(&mut self, flow: u32, call: Call) -> Option<Reply> {
        self.serve()?;
        self.call(flow, call)
    }

    /// Sends the close handed over to this worker, if any.
    fn serve(&mut self) -> Option<()> {
        match self.mine.swap(0, Ordering::SeqCst) {
            0 => Some(()),
            handed => self.close_handed_over(handed),
        }
    }

    /// Sends `call`, recording it; `None` when the engine panicked (the worker stops).
    fn call(&mut self, flow: u32, call: Call) -> Option<Reply> {
        let invoked = self.clock.fetch_add(1, Ordering::SeqCst);
        let (ledger, journal) = (self.ledger, &mut self.log.journal);
        let result = panic::catch_unwind(AssertUnwindSafe(|| ledger.apply(&call.to_command(), NOW, journal)));
        let completed = self.clock.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(result) => {
                let reply = Reply::from(result);
                self.log.ops.push(Op { flow, call, now: NOW, reply: reply.clone(), invoked, completed });
                Some(reply)
            }
            Err(payload) => {
                let error = panic_message(payload.as_ref());
                let reply = Reply::Failed { error: error.clone() };
                self.log.ops.push(Op { flow, call, now: NOW, reply, invoked, completed });
                self.log.panic = Some(format!("{}: {error}", self.log.ops.last().unwrap().call.name()));
                None
            }
        }
    }

    /// Closes `open` as a caller would: the work failed (release) or cost `actual` (record).
    fn close(&mut self, open: &Open, twice: bool) -> Option<()> {
        self.serve()?;
        if twice {
            // The next worker sends a close of this request too, at the same moment as this one:
            // wait until it took the request (serving this worker's own mailbox meanwhile, as the
            // next may be waiting for it), or take the request back.
            let who = self.identities.iter().position(|p| *p == open.pubkey).unwrap() as u64;
            self.next.store(pack(open, who), Ordering::SeqCst);
            let mut waits = 0;
            while self.next.load(Ordering::SeqCst) != 0 && waits < HAND_OVER_WAITS {
                self.serve()?;
                thread::yield_now();
                waits += 1;
            }
            self.next.swap(0, Ordering::SeqCst);
        }
        let release = if open.rich { self.rng.below(4) == 0 } else { self.rng.below(3) != 0 };
        let call = if release {
            Call::Release { request_id: open.request_id, amount_sats: open.reserved }
        } else {
            // Tight identities absorb little, so their budget stays open for reservations.
            let actual = if open.rich { self.rng.below(80) } else { self.rng.below(3) };
            Call::Record {
                request_id: open.request_id,
                pubkey: open.pubkey,
                actual_sats: sats(actual),
                reserved_sats: open.reserved,
            }
        };
        self.call(open.flow, call).map(|_| ())
    }

    /// A close handed over by another worker: a release or a record, whichever comes.
    fn close_handed_over(&mut self, packed: u64) -> Option<()> {
        let flow = u32::try_from(packed >> 24).unwrap();
        let pubkey = self.identities[usize::try_from((packed >> 16) & 0xff).unwrap()];
        let reserved = sats(packed & 0xffff);
        let request_id = RequestId(u64::from(flow));
        let call = if self.rng.below(2) == 0 {
            Call::Release { request_id, amount_sats: reserved }
        } else {
            Call::Record { request_id, pubkey, actual_sats: sats(self.rng.below(40)), reserved_sats: reserved }
        };
        self.call(flow, call).map(|_| ())
    }

    /// A new request for `pubkey`, taken up as a job does; the reservation it got, if any.
    fn request(&mut self, flow: u32, pubkey: Pubkey, rich: bool) -> Option<Option<Open>> {
        let request_id = RequestId(u64::from(flow));
        let estimated = if rich { 1 + self.rng.below(60) } else { 1 + self.rng.below(120) };
        let reply = self.send(flow, Call::Decide { request_id, pubkey, estimated_sats: sats(estimated) })?;
        let open = |reserved| Some(Some(Open { flow, request_id, pubkey, reserved, rich }));
        let amount = match reply {
            Reply::Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }) => return open(reserved_sats),
            // Take the offer up, or re-quote for any part of the estimate (R-PARTIAL-10 allows it
            // after a gate too): either may meet other reservations of the identity made since.
            Reply::Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, .. } })
                if self.rng.below(2) == 0 && !offer_sats.is_zero() =>
            {
                offer_sats
            }
            Reply::Ok(Outcome::Decided { .. }) => sats(1 + self.rng.below(estimated)),
            _ => return Some(None),
        };
        match self.send(flow, Call::ReservePartial { request_id, pubkey, amount_sats: amount })? {
            Reply::Ok(Outcome::Reserved { reserved_sats }) => open(reserved_sats),
            _ => Some(None),
        }
    }
}

/// The observer: snapshots while the workers run, each judged at once.
fn observe(
    ledger: &SharedLedger,
    config: &Config,
    identities: &[Pubkey],
    done: &AtomicBool,
) -> (u64, Vec<Finding>, Option<String>) {
    let mut n = 0u64;
    let mut findings = Vec::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        while !done.load(Ordering::SeqCst) && findings.len() < 20 {
            snapshot(ledger, config, identities, &mut findings);
            n += 1;
            // Let the workers run in parallel between snapshots.
            for _ in 0..OBSERVER_PAUSE_SPINS {
                std::hint::spin_loop();
            }
            thread::yield_now();
        }
    }));
    (n, findings, result.err().map(|p| format!("totals: {}", panic_message(p.as_ref()))))
}

/// A snapshot while the workers run: the balance sheet (I2) and every identity's standing (I4).
fn snapshot(ledger: &SharedLedger, config: &Config, identities: &[Pubkey], findings: &mut Vec<Finding>) {
    let totals = ledger.totals();
    if let Some(detail) = balance_sheet(config, &totals) {
        findings.push(Finding { check: Check::SnapshotBalanceSheet, detail: format!("mid-run: {detail}") });
    }
    for pubkey in identities {
        let identity = ledger.identity(pubkey).expect("created before the run");
        let budget = config.budget(identity.tier);
        let used = identity.absorbed_in_window(NOW).checked_add(identity.reserved_sats);
        if used.is_none_or(|used| used > budget) {
            findings.push(Finding {
                check: Check::SnapshotDailyBudget,
                detail: format!(
                    "mid-run: {}: absorbed {} + reserved {} > budget {budget}",
                    ledger_harness::Named(*pubkey),
                    identity.absorbed_in_window(NOW),
                    identity.reserved_sats
                ),
            });
        }
    }
}

/// I2 of a balance sheet: `None` when it adds up.
fn balance_sheet(config: &Config, t: &Totals) -> Option<String> {
    let held = [t.pool_sats, t.reserved_sats, t.absorbed_sats].into_iter().try_fold(Sats::ZERO, Sats::checked_add);
    let owed = config.pool_initial_sats.checked_add(t.credited_sats);
    (held.is_none() || held != owed).then(|| {
        format!(
            "initial {} + credited {} != pool {} + reserved {} + absorbed {}",
            config.pool_initial_sats, t.credited_sats, t.pool_sats, t.reserved_sats, t.absorbed_sats
        )
    })
}

/// How far a run is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    /// Every check, whatever the others found.
    All,
    /// The cheap checks (snapshots, engine assertions, books), and linearizability only when
    /// they found nothing: a hunt needs no more.
    UntilFirst,
}

/// Runs `scene` with `seed` on a real [`SharedLedger`] (`mutant` `None`) or on one that runs
/// `mutant`, and judges it.
pub fn run(scene: Scene, seed: u64, mutant: Option<SharedMutant>, judge: Judge) -> Report {
    quiet_mutant_panics();
    let config = scene.config();
    let ledger = Arc::new(match mutant {
        None => SharedLedger::with_shards(config, N_SHARDS),
        Some(m) => SharedLedger::with_mutant(config, N_SHARDS, m),
    });
    let (rich, tight) = scene.identities();
    let identities: Vec<Pubkey> = rich.iter().chain(&tight).copied().collect();
    let mut initial = Ledger::new(config);
    for (i, pubkey) in identities.iter().enumerate() {
        let tier = if i < rich.len() { Tier::Elite } else { Tier::Trusted };
        ledger.set_tier(*pubkey, tier, NOW);
        initial.apply(&Command::SetTier { pubkey: *pubkey, tier }, NOW, &mut Vec::new()).unwrap();
    }
    let clock = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Everyone starts at once: a thread spawned late would otherwise find the others finished.
    let start = Arc::new(Barrier::new(usize::try_from(N_WORKERS).unwrap() + 1));
    let started = Instant::now();
    // Mailbox `t` holds a request worker `t - 1` is closing, for worker `t` to close too.
    let mailboxes: Arc<Vec<AtomicU64>> = Arc::new((0..N_WORKERS).map(|_| AtomicU64::new(0)).collect());
    let name = |what: &str| match mutant {
        Some(m) => format!("{MUTANT_THREAD}-{m}-{what}"),
        None => format!("hammer-{what}"),
    };
    let observer = {
        let (ledger, done, identities, start) =
            (Arc::clone(&ledger), Arc::clone(&done), identities.clone(), Arc::clone(&start));
        thread::Builder::new()
            .name(name("observer"))
            .spawn(move || {
                ledger_concurrent::set_schedule_noise(NOISE_ONE_IN, seed * 1_000 + 999);
                start.wait();
                observe(&ledger, &config, &identities, &done)
            })
            .unwrap()
    };
    let workers: Vec<_> = (0..N_WORKERS)
        .map(|t| {
            let (ledger, clock, mailboxes) = (Arc::clone(&ledger), Arc::clone(&clock), Arc::clone(&mailboxes));
            let index = |t: u64| usize::try_from(t % N_WORKERS).unwrap();
            let (rich, tight, identities) = (rich.clone(), tight.clone(), identities.clone());
            let start = Arc::clone(&start);
            thread::Builder::new()
                .name(name(&format!("worker-{t}")))
                .spawn(move || {
                    let mut w = Worker {
                        ledger: &ledger,
                        clock: &clock,
                        rng: XorShift::new(seed * 1_000 + t),
                        log: WorkerLog::default(),
                        identities: &identities,
                        mine: &mailboxes[index(t)],
                        next: &mailboxes[index(t + 1)],
                    };
                    ledger_concurrent::set_schedule_noise(NOISE_ONE_IN, seed * 1_000 + t);
                    start.wait();
                    work(&mut w, scene, t, &rich, &tight, &config);
                    w.log
                })
                .unwrap()
        })
        .collect();
    let logs: Vec<WorkerLog> = workers.into_iter().map(|w| w.join().expect("a worker catches panics")).collect();
    done.store(true, Ordering::SeqCst);
    let (mut n_snapshots, mut findings, observer_panic) = observer.join().expect("the observer catches panics");
    for log in &logs {
        n_snapshots += log.n_snapshots;
        findings.extend(log.findings.iter().cloned());
    }
    let ran = started.elapsed();

    let mut panics: Vec<String> = logs.iter().filter_map(|l| l.panic.clone()).chain(observer_panic).collect();
    // The first assertion first: the others are threads that found its lock poisoned.
    panics.sort_by_key(|p| p.contains("PoisonError"));
    for p in &panics {
        findings.push(Finding { check: Check::EnginePanic, detail: p.clone() });
    }
    let mut history: Vec<Op> = logs.iter().flat_map(|l| l.ops.iter().cloned()).collect();
    history.sort_by_key(|o| (o.completed, o.invoked));
    // A ledger whose lock is poisoned cannot be read any more.
    let readable = panics.is_empty().then_some(&*ledger);
    findings.extend(books(readable, &config, &identities, &history, &logs));
    if judge == Judge::UntilFirst && !findings.is_empty() {
        let linear = "not checked".to_owned();
        return Report {
            scene,
            seed,
            n_calls: history.len(),
            n_snapshots,
            linear,
            findings,
            ran,
            checked: started.elapsed() - ran,
        };
    }
    let linear = match linear::check(&initial, &history, linear::DEFAULT_BUDGET).expect("a well-formed history") {
        Verdict::Linearizable { parts, .. } => format!("linearizable ({parts} part(s))"),
        Verdict::Undecided { explored } => format!("undecided after {explored} placements"),
        Verdict::NotLinearizable(witness) => {
            findings.push(Finding { check: Check::Linearizability, detail: linear::describe(&history, &witness) });
            "not linearizable".to_owned()
        }
    };
    Report { scene, seed, n_calls: history.len(), n_snapshots, linear, findings, ran, checked: started.elapsed() - ran }
}

/// One worker's flows.
fn work(w: &mut Worker<'_>, scene: Scene, t: u64, rich: &[Pubkey], tight: &[Pubkey], config: &Config) -> Option<()> {
    let flows = scene.flows_per_worker();
    let mut open: VecDeque<Open> = VecDeque::new();
    let mut last_payment: Option<(PaymentId, Sats)> = None;
    for i in 0..flows {
        let flow = u32::try_from(t * flows + i).unwrap();
        if i % SNAPSHOT_EVERY == t {
            let (ledger, identities, findings) = (w.ledger, w.identities, &mut w.log.findings);
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| snapshot(ledger, config, identities, findings))) {
                w.log.panic = Some(format!("totals: {}", panic_message(p.as_ref())));
                return None;
            }
            w.log.n_snapshots += 1;
        }
        match w.rng.below(16) {
            0..=1 => {
                // A paid invoice; now and then the previous one delivered again.
                let (payment_id, paid) = match last_payment {
                    Some(last) if w.rng.below(4) == 0 => last,
                    _ => (PaymentId(u64::from(flow)), sats(w.rng.below(1_500))),
                };
                last_payment = Some((payment_id, paid));
                w.send(flow, Call::Credit { payment_id, paid_sats: paid })?;
            }
            k => {
                let on_tight = k >= 10 && !tight.is_empty();
                let pubkey = if on_tight {
                    tight[w.rng.below(tight.len() as u64) as usize]
                } else {
                    rich[w.rng.below(rich.len() as u64) as usize]
                };
                if let Some(o) = w.request(flow, pubkey, !on_tight)? {
                    open.push_back(o);
                }
            }
        }
        while open.len() > scene.open_per_worker() || (!open.is_empty() && w.rng.below(4) == 0) {
            let o = open.pop_front().unwrap();
            let twice = scene.hand_over_one_in().is_some_and(|n| w.rng.below(n) == 0);
            w.close(&o, twice)?;
        }
    }
    while let Some(o) = open.pop_front() {
        w.close(&o, false)?;
    }
    w.serve()
}

/// The books at the end: the callers' answers against the journals, and when every flow is
/// closed (`ledger` is `Some`) the engine's state against both. After an engine panic the ledger
/// cannot be read (its locks are poisoned) and flows were left open: only what the answers and
/// journals say is judged.
fn books(
    ledger: Option<&SharedLedger>,
    config: &Config,
    identities: &[Pubkey],
    history: &[Op],
    logs: &[WorkerLog],
) -> Vec<Finding> {
    let mut problems = Vec::new();
    // What the callers were answered: each request's reservation and how it ended, each
    // payment's credit.
    #[derive(Default)]
    struct Answered {
        pubkey: Option<Pubkey>,
        reserved: u64,
        recorded: BTreeSet<u64>,
        released: bool,
    }
    let mut requests: BTreeMap<RequestId, Answered> = BTreeMap::new();
    let mut credited: BTreeMap<PaymentId, u64> = BTreeMap::new();
    for op in history {
        match (&op.call, &op.reply) {
            (
                Call::Decide { request_id, pubkey, .. },
                Reply::Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }),
            )
            | (Call::ReservePartial { request_id, pubkey, .. }, Reply::Ok(Outcome::Reserved { reserved_sats })) => {
                let a = requests.entry(*request_id).or_default();
                a.pubkey = Some(*pubkey);
                a.reserved += reserved_sats.to_u64();
            }
            (Call::Record { request_id, .. }, Reply::Ok(Outcome::Recorded { absorbed_sats, .. })) => {
                requests.entry(*request_id).or_default().recorded.insert(absorbed_sats.to_u64());
            }
            (Call::Release { request_id, .. }, Reply::Ok(Outcome::Released { .. })) => {
                requests.entry(*request_id).or_default().released = true;
            }
            (Call::Credit { payment_id, .. }, Reply::Ok(Outcome::Credited { credited_sats })) => {
                credited.insert(*payment_id, credited_sats.to_u64());
            }
            _ => {}
        }
    }
    let mut absorbed_by: BTreeMap<Pubkey, u64> = BTreeMap::new();
    let (mut absorbed, mut n_records) = (0u64, 0u64);
    for (request_id, a) in &requests {
        if a.recorded.len() > 1 || (!a.recorded.is_empty() && a.released) {
            problems.push(format!(
                "I5: request {} answered recorded {:?} and released {}",
                request_id.0, a.recorded, a.released
            ));
        }
        if let Some(&x) = a.recorded.iter().next() {
            absorbed += x;
            n_records += 1;
            *absorbed_by.entry(a.pubkey.unwrap_or(Pubkey::from_bytes([0; 32]))).or_default() += x;
        }
    }
    let credited: u64 = credited.values().sum();
    let (debited, closes, journal_pool) = journals(config, logs);
    for (request_id, a) in requests.iter().filter(|(_, a)| a.reserved > 0) {
        let (amount, n) = debited.get(request_id).copied().unwrap_or_default();
        if (amount, n) != (a.reserved, 1) {
            problems.push(format!(
                "I3: request {} answered reserved {}, the journals debit {amount} in {n} movement(s)",
                request_id.0, a.reserved
            ));
        }
        let n_closes = closes.get(request_id).copied().unwrap_or(0);
        if n_closes > 1 || (n_closes == 0 && ledger.is_some()) {
            problems.push(format!("I5: request {} closed {n_closes} time(s) in the journals", request_id.0));
        }
    }
    let Some(ledger) = ledger else {
        return findings(problems);
    };
    let totals = ledger.totals();
    if let Some(detail) = balance_sheet(config, &totals) {
        problems.push(format!("I2 at the end: {detail}"));
    }
    if journal_pool != totals.pool_sats.to_i128() {
        problems.push(format!("I2: the journals sum to {journal_pool}, the pool is {}", totals.pool_sats));
    }
    let want_pool = config.pool_initial_sats.to_i128() + i128::from(credited) - i128::from(absorbed);
    let want = (want_pool, 0, i128::from(absorbed), i128::from(credited), n_records);
    let got = (
        totals.pool_sats.to_i128(),
        totals.reserved_sats.to_i128(),
        totals.absorbed_sats.to_i128(),
        totals.credited_sats.to_i128(),
        totals.n_grants,
    );
    if got != want {
        problems
            .push(format!("I2/I5/I6: (pool, reserved, absorbed, credited, grants) {got:?}, the answers give {want:?}"));
    }
    for pubkey in identities {
        let identity = ledger.identity(pubkey).expect("created before the run");
        let want = sats(absorbed_by.get(pubkey).copied().unwrap_or(0));
        if identity.reserved_sats != Sats::ZERO || identity.sats_absorbed_today != want {
            problems.push(format!(
                "I4/I6: {} reserved {} absorbed {}, the answers give reserved 0 absorbed {want}",
                ledger_harness::Named(*pubkey),
                identity.reserved_sats,
                identity.sats_absorbed_today
            ));
        }
    }
    findings(problems)
}

fn findings(mut problems: Vec<String>) -> Vec<Finding> {
    problems.truncate(10);
    problems.into_iter().map(|detail| Finding { check: Check::Books, detail }).collect()
}

/// Requests debited by the journals of every worker, `request -> (amount, movements)`; closes
/// (records, releases, expiries) of each request; the pool the journals sum to.
#[allow(clippy::type_complexity)]
fn journals(config: &Config, logs: &[WorkerLog]) -> (BTreeMap<RequestId, (u64, u32)>, BTreeMap<RequestId, u32>, i128) {
    let mut debited: BTreeMap<RequestId, (u64, u32)> = BTreeMap::new();
    let mut closes: BTreeMap<RequestId, u32> = BTreeMap::new();
    let mut journal_pool = i128::from(config.pool_initial_sats.to_u64());
    for m in logs.iter().flat_map(|l| &l.journal) {
        match *m {
            Movement::Debit { request_id, amount_sats, .. } => {
                let d = debited.entry(request_id).or_default();
                (d.0, d.1) = (d.0 + amount_sats.to_u64(), d.1 + 1);
                journal_pool -= i128::from(amount_sats.to_u64());
            }
            Movement::Release { request_id, amount_sats } | Movement::Expire { request_id, amount_sats } => {
                *closes.entry(request_id).or_default() += 1;
                journal_pool += i128::from(amount_sats.to_u64());
            }
            Movement::Record { request_id, returned_sats, .. } => {
                *closes.entry(request_id).or_default() += 1;
                journal_pool += i128::from(returned_sats.to_u64());
            }
            Movement::Credit { amount_sats, .. } => journal_pool += i128::from(amount_sats.to_u64()),
        }
    }
    (debited, closes, journal_pool)
}

/// How a hunt for one mutant went: the runs until the first that found it.
#[derive(Debug)]
pub struct Hunt {
    /// The mutant.
    pub mutant: SharedMutant,
    /// Runs played, the finding one included (`None` when none found it).
    pub runs_to_catch: Option<u64>,
    /// The seed and scene of the run that found it.
    pub caught_by: Option<(u64, Scene)>,
    /// The checks that found it in that run.
    pub checks: BTreeSet<Check>,
    /// A finding of that run, to read.
    pub example: Option<Finding>,
    /// Time until the run that found it ended.
    pub elapsed: Duration,
}

/// Plays seeds `first_seed..` (each seed both scenes, scarce first) until a run finds `mutant`,
/// at most `max_runs` runs.
pub fn hunt(mutant: SharedMutant, first_seed: u64, max_runs: u64) -> Hunt {
    let start = Instant::now();
    let mut n_runs = 0;
    for seed in first_seed.. {
        for scene in Scene::ALL {
            if n_runs == max_runs {
                return Hunt {
                    mutant,
                    runs_to_catch: None,
                    caught_by: None,
                    checks: BTreeSet::new(),
                    example: None,
                    elapsed: start.elapsed(),
                };
            }
            n_runs += 1;
            let report = run(scene, seed, Some(mutant), Judge::UntilFirst);
            if !report.findings.is_empty() {
                return Hunt {
                    mutant,
                    runs_to_catch: Some(n_runs),
                    caught_by: Some((seed, scene)),
                    checks: report.checks(),
                    example: report.findings.first().cloned(),
                    elapsed: start.elapsed(),
                };
            }
        }
    }
    unreachable!("the seeds do not run out")
}

/// Serialises the hunts of one process, so that the times measured are each hunt's own.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
