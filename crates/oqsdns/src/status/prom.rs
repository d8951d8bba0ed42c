//! `/metrics`: the daemon's counters for Prometheus, read from the query path's atomics at scrape
//! time by a collector registered with the `prometheus-client` crate (prefix `oqsdns`), so
//! counting costs a query no more than one relaxed add. The crate writes OpenMetrics; a client
//! that does not ask for it gets the text format 0.0.4 ([`format`] says why).

mod format;

pub use format::{to_text, Format};

use std::fmt;
use std::sync::Arc;

use oqsdns_core::health::{ServerHealth, State};
use oqsdns_core::metrics::{PerTransport, LATENCY_BOUNDS, RCODES};
use oqsdns_core::{Runtime, Transport};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::view;
use crate::Daemon;

/// The `/metrics` of a daemon: a registry holding the collector of its counters.
#[derive(Debug)]
pub struct Exporter(Registry);

impl Exporter {
    /// The exporter of `daemon`'s counters.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        let mut registry = Registry::with_prefix("oqsdns");
        registry.register_collector(Box::new(Counters(daemon)));
        Self(registry)
    }

    /// The counters now, in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0)
            .expect("writing to a String does not fail");
        match format {
            Format::OpenMetrics => out,
            Format::Text => to_text(&out),
        }
    }
}

const TRANSPORTS: [(Transport, &str); 2] = [(Transport::Udp, "udp"), (Transport::Tcp, "tcp")];
const STATES: [State; 4] = [State::Up, State::Degraded, State::Down, State::Unknown];

/// Picks one per-transport counter of a server's stats.
type Counts = fn(&ServerHealth) -> &PerTransport;

/// Reads a daemon's counters at each scrape.
struct Counters(Arc<Daemon>);

/// Written by hand: the crate requires `Debug` of a collector, and a derived one would print the
/// whole daemon, which costs the release binary some 70 KB of formatting code.
impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

/// Every server of the runtime in force, once each, with the name of the first route that has
/// it and its address as a label.
fn servers(runtime: &Runtime) -> Vec<(&str, String, &ServerHealth)> {
    runtime
        .servers()
        .into_iter()
        .map(|(group, server)| (group.name.as_str(), server.addr.to_string(), &**server))
        .collect()
}

/// One sample of `family` with `labels`.
fn sample(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    metric: impl EncodeMetric,
) -> fmt::Result {
    metric.encode(family.encode_family(labels)?)
}

/// One counter of `family` with `labels`.
fn counter(family: &mut MetricEncoder, labels: &impl EncodeLabelSet, value: u64) -> fmt::Result {
    sample(family, labels, ConstCounter::new(value))
}

/// One counter of `family` per transport, with `labels` and then `transport`.
fn per_transport(
    family: &mut MetricEncoder,
    labels: &[(&str, &str)],
    counts: &PerTransport,
) -> fmt::Result {
    for (transport, t) in TRANSPORTS {
        let labels = (labels, [("transport", t)]);
        counter(family, &labels, counts.of(transport).get())?;
    }
    Ok(())
}

/// A family of one sample without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Counters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let daemon = &*self.0;
        let runtime = daemon.runtime();
        routes(&mut encoder, &runtime)?;
        cache(&mut encoder, daemon)?;
        refusals(&mut encoder, daemon)?;
        let servers = servers(&runtime);
        exchanges(&mut encoder, &servers)?;
        probes(&mut encoder, &servers)?;
        overall(&mut encoder, daemon, &runtime)
    }
}

/// The labels `route` and `server` of each server, with its health.
fn labelled<'a>(
    servers: &'a [(&'a str, String, &'a ServerHealth)],
) -> impl Iterator<Item = ([(&'a str, &'a str); 2], &'a ServerHealth)> + Clone {
    servers
        .iter()
        .map(|(route, addr, s)| ([("route", *route), ("server", addr.as_str())], *s))
}

