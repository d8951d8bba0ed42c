//! Health probes: the guide's step-7 questions asked of one server over one transport, and the
//! loop that asks them every interval. `oqsdns check` runs the same probes once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use oqsdns_config::ProbeName;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::health::{Outcome, ServerHealth};
pub use crate::probe_result::{ProbeError, ProbeResult};
use crate::upstream::{self, Transport};
use crate::wire::{self, Rcode};

/// Asks `server` one probe question over `transport`.
pub async fn probe(
    server: SocketAddr,
    transport: Transport,
    probe: &ProbeName,
    timeout: Duration,
) -> ProbeResult {
    let started = Instant::now();
    let id = rand::random::<u16>();
    let qname = wire::name_to_wire(&probe.name);
    let query = wire::build_query(id, &qname, probe.rtype);
    let question = &query[wire::HEADER_LEN..wire::HEADER_LEN + qname.len() + 4];
    let deadline = started + timeout;
    let reply = match transport {
        Transport::Udp => upstream::udp(server, &query, id, question, deadline).await,
        Transport::Tcp => upstream::tcp(server, &query, id, question, deadline).await,
    };
    let result = match reply {
        Err(error) => Err(ProbeError::from(error)),
        Ok(reply) => judge(probe, &reply.bytes, reply.info.rcode, reply.info.truncated),
    };
    ProbeResult {
        probe: probe.clone(),
        result,
        latency: started.elapsed(),
    }
}

fn judge(
    probe: &ProbeName,
    reply: &[u8],
    rcode: u8,
    truncated: bool,
) -> Result<Vec<IpAddr>, ProbeError> {
    if let Some(expected) = probe.rcode {
        return if rcode == expected {
            Ok(Vec::new())
        } else {
            Err(ProbeError::Rcode(rcode.into()))
        };
    }
    if rcode != Rcode::NoError as u8 {
        return Err(ProbeError::Rcode(rcode.into()));
    }
    if truncated {
        return Ok(Vec::new()); // the server answered over this transport; TC is not a failure
    }
    let records = wire::answer_records(reply).ok_or(ProbeError::Malformed)?;
    if !records.iter().any(|(rtype, _)| *rtype == probe.rtype) {
        return Err(ProbeError::NoRecord(probe.type_name()));
    }
    Ok(records
        .iter()
        .filter_map(|(rtype, data)| address(*rtype, data))
        .collect())
}

fn address(rtype: u16, data: &[u8]) -> Option<IpAddr> {
    match (rtype, data.len()) {
        (1, 4) => Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]).into()),
        (28, 16) => Some(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?).into()),
        _ => None,
    }
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
