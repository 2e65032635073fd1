//! `pg-reference` and `pg-seed`: the simulator's [`Engine`] interface on a real PostgreSQL.
//!
//! Both run in lockstep: each [`Engine::step`] sends what one atomic step sends (one statement
//! or one transaction) and blocks on an internal single-threaded tokio runtime until the
//! server answers. `pg-reference` finishes every call in one step, a call of a server-side
//! function. `pg-seed` takes exactly the steps of `ledger_harness::seed::SeedEngine`, one per
//! database round trip of the TypeScript, so the same schedule runs on both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_core::{
    Command, Config, Decision, GateReason, Movement, Outcome, Pubkey, RequestId, Sats, Tier, TimeMs, DAY_MS,
};
use ledger_harness::seed::{DecideStage, SeedOp};
use ledger_harness::{Call, Engine, Observed, Reply};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};

use crate::reference::{self, PgError};
use crate::seed;

fn runtime() -> Result<tokio::runtime::Runtime, PgError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PgError::Protocol(format!("cannot build a tokio runtime: {e}")))
}

/// How long the server may take over one statement of a lockstep engine: it cancels the
/// statement then (`statement_timeout`), so a step that waits on a lock held elsewhere fails.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a lockstep engine waits for any one answer (a step, a read, connecting and
/// migrating) before it fails it: the server's own [`STATEMENT_TIMEOUT`] and some room. A
/// server that stopped answering (a stopped process, a lost network) ends here rather than
/// never.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(40);

/// How long a step waits for a connection: a dead server fails the step, not the run.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// `fut`, failed as a lost connection when the server has not answered within [`ANSWER_TIMEOUT`];
/// a wait past [`crate::wait::SAY_AFTER`] says on stderr `what` it waits for, and how long.
async fn answered<T, E: Into<PgError>>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, PgError> {
    match crate::wait::announced(what, ANSWER_TIMEOUT, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(PgError::Sql(no_answer())),
    }
}

/// The error of a server that did not answer within [`ANSWER_TIMEOUT`]: an I/O error, so that
/// [`reference::is_connection_lost`] takes it for what it is.
fn no_answer() -> sqlx::Error {
    no_answer_within(ANSWER_TIMEOUT)
}

/// [`no_answer`] after `limit`.
fn no_answer_within(limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from the server within {} s", limit.as_secs()),
    ))
}

/// What a lockstep engine notices about its server outside a reply: a read (`observe`,
/// `daily_remaining`) that failed, which leaves it answering with the last state it saw, and a
/// server that restarted under it (a new connection finds another postmaster start time),
/// which may have lost what it acknowledged. The engine itself goes on (a caller may retry
/// across a restart); a lockstep run asks [`PgReferenceEngine::take_trouble`] after every call
/// and stops, rather than judging the engine on a stale read or a server that lost commits.
#[derive(Debug, Default)]
struct Watch {
    trouble: Mutex<Option<String>>,
    /// The postmaster start time of the server the engine has been talking to.
    started: Mutex<Option<String>>,
    /// The next change of start time is expected (the caller restarted the server itself).
    restart_expected: std::sync::atomic::AtomicBool,
}

impl Watch {
    fn note(&self, what: String) {
        self.trouble.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(what);
    }

    fn take(&self) -> Option<String> {
        self.trouble.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// A new connection found a server started at `at`.
    fn connected_to(&self, at: String) {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        match started.as_deref() {
            Some(before) if before != at => {
                if !self.restart_expected.swap(false, Ordering::SeqCst) {
                    self.note(format!(
                        "the server restarted under the run (its postmaster started at {before}, now at {at}): \
                         what it acknowledged before may be lost"
                    ));
                }
                *started = Some(at);
            }
            Some(_) => {}
            None => *started = Some(at),
        }
    }
}

async fn connect_and_migrate(opts: PgConnectOptions, watch: &Arc<Watch>) -> Result<PgPool, PgError> {
    let opts = opts.options([("statement_timeout", STATEMENT_TIMEOUT.as_millis().to_string())]);
    let on_connect = Arc::clone(watch);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| {
            let watch = Arc::clone(&on_connect);
            Box::pin(async move {
                let at: String = sqlx::query_scalar("SELECT pg_postmaster_start_time()::text").fetch_one(conn).await?;
                watch.connected_to(at);
                Ok(())
            })
        })
        .connect_with(opts);
    // The pool's first connection is bounded by its acquire timeout (this bound only backs it
    // up); said like any other wait.
    let pool = match crate::wait::announced("a new connection (a lockstep run's)", ACQUIRE_TIMEOUT, pool).await {
        Ok(pool) => pool?,
        Err(e) => return Err(PgError::Sql(no_answer_within(e.0))),
    };
    answered("the migrations", async {
        crate::migrate(&pool).await.map_err(|e| PgError::Protocol(format!("migrations: {e}")))
    })
    .await?;
    Ok(pool)
}

