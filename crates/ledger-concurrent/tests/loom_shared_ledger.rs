//! loom check of the real [`SharedLedger`] (built with `--cfg ledger_loom`, so its shard locks and
//! its atomic pool are loom's): three threads decide, reserve, record, release and credit at once
//! for two identities in two different shards, and a consistent snapshot taken mid-run and the end
//! state keep I1-I6. Two smaller models: a balance sheet taken on one thread while credits land
//! on others (a `totals` that does not hold the payment shards fails it: credited counted, pool
//! not yet), and several reservations outstanding on one identity at once (a `reserve_partial`
//! that ignores outstanding reservations fails it: 250 reserved of a 200 budget). The snapshot
//! runs on a spawned thread: taken on the model's main thread, loom never ran it between the
//! credits' steps.
//!
//! The pool is smaller than the two identities' demand, so their compare-and-swap debits race and
//! one of them must fall back to a partial offer or a re-quote; each thread checks that a charge
//! is reduced only by what the ledger said it reserved (I3).
//!
//! Preemption bound: 3 (about 8 s in release mode). The code under test has more
//! synchronisation points per command than the protocol models (an owner-shard lock in most
//! commands, a load and a compare-and-swap per pool movement), so each extra preemption multiplies
//! the executions by about ten; 3 covers a thread preempted inside its read-then-swap window while
//! two others write. A mutant whose pool update is a load then a store (no compare-and-swap) fails
//! this test at bound 2.
#![cfg(ledger_loom)]

use ledger_concurrent::SharedLedger;
use ledger_core::{Config, Decision, Outcome, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, Totals};
use loom::sync::Arc;
use loom::thread;

/// Preemption bound of this model; see the module docs.
const PREEMPTION_BOUND: usize = 3;
const NOW: TimeMs = TimeMs(1_000);

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn config() -> Config {
    Config { pool_initial_sats: sats(60), ..Config::default() }
}

fn check_balance_sheet(t: &Totals) {
    check_balance_sheet_of(&config(), t);
}

fn check_balance_sheet_of(config: &Config, t: &Totals) {
    let held = [t.pool_sats, t.reserved_sats, t.absorbed_sats]
        .into_iter()
        .try_fold(Sats::ZERO, Sats::checked_add)
        .expect("I1: no overflow");
    assert_eq!(
        config.pool_initial_sats.checked_add(t.credited_sats),
        Some(held),
        "I2: initial + credits = pool + reserved + absorbed: {t:?}"
    );
}

/// A job of SPEC.md §0 against the shared ledger: returns the charge reduction it applied and
/// whether the request ended recorded (`true`) or released.
fn job(ledger: &SharedLedger, request_id: RequestId, pubkey: Pubkey, estimated: u64, actual: Option<u64>) -> Sats {
    let mut journal = Vec::new();
    let outcome = ledger.decide(request_id, pubkey, sats(estimated), NOW, &mut journal);
    let reduction = match outcome {
        Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }) => reserved_sats,
        Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, .. } }) => {
            match ledger.reserve_partial(request_id, pubkey, offer_sats, NOW, &mut journal) {
                Ok(Outcome::Reserved { reserved_sats }) => {
                    assert_eq!(reserved_sats, offer_sats, "I3: all or nothing");
                    reserved_sats
                }
                // Re-quoted: the user pays in full, nothing was debited.
                Err(_) => return Sats::ZERO,
                Ok(other) => panic!("reserve_partial: {other:?}"),
            }
        }
        Ok(Outcome::Decided { decision: Decision::Gate { .. } }) => return Sats::ZERO,
        other => panic!("decide: {other:?}"),
    };
    // I3: what the ledger debited for this request is what the charge is reduced by.
    let debited: Sats = journal
        .iter()
        .filter_map(|m| match *m {
            ledger_core::Movement::Debit { request_id: r, amount_sats, .. } if r == request_id => Some(amount_sats),
            _ => None,
        })
        .try_fold(Sats::ZERO, Sats::checked_add)
        .unwrap();
    assert_eq!(debited, reduction, "I3: charge reduction equals the debit");
    match actual {
        Some(actual) => {
            let recorded = ledger.record(request_id, sats(actual), NOW, &mut journal);
            assert!(matches!(recorded, Ok(Outcome::Recorded { .. })), "{recorded:?}");
        }
        None => {
            let released = ledger.release(request_id, &mut journal);
            assert!(matches!(released, Ok(Outcome::Released { .. })), "{released:?}");
        }
    }
    reduction
}

/// Two pubkeys that land in different shards of `ledger`, so the threads really run without a
/// common identity lock.
fn two_pubkeys_in_two_shards(ledger: &SharedLedger) -> (Pubkey, Pubkey) {
    let alice = ledger_harness::user_pubkey(0);
    let bob = (1..)
        .map(ledger_harness::user_pubkey)
        .find(|p| ledger.identity_shard_idx(p) != ledger.identity_shard_idx(&alice))
        .expect("some user lands in the other shard");
    (alice, bob)
}

