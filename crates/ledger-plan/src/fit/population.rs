//! The population and its growth, fitted from every day of a history, and the days the
//! history lacks.
//!
//! A user is seen only on the days they make a request, so the users there are is the users
//! active on a day divided by the share of days a user is active. Both are measured from every
//! day the history has, not from its first day alone, whose weekday would set the answer
//! (Mondays are busier than Sundays), and per tier, since tiers differ in how often their
//! users come:
//!
//! - each tier's share of user-days with a request, over the days after each user's first,
//!   the days weighed by the weekly cycle (see [`active_shares`]);
//! - the users each day shows (each tier's active users over its share), fitted by a
//!   quasi-Poisson log-linear regression on the day (growth) and, over at least two of each
//!   day of the week, the UTC day of the week; the level at day 0 is the mean over the week's
//!   days, since the planner draws every day alike. Growth is the slope: the population's,
//!   which can differ from the active users' when tiers more active than others grow faster;
//! - the users at day 0 split into tiers as the first day's users are ([`split`]).
//!
//! Standard errors are the regression's (its dispersion estimated from the days), the
//! shares' (clustered by user, so that users more active than others are read as such, and
//! moved one at a time to see what they move), and the first day's mix (binomial).
//!
//! A day within the history's range without any request is read as a day the export lacks,
//! not as a day on which nobody asked for anything: it is left out of these measures and of
//! the requests per user per day. So is a day with far fewer requests than the days around it
//! ([`LOW_DAY_SHARE`]), which is what an export that lost part of a day looks like.

use ledger_core::{Tier, DAY_MS};

use super::Estimate;

/// A day with fewer requests than this share of the median of the days around it is
/// [`Gaps::low`] when those days have at least [`LOW_DAY_MIN_MEDIAN`] requests: a weekend
/// day of a service 35 % quieter at weekends is well above it, a day half of whose hours
/// an export lost is below.
pub const LOW_DAY_SHARE: f64 = 0.25;

/// The fewest requests the days around a day must have (their median) for the day to be
/// judged low: a Poisson count of mean 40 falls below 10 with probability 2e-9, so a day
/// flagged is no chance quiet day of a small service.
pub const LOW_DAY_MIN_MEDIAN: f64 = 40.0;

/// The fewest active user-days (after each user's first) a tier needs for its own share of
/// days active: with fewer, it takes the share of all tiers. A tier seen on one later day out
/// of a hundred would otherwise have a hundred times the users it shows, on one observation.
pub const MIN_ACTIVE_DAYS: u64 = 10;

/// Days on each side of a day that it is compared with.
const AROUND: u32 = 7;

/// Days the history lacks or holds only part of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gaps {
    /// Days (from day 0) without any request, inside the history's range.
    pub missing: Vec<u32>,
    /// Days with requests, but far fewer than the days around them.
    pub low: Vec<LowDay>,
    /// The median requests of a day, over the days with any.
    pub median_requests: f64,
}

/// A day with far fewer requests than the days around it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LowDay {
    /// The day, from day 0.
    pub day: u32,
    /// Its requests.
    pub requests: u64,
    /// The median requests of the days around it.
    pub around: f64,
}

impl Gaps {
    /// The days with no request and those far below the days around them, from the requests of
    /// each day.
    pub fn of(requests_by_day: &[u64]) -> Gaps {
        let n_days = requests_by_day.len() as u32;
        let missing: Vec<u32> = (0..n_days).filter(|&d| requests_by_day[d as usize] == 0).collect();
        let mut low = Vec::new();
        for d in 0..n_days {
            let requests = requests_by_day[d as usize];
            if requests == 0 {
                continue;
            }
            let around: Vec<u64> = (d.saturating_sub(AROUND)..(d + AROUND + 1).min(n_days))
                .filter(|&e| e != d)
                .map(|e| requests_by_day[e as usize])
                .filter(|&k| k > 0)
                .collect();
            if around.len() < 4 {
                continue;
            }
            let around = median(around);
            if around >= LOW_DAY_MIN_MEDIAN && (requests as f64) < LOW_DAY_SHARE * around {
                low.push(LowDay { day: d, requests, around });
            }
        }
        let median_requests = median(requests_by_day.iter().copied().filter(|&k| k > 0).collect());
        Gaps { missing, low, median_requests }
    }

