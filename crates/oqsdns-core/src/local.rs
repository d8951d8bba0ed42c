//! Answers the daemon gives itself. `status.oqsdns. CH TXT` tells an allowed client (such as
//! `oqsdns check`) the daemon's own view: area, upstream health and the IPv6 prefix watch.

use crate::forward::Runtime;
use crate::prefix::Prefixes;
use crate::wire::{self, Rcode, Request};

/// Class CHAOS.
pub const CLASS_CH: u16 = 3;
/// Type TXT.
pub const TYPE_TXT: u16 = 16;
/// The status name, in wire format.
pub const STATUS_NAME: &[u8] = b"\x06status\x06oqsdns\x00";

/// The status lines: `area=…`, `prefix-known=…`, `prefix-now=…`, `prefix-changed=yes|no`,
/// `state-file=…` (where `oqsdns check --confirm-reauth` writes), one
/// `server=ROUTE ADDR udp=STATE tcp=STATE use=udp|tcp|last` per upstream, then the last
/// [`CHANGES_LISTED`] changes of state, newest first, as
/// `change=UNIX_SECONDS ROUTE ADDR TRANSPORT STATE REASON` (for `oqsdns check --bundle` when the
/// status page is off).
pub fn status_lines(runtime: &Runtime, prefixes: &Prefixes) -> Vec<String> {
    let join = |p: &[ipnet::Ipv6Net]| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut lines = vec![
        format!("area={}", runtime.area()),
        format!("prefix-known={}", join(&prefixes.known)),
        format!("prefix-now={}", join(&prefixes.now)),
        format!(
            "prefix-changed={}",
            if prefixes.changed() { "yes" } else { "no" }
        ),
    ];
    if let Some(path) = &prefixes.state_file {
        lines.push(format!("state-file={}", path.display()));
    }
    let mut changes = Vec::new();
    for group in runtime.groups() {
        for server in &group.servers {
            lines.push(format!(
                "server={} {} udp={} tcp={} use={}",
                group.name,
                server.addr,
                server.udp.state().as_str(),
                server.tcp.state().as_str(),
                server.plan().as_str()
            ));
            for change in server.history.changes() {
                let at = change
                    .at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let line = format!(
                    "change={at} {} {} {} {} {}",
                    group.name,
                    server.addr,
                    change.transport,
                    change.state.as_str(),
                    change.reason
                );
                changes.push((change.at, line));
            }
        }
    }
    changes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    changes.dedup();
    lines.extend(changes.into_iter().take(CHANGES_LISTED).map(|(_, l)| l));
    lines
}

/// The changes of state the status lines list: few enough to keep the answer small.
pub const CHANGES_LISTED: usize = 8;

/// Whether `request` asks for the daemon's status.
pub fn is_status(request: &Request<'_>) -> bool {
    request.qclass == CLASS_CH
        && request.qtype == TYPE_TXT
        && request.qname().eq_ignore_ascii_case(STATUS_NAME)
}

/// A TXT answer to `request` holding `lines`, one string per record.
pub fn txt_answer(request: &Request<'_>, lines: &[String], payload: u16) -> Vec<u8> {
    let mut out = request.reply(Rcode::NoError, 0x0400, payload); // AA
    let opt = request.edns.map(|_| out.split_off(out.len() - 11));
    let mut count = 0u16;
    for line in lines {
        let text = &line.as_bytes()[..line.len().min(255)];
        out.extend_from_slice(&[0xC0, wire::HEADER_LEN as u8]);
        out.extend_from_slice(&TYPE_TXT.to_be_bytes());
        out.extend_from_slice(&request.qclass.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(text.len() as u16 + 1).to_be_bytes());
        out.push(text.len() as u8);
        out.extend_from_slice(text);
        count += 1;
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    if let Some(opt) = opt {
        out.extend_from_slice(&opt);
    }
    out
}

/// Type PTR.
const TYPE_PTR: u16 = 12;
/// Type HINFO.
const TYPE_HINFO: u16 = 13;
/// Type ANY.
pub const TYPE_ANY: u16 = 255;
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
    addresses: arc_swap::ArcSwap<Vec<std::net::IpAddr>>,
    reread: crate::throttle::Throttle,
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
            addresses: arc_swap::ArcSwap::from_pointee(crate::acl::interface_addresses()),
            reread: crate::throttle::Throttle::new(std::time::Duration::from_secs(5)),
        }
    }
}

