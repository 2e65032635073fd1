//! `ledger-pg-runs`: `ledger-sim` on a real PostgreSQL: the `pg-reference` and `pg-seed` engines of `ledger-pg`.
//!
//! - **Lockstep** (`run --engine pg-reference|pg-seed`): the seeded scheduler of [`ledger_simulator::gen`]
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

//!
//! ```no_run
//! use std::path::Path;
//!
//! use ledger_pg_runs::{PgArgs, PgRun};
//! use ledger_simulator::gen::SchedulerKind;
//! use ledger_simulator::report::EngineKind;
//! use ledger_simulator::scenario::Scenario;
//!
//! // 32 concurrent clients on pg-reference with killed connections and lost acknowledgements,
//! // on a private throwaway cluster (or `DATABASE_URL`'s server).
//! let scenario = Scenario::small();
//! let run = PgRun {
//!     kind: EngineKind::PgReference,
//!     scenario: &scenario,
//!     scenario_file: None,
//!     seeds: (0, 1),
//!     scheduler: SchedulerKind::Random,
//!     fail_fast: false,
//!     trace_dir: Path::new("target/ledger-sim/counterexamples"),
//!     max_replays: 300,
//!     shrink_for: Some(ledger_pg_runs::SHRINK_ON_ENGINE),
//!     exec: None,
//!     stop: None,
//! };
//! let args = PgArgs { concurrency: Some(32), kill_connections: 0.02, lost_ack: 0.02, ..PgArgs::default() };
//! let report = ledger_pg_runs::run(&run, &args)?;
//! assert!(report.violations.is_empty());
//! # Ok::<(), anyhow::Error>(())
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod args;
mod audit;
mod checks;
mod client;
mod concurrent;
mod differential;
mod exec;
mod exec_concurrent;
mod lockstep;
mod outage;
mod pg_mutant;
mod progress;
mod record;
mod server;

pub use args::{
    duration, parse_exec_timeout, ExecArgs, PgArgs, PgRun, ReplayDbArgs, DEFAULT_GIVE_UP_AFTER_S, MAX_CONCURRENCY,
};
pub use audit::{audit_cmd, AuditArgs};
pub use differential::{DiffOp, Differential, Divergence};
pub use exec::{replay_on_exec, start_exec, ChildDb};
/// Every URL password in a message replaced by `***` (for the command line's error output).
pub use ledger_pg::{has_password, redacted_text};
pub use lockstep::{replay_on_pg, SHRINK_ON_ENGINE};
pub use pg_mutant::load_pg_mutant;

use ledger_simulator::exec::RunResult;
use ledger_simulator::history::History;
use ledger_simulator::report::{EngineKind, RunReport};

use crate::concurrent::concurrent_run;
use crate::lockstep::lockstep_run;
use crate::server::Server;

/// Runs the seeds of `run` on PostgreSQL, sequentially, each on a fresh database.
pub fn run(run: &PgRun<'_>, args: &PgArgs) -> anyhow::Result<RunReport> {
    args.validate()?;
    let mutant = args.pg_mutant.as_deref().map(|path| load_pg_mutant(path, run.kind)).transpose()?;
    if run.kind == EngineKind::Exec {
        let exec = run.exec.ok_or_else(|| anyhow::anyhow!("--engine exec needs --exec COMMAND"))?;
        if exec.kill_child_at.is_some() && args.concurrency.is_none() {
            anyhow::bail!("--kill-child-at needs --concurrency N");
        }
        if exec.kill_child_at == Some(0) {
            anyhow::bail!("--kill-child-at 0: calls are counted from 1, so it must be at least 1");
        }
        if args.crash_server_at.is_some() && args.concurrency.is_none() {
            // Nothing in an exec lockstep run would crash: refused, not ignored.
            anyhow::bail!(
                "--crash-server-at crashes the PostgreSQL server of pg-reference and pg-seed; an exec run has \
                 --kill-child-at (with --concurrency N)"
            );
        }
        return match args.concurrency {
            Some(n) => exec_concurrent::exec_concurrent(run, args, exec, n),
            None => exec::exec_lockstep(run, args, exec),
        };
    }
    if args.batch_lanes.is_some() && run.kind != EngineKind::PgReference {
        anyhow::bail!("--batch-lanes: only pg-reference runs in batches");
    }
    if args.crash_server_at.is_some() && args.concurrency.is_none() && run.kind != EngineKind::PgReference {
        anyhow::bail!(
            "--crash-server-at without --concurrency: only pg-reference (one statement a command) is crashed \
             between steps in lockstep; pg-seed's commands take several round trips, use --concurrency N"
        );
    }
    let server = Server::new(args, run.stop)?;
    let mut report = match args.concurrency {
        Some(n) => concurrent_run(run, args, &server, n, mutant.as_deref()),
        None => lockstep_run(run, &server, args.crash_server_at, mutant.as_deref().zip(args.pg_mutant.as_deref())),
    }
    .map_err(|e| server.named_in(e))?;
    if let Some(url) = &args.database_url {
        // The command that replays a counterexample (or runs a concurrent seed again) does it
        // on the same database, as this run did.
        let (flags, hidden) = database_flags(url, args.reset_database);
        for v in &mut report.violations {
            v.replay.push_str(&flags);
        }
        if hidden && !report.violations.is_empty() {
            ledger_exec::say!(
                "ledger-sim: the commands printed to replay or run again give --database-url without its password: \
                 give it in PGPASSWORD (or ~/.pgpass)"
            );
        }
    }
    Ok(report)
}

