//! `/metrics`: the daemon's counters in the Prometheus text exposition format (0.0.4), read from
//! the query path's atomics at scrape time.
//!
//! Written here rather than with the `prometheus-client` crate: that crate writes only the
//! OpenMetrics format, whose counter `# TYPE` lines lack `_total`, and `promtool check metrics`
//! rejects those (client_rust issue 51).

use std::fmt::{Display, Write as _};
use std::sync::Arc;

use oqsdns_core::health::{ServerHealth, State, Track};
use oqsdns_core::metrics::{Counter, PerTransport, LATENCY_BOUNDS, RCODES};
use oqsdns_core::Transport;

use crate::Daemon;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];
const STATES: [State; 4] = [State::Up, State::Degraded, State::Down, State::Unknown];

/// A text exposition being written.
#[derive(Debug, Default)]
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"");
                for c in val.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn per_transport(&mut self, name: &str, labels: &[(&str, &str)], counts: &PerTransport) {
        for transport in TRANSPORTS {
            let t = transport.to_string();
            let mut all = labels.to_vec();
            all.push(("transport", &t));
            self.sample(name, &all, counts.of(transport).get());
        }
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], counter: &Counter) {
        self.family(name, "counter", help);
        self.sample(name, labels, counter.get());
    }
}

/// Writes one family's samples for one server, given its `route` and `server` labels.
type PerServer<'a> = &'a dyn Fn(&mut Out, &[(&str, &str)], &ServerHealth);

/// Every server of the runtime in force with its route's name, once each.
fn servers(daemon: &Daemon) -> Vec<(String, Arc<ServerHealth>)> {
    let mut out: Vec<(String, Arc<ServerHealth>)> = Vec::new();
    for group in daemon.runtime().groups() {
        for server in &group.servers {
            if !out.iter().any(|(_, s)| Arc::ptr_eq(s, server)) {
                out.push((group.name.clone(), server.clone()));
            }
        }
    }
    out
}

