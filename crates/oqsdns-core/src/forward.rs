//! Forwarding: the runtime built from a configuration (access list, routing table, upstream
//! groups) and the failover over a group's servers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oqsdns_config::{Area, Config, DefaultServer, ProbeName, Route, RouteOrigin};
use tracing::{debug, warn};

use crate::acl::Acl;
use crate::cache::{self, Cache};
use crate::health::{HealthRegistry, Outcome, Plan, ServerHealth, Thresholds};
use crate::inflight::{Found, Inflight};
use crate::local::{self, Own};
use crate::rebind::Rebind;
use crate::router::Router;
use crate::throttle::Throttle;
use crate::upstream::{self, Transport};
use crate::wire::{self, Rcode, Request, MAX_MESSAGE};

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
            warn_failed: Throttle::new(FAIL_WARN_INTERVAL),
        }
    }
}

fn fingerprint(name: &str, servers: &[SocketAddr]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (name, servers).hash(&mut hasher);
    hasher.finish()
}

/// What outlives one configuration: the cache, the queries in flight, the rebind filter's log,
/// and the host's own names.
#[derive(Debug)]
pub struct Shared {
    /// The answer cache.
    pub cache: Cache,
    /// Identical queries under way.
    pub inflight: Inflight,
    /// The rebind filter.
    pub rebind: Rebind,
    /// The host's name and addresses, for local answers.
    pub own: Own,
}

impl Shared {
    /// State for a daemon with `config`'s cache settings.
    pub fn new(config: &Config) -> Self {
        let c = &config.cache;
        let keep_stale = c
            .serve_stale
            .0
            .unwrap_or_default()
            .max(c.serve_stale_default.0.unwrap_or_default());
        let limits = cache::Limits {
            entries: c.entries,
            min_ttl: c.min_ttl,
            max_ttl: c.max_ttl,
            keep_stale,
        };
        Self {
            cache: Cache::new(limits),
            inflight: Inflight::default(),
            rebind: Rebind::default(),
            own: Own::default(),
        }
    }
}

/// Everything a query needs, built from one configuration; swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    area: Area,
    acl: Acl,
    router: Router,
    groups: Vec<Group>,
    timeout: Duration,
    udp_payload: u16,
    rebind_protection: bool,
}

impl Runtime {
    /// Builds the runtime. `system` holds the nameservers that `"system"` stands for, with the
    /// daemon's own addresses already removed.
    pub fn build(config: &Config, system: &[SocketAddr], registry: &HealthRegistry) -> Self {
        let limits = Thresholds {
            rise: config.health.rise,
            fall: config.health.fall,
        };
        let routes = config.routes_effective();
        let mut groups: Vec<Group> = Vec::with_capacity(routes.len() + 1);
        let default: Vec<SocketAddr> = config
            .forward
            .default
            .iter()
            .flat_map(|s| match s {
                DefaultServer::System => system.to_vec(),
                DefaultServer::Addr(a) => vec![a.0],
            })
            .collect();
        let names = config.forward.names.clone();
        let mut group = Group::new("default", &default, names, false, registry, limits);
        group.stale_for = config.cache.serve_stale_default.0.unwrap_or_default();
        groups.push(group);
        let mut router = Router::new(0);
        for route in &routes {
            let servers: Vec<SocketAddr> = route.servers.iter().map(|s| s.0).collect();
            let names = route.names.clone();
            let mut group = Group::new(&route.name, &servers, names, true, registry, limits);
            group.stale_for = config.cache.serve_stale.0.unwrap_or_default();
            groups.push(group);
            for domain in &route.domains {
                router.insert(domain.as_str(), groups.len() - 1);
            }
        }
        Self {
            area: config.area,
            acl: Acl::new(&config.server.allow),
            router,
            groups,
            timeout: config.forward.timeout.0,
            udp_payload: config.server.udp_payload,
            rebind_protection: config.forward.rebind_protection,
        }
    }

    /// The area whose table is in force.
    pub fn area(&self) -> Area {
        self.area
    }

    /// The largest UDP answer the daemon sends.
    pub fn udp_payload(&self) -> u16 {
        self.udp_payload
    }

    /// The upstream groups; index 0 is the default.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Whether `client` may query.
    pub fn allows(&self, client: IpAddr) -> bool {
        self.acl.allows(client)
    }

    /// The group that answers a wire-format name.
    pub fn group_for(&self, qname: &[u8]) -> &Group {
        &self.groups[self.router.lookup(qname)]
    }

    /// The client's answer to `request`, received over `transport`: a local answer, a cached
    /// one, or the name's group's, fetched once for all identical queries under way; stale when
    /// every server fails and the route allows it, else SERVFAIL.
    pub async fn resolve(
        &self,
        request: &Request<'_>,
        transport: Transport,
        shared: &Shared,
    ) -> Vec<u8> {
        match self.resolve_now(request, transport, shared) {
            Some(answer) => answer,
            None => self.resolve_upstream(request, transport, shared).await,
        }
    }

