//! Replies sent in batches, one `sendmmsg(2)` for all the replies one pass of the UDP listener's
//! loop made, each with its own destination and, on a wildcard socket, its own source address.
//!
//! The daemon's only `unsafe` code, kept to this file. nix's `sendmmsg` cannot do the job: it
//! gives every message the same control messages (one source address for all) and reports how
//! many were sent only through an iterator that reads addresses it never wrote.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use nix::libc;
use nix::sys::socket::MsgFlags;
use socket2::SockAddr;

use super::{Local, Origin};

/// Replies sent by one system call at most.
pub(super) const BATCH: usize = 16;

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
}
