//! The verdict of `oqsdns check`: a pure function from what was observed ([`Findings`]) to what
//! it means ([`Verdict`]s), each in Japanese and English with the connection guide's reference.
//! The status page reuses the same words.

use std::net::SocketAddr;

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
    /// The daemon's status says the host's IPv6 prefix changed since it started (None: unknown).
    pub prefix_changed: Option<bool>,
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

/// One conclusion, in both languages, with where the guide explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// A stable identifier for scripts: `ok`, `daemon-not-answering`, `nw-base-unreachable`, ...
    pub id: &'static str,
    /// Good news or not.
    pub severity: Severity,
    /// The finding in Japanese.
    pub ja: String,
    /// The finding in English.
    pub en: String,
    /// The connection guide's page or FAQ that explains it.
    pub reference: &'static str,
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
    /// A server answers over UDP but not over TCP.
    pub const TCP_BLOCKED: &str = "tcp-blocked";
    /// No server of a route answers.
    pub const ROUTE_DOWN: &str = "route-down";
    /// One server of a route does not answer; another does.
    pub const SERVER_DOWN: &str = "server-down";
    /// The daemon answers, but not every step-7 name resolves through it.
    pub const DAEMON_FAILS_NAMES: &str = "daemon-fails-names";
    /// The host's IPv6 prefix changed since the daemon started.
    pub const PREFIX_CHANGED: &str = "prefix-changed";
}

fn problem(id: &'static str, ja: String, en: String, reference: &'static str) -> Verdict {
    Verdict {
        id,
        severity: Severity::Problem,
        ja,
        en,
        reference,
    }
}

