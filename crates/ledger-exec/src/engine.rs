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

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use ledger_core::{Config, ConfigJson, Decision, Movement, Outcome, Pubkey, RequestId, Sats, TimeMs};
use ledger_harness::{Call, Engine, Observed, Reply};

use crate::child::{error_text, kind, Child, ExecError};
use crate::protocol::{Api, Observation, RequestBody, ResponseBody};

/// Why a lockstep run on a child had to stop: the child failed in a way the checker cannot
/// judge (an indefinite error, a garbled line, a timeout, an exit).
pub type Stop = Arc<Mutex<Option<String>>>;

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
}

impl<'a> ExecEngine<'a> {
    /// Resets the child to genesis under `config`. A failure stops the run (in `stop`) and
    /// every step then fails at once.
    pub fn reset(child: &'a RefCell<Child>, config: Config, stop: Stop) -> ExecEngine<'a> {
        let api = child.borrow().hello().api;
        let engine = ExecEngine {
            child,
            config,
            api,
            holders: FxHashMap::default(),
            stop,
            last: Cell::new(Observed::from(ledger_core::Ledger::new(config).totals())),
            fresh: LastFresh::default(),
        };
        let answer = child.borrow_mut().ask(RequestBody::Reset { config: ConfigJson::from(config) });
        match answer {
            Ok(r) => match r.body {
                ResponseBody::ResetOk => {}
                ResponseBody::Error { code, text, .. } => {
                    engine.halt(format!("refused reset: {}", error_text(code, &text)))
                }
                other => engine.halt(format!("answered reset with {}", kind(&other))),
            },
            Err(e) => engine.halt_on(e),
        }
        engine
    }

    /// Where each step leaves the `fresh` of the child's reply.
    pub fn last_fresh(&self) -> LastFresh {
        Arc::clone(&self.fresh)
    }

    fn stopped(&self) -> bool {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn halt(&self, why: String) {
        let mut stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        if stop.is_none() {
            let command = self.child.borrow().command().to_owned();
            crate::say!("ledger-sim: `{command}` {why}; the lockstep run stops here");
            *stop = Some(format!("`{command}` {why}"));
        }
    }

    fn halt_on(&self, e: ExecError) {
        let mut stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        if stop.is_none() {
            crate::say!("ledger-sim: {e}; the lockstep run stops here");
            *stop = Some(e.to_string());
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
        let failed = |error: String| Some(Reply::Failed { error });
        *self.fresh.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if self.stopped() {
            return failed("the child failed earlier".into());
        }
        let answer = self.child.borrow_mut().ask(RequestBody::Call { now_ms: now, call: call.clone() });
        let body = match answer {
            Ok(r) => r.body,
            Err(e) => {
                let text = e.to_string();
                self.halt_on(e);
                return failed(text);
            }
        };
        match body {
            ResponseBody::Reply { fresh, reply } => {
                *self.fresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
                if let Reply::Ok(outcome) = &reply {
                    match self.movements(call, outcome, fresh) {
                        Ok(moved) => journal.extend(moved),
                        Err(why) => {
                            self.halt(why.clone());
                            return failed(why);
                        }
                    }
                }
                Some(reply)
            }
            ResponseBody::Error { code, text, .. } => {
                let error = error_text(code, &text);
                if !code.is_definite() {
                    // The call may have moved sats no reply reports: not judged step by step.
                    self.halt(format!("answered {} with an indefinite error ({error})", call.name()));
                }
                failed(error)
            }
            other => {
                let why = format!("answered a call with {}", kind(&other));
                self.halt(why.clone());
                failed(why)
            }
        }
    }

    fn observe(&self) -> Observed {
        if self.stopped() {
            return self.last.get();
        }
        match self.child.borrow_mut().ask(RequestBody::Observe) {
            Ok(r) => match r.body {
                ResponseBody::Observed(o) => self.last.set(Observed::from(o)),
                ResponseBody::Error { code, text, .. } => {
                    self.halt(format!("could not be observed: {}", error_text(code, &text)))
                }
                other => self.halt(format!("answered observe with {}", kind(&other))),
            },
            Err(e) => self.halt_on(e),
        }
        self.last.get()
    }
}
