//! [`ExecEngine`]: an implementation in another process behind the simulator's [`Engine`]
//! interface, one call at a time (the lockstep mode of SPEC.md §9.3).
//!
//! The implementation reports outcomes, not a journal, so the pool movements the invariant
//! checker needs are derived from its fresh outcomes: for the reference API as the reference
//! journals them ([`ledger_core::implied_movements`]), for the seed's API from what each of the
//! seed's functions says it moved ([`seed_movements`]). What the implementation stores is read
//! with `observe` after every step; a difference between the two is I2. Since the books follow
//! `fresh`, a wrong `fresh` shows as broken books with the right state: the engine keeps the
//! last one it was told ([`LastFresh`]) for a comparison with the reference to name it.
//!
//! Lockstep injects no fault, so an implementation that fails a request on its own (an
//! indefinite error, an exit, no answer in time, a line that is not a response of the protocol
//! to it) has failed at that step: the engine stops there and says where ([`Failure`]), for
//! the run to report it as a finding.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use ledger_core::{Config, ConfigJson, Decision, Movement, Outcome, Pubkey, RequestId, Sats, TimeMs};
use ledger_harness::{Call, Engine, Observed, Reply};

use crate::child::{error_text, kind, Child, ExecError};
use crate::protocol::{Api, Observation, RequestBody, Response, ResponseBody, PROTOCOL_VERSION};

/// Why a lockstep run on a child had to stop, once it has ([`Halt`]).
pub type Stop = Arc<Mutex<Option<Halt>>>;

/// Why a lockstep run on a child stopped: the implementation failed a request, a finding of
/// the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    /// What happened, naming the command.
    pub why: String,
    /// Where and how the implementation failed.
    pub failure: Failure,
}

/// How an implementation failed a request of a lockstep run on its own. Lockstep injects no
/// fault (no kill, no lost answer), so each is the implementation's failure at one step of
/// one seed, reported as a finding of the run, as a broken invariant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// It answered with an indefinite error (`crash` or `timeout`: it failed in the middle,
    /// and the call may have taken effect), or it exited (its output ended, or it stopped
    /// reading its input) before answering.
    Crash,
    /// It did not answer within the run's bound on each answer (`--exec-timeout`).
    NoAnswer,
    /// It answered with a line that is not a response of the protocol to the request: not
    /// JSON, a number outside the protocol's range (a negative amount, a pool beyond 2^63-1),
    /// the id of no request in flight, an answer of another kind (an outcome of another call),
    /// or an error where the run needs an answer to go on (a refused `reset` or `observe`).
    BadAnswer,
}

impl FailureKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FailureKind; 3] = [FailureKind::Crash, FailureKind::NoAnswer, FailureKind::BadAnswer];

    /// Its id in reports: `crash`, `no_answer`, `bad_answer`.
    pub const fn id(self) -> &'static str {
        match self {
            FailureKind::Crash => "crash",
            FailureKind::NoAnswer => "no_answer",
            FailureKind::BadAnswer => "bad_answer",
        }
    }

    /// What it is, in words.
    pub const fn name(self) -> &'static str {
        match self {
            FailureKind::Crash => {
                "the implementation failed in the middle of a request (an indefinite error, or it exited)"
            }
            FailureKind::NoAnswer => "the implementation did not answer a request within --exec-timeout",
            FailureKind::BadAnswer => {
                "the implementation answered a request with a line that is not a protocol 1 answer to it"
            }
        }
    }

    /// The kind of failure an error of the child is, and what the implementation did, in
    /// words that name `what` it was sent (`record`, `observe`, `reset`). `None` for an error
    /// of the harness's own (the child could not be started).
    pub fn of_error(e: &ExecError, what: &str) -> Option<(FailureKind, String)> {
        Some(match e {
            ExecError::Timeout { secs, .. } => {
                (FailureKind::NoAnswer, format!("did not answer {what} within {secs} s (--exec-timeout)"))
            }
            ExecError::Eof { status, .. } => {
                (FailureKind::Crash, format!("closed its output{status} before answering {what}"))
            }
            ExecError::Write { source, status, .. } => {
                (FailureKind::Crash, format!("stopped reading its input ({source}){status} when sent {what}"))
            }
            ExecError::Garbled { why, line, .. } => {
                let wrote = if line.is_empty() { String::new() } else { format!(": {line}") };
                (
                    FailureKind::BadAnswer,
                    format!(
                        "answered {what} with a line that is not a response of protocol {PROTOCOL_VERSION} ({why}){wrote}"
                    ),
                )
            }
            ExecError::Handshake { why, .. } => (FailureKind::BadAnswer, why.clone()),
            ExecError::Spawn { .. } => return None,
        })
    }
}

