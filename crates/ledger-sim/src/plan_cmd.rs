//! `ledger-sim plan` and `ledger-sim merge`: arguments, output, progress. The planning itself
//! is the `ledger-plan` crate.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ledger_plan::frontier::{self, parse_over, Frontier};
use ledger_plan::model::SeedResult;
use ledger_plan::report::{self, PlanOutput, Shard};
use ledger_plan::solve::{self, parse_solve, SolveOptions, Solver};
use ledger_plan::{html, merge_named, parse_shard, parse_sweep, Plan};

/// `ledger-sim plan` arguments.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The planner scenario (TOML; see `fixtures/scenarios/plan-*.toml`).
    #[arg(required_unless_present = "fit")]
    pub scenario: Option<PathBuf>,
    /// Seeds per configuration (overrides `seeds`).
    #[arg(long)]
    pub seeds: Option<u32>,
    /// Days to simulate (overrides `days`).
    #[arg(long)]
    pub days: Option<u32>,
    /// Fit a scenario to a request history (CSV, one row per request; the format is in the
    /// README) and write it as TOML, each fitted key with its fit's quality, instead of planning.
    #[arg(long, value_name = "HISTORY.csv", conflicts_with_all = ["scenario", "seeds", "days", "sweep", "shard", "solve", "json", "csv", "report", "history_out", "no_carry"])]
    pub fit: Option<PathBuf>,
    /// Where `--fit` writes the scenario [default: stdout]; written whole or not at all.
    #[arg(long = "out", value_name = "S.toml", requires = "fit")]
    pub fit_out: Option<PathBuf>,
    /// With `--fit`: fit rows that repeat an earlier row in every field as they are (distinct
    /// requests alike to the millisecond), said at the top of the scenario, instead of refusing
    /// the history (an export written twice into one file counts each request twice).
    #[arg(long, requires = "fit")]
    pub allow_duplicate_rows: bool,
    /// Write the history of one run (the scenario's first seed) to FILE.csv, one row per
    /// request in the format `--fit` reads, instead of planning.
    #[arg(long, value_name = "FILE.csv", conflicts_with_all = ["seeds", "sweep", "shard", "solve", "json", "csv", "report", "no_carry"])]
    pub history_out: Option<PathBuf>,
    /// Set a numeric key of the scenario (dotted: `population.trusted=800`) before planning,
    /// solving or sweeping; repeat for more. The file is not changed.
    #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with = "fit")]
    pub set: Vec<String>,
    /// A sweep axis `KEY=V1,V2,...` over a numeric key (dotted: `budget.trusted`);
    /// repeat for a grid.
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...")]
    pub sweep: Vec<String>,
    /// Run only the slice `I/N` (1-based) of the `(configuration, seed)` items; combine the
    /// `--json` outputs with `ledger-sim merge`.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Run every seed at every value. By default, solving for or sweeping `credit_pct` or
    /// `pool_initial_sats`, a seed whose run at a lower value the pool never bound (no
    /// decision or reservation came out otherwise for want of pool sats) is carried up to the
    /// higher value instead of run again: the same result, exactly, without the checker's pass.
    #[arg(long)]
    pub no_carry: bool,
    /// A target for `--solve`: `p_dry(day=90) <= 0.05`, `pool_p5(day=90) >= 10000`,
    /// `peak_locked_p95 <= 5000`, `free_p10(tier=new) >= 0.2`; repeat for one verdict each.
    #[arg(long = "target", value_name = "TARGET", requires = "solve")]
    pub targets: Vec<String>,
    /// Find the smallest (or largest) value of a numeric key in `LO..HI` that meets each
    /// `--target`, by bisection with a sequential test at each value.
    #[arg(long, value_name = "KEY=LO..HI", requires = "targets", conflicts_with_all = ["sweep", "shard", "csv"])]
    pub solve: Option<String>,
    /// The frontier: repeat the `--solve` for each value of a second numeric key
    /// (`budget.trusted=50,100,200`), giving the solved key's interval at each.
    #[arg(long, value_name = "KEY=V1,V2,...", requires = "solve")]
    pub over: Option<String>,
    /// Solver options.
    #[command(flatten)]
    pub solver: SolverArgs,
    /// Output options.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// How `--solve` decides.
