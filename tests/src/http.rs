//! A minimal HTTP/1.1 client for the status endpoint (and a Prometheus server's API): one GET per
//! connection, from a chosen source address, with a deadline. Bodies must come whole or with a
//! `Content-Length`: chunked ones are not decoded.

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
    let text = String::from_utf8(bytes).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let head = head.to_lowercase();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "{path}: a chunked answer, which this client does not decode"
    );
    Some(Response {
        status,
        head,
        body: body.to_string(),
    })
}
