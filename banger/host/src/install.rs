//! Where banger is installed and what `/etc/banger/install.toml` records about it.
//!
//! The layout is fixed by the prefix chosen at install time; the metadata file is the only
//! record of who owns the install and which release it is. Nothing here changes the system
//! except [`InstallMeta::write`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::build_info::BuildIdentity;

/// Directory of root-owned banger configuration.
pub const ETC_DIR: &str = "/etc/banger";
/// The install metadata file.
pub const INSTALL_TOML: &str = "/etc/banger/install.toml";
/// The owner daemon's state directory (systemd `StateDirectory=banger`).
pub const STATE_DIR: &str = "/var/lib/banger";
/// The store inside the state directory.
pub const STORE_FILE: &str = "banger.db";
/// Default installation prefix.
pub const DEFAULT_PREFIX: &str = "/usr/local";
/// The programs an install consists of, in the order they are swapped.
pub const PROGRAMS: [&str; 3] = ["bangerd-root", "bangerd", "banger"];

/// Paths of an installation under a given prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Installation prefix, e.g. `/usr/local`.
    pub prefix: PathBuf,
    /// Root of the filesystem the system files go to (`/` except in tests).
    pub root: PathBuf,
}

impl Layout {
    /// The layout for `prefix` on the live system.
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        Layout {
            prefix: prefix.into(),
            root: PathBuf::from("/"),
        }
    }

    fn sys(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// A path under the prefix, e.g. `lib/banger/.staging`.
    pub fn prefix_path(&self, rel: &str) -> PathBuf {
        self.sys(&self.prefix.join(rel).to_string_lossy())
    }
    /// Directory holding the three binaries (all on one filesystem, so swaps are renames).
    pub fn bin_dir(&self) -> PathBuf {
        self.sys(&self.prefix.join("lib/banger/bin").to_string_lossy())
    }
    /// The installed path of `program`.
    pub fn program(&self, program: &str) -> PathBuf {
        self.bin_dir().join(program)
    }
    /// The `banger` symlink on `PATH`.
    pub fn cli_link(&self) -> PathBuf {
        self.sys(&self.prefix.join("bin/banger").to_string_lossy())
    }
    /// Directory of shared, non-executable files (example polkit rule).
    pub fn share_dir(&self) -> PathBuf {
        self.sys(&self.prefix.join("share/banger").to_string_lossy())
    }
    /// systemd unit directory for admin-installed units.
    pub fn unit_dir(&self) -> PathBuf {
        self.sys("/etc/systemd/system")
    }
    /// D-Bus system bus policy directory.
    pub fn bus_policy_dir(&self) -> PathBuf {
        self.sys("/etc/dbus-1/system.d")
    }
    /// D-Bus system bus activation directory.
    pub fn bus_activation_dir(&self) -> PathBuf {
        self.sys("/usr/share/dbus-1/system-services")
    }
    /// polkit actions directory (polkitd reads only this one).
    pub fn polkit_actions_dir(&self) -> PathBuf {
        self.sys("/usr/share/polkit-1/actions")
    }
    /// The installed polkit policy.
    pub fn polkit_policy(&self) -> PathBuf {
        self.polkit_actions_dir()
            .join(banger_api::names::POLKIT_POLICY)
    }
    /// `/etc/banger`.
    pub fn etc_dir(&self) -> PathBuf {
        self.sys(ETC_DIR)
    }
    /// `/etc/banger/install.toml`.
    pub fn install_toml(&self) -> PathBuf {
        self.sys(INSTALL_TOML)
    }
    /// `/var/lib/banger`.
    pub fn state_dir(&self) -> PathBuf {
        self.sys(STATE_DIR)
    }
    /// The store file.
    pub fn store(&self) -> PathBuf {
        self.state_dir().join(STORE_FILE)
    }
}

/// The owner of an install: the user `bangerd` runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// Login name.
    pub user: String,
    /// Numeric uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// Contents of `/etc/banger/install.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallMeta {
    /// When the current release was installed (RFC 3339).
    pub installed_at: String,
    /// Installation prefix.
    pub prefix: String,
    /// Who owns the install.
    pub owner: Owner,
    /// Which release is installed.
    pub release: BuildIdentity,
}

