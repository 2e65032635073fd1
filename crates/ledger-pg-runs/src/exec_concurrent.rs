//! `run --engine exec --concurrency N`: N flows in flight on one child at once, replies in any
//! order, judged on the history and the final `observe` (I1-I6), as the concurrent Postgres
//! runs are ([`crate::checks::history_checks`]).
//!
//! One thread multiplexes the child: every caller that can make a call sends it, then the next
//! response (whichever it answers) advances its caller. The workload is the concurrent Postgres
//! runs' ([`crate::concurrent::draw_workload`]): identities first, then flows with their own
//! faults (a duplicate delivery, a worker crash, a failed work, an abandoned invoice), all in
//! one daily window; lost acknowledgements (`--lost-ack`: the reply is dropped and the call sent
//! again) and a kill of the child (`--kill-child-at N`, a durable implementation only: the calls
//! in flight are drained, the child is killed with SIGKILL and started again, and what it showed
//! before must be what it shows after, I7).
//!
//! None of these faults makes a call fail: a lost acknowledgement drops a reply that came (the
//! call is sent again and must be answered as a repeat), a duplicate is not retried, and the
//! child is killed only when no call is in flight. So an error answer is always the
//! implementation's own: a call that keeps failing until it has been sent [`MAX_ATTEMPTS`]
//! times is given up and reported as the implementation's failure (`engine_error`, with the calls and
//! their errors), as the Postgres runs report an error the SQL raised. A child that leaves
//! calls without an answer for `--exec-timeout` has hung: a finding of that seed (`no_answer`,
//! naming the calls and the bound, the seed's calls written), not judged further; one that
//! exits (`crash`) or writes a line that is not a response of the protocol to a request in
//! flight (`bad_answer`: not JSON, a number out of the protocol's range, the id of no request
//! in flight, an answer of another kind) likewise, the line quoted. Its process group is
//! killed and the same command started again for the next seed; when it cannot be, the seeds
//! stop there and what was found is reported.

use std::collections::BTreeMap;
use std::time::Instant;

use ledger_core::{Config, Decision, Movement, Outcome, Sats, TimeMs};
use ledger_exec::engine::answer_text;
use ledger_exec::protocol::{RequestBody, ResponseBody};
use ledger_exec::{reply_movements, Api, Child, ExecError, FailureKind, Observation, StateKind};
use ledger_harness::{Call, Invariant, Observed, Reply, Violation};
use ledger_simulator::caller::{Caller as FlowCaller, Close, Event as CallerEvent, Next};
use ledger_simulator::coverage::Mark;
use ledger_simulator::exec::EPOCH;
use ledger_simulator::report::{Reduction, RunReport, ViolationReport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::args::{ExecArgs, PgArgs, PgRun};
use crate::checks::{history_checks, linearizability};
use crate::concurrent::{concurrent_report, draw_workload, write_ops, ConcSeed, EngineErrorWords, ENGINE_ERRORS_KEPT};
use crate::exec::{report_name, start};
use crate::progress::{Progress, Where};
use crate::record::{ConcFlow, OpRecord};

/// A call that keeps failing this many times kills its flow, and is reported (`engine_error`).
const MAX_ATTEMPTS: u32 = 60;

/// A call's successful answers are dropped as lost acknowledgements (`--lost-ack`) at most this
/// many times in a row: the next is delivered, so that every call ends however high the rate
/// (at `--lost-ack 1` each call is sent this many times and once more).
const MAX_LOST_ACKS: u32 = 8;

/// An answer a concurrent run cannot go on from: of another kind than the request's, an
/// outcome of another call, an error where the run needs an answer (the setup's `set_tier`,
/// the `reset`, the final `observe`). The implementation's failure (`bad_answer`), in words
/// that follow its command.
#[derive(Debug)]
struct Misanswered(String);

impl std::fmt::Display for Misanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Misanswered {}

/// `bad_answer`: `request` was answered with `body` (under `id`), which the run cannot use.
fn misanswered(request: &str, id: u64, body: &ResponseBody) -> anyhow::Error {
    anyhow::Error::new(Misanswered(format!(
        "answered {request} with {}: {}",
        ledger_exec::child::kind(body),
        answer_text(id, body)
    )))
}

/// One flow in flight.
struct Active<'f> {
    flow: &'f ConcFlow,
    caller: FlowCaller,
    rng: ChaCha8Rng,
    now: TimeMs,
    n_calls: u8,
    /// The call in flight was delivered twice at once (a duplicate sent with its first try).
    duplicated: bool,
    /// The call awaiting its answer and what its tries came to so far.
    waiting: Option<(Call, Tries)>,
}

/// What the tries of one call came to so far.
#[derive(Clone, Copy, Debug, Default)]
struct Tries {
    /// Sent and answered.
    attempts: u32,
    /// Answered with an error.
    failures: u32,
    /// Successes dropped as lost acknowledgements.
    lost: u32,
    /// The fault of the try in flight (`retry` after the first).
    fault: Option<&'static str>,
}

