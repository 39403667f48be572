//! The update engine: prepare (download → verify → stage → sanity-run) and apply (swap →
//! restart → doctor → finalize, or roll back), driven by the journal so that a helper restart
//! or a kill at any step resumes to a complete old or a complete new install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::job::{JobResult, JobState, Stage};
use banger_api::names;
use banger_api::options::UpdateOptions;
use banger_api::time::unix_now;
use banger_host::build_info::BuildIdentity;
use banger_host::install::{InstallMeta, Layout, Owner, PROGRAMS};
use banger_host::systemd::{JobKind, Systemd};
use banger_release::sums::to_hex;
use banger_release::{Manifest, Sha256Sums, Version, tarball_name, verify_signature};

use super::config::UpdateConfig;
use super::daemon::DaemonPeer;
use super::job::{JobHandle, JobPublisher, result_word};
use super::journal::{self, FORMAT, Journal, Phase, SwapItem};
use super::stage;
use super::state::HelperState;
use crate::limits::{Caller, Shared};
use banger_fetch::{DownloadError, Fetcher};

/// Largest manifest accepted.
const MANIFEST_CAP: u64 = 1 << 20;
/// Largest SHA256SUMS accepted.
const SUMS_CAP: u64 = 64 << 10;
/// Largest signature file accepted.
const SIG_CAP: u64 = 16 << 10;

mod apply;
mod prepare;

pub use super::paths::{PENDING_MARKER, UpdatePaths};

