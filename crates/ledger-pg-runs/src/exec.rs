//! Runs of an implementation in its own process (`--engine exec --exec COMMAND`, SPEC.md §9):
//! lockstep, and concurrent ([`crate::exec_concurrent`]).
//!
//! One child serves the whole run: `reset` before each seed puts it back at genesis under the
//! seed's configuration. An implementation of the reference API is compared with the in-memory
//! reference at every step, as `pg-reference` is ([`Differential`]); one of the seed's API with
//! the seed model one call per step (`Atomic<SeedEngine>`: lockstep sends one whole call at a
//! time), answer by answer, and its counterexamples are shrunk on that model. The reference
//! API's `fresh` is compared too: a right reply with a wrong `fresh` is named as such, since
//! the harness's books, and the invariants judged on them, follow `fresh` (SPEC.md §9.2).
//!
//! Lockstep injects no fault, so an implementation that fails a request on its own (an
//! indefinite error or an exit, `crash`; no answer within `--exec-timeout`, `no_answer`; a
//! line that is not a response of the protocol to the request, `bad_answer`) has failed at
//! that step of that seed: a finding of the run, as a broken invariant is
//! ([`ledger_exec::Failure`]). The seed is judged up to that step, its trace is cut there
//! (a crash or a bad answer is then shrunk on the implementation) and confirmed by a replay,
//! and the run goes on with the next seed, from a reset, or from a new child when the old one
//! failed. A child that cannot be started again ends the seeds there; the findings made are
//! reported, unconfirmed where a replay would have needed it.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ledger_core::Config;
use ledger_exec::{Api, Child, ExecEngine, Failure, FailureKind, Halt, Stop};
use ledger_harness::{Atomic, ReferenceEngine, SeedEngine};
use ledger_simulator::exec::RunResult;
use ledger_simulator::gen::{replay, run_seed};
use ledger_simulator::history::History;
use ledger_simulator::report::{Reduction, RunReport, ViolationReport};

use crate::args::{ExecArgs, PgArgs, PgRun};
use crate::differential::{Differential, Divergence};
use crate::lockstep::{
    cut_after, lockstep_report, once, replay_command, shrink_bounds, shrink_by, SeedRun, ShrinkEnd, Twin,
};
use crate::server::{Db, Server};

/// The database an implementation was given (`--exec-db`), kept as long as this lives: drop
/// it after the child.
pub struct ChildDb {
    _db: Option<Db>,
}

/// Whether the variables withheld from an implementation ([`ledger_exec::child::DATABASE_ENV`])
/// were named on stderr: once a process, not at every start.
static WITHHELD_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts the implementation of `exec`, with a fresh database in `DATABASE_URL` if asked and
/// the variables of `--exec-env`.
pub(crate) fn start(exec: &ExecArgs, pg: &PgArgs, config: &Config) -> anyhow::Result<(Child, ChildDb)> {
    let command = exec.command()?;
    let timeout = exec.timeout()?;
    let passed = exec.passed_env()?;
    let db = if exec.exec_db { Some(Server::new(pg, None)?.fresh()?) } else { None };
    let mut env: Vec<(String, String)> = db.iter().map(|d| ("DATABASE_URL".to_owned(), d.url.clone())).collect();
    env.extend(passed);
    let withheld = ledger_exec::child::withheld_database_env(&env);
    if !withheld.is_empty() && !WITHHELD_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        ledger_exec::say!(
            "ledger-sim: `{command}` starts without {} of this environment (each seed begins with a reset, which \
             it would carry out on the database they name): --exec-env NAME passes one on, --exec-db gives it a \
             fresh database",
            withheld.join(", ")
        );
    }
    ledger_exec::say!(
        "ledger-sim: starting `{command}`{} (waiting at most {} s for its hello)",
        if db.is_some() { " with a fresh database in DATABASE_URL" } else { "" },
        ledger_exec::child::HELLO_TIMEOUT.max(timeout).as_secs()
    );
    let child = Child::start(command, &env, config, timeout)?;
    let hello = child.hello();
    ledger_exec::say!(
        "ledger-sim: `{command}` is {:?}: the {} API, state in {}",
        hello.name,
        api_name(hello.api),
        match hello.state {
            ledger_exec::StateKind::Memory => "memory",
            ledger_exec::StateKind::Durable => "durable storage",
        }
    );
    Ok((child, ChildDb { _db: db }))
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::Reference => "reference",
        Api::Seed => "seed",
    }
}

