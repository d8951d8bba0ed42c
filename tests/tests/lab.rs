//! End-to-end tests in the lab: the built oqsdns binary, running an area preset, between a real
//! dig on the terminal and real knotd servers holding the connection guide's addresses.
//!
//! Each test builds its own namespaces (see `oqsdns_tests::lab`); without root or the tools it
//! says it was skipped, unless `OQSDNS_LAB=require`.

use std::net::IpAddr;
use std::time::Duration;

use oqsdns_tests::lab::knot::NW_BASE_DOMAINS;
use oqsdns_tests::lab::topology::{
    INTERNET6, OQSDNS_LAN4, OQSDNS_LAN6, OQSDNS_WAN4, OQSDNS_WAN6, STRANGER4, STRANGER6,
};
use oqsdns_tests::lab::{Answer, Area, Cut, Host, Lab};

/// The public impostor's address for hweb.oqs.onshikaku.org on the internet side.
const IMPOSTOR: &str = "2001:db8:bad::1";
/// hweb.oqs.onshikaku.org's IPv4 addresses, both areas (sorted).
const HWEB4: [&str; 3] = ["10.108.64.217", "10.108.65.21", "10.108.65.96"];
/// crldownload.obn.managedpki.ne.jp's IPv4 addresses, both areas.
const CRL4: [&str; 2] = ["10.110.10.164", "10.110.10.180"];
/// Records of big.base.oqs-pdl.org: more than 1,232 bytes.
const BIG_RECORDS: usize = 60;

/// The guide's step-7 answers (手順7, pp.12–13) for one area.
struct Step7 {
    www: &'static str,
    assv_name: &'static str,
    assv: &'static str,
    hweb: &'static str,
    crl: [&'static str; 2],
    pweb6_prefix: &'static str,
    pweb4_prefix: &'static str,
}

fn step7(area: Area) -> Step7 {
    match area {
        Area::East => Step7 {
            www: "2404:1a8:f583:af0::1",
            assv_name: "assv.asc.flets-east.jp",
            assv: "2404:1a8:ff43:1612::f",
            hweb: "2404:1a8:f583:1a10:2779:2395:6092:37fd",
            crl: [
                "2404:1a8:f583:4a06:a0c6:842b:cc00:fa1f",
                "2404:1a8:f583:4a07:6905:9f85:2d17:d650",
            ],
            pweb6_prefix: "2408:210:9c0::",
            pweb4_prefix: "10.255.180.",
        },
        Area::West => Step7 {
            www: "2001:a7ff:f014:af0::1",
            assv_name: "assv.asc.flets-west.jp",
            assv: "2001:a7ff:ff63:1::a",
            hweb: "2001:a7ff:f014:1a20:ae27:ffe4:a8ae:c4b7",
            // Not in the guide: the lab's zone puts East's interface IDs in the West prefix.
            crl: [
                "2001:a7ff:f014:4a06:a0c6:842b:cc00:fa1f",
                "2001:a7ff:f014:4a07:6905:9f85:2d17:d650",
            ],
            pweb6_prefix: "2001:a250:7c00:1f00::",
            pweb4_prefix: "10.255.181.",
        },
    }
}

/// Asserts a NOERROR answer whose `rtype` records are exactly `want` (in any order).
fn assert_data(answer: &Answer, rtype: &str, want: &[&str], what: &str) {
    assert_eq!(answer.status, "NOERROR", "{what}: status\n{answer}");
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        answer.sorted(rtype),
        want,
        "{what}: {rtype} records\n{answer}"
    );
}

/// Asserts that `name`'s whoami TXT names `server`. It asks a fresh name under `name` (the
/// zones hold `*.whoami` too), so the daemon's cache cannot answer instead of the server.
fn assert_answered_by(lab: &Lab, name: &str, tcp: bool, server: &str, wait: u64) {
    static FRESH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FRESH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("q{n}.{name}");
    let query = lab.query(&name, "TXT").wait(wait);
    let answer = if tcp { query.tcp().run() } else { query.run() };
    let transport = if tcp { "TCP" } else { "UDP" };
    assert_data(
        &answer,
        "TXT",
        &[server],
        &format!("{name} over {transport} must be answered by {server}"),
    );
}

/// Waits (at most `secs`) until the daemon's own status (`status.oqsdns CH TXT`) has a line
/// containing `needle`; before each new look, `nudge` runs (a query that feeds the health module).
fn wait_for_status(lab: &Lab, needle: &str, secs: u64, nudge: impl Fn()) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let status = lab.query("status.oqsdns", "TXT").class("CH").run();
        if status.mentions(needle) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no status line with {needle:?} within {secs} s:\n{}\n--- oqsdns log ---\n{}",
            status.raw,
            lab.oqsdns_log()
        );
        nudge();
    }
}

