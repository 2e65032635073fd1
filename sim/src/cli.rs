//! The command line: `ledger-sim run` and `ledger-sim replay`.
//!
//! Exit codes: 0 when no invariant broke, 1 on a violation, 2 on bad input.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ledger_core::{Config, Invariant, ReferenceEngine, SeedEngine};
use rayon::prelude::*;
use serde::Serialize;

use crate::exec::{Coverage, RunResult};
use crate::gen::{replay, run_seed, SchedulerKind};
use crate::history::History;
use crate::scenario::Scenario;
use crate::shrink::shrink;

/// The simulator of the generosity-pool ledger.
#[derive(Parser, Debug)]
#[command(name = "ledger-sim", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run seeds of a scenario against an engine and check I1-I6 after every step.
    Run(RunArgs),
    /// Replay a saved trace and report its violations.
    Replay(ReplayArgs),
    /// Read-only check of I1, I2 and I5 on a live PostgreSQL database (either schema).
    Audit(crate::pg::AuditArgs),
    /// Replay a conformance trace from any implementation against the reference engine.
    CheckTrace(crate::check_trace::CheckTraceArgs),
    /// Capacity planning: many simulated days under chosen budgets and credit percentages.
    Plan(crate::plan::PlanArgs),
    /// Combine `plan --shard I/N --json` outputs into the report of the whole plan.
    Merge(crate::plan::MergeArgs),
}

/// Which engine to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The in-memory reference engine (DESIGN §3).
    Reference,
    /// The faithful model of the seed's TypeScript.
    Seed,
    /// The reference semantics on PostgreSQL, compared step by step with `reference`.
    #[serde(rename = "pg-reference")]
    PgReference,
    /// The seed's SQL statements on PostgreSQL.
    #[serde(rename = "pg-seed")]
    PgSeed,
}

/// An engine with, for the reference, an optional deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineSpec {
    /// The engine.
    pub kind: EngineKind,
    /// A mutant of the reference engine (only with the `mutants` feature).
    pub mutant: Option<ledger_core::mutants::Mutant>,
}

type MakeReference = Box<dyn Fn(Config) -> ReferenceEngine + Send + Sync>;

impl EngineSpec {
    /// The name recorded in traces: `reference`, `seed` or `reference+mutant=NAME`.
    pub fn name(self) -> String {
        match (self.kind, self.mutant) {
            (EngineKind::Reference, Some(m)) => format!("reference+mutant={}", m.name()),
            (EngineKind::Reference, None) => "reference".to_owned(),
            (EngineKind::Seed, _) => "seed".to_owned(),
            (EngineKind::PgReference, _) => "pg-reference".to_owned(),
            (EngineKind::PgSeed, _) => "pg-seed".to_owned(),
        }
    }

    /// Parse a name written by [`EngineSpec::name`].
    pub fn from_name(name: &str) -> anyhow::Result<EngineSpec> {
        let (base, mutant) = match name.split_once("+mutant=") {
            Some((base, m)) => {
                let m = ledger_core::mutants::Mutant::from_name(m)
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
            _ => anyhow::bail!("unknown engine {name:?}"),
        };
        Ok(EngineSpec { kind, mutant })
    }

    fn make_reference(self) -> anyhow::Result<MakeReference> {
        match self.mutant {
            None => Ok(Box::new(ReferenceEngine::new)),
            #[cfg(feature = "mutants")]
            Some(m) => Ok(Box::new(move |c| ReferenceEngine::with_mutant(c, m))),
            #[cfg(not(feature = "mutants"))]
            Some(m) => anyhow::bail!("mutant {} needs a build with `--features mutants`", m.name()),
        }
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Reference)]
    engine: EngineKind,
    /// Run a named mutant of the reference engine (builds with `--features mutants` only).
    #[arg(long, value_parser = parse_mutant)]
    mutant: Option<ledger_core::mutants::Mutant>,
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed of a half-open range `A..B`.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Number of users (overrides the scenario).
    #[arg(long)]
    users: Option<u32>,
    /// Scheduler steps per seed in the fault phase (overrides the scenario).
    #[arg(long)]
    steps: Option<u64>,
    /// A scenario TOML file.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// How the next step is chosen.
    #[arg(long, value_enum, default_value_t = SchedulerKind::Random)]
    scheduler: SchedulerKind,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Stop at the first seed with a violation.
    #[arg(long)]
    fail_fast: bool,
    /// Where counterexample traces are written.
    #[arg(long, default_value = "target/ledger-sim/counterexamples")]
    trace_dir: PathBuf,
    /// Replays the shrinker may spend per counterexample.
    #[arg(long, default_value_t = 3000)]
    max_replays: usize,
    /// PostgreSQL options (`--engine pg-reference|pg-seed` only).
    #[command(flatten)]
    pg: crate::pg::PgArgs,
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// A trace written by `run`.
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_mutant(s: &str) -> Result<ledger_core::mutants::Mutant, String> {
    ledger_core::mutants::Mutant::from_name(s).ok_or_else(|| {
        let names: Vec<String> = ledger_core::mutants::Mutant::ALL.iter().map(|m| m.name()).collect();
        format!("unknown mutant {s:?}; one of {}", names.join(", "))
    })
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("expected A..B, got {s:?}"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad range start {a:?}"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad range end {b:?}"))?;
    if a >= b {
        return Err(format!("empty range {a}..{b}"));
    }
    Ok((a, b))
}

