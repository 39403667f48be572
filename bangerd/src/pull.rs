//! Image pulls from the configured catalog (docs/images.md): fetch and verify the signed
//! index, download each artefact through SHA-256 with its exact signed size as the cap, refuse
//! a digest mismatch before anything is unpacked, unpack the bundle's role-named files (holes
//! kept), check them, then move the image into place and record it.
//!
//! A pull runs as a job ([`crate::jobs`]) that can be canceled. Everything it writes is in
//! `images/.pull-<name>-<random>/` until the last step, a rename; on failure or cancel that
//! directory is removed, so nothing is ever half-imported. The daemon runs as the owner user
//! in its sandbox: no pull ever writes as root, and no archive tool runs.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::ids::ImageName;
use banger_api::job::{JOB_KIND_IMAGE_PULL, PullStage};
use banger_api::time::unix_now;
use banger_api::wire::{CatalogEntryInfo, CatalogSettings, OperationStage};
use banger_fetch::{DownloadError, FetchLimits, Fetcher};
use banger_release::TrustedKeys;
use banger_release::catalog::{
    ArtefactFormat, CatalogEntry, CatalogError, CatalogIndex, EntryRef, VerifiedIndex,
};
use banger_release::signature::EMBEDDED_KEY;
use sha2::{Digest, Sha256};

use crate::images::{image_name_to_import, looks_like_kernel};
use crate::jobs::Job;
use crate::store::ImageRecord;
use crate::vms::{Change, VmError, Vms, random_id};

/// Largest index read.
const INDEX_CAP: u64 = 1 << 20;
/// Largest index signature read.
const SIG_CAP: u64 = 64 << 10;
/// The longest one download may take: the stall timeout and the exact size bound it already;
/// this only stops a server that trickles forever.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Where a redirect's other hosts are allowed (the download limits are `[update]`'s).
const REDIRECT_SETTING: &str = "[update] redirect_hosts";
/// Blocks written as holes when all zero.
const HOLE_BLOCK: usize = 64 << 10;
/// Prefix of a pull's temporary directory under `images/`.
pub(crate) const PULL_DIR_PREFIX: &str = ".pull-";

