//! The daemon's VMs and images as objects on the bus, under the `ObjectManager` at
//! `/org/banger/Daemon1`: `org.banger.Daemon1.Vm` at `/org/banger/Daemon1/vm/<id>` and
//! `org.banger.Daemon1.Image` at `/org/banger/Daemon1/image/<escaped name>`.
//!
//! One task ([`Objects::run`]) keeps them in step with the daemon, in order: the changes
//! [`Vms`] announces (create, start, stop, delete, import, pull, a pinned host key) and the
//! `ActiveState` of every VM unit as systemd announces it, so that a VM whose guest powers off
//! or whose VMM is killed turns `stopped` or `failed` on the bus without anyone asking and
//! without polling. Adding and removing objects makes zbus emit `InterfacesAdded` and
//! `InterfacesRemoved`; a change emits one `PropertiesChanged` naming only what changed.
//!
//! Like every adapter here it decides nothing: methods check the caller and call [`Vms`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use banger_api::error::BusError;
use banger_api::ids::{ImageName, VmName};
use banger_api::names;
use banger_api::objects::{ImageProperty, VmProperty};
use banger_api::wire::{ImageInfo, VmInfo, VmState};
use banger_host::runtime::InFlight;
use banger_host::systemd::{Systemd, unit_object_path};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedObjectPath, Variant, fdo};

use crate::daemon1::check_caller;
use crate::host::live_state;
use crate::vms::{Change, Vms};

/// What a VM object shows: its record as the bus shows it, with the state last announced.
type Shown<T> = Arc<Mutex<T>>;

/// A stream of (unit object path, ActiveState).
type UnitStates = std::pin::Pin<Box<dyn Stream<Item = (String, String)> + Send>>;

/// The VM and image objects, and the task that keeps them current.
pub struct Objects {
    conn: Connection,
    vms: Arc<Vms>,
    calls: InFlight,
    served_vms: HashMap<String, Shown<VmInfo>>,
    served_images: HashMap<String, Shown<ImageInfo>>,
    changes: tokio::sync::broadcast::Receiver<Change>,
    units: UnitStates,
    /// Whether VM states come from systemd's signals (else they are read at each change).
    follows_units: bool,
}

fn path(p: String) -> OwnedObjectPath {
    OwnedObjectPath::try_from(p).expect("banger's object paths are valid")
}

/// The VM a unit object path belongs to: `…/unit/banger_2dvm_2d<id>_2eservice` → `<id>`.
fn vm_id_of_unit_path(unit_path: &str) -> Option<String> {
    let prefix = unit_object_path(names::VM_UNIT_PREFIX);
    let suffix = banger_api::names::escape_path_label(".service");
    let id = unit_path.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
    id.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| id.to_string())
}

/// The properties of `org.banger.Daemon1.Vm` as `PropertiesChanged` carries them.
fn vm_properties(v: &VmInfo) -> Vec<(&'static str, Variant<'static>)> {
    use VmProperty as P;
    let value = |p: P| match p {
        P::Id => Variant::from(v.id.clone()),
        P::Name => Variant::from(v.name.clone()),
        P::Image => Variant::from(v.image.clone()),
        P::Cpus => Variant::from(v.cpus),
        P::MemoryMib => Variant::from(v.memory_mib),
        P::State => Variant::from(v.state.clone()),
        P::Address => Variant::from(v.address.clone()),
        P::Backend => Variant::from(v.backend.clone()),
        P::Unit => Variant::from(v.unit.clone()),
        P::CreatedAt => Variant::from(v.created),
        P::HostKey => Variant::from(v.host_key.clone()),
    };
    P::ALL.iter().map(|p| (p.as_str(), value(*p))).collect()
}

/// The properties of `org.banger.Daemon1.Image` as `PropertiesChanged` carries them.
fn image_properties(i: &ImageInfo) -> Vec<(&'static str, Variant<'static>)> {
    use ImageProperty as P;
    let value = |p: P| match p {
        P::Name => Variant::from(i.name.clone()),
        P::Bytes => Variant::from(i.bytes),
        P::KernelSha256 => Variant::from(i.kernel_sha256.clone()),
        P::InitrdSha256 => Variant::from(i.initrd_sha256.clone()),
        P::RootfsSha256 => Variant::from(i.rootfs_sha256.clone()),
        P::CreatedAt => Variant::from(i.created),
        P::UsedBy => Variant::from(i.used_by.clone()),
    };
    P::ALL.iter().map(|p| (p.as_str(), value(*p))).collect()
}

