//! A plan scenario run the long way: through the full simulator's interleaving executor
//! ([`ledger_simulator::exec::Exec`]) on the reference engine, to check the planner's
//! shortcuts against it (`tests/validity.rs`).
//!
//! What is the same as the planner's [`crate::model::run`]: the scenario, read here on its
//! own: the population and its growth, each user's requests per day and their daily cycle
//! (or even spacing), estimates and actual costs, sessions and jobs, work failures, how users
//! answer a partial offer and a full charge, tier moves at the end of each day, the budgets,
//! the credit percentage, the pool, the reservation TTL, the caller's [`Policy`], and the
//! caller state machine itself ([`ledger_simulator::caller::Caller`], the one piece both share,
//! on purpose: it is the service being planned). The random draws come from the same
//! samplers ([`Sampler`]) on a stream of the seed's generator the planner does not use.
//!
//! What is the simulator's: the executor runs every flow one call at a time, and a random
//! scheduler (uniform over the flows ready to move, as `ledger-sim run --scheduler random`)
//! interleaves them, each step taking [`STEP_MS`] of virtual time; a paid invoice is a
//! `credit` call of its own, made on the flow's next step after the payment; every invoice a
//! user may walk away from (a partial charge or a full one) is paid `pay_delay_ms` after it is
//! sent, and every piece of work (free, partial or paid in full) takes `work_ms`; the
//! expiry sweeper and the day's tier changes are flows of their own, scheduled among the rest;
//! the checker (I1-I6, and I8 against the oracle) judges every step, and the run ends with the
//! simulator's drain. Nothing of the planner's model ([`crate::model`]'s time queue, its
//! accounting, its depletion day) is used.
//!
//! The simulator has no notion of waiting, so the waits are the driver's: a flow whose caller
//! asks for work or an abandonable invoice is held out of the scheduler until its time has
//! passed (the executor only tells what each caller waits for, [`Exec::caller`]); while
//! nothing is ready the clock jumps to the next arrival, the next end of a wait or the end of
//! the day.

use std::collections::BTreeMap;

use ledger_core::{Decision, GateReason, Sats, Tier, DAY_MS};
use ledger_harness::ReferenceEngine;
use ledger_simulator::caller::{Next, Policy};
use ledger_simulator::exec::{Exec, EPOCH};
use ledger_simulator::history::{Declines, Event, Flow, FlowKind, History};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{tier_move, tier_samplers, DayDraw, Growth, Sampler, FREE, GATED, PARTIAL};
use super::scenario::{OnRefused, PlanScenario, ACTUAL_PCT_RANGE, ESTIMATE_SATS_RANGE};

/// Virtual time of one scheduler step: the simulator's default (`step_ms` of `ledger-sim
/// run`), the time between two calls of a flow that is ready to make them.
pub const STEP_MS: u64 = 250;

/// The ChaCha stream the simulated path draws from, so that its draws are independent of the
/// planner's for the same seed (the two samples of a comparison must be independent).
const STREAM: u64 = 0x7661_6c69_6469_7479;

/// What one simulated run of a plan scenario produced: the metrics the planner reports that
/// the comparison needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSeed {
    /// The seed.
    pub seed: u64,
    /// First day (1-based) on which a request was gated because the pool was empty; a day
    /// after the scenario's last is a decision made while the last flows drained.
    pub depleted_day: Option<u32>,
    /// Requests decided free, partial and gated ([`FREE`], [`PARTIAL`], [`GATED`]), per tier
    /// at decision time; a partial offer the policy does not make counts as gated.
    pub served: [[u64; 3]; 4],
    /// Sats the pool absorbed.
    pub absorbed_sats: u64,
    /// Sats credited to the pool.
    pub credited_sats: u64,
    /// Pool balance at the end of each day.
    pub pool_by_day: Vec<u64>,
    /// Invariant violations the simulator's checker found (must be none).
    pub violations: Vec<String>,
}

impl SimSeed {
    /// Requests decided.
    pub fn requests(&self) -> u64 {
        self.served.iter().flatten().sum()
    }
}

/// The caller's policy the scenario states, read from the scenario (independently of the
/// planner, which states it in its run).
pub fn policy(s: &PlanScenario) -> Policy {
    let requote = s.partial.on_refused == OnRefused::Requote;
    Policy {
        min_offer: s.partial.enabled.then(|| Sats::new(s.partial.min_offer_sats).expect("validated")),
        requote_jobs: requote,
        requote_sessions: requote,
        session_pays_rest: true,
    }
}

