//! The answer cache: upstream replies kept as bytes, keyed by the lower-cased question and the
//! DO and CD bits; a hit counts the TTLs down in place and the bytes pass on. Negative answers
//! live for the SOA minimum (RFC 2308); expired answers are kept for serve-stale (RFC 8767).
//! Bounded by a number of entries; when full, the entry expiring soonest among a random sample
//! goes (an expired one that can no longer be served stale first).

use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;
use hickory_proto::rr::RecordType;
use rand::RngExt;
use std::time::{Duration, Instant};

use crate::wire::{self, Rcode, Request, Section};

/// TTL of an answer served stale (RFC 8767 recommends 30 s).
pub const STALE_TTL: u32 = 30;
const SHARDS: usize = 16;
const EVICTION_SAMPLE: usize = 8;

/// The cache key: lower-case wire name, type, class, and the DO and CD bits. Shared: the
/// queries-in-flight table holds the one a question made, not a copy.
pub type Key = std::sync::Arc<[u8]>;

/// The key of a request.
pub fn key(request: &Request<'_>) -> Key {
    let mut buf = [0u8; KEY_MAX];
    key_in(request, &mut buf).into()
}

/// The longest key: a name of 255 bytes, type, class and the flag byte.
pub const KEY_MAX: usize = 255 + 5;

/// The key of a request, written into `buf` (a lookup needs no allocation).
pub fn key_in<'b>(request: &Request<'_>, buf: &'b mut [u8; KEY_MAX]) -> &'b [u8] {
    let mut name = [0u8; 255];
    let n = wire::lowercase_name(request.qname(), &mut name);
    buf[..n].copy_from_slice(&name[..n]);
    buf[n..n + 2].copy_from_slice(&request.qtype.to_be_bytes());
    buf[n + 2..n + 4].copy_from_slice(&request.qclass.to_be_bytes());
    buf[n + 4] = u8::from(request.dnssec_ok()) | u8::from(request.checking_disabled()) << 1;
    &buf[..n + 5]
}

/// Limits of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries at most; 0 disables the cache.
    pub entries: usize,
    /// Lowest lifetime given to an answer, in seconds.
    pub min_ttl: u32,
    /// Highest lifetime given to an answer, in seconds.
    pub max_ttl: u32,
    /// How long after expiry an answer may still be served stale; the longest of any route.
    pub keep_stale: Duration,
}

/// One answer, in one allocation: the key, where the TTLs sit, and the reply's bytes (three
/// allocations of 30 to 300 bytes each cost 16 bytes of malloc's header and its rounding each,
/// and a malloc and a free per insert; a full cache holds 10,000).
#[derive(Debug)]
struct Entry {
    /// The key, then the TTL offsets (big-endian u16 each), then the reply.
    data: Box<[u8]>,
    key_len: u16,
    /// How many TTL offsets follow the key: those of every record but OPT, found once at insert
    /// so a hit does not walk the records again.
    ttl_count: u16,
    /// The key's hash, kept for the index's rehashing.
    hash: u64,
    stored: Instant,
    lifetime: u32,
    /// The route the answer came from, so a reload that changes the route drops it.
    route: u64,
}

impl Entry {
    /// The data of an entry, with its key's length and the number of TTL offsets.
    fn data(
        key: &[u8],
        count: usize,
        ttls: impl Iterator<Item = u16>,
        reply: &[u8],
    ) -> Option<(Box<[u8]>, u16, u16)> {
        let key_len = u16::try_from(key.len()).ok()?;
        let ttl_count = u16::try_from(count).ok()?;
        let mut data = Vec::with_capacity(key.len() + 2 * count + reply.len());
        data.extend_from_slice(key);
        data.extend(ttls.flat_map(u16::to_be_bytes));
        data.extend_from_slice(reply);
        Some((data.into_boxed_slice(), key_len, ttl_count))
    }

    fn key(&self) -> &[u8] {
        &self.data[..usize::from(self.key_len)]
    }

    fn reply_start(&self) -> usize {
        usize::from(self.key_len) + 2 * usize::from(self.ttl_count)
    }

    fn reply(&self) -> &[u8] {
        &self.data[self.reply_start()..]
    }

