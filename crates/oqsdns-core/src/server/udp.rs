//! The UDP listener. Each reply leaves from the address its query was sent to, also on a wildcard
//! socket on a host with several addresses (IP_PKTINFO / IPV6_RECVPKTINFO): clients drop replies
//! from any other source.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Instant;

use nix::libc;
use nix::sys::socket::{
    self, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::handler::{Handler, Step};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::upstream::Transport;

mod mmsg;

use mmsg::Reply;

/// Where a datagram came from and which local address it was sent to.
#[derive(Debug, Clone, Copy)]
struct Origin {
    client: SocketAddr,
    local: Local,
}

#[derive(Debug, Clone, Copy)]
enum Local {
    V4(libc::in_addr),
    V6(libc::in6_addr, u32),
    Unknown,
}

/// Datagrams received with one system call at most, and replies sent with one.
const BATCH: usize = mmsg::BATCH;
/// The largest query read; a longer datagram (no real client sends one) is dropped.
const QUERY_MAX: usize = 4096;

/// Serves queries arriving on `socket` until `shutdown`; then waits for the queries under way.
/// Every datagram counts against its sender's budget in `limiter` before it is admitted.
/// Datagrams are read in batches (recvmmsg); refusals, local and cached answers are made and sent
/// in this loop and sent together (sendmmsg); only a query that goes upstream costs a task.
pub async fn serve_udp(
    socket: UdpSocket,
    handler: Arc<Handler>,
    limiter: Arc<RateLimiter>,
    shutdown: CancellationToken,
) {
    // Only a wildcard socket needs to be told which address a query came to: one bound to an
    // address sends from it anyway, and a reply without the control message is cheaper.
    let wildcard = socket.local_addr().is_ok_and(|a| a.ip().is_unspecified());
    if wildcard {
        if let Err(error) = enable_pktinfo(&socket) {
            debug!(%error, "IP_PKTINFO unavailable; replies use the routing table's source address");
        }
    }
    let socket = Arc::new(socket);
    let tasks = TaskTracker::new();
    let mut rx = RecvBatch::new();
    let mut replies: Vec<Reply> = Vec::with_capacity(BATCH);
    // One waiter for the whole loop, not one registered and dropped per batch.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let received = tokio::select! {
            () = &mut cancelled => break,
            received = rx.recv(&socket) => received,
        };
        let count = match received {
            Ok(count) => count,
            Err(error) => {
                debug!(%error, "UDP receive failed");
                continue;
            }
        };
        // One clock reading for the batch: the rate limiter's and the cache's.
        let now = Instant::now();
        for i in 0..count {
            let Some((query, origin)) = rx.get(i) else {
                continue;
            };
            let reply = |bytes| Reply { bytes, origin };
            match limiter.check(origin.client.ip(), now) {
                Verdict::Admit => {}
                Verdict::Refuse => {
                    replies.extend(handler.refuse(query).map(reply));
                    continue;
                }
                Verdict::Drop => continue,
            }
            match handler.handle_now(query, origin.client, Transport::Udp, now) {
                Step::Done(answer) => {
                    replies.extend(answer.map(reply));
                    continue;
                }
                Step::Upstream => {}
            }
            let Some(permit) = handler.admit() else {
                replies.extend(handler.refuse(query).map(reply));
                continue;
            };
            let query = query.to_vec();
            let (socket, handler) = (socket.clone(), handler.clone());
            tasks.spawn(async move {
                let _permit = permit;
                if let Some(bytes) = handler.forward(&query, Transport::Udp).await {
                    send_all(&socket, &[Reply { bytes, origin }]).await;
                }
            });
        }
        send_all(&socket, &replies).await;
        replies.clear();
    }
    tasks.close();
    tasks.wait().await;
}

/// Buffers for one recvmmsg call. (nix's headers are not `Send`: they are made for each call,
/// within it.)
struct RecvBatch {
    bufs: Vec<u8>,
    got: [(usize, Option<Origin>); BATCH],
}

impl RecvBatch {
    fn new() -> Self {
        Self {
            bufs: vec![0u8; BATCH * QUERY_MAX],
            got: [(0, None); BATCH],
        }
    }

    /// Waits for datagrams and reads up to [`BATCH`] of them; how many were read.
    ///
    /// A read that found fewer than a batch emptied the socket's queue: it also clears the
    /// socket's readiness, as a read that found nothing would, so that the next call waits for
    /// epoll instead of spending a system call to learn that nothing came. (Safe against a
    /// datagram arriving meanwhile: it raises a new edge, and tokio clears only the readiness
    /// of the event the read was made for.)
    async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            let mut count = 0;
            let read = socket.try_io(Interest::READABLE, || {
                count = self.read(socket)?;
                if count < BATCH {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match read {
                Ok(()) => return Ok(count),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && count > 0 => return Ok(count),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One recvmmsg without waiting: how many datagrams it read.
    fn read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let Self { bufs, got } = self;
        let cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo);
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(cmsg));
        let mut chunks = bufs.chunks_mut(QUERY_MAX);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = socket::recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        let mut count = 0;
        for (slot, msg) in got.iter_mut().zip(results) {
            count += 1;
            *slot = (msg.bytes, None);
            if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                continue; // longer than any real query: dropped
            }
            let Some(client) = msg.address.and_then(to_socket_addr) else {
                continue;
            };
            let mut local = Local::Unknown;
            for c in msg.cmsgs().into_iter().flatten() {
                match c {
                    ControlMessageOwned::Ipv4PacketInfo(info) => local = Local::V4(info.ipi_addr),
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        local = Local::V6(info.ipi6_addr, info.ipi6_ifindex)
                    }
                    _ => {}
                }
            }
            slot.1 = Some(Origin { client, local });
        }
        Ok(count)
    }

    /// Datagram `i` of the last read and where it came from; `None` for one to drop.
    fn get(&self, i: usize) -> Option<(&[u8], Origin)> {
        let (len, origin) = self.got[i];
        let start = i * QUERY_MAX;
        Some((&self.bufs[start..start + len.min(QUERY_MAX)], origin?))
    }
}

fn enable_pktinfo(socket: &UdpSocket) -> io::Result<()> {
    if socket.local_addr()?.is_ipv6() {
        setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

/// Sends `replies`, a batch at a time. A reply the kernel refuses (say, to an unreachable
/// client) is logged and skipped; the others still go.
async fn send_all(socket: &UdpSocket, replies: &[Reply]) {
    let mut sent = 0;
    while sent < replies.len() {
        let rest = &replies[sent..];
        match socket
            .async_io(Interest::WRITABLE, || mmsg::send(socket.as_fd(), rest))
            .await
        {
            Ok(n) => sent += n.max(1),
            Err(error) => {
                debug!(%error, client = %rest[0].origin.client, "UDP send failed");
                sent += 1;
            }
        }
    }
}

fn to_socket_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}
