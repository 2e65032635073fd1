//! `ledger-sim` on a real PostgreSQL: the `pg-reference` and `pg-seed` engines of `ledger-pg`.
//!
//! - **Lockstep** (`run --engine pg-reference|pg-seed`): the seeded scheduler of [`crate::gen`]
//!   drives the database one statement at a time, exactly as it drives the in-memory engines.
//!   For `pg-reference` every step also runs on the in-memory reference engine through
//!   [`Differential`], and the first disagreement of a reply, a movement or an observed balance
//!   is reported as a violation named `divergence`.
//! - **Concurrent** (`--concurrency N`): N tokio tasks on one connection pool run job and session
//!   flows drawn from the seed, with real concurrency, and record every call and its outcome.
//!   The invariants are checked on the final database (the audits) and on the history
//!   (`final_checks`). The faults of the real server live here: killed connections, lost
//!   acknowledgements and a server restart. The movements checked come from the server's
//!   `pool_journal` for `pg-reference` (so a call that committed but was cut off before it
//!   answered still counts), and from the replies for `pg-seed`, which keeps no journal: under
//!   `--kill-connections` a seed call cut off after its commit is missing from its history.
//! - **Audit** (`audit --database-url URL`): the read-only I1/I2/I5 check of a live database.
//!
//! Every seed gets a fresh database. This module is not a load generator: its schedules are
//! seeded, but in concurrent mode the interleaving is the server's, so only lockstep runs are
//! reproducible bit for bit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_core::{
    Call, Command, Config, Decision, Engine, Invariant, Movement, Observed, Outcome, PaymentId, Pubkey,
    ReferenceEngine, Refusal, Reply, RequestId, Sats, SeedEngine, Tier, TimeMs, Violation,
};
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::engine::{PgReferenceEngine, PgSeedEngine, SeedClient};
use ledger_pg::reference;
use ledger_pg::testpg::TestPg;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Row};

use crate::cli::{EngineKind, RunReport, ViolationReport};
use crate::exec::{Coverage, RunResult, EPOCH};
use crate::gen::{replay, run_seed, SchedulerKind};
use crate::history::History;
use crate::scenario::Scenario;
use crate::shrink::shrink;

/// The options of `run` that only Postgres engines take.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct PgArgs {
    /// The PostgreSQL database to run on. It is reset (everything in its `public` schema is
    /// dropped) before each seed: give it a throwaway database. Without it, each seed gets a
    /// fresh database on `DATABASE_URL`'s server, or on a private throwaway cluster.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Run N concurrent clients on a connection pool instead of the lockstep scheduler.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Concurrent mode: probability per call that a connection is killed
    /// (`pg_terminate_backend`) in the middle of a transaction.
    #[arg(long, default_value_t = 0.0)]
    pub kill_connections: f64,
    /// Concurrent mode: probability per call that it commits but the caller is told it failed,
    /// and retries.
    #[arg(long, default_value_t = 0.0)]
    pub lost_ack: f64,
    /// Concurrent mode: restart the server after this many calls (a private cluster only).
    #[arg(long)]
    pub restart_server_at: Option<u64>,
    /// Concurrent mode, pg-reference: send the clients' commands in batches
    /// (`ledger_pg::batch`) on N lanes (1, 2, 4, 8 or 16), each a connection of its own,
    /// instead of one call per command.
    #[arg(long, value_name = "N")]
    pub batch_lanes: Option<usize>,
}

impl PgArgs {
    /// True when any Postgres option was given.
    pub fn is_set(&self) -> bool {
        self.database_url.is_some()
            || self.concurrency.is_some()
            || self.kill_connections > 0.0
            || self.lost_ack > 0.0
            || self.restart_server_at.is_some()
            || self.batch_lanes.is_some()
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (name, rate) in [("--kill-connections", self.kill_connections), ("--lost-ack", self.lost_ack)] {
            if !(0.0..=1.0).contains(&rate) {
                anyhow::bail!("{name} {rate}: must be a probability in 0..=1");
            }
        }
        let faults = self.kill_connections > 0.0 || self.lost_ack > 0.0 || self.restart_server_at.is_some();
        if faults && self.concurrency.is_none() {
            anyhow::bail!("--kill-connections, --lost-ack and --restart-server-at need --concurrency N");
        }
        if self.restart_server_at.is_some() && self.database_url.is_some() {
            anyhow::bail!("--restart-server-at needs a private cluster: leave out --database-url");
        }
        if self.concurrency == Some(0) {
            anyhow::bail!("--concurrency must be at least 1");
        }
        if let Some(n) = self.batch_lanes {
            if self.concurrency.is_none() {
                anyhow::bail!("--batch-lanes needs --concurrency N");
            }
            if let Err(e) = (BatcherOptions { lanes: n, ..BatcherOptions::default() }).check() {
                anyhow::bail!("--batch-lanes {n}: {e}");
            }
        }
        Ok(())
    }
}

/// What `run` hands to [`run`] for a Postgres engine.
#[derive(Debug)]
pub struct PgRun<'a> {
    /// `PgReference` or `PgSeed`.
    pub kind: EngineKind,
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Half-open range of seeds.
    pub seeds: (u64, u64),
    /// Lockstep scheduler.
    pub scheduler: SchedulerKind,
    /// Stop at the first seed with a violation.
    pub fail_fast: bool,
    /// Where traces are written.
    pub trace_dir: &'a Path,
    /// Shrinker budget (lockstep counterexamples are shrunk on the in-memory twin).
    pub max_replays: usize,
}

// ── Databases ───────────────────────────────────────────────────────────────────────────────

/// Where each seed's fresh database comes from.
enum Server {
    /// A database the user gave: reset before each seed.
    Url(String),
    /// Fresh databases on `DATABASE_URL`'s server or the shared throwaway cluster, kept alive
    /// by `_keep` for the whole run.
    Test { _keep: Box<TestPg> },
    /// A private cluster per seed (for server restarts).
    Private,
}

/// One seed's database.
struct Db {
    url: String,
    test: Option<Arc<TestPg>>,
}

impl Server {
    fn new(args: &PgArgs) -> anyhow::Result<Server> {
        if let Some(url) = &args.database_url {
            return Ok(Server::Url(url.clone()));
        }
        if args.restart_server_at.is_some() {
            return Ok(Server::Private);
        }
        let keep = TestPg::new().map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
        Ok(Server::Test { _keep: Box::new(keep) })
    }

