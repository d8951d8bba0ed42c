//! `oqsdns check`: the guide's step-7 suite (手順7, pp.12–13) through the running daemon, as a
//! terminal asks, and straight to every configured upstream over UDP and TCP; the daemon's own
//! view from `status.oqsdns. CH TXT`; a TCP connection to port 443 of the centre's addresses
//! as the daemon resolved them (with an area's table); and a verdict in Japanese and English,
//! each with its next step.
//!
//! [`run`] does the work and returns a [`Report`]; [`render`] prints it. Every probe runs at once
//! and waits at most `health.timeout`, so the whole check takes a few seconds.

pub mod bundle;
pub mod render;
pub mod verdict;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use oqsdns_config::{Area, Config, DefaultServer, ProbeName, Route};
use oqsdns_core::probe::{self, ProbeResult};
use oqsdns_core::state::{self, Saved};
use oqsdns_core::{acl, prefix, reach, status_txt, upstream, Transport};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use verdict::{
    CentreFinding, Findings, RouteFinding, RouteKind, ServerFinding, Severity, Verdict,
};

/// One question over one transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// It resolved.
    pub ok: bool,
    /// The A and AAAA addresses of the answer.
    pub addresses: Vec<IpAddr>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time to the answer or the failure, in milliseconds.
    pub latency_ms: u64,
    /// The server replied, even if not with what was asked (an error response code, a record
    /// of another type, a reply that does not match), as opposed to silence, a refused
    /// connection or an unreachable network.
    #[serde(skip)]
    pub replied: bool,
}

impl From<ProbeResult> for Answer {
    fn from(r: ProbeResult) -> Self {
        let latency_ms = r.latency.as_millis().try_into().unwrap_or(u64::MAX);
        match r.result {
            Ok(addresses) => Self {
                ok: true,
                addresses,
                error: None,
                latency_ms,
                replied: true,
            },
            Err(error) => Self {
                ok: false,
                addresses: Vec::new(),
                error: Some(error.to_string()),
                latency_ms,
                replied: error.replied(),
            },
        }
    }
}

/// One question asked of one server over UDP and over TCP: a row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `oqsdns` for the daemon, else the route's name (`nw-base`, `ngn`, `default`, ...).
    pub route: String,
    /// The server asked.
    pub server: SocketAddr,
    /// The question, such as `www.lineauth.mnw AAAA`.
    pub name: String,
    /// Over UDP.
    pub udp: Answer,
    /// Over TCP.
    pub tcp: Answer,
}

/// Everything `oqsdns check` found and concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The area checked (`auto` resolved).
    pub area: Area,
    /// The daemon's address.
    pub server: SocketAddr,
    /// The step-7 names asked through the daemon.
    pub daemon: Vec<Row>,
    /// The names asked straight of every upstream.
    pub upstreams: Vec<Row>,
    /// The other area's NW-base servers, asked to tell a wrong `area` apart.
    pub other_area: Vec<Row>,
    /// The daemon's `status.oqsdns` lines, when it answered them.
    pub status: Option<Vec<String>>,
    /// This host's global IPv6 prefixes.
    pub host_ipv6: Vec<String>,
    /// What the verdict was drawn from.
    pub findings: Findings,
    /// The verdict.
    pub verdicts: Vec<Verdict>,
}

impl Report {
    /// Whether all is well: exit status 0, else 1.
    pub fn ok(&self) -> bool {
        verdict::all_ok(&self.verdicts)
    }
}

