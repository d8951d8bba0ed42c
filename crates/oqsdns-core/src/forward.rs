//! Forwarding: a route's group of servers and the failover over them (order of health, hedged
//! races, the TCP try when UDP is silent). The [`Runtime`](crate::Runtime) calls [`fetch`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oqsdns_config::{ProbeName, Route, RouteOrigin};
use tracing::{debug, warn};

use crate::cache::Cache;
use crate::health::{self, HealthRegistry, Outcome, Plan, ServerHealth, Thresholds};
use crate::inflight::Found;
use crate::metrics::RouteStats;
use crate::rebind::Rebind;
use crate::throttle::Throttle;
use crate::upstream::{self, Transport};
use crate::wire::{self, Parsed, Rcode, Request};

/// A "route failed" warning is repeated at most this often per group.
const FAIL_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The servers that answer one route (or the default), in order of preference.
#[derive(Debug)]
pub struct Group {
    /// The route's name, `default` for the default group.
    pub name: String,
    /// Servers in order: primary, alternate, ...
    pub servers: Vec<Arc<ServerHealth>>,
    /// The health-probe questions for these servers.
    pub names: Vec<ProbeName>,
    /// True for a route of the table: its names never go to the default servers.
    pub split: bool,
    /// How long past expiry its answers may be served when every server fails.
    pub stale_for: Duration,
    /// Identifies the route and its servers, so cached answers of a route a reload changed are
    /// not served.
    pub fingerprint: u64,
    /// Answers and failovers counted for the status endpoint.
    pub stats: Arc<RouteStats>,
    warn_failed: Throttle,
}

impl Group {
    /// A group of servers, their health kept in `registry`.
    pub fn new(
        name: &str,
        servers: &[SocketAddr],
        names: Vec<ProbeName>,
        split: bool,
        registry: &HealthRegistry,
        limits: Thresholds,
    ) -> Self {
        Self {
            name: name.to_string(),
            servers: servers
                .iter()
                .map(|&a| registry.get(a, name, limits))
                .collect(),
            names,
            split,
            stale_for: Duration::ZERO,
            fingerprint: fingerprint(name, servers),
            stats: registry.route_stats(name),
            warn_failed: Throttle::new(FAIL_WARN_INTERVAL),
        }
    }

    /// Its servers, each once (a route may name a server twice).
    pub fn unique_servers(&self) -> Vec<&Arc<ServerHealth>> {
        let once = health::each_server_once(self.servers.iter().map(|s| ((), s)));
        once.into_iter().map(|(_, s)| s).collect()
    }
}

fn fingerprint(name: &str, servers: &[SocketAddr]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (name, servers).hash(&mut hasher);
    hasher.finish()
}

