//! The fleet monitoring kit of `packaging/monitoring/`: the alerting rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), every alert has a unit
//! test in which it fires; every metric the rules and the dashboard name is one the daemon
//! exports; and against a real Prometheus server scraping the in-process daemon (the area preset's
//! routes over loopback fakes) with the rules loaded: every query of the Grafana dashboard and its
//! clinic variable return series; no alert is pending or firing on a healthy daemon once every
//! rule was evaluated; every series selector of the rules matches a series of the live daemon
//! (the label values `route="nw-base"`, `state`, `rcode`, `transport` are the daemon's); with the
//! NW-base fake stopped, the NW-base-down and unhealthy conditions hold and the per-server one
//! does not repeat them; and the prefix-changed alert fires once the prefix watch sees a new
//! prefix.
//!
//! Without promtool or prometheus (Debian's `prometheus`) the tests say they were skipped, unless
//! `OQSDNS_LAB=require`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use oqsdns_config::{preset_routes, Area, Config, RouteConfig, ServerAddr, StatusConfig};
use oqsdns_tests::client::{self, query};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::http;
use oqsdns_tests::lab::env::program_or_skip;
use oqsdns_tests::prometheus::{query_path, values, Prometheus, CLINIC};
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream};
use serde_json::Value;

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/monitoring")
}

fn rules_file() -> PathBuf {
    kit().join("oqsdns-rules.yml")
}

fn rule_tests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kit().join("tests"))
        .expect("packaging/monitoring/tests")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no rule tests in packaging/monitoring/tests"
    );
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs promtool with `args`, in `dir`; panics with its output unless it succeeds.
fn promtool(program: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The alert names the rules file defines (`- alert: NAME`).
fn alerts(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|a| a.trim().to_string())
        .collect()
}

/// The alerts some unit test expects to fire: an `alertname: NAME` followed by an `exp_alerts:`
/// with at least one `- exp_labels:` entry rather than `[]`.
fn alerts_tested_firing(tests: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut out = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let fires = lines.get(i + 1) == Some(&"exp_alerts:")
            && lines
                .get(i + 2)
                .is_some_and(|l| l.starts_with("- exp_labels:"));
        if fires {
            out.insert(name.trim().to_string());
        }
    }
    out
}

#[test]
fn the_rules_pass_promtool_and_every_alert_has_a_unit_test_that_fires() {
    const TEST: &str = "the_rules_pass_promtool";
    let Some(program) = program_or_skip(TEST, "promtool", "prometheus") else {
        return;
    };
    let rules = rules_file();
    let checked = promtool(&program, &kit(), &["check", "rules", "oqsdns-rules.yml"]);
    let names = alerts(&read(&rules));
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{checked}"
    );
    for wanted in [
        "OqsdnsNotScraped",
        "OqsdnsNwBaseDown",
        "OqsdnsServerDown",
        "OqsdnsPrefixChanged",
        "OqsdnsServingStale",
        "OqsdnsHighServfail",
    ] {
        assert!(names.iter().any(|n| n == wanted), "no alert {wanted}");
    }

    let mut tested = BTreeSet::new();
    for file in rule_tests() {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let out = promtool(
            &program,
            &kit().join("tests"),
            &["test", "rules", name.as_str()],
        );
        assert!(out.contains("SUCCESS"), "{out}");
        tested.extend(alerts_tested_firing(&read(&file)));
    }
    for name in &names {
        assert!(
            tested.contains(name),
            "alert {name} has no unit test in which it fires"
        );
    }
}

