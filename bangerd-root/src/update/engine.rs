//! The update engine: prepare (download → verify → stage → sanity-run) and apply (swap →
//! restart → doctor → finalize, or roll back), driven by the journal so that a helper restart
//! or a kill at any step resumes to a complete old or a complete new install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::error::BusError;
use banger_api::job::{JobResult, JobState, Stage};
use banger_api::names::{self, action};
use banger_api::options::update as keys;
use banger_api::proxies::Daemon1Proxy;
use banger_api::time::unix_now;
use banger_host::build_info::BuildIdentity;
use banger_host::install::{InstallMeta, Layout, Owner, PROGRAMS};
use banger_host::systemd::{JobKind, Systemd};
use banger_release::sums::to_hex;
use banger_release::{Manifest, Sha256Sums, Version, tarball_name, verify_signature};
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

use super::config::UpdateConfig;
use super::download::{DownloadError, Fetcher};
use super::job::{JobHandle, JobPublisher, result_word};
use super::journal::{self, FORMAT, Journal, Phase, SwapItem};
use super::stage;
use super::state::HelperState;
use crate::limits::{Caller, Shared};

/// Largest manifest accepted.
const MANIFEST_CAP: u64 = 1 << 20;
/// Largest SHA256SUMS accepted.
const SUMS_CAP: u64 = 64 << 10;
/// Largest signature file accepted.
const SIG_CAP: u64 = 16 << 10;

pub use super::paths::{PENDING_MARKER, UpdatePaths};

/// What the caller asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// A chosen version (else the latest stable).
    pub version: Option<String>,
    /// Stop after staging and the sanity run.
    pub dry_run: bool,
    /// Proceed despite operations in flight; reinstall the installed version.
    pub force: bool,
    /// Allow going below the anti-rollback floor.
    pub allow_downgrade: bool,
}

impl UpdateOptions {
    /// Parses the `a{sv}` options, naming any unknown key or wrong type.
    pub fn from_dbus(map: &HashMap<String, OwnedVariant>) -> Result<Self, BusError> {
        let mut o = UpdateOptions::default();
        for (k, v) in map {
            let bad = || {
                BusError::InvalidArgument(format!(
                    "option {k:?} has the wrong type {} ; nothing was done",
                    v.value_signature()
                ))
            };
            match k.as_str() {
                keys::VERSION => {
                    let s = String::try_from(v.clone()).map_err(|_| bad())?;
                    Version::parse(&s)
                        .map_err(|e| BusError::InvalidArgument(format!("{e}; nothing was done")))?;
                    o.version = Some(s.trim_start_matches('v').to_string());
                }
                keys::DRY_RUN => o.dry_run = bool::try_from(v.clone()).map_err(|_| bad())?,
                keys::FORCE => o.force = bool::try_from(v.clone()).map_err(|_| bad())?,
                keys::ALLOW_DOWNGRADE => {
                    o.allow_downgrade = bool::try_from(v.clone()).map_err(|_| bad())?
                }
                other => {
                    return Err(BusError::InvalidArgument(format!(
                        "unknown option {other:?} (known: {}); nothing was done",
                        keys::ALL.join(", ")
                    )));
                }
            }
        }
        Ok(o)
    }

