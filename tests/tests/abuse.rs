//! Abuse resistance on loopback: the per-client rate limit, the per-client and total TCP caps, and
//! the bound on reading one TCP query, each beside a well-behaved client that is still served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use oqsdns_tests::client::{self, query, txt_of};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, FakeUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test finished within 30 s")
}

/// A UDP socket on loopback address `source` (127.0.0.2 is this host's too), connected to `server`.
async fn udp_from(source: &str, server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((source, 0)).await.unwrap();
    socket.connect(server).await.unwrap();
    socket
}

/// A TCP connection to `server` from loopback address `source`.
async fn tcp_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Asks for `ok.example` over `stream`: the TXT answer, or `None` when the connection was closed.
async fn ask_tcp(stream: &mut TcpStream) -> Option<Vec<String>> {
    let q = query("ok.example", RecordType::TXT, None);
    let mut frame = (q.to_vec().unwrap().len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&q.to_vec().unwrap());
    // A write to a connection the daemon closed may fail; then no answer comes either.
    stream.write_all(&frame).await.ok()?;
    let answer = client::read_frame(stream).await?;
    Some(txt_of(&Message::from_vec(&answer).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_limited_while_another_is_served() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("ok")).await;
        let mut config = config_with_default(&[upstream.addr]);
        config.server.rate = 20;
        config.server.burst = 50;
        config.server.rate_loopback = true; // the test's clients are on loopback
        let daemon = Daemon::start(config).await;
        let flooder = udp_from("127.0.0.1", daemon.addr()).await;
        let started = Instant::now();
        const SENT: u16 = 400;
        for id in 0..SENT {
            let mut q = query(&format!("q{id}.example"), RecordType::TXT, None);
            q.metadata.id = id;
            flooder.send(&q.to_vec().unwrap()).await.unwrap();
        }
        let (mut answered, mut refused) = (0, 0);
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(800), flooder.recv(&mut buf)).await
        {
            let reply = Message::from_vec(&buf[..len]).unwrap();
            assert!(reply.metadata.id < SENT);
            match reply.metadata.response_code {
                ResponseCode::NoError => answered += 1,
                ResponseCode::Refused => refused += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // The limiter can have refilled only while the flood lasted: burst + rate × (elapsed +
        // 1 s of slack) is an upper bound a loaded machine cannot break.
        let seconds = started.elapsed().as_secs_f64();
        let allowance = 50.0 + 20.0 * (seconds + 1.0);
        assert!(answered >= 50, "the burst is served: {answered}");
        assert!(
            f64::from(answered) <= allowance,
            "{answered} answered in {seconds:.2} s: more than burst and rate allow"
        );
        assert!(refused >= 1, "a LAN client learns it is limited");
        let refusal_cap = 5 * (seconds.ceil() as u32 + 1);
        assert!(
            refused <= refusal_cap,
            "{refused} REFUSED: a forged flood would be reflected"
        );
        let dropped = u32::from(SENT) - answered - refused;
        assert!(dropped >= 1, "the excess past the refusals is dropped");
        // Another terminal of the clinic is served at once, over UDP and TCP.
        let other = udp_from("127.0.0.2", daemon.addr()).await;
        let q = query("other.example", RecordType::TXT, None);
        other.send(&q.to_vec().unwrap()).await.unwrap();
        let len = tokio::time::timeout(Duration::from_secs(2), other.recv(&mut buf))
            .await
            .expect("the other client is answered")
            .unwrap();
        let reply = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(reply.metadata.id, q.metadata.id);
        assert_eq!(txt_of(&reply), ["ok"]);
        let mut stream = tcp_from("127.0.0.2", daemon.addr()).await;
        assert_eq!(ask_tcp(&mut stream).await.unwrap(), ["ok"]);
        assert!(
            upstream.total() <= allowance as usize + 2,
            "excess queries never reached the upstream: {}",
            upstream.total()
        );
    })
    .await;
}