/// Why install metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The file does not exist.
    #[error("{path} does not exist: banger is not installed (run: sudo banger system install)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file, or a directory above it, is not safe for root to trust.
    #[error("{0}")]
    Untrusted(#[from] crate::fsutil::TrustError),
    /// The file is not valid install metadata.
    #[error(
        "{path} is not valid install metadata: {why}; it was left as it is: fix it or reinstall with: sudo banger system install"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        why: String,
    },
}

impl InstallMeta {
    /// Reads and validates the metadata at `path`.
    pub fn read(path: &Path) -> Result<Self, MetaError> {
        let text = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => MetaError::Missing { path: path.into() },
            _ => MetaError::Read {
                path: path.into(),
                source,
            },
        })?;
        Self::parse(path, &text)
    }

    /// Reads the metadata at `path` as root may trust it: only a regular, root-owned file that
    /// only root can write, reached through root-owned directories, without following links
    /// (see [`crate::fsutil::read_root_owned`]). The root helper decides whose daemon to trust
    /// and as whom to run VMs from it.
    pub fn read_trusted(path: &Path) -> Result<Self, MetaError> {
        match crate::fsutil::read_root_owned(path, 64 << 10)? {
            Some(text) => Self::parse(path, &text),
            None => Err(MetaError::Missing { path: path.into() }),
        }
    }

    /// Parses metadata text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &[u8]) -> Result<Self, MetaError> {
        let parse_err = |why: String| MetaError::Parse {
            path: path.into(),
            why: why.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let text = std::str::from_utf8(text).map_err(|e| parse_err(format!("not UTF-8: {e}")))?;
        let meta: InstallMeta = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        if meta.owner.user.is_empty() {
            return Err(parse_err("owner.user is empty".into()));
        }
        if !meta.prefix.starts_with('/') {
            return Err(parse_err(format!(
                "prefix {:?} is not absolute",
                meta.prefix
            )));
        }
        Ok(meta)
    }

    /// The layout this metadata describes.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.prefix)
    }

    /// Serializes the metadata with a header comment.
    pub fn render(&self) -> String {
        format!(
            "# banger install metadata, written by `banger system install` and `banger update`.\n\
             # Do not edit: it records which release is installed and who owns it.\n{}",
            toml::to_string(self).expect("install metadata always serializes")
        )
    }

    /// Writes the metadata atomically (mode 0644).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::fsutil::atomic_write(path, self.render().as_bytes(), 0o644)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {})", self.user, self.uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InstallMeta {
        InstallMeta {
            installed_at: "2026-11-22T02:10:00Z".into(),
            prefix: "/usr/local".into(),
            owner: Owner {
                user: "alice".into(),
                uid: 1001,
                gid: 1001,
                home: "/home/alice".into(),
            },
            release: BuildIdentity {
                version: "0.1.0".into(),
                commit: "abc1234".into(),
                built_at: "2026-11-22T02:00:00Z".into(),
            },
        }
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("install.toml");
        sample().write(&p).unwrap();
        assert_eq!(InstallMeta::read(&p).unwrap(), sample());
    }

    #[test]
    fn missing_and_corrupt_files_name_the_fault() {
        let p = Path::new("/etc/banger/install.toml");
        let e = InstallMeta::parse(p, b"this is = = not toml").unwrap_err();
        assert!(matches!(e, MetaError::Parse { .. }));
        assert!(e.to_string().contains("/etc/banger/install.toml"), "{e}");
        assert!(e.to_string().contains("left as it is"), "{e}");
        let e = InstallMeta::parse(p, &[0xff, 0xfe]).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let mut t = sample().render();
        t = t.replace("prefix = \"/usr/local\"", "prefix = \"usr\"");
        let e = InstallMeta::parse(p, t.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("not absolute"), "{e}");
        let e = InstallMeta::parse(p, b"[owner]\nuser = \"a\"\n").unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
        let e = InstallMeta::read(Path::new("/nonexistent/install.toml")).unwrap_err();
        assert!(matches!(e, MetaError::Missing { .. }), "{e}");
    }

    #[test]
    fn layout_paths() {
        let l = Layout::new("/usr/local");
        assert_eq!(
            l.program("bangerd"),
            Path::new("/usr/local/lib/banger/bin/bangerd")
        );
        assert_eq!(l.cli_link(), Path::new("/usr/local/bin/banger"));
        assert_eq!(l.store(), Path::new("/var/lib/banger/banger.db"));
    }
}
