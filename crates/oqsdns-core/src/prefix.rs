//! The host's global IPv6 prefixes, watched because a new prefix means the line authentication
//! (回線認証) must be done again (guide FAQ Q18). The prefixes the line is known to have live in
//! the state file ([`crate::state`]), so a line that changed while the box was off is noticed
//! at the next start, and the warning stays until `oqsdns check --confirm-reauth` says line
//! authentication was redone.
//!
//! No global prefix at all is "not known yet" (the daemon may start before IPv6 is up), never a
//! change. With no history, the first prefixes seen are learned without a warning, and while the
//! ones learned in this run are all still there, prefixes that join them are learned too (wan6
//! and the LAN's delegated prefix may come up one after the other). A change is a prefix the
//! line is not known to have; it clears when the known ones come back or when confirmed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use ipnet::{IpNet, Ipv6Net};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::acl::interface_prefixes;
use crate::state::{self, Saved, StateError};

/// The watch: the state file's content, the prefixes now, and how the file looked when last
/// read or written.
/// How long after a first start learned the line's prefixes others that join them (the LAN's
/// after wan6) are learned too.
pub const LEARNING: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct PrefixWatch {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The state file; `None` keeps the state in memory only.
    path: Option<PathBuf>,
    saved: Saved,
    now: Vec<Ipv6Net>,
    /// The known prefixes were learned in this run, not read or confirmed: when first learned.
    /// Prefixes that join them within [`LEARNING`] are learned too; after it, a new one is a
    /// change (a line renumbered during the first run keeps the old address, deprecated).
    learning: Option<std::time::Instant>,
    /// The file's identity and time when last read or written, to notice another writer.
    stamp: Option<(u64, SystemTime)>,
    /// A failed write was logged: the next ones are not, until one succeeds.
    write_failed: bool,
}

/// What the watch has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefixes {
    /// The prefixes the line is known to have (learned at the first start, or confirmed);
    /// empty while nothing is known.
    pub known: Vec<Ipv6Net>,
    /// The host's global IPv6 prefixes now (empty when it has none, or none yet).
    pub now: Vec<Ipv6Net>,
    /// The last prefixes seen, kept when the host has none for a while.
    pub last: Vec<Ipv6Net>,
    /// When line authentication was last confirmed, in seconds since the Unix epoch.
    pub confirmed: Option<u64>,
    /// The state file, when there is one.
    pub state_file: Option<PathBuf>,
}

impl Prefixes {
    /// Whether the line has a prefix it is not known to have: line authentication must be
    /// done again (FAQ Q18).
    pub fn changed(&self) -> bool {
        state::is_change(&self.known, &self.last)
    }
}

