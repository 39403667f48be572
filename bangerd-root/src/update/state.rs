//! What the helper remembers between updates: the anti-rollback high-water mark, the newest
//! manifest seen, and the next job id. Root-only file in the helper's state directory.

use std::path::{Path, PathBuf};

use banger_release::Version;
use serde::{Deserialize, Serialize};

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It exists and does not parse.
    #[error("{} is unreadable ({why}); fix or remove it", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        why: String,
    },
    /// Reading, creating its directory or writing failed.
    #[error("{doing} {}: {source}", path.display())]
    Io {
        /// "reading", "creating", "writing".
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The helper's persistent update state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperState {
    /// Highest version installed on, or verified and staged by, this host.
    pub highest_version: Option<String>,
    /// Issue time (Unix seconds) of the newest verified manifest.
    #[serde(default)]
    pub newest_manifest_issued_at: u64,
    /// Next job id to hand out.
    #[serde(default)]
    pub next_job_id: u32,
}

impl HelperState {
    /// Loads the state; a missing file is the empty state, a corrupt one is an error.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read_to_string(path) {
            Ok(t) => toml::from_str(&t).map_err(|e| StateError::Corrupt {
                path: path.to_path_buf(),
                why: e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Io {
                doing: "reading",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Saves the state atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                doing: "creating",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let text = format!(
            "# bangerd-root update state: anti-rollback high-water mark. Do not edit.\n{}",
            toml::to_string(self).expect("state serializes")
        );
        banger_host::fsutil::atomic_write(path, text.as_bytes(), 0o600).map_err(|source| {
            StateError::Io {
                doing: "writing",
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The high-water mark as a version.
    pub fn highest(&self) -> Option<Version> {
        self.highest_version
            .as_deref()
            .and_then(|v| Version::parse(v).ok())
    }

    /// Raises the high-water mark to `v` if it is higher.
    pub fn raise(&mut self, v: &Version) {
        if self.highest().is_none_or(|h| *v > h) {
            self.highest_version = Some(v.to_string());
        }
    }

    /// Hands out a job id.
    pub fn take_job_id(&mut self) -> u32 {
        self.next_job_id = self.next_job_id.max(1);
        let id = self.next_job_id;
        self.next_job_id += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_only_goes_up_and_ids_increase() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        let mut s = HelperState::load(&p).unwrap();
        assert_eq!(s.take_job_id(), 1);
        assert_eq!(s.take_job_id(), 2);
        s.raise(&Version::parse("0.2.0").unwrap());
        s.raise(&Version::parse("0.1.0").unwrap());
        assert_eq!(s.highest_version.as_deref(), Some("0.2.0"));
        s.save(&p).unwrap();
        assert_eq!(HelperState::load(&p).unwrap(), s);
        std::fs::write(&p, "next_job_id = \"x\"").unwrap();
        assert!(matches!(
            HelperState::load(&p).unwrap_err(),
            StateError::Corrupt { .. }
        ));
    }
}
