//! Bug-finding power on PostgreSQL: named SQL mutants (`fixtures/pg-mutants/`, each a
//! `CREATE OR REPLACE FUNCTION` of one function of the schema with a realistic one-line bug)
//! are each caught by a simulator run alone, lockstep or concurrent, per call or batched, as
//! `ledger-sim run --pg-mutant FILE` installs them: after every seed's migration, no forced
//! races, no hand-written vectors. Each counterexample is reduced on PostgreSQL and its
//! replay with the mutant breaks again. That the real functions pass the same runs is shown by
//! the module `pg`. Every test needs PostgreSQL and fails (never skips) when a throwaway cluster
//! cannot start.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use ledger_pg::engine::PgReferenceEngine;
use ledger_pg::testpg::TestPg;
use ledger_pg_runs::{PgArgs, PgRun};
use ledger_simulator::gen::{run_seed, SchedulerKind};
use ledger_simulator::history::History;
use ledger_simulator::report::{EngineKind, Reduction, RunReport};
use ledger_simulator::scenario::Scenario;

/// No test here may wait on the server longer than this.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

/// Replays the shrinker may spend on a counterexample here, each a fresh database on the
/// server (half a second for a trace of a hundred flows): far fewer than `--max-replays`'
/// default. A test that is about the shrink itself gives it more.
const MAX_REPLAYS: usize = 20;

fn limit(name: &str) -> ledger_pg::testpg::TimeLimit {
    ledger_pg::testpg::TimeLimit::new(format!("{}::{name}", module_path!()), TIME_LIMIT)
}

fn mutant(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pg-mutants").join(file)
}

fn scenario_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/scenarios").join(file)
}

fn scenario_file(file: &str) -> Scenario {
    let path = scenario_path(file);
    let text = std::fs::read_to_string(&path).expect("the scenario file");
    Scenario::from_toml_str(&text, &path.display().to_string()).expect("a valid scenario")
}

/// The default scenario at `ledger-sim run --users 20 --steps 600`: budgets that run out and a
/// pool that drains.
fn small_default() -> Scenario {
    Scenario { n_users: 20, n_steps: 600, ..Scenario::default() }
}

/// Runs `seeds` of `s` on pg-reference with the SQL mutant `file` installed, stopping at the
/// first seed that breaks something.
fn run_mutant(file: &str, s: &Scenario, seeds: (u64, u64), args: PgArgs) -> RunReport {
    run_mutant_of(file, s, None, seeds, args, MAX_REPLAYS)
}

/// [`run_mutant`] of a scenario read from `scenario_file`, as `--scenario FILE` gives it.
fn run_mutant_of(
    file: &str,
    s: &Scenario,
    scenario_file: Option<&Path>,
    seeds: (u64, u64),
    args: PgArgs,
    max_replays: usize,
) -> RunReport {
    let dir = std::env::temp_dir().join(format!("ledger-sim-pg-mutants-{}-{file}", std::process::id()));
    let run = PgRun {
        kind: EngineKind::PgReference,
        scenario: s,
        scenario_file,
        seeds,
        scheduler: SchedulerKind::Random,
        fail_fast: true,
        trace_dir: &dir,
        max_replays,
        shrink_for: Some(ledger_pg_runs::SHRINK_ON_ENGINE),
        exec: None,
        stop: None,
    };
    let args = PgArgs { pg_mutant: Some(mutant(file)), ..args };
    ledger_pg_runs::run(&run, &args).expect("a throwaway PostgreSQL must start, and the run must finish")
}

fn caught(r: &RunReport) -> Vec<&str> {
    r.violations.iter().map(|v| v.invariant.as_str()).collect()
}

fn concurrent(n: u32) -> PgArgs {
    PgArgs { concurrency: Some(n), ..PgArgs::default() }
}

const OFFER_ONE_SHORT: &str = "ledger_decide_locked_offer_one_short.sql";

fn read_trace(path: &str) -> History {
    let bytes = std::fs::read(path).expect("the trace is written");
    History::read_jsonl(&bytes[..], path).expect("a valid trace")
}

