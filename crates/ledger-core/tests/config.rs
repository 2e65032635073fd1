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
