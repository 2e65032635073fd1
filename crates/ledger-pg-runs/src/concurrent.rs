//! Concurrent runs: N tokio tasks run job and session flows with real concurrency and
//! server faults (killed connections, lost acknowledgements, a restart).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_core::{Command, Decision, Movement, Pubkey, RequestId, Sats, Tier, TimeMs};
use ledger_harness::{Call, Invariant, Reply, Violation};
use ledger_pg::batch::{Batcher, BatcherOptions};
use ledger_pg::engine::SeedClient;
use ledger_pg::reference;
use ledger_pg::testpg::{Durability, TestPg};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::args::{engine_name, PgArgs, PgRun};
use crate::checks::{durability, final_checks, linearizability};
use crate::client::Client;
use crate::outage::Outage;
use crate::progress::{Progress, Where, PROGRESS_EVERY};
use crate::record::{ConcFlow, OpRecord};
use crate::server::{self, redacted, Db, Server};
use ledger_simulator::caller::{Caller as FlowCaller, Close, Event as CallerEvent, Next};
use ledger_simulator::coverage::{Coverage, Mark};
use ledger_simulator::exec::EPOCH;
use ledger_simulator::report::{EngineKind, Reduction, RunReport, ViolationReport};
use ledger_simulator::scenario::Scenario;

/// A call that keeps failing this many times kills its flow.
const MAX_ATTEMPTS: u32 = 60;

/// How long the first connection of a seed may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may wait for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a call waits for a connection of the pool before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("scenario amounts are validated")
}

pub(crate) fn draw_workload(s: &Scenario, seed: u64) -> (BTreeMap<u32, Tier>, Vec<ConcFlow>) {
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

/// What every task of a concurrent run shares.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) pool: PgPool,
    /// For `pg_terminate_backend`: a connection pool no fault touches.
    pub(crate) admin: PgPool,
    pub(crate) seed: u64,
    pub(crate) kill_rate: f64,
    pub(crate) lost_ack_rate: f64,
    pub(crate) restart_at: Option<u64>,
    pub(crate) crash_at: Option<u64>,
    pub(crate) restarter: Option<Arc<TestPg>>,
    pub(crate) restart: Mutex<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>,
    pub(crate) n_calls: AtomicU64,
    /// The run's one clock for the history: ticks at every sending and every answer.
    pub(crate) clock: AtomicU64,
    pub(crate) ops: Mutex<Vec<OpRecord>>,
    pub(crate) marks: Mutex<BTreeMap<&'static str, u64>>,
    /// Whether the database has been failing every call, and since when.
    pub(crate) outage: Outage,
    /// Where a probe connection goes, to learn why the pool cannot connect.
    pub(crate) opts: PgConnectOptions,
    /// Calls given up because the server raised an error for them ([`ENGINE_ERROR`]): how
    /// many, and the first few described.
    pub(crate) engine_errors: Mutex<(u64, Vec<String>)>,
}

/// The options of the connections a run's calls go through: the server itself cancels a
/// statement still running after [`CALL_TIMEOUT`], so that a call the client has given up on
/// does not go on holding its locks on the server, with its own retry queued behind it.
fn calls_options(opts: &PgConnectOptions) -> PgConnectOptions {
    opts.clone().options([("statement_timeout", CALL_TIMEOUT.as_millis().to_string())])
}

/// How a failed reply begins when the server raised an error for the call itself: neither a
/// lost connection nor a serialization failure or deadlock (those are retried), but an error of
/// the SQL (a constraint, a raised exception). The database is not down, and sending the call
/// again cannot be expected to help: it is the implementation's error, and a run reports it.
const ENGINE_ERROR: &str = "the server raised an error for this call: ";

/// How many times a call the server answers with an error ([`ENGINE_ERROR`]) is sent before
/// its caller gives it up.
const ENGINE_ERROR_ATTEMPTS: u32 = 3;

/// How many of a seed's calls given up on an error of the server (or of an exec
/// implementation) are described in its report.
pub(crate) const ENGINE_ERRORS_KEPT: usize = 5;

/// The reply and movements of a `pg-reference` call.
fn answered(applied: Result<reference::Applied, reference::PgError>) -> (Reply, Vec<Movement>) {
    match applied {
        Ok(a) => (Reply::from(a.result), a.movements),
        Err(e) => {
            let raised = matches!(&e, reference::PgError::Sql(sql) if reference::is_raised_by_the_sql(sql));
            let error = if raised { format!("{ENGINE_ERROR}{e}") } else { e.to_string() };
            (Reply::Failed { error }, Vec::new())
        }
    }
}

