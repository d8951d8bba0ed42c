//! Joins identical queries in flight: while one upstream query for a key is under way, the
//! others wait for its result instead of sending their own (100 identical misses, one packet).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::cache::Key;

/// What the leader found: the upstream reply, or `None` when every server failed.
pub type Found = Option<Arc<[u8]>>;

type Waiters = Mutex<HashMap<Key, watch::Receiver<Option<Found>>>>;

/// The queries under way.
#[derive(Debug, Default)]
pub struct Inflight {
    waiting: Waiters,
}

/// Removes the leader's entry even if its task is cancelled.
struct Leader<'a> {
    waiting: &'a Waiters,
    key: Option<&'a [u8]>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
        }
    }
}

impl Inflight {
    /// Runs `work` for `key` unless the same key is already under way, in which case its result
    /// is awaited instead. If that leader goes away without a result, `work` runs after all.
    pub async fn run<F: Future<Output = Found>>(
        &self,
        key: &[u8],
        work: impl FnOnce() -> F,
    ) -> Found {
        let joined = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.get(key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    waiting.insert(key.into(), rx);
                    Ok(tx)
                }
            }
        };
        match joined {
            Ok(tx) => {
                let leader = Leader {
                    waiting: &self.waiting,
                    key: Some(key),
                };
                // Boxed: the work (the failover over a group's servers) is half a kilobyte of
                // state, and in line it would take the upstream task past 1 KiB, the largest
                // allocation glibc's per-thread cache serves (bench/run.sh: malloc's slow path
                // and its free-list consolidation were 3 % of a cache miss's CPU).
                let found = Box::pin(work()).await;
                // Out of the table first: from then on no query can join, and those that did
                // hold a receiver. Most misses have none, and a send wakes eight lists of
                // waiters, each under its lock, for nobody.
                drop(leader);
                if tx.receiver_count() > 0 {
                    let _ = tx.send(Some(found.clone()));
                }
                found
            }
            Err(mut rx) => {
                let led = rx
                    .wait_for(Option::is_some)
                    .await
                    .map(|found| found.clone().flatten());
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
