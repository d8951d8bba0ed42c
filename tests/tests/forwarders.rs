//! A forwarder in front of the daemon (a router's DNS proxy) speaks for the whole clinic: with
//! `server.forwarders` it has a bucket of its own (or none) while every other client keeps the
//! per-client limit. Loopback addresses stand in for the LAN, so loopback is limited here.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use oqsdns_tests::client::query;
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, FakeUpstream};
use tokio::net::UdpSocket;

/// Sends `sent` queries from `source` to `server`, a hundred at a time (each hundred's replies
/// read before the next, so that no socket buffer overflows); counts the NOERROR and REFUSED
/// replies.
async fn flood(source: &str, server: SocketAddr, sent: u16) -> (u32, u32) {
    let socket = UdpSocket::bind((source, 0)).await.unwrap();
    socket.connect(server).await.unwrap();
    let (mut answered, mut refused) = (0, 0);
    let mut buf = vec![0u8; 4096];
    for window in (0..sent).collect::<Vec<_>>().chunks(100) {
        for &id in window {
            let mut q = query(&format!("q{id}.example"), RecordType::TXT, None);
            q.metadata.id = id;
            socket.send(&q.to_vec().unwrap()).await.unwrap();
        }
        let mut got = 0;
        while got < window.len() {
            let wait = tokio::time::timeout(Duration::from_millis(800), socket.recv(&mut buf));
            let Ok(Ok(len)) = wait.await else {
                break; // the rest was dropped
            };
            got += 1;
            match Message::from_vec(&buf[..len])
                .unwrap()
                .metadata
                .response_code
            {
                ResponseCode::NoError => answered += 1,
                ResponseCode::Refused => refused += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    (answered, refused)
}

async fn daemon(forwarder_rate: u32, forwarder_burst: u32) -> (Daemon, FakeUpstream) {
    let upstream = FakeUpstream::start(fake::identify("ok")).await;
    let mut config = config_with_default(&[upstream.addr]);
    (config.server.rate, config.server.burst) = (20, 50);
    config.server.rate_loopback = true;
    config.server.forwarders = vec!["127.0.0.2".parse().unwrap()];
    (config.server.forwarder_rate, config.server.forwarder_burst) =
        (forwarder_rate, forwarder_burst);
    (Daemon::start(config).await, upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_without_a_limit_is_answered_whole_while_a_client_is_limited() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (daemon, _upstream) = daemon(0, 1).await;
        let (answered, refused) = flood("127.0.0.2", daemon.addr(), 400).await;
        assert_eq!(
            (answered, refused),
            (400, 0),
            "the router's clinic is one client here"
        );
        // The limiter can have refilled only while the flood lasted: burst + rate × (elapsed +
        // 1 s of slack) is an upper bound a loaded machine cannot break.
        let started = std::time::Instant::now();
        let (answered, refused) = flood("127.0.0.1", daemon.addr(), 400).await;
        let allowance = 50.0 + 20.0 * (started.elapsed().as_secs_f64() + 1.0);
        assert!(
            f64::from(answered) <= allowance,
            "a terminal keeps the per-client limit: {answered} answered"
        );
        assert!(refused >= 1, "the terminal's excess is refused: {refused}");
    })
    .await
    .expect("within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_with_a_clinic_sized_limit_gets_its_burst_not_a_terminals() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (daemon, _upstream) = daemon(100, 250).await;
        let started = std::time::Instant::now();
        let (answered, refused) = flood("127.0.0.2", daemon.addr(), 400).await;
        let allowance = 250.0 + 100.0 * (started.elapsed().as_secs_f64() + 1.0);
        assert!(answered >= 250, "the forwarder's burst: {answered}");
        assert!(
            f64::from(answered) <= allowance,
            "{answered} answered: more than the forwarder's burst and rate allow"
        );
        assert!(
            refused >= 1,
            "its excess is refused, then dropped: {refused}"
        );
    })
    .await
    .expect("within 30 s");
}
