//! Pulls of OCI images (docs/images.md): resolve the reference to a linux/amd64 manifest,
//! download every layer through SHA-256 against its digest, apply the layers in order into a
//! tree (refusing anything that could escape it), check that the image can boot as a banger VM
//! (an init, an SSH server), write the ext4 root filesystem with the recorded ownership, and
//! take the kernel and initrd of a local image.
//!
//! All of it runs as the owner in bangerd's sandbox, inside the pull's temporary directory,
//! which [`crate::pull`] renames into place or removes: nothing is ever half-imported.

use std::fs::DirBuilder;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use banger_api::job::PullStage;
use banger_api::wire::CatalogSettings;
use banger_fetch::Fetcher;
use banger_oci::layer::{Compression, LayerId, Limits, Tree};
use banger_oci::manifest::{LayerType, layer_type};
use banger_oci::reference::Reference;
use banger_oci::registry::Registry;
use banger_oci::rootfs;
use sha2::{Digest, Sha256};

use crate::images::{MAX_INITRD, MAX_KERNEL, copy_hashed};
use crate::jobs::Job;
use crate::pull::{PullError, PullResult, Unpacked, UnpackedFile};
use crate::store::ImageRecord;

/// The label of the root filesystems banger writes.
pub const ROOTFS_LABEL: &str = "banger-root";

/// A reader that fails once the pull is canceled, so a long layer stops early.
struct Cancelable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancelable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("canceled"));
        }
        self.inner.read(buf)
    }
}

fn mkdir(path: &Path) -> PullResult<()> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|error| PullError::Write {
            path: path.to_path_buf(),
            error,
        })
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> PullError + '_ {
    move |error| PullError::Write {
        path: path.to_path_buf(),
        error,
    }
}

/// SHA-256 (hex) and length of a file.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((
        h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        total,
    ))
}

/// Copies the kernel image's file `role` into `dir`, checking it still is what was recorded.
fn take_from_kernel_image(
    kernel: &ImageRecord,
    role: &'static str,
    src: &str,
    want: &str,
    cap: u64,
    dir: &Path,
) -> PullResult<UnpackedFile> {
    let dest = dir.join(role);
    let (sha256, bytes) = copy_hashed(Path::new(src), &dest, cap).map_err(write_err(&dest))?;
    if sha256 != want {
        return Err(PullError::KernelChanged {
            image: kernel.name.clone(),
            role,
        });
    }
    Ok(UnpackedFile { sha256, bytes })
}

/// The whole pull of `reference` into `dir` (created here), blocking.
pub(crate) fn pull(
    f: &Fetcher,
    job: &Job,
    s: &CatalogSettings,
    reference: &Reference,
    kernel: &ImageRecord,
    dir: &Path,
) -> PullResult<Unpacked> {
    let cancel = job.cancel_flag();
    let canceled = || cancel.load(Ordering::SeqCst);
    mkdir(dir)?;
    let registry = Registry::new(f, reference);
    let resolved = registry.resolve()?;
    let layers = &resolved.manifest.layers;
    let pinned = format!(
        "oci://{}/{}@{}",
        reference.registry, reference.repository, resolved.digest
    );
    tracing::info!(image = %reference, manifest = %resolved.digest, layers = layers.len(), "resolved");
    for (i, l) in layers.iter().enumerate() {
        if l.size > s.max_artefact_bytes {
            return Err(PullError::OverArtefactCap {
                reference: format!("{pinned} layer {} ({})", i + 1, l.digest),
                size: l.size,
                cap: s.max_artefact_bytes,
            });
        }
    }
    let total: u64 = layers.iter().map(|l| l.size).sum();

    // Every blob is downloaded and verified before any is applied.
    job.stage(PullStage::Downloading.as_str(), total);
    let blobs = dir.join("blobs");
    mkdir(&blobs)?;
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut before = 0u64;
    for (i, l) in layers.iter().enumerate() {
        let path = blobs.join(format!("layer-{}", i + 1));
        let what = format!("layer {} ({}) of {reference}", i + 1, l.digest);
        registry.blob_to_file(l, &what, s.max_artefact_bytes, &path, &cancel, &mut |n| {
            job.bytes(before + n, (before + n) as f64 / total.max(1) as f64);
        })?;
        before += l.size;
        paths.push(path);
    }

    job.stage(PullStage::Unpacking.as_str(), 0);
    let tree_dir = dir.join("tree");
    mkdir(&tree_dir)?;
    let limits = Limits {
        max_bytes: s.max_unpacked_bytes,
        ..Limits::default()
    };
    let mut tree = Tree::new(&tree_dir, limits).map_err(write_err(&tree_dir))?;
    for (i, (l, path)) in layers.iter().zip(&paths).enumerate() {
        let compression = match layer_type(l).expect("checked when the manifest was parsed") {
            LayerType::Tar => Compression::None,
            LayerType::TarGzip => Compression::Gzip,
        };
        let file = std::fs::File::open(path).map_err(write_err(path))?;
        let id = LayerId {
            index: i + 1,
            digest: l.digest.clone(),
        };
        let applied = tree.apply(
            &id,
            Cancelable {
                inner: std::io::BufReader::with_capacity(1 << 20, file),
                cancel: &cancel,
            },
            compression,
        );
        if canceled() {
            return Err(PullError::Canceled);
        }
        applied?;
        // The blob is not needed any more: give its space back before the next one.
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir(&blobs);
    let boot = rootfs::check_bootable(&tree)?;
    rootfs::write_handover(&mut tree, &boot, &pinned)?;
    let size = rootfs::image_size(&tree);
    if size > s.max_unpacked_bytes {
        return Err(PullError::OverUnpackedCap {
            reference: pinned,
            size,
            cap: s.max_unpacked_bytes,
        });
    }

    job.stage(PullStage::Building.as_str(), 0);
    let image = dir.join("rootfs");
    rootfs::write_ext4(&tree, &image, ROOTFS_LABEL)?;
    std::fs::remove_dir_all(&tree_dir).map_err(write_err(&tree_dir))?;
    if canceled() {
        return Err(PullError::Canceled);
    }
    let (sha256, bytes) = hash_file(&image).map_err(write_err(&image))?;
    let mut made = Unpacked {
        dir: dir.to_path_buf(),
        files: Default::default(),
    };
    made.files.insert("rootfs", UnpackedFile { sha256, bytes });
    made.files.insert(
        "kernel",
        take_from_kernel_image(
            kernel,
            "kernel",
            &kernel.kernel_path,
            &kernel.kernel_sha256,
            MAX_KERNEL,
            dir,
        )?,
    );
    if let (Some(p), Some(sha)) = (&kernel.initrd_path, &kernel.initrd_sha256) {
        made.files.insert(
            "initrd",
            take_from_kernel_image(kernel, "initrd", p, sha, MAX_INITRD, dir)?,
        );
    }
    tracing::info!(image = %pinned, init = %boot.init, ssh = %boot.ssh, bytes = size, "root filesystem written");
    Ok(made)
}
