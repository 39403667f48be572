//! The files the update engine keeps, in one place: the engine, the staged helper's self-test
//! and the boot-time resume all name them from here.

use std::path::PathBuf;

/// The marker of an update in progress (see [`UpdatePaths::pending_marker`]); the resume unit
/// names it in its `ConditionPathExists=`.
pub const PENDING_MARKER: &str = "/var/lib/banger-root/update-pending";

/// Files the engine keeps.
#[derive(Debug, Clone)]
pub struct UpdatePaths {
    /// The journal.
    pub journal: PathBuf,
    /// The anti-rollback state.
    pub state: PathBuf,
    /// `/etc/banger/config.toml`.
    pub config: PathBuf,
    /// Written when paused for fault injection.
    pub pause_marker: PathBuf,
    /// Exists from the first change an update makes until its end is recorded: while it does,
    /// `bangerd-root-resume.service` starts the helper at boot, to finish the update.
    pub pending_marker: PathBuf,
}

impl UpdatePaths {
    /// The live system's paths.
    pub fn system() -> Self {
        UpdatePaths {
            journal: PathBuf::from("/var/lib/banger-root/update-journal.json"),
            state: PathBuf::from("/var/lib/banger-root/state.toml"),
            config: PathBuf::from(crate::config::CONFIG_FILE),
            pause_marker: PathBuf::from("/run/banger/update-paused"),
            pending_marker: PathBuf::from(PENDING_MARKER),
        }
    }
}
