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
mod run;
pub mod verdict;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use oqsdns_config::{Area, Config, Route};
use oqsdns_core::probe::ProbeResult;
use oqsdns_core::state;
use oqsdns_core::{acl, prefix, reach, status_txt, upstream};
use serde::Serialize;
use tokio::time::Instant;

pub use run::{run, run_with};
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
