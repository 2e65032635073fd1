//! The conformance vectors of `fixtures/conformance/` against `SharedLedger`: every command's
//! outcome or refusal, the balances after it and the identity's standing must be the
//! reference's, under one identity shard and under many, with I1-I6 checked on its journal.

use std::path::{Path, PathBuf};

use ledger_concurrent::SharedLedger;
use ledger_core::{Command, Movement};
use ledger_harness::conformance::{self, named_pubkey, Balances, Expect, Segment, Standing};
use ledger_harness::{Checker, Observed};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance")
}

fn vector_files() -> Vec<(String, Vec<Segment>)> {
    conformance::read_dir(&dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// Replays one segment on a fresh `SharedLedger` of `n_shards` identity shards; the
/// differences from the vector and the invariants broken.
fn replay(file: &str, seg: &Segment, n_shards: usize) -> Vec<String> {
    let ledger = SharedLedger::with_shards(seg.header.config, n_shards);
    let mut checker = Checker::new(&seg.header.config);
    let mut failures = Vec::new();
    for (line, step) in &seg.steps {
        let mut journal: Vec<Movement> = Vec::new();
        let got = Expect::from(ledger.apply(&step.command, step.now, &mut journal));
        match (&step.command, &got) {
            (Command::SetTier { pubkey, tier }, _) => checker.on_tier(*pubkey, *tier, step.now),
            (Command::Credit { payment_id, paid_sats }, Expect::Outcome(_)) => {
                checker.on_payment(*payment_id, *paid_sats)
            }
            _ => {}
        }
        checker.on_movements(&journal, step.now);
        checker.after_step(&Observed::from(ledger.totals()));
        let at = format!("{file}:{line} ({}, {n_shards} shard(s))", seg.header.case);
        if got != step.expect {
            failures.push(format!("{at}: expected {:?}, SharedLedger gave {got:?}", step.expect));
        }
        let totals = Balances::from(ledger.totals());
        if totals != step.totals {
            failures.push(format!("{at}: expected totals {:?}, SharedLedger has {totals:?}", step.totals));
        }
        let identity: Option<Standing> = named_pubkey(&step.command).and_then(|p| ledger.identity(&p)).map(Into::into);
        if identity != step.identity {
            failures.push(format!("{at}: expected identity {:?}, SharedLedger has {identity:?}", step.identity));
        }
    }
    let last = seg.steps.iter().map(|(_, s)| s.now).max().unwrap_or_default();
    let after = last.plus_ms(seg.header.config.reservation_ttl_ms).plus_ms(1);
    let mut journal = Vec::new();
    ledger.apply(&Command::Expire, after, &mut journal).expect("expire is never refused");
    checker.on_movements(&journal, after);
    checker.after_step(&Observed::from(ledger.totals()));
    checker.finish();
    failures
        .extend(checker.violations().iter().map(|v| format!("{file} ({}, {n_shards} shard(s)): {v}", seg.header.case)));
    failures
}

#[test]
fn every_vector_holds_for_the_shared_ledger() {
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for (file, segs) in vector_files() {
        for seg in &segs {
            for n_shards in [1, 16] {
                failures.extend(replay(&file, seg, n_shards));
            }
            n_cases += 1;
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(n_cases >= 300, "only {n_cases} cases");
}
