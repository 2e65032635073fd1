//! The conformance vectors: hand-chosen situations and seeded random ones, run through the
//! reference engine and written as conformance traces (`ledger_harness::conformance`).
//!
//! Shared by the `gen_conformance` example (which writes `fixtures/conformance/`) and the
//! test that checks the committed files equal a fresh generation. Deterministic: no clock,
//! no hash-map iteration, one fixed-seed generator.
//!
//! Every hand-made command states the answer it is meant to get (`"decided:free"`,
//! `"insufficient_funds"`), and generation fails if the engine answers otherwise: a case
//! that no longer shows what its name says cannot be committed silently.

use ledger_core::{
    Budgets, Command, Config, Ledger, Outcome, PaymentId, Pubkey, Refusal, RequestId, Rule, Sats, Tier, TimeMs, DAY_MS,
};
use ledger_harness::conformance::{named_pubkey, write_string, Balances, Expect, Header, Step, MAX_NUMBER};

/// One generated file: its path under `fixtures/conformance/` and its bytes.
pub struct File {
    /// Relative path, `/`-separated.
    pub path: String,
    /// The contents (a bad-input file need not be UTF-8).
    pub bytes: Vec<u8>,
}

/// A realistic start of time (2023-11-14), so that times look like a service's.
const T0: u64 = 1_700_000_000_000;
const TTL: u64 = 600_000;

pub(crate) fn sats(v: u64) -> Sats {
    Sats::new(v).expect("amount in range")
}

pub(crate) fn user(i: u64) -> Pubkey {
    ledger_harness::user_pubkey(i)
}

/// The x coordinate of secp256k1's generator: a pubkey that looks like a real one.
pub(crate) fn real_key() -> Pubkey {
    "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798".parse().expect("valid hex")
}

pub(crate) fn tier(pubkey: Pubkey, tier: Tier) -> Command {
    Command::SetTier { pubkey, tier }
}
pub(crate) fn decide(id: u64, pubkey: Pubkey, est: u64) -> Command {
    Command::Decide { request_id: RequestId(id), pubkey, estimated_sats: sats(est) }
}
pub(crate) fn reserve(id: u64, pubkey: Pubkey, amount: u64) -> Command {
    Command::ReservePartial { request_id: RequestId(id), pubkey, amount_sats: sats(amount) }
}
pub(crate) fn release(id: u64) -> Command {
    Command::Release { request_id: RequestId(id) }
}
pub(crate) fn record(id: u64, actual: u64) -> Command {
    Command::Record { request_id: RequestId(id), actual_sats: sats(actual) }
}
pub(crate) fn credit(id: u64, paid: u64) -> Command {
    Command::Credit { payment_id: PaymentId(id), paid_sats: sats(paid) }
}
pub(crate) fn expire() -> Command {
    Command::Expire
}

/// `"decided:free"`, `"decided:gate:pool_empty"`, `"recorded"`, `"insufficient_funds"`...
pub fn label(result: &Result<Outcome, Refusal>) -> String {
    let v = match result {
        Ok(o) => serde_json::to_value(o),
        Err(r) => serde_json::to_value(r),
    }
    .expect("serializes");
    let head = v.get("outcome").or_else(|| v.get("refusal")).and_then(|s| s.as_str()).unwrap_or("?").to_owned();
    match v.get("decision") {
        Some(d) => {
            let serve = d["serve"].as_str().unwrap_or("?");
            match d.get("reason").and_then(|r| r.as_str()) {
                Some(reason) => format!("{head}:{serve}:{reason}"),
                None => format!("{head}:{serve}"),
            }
        }
        None => head,
    }
}

pub(crate) struct Gen {
    pub(crate) segments: Vec<(Header, Vec<Step>)>,
    pub(crate) ledger: Ledger,
    pub(crate) now: u64,
}

impl Gen {
    pub(crate) fn new() -> Gen {
        Gen { segments: Vec::new(), ledger: Ledger::new(Config::default()), now: T0 }
    }

    /// Starts a case from genesis at `T0`.
    pub(crate) fn case(&mut self, name: &str, description: &str, config: Config) {
        let header = Header { case: name.to_owned(), description: description.to_owned(), rules: Vec::new(), config };
        self.segments.push((header, Vec::new()));
        self.ledger = Ledger::new(config);
        self.now = T0;
    }

    /// Names the rules of SPEC.md that the open case pins.
    pub(crate) fn pins(&mut self, rules: &[Rule]) {
        let header = &mut self.segments.last_mut().expect("a case is open").0;
        header.rules = rules.iter().map(|r| r.id().to_owned()).collect();
    }

    /// Moves the clock to `now` for the next command.
    pub(crate) fn at(&mut self, now: u64) -> &mut Gen {
        self.now = now;
        self
    }

    /// Runs `command` now, records the step, and advances the clock by 1 ms.
    pub(crate) fn step(&mut self, command: Command) -> Result<Outcome, Refusal> {
        let now = TimeMs(self.now);
        let result = self.ledger.apply(&command, now, &mut Vec::new());
        let identity = named_pubkey(&command).and_then(|p| self.ledger.identity(&p)).map(Into::into);
        let step = Step {
            now,
            command,
            expect: Expect::from(result.clone()),
            totals: Balances::from(self.ledger.totals()),
            identity,
        };
        self.segments.last_mut().expect("a case is open").1.push(step);
        self.now += 1;
        result
    }

    /// Runs `command` and insists on the answer `want` (see [`label`]).
    pub(crate) fn run(&mut self, command: Command, want: &str) {
        let _ = self.run_get(command, want);
    }

    /// [`Gen::run`], returning the answer.
    pub(crate) fn run_get(&mut self, command: Command, want: &str) -> Result<Outcome, Refusal> {
        let case = self.segments.last().map(|s| s.0.case.clone()).unwrap_or_default();
        let result = self.step(command.clone());
        let got = label(&result);
        assert_eq!(got, want, "case {case}: {command:?} answered {result:?}");
        result
    }

    pub(crate) fn finish(self) -> (String, usize) {
        (write_string(&self.segments), self.segments.len())
    }
}

pub(crate) fn config() -> Config {
    Config::default()
}

pub(crate) fn with_pool(pool: u64) -> Config {
    Config { pool_initial_sats: sats(pool), ..Config::default() }
}

pub(crate) fn with_bps(bps: u16) -> Config {
    Config { credit_bps: ledger_core::Bps::new(bps).expect("rate"), ..Config::default() }
}

