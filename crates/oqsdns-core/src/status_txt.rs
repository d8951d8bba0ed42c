//! The daemon's own view over DNS: `status.oqsdns. CH TXT` tells an allowed client (such as
//! `oqsdns check`) the area, upstream health and the IPv6 prefix watch, one line per TXT record.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::compose::{self, Records};
use crate::prefix::Prefixes;
use crate::runtime::Runtime;
use crate::upstream::Transport;
use crate::wire::{Rcode, Request, MAX_MESSAGE};

/// The status name, in wire format.
pub const STATUS_NAME: &[u8] = b"\x06status\x06oqsdns\x00";
/// The status name.
pub const STATUS_DOMAIN: &str = "status.oqsdns.";

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
    request.qclass == u16::from(DNSClass::CH)
        && request.qtype == u16::from(RecordType::TXT)
        && request.qname().eq_ignore_ascii_case(STATUS_NAME)
}

/// The status answer to `request` over `transport`: TC without records when it does not fit the
/// client's UDP size (see [`txt_answer`]).
pub fn answer(
    request: &Request<'_>,
    runtime: &Runtime,
    prefixes: &Prefixes,
    transport: Transport,
) -> Vec<u8> {
    let payload = runtime.udp_payload();
    let limit = match transport {
        Transport::Udp => request.udp_limit(payload),
        Transport::Tcp => MAX_MESSAGE,
    };
    txt_answer(request, &status_lines(runtime, prefixes), limit, payload)
}

/// A TXT answer to `request` holding `lines`, one string per record (a line longer than a
/// character-string is cut at 255 bytes), TTL 0.
///
/// The lines are one RRset: an answer larger than `limit` carries none of them and sets TC
/// instead of carrying some (RFC 2181 §9), so the client asks again over TCP, as `oqsdns check`
/// and dig do, and never reads half a status as the whole.
pub fn txt_answer(request: &Request<'_>, lines: &[String], limit: usize, payload: u16) -> Vec<u8> {
    let fallback = || request.reply(Rcode::ServFail, 0, payload);
    let Some(name) = compose::qname(request) else {
        return fallback();
    };
    let answers = lines
        .iter()
        .map(|line| {
            let text = &line.as_bytes()[..line.len().min(255)];
            let data = RData::TXT(TXT::from_bytes(vec![text]));
            compose::record(&name, DNSClass::CH, 0, data)
        })
        .collect();
    let records = Records {
        answers,
        authorities: Vec::new(),
    };
    compose::authoritative(request, Rcode::NoError, records, limit, payload)
        .unwrap_or_else(fallback)
}

/// The status question with a fresh EDNS record, and its question section in wire format to check
/// the reply against: what `oqsdns check` asks.
pub fn query(id: u16) -> Option<(Vec<u8>, Vec<u8>)> {
    let name = Name::from_ascii(STATUS_DOMAIN).ok()?;
    compose::query(id, &name, RecordType::TXT, DNSClass::CH)
}

/// The status lines of an answer to [`query`]: one per TXT record; `None` for an error response.
pub fn lines_of(reply: &[u8]) -> Option<Vec<String>> {
    compose::read(reply)
        .filter(|reading| reading.rcode == ResponseCode::NoError)
        .map(|reading| reading.txt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_query(edns: bool) -> Vec<u8> {
        let name = Name::from_ascii("Status.OQSDNS.").unwrap();
        let (mut query, _) = compose::query(7, &name, RecordType::TXT, DNSClass::CH).unwrap();
        if !edns {
            query.truncate(crate::wire::question_end(&query).unwrap());
            query[11] = 0;
        }
        query
    }

    #[test]
    fn a_status_that_does_not_fit_is_truncated_without_records() {
        let lines: Vec<String> = (0..40)
            .map(|i| format!("server=route-{i} 192.0.2.{i}:53 udp=up tcp=up use=udp"))
            .collect();
        for edns in [false, true] {
            let bytes = status_query(edns);
            let request = Request::parse(&bytes).unwrap();
            assert!(is_status(&request));
            let whole = txt_answer(&request, &lines, MAX_MESSAGE, 1232);
            let read = compose::read(&whole).unwrap();
            assert!(!read.truncated);
            assert_eq!(lines_of(&whole).unwrap(), lines);
            assert!(whole.len() > 1232);
            for limit in [512, 1232] {
                let short = txt_answer(&request, &lines, limit, 1232);
                assert!(short.len() <= limit);
                let read = compose::read(&short).unwrap();
                assert!(read.truncated && read.answers.is_empty(), "edns {edns}");
                let message = hickory_proto::op::Message::from_vec(&short).unwrap();
                assert_eq!(message.queries[0].name().to_ascii(), "Status.OQSDNS.");
                assert_eq!(message.edns.is_some(), edns);
            }
        }
    }

    #[test]
    fn a_line_longer_than_a_character_string_is_cut() {
        let bytes = status_query(true);
        let request = Request::parse(&bytes).unwrap();
        let long = "x".repeat(300);
        let answer = txt_answer(&request, &[long], MAX_MESSAGE, 1232);
        assert_eq!(compose::read(&answer).unwrap().txt(), ["x".repeat(255)]);
    }
}