#[derive(clap::Args, Debug)]
pub struct SolverArgs {
    /// Stop bisecting when the interval is this wide [default: a 200th of the range, at
    /// least 1 for a whole-number key].
    #[arg(long, requires = "solve")]
    pub resolution: Option<f64>,
    /// The largest chance of calling a value that meets the target failing.
    #[arg(long, default_value_t = 0.05, requires = "solve")]
    pub alpha: f64,
    /// The largest chance of calling a value that fails the target meeting.
    #[arg(long, default_value_t = 0.05, requires = "solve")]
    pub beta: f64,
    /// Half the width of the indifference band around the target's limit [default: a fifth
    /// of it: 0.04..0.06 around 0.05].
    #[arg(long, requires = "solve")]
    pub band: Option<f64>,
    /// The most seeds one value may take; a value still undecided then counts as not meeting.
    #[arg(long, default_value_t = 2000, requires = "solve")]
    pub max_seeds: u64,
}

/// `ledger-sim merge` arguments.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// `--json` outputs of `plan --shard I/N`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output options.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Output options shared by `plan` and `merge`.
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    /// Print the whole output (summaries and every run) as JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print one CSV row per configuration.
    #[arg(long)]
    pub csv: bool,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

fn emit(out: &PlanOutput, args: &OutputArgs) -> anyhow::Result<bool> {
    let printed = if args.json {
        serde_json::to_string_pretty(out).map(|json| json + "\n")?
    } else if args.csv {
        report::csv(out)
    } else {
        report::table(out)
    };
    report_then_print(printed, || html::render(out), args)?;
    Ok(out.summaries.iter().all(|s| s.violations == 0))
}

/// Writes the `--report` page, then `printed` on stdout. The page first: it is a file the
/// user asked for, and a reader of stdout that has gone (`| head`) must not cost it.
fn report_then_print(printed: String, page: impl FnOnce() -> String, args: &OutputArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.report {
        crate::input::write_whole("--report", path, page().as_bytes())?;
    }
    let written = std::io::stdout().lock().write_all(printed.as_bytes());
    if let Some(path) = &args.report {
        ledger_exec::say!("report written to {}", path.display());
    }
    Ok(written?)
}

/// Refuses, before any work, a plan whose runs (`per_run` bytes each, `n_items` of them at
/// most) and results (`results` bytes in all) would not fit in the memory available.
fn check_memory(per_run: u64, n_items: usize, results: u64) -> anyhow::Result<()> {
    let threads = rayon::current_num_threads().min(n_items.max(1)) as u64;
    let need = per_run.saturating_mul(threads);
    let Some(available) = crate::memory::available() else { return Ok(()) };
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    if need.saturating_add(results) > available && results > need {
        anyhow::bail!(
            "this plan's results need about {:.1} GiB ({n_items} runs, each keeping its balances by day until \
             the plan is printed), and with the {threads} run(s) in progress at a time (about {:.1} GiB) about \
             {:.1} GiB in all, more than the {:.1} GiB available: plan fewer seeds, configurations or days, \
             or split it with --shard I/N --json and combine the parts with `ledger-sim merge`",
            gib(results),
            gib(need),
            gib(need.saturating_add(results)),
            gib(available),
        );
    }
    let need = need.saturating_add(results);
    if need > available {
        anyhow::bail!(
            "this plan needs about {:.1} GiB ({:.1} GiB per run of its largest configuration, on {threads} \
             thread(s)): the reference ledger keeps every request it decides, for idempotency, so memory grows \
             with users x requests per day x days. {:.1} GiB is available. Plan fewer days or users{}.",
            gib(need),
            gib(per_run),
            gib(available),
            if threads > 1 && per_run <= available { ", or run fewer at once (RAYON_NUM_THREADS=1)" } else { "" }
        );
    }
    Ok(())
}

