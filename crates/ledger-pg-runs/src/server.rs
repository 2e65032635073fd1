//! Where each seed's database comes from: a URL the user gave, fresh databases on a shared
//! throwaway cluster, or a private cluster per seed; and a side runtime to block on.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ledger_pg::testpg::{Durability, TestPg};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::args::PgArgs;

/// How long connecting to and resetting a database given by URL may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the reset of a `--database-url` database was announced on stderr.
static RESET_ANNOUNCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) use ledger_pg::redacted;

/// Drops everything in the `public` schema of the database at `opts`, on one connection and
/// in one transaction: only if all of it is ledger-pg's, unless `everything`. The schema is
/// kept, with its owner and privileges. `announce` is called once the database has passed
/// every check, before anything is dropped: a refusal is the first thing said about it, never
/// a reset that then does not happen.
async fn reset(
    opts: PgConnectOptions,
    everything: bool,
    lock: i32,
    announce: impl FnOnce() + Send,
) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&opts).await?;
    if !still_held(&mut conn, lock).await? {
        anyhow::bail!(
            "the run's hold on it is gone (its server process {lock} holds no ledger-sim lock any more: its \
             connection was closed, or the server restarted); another run could be resetting it too"
        );
    }
    let has_public: bool =
        sqlx::query_scalar("SELECT to_regnamespace('public') IS NOT NULL").fetch_one(&mut conn).await?;
    if !has_public {
        anyhow::bail!("it has no schema named public, where ledger-pg's tables go: create it (CREATE SCHEMA public)");
    }
    // One transaction: the check and the drop see the same objects (a refusal drops nothing).
    sqlx::query("BEGIN").execute(&mut conn).await?;
    if !everything {
        let marked = reset_before(&mut conn).await?;
        let mut foreign = ledger_pg::schema::foreign_objects(&mut conn).await?;
        if marked {
            // The sign of an earlier run's reset is no user's object.
            let marks = [format!("table {RESET_MARK_TABLE}"), format!("table public.{RESET_MARK_TABLE}")];
            foreign.objects.retain(|o| !marks.contains(o));
        }
        if !foreign.objects.is_empty() {
            anyhow::bail!("{}", refusal(&foreign));
        }
        if !marked {
            let data = ledger_rows(&mut conn).await?;
            if !data.is_empty() {
                anyhow::bail!("{}", data_refusal(&data));
            }
        }
    }
    announce();
    ledger_pg::schema::drop_public_objects(&mut conn).await?;
    // The sign that ledger-sim reset it, which a later run's reset looks for (and drops with the
    // rest, and leaves again).
    let create = format!("CREATE TABLE public.{RESET_MARK_TABLE} (note text NOT NULL)");
    sqlx::query(&create).execute(&mut conn).await?;
    let insert = format!("INSERT INTO public.{RESET_MARK_TABLE} (note) VALUES ($1)");
    sqlx::query(&insert).bind(RESET_MARK).execute(&mut conn).await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// The table a run's reset of a database it was given leaves in `public`, holding one row,
/// [`RESET_MARK`]: written by ledger-sim's reset alone, never by `ledger_pg::migrate`, it tells a
/// database ledger-sim reset before (whose ledger's rows are a run's) from a live ledger that a
/// service migrated (whose rows are its users'), which a run refuses to reset unless it is told
/// to (`--reset-database`).
pub(crate) const RESET_MARK_TABLE: &str = "ledger_sim_reset";

/// The row of [`RESET_MARK_TABLE`].
pub(crate) const RESET_MARK: &str = "ledger-sim reset this database before a run on it (--database-url): a later run \
                                     resets it again, dropping everything in its public schema, without asking";

