//! Looking at files in the owner-writable state directory as root, without being tricked.
//!
//! `/var/lib/banger` and everything below it belong to the install owner, who could replace any
//! entry with a symbolic link (to `/etc/shadow`, to root's D-Bus socket) between a check and a use.
//! So the helper never resolves such a path by name: it opens each directory with `O_NOFOLLOW`,
//! keeps the descriptor, and reaches the next entry *through* it (`/proc/self/fd/<fd>/<name>`,
//! with `O_NOFOLLOW` on the last component). A file it hands on (a log for a VMM) is opened here,
//! checked with `fstat` on the open descriptor, and passed as a descriptor, never as a path.
//!
//! This module must never follow a symbolic link below the state directory, and never create or
//! change a file other than the one it was asked to open.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why an entry was refused; the message names the path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct FsError {
    /// The path, as a person would write it.
    pub path: PathBuf,
    /// What is wrong.
    pub why: String,
    /// Whether the entry simply does not exist.
    pub not_found: bool,
}

impl FsError {
    fn new(path: &Path, why: impl Into<String>) -> Self {
        FsError {
            path: path.into(),
            why: why.into(),
            not_found: false,
        }
    }

    /// An error opening a directory: `O_DIRECTORY` reports a symbolic link as "not a
    /// directory", so `entry` (looked at without following it) tells the two apart.
    fn dir_io(path: &Path, entry: &Path, e: &io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOTDIR)
            && std::fs::symlink_metadata(entry).is_ok_and(|m| m.file_type().is_symlink())
        {
            return FsError::new(path, "is a symbolic link; refusing to follow it as root");
        }
        FsError::io(path, e)
    }

    fn io(path: &Path, e: &io::Error) -> Self {
        let why = match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link; refusing to follow it as root".to_string(),
            Some(libc::ENOTDIR) => "is not a directory".to_string(),
            _ if e.kind() == io::ErrorKind::NotFound => "does not exist".to_string(),
            _ => e.to_string(),
        };
        FsError {
            path: path.into(),
            why,
            not_found: e.kind() == io::ErrorKind::NotFound,
        }
    }
}

fn check_component(dir: &Path, name: &str) -> Result<(), FsError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(FsError::new(
            &dir.join(name),
            "is not a plain file name; refusing it",
        ));
    }
    Ok(())
}

