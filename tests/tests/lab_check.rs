//! `oqsdns check` in the lab: the built binary run inside a lab namespace with the lab's
//! configuration, against the running daemon and the knotd servers at the guide's addresses,
//! with nftables cutting what each verdict needs.
//!
//! Each test builds its own namespaces (see `oqsdns_tests::lab`); without root or the tools it
//! says it was skipped, unless `OQSDNS_LAB=require`.

use std::time::{Duration, Instant};

use oqsdns_tests::lab::process::Output;
use oqsdns_tests::lab::run::verdict_ids;
use oqsdns_tests::lab::topology::{CENTRE, OQSDNS_LAN4, TERMINAL6};
use oqsdns_tests::lab::{Area, Cut, Host, Lab};

fn start(test: &str, area: Area, extra: &str) -> Option<Lab> {
    Lab::start_with(test, area, extra)
}

/// The check's JSON and its verdict ids; panics with the output and the daemon's log unless
/// it exited with `code`.
fn check_json(lab: &Lab, host: Host, args: &[&str], code: i32) -> (serde_json::Value, Vec<String>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = lab.check(host, &all);
    let context = || describe(lab, &out);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(code),
        "exit status of oqsdns check\n{}",
        context()
    );
    let value: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e})\n{}", context()));
    let ids = value["verdicts"]
        .as_array()
        .expect("a verdicts array")
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    (value, ids)
}

fn describe(lab: &Lab, out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}\n--- oqsdns log ---\n{}",
        out.stdout,
        out.stderr,
        lab.oqsdns_log()
    )
}

/// The text output, which must carry both languages of `id`'s verdict.
fn check_text(lab: &Lab, host: Host, args: &[&str], ja: &str, en: &str) {
    let out = lab.check(host, args);
    assert!(
        out.stdout.contains(ja) && out.stdout.contains(en),
        "want {ja:?} and {en:?}\n{}",
        describe(lab, &out)
    );
}

#[test]
fn check_all_good_east() {
    let Some(lab) = start("check_all_good_east", Area::East, "") else {
        return;
    };
    let (json, ids) = check_json(&lab, Host::Oqsdns, &[], 0);
    assert_eq!(ids, ["ok"], "{json:#}");
    assert_eq!(json["area"], "east");
    assert_eq!(
        json["server"], "[::1]:53",
        "the wildcard listen address is asked on loopback"
    );
    let www = json["daemon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "www.lineauth.mnw AAAA")
        .expect("www.lineauth.mnw asked through the daemon");
    assert_eq!(
        www["udp"]["addresses"][0], "2404:1a8:f583:af0::1",
        "{www:#}"
    );
    assert_eq!(www["tcp"]["ok"], true, "{www:#}");
    // The NW-base primary was asked straight, over both transports.
    let direct = json["upstreams"].as_array().unwrap();
    assert!(direct
        .iter()
        .any(|r| r["server"] == "[2404:1a8:f583:d00::53:1]:53" && r["tcp"]["ok"] == true));
    check_text(&lab, Host::Oqsdns, &[], "すべて正常です", "All good");
}

/// The daemon runs the West table on a line where only East's servers are reachable.
#[test]
fn check_wrong_area() {
    let Some(lab) = start("check_wrong_area", Area::West, "") else {
        return;
    };
    let mut west = Area::West.nw_base().to_vec();
    west.extend(Area::West.ngn());
    lab.cut_off(&west, Cut::All);
    let (json, ids) = check_json(&lab, Host::Oqsdns, &[], 1);
    assert!(ids.contains(&"wrong-area".to_string()), "{json:#}");
    assert!(
        !ids.contains(&"nw-base-unreachable".to_string()),
        "{json:#}"
    );
    check_text(
        &lab,
        Host::Oqsdns,
        &[],
        "設定の area（東日本 east / 西日本 west）が回線と違います",
        "the configured area (east / west) does not match the line",
    );
}

/// Both areas' NW-base DNS cut off (line authentication missing), the NGN DNS answering.
#[test]
fn check_nw_base_cut_off() {
    let Some(lab) = start("check_nw_base_cut_off", Area::East, "") else {
        return;
    };
    let mut nw_base = Area::East.nw_base().to_vec();
    nw_base.extend(Area::West.nw_base());
    lab.cut_off(&nw_base, Cut::All);
    let (json, ids) = check_json(&lab, Host::Oqsdns, &[], 1);
    assert_eq!(ids, ["nw-base-unreachable"], "{json:#}");
    check_text(
        &lab,
        Host::Oqsdns,
        &[],
        "NGN DNS は応答しますが、オンライン資格確認NW基盤の DNS サーバーが応答しません",
        "The NGN DNS answers but the NW-base DNS servers do not",
    );
}

/// The centre's web addresses (hweb.oqs.onshikaku.org, www.lineauth.mnw) accept TCP on port
/// 443, then nftables drops everything to them while the DNS servers stay untouched: the names
/// still resolve, and the verdict is the path's, not the DNS's (FAQ Q2, Q3; p.2).
#[test]
fn check_centre_unreachable() {
    let Some(lab) = start("check_centre_unreachable", Area::East, "") else {
        return;
    };
    let east = [CENTRE[0], CENTRE[1]];
    assert!(lab
        .centre()
        .iter()
        .any(|a| a.ip() == east[0] && a.port() == 443));
    let (json, ids) = check_json(&lab, Host::Oqsdns, &[], 0);
    assert_eq!(ids, ["ok"], "{json:#}");
    let centre = json["findings"]["centre"]
        .as_array()
        .expect("centre findings");
    let seen: Vec<(String, String, bool)> = centre
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["addr"].as_str().unwrap().to_string(),
                c["connected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("www.lineauth.mnw".into(), east[1].to_string(), true),
            ("hweb.oqs.onshikaku.org".into(), east[0].to_string(), true),
        ],
        "{json:#}"
    );

    lab.cut_off(&east, Cut::All);
    let (json, ids) = check_json(&lab, Host::Oqsdns, &[], 1);
    assert_eq!(ids, ["centre-unreachable"], "{json:#}");
    let findings = &json["findings"];
    assert_eq!(findings["daemon_udp"], true, "{json:#}");
    assert_eq!(findings["daemon_tcp"], true, "{json:#}");
    for route in findings["routes"].as_array().unwrap() {
        for server in route["servers"].as_array().unwrap() {
            assert!(
                server["udp"] == true && server["tcp"] == true,
                "every DNS server still answers: {json:#}"
            );
        }
    }
    assert!(findings["centre"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["connected"] == false && c["error"] == "timed out"));
    let verdict = &json["verdicts"][0];
    assert_eq!(verdict["call_vendor"], true);
    assert!(verdict["en"]
        .as_str()
        .unwrap()
        .contains(&format!("[{}]:443", east[0])));
    check_text(
        &lab,
        Host::Oqsdns,
        &[],
        "センターの TCP 443 番（HTTPS）に接続できません",
        "TCP port 443 (HTTPS) of the centre cannot be connected to",
    );
}

