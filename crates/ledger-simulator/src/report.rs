//! What a run reports, and the run of many seeds that produces it: the engines by name, the
//! report types `run` prints (as text or JSON), counterexamples shrunk and written as traces.
//!
//! It lives below the command line so that the Postgres runs (`ledger-pg-runs`) and the
//! in-memory runs report through the same types.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ledger_harness::{Invariant, ReferenceEngine, SeedEngine};
use rayon::prelude::*;
use serde::Serialize;

use crate::exec::{Coverage, RunResult};
use crate::gen::{replay, run_seed_aimed, SchedulerKind};
use crate::history::History;
use crate::scenario::Scenario;
use crate::shrink::shrink_until;
pub use crate::shrink::Reduction;
use crate::steer::{self, Bias, Draw, Steering};

/// Which engine to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The in-memory reference engine (SPEC.md).
    Reference,
    /// The faithful model of the seed's TypeScript.
    Seed,
    /// The reference semantics on PostgreSQL, compared step by step with `reference`.
    #[serde(rename = "pg-reference")]
    PgReference,
    /// The seed's SQL statements on PostgreSQL.
    #[serde(rename = "pg-seed")]
    PgSeed,
    /// An implementation in its own process, driven through the engine protocol (SPEC.md §9):
    /// `--exec COMMAND`. Reports name it `exec-reference` or `exec-seed` by the API it speaks.
    Exec,
}

/// An engine with, for the reference, an optional deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineSpec {
    /// The engine.
    pub kind: EngineKind,
    /// A mutant of the reference engine (only with the `mutants` feature).
    pub mutant: Option<ledger_harness::mutants::Mutant>,
}

/// Evaluates `$body` with `$make` bound to the constructor of the reference engine `$spec`
/// names: the exact reference, or (in a build with the `mutants` feature) a mutant of it,
/// which is an engine of another type. Check [`EngineSpec::check_reference`] first.
macro_rules! with_reference {
    ($spec:expr, |$make:ident| $body:expr) => {
        match $spec.mutant {
            None => {
                let $make = ReferenceEngine::new;
                $body
            }
            #[cfg(feature = "mutants")]
            Some(m) => {
                let $make = move |c: ledger_core::Config| ReferenceEngine::with_mutant(c, m);
                $body
            }
            #[cfg(not(feature = "mutants"))]
            Some(_) => unreachable!("checked by EngineSpec::check_reference"),
        }
    };
}

impl EngineSpec {
    /// The name recorded in traces: `reference`, `seed` or `reference+mutant=NAME`.
    pub fn name(self) -> String {
        match (self.kind, self.mutant) {
            (EngineKind::Reference, Some(m)) => format!("reference+mutant={}", m.name()),
            (EngineKind::Reference, None) => "reference".to_owned(),
            (EngineKind::Seed, _) => "seed".to_owned(),
            (EngineKind::PgReference, _) => "pg-reference".to_owned(),
            (EngineKind::PgSeed, _) => "pg-seed".to_owned(),
            (EngineKind::Exec, _) => "exec".to_owned(),
        }
    }

    /// Parse a name written by [`EngineSpec::name`].
    pub fn from_name(name: &str) -> anyhow::Result<EngineSpec> {
        let (base, mutant) = match name.split_once("+mutant=") {
            Some((base, m)) => {
                let m = ledger_harness::mutants::Mutant::from_name(m)
                    .ok_or_else(|| anyhow::anyhow!("unknown mutant {m:?}"))?;
                (base, Some(m))
            }
            None => (name, None),
        };
        let kind = match base {
            "reference" => EngineKind::Reference,
            "seed" if mutant.is_none() => EngineKind::Seed,
            "pg-reference" if mutant.is_none() => EngineKind::PgReference,
            "pg-seed" if mutant.is_none() => EngineKind::PgSeed,
            "exec" | "exec-reference" | "exec-seed" if mutant.is_none() => EngineKind::Exec,
            _ => anyhow::bail!("unknown engine {name:?}"),
        };
        Ok(EngineSpec { kind, mutant })
    }

    /// Whether this build can run the reference engine named (a mutant needs the `mutants`
    /// feature).
    pub fn check_reference(self) -> anyhow::Result<()> {
        match self.mutant {
            #[cfg(not(feature = "mutants"))]
            Some(m) => anyhow::bail!("mutant {} needs a build with `--features mutants`", m.name()),
            _ => Ok(()),
        }
    }
}

