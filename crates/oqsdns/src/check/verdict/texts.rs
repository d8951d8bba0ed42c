//! The words of each verdict of [`verdicts`](super::verdicts), in Japanese and English, with
//! the connection guide's reference and whether to call the vendor.

use super::{id, Commands, Severity, Verdict};

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

/// oqsdns does not answer on the address checked.
pub(super) fn daemon_not_answering(cmd: &Commands) -> Verdict {
    problem(
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
    )
}

/// No server answers over IPv6, or the host has no global IPv6 address.
pub(super) fn no_ipv6(host_global_ipv6: bool) -> Verdict {
    let (ja, en) = if host_global_ipv6 {
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
    problem(
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
    )
}

/// This area's NW-base servers are silent and the other area's answer.
pub(super) fn wrong_area(cmd: &Commands) -> Verdict {
    problem(
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
    )
}

/// The NGN answers but the NW-base does not.
pub(super) fn nw_base_unreachable() -> Verdict {
    problem(
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
    )
}

/// Names resolve but the centre's TCP 443 cannot be reached (`which`).
pub(super) fn centre_unreachable(which: &str) -> Verdict {
    problem(
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
    )
}

/// `which` answer over UDP but not over TCP.
pub(super) fn tcp_blocked(which: &str) -> Verdict {
    problem(
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
    )
}

/// No server of the route labelled `ja` / `en` answers.
pub(super) fn route_down(ja: &str, en: &str, servers: &str) -> Verdict {
    problem(
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
    )
}

/// Some servers of the route labelled `ja` / `en` do not answer.
pub(super) fn server_down(ja: &str, en: &str, servers: &str) -> Verdict {
    problem(
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
    )
}

/// oqsdns answers but fails some of step 7's names.
pub(super) fn daemon_fails_names(cmd: &Commands) -> Verdict {
    problem(
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
    )
}

/// The host's IPv6 prefix changed since line authentication (FAQ Q18).
pub(super) fn prefix_changed(cmd: &Commands) -> Verdict {
    problem(
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
    )
}

/// Nothing wrong; `centre_unchecked` when no connection to the centre was tried.
pub(super) fn ok(centre_unchecked: bool) -> Verdict {
    let (ja, en) = if centre_unchecked {
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
    Verdict {
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
    }
}
