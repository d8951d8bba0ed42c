use super::*;

const NW1: &str = "[2404:1a8:f583:d00::53:1]:53";
const NW2: &str = "[2404:1a8:f583:d00::53:2]:53";
const NGN1: &str = "[2404:1a8:7f01:a::3]:53";
const WEST1: &str = "[2001:a7ff:f014:d00::53:1]:53";
const INET: &str = "192.0.2.53:53";

fn server(addr: &str, udp: bool, tcp: bool) -> ServerFinding {
    ServerFinding {
        addr: addr.parse().unwrap(),
        udp,
        tcp,
    }
}

fn route(name: &str, kind: RouteKind, servers: Vec<ServerFinding>) -> RouteFinding {
    RouteFinding {
        name: name.into(),
        kind,
        servers,
    }
}

/// East, everything answering over both transports.
fn healthy() -> Findings {
    Findings {
        daemon_answers: true,
        daemon_udp: true,
        daemon_tcp: true,
        routes: vec![
            route("ngn", RouteKind::Ngn, vec![server(NGN1, true, true)]),
            route(
                "nw-base",
                RouteKind::NwBase,
                vec![server(NW1, true, true), server(NW2, true, true)],
            ),
            route(
                "default",
                RouteKind::Default,
                vec![server(INET, true, true)],
            ),
        ],
        other_area: Some(route(
            "nw-base",
            RouteKind::NwBase,
            vec![server(WEST1, false, false)],
        )),
        host_global_ipv6: true,
        prefix_changed: Some(false),
        centre: vec![centre("hweb.oqs.onshikaku.org", HWEB, true)],
        openwrt: false,
    }
}

const HWEB: &str = "2404:1a8:f583:1a10:2779:2395:6092:37fd";
const LINEAUTH: &str = "2404:1a8:f583:af0::1";

fn centre(name: &str, addr: &str, connected: bool) -> CentreFinding {
    CentreFinding {
        name: name.into(),
        addr: addr.parse().unwrap(),
        connected,
        error: (!connected).then(|| "timed out".into()),
    }
}

/// The text outside quotes (screen texts the guide shows in Japanese, quoted in 「」 or "")
/// and without the guide's own term 回線認証.
fn unquoted(text: &str) -> String {
    let mut out = String::new();
    let (mut depth, mut ascii_quote) = (0, false);
    for c in text.replace("回線認証", "").chars() {
        match c {
            '「' => depth += 1,
            '」' => depth -= 1,
            '"' => ascii_quote = !ascii_quote,
            _ if depth == 0 && !ascii_quote => out.push(c),
            _ => {}
        }
    }
    out
}

fn ids(f: &Findings) -> Vec<&'static str> {
    let v = verdicts(f);
    for verdict in &v {
        assert!(
            verdict
                .ja
                .chars()
                .any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
            "{}: the Japanese text has no kana: {}",
            verdict.id,
            verdict.ja
        );
        for en in [&verdict.en, &verdict.action_en] {
            let bare = unquoted(en);
            assert!(
                bare.is_ascii(),
                "{}: the English text is not English: {en}",
                verdict.id,
            );
        }
        assert!(
            verdict
                .action_ja
                .chars()
                .any(|c| ('\u{3040}'..='\u{30ff}').contains(&c))
                && !verdict.action_en.is_empty(),
            "{}: no next step",
            verdict.id
        );
        assert_eq!(
            verdict.call_vendor,
            verdict.action_ja.contains("システムベンダーに連絡"),
            "{}: the Japanese next step says whether to call the vendor",
            verdict.id
        );
        assert!(
            id::ALL.contains(&verdict.id),
            "{} is not in id::ALL",
            verdict.id
        );
        assert!(
            !verdict.reference.is_empty(),
            "{}: no reference",
            verdict.id
        );
    }
    v.into_iter().map(|v| v.id).collect()
}

fn nw_base(f: &mut Findings) -> &mut RouteFinding {
    f.routes
        .iter_mut()
        .find(|r| r.kind == RouteKind::NwBase)
        .unwrap()
}

#[test]
fn all_good_is_ok_and_exit_zero() {
    let v = verdicts(&healthy());
    assert_eq!(ids(&healthy()), [id::OK]);
    assert!(all_ok(&v));
}

#[test]
fn a_silent_daemon_is_named_first() {
    let mut f = healthy();
    f.daemon_answers = false;
    f.daemon_udp = false;
    f.daemon_tcp = false;
    f.prefix_changed = None;
    assert_eq!(ids(&f), [id::DAEMON_NOT_ANSWERING]);
    assert!(!all_ok(&verdicts(&f)));
}