    fn fresh(&self) -> anyhow::Result<Db> {
        match self {
            Server::Url(url) => {
                let url2 = url.clone();
                block_on(async move {
                    let pool = PgPoolOptions::new().max_connections(1).connect(&url2).await?;
                    ledger_pg::reset_database(&pool).await?;
                    pool.close().await;
                    Ok::<_, sqlx::Error>(())
                })?
                .map_err(|e| anyhow::anyhow!("resetting {url}: {e}"))?;
                Ok(Db { url: url.clone(), test: None })
            }
            Server::Test { .. } => {
                let t = TestPg::new().map_err(|e| anyhow::anyhow!("cannot create a database: {e}"))?;
                Ok(Db { url: t.url().to_owned(), test: Some(Arc::new(t)) })
            }
            Server::Private => {
                let t = TestPg::new_private_cluster().map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
                Ok(Db { url: t.url().to_owned(), test: Some(Arc::new(t)) })
            }
        }
    }
}

/// Runs `fut` on a runtime of its own, on a side thread, so that it can be called from
/// anywhere (including from inside another runtime).
fn block_on<F>(fut: F) -> anyhow::Result<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        Ok(rt.block_on(fut))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the database thread panicked"))?
}

// ── Differential testing ────────────────────────────────────────────────────────────────────

/// The first disagreement between the two engines of a [`Differential`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// How many engine steps had been taken (0-based index of the step that disagreed).
    pub step: u64,
    /// What disagreed, with both sides.
    pub detail: String,
}

/// An engine that steps `A` (the one under test) and `B` (the oracle) together and remembers
/// the first step at which their replies, movements, observed state or daily remaining
/// differ. It answers as `A` does, so the run goes on as it would on `A` alone.
///
/// Both engines must take the same number of steps per call (`pg-reference` and `reference`
/// take one). A failed step of `A` (a database error) is not compared: `B` is not stepped, and
/// the caller's retry begins a new operation on both.
pub struct Differential<A: Engine, B: Engine> {
    a: A,
    b: B,
    n_steps: u64,
    found: Arc<Mutex<Option<Divergence>>>,
}

/// An operation in flight on both engines of a [`Differential`].
#[derive(Debug)]
pub struct DiffOp<A, B> {
    call: Call,
    a: A,
    b: B,
}

impl<A: Engine, B: Engine> Differential<A, B> {
    /// Compare `a` with `b`; the first divergence is written to `found`.
    pub fn new(a: A, b: B, found: Arc<Mutex<Option<Divergence>>>) -> Differential<A, B> {
        assert_eq!(a.config(), b.config(), "both engines must run under the same config");
        Differential { a, b, n_steps: 0, found }
    }

    fn diverge(&self, detail: impl FnOnce() -> String) {
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        if found.is_none() {
            *found = Some(Divergence { step: self.n_steps, detail: detail() });
        }
    }
}

impl<A: Engine, B: Engine> Engine for Differential<A, B> {
    type Op = DiffOp<A::Op, B::Op>;

    fn name(&self) -> &'static str {
        self.a.name()
    }

    fn config(&self) -> &Config {
        self.a.config()
    }

    fn begin(&mut self, call: &Call) -> Self::Op {
        DiffOp { call: call.clone(), a: self.a.begin(call), b: self.b.begin(call) }
    }

    fn step(&mut self, op: &mut Self::Op, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        let from = journal.len();
        let ra = self.a.step(&mut op.a, now, journal);
        if let Some(Reply::Failed { .. }) = ra {
            self.n_steps += 1;
            return ra;
        }
        let mut jb = Vec::new();
        let rb = self.b.step(&mut op.b, now, &mut jb);
        if ra != rb {
            self.diverge(|| {
                format!("{:?}: {} replied {ra:?}, {} replied {rb:?}", op.call, self.a.name(), self.b.name())
            });
        } else if journal[from..] != jb[..] {
            self.diverge(|| {
                format!("{:?}: {} moved {:?}, {} moved {jb:?}", op.call, self.a.name(), &journal[from..], self.b.name())
            });
        }
        self.n_steps += 1;
        ra
    }

    fn observe(&self) -> Observed {
        let (oa, ob) = (self.a.observe(), self.b.observe());
        if oa != ob {
            self.diverge(|| format!("after the step, {} shows {oa:?}, {} shows {ob:?}", self.a.name(), self.b.name()));
        }
        oa
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        let (da, db) = (self.a.daily_remaining(pubkey, now), self.b.daily_remaining(pubkey, now));
        if da != db {
            self.diverge(|| {
                format!("daily remaining of {pubkey:?}: {} says {da:?}, {} says {db:?}", self.a.name(), self.b.name())
            });
        }
        da
    }
}

// ── Lockstep runs ───────────────────────────────────────────────────────────────────────────

/// Runs the seeds of `run` on PostgreSQL, sequentially, each on a fresh database.
pub fn run(run: &PgRun<'_>, args: &PgArgs) -> anyhow::Result<RunReport> {
    args.validate()?;
    if args.batch_lanes.is_some() && run.kind != EngineKind::PgReference {
        anyhow::bail!("--batch-lanes: only pg-reference runs in batches");
    }
    let server = Server::new(args)?;
    match args.concurrency {
        Some(n) => concurrent_run(run, args, &server, n),
        None => lockstep_run(run, &server),
    }
}

fn engine_name(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::PgReference => "pg-reference",
        EngineKind::PgSeed => "pg-seed",
        _ => unreachable!("only Postgres engines run here"),
    }
}

struct SeedRun {
    seed: u64,
    result: RunResult,
    history: History,
    divergence: Option<Divergence>,
}

/// One lockstep seed on the database at `url`.
fn lockstep_seed(kind: EngineKind, url: &str, s: &Scenario, seed: u64, sched: SchedulerKind) -> SeedRun {
    let name = engine_name(kind);
    let found = Arc::new(Mutex::new(None));
    let (result, history) = match kind {
        EngineKind::PgSeed => run_seed(
            |c| PgSeedEngine::connect_url(url, c).unwrap_or_else(|e| panic!("pg-seed cannot connect to {url}: {e}")),
            name,
            s,
            seed,
            sched,
        ),
        _ => run_seed(
            |c| {
                let db = PgReferenceEngine::connect_url(url, c)
                    .unwrap_or_else(|e| panic!("pg-reference cannot connect to {url}: {e}"));
                Differential::new(db, ReferenceEngine::new(c), Arc::clone(&found))
            },
            name,
            s,
            seed,
            sched,
        ),
    };
    let divergence = found.lock().unwrap_or_else(|p| p.into_inner()).take();
    SeedRun { seed, result, history, divergence }
}

