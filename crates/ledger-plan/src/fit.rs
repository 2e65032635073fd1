//! `plan --fit HISTORY.csv`: a planner scenario fitted to a request history
//! ([`crate::history`]), with the quality of each fit.
//!
//! It fits what a history shows and nothing else. The history shows traffic (requests per
//! user per day, the daily cycle, sessions against jobs), costs (estimates, actual over
//! estimate, work failures), how users answer invoices, the tier mix and its drift, and
//! growth. It does not show the pool, the budgets, the credit percentage or how long work
//! and payment take: those keys are written at their defaults, marked so; but a tier's budget
//! the history shows too small (a free request above it) is raised to the largest free
//! estimate of the tier, a lower bound (`largest_free`), said beside it.
//!
//! What each key is fitted from, and the assumptions that make the fit right for the
//! planner's model (no churn, tiers move at the end of a day by at most one step):
//!
//! - `days`, `start_ms`: the UTC days from the first request's to the last's; `start_ms` is
//!   midnight (UTC) of the first, so that the hourly weights, counted from each day's start,
//!   are UTC hours.
//! - `requests.per_user_per_day`: the requests of each user on each day after the day the
//!   user is first seen (zeros included; the first day is left out because it is seen only
//!   because it has a request; so are the days the history lacks, [`Gaps`]). `fixed` when
//!   every count is equal, otherwise `poisson` (maximum likelihood: the mean), `negbinomial`
//!   when the counts vary more than a Poisson's (the mean, and the shape by maximum likelihood:
//!   see `fit_negbinomial`) or a rounded `lognormal` clamped at the largest count (maximum
//!   likelihood over the rounding bins, by Nelder-Mead), whichever has the smallest AIC;
//!   quality: a chi-square test of the binned counts. Counts above
//!   [`MAX_PER_USER_PER_DAY`] are clamped to it, said in the comment.
//! - `requests.per_user_per_day_by_tier`: when the tiers differ in it
//!   ([`TierContrast::requests_differ`]), the same fit of each tier's own user-days (a day
//!   counts in the tier of the user's first request that day, or without one, of the last
//!   before it), for each tier with enough of them.
//! - `population` and its growth: from every day, on a weekly cycle, each tier over its own
//!   share of days active (the module `population` says how and why). A history that needs
//!   more than [`MAX_POPULATION`] users this way (users seen once and never again, which a
//!   model without churn reads as users rarely active) is refused, saying so
//!   ([`FitError::TooManyUsers`]).
//! - `requests.hourly_weights`: the share of requests in each UTC hour, times 24; quality: a
//!   chi-square test that the cycle is the same every day.
//! - `cost.estimate_sats`: a rounded log-normal by maximum likelihood, clamped at the largest
//!   estimate; quality: the Kolmogorov-Smirnov distance.
//! - `cost.estimate_sats_by_tier`: when the tiers differ in their estimates
//!   ([`TierContrast::estimates_differ`]), the same fit of each tier's own requests (in the
//!   tier the row gives), for each tier with enough of them.
//! - `cost.actual_pct`: `100 * actual / estimate` of the requests whose work ran and
//!   succeeded, free or paid (not an unpaid session's: the planner records none), with an
//!   estimate of at least [`MIN_ESTIMATE_FOR_PCT`] sats (below it the
//!   rounding of the actual cost dominates); `fixed` when one percentage explains every
//!   row, otherwise `uniform` (by moments, the rounding's variance taken out) or
//!   `lognormal`, whichever is closer in Kolmogorov-Smirnov distance; a few percentages far
//!   outside the rest are left out, said in the comment ([`MAX_FAR_SHARE`]).
//! - `cost.work_failure`: the share of requests whose work ran (free, or invoice paid) with
//!   no actual cost recorded.
//! - `payment.gate_paid`, `payment.partial_paid`, `requests.session_share`: shares, with a
//!   binomial standard error (for none or all of them, where it is 0, the rule of three's 95 %
//!   bound instead).
//! - `tiers`: over pairs of consecutive days on which a user is active, the share that moved
//!   one tier up (down) from each tier. A tier no user of which is active on two consecutive
//!   days keeps its default, marked "not fitted". A tier's promotion and decay are rounded so
//!   that their sum stays at most 1, as the scenario requires (1/11 and 10/11 are written
//!   0.09091 and 0.909), said beside it.
//!
//! What the model cannot hold, the fit says at the top of the scenario ([`Fitted::warnings`]):
//! days the history lacks, wholly or in part ([`Gaps`]), counts or actual costs whose mean the
//! fitted family misses, tier moves the model cannot make ([`UnmodelledMoves`]), default
//! budgets the history contradicts, rows read twice ([`Fitted::with_repeats`]).
//!
//! Every standard error is that of the estimator at the fitted value (the inverse of the
//! observed information for maximum likelihood, the delta method otherwise).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ledger_core::{Tier, DAY_MS};
use statrs::distribution::{ChiSquared, ContinuousCDF, Discrete, DiscreteCDF, NegativeBinomial, Poisson};

use crate::history::{utc, utc_date, HistoryRow, Repeats, Served};

mod population;
mod tiers;

use crate::scenario::{
    fmt_f64, Dist, DistKind, PlanScenario, TierRates, MAX_DAYS, MAX_ESTIMATE_SATS, MAX_LOGNORMAL_SIGMA,
    MAX_PER_USER_PER_DAY, MAX_POISSON_MEAN, MAX_POPULATION, MAX_START_MS, MIN_START_MS, NEGBINOMIAL_SHAPE_RANGE,
};
pub use population::{Gaps, LowDay, LOW_DAY_MIN_MEDIAN, LOW_DAY_SHARE, MIN_ACTIVE_DAYS};
use population::{UserDay, WEEKDAYS};
pub use tiers::{
    Test, TierContrast, TierFigures, MIN_DAYS as TIER_MIN_ACTIVE_DAYS, MIN_REQUESTS as TIER_MIN_REQUESTS, P_CLEAR,
    RATIO_CLEAR,
};

/// The largest `cost.actual_pct`, as the fitted distributions hold it.
const MAX_ACTUAL_PCT: f64 = crate::scenario::MAX_ACTUAL_PCT as f64;

/// Rows with a smaller estimate do not enter `cost.actual_pct`: the actual cost is a whole
/// number of sats, so a 9-sat estimate moves the percentage in steps of 11.
pub const MIN_ESTIMATE_FOR_PCT: u64 = 10;

/// A fitted number, its standard error, and how many observations it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The fitted value.
    pub value: f64,
    /// Its standard error.
    pub se: f64,
    /// Observations it was fitted from.
    pub n: u64,
}

impl Estimate {
    /// `k` of `n` as a share, with its binomial standard error (0 for none or all: the
    /// scenario's comment gives the rule of three's bound instead, `share_uncertainty`).
    fn share(k: u64, n: u64) -> Option<Estimate> {
        (n > 0).then(|| {
            let p = k as f64 / n as f64;
            Estimate { value: p, se: (p * (1.0 - p) / n as f64).sqrt(), n }
        })
    }
}

/// A fitted distribution: what goes in the scenario, its parameters with their errors, and
/// how well it fits.
#[derive(Clone, Debug, PartialEq)]
pub struct DistFit {
    /// The distribution written to the scenario (parameters rounded to four digits).
    pub dist: Dist,
    /// Each fitted parameter by name (`mean`, `median`, `sigma`, `min`, `max`, `value`).
    pub params: Vec<(&'static str, Estimate)>,
    /// The fit's quality and why this kind, in words.
    pub quality: String,
}

impl DistFit {
    /// The fitted parameter `name`.
    pub fn param(&self, name: &str) -> Option<Estimate> {
        self.params.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }
}

/// Everything fitted from a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    /// The history's name, for the scenario's comments.
    pub origin: String,
    /// Requests in the history.
    pub n_requests: u64,
    /// Distinct users.
    pub n_users: u64,
    /// Midnight (UTC) of the first request's day.
    pub start_ms: u64,
    /// Days from the first request's to the last's.
    pub days: u32,
    /// Users per tier at day 0 ([`Tier::ALL`] order).
    pub population: [Estimate; 4],
    /// Users at day 0, all tiers.
    pub users: Estimate,
    /// Active users per tier on the day the tiers are split by ([`Fitted::first_day`]).
    pub active_first_day: [u64; 4],
    /// The day the users are split into tiers by: the first day fitted (day 0 unless the
    /// history holds it only in part).
    pub first_day: u32,
    /// Each tier's share of user-days with a request, which scales its active users to users
    /// (`None`: fewer than [`MIN_ACTIVE_DAYS`] active user-days, the share of all tiers used).
    pub active_share: [Option<Estimate>; 4],
    /// Each tier's share as measured, however few its days (`None`: no user-day).
    pub measured_share: [Option<Estimate>; 4],
    /// Each tier's active user-days after its users' first.
    pub active_days: [u64; 4],
    /// Active users on each day of the week against the week's mean, Monday first, when the
    /// history covers every day of the week twice.
    pub weekly: Option<[f64; 7]>,
    /// Days the population and the requests per user per day were fitted on.
    pub days_fitted: u32,
    /// Growth, percent per day.
    pub growth_pct_per_day: Option<Estimate>,
    /// Days within the history's range without a request, or far below the days around them.
    pub gaps: Gaps,
    /// Rows that repeat an earlier row in every field, read as they are ([`Fitted::with_repeats`]).
    pub repeats: Option<Repeats>,
    /// How the tiers compare in their traffic and their estimates.
    pub tiers: TierContrast,
    /// Requests per user per day.
    pub per_user_per_day: Option<DistFit>,
    /// Requests per user per day of each tier's users on the days they have it ([`Tier::ALL`]
    /// order), when the tiers clearly differ in it ([`TierContrast::requests_differ`]): each
    /// tier with enough active user-days gets its own.
    pub per_user_per_day_by_tier: [Option<DistFit>; 4],
    /// The history's mean requests per user-day, as fitted for `per_user_per_day` (all tiers)
    /// and for each tier of `per_user_per_day_by_tier`: what the fitted distribution should
    /// draw on average ([`Fitted::warnings`] says when it does not).
    pub count_means: (Option<f64>, [Option<f64>; 4]),
    /// Share of requests in each UTC hour.
    pub hourly_share: [Estimate; 24],
    /// p-value of the chi-square test that every day has the same cycle.
    pub hourly_homogeneity_p: Option<f64>,
    /// Share of requests that are sessions.
    pub session_share: Estimate,
    /// Estimated cost.
    pub estimate_sats: DistFit,
    /// Estimated cost of each tier's requests ([`Tier::ALL`] order), when the tiers clearly
    /// differ in it ([`TierContrast::estimates_differ`]): each tier with enough requests gets
    /// its own.
    pub estimate_sats_by_tier: [Option<DistFit>; 4],
    /// Actual cost in percent of the estimate.
    pub actual_pct: Option<DistFit>,
    /// The history's mean actual cost in percent of the estimate, over the requests
    /// `actual_pct` was fitted on: what it should draw on average ([`Fitted::warnings`] says
    /// when it does not).
    pub actual_pct_mean: Option<PctMean>,
    /// Share of requests whose work ran and failed.
    pub work_failure: Option<Estimate>,
    /// Share of full invoices paid.
    pub gate_paid: Option<Estimate>,
    /// Share of partial invoices paid.
    pub partial_paid: Option<Estimate>,
    /// Promotion per day, per tier.
    pub promote_per_day: [Option<Estimate>; 4],
    /// Decay per day, per tier.
    pub decay_per_day: [Option<Estimate>; 4],
    /// Day-to-day tier changes of more than one step (the model has none).
    pub tier_jumps: u64,
    /// Tier changes between a user's requests that the planner's model cannot make.
    pub unmodelled_moves: UnmodelledMoves,
    /// Per tier ([`Tier::ALL`] order), the largest estimate a user of the tier was given free,
    /// and the line of its first such request: the tier's daily budget is at least that much
    /// (a free decision reserves the whole estimate within what remains of the budget).
    pub largest_free: [Option<(u64, usize)>; 4],
}