/// One distinct violation in a report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ViolationReport {
    /// `I1` ... `I6`.
    pub invariant: String,
    /// Its name.
    pub name: String,
    /// The first seed that broke it.
    pub seed: u64,
    /// The seeds that broke it, in seed order: the first [`MAX_BREAKING`].
    pub seeds: Vec<u64>,
    /// How many more seeds broke it than `seeds` lists (0, and then not written, unless more
    /// than [`MAX_BREAKING`] did).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seeds_unlisted: u64,
    /// The numbers, from the shrunk counterexample.
    pub detail: String,
    /// Flows of the counterexample, however it was reduced.
    pub shrunk_flows: usize,
    /// Events of the counterexample's schedule, however it was reduced.
    pub shrunk_events: usize,
    /// Whether the counterexample was shrunk, only cut at its first violation, or neither. A
    /// report written before this field reads as shrunk, as it then said.
    #[serde(default)]
    pub reduction: Reduction,
    /// The counterexample's steps, one line each.
    pub steps: Vec<String>,
    /// The trace file.
    pub trace: String,
    /// The command that replays it.
    pub replay: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ViolationReport {
    /// How many seeds broke it, listed or not.
    pub fn n_seeds(&self) -> u64 {
        self.seeds.len() as u64 + self.seeds_unlisted
    }

    /// What was done to make its counterexample short, as the text report and JUnit say it
    /// before its steps: `shrunk to 2 flow(s), 5 event(s)`, `cut to ...`; `None` when there is
    /// nothing to say (no trace and no steps).
    pub fn how_reduced(&self) -> Option<String> {
        let (n_flows, n_events) = (self.shrunk_flows, self.shrunk_events);
        if self.is_concurrent() {
            // A concurrent run's finding: its calls are listed, not shrunk.
            return Some("not shrunk (real concurrency)".to_owned());
        }
        if n_flows == 0 && n_events == 0 && self.steps.is_empty() {
            return None;
        }
        Some(match self.reduction {
            Reduction::Shrunk => format!("shrunk to {n_flows} flow(s), {n_events} event(s)"),
            Reduction::Cut => {
                format!("cut to {n_flows} flow(s), {n_events} event(s) after its first violation, not shrunk")
            }
            Reduction::None => format!("not shrunk: {n_flows} flow(s), {n_events} event(s)"),
        })
    }
}

impl ViolationReport {
    /// A concurrent run's finding: its calls are listed, not shrunk, and it has no replay (its
    /// `replay` says so and how to run the seed again). A counterexample shrunk to no flow
    /// and no event (the final sweep alone broke it) is not one: it replays.
    pub fn is_concurrent(&self) -> bool {
        self.shrunk_flows == 0
            && self.shrunk_events == 0
            && !self.steps.is_empty()
            && self.replay.starts_with(NOT_REPLAYABLE)
    }
}

/// How the `replay` of a concurrent finding begins.
pub const NOT_REPLAYABLE: &str = "not replayable (real concurrency)";

/// What `run` prints with `--json`.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The engine.
    pub engine: String,
    /// The scheduler of a lockstep run; `None` (`null`) for a concurrent run, whose calls
    /// interleave as the server or the implementation runs them.
    pub scheduler: Option<SchedulerKind>,
    /// The seeds, as `A..B`.
    pub seeds: String,
    /// Events executed over all seeds (drain included).
    pub steps: u64,
    /// Job and session requests started.
    pub requests: u64,
    /// One entry per distinct invariant broken.
    pub violations: Vec<ViolationReport>,
    /// Rare states reached, summed over seeds.
    pub coverage: Coverage,
    /// Hash of every seed's trace, in seed order; `None` (`null`) for a concurrent run, which
    /// has no trace to hash.
    pub trace_hash: Option<String>,
    /// Whether the same seeds and arguments give this report again, bit for bit (all but
    /// `steps_per_sec`): false for a concurrent run, true for every other.
    pub deterministic: bool,
    /// Measured speed (the only field that is not deterministic).
    pub steps_per_sec: u64,
}

/// What a range of seeds came to, folded seed by seed in seed order: the totals, and the
/// results of the seeds that broke an invariant (the only ones kept, with the history of the
/// first seed to break each invariant), so memory does not grow with the number of clean seeds.
#[derive(Debug, Default)]
pub struct SeedsRun {
    /// The last seed run (the range may stop early with `fail_fast`).
    pub last_seed: Option<u64>,
    /// Steps (scheduler events) of every seed.
    pub steps: u64,
    /// Requests of every seed.
    pub requests: u64,
    /// Coverage of every seed.
    pub coverage: Coverage,
    /// The seeds' trace hashes folded in seed order (FNV-1a style).
    pub trace_hash: u64,
    /// The results of the first seed to break each invariant, in seed order, with their
    /// histories (what [`counterexamples`] shrinks).
    pub violating: Vec<(u64, RunResult, Option<History>)>,
    /// The seeds that broke each invariant, in seed order: at most [`MAX_BREAKING`] listed.
    pub breaking: BTreeMap<Invariant, Vec<u64>>,
    /// How many more seeds broke each invariant than `breaking` lists.
    pub unlisted: BTreeMap<Invariant, u64>,
    /// How many seeds broke any invariant.
    pub n_violating: u64,
    /// How many seeds reached each mark, by name (every mark a default in-memory run is
    /// expected to reach listed, zero included).
    pub seeds_reaching: BTreeMap<&'static str, u64>,
    /// Coverage that steers (`--steer`): `None` runs the plain swarm.
    pub steering: Option<Steering>,
}

/// The most seeds listed as breaking one invariant: a soak of an engine that breaks on every
/// seed must not grow without bound.
pub const MAX_BREAKING: usize = 10_000;

impl SeedsRun {
    /// Nothing run yet.
    pub fn new() -> SeedsRun {
        let seeds_reaching =
            crate::coverage::Mark::ALL.iter().filter(|m| m.expected_in_memory()).map(|m| (m.name(), 0)).collect();
        SeedsRun { trace_hash: EMPTY_TRACE_HASH, seeds_reaching, ..SeedsRun::default() }
    }