/// Whether the database of `conn` carries the sign of an earlier run's reset: the table
/// [`RESET_MARK_TABLE`], an ordinary table of one text column `note`, holding [`RESET_MARK`].
async fn reset_before(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let shaped: bool = sqlx::query_scalar(
        "SELECT coalesce((SELECT c.relkind = 'r' AND ARRAY(SELECT a.attname::text || ' ' || \
                 format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) \
                 = ARRAY['note text'] \
             FROM pg_class c WHERE c.oid = to_regclass($1)), false)",
    )
    .bind(format!("public.{RESET_MARK_TABLE}"))
    .fetch_one(&mut *conn)
    .await?;
    if !shaped {
        return Ok(false);
    }
    let marked = format!("SELECT EXISTS (SELECT 1 FROM public.{RESET_MARK_TABLE} WHERE note = $1)");
    sqlx::query_scalar(&marked).bind(RESET_MARK).fetch_one(&mut *conn).await
}

/// The most rows of a table [`ledger_rows`] counts.
const ROWS_COUNTED: i64 = 1000;

/// ledger-pg's tables (those its record names, but the record itself and sqlx's
/// `_sqlx_migrations`) that hold rows, each with how many (at most [`ROWS_COUNTED`] counted).
async fn ledger_rows(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let recorded: bool =
        sqlx::query_scalar("SELECT to_regclass('public.ledger_pg_objects') IS NOT NULL").fetch_one(&mut *conn).await?;
    if !recorded {
        return Ok(Vec::new());
    }
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, format('%I.%I', n.nspname, c.relname) FROM public.ledger_pg_objects o \
         JOIN pg_class c ON o.classid = 'pg_class'::regclass AND o.objid = c.oid AND o.objsubid = 0 \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND c.relname NOT IN ('ledger_pg_objects', '_sqlx_migrations') \
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut holding = Vec::new();
    for (name, qualified) in tables {
        let count = format!("SELECT count(*) FROM (SELECT 1 FROM {qualified} LIMIT {}) counted", ROWS_COUNTED + 1);
        let n: i64 = sqlx::query_scalar(&count).fetch_one(&mut *conn).await?;
        if n > 0 {
            holding.push((name, n));
        }
    }
    Ok(holding)
}

/// Why a database whose ledger-pg tables hold `data` (table, rows), and that no run reset
/// before, is refused.
fn data_refusal(data: &[(String, i64)]) -> String {
    let tables: Vec<String> = data
        .iter()
        .map(|(name, n)| {
            if *n > ROWS_COUNTED {
                format!("{name}: more than {ROWS_COUNTED} rows")
            } else {
                format!("{name}: {n} row{}", if *n == 1 { "" } else { "s" })
            }
        })
        .collect();
    format!(
        "it holds a ledger's data in ledger-pg's tables ({}) and no sign that a ledger-sim run reset it before \
         (the table {RESET_MARK_TABLE} a run's reset leaves): it may be a live ledger that a service made with \
         ledger_pg::migrate. A run drops everything in the public schema before each seed, so it refuses: give it \
         a throwaway database, or add --reset-database to drop the data (once, for a database that an earlier \
         ledger-sim, which left no sign, reset)",
        tables.join(", ")
    )
}

/// Why a database holding `foreign` objects is refused, naming the first ten.
fn refusal(foreign: &ledger_pg::schema::Foreign) -> String {
    let n = foreign.objects.len();
    let mut names: Vec<String> = foreign.objects.iter().take(10).cloned().collect();
    if n > names.len() {
        names.push(format!("and {} more", n - names.len()));
    }
    let why = if foreign.unrecorded_ledger_pg {
        ": its _sqlx_migrations are ledger-pg's, of a version that kept no record of what it made, so its tables \
         cannot be told from a user's"
    } else {
        ""
    };
    format!(
        "it holds {n} object(s) ledger-pg did not create ({}){why}; a run drops everything in the public schema \
         (and what depends on it) before each seed, so it refuses: give it a throwaway database, or add \
         --reset-database to drop them",
        names.join(", ")
    )
}

