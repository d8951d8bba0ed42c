//! The `"system"` default servers: the nameservers of /etc/resolv.conf, minus this daemon.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use oqsdns_config::DNS_PORT;

/// The nameservers of a resolv.conf text, in order. Scoped IPv6 addresses (`fe80::1%eth0`) keep
/// their interface.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            parse_nameserver(words.next()?)
        })
        .collect()
}

fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    if let Some((addr, scope)) = word.split_once('%') {
        let ip: std::net::Ipv6Addr = addr.parse().ok()?;
        let index = scope
            .parse::<u32>()
            .ok()
            .or_else(|| nix::net::if_::if_nametoindex(scope).ok())?;
        return Some(SocketAddrV6::new(ip, DNS_PORT, 0, index).into());
    }
    Some(SocketAddr::new(word.parse::<IpAddr>().ok()?, DNS_PORT))
}

/// Removes the servers that are this daemon itself: any listening address, or, for a wildcard
/// listener, any of this host's own addresses on the same port. Forwarding to them would loop.
pub fn without_self(
    servers: Vec<SocketAddr>,
    listening: &[SocketAddr],
    host_addresses: &[IpAddr],
) -> Vec<SocketAddr> {
    let is_self = |server: &SocketAddr| {
        listening.iter().any(|l| {
            let same_family = l.is_ipv4() == server.is_ipv4();
            let local = server.ip().is_loopback() || host_addresses.contains(&server.ip());
            l.port() == server.port()
                && same_family
                && (l.ip() == server.ip() || (l.ip().is_unspecified() && local))
        })
    };
    servers.into_iter().filter(|s| !is_self(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers_in_order() {
        let text = "# comment\nsearch example\nnameserver 192.0.2.1\nnameserver 2001:db8::53\n\
                    options edns0\nnameserver 127.0.0.53\nnameserver fe80::1%1\nnameserver bogus\n";
        let got = parse_resolv_conf(text);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], "192.0.2.1:53".parse().unwrap());
        assert_eq!(got[1], "[2001:db8::53]:53".parse().unwrap());
        assert_eq!(got[2], "127.0.0.53:53".parse().unwrap());
        assert!(matches!(got[3], SocketAddr::V6(v6) if v6.scope_id() == 1));
    }

    #[test]
    fn never_forwards_to_itself() {
        let servers = parse_resolv_conf(
            "nameserver 127.0.0.1\nnameserver 192.168.1.5\nnameserver 192.168.1.1\nnameserver ::1\nnameserver 127.0.0.53",
        );
        let host = ["192.168.1.5".parse().unwrap()];
        let wildcard = ["0.0.0.0:53".parse().unwrap()];
        let kept = without_self(servers.clone(), &wildcard, &host);
        let want: Vec<SocketAddr> = vec![
            "192.168.1.1:53".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
        ];
        assert_eq!(kept, want);
        // A listener on another port is no loop.
        let other_port = ["0.0.0.0:5353".parse().unwrap()];
        assert_eq!(without_self(servers.clone(), &other_port, &host).len(), 5);
        // A listener on one address excludes that address only.
        let one = ["127.0.0.1:53".parse().unwrap()];
        assert_eq!(without_self(servers, &one, &host).len(), 4);
    }
}
