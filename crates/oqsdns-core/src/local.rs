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

/// The status lines: `area=…`, `prefix-start=…`, `prefix-now=…`, `prefix-changed=yes|no`, and one
/// `server=ROUTE ADDR udp=STATE tcp=STATE use=udp|tcp|last` per upstream.
pub fn status_lines(runtime: &Runtime, prefixes: &Prefixes) -> Vec<String> {
    let join = |p: &[ipnet::Ipv6Net]| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut lines = vec![
        format!("area={}", runtime.area()),
        format!("prefix-start={}", join(&prefixes.at_start)),
        format!("prefix-now={}", join(&prefixes.now)),
        format!(
            "prefix-changed={}",
            if prefixes.changed() { "yes" } else { "no" }
        ),
    ];
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
        }
    }
    lines
}

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
