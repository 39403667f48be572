//! `/etc/banger/config.toml`, the admin's configuration: the one reader of the file, and its
//! sections as written. `crate::update::config` checks `[update]`, `crate::vm::config` checks
//! `[vm]` and `[network]`, `crate::catalog` checks `[catalog]`; each depends on this module and
//! on nothing of the others.
//!
//! The file must be a regular file owned by root and not writable by others, in directories
//! only root can change, not reached through a link; every key must be known.

use std::path::{Path, PathBuf};

use banger_host::fsutil::{TrustError, read_root_owned};
use serde::Deserialize;

/// The admin configuration file.
pub const CONFIG_FILE: &str = "/etc/banger/config.toml";

/// The whole configuration file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) update: FileUpdate,
    #[serde(default)]
    pub(crate) vm: VmSection,
    #[serde(default)]
    pub(crate) network: NetworkSection,
    #[serde(default)]
    pub(crate) catalog: CatalogSection,
}

/// `[catalog]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogSection {
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) trusted_key_files: Vec<PathBuf>,
    pub(crate) max_artefact_bytes: Option<u64>,
    pub(crate) max_unpacked_bytes: Option<u64>,
}

/// `[update]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileUpdate {
    pub(crate) manifest_url: Option<String>,
    pub(crate) channel: Option<String>,
    #[serde(default)]
    pub(crate) trusted_key_files: Vec<PathBuf>,
    pub(crate) max_download_bytes: Option<u64>,
    pub(crate) connect_timeout_secs: Option<u64>,
    pub(crate) read_timeout_secs: Option<u64>,
    pub(crate) total_timeout_secs: Option<u64>,
    #[serde(default)]
    pub(crate) redirect_hosts: Vec<String>,
}

/// `[vm]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VmSection {
    pub(crate) backend: Option<String>,
}

/// `[network]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkSection {
    pub(crate) bridge: Option<String>,
    pub(crate) subnet: Option<String>,
    pub(crate) nat: Option<bool>,
    pub(crate) isolate: Option<bool>,
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

/// Reads `path` as a file root trusts ([`read_root_owned`]); `None` when it does not exist.
pub(crate) fn read_trusted_text(path: &Path, cap: u64) -> Result<Option<String>, ConfigError> {
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