fn lockstep_run(run: &PgRun<'_>, server: &Server) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let mut runs = Vec::new();
    for seed in run.seeds.0..run.seeds.1 {
        let db = server.fresh()?;
        let r = lockstep_seed(run.kind, &db.url, run.scenario, seed, run.scheduler);
        drop(db);
        let bad = !r.result.violations.is_empty() || r.divergence.is_some();
        runs.push(r);
        if bad && run.fail_fast {
            break;
        }
    }
    let elapsed = started.elapsed();
    let mut coverage = Coverage::default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for r in &runs {
        coverage.merge(&r.result.coverage);
        hash = (hash ^ r.result.trace_hash).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let steps: u64 = runs.iter().map(|r| r.result.n_events).sum();
    let mut violations = Vec::new();
    for inv in Invariant::ALL {
        let breaking: Vec<&SeedRun> =
            runs.iter().filter(|r| r.result.violations.iter().any(|v| v.invariant == inv)).collect();
        if let Some(first) = breaking.first() {
            let seeds = breaking.iter().map(|r| r.seed).collect();
            violations.push(lockstep_counterexample(run, first, inv, seeds)?);
        }
    }
    let diverging: Vec<&SeedRun> = runs.iter().filter(|r| r.divergence.is_some()).collect();
    if let Some(first) = diverging.first() {
        let d = first.divergence.as_ref().expect("filtered");
        let path = run.trace_dir.join(format!("{}-seed{}-divergence.jsonl", engine_name(run.kind), first.seed));
        crate::cli::write_trace(&first.history, &path)?;
        violations.push(ViolationReport {
            invariant: "divergence".to_owned(),
            name: "pg-reference disagrees with the reference engine".to_owned(),
            seed: first.seed,
            seeds: diverging.iter().map(|r| r.seed).collect(),
            detail: format!("at engine step {}: {}", d.step, d.detail),
            shrunk_flows: first.history.flows.len(),
            shrunk_events: first.history.events.len(),
            steps: Vec::new(),
            trace: path.display().to_string(),
            replay: format!("ledger-sim replay {}", path.display()),
        });
    }
    Ok(RunReport {
        engine: engine_name(run.kind).to_owned(),
        scheduler: run.scheduler,
        seeds: format!("{}..{}", run.seeds.0, runs.last().map_or(run.seeds.1, |r| r.seed + 1)),
        steps,
        requests: runs.iter().map(|r| r.result.n_requests).sum(),
        violations,
        coverage: coverage.with_all_marks(),
        trace_hash: format!("{hash:016x}"),
        steps_per_sec: (steps as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
    })
}

/// Shrinks a lockstep counterexample on the in-memory twin of the engine (the seed model for
/// `pg-seed`, the reference for `pg-reference`: `ledger-pg`'s differential tests hold them
/// step for step equal), then replays the shrunk trace on a fresh database to confirm it.
fn lockstep_counterexample(
    run: &PgRun<'_>,
    first: &SeedRun,
    inv: Invariant,
    seeds: Vec<u64>,
) -> anyhow::Result<ViolationReport> {
    let shrunk = match run.kind {
        EngineKind::PgSeed => shrink(&SeedEngine::new, &first.history, inv, run.max_replays),
        _ => shrink(&ReferenceEngine::new, &first.history, inv, run.max_replays),
    };
    let mut h = shrunk.history;
    let (mut confirmed, _) = replay_pg(run.kind, &h, true)?;
    if !confirmed.violations.iter().any(|v| v.invariant == inv) {
        // The twin's shrink does not reproduce on the server: report the whole seed.
        h = first.history.clone();
        confirmed = replay_pg(run.kind, &h, true)?.0;
    }
    let detail = confirmed
        .violations
        .iter()
        .chain(&first.result.violations)
        .find(|v| v.invariant == inv)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let path = run.trace_dir.join(format!("{}-seed{}-{}.jsonl", engine_name(run.kind), first.seed, inv.id()));
    crate::cli::write_trace(&h, &path)?;
    Ok(ViolationReport {
        invariant: inv.id().to_owned(),
        name: inv.name().to_owned(),
        seed: first.seed,
        seeds,
        detail,
        shrunk_flows: h.flows.len(),
        shrunk_events: h.events.len(),
        steps: confirmed.log,
        trace: path.display().to_string(),
        replay: format!("ledger-sim replay {}", path.display()),
    })
}

fn replay_pg(kind: EngineKind, h: &History, log: bool) -> anyhow::Result<(RunResult, Option<Divergence>)> {
    let pg = TestPg::new().map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
    let url = pg.url().to_owned();
    let r = lockstep_replay(kind, &url, h, log);
    drop(pg);
    Ok(r)
}

fn lockstep_replay(kind: EngineKind, url: &str, h: &History, log: bool) -> (RunResult, Option<Divergence>) {
    let found = Arc::new(Mutex::new(None));
    let r = match kind {
        EngineKind::PgSeed => replay(
            |c| PgSeedEngine::connect_url(url, c).unwrap_or_else(|e| panic!("pg-seed cannot connect to {url}: {e}")),
            h,
            log,
        ),
        _ => replay(
            |c| {
                let db = PgReferenceEngine::connect_url(url, c)
                    .unwrap_or_else(|e| panic!("pg-reference cannot connect to {url}: {e}"));
                Differential::new(db, ReferenceEngine::new(c), Arc::clone(&found))
            },
            h,
            log,
        ),
    };
    let d = found.lock().unwrap_or_else(|p| p.into_inner()).take();
    (r, d)
}

/// Replays a lockstep trace of a Postgres engine on a fresh database (of `DATABASE_URL`'s
/// server or a throwaway cluster). A divergence from the reference engine is an error that
/// names the step.
pub fn replay_on_pg(kind: EngineKind, h: &History, log: bool) -> anyhow::Result<RunResult> {
    let (r, d) = replay_pg(kind, h, log)?;
    if let Some(d) = d {
        anyhow::bail!("divergence at engine step {}: {}", d.step, d.detail);
    }
    Ok(r)
}

// ── Concurrent runs ─────────────────────────────────────────────────────────────────────────

/// One job or session flow of a concurrent run, drawn from the seed.
#[derive(Clone, Debug, Serialize)]
struct ConcFlow {
    id: u32,
    user: u32,
    session: bool,
    estimated_sats: u64,
    actual_sats: u64,
    abandon: bool,
    work_fails: bool,
    crash_after: Option<u8>,
    duplicate: Option<u8>,
    duplicate_credit: bool,
}

/// One call as a concurrent run saw it.
#[derive(Clone, Debug, Serialize)]
struct OpRecord {
    flow: u32,
    call: Call,
    reply: Reply,
    movements: Vec<Movement>,
    /// `killed`, `lost_ack`, `duplicate` or `retry` when the call was part of a fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<&'static str>,
}

/// How a flow ended: the charge reduction it granted and the overrun it was told of.
#[derive(Clone, Copy, Debug)]
struct Close {
    reduction: Sats,
    overrun: Sats,
}

const ZERO: Close = Close { reduction: Sats::ZERO, overrun: Sats::ZERO };

/// A call that keeps failing this many times kills its flow.
const MAX_ATTEMPTS: u32 = 60;

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("scenario amounts are validated")
}

fn draw_workload(s: &Scenario, seed: u64) -> (BTreeMap<u32, Tier>, Vec<ConcFlow>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = s.tiers.weights();
    let total: f64 = w.iter().sum();
    let mut users = BTreeMap::new();
    for u in 0..s.n_users {
        let mut x = rng.gen_range(0.0..total);
        for (i, wi) in w.iter().enumerate() {
            if x < *wi {
                if i < 4 {
                    users.insert(u, Tier::ALL[i]);
                }
                break;
            }
            x -= wi;
        }
    }
    let f = &s.faults;
    let n_hot = s.n_users.min(4);
    let flows = (0..s.n_steps)
        .map(|i| {
            // Half the traffic on a few hot users, so that concurrent requests meet.
            let user = if rng.gen_bool(0.5) { rng.gen_range(0..n_hot) } else { rng.gen_range(0..s.n_users) };
            let estimated = rng.gen_range(s.estimate_min_sats..=s.estimate_max_sats);
            let pct = u64::from(rng.gen_range(s.actual_min_pct..=s.actual_max_pct));
            ConcFlow {
                id: u32::try_from(i).expect("fewer than 2^32 flows"),
                user,
                session: rng.gen_bool(s.session_share),
                estimated_sats: estimated,
                actual_sats: estimated * pct / 100,
                abandon: rng.gen_bool(f.abandon),
                work_fails: rng.gen_bool(f.work_failure),
                crash_after: rng.gen_bool(f.crash).then(|| rng.gen_range(1..=4)),
                duplicate: rng.gen_bool(f.duplicate).then(|| rng.gen_range(1..=4)),
                duplicate_credit: rng.gen_bool(f.duplicate_credit),
            }
        })
        .collect();
    (users, flows)
}

/// The engine a concurrent run drives.
enum Client {
    /// `pg-reference`, one call per command, or in batches.
    Reference(PgPool, Option<Batcher>),
    Seed(SeedClient),
}

/// What every task of a concurrent run shares.
struct Ctx {
    client: Client,
    pool: PgPool,
    /// For `pg_terminate_backend`: a connection pool no fault touches.
    admin: PgPool,
    seed: u64,
    kill_rate: f64,
    lost_ack_rate: f64,
    restart_at: Option<u64>,
    restarter: Option<Arc<TestPg>>,
    restart: Mutex<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>,
    n_calls: AtomicU64,
    ops: Mutex<Vec<OpRecord>>,
    marks: Mutex<BTreeMap<&'static str, u64>>,
}

/// The reply and movements of a `pg-reference` call.
fn answered(applied: Result<reference::Applied, reference::PgError>) -> (Reply, Vec<Movement>) {
    match applied {
        Ok(a) => (Reply::from(a.result), a.movements),
        Err(e) => (Reply::Failed { error: e.to_string() }, Vec::new()),
    }
}

const ADMIN_APP: &str = "ledger-sim-admin";

impl Ctx {
    fn mark(&self, m: &'static str) {
        *self.marks.lock().unwrap_or_else(|p| p.into_inner()).entry(m).or_insert(0) += 1;
    }

    fn record(&self, flow: u32, call: &Call, reply: &Reply, movements: Vec<Movement>, fault: Option<&'static str>) {
        let op = OpRecord { flow, call: call.clone(), reply: reply.clone(), movements, fault };
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    /// Sends `call` once; `kill` cuts a connection in the middle of a transaction.
    async fn send(&self, call: &Call, now: TimeMs, kill: bool) -> (Reply, Vec<Movement>) {
        match &self.client {
            Client::Reference(pool, None) if kill => {
                (self.apply_then_kill(pool, &call.to_command(), now).await, Vec::new())
            }
            Client::Reference(_, Some(batcher)) if kill => {
                // A batch runs on a lane's connection with other callers' commands: kill
                // whichever backend is inside a statement or transaction right now.
                let command = call.to_command();
                let (applied, _) = tokio::join!(batcher.apply(&command, now), self.kill_some_backend());
                answered(applied)
            }
            Client::Reference(_, Some(batcher)) => answered(batcher.apply(&call.to_command(), now).await),
            Client::Reference(pool, None) => answered(reference::apply(pool, &call.to_command(), now).await),
            Client::Seed(client) => {
                let mut journal = Vec::new();
                let reply = if kill {
                    // The seed's calls take connections from the pool step by step: kill
                    // whichever backend is inside a statement or transaction right now.
                    let (reply, _) = tokio::join!(client.call(call, now, &mut journal), self.kill_some_backend());
                    reply
                } else {
                    client.call(call, now, &mut journal).await
                };
                (reply, journal)
            }
        }
    }

    /// Runs `command` inside an explicit transaction, then terminates the backend before
    /// `COMMIT`: the server must roll it back, and the caller sees a failure.
    async fn apply_then_kill(&self, pool: &PgPool, command: &Command, now: TimeMs) -> Reply {
        let result = async {
            let mut conn = pool.acquire().await?;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *conn).await?;
            let mut tx = conn.begin().await?;
            let applied = reference::apply_once(&mut *tx, command, now).await;
            sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&self.admin).await?;
            let committed = tx.commit().await;
            Ok::<_, sqlx::Error>((applied, committed))
        }
        .await;
        match result {
            Ok((_, Ok(()))) => {
                // pg_terminate_backend is a signal: the backend may see it only after COMMIT.
                Reply::Failed { error: "connection killed (after commit: the acknowledgement is lost)".into() }
            }
            Ok((_, Err(e))) | Err(e) => Reply::Failed { error: format!("connection killed: {e}") },
        }
    }

    async fn kill_some_backend(&self) {
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND application_name <> $1 AND state IN ('active', 'idle in transaction') \
             ORDER BY random() LIMIT 1",
        )
        .bind(ADMIN_APP)
        .execute(&self.admin)
        .await;
    }

    fn maybe_restart(&self) {
        let n = self.n_calls.fetch_add(1, Ordering::Relaxed) + 1;
        if Some(n) != self.restart_at {
            return;
        }
        let Some(pg) = self.restarter.clone() else { return };
        self.mark("server_restart");
        let handle = tokio::task::spawn_blocking(move || {
            pg.restart_server().map_err(|e| anyhow::anyhow!("restarting the server: {e}"))
        });
        *self.restart.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    /// Delivers `call` until it gets an answer, as an at-least-once caller does: a failure is
    /// retried with the same ids, a lost acknowledgement too. `None` when it never answered.
    async fn deliver(&self, flow: u32, call: &Call, now: TimeMs, rng: &mut ChaCha8Rng) -> Option<Reply> {
        let mut fault = None;
        for attempt in 0..MAX_ATTEMPTS {
            self.maybe_restart();
            let kill = self.kill_rate > 0.0 && rng.gen_bool(self.kill_rate);
            let (reply, movements) = self.send(call, now, kill).await;
            let lost =
                self.lost_ack_rate > 0.0 && !matches!(reply, Reply::Failed { .. }) && rng.gen_bool(self.lost_ack_rate);
            let this_fault = if kill {
                Some("killed")
            } else if lost {
                Some("lost_ack")
            } else {
                fault
            };
            self.record(flow, call, &reply, movements, this_fault);
            if kill {
                self.mark("connection_killed");
            }
            if lost {
                self.mark("lost_ack_retry");
                fault = Some("retry");
                continue;
            }
            if let Reply::Failed { .. } = reply {
                self.mark("failed_call_retried");
                fault = Some("retry");
                // Back off: the server may be restarting.
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
                continue;
            }
            return Some(reply);
        }
        self.mark("call_gave_up");
        None
    }
}