    fn limit(&self, request: &Request<'_>, transport: Transport) -> usize {
        match transport {
            Transport::Udp => request.udp_limit(self.udp_payload),
            Transport::Tcp => MAX_MESSAGE,
        }
    }

    /// The answer to `request` without an upstream: a local answer or a fresh cached one.
    pub fn resolve_now(
        &self,
        request: &Request<'_>,
        transport: Transport,
        shared: &Shared,
    ) -> Option<Vec<u8>> {
        let group = self.group_for(request.qname());
        if !group.split {
            if let Some(answer) = local::answer(request, &shared.own, self.udp_payload) {
                return Some(answer);
            }
        }
        let key = cache::key(request);
        let hit = shared.cache.get(&key, group.fingerprint, Instant::now())?;
        let limit = self.limit(request, transport);
        request.answer_from(&hit.bytes, limit, self.udp_payload)
    }

    /// The answer to `request` from the name's group (after [`resolve_now`](Self::resolve_now)
    /// had none), fetched once for all identical queries under way; stale when every server
    /// fails and the route allows it, else SERVFAIL.
    pub async fn resolve_upstream(
        &self,
        request: &Request<'_>,
        transport: Transport,
        shared: &Shared,
    ) -> Vec<u8> {
        let limit = self.limit(request, transport);
        let group = self.group_for(request.qname());
        let key = cache::key(request);
        let found = shared
            .inflight
            .run(key.clone(), || {
                self.fetch(group, request, key.clone(), shared)
            })
            .await;
        if let Some(reply) = found {
            if let Some(answer) = request.answer_from(&reply, limit, self.udp_payload) {
                return answer;
            }
        }
        if group.stale_for > Duration::ZERO {
            if let Some(hit) =
                shared
                    .cache
                    .get_stale(&key, group.fingerprint, Instant::now(), group.stale_for)
            {
                if let Some(answer) = request.answer_from(&hit.bytes, limit, self.udp_payload) {
                    debug!(route = %group.name, "every server failed; answering stale");
                    return answer;
                }
            }
        }
        request.reply(Rcode::ServFail, 0, self.udp_payload)
    }

    /// Asks the group's servers in order of health; the accepted reply, filtered and cached.
    async fn fetch(
        &self,
        group: &Group,
        request: &Request<'_>,
        key: cache::Key,
        shared: &Shared,
    ) -> Found {
        // Servers known to be down go last, so once a failure is detected no query waits for it.
        for last_resort in [false, true] {
            for server in &group.servers {
                let plan = server.plan();
                if (plan == Plan::Last) != last_resort {
                    continue;
                }
                if let Some(mut reply) = self.ask(server, plan, group, request).await {
                    if !group.split && self.rebind_protection {
                        if let Some(nodata) = shared.rebind.filter(&reply) {
                            reply = nodata;
                        }
                    }
                    shared
                        .cache
                        .insert(key, &reply, group.fingerprint, Instant::now());
                    return Some(reply.into());
                }
            }
        }
        self.warn_failed(group);
        None
    }

    /// One try of one server: its reply when usable (not SERVFAIL or REFUSED, records parse);
    /// `None` moves on to the next server.
    async fn ask(
        &self,
        server: &ServerHealth,
        plan: Plan,
        group: &Group,
        request: &Request<'_>,
    ) -> Option<Vec<u8>> {
        let started = Instant::now();
        let tcp_only = plan == Plan::TcpOnly;
        let reply = match upstream::exchange(server.addr, request, self.timeout, tcp_only).await {
            Ok(reply) => reply,
            Err((transport, error)) => {
                debug!(%error, server = %server.addr, route = %group.name, %transport, "upstream failed");
                server.record(transport, &Outcome::Fail(error.to_string()), false);
                return None;
            }
        };
        server.record(reply.transport, &Outcome::Pass(started.elapsed()), false);
        let rcode = reply.info.rcode;
        if rcode == Rcode::ServFail as u8 || rcode == Rcode::Refused as u8 {
            debug!(rcode, server = %server.addr, route = %group.name, "upstream refused or failed");
            return None;
        }
        if wire::records(&reply.bytes).is_none() {
            debug!(server = %server.addr, route = %group.name, "malformed upstream reply");
            return None;
        }
        Some(reply.bytes)
    }

    /// A reply of our own for `request` with `rcode`.
    pub fn reply(&self, request: &Request<'_>, rcode: Rcode) -> Vec<u8> {
        request.reply(rcode, 0, self.udp_payload)
    }

    fn warn_failed(&self, group: &Group) {
        if !group.warn_failed.ready() {
            return;
        }
        let servers: Vec<String> = group.servers.iter().map(|s| s.addr.to_string()).collect();
        if servers.is_empty() {
            warn!(route = %group.name, "route has no servers; answering SERVFAIL");
        } else {
            warn!(route = %group.name, servers = %servers.join(" "), "every server of the route failed; answering SERVFAIL");
        }
    }
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
