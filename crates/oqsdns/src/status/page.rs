//! `GET /`: the status page, in Japanese or English, one self-contained HTML document (no
//! scripts, no external files) that reloads itself every 30 seconds.

use std::fmt::Write as _;

use oqsdns_core::health::{Plan, State};

use crate::check::verdict::{self, Severity};
use crate::check::Answer;

use super::view::{ServerView, Status};

/// The page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 日本語 (the default).
    Ja,
    /// English (`/en` or `/?lang=en`).
    En,
}

/// The page's fixed words in one language.
struct Words {
    lang: &'static str,
    title: &'static str,
    area: &'static str,
    verdict: &'static str,
    see: &'static str,
    names: &'static str,
    names_note: &'static str,
    servers: &'static str,
    changes: &'static str,
    no_changes: &'static str,
    route: &'static str,
    server: &'static str,
    name: &'static str,
    addresses: &'static str,
    state: &'static str,
    latency: &'static str,
    used_as: &'static str,
    time: &'static str,
    reason: &'static str,
    not_probed: &'static str,
    ipv6: &'static str,
    prefix_changed: &'static str,
    reauth: &'static str,
    updated: &'static str,
    switch: (&'static str, &'static str),
    next: &'static str,
    vendor_yes: &'static str,
    vendor_no: &'static str,
    centre: &'static str,
    centre_note: &'static str,
    centre_none: &'static str,
    connected: &'static str,
    clients: &'static str,
    clients_note: &'static str,
    clients_none: &'static str,
    clients_off: &'static str,
    client: &'static str,
    last_query: &'static str,
    queries: &'static str,
    table_answer: &'static str,
}

const JA: Words = Words {
    lang: "ja",
    title: "oqsdns の状態",
    area: "エリア",
    verdict: "判定",
    see: "参照: 接続ガイド",
    names: "手順7 の名前の解決",
    names_note: "各 DNS サーバーに最後に問い合わせた結果（UDP と TCP）",
    servers: "転送先の DNS サーバー",
    changes: "最近の状態変化",
    no_changes: "起動後の状態変化はありません。",
    route: "転送先",
    server: "サーバー",
    name: "名前",
    addresses: "アドレス",
    state: "状態",
    latency: "応答時間",
    used_as: "使用",
    time: "日時 (JST)",
    reason: "理由",
    not_probed: "まだ問い合わせていません",
    ipv6: "このホストのグローバル IPv6",
    prefix_changed: "回線のものとして記録したプレフィックスから変化",
    reauth: "回線認証（FAQ Q18）を確認したあと、oqsdns 機で次を実行するまで、この表示は再起動しても消えません：",
    updated: "更新",
    switch: ("/en", "English"),
    next: "次にすること",
    vendor_yes: "システムベンダーへの連絡: 必要",
    vendor_no: "システムベンダーへの連絡: 不要",
    centre: "センターへの接続（TCP 443 番）",
    centre_note: "hweb.oqs.onshikaku.org と www.lineauth.mnw のアドレスへ接続して閉じるだけの確認です（ping はセンターで止められています: FAQ Q2）",
    centre_none: "まだ確認していません（名前の解決を待っています）。",
    connected: "接続",
    clients: "oqsdns を使っている端末",
    clients_note: "最近問い合わせた端末（オンライン資格確認端末など）。オン資の名前: 接続ガイドの表（手順3）の転送先で解決する名前",
    clients_none: "まだどの端末からも問合せがありません。",
    clients_off: "表示しない設定です（[status] clients = false）。",
    client: "端末のアドレス",
    last_query: "最後の問合せ (JST)",
    queries: "問合せ数",
    table_answer: "オン資の名前の解決（最後）",
};

