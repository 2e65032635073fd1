//! Many callers' commands, one transaction: the reference semantics at the server's speed.
//!
//! A [`Batcher`] queues the commands of any number of concurrent callers (in a bounded queue
//! per lane: a caller whose lane is full waits for room, so memory does not grow with the
//! number of callers) and sends them on a few *lanes*, each a task with its own connection that takes whatever is queued (up to
//! [`BatcherOptions::max_batch`]) and runs it as one call of `ledger_apply_batch`
//! (`sql/functions/ledger_apply_batch.sql`): one round trip and one commit for the whole
//! batch. Each command runs the same server-side function as [`reference::apply`] and gets the
//! same answer it would get alone, in the order of the batch; a caller waits for its own
//! answer only.
//!
//! Why several lanes cannot deadlock (the SQL file has the details): a lane carries the
//! requests whose home pool stripe is its own (`request_id % lanes`, payments by payment id),
//! so lanes never share a stripe; a batch locks its identities, the rows lanes do share, first
//! and in one order; and a command that needs every stripe (the pool is nearly empty) makes its
//! batch fail with `LDB01`, after which the lane runs it again holding the batch lock alone.
//! A lane that had to do that stays exclusive for [`EXCLUSIVE_STREAK`] batches, since the next
//! batches will likely need it too. A loom model checks this over every interleaving of two
//! lanes (`crates/ledger-concurrent/tests/loom_pg_batches.rs`): no deadlock, each batch
//! committed once, and every answer the one a serial order of the batches gives.
//!
//! Failures: serialization failures and deadlocks rerun the batch (every command is idempotent
//! by id, so a rerun changes nothing twice); a database error of one command (a constraint the
//! server enforces) reruns the batch's commands one by one so that only that command fails; a
//! lost connection fails every command of the batch, whose callers retry as they would any
//! failed call. `expire` touches every stripe and is never batched: it runs alone, holding the
//! batch lock exclusively.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ledger_core::{Command, TimeMs};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use crate::reference::{self, bigint, is_connection_lost, sats_arg, Applied, PgError, MAX_RETRIES, SELECT_RESULT};

/// How many batches a lane keeps the batch lock exclusively after one needed every stripe.
pub const EXCLUSIVE_STREAK: u32 = 16;

/// How long a lane waits for a batch's answer (its one transaction, commit included) before
/// it fails every command of the batch as a lost connection and drops the connection: the
/// server's own `statement_timeout` of a run's connections (30 s) and some room.
pub const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);

/// The shape of a [`Batcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatcherOptions {
    /// Lanes (connections) that run batches at once: 1, 2, 4, 8 or 16 (a divisor of the number
    /// of pool stripes, so that lanes never share one).
    pub lanes: usize,
    /// The most commands in one batch.
    pub max_batch: usize,
    /// The most commands waiting in one lane's queue. A caller whose lane's queue is full
    /// waits for room (backpressure), so memory stays bounded however many callers there are.
    pub queue: usize,
}

impl BatcherOptions {
    /// Whether a batcher can run with these options.
    pub fn check(&self) -> Result<(), BatcherOptionsError> {
        if self.lanes == 0 || N_STRIPES % self.lanes != 0 {
            return Err(BatcherOptionsError::Lanes(self.lanes));
        }
        if self.max_batch == 0 {
            return Err(BatcherOptionsError::MaxBatch);
        }
        if self.queue == 0 {
            return Err(BatcherOptionsError::Queue);
        }
        Ok(())
    }
}

impl Default for BatcherOptions {
    fn default() -> BatcherOptions {
        BatcherOptions { lanes: 2, max_batch: 64, queue: 256 }
    }
}

/// The number of pool stripes: `ledger_n_stripes()` (`sql/functions/ledger_n_stripes.sql`),
/// which `tests/postgres/schema.rs` checks on a live server.
pub const N_STRIPES: usize = 16;

/// A bad [`BatcherOptions`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatcherOptionsError {
    /// Lanes must divide the number of stripes.
    #[error("lanes must be 1, 2, 4, 8 or 16 (a divisor of the {N_STRIPES} pool stripes), not {0}")]
    Lanes(usize),
    /// A batch holds at least one command.
    #[error("max_batch must be at least 1")]
    MaxBatch,
    /// A queue holds at least one command.
    #[error("queue must be at least 1")]
    Queue,
}

