//! Upstream transport: one exchange with one server over UDP, TCP, or UDP then TCP when the
//! answer is truncated. Shared by real queries, health probes and `oqsdns check`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{self, MsgFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
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
    exchange_pooled(None, server, request, timeout, tcp_only).await
}

/// [`exchange`], its UDP socket taken from and given back to `pool`.
pub async fn exchange_pooled(
    pool: Option<&SocketPool>,
    server: SocketAddr,
    request: &Request<'_>,
    timeout: Duration,
    tcp_only: bool,
) -> Result<Reply, (Transport, UpstreamError)> {
    if !tcp_only {
        let id = rand::random::<u16>();
        let query = request.upstream_query(id);
        let deadline = Instant::now() + timeout;
        let reply = match pool {
            None => udp(server, &query, id, request.question(), deadline).await,
            Some(pool) => {
                pool.udp(server, &query, id, request.question(), deadline)
                    .await
            }
        }
        .map_err(|e| (Transport::Udp, e))?;
        if !reply.info.truncated {
            return Ok(reply);
        }
    }
    let id = rand::random::<u16>();
    let query = request.upstream_query(id);
    let deadline = Instant::now() + timeout;
    // Boxed: the TCP exchange is the rare path (a truncated answer, a TCP-only server) and its
    // state in line would make every UDP exchange's future half a kilobyte larger.
    Box::pin(tcp(server, &query, id, request.question(), deadline))
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
    let socket = connected(server)?;
    udp_on(&socket, query, id, question, deadline).await
}

/// A UDP socket on a random port chosen by the kernel, connected to `server`. Made non-blocking
/// and bound by the connect (the kernel picks the port as a bind to port 0 would): two system
/// calls, not four. (Connecting a UDP socket never waits: no future, whose state every exchange
/// would carry.)
fn connected(server: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(server), Type::DGRAM.nonblocking(), None)?;
    socket.connect(&server.into())?;
    UdpSocket::from_std(socket.into())
}

async fn udp_on(
    socket: &UdpSocket,
    query: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
) -> Result<Reply, UpstreamError> {
    socket.send(query).await?;
    loop {
        // ERROR too: an ICMP port unreachable on the connected socket raises only that, and the
        // read then reports it (ECONNREFUSED) instead of the query waiting for its timeout.
        let ready = match timeout_at(deadline, socket.ready(REPLY)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(ready) => ready?,
        };
        // The read is made under the one interest that is ready (tokio's `try_io` knows no
        // combination of interests).
        let interest = if ready.is_error() {
            Interest::ERROR
        } else {
            Interest::READABLE
        };
        if let Some(reply) = read_reply(socket, interest, id, question)? {
            return Ok(reply);
        }
    }
}

/// What a query waits for on its socket: a datagram, or an error to read.
const REPLY: Interest = Interest::READABLE.add(Interest::ERROR);

/// Reads one datagram from `socket` if there is one: the reply if it answers `id` and
/// `question`, else `None` (a late reply to an earlier query, or nothing to read). The buffer is
/// on the stack and only the reply's bytes are kept, so a query waiting for a silent server
/// holds none: hundreds wait at once when a server dies under load.
///
/// Once the reply is read the socket's readiness is cleared, as a read that found nothing would
/// clear it: the next query on this pooled socket then waits for its own reply instead of first
/// making a read that finds nothing. (A datagram arriving later raises readiness again, and one
/// already queued, a duplicate, is read and ignored with the next query's reply.)
fn read_reply(
    socket: &UdpSocket,
    interest: Interest,
    id: u16,
    question: &[u8],
) -> io::Result<Option<Reply>> {
    let mut buf = [0u8; wire::UPSTREAM_PAYLOAD as usize + 512];
    let mut reply = None;
    let read = socket.try_io(interest, || {
        let len = socket::recv(socket.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)?;
        let bytes = &buf[..len];
        let Ok(info) = wire::check_reply(bytes, id, question) else {
            return Ok(());
        };
        reply = Some(Reply {
            bytes: bytes.to_vec(),
            info,
            transport: Transport::Udp,
        });
        Err(io::ErrorKind::WouldBlock.into())
    });
    match read {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(reply),
    }
}

/// Queries one pooled socket carries before it is closed, so its random port changes.
pub const POOLED_USES: u8 = 8;
/// Idle sockets kept per server at most: about as many as queries under way to one server in a
/// busy moment, so that under load sockets are closed after [`POOLED_USES`] queries rather than
/// for want of room (with 32, the bench's 100 queries in flight opened a socket every third
/// query). The daemon counts them in its open files limit.
pub const POOLED_IDLE: usize = 128;

/// Connected UDP sockets to upstream servers, each used by one query at a time and for at most
/// [`POOLED_USES`] queries, so a query does not pay for a socket, a bind, a connect, two
/// poller registrations and a close. Every socket has its own random port chosen by the
/// kernel, and queries under way at once use different sockets; a socket whose query failed or
/// timed out is closed, not kept. Replies are checked as on a fresh socket: the connected
/// socket drops datagrams from any other address or port, and a datagram with another ID or
/// question (a late reply to an earlier query) is ignored.
#[derive(Debug, Default)]
pub struct SocketPool {
    idle: std::sync::Mutex<std::collections::HashMap<SocketAddr, Vec<Pooled>>>,
}

#[derive(Debug)]
struct Pooled {
    socket: UdpSocket,
    uses: u8,
}

impl SocketPool {
    /// One UDP exchange with `server` as [`udp`], on a pooled socket.
    pub async fn udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        question: &[u8],
        deadline: Instant,
    ) -> Result<Reply, UpstreamError> {
        let mut pooled = match self.take(server) {
            Some(pooled) => pooled,
            None => Pooled {
                socket: connected(server)?,
                uses: 0,
            },
        };
        let reply = udp_on(&pooled.socket, query, id, question, deadline).await?;
        pooled.uses += 1;
        if pooled.uses < POOLED_USES {
            self.give(server, pooled);
        }
        Ok(reply)
    }

    /// An idle socket of `server`, picked at random among them.
    fn take(&self, server: SocketAddr) -> Option<Pooled> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = idle.get_mut(&server).filter(|s| !s.is_empty())?;
        let pick = rand::random::<u32>() as usize % sockets.len();
        Some(sockets.swap_remove(pick))
    }

    fn give(&self, server: SocketAddr, pooled: Pooled) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = idle.entry(server).or_default();
        if sockets.len() < POOLED_IDLE {
            sockets.push(pooled);
        }
    }

    /// Idle sockets in the pool.
    pub fn idle(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_query_fails_at_once_not_at_its_timeout() {
        // A port nothing listens on: the kernel answers with ICMP port unreachable.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = closed.local_addr().unwrap();
        drop(closed);
        let question = [0u8, 0, 1, 0, 1]; // the root, A, IN
        let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(&question);
        let deadline = Instant::now() + Duration::from_secs(30);
        match udp(server, &query, 0x1234, &question, deadline).await {
            Err(UpstreamError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("expected the refusal, got {other:?}"),
        }
    }
}