const EN: Words = Words {
    lang: "en",
    title: "oqsdns status",
    area: "Area",
    verdict: "Verdict",
    see: "See the connection guide",
    names: "Step 7 names",
    names_note: "the last answers of each DNS server, over UDP and TCP",
    servers: "Upstream DNS servers",
    changes: "Recent changes of state",
    no_changes: "No change of state since the start.",
    route: "Route",
    server: "Server",
    name: "Name",
    addresses: "Addresses",
    state: "State",
    latency: "Latency",
    used_as: "Used",
    time: "Time (JST)",
    reason: "Reason",
    not_probed: "not asked yet",
    ipv6: "This host's global IPv6",
    prefix_changed: "not the prefix recorded for the line",
    reauth: "After checking line authentication (FAQ Q18), run this on the oqsdns box; until then this stays, across restarts:",
    updated: "Updated",
    switch: ("/", "日本語"),
    next: "Next step",
    vendor_yes: "Call the system vendor: yes",
    vendor_no: "Call the system vendor: no",
    centre: "Connection to the centre (TCP port 443)",
    centre_note: "a TCP connection to the addresses of hweb.oqs.onshikaku.org and www.lineauth.mnw, opened and closed (the centre drops ping: FAQ Q2)",
    centre_none: "Not checked yet (waiting for the names to resolve).",
    connected: "Connected",
    clients: "Terminals using oqsdns",
    clients_note: "clients that asked recently (the qualification terminals and others); the guide's names are those of the table's routes (step 3)",
    clients_none: "No client has asked yet.",
    clients_off: "Not listed ([status] clients = false).",
    client: "Address",
    last_query: "Last query (JST)",
    queries: "Queries",
    table_answer: "Last name of the guide's table",
};

const STYLE: &str = "body{font-family:'Hiragino Sans','Yu Gothic UI',Meiryo,'IPAPGothic',sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.4em 0 .4em}\
.lang{float:right}table{border-collapse:collapse;background:#fff;margin-bottom:.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eee}.ok{color:#157a2c;font-weight:bold}.ng{color:#c0141c;font-weight:bold}\
.warn{color:#a15c00;font-weight:bold}.dim{color:#777}.addr{font-family:monospace;font-size:1em}\
.verdict{border-left:.5em solid;padding:.5em 1em;margin:.5em 0;background:#fff}\
.verdict.ok{border-color:#157a2c}.verdict.ng{border-color:#c0141c}\
.verdict p{margin:.2em 0;font-weight:normal;color:#222}";

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A state in the page's language, with its colour.
fn state(lang: Lang, state: State) -> String {
    let (class, ja) = match state {
        State::Up => ("ok", "正常"),
        State::Degraded => ("warn", "低速・一部応答なし"),
        State::Down => ("ng", "応答なし"),
        State::Unknown => ("dim", "未確認"),
    };
    let word = if lang == Lang::Ja { ja } else { state.as_str() };
    format!("<span class=\"{class}\">{word}</span>")
}

/// The area's name in the page's language.
fn area(lang: Lang, area: oqsdns_config::Area) -> String {
    use oqsdns_config::Area;
    let ja = match area {
        Area::East => "東日本",
        Area::West => "西日本",
        Area::Auto => "自動",
        Area::None => "なし",
    };
    if lang == Lang::Ja {
        format!("{ja} ({area})")
    } else {
        area.to_string()
    }
}

/// A green or red mark for one answer, with its time or error.
fn mark(answer: Option<&Answer>) -> String {
    match answer {
        Some(a) if a.ok => format!(
            "<span class=\"ok\">&#9679; OK</span> <span class=\"dim\">{} ms</span>",
            a.latency_ms
        ),
        Some(a) => format!(
            "<span class=\"ng\">&#10005; NG</span> <span class=\"dim\">{}</span>",
            esc(a.error.as_deref().unwrap_or(""))
        ),
        None => "<span class=\"dim\">-</span>".into(),
    }
}

/// The page of `status` in `lang`.
pub fn render(status: &Status, lang: Lang) -> String {
    let w = if lang == Lang::Ja { &JA } else { &EN };
    let mut h = String::with_capacity(16 * 1024);
    header(&mut h, w, lang, status);
    verdicts(&mut h, w, lang, status);
    names(&mut h, w, lang, status);
    servers(&mut h, w, lang, status);
    centre(&mut h, w, status);
    clients(&mut h, w, lang, status);
    changes(&mut h, w, lang, status);
    footer(&mut h, w, status);
    h
}

