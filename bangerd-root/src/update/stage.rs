//! Strict extraction of a release tarball into the staging directory.
//!
//! The tarball must hold exactly the installed programs as regular files, with plain names:
//! no directories, no `./` or `..`, no links, no devices, nothing else. Whatever is extracted
//! gets mode 0755. Anything else is refused with the entry's name and the fault.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use banger_host::install::PROGRAMS;
use tar::EntryType;

/// Largest single binary accepted (decompression-bomb guard).
pub const MAX_ENTRY_BYTES: u64 = 512 << 20;

/// Why a tarball was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("release tarball refused: {0}")]
pub struct StageError(pub String);

/// Extracts `tarball` into `dir` (which must be empty).
pub fn extract(tarball: &Path, dir: &Path) -> Result<(), StageError> {
    let f = std::fs::File::open(tarball)
        .map_err(|e| StageError(format!("opening {}: {e}", tarball.display())))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let entries = archive
        .entries()
        .map_err(|e| StageError(format!("not a valid gzip'd tar: {e}")))?;
    let mut seen = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| StageError(format!("not a valid gzip'd tar: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Symlink => {
                return Err(StageError(format!("entry {name:?} is a symbolic link")));
            }
            EntryType::Link => return Err(StageError(format!("entry {name:?} is a hard link"))),
            EntryType::Char | EntryType::Block => {
                return Err(StageError(format!("entry {name:?} is a device node")));
            }
            EntryType::Fifo => return Err(StageError(format!("entry {name:?} is a FIFO"))),
            EntryType::Directory => {
                return Err(StageError(format!("entry {name:?} is a directory")));
            }
            other => {
                return Err(StageError(format!(
                    "entry {name:?} has unsupported type {other:?}"
                )));
            }
        }
        if name.contains('/') || name == ".." || name == "." {
            return Err(StageError(format!(
                "entry {name:?} is not a plain file name (path traversal or nesting)"
            )));
        }
        if !PROGRAMS.contains(&name.as_str()) {
            return Err(StageError(format!(
                "unexpected entry {name:?} (a release holds exactly {})",
                PROGRAMS.join(", ")
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(StageError(format!("entry {name:?} appears twice")));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| StageError(format!("entry {name:?}: bad size: {e}")))?;
        if size > MAX_ENTRY_BYTES {
            return Err(StageError(format!(
                "entry {name:?} is {size} bytes, over the {MAX_ENTRY_BYTES}-byte limit"
            )));
        }
        let dest = dir.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&dest)
            .map_err(|e| StageError(format!("writing {}: {e}", dest.display())))?;
        let copied = std::io::copy(&mut (&mut entry).take(MAX_ENTRY_BYTES + 1), &mut out)
            .map_err(|e| StageError(format!("entry {name:?}: {e}")))?;
        if copied != size {
            return Err(StageError(format!(
                "entry {name:?} is truncated ({copied} of {size} bytes)"
            )));
        }
        out.flush()
            .and_then(|()| out.sync_all())
            .map_err(|e| StageError(format!("writing {}: {e}", dest.display())))?;
    }
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| !seen.contains(*p))
        .collect();
    if !missing.is_empty() {
        return Err(StageError(format!("missing entry {}", missing.join(", "))));
    }
    banger_host::fsutil::sync_dir(dir)
        .map_err(|e| StageError(format!("syncing {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if *kind == EntryType::Symlink || *kind == EntryType::Link {
                h.set_link_name("banger").unwrap();
                h.set_size(0);
            }
            // Write the name bytes directly, so hostile names are kept as they are.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(
                &h,
                if h.size().unwrap() == 0 {
                    &[][..]
                } else {
                    *data
                },
            )
            .unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn try_extract(bytes: &[u8]) -> (tempfile::TempDir, Result<(), StageError>) {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("r.tar.gz");
        std::fs::write(&tgz, bytes).unwrap();
        let out = dir.path().join("bin");
        std::fs::create_dir(&out).unwrap();
        let r = extract(&tgz, &out);
        (dir, r)
    }

    const GOOD: [(&str, EntryType, &[u8]); 3] = [
        ("banger", EntryType::Regular, b"a"),
        ("bangerd", EntryType::Regular, b"b"),
        ("bangerd-root", EntryType::Regular, b"c"),
    ];

    #[test]
    fn good_release_extracts_with_mode_0755() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, r) = try_extract(&build(&GOOD));
        r.unwrap();
        let p = dir.path().join("bin/bangerd");
        assert_eq!(std::fs::read(&p).unwrap(), b"b");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn hostile_tarballs_are_refused_naming_the_fault() {
        let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
        let with = |extra: (&'static str, EntryType, &'static [u8])| {
            let mut v = GOOD.to_vec();
            v.push(extra);
            build(&v)
        };
        cases.push((
            with(("evil", EntryType::Regular, b"x")),
            "unexpected entry \"evil\"",
        ));
        cases.push((
            with(("../evil", EntryType::Regular, b"x")),
            "path traversal",
        ));
        cases.push((
            with(("sub/banger", EntryType::Regular, b"x")),
            "path traversal",
        ));
        cases.push((with(("link", EntryType::Symlink, b"")), "symbolic link"));
        cases.push((with(("hard", EntryType::Link, b"")), "hard link"));
        cases.push((with(("dev", EntryType::Char, b"")), "device node"));
        cases.push((
            with(("banger", EntryType::Regular, b"again")),
            "appears twice",
        ));
        cases.push((build(&GOOD[..2]), "missing entry bangerd-root"));
        cases.push((b"not gzip at all".to_vec(), "gzip"));
        let mut truncated = build(&GOOD);
        truncated.truncate(truncated.len() / 2);
        cases.push((truncated, "gzip"));
        for (bytes, want) in cases {
            let (_d, r) = try_extract(&bytes);
            let e = r.expect_err(want);
            assert!(e.to_string().contains(want), "want {want:?}: {e}");
        }
    }
}
