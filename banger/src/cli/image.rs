//! `banger image import|pull|catalog|list|rm`: the images VMs are made from.
//!
//! The CLI only checks that the files it names exist and passes their canonical paths; the
//! daemon copies and hashes them into its store. This module must never write to the store.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::bail;
use banger_api::wire::ImageInfo;
use clap::Subcommand;
use clap_complete::engine::ArgValueCandidates;

use super::daemon_client::{daemon, failed};
use super::output::{mib_label, render_table, short_sha256, utc_minute};
use super::{CmdResult, EXIT_OK};

/// `banger image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a kernel, and optionally an initrd and a root filesystem, as a named image.
    ///
    /// The files are copied into banger's store (/var/lib/banger/images) and hashed; the
    /// originals are not needed afterwards. Every VM made from the image gets its own copy of
    /// the root filesystem.
    Import {
        /// Name of the new image.
        name: String,
        /// The guest kernel: an uncompressed vmlinux (or a bzImage, for QEMU only).
        #[arg(long, value_name = "FILE")]
        kernel: PathBuf,
        /// An initial ramdisk to boot with.
        #[arg(long, value_name = "FILE")]
        initrd: Option<PathBuf>,
        /// A raw disk image holding the root filesystem.
        #[arg(long, value_name = "FILE")]
        rootfs: Option<PathBuf>,
    },
    /// Pull an image from the catalog set in /etc/banger/config.toml ([catalog] url), or an
    /// OCI image from its registry.
    ///
    /// Catalog: the signed index is fetched and verified, each artefact is downloaded through
    /// SHA-256 (its size capped by the signature and by the admin) and checked before anything
    /// is unpacked; a root filesystem comes with the kernel its entry names.
    ///
    /// OCI (oci://REGISTRY/REPOSITORY:TAG): the linux/amd64 manifest, its configuration and
    /// every layer are verified by digest; the layers are applied with whiteouts (a layer that
    /// would write outside the image, or carries a device node, is refused) into an ext4 root
    /// filesystem that keeps the image's ownership; the image must have an init and an SSH
    /// server. It boots with the kernel and initrd of --kernel IMAGE. A registry on a loopback
    /// address is spoken to over HTTP, any other over HTTPS.
    ///
    /// Ctrl-C cancels the pull (a second Ctrl-C stops waiting for the cancel); a failed or
    /// canceled pull leaves nothing behind. See docs/images.md.
    Pull {
        /// The catalog entry: NAME (its newest version) or NAME:VERSION; or an OCI image,
        /// oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] (docker://… too).
        reference: String,
        /// Name of the new image (default: the entry's name, or the repository's last part).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// For an OCI image: the local image whose kernel and initrd it boots with (an image
        /// pulled from a catalog's kernel entry, for example). Required for OCI images.
        #[arg(long, value_name = "IMAGE")]
        kernel: Option<String>,
        /// Print one JSON object per event (started, stage, progress, canceling, finished)
        /// on stdout instead of lines for people.
        #[arg(long)]
        json: bool,
    },
    /// List what the configured catalog offers (its index is fetched and verified now).
    Catalog {
        /// Print a JSON array with every field instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List images: name, size, hashes, the VMs using them and when they were imported.
    List {
        /// Print a JSON array with every field instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete an image no VM uses.
    Rm {
        /// The image.
        #[arg(add = ArgValueCandidates::new(super::generated::image_names))]
        name: String,
    },
}

/// Runs one `banger image` command.
pub async fn run(command: ImageCommand) -> CmdResult {
    match command {
        ImageCommand::Import {
            name,
            kernel,
            initrd,
            rootfs,
        } => import(&name, &kernel, initrd.as_deref(), rootfs.as_deref()).await,
        ImageCommand::Pull {
            reference,
            name,
            kernel,
            json,
        } => super::image_pull::pull(&reference, name.as_deref(), kernel.as_deref(), json).await,
        ImageCommand::Catalog { json } => super::image_pull::catalog(json).await,
        ImageCommand::List { json } => list(json).await,
        ImageCommand::Rm { name } => rm(&name).await,
    }
}

/// Resolves a file given on the command line to its canonical absolute path, refusing anything
/// that is not an existing regular file. `role` names it in errors ("kernel").
fn resolve_file(role: &str, path: &Path) -> anyhow::Result<(String, u64)> {
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let shown = shown.display();
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{role} file {shown} does not exist; nothing was imported")
        }
        Err(e) => bail!("{role} file {shown}: {e}; nothing was imported"),
    };
    let meta = match std::fs::metadata(&canonical) {
        Ok(m) => m,
        Err(e) => bail!("{role} file {shown}: {e}; nothing was imported"),
    };
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        bail!("{role} file {shown} is {what}; nothing was imported");
    }
    match canonical.into_os_string().into_string() {
        Ok(s) => Ok((s, meta.len())),
        Err(_) => bail!(
            "the path of {role} file {shown} is not valid UTF-8, which D-Bus cannot carry; \
             rename it; nothing was imported"
        ),
    }
}

