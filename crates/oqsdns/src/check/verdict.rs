//! The verdict of `oqsdns check`: a pure function from what was observed ([`Findings`]) to what
//! it means ([`Verdict`]s), each in Japanese and English with the connection guide's reference.
//! The status page reuses the same words.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

/// What kind of route a group of servers serves, for the verdicts that name the guide's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteKind {
    /// The NW-base DNS (オンライン資格確認NW基盤) of the guide's table.
    NwBase,
    /// The NGN DNS (`flets-east.jp` / `flets-west.jp`).
    Ngn,
    /// A route of the configuration outside the guide's table.
    Other,
    /// The default route: every other name (internet use).
    Default,
}

/// One upstream server as the check saw it, straight from this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerFinding {
    /// The server.
    pub addr: SocketAddr,
    /// Every probe name answered over UDP.
    pub udp: bool,
    /// Every probe name answered over TCP.
    pub tcp: bool,
}

impl ServerFinding {
    fn answers(&self) -> bool {
        self.udp || self.tcp
    }

    fn global_ipv6(&self) -> bool {
        match self.addr.ip() {
            std::net::IpAddr::V6(ip) => (ip.segments()[0] & 0xE000) == 0x2000,
            std::net::IpAddr::V4(_) => false,
        }
    }
}

/// One route (or the default) and its servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteFinding {
    /// The route's name: `nw-base`, `ngn`, `default`, or the configured name.
    pub name: String,
    /// What it serves.
    pub kind: RouteKind,
    /// Its servers, primary first.
    pub servers: Vec<ServerFinding>,
}

impl RouteFinding {
    fn dead(&self) -> bool {
        !self.servers.is_empty() && self.servers.iter().all(|s| !s.answers())
    }

    fn alive(&self) -> bool {
        self.servers.iter().any(ServerFinding::answers)
    }
}

/// Everything the verdict depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// The daemon answered anything at all on its address (a step-7 name or its status).
    pub daemon_answers: bool,
    /// Through the daemon, every step-7 name resolved over UDP.
    pub daemon_udp: bool,
    /// Through the daemon, every step-7 name resolved over TCP.
    pub daemon_tcp: bool,
    /// The routes of the effective table and the default route, as seen straight from this host.
    pub routes: Vec<RouteFinding>,
    /// The other area's NW-base servers, when an area is configured.
    pub other_area: Option<RouteFinding>,
    /// This host has a global IPv6 address.
    pub host_global_ipv6: bool,
    /// The daemon's status says the host's IPv6 prefix is not one the line is known to have
    /// (FAQ Q18; None: unknown).
    pub prefix_changed: Option<bool>,
    /// TCP connections to port 443 of the centre's addresses; empty when not checked.
    pub centre: Vec<CentreFinding>,
    /// The host runs OpenWrt: the commands shown are procd's and logread's.
    pub openwrt: bool,
}

/// One TCP connection to port 443 of an address of the centre (`hweb.oqs.onshikaku.org`,
/// `www.lineauth.mnw`), opened and closed without TLS: whether the path beyond the DNS passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CentreFinding {
    /// The name whose answer gave the address.
    pub name: String,
    /// The address connected to, on port 443.
    pub addr: IpAddr,
    /// The connection was accepted.
    pub connected: bool,
    /// Why it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a verdict is good news.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// All is well.
    Ok,
    /// Something is wrong.
    Problem,
}

/// One conclusion, in both languages, with where the guide explains it and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// A stable identifier for scripts: one of [`id::ALL`].
    pub id: &'static str,
    /// Good news or not.
    pub severity: Severity,
    /// The finding in Japanese.
    pub ja: String,
    /// The finding in English.
    pub en: String,
    /// The connection guide's page or FAQ that explains it.
    pub reference: &'static str,
    /// What to do next, in Japanese, for the clinic's staff and the vendor.
    pub action_ja: String,
    /// What to do next, in English.
    pub action_en: String,
    /// Whether clinic staff should call their vendor (システムベンダー) rather than act themselves.
    pub call_vendor: bool,
}