const ADMIN_APP: &str = "ledger-sim-admin";

impl Ctx {
    fn mark(&self, m: Mark) {
        *self.marks.lock().unwrap_or_else(|p| p.into_inner()).entry(m.name()).or_insert(0) += 1;
    }

    /// `call` of `flow` was given up after the server raised `error` for it every time.
    fn gave_up_on_error(&self, flow: u32, call: &Call, error: &str) {
        let mut e = self.engine_errors.lock().unwrap_or_else(|p| p.into_inner());
        e.0 += 1;
        if e.1.len() < ENGINE_ERRORS_KEPT {
            let who = if flow == u32::MAX { "the final sweep".to_owned() } else { format!("flow {flow}") };
            e.1.push(format!("{who}: {call:?} failed {ENGINE_ERROR_ATTEMPTS} times: {error}"));
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// Records `call`, sent at `sent` (a [`Ctx::tick`]) and answered now.
    fn record(
        &self,
        flow: u32,
        call: &Call,
        sent: (TimeMs, u64),
        reply: &Reply,
        movements: Vec<Movement>,
        fault: Option<&'static str>,
    ) {
        let (now, invoked) = sent;
        let completed = self.tick();
        let op = OpRecord { flow, call: call.clone(), reply: reply.clone(), movements, now, invoked, completed, fault };
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    /// Sends `call` once; `kill` cuts a connection in the middle of a transaction. A call
    /// that has no answer within [`CALL_TIMEOUT`] fails (and is retried like any failed call:
    /// every command is idempotent by its ids), so that no wait on the server is unbounded.
    async fn send(&self, call: &Call, now: TimeMs, kill: bool) -> (Reply, Vec<Movement>) {
        let what = format!(
            "a call (each is sent again when it fails, until every call has failed for {} s)",
            self.outage.give_up_after().as_secs()
        );
        match ledger_pg::wait::announced(&what, CALL_TIMEOUT, self.send_unbounded(call, now, kill)).await {
            Ok(answered) => answered,
            Err(_) => {
                self.mark(Mark::CallTimedOut);
                let error = format!("no answer within {} s", CALL_TIMEOUT.as_secs());
                (Reply::Failed { error }, Vec::new())
            }
        }
    }

    async fn send_unbounded(&self, call: &Call, now: TimeMs, kill: bool) -> (Reply, Vec<Movement>) {
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
        let crash = Some(n) == self.crash_at;
        if Some(n) != self.restart_at && !crash {
            return;
        }
        let Some(pg) = self.restarter.clone() else { return };
        self.mark(if crash { Mark::ServerCrash } else { Mark::ServerRestart });
        let handle = tokio::task::spawn_blocking(move || {
            if crash {
                pg.kill_server().map_err(|e| anyhow::anyhow!("crashing the server: {e}"))?;
                pg.start_server().map_err(|e| anyhow::anyhow!("starting the server after its crash: {e}"))
            } else {
                pg.restart_server().map_err(|e| anyhow::anyhow!("restarting the server: {e}"))
            }
        });
        *self.restart.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    /// Delivers `call` until it gets an answer, as an at-least-once caller does: a failure is
    /// retried with the same ids, a lost acknowledgement too. `None` when it never answered.
    async fn deliver(&self, flow: u32, call: &Call, now: TimeMs, rng: &mut ChaCha8Rng) -> Option<Reply> {
        let mut fault = None;
        let mut raised = 0;
        for attempt in 0..MAX_ATTEMPTS {
            if self.outage.gave_up() {
                return None;
            }
            self.maybe_restart();
            let kill = self.kill_rate > 0.0 && rng.gen_bool(self.kill_rate);
            let invoked = self.tick();
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
            self.record(flow, call, (now, invoked), &reply, movements, this_fault);
            if kill {
                self.mark(Mark::ConnectionKilled);
            }
            if lost {
                self.mark(Mark::LostAckRetry);
                fault = Some("retry");
                continue;
            }
            if let Reply::Failed { error } = &reply {
                if error.starts_with(ENGINE_ERROR) {
                    // The server answered: no outage, and no point in many more tries.
                    self.outage.answered();
                    raised += 1;
                    if raised >= ENGINE_ERROR_ATTEMPTS {
                        self.gave_up_on_error(flow, call, error);
                        self.mark(Mark::CallGaveUp);
                        return None;
                    }
                    fault = Some("retry");
                    continue;
                }
                if self.outage.failed(&server::why(error, &self.opts).await) {
                    return None;
                }
                self.mark(Mark::FailedCallRetried);
                fault = Some("retry");
                // Back off: the server may be restarting.
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
                continue;
            }
            self.outage.answered();
            return Some(reply);
        }
        self.mark(Mark::CallGaveUp);
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
}

impl Caller<'_> {
    fn request_id(&self) -> RequestId {
        RequestId(u64::from(self.flow.id))
    }

    fn pubkey(&self) -> Pubkey {
        ledger_harness::user_pubkey(u64::from(self.flow.user))
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
            self.ctx.mark(Mark::DuplicateDelivered);
            let invoked = self.ctx.tick();
            let (r, m) = self.ctx.send(&call, self.now, false).await;
            self.ctx.record(self.flow.id, &call, (self.now, invoked), &r, m, Some("duplicate"));
        }
        if self.flow.crash_after == Some(self.n_calls) {
            self.ctx.mark(Mark::WorkerCrash);
            return None;
        }
        Some(reply)
    }

    /// The flow, driven through the simulator's caller state machine
    /// ([`ledger_simulator::caller`]), as the in-memory executor drives it: `None` when the
    /// worker died (it crashed, or a call never answered).
    async fn run(&mut self) -> Option<Close> {
        let f = self.flow;
        let (estimated, actual) = (sats(f.estimated_sats), sats(f.actual_sats));
        let mut caller = FlowCaller::new(self.request_id(), self.pubkey(), f.session, estimated, actual, self.now);
        loop {
            match caller.poll() {
                Next::Call(call) => {
                    let call = call.clone();
                    let reply = self.call(call).await?;
                    caller.handle_reply(&reply, self.now);
                }
                Next::Work => caller.handle_work(!f.work_fails),
                Next::Invoice { abandonable, .. } => {
                    let abandons = abandonable && f.abandon;
                    if abandons {
                        self.ctx.mark(Mark::InvoiceAbandoned);
                    }
                    caller.handle_invoice(!abandons);
                }
                Next::Done(close) => return Some(close),
            }
            while let Some(event) = caller.poll_event() {
                match event {
                    CallerEvent::Decided(Decision::Free { .. }) => self.ctx.mark(Mark::DecisionFree),
                    CallerEvent::Decided(Decision::Partial { .. }) => self.ctx.mark(Mark::DecisionPartial),
                    CallerEvent::Decided(Decision::Gate { .. }) => self.ctx.mark(Mark::DecisionGate),
                    CallerEvent::Granted => {}
                    CallerEvent::Mark(mark) => self.ctx.mark(mark),
                }
            }
        }
    }
}

/// What a concurrent seed produced.
pub(crate) struct ConcSeed {
    pub(crate) violations: Vec<Violation>,
    pub(crate) n_calls: u64,
    pub(crate) n_requests: u64,
    pub(crate) marks: BTreeMap<&'static str, u64>,
    pub(crate) ops: Vec<OpRecord>,
    /// Deadlocks the server broke (40P01) during the seed ([`server_deadlocks`]).
    pub(crate) deadlocks: u64,
    /// Calls given up because the server raised an error for each try, and the first few.
    pub(crate) n_engine_errors: u64,
    pub(crate) engine_errors: Vec<String>,
}

/// The deadlocks PostgreSQL has broken (40P01) in the current database since its statistics
/// began (`pg_stat_database.deadlocks`). A backend adds its own to the count when it goes idle
/// (at most once a second) and when it exits.
async fn server_deadlocks(admin: &PgPool) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(admin)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How often a concurrent run looks for deadlocks while its traffic runs.
const DEADLOCK_WATCH_EVERY: Duration = Duration::from_secs(5);

/// Says on stderr, while the traffic runs, how many deadlocks the server has broken since
/// `before`: the real functions never deadlock (they lock identities before pool stripes,
/// stripes one alone or all in order), and each deadlock stalls every call queued behind it
/// for `deadlock_timeout` before PostgreSQL breaks it and the call is retried, so a run that
/// crawls says why.
async fn watch_deadlocks(admin: PgPool, seed: u64, before: u64) {
    let mut said = 0;
    loop {
        tokio::time::sleep(DEADLOCK_WATCH_EVERY).await;
        let Ok(now) = server_deadlocks(&admin).await else { continue };
        let n = now.saturating_sub(before);
        if n > said {
            said = n;
            ledger_exec::say!(
                "ledger-sim: seed {seed}: the server has broken {n} deadlock(s) (40P01) so far: the SQL functions \
                 take their locks in orders that cycle; each stalls the calls behind it for deadlock_timeout, \
                 then one call is aborted and retried"
            );
        }
    }
}

/// Says on stderr every [`PROGRESS_EVERY`], while the traffic of `seed` runs, where it is: its
/// steps `done` of `n_steps`, the calls answered (and how many of them with an error) and those
/// in flight.
async fn watch_progress(ctx: Arc<Ctx>, done: Arc<AtomicU64>, seed: u64, n_steps: u64) {
    let progress = Progress::new(seed, n_steps);
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let (answered, failed) = {
            let ops = ctx.ops.lock().unwrap_or_else(|p| p.into_inner());
            (ops.len() as u64, ops.iter().filter(|op| matches!(op.reply, Reply::Failed { .. })).count() as u64)
        };
        // The clock ticks once as a call is sent and once as it is answered.
        let in_flight = ctx.clock.load(Ordering::SeqCst).saturating_sub(2 * answered);
        let at = Where { done: done.load(Ordering::Relaxed), answered, failed, in_flight };
        ledger_exec::say!("{}", progress.line(at));
    }
}

/// The deadlocks the server broke since `before`, once every connection of the run's pool
/// (closed) has ended: a backend counts its last deadlocks when it exits. A failure to read
/// them is said on stderr and counts none: statistics never fail a run.
async fn deadlocks_since(admin: &PgPool, before: u64) -> u64 {
    match count_deadlocks_since(admin, before).await {
        Ok(n) => n,
        Err(e) => {
            ledger_exec::say!("ledger-sim: cannot read the server's deadlock count (pg_stat_database): {e}");
            0
        }
    }
}

async fn count_deadlocks_since(admin: &PgPool, before: u64) -> anyhow::Result<u64> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        // The run's lock on a given database (`server::RunLock`) stays connected: not one of
        // the pool's connections, whose statistics are awaited here.
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name <> $1 \
             AND application_name NOT LIKE $2 || '%'",
        )
        .bind(ADMIN_APP)
        .bind(server::RUN_LOCK_APP)
        .fetch_one(admin)
        .await?;
        if others == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A backend leaves pg_stat_activity just before it writes its statistics.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(server_deadlocks(admin).await?.saturating_sub(before))
}

