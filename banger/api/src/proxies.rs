//! Client proxies for banger's own services. The checked-in introspection XML in `dbus/` is the
//! contract; these traits mirror it.

use crate::wire::{
    DoctorCheck, GuestInfo, GuestPort, ImageInfo, OperationInfo, ServiceStatus, SshTarget, VmInfo,
};

/// The root helper, `org.banger.Root1`.
#[zbus::proxy(
    interface = "org.banger.Root1",
    default_service = "org.banger.Root1",
    default_path = "/org/banger/Root1"
)]
pub trait Root1 {
    /// Version of the running helper.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// Major version of the D-Bus API.
    #[zbus(property)]
    fn api_version(&self) -> zbus::Result<u32>;
    /// Version recorded in `/etc/banger/install.toml`.
    #[zbus(property)]
    fn installed_version(&self) -> zbus::Result<String>;
    /// Login name of the install's owner.
    #[zbus(property)]
    fn owner(&self) -> zbus::Result<String>;
    /// State of banger's systemd units.
    fn get_service_status(&self) -> zbus::Result<Vec<ServiceStatus>>;
    /// Starts `bangerd.service` (polkit `org.banger.daemon.manage`).
    fn start_daemon(&self) -> zbus::Result<()>;
    /// Stops `bangerd.service` (polkit `org.banger.daemon.manage`).
    fn stop_daemon(&self) -> zbus::Result<()>;
    /// Restarts `bangerd.service` (polkit `org.banger.daemon.manage`).
    fn restart_daemon(&self) -> zbus::Result<()>;
    /// `idle`, or the active update job's stage.
    #[zbus(property)]
    fn update_state(&self) -> zbus::Result<String>;
    /// The active update job, `/` when none.
    #[zbus(property)]
    fn active_job(&self) -> zbus::Result<zbus::OwnedObjectPath>;
    /// (current, latest, available) from the signed manifest (polkit `org.banger.update.check`).
    fn check_for_update(&self) -> zbus::Result<(String, String, bool)>;
    /// Starts an update job; options `version` (s), `dry_run` (b), `force` (b),
    /// `allow_downgrade` (b). Returns at once with the job's path.
    fn update(
        &self,
        options: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<zbus::OwnedObjectPath>;
    /// The VM network: (bridge, subnet in CIDR form, host address on the bridge).
    fn get_vm_network(&self) -> zbus::Result<(String, String, String)>;
    /// Where image catalogs come from (`[catalog]` of the root-owned configuration).
    fn get_catalog_settings(&self) -> zbus::Result<crate::wire::CatalogSettings>;
    /// Starts a VM's VMM as the transient unit `banger-vm-<id>.service` (owner's daemon, or
    /// polkit `org.banger.vm.manage`); options `image` (s), `rootfs` (b), `cpus` (u),
    /// `memory_mib` (u), `mac` (s). Returns the unit name.
    fn start_vmm(
        &self,
        id: &str,
        options: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<String>;
    /// As `start_vmm`, answering what the daemon records about the VM: `unit` (s) and
    /// `backend` (s); read it with [`crate::options::VmmStarted::from_dict`].
    fn start_vmm_with_info(
        &self,
        id: &str,
        options: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<std::collections::HashMap<String, zbus::OwnedVariant>>;
    /// Stops a VM's unit and removes its tap (same authorization as `start_vmm`).
    fn stop_vmm(&self, id: &str) -> zbus::Result<()>;
    /// Back end, accelerator and network checks for `banger doctor`.
    fn vmm_doctor(&self) -> zbus::Result<Vec<DoctorCheck>>;
    /// A job was created.
    #[zbus(signal)]
    fn job_new(&self, id: u32, job: zbus::OwnedObjectPath) -> zbus::Result<()>;
    /// A job finished (`result` as in `Job.Result`).
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: zbus::OwnedObjectPath, result: String) -> zbus::Result<()>;
}

/// An update job of the root helper, `/org/banger/Root1/job/<id>`.
#[zbus::proxy(
    interface = "org.banger.Root1.Job",
    default_service = "org.banger.Root1"
)]
pub trait Job {
    /// Job id.
    #[zbus(property)]
    fn id(&self) -> zbus::Result<u32>;
    /// `update`.
    #[zbus(property)]
    fn kind(&self) -> zbus::Result<String>;
    /// `running` or `finished`.
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// Current stage (see docs/update-protocol.md).
    #[zbus(property)]
    fn stage(&self) -> zbus::Result<String>;
    /// 0..1.
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<f64>;
    /// Bytes downloaded so far.
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    /// Bytes to download.
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    /// Version being installed.
    #[zbus(property)]
    fn target_version(&self) -> zbus::Result<String>;
    /// Version installed when the job started.
    #[zbus(property)]
    fn from_version(&self) -> zbus::Result<String>;
    /// "" while running; then updated, up-to-date, dry-run, rolled-back, failed or canceled.
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    /// "" or why it failed.
    #[zbus(property)]
    fn error(&self) -> zbus::Result<String>;
    /// Cancels the job before the point of no return.
    fn cancel(&self) -> zbus::Result<()>;
    /// The job ended.
    #[zbus(signal)]
    fn finished(&self, success: bool, result: String, error: String) -> zbus::Result<()>;
}