/// `/health` until `done` says yes about its JSON, within 30 s (the probes run every 2 s).
fn health_until(
    lab: &Lab,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> (u16, serde_json::Value) {
    let status = "[::1]:9153".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = lab.http_get(Host::Oqsdns, status, "/health");
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/health is not JSON ({e}): {body}"));
        if done(&json) {
            return (code, json);
        }
        assert!(
            Instant::now() < deadline,
            "/health never showed {what}: {json:#}\n--- oqsdns log ---\n{}",
            lab.oqsdns_log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The daemon's own loop connects to the centre at the health interval: `/health` says 200
/// with both addresses connected, 503 with `centre-unreachable` (and every server up) once
/// nftables drops them, and 200 again when they pass.
#[test]
fn health_centre_unreachable() {
    let Some(lab) = start(
        "health_centre_unreachable",
        Area::East,
        "\n[health]\ninterval = \"2s\"\n\n[status]\nlisten = \"[::1]:9153\"\n",
    ) else {
        return;
    };
    let connected = |json: &serde_json::Value, want: bool| {
        json["centre"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["connected"] == want))
    };
    let (code, json) = health_until(&lab, "both centre addresses connected", |j| {
        connected(j, true) && verdict_ids(j) == ["ok"]
    });
    assert_eq!(code, 200, "{json:#}");
    let names: Vec<&str> = json["centre"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"hweb.oqs.onshikaku.org") && names.contains(&"www.lineauth.mnw"));

    lab.cut_off(&[CENTRE[0], CENTRE[1]], Cut::All);
    let (code, json) = health_until(&lab, "centre-unreachable", |j| connected(j, false));
    assert_eq!(code, 503, "{json:#}");
    assert_eq!(verdict_ids(&json), ["centre-unreachable"], "{json:#}");
    for route in json["routes"].as_array().unwrap() {
        for server in route["servers"].as_array().unwrap() {
            assert_eq!(server["state"], "up", "the DNS is not blamed: {json:#}");
        }
    }
    let (_, page) = lab.http_get(Host::Oqsdns, "[::1]:9153".parse().unwrap(), "/");
    assert!(
        page.contains("センターへの接続（TCP 443 番）") && page.contains("timed out"),
        "{page}"
    );

    lab.restore();
    let (code, json) = health_until(&lab, "the centre connected again", |j| connected(j, true));
    assert_eq!(code, 200, "{json:#}");
}

/// DNS over TCP to the NW-base servers dropped, UDP passing (pp.12–13).
#[test]
fn check_tcp_blocked() {
    let Some(lab) = start("check_tcp_blocked", Area::East, "") else {
        return;
    };
    lab.cut_off(&Area::East.nw_base(), Cut::Tcp);
    let (json, ids) = check_json(&lab, Host::Oqsdns, &[], 1);
    assert_eq!(ids, ["tcp-blocked"], "{json:#}");
    let en = json["verdicts"][0]["en"].as_str().unwrap();
    assert!(en.contains("[2404:1a8:f583:d00::53:1]:53"), "{en}");
    check_text(
        &lab,
        Host::Oqsdns,
        &[],
        "UDP では応答しますが TCP では応答しません",
        "Answers over UDP but not over TCP",
    );
}

/// The LAN's prefix replaced on the oqsdns host after the daemon started: the daemon's prefix
/// watch (every health interval, 2 s here) notices, and the check asks for line authentication
/// again (FAQ Q18). The old prefix goes first: in the run that learned them, prefixes that join
/// all the learned ones are learned too (wan6 and the LAN may come up one after the other).
#[test]
fn check_prefix_changed() {
    let Some(lab) = start(
        "check_prefix_changed",
        Area::East,
        "\n[health]\ninterval = \"2s\"\n",
    ) else {
        return;
    };
    let (_, ids) = check_json(&lab, Host::Oqsdns, &[], 0);
    assert_eq!(ids, ["ok"]);
    lab.ip(
        Host::Oqsdns,
        &[
            "-6",
            "addr",
            "del",
            "2408:82:1234:5600::1/64",
            "dev",
            "lan0",
        ],
    );
    lab.ip(
        Host::Oqsdns,
        &[
            "-6",
            "addr",
            "add",
            "2408:82:9999:1200::1/64",
            "dev",
            "lan0",
            "nodad",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (json, ids) = loop {
        let out = lab.check(Host::Oqsdns, &["--json"]);
        if out.stdout.contains("prefix-changed=yes") {
            let (json, ids) = check_json(&lab, Host::Oqsdns, &[], 1);
            break (json, ids);
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's status never said prefix-changed=yes\n{}",
            describe(&lab, &out)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(ids, ["prefix-changed"], "{json:#}");
    check_text(
        &lab,
        Host::Oqsdns,
        &[],
        "https://www.lineauth.mnw で回線認証を確認してください",
        "check line authentication (回線認証) again at https://www.lineauth.mnw",
    );
    // The next step ends with the confirmation, which the notice waits for.
    check_text(
        &lab,
        Host::Oqsdns,
        &[],
        "そのあと oqsdns 機で `sudo oqsdns check --config /etc/oqsdns/oqsdns.toml --confirm-reauth` を実行",
        "Then run `sudo oqsdns check --config /etc/oqsdns/oqsdns.toml --confirm-reauth` on the oqsdns box",
    );
}

/// The check run on the terminal after its global IPv6 address is removed, asking oqsdns over
/// IPv4: the daemon answers, but nothing is reachable over IPv6 from this host.
#[test]
fn check_no_global_ipv6() {
    let Some(lab) = start("check_no_global_ipv6", Area::East, "") else {
        return;
    };
    lab.ip(
        Host::Terminal,
        &[
            "-6",
            "addr",
            "del",
            &format!("{TERMINAL6}/64"),
            "dev",
            "eth0",
        ],
    );
    let server = OQSDNS_LAN4.to_string();
    let (json, ids) = check_json(&lab, Host::Terminal, &["--server", &server], 1);
    assert!(ids.contains(&"no-ipv6".to_string()), "{json:#}");
    assert!(
        !ids.contains(&"daemon-not-answering".to_string()),
        "{json:#}"
    );
    for id in ["nw-base-unreachable", "wrong-area"] {
        assert!(
            !ids.contains(&id.to_string()),
            "{id} is explained by no IPv6: {json:#}"
        );
    }
    assert_eq!(json["findings"]["daemon_udp"], true, "{json:#}");
    assert_eq!(
        json["host_ipv6"].as_array().map(Vec::len),
        Some(0),
        "{json:#}"
    );
    check_text(
        &lab,
        Host::Terminal,
        &["--server", &server],
        "このホストにグローバル IPv6 アドレスがありません",
        "This host has no global IPv6 address",
    );
}
