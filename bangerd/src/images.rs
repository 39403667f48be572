//! Images: the kernel, initrd and root filesystem VMs are made from. Import copies and hashes
//! the files a caller names into `images/<name>/{kernel,initrd,rootfs}` under the state
//! directory and records them in the store; listing reads the records; removal takes the record
//! and then the files, and is refused while a VM uses the image.
//!
//! An image's files are written once, at import, and never changed afterwards: a VM boots from
//! its own copy of the root filesystem (see [`crate::vms`]). A failed import leaves nothing
//! behind, and this module never removes an image a VM uses.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use banger_api::ids::ImageName;
use banger_api::time::unix_now;
use banger_api::wire::{ImageInfo, OperationStage};
use sha2::{Digest, Sha256};

use crate::store::{ImageRecord, VmRecord};
use crate::vms::{Change, Result, VmError, Vms, random_id};

/// Largest kernel accepted at import.
pub(crate) const MAX_KERNEL: u64 = 512 << 20;
/// Largest initrd accepted at import.
pub(crate) const MAX_INITRD: u64 = 4 << 30;
/// Largest root filesystem accepted at import.
pub(crate) const MAX_ROOTFS: u64 = 256 << 30;

/// Whether a file starts like a Linux kernel: an ELF `vmlinux` or a bzImage (`HdrS` at 0x202).
pub(crate) fn looks_like_kernel(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 0x206];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    Ok((n >= 4 && head[..4] == *b"\x7fELF") || (n >= 0x206 && head[0x202..0x206] == *b"HdrS"))
}

