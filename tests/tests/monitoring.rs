//! The fleet monitoring kit of `packaging/monitoring/`: the alerting rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), every alert has a unit
//! test in which it fires; every metric the rules and the dashboard name is one the daemon
//! exports; and against a real Prometheus server scraping the in-process daemon (between loopback
//! fakes) with the rules loaded, every query of the Grafana dashboard returns series and the
//! prefix-changed alert fires once the daemon's prefix watch sees a new prefix.
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
use oqsdns_config::{Config, RouteConfig, ServerAddr, StatusConfig};
use oqsdns_tests::client::{self, query};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::http;
use oqsdns_tests::lab::env::program_or_skip;
use oqsdns_tests::prometheus::{query_path, values, Prometheus};
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
/// with every clinic selected (the `instance` variable's `allValue`) and a rate window that holds
/// a few of the test's one-second scrapes.
fn as_promql(expr: &str) -> String {
    expr.replace("$instance", ".+")
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

/// The guide's table in the presets' shape over loopback fakes, the status endpoint on; probes
/// every second, the prefix watch once at start.
fn config(nw_base: SocketAddr, ngn: SocketAddr, internet: SocketAddr) -> Config {
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
        domains: vec!["lineauth.mnw".parse().unwrap()],
        servers: vec![ServerAddr(nw_base)],
        names: vec!["www.lineauth.mnw".parse().unwrap()],
    });
    config.forward.timeout = "300ms".parse().unwrap();
    config.health.timeout = "300ms".parse().unwrap();
    config.health.interval = "1s".parse().unwrap();
    config.status = Some(StatusConfig::on("127.0.0.1:0".parse().unwrap()));
    config
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

        // The alerting rules are loaded and healthy, and none fires on a healthy daemon.
        let groups = prometheus
            .until("/api/v1/rules", limit, |data| {
                data["groups"][0]["rules"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|r| r["health"] == "ok"))
            })
            .await;
        assert_eq!(
            groups["groups"][0]["rules"].as_array().map(Vec::len),
            Some(alerts(&read(&rules_file())).len())
        );
        let firing = prometheus
            .until(
                &query_path(r#"count(ALERTS{alertstate="firing"}) or vector(0)"#),
                limit,
                |_| true,
            )
            .await;
        assert_eq!(values(&firing), [0.0], "{firing}");

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