/// What the findings mean, most fundamental first; `[ok]` when nothing is wrong. A cause that
/// explains another finding hides it: without IPv6 the NW-base verdicts are not given, and a
/// wrong area is not also reported as unreachable NW-base servers.
pub fn verdicts(f: &Findings) -> Vec<Verdict> {
    let mut out = Vec::new();
    if !f.daemon_answers {
        out.push(problem(
            id::DAEMON_NOT_ANSWERING,
            "oqsdns がこのアドレスで応答しません。デーモンが動作しているか（systemctl status oqsdns）、\
             listen のアドレスと端末の DNS 設定（手順5）を確認してください。"
                .into(),
            "oqsdns does not answer on this address: check that the daemon runs (systemctl status \
             oqsdns), its listen addresses, and the terminal's DNS setting (step 5)."
                .into(),
            "手順5, FAQ Q3",
        ));
    }
    let all_servers = || {
        f.routes
            .iter()
            .chain(f.other_area.iter())
            .flat_map(|r| r.servers.iter())
    };
    let needs_ipv6 = all_servers().any(ServerFinding::global_ipv6);
    let ipv6_answers = all_servers().any(|s| s.global_ipv6() && s.answers());
    let no_ipv6 = needs_ipv6 && (!f.host_global_ipv6 || !ipv6_answers);
    if no_ipv6 {
        let (ja, en) = if f.host_global_ipv6 {
            (
                "IPv6 ではどの DNS サーバーにも届きません。ルーターの IPv6 再配布（手順2）と端末の IPv6 \
                 設定（手順4〜6）、フレッツ・v6オプションの契約を確認してください。",
                "No DNS server answers over IPv6: check the router's IPv6 redistribution (step 2), \
                 the host's IPv6 settings (steps 4-6) and the FLET'S v6 option contract.",
            )
        } else {
            (
                "このホストにグローバル IPv6 アドレスがありません。ルーターの IPv6 再配布（手順2）と端末の \
                 IPv6 設定（手順4〜6）、フレッツ・v6オプションの契約を確認してください。",
                "This host has no global IPv6 address: check the router's IPv6 redistribution \
                 (step 2), the host's IPv6 settings (steps 4-6) and the FLET'S v6 option contract.",
            )
        };
        out.push(problem(
            id::NO_IPV6,
            ja.into(),
            en.into(),
            "手順4〜6, フレッツ・v6オプション (p.1), FAQ Q6/Q7",
        ));
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
        out.push(problem(
            id::WRONG_AREA,
            "この回線のエリアの NW基盤 DNS は応答せず、もう一方のエリアの NW基盤 DNS が応答します。\
             設定の area（東日本 east / 西日本 west）が回線と違います。"
                .into(),
            "This area's NW-base DNS servers do not answer but the other area's do: the \
             configured area (east / west) does not match the line."
                .into(),
            "手順3 (p.4)",
        ));
    } else if !no_ipv6 && nw_base_dead && ngn_alive {
        explained_nw_base = true;
        out.push(problem(
            id::NW_BASE_UNREACHABLE,
            "NGN DNS は応答しますが、オンライン資格確認NW基盤の DNS サーバーが応答しません。回線認証\
             （https://www.lineauth.mnw）が済んでいるか、お客さまID の申請内容を確認し、済んでいれば \
             NW基盤側の障害が考えられるため問い合わせてください。"
                .into(),
            "The NGN DNS answers but the NW-base DNS servers do not: check that line \
             authentication (回線認証, https://www.lineauth.mnw) was done and the customer ID \
             applied for; if it was, the NW-base side may be at fault: contact the support desk."
                .into(),
            "FAQ Q18, Q3, Q9–Q14",
        ));
    }
    let daemon_tcp_only_fails = f.daemon_answers && f.daemon_udp && !f.daemon_tcp;
    let tcp_blocked: Vec<String> = f
        .routes
        .iter()
        .flat_map(|r| r.servers.iter().map(move |s| (r, s)))
        .filter(|(_, s)| s.udp && !s.tcp && !(no_ipv6 && s.global_ipv6()))
        .map(|(r, s)| format!("{} {}", r.name, s.addr))
        .collect();
    if !tcp_blocked.is_empty() || daemon_tcp_only_fails {
        let mut which = tcp_blocked.join(", ");
        if daemon_tcp_only_fails {
            which = if which.is_empty() {
                "oqsdns".into()
            } else {
                format!("oqsdns, {which}")
            };
        }
        out.push(problem(
            id::TCP_BLOCKED,
            format!(
                "UDP では応答しますが TCP では応答しません（{which}）。ルーター・ファイアウォールの\
                 アクセス制御やリカーシブDNS機能が DNS over TCP を止めていないか確認してください。"
            ),
            format!(
                "Answers over UDP but not over TCP ({which}): a router or firewall ACL, or a \
                 \"recursive DNS\" feature, blocks DNS over TCP."
            ),
            "手順7 (pp.12–13)",
        ));
    }
    for route in &f.routes {
        let hidden = (route.kind == RouteKind::NwBase && explained_nw_base)
            || (no_ipv6 && route.servers.iter().all(ServerFinding::global_ipv6));
        if hidden {
            continue;
        }
        if route.dead() {
            let servers = join_addrs(route.servers.iter());
            out.push(problem(
                id::ROUTE_DOWN,
                format!(
                    "ルート {} のどの DNS サーバーも応答しません（{servers}）。",
                    route.name
                ),
                format!("No server of route {} answers ({servers}).", route.name),
                "手順3 (p.4)",
            ));
        } else {
            let down: Vec<&ServerFinding> = route.servers.iter().filter(|s| !s.answers()).collect();
            if !down.is_empty() {
                let servers = join_addrs(down.into_iter());
                out.push(problem(
                    id::SERVER_DOWN,
                    format!(
                        "ルート {} の一部の DNS サーバーが応答しません（{servers}）。もう一方（優先/代替）が\
                         応答しているため名前解決は続きます。",
                        route.name
                    ),
                    format!(
                        "Some servers of route {} do not answer ({servers}); the other (primary or \
                         alternate) answers, so names still resolve.",
                        route.name
                    ),
                    "手順3 (p.4)",
                ));
            }
        }
    }
    let nothing_else = out.is_empty();
    if nothing_else && f.daemon_answers && !(f.daemon_udp && f.daemon_tcp) {
        out.push(problem(
            id::DAEMON_FAILS_NAMES,
            "oqsdns は応答しますが、手順7 の名前の一部を解決できません。oqsdns のログ\
             （journalctl -u oqsdns）を確認してください。"
                .into(),
            "oqsdns answers, but some of step 7's names do not resolve through it: see its log \
             (journalctl -u oqsdns)."
                .into(),
            "手順7 (pp.12–13)",
        ));
    }
    if f.prefix_changed == Some(true) {
        out.push(problem(
            id::PREFIX_CHANGED,
            "oqsdns の起動後にこのホストの IPv6 プレフィックスが変わりました。https://www.lineauth.mnw で\
             回線認証をやり直してください。"
                .into(),
            "This host's IPv6 prefix changed since oqsdns started: do line authentication \
             (回線認証) again at https://www.lineauth.mnw."
                .into(),
            "FAQ Q18",
        ));
    }
    if out.is_empty() {
        out.push(Verdict {
            id: id::OK,
            severity: Severity::Ok,
            ja: "すべて正常です。手順7 の名前は oqsdns 経由で UDP・TCP とも解決でき、すべての DNS サーバーが\
                 応答します。"
                .into(),
            en: "All good: step 7's names resolve through oqsdns over UDP and TCP, and every DNS \
                 server answers."
                .into(),
            reference: "手順7 (pp.12–13)",
        });
    }
    out
}

fn join_addrs<'a>(servers: impl Iterator<Item = &'a ServerFinding>) -> String {
    servers
        .map(|s| s.addr.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether every verdict is good news: the exit status of `oqsdns check`.
pub fn all_ok(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.severity == Severity::Ok)
}

#[cfg(test)]
mod tests;
