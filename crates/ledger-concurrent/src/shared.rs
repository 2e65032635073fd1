//! [`SharedLedger`]: the reference semantics behind `&self`, for many threads at once.
//!
//! The state is split so that commands about different identities do not wait for each other:
//!
//! - identities and their requests live in `identity_shards`, chosen by a hash of the pubkey; a
//!   command about one identity holds that shard's lock for its whole duration, so everything the
//!   reference does to one identity in one step is one step here too;
//! - the pool is one atomic word ([`AtomicSats`]); a debit is a compare-and-swap that never takes
//!   the balance below zero;
//! - `request_owners` maps a request id to its pubkey, so `record` and `release`, which carry only
//!   the request id, find the shard; it also makes a request id unique across shards;
//! - processed payments live in `payment_shards`, chosen by the payment id.
//!
//! Lock order, which rules out deadlock: an identity shard, then a request-owner shard. `release`
//! and `record` read the owner and drop that lock before they take the identity shard. `credit`
//! takes one payment shard only. [`SharedLedger::totals`] takes every identity shard in index
//! order, then every payment shard, and no command holds a payment shard while it waits for
//! anything.
//!
//! Why this is linearizable to the reference: every pool movement happens while the moving command
//! holds the lock of the shard that books the other side of it (the identity shard for debits,
//! releases and records, a payment shard for credits). A command's outcome depends on its own
//! shard, which it holds, and on the pool, which it reads and changes in a single atomic step
//! (the successful or failing compare-and-swap). That step is the command's linearization point.

use std::collections::hash_map::Entry;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hash};

use ledger_core::rules;
use ledger_core::{
    Command, Config, Decision, Identity, Movement, Outcome, PaymentId, Pubkey, Refusal, RequestId, Sats, Tier, TimeMs,
    Totals,
};
use rustc_hash::{FxBuildHasher, FxHashMap};

#[cfg(feature = "mutants")]
use crate::mutants::SharedMutant;
use crate::pool::AtomicSats;
use crate::sync::{noise, Mutex, MutexGuard};

/// The default number of shards of each kind: enough that a few dozen threads rarely meet.
pub const DEFAULT_N_SHARDS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReservationState {
    Outstanding,
    Recorded { actual: Sats, absorbed: Sats, returned: Sats, overrun: Sats },
    Released,
    Expired,
}

#[derive(Clone, Copy, Debug)]
struct Reservation {
    amount: Sats,
    by_decide: bool,
    deadline: TimeMs,
    state: ReservationState,
}

#[derive(Clone, Debug)]
struct Request {
    pubkey: Pubkey,
    estimated: Sats,
    decision: Decision,
    reservation: Option<Reservation>,
    /// `(amount, available)` of each refused `reserve_partial`, as in the reference: a repeat of
    /// a refused command (a duplicate delivered late) is refused again, never succeeds after the
    /// caller re-quoted.
    refused: Vec<(Sats, Sats)>,
}

/// The identities of one shard, their requests, and this shard's part of the balance sheet.
#[derive(Debug, Default)]
struct IdentityShard {
    identities: FxHashMap<Pubkey, Identity>,
    requests: FxHashMap<RequestId, Request>,
    /// `(deadline, request)` of this shard's reservations; closed ones are skipped by `expire`.
    deadlines: BTreeSet<(TimeMs, RequestId)>,
    reserved_sats: Sats,
    absorbed_sats: Sats,
    n_grants: u64,
}

/// Processed payments of one shard: `payment -> (paid, credited)`.
type PaymentShard = FxHashMap<PaymentId, (Sats, Sats)>;

