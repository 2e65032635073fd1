//! The invariant checker: I1-I6 of DESIGN §4, incremental, O(1) per step.
//!
//! The checker keeps its own books from two sources that do not depend on the engine's
//! bookkeeping: the journal of pool movements each step returned, and the caller's facts
//! (tiers it set, invoices users paid, what each user was let off paying). After each step it
//! compares them with what the engine shows ([`Observed`]). A violation carries the numbers.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::engine::{Movement, Observed};
use crate::ids::{PaymentId, Pubkey, RequestId, Tier, TimeMs, DAY_MS};
use crate::sats::Sats;

/// One of the invariants of DESIGN §4.
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
}

impl Invariant {
    /// All six, in order.
    pub const ALL: [Invariant; 6] =
        [Invariant::I1, Invariant::I2, Invariant::I3, Invariant::I4, Invariant::I5, Invariant::I6];

    /// `"I1"` ... `"I6"`.
    pub const fn id(self) -> &'static str {
        match self {
            Invariant::I1 => "I1",
            Invariant::I2 => "I2",
            Invariant::I3 => "I3",
            Invariant::I4 => "I4",
            Invariant::I5 => "I5",
            Invariant::I6 => "I6",
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
        }
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

#[derive(Clone, Debug, Default)]
struct RequestBook {
    pubkey: Option<Pubkey>,
    debited: i128,
    returned: i128,
    absorbed: i128,
    n_records: u32,
    n_releases: u32,
    n_expiries: u32,
    closed: bool,
}

impl RequestBook {
    /// Sats the pool gave up for this request and that are neither absorbed nor back.
    fn held(&self) -> i128 {
        self.debited - self.returned - self.absorbed
    }