/// One distinct violation in a report.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationReport {
    /// `I1` ... `I6`.
    pub invariant: String,
    /// Its name.
    pub name: String,
    /// The first seed that broke it.
    pub seed: u64,
    /// Every seed that broke it.
    pub seeds: Vec<u64>,
    /// The numbers, from the shrunk counterexample.
    pub detail: String,
    /// Flows and events of the shrunk counterexample.
    pub shrunk_flows: usize,
    /// Events of the shrunk counterexample's schedule.
    pub shrunk_events: usize,
    /// The counterexample's steps, one line each.
    pub steps: Vec<String>,
    /// The trace file.
    pub trace: String,
    /// The command that replays it.
    pub replay: String,
}

/// What `run` prints with `--json`.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The engine.
    pub engine: String,
    /// The scheduler.
    pub scheduler: SchedulerKind,
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
    /// Hash of every seed's trace, in seed order.
    pub trace_hash: String,
    /// Measured speed (the only field that is not deterministic).
    pub steps_per_sec: u64,
}

/// Entry point: parse, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Replay(args) => replay_cmd(args),
        Command::Plan(args) => crate::plan::plan_cmd(args),
        Command::Merge(args) => crate::plan::merge_cmd(args),
        Command::Audit(args) => crate::pg::audit_cmd(&args),
        Command::CheckTrace(args) => crate::check_trace::check_trace_cmd(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ledger-sim: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_scenario(args: &RunArgs) -> anyhow::Result<Scenario> {
    let mut s = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Scenario::from_toml_str(&text, &path.display().to_string())?
        }
        None => Scenario::default(),
    };
    if let Some(n) = args.users {
        s.n_users = n;
    }
    if let Some(n) = args.steps {
        s.n_steps = n;
    }
    s.validate("command line")?;
    Ok(s)
}

