//! The seed model: `free-tier.ts` ported statement by statement, flaws included.
//!
//! Every `await` on the database in the TypeScript is one atomic step here, and an operation
//! in flight is a value ([`SeedOp`]) that remembers what the TypeScript had in local
//! variables between awaits. A transaction (`_atomicPoolDebit`, `recordGrant`) is one step:
//! Postgres runs it atomically, and its row lock is held for all of it.
//!
//! What the port keeps on purpose, because the harness exists to find it:
//! - `decide` reads the pool outside the lock and then debits `min(requested, balance)`;
//!   a short debit is still answered `free` with charge 0.
//! - The daily budget is read in `decide`/`reservePartialGrant` and written only in
//!   `recordGrant`: outstanding reservations do not count.
//! - `reservePartialGrant` may debit less than asked and the caller proceeds with it.
//! - `recordGrant` records `actualAbsorbed` uncapped by the reservation.
//! - No command is idempotent: a duplicate delivery runs again.
//! - The pool row is created on first use: by `getPoolBalance` or `_atomicPoolDebit` with
//!   `POOL_INITIAL_SATS`, but by `credit`'s upsert with only the credit.
//! - `releaseReservation` and the over-reservation refund update a row that may not exist.
//! - The pool is text cast with `value::int`: above `i32::MAX` the statement fails.
//! - `credit` computes `Math.floor(paid * POOL_CREDIT_PCT / 100)` in floating point.
//!
//! Choices the port had to make (marked `PORT:` in the code):
//! - The environment is read through [`Config`], which refuses malformed values where the
//!   seed's `envInt` silently falls back to the default.
//! - `getIdentityWithDecay` is a plain read of the identity row; decay and growth of trust
//!   are [`Call::SetTier`] steps that the simulator interleaves.
//! - Amounts are `i64` where the TypeScript has `number`; the simulator's amounts are far
//!   below 2^53, where the two agree.

use rustc_hash::FxHashMap;

use ledger_core::{
    Config, Decision, GateReason, Movement, Outcome, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, DAY_MS,
};

use crate::engine::{Call, Engine, Observed, Reply};

/// A row of `nostr_identities`, as far as the free tier reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedIdentity {
    /// `tier`.
    pub tier: Tier,
    /// `sats_absorbed_today` (an `integer` column).
    pub sats_absorbed_today: i64,
    /// `absorbed_reset_at`.
    pub absorbed_reset_at: TimeMs,
}

/// The seed's database: `timmy_config`'s pool row, `nostr_identities`, `free_tier_grants`.
#[derive(Clone, Debug)]
pub struct SeedEngine {
    config: Config,
    /// `timmy_config.value` for `generosity_pool_sats`; `None` until the row is created.
    pool_row: Option<i64>,
    identities: FxHashMap<Pubkey, SeedIdentity>,
    granted_sats: i128,
    n_grants: u64,
}

/// Where a seed call stands between awaits.
#[derive(Clone, Debug)]
pub enum SeedOp {
    /// `decide(pubkey, estimatedSats)`.
    Decide {
        /// The call's request (the seed does not use it; movements are tagged with it).
        request_id: RequestId,
        /// The user.
        pubkey: Pubkey,
        /// `estimatedSats`.
        estimated: i64,
        /// The next await.
        stage: DecideStage,
    },
    /// `reservePartialGrant(requestedAbsorbSats, pubkey)`.
    ReservePartial {
        /// Tag for movements.
        request_id: RequestId,
        /// The user.
        pubkey: Pubkey,
        /// `requestedAbsorbSats`.
        requested: i64,
        /// `canAbsorb` once the identity was read.
        can_absorb: Option<i64>,
    },
    /// A call that is a single statement or transaction.
    Single(Call),
}

/// The awaits of `decide`, in order.
#[derive(Clone, Copy, Debug)]
pub enum DecideStage {
    /// `await trustService.getIdentityWithDecay(pubkey)`.
    ReadIdentity,
    /// `await this.getPoolBalance()`: the select.
    ReadPool {
        /// `dailyRemaining`.
        remaining: i64,
    },
    /// `getPoolBalance()`'s first-boot insert.
    SeedPool {
        /// `dailyRemaining`.
        remaining: i64,
    },
    /// `await this._atomicPoolDebit(canAbsorb)`.
    Debit {
        /// `canAbsorb`.
        can_absorb: i64,
    },
}

