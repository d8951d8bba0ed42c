//! The two formats `/metrics` answers in, which one a request asks for, and the conversion from
//! the one the `prometheus-client` crate writes (OpenMetrics) to the other (text 0.0.4).
//!
//! Why both: the crate writes only OpenMetrics, which a Prometheus server asks for and reads.
//! `promtool check metrics` (2.42, in Debian 12) and other readers of the text format 0.0.4 do
//! not: an OpenMetrics counter family `foo` has samples `foo_total`, so promtool finds no
//! `# HELP` for `foo_total` and rejects it ("no help text"). The crate has no option to write
//! 0.0.4 or to name the family `foo_total` (client_rust issue 51).

/// The formats `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0, as the crate writes it.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format for a request with these `Accept` header values: OpenMetrics when one of them
    /// lists `application/openmetrics-text` (and not with `q=0`), else the text format.
    pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Self {
        let listed = accept
            .into_iter()
            .flat_map(|value| value.split(','))
            .any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                media.eq_ignore_ascii_case("application/openmetrics-text") && !parts.any(refuses)
            });
        if listed {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Whether a media range's parameter is a quality of 0 (`q=0`, `q=0.0`...): "not acceptable".
fn refuses(param: &str) -> bool {
    let Some(q) = param
        .strip_prefix("q=")
        .or_else(|| param.strip_prefix("Q="))
    else {
        return false;
    };
    q.strip_prefix('0').is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix('.')
                .is_some_and(|d| d.bytes().all(|b| b == b'0'))
    })
}

/// The Prometheus text format 0.0.4 of `openmetrics`, an exposition the crate wrote: the
/// `# HELP` and `# TYPE` lines of a counter family `foo` name it `foo_total`, as its samples are
/// named; the `# UNIT` and `# EOF` lines are dropped. Nothing else changes: the rest means the
/// same in both formats for what the exporter writes (counters, gauges and histograms, without
/// exemplars, timestamps or `_created` samples).
pub fn to_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 12 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor {
            Some((keyword, rest)) => {
                let name = rest.split(' ').next().unwrap_or_default();
                out.push_str(keyword);
                out.push_str(name);
                if counters.contains(&name) {
                    out.push_str("_total");
                }
                out.push_str(&rest[name.len()..]);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::{Registry, Unit};

    /// A counter family, a gauge whose name starts like the counter's, and a histogram in
    /// seconds, written as the exporter writes its own; one label value has quotes, a backslash
    /// and a newline.
    #[derive(Debug)]
    struct Example;

    impl Collector for Example {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            use MetricType::{Counter, Gauge, Histogram};
            let mut family =
                encoder.encode_descriptor("answers", "Answers, by route.", None, Counter)?;
            for (route, n) in [("a", 2u64), ("say \"hi\"\\\n", 1)] {
                ConstCounter::new(n).encode(family.encode_family(&[("route", route)])?)?;
            }
            let cached = encoder.encode_descriptor(
                "answers_cached",
                "Answers in the cache.",
                None,
                Gauge,
            )?;
            ConstGauge::new(7).encode(cached)?;
            let buckets = [(0.5, 1), (1.0, 0), (f64::INFINITY, 1)];
            encoder
                .encode_descriptor(
                    "latency",
                    "Time to answer.",
                    Some(&Unit::Seconds),
                    Histogram,
                )?
                .encode_histogram::<NoLabelSet>(3.25, 2, &buckets, None)
        }
    }

    fn openmetrics() -> String {
        let mut registry = Registry::with_prefix("x");
        registry.register_collector(Box::new(Example));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn the_crate_writes_what_the_conversion_expects() {
        assert_eq!(
            openmetrics(),
            "# HELP x_answers Answers, by route.\n\
             # TYPE x_answers counter\n\
             x_answers_total{route=\"a\"} 2\n\
             x_answers_total{route=\"say \\\"hi\\\"\\\\\\n\"} 1\n\
             # HELP x_answers_cached Answers in the cache.\n\
             # TYPE x_answers_cached gauge\n\
             x_answers_cached 7\n\
             # HELP x_latency_seconds Time to answer.\n\
             # TYPE x_latency_seconds histogram\n\
             # UNIT x_latency_seconds seconds\n\
             x_latency_seconds_sum 3.25\n\
             x_latency_seconds_count 2\n\
             x_latency_seconds_bucket{le=\"0.5\"} 1\n\
             x_latency_seconds_bucket{le=\"1.0\"} 1\n\
             x_latency_seconds_bucket{le=\"+Inf\"} 2\n\
             # EOF\n"
        );
    }

    #[test]
    fn counters_take_total_in_help_and_type_and_unit_and_eof_go() {
        assert_eq!(
            to_text(&openmetrics()),
            "# HELP x_answers_total Answers, by route.\n\
             # TYPE x_answers_total counter\n\
             x_answers_total{route=\"a\"} 2\n\
             x_answers_total{route=\"say \\\"hi\\\"\\\\\\n\"} 1\n\
             # HELP x_answers_cached Answers in the cache.\n\
             # TYPE x_answers_cached gauge\n\
             x_answers_cached 7\n\
             # HELP x_latency_seconds Time to answer.\n\
             # TYPE x_latency_seconds histogram\n\
             x_latency_seconds_sum 3.25\n\
             x_latency_seconds_count 2\n\
             x_latency_seconds_bucket{le=\"0.5\"} 1\n\
             x_latency_seconds_bucket{le=\"1.0\"} 1\n\
             x_latency_seconds_bucket{le=\"+Inf\"} 2\n"
        );
    }

    #[test]
    fn sample_lines_are_left_alone() {
        // A label value that reads like a descriptor, and a counter whose HELP comes after its
        // TYPE: only the descriptor lines of counter families change.
        let om = "# TYPE c counter\n\
                  # HELP c Help with c in it.\n\
                  c_total{l=\"# TYPE c counter\"} 1\n\
                  # HELP g\n\
                  # TYPE g gauge\n\
                  g{l=\"\\\"c\\\"\"} 2\n\
                  # EOF\n";
        assert_eq!(
            to_text(om),
            "# TYPE c_total counter\n\
             # HELP c_total Help with c in it.\n\
             c_total{l=\"# TYPE c counter\"} 1\n\
             # HELP g\n\
             # TYPE g gauge\n\
             g{l=\"\\\"c\\\"\"} 2\n"
        );
    }

    #[test]
    fn openmetrics_only_when_accept_lists_it() {
        // What Prometheus 2.42 sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, format) in [
            (&[prometheus][..], Format::OpenMetrics),
            (
                &["text/plain", "Application/OpenMetrics-Text"],
                Format::OpenMetrics,
            ),
            (
                &["text/plain;q=0.5, application/openmetrics-text ; q=0.3"],
                Format::OpenMetrics,
            ),
            (&[], Format::Text),
            (&["*/*"], Format::Text),
            (&["text/plain;version=0.0.4"], Format::Text),
            (&["application/openmetrics-text;q=0"], Format::Text),
            (
                &["application/openmetrics-text; Q=0.000, text/plain"],
                Format::Text,
            ),
            (&["application/openmetrics-textual"], Format::Text),
            (
                &["application/openmetrics-text;q=0.001"],
                Format::OpenMetrics,
            ),
            (
                &["application/openmetrics-text;q=0.5;x=0"],
                Format::OpenMetrics,
            ),
        ] {
            assert_eq!(
                Format::negotiate(accept.iter().copied()),
                format,
                "{accept:?}"
            );
        }
    }
}
