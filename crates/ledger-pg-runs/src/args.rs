//! What a Postgres run is asked to do: the command-line options only Postgres engines take,
//! and the run as the command line hands it over.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ledger_pg::batch::BatcherOptions;
use ledger_pg::testpg::Durability;
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::EngineKind;
use ledger_simulator::scenario::Scenario;

/// The options of `run` that only Postgres engines take.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct PgArgs {
    /// The PostgreSQL database to run on. It is reset (ledger-pg's objects are dropped) before
    /// each seed; a database holding other objects in `public`, or whose ledger-pg tables hold
    /// rows when no run reset it before (a service's live ledger), is refused unless
    /// --reset-database is given. Without it, each seed gets a fresh database on `DATABASE_URL`'s server, or on a
    /// private throwaway cluster.
    #[arg(long)]
    pub database_url: Option<String>,
    /// With --database-url: drop everything in the database's `public` schema before each
    /// seed, objects ledger-pg did not create and a ledger's data included (the schema itself is
    /// kept).
    #[arg(long)]
    pub reset_database: bool,
    /// Run N concurrent clients (1 to 256) on a connection pool instead of the lockstep
    /// scheduler (so without --scheduler).
    #[arg(long, allow_hyphen_values = true)]
    pub concurrency: Option<u32>,
    /// Concurrent mode: probability per call that a connection is killed
    /// (`pg_terminate_backend`) in the middle of a transaction.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub kill_connections: f64,
    /// Concurrent mode: probability per call that it commits but the caller is told it failed,
    /// and retries.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub lost_ack: f64,
    /// Concurrent mode, the reference API: the attempts the linearizability search (I8) may
    /// make on a seed's history, 1000 to 10^10 (default 400,000, about 3 s, or 4 a call of a
    /// longer history). A seed whose search runs out is not judged, and the verdict says so.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub linearizability_budget: Option<u64>,
    /// Concurrent mode: restart the server after this many calls (a private cluster only).
    #[arg(long, allow_hyphen_values = true)]
    pub restart_server_at: Option<u64>,
    /// Concurrent mode: crash the server after this many calls (SIGKILL to the postmaster,
    /// then crash recovery), on a private cluster that keeps what it acknowledges (`fsync`,
    /// `synchronous_commit` and `full_page_writes` on). Every acknowledged command's effect
    /// must survive (I7).
    #[arg(long, allow_hyphen_values = true)]
    pub crash_server_at: Option<u64>,
    /// The durability of the private cluster of a restart or crash run: by default durable
    /// with a crash, fast otherwise. Not a command-line option: tests use it to show that
    /// I7 catches a server that loses acknowledged commits.
    #[arg(skip)]
    pub server_durability: Option<Durability>,
    /// Concurrent mode, pg-reference: send the clients' commands in batches
    /// (`ledger_pg::batch`) on N lanes (1, 2, 4, 8 or 16), each a connection of its own,
    /// instead of one call per command.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub batch_lanes: Option<usize>,
    /// Concurrent mode: give up (exit 2, naming the last error) once every call has failed
    /// for this many seconds: the database is unreachable. An outage is reported on stderr
    /// after 2 s, and every 5 s while it lasts. Default 60; 1 to 86400.
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub give_up_after: Option<u64>,
    /// pg-reference: after each seed's migration, run this SQL file (a `CREATE OR REPLACE
    /// FUNCTION` of one of the schema's functions: a named mutant of `fixtures/pg-mutants/`),
    /// to measure what the run catches. Builds with `--features mutants` only.
    #[arg(long, value_name = "FILE")]
    pub pg_mutant: Option<PathBuf>,
}

/// The bounds of `--linearizability-budget`.
const LINEARIZABILITY_BUDGET_MIN: u64 = 1_000;
const LINEARIZABILITY_BUDGET_MAX: u64 = 10_000_000_000;

impl PgArgs {
    /// The attempts the linearizability search may make on a history of `n_calls` calls.
    pub(crate) fn linear_budget(&self, n_calls: usize) -> u64 {
        self.linearizability_budget.unwrap_or_else(|| ledger_harness::linear::run_budget(n_calls))
    }

