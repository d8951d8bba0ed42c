//! The TCP listener (RFC 7766): length-framed queries, several per connection, each answered as
//! soon as it completes; a cap on connections, an idle timeout, and a bound on the answers one
//! connection may have outstanding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::handler::Handler;
use crate::upstream::Transport;

/// Queries one connection may have in flight before the daemon stops reading from it.
const PIPELINE: usize = 32;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Open client connections; a new one past this is closed at once.
    pub max_connections: usize,
    /// A connection with no complete query for this long is closed; also bounds a stalled write.
    pub idle_timeout: Duration,
}

/// Accepts connections on `listener` until `shutdown`; then waits for open connections to end.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
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
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _slot = slot;
            connection(stream, peer, handler, limits.idle_timeout, shutdown).await;
        });
    }
    tasks.close();
    tasks.wait().await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(PIPELINE);
    tokio::join!(
        read_queries(reader, peer, handler, idle, shutdown, tx),
        write_answers(writer, rx, idle)
    );
}

async fn read_queries(
    mut reader: OwnedReadHalf,
    peer: SocketAddr,
    handler: Arc<Handler>,
    idle: Duration,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let pipeline = Arc::new(Semaphore::new(PIPELINE));
    loop {
        let frame = tokio::select! {
            () = shutdown.cancelled() => return,
            frame = timeout(idle, read_frame(&mut reader)) => frame,
        };
        let Ok(Ok(query)) = frame else { return };
        let Ok(turn) = pipeline.clone().acquire_owned().await else {
            return;
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
            if let Some(reply) = handler.handle(&query, peer, Transport::Tcp).await {
                let _ = tx.send(reply).await;
            }
        });
    }
}

async fn read_frame(reader: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = reader.read_u16().await? as usize;
    let mut query = vec![0u8; len];
    reader.read_exact(&mut query).await?;
    Ok(query)
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
