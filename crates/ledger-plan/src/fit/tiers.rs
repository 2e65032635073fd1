//! Whether the tiers of a history differ in what a scenario draws alike for every tier unless
//! told otherwise: how often a user comes, how many requests a day they come, and how large the
//! estimates are.
//!
//! A scenario can give each tier its own distribution of requests per user per day
//! (`requests.per_user_per_day_by_tier`) and of estimates (`cost.estimate_sats_by_tier`), and
//! the fit gives one to each tier when the tiers differ in it
//! ([`TierContrast::requests_differ`], [`TierContrast::estimates_differ`]). Planned with one
//! distribution for all, a history whose trusted users ask for more, or larger, requests than
//! new users do would be planned as if every user were the average: the plan would understate
//! what the busier or costlier tier takes (its free sats, its invoices, the pool's draw through
//! its budget) and overstate the other.
//!
//! Each quantity is tested across tiers (Kruskal-Wallis on the requests of each active
//! user-day and on the estimates, a chi-square test on the days active), with its effect size;
//! the difference is "clear" when a test finds it (p < [`P_CLEAR`]) and it is large enough to
//! matter for a plan: a tier's requests per user-day, or its mean estimate, at least
//! [`RATIO_CLEAR`] times, or at most its inverse, that of all tiers.

use std::collections::BTreeMap;

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{Estimate, UserDay};
use crate::history::HistoryRow;

/// The p-value under which a test's difference counts.
pub const P_CLEAR: f64 = 0.001;

/// How far a tier's estimated sats per user-day must be from the model's (as a ratio) for the
/// difference to matter.
pub const RATIO_CLEAR: f64 = 1.25;

/// The fewest active user-days a tier needs for its ratio to count, and for a distribution of
/// requests per user per day of its own.
pub const MIN_DAYS: u64 = 30;

/// The fewest requests a tier needs for its ratio of estimates to count, and for a
/// distribution of estimates of its own.
pub const MIN_REQUESTS: u64 = 100;

/// What one tier shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TierFigures {
    /// Its share of user-days with a request (after each user's first).
    pub active_share: Option<f64>,
    /// Mean requests on a day with at least one.
    pub requests_per_active_day: f64,
    /// Its active user-days.
    pub active_days: u64,
    /// Mean estimate, sats.
    pub mean_estimate: f64,
    /// Its requests.
    pub requests: u64,
    /// Its estimated sats per user-day over what the model draws for every tier.
    pub ratio: f64,
    /// Its requests per user-day over those of all tiers (`ratio` is this times
    /// `estimate_ratio`).
    pub traffic_ratio: f64,
    /// Its mean estimate over that of all tiers.
    pub estimate_ratio: f64,
}

/// A test across tiers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Test {
    /// The statistic (Kruskal-Wallis H, or the chi-square statistic).
    pub statistic: f64,
    /// Its p-value.
    pub p: f64,
    /// The effect size: epsilon-squared (H / (n - 1)) for Kruskal-Wallis, Cramer's V for the
    /// chi-square test.
    pub effect: f64,
}

/// How the tiers compare.
#[derive(Clone, Debug, PartialEq)]
pub struct TierContrast {
    /// Per tier ([`ledger_core::Tier::ALL`] order), those with requests.
    pub tiers: [Option<TierFigures>; 4],
    /// Requests per active user-day across tiers.
    pub requests: Option<Test>,
    /// Estimates across tiers.
    pub estimates: Option<Test>,
    /// Days active across tiers.
    pub activity: Option<Test>,
}