    /// True when any Postgres option was given.
    pub fn is_set(&self) -> bool {
        self.database_url.is_some()
            || self.concurrency.is_some()
            // Any value but 0 was given (a negative one or NaN too, to be refused).
            || self.kill_connections != 0.0
            || self.lost_ack != 0.0
            || self.linearizability_budget.is_some()
            || self.restart_server_at.is_some()
            || self.crash_server_at.is_some()
            || self.batch_lanes.is_some()
            || self.give_up_after.is_some()
            || self.reset_database
            || self.pg_mutant.is_some()
    }

    /// The durability of the private cluster a restart or crash run starts.
    pub(crate) fn durability(&self) -> Durability {
        self.server_durability.unwrap_or(if self.crash_server_at.is_some() {
            Durability::Durable
        } else {
            Durability::Fast
        })
    }

    /// How long every call may fail before a concurrent run gives up.
    pub(crate) fn give_up_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.give_up_after.unwrap_or(DEFAULT_GIVE_UP_AFTER_S))
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, rate) in [("--kill-connections", self.kill_connections), ("--lost-ack", self.lost_ack)] {
            if !(0.0..=1.0).contains(&rate) {
                anyhow::bail!("{name} {rate}: must be a probability in 0..=1");
            }
        }
        let server_fault = self.restart_server_at.is_some() || self.crash_server_at.is_some();
        let faults = self.kill_connections > 0.0 || self.lost_ack > 0.0 || self.restart_server_at.is_some();
        if faults && self.concurrency.is_none() {
            anyhow::bail!("--kill-connections, --lost-ack and --restart-server-at need --concurrency N");
        }
        if server_fault && self.database_url.is_some() {
            anyhow::bail!("--restart-server-at and --crash-server-at need a private cluster: leave out --database-url");
        }
        for (name, at) in [("--restart-server-at", self.restart_server_at), ("--crash-server-at", self.crash_server_at)]
        {
            if at == Some(0) {
                anyhow::bail!("{name} 0: calls are counted from 1, so it must be at least 1");
            }
        }
        if self.restart_server_at.is_some() && self.crash_server_at.is_some() {
            anyhow::bail!("give one of --restart-server-at and --crash-server-at");
        }
        if let Some(secs) = self.give_up_after {
            if self.concurrency.is_none() {
                anyhow::bail!("--give-up-after needs --concurrency N");
            }
            if !(1..=86_400).contains(&secs) {
                anyhow::bail!("--give-up-after {secs}: must be 1 to 86400 seconds");
            }
        }
        if let Some(n) = self.linearizability_budget {
            if self.concurrency.is_none() {
                anyhow::bail!(
                    "--linearizability-budget needs --concurrency N (a lockstep run judges I8 at every step)"
                );
            }
            if !(LINEARIZABILITY_BUDGET_MIN..=LINEARIZABILITY_BUDGET_MAX).contains(&n) {
                anyhow::bail!(
                    "--linearizability-budget {n}: must be {LINEARIZABILITY_BUDGET_MIN} to {LINEARIZABILITY_BUDGET_MAX} \
                     attempts"
                );
            }
        }
        if self.reset_database && self.database_url.is_none() {
            anyhow::bail!("--reset-database needs --database-url");
        }
        if let Some(n) = self.concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                anyhow::bail!(
                    "--concurrency {n}: must be 1 to {MAX_CONCURRENCY} (each client holds a connection of the server)"
                );
            }
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

/// The options of `replay` of a pg-reference or pg-seed trace: the database to replay on, as
/// `run` takes it.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ReplayDbArgs {
    /// The PostgreSQL database to replay on (a pg-reference or pg-seed trace), as `run
    /// --database-url` runs on it: it is reset (ledger-pg's objects are dropped) before the
    /// replay; a database holding other objects in `public`, or whose ledger-pg tables hold rows
    /// when no run reset it before, is refused unless --reset-database is given.
    /// Without it, the replay gets a fresh database on `DATABASE_URL`'s server, or on a private
    /// throwaway cluster.
    #[arg(long)]
    pub database_url: Option<String>,
    /// With --database-url: drop everything in the database's `public` schema before the
    /// replay, objects ledger-pg did not create and a ledger's data included (the schema itself
    /// is kept).
    #[arg(long)]
    pub reset_database: bool,
}

