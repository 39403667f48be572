//! File operations: durable writes (write to a temporary sibling, fsync, rename, fsync the
//! directory), and reading files only root can have written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temporary sibling used while `path` is being replaced.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.banger-tmp.{}", std::process::id()))
}

/// fsyncs a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with `contents` at `mode`: readers see the old or the new file,
/// never a mix, and a crash leaves one of the two.
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Atomically copies `src` to `dst` at `mode` (see [`atomic_write`]).
pub fn atomic_copy(src: &Path, dst: &Path, mode: u32) -> io::Result<()> {
    let tmp = temp_sibling(dst);
    let result = (|| {
        fs::copy(src, &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, dst)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dst.parent().unwrap_or(Path::new(".")))
}

/// Why a file root is about to trust was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file, or a directory above it, could be changed by someone other than root.
    #[error("{path} {why}; refusing to trust {file}")]
    Unsafe {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
        /// The file that was to be read.
        file: PathBuf,
    },
    /// Reading failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Larger than a file of its kind can be.
    #[error("{path} is larger than {cap} bytes; refusing to read it")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        cap: u64,
    },
}

/// Whether a directory root reads through can be changed only by root: owned by root, and not
/// writable by group or others, unless it is sticky (as `/tmp` is: nobody else may then
/// rename or remove root's entries in it, and every entry below is checked in turn).
fn trusted_dir(md: &fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if md.uid() != 0 {
        return Err(format!("is owned by uid {}, not root", md.uid()));
    }
    if md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0 {
        return Err(format!(
            "is writable by group or others (mode {:o})",
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Reads `path`, a file root is about to trust (configuration, keys, install metadata), without
/// being tricked: every directory from `/` down is opened with `O_NOFOLLOW` and checked on its
/// descriptor ([`trusted_dir`]); the file itself is opened through its directory's descriptor
/// with `O_NOFOLLOW|O_NONBLOCK` (a symbolic link fails, a FIFO does not block), checked with
/// `fstat` on the open descriptor (a regular file owned by root, not writable by group or
/// others) and read from that descriptor, at most `cap` bytes. `None` when the file, or a
/// directory above it, does not exist.
pub fn read_root_owned(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, TrustError> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    let unsafe_at = |at: &Path, why: String| TrustError::Unsafe {
        path: at.into(),
        why,
        file: path.into(),
    };
    let io_at = |at: &Path, source: io::Error| TrustError::Io {
        path: at.into(),
        source,
    };
    if !path.is_absolute() {
        return Err(unsafe_at(path, "is not an absolute path".into()));
    }
    let names: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(Ok(n)),
            std::path::Component::RootDir => None,
            _ => Some(Err(())),
        })
        .collect::<Result<_, _>>()
        .map_err(|()| unsafe_at(path, "is not a normal path (it has . or ..)".into()))?;
    let Some((file_name, dirs)) = names.split_last() else {
        return Err(unsafe_at(path, "names no file".into()));
    };
    let open = |p: &Path, flags: i32| {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(p)
    };
    // `O_NOFOLLOW` fails on a link with ELOOP, or with ENOTDIR along with `O_DIRECTORY`; the
    // entry itself (looked at through the same descriptor, not followed) tells which it was.
    let refusal = |at: &Path, via: &Path, e: io::Error| -> Option<TrustError> {
        if e.kind() == io::ErrorKind::NotFound {
            return None;
        }
        let link = fs::symlink_metadata(via).is_ok_and(|m| m.file_type().is_symlink());
        Some(match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) if link => {
                unsafe_at(at, "is a symbolic link".into())
            }
            Some(libc::ENOTDIR) => unsafe_at(at, "is not a directory".into()),
            _ => io_at(at, e),
        })
    };
    let through = |dir: &File, name: &std::ffi::OsStr| {
        PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
    };
    let mut shown = PathBuf::from("/");
    let mut dir = open(&shown, libc::O_DIRECTORY).map_err(|e| io_at(&shown, e))?;
    for name in dirs {
        let md = dir.metadata().map_err(|e| io_at(&shown, e))?;
        trusted_dir(&md).map_err(|why| unsafe_at(&shown, why))?;
        let via = through(&dir, name);
        shown.push(name);
        dir = match open(&via, libc::O_DIRECTORY) {
            Ok(d) => d,
            Err(e) => return refusal(&shown, &via, e).map_or(Ok(None), Err),
        };
    }
    let md = dir.metadata().map_err(|e| io_at(&shown, e))?;
    trusted_dir(&md).map_err(|why| unsafe_at(&shown, why))?;
    let via = through(&dir, file_name);
    let mut file = match open(&via, libc::O_NONBLOCK) {
        Ok(f) => f,
        Err(e) => return refusal(path, &via, e).map_or(Ok(None), Err),
    };
    let md = file.metadata().map_err(|e| io_at(path, e))?;
    if !md.file_type().is_file() {
        return Err(unsafe_at(path, "is not a regular file".into()));
    }
    if md.uid() != 0 {
        return Err(unsafe_at(
            path,
            format!("is owned by uid {}, not root", md.uid()),
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(unsafe_at(
            path,
            format!(
                "is writable by group or others (mode {:o})",
                md.mode() & 0o7777
            ),
        ));
    }
    let mut out = Vec::new();
    (&mut file)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| io_at(path, e))?;
    if out.len() as u64 > cap {
        return Err(TrustError::TooLarge {
            path: path.into(),
            cap,
        });
    }
    Ok(Some(out))
}

/// Removes a file if it exists; returns whether it did.
pub fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How much [`WriteBehind`] lets a file run ahead before it hands the stretch to the disk.
pub const WRITE_BEHIND_WINDOW: u64 = 8 * 1024 * 1024;

/// The most [`WriteBehind`] hands the kernel in one `write`. A large write lets the page cache
/// take large folios for it, and on a virtual machine whose host takes free memory back (a
/// balloon's free page reporting, most likely) those come from blocks the host must fault in
/// again: filling the page cache with a new 200 MiB file took 200–1200 ms in 1 MiB writes and
/// 75 ms in 16 KiB ones there, and a download written in 256 KiB pieces ran at a quarter of
/// the speed of one written in 32 KiB pieces (docs/performance.md). The smaller pieces cost a
/// few thousand more system calls per 100 MiB, nothing next to the copy.
pub const WRITE_PIECE: usize = 32 * 1024;

/// A new file written front to back, whose finished stretches go to the disk while the writing
/// goes on: after every [`WRITE_BEHIND_WINDOW`] bytes it starts the writeback of that stretch
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which queues the I/O and does not wait for it).
/// The disk then works alongside whatever produces the bytes, and the caller's fsync at the
/// end finds little left to write. It only starts writeback: durability is still that fsync's.
/// Each `write` takes at most [`WRITE_PIECE`] bytes (`write_all` loops over the rest).
pub struct WriteBehind<'a> {
    file: &'a File,
    written: u64,
    handed: u64,
    windows: u32,
}