/// An open directory, reached without following symbolic links.
#[derive(Debug)]
pub struct Dir {
    file: File,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory `path`. Its last component must not be a symbolic link; the
    /// directories above it must be trusted (root-owned), as `/var/lib` is.
    pub fn open(path: &Path) -> Result<Dir, FsError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| FsError::dir_io(path, path, &e))?;
        Ok(Dir {
            file,
            path: path.into(),
        })
    }

    /// The path a person would use for this directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path a person would use for `name` inside this directory.
    pub fn display_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The path that reaches `name` through this directory's descriptor (no name resolution
    /// above it).
    fn via_fd(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.file.as_raw_fd()))
    }

    /// The directory's own metadata (from the open descriptor).
    pub fn metadata(&self) -> Result<Metadata, FsError> {
        self.file
            .metadata()
            .map_err(|e| FsError::io(&self.path, &e))
    }

    /// Opens the subdirectory `name`; a symbolic link is refused.
    pub fn subdir(&self, name: &str) -> Result<Dir, FsError> {
        check_component(&self.path, name)?;
        let shown = self.display_path(name);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(self.via_fd(name))
            .map_err(|e| FsError::dir_io(&shown, &self.via_fd(name), &e))?;
        Ok(Dir { file, path: shown })
    }

    /// The metadata of `name` itself (a symbolic link is reported as one), or `None` when
    /// there is no such entry.
    pub fn entry(&self, name: &str) -> Result<Option<Metadata>, FsError> {
        check_component(&self.path, name)?;
        match std::fs::symlink_metadata(self.via_fd(name)) {
            Ok(md) => Ok(Some(md)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::io(&self.display_path(name), &e)),
        }
    }

    /// Requires `name` to be a regular file (not a symbolic link) and returns its path.
    pub fn regular_file(&self, name: &str) -> Result<PathBuf, FsError> {
        let shown = self.display_path(name);
        match self.entry(name)? {
            Some(md) if md.file_type().is_file() => Ok(shown),
            Some(md) if md.file_type().is_symlink() => Err(FsError::new(
                &shown,
                "is a symbolic link; refusing to follow it as root",
            )),
            Some(_) => Err(FsError::new(&shown, "is not a regular file")),
            None => Err(FsError {
                path: shown,
                why: "does not exist".into(),
                not_found: true,
            }),
        }
    }

    /// Like [`Dir::regular_file`], but an absent file is `None`.
    pub fn optional_regular_file(&self, name: &str) -> Result<Option<PathBuf>, FsError> {
        match self.regular_file(name) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.not_found => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the log file `name` afresh for a process running as `uid`/`gid` and returns it
    /// open for reading and appending. Whatever was at that name is unlinked first (a symbolic
    /// or hard link is removed, never followed or written through), then a new file is created
    /// with `O_CREAT|O_EXCL|O_NOFOLLOW` and handed to the owner with mode 0600 (VM consoles are nobody else's business). So root never
    /// opens an inode the owner could have prepared; if something reappears at the name in
    /// between, the call fails instead.
    pub fn open_log(&self, name: &str, uid: u32, gid: u32) -> Result<File, FsError> {
        check_component(&self.path, name)?;
        let shown = self.display_path(name);
        self.remove(name)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.via_fd(name))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    FsError::new(
                        &shown,
                        "was re-created by someone else while being replaced",
                    )
                } else {
                    FsError::io(&shown, &e)
                }
            })?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| FsError::io(&shown, &e))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| FsError::io(&shown, &e))?;
        Ok(file)
    }

    /// Pins the Unix socket `name` if it exists: an `O_PATH` descriptor of the socket itself
    /// (a symbolic link is refused), which must belong to `uid`. Connecting to
    /// `/proc/self/fd/<fd>` of the returned file reaches exactly that socket.
    pub fn pin_socket(&self, name: &str, uid: u32) -> Result<Option<File>, FsError> {
        check_component(&self.path, name)?;
        let shown = self.display_path(name);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(self.via_fd(name))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::io(&shown, &e)),
        };
        let md = file.metadata().map_err(|e| FsError::io(&shown, &e))?;
        use std::os::unix::fs::FileTypeExt;
        if !md.file_type().is_socket() {
            return Err(FsError::new(
                &shown,
                "is not a Unix socket (a symbolic link or another file is in its place)",
            ));
        }
        if md.uid() != uid {
            return Err(FsError::new(
                &shown,
                format!("belongs to uid {}, not to the VM's user {uid}", md.uid()),
            ));
        }
        Ok(Some(file))
    }

    /// Removes the entry `name` if it is not a directory (a symbolic link is removed, not
    /// followed); returns whether there was one.
    pub fn remove(&self, name: &str) -> Result<bool, FsError> {
        check_component(&self.path, name)?;
        match std::fs::remove_file(self.via_fd(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FsError::io(&self.display_path(name), &e)),
        }
    }
}

