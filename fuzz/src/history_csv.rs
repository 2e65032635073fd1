//! The request-history reader of `plan --fit` on arbitrary bytes: it never panics; a history
//! it accepts is in time order, writes out as text that reads back to the same rows, and fits
//! (when it fits at all) to a scenario whose TOML loads as that same scenario.
//!
//! The body of the fuzz target of the same name (`fuzz/fuzz_targets/`), and of the test that
//! replays its committed corpus under `cargo test` (`tests/tests/fuzz_corpora.rs`).

use ledger_plan::{fit, history, scenario::PlanScenario};

/// Runs the target on `data`: panics when a property breaks.
pub fn run(data: &[u8]) {
    let Ok(rows) = history::read(data, "fuzz.csv") else { return };
    assert!(!rows.is_empty(), "an accepted history has a row");
    assert!(rows.windows(2).all(|w| w[0].time_ms <= w[1].time_ms), "an accepted history is in time order");
    let text = history::write(&rows);
    let back = history::read(text.as_bytes(), "fuzz.csv").expect("a history written reads back");
    assert_eq!(back, rows, "a history written reads back to the same rows");
    if let Ok(fitted) = fit::fit(&rows, "fuzz.csv") {
        let toml = fitted.toml();
        let loaded = PlanScenario::from_toml_str(&toml, "fitted.toml")
            .unwrap_or_else(|e| panic!("the fitted scenario does not load: {e}\n{toml}"));
        assert_eq!(loaded, fitted.scenario(), "the fitted TOML loads as the scenario fitted");
    }
}