impl TierContrast {
    /// Measures the tiers of `rows`, from the users' days (`users`, the days `left_out` marks
    /// not counted) and each tier's measured share of days active (`shares`, with its
    /// active user-days `active_days`).
    pub(super) fn of(
        rows: &[HistoryRow],
        users: &[Vec<UserDay>],
        left_out: &[bool],
        shares: &[Option<Estimate>; 4],
        active_days: &[u64; 4],
    ) -> TierContrast {
        let mut per_day: [BTreeMap<u64, u64>; 4] = Default::default();
        for d in users.iter().flatten().filter(|d| !left_out[d.0 as usize]) {
            *per_day[d.2.index()].entry(d.1).or_default() += 1;
        }
        let mut estimates: [BTreeMap<u64, u64>; 4] = Default::default();
        for r in rows {
            *estimates[r.tier.index()].entry(r.estimate_sats).or_default() += 1;
        }
        let mean = |h: &BTreeMap<u64, u64>| {
            let n: u64 = h.values().sum();
            (h.iter().map(|(k, c)| *k as f64 * *c as f64).sum::<f64>() / n as f64, n)
        };
        let pooled = |hs: &[BTreeMap<u64, u64>; 4]| {
            let mut all = BTreeMap::new();
            for (k, c) in hs.iter().flatten() {
                *all.entry(*k).or_insert(0) += c;
            }
            all
        };
        let (all_per_day, all_estimates) = (pooled(&per_day), pooled(&estimates));
        let all_share = {
            let n: u64 = shares.iter().flatten().map(|q| q.n).sum();
            let k: f64 = shares.iter().flatten().map(|q| q.value * q.n as f64).sum();
            (n > 0).then(|| k / n as f64)
        };
        let model_traffic = all_share.unwrap_or(1.0) * if all_per_day.is_empty() { 0.0 } else { mean(&all_per_day).0 };
        let model_estimate = mean(&all_estimates).0;
        let model = model_traffic * model_estimate;
        let tiers = std::array::from_fn(|t| {
            let (mean_estimate, requests) = mean(&estimates[t]);
            (requests > 0 && !per_day[t].is_empty()).then(|| {
                let (requests_per_active_day, active) = mean(&per_day[t]);
                let active_share = shares[t].map(|q| q.value);
                let traffic = active_share.or(all_share).unwrap_or(1.0) * requests_per_active_day;
                let own = traffic * mean_estimate;
                TierFigures {
                    active_share,
                    requests_per_active_day,
                    active_days: active,
                    mean_estimate,
                    requests,
                    ratio: own / model,
                    traffic_ratio: traffic / model_traffic,
                    estimate_ratio: mean_estimate / model_estimate,
                }
            })
        });
        let activity: Vec<(u64, u64)> = (0..4)
            .filter_map(|t| shares[t].map(|q| (active_days[t].min(q.n), q.n - active_days[t].min(q.n))))
            .filter(|(a, n)| a + n > 0)
            .collect();
        TierContrast {
            tiers,
            requests: kruskal_wallis(&per_day),
            estimates: kruskal_wallis(&estimates),
            activity: chi_square_2xk(&activity),
        }
    }

    /// Whether the tiers clearly differ in requests per user-day (how often their users come,
    /// or how much on a day they do): a test of either below [`P_CLEAR`], and a tier with at
    /// least [`MIN_DAYS`] active user-days whose requests per user-day are [`RATIO_CLEAR`]
    /// times those of all tiers or more, or as much less. The fit then gives each such tier a
    /// distribution of its own (`requests.per_user_per_day_by_tier`).
    pub fn requests_differ(&self) -> bool {
        let tested = [self.requests, self.activity].iter().flatten().any(|t| t.p < P_CLEAR);
        tested && self.tiers.iter().flatten().any(|f| f.active_days >= MIN_DAYS && far(f.traffic_ratio))
    }

    /// Whether the tiers clearly differ in their estimates: the Kruskal-Wallis test of them
    /// below [`P_CLEAR`], and a tier with at least [`MIN_REQUESTS`] requests whose mean
    /// estimate is [`RATIO_CLEAR`] times that of all tiers or more, or as much less. The fit
    /// then gives each tier with at least [`MIN_REQUESTS`] requests a distribution of its own
    /// (`cost.estimate_sats_by_tier`).
    pub fn estimates_differ(&self) -> bool {
        self.estimates.is_some_and(|t| t.p < P_CLEAR)
            && self.tiers.iter().flatten().any(|f| f.requests >= MIN_REQUESTS && far(f.estimate_ratio))
    }
}

/// Whether a ratio to all tiers is far enough from 1 to matter for a plan.
fn far(ratio: f64) -> bool {
    ratio >= RATIO_CLEAR || ratio <= 1.0 / RATIO_CLEAR
}

