//! `oqsdns check` on loopback: the in-process daemon between fake upstreams standing in for the
//! NW-base, NGN and internet DNS, each set up to produce one verdict; and the real binary's
//! `--json` output and exit codes.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use oqsdns::check::{self, render, verdict::id, Report};
use oqsdns_config::{Config, RouteConfig, ServerAddr};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::lab::env::oqsdns_binary;
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream, Via};

/// What a fake does over each transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers every question with an AAAA record.
    Answer,
    /// Answers over UDP, drops over TCP.
    UdpOnly,
    /// Drops everything.
    Silent,
}

async fn upstream(mode: Mode) -> FakeUpstream {
    FakeUpstream::start(move |q, via| match (mode, via) {
        (Mode::Answer, _) | (Mode::UdpOnly, Via::Udp) => {
            Action::Reply(fake::reply(q, fake::aaaa_records(q, 1)))
        }
        _ => Action::Drop,
    })
    .await
}

/// The three fakes of a check: NW-base, NGN and the internet resolver.
struct Upstreams {
    nw_base: FakeUpstream,
    ngn: FakeUpstream,
    internet: FakeUpstream,
}

async fn upstreams(nw_base: Mode, ngn: Mode) -> Upstreams {
    Upstreams {
        nw_base: upstream(nw_base).await,
        ngn: upstream(ngn).await,
        internet: upstream(Mode::Answer).await,
    }
}

