//! The oqsdns daemon: sockets, the servers' lifetime, logging and signals around the query path.
#![forbid(unsafe_code)]

pub mod logging;
pub mod notify;
pub mod sockets;
pub mod uci;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use oqsdns_config::Config;
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
        warn!(%error, path = %resolv_conf.display(), "cannot read the system resolver list");
        String::new()
    });
    let servers = system::parse_resolv_conf(&text);
    system::without_self(servers, listening, &acl::interface_addresses())
}

/// Builds the runtime of `config` for a daemon listening on `listening`.
pub fn build_runtime(config: &Config, listening: &[SocketAddr]) -> Runtime {
    let needs_system = config
        .forward
        .default
        .contains(&oqsdns_config::DefaultServer::System);
    let system = if needs_system {
        system_servers(Path::new(RESOLV_CONF), listening)
    } else {
        Vec::new()
    };
    Runtime::build(config, &system)
}

/// Serves `config` on the already bound `listeners` until `shutdown` is cancelled, then waits for
/// the queries under way.
pub async fn run(
    config: &Config,
    listeners: Vec<Listener>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    let runtime = build_runtime(config, &addrs);
    log_table(config, &runtime);
    let handler = Arc::new(Handler::new(runtime, config.server.max_inflight));
    serve(config, listeners, handler, shutdown).await
}

/// Runs the UDP and TCP servers of every listener with `handler`.
pub async fn serve(
    config: &Config,
    listeners: Vec<Listener>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = TcpLimits {
        max_connections: config.server.tcp_connections,
        idle_timeout: config.server.tcp_idle_timeout.0,
    };
    let tasks = TaskTracker::new();
    for listener in listeners {
        let udp = tokio::net::UdpSocket::from_std(listener.udp)?;
        let tcp = tokio::net::TcpListener::from_std(listener.tcp)?;
        info!(addr = %listener.addr, "listening on UDP and TCP");
        tasks.spawn(serve_udp(udp, handler.clone(), shutdown.clone()));
        tasks.spawn(serve_tcp(tcp, handler.clone(), limits, shutdown.clone()));
    }
    tasks.spawn(notify::watchdog(shutdown.clone()));
    notify::ready();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

fn log_table(config: &Config, runtime: &Runtime) {
    info!(area = %config.area, "routing table");
    for route in config.routes_effective() {
        info!("route {}", forward::describe_route(&route));
    }
    let default = &runtime.groups()[0];
    let servers: Vec<String> = default.servers.iter().map(ToString::to_string).collect();
    if servers.is_empty() {
        warn!("the default route has no servers: names outside the table get SERVFAIL");
    } else {
        info!("route default: every other name -> {}", servers.join(" "));
    }
}
