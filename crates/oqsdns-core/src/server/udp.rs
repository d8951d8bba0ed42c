//! The UDP listener. Each reply leaves from the address its query was sent to, also on a wildcard
//! socket on a host with several addresses (IP_PKTINFO / IPV6_RECVPKTINFO): clients drop replies
//! from any other source.
//!
//! The socket is read by a thread of its own, as the fastest forwarders do: it blocks in
//! recvmmsg until a datagram comes, takes every one queued, answers refusals, local and cached
//! questions at once and sends those replies with one sendmmsg. No poller stands between the
//! datagrams and the loop, which costs a system call and a task wake-up per batch. The questions
//! of a batch that go upstream are handed to the tokio runtime together (one wake-up for the
//! batch, not one per question), where one task drives them all; the replies that come back
//! together leave with one sendmmsg.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use nix::libc;
use nix::sys::socket::{self, setsockopt, sockopt, MsgFlags, Shutdown};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error};

use crate::handler::{Handler, Step};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::upstream::Transport;
use crate::wire::Parsed;

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
/// A reply from an upstream task finding the socket's send buffer full tries again this often...
const SEND_RETRY: Duration = Duration::from_millis(1);
/// ... this many times, then is dropped (the client asks again).
const SEND_TRIES: u32 = 50;
/// The receive thread's wait for a datagram is cut short this often to look for shutdown (a
/// safety net: shutdown wakes it at once by shutting the socket's receiving side).
const RECV_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves queries arriving on `socket` until `shutdown`; then waits for the queries under way.
/// Every datagram counts against its sender's budget in `limiter` before it is admitted.
pub async fn serve_udp(
    socket: UdpSocket,
    handler: Arc<Handler>,
    limiter: Arc<RateLimiter>,
    shutdown: CancellationToken,
) {
    let local = socket.local_addr().ok();
    // Only a wildcard socket needs to be told which address a query came to: one bound to an
    // address sends from it anyway, and a reply without the control message is cheaper.
    if let Some(addr) = local.filter(|a| a.ip().is_unspecified()) {
        if let Err(error) = enable_pktinfo(&socket, addr) {
            debug!(%error, "IP_PKTINFO unavailable; replies use the routing table's source address");
        }
    }
    let socket = match blocking(socket) {
        Ok(socket) => Arc::new(socket),
        Err(error) => {
            error!(%error, ?local, "UDP listener on {} unusable, not serving: {error}", local.map_or("?".into(), |a| a.to_string()));
            return;
        }
    };
    let tasks = TaskTracker::new();
    let stop = Stopper {
        socket: socket.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let (done, exited) = tokio::sync::oneshot::channel::<()>();
    let (upstream, batches) = tokio::sync::mpsc::unbounded_channel();
    tasks.spawn(dispatch(
        batches,
        socket.clone(),
        handler.clone(),
        tasks.clone(),
    ));
    let receiver = Receiver {
        socket,
        handler,
        limiter,
        upstream,
        stop: stop.stop.clone(),
    };
    let spawned = std::thread::Builder::new()
        .name("oqsdns-udp".into())
        .spawn(move || {
            receiver.run();
            drop(done);
        });
    if let Err(error) = spawned {
        error!(%error, ?local, "UDP listener thread for {} not started: {error}", local.map_or("?".into(), |a| a.to_string()));
        return;
    }
    shutdown.cancelled().await;
    drop(stop);
    let _ = exited.await;
    tasks.close();
    tasks.wait().await;
}

/// The socket as the receive thread uses it: blocking, with [`RECV_TIMEOUT`].
fn blocking(socket: UdpSocket) -> io::Result<std::net::UdpSocket> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    Ok(socket)
}

/// Stops the receive thread when dropped (at shutdown, or if the listener's task is dropped):
/// sets the flag and shuts the socket's receiving side, which wakes a blocked recvmmsg at once.
/// Replies can still be sent on the socket.
struct Stopper {
    socket: Arc<std::net::UdpSocket>,
    stop: Arc<AtomicBool>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // On an unconnected UDP socket Linux reports ENOTCONN but shuts the side all the same.
        let _ = socket::shutdown(self.socket.as_raw_fd(), Shutdown::Read);
    }
}

/// What the receive thread works with.
struct Receiver {
    socket: Arc<std::net::UdpSocket>,
    handler: Arc<Handler>,
    limiter: Arc<RateLimiter>,
    /// The questions of a batch that go upstream, to [`dispatch`].
    upstream: UnboundedSender<Vec<Upstream>>,
    stop: Arc<AtomicBool>,
}