/// The daemon's address `oqsdns check` asks by default: the first listen address, with a
/// wildcard replaced by the loopback address of its family.
pub fn default_server(config: &Config) -> SocketAddr {
    let auto = config
        .server
        .auto_ports()
        .first()
        .map(|&port| (Ipv6Addr::LOCALHOST, port).into());
    let first = config.server.addresses().first().copied().or(auto);
    let mut addr = first.unwrap_or(SocketAddr::from((Ipv6Addr::LOCALHOST, 53)));
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// What a route serves, from its name or its domains.
pub(crate) fn kind_of(route: &Route) -> RouteKind {
    // A route is the NW-base's (or the NGN's) by name, or when it takes over a domain that the
    // guide's table of either area gives to it.
    let like = |name: &str| {
        Area::CONCRETE
            .into_iter()
            .flat_map(oqsdns_config::preset_routes)
            .filter(|preset| preset.name == name)
            .any(|preset| preset.domains.iter().any(|d| route.domains.contains(d)))
    };
    if route.name == "nw-base" || like("nw-base") {
        RouteKind::NwBase
    } else if route.name == "ngn" || like("ngn") {
        RouteKind::Ngn
    } else {
        RouteKind::Other
    }
}

/// A group of servers to ask the same names.
struct Target {
    route: String,
    kind: RouteKind,
    servers: Vec<SocketAddr>,
    names: Vec<ProbeName>,
}

/// The routes of `config` (area resolved) and its default servers, `"system"` read from
/// `resolv_conf` without the daemon's own addresses.
fn targets(config: &Config, resolv_conf: &Path) -> Vec<Target> {
    let mut out: Vec<Target> = config
        .routes_effective()
        .iter()
        .map(|r| Target {
            route: r.name.clone(),
            kind: kind_of(r),
            servers: r.servers.iter().map(|s| s.0).collect(),
            names: r.names.clone(),
        })
        .collect();
    let system = crate::system_for(config, resolv_conf, &config.server.addresses());
    let defaults = DefaultServer::expand(&config.forward.default, &system);
    out.push(Target {
        route: "default".into(),
        kind: RouteKind::Default,
        servers: defaults,
        names: config.forward.names.clone(),
    });
    out
}

/// Runs the check of `config` against the daemon at `server`, with `"system"` read from
/// `/etc/resolv.conf`.
pub async fn run(config: &Config, server: SocketAddr) -> Report {
    run_with(config, server, Path::new(crate::RESOLV_CONF)).await
}

/// Which part of the report a question belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// The step-7 names through the daemon.
    Daemon,
    /// The names of a route asked of its servers.
    Upstream,
    /// The other area's NW-base servers.
    OtherArea,
}

/// One question asked: where it belongs, and what came of it.
struct Asked {
    section: Section,
    /// The index of the target in its section.
    target: usize,
    server: SocketAddr,
    /// The index of the name in its target's names.
    name: usize,
    transport: Transport,
    result: ProbeResult,
}

/// [`run`] with another resolv.conf for `"system"`.
pub async fn run_with(config: &Config, server: SocketAddr, resolv_conf: &Path) -> Report {
    let timeout = config.health.timeout.0;
    let deadline = Instant::now() + timeout;
    let status_asked = StatusLines::Asked(tokio::spawn(status(server, deadline)));
    let (area, status_lines) = area_of(config, status_asked, timeout).await;
    let config = config.with_area(area);
    let targets = targets(&config, resolv_conf);
    let step7: Vec<ProbeName> = config
        .routes_effective()
        .iter()
        .flat_map(|r| r.names.iter().cloned())
        .filter(|n| n.name != ".")
        .collect();
    let other = other_area(area);
    let other_target = other.map(other_area_target);

    let asked = ask_all(server, &step7, &targets, other_target.as_ref(), timeout).await;
    let status = status_lines.get().await;
    let rows = |section, target, label: &str, server, names: &[ProbeName]| {
        rows_of(&asked, section, target, label, server, names)
    };

    let daemon = rows(Section::Daemon, 0, "oqsdns", server, &step7);
    let mut upstreams = Vec::new();
    let mut routes = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let mut servers = Vec::new();
        for &s in &target.servers {
            let found = rows(Section::Upstream, i, &target.route, s, &target.names);
            servers.push(server_finding(s, &found));
            upstreams.extend(found);
        }
        routes.push(RouteFinding {
            name: target.route.clone(),
            kind: target.kind,
            servers,
        });
    }
    let mut other_area = Vec::new();
    let other_finding = other_target.map(|target| {
        let other = other.unwrap_or(Area::None);
        let label = format!("nw-base ({other})");
        let mut servers = Vec::new();
        for &s in &target.servers {
            let found = rows(Section::OtherArea, 0, &label, s, &target.names);
            servers.push(server_finding(s, &found));
            other_area.extend(found);
        }
        RouteFinding {
            name: format!("nw-base-{other}"),
            kind: target.kind,
            servers,
        }
    });

    let centre = centre(area, &step7, &daemon, timeout).await;
    let host_ipv6 = prefix::global_ipv6(&acl::interface_prefixes());
    let findings = Findings {
        daemon_answers: status.is_some()
            || daemon.iter().any(|r| answered(&r.udp) || answered(&r.tcp)),
        daemon_udp: daemon.iter().all(|r| r.udp.ok),
        daemon_tcp: daemon.iter().all(|r| r.tcp.ok),
        routes,
        other_area: other_finding,
        host_global_ipv6: !host_ipv6.is_empty(),
        prefix_changed: prefix_changed(&config, status.as_deref()),
        centre,
        openwrt: verdict::on_openwrt(),
    };
    let verdicts = verdict::verdicts(&findings);
    Report {
        area,
        server,
        daemon,
        upstreams,
        other_area,
        status,
        host_ipv6: host_ipv6.iter().map(ToString::to_string).collect(),
        findings,
        verdicts,
    }
}

