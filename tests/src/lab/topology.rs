//! The lab's network: four namespaces joined by veth links, with the guide's server addresses.
//!
//! ```text
//!  terminal ──lan── oqsdns host ──wan── NGN side ──transit── internet side
//!  ::100, .100      ::1, .1             NW-base and NGN DNS  resolver 2001:db8:53::53
//!  LAN 2408:82:1234:5600::/64           (the guide's addrs)  and 198.51.100.53
//!      192.168.10.0/24
//! ```
//!
//! Every address lives only inside these namespaces; the host's own network is never touched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::netns::Netns;

/// The LAN's global-looking NGN-style /64: only `allow = ["local"]` admits it.
pub const LAN6_PREFIX: &str = "2408:82:1234:5600::/64";
/// The oqsdns host on the LAN (IPv6).
pub const OQSDNS_LAN6: Ipv6Addr = Ipv6Addr::new(0x2408, 0x82, 0x1234, 0x5600, 0, 0, 0, 1);
/// The oqsdns host on the LAN (IPv4).
pub const OQSDNS_LAN4: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
/// The terminal (IPv6).
pub const TERMINAL6: Ipv6Addr = Ipv6Addr::new(0x2408, 0x82, 0x1234, 0x5600, 0, 0, 0, 0x100);
/// The terminal (IPv4).
pub const TERMINAL4: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 100);
/// The oqsdns host on its upstream link (IPv6).
pub const OQSDNS_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff01, 0, 0, 0, 0, 2);
/// The oqsdns host on its upstream link (IPv4).
pub const OQSDNS_WAN4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The internet resolver (IPv6).
pub const INTERNET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 0x53);
/// The internet resolver (IPv4).
pub const INTERNET4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// A host on the internet side, outside every allowed prefix (IPv6).
pub const STRANGER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x66, 0, 0, 0, 0, 0x66);
/// A host on the internet side, outside every allowed prefix (IPv4).
pub const STRANGER4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

/// The centre's web addresses of the guide's step 7 (p.12/13): `hweb.oqs.onshikaku.org` and
/// `www.lineauth.mnw`, East then West. The NGN side holds them with a TCP listener on port 443.
pub const CENTRE: [IpAddr; 4] = [
    IpAddr::V6(Ipv6Addr::new(
        0x2404, 0x1a8, 0xf583, 0x1a10, 0x2779, 0x2395, 0x6092, 0x37fd,
    )),
    IpAddr::V6(Ipv6Addr::new(0x2404, 0x1a8, 0xf583, 0xaf0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(
        0x2001, 0xa7ff, 0xf014, 0x1a20, 0xae27, 0xffe4, 0xa8ae, 0xc4b7,
    )),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xa7ff, 0xf014, 0xaf0, 0, 0, 0, 1)),
];

/// A namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The clinic's terminal: the client.
    Terminal,
    /// The host running oqsdns.
    Oqsdns,
    /// The NGN side: the NW-base and NGN DNS servers.
    Ngn,
    /// The internet side: the normal resolver and a stranger.
    Internet,
}

/// The four namespaces. Dropping it deletes them.
#[derive(Debug)]
pub struct Network {
    terminal: Netns,
    oqsdns: Netns,
    ngn: Netns,
    internet: Netns,
}

impl Network {
    /// Creates the namespaces, links, addresses and routes. `server_addrs` are put on the NGN
    /// side's loopback.
    pub fn build(ip: &Path, prefix: &str, server_addrs: &[IpAddr]) -> Result<Self, String> {
        let net = Self {
            terminal: Netns::create(ip, &format!("{prefix}t"))?,
            oqsdns: Netns::create(ip, &format!("{prefix}d"))?,
            ngn: Netns::create(ip, &format!("{prefix}n"))?,
            internet: Netns::create(ip, &format!("{prefix}i"))?,
        };
        net.wire(server_addrs)?;
        Ok(net)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: Host) -> &Netns {
        match host {
            Host::Terminal => &self.terminal,
            Host::Oqsdns => &self.oqsdns,
            Host::Ngn => &self.ngn,
            Host::Internet => &self.internet,
        }
    }