/// A question admitted to go upstream.
struct Upstream {
    query: Vec<u8>,
    /// What parsing it found, so the task does not parse it again.
    parsed: Parsed,
    origin: Origin,
    permit: OwnedSemaphorePermit,
}

impl Receiver {
    /// Reads, answers and sends batches until stopped.
    fn run(self) {
        let mut rx = RecvBatch::new();
        let mut replies: Vec<Reply> = Vec::with_capacity(BATCH);
        let mut upstream: Vec<Upstream> = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let count = match rx.read(&self.socket, MsgFlags::MSG_WAITFORONE, &self.stop) {
                Ok(0) => continue, // stopping
                Ok(count) => count,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue; // RECV_TIMEOUT passed, or a signal
                }
                Err(error) => {
                    debug!(%error, "UDP receive failed");
                    continue;
                }
            };
            // One clock reading for the batch: the rate limiter's and the cache's.
            let now = Instant::now();
            for i in 0..count {
                if let Some((query, origin)) = rx.get(i) {
                    self.answer(query, origin, now, &mut replies, &mut upstream);
                }
            }
            if !upstream.is_empty() {
                // The next batch's list is made as large as this one's: one allocation a batch,
                // not one per doubling as it fills.
                let next = Vec::with_capacity(upstream.len());
                if self
                    .upstream
                    .send(std::mem::replace(&mut upstream, next))
                    .is_err()
                {
                    break; // the runtime's side is gone: shutting down
                }
            }
            send_now(&self.socket, &replies);
            replies.clear();
        }
    }

    /// Answers one query into `replies`, or adds it to `upstream`.
    fn answer(
        &self,
        query: &[u8],
        origin: Origin,
        now: Instant,
        replies: &mut Vec<Reply>,
        upstream: &mut Vec<Upstream>,
    ) {
        let handler = &self.handler;
        let reply = |bytes| Reply { bytes, origin };
        match self.limiter.check(origin.client.ip(), now) {
            Verdict::Admit => {}
            Verdict::Refuse => return replies.extend(handler.refuse(query).map(reply)),
            Verdict::Drop => return,
        }
        let parsed = match handler.handle_now(query, origin.client, Transport::Udp, now) {
            Step::Done(answer) => return replies.extend(answer.map(reply)),
            Step::Upstream(parsed) => parsed,
        };
        match handler.admit() {
            Some(permit) => upstream.push(Upstream {
                query: query.to_vec(),
                parsed,
                origin,
                permit,
            }),
            None => replies.extend(handler.refuse(query).map(reply)),
        }
    }
}

/// How far ahead a timer is kept while upstream questions are under way, below the earliest
/// deadline a question sets ([`HEDGE_MIN`](crate::forward::HEDGE_MIN), the hedge). Tokio's timer
/// wakes its driver (a write to its eventfd, and one more turn of the poller) for every timer set
/// earlier than the earliest it knew of when it last parked. A wave of questions often finds it
/// parked with none under way, and then every question's timeout and hedge made that write:
/// 0.7 writes a query in the mixed cache miss. With this timer in the wheel, those deadlines are
/// later than the one it knows, and set without a wake-up.
const TIMER_ANCHOR: Duration = Duration::from_millis(50);

/// Asks upstream the questions the receive thread sends, all of them driven by this one task
/// (a `FuturesUnordered`, which polls only those woken), rather than one task each: a tokio task
/// is allocated aligned to a cache line, which glibc serves on its slow path (4 % of a cache
/// miss's CPU went to that allocation and the free-list consolidations it caused). There is one
/// worker thread, so nothing runs in parallel either way. Each reply goes to [`send_answers`].
async fn dispatch(
    mut batches: UnboundedReceiver<Vec<Upstream>>,
    socket: Arc<std::net::UdpSocket>,
    handler: Arc<Handler>,
    tasks: TaskTracker,
) {
    let (answers, to_send) = tokio::sync::mpsc::unbounded_channel();
    tasks.spawn(send_answers(to_send, socket));
    let ask = |upstream: Upstream| {
        let (answers, handler) = (answers.clone(), handler.clone());
        async move {
            let Upstream {
                query,
                parsed,
                origin,
                permit,
            } = upstream;
            let answer = handler.forward(&query, parsed, origin.client, Transport::Udp);
            if let Some(bytes) = answer.await {
                // The place among the queries in flight is held until the reply has left, so
                // that a full send buffer holds back new upstream questions.
                let _ = answers.send((Reply { bytes, origin }, permit));
            }
        }
    };
    let mut asking = FuturesUnordered::new();
    // See TIMER_ANCHOR.
    let mut anchor = tokio::time::interval(TIMER_ANCHOR);
    anchor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            batch = batches.recv() => match batch {
                Some(batch) => asking.extend(batch.into_iter().map(ask)),
                None => break,
            },
            Some(()) = asking.next(), if !asking.is_empty() => {}
            _ = anchor.tick(), if !asking.is_empty() => {}
        }
    }
    // The receive thread has stopped: the questions under way are still answered.
    while asking.next().await.is_some() {}
}

