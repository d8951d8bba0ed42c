//! The health module against fake upstreams: dead primaries are detected by probes and by real
//! queries and skipped without waiting for their timeout, recover, and a server whose UDP is
//! dropped is used over TCP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use oqsdns_config::{Config, RouteConfig, ServerAddr};
use oqsdns_core::health::{ServerHealth, State};
use oqsdns_tests::client::{self, query, txt_of};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream, Via};

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

        // Detected: the alternate answers at once, not after the primary's 1 s timeout.
        let started = Instant::now();
        let answer = client::udp(
            daemon.addr(),
            &query("www.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["alternate"]);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "waited {:?}",
            started.elapsed()
        );

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
async fn real_query_failures_mark_a_primary_down_before_the_next_probe() {
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
        // timeout in the background, and their failures (fall = 2) mark it down.
        until(&health, |s| s.udp.is_down()).await;
        let started = Instant::now();
        let answer = client::udp(
            daemon.addr(),
            &query("www.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(txt_of(&answer), ["alternate"]);
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "waited {:?}",
            started.elapsed()
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
        let tcp_before = primary.count(Via::Tcp);
        let started = Instant::now();
        let answer = client::udp(
            daemon.addr(),
            &query("www.lineauth.mnw", RecordType::TXT, None),
        )
        .await;
        assert_eq!(
            txt_of(&answer),
            ["primary"],
            "answered over TCP although UDP is dropped"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "waited {:?}",
            started.elapsed()
        );
        assert!(primary.count(Via::Tcp) > tcp_before);
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
        config.forward.timeout = "3s".parse().unwrap();
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
        // is asked too, long before the primary's 3 s timeout.
        dead.store(true, Ordering::Relaxed);
        let asked = primary.total();
        let started = Instant::now();
        assert_eq!(txt_of(&ask().await), ["alternate"]);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "waited {:?} (the timeout is 3 s)",
            started.elapsed()
        );
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
