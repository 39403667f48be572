//! From an unpacked [`Tree`] to a bootable root filesystem image.
//!
//! - [`check_bootable`]: the image must have an init (`/sbin/init`, which banger's initramfs
//!   hands over to) and an SSH server (`/usr/sbin/sshd` or `/usr/sbin/dropbear`: banger reaches
//!   its VMs over SSH), each resolved through the image's own symbolic links and executable.
//! - [`write_ext4`]: `mkfs.ext4 -d` copies the tree into a sparse ext4 image; then `debugfs`
//!   sets on every inode the owner, group and mode the layers recorded, so the guest sees
//!   root's files as root's (and set-user-ID programs as such) although the daemon that
//!   unpacked them never runs as root. No step mounts anything or needs a privilege.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::layer::{Kind, Meta, Tree};

/// Where banger writes, inside the image, what its initramfs hands over to.
pub const HANDOVER_FILE: &str = "etc/banger-image";
/// Where an image's init must be.
pub const INIT: &str = "/sbin/init";
/// The SSH servers banger knows; one must be there.
pub const SSH_SERVERS: [&str; 2] = ["/usr/sbin/sshd", "/usr/sbin/dropbear"];

/// Why an image cannot become a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The image lacks something a banger VM needs.
    #[error("the image cannot boot as a banger VM: {0}")]
    NotBootable(String),
    /// A tool of e2fsprogs is missing or failed.
    #[error("{0}")]
    Tool(String),
    /// Writing the image failed.
    #[error("writing {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// What a bootable image runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The init, as the guest names it.
    pub init: String,
    /// The SSH server found.
    pub ssh: String,
}

fn executable(tree: &Tree, path: &str) -> Result<(), String> {
    match tree.resolve(path) {
        None => Err(format!("{path} is missing")),
        Some((_, m)) if m.kind != Kind::File => Err(format!("{path} is not a regular file")),
        Some((_, m)) if m.mode & 0o111 == 0 => Err(format!("{path} is not executable")),
        Some(_) => Ok(()),
    }
}

/// Checks that the image has an init and an SSH server, saying what it lacks otherwise.
pub fn check_bootable(tree: &Tree) -> Result<Boot, BuildError> {
    let mut lacks = Vec::new();
    if let Err(why) = executable(tree, INIT) {
        lacks.push(format!(
            "it has no init ({why}; a VM boots the image's own init: install one, e.g. Debian's systemd-sysv)"
        ));
    }
    let ssh = SSH_SERVERS
        .iter()
        .find(|p| executable(tree, p).is_ok())
        .map(|p| p.to_string());
    if ssh.is_none() {
        lacks.push(format!(
            "it has no SSH server (none of {} is an executable file; banger reaches VMs over SSH: install one, e.g. openssh-server)",
            SSH_SERVERS.join(", ")
        ));
    }
    if !lacks.is_empty() {
        return Err(BuildError::NotBootable(lacks.join("; and ")));
    }
    Ok(Boot {
        init: INIT.into(),
        ssh: ssh.unwrap_or_default(),
    })
}

/// Writes [`HANDOVER_FILE`] into the tree: what banger's initramfs reads to hand over.
pub fn write_handover(tree: &mut Tree, boot: &Boot, source: &str) -> Result<(), BuildError> {
    let text = format!(
        "# Written by banger when it made this root filesystem from {source}.\n\
         # banger's initramfs applies the VM's config disk to it, then runs this init.\n\
         init={}\nssh={}\n",
        boot.init, boot.ssh
    );
    tree.write_file(
        HANDOVER_FILE,
        text.as_bytes(),
        Meta {
            kind: Kind::File,
            uid: 0,
            gid: 0,
            mode: 0o644,
        },
    )
    .map_err(BuildError::NotBootable)
}

/// The image size for `tree`: its contents, a block per entry, a quarter more and 512 MiB
/// free for the guest (the file is sparse: free space costs nothing on the host).
pub fn image_size(tree: &Tree) -> u64 {
    let used = tree.bytes() + tree.meta.len() as u64 * 4096;
    let size = used + used / 4 + (512 << 20);
    size.div_ceil(1 << 20) << 20
}

/// The e2fsprogs program `name`, wherever the host keeps it.
fn tool(name: &str) -> Result<PathBuf, BuildError> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            BuildError::Tool(format!(
                "{name} is not installed: making a root filesystem needs e2fsprogs"
            ))
        })
}

