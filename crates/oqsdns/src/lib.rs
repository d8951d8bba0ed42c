//! The oqsdns daemon: sockets, the servers' lifetime, health probes, reload, logging and signals
//! around the query path.
#![forbid(unsafe_code)]

pub mod check;
pub mod limits;
pub mod logging;
pub mod notify;
pub mod openwrt;
pub mod sockets;
pub mod status;
pub mod uci;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use oqsdns_config::{Area, Config, DefaultServer};
use oqsdns_core::health::{HealthRegistry, State};
use oqsdns_core::probe::{self, probe_loop};
use oqsdns_core::server::{serve_tcp, serve_udp, TcpLimits};
use oqsdns_core::{acl, forward, system, Handler, Runtime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use sockets::{bind_all, BindError, Listener};

/// Where `"system"` finds its nameservers.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The nameservers `"system"` stands for: resolv.conf minus the daemon's own addresses.
pub fn system_servers(resolv_conf: &Path, listening: &[SocketAddr]) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(resolv_conf).unwrap_or_else(|error| {
        warn!(%error, path = %resolv_conf.display(), "cannot read the system resolver list {}: {error}", resolv_conf.display());
        String::new()
    });
    let servers = system::parse_resolv_conf(&text);
    system::without_self(servers, listening, &acl::interface_addresses())
}

/// Replaces `area = "auto"` by the area whose NW-base servers answer (East when neither does).
pub async fn resolve_area(config: &Config) -> Config {
    if config.area != Area::Auto {
        return config.clone();
    }
    let timeout = config.health.timeout.0;
    match probe::detect_area(timeout).await {
        Some(area) => {
            info!(%area, "area auto: chose {area}, the area whose NW-base DNS answers");
            config.with_area(area)
        }
        None => {
            warn!("area auto: no NW-base DNS answers in either area; using east until one does");
            config.with_area(Area::East)
        }
    }
}

/// The daemon's state between listeners and configuration: the handler, the health of every
/// upstream, and the probe loops of the configuration in force.
#[derive(Debug)]
pub struct Daemon {
    handler: Arc<Handler>,
    registry: HealthRegistry,
    listening: Vec<SocketAddr>,
    /// The configuration in force as written (`area` may be `auto`), and the probes' token.
    current: Mutex<(Config, CancellationToken)>,
    shutdown: CancellationToken,
    reach: Arc<oqsdns_core::reach::ReachWatch>,
}

impl Daemon {
    /// Builds the runtime of `config` for a daemon listening on `listening`, resolving
    /// `area = "auto"`, and starts its probe loops.
    pub async fn start(
        config: &Config,
        listening: &[SocketAddr],
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let resolved = resolve_area(config).await;
        let registry = HealthRegistry::default();
        let runtime = build_runtime(&resolved, listening, &registry);
        log_table(&resolved, &runtime);
        let handler = Arc::new(Handler::new(runtime, config));
        let daemon = Arc::new(Self {
            handler,
            registry,
            listening: listening.to_vec(),
            current: Mutex::new((config.clone(), CancellationToken::new())),
            shutdown,
            reach: Arc::default(),
        });
        daemon.spawn_probes(&resolved);
        let (prefixes, interval) = (daemon.handler.prefixes(), config.health.interval.0);
        let stop = daemon.shutdown.clone();
        tokio::spawn(async move { prefixes.watch(interval, stop).await });
        tokio::spawn(watch_area(
            Arc::downgrade(&daemon),
            config.health.interval.0,
        ));
        tokio::spawn(watch_centre(Arc::downgrade(&daemon), config));
        daemon
    }

    /// The last TCP/443 round to the centre's addresses.
    pub fn reach(&self) -> Arc<oqsdns_core::reach::ReachWatch> {
        self.reach.clone()
    }

    /// The handler the listeners use.
    pub fn handler(&self) -> Arc<Handler> {
        self.handler.clone()
    }

