//! The `[catalog]` section of the root-owned `/etc/banger/config.toml`: where image catalogs
//! come from, which keys sign them and how large their artefacts may be. The owner's daemon
//! asks for it over the bus (`Root1.GetCatalogSettings`) and does the pulling itself, as the
//! owner user; it cannot read the file, and no D-Bus caller can change what it says.
//!
//! The download limits are `[update]`'s connect and read timeouts and redirect hosts. Key files
//! are read as root trusts files (root-owned, not writable by others, no links); their PEM text
//! is passed on and parsed by the daemon, which also trusts the embedded release key.

use std::path::Path;

use banger_api::wire::CatalogSettings;

use crate::config::{ConfigError, read_config_file, read_trusted_text};
use crate::update::config::{DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_READ_TIMEOUT_SECS, KEY_CAP};

/// Largest artefact downloaded when `max_artefact_bytes` is not set: 8 GiB.
pub const DEFAULT_MAX_ARTEFACT_BYTES: u64 = 8 << 30;
/// Largest image made when `max_unpacked_bytes` is not set: 32 GiB.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 32 << 30;

/// Reads `[catalog]` (and `[update]`'s download limits) from the file at `path`; a missing file
/// or section means no catalog (an empty URL).
pub fn load(path: &Path) -> Result<CatalogSettings, ConfigError> {
    let file = read_config_file(path)?;
    let c = file.catalog;
    let invalid = |why: String| ConfigError::Invalid {
        path: path.into(),
        why,
    };
    let url = c.url.unwrap_or_default();
    if !url.is_empty()
        && !((url.starts_with("https://") || url.starts_with("http://")) && url.contains('/'))
    {
        return Err(invalid(format!(
            "catalog.url {url:?} is not an http(s) URL"
        )));
    }
    let mut trusted_keys = Vec::new();
    for kf in &c.trusted_key_files {
        let pem = read_trusted_text(kf, KEY_CAP)?.ok_or_else(|| ConfigError::Invalid {
            path: kf.clone(),
            why: format!(
                "the trusted key file named in [catalog] of {} does not exist",
                path.display()
            ),
        })?;
        trusted_keys.push((kf.display().to_string(), pem));
    }
    for (key, v) in [
        ("max_artefact_bytes", c.max_artefact_bytes),
        ("max_unpacked_bytes", c.max_unpacked_bytes),
    ] {
        if v == Some(0) {
            return Err(invalid(format!("catalog.{key} must be more than 0")));
        }
    }
    let u = file.update;
    Ok(CatalogSettings {
        url,
        trusted_keys,
        max_artefact_bytes: c.max_artefact_bytes.unwrap_or(DEFAULT_MAX_ARTEFACT_BYTES),
        max_unpacked_bytes: c.max_unpacked_bytes.unwrap_or(DEFAULT_MAX_UNPACKED_BYTES),
        connect_timeout_secs: u
            .connect_timeout_secs
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS)
            .max(1),
        read_timeout_secs: u
            .read_timeout_secs
            .unwrap_or(DEFAULT_READ_TIMEOUT_SECS)
            .max(1),
        redirect_hosts: u.redirect_hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_no_catalog_and_the_defaults() {
        let s = load(Path::new("/nonexistent/config.toml")).unwrap();
        assert_eq!(s.url, "");
        assert!(s.trusted_keys.is_empty());
        assert_eq!(s.max_artefact_bytes, DEFAULT_MAX_ARTEFACT_BYTES);
        assert_eq!(s.read_timeout_secs, DEFAULT_READ_TIMEOUT_SECS);
    }

    #[test]
    fn the_section_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pub");
        std::fs::write(&key, "PEM TEXT").unwrap();
        let p = dir.path().join("config.toml");
        let write = |text: &str| std::fs::write(&p, text).unwrap();
        write(&format!(
            "[catalog]\nurl = \"http://127.0.0.1:1/c/index.json\"\ntrusted_key_files = [{key:?}]\n\
             max_artefact_bytes = 5\n[update]\nread_timeout_secs = 3\nredirect_hosts = [\"m\"]\n"
        ));
        if banger_host::users::current_uid() != 0 {
            // Only a root-owned file is read at all.
            assert!(matches!(load(&p), Err(ConfigError::Unsafe(_))));
            return;
        }
        let s = load(&p).unwrap();
        assert_eq!(s.url, "http://127.0.0.1:1/c/index.json");
        assert_eq!(
            s.trusted_keys,
            [(key.display().to_string(), "PEM TEXT".into())]
        );
        assert_eq!((s.max_artefact_bytes, s.read_timeout_secs), (5, 3));
        assert_eq!(s.redirect_hosts, ["m"]);
        for (text, want) in [
            (
                "[catalog]\nurl = \"file:///etc/passwd\"\n",
                "not an http(s) URL",
            ),
            ("[catalog]\nmax_unpacked_bytes = 0\n", "must be more than 0"),
            ("[catalog]\nmirror = \"x\"\n", "unknown field"),
            (
                "[catalog]\ntrusted_key_files = [\"/nonexistent/k.pub\"]\n",
                "does not exist",
            ),
        ] {
            write(text);
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
