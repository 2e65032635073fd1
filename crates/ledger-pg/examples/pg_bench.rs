//! Request lifecycles per second on one PostgreSQL, in one run: `pg-reference` (one statement
//! per command, and in batches) and `pg-seed`, each at every client count asked for (decide +
//! record), and as the ceiling a bare single-statement update of one hot row at the same counts.
//!
//! ```text
//! cargo run --release -p ledger-pg --example pg_bench -- \
//!     [SECONDS_PER_CELL [LANES [ROUNDS]]] [--clients 1,8,32] [--durable]
//! ```
//!
//! Defaults: 3 s per cell, 2 lanes, 3 rounds, clients 1, 8 and 32. The server is the one
//! `DATABASE_URL` names (a fresh database on it, dropped afterwards), or else a throwaway
//! cluster: `fsync`, `synchronous_commit` and `full_page_writes` off, or all three on with
//! `--durable`. With `--durable` the bench measures only a server that really is durable: it
//! asks the server (`SHOW fsync`, ...) and refuses one that is not. Either way it prints the
//! settings it ran with and the load average during the run.
//!
//! The cells are measured in rounds, each round every cell once in turn, the cells of one client
//! count back to back, so that a slow spell of a shared machine falls on all of them: a cell's
//! rate is its median over the rounds, its latencies are pooled. Every lifecycle has a request
//! id of its own (no cell repeats another's requests, which would be idempotent repeats and
//! cheaper). The ratios the goals ask for are printed under the table, at 32 clients (the
//! throwaway goals) and at 128 (the durable goal). Every cell starts from vacuumed tables. Each
//! client has a connection of its own: the pool holds the largest client count and the lanes.
//!
//! `PG_BENCH_ONLY=SUBSTRING` measures only the cells whose "ENGINE, N clients" contains it;
//! `PG_BENCH_MAX_BATCH=N` sets the most commands in one batch (default the batcher's, 64).
//!
//! Every wait on the server is bounded, and one that lasts says on stderr what it waits for; a
//! lifecycle without an answer in 30 s counts as failed. Passwords in URLs are printed as `***`.
//! Exit status: 0 done, 1 the run failed, 2 refused (bad arguments, a `DATABASE_URL` that is
//! not a PostgreSQL URL, a server that is not durable under `--durable`, or one that allows too
//! few connections).

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_core::{Command, Config, RequestId, Sats, Tier, TimeMs};
use ledger_harness::Call;
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::engine::SeedClient;
use ledger_pg::redacted;
use ledger_pg::reference;
use ledger_pg::testpg::{Durability, TestPg};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

const N_USERS: u64 = 1_000;
const T0: u64 = 1_700_000_000_000;
/// A lifecycle without an answer in this long counts as failed.
const LIFECYCLE_LIMIT: Duration = Duration::from_secs(30);
/// Connecting, a setting, the audit.
const SHORT_LIMIT: Duration = Duration::from_secs(20);
/// Starting a cluster, the schema and the users, a `VACUUM`.
const LONG_LIMIT: Duration = Duration::from_secs(180);
/// The client counts of the goals: the throwaway goals at 32 clients, the durable one at 128.
const GOAL_CLIENTS: u64 = 32;
const DURABLE_GOAL_CLIENTS: u64 = 128;

const USAGE: &str = "\
usage: pg_bench [SECONDS_PER_CELL [LANES [ROUNDS]]] [--clients N,N,...] [--durable]
  SECONDS_PER_CELL  how long each cell runs, per round (default 3)
  LANES             the batcher's lanes: 1, 2, 4, 8 or 16 (default 2)
  ROUNDS            rounds; each measures every cell once (default 3)
  --clients LIST    the client counts, comma-separated (default 1,8,32)
  --durable         measure a durable server (fsync, synchronous_commit and full_page_writes on):
                    a throwaway one, or DATABASE_URL's after checking its settings
