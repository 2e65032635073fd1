//! What a Postgres run is asked to do: the command-line options only Postgres engines take,
//! and the run as the command line hands it over.

use std::path::Path;

use ledger_pg::batch::BatcherOptions;
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::EngineKind;
use ledger_simulator::scenario::Scenario;

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

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
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

pub(crate) fn engine_name(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::PgReference => "pg-reference",
        EngineKind::PgSeed => "pg-seed",
        _ => unreachable!("only Postgres engines run here"),
    }
}