/// The identifiers [`verdicts`] can produce.
pub mod id {
    /// Everything answered.
    pub const OK: &str = "ok";
    /// The daemon does not answer on its address.
    pub const DAEMON_NOT_ANSWERING: &str = "daemon-not-answering";
    /// No global IPv6 address on this host, or no IPv6 server reachable.
    pub const NO_IPV6: &str = "no-ipv6";
    /// This area's NW-base servers do not answer, the other area's do.
    pub const WRONG_AREA: &str = "wrong-area";
    /// NW-base servers do not answer while the NGN DNS does.
    pub const NW_BASE_UNREACHABLE: &str = "nw-base-unreachable";
    /// The names resolve, but TCP port 443 of the centre's addresses cannot be connected to.
    pub const CENTRE_UNREACHABLE: &str = "centre-unreachable";
    /// A server answers over UDP but not over TCP.
    pub const TCP_BLOCKED: &str = "tcp-blocked";
    /// No server of a route answers.
    pub const ROUTE_DOWN: &str = "route-down";
    /// One server of a route does not answer; another does.
    pub const SERVER_DOWN: &str = "server-down";
    /// The daemon answers, but not every step-7 name resolves through it.
    pub const DAEMON_FAILS_NAMES: &str = "daemon-fails-names";
    /// The host's IPv6 prefix is not one the line is known to have (FAQ Q18).
    pub const PREFIX_CHANGED: &str = "prefix-changed";

    /// Every identifier, in the order [`verdicts`](super::verdicts) gives them.
    pub const ALL: [&str; 11] = [
        OK,
        DAEMON_NOT_ANSWERING,
        NO_IPV6,
        WRONG_AREA,
        NW_BASE_UNREACHABLE,
        CENTRE_UNREACHABLE,
        TCP_BLOCKED,
        ROUTE_DOWN,
        SERVER_DOWN,
        DAEMON_FAILS_NAMES,
        PREFIX_CHANGED,
    ];
}

/// The file whose presence says the host runs OpenWrt.
pub const OPENWRT_RELEASE: &str = "/etc/openwrt_release";

/// Whether this host runs OpenWrt (procd and logread rather than systemd and journald).
pub fn on_openwrt() -> bool {
    std::path::Path::new(OPENWRT_RELEASE).exists()
}

/// The commands a vendor types on this kind of host.
struct Commands {
    status: &'static str,
    restart: &'static str,
    log: &'static str,
    confirm: &'static str,
}

/// The command that records that line authentication was redone (FAQ Q18) and clears the
/// `prefix-changed` warning, as typed on this kind of host.
pub fn confirm_reauth_command(openwrt: bool) -> &'static str {
    commands(openwrt).confirm
}

fn commands(openwrt: bool) -> Commands {
    if openwrt {
        Commands {
            status: "/etc/init.d/oqsdns status",
            restart: "/etc/init.d/oqsdns restart",
            log: "logread -e oqsdns",
            confirm: "oqsdns check --config /var/etc/oqsdns.toml --confirm-reauth",
        }
    } else {
        Commands {
            status: "systemctl status oqsdns",
            restart: "systemctl restart oqsdns",
            log: "journalctl -u oqsdns",
            confirm: "sudo oqsdns check --config /etc/oqsdns/oqsdns.toml --confirm-reauth",
        }
    }
}

impl RouteKind {
    /// Where the route forwards, in the guide's words, for texts read by clinic staff.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::NwBase => "オンライン資格確認NW基盤",
            Self::Ngn => "NGN（フレッツ網）",
            Self::Other => "設定の転送先",
            Self::Default => "インターネット用の DNS",
        }
    }

    /// The same in English.
    pub fn label_en(self) -> &'static str {
        match self {
            Self::NwBase => "the NW-base (Online Qualification network)",
            Self::Ngn => "the NGN (FLET'S)",
            Self::Other => "a configured route",
            Self::Default => "the internet DNS",
        }
    }
}

impl RouteFinding {
    fn label_ja(&self) -> String {
        match self.kind {
            RouteKind::Other => format!("{}（{}）", self.kind.label_ja(), self.name),
            kind => kind.label_ja().to_string(),
        }
    }

    fn label_en(&self) -> String {
        match self.kind {
            RouteKind::Other => format!("{} ({})", self.kind.label_en(), self.name),
            kind => kind.label_en().to_string(),
        }
    }
}