/// The ledger of `ledger-core`'s reference semantics, shared by many threads.
///
/// Every method takes `&self`; wrap it in an `Arc` to share it. Each command gives the outcome
/// the reference [`ledger_core::Ledger`] would give had the commands run one at a time in some
/// order consistent with real time; invariants I1-I6 hold at every instant [`SharedLedger::totals`]
/// can observe.
#[derive(Debug)]
pub struct SharedLedger {
    config: Config,
    pool: AtomicSats,
    /// Sum of credits; guarded by the payment shards (it changes only under one of them).
    credited: AtomicSats,
    /// Sum of overruns; changes only under an identity shard.
    overrun: AtomicSats,
    identity_shards: Box<[Mutex<IdentityShard>]>,
    request_owners: Box<[Mutex<FxHashMap<RequestId, Pubkey>>]>,
    payment_shards: Box<[Mutex<PaymentShard>]>,
    /// The deliberate bug this ledger runs, if any (only with the `mutants` feature).
    #[cfg(feature = "mutants")]
    mutant: Option<SharedMutant>,
}

impl SharedLedger {
    /// A ledger at genesis with [`DEFAULT_N_SHARDS`] shards of each kind.
    pub fn new(config: Config) -> SharedLedger {
        SharedLedger::with_shards(config, DEFAULT_N_SHARDS)
    }

