//! The precision oracle (I8, "every answer is the one the rules give"): an executable model
//! of `SPEC.md` written apart from the reference engine, against which every answer of an
//! engine with the reference's API is checked.
//!
//! I1-I7 are properties of money: a ledger that gates every request keeps all of them. The
//! model sees what they cannot: a decision stricter than the rules, an offer one sat short, a
//! window off by a millisecond, a repeat answered afresh.
//!
//! It is meant to be obviously right rather than fast: ordered maps, plain `u128` arithmetic
//! (no amount of 2^63 - 1 or less can overflow it), the window and the order of checks
//! written out as `SPEC.md` states them, rule by rule. It shares no code with
//! `ledger_core::reference` or `ledger_core::rules`; only the vocabulary (`Command`,
//! `Outcome`, `Refusal`) is common.

use std::collections::{BTreeMap, BTreeSet};

use ledger_core::{
    Command, Config, Decision, GateReason, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats, Tier, TimeMs, Totals,
};

/// 2^63 - 1: the largest amount and time.
const MAX: u128 = i64::MAX as u128;
/// 24 h.
const DAY: u128 = 86_400_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Outstanding,
    Recorded { actual: u128 },
    Released,
    Expired,
}

#[derive(Clone, Copy, Debug)]
struct Reservation {
    amount: u128,
    deadline: u128,
    by_decide: bool,
    state: State,
}

#[derive(Clone, Debug)]
struct Request {
    pubkey: Pubkey,
    decision: Decision,
    estimate: u128,
    reservation: Option<Reservation>,
    /// `(amount, available)` of every `insufficient_funds` refusal (R-PARTIAL-7).
    refused: Vec<(u128, u128)>,
}

#[derive(Clone, Copy, Debug)]
struct Identity {
    tier: Tier,
    absorbed_today: u128,
    window_start: u128,
    reserved: u128,
}

/// The model's ledger.
#[derive(Clone, Debug)]
pub struct Model {
    config: Config,
    pool: u128,
    reserved: u128,
    absorbed: u128,
    credited: u128,
    overrun: u128,
    n_grants: u128,
    identities: BTreeMap<Pubkey, Identity>,
    requests: BTreeMap<RequestId, Request>,
    payments: BTreeMap<PaymentId, (u128, u128)>,
    /// `(deadline, request)` of every outstanding reservation.
    outstanding: BTreeSet<(u128, RequestId)>,
}

fn n(s: Sats) -> u128 {
    u128::from(s.to_u64())
}

fn sats(v: u128) -> Sats {
    Sats::new(u64::try_from(v).expect("the model keeps amounts below 2^63")).expect("below 2^63")
}

impl Model {
    /// The model at genesis under `config`.
    pub fn new(config: Config) -> Model {
        Model {
            config,
            pool: n(config.pool_initial_sats),
            reserved: 0,
            absorbed: 0,
            credited: 0,
            overrun: 0,
            n_grants: 0,
            identities: BTreeMap::new(),
            requests: BTreeMap::new(),
            payments: BTreeMap::new(),
            outstanding: BTreeSet::new(),
        }
    }

    /// The balance sheet, as the rules leave it.
    pub fn totals(&self) -> Totals {
        Totals {
            pool_sats: sats(self.pool),
            reserved_sats: sats(self.reserved),
            absorbed_sats: sats(self.absorbed),
            credited_sats: sats(self.credited),
            overrun_sats: sats(self.overrun),
            n_grants: u64::try_from(self.n_grants).expect("fewer than 2^64 grants"),
        }
    }

    /// The start of `pubkey`'s daily window, if it has an identity.
    pub fn window_start(&self, pubkey: &Pubkey) -> Option<TimeMs> {
        self.identities.get(pubkey).map(|i| TimeMs(u64::try_from(i.window_start).unwrap_or(u64::MAX)))
    }

    /// The earliest deadline of an outstanding reservation.
    pub fn next_deadline(&self) -> Option<TimeMs> {
        self.outstanding.first().map(|(d, _)| TimeMs(u64::try_from(*d).unwrap_or(u64::MAX)))
    }

