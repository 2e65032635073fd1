//! The reference semantics on PostgreSQL: one statement per command.
//!
//! Each [`Command`] is one call of a server-side function, `sql/functions/ledger_<command>.sql`
//! (`ledger_decide.sql`, `ledger_record.sql`, ...), run as its own transaction. A repeat by id
//! answers as the first call did and changes nothing, so a retry after a lost acknowledgement
//! is safe; serialization failures and deadlocks are retried here.
//!
//! The pool is striped over several rows (`pool_stripes` in `sql/reference_schema.sql`, which
//! gives the argument; the helpers are `sql/functions/ledger_pool_*.sql`): a debit takes its
//! request's home stripe alone when that stripe covers it, and otherwise locks every stripe,
//! answers from their exact sum and evens them out, so outcomes are the reference engine's
//! while concurrent requests rarely wait on one another. `pool` is a view of the sums.

use ledger_core::{
    Command, Config, Decision, GateReason, Movement, Outcome, Pubkey, Refusal, RequestId, Sats, Tier, TimeMs,
};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

/// An adapter failure: the database, or a value the reference schema cannot hold.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database failed (after retries, where retrying is safe).
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// An id or time above `i64::MAX`, which a `BIGINT` cannot hold.
    #[error("{what} {value} does not fit a BIGINT")]
    TooLarge {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The server answered something this adapter does not know (a schema mismatch).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// How many times a serialization failure or deadlock is retried before it is reported.
pub const MAX_RETRIES: u32 = 20;

pub(crate) fn bigint(what: &'static str, value: u64) -> Result<i64, PgError> {
    i64::try_from(value).map_err(|_| PgError::TooLarge { what, value })
}

pub(crate) fn sats_arg(s: Sats) -> i64 {
    // Sats::MAX is i64::MAX, asserted at compile time in ledger-core.
    i64::try_from(s.to_u64()).expect("Sats fit a BIGINT")
}

fn sats_of(v: Option<i64>) -> Result<Sats, PgError> {
    let v = v.ok_or_else(|| PgError::Protocol("missing amount".into()))?;
    u64::try_from(v)
        .ok()
        .and_then(|v| Sats::new(v).ok())
        .ok_or_else(|| PgError::Protocol(format!("amount {v} out of range")))
}

/// True for the errors of a connection the server ended (operator intervention, class 57: a
/// terminated backend, a shutdown) or lost (class 08), and for every error that is not the
/// server's answer (the socket, the pool, TLS, the protocol).
pub fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("57") || c.starts_with("08")),
        _ => true,
    }
}

/// How a lockstep engine's failed reply begins when the connection was lost rather than the
/// command refused by the server: a lockstep run cannot go on across that.
pub const CONNECTION_LOST: &str = "connection lost: ";

/// The failed reply for `e`, marked with [`CONNECTION_LOST`] when it is one.
pub fn failed_reply(e: &PgError) -> String {
    match e {
        PgError::Sql(sql) if is_connection_lost(sql) => format!("{CONNECTION_LOST}{e}"),
        _ => e.to_string(),
    }
}

/// True for errors after which running the same statement again is the right thing to do.
pub fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

/// True for an error the SQL functions themselves raised: the implementation's error, not
/// the database's trouble (see [`is_raised_by_the_sql_code`]). Neither retried nor a sign of
/// an outage.
pub fn is_raised_by_the_sql(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|code| is_raised_by_the_sql_code(&code)))
}

/// Whether SQLSTATE `code` is an error of the SQL functions themselves: a data exception (22),
/// a broken constraint (23), a syntax error or undefined object (42), an exception a function
/// raised (P0) or one of the schema's own codes (LD). Not a lost connection or a server going
/// down (08, 57, [`is_connection_lost`]), not too many connections (53), not a serialization
/// failure or deadlock (40, [`is_retryable`]), not an aborted transaction (25, the consequence
/// of another error).
pub fn is_raised_by_the_sql_code(code: &str) -> bool {
    ["22", "23", "42", "P0", "LD"].iter().any(|class| code.starts_with(class))
}

/// Writes the rules and the pool's genesis balance. Idempotent for the same `config`.
pub async fn genesis<'e>(db: impl PgExecutor<'e>, config: &Config, now: TimeMs) -> Result<(), PgError> {
    let b = &config.budget_sats;
    sqlx::query("SELECT ledger_genesis($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(sats_arg(b.new))
        .bind(sats_arg(b.established))
        .bind(sats_arg(b.trusted))
        .bind(sats_arg(b.elite))
        .bind(sats_arg(config.pool_initial_sats))
        .bind(i32::from(config.credit_bps.to_u16()))
        .bind(bigint("reservation_ttl_ms", config.reservation_ttl_ms)?)
        .bind(bigint("now", now.0)?)
        .execute(db)
        .await?;
    Ok(())
}

/// What a command did on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The outcome, or the refusal (nothing changed).
    pub result: Result<Outcome, Refusal>,
    /// True when this call made the change; false for an idempotent repeat or a refusal.
    pub fresh: bool,
    /// The pool movements this call made (empty unless `fresh`).
    pub movements: Vec<Movement>,
}

