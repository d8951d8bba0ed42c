//! The daemon's one state file: what must survive a restart, the IPv6 prefixes the line is known
//! to have (guide FAQ Q18). Written atomically (a temporary file beside it, then a rename), read
//! whole; a few lines of `key=value`.
//!
//! ```text
//! # oqsdns state (FAQ Q18 prefix watch); `oqsdns check --confirm-reauth` updates it
//! known=2408:82:1234:5600::/64
//! last=2408:82:9999:1200::/64
//! confirmed=1764633600
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;

/// The file name in `$STATE_DIRECTORY`.
pub const FILE_NAME: &str = "state";

/// Where the state lives when neither `$STATE_DIRECTORY` nor `[health] state_file` says: a
/// persistent path, since OpenWrt's `/var` is a tmpfs.
pub const DEFAULT_PATH: &str = "/etc/oqsdns/state";

/// The folder systemd makes for the Debian unit's `StateDirectory=oqsdns`.
pub const SYSTEMD_DIR: &str = "/var/lib/oqsdns";

/// The state file's path: in `$STATE_DIRECTORY` (set by systemd for `StateDirectory=`; the
/// first entry when it lists several), else `configured` (`[health] state_file`), else in
/// [`SYSTEMD_DIR`] when it exists (so that `oqsdns check --confirm-reauth` from a shell finds
/// the daemon's file without `$STATE_DIRECTORY`), else [`DEFAULT_PATH`].
pub fn path(configured: Option<&Path>) -> PathBuf {
    let from_env = std::env::var_os("STATE_DIRECTORY");
    path_from(
        from_env.as_deref().and_then(|v| v.to_str()),
        configured,
        Path::new(SYSTEMD_DIR).is_dir(),
    )
}

fn path_from(state_directory: Option<&str>, configured: Option<&Path>, systemd: bool) -> PathBuf {
    if let Some(dir) = state_directory
        .and_then(|v| v.split(':').next())
        .filter(|d| !d.is_empty())
    {
        return Path::new(dir).join(FILE_NAME);
    }
    match configured {
        Some(path) => path.to_path_buf(),
        None if systemd => Path::new(SYSTEMD_DIR).join(FILE_NAME),
        None => PathBuf::from(DEFAULT_PATH),
    }
}

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// The prefixes the line is known to have: learned when there was no history, or confirmed
    /// after line authentication was redone. Empty: nothing known yet.
    pub known: Vec<Ipv6Net>,
    /// The last prefixes seen (never empty once something was seen): when it holds one not in
    /// `known`, the line changed and line authentication must be redone.
    pub last: Vec<Ipv6Net>,
    /// When line authentication was last confirmed (`oqsdns check --confirm-reauth`), in
    /// seconds since the Unix epoch.
    pub confirmed: Option<u64>,
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `key=value` with a known key and a valid value.
    #[error("{path}:{line}: cannot read {text:?}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
}

impl Saved {
    /// Whether the last prefixes seen hold one the line is not known to have.
    pub fn changed(&self) -> bool {
        is_change(&self.known, &self.last)
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let join = |p: &[Ipv6Net]| {
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut text = format!(
            "# oqsdns state (FAQ Q18 prefix watch); `oqsdns check --confirm-reauth` updates it\n\
             known={}\nlast={}\n",
            join(&self.known),
            join(&self.last)
        );
        if let Some(at) = self.confirmed {
            text.push_str(&format!("confirmed={at}\n"));
        }
        text
    }

    /// Parses the file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, StateError> {
        let mut saved = Self::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || StateError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            };
            let (key, value) = line.split_once('=').ok_or_else(bad)?;
            let nets = || -> Result<Vec<Ipv6Net>, StateError> {
                value
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| v.trim().parse::<Ipv6Net>().map_err(|_| bad()))
                    .collect()
            };
            match key.trim() {
                "known" => saved.known = nets()?,
                "last" => saved.last = nets()?,
                "confirmed" => saved.confirmed = Some(value.trim().parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        Ok(saved)
    }

    /// Reads `path`; `None` when it does not exist (no history).
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes `path` atomically (see [`write_atomically`]), creating its folder if missing;
    /// readable by all, so the daemon reads what root's `oqsdns check --confirm-reauth` wrote.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        write_atomically(path, self.to_text().as_bytes(), 0o644).map_err(io)
    }
}