    /// Whether each day is left out of the per-day measures: missing, or low.
    pub fn left_out(&self, n_days: u32) -> Vec<bool> {
        let mut out = vec![false; n_days as usize];
        for d in self.missing.iter().copied().chain(self.low.iter().map(|l| l.day)) {
            out[d as usize] = true;
        }
        out
    }
}

fn median(mut v: Vec<u64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m] as f64
    } else {
        (v[m - 1] + v[m]) as f64 / 2.0
    }
}

/// The UTC day of the week of the day beginning at `day_ms`, Monday 0 to Sunday 6.
pub(super) fn weekday(day_ms: u64) -> usize {
    // 1970-01-01 was a Thursday.
    ((day_ms / DAY_MS + 3) % 7) as usize
}

/// Names of the days of the week, Monday first.
pub(super) const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// What the population fit found.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PopulationFit {
    /// Users per tier at day 0 ([`Tier::ALL`] order).
    pub users: [Estimate; 4],
    /// Users at day 0, all tiers.
    pub total: Estimate,
    /// Active users per tier on the day the tiers are split by (the first day fitted).
    pub active_first_day: [u64; 4],
    /// The day the tiers are split by: the first day fitted.
    pub first_day: u32,
    /// Each tier's share of user-days with a request, as used (`None`: the tier has fewer
    /// than [`MIN_ACTIVE_DAYS`] active user-days after its users' first, and took the share
    /// of all tiers).
    pub active_share: [Option<Estimate>; 4],
    /// Each tier's share as measured, however few its days.
    pub measured_share: [Option<Estimate>; 4],
    /// Each tier's active user-days after its users' first.
    pub active_days: [u64; 4],
    /// Growth, percent per day.
    pub growth_pct_per_day: Option<Estimate>,
    /// Active users on each day of the week against the week's mean, Monday first, when the
    /// history covers every day of the week at least twice.
    pub weekly: Option<[f64; 7]>,
    /// The days the fit was made on.
    pub days_fitted: u32,
}

/// A user's day: the day, its requests, and the tier of its first request and of its last.
pub(super) type UserDay = (u32, u64, Tier, Tier);

