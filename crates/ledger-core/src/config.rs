//! Ledger configuration: tier budgets, the pool's genesis balance, the credit rate.
//!
//! Defaults are the seed's. A configuration comes from TOML ([`Config::from_toml_str`]) or
//! from the seed's environment variables ([`Config::from_env`], given a lookup function so
//! that this crate never reads the process environment itself). A malformed value is an
//! error naming the key or variable, never a silent fallback to the default.

use serde::{Deserialize, Serialize};

use crate::ids::Tier;
use crate::sats::{Bps, Sats};

/// The seed's environment variables, in the order [`Config::from_env`] reads them.
pub const ENV_VARS: [&str; 6] = [
    "FREE_TIER_BUDGET_NEW",
    "FREE_TIER_BUDGET_ESTABLISHED",
    "FREE_TIER_BUDGET_TRUSTED",
    "FREE_TIER_BUDGET_ELITE",
    "FREE_TIER_POOL_INITIAL_SATS",
    "FREE_TIER_POOL_CREDIT_PCT",
];

/// Daily free budget of each tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Budget of [`Tier::New`].
    pub new: Sats,
    /// Budget of [`Tier::Established`].
    pub established: Sats,
    /// Budget of [`Tier::Trusted`].
    pub trusted: Sats,
    /// Budget of [`Tier::Elite`].
    pub elite: Sats,
}

impl Budgets {
    /// The budget of `tier`.
    pub const fn of(&self, tier: Tier) -> Sats {
        match tier {
            Tier::New => self.new,
            Tier::Established => self.established,
            Tier::Trusted => self.trusted,
            Tier::Elite => self.elite,
        }
    }

    /// Mutable access to the budget of `tier`.
    pub fn of_mut(&mut self, tier: Tier) -> &mut Sats {
        match tier {
            Tier::New => &mut self.new,
            Tier::Established => &mut self.established,
            Tier::Trusted => &mut self.trusted,
            Tier::Elite => &mut self.elite,
        }
    }
}

/// Everything the ledger's rules depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ConfigToml")]
pub struct Config {
    /// Daily free budget per tier.
    pub budget_sats: Budgets,
    /// The pool's balance at genesis.
    pub pool_initial_sats: Sats,
    /// Share of every paid invoice credited to the pool, in basis points.
    pub credit_bps: Bps,
    /// How long a reservation may stay outstanding before `expire` releases it.
    pub reservation_ttl_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            budget_sats: Budgets { new: Sats::ZERO, established: sats(50), trusted: sats(200), elite: sats(1_000) },
            pool_initial_sats: sats(10_000),
            credit_bps: Bps::new(1_000).expect("10 % is a valid rate"),
            reservation_ttl_ms: 10 * 60 * 1000,
        }
    }
}

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("constant amount in range")
}

/// A configuration as JSON carries it (a conformance trace's header, the engine protocol's
/// `hello` and `reset`): the serialized form of [`Config`], every key required, none unknown,
/// the rate in basis points. [`Config`] itself reads the TOML form, which takes a percentage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigJson {
    /// Daily free budget per tier.
    pub budget_sats: Budgets,
    /// The pool's balance at genesis.
    pub pool_initial_sats: Sats,
    /// Share of every paid invoice credited to the pool, in basis points.
    pub credit_bps: Bps,
    /// How long a reservation may stay outstanding; at least 1.
    pub reservation_ttl_ms: u64,
}

impl TryFrom<ConfigJson> for Config {
    type Error = String;

    fn try_from(c: ConfigJson) -> Result<Config, String> {
        if c.reservation_ttl_ms == 0 {
            return Err("reservation_ttl_ms: must be at least 1".into());
        }
        Ok(Config {
            budget_sats: c.budget_sats,
            pool_initial_sats: c.pool_initial_sats,
            credit_bps: c.credit_bps,
            reservation_ttl_ms: c.reservation_ttl_ms,
        })
    }
}