    /// A ledger at genesis with `n_shards` shards of each kind (at least one).
    pub fn with_shards(config: Config, n_shards: usize) -> SharedLedger {
        let n_shards = n_shards.max(1);
        SharedLedger {
            config,
            pool: AtomicSats::new(config.pool_initial_sats),
            credited: AtomicSats::new(Sats::ZERO),
            overrun: AtomicSats::new(Sats::ZERO),
            identity_shards: (0..n_shards).map(|_| Mutex::default()).collect(),
            request_owners: (0..n_shards).map(|_| Mutex::default()).collect(),
            payment_shards: (0..n_shards).map(|_| Mutex::default()).collect(),
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }

    /// A ledger at genesis with `n_shards` shards of each kind that runs `mutant`, a deliberate
    /// concurrency bug (only with the `mutants` feature, for measuring the concurrent tests).
    #[cfg(feature = "mutants")]
    pub fn with_mutant(config: Config, n_shards: usize, mutant: SharedMutant) -> SharedLedger {
        SharedLedger { mutant: Some(mutant), ..SharedLedger::with_shards(config, n_shards) }
    }

    #[cfg(feature = "mutants")]
    fn runs(&self, mutant: SharedMutant) -> bool {
        self.mutant == Some(mutant)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pool balance at some instant (without stopping anyone).
    pub fn pool_sats(&self) -> Sats {
        self.pool.load()
    }

    /// An identity's standing.
    pub fn identity(&self, pubkey: &Pubkey) -> Option<Identity> {
        self.identity_shard(pubkey).identities.get(pubkey).copied()
    }

    /// A consistent balance sheet: stops every command for the time it takes to add it up.
    pub fn totals(&self) -> Totals {
        let identity_shards: Vec<_> = self.identity_shards.iter().map(lock).collect();
        let n_payment_shards = self.payment_shards.len();
        #[cfg(feature = "mutants")]
        let n_payment_shards = if self.runs(SharedMutant::TotalsWithoutPaymentShards) { 0 } else { n_payment_shards };
        let payment_shards: Vec<_> = self.payment_shards.iter().take(n_payment_shards).map(lock).collect();
        let mut totals = Totals {
            pool_sats: self.pool.load(),
            credited_sats: self.credited.load(),
            overrun_sats: self.overrun.load(),
            ..Totals::default()
        };
        for shard in &identity_shards {
            totals.reserved_sats = add(totals.reserved_sats, shard.reserved_sats);
            totals.absorbed_sats = add(totals.absorbed_sats, shard.absorbed_sats);
            totals.n_grants = totals.n_grants.checked_add(shard.n_grants).expect("< 2^64");
        }
        drop(payment_shards);
        totals
    }

    /// Number of requests ever decided.
    pub fn n_requests(&self) -> usize {
        self.identity_shards.iter().map(|shard| lock(shard).requests.len()).sum()
    }

    /// Apply `command` at `now`, appending every pool movement it makes to `journal`, as
    /// [`ledger_core::Ledger::apply`] does. A repeat of an earlier command returns the first
    /// outcome and appends nothing.
    pub fn apply(&self, command: &Command, now: TimeMs, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
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

    /// Which identity shard holds `pubkey`: identities in different shards never wait for each
    /// other's locks. Placement is deterministic (for tests and metrics).
    pub fn identity_shard_idx(&self, pubkey: &Pubkey) -> usize {
        shard_idx(pubkey, self.identity_shards.len())
    }

    fn identity_shard(&self, pubkey: &Pubkey) -> MutexGuard<'_, IdentityShard> {
        lock(&self.identity_shards[self.identity_shard_idx(pubkey)])
    }

    fn owner_shard(&self, request_id: RequestId) -> MutexGuard<'_, FxHashMap<RequestId, Pubkey>> {
        lock(&self.request_owners[shard_idx(&request_id, self.request_owners.len())])
    }

    fn owner_of(&self, request_id: RequestId) -> Option<Pubkey> {
        self.owner_shard(request_id).get(&request_id).copied()
    }

    /// Creates an identity with `tier`, or moves an existing one to `tier`.
    pub fn set_tier(&self, pubkey: Pubkey, tier: Tier, now: TimeMs) -> Outcome {
        let mut shard = self.identity_shard(&pubkey);
        match shard.identities.entry(pubkey) {
            Entry::Occupied(mut e) => {
                let previous = std::mem::replace(&mut e.get_mut().tier, tier);
                Outcome::TierSet { previous: Some(previous) }
            }
            Entry::Vacant(e) => {
                e.insert(Identity {
                    tier,
                    sats_absorbed_today: Sats::ZERO,
                    absorbed_reset_at: now,
                    reserved_sats: Sats::ZERO,
                });
                Outcome::TierSet { previous: None }
            }
        }
    }

    /// Free, partial or gate; a free answer debits the pool and reserves the estimate at once.
    pub fn decide(
        &self,
        request_id: RequestId,
        pubkey: Pubkey,
        estimated: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        let mut shard = self.identity_shard(&pubkey);
        if let Some(request) = shard.requests.get(&request_id) {
            if request.pubkey != pubkey {
                return Err(Refusal::ExistsWithDifferentPubkey);
            }
            if request.estimated != estimated {
                return Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: request.estimated });
            }
            return Ok(Outcome::Decided { decision: request.decision });
        }
        // Claim the id while holding the identity shard. A claim found here belongs to a request
        // of another shard: every request of this shard is in `shard.requests`, and this one is
        // not.
        match self.owner_shard(request_id).entry(request_id) {
            Entry::Occupied(_) => return Err(Refusal::ExistsWithDifferentPubkey),
            Entry::Vacant(e) => {
                e.insert(pubkey);
            }
        }
        // From here on the request is always stored: `release` may already have seen the claim.
        let decision = self.decision_and_debit(&shard, pubkey, estimated, now);
        let reservation = match decision {
            Decision::Free { reserved_sats } => {
                book_debit(&mut shard, request_id, pubkey, reserved_sats, journal);
                Some(self.reservation(&mut shard, request_id, reserved_sats, true, now))
            }
            Decision::Partial { .. } | Decision::Gate { .. } => None,
        };
        shard.requests.insert(request_id, Request { pubkey, estimated, decision, reservation, refused: Vec::new() });
        Ok(Outcome::Decided { decision })
    }

    /// The reference's `decision_for`, with the pool debited in the same atomic step when the
    /// answer is free. The caller books the debit.
    fn decision_and_debit(&self, shard: &IdentityShard, pubkey: Pubkey, estimated: Sats, now: TimeMs) -> Decision {
        let standing = shard.identities.get(&pubkey).map(|identity| {
            let budget = self.config.budget(identity.tier);
            rules::Standing { budget, remaining: move || identity.daily_remaining(budget, now) }
        });
        let remaining = match rules::admit(estimated, standing) {
            Ok(remaining) => remaining,
            Err(reason) => return Decision::Gate { reason, charge_sats: estimated },
        };
        // The free answer's debit is the pool's compare-and-swap; when it cannot be free, the
        // answer follows from the pool seen by the failed swap.
        let debit = self.debit_pool(|pool| if remaining >= estimated { pool.checked_sub(estimated) } else { None });
        match debit {
            Ok(_) => Decision::Free { reserved_sats: estimated },
            Err(pool) => rules::offer(estimated, remaining, pool),
        }
    }

    /// Reserves exactly `amount` for a partial request, or nothing.
    pub fn reserve_partial(
        &self,
        request_id: RequestId,
        pubkey: Pubkey,
        amount: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        let mut shard = self.identity_shard(&pubkey);
        let Some(request) = shard.requests.get(&request_id) else {
            return Err(match self.owner_of(request_id) {
                Some(_) => Refusal::ExistsWithDifferentPubkey,
                None => Refusal::UnknownRequest,
            });
        };
        if request.pubkey != pubkey {
            return Err(Refusal::ExistsWithDifferentPubkey);
        }
        if let Some(r) = request.reservation {
            return if !r.by_decide && r.amount == amount {
                Ok(Outcome::Reserved { reserved_sats: amount })
            } else {
                Err(Refusal::ReservationExists { reserved_sats: r.amount })
            };
        }
        if amount.is_zero() {
            return Err(Refusal::ZeroAmount);
        }
        if amount > request.estimated {
            return Err(Refusal::AmountAboveEstimate { estimated_sats: request.estimated });
        }
        if let Some(&(_, available_sats)) = request.refused.iter().find(|(a, _)| *a == amount) {
            return Err(Refusal::InsufficientFunds { available_sats });
        }
        let identity = shard.identities.get(&pubkey).ok_or(Refusal::UnknownIdentity)?;
        let remaining = identity.daily_remaining(self.config.budget(identity.tier), now);
        #[cfg(feature = "mutants")]
        let remaining = if self.runs(SharedMutant::PartialIgnoresReservations) {
            rules::daily_remaining(self.config.budget(identity.tier), identity.absorbed_in_window(now), Sats::ZERO)
        } else {
            remaining
        };
        let debit =
            if amount > remaining { Err(self.pool.load()) } else { self.debit_pool(|pool| pool.checked_sub(amount)) };
        if let Err(pool) = debit {
            let available = remaining.min(pool);
            let request = shard.requests.get_mut(&request_id).expect("looked up above");
            request.refused.push((amount, available));
            return Err(Refusal::InsufficientFunds { available_sats: available });
        }
        book_debit(&mut shard, request_id, pubkey, amount, journal);
        let reservation = self.reservation(&mut shard, request_id, amount, false, now);
        shard.requests.get_mut(&request_id).expect("looked up above").reservation = Some(reservation);
        Ok(Outcome::Reserved { reserved_sats: amount })
    }

    fn reservation(
        &self,
        shard: &mut IdentityShard,
        request_id: RequestId,
        amount: Sats,
        by_decide: bool,
        now: TimeMs,
    ) -> Reservation {
        let deadline = now.plus_ms(self.config.reservation_ttl_ms);
        shard.deadlines.insert((deadline, request_id));
        Reservation { amount, by_decide, deadline, state: ReservationState::Outstanding }
    }

    /// Returns an outstanding reservation to the pool, once.
    pub fn release(&self, request_id: RequestId, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
        let pubkey = self.owner_of(request_id).ok_or(Refusal::UnknownRequest)?;
        let mut shard = self.identity_shard(&pubkey);
        let request =
            shard.requests.get(&request_id).expect("a claimed request is stored before its shard is unlocked");
        let r = request.reservation.ok_or(Refusal::NotReserved)?;
        match r.state {
            ReservationState::Outstanding => {}
            ReservationState::Released => return Ok(Outcome::Released { returned_sats: r.amount }),
            ReservationState::Recorded { .. } => return Err(Refusal::AlreadyRecorded),
            ReservationState::Expired => return Err(Refusal::ReservationExpired),
        }
        #[cfg(feature = "mutants")]
        if self.runs(SharedMutant::ReleaseChecksThenRelocks) {
            drop(shard);
            shard = self.identity_shard(&pubkey);
        }
        self.close(&mut shard, pubkey, r.amount, r.amount);
        set_state(&mut shard, request_id, ReservationState::Released);
        journal.push(Movement::Release { request_id, amount_sats: r.amount });
        Ok(Outcome::Released { returned_sats: r.amount })
    }

    /// Commits a reservation against the actual cost.
    pub fn record(
        &self,
        request_id: RequestId,
        actual: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, Refusal> {
        let pubkey = self.owner_of(request_id).ok_or(Refusal::UnknownRequest)?;
        let mut shard = self.identity_shard(&pubkey);
        let request =
            shard.requests.get(&request_id).expect("a claimed request is stored before its shard is unlocked");
        let r = request.reservation.ok_or(Refusal::NotReserved)?;
        match r.state {
            ReservationState::Outstanding => {}
            ReservationState::Recorded { actual: first, absorbed, returned, overrun } => {
                return if first == actual {
                    Ok(Outcome::Recorded { absorbed_sats: absorbed, returned_sats: returned, overrun_sats: overrun })
                } else {
                    Err(Refusal::RecordedWithDifferentAmount { actual_sats: first })
                };
            }
            ReservationState::Released => return Err(Refusal::AlreadyReleased),
            ReservationState::Expired => return Err(Refusal::ReservationExpired),
        }
        let rules::Settlement { absorbed, returned, overrun } = rules::settle(r.amount, actual);
        if !overrun.is_zero() {
            // The only refusal that can happen here, so it goes first: nothing else has moved.
            self.overrun.credit(overrun).map_err(|_| Refusal::Overflow)?;
        }
        self.close(&mut shard, pubkey, r.amount, returned);
        shard.absorbed_sats = add(shard.absorbed_sats, absorbed);
        shard.n_grants = shard.n_grants.checked_add(1).expect("fewer than 2^64 grants");
        if !absorbed.is_zero() {
            // The seed's CASE: the first absorption after the window ran out starts a new one.
            let identity = shard.identities.get_mut(&pubkey).expect("reservation of a known identity");
            (identity.sats_absorbed_today, identity.absorbed_reset_at) = rules::absorb(
                identity.sats_absorbed_today,
                identity.absorbed_reset_at,
                absorbed,
                now,
                rules::WINDOW_MS,
            )
            .expect("absorption is bounded by the pool");
        }
        set_state(&mut shard, request_id, ReservationState::Recorded { actual, absorbed, returned, overrun });
        journal.push(Movement::Record { request_id, pubkey, absorbed_sats: absorbed, returned_sats: returned });
        Ok(Outcome::Recorded { absorbed_sats: absorbed, returned_sats: returned, overrun_sats: overrun })
    }

    /// Replaces the pool `b` by `next(b)` in one atomic step, or leaves it alone when `next`
    /// answers `None`: the debit of `decide` and `reserve_partial` ([`AtomicSats::update`]).
    fn debit_pool(&self, next: impl Fn(Sats) -> Option<Sats>) -> Result<Sats, Sats> {
        #[cfg(feature = "mutants")]
        match self.mutant {
            Some(SharedMutant::DebitLoadThenStore) => return self.pool.update_by_load_then_store(next),
            Some(SharedMutant::DebitCheckThenSubtract) => return self.pool.update_by_check_then_subtract(next),
            _ => {}
        }
        self.pool.update(next)
    }

    /// Closes an outstanding reservation: it leaves the identity's and the shard's outstanding
    /// sums, and `returned` goes back to the pool.
    fn close(&self, shard: &mut IdentityShard, pubkey: Pubkey, amount: Sats, returned: Sats) {
        let identity = shard.identities.get_mut(&pubkey).expect("reservation of a known identity");
        identity.reserved_sats = identity.reserved_sats.checked_sub(amount).expect("identity holds the reservation");
        shard.reserved_sats = shard.reserved_sats.checked_sub(amount).expect("shard holds the reservation");
        if !returned.is_zero() {
            self.pool.give_back(returned);
        }
    }

    /// Credits the pool with its share of a paid invoice, once per payment.
    pub fn credit(&self, payment_id: PaymentId, paid: Sats, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
        let shard_idx = shard_idx(&payment_id, self.payment_shards.len());
        let mut payments = lock(&self.payment_shards[shard_idx]);
        if let Some(&(first_paid, credited)) = payments.get(&payment_id) {
            return if first_paid == paid {
                Ok(Outcome::Credited { credited_sats: credited })
            } else {
                Err(Refusal::PaymentWithDifferentAmount { paid_sats: first_paid })
            };
        }
        let credited = paid.share_bps(self.config.credit_bps);
        // As the reference: genesis plus every credit must fit, so reserved sats can always
        // come back to the pool.
        let initial = self.config.pool_initial_sats;
        self.credited
            .update(|total| total.checked_add(credited).filter(|t| rules::credit_fits(initial, *t)))
            .map_err(|_| Refusal::Overflow)?;
        if self.pool.credit(credited).is_err() {
            // Undo the total; nobody has seen it, `totals` needs this payment shard.
            self.credited.debit(credited).expect("the total was raised by this amount just above");
            return Err(Refusal::Overflow);
        }
        payments.insert(payment_id, (paid, credited));
        journal.push(Movement::Credit { payment_id, amount_sats: credited });
        Ok(Outcome::Credited { credited_sats: credited })
    }

    /// Releases every reservation whose deadline has passed, shard by shard; the outcome lists
    /// them in `(deadline, request)` order, as the reference does.
    pub fn expire(&self, now: TimeMs, journal: &mut Vec<Movement>) -> Outcome {
        let mut released = Vec::new();
        for shard in self.identity_shards.iter() {
            let mut shard = lock(shard);
            while let Some(&(deadline, request_id)) = shard.deadlines.first() {
                if deadline >= now {
                    break;
                }
                shard.deadlines.pop_first();
                let request = &shard.requests[&request_id];
                let r = request.reservation.expect("deadline of a reservation");
                if r.state != ReservationState::Outstanding || r.deadline != deadline {
                    continue;
                }
                let pubkey = request.pubkey;
                self.close(&mut shard, pubkey, r.amount, r.amount);
                set_state(&mut shard, request_id, ReservationState::Expired);
                released.push((deadline, request_id, r.amount));
            }
        }
        released.sort_unstable();
        journal.extend(
            released.iter().map(|&(_, request_id, amount)| Movement::Expire { request_id, amount_sats: amount }),
        );
        Outcome::Expired {
            released: released.into_iter().map(|(_, request_id, amount)| (request_id, amount)).collect(),
        }
    }
}