/// The exposition of `daemon`'s counters, with `healthy` the `/health` verdict.
pub fn render(daemon: &Daemon, healthy: bool) -> String {
    let mut out = Out::default();
    let handler = daemon.handler();
    let runtime = daemon.runtime();
    let metrics = &handler.shared().metrics;

    out.family(
        "oqsdns_queries_total",
        "counter",
        "Answers sent to clients, by route, transport and response code.",
    );
    for group in runtime.groups() {
        for transport in TRANSPORTS {
            let t = transport.to_string();
            for (i, rcode) in RCODES.iter().enumerate() {
                let labels = [
                    ("route", group.name.as_str()),
                    ("transport", &t),
                    ("rcode", rcode),
                ];
                out.sample(
                    "oqsdns_queries_total",
                    &labels,
                    group.stats.answers(transport, i),
                );
            }
        }
    }
    out.family(
        "oqsdns_failovers_total",
        "counter",
        "Queries answered by a server other than the first one tried, by route.",
    );
    for group in runtime.groups() {
        let labels = [("route", group.name.as_str())];
        out.sample(
            "oqsdns_failovers_total",
            &labels,
            group.stats.failovers.get(),
        );
    }

    out.counter(
        "oqsdns_cache_hits_total",
        "Answers served from the cache.",
        &[],
        &metrics.cache_hits,
    );
    out.counter(
        "oqsdns_cache_misses_total",
        "Questions not found fresh in the cache and asked upstream.",
        &[],
        &metrics.cache_misses,
    );
    out.counter(
        "oqsdns_cache_stale_answers_total",
        "Expired answers served because every server of the route failed.",
        &[],
        &metrics.stale_answers,
    );
    out.family("oqsdns_cache_entries", "gauge", "Answers in the cache.");
    out.sample("oqsdns_cache_entries", &[], handler.shared().cache.len());

    let limiter = handler.limiter();
    out.family(
        "oqsdns_rate_limited_total",
        "counter",
        "Queries over a client's rate limit, by what was done with them.",
    );
    out.sample(
        "oqsdns_rate_limited_total",
        &[("action", "refused")],
        limiter.stats.refused.get(),
    );
    out.sample(
        "oqsdns_rate_limited_total",
        &[("action", "dropped")],
        limiter.stats.dropped.get(),
    );
    out.family(
        "oqsdns_refused_total",
        "counter",
        "Queries refused: from a client outside server.allow (acl), or past server.max_inflight (busy).",
    );
    out.sample(
        "oqsdns_refused_total",
        &[("reason", "acl")],
        metrics.refused_acl.get(),
    );
    out.sample(
        "oqsdns_refused_total",
        &[("reason", "busy")],
        metrics.refused_busy.get(),
    );

    let servers = servers(daemon);
    let each = |out: &mut Out, name: &str, kind: &str, help: &str, f: PerServer<'_>| {
        out.family(name, kind, help);
        for (route, server) in &servers {
            let addr = server.addr.to_string();
            f(out, &[("route", route), ("server", &addr)], server);
        }
    };
    each(
        &mut out,
        "oqsdns_upstream_queries_total",
        "counter",
        "Queries sent to an upstream server, by transport.",
        &|out, labels, s| {
            out.per_transport("oqsdns_upstream_queries_total", labels, &s.stats.queries)
        },
    );
    each(
        &mut out,
        "oqsdns_upstream_errors_total",
        "counter",
        "Exchanges with an upstream server that failed other than by a timeout.",
        &|out, labels, s| {
            out.per_transport("oqsdns_upstream_errors_total", labels, &s.stats.errors)
        },
    );
    each(
        &mut out,
        "oqsdns_upstream_timeouts_total",
        "counter",
        "Exchanges with an upstream server that got no reply within forward.timeout.",
        &|out, labels, s| {
            out.per_transport("oqsdns_upstream_timeouts_total", labels, &s.stats.timeouts)
        },
    );
    each(
        &mut out,
        "oqsdns_upstream_tcp_retries_total",
        "counter",
        "Truncated UDP answers retried over TCP.",
        &|out, labels, s| {
            out.sample(
                "oqsdns_upstream_tcp_retries_total",
                labels,
                s.stats.tc_retries.get(),
            )
        },
    );
    each(
        &mut out,
        "oqsdns_upstream_latency_seconds",
        "histogram",
        "Time to an accepted reply from an upstream server.",
        &|out, labels, s| {
            let (buckets, sum) = s.stats.latency.snapshot();
            for (bound, count) in LATENCY_BOUNDS
                .iter()
                .map(ToString::to_string)
                .chain(["+Inf".to_string()])
                .zip(buckets)
            {
                let mut all = labels.to_vec();
                all.push(("le", &bound));
                out.sample("oqsdns_upstream_latency_seconds_bucket", &all, count);
            }
            out.sample("oqsdns_upstream_latency_seconds_sum", labels, sum);
            out.sample("oqsdns_upstream_latency_seconds_count", labels, buckets[10]);
        },
    );
    each(
        &mut out,
        "oqsdns_probes_total",
        "counter",
        "Health-probe rounds of an upstream server, by transport and result.",
        &|out, labels, s| {
            for (result, counts) in [
                ("pass", &s.stats.probe_passes),
                ("fail", &s.stats.probe_failures),
            ] {
                let mut all = labels.to_vec();
                all.push(("result", result));
                out.per_transport("oqsdns_probes_total", &all, counts);
            }
        },
    );
    each(
        &mut out,
        "oqsdns_upstream_state",
        "gauge",
        "1 for the state an upstream server is in over a transport (up, degraded, down, unknown).",
        &|out, labels, s| {
            for transport in TRANSPORTS {
                let t = transport.to_string();
                let now = s.track(transport).state();
                for state in STATES {
                    let mut all = labels.to_vec();
                    all.extend([("transport", t.as_str()), ("state", state.as_str())]);
                    out.sample("oqsdns_upstream_state", &all, u8::from(now == state));
                }
            }
        },
    );
    each(
        &mut out,
        "oqsdns_upstream_probe_latency_seconds",
        "gauge",
        "The last health probe's time to answer, by transport.",
        &|out, labels, s| {
            for transport in TRANSPORTS {
                let t = transport.to_string();
                let track: &Track = s.track(transport);
                let mut all = labels.to_vec();
                all.push(("transport", &t));
                out.sample(
                    "oqsdns_upstream_probe_latency_seconds",
                    &all,
                    track.latency().as_secs_f64(),
                );
            }
        },
    );

    out.family(
        "oqsdns_healthy",
        "gauge",
        "1 when the status verdict is all good (GET /health answers 200), else 0.",
    );
    out.sample("oqsdns_healthy", &[], u8::from(healthy));
    out.family(
        "oqsdns_build_info",
        "gauge",
        "The running version and area, as labels; always 1.",
    );
    let area = runtime.area().to_string();
    out.sample(
        "oqsdns_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("area", &area)],
        1,
    );
    out.0
}