    /// The runtime in force.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.handler.runtime()
    }

    /// Puts `config` in force (resolving `area = "auto"`): routes, servers and probes. Queries
    /// under way finish with the old runtime; servers that stay keep their health.
    pub async fn apply(&self, config: &Config) {
        let resolved = resolve_area(config).await;
        self.lock().0 = config.clone();
        self.apply_resolved(&resolved);
        // A reload also looks at the prefixes and the state file again (a confirmation).
        self.handler.prefixes().refresh();
    }

    fn apply_resolved(&self, resolved: &Config) {
        let runtime = build_runtime(resolved, &self.listening, &self.registry);
        log_table(resolved, &runtime);
        let kept: Vec<_> = runtime
            .groups()
            .iter()
            .flat_map(|g| g.servers.iter().cloned())
            .collect();
        self.handler.replace(runtime);
        self.registry.retain(&kept);
        let addrs: Vec<_> = kept.iter().map(|server| server.addr).collect();
        self.handler.shared().sockets.retain(&addrs);
        self.spawn_probes(resolved);
    }

    /// The configuration in force, as written.
    pub fn config(&self) -> Config {
        self.lock().0.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Config, CancellationToken)> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_probes(&self, config: &Config) {
        let token = self.shutdown.child_token();
        let old = std::mem::replace(&mut self.lock().1, token.clone());
        old.cancel();
        let (interval, timeout) = (config.health.interval.0, config.health.timeout.0);
        let runtime = self.handler.runtime();
        for (group, server) in runtime.servers() {
            let names = group.names.clone();
            tokio::spawn(probe_loop(
                server.clone(),
                names,
                interval,
                timeout,
                token.clone(),
            ));
        }
    }
}

/// Connects to TCP port 443 of the centre's addresses every health interval, the addresses
/// taken from the health probes' last answers, while an area's table is in force.
fn watch_centre(
    daemon: std::sync::Weak<Daemon>,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    use oqsdns_core::reach;
    let (interval, timeout) = (config.health.interval.0, config.health.timeout.0);
    let upgraded = daemon.upgrade();
    let (watch, shutdown) = match &upgraded {
        Some(d) => (d.reach.clone(), d.shutdown.clone()),
        None => (Arc::default(), CancellationToken::new()),
    };
    drop(upgraded);
    let source = move || {
        let Some(daemon) = daemon.upgrade() else {
            return Vec::new();
        };
        let runtime = daemon.runtime();
        if !Area::CONCRETE.contains(&runtime.area()) {
            return Vec::new();
        }
        let probes: Vec<_> = runtime
            .groups()
            .iter()
            .flat_map(|g| g.servers.iter())
            .map(|s| s.history.last_probes())
            .collect();
        let results: Vec<_> = probes
            .iter()
            .flat_map(|p| p.udp.iter().chain(&p.tcp))
            .collect();
        reach::targets_of(&results)
    };
    async move {
        watch
            .watch(source, reach::PORT, interval, timeout, shutdown)
            .await;
    }
}

/// With `area = "auto"`, chooses the area again whenever every NW-base server is down.
async fn watch_area(daemon: std::sync::Weak<Daemon>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        let Some(shutdown) = daemon.upgrade().map(|d| d.shutdown.clone()) else {
            return;
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(daemon) = daemon.upgrade() else {
            return;
        };
        let config = daemon.config();
        if config.area != Area::Auto {
            continue;
        }
        let runtime = daemon.runtime();
        let nw_base = runtime.groups().iter().find(|g| g.name == "nw-base");
        let all_down = nw_base.is_some_and(|g| g.servers.iter().all(|s| s.state() == State::Down));
        if all_down {
            warn!("area auto: every NW-base server is down; probing both areas again");
            let resolved = resolve_area(&config).await;
            daemon.apply_resolved(&resolved);
        }
    }
}

/// Builds the runtime of `config` for a daemon listening on `listening`.
pub fn build_runtime(
    config: &Config,
    listening: &[SocketAddr],
    registry: &HealthRegistry,
) -> Runtime {
    let system = system_for(config, Path::new(RESOLV_CONF), listening);
    Runtime::build(config, &system, registry)
}

/// What `"system"` stands for in `config`: [`system_servers`] when its default route names
/// `"system"` (else nothing, and `resolv_conf` is not read).
pub fn system_for(
    config: &Config,
    resolv_conf: &Path,
    listening: &[SocketAddr],
) -> Vec<SocketAddr> {
    if config.forward.default.contains(&DefaultServer::System) {
        system_servers(resolv_conf, listening)
    } else {
        Vec::new()
    }
}