/// The driver's state: the executor, what it waits for, and the scenario's samplers.
struct Sim<'a> {
    s: &'a PlanScenario,
    exec: Exec<ReferenceEngine>,
    rng: ChaCha8Rng,
    /// Each user's tier, as the driver last set it.
    tiers: Vec<Tier>,
    /// Flows held out of the scheduler until a time (work, an invoice being paid).
    held: BTreeMap<u32, u64>,
    /// Flows started, of every kind; also the next flow id.
    n_flows: u32,
    /// The user of each flow, by id.
    user_of: Vec<u32>,
    out: SimSeed,
    day_draw: DayDraw,
    /// Per tier, as the planner's ([`tier_samplers`]).
    estimate: [Sampler; 4],
    actual_pct: Sampler,
    ready: Vec<u32>,
}

/// Run `s` with `seed` through the simulator's executor on the reference engine.
pub fn run_simulated(s: &PlanScenario, seed: u64) -> SimSeed {
    let config = s.config();
    let mut tiers = Vec::new();
    for (tier, n) in Tier::ALL.into_iter().zip(s.population.by_tier()) {
        tiers.extend(std::iter::repeat_n(tier, usize::try_from(n).expect("validated population")));
    }
    let users = (0u32..).zip(tiers.iter().map(|t| Some(*t))).collect();
    let history = History {
        engine: "reference".to_owned(),
        seed,
        step_ms: STEP_MS,
        config,
        users,
        flows: Vec::new(),
        events: Vec::new(),
    };
    let exec = Exec::new(ReferenceEngine::new(config), &history, false).with_policy(policy(s)).recording_decisions();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(STREAM);
    let mut sim = Sim {
        s,
        exec,
        rng,
        tiers,
        held: BTreeMap::new(),
        n_flows: 0,
        user_of: Vec::new(),
        out: SimSeed {
            seed,
            depleted_day: None,
            served: [[0; 3]; 4],
            absorbed_sats: 0,
            credited_sats: 0,
            pool_by_day: Vec::with_capacity(s.days as usize),
            violations: Vec::new(),
        },
        day_draw: DayDraw::new(&s.requests),
        estimate: tier_samplers(&s.cost.estimate_sats, &s.cost.estimate_sats_by_tier, ESTIMATE_SATS_RANGE),
        actual_pct: Sampler::new(&s.cost.actual_pct, ACTUAL_PCT_RANGE),
        ready: Vec::new(),
    };
    sim.days();
    sim.finish()
}