impl Own {
    /// Whether `ip` is one of this host's addresses (re-read at most every five seconds).
    fn is_own(&self, ip: std::net::IpAddr) -> bool {
        if self.addresses.load().contains(&ip) {
            return true;
        }
        if self.reread.ready() {
            self.addresses
                .store(std::sync::Arc::new(crate::acl::interface_addresses()));
        }
        self.addresses.load().contains(&ip)
    }
}

/// The address a reverse name stands for, if it names a whole address.
fn reverse_address(name: &str) -> Option<std::net::IpAddr> {
    if let Some(v4) = name.strip_suffix(".in-addr.arpa.") {
        let mut octets: Vec<u8> = v4
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(std::net::Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]).into());
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
    Some(std::net::Ipv6Addr::from(bytes).into())
}

/// A reply of our own with AA set and `records` (each: type and data) owned by the question's
/// name, and `authority` (owner wire name, type, data) records.
fn authoritative(
    request: &Request<'_>,
    rcode: Rcode,
    records: &[(u16, Vec<u8>)],
    soa_zone: Option<&[u8]>,
    payload: u16,
) -> Vec<u8> {
    let mut out = request.reply(rcode, 0x0400, payload);
    let opt = request.edns.map(|_| out.split_off(out.len() - 11));
    for (rtype, data) in records {
        out.extend_from_slice(&[0xC0, wire::HEADER_LEN as u8]);
        push_record_tail(&mut out, *rtype, request.qclass, data);
    }
    out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    if let Some(zone) = soa_zone {
        out.extend_from_slice(zone);
        let mut soa = b"\x09localhost\x00\x06nobody\x07invalid\x00".to_vec();
        for v in [1u32, 3600, 1200, 604_800, 10_800] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        push_record_tail(&mut out, 6, 1, &soa);
        out[8..10].copy_from_slice(&1u16.to_be_bytes());
    }
    if let Some(opt) = opt {
        out.extend_from_slice(&opt);
    }
    out
}

fn push_record_tail(out: &mut Vec<u8>, rtype: u16, class: u16, data: &[u8]) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&LOCAL_TTL.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// The answer the daemon gives itself, if any: `localhost`, PTR for its own addresses, the
/// RFC 6303 reverse zones, and a minimal answer to ANY (RFC 8482). The caller skips this for
/// names a route covers.
pub fn answer(request: &Request<'_>, own: &Own, payload: u16) -> Option<Vec<u8>> {
    if request.qclass != 1 {
        return None;
    }
    let mut buf = [0u8; 255];
    let n = wire::lowercase_name(request.qname(), &mut buf);
    // Every name answered here but ANY ends in `localhost.` or `arpa.`: the others (nearly every
    // query) leave before any string is built.
    if request.qtype != TYPE_ANY && !matches!(last_label(&buf[..n]), b"localhost" | b"arpa") {
        return None;
    }
    let name = wire::display_name(&buf[..n]);
    if name == "localhost." || name.ends_with(".localhost.") {
        let records = match request.qtype {
            1 => vec![(1, vec![127, 0, 0, 1])],
            28 => vec![(28, std::net::Ipv6Addr::LOCALHOST.octets().to_vec())],
            _ => Vec::new(),
        };
        return Some(authoritative(
            request,
            Rcode::NoError,
            &records,
            None,
            payload,
        ));
    }
    if request.qtype == TYPE_PTR && reverse_address(&name).is_some_and(|ip| own.is_own(ip)) {
        let ptr = wire::name_to_wire(&own.host);
        let records = [(TYPE_PTR, ptr)];
        return Some(authoritative(
            request,
            Rcode::NoError,
            &records,
            None,
            payload,
        ));
    }
    if let Some(zone) = RFC6303_ZONES
        .iter()
        .find(|z| name == **z || name.ends_with(&format!(".{z}")))
    {
        let rcode = if name == *zone {
            Rcode::NoError
        } else {
            Rcode::NxDomain
        };
        return Some(authoritative(
            request,
            rcode,
            &[],
            Some(&wire::name_to_wire(zone)),
            payload,
        ));
    }
    if request.qtype == TYPE_ANY {
        let hinfo = b"\x07RFC8482\x00".to_vec();
        return Some(authoritative(
            request,
            Rcode::NoError,
            &[(TYPE_HINFO, hinfo)],
            None,
            payload,
        ));
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