/// Tier changes between two consecutive requests of a user that the planner's model cannot
/// make: it moves a user at most one tier step at the end of a day, so a change within a day,
/// or of more steps than the ends of day between the two requests (new on one day, trusted the
/// next), is none of its moves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnmodelledMoves {
    /// Changes within a UTC day.
    pub within_day: u64,
    /// Changes of more steps than the ends of day between the two requests.
    pub too_far: u64,
    /// The first, in the order of the later request's line.
    pub first: Option<UnmodelledMove>,
}

/// One tier change the model cannot make: the user, and each of the two requests' line (in
/// the file, the header being line 1), tier and UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmodelledMove {
    /// The user.
    pub user: String,
    /// The earlier request: line, tier, day (0 the first day of the history).
    pub from: (usize, Tier, u32),
    /// The later request.
    pub to: (usize, Tier, u32),
}

impl UnmodelledMoves {
    /// The moves of `rows` (in time order; row `i` on line `i + 2` of its file) the model cannot
    /// make.
    fn of(rows: &[HistoryRow], start_ms: u64) -> UnmodelledMoves {
        let mut out = UnmodelledMoves::default();
        let mut last: BTreeMap<&str, (usize, Tier, u32)> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            let here = (i + 2, r.tier, ((r.time_ms - start_ms) / DAY_MS) as u32);
            if let Some(before) = last.insert(r.user.as_str(), here) {
                let steps = (r.tier.index() as i64 - before.1.index() as i64).unsigned_abs();
                let ends_of_day = u64::from(here.2 - before.2);
                if steps > ends_of_day {
                    if ends_of_day == 0 {
                        out.within_day += 1;
                    } else {
                        out.too_far += 1;
                    }
                    out.first.get_or_insert_with(|| UnmodelledMove { user: r.user.clone(), from: before, to: here });
                }
            }
        }
        out
    }

    /// How many.
    pub fn count(&self) -> u64 {
        self.within_day + self.too_far
    }
}

/// A history the planner's scenario cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// More days than a scenario may have.
    #[error("{origin}: the history spans {days} days; a scenario holds at most {MAX_DAYS}")]
    TooLong {
        /// The file.
        origin: String,
        /// Days spanned.
        days: u64,
    },
    /// A first day after the latest a scenario may start on.
    #[error(
        "{origin}: the history starts on the day beginning at {start_ms} ms, after the latest day a scenario \
         may start on ({MAX_START_MS}, 2100-01-01 UTC)"
    )]
    StartsTooLate {
        /// The file.
        origin: String,
        /// Midnight (UTC) of the first request's day.
        start_ms: u64,
    },
    /// A first day before the earliest a scenario may start on: a history whose first request
    /// is on the day of Bitcoin's genesis block, after it.
    #[error(
        "{origin}: the history starts on 2009-01-03, the day of Bitcoin's genesis block, and a scenario's \
         days start at midnight no earlier than 2009-01-04 ({MIN_START_MS}): leave that day's requests out"
    )]
    StartsTooEarly {
        /// The file.
        origin: String,
    },
    /// Users seen on so few of their days that the model, which has no churn, needs more
    /// users than a scenario may have to explain them.
    #[error(
        "{origin}: the fit needs {users} users, more than a scenario's {MAX_POPULATION}: {active} users \
         are active on day 0, but only {active_user_days} of the {user_days} user-days after a user's first \
         have a request, and the planner's model has no churn, so it reads users who left as users who are \
         rarely active; fit a stretch of the history in which users come back"
    )]
    TooManyUsers {
        /// The file.
        origin: String,
        /// Users the fit needs at day 0.
        users: u64,
        /// Users active on day 0 (the first day fitted).
        active: u64,
        /// User-days after a user's first with a request.
        active_user_days: u64,
        /// User-days after a user's first.
        user_days: u64,
    },
}

/// What the history says about each user, day by day.
struct UserDays {
    /// Per user: (day, requests, tier of the first request, tier of the last), in day order.
    days: Vec<Vec<UserDay>>,
}

impl UserDays {
    fn of(rows: &[HistoryRow], start_ms: u64) -> UserDays {
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut days: Vec<Vec<UserDay>> = Vec::new();
        for r in rows {
            let day = ((r.time_ms - start_ms) / DAY_MS) as u32;
            let n = index.len();
            let u = *index.entry(r.user.as_str()).or_insert(n);
            if u == days.len() {
                days.push(Vec::new());
            }
            match days[u].last_mut() {
                Some(last) if last.0 == day => {
                    last.1 += 1;
                    last.3 = r.tier;
                }
                _ => days[u].push((day, 1, r.tier, r.tier)),
            }
        }
        UserDays { days }
    }

    /// Requests per user-day on the days after each user's first, zeros included, but for the
    /// days `left_out` marks (which the history lacks, wholly or in part).
    fn counts(&self, n_days: u32, left_out: &[bool]) -> BTreeMap<u64, u64> {
        let mut hist = BTreeMap::new();
        for user in &self.days {
            let first = user[0].0;
            let mut seen = user[1..].iter().peekable();
            for day in first + 1..n_days {
                let n = seen.next_if(|d| d.0 == day).map_or(0, |d| d.1);
                if !left_out[day as usize] {
                    *hist.entry(n).or_insert(0) += 1;
                }
            }
        }
        hist
    }

    /// [`UserDays::counts`] by the tier the user has that day: on a day with requests, that of
    /// its first; on a day without, that of the last request before it.
    fn counts_by_tier(&self, n_days: u32, left_out: &[bool]) -> [BTreeMap<u64, u64>; 4] {
        let mut hist: [BTreeMap<u64, u64>; 4] = Default::default();
        for user in &self.days {
            let (first, mut tier) = (user[0].0, user[0].3);
            let mut seen = user[1..].iter().peekable();
            for day in first + 1..n_days {
                let (n, today) = match seen.next_if(|d| d.0 == day) {
                    Some(d) => {
                        let today = d.2;
                        tier = d.3;
                        (d.1, today)
                    }
                    None => (0, tier),
                };
                if !left_out[day as usize] {
                    *hist[today.index()].entry(n).or_insert(0) += 1;
                }
            }
        }
        hist
    }
}

/// Fits a scenario to `rows` (in time order, as [`crate::history::read`] gives them);
/// `origin` names the history.
pub fn fit(rows: &[HistoryRow], origin: &str) -> Result<Fitted, FitError> {
    assert!(!rows.is_empty(), "a history has at least one row (the reader refuses an empty one)");
    let start_ms = rows[0].time_ms / DAY_MS * DAY_MS;
    let span = (rows[rows.len() - 1].time_ms - start_ms) / DAY_MS + 1;
    if span > u64::from(MAX_DAYS) {
        return Err(FitError::TooLong { origin: origin.to_owned(), days: span });
    }
    if start_ms > MAX_START_MS {
        return Err(FitError::StartsTooLate { origin: origin.to_owned(), start_ms });
    }
    if start_ms < MIN_START_MS {
        return Err(FitError::StartsTooEarly { origin: origin.to_owned() });
    }
    let days = span as u32;
    let users = UserDays::of(rows, start_ms);
    let mut requests_by_day = vec![0u64; days as usize];
    for r in rows {
        requests_by_day[((r.time_ms - start_ms) / DAY_MS) as usize] += 1;
    }
    let gaps = Gaps::of(&requests_by_day);
    let left_out = gaps.left_out(days);
    let counts = users.counts(days, &left_out);
    let n_user_days: u64 = counts.values().sum();
    let pop = population::fit(&users.days, days, start_ms, &left_out);
    let n = rows.len() as u64;
    let kind = |served: Served| rows.iter().filter(move |r| r.outcome == served);
    let paid = |served: Served| {
        let total = kind(served).count() as u64;
        Estimate::share(kind(served).filter(|r| r.paid == Some(true)).count() as u64, total)
    };
    let ran: Vec<&HistoryRow> = rows.iter().filter(|r| r.outcome == Served::Free || r.paid == Some(true)).collect();
    let failed = ran.iter().filter(|r| r.actual_sats.is_none()).count() as u64;
    let (promote_per_day, decay_per_day, tier_jumps) = tier_moves(&users);
    let (hourly_share, hourly_homogeneity_p) = hourly(rows, start_ms, days, &left_out);
    let n_fitted: u64 = pop.users.iter().map(|e| e.value.round() as u64).sum();
    if n_fitted > MAX_POPULATION {
        return Err(FitError::TooManyUsers {
            origin: origin.to_owned(),
            users: n_fitted,
            active: pop.active_first_day.iter().sum(),
            active_user_days: n_user_days - counts.get(&0).copied().unwrap_or(0),
            user_days: n_user_days,
        });
    }
    let tiers = TierContrast::of(rows, &users.days, &left_out, &pop.measured_share, &pop.active_days);
    let (per_user_per_day_by_tier, means_by_tier) = if tiers.requests_differ() {
        let by_tier = users.counts_by_tier(days, &left_out);
        let own = |t: usize| pop.active_days[t] >= TIER_MIN_ACTIVE_DAYS;
        (
            std::array::from_fn(|t| own(t).then(|| fit_counts(&by_tier[t]))),
            std::array::from_fn(|t| own(t).then(|| histogram_mean(&by_tier[t]))),
        )
    } else {
        Default::default()
    };
    let estimate_sats_by_tier = std::array::from_fn(|t| {
        let own = tiers.estimates_differ() && tiers.tiers[t].is_some_and(|f| f.requests >= TIER_MIN_REQUESTS);
        own.then(|| fit_estimates(rows.iter().filter(|r| r.tier.index() == t)))
    });
    let actual_pct = fit_actual_pct(rows);
    Ok(Fitted {
        origin: origin.to_owned(),
        n_requests: n,
        n_users: users.days.len() as u64,
        start_ms,
        days,
        population: pop.users,
        users: pop.total,
        active_first_day: pop.active_first_day,
        first_day: pop.first_day,
        active_share: pop.active_share,
        measured_share: pop.measured_share,
        active_days: pop.active_days,
        weekly: pop.weekly,
        days_fitted: pop.days_fitted,
        growth_pct_per_day: pop.growth_pct_per_day,
        gaps,
        repeats: None,
        tiers,
        per_user_per_day: (n_user_days > 0).then(|| fit_counts(&counts)),
        per_user_per_day_by_tier,
        count_means: ((n_user_days > 0).then(|| histogram_mean(&counts)), means_by_tier),
        hourly_share,
        hourly_homogeneity_p,
        session_share: Estimate::share(rows.iter().filter(|r| r.session).count() as u64, n).expect("n > 0"),
        estimate_sats: fit_estimates(rows),
        estimate_sats_by_tier,
        actual_pct: actual_pct.as_ref().map(|(d, _)| d.clone()),
        actual_pct_mean: actual_pct.map(|(_, m)| m),
        work_failure: Estimate::share(failed, ran.len() as u64),
        gate_paid: paid(Served::Gated),
        partial_paid: paid(Served::Partial),
        promote_per_day,
        decay_per_day,
        tier_jumps,
        unmodelled_moves: UnmodelledMoves::of(rows, start_ms),
        largest_free: largest_free(rows),
    })
}