/// `ledger-sim plan`: true when no invariant broke.
pub fn plan_cmd(args: PlanArgs) -> anyhow::Result<bool> {
    if let Some(history) = &args.fit {
        return fit_cmd(history, args.fit_out.as_deref(), args.allow_duplicate_rows);
    }
    // clap lets `--out` through without `--fit` when a scenario is given (`--fit` conflicts
    // with it, which clap takes to excuse the requirement).
    anyhow::ensure!(args.fit_out.is_none(), "--out names where --fit writes its scenario: give --fit HISTORY.csv");
    anyhow::ensure!(!args.allow_duplicate_rows, "--allow-duplicate-rows is for --fit: give --fit HISTORY.csv");
    let scenario = args.scenario.as_deref().expect("clap asks for a scenario without --fit");
    let origin = scenario.display().to_string();
    // A key set and also swept, solved for or varied over would be set for nothing.
    let varied: Vec<&str> = args
        .sweep
        .iter()
        .chain(&args.solve)
        .chain(&args.over)
        .filter_map(|a| a.split_once('='))
        .map(|(k, _)| k.trim())
        .collect();
    if let Some(set) = args.set.iter().find(|s| s.split_once('=').is_some_and(|(k, _)| varied.contains(&k.trim()))) {
        anyhow::bail!(
            "--set {set}: the same key is given to --sweep, --solve or --over, which set it in turn; leave out one"
        );
    }
    let text = crate::input::read_scenario(scenario)?;
    if let Some(e) = crate::input::other_kind(&text, &origin, crate::input::ScenarioKind::Plan) {
        return Err(e);
    }
    let text = ledger_plan::with_settings(&text, &origin, &args.set)?;
    let mut overrides = Vec::new();
    if let Some(n) = args.seeds {
        overrides.push(("seeds", n.to_string()));
    }
    if let Some(n) = args.days {
        overrides.push(("days", n.to_string()));
    }
    if let Some(path) = &args.history_out {
        return history_cmd(&text, &origin, &overrides, path);
    }
    if let Some(range) = &args.solve {
        let range = parse_solve(range)?;
        let options = SolveOptions {
            resolution: args.solver.resolution,
            alpha: args.solver.alpha,
            beta: args.solver.beta,
            band: args.solver.band,
            max_seeds: args.solver.max_seeds,
            carry: !args.no_carry,
        };
        let solver = Solver::new(&text, &origin, &overrides, range, &args.targets, options)?;
        // A cap below what any "meets" takes spends the whole search on values it can only
        // call failing or undecided: refused before any work.
        if let Some((target, need, cap)) = solver.seeds_to_meet().into_iter().find(|(_, need, cap)| cap < need) {
            anyhow::bail!(
                "--max-seeds {cap}: the test of {target:?} needs at least {need} seeds to decide that a value meets \
                 it (that many without the event; more with any), so no value could be shown to meet it; give \
                 --max-seeds {need} or more (the default is 2000), or a looser test (--band, --alpha, --beta)"
            );
        }
        let frontier = args.over.as_deref().map(|o| Frontier::new(&solver, parse_over(o)?)).transpose()?;
        if let Some(path) = &args.out.report {
            crate::input::check_output("--report", path)?;
        }
        return match frontier {
            Some(f) => frontier_cmd(&f, &args.out),
            None => solve_cmd(&solver, &args.out),
        };
    }
    if let (Some(shard), false) = (args.shard, args.out.json) {
        anyhow::bail!(
            "--shard {}/{} runs part of the plan: give --json and combine the parts with `ledger-sim merge` \
             (a table, CSV or report of one part would read as the whole plan)",
            shard.index,
            shard.count
        );
    }
    let sweep = args.sweep.iter().map(|s| parse_sweep(s)).collect::<Result<Vec<_>, _>>()?;
    let plan = Plan::new(&text, &origin, &overrides, sweep)?;
    if let Some(path) = &args.out.report {
        crate::input::check_output("--report", path)?;
    }
    check_memory(plan.bytes_per_run(), plan.n_items(), plan.bytes_of_results())?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs {elapsed}/{eta}")
                .expect("valid template"),
        );
        bar
    });
    let started = Instant::now();
    let (out, cost) = plan.run_with_cost(args.shard, bar.as_ref(), !args.no_carry);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests: u64 = out.runs.iter().map(SeedResult::requests).sum();
    ledger_exec::say!(
        "{} result(s) ({} of them carried up from a lower credit or genesis), {} requests; {} run(s), {} requests \
         in {elapsed:.2} s ({:.0} requests/s on {} thread(s))",
        out.runs.len(),
        cost.seeds_carried,
        requests,
        cost.seeds_run,
        cost.requests_run,
        cost.requests_run as f64 / elapsed.max(1e-9),
        rayon::current_num_threads()
    );
    emit(&out, &args.out)
}

/// `plan --solve`: true when no invariant broke.
fn solve_cmd(solver: &Solver, args: &OutputArgs) -> anyhow::Result<bool> {
    check_memory(solver.bytes_per_run(), usize::MAX, 0)?;
    let started = Instant::now();
    // One line per value tested, as it is decided: a solve can take minutes.
    let (out, cost) = solver.solve_with_cost(&|target, step| {
        ledger_exec::say!(
            "{:>7.1} s  {}: {}",
            started.elapsed().as_secs_f64(),
            target.text,
            solve::step_line(solver.key(), step)
        );
    })?;
    let totals = Totals {
        seeds: out.results.iter().map(|r| r.seeds_run).sum(),
        requests: out.requests,
        cost,
        violations: out.violations,
        first_violation: out.first_violation.as_deref(),
    };
    emit_solved(&out, totals, started, solve::text, html::render_solve, args)
}