    /// The polkit action these options need.
    pub fn action(&self) -> &'static str {
        if self.allow_downgrade {
            action::UPDATE_DOWNGRADE
        } else if self.version.is_some() {
            action::UPDATE_PINNED
        } else {
            action::UPDATE
        }
    }
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
    conn: Connection,
    systemd: Systemd,
    layout: Layout,
    paths: UpdatePaths,
    publisher: Arc<dyn JobPublisher>,
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
    /// An engine over the live system, making its jobs visible through `publisher`.
    pub fn new(
        conn: Connection,
        systemd: Systemd,
        layout: Layout,
        paths: UpdatePaths,
        publisher: Arc<dyn JobPublisher>,
    ) -> Arc<Self> {
        let pause_at = std::env::var("BANGER_UPDATE_PAUSE_AT")
            .ok()
            .filter(|s| !s.is_empty());
        if let Some(p) = &pause_at {
            tracing::warn!("fault injection: updates will pause at journal state {p}");
        }
        Arc::new(Engine {
            conn,
            systemd,
            layout,
            paths,
            publisher,
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
        conn: Connection,
        systemd: Systemd,
        layout: Layout,
        paths: UpdatePaths,
        publisher: Arc<dyn JobPublisher>,
    ) -> Arc<Self> {
        let mut engine = Arc::into_inner(Self::new(conn, systemd, layout, paths, publisher))
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
            job = j.job_id,
            phase = j.phase.as_str(),
            "recovering the update"
        );
        let handle = JobHandle::new(
            self.conn.clone(),
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

    /// The running job's path, `/` when none.
    pub fn active_job(&self) -> OwnedObjectPath {
        self.running_job()
            .map(|j| j.path.clone())
            .unwrap_or_else(|| OwnedObjectPath::try_from("/").expect("root path"))
    }

    /// (current, latest, available) from the verified manifest. The configuration is read and
    /// the manifest verified on every call; its download is shared ([`Shared`]): one at a time,
    /// and for callers who are neither root nor the owner, reused for [`MANIFEST_MAX_AGE`].
    pub async fn check_for_update(
        &self,
        caller: Caller,
    ) -> Result<(String, String, bool), BusError> {
        let meta = InstallMeta::read_trusted(&self.layout.install_toml())
            .map_err(|e| BusError::InstallMetadata(e.to_string()))?;
        let installed = Version::parse(&meta.release.version)
            .map_err(|e| BusError::InstallMetadata(format!("installed version: {e}")))?;
        let cfg =
            UpdateConfig::load(&self.paths.config).map_err(|e| BusError::Failed(e.to_string()))?;
        cfg.keys
            .require_some()
            .map_err(|e| BusError::Failed(e.to_string()))?;
        let shared = self
            .manifests
            .lock()
            .unwrap()
            .entry(cfg.manifest_url.clone())
            .or_insert_with(|| Arc::new(Shared::new(MANIFEST_MAX_AGE)))
            .clone();
        let (bytes, sig) = shared
            .get(caller, || fetch_manifest_bytes(cfg.clone()))
            .await
            .map_err(BusError::Failed)?;
        let vm = Manifest::verify(&bytes, &sig, &cfg.keys, &cfg.channel, unix_now())
            .map_err(|e| BusError::Failed(e.to_string()))?;
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
    ) -> Result<OwnedObjectPath, BusError> {
        let from = {
            let mut slot = self.job.lock().unwrap();
            if let Some(j) = slot
                .as_ref()
                .filter(|j| j.status().state == JobState::Running)
            {
                return Err(BusError::Busy(format!(
                    "an update is already running: job {} (stage {}); nothing was done",
                    j.path.as_str(),
                    j.status().stage
                )));
            }
            // Reserve the slot before any await, so two calls cannot both start.
            let meta = InstallMeta::read_trusted(&self.layout.install_toml())
                .map_err(|e| BusError::InstallMetadata(e.to_string()))?;
            let mut state = HelperState::load(&self.paths.state).map_err(BusError::Failed)?;
            let id = state.take_job_id();
            state.save(&self.paths.state).map_err(BusError::Failed)?;
            let handle =
                JobHandle::new(self.conn.clone(), id, initiator_uid, &meta.release.version);
            *slot = Some(handle);
            meta
        };
        let handle = self.job.lock().unwrap().clone().expect("just set");
        let id = handle.status().id;
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
            return Err(BusError::Failed(format!("{e}; nothing was done")));
        }
        self.export(&handle).await?;
        let engine = self.clone();
        let h = handle.clone();
        tokio::spawn(async move { engine.run(h, opts, journal).await });
        Ok(handle.path.clone())
    }

    async fn export(&self, handle: &Arc<JobHandle>) -> Result<(), BusError> {
        self.publisher
            .job_new(handle)
            .await
            .map_err(|e| BusError::Failed(format!("exporting the job: {e}")))?;
        self.root1_changed().await;
        Ok(())
    }

    async fn root1_changed(&self) {
        self.publisher
            .state_changed(self.update_state(), self.active_job())
            .await;
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
        self.root1_changed().await;
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

    fn check_cancel(handle: &JobHandle) -> Result<(), Refused> {
        if handle.cancel.load(Ordering::SeqCst) {
            Err(Refused("canceled".into()))
        } else {
            Ok(())
        }
    }

    async fn prepare(
        &self,
        handle: &Arc<JobHandle>,
        opts: &UpdateOptions,
        j: &mut Journal,
    ) -> Result<Outcome, Refused> {
        handle.stage(Stage::Checking, 0.02).await;
        let meta = InstallMeta::read_trusted(&self.layout.install_toml())?;
        let installed = Version::parse(&meta.release.version).map_err(Refused)?;
        let cfg = UpdateConfig::load(&self.paths.config)?;
        cfg.keys.require_some()?;
        let vm = fetch_manifest(&cfg).await?;
        let mut state = HelperState::load(&self.paths.state).map_err(Refused)?;
        if vm.issued_at < state.newest_manifest_issued_at {
            return Err(Refused(format!(
                "the release manifest was issued at {}, before one this host already verified ({}): refusing a replayed older manifest",
                vm.manifest.issued_at,
                banger_api::time::rfc3339(state.newest_manifest_issued_at)
            )));
        }
        state.newest_manifest_issued_at = vm.issued_at;
        state.save(&self.paths.state).map_err(Refused)?;
        let target = match &opts.version {
            Some(v) => Version::parse(v).map_err(Refused)?,
            None => vm.latest.clone(),
        };
        handle
            .update(|s| s.target_version = target.to_string())
            .await;
        let entry = vm.find(&target)?.clone();
        if target == installed && !opts.force {
            return Ok(Outcome::Finished {
                result: JobResult::UpToDate,
                message: String::new(),
            });
        }
        let floor = match state.highest() {
            Some(h) if h > installed => h,
            _ => installed.clone(),
        };
        if target < floor && !opts.allow_downgrade {
            return Err(Refused(format!(
                "v{target} is older than v{floor} (installed on or verified by this host): refusing to go back (anti-rollback); ask for a downgrade explicitly (--allow-downgrade)"
            )));
        }
        if entry.size > cfg.max_download_bytes {
            return Err(Refused(format!(
                "the v{target} tarball is {} bytes, over the configured limit of {} bytes",
                entry.size, cfg.max_download_bytes
            )));
        }
        Self::check_cancel(handle)?;

        handle.stage(Stage::Downloading, 0.05).await;
        handle.update(|s| s.bytes_total = entry.size).await;
        let sums_url = cfg.resolve(&entry.sums).map_err(Refused)?;
        let sig_url = cfg.resolve(&entry.sums_sig).map_err(Refused)?;
        let tar_url = cfg.resolve(&entry.tarball).map_err(Refused)?;
        let fetcher = Arc::new(Fetcher::new(&cfg));
        let (sums, sums_sig) = {
            let f = fetcher.clone();
            let (a, b) = (sums_url.clone(), sig_url.clone());
            blocking(move || {
                Ok::<_, DownloadError>((f.fetch_small(&a, SUMS_CAP)?, f.fetch_small(&b, SIG_CAP)?))
            })
            .await?
        };
        verify_signature(
            &cfg.keys,
            &format!("SHA256SUMS of v{target}"),
            &sums,
            &sums_sig,
        )?;
        let want = Sha256Sums::parse(&sums)?.digest_of(&tarball_name(&target))?;

        let _ = std::fs::remove_dir_all(&j.staging);
        std::fs::create_dir_all(j.staging.join("bin"))
            .map_err(|e| Refused(format!("creating {}: {e}", j.staging.display())))?;
        let tarball = j.staging.join(tarball_name(&target));
        let fetched = {
            let f = fetcher.clone();
            let h = handle.clone();
            let rt = tokio::runtime::Handle::current();
            let path = tarball.clone();
            let (size, cap) = (entry.size, cfg.max_download_bytes);
            blocking(move || {
                let mut last = std::time::Instant::now();
                f.fetch_to_file(&tar_url, size, cap, &path, &h.cancel, &mut |done| {
                    if last.elapsed() > Duration::from_millis(100) || done == size {
                        last = std::time::Instant::now();
                        let progress = 0.05 + 0.65 * (done as f64 / size.max(1) as f64);
                        let h = h.clone();
                        rt.spawn(async move {
                            h.update(|s| {
                                s.bytes_done = done;
                                s.progress = progress;
                            })
                            .await
                        });
                    }
                })
            })
            .await?
        };
        handle.update(|s| s.bytes_done = fetched.bytes).await;
        Self::check_cancel(handle)?;

        handle.stage(Stage::Verifying, 0.72).await;
        if fetched.sha256 != want {
            return Err(Refused(format!(
                "{} does not match SHA256SUMS: got {}, signed {}",
                tarball_name(&target),
                to_hex(&fetched.sha256),
                to_hex(&want)
            )));
        }

        handle.stage(Stage::Staging, 0.75).await;
        {
            let (t, d) = (tarball.clone(), j.staging.join("bin"));
            blocking(move || stage::extract(&t, &d)).await?;
        }
        let _ = std::fs::remove_file(&tarball);

        handle.stage(Stage::SanityCheck, 0.8).await;
        let (identity, migrates) =
            sanity_check(&j.staging.join("bin"), &target, &meta.owner).await?;
        state.raise(&target);
        state.save(&self.paths.state).map_err(Refused)?;
        handle
            .update(|s| s.target_version = identity.version.clone())
            .await;
        if opts.dry_run {
            return Ok(Outcome::Finished {
                result: JobResult::DryRun,
                message: String::new(),
            });
        }
        Self::check_cancel(handle)?;

        handle.stage(Stage::WaitingForOperations, 0.82).await;
        if !opts.force {
            let busy = self.operations_in_flight().await?;
            if !busy.is_empty() {
                return Err(Refused(format!(
                    "bangerd has operations in flight: {}; wait for them or use --force",
                    busy.join(", ")
                )));
            }
        }
        Self::check_cancel(handle)?;

        // What is already broken on this host (say, no VMM installed) is not the new release's
        // fault: the doctor after the swap is judged against this.
        j.failing_before = self
            .failing_checks_now(&self.installed_layout(&meta).program("banger"))
            .await;

        // A new bangerd that migrates the store would leave one the old bangerd refuses after a
        // rollback: keep a copy, made by the installed (old) bangerd, to restore then.
        let live_store = self.layout.store();
        if migrates && live_store.exists() {
            let snap = live_store.with_file_name("banger.db.pre-update");
            let _ = std::fs::remove_file(&snap);
            let old_bangerd = self.installed_layout(&meta).program("bangerd");
            let arg = snap.to_string_lossy().to_string();
            // As the owner: the directory is theirs, so root must not write or chown there.
            let out = run_with_timeout(
                &old_bangerd,
                &["--system", "--snapshot-store", &arg],
                Some(&meta.owner),
            )
            .await?;
            if !out.status.success() {
                let _ = std::fs::remove_file(&snap);
                return Err(Refused(format!(
                    "copying the store before the update failed: {}",
                    String::from_utf8_lossy(&out.stdout).trim()
                )));
            }
            j.store_snapshot = Some(snap);
        }

        // The new install metadata, from the new binary's own identity.
        let new_meta = InstallMeta {
            installed_at: banger_api::time::rfc3339(unix_now()),
            release: identity.clone(),
            ..meta.clone()
        };
        let staged_meta = self.staged_install_toml(j.job_id);
        new_meta
            .write(&staged_meta)
            .map_err(|e| Refused(format!("writing {}: {e}", staged_meta.display())))?;
        let mut items: Vec<SwapItem> = PROGRAMS
            .iter()
            .map(|p| SwapItem {
                target: self.installed_layout(&meta).program(p),
                staged: j.staging.join("bin").join(p),
            })
            .collect();
        items.push(SwapItem {
            target: self.layout.install_toml(),
            staged: staged_meta,
        });
        journal::clear_stale_backups(&items).map_err(Refused)?;
        j.target = Some(identity);
        j.items = items;
        Ok(Outcome::Apply(Box::new(j.clone())))
    }

    async fn operations_in_flight(&self) -> Result<Vec<String>, Refused> {
        let d = Daemon1Proxy::new(&self.conn).await?;
        let r: zbus::Result<Option<Vec<banger_api::wire::OperationInfo>>> = d
            .inner()
            .call_with_flags(
                "ListOperations",
                zbus::proxy::MethodFlags::NO_AUTO_START,
                &(),
            )
            .await;
        match r {
            Ok(ops) => Ok(ops
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.done)
                .map(|o| format!("{} ({}, {})", o.id, o.kind, o.stage))
                .collect()),
            // Not running: nothing can be in flight.
            Err(zbus::Error::FDO(e))
                if matches!(
                    e.as_ref(),
                    zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
                ) =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(Refused(format!(
                "cannot ask bangerd for operations in flight ({e}); use --force to update anyway"
            ))),
        }
    }

    /// Shows the stage of `phase` on the job.
    async fn announce(handle: &JobHandle, phase: Phase) {
        let (stage, progress) = phase.stage();
        handle.stage(stage, progress).await;
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

    /// Announces and records `phase`. A step whose phase could not be recorded is taken only
    /// when resuming from what the journal does record would take it too (rolling back, when
    /// the journal already says the update is being undone); otherwise the update stops here,
    /// and `false` is returned: the journal stays at the last phase it records, which the next
    /// start of the helper resumes from.
    async fn enter(&self, handle: &JobHandle, j: &mut Journal, phase: Phase) -> bool {
        Self::announce(handle, phase).await;
        let recorded = j.phase;
        match self.checkpoint(j, phase).await {
            Ok(()) => true,
            Err(_) if phase.undoes() && recorded.resumes_as().undoes() => {
                tracing::warn!(
                    "could not record phase {} in the update journal; going on, as the recorded \
                     phase {} also leads there",
                    phase.as_str(),
                    recorded.as_str()
                );
                j.phase = phase;
                true
            }
            Err(e) => {
                let msg = format!(
                    "the update journal could not be written ({e}), so the update stopped before \
                     {}: the journal still records {}, and the next start of bangerd-root takes it \
                     on from there (make room on the disk, then: sudo banger system restart)",
                    phase.as_str(),
                    recorded.as_str()
                );
                tracing::error!("{msg}");
                let cause = j
                    .error
                    .clone()
                    .map(|c| format!("{c}; "))
                    .unwrap_or_default();
                self.announce_end(handle, JobResult::Failed, &format!("{cause}{msg}"))
                    .await;
                false
            }
        }
    }

    /// Runs the journal to its end from wherever it stands.
    async fn drive(&self, handle: &Arc<JobHandle>, j: &mut Journal) {
        let mut phase = j.phase;
        if phase == Phase::Preparing {
            // Nothing has changed yet: the marker that makes a boot finish an interrupted
            // update, then the journal, are written before the first file is touched.
            let marked = write_pending_marker(&self.paths.pending_marker, j.job_id);
            let recorded = match marked {
                Ok(()) => {
                    Self::announce(handle, Phase::Swapping).await;
                    self.checkpoint(j, Phase::Swapping).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                self.cleanup_staging(j);
                let _ = banger_host::fsutil::remove_if_exists(&self.paths.pending_marker);
                self.finish(
                    handle,
                    j,
                    JobResult::Failed,
                    &format!("recording the update before its first change failed: {e}"),
                )
                .await;
                return;
            }
            phase = Phase::Swapping;
        } else if phase != Phase::Done && !self.enter(handle, j, phase).await {
            return;
        }
        loop {
            match phase {
                Phase::Preparing => unreachable!("mapped above"),
                Phase::Swapping => {
                    let mut failed = None;
                    for item in j.items.clone() {
                        if !j.touched.contains(&item.target) {
                            j.touched.push(item.target.clone());
                            if let Err(e) = self.record(j).await {
                                // Its backup is not recorded, so it is not made: undo the
                                // others (resuming from the journal would do the same).
                                j.touched.pop();
                                failed = Some(format!("recording it in the update journal: {e}"));
                                break;
                            }
                        }
                        if let Err(e) = journal::swap_one(&item) {
                            failed = Some(e);
                            break;
                        }
                    }
                    phase = match failed {
                        Some(e) => {
                            j.error = Some(format!("swapping files failed: {e}"));
                            Phase::RollingBack
                        }
                        None => Phase::RestartingDaemon,
                    };
                }
                Phase::RestartingDaemon => {
                    phase = match self.restart_daemon().await {
                        Ok(()) => Phase::RestartingHelper,
                        Err(e) => {
                            j.error = Some(format!("the new bangerd did not come up: {e}"));
                            Phase::RollingBack
                        }
                    };
                }
                Phase::RestartingHelper => {
                    // Hand over to the new binary, which resumes from the journal at
                    // `verifying` (see `resume`): this process does not come back here.
                    match self
                        .systemd
                        .queue_job(JobKind::Restart, names::ROOT_UNIT)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!("restarting bangerd-root onto the new binary");
                            std::future::pending::<()>().await;
                        }
                        Err(e) => {
                            j.error = Some(format!("restarting bangerd-root failed: {e}"));
                            phase = Phase::RollingBack;
                        }
                    }
                }
                Phase::Verifying => {
                    phase = match self.run_doctor(j).await {
                        Ok(()) => Phase::Finalizing,
                        Err(e) => {
                            j.error = Some(format!("the new install is unhealthy: {e}"));
                            Phase::RollingBack
                        }
                    };
                }
                Phase::Finalizing => {
                    let errors = journal::drop_backups(&j.items);
                    self.cleanup_staging(j);
                    if let Some(t) = &j.target
                        && let (Ok(mut state), Ok(v)) = (
                            HelperState::load(&self.paths.state),
                            Version::parse(&t.version),
                        )
                    {
                        state.raise(&v);
                        let _ = state.save(&self.paths.state);
                    }
                    let note = if errors.is_empty() {
                        String::new()
                    } else {
                        format!("updated, but cleaning up failed: {}", errors.join("; "))
                    };
                    self.finish(handle, j, JobResult::Updated, &note).await;
                    return;
                }
                Phase::RollingBack => {
                    let mut errors = journal::restore(&j.items, &j.touched);
                    errors.extend(self.restore_store(j).await);
                    self.cleanup_staging(j);
                    if !errors.is_empty() {
                        let cause = j.error.clone().unwrap_or_default();
                        let msg = format!(
                            "{cause}; ROLLBACK INCOMPLETE: {}; the install may be mixed: reinstall with sudo banger system install",
                            errors.join("; ")
                        );
                        self.finish(handle, j, JobResult::Failed, &msg).await;
                        return;
                    }
                    if let Err(e) = self.restart_daemon().await {
                        let cause = j.error.clone().unwrap_or_default();
                        j.error = Some(format!(
                            "{cause}; the old bangerd did not come back either: {e}"
                        ));
                    }
                    phase = Phase::RollbackRestartingHelper;
                }
                Phase::RollbackRestartingHelper => {
                    if BuildIdentity::current() != j.from && !self.recovering {
                        Self::announce(handle, Phase::RestartingHelper).await;
                        // The new helper is running: hand back to the restored old binary.
                        if self
                            .systemd
                            .queue_job(JobKind::Restart, names::ROOT_UNIT)
                            .await
                            .is_ok()
                        {
                            std::future::pending::<()>().await;
                        }
                    }
                    let err = j.error.clone().unwrap_or_default();
                    self.finish(handle, j, JobResult::RolledBack, &err).await;
                    return;
                }
                Phase::Done => {
                    let err = j.error.clone().unwrap_or_default();
                    handle.finish(j.ended(), &err).await;
                    return;
                }
            }
            if !matches!(phase, Phase::Done) && !self.enter(handle, j, phase).await {
                return;
            }
        }
    }

    /// Puts back the copy of the store taken before a new bangerd migrated it, if there is one
    /// (the changes the new bangerd made since the swap are given up with it). bangerd is stopped
    /// first, so that no daemon writes to the store being replaced, or leaves a journal of it
    /// behind. Idempotent: once restored, the copy is gone. Returns what went wrong.
    async fn restore_store(&self, j: &Journal) -> Vec<String> {
        let Some(snap) = j.store_snapshot.clone().filter(|s| s.exists()) else {
            return Vec::new();
        };
        if let Err(e) = self
            .systemd
            .run_job(JobKind::Stop, names::DAEMON_UNIT)
            .await
        {
            return vec![format!(
                "stopping bangerd before restoring the store failed ({e}), so the store was not \
                 restored from {}",
                snap.display()
            )];
        }
        match journal::restore_store(&snap, &self.layout.store()) {
            Ok(()) => {
                tracing::info!(snapshot = %snap.display(), "bangerd stopped; store restored");
                Vec::new()
            }
            Err(e) => vec![e],
        }
    }

    async fn restart_daemon(&self) -> Result<(), String> {
        self.systemd.reset_failed(names::DAEMON_UNIT).await;
        self.systemd
            .run_job(JobKind::Restart, names::DAEMON_UNIT)
            .await
            .map_err(|e| e.to_string())?;
        let d = Daemon1Proxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..100 {
            if d.ready().await.unwrap_or(false) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("bangerd did not report Ready within 10 s".into())
    }

    /// Runs `banger doctor` with a time limit.
    async fn doctor(banger: &Path) -> Result<std::process::Output, String> {
        tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(banger)
                .arg("doctor")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| format!("{} doctor did not finish within 120 s", banger.display()))?
        .map_err(|e| format!("running {} doctor: {e}", banger.display()))
    }

    /// The checks the installed doctor reports failing now (none if it cannot be run: then
    /// the new install is judged strictly).
    async fn failing_checks_now(&self, banger: &Path) -> Vec<String> {
        match Self::doctor(banger).await {
            Ok(out) => failing_checks(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .map(|(name, line)| {
                    tracing::warn!("before the update: {line}");
                    name.to_string()
                })
                .collect(),
            Err(e) => {
                tracing::warn!("{e}");
                Vec::new()
            }
        }
    }

    async fn run_doctor(&self, j: &Journal) -> Result<(), String> {
        let banger = j
            .items
            .iter()
            .map(|i| i.target.clone())
            .find(|t| t.file_name().is_some_and(|n| n == "banger"))
            .ok_or("the journal names no banger binary")?;
        let out = Self::doctor(&banger).await?;
        judge_doctor(
            &j.failing_before,
            out.status.success(),
            &String::from_utf8_lossy(&out.stdout),
        )
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
            self.conn.clone(),
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
            tracing::error!("{}", e.message());
        }
        tracing::info!(
            job = j.job_id,
            phase = j.phase.as_str(),
            "resuming update journal"
        );
        match j.phase {
            Phase::Done | Phase::Preparing => {
                // A marker left by a crash between the end's record and its own removal.
                let _ = banger_host::fsutil::remove_if_exists(&self.paths.pending_marker);
                if j.phase == Phase::Preparing {
                    self.cleanup_staging(&j);
                    j.set_result(
                        JobResult::Failed,
                        "the helper stopped before the point of no return",
                    );
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

async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Refused>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| Refused(e.to_string())),
        Err(e) => Err(Refused(format!("internal task failed: {e}"))),
    }
}

/// Downloads the manifest and its signature (not verified yet).
async fn fetch_manifest_bytes(cfg: UpdateConfig) -> ManifestBytes {
    let fetcher = Fetcher::new(&cfg);
    let url = cfg.manifest_url;
    blocking(move || {
        Ok::<_, DownloadError>((
            Arc::new(fetcher.fetch_small(&url, MANIFEST_CAP)?),
            Arc::new(fetcher.fetch_small(&format!("{url}.sig"), SIG_CAP)?),
        ))
    })
    .await
    .map_err(|Refused(m)| m)
}

async fn fetch_manifest(
    cfg: &UpdateConfig,
) -> Result<banger_release::manifest::VerifiedManifest, Refused> {
    cfg.keys.require_some()?;
    let (bytes, sig) = fetch_manifest_bytes(cfg.clone()).await.map_err(Refused)?;
    Ok(Manifest::verify(
        &bytes,
        &sig,
        &cfg.keys,
        &cfg.channel,
        unix_now(),
    )?)
}

/// Runs the staged binaries: each must report `target`, all the same build, and the staged
/// bangerd must accept the live store.
/// Returns the staged build's identity and whether its bangerd will migrate the store.
/// The store is read as its owner, never as root.
async fn sanity_check(
    dir: &Path,
    target: &Version,
    owner: &Owner,
) -> Result<(BuildIdentity, bool), Refused> {
    let mut identity: Option<BuildIdentity> = None;
    for program in PROGRAMS {
        let path = dir.join(program);
        let out = run_with_timeout(&path, &["--version"], None).await?;
        let id = BuildIdentity::parse_version_line(program, &String::from_utf8_lossy(&out.stdout))
            .map_err(|e| Refused(format!("staged {program} --version: {e}")))?;
        if Version::parse(&id.version).as_ref() != Ok(target) {
            return Err(Refused(format!(
                "staged {program} reports v{}, but the signed release is v{target}",
                id.version
            )));
        }
        match &identity {
            Some(first) if *first != id => {
                return Err(Refused(format!(
                    "the staged binaries are from different builds ({program}: commit {}, built {}; others: commit {}, built {})",
                    id.commit, id.built_at, first.commit, first.built_at
                )));
            }
            _ => identity = Some(id),
        }
    }
    let identity = identity.expect("three programs checked");
    // A helper that cannot start would leave an install nothing can roll back: the old helper
    // hands over and exits. So it must show it starts before anything is swapped.
    crate::selftest::check_staged_helper(&dir.join("bangerd-root"), &identity.version)
        .await
        .map_err(|e| {
            Refused(format!(
                "{e}; refusing to install a helper that cannot start"
            ))
        })?;
    let mut migrates = false;
    let out = run_with_timeout(
        &dir.join("bangerd"),
        &["--check-migrations", "--system"],
        Some(owner),
    )
    .await?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => {}
        Some(1) => migrates = true,
        Some(2) => {
            return Err(Refused(format!(
                "the new bangerd refuses the store: {line}"
            )));
        }
        _ => {
            return Err(Refused(format!(
                "staged bangerd --check-migrations failed ({}): {line}",
                out.status
            )));
        }
    }
    Ok((identity, migrates))
}

/// `banger doctor`'s FAIL lines, with each check's name.
fn failing_checks(stdout: &str) -> Vec<(&str, &str)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("FAIL ")?;
            Some((rest.split_once(':').map_or(rest, |(name, _)| name), l))
        })
        .collect()
}

