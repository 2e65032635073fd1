//! The seed model on the happy paths of the TypeScript, one call at a time, with the number
//! of database round trips each took; and the flaws it keeps on purpose.

use std::fmt::Write;

use ledger_core::{Config, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, DAY_MS};
use ledger_harness::{Call, Engine, SeedEngine};

const T0: TimeMs = TimeMs(1_700_000_000_000);

fn s(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn user(n: u64) -> Pubkey {
    ledger_harness::user_pubkey(n)
}

/// Run `calls` one after another at `T0 + offset`, and render each call, its round trips,
/// its reply and the database after it.
fn run(calls: &[(u64, Call)]) -> String {
    let mut engine = SeedEngine::new(Config::default());
    let mut out = String::new();
    for (offset_ms, call) in calls {
        let now = T0.plus_ms(*offset_ms);
        let mut op = engine.begin(call);
        let mut journal = Vec::new();
        let mut n_steps = 0;
        let reply = loop {
            n_steps += 1;
            if let Some(r) = engine.step(&mut op, now, &mut journal) {
                break r;
            }
        };
        let o = engine.observe();
        writeln!(out, "{} [{n_steps} round trip(s)]", serde_json::to_string(call).unwrap()).unwrap();
        writeln!(out, "  -> {}", serde_json::to_string(&reply).unwrap()).unwrap();
        writeln!(out, "  pool row {:?}, grants {} ({} sats)", engine.pool_row(), o.n_grants, o.granted_sats).unwrap();
        for m in &journal {
            writeln!(out, "  moved {}", serde_json::to_string(m).unwrap()).unwrap();
        }
    }
    out
}

fn check(name: &str, calls: &[(u64, Call)]) {
    insta::assert_snapshot!(name, run(calls));
}

fn tier(n: u64, tier: Tier) -> (u64, Call) {
    (0, Call::SetTier { pubkey: user(n), tier })
}

fn decide(at: u64, req: u64, n: u64, est: u64) -> (u64, Call) {
    (at, Call::Decide { request_id: RequestId(req), pubkey: user(n), estimated_sats: s(est) })
}

fn record(at: u64, req: u64, n: u64, actual: u64, reserved: u64) -> (u64, Call) {
    (
        at,
        Call::Record {
            request_id: RequestId(req),
            pubkey: user(n),
            actual_sats: s(actual),
            reserved_sats: s(reserved),
        },
    )
}

fn reserve(at: u64, req: u64, n: u64, amount: u64) -> (u64, Call) {
    (at, Call::ReservePartial { request_id: RequestId(req), pubkey: user(n), amount_sats: s(amount) })
}

fn credit(at: u64, payment: u64, paid: u64) -> (u64, Call) {
    (at, Call::Credit { payment_id: PaymentId(payment), paid_sats: s(paid) })
}

#[test]
fn free_job() {
    // decide debits at once (4 round trips on first boot: identity, pool select, pool insert,
    // the FOR UPDATE transaction); recordGrant returns the over-reservation.
    check("free_job", &[tier(1, Tier::Elite), decide(10, 1, 1, 100), record(20, 1, 1, 80, 100)]);
}

#[test]
fn free_job_that_fails() {
    check(
        "free_job_that_fails",
        &[
            tier(1, Tier::Trusted),
            decide(10, 1, 1, 100),
            (20, Call::Release { request_id: RequestId(1), amount_sats: s(100) }),
        ],
    );
}

#[test]
fn partial_job() {
    // An established user (budget 50) asks for 80: partial 50/30, advisory; the user pays
    // 30 (credited 3), then reservePartialGrant(50) at payment time, then recordGrant.
    check(
        "partial_job",
        &[
            tier(2, Tier::Established),
            decide(10, 2, 2, 80),
            credit(20, 21, 30),
            reserve(30, 2, 2, 50),
            record(40, 2, 2, 45, 50),
        ],
    );
}

#[test]
fn gated_job() {
    // A new user has no budget: gate before the pool is read (1 round trip), then the paid
    // invoice credits 10 %.
    check("gated_job", &[tier(3, Tier::New), decide(10, 3, 3, 120), credit(20, 31, 120)]);
}

#[test]
fn session() {
    // A session: a free one, then (budget used up to 40 of 50) a partial offer whose pool
    // share is reserved after the work with min(actual, absorbSats).
    check(
        "session",
        &[
            tier(4, Tier::Established),
            decide(10, 4, 4, 40),
            record(20, 4, 4, 40, 40),
            decide(30, 5, 4, 30),
            reserve(40, 5, 4, 10),
            record(50, 5, 4, 10, 10),
        ],
    );
}

#[test]
fn daily_window_restarts_after_24h() {
    check(
        "daily_window",
        &[
            tier(5, Tier::Established),
            decide(0, 1, 5, 50),
            record(1, 1, 5, 50, 50),
            decide(DAY_MS - 1, 2, 5, 10),
            decide(DAY_MS + 1, 3, 5, 10),
            record(DAY_MS + 2, 3, 5, 10, 10),
        ],
    );
}

#[test]
fn flaw_credit_before_first_boot_loses_genesis() {
    // The credit upsert creates the pool row with only the credit: the 10,000 sats of
    // genesis never exist.
    let out = run(&[credit(0, 1, 500), tier(1, Tier::Elite), decide(10, 1, 1, 100)]);
    assert!(out.contains("pool row Some(50)"), "{out}");
    insta::assert_snapshot!("flaw_genesis", out);
}

#[test]
fn flaw_no_idempotency() {
    // A repeated recordGrant writes a second grant and counts the absorption twice.
    let out = run(&[tier(1, Tier::Elite), decide(0, 1, 1, 100), record(1, 1, 1, 100, 100), record(2, 1, 1, 100, 100)]);
    assert!(out.contains("grants 2 (200 sats)"), "{out}");
}

#[test]
fn flaw_record_is_uncapped() {
    // recordGrant absorbs the actual cost even above what was reserved.
    let out = run(&[tier(1, Tier::Elite), decide(0, 1, 1, 100), record(1, 1, 1, 130, 100)]);
    assert!(out.contains("grants 1 (130 sats)"), "{out}");
}

#[test]
fn flaw_pool_is_an_integer_column() {
    // `value::int` fails above i32::MAX: the credit that would cross it fails.
    let config = Config { pool_initial_sats: s(i32::MAX as u64 - 5), ..Config::default() };
    let mut engine = SeedEngine::new(config);
    let mut journal = Vec::new();
    let boot = Call::Decide { request_id: RequestId(1), pubkey: user(9), estimated_sats: s(1) };
    let mut op = engine.begin(&Call::SetTier { pubkey: user(9), tier: Tier::Elite });
    while engine.step(&mut op, T0, &mut journal).is_none() {}
    let mut op = engine.begin(&boot);
    while engine.step(&mut op, T0, &mut journal).is_none() {}
    let mut op = engine.begin(&Call::Credit { payment_id: PaymentId(1), paid_sats: s(1000) });
    let reply = loop {
        if let Some(r) = engine.step(&mut op, T0, &mut journal) {
            break r;
        }
    };
    assert!(
        matches!(reply, ledger_harness::Reply::Failed { ref error } if error.contains("out of range")),
        "{reply:?}"
    );
}
