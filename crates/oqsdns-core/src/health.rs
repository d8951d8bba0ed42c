//! Upstream health: per server and transport, up, degraded or down, changed only after
//! consecutive probe results (rise/fall). Real queries do not decide the state: their failures
//! wake the probe loop, whose rounds confirm or clear them. The query path reads it with atomic
//! loads only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use crate::metrics::{RouteStats, ServerStats};
use crate::upstream::Transport;

mod history;
pub use history::{Change, History, LastProbes, CHANGES_KEPT};

/// The state of one server over one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Not probed yet: treated as up.
    Unknown = 0,
    /// Answers.
    Up = 1,
    /// Answers, but much slower than usual.
    Degraded = 2,
    /// Does not answer.
    Down = 3,
}

impl State {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Up,
            2 => Self::Degraded,
            3 => Self::Down,
            _ => Self::Unknown,
        }
    }

    /// The lower-case English name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// Thresholds of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive passes that bring a server back up.
    pub rise: u32,
    /// Consecutive failures (or slow passes) that take it down (or to degraded).
    pub fall: u32,
}

/// A probe or query outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in this time.
    Pass(Duration),
    /// Failed, for this reason.
    Fail(String),
}

/// A slow answer is one over this multiple of the usual latency (plus [`SLOW_MARGIN`]).
const SLOW_FACTOR: u32 = 4;
const SLOW_MARGIN: Duration = Duration::from_millis(100);

/// One server over one transport.
#[derive(Debug, Default)]
pub struct Track {
    state: AtomicU8,
    passes: AtomicU32,
    fails: AtomicU32,
    slows: AtomicU32,
    latency_us: AtomicU32,
    baseline_us: AtomicU32,
    reason: Mutex<String>,
}

impl Track {
    /// The current state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Whether queries should avoid this transport of the server.
    pub fn is_down(&self) -> bool {
        self.state() == State::Down
    }

    /// The last measured latency.
    pub fn latency(&self) -> Duration {
        Duration::from_micros(u64::from(self.latency_us.load(Ordering::Relaxed)))
    }

    /// Why the state is what it is (the last failure's reason, empty when up).
    pub fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Records a probe round's outcome; returns the new state when it changed. Passes also feed
    /// the latency baseline and the slow detection.
    pub fn record(&self, outcome: &Outcome, limits: Thresholds) -> Option<State> {
        match outcome {
            Outcome::Pass(latency) => {
                let us = latency.as_micros().min(u32::MAX as u128) as u32;
                if self.fails.load(Ordering::Relaxed) != 0 {
                    self.fails.store(0, Ordering::Relaxed);
                }
                self.latency_us.store(us, Ordering::Relaxed);
                let baseline = self.baseline_us.load(Ordering::Relaxed);
                let slow_above =
                    baseline.saturating_mul(SLOW_FACTOR) + SLOW_MARGIN.as_micros() as u32;
                if baseline != 0 && us > slow_above {
                    self.passes.store(0, Ordering::Relaxed);
                    let slows = self.slows.fetch_add(1, Ordering::Relaxed) + 1;
                    if slows >= limits.fall {
                        let reason =
                            format!("slow: {} ms, usually {} ms", us / 1000, baseline / 1000);
                        return self.change(State::Degraded, reason);
                    }
                    return None;
                }
                self.slows.store(0, Ordering::Relaxed);
                // Up slowly (7/8 old, 1/8 new), down fast (halfway): a slow first probe (cold
                // caches, a new connection, slow hardware) must not hide later slowness for long.
                let next = if baseline == 0 {
                    us
                } else if us < baseline {
                    baseline - (baseline - us) / 2
                } else {
                    (baseline * 7 + us) / 8
                };
                self.baseline_us.store(next, Ordering::Relaxed);
                self.pass(limits, State::Up)
            }
            Outcome::Fail(reason) => {
                self.passes.store(0, Ordering::Relaxed);
                let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
                if fails >= limits.fall {
                    return self.change(State::Down, reason.clone());
                }
                if let Ok(mut last) = self.reason.lock() {
                    last.clone_from(reason);
                }
                None
            }
        }
    }

    fn pass(&self, limits: Thresholds, to: State) -> Option<State> {
        let state = self.state();
        if state == State::Up {
            return None;
        }
        let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
        // A server never probed before is up at its first pass.
        if state == State::Unknown || passes >= limits.rise {
            return self.change(to, String::new());
        }
        None
    }