/// The Kruskal-Wallis test of groups given as histograms (value, count), ties given their
/// mean rank and the statistic corrected for them; `None` with fewer than two non-empty
/// groups or no spread at all.
fn kruskal_wallis(groups: &[BTreeMap<u64, u64>]) -> Option<Test> {
    let groups: Vec<&BTreeMap<u64, u64>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.len() < 2 {
        return None;
    }
    let mut all: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, c) in groups.iter().copied().flatten() {
        *all.entry(*k).or_insert(0) += c;
    }
    let n: f64 = all.values().map(|c| *c as f64).sum();
    let (mut below, mut ties) = (0.0, 0.0);
    let mut rank = BTreeMap::new();
    for (k, c) in &all {
        let c = *c as f64;
        rank.insert(*k, below + (c + 1.0) / 2.0);
        below += c;
        ties += c * c * c - c;
    }
    let correction = 1.0 - ties / (n * n * n - n);
    if correction <= 0.0 {
        return None;
    }
    let sum: f64 = groups
        .iter()
        .map(|g| {
            let size: f64 = g.values().map(|c| *c as f64).sum();
            let ranks: f64 = g.iter().map(|(k, c)| rank[k] * *c as f64).sum();
            ranks * ranks / size
        })
        .sum();
    let h = (12.0 / (n * (n + 1.0)) * sum - 3.0 * (n + 1.0)) / correction;
    let df = groups.len() as f64 - 1.0;
    let p = ChiSquared::new(df).expect("df >= 1").sf(h.max(0.0));
    Some(Test { statistic: h, p, effect: h / (n - 1.0) })
}

/// The chi-square test of a 2 x k table (successes, failures per group), with Cramer's V.
fn chi_square_2xk(table: &[(u64, u64)]) -> Option<Test> {
    if table.len() < 2 {
        return None;
    }
    let (a, b): (f64, f64) = table.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + *x as f64, b + *y as f64));
    let n = a + b;
    if a == 0.0 || b == 0.0 {
        return None;
    }
    let stat: f64 = table
        .iter()
        .map(|(x, y)| {
            let row = (*x + *y) as f64;
            let (ea, eb) = (row * a / n, row * b / n);
            (*x as f64 - ea).powi(2) / ea + (*y as f64 - eb).powi(2) / eb
        })
        .sum();
    let df = table.len() as f64 - 1.0;
    Some(Test { statistic: stat, p: ChiSquared::new(df).expect("df >= 1").sf(stat), effect: (stat / n).sqrt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups [1, 2, 2, 3] and [3, 4, 5, 5, 6], worked by hand from the textbook formula: rank
    /// sums 10.5 and 34.5, H = 5.415 / (1 - 18 / 720) = 5.5538... (three pairs of ties), and
    /// p = erfc(sqrt(H / 2)) = 0.01844... on one degree of freedom.
    #[test]
    fn kruskal_wallis_agrees_with_the_worked_example() {
        let g = |v: &[u64]| {
            let mut h = BTreeMap::new();
            for x in v {
                *h.entry(*x).or_insert(0) += 1;
            }
            h
        };
        let t = kruskal_wallis(&[g(&[1, 2, 2, 3]), g(&[3, 4, 5, 5, 6])]).unwrap();
        assert!((t.statistic - 5.553_846_153_846_153).abs() < 1e-9, "{t:?}");
        assert!((t.p - 0.018_440_123_937_691_47).abs() < 1e-9, "{t:?}");
        // Every value alike: no test.
        assert!(kruskal_wallis(&[g(&[2, 2]), g(&[2])]).is_none());
    }

    /// The table [[10, 20], [30, 10]] worked by hand: expected [[17.14, 12.86], [22.86, 17.14]],
    /// statistic 12.1527..., p = erfc(sqrt(12.1527... / 2)) on one degree of freedom.
    #[test]
    fn chi_square_agrees_with_the_worked_example() {
        let t = chi_square_2xk(&[(10, 20), (30, 10)]).unwrap();
        assert!((t.statistic - 12.152_777_777_777_775).abs() < 1e-9, "{t:?}");
        assert!((t.p - 0.000_490_148_087_892_416_3).abs() < 1e-9, "{t:?}");
    }
}