    /// Nothing run yet, with coverage that steers ([`steer`]).
    pub fn steered() -> SeedsRun {
        SeedsRun { steering: Some(Steering::new()), ..SeedsRun::new() }
    }

    /// The expected marks no seed reached, in name order.
    pub fn never_reached(&self) -> Vec<&'static str> {
        self.seeds_reaching.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect()
    }

    /// Which results' histories a run must keep from here on: those of a seed that breaks an
    /// invariant no earlier seed broke ([`SeedsRun::add`] keeps only the first seed's). A
    /// chunk of seeds run in parallel drops every other history as its seed ends, so that
    /// what the chunk holds is its results, not its histories (megabytes a seed).
    fn keeps_history(&self) -> impl Fn(&RunResult) -> bool + Sync {
        let kept: Vec<Invariant> = self.breaking.keys().copied().collect();
        move |r: &RunResult| r.violations.iter().any(|v| !kept.contains(&v.invariant))
    }

    fn add(&mut self, seed: u64, r: RunResult, h: Option<History>) {
        self.last_seed = Some(seed);
        self.steps += r.n_events;
        self.requests += r.n_requests;
        self.coverage.merge(&r.coverage);
        for (k, n) in &r.coverage.0 {
            if *n > 0 {
                *self.seeds_reaching.entry(k).or_insert(0) += 1;
            }
        }
        self.trace_hash = fold_trace_hash(self.trace_hash, r.trace_hash);
        if r.violations.is_empty() {
            return;
        }
        self.n_violating += 1;
        // The first seed to break an invariant is kept with its history, to be shrunk; the
        // others are listed by number.
        let mut first_for_some = false;
        for inv in Invariant::ALL {
            if !r.violations.iter().any(|v| v.invariant == inv) {
                continue;
            }
            let seeds = self.breaking.entry(inv).or_default();
            first_for_some |= seeds.is_empty();
            if seeds.last() == Some(&seed) {
                continue;
            }
            if seeds.len() < MAX_BREAKING {
                seeds.push(seed);
            } else {
                *self.unlisted.entry(inv).or_insert(0) += 1;
            }
        }
        if first_for_some {
            debug_assert!(h.is_some(), "the history of the first seed to break an invariant is kept");
            self.violating.push((seed, r, h));
        }
    }
}

/// How many seeds run in parallel before their results are folded.
const CHUNK: u64 = 256;

/// Runs one in-memory engine over seeds, in parallel, folded in seed order ([`SeedsRun`]);
/// with `steer`, coverage steers the swarm ([`steer`]). `stop` ends it early, as
/// [`continue_seeds`] says.
// The run's own arguments, passed through from the command line one by one.
#[allow(clippy::too_many_arguments)]
pub fn run_seeds(
    engine: EngineSpec,
    s: &Scenario,
    seeds: (u64, u64),
    sched: SchedulerKind,
    fail_fast: bool,
    progress: bool,
    steer: bool,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<SeedsRun> {
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(seeds.1 - seeds.0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {elapsed}/{eta}")
                .expect("valid template"),
        );
        bar
    });
    let mut out = if steer { SeedsRun::steered() } else { SeedsRun::new() };
    continue_seeds(&mut out, engine, s, seeds, sched, fail_fast, bar.as_ref(), stop)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

