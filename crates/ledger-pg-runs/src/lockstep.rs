//! Lockstep runs: the seeded scheduler drives the database one statement at a time.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_core::{Movement, Pubkey, Sats, TimeMs};
use ledger_harness::{Atomic, Engine, Invariant, Observed, ReferenceEngine, Reply, SeedEngine};
use ledger_pg::engine::{PgReferenceEngine, PgSeedEngine};
use ledger_pg::reference::CONNECTION_LOST;
use ledger_pg::testpg::TestPg;

use crate::args::{engine_name, PgRun};
use crate::differential::{Differential, Divergence};
use crate::server::{self, redacted, Server};
use ledger_simulator::exec::{Coverage, RunResult};
use ledger_simulator::gen::{replay, run_seed, SchedulerKind};
use ledger_simulator::history::{Event, History};
use ledger_simulator::report::{EngineKind, Reduction, RunReport, ViolationReport};
use ledger_simulator::scenario::Scenario;
use ledger_simulator::shrink::shrink_until;
pub(crate) struct SeedRun {
    pub(crate) seed: u64,
    pub(crate) result: RunResult,
    pub(crate) history: History,
    pub(crate) divergence: Option<Divergence>,
}

/// A lockstep engine that stops touching the database once its connection is lost: every
/// later step fails at once, and the run is then an error, not a verdict. A lockstep run does
/// not go on across a server failure it did not cause (what a crash loses on a fast throwaway
/// server would be blamed on the engine).
///
/// With `crash`, the server crashes before the engine's `at`-th step (counted from 1): SIGKILL
/// to the postmaster, then crash recovery on the same data directory, between two steps
/// (nothing in flight; a `pg-reference` step is one whole command). The run then goes on, still
/// compared with the reference step by step: on a durable server every command acknowledged
/// before the crash survives it (I7), so the run's answers, observations and trace are those of
/// a run without the crash. A lost effect shows as a divergence at the first step that reads
/// it, which the report blames on durability ([`crash_note`]).
struct Halting<E> {
    inner: E,
    lost: Arc<Mutex<Option<String>>>,
    last_observed: std::cell::Cell<Observed>,
    crash: Option<(u64, Arc<TestPg>)>,
    steps: u64,
}

/// A lockstep engine on a server that tells what went wrong outside its replies (a read that
/// failed, a restart under it: `ledger_pg::engine`'s `take_trouble`), and that can be told a
/// restart is the run's own doing.
trait Watched {
    fn take_trouble(&self) -> Option<String>;
    fn expect_restart(&self);
}

impl Watched for PgReferenceEngine {
    fn take_trouble(&self) -> Option<String> {
        PgReferenceEngine::take_trouble(self)
    }

    fn expect_restart(&self) {
        PgReferenceEngine::expect_restart(self)
    }
}

impl Watched for PgSeedEngine {
    fn take_trouble(&self) -> Option<String> {
        PgSeedEngine::take_trouble(self)
    }

    fn expect_restart(&self) {
        // A lockstep crash of pg-seed is refused before any seed runs.
    }
}

impl<E: Engine + Watched> Halting<E> {
    fn new(inner: E, crash: Option<(u64, Arc<TestPg>)>) -> (Halting<E>, Arc<Mutex<Option<String>>>) {
        let lost = Arc::new(Mutex::new(None));
        let last_observed = std::cell::Cell::new(Observed::default());
        (Halting { inner, lost: Arc::clone(&lost), last_observed, crash, steps: 0 }, lost)
    }

    fn is_lost(&self) -> bool {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Stops the run at anything the engine noticed outside a reply: a stale read or a restart
    /// of the server would be judged as the engine's answer. True when it did.
    fn check_trouble(&self) -> bool {
        let Some(trouble) = self.inner.take_trouble() else { return false };
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            ledger_exec::say!("ledger-sim: {trouble}; the lockstep run stops here");
            *lost = Some(format!("{CONNECTION_LOST}{trouble}"));
        }
        true
    }
}

impl<E: Engine + Watched> Engine for Halting<E> {
    type Op = E::Op;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn speaks_reference_api(&self) -> bool {
        self.inner.speaks_reference_api()
    }

    fn config(&self) -> &ledger_core::Config {
        self.inner.config()
    }

    fn begin(&mut self, call: &ledger_harness::Call) -> E::Op {
        self.inner.begin(call)
    }

    fn step(&mut self, op: &mut E::Op, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        if self.is_lost() {
            return Some(Reply::Failed { error: "the database connection was lost earlier".into() });
        }
        self.steps += 1;
        if let Some((at, pg)) = &self.crash {
            if self.steps == *at {
                ledger_exec::say!(
                    "ledger-sim: crashing the server (SIGKILL to the postmaster) before step {at}, then crash recovery"
                );
                self.inner.expect_restart();
                if let Err(e) = pg.kill_server().and_then(|()| pg.start_server()) {
                    let error = format!("{CONNECTION_LOST}crashing the server: {e}");
                    *self.lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
                    return Some(Reply::Failed { error });
                }
            }
        }
        let reply = self.inner.step(op, now, journal);
        if self.check_trouble() {
            journal.clear();
            return Some(Reply::Failed { error: "the database connection was lost".into() });
        }
        if let Some(Reply::Failed { error }) = &reply {
            if error.starts_with(CONNECTION_LOST) {
                ledger_exec::say!("ledger-sim: {error}; the lockstep run stops here");
                *self.lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
            }
        }
        reply
    }

    fn observe(&self) -> Observed {
        if !self.is_lost() {
            let observed = self.inner.observe();
            if !self.check_trouble() {
                self.last_observed.set(observed);
            }
        }
        self.last_observed.get()
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        if self.is_lost() {
            None
        } else {
            let remaining = self.inner.daily_remaining(pubkey, now);
            if self.check_trouble() {
                None
            } else {
                remaining
            }
        }
    }
}

