//! Starting and stopping a VM's VMM: files checked, back end picked, bridge and tap made, the
//! VMM started as the transient unit `banger-vm-<id>.service` in `banger.slice`, configured over
//! its API socket where it has one, and watched for a moment. Any failure after the tap exists
//! undoes everything, so a failed start leaves nothing running.
//!
//! The VMM is never a child of the helper: systemd runs it as its own unit, as the install owner,
//! so restarting or killing `bangerd-root` or `bangerd` never touches it.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::vmm::{self, Backend, BackendKind, VmmSpec};
use banger_api::ids::VmId;
use banger_api::names;
use banger_host::install::{InstallMeta, Layout, MetaError, Owner};
use banger_host::systemd::{JobKind, Systemd, SystemdError, TransientService};
use banger_host::virt::Accelerator;

use super::config::{NetworkConfig, VmConfig};
use super::nat::Nat;
use super::net::{Ip, NetError};
use super::options::{StartOptions, tap_name, unit_name};
use super::safefs::{self, Dir, FsError};
use crate::config::{CONFIG_FILE, ConfigError};

/// The VMM's own messages (its standard error), in the VM's directory.
pub const VMM_LOG: &str = "vmm.log";
/// The serial console, in the VM's directory.
pub const SERIAL_LOG: &str = "serial.log";
/// The per-VM config disk, in the VM's directory.
pub const CONFIG_DISK: &str = "config.img";
/// The VM's own root filesystem, in the VM's directory.
pub const ROOTFS: &str = "rootfs.img";

/// Why a VM operation failed. Each message says what was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A file of the image or of the VM is missing.
    #[error("{0}; nothing was started")]
    Missing(FsError),
    /// The image is not in the state directory.
    #[error("image {image:?} is not in {images} ({source}); nothing was started")]
    NoImage {
        /// The image asked for.
        image: String,
        /// The images directory.
        images: String,
        /// What opening it said.
        source: FsError,
    },
    /// A file of the image or of the VM is unusable (a link, the wrong type, unreadable).
    #[error("{0}; nothing was started")]
    Files(FsError),
    /// The VM's directory belongs to someone other than the install owner.
    #[error(
        "{dir} belongs to uid {uid}, not to the install owner (uid {owner}); refusing to use \
         it; nothing was started"
    )]
    NotOwners {
        /// The VM's directory.
        dir: String,
        /// Its owner.
        uid: u32,
        /// The install owner.
        owner: u32,
    },
    /// The VM's unit is already running.
    #[error("VM {id} is already running (unit {unit} is {state}); it was left as it is")]
    AlreadyRunning {
        /// The VM.
        id: String,
        /// Its unit.
        unit: String,
        /// The unit's ActiveState.
        state: String,
    },
    /// `/etc/banger/config.toml` is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `/etc/banger/install.toml` is unusable.
    #[error(transparent)]
    Install(#[from] MetaError),
    /// systemd could not be asked about the VM's unit before the start.
    #[error("{0}; nothing was started")]
    UnitState(SystemdError),
    /// The VMM may not use `/dev/kvm`.
    #[error("{0}; nothing was started")]
    Kvm(String),
    /// No back end can run here.
    #[error("no VMM can run: {0}; nothing was started")]
    NoVmm(String),
    /// The back end wants its API socket outside the VM's directory.
    #[error("the back end's API socket {socket} is not in {dir}; nothing was started")]
    ApiSocket {
        /// The socket.
        socket: String,
        /// The VM's directory.
        dir: String,
    },
    /// `ip` cannot be run.
    #[error("{0}; nothing was started")]
    Ip(NetError),
    /// The bridge could not be set up.
    #[error("setting up the VM bridge: {0}; no VM was started")]
    Bridge(NetError),
    /// The VM's tap could not be created.
    #[error("creating tap {tap}: {source}; no VM was started")]
    Tap {
        /// The tap.
        tap: String,
        /// What `ip` said.
        source: NetError,
    },
    /// The start failed after host changes were made, and they were undone.
    #[error(
        "starting VM {id} failed: {why}; {unit} was stopped and tap {tap} removed, so nothing \
         is left running"
    )]
    StartUndone {
        /// The VM.
        id: String,
        /// Why the start failed.
        why: String,
        /// Its unit.
        unit: String,
        /// Its tap.
        tap: String,
    },
    /// The start failed after host changes were made, and undoing them failed too.
    #[error(
        "starting VM {id} failed: {why}; cleaning up failed too ({left}): check `systemctl \
         status {unit}` and `ip link show {tap}`"
    )]
    StartLeftOvers {
        /// The VM.
        id: String,
        /// Why the start failed.
        why: String,
        /// What could not be undone.
        left: String,
        /// Its unit.
        unit: String,
        /// Its tap.
        tap: String,
    },
    /// systemd could not stop the VM's unit.
    #[error("{source}; tap {tap} was left in place")]
    StopUnit {
        /// What systemd said.
        source: SystemdError,
        /// The tap left.
        tap: String,
    },
    /// The unit stopped but `ip` cannot be run.
    #[error("{unit} is stopped, but {source}")]
    StopIp {
        /// The unit.
        unit: String,
        /// Why `ip` cannot be run.
        source: NetError,
    },
    /// The unit stopped but its tap could not be removed.
    #[error("{unit} is stopped, but removing tap {tap}: {source}")]
    StopTap {
        /// The unit.
        unit: String,
        /// The tap.
        tap: String,
        /// What `ip` said.
        source: NetError,
    },
}

