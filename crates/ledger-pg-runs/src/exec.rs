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

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ledger_core::Config;
use ledger_exec::{Api, Child, ExecEngine, Stop};
use ledger_harness::{Atomic, ReferenceEngine, SeedEngine};
use ledger_simulator::exec::RunResult;
use ledger_simulator::gen::{replay, run_seed};
use ledger_simulator::history::History;
use ledger_simulator::report::RunReport;

use crate::args::{ExecArgs, PgArgs, PgRun};
use crate::differential::{Differential, Divergence};
use crate::lockstep::{lockstep_report, once, SeedRun, Twin};
use crate::server::{Db, Server};

/// The database an implementation was given (`--exec-db`), kept as long as this lives: drop
/// it after the child.
pub struct ChildDb {
    _db: Option<Db>,
}

/// Starts the implementation of `exec`, with a fresh database in `DATABASE_URL` if asked.
pub(crate) fn start(exec: &ExecArgs, pg: &PgArgs, config: &Config) -> anyhow::Result<(Child, ChildDb)> {
    let command = exec.command()?;
    let timeout = exec.timeout()?;
    let db = if exec.exec_db { Some(Server::new(pg)?.fresh()?) } else { None };
    let env: Vec<(String, String)> = db.iter().map(|d| ("DATABASE_URL".to_owned(), d.url.clone())).collect();
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

fn stopped(stop: &Stop) -> anyhow::Result<()> {
    match stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(why) => anyhow::bail!("{why}; a lockstep run cannot be judged past it"),
        None => Ok(()),
    }
}

/// Replays `h` on the child from a reset: the result and, for the reference API, the first
/// divergence from the reference.
fn replay_on(child: &RefCell<Child>, h: &History, log: bool) -> anyhow::Result<(RunResult, Option<Divergence>)> {
    let c = h.config;
    let stop = Stop::default();
    let found = Arc::new(Mutex::new(None));
    let api = child.borrow().hello().api;
    let engine = ExecEngine::reset(child, c, Arc::clone(&stop));
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
    stopped(&stop)?;
    let d = found.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok((r, d))
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
    let api = child.borrow().hello().api;
    let name = report_name(api);
    let mut runs = Vec::new();
    for seed in run.seeds.0..run.seeds.1 {
        if run.stopping() {
            break;
        }
        let c = ledger_simulator::gen::seed_config(run.scenario, seed);
        let stop = Stop::default();
        let found = Arc::new(Mutex::new(None));
        let engine = ExecEngine::reset(&child, c, Arc::clone(&stop));
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
        stopped(&stop)?;
        let divergence = found.lock().unwrap_or_else(|p| p.into_inner()).take();
        let bad = !result.violations.is_empty() || divergence.is_some();
        runs.push(SeedRun { seed, result, history, divergence });
        if bad && run.fail_fast {
            break;
        }
    }
    let twin = match api {
        Api::Reference => Twin::Reference,
        Api::Seed => Twin::SeedAtomic,
    };
    lockstep_report(run, name, &runs, started.elapsed(), twin, &mut |h| replay_on(&child, h, true))
}

/// Replays an exec trace on the implementation of `exec`: the result, and for the reference
/// API the first divergence from the reference (`at engine step N: what differed`).
pub fn replay_on_exec(h: &History, exec: &ExecArgs, log: bool) -> anyhow::Result<(RunResult, Option<String>)> {
    let (child, _db) = start(exec, &PgArgs::default(), &h.config)?;
    let child = RefCell::new(child);
    let want = h.engine.as_str();
    let have = report_name(child.borrow().hello().api);
    if want != "exec" && want != have {
        anyhow::bail!("the trace was written by {want}, but `{}` speaks the API of {have}", child.borrow().command());
    }
    let (r, d) = replay_on(&child, h, log)?;
    Ok((r, d.map(|d| format!("at engine step {}: {}", d.step, d.detail))))
}