/// Books a debit the pool already made: the reservation joins the identity's and the shard's
/// outstanding sums.
fn book_debit(
    shard: &mut IdentityShard,
    request_id: RequestId,
    pubkey: Pubkey,
    amount: Sats,
    journal: &mut Vec<Movement>,
) {
    shard.reserved_sats = add(shard.reserved_sats, amount);
    let identity = shard.identities.get_mut(&pubkey).expect("debit for a known identity");
    identity.reserved_sats = add(identity.reserved_sats, amount);
    journal.push(Movement::Debit { request_id, pubkey, amount_sats: amount });
}

fn set_state(shard: &mut IdentityShard, request_id: RequestId, state: ReservationState) {
    shard.requests.get_mut(&request_id).expect("known request").reservation.as_mut().expect("reserved request").state =
        state;
}

/// Sum of amounts that all came out of the pool, so bounded by what it ever held.
fn add(a: Sats, b: Sats) -> Sats {
    a.checked_add(b).expect("bounded by the pool")
}

fn shard_idx(key: &impl Hash, n_shards: usize) -> usize {
    // Fx is deterministic (no random seed), so a run places keys the same way every time.
    let hash = FxBuildHasher.hash_one(key);
    // The high bits of an Fx hash are the well-mixed ones.
    usize::try_from(hash >> 32).expect("32 bits fit a usize") % n_shards
}

/// Locks `mutex`. A panic while holding a shard is a broken assertion; it poisons nothing we
/// could trust afterwards, so it propagates.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    noise::point();
    mutex.lock().expect("a thread panicked while holding a ledger lock")
}