/// Where and how an implementation failed a request of a lockstep run ([`FailureKind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// How.
    pub kind: FailureKind,
    /// The engine steps taken before it (for a call, the 0-based index of its step, as a
    /// divergence counts them).
    pub step: u64,
    /// The index of the event the run was applying (how many times the state had been
    /// observed before, as a divergence counts them): at or past the history's last event,
    /// it was in the drain.
    pub event: u64,
    /// What was sent: the call's name (`record`), or `observe` for the observation after a
    /// step.
    pub what: &'static str,
    /// The request as sent, in the protocol's JSON, without its id.
    pub request: String,
    /// Its id on the wire: what the implementation's own log names.
    pub id: u64,
    /// What the implementation did, naming the request, its own text shown safely (a
    /// password hidden, control characters escaped): `answered record with an indefinite
    /// error (crash: ...)`, `did not answer observe within 10 s (--exec-timeout)`.
    pub how: String,
}

impl Failure {
    /// Where it failed, in a run's words: `engine step 37 (event 412)`, for an observation
    /// `the observe after event 412`, for the reset that begins a seed `the reset`.
    pub fn place(&self) -> String {
        match self.what {
            "observe" => format!("the observe after event {}", self.event),
            "reset" => "the reset".to_owned(),
            _ => format!("engine step {} (event {})", self.step, self.event),
        }
    }

    /// One line: where, what `command` did, and the request sent.
    pub fn describe(&self, command: &str) -> String {
        ledger_harness::text::shown(&format!(
            "at {}: `{command}` {}; the request sent: {} (request id {} on the wire)",
            self.place(),
            self.how,
            self.request,
            self.id
        ))
    }
}

/// The `fresh` of the child's last reply to a call; `None` after a call it answered otherwise
/// (an error, a garbled line). Whoever compares the engine with the reference takes it after
/// each step ([`ExecEngine::last_fresh`]).
pub type LastFresh = Arc<Mutex<Option<bool>>>;

/// One seed's engine on a running child (reset to genesis under the seed's configuration).
pub struct ExecEngine<'a> {
    child: &'a RefCell<Child>,
    config: Config,
    api: Api,
    holders: FxHashMap<RequestId, Pubkey>,
    stop: Stop,
    last: Cell<Observed>,
    fresh: LastFresh,
    /// The seed run, for the messages ([`ExecEngine::in_seed`]); `None` in a replay.
    seed: Option<u64>,
    /// Whether a failure of the implementation is said on stderr ([`ExecEngine::quiet`]).
    loud: bool,
    /// Steps taken (calls sent).
    n_steps: u64,
    /// Observations made: the index of the event being applied (one after each event).
    n_observed: Cell<u64>,
}

impl<'a> ExecEngine<'a> {
    /// The engine of one seed (or replay) on `child` under `config`, its failures told in
    /// `stop`; nothing is sent until [`ExecEngine::reset`].
    pub fn on(child: &'a RefCell<Child>, config: Config, stop: Stop) -> ExecEngine<'a> {
        let api = child.borrow().hello().api;
        ExecEngine {
            child,
            config,
            api,
            holders: FxHashMap::default(),
            stop,
            last: Cell::new(Observed::from(ledger_core::Ledger::new(config).totals())),
            fresh: LastFresh::default(),
            seed: None,
            loud: true,
            n_steps: 0,
            n_observed: Cell::new(0),
        }
    }

    /// Resets the child to genesis under the engine's configuration. An answer other than
    /// `reset_ok` is the implementation's failure, at the seed's start (told in its `stop`),
    /// and every step then fails at once.
    pub fn reset(self) -> ExecEngine<'a> {
        let engine = self;
        let reset = RequestBody::Reset { config: ConfigJson::from(engine.config) };
        if let Ok(r) = engine.ask(reset.clone()) {
            match r.body {
                ResponseBody::ResetOk => {}
                ResponseBody::Error { code, text, .. } => {
                    let failed = if code.is_definite() { FailureKind::BadAnswer } else { FailureKind::Crash };
                    engine.fail(failed, &reset, r.id, format!("refused reset: {}", error_text(code, &text)));
                }
                other => engine.fail(
                    FailureKind::BadAnswer,
                    &reset,
                    r.id,
                    format!("answered reset with {}: {}", kind(&other), answer_text(r.id, &other)),
                ),
            }
        }
        engine
    }

