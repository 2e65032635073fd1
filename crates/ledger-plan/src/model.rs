//! One Monte Carlo run: many days of traffic on the reference engine, with every invariant
//! checked after every command.
//!
//! There is no scheduler here: the planner is about capacity, not interleavings. Each day's
//! arrivals are drawn, sorted by time, and run in order. Each request is the simulator's
//! sans-IO caller ([`ledger_simulator::caller::Caller`]) serving under the scenario's
//! [`Policy`], so the flows and the callers' accounting that I3 checks are the simulator's.
//! The planner only answers what the caller asks: a reply at once, and work or an invoice
//! either at once or, for a request that holds or awaits pool sats, after `work_ms` or
//! `pay_delay_ms` in a time-ordered queue that runs when the clock reaches it, so other
//! traffic runs in between and partial offers can go stale, as in production. Gated requests
//! never touch the pool, so their invoices are settled when they arrive.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ledger_core::{
    Command, Decision, GateReason, Ledger, Movement, Outcome, PaymentId, Refusal, RequestId, Sats, Tier, TimeMs, DAY_MS,
};
use ledger_harness::{Call, Checker, Reply};
use ledger_simulator::caller::{Caller, Event, Next, Policy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};

use super::history::{HistoryRow, Served};
use super::scenario::{
    Dist, DistKind, OnRefused, PlanScenario, Requests, TierDists, TierMoves, ACTUAL_PCT_RANGE, ESTIMATE_SATS_RANGE,
    PER_USER_PER_DAY_RANGE,
};

/// Index of the served counters: free, partial, gated.
pub const FREE: usize = 0;
/// See [`FREE`].
pub const PARTIAL: usize = 1;
/// See [`FREE`].
pub const GATED: usize = 2;

/// What one run (one configuration, one seed) produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// The configuration's index in the sweep grid.
    pub config: usize,
    /// The seed.
    pub seed: u64,
    /// Pool balance at the end of each day.
    pub pool_by_day: Vec<u64>,
    /// Sats outstanding in reservations at the end of each day.
    pub reserved_by_day: Vec<u64>,
    /// First day (1-based) on which a request was gated because the pool was empty.
    pub depleted_day: Option<u32>,
    /// Requests decided free, partial and gated, per tier at decision time.
    pub served: [[u64; 3]; 4],
    /// Sats the pool absorbed (audit grants).
    pub absorbed_sats: u64,
    /// Sats users paid on invoices.
    pub paid_sats: u64,
    /// Sats credited to the pool.
    pub credited_sats: u64,
    /// Cost above reservations, paid outside the pool.
    pub overrun_sats: u64,
    /// Largest sum of outstanding reservations at any moment.
    pub reserved_peak_sats: u64,
    /// Invoices (full or partial) users abandoned.
    pub abandoned: u64,
    /// Partial reservations refused because the offer went stale.
    pub stale_offers: u64,
    /// Users per tier at the end.
    pub users_end: [u64; 4],
    /// Invariant violations found by the checker.
    pub violations: u64,
    /// The first violation, if any.
    pub first_violation: Option<String>,
}

impl SeedResult {
    /// Requests decided.
    pub fn requests(&self) -> u64 {
        self.served.iter().flatten().sum()
    }
}

/// A distribution ready to draw from: `rand_distr`'s exact samplers on the run's own
/// `ChaCha8Rng`, so a run is still a function of its seed. Every draw is in the range the
/// sampler was made for (its key's, [`crate::scenario::ACTUAL_PCT_RANGE`] and the like): a
/// draw beyond it is clamped to its nearer end.
#[derive(Clone, Copy, Debug)]
pub enum Sampler {
    /// Always the same value.
    Fixed(f64),
    /// Uniform on `min..=max`.
    Uniform(f64, f64),
    /// Poisson (exact at every mean: `rand_distr` switches to rejection sampling above 12),
    /// clamped to `min..=max`.
    Poisson {
        /// The distribution of the value before clamping.
        dist: rand_distr::Poisson<f64>,
        /// The smallest value drawn.
        min: f64,
        /// The largest value drawn.
        max: f64,
    },
    /// Negative binomial: a Poisson draw whose mean is a draw of `gamma`, clamped to
    /// `min..=max`.
    NegBinomial {
        /// The distribution of the Poisson's mean.
        gamma: rand_distr::Gamma<f64>,
        /// The smallest value drawn.
        min: f64,
        /// The largest value drawn.
        max: f64,
    },
    /// Log-normal, clamped to `min..=max`.
    LogNormal {
        /// The distribution of the value before clamping.
        dist: rand_distr::LogNormal<f64>,
        /// The smallest value drawn.
        min: f64,
        /// The largest value drawn.
        max: f64,
    },
}