DATABASE_URL, when set, names the server (a fresh database is made on it and dropped after).";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Args {
    secs: f64,
    lanes: usize,
    rounds: usize,
    /// Ascending, distinct, each at least 1.
    clients: Vec<u64>,
    durable: bool,
    /// The most commands in one batch (`PG_BENCH_MAX_BATCH`, default the batcher's).
    max_batch: usize,
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut positional = Vec::new();
    let mut clients = None;
    let mut durable = false;
    let mut argv = argv.into_iter();
    while let Some(a) = argv.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--durable" => durable = true,
            "--clients" => {
                let list = argv.next().ok_or("--clients needs a list of client counts, e.g. --clients 1,8,32,128")?;
                clients = Some(parse_clients(&list)?);
            }
            _ if a.starts_with("--clients=") => clients = Some(parse_clients(&a["--clients=".len()..])?),
            _ if a.starts_with('-') && a.parse::<f64>().is_err() => return Err(format!("unknown option {a:?}")),
            _ => positional.push(a),
        }
    }
    if positional.len() > 3 {
        return Err(format!("at most 3 positional arguments, got {}: {positional:?}", positional.len()));
    }
    let secs: f64 = positional_arg(&positional, 0, "SECONDS_PER_CELL", 3.0)?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(format!("SECONDS_PER_CELL must be above 0 and at most 3600, not {secs}"));
    }
    let lanes: usize = positional_arg(&positional, 1, "LANES", 2)?;
    BatcherOptions { lanes, ..BatcherOptions::default() }.check().map_err(|e| format!("LANES: {e}"))?;
    let rounds: usize = positional_arg(&positional, 2, "ROUNDS", 3)?;
    if !(1..=1000).contains(&rounds) {
        return Err(format!("ROUNDS must be 1 to 1000, not {rounds}"));
    }
    let clients = clients.unwrap_or_else(|| vec![1, 8, 32]);
    let max_batch = match std::env::var("PG_BENCH_MAX_BATCH") {
        Ok(s) => s.parse().map_err(|e| format!("PG_BENCH_MAX_BATCH: {s:?}: {e}"))?,
        Err(_) => BatcherOptions::default().max_batch,
    };
    BatcherOptions { lanes, max_batch, ..BatcherOptions::default() }
        .check()
        .map_err(|e| format!("PG_BENCH_MAX_BATCH: {e}"))?;
    Ok(Parsed::Run(Args { secs, lanes, rounds, clients, durable, max_batch }))
}

fn positional_arg<T: std::str::FromStr>(positional: &[String], i: usize, what: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match positional.get(i) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| format!("{what}: {s:?}: {e}")),
    }
}

fn parse_clients(list: &str) -> Result<Vec<u64>, String> {
    let mut clients = Vec::new();
    for part in list.split(',') {
        let n: u64 = part.trim().parse().map_err(|e| format!("--clients: {part:?} is not a client count: {e}"))?;
        if !(1..=1000).contains(&n) {
            return Err(format!("--clients: a client count is 1 to 1000, not {n}"));
        }
        if clients.contains(&n) {
            return Err(format!("--clients: {n} is given twice"));
        }
        clients.push(n);
    }
    clients.sort_unstable();
    Ok(clients)
}

/// Why the bench stopped.
enum Failure {
    /// It would not measure what it was asked to (exit 2).
    Refused(String),
    /// Something failed on the way (exit 1).
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Failed(e.into())
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("pg_bench: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pg_bench: cannot build a tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = rt.block_on(run(args));
    // A wait given up on may have left a blocking task behind (starting a cluster): do not
    // wait for it; the cluster's watchdog removes what it made once this process is gone.
    rt.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(msg)) => {
            eprintln!("pg_bench: refused: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("pg_bench: failed: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Waits for `fut` at most `limit`. When that takes more than two seconds, says on stderr what
/// it waits for, and again every five seconds.
async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    let start = tokio::time::Instant::now();
    let mut fut = std::pin::pin!(fut);
    let mut note_at = Duration::from_secs(2);
    loop {
        tokio::select! {
            v = &mut fut => return Ok(v),
            () = tokio::time::sleep_until(start + note_at.min(limit)) => {
                if start.elapsed() >= limit {
                    anyhow::bail!("gave up waiting for {what} after {} s", limit.as_secs());
                }
                eprintln!(
                    "pg_bench: waiting for {what} ({} s so far, giving up after {} s)",
                    start.elapsed().as_secs(),
                    limit.as_secs()
                );
                note_at += Duration::from_secs(5);
            }
        }
    }
}

/// The 1-minute load average, if the system says.
fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Reference,
    Batched,
    Seed,
    HotRow,
}

impl Subject {
    const ALL: [Subject; 4] = [Subject::Reference, Subject::Batched, Subject::Seed, Subject::HotRow];

