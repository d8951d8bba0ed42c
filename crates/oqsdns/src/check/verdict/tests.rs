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
    }
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
        assert!(
            verdict.en.is_ascii() || verdict.en.contains("回線認証"),
            "{}: the English text is not English: {}",
            verdict.id,
            verdict.en
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
fn nw_base_dead_with_ngn_alive_points_at_line_authentication() {
    let mut f = healthy();
    nw_base(&mut f).servers = vec![server(NW1, false, false), server(NW2, false, false)];
    f.daemon_udp = false;
    f.daemon_tcp = false;
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::NW_BASE_UNREACHABLE]);
    assert!(v[0].reference.contains("Q18") && v[0].reference.contains("Q3"));
    assert!(v[0].ja.contains("回線認証") && v[0].en.contains("line authentication"));
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
    assert!(v[0].ja.contains("フレッツ・v6オプション"));
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
    };
    assert_eq!(ids(&f), [id::OK]);
}

#[test]
fn a_changed_prefix_asks_for_line_authentication_again() {
    let mut f = healthy();
    f.prefix_changed = Some(true);
    let v = verdicts(&f);
    assert_eq!(ids(&f), [id::PREFIX_CHANGED]);
    assert_eq!(v[0].reference, "FAQ Q18");
    assert!(v[0].ja.contains("https://www.lineauth.mnw") && v[0].en.contains("again"));
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
