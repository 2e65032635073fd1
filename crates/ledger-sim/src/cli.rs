//! The command line: `ledger-sim run` and `ledger-sim replay`.
//!
//! Exit codes: 0 when no invariant broke, 1 on a violation, 2 on bad input.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ledger_core::config::ENV_VARS;
use ledger_harness::Invariant;
use ledger_simulator::exec::RunResult;
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::history::History;
use ledger_simulator::report::{
    counterexamples, describe, print_report, print_report_with, replay_in_memory, run_seeds, EngineKind, EngineSpec,
    RunReport, ViolationReport,
};
use ledger_simulator::scenario::Scenario;
use serde::Serialize;

/// The simulator of the generosity-pool ledger.
#[derive(Parser, Debug)]
#[command(name = "ledger-sim", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// A negative number is a value on every subcommand (refused by its flag's parser, which names
// the flag), not an unknown option; a value that only starts like one (`-1s`, `-1/2`, `-1..3`)
// is taken by its flag where the flag allows hyphen values (`--exec-timeout`, `--for`,
// `--shard`, `--seeds`, the Postgres and exec options).
#[derive(Subcommand, Debug)]
enum Command {
    /// Run seeds of a scenario against an engine and check the invariants after every step (I1-I6
    /// and I8; I7 across a PostgreSQL server's crash or an implementation's kill).
    #[command(allow_negative_numbers = true)]
    Run(Box<RunArgs>),
    /// Replay a saved trace and report its violations.
    ///
    /// A trace (`ledger-sim-trace` version 2) ends with a footer line that counts its users,
    /// flows and events and holds the SHA-256 of every byte before it: a trace cut short or
    /// altered is refused (exit 2), naming the file and line. Version 1 traces, which have no
    /// footer, are still read.
    #[command(allow_negative_numbers = true)]
    Replay(ReplayArgs),
    /// Read-only check of I1, I2 and I5 on a live PostgreSQL database (either schema).
    Audit(ledger_pg_runs::AuditArgs),
    /// Replay a conformance trace from any implementation against the reference engine.
    ///
    /// Exit 0 when the trace matches the reference and breaks no invariant, 1 otherwise, 2
    /// when the file cannot be read or is not a valid trace (the error names the line; with
    /// --json it is also printed on stdout as {"file", "error": {"line", "kind",
    /// "message"}}). A version 2 trace must end with its footer, so a cut one is refused; a
    /// version 1 trace has none, and the output says that a cut cannot be detected. The first
    /// 10 violations of each invariant are listed, and all are counted ("violation_counts";
    /// "... and N more I2 violations"). A balance of a step's totals out of the format's range
    /// but within 64 bits (a pool of -42) is what the implementation claims: a divergence and
    /// a broken I1 (exit 1), not bad input.
    #[command(allow_negative_numbers = true)]
    CheckTrace(crate::check_trace::CheckTraceArgs),
    /// Capacity planning: many simulated days under chosen budgets and credit percentages.
    #[command(allow_negative_numbers = true, mut_arg("shard", |a| a.allow_hyphen_values(true)))]
    Plan(crate::plan_cmd::PlanArgs),
    /// Combine `plan --shard I/N --json` outputs into the report of the whole plan.
    Merge(crate::plan_cmd::MergeArgs),
    /// Combine `run --seeds A..B --shard I/N --json` reports into the report of the range (JSON,
    /// as `run --json` prints it).
    MergeRuns(crate::merge_runs::MergeRunsArgs),
    /// Serve the reference engine over the engine protocol (SPEC.md §9) on stdin/stdout.
    ///
    /// The protocol's own implementation: `run --engine exec --exec 'ledger-sim serve'` drives
    /// the reference out of process, a baseline for any other implementation.
    Serve,
    /// Replay the conformance vectors through the engine protocol on an implementation of the
    /// reference API: each case from a reset, each reply and the totals after each step.
    ///
    /// Exit 0 when every case passes, 1 when one fails, 2 when the implementation cannot be
    /// driven or a --case names no case. Each failing case is a block: its FILE:LINE and name,
    /// the SPEC.md rules it pins, the request that failed, the answer expected and the one
    /// received (the protocol's JSON), each field that differs, the requests of the case
    /// before it, and the command that replays that case alone (--case); the summary comes
    /// last. --json gives the same as data. --write-vectors DIR writes the built-in vectors
    /// out as files, so that FILE:LINE can be opened.
    #[command(allow_negative_numbers = true)]
    Conform(crate::conform::ConformArgs),
    /// Calls per second of an implementation over the engine protocol: one call at a time, and
    /// many in flight, each against the in-process reference measured in the same run.
    #[command(allow_negative_numbers = true)]
    BenchExec(crate::bench_exec::BenchExecArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Reference)]
    engine: EngineKind,
    /// Run a named mutant of the reference engine (builds with `--features mutants` only).
    #[arg(long, value_parser = parse_mutant)]
    mutant: Option<ledger_harness::mutants::Mutant>,
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds", allow_hyphen_values = true)]
    seed: Option<u64>,
    /// Run every seed of a half-open range `A..B`.
    #[arg(long, value_parser = parse_range, allow_hyphen_values = true)]
    seeds: Option<(u64, u64)>,
    /// Run only the `I`-th of `N` contiguous slices of `--seeds A..B` (1-based); combine the
    /// `--json` reports with `ledger-sim merge-runs`.
    #[arg(long, value_parser = ledger_plan::parse_shard, requires = "seeds", conflicts_with_all = ["soak", "seed"], allow_hyphen_values = true)]
    shard: Option<ledger_plan::report::Shard>,
    /// Number of users (overrides the scenario).
    #[arg(long, allow_hyphen_values = true)]
    users: Option<u32>,
    /// Scheduler steps per seed in the fault phase (overrides the scenario).
    #[arg(long, allow_hyphen_values = true)]
    steps: Option<u64>,
    /// A scenario TOML file.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// How the next step is chosen (default: random). Lockstep runs only: a --concurrency run
    /// has no scheduler, its calls interleave as the server or the implementation runs them.
    #[arg(long, value_enum)]
    scheduler: Option<SchedulerKind>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Stop at the first seed with a violation.
    #[arg(long)]
    fail_fast: bool,
    /// Where counterexample traces are written.
    #[arg(long, default_value = DEFAULT_TRACE_DIR, value_parser = crate::input::trace_dir_arg)]
    trace_dir: PathBuf,
    /// Replays the shrinker may spend per counterexample (default 3000). Not with
    /// --concurrency: a concurrent finding is not shrunk.
    #[arg(long, allow_hyphen_values = true)]
    max_replays: Option<usize>,
    /// Soak: run fresh seeds (a range from a random start, printed) until DURATION (`90s`,
    /// `10m`, `2h`) is spent, with progress on stderr and each invariant's counterexample
    /// written as soon as it is found. In-memory engines only.
    #[arg(long = "for", value_name = "DURATION", value_parser = crate::soak::parse_duration, conflicts_with_all = ["seed", "seeds"], allow_hyphen_values = true)]
    soak: Option<std::time::Duration>,
    /// Also write the verdict as JUnit XML: a test case per invariant over the seeds run, a
    /// failure carrying the counterexample and its replay command.
    #[arg(long, value_name = "FILE.xml")]
    junit: Option<PathBuf>,
    /// Coverage that steers: in blocks of 32 seeds, the odd seeds after the first block are
    /// aimed at the coverage marks the plain (even) seeds of the previous four blocks reached
    /// least, their swarm mix weighted toward what reached them. A seed's run depends on its
    /// number alone: `--seed N --steer` runs it as any steered range did. In-memory engines only.
    #[arg(long)]
    steer: bool,
    /// PostgreSQL options (`--engine pg-reference|pg-seed`, and `exec` with --exec-db).
    #[command(flatten)]
    pg: ledger_pg_runs::PgArgs,
    /// The implementation of `--engine exec` (SPEC.md §9).
    #[command(flatten)]
    exec: ledger_pg_runs::ExecArgs,
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// A trace written by `run` (`ledger-sim-trace`, version 2 or 1).
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the verdict as JUnit XML (a test case per invariant).
    #[arg(long, value_name = "FILE.xml")]
    junit: Option<PathBuf>,
    /// The implementation of an exec trace (`exec-reference`, `exec-seed`).
    #[command(flatten)]
    exec: ledger_pg_runs::ExecArgs,
    /// The database of a pg-reference or pg-seed trace.
    #[command(flatten)]
    db: ledger_pg_runs::ReplayDbArgs,
    /// A pg-reference trace found with `run --pg-mutant FILE`: install the same SQL mutant
    /// before replaying, so the replay shows what the run found. Builds with `--features
    /// mutants` only.
    #[arg(long, value_name = "FILE")]
    pg_mutant: Option<PathBuf>,
}

