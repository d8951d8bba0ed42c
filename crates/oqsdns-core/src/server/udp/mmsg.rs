//! Queries received and replies sent in batches: one `recvmmsg(2)` into buffers made once for the
//! receive thread, and one `sendmmsg(2)` for all the replies one pass of the UDP listener's loop
//! made, each with its own destination and, on a wildcard socket, its own source address.
//!
//! The daemon's only `unsafe` code, kept to this file. nix's `sendmmsg` cannot do the job: it
//! gives every message the same control messages (one source address for all) and reports how
//! many were sent only through an iterator that reads addresses it never wrote. Its `recvmmsg`
//! needs its headers made anew for every call (it does not reset the lengths the kernel
//! overwrote), and those 16 KiB, allocated and freed per call, cost more than the call itself
//! in the cached path.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use nix::libc;
use nix::sys::socket::MsgFlags;
use socket2::SockAddr;

use super::{Local, Origin};

/// Datagrams received, and replies sent, by one system call at most.
pub(super) const BATCH: usize = 64;
/// The largest query read; a longer datagram (no real client sends one) is dropped.
pub(super) const QUERY_MAX: usize = 4096;

/// A reply and where it goes.
#[derive(Debug)]
pub(super) struct Reply {
    pub bytes: Vec<u8>,
    pub origin: Origin,
}

/// Room for one control message: IP_PKTINFO or IPV6_PKTINFO (`CMSG_SPACE` of the larger is 40
/// bytes on 64-bit Linux, 32 on 32-bit), aligned as `cmsghdr` is.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

/// Sends the first [`BATCH`] of `replies` (at most) with one `sendmmsg` with `flags`: how many
/// were sent. An error is the first reply's (the kernel reports a later one's on the next call);
/// the caller goes on past it.
#[allow(unsafe_code)]
pub(super) fn send(fd: BorrowedFd<'_>, replies: &[Reply], flags: MsgFlags) -> io::Result<usize> {
    let n = replies.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    // socket2's address has the exact length of its family (16 or 28 bytes).
    let names: [SockAddr; BATCH] = std::array::from_fn(|i| {
        SockAddr::from(
            replies
                .get(i)
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |r| r.origin.client),
        )
    });
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    for (iov, reply) in iovs.iter_mut().zip(replies) {
        // sendmmsg only reads the buffers; the pointer is `*mut` for recvmmsg's sake.
        iov.iov_base = reply.bytes.as_ptr().cast_mut().cast();
        iov.iov_len = reply.bytes.len();
    }
    let mut controls = [Control([0; 64]); BATCH];
    // SAFETY: `mmsghdr` is integers and pointers only; all zeroes (null pointers, zero lengths)
    // is a valid value of it.
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
    let iov_base = iovs.as_mut_ptr();
    let control_base = controls.as_mut_ptr();
    for (i, reply) in replies[..n].iter().enumerate() {
        let header = &mut headers[i].msg_hdr;
        header.msg_name = names[i].as_ptr().cast_mut().cast();
        header.msg_namelen = names[i].len();
        // SAFETY: `i < n <= BATCH`, inside `iovs` and `controls`; every pointer below is derived
        // from those two arrays' base pointers, taken after the last write to them through a
        // reference, and the arrays outlive the system call.
        unsafe {
            header.msg_iov = iov_base.add(i);
            header.msg_iovlen = 1;
            let control = control_base.add(i).cast::<u8>();
            match (reply.origin.client, reply.origin.local) {
                (SocketAddr::V4(_), Local::V4(addr)) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: addr,
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    pktinfo(header, control, libc::IPPROTO_IP, libc::IP_PKTINFO, info);
                }
                (SocketAddr::V6(_), Local::V6(addr, ifindex)) => {
                    let info = libc::in6_pktinfo {
                        ipi6_addr: addr,
                        ipi6_ifindex: ifindex,
                    };
                    pktinfo(
                        header,
                        control,
                        libc::IPPROTO_IPV6,
                        libc::IPV6_PKTINFO,
                        info,
                    );
                }
                _ => {}
            }
        }
    }
    // SAFETY: the first `n` headers point at live names, iovecs (each one buffer of a reply,
    // borrowed for this call) and control buffers holding one well-formed message each, or none.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            n as _,
            flags.bits() as _,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// The buffers of one `recvmmsg`, made once and reused: datagrams, source addresses, control
/// messages (the local address, on a wildcard socket) and the headers pointing at them, which
/// are pointed again, and their lengths reset, before every call.
pub(super) struct RecvBuffers {
    datagrams: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Control]>,
    iovs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
}

impl RecvBuffers {
    #[allow(unsafe_code)]
    pub(super) fn new() -> Self {
        let iov = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: both are C structures of integers and pointers: all zeroes is a valid value.
        let (name, header) = unsafe {
            (
                mem::zeroed::<libc::sockaddr_storage>(),
                mem::zeroed::<libc::mmsghdr>(),
            )
        };
        Self {
            datagrams: vec![0u8; BATCH * QUERY_MAX].into_boxed_slice(),
            names: vec![name; BATCH].into_boxed_slice(),
            controls: vec![Control([0; 64]); BATCH].into_boxed_slice(),
            iovs: vec![iov; BATCH].into_boxed_slice(),
            headers: vec![header; BATCH].into_boxed_slice(),
        }
    }