/// Why a pull failed. Each message names what was wrong; nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// `[catalog] url` is not set.
    #[error(
        "no catalog is configured: an admin sets url in the [catalog] section of \
         /etc/banger/config.toml (see docs/images.md)"
    )]
    NoCatalog,
    /// The index, or the entry asked for, was refused.
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// A download failed.
    #[error("{0}")]
    Download(DownloadError),
    /// An artefact is larger than the admin allows.
    #[error(
        "catalog entry {reference} is {size} bytes, more than the {cap} allowed by [catalog] \
         max_artefact_bytes"
    )]
    OverArtefactCap {
        /// The entry.
        reference: String,
        /// Its signed size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The image would be larger than the admin allows.
    #[error(
        "image {reference} takes up to {size} bytes unpacked, more than the {cap} allowed by \
         [catalog] max_unpacked_bytes"
    )]
    OverUnpackedCap {
        /// The entry.
        reference: String,
        /// Its unpacked size, kernel included.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The artefact's digest is not the signed one.
    #[error(
        "{url} does not match the SHA-256 the catalog signed for {reference} (got {got}, want \
         {want}); nothing was unpacked"
    )]
    Digest {
        /// Where it came from.
        url: String,
        /// The entry.
        reference: String,
        /// What it hashed to.
        got: String,
        /// What the index says.
        want: String,
    },
    /// A bundle member that is not allowed.
    #[error("refused bundle member {member:?} of {reference}: {why}")]
    Member {
        /// The entry.
        reference: String,
        /// The member's path as the bundle spells it.
        member: String,
        /// What is wrong with it.
        why: String,
    },
    /// A required member is missing.
    #[error("the bundle of {reference} holds no {member} file (bundle members: {allowed})")]
    MissingMember {
        /// The entry.
        reference: String,
        /// The missing role.
        member: &'static str,
        /// The roles a bundle of its kind holds.
        allowed: String,
    },
    /// The members are larger than the entry's signed `unpacked_size`.
    #[error(
        "the bundle of {reference} unpacks to more than its signed unpacked_size of {cap} bytes"
    )]
    OverUnpacked {
        /// The entry.
        reference: String,
        /// Its unpacked size.
        cap: u64,
    },
    /// Not a bundle, or a damaged one.
    #[error("reading the bundle of {reference}: {why}")]
    Corrupt {
        /// The entry.
        reference: String,
        /// What the reader said.
        why: String,
    },
    /// The kernel is no kernel.
    #[error(
        "the kernel of {reference} is not a Linux kernel (neither an ELF vmlinux nor a bzImage)"
    )]
    NotAKernel {
        /// The entry.
        reference: String,
    },
    /// The root filesystem is not ext2/3/4.
    #[error("the root filesystem of {reference} is not an ext2/3/4 file system image")]
    NotExt {
        /// The entry.
        reference: String,
    },
    /// Writing a file failed (a full disk, for example).
    #[error("writing {}: {error}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// Cancel was asked.
    #[error("canceled")]
    Canceled,
    /// A malformed OCI image reference.
    #[error("{0}")]
    OciReference(#[from] banger_oci::reference::ReferenceError),
    /// The registry, or what it served, was refused.
    #[error("{0}")]
    Registry(#[from] banger_oci::registry::RegistryError),
    /// A layer was refused.
    #[error("refused {0}")]
    Layer(#[from] banger_oci::layer::LayerError),
    /// The image cannot be a banger VM's root filesystem.
    #[error("{0}")]
    Build(#[from] banger_oci::rootfs::BuildError),
    /// An OCI pull without `--kernel`.
    #[error(
        "an OCI image carries no kernel: name a local image to take the kernel and initrd from \
         (banger image pull REFERENCE --kernel IMAGE; e.g. a kernel pulled from the catalog)"
    )]
    NoKernel,
    /// The kernel image has no initrd, which the hand-over needs.
    #[error(
        "image {0:?} has no initrd: an OCI image boots through banger's initramfs, which \
         applies the VM's config disk and hands over to the image's init"
    )]
    KernelWithoutInitrd(String),
    /// `--kernel` for a catalog entry.
    #[error("a kernel is chosen only for OCI images: a catalog rootfs entry names its own kernel")]
    KernelForCatalog,
    /// A file of the kernel image changed since it was imported.
    #[error("the {role} of image {image:?} no longer matches its recorded SHA-256")]
    KernelChanged {
        /// The kernel image.
        image: String,
        /// `kernel` or `initrd`.
        role: &'static str,
    },
    /// The store, the image directory or the name.
    #[error("{0}")]
    Vm(#[from] VmError),
}

impl From<DownloadError> for PullError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::Canceled => PullError::Canceled,
            other => PullError::Download(other),
        }
    }
}

pub(crate) type PullResult<T> = std::result::Result<T, PullError>;

fn fetcher(s: &CatalogSettings) -> Fetcher {
    let secs = |n: u64| Duration::from_secs(n.max(1));
    Fetcher::new(&FetchLimits {
        connect_timeout: secs(s.connect_timeout_secs),
        read_timeout: secs(s.read_timeout_secs),
        total_timeout: TOTAL_TIMEOUT,
        redirect_hosts: s.redirect_hosts.clone(),
        redirect_setting: REDIRECT_SETTING,
    })
}

/// The embedded release key and the catalog's own keys.
fn trusted_keys(s: &CatalogSettings) -> TrustedKeys {
    let mut keys = TrustedKeys::default();
    keys.add_pem("the embedded release key", EMBEDDED_KEY);
    for (origin, pem) in &s.trusted_keys {
        keys.add_pem(origin, pem);
    }
    keys
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names being pulled now, so that two pulls never make one image.
#[derive(Default)]
pub struct Pulling(Mutex<HashSet<String>>);

/// A name held while its pull runs.
struct NameHeld<'a>(&'a Pulling, String);

impl Drop for NameHeld<'_> {
    fn drop(&mut self) {
        self.0.0.lock().unwrap().remove(&self.1);
    }
}

impl Pulling {
    fn hold(&self, name: &str) -> Option<NameHeld<'_>> {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_string())
            .then(|| NameHeld(self, name.to_string()))
    }
}

