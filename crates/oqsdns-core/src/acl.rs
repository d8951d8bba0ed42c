//! Access control: which clients may query. Everyone else gets REFUSED, so the daemon is never an
//! open resolver.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use oqsdns_config::AllowEntry;

use crate::throttle::Reread;

/// How often the host's own prefixes may be re-read when an unknown client asks.
const LOCAL_REFRESH: Duration = Duration::from_secs(1);

/// The allow list, with `"local"` tracking the prefixes of this host's interfaces.
#[derive(Debug)]
pub struct Acl {
    nets: Vec<IpNet>,
    /// The prefixes on this host's interfaces, re-read when a client outside them asks (at most
    /// once a second), so a prefix the line assigns later is served without a restart.
    local: Option<Reread<Vec<IpNet>>>,
}

impl Acl {
    /// Builds the list; `"local"` reads the interfaces now.
    pub fn new(entries: &[AllowEntry]) -> Self {
        let nets = entries
            .iter()
            .filter_map(|e| match e {
                AllowEntry::Net(net) => Some(*net),
                AllowEntry::Local => None,
            })
            .collect();
        let local = entries
            .contains(&AllowEntry::Local)
            .then(|| Reread::new(interface_prefixes, LOCAL_REFRESH));
        Self { nets, local }
    }

    /// Whether `client` may query.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        if self.nets.iter().any(|n| n.contains(&client)) {
            return true;
        }
        self.local
            .as_ref()
            .is_some_and(|local| local.holds(|nets| nets.iter().any(|n| n.contains(&client))))
    }
}

/// The networks of every address on this host's interfaces.
pub fn interface_prefixes() -> Vec<IpNet> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let mask = ifa.netmask?;
            if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                return IpNet::with_netmask(a.ip().into(), m.ip().into())
                    .ok()
                    .map(|n| n.trunc());
            }
            let (a, m) = (addr.as_sockaddr_in6()?, mask.as_sockaddr_in6()?);
            IpNet::with_netmask(a.ip().into(), m.ip().into())
                .ok()
                .map(|n| n.trunc())
        })
        .collect()
}

/// The addresses on this host's interfaces.
pub fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            if let Some(a) = addr.as_sockaddr_in() {
                return Some(IpAddr::from(a.ip()));
            }
            addr.as_sockaddr_in6().map(|a| IpAddr::from(a.ip()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[&str]) -> Acl {
        let entries: Vec<AllowEntry> = entries.iter().map(|e| e.parse().unwrap()).collect();
        Acl::new(&entries)
    }

    #[test]
    fn networks_and_mapped_addresses() {
        let acl = acl(&["10.0.0.0/8", "fc00::/7"]);
        assert!(acl.allows("10.1.2.3".parse().unwrap()));
        assert!(acl.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(acl.allows("fd00::1".parse().unwrap()));
        assert!(!acl.allows("11.0.0.1".parse().unwrap()));
        assert!(!acl.allows("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn local_covers_this_hosts_loopback_only_when_listed() {
        // Every Linux host has 127.0.0.1/8 and usually ::1/128 on lo.
        assert!(acl(&["local"]).allows("127.0.0.1".parse().unwrap()));
        assert!(!acl(&["192.168.0.0/16"]).allows("127.0.0.1".parse().unwrap()));
    }
}