/// The totals of the pool row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolTotals {
    /// The pool's balance.
    pub balance_sats: i64,
    /// Outstanding reservations.
    pub reserved_sats: i64,
    /// Sum of absorbed sats (of grants).
    pub absorbed_sats: i64,
    /// Sum of credits.
    pub credited_sats: i64,
    /// Number of grants.
    pub n_grants: i64,
}

/// Reads the pool row's totals.
pub async fn totals<'e>(db: impl PgExecutor<'e>) -> Result<PoolTotals, PgError> {
    let r = sqlx::query(
        "SELECT balance_sats, reserved_sats, absorbed_sats, credited_sats, n_grants \
         FROM pool WHERE id = 1",
    )
    .fetch_one(db)
    .await?;
    Ok(PoolTotals {
        balance_sats: r.try_get(0)?,
        reserved_sats: r.try_get(1)?,
        absorbed_sats: r.try_get(2)?,
        credited_sats: r.try_get(3)?,
        n_grants: r.try_get(4)?,
    })
}

/// One violation found by [`audit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFinding {
    /// `I1`, `I2`, `I5` or `genesis`.
    pub invariant: String,
    /// The numbers.
    pub detail: String,
}

/// The read-only I1/I2/I5 check of the reference schema: the books against the journal, the
/// reservations, the identities, the payments and the grants (one per request), each pool stripe
/// against its journal, every reservation against its request and identity, and every NULL
/// where a value must be. One statement (`sql/audit_reference.sql`), so one snapshot, sent from
/// here: it reads the tables and runs no function of the audited database, which could have
/// been replaced.
pub async fn audit<'e>(db: impl PgExecutor<'e>) -> Result<Vec<AuditFinding>, PgError> {
    let rows = sqlx::query(AUDIT).fetch_all(db).await?;
    rows.into_iter().map(|r| Ok(AuditFinding { invariant: r.try_get(0)?, detail: r.try_get(1)? })).collect()
}

/// The reference schema's audit, one statement.
const AUDIT: &str = include_str!("../sql/audit_reference.sql");

