//! The batcher's lanes hold a connection each between batches; they must not keep the pool
//! from closing.

use std::time::Duration;

use ledger_core::{Command, Config, PaymentId, Sats, Tier, TimeMs};
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_closes_while_a_batcher_is_alive() {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start for this test");
    let pool = pg.pool().await.expect("connect");
    ledger_pg::migrate(&pool).await.expect("migrate");
    reference::genesis(&pool, &Config::default(), TimeMs(0)).await.expect("genesis");
    let batcher = Batcher::new(pool.clone(), BatcherOptions { lanes: 2, max_batch: 8 }).unwrap();
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