impl Sampler {
    /// A sampler for a validated [`Dist`] (a scenario's parameters are checked when it is
    /// read, so a parameter out of range here is a bug) that draws in `lo..=hi`, the range of
    /// its key: a `lognormal`'s `min` and `max` default to its ends, and a draw of a
    /// `poisson` beyond them is clamped to them.
    pub fn new(d: &Dist, (lo, hi): (f64, f64)) -> Sampler {
        let g = |v: Option<f64>| v.expect("validated dist");
        let within = |v: f64| v.clamp(lo, hi);
        match d.dist {
            DistKind::Fixed => Sampler::Fixed(within(g(d.value))),
            DistKind::Uniform => Sampler::Uniform(within(g(d.min)), within(g(d.max))),
            // A mean of 0 is allowed and always draws 0; `rand_distr` wants a positive mean.
            DistKind::Poisson if g(d.mean) == 0.0 => Sampler::Fixed(within(0.0)),
            DistKind::Poisson => Sampler::Poisson {
                dist: rand_distr::Poisson::new(g(d.mean)).expect("validated mean"),
                min: lo,
                max: hi,
            },
            DistKind::Negbinomial if g(d.mean) == 0.0 => Sampler::Fixed(within(0.0)),
            DistKind::Negbinomial => Sampler::NegBinomial {
                gamma: rand_distr::Gamma::new(g(d.shape), g(d.mean) / g(d.shape)).expect("validated shape"),
                min: lo,
                max: hi,
            },
            DistKind::Lognormal => Sampler::LogNormal {
                dist: rand_distr::LogNormal::new(g(d.median).ln(), g(d.sigma)).expect("validated sigma"),
                min: within(d.min.unwrap_or(lo)),
                max: within(d.max.unwrap_or(hi)),
            },
        }
    }

    /// One draw.
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Sampler::Fixed(v) => *v,
            Sampler::Uniform(a, b) if a == b => *a,
            Sampler::Uniform(a, b) => rng.gen_range(*a..=*b),
            Sampler::Poisson { dist, min, max } => dist.sample(rng).clamp(*min, *max),
            Sampler::NegBinomial { gamma, min, max } => {
                // A mean past 1e12 draws a count past every key's range, which is clamped to
                // its end anyway (and `rand_distr` takes no Poisson mean near 2^64).
                let mean = gamma.sample(rng).min(1e12);
                let n = if mean > 0.0 {
                    rand_distr::Poisson::new(mean).expect("positive, finite").sample(rng)
                } else {
                    0.0
                };
                n.clamp(*min, *max)
            }
            Sampler::LogNormal { dist, min, max } => dist.sample(rng).clamp(*min, *max),
        }
    }
}

/// How the scenario's days draw their requests: each user's count from `per_user_per_day`,
/// and each request's time of day from the daily cycle (or evenly spaced). The planner and
/// the full simulator of its validity check both draw a day with this, so the two read one
/// scenario alike, draw for draw.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DayDraw {
    /// Per tier ([`Tier::ALL`] order): its own `per_user_per_day_by_tier`, else the common one.
    per_user: [Sampler; 4],
    /// The daily cycle as a cumulative distribution over the 24 hours: a request's hour is
    /// the first whose value exceeds a uniform draw (the last is infinite, so no rounding of
    /// the sum leaves a draw without an hour).
    hour_cdf: [f64; 24],
    even: bool,
}

impl DayDraw {
    /// The draws of a validated scenario's `[requests]`.
    pub(crate) fn new(requests: &Requests) -> DayDraw {
        let mut hour_cdf = [0.0; 24];
        let total: f64 = requests.hourly_weights.iter().sum();
        let mut acc = 0.0;
        for (h, w) in requests.hourly_weights.iter().enumerate() {
            acc += w / total;
            hour_cdf[h] = acc;
        }
        hour_cdf[23] = f64::INFINITY;
        DayDraw {
            per_user: tier_samplers(
                &requests.per_user_per_day,
                &requests.per_user_per_day_by_tier,
                PER_USER_PER_DAY_RANGE,
            ),
            hour_cdf,
            even: requests.even,
        }
    }

    /// A day's requests of the users whose tiers are `users`, user by user in order: each
    /// user's count (from its tier's distribution, rounded, at least 0), then each request's
    /// millisecond of the day, evenly spaced over the day when `even`, else an hour from the
    /// cycle and a uniform millisecond within it; `push(ms_of_day, user)` takes each.
    pub(crate) fn draw(&self, rng: &mut ChaCha8Rng, users: &[Tier], mut push: impl FnMut(u64, u32)) {
        for (user, tier) in (0..u32::try_from(users.len()).expect("fewer than 2^32 users")).zip(users) {
            let n = self.per_user[tier.index()].draw(rng).round().max(0.0) as u64;
            for k in 0..n {
                let ms_of_day = if self.even {
                    (2 * k + 1) * DAY_MS / (2 * n)
                } else {
                    let u: f64 = rng.gen();
                    let hour = self.hour_cdf.partition_point(|c| *c <= u) as u64;
                    hour * 3_600_000 + rng.gen_range(0..3_600_000)
                };
                push(ms_of_day, user);
            }
        }
    }
}

/// A sampler per tier ([`Tier::ALL`] order): the tier's own distribution in `by_tier`, else
/// `common`, each for the range `range` ([`Sampler::new`]).
pub(crate) fn tier_samplers(common: &Dist, by_tier: &TierDists, range: (f64, f64)) -> [Sampler; 4] {
    by_tier.by_tier().map(|own| Sampler::new(own.unwrap_or(common), range))
}

/// The users a growing population gains at the start of a day: `growth_pct_per_day` of those
/// it has, the fractions carried from day to day until they make a user.
#[derive(Debug, Default)]
pub(crate) struct Growth(f64);

impl Growth {
    /// The users to add today to a population of `n_users`.
    pub(crate) fn day(&mut self, n_users: usize, growth_pct_per_day: f64) -> usize {
        self.0 += n_users as f64 * growth_pct_per_day / 100.0;
        let whole = self.0.floor();
        self.0 -= whole;
        whole as usize
    }
}