impl ReplayDbArgs {
    /// True when either option was given.
    pub fn is_set(&self) -> bool {
        self.database_url.is_some() || self.reset_database
    }

    /// The same options as `run` takes them.
    pub(crate) fn as_run(&self) -> PgArgs {
        PgArgs { database_url: self.database_url.clone(), reset_database: self.reset_database, ..PgArgs::default() }
    }
}

/// The options of `run --engine exec` and of `replay` of an exec trace: the implementation's
/// command and what it needs (SPEC.md §9).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ExecArgs {
    /// The command that starts the implementation (run with `sh -c`, from the current
    /// directory): it must speak the engine protocol of SPEC.md §9 on its stdin and stdout.
    #[arg(long = "exec", value_name = "COMMAND")]
    pub command: Option<String>,
    /// Give the implementation a fresh PostgreSQL database in `DATABASE_URL` (on a throwaway
    /// server, or on the server of --database-url's database).
    #[arg(long)]
    pub exec_db: bool,
    /// Pass the variable NAME of this environment on to the implementation (repeatable).
    /// `DATABASE_URL` and libpq's `PG*` variables reach it only this way (or `DATABASE_URL`
    /// by --exec-db): every seed starts with a reset, which it carries out on the database
    /// they name.
    #[arg(long = "exec-env", value_name = "NAME")]
    pub exec_env: Vec<String>,
    /// How long each answer of the implementation may take: 1 s to 1 h, default 10 s; seconds
    /// (`3`) or a duration (`3s`, `1500ms`, `2m`, `1h`). The answer to `hello` may take at
    /// least 60 s (a child may install its tables first).
    #[arg(long, value_name = "DURATION", value_parser = parse_exec_timeout, allow_hyphen_values = true)]
    pub exec_timeout: Option<std::time::Duration>,
    /// Concurrent mode, an implementation with durable state: after N calls, let the calls in
    /// flight finish, kill it (SIGKILL) and start it again; what it showed before the kill it
    /// must show after (I7).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub kill_child_at: Option<u64>,
}

impl ExecArgs {
    /// True when any exec option was given.
    pub fn is_set(&self) -> bool {
        self.command.is_some()
            || self.exec_db
            || !self.exec_env.is_empty()
            || self.exec_timeout.is_some()
            || self.kill_child_at.is_some()
    }

    /// What `--exec-env` passes on, `(NAME, value)`, in the order given, once each; an error
    /// names a variable that is not set, not UTF-8 or not a name, or `DATABASE_URL` with
    /// `--exec-db` (which gives its own).
    pub fn passed_env(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        for name in &self.exec_env {
            if name.is_empty() || name.contains(['=', '\0']) || name.starts_with(|c: char| c.is_ascii_digit()) {
                anyhow::bail!(
                    "--exec-env {}: not a variable's name (give the name alone, such as --exec-env DATABASE_URL; \
                     its value is taken from this environment)",
                    shell_quote(&ledger_harness::text::redacted_text(name))
                );
            }
            if self.exec_db && name == "DATABASE_URL" {
                anyhow::bail!(
                    "--exec-env DATABASE_URL with --exec-db: --exec-db gives the implementation a fresh database in \
                     DATABASE_URL; give one or the other"
                );
            }
            let value = match std::env::var(name) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => {
                    anyhow::bail!("--exec-env {name}: {name} is not set in this environment")
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    anyhow::bail!("--exec-env {name}: {name} is not UTF-8 in this environment")
                }
            };
            if !out.iter().any(|(k, _)| k == name) {
                out.push((name.clone(), value));
            }
        }
        Ok(out)
    }

    /// The bound on each answer.
    pub fn timeout(&self) -> anyhow::Result<std::time::Duration> {
        match self.exec_timeout {
            None => Ok(ledger_exec::child::DEFAULT_TIMEOUT),
            Some(d) => {
                exec_timeout_in_bounds(d).map_err(|e| anyhow::anyhow!("--exec-timeout {}: {e}", duration_flag(d)))
            }
        }
    }

    /// The command, or the error of a run that has none.
    pub fn command(&self) -> anyhow::Result<&str> {
        match self.command.as_deref() {
            Some(c) if !c.trim().is_empty() => Ok(c),
            Some(_) => anyhow::bail!("--exec: the command is empty"),
            None => anyhow::bail!("--engine exec needs --exec COMMAND: the implementation to drive (SPEC.md §9)"),
        }
    }

    /// The flags that give a replay the same implementation, quoted for a POSIX shell.
    pub fn replay_flags(&self) -> String {
        // Hidden before it is quoted: quoting turns a `'` into `'\''`, which ends a quoted
        // password early, and the rest of it would be shown.
        let command = ledger_harness::text::redacted_text(self.command.as_deref().unwrap_or(""));
        let mut out = format!("--exec {}", shell_quote(&command));
        if self.exec_db {
            out.push_str(" --exec-db");
        }
        for name in &self.exec_env {
            out.push_str(&format!(" --exec-env {}", shell_quote(name)));
        }
        if let Some(d) = self.exec_timeout {
            out.push_str(&format!(" --exec-timeout {}", duration_flag(d)));
        }
        out
    }
}

