use super::*;

const DEFAULT: &str = include_str!("../../../../packaging/openwrt/tests/dhcp-default.uci");
const RELAY: &str = include_str!("../../../../packaging/openwrt/tests/dhcp-relay.uci");
const SHIPPED_UCI: &str = include_str!("../../../../packaging/openwrt/oqsdns/files/oqsdns.config");

fn shipped_setup() -> Setup {
    let config = crate::uci::from_uci(SHIPPED_UCI, &|_| Err(std::io::ErrorKind::NotFound.into()))
        .expect("the shipped UCI file translates");
    Setup::for_config(&config).expect("the shipped configuration has a side port")
}

/// The statements of `reference` in `text`, as (key, value) pairs.
fn statements(text: &str, reference: &str) -> Vec<(String, String)> {
    let file = File::parse(text).unwrap();
    let section = file.section(reference).unwrap();
    section
        .statements
        .iter()
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect()
}

fn has(text: &str, reference: &str, key: &str, value: &str) -> bool {
    statements(text, reference)
        .iter()
        .any(|(k, v)| k == key && v == value)
}

#[test]
fn the_shipped_configuration_forwards_to_a_side_port_with_both_areas_domains() {
    let setup = shipped_setup();
    assert_eq!(setup.port, 5353);
    for domain in [
        "onshikaku.org",
        "lineauth.mnw",
        "base.oqs-pdl.org",
        "flets-east.jp",
        "flets-west.jp",
    ] {
        assert!(
            setup.rebind_domains.iter().any(|d| d == domain),
            "{domain}: {:?}",
            setup.rebind_domains
        );
    }
}

#[test]
fn a_default_router_forwards_to_oqsdns_and_removal_gives_back_the_file_byte_for_byte() {
    let setup = shipped_setup();
    let edited = super::setup(DEFAULT, None, &setup).unwrap();
    assert!(has(&edited.dhcp, DNSMASQ, "noresolv", "1"));
    assert!(has(&edited.dhcp, DNSMASQ, "server", "127.0.0.1#5353"));
    assert!(has(&edited.dhcp, DNSMASQ, "rebind_domain", "onshikaku.org"));
    // Rebind protection stays on, and the LAN's own names stay dnsmasq's.
    assert!(has(&edited.dhcp, DNSMASQ, "rebind_protection", "1"));
    assert!(has(&edited.dhcp, DNSMASQ, "local", "/lan/"));
    // odhcpd serves RA itself here: it announces the router already; the LAN is untouched.
    assert_eq!(statements(&edited.dhcp, LAN), statements(DEFAULT, LAN));
    assert_eq!(restore(&edited.dhcp, &edited.state).unwrap(), DEFAULT);
}

#[test]
fn in_relay_mode_the_lan_announces_the_router_and_removal_gives_back_the_file() {
    let mut setup = shipped_setup();
    setup.announce = vec!["fe80::1".parse().unwrap()];
    let edited = super::setup(RELAY, None, &setup).unwrap();
    assert!(has(&edited.dhcp, LAN, "dns_service", "1"));
    assert!(has(&edited.dhcp, LAN, "dns", "fe80::1"));
    assert!(has(&edited.dhcp, DNSMASQ, "noresolv", "1"));
    assert!(!has(&edited.dhcp, DNSMASQ, "noresolv", "0"));
    assert!(
        has(
            &edited.dhcp,
            DNSMASQ,
            "server",
            "/corp.example/192.168.1.53"
        ),
        "the router's own rule stays"
    );
    // New lines take the section's indentation; wan6 is not touched.
    assert!(
        edited.dhcp.contains("\n    list server '127.0.0.1#5353'\n"),
        "{}",
        edited.dhcp
    );
    assert_eq!(statements(&edited.dhcp, "wan6"), statements(RELAY, "wan6"));
    let restored = restore(&edited.dhcp, &edited.state).unwrap();
    assert_eq!(restored, RELAY);
}

#[test]
fn setup_twice_changes_nothing_more_and_one_restore_undoes_it() {
    let setup = shipped_setup();
    let first = super::setup(DEFAULT, None, &setup).unwrap();
    let second = super::setup(&first.dhcp, Some(&first.state), &setup).unwrap();
    assert_eq!(second, first);
    assert_eq!(restore(&second.dhcp, &second.state).unwrap(), DEFAULT);
}

#[test]
fn a_new_port_replaces_the_old_forwarding_instead_of_adding_to_it() {
    let mut setup = shipped_setup();
    let first = super::setup(DEFAULT, None, &setup).unwrap();
    setup.port = 5300;
    let second = super::setup(&first.dhcp, Some(&first.state), &setup).unwrap();
    assert!(has(&second.dhcp, DNSMASQ, "server", "127.0.0.1#5300"));
    assert!(!has(&second.dhcp, DNSMASQ, "server", "127.0.0.1#5353"));
    assert_eq!(restore(&second.dhcp, &second.state).unwrap(), DEFAULT);
}

#[test]
fn what_was_changed_by_hand_since_is_left_alone() {
    let setup = shipped_setup();
    let edited = super::setup(DEFAULT, None, &setup).unwrap();
    // The administrator adds a rule of their own and turns noresolv off again by hand.
    let by_hand = edited
        .dhcp
        .replace("option noresolv '1'", "option noresolv '0'")
        .replace(
            "config dhcp 'lan'",
            "config dhcp 'lan'\n\tlist dns 'fd00::53'",
        );
    let restored = restore(&by_hand, &edited.state).unwrap();
    assert!(
        has(&restored, DNSMASQ, "noresolv", "0"),
        "the hand-set value stays"
    );
    assert!(has(&restored, LAN, "dns", "fd00::53"));
    assert!(!has(&restored, DNSMASQ, "server", "127.0.0.1#5353"));
    assert!(!has(&restored, DNSMASQ, "rebind_domain", "onshikaku.org"));
}

#[test]
fn the_state_file_keeps_lines_with_tabs_and_quotes() {
    let text = "config dnsmasq\n\toption noresolv\t\"0\" # tab\\ here\n";
    let setup = shipped_setup();
    let edited = super::setup(text, None, &setup).unwrap();
    assert_eq!(restore(&edited.dhcp, &edited.state).unwrap(), text);
    assert!(read_state("option\tx\n").is_err());
}

#[test]
fn oqsdns_on_port_53_itself_is_refused() {
    let config = Config::from_toml("[server]\nlisten = [\"auto\"]\n").unwrap();
    let error = Setup::for_config(&config).unwrap_err();
    assert!(error.contains("port 53 itself"), "{error}");
    let config = Config::from_toml("[server]\nlisten = [\"192.168.1.1:5353\"]\n").unwrap();
    assert!(Setup::for_config(&config)
        .unwrap_err()
        .contains("no loopback"));
}