/// Where a user of `tier` moves at the end of a day: one tier up with the scenario's
/// promotion rate, one down with its decay rate, or nowhere. A tier that can move neither
/// way draws nothing.
pub(crate) fn tier_move(moves: &TierMoves, tier: Tier, rng: &mut ChaCha8Rng) -> Option<Tier> {
    let i = tier.index();
    let (up, down) = (moves.promote_per_day.by_tier()[i], moves.decay_per_day.by_tier()[i]);
    if up == 0.0 && down == 0.0 {
        return None;
    }
    let u: f64 = rng.gen();
    if u < up {
        Some(Tier::ALL[i + 1])
    } else if u < up + down {
        Some(Tier::ALL[i - 1])
    } else {
        None
    }
}

/// What the planner drew for a request's user, and where its caller is.
#[derive(Clone, Debug)]
struct Flow {
    caller: Caller,
    request_id: RequestId,
    user: u32,
    session: bool,
    /// Whether the work fails.
    fails: bool,
    /// The user takes the offer (a partial) or pays the invoice (a gate); drawn when the
    /// decision is known. A free request's user has nothing to accept.
    accepted: bool,
    /// How the decision was served: free, partial or gated ([`FREE`]...).
    served: usize,
    /// The caller holds a reservation now.
    granted: bool,
    /// The partial job's reduced invoice has been waited for.
    invoice_waited: bool,
    /// A reservation of its offer was refused because the offer went stale.
    stale: bool,
}

/// A flow waiting for the clock: its work ends, or its user pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at_ms: u64,
    seq: u64,
    slot: u32,
}

/// The per-run state.
struct Run<'a> {
    s: &'a PlanScenario,
    ledger: Ledger,
    checker: Checker,
    journal: Vec<Movement>,
    rng: ChaCha8Rng,
    users: Vec<Tier>,
    queue: BinaryHeap<Reverse<Pending>>,
    /// Flows in flight by slot; `free` lists the empty slots.
    flows: Vec<Option<Flow>>,
    free: Vec<u32>,
    policy: Policy,
    seq: u64,
    next_request: u64,
    next_payment: u64,
    day: u32,
    out: SeedResult,
    day_draw: DayDraw,
    /// Per tier ([`Tier::ALL`] order): its own `estimate_sats_by_tier`, else the common one.
    estimate: [Sampler; 4],
    actual_pct: Sampler,
    /// Takes the row of every request decided, for `plan --history-out`; `None` (no cost)
    /// otherwise.
    history: Option<&'a mut dyn FnMut(HistoryRow)>,
    /// With `history`, the row of the request arriving, completed at its decision.
    row: Option<HistoryRow>,
    /// What carrying the run up to a larger pool takes ([`run_carried`]); `None` otherwise.
    carry: Option<Carry>,
}

/// Run one configuration with one seed. `config` is only copied into the result.
pub fn run(s: &PlanScenario, config: usize, seed: u64) -> SeedResult {
    run_until_dry(s, config, seed, false)
}

/// [`run`], but with `stop_when_dry` the days end after the first day on which the pool ran
/// dry (what is in flight still drains and the checker still finishes): the solver needs no
/// more to know that the pool ran dry by a day, and a failing configuration costs a few
/// days instead of all of them. `pool_by_day` is then shorter than `days`.
pub fn run_until_dry(s: &PlanScenario, config: usize, seed: u64, stop_when_dry: bool) -> SeedResult {
    run_recorded(s, config, seed, stop_when_dry, None, None).0
}

/// [`run_until_dry`] of configuration 0, which also records what [`Carry::carry`] needs to
/// give the same run at a larger credit or genesis: whether the pool ever bound a command
/// ([`ledger_core::Ledger::pool_binds`]), and the payments of each day by their amount modulo
/// `modulus` (a divisor of 10,000; see [`Carry`]). The run itself is the same, draw for draw.
pub fn run_carried(s: &PlanScenario, seed: u64, stop_when_dry: bool, modulus: u64) -> (SeedResult, Carry) {
    assert!(modulus > 0 && 10_000 % modulus == 0, "a carry's modulus divides 10,000");
    let carry = Carry::new(modulus, s.days as usize);
    let (result, carry) = run_recorded(s, 0, seed, stop_when_dry, None, Some(carry));
    (result, carry.expect("recorded"))
}

/// [`run`] of `seed`, with a row appended to `history` for every request it decides, in
/// time order. The run is the same run, draw for draw.
pub fn run_with_history(s: &PlanScenario, seed: u64, history: &mut Vec<HistoryRow>) -> SeedResult {
    run_with_history_to(s, seed, &mut |row| history.push(row))
}

/// [`run`] of `seed`, handing `sink` a row for every request it decides, in time order, as it
/// decides it (`plan --history-out`, which writes each out): the run holds one row at a time.
/// The run is the same run, draw for draw.
pub fn run_with_history_to(s: &PlanScenario, seed: u64, sink: &mut dyn FnMut(HistoryRow)) -> SeedResult {
    run_recorded(s, 0, seed, false, Some(sink), None).0
}

