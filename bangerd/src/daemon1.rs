//! `org.banger.Daemon1`: the D-Bus adapter over the daemon core. It only translates: checks the
//! caller, turns the names it is sent into typed names, calls the core, maps errors to
//! `org.banger.Error.*`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use banger_api::error::BusError;
use banger_api::wire::{
    CatalogEntryInfo, DoctorCheck, GuestInfo, GuestPort, ImageInfo, OperationInfo, OperationStage,
    SshTarget, VmInfo,
};
use banger_host::build_info;
use banger_host::runtime::InFlight;
use banger_release::catalog::CatalogError;
use futures_util::StreamExt;
use zbus::message::Header;
use zbus::{Connection, OwnedObjectPath, fdo};

use crate::core::Daemon;
use crate::daemon_job::{JobObjects, job_path};
use crate::images::{image_name_to_find, image_name_to_import};
use crate::manager::Managed;
use crate::ops::OperationGuard;
use crate::pull::PullError;
use crate::vms::{VmError, Vms, vm_name_to_create, vm_name_to_find};

/// The object served at `/org/banger/Daemon1`.
pub struct Daemon1 {
    core: Arc<Daemon>,
    vms: Arc<Vms>,
    ready: Arc<AtomicBool>,
    inhibitors: Arc<Mutex<HashMap<String, OperationGuard>>>,
    calls: InFlight,
    jobs: JobObjects,
}

impl Daemon1 {
    /// An adapter over `core` and the VM manager; `ready` is shared with the service loop.
    pub fn new(core: Arc<Daemon>, vms: Arc<Vms>, ready: Arc<AtomicBool>) -> Self {
        Daemon1 {
            core,
            vms,
            ready,
            inhibitors: Arc::new(Mutex::new(HashMap::new())),
            calls: InFlight::default(),
            jobs: JobObjects::new(Arc::new(Managed::default())),
        }
    }

    /// The objects under `/org/banger/Daemon1` that its ObjectManager lists: serve
    /// [`crate::manager::ObjectManager`] and [`crate::objects::Objects`] with it.
    pub fn managed(&self) -> Arc<Managed> {
        self.jobs.managed()
    }

    /// The counter of calls being answered, for a shutdown that waits for them.
    pub fn calls(&self) -> InFlight {
        self.calls.clone()
    }

    /// Checks a pull, serves its job and starts it; answers the job's path.
    async fn start_pull(
        &self,
        conn: &Connection,
        reference: &str,
        name: &str,
        kernel: &str,
    ) -> Result<OwnedObjectPath, BusError> {
        let task = self.vms.begin_pull(reference, name, kernel).await?;
        self.jobs.serve(conn, &self.vms.jobs, &task.job).await?;
        tracing::info!(job = task.job.id, "pull of {} started", task.job.what);
        let path = job_path(task.job.id);
        tokio::spawn(self.vms.clone().run_pull(task));
        Ok(path)
    }
}

/// Every image or VM error goes on the bus as one `org.banger.Error.*`, with its message.
impl From<VmError> for BusError {
    fn from(e: VmError) -> Self {
        let m = e.to_string();
        match e {
            VmError::BadImageName(_)
            | VmError::NoKernel
            | VmError::RelativePath { .. }
            | VmError::NotAFile { .. }
            | VmError::Inaccessible { .. }
            | VmError::NotAKernel { .. }
            | VmError::KernelUnreadable { .. }
            | VmError::BadVmName(_)
            | VmError::Cpus { .. }
            | VmError::Memory { .. }
            | VmError::GuestConfig(_)
            | VmError::BadHostKey(_)
            | VmError::Invalid(_) => BusError::InvalidArgument(m),
            VmError::NoSuchImage(_) | VmError::NoSuchVm(_) | VmError::NoImageForVm(_) => {
                BusError::NotFound(m)
            }
            VmError::ImageExists(_) | VmError::VmExists(_) => BusError::AlreadyExists(m),
            VmError::ImageInUse { .. }
            | VmError::DamagedImage { .. }
            | VmError::NetworkFull { .. }
            | VmError::VmIsLive { .. }
            | VmError::PullRunning(_)
            | VmError::HostKeyMismatch(_) => BusError::InUse(m),
            VmError::NotAuthorized(_) => BusError::NotAuthorized(m),
            VmError::UnusableNetwork { .. }
            | VmError::Cleanup { .. }
            | VmError::Root(_)
            | VmError::NotRunning { .. }
            | VmError::Agent { .. } => BusError::Vm(m),
            VmError::Store(_) => BusError::Store(m),
            VmError::ImportDir { .. }
            | VmError::ImportCopy { .. }
            | VmError::ImportLeftover { .. }
            | VmError::ImportMove { .. }
            | VmError::Random(_)
            | VmError::WriteVm { .. }
            | VmError::CreateDir { .. }
            | VmError::NoSshKeygen
            | VmError::SshKeygenRun(_)
            | VmError::SshKeygenFailed(_)
            | VmError::Read { .. }
            | VmError::Task(_) => BusError::Failed(m),
        }
    }
}

