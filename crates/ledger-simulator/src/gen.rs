//! The random side of a run: one `rand_chacha` generator per seed draws the swarm mix, the
//! population, every flow and every scheduling decision, and records them as a [`History`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use ledger_core::{Sats, Tier, DAY_MS};
use ledger_harness::Engine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::exec::{Actor, Exec, RunResult};
use crate::fault::Fault;
use crate::history::{Event, Flow, FlowKind, History};
use crate::scenario::{Faults, Scenario};
use crate::steer::{Bias, Draw, Knob, N_KNOBS};

/// How the next step is chosen among the operations in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// Uniformly at random.
    Random,
    /// Probabilistic concurrency testing: random priorities, the highest runs, and at a few
    /// random change points the running operation drops to the lowest priority.
    Pct,
}

/// Depth of the PCT scheduler: number of priority change points per run.
pub const PCT_DEPTH: usize = 3;

/// The per-seed mix drawn by swarm testing: which kinds and faults are on, and how traffic
/// is spread over users.
#[derive(Clone, Debug)]
struct Mix {
    jobs: bool,
    sessions: bool,
    faults: Faults,
    /// Users `0..n_hot` get `hot_share` of the traffic.
    n_hot: u32,
    hot_share: f64,
    /// Every known user in this tier, when set.
    one_tier: Option<Tier>,
}

impl Mix {
    fn plain(s: &Scenario) -> Mix {
        Mix { jobs: true, sessions: true, faults: s.faults.clone(), n_hot: 0, hot_share: 0.0, one_tier: None }
    }

    /// Draws the mix and the configuration's edges, each choice recorded in `draw`; with a
    /// `bias` (an aimed seed under `--steer`) each choice is drawn from its weights, without
    /// one the draw is the plain swarm's, call for call.
    fn draw(
        rng: &mut ChaCha8Rng,
        s: &Scenario,
        config: &mut ledger_core::Config,
        bias: Option<&Bias>,
        draw: &mut Draw,
    ) -> Mix {
        let mut choose = |rng: &mut ChaCha8Rng, knob: Knob, plain: &dyn Fn(&mut ChaCha8Rng) -> usize| {
            let o = match bias {
                None => plain(rng),
                Some(b) => b.pick(rng, knob),
            };
            draw[knob.index()] = u8::try_from(o).expect("few options");
            o
        };
        let on = |p: f64| move |rng: &mut ChaCha8Rng| usize::from(rng.gen_bool(p));
        let mut m = Mix::plain(s);
        let kinds = |rng: &mut ChaCha8Rng| match rng.gen_range(0..4) {
            0 => 0,
            1 => 1,
            _ => 2,
        };
        match choose(rng, Knob::Kinds, &kinds) {
            0 => m.sessions = false,
            1 => m.jobs = false,
            _ => {}
        }
        for &fault in Fault::ALL {
            let rate = m.faults.rate_mut(fault);
            *rate = match choose(rng, Knob::FaultOff(fault), &on(0.3)) {
                1 => 0.0,
                2 => (*rate * rng.gen_range(4.0..16.0)).min(1.0),
                _ => (*rate * rng.gen_range(0.25..4.0)).min(1.0),
            };
        }
        if choose(rng, Knob::HotSet, &on(0.4)) == 1 {
            m.n_hot = rng.gen_range(1..=8.min(s.n_users));
            m.hot_share = rng.gen_range(0.5..0.98);
        }
        if choose(rng, Knob::OneTier, &on(0.25)) == 1 {
            m.one_tier = Some(Tier::ALL[rng.gen_range(1..4)]);
        }
        if choose(rng, Knob::LowPool, &on(0.25)) == 1 {
            // An almost empty pool.
            config.pool_initial_sats = Sats::new(rng.gen_range(0..=500)).expect("small");
        }
        draw_edges(rng, config, &mut choose);
        m
    }
}

/// A knob's option, drawn from a bias or by the plain swarm's own calls (`gen.rs`'s `Mix::draw`).
type Choose<'a> = dyn FnMut(&mut ChaCha8Rng, Knob, &dyn Fn(&mut ChaCha8Rng) -> usize) -> usize + 'a;

