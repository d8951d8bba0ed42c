//! Forwarding: the runtime built from a configuration (access list, routing table, upstream
//! groups) and the failover over a group's servers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oqsdns_config::{Area, Config, DefaultServer, ProbeName, Route, RouteOrigin};
use tracing::{debug, warn};

use crate::acl::Acl;
use crate::health::{HealthRegistry, Outcome, Plan, ServerHealth, Thresholds};
use crate::router::Router;
use crate::throttle::Throttle;
use crate::upstream::{self, Transport};
use crate::wire::{Rcode, Request, MAX_MESSAGE};

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
            warn_failed: Throttle::new(FAIL_WARN_INTERVAL),
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
        groups.push(Group::new(
            "default", &default, names, false, registry, limits,
        ));
        let mut router = Router::new(0);
        for route in &routes {
            let servers: Vec<SocketAddr> = route.servers.iter().map(|s| s.0).collect();
            let names = route.names.clone();
            groups.push(Group::new(
                &route.name,
                &servers,
                names,
                true,
                registry,
                limits,
            ));
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

    /// The client's answer to `request`, received over `transport`: forwarded to the name's
    /// group, or SERVFAIL when every server of the group failed.
    pub async fn resolve(&self, request: &Request<'_>, transport: Transport) -> Vec<u8> {
        let limit = match transport {
            Transport::Udp => request.udp_limit(self.udp_payload),
            Transport::Tcp => MAX_MESSAGE,
        };
        let group = self.group_for(request.qname());
        // Servers known to be down go last, so once a failure is detected no query waits for it.
        for last_resort in [false, true] {
            for server in &group.servers {
                let plan = server.plan();
                if (plan == Plan::Last) != last_resort {
                    continue;
                }
                if let Some(answer) = self.ask(server, plan, group, request, limit).await {
                    return answer;
                }
            }
        }
        self.warn_failed(group);
        request.reply(Rcode::ServFail, 0, self.udp_payload)
    }

    /// One try of one server; `None` moves on to the next.
    async fn ask(
        &self,
        server: &ServerHealth,
        plan: Plan,
        group: &Group,
        request: &Request<'_>,
        limit: usize,
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
        let answer = request.answer_from(&reply.bytes, limit, self.udp_payload);
        if answer.is_none() {
            debug!(server = %server.addr, route = %group.name, "malformed upstream reply");
        }
        answer
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