/// What a pull takes its image from.
pub(crate) enum Source {
    /// An entry of the configured catalog.
    Catalog(EntryRef),
    /// An OCI image, booted with the kernel and initrd of a local image.
    Oci {
        /// The image.
        reference: banger_oci::reference::Reference,
        /// The image whose kernel and initrd it gets.
        kernel: Box<ImageRecord>,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Catalog(e) => write!(f, "{e}"),
            Source::Oci { reference, kernel } => {
                write!(f, "{reference} (kernel of {})", kernel.name)
            }
        }
    }
}

/// A pull the daemon agreed to run: its job, and what to pull.
pub struct PullTask {
    /// The job clients follow.
    pub job: Arc<Job>,
    source: Source,
    name: ImageName,
    settings: CatalogSettings,
}

impl Vms {
    async fn catalog_settings(&self) -> PullResult<CatalogSettings> {
        let s = self.host.catalog_settings().await?;
        if s.url.is_empty() {
            return Err(PullError::NoCatalog);
        }
        Ok(s)
    }

    /// Fetches and verifies the index, refuses a replay, and records its issue time.
    async fn verified_index(&self, s: &CatalogSettings) -> PullResult<VerifiedIndex> {
        let f = fetcher(s);
        let url = s.url.clone();
        let (bytes, sig) = tokio::task::spawn_blocking(move || {
            let bytes = f.fetch_small(&url, INDEX_CAP)?;
            let sig = f.fetch_small(&format!("{url}.sig"), SIG_CAP)?;
            Ok::<_, DownloadError>((bytes, sig))
        })
        .await
        .map_err(VmError::Task)??;
        let v = CatalogIndex::verify(&bytes, &sig, &trusted_keys(s), unix_now())?;
        let store = self.store.lock().unwrap();
        v.check_not_replayed(store.catalog_newest(&s.url).map_err(VmError::Store)?)?;
        store
            .set_catalog_newest(&s.url, v.issued_at)
            .map_err(VmError::Store)?;
        Ok(v)
    }

    /// What the configured catalog offers, from its freshly verified index.
    pub async fn list_catalog(&self) -> PullResult<Vec<CatalogEntryInfo>> {
        let s = self.catalog_settings().await?;
        let v = self.verified_index(&s).await?;
        Ok(v.index
            .entries
            .iter()
            .map(|e| CatalogEntryInfo {
                name: e.name.clone(),
                version: e.version.clone(),
                kind: e.kind.as_str().into(),
                kernel: e.kernel.clone().unwrap_or_default(),
                size: e.size,
                unpacked_size: e.unpacked_size,
                format: match e.format {
                    ArtefactFormat::Raw => "raw",
                    ArtefactFormat::Tar => "tar",
                    ArtefactFormat::TarGz => "tar.gz",
                }
                .into(),
                description: e.description.clone(),
            })
            .collect())
    }

    /// The image an OCI image takes its kernel and initrd from.
    fn kernel_image(&self, name: &str) -> PullResult<ImageRecord> {
        if name.is_empty() {
            return Err(PullError::NoKernel);
        }
        let rec = self
            .store
            .lock()
            .unwrap()
            .image(name)
            .map_err(VmError::Store)?
            .ok_or_else(|| VmError::NoSuchImage(name.to_string()))?;
        if rec.initrd_path.is_none() {
            return Err(PullError::KernelWithoutInitrd(name.to_string()));
        }
        Ok(rec)
    }