fn parse_mutant(s: &str) -> Result<ledger_harness::mutants::Mutant, String> {
    ledger_harness::mutants::Mutant::from_name(s).ok_or_else(|| {
        let names: Vec<String> = ledger_harness::mutants::Mutant::ALL.iter().map(|m| m.name()).collect();
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

/// Entry point: parse, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    // `replay` shares `run`'s exec options, but refuses `--kill-child-at` (a replay sends one
    // call at a time): its help does not offer it.
    let command = <Cli as clap::CommandFactory>::command()
        .mut_subcommand("replay", |replay| replay.mut_arg("kill_child_at", |arg| arg.hide(true)));
    let parsed = command.try_get_matches().and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        // An error may quote an argument (`unexpected argument 'postgres://u:secret@h/db'`):
        // said with every password hidden, as every line on stderr is.
        Err(e) if e.use_stderr() => {
            ledger_exec::say!("{}", e.render().to_string().trim_end());
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    warn_of_passwords_on_the_command_line(matches!(cli.command, Command::Audit(_)));
    if let Err(e) = check_environment() {
        ledger_exec::say!("ledger-sim: error: {e}");
        return ExitCode::from(2);
    }
    say_ignored_ledger_variables();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Replay(args) => replay_cmd(args),
        Command::Plan(args) => crate::plan_cmd::plan_cmd(args),
        Command::Merge(args) => crate::plan_cmd::merge_cmd(args),
        Command::MergeRuns(args) => crate::merge_runs::merge_runs_cmd(args),
        Command::Audit(args) => ledger_pg_runs::audit_cmd(&args),
        Command::CheckTrace(args) => crate::check_trace::check_trace_cmd(&args),
        Command::Serve => serve_cmd(),
        Command::Conform(args) => crate::conform::conform_cmd(&args),
        Command::BenchExec(args) => crate::bench_exec::bench_exec_cmd(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // The reader of the output went away (`| head`): not an error of the input. The
        // shell's code for a process a broken pipe stopped, and nothing printed.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => match e.downcast_ref::<crate::interrupt::Interrupted>() {
            Some(stopped) => {
                ledger_exec::say!("ledger-sim: {stopped}");
                ExitCode::from(u8::try_from(128 + stopped.signal).unwrap_or(u8::MAX))
            }
            None => {
                ledger_exec::say!("ledger-sim: error: {}", shown(&error_chain(&e)));
                ExitCode::from(2)
            }
        },
    }
}

/// Environment variables the program reads that a library would otherwise ignore silently
/// when malformed.
fn check_environment() -> anyhow::Result<()> {
    if let Some(v) = std::env::var_os("RAYON_NUM_THREADS") {
        let text = v.to_string_lossy();
        if text.trim().is_empty() {
            // As a CI template exports it when it has no value: unset, as for DATABASE_URL (the
            // thread pool reads it so too).
            ledger_exec::say!(
                "ledger-sim: RAYON_NUM_THREADS is set but empty: ignored, as if unset (one thread per core)"
            );
            return Ok(());
        }
        let threads = text.trim().parse::<usize>();
        anyhow::ensure!(
            threads.is_ok(),
            "RAYON_NUM_THREADS={text:?}: not a whole number of threads (0 or unset: one per core)"
        );
        anyhow::ensure!(
            threads.is_ok_and(|n| n <= MAX_THREADS),
            "RAYON_NUM_THREADS={text:?}: more than {MAX_THREADS} threads (0 or unset: one per core; the work \
             is CPU-bound, so threads beyond the cores only wait)"
        );
    }
    Ok(())
}

/// Warns, once, when a `--database-url` on the command line carries a password (in the URL's
/// user part or a `password=` parameter): a command line is every local user's to read while
/// the program runs (`/proc/PID/cmdline`, `ps`), and a shell keeps it in its history. The URL
/// never needs one: `PGPASSFILE` (`~/.pgpass`) and `PGPASSWORD` give it, and `audit` reads
/// `DATABASE_URL` when `--database-url` is not given.
fn warn_of_passwords_on_the_command_line(audit: bool) {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let given = args.iter().enumerate().filter_map(|(i, a)| match a.strip_prefix("--database-url") {
        Some("") => args.get(i + 1).map(String::as_str),
        Some(v) => v.strip_prefix('='),
        None => None,
    });
    if given.into_iter().any(ledger_pg_runs::has_password) {
        let instead = if audit {
            "give the whole URL in DATABASE_URL instead (audit reads it when --database-url is not given), or leave \
             the password out of it and give it in PGPASSFILE"
        } else {
            "leave the password out of the URL and give it in PGPASSFILE"
        };
        ledger_exec::say!(
            "ledger-sim: warning: --database-url holds a password, which every local user can read while this runs \
             (/proc/PID/cmdline, ps) and your shell's history keeps: {instead} (a file of yours, mode 0600, \
             ~/.pgpass when unset, lines HOST:PORT:DATABASE:USER:PASSWORD) or PGPASSWORD"
        );
    }
}

/// Says which of the seed's environment variables (`FREE_TIER_BUDGET_TRUSTED`, ...) are set:
/// `ledger-sim` takes the ledger's configuration from the scenario, never from the
/// environment, so that a run gives the same result on every machine. A user who set one
/// expecting it to count is told, rather than ignored in silence.
fn say_ignored_ledger_variables() {
    let set: Vec<&str> = ENV_VARS.into_iter().filter(|name| std::env::var_os(name).is_some()).collect();
    if !set.is_empty() {
        ledger_exec::say!(
            "ledger-sim: ignoring {} from the environment: the ledger's configuration comes from the scenario \
             (`[ledger]` in a run scenario, `budget.*`, `credit_pct` and `pool_initial_sats` in a plan), \
             so that a run is the same on every machine; these variables are read by a service through \
             ledger_core::Config::from_env",
            set.join(", ")
        );
    }
}

/// The most threads `RAYON_NUM_THREADS` may ask for. The pool's idle threads look for work
/// in each other's queues, so its cost grows faster than their number: on two cores 1,000
/// threads added about a second to a small plan, 10,000 about 45 s, and 100,000 (a zero too
/// many) had not reached the work after a minute.
const MAX_THREADS: usize = 1024;

/// Whether `e` is the program's own output meeting a pipe whose reader has gone: a bare I/O
/// error of writing (`writeln!(out, ...)?`, `serde_json::to_writer`), not one a database
/// connection or a child's input wraps in its own error, which is a failure to report.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        || e.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind)
            == Some(std::io::ErrorKind::BrokenPipe)
}

/// The longest line of an error message printed whole: a parser's error quotes the line it
/// could not read, and a line of a binary file may be a gigabyte.
const MAX_SHOWN_LINE: usize = 2000;

/// An error message as printed: every password replaced by `***` (a wrong file given as a
/// scenario may be a `.env`), every control character but newline and tab escaped (a binary
/// file's line, a name with a terminal's escape sequence), every line cut to
/// [`MAX_SHOWN_LINE`] bytes.
fn shown(message: &str) -> String {
    let message = ledger_pg_runs::redacted_text(message);
    let message = ledger_harness::text::printable(&message);
    let mut out = String::with_capacity(message.len().min(64 * MAX_SHOWN_LINE));
    for (i, line) in message.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.len() <= MAX_SHOWN_LINE {
            out.push_str(line);
        } else {
            let cut = (0..=MAX_SHOWN_LINE).rev().find(|&k| line.is_char_boundary(k)).unwrap_or(0);
            out.push_str(&line[..cut]);
            out.push_str(&format!("... ({} more bytes)", line.len() - cut));
        }
    }
    out
}