/// The daemon's status lines: still being asked, or read.
enum StatusLines {
    Asked(tokio::task::JoinHandle<Option<Vec<String>>>),
    Read(Option<Vec<String>>),
}

impl StatusLines {
    async fn get(self) -> Option<Vec<String>> {
        match self {
            Self::Asked(task) => task.await.ok().flatten(),
            Self::Read(lines) => lines,
        }
    }
}

/// The area to check: `config`'s, or with `auto` the one the daemon says it chose (its status
/// is then read here), else the one whose NW-base servers answer (East when neither does).
async fn area_of(
    config: &Config,
    status: StatusLines,
    timeout: std::time::Duration,
) -> (Area, StatusLines) {
    if config.area != Area::Auto {
        return (config.area, status);
    }
    let lines = status.get().await;
    let area = match lines.as_deref().and_then(area_in) {
        Some(area) => area,
        None => probe::detect_area(timeout).await.unwrap_or(Area::East),
    };
    (area, StatusLines::Read(lines))
}

/// The other concrete area, whose NW-base servers tell a wrong `area` apart.
fn other_area(area: Area) -> Option<Area> {
    match area {
        Area::East => Some(Area::West),
        Area::West => Some(Area::East),
        Area::Auto | Area::None => None,
    }
}

/// The other area's NW-base servers, with the first name of its NW-base route.
fn other_area_target(other: Area) -> Target {
    Target {
        route: "nw-base".into(),
        kind: RouteKind::NwBase,
        servers: oqsdns_config::nw_base_servers(other)
            .iter()
            .map(|s| s.0)
            .collect(),
        names: oqsdns_config::preset_routes(other)
            .into_iter()
            .filter(|r| r.name == "nw-base")
            .flat_map(|r| r.names)
            .take(1)
            .collect(),
    }
}

/// Asks every question at once, over UDP and TCP: the step-7 names of the daemon at `server`,
/// every target's names of its servers, and the other area's.
async fn ask_all(
    server: SocketAddr,
    step7: &[ProbeName],
    targets: &[Target],
    other: Option<&Target>,
    timeout: std::time::Duration,
) -> Vec<Asked> {
    let mut asks = JoinSet::new();
    let mut spawn = |section, target, server, names: &[ProbeName]| {
        for (index, name) in names.iter().enumerate() {
            for transport in [Transport::Udp, Transport::Tcp] {
                let name = name.clone();
                asks.spawn(async move {
                    Asked {
                        section,
                        target,
                        server,
                        name: index,
                        transport,
                        result: probe::probe(server, transport, &name, timeout).await,
                    }
                });
            }
        }
    };
    spawn(Section::Daemon, 0, server, step7);
    for (i, target) in targets.iter().enumerate() {
        for &s in &target.servers {
            spawn(Section::Upstream, i, s, &target.names);
        }
    }
    if let Some(target) = other {
        for &s in &target.servers {
            spawn(Section::OtherArea, 0, s, &target.names);
        }
    }
    let mut asked = Vec::new();
    while let Some(joined) = asks.join_next().await {
        if let Ok(one) = joined {
            asked.push(one);
        }
    }
    asked
}

/// The rows of one server of one target: a row per name, its UDP and TCP answers found in
/// `asked`.
fn rows_of(
    asked: &[Asked],
    section: Section,
    target: usize,
    label: &str,
    server: SocketAddr,
    names: &[ProbeName],
) -> Vec<Row> {
    let find = |index: usize, transport: Transport| {
        asked
            .iter()
            .find(|a| {
                a.section == section
                    && a.target == target
                    && a.server == server
                    && a.name == index
                    && a.transport == transport
            })
            .map_or_else(
                || Answer {
                    ok: false,
                    addresses: Vec::new(),
                    error: Some("not asked".into()),
                    latency_ms: 0,
                    replied: false,
                },
                |a| Answer::from(a.result.clone()),
            )
    };
    names
        .iter()
        .enumerate()
        .map(|(index, name)| Row {
            route: label.to_string(),
            server,
            name: name.to_string(),
            udp: find(index, Transport::Udp),
            tcp: find(index, Transport::Tcp),
        })
        .collect()
}

