//! The reference engine: SPEC.md as a pure state machine.
//!
//! `state + command + now -> state' + outcome`. [`Ledger::apply`] does all of a command in
//! one step, which is what makes it the oracle: every invariant of SPEC.md §6 holds after
//! every command, whatever the order, repetition or timing of commands.
//!
//! Lookups use `FxHashMap` and, for identities by pubkey, [`KeyIndex`], for speed; nothing
//! iterates a hash table into an outcome, so its order cannot leak. Deadlines are kept in a sorted queue, so `expire` is ordered by
//! `(deadline, request_id)`.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::balances::{Identity, Totals};
use crate::command::{Command, Decision, GateReason, Outcome, Refusal};
use crate::config::Config;
use crate::idmap::IdMap;
use crate::ids::{PaymentId, Pubkey, RequestId, Tier, TimeMs};
use crate::journal::Movement;
use crate::keyindex::KeyIndex;
use crate::rules;
use crate::sats::Sats;
use crate::snapshot::{
    PaymentRecord, RequestRecord, ReservationRecord, ReservationStateRecord, RestoreError, Snapshot, SNAPSHOT_VERSION,
};
use crate::spec::Rule;
use crate::variant::{Exact, Variant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReservationState {
    Outstanding,
    /// Recorded against `actual`; what was absorbed, returned and overrun follows from it.
    Recorded {
        actual: Sats,
    },
    Released,
    Expired,
}

#[derive(Clone, Copy, Debug)]
struct Reservation {
    amount: Sats,
    deadline: TimeMs,
    state: ReservationState,
    by_decide: bool,
    /// Only under a [`Variant`] whose decide does not debit: reserved but not yet debited.
    undebited: bool,
}

/// Index of an identity in `Ledger::identities`; [`NO_IDENTITY`] for a request decided
/// for a pubkey no identity had (its pubkey is then in `Ledger::unknown_pubkeys`).
type IdentityIdx = u32;
const NO_IDENTITY: IdentityIdx = IdentityIdx::MAX;

/// A request, kept small: the ledger holds one per request id forever (idempotency).
#[derive(Clone, Debug)]
struct Request {
    identity: IdentityIdx,
    /// The decision; the estimate is its total.
    decision: Decision,
    reservation: Option<Reservation>,
    /// `(amount, available)` of each refused `reserve_partial`: a repeat of a refused
    /// command (a duplicate delivered late) must be refused again, never succeed after the
    /// caller has re-quoted and moved on. Boxed: almost every request has none, and a
    /// box is one word where a `Vec` is three, in a table of every request ever made.
    #[allow(clippy::box_collection)]
    refused: Option<Box<Vec<(Sats, Sats)>>>,
}

/// Only fills the gaps of [`IdMap`]'s vector; never read as a request.
impl Default for Request {
    fn default() -> Request {
        Request {
            identity: NO_IDENTITY,
            decision: Decision::Gate { reason: GateReason::ZeroEstimate, charge_sats: Sats::ZERO },
            reservation: None,
            refused: None,
        }
    }
}

/// What [`Ledger::undo`] needs to take back one command ([`Ledger::apply_undoable`]).
#[derive(Clone, Debug)]
pub struct Undo<V: Variant = Exact>(UndoKind<V>);

// Nearly every undo is of the large kind: boxing it would allocate once per command tried.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum UndoKind<V: Variant> {
    /// A sweep's: the whole ledger before it.
    Whole(Box<Ledger<V>>),
    /// Any other command's: what it could change.
    Parts(Parts),
}

/// The records a command other than a sweep could change, as they were before it.
#[derive(Clone, Debug)]
struct Parts {
    totals: Totals,
    n_identities: u32,
    /// The identity the command names and the one its request holds.
    identities: [Option<(IdentityIdx, Identity)>; 2],
    /// The command's request (a command adds its request's unknown pubkey only with the
    /// request).
    request: Option<(RequestId, Option<Request>)>,
    payment: Option<(PaymentId, Option<(Sats, Sats)>)>,
    n_deadlines: usize,
}

/// The reference ledger. `V` is [`Exact`], the rules as specified, unless a test harness
/// names a deliberately wrong [`Variant`].
#[derive(Clone, Debug)]
pub struct Ledger<V: Variant = Exact> {
    config: Config,
    totals: Totals,
    /// Identities by index, so a request reaches its identity without hashing a pubkey.
    identities: Vec<(Pubkey, Identity)>,
    /// The slot in `identities` of each pubkey.
    identity_index: KeyIndex,
    requests: IdMap<Request>,
    unknown_pubkeys: FxHashMap<RequestId, Pubkey>,
    payments: IdMap<(Sats, Sats)>,
    /// `(deadline, request)` of reservations, sorted; entries of closed reservations are
    /// skipped when they reach the front.
    deadlines: VecDeque<(TimeMs, RequestId)>,
    variant: V,
}

impl Ledger {
    /// A ledger at genesis: the pool holds `config.pool_initial_sats`.
    pub fn new(config: Config) -> Ledger {
        Ledger::with_variant(config, Exact)
    }

    /// A ledger at genesis with room for `n_identities` and `n_requests` before its tables
    /// grow: a service that knows its scale allocates once, up front, and never rehashes on
    /// the hot path.
    pub fn with_capacity(config: Config, n_identities: usize, n_requests: usize) -> Ledger {
        let mut ledger = Ledger::new(config);
        ledger.reserve(n_identities, n_requests);
        ledger
    }