impl<'a> WriteBehind<'a> {
    /// `file` must be empty and positioned at its start, as a file just created is.
    pub fn new(file: &'a File) -> Self {
        Self {
            file,
            written: 0,
            handed: 0,
            windows: 0,
        }
    }

    /// How many stretches it has handed to the disk so far.
    pub fn windows_started(&self) -> u32 {
        self.windows
    }
}

impl Write for WriteBehind<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(&buf[..buf.len().min(WRITE_PIECE)])?;
        self.written += n as u64;
        if self.written - self.handed >= WRITE_BEHIND_WINDOW {
            // Advisory: a filesystem that cannot do it just writes at the fsync, and a real
            // I/O error shows there too.
            let _ = start_writeback(self.file, self.handed, self.written - self.handed);
            self.handed = self.written;
            self.windows += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&mut &*self.file).flush()
    }
}

/// Starts writing `len` bytes of `file` from `offset` to the disk without waiting for it.
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is borrowed from
    // a live File.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_behind_keeps_every_byte_and_hands_each_full_window_to_the_disk() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("out");
        let file = File::create(&path).unwrap();
        let mut w = WriteBehind::new(&file);
        // Two and a half windows, in pieces that do not divide the window.
        let window = usize::try_from(WRITE_BEHIND_WINDOW).unwrap();
        let data: Vec<u8> = (0..window * 5 / 2).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(300_007) {
            w.write_all(piece).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(w.windows_started(), 2);
        file.sync_all().unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    #[test]
    fn write_behind_hands_the_kernel_at_most_one_piece_per_write() {
        let t = tempfile::tempdir().unwrap();
        let file = File::create(t.path().join("out")).unwrap();
        let mut w = WriteBehind::new(&file);
        let big = vec![7u8; WRITE_PIECE * 3 + 5];
        assert_eq!(w.write(&big).unwrap(), WRITE_PIECE);
        assert_eq!(w.write(&big[..10]).unwrap(), 10);
        w.write_all(&big).unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            (WRITE_PIECE * 4 + 15) as u64
        );
    }

    #[test]
    fn root_owned_files_are_read_and_everything_else_is_refused() {
        if crate::users::current_uid() != 0 {
            eprintln!("skipped: needs root (files owned by root and by others)");
            return;
        }
        use std::os::unix::fs::{PermissionsExt, chown, symlink};
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        fs::create_dir(&etc).unwrap();
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
        let good = etc.join("config.toml");
        fs::write(&good, "x = 1\n").unwrap();
        fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_root_owned(&good, 64).unwrap().unwrap(), b"x = 1\n");
        assert!(read_root_owned(&etc.join("missing"), 64).unwrap().is_none());
        assert!(
            read_root_owned(&t.path().join("no/such/dir/f"), 64)
                .unwrap()
                .is_none()
        );
        let e = read_root_owned(&good, 3).unwrap_err();
        assert!(e.to_string().contains("larger than 3 bytes"), "{e}");

        let refused = |p: &Path, needle: &str| {
            let e = read_root_owned(p, 64).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("refusing"), "{p:?}: {e}");
        };
        // A link to a root-owned file is refused, not followed.
        let link = etc.join("link.toml");
        symlink(&good, &link).unwrap();
        refused(&link, "symbolic link");
        // A file someone else owns or may write.
        let theirs = etc.join("theirs.toml");
        fs::write(&theirs, "").unwrap();
        chown(&theirs, Some(65534), None).unwrap();
        refused(&theirs, "owned by uid 65534");
        let open = etc.join("open.toml");
        fs::write(&open, "").unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o664)).unwrap();
        refused(&open, "writable by group or others (mode 664)");
        // A FIFO is refused without blocking.
        let fifo = etc.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: mkfifo only reads the NUL-terminated path it is given.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0);
        refused(&fifo, "not a regular file");
        // A directory on the way that others can write, or that someone else owns.
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o775)).unwrap();
        refused(&good, "writable by group or others (mode 775)");
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            read_root_owned(&good, 64).unwrap().is_some(),
            "sticky, as /tmp"
        );
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
        chown(&etc, Some(65534), None).unwrap();
        refused(&good, "owned by uid 65534, not root");
        chown(&etc, Some(0), None).unwrap();
        // A directory on the way that is a link.
        let via = t.path().join("via");
        symlink(&etc, &via).unwrap();
        refused(&via.join("config.toml"), "via is a symbolic link");
        refused(&good.join("x"), "config.toml is not a directory");
        refused(Path::new("relative/config.toml"), "not an absolute path");
        refused(&etc.join("../etc/config.toml"), "not a normal path");
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "old").unwrap();
        atomic_write(&p, b"new", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn failed_write_leaves_original() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("f");
        assert!(atomic_write(&missing, b"x", 0o644).is_err());
        assert!(!remove_if_exists(&missing).unwrap());
    }
}
