//! The clients seen recently, for the status page's list of terminals: address, last query,
//! queries counted, and whether its last query for a name of the guide's table (an オン資 or NGN
//! name, routed to the NW-base or NGN DNS) was answered.
//!
//! The table never grows: [`Clients::new`] allocates every slot up front, in shards of 4-way sets
//! indexed by a keyed hash ([`crate::sets`]), as the rate limiter's table does. A client not in its set takes the
//! set's slot that was used longest ago. Nothing is logged per query; [`Clients::disabled`]
//! (`[status] clients = false`) holds no table and records nothing.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::sets::{key_of, Sets};

/// Clients tracked at once by default: a clinic has a handful of terminals, a LAN a few dozen
/// devices.
pub const DEFAULT_SLOTS: usize = 256;

const SHARDS: usize = 8;

/// What became of a client's last query for a name of the guide's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableAnswer {
    /// It asked none yet.
    None,
    /// Sent upstream, no reply yet.
    Pending,
    /// Answered (NOERROR or NXDOMAIN).
    Answered,
    /// SERVFAIL, REFUSED or another error.
    Failed,
}

impl TableAnswer {
    /// `none`, `pending`, `answered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Answered => "answered",
            Self::Failed => "failed",
        }
    }

    /// The outcome of a reply with `rcode`.
    pub fn of_rcode(rcode: u8) -> Self {
        if rcode == 0 || rcode == 3 {
            Self::Answered
        } else {
            Self::Failed
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    used: bool,
    key: [u8; 16],
    queries: u64,
    /// The last query, in ms since the table's start.
    last_ms: u64,
    table: TableAnswer,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            used: false,
            key: [0; 16],
            queries: 0,
            last_ms: 0,
            table: TableAnswer::None,
        }
    }
}

/// One client as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its address (IPv4-mapped addresses as IPv4).
    pub addr: IpAddr,
    /// How long ago its last query came.
    pub ago: Duration,
    /// Its queries since it took its slot.
    pub queries: u64,
    /// Its last query for a name of the guide's table.
    pub table: TableAnswer,
}

/// The fixed table of recent clients.
#[derive(Debug)]
pub struct Clients {
    table: Sets<Slot>,
    epoch: Instant,
}

impl Clients {
    /// A table of `slots` clients (rounded up to a multiple of 32); 0 records nothing.
    pub fn new(slots: usize) -> Self {
        Self {
            table: Sets::new(SHARDS, slots),
            epoch: Instant::now(),
        }
    }

    /// A table that records nothing.
    pub fn disabled() -> Self {
        Self::new(0)
    }

    /// Whether it records.
    pub fn enabled(&self) -> bool {
        !self.table.is_empty()
    }

    /// Clients tracked at once.
    pub fn slots(&self) -> usize {
        self.table.slots()
    }

    /// Counts one query of `client` at `now`; `table` is what became of it when it asked a name
    /// of the guide's table (`None` for other names). O(1), no allocation.
    pub fn query(&self, client: IpAddr, now: Instant, table: Option<TableAnswer>) {
        let now_ms = self.ms(now);
        self.with_slot(client, now_ms, |slot| {
            slot.queries = slot.queries.saturating_add(1);
            slot.last_ms = slot.last_ms.max(now_ms);
            if let Some(table) = table {
                slot.table = table;
            }
        });
    }

    /// Records the reply to `client`'s query for a name of the guide's table that went upstream.
    pub fn answered(&self, client: IpAddr, table: TableAnswer) {
        let now_ms = self.ms(Instant::now());
        self.with_slot(client, now_ms, |slot| slot.table = table);
    }

    /// Every client in the table, the most recent first; `now` is the moment "ago" counts from.
    pub fn list(&self, now: Instant) -> Vec<Client> {
        let now_ms = self.ms(now);
        let mut out: Vec<(u64, Client)> = Vec::new();
        self.table.for_each(|slot| {
            out.push((
                slot.last_ms,
                Client {
                    addr: IpAddr::V6(Ipv6Addr::from(slot.key)).to_canonical(),
                    ago: Duration::from_millis(now_ms.saturating_sub(slot.last_ms)),
                    queries: slot.queries,
                    table: slot.table,
                },
            ));
        });
        out.sort_by_key(|(last, _)| std::cmp::Reverse(*last));
        out.into_iter().map(|(_, c)| c).collect()
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn with_slot(&self, client: IpAddr, now_ms: u64, f: impl FnOnce(&mut Slot)) {
        let key = key_of(client);
        // A free slot first, else the one used longest ago.
        let victim = |ways: &[Slot]| {
            (0..ways.len())
                .min_by_key(|&i| (ways[i].used, ways[i].last_ms))
                .unwrap_or(0)
        };
        let fresh = || Slot {
            used: true,
            key,
            last_ms: now_ms,
            ..Slot::default()
        };
        self.table.with(key, victim, fresh, f);
    }
}

impl crate::sets::Slot for Slot {
    fn key(&self) -> Option<&[u8; 16]> {
        self.used.then_some(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v6(i: u64) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(
            (0x2408_0082_1234_5600_u128 << 64) | u128::from(i),
        ))
    }

    #[test]
    fn counts_queries_and_the_last_table_answer_per_client() {
        let clients = Clients::new(DEFAULT_SLOTS);
        let t0 = Instant::now();
        let a = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 100));
        clients.query(a, t0, None);
        clients.query(v6(1), t0, Some(TableAnswer::Pending));
        clients.query(a, t0 + Duration::from_secs(2), Some(TableAnswer::Answered));
        clients.answered(v6(1), TableAnswer::Failed);
        let mapped: IpAddr = "::ffff:192.168.10.100".parse().unwrap();
        clients.query(mapped, t0 + Duration::from_secs(3), None);
        let list = clients.list(t0 + Duration::from_secs(5));
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0].addr, a, "the most recent first, v4-mapped as v4");
        assert_eq!(list[0].queries, 3);
        assert_eq!(list[0].table, TableAnswer::Answered);
        assert_eq!(list[0].ago, Duration::from_secs(2));
        assert_eq!(list[1].addr, v6(1));
        assert_eq!((list[1].queries, list[1].table), (1, TableAnswer::Failed));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_recent_clients() {
        let clients = Clients::new(DEFAULT_SLOTS);
        let slots = clients.slots();
        assert_eq!(slots, DEFAULT_SLOTS);
        let t0 = Instant::now();
        for i in 0..100_000 {
            clients.query(v6(i), t0, None);
        }
        let later = t0 + Duration::from_secs(1);
        clients.query(v6(1_000_000), later, Some(TableAnswer::Answered));
        let list = clients.list(later);
        assert!(list.len() <= slots, "{} tracked", list.len());
        assert_eq!(clients.slots(), slots, "the table never grows");
        assert_eq!(list[0].addr, v6(1_000_000), "the newest client took a slot");
    }

    #[test]
    fn disabled_records_nothing() {
        let clients = Clients::disabled();
        clients.query(v6(1), Instant::now(), Some(TableAnswer::Answered));
        clients.answered(v6(1), TableAnswer::Failed);
        assert!(!clients.enabled());
        assert!(clients.list(Instant::now()).is_empty());
        assert_eq!(clients.slots(), 0);
    }
}
