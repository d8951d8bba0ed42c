//! Malformed and mutated queries thrown at the daemon over UDP and TCP: every reply it sends is a
//! well-formed response to the query it answers, and it still answers a normal query afterwards.
//! Seeded: `OQSDNS_SEED=N` replays another run.

use std::collections::HashSet;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RecordType;
use oqsdns_core::wire::invariants::{garbage_query, seed, valid_query, Prng};
use oqsdns_tests::client::{self, query, txt_of};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, FakeUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const UDP_PACKETS: u16 = 3000;
const TCP_CONNECTIONS: u16 = 300;

/// A query to throw: mostly garbage, some valid; its ID (when it has one) is `id`, so a reply
/// can be traced to it.
fn packet(rng: &mut Prng, id: u16) -> Vec<u8> {
    let mut bytes = if rng.below(5) == 0 {
        valid_query(rng)
    } else {
        garbage_query(rng)
    };
    if bytes.len() >= 2 {
        bytes[..2].copy_from_slice(&id.to_be_bytes());
    }
    bytes
}

/// Checks one reply: it parses, is a response, and carries the ID of a query that was sent.
fn check(reply: &[u8], sent: &HashSet<u16>, via: &str) {
    let message = Message::from_vec(reply)
        .unwrap_or_else(|e| panic!("{via} reply does not parse ({e}): {reply:02x?}"));
    assert_eq!(
        message.metadata.message_type,
        MessageType::Response,
        "{via}"
    );
    assert!(
        sent.contains(&message.metadata.id),
        "{via} reply with ID {} answers no query sent",
        message.metadata.id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_gets_a_malformed_reply_nor_stops_the_daemon() {
    let seed = seed(0x6A5B_A6E5);
    eprintln!("seed {seed} (OQSDNS_SEED={seed} replays this run)");
    let mut rng = Prng::new(seed);
    let upstream = FakeUpstream::start(fake::identify("ok")).await;
    let mut config = config_with_default(&[upstream.addr]);
    config.server.rate = 0; // thousands of packets from one client: this test is not about that
    config.server.tcp_connections_per_client = 64;
    config.server.tcp_frame_timeout = "300ms".parse().unwrap();
    config.forward.timeout = "200ms".parse().unwrap();
    let daemon = Daemon::start(config).await;
    let addr = daemon.addr();
    timeout(Duration::from_secs(60), async {
        // UDP, in batches so the daemon's receive buffer never overflows.
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(addr).await.unwrap();
        let mut sent = HashSet::new();
        let mut replies = 0;
        let mut buf = vec![0u8; 65_535];
        for id in 0..UDP_PACKETS {
            let bytes = packet(&mut rng, id);
            if bytes.len() >= 2 {
                sent.insert(id);
            }
            socket.send(&bytes).await.unwrap();
            let quiet = if id % 100 == 99 { 50 } else { 0 };
            while let Ok(Ok(len)) =
                timeout(Duration::from_millis(quiet), socket.recv(&mut buf)).await
            {
                check(&buf[..len], &sent, "UDP");
                replies += 1;
            }
        }
        while let Ok(Ok(len)) = timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
            check(&buf[..len], &sent, "UDP");
            replies += 1;
        }
        assert!(
            replies >= usize::from(UDP_PACKETS) / 3,
            "only {replies} replies to {UDP_PACKETS} packets"
        );

        // TCP: a few frames per connection, the last one sometimes cut short or promising more
        // bytes than follow.
        let mut tcp_replies = 0;
        for conn in 0..TCP_CONNECTIONS {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut sent = HashSet::new();
            let mut out = Vec::new();
            for n in 0..1 + rng.below(4) as u16 {
                let id = conn * 8 + n;
                let bytes = packet(&mut rng, id);
                if bytes.len() >= 2 {
                    sent.insert(id);
                }
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(&bytes);
            }
            match rng.below(4) {
                0 => out.push(0x01),                                // half a length prefix
                1 => out.extend_from_slice(&[0xFF, 0xFF, 0, 1, 2]), // a prefix beyond the data
                _ => {}
            }
            stream.write_all(&out).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut received = Vec::new();
            timeout(client::WAIT, stream.read_to_end(&mut received))
                .await
                .expect("the daemon ends the connection after the client's EOF")
                .unwrap();
            let mut frames = received.as_slice();
            while !frames.is_empty() {
                assert!(frames.len() >= 2, "a cut frame");
                let len = usize::from(u16::from_be_bytes([frames[0], frames[1]]));
                assert!(frames.len() >= 2 + len, "a frame longer than what came");
                check(&frames[2..2 + len], &sent, "TCP");
                frames = &frames[2 + len..];
                tcp_replies += 1;
            }
        }
        assert!(
            tcp_replies >= usize::from(TCP_CONNECTIONS) / 2,
            "{tcp_replies}"
        );
        eprintln!("{replies} UDP and {tcp_replies} TCP replies checked");
    })
    .await
    .expect("garbage rounds within 60 s");

    let q = query("ok.example", RecordType::TXT, None);
    let answer = client::udp(addr, &q).await;
    assert_eq!(
        (answer.metadata.id, txt_of(&answer)),
        (q.metadata.id, vec!["ok".into()])
    );
    let answer = client::tcp(addr, &q).await;
    assert_eq!(txt_of(&answer), ["ok"], "still serving over TCP");
}
