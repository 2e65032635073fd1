//! The seed's SQL, ported statement by statement from `free-tier.ts`.
//!
//! One function per database round trip of the TypeScript (a drizzle `await`, or a whole
//! `db.transaction`), with the same statements, the same casts (`value::int`), the same
//! `ON CONFLICT` clauses and the same transaction boundaries. Nothing here is fixed: the point
//! is to run the original's behaviour, flaws included, on a real server. The business logic
//! between round trips (the `Math.min`s, `parseInt`, the daily-window arithmetic) belongs to
//! the caller, which is the `pg-seed` engine or a test.
//!
//! Parameters the seed sends as JavaScript numbers into an `integer` context are bound as
//! `i32`, because that is the type Postgres infers for them there: an amount beyond `i32` fails
//! on the server in the original too.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, Row};

/// The `timmy_config` key holding the pool balance.
pub const POOL_KEY: &str = "generosity_pool_sats";

/// The seed's `DAY_MS`.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A time in milliseconds since the epoch as the `timestamptz` the seed binds (`new Date()`).
pub fn timestamp(ms: u64) -> DateTime<Utc> {
    let ms = i64::try_from(ms).expect("time fits i64 milliseconds");
    DateTime::from_timestamp_millis(ms).expect("time within chrono's range")
}

/// A `timestamptz` back to milliseconds since the epoch.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// JavaScript's `parseInt(s, 10) || 0`: leading whitespace, an optional sign, then digits up to
/// the first non-digit; no digits (`NaN`) and zero both give 0.
pub fn js_parse_int_or_zero(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = digits.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
    let magnitude = digits[..end].parse::<i64>().unwrap_or(if end == 0 { 0 } else { i64::MAX });
    if neg {
        -magnitude
    } else {
        magnitude
    }
}

/// A row of `nostr_identities` as the trust service hands it to `decide`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedIdentity {
    /// The trust tier, as stored.
    pub tier: String,
    /// The 32-bit counter of sats absorbed in the current window.
    pub sats_absorbed_today: i32,
    /// Start of the current window.
    pub absorbed_reset_at: DateTime<Utc>,
}

/// `trustService.getIdentityWithDecay(pubkey)`, reduced to the read it makes of the identity
/// (the trust decay itself is not in the seed; the harness changes tiers directly).
pub async fn get_identity(conn: &mut PgConnection, pubkey: &str) -> Result<Option<SeedIdentity>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT tier, sats_absorbed_today, absorbed_reset_at FROM nostr_identities \
         WHERE pubkey = $1 LIMIT 1",
    )
    .bind(pubkey)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(SeedIdentity { tier: r.try_get(0)?, sats_absorbed_today: r.try_get(1)?, absorbed_reset_at: r.try_get(2)? })
    })
    .transpose()
}

/// `getPoolBalance`, first round trip: the select of the pool row. Returns the raw text value,
/// if the row exists; the seed then applies [`js_parse_int_or_zero`].
pub async fn select_pool_value(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT key, value, updated_at FROM timmy_config WHERE key = $1 LIMIT 1")
        .bind(POOL_KEY)
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get::<String, _>(1)).transpose()
}

/// `getPoolBalance`, second round trip on first boot: seed the pool unless a row exists
/// (`onConflictDoNothing`). `updated_at` takes its column default, as drizzle sends `default`
/// for a column it is not given.
pub async fn insert_pool_if_missing(conn: &mut PgConnection, initial_sats: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO timmy_config (key, value, updated_at) VALUES ($1, $2, default) \
         ON CONFLICT DO NOTHING",
    )
    .bind(POOL_KEY)
    .bind(initial_sats.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// `_atomicPoolDebit(requestedSats)`: one transaction that ensures the pool row, locks it with
/// `SELECT value::int ... FOR UPDATE`, and writes `balance - min(requested, balance)`.
/// Returns the amount debited (0 when the pool is empty, or when `requested <= 0`, in which case
/// the seed makes no round trip at all).
pub async fn atomic_pool_debit(
    conn: &mut PgConnection,
    requested_sats: i64,
    initial_sats: i64,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    if requested_sats <= 0 {
        return Ok(0);
    }
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO timmy_config (key, value, updated_at) VALUES ($1, $2, default) \
         ON CONFLICT DO NOTHING",
    )
    .bind(POOL_KEY)
    .bind(initial_sats.to_string())
    .execute(&mut *tx)
    .await?;
    let balance: Option<i32> =
        sqlx::query_scalar("SELECT value::int AS balance FROM timmy_config WHERE key = $1 FOR UPDATE")
            .bind(POOL_KEY)
            .fetch_optional(&mut *tx)
            .await?;
    let pool_balance = i64::from(balance.unwrap_or(0));
    if pool_balance <= 0 {
        tx.commit().await?;
        return Ok(0);
    }
    let actual_debited = requested_sats.min(pool_balance);
    let new_pool_balance = pool_balance - actual_debited;
    sqlx::query("UPDATE timmy_config SET value = $1, updated_at = $2 WHERE key = $3")
        .bind(new_pool_balance.to_string())
        .bind(now)
        .bind(POOL_KEY)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(actual_debited)
}

