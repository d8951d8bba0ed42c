//! OpenWrt in the lab: the package's `oqsdns openwrt setup` applied to a default router's
//! /etc/config/dhcp, a real dnsmasq run with the options OpenWrt's init script writes from it
//! (rebind protection on, `domain=lan`, `local=/lan/`, an addn-hosts file with a DHCP host) on
//! port 53 of the router, oqsdns behind it with the shipped UCI file's listen settings, and the
//! terminal asking the router: the guide's names (10.x kept), the LAN's own names and the
//! internet all resolve. Removal (`oqsdns openwrt restore`) gives back the file byte for byte.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oqsdns_tests::lab::beside::Program;
use oqsdns_tests::lab::env::{oqsdns_binary, program_or_skip};
use oqsdns_tests::lab::openwrt::{start_dnsmasq, LAN_HOST, ROUTER_NAME};
use oqsdns_tests::lab::process::run_ok;
use oqsdns_tests::lab::topology::{OQSDNS_LAN4, OQSDNS_LAN6, TERMINAL4, TERMINAL6};
use oqsdns_tests::lab::{Answer, Area, Lab};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

const SHIPPED_UCI: &str = "packaging/openwrt/oqsdns/files/oqsdns.config";
const DEFAULT_DHCP: &str = "packaging/openwrt/tests/dhcp-default.uci";

/// The shipped UCI file's `[server]` listen settings, for the lab's TOML.
fn shipped_listen() -> String {
    let text = std::fs::read_to_string(repo(SHIPPED_UCI)).unwrap();
    let config = oqsdns::uci::from_uci(&text, &|_| Err(std::io::ErrorKind::NotFound.into()))
        .expect("the shipped UCI file translates");
    let quoted = |items: Vec<String>| {
        let items: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
        items.join(", ")
    };
    format!(
        "\n[server]\nlisten = [{}]\ninterfaces = [{}]\n",
        quoted(
            config
                .server
                .listen
                .iter()
                .map(ToString::to_string)
                .collect()
        ),
        quoted(config.server.interfaces.clone())
    )
}

/// `oqsdns openwrt <args>` with the built binary; its output.
fn openwrt(args: &[&str], files: &[&Path]) -> String {
    let mut cmd = Command::new(oqsdns_binary());
    cmd.arg("openwrt").args(args);
    for file in files {
        cmd.arg(file);
    }
    run_ok(&mut cmd, Duration::from_secs(10)).unwrap_or_else(|e| panic!("oqsdns openwrt: {e}"))
}

fn assert_ok(answer: &Answer, rtype: &str, what: &str, lab: &Lab) -> Vec<String> {
    assert_eq!(answer.status, "NOERROR", "{what}\n{answer}\n{}", lab.logs());
    let data = answer.data(rtype);
    assert!(
        !data.is_empty(),
        "{what}: no {rtype}\n{answer}\n{}",
        lab.logs()
    );
    data
}