/// What a divergence after a lockstep crash means: an effect acknowledged before the crash is
/// gone (I7), not a wrong answer of the engine.
fn crash_note(crash_at: Option<u64>, divergence_step: u64) -> Option<String> {
    // `at` counts steps from 1, a divergence's step from 0.
    crash_at.filter(|&at| divergence_step + 1 >= at).map(|at| {
        format!(
            "I7 durability: the server was crashed before engine step {at} and the first disagreement is at step \
             {divergence_step}, after it: an effect acknowledged before the crash did not survive it"
        )
    })
}

/// The error of a lockstep run whose database connection was lost at some step; a pool that
/// timed out is asked why, with a connection of its own to `url` ([`server::why`]).
fn lost_error(lost: &Arc<Mutex<Option<String>>>, url: &str) -> anyhow::Result<()> {
    let Some(error) = lost.lock().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(()) };
    let cause = match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(opts) => server::block_on(async move { server::why(&error, &opts).await })?,
        Err(_) => error,
    };
    anyhow::bail!(
        "the database at {} failed during the lockstep run ({}); a lockstep run is not judged across a server \
         failure: to test crashes, use --concurrency N --crash-server-at M",
        redacted(url),
        cause
    )
}

/// An engine made before the run that takes it: connecting can fail, which an engine
/// constructor (`Fn(Config) -> E`) cannot say, so the connection is made first and the
/// constructor hands it over, once.
pub(crate) fn once<E>(engine: E, config: ledger_core::Config) -> impl Fn(ledger_core::Config) -> E {
    let cell = std::cell::RefCell::new(Some(engine));
    move |c| {
        assert_eq!(c, config, "the engine was connected with another configuration");
        cell.borrow_mut().take().expect("a lockstep run makes its engine once")
    }
}

/// The error of an engine that could not connect to `url`.
fn cannot_connect(name: &str, url: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{name} cannot connect to {}: {e}", redacted(url))
}

/// `--pg-mutant`: replaces one of the schema's functions of the (migrated) database at `url`
/// with `sql`, on a connection of its own, before any step.
fn install_mutant(url: &str, sql: Option<&str>) -> anyhow::Result<()> {
    let Some(sql) = sql else { return Ok(()) };
    let (opts, sql) = (url.parse::<sqlx::postgres::PgConnectOptions>()?, sql.to_owned());
    server::block_on(async move {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(opts).await?;
        sqlx::raw_sql(&sql).execute(&pool).await?;
        pool.close().await;
        Ok::<_, sqlx::Error>(())
    })?
    .map_err(|e| anyhow::anyhow!("installing --pg-mutant: {e}"))
}

/// One lockstep seed on the database at `url`.
fn lockstep_seed(
    kind: EngineKind,
    url: &str,
    s: &Scenario,
    seed: u64,
    sched: SchedulerKind,
    crash: Option<(u64, Arc<TestPg>)>,
    mutant: Option<&str>,
) -> anyhow::Result<SeedRun> {
    let crash_at = crash.as_ref().map(|(at, _)| *at);
    let name = engine_name(kind);
    let found = Arc::new(Mutex::new(None));
    let c = ledger_simulator::gen::seed_config(s, seed);
    let (result, history) = match kind {
        EngineKind::PgSeed => {
            assert!(crash.is_none(), "a lockstep crash is refused for pg-seed before any seed runs");
            let db = PgSeedEngine::connect_url(url, c).map_err(|e| cannot_connect(name, url, e))?;
            let (engine, lost) = Halting::new(db, None);
            let run = run_seed(once(engine, c), name, s, seed, sched);
            lost_error(&lost, url)?;
            run
        }
        _ => {
            let db = PgReferenceEngine::connect_url(url, c).map_err(|e| cannot_connect(name, url, e))?;
            install_mutant(url, mutant)?;
            let (db, lost) = Halting::new(db, crash);
            let engine = Differential::new(db, ReferenceEngine::new(c), Arc::clone(&found));
            let run = run_seed(once(engine, c), name, s, seed, sched);
            lost_error(&lost, url)?;
            run
        }
    };
    let mut divergence = found.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(d) = &mut divergence {
        if let Some(note) = crash_note(crash_at, d.step) {
            d.detail = format!("{note}: {}", d.detail);
        }
    }
    Ok(SeedRun { seed, result, history, divergence })
}

/// Lockstep seeds of `run`; with `crash_at`, each seed's server crashes before that engine
/// step ([`Halting`]; a private durable cluster a seed).
pub(crate) fn lockstep_run(
    run: &PgRun<'_>,
    server: &Server,
    crash_at: Option<u64>,
    mutant: Option<(&str, &std::path::Path)>,
) -> anyhow::Result<RunReport> {
    let (mutant, mutant_path) = (mutant.map(|m| m.0), mutant.map(|m| m.1));
    let started = Instant::now();
    let mut runs = Vec::new();
    for seed in run.seeds.0..run.seeds.1 {
        if run.stopping() {
            break;
        }
        // A seed's private cluster given up for a signal: the run reports the seeds before it.
        let Some(db) = server.fresh_unless_stopped(run.stop)? else { break };
        let crash = match (crash_at, &db.test) {
            (Some(at), Some(pg)) => Some((at, Arc::clone(pg))),
            (Some(_), None) => anyhow::bail!("--crash-server-at needs a private cluster"),
            (None, _) => None,
        };
        let r = lockstep_seed(run.kind, &db.url, run.scenario, seed, run.scheduler, crash, mutant)?;
        if let Some(at) = crash_at.filter(|&at| at > r.result.n_events) {
            ledger_exec::say!(
                "ledger-sim: seed {seed} ended after {} steps, before --crash-server-at {at}: its server was never crashed",
                r.result.n_events
            );
        }
        drop(db);
        let bad = !r.result.violations.is_empty() || r.divergence.is_some();
        runs.push(r);
        if bad && run.fail_fast {
            break;
        }
    }
    let twin = if run.kind == EngineKind::PgSeed { Twin::Seed } else { Twin::Reference };
    let mut on = ConfirmOn::new(server);
    let mut report = lockstep_report(run, engine_name(run.kind), &runs, started.elapsed(), twin, &mut |h| {
        on.replay(run.kind, h, true, mutant)
    })?;
    if let Some(path) = mutant_path {
        // The replay installs the same mutant (a build with `--features mutants`, as this one).
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        for v in &mut report.violations {
            v.replay.push_str(&format!(" --pg-mutant {}", crate::args::shell_quote(&path.display().to_string())));
        }
    }
    Ok(report)
}