/// What the lanes have done so far (counts since the batcher started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches that answered.
    pub batches: u64,
    /// Commands those batches answered.
    pub commands: u64,
    /// Batches run again holding the batch lock exclusively (a command needed every stripe).
    pub exclusive_reruns: u64,
    /// Batches run again after a serialization failure or a deadlock.
    pub retries: u64,
    /// Batches whose commands were run one by one after a command's database error.
    pub split: u64,
    /// Batches that failed as a whole (the connection was lost).
    pub failed: u64,
    /// The most commands that waited in one lane's queue at once (at most
    /// [`BatcherOptions::queue`]).
    pub queue_peak: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    commands: AtomicU64,
    exclusive_reruns: AtomicU64,
    retries: AtomicU64,
    split: AtomicU64,
    failed: AtomicU64,
    queue_peak: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct Job {
    command: Command,
    now: TimeMs,
    reply: oneshot::Sender<Result<Applied, PgError>>,
}

/// Queues commands and runs them in batches; cheap to clone (the lanes are shared).
#[derive(Clone)]
pub struct Batcher {
    pool: PgPool,
    lanes: Arc<Vec<mpsc::Sender<Job>>>,
    counters: Arc<Counters>,
}

impl Batcher {
    /// Starts the lanes on the current tokio runtime. `pool` must be migrated and hold at least
    /// `options.lanes` connections (more if the same pool serves other callers).
    pub fn new(pool: PgPool, options: BatcherOptions) -> Result<Batcher, BatcherOptionsError> {
        options.check()?;
        let counters = Arc::new(Counters::default());
        let lanes = (0..options.lanes)
            .map(|_| {
                let (tx, rx) = mpsc::channel(options.queue);
                let lane = Lane {
                    pool: pool.clone(),
                    conn: None,
                    rx,
                    max_batch: options.max_batch,
                    exclusive_left: 0,
                    counters: Arc::clone(&counters),
                };
                tokio::spawn(lane.run());
                tx
            })
            .collect();
        Ok(Batcher { pool, lanes: Arc::new(lanes), counters })
    }

    /// What the lanes have done so far.
    pub fn stats(&self) -> BatchStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BatchStats {
            batches: get(&c.batches),
            commands: get(&c.commands),
            exclusive_reruns: get(&c.exclusive_reruns),
            retries: get(&c.retries),
            split: get(&c.split),
            failed: get(&c.failed),
            queue_peak: get(&c.queue_peak),
        }
    }

    /// Runs `command` at `now` in the next batch of its lane and answers as
    /// [`reference::apply`] would. Waits for room when the lane's queue is full.
    pub async fn apply(&self, command: &Command, now: TimeMs) -> Result<Applied, PgError> {
        let Some(lane) = self.lane_of(command) else {
            return expire_alone(&self.pool, now).await;
        };
        let (reply, answer) = oneshot::channel();
        let job = Job { command: command.clone(), now, reply };
        let queue = &self.lanes[lane];
        if queue.send(job).await.is_err() {
            return Err(PgError::Protocol("the batcher's lane has stopped".into()));
        }
        let waiting = (queue.max_capacity() - queue.capacity()) as u64;
        self.counters.queue_peak.fetch_max(waiting, Ordering::Relaxed);
        answer.await.map_err(|_| PgError::Protocol("the batcher's lane dropped a command".into()))?
    }

    /// The lane that owns `command`'s stripe; `None` for commands that run alone.
    fn lane_of(&self, command: &Command) -> Option<usize> {
        let n = self.lanes.len() as u64;
        let id = match *command {
            Command::Decide { request_id, .. }
            | Command::ReservePartial { request_id, .. }
            | Command::Release { request_id }
            | Command::Record { request_id, .. } => request_id.0,
            Command::Credit { payment_id, .. } => payment_id.0,
            // Identities only: any lane serialises them; one lane keeps new identities'
            // inserts from waiting on each other across lanes.
            Command::SetTier { .. } => 0,
            Command::Expire => return None,
        };
        // The home stripe is `id % N_STRIPES`, and lanes divide N_STRIPES.
        Some(((id % N_STRIPES as u64) % n) as usize)
    }
}

/// The batch lock's key (`ledger_apply_batch` takes it shared, or exclusively).
const BATCH_LOCK: (i32, i32) = (1_279_607_111, 1);