#[test]
fn a_default_openwrt_router_resolves_the_guide_the_lan_and_the_internet_through_dnsmasq() {
    let test =
        "a_default_openwrt_router_resolves_the_guide_the_lan_and_the_internet_through_dnsmasq";
    let Some(dnsmasq) = program_or_skip(test, "dnsmasq", "dnsmasq-base") else {
        return;
    };
    let before = move |ns: &_, dig: &Path, dir: &Path| -> Result<Vec<Program>, String> {
        // What the package's init script does at start, on a copy of a default router's file.
        let dhcp = dir.join("dhcp");
        std::fs::copy(repo(DEFAULT_DHCP), &dhcp).map_err(|e| e.to_string())?;
        let state = dir.join("dhcp.saved");
        let said = openwrt(
            &["setup", "--dhcp"],
            &[
                &dhcp,
                Path::new("--config"),
                &repo(SHIPPED_UCI),
                Path::new("--state"),
                &state,
            ],
        );
        assert_eq!(said.trim(), "changed");
        let text = std::fs::read_to_string(&dhcp).map_err(|e| e.to_string())?;
        let router = [IpAddr::V4(OQSDNS_LAN4), IpAddr::V6(OQSDNS_LAN6)];
        let terminal = [IpAddr::V4(TERMINAL4), IpAddr::V6(TERMINAL6)];
        Ok(vec![start_dnsmasq(
            ns, &dnsmasq, dig, dir, &text, &router, &terminal,
        )?])
    };
    let Some(mut lab) = Lab::start_beside(test, Area::East, &shipped_listen(), &before) else {
        return;
    };
    let router = IpAddr::V6(OQSDNS_LAN6);
    for (server, tcp) in [(router, false), (IpAddr::V4(OQSDNS_LAN4), true)] {
        let ask = |name: &str, rtype: &str| {
            let query = lab.query(name, rtype).server(server);
            if tcp {
                query.tcp().run()
            } else {
                query.run()
            }
        };
        let what = format!("@{server} tcp={tcp}");
        // The NW-base's private addresses pass dnsmasq's rebind protection (rebind_domain).
        let hweb4 = ask("hweb.oqs.onshikaku.org", "A");
        let mut a = assert_ok(&hweb4, "A", &format!("hweb A {what}"), &lab);
        a.sort();
        assert_eq!(
            a,
            ["10.108.64.217", "10.108.65.21", "10.108.65.96"],
            "{hweb4}"
        );
        let hweb6 = ask("hweb.oqs.onshikaku.org", "AAAA");
        let aaaa = assert_ok(&hweb6, "AAAA", &format!("hweb AAAA {what}"), &lab);
        assert_eq!(aaaa, ["2404:1a8:f583:1a10:2779:2395:6092:37fd"], "{hweb6}");
        for (rtype, prefix) in [("A", "10.255.180."), ("AAAA", "2408:210:9c0::")] {
            let pweb = ask("pweb.base.oqs-pdl.org", rtype);
            let data = assert_ok(&pweb, rtype, &format!("pweb {rtype} {what}"), &lab);
            assert_eq!(data.len(), 15, "{pweb}");
            assert!(data.iter().all(|d| d.starts_with(prefix)), "{pweb}");
        }
        // The LAN's own names stay dnsmasq's.
        let host = ask(&format!("{LAN_HOST}.lan"), "A");
        assert_eq!(
            assert_ok(&host, "A", "a DHCP host", &lab),
            [TERMINAL4.to_string()]
        );
        let name = ask(&format!("{ROUTER_NAME}.lan"), "AAAA");
        assert_eq!(
            assert_ok(&name, "AAAA", "the router", &lab),
            [OQSDNS_LAN6.to_string()]
        );
        // The internet, through oqsdns's default route (a TXT: the lab's internet addresses are
        // documentation ranges, which dnsmasq's rebind protection rightly blocks, as it would
        // the NW-base's 10.x without rebind_domain).
        let www = ask(&format!("q{tcp}.whoami.example.com"), "TXT");
        assert_eq!(
            assert_ok(&www, "TXT", "an internet name", &lab),
            ["internet"]
        );
        let blocked = ask("www.example.com", "A");
        assert!(
            blocked.data("A").is_empty() && blocked.raw.contains("EDE: 15 (Blocked)"),
            "rebind protection is on:\n{blocked}"
        );
        // And the guide's names went through oqsdns to the area's NW-base DNS.
        let who = ask(&format!("q{tcp}.whoami.onshikaku.org"), "TXT");
        let who = assert_ok(&who, "TXT", "whoami", &lab);
        assert_eq!(who, ["nw-base-east-primary"], "via oqsdns to the NW-base");
    }
    lab.assert_running();

    // Removal: the init script's stop (and the package's prerm) puts the file back.
    let dhcp = lab.scratch().join("dhcp");
    let state = lab.scratch().join("dhcp.saved");
    let said = openwrt(
        &["restore", "--dhcp"],
        &[&dhcp, Path::new("--state"), &state],
    );
    assert_eq!(said.trim(), "changed");
    let restored = std::fs::read(&dhcp).unwrap();
    assert_eq!(
        restored,
        std::fs::read(repo(DEFAULT_DHCP)).unwrap(),
        "byte for byte"
    );
    assert!(
        !state.exists(),
        "the state file is removed with the settings"
    );
}