#[test]
fn a_broken_unit_test_fails_promtool() {
    // The runner above would pass on anything if promtool ignored expectations: a copy of the
    // tests expecting the prefix alert one evaluation early must fail.
    const TEST: &str = "a_broken_unit_test_fails_promtool";
    let Some(program) = program_or_skip(TEST, "promtool", "prometheus") else {
        return;
    };
    let good = read(&kit().join("tests/oqsdns-rules-test.yml"));
    let marker =
        "      - eval_time: 1m\n        alertname: OqsdnsPrefixChanged\n        exp_alerts: []";
    assert!(good.contains(marker), "the prefix test's quiet step");
    let bad = good.replace(marker, "      - eval_time: 1m\n        alertname: OqsdnsPrefixChanged\n        exp_alerts:\n          - exp_labels:\n              instance: a");
    let dir = std::env::temp_dir().join(format!("oqsdns-monitoring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("broken.yml"),
        bad.replace("../oqsdns-rules.yml", &rules_file().display().to_string()),
    )
    .unwrap();
    let out = Command::new(program)
        .args(["test", "rules", "broken.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !out.status.success(),
        "promtool accepted a wrong expectation:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let path = kit().join("oqsdns-dashboard.json");
    let dashboard: Value = serde_json::from_str(&read(&path)).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut out = Vec::new();
    for panel in panels {
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {} has no targets", panel["title"]));
        for target in targets {
            out.push(
                target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a target of {} has no expr", panel["title"]))
                    .to_string(),
            );
        }
    }
    assert!(out.len() >= 10, "{out:?}");
    out
}

/// A dashboard query as Prometheus takes it: Grafana's variables replaced by what they stand for
/// with every clinic selected (the `clinic` variable's values) and a rate window that holds
/// a few of the test's one-second scrapes.
fn as_promql(expr: &str) -> String {
    expr.replace("$clinic", ".+")
        .replace("$__rate_interval", "20s")
}

/// The `oqsdns_…` metric names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("oqsdns_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

async fn upstream() -> FakeUpstream {
    FakeUpstream::start(|q, _| Action::Reply(fake::reply(q, fake::aaaa_records(q, 1)))).await
}

/// The east area's preset routes, their names and probe names as shipped, each with one loopback
/// fake as its server instead of the guide's; the status endpoint on; probes every second.
fn config(nw_base: SocketAddr, ngn: SocketAddr, internet: SocketAddr) -> Config {
    let mut config = config_with_default(&[internet]);
    config.forward.names = vec!["internet.example".parse().unwrap()];
    let routes = preset_routes(Area::East);
    assert!(
        routes.iter().any(|r| r.name == "nw-base"),
        "the rules key on the preset's route name nw-base: {routes:?}"
    );
    for route in routes {
        let server = match route.name.as_str() {
            "nw-base" => nw_base,
            "ngn" => ngn,
            other => panic!("a preset route this test does not know: {other}"),
        };
        config.routes.push(RouteConfig {
            name: Some(route.name),
            domains: route.domains,
            servers: vec![ServerAddr(server)],
            names: route.names,
        });
    }
    config.forward.timeout = "300ms".parse().unwrap();
    config.health.timeout = "300ms".parse().unwrap();
    config.health.interval = "1s".parse().unwrap();
    config.status = Some(StatusConfig::on("127.0.0.1:0".parse().unwrap()));
    config
}

/// The series selectors (`name{…}`) in a PromQL expression.
fn selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    for (at, _) in expr.match_indices('{') {
        let start = expr[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let end = expr[at..].find('}').map(|i| at + i + 1);
        if let (true, Some(end)) = (start < at && !bytes[start].is_ascii_digit(), end) {
            out.push(expr[start..end].to_string());
        }
    }
    out
}

/// The alerting rules as Prometheus loaded them: (name, query, state).
fn loaded_rules(data: &Value) -> Vec<(String, String, String)> {
    data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (text("name"), text("query"), text("state"))
        })
        .collect()
}

/// Each rule's last evaluation time, by name.
fn evaluations(data: &Value) -> Vec<(String, String)> {
    data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["lastEvaluation"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn selectors_are_found_in_rule_queries() {
    assert_eq!(
        selectors(
            r#"max by (job) (oqsdns_upstream_state{route="nw-base",state=~"up|degraded"}) == 0 unless on (job) up{job="oqsdns"}"#
        ),
        [
            r#"oqsdns_upstream_state{route="nw-base",state=~"up|degraded"}"#,
            r#"up{job="oqsdns"}"#
        ]
    );
    assert!(selectors("oqsdns_prefix_changed == 1").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_queries_return_series_and_the_prefix_alert_fires() {
    const TEST: &str = "the_dashboards_queries_return_series";
    let Some(program) = program_or_skip(TEST, "prometheus", "prometheus") else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        let (nw_base, ngn, internet) = (upstream().await, upstream().await, upstream().await);
        let daemon = Daemon::start(config(nw_base.addr, ngn.addr, internet.addr)).await;
        let status = daemon.status.expect("status endpoint");

        let metrics = http::get(status, "/metrics").await.body;
        assert_eq!(
            metrics
                .lines()
                .find(|l| l.starts_with("oqsdns_prefix_changed ")),
            Some("oqsdns_prefix_changed 0"),
            "{metrics}"
        );
        // Every metric the kit names is one the daemon exports.
        let exported = metric_names(&metrics);
        let mut named = metric_names(&read(&rules_file()));
        named.extend(dashboard_exprs().iter().flat_map(|e| metric_names(e)));
        for name in &named {
            assert!(
                exported.contains(name),
                "the monitoring kit names {name}, which /metrics does not have:\n{metrics}"
            );
        }

        let rules = rules_file();
        let prometheus = tokio::task::spawn_blocking(move || {
            Prometheus::start_with_rules(&program, status, &[rules.as_path()])
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{TEST}: {e}"));
        let limit = Duration::from_secs(60);

        // Traffic for the rate panels: answers, cache hits, a REFUSED-free SERVFAIL-free mix.
        let q = query("www.lineauth.mnw", RecordType::AAAA, None);
        for _ in 0..3 {
            assert_eq!(
                client::udp(daemon.addr(), &q).await.metadata.response_code,
                ResponseCode::NoError
            );
        }
        // Two scrapes with the answers counted, so every rate has two samples in its window.
        prometheus
            .until(
                &query_path("count_over_time(oqsdns_cache_hits_total[20s])"),
                limit,
                |data| values(data).first().is_some_and(|n| *n >= 3.0),
            )
            .await;
        for expr in dashboard_exprs() {
            let promql = as_promql(&expr);
            let data = prometheus
                .until(&query_path(&promql), limit, |data| {
                    data["result"].as_array().is_some_and(|r| !r.is_empty())
                })
                .await;
            assert_eq!(data["resultType"], "vector", "{promql}: {data}");
        }

        // The dashboard's clinic variable lists the clinic label of the scrape config.
        let clinics = prometheus
            .until(
                &query_path(r#"up{job="oqsdns"}"#).replacen(
                    "/api/v1/query?query=",
                    "/api/v1/label/clinic/values?match[]=",
                    1,
                ),
                limit,
                |data| data.as_array().is_some_and(|a| !a.is_empty()),
            )
            .await;
        assert_eq!(clinics, serde_json::json!([CLINIC]));

        // The alerting rules are loaded and healthy.
        let groups = prometheus
            .until("/api/v1/rules", limit, |data| {
                data["groups"][0]["rules"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|r| r["health"] == "ok"))
            })
            .await;
        let rules = loaded_rules(&groups);
        assert_eq!(rules.len(), alerts(&read(&rules_file())).len(), "{groups}");

        // None is pending or firing on a healthy daemon: once Prometheus has its all-good
        // verdict, every rule evaluated twice more (the second evaluation began after the
        // first ended, so after the healthy sample) and is inactive, with no active alert.
        assert_eq!(http::get(status, "/health").await.status, 200);
        prometheus
            .until(&query_path("oqsdns_healthy"), limit, |data| {
                values(data) == [1.0]
            })
            .await;
        for _ in 0..2 {
            let before = evaluations(&prometheus.until("/api/v1/rules", limit, |_| true).await);
            prometheus
                .until("/api/v1/rules", limit, |data| {
                    let now = evaluations(data);
                    now.len() == before.len()
                        && now
                            .iter()
                            .zip(&before)
                            .all(|(n, b)| n.0 == b.0 && n.1 != b.1)
                })
                .await;
        }
        let after = prometheus.until("/api/v1/rules", limit, |_| true).await;
        for (name, query, state) in loaded_rules(&after) {
            assert_eq!(
                state, "inactive",
                "{name} ({query}) on a healthy daemon: {after}"
            );
        }
        let active = prometheus.until("/api/v1/alerts", limit, |_| true).await;
        assert_eq!(active["alerts"], serde_json::json!([]), "{active}");

        // Every selector of the rules matches series of the live daemon: the label values the
        // rules name are the ones it exports.
        for (name, query, _) in &rules {
            for selector in selectors(query) {
                let data = prometheus
                    .until(&query_path(&selector), limit, |_| true)
                    .await;
                assert!(
                    data["result"].as_array().is_some_and(|r| !r.is_empty()),
                    "{name}: {selector} matches no series of the daemon: {data}"
                );
            }
        }
        let rule = |wanted: &str| {
            rules
                .iter()
                .find(|(name, _, _)| name == wanted)
                .unwrap_or_else(|| panic!("no rule {wanted}"))
                .1
                .clone()
        };

        // The NW-base's server stops answering: the NW-base-down condition (the rule without
        // its `for`) holds for the preset's route, the unhealthy one too, and the per-server
        // condition leaves the wholly dead route to them.
        drop(nw_base);
        let down = prometheus
            .until(&query_path(&rule("OqsdnsNwBaseDown")), limit, |data| {
                data["result"].as_array().is_some_and(|r| !r.is_empty())
            })
            .await;
        assert_eq!(down["result"][0]["metric"]["route"], "nw-base", "{down}");
        assert_eq!(down["result"][0]["metric"]["clinic"], CLINIC, "{down}");
        let per_server = prometheus
            .until(&query_path(&rule("OqsdnsServerDown")), limit, |_| true)
            .await;
        assert_eq!(per_server["result"], serde_json::json!([]), "{per_server}");
        let unhealthy = prometheus
            .until(&query_path(&rule("OqsdnsUnhealthy")), limit, |data| {
                data["result"].as_array().is_some_and(|r| !r.is_empty())
            })
            .await;
        assert_eq!(unhealthy["result"][0]["metric"]["clinic"], CLINIC);
        let other_routes = prometheus
            .until(&query_path(&rule("OqsdnsRouteDown")), limit, |_| true)
            .await;
        assert_eq!(
            other_routes["result"],
            serde_json::json!([]),
            "{other_routes}"
        );

        // A new prefix on the line, as the daemon's prefix watch would see it (its next look at
        // the interfaces may put the old one back: set it again until the alert fires).
        let new_prefix = vec!["2408:82:9999:1200::/64".parse().unwrap()];
        let prefixes = daemon.daemon.handler().prefixes();
        // First the line's prefix as a first start learns it, then another one.
        prefixes.observe(vec!["2408:82:1111:1200::/64".parse().unwrap()]);
        let deadline = tokio::time::Instant::now() + limit;
        let alert = query_path(r#"ALERTS{alertname="OqsdnsPrefixChanged",alertstate="firing"}"#);
        loop {
            prefixes.observe(new_prefix.clone());
            let answer = http::get(prometheus.addr(), &alert).await;
            let json: Value = serde_json::from_str(&answer.body).unwrap();
            if json["data"]["result"]
                .as_array()
                .is_some_and(|r| r.len() == 1)
            {
                assert_eq!(json["data"]["result"][0]["metric"]["who"], "staff");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "OqsdnsPrefixChanged did not fire: {}\n{}",
                answer.body,
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let metrics = http::get(status, "/metrics").await.body;
        assert!(metrics.contains("\noqsdns_prefix_changed 1\n"), "{metrics}");
        drop(prometheus);
        daemon.stop().await;
    })
    .await
    .expect("test finished within 120 s");
}