/// Runs `seeds` after those `out` holds, folding them into it: a soak runs range after range
/// into one [`SeedsRun`]. True when it stopped early at a violation (`fail_fast`).
///
/// Once `stop` is set (a signal, say), no seed starts: `out` then holds the seeds from the
/// range's first up to the first one that did not run, exactly what a run of that shorter
/// range would hold (a seed that finished after a gap is dropped), and `out.last_seed` says
/// where it ends. Under `--steer` the check is made between chunks of [`CHUNK`] seeds.
// The run's own arguments, passed through from the command line one by one.
#[allow(clippy::too_many_arguments)]
pub fn continue_seeds(
    out: &mut SeedsRun,
    engine: EngineSpec,
    s: &Scenario,
    seeds: (u64, u64),
    sched: SchedulerKind,
    fail_fast: bool,
    bar: Option<&indicatif::ProgressBar>,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<bool> {
    let stopped = || stop.is_some_and(|s| s.load(Ordering::Relaxed));
    engine.check_reference()?;
    let name = engine.name();
    let run = |seed: u64, bias: Option<&Bias>| {
        let (r, h, draw) = match engine.kind {
            EngineKind::Reference => {
                with_reference!(engine, |make| run_seed_aimed(make, &name, s, seed, sched, bias))
            }
            EngineKind::Seed => run_seed_aimed(SeedEngine::new, &name, s, seed, sched, bias),
            EngineKind::PgReference | EngineKind::PgSeed | EngineKind::Exec => {
                unreachable!("Postgres and exec runs go through ledger-pg-runs")
            }
        };
        (r, h, draw)
    };
    if let Some(mut steering) = out.steering.take() {
        anyhow::ensure!(s.swarm, "--steer steers the swarm: the scenario has swarm = false");
        let at_violation = continue_steered(out, &mut steering, &run, seeds, fail_fast, bar, &stopped);
        out.steering = Some(steering);
        return Ok(at_violation);
    }
    let one = |seed: u64, keeps_history: &(dyn Fn(&RunResult) -> bool + Sync)| {
        let (r, h, _) = run(seed, None);
        if let Some(b) = bar {
            b.inc(1);
        }
        let h = keeps_history(&r).then_some(h);
        (seed, r, h)
    };
    if fail_fast {
        // Sequential, so "the first seed with a violation" is well defined.
        for seed in seeds.0..seeds.1 {
            if stopped() {
                break;
            }
            let (seed, r, h) = one(seed, &out.keeps_history());
            let at_violation = !r.violations.is_empty();
            out.add(seed, r, h);
            if at_violation {
                return Ok(true);
            }
        }
    } else {
        let mut from = seeds.0;
        while from < seeds.1 {
            let to = from.saturating_add(CHUNK).min(seeds.1);
            let keeps_history = out.keeps_history();
            let chunk: Vec<_> =
                (from..to).into_par_iter().map(|seed| (!stopped()).then(|| one(seed, &keeps_history))).collect();
            for ran in chunk {
                let Some((seed, r, h)) = ran else { return Ok(false) };
                out.add(seed, r, h);
            }
            from = to;
        }
    }
    Ok(false)
}

/// One seed run, its mix drawn from a bias when given, with the option each knob took.
type RunOne<'a> = dyn Fn(u64, Option<&Bias>) -> (RunResult, History, Draw) + Sync + 'a;

/// [`continue_seeds`] under `--steer`, chunk by chunk: the plain seeds of the window before
/// the chunk's first block that are not known yet (before the range: run only for their marks), then the chunk's plain seeds,
/// then its aimed seeds with their blocks' plans, all folded in seed order. Which seeds run in
/// parallel changes nothing: a plan reads only plain seeds of earlier blocks.
fn continue_steered(
    out: &mut SeedsRun,
    steering: &mut Steering,
    run: &RunOne<'_>,
    seeds: (u64, u64),
    fail_fast: bool,
    bar: Option<&indicatif::ProgressBar>,
    stopped: &dyn Fn() -> bool,
) -> bool {
    let mut from = seeds.0;
    // A fail-fast run goes one block at a time and stops at the first violating seed.
    let chunk = if fail_fast { steer::BLOCK } else { CHUNK };
    while from < seeds.1 && !stopped() {
        let to = from.saturating_add(chunk).min(seeds.1);
        // The plan of `from`'s block reads the plain seeds of the blocks before it; a chunk that
        // runs on into later blocks needs those before `from` in its first block too.
        let block = steer::block_of(from);
        let upto = if steer::block_of(to - 1) > block { from } else { block * steer::BLOCK };
        let warmup: Vec<u64> =
            (steer::window_start(block)..upto).filter(|&x| steer::is_plain(x) && !steering.knows(x)).collect();
        let learned: Vec<(u64, Draw, Coverage)> = warmup
            .into_par_iter()
            .map(|x| {
                let (r, _, draw) = run(x, None);
                (x, draw, r.coverage)
            })
            .collect();
        steering.report.warmup_seeds += learned.len() as u64;
        for (x, draw, cov) in &learned {
            steering.saw_plain(*x, *draw, cov);
        }
        let tick = |x| {
            if let Some(b) = bar {
                b.inc(1);
            }
            x
        };
        let keeps_history = out.keeps_history();
        let run = |x: u64, bias: Option<&Bias>| {
            let (r, h, draw) = run(x, bias);
            let h = keeps_history(&r).then_some(h);
            (r, h, draw)
        };
        let plain: Vec<_> = (from..to)
            .filter(|&x| steer::is_plain(x))
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|x| tick((x, run(x, None), None)))
            .collect();
        for (x, (r, _, draw), _) in &plain {
            steering.saw_plain(*x, *draw, &r.coverage);
        }
        let plans: BTreeMap<u64, steer::Plan> =
            (steer::block_of(from)..=steer::block_of(to - 1)).map(|b| (b, steering.plan(b))).collect();
        let aimed: Vec<_> = (from..to)
            .filter(|&x| !steer::is_plain(x))
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|x| {
                let aim = plans[&steer::block_of(x)].aim(x);
                tick((x, run(x, aim.map(|a| &a.1)), aim))
            })
            .collect();
        let mut all: Vec<_> = plain.into_iter().chain(aimed).collect();
        all.sort_by_key(|x| x.0);
        for (x, (r, h, _), aim) in all {
            if let Some((mark, bias)) = aim {
                steering.saw_aimed(*mark, bias, &r.coverage);
            }
            let stop = fail_fast && !r.violations.is_empty();
            out.add(x, r, h);
            if stop {
                return true;
            }
        }
        steering.forget_before(steer::block_of(to));
        from = to;
    }
    false
}

/// The trace hash of a run of no seed.
pub const EMPTY_TRACE_HASH: u64 = 0;

/// FNV-1's 64-bit prime, the base of the fold.
const FOLD_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A run's trace hash with the next seed's (`seed_hash`, [`RunResult::trace_hash`]) folded in:
/// seed by seed in seed order from [`EMPTY_TRACE_HASH`], the polynomial
/// `sum of t(h_i) * P^(n-1-i)` mod 2^64 over the seeds' hashes `h_0 .. h_(n-1)`, with `P`
/// FNV-1's prime and `t(h) = (FNV offset basis ^ h) * P` (so a run of one seed keeps the hash
/// it always had). A polynomial, so that the hashes of two runs side by side make the hash
/// of the run over both ranges ([`concat_trace_hashes`]): `merge-runs` of shards prints the
/// hash one run over the whole range prints.
pub fn fold_trace_hash(acc: u64, seed_hash: u64) -> u64 {
    let t = (0xcbf2_9ce4_8422_2325 ^ seed_hash).wrapping_mul(FOLD_PRIME);
    acc.wrapping_mul(FOLD_PRIME).wrapping_add(t)
}