/// The global unicast (2000::/3) IPv6 prefixes among `nets`, sorted and without duplicates.
pub fn global_ipv6(nets: &[IpNet]) -> Vec<Ipv6Net> {
    let mut out: Vec<Ipv6Net> = nets
        .iter()
        .filter_map(|n| match n {
            IpNet::V6(v6) if (v6.addr().segments()[0] & 0xE000) == 0x2000 => Some(v6.trunc()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn show(p: &[Ipv6Net]) -> String {
    if p.is_empty() {
        return "(none)".into();
    }
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn stamp_of(path: &Path) -> Option<(u64, SystemTime)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.modified().ok()?))
}

fn warn_changed(saved: &Saved) {
    warn!(
        known = %show(&saved.known),
        now = %show(&saved.last),
        "the line's IPv6 prefix changed: line authentication (回線認証) must be done again at https://www.lineauth.mnw (guide FAQ Q18); then run `oqsdns check --confirm-reauth`"
    );
}

impl PrefixWatch {
    /// A watch whose state lives in the file at `path`, read now, with the host's prefixes now
    /// observed. A file that cannot be read is logged and the watch starts without history.
    pub fn open(path: PathBuf) -> Self {
        Self::open_with(path, global_ipv6(&interface_prefixes()))
    }

    /// [`open`](Self::open) with `now` as the host's prefixes.
    pub fn open_with(path: PathBuf, now: Vec<Ipv6Net>) -> Self {
        let watch = Self::default();
        {
            let mut inner = watch.lock();
            inner.path = Some(path);
            inner.reread(true);
            if inner.saved.changed() {
                warn_changed(&inner.saved);
            }
        }
        watch.observe(now);
        watch
    }

    /// What the watch has seen, after reading the state file again if another process (such
    /// as `oqsdns check --confirm-reauth`) wrote it.
    pub fn get(&self) -> Prefixes {
        let mut inner = self.lock();
        inner.reread(false);
        inner.prefixes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the state file again if it changed, then the host's prefixes: the periodic check,
    /// and the one SIGHUP makes.
    pub fn refresh(&self) {
        self.observe(global_ipv6(&interface_prefixes()));
    }

    /// Records the host's prefixes now: learns, warns once when the line changed, and saves
    /// what changed.
    pub fn observe(&self, now: Vec<Ipv6Net>) {
        self.observe_at(now, std::time::Instant::now());
    }

    /// [`observe`](Self::observe) at time `at`.
    pub fn observe_at(&self, now: Vec<Ipv6Net>, at: std::time::Instant) {
        let mut inner = self.lock();
        inner.reread(false); // a confirmation written meanwhile is not overwritten
        inner.now.clone_from(&now);
        if now.is_empty() {
            return; // no prefix (yet): unknown, neither learned nor a change
        }
        let before = inner.saved.clone();
        let learned = if before.known.is_empty() {
            inner.learning = Some(at);
            true
        } else {
            let in_window = inner
                .learning
                .is_some_and(|since| at.saturating_duration_since(since) < LEARNING);
            let joined = in_window && before.known.iter().all(|p| now.contains(p));
            if !joined {
                inner.learning = None; // once a change, always a change
            }
            joined
        };
        if learned {
            if before.known != now {
                info!(prefixes = %show(&now), "the prefix watch (FAQ Q18) learned the line's IPv6 prefixes");
            }
            inner.saved.known.clone_from(&now);
        }
        inner.saved.last = now;
        let saved = &inner.saved;
        if saved.changed() && (!before.changed() || before.last != saved.last) {
            warn_changed(saved);
        } else if before.changed() && !saved.changed() {
            info!(prefixes = %show(&saved.last), "the line's IPv6 prefix is the known one again");
        }
        if inner.saved != before {
            inner.save();
        }
    }

    /// Re-reads the interfaces every `interval` until `shutdown`.
    pub async fn watch(&self, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.refresh(),
            }
        }
    }
}

impl Inner {
    fn prefixes(&self) -> Prefixes {
        Prefixes {
            known: self.saved.known.clone(),
            now: self.now.clone(),
            last: self.saved.last.clone(),
            confirmed: self.saved.confirmed,
            state_file: self.path.clone(),
        }
    }

    /// Reads the state file when it is not the one last read or written (always when `force`).
    fn reread(&mut self, force: bool) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let stamp = stamp_of(&path);
        if !force && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match Saved::load(&path) {
            Ok(Some(saved)) => {
                if saved.confirmed != self.saved.confirmed && saved.confirmed.is_some() && !force {
                    info!(path = %path.display(), known = %show(&saved.known), "line authentication confirmed; the prefix watch (FAQ Q18) knows the line's prefixes again");
                }
                self.saved = saved;
                self.learning = None;
            }
            Ok(None) => {}
            Err(error) => {
                warn!(%error, "cannot read the state file; the prefix watch (FAQ Q18) starts without history");
            }
        }
    }

    fn save(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        match self.saved.save(&path) {
            Ok(()) => {
                self.stamp = stamp_of(&path);
                self.write_failed = false;
            }
            Err(error) => {
                if !self.write_failed {
                    warn!(%error, "cannot write the state file; the prefix watch (FAQ Q18) will not remember across restarts");
                }
                self.write_failed = true;
            }
        }
    }
}

