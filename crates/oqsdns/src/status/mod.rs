//! The HTTP status endpoint (`[status] listen`): the status page (`/`, `/en`), its JSON
//! (`/health`, 200 when all is well, 503 when not) and Prometheus counters (`/metrics`, in
//! OpenMetrics or the text format 0.0.4 as the client's `Accept` asks), for the clients
//! `server.allow` lets in; others get 403.
//!
//! HTTP/1 with hyper, bounded: a cap on open connections (past it new ones are closed at once),
//! one request per connection, its head within [`READ_TIMEOUT`] and [`MAX_REQUEST`] bytes, the
//! whole connection within [`CONNECTION_TIMEOUT`].

pub mod page;
pub mod prom;
pub mod view;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::Daemon;
use page::Lang;
use prom::{Exporter, Format};

/// Time for a client to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open in all.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read (hyper's smallest buffer); a request body is never read.
pub const MAX_REQUEST: usize = 8192;

/// Opens the endpoint's TCP socket on `addr`. A LAN address may be bound before it exists
/// (FREEBIND), as the DNS listeners are; port 0 takes a free port.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    let _ = if addr.is_ipv6() {
        socket.set_freebind_v6(true)
    } else {
        socket.set_freebind_v4(true)
    };
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    Ok(socket.into())
}

/// Serves the endpoint on `listener` until `shutdown`, with at most `connections` open at once.
pub async fn serve(
    listener: std::net::TcpListener,
    daemon: Arc<Daemon>,
    connections: usize,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    info!(addr = %listener.local_addr()?, "status page on http://{}/", listener.local_addr()?);
    let exporter = Arc::new(Exporter::new(daemon.clone()));
    let open = Arc::new(Semaphore::new(connections));
    let tasks = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "status accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            debug!(client = %peer, "status connection limit reached; closing");
            continue;
        };
        let allowed = daemon.runtime().allows(peer.ip());
        let (daemon, exporter, shutdown) = (daemon.clone(), exporter.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&daemon, &exporter, allowed, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => {}
            }
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The page loads nothing and runs nothing: its only style is inline.
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
}

/// The answer to one request.
fn respond(
    daemon: &Daemon,
    exporter: &Exporter,
    allowed: bool,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if !allowed {
        return response(
            StatusCode::FORBIDDEN,
            TEXT,
            "forbidden: not in server.allow\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    let english = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "lang=en"));
    match request.uri().path() {
        "/" | "/en" => {
            let lang = if english || request.uri().path() == "/en" {
                Lang::En
            } else {
                Lang::Ja
            };
            let body = page::render(&view::status(daemon), lang);
            response(StatusCode::OK, "text/html; charset=utf-8", body)
        }
        "/health" => {
            let status = view::status(daemon);
            let code = if status.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut body = serde_json::to_string_pretty(&status).expect("the status serializes");
            body.push('\n');
            response(code, "application/json", body)
        }
        "/metrics" => {
            let accept = request.headers().get_all(ACCEPT);
            let format = Format::negotiate(accept.iter().filter_map(|v| v.to_str().ok()));
            response(
                StatusCode::OK,
                format.content_type(),
                exporter.render(format),
            )
        }
        _ => response(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /, /health or /metrics\n".into(),
        ),
    }
}
