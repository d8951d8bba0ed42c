//! What the status page shows of a server's past: its last changes of state, in a small ring,
//! and the results of its last probe round. Written by the probe loop and on changes of state,
//! never per query, so a mutex is fine here.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use super::State;
use crate::probe_result::ProbeResult;
use crate::upstream::Transport;

/// Changes of state kept per server.
pub const CHANGES_KEPT: usize = 8;

/// One change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When it happened.
    pub at: SystemTime,
    /// Over which transport.
    pub transport: Transport,
    /// The new state.
    pub state: State,
    /// Why (the failure's reason; empty when up).
    pub reason: String,
}

/// The results of one probe round over UDP and TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastProbes {
    /// When the round ended (`None` before the first).
    pub at: Option<SystemTime>,
    /// One result per probe name over UDP.
    pub udp: Vec<ProbeResult>,
    /// The same over TCP.
    pub tcp: Vec<ProbeResult>,
}

/// A server's recent changes and last probe results.
#[derive(Debug, Default)]
pub struct History {
    changes: Mutex<VecDeque<Change>>,
    probes: Mutex<LastProbes>,
}

impl History {
    /// Remembers a change, forgetting the oldest beyond [`CHANGES_KEPT`].
    pub fn changed(&self, transport: Transport, state: State, reason: String) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        if changes.len() == CHANGES_KEPT {
            changes.pop_front();
        }
        changes.push_back(Change {
            at: SystemTime::now(),
            transport,
            state,
            reason,
        });
    }

    /// The changes kept, oldest first.
    pub fn changes(&self) -> Vec<Change> {
        let changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        changes.iter().cloned().collect()
    }

    /// Keeps the results of a probe round.
    pub fn probed(&self, udp: Vec<ProbeResult>, tcp: Vec<ProbeResult>) {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        *probes = LastProbes {
            at: Some(SystemTime::now()),
            udp,
            tcp,
        };
    }

    /// The last probe round's results.
    pub fn last_probes(&self) -> LastProbes {
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_changes() {
        let history = History::default();
        for i in 0..CHANGES_KEPT + 3 {
            history.changed(Transport::Udp, State::Down, i.to_string());
        }
        let changes = history.changes();
        assert_eq!(changes.len(), CHANGES_KEPT);
        assert_eq!(changes[0].reason, "3");
        assert_eq!(
            changes[CHANGES_KEPT - 1].reason,
            (CHANGES_KEPT + 2).to_string()
        );
    }
}