pub(crate) fn concurrent_run(
    run: &PgRun<'_>,
    args: &PgArgs,
    server: &Server,
    n_tasks: u32,
    mutant: Option<&str>,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let mut per_seed = Vec::new();
    for seed in run.seeds.0..run.seeds.1 {
        if run.stopping() {
            break;
        }
        // A seed's private cluster given up for a signal: the run reports the seeds before it.
        let Some(db) = server.fresh_unless_stopped(run.stop)? else { break };
        let mut r = concurrent_seed(run.kind, run.scenario, seed, &db, args, n_tasks, mutant)?;
        server_fault_reached(seed, args, &mut r);
        let bad = !r.violations.is_empty() || r.deadlocks > 0 || r.n_engine_errors > 0;
        per_seed.push((seed, r));
        if bad && run.fail_fast {
            break;
        }
    }
    let again = format!(
        "ledger-sim run --engine {}{} --users {} --steps {} --concurrency {n_tasks}{}",
        engine_name(run.kind),
        crate::args::scenario_flag(run),
        run.scenario.n_users,
        run.scenario.n_steps,
        fault_flags(args)
    );
    let words = EngineErrorWords { title: "the server raised an error for a call", detail: &pg_engine_error };
    concurrent_report(run, engine_name(run.kind), n_tasks, &per_seed, started.elapsed(), &again, &words)
}