/// Serves `config` on the already bound `listeners` until `shutdown` is cancelled, then waits for
/// the queries under way.
pub async fn run(
    config: &Config,
    listeners: Vec<Listener>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    if let Some(auto) = sockets::AutoListen::of(&config.server) {
        addrs.extend(sockets::would_bind(&auto));
    }
    let daemon = Daemon::start(config, &addrs, shutdown.clone()).await;
    serve(config, listeners, daemon.handler(), shutdown).await
}

/// Runs the UDP and TCP servers of every listener with `handler`; with `listen = ["auto"]`, also
/// of every address of the interfaces, following them as they come and go.
pub async fn serve(
    config: &Config,
    listeners: Vec<Listener>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let servers = Servers {
        limits: TcpLimits {
            max_connections: config.server.tcp_connections,
            per_client: config.server.tcp_connections_per_client,
            idle_timeout: config.server.tcp_idle_timeout.0,
            frame_timeout: config.server.tcp_frame_timeout.0,
        },
        handler,
        tasks: TaskTracker::new(),
    };
    let mut addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    for listener in listeners {
        servers.start(listener, shutdown.clone())?;
    }
    if let Some(auto) = sockets::AutoListen::of(&config.server) {
        let mut follower = sockets::Follower::new(auto, shutdown.clone());
        // Subscribed before the first reading, so that no address added in between is missed.
        let events = sockets::Events::subscribe();
        for (listener, token) in follower.rescan() {
            servers.start(listener, token)?;
        }
        addrs.extend(follower.addrs());
        if addrs.is_empty() {
            // Loopback is always among the addresses: none bound means another DNS server holds
            // the port everywhere, a configuration that cannot work.
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "listen \"auto\" could bind no address (each is held by another program or cannot be bound)",
            ));
        }
        servers
            .tasks
            .spawn(follow(follower, events, servers.clone(), shutdown.clone()));
    }
    servers.tasks.spawn(notify::watchdog(shutdown.clone()));
    notify::ready(&addrs);
    servers.tasks.close();
    servers.tasks.wait().await;
    Ok(())
}

/// What starts the servers of one listener.
#[derive(Clone)]
struct Servers {
    limits: TcpLimits,
    handler: Arc<Handler>,
    tasks: TaskTracker,
}

impl Servers {
    /// Starts the UDP and TCP servers of `listener`, until `stop`.
    fn start(&self, listener: Listener, stop: CancellationToken) -> std::io::Result<()> {
        let udp = tokio::net::UdpSocket::from_std(listener.udp)?;
        let tcp = tokio::net::TcpListener::from_std(listener.tcp)?;
        info!(addr = %listener.addr, "listening on {} over UDP and TCP", listener.addr);
        let limiter = self.handler.limiter();
        self.tasks.spawn(serve_udp(
            udp,
            self.handler.clone(),
            limiter.clone(),
            stop.clone(),
        ));
        self.tasks.spawn(serve_tcp(
            tcp,
            self.handler.clone(),
            self.limits,
            limiter,
            stop,
        ));
        Ok(())
    }
}

/// Keeps the listeners of `"auto"` in step with the interfaces' addresses until `shutdown`.
async fn follow(
    mut follower: sockets::Follower,
    mut events: sockets::Events,
    servers: Servers,
    shutdown: CancellationToken,
) {
    while events.next(&shutdown, follower.retry_in()).await {
        for (listener, token) in follower.rescan() {
            let addr = listener.addr;
            if let Err(error) = servers.start(listener, token.clone()) {
                warn!(%addr, %error, "cannot serve a new address");
                token.cancel();
            }
        }
    }
}

fn log_table(config: &Config, runtime: &Runtime) {
    info!(area = %config.area, "routing table for area {}", config.area);
    for route in config.routes_effective() {
        info!("route {}", forward::describe_route(&route));
    }
    let default = &runtime.groups()[0];
    let servers: Vec<String> = default.servers.iter().map(|s| s.addr.to_string()).collect();
    if servers.is_empty() {
        warn!("the default route has no servers: names outside the table get SERVFAIL");
    } else {
        info!("route default: every other name -> {}", servers.join(" "));
    }
}
