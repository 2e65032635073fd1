//! The planner's scenario: a TOML schema of its own, documented field by field.
//!
//! It describes a population and its traffic over many days, not interleavings: how many
//! users of each tier there are and how the population grows, how many requests each sends
//! per day and when, what requests cost, how users answer invoices, how tiers change, and
//! the ledger's configuration. Every key has a default, but a file that sets no key at all
//! (empty, or only comments) is refused as a truncated file or a mistake: to plan the defaults,
//! set one key to its default (`days = 30`). Unknown keys are errors naming the key and line (`deny_unknown_fields`); values
//! out of range are errors naming the dotted key and, when it is in the file, its line.
//!
//! # Fields
//!
//! Top level:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | `""` | a label for reports |
//! | `days` | `30` | days to simulate, `1..=3650` |
//! | `seeds` | `20` | Monte Carlo runs per configuration, `1..=100000` (`--seeds` overrides) |
//! | `seed` | `1` | first seed, at most `9223372036854775807` (the largest TOML integer); run `k` uses seed `seed + k` |
//! | `start_ms` | `1704067200000` | virtual time of day 0, midnight (2024-01-01 UTC), at least `1231027200000` (2009-01-04, the first midnight after Bitcoin's genesis block: a history reads no earlier time), at most `4102444800000` (2100-01-01) |
//! | `pool_initial_sats` | `10000` | the pool's genesis balance (`FREE_TIER_POOL_INITIAL_SATS`), `0..=1000000000000000` |
//! | `credit_pct` | `10` | share of every paid invoice credited to the pool, `0..=100`, at most two decimals (`FREE_TIER_POOL_CREDIT_PCT`) |
//! | `reservation_ttl_ms` | `600000` | how long a reservation may stay outstanding before `expire`, `1..=2592000000` (30 days) |
//!
//! `[population]`: users at day 0, per tier, and growth.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `new`, `established`, `trusted`, `elite` | `300, 150, 40, 10` | users of each tier at day 0 (total `1..=10000000`) |
//! | `growth_pct_per_day` | `0` | users joining per day as a percentage of the current population, `0..=100`; they join as `new` |
//!
//! `[requests]`: traffic.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `per_user_per_day` | `{ dist = "poisson", mean = 2 }` | requests each user sends per day, a [`Dist`] in `0..=10000` (rounded to whole requests) |
//! | `per_user_per_day_by_tier` | none | a table of `per_user_per_day` for the users of some tiers (`new`, `established`, `trusted`, `elite`), each a [`Dist`] in `0..=10000`; a tier not named draws from `per_user_per_day`. A user draws from the distribution of the tier it has that day |
//! | `hourly_weights` | 24 × `1` | the daily cycle: relative traffic of each hour (UTC), 24 non-negative numbers with a positive sum |
//! | `even` | `false` | deterministic arrivals: a user's `n` requests of a day are spaced evenly (at `(2k+1)/2n` of the day) instead of drawn from the cycle |
//! | `session_share` | `0.3` | share of requests that are synchronous sessions (the rest are asynchronous jobs), `0..=1` |
//!
//! `[cost]`: what requests cost and how long work runs.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `estimate_sats` | `{ dist = "lognormal", median = 30, sigma = 0.8, max = 2000 }` | the estimated cost `decide` sees, a [`Dist`] in `1..=1000000000` (rounded, at least 1) |
//! | `estimate_sats_by_tier` | none | a table of `estimate_sats` for the requests of users of some tiers (`new`, `established`, `trusted`, `elite`), each a [`Dist`] in `1..=1000000000`; a tier not named draws from `estimate_sats`. A request draws from the distribution of the tier its user has when it arrives |
//! | `actual_pct` | `{ dist = "uniform", min = 60, max = 110 }` | the actual cost as a percentage of the estimate, a [`Dist`] in `0..=1000` |
//! | `work_ms` | `30000` | how long work runs (reservations are held meanwhile), `0..=86400000` |
//! | `work_failure` | `0.02` | probability that work fails (the reservation is released), `0..=1` |
//!
//! `[payment]`: how users answer invoices.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `gate_paid` | `0.5` | probability that a user pays a full (gated) invoice; otherwise the request is abandoned |
//! | `partial_paid` | `0.85` | probability that a user pays the reduced invoice of a partial offer; otherwise it is abandoned and nothing is reserved |
//! | `pay_delay_ms` | `60000` | time from a job's decision to its invoice being paid (other traffic runs meanwhile, so a partial offer can go stale), `0..=86400000` |
//!
//! `[tiers]`: trust changes, applied to each user at the end of each day.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `promote_per_day` | `{ new = 0.02, established = 0.005, trusted = 0.001 }` | probability per day of moving one tier up; `elite` must be 0 |
//! | `decay_per_day` | `{ established = 0.001, trusted = 0.001, elite = 0.001 }` | probability per day of moving one tier down; `new` must be 0 |
//!
//! Each holds `new`, `established`, `trusted`, `elite` (default 0), each in `0..=1`, and
//! promotion plus decay of a tier at most 1.
//!
//! `[budget]`: daily free budget per tier in sats (`FREE_TIER_BUDGET_*`): `new = 0`,
//! `established = 50`, `trusted = 200`, `elite = 1000`, each in `0..=1000000000000`.
//!
//! `[partial]`: what the service does with a partial offer.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `enabled` | `true` | `false`: the service never makes partial offers; a partial decision is charged in full like a gate |
//! | `min_offer_sats` | `1` | offers below this are not made (charged in full), `1..=1000000000` |
//! | `on_refused` | `"requote"` | when `reserve_partial` is refused because the offer went stale: `"requote"` reserves what is available and invoices the rest, `"charge_full"` invoices the whole offer |
//!
//! A [`Dist`] is an inline table with a `dist` kind and its parameters:
//! `{ dist = "fixed", value = V }`, `{ dist = "uniform", min = A, max = B }`,
//! `{ dist = "poisson", mean = M }` (`M <= 1000`),
//! `{ dist = "negbinomial", mean = M, shape = R }` (a negative binomial: a Poisson whose mean
//! is itself drawn from a gamma distribution of mean `M` and shape `R`, so that its variance is
//! `M + M^2 / R`; `M <= 1000`, `0.001 <= R <= 1000000`; counts that vary more than a Poisson's,
//! such as users who come on some days and not others), or
//! `{ dist = "lognormal", median = M, sigma = S, min = A, max = B }` (`min` and `max`
//! optional clamps, by default the ends of the key's range; `S <= 5`). A parameter the kind
//! does not use is an error. Every draw stays in its key's range: one beyond it (a
//! `lognormal` tail, a `poisson` above `cost.actual_pct`'s 1000) is clamped to its end.

