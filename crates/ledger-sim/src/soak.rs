//! `run --for DURATION`: a soak. Fresh seeds, a contiguous range from a random start (printed,
//! so that any part of it replays with `--seeds A..B`), until the time is spent; progress on
//! stderr every few seconds; each invariant's first counterexample written as soon as it is
//! found; one report over every seed at the end. Memory stays flat: seeds are folded as they
//! finish ([`SeedsRun`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use ledger_harness::Invariant;
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::{continue_seeds, counterexamples, EngineSpec, SeedsRun};
use ledger_simulator::scenario::Scenario;

/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long one batch of seeds should take, so that the time budget is kept closely.
const BATCH_TARGET: Duration = Duration::from_secs(2);

/// Parse `90s`, `10m`, `2h` (or a number of seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a duration such as 90s, 10m or 2h"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        _ => None,
    }
    .ok_or_else(|| format!("{s:?}: expected a duration such as 90s, 10m or 2h"))?;
    if secs == 0 || secs > 30 * 86_400 {
        return Err(format!("{s:?}: must be from 1 s to 30 days"));
    }
    Ok(Duration::from_secs(secs))
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

/// Runs the soak; returns the seeds run (`start..end`) and what they came to. `steer`: coverage
/// steers the swarm (`--steer`).
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
) -> anyhow::Result<((u64, u64), SeedsRun)> {
    let start = random_start();
    eprintln!("soak: {} of seeds from {start} (any range of them replays with --seeds A..B)", humanize(budget));
    let started = Instant::now();
    let mut out = if steer { SeedsRun::steered() } else { SeedsRun::new() };
    let mut next = start;
    let mut batch = rayon::current_num_threads() as u64;
    let mut reported: BTreeSet<Invariant> = BTreeSet::new();
    let mut last_progress = Instant::now();
    while started.elapsed() < budget {
        let t = Instant::now();
        let stopped = continue_seeds(&mut out, engine, s, (next, next.saturating_add(batch)), sched, fail_fast, None)?;
        let took = t.elapsed();
        next = out.last_seed.map_or(next, |l| l + 1);
        // Aim each batch at BATCH_TARGET, whatever a seed costs.
        let per_seed = took.as_secs_f64() / batch as f64;
        batch = ((BATCH_TARGET.as_secs_f64() / per_seed.max(1e-6)) as u64).clamp(1, 100_000);
        let broken: BTreeSet<Invariant> = out.breaking.keys().copied().collect();
        for inv in broken.difference(&reported.clone()) {
            for v in counterexamples(engine, &out, Some(*inv), trace_dir, max_replays)? {
                eprintln!("soak: {} {} broke at seed {}: {}; {}", v.invariant, v.name, v.seed, v.detail, v.replay);
            }
            reported.insert(*inv);
        }
        if last_progress.elapsed() >= PROGRESS_EVERY || stopped {
            last_progress = Instant::now();
            let n = next - start;
            let elapsed = started.elapsed();
            eprintln!(
                "soak: {n} seeds ({start}..{next}) in {}, {:.0} seeds/s, {} violating seed(s), {} left",
                humanize(elapsed),
                n as f64 / elapsed.as_secs_f64().max(1e-9),
                out.n_violating,
                humanize(budget.saturating_sub(elapsed))
            );
        }
        if stopped {
            break;
        }
    }
    Ok(((start, next), out))
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
