//! Joins identical queries in flight: while one upstream query for a key is under way, the
//! others wait for its result instead of sending their own (100 identical misses, one packet).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::cache::Key;
use crate::hashing::Keyed;

/// What the leader found: the upstream reply, or `None` when every server failed.
pub type Found = Option<Vec<u8>>;

/// What the leader passes on to the queries that joined it: its reply, shared.
type Passed = Option<Arc<[u8]>>;

/// Each key under way, with the channel of the queries that joined it: made by the first that
/// joins, so that a query nobody joins (most misses) makes none, and its end wakes nobody.
type Waiters = Mutex<HashMap<Key, Option<watch::Sender<Option<Passed>>>, Keyed>>;

/// The queries under way.
#[derive(Debug)]
pub struct Inflight {
    waiting: Waiters,
}

impl Default for Inflight {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(HashMap::with_hasher(crate::hashing::keyed())),
        }
    }
}

/// Removes the leader's entry even if its task is cancelled (the joined queries then see the
/// channel closed, and ask themselves).
struct Leader<'a> {
    waiting: &'a Waiters,
    key: Option<&'a [u8]>,
}

impl Leader<'_> {
    /// Takes the entry out of the table, with the channel of those that joined, if any.
    fn finish(&mut self) -> Option<watch::Sender<Option<Passed>>> {
        let key = self.key.take()?;
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.remove(key).flatten()
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Inflight {
    /// Runs `work` for `key` unless the same key is already under way, in which case its result
    /// is awaited instead. If that leader goes away without a result, `work` runs after all.
    pub async fn run<F: Future<Output = Found>>(
        &self,
        key: &Key,
        work: impl FnOnce() -> F,
    ) -> Found {
        let joined = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.get_mut(&key[..]) {
                Some(Some(tx)) => Some(tx.subscribe()),
                Some(joiners) => {
                    let (tx, rx) = watch::channel(None);
                    *joiners = Some(tx);
                    Some(rx)
                }
                None => {
                    waiting.insert(key.clone(), None);
                    None
                }
            }
        };
        match joined {
            None => {
                let mut leader = Leader {
                    waiting: &self.waiting,
                    key: Some(key),
                };
                // Boxed: the work (the failover over a group's servers) is half a kilobyte of
                // state, and in line it would take the upstream task past 1 KiB, the largest
                // allocation glibc's per-thread cache serves (bench/run.sh: malloc's slow path
                // and its free-list consolidation were 3 % of a cache miss's CPU).
                let found = Box::pin(work()).await;
                // Out of the table first: from then on no query can join, and those that did
                // hold a receiver.
                if let Some(tx) = leader.finish() {
                    let _ = tx.send(Some(found.as_deref().map(Arc::from)));
                }
                found
            }
            Some(mut rx) => {
                // The value is `Some` once sent: its reply (or `None`, every server failed).
                let led = rx.wait_for(Option::is_some).await.map(|passed| {
                    passed
                        .as_ref()
                        .and_then(Option::as_deref)
                        .map(<[u8]>::to_vec)
                });
                match led {
                    Ok(found) => found,
                    Err(_) => Box::pin(work()).await, // the leader was cancelled
                }
            }
        }
    }

    /// How many keys are under way.
    pub fn len(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// Whether nothing is under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    fn found(byte: u8) -> Found {
        Some(vec![byte])
    }

    fn key(name: &str) -> Key {
        Key::from(name.as_bytes())
    }

    #[tokio::test]
    async fn identical_queries_under_way_are_asked_once() {
        let inflight = Inflight::default();
        let asked = AtomicUsize::new(0);
        let (release, released) = oneshot::channel::<()>();
        let work = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            released.await.unwrap();
            found(7)
        };
        let k = key("k");
        let leader = inflight.run(&k, work);
        let joiners = futures_util::future::join_all((0..3).map(|_| {
            inflight.run(&k, || async {
                asked.fetch_add(1, Ordering::SeqCst);
                found(9)
            })
        }));
        let release = async {
            // The leader and the three joiners are under way once each has been polled.
            tokio::task::yield_now().await;
            assert_eq!(inflight.len(), 1);
            // The table holds the question's own key, not a copy of it.
            assert_eq!(std::sync::Arc::strong_count(&k), 2);
            release.send(()).unwrap();
        };
        let (led, joined, ()) = tokio::join!(leader, joiners, release);
        assert_eq!(led, found(7));
        assert_eq!(joined, vec![found(7); 3]);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(inflight.is_empty());
    }

    #[tokio::test]
    async fn a_query_nobody_joined_leaves_nothing_behind() {
        let inflight = Inflight::default();
        let a = key("a");
        assert_eq!(inflight.run(&a, || async { found(1) }).await, found(1));
        assert_eq!(inflight.run(&a, || async { None }).await, None);
        assert_eq!(std::sync::Arc::strong_count(&a), 1);
        assert!(inflight.is_empty());
    }

    #[tokio::test]
    async fn when_the_leader_goes_away_those_that_joined_ask_themselves() {
        let inflight = Inflight::default();
        let k = key("k");
        let mut leader = Box::pin(inflight.run(&k, std::future::pending::<Found>));
        // Polled once: the leader is under way.
        assert!(futures_util::poll!(leader.as_mut()).is_pending());
        let mut joiner = Box::pin(inflight.run(&k, || async { found(2) }));
        assert!(futures_util::poll!(joiner.as_mut()).is_pending());
        drop(leader);
        assert!(inflight.is_empty());
        assert_eq!(joiner.await, found(2));
        assert!(inflight.is_empty());
    }
}