async fn import(
    name: &str,
    kernel: &Path,
    initrd: Option<&Path>,
    rootfs: Option<&Path>,
) -> CmdResult {
    let (kernel, mut bytes) = resolve_file("kernel", kernel)?;
    let mut optional = |role: &str, path: Option<&Path>| -> anyhow::Result<String> {
        match path {
            None => Ok(String::new()),
            Some(p) => {
                let (path, len) = resolve_file(role, p)?;
                bytes += len;
                Ok(path)
            }
        }
    };
    let initrd = optional("initrd", initrd)?;
    let rootfs = optional("rootfs", rootfs)?;
    let daemon = daemon().await?;
    if std::io::stderr().is_terminal() {
        eprintln!(
            "banger: importing image {name}: copying and hashing {}…",
            mib_label(bytes)
        );
    }
    let image = daemon
        .import_image(name, &kernel, &initrd, &rootfs)
        .await
        .map_err(failed(format!("importing image {name}")))?;
    println!("{}", imported_line(&image));
    Ok(EXIT_OK)
}

/// What `image import` prints once the daemon has the image.
fn imported_line(image: &ImageInfo) -> String {
    format!(
        "imported image {} (kernel sha256 {}…, {})",
        image.name,
        short_sha256(&image.kernel_sha256),
        mib_label(image.bytes)
    )
}

/// The `image list` table.
fn image_table(images: &[ImageInfo]) -> String {
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                mib_label(i.bytes),
                short_sha256(&i.kernel_sha256),
                short_sha256(&i.initrd_sha256),
                short_sha256(&i.rootfs_sha256),
                if i.used_by.is_empty() {
                    "-".to_string()
                } else {
                    i.used_by.join(",")
                },
                utc_minute(i.created),
            ]
        })
        .collect();
    render_table(
        &[
            "NAME", "SIZE", "KERNEL", "INITRD", "ROOTFS", "USED BY", "CREATED",
        ],
        &rows,
    )
}

async fn list(json: bool) -> CmdResult {
    let daemon = daemon().await?;
    let mut images = daemon
        .list_images()
        .await
        .map_err(failed("listing images"))?;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        println!("{}", serde_json::to_string_pretty(&images)?);
    } else if images.is_empty() {
        eprintln!(
            "no images; pull one with `banger image pull NAME` or import one with `banger image \
             import NAME --kernel FILE`"
        );
    } else {
        print!("{}", image_table(&images));
    }
    Ok(EXIT_OK)
}

async fn rm(name: &str) -> CmdResult {
    let daemon = daemon().await?;
    daemon
        .delete_image(name)
        .await
        .map_err(failed(format!("deleting image {name}")))?;
    println!("deleted image {name}");
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageInfo {
        ImageInfo {
            name: "deb".into(),
            kernel_sha256: "abcd1234ef567890".repeat(4),
            initrd_sha256: String::new(),
            rootfs_sha256: "0011223344556677".repeat(4),
            bytes: 300 * super::super::output::MIB,
            created: 1_795_313_683,
            used_by: vec!["web1".into(), "web2".into()],
        }
    }

    #[test]
    fn import_line() {
        assert_eq!(
            imported_line(&image()),
            "imported image deb (kernel sha256 abcd1234ef56…, 300 MiB)"
        );
    }

    #[test]
    fn table() {
        let mut bare = image();
        bare.name = "tiny".into();
        bare.rootfs_sha256.clear();
        bare.used_by.clear();
        bare.bytes = 9 << 20;
        assert_eq!(
            image_table(&[image(), bare]),
            "NAME  SIZE     KERNEL        INITRD  ROOTFS        USED BY    CREATED\n\
             deb   300 MiB  abcd1234ef56  -       001122334455  web1,web2  2026-11-22 02:14\n\
             tiny  9 MiB    abcd1234ef56  -       -             -          2026-11-22 02:14\n"
        );
    }

    #[test]
    fn json_has_every_field() {
        let text = serde_json::to_string_pretty(&vec![image()]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o = v[0].as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "bytes",
                "created",
                "initrd_sha256",
                "kernel_sha256",
                "name",
                "rootfs_sha256",
                "used_by"
            ]
        );
    }

    #[test]
    fn files_are_resolved_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"kernel").unwrap();
        std::os::unix::fs::symlink(&kernel, dir.path().join("link")).unwrap();
        let canonical = std::fs::canonicalize(&kernel).unwrap();
        let (resolved, len) = resolve_file("kernel", &dir.path().join("link")).unwrap();
        assert_eq!(Path::new(&resolved), canonical);
        assert_eq!(len, 6);

        let missing = dir.path().join("nope");
        let e = resolve_file("kernel", &missing).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "kernel file {} does not exist; nothing was imported",
                missing.display()
            )
        );
        let e = resolve_file("rootfs", dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory; nothing was imported"), "{e}");
        let e = resolve_file("initrd", Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