/// A VM that was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Its unit, `banger-vm-<id>.service`.
    pub unit: String,
    /// The back end that runs it.
    pub backend: BackendKind,
}

/// Where VM plumbing finds its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    /// The state directory (`/var/lib/banger`), holding `images/` and `vms/`.
    pub state_dir: PathBuf,
    /// The root-owned configuration (`/etc/banger/config.toml`).
    pub config: PathBuf,
    /// The install metadata naming the owner (`/etc/banger/install.toml`).
    pub install_toml: PathBuf,
    /// What was changed for outbound network ([`banger_host::nat::RECORD`]).
    pub nat_record: PathBuf,
    /// The per-interface IPv4 sysctls ([`super::nat::IPV4_CONF`]).
    pub ipv4_conf: PathBuf,
}

impl VmPaths {
    /// The paths of `layout` (the live system's when its root is `/`).
    pub fn from_layout(layout: &Layout) -> Self {
        VmPaths {
            state_dir: layout.state_dir(),
            config: layout.etc_dir().join(
                Path::new(CONFIG_FILE)
                    .file_name()
                    .expect("CONFIG_FILE names a file"),
            ),
            install_toml: layout.install_toml(),
            nat_record: layout
                .root
                .join(banger_host::nat::RECORD.trim_start_matches('/')),
            ipv4_conf: PathBuf::from(super::nat::IPV4_CONF),
        }
    }
}

/// Where the programs VM plumbing runs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Programs {
    /// Looked up on the host at each use (`PATH`, then the system directories).
    Host,
    /// Fixed (tests); `None` means "not installed".
    Fixed {
        /// iproute2's `ip`.
        ip: Option<PathBuf>,
        /// `qemu-system-x86_64`.
        qemu: Option<PathBuf>,
        /// `firecracker`.
        firecracker: Option<PathBuf>,
        /// nftables' `nft`.
        nft: Option<PathBuf>,
    },
}

impl Programs {
    /// iproute2's `ip`.
    pub(crate) fn ip(&self) -> Result<Ip, NetError> {
        match self {
            Programs::Host => Ip::find(),
            Programs::Fixed { ip, .. } => ip.clone().map(Ip::new).ok_or(NetError::MissingIp),
        }
    }

    /// nftables' `nft`, if installed.
    pub(crate) fn nft(&self) -> Option<PathBuf> {
        match self {
            Programs::Host => banger_host::virt::find_program(banger_host::nat::NFT_PROGRAM),
            Programs::Fixed { nft, .. } => nft.clone(),
        }
    }

    /// (firecracker, qemu) as found.
    pub(crate) fn vmms(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        match self {
            Programs::Host => (
                banger_host::virt::find_program(vmm::firecracker::PROGRAM),
                banger_host::virt::find_program(vmm::qemu::PROGRAM),
            ),
            Programs::Fixed {
                qemu, firecracker, ..
            } => (firecracker.clone(), qemu.clone()),
        }
    }
}

/// The checked files of one VM start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFiles {
    /// The image's kernel.
    pub kernel: PathBuf,
    /// The image's initrd, if it has one.
    pub initrd: Option<PathBuf>,
    /// The VM's `rootfs.img`, when asked for.
    pub rootfs: Option<PathBuf>,
    /// The VM's `config.img`.
    pub config_disk: PathBuf,
    /// The VM's directory.
    pub vm_dir: PathBuf,
}

/// The VM's directory, held open, with its checked files.
struct CheckedVm {
    dir: Dir,
    files: VmFiles,
}

fn fs_error(e: FsError) -> VmError {
    if e.not_found {
        VmError::Missing(e)
    } else {
        VmError::Files(e)
    }
}

/// Checks the files of VM `id` under `state_dir` without following any symbolic link: the
/// image's kernel (and initrd, if present) are regular files, the VM's directory is a real
/// directory owned by `owner_uid` and holds `config.img` (and `rootfs.img` when asked for).
fn check_files(
    state_dir: &Path,
    id: &str,
    opts: &StartOptions,
    owner_uid: u32,
) -> Result<CheckedVm, VmError> {
    let state = Dir::open(state_dir).map_err(fs_error)?;
    let image = state
        .subdir("images")
        .and_then(|d| d.subdir(&opts.image))
        .map_err(|e| {
            if e.not_found {
                VmError::NoImage {
                    image: opts.image.clone(),
                    images: state.display_path("images").display().to_string(),
                    source: e,
                }
            } else {
                fs_error(e)
            }
        })?;
    let kernel = image.regular_file("kernel").map_err(fs_error)?;
    let initrd = image.optional_regular_file("initrd").map_err(fs_error)?;
    let dir = state
        .subdir("vms")
        .and_then(|d| d.subdir(id))
        .map_err(fs_error)?;
    let md = dir.metadata().map_err(fs_error)?;
    if md.uid() != owner_uid {
        return Err(VmError::NotOwners {
            dir: dir.path().display().to_string(),
            uid: md.uid(),
            owner: owner_uid,
        });
    }
    let config_disk = dir.regular_file(CONFIG_DISK).map_err(fs_error)?;
    let rootfs = if opts.rootfs {
        Some(dir.regular_file(ROOTFS).map_err(fs_error)?)
    } else {
        None
    };
    let files = VmFiles {
        kernel,
        initrd,
        rootfs,
        config_disk,
        vm_dir: dir.path().to_path_buf(),
    };
    Ok(CheckedVm { dir, files })
}