    /// Whether the pool's balance could decide `command` at `now`: the same command against a
    /// larger pool might be answered otherwise. Under these rules the pool is compared with
    /// an amount in two places only, and both are counted here when the pool is the smaller
    /// side:
    ///
    /// - a new request's `decide`, once admitted (a known identity with budget left and a
    ///   nonzero estimate): the pool below what the decision could grant,
    ///   `min(remaining, estimate)`, makes it partial or gated where a larger pool would not;
    /// - a `reserve_partial` of more than the pool, refused where a larger pool might grant it
    ///   (counted even when the daily remaining refuses it as well, whose refusal names the
    ///   smaller of the two).
    ///
    /// Nothing else reads the pool's balance: a release, a record and an expiry only give
    /// back to it, and a credit adds to it (its refusal on overflow depends on the credited
    /// total, not on the balance). So a run in which no command was bound by the pool runs
    /// the same way, command for command and outcome for outcome, from any larger pool: this
    /// is how the planner carries a run up to a larger credit or genesis
    /// (`ledger_plan::model::Carry`). A request decided before is answered from its record
    /// and is never bound.
    pub fn pool_binds(&self, command: &Command, now: TimeMs) -> bool {
        let pool = self.totals.pool_sats;
        match *command {
            Command::Decide { request_id, pubkey, estimated_sats } => {
                // The cheap test first: a pool that covers the estimate covers any grant.
                if pool >= estimated_sats || self.requests.get(request_id.0).is_some() {
                    return false;
                }
                let Some(idx) = self.idx_of(&pubkey) else { return false };
                let identity = &self.identities[idx as usize].1;
                let standing =
                    rules::Standing { budget: self.budget_of(identity), remaining: || self.remaining(identity, now) };
                rules::admit(estimated_sats, Some(standing)).is_ok_and(|remaining| pool < remaining.min(estimated_sats))
            }
            Command::ReservePartial { amount_sats, .. } => amount_sats > pool,
            _ => false,
        }
    }

    /// A ledger from a [`Snapshot`], after checking that its books balance: nothing listed
    /// twice, every reservation held by an identity, every sum of the balance sheet and of
    /// each identity's reservations equal to what its records add up to, and the pool, the
    /// reservations and the absorption adding up to genesis plus credits. It does not replay
    /// history: a snapshot whose books balance but that no sequence of commands could produce
    /// (a reservation larger than its estimate, say) is taken as it is.
    pub fn restore(snapshot: Snapshot) -> Result<Ledger, RestoreError> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(RestoreError::Version { found: snapshot.version });
        }
        let mut ledger = Ledger::new(snapshot.config);
        ledger.totals = snapshot.totals;
        ledger.identities = snapshot.identities;
        for idx in 0..ledger.identities.len() {
            let idx = IdentityIdx::try_from(idx).ok().filter(|i| *i != NO_IDENTITY).ok_or_else(|| {
                RestoreError::DoesNotAddUp {
                    what: "identities".into(),
                    stated: idx as u128,
                    computed: u128::from(NO_IDENTITY),
                }
            })?;
            let pubkey = ledger.identities[idx as usize].0;
            if ledger.identity_index.insert(&pubkey, idx, |i| &ledger.identities[i as usize].0).is_some() {
                return Err(RestoreError::Duplicate { what: format!("identity {pubkey}") });
            }
        }
        let mut reserved_by = vec![0u128; ledger.identities.len()];
        let (mut reserved, mut absorbed, mut overrun, mut credited, mut n_grants) = (0u128, 0u128, 0u128, 0u128, 0u128);
        let mut deadlines = Vec::new();
        for r in snapshot.requests {
            let id = r.request_id;
            if ledger.requests.get(id.0).is_some() {
                return Err(RestoreError::Duplicate { what: format!("request {}", id.0) });
            }
            let idx = ledger.idx_of(&r.pubkey);
            let reservation = match r.reservation {
                None => None,
                Some(res) => {
                    let holder = idx.ok_or(RestoreError::ReservationWithoutIdentity { request_id: id.0 })?;
                    let amount = u128::from(res.amount_sats.to_u64());
                    let state = match res.state {
                        ReservationStateRecord::Outstanding => {
                            reserved_by[holder as usize] += amount;
                            reserved += amount;
                            deadlines.push((res.deadline, id));
                            ReservationState::Outstanding
                        }
                        ReservationStateRecord::Recorded { actual_sats } => {
                            let settled = rules::settle(res.amount_sats, actual_sats);
                            absorbed += u128::from(settled.absorbed.to_u64());
                            overrun += u128::from(settled.overrun.to_u64());
                            n_grants += 1;
                            ReservationState::Recorded { actual: actual_sats }
                        }
                        ReservationStateRecord::Released => ReservationState::Released,
                        ReservationStateRecord::Expired => ReservationState::Expired,
                    };
                    Some(Reservation {
                        amount: res.amount_sats,
                        deadline: res.deadline,
                        state,
                        by_decide: res.by_decide,
                        undebited: false,
                    })
                }
            };
            let identity = match idx {
                Some(idx) => idx,
                None => {
                    ledger.unknown_pubkeys.insert(id, r.pubkey);
                    NO_IDENTITY
                }
            };
            let refused = (!r.refused.is_empty()).then(|| Box::new(r.refused));
            ledger.requests.insert(id.0, Request { identity, decision: r.decision, reservation, refused });
        }
        deadlines.sort_unstable();
        ledger.deadlines = deadlines.into();
        for p in snapshot.payments {
            if ledger.payments.get(p.payment_id.0).is_some() {
                return Err(RestoreError::Duplicate { what: format!("payment {}", p.payment_id.0) });
            }
            credited += u128::from(p.credited_sats.to_u64());
            ledger.payments.insert(p.payment_id.0, (p.paid_sats, p.credited_sats));
        }
        let check = |what: String, stated: u128, computed: u128| {
            if stated == computed {
                Ok(())
            } else {
                Err(RestoreError::DoesNotAddUp { what, stated, computed })
            }
        };
        for ((pubkey, identity), computed) in ledger.identities.iter().zip(&reserved_by) {
            check(
                format!("reserved sats of identity {pubkey}"),
                u128::from(identity.reserved_sats.to_u64()),
                *computed,
            )?;
        }
        let t = ledger.totals;
        let sats = |s: Sats| u128::from(s.to_u64());
        check("totals.reserved_sats".into(), sats(t.reserved_sats), reserved)?;
        check("totals.absorbed_sats".into(), sats(t.absorbed_sats), absorbed)?;
        check("totals.overrun_sats".into(), sats(t.overrun_sats), overrun)?;
        check("totals.credited_sats".into(), sats(t.credited_sats), credited)?;
        check("totals.n_grants".into(), u128::from(t.n_grants), n_grants)?;
        check(
            "pool + reserved + absorbed (genesis + credits)".into(),
            sats(t.pool_sats) + sats(t.reserved_sats) + sats(t.absorbed_sats),
            sats(ledger.config.pool_initial_sats) + credited,
        )?;
        Ok(ledger)
    }
}