/// Per route: the answers sent by transport and rcode, and the failovers.
fn routes(encoder: &mut DescriptorEncoder, runtime: &Runtime) -> fmt::Result {
    use MetricType::Counter;
    let mut family = encoder.encode_descriptor(
        "queries",
        "Answers sent to clients, by route, transport and response code.",
        None,
        Counter,
    )?;
    for group in runtime.groups() {
        for (transport, t) in TRANSPORTS {
            for (i, rcode) in RCODES.iter().enumerate() {
                let labels = [("route", &*group.name), ("transport", t), ("rcode", rcode)];
                counter(&mut family, &labels, group.stats.answers(transport, i))?;
            }
        }
    }
    let mut family = encoder.encode_descriptor(
        "failovers",
        "Queries answered by a server other than the first one tried, by route.",
        None,
        Counter,
    )?;
    for group in runtime.groups() {
        let labels = [("route", &*group.name)];
        counter(&mut family, &labels, group.stats.failovers.get())?;
    }
    Ok(())
}

/// The cache's hits, misses, stale answers and size.
fn cache(encoder: &mut DescriptorEncoder, daemon: &Daemon) -> fmt::Result {
    let handler = daemon.handler();
    let metrics = &handler.shared().metrics;
    for (name, help, count) in [
        (
            "cache_hits",
            "Answers served from the cache.",
            &metrics.cache_hits,
        ),
        (
            "cache_misses",
            "Questions not found fresh in the cache and asked upstream.",
            &metrics.cache_misses,
        ),
        (
            "cache_stale_answers",
            "Expired answers served because every server of the route failed.",
            &metrics.stale_answers,
        ),
    ] {
        single(encoder, name, help, ConstCounter::new(count.get()))?;
    }
    let entries = ConstGauge::new(handler.shared().cache.len());
    single(encoder, "cache_entries", "Answers in the cache.", entries)?;
    Ok(())
}

/// Queries refused or dropped: over a client's rate limit, by the ACL, when busy.
fn refusals(encoder: &mut DescriptorEncoder, daemon: &Daemon) -> fmt::Result {
    use MetricType::Counter;
    let handler = daemon.handler();
    let metrics = &handler.shared().metrics;
    let limiter = handler.limiter();
    let mut family = encoder.encode_descriptor(
        "rate_limited",
        "Queries over a client's rate limit, by what was done with them.",
        None,
        Counter,
    )?;
    for (action, count) in [
        ("refused", &limiter.stats.refused),
        ("dropped", &limiter.stats.dropped),
    ] {
        counter(&mut family, &[("action", action)], count.get())?;
    }
    let mut family = encoder.encode_descriptor(
            "refused",
            "Queries refused: from a client outside server.allow (acl), or past server.max_inflight (busy).",
            None,
            Counter,
        )?;
    for (reason, count) in [
        ("acl", &metrics.refused_acl),
        ("busy", &metrics.refused_busy),
    ] {
        counter(&mut family, &[("reason", reason)], count.get())?;
    }
    Ok(())
}