/// The trace hash of seeds `A..C` from that of `A..B` (`first`) and that of `B..C` (`second`,
/// a run of `n_second` seeds): what [`fold_trace_hash`] gives folding them one by one.
pub fn concat_trace_hashes(first: u64, second: u64, n_second: u64) -> u64 {
    // P^n by squaring, mod 2^64.
    let (mut power, mut base, mut n) = (1u64, FOLD_PRIME, n_second);
    while n > 0 {
        if n & 1 == 1 {
            power = power.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        n >>= 1;
    }
    first.wrapping_mul(power).wrapping_add(second)
}

/// One report per invariant broken in `results`: the first seed that broke it, its history
/// shrunk (at most `max_replays` replays, and no further once `stop` is set: a signal to the
/// run), replayed for the numbers and written under `dir`.
pub fn counterexamples(
    engine: EngineSpec,
    run: &SeedsRun,
    only: Option<Invariant>,
    dir: &Path,
    max_replays: usize,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<Vec<ViolationReport>> {
    let results = &run.violating;
    let mut out = Vec::new();
    for inv in Invariant::ALL {
        if only.is_some_and(|o| o != inv) {
            continue;
        }
        let breaking: Vec<u64> = run.breaking.get(&inv).cloned().unwrap_or_default();
        let Some(&seed) = breaking.first() else {
            continue;
        };
        let history = results
            .iter()
            .find(|r| r.0 == seed)
            .and_then(|r| r.2.as_ref())
            .expect("histories of violating seeds are kept");
        let shrunk = match engine.kind {
            EngineKind::Reference => {
                engine.check_reference()?;
                with_reference!(engine, |make| shrink_until(&make, history, inv, max_replays, stop))
            }
            EngineKind::Seed => shrink_until(&SeedEngine::new, history, inv, max_replays, stop),
            EngineKind::PgReference | EngineKind::PgSeed | EngineKind::Exec => {
                unreachable!("Postgres and exec runs go through ledger-pg-runs")
            }
        };
        let (h, reduction) = (shrunk.history, shrunk.reduction);
        let replayed = replay_in_memory(engine, &h, true)?;
        let detail = replayed.violations.iter().find(|v| v.invariant == inv).map(|v| v.to_string()).unwrap_or_default();
        let file_engine = engine.name().replace("+mutant=", "-");
        let path = dir.join(format!("{file_engine}-seed{seed}-{}.jsonl", inv.id()));
        write_trace(&h, &path)?;
        out.push(ViolationReport {
            invariant: inv.id().to_owned(),
            name: inv.name().to_owned(),
            seed,
            seeds: breaking,
            seeds_unlisted: run.unlisted.get(&inv).copied().unwrap_or(0),
            detail,
            shrunk_flows: h.flows.len(),
            shrunk_events: h.events.len(),
            reduction,
            steps: replayed.log,
            trace: path.display().to_string(),
            replay: replay_command(&path),
        });
    }
    Ok(out)
}

/// Write a trace whole or not at all: to a temporary file, then renamed into place.
pub fn write_trace(h: &History, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("making the directory {}: {e}", dir.display()))?;
    }
    let mut buf = Vec::new();
    h.write_jsonl(&mut buf)?;
    // Nothing left behind on failure: not the temporary file, whichever step failed.
    crate::files::write_whole(path, &buf).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Replays a history on the in-memory engine it names; a Postgres engine's history is
/// replayed by `ledger-pg-runs`.
pub fn replay_in_memory(spec: EngineSpec, h: &History, log: bool) -> anyhow::Result<RunResult> {
    Ok(match spec.kind {
        EngineKind::Reference => {
            spec.check_reference()?;
            with_reference!(spec, |make| replay(make, h, log))
        }
        EngineKind::Seed => replay(SeedEngine::new, h, log),
        EngineKind::PgReference | EngineKind::PgSeed => {
            anyhow::bail!("{} is replayed on PostgreSQL by ledger-pg-runs", spec.name())
        }
        EngineKind::Exec => anyhow::bail!("an exec trace is replayed on its implementation: give --exec COMMAND"),
    })
}

/// One line saying what a scenario runs: users, steps, flows in flight, the faults on.
pub fn describe(s: &Scenario) -> String {
    let faults: Vec<String> = crate::fault::Fault::ALL
        .iter()
        .filter(|f| s.faults.rate(**f) > 0.0)
        .map(|f| format!("{} {}", f.key(), s.faults.rate(*f)))
        .collect();
    let faults = if faults.is_empty() { "none".to_owned() } else { faults.join(", ") };
    format!(
        "{} users, {} steps a seed, up to {} flows in flight{}; faults: {faults}",
        s.n_users,
        s.n_steps,
        s.max_in_flight,
        if s.swarm { ", swarm (each seed turns some features and faults off)" } else { "" }
    )
}

/// Prints a run report as text: what ran (`what`, from [`describe`]; may be empty), the
/// totals, the coverage as a table, each violation with its replay command, and what to try
/// next.
pub fn print_report(out: &mut impl Write, r: &RunReport, what: &str) -> std::io::Result<()> {
    print_report_with(out, r, what, &[])
}

/// [`print_report`] with `extra` lines (what steering did) after the coverage.
pub fn print_report_with(out: &mut impl Write, r: &RunReport, what: &str, extra: &[String]) -> std::io::Result<()> {
    match r.scheduler {
        Some(scheduler) => {
            writeln!(out, "ledger-sim run: engine={} scheduler={scheduler:?} seeds={}", r.engine, r.seeds)?
        }
        // A concurrent run: its engine names the concurrency.
        None => writeln!(out, "ledger-sim run: engine={} seeds={}", r.engine, r.seeds)?,
    }
    if !what.is_empty() {
        writeln!(out, "  scenario: {what}")?;
    }
    match &r.trace_hash {
        Some(hash) => writeln!(out, "  {} steps, {} requests, trace hash {hash}", r.steps, r.requests)?,
        None => writeln!(out, "  {} steps, {} requests, no trace hash (not deterministic)", r.steps, r.requests)?,
    }
    writeln!(out, "  coverage (rare states reached, and how often):")?;
    let cells: Vec<String> = r.coverage.0.iter().map(|(k, v)| format!("{k:<32}{v:>9}")).collect();
    for row in cells.chunks(2) {
        writeln!(out, "    {}", row.join("    "))?;
    }
    let never: Vec<&str> = r.coverage.0.iter().filter(|(_, n)| **n == 0).map(|(k, _)| &**k).collect();
    if !never.is_empty() {
        writeln!(out, "  never reached: {} (more seeds, or a scenario that aims at them)", never.join(", "))?;
    }
    for line in extra {
        writeln!(out, "  {line}")?;
    }
    // Seeds whose linearizability search ran out of its budget: their answers were not judged
    // against the rules (I8), which the verdict must not claim.
    let unjudged = r.coverage.0.get("linearizability_undecided").copied().unwrap_or(0);
    let checked: Vec<String> = Invariant::judged_for(&r.engine)
        .iter()
        .map(|i| match i {
            Invariant::I8 if unjudged > 0 => {
                format!("{} {} (not judged in {unjudged} seed(s), below)", i.id(), i.name())
            }
            _ => format!("{} {}", i.id(), i.name()),
        })
        .collect();
    if r.violations.is_empty() {
        let when = if r.engine.contains("(concurrency") {
            "checked on the history of calls and the final state"
        } else {
            "checked after every step"
        };
        writeln!(out, "no invariant broke ({}; {when})", checked.join(", "))?;
    }
    if unjudged > 0 {
        writeln!(
            out,
            "I8 NOT JUDGED in {unjudged} seed(s): the linearizability search found no serial order of the seed's \
             calls and ruled none out within its budget, so their answers were not checked against the rules \
             (`linearizability_undecided` in the coverage); fewer calls in flight (--concurrency) or fewer \
             --steps judges them, and --linearizability-budget N gives the search more attempts"
        )?;
    }
    for v in &r.violations {
        writeln!(out)?;
        writeln!(out, "VIOLATION {} {} (seed {}; {} seed(s) broke it)", v.invariant, v.name, v.seed, v.n_seeds())?;
        writeln!(out, "  {}", v.detail)?;
        match v.how_reduced() {
            Some(how) if v.is_concurrent() => writeln!(out, "  {how}; the first of them:")?,
            Some(how) => writeln!(out, "  {how}:")?,
            None => {}
        }
        for s in &v.steps {
            writeln!(out, "    {s}")?;
        }
        writeln!(out, "  trace:  {}", v.trace)?;
        writeln!(out, "  replay: {}", v.replay)?;
    }
    if r.violations.is_empty() && r.engine == "reference" {
        // `A..B`, or one seed's number.
        let n_seeds = r.seeds.split_once("..").and_then(|(a, b)| Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()?));
        let more = if n_seeds.unwrap_or(1) < 1000 {
            "`--seeds 0..1000` for more seeds".to_owned()
        } else {
            "`--for 10m` to run fresh seeds for ten minutes".to_owned()
        };
        writeln!(
            out,
            "next: `--engine seed` to watch the original service break I2-I6; {more}; `--json` for machines; see \
             README.md"
        )?;
    } else if !r.violations.is_empty() && r.violations.iter().all(|v| v.replay.starts_with(NOT_REPLAYABLE)) {
        writeln!(
            out,
            "next: a concurrent finding has no replay; run its command above again to see it come back, \
             and read the calls listed (`--json` for machines)"
        )?;
    } else if !r.violations.is_empty() {
        writeln!(
            out,
            "next: run a replay command above to see the shortest trace step by step (`--json` for machines)"
        )?;
    }
    Ok(())
}

