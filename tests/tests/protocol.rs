//! The header of every answer against the query it answers (RFC 1035 §4.1.1: ID, opcode and RD
//! are copied from the query; RFC 4035 §3.2.2: so is CD; RFC 6840 §5.8: AD only for a client that
//! asked for DNSSEC), whether the answer came fresh, from the cache, stale, or from an identical
//! query under way; and the status answer's size against the client's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use oqsdns_config::Window;
use oqsdns_tests::client::{self, query};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream};

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test finished within 30 s")
}

/// A query for `name` A with the given RD and CD bits (and AD, DO through `edns`).
fn asking(name: &str, rd: bool, cd: bool) -> Message {
    let mut q = query(&format!("{name}."), RecordType::A, None);
    q.metadata.recursion_desired = rd;
    q.metadata.checking_disabled = cd;
    q
}

/// An upstream that answers A 192.0.2.1 with `ttl`, copying RD but never CD, always setting AD,
/// and saying opcode STATUS: a reply whose bits are all wrong for some client. It goes silent
/// once `silent` is set.
async fn upstream(ttl: u32, silent: Arc<AtomicBool>, delay: Duration) -> FakeUpstream {
    FakeUpstream::start(move |q, _| {
        if silent.load(Ordering::Relaxed) {
            return Action::Drop;
        }
        let mut reply = fake::reply(
            q,
            vec![fake::a_record(q, "192.0.2.1".parse().unwrap(), ttl)],
        );
        reply.metadata.checking_disabled = false;
        reply.metadata.authentic_data = true;
        reply.metadata.op_code = OpCode::Status;
        Action::Delay(delay, reply)
    })
    .await
}

