//! Copying disk images fast: a reflink (`FICLONE`: the copy shares the source's blocks until
//! either is written) where the filesystem allows it, else a kernel-side copy of the data
//! regions only (`SEEK_DATA`/`SEEK_HOLE` + `copy_file_range`), so holes stay holes and no byte
//! passes through user space. Never a read-write loop.
//!
//! The copy is a new file (it never replaces one), fsynced before it counts; on any failure it
//! is removed again.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// Shares the source's blocks (copy on write).
    Reflink,
    /// The data regions copied by the kernel; holes kept.
    SparseCopy,
}

impl std::fmt::Display for CopyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyMethod::Reflink => "reflink",
            CopyMethod::SparseCopy => "sparse copy",
        })
    }
}

/// What [`copy_disk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// How.
    pub method: CopyMethod,
    /// The file's size in bytes (holes included).
    pub size: u64,
}

/// Copies `src` to the new file `dst` (mode 0600); refuses a source larger than `cap` bytes
/// before anything is written.
pub fn copy_disk(src: &Path, dst: &Path, cap: u64) -> io::Result<Copied> {
    let input = File::open(src)?;
    let meta = input.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            src.display()
        )));
    }
    let size = meta.len();
    if size > cap {
        return Err(io::Error::other(format!(
            "{} is {} MiB, larger than the {} MiB allowed",
            src.display(),
            size >> 20,
            cap >> 20
        )));
    }
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let result = (|| {
        let method = if reflink(&input, &out)? {
            CopyMethod::Reflink
        } else {
            sparse_copy(&input, &out, size)?;
            CopyMethod::SparseCopy
        };
        out.sync_all()?;
        Ok(Copied { method, size })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// Tries `FICLONE`; `false` when this filesystem (or this pair of files) cannot share blocks.
#[allow(unsafe_code)]
fn reflink(src: &File, dst: &File) -> io::Result<bool> {
    // SAFETY: both descriptors are open for as long as the call runs; FICLONE takes the
    // source descriptor as its argument and touches no memory of ours.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EXDEV | libc::EINVAL | libc::ENOSYS) => {
            Ok(false)
        }
        _ => Err(e),
    }
}

/// `lseek(fd, from, whence)`; `None` at the end of the data (`ENXIO`).
#[allow(unsafe_code)]
fn seek(f: &File, from: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let from = libc::off_t::try_from(from).map_err(io::Error::other)?;
    // SAFETY: lseek on an open descriptor reads and changes only its offset.
    let at = unsafe { libc::lseek(f.as_raw_fd(), from, whence) };
    if at >= 0 {
        return Ok(Some(at as u64));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Copies each data region of `src` to the same offset of `dst` with `copy_file_range`, then
/// sets `dst`'s length, so the holes between and after them stay holes.
#[allow(unsafe_code)]
fn sparse_copy(src: &File, dst: &File, size: u64) -> io::Result<()> {
    let mut pos = 0u64;
    while pos < size {
        let Some(data) = seek(src, pos, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(src, data, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        let mut off_in = libc::loff_t::try_from(data).map_err(io::Error::other)?;
        let mut off_out = off_in;
        let mut left = end - data;
        while left > 0 {
            let chunk = usize::try_from(left.min(1 << 30)).map_err(io::Error::other)?;
            // SAFETY: both descriptors are open; the offsets are ours and updated by the
            // kernel; no buffer of ours is involved.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    chunk,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::other(format!(
                    "the source ended {left} bytes early (did it shrink while being copied?)"
                )));
            }
            left -= n as u64;
        }
        pos = end;
    }
    dst.set_len(size)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn sparse_source(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("src.img");
        let mut f = File::create(&p).unwrap();
        f.write_all(&[0xab; 4096]).unwrap();
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(64 << 20).unwrap();
        p
    }

    #[test]
    fn a_copy_is_identical_and_keeps_its_holes() {
        let d = tempfile::tempdir().unwrap();
        let src = sparse_source(d.path());
        let dst = d.path().join("dst.img");
        let c = copy_disk(&src, &dst, 1 << 30).unwrap();
        assert_eq!(c.size, 64 << 20);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        File::open(&src).unwrap().read_to_end(&mut a).unwrap();
        File::open(&dst).unwrap().read_to_end(&mut b).unwrap();
        assert!(a == b, "the copy differs");
        let m = std::fs::metadata(&dst).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        // 64 MiB apparent, two small data regions: far less than a dense copy.
        if c.method == CopyMethod::SparseCopy {
            assert!(
                m.blocks() * 512 < 4 << 20,
                "holes were filled: {} blocks",
                m.blocks()
            );
        }
    }

    #[test]
    fn too_large_or_existing_targets_are_refused_and_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let src = sparse_source(d.path());
        let dst = d.path().join("dst.img");
        let e = copy_disk(&src, &dst, 1 << 20).unwrap_err();
        assert!(
            e.to_string().contains("larger than the 1 MiB allowed"),
            "{e}"
        );
        assert!(!dst.exists());
        std::fs::write(&dst, b"mine").unwrap();
        let e = copy_disk(&src, &dst, 1 << 30).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read(&dst).unwrap(),
            b"mine",
            "an existing file is never replaced"
        );
        let e = copy_disk(d.path(), &d.path().join("x"), 1 << 30).unwrap_err();
        assert!(
            e.to_string().contains("not a regular file") || e.raw_os_error() == Some(libc::EISDIR),
            "{e}"
        );
    }

    #[test]
    fn an_empty_file_copies() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("empty");
        File::create(&src).unwrap();
        let c = copy_disk(&src, &d.path().join("out"), 10).unwrap();
        assert_eq!(c.size, 0);
    }
}
