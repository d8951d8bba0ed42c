//! The request handler: access control, parsing, admission and the current runtime, for every
//! listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clients::{Clients, TableAnswer, DEFAULT_SLOTS as CLIENT_SLOTS};
use crate::prefix::PrefixWatch;
use crate::ratelimit::{RateLimiter, DEFAULT_SLOTS};
use crate::runtime::{Runtime, Shared};
use crate::status_txt;
use crate::upstream::Transport;
use crate::wire::{Parsed, Rcode, Rejected, Request};
use oqsdns_config::Config;

/// Answers queries with the current runtime; shared by every listener.
#[derive(Debug)]
pub struct Handler {
    runtime: ArcSwap<Runtime>,
    inflight: Arc<Semaphore>,
    prefixes: Arc<PrefixWatch>,
    shared: Shared,
    limiter: Arc<RateLimiter>,
    clients: Arc<Clients>,
}

impl Handler {
    /// A handler for `config`'s limits and cache, answering with `runtime`.
    pub fn new(runtime: Runtime, config: &Config) -> Self {
        Self {
            runtime: ArcSwap::from_pointee(runtime),
            inflight: Arc::new(Semaphore::new(config.server.max_inflight)),
            prefixes: Arc::new(PrefixWatch::open(crate::state::path(
                config.health.state_file.as_deref(),
            ))),
            shared: Shared::new(config),
            limiter: Arc::new(RateLimiter::of(&config.server, DEFAULT_SLOTS)),
            clients: Arc::new(match &config.status {
                Some(status) if status.clients => Clients::new(CLIENT_SLOTS),
                _ => Clients::disabled(),
            }),
        }
    }

    /// The clients seen recently, for the status page.
    pub fn clients(&self) -> Arc<Clients> {
        self.clients.clone()
    }

    /// The per-client rate limit, one budget per client across every listener and transport.
    pub fn limiter(&self) -> Arc<RateLimiter> {
        self.limiter.clone()
    }

    /// The cache and other state that outlives a reload.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The watch of the host's IPv6 prefixes.
    pub fn prefixes(&self) -> Arc<PrefixWatch> {
        self.prefixes.clone()
    }

    /// The runtime in force.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Puts a new runtime in force; queries already under way finish with the old one.
    pub fn replace(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
    }

    /// A place among the queries in flight, or `None` when the cap is reached.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.inflight.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.shared.metrics.refused_busy.inc();
        }
        permit
    }

    /// The answer to a query that could not be admitted: REFUSED, or nothing for garbage.
    pub fn refuse(&self, query: &[u8]) -> Option<Vec<u8>> {
        match Request::parse(query) {
            Ok(request) => Some(self.runtime.load().reply(&request, Rcode::Refused)),
            Err(Rejected::Reply(reply)) => Some(reply),
            Err(Rejected::Drop) => None,
        }
    }

    /// The answer to one query from `client`, or `None` when nothing should be sent.
    pub async fn handle(
        &self,
        query: &[u8],
        client: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match self.handle_now(query, client, transport, Instant::now()) {
            Step::Done(reply) => reply,
            Step::Upstream(parsed) => self.forward(query, parsed, client, transport).await,
        }
    }

    /// The part of [`handle`](Self::handle) that needs no upstream: access control, parsing,
    /// the status name, local and cached answers. A listener calls it in its receive loop and
    /// spawns [`forward`](Self::forward) only for `Step::Upstream`.
    /// `now` is when the query came (a listener reads the clock once per batch).
    pub fn handle_now(
        &self,
        query: &[u8],
        client: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Step {
        let runtime = self.runtime.load();
        if !runtime.allows(client.ip()) {
            self.shared.metrics.refused_acl.inc();
            return Step::Done(
                Request::parse(query)
                    .ok()
                    .map(|r| runtime.reply(&r, Rcode::Refused)),
            );
        }
        let request = match Request::parse(query) {
            Ok(request) => request,
            Err(Rejected::Reply(reply)) => return Step::Done(Some(reply)),
            Err(Rejected::Drop) => return Step::Done(None),
        };
        if status_txt::is_status(&request) {
            let prefixes = self.prefixes.get();
            let answer = status_txt::answer(&request, &runtime, &prefixes, transport);
            return Step::Done(Some(answer));
        }
        let answer = runtime.resolve_now(&request, transport, &self.shared, now);
        if self.clients.enabled() {
            // Names of the guide's table are those of any route but the default (group 0).
            let table = !std::ptr::eq(runtime.group_for(request.qname()), &runtime.groups()[0]);
            let outcome = answer.as_deref().map_or(TableAnswer::Pending, |a| {
                TableAnswer::of_rcode(crate::wire::rcode_of(a))
            });
            self.clients
                .query(client.ip(), now, table.then_some(outcome));
        }
        match answer {
            Some(answer) => Step::Done(Some(answer)),
            None => Step::Upstream(request.parsed()),
        }
    }

    /// The answer to a query [`handle_now`](Self::handle_now) sent upstream (checked and
    /// allowed there, and `parsed` there: not parsed again): fetched once for all identical
    /// queries under way, stale or SERVFAIL when every server fails.
    pub async fn forward(
        &self,
        query: &[u8],
        parsed: Parsed,
        client: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let runtime = self.runtime.load_full();
        let request = Request::from_parsed(query, parsed)?;
        let answer = runtime
            .resolve_upstream(&request, transport, &self.shared)
            .await;
        if self.clients.enabled()
            && !std::ptr::eq(runtime.group_for(request.qname()), &runtime.groups()[0])
        {
            let outcome = TableAnswer::of_rcode(crate::wire::rcode_of(&answer));
            self.clients.answered(client.ip(), outcome);
        }
        Some(answer)
    }
}

/// What [`Handler::handle_now`] made of a query.
#[derive(Debug)]
pub enum Step {
    /// Answered (or to be dropped) without an upstream.
    Done(Option<Vec<u8>>),
    /// Needs [`Handler::forward`], with what parsing the query found.
    Upstream(Parsed),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthRegistry;

    /// The handler's part of each UDP question's future (`dispatch` in server/udp.rs) stays
    /// within glibc's per-thread cache, as `forward::tests` checks for the failover's.
    #[test]
    fn the_forward_future_fits_mallocs_thread_cache() {
        let config = Config::default();
        let registry = HealthRegistry::default();
        let handler = Handler::new(Runtime::build(&config, &[], &registry), &config);
        let query = [0u8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let parsed = Request::parse(&query).unwrap().parsed();
        let client = SocketAddr::from(([127, 0, 0, 1], 5300));
        let size = std::mem::size_of_val(&handler.forward(&query, parsed, client, Transport::Udp));
        let room = crate::forward::FUTURE_ROOM;
        assert!(
            size <= room,
            "Handler::forward: {size} bytes, more than {room}"
        );
    }
}