    fn ttls(&self) -> impl Iterator<Item = usize> + '_ {
        self.data[usize::from(self.key_len)..self.reply_start()]
            .chunks_exact(2)
            .map(|t| usize::from(u16::from_be_bytes([t[0], t[1]])))
    }

    fn expires(&self) -> Instant {
        self.stored + Duration::from_secs(u64::from(self.lifetime))
    }
}

/// One shard: the entries in a slab, so that eviction can sample them at random, and an index
/// from key to slot. The index, sized for twice the bound, costs 4 bytes a slot.
#[derive(Debug, Default)]
struct Shard {
    entries: Vec<Entry>,
    index: HashTable<u32>,
}

impl Shard {
    fn with_capacity(entries: usize) -> Self {
        // Room in the index for twice the bound: removals leave tombstones, and a full table with
        // tombstones is rehashed in place only while it is at most half full; otherwise it would
        // double under a flood of unique names. Untouched pages cost no memory.
        let room = if entries == 0 { 0 } else { 2 * entries + 2 };
        Self {
            entries: Vec::with_capacity(entries),
            index: HashTable::with_capacity(room),
        }
    }

    /// The slot holding `key`.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        let slot = self
            .index
            .find(hash, |&i| entries[i as usize].key() == key)?;
        Some(*slot as usize)
    }

    /// Adds `entry`, whose key is not here.
    fn push(&mut self, entry: Entry) {
        let Self { entries, index } = self;
        let slot = entries.len() as u32;
        index.insert_unique(entry.hash, slot, |&i| entries[i as usize].hash);
        entries.push(entry);
    }

    /// Removes the entry in `slot`; the last entry takes its slot.
    fn remove(&mut self, slot: usize) {
        let Self { entries, index } = self;
        let hash = entries[slot].hash;
        if let Ok(found) = index.find_entry(hash, |&i| i as usize == slot) {
            found.remove();
        }
        let last = entries.len() - 1;
        entries.swap_remove(slot);
        if slot != last {
            let moved = entries[slot].hash;
            if let Some(i) = index.find_mut(moved, |&i| i as usize == last) {
                *i = slot as u32;
            }
        }
    }
}

/// A cached answer, ready to be turned into a client's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The upstream reply with its TTLs counted down.
    pub bytes: Vec<u8>,
    /// Whether it is past its lifetime (served stale).
    pub stale: bool,
}

/// The answer cache.
#[derive(Debug)]
pub struct Cache {
    shards: Vec<Mutex<Shard>>,
    hasher: crate::hashing::Keyed,
    per_shard: usize,
    limits: Limits,
}