/// Copies `src` to a new file `dst` (mode 0600), hashing on the way; refuses more than `cap`
/// bytes. Returns (sha256 hex, bytes).
pub(crate) fn copy_hashed(src: &Path, dst: &Path, cap: u64) -> std::io::Result<(String, u64)> {
    let mut input = std::fs::File::open(src)?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > cap {
            return Err(std::io::Error::other(format!(
                "larger than the {} MiB allowed",
                cap >> 20
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, total))
}

/// The name of an image to import, as a request sent it: refused with
/// [`VmError::BadImageName`] when it is not an image name (the rule is [`ImageName::parse`]).
pub fn image_name_to_import(name: &str) -> Result<ImageName> {
    ImageName::parse(name).map_err(|_| VmError::BadImageName(name.to_string()))
}

/// The name of an existing image, as a request sent it: a string that is not an image name
/// names no image ([`VmError::NoSuchImage`]), as none was ever imported with it.
pub fn image_name_to_find(name: &str) -> Result<ImageName> {
    ImageName::parse(name).map_err(|_| VmError::NoSuchImage(name.to_string()))
}

impl Vms {
    pub(crate) fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// Imports an image: copies and hashes its files into `images/<name>/`, then records it.
    /// On any failure nothing is left behind.
    pub async fn import_image(
        &self,
        name: &ImageName,
        kernel: &str,
        initrd: &str,
        rootfs: &str,
    ) -> Result<ImageInfo> {
        let files: Vec<(&'static str, PathBuf, u64)> = [
            ("kernel", kernel, MAX_KERNEL),
            ("initrd", initrd, MAX_INITRD),
            ("rootfs", rootfs, MAX_ROOTFS),
        ]
        .into_iter()
        .filter(|(_, p, _)| !p.is_empty())
        .map(|(role, p, cap)| (role, PathBuf::from(p), cap))
        .collect();
        if kernel.is_empty() {
            return Err(VmError::NoKernel);
        }
        for (role, p, _) in &files {
            if !p.is_absolute() {
                return Err(VmError::RelativePath {
                    role,
                    path: p.clone(),
                });
            }
            match std::fs::metadata(p) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(VmError::NotAFile {
                        role,
                        path: p.clone(),
                    });
                }
                Err(error) => {
                    return Err(VmError::Inaccessible {
                        role,
                        path: p.clone(),
                        error,
                    });
                }
            }
        }
        let kernel_path = PathBuf::from(kernel);
        match looks_like_kernel(&kernel_path) {
            Ok(true) => {}
            Ok(false) => {
                return Err(VmError::NotAKernel { path: kernel_path });
            }
            Err(error) => {
                return Err(VmError::KernelUnreadable {
                    path: kernel_path,
                    error,
                });
            }
        }
        let _serial = self.changes.lock().await;
        if self.store.lock().unwrap().image(name.as_str())?.is_some() {
            return Err(VmError::ImageExists(name.to_string()));
        }
        let op = self.ops.begin("image.import").map_err(VmError::Store)?;
        op.stage(&format!("copying {name}"));
        let images = self.images_dir();
        let final_dir = images.join(name.as_str());
        let tmp = images.join(format!(
            ".import-{name}-{}",
            random_id().map(|id| id.to_string()).unwrap_or_default()
        ));
        let copied = {
            let tmp = tmp.clone();
            let files = files.clone();
            tokio::task::spawn_blocking(move || -> Result<_> {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&tmp)
                    .map_err(|error| VmError::ImportDir {
                        path: tmp.clone(),
                        error,
                    })?;
                let mut out = HashMap::new();
                for (role, src, cap) in files {
                    let dst = tmp.join(role);
                    let (sha, n) =
                        copy_hashed(&src, &dst, cap).map_err(|error| VmError::ImportCopy {
                            role,
                            path: src.clone(),
                            error,
                        })?;
                    out.insert(role, (dst, sha, n));
                }
                Ok(out)
            })
            .await
            .map_err(VmError::Task)?
        };
        let result = copied.and_then(|c| {
            if final_dir.exists() {
                return Err(VmError::ImportLeftover {
                    path: final_dir.clone(),
                });
            }
            std::fs::rename(&tmp, &final_dir).map_err(|error| VmError::ImportMove {
                path: final_dir.clone(),
                error,
            })?;
            let _ = banger_host::fsutil::sync_dir(&images);
            Ok(c)
        });
        let copied = match result {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                op.finish(OperationStage::Failed);
                return Err(e);
            }
        };
        let get = |role: &str| copied.get(role);
        let path_of = |role: &str| {
            get(role).map(|(p, _, _)| {
                final_dir
                    .join(p.file_name().unwrap_or_default())
                    .display()
                    .to_string()
            })
        };
        let rec = ImageRecord {
            name: name.to_string(),
            kernel_path: path_of("kernel").unwrap_or_default(),
            kernel_sha256: get("kernel").map(|x| x.1.clone()).unwrap_or_default(),
            initrd_path: path_of("initrd"),
            initrd_sha256: get("initrd").map(|x| x.1.clone()),
            rootfs_path: path_of("rootfs"),
            rootfs_sha256: get("rootfs").map(|x| x.1.clone()),
            bytes: copied.values().map(|x| x.2).sum(),
            created: unix_now() as i64,
        };
        if let Err(e) = self.store.lock().unwrap().insert_image(&rec) {
            let _ = std::fs::remove_dir_all(&final_dir);
            op.finish(OperationStage::Failed);
            return Err(e.into());
        }
        op.finish(OperationStage::Done);
        self.announce(Change::Image(rec.name.clone()));
        tracing::info!(image = name.as_str(), bytes = rec.bytes, "image imported");
        Ok(self.image_info(&rec, &[]))
    }

    fn image_info(&self, i: &ImageRecord, vms: &[VmRecord]) -> ImageInfo {
        ImageInfo {
            name: i.name.clone(),
            kernel_sha256: i.kernel_sha256.clone(),
            initrd_sha256: i.initrd_sha256.clone().unwrap_or_default(),
            rootfs_sha256: i.rootfs_sha256.clone().unwrap_or_default(),
            bytes: i.bytes,
            created: i.created,
            used_by: vms
                .iter()
                .filter(|v| v.image == i.name)
                .map(|v| v.name.clone())
                .collect(),
        }
    }

    /// Image `name` with the VMs that use it, if there is one.
    pub fn image_by_name(&self, name: &str) -> Result<Option<ImageInfo>> {
        let store = self.store.lock().unwrap();
        let Some(i) = store.image(name)? else {
            return Ok(None);
        };
        Ok(Some(self.image_info(&i, &store.vms()?)))
    }

    /// Every image.
    pub fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let store = self.store.lock().unwrap();
        let vms = store.vms()?;
        Ok(store
            .images()?
            .iter()
            .map(|i| self.image_info(i, &vms))
            .collect())
    }

    /// Deletes an image no VM uses: the record first, then its files.
    pub async fn delete_image(&self, name: &ImageName) -> Result<()> {
        let _serial = self.changes.lock().await;
        let users: Vec<String> = {
            let store = self.store.lock().unwrap();
            if store.image(name.as_str())?.is_none() {
                return Err(VmError::NoSuchImage(name.to_string()));
            }
            store
                .vms()?
                .into_iter()
                .filter(|v| v.image == name.as_str())
                .map(|v| v.name)
                .collect()
        };
        if !users.is_empty() {
            return Err(VmError::ImageInUse {
                name: name.to_string(),
                users,
            });
        }
        let op = self.ops.begin("image.delete").map_err(VmError::Store)?;
        op.stage(&format!("removing {name}"));
        if let Err(e) = self.store.lock().unwrap().delete_image(name.as_str()) {
            op.finish(OperationStage::Failed);
            return Err(e.into());
        }
        let dir = self.images_dir().join(name.as_str());
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", dir.display());
        }
        op.finish(OperationStage::Done);
        self.announce(Change::ImageRemoved(name.to_string()));
        tracing::info!(image = name.as_str(), "image removed");
        Ok(())
    }
}

/// bangerd has a /tmp of its own (PrivateTmp=): a file the caller sees in /tmp is not there.
pub(crate) fn private_tmp_hint(p: &Path, e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound
        && (p.starts_with("/tmp") || p.starts_with("/var/tmp"))
    {
        " (bangerd has a private /tmp and /var/tmp and cannot see files there: move the file \
         elsewhere, for example to your home directory)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_recognized() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("vmlinux");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01rest").unwrap();
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let bzp = dir.path().join("bzImage");
        std::fs::write(&bzp, &bz).unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(looks_like_kernel(&elf).unwrap());
        assert!(looks_like_kernel(&bzp).unwrap());
        assert!(!looks_like_kernel(&junk).unwrap());
    }

    #[test]
    fn hashed_copy_is_capped_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"abc").unwrap();
        let (sha, n) = copy_hashed(&src, &dir.path().join("dst"), 10).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(dir.path().join("dst")).unwrap(), b"abc");
        let e = copy_hashed(&src, &dir.path().join("dst2"), 2).unwrap_err();
        assert!(e.to_string().contains("larger"), "{e}");
        assert!(
            copy_hashed(&src, &dir.path().join("dst"), 10).is_err(),
            "never overwrites"
        );
    }
}
