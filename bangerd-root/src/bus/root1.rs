//! `org.banger.Root1`: the D-Bus adapter over the root helper's core. It authorizes first, then
//! translates into core calls and maps errors to `org.banger.Error.*`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use banger_api::error::BusError;
use banger_api::names::{self, action};
use banger_api::wire::{CatalogSettings, DoctorCheck, ServiceStatus};
use banger_host::build_info;
use banger_host::runtime::InFlight;
use banger_host::systemd::JobKind;
use zbus::fdo;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedObjectPath, OwnedVariant};

use banger_api::options::{StartVmmOptions, UpdateOptions, VmmStarted};
use banger_release::Version;

use super::authz::{Authorizer, Trust};
use super::job1::job_path;
use crate::core::RootCore;
use crate::limits::{Admitted, CallLimits, Caller, Shared};
use crate::update::engine::{Engine, EngineError};
use crate::vm::options::{HostLimits, StartOptions, parse_id};
use crate::vm::{Started, VmError, VmHost, VmPaths};

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
    let message = e.to_string();
    match e {
        VmError::Missing(_) | VmError::NoImage { .. } => BusError::NotFound(message),
        VmError::Install(_) => BusError::InstallMetadata(message),
        VmError::UnitState(_) | VmError::StopUnit { .. } => BusError::Systemd(message),
        VmError::Files(_)
        | VmError::NotOwners { .. }
        | VmError::AlreadyRunning { .. }
        | VmError::Config(_)
        | VmError::Kvm(_)
        | VmError::NoVmm(_)
        | VmError::ApiSocket { .. }
        | VmError::Ip(_)
        | VmError::Bridge(_)
        | VmError::Tap { .. }
        | VmError::StartUndone { .. }
        | VmError::StartLeftOvers { .. }
        | VmError::StopIp { .. }
        | VmError::StopTap { .. } => BusError::Vm(message),
    }
}

/// Maps update engine errors to bus errors.
/// Why `Update` refuses on a packaged install.
fn packaged_refusal(p: &banger_host::install::Packaging) -> String {
    format!(
        "banger is installed here by {}, which owns its files: update it with: {}; \
         banger update would replace them behind {}'s back; nothing was changed",
        p.manager, p.upgrade, p.manager
    )
}

fn engine_error(e: EngineError) -> BusError {
    let message = e.to_string();
    match e {
        EngineError::Busy { .. } => BusError::Busy(message),
        EngineError::InstallMetadata(_) | EngineError::InstalledVersion(_) => {
            BusError::InstallMetadata(message)
        }
        EngineError::Config(_)
        | EngineError::Release(_)
        | EngineError::Download(_)
        | EngineError::State(_)
        | EngineError::Journal(_)
        | EngineError::Publish(_) => BusError::Failed(message),
    }
}

/// Reads `Update`'s options: the dictionary, then the version if one is pinned (`v0.2.0` and
/// `0.2.0` name the same).
fn update_options(map: &HashMap<String, OwnedVariant>) -> Result<UpdateOptions, BusError> {
    let invalid = |e: String| BusError::InvalidArgument(e);
    let mut o = UpdateOptions::from_dict(map).map_err(|e| invalid(e.to_string()))?;
    if let Some(v) = &o.version {
        Version::parse(v).map_err(|e| invalid(format!("{e}; nothing was done")))?;
        o.version = Some(v.trim_start_matches('v').to_string());
    }
    Ok(o)
}

/// The polkit action an update with these options needs.
fn update_action(o: &UpdateOptions) -> &'static str {
    if o.allow_downgrade {
        action::UPDATE_DOWNGRADE
    } else if o.version.is_some() {
        action::UPDATE_PINNED
    } else {
        action::UPDATE
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

    /// The VM plumbing in use.
    pub fn vm_host(&self) -> Arc<VmHost> {
        self.vms.clone()
    }

    /// Uses `vms` for VM plumbing instead (tests).
    pub fn with_vm_host(mut self, vms: Arc<VmHost>) -> Self {
        self.vms = vms;
        self
    }

    /// `StartVmm` and `StartVmmWithInfo`: admits, authorizes, checks, starts.
    async fn start(
        &self,
        hdr: &Header<'_>,
        id: String,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<Started, BusError> {
        let _call = self.calls.enter();
        let _admitted = self.admit(hdr).await?;
        let grant = self
            .authz
            .authorize(hdr, action::VM_MANAGE, Trust::OwnerDaemon)
            .await?;
        tracing::info!(?grant, id, "StartVmm");
        let id = parse_id(&id).map_err(BusError::InvalidArgument)?;
        let invalid = |e: String| BusError::InvalidArgument(e);
        let asked = StartVmmOptions::from_dict(&options).map_err(|e| invalid(e.to_string()))?;
        let opts = StartOptions::check(id.as_str(), asked, HostLimits::detect())
            .map_err(|e| invalid(e.to_string()))?;
        self.vms.start_vmm(&id, &opts).await.map_err(vm_error)
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
        match self.engine.active_job() {
            Some(id) => job_path(id),
            None => OwnedObjectPath::try_from("/").expect("the root path"),
        }
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
        self.engine
            .check_for_update(caller)
            .await
            .map_err(engine_error)
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
        let opts = update_options(&options)?;
        // Before polkit: nobody should type a password for an update that cannot happen.
        if let Some(p) = self.engine.package() {
            return Err(BusError::Failed(packaged_refusal(&p)));
        }
        self.authz
            .authorize(&hdr, update_action(&opts), Trust::PolkitOnly)
            .await?;
        let uid = self.authz.caller_uid(&hdr).await?;
        let id = self.engine.start(opts, uid).await.map_err(engine_error)?;
        Ok(job_path(id))
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

    /// Where image catalogs come from: `[catalog]` of /etc/banger/config.toml (URL, "" for
    /// none; trusted key files as (path, PEM text); size caps) with `[update]`'s connect and
    /// stall timeouts and redirect hosts. The owner's daemon pulls with it. Needs no
    /// authorization; read-only, safe to repeat.
    async fn get_catalog_settings(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<CatalogSettings, BusError> {
        let _call = self.calls.enter();
        let _admitted = self.admit(&hdr).await?;
        crate::catalog::load(self.vms.config_file()).map_err(|e| BusError::Failed(e.to_string()))
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
        Ok(self.start(&hdr, id, options).await?.unit)
    }

    /// As StartVmm, and answers what was started: unit (s), the VM's unit, and backend (s),
    /// qemu or firecracker. A client ignores keys it does not know. Same authorization,
    /// checks and errors as StartVmm.
    async fn start_vmm_with_info(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: String,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<HashMap<String, OwnedVariant>, BusError> {
        let started = self.start(&hdr, id, options).await?;
        Ok(VmmStarted {
            unit: started.unit,
            backend: Some(started.backend),
        }
        .to_dict())
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
        let id = parse_id(&id).map_err(BusError::InvalidArgument)?;
        self.vms.stop_vmm(&id).await.map_err(vm_error)
    }

    /// VM checks for `banger doctor` as (level, check, detail): vm config, vm backend,
    /// accelerator, firecracker, vm network, vm nat, tun device. Needs no authorization; read-only,
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