use std::fmt;

use ledger_core::{Bps, Budgets, Config, Sats, Tier, DAY_MS};
use serde::{Deserialize, Serialize};

// The planner's bounds on a scenario, stated once: [`PlanScenario::validate`] enforces them,
// and the history reader ([`crate::history`]) and the fitter ([`crate::fit`]) derive theirs
// from them, so that every history the planner writes reads back and every fit loads.

/// The most days a scenario may have.
pub const MAX_DAYS: u32 = 3650;

/// The most Monte Carlo runs per configuration.
pub const MAX_SEEDS: u32 = 100_000;

/// The earliest `start_ms`: 2009-01-04 UTC, the first midnight after Bitcoin's genesis block
/// (2009-01-03T18:15:05Z), before which no sat was paid and which a history's times may not
/// precede ([`crate::history::MIN_TIME_MS`]): so what a run writes with `--history-out` reads
/// back, and a fitted `start_ms` (a midnight) is one a scenario takes.
pub const MIN_START_MS: u64 = 1_231_027_200_000;

/// The latest `start_ms`: 2100-01-01 UTC.
pub const MAX_START_MS: u64 = 4_102_444_800_000;

/// The largest `seed`: the largest integer TOML writes (2^63 - 1), so a scenario read from
/// elsewhere (a shard's JSON) is one a file can hold, and `seed + k` never overflows.
pub const MAX_SEED: u64 = i64::MAX as u64;

/// The most users at day 0, of each tier and in all.
pub const MAX_POPULATION: u64 = 10_000_000;

/// The most requests `requests.per_user_per_day` may give a user in a day.
pub const MAX_PER_USER_PER_DAY: u64 = 10_000;

/// The largest `mean` of a `poisson` distribution.
pub const MAX_POISSON_MEAN: f64 = 1000.0;

/// The smallest and the largest `shape` of a `negbinomial` distribution: from counts almost all
/// zero or huge, to a Poisson's.
pub const NEGBINOMIAL_SHAPE_RANGE: (f64, f64) = (0.001, 1_000_000.0);

/// The largest `sigma` of a `lognormal` distribution.
pub const MAX_LOGNORMAL_SIGMA: f64 = 5.0;

/// The largest estimate in sats `cost.estimate_sats` may give.
pub const MAX_ESTIMATE_SATS: u64 = 1_000_000_000;

/// The largest actual cost as a percentage of the estimate (`cost.actual_pct`).
pub const MAX_ACTUAL_PCT: u64 = 1000;

/// The longest `cost.work_ms` and `payment.pay_delay_ms`: a day.
pub const MAX_DELAY_MS: u64 = DAY_MS;

/// The largest daily free budget of a tier in sats.
pub const MAX_BUDGET_SATS: u64 = 1_000_000_000_000;

/// The largest `pool_initial_sats`.
pub const MAX_POOL_INITIAL_SATS: u64 = 1_000_000_000_000_000;

/// The longest `reservation_ttl_ms`: 30 days.
pub const MAX_RESERVATION_TTL_MS: u64 = 30 * DAY_MS;

/// The largest `partial.min_offer_sats`.
pub const MAX_MIN_OFFER_SATS: u64 = 1_000_000_000;

/// The values `requests.per_user_per_day` may give (`lo`, `hi`, inclusive): a draw beyond is
/// clamped to the nearer end (see [`crate::model::Sampler`]).
pub const PER_USER_PER_DAY_RANGE: (f64, f64) = (0.0, MAX_PER_USER_PER_DAY as f64);

/// The values `cost.estimate_sats` may give, as [`PER_USER_PER_DAY_RANGE`].
pub const ESTIMATE_SATS_RANGE: (f64, f64) = (1.0, MAX_ESTIMATE_SATS as f64);

/// The values `cost.actual_pct` may give, as [`PER_USER_PER_DAY_RANGE`].
pub const ACTUAL_PCT_RANGE: (f64, f64) = (0.0, MAX_ACTUAL_PCT as f64);

/// A scenario for `ledger-sim plan`. See the [module documentation](self) for every field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanScenario {
    /// A label for reports.
    pub name: String,
    /// Days to simulate.
    pub days: u32,
    /// Monte Carlo runs per configuration.
    pub seeds: u32,
    /// First seed.
    pub seed: u64,
    /// Virtual time of day 0 (a midnight).
    pub start_ms: u64,
    /// Users at day 0 and growth.
    pub population: Population,
    /// Traffic.
    pub requests: Requests,
    /// Costs and work.
    pub cost: Cost,
    /// How users answer invoices.
    pub payment: Payment,
    /// Trust changes.
    pub tiers: TierMoves,
    /// Daily free budget per tier.
    pub budget: BudgetSats,
    /// The pool's genesis balance.
    pub pool_initial_sats: u64,
    /// Credit percentage of paid invoices.
    pub credit_pct: f64,
    /// Reservation deadline.
    pub reservation_ttl_ms: u64,
    /// Partial-offer behaviour.
    pub partial: PartialOffers,
}

impl Default for PlanScenario {
    fn default() -> PlanScenario {
        PlanScenario {
            name: String::new(),
            days: 30,
            seeds: 20,
            seed: 1,
            start_ms: 1_704_067_200_000,
            population: Population::default(),
            requests: Requests::default(),
            cost: Cost::default(),
            payment: Payment::default(),
            tiers: TierMoves::default(),
            budget: BudgetSats::default(),
            pool_initial_sats: 10_000,
            credit_pct: 10.0,
            reservation_ttl_ms: 600_000,
            partial: PartialOffers::default(),
        }
    }
}

/// Users at day 0 per tier, and growth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Population {
    /// Users of tier `new`.
    pub new: u64,
    /// Users of tier `established`.
    pub established: u64,
    /// Users of tier `trusted`.
    pub trusted: u64,
    /// Users of tier `elite`.
    pub elite: u64,
    /// New users per day, percent of the population.
    pub growth_pct_per_day: f64,
}

impl Default for Population {
    fn default() -> Population {
        Population { new: 300, established: 150, trusted: 40, elite: 10, growth_pct_per_day: 0.0 }
    }
}

impl Population {
    /// Users per tier in [`Tier::ALL`] order.
    pub fn by_tier(&self) -> [u64; 4] {
        [self.new, self.established, self.trusted, self.elite]
    }
}