    /// What the rules answer to `command` at `now`; the model's state moves as they say.
    pub fn apply(&mut self, command: &Command, now: TimeMs) -> Result<Outcome, Refusal> {
        let now = u128::from(now.0);
        match *command {
            Command::SetTier { pubkey, tier } => Ok(self.set_tier(pubkey, tier, now)),
            Command::Decide { request_id, pubkey, estimated_sats } => {
                self.decide(request_id, pubkey, n(estimated_sats), now)
            }
            Command::ReservePartial { request_id, pubkey, amount_sats } => {
                self.reserve_partial(request_id, pubkey, n(amount_sats), now)
            }
            Command::Release { request_id } => self.release(request_id),
            Command::Record { request_id, actual_sats } => self.record(request_id, n(actual_sats), now),
            Command::Credit { payment_id, paid_sats } => self.credit(payment_id, n(paid_sats)),
            Command::Expire => Ok(self.expire(now)),
        }
    }

    /// R-TIER-1, R-TIER-2.
    fn set_tier(&mut self, pubkey: Pubkey, tier: Tier, now: u128) -> Outcome {
        match self.identities.get_mut(&pubkey) {
            Some(identity) => {
                let previous = identity.tier;
                identity.tier = tier;
                Outcome::TierSet { previous: Some(previous) }
            }
            None => {
                let identity = Identity { tier, absorbed_today: 0, window_start: now, reserved: 0 };
                self.identities.insert(pubkey, identity);
                Outcome::TierSet { previous: None }
            }
        }
    }

    /// Section 4: the absorption that counts at `now` (R-WINDOW-1, R-WINDOW-5).
    fn absorbed_in_window(identity: &Identity, now: u128) -> u128 {
        let inside = now < identity.window_start || now - identity.window_start < DAY;
        if inside {
            identity.absorbed_today
        } else {
            0
        }
    }

    /// R-TIER-3, R-DECIDE-6, R-DECIDE-7.
    fn remaining(&self, identity: &Identity, now: u128) -> u128 {
        let budget = n(self.config.budget(identity.tier));
        let used = Self::absorbed_in_window(identity, now) + identity.reserved;
        budget.saturating_sub(used)
    }

    fn deadline(&self, now: u128) -> u128 {
        (now + u128::from(self.config.reservation_ttl_ms)).min(MAX)
    }

    fn reserve(&mut self, request_id: RequestId, pubkey: Pubkey, amount: u128, by_decide: bool, now: u128) {
        let deadline = self.deadline(now);
        self.pool -= amount;
        self.reserved += amount;
        self.identities.get_mut(&pubkey).expect("reserving for an identity").reserved += amount;
        let request = self.requests.get_mut(&request_id).expect("reserving for a request");
        request.reservation = Some(Reservation { amount, deadline, by_decide, state: State::Outstanding });
        self.outstanding.insert((deadline, request_id));
    }