/// The path that reaches the file behind `file` (an `O_PATH` or open descriptor of this process).
pub fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// The last lines of `file` (at most `max_bytes` from its end), as text.
pub fn tail(file: &File, max_bytes: u64, max_lines: usize) -> String {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    let mut buf = vec![0u8; (len - start) as usize];
    let n = file.read_at(&mut buf, start).unwrap_or(0);
    buf.truncate(n);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::symlink;

    use super::*;

    fn as_root() -> bool {
        if banger_host::users::current_uid() == 0 {
            true
        } else {
            eprintln!("skipped: needs root (chown)");
            false
        }
    }

    #[test]
    fn walks_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("vms/real")).unwrap();
        std::fs::write(t.path().join("vms/real/kernel"), "k").unwrap();
        symlink(t.path().join("vms/real"), t.path().join("vms/link")).unwrap();
        symlink("/etc/passwd", t.path().join("vms/real/passwd")).unwrap();
        std::fs::create_dir(t.path().join("vms/real/sub")).unwrap();

        let root = Dir::open(t.path()).unwrap();
        let vms = root.subdir("vms").unwrap();
        let real = vms.subdir("real").unwrap();
        assert_eq!(real.path(), t.path().join("vms/real"));
        assert_eq!(
            real.regular_file("kernel").unwrap(),
            t.path().join("vms/real/kernel")
        );
        let e = vms.subdir("link").unwrap_err();
        assert!(e.why.contains("symbolic link"), "{e}");
        assert!(e.to_string().contains("vms/link"), "{e}");
        let e = real.regular_file("passwd").unwrap_err();
        assert!(e.why.contains("symbolic link"), "{e}");
        assert!(
            real.regular_file("sub")
                .unwrap_err()
                .why
                .contains("not a regular")
        );
        let e = real.regular_file("missing").unwrap_err();
        assert!(e.not_found, "{e}");
        assert_eq!(real.optional_regular_file("missing").unwrap(), None);
        assert!(real.optional_regular_file("passwd").is_err());
        assert!(vms.subdir("..").is_err());
        assert!(vms.subdir("a/b").is_err());
        let e = Dir::open(&t.path().join("vms/link")).unwrap_err();
        assert!(e.why.contains("symbolic link"), "{e}");
        std::fs::write(t.path().join("vms/file"), "").unwrap();
        let e = vms.subdir("file").unwrap_err();
        assert_eq!(e.why, "is not a directory");
        assert!(real.remove("passwd").unwrap(), "the link itself goes");
        assert!(Path::new("/etc/passwd").exists());
        assert!(!real.remove("passwd").unwrap());
    }

    #[test]
    fn logs_are_made_afresh_and_handed_to_the_owner() {
        if !as_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        let mut f = d.open_log("vmm.log", 4321, 4322).unwrap();
        let md = std::fs::metadata(t.path().join("vmm.log")).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (4321, 4322, 0o600));
        writeln!(f, "one\n\ntwo\nthree").unwrap();
        assert_eq!(tail(&f, 1024, 2), "two\nthree");
        assert_eq!(tail(&f, 6, 10), "three");
        // Opened again: a new, empty file.
        let f = d.open_log("vmm.log", 4321, 4322).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 0);

        // Links to a file the owner must not touch are replaced, never written through.
        let secret = t.path().join("secret");
        std::fs::write(&secret, "root only").unwrap();
        symlink(&secret, t.path().join("serial.log")).unwrap();
        std::fs::hard_link(&secret, t.path().join("hard.log")).unwrap();
        for name in ["serial.log", "hard.log"] {
            let mut f = d.open_log(name, 4321, 4322).unwrap();
            writeln!(f, "console").unwrap();
            let md = std::fs::symlink_metadata(t.path().join(name)).unwrap();
            assert!(md.file_type().is_file(), "{name}");
            assert_eq!((md.uid(), md.nlink()), (4321, 1), "{name}");
        }
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only");
        let md = std::fs::metadata(&secret).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o777, md.nlink()), (0, 0o644, 1));
        // A directory in the way is refused.
        std::fs::create_dir(t.path().join("dir.log")).unwrap();
        assert!(d.open_log("dir.log", 4321, 4322).is_err());
    }

    #[test]
    fn sockets_are_pinned_only_when_they_are_the_owners() {
        if !as_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert!(d.pin_socket("api.sock", 0).unwrap().is_none());
        let listener = std::os::unix::net::UnixListener::bind(t.path().join("api.sock")).unwrap();
        let pinned = d.pin_socket("api.sock", 0).unwrap().unwrap();
        // Connecting through the pinned descriptor reaches the socket.
        let _c = std::os::unix::net::UnixStream::connect(fd_path(&pinned)).unwrap();
        listener.accept().unwrap();
        assert!(
            d.pin_socket("api.sock", 1000)
                .unwrap_err()
                .why
                .contains("uid 0")
        );
        symlink(t.path().join("api.sock"), t.path().join("link.sock")).unwrap();
        let e = d.pin_socket("link.sock", 0).unwrap_err();
        assert!(e.why.contains("not a Unix socket"), "{e}");
    }
}