/// The reference semantics on PostgreSQL, one server-side function call per step.
#[derive(Debug)]
pub struct PgReferenceEngine {
    rt: tokio::runtime::Runtime,
    pool: PgPool,
    config: Config,
    last_observed: Mutex<Observed>,
    watch: Arc<Watch>,
}

impl PgReferenceEngine {
    /// Connects, applies the migrations and writes genesis for `config` (the database must be
    /// fresh, or hold the same genesis).
    pub fn connect(opts: PgConnectOptions, config: Config) -> Result<PgReferenceEngine, PgError> {
        let rt = runtime()?;
        let watch = Arc::default();
        let pool = rt.block_on(async {
            let pool = connect_and_migrate(opts, &watch).await?;
            answered("genesis", reference::genesis(&pool, &config, TimeMs(0))).await?;
            Ok::<_, PgError>(pool)
        })?;
        Ok(PgReferenceEngine { rt, pool, config, last_observed: Mutex::new(Observed::default()), watch })
    }

    /// What went wrong with the server outside a reply since the last call of this: a read that
    /// failed (so [`Engine::observe`] answered with the last state it saw, and
    /// [`Engine::daily_remaining`] with nothing), or a restart of the server (it may have lost
    /// what it acknowledged). A lockstep run stops on it rather than judge the engine on it.
    pub fn take_trouble(&self) -> Option<String> {
        self.watch.take()
    }

    /// The caller is restarting the server itself (a crash test): the next new start time of the
    /// server is not trouble.
    pub fn expect_restart(&self) {
        self.watch.restart_expected.store(true, Ordering::SeqCst);
    }

    /// [`PgReferenceEngine::connect`] on a `postgres://` URL.
    pub fn connect_url(url: &str, config: Config) -> Result<PgReferenceEngine, PgError> {
        PgReferenceEngine::connect(url.parse()?, config)
    }

    /// The connection pool (for audits and fault injection).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The read-only I1/I2/I5 audit of the database ([`reference::audit`]).
    pub fn audit(&self) -> Result<Vec<reference::AuditFinding>, PgError> {
        self.rt.block_on(answered("the audit", reference::audit(&self.pool)))
    }
}

impl Engine for PgReferenceEngine {
    type Op = Command;

    fn name(&self) -> &'static str {
        "pg-reference"
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn begin(&mut self, call: &Call) -> Command {
        call.to_command()
    }

    fn step(&mut self, op: &mut Command, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        let applied = self.rt.block_on(answered(
            "a lockstep step (one statement and its commit)",
            reference::apply(&self.pool, op, now),
        ));
        Some(match applied {
            Ok(applied) => {
                journal.extend(applied.movements);
                Reply::from(applied.result)
            }
            Err(e) => Reply::Failed { error: reference::failed_reply(&e) },
        })
    }