/// `releaseReservation(absorbSats)`: `value = (value::int + n)::text`, no transaction, no check
/// that anything was reserved. Makes no round trip when `absorb_sats <= 0`. Returns whether a
/// pool row was updated (before first boot there is none, and the sats vanish).
pub async fn release_reservation(
    conn: &mut PgConnection,
    absorb_sats: i32,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    if absorb_sats <= 0 {
        return Ok(false);
    }
    let done = sqlx::query("UPDATE timmy_config SET value = (value::int + $1)::text, updated_at = $2 WHERE key = $3")
        .bind(absorb_sats)
        .bind(now)
        .bind(POOL_KEY)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The seed's `creditSats = Math.floor(paidSats * POOL_CREDIT_PCT / 100)`, in floating point as
/// the original computes it.
pub fn credit_sats(paid_sats: i64, credit_pct: f64) -> i64 {
    // JavaScript numbers are doubles; the cast back saturates, as no real amount reaches it.
    ((paid_sats as f64) * credit_pct / 100.0).floor() as i64
}

/// `credit(paidSats)`'s statement: insert the pool row with `creditSats` (on a pool that was
/// never read, this *is* genesis) or add to it with `ON CONFLICT DO UPDATE`. Makes no round trip
/// when `credit_sats <= 0`.
pub async fn credit(conn: &mut PgConnection, credit_sats: i32, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    if credit_sats <= 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO timmy_config (key, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = (timmy_config.value::int + $4)::text, updated_at = $5",
    )
    .bind(POOL_KEY)
    .bind(credit_sats.to_string())
    .bind(now)
    .bind(credit_sats)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// `recordGrant(pubkey, requestHash, actualAbsorbed, reservedAbsorbed)`: one transaction that
/// returns the over-reservation to the pool, bumps the identity's daily counter with the `CASE`
/// daily reset, reads the pool and inserts the audit row. `grant_id` is the seed's
/// `randomUUID()`, chosen by the caller so that runs stay deterministic.
///
/// Returns `None` without a round trip when there is nothing to record or return, otherwise
/// whether the over-reservation reached a pool row (`false` also when there was none to return).
pub async fn record_grant(
    conn: &mut PgConnection,
    grant_id: &str,
    pubkey: &str,
    request_hash: &str,
    actual_absorbed: i32,
    reserved_absorbed: i32,
    now: DateTime<Utc>,
) -> Result<Option<bool>, sqlx::Error> {
    let to_record = actual_absorbed.max(0);
    let over_reserved = reserved_absorbed.saturating_sub(to_record).max(0);
    if to_record <= 0 && over_reserved <= 0 {
        return Ok(None);
    }
    let mut tx = conn.begin().await?;
    let mut returned = false;
    if over_reserved > 0 {
        returned =
            sqlx::query("UPDATE timmy_config SET value = (value::int + $1)::text, updated_at = $2 WHERE key = $3")
                .bind(over_reserved)
                .bind(now)
                .bind(POOL_KEY)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
    }
    if to_record > 0 {
        sqlx::query(
            "UPDATE nostr_identities SET \
               sats_absorbed_today = CASE \
                 WHEN EXTRACT(EPOCH FROM ($1::timestamptz - absorbed_reset_at)) * 1000 >= $2 \
                 THEN $3 \
                 ELSE sats_absorbed_today + $4 \
               END, \
               absorbed_reset_at = CASE \
                 WHEN EXTRACT(EPOCH FROM ($5::timestamptz - absorbed_reset_at)) * 1000 >= $6 \
                 THEN $7::timestamptz \
                 ELSE absorbed_reset_at \
               END, \
               updated_at = $8 \
             WHERE pubkey = $9",
        )
        .bind(now)
        .bind(DAY_MS)
        .bind(to_record)
        .bind(to_record)
        .bind(now)
        .bind(DAY_MS)
        .bind(now)
        .bind(now)
        .bind(pubkey)
        .execute(&mut *tx)
        .await?;
        let pool_value: Option<String> = sqlx::query_scalar("SELECT value FROM timmy_config WHERE key = $1 LIMIT 1")
            .bind(POOL_KEY)
            .fetch_optional(&mut *tx)
            .await?;
        let pool_balance_after = pool_value.map_or(0, |v| js_parse_int_or_zero(&v));
        // The seed parses without `|| 0` here, so NaN would reach the insert and fail; a value
        // that parses fits the integer column unless the pool outgrew 32 bits, which fails too.
        let pool_balance_after = i32::try_from(pool_balance_after).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO free_tier_grants (id, pubkey, request_hash, sats_absorbed, pool_balance_after) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(grant_id)
        .bind(pubkey)
        .bind(request_hash)
        .bind(to_record)
        .bind(pool_balance_after)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some(returned))
}

/// Harness operation, not a seed statement: creates or replaces an identity (the trust service's
/// job in production).
pub async fn upsert_identity(
    conn: &mut PgConnection,
    pubkey: &str,
    tier: &str,
    sats_absorbed_today: i32,
    absorbed_reset_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO nostr_identities (pubkey, tier, sats_absorbed_today, absorbed_reset_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (pubkey) DO UPDATE SET tier = EXCLUDED.tier, \
           sats_absorbed_today = EXCLUDED.sats_absorbed_today, \
           absorbed_reset_at = EXCLUDED.absorbed_reset_at, updated_at = EXCLUDED.updated_at",
    )
    .bind(pubkey)
    .bind(tier)
    .bind(sats_absorbed_today)
    .bind(absorbed_reset_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Harness operation, not a seed statement: the trust service creates an identity (its window
/// starting at `now`) or changes its tier. Returns the previous tier, `None` when created.
pub async fn set_tier(
    conn: &mut PgConnection,
    pubkey: &str,
    tier: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH old AS (SELECT tier FROM nostr_identities WHERE pubkey = $1 FOR UPDATE), \
              up AS (INSERT INTO nostr_identities \
                       (pubkey, tier, sats_absorbed_today, absorbed_reset_at, updated_at) \
                     VALUES ($1, $2, 0, $3, $3) \
                     ON CONFLICT (pubkey) DO UPDATE SET tier = EXCLUDED.tier) \
         SELECT tier FROM old",
    )
    .bind(pubkey)
    .bind(tier)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// One violation found by [`audit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFinding {
    /// `I1` or `I5`.
    pub invariant: &'static str,
    /// The numbers.
    pub detail: String,
}

/// A read-only check of what the seed's own tables can show: I1 (the pool row is a
/// non-negative number) and I5 (no request has more than one grant, no grant is negative).
/// I2 needs a journal of movements, which the seed does not keep: the simulator checks it from
/// its own journal instead. A NULL where a value must be is a finding of its own, naming the
/// table, the column and the row; sums are numeric. Run it in one transaction (the audit of
/// `ledger-sim` does) for one snapshot.
pub async fn audit(conn: &mut PgConnection) -> Result<Vec<SeedFinding>, sqlx::Error> {
    let mut findings = Vec::new();
    let pool: Vec<Option<String>> = sqlx::query_scalar("SELECT value FROM public.timmy_config WHERE key = $1")
        .bind(POOL_KEY)
        .fetch_all(&mut *conn)
        .await?;
    if pool.len() > 1 {
        // The seed reads one of them (`LIMIT 1`), which one the server likes.
        findings.push(SeedFinding {
            invariant: "I1",
            detail: format!("timmy_config holds {} rows of key {POOL_KEY}, one expected", pool.len()),
        });
    }
    for value in pool {
        match value {
            None => findings.push(SeedFinding {
                invariant: "I1",
                detail: format!("timmy_config.value is NULL in row {POOL_KEY}, where a value must be"),
            }),
            Some(v) if v.trim().parse::<i64>().map_or(true, |n| n < 0) => {
                findings.push(SeedFinding { invariant: "I1", detail: format!("pool value is {v:?}") });
            }
            Some(_) => {}
        }
    }
    let nulls: Vec<(String, String)> = sqlx::query_as(
        "SELECT 'request_hash', coalesce('grant ' || id, 'the row at ' || ctid) FROM public.free_tier_grants \
         WHERE request_hash IS NULL \
         UNION ALL SELECT 'sats_absorbed', coalesce('grant ' || id, 'the row at ' || ctid) FROM public.free_tier_grants \
         WHERE sats_absorbed IS NULL ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (column, row) in nulls {
        findings.push(SeedFinding {
            invariant: "I5",
            detail: format!("free_tier_grants.{column} is NULL in {row}, where a value must be"),
        });
    }
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT request_hash, count(*), \
         coalesce((CASE WHEN count(sats_absorbed) = count(*) THEN sum(sats_absorbed::numeric) END)::text, 'NULL') \
         FROM public.free_tier_grants WHERE request_hash IS NOT NULL \
         GROUP BY request_hash HAVING count(*) > 1 ORDER BY request_hash",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (hash, n, sum) in rows {
        findings.push(SeedFinding {
            invariant: "I5",
            detail: format!("request {hash} recorded {n} times, absorbing {sum} sats"),
        });
    }
    let negative: i64 = sqlx::query_scalar("SELECT count(*) FROM public.free_tier_grants WHERE sats_absorbed < 0")
        .fetch_one(&mut *conn)
        .await?;
    if negative > 0 {
        findings.push(SeedFinding { invariant: "I5", detail: format!("{negative} grants absorb a negative amount") });
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_is_javascripts() {
        assert_eq!(js_parse_int_or_zero("10000"), 10000);
        assert_eq!(js_parse_int_or_zero("  -12abc"), -12);
        assert_eq!(js_parse_int_or_zero("abc"), 0);
        assert_eq!(js_parse_int_or_zero(""), 0);
        assert_eq!(js_parse_int_or_zero("+7"), 7);
    }

    #[test]
    fn credit_rounds_down_in_floating_point() {
        assert_eq!(credit_sats(105, 10.0), 10);
        assert_eq!(credit_sats(9, 10.0), 0);
        assert_eq!(credit_sats(1000, 12.5), 125);
    }
}