/// The in-memory engine a lockstep counterexample is shrunk on: the one the engine under test
/// is held step for step equal to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Twin {
    /// The seed model, one step per database round trip (`pg-seed`).
    Seed,
    /// The seed model, one step per call (an exec implementation of the seed's API, which
    /// lockstep drives one call at a time).
    SeedAtomic,
    /// The reference (`pg-reference`, an exec implementation of the reference API).
    Reference,
}

/// Replays a history on the engine under test (a fresh database, a reset child): its result
/// and the first divergence from the reference, if it was compared with it.
pub(crate) type Confirm<'a> = dyn FnMut(&History) -> anyhow::Result<(RunResult, Option<Divergence>)> + 'a;

/// The report of lockstep seeds `runs` of `engine`: each invariant broken and the first
/// divergence, shrunk on the `twin` and confirmed on the engine under test.
pub(crate) fn lockstep_report(
    run: &PgRun<'_>,
    engine: &str,
    runs: &[SeedRun],
    elapsed: std::time::Duration,
    twin: Twin,
    confirm: &mut Confirm<'_>,
) -> anyhow::Result<RunReport> {
    // A signal that comes from here on (every seed has run) cuts the shrinking short: the
    // counterexamples are written as far as they got. One that stopped the seeds does not.
    let ran_to = run.ran_to(runs.last().map(|r| r.seed));
    let run = &PgRun { stop: run.stop.filter(|stop| !stop.load(Ordering::Relaxed)), ..*run };
    let mut coverage = Coverage::default();
    let mut hash = ledger_simulator::report::EMPTY_TRACE_HASH;
    for r in runs {
        coverage.merge(&r.result.coverage);
        hash = ledger_simulator::report::fold_trace_hash(hash, r.result.trace_hash);
    }
    let steps: u64 = runs.iter().map(|r| r.result.n_events).sum();
    // The divergence is shrunk first: an invariant its seed breaks where the twin does not (a
    // bug of the engine's own, which the divergence usually is too) takes its counterexample
    // when that breaks it, so that one bug is reported from one trace, with one set of numbers.
    let diverging: Vec<&SeedRun> = runs.iter().filter(|r| r.divergence.is_some()).collect();
    let divergence = match diverging.first() {
        Some(first) => Some((first.seed, divergence_counterexample(run, engine, first, confirm)?)),
        None => None,
    };
    let mut violations = Vec::new();
    let mut from_fresh = Vec::new();
    for inv in Invariant::ALL {
        let breaking: Vec<&SeedRun> =
            runs.iter().filter(|r| r.result.violations.iter().any(|v| v.invariant == inv)).collect();
        if let Some(first) = breaking.first() {
            let seeds = breaking.iter().map(|r| r.seed).collect();
            let shared = divergence.as_ref().filter(|(seed, _)| *seed == first.seed).map(|(_, d)| d);
            let (v, fresh) = lockstep_counterexample(run, engine, first, inv, seeds, twin, confirm, shared)?;
            if fresh {
                from_fresh.push(v.invariant.clone());
            }
            violations.push(v);
        }
    }
    if let Some((seed, found)) = divergence {
        let Divergent { history: h, mut detail, replayed, reduction, fresh_only, note, .. } = found;
        let path = run.trace_dir.join(format!("{engine}-seed{seed}-divergence.jsonl"));
        ledger_simulator::report::write_trace(&h, &path)?;
        if fresh_only && !from_fresh.is_empty() {
            detail.push_str(&format!(
                ". The {} violation(s) reported after this follow from it: they are judged on those books, not on \
                 what the implementation stores; fix \"fresh\" first",
                from_fresh.join(", ")
            ));
        }
        if let Some(note) = note {
            detail.push_str(&format!(" [{note}]"));
        }
        let v = ViolationReport {
            invariant: "divergence".to_owned(),
            name: match twin {
                Twin::Reference if fresh_only => format!("{engine} gives the right reply with the wrong \"fresh\""),
                Twin::Reference => format!("{engine} disagrees with the reference engine"),
                Twin::Seed | Twin::SeedAtomic => format!("{engine} disagrees with the seed model"),
            },
            seed,
            seeds: diverging.iter().map(|r| r.seed).collect(),
            seeds_unlisted: 0,
            detail,
            shrunk_flows: h.flows.len(),
            shrunk_events: h.events.len(),
            reduction,
            steps: replayed.map(|r| r.log).unwrap_or_default(),
            trace: path.display().to_string(),
            replay: replay_command(run, &path),
        };
        // A wrong `fresh` is the cause of what the books show: said first.
        if fresh_only {
            violations.insert(0, v);
        } else {
            violations.push(v);
        }
    }
    Ok(RunReport {
        engine: engine.to_owned(),
        scheduler: Some(run.scheduler),
        seeds: format!("{}..{ran_to}", run.seeds.0),
        steps,
        requests: runs.iter().map(|r| r.result.n_requests).sum(),
        violations,
        coverage: coverage.with_all_marks(),
        trace_hash: Some(format!("{hash:016x}")),
        deterministic: true,
        steps_per_sec: (steps as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
    })
}

/// The implementation of an `--engine exec` run; `None` for the Postgres engines, whose runs
/// the command line hands its (empty) exec options too: their replay takes no `--exec`, and
/// their counterexamples are shrunk on the in-memory twin, or cut.
fn exec_of<'a>(run: &PgRun<'a>) -> Option<&'a crate::args::ExecArgs> {
    run.exec.filter(|_| run.kind == EngineKind::Exec)
}

