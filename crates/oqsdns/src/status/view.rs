//! The daemon's state as the status page and `/health` show it: every route's servers with their
//! health and last probe round, the recent changes of state, and the verdict of `oqsdns check`
//! drawn from the daemon's own probes instead of a new check.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use oqsdns_config::Area;
use oqsdns_core::clients::TableAnswer;
use oqsdns_core::health::{Plan, ServerHealth, State, Track};
use oqsdns_core::probe::ProbeResult;
use oqsdns_core::Transport;
use serde::Serialize;

use crate::check::verdict::{
    self, CentreFinding, Findings, RouteFinding, RouteKind, ServerFinding, Verdict,
};
use crate::check::{centre_finding, kind_of, Answer};
use crate::Daemon;

/// Changes of state shown, newest first.
pub const CHANGES_SHOWN: usize = 20;

/// Everything the status page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Every verdict is good news: `/health` answers 200, else 503.
    pub ok: bool,
    /// The area whose table is in force.
    pub area: Area,
    /// When this was taken.
    pub time: Time,
    /// The verdict, in the words of `oqsdns check`.
    pub verdicts: Vec<Verdict>,
    /// The routes of the table, then the default route.
    pub routes: Vec<RouteView>,
    /// The last changes of state of any server, newest first.
    pub changes: Vec<ChangeView>,
    /// The host's global IPv6 prefixes now.
    pub prefixes: Vec<String>,
    /// One is not a prefix the line is known to have (the state file): line authentication must
    /// be checked (FAQ Q18), then confirmed with `oqsdns check --confirm-reauth`.
    pub prefix_changed: bool,
    /// The last TCP/443 connections to the centre's addresses (empty before the first, or
    /// without an area's table).
    pub centre: Vec<CentreFinding>,
    /// When they were made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub centre_checked: Option<Time>,
    /// The clients seen recently, the most recent first; `null` when `[status] clients = false`.
    pub clients: Option<Vec<ClientView>>,
}

/// One client (a terminal, usually) that asked oqsdns.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    /// Its address.
    pub addr: IpAddr,
    /// Its last query.
    pub last: Time,
    /// Its queries counted.
    pub queries: u64,
    /// Its last query for a name of the guide's table (オン資 or NGN): `answered`, `failed`,
    /// `pending` or `none` (it asked none).
    pub table: &'static str,
    /// The same as a yes or no: `null` when it asked none (or its answer is still coming).
    pub table_answered: Option<bool>,
}

/// A moment, as Unix seconds and as text in Japan's time (UTC+9, no daylight saving): the clinic's
/// clock, whatever time zone the router keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Time {
    /// Seconds since 1970-01-01 UTC.
    pub unix: u64,
    /// `2026-01-31T12:34:56+09:00`.
    pub jst: String,
}

impl Time {
    /// The moment `at`.
    pub fn of(at: SystemTime) -> Self {
        let unix = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (y, mo, d, h, mi, s) = civil(unix + 9 * 3600);
        let jst = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+09:00");
        Self { unix, jst }
    }

    /// `2026-01-31 12:34:56`, for the page.
    pub fn short(&self) -> String {
        self.jst.get(..19).unwrap_or_default().replace('T', " ")
    }
}

/// Year, month, day, hour, minute, second of Unix time `t` (proleptic Gregorian, H. Hinnant's
/// days-from-civil inverted).
fn civil(t: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (t / 86_400) as i64;
    let secs = (t % 86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// One route and its servers.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    /// `nw-base`, `ngn`, `default` or the configured name.
    pub name: String,
    /// What it serves.
    pub kind: RouteKind,
    /// Its servers, primary first.
    pub servers: Vec<ServerView>,
}

/// One upstream server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    /// The server.
    pub addr: SocketAddr,
    /// Up, degraded when one transport is down or slow, down when both are.
    #[serde(serialize_with = "state_name")]
    pub state: State,
    /// How queries use it now: `udp`, `tcp` (UDP down) or `last` (down over both).
    #[serde(serialize_with = "plan_name")]
    pub plan: Plan,
    /// Over UDP.
    pub udp: TrackView,
    /// Over TCP.
    pub tcp: TrackView,
    /// When its last probe round ended.
    pub probed: Option<Time>,
    /// The last probe round, one row per question.
    pub probes: Vec<ProbeRow>,
}