/// The document's head, the language switch, the title, the area and the time.
fn header(h: &mut String, w: &Words, lang: Lang, status: &Status) {
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        w.lang, w.title
    );
    let _ = writeln!(
        h,
        "<p class=\"lang\"><a href=\"{}\">{}</a></p><h1>{}</h1>\
         <p>{}: <b>{}</b> &nbsp; {}: {}</p>",
        w.switch.0,
        w.switch.1,
        w.title,
        w.area,
        area(lang, status.area),
        w.updated,
        status.time.short()
    );
}

/// The verdicts, each with what to do next and whether to call the vendor.
fn verdicts(h: &mut String, w: &Words, lang: Lang, status: &Status) {
    let _ = writeln!(h, "<h2>{}</h2>", w.verdict);
    for v in &status.verdicts {
        let (class, mark) = match v.severity {
            Severity::Ok => ("ok", "&#9679; OK"),
            Severity::Problem => ("ng", "&#10005; NG"),
        };
        let (text, action) = if lang == Lang::Ja {
            (&v.ja, &v.action_ja)
        } else {
            (&v.en, &v.action_en)
        };
        let vendor = if v.call_vendor {
            format!("<b class=\"ng\">{}</b>", w.vendor_yes)
        } else {
            w.vendor_no.to_string()
        };
        let _ = writeln!(
            h,
            "<div class=\"verdict {class}\"><span class=\"{class}\">{mark}</span>\
             <p>{}</p><p><b>{}:</b> {}</p><p>{vendor}</p><p class=\"dim\">{} {}</p></div>",
            esc(text),
            w.next,
            esc(action),
            w.see,
            esc(v.reference)
        );
    }
}

/// The test names asked of every server, and the answers.
fn names(h: &mut String, w: &Words, lang: Lang, status: &Status) {
    let _ = writeln!(
        h,
        "<h2>{}</h2><p class=\"dim\">{}</p><table><tr><th>{}</th><th>{}</th><th>{}</th>\
         <th>UDP</th><th>TCP</th><th>{}</th></tr>",
        w.names, w.names_note, w.name, w.route, w.server, w.addresses
    );
    for route in &status.routes {
        let label = route_label(lang, route);
        for server in &route.servers {
            names_rows(h, w, &label, server);
        }
    }
    h.push_str("</table>\n");
}

/// Every server of every route, with its state per transport and how it is used.
fn servers(h: &mut String, w: &Words, lang: Lang, status: &Status) {
    let _ = writeln!(
        h,
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>UDP</th><th>TCP</th>\
         <th>{}</th><th>{}</th></tr>",
        w.servers, w.route, w.server, w.state, w.used_as, w.reason
    );
    for route in &status.routes {
        let label = route_label(lang, route);
        for (i, s) in route.servers.iter().enumerate() {
            server_row(h, w, lang, &label, i, s);
        }
    }
    h.push_str("</table>\n");
}

