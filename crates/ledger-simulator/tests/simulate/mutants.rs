//! Bug-finding power: every named mutant of the reference engine is caught within a fixed
//! number of seeds of the small scenario.

use ledger_harness::mutants::Mutant;
use ledger_harness::ReferenceEngine;
use ledger_simulator::gen::{run_seed, SchedulerKind};
use ledger_simulator::scenario::Scenario;

/// Seeds each mutant may take before it counts as surviving.
const MAX_SEEDS: u64 = 1_500;

#[test]
fn every_mutant_is_caught() {
    let s = Scenario::small();
    let mut table = Vec::new();
    for m in Mutant::ALL {
        let caught = (0..MAX_SEEDS).find_map(|seed| {
            let (r, _) = run_seed(|c| ReferenceEngine::with_mutant(c, m), "reference", &s, seed, SchedulerKind::Random);
            r.violations.first().map(|v| (seed, v.invariant))
        });
        table.push((m, caught));
    }
    for (m, caught) in &table {
        eprintln!("{:<32} {:?}", m.name(), caught);
    }
    let survivors: Vec<String> = table.iter().filter(|(_, c)| c.is_none()).map(|(m, _)| m.name()).collect();
    assert!(survivors.is_empty(), "mutants not caught within {MAX_SEEDS} seeds: {survivors:?}");
}
