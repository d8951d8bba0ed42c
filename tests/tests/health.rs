//! The health module against fake upstreams: dead primaries are detected by probes (woken by
//! real queries, which alone decide nothing) within `interval + fall × timeout`, skipped without
//! waiting for their timeout, recover, and a server whose UDP is dropped is used over TCP, from
//! the first query on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use oqsdns_config::{Config, RouteConfig, ServerAddr};
use oqsdns_core::health::{ServerHealth, State, Thresholds};
use oqsdns_core::probe::probe_loop;
use oqsdns_tests::client::{self, query, txt_of};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::http;
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream, Via};
use tokio_util::sync::CancellationToken;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test finished within 30 s")
}

/// A route `lineauth.mnw` over `servers`, probed every `interval` with `www.lineauth.mnw TXT`.
fn config(servers: &[SocketAddr], default: SocketAddr, interval: &str) -> Config {
    let mut config = config_with_default(&[default]);
    config.routes.push(RouteConfig {
        name: Some("nw-base".into()),
        domains: vec!["lineauth.mnw".parse().unwrap()],
        servers: servers.iter().map(|a| ServerAddr(*a)).collect(),
        names: vec!["www.lineauth.mnw TXT".parse().unwrap()],
    });
    config.forward.timeout = "1s".parse().unwrap();
    config.health.interval = interval.parse().unwrap();
    config.health.timeout = "300ms".parse().unwrap();
    config.health.rise = 2;
    config.health.fall = 2;
    config.cache.entries = 0; // the same question again must reach the servers
    config
}

/// How many queries for `name` reached `upstream` over `via` (the probes ask other names).
fn asked_for(upstream: &FakeUpstream, name: &str, via: Via) -> usize {
    upstream
        .received()
        .iter()
        .filter(|r| {
            let asked = r.message.queries[0].name().to_ascii();
            r.via == via && asked.trim_end_matches('.').eq_ignore_ascii_case(name)
        })
        .count()
}

/// The UDP tries of `server` that ended in a timeout.
fn udp_timeouts(server: &ServerHealth) -> u64 {
    server.stats.timeouts.of(oqsdns_core::Transport::Udp).get()
}

/// Waits until `done` holds for `server`, woken by its state changes.
async fn until(server: &ServerHealth, done: impl Fn(&ServerHealth) -> bool) {
    let mut changes = server.subscribe();
    while !done(server) {
        changes.changed().await.unwrap();
    }
}