/// Fits the population to the users' days (each user's days in order, as
/// [`super::UserDays`] holds them) over `n_days` days from `start_ms`, leaving out the days
/// `left_out` marks.
pub(super) fn fit(users: &[Vec<UserDay>], n_days: u32, start_ms: u64, left_out: &[bool]) -> PopulationFit {
    let mut active = vec![[0u64; 4]; n_days as usize];
    for user in users {
        for d in user {
            active[d.0 as usize][d.2.index()] += 1;
        }
    }
    let fitted_days: Vec<u32> = (0..n_days).filter(|&d| !left_out[d as usize]).collect();
    let first_day = fitted_days[0];
    let weekday_of = |d: u32| weekday(start_ms + u64::from(d) * DAY_MS);
    let mut seen_weekdays = [0u32; 7];
    for &d in &fitted_days {
        seen_weekdays[weekday_of(d)] += 1;
    }
    let with_weekdays = seen_weekdays.iter().all(|&k| k >= 2);
    let with_slope = fitted_days.len() >= 3;
    let regress = |y: &dyn Fn(usize) -> f64| {
        let obs: Vec<Observation> = fitted_days
            .iter()
            .map(|&d| {
                let mut x = vec![1.0];
                if with_slope {
                    x.push(f64::from(d));
                }
                if with_weekdays {
                    // Monday is the reference; Tuesday to Sunday each a column.
                    x.extend((1..7).map(|w| if weekday_of(d) == w { 1.0 } else { 0.0 }));
                }
                Observation { y: y(d as usize), x }
            })
            .collect();
        quasi_poisson(&obs)
    };
    // The weekly cycle, from the active users of every tier (every user is busier on some
    // days of the week, whatever their tier), weighs the days in the tiers' shares.
    let cycle = regress(&|d| active[d].iter().sum::<u64>() as f64);
    let weekly = match &cycle {
        Some(r) if with_weekdays => r.weekly(),
        _ => [1.0; 7],
    };
    let day_weight: Vec<f64> = (0..n_days).map(|d| weekly[weekday_of(d)]).collect();
    let (measured, active_days) = active_shares(users, n_days, left_out, &day_weight);
    // A tier with fewer than MIN_ACTIVE_DAYS active user-days after its users' first (none
    // at all: a share of 0, and users without end) takes the share of all tiers; with none at
    // all (one day), 1.
    let all_share = pooled(&measured);
    let active_share: [Option<Estimate>; 4] =
        std::array::from_fn(|t| measured[t].filter(|_| active_days[t] >= MIN_ACTIVE_DAYS));
    let share_of = |t: usize, shift: f64| {
        let q = active_share[t].or(all_share).map_or((1.0, 0.0), |q| (q.value, q.se));
        (q.0 + shift * q.1).max(1e-12)
    };
    // The users each day shows: each tier's active users over its share. Their trend is the
    // population's, whose growth can differ from the active users' (tiers more active than
    // others may grow faster).
    let users_on = |shifted: Option<usize>| {
        let shift = |t: usize| if shifted == Some(t) { 1.0 } else { 0.0 };
        regress(&|d| (0..4).map(|t| active[d][t] as f64 / share_of(t, shift(t))).sum())
    };
    let Some(trend) = users_on(None) else { unreachable!("the first day fitted has a request, so a user") };
    let level = trend.level(with_weekdays);
    // The shares' own errors move the level and the slope: each share one standard error up,
    // the change that makes, added in quadrature.
    let mut var_level = level.1;
    let mut var_slope = if with_slope { trend.cov[1][1] } else { 0.0 };
    for t in 0..4 {
        if let Some(r) = users_on(Some(t)) {
            var_level += (r.level(with_weekdays).0.ln() - level.0.ln()).powi(2);
            if with_slope {
                var_slope += (r.beta[1] - trend.beta[1]).powi(2);
            }
        }
    }
    let total = Estimate { value: level.0, se: level.0 * var_level.sqrt(), n: fitted_days.len() as u64 };
    let growth_pct_per_day = with_slope.then(|| {
        let g = trend.beta[1];
        Estimate { value: g.exp_m1() * 100.0, se: g.exp() * var_slope.sqrt() * 100.0, n: fitted_days.len() as u64 }
    });
    let effective: [Option<Estimate>; 4] = std::array::from_fn(|t| active_share[t].or(all_share));
    let users =
        split(total, active[first_day as usize], weekly[weekday_of(first_day)], &|t| share_of(t, 0.0), &effective);
    PopulationFit {
        users,
        total,
        measured_share: measured,
        active_days,
        active_first_day: active[first_day as usize],
        first_day,
        active_share,
        growth_pct_per_day,
        weekly: with_weekdays.then_some(weekly),
        days_fitted: fitted_days.len() as u32,
    }
}