/// The `debugfs` commands that give every entry its recorded owner, group and mode. A path
/// `debugfs` cannot quote (a `"`, a backslash or a control character in it) is refused.
pub fn ownership_script(tree: &Tree) -> Result<String, BuildError> {
    let mut s = String::new();
    for (rel, m) in &tree.meta {
        if rel.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return Err(BuildError::NotBootable(format!(
                "the path {rel:?} has a quote, a backslash or a control character, which banger cannot record the owner of"
            )));
        }
        let p = format!("\"/{rel}\"");
        let _ = writeln!(s, "sif {p} uid {}", m.uid);
        let _ = writeln!(s, "sif {p} gid {}", m.gid);
        let ty = match m.kind {
            Kind::Dir => 0o040000,
            Kind::File => 0o100000,
            Kind::Symlink => continue,
        };
        let _ = writeln!(s, "sif {p} mode 0{:o}", ty | (m.mode & 0o7777));
    }
    Ok(s)
}

fn run(cmd: &mut Command, what: &str) -> Result<String, BuildError> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| BuildError::Tool(format!("running {what}: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(BuildError::Tool(format!(
            "{what} failed ({}): {}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(stderr)
}

/// Writes `tree` as a sparse ext4 image at `dest` (created; it must not exist), labelled
/// `label`, with the recorded ownership and modes.
pub fn write_ext4(tree: &Tree, dest: &Path, label: &str) -> Result<(), BuildError> {
    let mkfs = tool("mkfs.ext4")?;
    let debugfs = tool("debugfs")?;
    let script = ownership_script(tree)?;
    let io = |error| BuildError::Io {
        path: dest.to_path_buf(),
        error,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io)?;
    f.set_len(image_size(tree)).map_err(io)?;
    drop(f);
    let inodes = tree.meta.len() as u64 + tree.meta.len() as u64 / 4 + 16384;
    run(
        Command::new(&mkfs)
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"])
            .args(["-N", &inodes.to_string(), "-L", label])
            .args(["-E", "root_owner=0:0", "-d"])
            .arg(tree.root())
            .arg(dest),
        "mkfs.ext4 -d",
    )?;
    let script_path = dest.with_extension("debugfs");
    std::fs::write(&script_path, script).map_err(|error| BuildError::Io {
        path: script_path.clone(),
        error,
    })?;
    let stderr = run(
        Command::new(&debugfs)
            .arg("-w")
            .arg("-f")
            .arg(&script_path)
            .arg(dest),
        "debugfs",
    );
    let _ = std::fs::remove_file(&script_path);
    // debugfs exits 0 even when a command fails: anything on stderr but its banner is one.
    let problems: Vec<&str> = stderr
        .as_deref()
        .map_err(|e| BuildError::Tool(e.to_string()))?
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .take(5)
        .collect();
    if !problems.is_empty() {
        return Err(BuildError::Tool(format!(
            "debugfs could not set the recorded ownership: {}",
            problems.join("; ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, LayerId, Limits};

    fn member(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        data: &[u8],
        link: &str,
        mode: u32,
        (uid, gid): (u64, u64),
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        b.append_data(&mut h, name, data).unwrap();
    }

    /// A small merged-/usr image: /sbin -> usr/sbin, an init link to systemd, sshd, a
    /// set-user-ID program and a group-owned file.
    fn image(dir: &Path, with_sshd: bool, with_init: bool) -> Tree {
        use tar::EntryType as T;
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "usr/", T::Directory, b"", "", 0o755, (0, 0));
        member(&mut b, "usr/sbin/", T::Directory, b"", "", 0o755, (0, 0));
        member(
            &mut b,
            "usr/lib/systemd/",
            T::Directory,
            b"",
            "",
            0o755,
            (0, 0),
        );
        member(&mut b, "sbin", T::Symlink, b"", "usr/sbin", 0o777, (0, 0));
        if with_init {
            member(
                &mut b,
                "usr/lib/systemd/systemd",
                T::Regular,
                b"\x7fELF",
                "",
                0o755,
                (0, 0),
            );
            member(
                &mut b,
                "usr/sbin/init",
                T::Symlink,
                b"",
                "../lib/systemd/systemd",
                0o777,
                (0, 0),
            );
        }
        if with_sshd {
            member(
                &mut b,
                "usr/sbin/sshd",
                T::Regular,
                b"\x7fELF",
                "",
                0o755,
                (0, 0),
            );
        }
        member(&mut b, "usr/bin/", T::Directory, b"", "", 0o755, (0, 0));
        member(
            &mut b,
            "usr/bin/passwd",
            T::Regular,
            b"\x7fELF",
            "",
            0o4755,
            (0, 0),
        );
        member(&mut b, "etc/", T::Directory, b"", "", 0o755, (0, 0));
        member(
            &mut b,
            "etc/shadow",
            T::Regular,
            b"root:*:",
            "",
            0o640,
            (0, 42),
        );
        member(
            &mut b,
            "home/user/",
            T::Directory,
            b"",
            "",
            0o750,
            (1000, 1000),
        );
        member(
            &mut b,
            "home/user/a file",
            T::Regular,
            b"hi",
            "",
            0o600,
            (1000, 1000),
        );
        let mut t = Tree::new(dir, Limits::default()).unwrap();
        let bytes = b.into_inner().unwrap();
        t.apply(
            &LayerId {
                index: 1,
                digest: "sha256:x".into(),
            },
            &bytes[..],
            Compression::None,
        )
        .unwrap();
        t
    }

    #[test]
    fn init_and_ssh_server_are_found_through_the_images_own_links() {
        let d = tempfile::tempdir().unwrap();
        let t = image(d.path(), true, true);
        assert_eq!(
            t.resolve("/sbin/init").map(|(p, _)| p),
            Some("usr/lib/systemd/systemd".into())
        );
        assert_eq!(
            check_bootable(&t).unwrap(),
            Boot {
                init: "/sbin/init".into(),
                ssh: "/usr/sbin/sshd".into()
            }
        );
        // ".." never climbs above the root.
        assert_eq!(
            t.resolve("/../../sbin/sshd").map(|(p, _)| p),
            Some("usr/sbin/sshd".into())
        );

        let d = tempfile::tempdir().unwrap();
        let e = check_bootable(&image(d.path(), false, false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("it has no init (/sbin/init is missing"), "{e}");
        assert!(e.contains("it has no SSH server"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = check_bootable(&image(d.path(), false, true))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("no init") && e.contains("no SSH server"), "{e}");
    }

    fn stat(img: &Path, path: &str) -> String {
        let out = Command::new(tool("debugfs").unwrap())
            .arg("-R")
            .arg(format!("stat \"{path}\""))
            .arg(img)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let mode = s
            .split("Mode:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let user = s
            .split("User:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let group = s
            .split("Group:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        format!("{user}:{group} {mode}")
    }

    #[test]
    fn the_ext4_image_carries_the_recorded_ownership_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut t = image(&root, true, true);
        let boot = check_bootable(&t).unwrap();
        write_handover(&mut t, &boot, "oci://127.0.0.1:5000/x:1").unwrap();
        let img = d.path().join("rootfs.ext4");
        write_ext4(&t, &img, "banger-root").unwrap();
        assert_eq!(stat(&img, "/usr/bin/passwd"), "0:0 04755");
        assert_eq!(stat(&img, "/etc/shadow"), "0:42 0640");
        assert_eq!(stat(&img, "/home/user"), "1000:1000 0750");
        assert_eq!(stat(&img, "/home/user/a file"), "1000:1000 0600");
        assert_eq!(stat(&img, "/etc/banger-image"), "0:0 0644");
        assert_eq!(stat(&img, "/"), "0:0 0755");
        let out = Command::new(tool("debugfs").unwrap())
            .args(["-R", "cat /etc/banger-image"])
            .arg(&img)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("init=/sbin/init\nssh=/usr/sbin/sshd\n"),
            "{text}"
        );
        // Sparse: most of the image is holes.
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&img).unwrap();
        assert!(
            m.blocks() * 512 < m.len() / 4,
            "{} of {} bytes allocated",
            m.blocks() * 512,
            m.len()
        );
        // A clean file system.
        let fsck = Command::new(tool("e2fsck").unwrap())
            .args(["-fn"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        // An existing file is never overwritten.
        assert!(matches!(
            write_ext4(&t, &img, "x"),
            Err(BuildError::Io { .. })
        ));
    }

    #[test]
    fn paths_debugfs_cannot_quote_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::new(d.path(), Limits::default()).unwrap();
        t.meta.insert(
            "etc/we\"ird".into(),
            Meta {
                kind: Kind::File,
                uid: 0,
                gid: 0,
                mode: 0o644,
            },
        );
        let e = ownership_script(&t).unwrap_err().to_string();
        assert!(e.contains("has a quote"), "{e}");
    }
}
