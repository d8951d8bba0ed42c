//! Upstream transport: one exchange with one server over UDP, TCP, or UDP then TCP when the
//! answer is truncated. Shared by real queries, health probes and `oqsdns check`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use nix::sys::socket::{self, MsgFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use crate::hashing::Keyed;
use crate::wire::{self, ReplyInfo, Request, MAX_MESSAGE};

mod mmsg;

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
                pool.udp(server, query, id, request.question(), deadline)
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

/// Datagrams a used-up socket may hold when it is renewed; more, and it is closed instead.
const DRAIN_MAX: usize = 64;

/// Drops the datagrams queued on the disconnected `socket` (no more can come to it until it is
/// connected again), without waiting; an error pending on it (a refusal) is returned.
fn drain(socket: &UdpSocket) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    // One byte is enough: the rest of a longer datagram is dropped with it.
    let mut byte = [std::mem::MaybeUninit::uninit()];
    for _ in 0..DRAIN_MAX {
        match socket.recv(&mut byte) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many datagrams queued"))
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

/// Queries one pooled socket carries on one port; then it is given a new random port.
pub const POOLED_USES: u8 = 8;
/// Sockets used up and given a new port kept per server, to take over from the one taking its
/// queries: as many as are under way at once at the rate of a busy clinic's bursts (a hundred
/// queries in flight, over a few servers), so that a burst's sockets are made once.
const POOLED_SPARES: usize = 8;
/// Sockets kept per server with no query under way: the one taking the next queries and the
/// spares. (Those under way hold their own, counted with them in the daemon's open files limit.)
pub const POOLED_IDLE: usize = 1 + POOLED_SPARES;

/// Connected UDP sockets to upstream servers. A socket takes the next [`POOLED_USES`] queries to
/// its server, some of them under way at once, each with its own random ID, and when the last of
/// them has ended it is disconnected, which frees its port, and connected again on a new one,
/// chosen at random by the kernel as for a new socket: every port carries at most that many
/// queries in its life, as when a socket carried one query at a time. It then takes the next
/// queries, or waits as a spare for the one taking them to be used up. (A new socket for every
/// eight queries, its creation, registration with the poller, reading task and close, cost a
/// seventh of a cache miss's CPU: docs/PERFORMANCE.md, step 18 of issue 18.) The queries a socket
/// is given in one round of the runtime go out together in one `sendmmsg` (a wave of client
/// queries reaches the runtime at once), and the socket's replies are read by one task, those
/// that came together with one `recvmmsg`. Replies are checked as on a fresh socket: the
/// connected socket drops datagrams from any other address or port, and a datagram that is no
/// waiting query's ID and question (a late reply to an earlier query, a forgery) is ignored. A
/// socket whose query failed or timed out takes no more, and is closed.
#[derive(Debug, Default)]
pub struct SocketPool {
    sockets: Arc<Mutex<Sockets>>,
}

/// Its tables are looked up per query, by the configured servers' addresses (no client chooses
/// them): foldhash, unkeyed, as for the tables of [`crate::hashing`].
#[derive(Debug, Default)]
struct Sockets {
    /// The socket taking each server's next queries.
    open: HashMap<SocketAddr, Arc<Channel>, Keyed>,
    /// Sockets used up, whose queries have all ended, on new ports: the next to take queries.
    spare: HashMap<SocketAddr, Vec<Arc<Channel>>, Keyed>,
    /// The servers of the configuration in force, once one has been given: a used-up socket of
    /// another is closed, not kept.
    servers: Option<Vec<SocketAddr>>,
}

impl Sockets {
    fn keeps(&self, server: SocketAddr) -> bool {
        self.servers.as_ref().is_none_or(|s| s.contains(&server))
    }
}

/// One pooled socket and the task that reads it, which ends when the socket is dropped.
#[derive(Debug)]
struct Channel {
    inner: Arc<Inner>,
    reader: tokio::task::AbortHandle,
    server: SocketAddr,
    /// Where the socket goes back to once used up (not kept alive by it).
    pool: Weak<Mutex<Sockets>>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Debug)]
