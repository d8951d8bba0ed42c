//! `listen = ["auto"]`: every address of the host's interfaces, each bound on its own and
//! followed as addresses come and go (as dnsmasq's `bind-dynamic` and Unbound's
//! `interface-automatic`), so the daemon runs beside another DNS server holding some address of
//! the same port (systemd-resolved's 127.0.0.53) and serves a new IPv6 prefix without a restart.
//!
//! Address events come from rtnetlink (RTMGRP_IPV4_IFADDR and RTMGRP_IPV6_IFADDR); each one, and
//! a slow periodic rescan as a safety net, makes the follower read the addresses again
//! (getifaddrs) and compare: a new address is bound, a removed one has its listener stopped.
//! IPv6 link-local addresses are bound with their interface's scope id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeValLike;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{bind, Listener};

/// The safety net: addresses are read again this often even without a netlink event.
pub const RESCAN: Duration = Duration::from_secs(30);
/// Without netlink (not Linux, or refused in a sandbox) the addresses are read this often.
const POLL: Duration = Duration::from_secs(1);
/// A stopped listener keeps its UDP socket until the questions it has under way are answered
/// (their tries' timeouts, a few seconds). An address gone and back within this long (a link
/// that flapped, a prefix handed out again) may find its port still held by that socket...
const DRAIN: Duration = Duration::from_secs(15);
/// ... and is tried again this often, not at the next event or rescan only.
const RETRY: Duration = Duration::from_secs(1);

/// What `"auto"` serves: its ports, the interfaces named (empty: every one; loopback always),
/// and the addresses written out in `listen`, which it leaves to their own listeners.
#[derive(Debug, Clone, Default)]
pub struct AutoListen {
    /// The ports of the `"auto"` entries.
    pub ports: Vec<u16>,
    /// `server.interfaces`.
    pub interfaces: Vec<String>,
    /// The explicit addresses of `server.listen`.
    pub explicit: Vec<SocketAddr>,
}

impl AutoListen {
    /// The `"auto"` part of `config`'s `[server]`, if it has one.
    pub fn of(server: &oqsdns_config::ServerConfig) -> Option<Self> {
        let ports = server.auto_ports();
        (!ports.is_empty()).then(|| Self {
            ports,
            interfaces: server.interfaces.clone(),
            explicit: server.addresses(),
        })
    }

    /// The socket addresses to serve now, with each one's interface.
    pub fn wanted(&self) -> BTreeMap<SocketAddr, String> {
        let mut wanted = BTreeMap::new();
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return wanted;
        };
        for ifa in addrs {
            let loopback = ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK);
            let named = self.interfaces.is_empty() || self.interfaces.contains(&ifa.interface_name);
            let Some(ip) = ifa.address.as_ref().and_then(ip_of) else {
                continue;
            };
            if !(loopback || named) || ip.0.is_multicast() || ip.0.is_unspecified() {
                continue;
            }
            for &port in &self.ports {
                let addr = match ip {
                    (IpAddr::V6(v6), scope) if is_link_local(v6) => {
                        let scope = if scope == 0 {
                            nix::net::if_::if_nametoindex(ifa.interface_name.as_str()).unwrap_or(0)
                        } else {
                            scope
                        };
                        SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
                    }
                    (ip, _) => SocketAddr::new(ip, port),
                };
                if !self.explicit.contains(&addr) {
                    wanted.insert(addr, ifa.interface_name.clone());
                }
            }
        }
        wanted
    }
}

fn ip_of(addr: &socket::SockaddrStorage) -> Option<(IpAddr, u32)> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some((IpAddr::V4(v4.ip()), 0));
    }
    let v6 = addr.as_sockaddr_in6()?;
    let ip = v6.ip();
    // An IPv4-mapped address is no address of an interface.
    (ip.to_ipv4_mapped().is_none()).then_some((IpAddr::V6(ip), v6.scope_id()))
}

