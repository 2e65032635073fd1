//! Which slot of a table holds each pubkey, without a second copy of the keys.
//!
//! A ledger keeps its identities in a vector, each beside its pubkey, and finds one by its
//! pubkey through an index. A `HashMap<Pubkey, u32>` for that index stores every 32-byte key
//! again, 36 bytes a bucket: for thousands of identities that table no longer stays in a
//! core's cache beside the rest of a run, and a lookup misses twice, once on the map's key
//! and once on the identity. [`KeyIndex`] holds only the 4-byte slot numbers, hashed by the
//! key the slot holds, which it reads from the table itself: 5,000 identities take about 40 KB
//! of index (the slot numbers and the table's control bytes), and a lookup reads the one identity it was after to compare the key. Measured on
//! `ledger-sim plan fixtures/scenarios/plan-launch.toml` (README, "A planning question, end to
//! end").
//!
//! Nothing iterates the index, so its order cannot reach an outcome.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::ids::Pubkey;

/// Slots of a table by the pubkey each holds. Every method takes `key_of`, the pubkey in a
/// slot: the index is only right for the table whose keys it is given, and a slot's key must
/// not change while the slot is in the index.
#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    slots: HashTable<u32>,
}

fn hash(pubkey: &Pubkey) -> u64 {
    FxBuildHasher.hash_one(pubkey)
}

impl KeyIndex {
    /// The slot holding `pubkey`, if one does.
    #[inline]
    pub fn get<'k>(&self, pubkey: &Pubkey, key_of: impl Fn(u32) -> &'k Pubkey) -> Option<u32> {
        self.slots.find(hash(pubkey), |&slot| key_of(slot) == pubkey).copied()
    }

    /// Index `slot`, which holds `pubkey` (`key_of(slot)` is `pubkey`). Returns the slot that
    /// held it before, which the index no longer names, if there was one.
    pub fn insert<'k>(&mut self, pubkey: &Pubkey, slot: u32, key_of: impl Fn(u32) -> &'k Pubkey) -> Option<u32> {
        debug_assert!(key_of(slot) == pubkey, "the slot indexed holds the key");
        let h = hash(pubkey);
        match self.slots.find_mut(h, |&s| key_of(s) == pubkey) {
            Some(held) => Some(std::mem::replace(held, slot)),
            None => {
                self.slots.insert_unique(h, slot, |&s| hash(key_of(s)));
                None
            }
        }
    }

    /// Forget the slot holding `pubkey`; returns it, if there was one. The table still holds
    /// the key: remove it from the index before the slot's key changes or goes.
    pub fn remove<'k>(&mut self, pubkey: &Pubkey, key_of: impl Fn(u32) -> &'k Pubkey) -> Option<u32> {
        match self.slots.find_entry(hash(pubkey), |&s| key_of(s) == pubkey) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    /// Room for `additional` more slots before the index grows.
    pub fn reserve<'k>(&mut self, additional: usize, key_of: impl Fn(u32) -> &'k Pubkey) {
        self.slots.reserve(additional, |&s| hash(key_of(s)));
    }

    /// Name no slot, keeping the room.
    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// How many slots are indexed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no slot is indexed.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Pubkey {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&i.to_be_bytes());
        b[31] = 0x5a;
        Pubkey::from_bytes(b)
    }

    /// Against a `BTreeMap` of the same keys: inserts (of new keys and over held ones),
    /// removals, lookups of keys held and not, through growth from no room and after a clear.
    #[test]
    fn the_index_finds_what_a_map_finds() {
        let mut table: Vec<Pubkey> = Vec::new();
        let mut index = KeyIndex::default();
        let mut model = std::collections::BTreeMap::new();
        let mut x: u64 = 1;
        for round in 0..2 {
            for step in 0..20_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let k = key((x >> 33) % 3_000);
                match (x >> 20) % 4 {
                    0 | 1 => {
                        table.push(k);
                        let slot = (table.len() - 1) as u32;
                        let before = index.insert(&k, slot, |s| &table[s as usize]);
                        assert_eq!(before, model.insert(k, slot), "round {round} step {step}");
                    }
                    2 => assert_eq!(index.remove(&k, |s| &table[s as usize]), model.remove(&k)),
                    _ => assert_eq!(index.get(&k, |s| &table[s as usize]), model.get(&k).copied()),
                }
                assert_eq!(index.len(), model.len());
            }
            for (k, slot) in &model {
                assert_eq!(index.get(k, |s| &table[s as usize]), Some(*slot));
            }
            assert_eq!(index.get(&key(1 << 40), |s| &table[s as usize]), None);
            index.clear();
            model.clear();
            assert!(index.is_empty());
            index.reserve(5_000, |s| &table[s as usize]);
        }
    }
}
