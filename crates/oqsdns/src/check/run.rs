//! The run of `oqsdns check`: every question asked at once, the rows of the report drawn from
//! the answers, the findings, and the verdicts drawn from them.

use std::net::SocketAddr;
use std::path::Path;

use oqsdns_config::{Area, Config, DefaultServer, ProbeName};
use oqsdns_core::probe::{self, ProbeResult};
use oqsdns_core::state::Saved;
use oqsdns_core::{acl, prefix, reach, Transport};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{
    centre_finding, kind_of, state_file, status, verdict, Answer, CentreFinding, Findings, Report,
    RouteFinding, RouteKind, Row, ServerFinding,
};

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
    let daemon = rows_of(&asked, Section::Daemon, 0, "oqsdns", server, &step7);
    let (upstreams, routes) = upstream_rows(&asked, &targets);
    let (other_area, other_finding) = match (other, other_target) {
        (Some(other), Some(target)) => {
            let (rows, finding) = other_area_rows(&asked, other, &target);
            (rows, Some(finding))
        }
        _ => (Vec::new(), None),
    };

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

/// The rows of every target's servers, and what each route's servers did.
fn upstream_rows(asked: &[Asked], targets: &[Target]) -> (Vec<Row>, Vec<RouteFinding>) {
    let mut upstreams = Vec::new();
    let mut routes = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let mut servers = Vec::new();
        for &s in &target.servers {
            let found = rows_of(asked, Section::Upstream, i, &target.route, s, &target.names);
            servers.push(server_finding(s, &found));
            upstreams.extend(found);
        }
        routes.push(RouteFinding {
            name: target.route.clone(),
            kind: target.kind,
            servers,
        });
    }
    (upstreams, routes)
}

/// The rows of the `other` area's NW-base servers (`target`), and what they did.
fn other_area_rows(asked: &[Asked], other: Area, target: &Target) -> (Vec<Row>, RouteFinding) {
    let label = format!("nw-base ({other})");
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for &s in &target.servers {
        let found = rows_of(asked, Section::OtherArea, 0, &label, s, &target.names);
        servers.push(server_finding(s, &found));
        rows.extend(found);
    }
    let finding = RouteFinding {
        name: format!("nw-base-{other}"),
        kind: target.kind,
        servers,
    };
    (rows, finding)
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
