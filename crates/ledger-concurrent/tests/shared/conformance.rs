//! The conformance vectors of `fixtures/conformance/` against `SharedLedger`: every command's
//! outcome or refusal, the balances after it and the identity's standing must be the
//! reference's, under one identity shard and under many, with I1-I6 checked on its journal.

use std::path::{Path, PathBuf};

use ledger_concurrent::SharedLedger;
use ledger_core::{Command, Identity, Movement, Outcome, Pubkey, Refusal, TimeMs, Totals};
use ledger_harness::conformance::replay::{replay, Implementation};
use ledger_harness::conformance::{self, Segment};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance")
}

fn vector_files() -> Vec<(String, Vec<Segment>)> {
    conformance::read_dir(&dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// `SharedLedger` as the replay sees it.
struct Shared(SharedLedger);

impl Implementation for Shared {
    fn apply(&mut self, command: &Command, now: TimeMs, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
        self.0.apply(command, now, journal)
    }

    fn totals(&self) -> Totals {
        self.0.totals()
    }

    fn identity(&self, pubkey: &Pubkey) -> Option<Identity> {
        self.0.identity(pubkey)
    }
}

#[test]
fn every_vector_holds_for_the_shared_ledger() {
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for (file, segs) in vector_files() {
        for seg in &segs {
            for n_shards in [1, 16] {
                let label = format!("{file} ({n_shards} shard(s))");
                failures.extend(replay(
                    seg,
                    &label,
                    &mut Shared(SharedLedger::with_shards(seg.header.config, n_shards)),
                ));
            }
            n_cases += 1;
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(n_cases >= 300, "only {n_cases} cases");
}
