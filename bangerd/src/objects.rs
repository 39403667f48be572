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
//! A deleted VM's or image's object is announced removed (`InterfacesRemoved`, and
//! `GetManagedObjects` no longer lists it) but stays on the bus, buried, for the next
//! [`BURIED_KEPT`] deletions: a client that still holds the path, and calls it or reads a
//! property, gets `org.banger.Error.NotFound` naming what happened rather than `UnknownObject`.
//! When a buried object is finally dropped, zbus announces its removal a second time; clients
//! already took it off their view and ignore that. An image imported again under a buried name
//! revives its object, announced with `InterfacesAdded`.
//!
//! Like every adapter here it decides nothing: methods check the caller and call [`Vms`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
use crate::manager::{Kind, Managed};
use crate::vms::{Change, Vms};

/// How many deleted objects stay on the bus answering NotFound.
pub const BURIED_KEPT: usize = 256;

/// What an object shows (a VM's record with the state last announced), and whether it was
/// deleted.
pub struct Shown<T> {
    info: Mutex<T>,
    gone: AtomicBool,
}

impl<T> Shown<T> {
    fn new(info: T) -> Arc<Self> {
        Arc::new(Shown {
            info: Mutex::new(info),
            gone: AtomicBool::new(false),
        })
    }

    fn get(&self) -> MutexGuard<'_, T> {
        self.info.lock().unwrap()
    }

    /// What it shows, or NotFound (`what`) when it was deleted.
    fn live(&self, what: impl FnOnce(&T) -> String) -> Result<MutexGuard<'_, T>, BusError> {
        let info = self.get();
        if self.gone.load(Ordering::SeqCst) {
            return Err(BusError::NotFound(format!(
                "{} was deleted (see InterfacesRemoved); nothing was done",
                what(&info)
            )));
        }
        Ok(info)
    }
}

/// A stream of (unit object path, ActiveState).
type UnitStates = std::pin::Pin<Box<dyn Stream<Item = (String, String)> + Send>>;