#[test]
fn nw_base_dead_with_ngn_alive_names_the_guides_causes_not_line_authentication() {
    let mut f = healthy();
    nw_base(&mut f).servers = vec![server(NW1, false, false), server(NW2, false, false)];
    f.daemon_udp = false;
    f.daemon_tcp = false;
    f.centre.clear();
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::NW_BASE_UNREACHABLE]);
    let v = &v[0];
    // www.lineauth.mnw cannot resolve in this state: sending staff there is a circle.
    for text in [&v.ja, &v.en, &v.action_ja, &v.action_en] {
        assert!(!text.contains("lineauth.mnw"), "{text}");
    }
    for cited in [
        "1-1 手順2 (p.1)",
        "FAQ Q3",
        "手順1 (p.2)",
        "FAQ Q20",
        "FAQ Q21",
    ] {
        assert!(v.reference.contains(cited), "{cited} in {}", v.reference);
    }
    assert!(v.action_ja.contains("お客さまID") && v.action_ja.contains("IPv6 に対応"));
    assert!(
        v.action_ja.contains("ネットワークサポートデスク") && v.action_en.contains("0120-220-571")
    );
    assert!(v.call_vendor);
}

#[test]
fn nw_base_dead_with_ngn_dead_too_is_not_line_authentication() {
    let mut f = healthy();
    nw_base(&mut f).servers = vec![server(NW1, false, false)];
    f.routes[0].servers = vec![server(NGN1, false, false)];
    // The internet resolver still answers over IPv6: IPv6 itself works.
    f.routes[2]
        .servers
        .push(server("[2001:db8:53::53]:53", true, true));
    assert_eq!(ids(&f), [id::ROUTE_DOWN, id::ROUTE_DOWN]);
}

#[test]
fn the_other_areas_nw_base_answering_means_the_wrong_area() {
    let mut f = healthy();
    nw_base(&mut f).servers = vec![server(NW1, false, false), server(NW2, false, false)];
    f.other_area = Some(route(
        "nw-base",
        RouteKind::NwBase,
        vec![server(WEST1, true, true)],
    ));
    assert_eq!(ids(&f), [id::WRONG_AREA]);
}

#[test]
fn udp_without_tcp_is_a_blocked_tcp() {
    let mut f = healthy();
    nw_base(&mut f).servers = vec![server(NW1, true, false), server(NW2, true, false)];
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::TCP_BLOCKED]);
    assert!(v[0].reference.contains("pp.12–13"));
    assert!(v[0].en.contains(NW1) && v[0].en.contains(NW2));
}

#[test]
fn the_daemon_answering_udp_only_is_a_blocked_tcp() {
    let mut f = healthy();
    f.daemon_tcp = false;
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::TCP_BLOCKED]);
    assert!(v[0].en.contains("oqsdns"));
}

#[test]
fn no_global_ipv6_hides_what_it_explains() {
    let mut f = healthy();
    f.host_global_ipv6 = false;
    for route in &mut f.routes {
        for s in &mut route.servers {
            if s.addr.is_ipv6() {
                s.udp = false;
                s.tcp = false;
            }
        }
    }
    f.daemon_udp = false;
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::NO_IPV6]);
    assert!(v[0].action_ja.contains("フレッツ・v6オプション"));
    assert!(v[0].en.contains("no global IPv6 address"));
}

#[test]
fn nothing_reachable_over_ipv6_with_an_address_is_no_ipv6() {
    let mut f = healthy();
    for route in f.routes.iter_mut().chain(f.other_area.iter_mut()) {
        for s in &mut route.servers {
            if s.addr.is_ipv6() {
                *s = server(&s.addr.to_string(), false, false);
            }
        }
    }
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::NO_IPV6]);
    assert!(v[0].en.contains("No DNS server answers over IPv6"));
}

#[test]
fn loopback_upstreams_never_ask_for_ipv6() {
    let f = Findings {
        daemon_answers: true,
        daemon_udp: true,
        daemon_tcp: true,
        routes: vec![route(
            "nw-base",
            RouteKind::NwBase,
            vec![server("127.0.0.1:5300", true, true)],
        )],
        other_area: None,
        host_global_ipv6: false,
        prefix_changed: Some(false),
        centre: Vec::new(),
        openwrt: false,
    };
    assert_eq!(ids(&f), [id::OK]);
}

#[test]
fn a_changed_prefix_follows_q18_step_by_step() {
    let mut f = healthy();
    f.prefix_changed = Some(true);
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::PREFIX_CHANGED]);
    assert!(v[0].reference.contains("FAQ Q18"));
    assert!(v[0].ja.contains("https://www.lineauth.mnw") && v[0].en.contains("again"));
    let a = &v[0].action_ja;
    assert!(a.contains("https://www.lineauth.mnw"), "{a}");
    assert!(
        a.contains("「認証済みです。」と表示されれば、回線認証の対応は不要です"),
        "{a}"
    );
    assert!(a.contains("「希望する」を押し"), "{a}");
    assert!(!v[0].call_vendor, "staff can do it themselves");
}

#[test]
fn no_ipv6_cites_step_2_and_dhcp_pd_behind_a_hikari_denwa_router() {
    let mut f = healthy();
    f.host_global_ipv6 = false;
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::NO_IPV6]);
    assert!(
        v[0].reference.starts_with("手順2 (p.3), FAQ Q1"),
        "{}",
        v[0].reference
    );
    assert!(v[0].action_ja.contains("ひかり電話") && v[0].action_ja.contains("DHCP-PD"));
    assert!(v[0].action_en.contains("DHCPv6-PD") && v[0].action_en.contains("not RA"));
}

