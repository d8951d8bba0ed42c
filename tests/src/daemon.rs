//! The daemon in-process: bound on loopback random ports, stopped when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use oqsdns_config::{Config, DefaultServer, Listen, ServerAddr};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Where it listens (UDP and TCP), in the order of `server.listen`.
    pub addrs: Vec<SocketAddr>,
    /// The daemon's state, to inspect health or reload.
    pub daemon: Arc<oqsdns::Daemon>,
    /// Where the HTTP status endpoint listens, when `[status]` is set (its port may be 0).
    pub status: Option<SocketAddr>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    state_dir: Option<std::path::PathBuf>,
}

impl Daemon {
    /// Starts `config` listening on 127.0.0.1 at a random port.
    pub async fn start(config: Config) -> Self {
        Self::start_on(config, &["127.0.0.1:0"]).await
    }

    /// Starts `config` listening on `listen` (ports may be 0).
    pub async fn start_on(mut config: Config, listen: &[&str]) -> Self {
        config.server.listen = listen
            .iter()
            .map(|a| a.parse::<Listen>().unwrap())
            .collect();
        assert!(
            !config.forward.default.contains(&DefaultServer::System),
            "tests must name their default servers: \"system\" would leave loopback"
        );
        assert_eq!(
            config.area,
            oqsdns_config::Area::None,
            "the presets' servers are outside loopback: tests name their own routes"
        );
        // The prefix watch's state file: a folder of this daemon's, never the system's default.
        let mut state_dir = None;
        if config.health.state_file.is_none() {
            let dir = scratch_dir();
            config.health.state_file = Some(dir.join("state"));
            state_dir = Some(dir);
        }
        let addrs: Vec<SocketAddr> = config.server.addresses();
        let listeners = bind(&addrs);
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
        let stop = CancellationToken::new();
        let daemon = oqsdns::Daemon::start(&config, &addrs, stop.clone()).await;
        let status = config.status.as_ref().map(|s| {
            let listener = oqsdns::status::bind(s.listen).unwrap();
            let addr = listener.local_addr().unwrap();
            let serve =
                oqsdns::status::serve(listener, daemon.clone(), s.connections, stop.clone());
            tokio::spawn(async move { serve.await.unwrap() });
            addr
        });
        let task = tokio::spawn({
            let (handler, stop) = (daemon.handler(), stop.clone());
            async move {
                oqsdns::serve(&config, listeners, handler, stop)
                    .await
                    .unwrap()
            }
        });
        Self {
            addrs,
            daemon,
            status,
            stop,
            task: Some(task),
            state_dir,
        }
    }

    /// The health of server `index` of the route named `route` (`default` for the default).
    pub fn health(&self, route: &str, index: usize) -> Arc<oqsdns_core::health::ServerHealth> {
        let runtime = self.daemon.runtime();
        let group = runtime
            .groups()
            .iter()
            .find(|g| g.name == route)
            .expect("route exists");
        group.servers[index].clone()
    }

    /// The first listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Stops the daemon and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(dir) = &self.state_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A new empty folder under the system's temporary one.
fn scratch_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("oqsdns-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Binds `addrs`. With port 0 the TCP listener takes the port the kernel gave UDP, which a TCP
/// socket of another test may hold: then it tries again with a new port.
fn bind(addrs: &[SocketAddr]) -> Vec<oqsdns::Listener> {
    for _ in 0..50 {
        match oqsdns::bind_all(addrs) {
            Ok(listeners) => return listeners,
            Err(e) if e.source.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free port pair for {addrs:?}");
}

/// A configuration with no area and `default` as the default servers, for tests.
pub fn config_with_default(default: &[SocketAddr]) -> Config {
    let mut config = Config::default();
    config.forward.default = default
        .iter()
        .map(|a| DefaultServer::Addr(ServerAddr(*a)))
        .collect();
    config
}
