//! The named mutants of `SharedLedger` (`ledger_concurrent::SharedMutant`), each a realistic
//! one-line concurrency bug, are caught by concurrent runs alone: threads hammering one ledger,
//! judged by the money invariants on snapshots and at the end, and by linearizability on the
//! reference (`tests/shared/shared_support`). No conformance vector, no one-at-a-time comparison: four
//! of the five answer as the reference does when their commands run one at a time, and the fifth
//! (`partial_ignores_reservations`) needs only a reservation outstanding while another is made,
//! which the workload makes by design. The real ledger passes the same runs.
//!
//! Print the detection figures with
//! `cargo test -p ledger-concurrent --release --test shared shared_mutants -- --nocapture`.
#![cfg(not(ledger_loom))]

use std::time::Instant;

use crate::shared_support::{hunt, run, Judge, Scene, ONE_AT_A_TIME};
use ledger_concurrent::SharedMutant;

/// Seeds the real ledger is run with, each in both scenes (`HAMMER_CLEAN_SEEDS` for more).
const CLEAN_SEEDS: u64 = 4;

/// Runs a hunt may play before the mutant counts as missed: far above what any mutant needs (the
/// most a mutant has needed is in the README's table).
const MAX_RUNS: u64 = 60;

#[test]
fn the_real_ledger_passes_every_check() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n_seeds = std::env::var("HAMMER_CLEAN_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(CLEAN_SEEDS);
    for seed in 1..=n_seeds {
        for scene in Scene::ALL {
            let start = Instant::now();
            let report = run(scene, seed, None, Judge::All);
            println!(
                "real ledger, {scene} seed {seed}: {} calls, {} snapshots, {}, {:.2?} ({:.2?} running, {:.2?} checking)",
                report.n_calls,
                report.n_snapshots,
                report.linear,
                start.elapsed(),
                report.ran,
                report.checked
            );
            assert!(report.findings.is_empty(), "{scene} seed {seed}: {:#?}", report.findings);
        }
    }
}

#[test]
fn every_mutant_is_caught_by_a_concurrent_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(SharedMutant::ALL.map(|m| SharedMutant::from_name(m.name())), SharedMutant::ALL.map(Some));
    let mut missed = Vec::new();
    println!("| mutant | caught by | runs to first detection | time |");
    for mutant in SharedMutant::ALL {
        let h = hunt(mutant, 1, MAX_RUNS);
        let checks: Vec<String> = h.checks.iter().map(ToString::to_string).collect();
        let at = h.caught_by.map(|(seed, scene)| format!(" (seed {seed}, {scene})")).unwrap_or_default();
        println!(
            "| `{mutant}` | {} | {}{at} | {:.2?} |",
            checks.join(", "),
            h.runs_to_catch.map_or_else(|| format!("not in {MAX_RUNS}"), |n| n.to_string()),
            h.elapsed
        );
        if let Some(example) = &h.example {
            println!("    e.g. {}: {}", example.check, example.detail.chars().take(400).collect::<String>());
        }
        if h.runs_to_catch.is_none() {
            missed.push(mutant.name());
        }
    }
    assert!(missed.is_empty(), "not caught within {MAX_RUNS} runs: {missed:?}");
}

/// How often one run of each scene finds each mutant (for tuning the workload; slow).
#[test]
#[ignore = "a measurement, not a check"]
fn detection_rates() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n: u64 = std::env::var("RATE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let only = std::env::var("RATE_MUTANT").ok();
    for mutant in SharedMutant::ALL.into_iter().filter(|m| only.as_deref().is_none_or(|o| o == m.name())) {
        for scene in Scene::ALL {
            let start = Instant::now();
            let mut caught = 0;
            let mut checks = std::collections::BTreeMap::<String, u64>::new();
            for seed in 1..=n {
                let report = run(scene, seed, Some(mutant), Judge::All);
                caught += u64::from(!report.findings.is_empty());
                for c in report.checks() {
                    *checks.entry(c.to_string()).or_default() += 1;
                }
            }
            println!("{mutant} {scene}: {caught}/{n} runs in {:.2?}: {checks:?}", start.elapsed());
        }
    }
}
