//! Logging: structured records to the systemd journal when stderr is connected to it
//! (`JOURNAL_STREAM`), readable text on stderr otherwise. `RUST_LOG` sets the level (default `info`).
//!
//! For the journal, each tracing event becomes a `log::Record` whose key-values are the event's
//! fields, handed to `systemd_journal_logger::JournalLog`: `warn!(route = "nw-base", ...)` shows up
//! as the journal field `ROUTE=nw-base`, searchable with `journalctl ROUTE=nw-base`.

use std::fmt::{self, Write as _};

use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call does nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = JournalLog::new() {
            let _ = tracing_subscriber::registry()
                .with(JournalLayer { journal }.with_filter(filter))
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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
                .args(format_args!("{}", fields.message))
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
}
