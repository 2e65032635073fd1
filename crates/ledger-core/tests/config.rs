//! Configuration: the seed's defaults, TOML, the seed's environment variables, and a clear
//! error naming the variable or key for every malformed value.

use ledger_core::{Bps, Config, ConfigError, Sats, Tier};

fn env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_env(move |k| pairs.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone()))
}

#[test]
fn defaults_are_the_seeds() {
    let c = Config::default();
    let budgets: Vec<u64> = Tier::ALL.iter().map(|t| c.budget(*t).to_u64()).collect();
    assert_eq!(budgets, [0, 50, 200, 1000]);
    assert_eq!(c.pool_initial_sats, Sats::new(10_000).unwrap());
    assert_eq!(c.credit_bps, Bps::new(1_000).unwrap());
    assert_eq!(env(&[]).unwrap(), c);
}

#[test]
fn environment_overrides() {
    let c = env(&[
        ("FREE_TIER_BUDGET_NEW", "5"),
        ("FREE_TIER_BUDGET_ELITE", "2000"),
        ("FREE_TIER_POOL_INITIAL_SATS", "123"),
        ("FREE_TIER_POOL_CREDIT_PCT", "12.5"),
    ])
    .unwrap();
    assert_eq!(c.budget(Tier::New).to_u64(), 5);
    assert_eq!(c.budget(Tier::Elite).to_u64(), 2000);
    assert_eq!(c.budget(Tier::Trusted).to_u64(), 200);
    assert_eq!(c.pool_initial_sats.to_u64(), 123);
    assert_eq!(c.credit_bps.to_u16(), 1250);
}

#[test]
fn malformed_environment_values_name_the_variable() {
    let cases = [
        ("FREE_TIER_BUDGET_NEW", "abc", "FREE_TIER_BUDGET_NEW=\"abc\": amount \"abc\" is not a whole number of sats"),
        ("FREE_TIER_BUDGET_TRUSTED", "-5", "FREE_TIER_BUDGET_TRUSTED=\"-5\": amount -5 sats is negative"),
        ("FREE_TIER_BUDGET_ELITE", "1e99", "FREE_TIER_BUDGET_ELITE=\"1e99\": amount \"1e99\" is not a whole number of sats"),
        (
            "FREE_TIER_POOL_INITIAL_SATS",
            "99999999999999999999",
            "FREE_TIER_POOL_INITIAL_SATS=\"99999999999999999999\": amount 99999999999999999999 sats is above the maximum of 9223372036854775807",
        ),
        ("FREE_TIER_POOL_CREDIT_PCT", "101", "FREE_TIER_POOL_CREDIT_PCT=\"101\": percentage over 100"),
        ("FREE_TIER_POOL_CREDIT_PCT", "-1", "FREE_TIER_POOL_CREDIT_PCT=\"-1\": a percentage cannot be negative"),
        ("FREE_TIER_POOL_CREDIT_PCT", "1e99", "FREE_TIER_POOL_CREDIT_PCT=\"1e99\": expected a percentage such as 10 or 12.5"),
        ("FREE_TIER_POOL_CREDIT_PCT", "12.345", "FREE_TIER_POOL_CREDIT_PCT=\"12.345\": at most two decimals (a basis point) are allowed"),
        ("FREE_TIER_POOL_CREDIT_PCT", "", "FREE_TIER_POOL_CREDIT_PCT=\"\": expected a percentage such as 10 or 12.5"),
    ];
    for (var, value, expected) in cases {
        let err = env(&[(var, value)]).unwrap_err();
        assert_eq!(err.to_string(), expected, "{var}={value}");
    }
}

#[test]
fn toml_config() {
    let c = Config::from_toml_str("pool_initial_sats = 500\ncredit_pct = 2.5\n[budget_sats]\ntrusted = 300\n").unwrap();
    assert_eq!(c.pool_initial_sats.to_u64(), 500);
    assert_eq!(c.credit_bps.to_u16(), 250);
    assert_eq!(c.budget(Tier::Trusted).to_u64(), 300);
    assert_eq!(c.budget(Tier::Elite).to_u64(), 1000);
}