/// The owner daemon, `org.banger.Daemon1`.
#[zbus::proxy(
    interface = "org.banger.Daemon1",
    default_service = "org.banger.Daemon1",
    default_path = "/org/banger/Daemon1"
)]
pub trait Daemon1 {
    /// Version of the running daemon.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// Whether the daemon has opened its store and is serving.
    #[zbus(property)]
    fn ready(&self) -> zbus::Result<bool>;
    /// Operations in flight and recently finished. Never starts the daemon: one that is not
    /// running has nothing in flight (the caller sees `ServiceUnknown` or `NameHasNoOwner`).
    #[zbus(no_autostart)]
    fn list_operations(&self) -> zbus::Result<Vec<OperationInfo>>;
    /// The daemon's own health checks.
    fn doctor(&self) -> zbus::Result<Vec<DoctorCheck>>;
    /// Holds an "inhibit" operation (updates wait for it) until `uninhibit` or until this
    /// connection leaves the bus; returns its id.
    fn inhibit(&self, why: &str) -> zbus::Result<String>;
    /// Ends an inhibit operation.
    fn uninhibit(&self, id: &str) -> zbus::Result<()>;
    /// Copies an image's files into the store, hashing them; "" for an absent initrd/rootfs.
    fn import_image(
        &self,
        name: &str,
        kernel: &str,
        initrd: &str,
        rootfs: &str,
    ) -> zbus::Result<ImageInfo>;
    /// Every image.
    fn list_images(&self) -> zbus::Result<Vec<ImageInfo>>;
    /// Removes an image no VM uses.
    fn delete_image(&self, name: &str) -> zbus::Result<()>;
    /// Creates a stopped VM.
    fn create_vm(
        &self,
        name: &str,
        image: &str,
        cpus: u32,
        memory_mib: u32,
    ) -> zbus::Result<VmInfo>;
    /// Starts a VM (its VMM becomes the unit `banger-vm-<id>.service`).
    fn start_vm(&self, name: &str) -> zbus::Result<VmInfo>;
    /// Stops a VM.
    fn stop_vm(&self, name: &str) -> zbus::Result<VmInfo>;
    /// Deletes a stopped VM and its files.
    fn delete_vm(&self, name: &str) -> zbus::Result<()>;
    /// Every VM, with its state read from systemd.
    fn list_vms(&self) -> zbus::Result<Vec<VmInfo>>;
    /// One VM.
    fn get_vm(&self, name: &str) -> zbus::Result<VmInfo>;
    /// A running VM's guest as its agent reports it.
    fn get_guest_info(&self, name: &str) -> zbus::Result<GuestInfo>;
    /// The sockets listening in a running VM's guest, as its agent reports them.
    fn get_guest_ports(&self, name: &str) -> zbus::Result<Vec<GuestPort>>;
    /// How to reach a VM over SSH.
    fn get_ssh_target(&self, name: &str) -> zbus::Result<SshTarget>;
    /// Pins the guest's SSH host key on first contact; refused if a different one is pinned.
    fn pin_host_key(&self, name: &str, host_key: &str) -> zbus::Result<()>;
    /// Reads the serial console log from `offset` (negative: the last -offset bytes); returns
    /// the bytes and the offset to continue from.
    fn read_vm_log(&self, name: &str, offset: i64) -> zbus::Result<(Vec<u8>, u64)>;
    /// Starts a pull of `reference` from the configured catalog as image `name` ("" for the
    /// entry's name); answers the path of the job doing it.
    fn pull_image(&self, reference: &str, name: &str) -> zbus::Result<zbus::OwnedObjectPath>;
    /// PullImage with options (`kernel`: the image an OCI image boots with); `reference` may
    /// be an OCI image, `oci://…` or `docker://…`.
    fn pull_image_with(
        &self,
        reference: &str,
        name: &str,
        options: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<zbus::OwnedObjectPath>;
    /// What the configured catalog offers.
    fn list_catalog(&self) -> zbus::Result<Vec<crate::wire::CatalogEntryInfo>>;
}

/// A VM of the owner daemon, `/org/banger/Daemon1/vm/<id>` (see [`crate::names::daemon_vm_path`]).
#[zbus::proxy(
    interface = "org.banger.Daemon1.Vm",
    default_service = "org.banger.Daemon1"
)]
pub trait DaemonVm {
    /// 12 hex digits.
    #[zbus(property, name = "Id")]
    fn id(&self) -> zbus::Result<String>;
    /// The VM's name.
    #[zbus(property, name = "Name")]
    fn name(&self) -> zbus::Result<String>;
    /// The image it was made from.
    #[zbus(property, name = "Image")]
    fn image(&self) -> zbus::Result<String>;
    /// Virtual CPUs.
    #[zbus(property, name = "Cpus")]
    fn cpus(&self) -> zbus::Result<u32>;
    /// Memory in MiB.
    #[zbus(property, name = "MemoryMiB")]
    fn memory_mib(&self) -> zbus::Result<u32>;
    /// A [`crate::wire::VmState`] word.
    #[zbus(property, name = "State")]
    fn state(&self) -> zbus::Result<String>;
    /// The guest's IPv4 address.
    #[zbus(property, name = "Address")]
    fn address(&self) -> zbus::Result<String>;
    /// `qemu`, `firecracker` or "".
    #[zbus(property, name = "Backend")]
    fn backend(&self) -> zbus::Result<String>;
    /// `banger-vm-<id>.service`.
    #[zbus(property, name = "Unit")]
    fn unit(&self) -> zbus::Result<String>;
    /// Unix seconds.
    #[zbus(property, name = "CreatedAt")]
    fn created_at(&self) -> zbus::Result<i64>;
    /// The pinned SSH host key, or "".
    #[zbus(property, name = "HostKey")]
    fn host_key(&self) -> zbus::Result<String>;
    /// Starts the VM.
    fn start(&self) -> zbus::Result<()>;
    /// Stops the VM.
    fn stop(&self) -> zbus::Result<()>;
    /// Deletes the stopped VM.
    fn delete(&self) -> zbus::Result<()>;
}