/// ` --database-url URL` (and ` --reset-database`), quoted for a POSIX shell, for a command that
/// runs on the database a run used; the URL without its password (which is never printed: it
/// is given again in `PGPASSWORD` or `~/.pgpass`), and whether it had one.
fn database_flags(url: &str, reset_database: bool) -> (String, bool) {
    // `redacted` writes a password as `user:***@` or `KEY=***` (`password`, `sslpassword`,
    // `pass%77ord`, of any case): all are left out.
    let shown = ledger_pg::redacted(url);
    let (head, query) = match shown.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (shown.as_str(), None),
    };
    let mut bare = head.replacen(":***@", "@", 1);
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.split_once('=').is_some_and(|(k, v)| v == "***" && ledger_harness::text::is_password_key(k)))
            .collect();
        if !kept.is_empty() {
            bare = format!("{bare}?{}", kept.join("&"));
        }
    }
    let hidden = bare != url;
    let mut flags = format!(" --database-url {}", args::shell_quote(&bare));
    if reset_database {
        flags.push_str(" --reset-database");
    }
    (flags, hidden)
}

/// Replays a lockstep trace of a Postgres engine (`replay` of a pg-reference or pg-seed trace)
/// where `db` says: on the database of `--database-url`, reset first as before each seed of a
/// run on it, by the same rules (a database holding objects ledger-pg did not create is refused
/// unless `--reset-database`); without it, as [`replay_on_pg`] does. The result, and the first
/// divergence from the reference engine, as [`replay_on_pg`] gives them.
pub fn replay_on_pg_at(
    kind: EngineKind,
    h: &History,
    log: bool,
    mutant: Option<&str>,
    db: &ReplayDbArgs,
) -> anyhow::Result<(RunResult, Option<String>)> {
    db.check()?;
    if db.database_url.is_none() {
        return replay_on_pg(kind, h, log, mutant);
    }
    let server = Server::new(&db.as_run(), None)?;
    let (r, d) = server
        .fresh()
        .and_then(|fresh| lockstep::lockstep_replay(kind, &fresh.url, h, log, mutant))
        .map_err(|e| server.named_in(e))?;
    Ok((r, d.map(|d| format!("at engine step {}: {}", d.step, d.detail))))
}

#[cfg(test)]
mod tests {
    use super::database_flags;

    /// The command that runs again on a `--database-url` names the same database, never its
    /// password (in the authority or a parameter), and quotes what a shell would split.
    #[test]
    fn database_flags_name_the_database_without_its_password() {
        for (url, reset, flags, hidden) in [
            ("postgres://u@h:5/db", false, " --database-url postgres://u@h:5/db", false),
            ("postgres://u:hunter2@h:5/db", false, " --database-url postgres://u@h:5/db", true),
            ("postgresql://u:***@h/db", true, " --database-url postgresql://u@h/db --reset-database", true),
            (
                "postgres://u@h/db?sslmode=require&password=hunter2",
                false,
                " --database-url 'postgres://u@h/db?sslmode=require'",
                true,
            ),
            ("postgres://u@h/db?password=hunter2", false, " --database-url postgres://u@h/db", true),
            (
                "postgres://u@h/db?sslpassword=k3y&sslmode=require",
                false,
                " --database-url 'postgres://u@h/db?sslmode=require'",
                true,
            ),
            ("postgres://u@h/db?sslmode=require", false, " --database-url 'postgres://u@h/db?sslmode=require'", false),
            (
                "postgres://u@h/db?PASS%77ORD=hunter2&sslmode=require",
                false,
                " --database-url 'postgres://u@h/db?sslmode=require'",
                true,
            ),
            ("postgres://u:hun@ter#2@h/db", false, " --database-url postgres://u@h/db", true),
        ] {
            assert_eq!(database_flags(url, reset), (flags.to_owned(), hidden), "{url}");
        }
    }
}
