//! Listening sockets, opened with socket2: IPv6 sockets are IPv6-only so `[::]:53` and
//! `0.0.0.0:53` bind side by side, and addresses may be bound before they exist (FREEBIND), so the
//! daemon can start at boot before the line's IPv6 prefix arrives.

use std::io;
use std::net::SocketAddr;

mod follow;

pub use follow::{address_events, would_bind, AutoListen, Events, Follower, RESCAN};

use oqsdns_core::server::enable_pktinfo;
use socket2::{Domain, Protocol, Socket, Type};

/// The sockets of one listen address.
#[derive(Debug)]
pub struct Listener {
    /// The address as bound (the port filled in when 0 was asked).
    pub addr: SocketAddr,
    /// The UDP socket.
    pub udp: std::net::UdpSocket,
    /// The TCP listener.
    pub tcp: std::net::TcpListener,
}

/// Why a listen address could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({transport}): {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// "udp" or "tcp".
    pub transport: &'static str,
    /// What the OS said.
    pub source: io::Error,
}

/// Opens UDP and TCP on every address. With port 0, TCP takes the port UDP was given.
pub fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<Listener>, BindError> {
    addrs.iter().map(|&addr| bind(addr)).collect()
}

/// Opens UDP and TCP on `addr`. With port 0, TCP takes the port UDP was given.
pub fn bind(addr: SocketAddr) -> Result<Listener, BindError> {
    let err = |transport| {
        move |source| BindError {
            addr,
            transport,
            source,
        }
    };
    let udp = socket(addr, Type::DGRAM, Protocol::UDP).map_err(err("udp"))?;
    if addr.ip().is_unspecified() {
        // A wildcard socket learns each query's local address, so that its reply leaves from
        // it: set before the daemon says it is ready, not when the listener starts.
        enable_pktinfo(&udp, addr).map_err(err("udp"))?;
    }
    let bound = udp
        .local_addr()
        .and_then(|a| a.as_socket().ok_or(io::ErrorKind::InvalidData.into()));
    let bound = bound.map_err(err("udp"))?;
    let tcp = socket(bound, Type::STREAM, Protocol::TCP).map_err(err("tcp"))?;
    tcp.listen(1024).map_err(err("tcp"))?;
    Ok(Listener {
        addr: bound,
        udp: udp.into(),
        tcp: tcp.into(),
    })
}

fn socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if kind == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    set_freebind(&socket, addr);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_freebind(socket: &Socket, addr: SocketAddr) {
    let _ = if addr.is_ipv6() {
        socket.set_freebind_v6(true)
    } else {
        socket.set_freebind_v4(true)
    };
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_freebind(_: &Socket, _: SocketAddr) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documentation addresses are on no interface here: only FREEBIND lets them bind, as the
    /// line's IPv6 prefix at boot.
    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn addresses_not_yet_on_the_host_can_be_bound() {
        let addrs = [
            "192.0.2.55:0".parse().unwrap(),
            "[2001:db8::55]:0".parse().unwrap(),
        ];
        let listeners = bind_all(&addrs).expect("FREEBIND binds absent addresses");
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[1].addr.ip(), addrs[1].ip());
        assert_ne!(listeners[0].addr.port(), 0);
    }

    /// Loopback is served whatever `interfaces` names; an interface not on the host gives nothing
    /// more, and an address written out in `listen` is left to its own listener.
    #[test]
    fn auto_serves_loopback_and_the_named_interfaces_only() {
        let auto = AutoListen {
            ports: vec![5300],
            interfaces: vec!["no-such-interface0".into()],
            explicit: vec!["127.0.0.1:5301".parse().unwrap()],
        };
        let wanted = auto.wanted();
        assert!(
            wanted.contains_key(&"127.0.0.1:5300".parse().unwrap()),
            "{wanted:?}"
        );
        assert!(
            wanted
                .keys()
                .all(|a| a.ip().is_loopback() && a.port() == 5300),
            "only loopback: {wanted:?}"
        );
        let every = AutoListen {
            interfaces: Vec::new(),
            ..auto.clone()
        };
        let all = every.wanted();
        assert!(all.len() >= wanted.len());
        let written = AutoListen {
            ports: vec![5301],
            ..auto
        };
        assert!(!written
            .wanted()
            .contains_key(&"127.0.0.1:5301".parse().unwrap()));
    }

    /// A new address's listener starts with its own token; cancelling it leaves the others, and
    /// the shutdown token stops them all.
    #[test]
    fn each_listener_of_auto_has_its_own_stop_under_the_shutdown() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let auto = AutoListen {
            ports: vec![0], // each address on a port of its own: no fixed port on loopback
            interfaces: vec!["lo".into()],
            explicit: Vec::new(),
        };
        let mut follower = Follower::new(auto, shutdown.clone());
        let started = follower.rescan();
        assert!(!started.is_empty(), "loopback is served");
        assert!(follower.rescan().is_empty(), "nothing new the second time");
        let (first, rest) = started.split_first().unwrap();
        first.1.cancel();
        assert!(rest.iter().all(|(_, t)| !t.is_cancelled()));
        shutdown.cancel();
        assert!(started.iter().all(|(_, t)| t.is_cancelled()));
    }
}
