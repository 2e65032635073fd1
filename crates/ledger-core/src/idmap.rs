//! [`IdMap`]: a table keyed by `u64` ids, a vector where the ids come in sequence.

use rustc_hash::FxHashMap;

/// A table keyed by a `u64` id that is nearly always handed out in sequence (request and
/// payment ids): ids that keep the table at least half full live in a vector indexed by
/// id, with a presence bit each, so a lookup is an index and the table grows without
/// rehashing; any other id goes to a hash map. Which side holds an id is invisible: every
/// id lives on exactly one side, and nothing here depends on the order of the hash map.
#[derive(Clone, Debug)]
pub struct IdMap<V> {
    dense: Vec<V>,
    present: Vec<u64>,
    sparse: FxHashMap<u64, V>,
    len: usize,
    /// Ids below this go in the vector however sparse: the room [`IdMap::reserve`] was asked for.
    reserved: u64,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { dense: Vec::new(), present: Vec::new(), sparse: FxHashMap::default(), len: 0, reserved: 0 }
    }
}

impl<V: Default> IdMap<V> {
    /// Ids below this always go in the vector; above it, only while it stays half full.
    const SLACK: u64 = 4096;

    /// Room for `n` ids in sequence: ids below `n` go in the vector even when few of them
    /// are used (a checker that books only the requests that touched the pool), so the table
    /// never rehashes on the way to `n`.
    pub fn reserve(&mut self, n: usize) {
        self.reserved = self.reserved.max(n as u64);
        self.dense.reserve(n);
        self.present.reserve(n.div_ceil(64));
    }

    /// Hold no id, keeping the room (and the pages) the table has: a table refilled in the
    /// same way costs no allocation and no page fault. The room asked of [`IdMap::reserve`]
    /// stays asked.
    pub fn clear(&mut self) {
        self.dense.clear();
        self.present.clear();
        self.sparse.clear();
        self.len = 0;
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn in_dense(&self, k: u64) -> bool {
        k < self.dense.len() as u64 && self.present[(k / 64) as usize] & (1 << (k % 64)) != 0
    }

    /// The value of id `k`.
    #[inline]
    pub fn get(&self, k: u64) -> Option<&V> {
        if self.in_dense(k) {
            Some(&self.dense[k as usize])
        } else if self.sparse.is_empty() {
            None
        } else {
            self.sparse.get(&k)
        }
    }

    /// The value of id `k`, to change.
    #[inline]
    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        if self.in_dense(k) {
            Some(&mut self.dense[k as usize])
        } else if self.sparse.is_empty() {
            None
        } else {
            self.sparse.get_mut(&k)
        }
    }

    /// The value of `k`, inserting `V::default()` first if it has none.
    #[inline]
    pub fn get_or_default(&mut self, k: u64) -> &mut V {
        self.get_or_insert_with(k, V::default)
    }

    /// The value of `k`, inserting `make()` first if it has none.
    #[inline]
    pub fn get_or_insert_with(&mut self, k: u64, make: impl FnOnce() -> V) -> &mut V {
        if self.in_dense(k) {
            return &mut self.dense[k as usize];
        }
        if !self.sparse.is_empty() && self.sparse.contains_key(&k) {
            return self.sparse.get_mut(&k).expect("just checked");
        }
        self.insert_new(k, make())
    }

    /// Insert `v` for `k`, which has no value.
    fn insert_new(&mut self, k: u64, v: V) -> &mut V {
        self.len += 1;
        let n = self.dense.len() as u64;
        // Dense within the reserved room, and past it while at least about half the slots
        // up to `k` are used.
        if k < n || k < Self::SLACK.max(2 * self.len as u64).max(self.reserved) {
            if k >= n {
                self.dense.resize_with(k as usize + 1, V::default);
                self.present.resize((k as usize + 1).div_ceil(64), 0);
            }
            self.present[(k / 64) as usize] |= 1 << (k % 64);
            let slot = &mut self.dense[k as usize];
            *slot = v;
            slot
        } else {
            self.sparse.entry(k).or_insert(v)
        }
    }

    /// Insert or replace the value of `k`.
    pub fn insert(&mut self, k: u64, v: V) {
        match self.get_mut(k) {
            Some(slot) => *slot = v,
            None => {
                self.insert_new(k, v);
            }
        }
    }

    /// Take the value of `k` out, if it has one. The vector keeps its length: a later
    /// insert of `k` finds its slot again.
    pub fn remove(&mut self, k: u64) -> Option<V> {
        if self.in_dense(k) {
            self.present[(k / 64) as usize] &= !(1 << (k % 64));
            self.len -= 1;
            return Some(std::mem::take(&mut self.dense[k as usize]));
        }
        let v = self.sparse.remove(&k)?;
        self.len -= 1;
        Some(v)
    }