/// The session-level advisory lock a run holds on a database it was given (`--database-url`),
/// for the whole run, and that `audit` takes shared while it reads: "ledgrsim" as a big-endian
/// 64-bit key. A second run on the same database is refused once it has tried for
/// [`LOCK_GRACE`], as an audit is at once while a run holds it: two runs would reset each other's tables before each seed and report each
/// other's data as violations.
pub(crate) const RUN_LOCK_KEY: i64 = i64::from_be_bytes(*b"ledgrsim");

/// The `application_name` of the connection that holds a run's lock, which a refused run or
/// audit names: `ledger-sim run (pid N)`, N the process id of the run.
pub(crate) const RUN_LOCK_APP: &str = "ledger-sim run";

/// The holders of [`RUN_LOCK_KEY`] on the database of `conn`, described for a message: the
/// server process, its `application_name` (a ledger-sim run or audit names its process id
/// there), its role and its client's address. Empty when none can be read.
pub(crate) async fn lock_holders(conn: &mut PgConnection) -> String {
    /// A holder: server process, application_name, role, client address, lock mode.
    type Holder = (i32, Option<String>, Option<String>, Option<String>, String);
    let rows: Vec<Holder> = sqlx::query_as(
        "SELECT l.pid, a.application_name, a.usename::text, host(a.client_addr), l.mode \
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid = ($1 >> 32)::oid AND l.objid = ($1 & 4294967295)::oid \
         ORDER BY l.pid",
    )
    .bind(RUN_LOCK_KEY)
    .fetch_all(conn)
    .await
    .unwrap_or_default();
    let described: Vec<String> = rows
        .into_iter()
        .map(|(pid, app, user, addr, mode)| {
            let mut d = format!("server process {pid}");
            match app.filter(|a| !a.is_empty()) {
                Some(app) => d.push_str(&format!(", application_name {app:?}")),
                None => d.push_str(", application_name not readable"),
            }
            if let Some(user) = user {
                d.push_str(&format!(", role {user}"));
            }
            d.push_str(&format!(
                ", {}",
                addr.map_or_else(|| "over a local socket".to_owned(), |a| format!("from {a}"))
            ));
            if mode == "ShareLock" {
                d.push_str(", reading");
            }
            d
        })
        .collect();
    described.join("; ")
}

/// True when the server process `pid` still holds [`RUN_LOCK_KEY`] on the database of `conn`.
async fn still_held(conn: &mut PgConnection, pid: i32) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $2 \
         AND mode = 'ExclusiveLock' AND objsubid = 1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = ($1 >> 32)::oid AND objid = ($1 & 4294967295)::oid)",
    )
    .bind(RUN_LOCK_KEY)
    .bind(pid)
    .fetch_one(conn)
    .await
}

/// A run's hold on a database it was given: [`RUN_LOCK_KEY`], taken on a connection of its
/// own, on a thread of its own, and kept until this is dropped (or the process ends, which
/// closes the connection).
pub(crate) struct RunLock {
    /// The server process of the connection that holds it.
    backend_pid: i32,
    release: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunLock {
    /// Takes the lock on the database at `opts` (`shown` in messages), or says who holds it.
    fn take(opts: PgConnectOptions, shown: String) -> anyhow::Result<RunLock> {
        // A wait on the server, said before it starts (one that never answers is given up).
        ledger_exec::say!(
            "ledger-sim: taking the run's lock on the database at {shown} (waiting at most {} s)",
            CONNECT_TIMEOUT.as_secs()
        );
        let (taken_tx, taken_rx) = std::sync::mpsc::channel::<anyhow::Result<i32>>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("ledger-sim run lock".to_owned()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = taken_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let conn = match tokio::time::timeout(CONNECT_TIMEOUT, lock(opts, &shown)).await {
                    Ok(Ok((conn, pid))) => {
                        let _ = taken_tx.send(Ok(pid));
                        conn
                    }
                    Ok(Err(e)) => {
                        let _ = taken_tx.send(Err(e));
                        return;
                    }
                    Err(_) => {
                        let _ = taken_tx.send(Err(anyhow::anyhow!(
                            "taking the run's lock on the database at {shown}: no answer within {} s",
                            CONNECT_TIMEOUT.as_secs()
                        )));
                        return;
                    }
                };
                // Held until the run lets go (or ends). Let go of explicitly before the
                // connection closes: a closed connection's backend releases its locks only as it
                // exits, after the close has returned, and a run started right after this one
                // (a replay printed by it) would find the lock still held.
                let _ = released.await;
                let mut conn = conn;
                let unlock = sqlx::query("SELECT pg_advisory_unlock($1)").bind(RUN_LOCK_KEY).execute(&mut conn);
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, unlock).await;
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.close()).await;
            });
        })?;
        match taken_rx.recv() {
            Ok(Ok(backend_pid)) => Ok(RunLock { backend_pid, release: Some(release), thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(anyhow::anyhow!("the thread taking the run's lock on the database ended"))
            }
        }
    }
}

