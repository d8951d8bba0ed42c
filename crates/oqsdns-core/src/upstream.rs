//! Upstream transport: one exchange with one server over UDP, TCP, or UDP then TCP when the
//! answer is truncated. Shared by real queries, health probes and `oqsdns check`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use crate::wire::{self, ReplyInfo, Request, MAX_MESSAGE};

/// Which transport carried an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// DNS over UDP.
    Udp,
    /// DNS over TCP (RFC 7766).
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

/// Why an exchange with a server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No acceptable reply before the deadline.
    #[error("timed out")]
    Timeout,
    /// The network said no (unreachable, refused, reset).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A TCP reply that is not the answer to our query.
    #[error("reply does not match the query: {0}")]
    Mismatch(#[from] wire::Mismatch),
}

/// An accepted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The reply's bytes, as the server sent them.
    pub bytes: Vec<u8>,
    /// Its rcode and TC flag.
    pub info: ReplyInfo,
    /// The transport that carried it.
    pub transport: Transport,
}

/// Asks `server` the client's question: over UDP first (unless `tcp_only`), and over TCP when the
/// UDP answer is truncated. Each transport gets `timeout`. An error names the transport that
/// failed.
pub async fn exchange(
    server: SocketAddr,
    request: &Request<'_>,
    timeout: Duration,
    tcp_only: bool,
) -> Result<Reply, (Transport, UpstreamError)> {
    if !tcp_only {
        let id = rand::random::<u16>();
        let query = request.upstream_query(id);
        let deadline = Instant::now() + timeout;
        let reply = udp(server, &query, id, request.question(), deadline)
            .await
            .map_err(|e| (Transport::Udp, e))?;
        if !reply.info.truncated {
            return Ok(reply);
        }
    }
    let id = rand::random::<u16>();
    let query = request.upstream_query(id);
    let deadline = Instant::now() + timeout;
    tcp(server, &query, id, request.question(), deadline)
        .await
        .map_err(|e| (Transport::Tcp, e))
}

/// One UDP exchange from a fresh socket (a new random source port) connected to `server`, so the
/// kernel drops datagrams from any other address or port. Datagrams with another ID or question
/// are ignored until the deadline.
pub async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
) -> Result<Reply, UpstreamError> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; wire::UPSTREAM_PAYLOAD as usize + 512];
    loop {
        let len = match timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(result) => result?,
        };
        if let Ok(info) = wire::check_reply(&buf[..len], id, question) {
            buf.truncate(len);
            return Ok(Reply {
                bytes: buf,
                info,
                transport: Transport::Udp,
            });
        }
    }
}

/// One TCP exchange on a new connection.
pub async fn tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
) -> Result<Reply, UpstreamError> {
    let work = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await? as usize;
        let mut bytes = vec![0u8; len.min(MAX_MESSAGE)];
        stream.read_exact(&mut bytes).await?;
        let info = wire::check_reply(&bytes, id, question)?;
        Ok(Reply {
            bytes,
            info,
            transport: Transport::Tcp,
        })
    };
    timeout_at(deadline, work)
        .await
        .unwrap_or(Err(UpstreamError::Timeout))
}
