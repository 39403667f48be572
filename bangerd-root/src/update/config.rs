//! Where updates come from and which keys are trusted: the `[update]` section of
//! `/etc/banger/config.toml` (read by [`crate::config`]) plus what is compiled in. Nothing a
//! D-Bus caller sends reaches this module.

use std::path::Path;
use std::time::Duration;

use banger_release::TrustedKeys;
use banger_release::signature::EMBEDDED_KEY;

pub use crate::config::ConfigError;
use crate::config::{read_config_file, read_trusted_text};

/// The manifest URL compiled in; a placeholder until a release server exists.
pub const DEFAULT_MANIFEST_URL: &str = "https://releases.banger.invalid/stable/manifest.json";
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

/// Largest trusted key file accepted.
pub(crate) const KEY_CAP: u64 = 64 << 10;
/// Seconds to connect, when `connect_timeout_secs` is not set.
pub(crate) const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Seconds without data before a download counts as stalled, when `read_timeout_secs` is not set.
pub(crate) const DEFAULT_READ_TIMEOUT_SECS: u64 = 15;

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
            connect_timeout: secs(u.connect_timeout_secs, DEFAULT_CONNECT_TIMEOUT_SECS),
            read_timeout: secs(u.read_timeout_secs, DEFAULT_READ_TIMEOUT_SECS),
            total_timeout: secs(u.total_timeout_secs, 600),
            redirect_hosts: u.redirect_hosts,
        })
    }

    /// The download limits of `[update]`.
    pub fn fetch_limits(&self) -> banger_fetch::FetchLimits {
        banger_fetch::FetchLimits {
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            total_timeout: self.total_timeout,
            redirect_hosts: self.redirect_hosts.clone(),
            redirect_setting: "[update] redirect_hosts",
        }
    }

    /// Resolves `href` (relative to the manifest's directory, or absolute).
    pub fn resolve(&self, href: &str) -> Result<String, String> {
        banger_fetch::resolve_href(&self.manifest_url, href, "the manifest")
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
