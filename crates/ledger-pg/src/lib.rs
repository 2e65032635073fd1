//! The PostgreSQL adapter of the generosity-pool ledger.
//!
//! It holds the `sqlx` migrations (the seed's own tables, and the reference schema with the
//! reference semantics of SPEC.md as server-side functions, one file per function under
//! `sql/functions/`; see [`migrate`]), the seed's SQL statements ported one round trip at a
//! time ([`seed`]), and a throwaway PostgreSQL for tests and runs ([`testpg`]).
//!
//! - [`reference`]: each SPEC.md command as one call of a server-side function, idempotent by
//!   id, with serialization failures and deadlocks retried; [`reference::audit`] checks I1, I2
//!   and I5 on a live database.
//! - [`batch`]: the same commands from many concurrent callers, sent in batches (one round
//!   trip and one commit per batch) on lanes that cannot deadlock one another.
//! - [`seed`]: one async function per database round trip of `free-tier.ts`.
//! - [`engine`]: `pg-reference` and `pg-seed` behind `ledger_harness::Engine` (lockstep, blocking
//!   on an internal runtime), and [`engine::SeedClient`] for real concurrency.
//! - [`testpg`]: a fresh database on a private throwaway cluster, or on `DATABASE_URL`.
//!
//! It is not the specification: the in-memory reference engine in `ledger-core` is, and the SQL
//! here must agree with it outcome for outcome. It owns no clock: every time is passed in by the
//! caller, as in the core.
//!
//! ```no_run
//! use ledger_core::{Command, Config, Pubkey, RequestId, Sats, Tier, TimeMs};
//! use ledger_pg::testpg::TestPg;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let pg = TestPg::new()?; // a fresh database on a throwaway cluster (or on DATABASE_URL's server)
//! let pool = pg.pool().await?;
//! ledger_pg::migrate(&pool).await?;
//! ledger_pg::reference::genesis(&pool, &Config::default(), TimeMs(0)).await?;
//! let user = Pubkey::from_bytes([7; 32]);
//! ledger_pg::reference::apply(&pool, &Command::SetTier { pubkey: user, tier: Tier::Trusted }, TimeMs(1)).await?;
//! let decide = Command::Decide { request_id: RequestId(1), pubkey: user, estimated_sats: Sats::new(20).unwrap() };
//! let applied = ledger_pg::reference::apply(&pool, &decide, TimeMs(2)).await?;
//! println!("{:?} moved {:?}", applied.result, applied.movements);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod batch;
pub mod engine;
mod redact;
pub mod reference;
pub mod schema;
pub mod seed;
pub mod testpg;
pub mod wait;

pub use redact::{database_url_options, has_password, redacted, redacted_text, UNPARSEABLE};

/// Applies every pending migration: the seed's tables (version 1), and the reference schema
/// with all of its functions (version 2), both embedded at compile time from `sql/`.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate::Migrator::new(schema::Embedded).await?.run(pool).await
}

/// Drops everything in the `public` schema, migrations included, so that a run can start from
/// genesis on a database it owns; the schema itself is kept, with its owner and privileges
/// ([`schema::drop_public_objects`]). Destructive: for throwaway databases only (a run given a
/// database first checks, with [`schema::foreign_objects`], that all of it is ledger-pg's).
pub async fn reset_database(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    schema::drop_public_objects(&mut conn).await
}
