//! Request lifecycles per second on one PostgreSQL, in one run: `pg-reference` and `pg-seed`
//! at 1, 8 and 32 clients (decide + record), and as the ceiling a bare single-statement update
//! of one hot row at 32 clients.
//!
//! `cargo run --release -p ledger-pg --example pg_bench [-- SECONDS_PER_CELL [LANES [ROUNDS]]]`
//! (defaults 3 s, 2 lanes, 3 rounds; uses `DATABASE_URL` when set, a throwaway cluster
//! otherwise).
//!
//! The cells are measured in rounds, each round every cell once in turn, so that a slow spell of
//! a shared machine falls on all of them: a cell's rate is its median over the rounds, its
//! latencies are pooled. Every lifecycle has a request id of its own (no cell repeats another's
//! requests, which would be idempotent repeats and cheaper). The ratios the goals ask for are
//! printed under the table. Every cell starts from vacuumed tables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::{Command, Config, RequestId, Sats, Tier, TimeMs};
use ledger_harness::Call;
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

async fn one(
    subject: Subject,
    pool: &PgPool,
    seed: &SeedClient,
    batcher: &Batcher,
    id_base: u64,
    client_idx: u64,
    i: u64,
) -> bool {
    let request_id = RequestId(id_base + client_idx * 10_000_000 + i);
    let pubkey = ledger_harness::user_pubkey((client_idx * 7919 + i) % N_USERS);
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
            let ok = |r: &ledger_harness::Reply| !matches!(r, ledger_harness::Reply::Failed { .. });
            ok(&seed.call(&d, now, &mut j).await) && ok(&seed.call(&r, now, &mut j).await)
        }
        Subject::HotRow => sqlx::query("UPDATE bench_hot SET v = v + 1 WHERE id = 1").execute(pool).await.is_ok(),
    }
}

struct Run {
    pool: PgPool,
    seed: Arc<SeedClient>,
    batcher: Batcher,
}