/// A statement failed, as Postgres would fail it.
#[derive(Debug)]
struct DbError(&'static str);

impl SeedEngine {
    /// The seed's database before first boot: no pool row yet.
    pub fn new(config: Config) -> SeedEngine {
        SeedEngine { config, pool_row: None, identities: FxHashMap::default(), granted_sats: 0, n_grants: 0 }
    }

    /// The pool row's value, `None` before it exists.
    pub fn pool_row(&self) -> Option<i64> {
        self.pool_row
    }

    /// An identity row.
    pub fn identity(&self, pubkey: &Pubkey) -> Option<SeedIdentity> {
        self.identities.get(pubkey).copied()
    }

    fn pool_initial(&self) -> i64 {
        to_i64(self.config.pool_initial_sats)
    }

    /// `dailyBudgetForTier(tier)`.
    fn daily_budget(&self, tier: Tier) -> i64 {
        to_i64(self.config.budget(tier))
    }

    /// The daily remaining as `decide` and `reservePartialGrant` compute it from a read row.
    fn remaining_of(&self, identity: &SeedIdentity, now: TimeMs) -> i64 {
        let budget = self.daily_budget(identity.tier);
        let today_absorbed =
            if now.since(identity.absorbed_reset_at) >= DAY_MS { 0 } else { identity.sats_absorbed_today };
        (budget - today_absorbed).max(0)
    }

    /// `SELECT value::int ...`: the cast fails outside `integer`.
    fn pool_as_int(&self) -> Result<Option<i64>, DbError> {
        match self.pool_row {
            Some(v) if i32::try_from(v).is_err() => Err(DbError("integer out of range")),
            other => Ok(other),
        }
    }

    /// `(value::int + n)::text`: the new value, `None` when there is no row to update.
    fn pool_plus(&self, n: i64) -> Result<Option<i64>, DbError> {
        let Some(v) = self.pool_as_int()? else {
            return Ok(None);
        };
        let out_of_range = || DbError("integer out of range");
        let n = i32::try_from(n).map_err(|_| out_of_range())?;
        let v = i32::try_from(v).map_err(|_| out_of_range())?;
        Ok(Some(i64::from(v.checked_add(n).ok_or_else(out_of_range)?)))
    }

    /// `UPDATE timmy_config SET value = (value::int + n)::text WHERE key = POOL_KEY`.
    /// Returns whether a row was updated.
    fn pool_add(&mut self, n: i64) -> Result<bool, DbError> {
        let new_value = self.pool_plus(n)?;
        if new_value.is_some() {
            self.pool_row = new_value;
        }
        Ok(new_value.is_some())
    }

    /// `_atomicPoolDebit(requestedSats)`: one transaction.
    fn atomic_pool_debit(&mut self, requested: i64) -> Result<i64, DbError> {
        if requested <= 0 {
            return Ok(0);
        }
        // INSERT ... ON CONFLICT DO NOTHING: ensure the pool row exists.
        if self.pool_row.is_none() {
            self.pool_row = Some(self.pool_initial());
        }
        // SELECT value::int AS balance ... FOR UPDATE
        let balance = self.pool_as_int()?.unwrap_or(0);
        if balance <= 0 {
            return Ok(0);
        }
        let actual = requested.min(balance);
        self.pool_row = Some(balance - actual);
        Ok(actual)
    }

    fn step_decide(
        &mut self,
        request_id: RequestId,
        pubkey: Pubkey,
        estimated: i64,
        stage: &mut DecideStage,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Option<Decision>, DbError> {
        let gate = |reason| Decision::Gate { reason, charge_sats: from_i64(estimated) };
        match *stage {
            DecideStage::ReadIdentity => {
                if estimated <= 0 {
                    return Ok(Some(gate(GateReason::ZeroEstimate)));
                }
                let Some(identity) = self.identities.get(&pubkey).copied() else {
                    return Ok(Some(gate(GateReason::UnknownIdentity)));
                };
                if self.daily_budget(identity.tier) == 0 {
                    return Ok(Some(gate(GateReason::ZeroBudget)));
                }
                let remaining = self.remaining_of(&identity, now);
                if remaining == 0 {
                    return Ok(Some(gate(GateReason::DailyBudgetExhausted)));
                }
                *stage = DecideStage::ReadPool { remaining };
                Ok(None)
            }
            DecideStage::ReadPool { remaining } => match self.pool_row {
                // parseInt(rows[0].value, 10) || 0
                Some(balance) => Ok(self.after_pool_read(remaining, balance, estimated, stage)),
                None => {
                    *stage = DecideStage::SeedPool { remaining };
                    Ok(None)
                }
            },
            DecideStage::SeedPool { remaining } => {
                // First boot: INSERT ... ON CONFLICT DO NOTHING, then return POOL_INITIAL_SATS
                // whatever the row holds now.
                if self.pool_row.is_none() {
                    self.pool_row = Some(self.pool_initial());
                }
                let balance = self.pool_initial();
                Ok(self.after_pool_read(remaining, balance, estimated, stage))
            }
            DecideStage::Debit { can_absorb } => {
                let debited = self.atomic_pool_debit(can_absorb)?;
                if debited <= 0 {
                    return Ok(Some(gate(GateReason::PoolEmpty)));
                }
                journal.push(Movement::Debit { request_id, pubkey, amount_sats: from_i64(debited) });
                // The seed answers free with charge 0 even when it debited less than asked.
                Ok(Some(Decision::Free { reserved_sats: from_i64(debited) }))
            }
        }
    }

    /// The synchronous part of `decide` after `getPoolBalance()` returned `balance`.
    fn after_pool_read(
        &self,
        remaining: i64,
        balance: i64,
        estimated: i64,
        stage: &mut DecideStage,
    ) -> Option<Decision> {
        if balance <= 0 {
            return Some(Decision::Gate { reason: GateReason::PoolEmpty, charge_sats: from_i64(estimated) });
        }
        let can_absorb = remaining.min(balance).min(estimated);
        if can_absorb <= 0 {
            return Some(Decision::Gate { reason: GateReason::PoolEmpty, charge_sats: from_i64(estimated) });
        }
        if can_absorb >= estimated {
            *stage = DecideStage::Debit { can_absorb };
            return None;
        }
        Some(Decision::Partial { offer_sats: from_i64(can_absorb), charge_sats: from_i64(estimated - can_absorb) })
    }

    fn step_single(&mut self, call: &Call, now: TimeMs, journal: &mut Vec<Movement>) -> Result<Outcome, DbError> {
        match *call {
            Call::SetTier { pubkey, tier } => {
                // PORT: the trust service's upsert; a new identity starts its window now.
                let previous = self.identities.get(&pubkey).map(|i| i.tier);
                self.identities.entry(pubkey).and_modify(|i| i.tier = tier).or_insert(SeedIdentity {
                    tier,
                    sats_absorbed_today: 0,
                    absorbed_reset_at: now,
                });
                Ok(Outcome::TierSet { previous })
            }
            Call::Release { request_id, amount_sats } => {
                let n = to_i64(amount_sats);
                if n <= 0 {
                    return Ok(Outcome::Released { returned_sats: Sats::ZERO });
                }
                if self.pool_add(n)? {
                    journal.push(Movement::Release { request_id, amount_sats });
                    Ok(Outcome::Released { returned_sats: amount_sats })
                } else {
                    Ok(Outcome::Released { returned_sats: Sats::ZERO })
                }
            }
            Call::Credit { payment_id, paid_sats } => self.credit(payment_id, paid_sats, journal),
            Call::Record { request_id, pubkey, actual_sats, reserved_sats } => {
                self.record_grant(request_id, pubkey, actual_sats, reserved_sats, now, journal)
            }
            // The seed has no expiry: a crashed worker's reservation is never returned.
            Call::Expire => Ok(Outcome::Expired { released: Vec::new() }),
            Call::Decide { .. } | Call::ReservePartial { .. } => {
                unreachable!("multi-step calls have their own ops")
            }
        }
    }

    /// `credit(paidSats)`: the upsert.
    fn credit(&mut self, payment_id: PaymentId, paid: Sats, journal: &mut Vec<Movement>) -> Result<Outcome, DbError> {
        let paid = to_i64(paid);
        if paid <= 0 {
            return Ok(Outcome::Credited { credited_sats: Sats::ZERO });
        }
        // Math.floor(paidSats * POOL_CREDIT_PCT / 100), in doubles as JavaScript does it.
        let pct = f64::from(self.config.credit_bps.to_u16()) / 100.0;
        let credit = (paid as f64 * pct / 100.0).floor() as i64;
        if credit <= 0 {
            return Ok(Outcome::Credited { credited_sats: Sats::ZERO });
        }
        match self.pool_row {
            // INSERT ... VALUES (String(creditSats)): the first write wins, and it is not genesis.
            None => self.pool_row = Some(credit),
            // ON CONFLICT DO UPDATE SET value = (timmy_config.value::int + creditSats)::text
            Some(_) => {
                self.pool_add(credit)?;
            }
        }
        journal.push(Movement::Credit { payment_id, amount_sats: from_i64(credit) });
        Ok(Outcome::Credited { credited_sats: from_i64(credit) })
    }

    /// `recordGrant(pubkey, requestHash, actualAbsorbed, reservedAbsorbed)`: one transaction.
    fn record_grant(
        &mut self,
        request_id: RequestId,
        pubkey: Pubkey,
        actual: Sats,
        reserved: Sats,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, DbError> {
        let to_record = to_i64(actual).max(0);
        let over_reserved = (to_i64(reserved) - to_record).max(0);
        let nothing =
            Outcome::Recorded { absorbed_sats: Sats::ZERO, returned_sats: Sats::ZERO, overrun_sats: Sats::ZERO };
        if to_record <= 0 && over_reserved <= 0 {
            return Ok(nothing);
        }
        // The transaction: the only statement that can fail is the pool update, so it is
        // computed first and nothing is written unless it succeeds.
        let new_pool = if over_reserved > 0 { self.pool_plus(over_reserved)? } else { None };
        let mut returned = 0;
        if let Some(v) = new_pool {
            self.pool_row = Some(v);
            returned = over_reserved;
        }
        if to_record > 0 {
            if let Some(identity) = self.identities.get_mut(&pubkey) {
                // The CASE: a new window starts at the first absorption after 24 h.
                if now.since(identity.absorbed_reset_at) >= DAY_MS {
                    identity.sats_absorbed_today = to_record;
                    identity.absorbed_reset_at = now;
                } else {
                    identity.sats_absorbed_today += to_record;
                }
            }
            // SELECT the pool for pool_balance_after, then INSERT INTO free_tier_grants.
            self.granted_sats += i128::from(to_record);
            self.n_grants += 1;
        }
        journal.push(Movement::Record {
            request_id,
            pubkey,
            absorbed_sats: from_i64(to_record),
            returned_sats: from_i64(returned),
        });
        Ok(Outcome::Recorded {
            absorbed_sats: from_i64(to_record),
            returned_sats: from_i64(returned),
            overrun_sats: Sats::ZERO,
        })
    }
}

fn to_i64(s: Sats) -> i64 {
    i64::try_from(s.to_u64()).expect("Sats::MAX fits i64")
}

fn from_i64(v: i64) -> Sats {
    Sats::new(u64::try_from(v).expect("seed amounts handed out are positive")).expect("fits")
}

impl Engine for SeedEngine {
    type Op = SeedOp;

    fn name(&self) -> &'static str {
        "seed"
    }

    fn speaks_reference_api(&self) -> bool {
        false
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn begin(&mut self, call: &Call) -> SeedOp {
        match *call {
            Call::Decide { request_id, pubkey, estimated_sats } => SeedOp::Decide {
                request_id,
                pubkey,
                estimated: to_i64(estimated_sats),
                stage: DecideStage::ReadIdentity,
            },
            Call::ReservePartial { request_id, pubkey, amount_sats } => {
                SeedOp::ReservePartial { request_id, pubkey, requested: to_i64(amount_sats), can_absorb: None }
            }
            ref other => SeedOp::Single(other.clone()),
        }
    }

    fn step(&mut self, op: &mut SeedOp, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        let result = match op {
            SeedOp::Decide { request_id, pubkey, estimated, stage } => self
                .step_decide(*request_id, *pubkey, *estimated, stage, now, journal)
                .map(|d| d.map(|decision| Outcome::Decided { decision })),
            SeedOp::ReservePartial { request_id, pubkey, requested, can_absorb } => match *can_absorb {
                None => {
                    // `if (requestedAbsorbSats <= 0) return 0;` then the identity read.
                    let identity = self.identities.get(pubkey).copied();
                    match identity {
                        Some(identity) if *requested > 0 => {
                            let can = (*requested).min(self.remaining_of(&identity, now));
                            if can <= 0 {
                                Ok(Some(Outcome::Reserved { reserved_sats: Sats::ZERO }))
                            } else {
                                *can_absorb = Some(can);
                                Ok(None)
                            }
                        }
                        _ => Ok(Some(Outcome::Reserved { reserved_sats: Sats::ZERO })),
                    }
                }
                Some(can) => self.atomic_pool_debit(can).map(|debited| {
                    if debited > 0 {
                        journal.push(Movement::Debit {
                            request_id: *request_id,
                            pubkey: *pubkey,
                            amount_sats: from_i64(debited),
                        });
                    }
                    Some(Outcome::Reserved { reserved_sats: from_i64(debited) })
                }),
            },
            SeedOp::Single(call) => self.step_single(call, now, journal).map(Some),
        };
        match result {
            Ok(Some(outcome)) => Some(Reply::Ok(outcome)),
            Ok(None) => None,
            Err(DbError(error)) => Some(Reply::Failed { error: error.to_owned() }),
        }
    }

    fn observe(&self) -> Observed {
        Observed {
            // Before first boot the pool is what getPoolBalance() would answer.
            pool_sats: i128::from(self.pool_row.unwrap_or_else(|| self.pool_initial())),
            reserved_sats: None,
            granted_sats: self.granted_sats,
            n_grants: self.n_grants,
        }
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        let identity = self.identities.get(pubkey)?;
        Sats::new(u64::try_from(self.remaining_of(identity, now)).ok()?).ok()
    }
}