/// A pull refused before it started, as the caller sees it.
impl From<PullError> for BusError {
    fn from(e: PullError) -> Self {
        let m = e.to_string();
        match e {
            PullError::Vm(e) => e.into(),
            PullError::Catalog(CatalogError::BadReference { .. }) => BusError::InvalidArgument(m),
            PullError::Catalog(CatalogError::NoEntry { .. }) => BusError::NotFound(m),
            PullError::OciReference(_)
            | PullError::NoKernel
            | PullError::KernelWithoutInitrd(_)
            | PullError::KernelForCatalog => BusError::InvalidArgument(m),
            _ => BusError::Failed(m),
        }
    }
}

/// Allows only the daemon's own user and root (the bus policy says the same; this is the second
/// lock on the door).
pub(crate) async fn check_caller(conn: &Connection, hdr: &Header<'_>) -> Result<(), BusError> {
    let sender = hdr
        .sender()
        .ok_or_else(|| BusError::NotAuthorized("call has no sender".into()))?;
    let uid = fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(zbus::Error::from)?;
    let me = banger_host::users::current_uid();
    if uid == me || uid == 0 {
        Ok(())
    } else {
        Err(BusError::NotAuthorized(format!(
            "uid {uid} may not use org.banger.Daemon1: only its owner (uid {me}) and root may; nothing was done"
        )))
    }
}

#[zbus::interface(name = "org.banger.Daemon1")]
impl Daemon1 {
    /// Version of the running daemon.
    #[zbus(property)]
    fn version(&self) -> &str {
        build_info::VERSION
    }

