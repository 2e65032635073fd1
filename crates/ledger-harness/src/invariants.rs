//! The invariant checker: I1-I6 and I8 of SPEC.md §6, incremental; I1-I6 are O(1) per step,
//! I8 (the precision oracle, [`crate::oracle`]) O(log n).
//!
//! The checker keeps its own books from two sources that do not depend on the engine's
//! bookkeeping: the journal of pool movements each step returned, and the caller's facts
//! (tiers it set, invoices users paid, what each user was let off paying). After each step it
//! compares them with what the engine shows ([`Observed`]). A violation carries the numbers.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use ledger_core::{
    Command, Config, IdMap, KeyIndex, Movement, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats, Tier, TimeMs,
    DAY_MS,
};

use crate::engine::{Observed, Reply};
use crate::oracle::Model;
use crate::users::Named;

/// One of the invariants of SPEC.md §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    /// The pool is never negative, and nothing overflows.
    I1,
    /// initial + credits = pool + outstanding + absorbed; the journal sums to the balance.
    I2,
    /// A request's charge reduction equals what the pool gave up for it.
    I3,
    /// Absorbed + reserved within a window never exceeds the tier's budget.
    I4,
    /// Grants sum to absorption; no request recorded twice, or recorded and released.
    I5,
    /// Once traffic stops and deadlines pass, nothing is left reserved.
    I6,
    /// Every acknowledged command's effect survives a crash of the server. Judged only by the
    /// Postgres runs that crash a durable server; the in-memory checker never reports it.
    I7,
    /// Every answer is the one the rules give: each outcome and refusal of an engine that
    /// speaks the reference API equals the answer of the oracle's model of `SPEC.md`
    /// ([`crate::oracle::Model`]), fed the same calls at the same times.
    I8,
}

impl Invariant {
    /// All eight, in order.
    pub const ALL: [Invariant; 8] = [
        Invariant::I1,
        Invariant::I2,
        Invariant::I3,
        Invariant::I4,
        Invariant::I5,
        Invariant::I6,
        Invariant::I7,
        Invariant::I8,
    ];

    /// `"I1"` ... `"I7"`.
    pub const fn id(self) -> &'static str {
        match self {
            Invariant::I1 => "I1",
            Invariant::I2 => "I2",
            Invariant::I3 => "I3",
            Invariant::I4 => "I4",
            Invariant::I5 => "I5",
            Invariant::I6 => "I6",
            Invariant::I7 => "I7",
            Invariant::I8 => "I8",
        }
    }

    /// The invariant's name.
    pub const fn name(self) -> &'static str {
        match self {
            Invariant::I1 => "pool never negative",
            Invariant::I2 => "conservation",
            Invariant::I3 => "charge reduction equals debit",
            Invariant::I4 => "daily budget",
            Invariant::I5 => "audit",
            Invariant::I6 => "no leak",
            Invariant::I7 => "durability",
            Invariant::I8 => "every answer is the one the rules give",
        }
    }

    /// The invariants a run of `engine` (as reports name it) is judged by: I7 only on
    /// PostgreSQL; I8 only for an engine that speaks the reference API (not the seed's): one
    /// call at a time against the oracle, and under concurrency as linearizability, some serial
    /// order consistent with real time giving every answer on the reference
    /// ([`crate::linear`]).
    pub fn judged_for(engine: &str) -> Vec<Invariant> {
        let pg = engine.starts_with("pg-");
        let seed_api = engine == "seed"
            || engine.starts_with("seed+")
            || engine.starts_with("pg-seed")
            || engine.starts_with("exec-seed");
        let reference_api = !seed_api;
        Invariant::ALL
            .into_iter()
            .filter(|i| match i {
                Invariant::I7 => pg,
                Invariant::I8 => reference_api,
                _ => true,
            })
            .collect()
    }

    /// Parse `"I3"` (or `"i3"`).
    pub fn from_id(s: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.id().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id(), self.name())
    }
}