/// A distribution kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistKind {
    /// Always `value`.
    Fixed,
    /// Uniform on `min..=max`.
    Uniform,
    /// Poisson with `mean`.
    Poisson,
    /// Negative binomial with `mean` and `shape`: Poisson with a gamma-distributed mean.
    Negbinomial,
    /// Log-normal with `median` and `sigma` (of the underlying normal), clamped to `min..=max`.
    Lognormal,
}

/// A distribution: `{ dist = "...", ... }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dist {
    /// The kind.
    pub dist: DistKind,
    /// `fixed`: the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `poisson`, `negbinomial`: the mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// `negbinomial`: the shape of the gamma distribution of the Poisson's mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<f64>,
    /// `lognormal`: the median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// `lognormal`: sigma of the underlying normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// `uniform`: lower bound; `lognormal`: optional clamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// `uniform`: upper bound; `lognormal`: optional clamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Dist {
    /// `{ dist = "fixed", value = v }`.
    pub fn fixed(v: f64) -> Dist {
        Dist {
            dist: DistKind::Fixed,
            value: Some(v),
            mean: None,
            shape: None,
            median: None,
            sigma: None,
            min: None,
            max: None,
        }
    }

    /// `{ dist = "uniform", min, max }`.
    pub fn uniform(min: f64, max: f64) -> Dist {
        Dist { min: Some(min), max: Some(max), dist: DistKind::Uniform, value: None, ..Dist::fixed(0.0) }
    }

    /// `{ dist = "poisson", mean }`.
    pub fn poisson(mean: f64) -> Dist {
        Dist { dist: DistKind::Poisson, value: None, mean: Some(mean), ..Dist::fixed(0.0) }
    }

    /// `{ dist = "negbinomial", mean, shape }`.
    pub fn negbinomial(mean: f64, shape: f64) -> Dist {
        Dist { dist: DistKind::Negbinomial, value: None, mean: Some(mean), shape: Some(shape), ..Dist::fixed(0.0) }
    }

    /// `{ dist = "lognormal", median, sigma, max }`.
    pub fn lognormal(median: f64, sigma: f64, max: Option<f64>) -> Dist {
        Dist {
            dist: DistKind::Lognormal,
            value: None,
            median: Some(median),
            sigma: Some(sigma),
            max,
            ..Dist::fixed(0.0)
        }
    }

    /// Check the parameters of the kind; `key` is the dotted key, `lo..=hi` the range of the
    /// values the distribution may produce.
    fn check(&self, key: &str, (lo, hi): (f64, f64), errs: &mut Checks) {
        let params = [
            ("value", self.value),
            ("mean", self.mean),
            ("shape", self.shape),
            ("median", self.median),
            ("sigma", self.sigma),
            ("min", self.min),
            ("max", self.max),
        ];
        let (needed, optional): (&[&str], &[&str]) = match self.dist {
            DistKind::Fixed => (&["value"], &[]),
            DistKind::Uniform => (&["min", "max"], &[]),
            DistKind::Poisson => (&["mean"], &[]),
            DistKind::Negbinomial => (&["mean", "shape"], &[]),
            DistKind::Lognormal => (&["median", "sigma"], &["min", "max"]),
        };
        for (name, v) in params {
            let k = format!("{key}.{name}");
            match v {
                Some(_) if !needed.contains(&name) && !optional.contains(&name) => errs.fail(
                    &k,
                    fmt_f64(v.unwrap_or(0.0)),
                    format!("not a parameter of dist = {:?}", self.dist_name()),
                ),
                None if needed.contains(&name) => {
                    errs.fail(&k, "missing", format!("dist = {:?} needs it", self.dist_name()))
                }
                Some(x) => {
                    let (a, b) = match name {
                        "sigma" => (0.0, MAX_LOGNORMAL_SIGMA),
                        "mean" => (0.0, hi.min(MAX_POISSON_MEAN)),
                        "shape" => NEGBINOMIAL_SHAPE_RANGE,
                        "median" => (f64::MIN_POSITIVE, hi),
                        _ => (lo, hi),
                    };
                    if !(x.is_finite() && x >= a && x <= b) {
                        let range = if a == f64::MIN_POSITIVE {
                            format!("must be above 0 and at most {}", fmt_f64(b))
                        } else {
                            format!("must be in {}..={}", fmt_f64(a), fmt_f64(b))
                        };
                        errs.fail(&k, fmt_f64(x), range);
                    }
                }
                None => {}
            }
        }
        if let (Some(a), Some(b)) = (self.min, self.max) {
            if a > b {
                errs.fail(&format!("{key}.min"), fmt_f64(a), format!("must be at most max = {}", fmt_f64(b)));
            }
        }
    }

    fn dist_name(&self) -> &'static str {
        match self.dist {
            DistKind::Fixed => "fixed",
            DistKind::Uniform => "uniform",
            DistKind::Poisson => "poisson",
            DistKind::Negbinomial => "negbinomial",
            DistKind::Lognormal => "lognormal",
        }
    }
}

/// Traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Requests {
    /// Requests per user per day.
    pub per_user_per_day: Dist,
    /// Requests per user per day of the users of one tier, where it differs from
    /// `per_user_per_day`.
    #[serde(skip_serializing_if = "TierDists::is_empty")]
    pub per_user_per_day_by_tier: TierDists,
    /// Relative traffic of each hour of the day.
    pub hourly_weights: Vec<f64>,
    /// Evenly spaced arrivals instead of random ones.
    pub even: bool,
    /// Share of requests that are sessions.
    pub session_share: f64,
}

impl Default for Requests {
    fn default() -> Requests {
        Requests {
            per_user_per_day: Dist::poisson(2.0),
            per_user_per_day_by_tier: TierDists::default(),
            hourly_weights: vec![1.0; 24],
            even: false,
            session_share: 0.3,
        }
    }
}

/// A distribution for some tiers, each one absent where the tier takes the common one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierDists {
    /// `new`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Dist>,
    /// `established`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub established: Option<Dist>,
    /// `trusted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted: Option<Dist>,
    /// `elite`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elite: Option<Dist>,
}

impl TierDists {
    /// The tiers' own distributions in [`Tier::ALL`] order.
    pub fn by_tier(&self) -> [Option<&Dist>; 4] {
        [self.new.as_ref(), self.established.as_ref(), self.trusted.as_ref(), self.elite.as_ref()]
    }

    /// Whether no tier has one of its own.
    pub fn is_empty(&self) -> bool {
        self.by_tier().iter().all(Option::is_none)
    }