fn load_scenario(args: &RunArgs) -> anyhow::Result<Scenario> {
    let mut s = match &args.scenario {
        Some(path) => {
            let text = crate::input::read_scenario(path)?;
            let shown = path.display().to_string();
            Scenario::from_toml_str(&text, &shown).map_err(|e| {
                crate::input::other_kind(&text, &shown, crate::input::ScenarioKind::Run).unwrap_or_else(|| e.into())
            })?
        }
        None => Scenario::default(),
    };
    if let Some(n) = args.users {
        s.n_users = n;
    }
    if let Some(n) = args.steps {
        s.n_steps = n;
    }
    s.validate("command line").map_err(|e| match e {
        // A value of --users or --steps is named as the flag that gave it.
        ledger_simulator::scenario::ScenarioError::Range { key, value, reason, .. }
            if (key == "n_users" && args.users.is_some()) || (key == "n_steps" && args.steps.is_some()) =>
        {
            let flag = if key == "n_users" { "--users" } else { "--steps" };
            anyhow::anyhow!("{flag} {value}: {reason}")
        }
        e => e.into(),
    })?;
    Ok(s)
}

/// Where a run writes its counterexample traces unless told.
const DEFAULT_TRACE_DIR: &str = "target/ledger-sim/counterexamples";
/// Replays the shrinker may spend per counterexample, unless `--max-replays` says.
const DEFAULT_MAX_REPLAYS: usize = 3000;

/// Bytes a seed of `s` holds at its peak, from measurements of the reference engine on one
/// thread: its history (every step kept, to shrink a counterexample: about 230 bytes a step)
/// and its users (about 450 bytes each), above about 20 MB of its own. One seed of 1,000
/// users and 4 M steps peaked at 0.91 GB; of a million users and 1 M steps at 0.70 GB.
fn seed_bytes(s: &Scenario) -> u64 {
    const PER_STEP: u64 = 240;
    const PER_USER: u64 = 500;
    PER_STEP.saturating_mul(s.n_steps).saturating_add(PER_USER.saturating_mul(u64::from(s.n_users))) + (20 << 20)
}