fn run_recorded<'a>(
    s: &'a PlanScenario,
    config: usize,
    seed: u64,
    stop_when_dry: bool,
    history: Option<&'a mut dyn FnMut(HistoryRow)>,
    carry: Option<Carry>,
) -> (SeedResult, Option<Carry>) {
    let ledger_config = s.config();
    // Size the ledger's tables for the whole run up front, so they never grow mid-run, on the
    // tables of the thread's last run when there was one (see `SPARE`).
    let (n_users, n_requests) = sizes(s);
    let n_requests = n_requests.min(1_000_000_000);
    let (mut ledger, mut checker) = match SPARE.with(|spare| spare.borrow_mut().take()) {
        Some((mut ledger, mut checker)) => {
            ledger.reset(ledger_config);
            checker.reset(&ledger_config);
            (ledger, checker)
        }
        None => (Ledger::new(ledger_config), Checker::new(&ledger_config)),
    };
    ledger.reserve(n_users, n_requests);
    checker.reserve(n_users, n_requests);
    let mut r = Run {
        s,
        ledger,
        checker,
        journal: Vec::with_capacity(4),
        rng: ChaCha8Rng::seed_from_u64(seed),
        users: Vec::new(),
        queue: BinaryHeap::new(),
        flows: Vec::new(),
        free: Vec::new(),
        policy: Policy {
            min_offer: s.partial.enabled.then(|| sats(s.partial.min_offer_sats)),
            requote_jobs: s.partial.on_refused == OnRefused::Requote,
            requote_sessions: s.partial.on_refused == OnRefused::Requote,
            session_pays_rest: true,
        },
        seq: 0,
        next_request: 0,
        next_payment: 0,
        day: 0,
        out: SeedResult {
            config,
            seed,
            pool_by_day: Vec::with_capacity(s.days as usize),
            reserved_by_day: Vec::with_capacity(s.days as usize),
            depleted_day: None,
            served: [[0; 3]; 4],
            absorbed_sats: 0,
            paid_sats: 0,
            credited_sats: 0,
            overrun_sats: 0,
            reserved_peak_sats: 0,
            abandoned: 0,
            stale_offers: 0,
            users_end: [0; 4],
            violations: 0,
            first_violation: None,
        },
        day_draw: DayDraw::new(&s.requests),
        estimate: tier_samplers(&s.cost.estimate_sats, &s.cost.estimate_sats_by_tier, ESTIMATE_SATS_RANGE),
        actual_pct: Sampler::new(&s.cost.actual_pct, ACTUAL_PCT_RANGE),
        history,
        row: None,
        carry,
    };
    for (tier, n) in Tier::ALL.into_iter().zip(s.population.by_tier()) {
        for _ in 0..n {
            r.add_user(tier, TimeMs(s.start_ms));
        }
    }
    let mut growth = Growth::default();
    let mut arrivals: Vec<u64> = Vec::new();
    for day in 0..s.days {
        r.day = day + 1;
        let day_start = s.start_ms + u64::from(day) * DAY_MS;
        if day > 0 {
            for _ in 0..growth.day(r.users.len(), s.population.growth_pct_per_day) {
                r.add_user(Tier::New, TimeMs(day_start));
            }
        }
        r.draw_arrivals(&mut arrivals);
        for &arrival in &arrivals {
            let (at_ms, user) = (day_start + (arrival >> 32), arrival as u32);
            r.run_until(at_ms);
            r.arrive(at_ms, user);
        }
        let day_end = day_start + DAY_MS;
        r.run_until(day_end - 1);
        let t = r.ledger.totals();
        r.out.pool_by_day.push(t.pool_sats.to_u64());
        r.out.reserved_by_day.push(t.reserved_sats.to_u64());
        if let Some(carry) = &mut r.carry {
            carry.next_bucket();
        }
        let _ = r.apply(Command::Expire, day_end - 1);
        r.move_tiers(TimeMs(day_end - 1));
        if stop_when_dry && r.out.depleted_day.is_some() {
            break;
        }
    }
    // The drain: finish everything in flight, let deadlines pass, expire, check I5 and I6.
    r.run_until(u64::MAX);
    let end = s.start_ms + u64::from(s.days) * DAY_MS + s.reservation_ttl_ms + s.cost.work_ms + 1;
    let _ = r.apply(Command::Expire, end);
    r.checker.finish();
    let t = r.ledger.totals();
    r.out.absorbed_sats = t.absorbed_sats.to_u64();
    r.out.credited_sats = t.credited_sats.to_u64();
    r.out.overrun_sats = t.overrun_sats.to_u64();
    for tier in &r.users {
        r.out.users_end[tier.index()] += 1;
    }
    let v = r.checker.violations();
    r.out.violations = v.len() as u64;
    r.out.first_violation = v.first().map(|v| v.to_string());
    SPARE.with(|spare| *spare.borrow_mut() = Some((r.ledger, r.checker)));
    (r.out, r.carry)
}

thread_local! {
    /// The ledger and checker of the thread's last run, kept for its next run: [`Ledger::reset`]
    /// and [`Checker::reset`] bring them back to genesis with their tables' room, so a thread
    /// that runs seed after seed allocates and faults in a run's memory (about 200 MB for 90
    /// days of `plan-launch.toml`) once instead of once per seed. Nothing of a run survives
    /// the reset but the room: a run's result is the same on a fresh thread or a used one.
    static SPARE: RefCell<Option<(Ledger, Checker)>> = const { RefCell::new(None) };
}

/// Users at the end of a run of `s` (growth included) and requests it decides, roughly.
fn sizes(s: &PlanScenario) -> (usize, usize) {
    let users0: u64 = s.population.by_tier().iter().sum();
    let growth = (1.0 + s.population.growth_pct_per_day / 100.0).powf(f64::from(s.days));
    let n_users = (users0 as f64 * growth).ceil().min(1e8) as usize;
    // The busiest tier's, as if every user were of it: an upper bound, which is what a
    // reservation of room wants.
    let per_day = std::iter::once(&s.requests.per_user_per_day)
        .chain(s.requests.per_user_per_day_by_tier.by_tier().into_iter().flatten())
        .map(|d| expected(d, PER_USER_PER_DAY_RANGE).max(0.0))
        .fold(0.0, f64::max);
    let n_requests = (n_users as f64 * per_day * f64::from(s.days) * 1.05).ceil().min(1e12) as usize;
    (n_users, n_requests)
}

