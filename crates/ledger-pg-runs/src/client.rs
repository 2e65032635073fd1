//! The engine a concurrent run's callers talk to.

use ledger_pg::batch::Batcher;
use ledger_pg::engine::SeedClient;
use sqlx::PgPool;

/// The engine a concurrent run drives.
pub(crate) enum Client {
    /// `pg-reference`, one call per command, or in batches.
    Reference(PgPool, Option<Batcher>),
    Seed(SeedClient),
}
