//! systemd notification (`Type=notify`): READY once every socket is bound, STOPPING on shutdown,
//! and WATCHDOG pings when the unit sets `WatchdogSec`. Without `NOTIFY_SOCKET` these do nothing.

use std::net::SocketAddr;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Tells systemd the daemon is serving, and on which addresses (shown by `systemctl status`).
pub fn ready(addrs: &[SocketAddr]) {
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let status = format!("serving DNS on {}", addrs.join(" "));
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Tells systemd the configuration is being reloaded; `reloaded` ends it.
pub fn reloading() {
    match monotonic_usec_now() {
        Some(now) => send(&[
            NotifyState::Reloading,
            NotifyState::MonotonicUsec(now.into()),
        ]),
        None => send(&[NotifyState::Reloading]),
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd wants with RELOADING=1 (`Type=notify-reload`).
///
/// Not sd-notify's `NotifyState::monotonic_usec_now`: 0.5 multiplies `tv_sec` as `time_t`, which
/// is 32-bit on 32-bit glibc (armv7, mipsel) and overflows after 2147 s (~36 min) of uptime: a
/// panic in a debug build (in the signal task: SIGHUP and SIGTERM ignored afterwards), a wrong
/// value in release.
fn monotonic_usec_now() -> Option<u64> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).ok()?;
    Some(monotonic_usec(now.tv_sec(), now.tv_nsec()))
}

/// A `timespec` of `CLOCK_MONOTONIC` in microseconds, widened before multiplying. Generic over
/// the field types (`time_t` and `c_long`: `i32` on 32-bit targets, `i64` on 64-bit ones; and
/// `time_t` is deprecated on musl, which is moving it to 64 bits).
fn monotonic_usec(sec: impl Into<i64>, nsec: impl Into<i64>) -> u64 {
    let sec = u64::try_from(sec.into()).unwrap_or(0);
    let nsec = u64::try_from(nsec.into()).unwrap_or(0);
    sec.saturating_mul(1_000_000).saturating_add(nsec / 1_000)
}

/// Ends a reload begun by `reloading`.
pub fn reloaded() {
    send(&[NotifyState::Ready]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reload_time_is_right_past_36_minutes_of_uptime() {
        // 2^31 microseconds is 35 min 47 s: past it a 32-bit `time_t * 1_000_000` overflows.
        // The fields as a 32-bit target has them.
        assert_eq!(monotonic_usec(2147_i32, 483_647_000_i32), 2_147_483_647);
        assert_eq!(monotonic_usec(2148_i32, 0_i32), 2_148_000_000);
        assert_eq!(monotonic_usec(3 * 3600_i32, 0_i32), 10_800_000_000);
        // Up for a year, half a second past the second.
        assert_eq!(
            monotonic_usec(365 * 86_400_i32, 500_000_999_i32),
            31_536_000_500_000
        );
        // The largest 32-bit `time_t`: 68 years.
        assert_eq!(monotonic_usec(i32::MAX, 0_i32), 2_147_483_647_000_000);
        // What systemd reads.
        let state = NotifyState::MonotonicUsec(monotonic_usec(3 * 3600_i32, 1_000_i32).into());
        assert_eq!(state.to_string(), "MONOTONIC_USEC=10800000001");
        // And as a 64-bit target has them.
        let state = NotifyState::MonotonicUsec(monotonic_usec(3 * 3600_i64, 1_000_i64).into());
        assert_eq!(state.to_string(), "MONOTONIC_USEC=10800000001");
    }

    #[test]
    fn the_reload_time_is_the_monotonic_clock() {
        let before = std::time::Instant::now();
        let first = monotonic_usec_now().unwrap();
        let second = monotonic_usec_now().unwrap();
        assert!(first > 0 && second >= first, "{first} {second}");
        // Within the time between the two reads (CLOCK_MONOTONIC is what `Instant` reads on Linux).
        assert!(
            u128::from(second - first) <= before.elapsed().as_micros() + 1,
            "{first} {second}"
        );
    }
}