    fn name(self) -> &'static str {
        match self {
            Subject::Reference => "pg-reference",
            Subject::Batched => "pg-reference, batched",
            Subject::Seed => "pg-seed",
            Subject::HotRow => "hot-row update (ceiling, 1 statement)",
        }
    }
}

async fn one(subject: Subject, run: &Run, id_base: u64, client_idx: u64, i: u64) -> bool {
    let request_id = RequestId(id_base + client_idx * 10_000_000 + i);
    let pubkey = ledger_harness::user_pubkey((client_idx * 7919 + i) % N_USERS);
    let now = TimeMs(T0 + i);
    match subject {
        Subject::Reference => {
            let d = Command::Decide { request_id, pubkey, estimated_sats: sats(10) };
            let r = Command::Record { request_id, actual_sats: sats(8) };
            reference::apply(&run.pool, &d, now).await.is_ok() && reference::apply(&run.pool, &r, now).await.is_ok()
        }
        Subject::Batched => {
            let d = Command::Decide { request_id, pubkey, estimated_sats: sats(10) };
            let r = Command::Record { request_id, actual_sats: sats(8) };
            run.batcher.apply(&d, now).await.is_ok() && run.batcher.apply(&r, now).await.is_ok()
        }
        Subject::Seed => {
            let d = Call::Decide { request_id, pubkey, estimated_sats: sats(10) };
            let r = Call::Record { request_id, pubkey, actual_sats: sats(8), reserved_sats: sats(10) };
            let mut j = Vec::new();
            let ok = |r: &ledger_harness::Reply| !matches!(r, ledger_harness::Reply::Failed { .. });
            ok(&run.seed.call(&d, now, &mut j).await) && ok(&run.seed.call(&r, now, &mut j).await)
        }
        Subject::HotRow => sqlx::query("UPDATE bench_hot SET v = v + 1 WHERE id = 1").execute(&run.pool).await.is_ok(),
    }
}

struct Run {
    pool: PgPool,
    seed: SeedClient,
    batcher: Batcher,
}

/// One cell's measurement in one round.
struct Measured {
    rate: f64,
    latencies: Vec<Duration>,
    n_failed: u64,
    /// Lifecycles that got no answer within [`LIFECYCLE_LIMIT`] (counted in `n_failed` too).
    n_timed_out: u64,
}

/// Lifecycles of `n_clients` concurrent clients for `secs`, with request ids from `id_base`.
async fn measure(
    run: &Arc<Run>,
    subject: Subject,
    n_clients: u64,
    secs: f64,
    id_base: u64,
) -> anyhow::Result<Measured> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let timed_out = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..n_clients)
        .map(|client_idx| {
            let run = Arc::clone(run);
            let timed_out = Arc::clone(&timed_out);
            tokio::spawn(async move {
                let (mut lat, mut failed, mut i) = (Vec::new(), 0u64, 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match tokio::time::timeout(LIFECYCLE_LIMIT, one(subject, &run, id_base, client_idx, i)).await {
                        Ok(true) => {}
                        Ok(false) => failed += 1,
                        Err(_) => {
                            timed_out.fetch_add(1, Ordering::Relaxed);
                            failed += 1;
                        }
                    }
                    lat.push(t.elapsed());
                    i += 1;
                }
                (lat, failed)
            })
        })
        .collect();
    // The clients stop starting lifecycles at the deadline; what is left is the wait for the
    // last ones. Each lifecycle is bounded, so that wait is too; the limit guards the reasoning.
    tokio::time::sleep_until(deadline.into()).await;
    let what = format!("the last lifecycles of {}, {n_clients} clients", subject.name());
    let joined = bounded(&what, LIFECYCLE_LIMIT + Duration::from_secs(10), async {
        let mut all = Vec::with_capacity(tasks.len());
        for t in tasks {
            all.push(t.await.context("a client task")?);
        }
        anyhow::Ok(all)
    })
    .await??;
    let (mut latencies, mut n_failed) = (Vec::new(), 0);
    for (l, f) in joined {
        latencies.extend(l);
        n_failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n_timed_out = timed_out.load(Ordering::Relaxed);
    Ok(Measured { rate: latencies.len() as f64 / elapsed, latencies, n_failed, n_timed_out })
}

