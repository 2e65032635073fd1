//! The two scenario readers (the simulator's `run` scenario and the planner's) on arbitrary
//! text: they never panic; whatever they accept passes its own validation again, and the
//! planner's accepted scenario builds a plan (the grid it would run) without panicking.
//!
//! The body of the fuzz target of the same name (`fuzz/fuzz_targets/`), and of the test that
//! replays its committed corpus under `cargo test` (`tests/tests/fuzz_corpora.rs`).

use ledger_plan::scenario::PlanScenario;
use ledger_simulator::scenario::Scenario;

/// Runs the target on `data`: panics when a property breaks.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(s) = Scenario::from_toml_str(text, "fuzz.toml") {
        s.validate("fuzz.toml").expect("an accepted run scenario validates again");
    }
    if let Ok(s) = PlanScenario::from_toml_str(text, "fuzz.toml") {
        s.validate("fuzz.toml", Some(text)).expect("an accepted plan scenario validates again");
        let plan = ledger_plan::Plan::new(text, "fuzz.toml", &[], Vec::new()).expect("an accepted scenario plans");
        let _ = plan.bytes_per_run();
        assert_eq!(plan.n_items(), plan.base.seeds as usize);
    }
}