/// The command that replays a trace written by `run`.
pub(crate) fn replay_command(run: &PgRun<'_>, path: &std::path::Path) -> String {
    let replay = ledger_simulator::report::replay_command(path);
    match exec_of(run) {
        Some(exec) => format!("{replay} {}", exec.replay_flags()),
        None => replay,
    }
}

/// The longest a counterexample is shrunk on the engine itself (an exec implementation, a
/// `--pg-mutant`) unless `--max-replays` is given ([`PgRun::shrink_for`]).
pub const SHRINK_ON_ENGINE: Duration = Duration::from_secs(30);

/// Why a shrink on the engine stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ShrinkEnd {
    /// Nothing more could go.
    Done,
    /// Its replays (`--max-replays`) were spent.
    Replays,
    /// Its time ([`PgRun::shrink_for`]) was spent.
    Time,
    /// A signal stopped the run.
    Signal,
}

impl ShrinkEnd {
    /// `" (stopped at ...)"`, or nothing for a shrink that got to its end.
    pub(crate) fn said(self, run: &PgRun<'_>) -> String {
        match self {
            ShrinkEnd::Done => String::new(),
            ShrinkEnd::Replays => format!(" (stopped after its {} replays, --max-replays)", run.max_replays),
            ShrinkEnd::Time => format!(
                " (stopped at its {} s bound; --max-replays N bounds it by replays alone, the same on every run)",
                run.shrink_for.map_or(0, |d| d.as_secs())
            ),
            ShrinkEnd::Signal => " (stopped by a signal)".to_owned(),
        }
    }

    /// What an entry's note says of it: `its bound` for a shrink cut short.
    pub(crate) fn bound(self, run: &PgRun<'_>) -> String {
        match self {
            ShrinkEnd::Time => format!("its {} s bound", run.shrink_for.map_or(0, |d| d.as_secs())),
            ShrinkEnd::Signal => "a signal".to_owned(),
            _ => format!("its {} replays", run.max_replays),
        }
    }
}

/// `(at most 30 s, 3000 replays)` or `(at most 200 replays)`.
pub(crate) fn shrink_bounds(run: &PgRun<'_>) -> String {
    match run.shrink_for {
        Some(d) => format!("at most {} s, {} replays", d.as_secs(), run.max_replays),
        None => format!("at most {} replays", run.max_replays),
    }
}