/// Emits one `PropertiesChanged` on `at` naming what differs between `old` and `new`.
async fn announce(
    conn: &Connection,
    at: &str,
    interface: &'static str,
    old: Vec<(&'static str, Variant<'static>)>,
    new: Vec<(&'static str, Variant<'static>)>,
) {
    let changed: HashMap<&str, Variant<'_>> = old
        .into_iter()
        .zip(new)
        .filter(|((_, a), (_, b))| a != b)
        .map(|(_, (name, value))| (name, value))
        .collect();
    if changed.is_empty() {
        return;
    }
    let Ok(emitter) = SignalEmitter::new(conn, at.to_string()) else {
        return;
    };
    let _ = fdo::Properties::properties_changed(
        &emitter,
        zbus::names::InterfaceName::from_static_str_unchecked(interface),
        changed,
        std::borrow::Cow::Borrowed(&[]),
    )
    .await;
}

impl Objects {
    /// Serves every VM and image of `vms` on `conn` (`calls` counts the calls they answer) and
    /// starts listening for changes; with `systemd`, VM states follow its signals, without,
    /// they are read at each change. Call [`Objects::run`] next to keep them current.
    pub async fn start(
        conn: Connection,
        vms: Arc<Vms>,
        calls: InFlight,
        systemd: Option<&Systemd>,
    ) -> Self {
        // Listen before reading, so that no change falls between the two.
        let changes = vms.changes();
        let (units, follows_units): (UnitStates, bool) = match systemd {
            Some(s) => match s.unit_states(names::VM_UNIT_PREFIX).await {
                Ok(stream) => (Box::pin(stream), true),
                Err(e) => {
                    tracing::warn!(
                        "VM objects will not see changes nobody asked for (a guest that powers \
                         off): {e}"
                    );
                    (Box::pin(futures_util::stream::pending()), false)
                }
            },
            None => (Box::pin(futures_util::stream::pending()), false),
        };
        let mut objects = Objects {
            conn,
            vms,
            calls,
            served_vms: HashMap::new(),
            served_images: HashMap::new(),
            changes,
            units,
            follows_units,
        };
        objects.sync_all().await;
        objects
    }