    fn change(&self, to: State, reason: String) -> Option<State> {
        let from = self.state.swap(to as u8, Ordering::Relaxed);
        if let Ok(mut last) = self.reason.lock() {
            *last = reason;
        }
        (from != to as u8).then_some(to)
    }
}

/// The health of one upstream server.
#[derive(Debug)]
pub struct ServerHealth {
    /// The server.
    pub addr: SocketAddr,
    /// The route it serves, for logs.
    pub route: String,
    /// Over UDP.
    pub udp: Track,
    /// Over TCP.
    pub tcp: Track,
    limits: Thresholds,
    changes: tokio::sync::watch::Sender<u32>,
    /// Wakes the probe loop early when a real query fails.
    pub wake: tokio::sync::Notify,
    /// Exchanges and probes counted for the status endpoint.
    pub stats: ServerStats,
    /// Recent changes of state and the last probe round.
    pub history: History,
    /// Smoothed round-trip time of real queries over UDP, in microseconds; 0 before the first.
    srtt_us: AtomicU32,
    /// Another server answered a query first while this one, asked before it, had not answered
    /// within its hedge delay; until this one answers again (a query or a probe) it is asked
    /// after the others that are up. A server that has just died stops delaying queries at the
    /// first race it loses, without waiting for its timeouts to mark it down.
    overtaken: AtomicBool,
}

/// How the query path should use a server now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// UDP, with TCP after a truncated answer.
    Udp,
    /// UDP is down but TCP answers: TCP only.
    TcpOnly,
    /// Down over both: try only after the servers that are up.
    Last,
}

impl Plan {
    /// `udp`, `tcp` or `last`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::TcpOnly => "tcp",
            Self::Last => "last",
        }
    }
}

/// `items` with each server once (by identity), at its first place: a route may name a server
/// twice, and the registry gives it one [`ServerHealth`] per route.
pub fn each_server_once<'a, T>(
    items: impl IntoIterator<Item = (T, &'a Arc<ServerHealth>)>,
) -> Vec<(T, &'a Arc<ServerHealth>)> {
    let mut out: Vec<(T, &Arc<ServerHealth>)> = Vec::new();
    for (tag, server) in items {
        if !out.iter().any(|(_, s)| Arc::ptr_eq(s, server)) {
            out.push((tag, server));
        }
    }
    out
}

impl ServerHealth {
    /// A server not probed yet.
    pub fn new(addr: SocketAddr, route: impl Into<String>, limits: Thresholds) -> Self {
        Self {
            addr,
            route: route.into(),
            udp: Track::default(),
            tcp: Track::default(),
            limits,
            changes: tokio::sync::watch::Sender::new(0),
            wake: tokio::sync::Notify::new(),
            stats: ServerStats::default(),
            history: History::default(),
            srtt_us: AtomicU32::new(0),
            overtaken: AtomicBool::new(false),
        }
    }

    /// Whether another server answered first while this one, asked before it, was silent, and
    /// it has not answered since: it is asked after the servers that are up (and before those
    /// known to be down), still over the transport its plan says.
    pub fn is_overtaken(&self) -> bool {
        self.overtaken.load(Ordering::Relaxed)
    }

    /// Notes that another server answered a query first while this one, asked before it, had
    /// not answered within its hedge delay: see [`is_overtaken`](Self::is_overtaken).
    pub fn overtaken(&self) {
        if !self.overtaken.load(Ordering::Relaxed) {
            self.overtaken.store(true, Ordering::Relaxed);
        }
    }

