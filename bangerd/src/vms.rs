//! VMs: their records in the store, their files under the state directory, and the host
//! plumbing asked of `bangerd-root`; also the errors of image and VM requests ([`VmError`]).
//! The images VMs are made from are imported, listed and removed in `crate::images`.
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

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use banger_api::ids::{ImageName, VmId, VmName};
use banger_api::net::Subnet;
use banger_api::options::StartVmmOptions;
use banger_api::time::unix_now;
use banger_api::wire::{
    BackendKind, DoctorCheck, GuestInfo, GuestPort, Level, OperationStage, SshTarget, VmInfo,
    VmState,
};

use crate::guest::{DiskError, GuestConfig};
use crate::host::{BusHost, VmHost};
use crate::images::MAX_ROOTFS;
use crate::jobs::Jobs;
use crate::ops::Operations;
use crate::pull::Pulling;
use crate::store::{Store, StoreError, VmRecord};

/// Most virtual CPUs a VM may have.
const MAX_CPUS: u32 = 32;
/// Least memory a VM may have (MiB).
const MIN_MEMORY_MIB: u32 = 64;

/// Why an image or VM request failed. Every message says what was left unchanged.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The image name to import is not an image name.
    #[error(
        "image name {0:?} is not valid: use 1 to 63 of a-z 0-9 . _ - starting with a letter or \
         digit; nothing was imported"
    )]
    BadImageName(String),
    /// An import named no kernel.
    #[error("an image needs a kernel; nothing was imported")]
    NoKernel,
    /// A file to import was named by a relative path.
    #[error("{role} path {} is not absolute; nothing was imported", .path.display())]
    RelativePath {
        /// `kernel`, `initrd` or `rootfs`.
        role: &'static str,
        /// The path as given.
        path: PathBuf,
    },
    /// A file to import is a directory, a device, ….
    #[error("{role} {} is not a regular file; nothing was imported", .path.display())]
    NotAFile {
        /// `kernel`, `initrd` or `rootfs`.
        role: &'static str,
        /// The path as given.
        path: PathBuf,
    },
    /// A file to import could not be looked at (missing, or not allowed).
    #[error(
        "{role} {}: {error}{}; nothing was imported",
        .path.display(),
        crate::images::private_tmp_hint(.path, .error)
    )]
    Inaccessible {
        /// `kernel`, `initrd` or `rootfs`.
        role: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why it could not be looked at.
        error: std::io::Error,
    },
    /// The kernel to import is not a Linux kernel.
    #[error(
        "kernel {} is not a Linux kernel (neither an ELF vmlinux nor a bzImage); nothing was \
         imported",
        .path.display()
    )]
    NotAKernel {
        /// The path as given.
        path: PathBuf,
    },
    /// The kernel to import could not be read.
    #[error("kernel {}: {error}; nothing was imported", .path.display())]
    KernelUnreadable {
        /// The path as given.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// An image of that name exists already.
    #[error(
        "an image named {0:?} already exists; nothing was imported (remove it first with \
         `banger image rm {0}`)"
    )]
    ImageExists(String),
    /// The import's temporary directory could not be made.
    #[error("creating {}: {error}; nothing was imported", .path.display())]
    ImportDir {
        /// The temporary directory.
        path: PathBuf,
        /// Why it could not be made.
        error: std::io::Error,
    },
    /// A file could not be copied into the image.
    #[error("copying {role} {}: {error}; nothing was imported", .path.display())]
    ImportCopy {
        /// `kernel`, `initrd` or `rootfs`.
        role: &'static str,
        /// The file copied from.
        path: PathBuf,
        /// Why the copy failed (also: larger than allowed).
        error: std::io::Error,
    },
    /// The image's directory exists although the store has no record of it.
    #[error(
        "{} exists without a record; remove it by hand; nothing was imported",
        .path.display()
    )]
    ImportLeftover {
        /// The image's directory.
        path: PathBuf,
    },
    /// The copied files could not be moved into the image's directory.
    #[error("moving the image into {}: {error}; nothing was imported", .path.display())]
    ImportMove {
        /// The image's directory.
        path: PathBuf,
        /// Why the move failed.
        error: std::io::Error,
    },
    /// A pull of that image name is running already.
    #[error(
        "an image named {0:?} is being pulled now; wait for that pull (or cancel it); nothing \
         was imported"
    )]
    PullRunning(String),
    /// No image of that name exists.
    #[error("no image named {0:?}")]
    NoSuchImage(String),
    /// VMs use the image to remove.
    #[error(
        "image {name:?} is used by VM(s) {}; delete them first; nothing was removed",
        .users.join(", ")
    )]
    ImageInUse {
        /// The image.
        name: String,
        /// The names of the VMs that use it.
        users: Vec<String>,
    },
    /// The VM name to create is not a VM name.
    #[error(
        "VM name {0:?} is not valid: use 1 to 63 of a-z 0-9 - (a hostname), not starting or \
         ending with -; nothing was created"
    )]
    BadVmName(String),
    /// More CPUs than allowed here, or none.
    #[error("{cpus} CPUs is impossible here: choose 1 to {max}; nothing was created")]
    Cpus {
        /// Asked for.
        cpus: u32,
        /// The most allowed here.
        max: u32,
    },
    /// Less memory than a VM needs, or more than the host has.
    #[error(
        "{mib} MiB of memory is impossible here: choose {min} MiB to {host_mib} MiB (this host's \
         memory); nothing was created"
    )]
    Memory {
        /// Asked for.
        mib: u32,
        /// The least a VM may have.
        min: u32,
        /// This host's memory (0 when unknown).
        host_mib: u64,
    },
    /// A VM of that name exists already.
    #[error("a VM named {0:?} already exists; nothing was created")]
    VmExists(String),
    /// The image to create a VM from does not exist.
    #[error("no image named {0:?} (see `banger image list`); nothing was created")]
    NoImageForVm(String),
    /// A file of the image to create a VM from is gone.
    #[error(
        "image {image:?} is damaged: its {role} {path} is missing; re-import it; nothing was created"
    )]
    DamagedImage {
        /// The image.
        image: String,
        /// `kernel`, `initrd` or `rootfs`.
        role: &'static str,
        /// The file that is missing.
        path: String,
    },
    /// The root helper reported a VM network banger cannot use.
    #[error("bangerd-root reported an unusable VM network {subnet} (host {host}): {why}")]
    UnusableNetwork {
        /// The subnet as reported.
        subnet: String,
        /// The host's address as reported.
        host: String,
        /// What is wrong with it.
        why: String,
    },
    /// Every guest address of the VM network is taken.
    #[error("the VM network {network}/{prefix} has no free address left; nothing was created")]
    NetworkFull {
        /// The network address.
        network: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
    /// A new VM's id could not be drawn.
    #[error("reading /dev/urandom: {0}")]
    Random(std::io::Error),
    /// The VM's config disk could not be made from what it would hold.
    #[error("{0}; nothing was created")]
    GuestConfig(DiskError),
    /// A new VM's files could not be written.
    #[error("writing {}: {error}; nothing was created", .path.display())]
    WriteVm {
        /// The VM's directory.
        path: PathBuf,
        /// Why writing failed.
        error: std::io::Error,
    },
    /// The directory of the SSH key for VMs could not be made.
    #[error("creating {}: {error}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why it could not be made.
        error: std::io::Error,
    },
    /// `ssh-keygen` is not installed.
    #[error(
        "ssh-keygen is not installed (Debian package openssh-client); it makes the key banger \
         logs into VMs with"
    )]
    NoSshKeygen,
    /// `ssh-keygen` could not be run.
    #[error("running ssh-keygen: {0}")]
    SshKeygenRun(std::io::Error),
    /// `ssh-keygen` ran and failed.
    #[error("ssh-keygen failed: {0}")]
    SshKeygenFailed(
        /// What it wrote on stderr, trimmed.
        String,
    ),
    /// A file could not be read.
    #[error("reading {}: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// No VM of that name exists.
    #[error("no VM named {0:?}")]
    NoSuchVm(String),
    /// The VM to delete is running (or starting, or stopping).
    #[error(
        "VM {name} is {state}; stop it first (`banger vm stop {name}`) or use `banger vm rm \
         --force {name}`; nothing was deleted"
    )]
    VmIsLive {
        /// The VM.
        name: String,
        /// Its state, read from its unit.
        state: VmState,
    },
    /// The root helper could not clean up after a VM that is to be deleted.
    #[error("cleaning up after VM {name}: {error}; nothing was deleted")]
    Cleanup {
        /// The VM.
        name: String,
        /// What the host said.
        error: Box<VmError>,
    },
    /// The host key to pin is not an `ssh-ed25519` public key.
    #[error("{0:?} is not an ssh-ed25519 public key (`ssh-ed25519 BASE64`); nothing was pinned")]
    BadHostKey(String),
    /// The VM has another host key pinned.
    #[error("VM {0} already has a different host key pinned; the new one was not accepted")]
    HostKeyMismatch(String),
    /// The root helper refused the request as malformed: its own message.
    #[error("{0}")]
    Invalid(String),
    /// The guest agent was asked about a VM that does not run.
    #[error(
        "VM {name} is {state}: its guest agent answers only while it runs (`banger vm start \
         {name}`)"
    )]
    NotRunning {
        /// The VM.
        name: String,
        /// Its state, read from its unit.
        state: VmState,
    },
    /// The guest agent gave no usable answer.
    #[error("VM {name}: {error}")]
    Agent {
        /// The VM.
        name: String,
        /// Why.
        error: crate::agent::AgentError,
    },
    /// The root helper (or polkit behind it) refused the call: its own message.
    #[error("{0}")]
    NotAuthorized(String),
    /// The root helper, or systemd, failed: what failed and their message.
    #[error("{0}")]
    Root(String),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Work handed to a blocking thread did not finish (it panicked, or the runtime shut down).
    #[error("{0}")]
    Task(tokio::task::JoinError),
}