/// Refuses, before any seed, a run whose seeds (`in_parallel` of them at a time) would not fit
/// in the memory available: a scenario within its limits (100 M steps) may need 23 GB a seed,
/// and a failed allocation aborts the process with nothing said and nothing written.
fn check_run_memory(s: &Scenario, in_parallel: u64) -> anyhow::Result<()> {
    let Some(available) = crate::memory::available() else { return Ok(()) };
    let per_seed = seed_bytes(s);
    let need = per_seed.saturating_mul(in_parallel);
    if need <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let fewer = if in_parallel > 1 && per_seed <= available {
        format!(", or run fewer seeds at a time (RAYON_NUM_THREADS={})", (available / per_seed).max(1))
    } else {
        String::new()
    };
    anyhow::bail!(
        "this run needs about {:.1} GiB ({in_parallel} seed(s) at a time, each about {:.1} GiB for its {} steps and \
         {} users, every step kept to shrink a counterexample), and {:.1} GiB is available: give fewer steps \
         (n_steps, --steps) or users{fewer}",
        gib(need),
        gib(per_seed),
        s.n_steps,
        s.n_users,
        gib(available)
    )
}

fn run(args: RunArgs) -> anyhow::Result<bool> {
    let scenario = load_scenario(&args)?;
    if let Some(path) = &args.junit {
        if let Some(mutant) = &args.pg.pg_mutant {
            crate::input::will_read(mutant);
        }
        crate::input::check_output("--junit", path)?;
    }
    let seeds = match (args.seed, args.seeds) {
        (Some(s), _) => (s, s.checked_add(1).ok_or_else(|| anyhow::anyhow!("--seed {s} is too large"))?),
        (None, Some(r)) => r,
        (None, None) => (0, 1),
    };
    // Which shard of which range a `--json` report is, for `merge-runs` to check the set.
    let shard_of =
        args.shard.map(|s| ShardOf { index: s.index, count: s.count, seeds: format!("{}..{}", seeds.0, seeds.1) });
    let seeds = match args.shard {
        None => seeds,
        Some(shard) => {
            // Contiguous slices, the remainder spread over the first ones.
            let (len, n, i) = (seeds.1 - seeds.0, u64::from(shard.count), u64::from(shard.index - 1));
            let at = |k: u64| seeds.0 + k * (len / n) + k.min(len % n);
            let slice = (at(i), at(i + 1));
            // Refused for every shard of such a split, not only for the empty ones, so a fleet
            // of more machines than seeds fails the same way on each.
            if len < n {
                anyhow::bail!(
                    "--shard {}/{}: the range {}..{} has fewer seeds than shards",
                    shard.index,
                    shard.count,
                    seeds.0,
                    seeds.1
                );
            }
            slice
        }
    };
    let in_parallel = match args.engine {
        // A steered run goes a block of seeds at a time, in parallel, --fail-fast or not.
        EngineKind::Reference | EngineKind::Seed if !args.fail_fast || args.steer => {
            let seeds = if args.soak.is_some() { u64::MAX } else { seeds.1 - seeds.0 };
            (rayon::current_num_threads() as u64).min(seeds.max(1))
        }
        _ => 1,
    };
    check_run_memory(&scenario, in_parallel)?;
    let progress = !args.json && std::io::stderr().is_terminal() && seeds.1 - seeds.0 > 1;
    let started = Instant::now();
    if args.mutant.is_some() && args.engine != EngineKind::Reference {
        anyhow::bail!("--mutant applies to --engine reference only");
    }
    // A concurrent run has no scheduler to choose: a --scheduler given with it would be
    // ignored while the report named it.
    if let (Some(scheduler), Some(n)) = (args.scheduler, args.pg.concurrency) {
        anyhow::bail!(
            "--scheduler {} with --concurrency {n}: a concurrent run has no scheduler (its calls interleave as \
             the server or the implementation runs them); leave out --scheduler, or --concurrency for a lockstep run",
            clap::ValueEnum::to_possible_value(&scheduler).map_or_else(String::new, |v| v.get_name().to_owned())
        );
    }
    let scheduler = args.scheduler.unwrap_or(SchedulerKind::Random);
    // Nor a shrinker: a concurrent finding is reported as it was seen.
    if let (Some(replays), Some(n)) = (args.max_replays, args.pg.concurrency) {
        anyhow::bail!(
            "--max-replays {replays} with --concurrency {n}: a concurrent run's findings are not shrunk (they \
             cannot be replayed); leave out --max-replays, or --concurrency for a lockstep run"
        );
    }
    let max_replays = args.max_replays.unwrap_or(DEFAULT_MAX_REPLAYS);
    if args.pg.pg_mutant.is_some() && !cfg!(feature = "mutants") {
        anyhow::bail!("--pg-mutant needs a build with `--features mutants`");
    }
    // Traces are written after the seeds have run: a path that cannot be a directory, or one
    // that cannot take a file, is refused before any of that work (one that does not exist
    // yet is made when a trace is written).
    // The default, in the current directory, is only checked to be one: a run that breaks
    // nothing writes no trace, and may be run where it cannot write.
    if args.trace_dir == Path::new(DEFAULT_TRACE_DIR) {
        anyhow::ensure!(
            !args.trace_dir.exists() || args.trace_dir.is_dir(),
            "--trace-dir {DEFAULT_TRACE_DIR}: not a directory (counterexample traces are written into it)"
        );
    } else {
        crate::input::check_directory("--trace-dir", &args.trace_dir)?;
    }
    let engine = EngineSpec { kind: args.engine, mutant: args.mutant };
    let pg = matches!(args.engine, EngineKind::PgReference | EngineKind::PgSeed | EngineKind::Exec);
    if pg && args.steer {
        anyhow::bail!("--steer runs in-memory engines only (reference, seed)");
    }
    if pg && args.soak.is_some() {
        anyhow::bail!("--for runs in-memory engines only (reference, seed)");
    }
    if args.engine == EngineKind::Exec {
        args.exec.command()?;
        args.exec.timeout()?;
        args.exec.passed_env()?;
        // An exec run's only database is the one it gives the child: a URL would go unused.
        if args.pg.database_url.is_some() && !args.exec.exec_db {
            anyhow::bail!(
                "--database-url with --engine exec needs --exec-db: the child's fresh database is made on that \
                 URL's server (without --exec-db the child keeps its state where it likes, and the URL is not used)"
            );
        }
    } else if args.exec.is_set() {
        anyhow::bail!("--exec, --exec-db, --exec-env and --exec-timeout need --engine exec");
    }
    if pg {
        // An --exec child is stopped by the signal thread of `ledger_exec::child` (on the
        // first signal until the child has answered, on the second after), not by the default
        // action, which would leave the child's process group running.
        let interrupt = if args.engine == EngineKind::Exec {
            crate::interrupt::Interrupt::install_without_default()?
        } else {
            crate::interrupt::Interrupt::install()?
        };
        let run = ledger_pg_runs::PgRun {
            kind: args.engine,
            scenario: &scenario,
            scenario_file: args.scenario.as_deref(),
            seeds,
            scheduler,
            fail_fast: args.fail_fast,
            trace_dir: &args.trace_dir,
            max_replays,
            // Bounded by replays alone when the user gave them: the same bytes on every run.
            shrink_for: args.max_replays.is_none().then_some(ledger_pg_runs::SHRINK_ON_ENGINE),
            exec: Some(&args.exec),
            stop: Some(interrupt.flag()),
        };
        let mut report = ledger_pg_runs::run(&run, &args.pg)?;
        // `report.seeds` is the range the report covers, `A..B`: shorter than asked when the
        // run stopped early (at a violation with --fail-fast, or by a signal).
        let ran_to = report.seeds.rsplit_once("..").and_then(|(_, end)| end.parse().ok()).unwrap_or(seeds.1);
        // A lockstep run's counterexamples are shrunk once every seed has run; a signal then
        // cuts that short (`lockstep_report` in ledger-pg-runs).
        let while_shrinking = args.pg.concurrency.is_none() && ran_to == seeds.1 && !report.violations.is_empty();
        let interrupted = interrupt.signal().filter(|_| ran_to < seeds.1 || while_shrinking).map(|signal| {
            crate::interrupt::Interrupted {
                signal,
                ran: (seeds.0, ran_to),
                asked: Some(seeds),
                while_shrinking,
                sharded: args.shard.is_some(),
            }
        });
        let checked = Invariant::judged_for(&report.engine);
        if let Some(path) = &args.junit {
            let shard = shard_of.as_ref().map(|s| format!("(shard {}/{} of {})", s.index, s.count, s.seeds));
            let suite =
                crate::junit::suite_name("run", &report.engine, report.deterministic, &report.seeds, shard.as_deref());
            crate::junit::write(
                path,
                &crate::junit::render_judged(&suite, &report.seeds, &checked, &report.violations, &report.coverage),
            )?;
        }
        let ok = report.violations.is_empty();
        let mut out = std::io::stdout().lock();
        if args.json {
            let full = PgReport {
                report: &report,
                scenario: &scenario,
                shard: shard_of,
                interrupted_by: interrupted.as_ref().map(|i| crate::interrupt::name(i.signal)),
            };
            serde_json::to_writer_pretty(&mut out, &full)?;
            writeln!(out)?;
            say_replays_from_anywhere(&report);
        } else {
            replays_from_anywhere(&mut report);
            // The faults the run injects below the workload: the scenario's own (its
            // `lost_ack` is the simulated worker's) say nothing of them.
            let injected = injected_faults(&args);
            let what = match injected.is_empty() {
                true => describe(&scenario),
                false => format!("{}\n  injected by the run: {}", describe(&scenario), injected.join(", ")),
            };
            print_report(&mut out, &report, &what)?;
        }
        return ended(&mut out, interrupted, ok);
    } else if args.pg.is_set() {
        let engine =
            clap::ValueEnum::to_possible_value(&args.engine).map(|v| v.get_name().to_owned()).unwrap_or_default();
        anyhow::bail!("{} (this run's engine is {engine})", pg_flags_refused(&args.pg));
    }
    let interrupt = crate::interrupt::Interrupt::install()?;
    // A soak shrinks each invariant's counterexample when it finds it; a run, at its end.
    let (seeds, done, found) = match args.soak {
        Some(budget) => crate::soak::soak(
            engine,
            &scenario,
            scheduler,
            args.fail_fast,
            budget,
            &args.trace_dir,
            max_replays,
            args.steer,
            interrupt.flag(),
        )
        .map(|(seeds, done, found)| (seeds, done, Some(found)))?,
        None => {
            let stop = Some(interrupt.flag());
            let done = run_seeds(engine, &scenario, seeds, scheduler, args.fail_fast, progress, args.steer, stop)?;
            (seeds, done, None)
        }
    };
    // The seeds the report covers: all asked for, or up to the last one run when the run
    // stopped early (at a violation with --fail-fast, or by a signal).
    let ran_to = match (done.last_seed, interrupt.signal()) {
        (Some(last), _) => last + 1,
        (None, Some(_)) => seeds.0,
        (None, None) => seeds.1,
    };
    let elapsed = started.elapsed();
    let steps = done.steps;
    // A signal that comes once the seeds have run cuts the shrinking short: the counterexamples
    // are written as far as they got. One that stopped the seeds does not: their
    // counterexamples are shrunk as usual, and a second signal ends the run.
    let shrink_stop = (!interrupt.flag().load(std::sync::atomic::Ordering::Relaxed)).then(|| interrupt.flag());
    let violations = match found {
        Some(found) => found,
        None => counterexamples(engine, &done, None, &args.trace_dir, max_replays, shrink_stop)?,
    };
    let while_shrinking = shrink_stop.is_some() && args.soak.is_none() && !violations.is_empty();
    let interrupted =
        interrupt.signal().filter(|_| ran_to < seeds.1 || args.soak.is_some() || while_shrinking).map(|signal| {
            crate::interrupt::Interrupted {
                signal,
                ran: (seeds.0, ran_to),
                asked: args.soak.is_none().then_some(seeds),
                while_shrinking: while_shrinking && ran_to == seeds.1,
                sharded: args.shard.is_some(),
            }
        });
    let mut report = RunReport {
        engine: engine.name(),
        scheduler: Some(scheduler),
        seeds: format!("{}..{ran_to}", seeds.0),
        steps,
        requests: done.requests,
        violations,
        coverage: done.coverage.clone().with_all_marks(),
        trace_hash: Some(format!("{:016x}", done.trace_hash)),
        deterministic: true,
        steps_per_sec: (steps as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
    };
    if let Some(path) = &args.junit {
        let checked = Invariant::judged_for(&report.engine);
        let shard = shard_of.as_ref().map(|s| format!("(shard {}/{} of {})", s.index, s.count, s.seeds));
        let suite =
            crate::junit::suite_name("run", &report.engine, report.deterministic, &report.seeds, shard.as_deref());
        crate::junit::write(
            path,
            &crate::junit::render_judged(&suite, &report.seeds, &checked, &report.violations, &report.coverage),
        )?;
    }
    let ok = report.violations.is_empty();
    let mut out = std::io::stdout().lock();
    let steering = done.steering.as_ref().map(|s| &s.report);
    if args.json {
        let full = InMemoryReport {
            report: &report,
            scenario: &scenario,
            shard: shard_of,
            seeds_reaching: &done.seeds_reaching,
            never_reached: done.never_reached(),
            steering,
            interrupted_by: interrupted.as_ref().map(|i| crate::interrupt::name(i.signal)),
        };
        serde_json::to_writer_pretty(&mut out, &full)?;
        writeln!(out)?;
        say_replays_from_anywhere(&report);
    } else {
        replays_from_anywhere(&mut report);
        print_report_with(&mut out, &report, &describe(&scenario), &steer_lines(&done))?;
        ledger_exec::say!("{} steps in {:.2?} ({} steps/s)", steps, elapsed, report.steps_per_sec);
    }
    ended(&mut out, interrupted, ok)
}

/// The directory the run started in, which relative paths in its report are relative to
/// (the run never changes it).
fn start_dir() -> Option<PathBuf> {
    std::env::current_dir().ok()
}

/// The text report's replay commands (and a concurrent finding's run again) made to work
/// pasted into a shell in any directory: the report with `--json` and `--junit` keeps them
/// relative to the directory the run started in, the same bytes wherever that is.
fn replays_from_anywhere(report: &mut RunReport) {
    let Some(start) = start_dir() else { return };
    for v in &mut report.violations {
        v.replay = ledger_simulator::report::from_anywhere(&v.replay, &v.trace, &start);
    }
}

/// With `--json`, each finding's replay command that works pasted in any directory, on
/// stderr (the report's own is relative to the directory the run started in).
fn say_replays_from_anywhere(report: &RunReport) {
    let Some(start) = start_dir() else { return };
    for v in &report.violations {
        let command = ledger_simulator::report::from_anywhere(&v.replay, &v.trace, &start);
        ledger_exec::say!("ledger-sim: {} (seed {}), from any directory: {command}", v.invariant, v.seed);
    }
}

/// How a run whose report is printed on `out` ends: by the signal that stopped it, if one did
/// (the command line says which seeds the report covers and exits 128 + its number), or with
/// `ok`, whether no invariant broke.
fn ended(out: &mut impl Write, interrupted: Option<crate::interrupt::Interrupted>, ok: bool) -> anyhow::Result<bool> {
    match interrupted {
        Some(stopped) => {
            out.flush()?;
            Err(stopped.into())
        }
        None => Ok(ok),
    }
}

/// What an in-memory `run` prints with `--json`: the run report, then how many seeds reached
/// each mark, the expected marks no seed reached, and what `--steer` did.
#[derive(Serialize)]
struct InMemoryReport<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    /// The scenario run (after `--users` and `--steps`), so `merge-runs` can tell runs apart.
    scenario: &'a Scenario,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<ShardOf>,
    seeds_reaching: &'a std::collections::BTreeMap<&'static str, u64>,
    never_reached: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steering: Option<&'a ledger_simulator::steer::SteerReport>,
    /// The signal that stopped the run before every seed asked for had run (`SIGINT`): the
    /// report covers `seeds`, a shorter range.
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted_by: Option<&'static str>,
}

