//! loom check of the real [`SharedLedger`] (built with `--cfg ledger_loom`, so its shard locks and
//! its atomic pool are loom's): three threads decide, reserve, record, release and credit at once
//! for two identities in two different shards, and a consistent snapshot taken mid-run and the end
//! state keep I1-I6. Two smaller models: a balance sheet taken on one thread while credits land
//! on others (a `totals` that does not hold the payment shards fails it: credited counted, pool
//! not yet), several reservations outstanding on one identity at once (a `reserve_partial`
//! that ignores outstanding reservations fails it: 250 reserved of a 200 budget), and one
//! reservation whose release is delivered twice while its record arrives (a release that checks
//! under one lock and closes under another closes it twice). Each of the five named mutants of
//! `src/mutants.rs` is run through the model that should catch it and must fail it. The snapshot
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
//! two others write. The mutants run at bound 2, a subset of those schedules.
#![cfg(ledger_loom)]

use ledger_concurrent::{SharedLedger, SharedMutant};
use ledger_core::{Config, Decision, Outcome, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, Totals};
use loom::sync::Arc;
use loom::thread;

/// Preemption bound of this model; see the module docs.
const PREEMPTION_BOUND: usize = 3;
const NOW: TimeMs = TimeMs(1_000);

/// Makes the ledger a model runs: the real one, or one that runs a named mutant.
type Make = std::sync::Arc<dyn Fn(Config, usize) -> SharedLedger + Send + Sync>;

fn real() -> Make {
    std::sync::Arc::new(SharedLedger::with_shards)
}

fn mutant(m: SharedMutant) -> Make {
    std::sync::Arc::new(move |config, n_shards| SharedLedger::with_mutant(config, n_shards, m))
}

fn builder(preemption_bound: usize) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemption_bound);
    builder
}

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
    three_jobs_and_a_credit(builder(PREEMPTION_BOUND), real());
}

fn three_jobs_and_a_credit(builder: loom::model::Builder, make: Make) {
    builder.check(move || {
        let ledger = Arc::new(make(config(), 2));
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
    a_snapshot_while_credits_land(builder(PREEMPTION_BOUND), real());
}

fn a_snapshot_while_credits_land(builder: loom::model::Builder, make: Make) {
    builder.check(move || {
        let ledger = Arc::new(make(config(), 2));
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
    several_reservations_on_one_identity(builder(PREEMPTION_BOUND), real());
}

fn several_reservations_on_one_identity(builder: loom::model::Builder, make: Make) {
    builder.check(move || {
        let rich = Config { pool_initial_sats: sats(1_000), ..config() };
        let ledger = Arc::new(make(rich, 2));
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

/// One free request whose release is delivered twice while its work's record arrives: exactly
/// one of the three closes the reservation (a second release answers as the first did, the
/// record after a release is refused, and the reverse), the sats go back or are absorbed once,
/// and nothing stays reserved (I5, I6, I2).
#[test]
fn loom_a_reservation_closes_once_under_racing_deliveries() {
    a_reservation_closes_once(builder(PREEMPTION_BOUND), real());
}

fn a_reservation_closes_once(builder: loom::model::Builder, make: Make) {
    builder.check(move || {
        let ledger = Arc::new(make(config(), 2));
        let alice = ledger_harness::user_pubkey(0);
        ledger.set_tier(alice, Tier::Established, NOW);
        let decided = ledger.decide(RequestId(1), alice, sats(20), NOW, &mut Vec::new());
        assert_eq!(decided, Ok(Outcome::Decided { decision: Decision::Free { reserved_sats: sats(20) } }));
        let releases: Vec<_> = (0..2)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                thread::spawn(move || {
                    let mut journal = Vec::new();
                    let released = ledger.release(RequestId(1), &mut journal);
                    (released.is_ok(), journal)
                })
            })
            .collect();
        let record = {
            let ledger = Arc::clone(&ledger);
            thread::spawn(move || {
                let mut journal = Vec::new();
                let recorded = ledger.record(RequestId(1), sats(15), NOW, &mut journal);
                (recorded.is_ok(), journal)
            })
        };
        let released: Vec<(bool, Vec<ledger_core::Movement>)> =
            releases.into_iter().map(|t| t.join().unwrap()).collect();
        let (recorded, record_journal) = record.join().unwrap();
        let moves = released.iter().map(|(_, j)| j.len()).sum::<usize>() + record_journal.len();
        assert_eq!(moves, 1, "I5: the reservation is closed by exactly one movement");
        assert!(recorded != released[0].0 && released[0].0 == released[1].0, "one kind of close wins");
        let totals = ledger.totals();
        check_balance_sheet(&totals);
        assert_eq!(totals.reserved_sats, Sats::ZERO, "I6: nothing left reserved");
        assert_eq!(totals.absorbed_sats, if recorded { sats(15) } else { Sats::ZERO });
    });
}

// Each named mutant of `SharedLedger` (src/mutants.rs) fails one of the models above, at a
// preemption bound of 2 (a subset of the schedules the real ledger passes at 3): a model that
// cannot tell a mutant from the real ledger is not checking what it claims.

/// `totals` without the payment shards: a snapshot sees a credit half applied (I2).
#[test]
#[should_panic(expected = "I2: initial + credits")]
fn loom_catches_totals_without_payment_shards() {
    a_snapshot_while_credits_land(builder(2), mutant(SharedMutant::TotalsWithoutPaymentShards));
}

/// `reserve_partial` ignoring outstanding reservations reserves 250 of a 200 budget (I4).
#[test]
#[should_panic(expected = "I4: reservations outstanding")]
fn loom_catches_partial_ignores_reservations() {
    several_reservations_on_one_identity(builder(2), mutant(SharedMutant::PartialIgnoresReservations));
}

/// A debit that loads then stores loses a movement that lands in between (I2).
#[test]
#[should_panic(expected = "I2: initial + credits")]
fn loom_catches_debit_load_then_store() {
    three_jobs_and_a_credit(builder(2), mutant(SharedMutant::DebitLoadThenStore));
}

/// A debit that checks, then subtracts in a second step takes the pool below what two debits
/// each checked (I1/I2).
#[test]
#[should_panic(expected = "I2: initial + credits")]
fn loom_catches_debit_check_then_subtract() {
    three_jobs_and_a_credit(builder(2), mutant(SharedMutant::DebitCheckThenSubtract));
}

/// A release that checks under one lock and closes under another closes twice (I5).
#[test]
#[should_panic(expected = "identity holds the reservation")]
fn loom_catches_release_checks_then_relocks() {
    a_reservation_closes_once(builder(2), mutant(SharedMutant::ReleaseChecksThenRelocks));
}