/// The users of all tiers split into tiers as the users the first day fitted shows are: each
/// tier's active users that day over its share.
///
/// Not each tier's trend over every day: tiers drift (sign-ups join one tier, promotions and
/// decay move users between the others) along curves no trend of a few parameters follows,
/// and the errors of such a trend at day 0 came out twice its standard errors on histories of
/// the planner's own model. A day's mix is exact but for which users happened to come.
///
/// Standard errors: the total's, the share's, and the mix's, each tier's active users that
/// day binomial among its users (active with probability its share times the day's weekday
/// multiplier `on_day`).
fn split(
    total: Estimate,
    active: [u64; 4],
    on_day: f64,
    share: &dyn Fn(usize) -> f64,
    active_share: &[Option<Estimate>; 4],
) -> [Estimate; 4] {
    let seen: [f64; 4] = std::array::from_fn(|t| active[t] as f64 / share(t));
    let sum: f64 = seen.iter().sum();
    let var_seen: [f64; 4] = std::array::from_fn(|t| {
        let p = (share(t) * on_day).min(1.0);
        active[t] as f64 * (1.0 - p) / share(t).powi(2)
    });
    std::array::from_fn(|t| {
        if active[t] == 0 {
            return Estimate { value: 0.0, se: 0.0, n: 0 };
        }
        let c = seen[t] / sum;
        // d c_t / d seen_s is (1 - c_t) / sum for s = t, -c_t / sum otherwise.
        let var_c: f64 = (0..4)
            .map(|s| {
                let g = if s == t { 1.0 - c } else { -c } / sum;
                g * g * var_seen[s]
            })
            .sum();
        let rel_share = active_share[t].map_or(0.0, |q| q.se / q.value);
        let value = total.value * c;
        let rel = ((total.se / total.value).powi(2) + var_c / (c * c) + rel_share.powi(2)).sqrt();
        Estimate { value, se: value * rel, n: active[t] }
    })
}

/// Each tier's share of user-days with a request, over the days after each user's first that
/// are not left out; the standard error clustered by user (users differ in how often they
/// come).
///
/// A day is weighed by its day of the week's multiplier (`day_weight`, mean 1 over a week), so
/// that the share is the week's mean whichever days the history holds more of: a history
/// starting on a Saturday sees few users on its first weekend, and without the weights its
/// share would be weighed towards weekdays.
///
/// A user's day without a request belongs to the tier of the last request before it, unless
/// the next request is of another tier: the move came at one of the midnights between, so the
/// days between are shared half and half (counting them all in the tier before would lower its
/// share, all in the tier after, that tier's).
fn active_shares(
    users: &[Vec<UserDay>],
    n_days: u32,
    left_out: &[bool],
    day_weight: &[f64],
) -> ([Option<Estimate>; 4], [u64; 4]) {
    // Per tier: weighted user-days, active user-days, and the sums the clustered variance needs.
    let (mut days, mut active, mut count) = ([0f64; 4], [0f64; 4], [0u64; 4]);
    let (mut sum_aa, mut sum_an, mut sum_nn) = ([0f64; 4], [0f64; 4], [0f64; 4]);
    for user in users {
        let (mut n_u, mut a_u) = ([0f64; 4], [0f64; 4]);
        let mut count_in = |day: u32, tiers: (Tier, Tier), n_u: &mut [f64; 4]| {
            if left_out[day as usize] {
                return;
            }
            let w = day_weight[day as usize];
            n_u[tiers.0.index()] += w / 2.0;
            n_u[tiers.1.index()] += w / 2.0;
            count[tiers.0.index()] += 1;
        };
        for pair in user.windows(2) {
            let (before, next) = (pair[0], pair[1]);
            for day in before.0 + 1..next.0 {
                count_in(day, (before.3, next.2), &mut n_u);
            }
            if !left_out[next.0 as usize] {
                a_u[next.2.index()] += 1.0;
                count_in(next.0, (next.2, next.2), &mut n_u);
            }
        }
        let last = user[user.len() - 1];
        for day in last.0 + 1..n_days {
            count_in(day, (last.3, last.3), &mut n_u);
        }
        for t in 0..4 {
            days[t] += n_u[t];
            active[t] += a_u[t];
            sum_aa[t] += a_u[t] * a_u[t];
            sum_an[t] += a_u[t] * n_u[t];
            sum_nn[t] += n_u[t] * n_u[t];
        }
    }
    let shares = std::array::from_fn(|t| {
        (days[t] > 0.0).then(|| {
            let (n, q) = (days[t], active[t] / days[t]);
            // Ratio estimator over users: var = sum over users of (a - q n)^2 / (sum n)^2,
            // never below the binomial's (users alike).
            let clustered = (sum_aa[t] - 2.0 * q * sum_an[t] + q * q * sum_nn[t]).max(0.0) / (n * n);
            let binomial = q * (1.0 - q).max(0.0) / n;
            Estimate { value: q, se: clustered.max(binomial).sqrt(), n: count[t] }
        })
    });
    (shares, active.map(|a| a as u64))
}

