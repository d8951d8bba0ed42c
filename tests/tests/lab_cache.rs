//! The cache, serve-stale and reload end to end: the built binary in the lab, with the East
//! preset, real knotd servers at the guide's addresses and real dig.
//!
//! Each test builds its own namespaces (see `oqsdns_tests::lab`); without root or the tools it
//! says it was skipped, unless `OQSDNS_LAB=require`.

use std::time::{Duration, Instant};

use oqsdns_tests::lab::{Answer, Area, Cut, Lab};

const WWW_LINEAUTH: &str = "2404:1a8:f583:af0::1";
const SHORT_LINEAUTH: &str = "2404:1a8:f583:af0::5";

fn aaaa(lab: &Lab, name: &str) -> Answer {
    lab.query(name, "AAAA").wait(8).run()
}

fn ttl_and_data(answer: &Answer) -> Vec<(u32, String)> {
    answer
        .records
        .iter()
        .filter(|r| r.rtype == "AAAA")
        .map(|r| (r.ttl, r.data.clone()))
        .collect()
}

/// With both NW-base servers cut off, a name asked before is still answered: fresh from the
/// cache while its TTL lasts, then stale with TTL 30 (RFC 8767). A name never asked gets
/// SERVFAIL.
#[test]
fn cache_and_serve_stale_east() {
    let status = "\n[status]\nlisten = \"[::1]:9153\"\n";
    let Some(lab) = Lab::start_with("cache_and_serve_stale_east", Area::East, status) else {
        return;
    };
    let www = aaaa(&lab, "www.lineauth.mnw");
    assert_eq!(
        ttl_and_data(&www),
        [(300, WWW_LINEAUTH.to_string())],
        "{www}"
    );
    let short = aaaa(&lab, "short.lineauth.mnw");
    assert_eq!(
        ttl_and_data(&short),
        [(1, SHORT_LINEAUTH.to_string())],
        "{short}"
    );

    lab.cut_off(&Area::East.nw_base(), Cut::All);
    // Answered from the cache, not after timeouts: counted, not timed.
    let status_addr = "[::1]:9153".parse().unwrap();
    let hits = || lab.metric_sum(status_addr, "oqsdns_cache_hits_total", &[]);
    let upstream = || {
        let labels = ["route=\"nw-base\""];
        lab.metric_sum(status_addr, "oqsdns_upstream_queries_total", &labels)
    };
    let before = (hits(), upstream());
    let cached = aaaa(&lab, "www.lineauth.mnw");
    let after = (hits(), upstream());
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 0),
        "one cache hit, no upstream query: (hits, upstream queries) {before:?} -> {after:?}"
    );
    let got = ttl_and_data(&cached);
    assert_eq!(got.len(), 1, "{cached}");
    assert_eq!(got[0].1, WWW_LINEAUTH);
    assert!(
        got[0].0 <= 300 && got[0].0 > 200,
        "the TTL counts down from 300: {cached}"
    );

    // short.lineauth.mnw expires after a second; then every server fails and the expired
    // answer comes back with TTL 30. Each look asks the daemon; the loop is bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = aaaa(&lab, "short.lineauth.mnw");
        let got = ttl_and_data(&answer);
        assert_eq!(answer.status, "NOERROR", "{answer}");
        assert_eq!(got.len(), 1, "{answer}");
        assert_eq!(got[0].1, SHORT_LINEAUTH);
        if got[0].0 == 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stale answer within 20 s: {answer}\n{}",
            lab.oqsdns_log()
        );
    }

    let never = aaaa(&lab, "never-asked.lineauth.mnw");
    assert_eq!(never.status, "SERVFAIL", "{never}");
}

/// SIGHUP with a new route puts it in force at once; SIGHUP with a broken file changes nothing.
#[test]
fn reload_east() {
    let Some(mut lab) = Lab::start("reload_east", Area::East) else {
        return;
    };
    let before = lab.query("www.example.com", "AAAA").run();
    assert_eq!(
        before.status, "NOERROR",
        "the internet resolver answers\n{before}"
    );

    lab.reload("", Some("area = \"east\"\n[forward\n"));
    let after_broken = lab.query("www.example.com", "AAAA").run();
    assert_eq!(
        after_broken.status, "NOERROR",
        "a broken file changed nothing\n{after_broken}"
    );
    assert!(
        lab.oqsdns_log().contains("reload failed"),
        "{}",
        lab.oqsdns_log()
    );

    // example.com now goes to the NW-base servers, which do not serve it: REFUSED there,
    // SERVFAIL here, and never the internet's answer.
    let route = format!(
        "\n[[route]]\ndomains = [\"example.com\"]\nservers = [\"[{}]:53\"]\n",
        Area::East.nw_base()[0]
    );
    lab.reload(&route, None);
    let rerouted = lab.query("fresh.www.example.com", "AAAA").wait(8).run();
    assert_eq!(
        rerouted.status, "SERVFAIL",
        "the new route is in force\n{rerouted}"
    );
    let cached = lab.query("www.example.com", "AAAA").wait(8).run();
    assert_eq!(
        cached.status, "SERVFAIL",
        "a cached answer of a changed route is not served\n{cached}"
    );
    let guide = aaaa(&lab, "www.lineauth.mnw");
    assert_eq!(
        ttl_and_data(&guide)[0].1,
        WWW_LINEAUTH,
        "the guide's names still resolve\n{guide}"
    );
}

/// `area = "auto"` takes the area whose NW-base servers answer: in the West lab (East's cut off)
/// it chooses west, and the guide's West answers come back.
#[test]
fn area_auto_west() {
    let Some(mut lab) = Lab::start("area_auto_west", Area::West) else {
        return;
    };
    lab.cut_off(&Area::East.nw_base(), Cut::All);
    let auto = lab
        .base_config()
        .replacen("area = \"west\"", "area = \"auto\"", 1);
    assert!(auto.contains("area = \"auto\""), "{auto}");
    lab.reload("", Some(&auto));
    let status = lab.query("status.oqsdns", "TXT").class("CH").run();
    assert!(status.mentions("area=west"), "{status}");
    let www = aaaa(&lab, "www.lineauth.mnw");
    assert_eq!(ttl_and_data(&www)[0].1, "2001:a7ff:f014:af0::1", "{www}");
    assert!(
        lab.oqsdns_log().contains("area auto: chose"),
        "{}",
        lab.oqsdns_log()
    );
}