/// An image of the owner daemon, `/org/banger/Daemon1/image/<escaped name>` (see
/// [`crate::names::daemon_image_path`]).
#[zbus::proxy(
    interface = "org.banger.Daemon1.Image",
    default_service = "org.banger.Daemon1"
)]
pub trait DaemonImage {
    /// The image's name.
    #[zbus(property, name = "Name")]
    fn name(&self) -> zbus::Result<String>;
    /// Bytes stored.
    #[zbus(property, name = "Bytes")]
    fn bytes(&self) -> zbus::Result<u64>;
    /// SHA-256 of the kernel.
    #[zbus(property, name = "KernelSha256")]
    fn kernel_sha256(&self) -> zbus::Result<String>;
    /// SHA-256 of the initrd, or "".
    #[zbus(property, name = "InitrdSha256")]
    fn initrd_sha256(&self) -> zbus::Result<String>;
    /// SHA-256 of the root filesystem, or "".
    #[zbus(property, name = "RootfsSha256")]
    fn rootfs_sha256(&self) -> zbus::Result<String>;
    /// Unix seconds.
    #[zbus(property, name = "CreatedAt")]
    fn created_at(&self) -> zbus::Result<i64>;
    /// The VMs made from it.
    #[zbus(property, name = "UsedBy")]
    fn used_by(&self) -> zbus::Result<Vec<String>>;
    /// Deletes the image.
    fn delete(&self) -> zbus::Result<()>;
}

/// The proxy of a job of the owner daemon (its signal types are named as Root1.Job's, so they
/// live here).
pub mod daemon_job {
    /// A job of the owner daemon (an image pull), `/org/banger/Daemon1/job/<id>`.
    #[zbus::proxy(
        interface = "org.banger.Daemon1.Job",
        default_service = "org.banger.Daemon1"
    )]
    pub trait DaemonJob {
        /// Job id.
        #[zbus(property)]
        fn id(&self) -> zbus::Result<u32>;
        /// `image-pull`.
        #[zbus(property)]
        fn kind(&self) -> zbus::Result<String>;
        /// What it was asked to do.
        #[zbus(property)]
        fn description(&self) -> zbus::Result<String>;
        /// `running` or `finished`.
        #[zbus(property)]
        fn state(&self) -> zbus::Result<String>;
        /// What it does now (a [`crate::job::PullStage`] for a pull).
        #[zbus(property)]
        fn stage(&self) -> zbus::Result<String>;
        /// 0..1.
        #[zbus(property)]
        fn progress(&self) -> zbus::Result<f64>;
        /// Bytes of the current stage done.
        #[zbus(property)]
        fn bytes_done(&self) -> zbus::Result<u64>;
        /// Bytes of the current stage in all.
        #[zbus(property)]
        fn bytes_total(&self) -> zbus::Result<u64>;
        /// "" while running; then done, failed or canceled.
        #[zbus(property)]
        fn result(&self) -> zbus::Result<String>;
        /// "" or why it failed.
        #[zbus(property)]
        fn error(&self) -> zbus::Result<String>;
        /// What it made (the image's name).
        #[zbus(property)]
        fn image(&self) -> zbus::Result<String>;
        /// Asks the job to stop.
        fn cancel(&self) -> zbus::Result<()>;
        /// The job ended.
        #[zbus(signal)]
        fn finished(&self, success: bool, result: String, error: String) -> zbus::Result<()>;
    }
}

pub use daemon_job::DaemonJobProxy;
