//! The in-process concurrent engine (`ledger-concurrent`) is the reference engine
//! (`ledger-core`) made thread-safe: driven by the simulator (`ledger-sim`) through the same
//! flows, faults and schedules, it must produce the same run, step for step, and keep every
//! invariant.

use ledger_concurrent::SharedLedger;
use ledger_core::{Command, Config, Movement, TimeMs};
use ledger_harness::{Call, Engine, Observed, ReferenceEngine, Reply};
use ledger_simulator::gen::{run_seed, SchedulerKind};
use ledger_simulator::scenario::Scenario;
use rayon::prelude::*;

/// `SharedLedger` behind the simulator's interface: every call is one step.
struct SharedEngine(SharedLedger);

impl Engine for SharedEngine {
    type Op = Command;

    fn name(&self) -> &'static str {
        "shared"
    }

    fn config(&self) -> &Config {
        self.0.config()
    }

    fn begin(&mut self, call: &Call) -> Command {
        call.to_command()
    }

    fn step(&mut self, op: &mut Command, now: TimeMs, journal: &mut Vec<Movement>) -> Option<Reply> {
        Some(self.0.apply(op, now, journal).into())
    }

    fn observe(&self) -> Observed {
        let t = self.0.totals();
        Observed {
            pool_sats: t.pool_sats.to_i128(),
            reserved_sats: Some(t.reserved_sats.to_i128()),
            granted_sats: t.absorbed_sats.to_i128(),
            n_grants: t.n_grants,
        }
    }

    fn daily_remaining(&self, pubkey: &ledger_core::Pubkey, now: TimeMs) -> Option<ledger_core::Sats> {
        let id = self.0.identity(pubkey)?;
        Some(id.daily_remaining(self.0.config().budget(id.tier), now))
    }
}

#[test]
fn shared_ledger_runs_every_seed_exactly_like_the_reference() {
    let s = Scenario::small();
    let mismatches: Vec<String> = (0..400u64)
        .into_par_iter()
        .filter_map(|seed| {
            let sched = if seed % 2 == 0 { SchedulerKind::Random } else { SchedulerKind::Pct };
            let (a, _) = run_seed(ReferenceEngine::new, "reference", &s, seed, sched);
            let (b, _) = run_seed(|c| SharedEngine(SharedLedger::new(c)), "shared", &s, seed, sched);
            if !b.violations.is_empty() {
                return Some(format!("seed {seed}: shared ledger broke {}", b.violations[0]));
            }
            (a.trace_hash != b.trace_hash || a.coverage != b.coverage)
                .then(|| format!("seed {seed}: runs differ ({:x} vs {:x})", a.trace_hash, b.trace_hash))
        })
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}
