//! The batcher's lanes hold a connection each between batches; they must not keep the pool
//! from closing.

use std::time::Duration;

use ledger_core::{Command, Config, PaymentId, Sats, Tier, TimeMs};
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_closes_while_a_batcher_is_alive() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::the_pool_closes_while_a_batcher_is_alive"),
        TIME_LIMIT,
    );
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    reference::genesis(&pool, &Config::default(), TimeMs(0)).await.expect("genesis");
    let batcher =
        Batcher::new(pool.clone(), BatcherOptions { lanes: 2, max_batch: 8, ..BatcherOptions::default() }).unwrap();
    // Commands on both lanes, so that each takes its connection.
    for u in 0..4 {
        let command = Command::SetTier { pubkey: ledger_harness::user_pubkey(u), tier: Tier::Elite };
        batcher.apply(&command, TimeMs(1)).await.expect("set_tier");
        let command = Command::Credit { payment_id: PaymentId(u), paid_sats: Sats::new(100).unwrap() };
        batcher.apply(&command, TimeMs(1)).await.expect("credit");
    }
    assert!(pool.size() > pool.num_idle() as u32, "the lanes hold their connections");
    tokio::time::timeout(Duration::from_secs(30), pool.close())
        .await
        .expect("PgPool::close waits for the lanes' connections: the lanes must give them back");
    let after = Command::SetTier { pubkey: ledger_harness::user_pubkey(9), tier: Tier::New };
    assert!(batcher.apply(&after, TimeMs(2)).await.is_err(), "a closed pool answers nothing");
}

/// Overload: fifty times more callers than one lane can hold (a queue of 4 and batches of 4):
/// callers wait for room instead of growing the queue, the queue never holds more than its
/// bound, and every command is answered and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_batcher_keeps_its_queue_bounded_and_loses_nothing() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::an_overloaded_batcher_keeps_its_queue_bounded_and_loses_nothing"),
        TIME_LIMIT,
    );
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    let config = Config::default();
    reference::genesis(&pool, &config, TimeMs(0)).await.expect("genesis");
    let options = BatcherOptions { lanes: 1, max_batch: 4, queue: 4 };
    let batcher = Batcher::new(pool.clone(), options).unwrap();
    let (n_callers, per_caller) = (400u64, 5u64);
    let callers: Vec<_> = (0..n_callers)
        .map(|c| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for k in 0..per_caller {
                    let payment_id = PaymentId(c * per_caller + k + 1);
                    let command = Command::Credit { payment_id, paid_sats: Sats::new(100).unwrap() };
                    let started = std::time::Instant::now();
                    batcher.apply(&command, TimeMs(1)).await.expect("every credit is answered");
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for c in callers {
        slowest = slowest.max(c.await.expect("a caller task"));
    }
    let stats = batcher.stats();
    eprintln!("overload: {stats:?}, slowest call {slowest:?}");
    assert!(stats.queue_peak <= options.queue as u64, "{stats:?}");
    assert_eq!(stats.commands, n_callers * per_caller, "{stats:?}");
    let totals = reference::totals(&pool).await.expect("totals");
    let credit = Sats::new(100).unwrap().share_bps(config.credit_bps).to_u64();
    assert_eq!(totals.credited_sats as u64, n_callers * per_caller * credit, "every credit counted once");
}