/// The server's durability settings and a few others, as `SHOW` gives them.
async fn server_settings(pool: &PgPool) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "commit_delay", "server_version"]
    {
        let row = bounded(&format!("SHOW {name}"), SHORT_LIMIT, sqlx::query(&format!("SHOW {name}")).fetch_one(pool))
            .await??;
        out.push((name, row.try_get::<String, _>(0)?));
    }
    Ok(out)
}

/// The server's WAL counters (`pg_stat_wal`): records, full-page images, bytes, syncs. The
/// statistics reach the view within a second or so of a backend's commit: for stderr notes only.
async fn wal_counters(pool: &PgPool) -> anyhow::Result<[i64; 4]> {
    let row = bounded(
        "pg_stat_wal",
        SHORT_LIMIT,
        sqlx::query("SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_sync FROM pg_stat_wal").fetch_one(pool),
    )
    .await??;
    Ok([row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?])
}

/// The median of `v` (NaN when empty).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn run(args: Args) -> Result<(), Failure> {
    let durable = args.durable;
    let url = ledger_pg::testpg::database_url_env().map_err(|e| Failure::Refused(e.to_string()))?;
    if let Some(url) = &url {
        // A garbled URL is refused before anything starts, as everywhere else (named, its
        // password hidden): sqlx would otherwise try localhost.
        ledger_pg::database_url_options("DATABASE_URL", url).map_err(Failure::Refused)?;
    }
    let (what, server) = match (&url, durable) {
        (Some(url), _) => (format!("a fresh database on DATABASE_URL's server ({})", redacted(url)), "DATABASE_URL"),
        (None, true) => {
            ("a durable throwaway cluster (initdb, pg_ctl start)".to_owned(), "a durable throwaway cluster")
        }
        (None, false) => ("a throwaway cluster (initdb, pg_ctl start)".to_owned(), "a throwaway cluster"),
    };
    eprintln!("pg_bench: starting {what}");
    let private = url.is_none() && durable;
    // A server that exists answers within seconds; a new cluster runs initdb first.
    let limit = if url.is_some() { SHORT_LIMIT } else { LONG_LIMIT };
    let pg = bounded(
        &what,
        limit,
        tokio::task::spawn_blocking(move || {
            if private {
                TestPg::new_private_cluster_with(Durability::Durable)
            } else {
                TestPg::new()
            }
        }),
    )
    .await?
    .context("the task starting the server")?
    .context("making the bench's database")?;
    let outcome = bench(&pg, server, &args).await;
    eprintln!("pg_bench: removing the bench's database or cluster");
    drop(pg);
    outcome
}

async fn bench(pg: &TestPg, server: &str, args: &Args) -> Result<(), Failure> {
    // A connection per client, the lanes', and one for the bench's own statements.
    let max_clients = *args.clients.last().expect("at least one client count");
    let n_connections = max_clients as u32 + args.lanes as u32 + 1;
    let pool = bounded(
        "the first connection",
        SHORT_LIMIT,
        PgPoolOptions::new()
            .max_connections(n_connections)
            .acquire_timeout(SHORT_LIMIT)
            .connect_with(pg.connect_options()),
    )
    .await?
    .context("connecting")?;
    let outcome = bench_on(pool.clone(), server, args, n_connections).await;
    // The lanes give their connections back when the pool closes.
    if bounded("the pool's connections to close", SHORT_LIMIT, pool.close()).await.is_err() {
        eprintln!("pg_bench: the pool did not close in time; the server is removed anyway");
    }
    outcome
}