/// Shrinks a lockstep counterexample on the in-memory `twin` of the engine (the seed model
/// for `pg-seed`, the reference for `pg-reference`: `ledger-pg`'s differential tests hold them
/// step for step equal), then replays the shrunk trace on the engine (`confirm`) to confirm it.
///
/// A bug of the engine's own (an exec implementation's, a `--pg-mutant`'s) is not in the twin,
/// so the twin's shrink does not reproduce it. The seed's schedule is then cut after the event
/// of its first violation (a lockstep run's later events cannot matter to it), and an exec
/// implementation, deterministic in lockstep, is shrunk on itself, at most [`SHRINK_ON_ENGINE`]
/// and `--max-replays` replays. A counterexample only cut says so in its detail.
///
/// Before that shrink, `shared`, the counterexample of the divergence of the same seed, is
/// taken when it breaks `inv` on the engine: the same bug, one trace (two shrinks on the engine,
/// each stopped at its bound, would end on two traces that quote different numbers).
///
/// With the report, whether the violation follows from a wrong `fresh` of the engine: its
/// counterexample's replay first diverges, no later than it breaks, by a right reply with the
/// wrong `fresh` ([`Divergence::fresh_only`]), and `inv` is judged on the harness's books of
/// movements, which follow `fresh` (I2-I6).
#[allow(clippy::too_many_arguments)]
fn lockstep_counterexample(
    run: &PgRun<'_>,
    engine: &str,
    first: &SeedRun,
    inv: Invariant,
    seeds: Vec<u64>,
    twin: Twin,
    confirm: &mut Confirm<'_>,
    shared: Option<&Divergent>,
) -> anyhow::Result<(ViolationReport, bool)> {
    // A twin that does not break the seed has nothing to shrink (its shrink would hand the
    // whole seed back).
    let on_twin = match twin {
        Twin::Seed => replay(SeedEngine::new, &first.history, false),
        Twin::SeedAtomic => replay(|c| Atomic(SeedEngine::new(c)), &first.history, false),
        Twin::Reference => replay(ReferenceEngine::new, &first.history, false),
    };
    let mut h = first.history.clone();
    let mut reduction = Reduction::None;
    let mut confirmed = None;
    if on_twin.first_event.contains_key(&inv) {
        let shrunk = match twin {
            Twin::Seed => shrink_until(&SeedEngine::new, &first.history, inv, run.max_replays, run.stop),
            Twin::SeedAtomic => {
                shrink_until(&|c| Atomic(SeedEngine::new(c)), &first.history, inv, run.max_replays, run.stop)
            }
            Twin::Reference => shrink_until(&ReferenceEngine::new, &first.history, inv, run.max_replays, run.stop),
        };
        (h, reduction) = (shrunk.history, shrunk.reduction);
        h.engine = engine.to_owned();
        confirmed = Some(confirm(&h)?).filter(|(r, _)| r.first_event.contains_key(&inv));
    }
    let mut note = None;
    let (confirmed, diverged) = match confirmed {
        Some(confirmed) => confirmed,
        None => match shared.filter(|d| d.replayed.as_ref().is_some_and(|r| r.first_event.contains_key(&inv))) {
            Some(d) => {
                (h, reduction) = (d.history.clone(), d.reduction);
                let shared = "the counterexample of the divergence from the reference, which breaks this too";
                note = Some(match &d.note {
                    Some(bound) => format!("{bound}; it is {shared}"),
                    None => shared.to_owned(),
                });
                ledger_exec::say!(
                    "ledger-sim: {} takes the counterexample of the divergence of seed {}, which breaks it too",
                    inv.id(),
                    first.seed
                );
                confirm(&h)?
            }
            None => {
                let (own, how, why) = on_engine(run, engine, first, inv, confirm)?;
                (h, reduction, note) = (own, how, why);
                confirm(&h)?
            }
        },
    };
    let from_fresh = matches!(inv, Invariant::I2 | Invariant::I3 | Invariant::I4 | Invariant::I5 | Invariant::I6)
        && diverged.as_ref().is_some_and(|d| {
            d.fresh_only
                && match confirmed.first_event.get(&inv) {
                    Some(Some(at)) => d.event <= *at as u64,
                    // In the drain, after every event.
                    Some(None) => true,
                    None => false,
                }
        });
    let mut detail = confirmed
        .violations
        .iter()
        .chain(&first.result.violations)
        .find(|v| v.invariant == inv)
        .map(|v| v.to_string())
        .unwrap_or_default();
    if let Some(note) = note {
        detail = format!("{detail} [{note}]");
    }
    if from_fresh {
        detail = format!(
            "{detail} [follows from the wrong \"fresh\" reported first: the harness books movements from \"fresh\" \
             (SPEC.md §9.2), and this is judged on those books]"
        );
    }
    let path = run.trace_dir.join(format!("{engine}-seed{}-{}.jsonl", first.seed, inv.id()));
    ledger_simulator::report::write_trace(&h, &path)?;
    let report = ViolationReport {
        invariant: inv.id().to_owned(),
        name: inv.name().to_owned(),
        seed: first.seed,
        seeds,
        seeds_unlisted: 0,
        detail,
        shrunk_flows: h.flows.len(),
        shrunk_events: h.events.len(),
        reduction,
        steps: confirmed.log,
        trace: path.display().to_string(),
        replay: replay_command(run, &path),
    };
    Ok((report, from_fresh))
}

/// The counterexample of a bug the twin does not have: the seed cut after the event of its first
/// violation (and the flows only later events started) when the cut still breaks `inv` on the
/// engine, then shrunk on the engine itself: an exec implementation from the cut or the whole
/// seed, PostgreSQL from a confirmed cut only (a whole seed that a replay does not break would
/// spend the shrink's bound on candidates that cannot). With it, how it was reduced and why it
/// is not shrunk (or not wholly), for the report.
fn on_engine(
    run: &PgRun<'_>,
    engine: &str,
    first: &SeedRun,
    inv: Invariant,
    confirm: &mut Confirm<'_>,
) -> anyhow::Result<(History, Reduction, Option<String>)> {
    let mut h = first.history.clone();
    h.engine = engine.to_owned();
    let whole = h.events.len();
    let mut cut_at = None;
    if let Some(&Some(at)) = first.result.first_event.get(&inv) {
        let cut = cut_after(&h, at);
        if cut.events.len() < whole && confirm(&cut)?.0.first_event.contains_key(&inv) {
            h = cut;
            cut_at = Some(at);
        }
    }
    let (cut, only_cut) = match cut_at {
        Some(at) => (format!("cut after event {at}, its first violation"), Reduction::Cut),
        None => ("the whole seed".to_owned(), Reduction::None),
    };
    let on = match exec_of(run) {
        Some(exec) => format!("`{}`", exec.command().unwrap_or("the implementation")),
        None if cut_at.is_some() => engine.to_owned(),
        None => {
            return Ok((h, only_cut, Some(format!("not shrunk: {cut}; the in-memory twin does not have this bug"))))
        }
    };
    ledger_exec::say!(
        "ledger-sim: the {} counterexample does not break on the in-memory twin: {cut}, shrinking it on {on} itself ({})",
        inv.id(),
        shrink_bounds(run)
    );
    let started = Instant::now();
    let before = (h.flows.len(), h.events.len());
    let mut fails = |c: &History| -> anyhow::Result<bool> { Ok(confirm(c)?.0.first_event.contains_key(&inv)) };
    let (n_replays, end) = shrink_by(&mut h, &mut fails, run, started)?;
    let done = end == ShrinkEnd::Done;
    // Shrunk when something went, or the shrinker found nothing could; else only cut.
    let reduction = if done || (h.flows.len(), h.events.len()) != before { Reduction::Shrunk } else { only_cut };
    ledger_exec::say!(
        "ledger-sim: {} shrunk on {on} to {} flow(s), {} event(s) in {n_replays} replays, {:.1} s{}",
        inv.id(),
        h.flows.len(),
        h.events.len(),
        started.elapsed().as_secs_f64(),
        end.said(run)
    );
    let note = match (done, reduction) {
        (true, _) => None,
        (false, Reduction::Shrunk) => {
            Some(format!("{cut}, then shrunk on the engine until {}; it may shrink further", end.bound(run)))
        }
        (false, _) => Some(format!("not shrunk: {cut}; its shrink on the engine stopped at {} first", end.bound(run))),
    };
    Ok((h, reduction, note))
}

