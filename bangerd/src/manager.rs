//! `org.freedesktop.DBus.ObjectManager` at `/org/banger/Daemon1`, listing the live objects only.
//!
//! zbus's own manager lists every object under its path. The daemon keeps a deleted VM's or
//! image's object on the bus for a while after announcing `InterfacesRemoved` (see
//! [`crate::objects`]), so that a client still holding the path gets `org.banger.Error.NotFound`
//! rather than `UnknownObject`; `GetManagedObjects` must not show those. So the daemon says which
//! objects are live ([`Managed`]), and this manager reads each one's properties through the same
//! generated code a `Properties.GetAll` call runs.
//!
//! `InterfacesAdded` and `InterfacesRemoved` are still emitted by zbus when an object is added or
//! removed (it recognises a manager by its interface name), and by [`crate::objects`] when it
//! buries or revives one.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use zbus::names::{InterfaceName, OwnedInterfaceName};
use zbus::object_server::{Interface, SignalEmitter};
use zbus::zvariant::{OwnedVariant, Variant};
use zbus::{Connection, ObjectPath, ObjectServer, OwnedObjectPath, fdo};

use crate::daemon_job::DaemonJob1;
use crate::objects::{ImageObject, VmObject};

/// What kind of object is served at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `org.banger.Daemon1.Vm`
    Vm,
    /// `org.banger.Daemon1.Image`
    Image,
    /// `org.banger.Daemon1.Job`
    Job,
}

/// The objects `GetManagedObjects` lists, shared by those who serve them.
#[derive(Default)]
pub struct Managed {
    live: Mutex<BTreeMap<String, Kind>>,
}

impl Managed {
    /// `path` now serves a live object of `kind`.
    pub fn insert(&self, path: OwnedObjectPath, kind: Kind) {
        self.live.lock().unwrap().insert(path.to_string(), kind);
    }

    /// `path` is no longer listed; whether it was.
    pub fn remove(&self, path: &OwnedObjectPath) -> bool {
        self.live.lock().unwrap().remove(path.as_str()).is_some()
    }

    /// Whether `path` is listed.
    pub fn contains(&self, path: &OwnedObjectPath) -> bool {
        self.live.lock().unwrap().contains_key(path.as_str())
    }

    fn snapshot(&self) -> Vec<(OwnedObjectPath, Kind)> {
        self.live
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(p, k)| Some((OwnedObjectPath::try_from(p.as_str()).ok()?, *k)))
            .collect()
    }
}

/// The manager served at `/org/banger/Daemon1`.
pub struct ObjectManager {
    managed: Arc<Managed>,
}

impl ObjectManager {
    /// A manager listing what `managed` lists.
    pub fn new(managed: Arc<Managed>) -> Self {
        ObjectManager { managed }
    }
}

/// `I`'s properties at `path`, or None when nothing serves `I` there any more.
async fn properties_of<I: Interface>(
    server: &ObjectServer,
    conn: &Connection,
    path: &OwnedObjectPath,
) -> Option<(OwnedInterfaceName, HashMap<String, OwnedVariant>)> {
    let iface = server.interface::<_, I>(path).await.ok()?;
    let emitter = SignalEmitter::new(conn, path.clone()).ok()?;
    let object = iface.get().await;
    let props = object.get_all(server, conn, None, &emitter).await.ok()?;
    Some((I::name().into(), props))
}

#[zbus::interface(name = "org.freedesktop.DBus.ObjectManager")]
impl ObjectManager {
    /// Every live VM, image and job under this path with its properties.
    async fn get_managed_objects(
        &self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<fdo::ManagedObjects> {
        let mut objects = fdo::ManagedObjects::new();
        for (path, kind) in self.managed.snapshot() {
            let props = match kind {
                Kind::Vm => properties_of::<VmObject>(server, conn, &path).await,
                Kind::Image => properties_of::<ImageObject>(server, conn, &path).await,
                Kind::Job => properties_of::<DaemonJob1>(server, conn, &path).await,
            };
            // An object taken off the bus since the snapshot is not listed; nor is one
            // buried meanwhile.
            if let Some((interface, props)) = props
                && self.managed.contains(&path)
            {
                objects.insert(path, HashMap::from([(interface, props)]));
            }
        }
        Ok(objects)
    }

    /// An object was added, or gained interfaces.
    #[zbus(signal)]
    async fn interfaces_added(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces_and_properties: HashMap<InterfaceName<'_>, HashMap<&str, Variant<'_>>>,
    ) -> zbus::Result<()>;

    /// An object was removed, or lost interfaces.
    #[zbus(signal)]
    async fn interfaces_removed(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces: Cow<'_, [InterfaceName<'_>]>,
    ) -> zbus::Result<()>;
}