/// The VM and image objects, and the task that keeps them current.
pub struct Objects {
    conn: Connection,
    vms: Arc<Vms>,
    calls: InFlight,
    managed: Arc<Managed>,
    served_vms: HashMap<String, Arc<Shown<VmInfo>>>,
    served_images: HashMap<String, Arc<Shown<ImageInfo>>>,
    /// Deleted objects still on the bus, oldest first (VM id or image name).
    buried: VecDeque<(Kind, String)>,
    buried_vms: HashMap<String, Arc<Shown<VmInfo>>>,
    buried_images: HashMap<String, Arc<Shown<ImageInfo>>>,
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
    /// Serves every VM and image of `vms` on `conn` (`calls` counts the calls they answer,
    /// `managed` lists them for the ObjectManager) and starts listening for changes; with
    /// `systemd`, VM states follow its signals, without, they are read at each change. Call
    /// [`Objects::run`] next to keep them current.
    pub async fn start(
        conn: Connection,
        vms: Arc<Vms>,
        calls: InFlight,
        managed: Arc<Managed>,
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
            managed,
            served_vms: HashMap::new(),
            served_images: HashMap::new(),
            buried: VecDeque::new(),
            buried_vms: HashMap::new(),
            buried_images: HashMap::new(),
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
                let old = shown.get().clone();
                // With systemd's signals the state is theirs; without, it is read now.
                let state = if self.follows_units {
                    VmState::parse(&old.state).unwrap_or(VmState::Unknown)
                } else {
                    self.vms.live_state(id).await
                };
                let new = self.vms.info_with_state(&rec, state);
                *shown.get() = new.clone();
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
                let info = self.vms.info_with_state(&rec, state);
                if let Some(shown) = self.buried_vms.remove(id) {
                    self.unbury(Kind::Vm, id);
                    let props = vm_properties(&info);
                    revive(&shown, info);
                    announce_added(
                        &self.conn,
                        &self.managed,
                        &at,
                        Kind::Vm,
                        names::DAEMON_VM_INTERFACE,
                        props,
                    )
                    .await;
                    self.served_vms.insert(id.to_string(), shown);
                    return;
                }
                let shown = Shown::new(info);
                let object = VmObject {
                    vms: self.vms.clone(),
                    calls: self.calls.clone(),
                    shown: shown.clone(),
                };
                if serve(&self.conn, &self.managed, &at, Kind::Vm, object).await {
                    self.served_vms.insert(id.to_string(), shown);
                }
            }
        }
    }

    /// VM `id`'s unit is now in `state`.
    async fn vm_state(&mut self, id: &str, state: VmState) {
        let Some(shown) = self.served_vms.get(id).cloned() else {
            return;
        };
        let old = shown.get().clone();
        let mut new = old.clone();
        new.state = state.as_str().to_string();
        *shown.get() = new.clone();
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
        if let Some(shown) = self.served_vms.remove(id) {
            shown.gone.store(true, Ordering::SeqCst);
            self.bury(Kind::Vm, id, names::DAEMON_VM_INTERFACE).await;
            self.buried_vms.insert(id.to_string(), shown);
            self.drop_oldest_buried().await;
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
                let old = std::mem::replace(&mut *shown.get(), info.clone());
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
                if let Some(shown) = self.buried_images.remove(name) {
                    self.unbury(Kind::Image, name);
                    let props = image_properties(&info);
                    revive(&shown, info);
                    announce_added(
                        &self.conn,
                        &self.managed,
                        &at,
                        Kind::Image,
                        names::DAEMON_IMAGE_INTERFACE,
                        props,
                    )
                    .await;
                    self.served_images.insert(name.to_string(), shown);
                    return;
                }
                let shown = Shown::new(info);
                let object = ImageObject {
                    vms: self.vms.clone(),
                    calls: self.calls.clone(),
                    shown: shown.clone(),
                };
                if serve(&self.conn, &self.managed, &at, Kind::Image, object).await {
                    self.served_images.insert(name.to_string(), shown);
                }
            }
        }
    }

    async fn remove_image(&mut self, name: &str) {
        if let Some(shown) = self.served_images.remove(name) {
            shown.gone.store(true, Ordering::SeqCst);
            self.bury(Kind::Image, name, names::DAEMON_IMAGE_INTERFACE)
                .await;
            self.buried_images.insert(name.to_string(), shown);
            self.drop_oldest_buried().await;
        }
    }

    /// The object of `key` is announced removed and no longer listed, but stays on the bus.
    async fn bury(&mut self, kind: Kind, key: &str, interface: &'static str) {
        let at = object_path(kind, key);
        self.managed.remove(&path(at.clone()));
        self.buried.push_back((kind, key.to_string()));
        if let Ok(emitter) = SignalEmitter::new(&self.conn, names::DAEMON1_PATH) {
            let removed = [zbus::names::InterfaceName::from_static_str_unchecked(
                interface,
            )];
            if let Err(e) = fdo::ObjectManager::interfaces_removed(
                &emitter,
                zbus::ObjectPath::from_str_unchecked(&at),
                std::borrow::Cow::Borrowed(&removed),
            )
            .await
            {
                tracing::warn!("announcing that {at} is gone: {e}");
            }
        }
    }

    fn unbury(&mut self, kind: Kind, key: &str) {
        self.buried.retain(|(k, name)| !(*k == kind && name == key));
    }

    /// Takes the oldest buried objects off the bus, keeping [`BURIED_KEPT`].
    async fn drop_oldest_buried(&mut self) {
        while self.buried.len() > BURIED_KEPT {
            let Some((kind, key)) = self.buried.pop_front() else {
                return;
            };
            let at = path(object_path(kind, &key));
            let server = self.conn.object_server();
            let removed = match kind {
                Kind::Vm => {
                    self.buried_vms.remove(&key);
                    server.remove::<VmObject, _>(at.clone()).await
                }
                Kind::Image => {
                    self.buried_images.remove(&key);
                    server.remove::<ImageObject, _>(at.clone()).await
                }
                Kind::Job => continue,
            };
            if let Err(e) = removed {
                tracing::warn!("taking {at} off the bus: {e}");
            }
        }
    }
}

/// Serves `object` at `at` on `conn`, listed in `managed` first (so that a client answering
/// zbus's `InterfacesAdded` with `GetManagedObjects` sees it); whether it is served.
async fn serve<I: zbus::object_server::Interface>(
    conn: &Connection,
    managed: &Managed,
    at: &str,
    kind: Kind,
    object: I,
) -> bool {
    managed.insert(path(at.to_string()), kind);
    match conn.object_server().at(path(at.to_string()), object).await {
        Ok(None) => true,
        Ok(Some(_)) => {
            tracing::warn!("serving {at}: something else is served there");
            false
        }
        Err(e) => {
            managed.remove(&path(at.to_string()));
            tracing::warn!("serving {at}: {e}");
            false
        }
    }
}

/// A buried object of `kind` at `at` serves again: listed and announced.
async fn announce_added(
    conn: &Connection,
    managed: &Managed,
    at: &str,
    kind: Kind,
    interface: &'static str,
    props: Vec<(&'static str, Variant<'static>)>,
) {
    managed.insert(path(at.to_string()), kind);
    let Ok(emitter) = SignalEmitter::new(conn, names::DAEMON1_PATH) else {
        return;
    };
    let added = HashMap::from([(
        zbus::names::InterfaceName::from_static_str_unchecked(interface),
        props.into_iter().collect::<HashMap<_, _>>(),
    )]);
    if let Err(e) = fdo::ObjectManager::interfaces_added(
        &emitter,
        zbus::ObjectPath::from_str_unchecked(at),
        added,
    )
    .await
    {
        tracing::warn!("announcing {at}: {e}");
    }
}

/// The path of the VM (`key` its id) or image (`key` its name).
fn object_path(kind: Kind, key: &str) -> String {
    match kind {
        Kind::Image => names::daemon_image_path(key),
        _ => names::daemon_vm_path(key),
    }
}

