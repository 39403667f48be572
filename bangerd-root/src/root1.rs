//! `org.banger.Root1`: the D-Bus adapter over the root helper's core. It authorizes first, then
//! translates into core calls and maps errors to `org.banger.Error.*`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use banger_api::error::BusError;
use banger_api::names::{self, action};
use banger_api::wire::{DoctorCheck, ServiceStatus};
use banger_host::build_info;
use banger_host::runtime::InFlight;
use banger_host::systemd::JobKind;
use zbus::fdo;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedObjectPath, OwnedVariant};

use crate::authz::{Authorizer, Trust};
use crate::core::RootCore;
use crate::limits::{Admitted, CallLimits, Caller, Shared};
use crate::update::engine::{Engine, UpdateOptions};
use crate::vm::options::{HostLimits, StartOptions, check_id};
use crate::vm::{VmError, VmHost, VmPaths};

/// The object served at `/org/banger/Root1`.
pub struct Root1 {
    core: Arc<RootCore>,
    authz: Arc<Authorizer>,
    engine: Arc<Engine>,
    vms: Arc<VmHost>,
    calls: InFlight,
    limits: CallLimits,
    doctor: Shared<Vec<DoctorCheck>>,
}

/// How long `VmmDoctor`'s answer is shared with callers who are neither root nor the owner.
const DOCTOR_MAX_AGE: Duration = Duration::from_secs(2);

/// Maps VM plumbing errors to bus errors.
fn vm_error(e: VmError) -> BusError {
    match e {
        VmError::InvalidArgument(m) => BusError::InvalidArgument(m),
        VmError::NotFound(m) => BusError::NotFound(m),
        VmError::Install(e) => BusError::InstallMetadata(e.to_string()),
        VmError::Systemd(m) => BusError::Systemd(m),
        e @ (VmError::AlreadyRunning { .. }
        | VmError::Config(_)
        | VmError::Host(_)
        | VmError::StartFailed(_)) => BusError::Vm(e.to_string()),
    }
}

impl Root1 {
    /// An adapter over `core` and the update `engine`, authorizing with `authz`. VM plumbing
    /// uses the paths of `core.layout` (the live system's: `/var/lib/banger`,
    /// `/etc/banger/config.toml`).
    pub fn new(core: Arc<RootCore>, authz: Arc<Authorizer>, engine: Arc<Engine>) -> Self {
        let vms = Arc::new(VmHost::new(
            core.systemd.clone(),
            VmPaths::from_layout(&core.layout),
        ));
        Root1 {
            core,
            authz,
            engine,
            vms,
            calls: InFlight::default(),
            limits: CallLimits::default(),
            doctor: Shared::new(DOCTOR_MAX_AGE),
        }
    }

    /// Admits the call of `hdr` under [`crate::limits`], before any other work; returns who
    /// called.
    async fn admit(&self, hdr: &Header<'_>) -> Result<(Caller, Admitted), BusError> {
        let caller = self.authz.caller(hdr).await?;
        let admitted = self
            .limits
            .admit(caller)
            .map_err(|e| BusError::Busy(e.to_string()))?;
        Ok((caller, admitted))
    }

    /// The counter of calls being answered, for a shutdown that waits for them.
    pub fn calls(&self) -> InFlight {
        self.calls.clone()
    }

    /// Uses `vms` for VM plumbing instead (tests).
    pub fn with_vm_host(mut self, vms: Arc<VmHost>) -> Self {
        self.vms = vms;
        self
    }

    async fn daemon_job(&self, hdr: &Header<'_>, kind: JobKind) -> Result<(), BusError> {
        let _admitted = self.admit(hdr).await?;
        let grant = self
            .authz
            .authorize(hdr, action::DAEMON_MANAGE, Trust::PolkitOnly)
            .await?;
        tracing::info!(?grant, ?kind, "daemon job");
        self.core
            .daemon_job(kind)
            .await
            .map_err(|e| BusError::Systemd(e.to_string()))
    }
}

#[zbus::interface(name = "org.banger.Root1")]
impl Root1 {
    /// Version of the running helper.
    #[zbus(property)]
    fn version(&self) -> &str {
        build_info::VERSION
    }

    /// Major version of this D-Bus API.
    #[zbus(property)]
    fn api_version(&self) -> u32 {
        names::API_VERSION
    }