impl From<Config> for ConfigJson {
    fn from(c: Config) -> ConfigJson {
        ConfigJson {
            budget_sats: c.budget_sats,
            pool_initial_sats: c.pool_initial_sats,
            credit_bps: c.credit_bps,
            reservation_ttl_ms: c.reservation_ttl_ms,
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{name}={value:?}: {reason}")]
    BadValue {
        /// The key or environment variable.
        name: String,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A TOML document that does not match the schema (the message names the key and line).
    #[error("{0}")]
    Toml(String),
}

impl Config {
    /// The configuration described by a TOML document. Missing keys keep their defaults;
    /// unknown keys and bad values are errors that name the key and line.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))
    }

    /// The defaults overridden by the seed's environment variables, read through `lookup`
    /// (pass `|k| std::env::var(k).ok()` from a binary). An unset variable keeps its default.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (name, tier) in ENV_VARS[..4].iter().zip(Tier::ALL) {
            if let Some(value) = lookup(name) {
                *config.budget_sats.of_mut(tier) = parse_sats(name, &value)?;
            }
        }
        if let Some(value) = lookup(ENV_VARS[4]) {
            config.pool_initial_sats = parse_sats(ENV_VARS[4], &value)?;
        }
        if let Some(value) = lookup(ENV_VARS[5]) {
            config.credit_bps = parse_pct(ENV_VARS[5], &value)?;
        }
        Ok(config)
    }

    /// The budget of `tier`.
    pub const fn budget(&self, tier: Tier) -> Sats {
        self.budget_sats.of(tier)
    }
}

fn bad(name: &str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError::BadValue { name: name.to_owned(), value: value.to_owned(), reason: reason.to_string() }
}

fn parse_sats(name: &str, value: &str) -> Result<Sats, ConfigError> {
    value.parse::<Sats>().map_err(|e| bad(name, value, e))
}

/// A percentage with at most two decimals (`10`, `12.5`, `0.01`) as basis points.
///
/// More decimals cannot be held exactly in basis points, so they are refused rather than
/// rounded: an operator who writes `12.345` should learn that it is not what runs.
pub fn parse_pct(name: &str, value: &str) -> Result<Bps, ConfigError> {
    let t = value.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_ok(whole) || !digits_ok(frac) || (t.contains('.') && frac.is_empty()) {
        let reason = if t.starts_with('-') {
            "a percentage cannot be negative"
        } else {
            "expected a percentage such as 10 or 12.5"
        };
        return Err(bad(name, value, reason));
    }
    if frac.len() > 2 {
        return Err(bad(name, value, "at most two decimals (a basis point) are allowed"));
    }
    let whole_pct: u64 = whole.parse().map_err(|_| bad(name, value, "percentage over 100"))?;
    let frac_bp: u64 = format!("{frac:0<2}").parse().expect("two digits");
    let bp = whole_pct.checked_mul(100).and_then(|w| w.checked_add(frac_bp));
    match bp {
        Some(bp) if bp <= 10_000 => Ok(Bps::new(bp as u16).expect("checked range")),
        _ => Err(bad(name, value, "percentage over 100")),
    }
}

/// The TOML form of [`Config`]; exists only to validate before a `Config` is built.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigToml {
    #[serde(default)]
    budget_sats: Option<BudgetsToml>,
    #[serde(default)]
    pool_initial_sats: Option<Sats>,
    #[serde(default)]
    credit_pct: Option<toml::Value>,
    #[serde(default)]
    credit_bps: Option<Bps>,
    #[serde(default)]
    reservation_ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetsToml {
    new: Option<Sats>,
    established: Option<Sats>,
    trusted: Option<Sats>,
    elite: Option<Sats>,
}

impl TryFrom<ConfigToml> for Config {
    type Error = String;
    fn try_from(raw: ConfigToml) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(b) = raw.budget_sats {
            for (tier, v) in Tier::ALL.into_iter().zip([b.new, b.established, b.trusted, b.elite]) {
                if let Some(v) = v {
                    *c.budget_sats.of_mut(tier) = v;
                }
            }
        }
        if let Some(v) = raw.pool_initial_sats {
            c.pool_initial_sats = v;
        }
        match (raw.credit_pct, raw.credit_bps) {
            (Some(_), Some(_)) => return Err("credit_pct and credit_bps are both given: give one".into()),
            (Some(v), None) => {
                let text = match v {
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => format!("{f}"),
                    toml::Value::String(s) => s,
                    other => return Err(format!("credit_pct: expected a number, got {}", other.type_str())),
                };
                c.credit_bps = parse_pct("credit_pct", &text).map_err(|e| e.to_string())?;
            }
            (None, Some(b)) => c.credit_bps = b,
            (None, None) => {}
        }
        if let Some(v) = raw.reservation_ttl_ms {
            if v == 0 {
                return Err("reservation_ttl_ms: must be at least 1".into());
            }
            c.reservation_ttl_ms = v;
        }
        Ok(c)
    }
}
