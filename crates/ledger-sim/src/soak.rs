//! `run --for DURATION`: a soak. Fresh seeds, a contiguous range from a random start (printed,
//! so that any part of it replays with `--seeds A..B`), until the time is spent; progress on
//! stderr every few seconds; each invariant's first counterexample written as soon as it is
//! found; one report over every seed at the end. Memory stays flat: seeds are folded as they
//! finish ([`SeedsRun`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ledger_harness::Invariant;
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::{continue_seeds, counterexamples, EngineSpec, SeedsRun, ViolationReport};
use ledger_simulator::scenario::Scenario;

/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The longest one batch of seeds is aimed to take: new counterexamples are written, and
/// progress printed, between batches.
const BATCH_TARGET: Duration = Duration::from_secs(2);
/// The most seeds in one batch, however fast they run.
const MAX_BATCH: u64 = 100_000;

/// How a soak spends its time: how many seeds the next batch runs, whether it is time to say
/// how far it got. It reads no clock (the caller passes the time elapsed), so a test can drive
/// it with any.
///
/// A batch runs its seeds a round of one a thread at a time, so a seed's time is that of a
/// round. Each batch is sized, at the speed the last batch measured, to take half the time left
/// (at most [`BATCH_TARGET`]), and no batch starts with less than half a seed's time left. So a
/// soak ends within about half a seed of its duration: a batch would have to run more than
/// twice as slow as the one before it to overrun, and batches shrink as the end nears, each
/// measuring the speed again. The first batch, one round, is the only one sized blind.
#[derive(Debug)]
struct Pace {
    budget: Duration,
    n_threads: u64,
    /// The time of one round of the last batch; `None` before the first.
    per_round: Option<Duration>,
    /// When progress was last printed (or the soak started).
    last_progress: Duration,
}

impl Pace {
    fn new(budget: Duration, n_threads: u64) -> Pace {
        Pace { budget, n_threads: n_threads.max(1), per_round: None, last_progress: Duration::ZERO }
    }

    /// How many seeds to run next, `elapsed` into the soak; `None` when its time is spent.
    fn next_batch(&self, elapsed: Duration) -> Option<u64> {
        let left = self.budget.saturating_sub(elapsed);
        let Some(per_round) = self.per_round else {
            return (!left.is_zero()).then_some(self.n_threads);
        };
        if left.is_zero() || left < per_round / 2 {
            return None;
        }
        let aim = (left / 2).min(BATCH_TARGET);
        let n_rounds = ((aim.as_secs_f64() / per_round.as_secs_f64().max(1e-9)) as u64).max(1);
        Some(n_rounds.saturating_mul(self.n_threads).min(MAX_BATCH))
    }

    /// A batch of `n_seeds` took `took`.
    fn batch_done(&mut self, n_seeds: u64, took: Duration) {
        let n_rounds = n_seeds.div_ceil(self.n_threads).max(1);
        self.per_round = Some(took / u32::try_from(n_rounds).unwrap_or(u32::MAX));
    }

    /// Whether a progress line is due `elapsed` into the soak (every [`PROGRESS_EVERY`]); when
    /// it is, the next is due a period later.
    fn progress_due(&mut self, elapsed: Duration) -> bool {
        let due = elapsed.saturating_sub(self.last_progress) >= PROGRESS_EVERY;
        if due {
            self.last_progress = elapsed;
        }
        due
    }
}

/// Parse `90s`, `10m`, `2h` (or a number of seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // The spelling `--exec-timeout` reads, but whole seconds: a soak is not timed in ms.
    let d = ledger_pg_runs::duration(s)
        .filter(|_| !s.ends_with("ms"))
        .ok_or_else(|| format!("{s:?}: expected a duration such as 90s, 10m or 2h"))?;
    if d.is_zero() || d > Duration::from_secs(30 * 86_400) {
        return Err(format!("{s:?}: must be from 1 s to 30 days"));
    }
    Ok(d)
}

/// A start seed nobody chose: from the clock and the process id, printed by the soak.
fn random_start() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut x = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    // splitmix64, to spread nearby clocks apart.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) >> 2
}