/// A fake that identifies itself, or drops everything (over `dead_over`) while `dead` is set.
async fn switchable(
    name: &'static str,
    dead: Arc<AtomicBool>,
    dead_over: Option<Via>,
) -> FakeUpstream {
    FakeUpstream::start(move |q, via| {
        let dropped = dead.load(Ordering::Relaxed) && dead_over.is_none_or(|v| v == via);
        if dropped {
            Action::Drop
        } else {
            Action::Reply(fake::reply(q, vec![fake::txt(q, name)]))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_is_skipped_once_detected_and_recovers() {
    within(async {
        let dead = Arc::new(AtomicBool::new(true));
        let primary = switchable("primary", dead.clone(), None).await;
        let alternate = switchable("alternate", Arc::new(AtomicBool::new(false)), None).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let daemon = Daemon::start(config(
            &[primary.addr, alternate.addr],
            internet.addr,
            "200ms",
        ))
        .await;
        let health = daemon.health("nw-base", 0);
        until(&health, |s| s.state() == State::Down).await;
        assert!(
            health.udp.reason().contains("timed out"),
            "{}",
            health.udp.reason()
        );

        // Detected: the alternate answers at once, the primary not asked (so not waited for).
        let answer = client::udp(
            daemon.addr(),
            &query("skip.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["alternate"]);
        for via in [Via::Udp, Via::Tcp] {
            assert_eq!(asked_for(&primary, "skip.lineauth.mnw", via), 0, "{via:?}");
        }

        // The primary comes back and gets its place back after `rise` passes.
        dead.store(false, Ordering::Relaxed);
        until(&health, |s| s.state() == State::Up).await;
        let answer = client::udp(
            daemon.addr(),
            &query("www.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["primary"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_query_failures_wake_the_probes_which_mark_a_primary_down() {
    within(async {
        let dead = Arc::new(AtomicBool::new(false));
        let primary = switchable("primary", dead.clone(), None).await;
        let alternate = switchable("alternate", Arc::new(AtomicBool::new(false)), None).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = config(&[primary.addr, alternate.addr], internet.addr, "1h");
        config.forward.timeout = "300ms".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let health = daemon.health("nw-base", 0);
        until(&health, |s| s.state() == State::Up).await; // the first probe round passed
        let asked = primary.total();
        dead.store(true, Ordering::Relaxed);
        // Two questions at once, both asked of the primary first (once it has lost a race it
        // is asked last, so questions one after another would reach it only once).
        let (a, b) = (
            query("a.lineauth.mnw", RecordType::TXT, None),
            query("b.lineauth.mnw", RecordType::TXT, None),
        );
        let answers = tokio::join!(
            client::udp(daemon.addr(), &a),
            client::udp(daemon.addr(), &b)
        );
        for answer in [answers.0, answers.1] {
            assert_eq!(
                txt_of(&answer),
                ["alternate"],
                "failover while the primary is still up"
            );
        }
        assert_eq!(primary.total(), asked + 2, "both were asked of the primary");
        // The alternate answered each after the hedge delay; the primary's asks ran on to their
        // timeout in the background, and their failures woke the probes (the interval is an
        // hour), whose failed rounds (fall = 2) mark it down.
        until(&health, |s| s.udp.is_down()).await;
        let answer = client::udp(
            daemon.addr(),
            &query("skip.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["alternate"]);
        assert_eq!(
            asked_for(&primary, "skip.lineauth.mnw", Via::Udp),
            0,
            "a primary marked down is not waited for"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_udp_is_dropped_is_used_over_tcp() {
    within(async {
        let udp_dropped = Arc::new(AtomicBool::new(true));
        let primary = switchable("primary", udp_dropped.clone(), Some(Via::Udp)).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let daemon = Daemon::start(config(&[primary.addr], internet.addr, "200ms")).await;
        let health = daemon.health("nw-base", 0);
        until(&health, |s| s.udp.is_down() && s.tcp.state() == State::Up).await;
        assert_eq!(health.state(), State::Degraded);
        let answer = client::udp(
            daemon.addr(),
            &query("tcp.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(
            txt_of(&answer),
            ["primary"],
            "answered over TCP although UDP is dropped"
        );
        // Straight over TCP: no UDP try waited for first.
        assert_eq!(asked_for(&primary, "tcp.lineauth.mnw", Via::Tcp), 1);
        assert_eq!(asked_for(&primary, "tcp.lineauth.mnw", Via::Udp), 0);
        assert_eq!(
            internet
                .received()
                .iter()
                .filter(|r| r.message.queries[0].name().to_ascii().contains("lineauth"))
                .count(),
            0
        );
        // UDP comes back: queries go over UDP again.
        udp_dropped.store(false, Ordering::Relaxed);
        until(&health, |s| s.udp.state() == State::Up).await;
        assert_eq!(health.state(), State::Up);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_much_slower_server_is_degraded() {
    within(async {
        let slow = Arc::new(AtomicBool::new(false));
        let upstream = FakeUpstream::start({
            let slow = slow.clone();
            move |q, via| {
                let message = fake::reply(q, vec![fake::txt(q, "x")]);
                if slow.load(Ordering::Relaxed) && via == Via::Tcp {
                    Action::Delay(Duration::from_millis(600), message)
                } else {
                    Action::Reply(message)
                }
            }
        })
        .await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        // Slow is over 4 times the baseline plus 100 ms, and a probe fails past health.timeout:
        // a wide window between the two, so a slower machine (or qemu) still sees "slow".
        let mut config = config(&[upstream.addr], internet.addr, "100ms");
        config.health.timeout = "2s".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let health = daemon.health("nw-base", 0);
        // Let a baseline form over a few fast rounds (a slow first one, as on slow hardware or
        // under qemu, is soon forgotten: the baseline follows faster answers down halfway).
        let mut changes = health.subscribe();
        until(&health, |s| s.tcp.state() == State::Up).await;
        while upstream.count(Via::Tcp) < 4 {
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
        }
        slow.store(true, Ordering::Relaxed);
        until(&health, |s| s.tcp.state() == State::Degraded).await;
        assert_eq!(health.state(), State::Degraded);
        assert!(
            health.tcp.reason().starts_with("slow"),
            "{}",
            health.tcp.reason()
        );
        slow.store(false, Ordering::Relaxed);
        until(&health, |s| s.tcp.state() == State::Up).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_goes_silent_is_raced_instead_of_waited_for() {
    within(async {
        let dead = Arc::new(AtomicBool::new(false));
        let primary = switchable("primary", dead.clone(), None).await;
        let alternate = switchable("alternate", Arc::new(AtomicBool::new(false)), None).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = config(&[primary.addr, alternate.addr], internet.addr, "1h");
        // Far longer than the hedge delay, so that the race is not a matter of the machine's load.
        config.forward.timeout = "20s".parse().unwrap();
        let daemon = Daemon::start(config).await;
        let health = daemon.health("nw-base", 0);
        until(&health, |s| s.state() == State::Up).await;
        let q = query("www.lineauth.mnw", RecordType::TXT, None);
        let ask = || client::udp(daemon.addr(), &q);
        assert_eq!(txt_of(&ask().await), ["primary"]);
        assert!(
            health.srtt().is_some(),
            "the primary's round-trip time is known"
        );

        // Cut off: its usual round-trip time is well under 25 ms, so after 100 ms the alternate
        // is asked too, long before the primary's timeout: the primary's try is still under way
        // (no timeout counted) when the alternate's answer comes.
        dead.store(true, Ordering::Relaxed);
        let asked = primary.total();
        assert_eq!(txt_of(&ask().await), ["alternate"]);
        assert_eq!(udp_timeouts(&health), 0, "raced, not waited for");
        assert_eq!(primary.total(), asked + 1, "the primary was asked first");
        // It lost that race: from now on the alternate is asked first and answers alone, before
        // the primary's timeout has marked it down.
        assert!(health.is_overtaken());
        assert!(!health.udp.is_down());
        let answered = alternate.total();
        for _ in 0..3 {
            assert_eq!(txt_of(&ask().await), ["alternate"]);
        }
        assert_eq!(
            alternate.total(),
            answered + 3,
            "each asked upstream, not cached"
        );
        assert_eq!(
            primary.total(),
            asked + 1,
            "a primary that lost a race is not asked while the alternate answers"
        );
    })
    .await;
}

/// The bound of issue 15 with the lab's values (`interval = "2s"`, the default 2 s timeout,
/// fall = 3) and four names per round, under paused time: the loop's own timers decide, not the
/// machine's load. A round asks its names at once, so it lasts one timeout however many there are.
#[tokio::test(start_paused = true)]
async fn a_dead_server_is_marked_down_within_interval_plus_fall_timeouts() {
    within(async {
        let dead = Arc::new(AtomicBool::new(false));
        let upstream = switchable("nw-base", dead.clone(), None).await;
        let (interval, timeout, fall) = (Duration::from_secs(2), Duration::from_secs(2), 3);
        let server = Arc::new(ServerHealth::new(
            upstream.addr,
            "nw-base",
            Thresholds { rise: 2, fall },
        ));
        let names = [
            "www.lineauth.mnw",
            "hweb.oqs.onshikaku.org",
            "a.mnw",
            "b.mnw",
        ]
        .map(|n| format!("{n} TXT").parse().unwrap())
        .to_vec();
        let stop = CancellationToken::new();
        let task = tokio::spawn(probe_loop(
            server.clone(),
            names,
            interval,
            timeout,
            stop.clone(),
        ));
        until(&server, |s| s.state() == State::Up).await;
        // Dead just after a round passed: the worst case, a whole interval before the next one.
        dead.store(true, Ordering::Relaxed);
        let died = tokio::time::Instant::now();
        until(&server, |s| s.state() == State::Down).await;
        let took = died.elapsed();
        // tokio's timers tick in whole milliseconds: each of the four waits may end up to 1 ms late.
        let bound = interval + timeout * fall + Duration::from_millis(4);
        assert!(took <= bound, "marked down after {took:?}, bound {bound:?}");
        assert!(
            took >= timeout * fall,
            "{took:?}: fall = {fall} rounds of {timeout:?} each"
        );
        assert!(
            server.udp.reason().contains("timed out"),
            "{}",
            server.udp.reason()
        );
        stop.cancel();
        task.await.unwrap();
    })
    .await;
}

/// A name the default server is slow for (beyond the forward timeout), while it answers its
/// probes: the real queries time out and wake the probes, which find it well; it stays up and
/// `/health` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_default_name_does_not_mark_its_server_down() {
    within(async {
        let nw_base = FakeUpstream::start(fake::identify("nw-base")).await;
        let internet = FakeUpstream::start(|q, _| {
            let message = fake::reply(q, vec![fake::txt(q, "internet")]);
            if fake::qname(q).to_ascii().starts_with("slow.") {
                Action::Delay(Duration::from_secs(5), message)
            } else {
                Action::Reply(message)
            }
        })
        .await;
        let mut config = config(&[nw_base.addr], internet.addr, "1h");
        config.forward.names = vec!["probe.example TXT".parse().unwrap()];
        config.forward.timeout = "500ms".parse().unwrap();
        config.status = Some(oqsdns_config::StatusConfig::on(
            "127.0.0.1:0".parse().unwrap(),
        ));
        let daemon = Daemon::start(config).await;
        let status = daemon.status.unwrap();
        let health = daemon.health("default", 0);
        until(&health, |s| s.state() == State::Up).await;
        until(&daemon.health("nw-base", 0), |s| s.state() == State::Up).await;
        let probed = |s: &ServerHealth| s.stats.probe_passes.of(oqsdns_core::Transport::Udp).get();
        let before = probed(&health);
        for name in ["slow.example.com", "slow.example.net", "slow.example.org"] {
            let answer = client::udp(daemon.addr(), &query(name, RecordType::TXT, None)).await;
            assert_eq!(
                answer.metadata.response_code,
                hickory_proto::op::ResponseCode::ServFail,
                "{name}: the server is slower than the timeout"
            );
        }
        // The failures woke the probes (the interval is an hour): they passed.
        while probed(&health) == before {
            let mut changes = health.subscribe();
            let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
        }
        assert_eq!(health.state(), State::Up, "{}", health.udp.reason());
        assert!(!health.udp.is_down() && !health.tcp.is_down());
        let page = http::get(status, "/health").await;
        assert_eq!(page.status, 200, "{}", page.body);
        // A name it answers goes to it at once, not after another server.
        let answer = client::udp(
            daemon.addr(),
            &query("www.example.com", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["internet"]);
    })
    .await;
}

/// UDP to both servers of a route dropped, TCP open, before the probes have told anything: the
/// first query is answered over TCP instead of SERVFAIL, within the time its UDP tries alone
/// took; the probes, woken by those failures, then move both servers to TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_query_is_answered_over_tcp_when_udp_is_dropped() {
    within(async {
        let dropped = Arc::new(AtomicBool::new(true));
        let primary = switchable("primary", dropped.clone(), Some(Via::Udp)).await;
        let alternate = switchable("alternate", dropped.clone(), Some(Via::Udp)).await;
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let mut config = config(&[primary.addr, alternate.addr], internet.addr, "1h");
        // Probes slow to decide, so that the query comes first.
        config.health.timeout = "2s".parse().unwrap();
        config.health.fall = 3;
        let daemon = Daemon::start(config).await;
        let (first, second) = (daemon.health("nw-base", 0), daemon.health("nw-base", 1));
        let answer = client::udp(
            daemon.addr(),
            &query("first.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert!(!first.udp.is_down(), "the probes had not decided yet");
        assert_eq!(txt_of(&answer), ["primary"], "answered, over TCP");
        // Nothing is known of their round-trip times, so the alternate is asked when the
        // primary's UDP try times out, and SERVFAIL would have come when the alternate's timed
        // out too: the primary's TCP try, begun half a timeout after, answers before that.
        assert_eq!(asked_for(&primary, "first.lineauth.mnw", Via::Tcp), 1);
        assert_eq!(asked_for(&alternate, "first.lineauth.mnw", Via::Udp), 1);
        assert_eq!(
            udp_timeouts(&second),
            0,
            "answered while the last UDP try was still under way"
        );
        for server in [&first, &second] {
            until(server, |s| s.plan() == oqsdns_core::health::Plan::TcpOnly).await;
        }
        let answer = client::udp(
            daemon.addr(),
            &query("other.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["primary"]);
        // Over TCP at once: no UDP try first.
        assert_eq!(asked_for(&primary, "other.lineauth.mnw", Via::Tcp), 1);
        assert_eq!(asked_for(&primary, "other.lineauth.mnw", Via::Udp), 0);
    })
    .await;
}