#[test]
fn ok_says_what_it_checked_and_no_more() {
    let mut f = healthy();
    let v = verdicts(&f);
    assert!(v[0]
        .ja
        .contains("確認したのは名前解決と、センターの TCP 443 番への接続だけです"));
    f.centre.clear();
    let v = verdicts(&f);
    assert_eq!(v[0].id, id::OK);
    assert!(
        v[0].ja.contains("確認したのは名前解決だけです"),
        "{}",
        v[0].ja
    );
    assert!(
        v[0].en.contains("only name resolution was checked"),
        "{}",
        v[0].en
    );
    assert!(!v[0].call_vendor);
}

#[test]
fn the_centre_refusing_tcp_443_is_its_own_verdict_and_dns_stays_quiet() {
    let mut f = healthy();
    f.centre = vec![
        centre("hweb.oqs.onshikaku.org", HWEB, false),
        centre("www.lineauth.mnw", LINEAUTH, false),
    ];
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::CENTRE_UNREACHABLE]);
    assert!(v[0].en.contains(&format!("[{HWEB}]:443")) && v[0].en.contains(LINEAUTH));
    assert!(v[0].reference.contains("FAQ Q2") && v[0].reference.contains("手順1 (p.2)"));
    assert!(v[0].action_ja.contains("UTM") && v[0].action_ja.contains("ping"));
    // One address of two still counts: the staff's browser may pick the other.
    f.centre[0].connected = true;
    assert_eq!(ids(&f), [id::CENTRE_UNREACHABLE]);
    assert!(!verdicts(&f)[0].en.contains(HWEB));
}

#[test]
fn the_centre_is_not_blamed_for_what_the_dns_explains() {
    let mut f = healthy();
    f.centre = vec![centre("www.lineauth.mnw", LINEAUTH, false)];
    nw_base(&mut f).servers = vec![server(NW1, false, false), server(NW2, false, false)];
    f.daemon_udp = false;
    f.daemon_tcp = false;
    assert_eq!(ids(&f), [id::NW_BASE_UNREACHABLE]);
    let mut f = healthy();
    f.centre = vec![centre("www.lineauth.mnw", LINEAUTH, false)];
    f.host_global_ipv6 = false;
    assert_eq!(ids(&f), [id::NO_IPV6]);
}

#[test]
fn openwrt_shows_its_own_commands() {
    let mut f = healthy();
    f.daemon_answers = false;
    let systemd = &verdicts(&f)[0];
    assert!(systemd.action_ja.contains("systemctl status oqsdns"));
    assert!(systemd.action_en.contains("journalctl -u oqsdns"));
    f.openwrt = true;
    let openwrt = &verdicts(&f)[0];
    for text in [&openwrt.action_ja, &openwrt.action_en] {
        assert!(
            text.contains("/etc/init.d/oqsdns") && text.contains("logread -e oqsdns"),
            "{text}"
        );
        assert!(
            !text.contains("systemctl") && !text.contains("journalctl"),
            "{text}"
        );
    }
}

#[test]
fn routes_are_named_as_the_guide_names_them() {
    let mut f = healthy();
    nw_base(&mut f).servers[1] = server(NW2, false, false);
    let v = verdicts(&f);
    assert!(
        v[0].ja.contains("（転送先: オンライン資格確認NW基盤、"),
        "{}",
        v[0].ja
    );
    assert!(!v[0].ja.contains("ルート nw-base"), "{}", v[0].ja);
    assert!(v[0].ja.contains("優先DNSサーバー／代替DNSサーバー"));
}

#[test]
fn all_ids_are_listed_once() {
    let mut seen = id::ALL.to_vec();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), id::ALL.len());
}

#[test]
fn an_alternate_down_is_reported_but_names_resolve() {
    let mut f = healthy();
    nw_base(&mut f).servers[1] = server(NW2, false, false);
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::SERVER_DOWN]);
    assert!(v[0].en.contains(NW2) && !v[0].en.contains(NW1));
}

#[test]
fn the_daemon_failing_names_with_healthy_upstreams_is_its_own_verdict() {
    let mut f = healthy();
    f.daemon_udp = false;
    f.daemon_tcp = false;
    assert_eq!(ids(&f), [id::DAEMON_FAILS_NAMES]);
}

#[test]
fn several_findings_give_several_verdicts_in_order() {
    let mut f = healthy();
    nw_base(&mut f).servers = vec![server(NW1, false, false), server(NW2, false, false)];
    f.routes[2].servers = vec![server(INET, true, false)];
    f.prefix_changed = Some(true);
    assert_eq!(
        ids(&f),
        [id::NW_BASE_UNREACHABLE, id::TCP_BLOCKED, id::PREFIX_CHANGED]
    );
}

#[test]
fn every_id_has_an_example_of_its_own() {
    for name in id::ALL {
        let v = example(name).unwrap_or_else(|| panic!("{name}: no example"));
        assert_eq!(v.id, name);
    }
    assert!(example("no-such-verdict").is_none());
}
