//! The options of the commands that start an implementation of the engine protocol without
//! running the simulator on it (`conform`, `bench-exec`).

use std::io::Write;

/// Which implementation, and what it needs.
#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    /// The command that starts the implementation (`sh -c`, from the current directory); it
    /// must speak the engine protocol (SPEC.md §9). The reference's own: `ledger-sim serve`.
    #[arg(long = "exec", value_name = "COMMAND")]
    pub command: String,
    /// Give the implementation a fresh PostgreSQL database in `DATABASE_URL`.
    #[arg(long)]
    pub exec_db: bool,
    /// Pass the variable NAME of this environment on to the implementation (repeatable).
    /// `DATABASE_URL` and libpq's `PG*` variables reach it only this way (or `DATABASE_URL`
    /// by --exec-db).
    #[arg(long = "exec-env", value_name = "NAME")]
    pub exec_env: Vec<String>,
    /// How long each answer may take: 1 s to 1 h, default 10 s; seconds (`3`) or a duration
    /// (`3s`, `1500ms`, `2m`, `1h`).
    // `-1s` is a value for the parser to refuse, not an unknown option.
    #[arg(long, value_name = "DURATION", value_parser = ledger_pg_runs::parse_exec_timeout, allow_hyphen_values = true)]
    pub exec_timeout: Option<std::time::Duration>,
}

impl ChildArgs {
    /// The same, as the runs take it; an out-of-range timeout is an error.
    pub fn exec(&self) -> anyhow::Result<ledger_pg_runs::ExecArgs> {
        let exec = ledger_pg_runs::ExecArgs {
            command: Some(self.command.clone()),
            exec_db: self.exec_db,
            exec_env: self.exec_env.clone(),
            exec_timeout: self.exec_timeout,
            kill_child_at: None,
        };
        exec.timeout()?;
        exec.command()?;
        exec.passed_env()?;
        Ok(exec)
    }
}

/// Writes `value` as pretty JSON and a newline.
pub fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}