/// The counterexample of the divergence of `first`: the seed cut after the event that
/// diverged, when the cut, replayed on the engine (`confirm`), still diverges (a lockstep run's
/// later events cannot matter to it), then shrunk on the engine while it still diverges (the
/// twin cannot disagree with itself), at most [`SHRINK_ON_ENGINE`] and `--max-replays`
/// replays. The whole seed when neither reproduces it (a divergence in the drain is not cut;
/// one a crash caused does not come back on a replay without it).
fn divergence_counterexample(
    run: &PgRun<'_>,
    engine: &str,
    first: &SeedRun,
    confirm: &mut Confirm<'_>,
) -> anyhow::Result<Divergent> {
    let d = first.divergence.as_ref().expect("a diverging seed");
    let mut h = first.history.clone();
    h.engine = engine.to_owned();
    let whole = Divergent {
        history: h.clone(),
        detail: format!("at engine step {}: {}", d.step, d.detail),
        replayed: None,
        reduction: Reduction::None,
        fresh_only: d.fresh_only,
        cut: "the whole seed".to_owned(),
        note: None,
    };
    let mut found = None;
    if let Some(at) = usize::try_from(d.event).ok().filter(|&at| at + 1 < h.events.len()) {
        let cut = cut_after(&h, at);
        let (r, again) = confirm(&cut)?;
        match again {
            Some(again) => {
                found = Some(Divergent {
                    history: cut,
                    detail: format!("at engine step {}: {}", again.step, again.detail),
                    replayed: Some(r),
                    reduction: Reduction::Cut,
                    fresh_only: again.fresh_only,
                    cut: format!("cut after event {at}, where it diverged"),
                    note: None,
                });
            }
            None => ledger_exec::say!(
                "ledger-sim: seed {} cut after event {at}, where it diverged, does not diverge on a replay: its \
                 counterexample is the whole seed",
                first.seed
            ),
        }
    }
    // A pg-reference divergence is shrunk from its confirmed cut only: a whole seed that a replay
    // does not make diverge would spend the shrink's bound on candidates that cannot.
    let Some(start) = found.or_else(|| exec_of(run).map(|_| whole.clone())) else { return Ok(whole) };
    // What to keep when the shrunk history no longer diverges: the confirmed cut, or the seed.
    let fallback = if start.reduction == Reduction::Cut { start.clone() } else { whole };
    Ok(shrink_divergence(run, engine, first.seed, start, confirm)?.unwrap_or(fallback))
}

/// `h` cut after event `at`: its later events, and the flows they alone started, are gone (a
/// flow no event names plays no part).
pub(crate) fn cut_after(h: &History, at: usize) -> History {
    let mut cut = h.clone();
    cut.events.truncate(at + 1);
    let named: std::collections::BTreeSet<u32> = cut
        .events
        .iter()
        .filter_map(|ev| match *ev {
            Event::Start(id) | Event::Step(id) | Event::Ghost(id, _) => Some(id),
            Event::Jump(_) => None,
        })
        .collect();
    cut.flows.retain(|f| named.contains(&f.id));
    cut
}

/// The divergence `start` of an engine from its twin, shrunk on the engine itself, at most
/// [`SHRINK_ON_ENGINE`] and `--max-replays` replays; `None` if the shrunk history no longer
/// disagrees and `start` was not confirmed (`Reduction::None`), else `start` when nothing went.
fn shrink_divergence(
    run: &PgRun<'_>,
    engine: &str,
    seed: u64,
    start: Divergent,
    confirm: &mut Confirm<'_>,
) -> anyhow::Result<Option<Divergent>> {
    let on = match exec_of(run) {
        Some(exec) => format!("`{}`", exec.command().unwrap_or("the implementation")),
        None => engine.to_owned(),
    };
    ledger_exec::say!(
        "ledger-sim: shrinking the divergence of seed {seed} ({} flow(s), {} event(s)) on {on} itself ({})",
        start.history.flows.len(),
        start.history.events.len(),
        shrink_bounds(run)
    );
    let started = Instant::now();
    let mut h = start.history.clone();
    // A candidate must diverge the same way: a wrong `fresh` is not traded for another kind.
    let fresh_only = start.fresh_only;
    let mut fails =
        |c: &History| -> anyhow::Result<bool> { Ok(confirm(c)?.1.is_some_and(|d| d.fresh_only == fresh_only)) };
    let (n_replays, end) = shrink_by(&mut h, &mut fails, run, started)?;
    let done = end == ShrinkEnd::Done;
    let changed = (h.flows.len(), h.events.len()) != (start.history.flows.len(), start.history.events.len());
    if !changed && start.reduction != Reduction::None {
        // Confirmed already, and nothing went.
        ledger_exec::say!(
            "ledger-sim: the divergence did not shrink further in {n_replays} replays, {:.1} s{}",
            started.elapsed().as_secs_f64(),
            end.said(run)
        );
        let note = (!done).then(|| {
            format!("not shrunk: {}; its shrink on the engine stopped at {} first", start.cut, end.bound(run))
        });
        return Ok(Some(Divergent {
            reduction: if done { Reduction::Shrunk } else { start.reduction },
            note,
            ..start
        }));
    }
    let reduction = if done || changed { Reduction::Shrunk } else { start.reduction };
    let (r, d) = confirm(&h)?;
    let Some(d) = d else { return Ok(None) };
    ledger_exec::say!(
        "ledger-sim: the divergence shrunk to {} flow(s), {} event(s) in {n_replays} replays, {:.1} s{}",
        h.flows.len(),
        h.events.len(),
        started.elapsed().as_secs_f64(),
        end.said(run)
    );
    let detail = format!("at engine step {}: {}", d.step, d.detail);
    // As an invariant's counterexample shrunk on the engine says it ([`on_engine`]).
    let note = (!done).then(|| match reduction {
        Reduction::Shrunk => {
            format!("{}, then shrunk on the engine until {}; it may shrink further", start.cut, end.bound(run))
        }
        _ => format!("not shrunk: {}; its shrink on the engine stopped at {} first", start.cut, end.bound(run)),
    });
    let cut = start.cut;
    Ok(Some(Divergent { history: h, detail, replayed: Some(r), reduction, fresh_only: d.fresh_only, cut, note }))
}