/// What a request in flight is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The call of the flow in this slot.
    Call(usize),
    /// A second delivery of a flow's call, its flow and the call's number in it (nobody
    /// waits for it).
    Duplicate(u32, u8),
}

struct Seed<'a> {
    child: Child,
    api: Api,
    lost_ack: f64,
    kill_at: Option<u64>,
    killed: bool,
    n_sent: u64,
    /// Each call in flight: why, what, its time, and when it was sent on [`Seed::clock`].
    in_flight: BTreeMap<u64, (Purpose, Call, TimeMs, u64)>,
    /// The history's clock: ticks at every sending and every answer.
    clock: u64,
    ops: Vec<OpRecord>,
    marks: BTreeMap<&'static str, u64>,
    violations: Vec<Violation>,
    /// Calls given up because the implementation failed every try: how many, and the first
    /// few described.
    engine_errors: (u64, Vec<String>),
    /// The flow each slot holds (the last one it was given).
    slot_flows: BTreeMap<usize, u32>,
    /// The reference API: the calls (flow, the call's number in it) one of whose answers was
    /// booked as the one that applied it ([`Seed::books`]).
    booked: std::collections::BTreeSet<(u32, u8)>,
    /// The reference API: each call answered as fresh, how many times, and the call.
    fresh: BTreeMap<(u32, u8), (u32, Call)>,
    config: &'a Config,
}

