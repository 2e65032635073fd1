//! Differential testing: two engines stepped together, the first disagreement reported.

use std::sync::{Arc, Mutex};

use ledger_core::{Config, Movement, Pubkey, Sats, TimeMs};
use ledger_exec::protocol::{RequestBody, ResponseBody};
use ledger_exec::serve::is_fresh;
use ledger_exec::LastFresh;
use ledger_harness::{Call, Engine, Named, Observed, Reply};
use serde::Serialize;

/// The first disagreement between the two engines of a [`Differential`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// How many engine steps had been taken (0-based index of the step that disagreed).
    pub step: u64,
    /// The index of the event the run was applying when they disagreed: how many times the
    /// state had been observed before (a run observes it once after each event, and once at
    /// the end of its drain). At or past the history's last event, it was in the drain.
    pub event: u64,
    /// What disagreed, with both sides, in the protocol's JSON.
    pub detail: String,
    /// The replies agreed and only the implementation's `fresh` was not the reference's
    /// (SPEC.md §9.2): the harness books movements from `fresh`, so its books, and the
    /// invariants judged on them, part from what the implementation stores.
    pub fresh_only: bool,
}

/// An engine that steps `A` (the one under test) and `B` (the oracle) together and remembers
/// the first step at which their replies, movements, observed state or daily remaining
/// differ. It answers as `A` does, so the run goes on as it would on `A` alone.
///
/// Both engines must take the same number of steps per call (`pg-reference` and `reference`
/// take one). A failed step of `A` (a database error) is not compared: `B` is not stepped, and
/// the caller's retry begins a new operation on both.
///
/// What differed is written in the protocol's JSON (calls, replies, movements), as a trace
/// and the I8 entries write them.
pub struct Differential<A: Engine, B: Engine> {
    a: A,
    b: B,
    n_steps: u64,
    /// Observations made so far (`observe` takes `&self`).
    n_observed: std::cell::Cell<u64>,
    found: Arc<Mutex<Option<Divergence>>>,
    /// `A`'s `fresh` after each step, when `A` is an implementation of the reference API
    /// that says it ([`Differential::with_fresh`]).
    fresh: Option<LastFresh>,
}

/// An operation in flight on both engines of a [`Differential`].
#[derive(Debug)]
pub struct DiffOp<A, B> {
    call: Call,
    a: A,
    b: B,
}

impl<A: Engine, B: Engine> Differential<A, B> {
    /// Compare `a` with `b`; the first divergence is written to `found`.
    pub fn new(a: A, b: B, found: Arc<Mutex<Option<Divergence>>>) -> Differential<A, B> {
        assert_eq!(a.config(), b.config(), "both engines must run under the same config");
        Differential { a, b, n_steps: 0, n_observed: std::cell::Cell::new(0), found, fresh: None }
    }

    /// Also compare `a`'s `fresh`, left in `fresh` after each of its steps, with the
    /// reference's (`b` must be the reference): when the replies agree but the movements do
    /// not, a `fresh` that differs is named as the cause ([`Divergence::fresh_only`]).
    pub fn with_fresh(self, fresh: LastFresh) -> Differential<A, B> {
        Differential { fresh: Some(fresh), ..self }
    }

    fn diverge(&self, fresh_only: bool, detail: impl FnOnce() -> String) {
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        if found.is_none() {
            *found =
                Some(Divergence { step: self.n_steps, event: self.n_observed.get(), detail: detail(), fresh_only });
        }
    }

    /// `a`'s `fresh` and the reference's, when the replies `reply` agreed and both are known.
    fn both_fresh(&self, call: &Call, reply: &Option<Reply>, reference_moved: &[Movement]) -> Option<(bool, bool)> {
        let a = (*self.fresh.as_ref()?.lock().unwrap_or_else(|p| p.into_inner()))?;
        let Some(Reply::Ok(outcome)) = reply else { return None };
        Some((a, is_fresh(&call.to_command(), &Ok(outcome.clone()), reference_moved)))
    }
}

/// `value` in JSON, as the protocol and the traces write it.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The request of `call` at `now` as the protocol sends it (without its id), which is how an
/// implementation of the protocol saw it.
fn request_json(call: &Call, now: TimeMs) -> String {
    json(&RequestBody::Call { now_ms: now, call: call.clone() })
}

