//! The HTTP status endpoint against the in-process daemon between loopback fakes (area none):
//! `/health` says 200 with the `ok` verdict when every server answers and 503 with the check's
//! verdict when the NW-base does not; `/metrics` counts queries, cache hits and refusals, passes
//! `promtool check metrics` in the text format 0.0.4, answers OpenMetrics to a client that asks
//! for it, and a real Prometheus server scrapes it; a client outside `server.allow` gets 403; and
//! the page, as headless Chromium renders it, shows the names, their addresses, the states and
//! the verdict in Japanese.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use oqsdns_config::{Config, RouteConfig, ServerAddr, StatusConfig};
use oqsdns_core::health::{ServerHealth, State};
use oqsdns_tests::client::{self, query};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::http;
use oqsdns_tests::lab::env::program_or_skip;
use oqsdns_tests::prometheus::{query_path, values, Prometheus};
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream};
use serde_json::Value;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test finished within 60 s")
}

/// A fake answering every question with `2001:db8::1`, or one that drops everything.
async fn upstream(answers: bool) -> FakeUpstream {
    FakeUpstream::start(move |q, _| {
        if answers {
            Action::Reply(fake::reply(q, fake::aaaa_records(q, 1)))
        } else {
            Action::Drop
        }
    })
    .await
}