/// A broken invariant, with the numbers that show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// The request concerned, if one is.
    pub request_id: Option<RequestId>,
    /// What was seen, with the numbers.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)?;
        if let Some(r) = self.request_id {
            write!(f, " (request {})", r.0)?;
        }
        Ok(())
    }
}

/// Index of an identity in `Checker::identities`; [`NO_IDENTITY`] before a request is
/// tied to a pubkey.
type IdentityIdx = u32;
const NO_IDENTITY: IdentityIdx = IdentityIdx::MAX;

/// `RequestBook::debited` when the request's sums no longer fit an `i64` and live in
/// `Checker::wide` (never with a sound engine: one request's sums stay within `Sats::MAX`).
const WIDE: i64 = -1;

/// One request's book, kept small: the checker holds one per request that touched the pool,
/// forever (so that a second record or a late release is caught).
#[derive(Clone, Copy, Debug)]
struct RequestBook {
    /// The identity of the first pubkey the journal named for the request.
    identity: IdentityIdx,
    n_records: u32,
    n_releases: u32,
    n_expiries: u32,
    /// The sums below, or [`WIDE`].
    debited: i64,
    returned: i64,
    absorbed: i64,
}

impl Default for RequestBook {
    fn default() -> RequestBook {
        RequestBook {
            identity: NO_IDENTITY,
            n_records: 0,
            n_releases: 0,
            n_expiries: 0,
            debited: 0,
            returned: 0,
            absorbed: 0,
        }
    }
}

/// A request's sums, exact.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    debited: i128,
    returned: i128,
    absorbed: i128,
}

impl Sums {
    /// Sats the pool gave up for this request and that are neither absorbed nor back.
    fn held(&self) -> i128 {
        self.debited - self.returned - self.absorbed
    }
}

impl RequestBook {
    fn ends(&self) -> u32 {
        self.n_records + self.n_releases + self.n_expiries
    }

    fn sums(&self, request_id: RequestId, wide: &FxHashMap<RequestId, Sums>) -> Sums {
        if self.debited == WIDE {
            wide[&request_id]
        } else {
            Sums { debited: self.debited.into(), returned: self.returned.into(), absorbed: self.absorbed.into() }
        }
    }

