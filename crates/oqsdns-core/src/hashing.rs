//! The hash of the tables looked up per query with what clients send: the cache's and the
//! in-flight table's keys, the router's suffixes, the rate limiter's and the client table's
//! addresses.

/// The hasher of one table.
pub type Keyed = foldhash::quality::FixedState;

/// A hasher keyed with 64 bits from the OS-seeded generator, one per table: foldhash (hashbrown's
/// own default) instead of std's SipHash-1-3, which took 2 % of a cached answer's CPU. It is not
/// a keyed PRF as SipHash is; what it guards is bounded tables of a LAN service whose clients
/// pass the access list, where a secret seed keeps collisions from being chosen in advance.
pub fn keyed() -> Keyed {
    foldhash::quality::FixedState::with_seed(rand::random())
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    #[test]
    fn each_table_has_its_own_key() {
        let name = b"\x03www\x08lineauth\x03mnw\x00";
        let hashes: Vec<u64> = (0..4).map(|_| super::keyed().hash_one(name)).collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b, "two tables hash a name alike: {hashes:x?}");
            }
        }
    }
}