async fn bench_on(pool: PgPool, server: &str, args: &Args, n_connections: u32) -> Result<(), Failure> {
    let &Args { secs, lanes, rounds, ref clients, durable, max_batch } = args;
    let settings = server_settings(&pool).await?;
    let setting = |name: &str| settings.iter().find(|(n, _)| *n == name).map_or("?", |(_, v)| v.as_str());
    let described = settings.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", ");
    if durable {
        let lax: Vec<String> = ["fsync", "synchronous_commit", "full_page_writes"]
            .into_iter()
            .filter(|n| setting(n) != "on")
            .map(|n| format!("{n}={}", setting(n)))
            .collect();
        if !lax.is_empty() {
            return Err(Failure::Refused(format!(
                "--durable measures a durable server (fsync, synchronous_commit and full_page_writes on), \
                 and {server} has {}: unset DATABASE_URL to measure a durable throwaway cluster",
                lax.join(", ")
            )));
        }
    }
    let max_connections: u32 = {
        let row = bounded("SHOW max_connections", SHORT_LIMIT, sqlx::query("SHOW max_connections").fetch_one(&pool))
            .await??;
        row.try_get::<String, _>(0)?.parse().context("max_connections")?
    };
    if max_connections < n_connections + 3 {
        return Err(Failure::Refused(format!(
            "{server} allows {max_connections} connections and the bench needs {n_connections} (one per \
             client, one per lane, one of its own), besides the 3 the server reserves: fewer clients, or \
             a server with a larger max_connections"
        )));
    }

    eprintln!("pg_bench: the schema, genesis and {N_USERS} users of each engine");
    let config = config();
    let seed = SeedClient::new(pool.clone(), config);
    let setup = async {
        ledger_pg::migrate(&pool).await?;
        reference::genesis(&pool, &config, TimeMs(0)).await?;
        sqlx::query("CREATE TABLE bench_hot (id int PRIMARY KEY, v bigint NOT NULL)").execute(&pool).await?;
        sqlx::query("INSERT INTO bench_hot VALUES (1, 0)").execute(&pool).await?;
        for u in 0..N_USERS {
            let pubkey = ledger_harness::user_pubkey(u);
            reference::apply(&pool, &Command::SetTier { pubkey, tier: Tier::Elite }, TimeMs(T0)).await?;
            let reply = seed.call(&Call::SetTier { pubkey, tier: Tier::Elite }, TimeMs(T0), &mut Vec::new()).await;
            if let ledger_harness::Reply::Failed { error } = reply {
                anyhow::bail!("pg-seed's set-tier failed: {error}");
            }
        }
        anyhow::Ok(())
    };
    bounded("the schema, genesis and the users", LONG_LIMIT, setup).await??;
    let batcher = Batcher::new(pool.clone(), BatcherOptions { lanes, max_batch, ..BatcherOptions::default() })
        .map_err(|e| Failure::Refused(format!("LANES: {e}")))?;
    let run = Arc::new(Run { pool: pool.clone(), seed, batcher });

    // Cells by subject, then client count: the table's order. Within a round, the cells of one
    // client count are measured back to back, so that each round's ratios at that count come
    // from neighbouring seconds.
    let cells: Vec<(Subject, u64)> = Subject::ALL.iter().flat_map(|&s| clients.iter().map(move |&n| (s, n))).collect();
    let order: Vec<usize> = clients
        .iter()
        .flat_map(|&n| Subject::ALL.iter().map(move |&s| (s, n)))
        .map(|c| cells.iter().position(|&x| x == c).expect("every cell is in the table"))
        .collect();
    // `PG_BENCH_ONLY=batched` or `PG_BENCH_ONLY="32 clients"` (a substring of "ENGINE, N
    // clients") measures only those cells.
    let only = std::env::var("PG_BENCH_ONLY").ok();
    let keep = |s: Subject, n: u64| only.as_deref().is_none_or(|o| format!("{}, {n} clients", s.name()).contains(o));
    let mut rates = vec![Vec::new(); cells.len()];
    let mut lats = vec![Vec::new(); cells.len()];
    let mut failed = vec![0u64; cells.len()];
    let mut rounds_rates = vec![vec![f64::NAN; cells.len()]; rounds];
    let load_start = load_1min();
    let mut loads = Vec::new();
    for (round, this_round) in rounds_rates.iter_mut().enumerate() {
        for &k in &order {
            let (subject, n_clients) = cells[k];
            if !keep(subject, n_clients) {
                continue;
            }
            let name = subject.name();
            // As pgbench does: each cell starts from vacuumed tables, so that one cell's dead
            // rows (and an autovacuum they set off) do not fall on the next.
            let vacuum = format!("VACUUM (ANALYZE) before {name}, {n_clients} clients");
            bounded(&vacuum, LONG_LIMIT, sqlx::raw_sql("VACUUM (ANALYZE)").execute(&run.pool)).await??;
            let id_base = (round * cells.len() + k) as u64 * 1_000_000_000;
            let (before, wal_before) = (run.batcher.stats(), wal_counters(&run.pool).await?);
            let m = measure(&run, subject, n_clients, secs, id_base).await?;
            let (after, wal_after) = (run.batcher.stats(), wal_counters(&run.pool).await?);
            let wal = |i: usize| (wal_after[i] - wal_before[i]) as f64;
            let n_lifecycles = m.latencies.len().max(1) as f64;
            let mut note = format!(
                "{:.1} WAL syncs, {:.0} bytes and {:.2} full-page images per lifecycle",
                wal(3) / n_lifecycles,
                wal(2) / n_lifecycles,
                wal(1) / n_lifecycles
            );
            if after.batches > before.batches {
                let (n, c) = (after.batches - before.batches, after.commands - before.commands);
                note = format!(
                    "{n} batches, {:.1} commands and {:.2} WAL syncs per batch; {note}",
                    c as f64 / n as f64,
                    wal(3) / n as f64
                );
            }
            eprintln!("  {note}");
            if m.n_timed_out > 0 {
                eprintln!("  {} lifecycles got no answer within {} s", m.n_timed_out, LIFECYCLE_LIMIT.as_secs());
            }
            eprintln!("round {}/{rounds}: {name}, {n_clients} clients: {:.0}/s", round + 1, m.rate);
            rates[k].push(m.rate);
            this_round[k] = m.rate;
            lats[k].extend(m.latencies);
            failed[k] += m.n_failed;
            loads.extend(load_1min());
        }
    }

    println!(
        "server: {server}, {described}; pool of {n_connections} connections; {lanes} lanes, batches of at most {max_batch}; load average (1 min) \
         {} at the start, {} during the run",
        load_start.map_or("unknown".into(), |l| format!("{l:.2}")),
        if loads.is_empty() {
            "unknown".to_owned()
        } else {
            let (lo, hi) = loads.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
            format!("{lo:.2} to {hi:.2}")
        }
    );
    println!();
    println!("| engine | clients | lifecycles/s | p50 ms | p99 ms | failed |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut medians = Vec::with_capacity(cells.len());
    for (k, &(subject, n_clients)) in cells.iter().enumerate() {
        if !keep(subject, n_clients) {
            medians.push(f64::NAN);
            continue;
        }
        let rate = median(&mut rates[k]);
        medians.push(rate);
        let lat = &mut lats[k];
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
        println!(
            "| {} | {n_clients} | {rate:.0} | {:.2} | {:.2} | {} |",
            subject.name(),
            pct(0.5),
            pct(0.99),
            failed[k]
        );
    }

    let cell = |s: Subject, n: u64| cells.iter().position(|&c| c == (s, n));
    // `a / b` of the medians, and of each round: None unless both cells were measured.
    let ratio = |a: (Subject, u64), b: (Subject, u64)| -> Option<(f64, Vec<f64>)> {
        let (a, b) = (cell(a.0, a.1)?, cell(b.0, b.1)?);
        let of_medians = medians[a] / medians[b];
        let mut per_round: Vec<f64> = rounds_rates.iter().map(|r| r[a] / r[b]).collect();
        per_round.sort_by(f64::total_cmp);
        (!of_medians.is_nan()).then_some((of_medians, per_round))
    };
    let show = |r: &Option<(f64, Vec<f64>)>| match r {
        None => "not measured".to_owned(),
        Some((of_medians, per_round)) => {
            let list = per_round.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
            format!("{of_medians:.2} of medians; median of rounds {:.2} [{list}]", per_round[per_round.len() / 2])
        }
    };
    let median_of_rounds = |r: &Option<(f64, Vec<f64>)>| r.as_ref().map(|(_, v)| v[v.len() / 2]);
    let (reference, batched, seed, hot) = (Subject::Reference, Subject::Batched, Subject::Seed, Subject::HotRow);
    let server_kind = if durable { "durable" } else { "fsync=off" };

    println!();
    let n = GOAL_CLIENTS;
    if clients.contains(&n) {
        println!("at {n} clients ({secs} s per cell, {rounds} rounds, {lanes} lanes, {server_kind}):");
        println!("- batched pg-reference / pg-seed: {} (goal >= 5)", show(&ratio((batched, n), (seed, n))));
        println!("- ceiling / batched pg-reference: {} (goal <= 2)", show(&ratio((hot, n), (batched, n))));
        let of_medians = |r: Option<(f64, Vec<f64>)>| r.map_or("not measured".to_owned(), |(m, _)| format!("{m:.2}"));
        println!(
            "- unbatched pg-reference / pg-seed: {}; ceiling / unbatched: {}",
            of_medians(ratio((reference, n), (seed, n))),
            of_medians(ratio((hot, n), (reference, n)))
        );
    }
    let n = DURABLE_GOAL_CLIENTS;
    if clients.contains(&n) {
        let over_hot = ratio((batched, n), (hot, n));
        let over_seed = ratio((batched, n), (seed, n));
        println!("at {n} clients ({secs} s per cell, {rounds} rounds, {lanes} lanes, {server_kind}):");
        println!("- batched pg-reference / hot-row ceiling: {} (durable goal >= 2)", show(&over_hot));
        println!("- batched pg-reference / pg-seed: {} (durable goal >= 10)", show(&over_seed));
        let verdict = match (median_of_rounds(&over_hot), median_of_rounds(&over_seed)) {
            _ if !durable => "not judged: the durable goal is judged on a durable server (--durable)".to_owned(),
            (Some(h), Some(s)) if h >= 2.0 && s >= 10.0 => "met (both medians of rounds)".to_owned(),
            (Some(h), Some(s)) => format!(
                "not met ({})",
                [(h < 2.0).then(|| format!("{h:.2}x the ceiling")), (s < 10.0).then(|| format!("{s:.2}x pg-seed"))]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => "not judged: a cell it compares was not measured".to_owned(),
        };
        println!("- durable goal: {verdict}");
    } else if durable {
        println!("the durable goal is at {n} clients, which --clients did not ask for");
    }
    let findings = bounded("the reference audit", LONG_LIMIT, reference::audit(&pool)).await??;
    println!("reference audit after the run: {} findings", findings.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let Parsed::Run(a) = parse(&[]).unwrap() else { panic!() };
        assert_eq!((a.secs, a.lanes, a.rounds, a.clients, a.durable), (3.0, 2, 3, vec![1, 8, 32], false));
        let Parsed::Run(a) = parse(&["2", "4", "5", "--clients", "128,8", "--durable"]).unwrap() else { panic!() };
        assert_eq!((a.secs, a.lanes, a.rounds, a.clients, a.durable), (2.0, 4, 5, vec![8, 128], true));
        let Parsed::Run(a) = parse(&["--clients=32"]).unwrap() else { panic!() };
        assert_eq!(a.clients, vec![32]);
        assert_eq!(parse(&["--help"]), Ok(Parsed::Help));
        for bad in [
            &["0"][..],
            &["-1"],
            &["nan"],
            &["3", "3"],
            &["3", "2", "0"],
            &["3", "2", "3", "4"],
            &["--clients"],
            &["--clients", "1,,8"],
            &["--clients", "0"],
            &["--clients", "8,8"],
            &["--fast"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redacted("postgres://u:hunter2@127.0.0.1:1/x"), "postgres://u:***@127.0.0.1:1/x");
        assert_eq!(redacted("postgres://h/db?user=u&password=x"), "postgres://h/db?user=u&password=***");
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
    }
}
