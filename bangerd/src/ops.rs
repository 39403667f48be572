//! The registry of operations the daemon is running (VM creation, image import, …).
//!
//! The update engine refuses to swap binaries while anything here is in flight, so every
//! long-running piece of work registers itself with [`Operations::begin`] and holds the guard
//! until it is done. The store keeps a record, so a daemon that died mid-operation says so on
//! the next start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use banger_api::time::unix_now;
use banger_api::wire::{OperationInfo, OperationStage};

use crate::store::{Store, StoreError};

/// How many finished operations `list` keeps showing.
const KEEP_FINISHED: usize = 32;

/// The registry.
pub struct Operations {
    store: Arc<Mutex<Store>>,
    live: Mutex<BTreeMap<String, OperationInfo>>,
    finished: Mutex<Vec<OperationInfo>>,
    next: AtomicU64,
}

/// An operation in flight; finishing or dropping it removes it from the in-flight set.
pub struct OperationGuard {
    ops: Arc<Operations>,
    id: String,
    finished: bool,
}

impl Operations {
    /// A registry persisting to `store`; marks what a previous daemon left unfinished.
    pub fn new(store: Arc<Mutex<Store>>) -> Result<Arc<Self>, StoreError> {
        let interrupted = store.lock().unwrap().interrupt_unfinished(unix_now())?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "operations left unfinished by a previous daemon"
            );
        }
        Ok(Arc::new(Operations {
            store,
            live: Mutex::new(BTreeMap::new()),
            finished: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
        }))
    }

    /// Registers a new operation of `kind`.
    pub fn begin(self: &Arc<Self>, kind: &str) -> Result<OperationGuard, StoreError> {
        let started = unix_now();
        let id = format!("op-{started}-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.store.lock().unwrap().insert_operation(
            &id,
            kind,
            OperationStage::Started.as_str(),
            started,
        )?;
        self.live.lock().unwrap().insert(
            id.clone(),
            OperationInfo {
                id: id.clone(),
                kind: kind.into(),
                stage: OperationStage::Started.as_str().into(),
                started,
                done: false,
            },
        );
        Ok(OperationGuard {
            ops: self.clone(),
            id,
            finished: false,
        })
    }

    /// Operations in flight, oldest first.
    pub fn in_flight(&self) -> Vec<OperationInfo> {
        let mut v: Vec<_> = self.live.lock().unwrap().values().cloned().collect();
        v.sort_by_key(|o| (o.started, o.id.clone()));
        v
    }

    /// In-flight operations followed by recently finished ones.
    pub fn list(&self) -> Vec<OperationInfo> {
        let mut v = self.in_flight();
        v.extend(self.finished.lock().unwrap().iter().rev().cloned());
        v
    }

    fn set_stage(&self, id: &str, stage: &str) {
        if let Some(op) = self.live.lock().unwrap().get_mut(id) {
            op.stage = stage.into();
        }
        if let Err(e) = self.store.lock().unwrap().update_operation(id, stage, None) {
            tracing::warn!(id, "recording stage: {e}");
        }
    }

    fn finish(&self, id: &str, stage: &str) {
        let Some(mut op) = self.live.lock().unwrap().remove(id) else {
            return;
        };
        op.stage = stage.into();
        op.done = true;
        if let Err(e) = self
            .store
            .lock()
            .unwrap()
            .update_operation(id, stage, Some(unix_now()))
        {
            tracing::warn!(id, "recording finish: {e}");
        }
        let mut finished = self.finished.lock().unwrap();
        finished.push(op);
        if finished.len() > KEEP_FINISHED {
            finished.remove(0);
        }
    }
}

impl OperationGuard {
    /// The operation's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Moves the operation to `stage`.
    pub fn stage(&self, stage: &str) {
        self.ops.set_stage(&self.id, stage);
    }

    /// Finishes the operation with a final stage.
    pub fn finish(mut self, stage: OperationStage) {
        self.ops.finish(&self.id, stage.as_str());
        self.finished = true;
    }
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.ops
                .finish(&self.id, OperationStage::Abandoned.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Arc<Operations>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, Operations::new(Arc::new(Mutex::new(store))).unwrap())
    }

    #[test]
    fn begin_stage_finish() {
        let (_d, ops) = registry();
        let g = ops.begin("vm.create").unwrap();
        g.stage("booting");
        let live = ops.in_flight();
        assert_eq!(live.len(), 1);
        assert_eq!(
            (live[0].kind.as_str(), live[0].stage.as_str()),
            ("vm.create", "booting")
        );
        g.finish(OperationStage::Done);
        assert!(ops.in_flight().is_empty());
        let all = ops.list();
        assert_eq!(all.len(), 1);
        assert!(all[0].done);
        assert_eq!(all[0].stage, OperationStage::Done.as_str());
    }

    #[test]
    fn dropped_guard_is_abandoned() {
        let (_d, ops) = registry();
        drop(ops.begin("image.import").unwrap());
        assert!(ops.in_flight().is_empty());
        assert_eq!(ops.list()[0].stage, "abandoned");
    }

    #[test]
    fn finished_history_is_bounded() {
        let (_d, ops) = registry();
        for _ in 0..(KEEP_FINISHED + 5) {
            ops.begin("x").unwrap().finish(OperationStage::Done);
        }
        assert_eq!(ops.list().len(), KEEP_FINISHED);
    }
}