    fn set_sums(&mut self, request_id: RequestId, wide: &mut FxHashMap<RequestId, Sums>, sums: Sums) {
        let narrow = (i64::try_from(sums.debited), i64::try_from(sums.returned), i64::try_from(sums.absorbed));
        match narrow {
            (Ok(d), Ok(r), Ok(a)) if d != WIDE => {
                if self.debited == WIDE {
                    wide.remove(&request_id);
                }
                (self.debited, self.returned, self.absorbed) = (d, r, a);
            }
            _ => {
                wide.insert(request_id, sums);
                self.debited = WIDE;
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct IdentityBook {
    /// Whose book it is: beside the rest, so that finding a book by its pubkey
    /// ([`KeyIndex`] compares the key) and reading it touch the same cache lines.
    pubkey: Pubkey,
    /// `None` for a pubkey the journal named but no `on_tier` created.
    tier: Option<Tier>,
    window_start: TimeMs,
    window_absorbed: i128,
    outstanding: i128,
}

/// The checker. Feed it every step's facts; read [`Checker::violations`].
#[derive(Clone, Debug)]
pub struct Checker {
    config: Config,
    /// initial + credits - debits + returns, from the journal.
    journal_pool: i128,
    /// initial + the credit each distinct payment should give.
    expected_in: i128,
    absorbed: i128,
    /// Sum over requests of `max(0, held)`.
    outstanding: i128,
    requests: IdMap<RequestBook>,
    /// Sums of requests whose book is [`WIDE`].
    wide: FxHashMap<RequestId, Sums>,
    identities: Vec<IdentityBook>,
    /// The book of each pubkey, by its slot in `identities`.
    identity_index: KeyIndex,
    /// Paid sats of each payment, with [`CREDITED`] set once it was credited.
    payments: IdMap<u64>,
    violations: Vec<Violation>,
    first_step_of: [Option<u64>; Invariant::ALL.len()],
    /// The precision oracle's model (I8); `None` once the engine's state can no longer be
    /// known (after a diverging answer, or a call that failed and may or may not have
    /// taken effect).
    oracle: Option<Box<Model>>,
    step: u64,
    /// The last reported gap of each global check, so a standing discrepancy is reported
    /// once (and again only when it changes), not after every step.
    last_gap: [i128; 4],
}

/// The bit of a `Checker::payments` value that says the payment was credited (paid sats
/// are at most `Sats::MAX = i64::MAX`, so the top bit is free).
const CREDITED: u64 = 1 << 63;

impl Checker {
    /// A checker for a ledger at genesis under `config`.
    pub fn new(config: &Config) -> Checker {
        let initial = config.pool_initial_sats.to_i128();
        Checker {
            config: *config,
            journal_pool: initial,
            expected_in: initial,
            absorbed: 0,
            outstanding: 0,
            requests: IdMap::default(),
            wide: FxHashMap::default(),
            identities: Vec::new(),
            identity_index: KeyIndex::default(),
            payments: IdMap::default(),
            violations: Vec::new(),
            first_step_of: [None; Invariant::ALL.len()],
            oracle: Some(Box::new(Model::new(*config))),
            step: 0,
            last_gap: [0; 4],
        }
    }

    /// [`Checker::new`] with room for `n_identities` and `n_requests` (ids `0..n_requests`)
    /// before its books grow: a long run that knows its scale books every request in a
    /// vector and never rehashes on the hot path.
    pub fn with_capacity(config: &Config, n_identities: usize, n_requests: usize) -> Checker {
        let mut checker = Checker::new(config);
        checker.reserve(n_identities, n_requests);
        checker
    }

    /// Room for `n_identities` more identities and `n_requests` more requests (ids up to
    /// `n_requests`) before the books grow (see [`Checker::with_capacity`]).
    pub fn reserve(&mut self, n_identities: usize, n_requests: usize) {
        self.requests.reserve(n_requests);
        self.payments.reserve(n_requests);
        self.identities.reserve(n_identities);
        self.identity_index.reserve(n_identities, |i| &self.identities[i as usize].pubkey);
    }

    /// Back to [`Checker::new`] under `config`, keeping the room of its books (see
    /// [`ledger_core::Ledger::reset`]). Only the books are carried over, emptied; every other
    /// field is new.
    pub fn reset(&mut self, config: &Config) {
        let mut fresh = Checker::new(config);
        std::mem::swap(&mut fresh.requests, &mut self.requests);
        std::mem::swap(&mut fresh.wide, &mut self.wide);
        std::mem::swap(&mut fresh.identities, &mut self.identities);
        std::mem::swap(&mut fresh.identity_index, &mut self.identity_index);
        std::mem::swap(&mut fresh.payments, &mut self.payments);
        fresh.requests.clear();
        fresh.wide.clear();
        fresh.identities.clear();
        fresh.identity_index.clear();
        fresh.payments.clear();
        *self = fresh;
    }

    /// Every violation so far, in the order found.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The step (as counted by [`Checker::after_step`]) at which `invariant` first broke.
    pub fn first_step(&self, invariant: Invariant) -> Option<u64> {
        self.first_step_of[invariant as usize]
    }

    /// Outstanding sats by the checker's own books.
    pub fn outstanding_sats(&self) -> i128 {
        self.outstanding
    }

    fn violate(&mut self, invariant: Invariant, request_id: Option<RequestId>, detail: String) {
        let first = &mut self.first_step_of[invariant as usize];
        if first.is_none() {
            *first = Some(self.step);
        }
        self.violations.push(Violation { invariant, request_id, detail });
    }

    /// The index of `pubkey`'s book, made (not yet created by a tier) on first sight.
    fn identity_idx(&mut self, pubkey: Pubkey) -> IdentityIdx {
        if let Some(idx) = self.identity_index.get(&pubkey, |i| &self.identities[i as usize].pubkey) {
            return idx;
        }
        let idx = IdentityIdx::try_from(self.identities.len()).expect("fewer than 2^32 - 1 identities");
        assert!(idx != NO_IDENTITY, "identity table full");
        self.identities.push(IdentityBook {
            pubkey,
            tier: None,
            window_start: TimeMs(0),
            window_absorbed: 0,
            outstanding: 0,
        });
        self.identity_index.insert(&pubkey, idx, |i| &self.identities[i as usize].pubkey);
        idx
    }

    /// [`Checker::identity_idx`] of `pubkey`, without hashing it when `request_id` is
    /// already tied to it (a record after its debit).
    fn identity_idx_of(&mut self, request_id: RequestId, pubkey: Pubkey) -> IdentityIdx {
        match self.requests.get(request_id.0) {
            Some(book) if self.identities.get(book.identity as usize).is_some_and(|i| i.pubkey == pubkey) => {
                book.identity
            }
            _ => self.identity_idx(pubkey),
        }
    }

    /// A `SetTier` finished: `pubkey` now holds `tier` (a new identity starts its window).
    pub fn on_tier(&mut self, pubkey: Pubkey, tier: Tier, now: TimeMs) {
        let idx = self.identity_idx(pubkey);
        let book = &mut self.identities[idx as usize];
        if book.tier.is_none() {
            *book = IdentityBook { pubkey, tier: None, window_start: now, window_absorbed: 0, outstanding: 0 };
        }
        book.tier = Some(tier);
    }

    /// An engine that speaks the reference API answered `command` at `now` with `reply`: I8
    /// holds when that is what the rules give. Every call the engine applies must come here,
    /// in the order it applied them. After the first diverging answer the model no longer
    /// knows the engine's state, and the rest of the run is not judged by I8; nor after a
    /// failed call, which may or may not have taken effect.
    pub fn on_reply(&mut self, command: &Command, now: TimeMs, reply: &Reply) {
        let Some(model) = self.oracle.as_mut() else { return };
        let expected = model.apply(command, now);
        let got = match reply {
            Reply::Ok(outcome) => Ok(outcome.clone()),
            Reply::Refused(refusal) => Err(refusal.clone()),
            Reply::Failed { .. } => {
                self.oracle = None;
                return;
            }
        };
        if got != expected {
            self.oracle = None;
            let answer = |r: &Result<Outcome, Refusal>| match r {
                Ok(o) => serde_json::to_string(o).unwrap_or_default(),
                Err(r) => format!("refused {}", serde_json::to_string(r).unwrap_or_default()),
            };
            let detail = format!(
                "{} at t={} answered {}; the rules give {}",
                serde_json::to_string(command).unwrap_or_default(),
                now.0,
                answer(&got),
                answer(&expected)
            );
            self.violate(Invariant::I8, command_request(command), detail);
        }
    }

    /// `pubkey`'s daily window by the checker's own books: `(start, absorbed in it,
    /// outstanding, tier)`, once a tier created the identity.
    pub fn window_of(&self, pubkey: &Pubkey) -> Option<(TimeMs, i128, i128, Tier)> {
        let book =
            self.identities.get(self.identity_index.get(pubkey, |i| &self.identities[i as usize].pubkey)? as usize)?;
        Some((book.window_start, book.window_absorbed, book.outstanding, book.tier?))
    }

    /// The oracle's model of the rules, while it still knows the engine's state (I8).
    pub fn model(&self) -> Option<&Model> {
        self.oracle.as_deref()
    }

    /// A user paid `paid` for invoice `payment_id`: the pool is owed its share, once.
    pub fn on_payment(&mut self, payment_id: PaymentId, paid: Sats) {
        self.payments.get_or_insert_with(payment_id.0, || paid.to_u64());
    }

    /// An engine reported an overflow: I1 ("no overflow anywhere").
    pub fn on_overflow(&mut self, request_id: Option<RequestId>, what: &str) {
        self.violate(Invariant::I1, request_id, format!("overflow: {what}"));
    }

    /// The movements one step made, at `now`.
    pub fn on_movements(&mut self, movements: &[Movement], now: TimeMs) {
        for m in movements {
            self.on_movement(m, now);
        }
    }

    /// Change the sums of `request_id` with `change`, and its held sats in the outstanding
    /// sums. `pubkey` ties a request not yet tied to an identity. Returns the book (as it
    /// was before the change) and the sums before the change.
    fn rebook(
        &mut self,
        request_id: RequestId,
        identity: Option<IdentityIdx>,
        change: impl FnOnce(&mut Sums, &mut RequestBook),
    ) -> (RequestBook, Sums) {
        let book = self.requests.get_or_default(request_id.0);
        if let Some(idx) = identity {
            if book.identity == NO_IDENTITY {
                book.identity = idx;
            }
        }
        let before_book = *book;
        let before = book.sums(request_id, &self.wide);
        let mut after = before;
        change(&mut after, book);
        book.set_sums(request_id, &mut self.wide, after);
        let delta = after.held().max(0) - before.held().max(0);
        self.outstanding += delta;
        if let Some(id) = self.identities.get_mut(book.identity as usize) {
            if id.tier.is_some() {
                id.outstanding += delta;
            }
        }
        (before_book, before)
    }

    fn on_movement(&mut self, m: &Movement, now: TimeMs) {
        match *m {
            Movement::Debit { request_id, pubkey, amount_sats } => {
                let a = amount_sats.to_i128();
                self.journal_pool -= a;
                let idx = self.identity_idx(pubkey);
                self.rebook(request_id, Some(idx), |s, _| s.debited += a);
                self.check_budget(request_id, idx, pubkey, now, "granted");
            }
            Movement::Release { request_id, amount_sats } | Movement::Expire { request_id, amount_sats } => {
                let a = amount_sats.to_i128();
                self.journal_pool += a;
                let expire = matches!(m, Movement::Expire { .. });
                let (book, before) = self.rebook(request_id, None, |s, book| {
                    s.returned += a;
                    if expire {
                        book.n_expiries += 1;
                    } else {
                        book.n_releases += 1;
                    }
                });
                let before = before.held();
                if book.n_records > 0 {
                    self.violate(Invariant::I5, Some(request_id), format!("released {a} sats after being recorded"));
                } else if book.ends() > 0 {
                    self.violate(
                        Invariant::I5,
                        Some(request_id),
                        format!("reservation ended twice: released {a} sats again"),
                    );
                }
                if before < a {
                    self.violate(
                        Invariant::I2,
                        Some(request_id),
                        format!("returned {a} sats to the pool but only {before} were held for the request"),
                    );
                }
            }
            Movement::Record { request_id, pubkey, absorbed_sats, returned_sats } => {
                let (a, r) = (absorbed_sats.to_i128(), returned_sats.to_i128());
                self.journal_pool += r;
                self.absorbed += a;
                let idx = self.identity_idx_of(request_id, pubkey);
                let (book, before) = self.rebook(request_id, Some(idx), |s, book| {
                    s.absorbed += a;
                    s.returned += r;
                    book.n_records += 1;
                });
                let before = before.held();
                if book.n_records > 0 {
                    self.violate(Invariant::I5, Some(request_id), format!("recorded twice (again {a} absorbed)"));
                } else if book.n_releases + book.n_expiries > 0 {
                    self.violate(Invariant::I5, Some(request_id), "recorded after being released".to_owned());
                }
                self.absorb_into_window(idx, a, now);
                if a + r > before {
                    // Absorbed sats the pool never gave up for this request: granted now.
                    self.violate(
                        Invariant::I2,
                        Some(request_id),
                        format!("recorded {a} absorbed + {r} returned but the pool held only {before} sats for it"),
                    );
                    self.check_budget(request_id, idx, pubkey, now, "absorbed beyond the reservation");
                }
            }
            Movement::Credit { payment_id, amount_sats } => {
                let a = amount_sats.to_i128();
                self.journal_pool += a;
                let bps = self.config.credit_bps;
                match self.payments.get_mut(payment_id.0) {
                    Some(entry) if *entry & CREDITED == 0 => {
                        let paid = Sats::new(*entry).expect("paid sats are at most Sats::MAX");
                        *entry |= CREDITED;
                        let due = paid.share_bps(bps).to_i128();
                        self.expected_in += due;
                        if a != due {
                            self.violate(
                                Invariant::I2,
                                None,
                                format!(
                                    "payment {} of {paid} sats credited {a}, but floor(paid * {} bp / 10000) = {due}",
                                    payment_id.0,
                                    bps.to_u16()
                                ),
                            );
                        }
                    }
                    Some(_) => {
                        self.violate(Invariant::I2, None, format!("payment {} credited again: +{a} sats", payment_id.0))
                    }
                    None => self.violate(
                        Invariant::I2,
                        None,
                        format!("credit of {a} sats for unknown payment {}", payment_id.0),
                    ),
                }
            }
        }
    }

    fn absorb_into_window(&mut self, idx: IdentityIdx, absorbed: i128, now: TimeMs) {
        if absorbed <= 0 {
            return;
        }
        let id = &mut self.identities[idx as usize];
        if id.tier.is_some() {
            if now.since(id.window_start) >= DAY_MS {
                id.window_start = now;
                id.window_absorbed = absorbed;
            } else {
                id.window_absorbed += absorbed;
            }
        }
    }

    /// I4 at the moment sats are granted to `pubkey` (identity `idx`).
    fn check_budget(&mut self, request_id: RequestId, idx: IdentityIdx, pubkey: Pubkey, now: TimeMs, what: &str) {
        let id = self.identities[idx as usize];
        let Some(tier) = id.tier else {
            self.violate(
                Invariant::I4,
                Some(request_id),
                format!("{what} sats to {}, an identity never created", Named(pubkey)),
            );
            return;
        };
        let budget = self.config.budget(tier).to_i128();
        let absorbed = if now.since(id.window_start) >= DAY_MS { 0 } else { id.window_absorbed };
        if absorbed + id.outstanding > budget {
            self.violate(
                Invariant::I4,
                Some(request_id),
                format!(
                    "{} ({tier}, budget {budget}) {what}: window absorbed {absorbed} + reserved {} = {} > {budget}",
                    Named(pubkey),
                    id.outstanding,
                    absorbed + id.outstanding
                ),
            );
        }
    }

    /// The caller finished a request: it let the user off `reduction` sats of the actual
    /// cost (the pool's share), and was told of `overrun` sats paid outside the pool.
    pub fn on_close(&mut self, request_id: RequestId, reduction: Sats, overrun: Sats) {
        // A request with no book has a book of zeros.
        let sums = self.requests.get(request_id.0).map(|b| b.sums(request_id, &self.wide)).unwrap_or_default();
        let gave = sums.debited - sums.returned;
        let (reduction, overrun) = (reduction.to_i128(), overrun.to_i128());
        if reduction != gave + overrun {
            let more = if reduction > gave + overrun { "more than" } else { "less than" };
            self.violate(
                Invariant::I3,
                Some(request_id),
                format!(
                    "charge reduced by {reduction} sats, {more} the pool's net debit {gave} (debited {}, returned {}) + reported overrun {overrun}",
                    sums.debited, sums.returned
                ),
            );
        }
    }

    /// Compare the books with what the engine shows after a step: I1, I2, I5.
    pub fn after_step(&mut self, observed: &Observed) {
        self.step += 1;
        if observed.pool_sats < 0 || observed.pool_sats > Sats::MAX.to_i128() {
            self.violate(Invariant::I1, None, format!("pool balance {} out of 0..=Sats::MAX", observed.pool_sats));
        }
        let rhs = observed.pool_sats + self.outstanding + self.absorbed;
        if self.gap_changed(0, self.expected_in - rhs) {
            self.violate(
                Invariant::I2,
                None,
                format!(
                    "initial + credits = {} but pool {} + outstanding {} + absorbed {} = {rhs}",
                    self.expected_in, observed.pool_sats, self.outstanding, self.absorbed
                ),
            );
        }
        if self.gap_changed(1, self.journal_pool - observed.pool_sats) {
            self.violate(
                Invariant::I2,
                None,
                format!(
                    "journal of pool movements sums to {} but the pool holds {}",
                    self.journal_pool, observed.pool_sats
                ),
            );
        }
        if let Some(reserved) = observed.reserved_sats {
            if self.gap_changed(2, reserved - self.outstanding) {
                self.violate(
                    Invariant::I2,
                    None,
                    format!("engine books {reserved} sats outstanding, the journal {}", self.outstanding),
                );
            }
        }
        if self.gap_changed(3, observed.granted_sats - self.absorbed) {
            self.violate(
                Invariant::I5,
                None,
                format!("audit grants sum to {} but absorption is {}", observed.granted_sats, self.absorbed),
            );
        }
    }

    /// Record the gap of global check `k`; true when it is non-zero and new.
    fn gap_changed(&mut self, k: usize, gap: i128) -> bool {
        let changed = gap != self.last_gap[k];
        self.last_gap[k] = gap;
        changed && gap != 0
    }

    /// After the drain (traffic stopped, deadlines passed, `expire` run): every reservation
    /// must have ended (I5) and nothing may be held (I6). Violations come in request order.
    pub fn finish(&mut self) {
        let mut open: Vec<(RequestId, i128, u32)> = self
            .requests
            .iter()
            .map(|(r, b)| (RequestId(r), b.sums(RequestId(r), &self.wide), b.ends()))
            .filter(|(_, s, ends)| s.debited > 0 && (*ends == 0 || s.held() > 0))
            .map(|(r, s, ends)| (r, s.held(), ends))
            .collect();
        open.sort_unstable_by_key(|(r, ..)| *r);
        for (request_id, held, ends) in open {
            if ends == 0 {
                self.violate(
                    Invariant::I5,
                    Some(request_id),
                    "reservation never recorded, released or expired".to_owned(),
                );
            }
            if held > 0 {
                self.violate(Invariant::I6, Some(request_id), format!("{held} sats still held after the drain"));
            }
        }
    }
}

/// The request a command is about, if any.
fn command_request(command: &Command) -> Option<RequestId> {
    match *command {
        Command::Decide { request_id, .. }
        | Command::ReservePartial { request_id, .. }
        | Command::Release { request_id }
        | Command::Record { request_id, .. } => Some(request_id),
        Command::SetTier { .. } | Command::Credit { .. } | Command::Expire => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose sums outgrow an `i64` (only a broken engine can do that) keeps exact
    /// books: the numbers in the violations are the true sums.
    #[test]
    fn sums_beyond_i64_stay_exact() {
        let config = Config::default();
        let mut c = Checker::new(&config);
        let (r, p, now) = (RequestId(7), crate::users::user_pubkey(1), TimeMs(1));
        c.on_tier(p, Tier::Elite, now);
        let debit = Movement::Debit { request_id: r, pubkey: p, amount_sats: Sats::MAX };
        c.on_movements(&[debit, debit, debit], now);
        let max = Sats::MAX.to_i128();
        assert_eq!(c.outstanding_sats(), 3 * max);
        c.on_movements(&[Movement::Release { request_id: r, amount_sats: Sats::MAX }], now);
        assert_eq!(c.outstanding_sats(), 2 * max);
        c.on_close(r, Sats::ZERO, Sats::ZERO);
        let i3 = c.violations().iter().find(|v| v.invariant == Invariant::I3).expect("I3");
        assert!(i3.detail.contains(&format!("net debit {} (debited {}, returned {max})", 2 * max, 3 * max)), "{i3}");
        c.on_movements(&[Movement::Release { request_id: r, amount_sats: Sats::MAX }], now);
        c.on_movements(&[Movement::Release { request_id: r, amount_sats: Sats::MAX }], now);
        // Nothing is held, and the sums (which only grow) stay wide.
        assert_eq!(c.outstanding_sats(), 0);
        assert_eq!(c.wide[&r].debited, 3 * max);
        c.finish();
        assert!(c.violations().iter().all(|v| v.invariant != Invariant::I6));
    }
}
