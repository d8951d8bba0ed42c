//! Answers the daemon gives itself: `localhost`, PTR for its own addresses, the RFC 6303
//! reverse zones and a minimal answer to ANY (RFC 8482), composed with hickory-proto.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, HINFO, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::acl;
use crate::compose::{self, Records};
use crate::throttle::Reread;
use crate::wire::{self, Rcode, Request};

/// How long a local answer may be cached by clients.
const LOCAL_TTL: u32 = 3600;

/// Reverse zones answered NXDOMAIN locally (RFC 6303), unless a route covers them.
const RFC6303_ZONES: &[&str] = &[
    "10.in-addr.arpa.",
    "16.172.in-addr.arpa.",
    "17.172.in-addr.arpa.",
    "18.172.in-addr.arpa.",
    "19.172.in-addr.arpa.",
    "20.172.in-addr.arpa.",
    "21.172.in-addr.arpa.",
    "22.172.in-addr.arpa.",
    "23.172.in-addr.arpa.",
    "24.172.in-addr.arpa.",
    "25.172.in-addr.arpa.",
    "26.172.in-addr.arpa.",
    "27.172.in-addr.arpa.",
    "28.172.in-addr.arpa.",
    "29.172.in-addr.arpa.",
    "30.172.in-addr.arpa.",
    "31.172.in-addr.arpa.",
    "168.192.in-addr.arpa.",
    "0.in-addr.arpa.",
    "127.in-addr.arpa.",
    "254.169.in-addr.arpa.",
    "2.0.192.in-addr.arpa.",
    "100.51.198.in-addr.arpa.",
    "113.0.203.in-addr.arpa.",
    "255.255.255.255.in-addr.arpa.",
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    "d.f.ip6.arpa.",
    "8.e.f.ip6.arpa.",
    "9.e.f.ip6.arpa.",
    "a.e.f.ip6.arpa.",
    "b.e.f.ip6.arpa.",
    "8.b.d.0.1.0.0.2.ip6.arpa.",
];

/// What the daemon knows of itself for local answers: its host name and addresses.
#[derive(Debug)]
pub struct Own {
    host: String,
    addresses: Reread<Vec<IpAddr>>,
}

impl Default for Own {
    fn default() -> Self {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "oqsdns".to_string());
        Self {
            host,
            addresses: Reread::new(acl::interface_addresses, Duration::from_secs(5)),
        }
    }
}

impl Own {
    /// Whether `ip` is one of this host's addresses (re-read at most every five seconds).
    fn is_own(&self, ip: IpAddr) -> bool {
        self.addresses.holds(|addresses| addresses.contains(&ip))
    }
}

/// The address a reverse name stands for, if it names a whole address.
fn reverse_address(name: &str) -> Option<IpAddr> {
    if let Some(v4) = name.strip_suffix(".in-addr.arpa.") {
        let mut octets: Vec<u8> = v4
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]).into());
    }
    let v6 = name.strip_suffix(".ip6.arpa.")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        bytes[i] = pair[1] << 4 | pair[0];
    }
    Some(Ipv6Addr::from(bytes).into())
}

/// What to answer for a name the daemon answers itself.
#[derive(Debug)]
enum Local {
    /// NOERROR with these records owned by the question's name (none: NODATA).
    Records(Vec<RData>),
    /// The name is under this RFC 6303 zone, or (`apex`) the zone itself: NXDOMAIN below the
    /// apex, NODATA at it, with the zone's SOA for negative caching.
    Zone {
        /// The zone.
        zone: &'static str,
        /// The question names the zone itself.
        apex: bool,
    },
}

/// The SOA of a locally served zone (RFC 6303 §3).
fn zone_soa() -> Option<RData> {
    let mname = Name::from_ascii("localhost.").ok()?;
    let rname = Name::from_ascii("nobody.invalid.").ok()?;
    Some(RData::SOA(SOA::new(
        mname, rname, 1, 3600, 1200, 604_800, 10_800,
    )))
}