/// Runs `command` at `now` as one statement, retrying serialization failures and deadlocks.
pub async fn apply(pool: &sqlx::PgPool, command: &Command, now: TimeMs) -> Result<Applied, PgError> {
    let mut attempt = 0;
    loop {
        match apply_once(pool, command, now).await {
            Err(PgError::Sql(e)) if is_retryable(&e) && attempt < MAX_RETRIES => {
                attempt += 1;
                let pause = retry_pause(attempt);
                tracing::debug!(attempt, error = %e, pause_ms = pause.as_millis() as u64, "retrying {}", command.name());
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

/// The pause before retry `attempt` (from 1) of a serialization failure or deadlock: 2^attempt
/// ms, at most 100 ms, jittered down to as little as half of that, so that the transactions
/// a deadlock or a conflict just set against each other do not all come back at the same
/// moment and meet again. At most 1.5 s over [`MAX_RETRIES`] retries. (Wall-clock time only:
/// which transaction wins a race on a real server is never part of a deterministic result.)
pub fn retry_pause(attempt: u32) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = 1u64.checked_shl(attempt.min(63)).unwrap_or(u64::MAX).min(100);
    // A random number without a dependency: the process's randomly keyed hasher.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % (ceiling / 2 + 1);
    std::time::Duration::from_millis(ceiling - jitter)
}

/// The fields of a `ledger_result` (`sql/reference_schema.sql`), selected from a command's call.
pub(crate) const SELECT_RESULT: &str = "SELECT ok, code, fresh, offer_sats, charge_sats, gate_reason, previous_tier, \
     reserved_sats, returned_sats, absorbed_sats, overrun_sats, pubkey, credited_sats, estimated_sats, available_sats, \
     actual_sats, paid_sats FROM";

/// Runs `command` at `now` as one statement, once.
pub async fn apply_once<'e>(db: impl PgExecutor<'e>, command: &Command, now: TimeMs) -> Result<Applied, PgError> {
    let now_ms = bigint("now", now.0)?;
    let row = match *command {
        Command::SetTier { pubkey, tier } => {
            sqlx::query(&format!("{SELECT_RESULT} ledger_set_tier($1, $2, $3)"))
                .bind(pubkey.to_string())
                .bind(tier.as_str())
                .bind(now_ms)
                .fetch_one(db)
                .await?
        }
        Command::Decide { request_id, pubkey, estimated_sats } => {
            sqlx::query(&format!("{SELECT_RESULT} ledger_decide($1, $2, $3, $4)"))
                .bind(bigint("request_id", request_id.0)?)
                .bind(pubkey.to_string())
                .bind(sats_arg(estimated_sats))
                .bind(now_ms)
                .fetch_one(db)
                .await?
        }
        Command::ReservePartial { request_id, pubkey, amount_sats } => {
            sqlx::query(&format!("{SELECT_RESULT} ledger_reserve_partial($1, $2, $3, $4)"))
                .bind(bigint("request_id", request_id.0)?)
                .bind(pubkey.to_string())
                .bind(sats_arg(amount_sats))
                .bind(now_ms)
                .fetch_one(db)
                .await?
        }
        Command::Release { request_id } => {
            sqlx::query(&format!("{SELECT_RESULT} ledger_release($1, $2)"))
                .bind(bigint("request_id", request_id.0)?)
                .bind(now_ms)
                .fetch_one(db)
                .await?
        }
        Command::Record { request_id, actual_sats } => {
            sqlx::query(&format!("{SELECT_RESULT} ledger_record($1, $2, $3)"))
                .bind(bigint("request_id", request_id.0)?)
                .bind(sats_arg(actual_sats))
                .bind(now_ms)
                .fetch_one(db)
                .await?
        }
        Command::Credit { payment_id, paid_sats } => {
            sqlx::query(&format!("{SELECT_RESULT} ledger_credit($1, $2, $3)"))
                .bind(bigint("payment_id", payment_id.0)?)
                .bind(sats_arg(paid_sats))
                .bind(now_ms)
                .fetch_one(db)
                .await?
        }
        Command::Expire => {
            let rows =
                sqlx::query("SELECT request_id, amount_sats FROM ledger_expire($1)").bind(now_ms).fetch_all(db).await?;
            return expired(rows);
        }
    };
    decode(command, &row)
}

fn expired(rows: Vec<PgRow>) -> Result<Applied, PgError> {
    let mut released = Vec::with_capacity(rows.len());
    let mut movements = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let request_id = RequestId(u64::try_from(id).map_err(|_| PgError::Protocol(format!("request id {id}")))?);
        let amount_sats = sats_of(Some(r.try_get(1)?))?;
        released.push((request_id, amount_sats));
        movements.push(Movement::Expire { request_id, amount_sats });
    }
    Ok(Applied { fresh: !released.is_empty(), result: Ok(Outcome::Expired { released }), movements })
}

/// The sats in the field `name` of a `ledger_result` row.
fn sats_field(row: &PgRow, name: &str) -> Result<Sats, PgError> {
    sats_of(row.try_get(name)?)
}

pub(crate) fn decode(command: &Command, row: &PgRow) -> Result<Applied, PgError> {
    let ok: bool = row.try_get("ok")?;
    let code: String = row.try_get("code")?;
    let fresh: bool = row.try_get("fresh")?;
    if !ok {
        return Ok(Applied { result: Err(refusal(&code, row)?), fresh: false, movements: Vec::new() });
    }
    let sats = |name| sats_field(row, name);
    let outcome = match code.as_str() {
        "tier_set" => {
            let previous: Option<String> = row.try_get("previous_tier")?;
            Outcome::TierSet {
                previous: previous
                    .as_deref()
                    .map(str::parse::<Tier>)
                    .transpose()
                    .map_err(|e| PgError::Protocol(e.to_string()))?,
            }
        }
        "free" => Outcome::Decided { decision: Decision::Free { reserved_sats: sats("offer_sats")? } },
        "partial" => Outcome::Decided {
            decision: Decision::Partial { offer_sats: sats("offer_sats")?, charge_sats: sats("charge_sats")? },
        },
        "gate" => {
            let reason: Option<String> = row.try_get("gate_reason")?;
            Outcome::Decided {
                decision: Decision::Gate { reason: gate_reason(reason.as_deref())?, charge_sats: sats("charge_sats")? },
            }
        }
        "reserved" => Outcome::Reserved { reserved_sats: sats("reserved_sats")? },
        "released" => Outcome::Released { returned_sats: sats("returned_sats")? },
        "recorded" => Outcome::Recorded {
            absorbed_sats: sats("absorbed_sats")?,
            returned_sats: sats("returned_sats")?,
            overrun_sats: sats("overrun_sats")?,
        },
        "credited" => Outcome::Credited { credited_sats: sats("credited_sats")? },
        other => return Err(PgError::Protocol(format!("unknown outcome {other:?}"))),
    };
    let movements = if fresh {
        let pubkey: Option<String> = row.try_get("pubkey")?;
        movements(command, &outcome, pubkey.as_deref())?
    } else {
        Vec::new()
    };
    Ok(Applied { result: Ok(outcome), fresh, movements })
}

/// The pool movements of a fresh outcome, as the reference engine journals them. `pubkey` is
/// the answer's (a record's reservation's).
/// The movements of a fresh outcome ([`ledger_core::implied_movements`]); `pubkey` is the
/// reservation holder the server returns with a record.
fn movements(command: &Command, outcome: &Outcome, pubkey: Option<&str>) -> Result<Vec<Movement>, PgError> {
    let holder = pubkey
        .map(str::parse::<Pubkey>)
        .transpose()
        .map_err(|e: ledger_core::PubkeyError| PgError::Protocol(e.to_string()))?;
    ledger_core::implied_movements(command, outcome, holder).map_err(|e| PgError::Protocol(e.to_string()))
}

fn gate_reason(reason: Option<&str>) -> Result<GateReason, PgError> {
    Ok(match reason {
        Some("unknown_identity") => GateReason::UnknownIdentity,
        Some("zero_estimate") => GateReason::ZeroEstimate,
        Some("zero_budget") => GateReason::ZeroBudget,
        Some("daily_budget_exhausted") => GateReason::DailyBudgetExhausted,
        Some("pool_empty") => GateReason::PoolEmpty,
        other => return Err(PgError::Protocol(format!("unknown gate reason {other:?}"))),
    })
}

fn refusal(code: &str, row: &PgRow) -> Result<Refusal, PgError> {
    let sats = |name| sats_field(row, name);
    Ok(match code {
        "unknown_identity" => Refusal::UnknownIdentity,
        "unknown_request" => Refusal::UnknownRequest,
        "zero_amount" => Refusal::ZeroAmount,
        "insufficient_funds" => Refusal::InsufficientFunds { available_sats: sats("available_sats")? },
        "exists_with_different_pubkey" => Refusal::ExistsWithDifferentPubkey,
        "exists_with_different_estimate" => {
            Refusal::ExistsWithDifferentEstimate { estimated_sats: sats("estimated_sats")? }
        }
        "reservation_exists" => Refusal::ReservationExists { reserved_sats: sats("reserved_sats")? },
        "amount_above_estimate" => Refusal::AmountAboveEstimate { estimated_sats: sats("estimated_sats")? },
        "recorded_with_different_amount" => Refusal::RecordedWithDifferentAmount { actual_sats: sats("actual_sats")? },
        "payment_with_different_amount" => Refusal::PaymentWithDifferentAmount { paid_sats: sats("paid_sats")? },
        "not_reserved" => Refusal::NotReserved,
        "already_recorded" => Refusal::AlreadyRecorded,
        "already_released" => Refusal::AlreadyReleased,
        "reservation_expired" => Refusal::ReservationExpired,
        "overflow" => Refusal::Overflow,
        other => return Err(PgError::Protocol(format!("unknown refusal {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::is_raised_by_the_sql_code;

    #[test]
    fn a_retry_pauses_longer_each_time_up_to_100_ms_jittered_down_by_at_most_half() {
        let mut total = std::time::Duration::ZERO;
        for attempt in 1..=super::MAX_RETRIES {
            let ceiling = (1u64 << attempt.min(7)).min(100);
            let pauses: Vec<u64> = (0..50).map(|_| super::retry_pause(attempt).as_millis() as u64).collect();
            assert!(pauses.iter().all(|&p| p <= ceiling && p >= ceiling - ceiling / 2), "{attempt}: {pauses:?}");
            if ceiling >= 8 {
                assert!(pauses.iter().any(|&p| p != pauses[0]), "jittered: {attempt}: {pauses:?}");
            }
            total += super::retry_pause(attempt);
        }
        assert!(total <= std::time::Duration::from_millis(1526), "{total:?}");
        assert!(super::retry_pause(u32::MAX) <= std::time::Duration::from_millis(100));
    }

    #[test]
    fn only_errors_of_the_sql_itself_are_the_implementations() {
        for code in ["23514", "23505", "P0001", "22003", "42883", "LDB01"] {
            assert!(is_raised_by_the_sql_code(code), "{code}");
        }
        for code in ["57P01", "57014", "08006", "40001", "40P01", "53300", "25P02"] {
            assert!(!is_raised_by_the_sql_code(code), "{code}");
        }
    }
}
