//! The runtime: everything a query needs, built from one configuration (access list, routing
//! table, upstream groups) and swapped whole on reload, and what outlives it (cache, queries in
//! flight); the answer to a query from them. The failover over a group's servers is
//! [`forward`](crate::forward)'s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oqsdns_config::{Area, Config, DefaultServer};
use tracing::debug;

use crate::acl::Acl;
use crate::cache::{self, Cache};
use crate::forward::{self, Group};
use crate::health::{self, HealthRegistry, ServerHealth, Thresholds};
use crate::inflight::Inflight;
use crate::local::{self, Own};
use crate::metrics::Metrics;
use crate::rebind::Rebind;
use crate::router::Router;
use crate::upstream::{self, Transport};
use crate::wire::{Rcode, Request, MAX_MESSAGE};

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
    /// Counters for the status endpoint.
    pub metrics: Metrics,
    /// Connected UDP sockets to the upstream servers.
    pub sockets: Arc<upstream::SocketPool>,
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
            metrics: Metrics::default(),
            sockets: Arc::default(),
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
        let default = DefaultServer::expand(&config.forward.default, system);
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

    /// Every server of every group once, with the first group that names it.
    pub fn servers(&self) -> Vec<(&Group, &Arc<ServerHealth>)> {
        health::each_server_once(
            self.groups
                .iter()
                .flat_map(|g| g.servers.iter().map(move |s| (g, s))),
        )
    }

    /// Whether `client` may query.
    pub fn allows(&self, client: IpAddr) -> bool {
        self.acl.allows(client)
    }

    /// The group that answers a wire-format name.
    pub fn group_for(&self, qname: &[u8]) -> &Group {
        &self.groups[self.router.lookup(qname)]
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
        now: Instant,
    ) -> Option<Vec<u8>> {
        let group = self.group_for(request.qname());
        if !group.split {
            if let Some(answer) = local::answer(request, &shared.own, self.udp_payload) {
                group.stats.answered(transport, &answer);
                return Some(answer);
            }
        }
        let mut key = [0u8; cache::KEY_MAX];
        let key = cache::key_in(request, &mut key);
        let Some(hit) = shared.cache.get(key, group.fingerprint, now) else {
            shared.metrics.cache_misses.inc();
            return None;
        };
        let limit = self.limit(request, transport);
        let answer = request.answer_from(&hit.bytes, limit, self.udp_payload);
        if let Some(answer) = &answer {
            shared.metrics.cache_hits.inc();
            group.stats.answered(transport, answer);
        }
        answer
    }

    /// The answer to `request` from the name's group (after [`resolve_now`](Self::resolve_now)
    /// had none), fetched ([`forward::fetch`]) once for all identical queries under way; stale when every server
    /// fails and the route allows it, else SERVFAIL.
    pub async fn resolve_upstream(
        &self,
        request: &Request<'_>,
        transport: Transport,
        shared: &Shared,
    ) -> Vec<u8> {
        let group = self.group_for(request.qname());
        let answer = self
            .upstream_answer(group, request, transport, shared)
            .await;
        group.stats.answered(transport, &answer);
        answer
    }

    async fn upstream_answer(
        &self,
        group: &Group,
        request: &Request<'_>,
        transport: Transport,
        shared: &Shared,
    ) -> Vec<u8> {
        let limit = self.limit(request, transport);
        // On the heap (the queries-in-flight table holds it too, not a copy): this future is
        // held across the upstream exchange, and a key buffer of 260 bytes in it would make
        // every upstream task's allocation larger than malloc's per-thread cache takes.
        let key = cache::key(request);
        let rebind = self.rebind_protection.then_some(&shared.rebind);
        let found = shared
            .inflight
            .run(&key, || {
                forward::fetch(
                    group,
                    request,
                    &key,
                    self.timeout,
                    rebind,
                    &shared.cache,
                    &shared.sockets,
                )
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
                    shared.metrics.stale_answers.inc();
                    return answer;
                }
            }
        }
        request.reply(Rcode::ServFail, 0, self.udp_payload)
    }

    /// A reply of our own for `request` with `rcode`.
    pub fn reply(&self, request: &Request<'_>, rcode: Rcode) -> Vec<u8> {
        request.reply(rcode, 0, self.udp_payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_stands_for_its_servers_and_each_server_is_listed_once() {
        let config = Config::from_toml(
            "area = \"none\"\n[forward]\ndefault = [\"192.0.2.1\", \"system\", \"192.0.2.1\"]\n\
             [[route]]\nname = \"lab\"\ndomains = [\"lab.example\"]\nservers = [\"192.0.2.9\", \"192.0.2.1\"]\n",
        )
        .unwrap();
        let system: Vec<SocketAddr> = ["192.0.2.7:53", "192.0.2.1:53"]
            .map(|a| a.parse().unwrap())
            .to_vec();
        let runtime = Runtime::build(&config, &system, &HealthRegistry::default());
        let port = |a: &str| -> SocketAddr { a.parse().unwrap() };
        let addrs = |servers: &[&Arc<ServerHealth>]| -> Vec<SocketAddr> {
            servers.iter().map(|s| s.addr).collect()
        };
        let default = &runtime.groups()[0];
        assert_eq!(default.servers.len(), 4, "system expanded in its place");
        assert_eq!(
            addrs(&default.unique_servers()),
            [port("192.0.2.1:53"), port("192.0.2.7:53")]
        );
        let all: Vec<(&str, SocketAddr)> = runtime
            .servers()
            .iter()
            .map(|(g, s)| (g.name.as_str(), s.addr))
            .collect();
        assert_eq!(
            all,
            [
                ("default", port("192.0.2.1:53")),
                ("default", port("192.0.2.7:53")),
                ("lab", port("192.0.2.9:53")),
                ("lab", port("192.0.2.1:53")), // its own health in this route
            ]
        );
    }
}
