//! Datagrams of one connected upstream socket sent and read in batches: one `sendmmsg(2)` for
//! the queries a pooled socket was given in one round of the runtime, one `recvmmsg(2)` for the
//! replies queued on it; and the disconnect that frees a used-up socket's port. With
//! `server/udp/mmsg.rs`, the daemon's only `unsafe` code.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use nix::libc;

/// Datagrams of one connected socket sent, or read, by one system call at most: the queries one
/// pooled upstream socket carries ([`POOLED_USES`](super::POOLED_USES)).
pub(super) const CONNECTED_BATCH: usize = super::POOLED_USES as usize;

/// Sends the first [`CONNECTED_BATCH`] of `datagrams` (at most) on the connected socket `fd`
/// with one `sendmmsg`, without waiting: how many were sent. An error is the first datagram's.
#[allow(unsafe_code)]
pub(super) fn send_connected(fd: BorrowedFd<'_>, datagrams: &[&[u8]]) -> io::Result<usize> {
    let n = datagrams.len().min(CONNECTED_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; CONNECTED_BATCH];
    for (iov, datagram) in iovs.iter_mut().zip(datagrams) {
        // sendmmsg only reads the buffers; the pointer is `*mut` for recvmmsg's sake.
        iov.iov_base = datagram.as_ptr().cast_mut().cast();
        iov.iov_len = datagram.len();
    }
    let mut headers = headers(&mut iovs, n);
    // SAFETY: the first `n` headers point at one iovec each, a datagram borrowed for this call.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            n as _,
            libc::MSG_DONTWAIT as _,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// Dissolves the connected UDP socket `fd`'s association (`connect(2)` to an `AF_UNSPEC`
/// address): the kernel unbinds the port it chose for the socket when it was connected (a port
/// no `bind` asked for), so that the next connect binds a new random one.
#[allow(unsafe_code)]
pub(super) fn disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zeroed `sockaddr` is a valid value (family AF_UNSPEC, which is 0), and the call
    // only reads it, for the length given.
    let unspec: libc::sockaddr = unsafe { mem::zeroed() };
    debug_assert_eq!(unspec.sa_family, libc::AF_UNSPEC as libc::sa_family_t);
    // SAFETY: `unspec` lives for the call, and its size is the length passed.
    let done = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &unspec,
            mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if done < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The largest upstream reply read over UDP; a longer one is cut there (and then fails to parse).
pub(super) const REPLY_MAX: usize = crate::wire::UPSTREAM_PAYLOAD as usize + 512;

/// Reads at most `want` (at least one, at most [`CONNECTED_BATCH`]) datagrams queued on the
/// connected socket `fd` with one `recvmmsg`, without waiting, into `buffers`: their lengths,
/// and how many. WouldBlock when none is queued.
#[allow(unsafe_code)]
pub(super) fn recv_connected(
    fd: BorrowedFd<'_>,
    buffers: &mut [[u8; REPLY_MAX]; CONNECTED_BATCH],
    want: usize,
) -> io::Result<([usize; CONNECTED_BATCH], usize)> {
    let n = want.clamp(1, CONNECTED_BATCH);
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; CONNECTED_BATCH];
    for (iov, buffer) in iovs.iter_mut().zip(buffers.iter_mut()) {
        iov.iov_base = buffer.as_mut_ptr().cast();
        iov.iov_len = REPLY_MAX;
    }
    // The kernel writes no address (no room given for one) and no control message.
    let mut headers = headers(&mut iovs, n);
    // SAFETY: the first `n` headers point at one iovec each, a buffer of REPLY_MAX bytes
    // borrowed mutably for this call; no timeout.
    let read = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            n as _,
            libc::MSG_DONTWAIT as _,
            ptr::null_mut(),
        )
    };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut lens = [0; CONNECTED_BATCH];
    for (len, header) in lens.iter_mut().zip(&headers[..read as usize]) {
        *len = (header.msg_len as usize).min(REPLY_MAX);
    }
    Ok((lens, read as usize))
}

/// Headers for a connected socket, the first `n` pointing at one of `iovs` each (no address, no
/// control message). They hold pointers into `iovs`, which must outlive the system call.
#[allow(unsafe_code)]
fn headers(
    iovs: &mut [libc::iovec; CONNECTED_BATCH],
    n: usize,
) -> [libc::mmsghdr; CONNECTED_BATCH] {
    // SAFETY: `mmsghdr` is integers and pointers only; all zeroes (null pointers, zero
    // lengths) is a valid value of it.
    let mut headers: [libc::mmsghdr; CONNECTED_BATCH] = unsafe { mem::zeroed() };
    let iov_base = iovs.as_mut_ptr();
    for (i, header) in headers[..n.min(CONNECTED_BATCH)].iter_mut().enumerate() {
        // SAFETY: `i < CONNECTED_BATCH`, inside `iovs`.
        header.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
        header.msg_hdr.msg_iovlen = 1;
    }
    headers
}