/// The answer the daemon gives itself, if any: `localhost`, PTR for its own addresses, the
/// RFC 6303 reverse zones, and a minimal answer to ANY (RFC 8482). The caller skips this for
/// names a route covers. A local answer is at most a few hundred bytes, so it always fits the
/// 512 bytes any client takes.
pub fn answer(request: &Request<'_>, own: &Own, payload: u16) -> Option<Vec<u8>> {
    if request.qclass != u16::from(DNSClass::IN) {
        return None;
    }
    let qtype = RecordType::from(request.qtype);
    let mut buf = [0u8; 255];
    let n = wire::lowercase_name(request.qname(), &mut buf);
    // Every name answered here but ANY ends in `localhost.` or `arpa.`: the others (nearly every
    // query) leave before any string is built.
    if qtype != RecordType::ANY && !matches!(last_label(&buf[..n]), b"localhost" | b"arpa") {
        return None;
    }
    let local = what_to_answer(&wire::display_name(&buf[..n]), qtype, own)?;
    let owner = compose::qname(request)?;
    let (rcode, records) = match local {
        Local::Records(data) => {
            let answers = data
                .into_iter()
                .map(|d| compose::record(&owner, DNSClass::IN, LOCAL_TTL, d))
                .collect();
            let records = Records {
                answers,
                authorities: Vec::new(),
            };
            (Rcode::NoError, records)
        }
        Local::Zone { zone, apex } => {
            let rcode = if apex {
                Rcode::NoError
            } else {
                Rcode::NxDomain
            };
            let zone = Name::from_ascii(zone).ok()?;
            let soa = compose::record(&zone, DNSClass::IN, LOCAL_TTL, zone_soa()?);
            let records = Records {
                answers: Vec::new(),
                authorities: vec![soa],
            };
            (rcode, records)
        }
    };
    compose::authoritative(request, rcode, records, request.udp_limit(payload), payload)
}

/// What to answer for `name` (lower case, presentation format) and `qtype`, if the daemon
/// answers it itself.
fn what_to_answer(name: &str, qtype: RecordType, own: &Own) -> Option<Local> {
    if name == "localhost." || name.ends_with(".localhost.") {
        let data = match qtype {
            RecordType::A => vec![RData::A(A(Ipv4Addr::LOCALHOST))],
            RecordType::AAAA => vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))],
            _ => Vec::new(),
        };
        return Some(Local::Records(data));
    }
    if qtype == RecordType::PTR && reverse_address(name).is_some_and(|ip| own.is_own(ip)) {
        let host = Name::from_ascii(format!("{}.", own.host.to_ascii_lowercase())).ok()?;
        return Some(Local::Records(vec![RData::PTR(PTR(host))]));
    }
    if let Some(zone) = RFC6303_ZONES
        .iter()
        .find(|z| name == **z || name.ends_with(&format!(".{z}")))
    {
        return Some(Local::Zone {
            zone,
            apex: name == *zone,
        });
    }
    if qtype == RecordType::ANY {
        let hinfo = HINFO::new("RFC8482".to_string(), String::new());
        return Some(Local::Records(vec![RData::HINFO(hinfo)]));
    }
    None
}

/// The last label of a wire-format name (empty for the root or a malformed name).
fn last_label(name: &[u8]) -> &[u8] {
    let mut at = 0;
    let mut last: &[u8] = &[];
    while let Some(&len) = name.get(at) {
        let len = usize::from(len);
        if len == 0 || len > 63 {
            break;
        }
        match name.get(at + 1..at + 1 + len) {
            Some(label) => last = label,
            None => break,
        }
        at += len + 1;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_labels() {
        assert_eq!(last_label(b"\x01a\x04arpa\x00"), b"arpa");
        assert_eq!(last_label(b"\x09localhost\x00"), b"localhost");
        assert_eq!(last_label(b"\x00"), b"");
        assert_eq!(last_label(b"\x09local"), b"");
    }

    #[test]
    fn reverse_names_to_addresses() {
        assert_eq!(
            reverse_address("1.0.0.127.in-addr.arpa."),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(reverse_address("0.0.127.in-addr.arpa."), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.5.4.3.2.1.2.8.0.0.8.0.4.2.ip6.arpa.";
        assert_eq!(
            reverse_address(v6),
            Some("2408:82:1234:5600::1".parse().unwrap())
        );
        assert_eq!(reverse_address("x.ip6.arpa."), None);
    }
}
