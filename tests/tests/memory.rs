//! Memory of the answer cache, measured as the process's resident set: 10,000 cached names fit
//! the router budget, and a flood of unique names past the cache's bound leaves it flat. One test
//! in its own binary, so no other test allocates meanwhile.

use std::time::{Duration, Instant};

use oqsdns_core::cache::{self, Cache, Limits};
use oqsdns_core::wire::Request;

/// The process's resident set in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// `m<i>.miss.example A` (`i` in seven digits, so every entry has the same size), as the
/// bench's cache-miss workload asks, and a reply with one A record.
fn exchange(i: usize) -> (Vec<u8>, Vec<u8>) {
    let mut question = Vec::new();
    for label in [format!("m{i:07}"), "miss".into(), "example".into()] {
        question.push(label.len() as u8);
        question.extend_from_slice(label.as_bytes());
    }
    question.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(&question);
    let mut reply = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    reply.extend_from_slice(&question);
    reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 198, 51, 100, 99]);
    (query, reply)
}

fn fill(cache: &Cache, names: std::ops::Range<usize>, now: Instant) {
    for i in names {
        let (query, reply) = exchange(i);
        let request = Request::parse(&query).expect("a query");
        cache.insert(&cache::key(&request), &reply, 1, now);
    }
}

#[test]
#[cfg(target_os = "linux")]
fn ten_thousand_names_fit_and_a_flood_of_unique_names_stays_flat() {
    let cache = Cache::new(Limits {
        entries: 10_000,
        min_ttl: 0,
        max_ttl: 86_400,
        keep_stale: Duration::from_secs(86_400),
    });
    let now = Instant::now();
    let before = rss_kib();
    fill(&cache, 0..10_000, now);
    let full = rss_kib();
    eprintln!("RSS before {before} KiB, 10,000 names {full} KiB");
    assert!(cache.len() >= 9_500, "{} entries", cache.len());
    // The daemon idles at about 4.5 MiB; with 10,000 names it must stay within 12 MiB.
    assert!(
        full - before <= 6 * 1024,
        "10,000 cached names took {} KiB",
        full - before
    );

    // A flood of 100,000 more unique names: the cache evicts, the memory does not grow.
    fill(&cache, 10_000..110_000, now);
    let flooded = rss_kib();
    eprintln!("after 100,000 more: {flooded} KiB");
    assert!(cache.len() <= 10_000, "{} entries", cache.len());
    assert!(
        flooded <= full + 1024,
        "grew from {full} KiB to {flooded} KiB under a flood of unique names"
    );
}