/// What a run on a database or over the engine protocol prints with `--json`: the run report,
/// the scenario run and which shard it is.
#[derive(serde::Serialize)]
struct PgReport<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    scenario: &'a Scenario,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<ShardOf>,
    /// As in [`InMemoryReport`]: the signal that stopped the run before every seed had run.
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted_by: Option<&'static str>,
}

/// The faults a Postgres or exec run injects beneath the workload, as the flags that ask for
/// them (`--lost-ack 0.05`), for the report's header.
fn injected_faults(args: &RunArgs) -> Vec<String> {
    let (pg, exec) = (&args.pg, &args.exec);
    let rates = [("--kill-connections", pg.kill_connections), ("--lost-ack", pg.lost_ack)];
    let mut said: Vec<String> = rates.iter().filter(|(_, p)| *p > 0.0).map(|(flag, p)| format!("{flag} {p}")).collect();
    let at = [
        ("--restart-server-at", pg.restart_server_at),
        ("--crash-server-at", pg.crash_server_at),
        ("--kill-child-at", exec.kill_child_at),
    ];
    said.extend(at.iter().filter_map(|(flag, n)| n.map(|n| format!("{flag} {n}"))));
    said
}

/// `run --shard I/N` of the range `A..B`, in a `--json` report.
#[derive(serde::Serialize)]
struct ShardOf {
    index: u32,
    count: u32,
    /// The whole range, before the shard was cut from it.
    seeds: String,
}