    /// Sets `tier`'s.
    pub fn set(&mut self, tier: Tier, dist: Option<Dist>) {
        *match tier {
            Tier::New => &mut self.new,
            Tier::Established => &mut self.established,
            Tier::Trusted => &mut self.trusted,
            Tier::Elite => &mut self.elite,
        } = dist;
    }
}

/// Costs and work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cost {
    /// Estimated cost in sats.
    pub estimate_sats: Dist,
    /// Estimated cost in sats of the requests of users of one tier, where it differs from
    /// `estimate_sats`.
    #[serde(skip_serializing_if = "TierDists::is_empty")]
    pub estimate_sats_by_tier: TierDists,
    /// Actual cost in percent of the estimate.
    pub actual_pct: Dist,
    /// Work duration.
    pub work_ms: u64,
    /// Probability that work fails.
    pub work_failure: f64,
}

impl Default for Cost {
    fn default() -> Cost {
        Cost {
            estimate_sats: Dist::lognormal(30.0, 0.8, Some(2000.0)),
            estimate_sats_by_tier: TierDists::default(),
            actual_pct: Dist::uniform(60.0, 110.0),
            work_ms: 30_000,
            work_failure: 0.02,
        }
    }
}

/// How users answer invoices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Payment {
    /// Probability that a full invoice is paid.
    pub gate_paid: f64,
    /// Probability that a partial invoice is paid.
    pub partial_paid: f64,
    /// Decision to payment of a job's invoice.
    pub pay_delay_ms: u64,
}

impl Default for Payment {
    fn default() -> Payment {
        Payment { gate_paid: 0.5, partial_paid: 0.85, pay_delay_ms: 60_000 }
    }
}

/// A probability per tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierRates {
    /// `new`.
    pub new: f64,
    /// `established`.
    pub established: f64,
    /// `trusted`.
    pub trusted: f64,
    /// `elite`.
    pub elite: f64,
}

impl TierRates {
    /// The rates in [`Tier::ALL`] order.
    pub fn by_tier(&self) -> [f64; 4] {
        [self.new, self.established, self.trusted, self.elite]
    }
}

/// Trust changes per day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierMoves {
    /// Probability per day of moving up one tier.
    pub promote_per_day: TierRates,
    /// Probability per day of moving down one tier.
    pub decay_per_day: TierRates,
}

impl Default for TierMoves {
    fn default() -> TierMoves {
        TierMoves {
            promote_per_day: TierRates { new: 0.02, established: 0.005, trusted: 0.001, elite: 0.0 },
            decay_per_day: TierRates { new: 0.0, established: 0.001, trusted: 0.001, elite: 0.001 },
        }
    }
}

/// Daily free budget per tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSats {
    /// `new`.
    pub new: u64,
    /// `established`.
    pub established: u64,
    /// `trusted`.
    pub trusted: u64,
    /// `elite`.
    pub elite: u64,
}

impl Default for BudgetSats {
    fn default() -> BudgetSats {
        BudgetSats { new: 0, established: 50, trusted: 200, elite: 1_000 }
    }
}

/// What to do when `reserve_partial` is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRefused {
    /// Reserve what is available now and invoice the rest.
    Requote,
    /// Invoice the whole offer.
    ChargeFull,
}

/// Partial-offer behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartialOffers {
    /// Whether partial offers are made at all.
    pub enabled: bool,
    /// Smallest offer made.
    pub min_offer_sats: u64,
    /// What a refused reservation leads to.
    pub on_refused: OnRefused,
}

impl Default for PartialOffers {
    fn default() -> PartialOffers {
        PartialOffers { enabled: true, min_offer_sats: 1, on_refused: OnRefused::Requote }
    }
}

/// A scenario that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The TOML did not parse or match the schema (toml's message names the key and line).
    #[error("{origin}: {message}")]
    Toml {
        /// The file (or `--sweep`).
        origin: String,
        /// What toml said.
        message: String,
    },
    /// A file that sets no key: empty, or only white space, comments and empty tables.
    #[error(
        "{origin}: the scenario is empty (it sets no key: only white space, comments or empty tables), as a \
         file emptied by mistake is (`plan s.toml --json > s.toml` empties s.toml before the plan reads it); \
         to plan the default scenario, set one of its keys to its default, e.g. `days = 30`"
    )]
    Empty {
        /// The file.
        origin: String,
    },
    /// A value out of its range.
    #[error("{origin}{line}: {key} = {value}: {reason}", line = line.map(|l| format!(":{l}")).unwrap_or_default())]
    Range {
        /// The file (or `--sweep`).
        origin: String,
        /// The 1-based line of the key in the file, when it is there.
        line: Option<usize>,
        /// The dotted key.
        key: String,
        /// The value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A `--sweep` that cannot be applied.
    #[error("--sweep {0}")]
    Sweep(String),
    /// A `--set` that cannot be applied.
    #[error("--set {0}")]
    Set(String),
    /// A `--target` that cannot be read.
    #[error("--target {0}")]
    Target(String),
    /// A `--solve` that cannot be applied, or solver options out of range.
    #[error("--solve {0}")]
    Solve(String),
    /// A frontier's `--over` that cannot be applied.
    #[error("--over {0}")]
    Over(String),
}

/// Collects the first range error.
struct Checks {
    first: Option<(String, String, String)>,
}

impl Checks {
    fn fail(&mut self, key: &str, value: impl fmt::Display, reason: impl fmt::Display) {
        if self.first.is_none() {
            self.first = Some((key.to_owned(), value.to_string(), reason.to_string()));
        }
    }

    fn range(&mut self, key: &str, v: f64, lo: f64, hi: f64) {
        if !(v.is_finite() && v >= lo && v <= hi) {
            self.fail(key, fmt_f64(v), format!("must be in {}..={}", fmt_f64(lo), fmt_f64(hi)));
        }
    }

    fn range_u(&mut self, key: &str, v: u64, lo: u64, hi: u64) {
        if !(lo..=hi).contains(&v) {
            self.fail(key, v, format!("must be in {lo}..={hi}"));
        }
    }
}

