//! Where each seed's database comes from: a URL the user gave, fresh databases on a shared
//! throwaway cluster, or a private cluster per seed; and a side runtime to block on.

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
/// kept, with its owner and privileges.
async fn reset(opts: PgConnectOptions, everything: bool) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&opts).await?;
    let has_public: bool =
        sqlx::query_scalar("SELECT to_regnamespace('public') IS NOT NULL").fetch_one(&mut conn).await?;
    if !has_public {
        anyhow::bail!("it has no schema named public, where ledger-pg's tables go: create it (CREATE SCHEMA public)");
    }
    // One transaction: the check and the drop see the same objects (a refusal drops nothing).
    sqlx::query("BEGIN").execute(&mut conn).await?;
    if !everything {
        let foreign = ledger_pg::schema::foreign_objects(&mut conn).await?;
        if !foreign.objects.is_empty() {
            anyhow::bail!("{}", refusal(&foreign));
        }
    }
    ledger_pg::schema::drop_public_objects(&mut conn).await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
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

/// Where each seed's fresh database comes from.
pub(crate) enum Server {
    /// A database the user gave: reset before each seed (everything in it, if the user said so).
    Url { url: String, reset_everything: bool },
    /// Fresh databases on `DATABASE_URL`'s server or the shared throwaway cluster, kept alive
    /// by `_keep` for the whole run.
    Test { _keep: Box<TestPg> },
    /// A private cluster per seed (for server restarts and crashes).
    Private(Durability),
}

/// One seed's database.
pub(crate) struct Db {
    pub(crate) url: String,
    pub(crate) test: Option<Arc<TestPg>>,
}

impl Server {
    pub(crate) fn new(args: &PgArgs) -> anyhow::Result<Server> {
        if let Some(url) = &args.database_url {
            // A garbled URL is refused before any connection (sqlx would try localhost).
            ledger_pg::database_url_options("--database-url", url).map_err(anyhow::Error::msg)?;
            return Ok(Server::Url { url: url.clone(), reset_everything: args.reset_database });
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
        let keep = TestPg::new().map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
        Ok(Server::Test { _keep: Box::new(keep) })
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
        match self {
            Server::Url { url, reset_everything } => {
                let everything = *reset_everything;
                let shown = redacted(url);
                let opts = ledger_pg::database_url_options("--database-url", url).map_err(anyhow::Error::msg)?;
                // Said once, in words that fit a whole run (a reset before every seed and every
                // replay) and a single `replay` or `exec` (one reset): each reset is bounded the
                // same way, and one that runs out of time says so itself.
                if !RESET_ANNOUNCED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    ledger_exec::say!(
                        "ledger-sim: resetting the database at {shown} before each run on it, a seed's or a replay's \
                         (waiting at most {} s each time)",
                        CONNECT_TIMEOUT.as_secs()
                    );
                }
                block_on(async move {
                    // One connection, not a pool: a refused connection is reported as such at
                    // once, rather than as a pool that timed out.
                    match tokio::time::timeout(CONNECT_TIMEOUT, reset(opts, everything)).await {
                        // A context, not `{e:#}`: the error's own message already holds its source, and the
                        // binary prints the chain leaving out a cause its message repeats.
                        Ok(done) => done.map_err(|e| e.context(format!("resetting the database at {shown}"))),
                        Err(_) => Err(anyhow::anyhow!(
                            "resetting the database at {shown}: no answer within {} s",
                            CONNECT_TIMEOUT.as_secs()
                        )),
                    }
                })??;
                Ok(Db { url: url.clone(), test: None })
            }
            Server::Test { .. } => {
                let t = TestPg::new().map_err(|e| anyhow::anyhow!("cannot create a database: {e}"))?;
                Ok(Db { url: t.url().to_owned(), test: Some(Arc::new(t)) })
            }
            Server::Private(durability) => {
                let t = TestPg::new_private_cluster_with(*durability)
                    .map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
                Ok(Db { url: t.url().to_owned(), test: Some(Arc::new(t)) })
            }
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
            Server::new(&args)?;
        }
        Ok(())
    }
}
