//! The migrated schema on a real server, against what the Rust side assumes of it.

use ledger_core::{Config, TimeMs};
use ledger_pg::batch::N_STRIPES;
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;
use sqlx::PgPool;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

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
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::n_stripes_is_ledger_n_stripes"), TIME_LIMIT);
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
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::migrating_again_changes_nothing"), TIME_LIMIT);
    let (_pg, pool) = migrated().await;
    ledger_pg::migrate(&pool).await.expect("a second run on a migrated database");
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [(1, "seed tables".to_string()), (2, "reference schema".to_string())]);
}

/// `schema::RELATIONS` is exactly what the migrations create: a run given a database drops
/// only those without asking, so a table missing from the list would make it refuse its own
/// schema, and an extra name would let it drop a user's table of that name.
#[tokio::test]
async fn relations_are_what_the_migrations_create() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::relations_are_what_the_migrations_create"),
        TIME_LIMIT,
    );
    let (pg, pool) = migrated().await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'f', 'p') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(names, ledger_pg::schema::RELATIONS);
    let mut conn = pg.connect().await.unwrap();
    assert!(ledger_pg::schema::foreign_relations(&mut conn).await.unwrap().is_empty());
    sqlx::query("CREATE TABLE customers (id int)").execute(&pool).await.unwrap();
    assert_eq!(ledger_pg::schema::foreign_relations(&mut conn).await.unwrap(), ["customers"]);
}