/// Run one engine over seeds, in parallel, results in seed order.
fn run_seeds(
    engine: EngineSpec,
    s: &Scenario,
    seeds: (u64, u64),
    sched: SchedulerKind,
    fail_fast: bool,
    progress: bool,
) -> anyhow::Result<Vec<(u64, RunResult, Option<History>)>> {
    let make_reference = engine.make_reference()?;
    let name = engine.name();
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(seeds.1 - seeds.0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {elapsed}/{eta}")
                .expect("valid template"),
        );
        bar
    });
    let one = |seed: u64| {
        let (r, h) = match engine.kind {
            EngineKind::Reference => run_seed(&make_reference, &name, s, seed, sched),
            EngineKind::Seed => run_seed(SeedEngine::new, &name, s, seed, sched),
            EngineKind::PgReference | EngineKind::PgSeed => unreachable!("Postgres runs go through sim::pg"),
        };
        if let Some(b) = &bar {
            b.inc(1);
        }
        let keep = (!r.violations.is_empty()).then_some(h);
        (seed, r, keep)
    };
    let out: Vec<_> = if fail_fast {
        // Sequential, so "the first seed with a violation" is well defined.
        let mut out = Vec::new();
        for seed in seeds.0..seeds.1 {
            let r = one(seed);
            let stop = !r.1.violations.is_empty();
            out.push(r);
            if stop {
                break;
            }
        }
        out
    } else {
        (seeds.0..seeds.1).into_par_iter().map(one).collect()
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

fn run(args: RunArgs) -> anyhow::Result<bool> {
    let scenario = load_scenario(&args)?;
    let seeds = match (args.seed, args.seeds) {
        (Some(s), _) => (s, s.checked_add(1).ok_or_else(|| anyhow::anyhow!("--seed {s} is too large"))?),
        (None, Some(r)) => r,
        (None, None) => (0, 1),
    };
    let progress = !args.json && std::io::stderr().is_terminal() && seeds.1 - seeds.0 > 1;
    let started = Instant::now();
    if args.mutant.is_some() && args.engine != EngineKind::Reference {
        anyhow::bail!("--mutant applies to --engine reference only");
    }
    let engine = EngineSpec { kind: args.engine, mutant: args.mutant };
    if matches!(args.engine, EngineKind::PgReference | EngineKind::PgSeed) {
        let run = crate::pg::PgRun {
            kind: args.engine,
            scenario: &scenario,
            seeds,
            scheduler: args.scheduler,
            fail_fast: args.fail_fast,
            trace_dir: &args.trace_dir,
            max_replays: args.max_replays,
        };
        let report = crate::pg::run(&run, &args.pg)?;
        let ok = report.violations.is_empty();
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            print_report(&mut out, &report)?;
        }
        return Ok(ok);
    } else if args.pg.is_set() {
        anyhow::bail!("--database-url, --concurrency and the Postgres faults need --engine pg-reference|pg-seed");
    }
    let results = run_seeds(engine, &scenario, seeds, args.scheduler, args.fail_fast, progress)?;
    let elapsed = started.elapsed();
    let steps: u64 = results.iter().map(|r| r.1.n_events).sum();
    let requests: u64 = results.iter().map(|r| r.1.n_requests).sum();
    let mut coverage = Coverage::default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, r, _) in &results {
        coverage.merge(&r.coverage);
        hash = (hash ^ r.trace_hash).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let violations = counterexamples(engine, &results, &args.trace_dir, args.max_replays)?;
    let report = RunReport {
        engine: engine.name(),
        scheduler: args.scheduler,
        seeds: format!("{}..{}", seeds.0, results.last().map_or(seeds.1, |r| r.0 + 1)),
        steps,
        requests,
        violations,
        coverage: coverage.with_all_marks(),
        trace_hash: format!("{hash:016x}"),
        steps_per_sec: (steps as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
    };
    let ok = report.violations.is_empty();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_report(&mut out, &report)?;
        eprintln!("{} steps in {:.2?} ({} steps/s)", steps, elapsed, report.steps_per_sec);
    }
    Ok(ok)
}

fn counterexamples(
    engine: EngineSpec,
    results: &[(u64, RunResult, Option<History>)],
    dir: &Path,
    max_replays: usize,
) -> anyhow::Result<Vec<ViolationReport>> {
    let mut out = Vec::new();
    for inv in Invariant::ALL {
        let breaking: Vec<u64> =
            results.iter().filter(|r| r.1.violations.iter().any(|v| v.invariant == inv)).map(|r| r.0).collect();
        let Some(&seed) = breaking.first() else {
            continue;
        };
        let history = results
            .iter()
            .find(|r| r.0 == seed)
            .and_then(|r| r.2.as_ref())
            .expect("histories of violating seeds are kept");
        let shrunk = match engine.kind {
            EngineKind::Reference => shrink(&engine.make_reference()?, history, inv, max_replays),
            EngineKind::Seed => shrink(&SeedEngine::new, history, inv, max_replays),
            EngineKind::PgReference | EngineKind::PgSeed => unreachable!("Postgres runs go through sim::pg"),
        };
        let h = shrunk.history;
        let replayed = replay_any(&h, true)?;
        let detail = replayed.violations.iter().find(|v| v.invariant == inv).map(|v| v.to_string()).unwrap_or_default();
        let file_engine = engine.name().replace("+mutant=", "-");
        let path = dir.join(format!("{file_engine}-seed{seed}-{}.jsonl", inv.id()));
        write_trace(&h, &path)?;
        out.push(ViolationReport {
            invariant: inv.id().to_owned(),
            name: inv.name().to_owned(),
            seed,
            seeds: breaking,
            detail,
            shrunk_flows: h.flows.len(),
            shrunk_events: h.events.len(),
            steps: replayed.log,
            trace: path.display().to_string(),
            replay: format!("ledger-sim replay {}", path.display()),
        });
    }
    Ok(out)
}