/// The guide's table in the presets' shape over loopback fakes, with the status endpoint on.
fn config(nw_base: &[SocketAddr], ngn: SocketAddr, internet: SocketAddr) -> Config {
    let mut config = config_with_default(&[internet]);
    config.forward.names = vec!["internet.example".parse().unwrap()];
    config.routes.push(RouteConfig {
        name: Some("ngn".into()),
        domains: vec!["flets-east.jp".parse().unwrap()],
        servers: vec![ServerAddr(ngn)],
        names: vec!["assv.asc.flets-east.jp".parse().unwrap()],
    });
    config.routes.push(RouteConfig {
        name: Some("nw-base".into()),
        domains: ["onshikaku.org", "lineauth.mnw"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect(),
        servers: nw_base.iter().map(|a| ServerAddr(*a)).collect(),
        names: ["www.lineauth.mnw", "hweb.oqs.onshikaku.org"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect(),
    });
    config.forward.timeout = "300ms".parse().unwrap();
    config.health.timeout = "300ms".parse().unwrap();
    config.health.interval = "1s".parse().unwrap();
    config.health.fall = 2;
    config.status = Some(StatusConfig::on("127.0.0.1:0".parse().unwrap()));
    config
}

/// Three fakes that answer, for the NW-base, NGN and internet routes, and the table over them.
async fn healthy() -> ([FakeUpstream; 3], Config) {
    let (nw_base, ngn, internet) = (
        upstream(true).await,
        upstream(true).await,
        upstream(true).await,
    );
    let config = config(&[nw_base.addr], ngn.addr, internet.addr);
    ([nw_base, ngn, internet], config)
}

/// A daemon over [`healthy`] fakes that has answered `www.lineauth.mnw AAAA` twice: from the
/// NW-base fake, then from its cache.
async fn asked_twice() -> (Daemon, [FakeUpstream; 3]) {
    let (upstreams, config) = healthy().await;
    let daemon = Daemon::start(config).await;
    let q = query("www.lineauth.mnw", RecordType::AAAA, None);
    for _ in 0..2 {
        client::udp(daemon.addr(), &q).await;
    }
    (daemon, upstreams)
}

/// Waits until `server` is `state` over both transports.
async fn until(server: &ServerHealth, state: State) {
    let mut changes = server.subscribe();
    while server.udp.state() != state || server.tcp.state() != state {
        changes.changed().await.unwrap();
    }
}

/// Waits until every server has finished a probe round.
async fn probed(daemon: &Daemon) {
    for route in ["nw-base", "ngn", "default"] {
        let server = daemon.health(route, 0);
        while server.history.last_probes().at.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of the sample `series` (name and labels as written) in a text exposition.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

/// Runs `promtool check metrics` on `metrics` unless promtool is absent (skipped, or failed
/// with `OQSDNS_LAB=require`).
fn promtool_accepts(test: &str, metrics: &str) {
    let Some(promtool) = program_or_skip(test, "promtool", "prometheus") else {
        return;
    };
    use std::io::Write as _;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_daemon_answers_200_and_counts_queries_and_cache_hits() {
    within(async {
        let ([nw_base, _ngn, _internet], config) = healthy().await;
        let daemon = Daemon::start(config).await;
        let status = daemon.status.expect("status endpoint");
        until(&daemon.health("nw-base", 0), State::Up).await;
        until(&daemon.health("ngn", 0), State::Up).await;
        until(&daemon.health("default", 0), State::Up).await;
        probed(&daemon).await;

        let q = query("www.lineauth.mnw", RecordType::AAAA, Some(1232));
        for _ in 0..2 {
            assert_eq!(
                client::udp(daemon.addr(), &q).await.metadata.response_code,
                ResponseCode::NoError
            );
        }
        assert_eq!(client::tcp(daemon.addr(), &q).await.answers.len(), 1);

        let health = http::get(status, "/health").await;
        assert_eq!(health.status, 200, "{}", health.body);
        assert!(health.head.contains("content-type: application/json"));
        let json: Value = serde_json::from_str(&health.body).unwrap();
        assert_eq!(json["ok"], true);
        assert_eq!(json["verdicts"][0]["id"], "ok");
        assert!(json["verdicts"][0]["ja"]
            .as_str()
            .unwrap()
            .contains("すべて正常です"));
        let routes = json["routes"].as_array().unwrap();
        let names: Vec<&str> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["ngn", "nw-base", "default"],
            "the table first, the default last"
        );
        let server = &routes[1]["servers"][0];
        assert_eq!(server["addr"], nw_base.addr.to_string());
        assert_eq!(
            (server["state"].as_str(), server["udp"]["state"].as_str()),
            (Some("up"), Some("up"))
        );
        assert_eq!(routes[1]["kind"], "nw-base");
        let probe = &server["probes"][0];
        assert_eq!(probe["name"], "www.lineauth.mnw AAAA");
        assert_eq!(probe["udp"]["addresses"][0], "2001:db8::1");
        assert_eq!(probe["tcp"]["ok"], true);
        let change = &json["changes"][0];
        assert_eq!(change["state"], "up", "{change}");
        assert!(change["time"]["jst"].as_str().unwrap().ends_with("+09:00"));

        let metrics = http::get(status, "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics
            .head
            .contains("content-type: text/plain; version=0.0.4"));
        let m = &metrics.body;
        assert!(
            m.contains("# HELP oqsdns_queries_total ")
                && m.contains("# TYPE oqsdns_queries_total counter\n")
        );
        assert!(!m.contains("# EOF") && !m.contains("# UNIT"), "{m}");
        let nw = r#"route="nw-base""#;
        assert_eq!(
            sample(
                m,
                &format!(r#"oqsdns_queries_total{{{nw},transport="udp",rcode="NOERROR"}}"#)
            ),
            2.0
        );
        assert_eq!(
            sample(
                m,
                &format!(r#"oqsdns_queries_total{{{nw},transport="tcp",rcode="NOERROR"}}"#)
            ),
            1.0
        );
        assert_eq!(
            sample(m, "oqsdns_cache_hits_total"),
            2.0,
            "the second UDP query and the TCP one"
        );
        assert_eq!(sample(m, "oqsdns_cache_misses_total"), 1.0);
        let server = format!(r#"{nw},server="{}""#, nw_base.addr);
        assert_eq!(
            sample(
                m,
                &format!(r#"oqsdns_upstream_queries_total{{{server},transport="udp"}}"#)
            ),
            1.0
        );
        assert_eq!(
            sample(
                m,
                &format!(r#"oqsdns_upstream_latency_seconds_count{{{server}}}"#)
            ),
            1.0
        );
        assert_eq!(
            sample(
                m,
                &format!(r#"oqsdns_upstream_state{{{server},transport="tcp",state="up"}}"#)
            ),
            1.0
        );
        assert!(
            sample(
                m,
                &format!(r#"oqsdns_probes_total{{{server},result="pass",transport="udp"}}"#)
            ) >= 1.0
        );
        assert_eq!(sample(m, "oqsdns_healthy"), 1.0);
        assert_eq!(sample(m, r#"oqsdns_refused_total{reason="acl"}"#), 0.0);
        promtool_accepts("a_healthy_daemon_answers_200", m);

        for (path, words) in [
            ("/", "すべて正常です"),
            ("/en", "All good"),
            ("/?lang=en", "All good"),
        ] {
            let page = http::get(status, path).await;
            assert_eq!(page.status, 200);
            assert!(page.head.contains("text/html"));
            assert!(page.body.contains(words), "{path}: no {words:?}");
            assert!(page
                .body
                .contains(r#"<meta http-equiv="refresh" content="30">"#));
            assert!(!page.body.contains("<script"), "works without JavaScript");
            assert!(
                !page.body.contains("<link") && !page.body.contains(" src="),
                "no external assets"
            );
        }
        assert_eq!(http::get(status, "/nothing").await.status, 404);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_nw_base_answers_503_with_the_checks_verdict() {
    within(async {
        let (nw_base, ngn, internet) = (
            upstream(false).await,
            upstream(true).await,
            upstream(true).await,
        );
        let daemon = Daemon::start(config(&[nw_base.addr], ngn.addr, internet.addr)).await;
        let status = daemon.status.unwrap();
        until(&daemon.health("nw-base", 0), State::Down).await;
        until(&daemon.health("ngn", 0), State::Up).await;

        let q = query("www.lineauth.mnw", RecordType::AAAA, None);
        assert_eq!(
            client::udp(daemon.addr(), &q).await.metadata.response_code,
            ResponseCode::ServFail
        );

        let health = http::get(status, "/health").await;
        assert_eq!(health.status, 503, "{}", health.body);
        let json: Value = serde_json::from_str(&health.body).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(
            json["verdicts"][0]["id"], "nw-base-unreachable",
            "{}",
            health.body
        );
        assert_eq!(json["verdicts"][0]["severity"], "problem");
        let server = &json["routes"][1]["servers"][0];
        assert_eq!(
            (server["udp"]["state"].as_str(), server["plan"].as_str()),
            (Some("down"), Some("last"))
        );
        assert_eq!(server["probes"][0]["udp"]["error"], "timed out");
        let changes = json["changes"].as_array().unwrap();
        assert!(
            changes.iter().any(|c| c["route"] == "nw-base"
                && c["state"] == "down"
                && c["transport"] == "udp"),
            "{changes:?}"
        );

        let m = http::get(status, "/metrics").await.body;
        let server = format!(r#"route="nw-base",server="{}""#, nw_base.addr);
        assert_eq!(
            sample(
                &m,
                &format!(r#"oqsdns_upstream_state{{{server},transport="udp",state="down"}}"#)
            ),
            1.0
        );
        assert!(
            sample(
                &m,
                &format!(r#"oqsdns_upstream_timeouts_total{{{server},transport="udp"}}"#)
            ) >= 1.0
        );
        assert!(
            sample(
                &m,
                &format!(r#"oqsdns_probes_total{{{server},result="fail",transport="tcp"}}"#)
            ) >= 2.0
        );
        assert_eq!(
            sample(
                &m,
                r#"oqsdns_queries_total{route="nw-base",transport="udp",rcode="SERVFAIL"}"#
            ),
            1.0
        );
        assert_eq!(sample(&m, "oqsdns_healthy"), 0.0);
        promtool_accepts("a_silent_nw_base_answers_503", &m);

        let page = http::get(status, "/").await.body;
        assert!(
            page.contains("オンライン資格確認NW基盤の DNS サーバーが応答しません"),
            "{page}"
        );
        // Words read on a phone: what the staff sees, not the configuration's names.
        for words in [
            "応答なし",
            "予備（他が応答しない場合のみ）",
            "オンライン資格確認NW基盤",
            "優先DNSサーバー",
            "次にすること",
            "システムベンダーへの連絡: 必要",
        ] {
            assert!(page.contains(words), "no {words:?} in {page}");
        }
        for words in [
            "停止",
            "最後に試す",
            "ルート nw-base",
            "https://www.lineauth.mnw",
        ] {
            assert!(!page.contains(words), "{words:?} in {page}");
        }
        daemon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_outside_allow_are_refused_and_counted() {
    within(async {
        let (_upstreams, mut config) = healthy().await;
        config.server.allow = vec!["127.0.0.1/32".parse().unwrap()];
        (config.server.rate, config.server.burst) = (1, 2);
        config.server.rate_loopback = true; // the test's clients are on loopback
        let daemon = Daemon::start(config).await;
        let status = daemon.status.unwrap();
        let outsider = "127.0.0.2".parse().unwrap();

        let page = http::get_from(outsider, status, "/health").await;
        assert!(page.as_ref().is_none_or(|p| p.status == 403), "{page:?}");
        assert_eq!(page.map(|p| p.status), Some(403));
        assert_eq!(
            http::get_from(outsider, status, "/metrics")
                .await
                .unwrap()
                .status,
            403
        );

        // A DNS query from outside: REFUSED, and counted.
        let socket = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
        let q = query("www.lineauth.mnw", RecordType::AAAA, None);
        socket
            .send_to(&q.to_vec().unwrap(), daemon.addr())
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let len = tokio::time::timeout(client::WAIT, socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf[3] & 0x0F, 5, "REFUSED");
        assert!(len >= 12);

        // Four queries one after another from 127.0.0.1 with a burst of 2: two refused.
        let codes = sequential_codes(daemon.addr(), 4).await;
        let refused = codes
            .iter()
            .filter(|c| **c == ResponseCode::Refused)
            .count();
        assert_eq!(refused, 2, "{codes:?}");

        let m = http::get(status, "/metrics").await;
        assert_eq!(m.status, 200, "127.0.0.1 is allowed");
        assert_eq!(
            sample(&m.body, r#"oqsdns_rate_limited_total{action="refused"}"#),
            2.0
        );
        assert_eq!(
            sample(&m.body, r#"oqsdns_rate_limited_total{action="dropped"}"#),
            0.0
        );
        assert_eq!(
            sample(&m.body, r#"oqsdns_refused_total{reason="acl"}"#),
            1.0
        );
        daemon.stop().await;
    })
    .await;
}

/// The `Accept` header Prometheus 2.42 sends with a scrape.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_openmetrics_for_a_client_that_asks() {
    within(async {
        let (daemon, [nw_base, _ngn, _internet]) = asked_twice().await;
        let status = daemon.status.unwrap();

        let metrics = http::get_with(status, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]).await;
        assert_eq!(metrics.status, 200);
        assert!(
            metrics.head.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{}",
            metrics.head
        );
        let m = &metrics.body;
        assert!(m.ends_with("\n# EOF\n"), "{m}");
        assert!(m.contains("# TYPE oqsdns_queries counter\n"), "{m}");
        assert!(m.contains("# UNIT oqsdns_upstream_latency_seconds seconds\n"));
        assert_eq!(
            sample(
                m,
                r#"oqsdns_queries_total{route="nw-base",transport="udp",rcode="NOERROR"}"#
            ),
            2.0
        );
        assert_eq!(sample(m, "oqsdns_cache_hits_total"), 1.0);
        assert_eq!(
            sample(
                m,
                &format!(
                    r#"oqsdns_upstream_queries_total{{route="nw-base",server="{}",transport="udp"}}"#,
                    nw_base.addr
                )
            ),
            1.0
        );

        let text = http::get_with(status, "/metrics", &[("Accept", "text/plain")]).await;
        assert!(text.head.contains("content-type: text/plain; version=0.0.4"));
        assert!(!text.body.contains("# EOF"));
        daemon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prometheus_server_scrapes_the_counters() {
    const TEST: &str = "a_prometheus_server_scrapes_the_counters";
    let Some(program) = program_or_skip(TEST, "prometheus", "prometheus") else {
        return;
    };
    within(async {
        let (daemon, [nw_base, _ngn, _internet]) = asked_twice().await;
        let status = daemon.status.unwrap();
        let prometheus = tokio::task::spawn_blocking(move || Prometheus::start(&program, status))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{TEST}: {e}"));
        let limit = Duration::from_secs(30);

        let series = r#"oqsdns_queries_total{route="nw-base",transport="udp",rcode="NOERROR"}"#;
        prometheus
            .until(&query_path(series), limit, |data| values(data) == [2.0])
            .await;
        let up = prometheus
            .until(&query_path(r#"up{job="oqsdns"}"#), limit, |data| {
                !values(data).is_empty()
            })
            .await;
        assert_eq!(values(&up), [1.0], "the scrape succeeded: {up}");
        let latency = format!(
            r#"oqsdns_upstream_latency_seconds_count{{route="nw-base",server="{}"}}"#,
            nw_base.addr
        );
        prometheus
            .until(&query_path(&latency), limit, |data| values(data) == [1.0])
            .await;
        // A unit comes only with OpenMetrics: Prometheus scraped that format, not 0.0.4.
        let metadata = prometheus
            .until(
                "/api/v1/metadata?metric=oqsdns_upstream_latency_seconds",
                limit,
                |data| data.as_object().is_some_and(|d| !d.is_empty()),
            )
            .await;
        let family = &metadata["oqsdns_upstream_latency_seconds"][0];
        assert_eq!(
            (family["type"].as_str(), family["unit"].as_str()),
            (Some("histogram"), Some("seconds")),
            "{metadata}"
        );
        drop(prometheus);
        daemon.stop().await;
    })
    .await;
}

/// The response codes of `n` UDP queries sent one after another from 127.0.0.1.
async fn sequential_codes(server: SocketAddr, n: usize) -> Vec<ResponseCode> {
    let mut codes = Vec::new();
    for i in 0..n {
        let q = query(&format!("q{i}.lineauth.mnw"), RecordType::AAAA, None);
        codes.push(client::udp(server, &q).await.metadata.response_code);
    }
    codes
}

/// Runs Chromium headless on `url` with `extra` arguments; its stdout.
fn chromium(chromium: &PathBuf, dir: &std::path::Path, url: &str, extra: &[String]) -> String {
    let profile = tempdir(dir, "profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir(base: &std::path::Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_in_headless_chromium_shows_names_states_and_the_verdict() {
    const TEST: &str = "the_page_in_headless_chromium";
    let Some(browser) = program_or_skip(TEST, "chromium", "chromium") else {
        return;
    };
    within(async {
        // The primary NW-base answers, the alternate does not: green and red on one page.
        let (primary, alternate) = (upstream(true).await, upstream(false).await);
        let (ngn, internet) = (upstream(true).await, upstream(true).await);
        let config = config(&[primary.addr, alternate.addr], ngn.addr, internet.addr);
        let daemon = Daemon::start(config).await;
        let status = daemon.status.unwrap();
        until(&daemon.health("nw-base", 0), State::Up).await;
        until(&daemon.health("nw-base", 1), State::Down).await;
        probed(&daemon).await;

        let dir = tempdir(
            &std::env::temp_dir(),
            &format!("oqsdns-status-{}", std::process::id()),
        );
        let url = format!("http://{status}/");
        let shot = dir.join("status-ja.png");
        let (b, d, u) = (browser.clone(), dir.clone(), url.clone());
        let dom = tokio::task::spawn_blocking(move || {
            chromium(&b, &d, &u, &[format!("--screenshot={}", shot.display())]);
            assert!(
                shot.metadata().unwrap().len() > 10_000,
                "a screenshot of the page"
            );
            chromium(&b, &d, &u, &["--dump-dom".to_string()])
        })
        .await
        .unwrap();
        eprintln!(
            "{TEST}: screenshot in {}",
            dir.join("status-ja.png").display()
        );
        for words in [
            "oqsdns の状態",
            "www.lineauth.mnw AAAA",
            "hweb.oqs.onshikaku.org AAAA",
            "assv.asc.flets-east.jp AAAA",
            "2001:db8::1",
            &primary.addr.to_string(),
            &alternate.addr.to_string(),
            "正常",
            "応答なし",
            "● OK",
            "✕ NG",
            "一部の DNS サーバーが応答しません（転送先: オンライン資格確認NW基盤",
            "最近の状態変化",
        ] {
            assert!(
                dom.contains(words),
                "the rendered page has no {words:?}:\n{dom}"
            );
        }
        let (b, d) = (browser.clone(), dir.clone());
        let english = tokio::task::spawn_blocking(move || {
            let shot = d.join("status-en.png");
            chromium(
                &b,
                &d,
                &format!("http://{status}/en"),
                &[format!("--screenshot={}", shot.display())],
            );
            chromium(
                &b,
                &d,
                &format!("http://{status}/?lang=en"),
                &["--dump-dom".to_string()],
            )
        })
        .await
        .unwrap();
        assert!(
            english.contains(
                "Some DNS servers of the NW-base (Online Qualification network) do not answer"
            ),
            "{english}"
        );
        assert!(english.contains("Upstream DNS servers") && english.contains("down"));
        daemon.stop().await;
    })
    .await;
}

/// Sends `query` to `server` over UDP from `source` (port 0) and waits for the reply.
async fn udp_from(source: &str, server: SocketAddr, query: &hickory_proto::op::Message) -> u8 {
    let socket = tokio::net::UdpSocket::bind(format!("{source}:0"))
        .await
        .unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .expect("a reply within 10 s")
        .unwrap();
    assert!(n >= 4, "a DNS reply");
    buf[3] & 0xF
}

/// Two terminals on 127.0.0.1 and 127.0.0.2: the first asks an オン資 name that resolves, the
/// second an internet name and then an オン資 name that the NW-base refuses. `/health` and the
/// page list both, the most recent first, with their counts and whether their last オン資
/// query was answered; `[status] clients = false` lists none.
#[tokio::test(flavor = "multi_thread")]
async fn the_clients_seen_recently_are_listed_per_terminal() {
    within(async {
        let nw_base = FakeUpstream::start(|q, _| {
            if fake::qname(q).to_ascii().starts_with("broken.") {
                Action::Reply(fake::rcode(q, ResponseCode::Refused))
            } else {
                Action::Reply(fake::reply(q, fake::aaaa_records(q, 1)))
            }
        })
        .await;
        let (ngn, internet) = (upstream(true).await, upstream(true).await);
        let config = config(&[nw_base.addr], ngn.addr, internet.addr);
        let daemon = Daemon::start(config.clone()).await;
        let status = daemon.status.unwrap();
        let ask = |name: &str| query(name, RecordType::AAAA, None);
        let server = daemon.addr();
        assert_eq!(
            udp_from("127.0.0.1", server, &ask("www.lineauth.mnw")).await,
            0
        );
        assert_eq!(
            udp_from("127.0.0.1", server, &ask("www.lineauth.mnw")).await,
            0
        );
        // The table keeps times in milliseconds: let the clock move on so that the second
        // terminal is the more recent one, not a tie.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            udp_from("127.0.0.2", server, &ask("internet.example")).await,
            0
        );
        assert_ne!(
            udp_from("127.0.0.2", server, &ask("broken.lineauth.mnw")).await,
            0
        );

        let health = http::get(status, "/health").await;
        let json: Value = serde_json::from_str(&health.body).unwrap();
        let clients = json["clients"].as_array().expect("a clients list");
        let row = |addr: &str| {
            clients
                .iter()
                .find(|c| c["addr"] == addr)
                .unwrap_or_else(|| panic!("no {addr} in {clients:?}"))
        };
        assert_eq!(clients.len(), 2, "{clients:?}");
        assert_eq!(clients[0]["addr"], "127.0.0.2", "the most recent first");
        let (one, two) = (row("127.0.0.1"), row("127.0.0.2"));
        assert_eq!(
            (one["queries"].as_u64(), two["queries"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(one["table"], "answered", "{one}");
        assert_eq!(one["table_answered"], true);
        assert_eq!(two["table"], "failed", "{two}");
        assert_eq!(two["table_answered"], false);
        assert!(one["last"]["jst"].as_str().unwrap().ends_with("+09:00"));

        // The page's rows of the per-terminal table, one per client (the upstream tables list
        // the loopback fakes at 127.0.0.1 too, in rows that start otherwise).
        let page = http::get(status, "/").await.body;
        assert!(page.contains("oqsdns を使っている端末"), "{page}");
        let client_row = |page: &str, addr: &str| {
            let head = format!("<tr><td class=\"addr\">{addr}</td>");
            page.lines()
                .find(|l| l.starts_with(&head))
                .map(str::to_string)
        };
        let first = client_row(&page, "127.0.0.1").unwrap_or_else(|| panic!("{page}"));
        assert!(
            first.contains("<td>2</td>")
                && first.contains("解決できた")
                && !first.contains("解決できなかった"),
            "{first}"
        );
        let second = client_row(&page, "127.0.0.2").unwrap_or_else(|| panic!("{page}"));
        assert!(
            second.contains("<td>2</td>") && second.contains("解決できなかった"),
            "{second}"
        );
        assert!(
            page.find(&second).unwrap() < page.find(&first).unwrap(),
            "the most recent first: {page}"
        );
        daemon.stop().await;

        let mut off = config;
        off.status.as_mut().unwrap().clients = false;
        let daemon = Daemon::start(off).await;
        let status = daemon.status.unwrap();
        udp_from("127.0.0.2", daemon.addr(), &ask("www.lineauth.mnw")).await;
        let json: Value = serde_json::from_str(&http::get(status, "/health").await.body).unwrap();
        assert!(json["clients"].is_null(), "{json:#}");
        let page = http::get(status, "/").await.body;
        assert!(page.contains("[status] clients = false"), "{page}");
        assert!(!page.contains("<tr><td class=\"addr\">127.0.0."), "{page}");
        assert!(!page.contains("127.0.0.2"), "{page}");
        daemon.stop().await;
    })
    .await;
}
