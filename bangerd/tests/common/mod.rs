//! Test doubles shared by the daemon's tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use banger_api::options::StartVmmOptions;
use banger_api::wire::{BackendKind, CatalogSettings, VmState};
use bangerd::host::{HostFuture, VmHost};
use bangerd::vms::VmError;

/// A host whose VMs are entries in a map; it remembers every request.
#[derive(Default)]
pub struct FakeHost {
    /// Each VM's state.
    pub states: Mutex<HashMap<String, VmState>>,
    /// Every StartVmm.
    pub started: Mutex<Vec<(String, StartVmmOptions)>>,
    /// Every StopVmm.
    pub stopped: Mutex<Vec<String>>,
    /// When set, StartVmm fails with this.
    pub refuse_start: Mutex<Option<VmError>>,
}

impl FakeHost {
    /// Sets VM `id`'s state.
    pub fn set(&self, id: &str, state: VmState) {
        self.states.lock().unwrap().insert(id.into(), state);
    }
}

impl VmHost for FakeHost {
    fn vm_network(&self) -> HostFuture<'_, Result<(String, String, String), VmError>> {
        Box::pin(async {
            Ok((
                "banger0".to_string(),
                "172.30.0.0/24".to_string(),
                "172.30.0.1".to_string(),
            ))
        })
    }

    fn start_vmm<'a>(
        &'a self,
        id: &'a str,
        options: &'a StartVmmOptions,
    ) -> HostFuture<'a, Result<Option<BackendKind>, VmError>> {
        Box::pin(async move {
            if let Some(e) = self.refuse_start.lock().unwrap().take() {
                return Err(e);
            }
            self.started
                .lock()
                .unwrap()
                .push((id.to_string(), options.clone()));
            self.set(id, VmState::Running);
            Ok(Some(BackendKind::Qemu))
        })
    }

    fn stop_vmm<'a>(&'a self, id: &'a str) -> HostFuture<'a, Result<(), VmError>> {
        Box::pin(async move {
            self.stopped.lock().unwrap().push(id.to_string());
            self.set(id, VmState::Stopped);
            Ok(())
        })
    }

    fn vm_state<'a>(&'a self, id: &'a str) -> HostFuture<'a, VmState> {
        Box::pin(async move {
            self.states
                .lock()
                .unwrap()
                .get(id)
                .copied()
                .unwrap_or(VmState::Stopped)
        })
    }

    fn catalog_settings(&self) -> HostFuture<'_, Result<CatalogSettings, VmError>> {
        Box::pin(async { Ok(CatalogSettings::default()) })
    }
}
