//! A minimal HTTP/1.1 client for the status endpoint (and a Prometheus server's API): one GET per
//! connection, from a chosen source address, with a deadline; a chunked body is decoded.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::timeout;

use crate::client::WAIT;

/// A response: status code, head (lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header lines, lower-cased.
    pub head: String,
    /// The body.
    pub body: String,
}

/// GETs `path` from `server`, connecting from 127.0.0.1 or ::1.
pub async fn get(server: SocketAddr, path: &str) -> Response {
    get_with(server, path, &[]).await
}

/// GETs `path` from `server` with extra request `headers` (name, value), connecting from
/// 127.0.0.1 or ::1.
pub async fn get_with(server: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let source: IpAddr = if server.is_ipv4() {
        "127.0.0.1".parse().unwrap()
    } else {
        "::1".parse().unwrap()
    };
    request(source, server, path, headers)
        .await
        .expect("an HTTP response")
}

/// GETs `path` from `server`, connecting from `source`; `None` when the connection is closed
/// without a response.
pub async fn get_from(source: IpAddr, server: SocketAddr, path: &str) -> Option<Response> {
    request(source, server, path, &[]).await
}

async fn request(
    source: IpAddr,
    server: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<Response> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = timeout(WAIT, socket.connect(server)).await.ok()?.ok()?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut bytes = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut bytes))
        .await
        .ok()?
        .ok()?;
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(bytes[..split].to_vec()).expect("a UTF-8 head");
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let head = head.to_lowercase();
    let mut body = bytes.split_off(split + 4);
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    let body = String::from_utf8(body).expect("a UTF-8 body");
    Some(Response { status, head, body })
}

/// The body of a chunked transfer (a Prometheus answer of some size is sent so).
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        let chunk = rest.get(line + 2..line + 2 + size)?;
        body.extend_from_slice(chunk);
        rest = rest.get(line + 2 + size..)?.strip_prefix(b"\r\n")?;
    }
}
