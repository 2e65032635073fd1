//! Whether the tiers of a history differ in what the planner's model draws alike for every
//! tier: how often a user comes, how many requests a day they come, and how large the
//! estimates are.
//!
//! The model has one distribution of requests per user per day and one of estimates for all
//! tiers, so a history whose trusted users ask for twice what new users do is planned as if
//! every user asked for the average: the plan then understates what the busier tier costs
//! (its free sats, its invoices, the pool's draw through its budget) and overstates the other.
//! The fit cannot change the model; it measures the difference and says so.
//!
//! Each quantity is tested across tiers (Kruskal-Wallis on the requests of each active
//! user-day and on the estimates, a chi-square test on the days active), with its effect size;
//! the difference is "clear" when a test finds it (p < [`P_CLEAR`]) and it is large enough to
//! matter for a plan: a tier's estimated sats per user-day at least [`RATIO_CLEAR`] times, or
//! at most its inverse, what the model draws for every tier.

use std::collections::BTreeMap;

use ledger_core::Tier;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{fmt_p, Estimate, UserDay};
use crate::history::HistoryRow;

/// The p-value under which a test's difference counts.
pub const P_CLEAR: f64 = 0.001;

/// How far a tier's estimated sats per user-day must be from the model's (as a ratio) for the
/// difference to matter.
pub const RATIO_CLEAR: f64 = 1.25;

/// The fewest active user-days a tier needs for its ratio to count.
const MIN_DAYS: u64 = 30;

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
    /// Per tier ([`Tier::ALL`] order), those with requests.
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
        let model = all_share.unwrap_or(1.0)
            * if all_per_day.is_empty() { 0.0 } else { mean(&all_per_day).0 }
            * mean(&all_estimates).0;
        let tiers = std::array::from_fn(|t| {
            let (mean_estimate, requests) = mean(&estimates[t]);
            (requests > 0 && !per_day[t].is_empty()).then(|| {
                let (requests_per_active_day, active) = mean(&per_day[t]);
                let active_share = shares[t].map(|q| q.value);
                let own = active_share.or(all_share).unwrap_or(1.0) * requests_per_active_day * mean_estimate;
                TierFigures {
                    active_share,
                    requests_per_active_day,
                    active_days: active,
                    mean_estimate,
                    requests,
                    ratio: own / model,
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

    /// Whether the tiers clearly differ: a test below [`P_CLEAR`], and a tier with at least
    /// 30 active user-days whose estimated sats per user-day are [`RATIO_CLEAR`] times the
    /// model's or more, or as much less.
    pub fn clear(&self) -> bool {
        let tested = [self.requests, self.estimates, self.activity].iter().flatten().any(|t| t.p < P_CLEAR);
        let far = self
            .tiers
            .iter()
            .flatten()
            .any(|f| f.active_days >= MIN_DAYS && (f.ratio >= RATIO_CLEAR || f.ratio <= 1.0 / RATIO_CLEAR));
        tested && far
    }

    /// The warning, when the tiers clearly differ.
    pub fn warning(&self) -> Option<String> {
        if !self.clear() {
            return None;
        }
        let mut by_tier = Vec::new();
        for (t, f) in self.tiers.iter().enumerate() {
            let Some(f) = f else { continue };
            let share = f.active_share.map_or("a share not measured".to_owned(), |q| format!("{:.0} %", q * 100.0));
            by_tier.push(format!(
                "{}: active on {share} of days, {:.2} requests on a day active, estimates of {:.1} sats on \
                 average: {:.2} times the estimated sats per user-day the plan draws",
                Tier::ALL[t],
                f.requests_per_active_day,
                f.mean_estimate,
                f.ratio
            ));
        }
        let test = |what: &str, t: Option<Test>, effect: &str| {
            t.map(|t| format!("{what} (p {}, {effect} {:.3})", p_words(t.p), t.effect))
        };
        let tests: Vec<String> = [
            test("requests per active user-day by Kruskal-Wallis", self.requests, "epsilon-squared"),
            test("estimates by Kruskal-Wallis", self.estimates, "epsilon-squared"),
            test("days active by chi-square", self.activity, "Cramer's V"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let counted: Vec<(Tier, f64)> = self
            .tiers
            .iter()
            .enumerate()
            .filter_map(|(t, f)| f.filter(|f| f.active_days >= MIN_DAYS).map(|f| (Tier::ALL[t], f.ratio)))
            .collect();
        let names = |keep: &dyn Fn(f64) -> bool| {
            counted
                .iter()
                .filter(|(_, r)| keep(*r))
                .map(|(t, r)| format!("{t} users ({r:.2} times what it draws for them)"))
                .collect::<Vec<_>>()
        };
        let (under, over) = (names(&|r| r >= RATIO_CLEAR), names(&|r| r <= 1.0 / RATIO_CLEAR));
        let mut meaning = String::new();
        if !under.is_empty() {
            meaning += &format!(
                " The plan understates what {} ask for: their free sats, partial offers and invoices, and the \
                 pool's draw through their budget, are planned too low.",
                under.join(" and ")
            );
        }
        if !over.is_empty() {
            meaning += &format!(" It overstates what {} ask for, the same way.", over.join(" and "));
        }
        Some(format!(
            "WARNING: the tiers differ, and the planner's model draws requests per user per day and estimates \
             from one distribution for every tier (what this scenario holds: the average over all). By tier: {}. \
             Tested across tiers: {}.{meaning} To see a tier's own figures, fit a history of its rows alone.",
            by_tier.join("; "),
            tests.join("; ")
        ))
    }
}

fn p_words(p: f64) -> String {
    let p = fmt_p(p);
    if p.starts_with('<') {
        p
    } else {
        format!("= {p}")
    }
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