/// Asks the group's servers in order of health; the accepted reply, filtered and cached.
///
/// A server that has not answered within [`hedge_delay`] of being asked (4 × its usual
/// round-trip time, at least 100 ms) is not given up on: the next server is asked as well
/// and the first usable answer wins, so a primary that has just gone silent costs a client
/// about 100 ms instead of the whole timeout. Asks still under way when an answer wins run
/// on to their end in the background, so their outcome reaches the health table as before.
///
/// When UDP is dropped on the path while TCP passes (a firewall, a router's DNS feature),
/// every UDP try is silent: after the last one began, each server whose UDP try has been
/// silent for half a timeout is asked the same question over TCP too, within what is left
/// of the last UDP try's timeout. A route whose UDP is dropped is thus answered from its first query on,
/// and SERVFAIL, when nothing answers, comes no later than without the TCP tries. The probes,
/// woken by the UDP failures, then move the servers to TCP for every query.
pub(crate) async fn fetch(
    group: &Group,
    request: &Request<'_>,
    key: &[u8],
    timeout: Duration,
    rebind: Option<&Rebind>,
    cache: &Cache,
    sockets: &Arc<upstream::SocketPool>,
) -> Found {
    let mut tries = tries(&group.servers);
    let query: Arc<[u8]> = request.message().into();
    let parsed = request.parsed();
    // Each server being asked, with its place in `tries` (which is also the order of asking).
    let mut running: Vec<(Arc<ServerHealth>, usize, Ask)> = Vec::with_capacity(2);
    let mut hedge_at = None;
    // The next of `tries` to ask, and when the last UDP try began.
    let mut next = 0;
    let mut last_udp_began: Option<Instant> = None;
    loop {
        if running.is_empty() || hedge_at.is_some_and(|at| Instant::now() >= at) {
            // A server whose UDP try ended otherwise than in silence (an answer, a refusal)
            // is not asked over TCP: that would not help.
            while tries
                .get(next)
                .is_some_and(|t| t.fallback && tries[t.udp_place].answered)
            {
                next += 1;
            }
            let Some(t) = tries.get(next) else {
                if running.is_empty() {
                    break;
                }
                hedge_at = None;
                continue;
            };
            let (server, plan, fallback) = (t.server.clone(), t.plan, t.fallback);
            let place = next;
            next += 1;
            // A TCP try ends with the last UDP one: SERVFAIL comes no later than without it.
            let try_timeout = match (fallback, last_udp_began) {
                (true, Some(began)) => (began + timeout).saturating_duration_since(Instant::now()),
                _ => timeout,
            };
            if try_timeout.is_zero() {
                continue;
            }
            let delay = hedge_delay(&server, timeout);
            let asked = ask(
                server.clone(),
                plan,
                (query.clone(), parsed),
                try_timeout,
                sockets.clone(),
            );
            running.push((server, place, Box::pin(numbered(place, asked))));
            let now = Instant::now();
            if !fallback {
                tries[place].began = Some(now);
                last_udp_began = Some(now);
            }
            // With no server left to ask, nothing to race: no timer. A server is asked over
            // TCP once its UDP try has been silent for half a timeout, and the server just
            // asked has had its hedge delay (at most half a timeout) to answer.
            hedge_at = tries.get(next).map(|t| match tries[t.udp_place].began {
                Some(began) if t.fallback => {
                    (began + timeout / 2).max(now + delay.min(timeout / 2))
                }
                _ => now + delay,
            });
        }
        let any = std::future::poll_fn(|cx| {
            for (i, (_, _, ask)) in running.iter_mut().enumerate() {
                if let std::task::Poll::Ready(reply) = ask.as_mut().poll(cx) {
                    return std::task::Poll::Ready((i, reply));
                }
            }
            std::task::Poll::Pending
        });
        let hedge = async {
            match hedge_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let (done, (place, reply)) = tokio::select! {
            done = any => done,
            () = hedge => continue,
        };
        let (winner, _, _) = running.swap_remove(done);
        let (mut reply, mut records) = match reply {
            Ok(reply) => reply,
            Err(miss) => {
                if miss == Miss::Answered {
                    tries[place].answered = true;
                }
                // That server failed: the next one at once, unless another is still asked.
                if running.is_empty() {
                    hedge_at = None;
                }
                continue;
            }
        };
        for (server, asked_at, slower) in running {
            // Asked before the winner and still silent: it lost a race (unless it is the
            // winner itself, asked again over TCP).
            if asked_at < place && !Arc::ptr_eq(&server, &winner) {
                server.overtaken();
            }
            tokio::spawn(slower);
        }
        if place > 0 {
            group.stats.failovers.inc();
        }
        if let Some(rebind) = rebind.filter(|_| !group.split) {
            if let Some(nodata) = rebind.filter(&reply, &records) {
                records = wire::records(&nodata).unwrap_or_default();
                reply = nodata;
            }
        }
        cache.insert_parsed(key, &reply, &records, group.fingerprint, Instant::now());
        return Some(reply);
    }
    warn_failed(group);
    None
}

fn warn_failed(group: &Group) {
    if !group.warn_failed.ready() {
        return;
    }
    let servers: Vec<String> = group.servers.iter().map(|s| s.addr.to_string()).collect();
    if servers.is_empty() {
        warn!(route = %group.name, "route {} has no servers; answering SERVFAIL", group.name);
    } else {
        warn!(route = %group.name, servers = %servers.join(" "), "every server of route {} failed ({}); answering SERVFAIL", group.name, servers.join(" "));
    }
}

/// The tries of a question, in the order of asking: each server once with its plan, those that
/// are up in the table's order, then those that lost a race and have not answered since, then
/// those known to be down, so that once a failure is seen no query waits for it; then a TCP try
/// of each server asked over UDP, in the same order. One allocation per question.
fn tries(servers: &[Arc<ServerHealth>]) -> Vec<Try> {
    let tier = |t: &Try| match (t.plan, t.server.is_overtaken()) {
        (Plan::Last, _) => 2,
        (_, true) => 1,
        (_, false) => 0,
    };
    let mut tries: Vec<Try> = Vec::with_capacity(2 * servers.len());
    tries.extend(
        servers
            .iter()
            .map(|s| Try::new(s.clone(), s.plan(), false, 0)),
    );
    tries.sort_by_key(tier); // stable: the table's order within a tier
    for place in 0..tries.len() {
        tries[place].udp_place = place;
        if tries[place].plan == Plan::Udp {
            let server = tries[place].server.clone();
            tries.push(Try::new(server, Plan::TcpOnly, true, place));
        }
    }
    tries
}

/// One entry of the order of asking, and what became of it.
#[derive(Debug)]
struct Try {
    server: Arc<ServerHealth>,
    plan: Plan,
    /// A TCP try after the server's UDP try (at `udp_place` in the order) was silent.
    fallback: bool,
    /// The place of the server's first try (over UDP unless its plan says otherwise): this
    /// one's own, unless it is a fallback.
    udp_place: usize,
    /// When this try began, if it is a server's first (not a fallback).
    began: Option<Instant>,
    /// This try ended otherwise than in silence (an answer, a refusal).
    answered: bool,
}

impl Try {
    fn new(server: Arc<ServerHealth>, plan: Plan, fallback: bool, udp_place: usize) -> Self {
        Self {
            server,
            plan,
            fallback,
            udp_place,
            began: None,
            answered: false,
        }
    }
}

/// Servers are raced after at least this long (see [`Runtime::fetch`]).
pub const HEDGE_MIN: Duration = Duration::from_millis(100);

/// How long to wait for `server` before asking the next one too: 4 × its usual round-trip time,
/// at least [`HEDGE_MIN`], at most the whole `timeout` (also when nothing is known of it yet).
pub fn hedge_delay(server: &ServerHealth, timeout: Duration) -> Duration {
    server
        .srtt()
        .map_or(timeout, |srtt| (srtt * 4).max(HEDGE_MIN))
        .min(timeout)
}

/// One ask of one server, owning what it needs so that it can run on after another answered,
/// with its place in the order of asking.
type Ask = std::pin::Pin<Box<dyn std::future::Future<Output = (usize, Asked)> + Send>>;

/// `asked`, its output given its place in the order of asking. (Not `async move { (place,
/// asked.await) }`: an async block keeps the future it captured and the one it awaits in two
/// places, twice the size, 1,784 bytes, past malloc's per-thread cache.)
fn numbered(
    place: usize,
    asked: impl std::future::Future<Output = Asked>,
) -> impl std::future::Future<Output = (usize, Asked)> {
    use futures_util::FutureExt;
    asked.map(move |asked| (place, asked))
}

/// A usable reply and its records (found once, for the checks, the rebind filter and the
/// cache), or why there was none.
type Asked = Result<(Vec<u8>, Vec<wire::RecordAt>), Miss>;

/// Why a try gave no usable reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// Nothing came over UDP before the timeout: TCP may pass where UDP is dropped.
    UdpSilent,
    /// The server answered unusably, refused the connection, or failed over TCP.
    Answered,
}