pub(crate) use ledger_simulator::report::shell_quote;

/// The bounds of `--exec-timeout`.
const EXEC_TIMEOUT_BOUNDS: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3_600);

/// What [`duration`] takes, for its errors.
const DURATION_SPELLINGS: &str = "expected a duration such as 3 (seconds), 3s, 1500ms, 2m or 1h";

/// A duration as the command line spells it (`--exec-timeout`, and `run --for`, which refuses
/// milliseconds): a number of seconds (`90`), or a number with a unit: `1500ms`, `90s`, `10m`,
/// `2h`. `None` for anything else, or a value that overflows.
pub fn duration(s: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3_600).map(Duration::from_secs),
        _ => None,
    }
}

/// The value parser of `--exec-timeout`: seconds (`3`) or a duration (`3s`, `1500ms`, `2m`,
/// `1h`), from 1 s to 1 h.
pub fn parse_exec_timeout(s: &str) -> Result<std::time::Duration, String> {
    duration(s)
        .ok_or_else(|| DURATION_SPELLINGS.to_owned())
        .and_then(exec_timeout_in_bounds)
        .map_err(|e| format!("--exec-timeout {s}: {e}"))
}

fn exec_timeout_in_bounds(d: std::time::Duration) -> Result<std::time::Duration, String> {
    if EXEC_TIMEOUT_BOUNDS.contains(&d) {
        Ok(d)
    } else {
        Err("must be from 1 s to 1 h (3600 s)".to_owned())
    }
}

/// `d` spelled as [`duration`] reads it back: `3s`, or `1500ms` (a fraction of a
/// millisecond is rounded up).
fn duration_flag(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_nanos().div_ceil(1_000_000))
    }
}

/// The most concurrent clients: each holds a connection, and the throwaway server takes 300.
pub const MAX_CONCURRENCY: u32 = 256;

/// Seconds of failing calls after which a concurrent run gives up, unless told otherwise.
pub const DEFAULT_GIVE_UP_AFTER_S: u64 = 60;

/// What `run` hands to [`run`] for a Postgres engine.
#[derive(Clone, Copy, Debug)]
pub struct PgRun<'a> {
    /// `PgReference` or `PgSeed`.
    pub kind: EngineKind,
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The file the scenario was read from, if any: a concurrent report's command that runs a
    /// seed again names it, since the flags alone would run the default scenario.
    pub scenario_file: Option<&'a Path>,
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
    /// The longest a counterexample is shrunk on the engine itself (an `--exec` implementation,
    /// a `--pg-mutant`), where each replay costs real time: `None` bounds it by `max_replays`
    /// alone, so that the same run reports the same bytes however fast the engine answers
    /// (`run` passes `None` when `--max-replays` is given, [`SHRINK_ON_ENGINE`] otherwise).
    pub shrink_for: Option<std::time::Duration>,
    /// The implementation of `--engine exec`.
    pub exec: Option<&'a ExecArgs>,
    /// Set by a signal (a CI job's timeout, a Ctrl-C): once it is, no seed starts, the seed in
    /// flight finishes, and the report covers the seeds run, from the first. `None`: every
    /// seed asked for runs.
    pub stop: Option<&'a AtomicBool>,
}