/// `plan --solve --over`: true when no invariant broke.
fn frontier_cmd(f: &Frontier, args: &OutputArgs) -> anyhow::Result<bool> {
    check_memory(f.bytes_per_run(), usize::MAX, 0)?;
    let started = Instant::now();
    let over = &f.over().key;
    let (out, cost) = f.solve_with_cost(&|value, target, step| {
        ledger_exec::say!(
            "{:>7.1} s  {over}={value}  {}: {}",
            started.elapsed().as_secs_f64(),
            target.text,
            solve::step_line(f.key(), step)
        );
    })?;
    let totals = Totals {
        seeds: out.points.iter().flat_map(|p| &p.results).map(|r| r.seeds_run).sum(),
        requests: out.requests,
        cost,
        violations: out.violations,
        first_violation: out.first_violation.as_deref(),
    };
    emit_solved(&out, totals, started, frontier::text, html::render_frontier, args)
}

/// What a solve or a frontier adds up to.
struct Totals<'a> {
    seeds: u64,
    requests: u64,
    cost: solve::Cost,
    violations: u64,
    first_violation: Option<&'a str>,
}

/// The speed on stderr, then `out` as text or JSON on stdout and as a page with `--report`:
/// true when no invariant broke.
fn emit_solved<T: serde::Serialize>(
    out: &T,
    totals: Totals<'_>,
    started: Instant,
    text: fn(&T) -> String,
    page: fn(&T) -> String,
    args: &OutputArgs,
) -> anyhow::Result<bool> {
    let elapsed = started.elapsed().as_secs_f64();
    let cost = totals.cost;
    // Seeds run a batch of one per thread at a time: those past the seed that decided a test
    // are run and never read, so runs and seeds read need not add up.
    let unread = cost.seeds_run.saturating_sub(totals.seeds.saturating_sub(cost.seeds_carried));
    let unread = match unread {
        0 => String::new(),
        n => format!(" ({n} of them past the seed that decided a test, run beside it on another thread and not read)"),
    };
    ledger_exec::say!(
        "{} seed(s) read ({} of them carried up from a lower value), {} requests; {} run(s){unread}, {} requests in {elapsed:.2} s ({:.0} requests/s on {} thread(s))",
        totals.seeds,
        cost.seeds_carried,
        totals.requests,
        cost.seeds_run,
        cost.requests_run,
        cost.requests_run as f64 / elapsed.max(1e-9),
        rayon::current_num_threads()
    );
    let printed = if args.json { serde_json::to_string_pretty(out)? + "\n" } else { text(out) };
    report_then_print(printed, || page(out), args)?;
    if let Some(v) = totals.first_violation {
        ledger_exec::say!("{} invariant violation(s); the first: {v}", totals.violations);
    }
    Ok(totals.violations == 0)
}

/// `ledger-sim merge`: true when no invariant broke.
pub fn merge_cmd(args: MergeArgs) -> anyhow::Result<bool> {
    if let Some(path) = &args.out.report {
        args.files.iter().for_each(|f| crate::input::will_read(f));
        crate::input::check_output("--report", path)?;
    }
    let mut parts = Vec::new();
    for f in &args.files {
        let text = crate::input::read_text(f)?;
        let p: PlanOutput =
            serde_json::from_str(&text).map_err(|e| match serde_json::from_str::<serde_json::Value>(&text) {
                // A run's report, given to the merge of plans: said as such, not as a field of it.
                Ok(serde_json::Value::Object(o))
                    if ["engine", "trace_hash", "coverage"].iter().all(|k| o.contains_key(*k)) =>
                {
                    anyhow::anyhow!(
                    "{}: a run report (`ledger-sim run --json`), which `ledger-sim merge-runs` merges; `merge` merges \
                     the reports of `plan --shard I/N --json`",
                    f.display()
                )
                }
                _ => anyhow::anyhow!("{}: {e}", f.display()),
            })?;
        parts.push((f.display().to_string(), p));
    }
    let out = merge_named(parts)?;
    emit(&out, &args.out)
}

