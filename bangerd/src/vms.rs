//! Images and VMs: records in the store, files under the state directory, and the host
//! plumbing asked of `bangerd-root`.
//!
//! Layout under the state directory (`/var/lib/banger`), all owned by the owner:
//! - `images/<name>/{kernel,initrd,rootfs}`: copies made at import, hashed while copying;
//! - `vms/<id>/config.img` (the guest's config disk, see [`crate::guest`]), `rootfs.img` (the
//!   VM's own copy of the image's root filesystem), `serial.log` (the console);
//! - `ssh/id_ed25519`: the key `banger vm ssh` logs in with.
//!
//! A VM's truth is its systemd unit, `banger-vm-<id>.service`: the store keeps what the owner
//! asked for, and every listing reads the unit's state live, so a daemon that restarted (or was
//! killed) finds its running VMs as they are. Every change registers an operation, so updates
//! wait for it, and changes are serialized.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use banger_api::options::StartVmmOptions;
use banger_api::time::unix_now;
use banger_api::wire::{DoctorCheck, ImageInfo, Level, OperationStage, SshTarget, VmInfo, VmState};
use sha2::{Digest, Sha256};

use crate::guest::GuestConfig;
use crate::host::{BusHost, VmHost};
use crate::ops::Operations;
use crate::store::{ImageRecord, Store, StoreError, VmRecord};

/// Largest kernel accepted at import.
const MAX_KERNEL: u64 = 512 << 20;
/// Largest initrd accepted at import.
const MAX_INITRD: u64 = 4 << 30;
/// Largest root filesystem accepted at import.
const MAX_ROOTFS: u64 = 256 << 30;
/// Most virtual CPUs a VM may have.
const MAX_CPUS: u32 = 32;
/// Least memory a VM may have (MiB).
const MIN_MEMORY_MIB: u32 = 64;

/// Why an image or VM request failed. Every message says what was left unchanged.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A malformed or impossible request.
    #[error("{0}")]
    Invalid(String),
    /// No such VM or image.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken.
    #[error("{0}")]
    Exists(String),
    /// In use or in the wrong state.
    #[error("{0}")]
    InUse(String),
    /// The root helper (or polkit behind it) refused the call.
    #[error("{0}")]
    NotAuthorized(String),
    /// The root helper failed.
    #[error("{0}")]
    Root(String),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
}

type Result<T> = std::result::Result<T, VmError>;

/// The VM network as the root helper reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// The host's address (the guests' gateway).
    pub host: Ipv4Addr,
}

impl Network {
    /// Parses `a.b.c.d/p` plus the host address.
    pub fn parse(subnet: &str, host: &str) -> Option<Self> {
        let (net, prefix) = subnet.split_once('/')?;
        let network: Ipv4Addr = net.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let host: Ipv4Addr = host.parse().ok()?;
        if !(8..=30).contains(&prefix) {
            return None;
        }
        Some(Network {
            network,
            prefix,
            host,
        })
    }

    /// The lowest guest address not in `used` (never the network, host or broadcast address).
    pub fn allocate(&self, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let base = u32::from(self.network) & (u32::MAX << (32 - self.prefix));
        let size = 1u32 << (32 - self.prefix);
        (1..size - 1)
            .map(|i| Ipv4Addr::from(base + i))
            .find(|a| *a != self.host && !used.contains(a))
    }
}

/// The MAC address derived from a guest address: unique on the VM network.
pub fn mac_for(addr: Ipv4Addr) -> String {
    let o = addr.octets();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])
}

/// `[a-z0-9][a-z0-9._-]{0,62}` (the rule is [`banger_api::names::is_image_name`]).
pub fn valid_image_name(name: &str) -> bool {
    banger_api::names::is_image_name(name)
}

/// A hostname label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
pub fn valid_vm_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `key` looks like one `ssh-ed25519 BASE64` public key (as a guest offers it).
pub fn valid_host_key(key: &str) -> bool {
    let mut parts = key.split(' ');
    let (Some(kind), Some(blob), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    kind == "ssh-ed25519"
        && (60..=100).contains(&blob.len())
        && blob
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
}

/// Whether a file starts like a Linux kernel: an ELF `vmlinux` or a bzImage (`HdrS` at 0x202).
fn looks_like_kernel(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 0x206];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    Ok((n >= 4 && head[..4] == *b"\x7fELF") || (n >= 0x206 && head[0x202..0x206] == *b"HdrS"))
}

