//! The executor: runs a [`History`] (or a live schedule) against an engine, playing every
//! caller's flow, injecting its faults, and feeding the invariant checker after each event.
//!
//! Nothing here draws random numbers or reads a clock: the same events give the same steps,
//! the same replies and the same trace hash. The random choices live in [`crate::gen`].
//!
//! The callers follow SPEC.md §0 and the seed's comments. What each tells the checker as the
//! request's *charge reduction* (the part of the work's actual cost the user did not pay,
//! which I3 compares with the pool's net debit plus any overrun the engine reported):
//! - free job or session: the actual cost (the user pays nothing); `record(actual, reserved)`;
//! - partial job: the user paid `charge = estimate - offer` up front, so the reduction is
//!   `actual - charge` (at least 0), recorded as the pool's share; if the reservation comes
//!   back empty or refused, the caller re-quotes (a top-up invoice) and the reduction is 0;
//!   if it comes back short (only the seed does that), the caller runs the work anyway, as
//!   the seed's caller does, with the charge already reduced;
//! - partial session: the work runs first, then `reserve_partial(min(actual, offer))`; the
//!   reduction is that amount when anything was reserved (the seed's caller computes the
//!   charge from the advisory offer), and the reference's caller re-quotes once with what a
//!   refusal says is available;
//! - gated request, failed work, abandoned invoice: 0;
//! - a record refused because the reservation expired: the whole pool share is an overrun
//!   paid outside the pool.
//!
//! A crashed worker reports nothing: its reservation is left to `expire` (and to I6).

use std::collections::BTreeMap;

use ledger_core::{Decision, GateReason, Movement, Outcome, Pubkey, Refusal, RequestId, Sats, TimeMs};
use ledger_harness::{Call, Checker, Engine, Invariant, Named, Reply, Violation};
use rustc_hash::FxHashMap;

use crate::caller::{Caller, Event as CallerEvent, Next, Policy};
pub use crate::coverage::Coverage;
use crate::coverage::Mark;
use crate::history::{Event, Flow, FlowKind, History, MAX_TRACE_TTL_MS};
use crate::scenario::MAX_SCHEDULE_MS;

/// Simulated time of the first event: 2023-11-14T22:13:20Z.
pub const EPOCH: TimeMs = TimeMs(1_700_000_000_000);

// A trace's schedule ends at most `MAX_SCHEDULE_MS` after the epoch and its TTL is at most
// `MAX_TRACE_TTL_MS`: the drain's jump past every deadline leaves it more than 2^60 ms for its
// steps within SPEC's 0..=2^63-1.
const _: () = assert!(EPOCH.0 + MAX_SCHEDULE_MS + MAX_TRACE_TTL_MS + 1 + (1 << 60) <= i64::MAX as u64);

/// A schedulable thing: a flow's own calls (`0`) or a duplicate delivery (`1..`).
pub type Actor = (u32, u8);

#[derive(Debug)]
struct CallRt<Op> {
    call: Call,
    op: Option<Op>,
    no: u8,
}

#[derive(Debug)]
struct FlowRt<Op> {
    flow: Flow,
    /// The job's or session's caller; `None` for a tier change or a sweeper run.
    caller: Option<Caller>,
    call: Option<CallRt<Op>>,
    ghosts: Vec<Option<CallRt<Op>>>,
    n_calls: u8,
    lost_ack_spent: bool,
    failures: u8,
    started_at: TimeMs,
    live: bool,
    /// The user walks away from what the decision asked ([`crate::history::Declines`]).
    declined: bool,
}

/// What one run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Every violation, in the order found.
    pub violations: Vec<Violation>,
    /// Index of the event at which each invariant first broke (`None`: in the drain or never).
    pub first_event: BTreeMap<Invariant, Option<usize>>,
    /// Events executed, drain included.
    pub n_events: u64,
    /// Job and session flows started.
    pub n_requests: u64,
    /// Rare states reached.
    pub coverage: Coverage,
    /// A hash of every step's event, replies and balances.
    pub trace_hash: u64,
    /// A line per step, when asked for.
    pub log: Vec<String>,
}