/// One row of the servers' table: the `i`th server `s` of the route labelled `label`.
fn server_row(h: &mut String, w: &Words, lang: Lang, label: &str, i: usize, s: &ServerView) {
    let role = match (lang, i) {
        (Lang::Ja, 0) => "優先DNSサーバー",
        (Lang::Ja, _) => "代替DNSサーバー",
        (Lang::En, 0) => "primary",
        (Lang::En, _) => "alternate",
    };
    let used = match (lang, s.plan) {
        (Lang::Ja, Plan::Udp) => "UDP（切り詰め時 TCP）",
        (Lang::Ja, Plan::TcpOnly) => "TCP のみ",
        (Lang::Ja, _) => "予備（他が応答しない場合のみ）",
        (Lang::En, Plan::Udp) => "UDP (TCP when truncated)",
        (Lang::En, Plan::TcpOnly) => "TCP only",
        (Lang::En, _) => "spare (only when no other answers)",
    };
    let track = |t: &super::view::TrackView| {
        if matches!(t.state, State::Up | State::Degraded) {
            format!(
                "{} <span class=\"dim\">{}: {:.1} ms</span>",
                state(lang, t.state),
                w.latency,
                t.latency_ms
            )
        } else {
            state(lang, t.state)
        }
    };
    let reason = [("UDP", &s.udp.reason), ("TCP", &s.tcp.reason)]
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(t, r)| format!("{t}: {}", esc(r)))
        .collect::<Vec<_>>()
        .join("<br>");
    let _ = writeln!(
        h,
        "<tr><td>{} <span class=\"dim\">{role}</span></td><td class=\"addr\">{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{used}</td><td>{reason}</td></tr>",
        esc(label),
        s.addr,
        state(lang, s.state),
        track(&s.udp),
        track(&s.tcp),
    );
}

/// The recent state changes of the servers.
fn changes(h: &mut String, w: &Words, lang: Lang, status: &Status) {
    let _ = writeln!(h, "<h2>{}</h2>", w.changes);
    if status.changes.is_empty() {
        let _ = writeln!(h, "<p class=\"dim\">{}</p>", w.no_changes);
    } else {
        let _ = writeln!(
            h,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th></th><th>{}</th><th>{}</th></tr>",
            w.time, w.route, w.server, w.state, w.reason
        );
        for c in &status.changes {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"addr\">{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td></tr>",
                c.time.short(),
                esc(&c.route),
                c.server,
                c.transport.to_uppercase(),
                state(lang, c.state),
                esc(&c.reason)
            );
        }
        h.push_str("</table>\n");
    }
}

