//! From runs to a report: per-configuration summaries, the terminal table and CSV.
//!
//! A summary is a pure function of the runs sorted by `(config, seed)`, with integer
//! percentiles and means, so a merged set of shards gives the same bytes as one run.

use std::fmt::Write as _;

use ledger_core::Tier;
use serde::{Deserialize, Serialize};

use super::model::{SeedResult, FREE, GATED, PARTIAL};
use super::scenario::PlanScenario;

/// The output format version.
pub const FORMAT: &str = "ledger-sim-plan/1";

/// One axis of the sweep grid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    /// The dotted key.
    pub key: String,
    /// The values, as written.
    pub values: Vec<String>,
}

/// One point of the grid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// Its index.
    pub index: usize,
    /// `key=value ...`, or `base` without a sweep.
    pub label: String,
    /// The value index on each axis.
    pub at: Vec<usize>,
}

/// A slice of the work: items `i` with `i % count == index - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

/// Served shares of one tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierShare {
    /// The tier.
    pub tier: Tier,
    /// Requests decided for users of the tier, over all seeds.
    pub requests: u64,
    /// Share decided free.
    pub free: f64,
    /// Share offered a partial.
    pub partial: f64,
    /// Share gated (charged in full).
    pub gated: f64,
}

/// What one configuration did over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The configuration's index.
    pub config: usize,
    /// Its label.
    pub label: String,
    /// Seeds run.
    pub seeds: u64,
    /// Mean requests per seed.
    pub requests_mean: u64,
    /// End-of-day pool balance: 5th percentile over seeds, per day.
    pub pool_p5: Vec<u64>,
    /// Median.
    pub pool_p50: Vec<u64>,
    /// 95th percentile.
    pub pool_p95: Vec<u64>,
    /// Share of seeds in which the pool ran dry (a request gated `pool_empty`).
    pub depletion_probability: f64,
    /// Earliest day of depletion over seeds.
    pub depletion_day_min: Option<u32>,
    /// Median day of depletion over the seeds that ran dry.
    pub depletion_day_p50: Option<u32>,
    /// Served shares per tier.
    pub tiers: Vec<TierShare>,
    /// Served shares over all tiers: free, partial, gated.
    pub all: [f64; 3],
    /// Mean sats absorbed per seed.
    pub absorbed_sats_mean: u64,
    /// Mean sats paid on invoices per seed.
    pub paid_sats_mean: u64,
    /// Mean sats credited to the pool per seed.
    pub credited_sats_mean: u64,
    /// Mean overrun per seed (paid outside the pool).
    pub overrun_sats_mean: u64,
    /// Mean of each seed's largest outstanding reservations.
    pub reserved_peak_sats_mean: u64,
    /// Median over seeds of the mean end-of-day reservations.
    pub reserved_eod_sats_p50: u64,
    /// Mean stale partial offers per seed.
    pub stale_offers_mean: u64,
    /// Invariant violations over all seeds (must be 0).
    pub violations: u64,
    /// The first violation seen, if any.
    pub first_violation: Option<String>,
}

/// Everything `plan` and `merge` write with `--json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanOutput {
    /// [`FORMAT`].
    pub format: String,
    /// The base scenario, resolved.
    pub scenario: PlanScenario,
    /// The sweep axes.
    pub sweep: Vec<Axis>,
    /// The grid.
    pub configs: Vec<ConfigInfo>,
    /// The shard this output covers; `None` for all of the work.
    pub shard: Option<Shard>,
    /// One summary per configuration (of the runs present).
    pub summaries: Vec<Summary>,
    /// Every run, sorted by `(config, seed)`.
    pub runs: Vec<SeedResult>,
}

/// End-of-day pool balance over seeds, per day (day 1 first): the 5th, 50th and 95th
/// percentiles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolBand {
    /// 5th percentile, sats.
    pub p5: Vec<u64>,
    /// Median, sats.
    pub p50: Vec<u64>,
    /// 95th percentile, sats.
    pub p95: Vec<u64>,
}

impl PoolBand {
    /// The band of runs' end-of-day balances. A run shorter than the longest (one the solver
    /// stopped on the day its pool ran dry) counts as 0 sats on the days after it stopped.
    pub fn of<'a>(pools: impl IntoIterator<Item = &'a [u64]>) -> PoolBand {
        let pools: Vec<&[u64]> = pools.into_iter().collect();
        let days = pools.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut band = PoolBand::default();
        let mut col = Vec::with_capacity(pools.len());
        for d in 0..days {
            col.clear();
            col.extend(pools.iter().map(|p| p.get(d).copied().unwrap_or(0)));
            col.sort_unstable();
            band.p5.push(pct(&col, 5));
            band.p50.push(pct(&col, 50));
            band.p95.push(pct(&col, 95));
        }
        band
    }
}

