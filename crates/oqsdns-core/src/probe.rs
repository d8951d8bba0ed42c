//! Health probes: the guide's step-7 questions asked of one server over one transport, and the
//! loop that asks them every interval. `oqsdns check` runs the same probes once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RecordType};
use oqsdns_config::ProbeName;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::compose;
use crate::health::{Outcome, ServerHealth};
pub use crate::probe_result::{ProbeError, ProbeResult};
use crate::upstream::{self, Transport};

/// Asks `server` one probe question over `transport`.
pub async fn probe(
    server: SocketAddr,
    transport: Transport,
    probe: &ProbeName,
    timeout: Duration,
) -> ProbeResult {
    let started = Instant::now();
    let result = ask(server, transport, probe, started + timeout).await;
    ProbeResult {
        probe: probe.clone(),
        result,
        latency: started.elapsed(),
    }
}

/// The query of `probe`, written by hickory; the reply read by hickory and judged.
async fn ask(
    server: SocketAddr,
    transport: Transport,
    probe: &ProbeName,
    deadline: Instant,
) -> Result<Vec<IpAddr>, ProbeError> {
    let id = rand::random::<u16>();
    let name =
        Name::from_ascii(probe.name.to_ascii_lowercase()).map_err(|_| ProbeError::Unaskable)?;
    let rtype = RecordType::from(probe.rtype);
    let (query, question) =
        compose::query(id, &name, rtype, DNSClass::IN).ok_or(ProbeError::Unaskable)?;
    let reply = match transport {
        Transport::Udp => upstream::udp(server, &query, id, &question, deadline).await,
        Transport::Tcp => upstream::tcp(server, &query, id, &question, deadline).await,
    }?;
    judge(probe, &reply.bytes, reply.info.truncated)
}

/// What a reply to `probe` says: the addresses of its answer, or why it does not pass.
/// `truncated` is the TC bit as the transport read it, for a reply hickory cannot read whole.
fn judge(probe: &ProbeName, reply: &[u8], truncated: bool) -> Result<Vec<IpAddr>, ProbeError> {
    let Some(reading) = compose::read(reply) else {
        // A truncated answer may be cut anywhere: the server did answer over this transport.
        return if truncated {
            Ok(Vec::new())
        } else {
            Err(ProbeError::Malformed)
        };
    };
    let rcode = u16::from(reading.rcode);
    if let Some(expected) = probe.rcode {
        return if rcode == u16::from(expected) {
            Ok(Vec::new())
        } else {
            Err(ProbeError::Rcode(rcode))
        };
    }
    if reading.rcode != ResponseCode::NoError {
        return Err(ProbeError::Rcode(rcode));
    }
    if reading.truncated {
        return Ok(Vec::new()); // the server answered over this transport; TC is not a failure
    }
    let rtype = RecordType::from(probe.rtype);
    if !reading.answers.iter().any(|r| r.record_type() == rtype) {
        return Err(ProbeError::NoRecord(probe.type_name()));
    }
    Ok(reading.addresses())
}

/// Asks every probe of `names` at once; the round passes when every probe passes. It takes at
/// most `timeout` whatever the number of names, so `fall` failed rounds of a dead server take
/// `fall × timeout` (asked one after another, N names took N timeouts per round).
pub async fn round(
    server: SocketAddr,
    transport: Transport,
    names: &[ProbeName],
    timeout: Duration,
) -> (Outcome, Vec<ProbeResult>) {
    let mut asks: Vec<_> = names
        .iter()
        .map(|name| Box::pin(probe(server, transport, name, timeout)))
        .collect();
    let mut done: Vec<Option<ProbeResult>> = vec![None; asks.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (ask, slot) in asks.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match std::future::Future::poll(ask.as_mut(), cx) {
                    std::task::Poll::Ready(result) => *slot = Some(result),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    let results: Vec<ProbeResult> = done.into_iter().flatten().collect();
    let outcome = match results
        .iter()
        .find_map(|r| r.result.as_ref().err().map(|e| (&r.probe, e)))
    {
        Some((probe, error)) => Outcome::Fail(format!("{}: {error}", probe.name)),
        None => Outcome::Pass(results.iter().map(|r| r.latency).max().unwrap_or_default()),
    };
    (outcome, results)
}

/// How soon after the start of a round the next one may come when the state is not settled
/// (after a failure, or when a real query failed): a tenth of the interval, at least a second
/// apart, but never more than the probe timeout, so that a round that timed out is followed by
/// the next one at once. A dead server is thus marked down within
/// `interval + fall × timeout` of its death, whatever the number of names.
pub fn retry_gap(interval: Duration, timeout: Duration) -> Duration {
    (interval / 10)
        .max(Duration::from_secs(1))
        .min(timeout)
        .min(interval)
}

/// Probes one server over UDP and TCP until `shutdown`: at once, then every `interval` while all
/// is well. After a failure, or when a real query to the server fails, the next round comes
/// sooner ([`retry_gap`] after the last one began), so a change of state is confirmed within
/// `fall` timeouts rather than `fall` whole intervals. Real queries only wake this loop; its
/// rounds alone decide the state.
pub async fn probe_loop(
    server: Arc<ServerHealth>,
    names: Vec<ProbeName>,
    interval: Duration,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let fast = retry_gap(interval, timeout);
    let mut next = Instant::now();
    let mut last = next.checked_sub(fast).unwrap_or(next);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
            () = server.wake.notified() => {
                // A real query failed: probe now, but never sooner than `fast` after the last round.
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until((last + fast).min(next)) => {}
                }
            }
        }
        let started = Instant::now();
        last = started;
        let rounds = async {
            tokio::join!(
                round(server.addr, Transport::Udp, &names, timeout),
                round(server.addr, Transport::Tcp, &names, timeout),
            )
        };
        let ((udp, udp_results), (tcp, tcp_results)) = tokio::select! {
            () = shutdown.cancelled() => return,
            done = rounds => done,
        };
        server.history.probed(udp_results, tcp_results);
        server.record(Transport::Udp, &udp, true);
        server.record(Transport::Tcp, &tcp, true);
        let settled = matches!((&udp, &tcp), (Outcome::Pass(_), Outcome::Pass(_)))
            && server.state() == crate::health::State::Up;
        next = started + if settled { interval } else { fast };
    }
}

