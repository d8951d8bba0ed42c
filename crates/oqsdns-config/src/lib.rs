//! The oqsdns configuration: the TOML schema, the guide's area presets and validation.
//!
//! [`Config::from_toml`] parses and validates a string; [`Config::load`] reads a file and names it
//! in every error. Syntax and value errors keep the TOML parser's line and column. No I/O beyond
//! reading the file happens here: `"system"` and `"local"` are resolved by the daemon.
#![forbid(unsafe_code)]

mod preset;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use preset::{nw_base_servers, preset_routes, Route, RouteOrigin};
pub use values::{
    AllowEntry, DefaultServer, Domain, HumanDuration, Listen, ProbeName, ServerAddr, Window,
    DNS_PORT,
};

/// Which of the guide's per-domain tables the daemon adds to the configured routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// NTT East (東日本): NGN DNS for flets-east.jp and the East NW-base DNS.
    East,
    /// NTT West (西日本): NGN DNS for flets-west.jp and the West NW-base DNS.
    West,
    /// Probe both areas' NW-base servers at start and take the one that answers.
    Auto,
    /// No built-in table: only the configured routes.
    #[default]
    None,
}

impl Area {
    /// The two areas `auto` chooses between.
    pub const CONCRETE: [Area; 2] = [Area::East, Area::West];
}

impl std::str::FromStr for Area {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "east" => Ok(Self::East),
            "west" => Ok(Self::West),
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "{s:?} is not an area; expected east, west, auto or none"
            )),
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::East => "east",
            Self::West => "west",
            Self::Auto => "auto",
            Self::None => "none",
        })
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The guide's table to add: east, west, auto or none.
    #[serde(default)]
    pub area: Area,
    /// Where the daemon listens and whom it serves.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where names outside every route go.
    #[serde(default)]
    pub forward: ForwardConfig,
    /// Routes added to the area's table; a route for one of its domains replaces that entry.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// How upstream servers are probed.
    #[serde(default)]
    pub health: HealthConfig,
    /// The answer cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The HTTP status endpoint; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusConfig>,
}

/// `[status]`: the HTTP status page, `/health` JSON and Prometheus `/metrics`, served to the
/// clients `server.allow` lets in.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Address and port to serve HTTP on, such as `127.0.0.1:9153` or a LAN address.
    pub listen: std::net::SocketAddr,
    /// HTTP connections served at once; past it new ones are closed at once.
    #[serde(default = "default_status_connections")]
    pub connections: usize,
    /// List the clients seen recently (address, last query, queries, whether their last query
    /// for a name of the guide's table was answered) on the page and in `/health`.
    #[serde(default = "default_true")]
    pub clients: bool,
}

/// The port Prometheus exporters of DNS servers use (CoreDNS's `prometheus` plugin).
pub const STATUS_PORT: u16 = 9153;

fn default_status_connections() -> usize {
    16
}

impl StatusConfig {
    /// The endpoint on `listen` with the default limits.
    pub fn on(listen: std::net::SocketAddr) -> Self {
        Self {
            listen,
            connections: default_status_connections(),
            clients: true,
        }
    }
}

/// `[cache]`: answers kept in memory, and served stale when every server of a route fails.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Answers kept at most; 0 disables the cache.
    #[serde(default = "default_entries")]
    pub entries: usize,
    /// How long past expiry an answer of the area's routes (and `[[route]]`s) may be served
    /// when every server of the route fails (RFC 8767), or "off".
    #[serde(default = "default_serve_stale")]
    pub serve_stale: Window,
    /// The same for the default servers; "off" by default.
    #[serde(default = "default_off")]
    pub serve_stale_default: Window,
    /// Lowest lifetime given to a cached answer, in seconds.
    #[serde(default)]
    pub min_ttl: u32,
    /// Highest lifetime given to a cached answer, in seconds.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
}

fn default_entries() -> usize {
    10_000
}

fn default_serve_stale() -> Window {
    Window(Some(Duration::from_secs(86_400)))
}

fn default_off() -> Window {
    Window(None)
}

fn default_max_ttl() -> u32 {
    86_400
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            entries: default_entries(),
            serve_stale: default_serve_stale(),
            serve_stale_default: default_off(),
            min_ttl: 0,
            max_ttl: default_max_ttl(),
        }
    }
}

