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

/// The file, under the prefix, that marks a packaged install (see [`Packaging`]).
pub const PACKAGING_FILE: &str = "lib/banger/packaging.toml";

/// Paths of an installation under a given prefix.
///
/// There are two kinds of install. `banger system install` copies the binaries it runs from and
/// writes every system file itself, the units and bus policy in `/etc` as an administrator's
/// own. A packaged install (a `.deb`, or `make install` for another distribution's package) is
/// a file set that belongs to the package manager: units under `PREFIX/lib/systemd/system`,
/// bus policy under `/usr/share/dbus-1/system.d`, and no owner in any of them. `banger system
/// setup --owner USER` then writes the few files that name the owner, all in `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Installation prefix, e.g. `/usr/local`.
    pub prefix: PathBuf,
    /// Root of the filesystem the system files go to (`/`, or `DESTDIR` when staging a
    /// package's files).
    pub root: PathBuf,
    /// Whether the install is a package manager's file set.
    pub packaged: bool,
}

impl Layout {
    /// The layout of a `banger system install` under `prefix` on the live system.
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        Layout {
            prefix: prefix.into(),
            root: PathBuf::from("/"),
            packaged: false,
        }
    }

    /// The layout of a packaged install under `prefix` on the live system.
    pub fn packaged(prefix: impl Into<PathBuf>) -> Self {
        Layout {
            packaged: true,
            ..Layout::new(prefix)
        }
    }

    /// The same layout, with its system files under `root` instead of `/`.
    pub fn under(self, root: impl Into<PathBuf>) -> Self {
        Layout {
            root: root.into(),
            ..self
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
    /// The marker of a packaged install.
    pub fn packaging_file(&self) -> PathBuf {
        self.prefix_path(PACKAGING_FILE)
    }
    /// systemd unit directory: the administrator's for `banger system install`, the
    /// package's under the prefix otherwise (systemd reads `/usr/lib` and `/usr/local/lib`).
    pub fn unit_dir(&self) -> PathBuf {
        if self.packaged {
            self.prefix_path("lib/systemd/system")
        } else {
            self.admin_unit_dir()
        }
    }
    /// `/etc/systemd/system`, where the administrator's units and drop-ins live.
    pub fn admin_unit_dir(&self) -> PathBuf {
        self.sys("/etc/systemd/system")
    }
    /// D-Bus system bus policy directory: `/etc` for `banger system install`,
    /// `/usr/share` (the one for packages) otherwise.
    pub fn bus_policy_dir(&self) -> PathBuf {
        if self.packaged {
            self.sys("/usr/share/dbus-1/system.d")
        } else {
            self.admin_bus_policy_dir()
        }
    }
    /// `/etc/dbus-1/system.d`, the administrator's bus policy.
    pub fn admin_bus_policy_dir(&self) -> PathBuf {
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
    /// Set on a packaged install: the package manager owns the binaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Packaging>,
}

/// Who owns the files of a packaged install, and how a user updates or removes it. Written
/// by `banger system install --destdir` as [`PACKAGING_FILE`] and copied into install
/// metadata by `banger system setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packaging {
    /// The package manager, e.g. `dpkg`.
    pub manager: String,
    /// The command that updates banger, e.g. `apt-get install --only-upgrade banger`.
    pub upgrade: String,
    /// The command that removes banger.
    pub remove: String,
}

impl Packaging {
    /// What a package manager called `manager` owns; dpkg's commands are known, any other
    /// manager is named in the advice.
    pub fn for_manager(manager: &str) -> Packaging {
        let (upgrade, remove) = match manager {
            "dpkg" | "apt" => (
                "sudo apt-get install --only-upgrade banger".to_string(),
                "sudo apt-get remove banger (purge also deletes VMs and images)".to_string(),
            ),
            "make install" => (
                "build the new release, run make install again, then: sudo banger system setup"
                    .to_string(),
                "sudo banger system uninstall, then delete the files make install wrote"
                    .to_string(),
            ),
            m => (
                format!("update the banger package with {m}"),
                format!("remove the banger package with {m}"),
            ),
        };
        Packaging {
            manager: manager.to_string(),
            upgrade,
            remove,
        }
    }

    /// The marker file's text.
    pub fn render(&self) -> String {
        format!(
            "# These banger files belong to a package manager: it installs, updates and removes\n\
             # them, and `banger update` refuses to replace them.\n{}",
            toml::to_string(self).expect("packaging always serializes")
        )
    }

    /// Reads the marker file at `path`: `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Packaging>, MetaError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(MetaError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let parse_err = |why: String| MetaError::Marker {
            path: path.into(),
            why: why.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let text = std::str::from_utf8(&text).map_err(|e| parse_err(format!("not UTF-8: {e}")))?;
        toml::from_str(text)
            .map(Some)
            .map_err(|e| parse_err(e.to_string()))
    }
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
    /// The packaging marker is not valid.
    #[error(
        "{path} is not a valid packaging marker: {why}; it belongs to the package that installed banger: reinstall that package"
    )]
    Marker {
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
        if self.package.is_some() {
            Layout::packaged(&self.prefix)
        } else {
            Layout::new(&self.prefix)
        }
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
            package: None,
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
        assert_eq!(l.unit_dir(), Path::new("/etc/systemd/system"));
        assert_eq!(l.bus_policy_dir(), Path::new("/etc/dbus-1/system.d"));
        let p = Layout::packaged("/usr").under("/tmp/stage");
        assert_eq!(p.unit_dir(), Path::new("/tmp/stage/usr/lib/systemd/system"));
        assert_eq!(
            p.bus_policy_dir(),
            Path::new("/tmp/stage/usr/share/dbus-1/system.d")
        );
        assert_eq!(
            p.admin_unit_dir(),
            Path::new("/tmp/stage/etc/systemd/system")
        );
        assert_eq!(
            p.packaging_file(),
            Path::new("/tmp/stage/usr/lib/banger/packaging.toml")
        );
        assert_eq!(
            p.program("banger"),
            Path::new("/tmp/stage/usr/lib/banger/bin/banger")
        );
    }

    #[test]
    fn packaged_metadata_round_trips_and_old_metadata_still_parses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("install.toml");
        let mut m = sample();
        m.package = Some(Packaging::for_manager("dpkg"));
        m.write(&p).unwrap();
        let back = InstallMeta::read(&p).unwrap();
        assert_eq!(back, m);
        assert!(back.layout().packaged);
        assert!(
            !sample().render().contains("package"),
            "{}",
            sample().render()
        );
        let marker = dir.path().join("packaging.toml");
        assert_eq!(Packaging::read(&marker).unwrap(), None);
        std::fs::write(&marker, Packaging::for_manager("rpm").render()).unwrap();
        let got = Packaging::read(&marker).unwrap().unwrap();
        assert!(got.upgrade.contains("rpm"), "{got:?}");
        std::fs::write(&marker, "manager = 3\n").unwrap();
        let e = Packaging::read(&marker).unwrap_err();
        assert!(e.to_string().contains("packaging.toml"), "{e}");
    }
}
