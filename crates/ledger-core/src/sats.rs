//! Money and rates: [`Sats`] and [`Bps`].
//!
//! Amounts are whole satoshis. The type's maximum is `i64::MAX` so that every amount the
//! engine can hold also fits a PostgreSQL `BIGINT`; arithmetic is checked and never wraps.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A whole number of satoshis, `0..=Sats::MAX`.
///
/// The field is private: an out-of-range amount cannot be built, and every sum or difference
/// goes through a checked method.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Sats(u64);

// The largest amount must fit a Postgres BIGINT (i64), the adapters' column type.
const _: () = assert!(Sats::MAX.0 <= i64::MAX as u64);

/// An amount that cannot be a [`Sats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Larger than [`Sats::MAX`] (what a Postgres `BIGINT` can hold).
    #[error("amount {0} sats is above the maximum of {max}", max = Sats::MAX.0)]
    TooLarge(u128),
    /// Below zero.
    #[error("amount {0} sats is negative")]
    Negative(i128),
    /// Not a whole number at all.
    #[error("amount {0:?} is not a whole number of sats")]
    Malformed(String),
}

impl Sats {
    /// Zero sats.
    pub const ZERO: Sats = Sats(0);
    /// The largest amount: `i64::MAX`, so it fits a Postgres `BIGINT`.
    pub const MAX: Sats = Sats(i64::MAX as u64);

    /// `amount_sats` as `Sats`, or an error when it is above [`Sats::MAX`].
    pub const fn new(amount_sats: u64) -> Result<Sats, AmountError> {
        if amount_sats > Sats::MAX.0 {
            Err(AmountError::TooLarge(amount_sats as u128))
        } else {
            Ok(Sats(amount_sats))
        }
    }

    /// The amount as a plain number of sats.
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// The amount as a signed number, for sums that may go below zero in checks.
    pub const fn to_i128(self) -> i128 {
        self.0 as i128
    }

    /// True for zero sats.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or `None` above [`Sats::MAX`].
    #[must_use]
    pub const fn checked_add(self, other: Sats) -> Option<Sats> {
        match self.0.checked_add(other.0) {
            Some(v) if v <= Sats::MAX.0 => Some(Sats(v)),
            _ => None,
        }
    }

    /// `self - other`, or `None` below zero.
    #[must_use]
    pub const fn checked_sub(self, other: Sats) -> Option<Sats> {
        match self.0.checked_sub(other.0) {
            Some(v) => Some(Sats(v)),
            None => None,
        }
    }

    /// `self - other`, or zero below zero.
    #[must_use]
    pub const fn saturating_sub(self, other: Sats) -> Sats {
        Sats(self.0.saturating_sub(other.0))
    }

    /// The smaller of two amounts.
    #[must_use]
    pub fn min(self, other: Sats) -> Sats {
        Ord::min(self, other)
    }

    /// `floor(self * bps / 10_000)`: the share of an amount at a rate, rounded down.
    ///
    /// The product is taken in `u128`, so it cannot overflow, and the result is never
    /// larger than `self` because `bps <= 10_000`.
    #[must_use]
    pub fn share_bps(self, rate: Bps) -> Sats {
        let v = u128::from(self.0) * u128::from(rate.to_u16()) / 10_000;
        // `rate <= 10_000` so `v <= self.0 <= Sats::MAX`.
        Sats(u64::try_from(v).expect("a share of an amount is no larger than the amount"))
    }
}

impl TryFrom<u64> for Sats {
    type Error = AmountError;
    fn try_from(v: u64) -> Result<Sats, AmountError> {
        Sats::new(v)
    }
}

impl From<Sats> for u64 {
    fn from(s: Sats) -> u64 {
        s.0
    }
}

