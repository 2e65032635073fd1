//! Request lifecycles per second on one PostgreSQL, in one run: `pg-reference` and `pg-seed`
//! at 1, 8 and 32 clients (decide + record), and as the ceiling a bare single-statement update
//! of one hot row at 32 clients.
//!
//! `cargo run --release -p ledger-pg --example pg_bench [-- SECONDS_PER_CELL]`
//! (uses `DATABASE_URL` when set, a throwaway cluster otherwise).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::{Call, Command, Config, Pubkey, RequestId, Sats, Tier, TimeMs};
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::engine::SeedClient;
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const N_USERS: u64 = 1_000;
const T0: u64 = 1_700_000_000_000;

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("small amount")
}

fn config() -> Config {
    let mut budget_sats = Config::default().budget_sats;
    budget_sats.elite = sats(1_000_000_000);
    Config {
        // Large enough never to run dry, small enough for the seed's `value::int`.
        pool_initial_sats: sats(2_000_000_000),
        budget_sats,
        ..Config::default()
    }
}

#[derive(Clone, Copy)]
enum Subject {
    Reference,
    Batched,
    Seed,
    HotRow,
}

struct Cell {
    lifecycles_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    n_failed: u64,
}

async fn one(subject: Subject, pool: &PgPool, seed: &SeedClient, batcher: &Batcher, client_idx: u64, i: u64) -> bool {
    let request_id = RequestId(client_idx * 10_000_000 + i);
    let pubkey = Pubkey::for_user((client_idx * 7919 + i) % N_USERS);
    let now = TimeMs(T0 + i);
    match subject {
        Subject::Reference => {
            let d = Command::Decide { request_id, pubkey, estimated_sats: sats(10) };
            let r = Command::Record { request_id, actual_sats: sats(8) };
            reference::apply(pool, &d, now).await.is_ok() && reference::apply(pool, &r, now).await.is_ok()
        }
        Subject::Batched => {
            let d = Command::Decide { request_id, pubkey, estimated_sats: sats(10) };
            let r = Command::Record { request_id, actual_sats: sats(8) };
            batcher.apply(&d, now).await.is_ok() && batcher.apply(&r, now).await.is_ok()
        }
        Subject::Seed => {
            let d = Call::Decide { request_id, pubkey, estimated_sats: sats(10) };
            let r = Call::Record { request_id, pubkey, actual_sats: sats(8), reserved_sats: sats(10) };
            let mut j = Vec::new();
            let ok = |r: &ledger_core::Reply| !matches!(r, ledger_core::Reply::Failed { .. });
            ok(&seed.call(&d, now, &mut j).await) && ok(&seed.call(&r, now, &mut j).await)
        }
        Subject::HotRow => sqlx::query("UPDATE bench_hot SET v = v + 1 WHERE id = 1").execute(pool).await.is_ok(),
    }
}

async fn measure(
    subject: Subject,
    pool: PgPool,
    seed: Arc<SeedClient>,
    batcher: Batcher,
    n_clients: u64,
    secs: f64,
) -> Cell {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..n_clients)
        .map(|client_idx| {
            let pool = pool.clone();
            let seed = Arc::clone(&seed);
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let (mut lat, mut failed, mut i) = (Vec::new(), 0u64, 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if !one(subject, &pool, &seed, &batcher, client_idx, i).await {
                        failed += 1;
                    }
                    lat.push(t.elapsed());
                    i += 1;
                }
                (lat, failed)
            })
        })
        .collect();
    let (mut lat, mut n_failed) = (Vec::new(), 0);
    for t in tasks {
        let (l, f) = t.await.expect("client task");
        lat.extend(l);
        n_failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    Cell { lifecycles_per_s: lat.len() as f64 / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99), n_failed }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let secs: f64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let pg = TestPg::new()?;
    let pool = PgPoolOptions::new().max_connections(40).connect_with(pg.connect_options()).await?;
    ledger_pg::migrate(&pool).await?;
    let config = config();
    reference::genesis(&pool, &config, TimeMs(0)).await?;
    sqlx::query("CREATE TABLE bench_hot (id int PRIMARY KEY, v bigint NOT NULL)").execute(&pool).await?;
    sqlx::query("INSERT INTO bench_hot VALUES (1, 0)").execute(&pool).await?;
    let seed = Arc::new(SeedClient::new(pool.clone(), config));
    let lanes: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let batcher = Batcher::new(pool.clone(), BatcherOptions { lanes, ..BatcherOptions::default() })?;
    for u in 0..N_USERS {
        let pubkey = Pubkey::for_user(u);
        reference::apply(&pool, &Command::SetTier { pubkey, tier: Tier::Elite }, TimeMs(T0)).await?;
        seed.call(&Call::SetTier { pubkey, tier: Tier::Elite }, TimeMs(T0), &mut Vec::new()).await;
    }
    println!("| engine | clients | lifecycles/s | p50 ms | p99 ms | failed |");
    println!("|---|---:|---:|---:|---:|---:|");
    let cells = [
        ("pg-reference", Subject::Reference, 1),
        ("pg-reference", Subject::Reference, 8),
        ("pg-reference", Subject::Reference, 32),
        ("pg-reference, batched", Subject::Batched, 1),
        ("pg-reference, batched", Subject::Batched, 8),
        ("pg-reference, batched", Subject::Batched, 32),
        ("pg-seed", Subject::Seed, 1),
        ("pg-seed", Subject::Seed, 8),
        ("pg-seed", Subject::Seed, 32),
        ("hot-row update (ceiling, 1 statement)", Subject::HotRow, 32),
    ];
    for (name, subject, n_clients) in cells {
        let c = measure(subject, pool.clone(), Arc::clone(&seed), batcher.clone(), n_clients, secs).await;
        println!(
            "| {name} | {n_clients} | {:.0} | {:.2} | {:.2} | {} |",
            c.lifecycles_per_s, c.p50_ms, c.p99_ms, c.n_failed
        );
    }
    let findings = reference::audit(&pool).await?;
    println!("reference audit after the run: {} findings", findings.len());
    Ok(())
}