    /// Keeps the objects current, in the order changes happen, until the daemon stops.
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                change = self.changes.recv() => match change {
                    Ok(Change::Vm(id)) => self.vm_changed(&id).await,
                    Ok(Change::VmRemoved(id)) => self.remove_vm(&id).await,
                    Ok(Change::Image(name)) => self.image_changed(&name).await,
                    Ok(Change::ImageRemoved(name)) => self.remove_image(&name).await,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!("{n} changes were missed; reading every VM and image again");
                        self.sync_all().await;
                    }
                    Err(RecvError::Closed) => return,
                },
                Some((unit_path, active)) = self.units.next() => {
                    if let Some(id) = vm_id_of_unit_path(&unit_path) {
                        self.vm_state(&id, live_state(&active)).await;
                    }
                }
            }
        }
    }

    /// Serves what the store holds and takes off the bus what it no longer holds.
    async fn sync_all(&mut self) {
        let recs = self.vms.store.lock().unwrap().vms();
        match recs {
            Ok(recs) => {
                let ids: Vec<String> = recs.into_iter().map(|v| v.id).collect();
                let gone: Vec<String> = self
                    .served_vms
                    .keys()
                    .filter(|id| !ids.contains(id))
                    .cloned()
                    .collect();
                for id in gone {
                    self.remove_vm(&id).await;
                }
                for id in ids {
                    self.vm_changed(&id).await;
                }
            }
            Err(e) => tracing::warn!("reading VM records for the bus: {e}"),
        }
        match self.vms.list_images() {
            Ok(images) => {
                let names: Vec<String> = images.iter().map(|i| i.name.clone()).collect();
                let gone: Vec<String> = self
                    .served_images
                    .keys()
                    .filter(|n| !names.contains(n))
                    .cloned()
                    .collect();
                for name in gone {
                    self.remove_image(&name).await;
                }
                for name in names {
                    self.image_changed(&name).await;
                }
            }
            Err(e) => tracing::warn!("reading image records for the bus: {e}"),
        }
    }

    /// VM `id` was made or changed: serve it, or announce what changed.
    async fn vm_changed(&mut self, id: &str) {
        let rec = match self.vms.vm_by_id(id) {
            Ok(Some(rec)) => rec,
            Ok(None) => return self.remove_vm(id).await,
            Err(e) => return tracing::warn!("reading VM {id} for the bus: {e}"),
        };
        let at = names::daemon_vm_path(id);
        match self.served_vms.get(id).cloned() {
            Some(shown) => {
                let old = shown.lock().unwrap().clone();
                // With systemd's signals the state is theirs; without, it is read now.
                let state = if self.follows_units {
                    VmState::parse(&old.state).unwrap_or(VmState::Unknown)
                } else {
                    self.vms.live_state(id).await
                };
                let new = self.vms.info_with_state(&rec, state);
                *shown.lock().unwrap() = new.clone();
                announce(
                    &self.conn,
                    &at,
                    names::DAEMON_VM_INTERFACE,
                    vm_properties(&old),
                    vm_properties(&new),
                )
                .await;
            }
            None => {
                let state = self.vms.live_state(id).await;
                let shown = Arc::new(Mutex::new(self.vms.info_with_state(&rec, state)));
                let object = VmObject {
                    vms: self.vms.clone(),
                    calls: self.calls.clone(),
                    shown: shown.clone(),
                };
                match self.conn.object_server().at(path(at.clone()), object).await {
                    Ok(_) => {
                        self.served_vms.insert(id.to_string(), shown);
                    }
                    Err(e) => tracing::warn!("serving {at}: {e}"),
                }
            }
        }
    }

    /// VM `id`'s unit is now in `state`.
    async fn vm_state(&mut self, id: &str, state: VmState) {
        let Some(shown) = self.served_vms.get(id).cloned() else {
            return;
        };
        let old = shown.lock().unwrap().clone();
        let mut new = old.clone();
        new.state = state.as_str().to_string();
        *shown.lock().unwrap() = new.clone();
        announce(
            &self.conn,
            &names::daemon_vm_path(id),
            names::DAEMON_VM_INTERFACE,
            vm_properties(&old),
            vm_properties(&new),
        )
        .await;
    }

    async fn remove_vm(&mut self, id: &str) {
        if self.served_vms.remove(id).is_some() {
            let at = names::daemon_vm_path(id);
            if let Err(e) = self
                .conn
                .object_server()
                .remove::<VmObject, _>(path(at.clone()))
                .await
            {
                tracing::warn!("taking {at} off the bus: {e}");
            }
        }
    }

    /// Image `name` was made or changed: serve it, or announce what changed.
    async fn image_changed(&mut self, name: &str) {
        let info = match self.vms.image_by_name(name) {
            Ok(Some(info)) => info,
            Ok(None) => return self.remove_image(name).await,
            Err(e) => return tracing::warn!("reading image {name} for the bus: {e}"),
        };
        let at = names::daemon_image_path(name);
        match self.served_images.get(name).cloned() {
            Some(shown) => {
                let old = std::mem::replace(&mut *shown.lock().unwrap(), info.clone());
                announce(
                    &self.conn,
                    &at,
                    names::DAEMON_IMAGE_INTERFACE,
                    image_properties(&old),
                    image_properties(&info),
                )
                .await;
            }
            None => {
                let shown = Arc::new(Mutex::new(info));
                let object = ImageObject {
                    vms: self.vms.clone(),
                    calls: self.calls.clone(),
                    shown: shown.clone(),
                };
                match self.conn.object_server().at(path(at.clone()), object).await {
                    Ok(_) => {
                        self.served_images.insert(name.to_string(), shown);
                    }
                    Err(e) => tracing::warn!("serving {at}: {e}"),
                }
            }
        }
    }

    async fn remove_image(&mut self, name: &str) {
        if self.served_images.remove(name).is_some() {
            let at = names::daemon_image_path(name);
            if let Err(e) = self
                .conn
                .object_server()
                .remove::<ImageObject, _>(path(at.clone()))
                .await
            {
                tracing::warn!("taking {at} off the bus: {e}");
            }
        }
    }
}

/// A VM on the bus, `/org/banger/Daemon1/vm/<id>`.
pub struct VmObject {
    vms: Arc<Vms>,
    calls: InFlight,
    shown: Shown<VmInfo>,
}

impl VmObject {
    /// The VM's name now, or NotFound when it was deleted (a client may still hold the path
    /// for a moment after `InterfacesRemoved`).
    fn name_now(&self) -> Result<VmName, BusError> {
        let id = self.shown.lock().unwrap().id.clone();
        let gone = || {
            BusError::NotFound(format!(
                "VM {id} was deleted (see InterfacesRemoved); nothing was done"
            ))
        };
        let rec = self.vms.vm_by_id(&id)?.ok_or_else(gone)?;
        VmName::parse(&rec.name).map_err(|_| gone())
    }
}

#[zbus::interface(name = "org.banger.Daemon1.Vm")]
impl VmObject {
    /// 12 lowercase hex digits: the last element of the path, and of the unit's name.
    #[zbus(property)]
    fn id(&self) -> String {
        self.shown.lock().unwrap().id.clone()
    }

    /// The VM's name (also the guest's hostname).
    #[zbus(property)]
    fn name(&self) -> String {
        self.shown.lock().unwrap().name.clone()
    }

