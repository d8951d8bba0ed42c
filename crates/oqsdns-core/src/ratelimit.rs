//! Per-client query rate limit: a token bucket per client address, in a table of fixed size.
//!
//! Clients are keyed by their whole address: an IPv4 address, or an IPv6 address as a /128 (the
//! terminals of a clinic each have their own address under the line's one /64, so a /64 key would
//! make them share one budget). IPv4-mapped IPv6 addresses count as their IPv4 address.
//!
//! The table never grows: [`RateLimiter::new`] allocates every slot, in shards of 4-way sets
//! indexed by a keyed hash ([`crate::sets`]). A client not in its set takes the slot whose bucket
//! is fullest: a full bucket is the same as no
//! entry, so a flood of forged sources evicts quiet clients first and a flooder's own empty
//! bucket stays put instead of being reset by the flood.
//!
//! Loopback clients are not limited unless asked (a forwarder on the same host, such as OpenWrt's
//! dnsmasq in front of the daemon, speaks for the whole LAN), and the forwarders named in the
//! configuration (a router's DNS proxy) each have a bucket of their own, sized for a clinic, or
//! none.
//!
//! Past the limit a client gets REFUSED for at most [`REFUSALS_PER_SECOND`] queries a second
//! and nothing for the rest: a LAN client learns why, a flood with a forged source is not
//! reflected at its victim.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::sets::{key_of, Sets, Slot};
use crate::throttle::Throttle;

/// Excess queries of one client answered with REFUSED per second; the others are dropped.
pub const REFUSALS_PER_SECOND: u16 = 5;
/// Slots of the table by default: clients tracked at once.
pub const DEFAULT_SLOTS: usize = 4096;
/// How often the rate-limited clients are logged at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

const SHARDS: usize = 16;
/// Tokens are counted in thousandths of a query, so a refill of `rate` per second is `rate`
/// thousandths per millisecond.
const MILLI: u64 = 1000;

/// What to do with a client's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: serve it.
    Admit,
    /// Over the limit: answer REFUSED.
    Refuse,
    /// Over the limit and past the refusals of this second: send nothing.
    Drop,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    used: bool,
    /// The address's 16 bytes (bytes, not `u128`, to keep the slot at 40 bytes and 8-aligned).
    key: [u8; 16],
    /// Thousandths of a query.
    tokens: u64,
    /// When `tokens` was last brought up to date, in ms since the limiter's start.
    last_ms: u64,
    /// The second (since the start) that `refusals` counts.
    refusal_second: u32,
    refusals: u16,
}

impl Slot for Bucket {
    fn key(&self) -> Option<&[u8; 16]> {
        self.used.then_some(&self.key)
    }
}

/// Token buckets per client address in a fixed-size table.
#[derive(Debug)]
pub struct RateLimiter {
    /// Thousandths of a query added per millisecond: the rate in queries per second.
    rate: u64,
    /// The bucket's size in thousandths of a query.
    capacity: u64,
    table: Sets<Bucket>,
    epoch: Instant,
    log: Throttle,
    limited: AtomicU32,
    /// Whether loopback clients are limited.
    loopback: bool,
    /// The forwarders' keys and buckets; `None` without a limit for them.
    forwarders: Box<[Forwarder]>,
    forwarder_rate: u64,
    forwarder_capacity: u64,
    /// Queries refused and dropped over the limit, for the status endpoint.
    pub stats: crate::metrics::RateStats,
}

/// A forwarder's table key, and its bucket (`None`: not limited).
type Forwarder = ([u8; 16], Option<Mutex<Bucket>>);

/// Who is limited how, apart from every other client's `rate` and `burst`.
#[derive(Debug, Clone, Default)]
pub struct Exemptions {
    /// Limit loopback clients as the others (by default they are not limited).
    pub limit_loopback: bool,
    /// The forwarders in front of the daemon.
    pub forwarders: Vec<IpAddr>,
    /// Queries per second of each forwarder; 0: no limit.
    pub forwarder_rate: u32,
    /// A forwarder's burst.
    pub forwarder_burst: u32,
}