impl Seed<'_> {
    fn mark(&mut self, m: Mark) {
        *self.marks.entry(m.name()).or_insert(0) += 1;
    }

    /// `call` of `flow` (`None`: the final sweep), sent at `now`, was given up: `failures` of
    /// its `tries` were answered with an error, the last `error`.
    fn gave_up(&mut self, flow: Option<u32>, call: &Call, now: TimeMs, (failures, tries): (u32, u32), error: &str) {
        self.mark(Mark::CallGaveUp);
        let e = &mut self.engine_errors;
        e.0 += 1;
        if e.1.len() < ENGINE_ERRORS_KEPT {
            let who = flow.map_or("the final sweep".to_owned(), |f| format!("flow {f}"));
            let request = serde_json::to_string(&RequestBody::Call { now_ms: now, call: call.clone() })
                .unwrap_or_else(|_| call.name().to_owned());
            let how = if failures == tries {
                format!("failed on each of its {tries} tries: {error}")
            } else {
                format!(
                    "failed {failures} of its {tries} tries (the others' answers dropped as lost acknowledgements), \
                     the last: {error}"
                )
            };
            e.1.push(ledger_harness::text::shown(&format!("{who}: {request} {how}")));
        }
    }

    /// Whether a success answering `call` (number `key.1` of flow `key.0`) carries the call's
    /// movements. Of the reference API, the first success of a call does, whether it says
    /// `fresh` or is a repeat: a repeat first is the proof that a try which got no answer
    /// (an indefinite error) or a delivery whose answer is still to come applied it; every
    /// later success is a repeat of what is booked. A service that answers a repeat it never
    /// applied is then caught by the books (I2), and one that applies a call twice by the
    /// second `fresh` ([`Seed::fresh_twice`]). A seed API's answer always carries its own.
    fn books(&mut self, key: (u32, u8), call: &Call, fresh: bool) -> bool {
        if self.api != Api::Reference {
            return true;
        }
        if fresh {
            self.fresh.entry(key).or_insert_with(|| (0, call.clone())).0 += 1;
        }
        self.booked.insert(key)
    }

    /// I8: calls answered as fresh more than once (a repeat must say `fresh: false`): applied
    /// twice, or a repeat said to be new.
    fn fresh_twice(&mut self) {
        for (&(flow, _), (n, call)) in &self.fresh {
            if *n > 1 {
                let request = serde_json::to_string(call).unwrap_or_else(|_| call.name().to_owned());
                self.violations.push(Violation {
                    invariant: ledger_harness::Invariant::I8,
                    request_id: call.request_id(),
                    detail: format!(
                        "flow {flow}'s {request} was answered as fresh {n} times: a repeat of a call is answered \
                         `fresh: false` with the first outcome, so it was applied more than once or a repeat \
                         was said to be new"
                    ),
                });
            }
        }
    }

    fn send(&mut self, purpose: Purpose, call: Call, now: TimeMs) -> anyhow::Result<()> {
        let id = self.child.send(RequestBody::Call { now_ms: now, call: call.clone() })?;
        self.n_sent += 1;
        self.clock += 1;
        self.in_flight.insert(id, (purpose, call, now, self.clock));
        Ok(())
    }

    fn record(
        &mut self,
        flow: u32,
        call: &Call,
        sent: (TimeMs, u64),
        reply: Reply,
        fresh: bool,
        fault: Option<&'static str>,
    ) -> anyhow::Result<()> {
        let movements = match &reply {
            Reply::Ok(outcome) => {
                reply_movements(self.api, call, outcome, fresh, None).map_err(|e| anyhow::Error::new(Misanswered(e)))?
            }
            _ => Vec::new(),
        };
        self.clock += 1;
        let (now, invoked) = sent;
        self.ops.push(OpRecord {
            flow,
            call: call.clone(),
            reply,
            movements,
            now,
            invoked,
            completed: self.clock,
            fault,
        });
        Ok(())
    }

    fn observe(&mut self) -> anyhow::Result<Observation> {
        let r = self.child.ask(RequestBody::Observe)?;
        match r.body {
            ResponseBody::Observed(o) => Ok(o),
            other => Err(misanswered("observe", r.id, &other)),
        }
    }

    /// What the implementation did wrong when `e` ended a seed, if `e` is its failure (not the
    /// harness's): the kind of failure and, in words that follow its command, what it did. A
    /// line it wrote that names a request in flight names it.
    fn failure_of(&self, e: &anyhow::Error) -> Option<(FailureKind, String)> {
        if let Some(m) = e.downcast_ref::<Misanswered>() {
            return Some((FailureKind::BadAnswer, m.0.clone()));
        }
        let e = e.downcast_ref::<ExecError>()?;
        let (kind, how) = match e {
            ExecError::Timeout { waiting, secs, .. } => {
                (FailureKind::NoAnswer, format!("did not answer {waiting} within {secs} s (--exec-timeout)"))
            }
            ExecError::Eof { waiting, .. } => FailureKind::of_error(e, waiting)?,
            ExecError::Garbled { id: Some(id), .. } if self.in_flight.contains_key(id) => {
                let (purpose, call, now, _) = &self.in_flight[id];
                let request = serde_json::to_string(&RequestBody::Call { now_ms: *now, call: call.clone() })
                    .unwrap_or_else(|_| call.name().to_owned());
                let what = format!("flow {}'s {request} (request id {id} on the wire)", self.flow_of(*purpose));
                FailureKind::of_error(e, &what)?
            }
            _ => FailureKind::of_error(e, "a request")?,
        };
        Some((kind, how))
    }

    /// `seed` ended because the child failed as `how` says (`kind`; for a `no_answer`, the
    /// calls it left without an answer within `secs`): the seed's result (not judged: what the
    /// child showed is no longer its state), the finding's detail, a line per call left without
    /// an answer, and the seed's calls, those last among them (failed, with the kind as their
    /// `fault`).
    fn failed(
        &mut self,
        seed: u64,
        kind: FailureKind,
        how: &str,
        secs: u64,
    ) -> (ConcSeed, String, Vec<String>, Vec<OpRecord>) {
        let command = self.child.command().to_owned();
        let error = match kind {
            FailureKind::NoAnswer => format!("no answer within {secs} s (--exec-timeout)"),
            FailureKind::Crash => "no answer: the implementation exited".to_owned(),
            FailureKind::BadAnswer => "no answer the harness could read".to_owned(),
        };
        let mut steps = Vec::new();
        for (id, (purpose, call, now, invoked)) in std::mem::take(&mut self.in_flight) {
            let flow = self.flow_of(purpose);
            let request = serde_json::to_string(&RequestBody::Call { now_ms: now, call: call.clone() })
                .unwrap_or_else(|_| call.name().to_owned());
            steps.push(ledger_harness::text::shown(&format!(
                "flow {flow}: {request} (request id {id} on the wire{})",
                if matches!(purpose, Purpose::Duplicate(..)) { ", a duplicate delivery" } else { "" }
            )));
            self.clock += 1;
            self.ops.push(OpRecord {
                flow,
                call,
                reply: Reply::Failed { error: error.clone() },
                movements: Vec::new(),
                now,
                invoked,
                completed: self.clock,
                fault: Some(kind.id()),
            });
        }
        let what = match (kind, steps.first()) {
            // A request asked alone (the reset, a set_tier, the final sweep or observe).
            (_, None) => how.to_owned(),
            (FailureKind::NoAnswer, Some(first)) => format!(
                "left {} call(s) without an answer within {secs} s (--exec-timeout), the first: {first}",
                steps.len()
            ),
            (_, Some(first)) => {
                format!("{how}; {} call(s) were left without an answer, the first: {first}", steps.len())
            }
        };
        let detail = ledger_harness::text::shown(&format!(
            "seed {seed}: `{command}` {what}; its process group was killed after {} call(s) of the seed, which is \
             not judged past them (the calls, the last unanswered, are in the trace)",
            self.n_sent
        ));
        let ops = std::mem::take(&mut self.ops);
        self.violations.clear();
        let r = ConcSeed {
            violations: Vec::new(),
            n_calls: self.n_sent,
            n_requests: 0,
            marks: std::mem::take(&mut self.marks),
            ops: Vec::new(),
            deadlocks: 0,
            n_engine_errors: 0,
            engine_errors: Vec::new(),
        };
        self.engine_errors = (0, Vec::new());
        (r, detail, steps, ops)
    }

    /// The flow a request in flight is for.
    fn flow_of(&self, purpose: Purpose) -> u32 {
        match purpose {
            Purpose::Duplicate(flow, _) => flow,
            Purpose::Call(slot) => self.slot_flows.get(&slot).copied().unwrap_or(u32::MAX),
        }
    }

    /// Kills the child that failed in `seed` (`kind`), with its process group, and starts
    /// the same command again for the next seed.
    fn revive(&mut self, seed: u64, kind: FailureKind) -> anyhow::Result<()> {
        let (command, env, timeout) =
            (self.child.command().to_owned(), self.child.env().to_vec(), self.child.timeout());
        let why = match kind {
            FailureKind::NoAnswer => "no longer answers",
            FailureKind::Crash => "exited",
            FailureKind::BadAnswer => "wrote what is not an answer",
        };
        ledger_exec::say!(
            "ledger-sim: `{command}` {why} (seed {seed}): killing its process group and starting it again"
        );
        self.child.kill();
        self.child = Child::start(&command, &env, self.config, timeout)?;
        Ok(())
    }

    /// Drained, observed, killed with SIGKILL, started again and observed again: what it
    /// acknowledged must all still be there (I7).
    fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        let before = self.observe()?;
        let (command, env, timeout) =
            (self.child.command().to_owned(), self.child.env().to_vec(), self.child.timeout());
        ledger_exec::say!(
            "ledger-sim: killing `{command}` (SIGKILL, pid {}) after {} calls, then starting it again",
            self.child.pid(),
            self.n_sent
        );
        self.child.kill();
        self.child = Child::start(&command, &env, self.config, timeout)?;
        self.mark(Mark::ChildKilled);
        let after = self.observe()?;
        if before != after {
            self.violations.push(Violation {
                invariant: Invariant::I7,
                request_id: None,
                detail: format!(
                    "after {} acknowledged calls `{command}` showed {}; killed and started again, it shows {}",
                    self.n_sent,
                    show(&before),
                    show(&after)
                ),
            });
        }
        if self.api == Api::Reference {
            self.repeat_acknowledged(&command)?;
        }
        Ok(())
    }

    /// I7 beyond the totals, after a kill: every call acknowledged before it (the last
    /// [`REPEATED_AFTER_KILL`] of them with a request or payment id) is sent again, and must be
    /// answered as a repeat (`fresh: false`) with the outcome it was first answered: a service
    /// that lost a request's or a payment's record answers it as new, or differently, even when
    /// its totals survived. The repeats change nothing, and are not part of the history.
    fn repeat_acknowledged(&mut self, command: &str) -> anyhow::Result<()> {
        let mut first: BTreeMap<String, (Call, TimeMs, Outcome)> = BTreeMap::new();
        for op in &self.ops {
            if let (Reply::Ok(outcome), false) = (&op.reply, matches!(op.call, Call::SetTier { .. } | Call::Expire)) {
                let key = serde_json::to_string(&op.call).unwrap_or_default();
                first.entry(key).or_insert_with(|| (op.call.clone(), op.now, outcome.clone()));
            }
        }
        let mut calls: Vec<(Call, TimeMs, Outcome)> = first.into_values().collect();
        calls.sort_by_key(|(_, now, _)| *now);
        let skip = calls.len().saturating_sub(REPEATED_AFTER_KILL);
        let (mut lost, mut shown) = (0u64, Vec::new());
        for (call, now, outcome) in calls.into_iter().skip(skip) {
            let answer = self.child.ask(RequestBody::Call { now_ms: now, call: call.clone() })?;
            let kept =
                matches!(&answer.body, ResponseBody::Reply { fresh: false, reply: Reply::Ok(o) } if *o == outcome);
            if !kept {
                lost += 1;
                if shown.len() < 5 {
                    let request = serde_json::to_string(&call).unwrap_or_else(|_| call.name().to_owned());
                    let before = serde_json::to_string(&outcome).unwrap_or_default();
                    shown.push(format!("{request} answered {before}, then {}", answer_text(answer.id, &answer.body)));
                }
            }
        }
        if lost > 0 {
            self.violations.push(Violation {
                invariant: Invariant::I7,
                request_id: None,
                detail: ledger_harness::text::shown(&format!(
                    "`{command}`, killed and started again, answered {lost} call(s) acknowledged before the kill \
                     otherwise than as a repeat of their first answer: {}",
                    shown.join("; ")
                )),
            });
        }
        Ok(())
    }
}