/// The configuration's edges, drawn per seed: credit rates that are not whole percents (and
/// 0 and 100 %), budgets from nothing to large, reservation TTLs down to a millisecond.
fn draw_edges(rng: &mut ChaCha8Rng, config: &mut ledger_core::Config, choose: &mut Choose<'_>) {
    if choose(rng, Knob::CreditEdge, &|rng| usize::from(rng.gen_bool(0.5))) == 1 {
        let bps = [1_250, 333, 1, 9_999, 10_000, 0, 550, 2_501][rng.gen_range(0..8)];
        config.credit_bps = ledger_core::Bps::new(bps).expect("a rate of at most 10000 bp");
    }
    // Off, or one of four scales: the plain swarm's "30 %, then one of four".
    let edge = |rng: &mut ChaCha8Rng| if rng.gen_bool(0.3) { 1 + rng.gen_range(0..4) } else { 0 };
    let budget = choose(rng, Knob::BudgetEdge, &edge);
    if budget > 0 {
        // Saturating: a scenario's budget may already be near the largest amount.
        let scale = |s: Sats, num: u64, den: u64| {
            let scaled =
                (u128::from(s.to_u64()) * u128::from(num) / u128::from(den)).min(u128::from(Sats::MAX.to_u64()));
            Sats::new(u64::try_from(scaled).expect("at most Sats::MAX")).expect("at most Sats::MAX")
        };
        let (num, den) = [(1, 10), (10, 1), (1_000, 1), (0, 1)][budget - 1];
        let b = &mut config.budget_sats;
        (b.established, b.trusted, b.elite) =
            (scale(b.established, num, den), scale(b.trusted, num, den), scale(b.elite, num, den));
        if rng.gen_bool(0.5) {
            b.new = Sats::new(rng.gen_range(1..=100)).expect("small");
        }
    }
    let ttl = choose(rng, Knob::TtlEdge, &edge);
    if ttl > 0 {
        config.reservation_ttl_ms = [1, 250, 2_500, 60_000][ttl - 1];
    }
}

/// An edge probe: a clock jump that lands the next call exactly on an edge of the rules (or
/// one millisecond either side), then that call. Either a user's `decide` at the end of its
/// daily window, for an estimate equal to what the rules would leave it, the pool or its
/// budget, and an actual cost of nothing, the estimate or one more; or the sweeper's `expire`
/// at a reservation's deadline. The edges come from the
/// checker's books and the oracle's model, never from the engine under test. `None` when
/// there is no edge ahead.
fn probe<E: Engine>(
    rng: &mut ChaCha8Rng,
    history: &mut History,
    exec: &mut Exec<E>,
    scenario: &Scenario,
    mix: &Mix,
) -> Option<[Event; 3]> {
    let delta = [-1i64, 0, 0, 1][rng.gen_range(0..4)];
    // The call runs two events after the jump (the flow's start, then its first step).
    let lands = |target: u64| target.checked_sub(exec.now().0 + 2 * scenario.step_ms);
    let (jump, kind, user, estimated) = if rng.gen_bool(0.6) {
        let user = pick_user(rng, scenario, mix);
        let (start, _, outstanding, tier) = exec.checker().window_of(&ledger_harness::user_pubkey(u64::from(user)))?;
        let jump = lands(start.0.checked_add(DAY_MS)?.checked_add_signed(delta)?)?;
        let budget = i128::from(history.config.budget(tier).to_u64());
        let pool = exec.checker().model().map_or(budget, |m| i128::from(m.totals().pool_sats.to_u64()));
        let estimated = match rng.gen_range(0..4) {
            0 => budget,
            1 => pool,
            2 => budget - outstanding + 1,
            _ => budget - outstanding,
        };
        let kind = if rng.gen_bool(scenario.session_share) { FlowKind::Session } else { FlowKind::Job };
        (
            jump,
            kind,
            user,
            u64::try_from(estimated.clamp(1, i128::from(scenario.estimate_max_sats.max(1).saturating_mul(1_000))))
                .ok()?,
        )
    } else {
        let deadline = exec.checker().model()?.next_deadline()?;
        (lands(deadline.0.checked_add_signed(delta)?)?, FlowKind::Expire, 0, 0)
    };
    // The actual cost at its edges too: nothing (a record that absorbs 0), the estimate, one more.
    let actual = [0, estimated, estimated.saturating_add(1)][rng.gen_range(0..3)];
    let start = new_flow(history, exec, kind, user, |fl| {
        fl.estimated_sats = estimated;
        fl.actual_sats = actual;
    });
    let Event::Start(id) = start else { unreachable!("new_flow starts a flow") };
    Some([Event::Jump(jump), start, Event::Step(id)])
}

/// Chooses the next actor.
enum Scheduler {
    Random,
    Pct { order: BTreeSet<(Reverse<u64>, Actor)>, prio: FxHashMap<Actor, u64>, change_at: Vec<u64>, low: u64 },
}

