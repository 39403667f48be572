//! The update's on-disk journal and the file swaps it records.
//!
//! Every transition is written (atomically, fsynced) *before* the step it announces, so a
//! process killed at any point leaves a journal that says what may have happened. Every step
//! is idempotent, so resuming simply runs the recorded step again: forward when the new files
//! are all in place, backwards (rollback) otherwise. Both the old and the new binary read this
//! format; change it only additively.

use std::path::{Path, PathBuf};

use banger_api::job::{JobResult, Stage};
use banger_host::build_info::BuildIdentity;
use serde::{Deserialize, Serialize};

/// Journal format version.
pub const FORMAT: u32 = 1;

/// Where the update stands. Written before the step it names is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Downloading, verifying, staging; nothing on the install has changed.
    Preparing,
    /// Replacing files; some may be new, some old.
    Swapping,
    /// All files are new; restarting bangerd.
    RestartingDaemon,
    /// bangerd is up on the new version; the helper restarts itself.
    RestartingHelper,
    /// Running the new `banger doctor`.
    Verifying,
    /// Healthy: removing backups and staging.
    Finalizing,
    /// Restoring the old files.
    RollingBack,
    /// Old files restored; the helper restarts itself onto the old binary.
    RollbackRestartingHelper,
    /// Finished; `result` says how.
    Done,
}

impl Phase {
    /// The journal's name for the phase (as in `BANGER_UPDATE_PAUSE_AT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preparing => "preparing",
            Phase::Swapping => "swapping",
            Phase::RestartingDaemon => "restarting-daemon",
            Phase::RestartingHelper => "restarting-helper",
            Phase::Verifying => "verifying",
            Phase::Finalizing => "finalizing",
            Phase::RollingBack => "rolling-back",
            Phase::RollbackRestartingHelper => "rollback-restarting-helper",
            Phase::Done => "done",
        }
    }

    /// Whether this phase undoes the update.
    pub fn undoes(self) -> bool {
        matches!(self, Phase::RollingBack | Phase::RollbackRestartingHelper)
    }

    /// The phase a helper that starts with this one in the journal goes on with (see
    /// `Engine::resume`): an interrupted swap is undone; a helper that finds
    /// `restarting-helper` is the new one, and verifies the install.
    pub fn resumes_as(self) -> Phase {
        match self {
            Phase::Swapping => Phase::RollingBack,
            Phase::RestartingHelper => Phase::Verifying,
            p => p,
        }
    }

    /// The job's `Stage` and `Progress` while the update is in this phase.
    pub fn stage(self) -> (Stage, f64) {
        match self {
            Phase::Preparing => (Stage::Checking, 0.0),
            Phase::Swapping => (Stage::Swapping, 0.85),
            Phase::RestartingDaemon => (Stage::RestartingDaemon, 0.88),
            Phase::RestartingHelper => (Stage::RestartingHelper, 0.9),
            Phase::Verifying => (Stage::VerifyingInstall, 0.95),
            Phase::Finalizing => (Stage::Finalizing, 0.98),
            Phase::RollingBack | Phase::RollbackRestartingHelper => (Stage::RollingBack, 0.9),
            Phase::Done => (Stage::Done, 1.0),
        }
    }
}

/// A file replaced by the update: `staged` is renamed over `target`, whose old content is kept
/// as `target.previous` until the update is finalized or rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapItem {
    /// Installed path.
    pub target: PathBuf,
    /// New content, on the same filesystem.
    pub staged: PathBuf,
}

impl SwapItem {
    /// The backup path.
    pub fn backup(&self) -> PathBuf {
        let mut s = self.target.clone().into_os_string();
        s.push(".previous");
        PathBuf::from(s)
    }
}

/// The journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// [`FORMAT`].
    pub format: u32,
    /// The job this update belongs to.
    pub job_id: u32,
    /// Who asked for it.
    pub initiator_uid: u32,
    /// Where it stands.
    pub phase: Phase,
    /// The install before the update.
    pub from: BuildIdentity,
    /// The release being installed (as its staged binaries report it).
    pub target: Option<BuildIdentity>,
    /// Staging directory.
    pub staging: PathBuf,
    /// Files to swap, in order.
    pub items: Vec<SwapItem>,
    /// Targets whose backup may exist (recorded before each backup is made).
    pub touched: Vec<PathBuf>,
    /// A copy of the store taken before a new bangerd may migrate it; restored on rollback.
    #[serde(default)]
    pub store_snapshot: Option<PathBuf>,
    /// Doctor checks that already failed before the update (the installed `banger doctor`):
    /// the new install is not rolled back for them.
    #[serde(default)]
    pub failing_before: Vec<String>,
    /// Final result (`updated`, `rolled-back`, `failed`, …) once done. Kept as the word, so a
    /// journal that another release wrote stays readable; see [`Journal::ended`].
    pub result: Option<String>,
    /// Why it failed or rolled back.
    pub error: Option<String>,
}

/// Errors reading or writing the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// I/O.
    #[error("update journal {path}: {why}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