/// The acknowledged calls a kill's I7 check sends again, at most: the latest.
const REPEATED_AFTER_KILL: usize = 5_000;

fn show(o: &Observation) -> String {
    format!(
        "pool {}, reserved {}, granted {} in {} grants",
        o.pool_sats,
        o.reserved_sats.map_or("-".to_owned(), |r| r.to_string()),
        o.granted_sats,
        o.n_grants
    )
}

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("scenario amounts are validated")
}

/// A seed's flows, its users' tiers, and how each flow that finished closed.
type Workload = (Vec<ConcFlow>, BTreeMap<u32, ledger_core::Tier>, BTreeMap<u32, Close>);

/// One seed on the child (reset to genesis under the scenario's configuration first), saying
/// where it is every few seconds (`progress`).
fn exec_seed(
    seed_state: &mut Seed<'_>,
    run: &PgRun<'_>,
    seed: u64,
    n: usize,
    progress: &mut Progress,
) -> anyhow::Result<Workload> {
    let s = seed_state;
    s.booked.clear();
    s.fresh.clear();
    let (users, flows) = draw_workload(run.scenario, seed);
    let reset = s.child.ask(RequestBody::Reset { config: (*s.config).into() })?;
    match reset.body {
        ResponseBody::ResetOk => {}
        other => return Err(misanswered("reset", reset.id, &other)),
    }
    // The trust service's identities, before any traffic.
    // An error answer is tried again, as a flow's call is (a set_tier is idempotent): one that
    // fails every try leaves the seed without its users, the implementation's failure.
    for (&user, &tier) in &users {
        let call = Call::SetTier { pubkey: ledger_harness::user_pubkey(u64::from(user)), tier };
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = s.child.ask(RequestBody::Call { now_ms: EPOCH, call: call.clone() })?;
            match answer.body {
                ResponseBody::Reply { reply: Reply::Ok(_), .. } => break,
                ResponseBody::Error { code, .. } if tries < MAX_ATTEMPTS => {
                    if !code.is_definite() {
                        s.mark(Mark::IndefiniteError);
                    }
                    s.mark(Mark::FailedCallRetried);
                }
                other => {
                    let what = format!("set_tier of user#{user} (try {tries} of at most {MAX_ATTEMPTS})");
                    return Err(misanswered(&what, answer.id, &other));
                }
            }
        }
    }
    let mut slots: Vec<Option<Active<'_>>> = (0..n).map(|_| None).collect();
    let mut next_flow = 0;
    let mut closes = BTreeMap::new();
    loop {
        let quiescing = s.kill_at.is_some_and(|k| s.n_sent >= k) && !s.killed;
        if quiescing && s.in_flight.is_empty() {
            s.kill_and_restart()?;
            s.killed = true;
        }
        let quiescing = quiescing && !s.killed;
        for (i, slot) in slots.iter_mut().enumerate() {
            loop {
                if slot.is_none() {
                    if quiescing || next_flow >= flows.len() {
                        break;
                    }
                    let flow = &flows[next_flow];
                    next_flow += 1;
                    // Virtual time: 10 ms between flow starts, all inside one daily window.
                    let now = EPOCH.plus_ms(10 * u64::from(flow.id));
                    let pubkey = ledger_harness::user_pubkey(u64::from(flow.user));
                    let request = ledger_core::RequestId(u64::from(flow.id));
                    let caller = FlowCaller::new(
                        request,
                        pubkey,
                        flow.session,
                        sats(flow.estimated_sats),
                        sats(flow.actual_sats),
                        now,
                    );
                    let rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(flow.id) << 20) ^ 0x9e37_79b9);
                    *slot = Some(Active { flow, caller, rng, now, n_calls: 0, duplicated: false, waiting: None });
                    s.slot_flows.insert(i, flow.id);
                }
                let a = slot.as_mut().expect("filled above");
                if a.waiting.is_some() || quiescing {
                    break;
                }
                let f = a.flow;
                match a.caller.poll() {
                    Next::Call(call) => {
                        let call = call.clone();
                        a.n_calls = a.n_calls.saturating_add(1);
                        a.now = a.now.plus_ms(1);
                        a.waiting = Some((call.clone(), Tries::default()));
                        let now = a.now;
                        // At-least-once delivery: half of the duplicates arrive while the call
                        // itself is in flight, the others after its answer (below).
                        let dup = f.duplicate == Some(a.n_calls)
                            || (f.duplicate_credit && matches!(call, Call::Credit { .. }));
                        a.duplicated = dup && a.rng.gen_bool(0.5);
                        s.send(Purpose::Call(i), call.clone(), now)?;
                        if a.duplicated {
                            s.mark(Mark::DuplicateDelivered);
                            s.send(Purpose::Duplicate(f.id, a.n_calls), call, now)?;
                        }
                        break;
                    }
                    Next::Work => a.caller.handle_work(!f.work_fails),
                    Next::Invoice { abandonable, .. } => {
                        let abandons = abandonable && f.abandon;
                        if abandons {
                            *s.marks.entry(Mark::InvoiceAbandoned.name()).or_insert(0) += 1;
                        }
                        a.caller.handle_invoice(!abandons);
                    }
                    Next::Done(close) => {
                        closes.insert(f.id, close);
                        *slot = None;
                        continue;
                    }
                }
                while let Some(event) = a.caller.poll_event() {
                    let m = match event {
                        CallerEvent::Decided(Decision::Free { .. }) => Some(Mark::DecisionFree),
                        CallerEvent::Decided(Decision::Partial { .. }) => Some(Mark::DecisionPartial),
                        CallerEvent::Decided(Decision::Gate { .. }) => Some(Mark::DecisionGate),
                        CallerEvent::Granted => None,
                        CallerEvent::Mark(mark) => Some(mark),
                    };
                    if let Some(m) = m {
                        *s.marks.entry(m.name()).or_insert(0) += 1;
                    }
                }
            }
        }
        s.child.flush()?;
        if s.in_flight.is_empty() {
            if quiescing {
                continue;
            }
            break;
        }
        progress.tick(|| Where {
            done: (next_flow - slots.iter().filter(|a| a.is_some()).count()) as u64,
            answered: s.ops.len() as u64,
            failed: s.ops.iter().filter(|op| matches!(op.reply, Reply::Failed { .. })).count() as u64,
            in_flight: s.in_flight.len() as u64,
        });
        let response = s.child.recv()?;
        let Some((purpose, call, now, invoked)) = s.in_flight.get(&response.id).cloned() else {
            unreachable!("the child checks that a response answers a request in flight")
        };
        if !matches!(response.body, ResponseBody::Reply { .. } | ResponseBody::Error { .. }) {
            // Still in flight: the finding names it among the calls left without an answer.
            let request = serde_json::to_string(&RequestBody::Call { now_ms: now, call: call.clone() })
                .unwrap_or_else(|_| call.name().to_owned());
            return Err(misanswered(&request, response.id, &response.body));
        }
        s.in_flight.remove(&response.id);
        let (reply, fresh) = match response.body {
            ResponseBody::Reply { fresh, reply } => (reply, fresh),
            ResponseBody::Error { code, text, .. } => {
                if !code.is_definite() {
                    s.mark(Mark::IndefiniteError);
                }
                // Retried like any failed call; for the reference API the retry's `fresh` tells
                // whether the first attempt applied.
                (Reply::Failed { error: ledger_exec::child::error_text(code, &text) }, false)
            }
            _ => unreachable!("checked above"),
        };
        let slot = match purpose {
            Purpose::Duplicate(flow, n) => {
                let booked = matches!(reply, Reply::Ok(_)) && s.books((flow, n), &call, fresh);
                s.record(flow, &call, (now, invoked), reply, booked, Some("duplicate"))?;
                continue;
            }
            Purpose::Call(slot) => slot,
        };
        let a = slots[slot].as_mut().expect("a slot with a call in flight holds its flow");
        let f = a.flow;
        let (_, mut tries) = a.waiting.take().expect("waiting for this answer");
        tries.attempts += 1;
        if let Reply::Failed { error } = &reply {
            let error = error.clone();
            s.record(f.id, &call, (now, invoked), reply, false, tries.fault)?;
            tries.failures += 1;
            if tries.attempts >= MAX_ATTEMPTS {
                // No fault of the run fails a call: the implementation failed it every time.
                s.gave_up(Some(f.id), &call, now, (tries.failures, tries.attempts), &error);
                slots[slot] = None;
                continue;
            }
            s.mark(Mark::FailedCallRetried);
            tries.fault = Some("retry");
            a.waiting = Some((call.clone(), tries));
            s.send(Purpose::Call(slot), call, now)?;
            continue;
        }
        let booked = s.books((f.id, a.n_calls), &call, fresh);
        let lost = s.lost_ack > 0.0 && tries.lost < MAX_LOST_ACKS && a.rng.gen_bool(s.lost_ack);
        s.record(
            f.id,
            &call,
            (now, invoked),
            reply.clone(),
            booked,
            if lost { Some("lost_ack") } else { tries.fault },
        )?;
        if lost {
            // The answer is lost on its way: the caller sends the same call again.
            s.mark(Mark::LostAckRetry);
            tries.lost += 1;
            tries.fault = Some("retry");
            a.waiting = Some((call.clone(), tries));
            s.send(Purpose::Call(slot), call, now)?;
            continue;
        }
        let dup = f.duplicate == Some(a.n_calls) || (f.duplicate_credit && matches!(call, Call::Credit { .. }));
        if dup && !a.duplicated {
            // At-least-once delivery: the same call arrives again.
            s.mark(Mark::DuplicateDelivered);
            s.send(Purpose::Duplicate(f.id, a.n_calls), call.clone(), now)?;
        }
        if f.crash_after == Some(a.n_calls) {
            s.mark(Mark::WorkerCrash);
            slots[slot] = None;
            continue;
        }
        a.caller.handle_reply(&reply, now);
    }
    // Traffic stopped: let every deadline pass and sweep (the seed's expire does nothing).
    let end = EPOCH.plus_ms(10 * u64::try_from(flows.len()).unwrap_or(0) + s.config.reservation_ttl_ms + 1000);
    let mut last_error = None;
    // A try answered with an indefinite error may have swept: what it expired is then what the
    // books still held, less what the try that succeeds expires itself.
    let mut maybe_swept = false;
    for _ in 0..MAX_ATTEMPTS {
        s.clock += 1;
        let invoked = s.clock;
        let sweep = RequestBody::Call { now_ms: end, call: Call::Expire };
        let answer = s.child.ask(sweep.clone())?;
        let (reply, fresh) = match answer.body {
            ResponseBody::Reply { fresh, reply } => (reply, fresh),
            ResponseBody::Error { code, text, .. } => {
                maybe_swept |= !code.is_definite();
                (Reply::Failed { error: ledger_exec::child::error_text(code, &text) }, false)
            }
            other => {
                let request = serde_json::to_string(&sweep).unwrap_or_else(|_| "expire".to_owned());
                return Err(misanswered(&format!("the final sweep {request}"), answer.id, &other));
            }
        };
        last_error = match &reply {
            Reply::Failed { error } => Some(error.clone()),
            _ => None,
        };
        s.record(u32::MAX, &Call::Expire, (end, invoked), reply, fresh, None)?;
        if last_error.is_none() {
            if maybe_swept && s.api == Api::Reference {
                let swept = held_after(&s.ops);
                if let Some(last) = s.ops.last_mut() {
                    last.movements.extend(
                        swept.into_iter().map(|(request_id, held)| Movement::Expire { request_id, amount_sats: held }),
                    );
                }
            }
            break;
        }
    }
    if let Some(error) = last_error {
        // Reported as the implementation's failure; the books are still checked.
        s.gave_up(None, &Call::Expire, end, (MAX_ATTEMPTS, MAX_ATTEMPTS), &error);
    }
    Ok((flows, users, closes))
}