impl<V: Variant> Ledger<V> {
    /// A ledger at genesis that follows `variant`'s rules (see [`crate::variant`]).
    pub fn with_variant(config: Config, variant: V) -> Ledger<V> {
        Ledger {
            config,
            totals: Totals { pool_sats: config.pool_initial_sats, ..Totals::default() },
            identities: Vec::new(),
            identity_index: KeyIndex::default(),
            requests: IdMap::default(),
            unknown_pubkeys: FxHashMap::default(),
            payments: IdMap::default(),
            deadlines: VecDeque::new(),
            variant,
        }
    }

    /// Room for `n_identities` more identities and `n_requests` more requests (ids up to
    /// `n_requests`) before the tables grow (see [`Ledger::with_capacity`]).
    pub fn reserve(&mut self, n_identities: usize, n_requests: usize) {
        self.identities.reserve(n_identities);
        self.identity_index.reserve(n_identities, |i| &self.identities[i as usize].0);
        self.requests.reserve(n_requests);
        self.deadlines.reserve(n_requests);
    }

    /// Back to genesis under `config`, as [`Ledger::with_variant`] would make it, but keeping
    /// the room of every table: a simulator that runs many ledgers one after another on a
    /// thread reuses one, and pays for its tables' memory (allocation, page faults, zeroing)
    /// once. Only the tables are carried over, emptied; every other field is new.
    pub fn reset(&mut self, config: Config) {
        let variant = self.variant.clone();
        let mut fresh = Ledger::with_variant(config, variant);
        std::mem::swap(&mut fresh.identities, &mut self.identities);
        std::mem::swap(&mut fresh.identity_index, &mut self.identity_index);
        std::mem::swap(&mut fresh.requests, &mut self.requests);
        std::mem::swap(&mut fresh.unknown_pubkeys, &mut self.unknown_pubkeys);
        std::mem::swap(&mut fresh.payments, &mut self.payments);
        std::mem::swap(&mut fresh.deadlines, &mut self.deadlines);
        fresh.identities.clear();
        fresh.identity_index.clear();
        fresh.requests.clear();
        fresh.unknown_pubkeys.clear();
        fresh.payments.clear();
        fresh.deadlines.clear();
        *self = fresh;
    }

    /// The slot in `identities` of `pubkey`'s identity, if it has one.
    #[inline]
    fn idx_of(&self, pubkey: &Pubkey) -> Option<IdentityIdx> {
        self.identity_index.get(pubkey, |i| &self.identities[i as usize].0)
    }

    /// The tier budget that applies to `identity`.
    fn budget_of(&self, identity: &Identity) -> Sats {
        let tier = if self.breaks(Rule::BudgetOfCurrentTier) { Tier::Trusted } else { identity.tier };
        self.config.budget(self.variant.budget_tier(tier))
    }

    /// Whether the variant breaks `rule` (never, for [`Exact`]).
    fn breaks(&self, rule: Rule) -> bool {
        self.variant.breaks(rule)
    }

    /// The length of the daily window.
    fn window_ms(&self) -> u64 {
        self.variant.window_ms() + u64::from(self.breaks(Rule::WindowLength))
    }