/// A number as TOML would show it (`10` rather than `10.0` for whole numbers, every digit of
/// one below 2^63, so that a whole-number key such as `pool_initial_sats = 1e15` is set to an
/// integer and checked against its range rather than refused as a float).
pub fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9_223_372_036_854_775_808.0 {
        format!("{}", v as i64)
    } else if v.is_finite() && (v.abs() >= 1e15 || v.abs() < 1e-6) {
        // Never hundreds of digits: 1.7976931348623157e308, 2.2250738585072014e-308.
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// toml's `message` with each long number it quotes as "floating point `N`" written as
/// [`fmt_f64`] writes it: toml writes every one of the 301 digits of `1e300`.
fn compact(message: &str) -> String {
    const QUOTED: &str = "floating point `";
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(at) = rest.find(QUOTED) {
        let start = at + QUOTED.len();
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find('`').unwrap_or(rest.len());
        match rest[..end].parse::<f64>() {
            Ok(v) if end > 24 => out.push_str(&fmt_f64(v)),
            _ => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl PlanScenario {
    /// Parse and validate a scenario; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<PlanScenario, PlanError> {
        if ledger_simulator::scenario::sets_no_key(text) {
            return Err(PlanError::Empty { origin: origin.to_owned() });
        }
        let s: PlanScenario = toml::from_str(text).map_err(|e| PlanError::Toml {
            origin: origin.to_owned(),
            message: plain_counts(&compact(&e.to_string())),
        })?;
        s.validate(origin, Some(text))?;
        Ok(s)
    }

    /// Check every range. `text`, when given, is the TOML the scenario came from: errors
    /// then carry the line of the key.
    pub fn validate(&self, origin: &str, text: Option<&str>) -> Result<(), PlanError> {
        let mut c = Checks { first: None };
        if let Some(bad) = self.name.chars().find(|ch| ch.is_control()) {
            // A name is printed on the terminal: an escape sequence would drive it.
            c.fail("name", format!("{:?}", self.name), format!("a control character ({:?}) in a label", bad));
        }
        c.range_u("days", u64::from(self.days), 1, u64::from(MAX_DAYS));
        c.range_u("seeds", u64::from(self.seeds), 1, u64::from(MAX_SEEDS));
        c.range_u("seed", self.seed, 0, MAX_SEED);
        if self.start_ms < MIN_START_MS {
            c.fail(
                "start_ms",
                self.start_ms,
                format!(
                    "before {MIN_START_MS} (2009-01-04, the first midnight after Bitcoin's genesis block, \
                     before which no sat was paid): start_ms is milliseconds since the epoch; seconds? \
                     multiply by 1000"
                ),
            );
        }
        c.range_u("start_ms", self.start_ms, MIN_START_MS, MAX_START_MS);
        let p = &self.population;
        for (name, v) in ["new", "established", "trusted", "elite"].iter().zip(p.by_tier()) {
            c.range_u(&format!("population.{name}"), v, 0, MAX_POPULATION);
        }
        let total: u64 = p.by_tier().iter().sum();
        if !(1..=MAX_POPULATION).contains(&total) {
            c.fail("population", total, format!("the total population must be in 1..={MAX_POPULATION}"));
        }
        c.range("population.growth_pct_per_day", p.growth_pct_per_day, 0.0, 100.0);
        let r = &self.requests;
        r.per_user_per_day.check("requests.per_user_per_day", PER_USER_PER_DAY_RANGE, &mut c);
        for (tier, d) in Tier::ALL.iter().zip(r.per_user_per_day_by_tier.by_tier()) {
            if let Some(d) = d {
                d.check(&format!("requests.per_user_per_day_by_tier.{tier}"), PER_USER_PER_DAY_RANGE, &mut c);
            }
        }
        if r.hourly_weights.len() != 24 {
            c.fail("requests.hourly_weights", format!("{} numbers", r.hourly_weights.len()), "must hold 24 numbers");
        } else if r.hourly_weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || !(r.hourly_weights.iter().sum::<f64>() > 0.0 && r.hourly_weights.iter().sum::<f64>() < f64::MAX)
        {
            // A sum that overflows to infinity would put every request in the last hour.
            c.fail(
                "requests.hourly_weights",
                format!("{:?}", r.hourly_weights),
                "must be non-negative with a positive, finite sum",
            );
        }
        c.range("requests.session_share", r.session_share, 0.0, 1.0);
        self.cost.estimate_sats.check("cost.estimate_sats", ESTIMATE_SATS_RANGE, &mut c);
        for (tier, d) in Tier::ALL.iter().zip(self.cost.estimate_sats_by_tier.by_tier()) {
            if let Some(d) = d {
                d.check(&format!("cost.estimate_sats_by_tier.{tier}"), ESTIMATE_SATS_RANGE, &mut c);
            }
        }
        self.cost.actual_pct.check("cost.actual_pct", ACTUAL_PCT_RANGE, &mut c);
        c.range_u("cost.work_ms", self.cost.work_ms, 0, MAX_DELAY_MS);
        c.range("cost.work_failure", self.cost.work_failure, 0.0, 1.0);
        c.range("payment.gate_paid", self.payment.gate_paid, 0.0, 1.0);
        c.range("payment.partial_paid", self.payment.partial_paid, 0.0, 1.0);
        c.range_u("payment.pay_delay_ms", self.payment.pay_delay_ms, 0, MAX_DELAY_MS);
        let (up, down) = (self.tiers.promote_per_day.by_tier(), self.tiers.decay_per_day.by_tier());
        for (i, tier) in Tier::ALL.iter().enumerate() {
            c.range(&format!("tiers.promote_per_day.{tier}"), up[i], 0.0, 1.0);
            c.range(&format!("tiers.decay_per_day.{tier}"), down[i], 0.0, 1.0);
            if up[i] + down[i] > 1.0 {
                c.fail(
                    &format!("tiers.decay_per_day.{tier}"),
                    fmt_f64(down[i]),
                    "promotion + decay of a tier must be at most 1",
                );
            }
        }
        if up[3] != 0.0 {
            c.fail("tiers.promote_per_day.elite", fmt_f64(up[3]), "elite is the highest tier");
        }
        if down[0] != 0.0 {
            c.fail("tiers.decay_per_day.new", fmt_f64(down[0]), "new is the lowest tier");
        }
        let b = &self.budget;
        for (name, v) in
            ["new", "established", "trusted", "elite"].iter().zip([b.new, b.established, b.trusted, b.elite])
        {
            c.range_u(&format!("budget.{name}"), v, 0, MAX_BUDGET_SATS);
        }
        c.range_u("pool_initial_sats", self.pool_initial_sats, 0, MAX_POOL_INITIAL_SATS);
        if let Err(e) = ledger_core::config::parse_pct("credit_pct", &fmt_f64(self.credit_pct)) {
            let reason = match e {
                ledger_core::ConfigError::BadValue { reason, .. } => reason,
                other => other.to_string(),
            };
            c.fail("credit_pct", fmt_f64(self.credit_pct), reason);
        }
        c.range_u("reservation_ttl_ms", self.reservation_ttl_ms, 1, MAX_RESERVATION_TTL_MS);
        c.range_u("partial.min_offer_sats", self.partial.min_offer_sats, 1, MAX_MIN_OFFER_SATS);
        match c.first {
            None => Ok(()),
            Some((key, value, reason)) => {
                let line = text.and_then(|t| line_of(t, &key));
                Err(PlanError::Range { origin: origin.to_owned(), line, key, value, reason })
            }
        }
    }

    /// The ledger configuration the scenario runs under.
    pub fn config(&self) -> Config {
        let s = |v: u64| Sats::new(v).expect("validated range");
        let bps = ledger_core::config::parse_pct("credit_pct", &fmt_f64(self.credit_pct)).expect("validated");
        Config {
            budget_sats: Budgets {
                new: s(self.budget.new),
                established: s(self.budget.established),
                trusted: s(self.budget.trusted),
                elite: s(self.budget.elite),
            },
            pool_initial_sats: s(self.pool_initial_sats),
            credit_bps: bps,
            reservation_ttl_ms: self.reservation_ttl_ms,
        }
    }

    /// The credit rate.
    pub fn credit_bps(&self) -> Bps {
        self.config().credit_bps
    }
}

/// The 1-based line where dotted `key` (or the longest prefix of it) is set in `text`.
///
/// A small line scanner, enough for the files people write: it follows `[table]` headers
/// and matches `key =` lines, including dotted keys and keys of inline tables.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut table = String::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(h) = line.strip_prefix('[') {
            table = h.trim_end_matches(']').trim().to_owned();
            if key == table || key.starts_with(&format!("{table}.")) {
                let len = table.len();
                if best.is_none_or(|(l, _)| len > l) {
                    best = Some((len, i + 1));
                }
            }
            continue;
        }
        let Some((k, rest)) = line.split_once('=') else { continue };
        let k = k.trim().replace(' ', "");
        let full = if table.is_empty() { k } else { format!("{table}.{k}") };
        let mut candidates = vec![full.clone()];
        // Keys inside an inline table on this line: `k = { a = 1, b = 2 }`.
        if let Some(inner) = rest.trim().strip_prefix('{') {
            for part in inner.trim_end_matches('}').split(',') {
                if let Some((ik, _)) = part.split_once('=') {
                    candidates.push(format!("{full}.{}", ik.trim()));
                }
            }
        }
        for c in candidates {
            if key == c || key.starts_with(&format!("{c}.")) {
                let len = c.len();
                if best.is_none_or(|(l, _)| len > l) {
                    best = Some((len, i + 1));
                }
            }
        }
    }
    best.map(|(_, line)| line)
}

