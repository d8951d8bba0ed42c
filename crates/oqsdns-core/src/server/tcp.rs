//! The TCP listener (RFC 7766): length-framed queries, several per connection, each answered as
//! soon as it completes; caps on connections in all and per client, an idle timeout between
//! queries, a bound on the time to read one query, and a bound on the answers one connection may
//! have outstanding.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::handler::{Handler, Step};
use crate::ratelimit::{RateLimiter, Verdict, LOG_INTERVAL};
use crate::throttle::Throttle;
use crate::upstream::Transport;

/// Queries one connection may have in flight before the daemon stops reading from it.
const PIPELINE: usize = 32;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Open client connections; a new one past this is closed at once.
    pub max_connections: usize,
    /// Open connections of one client address; its new one past this is closed at once.
    pub per_client: usize,
    /// A connection with no query begun for this long is closed; also bounds a stalled write.
    pub idle_timeout: Duration,
    /// Once a query's first byte has arrived, the rest must arrive within this time.
    pub frame_timeout: Duration,
}

/// Accepts connections on `listener` until `shutdown`; then waits for open connections to end.
/// Every query counts against its client's budget in `limiter`.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: TcpLimits,
    limiter: Arc<RateLimiter>,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(OpenPerClient::default());
    let capped = Throttle::new(LOG_INTERVAL);
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(%error, "TCP accept failed");
                // Out of descriptors or similar: give the system a moment instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            debug!(client = %peer, "TCP connection limit reached; closing");
            continue;
        };
        let Some(client_slot) = per_client.open(peer.ip(), limits.per_client) else {
            if capped.ready() {
                warn!(
                    client = %peer.ip(),
                    cap = limits.per_client,
                    "client {} holds its share of {} TCP connections; closing its new ones", peer.ip(), limits.per_client
                );
            }
            continue;
        };
        let (handler, limiter, shutdown) = (handler.clone(), limiter.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _slots = (slot, client_slot);
            connection(stream, peer, handler, limiter, limits, shutdown).await;
        });
    }
    // The port is given back at once (a listener of an address that left its interface is
    // stopped alone); the open connections finish on their own.
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// Open connections per client address. An entry lives while its client has a connection open,
/// so the map never holds more entries than the listener has connections.
#[derive(Debug, Default)]
struct OpenPerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of `client`, counted until dropped.
#[derive(Debug)]
struct ClientSlot {
    table: Arc<OpenPerClient>,
    client: IpAddr,
}

impl OpenPerClient {
    /// Counts a connection of `client` unless it already holds `cap`.
    fn open(self: &Arc<Self>, client: IpAddr, cap: usize) -> Option<ClientSlot> {
        let client = client.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            table: self.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    limiter: Arc<RateLimiter>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(PIPELINE);
    let client = Client {
        peer,
        handler,
        limiter,
    };
    tokio::join!(
        read_queries(BufReader::new(reader), client, limits, shutdown, tx),
        write_answers(writer, rx, limits.idle_timeout)
    );
}

/// Who is asking and who answers, for one connection.
#[derive(Debug)]
struct Client {
    peer: SocketAddr,
    handler: Arc<Handler>,
    limiter: Arc<RateLimiter>,
}

async fn read_queries(
    mut reader: BufReader<OwnedReadHalf>,
    client: Client,
    limits: TcpLimits,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let Client {
        peer,
        handler,
        limiter,
    } = client;
    let pipeline = Arc::new(Semaphore::new(PIPELINE));
    loop {
        let frame = tokio::select! {
            () = shutdown.cancelled() => return,
            frame = read_frame(&mut reader, limits) => frame,
        };
        let Some(query) = frame else { return };
        let now = Instant::now();
        match limiter.check(peer.ip(), now) {
            Verdict::Admit => {}
            Verdict::Refuse => {
                if let Some(reply) = handler.refuse(&query) {
                    let _ = tx.send(reply).await;
                }
                continue;
            }
            // Past the refusals a TCP client is not answered but let go: it frees its slot.
            Verdict::Drop => return,
        }
        let Ok(turn) = pipeline.clone().acquire_owned().await else {
            return;
        };
        // Local and cached answers are written from here; only upstream queries cost a task.
        let parsed = match handler.handle_now(&query, peer, Transport::Tcp, now) {
            Step::Done(Some(reply)) => {
                drop(turn);
                let _ = tx.send(reply).await;
                continue;
            }
            Step::Done(None) => continue,
            Step::Upstream(parsed) => parsed,
        };
        let Some(permit) = handler.admit() else {
            if let Some(reply) = handler.refuse(&query) {
                let _ = tx.send(reply).await;
            }
            continue;
        };
        let (handler, tx) = (handler.clone(), tx.clone());
        tokio::spawn(async move {
            let _held = (permit, turn);
            if let Some(reply) = handler.forward(&query, parsed, peer, Transport::Tcp).await {
                let _ = tx.send(reply).await;
            }
        });
    }
}

/// Reads one length-prefixed query: the first byte may take up to the idle timeout, the rest up to
/// the frame timeout, so a client trickling bytes cannot hold the connection. `None` when the
/// connection ends, fails or is too slow.
async fn read_frame(reader: &mut BufReader<OwnedReadHalf>, limits: TcpLimits) -> Option<Vec<u8>> {
    let first = timeout(limits.idle_timeout, reader.read_u8())
        .await
        .ok()?
        .ok()?;
    timeout(limits.frame_timeout, async {
        let second = reader.read_u8().await?;
        let mut query = vec![0u8; usize::from(u16::from_be_bytes([first, second]))];
        reader.read_exact(&mut query).await?;
        Ok::<_, std::io::Error>(query)
    })
    .await
    .ok()?
    .ok()
}

/// Writes answers in the order they complete; ends when every sender is gone or a write stalls.
async fn write_answers(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    idle: Duration,
) {
    while let Some(answer) = rx.recv().await {
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        framed.extend_from_slice(&answer);
        if !matches!(timeout(idle, writer.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