/// What a concurrent run's `engine_error` finding says (calls the implementation failed on
/// every try, which the run gave up): its title, and its detail given how many calls it
/// gave up in the seed and the first, described.
pub(crate) struct EngineErrorWords<'a> {
    pub(crate) title: &'a str,
    pub(crate) detail: &'a dyn Fn(u64, &str) -> String,
}

/// What the `engine_error` of a run on PostgreSQL says: the SQL itself raised an error for
/// the call ([`ENGINE_ERROR`]) on each of its tries.
fn pg_engine_error(n: u64, first: &str) -> String {
    format!(
        "{n} call(s) got an error of the SQL itself (not a lost connection, not a serialization failure or \
         deadlock) on each of {ENGINE_ERROR_ATTEMPTS} tries and were given up; the database answered, the \
         implementation failed; the first: {first}"
    )
}

/// Says so when `r`, seed `seed`, ended before the call of `--crash-server-at` or
/// `--restart-server-at`, as a lockstep run does: on stderr, and in the report, where the
/// fault's mark is then counted at 0 (the coverage lists it as never reached) rather than left
/// out, so that a run whose server was never crashed does not read as one that checked I7
/// across a crash.
fn server_fault_reached(seed: u64, args: &PgArgs, r: &mut ConcSeed) {
    let asked = [
        ("--crash-server-at", args.crash_server_at, Mark::ServerCrash, "crashed"),
        ("--restart-server-at", args.restart_server_at, Mark::ServerRestart, "restarted"),
    ];
    for (flag, at, mark, done) in asked {
        let Some(at) = at else { continue };
        if r.marks.get(mark.name()).copied().unwrap_or(0) == 0 {
            ledger_exec::say!(
                "ledger-sim: seed {seed} ended after {} calls, before {flag} {at}: its server was never {done}",
                r.n_calls
            );
            r.marks.insert(mark.name(), 0);
        }
    }
}