/// The default daily budgets, in [`Tier::ALL`] order.
fn default_budgets() -> [u64; 4] {
    let b = PlanScenario::default().budget;
    [b.new, b.established, b.trusted, b.elite]
}

/// Per tier, the largest estimate served free and the line (row `i` on line `i + 2`) of its
/// first request. A free decision reserves the whole estimate, and only when what remains of
/// the tier's daily budget covers it, so the budget is at least the largest: a lower bound the
/// history gives. A tighter one, a user's free total within the ledger's 24-hour window, it does
/// not: the window absorbs `min(actual, reserved)` when the work is recorded, at a time the
/// history lacks, and opens at the first absorption 24 hours or more after the last opened, so
/// neither what a window holds nor where it starts can be read from the requests.
fn largest_free(rows: &[HistoryRow]) -> [Option<(u64, usize)>; 4] {
    let mut out: [Option<(u64, usize)>; 4] = [None; 4];
    for (i, r) in rows.iter().enumerate().filter(|(_, r)| r.outcome == Served::Free) {
        let tier = &mut out[r.tier.index()];
        if tier.is_none_or(|(most, _)| r.estimate_sats > most) {
            *tier = Some((r.estimate_sats, i + 2));
        }
    }
    out
}

/// Shares of each UTC hour, and the p-value of a chi-square test that days share one cycle.
/// The days `left_out` marks (held only in part) are not counted: an export that starts in the
/// evening would otherwise add a day of evenings.
fn hourly(rows: &[HistoryRow], start_ms: u64, days: u32, left_out: &[bool]) -> ([Estimate; 24], Option<f64>) {
    let mut table = vec![[0u64; 24]; days as usize];
    for r in rows {
        let t = r.time_ms - start_ms;
        table[(t / DAY_MS) as usize][((t % DAY_MS) / 3_600_000) as usize] += 1;
    }
    for (d, out) in left_out.iter().enumerate() {
        if *out {
            table[d] = [0; 24];
        }
    }
    let n: u64 = table.iter().flatten().sum();
    assert!(n > 0, "the busiest day is never left out: a day is left out only for fewer requests than others");
    let by_hour: [u64; 24] = std::array::from_fn(|h| table.iter().map(|d| d[h]).sum());
    let shares = by_hour.map(|k| Estimate::share(k, n).expect("n > 0"));
    let by_day: Vec<u64> = table.iter().map(|d| d.iter().sum()).collect();
    let (rows_used, cols_used) =
        (by_day.iter().filter(|k| **k > 0).count(), by_hour.iter().filter(|k| **k > 0).count());
    let mut stat = 0.0;
    for (d, day) in table.iter().enumerate() {
        for h in 0..24 {
            let expected = by_day[d] as f64 * by_hour[h] as f64 / n as f64;
            if expected > 0.0 {
                stat += (day[h] as f64 - expected).powi(2) / expected;
            }
        }
    }
    let df = (rows_used.saturating_sub(1) * cols_used.saturating_sub(1)) as f64;
    (shares, p_chi2(stat, df))
}

/// Upper tail of the chi-square distribution with `df` degrees of freedom.
fn p_chi2(stat: f64, df: f64) -> Option<f64> {
    (df >= 1.0).then(|| ChiSquared::new(df).expect("df >= 1").sf(stat))
}

/// Day-to-day tier moves over consecutive active days: promotion and decay rates per tier,
/// and moves of more than one step.
fn tier_moves(users: &UserDays) -> ([Option<Estimate>; 4], [Option<Estimate>; 4], u64) {
    let (mut at_risk, mut up, mut down, mut jumps) = ([0u64; 4], [0u64; 4], [0u64; 4], 0);
    for user in &users.days {
        for w in user.windows(2) {
            if w[1].0 != w[0].0 + 1 {
                continue;
            }
            let (from, to) = (w[0].3.index(), w[1].2.index());
            at_risk[from] += 1;
            match to as i64 - from as i64 {
                1 => up[from] += 1,
                -1 => down[from] += 1,
                0 => {}
                _ => jumps += 1,
            }
        }
    }
    let rate = |k: [u64; 4], skip: usize| -> [Option<Estimate>; 4] {
        std::array::from_fn(|t| if t == skip { None } else { Estimate::share(k[t], at_risk[t]) })
    };
    (rate(up, 3), rate(down, 0), jumps)
}

/// A tier's promotion and decay rounded to four significant digits with their sum at most 1
/// (the scenario refuses more): when rounding both to the nearest would exceed 1 (1/11 and
/// 10/11 round to 0.09091 and 0.9091), the larger is stepped down in its fourth digit until
/// the sum is at most 1. The flag says whether that happened.
fn round_moves(up: f64, down: f64) -> (f64, f64, bool) {
    let (r_up, r_down) = (round4(up), round4(down));
    if r_up + r_down <= 1.0 {
        (r_up, r_down, false)
    } else if up >= down {
        (step_down_beside(r_up, r_down), r_down, true)
    } else {
        (r_up, step_down_beside(r_down, r_up), true)
    }
}

/// `x` (four significant digits) stepped down in its fourth digit until its sum with `other`
/// is at most 1, in floating point as the scenario checks it.
fn step_down_beside(mut x: f64, other: f64) -> f64 {
    while x + other > 1.0 {
        x = round4(x - 10f64.powi(x.log10().floor() as i32 - 3));
    }
    x
}

/// Four significant digits: what the scenario file gets.
pub fn round4(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = 3 - x.abs().log10().floor() as i32;
    if e >= 0 {
        let p = 10f64.powi(e);
        (x * p).round() / p
    } else {
        let p = 10f64.powi(-e);
        (x / p).round() * p
    }
}

/// The standard normal's upper tail.
fn q_norm(z: f64) -> f64 {
    if z == f64::INFINITY {
        0.0
    } else if z == f64::NEG_INFINITY {
        1.0
    } else {
        0.5 * statrs::function::erf::erfc(z / std::f64::consts::SQRT_2)
    }
}

/// Probability that a log-normal (`mu`, `sigma`) falls in `a..b` (`a` may be 0, `b` infinite),
/// computed on the side of the median where it does not cancel.
fn lognormal_mass(mu: f64, sigma: f64, a: f64, b: f64) -> f64 {
    let z = |x: f64| if x <= 0.0 { f64::NEG_INFINITY } else { (x.ln() - mu) / sigma };
    let (za, zb) = (z(a), z(b));
    if za > 0.0 {
        q_norm(za) - q_norm(zb)
    } else {
        q_norm(-zb) - q_norm(-za)
    }
}

/// The probability of each value of a log-normal clamped to `lo..=hi` and rounded (what the
/// model draws), for the values `lo..=hi`.
fn rounded_mass(mu: f64, sigma: f64, lo: u64, hi: u64, k: u64) -> f64 {
    let a = if k == lo { 0.0 } else { k as f64 - 0.5 };
    let b = if k == hi { f64::INFINITY } else { k as f64 + 0.5 };
    lognormal_mass(mu, sigma, a, b)
}

/// Log-likelihood of a histogram under [`rounded_mass`].
fn rounded_ll(hist: &BTreeMap<u64, u64>, mu: f64, sigma: f64, lo: u64, hi: u64) -> f64 {
    if !(sigma > 1e-6 && sigma <= 20.0 && mu.is_finite()) {
        return f64::NEG_INFINITY;
    }
    hist.iter().map(|(&k, &c)| c as f64 * rounded_mass(mu, sigma, lo, hi, k).ln()).sum()
}

