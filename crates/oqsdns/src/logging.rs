//! Logging: structured records to the systemd journal when stderr is connected to it
//! (`JOURNAL_STREAM`), readable lines on stderr otherwise. `RUST_LOG` sets the level (default `info`)
//! as a level (`debug`) or `target=level` pairs (`oqsdns_core=debug,info`); not `EnvFilter`, whose
//! span and field matching pulls a regex engine into the binary for no use here.
//!
//! For the journal, each tracing event becomes a `log::Record` whose key-values are the event's
//! fields, handed to `systemd_journal_logger::JournalLog`: `warn!(route = "nw-base", ...)` shows up
//! as the journal field `ROUTE=nw-base`, searchable with `journalctl ROUTE=nw-base`.
//!
//! The text a person reads (the journal's MESSAGE, the stderr line) is the event's message, which
//! names what happened, to what and why, followed by `key=value` for any field whose value the
//! message does not already show: a fact is never only in a field nobody sees in `journalctl`.
//! Colour on stderr only when it is a terminal: `logread` and log files show escape codes raw.

use std::fmt::{self, Write as _};
use std::io::{IsTerminal as _, Write as _};

use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber; a second call does nothing.
pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = JournalLog::new() {
            let _ = tracing_subscriber::registry()
                .with(JournalLayer { journal }.with_filter(filter))
                .try_init();
            return;
        }
    }
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::registry()
        .with(StderrLayer { ansi }.with_filter(filter))
        .try_init();
}

/// The filter `RUST_LOG` asks for; `info` when it is unset, empty or not understood.
fn filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .filter(|spec| !spec.trim().is_empty())
        .and_then(|spec| spec.trim().parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO))
}

/// Writes every event to stderr as one line: time, level, text.
struct StderrLayer {
    /// Colour the level (stderr is a terminal).
    ansi: bool,
}

impl<S: Subscriber> Layer<S> for StderrLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut time = String::new();
        let _ = SystemTime.format_time(&mut Writer::new(&mut time));
        let line = stderr_line(&time, *event.metadata().level(), &fields, self.ansi);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// `2026-12-01T09:00:00.000000Z  WARN upstream ... is down over UDP: timed out\n`.
fn stderr_line(time: &str, level: Level, fields: &Fields, ansi: bool) -> String {
    let colour = match level {
        Level::ERROR => "31",
        Level::WARN => "33",
        Level::INFO => "32",
        Level::DEBUG => "34",
        Level::TRACE => "35",
    };
    let level = format!("{level:>5}");
    let level = if ansi {
        format!("\x1b[{colour}m{level}\x1b[0m")
    } else {
        level
    };
    format!("{time} {level} {}\n", fields.text())
}

/// Sends every event to the journal with its fields as journal fields.
struct JournalLayer {
    journal: JournalLog,
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let kvs: Vec<(&str, &str)> = fields.pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let _ = self.journal.journal_send(
            &log::Record::builder()
                .args(format_args!("{}", fields.text()))
                .level(log_level(*meta.level()))
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .key_values(&kvs)
                .build(),
        );
    }
}

fn log_level(level: Level) -> log::Level {
    match level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

/// An event's message and its other fields as text.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }
}

