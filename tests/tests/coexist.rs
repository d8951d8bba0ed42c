//! oqsdns beside the DNS software already on the box, in the lab: a real dnsmasq holding
//! 127.0.0.53:53 (UDP and TCP) as systemd-resolved does, and the shipped configuration's listen
//! settings (`listen = ["auto"]`): the daemon starts, answers on loopback and on the LAN
//! addresses, follows an IPv6 address added and removed while it runs, and does not rate-limit a
//! loopback client sending thousands of queries a second.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use oqsdns_config::Config;
use oqsdns_tests::lab::beside::{dnsmasq_holding, Program};
use oqsdns_tests::lab::env::{oqsdns_binary, program_or_skip};
use oqsdns_tests::lab::topology::{OQSDNS_LAN4, OQSDNS_LAN6, OQSDNS_WAN4};
use oqsdns_tests::lab::{Area, Cut, Host, Lab};

/// The listen settings of the shipped config/oqsdns.toml, as a `[server]` table for the lab.
fn shipped_listen() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/oqsdns.toml");
    let shipped = Config::load(&path).expect("the shipped configuration loads");
    let quoted = |items: Vec<String>| {
        let items: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
        items.join(", ")
    };
    let listen = shipped.server.listen.iter().map(ToString::to_string);
    format!(
        "\n[server]\nlisten = [{}]\ninterfaces = [{}]\n",
        quoted(listen.collect()),
        quoted(shipped.server.interfaces.clone())
    )
}

/// The lab with the shipped listen settings, oqsdns started after two other DNS servers on its
/// host: a stand-in for systemd-resolved on 127.0.0.53 (in 127.0.0.0/8, no interface address),
/// and one holding the WAN address (an interface address oqsdns must skip).
fn lab_beside_resolved(test: &str) -> Option<Lab> {
    let dnsmasq = program_or_skip(test, "dnsmasq", "dnsmasq-base")?;
    let before = move |ns: &_, dig: &Path, dir: &Path| -> Result<Vec<Program>, String> {
        let resolved = ["127.0.0.53".parse().unwrap()];
        Ok(vec![
            dnsmasq_holding(ns, &dnsmasq, dig, dir, "resolved", &resolved)?,
            dnsmasq_holding(ns, &dnsmasq, dig, dir, "other", &[IpAddr::V4(OQSDNS_WAN4)])?,
        ])
    };
    Lab::start_beside(test, Area::East, &shipped_listen(), &before)
}

fn assert_hweb(lab: &Lab, server: IpAddr, tcp: bool, from: Host) {
    let mut query = lab
        .query("hweb.oqs.onshikaku.org", "A")
        .server(server)
        .from(from, None);
    if tcp {
        query = query.tcp();
    }
    let answer = query.run();
    assert_eq!(
        answer.status,
        "NOERROR",
        "@{server} tcp={tcp}\n{answer}\n{}",
        lab.logs()
    );
    assert!(
        answer.data("A").iter().all(|a| a.starts_with("10.")) && !answer.data("A").is_empty(),
        "@{server}: {answer}"
    );
}

#[test]
fn starts_beside_resolved_and_answers_on_loopback_and_the_lan() {
    let Some(mut lab) =
        lab_beside_resolved("starts_beside_resolved_and_answers_on_loopback_and_the_lan")
    else {
        return;
    };
    for server in [IpAddr::V6(OQSDNS_LAN6), IpAddr::V4(OQSDNS_LAN4)] {
        for tcp in [false, true] {
            assert_hweb(&lab, server, tcp, Host::Terminal);
        }
    }
    for server in ["127.0.0.1", "::1"] {
        for tcp in [false, true] {
            assert_hweb(&lab, server.parse().unwrap(), tcp, Host::Oqsdns);
        }
    }
    // `config show` says what is bound, and the link-local address with its scope.
    let config = lab.scratch().join("oqsdns.toml");
    let config = config.to_string_lossy();
    let show = lab.run_on(
        Host::Oqsdns,
        &oqsdns_binary(),
        &["config", "show", "--config", &config],
        Duration::from_secs(10),
    );
    for line in [
        "#   127.0.0.1:53",
        "#   192.168.10.1:53",
        "#   [2408:82:1234:5600::1]:53",
        "#   [::1]:53",
        "#   192.0.2.2:53",
    ] {
        assert!(
            show.stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{}",
            show.stdout
        );
    }
    assert!(
        show.stdout
            .contains("# listen auto: each address of every interface on port 53"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .lines()
            .any(|l| l.starts_with("#   [fe80::") && l.ends_with("]:53") && l.contains('%')),
        "{}",
        show.stdout
    );
    assert!(
        !lab.oqsdns_log().contains("cannot listen on [fe80"),
        "link-local bound with its scope:\n{}",
        lab.oqsdns_log()
    );
    // A terminal asking the link-local address of the LAN interface is answered from it.
    let ip = lab.run_on(
        Host::Oqsdns,
        Path::new("ip"),
        &["-6", "-o", "addr", "show", "dev", "lan0", "scope", "link"],
        Duration::from_secs(10),
    );
    let link_local = ip
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on lan0: {}", ip.stdout))
        .to_string();
    let server = format!("@{link_local}%eth0");
    let dig = lab.run_on(
        Host::Terminal,
        lab.dig_path(),
        &[
            &server,
            "+time=3",
            "+tries=1",
            "hweb.oqs.onshikaku.org",
            "A",
        ],
        Duration::from_secs(8),
    );
    assert!(
        dig.stdout.contains("status: NOERROR") && dig.stdout.contains("10.108.65.21"),
        "{server}:\n{}{}\n{}",
        dig.stdout,
        dig.stderr,
        lab.logs()
    );
    // The other two still hold and answer their addresses.
    for (name, server) in [("resolved", "127.0.0.53"), ("other", "192.0.2.2")] {
        let answer = lab
            .query(&format!("{name}.test"), "A")
            .server(server.parse().unwrap())
            .from(Host::Oqsdns, None)
            .run();
        assert_eq!(answer.data("A"), ["127.0.0.54"], "{name}: {answer}");
    }
    // A rescan (an address added) tries the held address again, without another warning.
    lab.ip(
        Host::Oqsdns,
        &["-6", "addr", "add", "fd00:53::1/64", "dev", "lan0", "nodad"],
    );
    let rescanned = within(Duration::from_secs(2), || {
        lab.bound("udp", "[fd00:53::1]:53".parse().unwrap())
    });
    assert!(rescanned.is_some(), "{}", lab.logs());
    let log = lab.oqsdns_log();
    let skipped = |addr: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("cannot listen on {addr}")) && l.contains("skipping"))
            .count()
    };
    assert_eq!(
        skipped("192.0.2.2:53"),
        1,
        "the held address logged once:\n{log}"
    );
    assert_eq!(
        skipped("127.0.0.53:53"),
        0,
        "127.0.0.53 is no interface address:\n{log}"
    );
    lab.assert_running();
}

