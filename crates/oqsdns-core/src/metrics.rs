//! Counters of the query path for the status endpoint: plain atomics, incremented with one
//! relaxed add, never locked or allocated per query.
//!
//! A counter is an `AtomicU64` where the target has 64-bit atomics and an `AtomicU32` (wrapping,
//! which Prometheus reads as a counter reset) where it has not, as on mipsel routers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::upstream::Transport;

#[cfg(target_has_atomic = "64")]
type Cell = std::sync::atomic::AtomicU64;
#[cfg(not(target_has_atomic = "64"))]
type Cell = std::sync::atomic::AtomicU32;

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(Cell);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u32) {
        self.0.fetch_add(n.into(), Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        #[allow(clippy::useless_conversion)] // u32 on targets without 64-bit atomics
        u64::from(self.0.load(Ordering::Relaxed))
    }
}

/// One counter per transport.
#[derive(Debug, Default)]
pub struct PerTransport {
    /// Over UDP.
    pub udp: Counter,
    /// Over TCP.
    pub tcp: Counter,
}

impl PerTransport {
    /// The counter of `transport`.
    pub fn of(&self, transport: Transport) -> &Counter {
        match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
        }
    }
}

/// The response codes counted apart; every other code counts as `other`.
pub const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BOUNDS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const BOUNDS_US: [u32; 10] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// A latency histogram with fixed buckets ([`LATENCY_BOUNDS`]).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last is above every bound.
    buckets: [Counter; 11],
    /// The sum of observations in microseconds.
    sum_us: Counter,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
        let at = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(10);
        self.buckets[at].inc();
        self.sum_us.add(us);
    }

    /// Cumulative counts per bound (then `+Inf`), and the sum in seconds.
    pub fn snapshot(&self) -> ([u64; 11], f64) {
        let mut out = [0u64; 11];
        let mut total = 0;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            total += b.get();
            *o = total;
        }
        (out, self.sum_us.get() as f64 / 1e6)
    }
}

/// Queries answered for one route (or the default), kept across reloads by route name.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Answers by transport (0 UDP, 1 TCP) and response code (index into [`RCODES`]).
    answers: [[Counter; 7]; 2],
    /// Queries answered by a server other than the first one tried.
    pub failovers: Counter,
}

impl RouteStats {
    /// Counts an answer sent to a client over `transport`; its response code is read from the
    /// header.
    pub fn answered(&self, transport: Transport, reply: &[u8]) {
        let rcode = reply.get(3).map_or(6, |b| usize::from(b & 0x0F).min(6));
        self.answers[usize::from(transport == Transport::Tcp)][rcode].inc();
    }

    /// Answers over `transport` with response code `RCODES[rcode]`.
    pub fn answers(&self, transport: Transport, rcode: usize) -> u64 {
        self.answers[usize::from(transport == Transport::Tcp)][rcode].get()
    }
}

/// One upstream server's exchanges, kept with its health.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Queries sent, by transport (a truncated UDP answer retried over TCP counts both).
    pub queries: PerTransport,
    /// Exchanges that failed other than by a timeout (network error, mismatched reply).
    pub errors: PerTransport,
    /// Exchanges that got no reply in time.
    pub timeouts: PerTransport,
    /// Truncated UDP answers retried over TCP.
    pub tc_retries: Counter,
    /// Time to an accepted reply.
    pub latency: Histogram,
    /// Health-probe rounds that passed, by transport.
    pub probe_passes: PerTransport,
    /// Health-probe rounds that failed, by transport.
    pub probe_failures: PerTransport,
}

impl ServerStats {
    /// Counts an accepted reply that came over `transport` after `took`; `tcp_only` when the
    /// exchange did not begin over UDP.
    pub fn answered(&self, transport: Transport, took: Duration, tcp_only: bool) {
        self.queries.of(transport).inc();
        if transport == Transport::Tcp && !tcp_only {
            self.queries.udp.inc();
            self.tc_retries.inc();
        }
        self.latency.observe(took);
    }

    /// Counts a failed exchange over `transport`.
    pub fn failed(&self, transport: Transport, timeout: bool) {
        self.queries.of(transport).inc();
        if timeout {
            self.timeouts.of(transport).inc();
        } else {
            self.errors.of(transport).inc();
        }
    }
}

/// Counters of the whole daemon, kept across reloads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Answers served from the cache.
    pub cache_hits: Counter,
    /// Questions not in the cache (or expired), sent upstream.
    pub cache_misses: Counter,
    /// Stale answers served because every server of the route failed.
    pub stale_answers: Counter,
    /// Queries from clients outside `server.allow`, refused.
    pub refused_acl: Counter,
    /// Queries refused because `server.max_inflight` queries were under way.
    pub refused_busy: Counter,
}

/// Clients over the rate limit.
#[derive(Debug, Default)]
pub struct RateStats {
    /// Queries answered REFUSED.
    pub refused: Counter,
    /// Queries not answered.
    pub dropped: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(3));
        let (buckets, sum) = h.snapshot();
        assert_eq!(buckets[0], 1);
        assert_eq!(buckets[4], 1, "30 ms is above 25 ms");
        assert_eq!(buckets[5], 2);
        assert_eq!(buckets[9], 2);
        assert_eq!(buckets[10], 3);
        assert!((sum - 3.0305).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn rcode_is_read_from_the_header() {
        let stats = RouteStats::default();
        stats.answered(Transport::Udp, &[0, 0, 0x81, 0x83]);
        stats.answered(Transport::Tcp, &[0, 0, 0x81, 0x8F]);
        stats.answered(Transport::Tcp, &[]);
        assert_eq!(stats.answers(Transport::Udp, 3), 1);
        assert_eq!(stats.answers(Transport::Tcp, 6), 2);
    }
}