struct Inner {
    socket: UdpSocket,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Queries given to this socket so far.
    uses: u8,
    /// Takes no more queries: used up, failed, or one of its queries timed out.
    closed: bool,
    /// Failed, or one of its queries timed out: closed when its queries have ended, not given a
    /// new port.
    failed: bool,
    /// Some queries are not sent yet; one of them (the first) sends them all.
    send_due: bool,
    queries: Vec<Query>,
}

#[derive(Debug)]
struct Query {
    /// Its number among the socket's queries.
    token: u8,
    id: u16,
    /// The query as sent, its question at `HEADER_LEN..HEADER_LEN + question_len`.
    bytes: Vec<u8>,
    question_len: usize,
    sent: bool,
    waker: Option<Waker>,
    /// The reply, or the OS error that ended the query.
    outcome: Option<Result<Reply, i32>>,
}

impl Query {
    fn question(&self) -> &[u8] {
        let start = wire::HEADER_LEN.min(self.bytes.len());
        let end = (start + self.question_len).min(self.bytes.len());
        &self.bytes[start..end]
    }
}

/// Wakers gathered under a lock and woken after it, without an allocation: a socket has at most
/// [`POOLED_USES`] queries to wake.
#[derive(Default)]
struct Wakes([Option<Waker>; mmsg::CONNECTED_BATCH]);

