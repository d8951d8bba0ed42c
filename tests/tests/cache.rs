//! The cache, serve-stale, identical queries joined, the answers the daemon gives itself, and
//! rebind protection, against fake upstreams on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use oqsdns_config::{Config, RouteConfig, ServerAddr};
use oqsdns_tests::client::{self, query, txt_of};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream, Via};

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test finished within 30 s")
}

fn route(config: &mut Config, domain: &str, servers: &[SocketAddr]) {
    config.routes.push(RouteConfig {
        name: Some(domain.to_string()),
        domains: vec![domain.parse().unwrap()],
        servers: servers.iter().map(|a| ServerAddr(*a)).collect(),
        names: Vec::new(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_query_is_answered_without_an_upstream_packet() {
    within(async {
        let upstream = FakeUpstream::start(|q, _| {
            Action::Reply(fake::reply(
                q,
                vec![fake::a_record(q, "192.0.2.7".parse().unwrap(), 300)],
            ))
        })
        .await;
        let daemon = Daemon::start(config_with_default(&[upstream.addr])).await;
        let first = client::udp(
            daemon.addr(),
            &query("www.example.com", RecordType::A, None),
        )
        .await;
        assert_eq!(first.answers[0].ttl, 300);
        let q = query("WWW.Example.COM", RecordType::A, Some(1232));
        let second = client::udp(daemon.addr(), &q).await;
        let third = client::tcp(
            daemon.addr(),
            &query("www.example.com", RecordType::A, None),
        )
        .await;
        assert_eq!(
            upstream.total(),
            1,
            "the second and third came from the cache"
        );
        assert_eq!(second.metadata.id, q.metadata.id, "the client's ID");
        assert_eq!(
            second.queries[0].name().to_ascii(),
            "WWW.Example.COM.",
            "the client's casing"
        );
        assert!(second.answers[0].ttl <= 300 && third.answers[0].ttl <= 300);
        assert_eq!(second.answers[0].data.to_string(), "192.0.2.7");
        // Another type or the DO bit is another question.
        client::udp(
            daemon.addr(),
            &query("www.example.com", RecordType::AAAA, None),
        )
        .await;
        assert_eq!(upstream.total(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_is_cached_for_the_soa_minimum() {
    within(async {
        // `gone.example`'s zone has an SOA minimum of 0: its NXDOMAIN expires at once, so no
        // clock has to run (the cache's own tests count lifetimes down with an injected clock).
        let upstream = FakeUpstream::start(|q, _| {
            let minimum = if fake::qname(q).to_ascii().starts_with("gone.") {
                0
            } else {
                300
            };
            Action::Reply(fake::nxdomain(q, "example.", minimum))
        })
        .await;
        let daemon = Daemon::start(config_with_default(&[upstream.addr])).await;
        let (missing, gone) = (
            query("missing.example", RecordType::A, None),
            query("gone.example", RecordType::A, None),
        );
        for _ in 0..2 {
            let answer = client::udp(daemon.addr(), &missing).await;
            assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        }
        assert_eq!(upstream.total(), 1, "the NXDOMAIN was cached");
        for _ in 0..2 {
            let answer = client::udp(daemon.addr(), &gone).await;
            assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        }
        assert_eq!(
            upstream.total(),
            3,
            "an NXDOMAIN lives for its SOA minimum: 0 s is not kept"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_misses_make_one_upstream_query() {
    within(async {
        let upstream = FakeUpstream::start(|q, _| {
            Action::Delay(
                Duration::from_millis(300),
                fake::reply(q, vec![fake::txt(q, "once")]),
            )
        })
        .await;
        let daemon = Daemon::start(config_with_default(&[upstream.addr])).await;
        let addr = daemon.addr();
        let mut tasks = Vec::new();
        for _ in 0..100 {
            tasks.push(tokio::spawn(async move {
                client::udp(addr, &query("popular.example", RecordType::TXT, None)).await
            }));
        }
        for task in tasks {
            assert_eq!(txt_of(&task.await.unwrap()), ["once"]);
        }
        assert_eq!(upstream.total(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_answer_is_served_with_ttl_30_when_every_server_fails() {
    within(async {
        let dead = Arc::new(AtomicBool::new(false));
        let answer = |dead: Arc<AtomicBool>| {
            move |q: &Message, _: Via| {
                if dead.load(Ordering::Relaxed) {
                    Action::Drop
                } else {
                    Action::Reply(fake::reply(
                        q,
                        // TTL 0: stored for serve-stale and expired at once, so no clock runs.
                        vec![fake::a_record(q, "10.108.65.21".parse().unwrap(), 0)],
                    ))
                }
            }
        };
        let primary = FakeUpstream::start(answer(dead.clone())).await;
        let alternate = FakeUpstream::start(answer(dead.clone())).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = config_with_default(&[internet.addr]);
        route(
            &mut config,
            "onshikaku.org",
            &[primary.addr, alternate.addr],
        );
        config.forward.timeout = "200ms".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let q = || query("hweb.oqs.onshikaku.org", RecordType::A, None);
        let fresh = client::udp(daemon.addr(), &q()).await;
        assert_eq!(fresh.metadata.response_code, ResponseCode::NoError);
        assert_eq!(fresh.answers[0].ttl, 0);
        dead.store(true, Ordering::Relaxed);
        let stale = client::udp(daemon.addr(), &q()).await;
        assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
        assert_eq!(stale.answers[0].data.to_string(), "10.108.65.21");
        assert_eq!(
            stale.answers[0].ttl, 30,
            "RFC 8767: stale answers carry TTL 30"
        );
        assert!(
            primary.total() >= 2 && alternate.total() >= 1,
            "both were tried first"
        );
        assert_eq!(internet.total(), 0);
        // The default route does not serve stale unless configured.
        let name = query("www.example.com", RecordType::TXT, None);
        assert_eq!(
            txt_of(&client::udp(daemon.addr(), &name).await),
            ["internet"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_answers_localhost_its_own_ptr_and_private_reverse_zones() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("internet")).await;
        let daemon = Daemon::start(config_with_default(&[upstream.addr])).await;
        let ptr = client::udp(
            daemon.addr(),
            &query("1.0.0.127.in-addr.arpa", RecordType::PTR, None),
        )
        .await;
        assert_eq!(ptr.metadata.response_code, ResponseCode::NoError);
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        match &ptr.answers[0].data {
            RData::PTR(name) => assert_eq!(name.to_ascii(), format!("{host}.")),
            other => panic!("not a PTR: {other:?}"),
        }
        for name in [
            "5.1.168.192.in-addr.arpa",
            "9.9.10.in-addr.arpa",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
        ] {
            let answer = client::udp(daemon.addr(), &query(name, RecordType::PTR, None)).await;
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
            assert!(answer.metadata.authoritative);
            assert_eq!(answer.authorities.len(), 1, "an SOA for negative caching");
        }
        let local = client::udp(daemon.addr(), &query("localhost", RecordType::A, None)).await;
        assert_eq!(local.answers[0].data.to_string(), "127.0.0.1");
        let local6 = client::tcp(
            daemon.addr(),
            &query("app.localhost", RecordType::AAAA, None),
        )
        .await;
        assert_eq!(local6.answers[0].data.to_string(), "::1");
        let any = client::udp(
            daemon.addr(),
            &query("www.example.com", RecordType::ANY, None),
        )
        .await;
        assert!(
            matches!(any.answers[0].data, RData::HINFO(_)),
            "RFC 8482 minimal answer"
        );
        assert_eq!(upstream.total(), 0, "none of these went upstream");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_for_a_reverse_zone_takes_it_over() {
    within(async {
        let lan = FakeUpstream::start(fake::identify("lan")).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = config_with_default(&[internet.addr]);
        route(&mut config, "168.192.in-addr.arpa", &[lan.addr]);
        let daemon = Daemon::start(config).await;
        let answer = client::udp(
            daemon.addr(),
            &query("5.1.168.192.in-addr.arpa", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["lan"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_from_the_internet_are_removed_but_routes_keep_theirs() {
    within(async {
        let answer_with = |ip: &'static str| {
            move |q: &Message, _: Via| {
                Action::Reply(fake::reply(
                    q,
                    vec![fake::a_record(q, ip.parse().unwrap(), 60)],
                ))
            }
        };
        let internet = FakeUpstream::start(answer_with("192.168.1.20")).await;
        let nw_base = FakeUpstream::start(answer_with("10.108.65.21")).await;
        let mut config = config_with_default(&[internet.addr]);
        route(&mut config, "onshikaku.org", &[nw_base.addr]);
        let daemon = Daemon::start(config).await;
        let rebind = client::udp(
            daemon.addr(),
            &query("evil.example.com", RecordType::A, None),
        )
        .await;
        assert_eq!(rebind.metadata.response_code, ResponseCode::NoError);
        assert!(
            rebind.answers.is_empty(),
            "192.168.1.20 from the internet was removed: {rebind:?}"
        );
        let split = client::udp(
            daemon.addr(),
            &query("hweb.oqs.onshikaku.org", RecordType::A, None),
        )
        .await;
        assert_eq!(
            split.answers[0].data.to_string(),
            "10.108.65.21",
            "the NW-base's 10.x is kept"
        );
    })
    .await;
}