    /// The engine of seed `seed` of a run: what it says on stderr, and what the child says it
    /// waits for, name the seed and the step.
    pub fn in_seed(self, seed: u64) -> ExecEngine<'a> {
        ExecEngine { seed: Some(seed), ..self }
    }

    /// The engine of one of many replays (a shrink's), whose caller says what they found: a
    /// failure of the implementation is not said on stderr, one line a replay.
    pub fn quiet(self) -> ExecEngine<'a> {
        ExecEngine { loud: false, ..self }
    }

    /// Where each step leaves the `fresh` of the child's reply.
    pub fn last_fresh(&self) -> LastFresh {
        Arc::clone(&self.fresh)
    }

    fn stopped(&self) -> bool {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// The implementation failed `body` (request `id`) on its own, as `how` says: the seed is
    /// judged up to here ([`Failure`]).
    fn fail(&self, kind: FailureKind, body: &RequestBody, id: u64, how: String) {
        let mut stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        if stop.is_some() {
            return;
        }
        let what = sent_what(body);
        let request = serde_json::to_string(body).unwrap_or_default();
        let failure = Failure {
            kind,
            step: self.n_steps,
            event: self.n_observed.get(),
            what,
            request,
            id,
            how: ledger_harness::text::shown(&how),
        };
        let command = {
            let mut child = self.child.borrow_mut();
            if kind == FailureKind::BadAnswer {
                // What it answers next cannot be trusted: the next seed gets a new child.
                child.set_broken();
            }
            child.command().to_owned()
        };
        let seed = self.seed.map_or(String::new(), |s| format!("seed {s}, "));
        let then = if self.seed.is_some() {
            "the seed is judged up to this step, and the run goes on with the next"
        } else {
            "the replay stops here"
        };
        if self.loud {
            crate::say!("ledger-sim: {seed}{}: `{command}` {} ({}); {then}", failure.place(), failure.how, kind.id());
        }
        *stop = Some(Halt { why: failure.describe(&command), failure });
    }

    /// Sends `body` alone and waits for its answer, the child told where the run is (for
    /// what it says while it waits). An answer it could not give, its error: a wait that
    /// timed out, an exit, a line that is not a response to it: the implementation's failure
    /// ([`ExecEngine::fail`]).
    fn ask(&self, body: RequestBody) -> Result<Response, String> {
        let mut child = self.child.borrow_mut();
        let context = match (&body, self.seed) {
            (RequestBody::Reset { .. }, _) => String::new(),
            (RequestBody::Call { .. }, Some(seed)) => format!("seed {seed}, engine step {}", self.n_steps),
            (RequestBody::Call { .. }, None) => format!("engine step {}", self.n_steps),
            (_, Some(seed)) => format!("seed {seed} after event {}", self.n_observed.get()),
            (_, None) => format!("after event {}", self.n_observed.get()),
        };
        child.set_context(context);
        let id = child.next_id();
        let what = sent_what(&body);
        let answer = child.send(body.clone()).and_then(|_| child.flush()).and_then(|()| child.recv());
        drop(child);
        answer.map_err(|e| {
            // What the step's line says: what the implementation did, without the line number
            // of its output or the request's id, which depend on what the child served before.
            let (kind, how) = FailureKind::of_error(&e, what)
                // Not the implementation's doing (none arises once it has started): the seed
                // is judged up to here as for a crash.
                .unwrap_or_else(|| (FailureKind::Crash, e.to_string()));
            self.fail(kind, &body, id, how.clone());
            ledger_harness::text::shown(&how)
        })
    }

    /// Sends `call` at `now` and reads its answer: the reply, its movements in `journal`.
    fn send_call(&mut self, call: &Call, now: TimeMs, journal: &mut Vec<Movement>) -> Reply {
        let failed = |error: String| Reply::Failed { error };
        let sent = RequestBody::Call { now_ms: now, call: call.clone() };
        let id = self.child.borrow().next_id();
        let body = match self.ask(sent.clone()) {
            Ok(r) => r.body,
            Err(text) => return failed(text),
        };
        match body {
            ResponseBody::Reply { fresh, reply } => {
                *self.fresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
                if let Reply::Ok(outcome) = &reply {
                    match self.movements(call, outcome, fresh) {
                        Ok(moved) => journal.extend(moved),
                        Err(why) => {
                            self.fail(FailureKind::BadAnswer, &sent, id, why.clone());
                            return failed(why);
                        }
                    }
                }
                reply
            }
            ResponseBody::Error { code, text, .. } => {
                let error = error_text(code, &text);
                if !code.is_definite() {
                    // The call may have moved sats no reply reports: the seed is not judged
                    // past it, and no fault of the harness's caused it.
                    let how = format!("answered {} with an indefinite error ({error})", call.name());
                    self.fail(FailureKind::Crash, &sent, id, how);
                }
                failed(error)
            }
            other => {
                let why = format!("answered {} with {}: {}", call.name(), kind(&other), answer_text(id, &other));
                self.fail(FailureKind::BadAnswer, &sent, id, why.clone());
                failed(why)
            }
        }
    }

    fn movements(&mut self, call: &Call, outcome: &Outcome, fresh: bool) -> Result<Vec<Movement>, String> {
        if self.api == Api::Reference && fresh {
            if let Call::Decide { request_id, pubkey, .. } | Call::ReservePartial { request_id, pubkey, .. } = *call {
                self.holders.entry(request_id).or_insert(pubkey);
            }
        }
        let holder = match *call {
            Call::Record { request_id, .. } => self.holders.get(&request_id).copied(),
            _ => None,
        };
        reply_movements(self.api, call, outcome, fresh, holder)
    }
}