    fn observe(&self) -> Observed {
        let mut last = self.last_observed.lock().unwrap_or_else(|p| p.into_inner());
        // A failed read (a killed connection) keeps the last state seen, and says so.
        match self.rt.block_on(answered("a read of the state (the pool's totals)", reference::totals(&self.pool))) {
            Ok(t) => {
                *last = Observed {
                    pool_sats: i128::from(t.balance_sats),
                    reserved_sats: Some(i128::from(t.reserved_sats)),
                    granted_sats: i128::from(t.absorbed_sats),
                    n_grants: u64::try_from(t.n_grants).unwrap_or(0),
                };
            }
            Err(e) => self.watch.note(read_failed("the state", &e)),
        }
        *last
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        let now_ms = i64::try_from(now.0).ok()?;
        let v: Option<i64> = self
            .rt
            .block_on(answered(
                "a read of a daily remaining",
                sqlx::query_scalar("SELECT ledger_daily_remaining(i, $2) FROM identities i WHERE pubkey = $1")
                    .bind(pubkey.to_string())
                    .bind(now_ms)
                    .fetch_optional(&self.pool),
            ))
            .map_err(|e| self.watch.note(read_failed("a daily remaining", &e)))
            .ok()?;
        Sats::new(u64::try_from(v?).ok()?).ok()
    }
}

/// The seed's statements on PostgreSQL, one database round trip per step.
#[derive(Debug)]
pub struct PgSeedEngine {
    rt: tokio::runtime::Runtime,
    client: SeedClient,
    last_observed: Mutex<Observed>,
    watch: Arc<Watch>,
}

impl PgSeedEngine {
    /// Connects and applies the migrations. The seed's tables start empty: no pool row until
    /// first boot, as in production.
    pub fn connect(opts: PgConnectOptions, config: Config) -> Result<PgSeedEngine, PgError> {
        let rt = runtime()?;
        let watch = Arc::default();
        let pool = rt.block_on(connect_and_migrate(opts, &watch))?;
        let last_observed = Mutex::new(Observed::default());
        Ok(PgSeedEngine { rt, client: SeedClient::new(pool, config), last_observed, watch })
    }

    /// What went wrong with the server outside a reply (see [`PgReferenceEngine::take_trouble`]).
    pub fn take_trouble(&self) -> Option<String> {
        self.watch.take()
    }

    /// [`PgSeedEngine::connect`] on a `postgres://` URL.
    pub fn connect_url(url: &str, config: Config) -> Result<PgSeedEngine, PgError> {
        PgSeedEngine::connect(url.parse()?, config)
    }

    /// The connection pool (for audits and fault injection).
    pub fn pool(&self) -> &PgPool {
        &self.client.pool
    }
}

/// The seed's service on a connection pool, for lockstep ([`PgSeedEngine`]) and for real
/// concurrency (share it between tokio tasks behind an `Arc`). Each [`SeedClient::step`] is one
/// database round trip of the TypeScript, on a connection taken from the pool for that trip.
#[derive(Debug)]
pub struct SeedClient {
    pool: PgPool,
    config: Config,
    n_grant_ids: AtomicU64,
}