/// Nelder-Mead minimisation in two dimensions.
fn minimize(f: impl Fn([f64; 2]) -> f64, start: [f64; 2], step: [f64; 2]) -> [f64; 2] {
    let mut s = [start, [start[0] + step[0], start[1]], [start[0], start[1] + step[1]]];
    let mut v = s.map(&f);
    let at = |a: [f64; 2], b: [f64; 2], t: f64| [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
    for _ in 0..2000 {
        let mut idx = [0, 1, 2];
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let (best, mid, worst) = (idx[0], idx[1], idx[2]);
        let size = (s[worst][0] - s[best][0]).abs().max((s[worst][1] - s[best][1]).abs());
        if size < 1e-10 || (v[worst] - v[best]).abs() < 1e-13 * (1.0 + v[best].abs()) && size < 1e-7 {
            break;
        }
        let c = at(s[best], s[mid], 0.5);
        let r = at(c, s[worst], -1.0);
        let fr = f(r);
        if fr < v[best] {
            let e = at(c, s[worst], -2.0);
            let fe = f(e);
            (s[worst], v[worst]) = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < v[mid] {
            (s[worst], v[worst]) = (r, fr);
        } else {
            let k = if fr < v[worst] { at(c, r, 0.5) } else { at(c, s[worst], 0.5) };
            let fk = f(k);
            if fk < fr.min(v[worst]) {
                (s[worst], v[worst]) = (k, fk);
            } else {
                for i in [mid, worst] {
                    s[i] = at(s[best], s[i], 0.5);
                    v[i] = f(s[i]);
                }
            }
        }
    }
    let best = (0..3).min_by(|&a, &b| v[a].total_cmp(&v[b])).expect("three points");
    s[best]
}

/// Standard errors of a maximum-likelihood fit: the square roots of the diagonal of the
/// inverse of the negative log-likelihood's Hessian (by central differences) at `x`.
fn standard_errors(nll: impl Fn([f64; 2]) -> f64, x: [f64; 2]) -> [f64; 2] {
    let h = [1e-4 * (1.0 + x[0].abs()), 1e-4 * (1.0 + x[1].abs())];
    let f = |d0: f64, d1: f64| nll([x[0] + d0 * h[0], x[1] + d1 * h[1]]);
    let f0 = f(0.0, 0.0);
    let a = (f(1.0, 0.0) - 2.0 * f0 + f(-1.0, 0.0)) / (h[0] * h[0]);
    let d = (f(0.0, 1.0) - 2.0 * f0 + f(0.0, -1.0)) / (h[1] * h[1]);
    let b = (f(1.0, 1.0) - f(1.0, -1.0) - f(-1.0, 1.0) + f(-1.0, -1.0)) / (4.0 * h[0] * h[1]);
    let det = a * d - b * b;
    if !(det > 0.0 && a > 0.0) {
        return [f64::NAN, f64::NAN];
    }
    [(d / det).sqrt(), (a / det).sqrt()]
}

/// A rounded log-normal on `lo..=hi` by maximum likelihood: (mu, sigma), their standard
/// errors, and the log-likelihood.
fn fit_rounded_lognormal(hist: &BTreeMap<u64, u64>, lo: u64, hi: u64) -> ([f64; 2], [f64; 2], f64) {
    let n: u64 = hist.values().sum();
    let logs = hist.iter().map(|(&k, &c)| ((k.max(1) as f64).ln(), c as f64));
    let mean = logs.clone().map(|(l, c)| l * c).sum::<f64>() / n as f64;
    let var = logs.map(|(l, c)| (l - mean).powi(2) * c).sum::<f64>() / n as f64;
    let nll = |x: [f64; 2]| -rounded_ll(hist, x[0], x[1], lo, hi);
    let start = [mean, var.sqrt().max(0.1)];
    let x = minimize(nll, start, [0.1, 0.1]);
    // A second start from the first answer, to leave a collapsed simplex behind.
    let x = minimize(nll, x, [0.05, 0.05]);
    (x, standard_errors(nll, x), -nll(x))
}

/// Chi-square goodness of fit of a histogram of `lo..=hi` against `mass`, bins merged
/// left to right until each expects at least 5: (statistic, degrees of freedom, p-value).
fn chi2_fit(hist: &BTreeMap<u64, u64>, lo: u64, hi: u64, params: usize, mass: impl Fn(u64) -> f64) -> String {
    let n: u64 = hist.values().sum();
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let (mut o, mut e) = (0.0, 0.0);
    for k in lo..=hi {
        o += hist.get(&k).copied().unwrap_or(0) as f64;
        e += mass(k) * n as f64;
        if e >= 5.0 {
            bins.push((o, e));
            (o, e) = (0.0, 0.0);
        }
    }
    match bins.last_mut() {
        Some(last) => {
            last.0 += o;
            last.1 += e;
        }
        None => bins.push((o, e)),
    }
    let stat: f64 = bins.iter().map(|(o, e)| (o - e).powi(2) / e).sum();
    let df = bins.len() as f64 - 1.0 - params as f64;
    match p_chi2(stat, df) {
        Some(p) => format!("chi-square {stat:.1} on {df} df over {} bins, p = {}", bins.len(), fmt_p(p)),
        None => format!("chi-square: too few bins ({}) for a test", bins.len()),
    }
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".to_owned()
    } else {
        format!("{p:.3}")
    }
}

fn est(value: f64, se: f64, n: u64) -> Estimate {
    Estimate { value, se, n }
}

/// The mean of a histogram of counts (count, how many).
fn histogram_mean(hist: &BTreeMap<u64, u64>) -> f64 {
    let n: u64 = hist.values().sum();
    hist.iter().map(|(&k, &c)| k as f64 * c as f64).sum::<f64>() / n as f64
}

/// The mean requests per user per day that the planner draws from `d` (clamped to the key's
/// range and rounded, as [`crate::model::Sampler`] and the day's draw do).
fn drawn_count_mean(d: &Dist) -> f64 {
    match d.dist {
        DistKind::Fixed => d.value.unwrap_or(0.0).clamp(0.0, MAX_PER_USER_PER_DAY as f64).round(),
        // A negative binomial's draws past the largest count, clamped to it, are below 1e-12 of
        // them at every mean and shape a fit gives.
        DistKind::Poisson | DistKind::Negbinomial => d.mean.unwrap_or(0.0),
        DistKind::Uniform => (d.min.unwrap_or(0.0) + d.max.unwrap_or(0.0)) / 2.0,
        DistKind::Lognormal => {
            let (median, sigma) = (d.median.unwrap_or(1.0), d.sigma.unwrap_or(0.0));
            let hi = d.max.unwrap_or(MAX_PER_USER_PER_DAY as f64).min(MAX_PER_USER_PER_DAY as f64) as u64;
            if sigma <= 0.0 {
                return median.min(hi as f64).round();
            }
            (0..=hi).map(|k| k as f64 * rounded_mass(median.ln(), sigma, 0, hi, k)).sum()
        }
    }
}

/// How far, as a share, the drawn mean may be from the history's before the fit says so.
const COUNT_MEAN_SLACK: f64 = 0.05;

/// The fewest percentages of `cost.actual_pct` whose mean the fit compares with what the
/// fitted distribution draws: below it, the history's own mean is too uncertain for a gap of
/// [`COUNT_MEAN_SLACK`] to mean anything. (A gap within 3 standard deviations of what chance
/// gives a log-normal, `pct_mean_noise`, is not said either.)
pub const MIN_PCT_FOR_MEAN: u64 = 200;

/// The standard deviation of the gap between a log-normal's mean by maximum likelihood and
/// the percentages' own mean `m`, were they log-normal (of the fitted sigma): the variance of
/// the mean less that of the efficient estimator, `m^2 (e^(s^2) - 1 - s^2 - s^4 / 2) / n`. A
/// heavy tail moves the two apart by chance (at sigma 1.2 and 200 percentages, by 6 % of the
/// mean), which is no sign that the family misses. 0 for another family: a uniform by moments
/// and a fixed value keep the mean.
fn pct_mean_noise(fit: &DistFit, m: PctMean) -> f64 {
    match (fit.dist.dist, fit.param("sigma")) {
        (DistKind::Lognormal, Some(sigma)) => {
            let s2 = sigma.value * sigma.value;
            m.mean * ((s2.exp() - 1.0 - s2 - s2 * s2 / 2.0).max(0.0) / m.n as f64).sqrt()
        }
        _ => 0.0,
    }
}

/// The mean percentage the planner draws from `cost.actual_pct` = `d` (clamped to its range,
/// and a log-normal to its `min` and `max`, as [`crate::model::Sampler`] draws it).
fn drawn_pct_mean(d: &Dist) -> f64 {
    let within = |v: f64| v.clamp(0.0, MAX_ACTUAL_PCT);
    match d.dist {
        DistKind::Fixed => within(d.value.unwrap_or(0.0)),
        DistKind::Uniform => (within(d.min.unwrap_or(0.0)) + within(d.max.unwrap_or(0.0))) / 2.0,
        DistKind::Poisson | DistKind::Negbinomial => within(d.mean.unwrap_or(0.0)),
        DistKind::Lognormal => {
            let (mu, sigma) = (d.median.unwrap_or(1.0).ln(), d.sigma.unwrap_or(0.0));
            let (a, b) = (within(d.min.unwrap_or(0.0)), within(d.max.unwrap_or(MAX_ACTUAL_PCT)));
            if sigma <= 0.0 {
                return d.median.unwrap_or(1.0).clamp(a, b);
            }
            // The draws below `a` and above `b` are clamped to them; those between, by the
            // log-normal's partial expectation: exp(mu + sigma^2 / 2) times the mass between
            // them of the log-normal of mu + sigma^2.
            a * lognormal_mass(mu, sigma, 0.0, a)
                + b * lognormal_mass(mu, sigma, b, f64::INFINITY)
                + (mu + sigma * sigma / 2.0).exp() * lognormal_mass(mu + sigma * sigma, sigma, a, b)
        }
    }
}

/// The negative binomial of `mean` and `shape` as `statrs` has it: the failures before the
/// `shape`-th success, at a success probability of `shape / (shape + mean)`.
fn negbinomial(mean: f64, shape: f64) -> NegativeBinomial {
    NegativeBinomial::new(shape, shape / (shape + mean)).expect("a positive shape and a probability")
}

/// The log-likelihood of the counts `hist` under the negative binomial of `mean` and `shape`.
fn negbinomial_ll(hist: &BTreeMap<u64, u64>, mean: f64, shape: f64) -> f64 {
    let d = negbinomial(mean, shape);
    hist.iter().map(|(&k, &c)| c as f64 * d.ln_pmf(k)).sum()
}

/// The negative binomial of the counts `hist` by maximum likelihood: the mean is the counts'
/// mean (the estimator of the mean at any shape, so a negative binomial keeps the history's
/// mean), the shape the maximum of the likelihood at that mean, found on a grid of its
/// logarithm over [`NEGBINOMIAL_SHAPE_RANGE`] and refined by golden section. Returns the shape,
/// its standard error (from the curvature of the log-likelihood; the mean and the shape are
/// orthogonal parameters, so neither's error depends on the other's) and the log-likelihood.
/// `None` when the counts vary no more than a Poisson's (`var <= mean`): the likelihood then
/// grows without end with the shape, toward the Poisson.
fn fit_negbinomial(hist: &BTreeMap<u64, u64>, mean: f64, var: f64) -> Option<(f64, f64, f64)> {
    if !(mean > 0.0 && var > mean) {
        return None;
    }
    let (lo, hi) = (NEGBINOMIAL_SHAPE_RANGE.0.ln(), NEGBINOMIAL_SHAPE_RANGE.1.ln());
    let ll = |t: f64| negbinomial_ll(hist, mean, t.exp());
    let step = 0.25;
    let n_steps = ((hi - lo) / step).ceil() as usize;
    let grid = |i: usize| (lo + i as f64 * step).min(hi);
    let best =
        (0..=n_steps).map(|i| (i, ll(grid(i)))).fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b });
    let (mut a, mut b) = (grid(best.0.saturating_sub(1)), grid((best.0 + 1).min(n_steps)));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (ll(c), ll(d));
    for _ in 0..60 {
        if fc >= fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = ll(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = ll(d);
        }
    }
    let t = (a + b) / 2.0;
    let shape = t.exp();
    let at = negbinomial_ll(hist, mean, shape);
    let h = shape * 1e-4;
    let curvature =
        (negbinomial_ll(hist, mean, shape + h) - 2.0 * at + negbinomial_ll(hist, mean, shape - h)) / (h * h);
    let se = if curvature < 0.0 { (-1.0 / curvature).sqrt() } else { f64::INFINITY };
    Some((shape, se, at))
}

