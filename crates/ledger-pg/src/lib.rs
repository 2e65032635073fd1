//! The PostgreSQL adapter of the generosity-pool ledger.
//!
//! It holds the `sqlx` migrations (the reference schema and the seed's own tables), the
//! reference semantics of DESIGN §3 as server-side functions, the seed's SQL statements ported
//! one round trip at a time ([`seed`]), and a throwaway PostgreSQL for tests and runs
//! ([`testpg`]).
//!
//! It is not the specification: the in-memory reference engine in `ledger-core` is, and the SQL
//! here must agree with it outcome for outcome. It owns no clock: every time is passed in by the
//! caller, as in the core.

#![warn(missing_docs, unreachable_pub)]

pub mod engine;
pub mod reference;
pub mod seed;
pub mod testpg;

/// The migrations of this crate, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies every pending migration.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