/// `plan --fit HISTORY.csv`: the fitted scenario to `out` (written whole, and only when the
/// whole history was read and fitted) or stdout; what the fit warns of (days the history
/// lacks, tiers the model cannot tell apart, rows repeated) on stderr too, where it is seen
/// when the scenario goes to a file.
fn fit_cmd(history: &Path, out: Option<&Path>, allow_duplicate_rows: bool) -> anyhow::Result<bool> {
    let bytes = crate::input::read_bytes(history)?;
    // After the read, so that an --out naming the history itself is refused before the fit.
    if let Some(path) = out {
        crate::input::check_output("--out", path)?;
    }
    let read = ledger_plan::history::read_with(&bytes, &history.display().to_string(), allow_duplicate_rows)?;
    // The scenario names the file, not the directory it was read from.
    let name = history.file_name().map_or_else(|| history.display().to_string(), |n| n.to_string_lossy().into_owned());
    let fitted = ledger_plan::fit::fit(&read.rows, &name)?.with_repeats(read.repeats);
    let toml = fitted.toml();
    for warning in fitted.warnings() {
        ledger_exec::say!("{}: {warning}", history.display());
    }
    ledger_plan::scenario::PlanScenario::from_toml_str(&toml, "the fitted scenario")
        .map_err(|e| anyhow::anyhow!("{}: the fitted scenario is not valid ({e})", history.display()))?;
    match out {
        Some(path) => {
            crate::input::write_whole("--out", path, toml.as_bytes())?;
            ledger_exec::say!(
                "{} requests of {} users fitted; scenario written to {}",
                fitted.n_requests,
                fitted.n_users,
                path.display()
            );
        }
        None => write!(std::io::stdout().lock(), "{toml}")?,
    }
    Ok(true)
}

/// `plan S.toml --history-out FILE.csv`: one run of the scenario's first seed, every request
/// it decides written to `path` (whole or not at all): true when no invariant broke.
///
/// The rows are written as the run decides them, to a temporary file beside `path` that is
/// renamed over it once the run is done and every row is written: the history is never held
/// (a run of millions of requests would hold as much again as the run itself), so the run's
/// memory is all the check before it counts. A failed write, or a signal that ends the
/// process, removes the temporary file and leaves `path` as it was.
fn history_cmd(text: &str, origin: &str, overrides: &[(&str, String)], path: &Path) -> anyhow::Result<bool> {
    const FLAG: &str = "--history-out";
    crate::input::check_output(FLAG, path)?;
    let plan = Plan::new(text, origin, overrides, Vec::new())?;
    check_memory(plan.bytes_per_run(), 1, 0)?;
    let target = crate::input::output_target(FLAG, path)?;
    let made = crate::input::make_parents(FLAG, path, &target)?;
    let tmp = ledger_simulator::files::temp_name_beside(&target);
    let failed = |e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        crate::input::remove_made(&made);
        anyhow::anyhow!("{FLAG} {}: {}", path.display(), crate::input::words(&e))
    };
    // Before the file is made, so that no signal comes between.
    remove_on_signal(tmp.clone()).map_err(failed)?;
    // And a panic of the run (a bug) unwinds through this guard, which removes it too.
    let _unfinished = Unfinished(&tmp);
    // `O_EXCL`: never a file or a link someone else put at the name.
    let file = ledger_simulator::files::open_new(&tmp).map_err(failed)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut written: Result<u64, std::io::Error> =
        out.write_all(format!("{}\n", ledger_plan::history::HEADER).as_bytes()).map(|()| 0);
    let mut line = String::new();
    let run = ledger_plan::model::run_with_history_to(&plan.base, plan.base.seed, &mut |row| {
        // After a failed write the run goes on (it cannot be stopped) but writes nothing more.
        if let Ok(n) = &mut written {
            line.clear();
            ledger_plan::history::write_row(&mut line, &row);
            match out.write_all(line.as_bytes()) {
                Ok(()) => *n += 1,
                Err(e) => written = Err(e),
            }
        }
    });
    let rows = written
        .and_then(|n| out.into_inner().map_err(|e| e.into_error()).map(|_| n))
        .and_then(|n| std::fs::rename(&tmp, &target).map(|()| n))
        .map_err(failed)?;
    ledger_exec::say!("{rows} requests of seed {} written to {}", plan.base.seed, path.display());
    if let Some(v) = &run.first_violation {
        ledger_exec::say!("{} invariant violation(s); the first: {v}", run.violations);
    }
    Ok(run.violations == 0)
}

/// Removes a temporary output when dropped: after it was renamed into place there is no such
/// file any more, and before, on an error or a panic, it is the part of an output never to be
/// left behind.
struct Unfinished<'a>(&'a Path);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// From now on, SIGINT, SIGTERM or SIGHUP removes `tmp` (an output not yet renamed into
/// place) and then ends the process as the signal would have. Once `tmp` was renamed, there
/// is nothing left to remove.
fn remove_on_signal(tmp: PathBuf) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("remove-on-signal".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = std::fs::remove_file(&tmp);
            let _ = signal_hook::low_level::emulate_default_handler(sig);
            std::process::exit(128 + sig);
        }
    })?;
    Ok(())
}
