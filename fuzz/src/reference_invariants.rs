//! Arbitrary command sequences against the reference engine, under the invariant checker.
//!
//! The bytes are decoded by hand into a configuration and a sequence of commands over small
//! id spaces (4 users, 8 requests, 4 payments), so that repeats, races and refusals are
//! common; amounts and time steps come from tables of edge values or straight from the bytes.
//! After every step I1, I2 and I5 are checked; at the end, the drain checks I5 and I6. Every
//! step also goes through the conformance writer and reader, which must agree.
//!
//! The body of the fuzz target of the same name (`fuzz/fuzz_targets/`), and of the test that
//! replays its committed corpus under `cargo test` (`tests/tests/fuzz_corpora.rs`).

use ledger_core::{Bps, Budgets, Command, Config, Ledger, PaymentId, RequestId, Sats, Tier, TimeMs, DAY_MS};
use ledger_harness::conformance::{named_pubkey, parse_line, Balances, Expect, Line, Step};
use ledger_harness::Checker;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..8 {
            v = (v << 8) | u64::from(self.u8()?);
        }
        Some(v)
    }
    fn sats(&mut self) -> Option<Sats> {
        const EDGE: [u64; 12] = [0, 1, 2, 9, 10, 49, 50, 51, 199, 1_000, 10_000, i64::MAX as u64];
        let b = self.u8()?;
        let v = if b < 240 { EDGE[usize::from(b) % EDGE.len()] } else { self.u64()? & (i64::MAX as u64) };
        Sats::new(v).ok()
    }
    fn ms(&mut self) -> Option<u64> {
        const STEP: [u64; 8] = [0, 1, 999, 1_000, 600_000, DAY_MS - 1, DAY_MS, DAY_MS + 1];
        let b = self.u8()?;
        Some(if b < 240 { STEP[usize::from(b) % STEP.len()] } else { u64::from(self.u8()?) * 1_000 })
    }
}

fn config(b: &mut Bytes<'_>) -> Option<Config> {
    let mut c = Config::default();
    for tier in Tier::ALL {
        *c.budget_sats.of_mut(tier) = b.sats()?;
    }
    c.pool_initial_sats = b.sats()?;
    c.credit_bps = Bps::new(u16::from_be_bytes([b.u8()?, b.u8()?]) % 10_001).ok()?;
    c.reservation_ttl_ms = 1 + u64::from(b.u8()?) * 10_000;
    let _: Budgets = c.budget_sats;
    Some(c)
}

fn command(b: &mut Bytes<'_>) -> Option<Command> {
    let kind = b.u8()?;
    let pubkey = ledger_harness::user_pubkey(u64::from(kind >> 6));
    let request_id = RequestId(u64::from(b.u8()? % 8));
    Some(match kind % 7 {
        0 => Command::SetTier { pubkey, tier: Tier::ALL[usize::from(b.u8()? % 4)] },
        1 => Command::Decide { request_id, pubkey, estimated_sats: b.sats()? },
        2 => Command::ReservePartial { request_id, pubkey, amount_sats: b.sats()? },
        3 => Command::Release { request_id },
        4 => Command::Record { request_id, actual_sats: b.sats()? },
        5 => Command::Credit { payment_id: PaymentId(request_id.0 % 4), paid_sats: b.sats()? },
        _ => Command::Expire,
    })
}

/// The steps so far, one line each, for a failure message.
fn render(trail: &[(TimeMs, Command, Result<ledger_core::Outcome, ledger_core::Refusal>)]) -> String {
    trail.iter().map(|(now, cmd, result)| format!("{} {cmd:?} -> {result:?}", now.0)).collect::<Vec<_>>().join("\n")
}

/// Runs the target on `data`: panics when a property breaks.
pub fn run(data: &[u8]) {
    let mut b = Bytes(data);
    let Some(config) = config(&mut b) else { return };
    let mut ledger = Ledger::new(config);
    let mut checker = Checker::new(&config);
    let mut now = TimeMs(1_700_000_000_000);
    let mut journal = Vec::new();
    let mut trail = Vec::new();
    while let (Some(step_ms), Some(cmd)) = (b.ms(), command(&mut b)) {
        now = now.plus_ms(step_ms);
        journal.clear();
        let result = ledger.apply(&cmd, now, &mut journal);
        // The caller's facts: a tier it set, a payment the ledger took (a refused credit,
        // e.g. an overflow, is no payment; its id may come back with another amount).
        match (&cmd, &result) {
            (Command::SetTier { pubkey, tier }, _) => checker.on_tier(*pubkey, *tier, now),
            (Command::Credit { payment_id, paid_sats }, Ok(_)) => checker.on_payment(*payment_id, *paid_sats),
            _ => {}
        }
        trail.push((now, cmd.clone(), result.clone()));
        checker.on_movements(&journal, now);
        checker.after_step(&ledger_harness::Observed::of(&ledger));
        assert!(checker.violations().is_empty(), "{:#?}\nafter:\n{}", checker.violations(), render(&trail));
        let identity = named_pubkey(&cmd).and_then(|p| ledger.identity(&p)).map(Into::into);
        let step =
            Step { now, command: cmd, expect: Expect::from(result), totals: Balances::from(ledger.totals()), identity };
        match parse_line(2, &step.to_line()) {
            Ok(Line::Step(back)) => assert_eq!(back, step),
            other => panic!("a written step did not read back: {other:?}"),
        }
    }
    // The drain: every deadline passed, expire leaves nothing held and every reservation ended.
    let end = now.plus_ms(config.reservation_ttl_ms).plus_ms(1);
    journal.clear();
    ledger.apply(&Command::Expire, end, &mut journal).expect("expire is never refused");
    checker.on_movements(&journal, end);
    checker.after_step(&ledger_harness::Observed::of(&ledger));
    checker.finish();
    assert!(checker.violations().is_empty(), "{:#?}\nafter:\n{}", checker.violations(), render(&trail));
    assert!(ledger.totals().reserved_sats.is_zero());
}