/// Polls until `check` holds or `limit` passes; says how long it took.
fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn an_address_added_after_start_is_served_and_its_listener_goes_with_it() {
    let Some(mut lab) =
        lab_beside_resolved("an_address_added_after_start_is_served_and_its_listener_goes_with_it")
    else {
        return;
    };
    // The NGN hands out a new prefix (the guide's FAQ Q18): a new global address on the LAN.
    let new: IpAddr = "2408:82:1234:5601::1".parse().unwrap();
    let sock = SocketAddr::new(new, 53);
    assert!(
        !lab.bound("udp", sock),
        "not bound before the address exists"
    );
    add_address(&lab, Host::Oqsdns, "2408:82:1234:5601::1/64", "lan0");
    add_address(&lab, Host::Terminal, "2408:82:1234:5601::100/64", "eth0");
    let served = within(Duration::from_secs(2), || {
        lab.bound("udp", sock) && lab.bound("tcp", sock)
    });
    assert!(
        served.is_some(),
        "no listener on {sock} within 2 s:\n{}",
        lab.logs()
    );
    assert_hweb(&lab, new, false, Host::Terminal);
    assert_hweb(&lab, new, true, Host::Terminal);

    del_address(&lab, Host::Oqsdns, "2408:82:1234:5601::1/64", "lan0");
    let gone = within(Duration::from_secs(2), || {
        !lab.bound("udp", sock) && !lab.bound("tcp", sock)
    });
    assert!(
        gone.is_some(),
        "the listener of {sock} is still open:\n{}",
        lab.logs()
    );
    // The others keep serving, in the same process.
    assert_hweb(&lab, IpAddr::V6(OQSDNS_LAN6), false, Host::Terminal);
    assert_hweb(&lab, IpAddr::V4(OQSDNS_LAN4), true, Host::Terminal);
    lab.assert_running();
    let log = lab.oqsdns_log();
    assert!(
        !log.contains("no netlink address events"),
        "followed over netlink, not by polling:\n{log}"
    );
    assert!(
        log.contains("address gone from its interface"),
        "the removal was seen:\n{log}"
    );
}