/// Requests per user per day: fixed, or whichever of a Poisson, a negative binomial and a
/// rounded log-normal has the smallest AIC.
fn fit_counts(hist: &BTreeMap<u64, u64>) -> DistFit {
    let n: u64 = hist.values().sum();
    let nf = n as f64;
    let mean = hist.iter().map(|(&k, &c)| k as f64 * c as f64).sum::<f64>() / nf;
    let var = hist.iter().map(|(&k, &c)| (k as f64 - mean).powi(2) * c as f64).sum::<f64>() / nf;
    let hi = *hist.keys().next_back().expect("a count");
    let clamped = if hi > MAX_PER_USER_PER_DAY {
        format!("; clamped at {MAX_PER_USER_PER_DAY}, the most a scenario takes")
    } else {
        String::new()
    };
    let cap = hi.min(MAX_PER_USER_PER_DAY) as f64;
    if hist.len() == 1 {
        return DistFit {
            dist: Dist::fixed(cap),
            params: vec![("value", est(hi as f64, 0.0, n))],
            quality: format!("n = {n} user-days, every one with {hi} requests{clamped}"),
        };
    }
    let poisson = Poisson::new(mean.max(1e-9)).expect("positive mean");
    let ll_poisson: f64 = hist.iter().map(|(&k, &c)| c as f64 * poisson.ln_pmf(k)).sum();
    let (x, se, ll_logn) = fit_rounded_lognormal(hist, 0, hi);
    let nb = fit_negbinomial(hist, mean, var);
    let (aic_poisson, aic_logn) = (2.0 - 2.0 * ll_poisson, 6.0 - 2.0 * ll_logn);
    let aic_nb = nb.map_or(f64::INFINITY, |(_, _, ll)| 4.0 - 2.0 * ll);
    let aic_logn = if se[0].is_finite() { aic_logn } else { f64::INFINITY };
    let why = format!(
        "dispersion var/mean = {:.2}; AIC poisson {aic_poisson:.1}, negbinomial {}, lognormal {aic_logn:.1}",
        var / mean.max(1e-9),
        if aic_nb.is_finite() { format!("{aic_nb:.1}") } else { "- (var <= mean)".to_owned() }
    );
    if let Some((shape, shape_se, _)) = nb.filter(|_| aic_nb < aic_poisson && aic_nb <= aic_logn) {
        let m = round4(mean).min(MAX_POISSON_MEAN);
        let r = round4(shape).clamp(NEGBINOMIAL_SHAPE_RANGE.0, NEGBINOMIAL_SHAPE_RANGE.1);
        let d = negbinomial(mean, shape);
        let tail = |k: u64| if k == hi { d.sf(hi - 1) } else { d.pmf(k) };
        let gof = chi2_fit(hist, 0, hi, 2, tail);
        let mean_se = (mean * (1.0 + mean / shape) / nf).sqrt();
        return DistFit {
            dist: Dist::negbinomial(m, r),
            params: vec![("mean", est(mean, mean_se, n)), ("shape", est(shape, shape_se, n))],
            quality: format!(
                "n = {n} user-days; mean se {}, shape se {}; {gof}; {why}{clamped}",
                fmt_se(mean_se, false),
                fmt_se(shape_se, false)
            ),
        };
    }
    if aic_poisson <= aic_logn {
        let m = round4(mean).min(MAX_POISSON_MEAN);
        let tail = |k: u64| if k == hi { poisson.sf(hi - 1) } else { poisson.pmf(k) };
        let gof = chi2_fit(hist, 0, hi, 1, tail);
        return DistFit {
            dist: Dist::poisson(m),
            params: vec![("mean", est(mean, (mean / nf).sqrt(), n))],
            quality: format!("n = {n} user-days; mean se {}; {gof}; {why}", fmt_se(mean / nf, true)),
        };
    }
    let median = x[0].exp();
    let gof = chi2_fit(hist, 0, hi, 2, |k| rounded_mass(x[0], x[1], 0, hi, k));
    DistFit {
        dist: Dist::lognormal(round4(median).min(cap), round4(x[1]).min(MAX_LOGNORMAL_SIGMA), Some(cap)),
        params: vec![("median", est(median, median * se[0], n)), ("sigma", est(x[1], se[1], n))],
        quality: format!(
            "n = {n} user-days; median se {}, sigma se {}, max = the largest count; {gof}; {why}{clamped}",
            fmt_se(median * se[0], false),
            fmt_se(se[1], false)
        ),
    }
}

/// A standard error to two significant digits (`squared`: `v` is a variance).
fn fmt_se(v: f64, squared: bool) -> String {
    let se = if squared { v.sqrt() } else { v };
    let e = if se > 0.0 { 1 - se.log10().floor() as i32 } else { 0 };
    format!("{:.*}", e.max(0) as usize, se)
}

/// The Kolmogorov distribution's upper tail at `sqrt(n) * d` (asymptotic; conservative for
/// discrete data).
fn p_ks(d: f64, n: u64) -> f64 {
    let l = (n as f64).sqrt() * d;
    if l < 0.2 {
        return 1.0;
    }
    let mut p = 0.0;
    for j in 1..=100 {
        let term = (-2.0 * f64::from(j * j) * l * l).exp();
        p += if j % 2 == 1 { 2.0 * term } else { -2.0 * term };
    }
    p.clamp(0.0, 1.0)
}

/// Estimates: fixed or a rounded log-normal on `1..=max seen`.
fn fit_estimates<'a>(rows: impl IntoIterator<Item = &'a HistoryRow>) -> DistFit {
    let mut hist = BTreeMap::new();
    let mut n = 0u64;
    for r in rows {
        *hist.entry(r.estimate_sats).or_insert(0u64) += 1;
        n += 1;
    }
    let hi = *hist.keys().next_back().expect("a row");
    if hist.len() == 1 {
        return DistFit {
            dist: Dist::fixed(hi as f64),
            params: vec![("value", est(hi as f64, 0.0, n))],
            quality: format!("n = {n} requests, every estimate {hi} sats"),
        };
    }
    let (x, se, _) = fit_rounded_lognormal(&hist, 1, hi);
    // Kolmogorov-Smirnov distance between the estimates and the fitted (rounded) distribution.
    let (mut seen, mut d) = (0u64, 0.0f64);
    for (&k, &c) in &hist {
        seen += c;
        let model = 1.0 - lognormal_mass(x[0], x[1], k as f64 + 0.5, f64::INFINITY);
        d = d.max((seen as f64 / n as f64 - model).abs());
    }
    let median = x[0].exp();
    DistFit {
        dist: Dist::lognormal(
            round4(median).min(MAX_ESTIMATE_SATS as f64),
            round4(x[1]).min(MAX_LOGNORMAL_SIGMA),
            Some(hi as f64),
        ),
        params: vec![("median", est(median, median * se[0], n)), ("sigma", est(x[1], se[1], n))],
        quality: format!(
            "n = {n} requests; median se {}, sigma se {}, max = the largest estimate; \
             Kolmogorov-Smirnov distance {d:.4} (p = {})",
            fmt_se(median * se[0], false),
            fmt_se(se[1], false),
            fmt_p(p_ks(d, n))
        ),
    }
}

/// Actual over estimate, in percent: fixed, uniform or log-normal ([`fit_pct`]), fitted
/// without the few percentages that lie far outside the rest, said in the comment.
///
/// One row whose actual cost is 500 % of its estimate among two thousand between 60 % and
/// 110 % widens a uniform fitted by moments until a log-normal fits better, and the log-normal's
/// `max` is the largest seen: one row would turn the planner's costs into another family with
/// a tail to 500 %. Such values are judged on ln(percent), against its quartiles (so that a
/// log-normal's own tail is not judged: beyond 3 interquartile ranges lies a share of 1e-6 of
/// it); at most [`MAX_FAR_SHARE`] of the values (at least one) are left out, as errors of the
/// export more likely than costs to plan for; more are part of the distribution and fitted.
///
/// The actual costs of unpaid sessions (work that ran before an invoice the user did not pay)
/// are left out: the planner's model has a user who declines an invoice decline it at the
/// decision, before any work, and records no actual cost for it (`--history-out` writes none),
/// so its `actual_pct` is drawn for the requests whose work ran to be paid for or free. The
/// comment says how many were left out.
fn fit_actual_pct(rows: &[HistoryRow]) -> Option<(DistFit, PctMean)> {
    let priced = rows.iter().filter(|r| r.estimate_sats >= MIN_ESTIMATE_FOR_PCT && r.actual_sats.is_some());
    let unpaid = priced.clone().filter(|r| r.paid == Some(false)).count();
    let mut pct: Vec<Pct> = priced
        .filter(|r| r.paid != Some(false))
        .filter_map(|r| {
            r.actual_sats.map(|a| (100.0 * a as f64 / r.estimate_sats as f64, 50.0 / r.estimate_sats as f64))
        })
        .collect();
    if pct.is_empty() {
        return None;
    }
    let (mut fitted, mean) = fit_actual_pct_of(&mut pct);
    if unpaid > 0 {
        fitted.quality = format!(
            "{}; {unpaid} actual cost(s) of unpaid sessions left out (the planner records none: its users decline \
             an invoice before the work)",
            fitted.quality
        );
    }
    Some((fitted, mean))
}

/// [`fit_actual_pct`] of the percentages `pct`, at least one, and the mean of those it was
/// fitted on.
fn fit_actual_pct_of(pct: &mut [Pct]) -> (DistFit, PctMean) {
    pct.sort_by(|a, b| a.0.total_cmp(&b.0));
    let fences = far_fences(pct);
    let inside = |p: &Pct| fences.is_none_or(|(lo, hi)| p.0 <= 0.0 || (lo..=hi).contains(&p.0.ln()));
    let (kept, far): (Vec<Pct>, Vec<Pct>) = pct.iter().partition(|p| inside(p));
    if far.is_empty() {
        return (fit_pct(pct), PctMean::of(pct));
    }
    let (k, n) = (far.len(), pct.len());
    let mut shown: Vec<String> = far.iter().take(5).map(|p| format!("{} %", round4(p.0))).collect();
    if k > 5 {
        shown.push("...".to_owned());
    }
    let which = format!(
        "{k} of the {n} percentages {} far outside the rest (beyond 3 interquartile ranges of ln(percent) from its \
         quartiles: {})",
        if k == 1 { "lies" } else { "lie" },
        shown.join(", ")
    );
    if k as f64 > (n as f64 * MAX_FAR_SHARE).max(1.0) {
        let mut with = fit_pct(pct);
        with.quality = format!(
            "{}; {which}: more than {} % of them, so part of the distribution, and fitted with them",
            with.quality,
            MAX_FAR_SHARE * 100.0
        );
        return (with, PctMean::of(pct));
    }
    let with = fit_pct(pct);
    let mut without = fit_pct(&kept);
    without.quality = format!(
        "{}; {which}: left out of this fit, as likelier errors of the export than costs to plan for; with them \
         it would be {}",
        without.quality,
        dist_toml(&with.dist)
    );
    (without, PctMean::of(&kept))
}

/// The mean of the percentages of actual over estimate a fit of `cost.actual_pct` used, and
/// how many there were.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PctMean {
    /// The mean, in percent.
    pub mean: f64,
    /// The percentages it is the mean of.
    pub n: u64,
}

impl PctMean {
    fn of(pct: &[Pct]) -> PctMean {
        PctMean { mean: pct.iter().map(|p| p.0).sum::<f64>() / pct.len() as f64, n: pct.len() as u64 }
    }
}

/// A percentage of actual over estimate, and half the width of its rounding interval (the
/// actual cost is a whole number of sats).
type Pct = (f64, f64);

/// The largest share of the percentages of `cost.actual_pct` the fit leaves out as far outside
/// the rest; more are read as part of the distribution.
pub const MAX_FAR_SHARE: f64 = 0.01;

/// The range of ln(percent) within 3 interquartile ranges of its quartiles, over the positive
/// percentages of `pct` (sorted); `None` when there are fewer than 20 or no spread between the
/// quartiles to judge by.
fn far_fences(pct: &[Pct]) -> Option<(f64, f64)> {
    let logs: Vec<f64> = pct.iter().filter(|p| p.0 > 0.0).map(|p| p.0.ln()).collect();
    if logs.len() < 20 {
        return None;
    }
    let (q1, q3) = (logs[logs.len() / 4], logs[logs.len() * 3 / 4]);
    let iqr = q3 - q1;
    (iqr > 0.0).then_some((q1 - 3.0 * iqr, q3 + 3.0 * iqr))
}