/// A step's reply in JSON; `None` (a step that left the call in flight) in words.
fn reply_json(reply: &Option<Reply>) -> String {
    match reply {
        Some(r) => json(r),
        None => "nothing yet (the call still in flight)".to_owned(),
    }
}

/// Movements in JSON, or `nothing`.
fn moved_json(moved: &[Movement]) -> String {
    if moved.is_empty() {
        "nothing".to_owned()
    } else {
        json(moved)
    }
}

/// A right reply with a wrong `fresh`, said as `ledger-sim conform` says it, and what the
/// harness made of it: it books a call's movements from `fresh` (SPEC.md §9.2), so its books
/// now part from the implementation's state.
fn fresh_detail(
    call: &Call,
    now: TimeMs,
    name: &str,
    reply: &Reply,
    fresh: bool,
    a: &[Movement],
    b: &[Movement],
) -> String {
    let when = if fresh {
        "true on a repeat, the reference's is false"
    } else {
        "false on a call that took effect, the reference's is true"
    };
    format!(
        "the reply is right but \"fresh\" is {when}: to {} {name} answered {}; the harness books the movements \
         of a call from \"fresh\" (SPEC.md §9.2), so it booked {} where the reference moved {}",
        request_json(call, now),
        json(&ResponseBody::Reply { fresh, reply: reply.clone() }),
        moved_json(a),
        moved_json(b)
    )
}

impl<A: Engine, B: Engine> Engine for Differential<A, B> {
    type Op = DiffOp<A::Op, B::Op>;

    fn name(&self) -> &'static str {
        self.a.name()
    }

    fn speaks_reference_api(&self) -> bool {
        self.a.speaks_reference_api()
    }

    fn config(&self) -> &Config {
        self.a.config()
    }

    fn begin(&mut self, call: &Call) -> Self::Op {
        DiffOp { call: call.clone(), a: self.a.begin(call), b: self.b.begin(call) }
    }

    fn step(&mut self, op: &mut Self::Op, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        let from = journal.len();
        let ra = self.a.step(&mut op.a, now, journal);
        if let Some(Reply::Failed { .. }) = ra {
            self.n_steps += 1;
            return ra;
        }
        let mut jb = Vec::new();
        let rb = self.b.step(&mut op.b, now, &mut jb);
        if ra != rb {
            self.diverge(false, || {
                format!(
                    "{}: {} replied {}, {} replied {}",
                    request_json(&op.call, now),
                    self.a.name(),
                    reply_json(&ra),
                    self.b.name(),
                    reply_json(&rb)
                )
            });
        } else if journal[from..] != jb[..] {
            match (self.both_fresh(&op.call, &ra, &jb), &ra) {
                (Some((a, b)), Some(reply)) if a != b => {
                    self.diverge(true, || fresh_detail(&op.call, now, self.a.name(), reply, a, &journal[from..], &jb))
                }
                _ => self.diverge(false, || {
                    format!(
                        "{}: {} moved {}, {} moved {}",
                        request_json(&op.call, now),
                        self.a.name(),
                        moved_json(&journal[from..]),
                        self.b.name(),
                        moved_json(&jb)
                    )
                }),
            }
        }
        self.n_steps += 1;
        ra
    }

    fn observe(&self) -> Observed {
        let (oa, ob) = (self.a.observe(), self.b.observe());
        if oa != ob {
            self.diverge(false, || {
                format!("after the step, {} shows {}, {} shows {}", self.a.name(), json(&oa), self.b.name(), json(&ob))
            });
        }
        self.n_observed.set(self.n_observed.get() + 1);
        oa
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        let (da, db) = (self.a.daily_remaining(pubkey, now), self.b.daily_remaining(pubkey, now));
        if da.is_none() {
            // `A` does not show it (an implementation out of process): the oracle's view,
            // which the replies and observations are held equal to, serves the coverage marks.
            return db;
        }
        if da != db {
            self.diverge(false, || {
                format!(
                    "daily remaining of {}: {} says {}, {} says {}",
                    Named(*pubkey),
                    self.a.name(),
                    json(&da),
                    self.b.name(),
                    json(&db)
                )
            });
        }
        da
    }
}