    /// One `recvmmsg` of up to [`BATCH`] datagrams with `flags`: how many it read.
    #[allow(unsafe_code)]
    pub(super) fn recv(&mut self, fd: BorrowedFd<'_>, flags: MsgFlags) -> io::Result<usize> {
        let datagrams = self.datagrams.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let controls = self.controls.as_mut_ptr();
        let iovs = self.iovs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: `i < BATCH`, the length of every slice here (and `datagrams` holds BATCH
            // buffers of QUERY_MAX bytes); the pointers stay inside their own allocations.
            unsafe {
                *iovs.add(i) = libc::iovec {
                    iov_base: datagrams.add(i * QUERY_MAX).cast(),
                    iov_len: QUERY_MAX,
                };
                let header = &mut *self.headers.as_mut_ptr().add(i);
                header.msg_len = 0;
                header.msg_hdr.msg_name = names.add(i).cast();
                header.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as _;
                header.msg_hdr.msg_iov = iovs.add(i);
                header.msg_hdr.msg_iovlen = 1;
                header.msg_hdr.msg_control = controls.add(i).cast();
                header.msg_hdr.msg_controllen = mem::size_of::<Control>() as _;
                header.msg_hdr.msg_flags = 0;
            }
        }
        // SAFETY: BATCH headers, each pointing at its own name, one iovec of QUERY_MAX bytes
        // and a control buffer, all owned by `self` and alive for the call; no timeout.
        let read = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as _,
                flags.bits() as _,
                ptr::null_mut(),
            )
        };
        if read < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(read as usize)
        }
    }

    /// Datagram `i` (below what the last [`recv`](Self::recv) returned), and where it came
    /// from and the address it was sent to: `None` to drop it (longer than [`QUERY_MAX`], or
    /// from no address we know).
    pub(super) fn get(&self, i: usize) -> (&[u8], Option<Origin>) {
        let header = &self.headers[i];
        let len = (header.msg_len as usize).min(QUERY_MAX);
        let bytes = &self.datagrams[i * QUERY_MAX..i * QUERY_MAX + len];
        let hdr = &header.msg_hdr;
        let origin = if hdr.msg_flags & libc::MSG_TRUNC != 0 {
            None // longer than any real query: dropped
        } else {
            to_socket_addr(&self.names[i], hdr.msg_namelen as usize).map(|client| Origin {
                client,
                local: local_of(hdr),
            })
        };
        (bytes, origin)
    }
}