/// Percentages (sorted, at least one) as a fixed, uniform or log-normal distribution.
fn fit_pct(pct: &[Pct]) -> DistFit {
    let n = pct.len() as u64;
    let nf = n as f64;
    let (lo_max, hi_min) = pct.iter().fold((f64::MIN, f64::MAX), |(l, h), (p, w)| (l.max(p - w), h.min(p + w)));
    if lo_max <= hi_min {
        let value = round4(((lo_max + hi_min) / 2.0).clamp(0.0, MAX_ACTUAL_PCT));
        return DistFit {
            dist: Dist::fixed(value),
            params: vec![("value", est(value, (hi_min - lo_max) / 2.0, n))],
            quality: format!("n = {n} requests; every actual cost is {value} % of its estimate, give or take rounding"),
        };
    }
    let mean = pct.iter().map(|p| p.0).sum::<f64>() / nf;
    let m2 = pct.iter().map(|p| (p.0 - mean).powi(2)).sum::<f64>() / nf;
    let m4 = pct.iter().map(|p| (p.0 - mean).powi(4)).sum::<f64>() / nf;
    // Rounding adds a uniform error of +-w to each, of variance w^2 / 3.
    let var = (m2 - pct.iter().map(|p| p.1 * p.1 / 3.0).sum::<f64>() / nf).max(0.0);
    let half = (3.0 * var).sqrt();
    let se_var = ((m4 - m2 * m2) / nf).sqrt();
    let se_half = if var > 0.0 { 3.0 * se_var / (2.0 * half) } else { f64::NAN };
    let se_end = (m2 / nf + se_half * se_half).sqrt();
    // Both ends in the scenario's range, so that min <= max even when every percentage is
    // beyond it.
    let (umin, umax) = ((mean - half).clamp(0.0, MAX_ACTUAL_PCT), (mean + half).clamp(0.0, MAX_ACTUAL_PCT));
    // The Kolmogorov-Smirnov distances are taken where rounding is negligible (estimates of
    // at least 100 sats: the percentage is within 0.5 of the truth) when there are enough.
    let exact: Vec<f64> = pct.iter().filter(|p| p.1 <= 0.5).map(|p| p.0).collect();
    let ks_rows: Vec<f64> = if exact.len() >= 30 { exact } else { pct.iter().map(|p| p.0).collect() };
    let n_ks = ks_rows.len() as u64;
    let ks = |cdf: &dyn Fn(f64) -> f64| {
        let m = ks_rows.len() as f64;
        ks_rows.iter().enumerate().fold(0.0f64, |d, (i, x)| {
            let f = cdf(*x);
            d.max((f - i as f64 / m).abs()).max(((i + 1) as f64 / m - f).abs())
        })
    };
    let d_uniform = ks(&|x| ((x - umin) / (umax - umin)).clamp(0.0, 1.0));
    let positive = pct[0].0 > 0.0;
    let (lmu, lsigma) = if positive {
        let lm = pct.iter().map(|p| p.0.ln()).sum::<f64>() / nf;
        (lm, (pct.iter().map(|p| (p.0.ln() - lm).powi(2)).sum::<f64>() / nf).sqrt())
    } else {
        (0.0, 0.0)
    };
    let d_logn = if positive && lsigma > 0.0 {
        ks(&|x| 1.0 - lognormal_mass(lmu, lsigma, x, f64::INFINITY))
    } else {
        f64::INFINITY
    };
    let why = format!(
        "Kolmogorov-Smirnov distance uniform {d_uniform:.4}, lognormal {d_logn:.4} (on {n_ks} of them{})",
        if n_ks < n { ", estimates of 100 sats or more" } else { "" }
    );
    let floor = format!("n = {n} requests whose work ran, with estimates of at least {MIN_ESTIMATE_FOR_PCT} sats");
    if d_uniform <= d_logn {
        return DistFit {
            dist: Dist::uniform(round4(umin), round4(umax)),
            params: vec![("min", est(umin, se_end, n)), ("max", est(umax, se_end, n))],
            quality: format!(
                "{floor}; by moments: min and max se {}; {why} (p = {})",
                fmt_se(se_end, false),
                fmt_p(p_ks(d_uniform, n_ks))
            ),
        };
    }
    let median = lmu.exp();
    let max = pct[pct.len() - 1].0.ceil().min(MAX_ACTUAL_PCT);
    let (se_mu, se_sigma) = (lsigma / nf.sqrt(), lsigma / (2.0 * nf).sqrt());
    DistFit {
        dist: Dist {
            max: Some(max),
            ..Dist::lognormal(round4(median).min(MAX_ACTUAL_PCT), round4(lsigma).min(MAX_LOGNORMAL_SIGMA), None)
        },
        params: vec![("median", est(median, median * se_mu, n)), ("sigma", est(lsigma, se_sigma, n))],
        quality: format!(
            "{floor}; median se {}, sigma se {}, max = the largest seen; {why} (p = {})",
            fmt_se(median * se_mu, false),
            fmt_se(se_sigma, false),
            fmt_p(p_ks(d_logn, n_ks))
        ),
    }
}

impl Fitted {
    /// The fit, saying that the history it came from had `repeats` (read as they are, as
    /// [`crate::history::read_with`] gives them).
    pub fn with_repeats(mut self, repeats: Option<Repeats>) -> Fitted {
        self.repeats = repeats;
        self
    }