    /// Checks a pull request (the reference, the local name, that no image or pull has it,
    /// that a catalog is configured for a catalog entry, the kernel image for an OCI image) and
    /// makes its job; [`Vms::run_pull`] does the work.
    pub async fn begin_pull(
        &self,
        reference: &str,
        name: &str,
        kernel: &str,
    ) -> PullResult<PullTask> {
        let source = if banger_oci::reference::is_oci(reference) {
            let reference = banger_oci::reference::Reference::parse(reference)?;
            Source::Oci {
                kernel: Box::new(self.kernel_image(kernel)?),
                reference,
            }
        } else {
            let entry = EntryRef::parse(reference)?;
            if !kernel.is_empty() {
                return Err(PullError::KernelForCatalog);
            }
            Source::Catalog(entry)
        };
        let default_name = match &source {
            Source::Catalog(e) => e.name.clone(),
            Source::Oci { reference, .. } => reference
                .repository
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let name = image_name_to_import(if name.is_empty() { &default_name } else { name })?;
        if self
            .store
            .lock()
            .unwrap()
            .image(name.as_str())
            .map_err(VmError::Store)?
            .is_some()
        {
            return Err(VmError::ImageExists(name.to_string()).into());
        }
        let settings = match &source {
            Source::Catalog(_) => self.catalog_settings().await?,
            // A registry needs no catalog, only the download limits and caps.
            Source::Oci { .. } => self.host.catalog_settings().await?,
        };
        let job = self
            .jobs
            .begin(JOB_KIND_IMAGE_PULL, format!("{source} as {name}"));
        Ok(PullTask {
            job,
            source,
            name,
            settings,
        })
    }

    /// Runs a pull to its end; the job says how it ended.
    pub async fn run_pull(self: Arc<Self>, task: PullTask) {
        let job = task.job.clone();
        let outcome = match self.pulling.hold(task.name.as_str()) {
            None => Err(VmError::PullRunning(task.name.to_string()).into()),
            Some(_held) => self.pull(&task).await,
        };
        match outcome {
            Ok(()) => {
                tracing::info!(image = task.name.as_str(), from = %task.source, "image pulled");
                job.finish(Ok(task.name.to_string()));
            }
            Err(e) => {
                tracing::warn!(image = task.name.as_str(), from = %task.source, "pull failed: {e}");
                job.finish(Err(format!("{e}; nothing was imported")));
            }
        }
    }

    async fn pull(&self, task: &PullTask) -> PullResult<()> {
        let job = &task.job;
        let op = self.ops.begin("image.pull").map_err(VmError::Store)?;
        op.stage(&format!("pulling {} as {}", task.source, task.name));
        job.stage(PullStage::Resolving.as_str(), 0);
        let result = self.pull_files(task).await;
        let made = match result {
            Ok(made) => made,
            Err(e) => {
                op.finish(OperationStage::Failed);
                return Err(e);
            }
        };
        job.stage(PullStage::Recording.as_str(), 0);
        let recorded = self.record_pulled(&task.name, made).await;
        op.finish(if recorded.is_ok() {
            OperationStage::Done
        } else {
            OperationStage::Failed
        });
        recorded
    }

    /// A new temporary directory for a pull of `name`, under `images/`.
    pub(crate) fn pull_dir(&self, name: &ImageName) -> PullResult<PathBuf> {
        Ok(self.images_dir().join(format!(
            "{PULL_DIR_PREFIX}{}-{}",
            name,
            random_id().map_err(VmError::Random)?
        )))
    }

    /// Everything up to the image's files in their temporary directory.
    async fn pull_files(&self, task: &PullTask) -> PullResult<Unpacked> {
        match &task.source {
            Source::Catalog(entry) => self.pull_catalog_files(task, entry).await,
            Source::Oci { reference, kernel } => {
                let tmp = self.pull_dir(&task.name)?;
                let (job, s) = (task.job.clone(), task.settings.clone());
                let (reference, kernel, dir) = (reference.clone(), kernel.clone(), tmp.clone());
                let work = tokio::task::spawn_blocking(move || {
                    crate::pull_oci::pull(&fetcher(&s), &job, &s, &reference, &kernel, &dir)
                });
                finish_work(work.await.map_err(VmError::Task)?, &task.job, &tmp)
            }
        }
    }

    /// The files of catalog entry `entry` (and its kernel's).
    async fn pull_catalog_files(&self, task: &PullTask, entry: &EntryRef) -> PullResult<Unpacked> {
        let s = &task.settings;
        let index = self.verified_index(s).await?;
        let entry = index.find(entry)?.clone();
        let parts: Vec<CatalogEntry> = index
            .kernel_of(&entry)
            .cloned()
            .into_iter()
            .chain([entry.clone()])
            .collect();
        for p in &parts {
            if p.size > s.max_artefact_bytes {
                return Err(PullError::OverArtefactCap {
                    reference: p.reference(),
                    size: p.size,
                    cap: s.max_artefact_bytes,
                });
            }
        }
        let unpacked: u64 = parts.iter().map(|p| p.unpacked_size).sum();
        if unpacked > s.max_unpacked_bytes {
            return Err(PullError::OverUnpackedCap {
                reference: entry.reference(),
                size: unpacked,
                cap: s.max_unpacked_bytes,
            });
        }
        let mut urls = Vec::new();
        for p in &parts {
            let url =
                banger_fetch::resolve_href(&s.url, &p.url, "the catalog index").map_err(|why| {
                    CatalogError::Malformed(format!("entry {}: {why}", p.reference()))
                })?;
            urls.push(url);
        }
        let tmp = self.pull_dir(&task.name)?;
        let job = task.job.clone();
        let f = fetcher(s);
        let dir = tmp.clone();
        let work = tokio::task::spawn_blocking(move || {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|error| PullError::Write {
                    path: dir.clone(),
                    error,
                })?;
            let total: u64 = parts.iter().map(|p| p.size).sum();
            let mut before = 0u64;
            let mut files = Unpacked {
                dir: dir.clone(),
                files: HashMap::new(),
            };
            for (p, url) in parts.iter().zip(&urls) {
                let artefact = dir.join(format!("{}.download", p.kind.as_str()));
                download(&f, &job, p, url, &artefact, before, total)?;
                before += p.size;
                job.stage(PullStage::Unpacking.as_str(), 0);
                for (role, file) in unpack(p, &artefact, &dir, &job.cancel_flag())? {
                    files.files.insert(role, file);
                }
            }
            Ok(files)
        });
        finish_work(work.await.map_err(VmError::Task)?, &task.job, &tmp)
    }