/// Runs the soak; returns the seeds run (`start..end`), what they came to, and the
/// counterexample of each invariant broken, shrunk when it was found (its `seeds` are every
/// seed that broke it, to the end). `steer`: coverage steers the swarm (`--steer`). Once
/// `stop` is set (a signal) no seed starts, and the soak ends as if its time were spent.
// The run's own arguments, passed through from the command line one by one.
#[allow(clippy::too_many_arguments)]
pub fn soak(
    engine: EngineSpec,
    s: &Scenario,
    sched: SchedulerKind,
    fail_fast: bool,
    budget: Duration,
    trace_dir: &Path,
    max_replays: usize,
    steer: bool,
    stop: &AtomicBool,
) -> anyhow::Result<((u64, u64), SeedsRun, Vec<ViolationReport>)> {
    let start = random_start();
    ledger_exec::say!("soak: {} of seeds from {start} (any range of them replays with --seeds A..B)", humanize(budget));
    let started = Instant::now();
    let mut out = if steer { SeedsRun::steered() } else { SeedsRun::new() };
    let mut next = start;
    let mut pace = Pace::new(budget, rayon::current_num_threads() as u64);
    let mut reported: BTreeMap<Invariant, ViolationReport> = BTreeMap::new();
    // What the seeds so far came to, `elapsed` shown as `took`.
    let line = |out: &SeedsRun, next: u64, elapsed: Duration, took: String| {
        let n = next - start;
        let per_sec = n as f64 / elapsed.as_secs_f64().max(1e-9);
        format!("{n} seeds ({start}..{next}) in {took}, {per_sec:.0} seeds/s, {} violating seed(s)", out.n_violating)
    };
    while let Some(batch) = pace.next_batch(started.elapsed()) {
        let t = Instant::now();
        let range = (next, next.saturating_add(batch));
        let at_violation = continue_seeds(&mut out, engine, s, range, sched, fail_fast, None, Some(stop))?;
        let ran = out.last_seed.map_or(next, |l| l + 1) - next;
        pace.batch_done(ran, t.elapsed());
        next += ran;
        let new: Vec<Invariant> = out.breaking.keys().filter(|inv| !reported.contains_key(inv)).copied().collect();
        // A signal that comes while a counterexample is shrunk cuts the shrink short; one
        // that stopped these seeds does not (a second signal ends the soak).
        let shrink_stop = (!stop.load(Ordering::Relaxed)).then_some(stop);
        for inv in new {
            for v in counterexamples(engine, &out, Some(inv), trace_dir, max_replays, shrink_stop)? {
                ledger_exec::say!(
                    "soak: {} {} broke at seed {}: {}; {}",
                    v.invariant,
                    v.name,
                    v.seed,
                    v.detail,
                    v.replay
                );
                reported.insert(inv, v);
            }
        }
        if at_violation || stop.load(Ordering::Relaxed) {
            break;
        }
        let elapsed = started.elapsed();
        if pace.progress_due(elapsed) {
            let left = humanize(budget.saturating_sub(elapsed));
            ledger_exec::say!("soak: {}, {left} left", line(&out, next, elapsed, humanize(elapsed)));
        }
    }
    // However short the soak, it says what it did.
    let elapsed = started.elapsed();
    ledger_exec::say!("soak: done: {}", line(&out, next, elapsed, format!("{:.1} s", elapsed.as_secs_f64())));
    let found = reported
        .into_iter()
        .map(|(inv, mut v)| {
            v.seeds = out.breaking.get(&inv).cloned().unwrap_or_default();
            v.seeds_unlisted = out.unlisted.get(&inv).copied().unwrap_or(0);
            v
        })
        .collect();
    Ok(((start, next), out, found))
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a soak's pace on a clock of its own: every seed of a batch costs what `cost`
    /// says for the batch's first seed number, and `n_threads` seeds run at once. Returns when
    /// it ended, the seeds run and how many batches.
    fn soak_on(budget: Duration, n_threads: u64, cost: impl Fn(u64) -> Duration) -> (Duration, u64, u64) {
        let mut pace = Pace::new(budget, n_threads);
        let (mut now, mut n_seeds, mut n_batches) = (Duration::ZERO, 0, 0);
        while let Some(batch) = pace.next_batch(now) {
            // A batch takes its seeds in rounds of `n_threads`, the last round perhaps short.
            let took = cost(n_seeds) * u32::try_from(batch.div_ceil(n_threads)).unwrap();
            pace.batch_done(batch, took);
            now += took;
            n_seeds += batch;
            n_batches += 1;
        }
        (now, n_seeds, n_batches)
    }

    /// A soak ends within half a seed of its duration, whatever a seed costs, short or long,
    /// on one thread or many.
    #[test]
    fn a_soak_ends_within_half_a_seed_of_its_duration() {
        for budget in [1, 3, 10, 60].map(Duration::from_secs) {
            for n_threads in [1, 2, 8] {
                for cost in [Duration::from_micros(50), Duration::from_millis(3), Duration::from_millis(700)] {
                    let (ended, n_seeds, _) = soak_on(budget, n_threads, |_| cost);
                    let what = format!("{budget:?} on {n_threads} thread(s) at {cost:?} a seed: {ended:?}");
                    // The first batch, sized blind, may be a round of seeds longer than the time.
                    let margin = (cost / 2).max(cost.saturating_sub(budget));
                    assert!(ended <= budget + margin, "overran: {what}");
                    assert!(ended + cost * u32::try_from(n_threads).unwrap() >= budget, "stopped early: {what}");
                    assert!(n_seeds > 0, "{what}");
                }
            }
        }
    }

    /// Seeds that turn twice as slow halfway through (a run reaching a costlier part of the
    /// scenario) still end the soak within a seed of its duration: batches shrink near the end.
    #[test]
    fn a_soak_that_slows_down_still_ends_on_time() {
        let budget = Duration::from_secs(3);
        let fast = Duration::from_micros(400);
        let (ended, n_seeds, n_batches) = soak_on(budget, 2, |seed| if seed < 3_000 { fast } else { fast * 2 });
        assert!(ended <= budget + fast * 2, "overran: {ended:?} after {n_seeds} seeds in {n_batches} batches");
        assert!(n_batches < 64, "{n_batches} batches");
    }

    /// Progress is due every period, counted from the last line, not from the start.
    #[test]
    fn progress_is_due_every_period() {
        let mut pace = Pace::new(Duration::from_secs(60), 2);
        let at = |s: f64| Duration::from_secs_f64(s);
        assert!(!pace.progress_due(at(4.9)));
        assert!(pace.progress_due(at(5.5)));
        assert!(!pace.progress_due(at(10.0)));
        assert!(pace.progress_due(at(10.5)));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "0s", "10x", "-5m", "m", "99999999999999999999h", "31d", "800h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