    fn ends(&self) -> u32 {
        self.n_records + self.n_releases + self.n_expiries
    }
}

#[derive(Clone, Copy, Debug)]
struct IdentityBook {
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
    requests: FxHashMap<RequestId, RequestBook>,
    identities: FxHashMap<Pubkey, IdentityBook>,
    payments: FxHashMap<PaymentId, (Sats, bool)>,
    violations: Vec<Violation>,
    first_step_of: [Option<u64>; 6],
    step: u64,
    /// The last reported gap of each global check, so a standing discrepancy is reported
    /// once (and again only when it changes), not after every step.
    last_gap: [i128; 4],
}

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
            requests: FxHashMap::default(),
            identities: FxHashMap::default(),
            payments: FxHashMap::default(),
            violations: Vec::new(),
            first_step_of: [None; 6],
            step: 0,
            last_gap: [0; 4],
        }
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

    /// A `SetTier` finished: `pubkey` now holds `tier` (a new identity starts its window).
    pub fn on_tier(&mut self, pubkey: Pubkey, tier: Tier, now: TimeMs) {
        let book = self.identities.entry(pubkey).or_insert(IdentityBook {
            tier: None,
            window_start: now,
            window_absorbed: 0,
            outstanding: 0,
        });
        book.tier = Some(tier);
    }

    /// A user paid `paid` for invoice `payment_id`: the pool is owed its share, once.
    pub fn on_payment(&mut self, payment_id: PaymentId, paid: Sats) {
        self.payments.entry(payment_id).or_insert((paid, false));
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

    fn request(&mut self, request_id: RequestId) -> &mut RequestBook {
        self.requests.entry(request_id).or_default()
    }

    /// Apply a change of `held` for one request to the outstanding sums.
    fn rebook(&mut self, request_id: RequestId, held_before: i128) {
        let book = &self.requests[&request_id];
        let (held_after, pubkey) = (book.held(), book.pubkey);
        let delta = held_after.max(0) - held_before.max(0);
        self.outstanding += delta;
        if let Some(id) = pubkey.and_then(|p| self.identities.get_mut(&p)) {
            id.outstanding += delta;
        }
    }

    fn on_movement(&mut self, m: &Movement, now: TimeMs) {
        match *m {
            Movement::Debit { request_id, pubkey, amount_sats } => {
                let a = amount_sats.to_i128();
                self.journal_pool -= a;
                let book = self.request(request_id);
                book.pubkey.get_or_insert(pubkey);
                let before = book.held();
                book.debited += a;
                self.rebook(request_id, before);
                self.check_budget(request_id, pubkey, now, "granted");
            }
            Movement::Release { request_id, amount_sats } | Movement::Expire { request_id, amount_sats } => {
                let a = amount_sats.to_i128();
                self.journal_pool += a;
                let expire = matches!(m, Movement::Expire { .. });
                let book = self.request(request_id);
                let before = book.held();
                let (records, ends) = (book.n_records, book.ends());
                book.returned += a;
                if expire {
                    book.n_expiries += 1;
                } else {
                    book.n_releases += 1;
                }
                self.rebook(request_id, before);
                if records > 0 {
                    self.violate(Invariant::I5, Some(request_id), format!("released {a} sats after being recorded"));
                } else if ends > 0 {
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
                let book = self.request(request_id);
                book.pubkey.get_or_insert(pubkey);
                let before = book.held();
                let (records, releases) = (book.n_records, book.n_releases + book.n_expiries);
                book.absorbed += a;
                book.returned += r;
                book.n_records += 1;
                self.rebook(request_id, before);
                if records > 0 {
                    self.violate(Invariant::I5, Some(request_id), format!("recorded twice (again {a} absorbed)"));
                } else if releases > 0 {
                    self.violate(Invariant::I5, Some(request_id), "recorded after being released".to_owned());
                }
                self.absorb_into_window(pubkey, a, now);
                if a + r > before {
                    // Absorbed sats the pool never gave up for this request: granted now.
                    self.violate(
                        Invariant::I2,
                        Some(request_id),
                        format!("recorded {a} absorbed + {r} returned but the pool held only {before} sats for it"),
                    );
                    self.check_budget(request_id, pubkey, now, "absorbed beyond the reservation");
                }
            }
            Movement::Credit { payment_id, amount_sats } => {
                let a = amount_sats.to_i128();
                self.journal_pool += a;
                let bps = self.config.credit_bps;
                match self.payments.get_mut(&payment_id) {
                    Some((paid, credited)) if !*credited => {
                        *credited = true;
                        let due = paid.share_bps(bps).to_i128();
                        self.expected_in += due;
                        if a != due {
                            let paid = *paid;
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

    fn absorb_into_window(&mut self, pubkey: Pubkey, absorbed: i128, now: TimeMs) {
        if absorbed <= 0 {
            return;
        }
        if let Some(id) = self.identities.get_mut(&pubkey) {
            if now.since(id.window_start) >= DAY_MS {
                id.window_start = now;
                id.window_absorbed = absorbed;
            } else {
                id.window_absorbed += absorbed;
            }
        }
    }

    /// I4 at the moment sats are granted to `pubkey`.
    fn check_budget(&mut self, request_id: RequestId, pubkey: Pubkey, now: TimeMs, what: &str) {
        let Some(&id) = self.identities.get(&pubkey) else {
            self.violate(
                Invariant::I4,
                Some(request_id),
                format!("{what} sats to {pubkey:?}, an identity never created"),
            );
            return;
        };
        let tier = id.tier.expect("identities are created with a tier");
        let budget = self.config.budget(tier).to_i128();
        let absorbed = if now.since(id.window_start) >= DAY_MS { 0 } else { id.window_absorbed };
        if absorbed + id.outstanding > budget {
            self.violate(
                Invariant::I4,
                Some(request_id),
                format!(
                    "{pubkey:?} ({tier}, budget {budget}) {what}: window absorbed {absorbed} + reserved {} = {} > {budget}",
                    id.outstanding,
                    absorbed + id.outstanding
                ),
            );
        }
    }

    /// The caller finished a request: it let the user off `reduction` sats of the actual
    /// cost (the pool's share), and was told of `overrun` sats paid outside the pool.
    pub fn on_close(&mut self, request_id: RequestId, reduction: Sats, overrun: Sats) {
        let book = self.request(request_id);
        book.closed = true;
        let gave = book.debited - book.returned;
        let (reduction, overrun) = (reduction.to_i128(), overrun.to_i128());
        if reduction != gave + overrun {
            let more = if reduction > gave + overrun { "more than" } else { "less than" };
            self.violate(
                Invariant::I3,
                Some(request_id),
                format!(
                    "charge reduced by {reduction} sats, {more} the pool's net debit {gave} (debited {}, returned {}) + reported overrun {overrun}",
                    self.requests[&request_id].debited, self.requests[&request_id].returned
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
            .filter(|(_, b)| b.debited > 0 && (b.ends() == 0 || b.held() > 0))
            .map(|(r, b)| (*r, b.held(), b.ends()))
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