/// The source address the kernel wrote into `name` (`len` bytes of it).
#[allow(unsafe_code)]
fn to_socket_addr(name: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match i32::from(name.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a `sockaddr_in` (its family and length say so) at the
            // start of the storage, which is aligned for every socket address type.
            let v4 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                v4.sin_addr.s_addr.to_ne_bytes(),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a `sockaddr_in6`.
            let v6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                v6.sin6_addr.s6_addr.into(),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The local address a datagram was sent to, from its IP_PKTINFO / IPV6_PKTINFO control
/// message (present on a wildcard socket only).
#[allow(unsafe_code)]
#[allow(clippy::unnecessary_cast)] // the lengths are `usize` in glibc, `socklen_t` in musl
fn local_of(hdr: &libc::msghdr) -> Local {
    let mut local = Local::Unknown;
    if hdr.msg_control.is_null() || (hdr.msg_controllen as usize) < mem::size_of::<libc::cmsghdr>()
    {
        return local;
    }
    // SAFETY: `msg_control` points at this header's own control buffer and `msg_controllen` is
    // what the kernel wrote into it (at most its size: a longer one sets MSG_CTRUNC and is
    // cut); CMSG_FIRSTHDR / CMSG_NXTHDR return a header that fits within that length or null,
    // and a message's data is read only if it lies within it too (libc's CMSG_NXTHDR checks the
    // next header, not the length it claims).
    unsafe {
        // Compared as addresses: a pointer past the buffer is never made.
        let end = hdr.msg_control as usize + hdr.msg_controllen as usize;
        let fits = |data: *const u8, size: usize| data as usize + size <= end;
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let len = (*cmsg).cmsg_len as usize;
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
                    if len >= libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as _) as usize
                        && fits(data, mem::size_of::<libc::in_pktinfo>()) =>
                {
                    let info = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    local = Local::V4(info.ipi_spec_dst);
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if len >= libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as _) as usize
                        && fits(data, mem::size_of::<libc::in6_pktinfo>()) =>
                {
                    let info = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    local = Local::V6(info.ipi6_addr, info.ipi6_ifindex);
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    local
}

/// Writes one control message of `level`/`kind` carrying `info` into `control` (a [`Control`])
/// and points `header` at it.
///
/// # Safety
///
/// `control` points to a [`Control`] that outlives the use of `header`, and `T` fits in it.
#[allow(unsafe_code)]
unsafe fn pktinfo<T>(header: &mut libc::msghdr, control: *mut u8, level: i32, kind: i32, info: T) {
    let size = mem::size_of::<T>() as u32;
    // SAFETY: the caller's contract; CMSG_SPACE(size) <= 64 for both pktinfo structures, so the
    // header and data CMSG_FIRSTHDR / CMSG_DATA point at lie within `control`.
    unsafe {
        header.msg_control = control.cast();
        header.msg_controllen = libc::CMSG_SPACE(size) as _;
        let cmsg = libc::CMSG_FIRSTHDR(header);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<T>(), info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn origin(client: SocketAddr) -> Origin {
        Origin {
            client,
            local: Local::Unknown,
        }
    }

    #[test]
    fn every_reply_reaches_its_own_client() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let replies: Vec<Reply> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| Reply {
                bytes: vec![i as u8; 10 + i],
                origin: origin(c.local_addr().unwrap()),
            })
            .collect();
        assert_eq!(
            send(server.as_fd(), &replies, MsgFlags::empty()).unwrap(),
            3
        );
        for (i, client) in clients.iter().enumerate() {
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 64];
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], &vec![i as u8; 10 + i][..]);
            assert_eq!(from, server.local_addr().unwrap());
        }
    }

    #[test]
    fn sends_at_most_a_batch_and_nothing_for_none() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let replies: Vec<Reply> = (0..BATCH + 3)
            .map(|i| Reply {
                bytes: vec![i as u8],
                origin: origin(client.local_addr().unwrap()),
            })
            .collect();
        assert_eq!(send(server.as_fd(), &[], MsgFlags::empty()).unwrap(), 0);
        assert_eq!(
            send(server.as_fd(), &replies, MsgFlags::empty()).unwrap(),
            BATCH
        );
        assert_eq!(
            send(server.as_fd(), &replies[BATCH..], MsgFlags::empty()).unwrap(),
            3
        );
    }

    #[test]
    fn a_reply_leaves_from_the_address_its_query_came_to() {
        // A wildcard socket; the reply names 127.0.0.2 as its source (IP_PKTINFO).
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = Local::V4(libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 2]),
        });
        let reply = Reply {
            bytes: b"hello".to_vec(),
            origin: Origin {
                client: client.local_addr().unwrap(),
                local,
            },
        };
        assert_eq!(
            send(server.as_fd(), &[reply], MsgFlags::empty()).unwrap(),
            1
        );
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 2], port)));
    }

    fn recv_all(
        buffers: &mut RecvBuffers,
        socket: &UdpSocket,
        want: usize,
    ) -> Vec<(Vec<u8>, Option<Origin>)> {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        while got.len() < want {
            let n = buffers
                .recv(socket.as_fd(), MsgFlags::MSG_WAITFORONE)
                .unwrap();
            got.extend((0..n).map(|i| {
                let (bytes, origin) = buffers.get(i);
                (bytes.to_vec(), origin)
            }));
        }
        got
    }

    #[test]
    fn buffers_used_again_read_each_datagram_whole_with_its_sender_and_local_address() {
        // A wildcard socket told to report the local address, as the listener does.
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        super::super::enable_pktinfo(&server, server.local_addr().unwrap()).unwrap();
        let port = server.local_addr().unwrap().port();
        let mut buffers = RecvBuffers::new();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        // Short datagrams first, longer ones in the second call: the lengths the kernel wrote
        // into the headers the first time must not cut the second.
        for round in [1usize, 300] {
            for (i, client) in clients.iter().enumerate() {
                let to = SocketAddr::from(([127, 0, 0, 2 + i as u8], port));
                client.send_to(&vec![i as u8; round + i], to).unwrap();
            }
            let got = recv_all(&mut buffers, &server, clients.len());
            for (i, client) in clients.iter().enumerate() {
                let (bytes, origin) = got
                    .iter()
                    .find(|(_, o)| o.is_some_and(|o| o.client == client.local_addr().unwrap()))
                    .unwrap_or_else(|| panic!("no datagram from client {i}: {got:?}"));
                assert_eq!(bytes, &vec![i as u8; round + i]);
                match origin.unwrap().local {
                    Local::V4(addr) => {
                        assert_eq!(addr.s_addr.to_ne_bytes(), [127, 0, 0, 2 + i as u8])
                    }
                    other => panic!("round {round}: no local address: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn an_ipv6_sender_is_read_with_its_port_and_a_datagram_too_long_is_dropped() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let client = UdpSocket::bind("[::1]:0").unwrap();
        let mut buffers = RecvBuffers::new();
        client
            .send_to(b"query", server.local_addr().unwrap())
            .unwrap();
        client
            .send_to(&vec![0u8; QUERY_MAX + 1], server.local_addr().unwrap())
            .unwrap();
        let got = recv_all(&mut buffers, &server, 2);
        assert_eq!(got[0].0, b"query");
        assert_eq!(
            got[0].1.map(|o| o.client),
            Some(client.local_addr().unwrap())
        );
        assert!(
            got[1].1.is_none(),
            "a datagram over QUERY_MAX is kept: {:?}",
            got[1].1
        );
    }
}