/// Asserts that `answer`'s header is right for `asked`: its ID, opcode, RD and CD, QR and RA, no
/// AD (none of these clients asked for DNSSEC), and its question exactly as asked.
fn assert_answers(answer: &Message, asked: &Message, what: &str) {
    let (a, q) = (&answer.metadata, &asked.metadata);
    assert_eq!(a.id, q.id, "{what}: ID");
    assert_eq!(a.recursion_desired, q.recursion_desired, "{what}: RD");
    assert_eq!(a.checking_disabled, q.checking_disabled, "{what}: CD");
    assert_eq!(a.op_code, OpCode::Query, "{what}: opcode");
    assert!(a.recursion_available, "{what}: RA");
    assert!(
        !a.authentic_data,
        "{what}: AD for a client without DO or AD"
    );
    assert_eq!(
        answer.queries[0].name().to_ascii(),
        asked.queries[0].name().to_ascii(),
        "{what}: the question's casing"
    );
    assert_eq!(a.response_code, ResponseCode::NoError, "{what}");
    assert_eq!(answer.answers.len(), 1, "{what}: the answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_take_rd_and_cd_from_each_query_not_from_the_one_that_filled_the_cache() {
    within(async {
        let fake = upstream(300, Arc::default(), Duration::ZERO).await;
        let daemon = Daemon::start(config_with_default(&[fake.addr])).await;
        // dig +norec, then dig +rec; and the other way round for another name.
        for (name, first_rd) in [("norec.example", false), ("rec.example", true)] {
            for (i, rd) in [first_rd, !first_rd, first_rd].into_iter().enumerate() {
                for cd in [false, true] {
                    let q = asking(&name.to_ascii_uppercase(), rd, cd);
                    let answer = client::udp(daemon.addr(), &q).await;
                    assert_answers(&answer, &q, &format!("{name} #{i} rd={rd} cd={cd}"));
                    let q = asking(name, rd, cd);
                    let answer = client::tcp(daemon.addr(), &q).await;
                    assert_answers(&answer, &q, &format!("{name} #{i} rd={rd} cd={cd} TCP"));
                }
            }
        }
        // One upstream question per name and CD bit: everything else came from the cache.
        assert_eq!(fake.total(), 4, "the cache answered the rest");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_answer_takes_rd_and_cd_from_the_query_it_answers() {
    within(async {
        let silent = Arc::new(AtomicBool::new(false));
        // TTL 0: stored for serve-stale, expired at once, so no clock has to run.
        let fake = upstream(0, silent.clone(), Duration::ZERO).await;
        let mut config = config_with_default(&[fake.addr]);
        config.cache.serve_stale_default = Window(Some(Duration::from_secs(3600)));
        config.forward.timeout = "200ms".parse().unwrap();
        let daemon = Daemon::start(config).await;
        for cd in [false, true] {
            let filled = asking("stale.example", false, cd);
            assert_answers(
                &client::udp(daemon.addr(), &filled).await,
                &filled,
                "the first",
            );
        }
        silent.store(true, Ordering::Relaxed);
        for cd in [false, true] {
            let q = asking("Stale.EXAMPLE", true, cd);
            let stale = client::udp(daemon.addr(), &q).await;
            assert_eq!(stale.answers[0].ttl, 30, "served stale (RFC 8767)");
            assert_answers(&stale, &q, &format!("stale cd={cd}"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_queries_joined_in_flight_each_get_their_own_header() {
    within(async {
        // The upstream holds its answer long enough for every query below to join the first.
        let fake = upstream(300, Arc::default(), Duration::from_millis(700)).await;
        let mut config = config_with_default(&[fake.addr]);
        // Far beyond the hold, so the TCP try made after half a timeout of UDP silence does not
        // come first and count as a second question.
        config.forward.timeout = "10s".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let addr = daemon.addr();
        let queries = [
            asking("joined.example", false, true),
            asking("JOINED.example", true, true),
            asking("Joined.Example", false, true),
            asking("joined.EXAMPLE", true, true),
        ];
        let mut asked = Vec::new();
        for q in queries.clone() {
            asked.push(tokio::spawn(async move { client::udp(addr, &q).await }));
        }
        for (q, answer) in queries.iter().zip(asked) {
            let answer = answer.await.unwrap();
            assert_answers(&answer, q, &format!("joined {}", q.queries[0].name()));
        }
        assert_eq!(
            fake.total(),
            1,
            "the four were joined into one upstream question"
        );
    })
    .await;
}

/// The status question, over UDP, with EDNS `payload` when given.
fn status_query(payload: Option<u16>) -> Message {
    let mut q = query("status.oqsdns.", RecordType::TXT, None);
    q.queries[0].query_class = DNSClass::CH;
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        q.edns = Some(edns);
    }
    q
}

/// A daemon whose status is well over 1232 bytes (sixteen routes of two servers each) that sends
/// UDP answers of up to 4096 bytes.
async fn daemon_with_a_long_status() -> (Daemon, FakeUpstream) {
    let fake = FakeUpstream::start(fake::identify("up")).await;
    let mut config = config_with_default(&[fake.addr]);
    for i in 0..16 {
        let servers: Vec<SocketAddr> = vec![fake.addr, fake.addr];
        config.routes.push(oqsdns_config::RouteConfig {
            name: Some(format!("route-number-{i}")),
            domains: vec![format!("r{i}.example").parse().unwrap()],
            servers: servers
                .iter()
                .map(|a| oqsdns_config::ServerAddr(*a))
                .collect(),
            names: Vec::new(),
        });
    }
    config.server.udp_payload = 4096;
    (Daemon::start(config).await, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_answer_fits_the_clients_udp_size_or_says_tc() {
    within(async {
        let (daemon, _fake) = daemon_with_a_long_status().await;
        let whole = client::tcp(daemon.addr(), &status_query(None)).await;
        let lines = client::txt_of(&whole);
        assert!(lines.len() > 16 * 2, "{lines:?}");
        assert!(!whole.metadata.truncation);
        let whole_len = whole.to_vec().unwrap().len();
        assert!(
            whole_len > 1232,
            "the test needs a status longer than {whole_len}"
        );
        for payload in [None, Some(512), Some(1232)] {
            let q = status_query(payload);
            let bytes = client::udp_raw(daemon.addr(), &q.to_vec().unwrap(), client::WAIT)
                .await
                .expect("an answer");
            let limit = payload.map_or(512, usize::from);
            assert!(
                bytes.len() <= limit,
                "{} bytes for {payload:?}",
                bytes.len()
            );
            let answer = Message::from_vec(&bytes).unwrap();
            assert!(answer.metadata.truncation, "TC for {payload:?}");
            assert!(
                answer.answers.is_empty(),
                "no part of the status: it is one RRset (RFC 2181 §9)"
            );
            assert_eq!(answer.metadata.id, q.metadata.id);
            assert_eq!(answer.queries, q.queries);
            assert_eq!(answer.edns.is_some(), payload.is_some());
        }
        let roomy = status_query(Some(4096));
        let answer = client::udp(daemon.addr(), &roomy).await;
        assert!(!answer.metadata.truncation, "4096 bytes hold it");
        assert_eq!(client::txt_of(&answer), lines);
        assert!(answer.metadata.authoritative);
        assert_eq!(answer.answers[0].dns_class, DNSClass::CH);
        assert_eq!(
            answer.answers[0].name,
            Name::from_ascii("status.oqsdns.").unwrap()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_answers_copy_the_querys_header_bits() {
    within(async {
        let fake = FakeUpstream::start(fake::identify("up")).await;
        let daemon = Daemon::start(config_with_default(&[fake.addr])).await;
        for (name, rtype, rcode) in [
            ("LocalHost.", RecordType::A, ResponseCode::NoError),
            ("x.Localhost.", RecordType::AAAA, ResponseCode::NoError),
            (
                "9.9.10.IN-ADDR.arpa.",
                RecordType::PTR,
                ResponseCode::NXDomain,
            ),
            ("www.Example.com.", RecordType::ANY, ResponseCode::NoError),
        ] {
            for (rd, cd, dnssec_ok) in [(false, false, false), (true, true, true)] {
                let mut q = query(name, rtype, Some(1232));
                q.metadata.recursion_desired = rd;
                q.metadata.checking_disabled = cd;
                if let Some(edns) = q.edns.as_mut() {
                    edns.set_dnssec_ok(dnssec_ok);
                }
                let answer = client::udp(daemon.addr(), &q).await;
                let what = format!("{name} {rtype} rd={rd}");
                assert_eq!(answer.metadata.id, q.metadata.id, "{what}");
                assert_eq!(answer.metadata.recursion_desired, rd, "{what}");
                assert_eq!(answer.metadata.checking_disabled, cd, "{what}");
                assert!(answer.metadata.authoritative, "{what}");
                assert_eq!(answer.metadata.response_code, rcode, "{what}");
                assert_eq!(answer.queries[0].name().to_ascii(), name, "{what}");
                let edns = answer.edns.as_ref().expect("an OPT for an EDNS query");
                assert_eq!(edns.flags().dnssec_ok, dnssec_ok, "{what}: DO");
            }
        }
        assert_eq!(fake.total(), 0, "all of them answered locally");
    })
    .await;
}