/// The counterexample of a divergence: the history, where it disagrees, its replay on the
/// engine (its steps and what it broke; `None` for a whole seed not replayed), how it was
/// reduced (where it was cut, and a note when its shrink stopped at its bound), and whether
/// the engine's replies agreed and only its `fresh` did not.
#[derive(Clone)]
struct Divergent {
    history: History,
    detail: String,
    replayed: Option<RunResult>,
    reduction: Reduction,
    fresh_only: bool,
    /// `cut after event N, where it diverged`, or `the whole seed`.
    cut: String,
    note: Option<String>,
}

/// Removes chunks of flows, then of events, halving the chunk (as the simulator's shrinker
/// does), while `fails` says the candidate still breaks, until nothing more goes, the run's
/// `--max-replays` replays are spent, [`PgRun::shrink_for`] from `started` passes or a signal
/// stops the run. Replays spent, and why it stopped.
pub(crate) fn shrink_by(
    h: &mut History,
    fails: &mut dyn FnMut(&History) -> anyhow::Result<bool>,
    run: &PgRun<'_>,
    started: Instant,
) -> anyhow::Result<(usize, ShrinkEnd)> {
    let deadline = run.shrink_for.map(|d| started + d);
    let max_replays = run.max_replays;
    let mut n_replays = 0;
    loop {
        let mut progress = false;
        for flows in [true, false] {
            let n_items = |h: &History| if flows { h.flows.len() } else { h.events.len() };
            let mut chunk = n_items(h).div_ceil(2).max(1);
            loop {
                let mut start = 0;
                while start < n_items(h) {
                    if run.stopping() {
                        return Ok((n_replays, ShrinkEnd::Signal));
                    }
                    if n_replays >= max_replays {
                        return Ok((n_replays, ShrinkEnd::Replays));
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok((n_replays, ShrinkEnd::Time));
                    }
                    let candidate =
                        if flows { without_flows(h, start, chunk) } else { without_events(h, start, chunk) };
                    n_replays += 1;
                    if fails(&candidate)? {
                        *h = candidate;
                        progress = true;
                    } else {
                        start += chunk;
                    }
                }
                if chunk == 1 {
                    break;
                }
                chunk = chunk.div_ceil(2);
            }
        }
        if !progress {
            // Users no flow names play no part in the ledger's rules, but an implementation's
            // failure may be in setting one up (a crash on `set_tier`): they go only if the
            // trace still fails without them, one more replay.
            let named: std::collections::BTreeSet<u32> = h.flows.iter().map(|f| f.user).collect();
            let mut pruned = h.clone();
            pruned.users.retain(|u, _| named.contains(u));
            if pruned.users.len() < h.users.len() && n_replays < max_replays && !run.stopping() {
                n_replays += 1;
                if fails(&pruned)? {
                    *h = pruned;
                }
            }
            return Ok((n_replays, ShrinkEnd::Done));
        }
    }
}

/// `h` without flows `start..start + len` and their events.
fn without_flows(h: &History, start: usize, len: usize) -> History {
    let end = (start + len).min(h.flows.len());
    let gone: std::collections::BTreeSet<u32> = h.flows[start..end].iter().map(|f| f.id).collect();
    let mut c = h.clone();
    c.flows.drain(start..end);
    c.events.retain(|ev| match *ev {
        Event::Start(id) | Event::Step(id) | Event::Ghost(id, _) => !gone.contains(&id),
        Event::Jump(_) => true,
    });
    c
}

/// `h` without events `start..start + len`.
fn without_events(h: &History, start: usize, len: usize) -> History {
    let mut c = h.clone();
    let end = (start + len).min(c.events.len());
    c.events.drain(start..end);
    c
}

/// Where a lockstep run confirms its counterexamples (replays them on the engine): the server
/// the run used, never a server of its own beside it.
///
/// - `--database-url`: a fresh database on its server, made and dropped for each replay, when
///   the URL's role may create databases; otherwise the given database, reset before each
///   replay as before each seed.
/// - Fresh databases of `DATABASE_URL`'s server or of the run's throwaway cluster: one more.
/// - A private cluster per seed (`--restart-server-at`, `--crash-server-at`): a replay crashes
///   nothing, so every replay gets a fresh database of one throwaway cluster, started at the
///   first and kept until the run's report is made.
struct ConfirmOn<'a> {
    server: &'a Server,
    /// `--database-url`: whether its role may create databases (asked at the first replay).
    creates: Option<bool>,
    /// A private-cluster run's throwaway cluster, kept alive between replays.
    keep: Option<TestPg>,
}