/// Bytes a request costs a run (the ledger's request and deadline entries, the checker's
/// book), and a user: measured on `plan-launch.toml`, rounded up.
const BYTES_PER_REQUEST: u64 = 160;
const BYTES_PER_USER: u64 = 256;

/// About how many bytes a run of `s` holds at its end (see [`crate::Plan::bytes_per_run`]).
pub fn bytes_needed(s: &PlanScenario) -> u64 {
    let (users, requests) = sizes(s);
    (users as u64).saturating_mul(BYTES_PER_USER).saturating_add((requests as u64).saturating_mul(BYTES_PER_REQUEST))
}

/// The mean of the draws of a distribution a [`Sampler`] makes for the range `lo..=hi`
/// (before rounding; for sizing tables only).
fn expected(d: &Dist, (lo, hi): (f64, f64)) -> f64 {
    let g = |v: Option<f64>| v.unwrap_or(0.0).clamp(lo, hi);
    match d.dist {
        DistKind::Fixed => g(d.value),
        DistKind::Uniform => (g(d.min) + g(d.max)) / 2.0,
        // Less what the draws clamped at `hi` lose: at most 0.4 standard deviations (a mean
        // at `hi`), 13 requests in 1,000, nothing for a table's size.
        DistKind::Poisson | DistKind::Negbinomial => g(d.mean),
        DistKind::Lognormal => clamped_lognormal_mean(
            d.median.unwrap_or(1.0),
            d.sigma.unwrap_or(0.0),
            d.min.unwrap_or(lo).clamp(lo, hi),
            d.max.unwrap_or(hi).clamp(lo, hi),
        ),
    }
}

/// The mean of `X` clamped to `a..=b` (`0 <= a <= b`), for `X` log-normal with `median` and
/// `sigma` (`mu = ln median`): `a P(X < a) + E[X; a <= X <= b] + b P(X > b)`, where
/// `E[X; a <= X <= b] = exp(mu + sigma^2 / 2) (Phi(B - sigma) - Phi(A - sigma))` with
/// `A = (ln a - mu) / sigma` and `B = (ln b - mu) / sigma`.
fn clamped_lognormal_mean(median: f64, sigma: f64, a: f64, b: f64) -> f64 {
    if sigma <= 0.0 {
        return median.clamp(a, b);
    }
    let phi = |z: f64| 0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2);
    // Phi(hi) - Phi(lo), from the tail where it is small, so that no digit cancels.
    let between = |lo: f64, hi: f64| if lo > 0.0 { phi(-lo) - phi(-hi) } else { phi(hi) - phi(lo) };
    let mu = median.ln();
    let za = if a > 0.0 { (a.ln() - mu) / sigma } else { f64::NEG_INFINITY };
    let zb = (b.ln() - mu) / sigma;
    let inside = (mu + sigma * sigma / 2.0).exp() * between(za - sigma, zb - sigma);
    let mean = a * phi(za) + inside + b * phi(-zb);
    if mean.is_finite() {
        mean.clamp(a, b)
    } else {
        b
    }
}

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("amounts stay far below Sats::MAX")
}

