//! How `oqsdns check` prints its [`Report`]: a table in the spirit of the guide's nslookup
//! screenshots (手順7), then the verdict in Japanese and English; or the same as JSON.

use std::fmt::Write as _;

use super::{Answer, Report, Row, Severity};

/// The report as text for a terminal.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "oqsdns check: area {}, oqsdns at {}",
        report.area, report.server
    );
    section(
        &mut out,
        "端末と同じ問合せ (through oqsdns, as a terminal asks)",
        &report.daemon,
    );
    section(
        &mut out,
        "DNS サーバーへ直接 (straight to each upstream server)",
        &report.upstreams,
    );
    if !report.other_area.is_empty() {
        section(
            &mut out,
            "もう一方のエリアの NW基盤 DNS (the other area's NW-base DNS)",
            &report.other_area,
        );
    }
    let _ = writeln!(
        out,
        "\noqsdns の状態 (the daemon's own view, status.oqsdns):"
    );
    match &report.status {
        Some(lines) => {
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
        }
        None => {
            let _ = writeln!(out, "  (応答なし / no answer)");
        }
    }
    let ipv6 = if report.host_ipv6.is_empty() {
        "なし / none".to_string()
    } else {
        report.host_ipv6.join(" ")
    };
    let _ = writeln!(
        out,
        "このホストのグローバル IPv6 (this host's global IPv6): {ipv6}"
    );
    let _ = writeln!(
        out,
        "\nセンターへの接続 TCP 443 (connection to the centre, TCP port 443):"
    );
    if report.findings.centre.is_empty() {
        let _ = writeln!(out, "  (確認なし / not checked)");
    }
    for c in &report.findings.centre {
        let result = if c.connected {
            "ok".to_string()
        } else {
            format!("NG {}", c.error.as_deref().unwrap_or("failed"))
        };
        let _ = writeln!(out, "  {} [{}]:443 {result}", c.name, c.addr);
    }
    let _ = writeln!(out, "\n判定 (verdict):");
    for verdict in &report.verdicts {
        let mark = match verdict.severity {
            Severity::Ok => "OK",
            Severity::Problem => "NG",
        };
        let _ = writeln!(out, "[{mark}] {}", verdict.id);
        let _ = writeln!(out, "  {}", verdict.ja);
        let _ = writeln!(out, "  {}", verdict.en);
        let _ = writeln!(out, "  次にすること: {}", verdict.action_ja);
        let _ = writeln!(out, "  Next step: {}", verdict.action_en);
        let vendor = if verdict.call_vendor {
            "必要 / yes"
        } else {
            "不要 / no"
        };
        let _ = writeln!(
            out,
            "  システムベンダーへの連絡 (call the vendor): {vendor}"
        );
        let _ = writeln!(out, "  参照 / see: 接続ガイド {}", verdict.reference);
    }
    out
}

fn section(out: &mut String, title: &str, rows: &[Row]) {
    let _ = writeln!(out, "\n{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (なし / none)");
        return;
    }
    let head = ["ROUTE", "SERVER", "NAME", "UDP", "TCP", "ADDRESSES"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let addresses = if r.udp.ok { &r.udp } else { &r.tcp };
            [
                r.route.clone(),
                r.server.to_string(),
                r.name.clone(),
                cell(&r.udp),
                cell(&r.tcp),
                addresses
                    .addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    let mut widths = head.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, row: &[&str]| {
        let mut text = String::from(" ");
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                text.push(' ');
                text.push_str(c);
            } else {
                let _ = write!(text, " {c:<w$}");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(out, &head);
    for row in &cells {
        line(out, &row.each_ref().map(String::as_str));
    }
}

fn cell(answer: &Answer) -> String {
    if answer.ok {
        format!("ok {} ms", answer.latency_ms)
    } else {
        let error = answer.error.as_deref().unwrap_or("failed");
        format!("NG {error} ({} ms)", answer.latency_ms)
    }
}

/// The report as JSON: the same rows, findings and verdicts, for scripts and monitoring.
pub fn json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("the report serializes");
    text.push('\n');
    text
}