/// The share of user-days with a request over every tier.
fn pooled(shares: &[Option<Estimate>; 4]) -> Option<Estimate> {
    let n: u64 = shares.iter().flatten().map(|q| q.n).sum();
    let k: f64 = shares.iter().flatten().map(|q| q.value * q.n as f64).sum();
    let se2: f64 = shares.iter().flatten().map(|q| (q.se * q.n as f64).powi(2)).sum();
    (n > 0).then(|| Estimate { value: k / n as f64, se: se2.sqrt() / n as f64, n })
}

/// One day of a regression: the count and the covariates.
struct Observation {
    y: f64,
    x: Vec<f64>,
}

/// A fitted regression: coefficients (the intercept first, then the slope when there is one,
/// then the weekday terms when there are), and their covariance, dispersion included.
struct Regression {
    beta: Vec<f64>,
    cov: Vec<Vec<f64>>,
}

impl Regression {
    /// The weekday terms as multipliers against the week's mean, Monday first.
    fn weekly(&self) -> [f64; 7] {
        let first = self.beta.len() - 6;
        let m: [f64; 7] = std::array::from_fn(|w| if w == 0 { 1.0 } else { self.beta[first + w - 1].exp() });
        let mean = m.iter().sum::<f64>() / 7.0;
        m.map(|m| m / mean)
    }

    /// The level at day 0 (the mean over the days of the week, with weekday terms) and the
    /// variance of its logarithm.
    fn level(&self, with_weekdays: bool) -> (f64, f64) {
        if !with_weekdays {
            return (self.beta[0].exp(), self.cov[0][0]);
        }
        let first = self.beta.len() - 6;
        let m: Vec<f64> = (0..6).map(|i| self.beta[first + i].exp()).collect();
        let mean = (1.0 + m.iter().sum::<f64>()) / 7.0;
        // ln(level) = b0 + ln(mean): its gradient is 1 for b0, m_i / (7 mean) for term i.
        let mut g = vec![0.0; self.beta.len()];
        g[0] = 1.0;
        for i in 0..6 {
            g[first + i] = m[i] / (7.0 * mean);
        }
        let var = (0..g.len()).map(|i| (0..g.len()).map(|j| g[i] * self.cov[i][j] * g[j]).sum::<f64>()).sum();
        (self.beta[0].exp() * mean, var)
    }
}

/// Quasi-Poisson log-linear regression, `ln E[y] = offset + x . beta`, by iteratively
/// reweighted least squares; the covariance is scaled by the Pearson dispersion (estimated
/// when at least 5 degrees of freedom remain, else 1, the Poisson's). `None` when there is
/// nothing to fit (every count 0) or the fit runs off to infinity.
fn quasi_poisson(obs: &[Observation]) -> Option<Regression> {
    let p = obs.first()?.x.len();
    let total: f64 = obs.iter().map(|o| o.y).sum();
    if total <= 0.0 || obs.len() < p {
        return None;
    }
    let mut beta = vec![0.0; p];
    beta[0] = (total / obs.len() as f64).ln();
    let eta = |beta: &[f64], o: &Observation| o.x.iter().zip(beta).map(|(x, b)| x * b).sum::<f64>();
    let mut info = vec![vec![0.0; p]; p];
    for _ in 0..100 {
        let mut rhs = vec![0.0; p];
        info = vec![vec![0.0; p]; p];
        for o in obs {
            let e = eta(&beta, o);
            let mu = e.exp();
            let z = e + (o.y - mu) / mu;
            for (i, row) in info.iter_mut().enumerate() {
                rhs[i] += mu * o.x[i] * z;
                for (cell, x) in row.iter_mut().zip(&o.x) {
                    *cell += mu * o.x[i] * x;
                }
            }
        }
        let inverse = invert(&info)?;
        let next: Vec<f64> = (0..p).map(|i| (0..p).map(|j| inverse[i][j] * rhs[j]).sum()).collect();
        if next.iter().any(|b| !b.is_finite() || b.abs() > 50.0) {
            return None;
        }
        let step = next.iter().zip(&beta).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        beta = next;
        if step < 1e-10 {
            break;
        }
    }
    let df = obs.len() - p;
    let pearson: f64 = obs
        .iter()
        .map(|o| {
            let mu = eta(&beta, o).exp();
            (o.y - mu).powi(2) / mu
        })
        .sum();
    let dispersion = if df >= 5 { pearson / df as f64 } else { 1.0 };
    let cov = invert(&info)?.into_iter().map(|row| row.into_iter().map(|v| v * dispersion).collect()).collect();
    Some(Regression { beta, cov })
}