/// Per upstream server: the exchanges, their failures, TCP retries and latency.
fn exchanges(
    encoder: &mut DescriptorEncoder,
    servers: &[(&str, String, &ServerHealth)],
) -> fmt::Result {
    use MetricType::{Counter, Histogram};
    let each = labelled(servers);
    let exchanges: [(&str, &str, Counts); 3] = [
        (
            "upstream_queries",
            "Queries sent to an upstream server, by transport.",
            |s| &s.stats.queries,
        ),
        (
            "upstream_errors",
            "Exchanges with an upstream server that failed other than by a timeout.",
            |s| &s.stats.errors,
        ),
        (
            "upstream_timeouts",
            "Exchanges with an upstream server that got no reply within forward.timeout.",
            |s| &s.stats.timeouts,
        ),
    ];
    for (name, help, counts) in exchanges {
        let mut family = encoder.encode_descriptor(name, help, None, Counter)?;
        for (labels, s) in each.clone() {
            per_transport(&mut family, &labels, counts(s))?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "upstream_tcp_retries",
        "Truncated UDP answers retried over TCP.",
        None,
        Counter,
    )?;
    for (labels, s) in each.clone() {
        counter(&mut family, &labels, s.stats.tc_retries.get())?;
    }
    let mut family = encoder.encode_descriptor(
        "upstream_latency",
        "Time to an accepted reply from an upstream server.",
        Some(&Unit::Seconds),
        Histogram,
    )?;
    for (labels, s) in each.clone() {
        // The snapshot is cumulative; the encoder takes each bucket's own count.
        let (cumulative, sum) = s.stats.latency.snapshot();
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .into_iter()
            .chain([f64::INFINITY])
            .zip(cumulative)
            .map(|(bound, total)| (bound, total - std::mem::replace(&mut below, total)))
            .collect();
        let count = cumulative[LATENCY_BOUNDS.len()];
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// Per upstream server: the health probes, the state and the last probe's latency.
fn probes(
    encoder: &mut DescriptorEncoder,
    servers: &[(&str, String, &ServerHealth)],
) -> fmt::Result {
    use MetricType::{Counter, Gauge};
    let each = labelled(servers);
    let mut family = encoder.encode_descriptor(
        "probes",
        "Health-probe rounds of an upstream server, by transport and result.",
        None,
        Counter,
    )?;
    for ([route, server], s) in each.clone() {
        let pass = [route, server, ("result", "pass")];
        per_transport(&mut family, &pass, &s.stats.probe_passes)?;
        let fail = [route, server, ("result", "fail")];
        per_transport(&mut family, &fail, &s.stats.probe_failures)?;
    }
    let mut family = encoder.encode_descriptor(
        "upstream_state",
        "1 for the state an upstream server is in over a transport (up, degraded, down, unknown).",
        None,
        Gauge,
    )?;
    for ([route, server], s) in each.clone() {
        for (transport, t) in TRANSPORTS {
            let now = s.track(transport).state();
            for state in STATES {
                let labels = [route, server, ("transport", t), ("state", state.as_str())];
                sample(
                    &mut family,
                    &labels,
                    ConstGauge::new(u32::from(now == state)),
                )?;
            }
        }
    }
    let mut family = encoder.encode_descriptor(
        "upstream_probe_latency",
        "The last health probe's time to answer, by transport.",
        Some(&Unit::Seconds),
        Gauge,
    )?;
    for ([route, server], s) in each {
        for (transport, t) in TRANSPORTS {
            let latency = ConstGauge::new(s.track(transport).latency().as_secs_f64());
            sample(&mut family, &[route, server, ("transport", t)], latency)?;
        }
    }
    Ok(())
}

/// The daemon as a whole: the status verdict, the prefix change, the build.
fn overall(encoder: &mut DescriptorEncoder, daemon: &Daemon, runtime: &Runtime) -> fmt::Result {
    use MetricType::Gauge;
    let handler = daemon.handler();
    let healthy = ConstGauge::new(u32::from(view::status(daemon).ok));
    single(
        encoder,
        "healthy",
        "1 when the status verdict is all good (GET /health answers 200), else 0.",
        healthy,
    )?;
    let prefix_changed = ConstGauge::new(u32::from(handler.prefixes().get().changed()));
    single(
            encoder,
            "prefix_changed",
            "1 when the host's global IPv6 prefixes differ from those at start: line authentication must be done again (FAQ Q18), else 0.",
            prefix_changed,
        )?;
    let mut family = encoder.encode_descriptor(
        "build_info",
        "The running version and area, as labels; always 1.",
        None,
        Gauge,
    )?;
    let area = runtime.area().to_string();
    let labels = [("version", env!("CARGO_PKG_VERSION")), ("area", &area)];
    sample(&mut family, &labels, ConstGauge::new(1u32))
}
