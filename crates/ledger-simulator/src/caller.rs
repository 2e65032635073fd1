//! One caller's job or session flow, as a sans-IO state machine.
//!
//! This is what a worker of the paid service does around the ledger, written once: decide;
//! for a free job, run the work, then record the actual cost (or release on failure); for a
//! partial job, invoice the reduced charge, reserve the pool's share, run the work, record;
//! for a gated job, invoice the whole estimate; for a session, run the work first, then
//! reserve `min(actual, offer)` (re-quoting once on a refusal that says what is available)
//! and record it. Every paid invoice credits the pool. The caller's accounting (what the user
//! was let off paying, the overrun it was told of) is the [`Close`] the flow ends with, and
//! is what invariant I3 checks.
//!
//! Like `quinn-proto`'s connection, it does no I/O and owns no clock or randomness: the
//! driver asks [`Caller::poll`] what to do next, does it (sends the call, runs the work,
//! invoices the user), and hands the result back through [`Caller::handle_reply`],
//! [`Caller::handle_work`] or [`Caller::handle_invoice`]. Faults are the driver's: a lost
//! acknowledgement, a duplicate delivery, a crash, a failed call are retried or ended around
//! the machine, which only ever sees the replies its calls got. The in-memory executor
//! ([`crate::exec`]) and the concurrent Postgres runs drive this same machine.

use ledger_core::{Decision, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats, TimeMs, DAY_MS};
use ledger_harness::{Call, Reply};

use crate::coverage::Mark;

/// How a flow ended, for the caller's books: the charge reduction the user was granted and
/// the overrun the ledger reported (paid outside the pool).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Close {
    /// What the user was let off paying.
    pub reduction: Sats,
    /// What the ledger reported above the reservation.
    pub overrun: Sats,
}

/// Where services differ around the ledger: whether partial offers are made, whether a
/// refused reservation is re-quoted, whether a session's user pays what the pool did not take.
/// The default is the simulator's service; the planner states its scenario's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The smallest partial offer the service makes; `None` makes none. A partial decision
    /// it does not make is served as a gate: the user is charged in full.
    pub min_offer: Option<Sats>,
    /// Re-quote a job whose reservation of its offer is refused with what is available
    /// (the user pays the rest of the offer); otherwise the user pays the whole offer.
    pub requote_jobs: bool,
    /// Re-quote a session likewise (once); otherwise the session is charged in full.
    pub requote_sessions: bool,
    /// Invoice a session's user for what the pool did not take (its actual cost less the
    /// reservation), before the record.
    pub session_pays_rest: bool,
}

impl Default for Policy {
    /// Every partial offer is made; a session re-quotes once, a job does not; a session's
    /// rest is not invoiced.
    fn default() -> Policy {
        Policy { min_offer: Some(Sats::ZERO), requote_jobs: false, requote_sessions: true, session_pays_rest: false }
    }
}

impl Policy {
    /// Whether the service makes this partial offer.
    pub fn offers(&self, offer: Sats) -> bool {
        self.min_offer.is_some_and(|min| offer >= min)
    }
}

/// What the caller wants done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// Send this call; its reply goes to [`Caller::handle_reply`].
    Call(&'a Call),
    /// Run the paid-for work; say how it went with [`Caller::handle_work`].
    Work,
    /// Invoice the user `amount` sats (possibly zero); say whether they paid with
    /// [`Caller::handle_invoice`]. An invoice that is not `abandonable` is charged from a
    /// balance the user already holds (a session's, after its work).
    Invoice {
        /// The amount.
        amount: Sats,
        /// Whether the user may walk away from it.
        abandonable: bool,
    },
    /// The flow is over.
    Done(Close),
}