    /// Moves the files into `images/<name>/` and records the image; on failure removes them.
    async fn record_pulled(&self, name: &ImageName, made: Unpacked) -> PullResult<()> {
        let _serial = self.changes.lock().await;
        let images = self.images_dir();
        let final_dir = images.join(name.as_str());
        let undo = |e: PullError| {
            let _ = std::fs::remove_dir_all(&made.dir);
            Err(e)
        };
        match self.store.lock().unwrap().image(name.as_str()) {
            Ok(None) => {}
            Ok(Some(_)) => return undo(VmError::ImageExists(name.to_string()).into()),
            Err(e) => return undo(VmError::Store(e).into()),
        }
        if final_dir.exists() {
            return undo(VmError::ImportLeftover { path: final_dir }.into());
        }
        if let Err(error) = std::fs::rename(&made.dir, &final_dir) {
            return undo(
                VmError::ImportMove {
                    path: final_dir,
                    error,
                }
                .into(),
            );
        }
        let _ = banger_host::fsutil::sync_dir(&images);
        let file = |role: &str| made.files.get(role);
        let path_of = |role: &str| file(role).map(|_| final_dir.join(role).display().to_string());
        let rec = ImageRecord {
            name: name.to_string(),
            kernel_path: path_of("kernel").unwrap_or_default(),
            kernel_sha256: file("kernel").map(|f| f.sha256.clone()).unwrap_or_default(),
            initrd_path: path_of("initrd"),
            initrd_sha256: file("initrd").map(|f| f.sha256.clone()),
            rootfs_path: path_of("rootfs"),
            rootfs_sha256: file("rootfs").map(|f| f.sha256.clone()),
            bytes: made.files.values().map(|f| f.bytes).sum(),
            created: unix_now() as i64,
        };
        if let Err(e) = self.store.lock().unwrap().insert_image(&rec) {
            let _ = std::fs::remove_dir_all(&final_dir);
            return Err(VmError::Store(e).into());
        }
        self.announce(Change::Image(rec.name));
        Ok(())
    }

    /// Removes what pulls of a daemon that died left under `images/`.
    pub fn sweep_pull_leftovers(&self) {
        let Ok(dir) = std::fs::read_dir(self.images_dir()) else {
            return;
        };
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(PULL_DIR_PREFIX) {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => tracing::info!(
                        "removed {}, left by an interrupted pull",
                        e.path().display()
                    ),
                    Err(err) => tracing::warn!("removing {}: {err}", e.path().display()),
                }
            }
        }
    }
}

/// What a pull's blocking work made, as the pull goes on: a cancel that came too late to stop
/// the work still leaves nothing, a failure removes the temporary directory `tmp`, and a pull
/// that was canceled ends as canceled whichever step its cancel stopped.
fn finish_work(made: PullResult<Unpacked>, job: &Job, tmp: &Path) -> PullResult<Unpacked> {
    match made {
        Ok(files) if job.canceled() => {
            let _ = std::fs::remove_dir_all(&files.dir);
            Err(PullError::Canceled)
        }
        Ok(files) => Ok(files),
        Err(e) => {
            if let Err(error) = std::fs::remove_dir_all(tmp)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("removing {}: {error}", tmp.display());
            }
            Err(if job.canceled() {
                PullError::Canceled
            } else {
                e
            })
        }
    }
}