/// `ip addr add` of `cidr` on `host`'s `dev`, without duplicate address detection.
fn add_address(lab: &Lab, host: Host, cidr: &str, dev: &str) {
    lab.ip(host, &["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
}

/// `ip addr del` of `cidr` on `host`'s `dev`.
fn del_address(lab: &Lab, host: Host, cidr: &str, dev: &str) {
    lab.ip(host, &["-6", "addr", "del", cidr, "dev", dev]);
}

/// A link that flaps, or a prefix handed out again: the address goes and comes back while its
/// stopped listener still holds the UDP port for a question under way (the NGN DNS cut off, so
/// the question waits for its tries' timeouts). The new listener cannot bind until that socket
/// closes, and no address event comes after it does: without trying again soon, the address
/// stayed unserved until the 30 s rescan.
#[test]
fn an_address_back_while_its_old_listener_drains_is_served_again_within_seconds() {
    let test = "an_address_back_while_its_old_listener_drains_is_served_again_within_seconds";
    let Some(lab) = lab_beside_resolved(test) else {
        return;
    };
    let new: IpAddr = "2408:82:1234:5601::1".parse().unwrap();
    let sock = SocketAddr::new(new, 53);
    add_address(&lab, Host::Oqsdns, "2408:82:1234:5601::1/64", "lan0");
    add_address(&lab, Host::Terminal, "2408:82:1234:5601::100/64", "eth0");
    let bound = |transport| lab.bound(transport, sock);
    assert!(
        within(Duration::from_secs(2), || bound("udp") && bound("tcp")).is_some(),
        "no listener on {sock} within 2 s:\n{}",
        lab.logs()
    );
    assert_hweb(&lab, new, false, Host::Terminal);
    lab.cut_off(&lab.area().ngn(), Cut::All);
    let ss = Path::new("ss");
    let lab = &lab;
    std::thread::scope(|scope| {
        let name = format!("draining.{}", lab.area().ngn_domain());
        let asking = scope.spawn(move || lab.query(&name, "AAAA").server(new).wait(6).run());
        // dig's socket towards the address exists once its query is on the way.
        let sent = within(Duration::from_secs(5), || {
            let dst = format!("dst [{new}]:53");
            let out = lab.run_on(
                Host::Terminal,
                ss,
                &["-Hnu", "state", "all", &dst],
                Duration::from_secs(10),
            );
            !out.stdout.trim().is_empty()
        });
        assert!(sent.is_some(), "dig's query was not sent");
        del_address(lab, Host::Oqsdns, "2408:82:1234:5601::1/64", "lan0");
        assert!(
            within(Duration::from_secs(2), || !bound("tcp")).is_some(),
            "the listener of {sock} did not stop:\n{}",
            lab.logs()
        );
        assert!(
            bound("udp"),
            "the stopped listener's UDP socket closed at once: no question was under way to hold it"
        );
        add_address(lab, Host::Oqsdns, "2408:82:1234:5601::1/64", "lan0");
        // The question under way ends with the NGN DNS's timeouts; the address is then bound
        // again within a second, well before the rescan.
        let back = within(Duration::from_secs(8), || bound("tcp"));
        assert!(
            back.is_some(),
            "{sock} not served again within 8 s of coming back:\n{}",
            lab.logs()
        );
        let answered = asking.join().expect("the query's thread");
        assert_eq!(
            answered.status, "SERVFAIL",
            "the question under way was answered:\n{answered}"
        );
    });
    lab.restore();
    assert_hweb(lab, new, false, Host::Terminal);
    assert_hweb(lab, new, true, Host::Terminal);
    let log = lab.oqsdns_log();
    let taken = log
        .lines()
        .any(|l| l.contains("skipping this address") && l.contains("5601::1"));
    assert!(
        !taken,
        "its own stopping listener was taken for another program:\n{log}"
    );
}

#[test]
fn dnsperf_from_loopback_at_thousands_a_second_is_answered_whole() {
    let test = "dnsperf_from_loopback_at_thousands_a_second_is_answered_whole";
    let Some(dnsperf) = program_or_skip(test, "dnsperf", "dnsperf") else {
        return;
    };
    let Some(mut lab) = lab_beside_resolved(test) else {
        return;
    };
    let names = lab.scratch().join("queries.txt");
    let list: String = [
        "hweb.oqs.onshikaku.org A",
        "hweb.oqs.onshikaku.org AAAA",
        "www.example.com AAAA",
        "pweb.base.oqs-pdl.org A",
    ]
    .iter()
    .map(|q| format!("{q}\n"))
    .collect();
    std::fs::write(&names, list).unwrap();
    // 3,000 q/s for 10 s from 127.0.0.1: fifteen times the per-client rate, thirty times its burst.
    let names = names.to_string_lossy().to_string();
    let args = [
        "-s",
        "127.0.0.1",
        "-d",
        &names,
        "-l",
        "10",
        "-Q",
        "3000",
        "-c",
        "4",
        "-t",
        "3",
    ];
    let out = lab.run_on(Host::Oqsdns, &dnsperf, &args, Duration::from_secs(30));
    let report = format!("{}{}", out.stdout, out.stderr);
    let field = |label: &str| -> u64 {
        let line = report.lines().find(|l| l.trim_start().starts_with(label));
        let line = line.unwrap_or_else(|| panic!("no {label:?} in dnsperf's report:\n{report}"));
        let value = line
            .split(':')
            .nth(1)
            .and_then(|v| v.split_whitespace().next());
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    let (sent, completed, lost) = (
        field("Queries sent"),
        field("Queries completed"),
        field("Queries lost"),
    );
    assert!(sent >= 25_000, "dnsperf sent only {sent}:\n{report}");
    assert_eq!(lost, 0, "queries lost:\n{report}");
    assert_eq!(completed, sent, "{report}");
    let codes = report
        .lines()
        .find(|l| l.contains("Response codes"))
        .unwrap_or_default();
    assert!(
        codes.contains("NOERROR") && !codes.contains("REFUSED") && !codes.contains("SERVFAIL"),
        "every answer NOERROR: {codes}\n{report}"
    );
    lab.assert_running();
}