/// One try of one server: its reply when usable (not SERVFAIL or REFUSED, records parse);
/// a [`Miss`] moves on to the next server. The outcome goes to the server's health.
async fn ask(
    server: Arc<ServerHealth>,
    plan: Plan,
    (query, parsed): (Arc<[u8]>, Parsed),
    timeout: Duration,
    sockets: Arc<upstream::SocketPool>,
) -> Asked {
    // Parsed once, by the listener: put together again, not parsed per server.
    let request = Request::from_parsed(&query, parsed).ok_or(Miss::Answered)?;
    let route = &server.route;
    let started = Instant::now();
    let tcp_only = plan == Plan::TcpOnly;
    let exchange =
        upstream::exchange_pooled(Some(&sockets), server.addr, &request, timeout, tcp_only);
    let reply = match exchange.await {
        Ok(reply) => reply,
        Err((transport, error)) => {
            debug!(%error, server = %server.addr, %route, %transport, "upstream failed");
            let timeout = matches!(error, upstream::UpstreamError::Timeout);
            server.stats.failed(transport, timeout);
            server.record(transport, &Outcome::Fail(error.to_string()), false);
            return Err(if timeout && transport == Transport::Udp {
                Miss::UdpSilent
            } else {
                Miss::Answered
            });
        }
    };
    let rtt = started.elapsed();
    server.record(reply.transport, &Outcome::Pass(rtt), false);
    server.stats.answered(reply.transport, rtt, tcp_only);
    if reply.transport == Transport::Udp {
        server.note_rtt(rtt);
    }
    let rcode = reply.info.rcode;
    if rcode == Rcode::ServFail as u8 || rcode == Rcode::Refused as u8 {
        debug!(rcode, server = %server.addr, %route, "upstream refused or failed");
        return Err(Miss::Answered);
    }
    let Some(records) = wire::records(&reply.bytes) else {
        debug!(server = %server.addr, %route, "malformed upstream reply");
        return Err(Miss::Answered);
    };
    Ok((reply.bytes, records))
}

