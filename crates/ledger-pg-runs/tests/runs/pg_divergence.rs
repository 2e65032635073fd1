//! A lockstep divergence of pg-reference from the reference engine is reported as a small
//! counterexample, not the whole seed: cut after the event that diverged (and shrunk on
//! PostgreSQL while it still diverges, within a bound), and its trace, replayed with the same
//! `--pg-mutant`, diverges again. Needs PostgreSQL and fails (never skips) when a throwaway
//! cluster cannot start.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use ledger_pg::engine::PgReferenceEngine;
use ledger_pg::testpg::TestPg;
use ledger_pg_runs::{PgArgs, PgRun};
use ledger_simulator::gen::{run_seed, SchedulerKind};
use ledger_simulator::history::History;
use ledger_simulator::report::{EngineKind, Reduction};
use ledger_simulator::scenario::Scenario;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

const MUTANT: &str = "ledger_decide_locked_offer_one_short.sql";

fn fixture(dir: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(dir).join(file)
}

/// Installs `sql` on the database at `url`, on a connection of its own.
fn install(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("a connection");
            sqlx::raw_sql(&sql).execute(&mut conn).await.expect("the mutant installs");
            conn.close().await.expect("close");
        })
    })
    .join()
    .expect("the install thread");
}

/// The whole history of `seed` on pg-reference with the mutant installed, as the run drew it.
fn whole_seed(s: &Scenario, seed: u64, sql: &str) -> History {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start");
    let made = RefCell::new(false);
    let (_, h) = run_seed(
        |c| {
            assert!(!made.replace(true), "one engine a seed");
            let engine = PgReferenceEngine::connect_url(pg.url(), c).expect("pg-reference connects");
            install(pg.url(), sql);
            engine
        },
        "pg-reference",
        s,
        seed,
        SchedulerKind::Random,
    );
    h
}

#[test]
fn a_divergence_is_cut_after_the_step_that_diverged_and_its_replay_diverges_again() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        format!("{}::a_divergence_is_cut_after_the_step_that_diverged_and_its_replay_diverges_again", module_path!()),
        TIME_LIMIT,
    );
    // One throwaway cluster for the run, the whole seed and the replays.
    let _keep = TestPg::new().expect("a throwaway PostgreSQL must start");
    let path = fixture("scenarios", "ci-small.toml");
    let text = std::fs::read_to_string(&path).expect("the scenario file");
    let s = Scenario::from_toml_str(&text, &path.display().to_string()).expect("a valid scenario");
    let dir = std::env::temp_dir().join(format!("ledger-sim-pg-divergence-{}", std::process::id()));
    let run = PgRun {
        kind: EngineKind::PgReference,
        scenario: &s,
        scenario_file: Some(&path),
        seeds: (0, 6),
        scheduler: SchedulerKind::Random,
        fail_fast: true,
        trace_dir: &dir,
        max_replays: 300,
        exec: None,
    };
    let file = fixture("pg-mutants", MUTANT);
    let args = PgArgs { pg_mutant: Some(file.clone()), ..PgArgs::default() };
    let r = ledger_pg_runs::run(&run, &args).expect("a throwaway PostgreSQL must start, and the run must finish");
    let d = r.violations.iter().find(|v| v.invariant == "divergence").expect("a partial offer 1 sat short diverges");
    assert!(d.detail.starts_with("at engine step "), "{d:?}");
    assert!(matches!(d.reduction, Reduction::Cut | Reduction::Shrunk), "reduced, not the whole seed: {d:?}");

    let sql = ledger_pg_runs::load_pg_mutant(&file, EngineKind::PgReference).expect("the mutant loads");
    let whole = whole_seed(&s, d.seed, &sql);
    let bytes = std::fs::read(&d.trace).expect("the trace is written");
    let h = History::read_jsonl(&bytes[..], &d.trace).expect("a valid trace");
    assert_eq!((h.flows.len(), h.events.len()), (d.shrunk_flows, d.shrunk_events), "{d:?}");
    assert!(
        h.flows.len() < whole.flows.len() && h.events.len() < whole.events.len(),
        "the counterexample has {} flow(s), {} event(s); the whole seed {} flow(s), {} event(s)",
        h.flows.len(),
        h.events.len(),
        whole.flows.len(),
        whole.events.len()
    );
    // Its replay command installs the mutant, and so the trace diverges again (as `ledger-sim
    // replay` reports it: a finding); on today's functions it does not.
    assert!(
        d.replay.ends_with(&format!(" --pg-mutant {}", std::path::absolute(&file).unwrap().display())),
        "{}",
        d.replay
    );
    let (_, again) = ledger_pg_runs::replay_on_pg(EngineKind::PgReference, &h, false, Some(&sql)).unwrap();
    let again = again.expect("the counterexample diverges again on a replay");
    assert!(again.starts_with("at engine step "), "{again}");
    let (_, without) = ledger_pg_runs::replay_on_pg(EngineKind::PgReference, &h, false, None).unwrap();
    assert_eq!(without, None, "today's functions do not diverge on it");
}