impl Scheduler {
    fn new(kind: SchedulerKind, rng: &mut ChaCha8Rng, n_steps: u64) -> Scheduler {
        match kind {
            SchedulerKind::Random => Scheduler::Random,
            SchedulerKind::Pct => {
                let mut change_at: Vec<u64> = (0..PCT_DEPTH).map(|_| rng.gen_range(0..n_steps.max(1))).collect();
                change_at.sort_unstable();
                Scheduler::Pct {
                    order: BTreeSet::new(),
                    prio: FxHashMap::default(),
                    change_at,
                    low: PCT_DEPTH as u64 + 1,
                }
            }
        }
    }

    fn sync(&mut self, changes: &mut Vec<(Actor, bool)>, rng: &mut ChaCha8Rng) {
        if let Scheduler::Pct { order, prio, .. } = self {
            for (a, added) in changes.drain(..) {
                if added {
                    // Initial priorities sit above the change-point priorities.
                    let p = rng.gen_range(1u64 << 20..u64::MAX);
                    prio.insert(a, p);
                    order.insert((Reverse(p), a));
                } else if let Some(p) = prio.remove(&a) {
                    order.remove(&(Reverse(p), a));
                }
            }
        } else {
            changes.clear();
        }
    }

    fn pick(&mut self, active: &[Actor], rng: &mut ChaCha8Rng, step: u64) -> Actor {
        match self {
            Scheduler::Random => active[rng.gen_range(0..active.len())],
            Scheduler::Pct { order, prio, change_at, low } => {
                let &(Reverse(p), top) = order.first().expect("active actors are ordered");
                if change_at.first() == Some(&step) {
                    change_at.remove(0);
                    *low -= 1;
                    order.remove(&(Reverse(p), top));
                    order.insert((Reverse(*low), top));
                    prio.insert(top, *low);
                }
                order.first().expect("non-empty").1
            }
        }
    }
}

/// The ledger configuration seed `seed` of `scenario` runs with (a swarm seed draws its own),
/// for a driver that must set up its engine before [`run_seed`] asks for it.
pub fn seed_config(scenario: &Scenario, seed: u64) -> ledger_core::Config {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut config = scenario.ledger;
    if scenario.swarm {
        Mix::draw(&mut rng, scenario, &mut config, None, &mut [0; N_KNOBS]);
    }
    config
}

/// Draw and run one seed of `scenario` on `engine`, recording its history.
pub fn run_seed<E: Engine>(
    make: impl Fn(ledger_core::Config) -> E,
    engine_name: &str,
    scenario: &Scenario,
    seed: u64,
    scheduler: SchedulerKind,
) -> (RunResult, History) {
    let (r, h, _) = run_seed_aimed(make, engine_name, scenario, seed, scheduler, None);
    (r, h)
}