/// `[health]`: the probe loop that runs the guide's check suite against every upstream.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between two probes of one server.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// How long one probe waits for its answer.
    #[serde(default = "default_probe_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive passes that mark a server up again.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that mark a server down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// The state file, where the prefix watch (FAQ Q18) keeps the line's prefixes across
    /// restarts. `$STATE_DIRECTORY/state` wins when systemd sets it (`StateDirectory=`); without
    /// either, `/var/lib/oqsdns/state` where that folder exists (the unit's), else
    /// `/etc/oqsdns/state` (persistent on OpenWrt, whose `/var` is a tmpfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<std::path::PathBuf>,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_probe_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_probe_timeout(),
            rise: default_rise(),
            fall: default_fall(),
            state_file: None,
        }
    }
}

/// `[server]`: listeners, access control and limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where to serve UDP and TCP: addresses, and `"auto"` for each address of the interfaces
    /// (bound one by one and followed as they come and go).
    #[serde(default = "default_listen", deserialize_with = "values::non_empty")]
    pub listen: Vec<Listen>,
    /// With `"auto"`: the interfaces whose addresses are served (kernel names such as `br-lan`,
    /// `eth0`); empty for every interface. Loopback is always served.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Clients allowed to query; everyone else gets REFUSED.
    #[serde(default = "default_allow")]
    pub allow: Vec<AllowEntry>,
    /// Queries being answered at once; past it new queries get REFUSED.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Open TCP client connections; past it new connections are closed at once.
    #[serde(default = "default_tcp_connections")]
    pub tcp_connections: usize,
    /// A TCP client connection with no query for this long is closed.
    #[serde(default = "default_tcp_idle_timeout")]
    pub tcp_idle_timeout: HumanDuration,
    /// Largest UDP answer sent to a client, whatever EDNS size it offers (512 to 4096).
    #[serde(default = "default_udp_payload")]
    pub udp_payload: u16,
    /// Queries per second one client address may send over UDP and TCP together; 0 turns the
    /// per-client rate limit off.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Queries a client may send at once above `rate` after a quiet spell (a browser opening a
    /// page). At least 1 when `rate` is set.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Whether loopback clients (a forwarder on the same host, such as OpenWrt's dnsmasq, and
    /// local tools) count against `rate` as well; by default they are not limited.
    #[serde(default)]
    pub rate_loopback: bool,
    /// Forwarders in front of the daemon (a router's DNS proxy): each speaks for a whole clinic,
    /// so it has `forwarder_rate` and `forwarder_burst` instead of `rate` and `burst`.
    #[serde(default)]
    pub forwarders: Vec<std::net::IpAddr>,
    /// Queries per second a forwarder may send; 0: no limit.
    #[serde(default = "default_forwarder_rate")]
    pub forwarder_rate: u32,
    /// A forwarder's burst above `forwarder_rate`.
    #[serde(default = "default_forwarder_burst")]
    pub forwarder_burst: u32,
    /// Open TCP connections one client address may hold; past it its new ones are closed at once.
    #[serde(default = "default_tcp_connections_per_client")]
    pub tcp_connections_per_client: usize,
    /// Once the first byte of a TCP query has arrived, the whole query must arrive within this
    /// time or the connection is closed: a client trickling bytes cannot hold it open.
    #[serde(default = "default_tcp_frame_timeout")]
    pub tcp_frame_timeout: HumanDuration,
}

impl ServerConfig {
    /// The addresses of `listen` written out, in order.
    pub fn addresses(&self) -> Vec<std::net::SocketAddr> {
        let addrs = self.listen.iter().filter_map(|l| match l {
            Listen::Addr(addr) => Some(addr.0),
            Listen::Auto(_) => None,
        });
        addrs.collect()
    }

    /// The ports of the `"auto"` entries of `listen`.
    pub fn auto_ports(&self) -> Vec<u16> {
        let ports = self.listen.iter().filter_map(|l| match l {
            Listen::Auto(port) => Some(*port),
            Listen::Addr(_) => None,
        });
        ports.collect()
    }
}

