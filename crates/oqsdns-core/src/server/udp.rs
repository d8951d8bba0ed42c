//! The UDP listener. Each reply leaves from the address its query was sent to, also on a wildcard
//! socket on a host with several addresses (IP_PKTINFO / IPV6_RECVPKTINFO): clients drop replies
//! from any other source.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::libc;
use nix::sys::socket::{
    self, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders,
    SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::handler::{Handler, Step};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::upstream::Transport;

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

/// Datagrams received with one system call at most.
const BATCH: usize = 16;
/// The largest query read; a longer datagram (no real client sends one) is dropped.
const QUERY_MAX: usize = 4096;

/// Serves queries arriving on `socket` until `shutdown`; then waits for the queries under way.
/// Every datagram counts against its sender's budget in `limiter` before it is admitted.
/// Datagrams are read in batches (recvmmsg); refusals, local and cached answers are made and sent
/// in this loop; only a query that goes upstream costs a task. (Replies go one sendmsg each:
/// nix's sendmmsg reports how many were sent only through an iterator that reads addresses it
/// never wrote.)
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
        for i in 0..count {
            let Some((query, origin)) = rx.get(i) else {
                continue;
            };
            match limiter.check(origin.client.ip()) {
                Verdict::Admit => {}
                Verdict::Refuse => {
                    if let Some(reply) = handler.refuse(query) {
                        reply_to(&socket, &reply, origin).await;
                    }
                    continue;
                }
                Verdict::Drop => continue,
            }
            match handler.handle_now(query, origin.client, Transport::Udp) {
                Step::Done(Some(reply)) => {
                    reply_to(&socket, &reply, origin).await;
                    continue;
                }
                Step::Done(None) => continue,
                Step::Upstream => {}
            }
            let Some(permit) = handler.admit() else {
                if let Some(reply) = handler.refuse(query) {
                    reply_to(&socket, &reply, origin).await;
                }
                continue;
            };
            let query = query.to_vec();
            let (socket, handler) = (socket.clone(), handler.clone());
            tasks.spawn(async move {
                let _permit = permit;
                if let Some(reply) = handler.forward(&query, Transport::Udp).await {
                    reply_to(&socket, &reply, origin).await;
                }
            });
        }
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
    async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let Self { bufs, got } = self;
        socket
            .async_io(Interest::READABLE, || {
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
                            ControlMessageOwned::Ipv4PacketInfo(info) => {
                                local = Local::V4(info.ipi_addr)
                            }
                            ControlMessageOwned::Ipv6PacketInfo(info) => {
                                local = Local::V6(info.ipi6_addr, info.ipi6_ifindex)
                            }
                            _ => {}
                        }
                    }
                    slot.1 = Some(Origin { client, local });
                }
                Ok(count)
            })
            .await
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

async fn reply_to(socket: &UdpSocket, reply: &[u8], origin: Origin) {
    if let Err(error) = send(socket, reply, origin).await {
        debug!(%error, client = %origin.client, "UDP send failed");
    }
}

fn to_socket_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

async fn send(socket: &UdpSocket, reply: &[u8], origin: Origin) -> io::Result<usize> {
    socket
        .async_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(reply)];
            let fd = socket.as_raw_fd();
            let flags = MsgFlags::empty();
            let sent = match (origin.client, origin.local) {
                (SocketAddr::V4(client), Local::V4(addr)) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: addr,
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
                    socket::sendmsg(fd, &iov, &cmsg, flags, Some(&SockaddrIn::from(client)))
                }
                (SocketAddr::V6(client), Local::V6(addr, ifindex)) => {
                    let info = libc::in6_pktinfo {
                        ipi6_addr: addr,
                        ipi6_ifindex: ifindex,
                    };
                    let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
                    socket::sendmsg(fd, &iov, &cmsg, flags, Some(&SockaddrIn6::from(client)))
                }
                (SocketAddr::V4(client), _) => {
                    socket::sendmsg(fd, &iov, &[], flags, Some(&SockaddrIn::from(client)))
                }
                (SocketAddr::V6(client), _) => {
                    socket::sendmsg(fd, &iov, &[], flags, Some(&SockaddrIn6::from(client)))
                }
            };
            sent.map_err(io::Error::from)
        })
        .await
}