/// Something the driver may want to count or check (coverage, the daily remaining).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The ledger answered the decide.
    Decided(Decision),
    /// The ledger just granted a reservation to this caller's user.
    Granted,
    /// A rare state the caller saw.
    Mark(Mark),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Decide,
    JobReserve { offer: Sats, charge: Sats },
    JobRequote { offer: Sats, charge: Sats, amount: Sats },
    SessionReserve { amount: Sats, requoted: bool },
    Release,
    Record { reduction: Sats },
    Credit { then: AfterPay },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterWork {
    JobFree {
        reserved: Sats,
    },
    JobPartial {
        reserved: Sats,
        charge: Sats,
    },
    SessionFree {
        reserved: Sats,
    },
    SessionPartial {
        offer: Sats,
    },
    /// The user pays all; for a session, the actual cost after the work.
    Paid {
        session: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterPay {
    /// A partial job's reduced charge was paid: reserve the pool's share.
    JobPartial { offer: Sats, charge: Sats },
    /// The job is paid in full (gated or re-quoted): run it.
    JobPaid,
    /// The user paid the rest of a re-quoted job's offer: run it on the reservation, which
    /// is released if the user walked away.
    JobRequoted { reserved: Sats, charge: Sats },
    /// A session's user paid what the pool does not take: record the pool's share.
    SessionRecord { amount: Sats, reserved: Sats },
    /// The flow ends with this close, paid or not.
    Done(Close),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Calling { call: Call, purpose: Purpose },
    Work(AfterWork),
    Invoice { amount: Sats, then: AfterPay },
    Done(Close),
}

/// The events of one reply, kept inline: a caller is made per request, and a heap queue
/// would cost an allocation each. One reply makes at most two events; a driver that polls
/// them after every reply (as every driver here does) never finds it full.
#[derive(Clone, Copy, Debug, Default)]
struct Events {
    buf: [Option<Event>; 4],
    head: u8,
    len: u8,
}

impl Events {
    fn push(&mut self, event: Event) {
        assert!(self.len < 4, "a caller's events were not polled: {:?}", self.buf);
        self.buf[usize::from((self.head + self.len) % 4)] = Some(event);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Event> {
        if self.len == 0 {
            return None;
        }
        let event = self.buf[usize::from(self.head)].take();
        self.head = (self.head + 1) % 4;
        self.len -= 1;
        event
    }
}

/// One job or session flow's caller.
#[derive(Clone, Debug)]
pub struct Caller {
    request_id: RequestId,
    pubkey: Pubkey,
    session: bool,
    estimated: Sats,
    actual: Sats,
    /// Payment ids are `8 * request + n` for the `n`-th invoice.
    n_invoices: u8,
    started_at: TimeMs,
    state: State,
    events: Events,
    policy: Policy,
}

impl Caller {
    /// The caller of request `request_id` for `pubkey`: a session (work first, then reserve)
    /// or a job, with the estimate it decides on and the actual cost its work will have.
    /// `started_at` is when it starts (for the window-rollover mark). It begins with the decide.
    pub fn new(
        request_id: RequestId,
        pubkey: Pubkey,
        session: bool,
        estimated: Sats,
        actual: Sats,
        started_at: TimeMs,
    ) -> Caller {
        let call = Call::Decide { request_id, pubkey, estimated_sats: estimated };
        Caller {
            request_id,
            pubkey,
            session,
            estimated,
            actual,
            n_invoices: 0,
            started_at,
            state: State::Calling { call, purpose: Purpose::Decide },
            events: Events::default(),
            policy: Policy::default(),
        }
    }

    /// The same caller serving under `policy` (before it has done anything).
    pub fn with_policy(mut self, policy: Policy) -> Caller {
        self.policy = policy;
        self
    }

    /// What to do next.
    pub fn poll(&self) -> Next<'_> {
        match &self.state {
            State::Calling { call, .. } => Next::Call(call),
            State::Work(_) => Next::Work,
            State::Invoice { amount, then } => {
                let abandonable = matches!(then, AfterPay::JobPartial { .. } | AfterPay::JobPaid);
                Next::Invoice { amount: *amount, abandonable }
            }
            State::Done(close) => Next::Done(*close),
        }
    }

    /// The next thing that happened, for the driver to count.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// The reply to the call [`Caller::poll`] asked for, received at `now`. A
    /// [`Reply::Failed`] is the driver's to retry; here it counts as a refusal.
    ///
    /// # Panics
    /// When no call is in flight (a driver bug).
    pub fn handle_reply(&mut self, reply: &Reply, now: TimeMs) {
        let State::Calling { purpose, .. } = self.state else {
            panic!("a reply with no call in flight: {reply:?}");
        };
        let (request_id, pubkey, session, actual) = (self.request_id, self.pubkey, self.session, self.actual);
        let policy = self.policy;
        self.state = match (purpose, reply) {
            (Purpose::Decide, Reply::Ok(Outcome::Decided { decision })) => {
                self.events.push(Event::Decided(*decision));
                if matches!(decision, Decision::Free { .. }) {
                    self.events.push(Event::Granted);
                }
                match *decision {
                    Decision::Free { reserved_sats } if session => {
                        State::Work(AfterWork::SessionFree { reserved: reserved_sats })
                    }
                    Decision::Free { reserved_sats } => State::Work(AfterWork::JobFree { reserved: reserved_sats }),
                    Decision::Partial { offer_sats, .. } if session && policy.offers(offer_sats) => {
                        State::Work(AfterWork::SessionPartial { offer: offer_sats })
                    }
                    Decision::Partial { offer_sats, charge_sats } if policy.offers(offer_sats) => State::Invoice {
                        amount: charge_sats,
                        then: AfterPay::JobPartial { offer: offer_sats, charge: charge_sats },
                    },
                    // A gate, or a partial offer the service does not make: charged in full.
                    Decision::Partial { .. } | Decision::Gate { .. } if session => {
                        State::Work(AfterWork::Paid { session: true })
                    }
                    Decision::Partial { .. } | Decision::Gate { .. } => {
                        State::Invoice { amount: self.estimated, then: AfterPay::JobPaid }
                    }
                }
            }
            // A refused decision (it cannot happen to a well-formed flow): the user pays all.
            (Purpose::Decide, _) => State::Done(Close::default()),
            (Purpose::JobReserve { charge, .. }, Reply::Ok(Outcome::Reserved { reserved_sats }))
                if !reserved_sats.is_zero() =>
            {
                // The seed may grant less than asked; its caller runs the work with it anyway.
                self.events.push(Event::Granted);
                State::Work(AfterWork::JobPartial { reserved: *reserved_sats, charge })
            }
            (Purpose::JobReserve { offer, charge }, Reply::Refused(Refusal::InsufficientFunds { available_sats }))
                if policy.requote_jobs && !available_sats.is_zero() =>
            {
                self.events.push(Event::Mark(Mark::ReserveRefusedRequote));
                let amount = offer.min(*available_sats);
                let call = Call::ReservePartial { request_id, pubkey, amount_sats: amount };
                State::Calling { call, purpose: Purpose::JobRequote { offer, charge, amount } }
            }
            (Purpose::JobRequote { offer, charge, amount }, Reply::Ok(Outcome::Reserved { reserved_sats }))
                if !reserved_sats.is_zero() =>
            {
                // The user pays the part of the offer that could not be reserved.
                self.events.push(Event::Granted);
                let rest = offer.saturating_sub(amount);
                let charge = charge.checked_add(rest).unwrap_or(Sats::MAX);
                State::Invoice { amount: rest, then: AfterPay::JobRequoted { reserved: *reserved_sats, charge } }
            }
            (Purpose::JobReserve { offer, .. } | Purpose::JobRequote { offer, .. }, _) => {
                // Re-quote before any charge is reduced: the user is asked for the rest.
                self.events.push(Event::Mark(Mark::ReserveRefusedRequote));
                State::Invoice { amount: offer, then: AfterPay::JobPaid }
            }
            (Purpose::SessionReserve { amount, .. }, Reply::Ok(Outcome::Reserved { reserved_sats }))
                if !reserved_sats.is_zero() =>
            {
                self.events.push(Event::Granted);
                if policy.session_pays_rest {
                    let then = AfterPay::SessionRecord { amount, reserved: *reserved_sats };
                    State::Invoice { amount: actual.saturating_sub(amount), then }
                } else {
                    self.record_session(amount, *reserved_sats)
                }
            }
            (
                Purpose::SessionReserve { amount, requoted: false },
                Reply::Refused(Refusal::InsufficientFunds { available_sats }),
            ) if policy.requote_sessions && !available_sats.is_zero() => {
                self.events.push(Event::Mark(Mark::ReserveRefusedRequote));
                let amount = amount.min(*available_sats);
                let call = Call::ReservePartial { request_id, pubkey, amount_sats: amount };
                State::Calling { call, purpose: Purpose::SessionReserve { amount, requoted: true } }
            }
            (Purpose::SessionReserve { .. }, _) => {
                // Nothing reserved: the session is charged in full.
                self.events.push(Event::Mark(Mark::ReserveRefusedRequote));
                State::Invoice { amount: actual, then: AfterPay::Done(Close::default()) }
            }
            (Purpose::Release, _) => State::Done(Close::default()),
            (Purpose::Record { reduction }, Reply::Ok(Outcome::Recorded { overrun_sats, .. })) => {
                if !overrun_sats.is_zero() {
                    self.events.push(Event::Mark(Mark::OverrunReported));
                }
                if now.since(self.started_at) >= DAY_MS {
                    self.events.push(Event::Mark(Mark::WindowRolloverInFlight));
                }
                State::Done(Close { reduction, overrun: *overrun_sats })
            }
            // The reservation is gone (expired): the pool's share is paid outside it.
            (Purpose::Record { reduction }, _) => State::Done(Close { reduction, overrun: reduction }),
            (Purpose::Credit { then }, _) => self.after_pay(then),
        };
    }

    /// The work ran: `succeeded` or failed.
    ///
    /// # Panics
    /// When the caller was not waiting for its work (a driver bug).
    pub fn handle_work(&mut self, succeeded: bool) {
        let State::Work(after) = self.state else {
            panic!("work reported while the caller waits for {:?}", self.poll());
        };
        let (request_id, pubkey, actual) = (self.request_id, self.pubkey, self.actual);
        let release = |reserved| State::Calling {
            call: Call::Release { request_id, amount_sats: reserved },
            purpose: Purpose::Release,
        };
        let record = |share, reserved| State::Calling {
            call: Call::Record { request_id, pubkey, actual_sats: share, reserved_sats: reserved },
            purpose: Purpose::Record { reduction: share },
        };
        self.state = match after {
            AfterWork::JobFree { reserved } | AfterWork::SessionFree { reserved } => {
                if succeeded {
                    record(actual, reserved)
                } else {
                    release(reserved)
                }
            }
            // A failed partial job's reduced charge is refunded outside the pool.
            AfterWork::JobPartial { reserved, charge } => {
                if succeeded {
                    record(actual.saturating_sub(charge), reserved)
                } else {
                    release(reserved)
                }
            }
            AfterWork::SessionPartial { offer } => {
                let amount = actual.min(offer);
                if !succeeded || amount.is_zero() {
                    State::Done(Close::default())
                } else {
                    let call = Call::ReservePartial { request_id, pubkey, amount_sats: amount };
                    State::Calling { call, purpose: Purpose::SessionReserve { amount, requoted: false } }
                }
            }
            AfterWork::Paid { session: true } if succeeded => {
                State::Invoice { amount: actual, then: AfterPay::Done(Close::default()) }
            }
            AfterWork::Paid { .. } => State::Done(Close::default()),
        };
    }

    /// The user `paid` the invoice [`Caller::poll`] showed, or walked away from it. A paid
    /// invoice of more than zero sats is credited to the pool next (the call names the
    /// payment); a walked-away one ends the flow with nothing granted.
    ///
    /// # Panics
    /// When no invoice was out (a driver bug).
    pub fn handle_invoice(&mut self, paid: bool) {
        let State::Invoice { amount, then } = self.state else {
            panic!("an invoice answered while the caller waits for {:?}", self.poll());
        };
        self.state = if !paid {
            match then {
                AfterPay::JobPartial { .. } | AfterPay::JobPaid => State::Done(Close::default()),
                AfterPay::JobRequoted { reserved, .. } => State::Calling {
                    call: Call::Release { request_id: self.request_id, amount_sats: reserved },
                    purpose: Purpose::Release,
                },
                // What the pool took is the pool's, paid or not.
                AfterPay::SessionRecord { .. } | AfterPay::Done(_) => self.after_pay(then),
            }
        } else if amount.is_zero() {
            self.after_pay(then)
        } else {
            self.n_invoices += 1;
            let payment_id = PaymentId(self.request_id.0 * 8 + u64::from(self.n_invoices));
            State::Calling { call: Call::Credit { payment_id, paid_sats: amount }, purpose: Purpose::Credit { then } }
        };
    }

    fn after_pay(&self, then: AfterPay) -> State {
        match then {
            AfterPay::JobPartial { offer, charge } => State::Calling {
                call: Call::ReservePartial { request_id: self.request_id, pubkey: self.pubkey, amount_sats: offer },
                purpose: Purpose::JobReserve { offer, charge },
            },
            AfterPay::JobPaid => State::Work(AfterWork::Paid { session: false }),
            AfterPay::JobRequoted { reserved, charge } => State::Work(AfterWork::JobPartial { reserved, charge }),
            AfterPay::SessionRecord { amount, reserved } => self.record_session(amount, reserved),
            AfterPay::Done(close) => State::Done(close),
        }
    }

    /// Record a session's `amount` on its reservation of `reserved`.
    fn record_session(&self, amount: Sats, reserved: Sats) -> State {
        let call = Call::Record {
            request_id: self.request_id,
            pubkey: self.pubkey,
            actual_sats: amount,
            reserved_sats: reserved,
        };
        State::Calling { call, purpose: Purpose::Record { reduction: amount } }
    }
}

#[cfg(test)]
mod tests {
    use ledger_core::{Command, Config, Ledger, Tier};

    use super::*;

    fn s(v: u64) -> Sats {
        Sats::new(v).unwrap()
    }

    /// Drives one caller against the reference ledger: work succeeds, invoices are paid.
    /// Returns how it closed and the calls it made, by name.
    fn drive(ledger: &mut Ledger, mut caller: Caller) -> (Close, Vec<&'static str>) {
        let mut calls = Vec::new();
        let now = TimeMs(1_000);
        loop {
            match caller.poll() {
                Next::Call(call) => {
                    calls.push(call.name());
                    let reply = Reply::from(ledger.apply(&call.to_command(), now, &mut Vec::new()));
                    caller.handle_reply(&reply, now);
                }
                Next::Work => caller.handle_work(true),
                Next::Invoice { .. } => caller.handle_invoice(true),
                Next::Done(close) => return (close, calls),
            }
        }
    }

    #[test]
    fn a_free_job_records_its_actual_cost_and_a_partial_job_pays_its_charge_first() {
        let user = Pubkey::from_bytes([3; 32]);
        let mut ledger = Ledger::new(Config::default());
        ledger.apply(&Command::SetTier { pubkey: user, tier: Tier::Established }, TimeMs(0), &mut Vec::new()).unwrap();
        // Budget 50: a job of 30 is free and costs 20.
        let (close, calls) = drive(&mut ledger, Caller::new(RequestId(1), user, false, s(30), s(20), TimeMs(0)));
        assert_eq!(close, Close { reduction: s(20), overrun: Sats::ZERO });
        assert_eq!(calls, ["decide", "record"]);
        // 30 left today: a job of 50 is offered 30, pays 20, reserves 30, costs 45: the pool
        // pays 25 of it.
        let (close, calls) = drive(&mut ledger, Caller::new(RequestId(2), user, false, s(50), s(45), TimeMs(0)));
        assert_eq!(close, Close { reduction: s(25), overrun: Sats::ZERO });
        assert_eq!(calls, ["decide", "credit", "reserve_partial", "record"]);
        // 5 left (20 + 25 absorbed): a session of 10 is offered 5, runs first, then reserves
        // min(actual 7, offer 5) and records it.
        let (close, calls) = drive(&mut ledger, Caller::new(RequestId(3), user, true, s(10), s(7), TimeMs(0)));
        assert_eq!(close, Close { reduction: s(5), overrun: Sats::ZERO });
        assert_eq!(calls, ["decide", "reserve_partial", "record"]);
        // Nothing left: a session is gated and charged its actual cost after the work.
        let (close, calls) = drive(&mut ledger, Caller::new(RequestId(4), user, true, s(10), s(7), TimeMs(0)));
        assert_eq!(close, Close::default());
        assert_eq!(calls, ["decide", "credit"]);
    }

    #[test]
    fn a_policy_serves_small_offers_as_gates_invoices_a_sessions_rest_and_requotes_a_stale_job() {
        let user = Pubkey::from_bytes([4; 32]);
        let mut ledger = Ledger::new(Config::default());
        ledger.apply(&Command::SetTier { pubkey: user, tier: Tier::Established }, TimeMs(0), &mut Vec::new()).unwrap();
        let policy =
            Policy { min_offer: Some(s(25)), requote_jobs: true, requote_sessions: true, session_pays_rest: true };
        // Budget 50: 40 absorbed, so a job of 30 is offered 10, below the smallest offer of
        // 25: served as a gate, the user pays the whole estimate.
        drive(&mut ledger, Caller::new(RequestId(1), user, false, s(40), s(40), TimeMs(0)));
        let gated = Caller::new(RequestId(2), user, false, s(30), s(30), TimeMs(0)).with_policy(policy);
        let (close, calls) = drive(&mut ledger, gated);
        assert_eq!((close, calls), (Close::default(), vec!["decide", "credit"]));

        // A fresh user, 50 left: a session of 80 is offered 50; it costs 70; the pool takes
        // 50 and the user is invoiced the other 20 before the record.
        let other = Pubkey::from_bytes([5; 32]);
        ledger.apply(&Command::SetTier { pubkey: other, tier: Tier::Established }, TimeMs(0), &mut Vec::new()).unwrap();
        let session = Caller::new(RequestId(3), other, true, s(80), s(70), TimeMs(0)).with_policy(policy);
        let (close, calls) = drive(&mut ledger, session);
        assert_eq!(close, Close { reduction: s(50), overrun: Sats::ZERO });
        assert_eq!(calls, ["decide", "reserve_partial", "credit", "record"]);

        // A third user: a job of 80 is offered 50 (charge 30). Before its reservation, another
        // request absorbs 20, so the offer is stale: re-quoted at 30, the user pays the other
        // 20 of the offer, and the pool's share is the actual cost less 30 + 20.
        let third = Pubkey::from_bytes([6; 32]);
        ledger.apply(&Command::SetTier { pubkey: third, tier: Tier::Established }, TimeMs(0), &mut Vec::new()).unwrap();
        let mut job = Caller::new(RequestId(4), third, false, s(80), s(75), TimeMs(0)).with_policy(policy);
        let Next::Call(call) = job.poll() else { panic!("a caller begins with its decide") };
        let reply = Reply::from(ledger.apply(&call.to_command(), TimeMs(0), &mut Vec::new()));
        job.handle_reply(&reply, TimeMs(0));
        assert_eq!(job.poll(), Next::Invoice { amount: s(30), abandonable: true });
        drive(&mut ledger, Caller::new(RequestId(5), third, false, s(20), s(20), TimeMs(0)));
        let (close, calls) = drive(&mut ledger, job);
        assert_eq!(calls, ["credit", "reserve_partial", "reserve_partial", "credit", "record"]);
        assert_eq!(close, Close { reduction: s(25), overrun: Sats::ZERO });
    }
}