impl Wakes {
    fn add(&mut self, waker: Option<Waker>) {
        if let Some(free) = self.0.iter_mut().find(|w| w.is_none()) {
            *free = waker;
        } else if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wake(self) {
        for waker in self.0.into_iter().flatten() {
            waker.wake();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SocketPool {
    /// One UDP exchange with `server` as [`udp`], on a pooled socket. `query` is the query with
    /// ID `id` and question `question`.
    pub async fn udp(
        &self,
        server: SocketAddr,
        query: Vec<u8>,
        id: u16,
        question: &[u8],
        deadline: Instant,
    ) -> Result<Reply, UpstreamError> {
        let mut waiting = self.enter(server, query, id, question.len())?;
        let outcome = timeout_at(deadline, std::future::poll_fn(|cx| waiting.poll(cx))).await;
        if !matches!(outcome, Ok(Ok(_))) {
            self.retire(server, &waiting.channel);
        }
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(code)) => Err(io::Error::from_raw_os_error(code).into()),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// Gives `query` to the socket taking `server`'s queries, a new one when there is none.
    fn enter(
        &self,
        server: SocketAddr,
        mut query: Vec<u8>,
        mut id: u16,
        question_len: usize,
    ) -> io::Result<Waiting> {
        let mut sockets = lock(&self.sockets);
        let Sockets { open, spare, .. } = &mut *sockets;
        let channel = match open.get(&server) {
            Some(channel) if !lock(&channel.inner.state).closed => channel.clone(),
            _ => {
                // A spare is closed only if its reader saw an error since it got its port.
                let spares = spare.get_mut(&server);
                let renewed = spares.and_then(|s| {
                    std::iter::from_fn(|| s.pop()).find(|c| !lock(&c.inner.state).closed)
                });
                let channel = match renewed {
                    Some(channel) => channel,
                    None => Arc::new(Channel::new(server, Arc::downgrade(&self.sockets))?),
                };
                open.insert(server, channel.clone());
                channel
            }
        };
        let mut state = lock(&channel.inner.state);
        // Queries under way on one port have different IDs: each is one (port, ID) pair a
        // forgery has to hit, as on sockets of their own.
        while state.queries.iter().any(|q| q.id == id) && query.len() >= 2 {
            id = rand::random();
            query[..2].copy_from_slice(&id.to_be_bytes());
        }
        let token = state.uses;
        state.uses += 1;
        if state.uses >= POOLED_USES {
            state.closed = true;
            open.remove(&server);
        }
        state.queries.push(Query {
            token,
            id,
            bytes: query,
            question_len,
            sent: false,
            waker: None,
            outcome: None,
        });
        let sender = !state.send_due;
        state.send_due = true;
        drop(state);
        Ok(Waiting {
            channel,
            token,
            sender,
            yielded: false,
        })
    }

    /// `channel` takes no more queries (one of its queries failed or timed out).
    fn retire(&self, server: SocketAddr, channel: &Arc<Channel>) {
        let mut sockets = lock(&self.sockets);
        if sockets
            .open
            .get(&server)
            .is_some_and(|c| Arc::ptr_eq(c, channel))
        {
            sockets.open.remove(&server);
        }
        let mut state = lock(&channel.inner.state);
        state.closed = true;
        state.failed = true;
    }

    /// Keeps sockets to `servers` only (a reload put them in force): the others' idle ones are
    /// closed now, those under way when their last query ends.
    pub fn retain(&self, servers: &[SocketAddr]) {
        let mut sockets = lock(&self.sockets);
        sockets.open.retain(|server, _| servers.contains(server));
        sockets.spare.retain(|server, _| servers.contains(server));
        sockets.servers = Some(servers.to_vec());
    }

    /// The servers the pool keeps a socket to.
    pub fn servers(&self) -> Vec<SocketAddr> {
        let sockets = lock(&self.sockets);
        let mut servers: Vec<_> = sockets.open.keys().chain(sockets.spare.keys()).collect();
        servers.sort();
        servers.dedup();
        servers.into_iter().copied().collect()
    }

    /// Sockets in the pool with no query under way.
    pub fn idle(&self) -> usize {
        let sockets = lock(&self.sockets);
        sockets
            .open
            .values()
            .chain(sockets.spare.values().flatten())
            .filter(|c| lock(&c.inner.state).queries.is_empty())
            .count()
    }
}

impl Channel {
    fn new(server: SocketAddr, pool: Weak<Mutex<Sockets>>) -> io::Result<Self> {
        let inner = Arc::new(Inner {
            socket: connected(server)?,
            state: Mutex::new(State {
                uses: 0,
                closed: false,
                failed: false,
                send_due: false,
                queries: Vec::with_capacity(POOLED_USES.into()),
            }),
        });
        let reader = tokio::spawn(read_replies(inner.clone())).abort_handle();
        Ok(Self {
            inner,
            reader,
            server,
            pool,
        })
    }

    /// Gives this socket, used up and with no query left, a new random port and back to the
    /// pool: to take the next queries if no socket does, else as a spare (unless there are
    /// [`POOLED_SPARES`] already; then it is closed). Datagrams that came to its old port (late
    /// replies, forgeries) are dropped with it, as a closed socket drops them. Called once, by the
    /// drop of its last query.
    fn renew(self: &Arc<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return; // the pool is gone
        };
        let socket = &self.inner.socket;
        let renewed = mmsg::disconnect(socket.as_fd())
            .and_then(|()| drain(socket))
            .and_then(|()| socket2::SockRef::from(socket).connect(&self.server.into()));
        if let Err(error) = renewed {
            tracing::debug!(%error, server = %self.server, "upstream socket not given a new port; closed");
            return;
        }
        {
            let mut state = lock(&self.inner.state);
            if state.failed {
                return; // its reader saw an error meanwhile
            }
            state.uses = 0;
            state.closed = false;
            state.send_due = false;
        }
        let mut sockets = lock(&pool);
        if !sockets.keeps(self.server) {
            return; // no longer configured
        }
        let Sockets { open, spare, .. } = &mut *sockets;
        match open.get(&self.server) {
            Some(taking) if !lock(&taking.inner.state).closed => {
                let spares = spare.entry(self.server).or_default();
                if spares.len() < POOLED_SPARES {
                    spares.push(self.clone());
                }
            }
            _ => {
                open.insert(self.server, self.clone());
            }
        }
    }
}

/// One query given to a pooled socket, until it ends (its place on the socket is given up when
/// it is dropped).
struct Waiting {
    channel: Arc<Channel>,
    token: u8,
    /// This query sends the socket's queries not sent yet, its own among them.
    sender: bool,
    yielded: bool,
}

impl Waiting {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Reply, i32>> {
        let inner = &self.channel.inner;
        if self.sender {
            if !self.yielded {
                // Once round for the other queries the runtime has to start: those given to this
                // socket meanwhile go out with this one.
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.sender = false;
            let mut wakes = Wakes::default();
            lock(&inner.state).send(&inner.socket, &mut wakes);
            wakes.wake();
        }
        let mut state = lock(&inner.state);
        let Some(query) = state.queries.iter_mut().find(|q| q.token == self.token) else {
            return Poll::Ready(Err(nix::libc::EIO));
        };
        if let Some(outcome) = query.outcome.take() {
            return Poll::Ready(outcome);
        }
        if !query
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            query.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let inner = &self.channel.inner;
        let mut state = lock(&inner.state);
        if let Some(at) = state.queries.iter().position(|q| q.token == self.token) {
            state.queries.swap_remove(at);
        }
        let mut wakes = Wakes::default();
        if self.sender {
            // Gone before it sent the others: they go now.
            state.send(&inner.socket, &mut wakes);
        }
        // The last query of a socket used up: no other can come to it.
        let used_up = state.queries.is_empty() && state.uses >= POOLED_USES && !state.failed;
        drop(state);
        wakes.wake();
        if used_up {
            self.channel.renew();
        }
    }
}

impl State {
    /// Sends the queries not sent yet. An error fails the socket: every query on it ends with
    /// it (woken by `wakes`), those already sent too, since the kernel reports a socket's
    /// pending error (the ICMP refusal of a query sent earlier) once, on whichever call comes
    /// next, and the read that would have reported it to them then finds nothing.
    fn send(&mut self, socket: &UdpSocket, wakes: &mut Wakes) {
        self.send_due = false;
        loop {
            let mut datagrams: [&[u8]; mmsg::CONNECTED_BATCH] = [&[]; mmsg::CONNECTED_BATCH];
            let mut n = 0;
            let unsent = self
                .queries
                .iter()
                .filter(|q| !q.sent && q.outcome.is_none());
            for (slot, query) in datagrams.iter_mut().zip(unsent) {
                *slot = &query.bytes;
                n += 1;
            }
            if n == 0 {
                return;
            }
            let sent = match mmsg::send_connected(socket.as_fd(), &datagrams[..n]) {
                Ok(sent) => sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(e.raw_os_error().unwrap_or(nix::libc::EIO), wakes),
            };
            self.queries
                .iter_mut()
                .filter(|q| !q.sent && q.outcome.is_none())
                .take(sent)
                .for_each(|q| q.sent = true);
        }
    }

    /// Every query still waiting ends with `code`, and the socket takes no more.
    fn fail(&mut self, code: i32, wakes: &mut Wakes) {
        self.closed = true;
        self.failed = true;
        for query in self.queries.iter_mut().filter(|q| q.outcome.is_none()) {
            query.outcome = Some(Err(code));
            wakes.add(query.waker.take());
        }
    }

    /// Queries sent and not answered yet.
    fn waiting(&self) -> usize {
        self.queries
            .iter()
            .filter(|q| q.sent && q.outcome.is_none())
            .count()
    }

    /// Gives `bytes` to the waiting query it answers, if any.
    fn deliver(&mut self, bytes: &[u8], wakes: &mut Wakes) {
        for query in self
            .queries
            .iter_mut()
            .filter(|q| q.sent && q.outcome.is_none())
        {
            if let Ok(info) = wire::check_reply(bytes, query.id, query.question()) {
                query.outcome = Some(Ok(Reply {
                    bytes: bytes.to_vec(),
                    info,
                    transport: Transport::Udp,
                }));
                wakes.add(query.waker.take());
                return;
            }
        }
    }
}

thread_local! {
    /// The buffers replies are read into, one set per thread (the read never waits): a socket's
    /// reader keeps none between its reads.
    static REPLY_BUFFERS: std::cell::RefCell<Box<[[u8; mmsg::REPLY_MAX]; mmsg::CONNECTED_BATCH]>> =
        std::cell::RefCell::new(Box::new([[0; mmsg::REPLY_MAX]; mmsg::CONNECTED_BATCH]));
}

/// Reads a pooled socket's replies and wakes the queries they answer, until the socket fails
/// (an ICMP port unreachable on the connected socket raises ERROR, and the read reports it:
/// every query on it then fails at once instead of at its timeout) or is dropped.
async fn read_replies(inner: Arc<Inner>) {
    loop {
        let ready = match inner.socket.ready(REPLY).await {
            Ok(ready) => ready,
            Err(e) => {
                let mut wakes = Wakes::default();
                lock(&inner.state).fail(e.raw_os_error().unwrap_or(nix::libc::EIO), &mut wakes);
                return wakes.wake();
            }
        };
        // The read is made under the one interest that is ready (tokio's `try_io` knows no
        // combination of interests).
        let error = ready.is_error();
        let interest = if error {
            Interest::ERROR
        } else {
            Interest::READABLE
        };
        let mut wakes = Wakes::default();
        let read = inner
            .socket
            .try_io(interest, || read_queued(&inner, error, &mut wakes));
        match read {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                lock(&inner.state).fail(e.raw_os_error().unwrap_or(nix::libc::EIO), &mut wakes);
                return wakes.wake();
            }
            _ => wakes.wake(),
        }
    }
}

/// Reads the datagrams queued on the socket, as many as queries wait (at least one), and gives
/// each to the query it answers. Then readiness is cleared (WouldBlock) when the queue was
/// found empty, or when no query waits any more, as a read that found nothing would clear it:
/// a later datagram raises it again, and one already queued (a duplicate) is read with the next
/// query's reply. After ERROR, readiness is kept until the read reports the error itself.
fn read_queued(inner: &Inner, error: bool, wakes: &mut Wakes) -> io::Result<()> {
    let want = lock(&inner.state).waiting();
    REPLY_BUFFERS.with_borrow_mut(|buffers| {
        let (lens, read) = mmsg::recv_connected(inner.socket.as_fd(), buffers, want)?;
        let mut state = lock(&inner.state);
        for (buffer, &len) in buffers.iter().zip(&lens[..read]) {
            state.deliver(&buffer[..len], wakes);
        }
        if !error && (read < want.max(1) || state.waiting() == 0) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    })
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

    /// A query for `name` (one label) with ID `id`, and its question.
    fn query_for(name: &str, id: u16) -> (Vec<u8>, Vec<u8>) {
        let mut question = vec![name.len() as u8];
        question.extend_from_slice(name.as_bytes());
        question.extend_from_slice(&[0, 0, 16, 0, 1]); // TXT, IN
        let mut query = id.to_be_bytes().to_vec();
        query.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        query.extend_from_slice(&question);
        (query, question)
    }

    /// The reply to `query` (its header and question; no records), with `marker` as its
    /// authority count so a test can tell replies apart.
    fn reply_to(query: &[u8], marker: u8) -> Vec<u8> {
        let mut reply = query.to_vec();
        reply[2] |= 0x80;
        reply[9] = marker;
        reply
    }

    #[tokio::test]
    async fn queries_started_together_share_a_socket_and_each_gets_its_own_reply() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let pool = SocketPool::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let names = ["a", "b", "c", "d", "e"];
        let asks = names.iter().enumerate().map(|(i, name)| {
            let (query, question) = query_for(name, 100 + i as u16);
            let pool = &pool;
            async move {
                pool.udp(addr, query, 100 + i as u16, &question, deadline)
                    .await
            }
        });
        let answer = async {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while got.len() < names.len() {
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                got.push((buf[..len].to_vec(), from));
            }
            let ports: std::collections::HashSet<u16> = got.iter().map(|(_, f)| f.port()).collect();
            assert_eq!(ports.len(), 1, "one socket for the five: {ports:?}");
            // A forgery first (another question under a waiting ID), then the replies in
            // reverse order.
            let (forged, _) = query_for("zz", 100);
            server
                .send_to(&reply_to(&forged, 9), got[0].1)
                .await
                .unwrap();
            for (i, (query, from)) in got.iter().enumerate().rev() {
                server
                    .send_to(&reply_to(query, i as u8), from)
                    .await
                    .unwrap();
            }
        };
        let (replies, ()) = tokio::join!(futures_util::future::join_all(asks), answer);
        for (i, reply) in replies.into_iter().enumerate() {
            let reply = reply.unwrap();
            assert_eq!(&reply.bytes[0..2], &(100 + i as u16).to_be_bytes());
            assert_eq!(reply.bytes[9], i as u8, "query {i} got its own reply");
        }
        assert_eq!(pool.idle(), 1, "the socket is kept for the next queries");
    }

    #[tokio::test]
    async fn a_socket_carries_at_most_pooled_uses_queries() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pool = SocketPool::default();
        let ports = burst(&pool, &server, 3 * u16::from(POOLED_USES) + 1).await;
        assert_eq!(ports.len(), 4, "{ports:?}");
        assert!(
            ports.values().all(|&q| q <= usize::from(POOLED_USES)),
            "{ports:?}"
        );
    }

    /// Asks `n` questions at once through `pool` and answers each from `server`: how many came
    /// from each local port.
    async fn burst(
        pool: &SocketPool,
        server: &tokio::net::UdpSocket,
        n: u16,
    ) -> std::collections::HashMap<u16, usize> {
        let addr = server.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let asks = (0..n).map(|i| {
            let (query, question) = query_for(&format!("n{i}"), i);
            async move { pool.udp(addr, query, i, &question, deadline).await }
        });
        let answer = async {
            let mut ports = std::collections::HashMap::<u16, usize>::new();
            let mut buf = [0u8; 512];
            for _ in 0..n {
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                *ports.entry(from.port()).or_default() += 1;
                server
                    .send_to(&reply_to(&buf[..len], 0), from)
                    .await
                    .unwrap();
            }
            ports
        };
        let (replies, ports) = tokio::join!(futures_util::future::join_all(asks), answer);
        assert!(replies.iter().all(Result::is_ok), "{replies:?}");
        ports
    }

    /// The sockets `pool` keeps for `server`: the one taking its queries, then the spares.
    fn kept(pool: &SocketPool, server: SocketAddr) -> Vec<Arc<Channel>> {
        let sockets = lock(&pool.sockets);
        let open = sockets.open.get(&server).into_iter();
        open.chain(sockets.spare.get(&server).into_iter().flatten())
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn a_used_up_socket_takes_the_next_queries_on_a_new_port() {
        // IPv4 and IPv6 (the NW-base servers' family): the disconnect is the same call for both.
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let server = tokio::net::UdpSocket::bind(local).await.unwrap();
            let addr = server.local_addr().unwrap();
            let pool = SocketPool::default();
            let mut first: Option<Arc<Channel>> = None;
            let mut ports = Vec::new();
            for _ in 0..2 * POOLED_USES {
                let used = burst(&pool, &server, 1).await;
                ports.extend(used.into_keys());
                let sockets = kept(&pool, addr);
                assert_eq!(
                    sockets.len(),
                    1,
                    "{local}: one socket, taking the next query"
                );
                let first = first.get_or_insert_with(|| sockets[0].clone());
                assert!(Arc::ptr_eq(first, &sockets[0]), "{local}: the same socket");
            }
            let (before, after) = ports.split_at(POOLED_USES.into());
            assert!(before.iter().all(|&p| p == before[0]), "{local}: {ports:?}");
            assert!(after.iter().all(|&p| p == after[0]), "{local}: {ports:?}");
            // (The kernel picks the new port at random: the old one again, once in 28,000 runs.)
            assert_ne!(
                before[0], after[0],
                "{local}: a new port after {POOLED_USES} queries"
            );
            assert_eq!(pool.idle(), 1);
        }
    }

    #[tokio::test]
    async fn the_sockets_of_a_burst_take_the_next_burst_each_on_a_new_port() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let pool = SocketPool::default();
        let n = 3 * u16::from(POOLED_USES) + 1;
        let first = burst(&pool, &server, n).await;
        assert_eq!(first.len(), 4, "{first:?}");
        // The three used up are spares, the fourth takes the next queries.
        let sockets = kept(&pool, addr);
        assert_eq!(sockets.len(), 4);
        assert_eq!(pool.idle(), 4);
        let second = burst(&pool, &server, n).await;
        // The fourth's seven queries left, then the spares: no socket made.
        assert!(
            kept(&pool, addr)
                .iter()
                .all(|c| sockets.iter().any(|k| Arc::ptr_eq(c, k))),
            "no new socket"
        );
        assert!(
            second.values().all(|&q| q <= usize::from(POOLED_USES)),
            "{second:?}"
        );
        // Every port of the second burst but the fourth socket's is new.
        let reused: Vec<_> = second.keys().filter(|p| first.contains_key(p)).collect();
        assert!(reused.len() <= 1, "{first:?} {second:?}");
    }

