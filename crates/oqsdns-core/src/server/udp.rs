//! The UDP listener. Each reply leaves from the address its query was sent to, also on a wildcard
//! socket on a host with several addresses (IP_PKTINFO / IPV6_RECVPKTINFO): clients drop replies
//! from any other source.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::libc;
use nix::sys::socket::{
    self, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn,
    SockaddrIn6, SockaddrStorage,
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

/// Serves queries arriving on `socket` until `shutdown`; then waits for the queries under way.
/// Every datagram counts against its sender's budget in `limiter` before it is admitted.
pub async fn serve_udp(
    socket: UdpSocket,
    handler: Arc<Handler>,
    limiter: Arc<RateLimiter>,
    shutdown: CancellationToken,
) {
    if let Err(error) = enable_pktinfo(&socket) {
        debug!(%error, "IP_PKTINFO unavailable; replies use the routing table's source address");
    }
    let socket = Arc::new(socket);
    let tasks = TaskTracker::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            received = recv(&socket, &mut buf) => received,
        };
        let (len, origin) = match received {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "UDP receive failed");
                continue;
            }
        };
        let query = &buf[..len];
        match limiter.check(origin.client.ip()) {
            Verdict::Admit => {}
            Verdict::Refuse => {
                if let Some(reply) = handler.refuse(query) {
                    let _ = send(&socket, &reply, origin).await;
                }
                continue;
            }
            Verdict::Drop => continue,
        }
        // Refusals, local and cached answers are served here, in the receive loop: only a
        // query that goes upstream costs a task.
        match handler.handle_now(query, origin.client, Transport::Udp) {
            Step::Done(Some(reply)) => {
                if let Err(error) = send(&socket, &reply, origin).await {
                    debug!(%error, client = %origin.client, "UDP send failed");
                }
                continue;
            }
            Step::Done(None) => continue,
            Step::Upstream => {}
        }
        let Some(permit) = handler.admit() else {
            if let Some(reply) = handler.refuse(query) {
                let _ = send(&socket, &reply, origin).await;
            }
            continue;
        };
        let query = query.to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(reply) = handler.forward(&query, Transport::Udp).await {
                if let Err(error) = send(&socket, &reply, origin).await {
                    debug!(%error, client = %origin.client, "UDP send failed");
                }
            }
        });
    }
    tasks.close();
    tasks.wait().await;
}

fn enable_pktinfo(socket: &UdpSocket) -> io::Result<()> {
    if socket.local_addr()?.is_ipv6() {
        setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

async fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Origin)> {
    socket
        .async_io(Interest::READABLE, || {
            let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo);
            let mut iov = [IoSliceMut::new(buf)];
            let msg = socket::recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )?;
            let client = msg
                .address
                .and_then(to_socket_addr)
                .ok_or(io::ErrorKind::InvalidData)?;
            let mut local = Local::Unknown;
            for c in msg.cmsgs()? {
                match c {
                    ControlMessageOwned::Ipv4PacketInfo(info) => local = Local::V4(info.ipi_addr),
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        local = Local::V6(info.ipi6_addr, info.ipi6_ifindex)
                    }
                    _ => {}
                }
            }
            Ok((msg.bytes, Origin { client, local }))
        })
        .await
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