/// Runs flows against an engine.
pub struct Exec<E: Engine> {
    engine: E,
    checker: Checker,
    now: TimeMs,
    step_ms: u64,
    faults_on: bool,
    flows: Vec<FlowRt<E::Op>>,
    index: FxHashMap<u32, usize>,
    in_flight_by_user: FxHashMap<u32, u32>,
    active: Vec<Actor>,
    active_pos: FxHashMap<Actor, usize>,
    n_active_flows: u32,
    journal: Vec<Movement>,
    fed: usize,
    coverage: Coverage,
    hash: u64,
    n_events: u64,
    n_requests: u64,
    first_event: BTreeMap<Invariant, Option<usize>>,
    n_seen: usize,
    log: Option<Vec<String>>,
    policy: Policy,
    /// Every decision a caller received, by flow, when a driver asked for them.
    decisions: Option<Vec<(u32, Decision)>>,
    /// Actors added (`true`) or removed (`false`) since the scheduler last looked.
    pub changes: Vec<(Actor, bool)>,
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl<E: Engine> Exec<E> {
    /// An executor for `history`'s users and configuration on `engine` (which must be at
    /// genesis under the same configuration). Identities known to the trust service are
    /// created first, in user order, outside the schedule.
    pub fn new(mut engine: E, history: &History, log: bool) -> Exec<E> {
        assert_eq!(*engine.config(), history.config, "engine and history must share a config");
        let mut checker = Checker::new(&history.config);
        let mut journal = Vec::new();
        for (&user, tier) in &history.users {
            let Some(tier) = *tier else { continue };
            let pubkey = ledger_harness::user_pubkey(u64::from(user));
            let call = Call::SetTier { pubkey, tier };
            let mut op = engine.begin(&call);
            let reply = loop {
                if let Some(reply) = engine.step(&mut op, EPOCH, &mut journal) {
                    break reply;
                }
            };
            if engine.speaks_reference_api() {
                checker.on_reply(&call.to_command(), EPOCH, &reply);
            }
            checker.on_tier(pubkey, tier, EPOCH);
        }
        Exec {
            engine,
            checker,
            now: EPOCH,
            step_ms: history.step_ms,
            faults_on: true,
            flows: Vec::with_capacity(history.flows.len()),
            index: FxHashMap::default(),
            in_flight_by_user: FxHashMap::default(),
            active: Vec::new(),
            active_pos: FxHashMap::default(),
            n_active_flows: 0,
            journal,
            fed: 0,
            coverage: Coverage::default(),
            hash: 0xcbf2_9ce4_8422_2325,
            n_events: 0,
            n_requests: 0,
            first_event: BTreeMap::new(),
            n_seen: 0,
            log: log.then(Vec::new),
            policy: Policy::default(),
            decisions: None,
            changes: Vec::new(),
        }
    }

    /// The same executor with its callers serving under `policy` (the simulator's own runs use
    /// [`Policy::default`]). Set it before any flow starts; a history run under a policy
    /// replays only under the same one (a [`History`] does not record it).
    pub fn with_policy(mut self, policy: Policy) -> Exec<E> {
        self.policy = policy;
        self
    }

    /// Keep every decision a caller receives, for [`Exec::take_decisions`]: a driver that
    /// measures who is served free, partial or gated reads them from here.
    pub fn recording_decisions(mut self) -> Exec<E> {
        self.decisions = Some(Vec::new());
        self
    }

    /// The decisions received since the last call, by flow id, in the order they came.
    pub fn take_decisions(&mut self) -> Vec<(u32, Decision)> {
        self.decisions.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The caller of job or session flow `id`, while it is known: what it waits for is its
    /// [`Caller::poll`].
    pub fn caller(&self, id: u32) -> Option<&Caller> {
        self.flows[*self.index.get(&id)?].caller.as_ref()
    }

    /// Make `flow` known (before its `Start` event).
    pub fn add_flow(&mut self, flow: Flow) {
        self.index.insert(flow.id, self.flows.len());
        self.flows.push(FlowRt {
            flow,
            caller: None,
            call: None,
            ghosts: Vec::new(),
            n_calls: 0,
            lost_ack_spent: false,
            failures: 0,
            started_at: EPOCH,
            live: false,
            declined: false,
        });
    }

    /// Actors that can take a step, in no particular order.
    pub fn active(&self) -> &[Actor] {
        &self.active
    }

    /// The simulated time of the next event.
    pub fn now(&self) -> TimeMs {
        self.now
    }

    /// The checker, whose books (independent of the engine's) the generator reads to aim at
    /// the edges of the rules.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Job and session flows in flight.
    pub fn n_active_flows(&self) -> u32 {
        self.n_active_flows
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    fn mix(&mut self, words: &[u64]) {
        for w in words {
            self.hash = (self.hash ^ w).wrapping_mul(FNV_PRIME);
        }
    }

    fn activate(&mut self, a: Actor) {
        self.active_pos.insert(a, self.active.len());
        self.active.push(a);
        self.changes.push((a, true));
    }

    fn deactivate(&mut self, a: Actor) {
        if let Some(pos) = self.active_pos.remove(&a) {
            self.active.swap_remove(pos);
            if let Some(&moved) = self.active.get(pos) {
                self.active_pos.insert(moved, pos);
            }
            self.changes.push((a, false));
        }
    }

    /// Execute one event, then advance the clock by one step and check the invariants.
    /// An event naming a flow that cannot act (not started, finished) does nothing.
    pub fn apply(&mut self, ev: Event) {
        self.journal.clear();
        self.fed = 0;
        match ev {
            Event::Start(id) => self.start(id),
            Event::Step(id) => self.step_main(id),
            Event::Ghost(id, n) => self.step_ghost(id, n),
            Event::Jump(ms) => {
                self.now = self.now.plus_ms(ms);
                self.note(|| format!("clock jumps {ms} ms"));
                if self.n_active_flows > 0 && ms >= ledger_core::DAY_MS / 2 {
                    self.coverage.hit(Mark::WindowRolloverInFlight);
                }
            }
        }
        self.feed_checker();
        let observed = self.engine.observe();
        self.checker.after_step(&observed);
        if observed.pool_sats == 0 && self.journal.iter().any(|m| matches!(m, Movement::Debit { .. })) {
            self.coverage.hit(Mark::PoolExactlyZero);
        }
        for m in &self.journal {
            if matches!(m, Movement::Expire { .. }) {
                self.coverage.hit(Mark::ReservationExpired);
            }
        }
        let (code, id) = match ev {
            Event::Start(id) => (1, u64::from(id)),
            Event::Step(id) => (2, u64::from(id)),
            Event::Ghost(id, n) => (3 + u64::from(n), u64::from(id)),
            Event::Jump(ms) => (0, ms),
        };
        let pool = observed.pool_sats as u64;
        let n_moves = self.journal.len() as u64;
        self.mix(&[code, id, pool, observed.granted_sats as u64, n_moves]);
        let n_violations = self.checker.violations().len();
        if n_violations > self.n_seen {
            let at = usize::try_from(self.n_events).ok();
            for v in &self.checker.violations()[self.n_seen..] {
                self.first_event.entry(v.invariant).or_insert(at);
            }
            if let Some(log) = self.log.as_mut() {
                for v in &self.checker.violations()[self.n_seen..] {
                    log.push(format!("    !! {v}"));
                }
            }
            self.n_seen = n_violations;
        }
        self.n_events += 1;
        self.now = self.now.plus_ms(self.step_ms);
    }

    /// Hand the movements of the step just taken to the checker, before the caller reacts
    /// to the reply (a request is closed against its settled books).
    fn feed_checker(&mut self) {
        self.checker.on_movements(&self.journal[self.fed..], self.now);
        self.fed = self.journal.len();
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        let t = self.now.since(EPOCH);
        let n_events = self.n_events;
        if let Some(log) = &mut self.log {
            log.push(format!("[{n_events:>5}] t+{}.{:03}s  {}", t / 1000, t % 1000, line()));
        }
    }

    fn start(&mut self, id: u32) {
        let Some(&idx) = self.index.get(&id) else {
            return;
        };
        if self.flows[idx].live || self.flows[idx].n_calls > 0 {
            return;
        }
        let flow = self.flows[idx].flow.clone();
        let pubkey = ledger_harness::user_pubkey(u64::from(flow.user));
        self.flows[idx].live = true;
        self.flows[idx].started_at = self.now;
        self.note(|| {
            format!(
                "flow {id} starts: {:?} user#{} est={} actual={}",
                flow.kind, flow.user, flow.estimated_sats, flow.actual_sats
            )
        });
        let call = match flow.kind {
            FlowKind::Job | FlowKind::Session => {
                self.n_requests += 1;
                self.n_active_flows += 1;
                *self.in_flight_by_user.entry(flow.user).or_insert(0) += 1;
                let session = flow.kind == FlowKind::Session;
                let (estimated, actual) = (sats(flow.estimated_sats), sats(flow.actual_sats));
                let caller = Caller::new(RequestId(u64::from(id)), pubkey, session, estimated, actual, self.now)
                    .with_policy(self.policy);
                let Next::Call(call) = caller.poll() else { unreachable!("a caller begins with its decide") };
                let call = call.clone();
                self.flows[idx].caller = Some(caller);
                call
            }
            FlowKind::SetTier { tier } => Call::SetTier { pubkey, tier },
            FlowKind::Expire => Call::Expire,
        };
        self.activate((id, 0));
        self.call(idx, call);
    }

    /// Begin a call of flow `idx`; its first step is the flow's next step.
    fn call(&mut self, idx: usize, call: Call) {
        let f = &mut self.flows[idx];
        f.n_calls = f.n_calls.saturating_add(1);
        let no = f.n_calls;
        let duplicate = self.faults_on
            && (f.flow.duplicate == Some(no) || (f.flow.duplicate_credit && matches!(call, Call::Credit { .. })));
        if duplicate {
            let ghost = CallRt { call: call.clone(), op: None, no };
            f.ghosts.push(Some(ghost));
            let n = u8::try_from(f.ghosts.len()).expect("few ghosts per flow");
            let id = f.flow.id;
            self.coverage.hit(Mark::DuplicateDelivered);
            self.activate((id, n));
        }
        let f = &mut self.flows[idx];
        f.call = Some(CallRt { call, op: None, no });
    }

    /// I8: the engine answered `call` now with `reply`; the oracle judges it when the engine
    /// speaks the reference API.
    fn judge(&mut self, call: &Call, reply: &Reply) {
        if self.engine.speaks_reference_api() {
            self.checker.on_reply(&call.to_command(), self.now, reply);
        }
    }

    fn step_ghost(&mut self, id: u32, n: u8) {
        let Some(&idx) = self.index.get(&id) else {
            return;
        };
        let Some(slot) = usize::from(n).checked_sub(1) else {
            return;
        };
        let Some(Some(mut g)) = self.flows[idx].ghosts.get_mut(slot).map(Option::take) else {
            return;
        };
        let op = g.op.get_or_insert_with(|| self.engine.begin(&g.call));
        let reply = self.engine.step(op, self.now, &mut self.journal);
        self.feed_checker();
        match reply {
            None => self.flows[idx].ghosts[slot] = Some(g),
            Some(reply) => {
                self.judge(&g.call, &reply);
                self.note(|| format!("flow {id} duplicate of {} -> {}", show_call(&g.call), show_reply(&reply)));
                if self.journal.is_empty()
                    && matches!(reply, Reply::Ok(_))
                    && !matches!(g.call, Call::SetTier { .. } | Call::Expire)
                {
                    self.coverage.hit(Mark::DuplicateSuppressed);
                }
                if let (Call::SetTier { pubkey, tier }, Reply::Ok(_)) = (&g.call, &reply) {
                    self.checker.on_tier(*pubkey, *tier, self.now);
                }
                self.deactivate((id, n));
            }
        }
    }

    fn step_main(&mut self, id: u32) {
        let Some(&idx) = self.index.get(&id) else {
            return;
        };
        if !self.flows[idx].live {
            return;
        }
        if self.flows[idx].call.is_some() {
            return self.step_call(idx);
        }
        match self.flows[idx].caller.as_ref().map(Caller::poll) {
            Some(Next::Work) => self.work(idx),
            Some(Next::Invoice { amount, abandonable }) => self.pay(idx, amount, abandonable),
            Some(Next::Call(_) | Next::Done(_)) | None => {}
        }
    }

    fn step_call(&mut self, idx: usize) {
        let mut c = self.flows[idx].call.take().expect("a flow in the call stage has a call");
        let op = c.op.get_or_insert_with(|| self.engine.begin(&c.call));
        let reply = self.engine.step(op, self.now, &mut self.journal);
        self.feed_checker();
        let Some(reply) = reply else {
            self.flows[idx].call = Some(c);
            return;
        };
        self.judge(&c.call, &reply);
        let id = self.flows[idx].flow.id;
        self.note(|| format!("flow {id} {} -> {}", show_call(&c.call), show_reply(&reply)));
        let f = &mut self.flows[idx];
        if self.faults_on && f.flow.lost_ack == Some(c.no) && !f.lost_ack_spent {
            // The call committed, the caller saw an error: it sends the same call again.
            f.lost_ack_spent = true;
            c.op = None;
            f.call = Some(c);
            self.coverage.hit(Mark::LostAckRetry);
            self.note(|| format!("flow {id} lost the acknowledgement and retries"));
            return;
        }
        if let Reply::Failed { .. } = reply {
            f.failures += 1;
            if f.failures <= 3 {
                c.op = None;
                f.call = Some(c);
            } else {
                self.finish(idx, None);
            }
            return;
        }
        if let Reply::Refused(Refusal::Overflow) = reply {
            self.checker
                .on_overflow(Some(RequestId(u64::from(id))), &format!("{} refused with overflow", c.call.name()));
        }
        self.on_reply(idx, &c, reply);
        let f = &self.flows[idx];
        if self.faults_on && f.live && f.flow.crash_after == Some(c.no) {
            self.coverage.hit(Mark::WorkerCrash);
            self.note(|| format!("flow {id} worker crashes"));
            self.finish(idx, None);
        }
    }

    /// The flow is over: `close` says what the user was let off paying and the overrun
    /// reported; `None` for a flow that died or has nothing to account for.
    fn finish(&mut self, idx: usize, close: Option<(Sats, Sats)>) {
        let f = &mut self.flows[idx];
        f.live = false;
        f.call = None;
        let (id, user, kind) = (f.flow.id, f.flow.user, f.flow.kind);
        if matches!(kind, FlowKind::Job | FlowKind::Session) {
            self.n_active_flows -= 1;
            if let Some(n) = self.in_flight_by_user.get_mut(&user) {
                *n -= 1;
            }
        }
        if let Some((reduction, overrun)) = close {
            self.checker.on_close(RequestId(u64::from(id)), reduction, overrun);
        }
        self.deactivate((id, 0));
    }

    fn on_reply(&mut self, idx: usize, c: &CallRt<E::Op>, reply: Reply) {
        let f = &mut self.flows[idx];
        let Some(caller) = f.caller.as_mut() else {
            if let Call::SetTier { pubkey, tier } = c.call {
                self.checker.on_tier(pubkey, tier, self.now);
                let user = f.flow.user;
                if self.in_flight_by_user.get(&user).is_some_and(|n| *n > 0) {
                    self.coverage.hit(Mark::TierChangeInFlight);
                }
            }
            return self.finish(idx, None);
        };
        caller.handle_reply(&reply, self.now);
        self.advance(idx);
    }

    /// Counts what the caller of flow `idx` saw, then acts on its next move at once: begins
    /// its call, or finishes the flow. Work and invoices wait for the flow's next step.
    fn advance(&mut self, idx: usize) {
        let pubkey = ledger_harness::user_pubkey(u64::from(self.flows[idx].flow.user));
        while let Some(event) = self.flows[idx].caller.as_mut().and_then(Caller::poll_event) {
            match event {
                CallerEvent::Decided(decision) => {
                    self.cover_decision(decision);
                    let f = &mut self.flows[idx];
                    let declines = f.flow.declines;
                    f.declined = match decision {
                        Decision::Free { .. } => false,
                        Decision::Partial { offer_sats, .. } if self.policy.offers(offer_sats) => declines.partial,
                        Decision::Partial { .. } | Decision::Gate { .. } => declines.gate,
                    };
                    if let Some(decisions) = self.decisions.as_mut() {
                        decisions.push((f.flow.id, decision));
                    }
                }
                CallerEvent::Granted => self.cover_exhaustion(pubkey),
                CallerEvent::Mark(mark) => self.coverage.hit(mark),
            }
        }
        let next = match self.flows[idx].caller.as_ref().map(Caller::poll) {
            Some(Next::Call(call)) => Ok(call.clone()),
            Some(Next::Done(close)) => Err(close),
            Some(Next::Work | Next::Invoice { .. }) | None => return,
        };
        match next {
            Ok(call) => self.call(idx, call),
            Err(close) => self.finish(idx, Some((close.reduction, close.overrun))),
        }
    }

    fn cover_decision(&mut self, decision: Decision) {
        match decision {
            Decision::Partial { .. } => self.coverage.hit(Mark::DecisionPartial),
            Decision::Gate { reason: GateReason::DailyBudgetExhausted, .. } => {
                self.coverage.hit(Mark::GateDailyBudgetExhausted)
            }
            Decision::Gate { reason: GateReason::PoolEmpty, .. } => self.coverage.hit(Mark::GatePoolEmpty),
            _ => {}
        }
    }

    /// A grant just left the user's daily remaining at exactly zero.
    fn cover_exhaustion(&mut self, pubkey: Pubkey) {
        if self.engine.daily_remaining(&pubkey, self.now).is_some_and(|d| d.is_zero()) {
            self.coverage.hit(Mark::DailyBudgetExactlyExhausted);
        }
    }

    fn work(&mut self, idx: usize) {
        let f = &self.flows[idx];
        let fails = self.faults_on && f.flow.work_fails;
        // A declined session's user walked away: its work never runs.
        let declined = f.declined;
        let id = f.flow.id;
        self.note(|| match (fails, declined) {
            (_, true) => format!("flow {id} user walks away, no work"),
            (true, false) => format!("flow {id} work fails"),
            (false, false) => format!("flow {id} work succeeds"),
        });
        if fails {
            self.coverage.hit(Mark::WorkFailure);
        }
        self.flows[idx].caller.as_mut().expect("only a caller works").handle_work(!fails && !declined);
        self.advance(idx);
    }

    fn pay(&mut self, idx: usize, amount: Sats, abandonable: bool) {
        let f = &mut self.flows[idx];
        let id = f.flow.id;
        // Sessions are charged after the work from a balance the user already holds.
        let abandons = ((self.faults_on && f.flow.abandon) || f.declined) && abandonable;
        let caller = f.caller.as_mut().expect("only a caller is invoiced");
        caller.handle_invoice(!abandons);
        if abandons {
            self.coverage.hit(Mark::InvoiceAbandoned);
            self.note(|| format!("flow {id} user abandons the invoice of {amount} sats"));
        } else if let Next::Call(&Call::Credit { payment_id, paid_sats }) = caller.poll() {
            self.note(|| format!("flow {id} user pays {paid_sats} sats (payment {})", payment_id.0));
            self.checker.on_payment(payment_id, paid_sats);
        }
        self.advance(idx);
    }

    /// Stop the faults, run every flow in flight to its end (round robin by actor), let the
    /// deadlines pass, run `expire`, and check that nothing is left (I5, I6).
    pub fn drain(&mut self) {
        self.faults_on = false;
        let mut rounds = 0u32;
        while !self.active.is_empty() {
            let mut actors = self.active.clone();
            actors.sort_unstable();
            for (id, n) in actors {
                if self.active_pos.contains_key(&(id, n)) {
                    self.apply(if n == 0 { Event::Step(id) } else { Event::Ghost(id, n) });
                }
            }
            rounds += 1;
            if rounds > 10_000 {
                // Liveness: every flow must end within a bound once faults stop.
                self.checker.on_overflow(None, "the drain did not finish within 10000 rounds");
                break;
            }
        }
        // Past every deadline. A history read from a trace has a bounded TTL
        // (`history::MAX_TRACE_TTL_MS`); one built in code cannot wrap the jump to 0 ms either, which
        // would leave every crashed worker's reservation to I5 and I6.
        self.apply(Event::Jump(self.engine.config().reservation_ttl_ms.saturating_add(1)));
        let mut op = self.engine.begin(&Call::Expire);
        self.journal.clear();
        let reply = loop {
            if let Some(reply) = self.engine.step(&mut op, self.now, &mut self.journal) {
                break reply;
            }
        };
        self.judge(&Call::Expire, &reply);
        self.note(|| "the sweeper runs expire".to_owned());
        self.checker.on_movements(&self.journal, self.now);
        for m in &self.journal {
            if matches!(m, Movement::Expire { .. }) {
                self.coverage.hit(Mark::ReservationExpired);
            }
        }
        self.checker.after_step(&self.engine.observe());
        self.checker.finish();
        if let Some(log) = self.log.as_mut() {
            for v in &self.checker.violations()[self.n_seen..] {
                log.push(format!("    !! {v}"));
            }
        }
    }

    /// The run's result (call after [`Exec::drain`]).
    pub fn result(self) -> RunResult {
        let mut first_event = self.first_event;
        for v in self.checker.violations() {
            first_event.entry(v.invariant).or_insert(None);
        }
        RunResult {
            violations: self.checker.violations().to_vec(),
            first_event,
            n_events: self.n_events,
            n_requests: self.n_requests,
            coverage: self.coverage,
            trace_hash: self.hash,
            log: self.log.unwrap_or_default(),
        }
    }
}

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("scenario amounts are validated")
}

fn show_call(c: &Call) -> String {
    match c {
        Call::SetTier { pubkey, tier } => format!("set_tier({}, {tier})", Named(*pubkey)),
        Call::Decide { pubkey, estimated_sats, .. } => format!("decide({}, est={estimated_sats})", Named(*pubkey)),
        Call::ReservePartial { amount_sats, .. } => format!("reserve_partial({amount_sats})"),
        Call::Release { amount_sats, .. } => format!("release({amount_sats})"),
        Call::Record { actual_sats, reserved_sats, .. } => {
            format!("record(actual={actual_sats}, reserved={reserved_sats})")
        }
        Call::Credit { payment_id, paid_sats } => format!("credit(payment {}, paid={paid_sats})", payment_id.0),
        Call::Expire => "expire".to_owned(),
    }
}

fn show_reply(r: &Reply) -> String {
    match r {
        Reply::Ok(Outcome::Decided { decision }) => match decision {
            Decision::Free { reserved_sats } => format!("free, reserved {reserved_sats}"),
            Decision::Partial { offer_sats, charge_sats } => {
                format!("partial, offer {offer_sats}, charge {charge_sats}")
            }
            Decision::Gate { reason, charge_sats } => format!("gate ({reason:?}), charge {charge_sats}"),
        },
        Reply::Ok(o) => serde_json::to_string(o).unwrap_or_default(),
        Reply::Refused(r) => format!("refused: {r}"),
        Reply::Failed { error } => format!("failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ledger_core::{Config, Tier};
    use ledger_harness::ReferenceEngine;

    use crate::history::{Event, Flow, FlowKind, History};

    /// The drain jumps the TTL plus one past every deadline; at the largest TTL that jump is
    /// the end of time, not 0 ms (which would leave the crashed worker's reservation held and
    /// blame the engine for it under I5 and I6).
    #[test]
    fn the_drains_jump_past_every_deadline_does_not_wrap() {
        let config = Config { reservation_ttl_ms: u64::MAX, ..Config::default() };
        let mut flow = Flow::new(1, FlowKind::Session, 1);
        (flow.estimated_sats, flow.actual_sats, flow.crash_after) = (100, 100, Some(1));
        let mut events = vec![Event::Start(1)];
        events.extend([Event::Step(1); 6]);
        let h = History {
            engine: "reference".into(),
            seed: 0,
            step_ms: 250,
            config,
            users: BTreeMap::from([(1, Some(Tier::Elite))]),
            flows: vec![flow],
            events,
        };
        let r = crate::gen::replay(ReferenceEngine::new, &h, true);
        let jump = r.log.iter().find(|l| l.contains("clock jumps")).expect("the drain jumps");
        assert!(jump.ends_with(&format!("clock jumps {} ms", u64::MAX)), "{jump}");
    }
}