/// What the movements of `ops` leave held, per request: debited and not yet returned or
/// absorbed (the reservations a sweep after every deadline expires).
fn held_after(ops: &[OpRecord]) -> BTreeMap<ledger_core::RequestId, Sats> {
    let mut held: BTreeMap<ledger_core::RequestId, i128> = BTreeMap::new();
    for m in ops.iter().flat_map(|op| &op.movements) {
        match *m {
            Movement::Debit { request_id, amount_sats, .. } => {
                *held.entry(request_id).or_default() += amount_sats.to_i128()
            }
            Movement::Release { request_id, amount_sats } | Movement::Expire { request_id, amount_sats } => {
                *held.entry(request_id).or_default() -= amount_sats.to_i128()
            }
            Movement::Record { request_id, absorbed_sats, returned_sats, .. } => {
                *held.entry(request_id).or_default() -= absorbed_sats.to_i128() + returned_sats.to_i128()
            }
            Movement::Credit { .. } => {}
        }
    }
    held.into_iter()
        .filter_map(|(r, h)| u64::try_from(h).ok().filter(|&h| h > 0).and_then(|h| Sats::new(h).ok()).map(|h| (r, h)))
        .collect()
}

/// A seed in which the implementation failed (`kind`): the finding's detail, a line per call
/// left without an answer, and the calls of the seed.
struct FailedSeed {
    kind: FailureKind,
    seed: u64,
    detail: String,
    steps: Vec<String>,
    ops: Vec<OpRecord>,
}