/// One flow's caller: numbers its calls, injects the flow's own faults.
struct Caller<'a> {
    ctx: &'a Ctx,
    flow: &'a ConcFlow,
    rng: ChaCha8Rng,
    now: TimeMs,
    n_calls: u8,
    n_invoices: u8,
}

impl Caller<'_> {
    fn request_id(&self) -> RequestId {
        RequestId(u64::from(self.flow.id))
    }

    fn pubkey(&self) -> Pubkey {
        Pubkey::for_user(u64::from(self.flow.user))
    }

    /// `None` when the worker died: it crashed after this call, or the call never answered.
    async fn call(&mut self, call: Call) -> Option<Reply> {
        self.n_calls = self.n_calls.saturating_add(1);
        self.now = self.now.plus_ms(1);
        let reply = self.ctx.deliver(self.flow.id, &call, self.now, &mut self.rng).await?;
        let dup = self.flow.duplicate == Some(self.n_calls)
            || (self.flow.duplicate_credit && matches!(call, Call::Credit { .. }));
        if dup {
            // At-least-once delivery: the same call arrives again.
            self.ctx.mark("duplicate_delivered");
            let (r, m) = self.ctx.send(&call, self.now, false).await;
            self.ctx.record(self.flow.id, &call, &r, m, Some("duplicate"));
        }
        if self.flow.crash_after == Some(self.n_calls) {
            self.ctx.mark("worker_crash");
            return None;
        }
        Some(reply)
    }

    /// The user pays an invoice of `amount` (job invoices may be abandoned). `Some(false)`
    /// when abandoned.
    async fn pay(&mut self, amount: Sats, may_abandon: bool) -> Option<bool> {
        if may_abandon && self.flow.abandon {
            self.ctx.mark("invoice_abandoned");
            return Some(false);
        }
        if amount.is_zero() {
            return Some(true);
        }
        self.n_invoices += 1;
        let payment_id = PaymentId(u64::from(self.flow.id) * 8 + u64::from(self.n_invoices));
        self.call(Call::Credit { payment_id, paid_sats: amount }).await?;
        Some(true)
    }

    async fn record(&mut self, actual: Sats, reserved: Sats) -> Option<Close> {
        let (request_id, pubkey) = (self.request_id(), self.pubkey());
        let r = self.call(Call::Record { request_id, pubkey, actual_sats: actual, reserved_sats: reserved }).await?;
        Some(match r {
            Reply::Ok(Outcome::Recorded { overrun_sats, .. }) => Close { reduction: actual, overrun: overrun_sats },
            // The reservation is gone: the pool's share is paid outside it.
            _ => Close { reduction: actual, overrun: actual },
        })
    }

    async fn release(&mut self, reserved: Sats) -> Option<Close> {
        let request_id = self.request_id();
        self.call(Call::Release { request_id, amount_sats: reserved }).await?;
        Some(ZERO)
    }

    /// The flows of DESIGN §1, as `crate::exec` plays them.
    async fn run(&mut self) -> Option<Close> {
        let f = self.flow;
        let (request_id, pubkey) = (self.request_id(), self.pubkey());
        let (estimated, actual) = (sats(f.estimated_sats), sats(f.actual_sats));
        let d = self.call(Call::Decide { request_id, pubkey, estimated_sats: estimated }).await?;
        let Reply::Ok(Outcome::Decided { decision }) = d else { return Some(ZERO) };
        match decision {
            Decision::Free { reserved_sats } => {
                self.ctx.mark("decision_free");
                if f.work_fails {
                    return self.release(reserved_sats).await;
                }
                self.record(actual, reserved_sats).await
            }
            Decision::Partial { offer_sats, charge_sats } if !f.session => {
                self.ctx.mark("decision_partial");
                if !self.pay(charge_sats, true).await? {
                    return Some(ZERO);
                }
                let r = self.call(Call::ReservePartial { request_id, pubkey, amount_sats: offer_sats }).await?;
                match r {
                    Reply::Ok(Outcome::Reserved { reserved_sats }) if !reserved_sats.is_zero() => {
                        if f.work_fails {
                            return self.release(reserved_sats).await;
                        }
                        self.record(actual.saturating_sub(charge_sats), reserved_sats).await
                    }
                    _ => {
                        self.ctx.mark("reserve_refused_requote");
                        self.pay(offer_sats, false).await?;
                        Some(ZERO)
                    }
                }
            }
            Decision::Partial { offer_sats, .. } => {
                self.ctx.mark("decision_partial");
                if f.work_fails {
                    return Some(ZERO);
                }
                let mut amount = actual.min(offer_sats);
                let mut requoted = false;
                while !amount.is_zero() {
                    let r = self.call(Call::ReservePartial { request_id, pubkey, amount_sats: amount }).await?;
                    match r {
                        Reply::Ok(Outcome::Reserved { reserved_sats }) if !reserved_sats.is_zero() => {
                            return self.record(amount, reserved_sats).await;
                        }
                        Reply::Refused(Refusal::InsufficientFunds { available_sats })
                            if !requoted && !available_sats.is_zero() =>
                        {
                            self.ctx.mark("reserve_refused_requote");
                            requoted = true;
                            amount = amount.min(available_sats);
                        }
                        _ => {
                            self.pay(actual, false).await?;
                            return Some(ZERO);
                        }
                    }
                }
                Some(ZERO)
            }
            Decision::Gate { .. } => {
                self.ctx.mark("decision_gate");
                if !f.session {
                    self.pay(estimated, true).await?;
                } else if !f.work_fails {
                    self.pay(actual, false).await?;
                }
                Some(ZERO)
            }
        }
    }
}

