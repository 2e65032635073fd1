//! The striped pool (`pool_stripes` in `sql/reference_schema.sql`) answers from the whole
//! pool, exactly as the single balance of the reference engine does, under real concurrency:
//! when the stripes run short, the fallback locks them all, spreads the debit and evens them
//! out. The same through the batcher, where taking every stripe makes a batch run again
//! holding the batch lock alone.

use ledger_core::{Command, Config, Decision, Outcome, Refusal, RequestId, Sats, Tier, TimeMs};
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

/// `n_clients` concurrent decides of `estimated` each on a pool of `pool_sats`: the answers
/// must be those of some serial order, i.e. exactly `pool / estimated` free, then partial
/// offers of the remainder (or gates when nothing is left).
async fn contend(pool_sats: u64, estimated: u64, n_clients: u64, lanes: Option<usize>) {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let db = pg.pool().await.expect("connect");
    ledger_pg::migrate(&db).await.expect("migrate");
    let config = Config { pool_initial_sats: sats(pool_sats), ..Config::default() };
    reference::genesis(&db, &config, TimeMs(0)).await.expect("genesis");
    for u in 0..n_clients {
        let cmd = Command::SetTier { pubkey: ledger_harness::user_pubkey(u), tier: Tier::Elite };
        reference::apply(&db, &cmd, TimeMs(1)).await.expect("set_tier");
    }
    let batcher = lanes.map(|lanes| {
        Batcher::new(db.clone(), BatcherOptions { lanes, max_batch: 8, ..BatcherOptions::default() }).unwrap()
    });
    let tasks: Vec<_> = (0..n_clients)
        .map(|u| {
            let db = db.clone();
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let cmd = Command::Decide {
                    request_id: RequestId(1000 + u),
                    pubkey: ledger_harness::user_pubkey(u),
                    estimated_sats: sats(estimated),
                };
                match batcher {
                    Some(b) => b.apply(&cmd, TimeMs(2)).await.expect("decide"),
                    None => reference::apply(&db, &cmd, TimeMs(2)).await.expect("decide"),
                }
            })
        })
        .collect();
    let (mut free, mut partial, mut gate) = (0, Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap().result {
            Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }) => {
                assert_eq!(reserved_sats, sats(estimated));
                free += 1;
            }
            Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, .. } }) => partial.push(offer_sats),
            Ok(Outcome::Decided { decision: Decision::Gate { .. } }) => gate += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let n_free = (pool_sats / estimated).min(n_clients);
    let left = pool_sats - n_free * estimated;
    assert_eq!(free, n_free, "free decisions");
    if n_free < n_clients && left > 0 {
        assert_eq!(partial, vec![sats(left); (n_clients - n_free) as usize], "partial offers");
    } else {
        assert_eq!(gate, n_clients - n_free, "gates");
    }
    if let Some(b) = &batcher {
        let stats = b.stats();
        assert_eq!(stats.commands, n_clients, "{stats:?}");
        // The pool ran short: some batch needed every stripe and ran again exclusively.
        assert!(stats.exclusive_reruns > 0, "{stats:?}");
        // Lanes never deadlock (nor fail to serialize): no batch was retried.
        assert_eq!(stats.retries, 0, "{stats:?}");
    }
    let t = reference::totals(&db).await.unwrap();
    assert_eq!(t.balance_sats, i64::try_from(left).unwrap());
    assert_eq!(reference::audit(&db).await.unwrap(), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripes_run_short_and_outcomes_stay_exact() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::stripes_run_short_and_outcomes_stay_exact"),
        TIME_LIMIT,
    );
    // 16 stripes of 100: every stripe is short for a 150 after its first grant.
    contend(1_600, 150, 24, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_sats_are_offered_whole() {
    let _limit =
        ledger_pg::testpg::TimeLimit::new(concat!(module_path!(), "::the_last_sats_are_offered_whole"), TIME_LIMIT);
    contend(1_000, 30, 40, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_above_any_stripe_is_still_free_when_the_pool_covers_it() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::an_estimate_above_any_stripe_is_still_free_when_the_pool_covers_it"),
        TIME_LIMIT,
    );
    // 16 stripes of 62 or 63: each 700 needs the whole pool's view.
    contend(1_000, 700, 8, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_two_lanes_run_short_and_outcomes_stay_exact() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::batches_on_two_lanes_run_short_and_outcomes_stay_exact"),
        TIME_LIMIT,
    );
    contend(1_600, 150, 24, Some(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_four_lanes_offer_the_last_sats_whole() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::batches_on_four_lanes_offer_the_last_sats_whole"),
        TIME_LIMIT,
    );
    contend(1_000, 30, 40, Some(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_one_lane_debit_the_whole_pool_for_one_estimate() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::batches_on_one_lane_debit_the_whole_pool_for_one_estimate"),
        TIME_LIMIT,
    );
    contend(1_000, 700, 8, Some(1)).await;
}

/// `expire` at a time past every deadline, again and again while lifecycles run through the
/// batcher: it holds the batch lock alone, so it never deadlocks with a batch; records that
/// come after it are refused; the books balance at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_beside_batches_keeps_the_books() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::expire_beside_batches_keeps_the_books"),
        TIME_LIMIT,
    );
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let db = pg.pool().await.expect("connect");
    ledger_pg::migrate(&db).await.expect("migrate");
    let config = Config { pool_initial_sats: sats(1_000_000), ..Config::default() };
    reference::genesis(&db, &config, TimeMs(0)).await.expect("genesis");
    let batcher =
        Batcher::new(db.clone(), BatcherOptions { lanes: 2, max_batch: 16, ..BatcherOptions::default() }).unwrap();
    let n_users = 20;
    for u in 0..n_users {
        let cmd = Command::SetTier { pubkey: ledger_harness::user_pubkey(u), tier: Tier::Elite };
        batcher.apply(&cmd, TimeMs(1)).await.expect("set_tier");
    }
    let far = TimeMs(config.reservation_ttl_ms + 1_000_000);
    let sweeper = {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            let mut released = 0;
            for _ in 0..40 {
                match batcher.apply(&Command::Expire, far).await.expect("expire").result {
                    Ok(Outcome::Expired { released: r }) => released += r.len(),
                    other => panic!("expire answered {other:?}"),
                }
                tokio::task::yield_now().await;
            }
            released
        })
    };
    let tasks: Vec<_> = (0..n_users)
        .map(|u| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let (mut recorded, mut expired) = (0u64, 0u64);
                for i in 0..30 {
                    let request_id = RequestId(10_000 * (u + 1) + i);
                    let d = Command::Decide {
                        request_id,
                        pubkey: ledger_harness::user_pubkey(u),
                        estimated_sats: sats(20),
                    };
                    batcher.apply(&d, TimeMs(2)).await.expect("decide");
                    let r = Command::Record { request_id, actual_sats: sats(15) };
                    match batcher.apply(&r, TimeMs(3)).await.expect("record").result {
                        Ok(Outcome::Recorded { absorbed_sats, .. }) => recorded += absorbed_sats.to_u64(),
                        Err(Refusal::ReservationExpired) => expired += 1,
                        other => panic!("record answered {other:?}"),
                    }
                }
                (recorded, expired)
            })
        })
        .collect();
    let (mut absorbed, mut n_expired) = (0, 0);
    for t in tasks {
        let (a, e) = t.await.unwrap();
        absorbed += a;
        n_expired += e;
    }
    let released = sweeper.await.unwrap();
    // What the sweeper released is exactly what the records found expired.
    assert_eq!(released as u64, n_expired);
    assert!(n_expired > 0, "the sweeper never overtook a record");
    let t = reference::totals(&db).await.unwrap();
    assert_eq!(t.reserved_sats, 0);
    assert_eq!(t.absorbed_sats, i64::try_from(absorbed).unwrap());
    assert_eq!(t.balance_sats, 1_000_000 - i64::try_from(absorbed).unwrap());
    assert_eq!(reference::audit(&db).await.unwrap(), Vec::new());
    let stats = batcher.stats();
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert_eq!(stats.failed + stats.split, 0, "{stats:?}");
}