    /// The image it was made from.
    #[zbus(property)]
    fn image(&self) -> String {
        self.shown.lock().unwrap().image.clone()
    }

    /// Virtual CPUs.
    #[zbus(property)]
    fn cpus(&self) -> u32 {
        self.shown.lock().unwrap().cpus
    }

    /// Memory in MiB.
    #[zbus(property, name = "MemoryMiB")]
    fn memory_mib(&self) -> u32 {
        self.shown.lock().unwrap().memory_mib
    }

    /// `running`, `starting`, `stopping`, `stopped`, `failed` or `unknown`, from the VM unit's
    /// ActiveState as systemd announces it.
    #[zbus(property)]
    fn state(&self) -> String {
        self.shown.lock().unwrap().state.clone()
    }

    /// The guest's IPv4 address on the VM network.
    #[zbus(property)]
    fn address(&self) -> String {
        self.shown.lock().unwrap().address.clone()
    }

    /// `qemu` or `firecracker` once started, "" before.
    #[zbus(property)]
    fn backend(&self) -> String {
        self.shown.lock().unwrap().backend.clone()
    }

    /// The VM's systemd unit, `banger-vm-<id>.service`.
    #[zbus(property)]
    fn unit(&self) -> String {
        self.shown.lock().unwrap().unit.clone()
    }

    /// When it was created, Unix seconds.
    #[zbus(property)]
    fn created_at(&self) -> i64 {
        self.shown.lock().unwrap().created
    }

    /// The pinned SSH host key (`ssh-ed25519 BASE64`), "" until first contact.
    #[zbus(property)]
    fn host_key(&self) -> String {
        self.shown.lock().unwrap().host_key.clone()
    }

    /// Starts the VM (as Daemon1.StartVm). Safe to repeat.
    async fn start(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        self.vms.start_vm(&self.name_now()?).await?;
        Ok(())
    }

    /// Stops the VM (as Daemon1.StopVm). Safe to repeat.
    async fn stop(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        self.vms.stop_vm(&self.name_now()?).await?;
        Ok(())
    }

    /// Deletes the stopped VM and its files (as Daemon1.DeleteVm); the object goes with it.
    async fn delete(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        self.vms.delete_vm(&self.name_now()?).await?;
        Ok(())
    }
}

/// An image on the bus, `/org/banger/Daemon1/image/<escaped name>`.
pub struct ImageObject {
    vms: Arc<Vms>,
    calls: InFlight,
    shown: Shown<ImageInfo>,
}

#[zbus::interface(name = "org.banger.Daemon1.Image")]
impl ImageObject {
    /// The image's name.
    #[zbus(property)]
    fn name(&self) -> String {
        self.shown.lock().unwrap().name.clone()
    }

    /// Bytes stored for it, all its files together.
    #[zbus(property)]
    fn bytes(&self) -> u64 {
        self.shown.lock().unwrap().bytes
    }

    /// SHA-256 of its kernel, lowercase hex.
    #[zbus(property)]
    fn kernel_sha256(&self) -> String {
        self.shown.lock().unwrap().kernel_sha256.clone()
    }

    /// SHA-256 of its initrd, "" for none.
    #[zbus(property)]
    fn initrd_sha256(&self) -> String {
        self.shown.lock().unwrap().initrd_sha256.clone()
    }

    /// SHA-256 of its root filesystem, "" for none.
    #[zbus(property)]
    fn rootfs_sha256(&self) -> String {
        self.shown.lock().unwrap().rootfs_sha256.clone()
    }

    /// When it was made, Unix seconds.
    #[zbus(property)]
    fn created_at(&self) -> i64 {
        self.shown.lock().unwrap().created
    }

    /// The names of the VMs made from it.
    #[zbus(property)]
    fn used_by(&self) -> Vec<String> {
        self.shown.lock().unwrap().used_by.clone()
    }

    /// Deletes the image (as Daemon1.DeleteImage); refused while a VM uses it.
    async fn delete(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        let name = self.shown.lock().unwrap().name.clone();
        let name = ImageName::parse(&name).map_err(|_| {
            BusError::NotFound(format!("no image named {name:?}; nothing was done"))
        })?;
        self.vms.delete_image(&name).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_name_their_vm() {
        let p = unit_object_path(&names::vm_unit_name("0123456789ab"));
        assert_eq!(vm_id_of_unit_path(&p).as_deref(), Some("0123456789ab"));
        assert_eq!(
            vm_id_of_unit_path(&unit_object_path("banger-vm-x_y.service")),
            None
        );
        assert_eq!(vm_id_of_unit_path(&unit_object_path("dbus.service")), None);
    }
}
