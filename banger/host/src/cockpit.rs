//! banger's Cockpit page: where a build keeps it (a `cockpit` directory beside the binaries,
//! made by `make cockpit`) and where an install puts it (`<prefix>/share/cockpit/banger`,
//! which Cockpit reads for `/usr` and `/usr/local`).
//!
//! The page is static files; installing it copies the directory whole into a temporary
//! sibling and renames that into place (the old page is put back if that fails), so Cockpit
//! never sees a half-copied page.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The page's name: its directory under `share/cockpit` and its address in Cockpit (`/banger`).
pub const PAGE: &str = "banger";
/// The directory beside the binaries that holds a built page.
pub const BUILD_DIR: &str = "cockpit";
/// The file every Cockpit package has; it marks a directory as a built page.
pub const MANIFEST: &str = "manifest.json";
/// Prefixes whose `share/cockpit` Cockpit reads (it follows `XDG_DATA_DIRS`, whose default is
/// these two).
pub const SEARCHED_PREFIXES: [&str; 2] = ["/usr/local", "/usr"];
/// What Cockpit installs: its bridge serves pages, `base1` is the library every page loads.
const COCKPIT_MARKERS: [&str; 2] = ["/usr/share/cockpit/base1/manifest.json", "/usr/lib/cockpit"];

/// Where an install under `prefix` puts the page.
pub fn page_dir(prefix: &Path) -> PathBuf {
    prefix.join("share/cockpit").join(PAGE)
}

/// Whether Cockpit is installed on this host.
pub fn cockpit_present() -> bool {
    COCKPIT_MARKERS.iter().any(|p| Path::new(p).exists())
        || crate::virt::find_program("cockpit-bridge").is_some()
}

/// Whether Cockpit finds pages installed under `prefix`.
pub fn prefix_is_searched(prefix: &Path) -> bool {
    SEARCHED_PREFIXES.iter().any(|p| Path::new(p) == prefix)
}

/// The built page beside the binaries in `bin_dir`, if there is one.
pub fn built_page(bin_dir: &Path) -> Option<PathBuf> {
    let dir = bin_dir.join(BUILD_DIR);
    dir.join(MANIFEST).is_file().then_some(dir)
}

/// Copies the page at `src` to `dst` as a whole: into a temporary sibling first, then renamed
/// over the old page. Only directories and regular files are copied (a symbolic link or
/// anything else in `src` is refused before `dst` changes). Returns the number of files.
pub fn install(src: &Path, dst: &Path) -> io::Result<usize> {
    let parent = dst.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent)?;
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.banger-tmp.{}", std::process::id()));
    let old = parent.join(format!(".{name}.banger-old.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir_all(&old);
    let copied = copy_tree(src, &tmp).and_then(|n| {
        let had_old = dst.exists();
        if had_old {
            fs::rename(dst, &old)?;
        }
        if let Err(e) = fs::rename(&tmp, dst) {
            // Put the old page back: a failed install leaves what was there.
            if had_old {
                let _ = fs::rename(&old, dst);
            }
            return Err(e);
        }
        let _ = fs::remove_dir_all(&old);
        crate::fsutil::sync_dir(parent)?;
        Ok(n)
    });
    let _ = fs::remove_dir_all(&tmp);
    copied
}

/// Checks that the page at `src` holds only directories and regular files (what
/// [`install`] copies), so that an install can refuse a bad build before it writes anything.
pub fn check_tree(src: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            check_tree(&entry.path())?;
        } else if !kind.is_file() {
            return Err(not_plain(&entry.path()));
        }
    }
    Ok(())
}

fn not_plain(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is neither a file nor a directory; the page was not installed",
            path.display()
        ),
    )
}

fn copy_tree(src: &Path, dst: &Path) -> io::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir(dst)?;
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755))?;
    let mut files = 0;
    let mut entries = fs::read_dir(src)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type()?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        if kind.is_dir() {
            files += copy_tree(&from, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644))?;
            fs::File::open(&to)?.sync_all()?;
            files += 1;
        } else {
            return Err(not_plain(&from));
        }
    }
    Ok(files)
}

/// Removes the installed page at `dir`, and `share/cockpit` above it when that is left empty.
/// Returns whether there was a page.
pub fn remove(dir: &Path) -> io::Result<bool> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                let _ = fs::remove_dir(parent);
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(root: &Path, body: &str) -> PathBuf {
        let src = root.join("build/cockpit");
        fs::create_dir_all(src.join("assets/fonts")).unwrap();
        fs::write(src.join(MANIFEST), "{}").unwrap();
        fs::write(src.join("index.html"), body).unwrap();
        fs::write(src.join("assets/fonts/a.woff2"), "font").unwrap();
        src
    }

    #[test]
    fn install_copies_the_tree_and_replaces_an_older_page_whole() {
        let t = tempfile::tempdir().unwrap();
        let src = page(t.path(), "new");
        let dst = page_dir(&t.path().join("usr/local"));
        fs::create_dir_all(&dst).unwrap();
        fs::write(dst.join("stale.js"), "old").unwrap();
        assert_eq!(install(&src, &dst).unwrap(), 3);
        assert_eq!(fs::read_to_string(dst.join("index.html")).unwrap(), "new");
        assert!(dst.join("assets/fonts/a.woff2").is_file());
        assert!(
            !dst.join("stale.js").exists(),
            "a file of the old page survived"
        );
        let left: Vec<_> = fs::read_dir(dst.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from(PAGE)],
            "temporary copies left"
        );
    }

    #[test]
    fn a_symlink_in_the_build_is_refused_and_the_installed_page_stays() {
        let t = tempfile::tempdir().unwrap();
        let src = page(t.path(), "new");
        std::os::unix::fs::symlink("/etc/shadow", src.join("shadow")).unwrap();
        let dst = page_dir(t.path());
        fs::create_dir_all(&dst).unwrap();
        fs::write(dst.join("index.html"), "old").unwrap();
        let e = check_tree(&src).unwrap_err();
        assert!(e.to_string().contains("shadow is neither a file"), "{e}");
        let e = install(&src, &dst).unwrap_err();
        assert!(e.to_string().contains("shadow is neither a file"), "{e}");
        assert_eq!(fs::read_to_string(dst.join("index.html")).unwrap(), "old");
        assert_eq!(fs::read_dir(dst.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn built_page_needs_a_manifest_and_remove_tidies_up() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(built_page(t.path()), None);
        let src = page(t.path(), "x");
        assert_eq!(built_page(&t.path().join("build")), Some(src.clone()));
        let dst = page_dir(&t.path().join("p"));
        install(&src, &dst).unwrap();
        assert!(remove(&dst).unwrap());
        assert!(
            !dst.parent().unwrap().exists(),
            "an empty share/cockpit was left"
        );
        assert!(!remove(&dst).unwrap());
        assert!(prefix_is_searched(Path::new("/usr/local")));
        assert!(!prefix_is_searched(Path::new("/opt/banger")));
    }
}