/// One file of a pulled image.
#[derive(Debug)]
pub(crate) struct UnpackedFile {
    pub(crate) sha256: String,
    pub(crate) bytes: u64,
}

/// A pull's temporary directory and the files in it, by role.
#[derive(Debug)]
pub(crate) struct Unpacked {
    pub(crate) dir: PathBuf,
    pub(crate) files: HashMap<&'static str, UnpackedFile>,
}

/// Downloads `p` from `url` to `dest`, checking size and digest; reports bytes on `job` (the
/// percent counts `before` bytes of earlier artefacts out of `total`).
fn download(
    f: &Fetcher,
    job: &Job,
    p: &CatalogEntry,
    url: &str,
    dest: &Path,
    before: u64,
    total: u64,
) -> PullResult<()> {
    job.stage(PullStage::Downloading.as_str(), p.size);
    let cancel = job.cancel_flag();
    let fetched = f.fetch_to_file(url, p.size, p.size, dest, &cancel, &mut |n| {
        job.bytes(n, (before + n) as f64 / total.max(1) as f64);
    })?;
    let got = hex(&fetched.sha256);
    if got != p.sha256 {
        return Err(PullError::Digest {
            url: url.to_string(),
            reference: p.reference(),
            got,
            want: p.sha256.clone(),
        });
    }
    Ok(())
}

/// What a bundle member may not be, or `None` for a regular file.
fn refused_type(t: tar::EntryType) -> Option<&'static str> {
    use tar::EntryType as T;
    match t {
        T::Regular | T::Continuous | T::GNUSparse => None,
        T::Symlink => Some("a symbolic link"),
        T::Link => Some("a hard link"),
        T::Char | T::Block => Some("a device node"),
        T::Directory => Some("a directory"),
        T::Fifo => Some("a FIFO"),
        _ => Some("not a regular file"),
    }
}

/// Unpacks the verified artefact of `p` at `artefact` into `dir` (and removes the artefact):
/// for `raw`, the artefact is the file; for bundles, each member must be a regular top-level
/// file named by a role of `p`'s kind, once, within `unpacked_size` in all. Then checks what
/// the files are.
fn unpack(
    p: &CatalogEntry,
    artefact: &Path,
    dir: &Path,
    cancel: &AtomicBool,
) -> PullResult<Vec<(&'static str, UnpackedFile)>> {
    let reference = p.reference();
    let roles = p.kind.members();
    let allowed = roles.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(", ");
    let mut out: Vec<(&'static str, UnpackedFile)> = Vec::new();
    match p.format {
        ArtefactFormat::Raw => {
            let role = roles[0].0;
            let dest = dir.join(role);
            std::fs::rename(artefact, &dest)
                .map_err(|error| PullError::Write { path: dest, error })?;
            out.push((
                role,
                UnpackedFile {
                    sha256: p.sha256.clone(),
                    bytes: p.size,
                },
            ));
        }
        ArtefactFormat::Tar | ArtefactFormat::TarGz => {
            let corrupt = |e: std::io::Error| PullError::Corrupt {
                reference: reference.clone(),
                why: e.to_string(),
            };
            let file = std::fs::File::open(artefact).map_err(corrupt)?;
            let reader: Box<dyn Read> = if p.format == ArtefactFormat::TarGz {
                Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
            } else {
                Box::new(BufReader::new(file))
            };
            let mut archive = tar::Archive::new(reader);
            let mut used = 0u64;
            for member in archive.entries().map_err(corrupt)? {
                let mut member = member.map_err(corrupt)?;
                let path = String::from_utf8_lossy(&member.path_bytes()).into_owned();
                let refuse = |why: String| PullError::Member {
                    reference: reference.clone(),
                    member: path.clone(),
                    why,
                };
                if let Some(what) = refused_type(member.header().entry_type()) {
                    return Err(refuse(format!(
                        "it is {what}; bundle members are regular files"
                    )));
                }
                let Some((role, _)) = roles.iter().find(|(r, _)| *r == path) else {
                    let why = if path.split('/').any(|s| s == "..") {
                        "its path leads out of the bundle".to_string()
                    } else if path.contains('/') {
                        "it is inside a directory; bundle members are top-level files".to_string()
                    } else {
                        format!("a {} bundle holds only {allowed}", p.kind.as_str())
                    };
                    return Err(refuse(why));
                };
                if out.iter().any(|(r, _)| r == role) {
                    return Err(refuse("it is given twice".into()));
                }
                let size = member.header().size().map_err(corrupt)?;
                used = used.saturating_add(size);
                if used > p.unpacked_size {
                    return Err(PullError::OverUnpacked {
                        reference,
                        cap: p.unpacked_size,
                    });
                }
                let dest = dir.join(role);
                let written = write_sparse(&mut member, &dest, cancel)?;
                out.push((role, written));
            }
            let _ = std::fs::remove_file(artefact);
            if let Some((missing, _)) = roles
                .iter()
                .find(|(r, required)| *required && !out.iter().any(|(o, _)| o == r))
            {
                return Err(PullError::MissingMember {
                    reference,
                    member: missing,
                    allowed,
                });
            }
        }
    }
    for (role, _) in &out {
        let path = dir.join(role);
        let ok = match *role {
            "kernel" => looks_like_kernel(&path).unwrap_or(false),
            "rootfs" => is_ext_image(&path),
            _ => true,
        };
        if !ok {
            return Err(if *role == "kernel" {
                PullError::NotAKernel { reference }
            } else {
                PullError::NotExt { reference }
            });
        }
    }
    Ok(out)
}

/// Whether `path` starts like an ext2/3/4 file system (the superblock magic at 1080).
fn is_ext_image(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(1080))?;
            f.read_exact(&mut magic)
        })
        .is_ok()
        && magic == [0x53, 0xEF]
}