/// The text report's lines on steering: the marks aimed at, each with its seeds, how many
/// reached it and what its bias favoured.
fn steer_lines(done: &ledger_simulator::report::SeedsRun) -> Vec<String> {
    let Some(st) = &done.steering else { return Vec::new() };
    let r = &st.report;
    let mut lines = vec![format!(
        "steering: {} seed(s) aimed at rare marks (odd seeds from seed {} on, in blocks of {}; \
         any seed reruns alone with --seed N --steer){}",
        r.aimed_seeds,
        r.block,
        r.block,
        if r.warmup_seeds > 0 {
            format!(", {} plain seed(s) before the range run to learn from", r.warmup_seeds)
        } else {
            String::new()
        }
    )];
    if r.boosted.is_empty() {
        lines.push("  boosted: none (no mark was rare among the plain seeds)".to_owned());
    }
    for (mark, b) in &r.boosted {
        let favoured = r.favoured.get(mark).map(|f| f.join(", ")).unwrap_or_default();
        lines.push(format!(
            "  boosted {mark}: {} seed(s) aimed, {} reached it (of all seeds: {}){}",
            b.aimed_seeds,
            b.reached,
            done.seeds_reaching.get(mark).copied().unwrap_or(0),
            if favoured.is_empty() { String::new() } else { format!("; favouring {favoured}") }
        ));
    }
    lines
}