impl Sim<'_> {
    fn days(&mut self) {
        let s = self.s;
        let mut growth = Growth::default();
        for day in 0..s.days {
            let day_start = EPOCH.0 + u64::from(day) * DAY_MS;
            if day > 0 {
                for _ in 0..growth.day(self.tiers.len(), s.population.growth_pct_per_day) {
                    let user = u32::try_from(self.tiers.len()).expect("fewer than 2^32 users");
                    self.tiers.push(Tier::New);
                    self.start(FlowKind::SetTier { tier: Tier::New }, user, |_| {});
                }
            }
            let arrivals = self.arrivals(day_start);
            let day_end = day_start + DAY_MS - 1;
            let mut next = arrivals.into_iter().peekable();
            loop {
                let now = self.exec.now().0;
                if let Some((_, user)) = next.next_if(|&(at_ms, _)| at_ms <= now) {
                    self.arrive(user);
                    continue;
                }
                let until = match next.peek() {
                    Some(&(at_ms, _)) => at_ms,
                    None if now >= day_end => break,
                    None => day_end,
                };
                self.step_or_wait(until);
            }
            self.out.pool_by_day.push(self.exec.engine().ledger().totals().pool_sats.to_u64());
            self.start(FlowKind::Expire, 0, |_| {});
            self.move_tiers();
        }
        // Every flow in flight runs to its end, its waits included, before the drain.
        while !self.exec.active().is_empty() {
            self.step_or_wait(u64::MAX);
        }
    }

    /// The run's result, after the simulator's drain (deadlines pass, `expire`, I5 and I6).
    fn finish(mut self) -> SimSeed {
        self.exec.drain();
        self.decisions();
        let t = self.exec.engine().ledger().totals();
        self.out.absorbed_sats = t.absorbed_sats.to_u64();
        self.out.credited_sats = t.credited_sats.to_u64();
        let result = self.exec.result();
        self.out.violations = result.violations.iter().map(|v| v.to_string()).collect();
        self.out
    }

    /// A flow that is ready takes its next step (chosen uniformly); or, with none ready, the
    /// clock jumps to the next end of a wait or to `until_ms`, whichever is first.
    fn step_or_wait(&mut self, until_ms: u64) {
        let now = self.exec.now().0;
        self.ready.clear();
        let mut wake = until_ms;
        for &(id, n) in self.exec.active() {
            assert_eq!(n, 0, "no duplicate deliveries without faults");
            match self.held.get(&id) {
                Some(&at_ms) if at_ms > now => wake = wake.min(at_ms),
                _ => self.ready.push(id),
            }
        }
        if self.ready.is_empty() {
            assert!(wake != u64::MAX, "nothing in flight and nothing to wait for");
            // Every event also moves the clock one step.
            self.exec.apply(Event::Jump(wake.saturating_sub(now).saturating_sub(STEP_MS)));
            return;
        }
        // `active` is in no particular order; sorting makes the pick a function of the seed.
        self.ready.sort_unstable();
        let id = self.ready[self.rng.gen_range(0..self.ready.len())];
        self.held.remove(&id);
        self.exec.apply(Event::Step(id));
        let now = self.exec.now().0;
        let wait = match self.exec.caller(id).map(|c| c.poll()) {
            Some(Next::Work) => Some(self.s.cost.work_ms),
            Some(Next::Invoice { abandonable: true, .. }) => Some(self.s.payment.pay_delay_ms),
            _ => None,
        };
        if let Some(ms) = wait {
            self.held.insert(id, now + ms);
        }
        self.decisions();
    }

    /// Count the decisions the callers received since the last look.
    fn decisions(&mut self) {
        let day = u32::try_from(self.exec.now().since(EPOCH) / DAY_MS + 1).expect("few days");
        let policy = policy(self.s);
        for (id, decision) in self.exec.take_decisions() {
            let tier = self.tiers[self.user_of[id as usize] as usize];
            let served = match decision {
                Decision::Free { .. } => FREE,
                Decision::Partial { offer_sats, .. } if policy.offers(offer_sats) => PARTIAL,
                Decision::Partial { .. } | Decision::Gate { .. } => GATED,
            };
            self.out.served[tier.index()][served] += 1;
            if let Decision::Gate { reason: GateReason::PoolEmpty, .. } = decision {
                self.out.depleted_day.get_or_insert(day);
            }
        }
    }

    /// Start a flow now: a job or session of `user` (filled in by `fill`), a tier change, or
    /// the sweeper.
    fn start(&mut self, kind: FlowKind, user: u32, fill: impl FnOnce(&mut Flow)) {
        let id = self.n_flows;
        self.n_flows = id.checked_add(1).expect("fewer than 2^32 flows");
        let mut flow = Flow::new(id, kind, user);
        fill(&mut flow);
        self.user_of.push(user);
        self.exec.add_flow(flow);
        self.exec.apply(Event::Start(id));
    }

    /// A request of `user` arrives: its costs and its user's answers are drawn now.
    fn arrive(&mut self, user: u32) {
        let s = self.s;
        let rng = &mut self.rng;
        let estimated = self.estimate[self.tiers[user as usize].index()].draw(rng).round().max(1.0) as u64;
        let pct = self.actual_pct.draw(rng);
        let actual = (estimated as f64 * pct / 100.0).round() as u64;
        let session = rng.gen::<f64>() < s.requests.session_share;
        let work_fails = rng.gen::<f64>() < s.cost.work_failure;
        let declines = Declines {
            partial: rng.gen::<f64>() >= s.payment.partial_paid,
            gate: rng.gen::<f64>() >= s.payment.gate_paid,
        };
        let kind = if session { FlowKind::Session } else { FlowKind::Job };
        self.start(kind, user, |f| {
            f.estimated_sats = estimated;
            f.actual_sats = actual;
            f.work_fails = work_fails;
            f.declines = declines;
        });
    }

    /// The day's arrivals from `day_start_ms`, by time: each user's count from the scenario's
    /// distribution, each time from the daily cycle (or evenly spaced).
    fn arrivals(&mut self, day_start_ms: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        self.day_draw.draw(&mut self.rng, &self.tiers, |ms_of_day, user| out.push((day_start_ms + ms_of_day, user)));
        out.sort_unstable();
        out
    }

    /// End of day: each user may move one tier up or down; each move is a flow of its own.
    fn move_tiers(&mut self) {
        for user in 0..self.tiers.len() {
            let Some(to) = tier_move(&self.s.tiers, self.tiers[user], &mut self.rng) else { continue };
            self.tiers[user] = to;
            let user = u32::try_from(user).expect("fewer than 2^32 users");
            self.start(FlowKind::SetTier { tier: to }, user, |_| {});
        }
    }
}