impl Cache {
    /// An empty cache.
    pub fn new(limits: Limits) -> Self {
        let per_shard = limits.entries.div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard::with_capacity(per_shard)))
            .collect();
        Self {
            shards,
            hasher: crate::hashing::keyed(),
            per_shard,
            limits,
        }
    }

    /// Whether the cache stores anything.
    pub fn enabled(&self) -> bool {
        self.limits.entries > 0
    }

    /// The hash of `key` and the locked shard it belongs to (chosen by the hash's upper half;
    /// the table uses the lower bits and the top seven).
    fn shard(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.hasher.hash_one(key);
        let index = (hash >> 32) as usize % SHARDS;
        let shard = self.shards[index].lock().unwrap_or_else(|e| e.into_inner());
        (hash, shard)
    }

    /// How many entries the cache holds.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.entries.len()).unwrap_or(0))
            .sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh answer for `key` from `route`, its TTLs counted down.
    pub fn get(&self, key: &[u8], route: u64, now: Instant) -> Option<Hit> {
        self.lookup(key, route, now, Duration::ZERO)
    }

    /// An answer for `key` from `route` up to `stale_for` past its lifetime; stale ones get TTL 30.
    pub fn get_stale(
        &self,
        key: &[u8],
        route: u64,
        now: Instant,
        stale_for: Duration,
    ) -> Option<Hit> {
        self.lookup(key, route, now, stale_for)
    }

    fn lookup(&self, key: &[u8], route: u64, now: Instant, stale_for: Duration) -> Option<Hit> {
        if !self.enabled() {
            return None;
        }
        let (hash, shard) = self.shard(key);
        let entry = &shard.entries[shard.find(hash, key)?];
        if entry.route != route {
            return None;
        }
        let expires = entry.expires();
        let stale = now >= expires;
        if stale && now >= expires + stale_for {
            return None;
        }
        let elapsed = now
            .saturating_duration_since(entry.stored)
            .as_secs()
            .min(u64::from(u32::MAX)) as u32;
        let mut bytes = entry.reply().to_vec();
        for at in entry.ttls() {
            let ttl = if stale {
                STALE_TTL
            } else {
                let original = wire::ttl_at(&bytes, at);
                self.clamp(original).saturating_sub(elapsed)
            };
            bytes[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        Some(Hit { bytes, stale })
    }

    fn clamp(&self, ttl: u32) -> u32 {
        ttl.max(self.limits.min_ttl).min(self.limits.max_ttl)
    }

    /// Stores an upstream reply (already checked against the question) from `route`. Only
    /// NOERROR and NXDOMAIN answers are kept; negative ones only with an SOA to time them.
    pub fn insert(&self, key: &[u8], reply: &[u8], route: u64, now: Instant) {
        if let Some(records) = wire::records(reply) {
            self.insert_parsed(key, reply, &records, route, now);
        }
    }

    /// [`insert`](Self::insert) of a reply whose records the caller has found already.
    pub fn insert_parsed(
        &self,
        key: &[u8],
        reply: &[u8],
        records: &[wire::RecordAt],
        route: u64,
        now: Instant,
    ) {
        if !self.enabled() {
            return;
        }
        let Some(lifetime) = self.lifetime(reply, records) else {
            return;
        };
        let ttls = || {
            records
                .iter()
                .filter(|r| r.rtype != wire::TYPE_OPT)
                .filter_map(|r| u16::try_from(r.ttl_at).ok())
        };
        let Some((data, key_len, ttl_count)) = Entry::data(key, ttls().count(), ttls(), reply)
        else {
            return;
        };
        let (hash, mut shard) = self.shard(key);
        let existing = shard.find(hash, key);
        let entry = Entry {
            data,
            key_len,
            ttl_count,
            hash,
            stored: now,
            lifetime,
            route,
        };
        match existing {
            Some(slot) => shard.entries[slot] = entry,
            None => {
                if shard.entries.len() >= self.per_shard {
                    self.evict(&mut shard, now);
                }
                shard.push(entry);
            }
        }
    }

    /// How long a reply may be served fresh, or `None` if it must not be cached.
    fn lifetime(&self, reply: &[u8], records: &[wire::RecordAt]) -> Option<u32> {
        let rcode = wire::rcode_of(reply);
        if wire::is_truncated(reply) {
            return None;
        }
        let answer_ttl = records
            .iter()
            .filter(|r| r.section == Section::Answer)
            .map(|r| wire::ttl_at(reply, r.ttl_at))
            .min();
        let ttl = if let Some(ttl) = answer_ttl.filter(|_| rcode == Rcode::NoError as u8) {
            ttl
        } else if rcode == Rcode::NoError as u8 || rcode == Rcode::NxDomain as u8 {
            // RFC 2308: a negative answer lives for the SOA's TTL or its MINIMUM, the smaller.
            let soa = records.iter().find(|r| {
                r.section == Section::Authority && r.rtype == u16::from(RecordType::SOA)
            })?;
            let minimum = wire::ttl_at(reply, soa.end.checked_sub(4)?);
            wire::ttl_at(reply, soa.ttl_at).min(minimum)
        } else {
            return None;
        };
        let lifetime = self.clamp(ttl);
        (lifetime > 0 || self.limits.keep_stale > Duration::ZERO).then_some(lifetime)
    }

    /// Makes room: among a random sample of entries, drops one that is past serving stale, else
    /// the one expiring soonest.
    fn evict(&self, shard: &mut Shard, now: Instant) {
        let len = shard.entries.len();
        if len == 0 {
            return;
        }
        let keep_stale = self.limits.keep_stale;
        let end_of_use = |e: &Entry| {
            let expires = e.expires();
            if expires + keep_stale <= now {
                expires
            } else {
                expires + keep_stale
            }
        };
        let mut rng = rand::rng();
        let victim = (0..EVICTION_SAMPLE.min(len))
            .map(|_| rng.random_range(0..len))
            .min_by_key(|&slot| end_of_use(&shard.entries[slot]));
        if let Some(slot) = victim {
            shard.remove(slot);
        }
    }
}

#[cfg(test)]
mod tests;