/// Writes `path` so that a power cut leaves the old file or the new one: a new temporary file
/// beside it (an unpredictable name, created exclusively: a link planted there is never
/// followed) with `mode`, or the mode of the file it replaces, synced, renamed over `path`,
/// then the folder synced.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mode = std::fs::metadata(path).map_or(mode, |m| m.permissions().mode() & 0o7777);
    let temp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        // The umask may have narrowed `mode` (root's 077 would hide the file from the daemon).
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
        return written;
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Whether `last` holds a prefix not in `known` (nothing known yet is never a change).
pub fn is_change(known: &[Ipv6Net], last: &[Ipv6Net]) -> bool {
    !known.is_empty() && last.iter().any(|p| !known.contains(p))
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh folder under the system's temporary one, removed when dropped.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("oqsdns-{name}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn nets(list: &[&str]) -> Vec<Ipv6Net> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_state_directory_wins_then_the_config_then_the_default() {
        let configured = Path::new("/srv/oqsdns/state");
        assert_eq!(
            path_from(Some("/var/lib/oqsdns"), Some(configured), false),
            Path::new("/var/lib/oqsdns/state")
        );
        assert_eq!(
            path_from(Some("/var/lib/oqsdns:/var/lib/other"), None, false),
            Path::new("/var/lib/oqsdns/state"),
            "the first of several"
        );
        assert_eq!(path_from(Some(""), Some(configured), true), configured);
        assert_eq!(path_from(None, Some(configured), true), configured);
        assert_eq!(
            path_from(None, None, true),
            Path::new("/var/lib/oqsdns/state"),
            "a shell on a systemd box: the unit's state folder"
        );
        assert_eq!(path_from(None, None, false), Path::new(DEFAULT_PATH));
    }

    #[test]
    fn written_readable_by_the_daemon_keeping_a_replaced_files_mode_and_never_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new("state-write");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let path = dir.0.join("state");
        write_atomically(&path, b"one", 0o644).unwrap();
        assert_eq!(mode(&path), 0o644, "readable whatever the umask");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&path, b"two", 0o644).unwrap();
        assert_eq!(
            (mode(&path), std::fs::read(&path).unwrap()),
            (0o600, b"two".to_vec())
        );
        // `path` a link to another file: the link is replaced, the other file left alone.
        let other = dir.0.join("other");
        std::fs::write(&other, b"untouched").unwrap();
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        write_atomically(&link, b"three", 0o644).unwrap();
        assert_eq!(std::fs::read(&other).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&link).unwrap(), b"three");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn saved_and_loaded_again_the_same_with_no_temporary_file_left() {
        let dir = TempDir::new("state-roundtrip");
        let path = dir.0.join("sub").join("state");
        assert_eq!(Saved::load(&path).unwrap(), None, "no file: no history");
        let saved = Saved {
            known: nets(&["2001:db8:ff01::/64", "2408:82:1234:5600::/64"]),
            last: nets(&["2408:82:9999:1200::/64"]),
            confirmed: Some(1_764_633_600),
        };
        saved.save(&path).unwrap();
        assert_eq!(Saved::load(&path).unwrap(), Some(saved.clone()));
        let again = Saved {
            confirmed: None,
            ..saved
        };
        again.save(&path).unwrap();
        assert_eq!(Saved::load(&path).unwrap(), Some(again));
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, ["state"], "the temporary file was renamed");
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_its_line() {
        let path = Path::new("/x/state");
        for (text, line) in [
            ("known=2408:82::/64\nlast=nonsense\n", 2),
            ("# c\n\nwhat=1\n", 3),
            ("known 2408:82::/64\n", 1),
            ("confirmed=soon\n", 1),
        ] {
            let error = Saved::parse(text, path).unwrap_err().to_string();
            assert!(error.starts_with(&format!("/x/state:{line}:")), "{error}");
        }
        assert_eq!(
            Saved::parse("known=\nlast=\n", path).unwrap(),
            Saved::default()
        );
    }

    #[test]
    fn changed_only_with_a_prefix_the_line_is_not_known_to_have() {
        let known = nets(&["2001:db8:ff01::/64", "2408:82:1234:5600::/64"]);
        let with_last = |last: &[&str]| Saved {
            known: known.clone(),
            last: nets(last),
            confirmed: None,
        };
        assert!(!with_last(&["2408:82:1234:5600::/64"]).changed(), "a part");
        assert!(!with_last(&["2001:db8:ff01::/64", "2408:82:1234:5600::/64"]).changed());
        assert!(with_last(&["2001:db8:ff01::/64", "2408:82:9999:1200::/64"]).changed());
        let nothing_known = Saved {
            last: nets(&["2408:82:9999:1200::/64"]),
            ..Saved::default()
        };
        assert!(!nothing_known.changed(), "nothing known: not a change");
    }
}