/// `s` as one word of a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command that replays the trace at `path`, the path as the run has it (relative to the
/// directory the run started in when the trace directory was given relative, as by default)
/// and quoted: what a report with `--json` or `--junit` holds, the same bytes wherever the run
/// started. [`from_anywhere`] gives the form that works pasted in any directory.
pub fn replay_command(path: &Path) -> String {
    format!("ledger-sim replay {}", shell_quote(&path.display().to_string()))
}

/// `command` (a finding's `replay`, whose trace is `trace`; or the run again of a concurrent
/// finding) in a form that works pasted into a shell in any directory, for a run started in
/// `start`: with the options of an implementation or a mutant (`--exec`, `--pg-mutant`), whose
/// own paths are relative to where the run started, `(cd START && COMMAND)`; otherwise with
/// the trace's path made absolute.
pub fn from_anywhere(command: &str, trace: &str, start: &Path) -> String {
    let in_start = |c: &str| format!("(cd {} && {c})", shell_quote(&start.display().to_string()));
    const AGAIN: &str = "run again: ";
    if command.starts_with(NOT_REPLAYABLE) {
        return match command.find(AGAIN) {
            Some(i) => format!("{}{}", &command[..i + AGAIN.len()], in_start(&command[i + AGAIN.len()..])),
            None => command.to_owned(),
        };
    }
    if !command.starts_with("ledger-sim ") {
        return command.to_owned();
    }
    if command.contains(" --exec ") || command.contains(" --pg-mutant ") || command.contains(" --vectors ") {
        return in_start(command);
    }
    let given = format!("ledger-sim replay {}", shell_quote(trace));
    match command.strip_prefix(&given) {
        Some(rest) if Path::new(trace).is_relative() => {
            format!("ledger-sim replay {}{rest}", shell_quote(&start.join(trace).display().to_string()))
        }
        _ => command.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs side by side put together give the hash of the run over both, wherever the
    /// range is cut (an empty side included), and a run of one seed keeps the hash a run of it
    /// always printed.
    #[test]
    fn trace_hashes_of_adjacent_runs_concatenate() {
        let seeds: Vec<u64> = (0..40u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 7)).collect();
        let fold = |hashes: &[u64]| hashes.iter().fold(EMPTY_TRACE_HASH, |acc, &h| fold_trace_hash(acc, h));
        let whole = fold(&seeds);
        for cut in 0..=seeds.len() {
            let (a, b) = seeds.split_at(cut);
            assert_eq!(concat_trace_hashes(fold(a), fold(b), b.len() as u64), whole, "cut at {cut}");
        }
        let one = 0x1234_5678_9abc_def0;
        assert_eq!(fold(&[one]), (0xcbf2_9ce4_8422_2325 ^ one).wrapping_mul(0x0000_0100_0000_01b3));
        assert_ne!(fold(&[1, 2]), fold(&[2, 1]), "the order of the seeds counts");
    }

    fn finding(shrunk_flows: usize, replay: &str) -> ViolationReport {
        ViolationReport {
            invariant: "I4".into(),
            name: "budget never exceeded".into(),
            seed: 3,
            seeds: vec![3],
            seeds_unlisted: 0,
            detail: "window absorbed 60 + reserved 0 = 60 > 50".into(),
            shrunk_flows,
            shrunk_events: 2 * shrunk_flows,
            reduction: Reduction::Shrunk,
            steps: vec!["[0] decide -> free".into()],
            trace: "t.jsonl".into(),
            replay: replay.into(),
        }
    }

    fn text(violations: Vec<ViolationReport>) -> String {
        text_with(violations, Coverage::default())
    }

    /// [`text`] of a run whose coverage is `coverage`.
    fn text_with(violations: Vec<ViolationReport>, coverage: Coverage) -> String {
        let r = RunReport {
            engine: "pg-reference (concurrency 8)".into(),
            scheduler: None,
            seeds: "0..4".into(),
            steps: 10,
            requests: 4,
            violations,
            coverage,
            trace_hash: None,
            deterministic: false,
            steps_per_sec: 1,
        };
        let mut out = Vec::new();
        print_report(&mut out, &r, "run").unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The last line says what to do next with what was found: a replay for a shrunk
    /// counterexample, the command again for a concurrent finding, which has no replay.
    #[test]
    fn the_last_line_fits_the_findings() {
        let concurrent = finding(0, "not replayable (real concurrency); run again: ledger-sim run --seed 3");
        let t = text(vec![concurrent.clone()]);
        assert!(t.contains("not shrunk (real concurrency)"), "{t}");
        assert!(t.contains("next: a concurrent finding has no replay"), "{t}");
        assert!(!t.contains("run a replay command"), "{t}");
        let t = text(vec![concurrent, finding(1, "ledger-sim replay t.jsonl")]);
        assert!(t.contains("shrunk to 1 flow(s), 2 event(s)"), "{t}");
        assert!(t.contains("next: run a replay command above"), "{t}");
        let t = text(Vec::new());
        assert!(t.contains("no invariant broke") && !t.contains("next: a concurrent finding"), "{t}");
        // A concurrent run has no trace hash, and says so.
        assert!(t.contains("4 requests, no trace hash (not deterministic)"), "{t}");
    }

    /// A concurrent finding whose calls were not listed (an implementation's own failure, its
    /// seed ended before the history was judged) has no replay either: the last line says to
    /// run its command again, not to replay.
    #[test]
    fn a_finding_without_a_replay_is_never_told_to_be_replayed() {
        let failed = ViolationReport {
            steps: Vec::new(),
            shrunk_flows: 3,
            ..finding(0, "not replayable (real concurrency); run again: ledger-sim run --seed 3")
        };
        let t = text(vec![failed]);
        assert!(t.contains("next: a concurrent finding has no replay"), "{t}");
        assert!(!t.contains("run a replay command"), "{t}");
    }

    /// Seeds whose linearizability search ran out of its budget are not said to keep I8: the
    /// verdict names them, with or without findings.
    #[test]
    fn seeds_not_judged_for_linearizability_are_said_so() {
        let r_text = |violations: Vec<ViolationReport>, unjudged: u64| {
            let mut coverage = Coverage::default();
            if unjudged > 0 {
                coverage.0.insert("linearizability_undecided", unjudged);
            }
            text_with(violations, coverage)
        };
        let t = r_text(Vec::new(), 3);
        assert!(t.contains("I8 every answer is the one the rules give (not judged in 3 seed(s), below)"), "{t}");
        assert!(t.contains("\nI8 NOT JUDGED in 3 seed(s): "), "{t}");
        let t = r_text(vec![finding(1, "ledger-sim replay t.jsonl")], 1);
        assert!(t.contains("\nI8 NOT JUDGED in 1 seed(s): "), "{t}");
        let t = r_text(Vec::new(), 0);
        assert!(!t.contains("NOT JUDGED") && !t.contains("not judged"), "{t}");
    }

    /// A counterexample only cut at its first violation says "cut to", not "shrunk to"; one
    /// neither cut nor shrunk says so too.
    #[test]
    fn a_counterexample_only_cut_is_not_called_shrunk() {
        let cut = ViolationReport { reduction: Reduction::Cut, ..finding(2, "ledger-sim replay t.jsonl") };
        let t = text(vec![cut]);
        assert!(t.contains("  cut to 2 flow(s), 4 event(s) after its first violation, not shrunk:"), "{t}");
        assert!(!t.contains("shrunk to"), "{t}");
        let whole = ViolationReport { reduction: Reduction::None, ..finding(3, "ledger-sim replay t.jsonl") };
        let t = text(vec![whole]);
        assert!(t.contains("  not shrunk: 3 flow(s), 6 event(s):"), "{t}");
    }

    /// `reduction` is written as a word, and a report of before it reads as shrunk, as it said.
    #[test]
    fn reports_without_a_reduction_still_read() {
        let v = serde_json::to_value(ViolationReport { reduction: Reduction::Cut, ..finding(1, "r") }).unwrap();
        assert_eq!(v["reduction"], "cut");
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("reduction");
        let old: ViolationReport = serde_json::from_value(old).unwrap();
        assert_eq!(old.reduction, Reduction::Shrunk);
        assert_eq!(old.how_reduced().as_deref(), Some("shrunk to 1 flow(s), 2 event(s)"));
    }

    /// A replay command in a report names the trace as the run has it, whatever the directory
    /// (the same bytes from any directory); quoted when it must be.
    #[test]
    fn replay_commands_name_the_trace_as_given_and_quoted() {
        let plain = replay_command(Path::new("tr/seed-seed0-I2.jsonl"));
        assert_eq!(plain, "ledger-sim replay tr/seed-seed0-I2.jsonl");
        let odd = replay_command(Path::new("/tmp/my traces/it's.jsonl"));
        assert_eq!(odd, "ledger-sim replay '/tmp/my traces/it'\\''s.jsonl'");
        assert_eq!(shell_quote(""), "''");
    }

    /// The form printed for a person works pasted in any directory: the trace absolute, and a
    /// command with an implementation's options run from the directory the run started in.
    #[test]
    fn replay_commands_from_anywhere() {
        let start = Path::new("/work/my dir");
        let plain = replay_command(Path::new("tr/a.jsonl"));
        assert_eq!(from_anywhere(&plain, "tr/a.jsonl", start), "ledger-sim replay '/work/my dir/tr/a.jsonl'");
        let absolute = replay_command(Path::new("/t/a.jsonl"));
        assert_eq!(from_anywhere(&absolute, "/t/a.jsonl", start), "ledger-sim replay /t/a.jsonl");
        let exec = format!("{plain} --exec 'python3 adapter.py'");
        assert_eq!(
            from_anywhere(&exec, "tr/a.jsonl", start),
            "(cd '/work/my dir' && ledger-sim replay tr/a.jsonl --exec 'python3 adapter.py')"
        );
        let again = format!("{NOT_REPLAYABLE}; run again: ledger-sim run --engine exec --exec svc --seed 3");
        assert_eq!(
            from_anywhere(&again, "t.jsonl", start),
            format!(
                "{NOT_REPLAYABLE}; run again: (cd '/work/my dir' && ledger-sim run --engine exec --exec svc --seed 3)"
            )
        );
    }

    /// A counterexample shrunk to no flow and no event (the final sweep alone breaks it) is
    /// called shrunk, and the last line points at its replay: it is no concurrent finding.
    #[test]
    fn a_counterexample_of_nothing_is_shrunk_not_concurrent() {
        let empty = ViolationReport { shrunk_events: 0, ..finding(0, "ledger-sim replay t.jsonl") };
        assert!(!empty.is_concurrent());
        let t = text(vec![empty]);
        assert!(t.contains("  shrunk to 0 flow(s), 0 event(s):"), "{t}");
        assert!(!t.contains("real concurrency"), "{t}");
        assert!(t.contains("next: run a replay command above"), "{t}");
    }
}
