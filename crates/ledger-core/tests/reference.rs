//! The reference engine command by command: each area has a `check(script)` whose output
//! (every command, its outcome or refusal, and the balance sheet after it) is an insta
//! snapshot, so the tests read as specifications and survive API changes.

use std::fmt::Write;

use ledger_core::{Command, Config, Ledger, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, DAY_MS};

const T0: TimeMs = TimeMs(1_700_000_000_000);

fn s(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

/// Apply `(offset_ms, command)` pairs to a ledger under `config` and render what happened.
fn run(config: Config, script: &[(u64, Command)]) -> String {
    let mut ledger = Ledger::new(config);
    let mut out = String::new();
    for (offset, cmd) in script {
        let mut journal = Vec::new();
        let result = ledger.apply(cmd, T0.plus_ms(*offset), &mut journal);
        let t = ledger.totals();
        let shown = match &result {
            Ok(o) => serde_json::to_string(o).unwrap(),
            Err(r) => format!("refused: {r} {}", serde_json::to_string(r).unwrap()),
        };
        writeln!(out, "t+{offset} {}", serde_json::to_string(cmd).unwrap()).unwrap();
        writeln!(out, "  -> {shown}").unwrap();
        writeln!(
            out,
            "  pool {} reserved {} absorbed {} credited {} overrun {} grants {} moves {}",
            t.pool_sats,
            t.reserved_sats,
            t.absorbed_sats,
            t.credited_sats,
            t.overrun_sats,
            t.n_grants,
            journal.len()
        )
        .unwrap();
    }
    out
}

fn check(name: &str, script: &[(u64, Command)]) {
    insta::assert_snapshot!(name, run(Config::default(), script));
}

fn user(n: u64) -> Pubkey {
    // The harness's simulated-user keys (`ledger_harness::user_pubkey`), built here because
    // the core's tests do not depend on the harness.
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[31] = 0x5a;
    Pubkey::from_bytes(b)
}
fn set_tier(n: u64, tier: Tier) -> Command {
    Command::SetTier { pubkey: user(n), tier }
}
fn decide(req: u64, n: u64, est: u64) -> Command {
    Command::Decide { request_id: RequestId(req), pubkey: user(n), estimated_sats: s(est) }
}
fn reserve(req: u64, n: u64, amount: u64) -> Command {
    Command::ReservePartial { request_id: RequestId(req), pubkey: user(n), amount_sats: s(amount) }
}
fn record(req: u64, actual: u64) -> Command {
    Command::Record { request_id: RequestId(req), actual_sats: s(actual) }
}
fn release(req: u64) -> Command {
    Command::Release { request_id: RequestId(req) }
}
fn credit(p: u64, paid: u64) -> Command {
    Command::Credit { payment_id: PaymentId(p), paid_sats: s(paid) }
}

#[test]
fn decide_outcomes() {
    check(
        "decide_outcomes",
        &[
            (0, decide(1, 9, 10)),
            (0, set_tier(1, Tier::New)),
            (0, decide(2, 1, 10)),
            (0, set_tier(2, Tier::Established)),
            (0, decide(3, 2, 0)),
            (0, decide(4, 2, 30)),
            (0, decide(5, 2, 30)),
            (0, decide(6, 2, 30)),
            (0, decide(4, 2, 30)),
            (0, decide(4, 2, 31)),
            (0, decide(4, 3, 30)),
        ],
    );
}

#[test]
fn partial_is_all_or_nothing() {
    check(
        "partial_all_or_nothing",
        &[
            (0, set_tier(1, Tier::Established)),
            (0, decide(1, 1, 80)),
            (0, reserve(1, 1, 90)),
            (0, reserve(1, 1, 0)),
            (0, decide(2, 1, 20)),
            (0, reserve(1, 1, 50)),
            (0, reserve(1, 1, 30)),
            (0, reserve(1, 1, 30)),
            (0, reserve(1, 1, 29)),
            (0, reserve(2, 1, 5)),
            (0, reserve(9, 1, 5)),
        ],
    );
}

#[test]
fn record_release_and_repeats() {
    check(
        "record_release",
        &[
            (0, set_tier(1, Tier::Elite)),
            (0, decide(1, 1, 100)),
            (1, record(1, 70)),
            (2, record(1, 70)),
            (3, record(1, 71)),
            (4, release(1)),
            (5, decide(2, 1, 100)),
            (6, record(2, 130)),
            (7, decide(3, 1, 100)),
            (8, release(3)),
            (9, release(3)),
            (10, record(3, 5)),
            (11, release(77)),
        ],
    );
}

#[test]
fn credits_round_down_once_per_payment() {
    check(
        "credits",
        &[(0, credit(1, 19)), (0, credit(1, 19)), (0, credit(1, 20)), (0, credit(2, 9)), (0, credit(3, 10))],
    );
}

#[test]
fn daily_window_and_tier_changes() {
    check(
        "daily_window",
        &[
            (0, set_tier(1, Tier::Established)),
            (0, decide(1, 1, 50)),
            (1, record(1, 50)),
            (DAY_MS - 1, decide(2, 1, 1)),
            (DAY_MS, decide(3, 1, 50)),
            (DAY_MS + 1, record(3, 40)),
            (DAY_MS + 2, decide(4, 1, 20)),
            (DAY_MS + 3, set_tier(1, Tier::Trusted)),
            (DAY_MS + 4, decide(5, 1, 20)),
            (DAY_MS + 5, set_tier(1, Tier::New)),
            (DAY_MS + 6, decide(6, 1, 20)),
        ],
    );
}

#[test]
fn expire_releases_after_the_deadline() {
    let ttl = Config::default().reservation_ttl_ms;
    check(
        "expire",
        &[
            (0, set_tier(1, Tier::Elite)),
            (0, decide(1, 1, 100)),
            (10, decide(2, 1, 50)),
            (ttl, Command::Expire),
            (ttl + 1, Command::Expire),
            (ttl + 11, Command::Expire),
            (ttl + 12, record(1, 10)),
            (ttl + 13, release(2)),
        ],
    );
}

#[test]
fn amounts_at_the_limits() {
    let config = Config { pool_initial_sats: Sats::MAX, credit_bps: ledger_core::Bps::FULL, ..Config::default() };
    let out = run(config, &[(0, credit(1, 1)), (0, credit(2, 0))]);
    insta::assert_snapshot!("limits", out);
}

/// Found by the fuzzer: a credit that fits the pool but not the ledger (reserved sats would
/// overflow the pool on their way back) is refused, and the release that follows works.
#[test]
fn credit_that_would_overflow_a_later_release_is_refused() {
    let config = Config { credit_bps: ledger_core::Bps::FULL, ..Config::default() };
    let out = run(
        config,
        &[
            (0, set_tier(1, Tier::Elite)),
            (0, decide(1, 1, 40)),
            (0, credit(1, Sats::MAX.to_u64() - 9_960)),
            (0, credit(2, Sats::MAX.to_u64() - 10_000)),
            (0, release(1)),
        ],
    );
    insta::assert_snapshot!("credit_overflow", out);
}

#[test]
fn identity_window_arithmetic() {
    use ledger_core::Identity;
    let id = Identity { tier: Tier::Trusted, sats_absorbed_today: s(150), absorbed_reset_at: T0, reserved_sats: s(30) };
    assert_eq!(id.absorbed_in_window(T0.plus_ms(DAY_MS - 1)), s(150));
    assert_eq!(id.absorbed_in_window(T0.plus_ms(DAY_MS)), Sats::ZERO);
    assert_eq!(id.daily_remaining(s(200), T0.plus_ms(1)), s(20));
    assert_eq!(id.daily_remaining(s(200), T0.plus_ms(DAY_MS)), s(170));
    assert_eq!(id.daily_remaining(s(100), T0), Sats::ZERO);
}

#[test]
fn expire_releases_in_deadline_order_when_the_clock_went_back() {
    let ttl = Config::default().reservation_ttl_ms;
    let mut ledger = Ledger::new(Config::default());
    let mut journal = Vec::new();
    let mut at = |ledger: &mut Ledger, offset: u64, cmd: Command| ledger.apply(&cmd, T0.plus_ms(offset), &mut journal);
    at(&mut ledger, 0, set_tier(1, Tier::Elite)).unwrap();
    at(&mut ledger, 1_000, decide(1, 1, 10)).unwrap();
    at(&mut ledger, 0, decide(2, 1, 10)).unwrap();
    at(&mut ledger, 500, decide(3, 1, 10)).unwrap();
    at(&mut ledger, 1_000, decide(4, 1, 10)).unwrap();
    assert_eq!(ledger.n_requests(), 4);
    assert_eq!(ledger.config(), &Config::default());
    let odd = Config { pool_initial_sats: s(123), ..Config::default() };
    assert_eq!(Ledger::new(odd).config(), &odd);
    let out = at(&mut ledger, ttl + 2_000, Command::Expire).unwrap();
    let order: Vec<u64> = match out {
        ledger_core::Outcome::Expired { released } => released.iter().map(|(r, _)| r.0).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(order, [2, 3, 1, 4]);
}