impl Journal {
    /// Records how the update ended.
    pub fn set_result(&mut self, result: JobResult, error: &str) {
        self.phase = Phase::Done;
        self.result = Some(result.as_str().into());
        self.error = (!error.is_empty()).then(|| error.into());
    }

    /// How the recorded update ended: a word this release does not know, or none, reads as
    /// `failed` (the journal then says nothing this helper can vouch for).
    pub fn ended(&self) -> JobResult {
        self.result
            .as_deref()
            .and_then(JobResult::parse)
            .unwrap_or(JobResult::Failed)
    }

    /// Reads the journal at `path`, if any.
    pub fn load(path: &Path) -> Result<Option<Journal>, JournalError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| JournalError::Io {
                    path: path.into(),
                    why: format!("unreadable: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(JournalError::Io {
                path: path.into(),
                why: e.to_string(),
            }),
        }
    }

    /// Writes the journal atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec_pretty(self).expect("journal serializes");
        banger_host::fsutil::atomic_write(path, &bytes, 0o600).map_err(|e| JournalError::Io {
            path: path.into(),
            why: e.to_string(),
        })
    }
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

fn sync_parent(p: &Path) -> Result<(), String> {
    let dir = p.parent().unwrap_or(Path::new("/"));
    banger_host::fsutil::sync_dir(dir).map_err(|e| io("syncing", dir, e))
}

/// Removes backups left by an earlier update, but only those that are another link to, or a
/// byte-identical copy of, what is installed now. A backup that differs is kept and the update
/// refused: after a rollback that could not finish, it may be the only copy left of the previous
/// install.
pub fn clear_stale_backups(items: &[SwapItem]) -> Result<(), String> {
    for item in items {
        let backup = item.backup();
        if !backup.exists() {
            continue;
        }
        if !same_content(&backup, &item.target).map_err(|e| io("comparing", &backup, e))? {
            return Err(format!(
                "{} is left from an update that did not finish cleanly and differs from {}: it \
                 may be the only copy of the previous install, so it was kept; compare the two, \
                 keep what you need and remove it, or reinstall with: sudo banger system install",
                backup.display(),
                item.target.display()
            ));
        }
        banger_host::fsutil::remove_if_exists(&backup)
            .map_err(|e| io("removing stale backup", &backup, e))?;
    }
    Ok(())
}

/// Whether `a` and `b` are the same file or have the same bytes.
fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (ma, mb) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
        return Ok(true);
    }
    if ma.len() != mb.len() {
        return Ok(false);
    }
    Ok(std::fs::read(a)? == std::fs::read(b)?)
}

/// Swaps one item: keeps the old file as a hard-linked backup, then renames the staged file
/// over it. The target path is never missing. Idempotent.
pub fn swap_one(item: &SwapItem) -> Result<(), String> {
    let backup = item.backup();
    if !item.staged.exists() {
        // Already renamed in an earlier run.
        return if item.target.exists() && backup.exists() {
            Ok(())
        } else {
            Err(format!("staged file {} is gone", item.staged.display()))
        };
    }
    if !backup.exists() {
        std::fs::hard_link(&item.target, &backup).map_err(|e| io("backing up", &item.target, e))?;
    }
    std::fs::rename(&item.staged, &item.target).map_err(|e| io("replacing", &item.target, e))?;
    sync_parent(&item.target)
}

/// Restores every touched target from its backup, in reverse order. Idempotent. Returns every
/// error (it keeps going, so as much as possible is restored).
pub fn restore(items: &[SwapItem], touched: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items.iter().rev().filter(|i| touched.contains(&i.target)) {
        let backup = item.backup();
        if backup.exists() {
            // If the swap had not happened yet, backup and target are links to the same file:
            // rename does nothing then, and the backup is removed below.
            if let Err(e) = std::fs::rename(&backup, &item.target) {
                errors.push(io("restoring", &item.target, e));
                continue;
            }
            if let Err(e) = banger_host::fsutil::remove_if_exists(&backup) {
                errors.push(io("removing", &backup, e));
            }
            if let Err(e) = sync_parent(&item.target) {
                errors.push(e);
            }
        }
    }
    errors
}

/// Puts `snapshot` back as the store at `store`. The caller has stopped bangerd. What SQLite
/// keeps next to the store (a rollback journal, a write-ahead log and its index) belongs to the
/// store being replaced: left there, a hot journal would be played back into the restored copy.
/// So they go first; then the rename, and the directory is synced. Idempotent only in the sense
/// that a missing snapshot means it was restored already (the caller checks).
pub fn restore_store(snapshot: &Path, store: &Path) -> Result<(), String> {
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut side = store.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        banger_host::fsutil::remove_if_exists(&side)
            .map_err(|e| io("removing the replaced store's", &side, e))?;
    }
    std::fs::rename(snapshot, store).map_err(|e| io("restoring the store from", snapshot, e))?;
    sync_parent(store)
}

