//! Is the centre reachable beyond the DNS? A TCP connection to port 443 of the IPv6 addresses
//! that `hweb.oqs.onshikaku.org` and `www.lineauth.mnw` resolve to, opened and closed at once:
//! no TLS, no HTTP. The centre drops ping (the guide's FAQ Q2), so this is how "names resolve
//! but the path is blocked" (a UTM or switch without IPv6, a firewall; p.2) is told apart from
//! a DNS fault.
//!
//! [`check`] runs once (`oqsdns check`); [`ReachWatch::watch`] repeats it at the health
//! interval for the status page, with the addresses the health probes last saw.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::probe_result::ProbeResult;

/// The names whose addresses are connected to: the system's web front and line authentication
/// (3-1 and 3-2 of the guide).
pub const CENTRE_NAMES: [&str; 2] = ["hweb.oqs.onshikaku.org", "www.lineauth.mnw"];
/// HTTPS.
pub const PORT: u16 = 443;
/// Addresses connected to at most in one round, however many the answers hold.
pub const MAX_TARGETS: usize = 8;

/// One address to connect to, and the name whose answer gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `hweb.oqs.onshikaku.org` or `www.lineauth.mnw`.
    pub name: String,
    /// A global IPv6 address of its answer.
    pub addr: IpAddr,
}

/// One connection's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// What was connected to.
    pub target: Target,
    /// The time to connect, or why it failed.
    pub result: Result<Duration, String>,
}

/// The targets in `answers` (a name and the addresses of its answer): the global IPv6 addresses
/// of [`CENTRE_NAMES`], each once, at most [`MAX_TARGETS`]. The guide's path is IPv6; the private
/// IPv4 addresses of the answers are not.
pub fn targets<'a>(answers: impl IntoIterator<Item = (&'a str, &'a [IpAddr])>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for (name, addrs) in answers {
        let name = name.trim_end_matches('.');
        if !CENTRE_NAMES.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            continue;
        }
        for addr in addrs {
            let global = match addr {
                IpAddr::V6(v6) => (v6.segments()[0] & 0xE000) == 0x2000,
                IpAddr::V4(_) => false,
            };
            if global && out.len() < MAX_TARGETS && !out.iter().any(|t| t.addr == *addr) {
                out.push(Target {
                    name: name.to_ascii_lowercase(),
                    addr: *addr,
                });
            }
        }
    }
    out
}

/// The targets in the answers of health probe rounds.
pub fn targets_of(results: &[&ProbeResult]) -> Vec<Target> {
    targets(results.iter().filter_map(|r| {
        r.result
            .as_ref()
            .ok()
            .map(|addrs| (r.probe.name.as_str(), addrs.as_slice()))
    }))
}

/// Opens a TCP connection to `addr` and closes it; the time it took, or why it failed within
/// `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            drop(stream);
            Ok(started.elapsed())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Connects to `port` of every target at once; takes at most `timeout`.
pub async fn check(targets: &[Target], port: u16, timeout: Duration) -> Vec<Reach> {
    let mut tasks = JoinSet::new();
    for (i, target) in targets.iter().enumerate() {
        let addr = SocketAddr::new(target.addr, port);
        tasks.spawn(async move { (i, connect(addr, timeout).await) });
    }
    let mut results: Vec<Option<Result<Duration, String>>> = vec![None; targets.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, result)) = joined {
            results[i] = Some(result);
        }
    }
    targets
        .iter()
        .zip(results)
        .map(|(target, result)| Reach {
            target: target.clone(),
            result: result.unwrap_or_else(|| Err("not tried".into())),
        })
        .collect()
}

/// The last round of the daemon's reachability loop.
#[derive(Debug, Default)]
pub struct ReachWatch {
    last: Mutex<Option<(SystemTime, Vec<Reach>)>>,
}

impl ReachWatch {
    /// When the last round ended and what it found; `None` before a round had targets.
    pub fn get(&self) -> Option<(SystemTime, Vec<Reach>)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every `interval` until `shutdown`, connects to port `port` of the targets `source` gives
    /// (the addresses the probes last saw; none when the centre is not to be checked). While
    /// there are none yet it looks again every second; without targets the last result is
    /// cleared.
    pub async fn watch(
        &self,
        source: impl Fn() -> Vec<Target>,
        port: u16,
        interval: Duration,
        timeout: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            let targets = source();
            let wait = if targets.is_empty() {
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Duration::from_secs(1).min(interval)
            } else {
                let round = tokio::select! {
                    () = shutdown.cancelled() => return,
                    round = check(&targets, port, timeout) => round,
                };
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((SystemTime::now(), round));
                interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn only_the_global_ipv6_addresses_of_the_centres_names_count() {
        let hweb: Vec<IpAddr> = vec![
            "2404:1a8:f583:1a10:2779:2395:6092:37fd".parse().unwrap(),
            "10.108.65.21".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        ];
        let lineauth: Vec<IpAddr> = vec!["2404:1a8:f583:af0::1".parse().unwrap()];
        let other: Vec<IpAddr> = vec!["2404:1a8:ff43:1612::f".parse().unwrap()];
        let got = targets([
            ("HWEB.oqs.onshikaku.org.", hweb.as_slice()),
            ("assv.asc.flets-east.jp", other.as_slice()),
            ("www.lineauth.mnw", lineauth.as_slice()),
            ("www.lineauth.mnw", lineauth.as_slice()),
        ]);
        assert_eq!(
            got,
            [
                Target {
                    name: "hweb.oqs.onshikaku.org".into(),
                    addr: hweb[0]
                },
                Target {
                    name: "www.lineauth.mnw".into(),
                    addr: lineauth[0]
                },
            ]
        );
        let many: Vec<IpAddr> = (1..100u16)
            .map(|i| IpAddr::V6(Ipv6Addr::new(0x2404, 0x1a8, 0, 0, 0, 0, 0, i)))
            .collect();
        assert_eq!(
            targets([("www.lineauth.mnw", many.as_slice())]).len(),
            MAX_TARGETS
        );
    }

    #[tokio::test]
    async fn a_listener_connects_and_a_closed_port_does_not() {
        let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("[::1]:0").unwrap();
            l.local_addr().unwrap()
        };
        let target = [Target {
            name: "www.lineauth.mnw".into(),
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        }];
        let round = check(&target, open.port(), Duration::from_secs(5)).await;
        assert!(round[0].result.is_ok(), "{round:?}");
        let round = check(&target, closed.port(), Duration::from_secs(5)).await;
        assert!(round[0].result.is_err(), "{round:?}");
    }
}