/// Copies `src` to a new file `dst` (mode 0600), hashing on the way; refuses more than `cap`
/// bytes. Returns (sha256 hex, bytes).
fn copy_hashed(src: &Path, dst: &Path, cap: u64) -> std::io::Result<(String, u64)> {
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

fn random_id() -> std::io::Result<String> {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Memory of this host in MiB (0 if unknown).
fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// The unit of a VM.
pub fn unit_name(id: &str) -> String {
    banger_api::names::vm_unit_name(id)
}

/// The VM manager.
pub struct Vms {
    state_dir: PathBuf,
    store: Arc<Mutex<Store>>,
    ops: Arc<Operations>,
    host: Arc<dyn VmHost>,
    /// Serializes changes (address allocation, names, files).
    changes: tokio::sync::Mutex<()>,
}

impl Vms {
    /// A manager keeping files under `state_dir`, talking to the root helper and systemd on
    /// `conn` (the system bus).
    pub async fn new(
        state_dir: PathBuf,
        store: Arc<Mutex<Store>>,
        ops: Arc<Operations>,
        conn: zbus::Connection,
    ) -> Result<Self> {
        let host = Arc::new(BusHost::new(conn).await?);
        Ok(Vms::with_host(state_dir, store, ops, host))
    }

    /// A manager keeping files under `state_dir` with `host` for the VMs' plumbing.
    pub fn with_host(
        state_dir: PathBuf,
        store: Arc<Mutex<Store>>,
        ops: Arc<Operations>,
        host: Arc<dyn VmHost>,
    ) -> Self {
        Vms {
            state_dir,
            store,
            ops,
            host,
            changes: tokio::sync::Mutex::new(()),
        }
    }

    fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    fn vm_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("vms").join(id)
    }

    fn ssh_key(&self) -> PathBuf {
        self.state_dir.join("ssh").join("id_ed25519")
    }

    fn vm_record(&self, name: &str) -> Result<VmRecord> {
        self.store
            .lock()
            .unwrap()
            .vm(name)?
            .ok_or_else(|| VmError::NotFound(format!("no VM named {name:?}")))
    }

    /// The VM's state, read from its unit now ([`VmState::Unknown`] when systemd cannot say).
    async fn live(&self, id: &str) -> VmState {
        self.host.vm_state(id).await
    }

    async fn info(&self, v: &VmRecord) -> VmInfo {
        let state = self.live(&v.id).await;
        VmInfo {
            id: v.id.clone(),
            name: v.name.clone(),
            image: v.image.clone(),
            cpus: v.cpus,
            memory_mib: v.memory_mib,
            state: state.as_str().into(),
            address: v.address.clone(),
            backend: v.backend.clone(),
            unit: unit_name(&v.id),
            created: v.created,
            host_key: v.host_key.clone(),
        }
    }

    /// Imports an image: copies and hashes its files into `images/<name>/`, then records it.
    /// On any failure nothing is left behind.
    pub async fn import_image(
        &self,
        name: &str,
        kernel: &str,
        initrd: &str,
        rootfs: &str,
    ) -> Result<ImageInfo> {
        if !valid_image_name(name) {
            return Err(VmError::Invalid(format!(
                "image name {name:?} is not valid: use 1 to 63 of a-z 0-9 . _ - starting with a \
                 letter or digit; nothing was imported"
            )));
        }
        let files: Vec<(&str, PathBuf, u64)> = [
            ("kernel", kernel, MAX_KERNEL),
            ("initrd", initrd, MAX_INITRD),
            ("rootfs", rootfs, MAX_ROOTFS),
        ]
        .into_iter()
        .filter(|(_, p, _)| !p.is_empty())
        .map(|(role, p, cap)| (role, PathBuf::from(p), cap))
        .collect();
        if kernel.is_empty() {
            return Err(VmError::Invalid(
                "an image needs a kernel; nothing was imported".into(),
            ));
        }
        for (role, p, _) in &files {
            if !p.is_absolute() {
                return Err(VmError::Invalid(format!(
                    "{role} path {} is not absolute; nothing was imported",
                    p.display()
                )));
            }
            match std::fs::metadata(p) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(VmError::Invalid(format!(
                        "{role} {} is not a regular file; nothing was imported",
                        p.display()
                    )));
                }
                Err(e) => {
                    return Err(VmError::Invalid(format!(
                        "{role} {}: {e}{}; nothing was imported",
                        p.display(),
                        private_tmp_hint(p, &e)
                    )));
                }
            }
        }
        let kernel_path = PathBuf::from(kernel);
        match looks_like_kernel(&kernel_path) {
            Ok(true) => {}
            Ok(false) => {
                return Err(VmError::Invalid(format!(
                    "kernel {} is not a Linux kernel (neither an ELF vmlinux nor a bzImage); \
                     nothing was imported",
                    kernel_path.display()
                )));
            }
            Err(e) => {
                return Err(VmError::Invalid(format!(
                    "kernel {}: {e}; nothing was imported",
                    kernel_path.display()
                )));
            }
        }
        let _serial = self.changes.lock().await;
        if self.store.lock().unwrap().image(name)?.is_some() {
            return Err(VmError::Exists(format!(
                "an image named {name:?} already exists; nothing was imported (remove it first \
                 with `banger image rm {name}`)"
            )));
        }
        let op = self.ops.begin("image.import").map_err(VmError::Store)?;
        op.stage(&format!("copying {name}"));
        let images = self.images_dir();
        let final_dir = images.join(name);
        let tmp = images.join(format!(
            ".import-{name}-{}",
            random_id().unwrap_or_default()
        ));
        let copied = {
            let tmp = tmp.clone();
            let files = files.clone();
            tokio::task::spawn_blocking(move || -> std::result::Result<_, String> {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&tmp)
                    .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
                let mut out = HashMap::new();
                for (role, src, cap) in files {
                    let dst = tmp.join(role);
                    let (sha, n) = copy_hashed(&src, &dst, cap)
                        .map_err(|e| format!("copying {role} {}: {e}", src.display()))?;
                    out.insert(role, (dst, sha, n));
                }
                Ok(out)
            })
            .await
            .map_err(|e| VmError::Io(e.to_string()))?
        };
        let result = copied.and_then(|c| {
            if final_dir.exists() {
                return Err(format!(
                    "{} exists without a record; remove it by hand",
                    final_dir.display()
                ));
            }
            std::fs::rename(&tmp, &final_dir)
                .map_err(|e| format!("moving the image into {}: {e}", final_dir.display()))?;
            let _ = banger_host::fsutil::sync_dir(&images);
            Ok(c)
        });
        let copied = match result {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                op.finish(OperationStage::Failed);
                return Err(VmError::Io(format!("{e}; nothing was imported")));
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
            name: name.into(),
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
        tracing::info!(image = name, bytes = rec.bytes, "image imported");
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
    pub async fn delete_image(&self, name: &str) -> Result<()> {
        let _serial = self.changes.lock().await;
        let users: Vec<String> = {
            let store = self.store.lock().unwrap();
            if store.image(name)?.is_none() {
                return Err(VmError::NotFound(format!("no image named {name:?}")));
            }
            store
                .vms()?
                .into_iter()
                .filter(|v| v.image == name)
                .map(|v| v.name)
                .collect()
        };
        if !users.is_empty() {
            return Err(VmError::InUse(format!(
                "image {name:?} is used by VM(s) {}; delete them first; nothing was removed",
                users.join(", ")
            )));
        }
        let op = self.ops.begin("image.delete").map_err(VmError::Store)?;
        op.stage(&format!("removing {name}"));
        if let Err(e) = self.store.lock().unwrap().delete_image(name) {
            op.finish(OperationStage::Failed);
            return Err(e.into());
        }
        let dir = self.images_dir().join(name);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", dir.display());
        }
        op.finish(OperationStage::Done);
        tracing::info!(image = name, "image removed");
        Ok(())
    }

    /// Makes sure the owner's SSH key for VMs exists; returns its public half.
    async fn ensure_ssh_key(&self) -> Result<String> {
        let key = self.ssh_key();
        let public = key.with_extension("pub");
        if !public.exists() {
            let dir = key.parent().unwrap_or(&self.state_dir).to_path_buf();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| VmError::Io(format!("creating {}: {e}", dir.display())))?;
            let _ = std::fs::remove_file(&key);
            let keygen = banger_host::virt::find_program("ssh-keygen").ok_or_else(|| {
                VmError::Io(
                    "ssh-keygen is not installed (Debian package openssh-client); it makes the \
                     key banger logs into VMs with"
                        .into(),
                )
            })?;
            let out = tokio::process::Command::new(keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f"])
                .arg(&key)
                .output()
                .await
                .map_err(|e| VmError::Io(format!("running ssh-keygen: {e}")))?;
            if !out.status.success() {
                return Err(VmError::Io(format!(
                    "ssh-keygen failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        std::fs::read_to_string(&public)
            .map(|s| s.trim().to_string())
            .map_err(|e| VmError::Io(format!("reading {}: {e}", public.display())))
    }

    async fn network(&self) -> Result<Network> {
        let (_bridge, subnet, host) = self.host.vm_network().await?;
        Network::parse(&subnet, &host).ok_or_else(|| {
            VmError::Root(format!(
                "bangerd-root reported an unusable VM network {subnet} (host {host})"
            ))
        })
    }

    /// Creates a stopped VM: record, address, config disk and (if the image has one) its own
    /// root filesystem copy. On any failure nothing is left behind.
    pub async fn create_vm(
        &self,
        name: &str,
        image: &str,
        cpus: u32,
        memory_mib: u32,
    ) -> Result<VmInfo> {
        let nothing = "nothing was created";
        if !valid_vm_name(name) {
            return Err(VmError::Invalid(format!(
                "VM name {name:?} is not valid: use 1 to 63 of a-z 0-9 - (a hostname), not \
                 starting or ending with -; {nothing}"
            )));
        }
        let max_cpus = MAX_CPUS.min(host_cpus());
        if cpus == 0 || cpus > max_cpus {
            return Err(VmError::Invalid(format!(
                "{cpus} CPUs is impossible here: choose 1 to {max_cpus}; {nothing}"
            )));
        }
        let host_mib = host_memory_mib();
        if memory_mib < MIN_MEMORY_MIB || (host_mib > 0 && u64::from(memory_mib) > host_mib) {
            return Err(VmError::Invalid(format!(
                "{memory_mib} MiB of memory is impossible here: choose {MIN_MEMORY_MIB} MiB to \
                 {host_mib} MiB (this host's memory); {nothing}"
            )));
        }
        let _serial = self.changes.lock().await;
        let (img, used) = {
            let store = self.store.lock().unwrap();
            if store.vm(name)?.is_some() {
                return Err(VmError::Exists(format!(
                    "a VM named {name:?} already exists; {nothing}"
                )));
            }
            let img = store.image(image)?.ok_or_else(|| {
                VmError::NotFound(format!(
                    "no image named {image:?} (see `banger image list`); {nothing}"
                ))
            })?;
            let used: Vec<Ipv4Addr> = store
                .vms()?
                .iter()
                .filter_map(|v| v.address.parse().ok())
                .collect();
            (img, used)
        };
        for (role, p) in [
            ("kernel", Some(&img.kernel_path)),
            ("initrd", img.initrd_path.as_ref()),
            ("rootfs", img.rootfs_path.as_ref()),
        ] {
            if let Some(p) = p
                && !Path::new(p).is_file()
            {
                return Err(VmError::InUse(format!(
                    "image {image:?} is damaged: its {role} {p} is missing; re-import it; \
                     {nothing}"
                )));
            }
        }
        let op = self.ops.begin("vm.create").map_err(VmError::Store)?;
        op.stage(&format!("creating {name}"));
        let net = self.network().await?;
        let address = net.allocate(&used).ok_or_else(|| {
            VmError::InUse(format!(
                "the VM network {}/{} has no free address left; {nothing}",
                net.network, net.prefix
            ))
        })?;
        let public_key = self.ensure_ssh_key().await?;
        let id = random_id().map_err(|e| VmError::Io(format!("reading /dev/urandom: {e}")))?;
        let dir = self.vm_dir(&id);
        let disk = GuestConfig {
            vm_id: id.clone(),
            hostname: name.into(),
            address,
            prefix: net.prefix,
            gateway: net.host,
            authorized_keys: vec![public_key],
        }
        .render()
        .map_err(|e| VmError::Invalid(format!("{e}; {nothing}")))?;
        let rootfs = img.rootfs_path.clone();
        let made = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(dir.join("config.img"))?;
                f.write_all(&disk)?;
                f.sync_all()?;
                if let Some(src) = rootfs {
                    copy_hashed(Path::new(&src), &dir.join("rootfs.img"), MAX_ROOTFS)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| VmError::Io(e.to_string()))?
        };
        let rec = VmRecord {
            id: id.clone(),
            name: name.into(),
            image: image.into(),
            cpus,
            memory_mib,
            state: VmState::Stopped.as_str().into(),
            address: address.to_string(),
            mac: mac_for(address),
            has_rootfs: img.rootfs_path.is_some(),
            backend: String::new(),
            host_key: String::new(),
            created: unix_now() as i64,
        };
        let inserted = made
            .map_err(|e| VmError::Io(format!("writing {}: {e}; {nothing}", dir.display())))
            .and_then(|()| {
                self.store
                    .lock()
                    .unwrap()
                    .insert_vm(&rec)
                    .map_err(VmError::from)
            });
        if let Err(e) = inserted {
            let _ = std::fs::remove_dir_all(&dir);
            op.finish(OperationStage::Failed);
            return Err(e);
        }
        op.finish(OperationStage::Done);
        tracing::info!(vm = name, id, %address, "VM created");
        Ok(self.info(&rec).await)
    }

    /// Starts a VM through the root helper; already running is fine.
    pub async fn start_vm(&self, name: &str) -> Result<VmInfo> {
        let _serial = self.changes.lock().await;
        let v = self.vm_record(name)?;
        if self.live(&v.id).await == VmState::Running {
            return Ok(self.info(&v).await);
        }
        let op = self.ops.begin("vm.start").map_err(VmError::Store)?;
        op.stage(&format!("starting {name}"));
        let opts = StartVmmOptions {
            image: v.image.clone(),
            rootfs: v.has_rootfs,
            cpus: v.cpus,
            memory_mib: v.memory_mib,
            mac: v.mac.clone(),
        };
        let backend = match self.host.start_vmm(&v.id, &opts).await {
            Ok(backend) => backend,
            Err(e) => {
                op.finish(OperationStage::Failed);
                return Err(e);
            }
        };
        self.store
            .lock()
            .unwrap()
            .set_vm_state(&v.id, VmState::Running, backend)?;
        op.finish(OperationStage::Done);
        tracing::info!(vm = name, id = v.id, "VM started");
        let v = self.vm_record(name)?;
        Ok(self.info(&v).await)
    }

    /// Stops a VM (its unit ends and its tap goes); already stopped is fine.
    pub async fn stop_vm(&self, name: &str) -> Result<VmInfo> {
        let _serial = self.changes.lock().await;
        let v = self.vm_record(name)?;
        let op = self.ops.begin("vm.stop").map_err(VmError::Store)?;
        op.stage(&format!("stopping {name}"));
        if let Err(e) = self.host.stop_vmm(&v.id).await {
            op.finish(OperationStage::Failed);
            return Err(e);
        }
        self.store
            .lock()
            .unwrap()
            .set_vm_state(&v.id, VmState::Stopped, None)?;
        op.finish(OperationStage::Done);
        tracing::info!(vm = name, id = v.id, "VM stopped");
        Ok(self.info(&v).await)
    }

    /// Deletes a stopped VM: its record and its files.
    pub async fn delete_vm(&self, name: &str) -> Result<()> {
        let _serial = self.changes.lock().await;
        let v = self.vm_record(name)?;
        let state = self.live(&v.id).await;
        if state.is_live() {
            return Err(VmError::InUse(format!(
                "VM {name} is {state}; stop it first (`banger vm stop {name}`) or use \
                 `banger vm rm --force {name}`; nothing was deleted"
            )));
        }
        let op = self.ops.begin("vm.delete").map_err(VmError::Store)?;
        op.stage(&format!("deleting {name}"));
        // Leftovers of a VM that died on its own (its tap, a failed unit) go first.
        if let Err(e) = self.host.stop_vmm(&v.id).await {
            op.finish(OperationStage::Failed);
            return Err(VmError::Root(format!(
                "cleaning up after VM {name}: {e}; nothing was deleted"
            )));
        }
        self.store.lock().unwrap().delete_vm(&v.id)?;
        let dir = self.vm_dir(&v.id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", dir.display());
        }
        op.finish(OperationStage::Done);
        tracing::info!(vm = name, id = v.id, "VM deleted");
        Ok(())
    }

    /// Every VM with its live state.
    pub async fn list_vms(&self) -> Result<Vec<VmInfo>> {
        let recs = self.store.lock().unwrap().vms()?;
        let mut out = Vec::with_capacity(recs.len());
        for v in &recs {
            out.push(self.info(v).await);
        }
        Ok(out)
    }

    /// One VM with its live state.
    pub async fn get_vm(&self, name: &str) -> Result<VmInfo> {
        let v = self.vm_record(name)?;
        Ok(self.info(&v).await)
    }

    /// How to reach a VM over SSH.
    pub fn ssh_target(&self, name: &str) -> Result<SshTarget> {
        let v = self.vm_record(name)?;
        Ok(SshTarget {
            address: v.address,
            user: "root".into(),
            identity_file: self.ssh_key().display().to_string(),
            host_key: v.host_key,
        })
    }

    /// Pins a VM's SSH host key on first contact; a different pinned key is never replaced.
    pub fn pin_host_key(&self, name: &str, key: &str) -> Result<()> {
        if !valid_host_key(key) {
            return Err(VmError::Invalid(format!(
                "{key:?} is not an ssh-ed25519 public key (`ssh-ed25519 BASE64`); nothing was \
                 pinned"
            )));
        }
        let v = self.vm_record(name)?;
        let pinned = self.store.lock().unwrap().pin_host_key(&v.id, key)?;
        if pinned != key {
            return Err(VmError::InUse(format!(
                "VM {name} already has a different host key pinned; the new one was not \
                 accepted"
            )));
        }
        Ok(())
    }

    /// Reads the serial console log from `offset`; a negative offset reads the last -offset
    /// bytes (at most 1 MiB per call). Returns the bytes and where to continue.
    pub fn read_log(&self, name: &str, offset: i64) -> Result<(Vec<u8>, u64)> {
        use std::io::Seek;
        const MAX: u64 = 1 << 20;
        let v = self.vm_record(name)?;
        let path = self.vm_dir(&v.id).join("serial.log");
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(VmError::Io(format!("reading {}: {e}", path.display()))),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = if offset < 0 {
            len.saturating_sub(offset.unsigned_abs())
        } else {
            (offset as u64).min(len)
        };
        f.seek(std::io::SeekFrom::Start(start))
            .map_err(|e| VmError::Io(format!("reading {}: {e}", path.display())))?;
        let mut buf = Vec::new();
        f.take(MAX)
            .read_to_end(&mut buf)
            .map_err(|e| VmError::Io(format!("reading {}: {e}", path.display())))?;
        let next = start + buf.len() as u64;
        Ok((buf, next))
    }

    /// At start: re-adopts the VMs whose units still run, and records as stopped the ones
    /// whose units are gone (cleaning up their taps through the helper).
    pub async fn reconcile(&self) {
        let recs = match self.store.lock().unwrap().vms() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("reading VM records: {e}");
                return;
            }
        };
        let (mut adopted, mut gone) = (0, 0);
        for v in recs.iter().filter(|v| v.wants_running()) {
            match self.live(&v.id).await {
                VmState::Running | VmState::Starting => {
                    adopted += 1;
                    tracing::info!(vm = v.name, id = v.id, "re-adopted running VM");
                }
                // Left as it is, so `vm list` and doctor keep showing it until the owner
                // starts, stops or removes the VM (each cleans up).
                VmState::Failed => {
                    gone += 1;
                    tracing::warn!(vm = v.name, id = v.id, "VM's VMM failed while away");
                }
                other => {
                    gone += 1;
                    tracing::warn!(vm = v.name, id = v.id, state = %other, "VM ended while away");
                    if let Err(e) =
                        self.store
                            .lock()
                            .unwrap()
                            .set_vm_state(&v.id, VmState::Stopped, None)
                    {
                        tracing::warn!("recording VM {} as stopped: {e}", v.name);
                    }
                    // In the background: the helper may be restarting (an update restarts
                    // both services), and readiness must not wait for it.
                    let (host, id, name) = (self.host.clone(), v.id.clone(), v.name.clone());
                    tokio::spawn(async move {
                        if let Err(e) = host.stop_vmm(&id).await {
                            tracing::warn!("cleaning up after VM {name}: {e}");
                        }
                    });
                }
            }
        }
        tracing::info!(adopted, gone, "VMs reconciled with their units");
    }

    /// Doctor lines about VMs.
    pub async fn doctor(&self) -> Vec<DoctorCheck> {
        let mut out = Vec::new();
        let recs = match self.store.lock().unwrap().vms() {
            Ok(r) => r,
            Err(e) => return vec![DoctorCheck::new(Level::Fail, "vms", e.to_string())],
        };
        let mut running = 0;
        for v in &recs {
            let live = self.live(&v.id).await;
            if live == VmState::Running {
                running += 1;
            }
            if v.wants_running() && live != VmState::Running {
                out.push(DoctorCheck::new(
                    Level::Warn,
                    "vm",
                    format!("VM {} should be running but its unit is {live}", v.name),
                ));
            }
            if !self.vm_dir(&v.id).join("config.img").is_file() {
                out.push(DoctorCheck::new(
                    Level::Fail,
                    "vm",
                    format!(
                        "VM {}: its config disk {} is missing; delete and recreate the VM",
                        v.name,
                        self.vm_dir(&v.id).join("config.img").display()
                    ),
                ));
            }
        }
        out.insert(
            0,
            DoctorCheck::new(
                Level::Pass,
                "vms",
                format!("{} VM(s), {running} running", recs.len()),
            ),
        );
        out
    }
}

/// bangerd has a /tmp of its own (PrivateTmp=): a file the caller sees in /tmp is not there.
fn private_tmp_hint(p: &Path, e: &std::io::Error) -> &'static str {
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
    fn names() {
        for ok in ["web", "a", "web-1", "0x"] {
            assert!(valid_vm_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Web",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "a b",
            "ä",
        ] {
            assert!(!valid_vm_name(bad), "{bad}");
        }
        for ok in ["debian-12", "d.1_2", "0"] {
            assert!(valid_image_name(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "X", "a/b", "..", &"a".repeat(64)] {
            assert!(!valid_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        let n = Network::parse("172.30.0.0/24", "172.30.0.1").unwrap();
        assert_eq!(n.allocate(&[]), Some(Ipv4Addr::new(172, 30, 0, 2)));
        let used = [Ipv4Addr::new(172, 30, 0, 2), Ipv4Addr::new(172, 30, 0, 3)];
        assert_eq!(n.allocate(&used), Some(Ipv4Addr::new(172, 30, 0, 4)));
        let tiny = Network::parse("10.0.0.0/30", "10.0.0.1").unwrap();
        assert_eq!(tiny.allocate(&[]), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(tiny.allocate(&[Ipv4Addr::new(10, 0, 0, 2)]), None);
        assert!(Network::parse("172.30.0.0/31", "172.30.0.1").is_none());
        assert!(Network::parse("nonsense", "172.30.0.1").is_none());
        assert_eq!(mac_for(Ipv4Addr::new(172, 30, 0, 2)), "52:54:00:1e:00:02");
    }

    #[test]
    fn host_keys() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOCt3vUfm0qrn7FvMrb1Gg0z1l5uKyPQaUQzJgn8Yx1w";
        assert!(valid_host_key(k));
        assert!(!valid_host_key(&format!("{k} comment")));
        assert!(!valid_host_key(&format!("{k}\nssh-ed25519 AAAA")));
        assert!(!valid_host_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ"));
        assert!(!valid_host_key(""));
    }

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

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("0123456789ab"), "banger-vm-0123456789ab.service");
    }
}