#[test]
fn loom_shared_ledger_keeps_the_invariants() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTION_BOUND);
    builder.check(|| {
        let ledger = Arc::new(SharedLedger::with_shards(config(), 2));
        let (alice, bob) = two_pubkeys_in_two_shards(&ledger);
        ledger.set_tier(alice, Tier::Established, NOW);
        ledger.set_tier(bob, Tier::Established, NOW);

        let t1 = {
            let ledger = Arc::clone(&ledger);
            thread::spawn(move || job(&ledger, RequestId(1), alice, 40, Some(30)))
        };
        let t2 = {
            let ledger = Arc::clone(&ledger);
            thread::spawn(move || job(&ledger, RequestId(2), bob, 40, None))
        };
        let t3 = {
            let ledger = Arc::clone(&ledger);
            thread::spawn(move || {
                let mut journal = Vec::new();
                // A credit webhook delivered twice, and a snapshot while the jobs run.
                ledger.credit(PaymentId(7), sats(100), &mut journal).unwrap();
                check_balance_sheet(&ledger.totals());
                let again = ledger.credit(PaymentId(7), sats(100), &mut journal).unwrap();
                assert_eq!(again, Outcome::Credited { credited_sats: sats(10) });
                assert_eq!(journal.len(), 1, "I5: one credit per payment");
            })
        };
        let reduction_alice = t1.join().unwrap();
        let _reduction_bob = t2.join().unwrap();
        t3.join().unwrap();

        let totals = ledger.totals();
        check_balance_sheet(&totals);
        assert_eq!(totals.reserved_sats, Sats::ZERO, "I6: nothing left reserved");
        assert_eq!(totals.credited_sats, sats(10));
        // I5: alice's job is the only one recorded; its grant is all the absorption.
        assert_eq!(totals.n_grants, u64::from(!reduction_alice.is_zero()));
        assert_eq!(totals.absorbed_sats, reduction_alice.min(sats(30)));
        let budget = config().budget(Tier::Established);
        for pubkey in [alice, bob] {
            let identity = ledger.identity(&pubkey).unwrap();
            assert!(identity.sats_absorbed_today <= budget, "I4: {identity:?}");
        }
    });
}

/// A balance sheet taken on one thread while two credits land on others (the planted fault:
/// a snapshot that reads the credited total and the pool while a credit has moved one and not
/// yet the other). `totals` holds every payment shard, so it sees each credit whole or not at
/// all: I2 balances in every interleaving.
#[test]
fn loom_a_snapshot_while_credits_land_balances() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTION_BOUND);
    builder.check(|| {
        let ledger = Arc::new(SharedLedger::with_shards(config(), 2));
        let credits: Vec<_> = [(PaymentId(1), 100), (PaymentId(2), 250)]
            .into_iter()
            .map(|(payment_id, paid)| {
                let ledger = Arc::clone(&ledger);
                thread::spawn(move || ledger.credit(payment_id, sats(paid), &mut Vec::new()).unwrap())
            })
            .collect();
        let snapshot = {
            let ledger = Arc::clone(&ledger);
            thread::spawn(move || ledger.totals())
        };
        for t in credits {
            t.join().unwrap();
        }
        let snapshot = snapshot.join().unwrap();
        check_balance_sheet(&snapshot);
        assert!([0, 10, 25, 35].contains(&snapshot.credited_sats.to_u64()), "each credit whole or not: {snapshot:?}");
        let end = ledger.totals();
        check_balance_sheet(&end);
        assert_eq!(end.credited_sats, sats(35));
    });
}

/// Several reservations outstanding on one identity at once: three requests of 150 race for one
/// trusted budget (200): the first decided is free, the other two are offered 50 each and race
/// to take it up. Whatever the order, every reservation counts against the remaining the others
/// see: one offer is reserved, the other refused (I4: reserved never above the budget). A
/// `reserve_partial` that ignores outstanding reservations reserves both (250).
#[test]
fn loom_several_reservations_on_one_identity_stay_within_the_budget() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTION_BOUND);
    builder.check(|| {
        let rich = Config { pool_initial_sats: sats(1_000), ..config() };
        let ledger = Arc::new(SharedLedger::with_shards(rich, 2));
        let alice = ledger_harness::user_pubkey(0);
        ledger.set_tier(alice, Tier::Trusted, NOW);
        let threads: Vec<_> = [(RequestId(1), 150), (RequestId(2), 150), (RequestId(3), 150)]
            .into_iter()
            .map(|(request_id, estimated)| {
                let ledger = Arc::clone(&ledger);
                thread::spawn(move || {
                    let mut journal = Vec::new();
                    let reserved = match ledger.decide(request_id, alice, sats(estimated), NOW, &mut journal) {
                        Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }) => reserved_sats,
                        Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, .. } }) => {
                            match ledger.reserve_partial(request_id, alice, offer_sats, NOW, &mut journal) {
                                Ok(Outcome::Reserved { reserved_sats }) => reserved_sats,
                                Err(ledger_core::Refusal::InsufficientFunds { .. }) => Sats::ZERO,
                                other => panic!("reserve_partial: {other:?}"),
                            }
                        }
                        Ok(Outcome::Decided { decision: Decision::Gate { .. } }) => Sats::ZERO,
                        other => panic!("decide: {other:?}"),
                    };
                    let standing = ledger.identity(&alice).unwrap();
                    assert!(
                        standing.reserved_sats <= sats(200),
                        "I4: reservations outstanding at once pass the budget: {standing:?}"
                    );
                    reserved
                })
            })
            .collect();
        let reserved: Vec<Sats> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let total = reserved.iter().try_fold(Sats::ZERO, |a, b| a.checked_add(*b)).unwrap();
        let standing = ledger.identity(&alice).unwrap();
        assert_eq!(standing.reserved_sats, total, "the identity holds exactly what was reserved");
        assert_eq!(total, sats(200), "three requests of 150 against 200: 150 + 50, in some order");
        check_balance_sheet_of(&rich, &ledger.totals());
    });
}