/// Lifecycles of `n_clients` concurrent clients for `secs`, with request ids from `id_base`:
/// the rate, every latency, and how many failed.
async fn measure(run: &Run, subject: Subject, n_clients: u64, secs: f64, id_base: u64) -> (f64, Vec<Duration>, u64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..n_clients)
        .map(|client_idx| {
            let pool = run.pool.clone();
            let seed = Arc::clone(&run.seed);
            let batcher = run.batcher.clone();
            tokio::spawn(async move {
                let (mut lat, mut failed, mut i) = (Vec::new(), 0u64, 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if !one(subject, &pool, &seed, &batcher, id_base, client_idx, i).await {
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
    (lat.len() as f64 / elapsed, lat, n_failed)
}

fn arg<T: std::str::FromStr>(n: usize, what: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("argument {n} ({what}): {s:?}: {e}")),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let secs: f64 = arg(1, "seconds per cell", 3.0)?;
    let lanes: usize = arg(2, "lanes", 2)?;
    let rounds: usize = arg(3, "rounds", 3)?;
    anyhow::ensure!(secs > 0.0 && secs.is_finite(), "argument 1 (seconds per cell) must be positive");
    anyhow::ensure!(rounds >= 1, "argument 3 (rounds) must be at least 1");
    let pg = TestPg::new()?;
    let pool = PgPoolOptions::new().max_connections(40).connect_with(pg.connect_options()).await?;
    ledger_pg::migrate(&pool).await?;
    let config = config();
    reference::genesis(&pool, &config, TimeMs(0)).await?;
    sqlx::query("CREATE TABLE bench_hot (id int PRIMARY KEY, v bigint NOT NULL)").execute(&pool).await?;
    sqlx::query("INSERT INTO bench_hot VALUES (1, 0)").execute(&pool).await?;
    let seed = Arc::new(SeedClient::new(pool.clone(), config));
    let batcher = Batcher::new(pool.clone(), BatcherOptions { lanes, ..BatcherOptions::default() })?;
    for u in 0..N_USERS {
        let pubkey = ledger_harness::user_pubkey(u);
        reference::apply(&pool, &Command::SetTier { pubkey, tier: Tier::Elite }, TimeMs(T0)).await?;
        seed.call(&Call::SetTier { pubkey, tier: Tier::Elite }, TimeMs(T0), &mut Vec::new()).await;
    }
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
    // `PG_BENCH_ONLY=batched` or `PG_BENCH_ONLY="32 clients"` (a substring of "ENGINE, N
    // clients") measures only those cells.
    let only = std::env::var("PG_BENCH_ONLY").ok();
    let keep = |name: &str, n: u64| only.as_deref().is_none_or(|o| format!("{name}, {n} clients").contains(o));
    let run = Run { pool: pool.clone(), seed, batcher };
    let mut rates = vec![Vec::new(); cells.len()];
    let mut lats = vec![Vec::new(); cells.len()];
    let mut failed = vec![0u64; cells.len()];
    let mut rounds_rates = vec![[f64::NAN; 10]; rounds];
    // The cells the goals compare (pg-seed, unbatched and batched pg-reference at 32 clients,
    // the ceiling) are measured back to back in each round, so that each round's ratios come
    // from neighbouring seconds.
    const ORDER: [usize; 10] = [0, 1, 3, 4, 6, 7, 8, 2, 5, 9];
    for (round, this_round) in rounds_rates.iter_mut().enumerate() {
        for k in ORDER {
            let (name, subject, n_clients) = cells[k];
            if !keep(name, n_clients) {
                continue;
            }
            // As pgbench does: each cell starts from vacuumed tables, so that one cell's dead
            // rows (and an autovacuum they set off) do not fall on the next.
            sqlx::raw_sql("VACUUM (ANALYZE)").execute(&run.pool).await?;
            let id_base = (round * cells.len() + k) as u64 * 1_000_000_000;
            let before = run.batcher.stats();
            let (rate, lat, n_failed) = measure(&run, subject, n_clients, secs, id_base).await;
            let after = run.batcher.stats();
            if after.batches > before.batches {
                let (n, c) = (after.batches - before.batches, after.commands - before.commands);
                eprintln!("  {n} batches, {:.1} commands per batch", c as f64 / n as f64);
            }
            eprintln!("round {}/{rounds}: {name}, {n_clients} clients: {rate:.0}/s", round + 1);
            rates[k].push(rate);
            this_round[k] = rate;
            lats[k].extend(lat);
            failed[k] += n_failed;
        }
    }
    println!("| engine | clients | lifecycles/s | p50 ms | p99 ms | failed |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut median = Vec::with_capacity(cells.len());
    for (k, &(name, _, n_clients)) in cells.iter().enumerate() {
        if !keep(name, n_clients) {
            median.push(f64::NAN);
            continue;
        }
        rates[k].sort_by(f64::total_cmp);
        let rate = rates[k][rates[k].len() / 2];
        median.push(rate);
        let lat = &mut lats[k];
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
        println!("| {name} | {n_clients} | {rate:.0} | {:.2} | {:.2} | {} |", pct(0.5), pct(0.99), failed[k]);
    }
    let (direct, batched, seed32, ceiling) = (median[2], median[5], median[8], median[9]);
    let per_round = |f: &dyn Fn(&[f64; 10]) -> f64| {
        let mut v: Vec<f64> = rounds_rates.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let list = v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
        format!("median of rounds {:.2} [{list}]", v[v.len() / 2])
    };
    println!();
    println!("at 32 clients ({secs} s per cell, {rounds} rounds, {lanes} lanes):");
    println!(
        "- batched pg-reference / pg-seed: {:.2} of medians; {} (goal >= 5)",
        batched / seed32,
        per_round(&|r| r[5] / r[8])
    );
    println!(
        "- ceiling / batched pg-reference: {:.2} of medians; {} (goal <= 2)",
        ceiling / batched,
        per_round(&|r| r[9] / r[5])
    );
    println!(
        "- unbatched pg-reference / pg-seed: {:.2}; ceiling / unbatched: {:.2}",
        direct / seed32,
        ceiling / direct
    );
    let findings = reference::audit(&pool).await?;
    println!("reference audit after the run: {} findings", findings.len());
    Ok(())
}