/// Write a trace whole or not at all: to a temporary file, then renamed into place.
pub(crate) fn write_trace(h: &History, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("jsonl.tmp");
    let mut buf = Vec::new();
    h.write_jsonl(&mut buf)?;
    std::fs::write(&tmp, &buf).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// Replay a history on the engine it names.
pub fn replay_any(h: &History, log: bool) -> anyhow::Result<RunResult> {
    let spec = EngineSpec::from_name(&h.engine)?;
    Ok(match spec.kind {
        EngineKind::Reference => replay(spec.make_reference()?, h, log),
        EngineKind::Seed => replay(SeedEngine::new, h, log),
        EngineKind::PgReference | EngineKind::PgSeed => crate::pg::replay_on_pg(spec.kind, h, log)?,
    })
}

pub(crate) fn print_report(out: &mut impl Write, r: &RunReport) -> std::io::Result<()> {
    writeln!(out, "ledger-sim run: engine={} scheduler={:?} seeds={}", r.engine, r.scheduler, r.seeds)?;
    writeln!(out, "  {} steps, {} requests, trace hash {}", r.steps, r.requests, r.trace_hash)?;
    writeln!(
        out,
        "  coverage: {}",
        r.coverage.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    )?;
    if r.violations.is_empty() {
        writeln!(out, "no invariant broke")?;
    }
    for v in &r.violations {
        writeln!(out)?;
        writeln!(out, "VIOLATION {} {} (seed {}; {} seed(s) broke it)", v.invariant, v.name, v.seed, v.seeds.len())?;
        writeln!(out, "  {}", v.detail)?;
        writeln!(out, "  shrunk to {} flow(s), {} event(s):", v.shrunk_flows, v.shrunk_events)?;
        for s in &v.steps {
            writeln!(out, "    {s}")?;
        }
        writeln!(out, "  trace:  {}", v.trace)?;
        writeln!(out, "  replay: {}", v.replay)?;
    }
    Ok(())
}

/// What `replay` prints with `--json`.
#[derive(Debug, Serialize)]
struct ReplayReport {
    engine: String,
    seed: u64,
    flows: usize,
    events: usize,
    violations: Vec<ledger_core::Violation>,
    trace_hash: String,
    steps: Vec<String>,
}

fn replay_cmd(args: ReplayArgs) -> anyhow::Result<bool> {
    let path = args.file.display().to_string();
    let file = std::fs::File::open(&args.file).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let h = History::read_jsonl(std::io::BufReader::new(file), &path)?;

    let r = replay_any(&h, true)?;
    let report = ReplayReport {
        engine: h.engine.clone(),
        seed: h.seed,
        flows: h.flows.len(),
        events: h.events.len(),
        violations: r.violations.clone(),
        trace_hash: format!("{:016x}", r.trace_hash),
        steps: r.log,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "replay {path}: engine={} seed={} flows={} events={}",
            report.engine, report.seed, report.flows, report.events
        )?;
        for s in &report.steps {
            writeln!(out, "  {s}")?;
        }
        if report.violations.is_empty() {
            writeln!(out, "no invariant broke")?;
        }
        for v in &report.violations {
            writeln!(out, "VIOLATION {v}")?;
        }
    }
    Ok(report.violations.is_empty())
}
