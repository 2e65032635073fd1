//! Identifiers and time: [`Pubkey`], [`Tier`], [`RequestId`], [`PaymentId`], [`TimeMs`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Milliseconds in one daily window.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// A point in time: milliseconds since the Unix epoch, always passed in by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeMs(pub u64);

impl TimeMs {
    /// Milliseconds from `earlier` to `self`, zero when the clock went backwards.
    pub const fn since(self, earlier: TimeMs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + ms`, saturating at the end of time.
    #[must_use]
    pub const fn plus_ms(self, ms: u64) -> TimeMs {
        TimeMs(self.0.saturating_add(ms))
    }
}

/// The id of a request (the seed's `requestHash`): every command about one request carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// The id of a paid invoice, which makes a credit idempotent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentId(pub u64);

/// A user's trust tier; each has its own daily free budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// No free budget by default: trust must be earned first.
    New,
    /// The first tier with a free budget.
    Established,
    /// A larger budget.
    Trusted,
    /// The largest budget.
    Elite,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 4] = [Tier::New, Tier::Established, Tier::Trusted, Tier::Elite];

    /// The tier's name as the seed spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::New => "new",
            Tier::Established => "established",
            Tier::Trusted => "trusted",
            Tier::Elite => "elite",
        }
    }

    /// The tier's position in [`Tier::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no tier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?} (expected one of new, established, trusted, elite)")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Tier, UnknownTier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownTier(s.to_owned()))
    }
}

/// A Nostr public key: 32 bytes, written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pubkey([u8; 32]);

/// A string that is not a valid [`Pubkey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PubkeyError {
    /// Not 64 characters long.
    #[error("pubkey must be 64 lowercase hex characters, got {0} characters")]
    WrongLength(usize),
    /// A character that is not `0-9a-f`.
    #[error("pubkey must be 64 lowercase hex characters, got {found:?} at position {position}")]
    NotLowercaseHex {
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
}

impl Pubkey {
    /// A pubkey from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Pubkey {
        Pubkey(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Pubkey {
    type Err = PubkeyError;
    fn from_str(s: &str) -> Result<Pubkey, PubkeyError> {
        let n_chars = s.chars().count();
        if let Some((position, found)) = s.chars().enumerate().find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f')) {
            if n_chars == 64 || position < 64 {
                return Err(PubkeyError::NotLowercaseHex { position, found });
            }
        }
        if n_chars != 64 {
            return Err(PubkeyError::WrongLength(n_chars));
        }
        let mut out = [0u8; 32];
        let digits = s.as_bytes();
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = (hex_value(digits[2 * i]) << 4) | hex_value(digits[2 * i + 1]);
        }
        Ok(Pubkey(out))
    }
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => unreachable!("validated as lowercase hex"),
    }
}

impl fmt::Display for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Pubkey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pubkey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pubkey, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubkey_round_trips_and_rejects() {
        let k = Pubkey::from_bytes([0x5a; 32]);
        let s = k.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<Pubkey>(), Ok(k));
        assert_eq!(format!("{k:?}"), s);
        assert_eq!("abc".parse::<Pubkey>(), Err(PubkeyError::WrongLength(3)));
        let upper = s.to_uppercase();
        assert!(matches!(upper.parse::<Pubkey>(), Err(PubkeyError::NotLowercaseHex { .. })));
    }

    #[test]
    fn tiers_parse() {
        assert_eq!("elite".parse::<Tier>(), Ok(Tier::Elite));
        assert_eq!("gold".parse::<Tier>(), Err(UnknownTier("gold".into())));
    }
}
