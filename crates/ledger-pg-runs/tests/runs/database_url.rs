//! A database the user names, by `--database-url` or `DATABASE_URL`: what a run may drop from
//! it, what it keeps, and who else may use it meanwhile.

use std::process::Command;

use clap::{Args as _, FromArgMatches as _};
use ledger_pg_runs::{AuditArgs, PgArgs, PgRun};
use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::EngineKind;
use ledger_simulator::scenario::Scenario;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

/// Set in the environment of a copy of this test binary that runs one test's child part.
const CHILD: &str = "LEDGER_PG_RUNS_TEST_CHILD";

/// A small lockstep run of pg-reference on `args`.
fn try_run(args: &PgArgs, name: &str) -> anyhow::Result<ledger_simulator::report::RunReport> {
    let scenario = Scenario { n_users: 10, n_steps: 60, max_in_flight: 16, ..Scenario::default() };
    let dir = std::env::temp_dir().join(format!("ledger-sim-pg-test-{}-{name}", std::process::id()));
    let run = PgRun {
        kind: EngineKind::PgReference,
        scenario: &scenario,
        scenario_file: None,
        seeds: (0, 1),
        scheduler: SchedulerKind::Random,
        fail_fast: false,
        trace_dir: &dir,
        max_replays: 10,
        exec: None,
        stop: None,
    };
    ledger_pg_runs::run(&run, args)
}

/// `ledger-sim audit` with `flags`.
fn audit(flags: &[&str]) -> anyhow::Result<bool> {
    let cmd = AuditArgs::augment_args(clap::Command::new("audit"));
    let matches = cmd.try_get_matches_from(std::iter::once("audit").chain(flags.iter().copied()))?;
    ledger_pg_runs::audit_cmd(&AuditArgs::from_arg_matches(&matches)?)
}

/// Runs the test `name` of this binary again in a process of its own, with `env` set (and
/// [`CHILD`]), and asserts that it passed there: for what a test cannot set in its own
/// process, where the other tests run in parallel. Its output.
fn in_child(name: &str, env: &[(&str, std::ffi::OsString)]) -> String {
    let exe = std::env::current_exe().expect("this test binary");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"]).env(CHILD, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the test binary runs again");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the child part of {name} failed:\n{text}");
    text
}

/// A `DATABASE_URL` that is not UTF-8 is refused, naming the variable, by a run and by
/// `audit`. Before, both read it as unset: the run went to a throwaway cluster of its own and
/// the audit said DATABASE_URL was not set.
#[test]
fn a_database_url_that_is_not_utf8_is_refused() {
    let name = "database_url::a_database_url_that_is_not_utf8_is_refused";
    if std::env::var_os(CHILD).is_none() {
        let _limit = ledger_pg::testpg::TimeLimit::new(name, TIME_LIMIT);
        use std::os::unix::ffi::OsStringExt;
        let bad = std::ffi::OsString::from_vec(b"postgres://u@127.0.0.1:1/caf\xe9".to_vec());
        in_child(name, &[("DATABASE_URL", bad)]);
        return;
    }
    let err = try_run(&PgArgs::default(), "not-utf8").expect_err("a run must refuse it");
    assert!(format!("{err:#}").contains("DATABASE_URL is not valid UTF-8"), "{err:#}");
    let err = audit(&[]).expect_err("the audit must refuse it");
    assert!(format!("{err:#}").contains("DATABASE_URL is not valid UTF-8"), "{err:#}");
}

/// An empty `DATABASE_URL` names no server: it is taken as unset, and said so.
#[test]
fn an_empty_database_url_is_taken_as_unset() {
    let name = "database_url::an_empty_database_url_is_taken_as_unset";
    if std::env::var_os(CHILD).is_none() {
        let _limit = ledger_pg::testpg::TimeLimit::new(name, TIME_LIMIT);
        let text = in_child(name, &[("DATABASE_URL", "".into())]);
        assert!(text.contains("DATABASE_URL is set but empty: ignored, as if unset"), "{text}");
        return;
    }
    let err = audit(&[]).expect_err("the audit has no database");
    assert_eq!(format!("{err:#}"), "audit needs --database-url URL (or DATABASE_URL)");
}