    /// What a reader of the scenario must know before trusting it, one paragraph each: rows
    /// repeated, days the history lacks, tier moves the model cannot make, budgets raised,
    /// means the fitted families miss. Written at the top of the TOML.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = self.repeats {
            out.push(format!("WARNING: {r}, fitted as they are (--allow-duplicate-rows)."));
        }
        let day = |d: u32| utc_date(self.start_ms + u64::from(d) * DAY_MS);
        let g = &self.gaps;
        if !g.missing.is_empty() {
            let m = g.median_requests;
            let why = if m >= 20.0 {
                format!(
                    "The days with requests have {m:.0} each (the median), so these are most likely missing from \
                     the export rather than quiet"
                )
            } else {
                format!(
                    "The days with requests have {m:.0} each (the median): a service this quiet can have a day \
                     without any, as a Poisson count of mean {m:.0} is 0 with probability {:.2}",
                    (-m).exp()
                )
            };
            out.push(format!(
                "WARNING: {} of the {} days have no request: {}. {why}. The fit leaves them out: they are not \
                 counted as days on which users asked for nothing (which would lower the requests per user per \
                 day and raise the population).",
                g.missing.len(),
                self.days,
                day_ranges(&g.missing, day)
            ));
        }
        if !g.low.is_empty() {
            let listed: Vec<String> = g
                .low
                .iter()
                .take(10)
                .map(|l| format!("{} (day {}: {} requests against {:.0})", day(l.day), l.day, l.requests, l.around))
                .collect();
            let more = if g.low.len() > 10 { format!(" and {} more", g.low.len() - 10) } else { String::new() };
            out.push(format!(
                "WARNING: {} day(s) have far fewer requests than the days around them (under {} of the median of \
                 the {} days each side): {}{more}. An export that starts or ends in the middle of a day, or lost \
                 hours, looks like this. The fit leaves them out of the population, its growth, the requests per \
                 user per day and the hourly cycle, as days the history holds only in part; their requests are \
                 still fitted for cost and payment.",
                g.low.len(),
                LOW_DAY_SHARE,
                7,
                listed.join(", ")
            ));
        }
        let moves = &self.unmodelled_moves;
        if let Some(m) = &moves.first {
            let kinds: Vec<String> =
                [(moves.within_day, "within a day"), (moves.too_far, "of more steps than the days between them")]
                    .into_iter()
                    .filter(|(k, _)| *k > 0)
                    .map(|(k, what)| format!("{k} {what}"))
                    .collect();
            let at = |(line, tier, d): (usize, Tier, u32)| format!("{tier} on line {line} ({}, day {d})", day(d));
            out.push(format!(
                "WARNING: {} tier change(s) between a user's requests that the planner's model cannot make (it \
                 moves a user at most one tier, at the end of a day): {}. The first: user {}, {}, then {}. The fit \
                 reads each request in the tier its row gives; a change within a day is not counted as a move, and \
                 one of more than a step between consecutive days neither as a promotion nor a decay, so \
                 tiers.promote_per_day and decay_per_day do not count them: the plan moves its users less than this \
                 history shows.",
                moves.count(),
                kinds.join(", "),
                m.user,
                at(m.from),
                at(m.to)
            ));
        }
        let raised: Vec<String> = Tier::ALL
            .iter()
            .zip(self.budgets())
            .zip(default_budgets())
            .filter_map(|((tier, (v, raised)), default)| {
                raised.map(|at| format!("{tier} {default} to {v} (a free request of {v} sats on line {at})"))
            })
            .collect();
        if !raised.is_empty() {
            out.push(format!(
                "WARNING: the history gives users free requests larger than the default daily budget of their \
                 tier, which that budget cannot give: [budget] is raised from the default to the largest free \
                 estimate of the tier, {}. That is a lower bound of each budget, not the budget (the history \
                 does not show what remained of it); set [budget] to the service's own.",
                raised.join(", ")
            ));
        }
        if let (Some(fit), Some(m)) = (&self.actual_pct, self.actual_pct_mean) {
            let drawn = drawn_pct_mean(&fit.dist);
            if m.n >= MIN_PCT_FOR_MEAN
                && m.mean > 0.0
                && (drawn / m.mean - 1.0).abs() > COUNT_MEAN_SLACK
                && (drawn - m.mean).abs() > 3.0 * pct_mean_noise(fit, m)
            {
                out.push(format!(
                    "WARNING: cost.actual_pct draws {drawn:.2} % of the estimate on average, the history's {} \
                     requests it was fitted on have {:.2} % ({:+.1} %): the fitted {} misses their mean by more \
                     than {:.0} %, and the sats the plan's requests absorb are off by as much. Set the key by hand \
                     (a uniform of the history's mean keeps it), and compare.",
                    m.n,
                    m.mean,
                    (drawn / m.mean - 1.0) * 100.0,
                    dist_toml(&fit.dist),
                    COUNT_MEAN_SLACK * 100.0
                ));
            }
        }
        let mut off = Vec::new();
        let fits = std::iter::once((
            "requests.per_user_per_day".to_owned(),
            self.per_user_per_day.as_ref(),
            self.count_means.0,
        ))
        .chain(Tier::ALL.iter().enumerate().map(|(i, t)| {
            (
                format!("requests.per_user_per_day_by_tier.{t}"),
                self.per_user_per_day_by_tier[i].as_ref(),
                self.count_means.1[i],
            )
        }));
        for (key, fit, mean) in fits {
            if let (Some(fit), Some(mean)) = (fit, mean) {
                let drawn = drawn_count_mean(&fit.dist);
                if mean > 0.0 && (drawn / mean - 1.0).abs() > COUNT_MEAN_SLACK {
                    off.push(format!(
                        "{key} draws {drawn:.3} requests per user-day on average, the history has {mean:.3} ({:+.1} %)",
                        (drawn / mean - 1.0) * 100.0
                    ));
                }
            }
        }
        if !off.is_empty() {
            out.push(format!(
                "WARNING: the requests per user per day of this history have a shape no fitted family \
                 (Poisson, negative binomial, a rounded log-normal) follows, and the closest one draws a mean off \
                 by more than {:.0} %: {}. The plan's traffic, and what the pool pays for it, is off by as much; \
                 set the key's distribution by hand (a negative binomial or a Poisson of the history's mean keeps \
                 the mean; the comment above the key gives the negative binomial's AIC), and compare.",
                COUNT_MEAN_SLACK * 100.0,
                off.join("; ")
            ));
        }
        out
    }

    /// The scenario: fitted values (rounded to four digits) where the history has them,
    /// defaults elsewhere.
    pub fn scenario(&self) -> PlanScenario {
        let mut s = PlanScenario { name: format!("fitted from {}", self.origin), ..PlanScenario::default() };
        s.days = self.days;
        s.start_ms = self.start_ms;
        let users = self.population.map(|e| e.value.round() as u64);
        [s.population.new, s.population.established, s.population.trusted, s.population.elite] = users;
        s.population.growth_pct_per_day = self.growth_pct_per_day.map_or(0.0, |g| round4(g.value.clamp(0.0, 100.0)));
        if let Some(d) = &self.per_user_per_day {
            s.requests.per_user_per_day = d.dist.clone();
        }
        for (tier, d) in Tier::ALL.into_iter().zip(&self.per_user_per_day_by_tier) {
            s.requests.per_user_per_day_by_tier.set(tier, d.as_ref().map(|d| d.dist.clone()));
        }
        s.requests.hourly_weights = self.hourly_share.iter().map(|e| round4(e.value * 24.0)).collect();
        s.requests.even = false;
        s.requests.session_share = round4(self.session_share.value);
        s.cost.estimate_sats = self.estimate_sats.dist.clone();
        for (tier, d) in Tier::ALL.into_iter().zip(&self.estimate_sats_by_tier) {
            s.cost.estimate_sats_by_tier.set(tier, d.as_ref().map(|d| d.dist.clone()));
        }
        if let Some(d) = &self.actual_pct {
            s.cost.actual_pct = d.dist.clone();
        }
        let p = |e: Option<Estimate>, default: f64| e.map_or(default, |e| round4(e.value));
        s.cost.work_failure = p(self.work_failure, s.cost.work_failure);
        s.payment.gate_paid = p(self.gate_paid, s.payment.gate_paid);
        s.payment.partial_paid = p(self.partial_paid, s.payment.partial_paid);
        let (up, down, _) = self.tier_rates();
        let rates = |r: [f64; 4]| TierRates { new: r[0], established: r[1], trusted: r[2], elite: r[3] };
        s.tiers.promote_per_day = rates(up);
        s.tiers.decay_per_day = rates(down);
        let budgets = self.budgets().map(|(b, _)| b);
        [s.budget.new, s.budget.established, s.budget.trusted, s.budget.elite] = budgets;
        s
    }

    /// Each tier's daily budget as the scenario gets it: the default, or, when the history shows
    /// a user of the tier given free a request above it (which that budget cannot give), the
    /// largest such estimate, a lower bound of the budget, with the line of its request.
    fn budgets(&self) -> [(u64, Option<usize>); 4] {
        let defaults = default_budgets();
        std::array::from_fn(|t| match self.largest_free[t] {
            Some((most, line)) if most > defaults[t] => (most, Some(line)),
            _ => (defaults[t], None),
        })
    }

    /// Promotion and decay per tier as the scenario gets them: fitted, rounded so that
    /// each tier's sum stays at most 1 (with a flag where that meant rounding one down), or
    /// the default where no user of the tier was active on two consecutive days.
    fn tier_rates(&self) -> ([f64; 4], [f64; 4], [bool; 4]) {
        let d = PlanScenario::default().tiers;
        let (d_up, d_down) = (d.promote_per_day.by_tier(), d.decay_per_day.by_tier());
        let (mut up, mut down, mut adjusted) = ([0.0; 4], [0.0; 4], [false; 4]);
        for t in 0..4 {
            let fitted_up = self.promote_per_day[t].map_or(d_up[t], |e| e.value);
            let fitted_down = self.decay_per_day[t].map_or(d_down[t], |e| e.value);
            (up[t], down[t], adjusted[t]) = round_moves(fitted_up, fitted_down);
        }
        (up, down, adjusted)
    }

    /// The scenario as TOML, each fitted key with its fit's quality in a comment and each key
    /// the history cannot show marked so. `ledger-sim plan` reads it as it is.
    pub fn toml(&self) -> String {
        let s = self.scenario();
        let d = PlanScenario::default();
        let mut o = String::new();
        let w = &mut o;
        line(w, &format!("# A planner scenario fitted by `ledger-sim plan --fit {}`", self.origin));
        line(
            w,
            &format!(
                "# from {} requests of {} users over {} days. Beside each fitted key: n (what it was",
                self.n_requests, self.n_users, self.days
            ),
        );
        line(w, "# fitted from), the standard error (se) of each parameter, and a test of the fit.");
        line(w, "# Keys marked \"not in the history\" are at their defaults: set them.");
        for warning in self.warnings() {
            line(w, "#");
            paragraph(w, &warning);
        }
        line(w, &format!("name = {:?}", s.name));
        kv(w, "days", s.days, "the UTC days from the first request's to the last's");
        kv(
            w,
            "start_ms",
            s.start_ms,
            &format!("{}: midnight (UTC) of the first request's day, the plan's day 0", utc(s.start_ms)),
        );
        kv(w, "seeds", s.seeds, "default");
        kv(w, "pool_initial_sats", d.pool_initial_sats, "not in the history: the default");
        kv(w, "credit_pct", fmt_f64(d.credit_pct), "not in the history: the default");
        kv(w, "reservation_ttl_ms", d.reservation_ttl_ms, "not in the history: the default");
        self.toml_population(w, &s);
        self.toml_requests(w, &s);
        self.toml_cost(w, &s);
        self.toml_payment(w, &s);
        self.toml_tiers(w, &s);
        let budgets = self.budgets();
        if budgets.iter().all(|(_, raised)| raised.is_none()) {
            line(w, "\n[budget]  # not in the history: the defaults");
        } else {
            line(w, "\n[budget]  # not in the history: the defaults, but where the history shows one too small");
        }
        let defaults = default_budgets();
        for (i, (tier, (v, raised))) in Tier::ALL.iter().zip(budgets).enumerate() {
            match raised {
                None => line(w, &format!("{tier} = {v}")),
                Some(at) => kv(
                    w,
                    tier.as_str(),
                    v,
                    &format!(
                        "raised from the default {}: a user of the tier was given a request of {v} sats free (line \
                         {at}), which a smaller daily budget cannot give; a lower bound, not the budget: set it",
                        defaults[i]
                    ),
                ),
            }
        }
        line(w, "\n[partial]  # not in the history: the defaults");
        line(w, &format!("enabled = {}", d.partial.enabled));
        line(w, &format!("min_offer_sats = {}", d.partial.min_offer_sats));
        line(w, "on_refused = \"requote\"");
        o
    }

    fn toml_population(&self, w: &mut String, s: &PlanScenario) {
        line(w, "\n[population]");
        let users = s.population.by_tier();
        let day = if self.first_day == 0 { "day 0".to_owned() } else { format!("day {}", self.first_day) };
        if self.active_share.iter().all(Option::is_none) {
            line(w, "# users active on day 0 (no day after a user's first: none unseen can be counted)");
            for (i, tier) in Tier::ALL.iter().enumerate() {
                kv(w, tier.as_str(), users[i], &format!("{} active on day 0", self.active_first_day[i]));
            }
        } else {
            let cycle = match self.weekly {
                Some(m) => {
                    let days: Vec<String> = WEEKDAYS.iter().zip(m).map(|(d, m)| format!("{d} {m:.2}")).collect();
                    format!(
                        ", with a weekly cycle (active users by UTC day of the week against the week's mean: {}; \
                         the planner draws every day at the mean)",
                        days.join(", ")
                    )
                }
                None => " (no weekly cycle: fewer than two of each day of the week)".to_owned(),
            };
            let over = if self.days_fitted == self.days {
                format!("{} days", self.days)
            } else {
                format!("the {} days of {} the history holds whole", self.days_fitted, self.days)
            };
            paragraph(
                w,
                &format!(
                    "{:.1} users at day 0 (se {:.1}): the users each day shows (each tier's active users over the \
                     tier's share of user-days with a request) fitted by a log-linear trend over {over}{cycle}, \
                     its level at day 0; split into tiers as {day}'s users are. A user's day without a request \
                     counts in the tier of their last request.",
                    self.users.value, self.users.se
                ),
            );
            for (i, tier) in Tier::ALL.iter().enumerate() {
                let e = self.population[i];
                let note = match self.active_share[i] {
                    Some(q) => format!(
                        "{} active on {day}, active on {:.2} % of user-days (se {} %, n = {}); se {:.1}",
                        self.active_first_day[i],
                        q.value * 100.0,
                        fmt_se(q.se * 100.0, false),
                        q.n,
                        e.se
                    ),
                    None if self.active_first_day[i] > 0 => format!(
                        "{} active on {day}, over the share of all tiers: {} active user-days of the tier after \
                         its users' first, too few for its own (at least {MIN_ACTIVE_DAYS}); se {:.1}",
                        self.active_first_day[i], self.active_days[i], e.se
                    ),
                    None => format!("none active on {day}"),
                };
                kv(w, tier.as_str(), users[i], &note);
            }
        }
        let note = match self.growth_pct_per_day {
            Some(g) => format!(
                "se {}; the slope of the same fit, through each tier's active users over its share, over {} days{}",
                fmt_se(g.se, false),
                g.n,
                if g.value < 0.0 {
                    format!(" (fitted {:.3}: shrinking, which the model cannot do)", g.value)
                } else {
                    String::new()
                }
            ),
            None => "not fitted: fewer than 3 days".to_owned(),
        };
        kv(w, "growth_pct_per_day", fmt_f64(s.population.growth_pct_per_day), &note);
    }

    fn toml_requests(&self, w: &mut String, s: &PlanScenario) {
        line(w, "\n[requests]");
        match &self.per_user_per_day {
            Some(d) => line(w, &format!("# {}", d.quality)),
            None => line(w, "# not fitted: no day after a user's first; the default"),
        }
        line(w, &format!("per_user_per_day = {}", dist_toml(&s.requests.per_user_per_day)));
        let worst = self.hourly_share.iter().map(|e| e.se * 24.0).fold(0.0, f64::max);
        let homogeneity = self.hourly_homogeneity_p.map_or("one day: no test".to_owned(), |p| {
            format!("chi-square p = {} that every day has this cycle", fmt_p(p))
        });
        line(
            w,
            &format!(
                "# n = {} requests by UTC hour, times 24 (mean 1); largest se of a weight {}; {homogeneity}",
                self.hourly_share[0].n,
                fmt_se(worst, false)
            ),
        );
        let weights: Vec<String> = s.requests.hourly_weights.iter().map(|v| fmt_f64(*v)).collect();
        line(w, &format!("hourly_weights = [{}]", weights.join(", ")));
        kv(w, "even", false, "arrivals drawn from the cycle");
        let e = self.session_share;
        kv(w, "session_share", fmt_f64(s.requests.session_share), &format!("n = {}; {}", e.n, share_uncertainty(e)));
        if self.per_user_per_day_by_tier.iter().any(Option::is_some) {
            line(w, "\n[requests.per_user_per_day_by_tier]");
            let tests: Vec<String> = [
                ("requests per active user-day by Kruskal-Wallis", self.tiers.requests),
                ("days active by chi-square", self.tiers.activity),
            ]
            .into_iter()
            .filter_map(|(what, t)| t.map(|t| (what, fmt_p(t.p))))
            .map(|(what, p)| if p.starts_with('<') { format!("{what} p {p}") } else { format!("{what} p = {p}") })
            .collect();
            line(
                w,
                &format!(
                    "# The tiers differ in requests per user per day ({}): each tier with at least \
                     {TIER_MIN_ACTIVE_DAYS} active user-days, fitted on the days its users have it; a tier not named \
                     here draws from per_user_per_day.",
                    tests.join("; ")
                ),
            );
            let own = s.requests.per_user_per_day_by_tier.by_tier();
            for (i, d) in self.per_user_per_day_by_tier.iter().enumerate() {
                if let (Some(d), Some(dist)) = (d, own[i]) {
                    line(w, &format!("# {}", d.quality));
                    line(w, &format!("{} = {}", Tier::ALL[i], dist_toml(dist)));
                }
            }
        }
    }

    fn toml_cost(&self, w: &mut String, s: &PlanScenario) {
        line(w, "\n[cost]");
        line(w, &format!("# {}", self.estimate_sats.quality));
        line(w, &format!("estimate_sats = {}", dist_toml(&s.cost.estimate_sats)));
        match &self.actual_pct {
            Some(d) => line(w, &format!("# {}", d.quality)),
            None => line(w, "# not fitted: no work ran on an estimate of 10 sats or more; the default"),
        }
        line(w, &format!("actual_pct = {}", dist_toml(&s.cost.actual_pct)));
        kv(w, "work_ms", s.cost.work_ms, "not in the history: the default");
        let note = share_note(self.work_failure, "requests whose work ran (free or paid)");
        kv(w, "work_failure", fmt_f64(s.cost.work_failure), &note);
        if self.estimate_sats_by_tier.iter().any(Option::is_some) {
            line(w, "\n[cost.estimate_sats_by_tier]");
            let test = self.tiers.estimates.map_or(String::new(), |t| {
                let p = fmt_p(t.p);
                let p = if p.starts_with('<') { format!("p {p}") } else { format!("p = {p}") };
                format!(" (Kruskal-Wallis {p}, epsilon-squared {:.3})", t.effect)
            });
            let means: Vec<String> = Tier::ALL
                .iter()
                .zip(&self.tiers.tiers)
                .filter_map(|(tier, f)| {
                    f.map(|f| format!("{tier} {:.1} sats, {:.2} times the mean", f.mean_estimate, f.estimate_ratio))
                })
                .collect();
            line(
                w,
                &format!(
                    "# The tiers differ in their estimates{test}; mean estimate: {}. Each tier with at least \
                     {TIER_MIN_REQUESTS} requests, fitted on its own; a tier not named here draws from \
                     estimate_sats.",
                    means.join("; ")
                ),
            );
            let own = s.cost.estimate_sats_by_tier.by_tier();
            for (i, d) in self.estimate_sats_by_tier.iter().enumerate() {
                if let (Some(d), Some(dist)) = (d, own[i]) {
                    line(w, &format!("# {}", d.quality));
                    line(w, &format!("{} = {}", Tier::ALL[i], dist_toml(dist)));
                }
            }
        }
    }

    fn toml_payment(&self, w: &mut String, s: &PlanScenario) {
        line(w, "\n[payment]");
        kv(w, "gate_paid", fmt_f64(s.payment.gate_paid), &share_note(self.gate_paid, "gated requests"));
        kv(w, "partial_paid", fmt_f64(s.payment.partial_paid), &share_note(self.partial_paid, "partial offers"));
        kv(w, "pay_delay_ms", s.payment.pay_delay_ms, "not in the history: the default");
    }

    fn toml_tiers(&self, w: &mut String, s: &PlanScenario) {
        line(w, "\n[tiers]");
        line(w, "# per tier: moves up (down) over pairs of consecutive days a user is active");
        let (_, _, adjusted) = self.tier_rates();
        // Elite has no tier above, new none below: the model holds those at 0.
        for (name, rates, fitted, fixed_at_zero) in [
            ("promote_per_day", &s.tiers.promote_per_day, &self.promote_per_day, Tier::Elite),
            ("decay_per_day", &s.tiers.decay_per_day, &self.decay_per_day, Tier::New),
        ] {
            let mut parts = Vec::new();
            let mut notes = Vec::new();
            let mut unfitted = Vec::new();
            for (i, tier) in Tier::ALL.iter().enumerate().filter(|(_, t)| **t != fixed_at_zero) {
                parts.push(format!("{tier} = {}", fmt_f64(rates.by_tier()[i])));
                match fitted[i] {
                    Some(e) => notes.push(format!(
                        "{tier} n = {}{}{}",
                        e.n,
                        match share_uncertainty(e) {
                            se if se.starts_with("se ") => format!(" {se}"),
                            bound => format!(": {bound}"),
                        },
                        if adjusted[i] { " (rounded down: promotion + decay at most 1)" } else { "" }
                    )),
                    None => unfitted.push(tier.as_str()),
                }
            }
            if !unfitted.is_empty() {
                notes.push(format!(
                    "{} not fitted: no such user active on two consecutive days; the default",
                    unfitted.join(", ")
                ));
            }
            line(w, &format!("{name} = {{ {} }}  # {}", parts.join(", "), notes.join("; ")));
        }
        if self.tier_jumps > 0 {
            line(
                w,
                &format!("# {} day-to-day moves of more than one tier left out (the model has none)", self.tier_jumps),
            );
        }
    }
}