fn revive<T>(shown: &Shown<T>, info: T) {
    *shown.get() = info;
    shown.gone.store(false, Ordering::SeqCst);
}

/// A VM on the bus, `/org/banger/Daemon1/vm/<id>`.
pub struct VmObject {
    vms: Arc<Vms>,
    calls: InFlight,
    shown: Arc<Shown<VmInfo>>,
}

impl VmObject {
    /// What it shows, or NotFound when it was deleted.
    fn live(&self) -> Result<MutexGuard<'_, VmInfo>, BusError> {
        self.shown.live(|v| format!("VM {} ({})", v.name, v.id))
    }

    /// The VM's name now, or NotFound when it was deleted (a client may still hold the path
    /// after `InterfacesRemoved`).
    fn name_now(&self) -> Result<VmName, BusError> {
        let id = self.live()?.id.clone();
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
    fn id(&self) -> Result<String, BusError> {
        Ok(self.live()?.id.clone())
    }

    /// The VM's name (also the guest's hostname).
    #[zbus(property)]
    fn name(&self) -> Result<String, BusError> {
        Ok(self.live()?.name.clone())
    }

    /// The image it was made from.
    #[zbus(property)]
    fn image(&self) -> Result<String, BusError> {
        Ok(self.live()?.image.clone())
    }

    /// Virtual CPUs.
    #[zbus(property)]
    fn cpus(&self) -> Result<u32, BusError> {
        Ok(self.live()?.cpus)
    }

    /// Memory in MiB.
    #[zbus(property, name = "MemoryMiB")]
    fn memory_mib(&self) -> Result<u32, BusError> {
        Ok(self.live()?.memory_mib)
    }

    /// `running`, `starting`, `stopping`, `stopped`, `failed` or `unknown`, from the VM unit's
    /// ActiveState as systemd announces it.
    #[zbus(property)]
    fn state(&self) -> Result<String, BusError> {
        Ok(self.live()?.state.clone())
    }

    /// The guest's IPv4 address on the VM network.
    #[zbus(property)]
    fn address(&self) -> Result<String, BusError> {
        Ok(self.live()?.address.clone())
    }

    /// `qemu` or `firecracker` once started, "" before.
    #[zbus(property)]
    fn backend(&self) -> Result<String, BusError> {
        Ok(self.live()?.backend.clone())
    }

    /// The VM's systemd unit, `banger-vm-<id>.service`.
    #[zbus(property)]
    fn unit(&self) -> Result<String, BusError> {
        Ok(self.live()?.unit.clone())
    }

    /// When it was created, Unix seconds.
    #[zbus(property)]
    fn created_at(&self) -> Result<i64, BusError> {
        Ok(self.live()?.created)
    }

    /// The pinned SSH host key (`ssh-ed25519 BASE64`), "" until first contact.
    #[zbus(property)]
    fn host_key(&self) -> Result<String, BusError> {
        Ok(self.live()?.host_key.clone())
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
    shown: Arc<Shown<ImageInfo>>,
}

impl ImageObject {
    /// What it shows, or NotFound when it was deleted.
    fn live(&self) -> Result<MutexGuard<'_, ImageInfo>, BusError> {
        self.shown.live(|i| format!("image {:?}", i.name))
    }
}

#[zbus::interface(name = "org.banger.Daemon1.Image")]
impl ImageObject {
    /// The image's name.
    #[zbus(property)]
    fn name(&self) -> Result<String, BusError> {
        Ok(self.live()?.name.clone())
    }

    /// Bytes stored for it, all its files together.
    #[zbus(property)]
    fn bytes(&self) -> Result<u64, BusError> {
        Ok(self.live()?.bytes)
    }

    /// SHA-256 of its kernel, lowercase hex.
    #[zbus(property)]
    fn kernel_sha256(&self) -> Result<String, BusError> {
        Ok(self.live()?.kernel_sha256.clone())
    }

    /// SHA-256 of its initrd, "" for none.
    #[zbus(property)]
    fn initrd_sha256(&self) -> Result<String, BusError> {
        Ok(self.live()?.initrd_sha256.clone())
    }

    /// SHA-256 of its root filesystem, "" for none.
    #[zbus(property)]
    fn rootfs_sha256(&self) -> Result<String, BusError> {
        Ok(self.live()?.rootfs_sha256.clone())
    }

    /// When it was made, Unix seconds.
    #[zbus(property)]
    fn created_at(&self) -> Result<i64, BusError> {
        Ok(self.live()?.created)
    }

    /// The names of the VMs made from it.
    #[zbus(property)]
    fn used_by(&self) -> Result<Vec<String>, BusError> {
        Ok(self.live()?.used_by.clone())
    }

    /// Deletes the image (as Daemon1.DeleteImage); refused while a VM uses it.
    async fn delete(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let _call = self.calls.enter();
        check_caller(conn, &hdr).await?;
        let name = self.live()?.name.clone();
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