/// Raises the soft descriptor limit to the hard one: a thousand connections have two ends here.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_tcp_connections_stop_neither_udp_nor_other_clients() {
    raise_fd_limit();
    within(async {
        let upstream = FakeUpstream::start(fake::identify("ok")).await;
        let mut config = config_with_default(&[upstream.addr]);
        config.server.tcp_connections = 64;
        config.server.tcp_idle_timeout = "30s".parse().unwrap();
        let per_client = config.server.tcp_connections_per_client;
        let daemon = Daemon::start(config).await;
        let mut idle = Vec::with_capacity(1000);
        for _ in 0..1000 {
            idle.push(tcp_from("127.0.0.1", daemon.addr()).await);
        }
        // UDP service goes on, from the same client too.
        for source in ["127.0.0.1", "127.0.0.3"] {
            let socket = udp_from(source, daemon.addr()).await;
            let q = query("ok.example", RecordType::TXT, None);
            socket.send(&q.to_vec().unwrap()).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let len = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("UDP from {source} answered within 1 s"))
                .unwrap();
            assert_eq!(txt_of(&Message::from_vec(&buf[..len]).unwrap()), ["ok"]);
        }
        // Another client still gets a TCP connection: the flooder holds only its share.
        let mut other = tcp_from("127.0.0.2", daemon.addr()).await;
        assert_eq!(ask_tcp(&mut other).await.unwrap(), ["ok"]);
        // The flooder's first connections are served; the rest were closed at once.
        assert_eq!(ask_tcp(&mut idle[0]).await.unwrap(), ["ok"]);
        assert!(ask_tcp(&mut idle[per_client]).await.is_none());
        assert!(ask_tcp(&mut idle[999]).await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_client_tcp_cap_closes_the_extra_connection_while_another_client_connects() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("ok")).await;
        let mut config = config_with_default(&[upstream.addr]);
        config.server.tcp_connections = 10;
        config.server.tcp_connections_per_client = 2;
        let daemon = Daemon::start(config).await;
        let mut first = tcp_from("127.0.0.1", daemon.addr()).await;
        let mut second = tcp_from("127.0.0.1", daemon.addr()).await;
        assert_eq!(ask_tcp(&mut first).await.unwrap(), ["ok"]);
        assert_eq!(ask_tcp(&mut second).await.unwrap(), ["ok"]);
        let mut third = tcp_from("127.0.0.1", daemon.addr()).await;
        assert!(
            ask_tcp(&mut third).await.is_none(),
            "a third connection of one client is closed"
        );
        let mut other = tcp_from("127.0.0.2", daemon.addr()).await;
        assert_eq!(ask_tcp(&mut other).await.unwrap(), ["ok"]);
        // Once the client closes one, it may open another.
        drop(first);
        let mut again = None;
        for _ in 0..50 {
            let mut stream = tcp_from("127.0.0.1", daemon.addr()).await;
            if let Some(answer) = ask_tcp(&mut stream).await {
                again = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(again.expect("a slot came free"), ["ok"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_client_is_disconnected_within_the_frame_bound() {
    within(async {
        let upstream = FakeUpstream::start(fake::identify("ok")).await;
        let mut config = config_with_default(&[upstream.addr]);
        config.server.tcp_idle_timeout = "30s".parse().unwrap();
        config.server.tcp_frame_timeout = "600ms".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let q = query("ok.example", RecordType::TXT, None).to_vec().unwrap();
        let mut frame = (q.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&q);

        // A pause inside the bound is fine.
        let mut patient = TcpStream::connect(daemon.addr()).await.unwrap();
        patient.write_all(&frame[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        patient.write_all(&frame[5..]).await.unwrap();
        let answer = client::read_frame(&mut patient).await.expect("answered");
        assert_eq!(txt_of(&Message::from_vec(&answer).unwrap()), ["ok"]);

        // One byte every 100 ms: the whole query would take seconds.
        let (mut reader, mut writer) = TcpStream::connect(daemon.addr())
            .await
            .unwrap()
            .into_split();
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            for byte in frame {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("the daemon closed the connection");
        let took = started.elapsed();
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed without an answer: {read:?}"
        );
        // Closed without an answer, so before the trickled frame was whole (after 3 s): by the
        // frame timeout, not by the clock of a busy machine. Never before the bound.
        assert!(
            took >= Duration::from_millis(500),
            "closed after {took:?}, the bound is 600 ms"
        );
        trickle.abort();
    })
    .await;
}
