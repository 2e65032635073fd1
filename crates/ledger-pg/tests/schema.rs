//! The migrated schema on a real server, against what the Rust side assumes of it.

use ledger_core::{Config, TimeMs};
use ledger_pg::batch::N_STRIPES;
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;
use sqlx::PgPool;

async fn migrated() -> (TestPg, PgPool) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for these tests");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    (pg, pool)
}

/// The batcher's lanes own disjoint stripes only if `N_STRIPES` is the server's number of
/// stripes: `id % N_STRIPES` must be the home stripe the SQL computes.
#[tokio::test]
async fn n_stripes_is_ledger_n_stripes() {
    let (_pg, pool) = migrated().await;
    let n: i32 = sqlx::query_scalar("SELECT ledger_n_stripes()").fetch_one(&pool).await.unwrap();
    assert_eq!(usize::try_from(n).ok(), Some(N_STRIPES), "batch::N_STRIPES and ledger_n_stripes() differ");
    reference::genesis(&pool, &Config::default(), TimeMs(0)).await.expect("genesis");
    let stripes: Vec<i16> =
        sqlx::query_scalar("SELECT stripe FROM pool_stripes ORDER BY stripe").fetch_all(&pool).await.unwrap();
    let expected: Vec<i16> = (0..N_STRIPES).map(|s| i16::try_from(s).unwrap()).collect();
    assert_eq!(stripes, expected, "genesis makes stripes 0 .. N_STRIPES");
}

/// The migrations' checksums are those of the embedded text: running them again on a
/// migrated database finds both applied and changes nothing.
#[tokio::test]
async fn migrating_again_changes_nothing() {
    let (_pg, pool) = migrated().await;
    ledger_pg::migrate(&pool).await.expect("a second run on a migrated database");
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [(1, "seed tables".to_string()), (2, "reference schema".to_string())]);
}