#[test]
fn toml_errors_name_the_key_and_line() {
    let unknown = Config::from_toml_str("pool_initial_sats = 5\npool_sats = 7\n").unwrap_err().to_string();
    assert!(unknown.contains("line 2") && unknown.contains("pool_sats"), "{unknown}");
    let negative = Config::from_toml_str("\n\npool_initial_sats = -5\n").unwrap_err().to_string();
    assert!(negative.contains("line 3") && negative.contains("pool_initial_sats"), "{negative}");
    let tier = Config::from_toml_str("[budget_sats]\ngold = 5\n").unwrap_err().to_string();
    assert!(tier.contains("gold"), "{tier}");
    let pct = Config::from_toml_str("credit_pct = 150\n").unwrap_err().to_string();
    assert!(pct.contains("credit_pct") && pct.contains("over 100"), "{pct}");
}

#[test]
fn pubkeys_are_validated() {
    use ledger_core::{Pubkey, PubkeyError};
    let good = "a".repeat(64);
    assert!(good.parse::<Pubkey>().is_ok());
    assert_eq!("ab".parse::<Pubkey>(), Err(PubkeyError::WrongLength(2)));
    assert_eq!("A".repeat(64).parse::<Pubkey>(), Err(PubkeyError::NotLowercaseHex { position: 0, found: 'A' }));
    let mut bad = "0".repeat(63);
    bad.push('g');
    assert_eq!(bad.parse::<Pubkey>(), Err(PubkeyError::NotLowercaseHex { position: 63, found: 'g' }));
    assert_eq!("0".repeat(65).parse::<Pubkey>(), Err(PubkeyError::WrongLength(65)));
    let msg = "xyz".parse::<Pubkey>().unwrap_err().to_string();
    assert_eq!(msg, "pubkey must be 64 lowercase hex characters, got 'x' at position 0");
}

#[test]
fn percentages_take_up_to_two_decimals_and_nothing_malformed() {
    use ledger_core::config::parse_pct;
    for (text, bp) in [("12.34", 1234), ("12.5", 1250), ("0.01", 1), ("100", 10_000), (" 7 ", 700), ("100.00", 10_000)]
    {
        assert_eq!(parse_pct("credit_pct", text).unwrap().to_u16(), bp, "{text}");
    }
    for text in ["5.", ".5", "1.2.3", "1x", "x1", "1.x", "100.01", "12.345", "-0"] {
        assert!(parse_pct("credit_pct", text).is_err(), "{text:?} must be refused");
    }
}

#[test]
fn a_zero_reservation_ttl_is_refused_in_toml_and_json() {
    use ledger_core::ConfigJson;
    let err = Config::from_toml_str("reservation_ttl_ms = 0\n").unwrap_err().to_string();
    assert!(err.contains("reservation_ttl_ms") && err.contains("at least 1"), "{err}");
    assert_eq!(Config::from_toml_str("reservation_ttl_ms = 5\n").unwrap().reservation_ttl_ms, 5);

    let mut budgets = Config::default().budget_sats;
    *budgets.of_mut(Tier::New) = Sats::new(7).unwrap();
    let json = ConfigJson {
        budget_sats: budgets,
        pool_initial_sats: Sats::new(123).unwrap(),
        credit_bps: Bps::new(1_250).unwrap(),
        reservation_ttl_ms: 9,
    };
    let c = Config::try_from(json).unwrap();
    assert_eq!(
        (c.budget(Tier::New).to_u64(), c.pool_initial_sats.to_u64(), c.credit_bps.to_u16(), c.reservation_ttl_ms),
        (7, 123, 1_250, 9)
    );
    assert_eq!(ConfigJson::from(c), json, "the JSON form round-trips");
    let zero = ConfigJson { reservation_ttl_ms: 0, ..json };
    assert_eq!(Config::try_from(zero).unwrap_err(), "reservation_ttl_ms: must be at least 1");
}