/// Whether the line's prefix changed: the daemon's view when it answers; else the state file's,
/// which it keeps across restarts (unknown without one).
fn prefix_changed(config: &Config, status: Option<&[String]>) -> Option<bool> {
    match status {
        Some(lines) => lines
            .iter()
            .find_map(|l| l.strip_prefix("prefix-changed="))
            .map(|v| v == "yes"),
        None => Saved::load(&state_file(config, None))
            .ok()
            .flatten()
            .map(|saved| saved.changed()),
    }
}

/// Connects to TCP port 443 of the centre's addresses as the daemon resolved them (`rows`, one
/// per name of `names`), when the guide's table of an area is in force; with a hand-made table
/// there is no centre of the guide's to reach.
async fn centre(
    area: Area,
    names: &[ProbeName],
    rows: &[Row],
    timeout: std::time::Duration,
) -> Vec<CentreFinding> {
    if !Area::CONCRETE.contains(&area) {
        return Vec::new();
    }
    let answers = names.iter().zip(rows).flat_map(|(name, row)| {
        [&row.udp, &row.tcp]
            .into_iter()
            .map(move |a| (name.name.as_str(), a.addresses.as_slice()))
    });
    let targets = reach::targets(answers);
    reach::check(&targets, reach::PORT, timeout)
        .await
        .into_iter()
        .map(centre_finding)
        .collect()
}

/// One connection's outcome as a finding.
pub(crate) fn centre_finding(r: reach::Reach) -> CentreFinding {
    CentreFinding {
        name: r.target.name,
        addr: r.target.addr,
        connected: r.result.is_ok(),
        error: r.result.err(),
    }
}

/// The state file: the one the daemon names in its status (`state-file=`), else where this
/// process would put it (`$STATE_DIRECTORY`, `[health] state_file`, the default).
fn state_file(config: &Config, status: Option<&[String]>) -> std::path::PathBuf {
    status
        .and_then(|lines| lines.iter().find_map(|l| l.strip_prefix("state-file=")))
        .map_or_else(
            || state::path(config.health.state_file.as_deref()),
            std::path::PathBuf::from,
        )
}

/// What `oqsdns check --confirm-reauth` recorded.
#[derive(Debug, Clone)]
pub struct Confirmed {
    /// The state file written.
    pub path: std::path::PathBuf,
    /// The prefixes now known to be the line's.
    pub known: Vec<String>,
}

/// `--confirm-reauth`: records in the daemon's state file that line authentication (回線認証)
/// was redone (FAQ Q18), for this host's prefixes now; the daemon stops warning at its next look
/// at the file (its next prefix check, a status query, or SIGHUP).
pub async fn confirm_reauth(config: &Config, server: SocketAddr) -> Result<Confirmed, String> {
    let lines = status(server, Instant::now() + config.health.timeout.0).await;
    let path = state_file(config, lines.as_deref());
    let host = prefix::global_ipv6(&acl::interface_prefixes());
    let saved = prefix::confirm(&path, &host).map_err(|e| e.to_string())?;
    Ok(Confirmed {
        path,
        known: saved.known.iter().map(ToString::to_string).collect(),
    })
}

/// Whether the server said anything at all (an answer, or an error response code), as opposed to
/// silence, a refused connection or an unreachable network.
fn answered(answer: &Answer) -> bool {
    answer.ok || answer.replied
}

fn server_finding(addr: SocketAddr, rows: &[Row]) -> ServerFinding {
    ServerFinding {
        addr,
        udp: !rows.is_empty() && rows.iter().all(|r| r.udp.ok),
        tcp: !rows.is_empty() && rows.iter().all(|r| r.tcp.ok),
    }
}

/// The concrete area a status names in its `area=` line.
fn area_in(lines: &[String]) -> Option<Area> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("area="))
        .and_then(|a| a.parse().ok())
        .filter(|a| Area::CONCRETE.contains(a))
}

/// Asks the daemon `status.oqsdns. CH TXT` over UDP (TCP when truncated); its TXT strings.
pub async fn status(server: SocketAddr, deadline: Instant) -> Option<Vec<String>> {
    let id = rand::random::<u16>();
    let (query, question) = status_txt::query(id)?;
    let mut reply = upstream::udp(server, &query, id, &question, deadline)
        .await
        .ok()?;
    if reply.info.truncated {
        reply = upstream::tcp(server, &query, id, &question, deadline)
            .await
            .ok()?;
    }
    status_txt::lines_of(&reply.bytes)
}