    fn decide(&mut self, request_id: RequestId, pubkey: Pubkey, estimate: u128, now: u128) -> Result<Outcome, Refusal> {
        if let Some(request) = self.requests.get(&request_id) {
            // R-IDEM-2, then R-IDEM-1.
            if request.pubkey != pubkey {
                return Err(Refusal::ExistsWithDifferentPubkey);
            }
            if request.estimate != estimate {
                return Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: sats(request.estimate) });
            }
            return Ok(Outcome::Decided { decision: request.decision });
        }
        let gate = |reason| Decision::Gate { reason, charge_sats: sats(estimate) };
        let identity = self.identities.get(&pubkey).copied();
        let decision = if estimate == 0 {
            gate(GateReason::ZeroEstimate)
        } else if let Some(identity) = identity {
            let remaining = self.remaining(&identity, now);
            if self.config.budget(identity.tier).is_zero() {
                gate(GateReason::ZeroBudget)
            } else if remaining == 0 {
                gate(GateReason::DailyBudgetExhausted)
            } else if self.pool == 0 {
                gate(GateReason::PoolEmpty)
            } else if remaining.min(self.pool) >= estimate {
                Decision::Free { reserved_sats: sats(estimate) }
            } else {
                let offer = remaining.min(self.pool);
                Decision::Partial { offer_sats: sats(offer), charge_sats: sats(estimate - offer) }
            }
        } else {
            gate(GateReason::UnknownIdentity)
        };
        let request = Request { pubkey, decision, estimate, reservation: None, refused: Vec::new() };
        self.requests.insert(request_id, request);
        if let Decision::Free { .. } = decision {
            self.reserve(request_id, pubkey, estimate, true, now);
        }
        Ok(Outcome::Decided { decision })
    }

    fn reserve_partial(
        &mut self,
        request_id: RequestId,
        pubkey: Pubkey,
        amount: u128,
        now: u128,
    ) -> Result<Outcome, Refusal> {
        let request = self.requests.get(&request_id).ok_or(Refusal::UnknownRequest)?; // R-PARTIAL-1
        if request.pubkey != pubkey {
            return Err(Refusal::ExistsWithDifferentPubkey); // R-PARTIAL-2
        }
        if let Some(r) = request.reservation {
            // R-PARTIAL-3, R-PARTIAL-4.
            return if !r.by_decide && r.amount == amount {
                Ok(Outcome::Reserved { reserved_sats: sats(amount) })
            } else {
                Err(Refusal::ReservationExists { reserved_sats: sats(r.amount) })
            };
        }
        if amount == 0 {
            return Err(Refusal::ZeroAmount); // R-PARTIAL-5
        }
        if amount > request.estimate {
            return Err(Refusal::AmountAboveEstimate { estimated_sats: sats(request.estimate) });
            // R-PARTIAL-6
        }
        if let Some(&(_, available)) = request.refused.iter().find(|(a, _)| *a == amount) {
            return Err(Refusal::InsufficientFunds { available_sats: sats(available) });
            // R-PARTIAL-7
        }
        let identity = *self.identities.get(&pubkey).ok_or(Refusal::UnknownIdentity)?; // R-PARTIAL-8
        let available = self.remaining(&identity, now).min(self.pool); // R-PARTIAL-9
        if amount > available {
            let request = self.requests.get_mut(&request_id).expect("looked up above");
            request.refused.push((amount, available));
            return Err(Refusal::InsufficientFunds { available_sats: sats(available) });
        }
        self.reserve(request_id, pubkey, amount, false, now);
        Ok(Outcome::Reserved { reserved_sats: sats(amount) })
    }

    /// Closes an outstanding reservation: it leaves the reserved sums, `back` returns to the pool.
    fn close(&mut self, request_id: RequestId, state: State, back: u128) -> Reservation {
        let request = self.requests.get_mut(&request_id).expect("a request with a reservation");
        let r = request.reservation.as_mut().expect("a reservation");
        r.state = state;
        let r = *r;
        let pubkey = request.pubkey;
        self.outstanding.remove(&(r.deadline, request_id));
        self.reserved -= r.amount;
        self.identities.get_mut(&pubkey).expect("the holder").reserved -= r.amount;
        self.pool += back;
        r
    }

    fn release(&mut self, request_id: RequestId) -> Result<Outcome, Refusal> {
        let request = self.requests.get(&request_id).ok_or(Refusal::UnknownRequest)?;
        let r = request.reservation.ok_or(Refusal::NotReserved)?; // R-RELEASE-1
        match r.state {
            State::Outstanding => {
                self.close(request_id, State::Released, r.amount); // R-RELEASE-2
                Ok(Outcome::Released { returned_sats: sats(r.amount) })
            }
            State::Released => Ok(Outcome::Released { returned_sats: sats(r.amount) }), // R-RELEASE-3
            State::Recorded { .. } => Err(Refusal::AlreadyRecorded),                    // R-RELEASE-4
            State::Expired => Err(Refusal::ReservationExpired),
        }
    }

    fn record(&mut self, request_id: RequestId, actual: u128, now: u128) -> Result<Outcome, Refusal> {
        let request = self.requests.get(&request_id).ok_or(Refusal::UnknownRequest)?;
        let r = request.reservation.ok_or(Refusal::NotReserved)?;
        let pubkey = request.pubkey;
        let settle = |actual: u128| {
            let absorbed = actual.min(r.amount);
            (absorbed, r.amount - absorbed, actual - absorbed)
        };
        let recorded = |(absorbed, returned, overrun): (u128, u128, u128)| Outcome::Recorded {
            absorbed_sats: sats(absorbed),
            returned_sats: sats(returned),
            overrun_sats: sats(overrun),
        };
        match r.state {
            State::Outstanding => {}
            State::Recorded { actual: first } if first == actual => return Ok(recorded(settle(first))), // R-RECORD-5
            State::Recorded { actual: first } => {
                return Err(Refusal::RecordedWithDifferentAmount { actual_sats: sats(first) })
            }
            State::Released => return Err(Refusal::AlreadyReleased), // R-RECORD-1
            State::Expired => return Err(Refusal::ReservationExpired),
        }
        let (absorbed, returned, overrun) = settle(actual); // R-RECORD-2
        if self.overrun + overrun > MAX {
            return Err(Refusal::Overflow); // R-RECORD-6
        }
        self.close(request_id, State::Recorded { actual }, returned);
        self.absorbed += absorbed;
        self.overrun += overrun;
        self.n_grants += 1; // R-RECORD-3
        let identity = self.identities.get_mut(&pubkey).expect("the holder");
        if absorbed > 0 {
            // Section 4: a new window at the first absorption 24 h or more after the start.
            let ended = now >= identity.window_start && now - identity.window_start >= DAY;
            if ended {
                identity.absorbed_today = absorbed;
                identity.window_start = now;
            } else {
                identity.absorbed_today += absorbed;
            }
        }
        Ok(recorded((absorbed, returned, overrun)))
    }

    fn credit(&mut self, payment_id: PaymentId, paid: u128) -> Result<Outcome, Refusal> {
        if let Some(&(first_paid, credited)) = self.payments.get(&payment_id) {
            // R-CREDIT-3.
            return if first_paid == paid {
                Ok(Outcome::Credited { credited_sats: sats(credited) })
            } else {
                Err(Refusal::PaymentWithDifferentAmount { paid_sats: sats(first_paid) })
            };
        }
        let credited = paid * u128::from(self.config.credit_bps.to_u16()) / 10_000; // R-CREDIT-1
        if n(self.config.pool_initial_sats) + self.credited + credited > MAX {
            return Err(Refusal::Overflow); // R-CREDIT-4
        }
        self.pool += credited;
        self.credited += credited;
        self.payments.insert(payment_id, (paid, credited)); // R-CREDIT-2
        Ok(Outcome::Credited { credited_sats: sats(credited) })
    }

    fn expire(&mut self, now: u128) -> Outcome {
        let due: Vec<(u128, RequestId)> = self.outstanding.iter().copied().take_while(|(d, _)| *d < now).collect();
        let mut released = Vec::new();
        for (_, request_id) in due {
            let r = self.close(request_id, State::Expired, 0);
            self.pool += r.amount;
            released.push((request_id, sats(r.amount)));
        }
        Outcome::Expired { released }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_answers_the_rules_of_a_simple_day() {
        let mut m = Model::new(Config::default());
        let a = Pubkey::from_bytes([1; 32]);
        let t = |ms: u64| TimeMs(1_000 + ms);
        m.apply(&Command::SetTier { pubkey: a, tier: Tier::Established }, t(0)).unwrap();
        let decide =
            |id: u64, est: u128| Command::Decide { request_id: RequestId(id), pubkey: a, estimated_sats: sats(est) };
        assert_eq!(
            m.apply(&decide(1, 30), t(1)),
            Ok(Outcome::Decided { decision: Decision::Free { reserved_sats: sats(30) } })
        );
        assert_eq!(
            m.apply(&decide(2, 30), t(2)),
            Ok(Outcome::Decided { decision: Decision::Partial { offer_sats: sats(20), charge_sats: sats(10) } })
        );
        let record = Command::Record { request_id: RequestId(1), actual_sats: sats(30) };
        assert!(m.apply(&record, t(3)).is_ok());
        // At exactly 24 h after the window opened, the day's absorption no longer counts.
        assert_eq!(
            m.apply(&decide(3, 50), t(86_400_000)),
            Ok(Outcome::Decided { decision: Decision::Free { reserved_sats: sats(50) } })
        );
    }
}