/// What a concurrent seed produced.
struct ConcSeed {
    violations: Vec<Violation>,
    n_calls: u64,
    n_requests: u64,
    marks: BTreeMap<&'static str, u64>,
    ops: Vec<OpRecord>,
}

fn concurrent_run(run: &PgRun<'_>, args: &PgArgs, server: &Server, n_tasks: u32) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let mut per_seed = Vec::new();
    for seed in run.seeds.0..run.seeds.1 {
        let db = server.fresh()?;
        let r = concurrent_seed(run.kind, run.scenario, seed, &db, args, n_tasks)?;
        let bad = !r.violations.is_empty();
        per_seed.push((seed, r));
        if bad && run.fail_fast {
            break;
        }
    }
    let elapsed = started.elapsed();
    let name = engine_name(run.kind);
    let mut coverage = Coverage::default();
    let mut violations = Vec::new();
    for (_, r) in &per_seed {
        coverage.merge(&Coverage(r.marks.clone()));
    }
    let mut kinds: Vec<&str> = Invariant::ALL.iter().map(|i| i.id()).collect();
    kinds.push("audit");
    for inv in Invariant::ALL {
        let breaking: Vec<&(u64, ConcSeed)> =
            per_seed.iter().filter(|(_, r)| r.violations.iter().any(|v| v.invariant == inv)).collect();
        let Some((seed, first)) = breaking.first() else { continue };
        let path = run.trace_dir.join(format!("{name}-concurrent-seed{seed}.jsonl"));
        write_ops(&first.ops, &path)?;
        let mine: Vec<&Violation> = first.violations.iter().filter(|v| v.invariant == inv).collect();
        violations.push(ViolationReport {
            invariant: inv.id().to_owned(),
            name: inv.name().to_owned(),
            seed: *seed,
            seeds: breaking.iter().map(|(s, _)| *s).collect(),
            detail: format!("{} ({} violation(s) in this seed)", mine[0], mine.len()),
            shrunk_flows: 0,
            shrunk_events: 0,
            steps: mine.iter().take(8).map(|v| v.to_string()).collect(),
            trace: path.display().to_string(),
            replay: format!(
                "not replayable (real concurrency); run again: ledger-sim run --engine {name} --seed {seed} --users {} --steps {} --concurrency {n_tasks}{}",
                run.scenario.n_users,
                run.scenario.n_steps,
                fault_flags(args)
            ),
        });
    }
    let n_calls: u64 = per_seed.iter().map(|(_, r)| r.n_calls).sum();
    Ok(RunReport {
        engine: format!("{name} (concurrency {n_tasks})"),
        scheduler: run.scheduler,
        seeds: format!("{}..{}", run.seeds.0, per_seed.last().map_or(run.seeds.1, |r| r.0 + 1)),
        steps: n_calls,
        requests: per_seed.iter().map(|(_, r)| r.n_requests).sum(),
        violations,
        coverage,
        trace_hash: "concurrent (not deterministic)".to_owned(),
        steps_per_sec: (n_calls as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
    })
}

fn fault_flags(args: &PgArgs) -> String {
    let mut s = String::new();
    if args.kill_connections > 0.0 {
        s.push_str(&format!(" --kill-connections {}", args.kill_connections));
    }
    if args.lost_ack > 0.0 {
        s.push_str(&format!(" --lost-ack {}", args.lost_ack));
    }
    if let Some(n) = args.restart_server_at {
        s.push_str(&format!(" --restart-server-at {n}"));
    }
    if let Some(n) = args.batch_lanes {
        s.push_str(&format!(" --batch-lanes {n}"));
    }
    s
}

fn write_ops(ops: &[OpRecord], path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let mut buf = Vec::new();
    for op in ops {
        serde_json::to_writer(&mut buf, op)?;
        buf.push(b'\n');
    }
    std::fs::write(path, buf).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

fn concurrent_seed(
    kind: EngineKind,
    s: &Scenario,
    seed: u64,
    db: &Db,
    args: &PgArgs,
    n_tasks: u32,
) -> anyhow::Result<ConcSeed> {
    let (users, flows) = draw_workload(s, seed);
    let config = s.ledger;
    let opts: PgConnectOptions = db.url.parse()?;
    let restarter = match (&db.test, args.restart_server_at) {
        (Some(t), Some(_)) => Some(Arc::clone(t)),
        (None, Some(_)) => anyhow::bail!("--restart-server-at needs a private cluster"),
        _ => None,
    };
    let args = args.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(async move {
        let pool = PgPoolOptions::new()
            .max_connections(n_tasks + 4)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        let admin = PgPoolOptions::new().max_connections(2).connect_with(opts.application_name(ADMIN_APP)).await?;
        ledger_pg::migrate(&pool).await?;
        let client = match kind {
            EngineKind::PgSeed => Client::Seed(SeedClient::new(pool.clone(), config)),
            _ => {
                reference::genesis(&pool, &config, TimeMs(0)).await?;
                let batcher = match args.batch_lanes {
                    Some(lanes) => {
                        Some(Batcher::new(pool.clone(), BatcherOptions { lanes, ..BatcherOptions::default() })?)
                    }
                    None => None,
                };
                Client::Reference(pool.clone(), batcher)
            }
        };
        let ctx = Arc::new(Ctx {
            client,
            pool: pool.clone(),
            admin,
            seed,
            kill_rate: args.kill_connections,
            lost_ack_rate: args.lost_ack,
            restart_at: args.restart_server_at,
            restarter,
            restart: Mutex::new(None),
            n_calls: AtomicU64::new(0),
            ops: Mutex::new(Vec::new()),
            marks: Mutex::new(BTreeMap::new()),
        });
        // The trust service's identities, before any traffic.
        for (&user, &tier) in &users {
            let call = Call::SetTier { pubkey: Pubkey::for_user(u64::from(user)), tier };
            let (reply, _) = ctx.send(&call, EPOCH, false).await;
            if !matches!(reply, Reply::Ok(_)) {
                anyhow::bail!("set_tier failed: {reply:?}");
            }
        }
        let flows = Arc::new(flows);
        let next = Arc::new(AtomicU64::new(0));
        let closes = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks: Vec<_> = (0..n_tasks)
            .map(|_| {
                let (ctx, flows, next, closes) =
                    (Arc::clone(&ctx), Arc::clone(&flows), Arc::clone(&next), Arc::clone(&closes));
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(flow) = usize::try_from(i).ok().and_then(|i| flows.get(i)) else { break };
                        let mut caller = Caller {
                            ctx: &ctx,
                            flow,
                            rng: ChaCha8Rng::seed_from_u64(ctx.seed ^ (u64::from(flow.id) << 20) ^ 0x9e37_79b9),
                            // Virtual time: 10 ms between flow starts, all inside one daily window.
                            now: EPOCH.plus_ms(10 * u64::from(flow.id)),
                            n_calls: 0,
                            n_invoices: 0,
                        };
                        if let Some(close) = caller.run().await {
                            closes.lock().unwrap_or_else(|p| p.into_inner()).insert(flow.id, close);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        let restart = ctx.restart.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = restart {
            h.await??;
        }
        // Traffic stopped: let every deadline pass and run the sweeper (the seed has none).
        let end = EPOCH.plus_ms(10 * u64::try_from(flows.len()).unwrap_or(0) + config.reservation_ttl_ms + 1000);
        let mut swept = false;
        for attempt in 0..MAX_ATTEMPTS {
            let (reply, movements) = ctx.send(&Call::Expire, end, false).await;
            ctx.record(u32::MAX, &Call::Expire, &reply, movements, None);
            if !matches!(reply, Reply::Failed { .. }) {
                swept = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
        }
        if !swept {
            anyhow::bail!("the final expire never succeeded");
        }
        let closes = std::mem::take(&mut *closes.lock().unwrap_or_else(|p| p.into_inner()));
        let violations = final_checks(&ctx, &config, &users, &flows, &closes).await?;
        let ops = std::mem::take(&mut *ctx.ops.lock().unwrap_or_else(|p| p.into_inner()));
        let marks = std::mem::take(&mut *ctx.marks.lock().unwrap_or_else(|p| p.into_inner()));
        pool.close().await;
        ctx.admin.close().await;
        Ok::<_, anyhow::Error>(ConcSeed {
            violations,
            n_calls: ctx.n_calls.load(Ordering::Relaxed),
            n_requests: flows.len() as u64,
            marks,
            ops,
        })
    });
    drop(rt);
    result
}

// ── Checks of a concurrent run ─────────────────────────────────────────────────────────────

/// What the movements say about one request.
#[derive(Clone, Debug, Default)]
struct Book {
    debited: i128,
    returned: i128,
    absorbed: i128,
    n_records: u32,
    n_releases: u32,
}

/// The reference schema's journal as movements, in commit order. It is authoritative: a call
/// whose acknowledgement was lost moved the pool all the same.
async fn journal_movements(pool: &PgPool) -> anyhow::Result<Vec<Movement>> {
    let rows = sqlx::query(
        "SELECT j.kind, j.request_id, j.payment_id, j.amount_sats, j.d_absorbed_sats, r.pubkey \
         FROM pool_journal j LEFT JOIN reservations r ON r.request_id = j.request_id \
         WHERE j.kind NOT IN ('genesis', 'rebalance') ORDER BY j.seq",
    )
    .fetch_all(pool)
    .await?;
    let amount = |v: i64| Sats::new(v.unsigned_abs()).map_err(|e| anyhow::anyhow!("journal amount {v}: {e}"));
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let kind: String = r.try_get(0)?;
        let request_id = r.try_get::<Option<i64>, _>(1)?.map(|v| RequestId(v.unsigned_abs()));
        let payment_id: Option<i64> = r.try_get(2)?;
        let amount_sats: i64 = r.try_get(3)?;
        let absorbed: i64 = r.try_get(4)?;
        let pubkey = r.try_get::<Option<String>, _>(5)?.map(|p| p.parse::<Pubkey>()).transpose()?;
        let rid = || request_id.ok_or_else(|| anyhow::anyhow!("{kind} without a request"));
        let pk = || pubkey.ok_or_else(|| anyhow::anyhow!("{kind} without a reservation"));
        out.push(match kind.as_str() {
            "debit" => Movement::Debit { request_id: rid()?, pubkey: pk()?, amount_sats: amount(amount_sats)? },
            "release" => Movement::Release { request_id: rid()?, amount_sats: amount(amount_sats)? },
            "expire" => Movement::Expire { request_id: rid()?, amount_sats: amount(amount_sats)? },
            "record" => Movement::Record {
                request_id: rid()?,
                pubkey: pk()?,
                absorbed_sats: amount(absorbed)?,
                returned_sats: amount(amount_sats)?,
            },
            "credit" => Movement::Credit {
                payment_id: PaymentId(payment_id.unwrap_or(0).unsigned_abs()),
                amount_sats: amount(amount_sats)?,
            },
            other => anyhow::bail!("unknown journal kind {other:?}"),
        });
    }
    Ok(out)
}

fn invariant_of(id: &str) -> Invariant {
    match id {
        "I1" => Invariant::I1,
        "I5" => Invariant::I5,
        _ => Invariant::I2,
    }
}

/// The checks of a concurrent run, once traffic has stopped and the sweeper has run: the
/// server-side audit (I1, I2, I5 on the final state) and the history (I2-I6).
async fn final_checks(
    ctx: &Ctx,
    config: &Config,
    users: &BTreeMap<u32, Tier>,
    flows: &[ConcFlow],
    closes: &BTreeMap<u32, Close>,
) -> anyhow::Result<Vec<Violation>> {
    let mut out = Vec::new();
    let mut violate = |invariant, request: Option<u32>, detail: String| {
        out.push(Violation { invariant, request_id: request.map(|r| RequestId(u64::from(r))), detail });
    };
    let (movements, observed) = match &ctx.client {
        Client::Reference(pool, _) => {
            for f in reference::audit(pool).await? {
                violate(invariant_of(&f.invariant), None, format!("server audit: {}", f.detail));
            }
            let t = reference::totals(pool).await?;
            let observed = Observed {
                pool_sats: i128::from(t.balance_sats),
                reserved_sats: Some(i128::from(t.reserved_sats)),
                granted_sats: i128::from(t.absorbed_sats),
                n_grants: u64::try_from(t.n_grants).unwrap_or(0),
            };
            (journal_movements(pool).await?, observed)
        }
        Client::Seed(client) => {
            let mut conn = ctx.pool.acquire().await?;
            for f in ledger_pg::seed::audit(&mut conn).await? {
                violate(invariant_of(f.invariant), None, format!("server audit: {}", f.detail));
            }
            let movements: Vec<Movement> = {
                let ops = ctx.ops.lock().unwrap_or_else(|p| p.into_inner());
                ops.iter().flat_map(|o| o.movements.iter().copied()).collect()
            };
            (movements, client.observe().await?)
        }
    };
    let mut books: BTreeMap<RequestId, Book> = BTreeMap::new();
    let mut absorbed_by: BTreeMap<Pubkey, i128> = BTreeMap::new();
    let (mut credits, mut debits, mut returned, mut absorbed) = (0i128, 0i128, 0i128, 0i128);
    for m in &movements {
        match *m {
            Movement::Debit { request_id, amount_sats, .. } => {
                debits += amount_sats.to_i128();
                books.entry(request_id).or_default().debited += amount_sats.to_i128();
            }
            Movement::Release { request_id, amount_sats } | Movement::Expire { request_id, amount_sats } => {
                returned += amount_sats.to_i128();
                let b = books.entry(request_id).or_default();
                b.returned += amount_sats.to_i128();
                b.n_releases += 1;
            }
            Movement::Record { request_id, pubkey, absorbed_sats, returned_sats } => {
                returned += returned_sats.to_i128();
                absorbed += absorbed_sats.to_i128();
                *absorbed_by.entry(pubkey).or_default() += absorbed_sats.to_i128();
                let b = books.entry(request_id).or_default();
                b.returned += returned_sats.to_i128();
                b.absorbed += absorbed_sats.to_i128();
                b.n_records += 1;
            }
            Movement::Credit { amount_sats, .. } => credits += amount_sats.to_i128(),
        }
    }
    let initial = config.pool_initial_sats.to_i128();
    if observed.pool_sats < 0 {
        violate(Invariant::I1, None, format!("pool balance {} < 0", observed.pool_sats));
    }
    let journal_pool = initial + credits - debits + returned;
    if journal_pool != observed.pool_sats {
        violate(
            Invariant::I2,
            None,
            format!(
                "initial {initial} + credits {credits} - debits {debits} + returns {returned} = {journal_pool}, but the pool holds {}",
                observed.pool_sats
            ),
        );
    }
    let outstanding = debits - returned - absorbed;
    if let Some(reserved) = observed.reserved_sats {
        if reserved != outstanding {
            violate(Invariant::I2, None, format!("the books hold {reserved} reserved, the movements {outstanding}"));
        }
    }
    let n_records: u64 = books.values().map(|b| u64::from(b.n_records)).sum();
    // The seed writes no grant row for a zero absorption, so only the reference's grants are
    // counted one per record.
    let counted = matches!(ctx.client, Client::Reference(..));
    if observed.granted_sats != absorbed || (counted && observed.n_grants != n_records) {
        violate(
            Invariant::I5,
            None,
            format!(
                "{} audit grants absorb {}, but {n_records} records absorbed {absorbed}",
                observed.n_grants, observed.granted_sats
            ),
        );
    }
    let (mut total_reduction, mut total_gave) = (0i128, 0i128);
    for f in flows {
        let b = books.get(&RequestId(u64::from(f.id))).cloned().unwrap_or_default();
        if b.n_records > 1 {
            violate(Invariant::I5, Some(f.id), format!("recorded {} times, absorbing {}", b.n_records, b.absorbed));
        }
        if b.n_records > 0 && b.n_releases > 0 {
            violate(Invariant::I5, Some(f.id), "both recorded and released".to_owned());
        }
        let held = b.debited - b.returned - b.absorbed;
        if held > 0 {
            violate(
                Invariant::I6,
                Some(f.id),
                format!("{held} sats still held after traffic stopped and deadlines passed"),
            );
        }
        let Some(close) = closes.get(&f.id) else { continue };
        let gave = b.debited - b.returned;
        let (reduction, overrun) = (close.reduction.to_i128(), close.overrun.to_i128());
        total_reduction += reduction - overrun;
        total_gave += gave;
        if reduction != gave + overrun {
            violate(
                Invariant::I3,
                Some(f.id),
                format!(
                    "charge reduced by {reduction}, the pool's net debit is {gave} (debited {}, returned {}) + overrun {overrun}",
                    b.debited, b.returned
                ),
            );
        }
    }
    if total_reduction != total_gave {
        violate(
            Invariant::I3,
            None,
            format!(
                "charge reductions net of overruns sum to {total_reduction}, the pool's net debits to {total_gave}"
            ),
        );
    }
    // One daily window (virtual time stays inside it) and no tier changes: each user's
    // absorption must fit the budget of its tier.
    for (&user, &tier) in users {
        let pubkey = Pubkey::for_user(u64::from(user));
        let got = absorbed_by.get(&pubkey).copied().unwrap_or(0);
        let budget = config.budget(tier).to_i128();
        if got > budget {
            violate(Invariant::I4, None, format!("{pubkey:?} ({tier}, budget {budget}) absorbed {got} in one window"));
        }
    }
    for (pubkey, got) in &absorbed_by {
        if got > &0 && !users.keys().any(|u| Pubkey::for_user(u64::from(*u)) == *pubkey) {
            violate(Invariant::I4, None, format!("{pubkey:?} has no identity but absorbed {got}"));
        }
    }
    Ok(out)
}

// ── Audit ───────────────────────────────────────────────────────────────────────────────────

/// `ledger-sim audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The database to check (default: `DATABASE_URL`). Nothing is written: the session is
    /// read-only.
    #[arg(long)]
    database_url: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One violation found by `audit`.
#[derive(Debug, Serialize)]
struct AuditFinding {
    schema: &'static str,
    invariant: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct AuditReport {
    /// The schemas found in use: `reference`, `seed`.
    schemas: Vec<&'static str>,
    findings: Vec<AuditFinding>,
    notes: Vec<String>,
}

async fn audit_db(opts: PgConnectOptions) -> anyhow::Result<AuditReport> {
    let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
    let (has_ref, has_seed): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.ledger_config') IS NOT NULL, to_regclass('public.timmy_config') IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await?;
    if !has_ref && !has_seed {
        anyhow::bail!("no ledger tables in this database (neither ledger_config nor timmy_config)");
    }
    let mut report = AuditReport { schemas: Vec::new(), findings: Vec::new(), notes: Vec::new() };
    // Both sets of tables exist in every migrated database; audit those that hold data.
    let ref_used = has_ref
        && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM ledger_config)").fetch_one(&mut conn).await?;
    let seed_used = has_seed
        && sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM timmy_config) OR EXISTS (SELECT 1 FROM nostr_identities) \
             OR EXISTS (SELECT 1 FROM free_tier_grants)",
        )
        .fetch_one(&mut conn)
        .await?;
    if ref_used {
        report.schemas.push("reference");
        for f in reference::audit(&mut conn).await? {
            report.findings.push(AuditFinding { schema: "reference", invariant: f.invariant, detail: f.detail });
        }
    }
    if seed_used {
        report.schemas.push("seed");
        for f in ledger_pg::seed::audit(&mut conn).await? {
            report.findings.push(AuditFinding { schema: "seed", invariant: f.invariant.to_owned(), detail: f.detail });
        }
        report.notes.push(
            "seed schema: I2 cannot be checked, the seed keeps no journal of credits and debits (the simulator checks it from its history)"
                .to_owned(),
        );
    }
    if !ref_used && !seed_used {
        report.notes.push("the ledger tables are empty: nothing to check".to_owned());
    }
    conn.close().await?;
    Ok(report)
}

/// `ledger-sim audit --database-url URL`: `Ok(true)` when no invariant is broken.
pub fn audit_cmd(args: &AuditArgs) -> anyhow::Result<bool> {
    let url = args
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
        .ok_or_else(|| anyhow::anyhow!("audit needs --database-url URL (or DATABASE_URL)"))?;
    let opts: PgConnectOptions = url.parse()?;
    let opts = opts.options([("default_transaction_read_only", "on")]);
    let report = block_on(audit_db(opts))??;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "ledger-sim audit: schemas in use: {}",
            if report.schemas.is_empty() { "none".to_owned() } else { report.schemas.join(", ") }
        )?;
        for f in &report.findings {
            writeln!(out, "VIOLATION {} ({} schema): {}", f.invariant, f.schema, f.detail)?;
        }
        for n in &report.notes {
            writeln!(out, "note: {n}")?;
        }
        if report.findings.is_empty() {
            writeln!(out, "no invariant broke")?;
        }
    }
    Ok(report.findings.is_empty())
}
