//! Where each seed's database comes from: a URL the user gave, fresh databases on a shared
//! throwaway cluster, or a private cluster per seed; and a side runtime to block on.

use std::sync::Arc;

use ledger_pg::testpg::TestPg;
use sqlx::postgres::PgPoolOptions;

use crate::args::PgArgs;

/// Where each seed's fresh database comes from.
pub(crate) enum Server {
    /// A database the user gave: reset before each seed.
    Url(String),
    /// Fresh databases on `DATABASE_URL`'s server or the shared throwaway cluster, kept alive
    /// by `_keep` for the whole run.
    Test { _keep: Box<TestPg> },
    /// A private cluster per seed (for server restarts).
    Private,
}

/// One seed's database.
pub(crate) struct Db {
    pub(crate) url: String,
    pub(crate) test: Option<Arc<TestPg>>,
}

impl Server {
    pub(crate) fn new(args: &PgArgs) -> anyhow::Result<Server> {
        if let Some(url) = &args.database_url {
            return Ok(Server::Url(url.clone()));
        }
        if args.restart_server_at.is_some() {
            return Ok(Server::Private);
        }
        let keep = TestPg::new().map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
        Ok(Server::Test { _keep: Box::new(keep) })
    }

    pub(crate) fn fresh(&self) -> anyhow::Result<Db> {
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