fn is_link_local(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The listeners `"auto"` keeps open: each one's stop token, the addresses that could not be
/// bound (logged once, tried again at every rescan), and the addresses gone lately, with when
/// their listeners were told to stop (a socket may still be open, see [`DRAIN`]).
#[derive(Debug)]
pub struct Follower {
    auto: AutoListen,
    open: BTreeMap<SocketAddr, CancellationToken>,
    failed: HashSet<SocketAddr>,
    /// Kept for [`DRAIN`]; a failure to bind one of these is its own socket, not another program.
    stopped: HashMap<SocketAddr, Instant>,
    /// An address came back while its stopped listener may still hold it: see [`RETRY`].
    retry: bool,
    shutdown: CancellationToken,
}

impl Follower {
    /// A follower whose listeners stop at `shutdown` at the latest.
    pub fn new(auto: AutoListen, shutdown: CancellationToken) -> Self {
        Self {
            auto,
            open: BTreeMap::new(),
            failed: HashSet::new(),
            stopped: HashMap::new(),
            retry: false,
            shutdown,
        }
    }

    /// The addresses served now.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.open.keys().copied().collect()
    }

    /// How soon the addresses should be read again at the latest: [`RETRY`] while an address
    /// that came back is held by its own stopping listener, else `None` (the next event, or
    /// [`RESCAN`]).
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry.then_some(RETRY)
    }

    /// Reads the addresses again: stops the listeners of addresses gone, and binds the new ones,
    /// returning them with the token that stops each.
    pub fn rescan(&mut self) -> Vec<(Listener, CancellationToken)> {
        let now = Instant::now();
        self.stopped.retain(|_, at| now.duration_since(*at) < DRAIN);
        self.retry = false;
        let wanted = self.auto.wanted();
        let gone: Vec<SocketAddr> = self
            .open
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(token) = self.open.remove(&addr) {
                info!(%addr, "address gone from its interface; its listener stops");
                token.cancel();
                self.stopped.insert(addr, now);
            }
        }
        self.failed.retain(|a| wanted.contains_key(a));
        let mut started = Vec::new();
        for (addr, interface) in wanted {
            if self.open.contains_key(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(listener) => {
                    if self.failed.remove(&addr) {
                        info!(%addr, %interface, "address is free now; serving it");
                    }
                    self.stopped.remove(&addr);
                    let token = self.shutdown.child_token();
                    self.open.insert(addr, token.clone());
                    started.push((listener, token));
                }
                Err(error) if self.stopped.contains_key(&addr) => {
                    self.retry = true;
                    debug!(%addr, %error, "address back while its stopped listener still holds it; trying again in {RETRY:?}");
                }
                Err(error) if self.failed.insert(addr) => warn!(
                    %addr,
                    %interface,
                    error = %error.source,
                    "{error}; skipping this address (another program may serve it) and trying again when the addresses change"
                ),
                Err(error) => debug!(%addr, %error, "address still cannot be bound"),
            }
        }
        started
    }
}

/// A socket told of every IPv4 and IPv6 address added or removed (blocking).
pub fn address_events() -> io::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let groups = (nix::libc::RTMGRP_IPV4_IFADDR | nix::libc::RTMGRP_IPV6_IFADDR) as u32;
    socket::bind(fd.as_raw_fd(), &socket::NetlinkAddr::new(0, groups))?;
    Ok(fd)
}

/// The reasons to read the addresses again: netlink events, read by a thread of its own that
/// blocks in recv (no unsafe registration of a raw socket with the runtime), and [`RESCAN`].
#[derive(Debug)]
pub struct Events {
    changed: Option<Arc<Notify>>,
    stop: Arc<AtomicBool>,
}

/// The event thread looks for [`Events`] being dropped this often.
const EVENT_WAIT: Duration = Duration::from_secs(1);

impl Events {
    /// Subscribes to address events; without them the addresses are polled every second.
    pub fn subscribe() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let changed = Arc::new(Notify::new());
        let started = address_events().and_then(|fd| {
            let millis = i64::try_from(EVENT_WAIT.as_millis()).unwrap_or(1000);
            let wait = <nix::sys::time::TimeVal as TimeValLike>::milliseconds(millis);
            socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &wait)?;
            let (changed, stop) = (changed.clone(), stop.clone());
            std::thread::Builder::new()
                .name("oqsdns-netlink".into())
                .spawn(move || watch(&fd, &changed, &stop))
        });
        match started {
            Ok(_) => Self {
                changed: Some(changed),
                stop,
            },
            Err(error) => {
                warn!(%error, "no netlink address events; reading the addresses every second instead");
                Self {
                    changed: None,
                    stop,
                }
            }
        }
    }

    /// Returns when the addresses should be read again, after `within` at the latest if given;
    /// `false` once `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &CancellationToken, within: Option<Duration>) -> bool {
        let Some(changed) = &self.changed else {
            return tokio::select! {
                () = shutdown.cancelled() => false,
                () = tokio::time::sleep(POLL) => true,
            };
        };
        let wait = within.map_or(RESCAN, |within| within.min(RESCAN));
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
            () = changed.notified() => true,
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The event thread: every batch of messages wakes the follower once. Their content does not
/// matter, the rescan reads the addresses whole (also after an overflow, ENOBUFS).
fn watch(fd: &OwnedFd, changed: &Notify, stop: &AtomicBool) {
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::Acquire) {
        match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(_) | Err(nix::errno::Errno::ENOBUFS) => {
                while socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok() {}
                changed.notify_one();
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(error) => {
                debug!(%error, "netlink receive failed");
                std::thread::sleep(EVENT_WAIT);
            }
        }
    }
}

/// The addresses `"auto"` would serve now, for `config show`.
pub fn would_bind(auto: &AutoListen) -> BTreeSet<SocketAddr> {
    auto.wanted().into_keys().collect()
}