/// Sends the upstream questions' replies, those ready together with one sendmmsg: after the first
/// comes, the task yields once, so that the replies of the other upstream answers the runtime
/// woke in the same round join it. Ends when [`dispatch`] has ended.
async fn send_answers(
    mut answers: UnboundedReceiver<(Reply, OwnedSemaphorePermit)>,
    socket: Arc<std::net::UdpSocket>,
) {
    let mut batch: Vec<Reply> = Vec::with_capacity(BATCH);
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::with_capacity(BATCH);
    while let Some((reply, permit)) = answers.recv().await {
        batch.push(reply);
        permits.push(permit);
        tokio::task::yield_now().await;
        while batch.len() < BATCH {
            match answers.try_recv() {
                Ok((reply, permit)) => {
                    batch.push(reply);
                    permits.push(permit);
                }
                Err(_) => break,
            }
        }
        send_later(&socket, &batch).await;
        batch.clear();
        permits.clear();
    }
}

/// Sends `replies` from the receive thread, a batch at a time, waiting while the socket's send
/// buffer is full. A reply the kernel refuses (say, to an unreachable client) is logged and
/// skipped; the others still go.
fn send_now(socket: &std::net::UdpSocket, replies: &[Reply]) {
    let mut sent = 0;
    while sent < replies.len() {
        let rest = &replies[sent..];
        match mmsg::send(socket.as_fd(), rest, MsgFlags::empty()) {
            Ok(n) => sent += n.max(1),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                debug!(%error, client = %rest[0].origin.client, "UDP send failed");
                sent += 1;
            }
        }
    }
}

/// Sends upstream tasks' replies without blocking the runtime: while the send buffer is full it
/// tries again every [`SEND_RETRY`], at most [`SEND_TRIES`] times, then drops what is left (the
/// clients ask again). A reply the kernel refuses is logged and skipped; the others still go.
async fn send_later(socket: &std::net::UdpSocket, replies: &[Reply]) {
    let mut sent = 0;
    let mut tries = 0;
    while sent < replies.len() {
        let rest = &replies[sent..];
        match mmsg::send(socket.as_fd(), rest, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => {
                sent += n.max(1);
                tries = 0; // replies are leaving: each stall gets its own tries
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tries += 1;
                if tries >= SEND_TRIES {
                    debug!(
                        dropped = rest.len(),
                        "UDP send buffer full; replies dropped"
                    );
                    return;
                }
                tokio::time::sleep(SEND_RETRY).await;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                debug!(%error, client = %rest[0].origin.client, "UDP send failed");
                sent += 1;
            }
        }
    }
}

/// What the receive thread reads into, made once for it.
struct RecvBatch {
    buffers: mmsg::RecvBuffers,
}

impl RecvBatch {
    fn new() -> Self {
        Self {
            buffers: mmsg::RecvBuffers::new(),
        }
    }

    /// One recvmmsg with `flags`: how many datagrams it read; none once `stop` is set.
    ///
    /// After the socket's receiving side is shut, recvmmsg returns at once with one empty
    /// "datagram" whose address the kernel did not write: `stop` is looked at before the
    /// results.
    fn read(
        &mut self,
        socket: &std::net::UdpSocket,
        flags: MsgFlags,
        stop: &AtomicBool,
    ) -> io::Result<usize> {
        let count = self.buffers.recv(socket.as_fd(), flags)?;
        if stop.load(Ordering::Acquire) {
            return Ok(0);
        }
        Ok(count)
    }

    /// Datagram `i` of the last read and where it came from; `None` for one to drop.
    fn get(&self, i: usize) -> Option<(&[u8], Origin)> {
        let (bytes, origin) = self.buffers.get(i);
        Some((bytes, origin?))
    }
}

/// Makes a UDP socket bound to `local` report each datagram's local address (IP_PKTINFO /
/// IPV6_RECVPKTINFO), so that a wildcard socket's replies leave from the address asked.
pub fn enable_pktinfo(socket: &impl AsFd, local: SocketAddr) -> io::Result<()> {
    if local.is_ipv6() {
        setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}