    /// What `identity` may still be granted at `now`: its budget less the window's
    /// absorption and its outstanding reservations.
    fn remaining(&self, identity: &Identity, now: TimeMs) -> Sats {
        let window_ms = self.window_ms();
        let start = identity.absorbed_reset_at;
        let absorbed = if self.breaks(Rule::WindowClockBack) && now < start {
            Sats::ZERO
        } else {
            rules::absorbed_in_window(identity.sats_absorbed_today, start, now, window_ms)
        };
        let ended = now.since(start) >= window_ms;
        let reserved = if self.breaks(Rule::RemainingCountsReservations)
            || (ended && self.breaks(Rule::RemainingCountsEarlierReservations))
        {
            Sats::ZERO
        } else {
            identity.reserved_sats
        };
        rules::daily_remaining(self.budget_of(identity), absorbed, reserved)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The balance sheet.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// An identity's standing.
    pub fn identity(&self, pubkey: &Pubkey) -> Option<Identity> {
        let idx = self.idx_of(pubkey)?;
        Some(self.identities[idx as usize].1)
    }

    /// The ledger's whole state as data ([`crate::snapshot`]): ordered, so the same ledger
    /// always gives the same snapshot. A [`Variant`] is not part of it.
    pub fn snapshot(&self) -> Snapshot {
        let mut requests: Vec<RequestRecord> =
            self.requests.iter().map(|(id, r)| self.request_record(RequestId(id), r)).collect();
        requests.sort_by_key(|r| r.request_id);
        let mut payments: Vec<PaymentRecord> =
            self.payments.iter().map(|(id, &(paid, credited))| payment_record(PaymentId(id), paid, credited)).collect();
        payments.sort_by_key(|p| p.payment_id.0);
        Snapshot {
            version: SNAPSHOT_VERSION,
            config: self.config,
            totals: self.totals,
            identities: self.identities.clone(),
            requests,
            payments,
        }
    }

    /// One request as its [`Snapshot`] lists it; `None` when it was never decided.
    pub fn request(&self, request_id: RequestId) -> Option<RequestRecord> {
        self.requests.get(request_id.0).map(|r| self.request_record(request_id, r))
    }

    /// One payment as its [`Snapshot`] lists it; `None` when it was never credited.
    pub fn payment(&self, payment_id: PaymentId) -> Option<PaymentRecord> {
        self.payments.get(payment_id.0).map(|&(paid, credited)| payment_record(payment_id, paid, credited))
    }

    fn request_record(&self, request_id: RequestId, r: &Request) -> RequestRecord {
        RequestRecord {
            request_id,
            pubkey: self.pubkey_of(request_id, r),
            decision: r.decision,
            reservation: r.reservation.map(|res| ReservationRecord {
                amount_sats: res.amount,
                deadline: res.deadline,
                by_decide: res.by_decide,
                state: match res.state {
                    ReservationState::Outstanding => ReservationStateRecord::Outstanding,
                    ReservationState::Recorded { actual } => ReservationStateRecord::Recorded { actual_sats: actual },
                    ReservationState::Released => ReservationStateRecord::Released,
                    ReservationState::Expired => ReservationStateRecord::Expired,
                },
            }),
            refused: r.refused.as_deref().cloned().unwrap_or_default(),
        }
    }

    /// Number of requests ever decided (for capacity figures).
    pub fn n_requests(&self) -> usize {
        self.requests.len()
    }

    /// Apply `command` at `now`, appending every pool movement it makes to `journal`.
    /// A repeat of an earlier command returns the first outcome and appends nothing.
    pub fn apply(&mut self, command: &Command, now: TimeMs, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
        match *command {
            Command::SetTier { pubkey, tier } => Ok(self.set_tier(pubkey, tier, now)),
            Command::Decide { request_id, pubkey, estimated_sats } => {
                self.decide(request_id, pubkey, estimated_sats, now, journal)
            }
            Command::ReservePartial { request_id, pubkey, amount_sats } => {
                self.reserve_partial(request_id, pubkey, amount_sats, now, journal)
            }
            Command::Release { request_id } => self.release(request_id, journal),
            Command::Record { request_id, actual_sats } => self.record(request_id, actual_sats, now, journal),
            Command::Credit { payment_id, paid_sats } => self.credit(payment_id, paid_sats, journal),
            Command::Expire => Ok(self.expire(now, journal)),
        }
    }

    /// [`Ledger::apply`], and what [`Ledger::undo`] needs to take the command back: a search
    /// over orders of commands (a linearizability check) tries a command and takes it back in
    /// time proportional to what the command touched, not to the ledger's size, and keeps, for
    /// each command it has placed, only the few records that command could change.
    pub fn apply_undoable(
        &mut self,
        command: &Command,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> (Result<Outcome, Refusal>, Undo<V>) {
        let undo = self.undo_for(command);
        (self.apply(command, now, journal), undo)
    }

    /// Takes back the command `undo` was made for, which must be the last command applied
    /// that has not been taken back (undos are taken back last first): the ledger is again
    /// what it was before it, in every answer it gives and every record it shows.
    pub fn undo(&mut self, undo: Undo<V>) {
        let parts = match undo.0 {
            UndoKind::Whole(before) => {
                *self = *before;
                return;
            }
            UndoKind::Parts(parts) => parts,
        };
        let Parts { totals, n_identities, identities, request, payment, n_deadlines } = parts;
        if self.deadlines.len() > n_deadlines {
            // The command reserved: its request's deadline is the one it added.
            let (request_id, ..) = request.as_ref().expect("only a command with a request reserves");
            let deadline = self.requests.get(request_id.0).and_then(|r| r.reservation).map(|r| r.deadline);
            let key = (deadline.expect("a deadline belongs to a reservation"), *request_id);
            let at = self.deadlines.iter().rposition(|k| *k == key).expect("the deadline the command added");
            self.deadlines.remove(at);
        }
        debug_assert_eq!(self.deadlines.len(), n_deadlines, "a command adds at most one deadline");
        self.totals = totals;
        for (idx, identity) in identities.into_iter().flatten() {
            self.identities[idx as usize].1 = identity;
        }
        while self.identities.len() > n_identities as usize {
            // Out of the index first: the index reads the key from the table.
            let (pubkey, _) = *self.identities.last().expect("longer than before");
            self.identity_index.remove(&pubkey, |i| &self.identities[i as usize].0);
            self.identities.pop();
        }
        if let Some((request_id, before)) = request {
            match before {
                Some(r) => self.requests.insert(request_id.0, r),
                None => {
                    self.requests.remove(request_id.0);
                    self.unknown_pubkeys.remove(&request_id);
                }
            }
        }
        if let Some((payment_id, before)) = payment {
            match before {
                Some(p) => self.payments.insert(payment_id.0, p),
                None => {
                    self.payments.remove(payment_id.0);
                }
            }
        }
    }

    /// What `command` could change, as it is now. A sweep may close any reservation, so it
    /// keeps the whole ledger; any other command changes at most the totals, one request (a
    /// new one with its unknown pubkey), one payment, the identities it names or its request
    /// holds (or adds one), and adds at most one deadline.
    fn undo_for(&self, command: &Command) -> Undo<V> {
        let (request_id, pubkey, payment_id) = match *command {
            Command::SetTier { pubkey, .. } => (None, Some(pubkey), None),
            Command::Decide { request_id, pubkey, .. } | Command::ReservePartial { request_id, pubkey, .. } => {
                (Some(request_id), Some(pubkey), None)
            }
            Command::Release { request_id } | Command::Record { request_id, .. } => (Some(request_id), None, None),
            Command::Credit { payment_id, .. } => (None, None, Some(payment_id)),
            Command::Expire => return Undo(UndoKind::Whole(Box::new(self.clone()))),
        };
        let request = request_id.map(|r| (r, self.requests.get(r.0).cloned()));
        let named = pubkey.and_then(|p| self.idx_of(&p));
        let holder = request.as_ref().and_then(|(_, r)| r.as_ref()).map(|r| r.identity);
        let holder = holder.filter(|&idx| idx != NO_IDENTITY && Some(idx) != named);
        let saved = |idx: Option<IdentityIdx>| idx.map(|idx| (idx, self.identities[idx as usize].1));
        Undo(UndoKind::Parts(Parts {
            totals: self.totals,
            n_identities: IdentityIdx::try_from(self.identities.len()).expect("fewer than 2^32 - 1 identities"),
            identities: [saved(named), saved(holder)],
            request,
            payment: payment_id.map(|p| (p, self.payments.get(p.0).copied())),
            n_deadlines: self.deadlines.len(),
        }))
    }

    fn set_tier(&mut self, pubkey: Pubkey, tier: Tier, now: TimeMs) -> Outcome {
        if let Some(idx) = self.idx_of(&pubkey) {
            let identity = &mut self.identities[idx as usize].1;
            let previous = identity.tier;
            identity.tier = tier;
            if self.variant.breaks(Rule::TierChangesOnlyTier) {
                (identity.sats_absorbed_today, identity.absorbed_reset_at) = (Sats::ZERO, now);
            }
            return Outcome::TierSet { previous: Some(previous) };
        }
        let idx = IdentityIdx::try_from(self.identities.len()).expect("fewer than 2^32 - 1 identities");
        assert!(idx != NO_IDENTITY, "identity table full");
        let absorbed_reset_at = if self.breaks(Rule::TierCreates) { TimeMs(0) } else { now };
        let identity = Identity { tier, sats_absorbed_today: Sats::ZERO, absorbed_reset_at, reserved_sats: Sats::ZERO };
        self.identities.push((pubkey, identity));
        self.identity_index.insert(&pubkey, idx, |i| &self.identities[i as usize].0);
        Outcome::TierSet { previous: None }
    }

    /// The pubkey a request was decided for.
    fn pubkey_of(&self, request_id: RequestId, request: &Request) -> Pubkey {
        if request.identity == NO_IDENTITY {
            self.unknown_pubkeys[&request_id]
        } else {
            self.identities[request.identity as usize].0
        }
    }

    fn decide(
        &mut self,
        request_id: RequestId,
        pubkey: Pubkey,
        estimated: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        // The request table is set aside while the decision is made (nothing below reads it).
        let mut requests = std::mem::take(&mut self.requests);
        let result = self.decide_into(&mut requests, request_id, pubkey, estimated, now, journal);
        self.requests = requests;
        result
    }

    fn decide_into(
        &mut self,
        requests: &mut IdMap<Request>,
        request_id: RequestId,
        pubkey: Pubkey,
        estimated: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        if let Some(request) = requests.get(request_id.0) {
            let first = request.decision.estimated_sats();
            if self.breaks(Rule::DecideReused) && first != estimated {
                return Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: first });
            }
            if self.pubkey_of(request_id, request) != pubkey {
                return Err(Refusal::ExistsWithDifferentPubkey);
            }
            if first != estimated {
                return Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: first });
            }
            if self.breaks(Rule::DecideRepeat) {
                let idx = self.idx_of(&pubkey).unwrap_or(NO_IDENTITY);
                return Ok(Outcome::Decided { decision: self.decision_for(idx, estimated, now) });
            }
            return Ok(Outcome::Decided { decision: request.decision });
        }
        let idx = self.idx_of(&pubkey).unwrap_or(NO_IDENTITY);
        let decision = self.variant.decision(self.decision_for(idx, estimated, now));
        let reservation = match decision {
            Decision::Free { reserved_sats } => {
                let undebited = self.breaks(Rule::DecideFreeDebits);
                if undebited {
                    self.book_reservation(idx, reserved_sats);
                } else {
                    self.debit(request_id, idx, reserved_sats, journal);
                }
                Some(self.reservation(request_id, reserved_sats, true, undebited, now))
            }
            Decision::Partial { .. } | Decision::Gate { .. } => None,
        };
        if idx == NO_IDENTITY {
            self.unknown_pubkeys.insert(request_id, pubkey);
        }
        requests.insert(request_id.0, Request { identity: idx, decision, reservation, refused: None });
        Ok(Outcome::Decided { decision })
    }

    /// The decision for a new request, without changing anything.
    fn decision_for(&self, idx: IdentityIdx, estimated: Sats, now: TimeMs) -> Decision {
        let identity = self.identities.get(idx as usize).map(|(_, identity)| identity);
        let standing = identity.map(|identity| rules::Standing {
            budget: self.budget_of(identity),
            remaining: move || self.remaining(identity, now),
        });
        let pool = self.totals.pool_sats;
        self.broken_decision(rules::decide(estimated, standing, pool), identity, estimated, now)
    }

    /// The decision of a variant that breaks one of the rules of `decide`; `decision` itself
    /// under [`Exact`].
    fn broken_decision(
        &self,
        decision: Decision,
        identity: Option<&Identity>,
        estimated: Sats,
        now: TimeMs,
    ) -> Decision {
        let gate = |reason| Decision::Gate { reason, charge_sats: estimated };
        let pool = self.totals.pool_sats;
        match decision {
            Decision::Gate { reason: GateReason::ZeroEstimate, .. }
                if identity.is_none() && self.breaks(Rule::DecideZeroEstimateFirst) =>
            {
                gate(GateReason::UnknownIdentity)
            }
            Decision::Gate { reason: GateReason::UnknownIdentity, .. } if self.breaks(Rule::DecideUnknownIdentity) => {
                gate(GateReason::ZeroBudget)
            }
            Decision::Gate { reason: GateReason::ZeroBudget, .. } if self.breaks(Rule::DecideZeroBudget) => {
                gate(GateReason::DailyBudgetExhausted)
            }
            Decision::Gate { reason: GateReason::DailyBudgetExhausted, .. }
                if pool.is_zero() && self.breaks(Rule::DecideDailyExhausted) =>
            {
                gate(GateReason::PoolEmpty)
            }
            Decision::Gate { reason: GateReason::PoolEmpty, .. } if self.breaks(Rule::DecidePoolEmpty) => {
                Decision::Partial { offer_sats: Sats::ZERO, charge_sats: estimated }
            }
            Decision::Gate { reason, .. } if self.breaks(Rule::GateChargesAll) => {
                Decision::Gate { reason, charge_sats: Sats::ZERO }
            }
            Decision::Partial { .. } if self.breaks(Rule::DecidePartialOffer) => {
                let remaining = identity.map_or(Sats::ZERO, |identity| self.remaining(identity, now));
                let offer_sats = remaining.min(estimated);
                let charge_sats = estimated.checked_sub(offer_sats).expect("offer <= estimate");
                Decision::Partial { offer_sats, charge_sats }
            }
            decision => decision,
        }
    }

    fn reserve_partial(
        &mut self,
        request_id: RequestId,
        pubkey: Pubkey,
        amount: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        let unknown =
            if self.breaks(Rule::PartialUnknownRequest) { Refusal::NotReserved } else { Refusal::UnknownRequest };
        let request = self.requests.get(request_id.0).ok_or(unknown)?;
        if self.pubkey_of(request_id, request) != pubkey && !self.breaks(Rule::PartialOtherPubkey) {
            return Err(Refusal::ExistsWithDifferentPubkey);
        }
        if amount.is_zero() && self.breaks(Rule::PartialExistsBeforeAmount) {
            return Err(Refusal::ZeroAmount);
        }
        if let Some(r) = request.reservation {
            return if (!r.by_decide || self.breaks(Rule::PartialRepeat)) && r.amount == amount {
                Ok(Outcome::Reserved { reserved_sats: amount })
            } else {
                Err(Refusal::ReservationExists { reserved_sats: r.amount })
            };
        }
        if amount.is_zero() && !self.breaks(Rule::PartialZeroAmount) {
            return Err(Refusal::ZeroAmount);
        }
        if matches!(request.decision, Decision::Gate { .. }) && self.breaks(Rule::PartialAfterAnyGate) {
            return Err(Refusal::NotReserved);
        }
        let estimated = request.decision.estimated_sats();
        if amount > estimated && !self.breaks(Rule::PartialAboveEstimate) {
            return Err(Refusal::AmountAboveEstimate { estimated_sats: estimated });
        }
        let remembered = if self.breaks(Rule::PartialRefusalMemory) { 1 } else { usize::MAX };
        let mut refused = request.refused.iter().flat_map(|r| r.iter()).take(remembered);
        if let Some(&(_, available_sats)) = refused.find(|(a, _)| *a == amount) {
            return Err(Refusal::InsufficientFunds { available_sats });
        }
        if request.identity == NO_IDENTITY && self.breaks(Rule::PartialIdentityNow) {
            return Err(Refusal::UnknownIdentity);
        }
        // The identity may have been created since the decision.
        let Some(idx) = self.idx_of(&pubkey) else {
            if self.breaks(Rule::RefusalsForgotten) {
                let request = self.requests.get_mut(request_id.0).expect("looked up above");
                request.refused.get_or_insert_with(Default::default).push((amount, Sats::ZERO));
            }
            return Err(Refusal::UnknownIdentity);
        };
        let identity = &self.identities[idx as usize].1;
        let available = self.remaining(identity, now).min(self.totals.pool_sats);
        let grants_available = self.breaks(Rule::PartialAllOrNothing);
        let amount = if amount > available && !available.is_zero() && grants_available { available } else { amount };
        if amount > available {
            let request = self.requests.get_mut(request_id.0).expect("looked up above");
            request.refused.get_or_insert_with(Default::default).push((amount, available));
            return Err(Refusal::InsufficientFunds { available_sats: available });
        }
        self.debit(request_id, idx, amount, journal);
        let reservation = self.reservation(request_id, amount, false, false, now);
        let request = self.requests.get_mut(request_id.0).expect("looked up above");
        request.identity = idx;
        request.reservation = Some(reservation);
        Ok(Outcome::Reserved { reserved_sats: amount })
    }

    /// Move `amount` from the pool into a reservation of identity `idx`. The caller checked
    /// that the pool and the daily remaining cover it.
    fn debit(&mut self, request_id: RequestId, idx: IdentityIdx, amount: Sats, journal: &mut Vec<Movement>) {
        let t = &mut self.totals;
        t.pool_sats = t.pool_sats.checked_sub(amount).expect("debit is covered by the pool");
        self.book_reservation(idx, amount);
        let pubkey = self.identities[idx as usize].0;
        journal.push(Movement::Debit { request_id, pubkey, amount_sats: amount });
    }

    /// Count `amount` as outstanding for identity `idx` and for the ledger.
    fn book_reservation(&mut self, idx: IdentityIdx, amount: Sats) {
        let t = &mut self.totals;
        t.reserved_sats = t.reserved_sats.checked_add(amount).expect("reservations are bounded by the pool");
        let identity = &mut self.identities[idx as usize].1;
        identity.reserved_sats = identity.reserved_sats.checked_add(amount).expect("bounded by the pool");
    }

    fn reservation(
        &mut self,
        request_id: RequestId,
        amount: Sats,
        by_decide: bool,
        undebited: bool,
        now: TimeMs,
    ) -> Reservation {
        let deadline = if self.breaks(Rule::Deadline) {
            TimeMs(now.0.wrapping_add(self.config.reservation_ttl_ms) & i64::MAX as u64)
        } else {
            now.plus_ms(self.config.reservation_ttl_ms)
        };
        let key = (deadline, request_id);
        // Deadlines grow with `now`, so nearly every key goes at the back.
        if self.deadlines.back().is_none_or(|last| *last <= key) {
            self.deadlines.push_back(key);
        } else {
            let at = self.deadlines.partition_point(|k| *k < key);
            self.deadlines.insert(at, key);
        }
        Reservation { amount, deadline, state: ReservationState::Outstanding, by_decide, undebited }
    }

    /// Close an outstanding reservation of identity `idx`: it leaves the identity's and the
    /// ledger's outstanding sums, and `returned` goes back to the pool.
    fn close(&mut self, idx: IdentityIdx, amount: Sats, returned: Sats) {
        let identity = &mut self.identities[idx as usize].1;
        identity.reserved_sats = identity.reserved_sats.checked_sub(amount).expect("identity holds the reservation");
        let t = &mut self.totals;
        t.reserved_sats = t.reserved_sats.checked_sub(amount).expect("ledger holds the reservation");
        // Returned sats were in the pool before, so the pool cannot overflow taking them back.
        t.pool_sats = t.pool_sats.checked_add(returned).expect("returned sats came from the pool");
    }

    /// The reservation of a request, for commands that need one.
    fn reserved(&self, request_id: RequestId) -> Result<(IdentityIdx, Reservation), Refusal> {
        let request = self.requests.get(request_id.0).ok_or(Refusal::UnknownRequest)?;
        let r = request.reservation.ok_or(Refusal::NotReserved)?;
        Ok((request.identity, r))
    }

    fn set_state(&mut self, request_id: RequestId, state: ReservationState) {
        let request = self.requests.get_mut(request_id.0).expect("known request");
        request.reservation.as_mut().expect("reserved request").state = state;
    }

    fn release(&mut self, request_id: RequestId, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
        let (idx, r) = self.reserved(request_id).map_err(|refusal| match refusal {
            Refusal::NotReserved if self.breaks(Rule::ReleaseNotReserved) => Refusal::UnknownRequest,
            refusal => refusal,
        })?;
        let ignores_state = self.breaks(Rule::ReleaseRepeat);
        match r.state {
            ReservationState::Outstanding => {}
            ReservationState::Released | ReservationState::Recorded { .. } if ignores_state => {
                self.totals.pool_sats = self.totals.pool_sats.checked_add(r.amount).ok_or(Refusal::Overflow)?;
                journal.push(Movement::Release { request_id, amount_sats: r.amount });
                return Ok(Outcome::Released { returned_sats: r.amount });
            }
            ReservationState::Released => return Ok(Outcome::Released { returned_sats: r.amount }),
            ReservationState::Recorded { .. } => return Err(Refusal::AlreadyRecorded),
            ReservationState::Expired if self.breaks(Rule::ReleaseSettled) => {
                return Ok(Outcome::Released { returned_sats: r.amount })
            }
            ReservationState::Expired => return Err(Refusal::ReservationExpired),
        }
        let returned = if self.breaks(Rule::ReleaseReturns) { Sats::ZERO } else { r.amount };
        self.close(idx, r.amount, returned);
        self.set_state(request_id, ReservationState::Released);
        journal.push(Movement::Release { request_id, amount_sats: r.amount });
        Ok(Outcome::Released { returned_sats: r.amount })
    }

    /// What recording `actual` against a reservation of `amount` absorbs, returns and overruns.
    fn settle(&self, amount: Sats, actual: Sats) -> (Sats, Sats, Sats) {
        let rules::Settlement { absorbed, returned, overrun } = self.variant.settle(amount, actual);
        let overrun = if self.breaks(Rule::RecordSettles) { Sats::ZERO } else { overrun };
        (absorbed, returned, overrun)
    }

    fn record(
        &mut self,
        request_id: RequestId,
        actual: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        // The request table is set aside while the reservation is settled.
        let mut requests = std::mem::take(&mut self.requests);
        let result = self.record_in(&mut requests, request_id, actual, now, journal);
        self.requests = requests;
        result
    }

    fn record_in(
        &mut self,
        requests: &mut IdMap<Request>,
        request_id: RequestId,
        actual: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        let request = requests.get_mut(request_id.0).ok_or(Refusal::UnknownRequest)?;
        let idx = request.identity;
        let r = request.reservation.as_mut().ok_or(Refusal::NotReserved)?;
        match r.state {
            ReservationState::Outstanding => {}
            ReservationState::Recorded { actual: first } => {
                let (absorbed, returned, overrun) = self.settle(r.amount, first);
                if self.breaks(Rule::RecordRepeat) {
                    self.absorb(idx, absorbed, now);
                    let pubkey = self.identities[idx as usize].0;
                    journal.push(Movement::Record {
                        request_id,
                        pubkey,
                        absorbed_sats: absorbed,
                        returned_sats: Sats::ZERO,
                    });
                }
                return if first == actual {
                    Ok(Outcome::Recorded { absorbed_sats: absorbed, returned_sats: returned, overrun_sats: overrun })
                } else {
                    Err(Refusal::RecordedWithDifferentAmount { actual_sats: first })
                };
            }
            ReservationState::Released if self.breaks(Rule::RecordNotOutstanding) => {
                return Err(Refusal::ReservationExpired)
            }
            ReservationState::Released => return Err(Refusal::AlreadyReleased),
            ReservationState::Expired => return Err(Refusal::ReservationExpired),
        }
        if r.deadline < now && self.breaks(Rule::RecordAfterDeadline) {
            return Err(Refusal::ReservationExpired);
        }
        let pubkey = self.identities[idx as usize].0;
        if r.undebited {
            // A variant whose decide does not debit: the debit comes late, and may come short.
            let late = r.amount.min(self.totals.pool_sats);
            self.totals.pool_sats = self.totals.pool_sats.checked_sub(late).expect("min with the pool");
            journal.push(Movement::Debit { request_id, pubkey, amount_sats: late });
        }
        let (absorbed, returned, overrun) = self.settle(r.amount, actual);
        let overrun_total = match self.totals.overrun_sats.checked_add(overrun) {
            None if self.breaks(Rule::RecordOverrunOverflow) => Sats::MAX,
            total => total.ok_or(Refusal::Overflow)?,
        };
        let back = if self.variant.record_returns_unused() { returned } else { Sats::ZERO };
        self.close(idx, r.amount, back);
        self.absorb(idx, absorbed, now);
        self.totals.overrun_sats = overrun_total;
        r.state = ReservationState::Recorded { actual };
        journal.push(Movement::Record { request_id, pubkey, absorbed_sats: absorbed, returned_sats: returned });
        Ok(Outcome::Recorded { absorbed_sats: absorbed, returned_sats: returned, overrun_sats: overrun })
    }

    /// Count `absorbed` in the ledger's grants and the identity's daily window.
    fn absorb(&mut self, idx: IdentityIdx, absorbed: Sats, now: TimeMs) {
        let t = &mut self.totals;
        t.absorbed_sats = t.absorbed_sats.checked_add(absorbed).expect("absorbed sats came from the pool");
        if !(absorbed.is_zero() && self.variant.breaks(Rule::RecordIsAGrant)) {
            t.n_grants = t.n_grants.checked_add(1).expect("fewer than 2^64 grants");
        }
        let window_ms = self.window_ms();
        let breaks = |rule| self.variant.breaks(rule);
        let (restart_on_zero, aligned, overwrites) =
            (breaks(Rule::WindowZeroAbsorption), breaks(Rule::WindowOpensAtAbsorption), breaks(Rule::WindowAddsUp));
        let identity = &mut self.identities[idx as usize].1;
        let (old_today, old_start) = (identity.sats_absorbed_today, identity.absorbed_reset_at);
        let ended = now.since(old_start) >= window_ms;
        if absorbed.is_zero() {
            if ended && restart_on_zero {
                (identity.sats_absorbed_today, identity.absorbed_reset_at) = (Sats::ZERO, now);
            }
            return;
        }
        // The seed's CASE: the first absorption after the window ran out starts a new one.
        let (today, start) =
            rules::absorb(old_today, old_start, absorbed, now, window_ms).expect("bounded by the pool");
        let (today, start) = match (ended, aligned, overwrites) {
            (true, true, _) => (today, old_start.plus_ms(window_ms)),
            (false, _, true) => (absorbed, start),
            _ => (today, start),
        };
        identity.sats_absorbed_today = today;
        identity.absorbed_reset_at = start;
    }

    fn credit(&mut self, payment_id: PaymentId, paid: Sats, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
        let repeats_credit = self.breaks(Rule::CreditRepeat);
        let repeat = self.payments.get(payment_id.0).filter(|_| !repeats_credit);
        if let Some(&(first_paid, credited)) = repeat {
            return if first_paid == paid {
                Ok(Outcome::Credited { credited_sats: credited })
            } else {
                Err(Refusal::PaymentWithDifferentAmount { paid_sats: first_paid })
            };
        }
        let mut credited = self.variant.credit_share(paid, self.config.credit_bps).ok_or(Refusal::Overflow)?;
        let exact = u128::from(paid.to_u64()) * u128::from(self.config.credit_bps.to_u16()) % 10_000 == 0;
        if !exact && self.breaks(Rule::CreditRounding) {
            credited = credited.checked_add(Sats::new(1).expect("1 sat")).ok_or(Refusal::Overflow)?;
        }
        // Every sat ever in the ledger (genesis plus credits) must fit: the pool, the
        // reservations and the absorption are parts of it, so none of them can overflow
        // when reserved sats come back. Checking the pool alone is not enough.
        let total = self.totals.credited_sats.checked_add(credited).ok_or(Refusal::Overflow)?;
        let fits = if self.breaks(Rule::CreditOverflow) {
            self.totals.pool_sats.checked_add(credited).is_some()
        } else {
            rules::credit_fits(self.config.pool_initial_sats, total)
        };
        if !fits {
            return Err(Refusal::Overflow);
        }
        let pool = self.totals.pool_sats.checked_add(credited).expect("pool <= genesis + credits");
        self.totals.pool_sats = pool;
        self.totals.credited_sats = total;
        if !(credited.is_zero() && self.breaks(Rule::CreditRemembered)) {
            self.payments.insert(payment_id.0, (paid, credited));
        }
        journal.push(Movement::Credit { payment_id, amount_sats: credited });
        Ok(Outcome::Credited { credited_sats: credited })
    }

    fn expire(&mut self, now: TimeMs, journal: &mut Vec<Movement>) -> Outcome {
        let mut released = Vec::new();
        while let Some(&(deadline, request_id)) = self.deadlines.front() {
            if deadline >= now && !(deadline == now && self.breaks(Rule::ExpireStrict)) {
                break;
            }
            self.deadlines.pop_front();
            let (idx, r) = self.reserved(request_id).expect("a deadline belongs to a reservation");
            if r.state != ReservationState::Outstanding || r.deadline != deadline {
                continue;
            }
            let back = if !self.breaks(Rule::ExpireReturns) { r.amount } else { Sats::ZERO };
            self.close(idx, r.amount, back);
            self.set_state(request_id, ReservationState::Expired);
            journal.push(Movement::Expire { request_id, amount_sats: r.amount });
            released.push((request_id, r.amount));
        }
        if self.breaks(Rule::ExpireOrder) {
            released.sort_by_key(|(request_id, _)| *request_id);
        }
        Outcome::Expired { released }
    }
}

fn payment_record(payment_id: PaymentId, paid_sats: Sats, credited_sats: Sats) -> PaymentRecord {
    PaymentRecord { payment_id, paid_sats, credited_sats }
}