/// Nearest-rank percentile of sorted values.
fn pct<T: Copy>(sorted: &[T], p: u32) -> T {
    let n = sorted.len();
    let rank = (n * p as usize).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn mean(values: impl Iterator<Item = u64>, n: u64) -> u64 {
    let sum: u128 = values.map(u128::from).sum();
    (sum / u128::from(n.max(1))) as u64
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The summary of one configuration's runs (sorted by seed).
pub fn summarize(config: &ConfigInfo, runs: &[&SeedResult]) -> Summary {
    let n = runs.len() as u64;
    let PoolBand { p5, p50, p95 } = PoolBand::of(runs.iter().map(|r| r.pool_by_day.as_slice()));
    let mut depleted: Vec<u32> = runs.iter().filter_map(|r| r.depleted_day).collect();
    depleted.sort_unstable();
    let mut served = [[0u64; 3]; 4];
    for r in runs {
        for (sum, one) in served.iter_mut().flatten().zip(r.served.iter().flatten()) {
            *sum += one;
        }
    }
    let tiers = Tier::ALL
        .iter()
        .map(|&tier| {
            let s = served[tier.index()];
            let total: u64 = s.iter().sum();
            TierShare {
                tier,
                requests: total,
                free: share(s[FREE], total),
                partial: share(s[PARTIAL], total),
                gated: share(s[GATED], total),
            }
        })
        .collect();
    let all_total: u64 = served.iter().flatten().sum();
    let all = [FREE, PARTIAL, GATED].map(|k| share(served.iter().map(|s| s[k]).sum(), all_total));
    let mut eod: Vec<u64> =
        runs.iter().map(|r| mean(r.reserved_by_day.iter().copied(), r.reserved_by_day.len() as u64)).collect();
    eod.sort_unstable();
    Summary {
        config: config.index,
        label: config.label.clone(),
        seeds: n,
        requests_mean: mean(runs.iter().map(|r| r.requests()), n),
        pool_p5: p5,
        pool_p50: p50,
        pool_p95: p95,
        depletion_probability: share(depleted.len() as u64, n),
        depletion_day_min: depleted.first().copied(),
        depletion_day_p50: (!depleted.is_empty()).then(|| pct(&depleted, 50)),
        tiers,
        all,
        absorbed_sats_mean: mean(runs.iter().map(|r| r.absorbed_sats), n),
        paid_sats_mean: mean(runs.iter().map(|r| r.paid_sats), n),
        credited_sats_mean: mean(runs.iter().map(|r| r.credited_sats), n),
        overrun_sats_mean: mean(runs.iter().map(|r| r.overrun_sats), n),
        reserved_peak_sats_mean: mean(runs.iter().map(|r| r.reserved_peak_sats), n),
        reserved_eod_sats_p50: if eod.is_empty() { 0 } else { pct(&eod, 50) },
        stale_offers_mean: mean(runs.iter().map(|r| r.stale_offers), n),
        violations: runs.iter().map(|r| r.violations).sum(),
        first_violation: runs.iter().find_map(|r| r.first_violation.clone()),
    }
}

/// Summaries of every configuration from runs sorted by `(config, seed)`.
pub fn summarize_all(configs: &[ConfigInfo], runs: &[SeedResult]) -> Vec<Summary> {
    configs
        .iter()
        .map(|c| {
            let mine: Vec<&SeedResult> = runs.iter().filter(|r| r.config == c.index).collect();
            summarize(c, &mine)
        })
        .collect()
}

/// `12,345` style thousands.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn pct_str(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

/// The terminal table.
pub fn table(out: &PlanOutput) -> String {
    let s = &out.scenario;
    let mut t = String::new();
    let name = if s.name.is_empty() { "plan" } else { &s.name };
    let _ = writeln!(
        t,
        "{name}: {} day(s), {} seed(s) per configuration, {} configuration(s)",
        s.days,
        s.seeds,
        out.configs.len()
    );
    let last = s.days;
    let label_w = out.summaries.iter().map(|x| x.label.len()).max().unwrap_or(4).max(6);
    let _ = writeln!(
        t,
        "{:<label_w$}  {:>7}  {:>6}  {:>28}  {:>16}  {:>12}  {:>12}  {:>10}  {:>5}",
        "config",
        "P(dry)",
        "dry@",
        format!("pool day {last} p5/p50/p95"),
        "free/part/gate %",
        "absorbed",
        "paid",
        "credited",
        "viol"
    );
    for x in &out.summaries {
        let d = x.pool_p50.len().saturating_sub(1);
        let band = match (x.pool_p5.get(d), x.pool_p50.get(d), x.pool_p95.get(d)) {
            (Some(a), Some(b), Some(c)) => format!("{}/{}/{}", thousands(*a), thousands(*b), thousands(*c)),
            _ => "-".to_owned(),
        };
        let dry = x.depletion_day_p50.map_or("-".to_owned(), |d| format!("d{d}"));
        let served = format!("{}/{}/{}", pct_str(x.all[0]), pct_str(x.all[1]), pct_str(x.all[2]));
        let _ = writeln!(
            t,
            "{:<label_w$}  {:>6.1}%  {:>6}  {:>28}  {:>16}  {:>12}  {:>12}  {:>10}  {:>5}",
            x.label,
            x.depletion_probability * 100.0,
            dry,
            band,
            served,
            thousands(x.absorbed_sats_mean),
            thousands(x.paid_sats_mean),
            thousands(x.credited_sats_mean),
            x.violations
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "{:<label_w$}  {:>18}  {:>18}  {:>18}  {:>18}  {:>12}",
        "served by tier", "new f/p/g %", "established", "trusted", "elite", "peak locked"
    );
    for x in &out.summaries {
        let cells: Vec<String> = x
            .tiers
            .iter()
            .map(|ts| {
                if ts.requests == 0 {
                    "-".to_owned()
                } else {
                    format!("{}/{}/{}", pct_str(ts.free), pct_str(ts.partial), pct_str(ts.gated))
                }
            })
            .collect();
        let _ = writeln!(
            t,
            "{:<label_w$}  {:>18}  {:>18}  {:>18}  {:>18}  {:>12}",
            x.label,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            thousands(x.reserved_peak_sats_mean)
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "P(dry): share of seeds in which a request was gated because the pool was empty; dry@: median day it first happened."
    );
    let _ = writeln!(t, "amounts are means per seed over {} day(s); viol: invariant violations (must be 0).", s.days);
    t
}

/// CSV: one row per configuration.
pub fn csv(out: &PlanOutput) -> String {
    let mut t = String::new();
    let mut head = vec!["config".to_owned(), "label".to_owned()];
    head.extend(out.sweep.iter().map(|a| a.key.clone()));
    head.extend(
        [
            "seeds",
            "requests_mean",
            "pool_final_p5",
            "pool_final_p50",
            "pool_final_p95",
            "depletion_probability",
            "depletion_day_min",
            "depletion_day_p50",
            "free_share",
            "partial_share",
            "gated_share",
        ]
        .map(str::to_owned),
    );
    for tier in Tier::ALL {
        for k in ["free", "partial", "gated"] {
            head.push(format!("{tier}_{k}_share"));
        }
    }
    head.extend(
        [
            "absorbed_sats_mean",
            "paid_sats_mean",
            "credited_sats_mean",
            "overrun_sats_mean",
            "reserved_peak_sats_mean",
            "reserved_eod_sats_p50",
            "violations",
        ]
        .map(str::to_owned),
    );
    let _ = writeln!(t, "{}", head.join(","));
    for (x, c) in out.summaries.iter().zip(&out.configs) {
        let last = |v: &Vec<u64>| v.last().map_or(String::new(), u64::to_string);
        let opt = |v: Option<u32>| v.map_or(String::new(), |d| d.to_string());
        let mut row = vec![x.config.to_string(), format!("\"{}\"", x.label)];
        row.extend(c.at.iter().zip(&out.sweep).map(|(i, a)| a.values[*i].clone()));
        row.extend([
            x.seeds.to_string(),
            x.requests_mean.to_string(),
            last(&x.pool_p5),
            last(&x.pool_p50),
            last(&x.pool_p95),
            format!("{}", x.depletion_probability),
            opt(x.depletion_day_min),
            opt(x.depletion_day_p50),
            format!("{}", x.all[0]),
            format!("{}", x.all[1]),
            format!("{}", x.all[2]),
        ]);
        for ts in &x.tiers {
            row.extend([ts.free, ts.partial, ts.gated].map(|v| format!("{v}")));
        }
        row.extend(
            [
                x.absorbed_sats_mean,
                x.paid_sats_mean,
                x.credited_sats_mean,
                x.overrun_sats_mean,
                x.reserved_peak_sats_mean,
                x.reserved_eod_sats_p50,
                x.violations,
            ]
            .map(|v| v.to_string()),
        );
        let _ = writeln!(t, "{}", row.join(","));
    }
    t
}