/// One line per route of the effective table, for the start-up log and `config show`.
pub fn describe_route(route: &Route) -> String {
    let origin = match route.origin {
        RouteOrigin::Preset(area) => format!("{area} preset"),
        RouteOrigin::Config => "config".to_string(),
    };
    let domains: Vec<&str> = route.domains.iter().map(|d| d.as_str()).collect();
    let servers: Vec<String> = route.servers.iter().map(ToString::to_string).collect();
    format!(
        "{} ({origin}): {} -> {}",
        route.name,
        domains.join(" "),
        servers.join(" ")
    )
}

/// What a future allocated per upstream question may take: glibc's per-thread cache serves
/// chunks of up to 1,032 bytes, less what the allocation adds (a task's or a box's header).
#[cfg(test)]
pub(crate) const FUTURE_ROOM: usize = 1032 - 128;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Transport;

    #[test]
    fn up_servers_first_then_those_that_lost_a_race_then_the_down_ones() {
        let limits = Thresholds { rise: 1, fall: 1 };
        let server = |n: u16| {
            let addr = SocketAddr::from(([127, 0, 0, 1], n));
            Arc::new(ServerHealth::new(addr, "nw-base", limits))
        };
        let [down, overtaken, up, tcp_only] = [1, 2, 3, 4].map(server);
        for s in [&down, &overtaken, &up, &tcp_only] {
            s.record(
                Transport::Udp,
                &Outcome::Pass(Duration::from_millis(5)),
                true,
            );
            s.record(
                Transport::Tcp,
                &Outcome::Pass(Duration::from_millis(5)),
                true,
            );
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            down.record(transport, &Outcome::Fail("timed out".into()), true);
        }
        tcp_only.record(Transport::Udp, &Outcome::Fail("timed out".into()), true);
        tcp_only.overtaken();
        overtaken.overtaken();
        let order: Vec<(u16, Plan, bool, usize)> =
            tries(&[down, overtaken, up, tcp_only].map(|s| s.clone()))
                .iter()
                .map(|t| (t.server.addr.port(), t.plan, t.fallback, t.udp_place))
                .collect();
        assert_eq!(
            order,
            [
                (3, Plan::Udp, false, 0),
                (2, Plan::Udp, false, 1),
                (4, Plan::TcpOnly, false, 2), // lost a race, still asked over TCP only
                (1, Plan::Last, false, 3),
                // Then over TCP those asked over UDP, each after its own UDP try.
                (3, Plan::TcpOnly, true, 0),
                (2, Plan::TcpOnly, true, 1),
            ]
        );
    }

    /// The futures allocated for every upstream question stay small enough for glibc's
    /// per-thread cache (1,032 bytes at most): larger ones take malloc's slow path, which
    /// consolidates its free lists, and that was 4 % of a cache miss's CPU (docs/PERFORMANCE.md).
    /// (The handler's part: `handler::tests`.)
    #[test]
    fn the_futures_allocated_per_upstream_question_fit_mallocs_thread_cache() {
        let limits = Thresholds { rise: 1, fall: 1 };
        let registry = HealthRegistry::default();
        let server = SocketAddr::from(([127, 0, 0, 1], 5300));
        let group = Group::new("default", &[server], Vec::new(), false, &registry, limits);
        let cache = Cache::new(crate::cache::Limits {
            entries: 10,
            min_ttl: 0,
            max_ttl: 86400,
            keep_stale: Duration::ZERO,
        });
        let sockets = Arc::new(upstream::SocketPool::default());
        let query = [0u8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let request = Request::parse(&query).unwrap();
        let timeout = Duration::from_secs(1);
        let sizes = [
            (
                "the failover (boxed by the queries-in-flight join)",
                std::mem::size_of_val(&fetch(
                    &group,
                    &request,
                    &[0],
                    timeout,
                    None,
                    &cache,
                    &sockets,
                )),
            ),
            (
                "one server's try (boxed in the race)",
                std::mem::size_of_val(&numbered(
                    0,
                    ask(
                        group.servers[0].clone(),
                        Plan::Udp,
                        (query[..].into(), request.parsed()),
                        timeout,
                        sockets.clone(),
                    ),
                )),
            ),
        ];
        for (what, size) in sizes {
            assert!(
                size <= FUTURE_ROOM,
                "{what}: {size} bytes, more than {FUTURE_ROOM}"
            );
        }
    }
}