/// The whole history of `seed` on pg-reference with the mutant installed, as the run drew it.
fn whole_seed(s: &Scenario, seed: u64, sql: &str) -> History {
    let pg = TestPg::new().expect("a throwaway PostgreSQL must start");
    let made = RefCell::new(false);
    let (_, h) = run_seed(
        |c| {
            assert!(!made.replace(true), "one engine a seed");
            let engine = PgReferenceEngine::connect_url(pg.url(), c).expect("pg-reference connects");
            crate::run_sql(pg.connect_options(), sql);
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
fn a_decide_reading_its_identity_without_for_update_overspends_the_budget_under_concurrency() {
    let _limit = limit("a_decide_reading_its_identity_without_for_update_overspends_the_budget_under_concurrency");
    let r = run_mutant("ledger_decide_locked_no_for_update.sql", &small_default(), (0, 3), concurrent(32));
    let found = caught(&r);
    assert!(found.contains(&"I4") && found.contains(&"I8"), "I4 and I8 must catch the lost update: {found:?}");
    let i4 = r.violations.iter().find(|v| v.invariant == "I4").expect("I4");
    assert!(i4.detail.contains("absorbed"), "{i4:?}");
    assert!(i4.replay.contains("--pg-mutant"), "the command to run it again installs the mutant: {}", i4.replay);
}

#[test]
fn a_record_returning_the_whole_reservation_breaks_conservation_in_lockstep() {
    let _limit = limit("a_record_returning_the_whole_reservation_breaks_conservation_in_lockstep");
    let s = scenario_file("ci-small.toml");
    let r = run_mutant("ledger_record_returns_the_whole_reservation.sql", &s, (0, 3), PgArgs::default());
    let found = caught(&r);
    assert!(found.contains(&"I2"), "I2 must catch the sats a record gives back twice: {found:?}");
    // The shrunk counterexample is confirmed on Postgres with the mutant installed again.
    let i2 = r.violations.iter().find(|v| v.invariant == "I2").expect("I2");
    assert!(i2.detail.contains("conservation"), "{i2:?}");
    // Its replay command installs the mutant too, and so replayed the trace breaks I2 again;
    // on today's functions it breaks nothing.
    let file = mutant("ledger_record_returns_the_whole_reservation.sql");
    assert!(
        i2.replay.ends_with(&format!(" --pg-mutant {}", std::path::absolute(&file).unwrap().display())),
        "{}",
        i2.replay
    );
    let h = read_trace(&i2.trace);
    let sql = ledger_pg_runs::load_pg_mutant(&file, EngineKind::PgReference).unwrap();
    let (with, _) = ledger_pg_runs::replay_on_pg(EngineKind::PgReference, &h, false, Some(&sql)).unwrap();
    assert!(with.violations.iter().any(|v| v.invariant.id() == "I2"), "{:?}", with.violations);
    let (without, divergence) = ledger_pg_runs::replay_on_pg(EngineKind::PgReference, &h, false, None).unwrap();
    assert!(without.violations.is_empty() && divergence.is_none(), "{:?} {divergence:?}", without.violations);
}

#[test]
fn a_partial_offer_one_sat_short_is_caught_by_the_rules_oracle_and_by_the_divergence_in_lockstep() {
    let _limit = limit("a_partial_offer_one_sat_short_is_caught_by_the_rules_oracle_and_by_the_divergence_in_lockstep");
    // One throwaway cluster for the run, the whole seed and the replays.
    let _keep = TestPg::new().expect("a throwaway PostgreSQL must start");
    let s = scenario_file("ci-small.toml");
    let r = run_mutant_of(OFFER_ONE_SHORT, &s, Some(&scenario_path("ci-small.toml")), (0, 6), PgArgs::default(), 60);
    let found = caught(&r);
    assert!(found.contains(&"I8"), "the rules oracle must catch an offer 1 sat short: {found:?}");
    assert!(found.contains(&"divergence"), "so must the comparison with the reference: {found:?}");
    // Too strict: no money invariant can see it.
    assert!(found.iter().all(|i| matches!(*i, "I8" | "divergence")), "{found:?}");
    let file = mutant(OFFER_ONE_SHORT);
    let sql = ledger_pg_runs::load_pg_mutant(&file, EngineKind::PgReference).expect("the mutant loads");

    // The in-memory twin has no such bug: the I8 counterexample is cut after its first
    // violation and shrunk on PostgreSQL itself (it was the cut alone, every flow of the seed
    // kept), and the shrunk trace still breaks I8 there.
    let i8 = r.violations.iter().find(|v| v.invariant == "I8").expect("I8");
    assert!(i8.detail.contains("partial"), "{i8:?}");
    assert_eq!(i8.reduction, Reduction::Shrunk, "{i8:?}");
    let h = read_trace(&i8.trace);
    assert_eq!((h.flows.len(), h.events.len()), (i8.shrunk_flows, i8.shrunk_events), "{i8:?}");
    let (again, _) = ledger_pg_runs::replay_on_pg(EngineKind::PgReference, &h, false, Some(&sql)).unwrap();
    assert!(again.violations.iter().any(|v| v.invariant.id() == "I8"), "{:?}", again.violations);

    // The divergence is reported as a small counterexample, not the whole seed: cut after the
    // event that diverged (and shrunk on PostgreSQL while it still diverges, within a bound).
    let d = r.violations.iter().find(|v| v.invariant == "divergence").expect("a partial offer 1 sat short diverges");
    assert!(d.detail.starts_with("at engine step "), "{d:?}");
    assert!(matches!(d.reduction, Reduction::Cut | Reduction::Shrunk), "reduced, not the whole seed: {d:?}");
    let whole = whole_seed(&s, d.seed, &sql);
    let h = read_trace(&d.trace);
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

#[test]
fn a_batched_debit_with_its_sign_dropped_is_caught_by_the_batched_run_only() {
    let _limit = limit("a_batched_debit_with_its_sign_dropped_is_caught_by_the_batched_run_only");
    let file = "ledger_decide_locked_batch_debit_sign.sql";
    let batched = run_mutant(file, &small_default(), (0, 3), PgArgs { batch_lanes: Some(2), ..concurrent(32) });
    let found = caught(&batched);
    assert!(found.contains(&"I2"), "I2 must catch the batch's debit that credits: {found:?}");
    // The same workload one call at a time never runs the batch's branch.
    let per_call = run_mutant(file, &small_default(), (0, 1), concurrent(32));
    assert_eq!(caught(&per_call), Vec::<&str>::new(), "{:#?}", per_call.violations);
}

#[test]
fn a_pg_mutant_is_refused_for_other_engines_and_when_it_is_not_a_function() {
    let _limit = limit("a_pg_mutant_is_refused_for_other_engines_and_when_it_is_not_a_function");
    let s = small_default();
    let dir = std::env::temp_dir().join(format!("ledger-sim-pg-mutants-{}-refused", std::process::id()));
    let refused = |kind: EngineKind, file: PathBuf| {
        let run = PgRun {
            kind,
            scenario: &s,
            scenario_file: None,
            seeds: (0, 1),
            scheduler: SchedulerKind::Random,
            fail_fast: true,
            trace_dir: &dir,
            max_replays: 300,
            shrink_for: Some(ledger_pg_runs::SHRINK_ON_ENGINE),
            exec: None,
            stop: None,
        };
        let args = PgArgs { pg_mutant: Some(file), ..PgArgs::default() };
        ledger_pg_runs::run(&run, &args).expect_err("refused before any server starts").to_string()
    };
    let e = refused(EngineKind::PgSeed, mutant("ledger_record_returns_the_whole_reservation.sql"));
    assert!(e.contains("pg-reference only"), "{e}");
    let e = refused(EngineKind::PgReference, mutant("no-such-mutant.sql"));
    assert!(e.contains("--pg-mutant") && e.contains("no-such-mutant.sql"), "{e}");
    let not_sql = dir.join("not-a-function.sql");
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(&not_sql, "DROP TABLE identities;").expect("write");
    let e = refused(EngineKind::PgReference, not_sql);
    assert!(e.contains("CREATE OR REPLACE FUNCTION"), "{e}");
    let e = refused(EngineKind::PgReference, PathBuf::from("/dev/zero"));
    assert!(e.contains("/dev/zero") && e.contains("regular file"), "{e}");
}

#[test]
fn a_lock_order_inversion_on_the_hot_set_is_reported_as_deadlocks_not_a_crawl() {
    let _limit = limit("a_lock_order_inversion_on_the_hot_set_is_reported_as_deadlocks_not_a_crawl");
    // Without `FOR UPDATE` the decide locks its pool stripe first and its identity last, where
    // every other command locks the identity first: on six identities and sixteen stripes at
    // 32 clients, cycles form at once. PostgreSQL breaks each after deadlock_timeout (1 s) and
    // the call is retried, so every answer is still right (the hot set's budgets never run
    // out: no I4) and the run only crawls. It must say so.
    let mut s = scenario_file("hot-set.toml");
    s.n_steps = 100;
    // --fail-fast stops at the first seed that deadlocked.
    let path = scenario_path("hot-set.toml");
    let r =
        run_mutant_of("ledger_decide_locked_no_for_update.sql", &s, Some(&path), (0, 5), concurrent(32), MAX_REPLAYS);
    assert_eq!(caught(&r), vec!["deadlock"], "{:#?}", r.violations);
    let d = &r.violations[0];
    // Which seed deadlocks first depends on the threads' timing (almost always seed 0); the
    // run stops at it.
    assert_eq!(r.seeds, format!("0..{}", d.seed + 1), "a deadlock is a finding --fail-fast stops at");
    assert!(d.detail.contains("deadlock(s)") && d.detail.contains("lock"), "{d:?}");
    assert!(d.replay.contains("--pg-mutant"), "{}", d.replay);
    // Without its scenario file the command would run the default scenario, not the hot set.
    assert!(d.replay.contains(&format!("--scenario {}", path.display())), "{}", d.replay);
}

#[test]
fn an_error_the_sql_raises_is_the_implementations_not_an_outage() {
    let _limit = limit("an_error_the_sql_raises_is_the_implementations_not_an_outage");
    // One payment in 17 is credited on a stripe that does not exist: the trigger raises on
    // every try. The run must stop retrying it, say the implementation failed, and finish
    // with a verdict (exit 1), not blame an unreachable database and give up (exit 2).
    for args in [concurrent(16), PgArgs { batch_lanes: Some(2), ..concurrent(16) }] {
        let r = run_mutant("ledger_credit_stripe_off_by_one.sql", &small_default(), (0, 3), args.clone());
        let found = caught(&r);
        assert!(found.contains(&"engine_error"), "{args:?}: {found:?}");
        let e = r.violations.iter().find(|v| v.invariant == "engine_error").expect("engine_error");
        assert!(e.detail.contains("Credit") && e.detail.contains("pool stripe 16 missing"), "{e:?}");
        assert!(!e.detail.contains("unreachable"), "{e:?}");
    }
}