/// `expire` holding the batch lock exclusively: it locks outstanding reservations before
/// identities, the reverse of a batch's order, so it never runs beside one.
async fn expire_alone(pool: &PgPool, now: TimeMs) -> Result<Applied, PgError> {
    let mut attempt = 0;
    loop {
        let result = async {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(BATCH_LOCK.0)
                .bind(BATCH_LOCK.1)
                .execute(&mut *tx)
                .await?;
            let applied = reference::apply_once(&mut *tx, &Command::Expire, now).await?;
            tx.commit().await?;
            Ok(applied)
        }
        .await;
        match result {
            Err(PgError::Sql(e)) if reference::is_retryable(&e) && attempt < MAX_RETRIES => {
                attempt += 1;
                tokio::time::sleep(reference::retry_pause(attempt)).await;
            }
            other => return other,
        }
    }
}

struct Lane {
    pool: PgPool,
    /// The lane's own connection: one backend runs all of its batches, with warm caches.
    conn: Option<PoolConnection<Postgres>>,
    rx: mpsc::Receiver<Job>,
    max_batch: usize,
    exclusive_left: u32,
    counters: Arc<Counters>,
}

/// One batch's arguments, as arrays.
#[derive(Default)]
struct Args {
    kinds: Vec<&'static str>,
    ids: Vec<Option<i64>>,
    pubkeys: Vec<Option<String>>,
    tiers: Vec<Option<&'static str>>,
    amounts: Vec<Option<i64>>,
    nows: Vec<i64>,
}

impl Args {
    fn push(&mut self, command: &Command, now: TimeMs) -> Result<(), PgError> {
        let now = bigint("now", now.0)?;
        let (kind, id, pubkey, tier, amount) = match *command {
            Command::SetTier { pubkey, tier } => ("set_tier", None, Some(pubkey), Some(tier.as_str()), None),
            Command::Decide { request_id, pubkey, estimated_sats } => {
                ("decide", Some(bigint("request_id", request_id.0)?), Some(pubkey), None, Some(estimated_sats))
            }
            Command::ReservePartial { request_id, pubkey, amount_sats } => {
                ("reserve_partial", Some(bigint("request_id", request_id.0)?), Some(pubkey), None, Some(amount_sats))
            }
            Command::Release { request_id } => ("release", Some(bigint("request_id", request_id.0)?), None, None, None),
            Command::Record { request_id, actual_sats } => {
                ("record", Some(bigint("request_id", request_id.0)?), None, None, Some(actual_sats))
            }
            Command::Credit { payment_id, paid_sats } => {
                ("credit", Some(bigint("payment_id", payment_id.0)?), None, None, Some(paid_sats))
            }
            Command::Expire => unreachable!("expire is never batched"),
        };
        self.kinds.push(kind);
        self.ids.push(id);
        self.pubkeys.push(pubkey.map(|p| p.to_string()));
        self.tiers.push(tier);
        self.amounts.push(amount.map(sats_arg));
        self.nows.push(now);
        Ok(())
    }
}

/// Why a batch did not answer.
enum BatchError {
    /// A command needs every stripe: run it again with the batch lock held exclusively.
    NeedsExclusive,
    /// A database error a rerun of the whole batch cannot fix (one command's).
    Database(sqlx::Error),
    /// The connection or anything else: every command of the batch fails with it.
    Other(PgError),
}

impl Lane {
    async fn run(mut self) {
        // `PgPool::close` waits until every connection is back, and the lane holds its own
        // between batches: when the pool closes, the lane stops, which gives it back.
        let mut closed = std::pin::pin!(self.pool.close_event());
        loop {
            let first = tokio::select! {
                job = self.rx.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                () = &mut closed => return,
            };
            let mut jobs = vec![first];
            // Callers just answered by the last batch are about to send their next command:
            // let them, so that it joins this batch rather than the next.
            tokio::task::yield_now().await;
            while jobs.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(jobs).await;
        }
    }

