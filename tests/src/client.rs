//! A DNS client for tests: builds queries with hickory-proto and sends them over UDP or TCP with
//! a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long a test waits for any one answer.
pub const WAIT: Duration = Duration::from_secs(5);

/// A query for `name`/`rtype` with RD set, and EDNS with `payload` when given.
pub fn query(name: &str, rtype: RecordType, payload: Option<u16>) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand_id();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.edns = Some(edns);
    }
    message
}

fn rand_id() -> u16 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ (nanos >> 16)) as u16
}

/// Sends `bytes` over UDP and returns the first datagram that comes back, or `None` on timeout.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap();
    let socket = UdpSocket::bind(local).await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(bytes).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let len = timeout(wait, socket.recv(&mut buf)).await.ok()?.ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Asks `server` over UDP; panics when no answer comes within [`WAIT`].
pub async fn udp(server: SocketAddr, query: &Message) -> Message {
    let bytes = udp_raw(server, &query.to_vec().unwrap(), WAIT)
        .await
        .expect("UDP answer within 5 s");
    Message::from_vec(&bytes).expect("answer parses")
}

/// Asks `server` over a new TCP connection.
pub async fn tcp(server: SocketAddr, query: &Message) -> Message {
    let mut stream = timeout(WAIT, TcpStream::connect(server))
        .await
        .unwrap()
        .unwrap();
    send_frame(&mut stream, &query.to_vec().unwrap()).await;
    let answer = read_frame(&mut stream)
        .await
        .expect("TCP answer within 5 s");
    Message::from_vec(&answer).expect("answer parses")
}

/// Writes one length-prefixed message.
pub async fn send_frame(stream: &mut TcpStream, bytes: &[u8]) {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    stream.write_all(&out).await.unwrap();
}

/// Reads one length-prefixed message; `None` on timeout or close.
pub async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    timeout(WAIT, async {
        let len = stream.read_u16().await.ok()?;
        let mut buf = vec![0u8; len as usize];
        stream.read_exact(&mut buf).await.ok()?;
        Some(buf)
    })
    .await
    .ok()?
}

/// The TXT strings of an answer, joined.
pub fn txt_of(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect()
}
