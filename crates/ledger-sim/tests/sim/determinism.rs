//! Same seed and arguments, same run: trace hash, history, report bytes.

use std::process::Command;

use ledger_harness::{ReferenceEngine, SeedEngine};
use ledger_simulator::gen::{run_seed, SchedulerKind};
use ledger_simulator::scenario::Scenario;

#[test]
fn a_seed_run_twice_is_identical() {
    let s = Scenario { n_users: 500, n_steps: 20_000, max_in_flight: 300, ..Scenario::default() };
    for sched in [SchedulerKind::Random, SchedulerKind::Pct] {
        let (a, ha) = run_seed(ReferenceEngine::new, "reference", &s, 7, sched);
        let (b, hb) = run_seed(ReferenceEngine::new, "reference", &s, 7, sched);
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.coverage, b.coverage);
        assert_eq!(a.n_events, b.n_events);
        assert_eq!(ha, hb);
        let (c, _) = run_seed(ReferenceEngine::new, "reference", &s, 8, sched);
        assert_ne!(a.trace_hash, c.trace_hash, "different seeds must differ");
    }
    let (a, _) = run_seed(SeedEngine::new, "seed", &s, 3, SchedulerKind::Random);
    let (b, _) = run_seed(SeedEngine::new, "seed", &s, 3, SchedulerKind::Random);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.violations, b.violations);
}

#[test]
fn a_recorded_history_replays_to_the_same_hash() {
    let s = Scenario { n_users: 200, n_steps: 5_000, max_in_flight: 100, ..Scenario::default() };
    let (a, h) = run_seed(SeedEngine::new, "seed", &s, 11, SchedulerKind::Random);
    let r = ledger_simulator::gen::replay(SeedEngine::new, &h, false);
    assert_eq!(a.trace_hash, r.trace_hash);
    assert_eq!(a.violations, r.violations);
    let mut buf = Vec::new();
    h.write_jsonl(&mut buf).unwrap();
    let back = ledger_simulator::history::History::read_jsonl(&buf[..], "memory").unwrap();
    assert_eq!(back, h);
}

/// The report printed by the binary is byte-identical between runs, but for the one
/// measured field, `steps_per_sec`.
#[test]
fn report_bytes_are_identical() {
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
            .args(["run", "--engine", "seed", "--seeds", "0..6", "--users", "60", "--steps", "800", "--json"])
            .args(["--trace-dir", &std::env::temp_dir().join("ledger-sim-determinism").display().to_string()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "the seed model breaks invariants");
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().filter(|l| !l.contains("\"steps_per_sec\"")).collect::<Vec<_>>().join("\n")
    };
    let (a, b) = (run(), run());
    assert!(a.contains("\"trace_hash\""));
    assert_eq!(a, b);
}