    /// Version recorded in /etc/banger/install.toml.
    #[zbus(property)]
    fn installed_version(&self) -> fdo::Result<String> {
        self.core
            .install_meta()
            .map(|m| m.release.version)
            .map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// Login name of the install's owner.
    #[zbus(property)]
    fn owner(&self) -> fdo::Result<String> {
        self.core
            .install_meta()
            .map(|m| m.owner.user)
            .map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// State of banger's units as (unit, active_state, sub_state, main_pid). Needs no
    /// authorization; safe to repeat.
    async fn get_service_status(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<ServiceStatus>, BusError> {
        let _call = self.calls.enter();
        let _admitted = self.admit(&hdr).await?;
        self.core
            .service_status()
            .await
            .map_err(|e| BusError::Systemd(e.to_string()))
    }

    /// Starts bangerd.service and waits until it owns its bus name. polkit action
    /// org.banger.daemon.manage. Safe to repeat.
    async fn start_daemon(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BusError> {
        let _call = self.calls.enter();
        self.daemon_job(&hdr, JobKind::Start).await
    }

    /// Stops bangerd.service (running VMs are separate units and keep running). polkit action
    /// org.banger.daemon.manage. Safe to repeat.
    async fn stop_daemon(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BusError> {
        let _call = self.calls.enter();
        self.daemon_job(&hdr, JobKind::Stop).await
    }

    /// Restarts bangerd.service and waits until it owns its bus name again. polkit action
    /// org.banger.daemon.manage. Safe to repeat.
    async fn restart_daemon(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BusError> {
        let _call = self.calls.enter();
        self.daemon_job(&hdr, JobKind::Restart).await
    }

    /// `idle`, or the stage of the running update job.
    #[zbus(property)]
    fn update_state(&self) -> String {
        self.engine.update_state()
    }

    /// The running update job, `/` when none.
    #[zbus(property)]
    fn active_job(&self) -> OwnedObjectPath {
        self.engine.active_job()
    }

    /// Reads the signed release manifest: (current, latest, available). polkit action
    /// org.banger.update.check (allowed to anyone by default). Read-only; safe to repeat.
    async fn check_for_update(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(String, String, bool), BusError> {
        let _call = self.calls.enter();
        let (caller, _admitted) = self.admit(&hdr).await?;
        self.authz
            .authorize(&hdr, action::UPDATE_CHECK, Trust::PolkitOnly)
            .await?;
        self.engine.check_for_update(caller).await
    }

    /// Starts an update and returns its job at once. Options: version (s), dry_run (b),
    /// force (b), allow_downgrade (b). polkit action org.banger.update, or
    /// org.banger.update.pinned with a version, or org.banger.update.downgrade with
    /// allow_downgrade, checked before any work. Refused with Busy while another runs.
    async fn update(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<OwnedObjectPath, BusError> {
        let _call = self.calls.enter();
        let _admitted = self.admit(&hdr).await?;
        let opts = UpdateOptions::from_dbus(&options)?;
        self.authz
            .authorize(&hdr, opts.action(), Trust::PolkitOnly)
            .await?;
        let uid = self.authz.caller_uid(&hdr).await?;
        self.engine.start(opts, uid).await
    }

    /// The VM network: (bridge, subnet in CIDR form, host address on the bridge), from
    /// /etc/banger/config.toml. Needs no authorization; read-only, safe to repeat.
    async fn get_vm_network(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(String, String, String), BusError> {
        let _call = self.calls.enter();
        let _admitted = self.admit(&hdr).await?;
        let net = self.vms.network().map_err(vm_error)?;
        Ok((
            net.bridge.clone(),
            net.subnet.to_string(),
            net.host_address().to_string(),
        ))
    }

    /// Starts VM `id`'s VMM as the transient unit banger-vm-<id>.service in banger.slice,
    /// running as the install owner, with tap bt-<id> on the VM bridge; returns the unit name.
    /// Options: image (s, required), rootfs (b), cpus (u), memory_mib (u), mac (s). Root and
    /// the install owner (its bangerd) are trusted, anyone else needs polkit action
    /// org.banger.vm.manage, checked before any work. Refused while the VM runs; a failed start
    /// leaves nothing running.
    async fn start_vmm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: String,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<String, BusError> {
        let _call = self.calls.enter();
        let _admitted = self.admit(&hdr).await?;
        let grant = self
            .authz
            .authorize(&hdr, action::VM_MANAGE, Trust::OwnerDaemon)
            .await?;
        tracing::info!(?grant, id, "StartVmm");
        check_id(&id).map_err(BusError::InvalidArgument)?;
        let opts = StartOptions::from_dbus(&id, &options, HostLimits::detect())
            .map_err(BusError::InvalidArgument)?;
        self.vms.start_vmm(&id, &opts).await.map_err(vm_error)
    }

    /// Stops VM `id`'s unit (waiting for it) and removes its tap. Same authorization as
    /// StartVmm. Safe to repeat: a VM that is not running is not an error.
    async fn stop_vmm(&self, #[zbus(header)] hdr: Header<'_>, id: String) -> Result<(), BusError> {
        let _call = self.calls.enter();
        let _admitted = self.admit(&hdr).await?;
        let grant = self
            .authz
            .authorize(&hdr, action::VM_MANAGE, Trust::OwnerDaemon)
            .await?;
        tracing::info!(?grant, id, "StopVmm");
        check_id(&id).map_err(BusError::InvalidArgument)?;
        self.vms.stop_vmm(&id).await.map_err(vm_error)
    }

    /// VM checks for `banger doctor` as (level, check, detail): vm config, vm backend,
    /// accelerator, firecracker, vm network, tun device. Needs no authorization; read-only,
    /// safe to repeat.
    async fn vmm_doctor(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<DoctorCheck>, BusError> {
        let _call = self.calls.enter();
        let (caller, _admitted) = self.admit(&hdr).await?;
        Ok(self.doctor.get(caller, || self.vms.doctor()).await)
    }

    /// A job was created.
    #[zbus(signal)]
    pub async fn job_new(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: OwnedObjectPath,
    ) -> zbus::Result<()>;

    /// A job finished with `result` (as in Job.Result).
    #[zbus(signal)]
    pub async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: OwnedObjectPath,
        result: &str,
    ) -> zbus::Result<()>;
}