impl PgRun<'_> {
    /// Whether the run was asked to stop: checked before each seed.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    /// The end of the seed range a report covers when `last` was the last seed run: the
    /// whole range unless the run stopped early (`--fail-fast`, or a signal before any seed).
    pub(crate) fn ran_to(&self, last: Option<u64>) -> u64 {
        match last {
            Some(last) => last + 1,
            None if self.stopping() => self.seeds.0,
            None => self.seeds.1,
        }
    }
}

/// ` --scenario FILE` when the scenario came from a file, for a command that runs it again.
pub(crate) fn scenario_flag(run: &PgRun<'_>) -> String {
    run.scenario_file
        .map(|path| format!(" --scenario {}", shell_quote(&path.display().to_string())))
        .unwrap_or_default()
}

pub(crate) fn engine_name(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::PgReference => "pg-reference",
        EngineKind::PgSeed => "pg-seed",
        EngineKind::Exec => "exec",
        _ => unreachable!("only Postgres and exec engines run here"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn exec_timeout_takes_seconds_or_a_duration_within_one_second_to_an_hour() {
        for (spelled, d) in [
            ("3", Duration::from_secs(3)),
            ("3s", Duration::from_secs(3)),
            ("1500ms", Duration::from_millis(1_500)),
            ("1000ms", Duration::from_secs(1)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3_600)),
            ("3600", Duration::from_secs(3_600)),
        ] {
            assert_eq!(parse_exec_timeout(spelled), Ok(d), "{spelled}");
        }
        for (spelled, says) in [
            ("500ms", "from 1 s to 1 h"),
            ("0", "from 1 s to 1 h"),
            ("999ms", "from 1 s to 1 h"),
            ("3601", "from 1 s to 1 h"),
            ("61m", "from 1 s to 1 h"),
            ("2h", "from 1 s to 1 h"),
            ("", "expected a duration"),
            ("s", "expected a duration"),
            ("3x", "expected a duration"),
            ("3 s", "expected a duration"),
            ("-3", "expected a duration"),
            ("3S", "expected a duration"),
            ("1.5s", "expected a duration"),
            ("1m30s", "expected a duration"),
            ("99999999999999999999", "expected a duration"),
            ("99999999999999999h", "expected a duration"),
        ] {
            let e = parse_exec_timeout(spelled).unwrap_err();
            assert!(e.starts_with(&format!("--exec-timeout {spelled}: ")) && e.contains(says), "{spelled:?}: {e}");
        }
    }

    /// A password in the command is hidden before the command is quoted: quoting first made
    /// `PGPASSWORD='s3cret'` into `PGPASSWORD='\''s3cret'\''`, whose value the hiding then
    /// read as empty, and `s3cret` was printed in every replay command.
    #[test]
    fn the_replay_flags_never_show_a_password() {
        for command in [
            "PGPASSWORD='s3cret' ./my-ledger",
            "env 'DATABASE_URL=postgres://u:s3cret@h/db' ./my-ledger",
            "./my-ledger --conn \"host=h password='s3cret x'\"",
            "DATABASE_URL=postgres://u:s3cret@h/db ./my-ledger",
        ] {
            let exec = ExecArgs { command: Some(command.into()), ..ExecArgs::default() };
            let flags = exec.replay_flags();
            assert!(!flags.contains("s3cret"), "{command}: {flags}");
            assert!(flags.contains("***") && flags.contains("my-ledger"), "{command}: {flags}");
        }
    }

    #[test]
    fn the_replay_flags_spell_the_timeout_as_it_parses_back() {
        for d in [Duration::from_secs(3), Duration::from_millis(1_500), Duration::from_secs(3_600)] {
            let exec = ExecArgs { command: Some("x".into()), exec_timeout: Some(d), ..ExecArgs::default() };
            let flags = exec.replay_flags();
            let spelled = flags.rsplit(' ').next().unwrap();
            assert!(flags.contains(" --exec-timeout "), "{flags}");
            assert_eq!(parse_exec_timeout(spelled), Ok(d), "{flags}");
            assert_eq!(exec.timeout().unwrap(), d);
        }
        let out_of_bounds = ExecArgs { exec_timeout: Some(Duration::from_millis(500)), ..ExecArgs::default() };
        let e = out_of_bounds.timeout().unwrap_err().to_string();
        assert_eq!(e, "--exec-timeout 500ms: must be from 1 s to 1 h (3600 s)");
    }
}