/// The area whose NW-base servers answer `www.lineauth.mnw` over UDP or TCP (East when both
/// do). Every server is asked at once, so this takes at most `timeout`.
pub async fn detect_area(timeout: Duration) -> Option<oqsdns_config::Area> {
    let question: ProbeName = "www.lineauth.mnw".parse().expect("built-in probe");
    let mut asks = tokio::task::JoinSet::new();
    for area in oqsdns_config::Area::CONCRETE {
        for server in oqsdns_config::nw_base_servers(area) {
            for transport in [Transport::Udp, Transport::Tcp] {
                let question = question.clone();
                asks.spawn(async move {
                    (
                        area,
                        probe(server.0, transport, &question, timeout)
                            .await
                            .result
                            .is_ok(),
                    )
                });
            }
        }
    }
    let mut answered = Vec::new();
    while let Some(Ok((area, ok))) = asks.join_next().await {
        if ok {
            answered.push(area);
        }
    }
    oqsdns_config::Area::CONCRETE
        .into_iter()
        .find(|a| answered.contains(a))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{AAAA, CNAME};
    use hickory_proto::rr::{RData, Record};

    use super::*;

    fn reply(rcode: ResponseCode, truncated: bool, answers: Vec<RData>) -> Vec<u8> {
        let name = Name::from_ascii("www.lineauth.mnw.").unwrap();
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.metadata.truncation = truncated;
        message.add_query(Query::query(name.clone(), RecordType::AAAA));
        for data in answers {
            message.add_answer(Record::from_rdata(name.clone(), 60, data));
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn a_reply_is_judged_by_its_rcode_its_records_and_tc() {
        let aaaa: ProbeName = "www.lineauth.mnw AAAA".parse().unwrap();
        let nxdomain: ProbeName = "nx.lineauth.mnw AAAA NXDOMAIN".parse().unwrap();
        let addr = Ipv6Addr::new(0x2404, 0x1a8, 0, 0, 0, 0, 0, 1);
        let cname = RData::CNAME(CNAME(Name::from_ascii("other.mnw.").unwrap()));
        let ok = reply(
            ResponseCode::NoError,
            false,
            vec![cname.clone(), RData::AAAA(AAAA(addr))],
        );
        assert_eq!(judge(&aaaa, &ok, false), Ok(vec![IpAddr::V6(addr)]));
        let only_cname = reply(ResponseCode::NoError, false, vec![cname]);
        assert_eq!(
            judge(&aaaa, &only_cname, false),
            Err(ProbeError::NoRecord("AAAA".into()))
        );
        let servfail = reply(ResponseCode::ServFail, false, Vec::new());
        assert_eq!(judge(&aaaa, &servfail, false), Err(ProbeError::Rcode(2)));
        let nx = reply(ResponseCode::NXDomain, false, Vec::new());
        assert_eq!(judge(&nxdomain, &nx, false), Ok(Vec::new()));
        assert_eq!(judge(&nxdomain, &ok, false), Err(ProbeError::Rcode(0)));
        let tc = reply(ResponseCode::NoError, true, Vec::new());
        assert_eq!(judge(&aaaa, &tc, true), Ok(Vec::new()));
        // Cut in its answer section: unreadable, which passes only when TC says it was cut.
        let cut = &ok[..ok.len() - 5];
        assert_eq!(judge(&aaaa, cut, true), Ok(Vec::new()));
        assert_eq!(judge(&aaaa, cut, false), Err(ProbeError::Malformed));
    }
}
