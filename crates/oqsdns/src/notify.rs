//! systemd notification (`Type=notify`): READY once every socket is bound, STOPPING on shutdown,
//! and WATCHDOG pings when the unit sets `WatchdogSec`. Without `NOTIFY_SOCKET` these do nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Tells systemd the daemon is serving.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Tells systemd the configuration is being reloaded; `reloaded` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Ends a reload begun by `reloading`.
pub fn reloaded() {
    ready();
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        debug!(%error, "sd_notify failed");
    }
}

/// Pings the watchdog at half its interval until `shutdown`, if systemd asked for it.
pub async fn watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}