/// How long a run tries again for the lock before it calls the database in use.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Connects to the database at `opts` and takes [`RUN_LOCK_KEY`] there, within
/// [`LOCK_GRACE`] or not at all.
async fn lock(opts: PgConnectOptions, shown: &str) -> anyhow::Result<(PgConnection, i32)> {
    let app = format!("{RUN_LOCK_APP} (pid {})", std::process::id());
    let mut conn = PgConnection::connect_with(&opts.application_name(&app)).await?;
    let try_lock = || sqlx::query_as("SELECT pg_try_advisory_lock($1), pg_backend_pid()").bind(RUN_LOCK_KEY);
    let (mut taken, pid): (bool, i32) = try_lock().fetch_one(&mut conn).await?;
    // A run that has just ended (killed, so that its lock went with its backend's exit, which
    // the server finishes after the run's process is gone) may hold it a moment longer: tried
    // again for up to LOCK_GRACE before the database is called in use.
    let grace = std::time::Instant::now();
    while !taken && grace.elapsed() < LOCK_GRACE {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        taken = try_lock().fetch_one(&mut conn).await?.0;
    }
    if !taken {
        let holders = lock_holders(&mut conn).await;
        let _ = conn.close().await;
        let holders = if holders.is_empty() { String::new() } else { format!(" ({holders})") };
        anyhow::bail!(
            "the database at {shown} is in use by another ledger-sim run or audit{holders}: two runs on one database \
             reset each other's tables before each seed and report each other's data as violations, so this run \
             does not start; wait for the other to end, or give each run a database of its own"
        );
    }
    Ok((conn, pid))
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where each seed's fresh database comes from.
pub(crate) enum Server {
    /// A database the user gave: reset before each seed (everything in it, if the user said so),
    /// held by the run's [`RunLock`] from its first reset to the end of the run.
    Url { url: String, reset_everything: bool, lock: std::sync::Mutex<Option<Arc<RunLock>>> },
    /// Fresh databases on `DATABASE_URL`'s server or the shared throwaway cluster, kept alive
    /// by `_keep` for the whole run.
    Test { _keep: Box<TestPg> },
    /// A private cluster per seed (for server restarts and crashes).
    Private(Durability),
    /// None: the run was stopped (a signal) while its throwaway cluster was being made, which
    /// was given up; no seed runs.
    Stopped,
}

/// One seed's database.
pub(crate) struct Db {
    pub(crate) url: String,
    pub(crate) test: Option<Arc<TestPg>>,
    /// A given database's lock, kept as long as the database is used (as long as the server,
    /// for a run; as long as its child, for an `exec` run, which keeps only this).
    _lock: Option<Arc<RunLock>>,
}

impl Server {
    /// Where the seeds of a run on `args` get their databases. A throwaway cluster, if one is
    /// needed, is made here, and given up when `stop` is set meanwhile (a signal to the run):
    /// `initdb` killed, no server left running, its directory removed, said on stderr, and the
    /// run's server [`Server::Stopped`].
    pub(crate) fn new(args: &PgArgs, stop: Option<&AtomicBool>) -> anyhow::Result<Server> {
        if let Some(url) = &args.database_url {
            // A garbled URL is refused before any connection (sqlx would try localhost).
            ledger_pg::database_url_options("--database-url", url).map_err(anyhow::Error::msg)?;
            return Ok(Server::Url {
                url: url.clone(),
                reset_everything: args.reset_database,
                lock: std::sync::Mutex::new(None),
            });
        }
        if args.restart_server_at.is_some() || args.crash_server_at.is_some() {
            return Ok(Server::Private(args.durability()));
        }
        if let Some(url) = ledger_pg::testpg::database_url_env()? {
            ledger_pg::database_url_options("DATABASE_URL", &url).map_err(anyhow::Error::msg)?;
            ledger_exec::say!(
                "ledger-sim: each seed gets a fresh database on DATABASE_URL's server {} (waiting at most {} s to \
                 connect and {} s in all for each)",
                redacted(&url),
                ledger_pg::testpg::ADMIN_CONNECT_TIMEOUT.as_secs(),
                ledger_pg::testpg::ADMIN_TIMEOUT.as_secs()
            );
        }
        match TestPg::new_unless_stopped(stop) {
            Ok(keep) => Ok(Server::Test { _keep: Box::new(keep) }),
            Err(e) if e.is_stopped() => {
                ledger_exec::say!("ledger-sim: {e}");
                Ok(Server::Stopped)
            }
            Err(e) => Err(anyhow::anyhow!("cannot start PostgreSQL: {e}")),
        }
    }

    /// `e`, an error of a run on this server, naming the database unless it already does.
    pub(crate) fn named_in(&self, e: anyhow::Error) -> anyhow::Error {
        let place = match self {
            Server::Url { url, .. } => format!("the database at {}", redacted(url)),
            Server::Test { .. } => match ledger_pg::testpg::database_url_env().ok().flatten() {
                Some(url) => format!("a fresh database on {}", redacted(&url)),
                None => "a fresh database of a throwaway PostgreSQL".to_owned(),
            },
            Server::Private(_) => "a private throwaway PostgreSQL".to_owned(),
            Server::Stopped => "no PostgreSQL (the run was stopped while one was made)".to_owned(),
        };
        let shown = format!("{e:#}");
        match self {
            Server::Url { url, .. } if shown.contains(&redacted(url)) => e,
            _ if shown.contains("the database at ") => e,
            _ => e.context(format!("running on {place}")),
        }
    }

    /// A database for one seed or replay: the given one reset, or a fresh one on the throwaway
    /// server.
    pub(crate) fn fresh(&self) -> anyhow::Result<Db> {
        self.fresh_unless_stopped(None)?
            .ok_or_else(|| anyhow::anyhow!("the run was stopped while its throwaway PostgreSQL was made"))
    }

    /// As [`Server::fresh`], for a seed of a run that `stop` stops: `None` when the run's
    /// cluster was given up ([`Server::Stopped`]), or when `stop` was set while the seed's own
    /// private cluster was made (given up the same way, and said on stderr).
    pub(crate) fn fresh_unless_stopped(&self, stop: Option<&AtomicBool>) -> anyhow::Result<Option<Db>> {
        match self {
            Server::Url { url, reset_everything, lock } => {
                let everything = *reset_everything;
                let shown = redacted(url);
                let opts = ledger_pg::database_url_options("--database-url", url).map_err(anyhow::Error::msg)?;
                // The run's hold on the database, taken before its first reset and kept to its end.
                let lock = {
                    let mut held = lock.lock().unwrap_or_else(|p| p.into_inner());
                    match &*held {
                        Some(l) => Arc::clone(l),
                        None => {
                            let l = Arc::new(RunLock::take(opts.clone(), shown.clone())?);
                            *held = Some(Arc::clone(&l));
                            l
                        }
                    }
                };
                let backend_pid = lock.backend_pid;
                // Said once, in words that fit a whole run (a reset before every seed and every
                // replay) and a single `replay` or `exec` (one reset): each reset is bounded the
                // same way, and one that runs out of time says so itself. Said once the database
                // has passed the checks, so that a database that is refused is never announced
                // as being reset first.
                let announced = shown.clone();
                let announce = move || {
                    if !RESET_ANNOUNCED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        ledger_exec::say!(
                            "ledger-sim: resetting the database at {announced} before each run on it, a seed's or a \
                             replay's (waiting at most {} s each time)",
                            CONNECT_TIMEOUT.as_secs()
                        );
                    }
                };
                block_on(async move {
                    // One connection, not a pool: a refused connection is reported as such at
                    // once, rather than as a pool that timed out.
                    // Said again when it hangs: the line above may be many seeds ago.
                    let what = format!("the reset of the database at {shown}");
                    let resetting = reset(opts, everything, backend_pid, announce);
                    match ledger_pg::wait::announced(&what, CONNECT_TIMEOUT, resetting).await {
                        // A context, not `{e:#}`: the error's own message already holds its source, and the
                        // binary prints the chain leaving out a cause its message repeats.
                        Ok(done) => done.map_err(|e| e.context(format!("resetting the database at {shown}"))),
                        Err(_) => Err(anyhow::anyhow!(
                            "resetting the database at {shown}: no answer within {} s",
                            CONNECT_TIMEOUT.as_secs()
                        )),
                    }
                })??;
                Ok(Some(Db { url: url.clone(), test: None, _lock: Some(lock) }))
            }
            Server::Test { .. } => {
                let t = TestPg::new().map_err(|e| anyhow::anyhow!("cannot create a database: {e}"))?;
                Ok(Some(Db { url: t.url().to_owned(), test: Some(Arc::new(t)), _lock: None }))
            }
            Server::Private(durability) => match TestPg::new_private_cluster_unless_stopped(*durability, stop) {
                Ok(t) => Ok(Some(Db { url: t.url().to_owned(), test: Some(Arc::new(t)), _lock: None })),
                Err(e) if e.is_stopped() => {
                    ledger_exec::say!("ledger-sim: {e}");
                    Ok(None)
                }
                Err(e) => Err(anyhow::anyhow!("cannot start PostgreSQL: {e}")),
            },
            Server::Stopped => Ok(None),
        }
    }
}