impl RateLimiter {
    /// A limiter of `rate` queries per second with bursts of `burst`, tracking up to `slots`
    /// clients (rounded up to a multiple of 64). `rate` 0 admits everything and allocates nothing.
    pub fn new(rate: u32, burst: u32, slots: usize) -> Self {
        Self::with_exemptions(rate, burst, slots, &Exemptions::default())
    }

    /// [`new`](Self::new), with loopback and the forwarders treated as `exemptions` says.
    pub fn with_exemptions(rate: u32, burst: u32, slots: usize, exemptions: &Exemptions) -> Self {
        let forwarder_limited = rate > 0 && exemptions.forwarder_rate > 0;
        let forwarders = exemptions.forwarders.iter().map(|&ip| {
            let bucket = forwarder_limited.then(|| {
                Mutex::new(Bucket {
                    used: true,
                    key: key_of(ip),
                    tokens: u64::from(exemptions.forwarder_burst.max(1)) * MILLI,
                    ..Bucket::default()
                })
            });
            (key_of(ip), bucket)
        });
        let slots = if rate == 0 { 0 } else { slots.max(1) };
        Self {
            rate: u64::from(rate),
            capacity: u64::from(burst.max(1)) * MILLI,
            table: Sets::new(SHARDS, slots),
            epoch: Instant::now(),
            log: Throttle::new(LOG_INTERVAL),
            limited: AtomicU32::new(0),
            loopback: exemptions.limit_loopback,
            forwarders: forwarders.collect(),
            forwarder_rate: u64::from(exemptions.forwarder_rate),
            forwarder_capacity: u64::from(exemptions.forwarder_burst.max(1)) * MILLI,
            stats: crate::metrics::RateStats::default(),
        }
    }

    /// The limiter of `[server]`: `rate`, `burst`, `rate_loopback` and the forwarders.
    pub fn of(server: &oqsdns_config::ServerConfig, slots: usize) -> Self {
        let exemptions = Exemptions {
            limit_loopback: server.rate_loopback,
            forwarders: server.forwarders.clone(),
            forwarder_rate: server.forwarder_rate,
            forwarder_burst: server.forwarder_burst,
        };
        Self::with_exemptions(server.rate, server.burst, slots, &exemptions)
    }

    /// A limiter that admits every query.
    pub fn disabled() -> Self {
        Self::new(0, 0, 0)
    }

    /// Whether the limit is on.
    pub fn enabled(&self) -> bool {
        self.rate > 0
    }

    /// Clients the table tracks at once.
    pub fn slots(&self) -> usize {
        self.table.slots()
    }

    /// Bytes the table holds; fixed from the start.
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Counts one query of `client`, received at `now`, and says what to do with it; logs
    /// limited clients at most once per [`LOG_INTERVAL`].
    pub fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        if !self.enabled() {
            return Verdict::Admit;
        }
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let verdict = self.check_at(client, now_ms);
        if verdict != Verdict::Admit {
            self.limited.fetch_add(1, Ordering::Relaxed);
            let stats = &self.stats;
            let counter = if verdict == Verdict::Refuse {
                &stats.refused
            } else {
                &stats.dropped
            };
            counter.inc();
            if self.log.ready() {
                let limited = self.limited.swap(0, Ordering::Relaxed);
                warn!(
                    %client,
                    limited,
                    rate = self.rate,
                    "client {client} over the query rate limit of {} a second: {limited} queries refused or dropped", self.rate
                );
            }
        }
        verdict
    }

    /// [`check`](Self::check) at `now_ms` milliseconds after the limiter's start, without logging.
    pub fn check_at(&self, client: IpAddr, now_ms: u64) -> Verdict {
        if !self.enabled() {
            return Verdict::Admit;
        }
        let key = key_of(client);
        if !self.loopback && is_loopback(&key) {
            return Verdict::Admit;
        }
        if !self.forwarders.is_empty() {
            if let Some((_, bucket)) = self.forwarders.iter().find(|(k, _)| *k == key) {
                let Some(bucket) = bucket else {
                    return Verdict::Admit;
                };
                let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
                return take(
                    &mut bucket,
                    now_ms,
                    self.forwarder_rate,
                    self.forwarder_capacity,
                );
            }
        }
        // Free slots first, then the fullest bucket, then the longest unused.
        let victim = |ways: &[Bucket]| {
            (0..ways.len())
                .max_by_key(|&i| {
                    let b = &ways[i];
                    let tokens = if b.used {
                        self.refilled(b, now_ms)
                    } else {
                        u64::MAX
                    };
                    (tokens, u64::MAX - b.last_ms)
                })
                .unwrap_or(0)
        };
        let fresh = || Bucket {
            used: true,
            key,
            tokens: self.capacity,
            last_ms: now_ms,
            ..Bucket::default()
        };
        self.table
            .with(key, victim, fresh, |bucket| {
                take(bucket, now_ms, self.rate, self.capacity)
            })
            .unwrap_or(Verdict::Admit)
    }

    fn refilled(&self, bucket: &Bucket, now_ms: u64) -> u64 {
        refilled(bucket, now_ms, self.rate, self.capacity)
    }
}

