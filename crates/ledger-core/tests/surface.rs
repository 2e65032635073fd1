//! The small types every implementation and trace shares: command names, tiers, pubkeys, rates,
//! rule ids, the movements an outcome implies. Each is pinned here value by value, because a
//! trace or a report that prints one wrong misleads without breaking any invariant.

use ledger_core::command::Outcome;
use ledger_core::{
    implied_movements, Bps, Command, Decision, GateReason, Movement, PaymentId, Pubkey, PubkeyError, RequestId, Rule,
    Sats, Tier,
};

fn s(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn user(n: u8) -> Pubkey {
    Pubkey::from_bytes([n; 32])
}

#[test]
fn every_command_has_its_trace_name() {
    let (request_id, pubkey) = (RequestId(1), user(1));
    let named = [
        (Command::SetTier { pubkey, tier: Tier::New }, "set_tier"),
        (Command::Decide { request_id, pubkey, estimated_sats: s(1) }, "decide"),
        (Command::ReservePartial { request_id, pubkey, amount_sats: s(1) }, "reserve_partial"),
        (Command::Release { request_id }, "release"),
        (Command::Record { request_id, actual_sats: s(1) }, "record"),
        (Command::Credit { payment_id: PaymentId(1), paid_sats: s(1) }, "credit"),
        (Command::Expire, "expire"),
    ];
    for (command, name) in named {
        assert_eq!(command.name(), name, "{command:?}");
        // The name is the serialized tag, so a trace line and a report agree.
        let json = serde_json::to_value(&command).unwrap();
        assert_eq!(json["cmd"], name, "{json}");
    }
}

#[test]
fn tiers_have_their_index_and_their_name() {
    for (i, tier) in Tier::ALL.into_iter().enumerate() {
        assert_eq!(tier.index(), i);
        assert_eq!(tier.to_string(), tier.as_str());
        assert_eq!(tier.as_str().parse::<Tier>().unwrap(), tier);
    }
    assert_eq!(Tier::Elite.to_string(), "elite");
    assert_eq!(format!("[{}]", Tier::Established), "[established]");
    assert!("Elite".parse::<Tier>().is_err(), "tiers are lowercase");
}

#[test]
fn pubkeys_parse_every_hex_digit_and_name_the_bad_character() {
    let hex: String = "0123456789abcdef".repeat(4);
    let key: Pubkey = hex.parse().unwrap();
    let bytes: Vec<u8> = (0..32).map(|i| (((2 * i % 16) << 4) | ((2 * i + 1) % 16)) as u8).collect();
    assert_eq!(key.as_bytes().as_slice(), bytes.as_slice());
    assert_eq!(key.as_bytes()[0], 0x01, "high nibble first, joined with the low one");
    assert_eq!(key.as_bytes()[7], 0xef);
    let ff: Pubkey = "f".repeat(64).parse().unwrap();
    assert_eq!(ff.as_bytes(), &[0xff; 32]);
    let fe: Pubkey = "fe".repeat(32).parse().unwrap();
    assert_eq!(fe.as_bytes(), &[0xfe; 32]);
    // A bad character at 64 or later in a longer string is a length error.
    let long = format!("{}G", "a".repeat(64));
    assert_eq!(long.parse::<Pubkey>(), Err(PubkeyError::WrongLength(65)));
    let long = format!("{}G", "a".repeat(63));
    assert_eq!(long.parse::<Pubkey>(), Err(PubkeyError::NotLowercaseHex { position: 63, found: 'G' }));
    let exact = format!("{}G", "a".repeat(63));
    assert_eq!(exact.chars().count(), 64);
    assert_eq!(exact.parse::<Pubkey>(), Err(PubkeyError::NotLowercaseHex { position: 63, found: 'G' }));
    let short = format!("{}G", "a".repeat(10));
    assert_eq!(short.parse::<Pubkey>(), Err(PubkeyError::NotLowercaseHex { position: 10, found: 'G' }));
    assert_eq!("ab".parse::<Pubkey>(), Err(PubkeyError::WrongLength(2)));
    let upper = format!("{}A", "a".repeat(63));
    assert!(matches!(upper.parse::<Pubkey>(), Err(PubkeyError::NotLowercaseHex { position: 63, found: 'A' })));
}

#[test]
fn rates_convert_both_ways_and_refuse_above_100_percent() {
    for bp in [0u16, 1, 1_250, 10_000] {
        let rate = Bps::try_from(bp).unwrap();
        assert_eq!(rate.to_u16(), bp);
        assert_eq!(u16::from(rate), bp);
    }
    assert!(Bps::try_from(10_001).is_err());
    assert!(Bps::try_from(u16::MAX).is_err());
}

#[test]
fn rules_print_and_parse_as_their_ids() {
    for &rule in Rule::ALL {
        assert_eq!(rule.to_string(), rule.id());
        assert_eq!(Rule::from_id(rule.id()), Some(rule));
    }
    assert_eq!(Rule::from_id("R-EXPIRE-2"), Some(Rule::ExpireStrict));
    assert_eq!(Rule::from_id("R-NOPE-1"), None);
}

#[test]
fn each_fresh_outcome_implies_its_movements() {
    let (request_id, pubkey) = (RequestId(7), user(3));
    let decide = Command::Decide { request_id, pubkey, estimated_sats: s(40) };
    let free = Outcome::Decided { decision: Decision::Free { reserved_sats: s(40) } };
    assert_eq!(
        implied_movements(&decide, &free, None),
        Ok(vec![Movement::Debit { request_id, pubkey, amount_sats: s(40) }])
    );
    let partial = Outcome::Decided { decision: Decision::Partial { offer_sats: s(10), charge_sats: s(30) } };
    assert_eq!(implied_movements(&decide, &partial, None), Ok(vec![]), "an offer moves nothing");
    let gate = Outcome::Decided { decision: Decision::Gate { reason: GateReason::PoolEmpty, charge_sats: s(40) } };
    assert_eq!(implied_movements(&decide, &gate, None), Ok(vec![]));

    let reserve = Command::ReservePartial { request_id, pubkey, amount_sats: s(10) };
    let reserved = Outcome::Reserved { reserved_sats: s(10) };
    assert_eq!(
        implied_movements(&reserve, &reserved, None),
        Ok(vec![Movement::Debit { request_id, pubkey, amount_sats: s(10) }])
    );

    let release = Command::Release { request_id };
    let released = Outcome::Released { returned_sats: s(10) };
    assert_eq!(
        implied_movements(&release, &released, None),
        Ok(vec![Movement::Release { request_id, amount_sats: s(10) }])
    );

    let record = Command::Record { request_id, actual_sats: s(25) };
    let recorded = Outcome::Recorded { absorbed_sats: s(25), returned_sats: s(15), overrun_sats: s(0) };
    assert_eq!(
        implied_movements(&record, &recorded, Some(pubkey)),
        Ok(vec![Movement::Record { request_id, pubkey, absorbed_sats: s(25), returned_sats: s(15) }])
    );
    assert_eq!(implied_movements(&record, &recorded, None), Err(ledger_core::journal::UnknownHolder(7)));

    let credit = Command::Credit { payment_id: PaymentId(9), paid_sats: s(100) };
    let credited = Outcome::Credited { credited_sats: s(10) };
    assert_eq!(
        implied_movements(&credit, &credited, None),
        Ok(vec![Movement::Credit { payment_id: PaymentId(9), amount_sats: s(10) }])
    );

    let expired = Outcome::Expired { released: vec![(RequestId(2), s(5)), (RequestId(1), s(6))] };
    assert_eq!(
        implied_movements(&Command::Expire, &expired, None),
        Ok(vec![
            Movement::Expire { request_id: RequestId(2), amount_sats: s(5) },
            Movement::Expire { request_id: RequestId(1), amount_sats: s(6) },
        ])
    );
    // An outcome that does not belong to the command implies nothing.
    assert_eq!(implied_movements(&release, &credited, None), Ok(vec![]));
}

#[test]
fn one_request_and_one_payment_read_as_the_snapshot_lists_them() {
    use ledger_core::{Config, Ledger, TimeMs};
    let mut ledger = Ledger::new(Config::default());
    let mut journal = Vec::new();
    let pubkey = user(4);
    let commands = [
        Command::SetTier { pubkey, tier: Tier::Elite },
        Command::Decide { request_id: RequestId(3), pubkey, estimated_sats: s(30) },
        Command::Credit { payment_id: PaymentId(8), paid_sats: s(1_000) },
    ];
    for command in &commands {
        ledger.apply(command, TimeMs(5), &mut journal).unwrap();
    }
    let snapshot = ledger.snapshot();
    assert_eq!(ledger.request(RequestId(3)).as_ref(), snapshot.requests.first());
    assert_eq!(ledger.request(RequestId(3)).unwrap().pubkey, pubkey);
    assert_eq!(ledger.request(RequestId(4)), None);
    assert_eq!(ledger.payment(PaymentId(8)).as_ref(), snapshot.payments.first());
    assert_eq!(ledger.payment(PaymentId(8)).unwrap().credited_sats, s(100));
    assert_eq!(ledger.payment(PaymentId(9)), None);
}