/// What `replay` prints with `--json`.
#[derive(Debug, Serialize)]
struct ReplayReport {
    engine: String,
    seed: u64,
    flows: usize,
    events: usize,
    violations: Vec<ledger_harness::Violation>,
    trace_hash: String,
    steps: Vec<String>,
    /// The first divergence from the reference engine of pg-reference or of an exec
    /// implementation of the reference API.
    #[serde(skip_serializing_if = "Option::is_none")]
    divergence: Option<String>,
    /// The request an exec implementation failed on its own (`crash`, `no_answer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
}

fn replay_cmd(args: ReplayArgs) -> anyhow::Result<bool> {
    if args.pg_mutant.is_some() && !cfg!(feature = "mutants") {
        anyhow::bail!("--pg-mutant needs a build with `--features mutants`");
    }
    // A garbled URL is refused before the trace is read, as `run` refuses it before any seed.
    args.db.check()?;
    let path = args.file.display().to_string();
    let bytes = crate::input::read_bytes(&args.file)?;
    // After the read, so that a --junit naming the trace itself is refused before the replay.
    if let Some(junit) = &args.junit {
        if let Some(mutant) = &args.pg_mutant {
            crate::input::will_read(mutant);
        }
        crate::input::check_output("--junit", junit)?;
    }
    let h = History::read_jsonl(&bytes[..], &path)?;
    // An engine no replay knows is named at its line (the header's), before anything starts.
    let spec = EngineSpec::from_name(&h.engine).map_err(|e| anyhow::anyhow!("{path}:1: engine: {e}"))?;
    let mutant = args.pg_mutant.as_deref().map(|path| ledger_pg_runs::load_pg_mutant(path, spec.kind)).transpose()?;
    let (r, divergence, failure) = replay_any(&h, &args.exec, &args.db, mutant.as_deref(), true)?;
    let report = ReplayReport {
        engine: h.engine.clone(),
        seed: h.seed,
        flows: h.flows.len(),
        events: h.events.len(),
        violations: r.violations.clone(),
        trace_hash: format!("{:016x}", r.trace_hash),
        steps: r.log,
        divergence: divergence.clone(),
        failure: failure.clone(),
    };
    if let Some(junit) = &args.junit {
        let checked = Invariant::judged_for(&h.engine);
        let mut reports: Vec<ViolationReport> = Vec::new();
        for v in &report.violations {
            if reports.iter().any(|r| r.invariant == v.invariant.id()) {
                continue;
            }
            reports.push(ViolationReport {
                invariant: v.invariant.id().to_owned(),
                name: v.invariant.name().to_owned(),
                seed: h.seed,
                seeds: vec![h.seed],
                seeds_unlisted: 0,
                detail: v.to_string(),
                shrunk_flows: report.flows,
                shrunk_events: report.events,
                // The trace as given; the run that wrote it said how it was reduced.
                reduction: Default::default(),
                steps: report.steps.clone(),
                trace: path.clone(),
                replay: ledger_simulator::report::replay_command(&args.file),
            });
        }
        // A divergence and an implementation's own failure are failed cases too: a CI must not
        // read a replay that exits 1 as passed.
        let failed = failure.as_deref().and_then(|f| {
            let kind = ledger_exec::FailureKind::ALL.into_iter().find(|k| f.starts_with(&format!("{} ", k.id())))?;
            Some((kind.id(), kind.name().to_owned(), f.to_owned()))
        });
        let diverged = divergence
            .as_ref()
            .map(|d| ("divergence", format!("{} disagrees with the reference engine", h.engine), d.clone()));
        for (invariant, name, detail) in diverged.into_iter().chain(failed) {
            reports.push(ViolationReport {
                invariant: invariant.to_owned(),
                name,
                seed: h.seed,
                seeds: vec![h.seed],
                seeds_unlisted: 0,
                detail,
                shrunk_flows: report.flows,
                shrunk_events: report.events,
                reduction: Default::default(),
                steps: report.steps.clone(),
                trace: path.clone(),
                replay: ledger_simulator::report::replay_command(&args.file),
            });
        }
        let seeds = format!("{}..{}", h.seed, h.seed.saturating_add(1));
        crate::junit::write(junit, &crate::junit::render(&h.engine, &seeds, &checked, &reports))?;
    }
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
        if report.violations.is_empty() && failure.is_none() {
            writeln!(out, "no invariant broke")?;
        }
        for v in &report.violations {
            writeln!(out, "VIOLATION {v}")?;
        }
        if let Some(d) = &divergence {
            writeln!(out, "DIVERGENCE from the reference engine {d}")?;
        }
        if let Some(f) = &failure {
            writeln!(out, "VIOLATION {f}")?;
        }
    }
    Ok(report.violations.is_empty() && divergence.is_none() && failure.is_none())
}

