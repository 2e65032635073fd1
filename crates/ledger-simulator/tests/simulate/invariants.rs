//! What the simulator must show: the reference holds over many seeds, the seed model
//! breaks I2-I6 with short counterexamples, and the committed counterexamples replay.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ledger_harness::{Invariant, ReferenceEngine, SeedEngine};
use ledger_simulator::gen::{run_seed, SchedulerKind};
use ledger_simulator::history::History;
use ledger_simulator::scenario::Scenario;
use ledger_simulator::shrink::{shrink, shrink_until, Reduction};
use rayon::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn scenario(name: &str) -> Scenario {
    let path = fixtures().join("scenarios").join(name);
    Scenario::from_toml_str(&std::fs::read_to_string(&path).unwrap(), &path.display().to_string()).unwrap()
}

/// The CI-sized version of the large run in README: 10,000 seeds of the small scenario.
#[test]
fn reference_holds_over_ten_thousand_seeds() {
    let s = scenario("ci-small.toml");
    let failures: Vec<String> = (0..10_000u64)
        .into_par_iter()
        .flat_map_iter(|seed| {
            let sched = if seed % 2 == 0 { SchedulerKind::Random } else { SchedulerKind::Pct };
            let (r, _) = run_seed(ReferenceEngine::new, "reference", &s, seed, sched);
            r.violations.into_iter().map(move |v| format!("seed {seed}: {v}"))
        })
        .collect();
    assert!(failures.is_empty(), "{} violations, first: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}

#[test]
fn seed_model_breaks_i2_to_i6_with_short_counterexamples() {
    let s = scenario("ci-small.toml");
    let mut found: Vec<(Invariant, u64, History)> = Vec::new();
    for seed in 0..100 {
        let (r, h) = run_seed(SeedEngine::new, "seed", &s, seed, SchedulerKind::Random);
        for inv in Invariant::ALL {
            if r.violations.iter().any(|v| v.invariant == inv) && !found.iter().any(|f| f.0 == inv) {
                found.push((inv, seed, h.clone()));
            }
        }
    }
    let kinds: Vec<Invariant> = found.iter().map(|f| f.0).collect();
    for inv in [Invariant::I2, Invariant::I3, Invariant::I4, Invariant::I5, Invariant::I6] {
        assert!(kinds.contains(&inv), "the seed model should break {inv}, found {kinds:?}");
    }
    let mut n_cut = 0;
    for (inv, seed, h) in found {
        // Two replays only confirm the seed and its cut after the first violation: a
        // counterexample cut, not shrunk, and it must not say it was.
        let cut = shrink(&SeedEngine::new, &h, inv, 2);
        assert_eq!(cut.history.flows.len(), h.flows.len(), "{inv} seed {seed}");
        assert_ne!(cut.reduction, Reduction::Shrunk, "{inv} seed {seed}: nothing was shrunk");
        n_cut += usize::from(cut.reduction == Reduction::Cut);
        // A stop already set (a signal to the run while it shrinks) spends no replay past
        // the seed's and its cut's, with replays to spare: the cut, not shrunk.
        let stopped = shrink_until(&SeedEngine::new, &h, inv, 2_000, Some(&AtomicBool::new(true)));
        assert!(stopped.n_replays <= 2, "{inv} seed {seed}: {} replays", stopped.n_replays);
        assert_eq!(stopped.history.flows.len(), h.flows.len(), "{inv} seed {seed}");
        assert_ne!(stopped.reduction, Reduction::Shrunk, "{inv} seed {seed}: nothing was shrunk");
        let again = ledger_simulator::gen::replay(SeedEngine::new, &stopped.history, false);
        assert!(again.violations.iter().any(|v| v.invariant == inv), "{inv} seed {seed}: the cut still breaks it");
        let shrunk = shrink_until(&SeedEngine::new, &h, inv, 2_000, Some(&AtomicBool::new(false)));
        assert_eq!(shrunk.reduction, Reduction::Shrunk, "{inv} seed {seed}");
        assert!(
            shrunk.history.flows.len() <= 3,
            "{inv} seed {seed} shrunk only to {} flows",
            shrunk.history.flows.len()
        );
        assert!(shrunk.history.events.len() <= 20, "{inv} seed {seed}: {} events", shrunk.history.events.len());
        let again = ledger_simulator::gen::replay(SeedEngine::new, &shrunk.history, false);
        assert!(again.violations.iter().any(|v| v.invariant == inv));
    }
    assert!(n_cut > 0, "no seed broke before its last event");
}

/// The races: with actual costs within estimates and no faults, the seed still breaks I3
/// and I4 through interleavings alone, and the reference does not.
#[test]
fn seed_races_break_i3_and_i4_by_interleaving_alone() {
    let s = scenario("seed-races.toml");
    let broken = |engine: &str, inv: Invariant| {
        (0..100).any(|seed| {
            let r = if engine == "seed" {
                run_seed(SeedEngine::new, "seed", &s, seed, SchedulerKind::Random).0
            } else {
                run_seed(ReferenceEngine::new, "reference", &s, seed, SchedulerKind::Random).0
            };
            r.violations.iter().any(|v| v.invariant == inv)
        })
    };
    for inv in [Invariant::I3, Invariant::I4] {
        assert!(broken("seed", inv), "seed model should break {inv} by races");
        assert!(!broken("reference", inv), "reference must not break {inv}");
    }
}

/// Every committed counterexample replays to the invariant its file name says.
#[test]
fn committed_counterexamples_replay() {
    let mut n = 0;
    let dir = fixtures().join("counterexamples");
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let name = path.file_stem().unwrap().to_str().unwrap();
            let inv = Invariant::from_id(name.rsplit('-').next().unwrap()).expect("file names end in -I<n>");
            let file = std::fs::File::open(&path).unwrap();
            let h = History::read_jsonl(std::io::BufReader::new(file), &path.display().to_string()).unwrap();
            let r = ledger_simulator::report::replay_in_memory(
                ledger_simulator::report::EngineSpec::from_name(&h.engine).unwrap(),
                &h,
                false,
            )
            .unwrap();
            assert!(r.violations.iter().any(|v| v.invariant == inv), "{} no longer shows {inv}", path.display());
            n += 1;
        }
    }
    assert!(n >= 5, "expected the committed counterexamples, found {n}");
}