impl Run<'_> {
    fn add_user(&mut self, tier: Tier, now: TimeMs) {
        let user = self.users.len() as u64;
        self.users.push(tier);
        let pubkey = ledger_harness::user_pubkey(user);
        let _ = self.apply(Command::SetTier { pubkey, tier }, now.0);
        self.checker.on_tier(pubkey, tier, now);
    }

    /// Apply a command at `now_ms` and feed the checker.
    fn apply(&mut self, command: Command, now_ms: u64) -> Result<Outcome, Refusal> {
        let now = TimeMs(now_ms);
        if let Some(carry) = self.carry.as_mut().filter(|c| !c.bound) {
            carry.bound = self.ledger.pool_binds(&command, now);
        }
        let result = self.ledger.apply(&command, now, &mut self.journal);
        if !self.journal.is_empty() {
            self.checker.on_movements(&self.journal, now);
            self.journal.clear();
        }
        let observed = ledger_harness::Observed::of(&self.ledger);
        self.checker.after_step(&observed);
        if let Some(reserved) = observed.reserved_sats {
            self.out.reserved_peak_sats = self.out.reserved_peak_sats.max(reserved as u64);
        }
        result
    }

    /// The day's arrivals in time order, ties by user, each packed in a `u64` as its
    /// millisecond of the day (less than 2^27) above its user (32 bits): sorting the packed
    /// keys orders them as `(time, user)` pairs would be, at the cost of sorting integers.
    fn draw_arrivals(&mut self, out: &mut Vec<u64>) {
        out.clear();
        self.day_draw.draw(&mut self.rng, &self.users, |ms_of_day, user| out.push(ms_of_day << 32 | u64::from(user)));
        out.sort_unstable();
    }

    /// Run everything queued up to and including `t_ms`.
    fn run_until(&mut self, t_ms: u64) {
        while let Some(Reverse(p)) = self.queue.peek() {
            if p.at_ms > t_ms {
                break;
            }
            let Reverse(p) = self.queue.pop().expect("peeked");
            self.drive(p.slot, p.at_ms, true);
        }
    }

    fn schedule(&mut self, at_ms: u64, slot: u32) {
        self.seq += 1;
        self.queue.push(Reverse(Pending { at_ms, seq: self.seq, slot }));
    }

    fn arrive(&mut self, now_ms: u64, user: u32) {
        let s = self.s;
        // In the scenario's range of estimates, 1..=1e9, and of percentages, 0..=1000 (the
        // samplers clamp to them), so an actual cost is at most 1e10.
        let tier = self.users[user as usize];
        let estimated = sats(self.estimate[tier.index()].draw(&mut self.rng).round() as u64);
        let pct = self.actual_pct.draw(&mut self.rng);
        let actual = sats((estimated.to_u64() as f64 * pct / 100.0).round() as u64);
        let session = self.rng.gen::<f64>() < s.requests.session_share;
        let fails = self.rng.gen::<f64>() < s.cost.work_failure;
        if self.history.is_some() {
            // Completed at the decision (see `events`), which comes before the end of this
            // arrival.
            self.row = Some(HistoryRow {
                time_ms: now_ms,
                user: format!("u{user}"),
                tier,
                session,
                estimate_sats: estimated.to_u64(),
                actual_sats: (!fails).then(|| actual.to_u64()),
                outcome: Served::Free,
                paid: None,
            });
        }
        self.next_request += 1;
        let request_id = RequestId(self.next_request);
        let pubkey = ledger_harness::user_pubkey(u64::from(user));
        let caller =
            Caller::new(request_id, pubkey, session, estimated, actual, TimeMs(now_ms)).with_policy(self.policy);
        let flow = Flow {
            caller,
            request_id,
            user,
            session,
            fails,
            accepted: true,
            served: FREE,
            granted: false,
            invoice_waited: false,
            stale: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.flows[slot as usize] = Some(flow);
                slot
            }
            None => {
                self.flows.push(Some(flow));
                u32::try_from(self.flows.len() - 1).expect("fewer than 2^32 requests in flight")
            }
        };
        self.drive(slot, now_ms, false);
        if let (Some(row), Some(sink)) = (self.row.take(), self.history.as_deref_mut()) {
            sink(row);
        }
    }

    /// Answer what the caller in `slot` asks until it must wait for the clock or is done.
    /// `resumed`: the clock reached the wait it was in, so what it waited for happens now.
    fn drive(&mut self, slot: u32, now_ms: u64, mut resumed: bool) {
        let s = self.s;
        loop {
            let flow = self.flows[slot as usize].as_mut().expect("a flow in flight");
            match flow.caller.poll() {
                Next::Call(call) => {
                    let call = call.clone();
                    let reply = self.call(slot, &call, now_ms);
                    let flow = self.flows[slot as usize].as_mut().expect("a flow in flight");
                    flow.caller.handle_reply(&reply, TimeMs(now_ms));
                    self.events(slot);
                }
                Next::Work => {
                    // Work on pool sats takes `work_ms`; work the user pays for, or that
                    // never starts, is outside the pool and ends at once.
                    let waits = flow.granted || (flow.session && flow.served == PARTIAL && flow.accepted);
                    if waits && !resumed {
                        self.schedule(now_ms + s.cost.work_ms, slot);
                        return;
                    }
                    resumed = false;
                    let succeeds = !flow.fails && flow.accepted;
                    flow.caller.handle_work(succeeds);
                    self.events(slot);
                }
                Next::Invoice { .. } => {
                    // A partial job's reduced charge is paid after `pay_delay_ms`; every
                    // other invoice is settled when it is sent.
                    let waits = flow.served == PARTIAL && !flow.session && flow.accepted && !flow.invoice_waited;
                    if waits && !resumed {
                        flow.invoice_waited = true;
                        self.schedule(now_ms + s.payment.pay_delay_ms, slot);
                        return;
                    }
                    resumed = false;
                    let paid = flow.accepted;
                    flow.caller.handle_invoice(paid);
                }
                Next::Done(close) => {
                    // A gated request (or a partial one its user declined) never touched the
                    // pool: I3 holds trivially, and a book per gated request would only cost.
                    if flow.served != GATED && flow.accepted {
                        self.checker.on_close(flow.request_id, close.reduction, close.overrun);
                    }
                    self.flows[slot as usize] = None;
                    self.free.push(slot);
                    return;
                }
            }
        }
    }

    /// Make `call` for the flow in `slot`. A payment gets the next payment id in sequence,
    /// as a payment processor would number it (the caller's own numbering, eight ids per
    /// request, would spread the ledger's payment table).
    fn call(&mut self, slot: u32, call: &Call, now_ms: u64) -> Reply {
        let command = match *call {
            Call::Credit { paid_sats, .. } => {
                self.next_payment += 1;
                let payment_id = PaymentId(self.next_payment);
                self.checker.on_payment(payment_id, paid_sats);
                self.out.paid_sats += paid_sats.to_u64();
                if let Some(carry) = &mut self.carry {
                    carry.pay(paid_sats.to_u64());
                }
                Command::Credit { payment_id, paid_sats }
            }
            _ => call.to_command(),
        };
        let reply = Reply::from(self.apply(command, now_ms));
        if let (Call::ReservePartial { .. }, Reply::Refused(Refusal::InsufficientFunds { .. })) = (call, &reply) {
            let flow = self.flows[slot as usize].as_mut().expect("a flow in flight");
            if !flow.stale {
                flow.stale = true;
                self.out.stale_offers += 1;
            }
        }
        reply
    }

    /// Count what the caller in `slot` just saw; a decision draws whether its user accepts.
    fn events(&mut self, slot: u32) {
        let s = self.s;
        while let Some(event) = self.flows[slot as usize].as_mut().and_then(|f| f.caller.poll_event()) {
            let flow = self.flows[slot as usize].as_mut().expect("a flow in flight");
            let tier = self.users[flow.user as usize];
            match event {
                Event::Decided(decision) => {
                    flow.served = match decision {
                        Decision::Free { .. } => FREE,
                        Decision::Partial { offer_sats, .. }
                            if self.policy.min_offer.is_some_and(|m| offer_sats >= m) =>
                        {
                            PARTIAL
                        }
                        Decision::Partial { .. } | Decision::Gate { .. } => GATED,
                    };
                    self.out.served[tier.index()][flow.served] += 1;
                    if let Decision::Gate { reason: GateReason::PoolEmpty, .. } = decision {
                        self.out.depleted_day.get_or_insert(self.day);
                    }
                    let take = match flow.served {
                        PARTIAL => s.payment.partial_paid,
                        GATED => s.payment.gate_paid,
                        _ => continue,
                    };
                    flow.accepted = self.rng.gen::<f64>() < take;
                    if !flow.accepted {
                        self.out.abandoned += 1;
                    }
                    if let Some(row) = self.row.as_mut() {
                        // A decide is the first call of a request, made when it arrives.
                        row.outcome = if flow.served == PARTIAL { Served::Partial } else { Served::Gated };
                        row.paid = Some(flow.accepted);
                        if !flow.accepted {
                            row.actual_sats = None;
                        }
                    }
                }
                Event::Granted => flow.granted = true,
                Event::Mark(_) => {}
            }
        }
    }

    /// End of day: each user may move one tier up or down.
    fn move_tiers(&mut self, now: TimeMs) {
        for user in 0..self.users.len() {
            let Some(to) = tier_move(&self.s.tiers, self.users[user], &mut self.rng) else { continue };
            self.users[user] = to;
            let pubkey = ledger_harness::user_pubkey(user as u64);
            let _ = self.apply(Command::SetTier { pubkey, tier: to }, now.0);
            self.checker.on_tier(pubkey, to, now);
        }
    }
}

