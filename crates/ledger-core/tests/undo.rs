//! `Ledger::apply_undoable` and `Ledger::undo`: any stack of commands applied and taken back,
//! last first, leaves a ledger that shows the same records and gives the same answers, to the
//! last sweep, as one that never saw them, under the exact rules and with any one rule broken
//! (a broken rule changes what a command touches, never where).

use ledger_core::variant::Variant;
use ledger_core::{Command, Config, Ledger, PaymentId, Pubkey, RequestId, Rule, Sats, Tier, TimeMs, DAY_MS};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
struct Breaks(Option<Rule>);

impl Variant for Breaks {
    fn breaks(&self, rule: Rule) -> bool {
        self.0 == Some(rule)
    }
}

fn s(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn user(n: u8) -> Pubkey {
    Pubkey::from_bytes([n; 32])
}

/// Few users, requests and payments, so that commands meet on the same records.
fn command() -> impl Strategy<Value = Command> {
    let tier = prop::sample::select(Tier::ALL.to_vec());
    let (u, r, amount) = (0u8..5, 0u64..8, 0u64..700);
    prop_oneof![
        (u.clone(), tier).prop_map(|(u, tier)| Command::SetTier { pubkey: user(u), tier }),
        (r.clone(), u.clone(), amount.clone()).prop_map(|(r, u, a)| Command::Decide {
            request_id: RequestId(r),
            pubkey: user(u),
            estimated_sats: s(a)
        }),
        (r.clone(), u, amount.clone()).prop_map(|(r, u, a)| Command::ReservePartial {
            request_id: RequestId(r),
            pubkey: user(u),
            amount_sats: s(a)
        }),
        r.clone().prop_map(|r| Command::Release { request_id: RequestId(r) }),
        (r, amount.clone()).prop_map(|(r, a)| Command::Record { request_id: RequestId(r), actual_sats: s(a) }),
        (0u64..3, amount).prop_map(|(p, a)| Command::Credit { payment_id: PaymentId(p), paid_sats: s(a) }),
        Just(Command::Expire),
    ]
}

/// A command at a time: mostly minutes apart, now and then past a reservation's deadline or a
/// day, or back in time.
fn step() -> impl Strategy<Value = (i64, Command)> {
    let dt = prop_oneof![8 => 0i64..60_000, 1 => Just(20 * 60_000i64), 1 => Just(DAY_MS as i64), 1 => -60_000i64..0];
    (dt, command())
}

fn rule() -> impl Strategy<Value = Option<Rule>> {
    prop_oneof![1 => Just(None), 3 => prop::sample::select(Rule::ALL.to_vec()).prop_map(Some)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn commands_taken_back_leave_the_ledger_as_if_never_applied(
        rule in rule(),
        pool in prop_oneof![Just(300u64), Just(1_000_000)],
        script in prop::collection::vec((step(), prop::collection::vec(step(), 0..5)), 1..40),
    ) {
        let config = Config { pool_initial_sats: s(pool), reservation_ttl_ms: 10 * 60_000, ..Config::default() };
        let mut tried = Ledger::with_variant(config, Breaks(rule));
        let mut never = Ledger::with_variant(config, Breaks(rule));
        let mut now = 1_000_000i64;
        let at = |now: i64, dt: i64| TimeMs((now + dt).max(0) as u64);
        for ((dt, kept), excursion) in script {
            now += dt;
            let (mut a, mut b) = (Vec::new(), Vec::new());
            prop_assert_eq!(tried.apply(&kept, at(now, 0), &mut a), never.apply(&kept, at(now, 0), &mut b));
            prop_assert_eq!(a, b);
            // Commands tried on one ledger only, then taken back, last first.
            let mut undos = Vec::new();
            let mut t = now;
            for (dt, c) in excursion {
                t += dt;
                let mut journal = Vec::new();
                let (outcome, undo) = tried.apply_undoable(&c, at(t, 0), &mut journal);
                // apply_undoable answers as apply does.
                let mut other = tried.clone();
                other.undo(undo.clone());
                prop_assert_eq!(&outcome, &other.apply(&c, at(t, 0), &mut Vec::new()));
                undos.push(undo);
            }
            while let Some(undo) = undos.pop() {
                tried.undo(undo);
            }
            prop_assert_eq!(tried.snapshot(), never.snapshot());
        }
        // The deadlines are the same too: a sweep long after releases the same reservations.
        let late = at(now, 10 * DAY_MS as i64);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        prop_assert_eq!(tried.apply(&Command::Expire, late, &mut a), never.apply(&Command::Expire, late, &mut b));
        prop_assert_eq!(a, b);
        prop_assert_eq!(tried.snapshot(), never.snapshot());
    }
}
