//! The daemon core: the store and the operation registry, with no knowledge of D-Bus.

use std::sync::{Arc, Mutex};

use banger_api::wire::{DoctorCheck, Level};
use banger_host::install::{INSTALL_TOML, InstallMeta};

use crate::ops::Operations;
use crate::store::{self, Store, StoreError};

/// The owner daemon's state.
pub struct Daemon {
    store: Arc<Mutex<Store>>,
    ops: Arc<Operations>,
}

impl Daemon {
    /// Opens (and migrates) the store at `path` and restores the operation registry.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let store = Arc::new(Mutex::new(Store::open(path)?));
        let ops = Operations::new(store.clone())?;
        Ok(Daemon { store, ops })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Mutex<Store>> {
        &self.store
    }

    /// The operation registry.
    pub fn operations(&self) -> &Arc<Operations> {
        &self.ops
    }

    /// Health checks from the daemon's side.
    pub fn doctor(&self) -> Vec<DoctorCheck> {
        let mut out = Vec::new();
        let store = self.store.lock().unwrap();
        out.push(match store.version() {
            Ok(v) if v == store::latest_version() => DoctorCheck::new(
                Level::Pass,
                "store",
                format!("{} at schema v{v}", store.path().display()),
            ),
            Ok(v) => DoctorCheck::new(
                Level::Fail,
                "store",
                format!(
                    "{} at schema v{v}, expected v{}: restart bangerd",
                    store.path().display(),
                    store::latest_version()
                ),
            ),
            Err(e) => DoctorCheck::new(Level::Fail, "store", e.to_string()),
        });
        drop(store);
        let in_flight = self.ops.in_flight();
        out.push(DoctorCheck::new(
            Level::Pass,
            "operations",
            if in_flight.is_empty() {
                "none in flight".to_string()
            } else {
                format!(
                    "{} in flight: {}",
                    in_flight.len(),
                    in_flight
                        .iter()
                        .map(|o| format!("{} ({}, {})", o.id, o.kind, o.stage))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ));
        let me = banger_host::users::current_uid();
        out.push(match InstallMeta::read(std::path::Path::new(INSTALL_TOML)) {
            Ok(meta) if meta.owner.uid == me => DoctorCheck::new(
                Level::Pass,
                "daemon user",
                format!("bangerd runs as the owner {}", meta.owner),
            ),
            Ok(meta) => DoctorCheck::new(
                Level::Fail,
                "daemon user",
                format!(
                    "bangerd runs as uid {me} but the install's owner is {}: reinstall with --owner",
                    meta.owner
                ),
            ),
            Err(e) => DoctorCheck::new(Level::Warn, "daemon user", e.to_string()),
        });
        out
    }
}