/// Whether the doctor after an update passes: no check fails that did not fail before it.
/// Already-failing checks are logged, not blamed on the release.
fn judge_doctor(failing_before: &[String], success: bool, stdout: &str) -> Result<(), String> {
    if success {
        return Ok(());
    }
    let all = failing_checks(stdout);
    if all.is_empty() {
        return Err(format!(
            "banger doctor failed without saying which check: {}",
            stdout.trim()
        ));
    }
    let (known, new): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(name, _)| failing_before.iter().any(|b| b == name));
    for (_, line) in &known {
        tracing::warn!("still failing, as before the update: {line}");
    }
    if new.is_empty() {
        Ok(())
    } else {
        Err(new
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// Runs `path args`, as `as_user` when given (else as root), for at most 20 s.
async fn run_with_timeout(
    path: &Path,
    args: &[&str],
    as_user: Option<&Owner>,
) -> Result<std::process::Output, Refused> {
    let mut cmd = tokio::process::Command::new(path);
    cmd.args(args).kill_on_drop(true);
    if let Some(o) = as_user {
        cmd.uid(o.uid)
            .gid(o.gid)
            .env("HOME", &o.home)
            .env("USER", &o.user);
        // The standard library drops root's supplementary groups before setuid.
    }
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .map_err(|_| {
            Refused(format!(
                "{} {} did not finish within 20 s",
                path.display(),
                args.join(" ")
            ))
        })?
        .map_err(|e| Refused(format!("running {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: &str = "PASS install.toml: v0.2.0\n\
        FAIL vm backend: no VMM installed: install qemu-system-x86\n\
        WARN accelerator: tcg\n\
        FAIL tun device: /dev/net/tun has mode 0600\n";

    #[test]
    fn doctor_lines_name_their_checks() {
        assert_eq!(
            failing_checks(AFTER)
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>(),
            ["vm backend", "tun device"]
        );
    }

    #[test]
    fn checks_failing_before_the_update_are_not_blamed_on_it() {
        let before = ["vm backend".to_string(), "tun device".to_string()];
        assert_eq!(judge_doctor(&before, false, AFTER), Ok(()));
        assert_eq!(judge_doctor(&[], true, ""), Ok(()));
    }

    #[test]
    fn a_check_the_release_broke_rolls_it_back() {
        let e = judge_doctor(&["vm backend".to_string()], false, AFTER).unwrap_err();
        assert_eq!(e, "FAIL tun device: /dev/net/tun has mode 0600");
        let e = judge_doctor(&[], false, AFTER).unwrap_err();
        assert!(e.contains("vm backend") && e.contains("tun device"), "{e}");
    }

    #[test]
    fn a_doctor_that_fails_without_a_fail_line_rolls_it_back() {
        let before = ["vm backend".to_string()];
        let e = judge_doctor(&before, false, "thread 'main' panicked\n").unwrap_err();
        assert!(e.contains("without saying which check"), "{e}");
    }
}