    fn wire(&self, server_addrs: &[IpAddr]) -> Result<(), String> {
        let (t, d, n, i) = (&self.terminal, &self.oqsdns, &self.ngn, &self.internet);
        // Each veth is made inside a namespace and its peer moved straight into another one.
        d.ip(&[
            "link", "add", "lan0", "type", "veth", "peer", "name", "eth0",
        ])?;
        d.ip(&["link", "set", "eth0", "netns", t.name()])?;
        d.ip(&[
            "link", "add", "wan0", "type", "veth", "peer", "name", "cpe0",
        ])?;
        d.ip(&["link", "set", "cpe0", "netns", n.name()])?;
        n.ip(&[
            "link", "add", "isp0", "type", "veth", "peer", "name", "eth0",
        ])?;
        n.ip(&["link", "set", "eth0", "netns", i.name()])?;

        let lan6 = |host: Ipv6Addr| format!("{host}/64");
        addr(t, "eth0", &lan6(TERMINAL6))?;
        addr(t, "eth0", &format!("{TERMINAL4}/24"))?;
        addr(d, "lan0", &lan6(OQSDNS_LAN6))?;
        addr(d, "lan0", &format!("{OQSDNS_LAN4}/24"))?;
        addr(d, "wan0", &format!("{OQSDNS_WAN6}/64"))?;
        addr(d, "wan0", &format!("{OQSDNS_WAN4}/30"))?;
        addr(n, "cpe0", "2001:db8:ff01::1/64")?;
        addr(n, "cpe0", "192.0.2.1/30")?;
        addr(n, "isp0", "2001:db8:ff02::1/64")?;
        addr(n, "isp0", "192.0.2.5/30")?;
        addr(i, "eth0", "2001:db8:ff02::2/64")?;
        addr(i, "eth0", "192.0.2.6/30")?;
        for server in server_addrs {
            addr(n, "lo", &host_prefix(*server))?;
        }
        for own in [
            IpAddr::V6(INTERNET6),
            IpAddr::V4(INTERNET4),
            IpAddr::V6(STRANGER6),
            IpAddr::V4(STRANGER4),
        ] {
            addr(i, "lo", &host_prefix(own))?;
        }
        for (ns, dev) in [
            (t, "eth0"),
            (d, "lan0"),
            (d, "wan0"),
            (n, "cpe0"),
            (n, "isp0"),
            (i, "eth0"),
        ] {
            ns.ip(&["link", "set", dev, "up"])?;
        }

        route(t, "default", &OQSDNS_LAN6.to_string())?;
        route(t, "default", &OQSDNS_LAN4.to_string())?;
        route(d, "default", "2001:db8:ff01::1")?;
        route(d, "default", "192.0.2.1")?;
        route(n, LAN6_PREFIX, &OQSDNS_WAN6.to_string())?;
        route(n, "192.168.10.0/24", &OQSDNS_WAN4.to_string())?;
        route(n, "default", "2001:db8:ff02::2")?;
        route(n, "default", "192.0.2.6")?;
        route(i, "default", "2001:db8:ff02::1")?;
        route(i, "default", "192.0.2.5")?;
        n.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        n.sysctl("net.ipv4.ip_forward", "1")?;
        Ok(())
    }
}

fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(ip) => format!("{ip}/128"),
        IpAddr::V4(ip) => format!("{ip}/32"),
    }
}

/// Adds an address; IPv6 ones skip duplicate address detection so they are usable at once.
fn addr(ns: &Netns, dev: &str, cidr: &str) -> Result<(), String> {
    if cidr.contains(':') {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"])
    } else {
        ns.ip(&["-4", "addr", "add", cidr, "dev", dev])
    }
}

fn route(ns: &Netns, to: &str, via: &str) -> Result<(), String> {
    let family = if via.contains(':') { "-6" } else { "-4" };
    ns.ip(&[family, "route", "add", to, "via", via])
}
