//! The forwarder core on loopback: routing of the guide's names, failover, TC over TCP, answer
//! sizes, TCP pipelining, access control and reply validation, against fake upstreams.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use oqsdns_config::{Area, Config, RouteConfig, ServerAddr};
use oqsdns_tests::client::{self, query, txt_of};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream, Via};

/// The guide's East table with its domains, but with the given servers in place of the real ones.
fn east_table_on(ngn: &[SocketAddr], nw_base: &[SocketAddr], default: &[SocketAddr]) -> Config {
    let mut config = config_with_default(default);
    let preset = Config {
        area: Area::East,
        ..Config::default()
    }
    .routes_effective();
    for route in preset {
        let servers = if route.name == "ngn" { ngn } else { nw_base };
        config.routes.push(RouteConfig {
            name: Some(route.name),
            domains: route.domains,
            servers: servers.iter().map(|a| ServerAddr(*a)).collect(),
            names: Vec::new(),
        });
    }
    config.forward.timeout = "300ms".parse().unwrap();
    config
}

/// A loopback address with nothing listening: UDP gets ICMP port unreachable, TCP a reset.
async fn dead_addr() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.local_addr().unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test finished within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_routes_each_of_the_guides_names() {
    within(async {
        let ngn = FakeUpstream::start(fake::identify("ngn")).await;
        let nw_base = FakeUpstream::start(fake::identify("nw-base")).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = east_table_on(&[ngn.addr], &[nw_base.addr], &[internet.addr]);
        config.cache.entries = 0; // every query goes upstream, to count them
        let daemon = Daemon::start(config).await;
        let cases = [
            ("www.lineauth.mnw", "nw-base"),
            ("assv.asc.flets-east.jp", "ngn"),
            ("hweb.oqs.onshikaku.org", "nw-base"),
            ("crldownload.obn.managedpki.ne.jp", "nw-base"),
            ("pweb.base.oqs-pdl.org", "nw-base"),
            ("repo.cybertrust.ne.jp", "nw-base"),
            ("www.secomtrust.net", "nw-base"),
            ("HWEB.OQS.ONSHIKAKU.ORG.", "nw-base"),
            ("notonshikaku.org", "internet"),
            ("oqs-pdl.org", "internet"),
            ("assv.asc.flets-west.jp", "internet"),
            ("www.example.com", "internet"),
        ];
        for (name, want) in cases {
            for udp in [true, false] {
                let q = query(name, RecordType::TXT, Some(1232));
                let answer = if udp {
                    client::udp(daemon.addr(), &q).await
                } else {
                    client::tcp(daemon.addr(), &q).await
                };
                assert_eq!(
                    answer.metadata.response_code,
                    ResponseCode::NoError,
                    "{name}"
                );
                assert_eq!(
                    txt_of(&answer),
                    [want],
                    "{name} over {}",
                    if udp { "UDP" } else { "TCP" }
                );
            }
        }
        assert_eq!(
            internet.total(),
            8,
            "only the four internet names, twice each, reach the default"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_names_never_reach_the_default_even_when_their_servers_are_dead() {
    within(async {
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let silent = FakeUpstream::start(|_, _| Action::Drop).await;
        let config = east_table_on(
            &[dead_addr().await],
            &[silent.addr, dead_addr().await],
            &[internet.addr],
        );
        let daemon = Daemon::start(config).await;
        for name in [
            "hweb.oqs.onshikaku.org",
            "www.lineauth.mnw",
            "assv.asc.flets-east.jp",
        ] {
            let answer = client::udp(daemon.addr(), &query(name, RecordType::AAAA, None)).await;
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::ServFail,
                "{name}"
            );
            let answer = client::tcp(daemon.addr(), &query(name, RecordType::AAAA, None)).await;
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::ServFail,
                "{name} over TCP"
            );
        }
        assert_eq!(
            internet.total(),
            0,
            "a split name leaked to the default servers"
        );
        assert!(silent.total() >= 2, "the primary was tried");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alternate_answers_when_the_primary_times_out_fails_or_refuses() {
    within(async {
        let alternate = FakeUpstream::start(fake::identify("alternate")).await;
        let primaries = [
            FakeUpstream::start(|_, _| Action::Drop).await,
            FakeUpstream::start(|q, _| Action::Reply(fake::rcode(q, ResponseCode::ServFail))).await,
            FakeUpstream::start(|q, _| Action::Reply(fake::rcode(q, ResponseCode::Refused))).await,
        ];
        for primary in &primaries {
            let mut config = config_with_default(&[alternate.addr]);
            config.routes.push(RouteConfig {
                name: None,
                domains: vec!["lineauth.mnw".parse().unwrap()],
                servers: vec![ServerAddr(primary.addr), ServerAddr(alternate.addr)],
                names: Vec::new(),
            });
            config.forward.timeout = "300ms".parse().unwrap();
            let daemon = Daemon::start(config).await;
            let answer = client::udp(
                daemon.addr(),
                &query("www.lineauth.mnw", RecordType::TXT, None),
            )
            .await;
            // Within the client's wait; that a silent primary is raced rather than waited for
            // is health.rs's test, asserted by what was asked, not by the clock.
            assert_eq!(txt_of(&answer), ["alternate"]);
            assert_eq!(primary.total(), 1);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_failing_gives_servfail_within_servers_times_timeout() {
    within(async {
        let a = FakeUpstream::start(|_, _| Action::Drop).await;
        let b = FakeUpstream::start(|_, _| Action::Drop).await;
        let mut config = east_table_on(&[a.addr], &[a.addr, b.addr], &[b.addr]);
        config.forward.timeout = "200ms".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let answer = client::udp(
            daemon.addr(),
            &query("hweb.oqs.onshikaku.org", RecordType::A, None),
        )
        .await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        // SERVFAIL came once each server had been given its whole timeout over UDP, and no try
        // was made twice: within servers × timeout, whatever the machine's load.
        for (i, server) in [&a, &b].into_iter().enumerate() {
            let udp = oqsdns_core::Transport::Udp;
            let health = daemon.health("nw-base", i);
            assert_eq!(
                health.stats.timeouts.of(udp).get(),
                1,
                "server {i} timed out"
            );
            let asked = server
                .received()
                .iter()
                .filter(|r| r.via == Via::Udp)
                .count();
            assert_eq!(asked, 1, "server {i} asked once over UDP");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_upstream_answer_is_fetched_over_tcp() {
    within(async {
        let upstream =
            FakeUpstream::start(|q, _| Action::Reply(fake::reply(q, fake::aaaa_records(q, 60))))
                .await;
        let daemon = Daemon::start(config_with_default(&[upstream.addr])).await;
        let answer =
            client::tcp(daemon.addr(), &query("big.example", RecordType::AAAA, None)).await;
        assert_eq!(
            answer.answers.len(),
            60,
            "a TCP client gets the whole answer"
        );
        assert!(!answer.metadata.truncation);
        assert_eq!(upstream.count(Via::Udp), 1, "asked over UDP first");
        assert_eq!(upstream.count(Via::Tcp), 1, "then over TCP after TC");
        let edns = upstream.received()[0]
            .message
            .edns
            .clone()
            .expect("EDNS towards upstream");
        assert_eq!(edns.max_payload(), 1232);
        // A UDP client with a 4096 buffer still gets at most 1232 bytes: TC, then it retries on TCP.
        let answer = client::udp(
            daemon.addr(),
            &query("big.example", RecordType::AAAA, Some(4096)),
        )
        .await;
        assert!(answer.metadata.truncation, "60 AAAA do not fit 1232 bytes");
        assert!(answer.answers.is_empty());
        assert_eq!(answer.queries[0].name().to_ascii(), "big.example.");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_client_gets_what_fits_its_buffer_and_tc_otherwise() {
    within(async {
        let upstream =
            FakeUpstream::start(|q, _| Action::Reply(fake::reply(q, fake::aaaa_records(q, 30))))
                .await;
        let daemon = Daemon::start(config_with_default(&[upstream.addr])).await;
        // 30 AAAA records are about 900 bytes: over 512, under 1232.
        let plain = client::udp(
            daemon.addr(),
            &query("thirty.example", RecordType::AAAA, None),
        )
        .await;
        assert!(plain.metadata.truncation, "no EDNS means 512 bytes at most");
        assert!(
            plain.edns.is_none(),
            "no OPT record for a client that sent none"
        );
        let edns = client::udp(
            daemon.addr(),
            &query("thirty.example", RecordType::AAAA, Some(1232)),
        )
        .await;
        assert!(!edns.metadata.truncation);
        assert_eq!(edns.answers.len(), 30);
        assert_eq!(
            edns.edns.expect("OPT for an EDNS client").max_payload(),
            1232
        );
        let tcp = client::tcp(
            daemon.addr(),
            &query("thirty.example", RecordType::AAAA, None),
        )
        .await;
        assert_eq!(tcp.answers.len(), 30);
        assert!(tcp.edns.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_answers_leave_as_they_complete_not_in_order() {
    within(async {
        let upstream = FakeUpstream::start(|q, _| {
            let slow = fake::qname(q).to_ascii().starts_with("slow");
            let message = fake::reply(q, vec![fake::txt(q, if slow { "slow" } else { "fast" })]);
            if slow {
                Action::Delay(Duration::from_millis(1500), message)
            } else {
                Action::Reply(message)
            }
        })
        .await;
        let mut config = config_with_default(&[upstream.addr]);
        config.forward.timeout = "3s".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let mut stream = tokio::net::TcpStream::connect(daemon.addr()).await.unwrap();
        let slow = query("slow.example", RecordType::TXT, None);
        let fast = query("fast.example", RecordType::TXT, None);
        client::send_frame(&mut stream, &slow.to_vec().unwrap()).await;
        client::send_frame(&mut stream, &fast.to_vec().unwrap()).await;
        let first = Message::from_vec(&client::read_frame(&mut stream).await.unwrap()).unwrap();
        let second = Message::from_vec(&client::read_frame(&mut stream).await.unwrap()).unwrap();
        assert_eq!(
            (first.metadata.id, txt_of(&first)),
            (fast.metadata.id, vec!["fast".to_string()])
        );
        assert_eq!(
            (second.metadata.id, txt_of(&second)),
            (slow.metadata.id, vec!["slow".to_string()])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_allow_are_refused_and_nothing_is_forwarded() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = config_with_default(&[upstream.addr]);
        config.server.allow = vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let daemon = Daemon::start(config).await;
        let answer = client::udp(
            daemon.addr(),
            &query("www.example.com", RecordType::A, None),
        )
        .await;
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        let answer = client::tcp(
            daemon.addr(),
            &query("www.example.com", RecordType::A, None),
        )
        .await;
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        assert_eq!(upstream.total(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_with_a_wrong_id_or_question_are_ignored() {
    within(async {
        let upstream = FakeUpstream::start(|q, via| {
            let mut wrong_id = fake::reply(q, vec![fake::txt(q, "wrong id")]);
            wrong_id.metadata.id = q.metadata.id.wrapping_add(1);
            let mut other = q.clone();
            other.queries[0].set_name("other.example.".parse().unwrap());
            let wrong_question = fake::reply(&other, vec![fake::txt(&other, "wrong question")]);
            let mut wrong_type = q.clone();
            wrong_type.queries[0].set_query_type(RecordType::A);
            let wrong_type = fake::reply(&wrong_type, vec![]);
            let right = fake::reply(q, vec![fake::txt(q, "right")]);
            let mut datagrams = vec![wrong_id, wrong_question, wrong_type];
            if fake::qname(q).to_ascii().starts_with("good") {
                datagrams.push(right);
            }
            let _ = via;
            Action::Raw(datagrams.iter().map(|m| m.to_vec().unwrap()).collect())
        })
        .await;
        let mut config = config_with_default(&[upstream.addr]);
        config.forward.timeout = "300ms".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let answer =
            client::udp(daemon.addr(), &query("good.example", RecordType::TXT, None)).await;
        assert_eq!(txt_of(&answer), ["right"]);
        let answer = client::udp(daemon.addr(), &query("bad.example", RecordType::TXT, None)).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::ServFail,
            "only forged replies: SERVFAIL"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_query_has_a_fresh_id_and_sockets_change_port() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("x")).await;
        let mut config = config_with_default(&[upstream.addr]);
        config.cache.entries = 0; // the same question every time, each upstream
        let daemon = Daemon::start(config).await;
        let q = query("same.example", RecordType::TXT, None);
        // One after another: a pooled socket carries at most POOLED_USES queries, then a new
        // socket (a new random port) takes over.
        let n = 4 * usize::from(oqsdns_core::upstream::POOLED_USES);
        for _ in 0..n {
            client::udp(daemon.addr(), &q).await;
        }
        let received = upstream.received();
        assert_eq!(received.len(), n);
        let ids: std::collections::HashSet<u16> =
            received.iter().map(|r| r.message.metadata.id).collect();
        let ports: std::collections::HashSet<u16> =
            received.iter().map(|r| r.from.port()).collect();
        assert!(
            ids.len() >= n - 2 && !ids.contains(&q.metadata.id),
            "IDs {ids:?}"
        );
        assert!(ports.len() >= 4, "source ports {ports:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_under_way_at_once_use_several_ports_none_more_than_its_share() {
    within(async {
        let upstream = FakeUpstream::start(|q, _| {
            Action::Delay(
                Duration::from_millis(300),
                fake::reply(q, vec![fake::txt(q, "x")]),
            )
        })
        .await;
        let mut config = config_with_default(&[upstream.addr]);
        config.cache.entries = 0;
        let daemon = Daemon::start(config).await;
        let addr = daemon.addr();
        let mut asks = tokio::task::JoinSet::new();
        for i in 0..20 {
            asks.spawn(async move {
                let q = query(&format!("n{i}.example"), RecordType::TXT, None);
                client::udp(addr, &q).await
            });
        }
        while asks.join_next().await.is_some() {}
        let received = upstream.received();
        assert_eq!(received.len(), 20);
        // A socket takes at most POOLED_USES queries in its life, some at once: the 20 under
        // way at once came from at least three ports, each with at most that many, and no two
        // queries on one port had the same ID.
        let mut per_port: std::collections::HashMap<u16, Vec<u16>> = Default::default();
        for r in &received {
            per_port
                .entry(r.from.port())
                .or_default()
                .push(r.message.metadata.id);
        }
        let most = usize::from(oqsdns_core::upstream::POOLED_USES);
        assert!(
            per_port.len() >= 20_usize.div_ceil(most),
            "ports {per_port:?}"
        );
        for (port, ids) in &per_port {
            assert!(ids.len() <= most, "port {port} carried {ids:?}");
            let unique: std::collections::HashSet<&u16> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "port {port} carried {ids:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_pass_through_faithfully() {
    within(async {
        let upstream = FakeUpstream::start(|q, _| {
            let name = fake::qname(q).to_ascii().to_ascii_lowercase();
            if name.starts_with("missing") {
                let mut m = fake::nxdomain(q, "example.", 120);
                m.metadata.authentic_data = true;
                return Action::Reply(m);
            }
            Action::Reply(fake::reply(
                q,
                vec![fake::a_record(q, "10.108.65.21".parse().unwrap(), 4321)],
            ))
        })
        .await;
        // A route, as the NW-base's: its private 10.x answers are exempt from rebind protection.
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = config_with_default(&[internet.addr]);
        config.routes.push(RouteConfig {
            name: None,
            domains: vec!["example".parse().unwrap()],
            servers: vec![ServerAddr(upstream.addr)],
            names: Vec::new(),
        });
        let daemon = Daemon::start(config).await;
        let q = query("HWeb.Example.", RecordType::A, Some(1232));
        let answer = client::udp(daemon.addr(), &q).await;
        assert_eq!(answer.metadata.id, q.metadata.id);
        assert_eq!(
            answer.queries[0].name().to_ascii(),
            "HWeb.Example.",
            "the client's casing"
        );
        assert!(answer.metadata.recursion_available, "RA");
        assert!(answer.metadata.authoritative, "AA passes through");
        assert_eq!(answer.answers[0].ttl, 4321);
        assert_eq!(
            answer.answers[0].data.to_string(),
            "10.108.65.21",
            "private 10.x passes"
        );
        // RFC 6840 §5.8: AD goes to a client that set AD or DO (protocol.rs tests the others).
        let mut missing = query("missing.example", RecordType::A, Some(1232));
        missing.metadata.authentic_data = true;
        let answer = client::udp(daemon.addr(), &missing).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer.metadata.authentic_data, "AD passes through");
        assert_eq!(
            answer.authorities.len(),
            1,
            "the SOA of the authority section"
        );
        assert_eq!(answer.authorities[0].ttl, 120);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_work_is_capped_with_refused() {
    within(async {
        let upstream = FakeUpstream::start(|q, _| {
            Action::Delay(
                Duration::from_millis(800),
                fake::reply(q, vec![fake::txt(q, "late")]),
            )
        })
        .await;
        let mut config = config_with_default(&[upstream.addr]);
        config.server.max_inflight = 3;
        config.forward.timeout = "2s".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let addr = daemon.addr();
        let refused = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..10 {
            let refused = refused.clone();
            tasks.push(tokio::spawn(async move {
                let answer = client::udp(
                    addr,
                    &query(&format!("q{i}.example"), RecordType::TXT, None),
                )
                .await;
                if answer.metadata.response_code == ResponseCode::Refused {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            refused.load(Ordering::Relaxed),
            7,
            "three in flight, seven refused"
        );
        assert_eq!(upstream.total(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_never_stop_the_daemon() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("ok")).await;
        let daemon = Daemon::start(config_with_default(&[upstream.addr])).await;
        let good = query("ok.example", RecordType::TXT, None).to_vec().unwrap();
        let mut formerr_cases = Vec::new();
        let mut two_questions = good.clone();
        two_questions[5] = 2;
        formerr_cases.push(two_questions);
        let mut no_question = good.clone();
        no_question[5] = 0;
        formerr_cases.push(no_question);
        formerr_cases.push(good[..good.len() - 2].to_vec()); // cut inside the question
        let mut pointer = good[..12].to_vec();
        pointer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]); // a question that points at itself
        formerr_cases.push(pointer);
        for bytes in &formerr_cases {
            let reply = client::udp_raw(daemon.addr(), bytes, Duration::from_secs(2))
                .await
                .expect("FORMERR");
            assert_eq!(reply[3] & 0xF, 1, "FORMERR for {bytes:?}");
            assert_eq!(reply[..2], bytes[..2], "with the query's ID");
        }
        let mut notimp = good.clone();
        notimp[2] |= 2 << 3; // opcode STATUS
        let reply = client::udp_raw(daemon.addr(), &notimp, Duration::from_secs(2))
            .await
            .expect("NOTIMP");
        assert_eq!(reply[3] & 0xF, 4);
        for junk in [vec![], vec![1, 2, 3], vec![0xFF; 11]] {
            assert!(
                client::udp_raw(daemon.addr(), &junk, Duration::from_millis(300))
                    .await
                    .is_none()
            );
        }
        let mut response = good.clone();
        response[2] |= 0x80; // a response is never answered: no reflection loops
        assert!(
            client::udp_raw(daemon.addr(), &response, Duration::from_millis(300))
                .await
                .is_none()
        );
        let answer = client::udp(daemon.addr(), &query("ok.example", RecordType::TXT, None)).await;
        assert_eq!(txt_of(&answer), ["ok"], "still serving");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_listener_replies_from_the_address_that_was_asked() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("ok")).await;
        let daemon = Daemon::start_on(config_with_default(&[upstream.addr]), &["0.0.0.0:0"]).await;
        let port = daemon.addr().port();
        // 127.0.0.2 is this host's too; a reply from 127.0.0.1 would be dropped by the connected
        // client socket.
        for target in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
            let server: SocketAddr = format!("{target}:{port}").parse().unwrap();
            let answer = client::udp(server, &query("ok.example", RecordType::TXT, None)).await;
            assert_eq!(txt_of(&answer), ["ok"], "via {target}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("ok")).await;
        let mut config = config_with_default(&[upstream.addr]);
        config.server.tcp_connections = 2;
        config.server.tcp_idle_timeout = "500ms".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let q = query("ok.example", RecordType::TXT, None).to_vec().unwrap();
        let mut first = tokio::net::TcpStream::connect(daemon.addr()).await.unwrap();
        let mut second = tokio::net::TcpStream::connect(daemon.addr()).await.unwrap();
        client::send_frame(&mut first, &q).await;
        client::send_frame(&mut second, &q).await;
        assert!(client::read_frame(&mut first).await.is_some());
        assert!(client::read_frame(&mut second).await.is_some());
        let mut third = tokio::net::TcpStream::connect(daemon.addr()).await.unwrap();
        client::send_frame(&mut third, &q).await;
        assert!(
            client::read_frame(&mut third).await.is_none(),
            "a third connection is closed"
        );
        // Idle connections are closed after 500 ms, which frees the slots: a new connection is
        // served below (with the cap of two, it would not be while they were held).
        assert!(
            client::read_frame(&mut first).await.is_none(),
            "idle connection closed"
        );
        assert!(client::read_frame(&mut second).await.is_none());
        let answer = client::tcp(daemon.addr(), &query("ok.example", RecordType::TXT, None)).await;
        assert_eq!(txt_of(&answer), ["ok"]);
    })
    .await;
}