/// Starts the implementation of `exec` for a command other than `run` (`conform`,
/// `bench-exec`), on a throwaway server when it needs a database.
pub fn start_exec(exec: &ExecArgs, config: &Config) -> anyhow::Result<(Child, ChildDb)> {
    start(exec, &PgArgs::default(), config)
}

/// The engine's name in reports and traces: `exec-reference` or `exec-seed`.
pub(crate) fn report_name(api: Api) -> &'static str {
    match api {
        Api::Reference => "exec-reference",
        Api::Seed => "exec-seed",
    }
}

/// The implementation's failure that stopped the engine ([`Failure`]), if one did.
fn halted(stop: &Stop) -> Option<Failure> {
    stop.lock().unwrap_or_else(|p| p.into_inner()).take().map(|Halt { failure, .. }| failure)
}

/// The implementation of a lockstep run: its child, and why it could not be started again,
/// once it could not (every later replay is then not run).
struct Implementation<'c> {
    child: &'c RefCell<Child>,
    gone: RefCell<Option<String>>,
}

impl<'c> Implementation<'c> {
    fn new(child: &'c RefCell<Child>) -> Implementation<'c> {
        Implementation { child, gone: RefCell::new(None) }
    }

    /// Why it could not be started again, if it could not.
    fn gone(&self) -> Option<String> {
        self.gone.borrow().clone()
    }

    /// A child that failed ([`Child::is_broken`]) replaced by a new one ([`revive`]); false
    /// (with why kept, said on stderr) when none could be started: the implementation is gone
    /// for the rest of the run.
    fn ready(&self, config: &Config) -> bool {
        if self.gone.borrow().is_some() {
            return false;
        }
        match revive(self.child, config) {
            Ok(()) => true,
            Err(e) => {
                let why = ledger_harness::text::shown(&format!("{e:#}"));
                ledger_exec::say!(
                    "ledger-sim: {why}; it was started again because it failed, and since it cannot be, the run \
                     stops its seeds here and reports what it found"
                );
                *self.gone.borrow_mut() = Some(why);
                false
            }
        }
    }
}

/// A child that failed (it hung, exited or wrote what is not an answer: [`Child::is_broken`])
/// is killed with its process group and started again with the same command and environment,
/// so that the next seed or replay has one (it resets it first; a durable one's state is
/// returned to genesis by that reset).
fn revive(child: &RefCell<Child>, config: &Config) -> anyhow::Result<()> {
    if !child.borrow().is_broken() {
        return Ok(());
    }
    let (command, env, timeout) = {
        let c = child.borrow();
        (c.command().to_owned(), c.env().to_vec(), c.timeout())
    };
    ledger_exec::say!("ledger-sim: `{command}` failed: killing its process group and starting it again");
    child.borrow_mut().kill();
    let fresh = Child::start(&command, &env, config, timeout)?;
    *child.borrow_mut() = fresh;
    Ok(())
}

/// `r` and its divergence `d`, of a seed or replay in which the implementation failed at `f`,
/// judged up to that failure only: what broke at an event before it stands; what broke at
/// its event or after (judged on a state it stopped showing, with every later call failing at
/// once, or in the drain) is not what the implementation did, and is left out, as are the
/// lines of the log past it.
fn judged_until(mut r: RunResult, d: Option<Divergence>, f: &Failure) -> (RunResult, Option<Divergence>) {
    r.first_event.retain(|_, at| at.is_some_and(|at| (at as u64) < f.event));
    let kept = &r.first_event;
    r.violations.retain(|v| kept.contains_key(&v.invariant));
    let mut event = 0;
    r.log.retain(|line| {
        // `[   41] t+...`: a line of event 41; a violation's line (`    !! ...`) follows its
        // event's.
        let numbered = line.strip_prefix('[').and_then(|l| l.split_once(']')).and_then(|(n, _)| n.trim().parse().ok());
        match numbered {
            Some(n) => {
                event = n;
                n <= f.event
            }
            None => event < f.event,
        }
    });
    (r, d.filter(|d| d.event < f.event))
}

/// Replays `h` on the child from a reset (a new child first if the last one failed): the
/// result and, for the reference API, the first divergence from the reference, and where the
/// implementation failed a request on its own, if it did (the result then judged up to it:
/// [`judged_until`]), said on stderr when `loud`. Nothing is replayed once the implementation
/// cannot be started again ([`Implementation::gone`]): the result is then empty, breaking
/// nothing.
fn replay_on(
    implementation: &Implementation<'_>,
    h: &History,
    log: bool,
    loud: bool,
) -> (RunResult, Option<Divergence>, Option<Failure>) {
    let c = h.config;
    let child = implementation.child;
    if !implementation.ready(&c) {
        let nothing = RunResult {
            violations: Vec::new(),
            first_event: Default::default(),
            n_events: 0,
            n_requests: 0,
            coverage: Default::default(),
            trace_hash: 0,
            log: Vec::new(),
        };
        return (nothing, None, None);
    }
    let stop = Stop::default();
    let found = Arc::new(Mutex::new(None));
    let api = child.borrow().hello().api;
    let engine = ExecEngine::on(child, c, Arc::clone(&stop));
    let engine = if loud { engine } else { engine.quiet() }.reset();
    let r = match api {
        Api::Reference => {
            let fresh = engine.last_fresh();
            let engine = Differential::new(engine, ReferenceEngine::new(c), Arc::clone(&found)).with_fresh(fresh);
            replay(once(engine, c), h, log)
        }
        Api::Seed => {
            let engine = Differential::new(engine, Atomic(SeedEngine::new(c)), Arc::clone(&found));
            replay(once(engine, c), h, log)
        }
    };
    let failure = halted(&stop);
    let d = found.lock().unwrap_or_else(|p| p.into_inner()).take();
    let (r, d) = match &failure {
        Some(f) => judged_until(r, d, f),
        None => (r, d),
    };
    (r, d, failure)
}

/// A seed in which the implementation failed a request on its own: where, and the seed's
/// history as run.
struct FailedSeed {
    seed: u64,
    failure: Failure,
    history: History,
}

/// `run --engine exec` in lockstep: every seed from a reset of one child.
pub(crate) fn exec_lockstep(run: &PgRun<'_>, args: &PgArgs, exec: &ExecArgs) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let (child, _db) = start(exec, args, &run.scenario.ledger)?;
    if run.stop.is_some() {
        // The child answered: from here a first signal lets the seed in flight finish.
        ledger_exec::child::finish_seed_on_first_signal();
    }
    let child = RefCell::new(child);
    let implementation = Implementation::new(&child);
    let api = child.borrow().hello().api;
    let name = report_name(api);
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for seed in run.seeds.0..run.seeds.1 {
        if run.stopping() || !implementation.ready(&run.scenario.ledger) {
            break;
        }
        let c = ledger_simulator::gen::seed_config(run.scenario, seed);
        let stop = Stop::default();
        let found = Arc::new(Mutex::new(None));
        let engine = ExecEngine::on(&child, c, Arc::clone(&stop)).in_seed(seed).reset();
        let (result, history) = match api {
            Api::Reference => {
                let fresh = engine.last_fresh();
                let engine = Differential::new(engine, ReferenceEngine::new(c), Arc::clone(&found)).with_fresh(fresh);
                run_seed(once(engine, c), name, run.scenario, seed, run.scheduler)
            }
            Api::Seed => {
                let engine = Differential::new(engine, Atomic(SeedEngine::new(c)), Arc::clone(&found));
                run_seed(once(engine, c), name, run.scenario, seed, run.scheduler)
            }
        };
        let failure = halted(&stop);
        let divergence = found.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (result, divergence) = match &failure {
            Some(f) => judged_until(result, divergence, f),
            None => (result, divergence),
        };
        let bad = !result.violations.is_empty() || divergence.is_some() || failure.is_some();
        if let Some(failure) = failure {
            failed.push(FailedSeed { seed, failure, history: history.clone() });
        }
        runs.push(SeedRun { seed, result, history, divergence });
        if bad && run.fail_fast {
            break;
        }
    }
    let twin = match api {
        Api::Reference => Twin::Reference,
        Api::Seed => Twin::SeedAtomic,
    };
    // A signal from here on cuts the shrinking of a crash short, as it does an invariant's
    // (`lockstep_report`); one that stopped the seeds does not.
    let shrinking = PgRun { stop: run.stop.filter(|stop| !stop.load(Ordering::Relaxed)), ..*run };
    let stopped_early = implementation.gone();
    let mut report = lockstep_report(run, name, &runs, started.elapsed(), twin, &mut |h| {
        let (r, d, _) = replay_on(&implementation, h, true, false);
        Ok((r, d))
    })?;
    for kind in FailureKind::ALL {
        let mine: Vec<&FailedSeed> = failed.iter().filter(|f| f.failure.kind == kind).collect();
        if !mine.is_empty() {
            report.violations.push(failure_report(&shrinking, name, &mine, &implementation)?);
        }
    }
    if let Some(why) = implementation.gone() {
        // Said on each finding: a CI reads the report, not stderr.
        let when = match &stopped_early {
            Some(_) => format!("the run stopped its seeds there (the report covers seeds {})", report.seeds),
            None => "its counterexamples could not all be replayed".to_owned(),
        };
        for v in &mut report.violations {
            v.detail.push_str(&format!(
                " [the implementation could not be started again ({why}): {when}; what needed a replay on it is \
                 not confirmed]"
            ));
        }
    }
    Ok(report)
}

/// The finding of the seeds `seeds` in which the implementation failed a request on its own,
/// one kind of failure: the first seed's history cut after the event where it failed, a
/// `crash` or a `bad_answer` then shrunk on the implementation while it fails the same way (the
/// same kind of failure, of the same request) within the run's bounds ([`PgRun::shrink_for`]
/// and `--max-replays` replays; a `no_answer` is not: each replay that reproduces it waits
/// `--exec-timeout`), confirmed by a replay whose steps the report shows.
fn failure_report(
    run: &PgRun<'_>,
    engine: &str,
    seeds: &[&FailedSeed],
    implementation: &Implementation<'_>,
) -> anyhow::Result<ViolationReport> {
    let first = seeds[0];
    let f = &first.failure;
    let command = implementation.child.borrow().command().to_owned();
    let same = |again: &Option<Failure>| again.as_ref().is_some_and(|g| g.kind == f.kind && g.what == f.what);
    let mut h = first.history.clone();
    h.engine = engine.to_owned();
    let at = usize::try_from(f.event).unwrap_or(usize::MAX);
    let (mut reduction, mut note) = (Reduction::None, None);
    if at.saturating_add(1) < h.events.len() {
        h = cut_after(&h, at);
        reduction = Reduction::Cut;
    }
    let (mut replayed, _, mut again) = replay_on(implementation, &h, true, false);
    if implementation.gone().is_some() {
        // Said on the finding by the run (`exec_lockstep`).
        again = None;
    } else if !same(&again) {
        // Not the trace's doing alone (the implementation depends on what it served before
        // the seed, or on time): the trace is kept, as the steps that led to it.
        note = Some("not confirmed: a replay of its trace did not fail so, and another run may not either".to_owned());
        again = None;
        replayed.log.clear();
    } else if f.kind != FailureKind::NoAnswer {
        let before = (h.flows.len(), h.events.len());
        ledger_exec::say!(
            "ledger-sim: shrinking the {} of seed {} ({} flow(s), {} event(s)) on `{command}` itself ({})",
            f.kind.id(),
            first.seed,
            before.0,
            before.1,
            shrink_bounds(run)
        );
        let started = Instant::now();
        let mut fails =
            |c: &History| -> anyhow::Result<bool> { Ok(same(&replay_on(implementation, c, false, false).2)) };
        let (n_replays, end) = shrink_by(&mut h, &mut fails, run, started)?;
        let done = end == ShrinkEnd::Done;
        ledger_exec::say!(
            "ledger-sim: the {} shrunk to {} flow(s), {} event(s) in {n_replays} replays, {:.1} s{}",
            f.kind.id(),
            h.flows.len(),
            h.events.len(),
            started.elapsed().as_secs_f64(),
            end.said(run)
        );
        if done || (h.flows.len(), h.events.len()) != before {
            reduction = Reduction::Shrunk;
            (replayed, _, again) = replay_on(implementation, &h, true, false);
        }
        if !done {
            note =
                Some(format!("its shrink on the implementation stopped at {}; it may shrink further", end.bound(run)));
        }
    } else {
        note = Some("not shrunk: each replay that reproduces it waits --exec-timeout".to_owned());
    }
    let mut detail = format!("seed {} {}", first.seed, f.describe(&command));
    if let Some(g) = again.filter(|g| g.event != f.event || g.step != f.step) {
        detail.push_str(&format!("; its trace fails so at {}", g.place()));
    }
    if let Some(note) = note {
        detail.push_str(&format!(" [{note}]"));
    }
    let path = run.trace_dir.join(format!("{engine}-seed{}-{}.jsonl", first.seed, f.kind.id()));
    ledger_simulator::report::write_trace(&h, &path)?;
    Ok(ViolationReport {
        invariant: f.kind.id().to_owned(),
        name: f.kind.name().to_owned(),
        seed: first.seed,
        seeds: seeds.iter().map(|s| s.seed).collect(),
        seeds_unlisted: 0,
        detail,
        shrunk_flows: h.flows.len(),
        shrunk_events: h.events.len(),
        reduction,
        steps: replayed.log,
        trace: path.display().to_string(),
        replay: replay_command(run, &path),
    })
}

/// Replays an exec trace on the implementation of `exec`: the result; for the reference
/// API, the first divergence from the reference (`at engine step N: what differed`); and the
/// request the implementation failed on its own, if it did (`crash ...: at engine step N:
/// ...`, [`ledger_exec::Failure`]), the result then judged up to it.
pub fn replay_on_exec(
    h: &History,
    exec: &ExecArgs,
    log: bool,
) -> anyhow::Result<(RunResult, Option<String>, Option<String>)> {
    let (child, _db) = start(exec, &PgArgs::default(), &h.config)?;
    let child = RefCell::new(child);
    let want = h.engine.as_str();
    let have = report_name(child.borrow().hello().api);
    if want != "exec" && want != have {
        anyhow::bail!("the trace was written by {want}, but `{}` speaks the API of {have}", child.borrow().command());
    }
    let implementation = Implementation::new(&child);
    let (r, d, f) = replay_on(&implementation, h, log, true);
    if let Some(why) = implementation.gone() {
        anyhow::bail!("{why}");
    }
    let command = child.borrow().command().to_owned();
    let failure = f.map(|f| format!("{} {}: {}", f.kind.id(), f.kind.name(), f.describe(&command)));
    Ok((r, d.map(|d| format!("at engine step {}: {}", d.step, d.detail)), failure))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ledger_exec::{Failure, FailureKind};
    use ledger_harness::{Invariant, Violation};
    use ledger_simulator::exec::{Coverage, RunResult};

    use super::judged_until;
    use crate::differential::Divergence;

    fn violation(invariant: Invariant) -> Violation {
        Violation { invariant, request_id: None, detail: format!("{invariant:?} broke") }
    }

    /// A seed in which the implementation failed at event 5 is judged up to it: what broke
    /// before stands; what broke at the failure or after it (the run went on with every call
    /// failing at once, judged on a state the implementation stopped showing), and the drain's
    /// verdicts, are left out, as are the log's lines past the failing step.
    #[test]
    fn a_seed_is_judged_up_to_the_implementations_failure() {
        let r = RunResult {
            violations: vec![violation(Invariant::I4), violation(Invariant::I2), violation(Invariant::I6)],
            first_event: BTreeMap::from([(Invariant::I4, Some(3)), (Invariant::I2, Some(5)), (Invariant::I6, None)]),
            n_events: 9,
            n_requests: 2,
            coverage: Coverage::default(),
            trace_hash: 0,
            log: [
                "[    3] t+0.750s  flow 1 decide(user#1, est=90) -> free, reserved 90",
                "    !! I4 broke",
                "[    5] t+1.250s  flow 1 record(actual=95, reserved=90) -> failed: crash: boom",
                "    !! I2 broke",
                "[    6] t+1.500s  flow 2 decide(user#2, est=10) -> failed: not sent: the implementation failed earlier",
                "    !! I6 broke",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let f = Failure {
            kind: FailureKind::Crash,
            step: 4,
            event: 5,
            what: "record",
            request: "{}".to_owned(),
            id: 44,
            how: "answered record with an indefinite error (crash: boom)".to_owned(),
        };
        let diverged = |event| Some(Divergence { step: 1, event, detail: String::new(), fresh_only: false });
        let (judged, d) = judged_until(r.clone(), diverged(5), &f);
        assert_eq!(judged.violations, vec![violation(Invariant::I4)]);
        assert_eq!(judged.first_event, BTreeMap::from([(Invariant::I4, Some(3))]));
        assert_eq!(judged.log, r.log[..3].to_vec());
        assert_eq!(d, None, "a divergence at the failure is judged on a state it stopped showing");
        assert_eq!(judged_until(r, diverged(4), &f).1, diverged(4));
    }
}