/// Records in the state file at `path` that line authentication was redone for `now` (the
/// host's prefixes; the file's last ones when the host has none): they become the known ones,
/// and the warning stops, for the running daemon at its next look at the file.
pub fn confirm(path: &Path, now: &[Ipv6Net]) -> Result<Saved, StateError> {
    let mut saved = Saved::load(path)?.unwrap_or_default();
    if !now.is_empty() {
        saved.last = now.to_vec();
    }
    saved.known.clone_from(&saved.last);
    saved.confirmed = Some(state::unix_now());
    saved.save(path)?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn only_global_ipv6_prefixes_count() {
        let got = global_ipv6(&nets(&[
            "10.0.0.0/8",
            "fe80::/64",
            "::1/128",
            "fd00::/64",
            "2408:82:1234:5600::1/64",
        ]));
        assert_eq!(got, ["2408:82:1234:5600::/64".parse::<Ipv6Net>().unwrap()]);
    }

    fn v6(list: &[&str]) -> Vec<Ipv6Net> {
        global_ipv6(&nets(list))
    }

    const WAN: &str = "2001:db8:ff01::2/64";
    const LAN: &str = "2408:82:1234:5600::1/64";
    const NEW_LAN: &str = "2408:82:9999:1200::1/64";

    #[test]
    fn a_new_prefix_is_a_change_until_the_old_one_returns() {
        let watch = PrefixWatch::default();
        let old = v6(&[LAN]);
        let new = v6(&[NEW_LAN]);
        watch.observe(old.clone());
        assert!(!watch.get().changed(), "learned, not a change");
        assert_eq!(watch.get().known, old);
        watch.observe(new.clone());
        assert!(watch.get().changed());
        assert_eq!(watch.get().now, new);
        watch.observe(Vec::new());
        assert!(
            watch.get().changed(),
            "no prefix for a while: the warning stays"
        );
        watch.observe(old);
        assert!(!watch.get().changed());
    }

    #[test]
    fn a_first_start_learns_and_a_restart_with_another_prefix_warns() {
        let dir = crate::state::tests::TempDir::new("prefix-restart");
        let path = dir.0.join("state");
        let first = PrefixWatch::open_with(path.clone(), v6(&[WAN, LAN]));
        assert!(!first.get().changed(), "no history: learned, no warning");
        let saved = Saved::load(&path).unwrap().unwrap();
        assert_eq!(saved.known, v6(&[WAN, LAN]));
        drop(first);
        // The line changed while the box was off.
        let second = PrefixWatch::open_with(path.clone(), v6(&[WAN, NEW_LAN]));
        assert!(second.get().changed());
        assert_eq!(second.get().known, v6(&[WAN, LAN]), "still the known ones");
        drop(second);
        // Started again with no IPv6 yet: the warning is still there, from the file.
        let third = PrefixWatch::open_with(path.clone(), Vec::new());
        assert!(third.get().changed());
        // Line authentication redone and confirmed by another process: noticed at the next look.
        confirm(&path, &v6(&[WAN, NEW_LAN])).unwrap();
        third.observe(v6(&[WAN, NEW_LAN]));
        let now = third.get();
        assert!(!now.changed());
        assert_eq!(now.known, v6(&[WAN, NEW_LAN]));
        assert!(now.confirmed.is_some());
        drop(third);
        let fourth = PrefixWatch::open_with(path, v6(&[WAN, NEW_LAN]));
        assert!(
            !fourth.get().changed(),
            "the confirmation survives a restart"
        );
    }

    #[test]
    fn no_prefix_at_start_is_unknown_and_the_old_one_after_it_is_no_change() {
        let dir = crate::state::tests::TempDir::new("prefix-late");
        let path = dir.0.join("state");
        drop(PrefixWatch::open_with(path.clone(), v6(&[WAN, LAN])));
        let before = std::fs::read_to_string(&path).unwrap();
        let watch = PrefixWatch::open_with(path.clone(), Vec::new());
        assert!(!watch.get().changed());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            before,
            "nothing learned from nothing"
        );
        // wan6 first, the LAN's prefix later: parts of the known ones, never a change.
        watch.observe(v6(&[WAN]));
        assert!(!watch.get().changed());
        watch.observe(v6(&[WAN, LAN]));
        assert!(!watch.get().changed());
        assert_eq!(Saved::load(&path).unwrap().unwrap().known, v6(&[WAN, LAN]));
    }

    #[test]
    fn with_no_history_prefixes_that_join_the_learned_ones_are_learned_too() {
        let dir = crate::state::tests::TempDir::new("prefix-join");
        let path = dir.0.join("state");
        let watch = PrefixWatch::open_with(path.clone(), Vec::new());
        watch.observe(v6(&[WAN]));
        watch.observe(v6(&[WAN, LAN]));
        assert!(
            !watch.get().changed(),
            "the LAN's prefix came up after wan6"
        );
        assert_eq!(watch.get().known, v6(&[WAN, LAN]));
        drop(watch);
        // From history, a prefix beside the known ones is a change (a renumbered line keeps the
        // old address, deprecated, for a while).
        let again = PrefixWatch::open_with(path, v6(&[WAN, LAN, NEW_LAN]));
        assert!(again.get().changed());
    }

    #[test]
    fn a_prefix_that_joins_after_the_learning_window_is_a_change() {
        let dir = crate::state::tests::TempDir::new("prefix-window");
        let watch = PrefixWatch::open_with(dir.0.join("state"), Vec::new());
        let t0 = std::time::Instant::now();
        watch.observe_at(v6(&[WAN]), t0);
        watch.observe_at(v6(&[WAN, LAN]), t0 + LEARNING / 2);
        assert!(!watch.get().changed(), "within the window: learned");
        // The line renumbered months into the first run: the old prefix still there, deprecated.
        watch.observe_at(v6(&[WAN, LAN, NEW_LAN]), t0 + LEARNING * 100);
        assert!(watch.get().changed(), "after the window: a change");
        assert_eq!(watch.get().known, v6(&[WAN, LAN]));
    }

    #[test]
    fn an_unwritable_state_file_keeps_the_watch_in_memory() {
        let dir = crate::state::tests::TempDir::new("prefix-unwritable");
        let blocker = dir.0.join("file");
        std::fs::write(&blocker, "not a folder").unwrap();
        let watch = PrefixWatch::open_with(blocker.join("state"), v6(&[LAN]));
        watch.observe(v6(&[NEW_LAN]));
        assert!(watch.get().changed());
    }
}