impl Fields {
    /// The message, then ` key=value` for each field whose value it does not contain (in any case:
    /// `over UDP` shows `transport=udp`).
    fn text(&self) -> String {
        let mut text = self.message.clone();
        let lower = self.message.to_lowercase();
        for (key, value) in &self.pairs {
            if value.is_empty() || lower.contains(&value.to_lowercase()) {
                continue;
            }
            if value.contains(char::is_whitespace) {
                let _ = write!(text, " {key}={value:?}");
            } else {
                let _ = write!(text, " {key}={value}");
            }
        }
        text
    }

    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs.push((field.name(), value.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the journal layer would send, without a journal.
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<Fields>>>);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields);
        }
    }

    #[test]
    fn event_fields_become_key_values() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let server = std::net::SocketAddr::from(([192, 0, 2, 1], 53));
            tracing::warn!(route = "nw-base", %server, transport = "tcp", "upstream timed out");
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].message, "upstream timed out");
        assert_eq!(
            seen[0].pairs,
            [
                ("route", "nw-base".to_owned()),
                ("server", "192.0.2.1:53".to_owned()),
                ("transport", "tcp".to_owned()),
            ]
        );
    }

    fn capture(emit: impl FnOnce()) -> Vec<Fields> {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        seen
    }

    /// The facts are in the text; the fields stay for the journal's search.
    #[test]
    fn the_text_names_the_facts() {
        let seen = capture(|| {
            let server = std::net::SocketAddr::from((
                std::net::Ipv6Addr::new(0x2404, 0x1a8, 0xf583, 0xd00, 0, 0, 0x53, 1),
                53,
            ));
            let (route, transport, reason) = ("nw-base", "udp", "timed out");
            tracing::warn!(%server, route, transport, reason,
                "upstream {server} ({route}) is down over {}: {reason}", transport.to_uppercase());
        });
        assert_eq!(
            seen[0].text(),
            "upstream [2404:1a8:f583:d00::53:1]:53 (nw-base) is down over UDP: timed out"
        );
        assert_eq!(seen[0].pairs.len(), 4);
        assert_eq!(
            seen[0].pairs[0],
            ("server", "[2404:1a8:f583:d00::53:1]:53".to_owned())
        );
    }

    /// A field the message leaves out is appended, quoted when it has spaces.
    #[test]
    fn facts_missing_from_the_message_are_appended() {
        let seen = capture(|| {
            tracing::warn!(
                client = "192.0.2.7",
                limited = 12,
                error = "no route to host",
                "sent 12 replies"
            );
        });
        assert_eq!(
            seen[0].text(),
            "sent 12 replies client=192.0.2.7 error=\"no route to host\""
        );
    }

    #[test]
    fn rust_log_sets_the_level() {
        let cases: &[(Option<&str>, &str, Level, bool)] = &[
            (None, "oqsdns_core", Level::INFO, true),
            (None, "oqsdns_core", Level::DEBUG, false),
            (Some(""), "oqsdns", Level::INFO, true),
            (Some(""), "oqsdns", Level::DEBUG, false),
            (Some("debug"), "oqsdns_core", Level::DEBUG, true),
            (Some("debug"), "oqsdns_core", Level::TRACE, false),
            (Some("warn"), "oqsdns", Level::INFO, false),
            (Some("warn"), "oqsdns", Level::WARN, true),
            (Some("oqsdns_core=debug"), "oqsdns_core", Level::DEBUG, true),
            (Some("oqsdns_core=debug"), "hyper", Level::ERROR, false),
            (Some("oqsdns=debug,warn"), "oqsdns_core", Level::DEBUG, true),
            (Some("oqsdns=debug,warn"), "hyper", Level::INFO, false),
            (Some("oqsdns=debug,warn"), "hyper", Level::WARN, true),
            // Not understood: the default, not silence.
            (Some("oqsdns=loud"), "oqsdns", Level::INFO, true),
            (Some("oqsdns=loud"), "oqsdns", Level::DEBUG, false),
        ];
        for &(rust_log, target, level, enabled) in cases {
            assert_eq!(
                filter(rust_log).would_enable(target, &level),
                enabled,
                "RUST_LOG={rust_log:?}: {target} at {level}"
            );
        }
    }

    #[test]
    fn no_escape_codes_unless_a_terminal() {
        let seen = capture(|| tracing::error!("cannot listen on 127.0.0.1:53 (udp)"));
        let plain = stderr_line("T", Level::ERROR, &seen[0], false);
        assert_eq!(plain, "T ERROR cannot listen on 127.0.0.1:53 (udp)\n");
        let coloured = stderr_line("T", Level::ERROR, &seen[0], true);
        assert_eq!(
            coloured,
            "T \x1b[31mERROR\x1b[0m cannot listen on 127.0.0.1:53 (udp)\n"
        );
    }
}