/// The result of an image or VM request.
pub(crate) type Result<T> = std::result::Result<T, VmError>;

/// The VM network as the root helper reports it: its range, whose first address is the host's
/// (the guests' gateway).
pub fn parse_network(subnet: &str, host: &str) -> std::result::Result<Subnet, String> {
    let net = Subnet::parse(subnet).map_err(|e| format!("subnet {e}"))?;
    if host != net.host_address().to_string() {
        return Err(format!(
            "the host's address is not {}, the range's first",
            net.host_address()
        ));
    }
    Ok(net)
}

/// The lowest guest address of `net` not in `used`.
pub fn allocate(net: &Subnet, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    net.guest_addresses().find(|a| !used.contains(a))
}

/// The MAC address derived from a guest address: unique on the VM network.
pub fn mac_for(addr: Ipv4Addr) -> String {
    let o = addr.octets();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])
}

/// The name of a VM to create, as a request sent it: refused with [`VmError::BadVmName`] when it
/// is not a VM name (the rule is [`VmName::parse`]).
pub fn vm_name_to_create(name: &str) -> Result<VmName> {
    VmName::parse(name).map_err(|_| VmError::BadVmName(name.to_string()))
}

/// The name of an existing VM, as a request sent it: a string that is not a VM name names no VM
/// ([`VmError::NoSuchVm`]), as no VM was ever created with it.
pub fn vm_name_to_find(name: &str) -> Result<VmName> {
    VmName::parse(name).map_err(|_| VmError::NoSuchVm(name.to_string()))
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

/// A random id from `/dev/urandom`: a new VM's id, or a name for a temporary directory.
pub(crate) fn random_id() -> std::io::Result<VmId> {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(VmId::from_bytes(b))
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

/// The image and VM manager (its image requests are in `crate::images`).
pub struct Vms {
    /// The state directory (`/var/lib/banger`).
    pub(crate) state_dir: PathBuf,
    /// The store of image and VM records.
    pub(crate) store: Arc<Mutex<Store>>,
    /// The registry every change registers with.
    pub(crate) ops: Arc<Operations>,
    pub(crate) host: Arc<dyn VmHost>,
    /// Long work (image pulls) that clients follow as jobs.
    pub jobs: Jobs,
    /// The image names being pulled now.
    pub(crate) pulling: Pulling,
    /// Serializes changes to images and VMs (address allocation, names, files).
    pub(crate) changes: tokio::sync::Mutex<()>,
    /// How the VMs' resolver stands, for `doctor`.
    resolver: Mutex<ResolverState>,
    /// Where changes are announced ([`Vms::changes`]).
    changed: tokio::sync::broadcast::Sender<Change>,
    /// The VMs' guest agents.
    agents: crate::agent::Agents,
}

/// A change to the daemon's VMs or images, for the bus layer to announce
/// ([`crate::objects`]); sent after the change is in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// VM `id` was created, or its record changed (started, stopped, host key pinned).
    Vm(String),
    /// VM `id` was deleted.
    VmRemoved(String),
    /// Image `name` was made, or the VMs that use it changed.
    Image(String),
    /// Image `name` was deleted.
    ImageRemoved(String),
}

/// How many changes a slow listener may fall behind before it must read everything again.
const CHANGE_QUEUE: usize = 1024;

/// How the VMs' resolver ([`crate::dns`]) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolverState {
    /// Not started (yet).
    NotStarted,
    /// Serving on this address.
    Serving {
        /// Where it listens.
        at: std::net::SocketAddr,
    },
    /// It could not start, and why.
    Failed(String),
}