/// What the findings mean, most fundamental first; `[ok]` when nothing is wrong. A cause that
/// explains another finding hides it: without IPv6 the NW-base verdicts are not given, and a
/// wrong area is not also reported as unreachable NW-base servers.
pub fn verdicts(f: &Findings) -> Vec<Verdict> {
    let cmd = commands(f.openwrt);
    let mut out = Vec::new();
    if !f.daemon_answers {
        out.push(texts::daemon_not_answering(&cmd));
    }
    let no_ipv6 = no_ipv6(f);
    if no_ipv6 {
        out.push(texts::no_ipv6(f.host_global_ipv6));
    }
    let nw_base_dead = f
        .routes
        .iter()
        .filter(|r| r.kind == RouteKind::NwBase)
        .any(RouteFinding::dead);
    let ngn_alive = f
        .routes
        .iter()
        .any(|r| r.kind == RouteKind::Ngn && r.alive());
    let other_area_alive = f.other_area.as_ref().is_some_and(RouteFinding::alive);
    let mut explained_nw_base = no_ipv6;
    if !no_ipv6 && nw_base_dead && other_area_alive {
        explained_nw_base = true;
        out.push(texts::wrong_area(&cmd));
    } else if !no_ipv6 && nw_base_dead && ngn_alive {
        explained_nw_base = true;
        out.push(texts::nw_base_unreachable());
    }
    let daemon_resolves = f.daemon_answers && (f.daemon_udp || f.daemon_tcp);
    let unreachable: Vec<&CentreFinding> = f.centre.iter().filter(|c| !c.connected).collect();
    if !no_ipv6 && !explained_nw_base && daemon_resolves && !unreachable.is_empty() {
        let which = unreachable
            .iter()
            .map(|c| format!("{} [{}]:443", c.name, c.addr))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(texts::centre_unreachable(&which));
    }
    if let Some(which) = tcp_blocked(f, no_ipv6) {
        out.push(texts::tcp_blocked(&which));
    }
    out.extend(route_verdicts(f, no_ipv6, explained_nw_base));
    let nothing_else = out.is_empty();
    if nothing_else && f.daemon_answers && !(f.daemon_udp && f.daemon_tcp) {
        out.push(texts::daemon_fails_names(&cmd));
    }
    if f.prefix_changed == Some(true) {
        out.push(texts::prefix_changed(&cmd));
    }
    if out.is_empty() {
        out.push(texts::ok(f.centre.is_empty()));
    }
    out
}

/// Whether IPv6 is missing where it is needed: some server has a global IPv6 address, and the
/// host has none or no such server answers.
fn no_ipv6(f: &Findings) -> bool {
    let all_servers = || {
        f.routes
            .iter()
            .chain(f.other_area.iter())
            .flat_map(|r| r.servers.iter())
    };
    let needs_ipv6 = all_servers().any(ServerFinding::global_ipv6);
    let ipv6_answers = all_servers().any(|s| s.global_ipv6() && s.answers());
    needs_ipv6 && (!f.host_global_ipv6 || !ipv6_answers)
}

/// What answers over UDP but not over TCP, named for the verdict (`oqsdns` first when the daemon
/// itself does), or `None` when nothing does; servers only reachable over IPv6 are left out when
/// IPv6 is missing, which explains them.
fn tcp_blocked(f: &Findings, no_ipv6: bool) -> Option<String> {
    let daemon_tcp_only_fails = f.daemon_answers && f.daemon_udp && !f.daemon_tcp;
    let servers: Vec<String> = f
        .routes
        .iter()
        .flat_map(|r| r.servers.iter().map(move |s| (r, s)))
        .filter(|(_, s)| s.udp && !s.tcp && !(no_ipv6 && s.global_ipv6()))
        .map(|(r, s)| format!("{} {}", r.name, s.addr))
        .collect();
    if servers.is_empty() && !daemon_tcp_only_fails {
        return None;
    }
    let which = servers.join(", ");
    Some(if !daemon_tcp_only_fails {
        which
    } else if which.is_empty() {
        "oqsdns".into()
    } else {
        format!("oqsdns, {which}")
    })
}