/// One server over one transport.
#[derive(Debug, Clone, Serialize)]
pub struct TrackView {
    /// `up`, `degraded`, `down` or `unknown` (not probed yet).
    #[serde(serialize_with = "state_name")]
    pub state: State,
    /// The last probe's time to answer, in milliseconds.
    pub latency_ms: f64,
    /// Why it is not up (the last failure).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One probe question's last answers.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRow {
    /// The question, such as `www.lineauth.mnw AAAA`.
    pub name: String,
    /// Over UDP.
    pub udp: Option<Answer>,
    /// Over TCP.
    pub tcp: Option<Answer>,
}

/// One change of state.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeView {
    /// When.
    pub time: Time,
    /// The server's route.
    pub route: String,
    /// The server.
    pub server: SocketAddr,
    /// `udp` or `tcp`.
    pub transport: String,
    /// The new state.
    #[serde(serialize_with = "state_name")]
    pub state: State,
    /// Why.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A health state in the JSON: its lower-case name.
fn state_name<S: serde::Serializer>(state: &State, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

/// A plan in the JSON: `udp`, `tcp` or `last`.
fn plan_name<S: serde::Serializer>(plan: &Plan, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(plan.as_str())
}

/// The daemon's status now.
pub fn status(daemon: &Daemon) -> Status {
    let runtime = daemon.runtime();
    let config = daemon.config().with_area(runtime.area());
    let table = config.routes_effective();
    let prefixes = daemon.handler().prefixes().get();
    let mut routes = Vec::new();
    let mut changes = Vec::new();
    // The table's routes first, the default (group 0) last, as the guide lists them.
    let groups = runtime
        .groups()
        .iter()
        .skip(1)
        .chain(runtime.groups().first());
    for group in groups {
        let kind = match table.iter().find(|r| r.name == group.name) {
            Some(route) => kind_of(route),
            None => RouteKind::Default,
        };
        let mut servers = Vec::new();
        for server in group.unique_servers() {
            for change in server.history.changes() {
                changes.push((
                    change.at,
                    ChangeView {
                        time: Time::of(change.at),
                        route: group.name.clone(),
                        server: server.addr,
                        transport: change.transport.to_string(),
                        state: change.state,
                        reason: change.reason,
                    },
                ));
            }
            servers.push(server_view(server));
        }
        routes.push(RouteView {
            name: group.name.clone(),
            kind,
            servers,
        });
    }
    changes.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let changes = changes
        .into_iter()
        .take(CHANGES_SHOWN)
        .map(|(_, c)| c)
        .collect();
    let reach = daemon.reach().get();
    let centre: Vec<CentreFinding> = reach
        .as_ref()
        .map(|(_, round)| round.iter().cloned().map(centre_finding).collect())
        .unwrap_or_default();
    let mut findings = findings(&routes, !prefixes.now.is_empty(), prefixes.changed());
    findings.centre.clone_from(&centre);
    let verdicts = verdict::verdicts(&findings);
    let clients = daemon.handler().clients();
    let clients = clients.enabled().then(|| {
        let (now, wall) = (std::time::Instant::now(), SystemTime::now());
        clients
            .list(now)
            .into_iter()
            .map(|c| ClientView {
                addr: c.addr,
                last: Time::of(wall.checked_sub(c.ago).unwrap_or(wall)),
                queries: c.queries,
                table: c.table.as_str(),
                table_answered: match c.table {
                    TableAnswer::Answered => Some(true),
                    TableAnswer::Failed => Some(false),
                    TableAnswer::None | TableAnswer::Pending => None,
                },
            })
            .collect()
    });
    Status {
        ok: verdict::all_ok(&verdicts),
        area: runtime.area(),
        time: Time::of(SystemTime::now()),
        verdicts,
        routes,
        changes,
        prefixes: prefixes.now.iter().map(ToString::to_string).collect(),
        prefix_changed: prefixes.changed(),
        centre,
        centre_checked: reach.map(|(at, _)| Time::of(at)),
        clients,
    }
}

fn server_view(server: &ServerHealth) -> ServerView {
    let last = server.history.last_probes();
    let track = |t: &Track| TrackView {
        state: t.state(),
        latency_ms: t.latency().as_secs_f64() * 1000.0,
        reason: if t.state() == State::Up {
            String::new()
        } else {
            t.reason()
        },
    };
    let probes = last
        .udp
        .iter()
        .map(|r| &r.probe)
        .chain(last.tcp.iter().map(|r| &r.probe))
        .fold(Vec::new(), |mut names, probe| {
            if !names.contains(&probe) {
                names.push(probe);
            }
            names
        })
        .into_iter()
        .map(|probe| {
            let find = |results: &[ProbeResult]| {
                results
                    .iter()
                    .find(|r| &r.probe == probe)
                    .map(|r| Answer::from(r.clone()))
            };
            ProbeRow {
                name: probe.to_string(),
                udp: find(&last.udp),
                tcp: find(&last.tcp),
            }
        })
        .collect();
    ServerView {
        addr: server.addr,
        state: server.state(),
        plan: server.plan(),
        udp: track(&server.udp),
        tcp: track(&server.tcp),
        probed: last.at.map(Time::of),
        probes,
    }
}

/// Whether a server answers over `transport`: its health state, or before the state settles
/// (unknown), its last probe round.
fn answers(view: &ServerView, transport: Transport) -> bool {
    let (track, answer) = match transport {
        Transport::Udp => (
            &view.udp,
            view.probes.iter().map(|p| &p.udp).collect::<Vec<_>>(),
        ),
        Transport::Tcp => (&view.tcp, view.probes.iter().map(|p| &p.tcp).collect()),
    };
    match track.state {
        State::Up | State::Degraded => true,
        State::Down => false,
        State::Unknown => {
            !answer.is_empty() && answer.iter().all(|a| a.as_ref().is_some_and(|a| a.ok))
        }
    }
}

/// The findings of `oqsdns check`, from what the daemon's probes saw. The daemon answers (it
/// serves this page); a name resolves through it when some server of its route answers.
fn findings(routes: &[RouteView], host_global_ipv6: bool, prefix_changed: bool) -> Findings {
    let routes: Vec<RouteFinding> = routes
        .iter()
        .map(|r| RouteFinding {
            name: r.name.clone(),
            kind: r.kind,
            servers: r
                .servers
                .iter()
                .map(|s| ServerFinding {
                    addr: s.addr,
                    udp: answers(s, Transport::Udp),
                    tcp: answers(s, Transport::Tcp),
                })
                .collect(),
        })
        .collect();
    let resolves = routes
        .iter()
        .filter(|r| r.kind != RouteKind::Default)
        .all(|r| r.servers.iter().any(|s| s.udp || s.tcp));
    Findings {
        daemon_answers: true,
        daemon_udp: resolves,
        daemon_tcp: resolves,
        routes,
        other_area: None,
        host_global_ipv6,
        prefix_changed: Some(prefix_changed),
        centre: Vec::new(),
        openwrt: verdict::on_openwrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        // 2024-02-29 23:59:59 UTC, a leap day.
        assert_eq!(civil(1_709_251_199), (2024, 2, 29, 23, 59, 59));
        let t = Time::of(UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_199));
        assert_eq!(t.jst, "2024-03-01T08:59:59+09:00");
        assert_eq!(t.short(), "2024-03-01 08:59:59");
    }
}