impl std::str::FromStr for Sats {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Sats, AmountError> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().enumerate().all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-')) {
            return Err(AmountError::Malformed(s.to_owned()));
        }
        if let Some(rest) = t.strip_prefix('-') {
            if rest.is_empty() {
                return Err(AmountError::Malformed(s.to_owned()));
            }
            if rest.bytes().all(|b| b == b'0') {
                return Ok(Sats::ZERO);
            }
            return Err(AmountError::Negative(rest.parse::<i128>().map(|v| -v).unwrap_or(i128::MIN)));
        }
        match t.parse::<u128>() {
            Ok(v) => match u64::try_from(v) {
                Ok(v) => Sats::new(v),
                Err(_) => Err(AmountError::TooLarge(v)),
            },
            Err(_) => Err(AmountError::TooLarge(u128::MAX)),
        }
    }
}

impl fmt::Debug for Sats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sats", self.0)
    }
}

impl fmt::Display for Sats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A rate in basis points, `0..=10_000` (10 % is 1,000 bp).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Bps(u16);

/// A rate that cannot be a [`Bps`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Above 100 %.
    #[error("rate {0} bp is above 10000 bp (100 %)")]
    Above100(u64),
}

impl Bps {
    /// 100 %.
    pub const FULL: Bps = Bps(10_000);

    /// `bps` basis points, or an error above 10,000.
    pub const fn new(bps: u16) -> Result<Bps, RateError> {
        if bps > 10_000 {
            Err(RateError::Above100(bps as u64))
        } else {
            Ok(Bps(bps))
        }
    }

    /// The rate as basis points.
    pub const fn to_u16(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for Bps {
    type Error = RateError;
    fn try_from(v: u16) -> Result<Bps, RateError> {
        Bps::new(v)
    }
}

impl From<Bps> for u16 {
    fn from(b: Bps) -> u16 {
        b.0
    }
}

impl fmt::Debug for Bps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bp", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_never_wraps() {
        assert_eq!(Sats::MAX.checked_add(Sats::new(1).unwrap()), None);
        assert_eq!(Sats::ZERO.checked_sub(Sats::new(1).unwrap()), None);
        assert!(Sats::new(u64::MAX).is_err());
        assert_eq!(Sats::new(7).unwrap().saturating_sub(Sats::new(9).unwrap()), Sats::ZERO);
    }

    #[test]
    fn debug_shows_units() {
        assert_eq!(format!("{:?}", Sats::new(5).unwrap()), "5 sats");
        assert_eq!(format!("{:?}", Bps::new(1000).unwrap()), "1000 bp");
        assert_eq!(Sats::new(5).unwrap().to_string(), "5");
        assert_eq!(Sats::new(5).unwrap().to_i128(), 5);
        assert_eq!(Sats::MAX.to_i128(), i128::from(i64::MAX));
    }

    #[test]
    fn share_rounds_down() {
        let ten_pct = Bps::new(1000).unwrap();
        assert_eq!(Sats::new(19).unwrap().share_bps(ten_pct), Sats::new(1).unwrap());
        assert_eq!(Sats::new(9).unwrap().share_bps(ten_pct), Sats::ZERO);
        assert_eq!(Sats::MAX.share_bps(Bps::FULL), Sats::MAX);
    }

    #[test]
    fn parse_rejects_negative_and_huge() {
        assert_eq!("12".parse::<Sats>(), Ok(Sats::new(12).unwrap()));
        assert_eq!("-5".parse::<Sats>(), Err(AmountError::Negative(-5)));
        assert!(matches!("99999999999999999999".parse::<Sats>(), Err(AmountError::TooLarge(_))));
        assert!(matches!("1e9".parse::<Sats>(), Err(AmountError::Malformed(_))));
        assert!(matches!("5-3".parse::<Sats>(), Err(AmountError::Malformed(_))));
        assert!(matches!("a5".parse::<Sats>(), Err(AmountError::Malformed(_))));
        assert!(matches!("".parse::<Sats>(), Err(AmountError::Malformed(_))));
    }
}