/// `[forward]`: the default route and the upstream timeout.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Servers for names outside every route, tried in order.
    #[serde(default = "default_forward", deserialize_with = "values::non_empty")]
    pub default: Vec<DefaultServer>,
    /// How long one try waits before the next server is tried.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Health-probe questions for the default servers.
    #[serde(default = "default_root_probe")]
    pub names: Vec<ProbeName>,
    /// Remove private, loopback and link-local addresses from the default servers' answers
    /// (DNS rebinding); the routes' answers, such as the NW-base's 10.x addresses, are exempt.
    #[serde(default = "default_true")]
    pub rebind_protection: bool,
}

fn default_true() -> bool {
    true
}

fn default_root_probe() -> Vec<ProbeName> {
    vec![". NS".parse().expect("built-in probe")]
}

/// `[[route]]`: a set of domains and the servers that answer for them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A name for logs and status; defaults to the first domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The domains (and every name under them) that this route answers.
    #[serde(deserialize_with = "values::non_empty")]
    pub domains: Vec<Domain>,
    /// The servers, in order of preference: primary first, then alternates.
    #[serde(deserialize_with = "values::non_empty")]
    pub servers: Vec<ServerAddr>,
    /// Health-probe questions for these servers; `. NS` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<ProbeName>,
}

fn default_listen() -> Vec<Listen> {
    ["[::]:53", "0.0.0.0:53"]
        .iter()
        .map(|s| s.parse().expect("built-in address"))
        .collect()
}

fn default_allow() -> Vec<AllowEntry> {
    [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "local",
    ]
    .iter()
    .map(|s| s.parse().expect("built-in network"))
    .collect()
}

fn default_max_inflight() -> usize {
    1024
}

fn default_tcp_connections() -> usize {
    256
}

fn default_tcp_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_udp_payload() -> u16 {
    1232
}

/// A busy clinic PC's browser sends a few hundred queries when it opens a page and far fewer after.
fn default_rate() -> u32 {
    200
}

fn default_burst() -> u32 {
    1000
}

/// A clinic of about fifty terminals, each at the per-client defaults.
fn default_forwarder_rate() -> u32 {
    10_000
}

fn default_forwarder_burst() -> u32 {
    50_000
}

fn default_tcp_connections_per_client() -> usize {
    16
}

fn default_tcp_frame_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

fn default_forward() -> Vec<DefaultServer> {
    vec![DefaultServer::System]
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            interfaces: Vec::new(),
            allow: default_allow(),
            max_inflight: default_max_inflight(),
            tcp_connections: default_tcp_connections(),
            tcp_idle_timeout: default_tcp_idle_timeout(),
            udp_payload: default_udp_payload(),
            rate: default_rate(),
            burst: default_burst(),
            rate_loopback: false,
            forwarders: Vec::new(),
            forwarder_rate: default_forwarder_rate(),
            forwarder_burst: default_forwarder_burst(),
            tcp_connections_per_client: default_tcp_connections_per_client(),
            tcp_frame_timeout: default_tcp_frame_timeout(),
        }
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            default: default_forward(),
            timeout: default_timeout(),
            names: default_root_probe(),
            rebind_protection: true,
        }
    }
}

impl Default for Config {
    /// The built-in configuration used when no file is given.
    fn default() -> Self {
        Self {
            area: Area::default(),
            server: ServerConfig::default(),
            forward: ForwardConfig::default(),
            routes: Vec::new(),
            health: HealthConfig::default(),
            cache: CacheConfig::default(),
            status: None,
        }
    }
}

/// Why a configuration was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong form; the message has line and column.
    #[error("{}{source}", origin_prefix(path))]
    Parse {
        /// The file, when there is one.
        path: Option<PathBuf>,
        /// The parser's error, with its position.
        source: toml::de::Error,
    },
    /// The values parse but do not make a working configuration.
    #[error("{}{message}", origin_prefix(path))]
    Invalid {
        /// The file, when there is one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
}

fn origin_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl ConfigError {
    fn with_path(self, file: &Path) -> Self {
        let path = Some(file.to_path_buf());
        match self {
            Self::Parse { source, .. } => Self::Parse { path, source },
            Self::Invalid { message, .. } => Self::Invalid { path, message },
            other => other,
        }
    }
}