    /// Folds the round-trip time of a real query answered over UDP into the smoothed one
    /// (7/8 old, 1/8 new, as TCP's SRTT).
    pub fn note_rtt(&self, rtt: Duration) {
        let us = rtt.as_micros().clamp(1, u128::from(u32::MAX / 8)) as u32;
        let old = self.srtt_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old / 8) * 7 + us / 8 };
        self.srtt_us.store(new.max(1), Ordering::Relaxed);
    }

    /// The usual round-trip time over UDP: of real queries, else of probes; `None` before
    /// either has answered.
    pub fn srtt(&self) -> Option<Duration> {
        let us = match self.srtt_us.load(Ordering::Relaxed) {
            0 => self.udp.baseline_us.load(Ordering::Relaxed),
            us => us,
        };
        (us != 0).then(|| Duration::from_micros(u64::from(us)))
    }

    /// The track of one transport.
    pub fn track(&self, transport: Transport) -> &Track {
        match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
        }
    }

    /// How to use this server now: TCP alone when the probes saw UDP fail while TCP passed.
    pub fn plan(&self) -> Plan {
        match (self.udp.is_down(), self.tcp.is_down()) {
            (false, _) => Plan::Udp,
            (true, false) => Plan::TcpOnly,
            (true, true) => Plan::Last,
        }
    }

    /// The overall state: up, degraded when one transport is down or slow, down when both are.
    pub fn state(&self) -> State {
        match (self.udp.state(), self.tcp.state()) {
            (State::Down, State::Down) => State::Down,
            (State::Down, _) | (_, State::Down) | (State::Degraded, _) | (_, State::Degraded) => {
                State::Degraded
            }
            (State::Unknown, State::Unknown) => State::Unknown,
            _ => State::Up,
        }
    }

    /// A receiver that sees a new value at every change of state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.changes.subscribe()
    }

    /// Records an outcome of one transport, logging a change of state once. Only probes
    /// (`probe`) change the state: a real query's failure wakes the probe loop instead (a slow
    /// name behind a working resolver must not mark it down), and its answer clears
    /// [`is_overtaken`](Self::is_overtaken). Until the probes confirm a failure, the
    /// hedged failover keeps queries from waiting for the silent server.
    pub fn record(&self, transport: Transport, outcome: &Outcome, probe: bool) {
        if !probe {
            match outcome {
                Outcome::Fail(_) => self.wake.notify_one(),
                Outcome::Pass(_) => {
                    if self.overtaken.load(Ordering::Relaxed) {
                        self.overtaken.store(false, Ordering::Relaxed);
                    }
                    // An answer from a server the probes marked down: let them look again.
                    if self.track(transport).is_down() {
                        self.wake.notify_one();
                    }
                }
            }
            return;
        }
        if matches!(outcome, Outcome::Pass(_)) && self.overtaken.load(Ordering::Relaxed) {
            self.overtaken.store(false, Ordering::Relaxed);
        }
        let counts = match outcome {
            Outcome::Pass(_) => &self.stats.probe_passes,
            Outcome::Fail(_) => &self.stats.probe_failures,
        };
        counts.of(transport).inc();
        let Some(state) = self.track(transport).record(outcome, self.limits) else {
            return;
        };
        let reason = self.track(transport).reason();
        self.history.changed(transport, state, reason.clone());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        let (server, route) = (self.addr, &self.route);
        match state {
            State::Up => {
                info!(%server, %route, %transport, "upstream {server} ({route}) is up over {}", transport.to_string().to_uppercase())
            }
            State::Down => {
                warn!(%server, %route, %transport, %reason, "upstream {server} ({route}) is down over {}: {reason}", transport.to_string().to_uppercase())
            }
            State::Degraded => {
                warn!(%server, %route, %transport, %reason, "upstream {server} ({route}) is degraded over {}: {reason}", transport.to_string().to_uppercase())
            }
            State::Unknown => {}
        }
    }
}

/// Every server's health, kept across reloads so that a server that stays keeps its state.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    servers: Mutex<HashMap<(SocketAddr, String), Arc<ServerHealth>>>,
    routes: Mutex<HashMap<String, Arc<RouteStats>>>,
}

impl HealthRegistry {
    /// The health of `addr` in `route`, created on first use.
    pub fn get(&self, addr: SocketAddr, route: &str, limits: Thresholds) -> Arc<ServerHealth> {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers
            .entry((addr, route.to_string()))
            .or_insert_with(|| Arc::new(ServerHealth::new(addr, route, limits)))
            .clone()
    }

    /// The counters of the route named `route`, kept across reloads like the servers' health.
    pub fn route_stats(&self, route: &str) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(route.to_string()).or_default().clone()
    }

    /// Forgets servers no longer in `keep`.
    pub fn retain(&self, keep: &[Arc<ServerHealth>]) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.retain(|_, s| keep.iter().any(|k| Arc::ptr_eq(k, s)));
    }
}

#[cfg(test)]
mod tests;