/// What the back end needs to boot VM `id`.
pub fn build_spec(
    id: &str,
    files: &VmFiles,
    opts: &StartOptions,
    accel: Accelerator,
    tsc_khz: u64,
) -> VmmSpec {
    VmmSpec {
        id: id.into(),
        kernel: files.kernel.clone(),
        initrd: files.initrd.clone(),
        rootfs: files.rootfs.clone(),
        config_disk: files.config_disk.clone(),
        cpus: opts.cpus,
        memory_mib: opts.memory_mib,
        tap: tap_name(id),
        mac: opts.mac.clone(),
        serial_log: files.vm_dir.join(SERIAL_LOG),
        vm_dir: files.vm_dir.clone(),
        accel,
        tsc_khz,
    }
}

/// The log files handed to the VMM, opened by the helper.
pub struct VmmLogs {
    /// `vmm.log`: the VMM's standard error.
    pub vmm: File,
    /// `serial.log`, when the console is the VMM's standard output.
    pub serial: Option<File>,
}

fn shared_fd(f: &File) -> std::io::Result<Arc<OwnedFd>> {
    Ok(Arc::new(OwnedFd::from(f.try_clone()?)))
}

/// The transient unit that runs `backend` for `spec` as `user`; when it ends, however it ends,
/// systemd removes the VM's tap as root with `ip` (the program at `ip`).
pub fn build_unit(
    spec: &VmmSpec,
    backend: &dyn Backend,
    user: &str,
    logs: &VmmLogs,
    ip: &Path,
) -> std::io::Result<TransientService> {
    Ok(TransientService {
        name: unit_name(&spec.id),
        description: format!("banger VM {} ({})", spec.id, backend.kind()),
        argv: backend.argv(spec),
        slice: Some(names::VM_SLICE.into()),
        user: Some(user.into()),
        environment: Vec::new(),
        service_type: Some("exec".into()),
        supplementary_groups: match spec.accel {
            Accelerator::Kvm { .. } => vec![super::kvm::KVM_GROUP.into()],
            Accelerator::Tcg { .. } => Vec::new(),
        },
        stdout_fd: logs.serial.as_ref().map(shared_fd).transpose()?,
        stderr_fd: Some(shared_fd(&logs.vmm)?),
        // A VMM that crashed stays visible as `failed` until the VM is started, stopped or
        // removed (each resets it).
        keep_failed: true,
        // A guest that powers off, or a VMM that dies, leaves no tap behind.
        stop_post_as_root: Some(vec![
            ip.display().to_string(),
            "link".into(),
            "delete".into(),
            "dev".into(),
            spec.tap.clone(),
        ]),
        properties: super::sandbox::vm_sandbox(spec),
    })
}

/// Whether a unit in `active_state` counts as running (or about to).
fn is_running(active_state: &str) -> bool {
    matches!(
        active_state,
        "active" | "activating" | "reloading" | "deactivating" | "refreshing"
    )
}

/// VM plumbing on this host.
pub struct VmHost {
    systemd: Systemd,
    paths: VmPaths,
    programs: Programs,
    accelerator: Option<Accelerator>,
    kvm: Option<super::kvm::KvmAccess>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serializes setting up and releasing outbound network.
    nat_lock: tokio::sync::Mutex<()>,
    /// VM starts under way (network set up, unit not running yet).
    starting: Arc<AtomicUsize>,
    /// How long a VMM may take to open its API socket, and each API request.
    pub api_timeout: Duration,
    /// How long a started VMM must stay up before the start counts as a success.
    pub settle: Duration,
}

impl VmHost {
    /// VM plumbing asking `systemd`, with files at `paths`, finding programs on the host.
    pub fn new(systemd: Systemd, paths: VmPaths) -> Self {
        VmHost {
            systemd,
            paths,
            programs: Programs::Host,
            accelerator: None,
            kvm: None,
            locks: Mutex::new(HashMap::new()),
            nat_lock: tokio::sync::Mutex::new(()),
            starting: Arc::new(AtomicUsize::new(0)),
            api_timeout: Duration::from_secs(5),
            settle: Duration::from_millis(300),
        }
    }

    /// Uses `programs` instead of looking them up on the host (tests).
    pub fn with_programs(mut self, programs: Programs) -> Self {
        self.programs = programs;
        self
    }