/// The inverse of a small square matrix by Gauss-Jordan elimination with partial pivoting;
/// `None` when it is singular.
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.clone();
            r.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    let scale = m.iter().flatten().fold(0.0f64, |s, v| s.max(v.abs()));
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        // Also catches a NaN, which no comparison holds.
        if a[pivot][col].abs().partial_cmp(&(1e-12 * scale)) != Some(std::cmp::Ordering::Greater) {
            return None;
        }
        a.swap(col, pivot);
        let p = a[col][col];
        for v in a[col].iter_mut() {
            *v /= p;
        }
        let pivot_row = a[col].clone();
        for (i, row) in a.iter_mut().enumerate() {
            let f = row[col];
            if i != col && f != 0.0 {
                for (v, p) in row.iter_mut().zip(&pivot_row) {
                    *v -= f * p;
                }
            }
        }
    }
    Some(a.into_iter().map(|r| r[n..].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_are_utc() {
        // 2025-03-03 was a Monday, 2025-03-09 a Sunday.
        assert_eq!(weekday(1_740_960_000_000), 0);
        assert_eq!(weekday(1_740_960_000_000 + 6 * DAY_MS), 6);
    }

    #[test]
    fn a_regression_finds_the_rate_and_weekly_cycle_it_was_made_with() {
        // Counts exactly 100 * 1.02^d * (0.6 on Saturdays and Sundays) from a Monday.
        let obs: Vec<Observation> = (0..28)
            .map(|d| {
                let weekend = d % 7 >= 5;
                let y = 100.0 * 1.02f64.powi(d) * if weekend { 0.6 } else { 1.0 };
                let mut x = vec![1.0, f64::from(d)];
                x.extend((1..7).map(|w| if d % 7 == w { 1.0 } else { 0.0 }));
                Observation { y, x }
            })
            .collect();
        let r = quasi_poisson(&obs).unwrap();
        assert!((r.beta[0].exp() - 100.0).abs() < 1e-6, "{:?}", r.beta);
        assert!((r.beta[1].exp() - 1.02).abs() < 1e-9, "{:?}", r.beta);
        assert!((r.beta[7].exp() - 0.6).abs() < 1e-9, "{:?}", r.beta);
        assert!(r.cov[1][1] < 1e-12, "exact counts: no dispersion");
        // All zeros: nothing to fit.
        let zeros: Vec<Observation> = (0..5).map(|d| Observation { y: 0.0, x: vec![1.0, f64::from(d)] }).collect();
        assert!(quasi_poisson(&zeros).is_none());
    }

    #[test]
    fn a_missing_day_and_a_day_far_below_its_neighbours_are_found() {
        let mut by_day = vec![100u64; 20];
        by_day[5] = 0;
        by_day[9] = 20;
        by_day[12] = 60;
        let g = Gaps::of(&by_day);
        assert_eq!(g.missing, vec![5]);
        assert_eq!(g.low, vec![LowDay { day: 9, requests: 20, around: 100.0 }]);
        // A small service: a day of 2 among days of 10 is no gap to speak of.
        let g = Gaps::of(&[10, 12, 9, 2, 11, 10, 13, 9]);
        assert!(g.low.is_empty() && g.missing.is_empty());
    }
}
