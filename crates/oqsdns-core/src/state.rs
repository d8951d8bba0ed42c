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

/// The state file's path: in `$STATE_DIRECTORY` (set by systemd for `StateDirectory=`; the
/// first entry when it lists several), else `configured` (`[health] state_file`), else
/// [`DEFAULT_PATH`].
pub fn path(configured: Option<&Path>) -> PathBuf {
    let from_env = std::env::var_os("STATE_DIRECTORY");
    path_from(from_env.as_deref().and_then(|v| v.to_str()), configured)
}

fn path_from(state_directory: Option<&str>, configured: Option<&Path>) -> PathBuf {
    if let Some(dir) = state_directory
        .and_then(|v| v.split(':').next())
        .filter(|d| !d.is_empty())
    {
        return Path::new(dir).join(FILE_NAME);
    }
    configured.map_or_else(|| PathBuf::from(DEFAULT_PATH), Path::to_path_buf)
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

    /// Writes `path` atomically: a temporary file in the same folder (created if missing),
    /// synced, then renamed over it, so a power cut leaves the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(FILE_NAME);
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(self.to_text().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(io)
    }
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
            path_from(Some("/var/lib/oqsdns"), Some(configured)),
            Path::new("/var/lib/oqsdns/state")
        );
        assert_eq!(
            path_from(Some("/var/lib/oqsdns:/var/lib/other"), None),
            Path::new("/var/lib/oqsdns/state"),
            "the first of several"
        );
        assert_eq!(path_from(Some(""), Some(configured)), configured);
        assert_eq!(path_from(None, Some(configured)), configured);
        assert_eq!(path_from(None, None), Path::new(DEFAULT_PATH));
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
