//! Applying an image's layers into a directory, as an unprivileged process.
//!
//! Layers are tar streams (plain or gzip), applied in order onto one directory, with the OCI
//! image spec's whiteouts: `DIR/.wh.NAME` removes `NAME` of the layers below, and
//! `DIR/.wh..wh..opq` empties `DIR` of what the layers below put there.
//!
//! Nothing an entry says can make the extraction touch anything outside the directory:
//! - a path with a `..` component is refused (a leading `/` or `./` is only stripped);
//! - every directory above an entry is checked with `lstat` as it is reached: an entry below a
//!   symbolic link is refused, so a link to `/etc` in one layer cannot carry a file of the next
//!   layer out of the tree;
//! - files are created with `O_CREAT|O_EXCL` after the old entry is removed, so no existing
//!   link is ever followed when writing;
//! - a hard link must point at a regular file already in the tree;
//! - device nodes and FIFOs are refused (the guest's `/dev` is the kernel's devtmpfs), as are
//!   sparse and unknown member types;
//! - a whiteout must name a plain file name.
//!
//! Caps bound the bytes written, the number of entries and the length of a path. Symbolic links
//! themselves may point anywhere: they are only ever resolved inside the guest.
//!
//! Ownership and the full mode (set-user-ID bits included) are recorded in [`Tree::meta`], not
//! applied: on disk every file is the extracting user's, readable by it, without special bits.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bounds on what layers may write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of file contents, over all layers.
    pub max_bytes: u64,
    /// Entries, over all layers.
    pub max_entries: u64,
    /// Bytes of one path inside the tree.
    pub max_path: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 << 30,
            max_entries: 500_000,
            max_path: 4096,
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar`.
    None,
    /// `…tar+gzip` (and Docker's `…rootfs.diff.tar.gzip`).
    Gzip,
}

/// What an entry of the tree is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file (hard links included).
    File,
    /// A symbolic link.
    Symlink,
}

/// Ownership and mode of one entry, as the image says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// What it is.
    pub kind: Kind,
    /// Owner's uid in the guest.
    pub uid: u32,
    /// Group's gid in the guest.
    pub gid: u32,
    /// Permission and special bits (`0o7777`).
    pub mode: u32,
}

/// Which layer an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerId {
    /// 1-based position in the manifest.
    pub index: usize,
    /// Its digest.
    pub digest: String,
}

/// Why a layer was refused. Nothing of the tree is usable afterwards: the caller removes it.
#[derive(Debug, thiserror::Error)]
#[error("layer {index} ({digest}){}: {why}", member.as_ref().map(|m| format!(", member {m:?}")).unwrap_or_default())]
pub struct LayerError {
    /// 1-based position of the layer.
    pub index: usize,
    /// The layer's digest.
    pub digest: String,
    /// The member, when one is at fault.
    pub member: Option<String>,
    /// What is wrong.
    pub why: String,
}

/// A root filesystem being built from layers.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    limits: Limits,
    /// Ownership and modes, by path inside the tree (`""` is the root, no leading `/`).
    pub meta: BTreeMap<String, Meta>,
    bytes: u64,
    entries: u64,
}

/// A path inside the tree, checked: its components, none of them `.`, `..` or empty.
fn components(raw: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("its path has a '..' component".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Creates a file that must not exist yet, never through a link: readable and writable by the
/// extracting user, with `mode`'s permission bits and no special ones.
fn create_new(path: &Path, mode: u32) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600 | (mode & 0o755))
        .open(path)
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

impl Tree {
    /// Starts a tree in `root`, an existing empty directory.
    pub fn new(root: &Path, limits: Limits) -> io::Result<Tree> {
        if fs::read_dir(root)?.next().is_some() {
            return Err(io::Error::other(format!(
                "{} is not empty: layers are applied into an empty directory",
                root.display()
            )));
        }
        let mut meta = BTreeMap::new();
        meta.insert(
            String::new(),
            Meta {
                kind: Kind::Dir,
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
        );
        Ok(Tree {
            root: root.to_path_buf(),
            limits,
            meta,
            bytes: 0,
            entries: 0,
        })
    }

    /// The directory the tree is in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes of file contents written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Applies one layer over what is there.
    pub fn apply(
        &mut self,
        layer: &LayerId,
        blob: impl Read,
        compression: Compression,
    ) -> Result<(), LayerError> {
        let reader: Box<dyn Read> = match compression {
            Compression::None => Box::new(blob),
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(blob)),
        };
        let err = |member: Option<String>, why: String| LayerError {
            index: layer.index,
            digest: layer.digest.clone(),
            member,
            why,
        };
        let mut archive = tar::Archive::new(reader);
        let mut created: HashSet<String> = HashSet::new();
        let entries = archive
            .entries()
            .map_err(|e| err(None, format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| err(None, format!("reading the archive: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8(raw).map_err(|e| {
                err(
                    Some(String::from_utf8_lossy(e.as_bytes()).into()),
                    "its path is not UTF-8".into(),
                )
            })?;
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(err(
                    Some(name),
                    format!(
                        "the image has more than {} entries, the limit",
                        self.limits.max_entries
                    ),
                ));
            }
            self.apply_entry(&mut entry, &name, &mut created)
                .map_err(|why| err(Some(name.clone()), why))?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        created: &mut HashSet<String>,
    ) -> Result<(), String> {
        use tar::EntryType as T;
        if name.len() > self.limits.max_path {
            return Err(format!(
                "its path is longer than {} bytes, the limit",
                self.limits.max_path
            ));
        }
        let kind = entry.header().entry_type();
        if kind == T::XGlobalHeader {
            return Ok(());
        }
        let comps = components(name)?;
        let Some((&last, parents)) = comps.split_last() else {
            // The root itself ("./"): only its ownership and mode.
            if kind == T::Directory {
                let m = self.meta_of(entry, Kind::Dir)?;
                self.meta.insert(String::new(), m);
                return Ok(());
            }
            return Err("it names the root directory but is not a directory".into());
        };
        let parent = self.ensure_parents(parents)?;
        let rel = comps.join("/");

        if last == OPAQUE {
            return self.opaque(&parent, parents, created);
        }
        if let Some(target) = last.strip_prefix(WHITEOUT) {
            if target.is_empty() || target == "." || target == ".." || target.starts_with(WHITEOUT)
            {
                return Err(format!("whiteout {last:?} names no plain file name"));
            }
            let mut victim = parents.to_vec();
            victim.push(target);
            self.remove(&victim.join("/"))?;
            return Ok(());
        }

        let path = self.root.join(&rel);
        let ty = match kind {
            T::Directory => Kind::Dir,
            T::Regular | T::Continuous => Kind::File,
            T::Symlink => Kind::Symlink,
            T::Link => Kind::File,
            T::Char => {
                return Err(
                    "it is a character device: images may not carry device nodes (the guest's /dev is the kernel's)".into(),
                );
            }
            T::Block => {
                return Err(
                    "it is a block device: images may not carry device nodes (the guest's /dev is the kernel's)".into(),
                );
            }
            T::Fifo => return Err("it is a FIFO: images may not carry FIFOs".into()),
            T::GNUSparse => {
                return Err("it is a sparse member, which banger does not unpack".into());
            }
            other => {
                return Err(format!(
                    "its type {other:?} is not a file, directory or link"
                ));
            }
        };
        let mut meta = self.meta_of(entry, ty.clone())?;
        let existing = fs::symlink_metadata(&path).ok();
        match (kind, &existing) {
            (T::Directory, Some(m)) if m.is_dir() => {}
            (_, Some(_)) => self.remove(&rel)?,
            (_, None) => {}
        }
        match kind {
            T::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&path).map_err(|e| format!("creating it: {e}"))?;
                }
                fs::set_permissions(
                    &path,
                    fs::Permissions::from_mode(0o700 | (meta.mode & 0o755)),
                )
                .map_err(|e| format!("setting its mode: {e}"))?;
            }
            T::Regular | T::Continuous => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|e| format!("its size: {e}"))?;
                if self.bytes.saturating_add(size) > self.limits.max_bytes {
                    return Err(format!(
                        "the image's files are over {} bytes unpacked, the limit",
                        self.limits.max_bytes
                    ));
                }
                let mut f =
                    create_new(&path, meta.mode).map_err(|e| format!("creating it: {e}"))?;
                let n = io::copy(&mut (&mut *entry).take(size), &mut f)
                    .map_err(|e| format!("writing it: {e}"))?;
                if n != size {
                    return Err(format!("the archive ends inside it ({n} of {size} bytes)"));
                }
                self.bytes += size;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or("it is a symbolic link to nothing")?;
                let target = String::from_utf8(target.into_owned())
                    .map_err(|_| "its link target is not UTF-8".to_string())?;
                if target.is_empty() || target.len() > self.limits.max_path {
                    return Err("its link target is empty or too long".into());
                }
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| format!("creating it: {e}"))?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or("it is a hard link to nothing")?;
                let target = String::from_utf8(target.into_owned())
                    .map_err(|_| "its link target is not UTF-8".to_string())?;
                let tcomps = components(&target).map_err(|e| format!("hard link target: {e}"))?;
                let (_, tparents) = tcomps
                    .split_last()
                    .ok_or("it is a hard link to the root directory")?;
                self.check_parents(tparents)
                    .map_err(|e| format!("hard link target {target:?}: {e}"))?;
                let tpath = self.root.join(tcomps.join("/"));
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if m.is_file() => {}
                    Ok(_) => {
                        return Err(format!(
                            "it is a hard link to {target:?}, which is not a regular file"
                        ));
                    }
                    Err(_) => {
                        return Err(format!(
                            "it is a hard link to {target:?}, which is not in the image"
                        ));
                    }
                }
                fs::hard_link(&tpath, &path).map_err(|e| format!("creating it: {e}"))?;
                // A hard link shares its target's inode, so its ownership and mode.
                if let Some(m) = self.meta.get(&tcomps.join("/")) {
                    meta = m.clone();
                }
            }
            _ => unreachable!("refused above"),
        }
        self.meta.insert(rel.clone(), meta);
        created.insert(rel);
        Ok(())
    }

    fn meta_of<R: Read>(&self, entry: &tar::Entry<'_, R>, kind: Kind) -> Result<Meta, String> {
        let h = entry.header();
        let id = |v: io::Result<u64>, what: &str| -> Result<u32, String> {
            v.ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("its {what} is not a valid id"))
        };
        Ok(Meta {
            kind,
            uid: id(h.uid(), "uid")?,
            gid: id(h.gid(), "gid")?,
            mode: h.mode().map_err(|e| format!("its mode: {e}"))? & 0o7777,
        })
    }

    /// Checks that every directory above an entry is a real directory (never a link), and
    /// fails on one that is missing.
    fn check_parents(&mut self, parents: &[&str]) -> Result<(), String> {
        self.walk_parents(parents, false).map(|_| ())
    }

    /// Creates the directories above an entry that do not exist yet (root's, 0755, as the
    /// spec's implied parents), refusing links and files in the way; returns the parent.
    fn ensure_parents(&mut self, parents: &[&str]) -> Result<PathBuf, String> {
        self.walk_parents(parents, true)
    }

    /// Walks the directories above an entry with `lstat`: a symbolic link or a file on the way
    /// is refused; a missing directory is created (`create`) or refused.
    fn walk_parents(&mut self, parents: &[&str], create: bool) -> Result<PathBuf, String> {
        let mut p = self.root.clone();
        for (i, c) in parents.iter().enumerate() {
            p.push(c);
            let shown = parents[..=i].join("/");
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "{shown:?} above it is a symbolic link: nothing is unpacked through a link"
                    ));
                }
                Ok(m) if !m.is_dir() => {
                    return Err(format!("{shown:?} above it is not a directory"));
                }
                Ok(_) => {}
                Err(_) if !create => {
                    return Err(format!("{shown:?} above it is not in the image"));
                }
                Err(_) => {
                    fs::create_dir(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
                    self.meta.insert(
                        shown,
                        Meta {
                            kind: Kind::Dir,
                            uid: 0,
                            gid: 0,
                            mode: 0o755,
                        },
                    );
                }
            }
        }
        Ok(p)
    }

    /// Removes `rel` (and all below it) from disk and from the metadata, if it is there.
    fn remove(&mut self, rel: &str) -> Result<(), String> {
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => return Ok(()),
        }
        .map_err(|e| format!("removing {rel:?}: {e}"))?;
        let below = format!("{rel}/");
        self.meta.retain(|k, _| k != rel && !k.starts_with(&below));
        Ok(())
    }

    /// An opaque whiteout: everything in `parent` that this layer did not put there goes.
    fn opaque(
        &mut self,
        parent: &Path,
        parents: &[&str],
        created: &HashSet<String>,
    ) -> Result<(), String> {
        let rel_parent = parents.join("/");
        let children = fs::read_dir(parent).map_err(|e| format!("reading {rel_parent:?}: {e}"))?;
        let mut names = Vec::new();
        for c in children {
            let c = c.map_err(|e| format!("reading {rel_parent:?}: {e}"))?;
            names.push(c.file_name().to_string_lossy().into_owned());
        }
        for n in names {
            let rel = if rel_parent.is_empty() {
                n
            } else {
                format!("{rel_parent}/{n}")
            };
            if !created.contains(&rel) {
                self.remove(&rel)?;
            }
        }
        Ok(())
    }

    /// What `path` (absolute, inside the guest) leads to, following symbolic links as the guest
    /// would, but never above the tree's root: its path inside the tree and its metadata. At
    /// most 40 links are followed. `None` when nothing is there.
    pub fn resolve(&self, path: &str) -> Option<(String, Meta)> {
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut at: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    at.pop();
                    continue;
                }
                _ => {}
            }
            at.push(c);
            let rel = at.join("/");
            let meta = self.meta.get(&rel)?;
            if meta.kind == Kind::Symlink {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = fs::read_link(self.root.join(&rel)).ok()?;
                let target = target.to_str()?.to_string();
                at.pop();
                if target.starts_with('/') {
                    at.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
            }
        }
        let rel = at.join("/");
        self.meta.get(&rel).map(|m| (rel, m.clone()))
    }

    /// Writes a regular file of banger's own at `rel` (replacing what is there), with `meta`
    /// as its ownership and mode in the guest; its parents must be real directories.
    pub fn write_file(&mut self, rel: &str, contents: &[u8], meta: Meta) -> Result<(), String> {
        use std::io::Write;
        let comps = components(rel)?;
        let (_, parents) = comps.split_last().ok_or("no file name")?;
        self.ensure_parents(parents)?;
        let rel = comps.join("/");
        self.remove(&rel)?;
        let path = self.root.join(&rel);
        let mut f = create_new(&path, meta.mode)
            .and_then(|mut f| f.write_all(contents).map(|_| f))
            .map_err(|e| format!("writing {rel:?}: {e}"))?;
        f.flush().map_err(|e| format!("writing {rel:?}: {e}"))?;
        self.bytes += contents.len() as u64;
        self.meta.insert(rel, meta);
        Ok(())
    }

    /// The metadata as JSON, for the step that writes the filesystem image.
    pub fn meta_json(&self) -> String {
        serde_json::to_string(&self.meta).expect("metadata always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar member with its name and link written raw, so that hostile names (`..`) survive.
    struct Member<'a> {
        name: &'a str,
        kind: tar::EntryType,
        data: &'a [u8],
        link: &'a str,
        mode: u32,
        uid: u64,
    }

    fn m<'a>(name: &'a str, kind: tar::EntryType, data: &'a [u8]) -> Member<'a> {
        Member {
            name,
            kind,
            data,
            link: "",
            mode: 0o644,
            uid: 0,
        }
    }

    fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> Member<'a> {
        Member {
            link: target,
            mode: 0o777,
            ..m(name, kind, b"")
        }
    }

    fn layer(members: &[Member<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for mem in members {
            let mut h = tar::Header::new_old();
            {
                let old = h.as_old_mut();
                old.name[..mem.name.len()].copy_from_slice(mem.name.as_bytes());
                old.linkname[..mem.link.len()].copy_from_slice(mem.link.as_bytes());
            }
            h.set_entry_type(mem.kind);
            h.set_size(mem.data.len() as u64);
            h.set_mode(mem.mode);
            h.set_uid(mem.uid);
            h.set_gid(mem.uid);
            h.set_cksum();
            b.append(&h, mem.data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut e, bytes).unwrap();
        e.finish().unwrap()
    }

    fn id(i: usize) -> LayerId {
        LayerId {
            index: i,
            digest: format!("sha256:{i:064}"),
        }
    }

    fn tree(dir: &Path) -> Tree {
        Tree::new(dir, Limits::default()).unwrap()
    }

    use tar::EntryType as T;

    #[test]
    fn layers_stack_with_whiteouts_and_keep_ownership_in_meta() {
        let d = tempfile::tempdir().unwrap();
        let mut t = tree(d.path());
        let base = layer(&[
            m("./", T::Directory, b""),
            m("etc/", T::Directory, b""),
            m("etc/os-release", T::Regular, b"ID=debian\n"),
            m("etc/gone", T::Regular, b"x"),
            m("var/cache/", T::Directory, b""),
            m("var/cache/a", T::Regular, b"a"),
            Member {
                mode: 0o4755,
                ..m("usr/bin/su", T::Regular, b"ELF")
            },
            link("bin", T::Symlink, "usr/bin"),
            link("usr/bin/su2", T::Link, "usr/bin/su"),
            Member {
                uid: 1000,
                ..m("home/u/.profile", T::Regular, b"p")
            },
        ]);
        t.apply(&id(1), &gz(&base)[..], Compression::Gzip).unwrap();
        let top = layer(&[
            m("etc/.wh.gone", T::Regular, b""),
            m("var/cache/.wh..wh..opq", T::Regular, b""),
            m("var/cache/b", T::Regular, b"b"),
            m("etc/os-release", T::Regular, b"ID=banger-test\n"),
            m(".wh.home", T::Regular, b""),
        ]);
        t.apply(&id(2), &top[..], Compression::None).unwrap();
        let r = d.path();
        assert_eq!(
            fs::read_to_string(r.join("etc/os-release")).unwrap(),
            "ID=banger-test\n"
        );
        assert!(!r.join("etc/gone").exists());
        assert!(!r.join("var/cache/a").exists());
        assert_eq!(fs::read_to_string(r.join("var/cache/b")).unwrap(), "b");
        assert!(!r.join("home").exists());
        assert_eq!(fs::read_link(r.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(fs::read(r.join("usr/bin/su2")).unwrap(), b"ELF");
        // Special bits are recorded, not applied.
        assert_eq!(t.meta["usr/bin/su"].mode, 0o4755);
        assert_eq!(t.meta["usr/bin/su2"].mode, 0o4755);
        assert_eq!(
            fs::metadata(r.join("usr/bin/su"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7000,
            0
        );
        assert_eq!(
            t.meta["usr/bin"].kind,
            Kind::Dir,
            "implied parents are recorded"
        );
        assert!(
            !t.meta.keys().any(|k| k.starts_with("home")),
            "{:?}",
            t.meta.keys()
        );
        assert!(!t.meta.contains_key("var/cache/a"));
        assert!(t.meta_json().contains("\"etc/os-release\""));
        assert_eq!(t.bytes(), 10 + 1 + 1 + 3 + 1 + 1 + 15);
    }

    fn refused(members: &[Member<'_>], want: &str) {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut t = tree(d.path());
        let bytes = layer(members);
        let Err(e) = t.apply(&id(3), &bytes[..], Compression::None) else {
            panic!("a layer that should be refused ({want}) was applied");
        };
        let text = e.to_string();
        assert!(text.contains(want), "want {want:?} in: {text}");
        assert!(text.starts_with("layer 3 (sha256:"), "{text}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn hostile_layers_are_refused_naming_the_member() {
        refused(
            &[m("../escape", T::Regular, b"x")],
            "member \"../escape\": its path has a '..' component",
        );
        refused(&[m("a/../../escape", T::Regular, b"x")], "'..' component");
        refused(
            &[
                link("etc", T::Symlink, "/tmp"),
                m("etc/passwd", T::Regular, b"x"),
            ],
            "\"etc\" above it is a symbolic link",
        );
        refused(
            &[m("dev/null", T::Char, b"")],
            "member \"dev/null\": it is a character device",
        );
        refused(&[m("dev/sda", T::Block, b"")], "block device");
        refused(&[m("run/p", T::Fifo, b"")], "FIFO");
        refused(
            &[m("etc/.wh...", T::Regular, b"")],
            "whiteout \".wh...\" names no plain file name",
        );
        refused(
            &[m("etc/.wh..", T::Regular, b"")],
            "whiteout \".wh..\" names no plain file name",
        );
        refused(
            &[m("etc/.wh.", T::Regular, b"")],
            "whiteout \".wh.\" names no plain file name",
        );
        refused(
            &[link("x", T::Link, "/etc/shadow")],
            "hard link target \"/etc/shadow\": \"etc\" above it is not in the image",
        );
        refused(
            &[
                m("etc/", T::Directory, b""),
                link("x", T::Link, "/etc/shadow"),
            ],
            "hard link to \"/etc/shadow\", which is not in the image",
        );
        refused(
            &[link("x", T::Link, "../../etc/shadow")],
            "hard link target: its path has a '..' component",
        );
        refused(
            &[
                link("d", T::Symlink, "/etc"),
                link("x", T::Link, "d/shadow"),
            ],
            "hard link target \"d/shadow\": \"d\" above it is a symbolic link",
        );
        refused(
            &[m("f", T::Regular, b"x"), m("f/g", T::Regular, b"x")],
            "\"f\" above it is not a directory",
        );
    }

    #[test]
    fn a_link_planted_by_a_lower_layer_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let mut t = tree(d.path());
        let low = layer(&[
            link("evil", T::Symlink, &target),
            link("evil2", T::Symlink, &format!("{target}/f")),
        ]);
        t.apply(&id(1), &low[..], Compression::None).unwrap();
        // A file over the link replaces the link; a file below it is refused.
        let e = t
            .apply(
                &id(2),
                &layer(&[m("evil/f", T::Regular, b"x")])[..],
                Compression::None,
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("\"evil\" above it is a symbolic link"),
            "{e}"
        );
        t.apply(
            &id(3),
            &layer(&[m("evil2", T::Regular, b"mine")])[..],
            Compression::None,
        )
        .unwrap();
        assert_eq!(fs::read(d.path().join("evil2")).unwrap(), b"mine");
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );
        // A whiteout of the link removes the link, not what it points at.
        fs::write(outside.path().join("keep"), b"k").unwrap();
        t.apply(
            &id(4),
            &layer(&[m(".wh.evil", T::Regular, b"")])[..],
            Compression::None,
        )
        .unwrap();
        assert!(fs::symlink_metadata(d.path().join("evil")).is_err());
        assert_eq!(fs::read(outside.path().join("keep")).unwrap(), b"k");
    }

    #[test]
    fn caps_are_enforced() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::new(
            d.path(),
            Limits {
                max_bytes: 10,
                max_entries: 3,
                max_path: 16,
            },
        )
        .unwrap();
        let e = t
            .apply(
                &id(1),
                &layer(&[m("big", T::Regular, &[0; 11])])[..],
                Compression::None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("over 10 bytes unpacked"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::new(
            d.path(),
            Limits {
                max_entries: 2,
                ..Limits::default()
            },
        )
        .unwrap();
        let e = t
            .apply(
                &id(1),
                &layer(&[
                    m("a", T::Regular, b""),
                    m("b", T::Regular, b""),
                    m("c", T::Regular, b""),
                ])[..],
                Compression::None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("more than 2 entries"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::new(
            d.path(),
            Limits {
                max_path: 5,
                ..Limits::default()
            },
        )
        .unwrap();
        let e = t
            .apply(
                &id(1),
                &layer(&[m("abcdefgh", T::Regular, b"")])[..],
                Compression::None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("longer than 5 bytes"), "{e}");
    }

    #[test]
    fn a_truncated_or_foreign_blob_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut t = tree(d.path());
        let mut bytes = layer(&[m("f", T::Regular, &[7; 2000])]);
        bytes.truncate(1024);
        let e = t.apply(&id(1), &bytes[..], Compression::None).unwrap_err();
        assert!(e.to_string().starts_with("layer 1 (sha256:"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let mut t = tree(d.path());
        let e = t
            .apply(&id(2), &b"not gzip at all"[..], Compression::Gzip)
            .unwrap_err();
        assert!(e.to_string().contains("layer 2"), "{e}");
        std::fs::write(d.path().join("x"), b"").unwrap();
        let e = Tree::new(d.path(), Limits::default()).unwrap_err();
        assert!(e.to_string().contains("is not empty"), "{e}");
    }
}