/// Takes one query from `bucket` (refilled at `rate`, up to `capacity`) at `now_ms`.
fn take(bucket: &mut Bucket, now_ms: u64, rate: u64, capacity: u64) -> Verdict {
    bucket.tokens = refilled(bucket, now_ms, rate, capacity);
    bucket.last_ms = bucket.last_ms.max(now_ms);
    if bucket.tokens >= MILLI {
        bucket.tokens -= MILLI;
        return Verdict::Admit;
    }
    let second = (now_ms / 1000) as u32;
    if bucket.refusal_second != second {
        bucket.refusal_second = second;
        bucket.refusals = 0;
    }
    if bucket.refusals < REFUSALS_PER_SECOND {
        bucket.refusals += 1;
        Verdict::Refuse
    } else {
        Verdict::Drop
    }
}

fn refilled(bucket: &Bucket, now_ms: u64, rate: u64, capacity: u64) -> u64 {
    let elapsed = now_ms.saturating_sub(bucket.last_ms);
    bucket
        .tokens
        .saturating_add(elapsed.saturating_mul(rate))
        .min(capacity)
}

/// Whether a table key is a loopback address (127.0.0.0/8 as mapped, or ::1).
fn is_loopback(key: &[u8; 16]) -> bool {
    let v6 = std::net::Ipv6Addr::from(*key);
    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v6(i: u64) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_0001_0002_u128 << 64) | u128::from(i),
        ))
    }

    fn run(limiter: &RateLimiter, client: IpAddr, n: usize, now_ms: u64) -> [usize; 3] {
        let mut counts = [0; 3];
        for _ in 0..n {
            counts[limiter.check_at(client, now_ms) as usize] += 1;
        }
        counts
    }

    #[test]
    fn a_burst_is_admitted_then_a_few_refused_then_dropped_and_the_rate_refills() {
        let limiter = RateLimiter::new(10, 20, 64);
        let client = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
        assert_eq!(run(&limiter, client, 30, 0), [20, 5, 5]);
        // 500 ms later: five tokens back; the refusals of second 0 are used up.
        assert_eq!(run(&limiter, client, 8, 500), [5, 0, 3]);
        // In the next second a few refusals again.
        assert_eq!(run(&limiter, client, 8, 1000), [5, 3, 0]);
        // After a quiet spell the whole burst is back, and no more.
        assert_eq!(run(&limiter, client, 30, 60_000), [20, 5, 5]);
    }

    #[test]
    fn each_ipv6_terminal_of_one_64_has_its_own_bucket() {
        let limiter = RateLimiter::new(1, 3, 64);
        assert_eq!(run(&limiter, v6(1), 4, 0), [3, 1, 0]);
        assert_eq!(
            run(&limiter, v6(2), 3, 0),
            [3, 0, 0],
            "another /128 of the /64"
        );
        let mapped = "::ffff:192.168.1.20".parse().unwrap();
        assert_eq!(run(&limiter, mapped, 3, 0), [3, 0, 0]);
        let plain = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
        assert_eq!(
            run(&limiter, plain, 1, 0),
            [0, 1, 0],
            "same as its v4-mapped form"
        );
    }

    #[test]
    fn loopback_is_not_limited_unless_asked() {
        let limiter = RateLimiter::new(1, 3, 64);
        for client in ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"] {
            let client: IpAddr = client.parse().unwrap();
            assert_eq!(run(&limiter, client, 10_000, 0), [10_000, 0, 0], "{client}");
        }
        let asked = Exemptions {
            limit_loopback: true,
            ..Exemptions::default()
        };
        let limiter = RateLimiter::with_exemptions(1, 3, 64, &asked);
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(run(&limiter, local, 4, 0), [3, 1, 0]);
    }

    #[test]
    fn a_forwarder_has_a_clinic_sized_bucket_of_its_own_or_none() {
        let router: IpAddr = "192.168.1.1".parse().unwrap();
        let terminal: IpAddr = "192.168.1.20".parse().unwrap();
        let exemptions = Exemptions {
            forwarders: vec![router],
            forwarder_rate: 100,
            forwarder_burst: 500,
            ..Exemptions::default()
        };
        let limiter = RateLimiter::with_exemptions(10, 20, 64, &exemptions);
        assert_eq!(run(&limiter, router, 510, 0), [500, 5, 5]);
        // 100 ms later: ten queries' worth back at the forwarder's rate, not one at the clients'.
        assert_eq!(run(&limiter, router, 12, 100)[0], 10);
        assert_eq!(
            run(&limiter, terminal, 30, 0),
            [20, 5, 5],
            "others keep the per-client limit"
        );
        let unlimited = Exemptions {
            forwarder_rate: 0,
            ..exemptions
        };
        let limiter = RateLimiter::with_exemptions(10, 20, 64, &unlimited);
        assert_eq!(run(&limiter, router, 100_000, 0), [100_000, 0, 0]);
        assert_eq!(run(&limiter, terminal, 30, 0), [20, 5, 5]);
    }

    #[test]
    fn rate_zero_admits_everything_and_holds_no_table() {
        let limiter = RateLimiter::new(0, 0, DEFAULT_SLOTS);
        assert_eq!(run(&limiter, v6(1), 10_000, 0), [10_000, 0, 0]);
        assert_eq!(limiter.slots(), 0);
        assert_eq!(limiter.check(v6(1), Instant::now()), Verdict::Admit);
    }

    #[test]
    fn the_table_stays_bounded_under_100_000_forged_sources_and_keeps_the_flooder() {
        let limiter = RateLimiter::new(200, 1000, DEFAULT_SLOTS);
        let bytes = limiter.table_bytes();
        assert_eq!(limiter.slots(), DEFAULT_SLOTS);
        assert!(
            bytes <= 256 * 1024,
            "{bytes} bytes for {DEFAULT_SLOTS} slots"
        );
        let flooder = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 66));
        assert_eq!(run(&limiter, flooder, 1000, 0)[0], 1000);
        assert_ne!(limiter.check_at(flooder, 0), Verdict::Admit);
        for i in 0..100_000 {
            // Forged sources all within the same millisecond: none refills the flooder.
            assert_eq!(limiter.check_at(v6(i), 1), Verdict::Admit, "source {i}");
        }
        assert_eq!(limiter.table_bytes(), bytes, "the table never grows");
        let mut tracked = 0;
        limiter.table.for_each(|_| tracked += 1);
        assert!(tracked <= DEFAULT_SLOTS, "{tracked} tracked");
        assert_ne!(
            limiter.check_at(flooder, 1),
            Verdict::Admit,
            "the flood of forged sources did not reset the flooder's bucket"
        );
    }
}
