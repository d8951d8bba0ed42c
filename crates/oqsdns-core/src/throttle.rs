//! A lock-free gate that opens at most once per interval: for repeated warnings and re-reads.
//! It uses 32-bit atomics so it builds on 32-bit routers (mipsel has no 64-bit atomics).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

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

/// A value read from the host (such as its interfaces' addresses), read again when a lookup
/// misses, at most once per interval: lock-free on the query path.
#[derive(Debug)]
pub struct Reread<T> {
    value: ArcSwap<T>,
    read: fn() -> T,
    gate: Throttle,
}

impl<T> Reread<T> {
    /// Reads the value now; again on the first miss, then at most once per `interval`.
    pub fn new(read: fn() -> T, interval: Duration) -> Self {
        Self {
            value: ArcSwap::from_pointee(read()),
            read,
            gate: Throttle::new(interval),
        }
    }

    /// Whether `test` holds for the value; when it does not, the value is read again (unless
    /// that was done within the interval) and tested once more.
    pub fn holds(&self, test: impl Fn(&T) -> bool) -> bool {
        if test(&self.value.load()) {
            return true;
        }
        if !self.gate.ready() {
            return false;
        }
        self.value.store(Arc::new((self.read)()));
        test(&self.value.load())
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

    static READS: AtomicU32 = AtomicU32::new(0);

    fn count() -> u32 {
        READS.fetch_add(1, Ordering::Relaxed) + 1
    }

    #[test]
    fn a_miss_reads_again_at_most_once_per_interval() {
        let value = Reread::new(count, Duration::from_secs(60));
        assert_eq!(READS.load(Ordering::Relaxed), 1, "read at once");
        assert!(value.holds(|&n| n == 1), "a hit reads nothing");
        assert!(value.holds(|&n| n == 2), "the first miss reads again");
        assert!(!value.holds(|&n| n == 3), "not twice within the interval");
        assert_eq!(READS.load(Ordering::Relaxed), 2);
    }
}
