//! Rebind protection: answers from the default (internet) servers must not point into the LAN.
//! An answer holding a private, loopback or link-local address becomes NODATA. Answers of the
//! routes (the NW-base's 10.x addresses) never come here.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use tracing::warn;

use crate::wire::{self, Section, HEADER_LEN};

/// Names logged at most this many before the memory of them starts again.
const LOGGED_NAMES: usize = 1024;

/// Whether an address must not come from the internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xFE00) == 0xFC00 // unique local fc00::/7
                || (first & 0xFFC0) == 0xFE80 // link-local fe80::/10
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified()
}

/// The filter, with the memory of names already logged.
#[derive(Debug, Default)]
pub struct Rebind {
    logged: Mutex<HashSet<Box<[u8]>>>,
}

impl Rebind {
    /// `None` when `reply` may pass; else the NODATA reply to send instead (logged once per name).
    pub fn filter(&self, reply: &[u8], records: &[wire::RecordAt]) -> Option<Vec<u8>> {
        let internal = records
            .iter()
            .filter(|r| r.section == Section::Answer)
            .find_map(|r| {
                let data = reply.get(r.data_at..r.end)?;
                let ip = match (r.rtype, data.len()) {
                    (wire::TYPE_A, 4) => IpAddr::from(<[u8; 4]>::try_from(data).ok()?),
                    (wire::TYPE_AAAA, 16) => {
                        IpAddr::from(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))
                    }
                    _ => return None,
                };
                is_internal(ip).then_some(ip)
            })?;
        let mut nodata = reply[..wire::question_end(reply)?].to_vec();
        nodata[6..12].fill(0);
        self.log(&nodata[HEADER_LEN..], internal);
        Some(nodata)
    }

    fn log(&self, question: &[u8], address: IpAddr) {
        let name = wire::display_name(question);
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.len() >= LOGGED_NAMES {
            logged.clear();
        }
        if logged.insert(name.to_ascii_lowercase().into_bytes().into_boxed_slice()) {
            warn!(%name, %address, "removed the internal address {address} from the internet answer for {name} (rebind protection)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges() {
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "2404:1a8:f583:af0::1",
            "2001:db8::1",
            "100.64.0.1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