fn ask(lab: &Lab, name: &str, rtype: &str, tcp: bool) -> Answer {
    let query = lab.query(name, rtype);
    if tcp {
        query.tcp().run()
    } else {
        query.run()
    }
}

/// The five names of the guide's check suite, with the expected addresses.
fn check_step7(lab: &Lab, tcp: bool) {
    let area = lab.area();
    let want = step7(area);
    let via = if tcp { "over TCP" } else { "over UDP" };
    let www = ask(lab, "www.lineauth.mnw", "AAAA", tcp);
    assert_data(
        &www,
        "AAAA",
        &[want.www],
        &format!("www.lineauth.mnw {via}"),
    );
    let assv = ask(lab, want.assv_name, "AAAA", tcp);
    assert_data(
        &assv,
        "AAAA",
        &[want.assv],
        &format!("{} {via}", want.assv_name),
    );
    let hweb = ask(lab, "hweb.oqs.onshikaku.org", "AAAA", tcp);
    assert_data(&hweb, "AAAA", &[want.hweb], &format!("hweb AAAA {via}"));
    let hweb = ask(lab, "hweb.oqs.onshikaku.org", "A", tcp);
    assert_data(&hweb, "A", &HWEB4, &format!("hweb A {via}"));
    let crl_name = "crldownload.obn.managedpki.ne.jp";
    let crl = ask(lab, crl_name, "AAAA", tcp);
    assert_data(&crl, "AAAA", &want.crl, &format!("{crl_name} AAAA {via}"));
    let crl = ask(lab, crl_name, "A", tcp);
    assert_data(&crl, "A", &CRL4, &format!("{crl_name} A {via}"));
    for (rtype, prefix) in [("AAAA", want.pweb6_prefix), ("A", want.pweb4_prefix)] {
        let pweb = ask(lab, "pweb.base.oqs-pdl.org", rtype, tcp);
        let data = pweb.data(rtype);
        assert_eq!(pweb.status, "NOERROR", "pweb {rtype} {via}: status\n{pweb}");
        assert_eq!(data.len(), 15, "pweb {rtype} {via}: 15 records\n{pweb}");
        assert!(
            data.iter().all(|a| a.starts_with(prefix)),
            "pweb {rtype} {via}: every address in {prefix}\n{pweb}"
        );
    }
}

/// Each NW-base domain and the NGN domain go to the area's primary; other names go to the
/// internet; case and a trailing dot change nothing.
fn check_routing(lab: &Lab) {
    let area = lab.area();
    let nw_base = format!("nw-base-{}-primary", area.name());
    for domain in NW_BASE_DOMAINS {
        assert_answered_by(lab, &format!("whoami.{domain}"), false, &nw_base, 3);
    }
    let ngn = format!("ngn-{}-primary", area.name());
    assert_answered_by(
        lab,
        &format!("whoami.{}", area.ngn_domain()),
        false,
        &ngn,
        3,
    );
    assert_answered_by(lab, &format!("whoami.{}", area.ngn_domain()), true, &ngn, 3);

    // The first default server (IPv6) answers at once; `internet-v4` would mean it was skipped.
    assert_answered_by(lab, "whoami.notonshikaku.org", false, "internet", 3);
    assert_answered_by(lab, "whoami.example.com", true, "internet", 3);
    let not = ask(lab, "notonshikaku.org", "AAAA", false);
    assert_data(
        &not,
        "AAAA",
        &["2001:db8:80::81"],
        "notonshikaku.org goes to the internet",
    );
    let www = ask(lab, "www.example.com", "A", true);
    assert_data(&www, "A", &["198.51.100.80"], "www.example.com over TCP");

    let hweb = step7(area).hweb;
    let upper = ask(lab, "HWEB.OQS.ONSHIKAKU.ORG", "AAAA", false);
    assert_data(&upper, "AAAA", &[hweb], "upper-case HWEB.OQS.ONSHIKAKU.ORG");
    assert_answered_by(lab, "WhoAmI.LineAuth.MNW", false, &nw_base, 3);
    let dotted = ask(lab, "hweb.oqs.onshikaku.org.", "AAAA", false);
    assert_data(
        &dotted,
        "AAAA",
        &[hweb],
        "hweb.oqs.onshikaku.org. (trailing dot)",
    );

    let v4 = lab
        .query("hweb.oqs.onshikaku.org", "AAAA")
        .server(IpAddr::V4(OQSDNS_LAN4))
        .run();
    assert_data(&v4, "AAAA", &[hweb], "hweb asked over IPv4 (192.168.10.1)");

    let nslookup = lab.nslookup("hweb.oqs.onshikaku.org", "AAAA", IpAddr::V6(OQSDNS_LAN6));
    assert!(
        nslookup.contains(hweb) && !nslookup.contains(IMPOSTOR),
        "nslookup hweb.oqs.onshikaku.org must print {hweb}:\n{nslookup}"
    );
}