/// The host's IPv6 prefixes, whether they changed, and the links to the machine-readable pages.
fn footer(h: &mut String, w: &Words, status: &Status) {
    let prefixes = if status.prefixes.is_empty() {
        "-".to_string()
    } else {
        status.prefixes.join(" ")
    };
    let changed = if status.prefix_changed {
        format!(
            " <span class=\"ng\">({})</span><br>{} <code>{}</code>",
            w.prefix_changed,
            w.reauth,
            esc(verdict::confirm_reauth_command(verdict::on_openwrt()))
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        h,
        "<p class=\"dim\">{}: <span class=\"addr\">{}</span>{changed}<br>\
         <a href=\"/health\">/health</a> (JSON) &nbsp; <a href=\"/metrics\">/metrics</a> \
         (Prometheus)</p>\n</body></html>",
        w.ipv6,
        esc(&prefixes)
    );
}

/// Where a route forwards, in the guide's words: 「転送先: オンライン資格確認NW基盤」 rather than
/// the configuration's `nw-base`.
fn route_label(lang: Lang, route: &super::view::RouteView) -> String {
    use crate::check::RouteKind;
    match (route.kind, lang) {
        (RouteKind::Other, _) => route.name.clone(),
        (kind, Lang::Ja) => kind.label_ja().to_string(),
        (kind, Lang::En) => kind.label_en().to_string(),
    }
}

/// The TCP/443 connections to the centre.
fn centre(h: &mut String, w: &Words, status: &Status) {
    let _ = writeln!(
        h,
        "<h2>{}</h2><p class=\"dim\">{}</p>",
        w.centre, w.centre_note
    );
    if status.centre.is_empty() {
        let _ = writeln!(h, "<p class=\"dim\">{}</p>", w.centre_none);
        return;
    }
    let _ = writeln!(
        h,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        w.name, w.addresses, w.connected
    );
    for c in &status.centre {
        let result = if c.connected {
            "<span class=\"ok\">&#9679; OK</span>".to_string()
        } else {
            format!(
                "<span class=\"ng\">&#10005; NG</span> <span class=\"dim\">{}</span>",
                esc(c.error.as_deref().unwrap_or(""))
            )
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"addr\">[{}]:443</td><td>{result}</td></tr>",
            esc(&c.name),
            c.addr
        );
    }
    h.push_str("</table>\n");
}

/// The clients seen recently.
fn clients(h: &mut String, w: &Words, lang: Lang, status: &Status) {
    let _ = writeln!(
        h,
        "<h2>{}</h2><p class=\"dim\">{}</p>",
        w.clients, w.clients_note
    );
    let Some(clients) = &status.clients else {
        let _ = writeln!(h, "<p class=\"dim\">{}</p>", w.clients_off);
        return;
    };
    if clients.is_empty() {
        let _ = writeln!(h, "<p class=\"dim\">{}</p>", w.clients_none);
        return;
    }
    let _ = writeln!(
        h,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        w.client, w.last_query, w.queries, w.table_answer
    );
    for c in clients {
        let answer = match (c.table, lang) {
            ("answered", Lang::Ja) => "<span class=\"ok\">&#9679; 解決できた</span>",
            ("answered", Lang::En) => "<span class=\"ok\">&#9679; answered</span>",
            ("failed", Lang::Ja) => "<span class=\"ng\">&#10005; 解決できなかった</span>",
            ("failed", Lang::En) => "<span class=\"ng\">&#10005; not answered</span>",
            ("pending", Lang::Ja) => "<span class=\"dim\">応答待ち</span>",
            ("pending", Lang::En) => "<span class=\"dim\">waiting</span>",
            (_, Lang::Ja) => "<span class=\"dim\">問合せなし</span>",
            (_, Lang::En) => "<span class=\"dim\">none asked</span>",
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"addr\">{}</td><td>{}</td><td>{}</td><td>{answer}</td></tr>",
            c.addr,
            c.last.short(),
            c.queries
        );
    }
    h.push_str("</table>\n");
}

/// The rows of one server's probe names.
fn names_rows(h: &mut String, w: &Words, route: &str, server: &ServerView) {
    if server.probes.is_empty() {
        let _ = writeln!(
            h,
            "<tr><td class=\"dim\">-</td><td>{}</td><td class=\"addr\">{}</td>\
             <td colspan=\"3\" class=\"dim\">{}</td></tr>",
            esc(route),
            server.addr,
            w.not_probed
        );
        return;
    }
    for row in &server.probes {
        let answer = [&row.udp, &row.tcp].into_iter().flatten().find(|a| a.ok);
        let addresses = answer.map_or(String::new(), |a| {
            a.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("<br>")
        });
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"addr\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"addr\">{addresses}</td></tr>",
            esc(&row.name),
            esc(route),
            server.addr,
            mark(row.udp.as_ref()),
            mark(row.tcp.as_ref())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::verdict;

    fn status(prefix_changed: bool) -> Status {
        let verdicts = [if prefix_changed {
            verdict::id::PREFIX_CHANGED
        } else {
            verdict::id::OK
        }]
        .iter()
        .filter_map(|id| verdict::example(id))
        .collect();
        Status {
            ok: !prefix_changed,
            area: oqsdns_config::Area::East,
            time: super::super::view::Time::of(std::time::UNIX_EPOCH),
            verdicts,
            routes: Vec::new(),
            changes: Vec::new(),
            prefixes: vec!["2408:82:1234:5600::/64".into()],
            prefix_changed,
            centre: Vec::new(),
            centre_checked: None,
            clients: None,
        }
    }

    #[test]
    fn a_changed_prefix_shows_how_to_clear_it() {
        let command = verdict::confirm_reauth_command(verdict::on_openwrt());
        assert!(command.contains("oqsdns check") && command.contains("--confirm-reauth"));
        for lang in [Lang::Ja, Lang::En] {
            let page = render(&status(true), lang);
            let line = page
                .lines()
                .find(|l| l.contains("2408:82:1234:5600::/64"))
                .expect("the prefix line");
            assert!(line.contains(&format!("<code>{command}</code>")), "{line}");
            assert!(line.contains("FAQ Q18"), "{line}");
            assert!(!render(&status(false), lang).contains("--confirm-reauth"));
        }
    }
}