/// What a request is, in the words of a failure: the call's name, `observe`, `reset` or
/// `hello`.
fn sent_what(body: &RequestBody) -> &'static str {
    match body {
        RequestBody::Call { call, .. } => call.name(),
        RequestBody::Observe => "observe",
        RequestBody::Reset { .. } => "reset",
        RequestBody::Hello { .. } => "hello",
    }
}

/// An answer as the protocol writes it (`{"id":7,"type":"observed",...}`), shown safely and
/// shortened when long, for a failure that quotes what the implementation wrote.
pub fn answer_text(id: u64, body: &ResponseBody) -> String {
    let line = serde_json::to_string(&Response { id, body: body.clone() }).unwrap_or_default();
    crate::child::line_shown(&line)
}

/// The pool movements an implementation of `api` made, by its answer `outcome` to `call`
/// (SPEC.md §9.2): for the reference API those a fresh outcome implies
/// ([`ledger_core::implied_movements`]; a record's are its reservation's `holder`'s, or the
/// call's pubkey when unknown), none for a repeat; for the seed's, [`seed_movements`].
pub fn reply_movements(
    api: Api,
    call: &Call,
    outcome: &Outcome,
    fresh: bool,
    holder: Option<Pubkey>,
) -> Result<Vec<Movement>, String> {
    match api {
        Api::Reference if !fresh => Ok(Vec::new()),
        Api::Reference => {
            let holder = match *call {
                Call::Record { pubkey, .. } => Some(holder.unwrap_or(pubkey)),
                _ => holder,
            };
            ledger_core::implied_movements(&call.to_command(), outcome, holder).map_err(|e| e.to_string())
        }
        Api::Seed => seed_movements(call, outcome),
    }
}

