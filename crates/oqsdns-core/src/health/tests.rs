//! The health state machine: rise and fall, slow answers, per-transport plans.

use super::*;

const LIMITS: Thresholds = Thresholds { rise: 2, fall: 3 };

fn pass(ms: u64) -> Outcome {
    Outcome::Pass(Duration::from_millis(ms))
}

fn fail() -> Outcome {
    Outcome::Fail("timed out".into())
}

#[test]
fn falls_after_consecutive_failures_and_rises_after_consecutive_passes() {
    let track = Track::default();
    assert_eq!(
        track.record(&pass(5), LIMITS),
        Some(State::Up),
        "first pass: up"
    );
    assert_eq!(track.record(&fail(), LIMITS), None);
    assert_eq!(track.record(&fail(), LIMITS), None);
    assert_eq!(
        track.record(&pass(5), LIMITS),
        None,
        "a pass resets the failures"
    );
    assert_eq!(track.record(&fail(), LIMITS), None);
    assert_eq!(track.record(&fail(), LIMITS), None);
    assert_eq!(track.record(&fail(), LIMITS), Some(State::Down));
    assert_eq!(track.reason(), "timed out");
    assert_eq!(
        track.record(&fail(), LIMITS),
        None,
        "a change is reported once"
    );
    assert_eq!(
        track.record(&pass(5), LIMITS),
        None,
        "one pass is not enough"
    );
    assert_eq!(track.record(&fail(), LIMITS), None);
    assert_eq!(track.record(&pass(5), LIMITS), None);
    assert_eq!(track.record(&pass(5), LIMITS), Some(State::Up));
    assert_eq!(track.reason(), "");
}

#[test]
fn real_query_failures_wake_the_probes_but_do_not_change_the_state() {
    let server = ServerHealth::new("192.0.2.1:53".parse().unwrap(), "default", LIMITS);
    server.record(Transport::Udp, &pass(5), true);
    let woken = server.wake.notified();
    tokio::pin!(woken);
    woken.as_mut().enable(); // registered before the failures
    for _ in 0..10 {
        server.record(Transport::Udp, &fail(), false);
    }
    assert_eq!(
        server.udp.state(),
        State::Up,
        "only probes mark a server down"
    );
    assert_eq!(server.stats.probe_failures.of(Transport::Udp).get(), 0);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(
        std::future::Future::poll(woken.as_mut(), &mut cx).is_ready(),
        "a real failure wakes the probe loop"
    );
    // Probes still decide: `fall` failed rounds mark it down, and a real answer does not bring it
    // back up, it only wakes the probes again.
    for _ in 0..3 {
        server.record(Transport::Udp, &fail(), true);
    }
    assert!(server.udp.is_down());
    server.record(Transport::Udp, &pass(5), false);
    server.record(Transport::Udp, &pass(5), false);
    assert!(server.udp.is_down());
}

#[test]
fn slow_answers_degrade_and_normal_ones_recover() {
    let track = Track::default();
    for _ in 0..5 {
        track.record(&pass(10), LIMITS);
    }
    assert_eq!(track.state(), State::Up);
    assert_eq!(track.record(&pass(900), LIMITS), None);
    assert_eq!(track.record(&pass(900), LIMITS), None);
    assert_eq!(track.record(&pass(900), LIMITS), Some(State::Degraded));
    assert!(
        track.reason().starts_with("slow: 900 ms"),
        "{}",
        track.reason()
    );
    assert!(!track.is_down(), "a slow server is still used");
    assert_eq!(track.record(&pass(10), LIMITS), None);
    assert_eq!(track.record(&pass(10), LIMITS), Some(State::Up));
}

#[test]
fn a_slow_first_probe_does_not_hide_later_slowness() {
    let track = Track::default();
    // The first probe 80 ms (a cold start), the next ones 2 ms: the baseline follows them down
    // (with 7/8 of the old one kept it would still be 48 ms: slow only past 290 ms).
    track.record(&pass(80), LIMITS);
    for _ in 0..4 {
        track.record(&pass(2), LIMITS);
    }
    assert_eq!(track.state(), State::Up);
    assert_eq!(track.record(&pass(250), LIMITS), None);
    assert_eq!(track.record(&pass(250), LIMITS), None);
    assert_eq!(track.record(&pass(250), LIMITS), Some(State::Degraded));
    assert!(
        track.reason().starts_with("slow: 250 ms, usually 6 ms"),
        "{}",
        track.reason()
    );
}

#[test]
fn a_server_whose_udp_fails_is_used_over_tcp() {
    let server = ServerHealth::new(
        "[2404:1a8:f583:d00::53:1]:53".parse().unwrap(),
        "nw-base",
        LIMITS,
    );
    assert_eq!(server.plan(), Plan::Udp);
    assert_eq!(server.state(), State::Unknown);
    server.record(Transport::Tcp, &pass(5), true);
    for _ in 0..3 {
        server.record(Transport::Udp, &fail(), true);
    }
    assert_eq!(server.plan(), Plan::TcpOnly);
    assert_eq!(server.state(), State::Degraded);
    for _ in 0..3 {
        server.record(Transport::Tcp, &fail(), true);
    }
    assert_eq!(server.plan(), Plan::Last);
    assert_eq!(server.state(), State::Down);
    server.record(Transport::Udp, &pass(5), true);
    server.record(Transport::Udp, &pass(5), true);
    assert_eq!(server.plan(), Plan::Udp);
}

#[test]
fn a_server_that_lost_a_race_is_marked_until_it_answers() {
    let server = ServerHealth::new(
        "[2404:1a8:f583:d00::53:1]:53".parse().unwrap(),
        "nw-base",
        LIMITS,
    );
    server.record(Transport::Udp, &pass(5), true);
    server.overtaken();
    assert!(server.is_overtaken());
    assert_eq!(server.plan(), Plan::Udp, "the transport is not changed");
    assert_eq!(server.state(), State::Up, "a lost race is not a failure");
    server.record(Transport::Udp, &fail(), false);
    assert!(server.is_overtaken(), "a failure keeps the mark");
    server.record(Transport::Udp, &pass(40), false);
    assert!(!server.is_overtaken(), "a late answer clears it");
    server.overtaken();
    server.record(Transport::Tcp, &pass(5), true);
    assert!(!server.is_overtaken(), "so does a probe that passes");
}

#[test]
fn the_registry_keeps_state_across_rebuilds() {
    let registry = HealthRegistry::default();
    let addr = "192.0.2.1:53".parse().unwrap();
    let first = registry.get(addr, "nw-base", LIMITS);
    for _ in 0..3 {
        first.record(Transport::Udp, &fail(), true);
    }
    let again = registry.get(addr, "nw-base", LIMITS);
    assert!(Arc::ptr_eq(&first, &again));
    assert!(again.udp.is_down());
    registry.retain(&[]);
    assert!(!registry.get(addr, "nw-base", LIMITS).udp.is_down());
}