/// Keys that cannot be swept: they say how many runs there are, not what is run.
const NOT_SWEPT: [&str; 2] = ["seeds", "seed"];

/// Set dotted `key` to the number `value` (as written) in a TOML document.
pub fn set_number(doc: &mut toml::Table, key: &str, value: &str) -> Result<(), PlanError> {
    if NOT_SWEPT.contains(&key) {
        return Err(PlanError::Sweep(format!("{key}: the number of runs cannot be swept")));
    }
    let v = if let Ok(i) = value.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Some(negative) = whole_number_sign(value) {
        // A whole number judged by its digits, never read as a float that drops some of them.
        return Err(PlanError::Sweep(format!("{key}={value}: out of range: {}", out_of_range(doc, key, negative))));
    } else if let Ok(f) = value.parse::<f64>() {
        toml::Value::Float(f)
    } else {
        return Err(PlanError::Sweep(format!("{key}={value}: not a number")));
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut table = doc;
    for p in &parts[..parts.len() - 1] {
        let entry = table.entry((*p).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(PlanError::Sweep(format!("{key}: {p} is not a table"))),
        };
    }
    let last = parts[parts.len() - 1];
    if let Some(old) = table.get(last) {
        if !matches!(old, toml::Value::Integer(_) | toml::Value::Float(_)) {
            return Err(PlanError::Sweep(format!("{key}: not a numeric key")));
        }
    }
    table.insert(last.to_owned(), v);
    Ok(())
}

/// `Some(negative)` when `value` is written as a whole number (digits, a sign at most).
fn whole_number_sign(value: &str) -> Option<bool> {
    let (negative, digits) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(negative)
}

/// Why a whole number beyond TOML's integers is out of range for `key`: the key's own bound,
/// found by setting it to TOML's extreme integer on that side, or else TOML's bound.
fn out_of_range(doc: &toml::Table, key: &str, negative: bool) -> String {
    let extreme = if negative { i64::MIN } else { i64::MAX };
    let mut probe = doc.clone();
    if set_number(&mut probe, key, &extreme.to_string()).is_ok() {
        if let Err(PlanError::Range { key: k, reason, .. }) = from_table(probe, "probe") {
            if k == key {
                return reason;
            }
        }
    }
    if negative {
        format!("below {extreme}, the smallest TOML integer")
    } else {
        format!("above {extreme}, the largest TOML integer")
    }
}

/// A scenario from a TOML document with sweep overrides applied; `label` names it in errors.
pub fn from_table(doc: toml::Table, label: &str) -> Result<PlanScenario, PlanError> {
    let s = PlanScenario::deserialize(toml::Value::Table(doc))
        // serde's message ends in a line of its own (`\nin `budget``): one line, as the
        // parser's are.
        .map_err(|e| PlanError::Toml {
            origin: label.to_owned(),
            message: plain_counts(&compact(&e.to_string().trim().replace('\n', " "))),
        })?;
    s.validate(label, None)?;
    Ok(s)
}

/// serde's words for a count given a fraction or a negative number (`invalid type: floating
/// point `100.0`, expected u64 in `budget.trusted``), in a user's: what was given, and that
/// the key counts in whole numbers from 0. Any other message is kept.
fn plain_counts(message: &str) -> String {
    let unsigned = [", expected u64", ", expected u32", ", expected u16", ", expected u8"];
    let Some((head, tail)) = unsigned.iter().find_map(|u| message.split_once(u)) else {
        return message.to_owned();
    };
    // A file's message quotes the line first (`TOML parse error at line 3 ... ^^^`), serde's
    // words on the last line.
    let (snippet, head) = head.rsplit_once('\n').map_or(("", head), |(s, h)| (s, h));
    let snippet = if snippet.is_empty() { String::new() } else { format!("{snippet}\n") };
    let quoted = |prefix: &str| head.strip_prefix(prefix).and_then(|r| r.strip_suffix('`'));
    // serde names the key at the end (` in `budget.trusted``) when it is not in a file.
    let counts = match tail.strip_prefix(" in `").and_then(|k| k.strip_suffix('`')) {
        Some(key) => format!("{key} counts in whole numbers, 0 or more"),
        None => format!("this key counts in whole numbers, 0 or more{tail}"),
    };
    if let Some(v) = quoted("invalid type: floating point `") {
        let why = match v.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => format!("{v} is written as a fraction: give {f:.0}"),
            Ok(f) if f.fract() == 0.0 => format!("{v} is too large"),
            _ => format!("{v} is not a whole number"),
        };
        format!("{snippet}{why}: {counts}")
    } else if let Some(v) = quoted("invalid value: integer `") {
        format!("{snippet}{v} is negative: {counts}")
    } else {
        message.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_number_is_written_with_every_digit_below_two_to_the_63() {
        assert_eq!(fmt_f64(1e15), "1000000000000000");
        assert_eq!(fmt_f64(4e18), "4000000000000000000");
        assert_eq!(fmt_f64(1e19), "1e19");
        assert_eq!(fmt_f64(-3.0), "-3");
        assert_eq!(fmt_f64(72.5), "72.5");
        assert_eq!(fmt_f64(1e-7), "1e-7");
    }

    /// The error of `text`, or `ok`.
    fn check(text: &str) -> String {
        PlanScenario::from_toml_str(text, "s.toml").map_or_else(|e| e.to_string(), |_| "ok".to_owned())
    }

    #[test]
    fn a_scenario_that_sets_no_key_is_refused_as_empty() {
        for text in ["", "\n  \n", "# days = 3\n", "[budget]\n# trusted = 5\n"] {
            assert!(check(text).starts_with("s.toml: the scenario is empty"), "{text:?}: {}", check(text));
        }
        assert_eq!(check("days = 30\n"), "ok");
    }

    #[test]
    fn a_fraction_or_a_negative_number_for_a_count_is_said_in_words() {
        let doc = toml::Table::try_from(PlanScenario::from_toml_str("days = 30", "s.toml").unwrap()).unwrap();
        let read = |value: &str| {
            let mut d = doc.clone();
            set_number(&mut d, "budget.trusted", value).unwrap();
            from_table(d, "--set budget.trusted").unwrap_err().to_string()
        };
        assert_eq!(
            read("1e2"),
            "--set budget.trusted: 100.0 is written as a fraction: give 100: budget.trusted counts in whole \
             numbers, 0 or more"
        );
        assert!(read("2.5").contains(": 2.5 is not a whole number: "), "{}", read("2.5"));
        assert!(read("1e300").contains(": 1e300 is too large: "), "{}", read("1e300"));
        assert_eq!(
            read("-5"),
            "--set budget.trusted: -5 is negative: budget.trusted counts in whole numbers, 0 or more"
        );
        assert_eq!(plain_counts("missing field `x`"), "missing field `x`");
    }

    #[test]
    fn a_whole_number_beyond_toml_is_out_of_range_for_its_key() {
        let doc = toml::Table::try_from(PlanScenario::from_toml_str("days = 30", "s.toml").unwrap()).unwrap();
        let set = |key: &str, value: &str| set_number(&mut doc.clone(), key, value).unwrap_err().to_string();
        assert_eq!(
            set("budget.trusted", "9223372036854775808"),
            "--sweep budget.trusted=9223372036854775808: out of range: must be in 0..=1000000000000"
        );
        assert_eq!(set("seed", "9223372036854775808"), "--sweep seed: the number of runs cannot be swept");
        assert_eq!(
            set("credit_pct", "-99999999999999999999"),
            "--sweep credit_pct=-99999999999999999999: out of range: a percentage cannot be negative"
        );
        // A float is still a float.
        let mut d = doc.clone();
        set_number(&mut d, "credit_pct", "1e3").unwrap();
        assert_eq!(d["credit_pct"], toml::Value::Float(1000.0));
    }

    /// Every bound is the constant that states it, and inclusive: a scenario at it loads, one
    /// step past it is refused in the words people read.
    #[test]
    fn each_bound_holds_its_constant_and_no_more() {
        let one_user = "[population]\nnew = 0\nestablished = 0\ntrusted = 0\nelite = 1\n";
        let cases: Vec<(String, String, &str)> = vec![
            (
                format!("days = {MAX_DAYS}"),
                format!("days = {}", MAX_DAYS + 1),
                "s.toml:1: days = 3651: must be in 1..=3650",
            ),
            (
                format!("seeds = {MAX_SEEDS}"),
                format!("seeds = {}", MAX_SEEDS + 1),
                "s.toml:1: seeds = 100001: must be in 1..=100000",
            ),
            (
                format!("start_ms = {MAX_START_MS}"),
                format!("start_ms = {}", MAX_START_MS + 1),
                "s.toml:1: start_ms = 4102444800001: must be in 1231027200000..=4102444800000",
            ),
            (
                format!("start_ms = {MIN_START_MS}"),
                format!("start_ms = {}", MIN_START_MS - 1),
                "s.toml:1: start_ms = 1231027199999: before 1231027200000 (2009-01-04, the first midnight after \
                 Bitcoin's genesis block, before which no sat was paid): start_ms is milliseconds since the \
                 epoch; seconds? multiply by 1000",
            ),
            (
                format!("[population]\nnew = 0\nestablished = 0\ntrusted = 0\nelite = {MAX_POPULATION}"),
                format!("[population]\nnew = 0\nestablished = 0\ntrusted = 0\nelite = {}", MAX_POPULATION + 1),
                "s.toml:5: population.elite = 10000001: must be in 0..=10000000",
            ),
            (
                format!(
                    "[population]\nnew = {}\nestablished = {}\ntrusted = 0\nelite = 0",
                    MAX_POPULATION / 2,
                    MAX_POPULATION / 2
                ),
                format!(
                    "[population]\nnew = {}\nestablished = {}\ntrusted = 0\nelite = 0",
                    MAX_POPULATION / 2,
                    MAX_POPULATION / 2 + 1
                ),
                "s.toml:1: population = 10000001: the total population must be in 1..=10000000",
            ),
            (
                format!(
                    "{one_user}[requests]\nper_user_per_day = {{ dist = \"fixed\", value = {MAX_PER_USER_PER_DAY} }}"
                ),
                format!(
                    "{one_user}[requests]\nper_user_per_day = {{ dist = \"fixed\", value = {} }}",
                    MAX_PER_USER_PER_DAY + 1
                ),
                "s.toml:7: requests.per_user_per_day.value = 10001: must be in 0..=10000",
            ),
            (
                format!("[requests]\nper_user_per_day = {{ dist = \"poisson\", mean = {MAX_POISSON_MEAN} }}"),
                format!("[requests]\nper_user_per_day = {{ dist = \"poisson\", mean = {} }}", MAX_POISSON_MEAN + 0.5),
                "s.toml:2: requests.per_user_per_day.mean = 1000.5: must be in 0..=1000",
            ),
            (
                format!(
                    "[cost]\nestimate_sats = {{ dist = \"lognormal\", median = 30, sigma = {MAX_LOGNORMAL_SIGMA} }}"
                ),
                format!(
                    "[cost]\nestimate_sats = {{ dist = \"lognormal\", median = 30, sigma = {} }}",
                    MAX_LOGNORMAL_SIGMA + 0.5
                ),
                "s.toml:2: cost.estimate_sats.sigma = 5.5: must be in 0..=5",
            ),
            (
                format!("[cost]\nestimate_sats = {{ dist = \"fixed\", value = {MAX_ESTIMATE_SATS} }}"),
                format!("[cost]\nestimate_sats = {{ dist = \"fixed\", value = {} }}", MAX_ESTIMATE_SATS + 1),
                "s.toml:2: cost.estimate_sats.value = 1000000001: must be in 1..=1000000000",
            ),
            (
                format!("[cost]\nactual_pct = {{ dist = \"fixed\", value = {MAX_ACTUAL_PCT} }}"),
                format!("[cost]\nactual_pct = {{ dist = \"fixed\", value = {} }}", MAX_ACTUAL_PCT + 1),
                "s.toml:2: cost.actual_pct.value = 1001: must be in 0..=1000",
            ),
            (
                format!("[cost]\nwork_ms = {MAX_DELAY_MS}"),
                format!("[cost]\nwork_ms = {}", MAX_DELAY_MS + 1),
                "s.toml:2: cost.work_ms = 86400001: must be in 0..=86400000",
            ),
            (
                format!("[payment]\npay_delay_ms = {MAX_DELAY_MS}"),
                format!("[payment]\npay_delay_ms = {}", MAX_DELAY_MS + 1),
                "s.toml:2: payment.pay_delay_ms = 86400001: must be in 0..=86400000",
            ),
            (
                format!("[budget]\nelite = {MAX_BUDGET_SATS}"),
                format!("[budget]\nelite = {}", MAX_BUDGET_SATS + 1),
                "s.toml:2: budget.elite = 1000000000001: must be in 0..=1000000000000",
            ),
            (
                format!("pool_initial_sats = {MAX_POOL_INITIAL_SATS}"),
                format!("pool_initial_sats = {}", MAX_POOL_INITIAL_SATS + 1),
                "s.toml:1: pool_initial_sats = 1000000000000001: must be in 0..=1000000000000000",
            ),
            (
                format!("reservation_ttl_ms = {MAX_RESERVATION_TTL_MS}"),
                format!("reservation_ttl_ms = {}", MAX_RESERVATION_TTL_MS + 1),
                "s.toml:1: reservation_ttl_ms = 2592000001: must be in 1..=2592000000",
            ),
            (
                format!("[partial]\nmin_offer_sats = {MAX_MIN_OFFER_SATS}"),
                format!("[partial]\nmin_offer_sats = {}", MAX_MIN_OFFER_SATS + 1),
                "s.toml:2: partial.min_offer_sats = 1000000001: must be in 1..=1000000000",
            ),
        ];
        for (at, past, refused) in cases {
            assert_eq!(check(&at), "ok", "{at}");
            assert_eq!(check(&past), refused, "{past}");
        }
    }

    /// The module's documentation, and the history's, state the bounds the constants hold.
    #[test]
    fn the_documented_bounds_are_the_constants() {
        let scenario_doc = include_str!("scenario.rs");
        let history_doc = include_str!("history.rs");
        let stated = [
            (scenario_doc, format!("`1..={MAX_DAYS}`")),
            (scenario_doc, format!("`1..={MAX_SEEDS}`")),
            (scenario_doc, format!("at most `{MAX_SEED}` (the largest TOML integer)")),
            (scenario_doc, format!("at most `{MAX_START_MS}` (2100-01-01)")),
            (scenario_doc, format!("at least `{MIN_START_MS}` (2009-01-04")),
            (scenario_doc, format!("(total `1..={MAX_POPULATION}`)")),
            (scenario_doc, format!("a [`Dist`] in `0..={MAX_PER_USER_PER_DAY}`")),
            (scenario_doc, format!("`M <= {MAX_POISSON_MEAN}`")),
            (scenario_doc, format!("`S <= {MAX_LOGNORMAL_SIGMA}`")),
            (scenario_doc, format!("a [`Dist`] in `1..={MAX_ESTIMATE_SATS}`")),
            (scenario_doc, format!("a [`Dist`] in `0..={MAX_ACTUAL_PCT}`")),
            (scenario_doc, format!("meanwhile), `0..={MAX_DELAY_MS}` |")),
            (scenario_doc, format!("go stale), `0..={MAX_DELAY_MS}` |")),
            (scenario_doc, format!("each in `0..={MAX_BUDGET_SATS}`")),
            (scenario_doc, format!("`0..={MAX_POOL_INITIAL_SATS}`")),
            (scenario_doc, format!("`1..={MAX_RESERVATION_TTL_MS}` (30 days)")),
            (scenario_doc, format!("(charged in full), `1..={MAX_MIN_OFFER_SATS}`")),
            (history_doc, format!("at most `{}`", crate::history::MAX_TIME_MS)),
            (history_doc, format!("a {MAX_DAYS}-day scenario")),
            (history_doc, format!("`1..={MAX_ESTIMATE_SATS}`")),
            (history_doc, format!("`0..={}`", crate::history::MAX_ACTUAL_SATS)),
            (history_doc, format!("`cost.actual_pct`, {MAX_ACTUAL_PCT} %")),
        ];
        for (doc, words) in stated {
            assert!(doc.lines().any(|l| l.starts_with("//!") && l.contains(&words)), "the documentation lacks {words}");
        }
    }
}
