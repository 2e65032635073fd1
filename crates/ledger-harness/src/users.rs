//! Simulated users' pubkeys: a deterministic, valid key for each user index, the index back
//! from a key, and a name for reports (`user#11`, or the hex of any other key).
//!
//! These are the harness's, not the ledger's: a service's pubkeys are real keys, and
//! `ledger_core::Pubkey` knows nothing of simulated users.

use std::fmt;

use ledger_core::Pubkey;

/// The marker byte that ends every simulated user's key.
const MARK: u8 = 0x5a;

/// A deterministic pubkey for simulated user `user_idx` (not a real key, but a valid one).
pub fn user_pubkey(user_idx: u64) -> Pubkey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&user_idx.to_be_bytes());
    b[31] = MARK;
    Pubkey::from_bytes(b)
}

/// The simulated user index back from [`user_pubkey`]; `None` for any other key.
pub fn user_of(pubkey: &Pubkey) -> Option<u64> {
    let b = pubkey.as_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&b[..8]);
    (b[8..31].iter().all(|&x| x == 0) && b[31] == MARK).then(|| u64::from_be_bytes(head))
}

/// A pubkey as reports name it: `user#N` for a simulated user, the hex otherwise.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Named(pub Pubkey);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match user_of(&self.0) {
            Some(u) => write!(f, "user#{u}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_key_is_valid_and_names_its_user() {
        let k = user_pubkey(42);
        assert_eq!(k.to_string().parse::<Pubkey>(), Ok(k));
        assert_eq!(user_of(&k), Some(42));
        assert_eq!(Named(k).to_string(), "user#42");
        let other = Pubkey::from_bytes([7; 32]);
        assert_eq!(user_of(&other), None);
        assert_eq!(Named(other).to_string(), other.to_string());
    }
}
