//! The seam that breaks one rule of `SPEC.md` ([`Variant::breaks`]) breaks it in exactly the
//! documented way, at the rule's own boundary.
//!
//! `ledger-harness`'s spec test holds every rule to a conformance case that catches the rule
//! broken; that proves the vectors see *a* break, not that the seam makes the break it says.
//! A seam that drifted (a window 1 ms short where it should be 1 ms long, a clock-back check
//! that also fires at the window's first millisecond) would measure the vectors against the
//! wrong mutant. These cases pin each seam where it sits on a boundary.

use ledger_core::command::Outcome;
use ledger_core::variant::Variant;
use ledger_core::{
    Bps, Command, Config, Decision, GateReason, Ledger, PaymentId, Pubkey, Refusal, RequestId, Rule, Sats, Tier,
    TimeMs, DAY_MS,
};

#[derive(Clone, Copy, Debug)]
struct Breaks(Rule);

impl Variant for Breaks {
    fn breaks(&self, rule: Rule) -> bool {
        rule == self.0
    }
}

fn s(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

const ALICE: Pubkey = Pubkey::from_bytes([1; 32]);
const BOB: Pubkey = Pubkey::from_bytes([2; 32]);

/// A ledger breaking `rule`, with Alice elite (a 1,000-sat day) and Bob elite.
fn ledger(rule: Rule, config: Config) -> Ledger<Breaks> {
    with_users(Ledger::with_variant(config, Breaks(rule)))
}

/// The same ledger following every rule.
fn exact(config: Config) -> Ledger {
    with_users(Ledger::new(config))
}

fn with_users<V: Variant>(mut l: Ledger<V>) -> Ledger<V> {
    for pubkey in [ALICE, BOB] {
        l.apply(&Command::SetTier { pubkey, tier: Tier::Elite }, TimeMs(0), &mut Vec::new()).unwrap();
    }
    l
}

fn rich() -> Config {
    Config { pool_initial_sats: s(1_000_000), ..Config::default() }
}

fn apply<V: Variant>(l: &mut Ledger<V>, command: Command, now: u64) -> Result<Outcome, Refusal> {
    l.apply(&command, TimeMs(now), &mut Vec::new())
}

fn decide<V: Variant>(
    l: &mut Ledger<V>,
    request: u64,
    pubkey: Pubkey,
    estimated: u64,
    now: u64,
) -> Result<Outcome, Refusal> {
    apply(l, Command::Decide { request_id: RequestId(request), pubkey, estimated_sats: s(estimated) }, now)
}

fn free(v: u64) -> Result<Outcome, Refusal> {
    Ok(Outcome::Decided { decision: Decision::Free { reserved_sats: s(v) } })
}

fn exhausted(v: u64) -> Result<Outcome, Refusal> {
    Ok(Outcome::Decided { decision: Decision::Gate { reason: GateReason::DailyBudgetExhausted, charge_sats: s(v) } })
}

/// Alice spends her whole day, absorbed at `at`, 24 h or more after her identity was made at
/// 0: her window opens at `at` (R-WINDOW-2).
fn spend_the_day<V: Variant>(l: &mut Ledger<V>, at: u64) {
    assert!(at >= DAY_MS);
    assert_eq!(decide(l, 1, ALICE, 1_000, at), free(1_000));
    apply(l, Command::Record { request_id: RequestId(1), actual_sats: s(1_000) }, at).unwrap();
}

#[test]
fn a_broken_window_is_one_millisecond_long() {
    let t = DAY_MS + 1_000;
    let mut exact = exact(rich());
    spend_the_day(&mut exact, t);
    assert_eq!(decide(&mut exact, 2, ALICE, 10, t + DAY_MS), free(10), "at exactly 24 h the window has ended");

    let mut broken = ledger(Rule::WindowLength, rich());
    spend_the_day(&mut broken, t);
    assert_eq!(decide(&mut broken, 2, ALICE, 10, t + DAY_MS), exhausted(10), "24 h + 1 ms: still the same day");
    assert_eq!(decide(&mut broken, 3, ALICE, 10, t + DAY_MS + 1), free(10));
}

#[test]
fn a_broken_clock_back_forgets_the_window_only_before_its_start() {
    let t = DAY_MS + 5_000;
    let mut exact = exact(rich());
    spend_the_day(&mut exact, t);
    assert_eq!(decide(&mut exact, 3, ALICE, 10, t - 1), exhausted(10), "a clock that went back keeps the window");
    let mut broken = ledger(Rule::WindowClockBack, rich());
    spend_the_day(&mut broken, t);
    assert_eq!(decide(&mut broken, 2, ALICE, 10, t), exhausted(10), "the window's first millisecond is inside it");
    assert_eq!(decide(&mut broken, 3, ALICE, 10, t - 1), free(10), "before the start the broken rule forgets it");
}

#[test]
fn a_broken_reuse_check_looks_at_the_estimate_first() {
    let mut broken = ledger(Rule::DecideReused, rich());
    assert_eq!(decide(&mut broken, 1, ALICE, 10, 0), free(10));
    assert_eq!(decide(&mut broken, 1, BOB, 10, 0), Err(Refusal::ExistsWithDifferentPubkey), "same estimate");
    assert_eq!(
        decide(&mut broken, 1, BOB, 11, 0),
        Err(Refusal::ExistsWithDifferentEstimate { estimated_sats: s(10) }),
        "another pubkey and another estimate: the broken order names the estimate"
    );
}

#[test]
fn a_broken_all_or_nothing_grants_what_is_available_and_no_more_than_asked() {
    // Alice has 60 left today: a partial of 100 is cut to 60, one of 30 stays 30.
    let mut broken = ledger(Rule::PartialAllOrNothing, rich());
    let gated = |l: &mut Ledger<Breaks>, request: u64| {
        let decided = decide(l, request, ALICE, 5_000, 0).unwrap();
        assert!(matches!(decided, Outcome::Decided { decision: Decision::Partial { .. } }), "{decided:?}");
    };
    assert_eq!(decide(&mut broken, 1, ALICE, 940, 0), free(940));
    gated(&mut broken, 2);
    let reserve = |request: u64, amount: u64| Command::ReservePartial {
        request_id: RequestId(request),
        pubkey: ALICE,
        amount_sats: s(amount),
    };
    assert_eq!(apply(&mut broken, reserve(2, 30), 0), Ok(Outcome::Reserved { reserved_sats: s(30) }));
    gated(&mut broken, 3);
    assert_eq!(apply(&mut broken, reserve(3, 100), 0), Ok(Outcome::Reserved { reserved_sats: s(30) }));
}

#[test]
fn a_broken_deadline_wraps_instead_of_capping() {
    let config = Config { reservation_ttl_ms: 10, ..rich() };
    let now = i64::MAX as u64 - 5;
    let mut broken = ledger(Rule::Deadline, config);
    assert_eq!(decide(&mut broken, 1, ALICE, 10, now), free(10));
    let deadline = broken.request(RequestId(1)).unwrap().reservation.unwrap().deadline;
    assert_eq!(deadline, TimeMs(4), "now + ttl wrapped past 2^63 - 1 to 4");
    let mut exact = exact(config);
    assert_eq!(decide(&mut exact, 1, ALICE, 10, now), free(10));
    // The exact sum, which SPEC allows instead of the cap: either way it never expires.
    assert_eq!(exact.request(RequestId(1)).unwrap().reservation.unwrap().deadline, TimeMs(i64::MAX as u64 + 5));
}

#[test]
fn a_broken_late_record_is_refused_only_strictly_after_the_deadline() {
    let config = Config { reservation_ttl_ms: 100, ..rich() };
    let mut broken = ledger(Rule::RecordAfterDeadline, config);
    assert_eq!(decide(&mut broken, 1, ALICE, 10, 0), free(10));
    assert_eq!(decide(&mut broken, 2, ALICE, 10, 0), free(10));
    let record = |request: u64| Command::Record { request_id: RequestId(request), actual_sats: s(10) };
    assert!(apply(&mut broken, record(1), 100).is_ok(), "at the deadline the record is on time");
    assert_eq!(apply(&mut broken, record(2), 101), Err(Refusal::ReservationExpired));
}

#[test]
fn a_broken_credit_rounds_up_only_what_is_not_exact() {
    let config = Config { credit_bps: Bps::new(1_250).unwrap(), ..rich() };
    let mut broken = ledger(Rule::CreditRounding, config);
    let credit = |payment: u64, paid: u64| Command::Credit { payment_id: PaymentId(payment), paid_sats: s(paid) };
    assert_eq!(apply(&mut broken, credit(1, 80), 0), Ok(Outcome::Credited { credited_sats: s(10) }), "exact");
    assert_eq!(apply(&mut broken, credit(2, 100), 0), Ok(Outcome::Credited { credited_sats: s(13) }), "12.5 up");
    assert_eq!(apply(&mut broken, credit(3, 7), 0), Ok(Outcome::Credited { credited_sats: s(1) }), "0.875 up");
}

#[test]
fn a_broken_strict_expiry_takes_the_reservation_due_now_and_none_later() {
    let config = Config { reservation_ttl_ms: 100, ..rich() };
    let mut broken = ledger(Rule::ExpireStrict, config);
    assert_eq!(decide(&mut broken, 1, ALICE, 10, 0), free(10));
    assert_eq!(decide(&mut broken, 2, ALICE, 10, 5), free(10));
    assert_eq!(
        apply(&mut broken, Command::Expire, 100),
        Ok(Outcome::Expired { released: vec![(RequestId(1), s(10))] }),
        "the deadline equal to now is taken, the one 5 ms later is not"
    );
}