impl<'a> ConfirmOn<'a> {
    fn new(server: &'a Server) -> ConfirmOn<'a> {
        ConfirmOn { server, creates: None, keep: None }
    }

    fn replay(
        &mut self,
        kind: EngineKind,
        h: &History,
        log: bool,
        mutant: Option<&str>,
    ) -> anyhow::Result<(RunResult, Option<Divergence>)> {
        match self.server {
            Server::Url { url, .. } => {
                let creates = match self.creates {
                    Some(creates) => creates,
                    None => {
                        let creates = may_create_database(url)?;
                        if creates {
                            ledger_exec::say!(
                                "ledger-sim: confirming the counterexample on the run's server, in a fresh database \
                                 (dropped after each replay) on {} (waiting at most {} s for each)",
                                redacted(url),
                                ledger_pg::testpg::ADMIN_TIMEOUT.as_secs()
                            );
                        } else {
                            ledger_exec::say!(
                                "ledger-sim: confirming the counterexample on the run's database {}, reset before each \
                                 replay as before each seed (its role may not create a database)",
                                redacted(url)
                            );
                        }
                        self.creates = Some(creates);
                        creates
                    }
                };
                if creates {
                    let scratch = TestPg::on_server("--database-url", url, "ledger_confirm")
                        .map_err(|e| anyhow::anyhow!("confirming the counterexample: {e}"))?;
                    let r = lockstep_replay(kind, scratch.url(), h, log, mutant);
                    let name = scratch.database_name().to_owned();
                    if let Err(e) = scratch.drop_database() {
                        ledger_exec::say!(
                            "ledger-sim: {e}; the database {name} is left on the server, drop it by hand"
                        );
                    }
                    r
                } else {
                    let db = self.server.fresh()?;
                    lockstep_replay(kind, &db.url, h, log, mutant)
                }
            }
            Server::Test { .. } => {
                if self.creates.replace(true).is_none() {
                    ledger_exec::say!(
                        "ledger-sim: confirming the counterexample on a fresh database of the run's server"
                    );
                }
                let db = self.server.fresh()?;
                lockstep_replay(kind, &db.url, h, log, mutant)
            }
            Server::Private(_) => {
                if self.keep.is_none() {
                    ledger_exec::say!(
                        "ledger-sim: confirming the counterexample on a fresh database of a throwaway PostgreSQL (a \
                         replay crashes no server), the same for every replay"
                    );
                    self.keep = Some(TestPg::new().map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?);
                }
                replay_pg(kind, h, log, mutant)
            }
            // A run stopped before its server was made ran no seed, and has nothing to confirm.
            Server::Stopped => {
                anyhow::bail!("the run was stopped before its PostgreSQL was made: nothing to replay on")
            }
        }
    }
}

/// Whether the role of `url` may create databases (`CREATEDB` or superuser), asked on one
/// connection of its own, for at most `ADMIN_TIMEOUT`.
fn may_create_database(url: &str) -> anyhow::Result<bool> {
    let shown = redacted(url);
    let opts: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| anyhow::anyhow!("--database-url {shown}: {e}"))?;
    admin(&shown, "asking whether its role may create a database", async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
        let may: Option<bool> =
            sqlx::query_scalar("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_optional(&mut conn)
                .await?;
        conn.close().await?;
        Ok(may.unwrap_or(false))
    })
}

/// One admin task on the server of `shown` (a redacted URL), bounded by `ADMIN_TIMEOUT`.
fn admin<T: Send + 'static>(
    shown: &str,
    what: &str,
    task: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> anyhow::Result<T> {
    let limit = ledger_pg::testpg::ADMIN_TIMEOUT;
    match server::block_on(async move { tokio::time::timeout(limit, task).await })? {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(anyhow::anyhow!("{what} on {shown}: {e}")),
        Err(_) => Err(anyhow::anyhow!("{what} on {shown}: no answer within {} s", limit.as_secs())),
    }
}

fn replay_pg(
    kind: EngineKind,
    h: &History,
    log: bool,
    mutant: Option<&str>,
) -> anyhow::Result<(RunResult, Option<Divergence>)> {
    let pg = TestPg::new().map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
    let url = pg.url().to_owned();
    let r = lockstep_replay(kind, &url, h, log, mutant);
    drop(pg);
    r
}

pub(crate) fn lockstep_replay(
    kind: EngineKind,
    url: &str,
    h: &History,
    log: bool,
    mutant: Option<&str>,
) -> anyhow::Result<(RunResult, Option<Divergence>)> {
    let found = Arc::new(Mutex::new(None));
    let name = engine_name(kind);
    let c = h.config;
    let r = match kind {
        EngineKind::PgSeed => {
            let db = PgSeedEngine::connect_url(url, c).map_err(|e| cannot_connect(name, url, e))?;
            let (engine, lost) = Halting::new(db, None);
            let r = replay(once(engine, c), h, log);
            lost_error(&lost, url)?;
            r
        }
        _ => {
            let db = PgReferenceEngine::connect_url(url, c).map_err(|e| cannot_connect(name, url, e))?;
            install_mutant(url, mutant)?;
            let (db, lost) = Halting::new(db, None);
            let r = replay(once(Differential::new(db, ReferenceEngine::new(c), Arc::clone(&found)), c), h, log);
            lost_error(&lost, url)?;
            r
        }
    };
    let d = found.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok((r, d))
}

/// Replays a lockstep trace of a Postgres engine on a fresh database (of `DATABASE_URL`'s
/// server or a throwaway cluster), with `mutant` (the SQL of `--pg-mutant`) installed first
/// when given: the result, and the first divergence from the reference engine (`at engine
/// step N: what differed`), a finding like an invariant's, as [`crate::replay_on_exec`] gives.
pub fn replay_on_pg(
    kind: EngineKind,
    h: &History,
    log: bool,
    mutant: Option<&str>,
) -> anyhow::Result<(RunResult, Option<String>)> {
    let (r, d) = replay_pg(kind, h, log, mutant)?;
    Ok((r, d.map(|d| format!("at engine step {}: {}", d.step, d.detail))))
}