impl Config {
    /// Parses and validates a configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: None, source })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| e.with_path(path))
    }

    /// Checks what the schema alone cannot: duplicates, ranges, an empty allow list.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| {
            Err(ConfigError::Invalid {
                path: None,
                message,
            })
        };
        if self.server.listen.is_empty() {
            return invalid("server.listen is empty; expected at least one address".into());
        }
        for (i, addr) in self.server.listen.iter().enumerate() {
            if self.server.listen[..i].contains(addr) {
                return invalid(format!("server.listen has {addr} twice"));
            }
        }
        if self.cache.min_ttl > self.cache.max_ttl {
            return invalid("cache.min_ttl is above cache.max_ttl".into());
        }
        if self.health.rise == 0 || self.health.fall == 0 {
            return invalid("health.rise and health.fall must be at least 1".into());
        }
        if self.server.allow.is_empty() {
            return invalid("server.allow is empty: no client could be served".into());
        }
        if self.server.max_inflight == 0 || self.server.tcp_connections == 0 {
            return invalid(
                "server.max_inflight and server.tcp_connections must be at least 1".into(),
            );
        }
        for addr in self.server.addresses() {
            if addr.ip().is_unspecified() && self.server.auto_ports().contains(&addr.port()) {
                return invalid(format!(
                    "server.listen has both {addr} and \"auto\" on port {}: the wildcard takes the port from every address; keep one of them",
                    addr.port()
                ));
            }
        }
        if self.server.interfaces.iter().any(|i| i.trim().is_empty()) {
            return invalid("server.interfaces has an empty name".into());
        }
        if !self.server.interfaces.is_empty() && self.server.auto_ports().is_empty() {
            return invalid(
                "server.interfaces is set but server.listen has no \"auto\" entry to use it".into(),
            );
        }
        if self.server.forwarder_rate > 0 && self.server.forwarder_burst == 0 {
            return invalid("server.forwarder_burst is 0; expected at least 1 (or server.forwarder_rate = 0 for no limit)".into());
        }
        if self.server.rate > 0 && self.server.burst == 0 {
            return invalid(
                "server.burst is 0; expected at least 1 (or server.rate = 0 to turn the limit off)"
                    .into(),
            );
        }
        if self.server.tcp_connections_per_client == 0 {
            return invalid("server.tcp_connections_per_client must be at least 1".into());
        }
        if self.server.tcp_frame_timeout.0.is_zero() {
            return invalid("server.tcp_frame_timeout must be longer than 0".into());
        }
        if !(512..=4096).contains(&self.server.udp_payload) {
            return invalid(format!(
                "server.udp_payload is {}; expected 512 to 4096",
                self.server.udp_payload
            ));
        }
        if let Some(status) = &self.status {
            if status.listen.port() == 0 {
                return invalid(format!(
                    "status.listen {} has no port; expected one such as {STATUS_PORT}",
                    status.listen
                ));
            }
            let auto_port = self.server.auto_ports().contains(&status.listen.port());
            if auto_port || self.server.addresses().contains(&status.listen) {
                return invalid(format!(
                    "status.listen {} is also in server.listen (DNS over TCP uses it)",
                    status.listen
                ));
            }
            if status.connections == 0 {
                return invalid("status.connections must be at least 1".into());
            }
        }
        let mut seen = std::collections::HashSet::new();
        for route in &self.routes {
            for domain in &route.domains {
                if !seen.insert(domain) {
                    return invalid(format!("domain {domain} is in more than one [[route]]"));
                }
            }
        }
        Ok(())
    }

    /// The effective routing table: the area's preset with the configured routes applied. For
    /// `area = "auto"` the area must be resolved first ([`Config::with_area`]); until then no
    /// preset applies.
    pub fn routes_effective(&self) -> Vec<Route> {
        preset::effective_routes(self.area, &self.routes)
    }

    /// This configuration with `area` in place of `auto`.
    pub fn with_area(&self, area: Area) -> Self {
        Self {
            area,
            ..self.clone()
        }
    }

    /// The effective configuration as TOML: the area's table expanded into `[[route]]` entries.
    ///
    /// The output loads back into an equivalent configuration.
    pub fn to_effective_toml(&self) -> String {
        let mut shown = self.clone();
        shown.routes = self
            .routes_effective()
            .into_iter()
            .map(|r| RouteConfig {
                name: Some(r.name),
                domains: r.domains,
                servers: r.servers,
                names: r.names,
            })
            .collect();
        let header = format!(
            "# effective configuration; area {} expanded into its [[route]] entries\n",
            self.area
        );
        header + &toml::to_string(&shown).expect("configuration serializes")
    }
}