/// The report of a concurrent run's seeds: for each invariant broken, the first seed's
/// recorded calls written out and the command (`again`, without `--seed`) that runs it again;
/// the calls given up on the implementation's errors worded as `engine_error` says them.
pub(crate) fn concurrent_report(
    run: &PgRun<'_>,
    name: &str,
    n_tasks: u32,
    per_seed: &[(u64, ConcSeed)],
    elapsed: std::time::Duration,
    again: &str,
    engine_error: &EngineErrorWords<'_>,
) -> anyhow::Result<RunReport> {
    let mut coverage = Coverage::default();
    let mut violations = Vec::new();
    for (_, r) in per_seed {
        coverage.merge(&Coverage(r.marks.clone()));
    }
    // What one kind of finding says: the seeds that have it, and the first one's calls
    // written out with its description.
    let mut finding = |invariant: &str,
                       title: &str,
                       suffix: &str,
                       has: &dyn Fn(&ConcSeed) -> bool,
                       describe: &dyn Fn(&ConcSeed) -> (String, Vec<String>)|
     -> anyhow::Result<()> {
        let seeds: Vec<&(u64, ConcSeed)> = per_seed.iter().filter(|(_, r)| has(r)).collect();
        let Some((seed, first)) = seeds.first() else { return Ok(()) };
        let path = run.trace_dir.join(format!("{name}-concurrent-seed{seed}{suffix}.jsonl"));
        write_ops(&first.ops, &path)?;
        let (detail, steps) = describe(first);
        violations.push(ViolationReport {
            invariant: invariant.to_owned(),
            name: title.to_owned(),
            seed: *seed,
            seeds: seeds.iter().map(|(s, _)| *s).collect(),
            seeds_unlisted: 0,
            detail,
            shrunk_flows: 0,
            shrunk_events: 0,
            reduction: Reduction::None,
            steps,
            trace: path.display().to_string(),
            replay: format!("not replayable (real concurrency); run again: {again} --seed {seed}"),
        });
        Ok(())
    };
    for inv in Invariant::ALL {
        let mine = |r: &ConcSeed| r.violations.iter().filter(|v| v.invariant == inv).cloned().collect::<Vec<_>>();
        finding(inv.id(), inv.name(), "", &|r| !mine(r).is_empty(), &|r| {
            let mine = mine(r);
            let detail = format!("{} ({} violation(s) in this seed)", mine[0], mine.len());
            (detail, mine.iter().take(8).map(|v| v.to_string()).collect())
        })?;
    }
    finding("deadlock", "the server broke deadlocks (40P01)", "-deadlock", &|r| r.deadlocks > 0, &|r| {
        let detail = format!(
            "PostgreSQL broke {} deadlock(s) during this seed: the SQL functions take their row locks in orders \
             that cycle (every command must lock its identities before pool stripes, stripes one alone or all in \
             stripe order); each stalled the calls queued behind it for deadlock_timeout before one was aborted \
             and retried",
            r.deadlocks
        );
        (detail, Vec::new())
    })?;
    finding("engine_error", engine_error.title, "-engine-error", &|r| r.n_engine_errors > 0, &|r| {
        let detail = (engine_error.detail)(r.n_engine_errors, r.engine_errors.first().map_or("", String::as_str));
        (detail, r.engine_errors.clone())
    })?;
    let n_calls: u64 = per_seed.iter().map(|(_, r)| r.n_calls).sum();
    Ok(RunReport {
        engine: format!("{name} (concurrency {n_tasks})"),
        scheduler: None,
        seeds: format!("{}..{}", run.seeds.0, run.ran_to(per_seed.last().map(|r| r.0))),
        steps: n_calls,
        requests: per_seed.iter().map(|(_, r)| r.n_requests).sum(),
        violations,
        coverage,
        trace_hash: None,
        deterministic: false,
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
    if let Some(n) = args.linearizability_budget {
        s.push_str(&format!(" --linearizability-budget {n}"));
    }
    if let Some(n) = args.restart_server_at {
        s.push_str(&format!(" --restart-server-at {n}"));
    }
    if let Some(n) = args.crash_server_at {
        s.push_str(&format!(" --crash-server-at {n}"));
    }
    if let Some(n) = args.batch_lanes {
        s.push_str(&format!(" --batch-lanes {n}"));
    }
    if let Some(path) = &args.pg_mutant {
        s.push_str(&format!(" --pg-mutant {}", crate::args::shell_quote(&path.display().to_string())));
    }
    s
}

/// How long one step of a seed's setup (migrations, genesis) or its end may wait on the database.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long reading the final state for a seed's checks may take.
const FINAL_CHECKS_TIMEOUT: Duration = Duration::from_secs(300);

/// `fut`, a step of a seed's setup or end that waits on the database: at most `limit`, said on
/// stderr when it waits past [`ledger_pg::wait::SAY_AFTER`], and an error saying `what` it was
/// when it runs out of time.
async fn bounded<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match ledger_pg::wait::announced(what, limit, fut).await {
        Ok(done) => done,
        Err(e) => Err(anyhow::anyhow!("waiting for the database to answer {what}: {e}")),
    }
}

/// How long closing a connection pool may wait for its connections to come back.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Closes `pool`, waiting at most [`CLOSE_TIMEOUT`] for its checked-out connections; `what`
/// names it in the error.
async fn close_pool(pool: &PgPool, what: &str) -> anyhow::Result<()> {
    if ledger_pg::wait::announced(&format!("the closing of {what}"), CLOSE_TIMEOUT, pool.close()).await.is_err() {
        anyhow::bail!(
            "closing {what}: {} connection(s) still checked out after {} s",
            pool.size().saturating_sub(u32::try_from(pool.num_idle()).unwrap_or(u32::MAX)),
            CLOSE_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// The calls of a concurrent run as JSON Lines, one [`OpRecord`] a line.
pub(crate) fn write_ops(ops: &[OpRecord], path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("making the directory {}: {e}", dir.display()))?;
    }
    let mut buf = Vec::new();
    for op in ops {
        serde_json::to_writer(&mut buf, op)?;
        buf.push(b'\n');
    }
    ledger_simulator::files::write_whole(path, &buf).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn concurrent_seed(
    kind: EngineKind,
    s: &Scenario,
    seed: u64,
    db: &Db,
    args: &PgArgs,
    n_tasks: u32,
    mutant: Option<&str>,
) -> anyhow::Result<ConcSeed> {
    let (users, flows) = draw_workload(s, seed);
    let config = s.ledger;
    let opts: PgConnectOptions = db.url.parse()?;
    let restarter = match (&db.test, args.restart_server_at.or(args.crash_server_at)) {
        (Some(t), Some(_)) => Some(Arc::clone(t)),
        (None, Some(_)) => anyhow::bail!("--restart-server-at and --crash-server-at need a private cluster"),
        _ => None,
    };
    let args = args.clone();
    let shown = redacted(&db.url);
    let mutant = mutant.map(str::to_owned);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(async move {
        // One connection first, so that a refused or failing connection is reported as
        // itself, at once, rather than as a pool that timed out.
        ledger_exec::say!("ledger-sim: connecting to {shown} (waiting at most {} s)", CONNECT_TIMEOUT.as_secs());
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => {
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.close()).await;
            }
            Ok(Err(e)) => anyhow::bail!("connecting to {shown}: {e}"),
            Err(_) => anyhow::bail!("connecting to {shown}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }
        // A call waits at most ACQUIRE_TIMEOUT for a connection, so a dead server fails
        // calls (which the outage monitor counts) instead of holding them.
        let pool = PgPoolOptions::new()
            .max_connections(n_tasks + 4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(calls_options(&opts));
        let pool = bounded("a new connection (the run's pool)", ACQUIRE_TIMEOUT, async { Ok(pool.await?) }).await?;
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts.clone().application_name(ADMIN_APP));
        let admin = bounded("a new connection (the admin pool)", ACQUIRE_TIMEOUT, async { Ok(admin.await?) }).await?;
        bounded("the migrations", STEP_TIMEOUT, async { Ok(ledger_pg::migrate(&pool).await?) }).await?;
        let deadlocks_before =
            bounded("a read of the server's deadlock count", STEP_TIMEOUT, server_deadlocks(&admin)).await?;
        if let Some(sql) = &mutant {
            // `--pg-mutant`: one of the schema's functions replaced, before any traffic.
            bounded("--pg-mutant's SQL", STEP_TIMEOUT, async {
                sqlx::raw_sql(sql).execute(&pool).await.map_err(|e| anyhow::anyhow!("installing --pg-mutant: {e}"))
            })
            .await?;
        }
        let client = match kind {
            EngineKind::PgSeed => Client::Seed(SeedClient::new(pool.clone(), config)),
            _ => {
                bounded("genesis", STEP_TIMEOUT, async { Ok(reference::genesis(&pool, &config, TimeMs(0)).await?) })
                    .await?;
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
            crash_at: args.crash_server_at,
            restarter,
            restart: Mutex::new(None),
            n_calls: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            ops: Mutex::new(Vec::new()),
            marks: Mutex::new(BTreeMap::new()),
            outage: Outage::new(args.give_up_after()),
            opts: opts.clone(),
            engine_errors: Mutex::new((0, Vec::new())),
        });
        // The trust service's identities, before any traffic.
        for (&user, &tier) in &users {
            let call = Call::SetTier { pubkey: ledger_harness::user_pubkey(u64::from(user)), tier };
            let (reply, _) = ctx.send(&call, EPOCH, false).await;
            if !matches!(reply, Reply::Ok(_)) {
                anyhow::bail!("set_tier failed: {reply:?}");
            }
        }
        if ctx.crash_at.is_some() {
            // The schema and the identities are the test's setup, not its traffic: on disk
            // before the crash, whatever the server's settings, so that a crash judges only
            // what the traffic was acknowledged.
            bounded("a CHECKPOINT", STEP_TIMEOUT, async { Ok(sqlx::query("CHECKPOINT").execute(&ctx.admin).await?) })
                .await?;
            if args.durability() == Durability::LosesAcknowledged {
                // From here to the crash, what the server acknowledges stays in its memory:
                // the crash loses it for certain, not only when its timing falls so.
                if let Some(pg) = &ctx.restarter {
                    pg.stall_wal_writer().map_err(|e| anyhow::anyhow!("stalling the WAL writer: {e}"))?;
                }
            }
        }
        let watch = tokio::spawn(watch_deadlocks(ctx.admin.clone(), seed, deadlocks_before));
        let done = Arc::new(AtomicU64::new(0));
        let progress = Progress::new(seed, flows.len() as u64);
        let watch_steps = tokio::spawn(watch_progress(Arc::clone(&ctx), Arc::clone(&done), seed, flows.len() as u64));
        let flows = Arc::new(flows);
        let next = Arc::new(AtomicU64::new(0));
        let closes = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks: Vec<_> = (0..n_tasks)
            .map(|_| {
                let (ctx, flows, next, closes, done) =
                    (Arc::clone(&ctx), Arc::clone(&flows), Arc::clone(&next), Arc::clone(&closes), Arc::clone(&done));
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
                        };
                        if let Some(close) = caller.run().await {
                            closes.lock().unwrap_or_else(|p| p.into_inner()).insert(flow.id, close);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        watch.abort();
        watch_steps.abort();
        if ctx.outage.gave_up() {
            return Err(ctx.outage.error());
        }
        let restart = ctx.restart.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = restart {
            h.await??;
        }
        // Traffic stopped: let every deadline pass and run the sweeper (the seed has none).
        let end = EPOCH.plus_ms(10 * u64::try_from(flows.len()).unwrap_or(0) + config.reservation_ttl_ms + 1000);
        let mut swept = false;
        let mut raised = 0;
        for attempt in 0..MAX_ATTEMPTS {
            let invoked = ctx.tick();
            let (reply, movements) = ctx.send(&Call::Expire, end, false).await;
            ctx.record(u32::MAX, &Call::Expire, (end, invoked), &reply, movements, None);
            match &reply {
                Reply::Failed { error } if error.starts_with(ENGINE_ERROR) => {
                    raised += 1;
                    if raised >= ENGINE_ERROR_ATTEMPTS {
                        // Reported as the implementation's error; the books are still checked.
                        ctx.gave_up_on_error(u32::MAX, &Call::Expire, error);
                        swept = true;
                        break;
                    }
                }
                Reply::Failed { error } => {
                    if ctx.outage.failed(error) {
                        return Err(ctx.outage.error());
                    }
                }
                _ => {
                    swept = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
        }
        if !swept {
            anyhow::bail!("the final expire never succeeded");
        }
        let closes = std::mem::take(&mut *closes.lock().unwrap_or_else(|p| p.into_inner()));
        progress.checking(ctx.ops.lock().unwrap_or_else(|p| p.into_inner()).len());
        let mut violations = bounded(
            "the reads of the final checks",
            FINAL_CHECKS_TIMEOUT,
            final_checks(&ctx.client, &ctx.pool, &ctx.ops, &config, &users, &flows, &closes),
        )
        .await?;
        if matches!(ctx.client, Client::Reference(..)) {
            // A crash of a server that is not durable may lose what it acknowledged: the
            // answers after it need not fit any order, and I7 says why.
            let crashed = ctx.crash_at.is_some_and(|n| ctx.n_calls.load(Ordering::Relaxed) >= n);
            if !crashed
                || bounded("a read of the server's durability settings", STEP_TIMEOUT, durability(&ctx.pool))
                    .await?
                    .is_none()
            {
                let (judged, mark) =
                    linearizability(&config, &users, &ctx.ops.lock().unwrap_or_else(|p| p.into_inner()), |n| {
                        args.linear_budget(n)
                    });
                violations.extend(judged);
                ctx.mark(mark);
            }
        }
        // Every caller task has ended, so this is the last handle on the context.
        let ctx = Arc::try_unwrap(ctx).map_err(|_| anyhow::anyhow!("a caller task outlived the run"))?;
        let Ctx { client, admin, n_calls, ops, marks, engine_errors, .. } = ctx;
        let (n_engine_errors, engine_errors) = engine_errors.into_inner().unwrap_or_else(|p| p.into_inner());
        // The batcher's lanes hold a connection each until their queues close: end them first,
        // or closing the pool waits for those connections forever.
        drop(client);
        close_pool(&pool, "the run's connection pool").await?;
        // A crash of the server resets its statistics: then nothing is counted.
        let deadlocks = bounded("a read of the server's deadlock count", STEP_TIMEOUT, async {
            Ok(deadlocks_since(&admin, deadlocks_before).await)
        })
        .await?;
        close_pool(&admin, "the admin connection pool").await?;
        Ok::<_, anyhow::Error>(ConcSeed {
            violations,
            n_calls: n_calls.into_inner(),
            n_requests: flows.len() as u64,
            marks: marks.into_inner().unwrap_or_else(|p| p.into_inner()),
            ops: ops.into_inner().unwrap_or_else(|p| p.into_inner()),
            deadlocks,
            n_engine_errors,
            engine_errors,
        })
    });
    drop(rt);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_calls_are_cancelled_by_the_server_after_the_call_timeout() {
        let opts: PgConnectOptions = "postgres://someone@127.0.0.1:5432/db".parse().unwrap();
        let options = calls_options(&opts).get_options().map(str::to_owned).unwrap_or_default();
        assert!(options.contains(&format!("statement_timeout={}", CALL_TIMEOUT.as_millis())), "{options}");
    }
}