/// `run --engine exec --concurrency N`.
pub(crate) fn exec_concurrent(run: &PgRun<'_>, args: &PgArgs, exec: &ExecArgs, n: u32) -> anyhow::Result<RunReport> {
    if args.kill_connections > 0.0
        || args.restart_server_at.is_some()
        || args.crash_server_at.is_some()
        || args.batch_lanes.is_some()
    {
        anyhow::bail!(
            "--kill-connections, --restart-server-at, --crash-server-at and --batch-lanes are faults of pg-reference and pg-seed; an exec run has --lost-ack and --kill-child-at"
        );
    }
    if let Some(secs) = args.give_up_after {
        // Nothing here waits out an outage: a child that stops answering fails its call
        // after --exec-timeout.
        anyhow::bail!(
            "--give-up-after {secs}: an exec run has no database outage to give up on; a call the child does not \
             answer fails after --exec-timeout"
        );
    }
    let started = Instant::now();
    let config = run.scenario.ledger;
    // The database outlives the child (declared first, dropped last).
    let (child, _db) = start(exec, args, &config)?;
    if run.stop.is_some() {
        // The child answered: from here a first signal lets the seed in flight finish.
        ledger_exec::child::finish_seed_on_first_signal();
    }
    let api = child.hello().api;
    if exec.kill_child_at.is_some() && child.hello().state != StateKind::Durable {
        anyhow::bail!(
            "--kill-child-at: `{}` says its state is in memory; only an implementation with durable state survives a kill",
            child.command()
        );
    }
    let name = report_name(api);
    let mut s = Seed {
        child,
        api,
        lost_ack: args.lost_ack,
        kill_at: exec.kill_child_at,
        killed: false,
        n_sent: 0,
        in_flight: BTreeMap::new(),
        clock: 0,
        ops: Vec::new(),
        marks: BTreeMap::new(),
        violations: Vec::new(),
        engine_errors: (0, Vec::new()),
        slot_flows: BTreeMap::new(),
        booked: Default::default(),
        fresh: BTreeMap::new(),
        config: &config,
    };
    let mut per_seed = Vec::new();
    // The seeds in which the implementation failed (it hung, exited, or wrote what is not an
    // answer).
    let mut failures: Vec<FailedSeed> = Vec::new();
    // Why the implementation could not be started again after a failure, if it could not.
    let mut gone = None;
    let secs = s.child.timeout().as_secs();
    for seed in run.seeds.0..run.seeds.1 {
        if run.stopping() {
            break;
        }
        s.killed = false;
        s.n_sent = 0;
        let mut progress = Progress::new(seed, run.scenario.n_steps);
        let ran = exec_seed(&mut s, run, seed, n as usize, &mut progress).and_then(|w| Ok((w, s.observe()?)));
        let ((flows, users, closes), observed) = match ran {
            Ok(done) => done,
            Err(e) => {
                let Some((kind, how)) = s.failure_of(&e) else { return Err(e) };
                // The implementation failed: its finding, not an error of the run.
                let mut r = s.failed(seed, kind, &how, secs);
                r.0.n_requests = draw_workload(run.scenario, seed).1.len() as u64;
                failures.push(FailedSeed { kind, seed, detail: r.1, steps: r.2, ops: r.3 });
                per_seed.push((seed, r.0));
                if run.fail_fast {
                    break;
                }
                if seed + 1 < run.seeds.1 && !run.stopping() {
                    if let Err(e) = s.revive(seed, kind) {
                        let why = ledger_harness::text::shown(&format!("{e:#}"));
                        ledger_exec::say!(
                            "ledger-sim: {why}; it was started again because it failed in seed {seed} (a {} finding), \
                             and since it cannot be, the run stops its seeds here and reports what it found",
                            kind.id()
                        );
                        gone = Some((seed, why));
                        break;
                    }
                }
                continue;
            }
        };
        progress.checking(s.ops.len());
        let observed = Observed::from(observed);
        let movements: Vec<_> = s.ops.iter().flat_map(|o| o.movements.iter().copied()).collect();
        s.fresh_twice();
        let mut violations = std::mem::take(&mut s.violations);
        violations.extend(history_checks(
            &movements,
            &observed,
            api == Api::Reference,
            &config,
            &users,
            &flows,
            &closes,
        ));
        // Not held while the history is searched.
        drop(movements);
        if api == Api::Reference {
            let (judged, mark) = linearizability(&config, &users, &s.ops, |n| args.linear_budget(n));
            violations.extend(judged);
            s.mark(mark);
        }
        let r = ConcSeed {
            violations,
            n_calls: s.n_sent,
            n_requests: flows.len() as u64,
            marks: std::mem::take(&mut s.marks),
            ops: std::mem::take(&mut s.ops),
            deadlocks: 0,
            n_engine_errors: s.engine_errors.0,
            engine_errors: std::mem::take(&mut s.engine_errors.1),
        };
        s.engine_errors.0 = 0;
        let bad = !r.violations.is_empty() || r.n_engine_errors > 0;
        per_seed.push((seed, r));
        if bad && run.fail_fast {
            break;
        }
    }
    let mut again = format!(
        "ledger-sim run --engine exec {}{} --users {} --steps {} --concurrency {n}",
        exec.replay_flags(),
        crate::args::scenario_flag(run),
        run.scenario.n_users,
        run.scenario.n_steps
    );
    if args.lost_ack > 0.0 {
        again.push_str(&format!(" --lost-ack {}", args.lost_ack));
    }
    if let Some(n) = args.linearizability_budget {
        again.push_str(&format!(" --linearizability-budget {n}"));
    }
    if let Some(k) = exec.kill_child_at {
        again.push_str(&format!(" --kill-child-at {k}"));
    }
    let command = s.child.command().to_owned();
    let detail = |n_calls: u64, first: &str| {
        ledger_harness::text::shown(&format!(
            "`{command}` kept failing {n_calls} call(s) until the run gave them up ({MAX_ATTEMPTS} tries each): no \
             fault of the run fails a call (a lost acknowledgement drops a reply that came, a kill waits for the \
             calls in flight), so each error was the implementation's own; the first: {first}"
        ))
    };
    let words = EngineErrorWords { title: "the implementation kept failing a call", detail: &detail };
    let mut report = concurrent_report(run, name, n, &per_seed, started.elapsed(), &again, &words)?;
    for kind in FailureKind::ALL {
        let mine: Vec<&FailedSeed> = failures.iter().filter(|f| f.kind == kind).collect();
        let Some(FailedSeed { seed, detail, steps, ops, .. }) = mine.first() else { continue };
        // `no-answer`, `crash`, `bad-answer`.
        let file = kind.id().replace('_', "-");
        let path = run.trace_dir.join(format!("{name}-concurrent-seed{seed}-{file}.jsonl"));
        write_ops(ops, &path)?;
        report.violations.push(ViolationReport {
            invariant: kind.id().to_owned(),
            name: kind.name().to_owned(),
            seed: *seed,
            seeds: mine.iter().map(|f| f.seed).collect(),
            seeds_unlisted: 0,
            detail: detail.clone(),
            shrunk_flows: 0,
            shrunk_events: 0,
            reduction: Reduction::None,
            steps: steps.clone(),
            trace: path.display().to_string(),
            replay: format!("not replayable (real concurrency); run again: {again} --seed {seed}"),
        });
    }
    if let Some((seed, why)) = gone {
        // Said on each finding: a CI reads the report, not stderr.
        for v in &mut report.violations {
            v.detail.push_str(&format!(
                " [the implementation could not be started again after seed {seed} ({why}): the run stopped its seeds \
                 there (the report covers seeds {})]",
                report.seeds
            ));
        }
    }
    Ok(report)
}