/// The host's resolver configuration the VMs' resolver forwards to.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The host's resolvers as `/etc/resolv.conf` names them now, without `us`.
fn host_upstreams(us: std::net::IpAddr) -> Vec<std::net::SocketAddr> {
    let std::net::IpAddr::V4(us) = us else {
        return Vec::new();
    };
    crate::dns::upstreams(
        &std::fs::read_to_string(RESOLV_CONF).unwrap_or_default(),
        us,
    )
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
            jobs: Jobs::default(),
            pulling: Pulling::default(),
            changes: tokio::sync::Mutex::new(()),
            resolver: Mutex::new(ResolverState::NotStarted),
            changed: tokio::sync::broadcast::channel(CHANGE_QUEUE).0,
            agents: crate::agent::Agents::default(),
        }
    }

    /// Starts the VMs' resolver on the host's address on the VM bridge, port 53 (see
    /// [`crate::dns`]). It runs until the daemon stops; when it cannot start, `doctor` says why
    /// and VMs still work by address.
    pub async fn start_resolver(self: &Arc<Self>) {
        let state = match self.bind_resolver().await {
            Ok((sock, at)) => {
                let this = Arc::downgrade(self);
                let lookup: crate::dns::Lookup = Arc::new(move |name: &str| {
                    let vms = this.upgrade()?;
                    let rec = vms.store.lock().ok()?.vm(name).ok()??;
                    rec.address.parse().ok()
                });
                let host = at.ip();
                let upstreams: crate::dns::Upstreams = Arc::new(move || host_upstreams(host));
                match crate::dns::listen_freebind(at) {
                    Ok(tcp) => {
                        tokio::spawn(crate::dns::serve_tcp(
                            tcp,
                            upstreams.clone(),
                            lookup.clone(),
                        ));
                    }
                    // UDP still serves nearly everything; only truncated answers need TCP.
                    Err(e) => tracing::warn!("VM resolver: no TCP on {at}: {e}"),
                }
                tokio::spawn(crate::dns::serve(sock, upstreams, lookup));
                tracing::info!(%at, upstreams = ?host_upstreams(host), "VM resolver serving");
                ResolverState::Serving { at }
            }
            Err(why) => {
                tracing::warn!("VM resolver not started: {why}");
                ResolverState::Failed(why)
            }
        };
        *self.resolver.lock().unwrap() = state;
    }

    async fn bind_resolver(
        &self,
    ) -> std::result::Result<(tokio::net::UdpSocket, std::net::SocketAddr), String> {
        // bangerd-root may be restarting (an update): a few tries, a second apart.
        let mut tries = 0;
        let (_bridge, subnet, host) = loop {
            match self.host.vm_network().await {
                Ok(n) => break n,
                Err(e) if tries >= 10 => {
                    return Err(format!("asking bangerd-root for the VM network: {e}"));
                }
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        let net = parse_network(&subnet, &host)
            .map_err(|why| format!("the VM network {subnet} (host {host}): {why}"))?;
        let at = std::net::SocketAddr::from((net.host_address(), 53));
        let sock = crate::dns::bind_freebind(at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!(
                    "binding {at}: {e} (bangerd.service needs AmbientCapabilities=\
                     CAP_NET_BIND_SERVICE; reinstall with: sudo banger system install)"
                )
            } else {
                format!("binding {at}: {e}")
            }
        })?;
        Ok((sock, at))
    }

    /// The `vm dns` doctor line.
    fn resolver_check(&self) -> DoctorCheck {
        let domain = banger_api::names::VM_DNS_DOMAIN;
        let state = self.resolver.lock().unwrap().clone();
        match state {
            ResolverState::Serving { at } if host_upstreams(at.ip()).is_empty() => {
                DoctorCheck::new(
                    Level::Warn,
                    "vm dns",
                    format!(
                        "serving <vm>.{domain} at {at}, but {RESOLV_CONF} names no nameserver: \
                     guests resolve only VM names"
                    ),
                )
            }
            ResolverState::Serving { at } => DoctorCheck::new(
                Level::Pass,
                "vm dns",
                format!(
                    "serving <vm>.{domain} at {at}; other names go to {}",
                    host_upstreams(at.ip())
                        .iter()
                        .map(|u| u.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            ResolverState::NotStarted => DoctorCheck::new(
                Level::Warn,
                "vm dns",
                "not started yet: guests resolve no names",
            ),
            ResolverState::Failed(why) => DoctorCheck::new(
                Level::Warn,
                "vm dns",
                format!("{why}; guests resolve no names (they still work by address)"),
            ),
        }
    }

    fn vm_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("vms").join(id)
    }

    fn ssh_key(&self) -> PathBuf {
        self.state_dir.join("ssh").join("id_ed25519")
    }

    /// Every change from now on, in order. A receiver that falls more than 1024 behind gets
    /// `Lagged` and must read everything again.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changed.subscribe()
    }

    /// Announces a change (nobody listening is fine).
    pub(crate) fn announce(&self, change: Change) {
        let _ = self.changed.send(change);
    }

    /// The record of VM `id`, if there is one.
    pub fn vm_by_id(&self, id: &str) -> Result<Option<VmRecord>> {
        Ok(self
            .store
            .lock()
            .unwrap()
            .vms()?
            .into_iter()
            .find(|v| v.id == id))
    }

    /// A VM as the bus shows it, with `state` as the caller knows it.
    pub fn info_with_state(&self, v: &VmRecord, state: VmState) -> VmInfo {
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

    /// VM `id`'s state, read from its unit now.
    pub async fn live_state(&self, id: &str) -> VmState {
        self.live(id).await
    }

    fn vm_record(&self, name: &VmName) -> Result<VmRecord> {
        self.store
            .lock()
            .unwrap()
            .vm(name.as_str())?
            .ok_or_else(|| VmError::NoSuchVm(name.to_string()))
    }

    /// The VM's state, read from its unit now ([`VmState::Unknown`] when systemd cannot say).
    async fn live(&self, id: &str) -> VmState {
        self.host.vm_state(id).await
    }

    async fn info(&self, v: &VmRecord) -> VmInfo {
        let state = self.live(&v.id).await;
        self.info_with_state(v, state)
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
                .map_err(|error| VmError::CreateDir {
                    path: dir.clone(),
                    error,
                })?;
            let _ = std::fs::remove_file(&key);
            let keygen =
                banger_host::virt::find_program("ssh-keygen").ok_or(VmError::NoSshKeygen)?;
            let out = tokio::process::Command::new(keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f"])
                .arg(&key)
                .output()
                .await
                .map_err(VmError::SshKeygenRun)?;
            if !out.status.success() {
                return Err(VmError::SshKeygenFailed(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
        }
        std::fs::read_to_string(&public)
            .map(|s| s.trim().to_string())
            .map_err(|error| VmError::Read {
                path: public.clone(),
                error,
            })
    }

    async fn network(&self) -> Result<Subnet> {
        let (_bridge, subnet, host) = self.host.vm_network().await?;
        parse_network(&subnet, &host).map_err(|why| VmError::UnusableNetwork { subnet, host, why })
    }

    /// Creates a stopped VM: record, address, config disk and (if the image has one) its own
    /// root filesystem copy. On any failure nothing is left behind. `image` is looked up as the
    /// request sent it, once the resources are checked and the name is known to be free.
    ///
    /// Without a `name` it picks a free one ([`crate::namegen`]); the answer says which.
    pub async fn create_vm(
        &self,
        name: Option<&VmName>,
        image: &str,
        cpus: u32,
        memory_mib: u32,
    ) -> Result<VmInfo> {
        let max_cpus = MAX_CPUS.min(host_cpus());
        if cpus == 0 || cpus > max_cpus {
            return Err(VmError::Cpus {
                cpus,
                max: max_cpus,
            });
        }
        let host_mib = host_memory_mib();
        if memory_mib < MIN_MEMORY_MIB || (host_mib > 0 && u64::from(memory_mib) > host_mib) {
            return Err(VmError::Memory {
                mib: memory_mib,
                min: MIN_MEMORY_MIB,
                host_mib,
            });
        }
        let _serial = self.changes.lock().await;
        let (img, used, name) = {
            let store = self.store.lock().unwrap();
            let name = match name {
                Some(n) => n.clone(),
                // Changes are serialized: the name stays free until this VM is recorded.
                None => crate::namegen::pick(|n| !matches!(store.vm(n), Ok(None)))
                    .map_err(VmError::Random)?,
            };
            if store.vm(name.as_str())?.is_some() {
                return Err(VmError::VmExists(name.to_string()));
            }
            // A string that is not an image name names no image.
            let img = match ImageName::parse(image) {
                Ok(image) => store.image(image.as_str())?,
                Err(_) => None,
            }
            .ok_or_else(|| VmError::NoImageForVm(image.to_string()))?;
            let used: Vec<Ipv4Addr> = store
                .vms()?
                .iter()
                .filter_map(|v| v.address.parse().ok())
                .collect();
            (img, used, name)
        };
        for (role, p) in [
            ("kernel", Some(&img.kernel_path)),
            ("initrd", img.initrd_path.as_ref()),
            ("rootfs", img.rootfs_path.as_ref()),
        ] {
            if let Some(p) = p
                && !Path::new(p).is_file()
            {
                return Err(VmError::DamagedImage {
                    image: image.to_string(),
                    role,
                    path: p.clone(),
                });
            }
        }
        let op = self.ops.begin("vm.create").map_err(VmError::Store)?;
        op.stage(&format!("creating {name}"));
        let net = self.network().await?;
        let address = allocate(&net, &used).ok_or(VmError::NetworkFull {
            network: net.network(),
            prefix: net.prefix(),
        })?;
        let public_key = self.ensure_ssh_key().await?;
        let id = random_id().map_err(VmError::Random)?;
        let dir = self.vm_dir(id.as_str());
        let disk = GuestConfig {
            vm_id: id.to_string(),
            hostname: name.to_string(),
            address,
            prefix: net.prefix(),
            gateway: net.host_address(),
            authorized_keys: vec![public_key],
            nameserver: net.host_address(),
            search: banger_api::names::VM_DNS_DOMAIN.to_string(),
        }
        .render()
        .map_err(VmError::GuestConfig)?;
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
                    let c = banger_host::diskcopy::copy_disk(
                        Path::new(&src),
                        &dir.join("rootfs.img"),
                        MAX_ROOTFS,
                    )?;
                    tracing::info!(size = c.size, method = %c.method, "root filesystem copied");
                }
                Ok(())
            })
            .await
            .map_err(VmError::Task)?
        };
        let rec = VmRecord {
            id: id.to_string(),
            name: name.to_string(),
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
            .map_err(|error| VmError::WriteVm {
                path: dir.clone(),
                error,
            })
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
        self.announce(Change::Vm(rec.id.clone()));
        self.announce(Change::Image(rec.image.clone()));
        tracing::info!(vm = name.as_str(), vm_id = id.as_str(), %address, "VM created");
        Ok(self.info(&rec).await)
    }

    /// Starts a VM through the root helper; already running is fine.
    pub async fn start_vm(&self, name: &VmName) -> Result<VmInfo> {
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
            cpus: Some(v.cpus),
            memory_mib: Some(v.memory_mib),
            mac: Some(v.mac.clone()),
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
        self.announce(Change::Vm(v.id.clone()));
        tracing::info!(vm = name.as_str(), vm_id = v.id, "VM started");
        let v = self.vm_record(name)?;
        Ok(self.info(&v).await)
    }

    /// Stops a VM (its unit ends and its tap goes); already stopped is fine.
    pub async fn stop_vm(&self, name: &VmName) -> Result<VmInfo> {
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
        self.announce(Change::Vm(v.id.clone()));
        tracing::info!(vm = name.as_str(), vm_id = v.id, "VM stopped");
        Ok(self.info(&v).await)
    }

    /// Deletes a stopped VM: its record and its files.
    pub async fn delete_vm(&self, name: &VmName) -> Result<()> {
        let _serial = self.changes.lock().await;
        let v = self.vm_record(name)?;
        let state = self.live(&v.id).await;
        if state.is_live() {
            return Err(VmError::VmIsLive {
                name: name.to_string(),
                state,
            });
        }
        let op = self.ops.begin("vm.delete").map_err(VmError::Store)?;
        op.stage(&format!("deleting {name}"));
        // Leftovers of a VM that died on its own (its tap, a failed unit) go first.
        if let Err(e) = self.host.stop_vmm(&v.id).await {
            op.finish(OperationStage::Failed);
            return Err(VmError::Cleanup {
                name: name.to_string(),
                error: Box::new(e),
            });
        }
        self.store.lock().unwrap().delete_vm(&v.id)?;
        self.announce(Change::VmRemoved(v.id.clone()));
        self.announce(Change::Image(v.image.clone()));
        let dir = self.vm_dir(&v.id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", dir.display());
        }
        op.finish(OperationStage::Done);
        self.agents.forget(&v.id);
        tracing::info!(vm = name.as_str(), vm_id = v.id, "VM deleted");
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
    pub async fn get_vm(&self, name: &VmName) -> Result<VmInfo> {
        let v = self.vm_record(name)?;
        Ok(self.info(&v).await)
    }

    /// A running VM's guest as its agent sees it (read-only; asks the guest now).
    pub async fn guest_info(&self, name: &VmName) -> Result<GuestInfo> {
        let (v, backend) = self.running_for_agent(name).await?;
        let i = self
            .agents
            .info(&v.id, &self.vm_dir(&v.id), backend)
            .await
            .map_err(|error| VmError::Agent {
                name: v.name.clone(),
                error,
            })?;
        Ok(GuestInfo {
            agent_version: i.agent_version,
            hostname: i.hostname,
            kernel: i.kernel,
            uptime_s: i.uptime_s,
            boot_id: i.boot_id,
            addresses: i
                .addresses
                .into_iter()
                .map(|a| (a.iface, a.address))
                .collect(),
        })
    }

    /// The sockets listening in a running VM's guest, as its agent sees them (read-only).
    pub async fn guest_ports(&self, name: &VmName) -> Result<Vec<GuestPort>> {
        let (v, backend) = self.running_for_agent(name).await?;
        let ports = self
            .agents
            .ports(&v.id, &self.vm_dir(&v.id), backend)
            .await
            .map_err(|error| VmError::Agent {
                name: v.name.clone(),
                error,
            })?;
        Ok(ports
            .into_iter()
            .map(|p| GuestPort {
                proto: p.proto,
                address: p.address,
                port: p.port,
                pid: p.pid,
                process: p.process,
            })
            .collect())
    }

    /// The record and back end of a VM whose unit runs now.
    async fn running_for_agent(&self, name: &VmName) -> Result<(VmRecord, BackendKind)> {
        let v = self.vm_record(name)?;
        let state = self.live(&v.id).await;
        let backend = BackendKind::parse(&v.backend);
        match (state, backend) {
            (VmState::Running, Some(b)) => Ok((v, b)),
            (state, _) => Err(VmError::NotRunning {
                name: v.name,
                state,
            }),
        }
    }

    /// How to reach a VM over SSH.
    pub fn ssh_target(&self, name: &VmName) -> Result<SshTarget> {
        let v = self.vm_record(name)?;
        Ok(SshTarget {
            address: v.address,
            user: "root".into(),
            identity_file: self.ssh_key().display().to_string(),
            host_key: v.host_key,
        })
    }

    /// Pins a VM's SSH host key on first contact; a different pinned key is never replaced.
    /// The key is checked first; `name` is then looked up as the request sent it.
    pub fn pin_host_key(&self, name: &str, key: &str) -> Result<()> {
        if !valid_host_key(key) {
            return Err(VmError::BadHostKey(key.to_string()));
        }
        let v = self.vm_record(&vm_name_to_find(name)?)?;
        let pinned = self.store.lock().unwrap().pin_host_key(&v.id, key)?;
        if pinned != key {
            return Err(VmError::HostKeyMismatch(name.to_string()));
        }
        if v.host_key.is_empty() {
            self.announce(Change::Vm(v.id));
        }
        Ok(())
    }

    /// Reads the serial console log from `offset`; a negative offset reads the last -offset
    /// bytes (at most 1 MiB per call). Returns the bytes and where to continue.
    pub fn read_log(&self, name: &VmName, offset: i64) -> Result<(Vec<u8>, u64)> {
        use std::io::Seek;
        const MAX: u64 = 1 << 20;
        let v = self.vm_record(name)?;
        let path = self.vm_dir(&v.id).join("serial.log");
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(error) => return Err(VmError::Read { path, error }),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = if offset < 0 {
            len.saturating_sub(offset.unsigned_abs())
        } else {
            (offset as u64).min(len)
        };
        let unreadable = |error| VmError::Read {
            path: path.clone(),
            error,
        };
        f.seek(std::io::SeekFrom::Start(start))
            .map_err(unreadable)?;
        let mut buf = Vec::new();
        f.take(MAX).read_to_end(&mut buf).map_err(unreadable)?;
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
                    tracing::info!(vm = v.name, vm_id = v.id, "re-adopted running VM");
                }
                // Left as it is, so `vm list` and doctor keep showing it until the owner
                // starts, stops or removes the VM (each cleans up).
                VmState::Failed => {
                    gone += 1;
                    tracing::warn!(vm = v.name, vm_id = v.id, "VM's VMM failed while away");
                }
                other => {
                    gone += 1;
                    tracing::warn!(vm = v.name, vm_id = v.id, state = %other, "VM ended while away");
                    if let Err(e) =
                        self.store
                            .lock()
                            .unwrap()
                            .set_vm_state(&v.id, VmState::Stopped, None)
                    {
                        tracing::warn!("recording VM {} as stopped: {e}", v.name);
                    }
                    self.announce(Change::Vm(v.id.clone()));
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
        out.push(self.resolver_check());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_as_the_smoke_suite_expects() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let p = || PathBuf::from("/srv/k");
        let cases: Vec<(VmError, &str)> = vec![
            (
                VmError::BadImageName("A".into()),
                "image name \"A\" is not valid: use 1 to 63 of a-z 0-9 . _ - starting with a \
                 letter or digit; nothing was imported",
            ),
            (
                VmError::NoKernel,
                "an image needs a kernel; nothing was imported",
            ),
            (
                VmError::RelativePath {
                    role: "initrd",
                    path: "k".into(),
                },
                "initrd path k is not absolute; nothing was imported",
            ),
            (
                VmError::NotAFile {
                    role: "rootfs",
                    path: p(),
                },
                "rootfs /srv/k is not a regular file; nothing was imported",
            ),
            (
                VmError::Inaccessible {
                    role: "kernel",
                    path: "/tmp/k".into(),
                    error: io(),
                },
                "kernel /tmp/k: entity not found (bangerd has a private /tmp and /var/tmp and \
                 cannot see files there: move the file elsewhere, for example to your home \
                 directory); nothing was imported",
            ),
            (
                VmError::Inaccessible {
                    role: "kernel",
                    path: p(),
                    error: io(),
                },
                "kernel /srv/k: entity not found; nothing was imported",
            ),
            (
                VmError::NotAKernel { path: p() },
                "kernel /srv/k is not a Linux kernel (neither an ELF vmlinux nor a bzImage); \
                 nothing was imported",
            ),
            (
                VmError::KernelUnreadable {
                    path: p(),
                    error: io(),
                },
                "kernel /srv/k: entity not found; nothing was imported",
            ),
            (
                VmError::ImageExists("deb".into()),
                "an image named \"deb\" already exists; nothing was imported (remove it first \
                 with `banger image rm deb`)",
            ),
            (
                VmError::ImportDir {
                    path: p(),
                    error: io(),
                },
                "creating /srv/k: entity not found; nothing was imported",
            ),
            (
                VmError::ImportCopy {
                    role: "kernel",
                    path: p(),
                    error: std::io::Error::other("larger than the 1 MiB allowed"),
                },
                "copying kernel /srv/k: larger than the 1 MiB allowed; nothing was imported",
            ),
            (
                VmError::ImportLeftover { path: p() },
                "/srv/k exists without a record; remove it by hand; nothing was imported",
            ),
            (
                VmError::ImportMove {
                    path: p(),
                    error: io(),
                },
                "moving the image into /srv/k: entity not found; nothing was imported",
            ),
            (VmError::NoSuchImage("deb".into()), "no image named \"deb\""),
            (
                VmError::ImageInUse {
                    name: "deb".into(),
                    users: vec!["web".into(), "db".into()],
                },
                "image \"deb\" is used by VM(s) web, db; delete them first; nothing was removed",
            ),
            (
                VmError::BadVmName("../etc".into()),
                "VM name \"../etc\" is not valid: use 1 to 63 of a-z 0-9 - (a hostname), not \
                 starting or ending with -; nothing was created",
            ),
            (
                VmError::Cpus { cpus: 999, max: 2 },
                "999 CPUs is impossible here: choose 1 to 2; nothing was created",
            ),
            (
                VmError::Memory {
                    mib: 8,
                    min: MIN_MEMORY_MIB,
                    host_mib: 4096,
                },
                "8 MiB of memory is impossible here: choose 64 MiB to 4096 MiB (this host's \
                 memory); nothing was created",
            ),
            (
                VmError::VmExists("web".into()),
                "a VM named \"web\" already exists; nothing was created",
            ),
            (
                VmError::NoImageForVm("nope".into()),
                "no image named \"nope\" (see `banger image list`); nothing was created",
            ),
            (
                VmError::DamagedImage {
                    image: "broken".into(),
                    role: "initrd",
                    path: "/var/lib/banger/images/broken/initrd".into(),
                },
                "image \"broken\" is damaged: its initrd /var/lib/banger/images/broken/initrd \
                 is missing; re-import it; nothing was created",
            ),
            (
                VmError::UnusableNetwork {
                    subnet: "10.0.0.0/31".into(),
                    host: "10.0.0.1".into(),
                    why: "subnet has prefix /31; it must be /16 to /29 (room for the host and \
                          some VMs)"
                        .into(),
                },
                "bangerd-root reported an unusable VM network 10.0.0.0/31 (host 10.0.0.1): \
                 subnet has prefix /31; it must be /16 to /29 (room for the host and some VMs)",
            ),
            (
                VmError::NetworkFull {
                    network: Ipv4Addr::new(10, 0, 0, 0),
                    prefix: 30,
                },
                "the VM network 10.0.0.0/30 has no free address left; nothing was created",
            ),
            (
                VmError::Random(io()),
                "reading /dev/urandom: entity not found",
            ),
            (
                VmError::WriteVm {
                    path: p(),
                    error: io(),
                },
                "writing /srv/k: entity not found; nothing was created",
            ),
            (
                VmError::CreateDir {
                    path: p(),
                    error: io(),
                },
                "creating /srv/k: entity not found",
            ),
            (
                VmError::NoSshKeygen,
                "ssh-keygen is not installed (Debian package openssh-client); it makes the key \
                 banger logs into VMs with",
            ),
            (
                VmError::SshKeygenRun(io()),
                "running ssh-keygen: entity not found",
            ),
            (
                VmError::SshKeygenFailed("bad".into()),
                "ssh-keygen failed: bad",
            ),
            (
                VmError::Read {
                    path: p(),
                    error: io(),
                },
                "reading /srv/k: entity not found",
            ),
            (VmError::NoSuchVm("ghost".into()), "no VM named \"ghost\""),
            (
                VmError::VmIsLive {
                    name: "web".into(),
                    state: VmState::Running,
                },
                "VM web is running; stop it first (`banger vm stop web`) or use \
                 `banger vm rm --force web`; nothing was deleted",
            ),
            (
                VmError::Cleanup {
                    name: "web".into(),
                    error: Box::new(VmError::Root("the helper said no".into())),
                },
                "cleaning up after VM web: the helper said no; nothing was deleted",
            ),
            (
                VmError::BadHostKey("ssh-rsa x".into()),
                "\"ssh-rsa x\" is not an ssh-ed25519 public key (`ssh-ed25519 BASE64`); nothing \
                 was pinned",
            ),
            (
                VmError::HostKeyMismatch("web".into()),
                "VM web already has a different host key pinned; the new one was not accepted",
            ),
        ];
        for (e, message) in cases {
            assert_eq!(e.to_string(), message, "{e:?}");
        }
    }

    #[test]
    fn names_as_requests_send_them() {
        assert_eq!(vm_name_to_create("web").unwrap().as_str(), "web");
        assert!(matches!(
            vm_name_to_create("../etc"),
            Err(VmError::BadVmName(n)) if n == "../etc"
        ));
        assert_eq!(vm_name_to_find("web").unwrap().as_str(), "web");
        assert!(matches!(
            vm_name_to_find("Web"),
            Err(VmError::NoSuchVm(n)) if n == "Web"
        ));
        let id = random_id().unwrap();
        assert_eq!(VmId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn addresses() {
        let n = parse_network("172.30.0.0/24", "172.30.0.1").unwrap();
        assert_eq!(allocate(&n, &[]), Some(Ipv4Addr::new(172, 30, 0, 2)));
        let used = [Ipv4Addr::new(172, 30, 0, 2), Ipv4Addr::new(172, 30, 0, 3)];
        assert_eq!(allocate(&n, &used), Some(Ipv4Addr::new(172, 30, 0, 4)));
        let tiny = parse_network("10.0.0.0/29", "10.0.0.1").unwrap();
        let all: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(allocate(&tiny, &all[..4]), Some(Ipv4Addr::new(10, 0, 0, 6)));
        assert_eq!(allocate(&tiny, &all), None, "never the broadcast address");
        assert!(
            parse_network("172.30.0.0/31", "172.30.0.1")
                .unwrap_err()
                .contains("/16 to /29")
        );
        assert!(
            parse_network("nonsense", "172.30.0.1")
                .unwrap_err()
                .contains("CIDR")
        );
        assert!(
            parse_network("172.30.0.0/24", "172.30.0.9")
                .unwrap_err()
                .contains("not 172.30.0.1")
        );
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
    fn unit_names() {
        assert_eq!(unit_name("0123456789ab"), "banger-vm-0123456789ab.service");
    }
}