    #[tokio::test]
    async fn a_used_up_socket_one_of_whose_queries_timed_out_is_closed_not_renewed() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let pool = SocketPool::default();
        let deadline = Instant::now() + Duration::from_millis(300);
        let n = u16::from(POOLED_USES);
        let asks = (0..n).map(|i| {
            let (query, question) = query_for(&format!("n{i}"), i);
            let pool = &pool;
            async move { pool.udp(addr, query, i, &question, deadline).await }
        });
        // All but the last answered.
        let answer = async {
            let mut buf = [0u8; 512];
            for i in 0..n {
                let (len, from) = server.recv_from(&mut buf).await.unwrap();
                if i + 1 < n {
                    let reply = reply_to(&buf[..len], 0);
                    server.send_to(&reply, from).await.unwrap();
                }
            }
        };
        let (replies, ()) = tokio::join!(futures_util::future::join_all(asks), answer);
        let timed_out = replies
            .iter()
            .filter(|r| matches!(r, Err(UpstreamError::Timeout)))
            .count();
        assert_eq!(timed_out, 1, "{replies:?}");
        assert!(kept(&pool, addr).is_empty());
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_server_no_longer_configured_keeps_no_socket() {
        let (gone, stays) = (
            tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        );
        let (gone_addr, stays_addr) = (gone.local_addr().unwrap(), stays.local_addr().unwrap());
        let pool = SocketPool::default();
        let n = 2 * u16::from(POOLED_USES) + 1;
        burst(&pool, &gone, n).await;
        burst(&pool, &stays, n).await;
        assert_eq!(kept(&pool, gone_addr).len(), 3);
        // A socket under way when the reload comes: POOLED_USES queries, answered after it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let asks = (0..u16::from(POOLED_USES)).map(|i| {
            let (query, question) = query_for(&format!("u{i}"), i);
            let pool = &pool;
            async move { pool.udp(gone_addr, query, i, &question, deadline).await }
        });
        let under_way = futures_util::future::join_all(asks);
        let answer = async {
            let mut buf = [0u8; 512];
            let mut asked = Vec::new();
            for _ in 0..POOLED_USES {
                let (len, from) = gone.recv_from(&mut buf).await.unwrap();
                asked.push((reply_to(&buf[..len], 0), from));
            }
            pool.retain(&[stays_addr]);
            assert!(kept(&pool, gone_addr).is_empty(), "the idle ones closed");
            for (reply, from) in asked {
                gone.send_to(&reply, from).await.unwrap();
            }
        };
        let (replies, ()) = tokio::join!(under_way, answer);
        assert!(replies.iter().all(Result::is_ok), "{replies:?}");
        assert!(kept(&pool, gone_addr).is_empty(), "nor the one under way");
        assert_eq!(kept(&pool, stays_addr).len(), 3);
    }

    #[tokio::test]
    async fn a_renewed_socket_drops_what_came_to_its_old_port() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let client = connected(addr).unwrap();
        let old = client.local_addr().unwrap();
        for stale in 0..3u8 {
            server.send_to(&[stale], old).await.unwrap();
        }
        let wait = Duration::from_secs(10);
        tokio::time::timeout(wait, client.readable())
            .await
            .unwrap()
            .unwrap();
        mmsg::disconnect(client.as_fd()).unwrap();
        drain(&client).unwrap();
        socket2::SockRef::from(&client)
            .connect(&addr.into())
            .unwrap();
        let new = client.local_addr().unwrap();
        server.send_to(b"new", new).await.unwrap();
        let mut buf = [0u8; 16];
        let len = tokio::time::timeout(wait, client.recv(&mut buf)).await;
        assert_eq!(&buf[..len.unwrap().unwrap()], b"new");
    }

    #[tokio::test]
    async fn a_refusal_ends_every_query_waiting_on_the_socket_at_once() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = closed.local_addr().unwrap();
        drop(closed);
        // One, two or three queries sent together: the refusal of the first can come back on
        // the send of the second (the kernel reports a socket's error once, on whichever call
        // comes next), and every query ends with it all the same.
        for n in 1..=3u16 {
            let pool = SocketPool::default();
            let deadline = Instant::now() + Duration::from_secs(30);
            let asks = (0..n).map(|i| {
                let (query, question) = query_for("x", i);
                let pool = &pool;
                async move { pool.udp(server, query, i, &question, deadline).await }
            });
            let started = Instant::now();
            for outcome in futures_util::future::join_all(asks).await {
                match outcome {
                    Err(UpstreamError::Io(e)) => {
                        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused)
                    }
                    other => panic!("{n} queries: expected the refusal, got {other:?}"),
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{n} queries: not at the timeout"
            );
            assert_eq!(pool.idle(), 0, "the failed socket is not kept");
        }
    }

    #[tokio::test]
    async fn a_refusal_reported_on_a_later_query_s_send_ends_the_earlier_one_too() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = closed.local_addr().unwrap();
        drop(closed);
        let pool = SocketPool::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (query, question) = query_for("a", 1);
        let first = pool.udp(server, query, 1, &question, deadline);
        let (query, question) = query_for("b", 2);
        let second = pool.udp(server, query, 2, &question, deadline);
        tokio::pin!(first, second);
        // Polled by hand, so that the socket's reader does not run in between: the first query
        // is sent (its first poll yields for others to join), and the kernel holds its refusal
        // for the socket's next call, which is the second query's send.
        for _ in 0..2 {
            assert!(futures_util::poll!(first.as_mut()).is_pending());
        }
        let started = Instant::now();
        let (first, second) = tokio::join!(first, second);
        for outcome in [first, second] {
            match outcome {
                Err(UpstreamError::Io(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused)
                }
                other => panic!("expected the refusal, got {other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not at the timeout"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_the_query_out_and_its_socket_takes_no_more() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let pool = SocketPool::default();
        let (query, question) = query_for("x", 7);
        let deadline = Instant::now() + Duration::from_millis(200);
        let outcome = pool.udp(addr, query, 7, &question, deadline).await;
        assert!(
            matches!(outcome, Err(UpstreamError::Timeout)),
            "{outcome:?}"
        );
        let mut buf = [0u8; 512];
        let (_, first) = server.recv_from(&mut buf).await.unwrap();
        let (query, question) = query_for("y", 8);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ask = pool.udp(addr, query, 8, &question, deadline);
        let answer = async {
            let (len, from) = server.recv_from(&mut buf).await.unwrap();
            server
                .send_to(&reply_to(&buf[..len], 0), from)
                .await
                .unwrap();
            from
        };
        let (reply, second) = tokio::join!(ask, answer);
        assert!(reply.is_ok());
        assert_ne!(
            first.port(),
            second.port(),
            "a new socket after the timeout"
        );
    }
}