/// What a run on an in-memory engine says of the Postgres and concurrency flags given: each
/// flag with the engines that take it (`--concurrency` and `--lost-ack` are the exec engine's
/// too, `--database-url` an exec run's with `--exec-db`).
fn pg_flags_refused(pg: &ledger_pg_runs::PgArgs) -> String {
    let mut said: Vec<(&str, &str)> = Vec::new();
    let mut given = |set: bool, flag: &'static str, engines: &'static str| {
        if set {
            said.push((flag, engines));
        }
    };
    let everywhere = "--engine pg-reference, pg-seed or exec";
    given(pg.database_url.is_some(), "--database-url", "--engine pg-reference or pg-seed, or exec with --exec-db");
    given(pg.reset_database, "--reset-database", "--database-url on --engine pg-reference or pg-seed");
    given(pg.concurrency.is_some(), "--concurrency", everywhere);
    given(pg.lost_ack != 0.0, "--lost-ack", everywhere);
    given(pg.linearizability_budget.is_some(), "--linearizability-budget", everywhere);
    let pg_only = "--engine pg-reference or pg-seed";
    given(pg.kill_connections != 0.0, "--kill-connections", pg_only);
    given(pg.restart_server_at.is_some(), "--restart-server-at", pg_only);
    given(pg.crash_server_at.is_some(), "--crash-server-at", pg_only);
    given(pg.batch_lanes.is_some(), "--batch-lanes", "--engine pg-reference");
    given(pg.give_up_after.is_some(), "--give-up-after", pg_only);
    given(pg.pg_mutant.is_some(), "--pg-mutant", pg_only);
    said.iter().map(|(flag, engines)| format!("{flag} needs {engines}")).collect::<Vec<_>>().join("; ")
}

/// The exec options given, as the command line spells them.
fn exec_flags_given(exec: &ledger_pg_runs::ExecArgs) -> Vec<&'static str> {
    let mut flags = Vec::new();
    for (set, flag) in [
        (exec.command.is_some(), "--exec"),
        (exec.exec_db, "--exec-db"),
        (!exec.exec_env.is_empty(), "--exec-env"),
        (exec.exec_timeout.is_some(), "--exec-timeout"),
        (exec.kill_child_at.is_some(), "--kill-child-at"),
    ] {
        if set {
            flags.push(flag);
        }
    }
    flags
}

/// Replays a history on the engine it names: in memory, on PostgreSQL (the database of
/// `--database-url` reset first, or a fresh one; with the SQL of `--pg-mutant` installed), or
/// on an implementation of the engine protocol. The result, and the divergence from the
/// reference of pg-reference or of an exec implementation of the reference API, and the
/// request an exec implementation failed on its own.
fn replay_any(
    h: &History,
    exec: &ledger_pg_runs::ExecArgs,
    db: &ledger_pg_runs::ReplayDbArgs,
    mutant: Option<&str>,
    log: bool,
) -> anyhow::Result<(RunResult, Option<String>, Option<String>)> {
    let spec = EngineSpec::from_name(&h.engine)?;
    if exec.kill_child_at.is_some() {
        // A replay runs one call at a time; the kill is a concurrent run's fault.
        anyhow::bail!(
            "--kill-child-at is not taken by replay: a replay sends one call at a time, and the kill is a fault \
             of a concurrent run (`run --engine exec --concurrency N --kill-child-at N`)"
        );
    }
    if spec.kind != EngineKind::Exec && exec.is_set() {
        let given = exec_flags_given(exec);
        anyhow::bail!(
            "{} {} an exec trace on its implementation; this trace is of {}",
            given.join(", "),
            if given.len() == 1 { "replays" } else { "replay" },
            h.engine
        );
    }
    if !matches!(spec.kind, EngineKind::PgReference | EngineKind::PgSeed) && db.is_set() {
        anyhow::bail!(
            "--database-url and --reset-database replay a pg-reference or pg-seed trace; this trace is of {}",
            h.engine
        );
    }
    match spec.kind {
        EngineKind::Reference | EngineKind::Seed => Ok((replay_in_memory(spec, h, log)?, None, None)),
        EngineKind::PgReference | EngineKind::PgSeed => {
            ledger_pg_runs::replay_on_pg_at(spec.kind, h, log, mutant, db).map(|(r, d)| (r, d, None))
        }
        EngineKind::Exec => {
            exec.command().map_err(|_| {
                anyhow::anyhow!(
                    "this trace is of {}: give --exec COMMAND, the implementation to replay it on",
                    h.engine
                )
            })?;
            ledger_pg_runs::replay_on_exec(h, exec, log)
        }
    }
}

fn serve_cmd() -> anyhow::Result<bool> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    ledger_exec::serve::serve(stdin, stdout, &mut std::io::stderr())?;
    Ok(true)
}

/// An error and its causes, joined with `: `, each cause left out when the message before it
/// already says it (a library that prints its source in its own message would otherwise
/// repeat it: "Connection refused: Connection refused").
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{is_broken_pipe, shown};
    use std::io::{Error, ErrorKind};

    /// Only the program's own output meeting a closed pipe is a quiet exit; a broken pipe a
    /// database connection or a child's input wraps in its own error is a failure to report.
    #[test]
    fn only_a_bare_broken_pipe_is_a_closed_output() {
        assert!(is_broken_pipe(&anyhow::Error::from(Error::from(ErrorKind::BrokenPipe))));
        let json = serde_json::to_writer(Closed, &1).unwrap_err();
        assert!(is_broken_pipe(&anyhow::Error::from(json)));
        assert!(!is_broken_pipe(&anyhow::Error::from(Lost(Error::from(ErrorKind::BrokenPipe)))));
        assert!(!is_broken_pipe(&anyhow::Error::from(Error::from(ErrorKind::NotFound))));
    }

    struct Closed;

    /// An error of a connection, with the I/O error as its source.
    #[derive(Debug)]
    struct Lost(Error);

    impl std::fmt::Display for Lost {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection to the server lost")
        }
    }

    impl std::error::Error for Lost {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(Error::from(ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn shown_errors_hide_passwords_and_cut_long_lines() {
        let long = "x".repeat(5_000);
        let out = shown(&format!("bad: postgres://u:pw@h/db\n{long}\nend"));
        assert!(out.starts_with("bad: postgres://u:***@h/db\n"), "{out}");
        assert!(out.contains("... (3000 more bytes)\nend"), "{out}");
        let wide = "é".repeat(1_500);
        assert!(shown(&wide).ends_with("more bytes)"), "cut on a character boundary");
    }
}