/// What a run records to be carried up to a larger pool: the same scenario with a larger
/// credit (`credit_pct`) or genesis (`pool_initial_sats`), or both, without running it again.
///
/// A run in which the pool never bound a command ([`ledger_core::Ledger::pool_binds`]) runs
/// command for command the same from a larger pool: every draw, decision, reservation and
/// payment is the same, and only the pool's balance and the credits differ. Its balance at
/// the end of each day is then its own plus the larger genesis's difference plus what the
/// larger credit adds to that day's payments so far. A credit is `floor(paid * bps /
/// 10,000)`, so the credits of a set of payments at another rate cannot be had from their sum
/// alone; but `paid * bps mod 10,000` depends only on `paid mod m` when `m * bps` is a multiple
/// of 10,000, so the run keeps, per day, the sum paid and the count of payments by their
/// amount modulo `m`, and a rate `bps` with `m * bps` a multiple of 10,000 (every credit of
/// a solve's grid, for the `m` it picks) has its credits exactly:
/// `(bps * sum - sum over r of count(r) * (r * bps mod 10,000)) / 10,000`.
#[derive(Clone, Debug)]
pub struct Carry {
    /// Whether the pool bound any command of the run.
    bound: bool,
    /// Payments are counted by their amount modulo this (a divisor of 10,000).
    modulus: u64,
    /// Per bucket (each day run, then the drain after the last): the sum paid.
    sums: Vec<u64>,
    /// Per bucket, `modulus` counts: payments by their amount modulo `modulus`.
    counts: Vec<u32>,
}

impl Carry {
    fn new(modulus: u64, days: usize) -> Carry {
        let mut counts = Vec::with_capacity((days + 1) * modulus as usize);
        counts.resize(modulus as usize, 0);
        let mut sums = Vec::with_capacity(days + 1);
        sums.push(0);
        Carry { bound: false, modulus, sums, counts }
    }

    /// Whether the pool bound any command of the run: such a run cannot be carried.
    pub fn bound(&self) -> bool {
        self.bound
    }

    /// Bytes the record holds.
    pub fn bytes(&self) -> usize {
        self.sums.len() * 8 + self.counts.len() * 4
    }

    fn pay(&mut self, paid: u64) {
        *self.sums.last_mut().expect("a bucket") += paid;
        let at = self.counts.len() - self.modulus as usize + (paid % self.modulus) as usize;
        self.counts[at] += 1;
    }

    /// The day's payments are in: the next ones go to the next day (or the drain).
    fn next_bucket(&mut self) {
        self.sums.push(0);
        self.counts.resize(self.counts.len() + self.modulus as usize, 0);
    }

    /// Credits at `bps` of the payments of bucket `i`, when `bps` suits the modulus.
    fn credited(&self, i: usize, bps: u64) -> Option<u64> {
        if (self.modulus * bps) % 10_000 != 0 {
            return None;
        }
        let m = self.modulus as usize;
        let below: u128 = self.counts[i * m..(i + 1) * m]
            .iter()
            .enumerate()
            .map(|(r, &n)| u128::from(n) * u128::from(r as u64 * bps % 10_000))
            .sum();
        let whole = u128::from(self.sums[i]) * u128::from(bps);
        u64::try_from((whole - below) / 10_000).ok()
    }

