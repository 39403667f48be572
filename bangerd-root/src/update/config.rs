//! Where updates come from and which keys are trusted: `/etc/banger/config.toml` (root-owned)
//! plus what is compiled in. Nothing a D-Bus caller sends reaches this module.
//!
//! The same file holds the `[vm]` and `[network]` sections; [`read_config_file`] is the one
//! reader for all of it, and `crate::vm::config` checks those two sections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_host::fsutil::{TrustError, read_root_owned};
use banger_release::TrustedKeys;
use banger_release::signature::EMBEDDED_KEY;
use serde::Deserialize;

/// The manifest URL compiled in; a placeholder until a release server exists.
pub const DEFAULT_MANIFEST_URL: &str = "https://releases.banger.invalid/stable/manifest.json";
/// The admin configuration file.
pub const CONFIG_FILE: &str = "/etc/banger/config.toml";

/// The whole configuration file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    update: FileUpdate,
    #[serde(default)]
    pub(crate) vm: crate::vm::config::VmSection,
    #[serde(default)]
    pub(crate) network: crate::vm::config::NetworkSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpdate {
    manifest_url: Option<String>,
    channel: Option<String>,
    #[serde(default)]
    trusted_key_files: Vec<PathBuf>,
    max_download_bytes: Option<u64>,
    connect_timeout_secs: Option<u64>,
    read_timeout_secs: Option<u64>,
    total_timeout_secs: Option<u64>,
    #[serde(default)]
    redirect_hosts: Vec<String>,
}

/// The effective update configuration.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// URL of `manifest.json`.
    pub manifest_url: String,
    /// Channel this host follows.
    pub channel: String,
    /// Keys signatures may verify against.
    pub keys: TrustedKeys,
    /// Cap on the tarball download.
    pub max_download_bytes: u64,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest stall of a single read.
    pub read_timeout: Duration,
    /// Longest whole download.
    pub total_timeout: Duration,
    /// Hosts a release server may redirect to besides its own (same scheme only).
    pub redirect_hosts: Vec<String>,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable or malformed.
    #[error("{path}: {why}; nothing was changed")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Not a regular file owned and writable only by root, in directories only root can change.
    #[error("{0}")]
    Unsafe(TrustError),
}

/// Largest configuration file accepted.
const CONFIG_CAP: u64 = 1 << 20;
/// Largest trusted key file accepted.
const KEY_CAP: u64 = 64 << 10;

/// Reads `path` as a file root trusts ([`read_root_owned`]); `None` when it does not exist.
fn read_trusted_text(path: &Path, cap: u64) -> Result<Option<String>, ConfigError> {
    match read_root_owned(path, cap) {
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                path: path.into(),
                why: "not UTF-8 text".into(),
            }),
        Ok(None) => Ok(None),
        Err(e @ TrustError::Unsafe { .. }) => Err(ConfigError::Unsafe(e)),
        Err(e) => Err(ConfigError::Invalid {
            path: path.into(),
            why: e.to_string(),
        }),
    }
}

/// Reads and parses the configuration file at `path`: a regular file owned by root and not
/// writable by others, in directories only root can change, not reached through a link; every
/// key must be known. A missing file reads as all defaults.
pub(crate) fn read_config_file(path: &Path) -> Result<FileConfig, ConfigError> {
    match read_trusted_text(path, CONFIG_CAP)? {
        Some(text) => toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            why: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        }),
        None => Ok(FileConfig::default()),
    }
}

impl UpdateConfig {
    /// Loads `path` (a missing file means the compiled-in defaults).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let u = read_config_file(path)?.update;
        let mut keys = TrustedKeys::default();
        keys.add_pem("the embedded release key", EMBEDDED_KEY);
        for kf in &u.trusted_key_files {
            let pem = read_trusted_text(kf, KEY_CAP)?.ok_or_else(|| ConfigError::Invalid {
                path: kf.clone(),
                why: format!(
                    "the trusted key file named in {} does not exist",
                    path.display()
                ),
            })?;
            keys.add_pem(&kf.display().to_string(), &pem);
        }
        let manifest_url = u
            .manifest_url
            .unwrap_or_else(|| DEFAULT_MANIFEST_URL.into());
        if !(manifest_url.starts_with("https://") || manifest_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                why: format!("update.manifest_url {manifest_url:?} is not an http(s) URL"),
            });
        }
        let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d).max(1));
        Ok(UpdateConfig {
            manifest_url,
            channel: u.channel.unwrap_or_else(|| "stable".into()),
            keys,
            max_download_bytes: u.max_download_bytes.unwrap_or(256 << 20),
            connect_timeout: secs(u.connect_timeout_secs, 10),
            read_timeout: secs(u.read_timeout_secs, 15),
            total_timeout: secs(u.total_timeout_secs, 600),
            redirect_hosts: u.redirect_hosts,
        })
    }

    /// Resolves `href` (relative to the manifest's directory, or absolute).
    pub fn resolve(&self, href: &str) -> Result<String, String> {
        if href.starts_with("https://") || href.starts_with("http://") {
            return Ok(href.to_string());
        }
        if href.is_empty()
            || href.starts_with('/')
            || href.split('/').any(|seg| seg == ".." || seg == ".")
            || href.contains(['?', '#', '\\', ' '])
        {
            return Err(format!(
                "the manifest names an unsafe relative URL {href:?}"
            ));
        }
        let base = match self.manifest_url.rfind('/') {
            Some(i) => &self.manifest_url[..=i],
            None => return Err("the manifest URL has no path".into()),
        };
        Ok(format!("{base}{href}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file_and_placeholder_key() {
        let c = UpdateConfig::load(Path::new("/nonexistent/config.toml")).unwrap();
        assert_eq!(c.manifest_url, DEFAULT_MANIFEST_URL);
        assert!(c.keys.is_empty(), "the embedded key is a placeholder");
        assert!(
            c.keys
                .require_some()
                .unwrap_err()
                .to_string()
                .contains("placeholder")
        );
    }

    #[test]
    fn relative_urls_resolve_and_unsafe_ones_are_refused() {
        let mut c = UpdateConfig::load(Path::new("/nonexistent")).unwrap();
        c.manifest_url = "http://127.0.0.1:8787/stable/manifest.json".into();
        assert_eq!(
            c.resolve("0.2.0/SHA256SUMS").unwrap(),
            "http://127.0.0.1:8787/stable/0.2.0/SHA256SUMS"
        );
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "a?b"] {
            assert!(c.resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_and_unsafe_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "[update]\nmanifest_url = 3\n").unwrap();
        let e = UpdateConfig::load(&p).unwrap_err();
        if banger_host::users::current_uid() == 0 {
            assert!(e.to_string().contains("invalid type"), "{e}");
            std::fs::write(&p, "[update]\nmirror = \"x\"\n").unwrap();
            assert!(
                UpdateConfig::load(&p)
                    .unwrap_err()
                    .to_string()
                    .contains("unknown field")
            );
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&p, "[update]\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
            assert!(matches!(
                UpdateConfig::load(&p),
                Err(ConfigError::Unsafe(_))
            ));
        } else {
            assert!(matches!(e, ConfigError::Unsafe(_)), "{e}");
        }
    }
}
