//! A lock-free gate that opens at most once per interval: for repeated warnings and re-reads.
//! It uses 32-bit atomics so it builds on 32-bit routers (mipsel has no 64-bit atomics).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Opens at most once per interval.
#[derive(Debug)]
pub struct Throttle {
    epoch: Instant,
    interval_ms: u32,
    last_ms: AtomicU32,
}

impl Throttle {
    /// A gate that opens at once and then at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        let interval_ms = interval.as_millis().min(u32::MAX as u128 / 2) as u32;
        Self {
            epoch: Instant::now(),
            interval_ms,
            last_ms: AtomicU32::new(0u32.wrapping_sub(interval_ms)),
        }
    }

    /// True if the interval has passed since the gate last opened; then it opens now.
    pub fn ready(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u32;
        let last = self.last_ms.load(Ordering::Relaxed);
        now.wrapping_sub(last) >= self.interval_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_per_interval() {
        let gate = Throttle::new(Duration::from_secs(60));
        assert!(gate.ready());
        assert!(!gate.ready());
        let open = Throttle::new(Duration::ZERO);
        assert!(open.ready() && open.ready());
    }
}