    /// Uses `accel` instead of detecting the host's accelerator (tests).
    pub fn with_accelerator(mut self, accel: Accelerator) -> Self {
        self.accelerator = Some(accel);
        self
    }

    /// Uses `kvm` (a device and a group id) instead of this host's `/dev/kvm` and `kvm` group
    /// (tests).
    pub fn with_kvm(mut self, kvm: super::kvm::KvmAccess) -> Self {
        self.kvm = Some(kvm);
        self
    }

    /// Whether a VMM could open `/dev/kvm`, as [`super::kvm::KvmAccess::check`] says.
    pub(crate) fn kvm_access(&self) -> Result<String, String> {
        self.kvm
            .clone()
            .unwrap_or_else(super::kvm::KvmAccess::detect)
            .check()
    }

    /// The accelerator VMs get: the override, else what this host offers.
    pub(crate) fn accelerator(&self) -> Accelerator {
        self.accelerator.clone().unwrap_or_else(Accelerator::detect)
    }

    /// The paths in use.
    pub fn paths(&self) -> &VmPaths {
        &self.paths
    }

    pub(crate) fn programs(&self) -> &Programs {
        &self.programs
    }

    /// Serializes operations on one VM (a start and a stop of the same id never interleave).
    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(id.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    fn ip(&self) -> Result<Ip, NetError> {
        self.programs.ip()
    }

    /// Outbound network on this host.
    pub(crate) fn nat(&self) -> Nat {
        Nat {
            nft: self.programs.nft(),
            record: self.paths.nat_record.clone(),
            ipv4_conf: self.paths.ipv4_conf.clone(),
        }
    }

    /// Routes the VM domain to the VMs' resolver on the bridge in systemd-resolved, where it
    /// runs, so the host resolves `<vm>.banger.internal`. Failures are logged only.
    async fn register_vm_domain(&self, net: &NetworkConfig) {
        let Some(ifindex) = banger_host::resolved::ifindex(&net.bridge) else {
            return;
        };
        match banger_host::resolved::register_link(
            self.systemd.connection(),
            ifindex,
            net.host_address(),
            names::VM_DNS_DOMAIN,
        )
        .await
        {
            Ok(banger_host::resolved::Registered::Yes) => tracing::info!(
                bridge = net.bridge,
                domain = names::VM_DNS_DOMAIN,
                "VM domain routed to the bridge in systemd-resolved"
            ),
            Ok(banger_host::resolved::Registered::NoResolved) => {}
            Err(e) => tracing::warn!("telling systemd-resolved about the VM domain: {e}"),
        }
    }

    /// Follows the VM units: whenever one ends, however it ended (a stop, a crash, a guest that
    /// powered itself off), outbound network is released if no VM runs any more. Runs as long as
    /// the helper does.
    pub async fn follow_vm_units(self: Arc<Self>) {
        let ends = match self.systemd.unit_ends(names::VM_UNIT_PREFIX).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "not following VM units (outbound network is released at VM stops only): {e}"
                );
                return;
            }
        };
        let mut ends = std::pin::pin!(ends);
        while let Some(unit) = futures_util::StreamExt::next(&mut ends).await {
            tracing::debug!(unit, "a VM unit ended");
            self.release_network_if_idle().await;
        }
    }

    /// Whether any VM unit is running or on its way.
    async fn any_vm_running(&self) -> Result<bool, SystemdError> {
        Ok(self
            .systemd
            .units_matching(names::VM_UNIT_PATTERN)
            .await?
            .iter()
            .any(|(_, state)| matches!(state.as_str(), "active" | "activating" | "reloading")))
    }

    /// Releases outbound network when no VM runs any more: the table goes and the sysctls are
    /// put back. Errors are logged; nothing else depends on it. Safe to call any time.
    pub async fn release_network_if_idle(&self) {
        let _nat = self.nat_lock.lock().await;
        if self.starting.load(Ordering::SeqCst) > 0 {
            return;
        }
        match self.any_vm_running().await {
            Ok(true) => {}
            Ok(false) => match self.nat().release().await {
                Ok(done) if done.table || !done.restored.is_empty() => {
                    tracing::info!(?done, "no VM runs: outbound network released")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("releasing outbound network: {e}"),
            },
            Err(e) => tracing::warn!("listing VM units to release outbound network: {e}"),
        }
    }

    /// The root-owned configuration file this host reads.
    pub fn config_file(&self) -> &std::path::Path {
        &self.paths.config
    }

    /// The VM network from the configuration.
    pub fn network(&self) -> Result<NetworkConfig, VmError> {
        Ok(VmConfig::load(&self.paths.config)?.network)
    }

    /// Starts VM `id` with `opts`; returns its unit. Refused without touching anything when the
    /// unit is already running.
    pub async fn start_vmm(&self, id: &VmId, opts: &StartOptions) -> Result<Started, VmError> {
        let id = id.as_str();
        let _guard = self.lock(id).await;
        let unit = unit_name(id);
        let tap = tap_name(id);
        tracing::info!(vm_id = id, ?opts, "starting VM");
        let cfg = VmConfig::load(&self.paths.config)?;
        let owner = InstallMeta::read_trusted(&self.paths.install_toml)?.owner;

        let state = self
            .systemd
            .unit_state(&unit)
            .await
            .map_err(VmError::UnitState)?;
        if is_running(&state.active_state) {
            return Err(VmError::AlreadyRunning {
                id: id.into(),
                unit,
                state: state.active_state,
            });
        }

        let vm = check_files(&self.paths.state_dir, id, opts, owner.uid)?;
        tracing::info!(vm_id = id, files = ?vm.files, "files checked");

        let (firecracker, qemu) = self.programs.vmms();
        let accel = self.accelerator();
        if matches!(accel, Accelerator::Kvm { .. }) {
            self.kvm_access().map_err(VmError::Kvm)?;
        }
        let selection = vmm::select(cfg.backend, firecracker, qemu, &accel);
        let (Some(kind), Some(program)) = (selection.kind, selection.program.clone()) else {
            return Err(VmError::NoVmm(selection.why));
        };
        tracing::info!(vm_id = id, backend = %kind, why = %selection.why, "back end picked");
        tracing::info!(vm_id = id, ?accel, "accelerator detected");
        let backend = vmm::backend(kind, program);
        let spec = build_spec(id, &vm.files, opts, accel, vmm::host_tsc_khz());

        // Logs and the stale API socket are dealt with before the host changes.
        let logs = VmmLogs {
            vmm: vm
                .dir
                .open_log(VMM_LOG, owner.uid, owner.gid)
                .map_err(fs_error)?,
            serial: if backend.console_on_stdout() {
                Some(
                    vm.dir
                        .open_log(SERIAL_LOG, owner.uid, owner.gid)
                        .map_err(fs_error)?,
                )
            } else {
                None
            },
        };
        let socket_name = match backend.api_socket(&spec) {
            Some(sock) => {
                let name = api_socket_name(&sock, &spec.vm_dir)?;
                vm.dir.remove(&name).map_err(fs_error)?;
                Some(name)
            }
            None => None,
        };
        // The guest agent's socket is made by the VMM, which (Firecracker) refuses to start
        // where one is left from an earlier run.
        vm.dir.remove(banger_agent::HOST_SOCKET).map_err(fs_error)?;

        let ip = self.ip().map_err(VmError::Ip)?;
        ip.ensure_bridge(&cfg.network)
            .await
            .map_err(VmError::Bridge)?;
        tracing::info!(vm_id = id, bridge = %cfg.network.bridge, "bridge ready");
        self.register_vm_domain(&cfg.network).await;
        // Counted until the unit runs or is undone, so a concurrent last stop does not release
        // the network under this start.
        let starting = Starting::new(&self.starting);
        if cfg.network.nat {
            let _nat = self.nat_lock.lock().await;
            match self.nat().apply(&ip, &cfg.network).await {
                Ok(plan) => {
                    tracing::info!(vm_id = id, uplink = plan.uplink, "outbound network ready")
                }
                // The VM still reaches the host; doctor says why it reaches nothing else.
                Err(e) => tracing::warn!(vm_id = id, "no outbound network for VMs: {e}"),
            }
        }
        ip.create_tap(&tap, owner.uid, &cfg.network.bridge, cfg.network.isolate)
            .await
            .map_err(|source| VmError::Tap {
                tap: tap.clone(),
                source,
            })?;
        tracing::info!(vm_id = id, tap, "tap ready");

        let launched = self
            .launch(
                &spec,
                backend.as_ref(),
                &owner,
                &vm.dir,
                socket_name.as_deref(),
                &logs,
            )
            .await;
        match launched {
            Ok(()) => {
                tracing::info!(vm_id = id, unit, "VM started");
                Ok(Started {
                    unit,
                    backend: kind,
                })
            }
            Err(why) => {
                let e = self.undo_start(id, &ip, why).await;
                drop(starting);
                self.release_network_if_idle().await;
                Err(e)
            }
        }
    }

    /// Starts the unit and sees it through its first moments.
    async fn launch(
        &self,
        spec: &VmmSpec,
        backend: &dyn Backend,
        owner: &Owner,
        dir: &Dir,
        socket_name: Option<&str>,
        logs: &VmmLogs,
    ) -> Result<(), String> {
        let unit = unit_name(&spec.id);
        let ip = self.ip().map_err(|e| e.to_string())?;
        let svc = build_unit(spec, backend, &owner.user, logs, ip.program())
            .map_err(|e| format!("passing the log files on: {e}"))?;
        self.systemd.reset_failed(&unit).await;
        tracing::info!(vm_id = spec.id, unit, argv = ?svc.argv, "starting the VMM unit");
        self.systemd.start_transient(&svc).await.map_err(|e| {
            format!(
                "{e}{}",
                exit_note(&logs.vmm)
                    .map(|t| format!(": {t}"))
                    .unwrap_or_default()
            )
        })?;
        if let Some(name) = socket_name {
            let shown = dir.display_path(name);
            let pinned = self
                .wait_for_socket_file(&unit, dir, name, owner.uid, logs)
                .await?;
            let via = safefs::fd_path(&pinned);
            tracing::info!(vm_id = spec.id, socket = %shown.display(), "configuring the VM over its API");
            let requests = backend.setup_requests(spec);
            let configured = async {
                vmm::api::wait_for_socket(&via, self.api_timeout).await?;
                vmm::api::send_all(&via, &requests, self.api_timeout).await
            };
            configured.await.map_err(|e| {
                format!(
                    "configuring the VM through {}: {e}{}",
                    shown.display(),
                    exit_note(&logs.vmm)
                        .map(|t| format!("; the VMM said: {t}"))
                        .unwrap_or_default()
                )
            })?;
        }
        tokio::time::sleep(self.settle).await;
        let state = self
            .systemd
            .unit_state(&unit)
            .await
            .map_err(|e| e.to_string())?;
        if state.active_state != "active" {
            return Err(format!(
                "the VMM exited at once: {}",
                exit_note(&logs.vmm)
                    .unwrap_or_else(|| format!("{} is empty (see: journalctl -u {unit})", VMM_LOG))
            ));
        }
        Ok(())
    }

    /// Waits until the VMM has created its API socket and pins it (see `safefs::Dir::pin_socket`).
    async fn wait_for_socket_file(
        &self,
        unit: &str,
        dir: &Dir,
        name: &str,
        uid: u32,
        logs: &VmmLogs,
    ) -> Result<File, String> {
        let start = Instant::now();
        let mut last_check = start;
        loop {
            if let Some(f) = dir.pin_socket(name, uid).map_err(|e| e.to_string())? {
                return Ok(f);
            }
            if start.elapsed() > self.api_timeout {
                return Err(format!(
                    "the VMM did not create {} within {} s",
                    dir.display_path(name).display(),
                    self.api_timeout.as_secs()
                ));
            }
            if last_check.elapsed() > Duration::from_millis(200) {
                last_check = Instant::now();
                let state = self
                    .systemd
                    .unit_state(unit)
                    .await
                    .map_err(|e| e.to_string())?;
                if !is_running(&state.active_state) {
                    return Err(format!(
                        "the VMM exited at once: {}",
                        exit_note(&logs.vmm).unwrap_or_else(|| format!("{VMM_LOG} is empty"))
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the unit (if any) and removes the tap after a failed start; the error says what
    /// failed and what is left.
    async fn undo_start(&self, id: &str, ip: &Ip, why: String) -> VmError {
        let unit = unit_name(id);
        let tap = tap_name(id);
        tracing::warn!(vm_id = id, "starting VM failed, undoing: {why}");
        let mut left = Vec::new();
        if let Err(e) = self.stop_unit(&unit).await {
            left.push(format!("stopping {unit}: {e}"));
        }
        self.systemd.reset_failed(&unit).await;
        if let Err(e) = ip.delete_tap(&tap).await {
            left.push(format!("removing tap {tap}: {e}"));
        }
        let id = id.to_string();
        if left.is_empty() {
            VmError::StartUndone { id, why, unit, tap }
        } else {
            VmError::StartLeftOvers {
                id,
                why,
                left: left.join("; "),
                unit,
                tap,
            }
        }
    }

    /// Stops `unit` and waits for it; a unit systemd does not know counts as stopped. Returns
    /// whether there was a unit.
    async fn stop_unit(&self, unit: &str) -> Result<bool, SystemdError> {
        match self.systemd.run_job(JobKind::Stop, unit).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_no_such_unit() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stops VM `id` and removes its tap. Safe to repeat.
    pub async fn stop_vmm(&self, id: &VmId) -> Result<(), VmError> {
        let id = id.as_str();
        let _guard = self.lock(id).await;
        let unit = unit_name(id);
        let tap = tap_name(id);
        tracing::info!(vm_id = id, unit, "stopping VM");
        let had_unit = self
            .stop_unit(&unit)
            .await
            .map_err(|source| VmError::StopUnit {
                source,
                tap: tap.clone(),
            })?;
        self.systemd.reset_failed(&unit).await;
        tracing::info!(vm_id = id, unit, had_unit, "VMM unit stopped");
        let ip = self.ip().map_err(|source| VmError::StopIp {
            unit: unit.clone(),
            source,
        })?;
        let had_tap = ip
            .delete_tap(&tap)
            .await
            .map_err(|source| VmError::StopTap {
                unit: unit.clone(),
                tap: tap.clone(),
                source,
            })?;
        tracing::info!(vm_id = id, tap, had_tap, "VM stopped");
        self.release_network_if_idle().await;
        Ok(())
    }
}

/// One VM start under way, counted while it lives.
struct Starting(Arc<AtomicUsize>);

impl Starting {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Starting(count.clone())
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The API socket's file name, which must lie directly in the VM's directory.
fn api_socket_name(sock: &Path, vm_dir: &Path) -> Result<String, VmError> {
    match (sock.parent(), sock.file_name().and_then(|n| n.to_str())) {
        (Some(parent), Some(name)) if parent == vm_dir => Ok(name.to_string()),
        _ => Err(VmError::ApiSocket {
            socket: sock.display().to_string(),
            dir: vm_dir.display().to_string(),
        }),
    }
}

/// The last lines of the VMM's log, if it wrote any.
fn exit_note(vmm_log: &File) -> Option<String> {
    let t = safefs::tail(vmm_log, 2048, 8);
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    const ID: &str = "0123456789ab";

    fn opts(rootfs: bool) -> StartOptions {
        StartOptions {
            image: "deb".into(),
            rootfs,
            cpus: 2,
            memory_mib: 512,
            mac: "52:54:00:67:89:ab".into(),
        }
    }

    fn tcg() -> Accelerator {
        Accelerator::Tcg { why: "test".into() }
    }

    /// A state directory with image `deb` and VM `ID` owned by `uid`.
    fn state(uid: u32) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("images/deb");
        std::fs::create_dir_all(&img).unwrap();
        std::fs::write(img.join("kernel"), "k").unwrap();
        let vm = t.path().join("vms").join(ID);
        std::fs::create_dir_all(&vm).unwrap();
        std::fs::write(vm.join(CONFIG_DISK), "c").unwrap();
        std::os::unix::fs::chown(&vm, Some(uid), None).unwrap();
        t
    }

    #[test]
    fn paths_follow_the_layout() {
        let mut l = Layout::new("/usr/local");
        l.root = "/tmp/x".into();
        let p = VmPaths::from_layout(&l);
        assert_eq!(p.state_dir, Path::new("/tmp/x/var/lib/banger"));
        assert_eq!(p.config, Path::new("/tmp/x/etc/banger/config.toml"));
        assert_eq!(p.install_toml, Path::new("/tmp/x/etc/banger/install.toml"));
        assert_eq!(
            VmPaths::from_layout(&Layout::new("/usr/local")).config,
            Path::new(CONFIG_FILE)
        );
    }

    #[test]
    fn files_are_checked_without_following_links() {
        if banger_host::users::current_uid() != 0 {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let t = state(4321);
        let vm = check_files(t.path(), ID, &opts(false), 4321).unwrap();
        let dir = t.path().join("vms").join(ID);
        assert_eq!(
            vm.files,
            VmFiles {
                kernel: t.path().join("images/deb/kernel"),
                initrd: None,
                rootfs: None,
                config_disk: dir.join(CONFIG_DISK),
                vm_dir: dir.clone(),
            }
        );
        std::fs::write(t.path().join("images/deb/initrd"), "i").unwrap();
        let vm = check_files(t.path(), ID, &opts(false), 4321).unwrap();
        assert_eq!(vm.files.initrd, Some(t.path().join("images/deb/initrd")));

        // rootfs asked for but missing: NotFound naming it.
        let e = check_files(t.path(), ID, &opts(true), 4321).err().unwrap();
        assert!(
            matches!(&e, VmError::Missing(m) if m.path.ends_with("rootfs.img")),
            "{e}"
        );
        std::fs::write(dir.join(ROOTFS), "r").unwrap();
        let vm = check_files(t.path(), ID, &opts(true), 4321).unwrap();
        assert_eq!(vm.files.rootfs, Some(dir.join(ROOTFS)));

        // The VM directory must be the owner's.
        let e = check_files(t.path(), ID, &opts(false), 1000).err().unwrap();
        assert!(e.to_string().contains("belongs to uid 4321"), "{e}");

        // Links are refused wherever they are.
        std::fs::remove_file(dir.join(CONFIG_DISK)).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.join(CONFIG_DISK)).unwrap();
        let e = check_files(t.path(), ID, &opts(false), 4321).err().unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(t.path().join("images/deb/kernel")).unwrap();
        std::os::unix::fs::symlink("/boot/vmlinuz", t.path().join("images/deb/kernel")).unwrap();
        let e = check_files(t.path(), ID, &opts(false), 4321).err().unwrap();
        assert!(e.to_string().contains("images/deb/kernel"), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");

        // A missing image or VM is NotFound.
        std::fs::remove_file(t.path().join("images/deb/kernel")).unwrap();
        std::fs::write(t.path().join("images/deb/kernel"), "k").unwrap();
        let mut o = opts(false);
        o.image = "other".into();
        let e = check_files(t.path(), ID, &o, 4321).err().unwrap();
        assert!(
            matches!(&e, VmError::NoImage { image, .. } if image == "other"),
            "{e}"
        );
        let e = check_files(t.path(), "ffffffffffff", &opts(false), 4321)
            .err()
            .unwrap();
        assert!(matches!(e, VmError::Missing(_)), "{e}");
    }

    #[test]
    fn spec_and_unit_for_qemu_under_tcg() {
        let files = VmFiles {
            kernel: "/s/images/deb/kernel".into(),
            initrd: Some("/s/images/deb/initrd".into()),
            rootfs: Some("/s/vms/0123456789ab/rootfs.img".into()),
            config_disk: "/s/vms/0123456789ab/config.img".into(),
            vm_dir: "/s/vms/0123456789ab".into(),
        };
        let spec = build_spec(ID, &files, &opts(true), tcg(), 2_000_000);
        assert_eq!(spec.tap, "bt-0123456789ab");
        assert_eq!(spec.serial_log, Path::new("/s/vms/0123456789ab/serial.log"));
        assert_eq!((spec.cpus, spec.memory_mib), (2, 512));
        assert_eq!(spec.mac, "52:54:00:67:89:ab");
        assert_eq!(spec.rootfs, files.rootfs);

        let t = tempfile::tempdir().unwrap();
        let logs = VmmLogs {
            vmm: File::create(t.path().join("vmm.log")).unwrap(),
            serial: None,
        };
        let qemu = vmm::backend(vmm::BackendKind::Qemu, "/usr/bin/qemu-system-x86_64".into());
        let svc = build_unit(
            &spec,
            qemu.as_ref(),
            "alice",
            &logs,
            Path::new("/usr/sbin/ip"),
        )
        .unwrap();
        assert_eq!(svc.name, "banger-vm-0123456789ab.service");
        assert_eq!(svc.description, "banger VM 0123456789ab (qemu)");
        assert_eq!(svc.slice.as_deref(), Some("banger.slice"));
        assert_eq!(svc.user.as_deref(), Some("alice"));
        assert_eq!(svc.service_type.as_deref(), Some("exec"));
        assert_eq!(
            svc.stop_post_as_root.as_deref(),
            Some(
                &[
                    "/usr/sbin/ip".to_string(),
                    "link".into(),
                    "delete".into(),
                    "dev".into(),
                    "bt-0123456789ab".into()
                ][..]
            ),
            "the tap goes with the unit, however it ends"
        );
        assert!(
            svc.supplementary_groups.is_empty(),
            "no kvm group under TCG"
        );
        assert!(svc.stdout_fd.is_none(), "QEMU writes the console itself");
        let err = svc.stderr_fd.as_ref().unwrap();
        assert_ne!(
            err.as_raw_fd(),
            logs.vmm.as_raw_fd(),
            "a duplicate is passed"
        );
        assert_eq!(svc.argv[0], "/usr/bin/qemu-system-x86_64");
        assert!(
            svc.argv
                .iter()
                .any(|a| a.contains("ifname=bt-0123456789ab"))
        );
    }

    #[test]
    fn unit_for_firecracker_under_kvm_sends_the_console_to_serial_log() {
        let files = VmFiles {
            kernel: "/s/images/deb/kernel".into(),
            initrd: None,
            rootfs: None,
            config_disk: "/s/vms/0123456789ab/config.img".into(),
            vm_dir: "/s/vms/0123456789ab".into(),
        };
        let kvm = Accelerator::Kvm {
            cpu_flag: "vmx".into(),
        };
        let spec = build_spec(ID, &files, &opts(false), kvm, 0);
        let t = tempfile::tempdir().unwrap();
        let mut serial = File::create(t.path().join("serial.log")).unwrap();
        let logs = VmmLogs {
            vmm: File::create(t.path().join("vmm.log")).unwrap(),
            serial: Some(serial.try_clone().unwrap()),
        };
        let fc = vmm::backend(
            vmm::BackendKind::Firecracker,
            "/usr/local/bin/firecracker".into(),
        );
        let svc = build_unit(
            &spec,
            fc.as_ref(),
            "alice",
            &logs,
            Path::new("/usr/sbin/ip"),
        )
        .unwrap();
        assert_eq!(svc.description, "banger VM 0123456789ab (firecracker)");
        assert_eq!(svc.supplementary_groups, ["kvm"]);
        // The passed descriptor is the same open file.
        let out = svc.stdout_fd.unwrap();
        let mut dup = File::from(out.try_clone().unwrap());
        dup.write_all(b"console").unwrap();
        serial.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("serial.log")).unwrap(),
            "console"
        );
        let sock = fc.api_socket(&spec).unwrap();
        assert_eq!(
            api_socket_name(&sock, &spec.vm_dir).unwrap(),
            "firecracker.sock"
        );
        assert!(api_socket_name(Path::new("/elsewhere/x.sock"), &spec.vm_dir).is_err());
    }

    #[test]
    fn running_states_and_errors() {
        for s in ["active", "activating", "deactivating", "reloading"] {
            assert!(is_running(s), "{s}");
        }
        for s in ["inactive", "failed", ""] {
            assert!(!is_running(s), "{s}");
        }
        let e = SystemdError::Call {
            what: "stop x".into(),
            source: zbus::Error::MethodError(
                zbus::names::OwnedErrorName::try_from("org.freedesktop.systemd1.NoSuchUnit")
                    .unwrap(),
                Some("Unit x not loaded.".into()),
                zbus::message::Message::method_call("/", "Ping")
                    .build(&())
                    .unwrap(),
            ),
        };
        assert!(e.is_no_such_unit());
        assert!(
            !SystemdError::RelativeCommand {
                what: "x".into(),
                which: "command",
                argv: vec![],
            }
            .is_no_such_unit()
        );
    }
}
