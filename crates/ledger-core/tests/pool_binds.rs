//! `Ledger::pool_binds`: as long as no command was bound by the pool, the same commands run
//! against a larger pool give the same outcomes, and the two pools stay the same distance
//! apart. The planner relies on this to carry a run up to a larger credit or genesis.

use ledger_core::{Command, Config, Ledger, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, DAY_MS};
use proptest::prelude::*;

const T0: TimeMs = TimeMs(1_700_000_000_000);

fn s(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn user(n: u64) -> Pubkey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[31] = 0x5a;
    Pubkey::from_bytes(b)
}

/// A command over three users and six requests with small amounts, so that pools of a few
/// dozen sats bind often and the same request is decided, reserved and recorded in turn.
fn command() -> impl Strategy<Value = Command> {
    let tier = prop_oneof![Just(Tier::New), Just(Tier::Established), Just(Tier::Trusted), Just(Tier::Elite)];
    prop_oneof![
        (0..3u64, tier).prop_map(|(u, tier)| Command::SetTier { pubkey: user(u), tier }),
        (1..7u64, 0..3u64, 0..40u64).prop_map(|(r, u, e)| Command::Decide {
            request_id: RequestId(r),
            pubkey: user(u),
            estimated_sats: s(e),
        }),
        (1..7u64, 0..3u64, 0..40u64).prop_map(|(r, u, a)| Command::ReservePartial {
            request_id: RequestId(r),
            pubkey: user(u),
            amount_sats: s(a),
        }),
        (1..7u64).prop_map(|r| Command::Release { request_id: RequestId(r) }),
        (1..7u64, 0..50u64).prop_map(|(r, a)| Command::Record { request_id: RequestId(r), actual_sats: s(a) }),
        (1..5u64, 0..60u64).prop_map(|(p, paid)| Command::Credit { payment_id: PaymentId(p), paid_sats: s(paid) }),
        Just(Command::Expire),
    ]
}

fn config(pool: u64) -> Config {
    Config { pool_initial_sats: s(pool), ..Config::default() }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_run_the_pool_never_bound_runs_the_same_from_a_larger_pool(
        pool in 0..80u64,
        extra in 1..200u64,
        script in proptest::collection::vec((0..3u64, command()), 1..40),
    ) {
        let (mut small, mut large) = (Ledger::new(config(pool)), Ledger::new(config(pool + extra)));
        let mut now = T0;
        for (step, (hours, command)) in script.iter().enumerate() {
            now = now.plus_ms(hours * DAY_MS / 8);
            if small.pool_binds(command, now) {
                break;
            }
            prop_assert!(!large.pool_binds(command, now), "step {step}: {command:?} binds the larger pool only");
            let (mut js, mut jl) = (Vec::new(), Vec::new());
            let a = small.apply(command, now, &mut js);
            let b = large.apply(command, now, &mut jl);
            prop_assert_eq!(&a, &b, "step {}: {:?}", step, command);
            prop_assert_eq!(js, jl);
            let (ts, tl) = (small.totals(), large.totals());
            prop_assert_eq!(ts.pool_sats.to_u64() + extra, tl.pool_sats.to_u64());
            prop_assert_eq!(
                (ts.reserved_sats, ts.absorbed_sats, ts.credited_sats, ts.overrun_sats, ts.n_grants),
                (tl.reserved_sats, tl.absorbed_sats, tl.credited_sats, tl.overrun_sats, tl.n_grants)
            );
        }
    }
}

/// Each side of both comparisons, so that the property above is not met by a `pool_binds`
/// that always says yes (which would make it hold vacuously) or one that always says no.
#[test]
fn a_decide_binds_below_what_it_could_grant_and_a_partial_above_the_pool() {
    let mut ledger = Ledger::new(config(30));
    let mut journal = Vec::new();
    let set = Command::SetTier { pubkey: user(0), tier: Tier::Established };
    ledger.apply(&set, T0, &mut journal).unwrap();
    let decide = |r, e| Command::Decide { request_id: RequestId(r), pubkey: user(0), estimated_sats: s(e) };
    // Budget 50, pool 30: an estimate of 30 is covered; 31 is not, by the pool alone.
    assert!(!ledger.pool_binds(&decide(1, 30), T0));
    assert!(ledger.pool_binds(&decide(1, 31), T0));
    // Gates that come before the pool: a zero estimate, an unknown user, a zero budget.
    assert!(!ledger.pool_binds(&decide(1, 0), T0));
    let stranger = Command::Decide { request_id: RequestId(1), pubkey: user(9), estimated_sats: s(40) };
    assert!(!ledger.pool_binds(&stranger, T0));
    // A request decided before is answered from its record.
    ledger.apply(&decide(1, 40), T0, &mut journal).unwrap();
    assert!(!ledger.pool_binds(&decide(1, 40), T0));
    let partial = |a| Command::ReservePartial { request_id: RequestId(1), pubkey: user(0), amount_sats: s(a) };
    assert!(!ledger.pool_binds(&partial(30), T0));
    assert!(ledger.pool_binds(&partial(31), T0));
    // A zero budget gates before the pool is looked at.
    ledger.apply(&Command::SetTier { pubkey: user(0), tier: Tier::New }, T0, &mut journal).unwrap();
    assert!(!ledger.pool_binds(&decide(2, 40), T0));
}