impl SeedClient {
    /// A client on `pool` (migrated) under `config`.
    pub fn new(pool: PgPool, config: Config) -> SeedClient {
        SeedClient { pool, config, n_grant_ids: AtomicU64::new(0) }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The operation that runs `call`, before its first step.
    pub fn begin(call: &Call) -> SeedOp {
        match *call {
            Call::Decide { request_id, pubkey, estimated_sats } => SeedOp::Decide {
                request_id,
                pubkey,
                estimated: to_i64(estimated_sats),
                stage: DecideStage::ReadIdentity,
            },
            Call::ReservePartial { request_id, pubkey, amount_sats } => {
                SeedOp::ReservePartial { request_id, pubkey, requested: to_i64(amount_sats), can_absorb: None }
            }
            ref other => SeedOp::Single(other.clone()),
        }
    }

    /// Runs the next round trip of `op` at `now`; the reply once the call is finished.
    pub async fn step(&self, op: &mut SeedOp, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        let result = async {
            let mut conn = self.pool.acquire().await?;
            match op {
                SeedOp::Decide { request_id, pubkey, estimated, stage } => self
                    .step_decide(&mut conn, (*request_id, *pubkey, *estimated), stage, now, journal)
                    .await
                    .map(|d| d.map(|decision| Outcome::Decided { decision })),
                SeedOp::ReservePartial { request_id, pubkey, requested, can_absorb } => {
                    self.step_reserve_partial(&mut conn, (*request_id, *pubkey, *requested), can_absorb, now, journal)
                        .await
                }
                SeedOp::Single(call) => self.step_single(&mut conn, call, now, journal).await.map(Some),
            }
        }
        .await;
        match result {
            Ok(Some(outcome)) => Some(Reply::Ok(outcome)),
            Ok(None) => None,
            Err(e) => Some(Reply::Failed { error: reference::failed_reply(&PgError::Sql(e)) }),
        }
    }

    /// Runs all of `call` at `now`, round trip after round trip, as one caller of the seed does.
    pub async fn call(&self, call: &Call, now: TimeMs, journal: &mut Vec<Movement>) -> Reply {
        let mut op = SeedClient::begin(call);
        loop {
            if let Some(reply) = self.step(&mut op, now, journal).await {
                return reply;
            }
        }
    }

    /// The seed's observable state: the pool row (or what `getPoolBalance()` would answer
    /// before first boot), and the sum and count of `free_tier_grants`.
    pub async fn observe(&self) -> Result<Observed, sqlx::Error> {
        let r = sqlx::query(
            "SELECT (SELECT value FROM timmy_config WHERE key = $1), \
                    (SELECT coalesce(sum(sats_absorbed), 0)::bigint FROM free_tier_grants), \
                    (SELECT count(*) FROM free_tier_grants)",
        )
        .bind(seed::POOL_KEY)
        .fetch_one(&self.pool)
        .await?;
        let value: Option<String> = r.try_get(0)?;
        let granted: i64 = r.try_get(1)?;
        let n: i64 = r.try_get(2)?;
        Ok(Observed {
            pool_sats: i128::from(value.map_or(self.initial(), |v| seed::js_parse_int_or_zero(&v))),
            reserved_sats: None,
            granted_sats: i128::from(granted),
            n_grants: u64::try_from(n).unwrap_or(0),
        })
    }

    fn initial(&self) -> i64 {
        to_i64(self.config.pool_initial_sats)
    }

    /// `dailyBudgetForTier`; a tier the seed does not know falls to `new`, as its `default:`.
    fn budget(&self, tier: &str) -> i64 {
        to_i64(self.config.budget(tier.parse().unwrap_or(Tier::New)))
    }

    fn daily_remaining(&self, identity: &seed::SeedIdentity, now: TimeMs) -> i64 {
        let reset = TimeMs(u64::try_from(seed::millis(identity.absorbed_reset_at)).unwrap_or(0));
        let today_absorbed = if now.since(reset) >= DAY_MS { 0 } else { i64::from(identity.sats_absorbed_today) };
        (self.budget(&identity.tier) - today_absorbed).max(0)
    }

    async fn step_decide(
        &self,
        conn: &mut PgConnection,
        (request_id, pubkey, estimated): (RequestId, Pubkey, i64),
        stage: &mut DecideStage,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Option<Decision>, sqlx::Error> {
        let gate = |reason| Decision::Gate { reason, charge_sats: from_i64(estimated) };
        match *stage {
            DecideStage::ReadIdentity => {
                if estimated <= 0 {
                    return Ok(Some(gate(GateReason::ZeroEstimate)));
                }
                let Some(identity) = seed::get_identity(conn, &pubkey.to_string()).await? else {
                    return Ok(Some(gate(GateReason::UnknownIdentity)));
                };
                if self.budget(&identity.tier) == 0 {
                    return Ok(Some(gate(GateReason::ZeroBudget)));
                }
                let remaining = self.daily_remaining(&identity, now);
                if remaining == 0 {
                    return Ok(Some(gate(GateReason::DailyBudgetExhausted)));
                }
                *stage = DecideStage::ReadPool { remaining };
                Ok(None)
            }
            DecideStage::ReadPool { remaining } => match seed::select_pool_value(conn).await? {
                Some(v) => {
                    let balance = seed::js_parse_int_or_zero(&v);
                    Ok(after_pool_read(remaining, balance, estimated, stage))
                }
                None => {
                    *stage = DecideStage::SeedPool { remaining };
                    Ok(None)
                }
            },
            DecideStage::SeedPool { remaining } => {
                seed::insert_pool_if_missing(conn, self.initial()).await?;
                // getPoolBalance() returns POOL_INITIAL_SATS whatever the row holds now.
                Ok(after_pool_read(remaining, self.initial(), estimated, stage))
            }
            DecideStage::Debit { can_absorb } => {
                let debited = seed::atomic_pool_debit(conn, can_absorb, self.initial(), timestamp(now)).await?;
                if debited <= 0 {
                    return Ok(Some(gate(GateReason::PoolEmpty)));
                }
                journal.push(Movement::Debit { request_id, pubkey, amount_sats: from_i64(debited) });
                Ok(Some(Decision::Free { reserved_sats: from_i64(debited) }))
            }
        }
    }

    async fn step_reserve_partial(
        &self,
        conn: &mut PgConnection,
        (request_id, pubkey, requested): (RequestId, Pubkey, i64),
        can_absorb: &mut Option<i64>,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Option<Outcome>, sqlx::Error> {
        let nothing = Outcome::Reserved { reserved_sats: Sats::ZERO };
        match *can_absorb {
            None => {
                if requested <= 0 {
                    return Ok(Some(nothing));
                }
                let Some(identity) = seed::get_identity(conn, &pubkey.to_string()).await? else {
                    return Ok(Some(nothing));
                };
                let can = requested.min(self.daily_remaining(&identity, now));
                if can <= 0 {
                    return Ok(Some(nothing));
                }
                *can_absorb = Some(can);
                Ok(None)
            }
            Some(can) => {
                let debited = seed::atomic_pool_debit(conn, can, self.initial(), timestamp(now)).await?;
                if debited > 0 {
                    journal.push(Movement::Debit { request_id, pubkey, amount_sats: from_i64(debited) });
                }
                Ok(Some(Outcome::Reserved { reserved_sats: from_i64(debited) }))
            }
        }
    }

    async fn step_single(
        &self,
        conn: &mut PgConnection,
        call: &Call,
        now: TimeMs,
        journal: &mut Vec<Movement>,
    ) -> Result<Outcome, sqlx::Error> {
        let at = timestamp(now);
        match *call {
            Call::SetTier { pubkey, tier } => {
                let previous = seed::set_tier(conn, &pubkey.to_string(), tier.as_str(), at).await?;
                Ok(Outcome::TierSet { previous: previous.map(|t| t.parse().unwrap_or(Tier::New)) })
            }
            Call::Release { request_id, amount_sats } => {
                let n = to_i64(amount_sats);
                if n > 0 && seed::release_reservation(conn, int4(n)?, at).await? {
                    journal.push(Movement::Release { request_id, amount_sats });
                    return Ok(Outcome::Released { returned_sats: amount_sats });
                }
                Ok(Outcome::Released { returned_sats: Sats::ZERO })
            }
            Call::Credit { payment_id, paid_sats } => {
                let pct = f64::from(self.config.credit_bps.to_u16()) / 100.0;
                let credit = seed::credit_sats(to_i64(paid_sats), pct);
                if to_i64(paid_sats) <= 0 || credit <= 0 {
                    return Ok(Outcome::Credited { credited_sats: Sats::ZERO });
                }
                seed::credit(conn, int4(credit)?, at).await?;
                journal.push(Movement::Credit { payment_id, amount_sats: from_i64(credit) });
                Ok(Outcome::Credited { credited_sats: from_i64(credit) })
            }
            Call::Record { request_id, pubkey, actual_sats, reserved_sats } => {
                let to_record = to_i64(actual_sats).max(0);
                let over_reserved = (to_i64(reserved_sats) - to_record).max(0);
                // The seed's randomUUID(), made deterministic.
                let n = self.n_grant_ids.fetch_add(1, Ordering::Relaxed);
                let grant_id = format!("grant-{}-{n}", request_id.0);
                let recorded = seed::record_grant(
                    conn,
                    &grant_id,
                    &pubkey.to_string(),
                    &request_id.0.to_string(),
                    int4(to_record)?,
                    int4(to_i64(reserved_sats))?,
                    at,
                )
                .await?;
                let Some(returned_any) = recorded else {
                    return Ok(Outcome::Recorded {
                        absorbed_sats: Sats::ZERO,
                        returned_sats: Sats::ZERO,
                        overrun_sats: Sats::ZERO,
                    });
                };
                let returned = if returned_any { over_reserved } else { 0 };
                journal.push(Movement::Record {
                    request_id,
                    pubkey,
                    absorbed_sats: from_i64(to_record),
                    returned_sats: from_i64(returned),
                });
                Ok(Outcome::Recorded {
                    absorbed_sats: from_i64(to_record),
                    returned_sats: from_i64(returned),
                    overrun_sats: Sats::ZERO,
                })
            }
            // The seed has no expiry.
            Call::Expire => Ok(Outcome::Expired { released: Vec::new() }),
            Call::Decide { .. } | Call::ReservePartial { .. } => {
                unreachable!("multi-step calls have their own ops")
            }
        }
    }
}

/// The synchronous part of `decide` after `getPoolBalance()` returned `balance`.
fn after_pool_read(remaining: i64, balance: i64, estimated: i64, stage: &mut DecideStage) -> Option<Decision> {
    let can_absorb = remaining.min(balance).min(estimated);
    if balance <= 0 || can_absorb <= 0 {
        return Some(Decision::Gate { reason: GateReason::PoolEmpty, charge_sats: from_i64(estimated) });
    }
    if can_absorb >= estimated {
        *stage = DecideStage::Debit { can_absorb };
        return None;
    }
    Some(Decision::Partial { offer_sats: from_i64(can_absorb), charge_sats: from_i64(estimated - can_absorb) })
}

impl Engine for PgSeedEngine {
    type Op = SeedOp;

    fn name(&self) -> &'static str {
        "pg-seed"
    }

    fn speaks_reference_api(&self) -> bool {
        false
    }

    fn config(&self) -> &Config {
        &self.client.config
    }

    fn begin(&mut self, call: &Call) -> SeedOp {
        SeedClient::begin(call)
    }

    fn step(&mut self, op: &mut SeedOp, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        // The timer is made inside the runtime: it needs its clock.
        let step = self.client.step(op, now, journal);
        match self.rt.block_on(crate::wait::announced(
            "a lockstep step (a round trip of the seed)",
            ANSWER_TIMEOUT,
            step,
        )) {
            Ok(reply) => reply,
            Err(_) => Some(Reply::Failed { error: reference::failed_reply(&PgError::Sql(no_answer())) }),
        }
    }

    fn observe(&self) -> Observed {
        let mut last = self.last_observed.lock().unwrap_or_else(|p| p.into_inner());
        // A failed read (a killed connection) keeps the last state seen, and says so.
        match self.rt.block_on(answered("a read of the state", self.client.observe())) {
            Ok(observed) => *last = observed,
            Err(e) => self.watch.note(read_failed("the state", &e)),
        }
        *last
    }

    fn daily_remaining(&self, pubkey: &Pubkey, now: TimeMs) -> Option<Sats> {
        let identity = self
            .rt
            .block_on(answered("a read of a daily remaining", async {
                let mut conn = self.client.pool.acquire().await?;
                seed::get_identity(&mut conn, &pubkey.to_string()).await
            }))
            .map_err(|e| self.watch.note(read_failed("a daily remaining", &e)))
            .ok()??;
        Sats::new(u64::try_from(self.client.daily_remaining(&identity, now)).ok()?).ok()
    }
}
/// The trouble of a read of `what` that failed with `e`.
fn read_failed(what: &str, e: &PgError) -> String {
    format!("reading {what} failed: {e}")
}

fn timestamp(now: TimeMs) -> DateTime<Utc> {
    seed::timestamp(now.0)
}

fn to_i64(s: Sats) -> i64 {
    i64::try_from(s.to_u64()).expect("Sats::MAX fits i64")
}

fn from_i64(v: i64) -> Sats {
    Sats::new(u64::try_from(v).expect("seed amounts handed out are positive")).expect("fits")
}

/// The seed's JavaScript number sent into an `integer` context: out of range fails on the
/// server, as it would in production.
fn int4(v: i64) -> Result<i32, sqlx::Error> {
    i32::try_from(v).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}