/// Why an update could not be checked for or started. Nothing was done.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Another update job runs.
    #[error("an update is already running: job {path} (stage {stage}); nothing was done")]
    Busy {
        /// The running job's object path.
        path: String,
        /// Its stage.
        stage: Stage,
    },
    /// `install.toml` could not be read.
    #[error(transparent)]
    InstallMetadata(#[from] banger_host::install::MetaError),
    /// `install.toml` records a version that does not parse.
    #[error("installed version: {0}")]
    InstalledVersion(String),
    /// `[update]` in config.toml is wrong.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// No trusted key, or the manifest failed verification.
    #[error(transparent)]
    Release(#[from] banger_release::ReleaseError),
    /// The manifest could not be downloaded.
    #[error("{0}")]
    Download(String),
    /// The helper's own state file.
    #[error(transparent)]
    State(#[from] super::state::StateError),
    /// The journal could not be written.
    #[error("{0}; nothing was done")]
    Journal(String),
    /// The job could not be made visible.
    #[error("exporting the job: {0}")]
    Publish(String),
}

/// How a job ended before the point of no return.
enum Outcome {
    Finished { result: JobResult, message: String },
    Apply(Box<Journal>),
}

/// A failure before the point of no return: nothing on the install changed.
struct Refused(String);

impl<E: std::fmt::Display> From<E> for Refused {
    fn from(e: E) -> Self {
        Refused(e.to_string())
    }
}

/// The engine.
pub struct Engine {
    systemd: Systemd,
    layout: Layout,
    paths: UpdatePaths,
    publisher: Arc<dyn JobPublisher>,
    daemon: Arc<dyn DaemonPeer>,
    pause_at: Option<String>,
    job: Mutex<Option<Arc<JobHandle>>>,
    resumed: Mutex<Option<(Arc<JobHandle>, Journal)>>,
    manifests: Mutex<HashMap<String, Arc<Shared<ManifestBytes>>>>,
    recovering: bool,
}

/// How long a downloaded manifest is reused for `CheckForUpdate` callers who are neither root
/// nor the owner (root and the owner always get a fresh download).
pub const MANIFEST_MAX_AGE: Duration = Duration::from_secs(10);

/// How many times a journal write is tried before the update stops, and how long apart.
const JOURNAL_ATTEMPTS: u32 = 5;
const JOURNAL_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Writes the marker that makes `bangerd-root --resume-pending` (run at boot) start the helper,
/// which then finishes the update `job` from its journal.
fn write_pending_marker(path: &Path, job: u32) -> Result<(), String> {
    banger_host::fsutil::atomic_write(path, format!("{job}\n").as_bytes(), 0o600)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A manifest and its signature as downloaded, or why the download failed.
type ManifestBytes = Result<(Arc<Vec<u8>>, Arc<Vec<u8>>), String>;

impl Engine {
    /// An engine over the live system, making its jobs visible through `publisher` and asking
    /// the owner's `daemon` about its operations.
    pub fn new(
        systemd: Systemd,
        layout: Layout,
        paths: UpdatePaths,
        publisher: Arc<dyn JobPublisher>,
        daemon: Arc<dyn DaemonPeer>,
    ) -> Arc<Self> {
        let pause_at = std::env::var("BANGER_UPDATE_PAUSE_AT")
            .ok()
            .filter(|s| !s.is_empty());
        if let Some(p) = &pause_at {
            tracing::warn!("fault injection: updates will pause at journal state {p}");
        }
        Arc::new(Engine {
            systemd,
            layout,
            paths,
            publisher,
            daemon,
            pause_at,
            job: Mutex::new(None),
            resumed: Mutex::new(None),
            manifests: Mutex::new(HashMap::new()),
            recovering: false,
        })
    }

    /// An engine for `bangerd-root --recover`: it runs outside the helper's unit, owns no bus
    /// name and never restarts the helper itself (see [`Engine::recover`]).
    pub fn for_recovery(
        systemd: Systemd,
        layout: Layout,
        paths: UpdatePaths,
        publisher: Arc<dyn JobPublisher>,
        daemon: Arc<dyn DaemonPeer>,
    ) -> Arc<Self> {
        let mut engine = Arc::into_inner(Self::new(systemd, layout, paths, publisher, daemon))
            .expect("a new engine has one owner");
        engine.recovering = true;
        Arc::new(engine)
    }

    /// Finishes the update the journal records, without the helper that could not start: run
    /// by `bangerd-root-recover.service` (the unit systemd starts when `bangerd-root.service`
    /// fails), with the previous release's binary, `bangerd-root.previous`. An update that had
    /// passed its checks (finalizing) is completed; any other unfinished one is rolled back, and
    /// then `bangerd-root.service` (the restored, previous helper) is started again. Returns
    /// what was done.
    pub async fn recover(self: &Arc<Self>) -> Result<String, String> {
        let mut j = match Journal::load(&self.paths.journal) {
            Ok(Some(j)) => j,
            Ok(None) => return Ok("no update journal: nothing to recover".into()),
            Err(e) => return Err(e.to_string()),
        };
        match j.phase {
            Phase::Done | Phase::Preparing => {
                return Ok(format!(
                    "the last update (job {}) is {}: nothing to recover",
                    j.job_id,
                    j.phase.as_str()
                ));
            }
            Phase::Finalizing | Phase::RollingBack | Phase::RollbackRestartingHelper => {}
            _ => {
                let cause = j
                    .error
                    .clone()
                    .map(|c| format!("{c}; "))
                    .unwrap_or_default();
                j.error = Some(format!(
                    "{cause}the new bangerd-root could not start (see journalctl -u \
                     bangerd-root), so the update was rolled back by bangerd-root-recover"
                ));
                j.phase = Phase::RollingBack;
            }
        }
        tracing::warn!(
            job_id = j.job_id,
            phase = j.phase.as_str(),
            "recovering the update"
        );
        let handle = JobHandle::new(
            self.publisher.clone(),
            j.job_id,
            j.initiator_uid,
            &j.from.version,
        );
        handle.pass_point_of_no_return();
        self.drive(&handle, &mut j).await;
        let result = result_word(handle.status().result);
        self.systemd.reset_failed(names::ROOT_UNIT).await;
        self.systemd
            .run_job(JobKind::Start, names::ROOT_UNIT)
            .await
            .map_err(|e| format!("the update ended {result}, but starting bangerd-root: {e}"))?;
        Ok(format!(
            "update job {} ended {result}; bangerd-root started again",
            j.job_id
        ))
    }

    /// The job currently running, if any.
    pub fn running_job(&self) -> Option<Arc<JobHandle>> {
        self.job
            .lock()
            .unwrap()
            .clone()
            .filter(|j| j.status().state == JobState::Running)
    }

    /// `idle` or the running job's stage.
    pub fn update_state(&self) -> String {
        self.running_job()
            .map(|j| j.status().stage.as_str().to_string())
            .unwrap_or_else(|| banger_api::job::UPDATE_IDLE.into())
    }

    /// The running job's id, if a job runs.
    pub fn active_job(&self) -> Option<u32> {
        self.running_job().map(|j| j.id)
    }

    /// (current, latest, available) from the verified manifest. The configuration is read and
    /// the manifest verified on every call; its download is shared ([`Shared`]): one at a time,
    /// and for callers who are neither root nor the owner, reused for [`MANIFEST_MAX_AGE`].
    pub async fn check_for_update(
        &self,
        caller: Caller,
    ) -> Result<(String, String, bool), EngineError> {
        let meta = InstallMeta::read_trusted(&self.layout.install_toml())?;
        let installed =
            Version::parse(&meta.release.version).map_err(EngineError::InstalledVersion)?;
        let cfg = UpdateConfig::load(&self.paths.config)?;
        cfg.keys.require_some()?;
        let shared = self
            .manifests
            .lock()
            .unwrap()
            .entry(cfg.manifest_url.clone())
            .or_insert_with(|| Arc::new(Shared::new(MANIFEST_MAX_AGE)))
            .clone();
        let (bytes, sig) = shared
            .get(caller, || prepare::fetch_manifest_bytes(cfg.clone()))
            .await
            .map_err(EngineError::Download)?;
        let vm = Manifest::verify(&bytes, &sig, &cfg.keys, &cfg.channel, unix_now())?;
        Ok((
            installed.to_string(),
            vm.latest.to_string(),
            vm.latest > installed,
        ))
    }

    /// Starts an update job for a caller already authorized for `opts.action()`.
    pub async fn start(
        self: &Arc<Self>,
        opts: UpdateOptions,
        initiator_uid: u32,
    ) -> Result<u32, EngineError> {
        let from = {
            let mut slot = self.job.lock().unwrap();
            if let Some(j) = slot
                .as_ref()
                .filter(|j| j.status().state == JobState::Running)
            {
                return Err(EngineError::Busy {
                    path: names::job_path(j.id),
                    stage: j.status().stage,
                });
            }
            // Reserve the slot before any await, so two calls cannot both start.
            let meta = InstallMeta::read_trusted(&self.layout.install_toml())?;
            let mut state = HelperState::load(&self.paths.state)?;
            let id = state.take_job_id();
            state.save(&self.paths.state)?;
            let handle = JobHandle::new(
                self.publisher.clone(),
                id,
                initiator_uid,
                &meta.release.version,
            );
            *slot = Some(handle);
            meta
        };
        let handle = self.job.lock().unwrap().clone().expect("just set");
        let id = handle.id;
        let journal = Journal {
            format: FORMAT,
            job_id: id,
            initiator_uid,
            phase: Phase::Preparing,
            staging: self.staging_dir(&from, id),
            from: from.release,
            target: None,
            items: Vec::new(),
            touched: Vec::new(),
            store_snapshot: None,
            failing_before: Vec::new(),
            result: None,
            error: None,
        };
        if let Err(e) = journal.save(&self.paths.journal) {
            *self.job.lock().unwrap() = None;
            return Err(EngineError::Journal(e.to_string()));
        }
        self.export(&handle).await?;
        tracing::info!(
            message_id = banger_api::journal::UPDATE_STARTED,
            job_id = id,
            from_version = %journal.from.version,
            initiator_uid,
            "update job {id} started by uid {initiator_uid} on v{}",
            journal.from.version
        );
        let engine = self.clone();
        let h = handle.clone();
        tokio::spawn(async move { engine.run(h, opts, journal).await });
        Ok(id)
    }

    async fn export(&self, handle: &Arc<JobHandle>) -> Result<(), EngineError> {
        self.publisher
            .job_new(handle)
            .await
            .map_err(EngineError::Publish)?;
        self.publisher.state_changed().await;
        Ok(())
    }

    /// The package manager that owns the install, if one does (then `banger update` must not
    /// replace its files). An install whose metadata cannot be read is not known to be
    /// packaged: the update itself then refuses on the metadata.
    pub fn package(&self) -> Option<banger_host::install::Packaging> {
        InstallMeta::read_trusted(&self.layout.install_toml())
            .ok()
            .and_then(|m| m.package)
    }

    /// The layout of the install `meta` describes (its prefix), on this engine's root.
    fn installed_layout(&self, meta: &InstallMeta) -> Layout {
        let mut l = meta.layout();
        l.root = self.layout.root.clone();
        l
    }

    /// Staging for job `id`: next to the binaries, on the same filesystem.
    fn staging_dir(&self, meta: &InstallMeta, id: u32) -> PathBuf {
        self.installed_layout(meta)
            .prefix_path("lib/banger/.staging")
            .join(format!("job-{id}"))
    }

    fn staged_install_toml(&self, id: u32) -> PathBuf {
        self.layout
            .etc_dir()
            .join(format!(".install.toml.job-{id}.new"))
    }

    fn cleanup_staging(&self, j: &Journal) {
        if let Some(snap) = &j.store_snapshot {
            let _ = std::fs::remove_file(snap);
        }
        let _ = std::fs::remove_dir_all(&j.staging);
        let _ = std::fs::remove_file(self.staged_install_toml(j.job_id));
        if let Some(root) = j.staging.parent() {
            let _ = std::fs::remove_dir(root);
        }
    }

    /// Records the end of the update and tells its followers. The marker that makes a boot
    /// finish an interrupted update goes once the end is recorded.
    async fn finish(&self, handle: &JobHandle, j: &mut Journal, result: JobResult, error: &str) {
        j.set_result(result, error);
        match self.record(j).await {
            Ok(()) => {
                if let Err(e) = banger_host::fsutil::remove_if_exists(&self.paths.pending_marker) {
                    tracing::warn!("removing {}: {e}", self.paths.pending_marker.display());
                }
            }
            Err(e) => tracing::error!("{e}"),
        }
        self.announce_end(handle, result, error).await;
    }

    /// Tells the job's followers how it ended (the job's properties, `Finished`, `JobRemoved`).
    async fn announce_end(&self, handle: &JobHandle, result: JobResult, error: &str) {
        handle.finish(result, error).await;
        self.publisher.job_removed(handle, result).await;
        self.publisher.state_changed().await;
    }

    async fn run(self: Arc<Self>, handle: Arc<JobHandle>, opts: UpdateOptions, mut j: Journal) {
        match self.prepare(&handle, &opts, &mut j).await {
            Ok(Outcome::Finished { result, message }) => {
                self.cleanup_staging(&j);
                self.finish(&handle, &mut j, result, &message).await;
            }
            Ok(Outcome::Apply(journal)) => {
                if handle.pass_point_of_no_return() {
                    let mut journal = *journal;
                    self.drive(&handle, &mut journal).await;
                } else {
                    // Canceled after the last check but before the swap began: honour it.
                    self.cleanup_staging(&j);
                    self.finish(&handle, &mut j, JobResult::Canceled, "canceled by request")
                        .await;
                }
            }
            Err(Refused(msg)) => {
                self.cleanup_staging(&j);
                let canceled = handle.cancel.load(Ordering::SeqCst);
                if canceled {
                    self.finish(&handle, &mut j, JobResult::Canceled, "canceled by request")
                        .await;
                } else {
                    self.finish(&handle, &mut j, JobResult::Failed, &clean_refusal(&msg))
                        .await;
                }
            }
        }
    }

    /// Writes the journal, retrying a failed write a few times (a disk that is full for a
    /// moment); the error once it keeps failing.
    async fn record(&self, j: &Journal) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            match j.save(&self.paths.journal) {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= JOURNAL_ATTEMPTS => return Err(e.to_string()),
                Err(e) => {
                    tracing::warn!("{e}; trying again ({attempt} of {JOURNAL_ATTEMPTS})");
                    attempt += 1;
                    tokio::time::sleep(JOURNAL_RETRY_INTERVAL).await;
                }
            }
        }
    }

    /// Records `phase` before its step is taken, then pauses there if fault injection asks for
    /// it: until the pause marker is removed (the test then lets the update go on), or forever
    /// if the test kills the helper first. When the journal cannot be written, `j.phase` stays
    /// what the journal on disk says.
    async fn checkpoint(&self, j: &mut Journal, phase: Phase) -> Result<(), String> {
        let recorded = j.phase;
        j.phase = phase;
        if let Err(e) = self.record(j).await {
            j.phase = recorded;
            return Err(e);
        }
        if self.pause_at.as_deref() == Some(phase.as_str()) {
            tracing::warn!("update paused at {}", phase.as_str());
            if let Some(dir) = self.paths.pause_marker.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(&self.paths.pause_marker, phase.as_str());
            while self.paths.pause_marker.exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::warn!("update resumed at {}", phase.as_str());
        }
        Ok(())
    }

    /// On start: picks up an update the previous helper left unfinished (or shows how the last
    /// one ended, so a client can re-attach).
    pub async fn resume(self: &Arc<Self>) {
        let mut j = match Journal::load(&self.paths.journal) {
            Ok(Some(j)) => j,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("{e}; the next update will replace it");
                return;
            }
        };
        let handle = JobHandle::new(
            self.publisher.clone(),
            j.job_id,
            j.initiator_uid,
            &j.from.version,
        );
        if let Some(t) = &j.target {
            handle
                .update(|s| s.target_version = t.version.clone())
                .await;
        }
        *self.job.lock().unwrap() = Some(handle.clone());
        if let Err(e) = self.export(&handle).await {
            tracing::error!("{e}");
        }
        tracing::info!(
            job_id = j.job_id,
            phase = j.phase.as_str(),
            "resuming update journal"
        );
        match j.phase {
            Phase::Done | Phase::Preparing => {
                // A marker left by a crash between the end's record and its own removal.
                let _ = banger_host::fsutil::remove_if_exists(&self.paths.pending_marker);
                if j.phase == Phase::Preparing {
                    self.cleanup_staging(&j);
                    let why = "the helper stopped before the point of no return";
                    j.set_result(JobResult::Failed, why);
                    handle.log_outcome(JobResult::Failed, why);
                    if let Err(e) = j.save(&self.paths.journal) {
                        tracing::error!("{e}");
                    }
                }
                // Readable as finished at once; `Finished` is re-sent by `continue_resumed`
                // once the name is owned, so clients following the name see it.
                let (result, error) = (j.ended(), j.error.clone().unwrap_or_default());
                handle.update(|s| s.end(result, &error)).await;
                *self.resumed.lock().unwrap() = Some((handle, j));
            }
            _ => {
                match j.phase {
                    Phase::Swapping => {
                        if j.error.is_none() {
                            j.error =
                                Some("the update was interrupted while swapping files".into());
                        }
                        j.phase = Phase::RollingBack;
                    }
                    // The restart happened (or the old helper died just before asking):
                    // whatever runs now is the binary on disk, which is the new one.
                    Phase::RestartingHelper => j.phase = Phase::Verifying,
                    _ => {}
                }
                // Past the point of no return: no cancel, and the stage it will resume at (not
                // the `checking` a new job starts with).
                handle.pass_point_of_no_return();
                let (stage, progress) = j.phase.stage();
                handle.stage(stage, progress).await;
                *self.resumed.lock().unwrap() = Some((handle, j));
            }
        }
    }

    /// Continues the update picked up by [`Engine::resume`]; call once the helper owns its bus
    /// name, so the checks it runs (the new doctor) see a complete service.
    pub fn continue_resumed(self: &Arc<Self>) {
        if let Some((handle, mut j)) = self.resumed.lock().unwrap().take() {
            let engine = self.clone();
            tokio::spawn(async move { engine.drive(&handle, &mut j).await });
        }
    }
}

/// A refusal as `Job.Error` shows it: the `failed` result already says nothing was changed, so
/// messages from lower layers that say it too are trimmed.
fn clean_refusal(msg: &str) -> String {
    let mut m = msg.trim();
    while let Some(rest) = m.strip_suffix("; nothing was changed") {
        m = rest.trim_end();
    }
    m.to_string()
}