/// The movements a `seed` implementation's answer to `call` says it made (SPEC.md §9.2): a
/// free decision and a partial grant debit what they report, a release returns what it was
/// given, a record absorbs what it recorded and returns the over-reservation, a credit adds.
/// An answer of the wrong kind for the call is an error naming both.
pub fn seed_movements(call: &Call, outcome: &Outcome) -> Result<Vec<Movement>, String> {
    // A function that moved nothing (it returned early, or moved 0) journals nothing.
    let moved = |sats: Sats, m: Movement| if sats.is_zero() { Vec::new() } else { vec![m] };
    Ok(match (call.clone(), outcome) {
        (Call::SetTier { .. }, Outcome::TierSet { .. }) | (Call::Expire, Outcome::Expired { .. }) => Vec::new(),
        (Call::Decide { request_id, pubkey, .. }, Outcome::Decided { decision }) => match *decision {
            Decision::Free { reserved_sats } => {
                moved(reserved_sats, Movement::Debit { request_id, pubkey, amount_sats: reserved_sats })
            }
            Decision::Partial { .. } | Decision::Gate { .. } => Vec::new(),
        },
        (Call::ReservePartial { request_id, pubkey, .. }, &Outcome::Reserved { reserved_sats }) => {
            moved(reserved_sats, Movement::Debit { request_id, pubkey, amount_sats: reserved_sats })
        }
        (Call::Release { request_id, .. }, &Outcome::Released { returned_sats }) => {
            moved(returned_sats, Movement::Release { request_id, amount_sats: returned_sats })
        }
        (Call::Record { request_id, pubkey, .. }, &Outcome::Recorded { absorbed_sats, returned_sats, .. }) => {
            if absorbed_sats.is_zero() && returned_sats.is_zero() {
                Vec::new()
            } else {
                vec![Movement::Record { request_id, pubkey, absorbed_sats, returned_sats }]
            }
        }
        (Call::Credit { payment_id, .. }, &Outcome::Credited { credited_sats }) => {
            moved(credited_sats, Movement::Credit { payment_id, amount_sats: credited_sats })
        }
        (call, outcome) => {
            let outcome = serde_json::to_string(outcome).unwrap_or_default();
            return Err(format!("answered {} with an outcome of another call: {outcome}", call.name()));
        }
    })
}

impl From<Observation> for Observed {
    fn from(o: Observation) -> Observed {
        Observed {
            pool_sats: i128::from(o.pool_sats),
            reserved_sats: o.reserved_sats.map(i128::from),
            granted_sats: i128::from(o.granted_sats),
            n_grants: o.n_grants,
        }
    }
}

impl Engine for ExecEngine<'_> {
    type Op = Call;

    fn name(&self) -> &'static str {
        "exec"
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn speaks_reference_api(&self) -> bool {
        self.api == Api::Reference
    }

    fn begin(&mut self, call: &Call) -> Call {
        call.clone()
    }

    fn step(&mut self, call: &mut Call, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        *self.fresh.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if self.stopped() {
            return Some(Reply::Failed { error: "not sent: the implementation failed earlier".into() });
        }
        let reply = self.send_call(call, now, journal);
        self.n_steps += 1;
        Some(reply)
    }

    fn observe(&self) -> Observed {
        if !self.stopped() {
            let id = self.child.borrow().next_id();
            if let Ok(r) = self.ask(RequestBody::Observe) {
                match r.body {
                    ResponseBody::Observed(o) => self.last.set(Observed::from(o)),
                    ResponseBody::Error { code, text, .. } if !code.is_definite() => {
                        let how = format!("answered observe with an indefinite error ({})", error_text(code, &text));
                        self.fail(FailureKind::Crash, &RequestBody::Observe, id, how);
                    }
                    ResponseBody::Error { code, text, .. } => {
                        let how = format!(
                            "answered observe with an error ({}): a lockstep run injects no fault, and cannot judge \
                             a state it is not shown",
                            error_text(code, &text)
                        );
                        self.fail(FailureKind::BadAnswer, &RequestBody::Observe, id, how);
                    }
                    other => self.fail(
                        FailureKind::BadAnswer,
                        &RequestBody::Observe,
                        id,
                        format!("answered observe with {}: {}", kind(&other), answer_text(id, &other)),
                    ),
                }
            }
        }
        self.n_observed.set(self.n_observed.get() + 1);
        self.last.get()
    }
}