/// How long [`probe`] waits for its connection.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why `error` happened, when it is a pool that timed out (which hides why it could not
/// connect): a connection of its own asks the server, for at most [`PROBE_TIMEOUT`].
pub(crate) async fn why(error: &str, opts: &PgConnectOptions) -> String {
    if !error.contains("pool timed out") {
        return error.to_owned();
    }
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(opts)).await {
        Ok(Ok(conn)) => {
            let _ = tokio::time::timeout(PROBE_TIMEOUT, conn.close()).await;
            format!("{error} (a new connection succeeds: the pool is exhausted)")
        }
        Ok(Err(e)) => format!("{error}; connecting: {e}"),
        Err(_) => format!("{error}; connecting: no answer within {} s", PROBE_TIMEOUT.as_secs()),
    }
}

/// Runs `fut` on a runtime of its own, on a side thread, so that it can be called from
/// anywhere (including from inside another runtime).
pub(crate) fn block_on<F>(fut: F) -> anyhow::Result<F::Output>
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

impl crate::args::ReplayDbArgs {
    /// Refuses what `run` refuses of the same options, before any connection: a URL that is
    /// not PostgreSQL's (named `--database-url`, without its password), `--reset-database`
    /// without `--database-url`.
    pub fn check(&self) -> anyhow::Result<()> {
        let args = self.as_run();
        args.validate()?;
        if args.database_url.is_some() {
            Server::new(&args, None)?;
        }
        Ok(())
    }
}