/// Removes the backups after a successful update. Idempotent.
pub fn drop_backups(items: &[SwapItem]) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items {
        if let Err(e) = banger_host::fsutil::remove_if_exists(&item.backup()) {
            errors.push(io("removing", &item.backup(), e));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Vec<SwapItem>) {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("stage");
        std::fs::create_dir(&stage).unwrap();
        let mut items = Vec::new();
        for n in ["a", "b", "c"] {
            let target = dir.path().join(n);
            std::fs::write(&target, format!("old {n}")).unwrap();
            let staged = stage.join(n);
            std::fs::write(&staged, format!("new {n}")).unwrap();
            items.push(SwapItem { target, staged });
        }
        (dir, items)
    }

    fn contents(items: &[SwapItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| std::fs::read_to_string(&i.target).unwrap())
            .collect()
    }

    #[test]
    fn swap_then_restore_is_exactly_old() {
        let (_d, items) = setup();
        let touched: Vec<PathBuf> = items.iter().map(|i| i.target.clone()).collect();
        for i in &items {
            swap_one(i).unwrap();
            swap_one(i).unwrap(); // idempotent
        }
        assert_eq!(contents(&items), ["new a", "new b", "new c"]);
        assert!(restore(&items, &touched).is_empty());
        assert_eq!(contents(&items), ["old a", "old b", "old c"]);
        assert!(items.iter().all(|i| !i.backup().exists()));
        assert!(
            restore(&items, &touched).is_empty(),
            "restore is idempotent"
        );
    }

    #[test]
    fn interrupted_between_backup_and_rename_restores_cleanly() {
        let (_d, items) = setup();
        // As if killed right after the hard link of the second item.
        swap_one(&items[0]).unwrap();
        std::fs::hard_link(&items[1].target, items[1].backup()).unwrap();
        let touched = vec![items[0].target.clone(), items[1].target.clone()];
        assert!(restore(&items, &touched).is_empty());
        assert_eq!(contents(&items), ["old a", "old b", "old c"]);
        assert!(items.iter().all(|i| !i.backup().exists()));
    }

    #[test]
    fn finalize_drops_backups_and_keeps_new() {
        let (_d, items) = setup();
        for i in &items {
            swap_one(i).unwrap();
        }
        assert!(drop_backups(&items).is_empty());
        assert_eq!(contents(&items), ["new a", "new b", "new c"]);
        assert!(items.iter().all(|i| !i.backup().exists()));
    }

    #[test]
    fn a_stale_backup_is_removed_only_when_it_is_no_last_copy() {
        let (_d, items) = setup();
        // A second link to the target, and a byte-identical copy: both go.
        std::fs::hard_link(&items[0].target, items[0].backup()).unwrap();
        std::fs::write(items[1].backup(), "old b").unwrap();
        clear_stale_backups(&items).unwrap();
        assert!(!items[0].backup().exists() && !items[1].backup().exists());
        // A different file may be the only copy of the previous install: kept, and refused.
        std::fs::write(items[2].backup(), "previous c").unwrap();
        let e = clear_stale_backups(&items).unwrap_err();
        assert!(
            e.contains("may be the only copy of the previous install"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(items[2].backup()).unwrap(),
            "previous c"
        );
    }

    #[test]
    fn the_store_comes_back_without_the_replaced_stores_journal() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("banger.db");
        let snap = d.path().join("banger.db.pre-update");
        std::fs::write(&store, "migrated").unwrap();
        std::fs::write(&snap, "before").unwrap();
        for side in ["banger.db-journal", "banger.db-wal", "banger.db-shm"] {
            std::fs::write(d.path().join(side), "of the migrated store").unwrap();
        }
        restore_store(&snap, &store).unwrap();
        assert_eq!(std::fs::read_to_string(&store).unwrap(), "before");
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["banger.db"]);
        assert!(
            restore_store(&snap, &store).is_err(),
            "the copy is gone now"
        );
    }

    #[test]
    fn a_resumed_phase_shows_its_own_stage() {
        assert_eq!(Phase::Preparing.stage().0, Stage::Checking);
        for (phase, stage) in [
            (Phase::Swapping, "swapping"),
            (Phase::Verifying, "verifying-install"),
            (Phase::RollingBack, "rolling-back"),
            (Phase::RollbackRestartingHelper, "rolling-back"),
            (Phase::Finalizing, "finalizing"),
        ] {
            assert_eq!(phase.stage().0.as_str(), stage, "{phase:?}");
        }
    }

    #[test]
    fn journal_round_trips_and_names_phases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.json");
        assert!(Journal::load(&p).unwrap().is_none());
        let j = Journal {
            format: FORMAT,
            job_id: 3,
            initiator_uid: 1000,
            phase: Phase::RestartingHelper,
            from: BuildIdentity::current(),
            target: None,
            staging: dir.path().into(),
            items: vec![],
            touched: vec![],
            store_snapshot: None,
            failing_before: Vec::new(),
            result: None,
            error: None,
        };
        j.save(&p).unwrap();
        assert_eq!(Journal::load(&p).unwrap().unwrap(), j);
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("\"restarting-helper\"")
        );
        std::fs::write(&p, "{").unwrap();
        assert!(
            Journal::load(&p)
                .unwrap_err()
                .to_string()
                .contains("unreadable")
        );
    }
}