/// An answer over 1,232 bytes: truncated over UDP, whole over TCP.
fn check_large(lab: &Lab) {
    let name = "big.base.oqs-pdl.org";
    let udp = lab
        .query(name, "AAAA")
        .option("+ignore")
        .option("+notcp")
        .run();
    assert_eq!(udp.status, "NOERROR", "{name} over UDP: status\n{udp}");
    assert!(
        udp.has_flag("tc"),
        "{name} over UDP must have TC set\n{udp}"
    );
    assert!(
        udp.data("AAAA").len() < BIG_RECORDS,
        "{name} over UDP cannot hold every record\n{udp}"
    );
    let plain = lab
        .query(name, "AAAA")
        .option("+ignore")
        .option("+noedns")
        .run();
    assert!(
        plain.has_flag("tc"),
        "{name} over UDP without EDNS must have TC set\n{plain}"
    );
    let tcp = lab.query(name, "AAAA").tcp().run();
    assert_eq!(tcp.status, "NOERROR", "{name} over TCP: status\n{tcp}");
    assert!(
        !tcp.has_flag("tc"),
        "{name} over TCP must not be truncated\n{tcp}"
    );
    assert_eq!(
        tcp.data("AAAA").len(),
        BIG_RECORDS,
        "{name} over TCP: every record\n{tcp}"
    );
    let retried = lab.query(name, "AAAA").run();
    assert_eq!(
        retried.data("AAAA").len(),
        BIG_RECORDS,
        "dig's own retry over TCP after TC must get every record\n{retried}"
    );
}

/// A client outside the allow list gets REFUSED, over both families and transports.
fn check_refused(lab: &Lab) {
    let cases = [
        (IpAddr::V6(OQSDNS_WAN6), IpAddr::V6(STRANGER6), false),
        (IpAddr::V6(OQSDNS_WAN6), IpAddr::V6(STRANGER6), true),
        (IpAddr::V6(OQSDNS_LAN6), IpAddr::V6(STRANGER6), false),
        (IpAddr::V4(OQSDNS_WAN4), IpAddr::V4(STRANGER4), false),
        (IpAddr::V6(OQSDNS_WAN6), IpAddr::V6(INTERNET6), false),
    ];
    for (server, source, tcp) in cases {
        let query = lab
            .query("hweb.oqs.onshikaku.org", "AAAA")
            .server(server)
            .from(Host::Internet, Some(source));
        let answer = if tcp { query.tcp().run() } else { query.run() };
        let transport = if tcp { "TCP" } else { "UDP" };
        assert_eq!(
            answer.status, "REFUSED",
            "{source} (outside allow) asking {server} over {transport} must be refused\n{answer}"
        );
        assert!(
            answer.records.is_empty(),
            "a refusal has no answer\n{answer}"
        );
    }
}

fn lab_area(test: &str, area: Area) {
    let Some(mut lab) = Lab::start(test, area) else {
        return;
    };
    check_step7(&lab, false);
    check_step7(&lab, true);
    check_routing(&lab);
    check_large(&lab);
    check_refused(&lab);
    lab.assert_running();
}

#[test]
fn lab_east() {
    lab_area("lab_east", Area::East);
}

#[test]
fn lab_west() {
    lab_area("lab_west", Area::West);
}

