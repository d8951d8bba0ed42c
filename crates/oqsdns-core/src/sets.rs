//! A table of client addresses that never grows: every slot is allocated up front, in shards of
//! 4-way sets indexed by a keyed hash (the key is random per table, so collisions cannot be aimed).
//! An address not in its set takes the slot its owner's rule picks among the set's four. The rate
//! limiter's buckets and the client table's rows are kept in one each.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

/// Slots of one set: the candidates when an address needs a slot.
pub(crate) const WAYS: usize = 4;

/// The table key of a client: its IPv6 address, IPv4 (also IPv4-mapped) as `::ffff:a.b.c.d`.
pub(crate) fn key_of(client: IpAddr) -> [u8; 16] {
    match client.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A slot of a [`Sets`] table.
pub(crate) trait Slot: Clone + Default {
    /// The address the slot holds; `None` when it is free.
    fn key(&self) -> Option<&[u8; 16]>;
}

/// The fixed table.
#[derive(Debug)]
pub(crate) struct Sets<S> {
    shards: Box<[Mutex<Box<[S]>>]>,
    sets_per_shard: usize,
    hasher: crate::hashing::Keyed,
}

impl<S: Slot> Sets<S> {
    /// `shards` shards (rounded up to a power of two) of at least `slots` slots in all (rounded
    /// up to whole sets in every shard); `slots` 0 allocates nothing.
    pub(crate) fn new(shards: usize, slots: usize) -> Self {
        let shards = shards.max(1).next_power_of_two();
        let (shards, sets_per_shard) = match slots {
            0 => (0, 0),
            _ => (shards, slots.div_ceil(shards * WAYS)),
        };
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(vec![S::default(); sets_per_shard * WAYS].into_boxed_slice()))
                .collect(),
            sets_per_shard,
            hasher: crate::hashing::keyed(),
        }
    }

    /// Whether it has no slot at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Addresses tracked at once.
    pub(crate) fn slots(&self) -> usize {
        self.shards.len() * self.sets_per_shard * WAYS
    }

    /// Bytes the table holds; fixed from the start.
    pub(crate) fn bytes(&self) -> usize {
        self.slots() * std::mem::size_of::<S>()
            + self.shards.len() * std::mem::size_of::<Mutex<Box<[S]>>>()
    }

    /// `f` on the slot of `key`, under its shard's lock: the slot holding it, else the one of its
    /// set that `victim` picks (an index below [`WAYS`] of the four it is shown), filled with
    /// `fresh` first. `None` when the table is empty.
    pub(crate) fn with<R>(
        &self,
        key: [u8; 16],
        victim: impl FnOnce(&[S]) -> usize,
        fresh: impl FnOnce() -> S,
        f: impl FnOnce(&mut S) -> R,
    ) -> Option<R> {
        if self.is_empty() {
            return None;
        }
        let hash = self.hasher.hash_one(key);
        // A power of two: the shard is the hash's low bits.
        let shard = &self.shards[(hash as usize) & (self.shards.len() - 1)];
        let set = ((hash >> 32) as usize) % self.sets_per_shard;
        let mut slots = lock(shard);
        let ways = &mut slots[set * WAYS..(set + 1) * WAYS];
        let at = match ways.iter().position(|s| s.key() == Some(&key)) {
            Some(at) => at,
            None => {
                let at = victim(ways).min(WAYS - 1);
                ways[at] = fresh();
                at
            }
        };
        Some(f(&mut ways[at]))
    }

    /// `f` on every slot in use, a shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&S)) {
        for shard in self.shards.iter() {
            lock(shard)
                .iter()
                .filter(|s| s.key().is_some())
                .for_each(&mut f);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Row {
        key: Option<[u8; 16]>,
        hits: u32,
    }

    impl Slot for Row {
        fn key(&self) -> Option<&[u8; 16]> {
            self.key.as_ref()
        }
    }

    fn key(i: u32) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[12..].copy_from_slice(&i.to_be_bytes());
        key
    }

    /// Counts a hit of `i`; a new address takes a free slot, else the set's least hit one.
    fn hit(sets: &Sets<Row>, i: u32) -> Option<u32> {
        let victim = |ways: &[Row]| {
            (0..WAYS)
                .min_by_key(|&w| (ways[w].key.is_some(), ways[w].hits))
                .unwrap_or(0)
        };
        let fresh = || Row {
            key: Some(key(i)),
            hits: 0,
        };
        sets.with(key(i), victim, fresh, |row| {
            row.hits += 1;
            row.hits
        })
    }

    #[test]
    fn an_address_keeps_its_slot_and_the_table_stays_its_size() {
        let sets = Sets::<Row>::new(8, 256);
        assert_eq!(sets.slots(), 256);
        let bytes = sets.bytes();
        assert_eq!(hit(&sets, 7), Some(1));
        assert_eq!(hit(&sets, 7), Some(2), "found again in its set");
        for i in 0..10_000 {
            hit(&sets, 1_000 + i);
        }
        let mut used = 0;
        sets.for_each(|_| used += 1);
        assert_eq!(used, 256, "every slot taken, none more");
        assert_eq!((sets.slots(), sets.bytes()), (256, bytes), "it never grows");
    }

    #[test]
    fn the_victim_rule_decides_who_stays() {
        // One shard of one set: four addresses, hit 4, 3, 2 and 1 times; a fifth replaces the
        // least hit, and the others keep their counts.
        let sets = Sets::<Row>::new(1, WAYS);
        for (i, times) in [(1, 4), (2, 3), (3, 2), (4, 1)] {
            for _ in 0..times {
                hit(&sets, i);
            }
        }
        assert_eq!(hit(&sets, 5), Some(1));
        assert_eq!(hit(&sets, 1), Some(5));
        assert_eq!(hit(&sets, 2), Some(4));
        assert_eq!(
            hit(&sets, 4),
            Some(1),
            "4 was the one replaced, and comes back new"
        );
    }

    #[test]
    fn no_slots_hold_nothing() {
        let sets = Sets::<Row>::new(16, 0);
        assert!(sets.is_empty());
        assert_eq!((sets.slots(), sets.bytes()), (0, 0));
        assert_eq!(hit(&sets, 1), None);
    }

    #[test]
    fn ipv4_and_its_mapped_form_are_one_key() {
        let v4: IpAddr = "192.168.10.100".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.168.10.100".parse().unwrap();
        assert_eq!(key_of(v4), key_of(mapped));
        assert_ne!(key_of(v4), key_of("2001:db8::1".parse().unwrap()));
    }
}