/// Copies `src` into the new file `dest` (0600), hashing every byte and leaving all-zero
/// blocks as holes.
fn write_sparse(src: &mut dyn Read, dest: &Path, cancel: &AtomicBool) -> PullResult<UnpackedFile> {
    let werr = |error: std::io::Error| PullError::Write {
        path: dest.to_path_buf(),
        error,
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(werr)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HOLE_BLOCK];
    let mut total = 0u64;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(PullError::Canceled);
        }
        // Fill a whole block (or what is left), so holes line up with blocks.
        let mut n = 0;
        while n < buf.len() {
            match src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(werr(e)),
            }
        }
        if n == 0 {
            break;
        }
        let block = &buf[..n];
        hasher.update(block);
        if block.iter().all(|b| *b == 0) {
            out.seek(SeekFrom::Current(n as i64)).map_err(werr)?;
        } else {
            out.write_all(block).map_err(werr)?;
        }
        total += n as u64;
    }
    out.set_len(total).map_err(werr)?;
    out.sync_all().map_err(werr)?;
    Ok(UnpackedFile {
        sha256: hex(&hasher.finalize()),
        bytes: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_release::catalog::EntryKind;

    fn entry(kind: EntryKind, format: ArtefactFormat, unpacked: u64) -> CatalogEntry {
        CatalogEntry {
            name: "x".into(),
            version: "1".into(),
            kind,
            kernel: None,
            url: "x".into(),
            format,
            size: 1,
            sha256: "0".repeat(64),
            unpacked_size: unpacked,
            description: String::new(),
        }
    }

    /// A tar bundle of (path, type, bytes) members, written with the tar crate's raw headers so
    /// that hostile paths are kept as given.
    fn bundle(dir: &Path, members: &[(&str, tar::EntryType, &[u8])]) -> PathBuf {
        let path = dir.join("b.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, kind, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            let raw = &mut h.as_gnu_mut().unwrap().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        path
    }

    fn kernel_bytes() -> Vec<u8> {
        let mut k = b"\x7fELF\x02\x01\x01".to_vec();
        k.resize(300_000, 0);
        k[200_000] = 1;
        k
    }

    #[test]
    fn a_kernel_bundle_unpacks_with_holes_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let k = kernel_bytes();
        let art = bundle(
            dir.path(),
            &[
                ("kernel", tar::EntryType::Regular, &k),
                ("initrd", tar::EntryType::Regular, b"cpio"),
            ],
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let e = entry(EntryKind::Kernel, ArtefactFormat::Tar, 1 << 20);
        let files = unpack(&e, &art, &out, &AtomicBool::new(false)).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read(out.join("kernel")).unwrap(), k);
        let want = hex(&Sha256::digest(&k));
        assert_eq!(files[0].1.sha256, want);
        assert!(!art.exists(), "the artefact is removed once unpacked");
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(out.join("kernel")).unwrap();
        assert!(
            m.blocks() * 512 < m.len(),
            "zero blocks are holes: {} blocks",
            m.blocks()
        );
    }

    #[test]
    fn hostile_bundles_are_refused_naming_the_member() {
        use tar::EntryType as T;
        let k = kernel_bytes();
        type Members<'a> = Vec<(&'a str, T, &'a [u8])>;
        let cases: Vec<(Members, &str)> = vec![
            (
                vec![("../kernel", T::Regular, &k)],
                "leads out of the bundle",
            ),
            (vec![("boot/kernel", T::Regular, &k)], "inside a directory"),
            (vec![("kernel", T::Symlink, b"")], "a symbolic link"),
            (vec![("kernel", T::Char, b"")], "a device node"),
            (vec![("kernel", T::Directory, b"")], "a directory"),
            (vec![("kernel", T::Link, b"")], "a hard link"),
            (
                vec![("vmlinuz", T::Regular, &k)],
                "holds only kernel, initrd",
            ),
            (
                vec![("kernel", T::Regular, &k), ("kernel", T::Regular, &k)],
                "given twice",
            ),
            (vec![("initrd", T::Regular, b"x")], "holds no kernel file"),
            (
                vec![("kernel", T::Regular, b"#!/bin/sh\n")],
                "is not a Linux kernel",
            ),
        ];
        for (members, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let art = bundle(dir.path(), &members);
            let out = dir.path().join("out");
            std::fs::create_dir(&out).unwrap();
            let e = entry(EntryKind::Kernel, ArtefactFormat::Tar, 1 << 20);
            let err = unpack(&e, &art, &out, &AtomicBool::new(false)).unwrap_err();
            assert!(err.to_string().contains(want), "want {want:?}: {err}");
            assert!(!dir.path().join("kernel").exists() && !dir.path().join("passwd").exists());
        }
    }

    #[test]
    fn unpacked_size_and_rootfs_kind_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![1u8; 5000];
        let art = bundle(dir.path(), &[("rootfs", tar::EntryType::Regular, &big)]);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let e = entry(EntryKind::Rootfs, ArtefactFormat::Tar, 4096);
        let err = unpack(&e, &art, &out, &AtomicBool::new(false)).unwrap_err();
        assert!(err.to_string().contains("unpacked_size of 4096"), "{err}");
        let e = entry(EntryKind::Rootfs, ArtefactFormat::Tar, 1 << 20);
        let out2 = dir.path().join("out2");
        std::fs::create_dir(&out2).unwrap();
        let art = bundle(dir.path(), &[("rootfs", tar::EntryType::Regular, &big)]);
        let err = unpack(&e, &art, &out2, &AtomicBool::new(false)).unwrap_err();
        assert!(err.to_string().contains("not an ext2/3/4"), "{err}");
        let mut ext = vec![0u8; 4096];
        ext[1080] = 0x53;
        ext[1081] = 0xEF;
        let out3 = dir.path().join("out3");
        std::fs::create_dir(&out3).unwrap();
        let art = bundle(dir.path(), &[("rootfs", tar::EntryType::Regular, &ext)]);
        unpack(&e, &art, &out3, &AtomicBool::new(false)).unwrap();
        assert_eq!(std::fs::read(out3.join("rootfs")).unwrap(), ext);
    }

    #[test]
    fn a_canceled_unpack_stops() {
        let dir = tempfile::tempdir().unwrap();
        let k = kernel_bytes();
        let art = bundle(dir.path(), &[("kernel", tar::EntryType::Regular, &k)]);
        let e = entry(EntryKind::Kernel, ArtefactFormat::Tar, 1 << 20);
        let err = unpack(&e, &art, dir.path(), &AtomicBool::new(true)).unwrap_err();
        assert!(matches!(err, PullError::Canceled), "{err}");
    }
}
