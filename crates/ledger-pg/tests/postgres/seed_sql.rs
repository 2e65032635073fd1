//! The seed's statements on a real server: each round trip does what the TypeScript's does,
//! including the flaws the harness is meant to find.

use ledger_pg::seed::{self, timestamp, DAY_MS};
use ledger_pg::testpg::TestPg;
use sqlx::PgConnection;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

const PK: &str = "aa";

async fn setup() -> (TestPg, PgConnection) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for these tests");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    pool.close().await;
    let conn = pg.connect().await.expect("connect");
    (pg, conn)
}

async fn pool_value(conn: &mut PgConnection) -> Option<String> {
    seed::select_pool_value(conn).await.expect("select")
}

#[tokio::test]
async fn first_boot_seeds_the_pool_once() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::first_boot_seeds_the_pool_once"), TIME_LIMIT);
    let (_pg, mut c) = setup().await;
    assert_eq!(pool_value(&mut c).await, None);
    seed::insert_pool_if_missing(&mut c, 10_000).await.unwrap();
    seed::insert_pool_if_missing(&mut c, 5).await.unwrap();
    assert_eq!(pool_value(&mut c).await.as_deref(), Some("10000"));
}

#[tokio::test]
async fn debit_takes_what_is_there_and_no_more() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::debit_takes_what_is_there_and_no_more"),
        TIME_LIMIT,
    );
    let (_pg, mut c) = setup().await;
    let now = timestamp(1_700_000_000_000);
    // The debit itself ensures the pool row: genesis by whichever write comes first.
    assert_eq!(seed::atomic_pool_debit(&mut c, 300, 1_000, now).await.unwrap(), 300);
    assert_eq!(pool_value(&mut c).await.as_deref(), Some("700"));
    assert_eq!(seed::atomic_pool_debit(&mut c, 900, 1_000, now).await.unwrap(), 700);
    assert_eq!(pool_value(&mut c).await.as_deref(), Some("0"));
    assert_eq!(seed::atomic_pool_debit(&mut c, 1, 1_000, now).await.unwrap(), 0);
    assert_eq!(seed::atomic_pool_debit(&mut c, 0, 1_000, now).await.unwrap(), 0);
}

#[tokio::test]
async fn release_adds_back_without_any_check() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::release_adds_back_without_any_check"), TIME_LIMIT);
    let (_pg, mut c) = setup().await;
    let now = timestamp(1_700_000_000_000);
    seed::insert_pool_if_missing(&mut c, 100).await.unwrap();
    // Nothing was reserved, yet the pool grows: the seed trusts its caller.
    seed::release_reservation(&mut c, 50, now).await.unwrap();
    seed::release_reservation(&mut c, 50, now).await.unwrap();
    assert_eq!(pool_value(&mut c).await.as_deref(), Some("200"));
}

#[tokio::test]
async fn credit_before_first_read_is_genesis() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::credit_before_first_read_is_genesis"), TIME_LIMIT);
    let (_pg, mut c) = setup().await;
    let now = timestamp(1_700_000_000_000);
    let n = seed::credit_sats(1_000, 10.0);
    assert_eq!(n, 100);
    seed::credit(&mut c, n as i32, now).await.unwrap();
    // The initial 10,000 is lost: the credit's insert won the race to create the row.
    seed::insert_pool_if_missing(&mut c, 10_000).await.unwrap();
    assert_eq!(pool_value(&mut c).await.as_deref(), Some("100"));
    seed::credit(&mut c, n as i32, now).await.unwrap();
    assert_eq!(pool_value(&mut c).await.as_deref(), Some("200"));
}

#[tokio::test]
async fn pool_overflows_32_bits_on_the_server() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::pool_overflows_32_bits_on_the_server"),
        TIME_LIMIT,
    );
    let (_pg, mut c) = setup().await;
    let now = timestamp(1_700_000_000_000);
    seed::insert_pool_if_missing(&mut c, i64::from(i32::MAX) - 1).await.unwrap();
    let err = seed::release_reservation(&mut c, 2, now).await.unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[tokio::test]
async fn record_grant_returns_over_reservation_and_resets_the_day() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::record_grant_returns_over_reservation_and_resets_the_day"),
        TIME_LIMIT,
    );
    let (_pg, mut c) = setup().await;
    let t0 = 1_700_000_000_000u64;
    seed::insert_pool_if_missing(&mut c, 1_000).await.unwrap();
    seed::upsert_identity(&mut c, PK, "trusted", 0, timestamp(t0)).await.unwrap();
    assert_eq!(seed::atomic_pool_debit(&mut c, 80, 1_000, timestamp(t0)).await.unwrap(), 80);

    // Actual 30 of 80 reserved: 50 goes back, 30 is absorbed within the window.
    let wrote = seed::record_grant(&mut c, "g1", PK, "r1", 30, 80, timestamp(t0 + 1_000)).await.unwrap();
    assert_eq!(wrote, Some(true));
    assert_eq!(pool_value(&mut c).await.as_deref(), Some("970"));
    let id = seed::get_identity(&mut c, PK).await.unwrap().unwrap();
    assert_eq!(id.sats_absorbed_today, 30);
    assert_eq!(id.absorbed_reset_at, timestamp(t0));

    // Exactly one day later the window restarts at `now`.
    let t1 = t0 + DAY_MS as u64;
    seed::record_grant(&mut c, "g2", PK, "r2", 20, 20, timestamp(t1)).await.unwrap();
    let id = seed::get_identity(&mut c, PK).await.unwrap().unwrap();
    assert_eq!(id.sats_absorbed_today, 20);
    assert_eq!(id.absorbed_reset_at, timestamp(t1));

    // The same request recorded twice writes two grants: no uniqueness in the seed.
    seed::record_grant(&mut c, "g3", PK, "r2", 20, 20, timestamp(t1)).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM free_tier_grants WHERE request_hash = 'r2'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let after: i32 = sqlx::query_scalar("SELECT pool_balance_after FROM free_tier_grants WHERE id = 'g1'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(after, 970);
    let findings = seed::audit(&mut c).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].invariant, "I5");
    assert_eq!(findings[0].detail, "request r2 recorded 2 times, absorbing 40 sats");

    // Nothing to record and nothing to return: no round trip, no row.
    assert_eq!(seed::record_grant(&mut c, "g4", PK, "r4", 0, 0, timestamp(t1)).await.unwrap(), None);
}

#[tokio::test]
async fn unknown_identity_reads_as_none() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::unknown_identity_reads_as_none"), TIME_LIMIT);
    let (_pg, mut c) = setup().await;
    assert_eq!(seed::get_identity(&mut c, "nobody").await.unwrap(), None);
    seed::upsert_identity(&mut c, PK, "new", 0, timestamp(5)).await.unwrap();
    let previous = seed::set_tier(&mut c, PK, "elite", timestamp(9)).await.unwrap();
    assert_eq!(previous.as_deref(), Some("new"));
    let created = seed::set_tier(&mut c, "bb", "trusted", timestamp(9)).await.unwrap();
    assert_eq!(created, None);
    let bb = seed::get_identity(&mut c, "bb").await.unwrap().unwrap();
    assert_eq!((bb.sats_absorbed_today, bb.absorbed_reset_at), (0, timestamp(9)));
    assert_eq!(seed::get_identity(&mut c, PK).await.unwrap().unwrap().tier, "elite");
}