/// Days as dates, runs of consecutive days as one range: `2025-03-13 to 2025-03-22 (days 10 to
/// 19)`; at most ten runs, then how many more.
fn day_ranges(days: &[u32], date: impl Fn(u32) -> String) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &d in days {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == d => run.1 = d,
            _ => runs.push((d, d)),
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(10)
        .map(|&(a, b)| {
            if a == b {
                format!("{} (day {a})", date(a))
            } else {
                format!("{} to {} (days {a} to {b})", date(a), date(b))
            }
        })
        .collect();
    if runs.len() > 10 {
        parts.push(format!("and {} more runs of days", runs.len() - 10));
    }
    parts.join(", ")
}

fn share_note(e: Option<Estimate>, of: &str) -> String {
    match e {
        Some(e) => format!("n = {} {of}; {}", e.n, share_uncertainty(e)),
        None => format!("not fitted: no {of}; the default"),
    }
}

/// How uncertain a share fitted as a proportion is, for its comment: `se 0.0045`; or, for none
/// or all of its `n` (where the binomial standard error is 0, a certainty no sample gives), the
/// rule of three's 95 % bound: below 3/n for none, above 1 - 3/n for all.
fn share_uncertainty(e: Estimate) -> String {
    let bound = 3.0 / e.n as f64;
    let too_few = if bound >= 1.0 { ": too few to bound it" } else { "" };
    if e.value == 0.0 {
        format!("none, 95 % upper bound {} (rule of three, 3/n{too_few})", fmt_f64(round4(bound.min(1.0))))
    } else if e.value == 1.0 {
        format!("all, 95 % lower bound {} (rule of three, 1 - 3/n{too_few})", fmt_f64(round4((1.0 - bound).max(0.0))))
    } else {
        format!("se {}", fmt_se(e.se, false))
    }
}

/// `text` as comment lines of at most about 100 characters.
fn paragraph(w: &mut String, text: &str) {
    let mut current = String::from("#");
    for word in text.split(' ') {
        if current.len() + 1 + word.len() > 100 && current.len() > 1 {
            line(w, &current);
            current = String::from("#");
        }
        current.push(' ');
        current.push_str(word);
    }
    line(w, &current);
}

fn line(w: &mut String, text: &str) {
    w.push_str(text);
    w.push('\n');
}

fn kv(w: &mut String, key: &str, value: impl std::fmt::Display, note: &str) {
    writeln!(w, "{key} = {value}  # {note}").expect("writing to a String cannot fail");
}

/// A distribution as an inline TOML table.
fn dist_toml(d: &Dist) -> String {
    let kind = match d.dist {
        DistKind::Fixed => "fixed",
        DistKind::Uniform => "uniform",
        DistKind::Poisson => "poisson",
        DistKind::Negbinomial => "negbinomial",
        DistKind::Lognormal => "lognormal",
    };
    let mut parts = vec![format!("dist = \"{kind}\"")];
    for (name, v) in [
        ("value", d.value),
        ("mean", d.mean),
        ("shape", d.shape),
        ("median", d.median),
        ("sigma", d.sigma),
        ("min", d.min),
        ("max", d.max),
    ] {
        if let Some(v) = v {
            parts.push(format!("{name} = {}", fmt_f64(v)));
        }
    }
    format!("{{ {} }}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean the fit says a count distribution draws is the mean of what the planner's
    /// sampler draws, rounded as a day's count is: within 1 % of 200,000 draws.
    #[test]
    fn the_drawn_count_mean_is_what_the_sampler_draws() {
        use rand::SeedableRng;
        for (i, d) in [
            Dist::lognormal(0.6, 1.3, Some(40.0)),
            Dist::lognormal(3.0, 0.4, Some(12.0)),
            Dist::lognormal(0.2, 2.0, None),
            Dist::poisson(2.5),
            Dist::negbinomial(2.5, 0.4),
            Dist::negbinomial(0.7, 3.0),
            Dist::fixed(3.0),
        ]
        .into_iter()
        .enumerate()
        {
            let sampler = crate::model::Sampler::new(&d, crate::scenario::PER_USER_PER_DAY_RANGE);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let n = 200_000;
            let mean = (0..n).map(|_| sampler.draw(&mut rng).round().max(0.0)).sum::<f64>() / f64::from(n);
            let said = drawn_count_mean(&d);
            assert!((said - mean).abs() <= 0.01 * mean, "{d:?}: said {said}, drawn {mean}");
        }
    }

    /// The mean the fit says `cost.actual_pct` draws is the mean of what the planner's sampler
    /// draws: within 0.5 % of 200,000 draws, clamped log-normals among them.
    #[test]
    fn the_drawn_pct_mean_is_what_the_sampler_draws() {
        use rand::SeedableRng;
        for (i, d) in [
            Dist { max: Some(400.0), ..Dist::lognormal(90.0, 0.2, None) },
            Dist { max: Some(150.0), ..Dist::lognormal(80.0, 0.9, None) },
            Dist { min: Some(50.0), max: Some(120.0), ..Dist::lognormal(60.0, 0.5, None) },
            Dist::lognormal(300.0, 1.5, None),
            Dist::uniform(60.0, 110.0),
            Dist::fixed(95.0),
        ]
        .into_iter()
        .enumerate()
        {
            let sampler = crate::model::Sampler::new(&d, crate::scenario::ACTUAL_PCT_RANGE);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let n = 200_000;
            let mean = (0..n).map(|_| sampler.draw(&mut rng)).sum::<f64>() / f64::from(n);
            let said = drawn_pct_mean(&d);
            assert!((said - mean).abs() <= 0.005 * mean, "{d:?}: said {said}, drawn {mean}");
        }
    }

    /// Every pair of shares k/n and m/n with k + m <= n keeps its sum at most 1 after
    /// rounding, each within one step of the fourth digit of its share.
    #[test]
    fn promotion_and_decay_round_to_at_most_1() {
        for n in 1..=400u32 {
            for k in 0..=n {
                let m = n - k;
                let (up, down) = (f64::from(k) / f64::from(n), f64::from(m) / f64::from(n));
                let (r_up, r_down, adjusted) = round_moves(up, down);
                assert!(r_up + r_down <= 1.0, "{k}/{n} and {m}/{n}: {r_up} + {r_down}");
                for (r, x) in [(r_up, up), (r_down, down)] {
                    let step = if x > 0.0 { 10f64.powi(x.log10().floor() as i32 - 3) } else { 0.0 };
                    assert!((r - x).abs() <= step * (1.0 + 1e-9), "{k}/{n}: {r} for {x}");
                }
                assert_eq!(adjusted, round4(up) + round4(down) > 1.0);
            }
        }
        assert_eq!(round_moves(1.0 / 11.0, 10.0 / 11.0), (0.09091, 0.909, true));
        assert_eq!(round_moves(0.02, 0.001), (0.02, 0.001, false));
    }
}
