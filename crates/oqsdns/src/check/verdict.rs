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

/// A verdict's words: the finding and the next step, each in both languages.
struct Words {
    ja: String,
    en: String,
    action_ja: String,
    action_en: String,
}

fn problem(id: &'static str, words: Words, reference: &'static str, call_vendor: bool) -> Verdict {
    Verdict {
        id,
        severity: Severity::Problem,
        ja: words.ja,
        en: words.en,
        reference,
        action_ja: words.action_ja,
        action_en: words.action_en,
        call_vendor,
    }
}

/// The vendor's part, said the same way in every verdict that needs one.
const CALL_VENDOR_JA: &str = "医療機関のスタッフの方は、システムベンダーに連絡してください。";
const CALL_VENDOR_EN: &str = "Clinic staff: call your system vendor.";

/// What the findings mean, most fundamental first; `[ok]` when nothing is wrong. A cause that
/// explains another finding hides it: without IPv6 the NW-base verdicts are not given, and a
/// wrong area is not also reported as unreachable NW-base servers.
pub fn verdicts(f: &Findings) -> Vec<Verdict> {
    let cmd = commands(f.openwrt);
    let mut out = Vec::new();
    if !f.daemon_answers {
        out.push(problem(
            id::DAEMON_NOT_ANSWERING,
            Words {
                ja: "oqsdns がこのアドレスで応答しません。".into(),
                en: "oqsdns does not answer on this address.".into(),
                action_ja: format!(
                    "デーモンが動作しているか（{}）、ログ（{}）、listen のアドレスと、オンライン資格確認端末の \
                     DNS 設定（手順5, p.8）を確認してください。{CALL_VENDOR_JA}",
                    cmd.status, cmd.log
                ),
                action_en: format!(
                    "Check that the daemon runs ({}), its log ({}), its listen addresses, and the \
                     terminal's DNS setting (step 5, p.8). {CALL_VENDOR_EN}",
                    cmd.status, cmd.log
                ),
            },
            "手順5 (p.8), FAQ Q3",
            true,
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
                "IPv6 ではどの DNS サーバーにも届きません。",
                "No DNS server answers over IPv6.",
            )
        } else {
            (
                "このホストにグローバル IPv6 アドレスがありません。",
                "This host has no global IPv6 address.",
            )
        };
        out.push(problem(
            id::NO_IPV6,
            Words {
                ja: ja.into(),
                en: en.into(),
                action_ja: format!(
                    "ルーターの IPv6 再配布設定（手順2, p.3）を確認してください。ひかり電話対応ルーターの配下では、\
                     RA ではなく DHCP-PD（DHCPv6-PD）での再配布が必要な場合があります（FAQ Q1）。あわせて\
                     オンライン資格確認端末の IPv6 設定（手順4〜6）と、フレッツ・v6オプションの契約（1-1 手順1, p.1、\
                     FAQ Q6）を確認してください。{CALL_VENDOR_JA}"
                ),
                action_en: format!(
                    "Check the router's IPv6 redistribution (step 2, p.3): behind a Hikari Denwa \
                     router it may have to be DHCP-PD (DHCPv6-PD), not RA (FAQ Q1). Check also the \
                     terminal's IPv6 settings (steps 4-6) and the FLET'S v6 option contract (1-1 \
                     step 1, p.1; FAQ Q6). {CALL_VENDOR_EN}"
                ),
            },
            "手順2 (p.3), FAQ Q1, 手順4〜6 (pp.5–11), 1-1 手順1 (p.1), FAQ Q6",
            true,
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
            Words {
                ja: "この回線のエリアのオンライン資格確認NW基盤の DNS は応答せず、もう一方のエリアの DNS が\
                     応答します。設定の area（東日本 east / 西日本 west）が回線と違います。"
                    .into(),
                en: "This area's NW-base DNS servers do not answer but the other area's do: the \
                     configured area (east / west) does not match the line."
                    .into(),
                action_ja: format!(
                    "設定ファイルの area を回線のエリア（NTT東日本 east / NTT西日本 west）に合わせ、oqsdns を\
                     再起動してください（{}）。{CALL_VENDOR_JA}",
                    cmd.restart
                ),
                action_en: format!(
                    "Set area in the configuration to the line's area (NTT East: east, NTT West: \
                     west) and restart oqsdns ({}). {CALL_VENDOR_EN}",
                    cmd.restart
                ),
            },
            "手順3 (p.4)",
            true,
        ));
    } else if !no_ipv6 && nw_base_dead && ngn_alive {
        explained_nw_base = true;
        out.push(problem(
            id::NW_BASE_UNREACHABLE,
            Words {
                ja: "NGN DNS は応答しますが、オンライン資格確認NW基盤の DNS サーバーが応答しません\
                     （優先DNSサーバー・代替DNSサーバーとも）。名前解決（手順7）ができないため、回線認証\
                     （3-1）もまだできません。"
                    .into(),
                en: "The NGN DNS answers but the NW-base DNS servers do not (primary and \
                     alternate): names cannot resolve (step 7), so line authentication (3-1) \
                     cannot be done yet either."
                    .into(),
                action_ja: format!(
                    "考えられる原因を順に確認してください。(1) 回線がまだ接続対象として登録されていない: \
                     医療機関等向けポータルサイトの申請で「電気通信回線種別」が「1：IP-VPN回線事業者（NTTなど。\
                     ただし、CTC・QTnetを除く）」か、\
                     接続に使う回線の「お客さまID」か（1-1 手順2, p.1。申請の反映には1週間程度かかります）。\
                     (2) 回線タイプやフレッツ・v6オプションが対象外（FAQ Q3, 1-1 手順1, p.1）。\
                     (3) 経路上の機器（ビジネスホン主装置・UTM など）が IPv6 に対応していない（手順1, p.2）。\
                     (4) 回線またはオンライン資格確認NW基盤側の工事・故障: フレッツ光の工事・故障情報（FAQ Q20）。\
                     解決しない場合はネットワークサポートデスク（0120-220-571, FAQ Q21）へ問い合わせてください。\
                     {CALL_VENDOR_JA}"
                ),
                action_en: format!(
                    "Check the causes the guide gives, in order. (1) The line is not admitted yet: \
                     the application on the medical institutions' portal must give line type \"1: \
                     IP-VPN\" and the customer ID of this line (1-1 step 2, p.1; a correction takes \
                     about a week). (2) The line type or the FLET'S v6 option is not supported \
                     (FAQ Q3; 1-1 step 1, p.1). (3) A device on the path (business phone unit, UTM) \
                     does not support IPv6 (step 1, p.2). (4) Works or a fault on the line or the \
                     NW-base side: FLET'S works and faults information (FAQ Q20). If none helps, \
                     call the network support desk (0120-220-571, FAQ Q21). {CALL_VENDOR_EN}"
                ),
            },
            "1-1 手順2 (p.1), FAQ Q3, 手順1 (p.2), FAQ Q20, FAQ Q21",
            true,
        ));
    }
    let daemon_resolves = f.daemon_answers && (f.daemon_udp || f.daemon_tcp);
    let unreachable: Vec<&CentreFinding> = f.centre.iter().filter(|c| !c.connected).collect();
    if !no_ipv6 && !explained_nw_base && daemon_resolves && !unreachable.is_empty() {
        let which = unreachable
            .iter()
            .map(|c| format!("{} [{}]:443", c.name, c.addr))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(problem(
            id::CENTRE_UNREACHABLE,
            Words {
                ja: format!(
                    "名前は解決できますが、オンライン資格確認のセンターの TCP 443 番（HTTPS）に接続できません\
                     （{which}）。DNS ではなく経路の問題です。"
                ),
                en: format!(
                    "Names resolve, but TCP port 443 (HTTPS) of the centre cannot be connected to \
                     ({which}): a path problem, not a DNS one."
                ),
                action_ja: format!(
                    "経路上の機器（UTM・ファイアウォール・スイッチ・ビジネスホン主装置など）が IPv6 に対応し、\
                     IPv6 の TCP 443 番を通しているか確認してください（手順1, p.2）。センターは ping に応答しない\
                     ため、ping では確認できません（FAQ Q2）。{CALL_VENDOR_JA}"
                ),
                action_en: format!(
                    "Check that every device on the path (UTM, firewall, switch, business phone \
                     unit) supports IPv6 and passes TCP port 443 over IPv6 (step 1, p.2). The \
                     centre does not answer ping, so ping cannot tell (FAQ Q2). {CALL_VENDOR_EN}"
                ),
            },
            "手順1 (p.2), FAQ Q2, FAQ Q3",
            true,
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
            Words {
                ja: format!("UDP では応答しますが TCP では応答しません（{which}）。"),
                en: format!("Answers over UDP but not over TCP ({which})."),
                action_ja: format!(
                    "ルーター・ファイアウォールのアクセス制御やリカーシブDNS機能が DNS の TCP（53番）を止めて\
                     いないか確認し、TCP で名前解決できる設定にしてください。設定方法はルーターメーカーへ\
                     お問い合わせください。{CALL_VENDOR_JA}"
                ),
                action_en: format!(
                    "Check that no router or firewall ACL, nor a \"recursive DNS\" feature, blocks \
                     DNS over TCP (port 53), and let names resolve over TCP; the router's maker \
                     knows how. {CALL_VENDOR_EN}"
                ),
            },
            "手順7 (pp.12–13)",
            true,
        ));
    }
    for route in &f.routes {
        let hidden = (route.kind == RouteKind::NwBase && explained_nw_base)
            || (no_ipv6 && route.servers.iter().all(ServerFinding::global_ipv6));
        if hidden {
            continue;
        }
        let (ja, en) = (route.label_ja(), route.label_en());
        if route.dead() {
            let servers = join_addrs(route.servers.iter());
            out.push(problem(
                id::ROUTE_DOWN,
                Words {
                    ja: format!(
                        "どの DNS サーバーも応答しません（転送先: {ja}、{servers}）。この転送先の名前は\
                         解決できません。"
                    ),
                    en: format!(
                        "No DNS server of {en} answers ({servers}): its names do not resolve."
                    ),
                    action_ja: format!(
                        "ルーターと回線の状態、設定の DNS サーバーのアドレス（手順3, p.4）を確認してください。\
                         {CALL_VENDOR_JA}"
                    ),
                    action_en: format!(
                        "Check the router, the line and the configured server addresses (step 3, \
                         p.4). {CALL_VENDOR_EN}"
                    ),
                },
                "手順3 (p.4)",
                true,
            ));
        } else {
            let down: Vec<&ServerFinding> = route.servers.iter().filter(|s| !s.answers()).collect();
            if !down.is_empty() {
                let servers = join_addrs(down.into_iter());
                out.push(problem(
                    id::SERVER_DOWN,
                    Words {
                        ja: format!(
                            "一部の DNS サーバーが応答しません（転送先: {ja}、{servers}）。もう一方\
                             （優先DNSサーバー／代替DNSサーバー）が応答しているため名前解決は続きます。"
                        ),
                        en: format!(
                            "Some DNS servers of {en} do not answer ({servers}); the other (primary \
                             or alternate) answers, so names still resolve."
                        ),
                        action_ja: "今すぐの対応は不要です。数時間たっても続く場合はシステムベンダーに伝えて\
                                    ください。"
                            .into(),
                        action_en: "Nothing to do now; if it lasts for hours, tell your system \
                                    vendor."
                            .into(),
                    },
                    "手順3 (p.4)",
                    false,
                ));
            }
        }
    }
    let nothing_else = out.is_empty();
    if nothing_else && f.daemon_answers && !(f.daemon_udp && f.daemon_tcp) {
        out.push(problem(
            id::DAEMON_FAILS_NAMES,
            Words {
                ja: "oqsdns は応答しますが、手順7 の名前の一部を解決できません。".into(),
                en: "oqsdns answers, but some of step 7's names do not resolve through it.".into(),
                action_ja: format!(
                    "oqsdns のログ（{}）で、解決できない名前と理由を確認してください。{CALL_VENDOR_JA}",
                    cmd.log
                ),
                action_en: format!(
                    "See its log ({}) for the names that fail and why. {CALL_VENDOR_EN}",
                    cmd.log
                ),
            },
            "手順7 (pp.12–13)",
            true,
        ));
    }
    if f.prefix_changed == Some(true) {
        out.push(problem(
            id::PREFIX_CHANGED,
            Words {
                ja: "このホストの IPv6 プレフィックスが、oqsdns が記録している回線のものから変わりました\
                     （FAQ Q18）。https://www.lineauth.mnw で回線認証を確認してください。"
                    .into(),
                en: "This host's IPv6 prefix is not the one oqsdns recorded for the line (FAQ \
                     Q18): check line authentication (回線認証) again at https://www.lineauth.mnw."
                    .into(),
                action_ja: format!(
                    "オンライン資格確認端末のブラウザ（Microsoft Edge）で https://www.lineauth.mnw を開いてください。\
                     「認証済みです。」と表示されれば、回線認証の対応は不要です（それでもオンライン資格確認システムに\
                     接続できない場合は、ネットワークやシステム側の影響が考えられるため、ネットワークサポートデスク\
                     （0120-220-571、FAQ Q21）へ問い合わせてください）。「希望する／希望しない」の画面が表示されたら\
                     「希望する」を押し、「回線認証が成功しました。」と表示されることを確認してください（FAQ Q18、\
                     3-1 手順1, p.14）。そのあと oqsdns 機で `{}` を実行してください（システムベンダーが行っても\
                     かまいません）。実行するまで、この表示は oqsdns を再起動しても消えません。",
                    cmd.confirm
                ),
                action_en: format!(
                    "On the terminal's browser (Microsoft Edge) open https://www.lineauth.mnw. If it \
                     says \"認証済みです。\" (already authenticated), there is nothing to do (if \
                     the system still cannot be reached, the network or system side may be at \
                     fault: call the network support desk, 0120-220-571, FAQ Q21). If it shows \
                     the \"希望する/希望しない\" (wish / do not wish) screen, choose \"希望する\" \
                     and check that it says \"回線認証が成功しました。\" (FAQ Q18; 3-1 step 1, \
                     p.14). Then run `{}` on the oqsdns box (the vendor may do it). Until then \
                     this warning stays, across restarts of oqsdns.",
                    cmd.confirm
                ),
            },
            "FAQ Q18, 3-1 (p.14), FAQ Q21",
            false,
        ));
    }
    if out.is_empty() {
        let (ja, en) = if f.centre.is_empty() {
            (
                "確認したのは名前解決だけです",
                "only name resolution was checked",
            )
        } else {
            (
                "確認したのは名前解決と、センターの TCP 443 番への接続だけです",
                "only name resolution and a TCP connection to port 443 of the centre were checked",
            )
        };
        out.push(Verdict {
            id: id::OK,
            severity: Severity::Ok,
            ja: format!(
                "すべて正常です。手順7 の名前は oqsdns 経由で UDP・TCP とも解決でき、すべての DNS サーバーが\
                 応答します。{ja}（回線認証とオンライン資格確認システムへのログインは確認していません）。"
            ),
            en: format!(
                "All good: step 7's names resolve through oqsdns over UDP and TCP, and every DNS \
                 server answers; {en} (not line authentication, nor the login to the system)."
            ),
            reference: "手順7 (pp.12–13)",
            action_ja: "対応は不要です。オンライン資格確認システムに接続できない場合は、回線認証（3-1, p.14）と\
                        ログイン（3-2, p.16）を確認してください。"
                .into(),
            action_en: "Nothing to do. If the system still cannot be reached, check line \
                        authentication (3-1, p.14) and the login (3-2, p.16)."
                .into(),
            call_vendor: false,
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

#[cfg(test)]
mod tests;