/// The verdicts of each route whose servers are all or partly silent, unless a cause already
/// given explains it (the wrong area or an unreachable NW-base, or IPv6 missing for a route
/// reached only over IPv6).
fn route_verdicts(f: &Findings, no_ipv6: bool, explained_nw_base: bool) -> Vec<Verdict> {
    let mut found = Vec::new();
    for route in &f.routes {
        let hidden = (route.kind == RouteKind::NwBase && explained_nw_base)
            || (no_ipv6 && route.servers.iter().all(ServerFinding::global_ipv6));
        if hidden {
            continue;
        }
        let (ja, en) = (route.label_ja(), route.label_en());
        if route.dead() {
            let servers = join_addrs(route.servers.iter());
            found.push(texts::route_down(&ja, &en, &servers));
        } else {
            let down: Vec<&ServerFinding> = route.servers.iter().filter(|s| !s.answers()).collect();
            if !down.is_empty() {
                let servers = join_addrs(down.into_iter());
                found.push(texts::server_down(&ja, &en, &servers));
            }
        }
    }
    found
}

fn join_addrs<'a>(servers: impl Iterator<Item = &'a ServerFinding>) -> String {
    servers
        .map(|s| s.addr.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A verdict of each kind as [`verdicts`] gives it, from typical findings on an east-area
/// host (the guide's addresses): what the guides' verdict tables describe, row by row. `None`
/// for an id not in [`id::ALL`].
pub fn example(id: &str) -> Option<Verdict> {
    let server = |addr: &str, udp: bool, tcp: bool| ServerFinding {
        addr: addr.parse().expect("a valid example address"),
        udp,
        tcp,
    };
    let route = |name: &str, kind: RouteKind, servers: Vec<ServerFinding>| RouteFinding {
        name: name.into(),
        kind,
        servers,
    };
    let (nw1, nw2) = (
        "[2404:1a8:f583:d00::53:1]:53",
        "[2404:1a8:f583:d00::53:2]:53",
    );
    let (ngn, west, internet) = (
        "[2404:1a8:7f01:a::3]:53",
        "[2001:a7ff:f014:d00::53:1]:53",
        "192.0.2.53:53",
    );
    let mut f = Findings {
        daemon_answers: true,
        daemon_udp: true,
        daemon_tcp: true,
        routes: vec![
            route("ngn", RouteKind::Ngn, vec![server(ngn, true, true)]),
            route(
                "nw-base",
                RouteKind::NwBase,
                vec![server(nw1, true, true), server(nw2, true, true)],
            ),
            route(
                "default",
                RouteKind::Default,
                vec![server(internet, true, true)],
            ),
        ],
        other_area: Some(route(
            "nw-base",
            RouteKind::NwBase,
            vec![server(west, false, false)],
        )),
        host_global_ipv6: true,
        prefix_changed: Some(false),
        centre: vec![CentreFinding {
            name: "hweb.oqs.onshikaku.org".into(),
            addr: "2404:1a8:f583:1a10:2779:2395:6092:37fd"
                .parse()
                .expect("a valid example address"),
            connected: true,
            error: None,
        }],
        openwrt: false,
    };
    let dead_nw_base = |f: &mut Findings| {
        f.routes[1].servers = vec![server(nw1, false, false), server(nw2, false, false)];
    };
    match id {
        id::OK => {}
        id::DAEMON_NOT_ANSWERING => {
            (f.daemon_answers, f.daemon_udp, f.daemon_tcp) = (false, false, false);
        }
        id::NO_IPV6 => f.host_global_ipv6 = false,
        id::WRONG_AREA => {
            dead_nw_base(&mut f);
            f.other_area = Some(route(
                "nw-base",
                RouteKind::NwBase,
                vec![server(west, true, true)],
            ));
        }
        id::NW_BASE_UNREACHABLE => dead_nw_base(&mut f),
        id::CENTRE_UNREACHABLE => {
            f.centre[0].connected = false;
            f.centre[0].error = Some("timed out".into());
        }
        id::TCP_BLOCKED => f.routes[1].servers[0].tcp = false,
        id::ROUTE_DOWN => f.routes[2].servers[0] = server(internet, false, false),
        id::SERVER_DOWN => f.routes[1].servers[1] = server(nw2, false, false),
        id::DAEMON_FAILS_NAMES => f.daemon_udp = false,
        id::PREFIX_CHANGED => f.prefix_changed = Some(true),
        _ => return None,
    }
    verdicts(&f).into_iter().find(|v| v.id == id)
}

/// Whether every verdict is good news: the exit status of `oqsdns check`.
pub fn all_ok(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.severity == Severity::Ok)
}

mod texts;

#[cfg(test)]
mod tests;