    /// Every `(id, value)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let dense = self.dense.iter().enumerate().map(|(k, v)| (k as u64, v)).filter(|(k, _)| self.in_dense(*k));
        dense.chain(self.sparse.iter().map(|(k, v)| (*k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::IdMap;

    #[test]
    fn id_map_holds_sequential_sparse_and_mixed_ids() {
        let mut m: IdMap<u64> = IdMap::default();
        let mut model = std::collections::BTreeMap::new();
        // Sequential ids, huge ids, and ids that a later growth of the vector covers.
        let ids = (0..10_000u64).chain([u64::MAX, 1 << 40, 50_000, 30_000, 12_000, 25_000]).chain(10_000..40_000);
        for k in ids {
            let v = k.wrapping_mul(7);
            let before = m.get(k).copied();
            assert_eq!(before, model.get(&k).copied());
            *m.get_or_insert_with(k, || v) += 1;
            *model.entry(k).or_insert(v) += 1;
        }
        m.insert(3, 1);
        model.insert(3, 1);
        // Taken out of either side, and put back.
        for k in [7, 1 << 40, 39_999] {
            assert_eq!(m.remove(k), model.remove(&k));
            assert_eq!(m.get(k), None);
            assert_eq!(m.remove(k), None);
        }
        m.insert(7, 70);
        model.insert(7, 70);
        assert_eq!(m.len(), model.len());
        for (k, v) in &model {
            assert_eq!(m.get(*k), Some(v));
        }
        assert_eq!(m.get(40_001), None);
        assert_eq!(m.get_mut(1 << 41), None);
        let mut all: Vec<(u64, u64)> = m.iter().map(|(k, v)| (k, *v)).collect();
        all.sort_unstable();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }

    /// Where an id lives is invisible to callers but decides the table's speed and memory: ids in
    /// sequence, and ids that keep the vector at least half full, go in the vector; the rest go in
    /// the hash map.
    #[test]
    fn ids_go_to_the_vector_while_it_stays_half_full() {
        let mut m: IdMap<u64> = IdMap::default();
        assert!(m.is_empty());
        m.reserve(1_000);
        assert!(m.dense.capacity() >= 1_000 && m.present.capacity() >= 16, "reserve makes room up front");
        for k in 0..10 {
            m.insert(k, k);
        }
        assert!(!m.is_empty());
        assert_eq!((m.dense.len(), m.sparse.len()), (10, 0), "ids in sequence are dense");

        // Below SLACK everything is dense; at SLACK, with few ids held, it is sparse.
        let mut m: IdMap<u64> = IdMap::default();
        m.insert(0, 0);
        m.insert(4_095, 1);
        assert_eq!(m.dense.len(), 4_096);
        m.insert(4_096, 2);
        assert!(m.sparse.contains_key(&4_096) && !m.in_dense(4_096), "4096 is past the slack");
        assert_eq!(m.len(), 3);

        // Past SLACK, an id below twice the count held is dense.
        let mut m: IdMap<u64> = IdMap::default();
        for k in 0..3_000 {
            m.insert(k, k);
        }
        m.insert(5_000, 1);
        assert!(m.in_dense(5_000) && m.sparse.is_empty(), "5000 < 2 * 3001 keeps the vector half full");
        m.insert(7_000, 2);
        assert!(m.sparse.contains_key(&7_000), "7000 >= 2 * 3002 would leave the vector mostly empty");

        // Within the reserved room an id is dense however few are held; past it, the rule above.
        let mut m: IdMap<u64> = IdMap::default();
        m.reserve(100_000);
        m.insert(0, 0);
        m.insert(99_999, 1);
        assert!(m.in_dense(99_999) && m.sparse.is_empty(), "99,999 is within the room reserved");
        m.insert(100_000, 2);
        assert!(m.sparse.contains_key(&100_000), "100,000 is past it, with 2 ids held");

        // A cleared table holds nothing and keeps its room.
        let room = m.dense.capacity();
        m.clear();
        assert!(m.is_empty() && m.get(0).is_none() && m.get(100_000).is_none() && m.iter().next().is_none());
        assert_eq!(m.dense.capacity(), room, "clear keeps the vector's room");
        m.insert(50_000, 3);
        assert!(m.in_dense(50_000), "and the reserved room is still dense");
        assert_eq!(m.get(0), None, "a slot filled before the clear is not present after it");

        let mut m: IdMap<u64> = IdMap::default();
        *m.get_or_default(5) += 3;
        *m.get_or_default(5) += 4;
        assert_eq!(m.get(5), Some(&7), "get_or_default keeps what it inserted");
    }
}