/// Every command, every outcome (every decision and gate reason), every refusal.
fn commands() -> Gen {
    let (a, b) = (user(1), user(2));
    let mut g = Gen::new();

    g.case("set_tier/create", "set_tier on a new pubkey creates the identity; its window starts now", config());
    g.pins(&[Rule::TierCreates]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(tier(real_key(), Tier::Elite), "tier_set");

    g.case("set_tier/change", "set_tier on an existing identity reports the previous tier", config());
    g.pins(&[Rule::TierChangesOnlyTier]);
    g.run(tier(a, Tier::New), "tier_set");
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(tier(a, Tier::Trusted), "tier_set");

    g.case("decide/free", "the pool and the daily remaining cover the estimate: debit and reserve it", config());
    g.pins(&[Rule::DecideFreeDebits]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");

    g.case("decide/partial-by-budget", "the tier's daily remaining covers only part of the estimate", config());
    g.pins(&[Rule::DecidePartialOffer]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");

    g.case("decide/partial-by-pool", "the pool covers only part of the estimate", with_pool(30));
    g.pins(&[Rule::DecidePartialOffer]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 100), "decided:partial");

    g.case("decide/partial-offers-nothing-debited", "a partial offer is advisory: nothing moves", config());
    g.pins(&[Rule::DecidePartialOffer]);
    g.run(tier(a, Tier::Trusted), "tier_set");
    g.run(decide(1, a, 500), "decided:partial");
    g.run(decide(2, a, 500), "decided:partial");

    g.case("decide/gate-unknown-identity", "no identity has the pubkey", config());
    g.pins(&[Rule::DecideUnknownIdentity, Rule::GateChargesAll]);
    g.run(decide(1, a, 10), "decided:gate:unknown_identity");

    g.case("decide/gate-zero-estimate", "an estimate of zero is gated whoever asks", config());
    g.pins(&[Rule::DecideZeroEstimateFirst]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 0), "decided:gate:zero_estimate");
    g.run(decide(2, b, 0), "decided:gate:zero_estimate");

    g.case("decide/gate-zero-budget", "the tier's budget is zero (new, by default)", config());
    g.pins(&[Rule::DecideZeroBudget, Rule::GateChargesAll]);
    g.run(tier(a, Tier::New), "tier_set");
    g.run(decide(1, a, 10), "decided:gate:zero_budget");

    g.case("decide/gate-daily-budget-exhausted", "recorded absorption has used the day's budget", config());
    g.pins(&[Rule::GateChargesAll]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 50), "decided:free");
    g.run(record(1, 50), "recorded");
    g.run(decide(2, a, 10), "decided:gate:daily_budget_exhausted");

    g.case(
        "decide/gate-exhausted-by-reservation",
        "an outstanding reservation counts against the daily remaining",
        config(),
    );
    g.pins(&[Rule::RemainingCountsReservations]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 50), "decided:free");
    g.run(decide(2, a, 1), "decided:gate:daily_budget_exhausted");

    g.case("decide/gate-pool-empty", "the pool holds nothing", with_pool(0));
    g.pins(&[Rule::DecidePoolEmpty]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 10), "decided:gate:pool_empty");

    g.case("decide/gate-pool-emptied", "free decisions empty the pool; the next is gated", with_pool(60));
    g.pins(&[Rule::DecidePoolEmpty, Rule::DecideFreeDebits]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 60), "decided:free");
    g.run(decide(2, a, 1), "decided:gate:pool_empty");

    g.case("reserve_partial/reserved", "a partial offer taken up, then recorded with an overrun", config());
    g.pins(&[Rule::PartialAllOrNothing, Rule::RecordSettles]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(record(1, 70), "recorded");

    g.case("reserve_partial/less-than-offered", "any amount up to what is available may be reserved", config());
    g.pins(&[Rule::PartialAllOrNothing, Rule::RemainingCountsReservations]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 20), "reserved");
    g.run(decide(2, a, 80), "decided:partial");
    g.run(reserve(2, a, 30), "reserved");

    g.case("reserve_partial/unknown-request", "reserve_partial needs a decision first", config());
    g.pins(&[Rule::PartialUnknownRequest]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(reserve(9, a, 10), "unknown_request");

    g.case("reserve_partial/different-pubkey", "the request was decided for another pubkey", config());
    g.pins(&[Rule::PartialOtherPubkey]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(tier(b, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, b, 10), "exists_with_different_pubkey");

    g.case("reserve_partial/reservation-exists-by-decide", "a free decision already reserved", config());
    g.pins(&[Rule::PartialRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(reserve(1, a, 40), "reservation_exists");

    g.case("reserve_partial/reservation-exists-other-amount", "a second reservation of another amount", config());
    g.pins(&[Rule::PartialRepeat]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 30), "reserved");
    g.run(reserve(1, a, 20), "reservation_exists");

    g.case("reserve_partial/zero-amount", "a zero reservation is refused", config());
    g.pins(&[Rule::PartialZeroAmount]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 0), "zero_amount");

    g.case("reserve_partial/amount-above-estimate", "more than the decided estimate", config());
    g.pins(&[Rule::PartialAboveEstimate]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 81), "amount_above_estimate");

    g.case("reserve_partial/insufficient-funds", "all or nothing: more than available reserves nothing", config());
    g.pins(&[Rule::PartialAllOrNothing]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 60), "insufficient_funds");

    g.case("reserve_partial/insufficient-after-race", "two offers, one budget: the second is refused", config());
    g.pins(&[Rule::RemainingCountsReservations]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(decide(2, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(reserve(2, a, 50), "insufficient_funds");

    g.case("reserve_partial/insufficient-pool", "the pool, not the budget, is short", with_pool(100));
    g.pins(&[Rule::PartialAllOrNothing]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(tier(b, Tier::Elite), "tier_set");
    g.run(decide(1, a, 150), "decided:partial");
    g.run(decide(2, b, 90), "decided:free");
    g.run(reserve(1, a, 100), "insufficient_funds");
    g.run(reserve(1, a, 10), "reserved");

    g.case("reserve_partial/unknown-identity", "decided for an unknown pubkey, still unknown", config());
    g.pins(&[Rule::PartialAfterAnyGate]);
    g.run(decide(1, a, 80), "decided:gate:unknown_identity");
    g.run(reserve(1, a, 10), "unknown_identity");

    g.case("release/released", "a free reservation returned to the pool", config());
    g.pins(&[Rule::ReleaseReturns]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(release(1), "released");

    g.case("release/partial-released", "a partial reservation returned to the pool", config());
    g.pins(&[Rule::ReleaseReturns]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(release(1), "released");
    g.run(decide(2, a, 50), "decided:free");

    g.case("release/unknown-request", "nothing was decided for the id", config());
    g.pins(&[Rule::ReleaseNotReserved]);
    g.run(release(5), "unknown_request");

    g.case("release/not-reserved", "a partial offer not taken up has no reservation", config());
    g.pins(&[Rule::ReleaseNotReserved]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(release(1), "not_reserved");

    g.case("release/already-recorded", "a recorded reservation cannot be released", config());
    g.pins(&[Rule::ReleaseSettled, Rule::ReleaseRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(record(1, 40), "recorded");
    g.run(release(1), "already_recorded");

    g.case("release/expired", "an expired reservation cannot be released", config());
    g.pins(&[Rule::ReleaseSettled]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.at(T0 + 1 + TTL + 1).run(expire(), "expired");
    g.run(release(1), "reservation_expired");

    for (name, actual, what) in [
        ("record/below-reservation", 25, "absorbed 25, 15 returned to the pool"),
        ("record/exact", 40, "absorbed 40, nothing returned"),
        ("record/overrun", 100, "absorbed 40, overrun 60 paid outside the pool"),
        ("record/zero-actual", 0, "absorbed 0, all returned, a grant of 0 written"),
    ] {
        g.case(name, what, config());
        g.pins(&[Rule::RecordSettles, Rule::RecordIsAGrant]);
        g.run(tier(a, Tier::Elite), "tier_set");
        g.run(decide(1, a, 40), "decided:free");
        g.run(record(1, actual), "recorded");
    }

    g.case("record/unknown-request", "nothing was decided for the id", config());
    g.pins(&[Rule::RecordNotOutstanding]);
    g.run(record(3, 10), "unknown_request");

    g.case("record/not-reserved", "a gated request has no reservation", config());
    g.pins(&[Rule::RecordNotOutstanding]);
    g.run(tier(a, Tier::New), "tier_set");
    g.run(decide(1, a, 40), "decided:gate:zero_budget");
    g.run(record(1, 40), "not_reserved");

    g.case("record/already-released", "a released reservation cannot be recorded", config());
    g.pins(&[Rule::RecordNotOutstanding]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(release(1), "released");
    g.run(record(1, 40), "already_released");

    g.case("record/reservation-expired", "an expired reservation cannot be recorded", config());
    g.pins(&[Rule::RecordNotOutstanding]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.at(T0 + 1 + TTL + 1).run(expire(), "expired");
    g.run(record(1, 40), "reservation_expired");

    g.case("record/different-amount", "a second record with another actual cost", config());
    g.pins(&[Rule::RecordRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(record(1, 30), "recorded");
    g.run(record(1, 31), "recorded_with_different_amount");

    g.case("credit/credited", "10 % of a paid invoice goes to the pool", config());
    g.pins(&[Rule::CreditRounding]);
    g.run(credit(1, 1000), "credited");
    g.run(credit(2, 250), "credited");

    g.case("credit/different-amount", "the same payment with another amount", config());
    g.pins(&[Rule::CreditRepeat]);
    g.run(credit(1, 1000), "credited");
    g.run(credit(1, 999), "payment_with_different_amount");

    g.case("expire/nothing", "expire with no reservation", config());
    g.pins(&[Rule::ExpireStrict]);
    g.run(expire(), "expired");

    g.case("expire/in-deadline-order", "expired reservations are listed by (deadline, request id)", config());
    g.pins(&[Rule::ExpireOrder]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(tier(b, Tier::Elite), "tier_set");
    g.at(T0 + 10).run(decide(7, a, 10), "decided:free");
    g.at(T0 + 10).run(decide(3, b, 20), "decided:free");
    g.at(T0 + 5).run(decide(9, a, 30), "decided:free");
    g.at(T0 + 20).run(decide(1, b, 40), "decided:free");
    g.at(T0 + 15 + TTL).run(expire(), "expired");
    g.at(T0 + 21 + TTL).run(expire(), "expired");

    g.case("overflow/credit", "a credit that would push the pool past 2^63-1", {
        Config { pool_initial_sats: Sats::MAX, credit_bps: ledger_core::Bps::FULL, ..config() }
    });
    g.pins(&[Rule::CreditOverflow]);
    g.run(credit(1, 0), "credited");
    g.run(credit(2, 1), "overflow");

    g.case("overflow/overrun-total", "the sum of overruns would pass 2^63-1", config());
    g.pins(&[Rule::RecordOverrunOverflow]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 10), "decided:free");
    g.run(record(1, MAX_NUMBER), "recorded");
    g.run(decide(2, a, 10), "decided:free");
    g.run(record(2, MAX_NUMBER), "overflow");
    g.run(record(2, 10), "recorded");

    g.case(
        "decide/gate-daily-before-pool",
        "the day is used up and the pool is empty: the day is named",
        with_pool(50),
    );
    g.pins(&[Rule::DecideDailyExhausted]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 50), "decided:free");
    g.run(record(1, 50), "recorded");
    g.run(decide(2, a, 10), "decided:gate:daily_budget_exhausted");

    g.case("reserve_partial/after-pool-empty-gate", "gated for an empty pool; credited; the offer taken up", {
        Config { credit_bps: ledger_core::Bps::FULL, ..with_pool(0) }
    });
    g.pins(&[Rule::PartialAfterAnyGate]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 30), "decided:gate:pool_empty");
    g.run(credit(1, 100), "credited");
    g.run(reserve(1, a, 30), "reserved");
    g.run(record(1, 30), "recorded");

    g.case("reserve_partial/after-daily-gate", "gated for the day; once the window ends, the offer taken up", config());
    g.pins(&[Rule::PartialAfterAnyGate, Rule::WindowLength]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 50), "decided:free");
    g.run(record(1, 50), "recorded");
    g.run(decide(2, a, 20), "decided:gate:daily_budget_exhausted");
    g.at(T0 + DAY_MS).run(reserve(2, a, 20), "reserved");

    g.case(
        "reserve_partial/zero-or-more-while-reserved",
        "a request holding a reservation: the amount is not judged",
        config(),
    );
    g.pins(&[Rule::PartialExistsBeforeAmount]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(reserve(1, a, 0), "reservation_exists");
    g.run(reserve(1, a, 41), "reservation_exists");
    g.run(decide(2, a, 990), "decided:partial");
    g.run(reserve(2, a, 10), "reserved");
    g.run(reserve(2, a, 0), "reservation_exists");
    g.run(reserve(2, a, 991), "reservation_exists");

    g.case("reserve_partial/pubkey-before-amount", "another pubkey and a bad amount: the pubkey is named", config());
    g.pins(&[Rule::PartialOtherPubkey]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(tier(b, Tier::Elite), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, b, 0), "exists_with_different_pubkey");
    g.run(reserve(1, b, 81), "exists_with_different_pubkey");
    g.run(reserve(1, b, 20), "exists_with_different_pubkey");

    g.case("overflow/credit-judged-on-genesis-plus-credits", "the pool has room, genesis + credits does not", {
        Config { pool_initial_sats: sats(MAX_NUMBER - 100), credit_bps: ledger_core::Bps::FULL, ..config() }
    });
    g.pins(&[Rule::CreditOverflow]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 1_000), "decided:free");
    g.run(record(1, 1_000), "recorded");
    g.run(credit(1, 500), "overflow");
    g.run(credit(1, 100), "credited");
    g.run(credit(2, 1), "overflow");
    g
}

/// Repeats of every command: same id and payload (first outcome, no change), other payload.
fn idempotency() -> Gen {
    let (a, b) = (user(1), user(2));
    let mut g = Gen::new();

    g.case("repeat/set_tier-same", "set_tier to the tier held changes nothing", config());
    g.pins(&[Rule::TierChangesOnlyTier]);
    g.run(tier(a, Tier::Trusted), "tier_set");
    g.run(tier(a, Tier::Trusted), "tier_set");

    g.case("repeat/decide-free-same", "a repeated free decide answers free and debits nothing", config());
    g.pins(&[Rule::DecideRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(decide(1, a, 40), "decided:free");
    g.run(decide(1, a, 40), "decided:free");

    g.case("repeat/decide-partial-same", "a repeated partial decide answers the first offer", config());
    g.pins(&[Rule::DecideRepeat]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(decide(1, a, 80), "decided:partial");

    g.case("repeat/decide-gate-same", "a repeated gated decide stays gated, even once it could be served", config());
    g.pins(&[Rule::DecideRepeat]);
    g.run(decide(1, a, 80), "decided:gate:unknown_identity");
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 80), "decided:gate:unknown_identity");
    g.run(decide(2, a, 80), "decided:free");

    g.case("repeat/decide-after-record", "a decide repeated after its record answers the first decision", config());
    g.pins(&[Rule::DecideRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(record(1, 40), "recorded");
    g.run(decide(1, a, 40), "decided:free");

    g.case("repeat/decide-other-estimate", "same request id, another estimate", config());
    g.pins(&[Rule::DecideReused]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(decide(1, a, 41), "exists_with_different_estimate");

    g.case("repeat/decide-other-pubkey", "same request id, another pubkey", config());
    g.pins(&[Rule::DecideReused]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(tier(b, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(decide(1, b, 40), "exists_with_different_pubkey");
    g.run(decide(1, b, 41), "exists_with_different_pubkey");

    g.case("repeat/decide-gate-other-estimate", "a gated request keeps its estimate too", config());
    g.pins(&[Rule::DecideReused]);
    g.run(decide(1, a, 10), "decided:gate:unknown_identity");
    g.run(decide(1, a, 11), "exists_with_different_estimate");

    g.case("repeat/reserve-same", "a repeated reserve_partial of the same amount", config());
    g.pins(&[Rule::PartialRepeat]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(reserve(1, a, 50), "reserved");

    g.case("repeat/reserve-other-amount", "a repeated reserve_partial of another amount", config());
    g.pins(&[Rule::PartialRepeat]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(reserve(1, a, 49), "reservation_exists");

    g.case("repeat/reserve-after-record", "a reserve_partial repeated after the record answers the first", config());
    g.pins(&[Rule::PartialRepeat]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(record(1, 50), "recorded");
    g.run(reserve(1, a, 50), "reserved");

    g.case(
        "repeat/reserve-refused-stays-refused",
        "a refused reserve_partial delivered again is refused again with the first answer, even once funds are back",
        config(),
    );
    g.pins(&[Rule::PartialRefusalMemory]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(decide(2, a, 50), "decided:free");
    g.run(reserve(1, a, 30), "insufficient_funds");
    g.run(release(2), "released");
    g.run(reserve(1, a, 30), "insufficient_funds");
    g.run(reserve(1, a, 29), "reserved");

    g.case("repeat/release-same", "a second release returns the first answer and moves nothing", config());
    g.pins(&[Rule::ReleaseRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(release(1), "released");
    g.run(release(1), "released");

    g.case("repeat/record-same", "a repeated record answers the first and absorbs once", config());
    g.pins(&[Rule::RecordRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(record(1, 30), "recorded");
    g.run(record(1, 30), "recorded");

    g.case("repeat/record-same-overrun", "a repeated record with an overrun reports it once in the totals", config());
    g.pins(&[Rule::RecordRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(record(1, 90), "recorded");
    g.run(record(1, 90), "recorded");

    g.case("repeat/record-other-amount", "a repeated record with another actual cost", config());
    g.pins(&[Rule::RecordRepeat]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(record(1, 30), "recorded");
    g.run(record(1, 40), "recorded_with_different_amount");

    g.case("repeat/credit-same", "a webhook delivered twice credits once", config());
    g.pins(&[Rule::CreditRepeat]);
    g.run(credit(1, 1000), "credited");
    g.run(credit(1, 1000), "credited");

    g.case("repeat/credit-other-amount", "the same payment id with another amount", config());
    g.pins(&[Rule::CreditRepeat]);
    g.run(credit(1, 1000), "credited");
    g.run(credit(1, 2000), "payment_with_different_amount");
    g.run(credit(1, 1000), "credited");

    g.case("repeat/credit-zero-share", "a credit of nothing is still remembered", config());
    g.pins(&[Rule::CreditRemembered]);
    g.run(credit(1, 9), "credited");
    g.run(credit(1, 10), "payment_with_different_amount");

    g.case("repeat/expire-twice", "a second expire finds nothing", config());
    g.pins(&[Rule::ExpireReturns]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.at(T0 + 2 + TTL).run(expire(), "expired");
    g.run(expire(), "expired");

    g.case("repeat/refusal-repeated", "a refused command repeated is refused again, unchanged", config());
    g.pins(&[Rule::RecordNotOutstanding]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(release(1), "released");
    g.run(record(1, 40), "already_released");
    g.run(record(1, 40), "already_released");

    g.case(
        "repeat/decide-other-pubkey-and-estimate",
        "a reused request id, another pubkey and estimate: the pubkey is named",
        config(),
    );
    g.pins(&[Rule::DecideReused]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(tier(b, Tier::Elite), "tier_set");
    g.run(decide(1, a, 10), "decided:free");
    g.run(decide(1, b, 20), "exists_with_different_pubkey");
    g.run(decide(1, a, 20), "exists_with_different_estimate");

    g.case(
        "repeat/refusals-remembered-per-amount",
        "every refused amount stays refused; another amount is judged afresh",
        config(),
    );
    g.pins(&[Rule::PartialRefusalMemory]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(decide(2, a, 40), "decided:free");
    g.run(reserve(1, a, 30), "insufficient_funds");
    g.run(reserve(1, a, 20), "insufficient_funds");
    g.run(release(2), "released");
    g.run(reserve(1, a, 20), "insufficient_funds");
    g.run(reserve(1, a, 30), "insufficient_funds");
    g.run(reserve(1, a, 25), "reserved");

    g.case(
        "repeat/unknown-identity-forgotten",
        "refused for an unknown identity; once it exists, the same command succeeds",
        config(),
    );
    g.pins(&[Rule::RefusalsForgotten, Rule::PartialIdentityNow, Rule::PartialAfterAnyGate]);
    g.run(decide(1, b, 10), "decided:gate:unknown_identity");
    g.run(reserve(1, b, 10), "unknown_identity");
    g.run(tier(b, Tier::Elite), "tier_set");
    g.run(reserve(1, b, 10), "reserved");

    g.case(
        "repeat/not-reserved-forgotten",
        "a release refused before the reservation exists is judged afresh after",
        config(),
    );
    g.pins(&[Rule::RefusalsForgotten]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(release(1), "not_reserved");
    g.run(record(1, 10), "not_reserved");
    g.run(reserve(1, a, 50), "reserved");
    g.run(release(1), "released");

    g.case(
        "repeat/reserve-same-after-release",
        "a reserve_partial repeated after its reservation was released answers reserved, moving nothing",
        config(),
    );
    g.pins(&[Rule::PartialRepeat]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.run(release(1), "released");
    g.run(reserve(1, a, 50), "reserved");
    g.run(reserve(1, a, 40), "reservation_exists");

    g.case(
        "repeat/reserve-same-after-expiry",
        "a reserve_partial repeated after its reservation expired answers reserved, moving nothing",
        config(),
    );
    g.pins(&[Rule::PartialRepeat]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(reserve(1, a, 50), "reserved");
    g.at(T0 + 10 + TTL).run(expire(), "expired");
    g.run(reserve(1, a, 50), "reserved");

    g.case(
        "repeat/reservation-exists-before-a-remembered-refusal",
        "once the request holds a reservation, an amount refused insufficient_funds earlier is answered reservation_exists",
        config(),
    );
    g.pins(&[Rule::PartialRepeat, Rule::PartialRefusalMemory]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(decide(2, a, 40), "decided:free");
    g.run(reserve(1, a, 30), "insufficient_funds");
    g.run(release(2), "released");
    g.run(reserve(1, a, 20), "reserved");
    g.run(reserve(1, a, 30), "reservation_exists");

    g.case(
        "repeat/credit-at-the-limit",
        "a credit that took the pool to 2^63-1, repeated: its first answer, not overflow",
        Config { credit_bps: ledger_core::Bps::FULL, pool_initial_sats: Sats::ZERO, ..config() },
    );
    g.pins(&[Rule::CreditRepeat, Rule::CreditOverflow]);
    g.run(credit(1, MAX_NUMBER), "credited");
    g.run(credit(1, MAX_NUMBER), "credited");
    g.run(credit(1, 5), "payment_with_different_amount");
    g.run(credit(2, 1), "overflow");

    g.case(
        "repeat/record-at-the-overrun-limit",
        "a record whose overrun took the total to its limit, repeated: its first answer, not overflow",
        config(),
    );
    g.pins(&[Rule::RecordRepeat, Rule::RecordOverrunOverflow]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 10), "decided:free");
    g.run(record(1, MAX_NUMBER), "recorded");
    g.run(record(1, MAX_NUMBER), "recorded");
    g.run(record(1, 5), "recorded_with_different_amount");
    g
}

/// The daily window: 24 h from `absorbed_reset_at`, exactly at the boundary and 1 ms either side.
fn daily_window() -> Gen {
    let a = user(1);
    let mut g = Gen::new();
    // The identity is created at T0, absorbs 30 of 50 at T0 + 10; the window runs from T0.
    let opening = |g: &mut Gen| {
        g.run(tier(a, Tier::Established), "tier_set");
        g.at(T0 + 10).run(decide(1, a, 30), "decided:free");
        g.run(record(1, 30), "recorded");
    };
    for (name, offset, want) in [
        ("window/minus-1ms", DAY_MS - 1, "decided:partial"),
        ("window/exactly-24h", DAY_MS, "decided:free"),
        ("window/plus-1ms", DAY_MS + 1, "decided:free"),
    ] {
        g.case(name, "30 of 50 absorbed in the window that opened at creation; decide 30 near its end", config());
        g.pins(&[Rule::WindowLength]);
        opening(&mut g);
        g.at(T0 + offset).run(decide(2, a, 30), want);
    }
    for (name, offset, want) in [
        ("window/reserve-minus-1ms", DAY_MS - 1, "insufficient_funds"),
        ("window/reserve-exactly-24h", DAY_MS, "reserved"),
        ("window/reserve-plus-1ms", DAY_MS + 1, "reserved"),
    ] {
        g.case(name, "a partial offer of 20 taken up for 40 near the window's end", config());
        g.pins(&[Rule::WindowLength, Rule::PartialAllOrNothing]);
        opening(&mut g);
        g.at(T0 + 100).run(decide(2, a, 60), "decided:partial");
        g.at(T0 + offset).run(reserve(2, a, 40), want);
    }
    for (name, offset, want) in [
        ("window/exhausted-minus-1ms", DAY_MS - 1, "decided:gate:daily_budget_exhausted"),
        ("window/exhausted-exactly-24h", DAY_MS, "decided:free"),
        ("window/exhausted-plus-1ms", DAY_MS + 1, "decided:free"),
    ] {
        g.case(name, "the whole budget absorbed; gated until 24 h after the window opened", config());
        g.pins(&[Rule::WindowLength, Rule::DecideDailyExhausted]);
        g.run(tier(a, Tier::Established), "tier_set");
        g.run(decide(1, a, 50), "decided:free");
        g.run(record(1, 50), "recorded");
        g.at(T0 + offset).run(decide(2, a, 50), want);
    }
    g.case(
        "window/restarts-at-first-absorption",
        "after the window ran out, the next absorption opens a new one at its own time",
        config(),
    );
    g.pins(&[Rule::WindowOpensAtAbsorption]);
    opening(&mut g);
    let t1 = T0 + DAY_MS + 5_000;
    g.at(t1).run(decide(2, a, 40), "decided:free");
    g.run(record(2, 40), "recorded");
    g.at(t1 + 1 + DAY_MS - 1).run(decide(3, a, 20), "decided:partial");
    g.at(t1 + 1 + DAY_MS).run(decide(4, a, 20), "decided:free");

    g.case(
        "window/decide-does-not-restart",
        "a free decide after the window ran out does not open a new window; the record does",
        config(),
    );
    g.pins(&[Rule::WindowOpensAtAbsorption]);
    opening(&mut g);
    let t1 = T0 + DAY_MS + 100;
    g.at(t1).run(decide(2, a, 50), "decided:free");
    g.at(t1 + 60_000).run(record(2, 20), "recorded");
    g.at(t1 + 60_000 + DAY_MS - 1).run(decide(3, a, 50), "decided:partial");

    g.case("window/zero-record-does-not-restart", "a record absorbing 0 leaves the window as it was", config());
    g.pins(&[Rule::WindowZeroAbsorption, Rule::RecordIsAGrant]);
    opening(&mut g);
    g.at(T0 + DAY_MS + 10).run(decide(2, a, 5), "decided:free");
    g.run(record(2, 0), "recorded");
    g.at(T0 + DAY_MS + 20).run(decide(3, a, 50), "decided:free");

    g.case(
        "window/reservation-survives-the-boundary",
        "an outstanding reservation still counts after the window runs out",
        Config { reservation_ttl_ms: 2 * DAY_MS, ..config() },
    );
    g.pins(&[Rule::RemainingCountsEarlierReservations]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.at(T0 + DAY_MS + 1).run(decide(2, a, 20), "decided:partial");
    g.run(record(1, 40), "recorded");
    g.run(decide(3, a, 10), "decided:free");

    g.case(
        "window/record-across-boundary",
        "reserved in one window, recorded in the next: the absorption opens the new window",
        config(),
    );
    g.pins(&[Rule::WindowOpensAtAbsorption, Rule::WindowLength]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.at(T0 + DAY_MS - 10).run(decide(1, a, 50), "decided:free");
    g.at(T0 + DAY_MS + 10).run(record(1, 50), "recorded");
    g.run(decide(2, a, 1), "decided:gate:daily_budget_exhausted");
    g.at(T0 + 2 * DAY_MS + 10).run(decide(3, a, 1), "decided:free");

    g.case("window/starts-at-creation", "the first window opens when the identity is created", config());
    g.pins(&[Rule::TierCreates]);
    g.at(T0 - DAY_MS).run(tier(a, Tier::Established), "tier_set");
    g.at(T0 - DAY_MS + 10).run(decide(1, a, 50), "decided:free");
    g.run(record(1, 50), "recorded");
    g.at(T0 - 1).run(decide(2, a, 50), "decided:gate:daily_budget_exhausted");
    g.at(T0).run(decide(3, a, 50), "decided:free");

    g.case("window/absorptions-add-up", "two records in one window: the window holds their sum", config());
    g.pins(&[Rule::WindowAddsUp]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 10), "decided:free");
    g.run(record(1, 10), "recorded");
    g.run(decide(2, a, 20), "decided:free");
    g.run(record(2, 20), "recorded");
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(3, a, 30), "decided:partial");

    g.case("window/clock-back-keeps-the-window", "a now before the window opened is inside it", config());
    g.pins(&[Rule::WindowClockBack]);
    g.at(T0 + 3_600_000).run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 30), "decided:free");
    g.run(record(1, 30), "recorded");
    g.at(T0).run(decide(2, a, 30), "decided:partial");
    g.run(tier(a, Tier::Established), "tier_set");

    g.case(
        "window/clock-back-record",
        "a record timed before the window opened absorbs into that window; it opens no other",
        config(),
    );
    g.pins(&[Rule::WindowClockBack, Rule::WindowAddsUp]);
    g.at(T0 + 3_600_000).run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 30), "decided:free");
    g.run(record(1, 30), "recorded");
    g.run(decide(2, a, 20), "decided:free");
    g.at(T0).run(record(2, 20), "recorded");
    g.at(T0 + 3_600_000 + 10).run(decide(3, a, 10), "decided:gate:daily_budget_exhausted");

    g.case(
        "window/clock-back-more-than-a-day",
        "a now more than 24 h before the window opened is still inside it",
        config(),
    );
    g.pins(&[Rule::WindowClockBack]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 50), "decided:free");
    g.run(record(1, 50), "recorded");
    g.at(T0 - 2 * DAY_MS).run(decide(2, a, 10), "decided:gate:daily_budget_exhausted");

    g.case(
        "window/record-exactly-24h",
        "a record exactly 24 h after the window opened opens a new window holding what it absorbs",
        config(),
    );
    g.pins(&[Rule::WindowLength, Rule::WindowOpensAtAbsorption]);
    opening(&mut g);
    g.at(T0 + DAY_MS).run(decide(2, a, 40), "decided:free");
    g.at(T0 + DAY_MS).run(record(2, 40), "recorded");
    g.at(T0 + DAY_MS + 1).run(decide(3, a, 20), "decided:partial");
    g
}

/// Credits round down: floor(paid * bp / 10000), per payment, never on the sum.
fn credit_rounding() -> Gen {
    let mut g = Gen::new();
    let paid = [0, 1, 9, 10, 11, 19, 99, 100, 101, 333, 9_999, 12_345, 1_000_003];
    for bps in [1_000, 0, 1, 333, 1_234, 5_000, 9_999, 10_000] {
        g.case(&format!("credit/rounding-{bps}bp"), "each payment credits floor(paid * bp / 10000)", with_bps(bps));
        g.pins(&[Rule::CreditRounding]);
        for (i, p) in paid.iter().enumerate() {
            g.run(credit(i as u64 + 1, *p), "credited");
        }
    }
    g.case("credit/floor-per-payment", "ten payments of 9 at 10 % credit 0 each, not 9 in all", config());
    g.pins(&[Rule::CreditRounding]);
    for i in 0..10 {
        g.run(credit(i + 1, 9), "credited");
    }
    g.case("credit/max-paid", "the largest payment at 10 % and at 99.99 %", config());
    g.pins(&[Rule::CreditRounding]);
    g.run(credit(1, MAX_NUMBER), "credited");
    g.case("credit/max-paid-9999bp", "floor((2^63-1) * 9999 / 10000), computed without overflow", with_bps(9_999));
    g.pins(&[Rule::CreditRounding]);
    g.run(credit(1, MAX_NUMBER), "credited");
    g.case("credit/then-spent", "credited sats can be granted", with_pool(0));
    g.pins(&[Rule::CreditRounding]);
    g.run(tier(user(1), Tier::Elite), "tier_set");
    g.run(decide(1, user(1), 5), "decided:gate:pool_empty");
    g.run(credit(1, 79), "credited");
    g.run(decide(2, user(1), 5), "decided:free");
    g.run(decide(3, user(1), 5), "decided:partial");
    g
}

/// Tier changes mid-window: the budget of the tier held at each decision applies.
fn tier_changes() -> Gen {
    let a = user(1);
    let mut g = Gen::new();

    g.case("tier/downgrade-after-absorbing", "elite absorbed 500, then decays to established (50)", config());
    g.pins(&[Rule::BudgetOfCurrentTier]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 500), "decided:free");
    g.run(record(1, 500), "recorded");
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(2, a, 10), "decided:gate:daily_budget_exhausted");
    g.run(tier(a, Tier::Trusted), "tier_set");
    g.run(decide(3, a, 10), "decided:gate:daily_budget_exhausted");
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(4, a, 10), "decided:free");

    g.case("tier/upgrade-after-exhausting", "established used 50, then grows to trusted (200)", config());
    g.pins(&[Rule::BudgetOfCurrentTier]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 50), "decided:free");
    g.run(record(1, 50), "recorded");
    g.run(decide(2, a, 10), "decided:gate:daily_budget_exhausted");
    g.run(tier(a, Tier::Trusted), "tier_set");
    g.run(decide(3, a, 200), "decided:partial");
    g.run(decide(4, a, 150), "decided:free");

    g.case("tier/upgrade-between-decide-and-reserve", "the offer was 50; at reserve time 80 is available", config());
    g.pins(&[Rule::BudgetOfCurrentTier]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(reserve(1, a, 80), "reserved");

    g.case("tier/downgrade-between-decide-and-reserve", "the offer was 200; at reserve time 50 is", config());
    g.pins(&[Rule::BudgetOfCurrentTier]);
    g.run(tier(a, Tier::Trusted), "tier_set");
    g.run(decide(1, a, 300), "decided:partial");
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(reserve(1, a, 200), "insufficient_funds");
    g.run(reserve(1, a, 50), "reserved");

    g.case("tier/downgrade-to-new-with-reservation", "a reservation made before the decay is recorded", config());
    g.pins(&[Rule::BudgetOfCurrentTier]);
    g.run(tier(a, Tier::Trusted), "tier_set");
    g.run(decide(1, a, 150), "decided:free");
    g.run(tier(a, Tier::New), "tier_set");
    g.run(decide(2, a, 10), "decided:gate:zero_budget");
    g.run(record(1, 150), "recorded");
    g.run(tier(a, Tier::Trusted), "tier_set");
    g.run(decide(3, a, 60), "decided:partial");

    g.case("tier/change-does-not-reset-window", "set_tier keeps the window and its absorption", config());
    g.pins(&[Rule::TierChangesOnlyTier]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.run(record(1, 40), "recorded");
    g.at(T0 + DAY_MS / 2).run(tier(a, Tier::New), "tier_set");
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(2, a, 20), "decided:partial");
    g.at(T0 + DAY_MS).run(decide(3, a, 20), "decided:free");

    g.case(
        "tier/change-mid-window-then-boundary",
        "downgraded mid-window, the next window uses the new tier",
        config(),
    );
    g.pins(&[Rule::TierChangesOnlyTier, Rule::WindowLength]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 300), "decided:free");
    g.run(record(1, 300), "recorded");
    g.at(T0 + 3_600_000).run(tier(a, Tier::Established), "tier_set");
    g.at(T0 + DAY_MS + 1).run(decide(2, a, 300), "decided:partial");
    g
}

/// Reservation deadlines: `expire` releases reservations whose deadline is before `now`.
fn deadlines() -> Gen {
    let (a, b) = (user(1), user(2));
    let mut g = Gen::new();
    for (name, offset, want_released) in [
        ("deadline/expire-minus-1ms", TTL - 1, false),
        ("deadline/expire-at-deadline", TTL, false),
        ("deadline/expire-plus-1ms", TTL + 1, true),
    ] {
        g.case(name, "a free reservation made at T0 + 1 with a 10 min TTL; expire near its deadline", config());
        g.pins(&[Rule::ExpireStrict]);
        g.run(tier(a, Tier::Elite), "tier_set");
        let t = g.now;
        g.run(decide(1, a, 40), "decided:free");
        let result = g.at(t + offset).run_get(expire(), "expired");
        let released = matches!(result, Ok(Outcome::Expired { ref released }) if !released.is_empty());
        assert_eq!(released, want_released, "{name}");
    }
    g.case("deadline/record-after-deadline-before-expire", "a late record before expire runs still counts", config());
    g.pins(&[Rule::RecordAfterDeadline]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.at(T0 + 1 + 3 * TTL).run(record(1, 35), "recorded");
    g.run(expire(), "expired");

    g.case("deadline/release-after-deadline-before-expire", "a late release before expire runs", config());
    g.pins(&[Rule::ReleaseReturns]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.at(T0 + 1 + 3 * TTL).run(release(1), "released");
    g.run(expire(), "expired");

    g.case(
        "deadline/partial-from-reserve-time",
        "a partial reservation's deadline runs from reserve_partial",
        config(),
    );
    g.pins(&[Rule::Deadline, Rule::ExpireStrict]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 80), "decided:partial");
    g.at(T0 + TTL).run(reserve(1, a, 50), "reserved");
    g.at(T0 + 2 * TTL).run(expire(), "expired");
    g.at(T0 + 2 * TTL + 1).run(expire(), "expired");
    g.run(record(1, 50), "reservation_expired");

    g.case("deadline/expire-returns-budget", "an expired reservation no longer counts against the day", config());
    g.pins(&[Rule::ExpireReturns]);
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 50), "decided:free");
    g.run(decide(2, a, 50), "decided:gate:daily_budget_exhausted");
    g.at(T0 + 2 + TTL).run(expire(), "expired");
    g.run(decide(3, a, 50), "decided:free");

    g.case("deadline/mixed", "some recorded, some released, some expired, in one expire", config());
    g.pins(&[Rule::ExpireReturns, Rule::ExpireOrder]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(tier(b, Tier::Trusted), "tier_set");
    for i in 1..=6 {
        let who = if i % 2 == 0 { a } else { b };
        g.at(T0 + 100 * i).run(decide(i, who, 10 * i), "decided:free");
    }
    g.run(record(2, 5), "recorded");
    g.run(release(3), "released");
    g.at(T0 + 450 + TTL).run(expire(), "expired");
    g.at(T0 + 10 * TTL).run(expire(), "expired");

    g.case("deadline/ttl-1ms", "the shortest TTL: expired 2 ms after the reservation", {
        Config { reservation_ttl_ms: 1, ..config() }
    });
    g.pins(&[Rule::Deadline, Rule::ExpireStrict]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.at(T0 + 10).run(decide(1, a, 40), "decided:free");
    g.at(T0 + 11).run(expire(), "expired");
    g.at(T0 + 12).run(expire(), "expired");

    g.case("deadline/clock-backwards", "expire at a time before the deadline releases nothing", config());
    g.pins(&[Rule::ExpireStrict]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.at(T0 + 1000).run(decide(1, a, 40), "decided:free");
    g.at(T0).run(expire(), "expired");

    g.case("deadline/beyond-the-end-of-time", "now + TTL past 2^63-1: the reservation never expires", config());
    g.pins(&[Rule::Deadline]);
    g.at(MAX_NUMBER - 10).run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 40), "decided:free");
    g.at(MAX_NUMBER).run(expire(), "expired");
    g
}

/// Amounts, ids and times at the BIGINT limit (2^63 - 1). Beyond it, see `bad-input/`.
fn limits() -> Gen {
    let a = user(1);
    let max = MAX_NUMBER;
    let mut g = Gen::new();
    let rich = Config {
        budget_sats: Budgets { new: Sats::MAX, established: Sats::MAX, trusted: Sats::MAX, elite: Sats::MAX },
        pool_initial_sats: Sats::MAX,
        ..config()
    };
    g.case("limits/max-pool-max-budget", "a pool and budgets of 2^63-1; a free request of all of it", rich);
    g.pins(&[Rule::DecideFreeDebits]);
    g.run(tier(a, Tier::New), "tier_set");
    g.run(decide(1, a, max), "decided:free");
    g.run(decide(2, a, 1), "decided:gate:daily_budget_exhausted");
    g.run(record(1, max), "recorded");
    g.run(decide(3, a, 1), "decided:gate:daily_budget_exhausted");

    g.case("limits/max-estimate", "an estimate of 2^63-1 against the default budgets", config());
    g.pins(&[Rule::RecordSettles]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, max), "decided:partial");
    g.run(reserve(1, a, 1_000), "reserved");
    g.run(record(1, max), "recorded");

    g.case("limits/max-reserve-refused", "a reserve_partial of 2^63-1 is refused, all or nothing", config());
    g.pins(&[Rule::PartialAllOrNothing]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, max), "decided:partial");
    g.run(reserve(1, a, max), "insufficient_funds");

    g.case("limits/max-ids", "request and payment ids of 2^63-1", config());
    g.pins(&[Rule::DecideFreeDebits]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(max, a, 40), "decided:free");
    g.run(record(max, 40), "recorded");
    g.run(credit(max, 100), "credited");
    g.run(credit(0, 100), "credited");
    g.run(decide(0, a, 40), "decided:free");

    g.case("limits/max-time", "a reservation whose deadline is exactly 2^63-1", config());
    g.pins(&[Rule::Deadline, Rule::ExpireStrict]);
    g.at(max - TTL - 10).run(tier(a, Tier::Elite), "tier_set");
    g.at(max - TTL).run(decide(1, a, 40), "decided:free");
    g.at(max).run(expire(), "expired");
    g.at(max).run(decide(2, a, 40), "decided:free");

    g.case("limits/zero-everything", "budgets, pool and rate of zero", {
        Config {
            budget_sats: Budgets { new: Sats::ZERO, established: Sats::ZERO, trusted: Sats::ZERO, elite: Sats::ZERO },
            pool_initial_sats: Sats::ZERO,
            credit_bps: ledger_core::Bps::new(0).expect("zero"),
            ..config()
        }
    });
    g.pins(&[Rule::DecideZeroBudget]);
    g.at(0).run(tier(a, Tier::Elite), "tier_set");
    g.at(0).run(decide(0, a, 1), "decided:gate:zero_budget");
    g.at(0).run(credit(0, max), "credited");

    g.case("limits/credit-max-full-rate", "a credit of 2^63-1 at 100 % into a non-empty pool overflows", {
        Config { credit_bps: ledger_core::Bps::FULL, ..config() }
    });
    g.pins(&[Rule::CreditOverflow]);
    g.run(credit(1, max - 10_000), "credited");
    g.run(credit(2, 1), "overflow");
    g.run(credit(3, 0), "credited");

    g.case("limits/credited-total", "credits up to exactly 2^63-1 in the pool", {
        Config { credit_bps: ledger_core::Bps::FULL, pool_initial_sats: Sats::ZERO, ..config() }
    });
    g.pins(&[Rule::CreditOverflow]);
    g.run(credit(1, max / 2), "credited");
    g.run(credit(2, max / 2), "credited");
    g.run(credit(3, 1), "credited");
    g.run(credit(4, 1), "overflow");

    g.case(
        "limits/window-near-max-time",
        "a window that opened less than 24 h before 2^63-1 ms still counts what it absorbed",
        config(),
    );
    g.pins(&[Rule::WindowLength]);
    g.at(max - 1_000).run(tier(a, Tier::Established), "tier_set");
    g.run(decide(1, a, 30), "decided:free");
    g.run(record(1, 30), "recorded");
    g.run(decide(2, a, 30), "decided:partial");

    g.case(
        "limits/overrun-total-by-overrun",
        "the overrun limit is judged on the overrun a record adds, not on its actual cost",
        config(),
    );
    g.pins(&[Rule::RecordOverrunOverflow]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, a, 10), "decided:free");
    g.run(record(1, max - 5), "recorded");
    g.run(decide(2, a, 10), "decided:free");
    g.run(record(2, 20), "recorded");
    g.run(decide(3, a, 10), "decided:free");
    g.run(record(3, 16), "overflow");
    g
}

/// Unknown identities (valid input; the bad pubkeys are in `bad-input/`).
fn unknown_identities() -> Gen {
    let (a, b) = (user(1), user(2));
    let mut g = Gen::new();
    g.case("unknown/decide", "decide for a pubkey no identity has: gated", config());
    g.pins(&[Rule::DecideUnknownIdentity]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, b, 40), "decided:gate:unknown_identity");
    g.run(decide(2, real_key(), 40), "decided:gate:unknown_identity");

    g.case("unknown/reserve", "reserve_partial for an unknown identity", config());
    g.pins(&[Rule::PartialIdentityNow]);
    g.run(decide(1, b, 40), "decided:gate:unknown_identity");
    g.run(reserve(1, b, 40), "unknown_identity");
    g.run(reserve(1, b, 0), "zero_amount");
    g.run(reserve(1, b, 41), "amount_above_estimate");

    g.case("unknown/record-and-release", "a gated unknown request has no reservation", config());
    g.pins(&[Rule::ReleaseNotReserved, Rule::RecordNotOutstanding]);
    g.run(decide(1, b, 40), "decided:gate:unknown_identity");
    g.run(record(1, 40), "not_reserved");
    g.run(release(1), "not_reserved");

    g.case("unknown/created-after-decision", "the identity appears between decide and reserve_partial", config());
    g.pins(&[Rule::PartialIdentityNow]);
    g.run(decide(1, a, 80), "decided:gate:unknown_identity");
    g.run(tier(a, Tier::Established), "tier_set");
    g.run(reserve(1, a, 30), "reserved");
    g.run(record(1, 30), "recorded");

    g.case("unknown/created-after-decision-zero-budget", "the identity appears with tier new", config());
    g.pins(&[Rule::PartialIdentityNow]);
    g.run(decide(1, a, 80), "decided:gate:unknown_identity");
    g.run(tier(a, Tier::New), "tier_set");
    g.run(reserve(1, a, 30), "insufficient_funds");

    g.case("unknown/other-pubkey-same-request", "an unknown pubkey's request id reused by a known one", config());
    g.pins(&[Rule::DecideReused]);
    g.run(tier(a, Tier::Elite), "tier_set");
    g.run(decide(1, b, 40), "decided:gate:unknown_identity");
    g.run(decide(1, a, 40), "exists_with_different_pubkey");
    g.run(reserve(1, a, 40), "exists_with_different_pubkey");
    g
}

/// A small deterministic generator (splitmix64), so the vectors need no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Seeded random sequences: small id spaces so that repeats and races are common.
fn random(n_cases: u64) -> Gen {
    let mut g = Gen::new();
    let mut rng = Rng(0x1ed9_e7c0_f0ae_2024);
    for case_idx in 0..n_cases {
        let budgets = rng.pick(&[[0, 50, 200, 1_000], [10, 20, 30, 40], [0, 0, 5, 7], [100, 100, 100, 100]]);
        let config = Config {
            budget_sats: Budgets {
                new: sats(budgets[0]),
                established: sats(budgets[1]),
                trusted: sats(budgets[2]),
                elite: sats(budgets[3]),
            },
            pool_initial_sats: sats(rng.pick(&[0, 25, 120, 10_000])),
            credit_bps: ledger_core::Bps::new(rng.pick(&[1_000, 0, 2_500, 10_000, 333])).expect("rate"),
            reservation_ttl_ms: rng.pick(&[1_000, TTL]),
        };
        g.case(&format!("random/{case_idx:03}"), "seeded random sequence", config);
        let n_steps = 12 + rng.below(24);
        for _ in 0..n_steps {
            let step_ms = rng.pick(&[0, 1, 500, 1_000, 1_001, TTL, DAY_MS - 1, DAY_MS, 3_600_000]);
            g.now += step_ms;
            let pk = user(rng.below(3));
            let id = rng.below(6);
            let amount = rng.pick(&[0, 1, 5, 10, 25, 49, 50, 51, 120, 999, 1_001]);
            let command = match rng.below(16) {
                0..=2 => tier(pk, rng.pick(&Tier::ALL)),
                3..=6 => decide(id, pk, amount),
                7..=8 => reserve(id, pk, amount),
                9 => release(id),
                10..=12 => record(id, amount),
                13..=14 => credit(rng.below(4), rng.pick(&[0, 9, 10, 100, 1_234, 50_000])),
                _ => expire(),
            };
            let _ = g.step(command);
        }
        // The drain: once deadlines pass, expire leaves nothing reserved.
        g.now += DAY_MS;
        let _ = g.step(expire());
        assert!(g.ledger.totals().reserved_sats.is_zero(), "random/{case_idx:03} leaks after the drain");
    }
    g
}

/// Every file under `fixtures/conformance/` that the generator owns (all but `schema.json`
/// and `README.md`), in a fixed order, with the number of cases in each.
pub fn generate() -> Vec<(File, usize)> {
    let mut files = Vec::new();
    for (path, g) in [
        ("commands.jsonl", commands()),
        ("idempotency.jsonl", idempotency()),
        ("daily-window.jsonl", daily_window()),
        ("credit-rounding.jsonl", credit_rounding()),
        ("tier-changes.jsonl", tier_changes()),
        ("deadlines.jsonl", deadlines()),
        ("limits.jsonl", limits()),
        ("unknown-identities.jsonl", unknown_identities()),
        ("random.jsonl", random(200)),
    ] {
        let (text, n) = g.finish();
        files.push((File { path: path.to_owned(), bytes: text.into_bytes() }, n));
    }
    let bads = crate::bad_inputs::bad_inputs();
    let mut index = String::new();
    for b in &bads {
        let path = format!("bad-input/{}.jsonl", b.name);
        let entry =
            serde_json::json!({ "file": format!("{}.jsonl", b.name), "line": b.line, "kind": b.kind, "note": b.note });
        index.push_str(&entry.to_string());
        index.push('\n');
        // The one byte a Rust string cannot hold goes in last: \u{1} stands for it.
        let bytes = b.text.bytes().map(|c| if c == 1 { 0xE9 } else { c }).collect();
        files.push((File { path, bytes }, 1));
    }
    files.push((File { path: "bad-input/expected.jsonl".to_owned(), bytes: index.into_bytes() }, 0));
    files
}