    /// Whether the daemon has opened its store and serves requests.
    #[zbus(property)]
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Operations in flight, then recently finished ones: (id, kind, stage, started, done).
    /// Read-only; safe to repeat.
    async fn list_operations(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<OperationInfo>, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.core.operations().list())
    }

    /// The daemon's health checks as (level, check, detail). Read-only; safe to repeat.
    async fn doctor(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<DoctorCheck>, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        let mut out = self.core.doctor();
        out.extend(self.vms.doctor().await);
        Ok(out)
    }

    /// Imports an image: copies the kernel (and the initrd and root filesystem, "" for none)
    /// from these absolute paths into the store, hashing them. Not idempotent: the name must
    /// be new.
    async fn import_image(
        &self,
        name: String,
        kernel: String,
        initrd: String,
        rootfs: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<ImageInfo, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self
            .vms
            .import_image(&image_name_to_import(&name)?, &kernel, &initrd, &rootfs)
            .await?)
    }

    /// Pulls image `reference` (`NAME` or `NAME:VERSION`) from the catalog set in the root-owned
    /// configuration, as the local image `name` ("" for the entry's name). Checks the request,
    /// then answers at once with the path of an org.banger.Daemon1.Job that does the work
    /// (stages resolving, downloading, unpacking, recording) and can be canceled; the job's
    /// Image says what it made. A failed or canceled pull leaves nothing. Not idempotent:
    /// the name must be new.
    async fn pull_image(
        &self,
        reference: String,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        self.start_pull(conn, &reference, &name, "").await
    }

    /// PullImage with options: `reference` is also an OCI image,
    /// `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]` (or `docker://…`), pulled from its
    /// registry, every blob verified by digest, and written as an ext4 root filesystem
    /// (stages resolving, downloading, unpacking, building, recording). Options: `kernel` (s),
    /// for an OCI image the local image whose kernel and initrd it boots with (required: an OCI
    /// image carries no kernel). An unknown option is refused.
    async fn pull_image_with(
        &self,
        reference: String,
        name: String,
        options: HashMap<String, zbus::OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        let mut kernel = String::new();
        for (key, value) in &options {
            match key.as_str() {
                "kernel" => {
                    kernel = String::try_from(value.try_clone()?).map_err(|_| {
                        BusError::InvalidArgument(
                            "option kernel must be a string (s): an image name".into(),
                        )
                    })?;
                }
                other => {
                    return Err(BusError::InvalidArgument(format!(
                        "unknown option {other:?} (PullImageWith knows: kernel)"
                    )));
                }
            }
        }
        self.start_pull(conn, &reference, &name, &kernel).await
    }

    /// What the configured catalog offers, from its index fetched and verified now:
    /// (name, version, kind, kernel, size, unpacked size, format, description). Read-only.
    async fn list_catalog(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<CatalogEntryInfo>, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.list_catalog().await?)
    }

    /// Every image, with the VMs that use it. Read-only.
    async fn list_images(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<ImageInfo>, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.list_images()?)
    }

    /// Removes an image and its files; refused while a VM uses it.
    async fn delete_image(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.delete_image(&image_name_to_find(&name)?).await?)
    }

    /// Creates a stopped VM from an image. Not idempotent: the name must be new. An empty name
    /// asks the daemon to pick a free one (`adjective-animal`); the answer says which.
    async fn create_vm(
        &self,
        name: String,
        image: String,
        cpus: u32,
        memory_mib: u32,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<VmInfo, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self
            .vms
            .create_vm(
                (!name.is_empty())
                    .then(|| vm_name_to_create(&name))
                    .transpose()?
                    .as_ref(),
                &image,
                cpus,
                memory_mib,
            )
            .await?)
    }

    /// Starts a VM: its VMM runs as the unit banger-vm-<id>.service. Safe to repeat.
    async fn start_vm(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<VmInfo, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.start_vm(&vm_name_to_find(&name)?).await?)
    }

    /// Stops a VM (powers it off). Safe to repeat.
    async fn stop_vm(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<VmInfo, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.stop_vm(&vm_name_to_find(&name)?).await?)
    }

    /// Deletes a stopped VM and its files.
    async fn delete_vm(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.delete_vm(&vm_name_to_find(&name)?).await?)
    }

    /// Every VM, its state read live from its unit. Read-only.
    async fn list_vms(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<VmInfo>, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.list_vms().await?)
    }

    /// One VM. Read-only.
    async fn get_vm(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<VmInfo, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.get_vm(&vm_name_to_find(&name)?).await?)
    }

    /// A running VM's guest as its agent reports it: (agent version, host name, kernel,
    /// uptime in seconds, boot id, [(interface, address/prefix)]). Read-only; asks the guest
    /// now, and fails with `org.banger.Error.Vm` naming why when the VM does not run or its
    /// agent does not answer within 3 s.
    async fn get_guest_info(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<GuestInfo, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.guest_info(&vm_name_to_find(&name)?).await?)
    }

    /// The TCP and UDP sockets listening in a running VM's guest: (protocol, address, port,
    /// pid, process), as its agent reports them. Read-only; fails like `GetGuestInfo`.
    async fn get_guest_ports(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<GuestPort>, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.guest_ports(&vm_name_to_find(&name)?).await?)
    }

    /// Where and how to reach a VM over SSH: (address, user, identity file, pinned host key).
    /// Read-only.
    async fn get_ssh_target(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<SshTarget, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.ssh_target(&vm_name_to_find(&name)?)?)
    }

    /// Pins the VM's SSH host key (`ssh-ed25519 BASE64`) on first contact. Safe to repeat
    /// with the same key; a different key is refused and never replaces the pinned one.
    async fn pin_host_key(
        &self,
        name: String,
        host_key: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.pin_host_key(&name, &host_key)?)
    }

    /// Reads the VM's serial console from `offset` (negative: the last -offset bytes), at most
    /// 1 MiB; returns the bytes and the offset to continue from. Read-only.
    async fn read_vm_log(
        &self,
        name: String,
        offset: i64,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(Vec<u8>, u64), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        Ok(self.vms.read_log(&vm_name_to_find(&name)?, offset)?)
    }

    /// Registers an "inhibit" operation that lasts until Uninhibit or until the caller leaves
    /// the bus; while it is held, updates are refused unless forced.
    /// Returns the operation id. Not idempotent: each call adds one.
    async fn inhibit(
        &self,
        why: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        let why = why.trim();
        if why.is_empty() || why.chars().count() > 200 || why.chars().any(char::is_control) {
            return Err(BusError::InvalidArgument(
                "the reason must be 1 to 200 printable characters; nothing was done".into(),
            ));
        }
        let sender = hdr
            .sender()
            .ok_or_else(|| BusError::NotAuthorized("call has no sender".into()))?
            .to_owned();
        let dbus = fdo::DBusProxy::new(conn).await?;
        // Subscribe before registering, so a caller that leaves at once is still seen leaving.
        let mut gone = dbus
            .receive_name_owner_changed_with_args(&[(0, sender.as_str())])
            .await?;
        let guard = self
            .core
            .operations()
            .begin("inhibit")
            .map_err(|e| BusError::Store(e.to_string()))?;
        guard.stage(why);
        let id = guard.id().to_string();
        self.inhibitors.lock().unwrap().insert(id.clone(), guard);
        if dbus
            .name_has_owner(sender.as_ref().into())
            .await
            .unwrap_or(false)
        {
            let inhibitors = self.inhibitors.clone();
            let op = id.clone();
            tokio::spawn(async move {
                while let Some(sig) = gone.next().await {
                    if sig.args().is_ok_and(|a| a.new_owner().is_none()) {
                        break;
                    }
                }
                if let Some(g) = inhibitors.lock().unwrap().remove(&op) {
                    g.finish(OperationStage::ReleasedCallerLeft);
                }
            });
        } else if let Some(g) = self.inhibitors.lock().unwrap().remove(&id) {
            g.finish(OperationStage::ReleasedCallerLeft);
        }
        Ok(id)
    }

    /// Ends an inhibit operation. Safe to repeat (an unknown id is an error naming it).
    async fn uninhibit(
        &self,
        id: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        match self.inhibitors.lock().unwrap().remove(&id) {
            Some(g) => {
                g.finish(OperationStage::Released);
                Ok(())
            }
            None => Err(BusError::InvalidArgument(format!(
                "no inhibit operation {id:?} is held"
            ))),
        }
    }
}
