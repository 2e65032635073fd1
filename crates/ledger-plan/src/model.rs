//! One Monte Carlo run: many days of traffic on the reference engine, with every invariant
//! checked after every command.
//!
//! There is no scheduler here: the planner is about capacity, not interleavings. Each day's
//! arrivals are drawn, sorted by time, and run in order; what happens later in a request's
//! life (an invoice paid after `pay_delay_ms`, work finished after `work_ms`) waits in a
//! time-ordered queue and runs when the clock reaches it, so other traffic runs in between
//! and partial offers can go stale, as in production. Gated requests never touch the pool,
//! so their invoices are settled when they arrive.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ledger_core::{
    Command, Decision, GateReason, Ledger, Movement, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats, Tier,
    TimeMs, DAY_MS,
};
use ledger_harness::Checker;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::scenario::{Dist, DistKind, OnRefused, PlanScenario};

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

/// A distribution ready to draw from.
#[derive(Clone, Copy, Debug)]
enum Sampler {
    Fixed(f64),
    Uniform(f64, f64),
    Poisson { mean: f64, exp_neg_mean: f64 },
    LogNormal { mu: f64, sigma: f64, min: f64, max: f64 },
}

impl Sampler {
    fn new(d: &Dist) -> Sampler {
        let g = |v: Option<f64>| v.expect("validated dist");
        match d.dist {
            DistKind::Fixed => Sampler::Fixed(g(d.value)),
            DistKind::Uniform => Sampler::Uniform(g(d.min), g(d.max)),
            DistKind::Poisson => Sampler::Poisson { mean: g(d.mean), exp_neg_mean: (-g(d.mean)).exp() },
            DistKind::Lognormal => Sampler::LogNormal {
                mu: g(d.median).ln(),
                sigma: g(d.sigma),
                min: d.min.unwrap_or(0.0),
                max: d.max.unwrap_or(f64::MAX),
            },
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> f64 {
        match *self {
            Sampler::Fixed(v) => v,
            Sampler::Uniform(a, b) if a == b => a,
            Sampler::Uniform(a, b) => rng.gen_range(a..=b),
            Sampler::Poisson { mean, exp_neg_mean } => {
                if mean <= 30.0 {
                    // Knuth: multiply uniforms until the product drops below e^-mean.
                    let (mut k, mut p) = (0u32, 1.0f64);
                    loop {
                        p *= rng.gen::<f64>();
                        if p <= exp_neg_mean {
                            return f64::from(k);
                        }
                        k += 1;
                    }
                } else {
                    (mean + mean.sqrt() * normal(rng)).round().max(0.0)
                }
            }
            Sampler::LogNormal { mu, sigma, min, max } => (mu + sigma * normal(rng)).exp().clamp(min, max),
        }
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Something a request does later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Later {
    /// A free request's work ends: record the actual cost, or release on failure.
    FreeDone { actual: Sats, fails: bool },
    /// A partial job's reduced invoice is paid: credit, then reserve the offer.
    JobPaid { offer: Sats, charge: Sats, actual: Sats, fails: bool },
    /// A partial job's work ends: record the pool's share, or release on failure.
    JobDone { charge: Sats, actual: Sats, fails: bool },
    /// A partial session's work ends: reserve `min(actual, offer)`, record it, invoice the rest.
    SessionDone { offer: Sats, actual: Sats, fails: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at_ms: u64,
    seq: u64,
    request: u64,
    user: u32,
    what: Later,
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
    seq: u64,
    next_request: u64,
    next_payment: u64,
    day: u32,
    out: SeedResult,
    per_user: Sampler,
    estimate: Sampler,
    actual_pct: Sampler,
    hour_cdf: [f64; 24],
}

/// Run one configuration with one seed. `config` is only copied into the result.
pub fn run(s: &PlanScenario, config: usize, seed: u64) -> SeedResult {
    let ledger_config = s.config();
    let mut hour_cdf = [0.0; 24];
    let total: f64 = s.requests.hourly_weights.iter().sum();
    let mut acc = 0.0;
    for (h, w) in s.requests.hourly_weights.iter().enumerate() {
        acc += w / total;
        hour_cdf[h] = acc;
    }
    hour_cdf[23] = f64::INFINITY;
    // Size the ledger's tables for the whole run up front, so they never grow mid-run.
    let users0: u64 = s.population.by_tier().iter().sum();
    let growth = (1.0 + s.population.growth_pct_per_day / 100.0).powf(f64::from(s.days));
    let n_users = (users0 as f64 * growth).ceil().min(1e8) as usize;
    let per_day = expected(&s.requests.per_user_per_day).max(0.0);
    let n_requests = (n_users as f64 * per_day * f64::from(s.days) * 1.05).ceil().min(1e9) as usize;
    let mut r = Run {
        s,
        ledger: Ledger::with_capacity(ledger_config, n_users, n_requests),
        checker: Checker::new(&ledger_config),
        journal: Vec::with_capacity(4),
        rng: ChaCha8Rng::seed_from_u64(seed),
        users: Vec::new(),
        queue: BinaryHeap::new(),
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
        per_user: Sampler::new(&s.requests.per_user_per_day),
        estimate: Sampler::new(&s.cost.estimate_sats),
        actual_pct: Sampler::new(&s.cost.actual_pct),
        hour_cdf,
    };
    for (tier, n) in Tier::ALL.into_iter().zip(s.population.by_tier()) {
        for _ in 0..n {
            r.add_user(tier, TimeMs(s.start_ms));
        }
    }
    let mut growth = 0.0f64;
    let mut arrivals: Vec<(u64, u32)> = Vec::new();
    for day in 0..s.days {
        r.day = day + 1;
        let day_start = s.start_ms + u64::from(day) * DAY_MS;
        if day > 0 {
            growth += r.users.len() as f64 * s.population.growth_pct_per_day / 100.0;
            while growth >= 1.0 {
                growth -= 1.0;
                r.add_user(Tier::New, TimeMs(day_start));
            }
        }
        r.draw_arrivals(day_start, &mut arrivals);
        for &(at_ms, user) in &arrivals {
            r.run_until(at_ms);
            r.arrive(at_ms, user);
        }
        let day_end = day_start + DAY_MS;
        r.run_until(day_end - 1);
        let t = r.ledger.totals();
        r.out.pool_by_day.push(t.pool_sats.to_u64());
        r.out.reserved_by_day.push(t.reserved_sats.to_u64());
        let _ = r.apply(Command::Expire, day_end - 1);
        r.move_tiers(TimeMs(day_end - 1));
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
    r.out
}

/// The mean of a distribution, roughly (for sizing tables only).
fn expected(d: &Dist) -> f64 {
    match d.dist {
        DistKind::Fixed => d.value.unwrap_or(0.0),
        DistKind::Uniform => (d.min.unwrap_or(0.0) + d.max.unwrap_or(0.0)) / 2.0,
        DistKind::Poisson => d.mean.unwrap_or(0.0),
        DistKind::Lognormal => {
            let sigma = d.sigma.unwrap_or(0.0);
            (d.median.unwrap_or(0.0) * (sigma * sigma / 2.0).exp()).min(d.max.unwrap_or(f64::MAX))
        }
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

    fn draw_arrivals(&mut self, day_start: u64, out: &mut Vec<(u64, u32)>) {
        out.clear();
        let even = self.s.requests.even;
        for user in 0..self.users.len() as u32 {
            let n = self.per_user.draw(&mut self.rng).round().max(0.0) as u64;
            for k in 0..n {
                let at_ms = if even {
                    day_start + (2 * k + 1) * DAY_MS / (2 * n)
                } else {
                    let u: f64 = self.rng.gen();
                    let hour = self.hour_cdf.partition_point(|c| *c <= u) as u64;
                    day_start + hour * 3_600_000 + self.rng.gen_range(0..3_600_000)
                };
                out.push((at_ms, user));
            }
        }
        out.sort_unstable();
    }

    /// Run everything queued up to and including `t_ms`.
    fn run_until(&mut self, t_ms: u64) {
        while let Some(Reverse(p)) = self.queue.peek() {
            if p.at_ms > t_ms {
                break;
            }
            let Reverse(p) = self.queue.pop().expect("peeked");
            self.later(p);
        }
    }

    fn schedule(&mut self, at_ms: u64, request: u64, user: u32, what: Later) {
        self.seq += 1;
        self.queue.push(Reverse(Pending { at_ms, seq: self.seq, request, user, what }));
    }

    /// A user pays `amount` on an invoice: the pool gets its credit.
    fn pay(&mut self, amount: Sats, now_ms: u64) {
        if amount.is_zero() {
            return;
        }
        self.next_payment += 1;
        let payment_id = PaymentId(self.next_payment);
        self.checker.on_payment(payment_id, amount);
        self.out.paid_sats += amount.to_u64();
        let _ = self.apply(Command::Credit { payment_id, paid_sats: amount }, now_ms);
    }

    fn arrive(&mut self, now_ms: u64, user: u32) {
        let s = self.s;
        let estimated = sats(self.estimate.draw(&mut self.rng).round().max(1.0) as u64);
        let pct = self.actual_pct.draw(&mut self.rng);
        let actual = sats((estimated.to_u64() as f64 * pct / 100.0).round() as u64);
        let session = self.rng.gen::<f64>() < s.requests.session_share;
        let fails = self.rng.gen::<f64>() < s.cost.work_failure;
        self.next_request += 1;
        let request = self.next_request;
        let (request_id, pubkey) = (RequestId(request), ledger_harness::user_pubkey(u64::from(user)));
        let tier = self.users[user as usize];
        let decision = match self.apply(Command::Decide { request_id, pubkey, estimated_sats: estimated }, now_ms) {
            Ok(Outcome::Decided { decision }) => decision,
            other => panic!("decide of a fresh request: {other:?}"),
        };
        let served = &mut self.out.served[tier.index()];
        match decision {
            Decision::Free { .. } => {
                served[FREE] += 1;
                self.schedule(now_ms + s.cost.work_ms, request, user, Later::FreeDone { actual, fails });
            }
            Decision::Partial { offer_sats, charge_sats }
                if s.partial.enabled && offer_sats.to_u64() >= s.partial.min_offer_sats =>
            {
                served[PARTIAL] += 1;
                if self.rng.gen::<f64>() >= s.payment.partial_paid {
                    // Abandoned before anything was reserved: the pool never saw it.
                    self.out.abandoned += 1;
                } else if session {
                    let what = Later::SessionDone { offer: offer_sats, actual, fails };
                    self.schedule(now_ms + s.cost.work_ms, request, user, what);
                } else {
                    let what = Later::JobPaid { offer: offer_sats, charge: charge_sats, actual, fails };
                    self.schedule(now_ms + s.payment.pay_delay_ms, request, user, what);
                }
            }
            // A gate, or a partial offer the service does not make: the user is charged in full.
            Decision::Partial { .. } | Decision::Gate { .. } => {
                served[GATED] += 1;
                if let Decision::Gate { reason: GateReason::PoolEmpty, .. } = decision {
                    self.out.depleted_day.get_or_insert(self.day);
                }
                if self.rng.gen::<f64>() < s.payment.gate_paid {
                    // A session is charged its actual cost after the work; a job its estimate.
                    let paid = match (session, fails) {
                        (false, _) => estimated,
                        (true, false) => actual,
                        (true, true) => Sats::ZERO,
                    };
                    self.pay(paid, now_ms);
                } else {
                    self.out.abandoned += 1;
                }
                // No `on_close`: a gated request never touches the pool, so I3 holds
                // trivially, and giving the checker a book per gated request would only cost.
            }
        }
    }

    fn later(&mut self, p: Pending) {
        let s = self.s;
        let (request_id, pubkey) = (RequestId(p.request), ledger_harness::user_pubkey(u64::from(p.user)));
        let now = p.at_ms;
        match p.what {
            Later::FreeDone { actual, fails } => self.finish(request_id, actual, fails, now),
            Later::JobPaid { offer, charge, actual, fails } => {
                self.pay(charge, now);
                let mut charge = charge;
                let reserved = match self.apply(Command::ReservePartial { request_id, pubkey, amount_sats: offer }, now)
                {
                    Ok(_) => Some(offer),
                    Err(Refusal::InsufficientFunds { available_sats }) => {
                        self.out.stale_offers += 1;
                        self.requote(request_id, pubkey, offer, available_sats, now)
                    }
                    Err(e) => panic!("reserve_partial of a decided request: {e}"),
                };
                // The user pays the rest of the offer that could not be reserved.
                let rest = offer.saturating_sub(reserved.unwrap_or(Sats::ZERO));
                self.pay(rest, now);
                match reserved {
                    Some(_) => {
                        charge = charge.checked_add(rest).expect("small amounts");
                        let what = Later::JobDone { charge, actual, fails };
                        self.schedule(now + s.cost.work_ms, p.request, p.user, what);
                    }
                    None => self.checker.on_close(request_id, Sats::ZERO, Sats::ZERO),
                }
            }
            Later::JobDone { charge, actual, fails } => {
                self.finish(request_id, actual.saturating_sub(charge), fails, now);
            }
            Later::SessionDone { offer, actual, fails } => {
                let amount = actual.min(offer);
                if fails || amount.is_zero() {
                    self.pay(if fails { Sats::ZERO } else { actual }, now);
                    self.checker.on_close(request_id, Sats::ZERO, Sats::ZERO);
                    return;
                }
                let reserved =
                    match self.apply(Command::ReservePartial { request_id, pubkey, amount_sats: amount }, now) {
                        Ok(_) => Some(amount),
                        Err(Refusal::InsufficientFunds { available_sats }) => {
                            self.out.stale_offers += 1;
                            self.requote(request_id, pubkey, amount, available_sats, now)
                        }
                        Err(e) => panic!("reserve_partial of a decided request: {e}"),
                    };
                match reserved {
                    Some(r) => {
                        self.pay(actual.saturating_sub(r), now);
                        self.finish(request_id, r, false, now);
                    }
                    None => {
                        self.pay(actual, now);
                        self.checker.on_close(request_id, Sats::ZERO, Sats::ZERO);
                    }
                }
            }
        }
    }

    /// A refused partial reservation: re-quote with what is available now, or (with
    /// `charge_full`, or nothing available) reserve nothing. Returns what was reserved; the
    /// caller invoices the rest.
    fn requote(
        &mut self,
        request_id: RequestId,
        pubkey: Pubkey,
        asked: Sats,
        available: Sats,
        now: u64,
    ) -> Option<Sats> {
        if self.s.partial.on_refused == OnRefused::ChargeFull || available.is_zero() {
            return None;
        }
        let amount = available.min(asked);
        self.apply(Command::ReservePartial { request_id, pubkey, amount_sats: amount }, now).ok().map(|_| amount)
    }

    /// Work on a reservation ended: record the pool's share, or release it.
    fn finish(&mut self, request_id: RequestId, share: Sats, fails: bool, now: u64) {
        if fails {
            let _ = self.apply(Command::Release { request_id }, now);
            self.checker.on_close(request_id, Sats::ZERO, Sats::ZERO);
            return;
        }
        match self.apply(Command::Record { request_id, actual_sats: share }, now) {
            Ok(Outcome::Recorded { overrun_sats, .. }) => self.checker.on_close(request_id, share, overrun_sats),
            other => panic!("record of an outstanding reservation: {other:?}"),
        }
    }

    /// End of day: each user may move one tier up or down.
    fn move_tiers(&mut self, now: TimeMs) {
        let up = self.s.tiers.promote_per_day.by_tier();
        let down = self.s.tiers.decay_per_day.by_tier();
        for user in 0..self.users.len() {
            let tier = self.users[user];
            let i = tier.index();
            if up[i] == 0.0 && down[i] == 0.0 {
                continue;
            }
            let u: f64 = self.rng.gen();
            let to = if u < up[i] {
                Tier::ALL[i + 1]
            } else if u < up[i] + down[i] {
                Tier::ALL[i - 1]
            } else {
                continue;
            };
            self.users[user] = to;
            let pubkey = ledger_harness::user_pubkey(user as u64);
            let _ = self.apply(Command::SetTier { pubkey, tier: to }, now.0);
            self.checker.on_tier(pubkey, to, now);
        }
    }
}