    async fn run_batch(&mut self, jobs: Vec<Job>) {
        // Values a BIGINT cannot hold fail their own command before anything is sent.
        let mut args = Args::default();
        let mut sent = Vec::with_capacity(jobs.len());
        for job in jobs {
            match args.push(&job.command, job.now) {
                Ok(()) => sent.push(job),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if sent.is_empty() {
            return;
        }
        let mut attempt = 0;
        loop {
            let exclusive = self.exclusive_left > 0;
            match self.send(&args, &sent, exclusive).await {
                Ok(answers) => {
                    self.exclusive_left = self.exclusive_left.saturating_sub(1);
                    bump(&self.counters.batches, 1);
                    bump(&self.counters.commands, answers.len() as u64);
                    for (job, answer) in sent.into_iter().zip(answers) {
                        let _ = job.reply.send(answer);
                    }
                    return;
                }
                Err(BatchError::NeedsExclusive) if !exclusive => {
                    tracing::debug!(n = sent.len(), "batch needs every stripe: running it exclusively");
                    self.exclusive_left = EXCLUSIVE_STREAK;
                    bump(&self.counters.exclusive_reruns, 1);
                }
                Err(BatchError::Database(e)) if reference::is_retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    bump(&self.counters.retries, 1);
                    tracing::debug!(attempt, error = %e, "retrying a batch of {}", sent.len());
                    tokio::time::sleep(reference::retry_pause(attempt)).await;
                }
                Err(BatchError::Database(e)) if sent.len() > 1 => {
                    // One command's error: each alone, so that only it fails.
                    tracing::debug!(error = %e, "batch failed: running its {} commands one by one", sent.len());
                    bump(&self.counters.split, 1);
                    for job in sent {
                        let answer = reference::apply(&self.pool, &job.command, job.now).await;
                        let _ = job.reply.send(answer);
                    }
                    return;
                }
                Err(BatchError::Database(e)) => {
                    let job = sent.pop().expect("one job");
                    let _ = job.reply.send(Err(PgError::Sql(e)));
                    return;
                }
                Err(BatchError::NeedsExclusive) => {
                    for job in sent {
                        let e = PgError::Protocol("an exclusive batch asked for exclusivity".into());
                        let _ = job.reply.send(Err(e));
                    }
                    return;
                }
                Err(BatchError::Other(e)) => {
                    bump(&self.counters.failed, 1);
                    let msg = e.to_string();
                    for job in sent {
                        let _ = job.reply.send(Err(PgError::Protocol(format!("batch failed: {msg}"))));
                    }
                    return;
                }
            }
        }
    }

    async fn send(
        &mut self,
        args: &Args,
        jobs: &[Job],
        exclusive: bool,
    ) -> Result<Vec<Result<Applied, PgError>>, BatchError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.pool.acquire().await.map_err(|e| BatchError::Other(PgError::Sql(e)))?),
        };
        let sql = format!("{SELECT_RESULT} ledger_apply_batch($1, $2, $3, $4, $5, $6, $7)");
        let query = sqlx::query(&sql)
            .bind(&args.kinds)
            .bind(&args.ids)
            .bind(&args.pubkeys)
            .bind(&args.tiers)
            .bind(&args.amounts)
            .bind(&args.nows)
            .bind(exclusive)
            .fetch_all(&mut **conn);
        let what = format!("a batch of {} command(s) (one transaction and its commit)", jobs.len());
        let rows = match crate::wait::announced(&what, BATCH_TIMEOUT, query).await {
            Ok(rows) => rows,
            Err(e) => {
                // A connection in the middle of a statement cannot be given back: dropped, not
                // closed (closing waits on the server too). The next batch takes another.
                if let Some(conn) = self.conn.take() {
                    drop(conn.detach());
                }
                let lost = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what}: {e}"));
                return Err(BatchError::Other(PgError::Sql(sqlx::Error::Io(lost))));
            }
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("LDB01") => {
                return Err(BatchError::NeedsExclusive)
            }
            Err(e) if !is_connection_lost(&e) => return Err(BatchError::Database(e)),
            Err(e) => {
                // The connection may be gone: the next batch takes another.
                if let Some(conn) = self.conn.take() {
                    let _ = conn.close().await;
                }
                return Err(BatchError::Other(PgError::Sql(e)));
            }
        };
        if rows.len() != jobs.len() {
            return Err(BatchError::Other(PgError::Protocol(format!(
                "a batch of {} commands answered {} rows",
                jobs.len(),
                rows.len()
            ))));
        }
        Ok(jobs.iter().zip(&rows).map(|(job, row)| reference::decode(&job.command, row)).collect())
    }
}