/// The primary cut off: the alternate answers. Both cut off: SERVFAIL, and never the internet's
/// version of the name. Restored: the primary answers again.
fn failover(test: &str, area: Area) {
    let Some(mut lab) = Lab::start(test, area) else {
        return;
    };
    let name = area.name();
    let [nw_primary, nw_alternate] = area.nw_base();
    let [ngn_primary, _] = area.ngn();
    let hweb = step7(area).hweb;

    lab.cut_off(&[nw_primary, ngn_primary], Cut::All);
    for tcp in [false, true] {
        let alternate = format!("nw-base-{name}-alternate");
        assert_answered_by(&lab, "whoami.lineauth.mnw", tcp, &alternate, 6);
        let ngn = format!("ngn-{name}-alternate");
        assert_answered_by(&lab, &format!("whoami.{}", area.ngn_domain()), tcp, &ngn, 6);
        let answer = lab.query("hweb.oqs.onshikaku.org", "AAAA").wait(6).run();
        assert_data(&answer, "AAAA", &[hweb], "hweb with the primary cut off");
    }

    lab.cut_off(&[nw_primary, nw_alternate], Cut::All);
    for tcp in [false, true] {
        // Asked before the cut: the cache answers (fresh, or stale with TTL 30), with the
        // NW-base's address. Never asked: SERVFAIL. Never the internet's version.
        for (qname, rtype, cached) in [
            ("hweb.oqs.onshikaku.org", "AAAA", true),
            ("whoami.onshikaku.org", "TXT", false),
        ] {
            let query = lab.query(qname, rtype).wait(8);
            let answer = if tcp { query.tcp().run() } else { query.run() };
            assert!(
                !answer.mentions(IMPOSTOR) && !answer.mentions("internet"),
                "{qname} must never be answered from the internet\n{answer}"
            );
            if cached {
                assert_data(
                    &answer,
                    rtype,
                    &[hweb],
                    "hweb from the cache with both NW-base servers cut off",
                );
            } else {
                assert_eq!(
                    answer.status, "SERVFAIL",
                    "{qname} with both NW-base servers cut off (tcp: {tcp})\n{answer}"
                );
            }
        }
    }

    lab.restore();
    // The primary gets its place back once it answers again: when the probes had marked it
    // down, after `rise` probes in a row pass; when they had not yet (real queries only wake
    // them), at its first answer to a probe, which clears its lost races.
    let primary_up = format!("server=nw-base [{nw_primary}]:53 udp=up tcp=up use=udp");
    wait_for_status(&lab, &primary_up, 30, || {
        let _ = lab.query("whoami.lineauth.mnw", "TXT").wait(6).run();
    });
    let primary = format!("nw-base-{name}-primary");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let answer = lab
            .query(&format!("back{n}.whoami.lineauth.mnw"), "TXT")
            .wait(6)
            .run();
        if answer.data("TXT") == [primary.clone()] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the primary never answered first again\n{answer}\n{}",
            lab.oqsdns_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_answered_by(&lab, "whoami.lineauth.mnw", false, &primary, 6);
    lab.assert_running();
}

#[test]
fn failover_east() {
    failover("failover_east", Area::East);
}

#[test]
fn failover_west() {
    failover("failover_west", Area::West);
}

/// UDP to the NW-base servers dropped, TCP passing (a firewall the guide warns about, pp.12–13):
/// once the health module has seen it, the names resolve over TCP upstream, where dnsmasq and
/// unbound stop resolving.
#[test]
fn udp_blocked_east() {
    let status = "\n[status]\nlisten = \"[::1]:9153\"\n";
    let Some(lab) = Lab::start_with("udp_blocked_east", Area::East, status) else {
        return;
    };
    lab.cut_off(&Area::East.nw_base(), Cut::Udp);
    // Failing queries wake the probes, which find UDP dropped and TCP passing; the daemon's own
    // status (status.oqsdns CH TXT) says when. Each round asks again; the loop is bounded.
    let primary = "server=nw-base [2404:1a8:f583:d00::53:1]:53 udp=down tcp=up use=tcp";
    wait_for_status(&lab, primary, 45, || {
        let _ = lab.query("hweb.oqs.onshikaku.org", "AAAA").wait(8).run();
    });
    let hweb = step7(Area::East).hweb;
    // No UDP timeout waited: counted, not timed. No query of a client went to the NW-base over
    // UDP (the probes are counted apart).
    let udp_queries = || {
        let labels = ["route=\"nw-base\"", "transport=\"udp\""];
        let status = "[::1]:9153".parse().unwrap();
        lab.metric_sum(status, "oqsdns_upstream_queries_total", &labels)
    };
    for tcp in [false, true] {
        let before = udp_queries();
        let query = lab.query("hweb.oqs.onshikaku.org", "AAAA").wait(8);
        let answer = if tcp { query.tcp().run() } else { query.run() };
        assert_data(&answer, "AAAA", &[hweb], "hweb with UDP to NW-base dropped");
        assert_eq!(udp_queries(), before, "no UDP query to the NW-base");
    }
    assert_answered_by(
        &lab,
        "whoami.lineauth.mnw",
        false,
        "nw-base-east-primary",
        8,
    );
}