    /// `from`, a run of `s0` that recorded this carry, as a run of `s` would give it: `Some`
    /// when `s` is `s0` with a credit and a genesis at least as large, the pool never bound the
    /// run, it found no violation, and the credits at `s`'s rate can be had from what was
    /// recorded (see [`Carry`]). The result is the one [`run_until_dry`] of `s` with the same
    /// seed returns, field for field (the crate's `carry` test checks it against runs).
    pub fn carry(&self, from: &SeedResult, s0: &PlanScenario, s: &PlanScenario) -> Option<SeedResult> {
        if self.bound || from.violations > 0 || self.sums.len() != from.pool_by_day.len() + 1 {
            return None;
        }
        let (b0, b) = (u64::from(s0.credit_bps().to_u16()), u64::from(s.credit_bps().to_u16()));
        let (g0, g) = (s0.pool_initial_sats, s.pool_initial_sats);
        let same_otherwise =
            PlanScenario { credit_pct: s0.credit_pct, pool_initial_sats: s0.pool_initial_sats, ..s.clone() } == *s0;
        if !same_otherwise || b < b0 || g < g0 {
            return None;
        }
        // Every credit of the run must still fit beside the genesis, as it did (a credit is
        // at most what was paid).
        Sats::new(g.checked_add(from.paid_sats)?).ok()?;
        let mut out = from.clone();
        let (mut old, mut new) = (0u64, 0u64);
        for i in 0..self.sums.len() {
            if b != b0 {
                old += self.credited(i, b0)?;
                new += self.credited(i, b)?;
            }
            if let Some(pool) = out.pool_by_day.get_mut(i) {
                *pool = pool.checked_add(g - g0)?.checked_add(new - old)?;
            }
        }
        if b != b0 {
            // What was recorded must give back what the run credited.
            if old != from.credited_sats {
                debug_assert!(false, "a carry's credits at its own rate differ from the run's");
                return None;
            }
            out.credited_sats = new;
        }
        Some(out)
    }
}

/// What a solve or a plan cost, beside what it reports: the seeds and requests it ran, and
/// how many of the seeds it used were carried up from a run at a lower value instead
/// ([`Carry`]). Unlike a solve's output, these depend on the number of threads (a batch runs
/// one seed per thread, and a seed run but not read may or may not be carried later), so
/// they are reported on the side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Seeds run, read or not.
    pub seeds_run: u64,
    /// Requests those runs decided.
    pub requests_run: u64,
    /// Seeds read that were carried up instead of run.
    pub seeds_carried: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.seeds_run += o.seeds_run;
        self.requests_run += o.requests_run;
        self.seeds_carried += o.seeds_carried;
    }
}

/// The largest record a seed may keep to be carried up ([`Carry::bytes`]): a target
/// keeps one per seed, so the 2,000-seed cap holds at most 1 GB (a 90-day solve of the credit
/// on a half-point grid keeps 73 KB a seed, on a tenth-of-a-point grid 364 KB). A finer grid
/// of credits needs a larger modulus, and past this the seeds are run instead.
const CARRY_BYTES_MAX: u64 = 1 << 19;

/// The keys a run can be carried up ([`Carry`]): they only add sats to the pool.
pub const CARRIED_KEYS: [&str; 2] = ["credit_pct", "pool_initial_sats"];

/// The modulus of the carries of runs of `days` days at credit `rates` (basis points): every
/// rate is a multiple of their greatest common divisor `g` with 10,000, so `10,000 / g`
/// prices them all ([`Carry`]). `None` when a record would be larger than
/// 512 KiB a seed: the seeds are then run, not carried.
pub fn carry_modulus(rates: impl IntoIterator<Item = u64>, days: u32) -> Option<u64> {
    let modulus = 10_000 / rates.into_iter().fold(10_000, gcd);
    let buckets = u64::from(days) + 1;
    (modulus.saturating_mul(buckets).saturating_mul(4) <= CARRY_BYTES_MAX).then_some(modulus)
}

/// The greatest common divisor.
fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean a table is sized by is the mean of what the sampler draws, clamps included:
    /// within 1 % of 200,000 draws' (whose standard error is below 0.3 % here), for clamps on
    /// either side, on both, and on none that the draws reach.
    #[test]
    fn the_expected_draw_is_the_mean_of_the_clamped_draws() {
        let cases = [
            (Dist::lognormal(10_000.0, 5.0, None), PER_USER_PER_DAY_RANGE),
            (Dist::lognormal(1_000.0, 5.0, None), ACTUAL_PCT_RANGE),
            (Dist::lognormal(1.5, 1.0, Some(40.0)), PER_USER_PER_DAY_RANGE),
            (Dist::lognormal(2.0, 0.8, Some(30.0)), PER_USER_PER_DAY_RANGE),
            (Dist { min: Some(50.0), ..Dist::lognormal(100.0, 2.0, Some(400.0)) }, ACTUAL_PCT_RANGE),
            (Dist::lognormal(0.3, 1.0, None), ESTIMATE_SATS_RANGE),
            (Dist::lognormal(30.0, 0.0, None), ESTIMATE_SATS_RANGE),
            (Dist::uniform(60.0, 110.0), ACTUAL_PCT_RANGE),
            (Dist::poisson(3.0), PER_USER_PER_DAY_RANGE),
            (Dist::negbinomial(3.0, 0.5), PER_USER_PER_DAY_RANGE),
        ];
        for (i, (d, range)) in cases.into_iter().enumerate() {
            let sampler = Sampler::new(&d, range);
            let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
            let n = 200_000;
            let mean = (0..n).map(|_| sampler.draw(&mut rng)).sum::<f64>() / f64::from(n);
            let e = expected(&d, range);
            assert!((e - mean).abs() <= 0.01 * mean, "{d:?}: expected {e}, the draws' mean {mean}");
        }
    }
}
