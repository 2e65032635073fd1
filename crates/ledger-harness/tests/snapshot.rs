//! `Ledger::snapshot` and `Ledger::restore`: at every step of every conformance case, the
//! ledger written to JSON and read back goes on exactly as the original would, and a
//! snapshot that does not add up is refused with what does not.

use std::path::{Path, PathBuf};

use ledger_core::{Command, Ledger, Pubkey, RequestId, RestoreError, Sats, Snapshot, Tier, TimeMs};
use ledger_harness::conformance::{self, Segment};

fn vector_files() -> Vec<(String, Vec<Segment>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance");
    conformance::read_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn round_trip(ledger: &Ledger) -> Ledger {
    let snapshot = ledger.snapshot();
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot, "JSON round trip");
    let restored = Ledger::restore(back).unwrap_or_else(|e| panic!("a ledger's own snapshot is refused: {e}"));
    assert_eq!(restored.snapshot(), snapshot, "restore then snapshot");
    restored
}

#[test]
fn a_restored_ledger_goes_on_as_the_original_at_every_step() {
    let mut n_forks = 0;
    for (file, segs) in vector_files() {
        for seg in &segs {
            let steps: Vec<(Command, TimeMs)> = seg.steps.iter().map(|(_, s)| (s.command.clone(), s.now)).collect();
            let mut original = Ledger::new(seg.header.config);
            for at in 0..=steps.len() {
                // Fork here, and run the rest of the case on both.
                let mut fork = round_trip(&original);
                let mut twin = original.clone();
                for (command, now) in &steps[at..] {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    let got = fork.apply(command, *now, &mut a);
                    let want = twin.apply(command, *now, &mut b);
                    assert_eq!(got, want, "{file} ({}): fork at step {at}, {command:?}", seg.header.case);
                    assert_eq!(a, b, "{file} ({}): fork at step {at}: movements", seg.header.case);
                    assert_eq!(fork.totals(), twin.totals());
                }
                assert_eq!(fork.snapshot(), twin.snapshot(), "{file} ({}): fork at step {at}", seg.header.case);
                n_forks += 1;
                if let Some((command, now)) = steps.get(at) {
                    let _ = original.apply(command, *now, &mut Vec::new());
                }
            }
        }
    }
    assert!(n_forks > 3_000, "only {n_forks} forks");
}

/// A small ledger with one outstanding and one recorded reservation.
fn busy() -> Ledger {
    let mut ledger = Ledger::new(ledger_core::Config::default());
    let alice = Pubkey::from_bytes([1; 32]);
    let s = |v| Sats::new(v).unwrap();
    let j = &mut Vec::new();
    ledger.apply(&Command::SetTier { pubkey: alice, tier: Tier::Elite }, TimeMs(1), j).unwrap();
    for id in [1, 2] {
        ledger
            .apply(&Command::Decide { request_id: RequestId(id), pubkey: alice, estimated_sats: s(30) }, TimeMs(2), j)
            .unwrap();
    }
    ledger.apply(&Command::Record { request_id: RequestId(1), actual_sats: s(20) }, TimeMs(3), j).unwrap();
    ledger
}

#[test]
fn a_snapshot_that_does_not_add_up_is_refused_with_what_does_not() {
    let good = busy().snapshot();
    assert!(Ledger::restore(good.clone()).is_ok());

    let mut s = good.clone();
    s.version = 2;
    assert_eq!(Ledger::restore(s).unwrap_err(), RestoreError::Version { found: 2 });

    let mut s = good.clone();
    s.totals.pool_sats = s.totals.pool_sats.checked_add(Sats::new(1).unwrap()).unwrap();
    let e = Ledger::restore(s).unwrap_err();
    assert!(e.to_string().starts_with("pool + reserved + absorbed"), "{e}");

    let mut s = good.clone();
    s.identities[0].1.reserved_sats = Sats::ZERO;
    let e = Ledger::restore(s).unwrap_err();
    assert!(e.to_string().starts_with("reserved sats of identity"), "{e}");

    let mut s = good.clone();
    s.requests.push(s.requests[0].clone());
    let e = Ledger::restore(s).unwrap_err();
    assert_eq!(e, RestoreError::Duplicate { what: "request 1".into() });

    let mut s = good.clone();
    s.totals.n_grants += 1;
    let e = Ledger::restore(s).unwrap_err();
    assert!(e.to_string().starts_with("totals.n_grants"), "{e}");

    let mut s = good;
    s.identities.clear();
    assert_eq!(Ledger::restore(s).unwrap_err(), RestoreError::ReservationWithoutIdentity { request_id: 1 });
}