/// [`run_seed`], its swarm mix drawn from `bias` when given (an aimed seed of `--steer`), and
/// the option each knob took.
pub fn run_seed_aimed<E: Engine>(
    make: impl Fn(ledger_core::Config) -> E,
    engine_name: &str,
    scenario: &Scenario,
    seed: u64,
    scheduler: SchedulerKind,
    bias: Option<&Bias>,
) -> (RunResult, History, Draw) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut config = scenario.ledger;
    let mut draw = [0; N_KNOBS];
    let mix =
        if scenario.swarm { Mix::draw(&mut rng, scenario, &mut config, bias, &mut draw) } else { Mix::plain(scenario) };
    let users = draw_users(&mut rng, scenario, &mix);
    let mut history = History {
        engine: engine_name.to_owned(),
        seed,
        step_ms: scenario.step_ms,
        config,
        users,
        flows: Vec::new(),
        events: Vec::with_capacity(usize::try_from(scenario.n_steps).unwrap_or(0)),
    };
    let mut exec = Exec::new(make(config), &history, false);
    let mut sched = Scheduler::new(scheduler, &mut rng, scenario.n_steps);
    let p_arrival = 0.3;
    let expire_every = 500;
    for step in 0..scenario.n_steps {
        let jump = mix.faults.clock_jump > 0.0 && rng.gen_bool(mix.faults.clock_jump);
        if jump && scenario.swarm && rng.gen_bool(0.5) {
            if let Some(events) = probe(&mut rng, &mut history, &mut exec, scenario, &mix) {
                for ev in events {
                    history.events.push(ev);
                    exec.apply(ev);
                }
                continue;
            }
        }
        let ev = if jump {
            Event::Jump(rng.gen_range(DAY_MS / 2..DAY_MS * 2))
        } else if mix.faults.tier_change > 0.0 && rng.gen_bool(mix.faults.tier_change) {
            let user = pick_user(&mut rng, scenario, &mix);
            let tier = Tier::ALL[rng.gen_range(0..4)];
            new_flow(&mut history, &mut exec, FlowKind::SetTier { tier }, user, |_| {})
        } else if step % expire_every == expire_every - 1 {
            new_flow(&mut history, &mut exec, FlowKind::Expire, 0, |_| {})
        } else if exec.active().is_empty()
            || (exec.n_active_flows() < scenario.max_in_flight && rng.gen_bool(p_arrival))
        {
            let session = match (mix.jobs, mix.sessions) {
                (true, true) => rng.gen_bool(scenario.session_share),
                (jobs, _) => !jobs,
            };
            let kind = if session { FlowKind::Session } else { FlowKind::Job };
            let user = pick_user(&mut rng, scenario, &mix);
            let estimated = rng.gen_range(scenario.estimate_min_sats..=scenario.estimate_max_sats);
            let pct = u64::from(rng.gen_range(scenario.actual_min_pct..=scenario.actual_max_pct));
            let f = &mix.faults;
            let crash = rng.gen_bool(f.crash).then(|| rng.gen_range(1..=4));
            let duplicate = rng.gen_bool(f.duplicate).then(|| rng.gen_range(1..=4));
            let lost_ack = rng.gen_bool(f.lost_ack).then(|| rng.gen_range(1..=4));
            let (abandon, work_fails, dup_credit) =
                (rng.gen_bool(f.abandon), rng.gen_bool(f.work_failure), rng.gen_bool(f.duplicate_credit));
            new_flow(&mut history, &mut exec, kind, user, |fl| {
                fl.estimated_sats = estimated;
                fl.actual_sats = estimated * pct / 100;
                fl.crash_after = crash;
                fl.duplicate = duplicate;
                fl.lost_ack = lost_ack;
                fl.abandon = abandon;
                fl.work_fails = work_fails;
                fl.duplicate_credit = dup_credit;
            })
        } else {
            sched.sync(&mut exec.changes, &mut rng);
            match sched.pick(exec.active(), &mut rng, step) {
                (id, 0) => Event::Step(id),
                (id, n) => Event::Ghost(id, n),
            }
        };
        history.events.push(ev);
        exec.apply(ev);
    }
    exec.drain();
    (exec.result(), history, draw)
}

fn new_flow<E: Engine>(
    history: &mut History,
    exec: &mut Exec<E>,
    kind: FlowKind,
    user: u32,
    fill: impl FnOnce(&mut Flow),
) -> Event {
    let id = u32::try_from(history.flows.len()).expect("fewer than 2^32 flows");
    let mut flow = Flow::new(id, kind, user);
    fill(&mut flow);
    history.flows.push(flow.clone());
    exec.add_flow(flow);
    Event::Start(id)
}

fn draw_users(rng: &mut ChaCha8Rng, s: &Scenario, mix: &Mix) -> BTreeMap<u32, Option<Tier>> {
    let w = s.tiers.weights();
    let total: f64 = w.iter().sum();
    (0..s.n_users)
        .map(|u| {
            let mut x = rng.gen_range(0.0..total);
            let mut pick = 4;
            for (i, wi) in w.iter().enumerate() {
                if x < *wi {
                    pick = i;
                    break;
                }
                x -= wi;
            }
            let tier = if pick == 4 { None } else { Some(mix.one_tier.unwrap_or(Tier::ALL[pick])) };
            (u, tier)
        })
        .collect()
}

fn pick_user(rng: &mut ChaCha8Rng, s: &Scenario, mix: &Mix) -> u32 {
    if mix.n_hot > 0 && rng.gen_bool(mix.hot_share) {
        rng.gen_range(0..mix.n_hot)
    } else {
        rng.gen_range(0..s.n_users)
    }
}

/// Re-run a recorded history exactly (replay, shrinking, saved counterexamples).
pub fn replay<E: Engine>(make: impl Fn(ledger_core::Config) -> E, history: &History, log: bool) -> RunResult {
    let mut exec = Exec::new(make(history.config), history, log);
    for f in &history.flows {
        exec.add_flow(f.clone());
    }
    for &ev in &history.events {
        exec.apply(ev);
        exec.changes.clear();
    }
    exec.drain();
    exec.result()
}