/// The guide's table in the shape of the presets, over the fakes (area none: loopback only).
fn config(up: &Upstreams) -> Config {
    let mut config = config_with_default(&[up.internet.addr]);
    config.forward.names = vec!["internet.example".parse().unwrap()];
    config.routes.push(RouteConfig {
        name: Some("ngn".into()),
        domains: vec!["flets-east.jp".parse().unwrap()],
        servers: vec![ServerAddr(up.ngn.addr)],
        names: vec!["assv.asc.flets-east.jp".parse().unwrap()],
    });
    config.routes.push(RouteConfig {
        name: Some("nw-base".into()),
        domains: ["onshikaku.org", "lineauth.mnw"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect(),
        servers: vec![ServerAddr(up.nw_base.addr)],
        names: ["www.lineauth.mnw", "hweb.oqs.onshikaku.org"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect(),
    });
    config.forward.timeout = "500ms".parse().unwrap();
    config.health.timeout = "500ms".parse().unwrap();
    config
}

fn ids(report: &Report) -> Vec<&'static str> {
    report.verdicts.iter().map(|v| v.id).collect()
}

/// Runs the check, bounded, and asserts both languages of every verdict are printed.
///
/// The bound only catches a hang: every wait is bounded by health.timeout (500 ms) and the
/// probes run at once, but how long that takes on a loaded machine is not asserted (that would
/// need the check's clock injected).
async fn run(config: &Config, server: SocketAddr) -> Report {
    let report = tokio::time::timeout(Duration::from_secs(10), check::run(config, server))
        .await
        .expect("the check finished within 10 s");
    let text = render::text(&report);
    for verdict in &report.verdicts {
        assert!(text.contains(&verdict.ja), "no Japanese text in:\n{text}");
        assert!(text.contains(&verdict.en), "no English text in:\n{text}");
        assert!(text.contains(verdict.reference), "no reference in:\n{text}");
    }
    report
}

/// A loopback port where nothing listens (bound, then closed), on a loopback address of its own:
/// the tests running beside it bind ports of 127.0.0.1, and one of them could take the port
/// just freed there (once in CI the check found something answering on it: a daemon failing
/// names instead of none).
fn dead_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.77:0").unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn all_good() {
    let up = upstreams(Mode::Answer, Mode::Answer).await;
    let config = config(&up);
    let daemon = Daemon::start(config.clone()).await;
    let report = run(&config, daemon.addr()).await;
    assert_eq!(ids(&report), [id::OK], "{}", render::text(&report));
    assert!(report.ok());
    // Three step-7 names through the daemon, each answered with the fake's address.
    assert_eq!(report.daemon.len(), 3);
    for row in &report.daemon {
        assert!(row.udp.ok && row.tcp.ok, "{row:?}");
        assert_eq!(
            row.udp.addresses,
            ["2001:db8::1".parse::<std::net::IpAddr>().unwrap()]
        );
    }
    // Every upstream asked straight, over both transports.
    assert!(up.nw_base.count(Via::Tcp) >= 2 && up.ngn.count(Via::Tcp) >= 1);
    assert!(up.internet.received().iter().any(|r| r.via == Via::Tcp));
    let status = report.status.as_ref().expect("the daemon's status");
    assert!(
        status.iter().any(|l| l == "prefix-changed=no"),
        "{status:?}"
    );
    let text = render::text(&report);
    assert!(
        text.contains("すべて正常です") && text.contains("All good"),
        "{text}"
    );
    assert!(text.contains("www.lineauth.mnw AAAA"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_not_answering() {
    let up = upstreams(Mode::Answer, Mode::Answer).await;
    let config = config(&up);
    let report = run(&config, dead_port()).await;
    assert_eq!(ids(&report), [id::DAEMON_NOT_ANSWERING]);
    assert!(!report.ok());
    assert!(report.status.is_none());
    assert!(render::text(&report).contains("oqsdns がこのアドレスで応答しません"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nw_base_failing_while_ngn_answers() {
    let up = upstreams(Mode::Silent, Mode::Answer).await;
    let config = config(&up);
    let daemon = Daemon::start(config.clone()).await;
    let report = run(&config, daemon.addr()).await;
    assert_eq!(
        ids(&report),
        [id::NW_BASE_UNREACHABLE],
        "{}",
        render::text(&report)
    );
    assert!(!report.ok());
    let text = render::text(&report);
    // Not "do line authentication": www.lineauth.mnw cannot resolve in this state.
    assert!(!text.contains("https://www.lineauth.mnw"), "{text}");
    assert!(
        text.contains("FAQ Q3") && text.contains("FAQ Q21"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_answers_but_tcp_does_not() {
    let up = upstreams(Mode::UdpOnly, Mode::Answer).await;
    let config = config(&up);
    let daemon = Daemon::start(config.clone()).await;
    let report = run(&config, daemon.addr()).await;
    assert_eq!(ids(&report), [id::TCP_BLOCKED], "{}", render::text(&report));
    let verdict = &report.verdicts[0];
    assert!(
        verdict.en.contains(&up.nw_base.addr.to_string()),
        "{}",
        verdict.en
    );
    assert!(render::text(&report).contains("pp.12–13"));
}

/// Runs the built binary with `args`, off the runtime so the fakes keep answering.
async fn binary(args: Vec<String>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(oqsdns_binary()).args(&args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn json_ids(stdout: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(stdout).expect("check --json prints JSON");
    value["verdicts"]
        .as_array()
        .expect("a verdicts array")
        .iter()
        .map(|v| {
            assert!(v["ja"].is_string() && v["en"].is_string() && v["reference"].is_string());
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_json_and_exits_by_the_verdict() {
    let up = upstreams(Mode::Answer, Mode::Answer).await;
    let config = config(&up);
    let daemon = Daemon::start(config.clone()).await;
    let dir = std::env::temp_dir().join(format!("oqsdns-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("oqsdns.toml");
    std::fs::write(&file, config.to_effective_toml()).unwrap();
    let file = file.display().to_string();
    let args = |server: String| {
        ["check", "--config", &file, "--json", "--server", &server]
            .map(String::from)
            .to_vec()
    };

    let (code, stdout, stderr) = binary(args(daemon.addr().to_string())).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(json_ids(&stdout), ["ok"]);
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["findings"]["daemon_tcp"], true);
    assert_eq!(value["daemon"].as_array().unwrap().len(), 3);

    let (code, stdout, _) = binary(args(dead_port().to_string())).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(json_ids(&stdout), ["daemon-not-answering"]);

    let (code, _, stderr) = binary(args("not-an-address".into())).await;
    assert_eq!(code, Some(2), "a usage error: {stderr}");
    let missing = dir.join("missing.toml").display().to_string();
    let (code, _, stderr) =
        binary(["check", "--config", &missing].map(String::from).to_vec()).await;
    assert_eq!(code, Some(2), "a configuration error: {stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
