//! The state of one update job, shared between the engine (which changes it) and the
//! `org.banger.Root1.Job` object (which shows it). Every change is published as
//! `PropertiesChanged` on the job's object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use zbus::{Connection, OwnedObjectPath, Variant};

/// The job's interface name.
pub const JOB_INTERFACE: &str = "org.banger.Root1.Job";

/// Everything a client can read about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// Id.
    pub id: u32,
    /// `running` or `finished`.
    pub state: String,
    /// Current stage.
    pub stage: String,
    /// 0..1.
    pub progress: f64,
    /// Bytes downloaded.
    pub bytes_done: u64,
    /// Bytes to download.
    pub bytes_total: u64,
    /// Version being installed ("" until known).
    pub target_version: String,
    /// Version installed at the start.
    pub from_version: String,
    /// Final result, "" while running.
    pub result: String,
    /// Why it failed, "".
    pub error: String,
}

/// A job: its status, who started it, and its cancellation flag.
pub struct JobHandle {
    /// Object path.
    pub path: OwnedObjectPath,
    /// UID of the caller that started it (may cancel without a password).
    pub initiator_uid: u32,
    /// Set to ask the engine to stop before the point of no return.
    pub cancel: AtomicBool,
    /// Whether the job is past the point of no return. Taken together with `cancel` (see
    /// [`JobHandle::request_cancel`] and [`JobHandle::pass_point_of_no_return`]), so a cancel
    /// is either honoured or refused, never accepted and then ignored.
    past_point_of_no_return: Mutex<bool>,
    status: Mutex<JobStatus>,
    conn: Connection,
}

/// The answer to a cancel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    /// The job will stop before the point of no return and end `canceled`.
    Accepted,
    /// Too late: the job is past the point of no return (at this stage).
    PastPointOfNoReturn(String),
    /// The job has already finished (with this result).
    Finished(String),
}

/// The object path of job `id`.
pub fn job_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{}/job/{id}", banger_api::names::ROOT1_PATH))
        .expect("job paths are valid")
}

impl JobHandle {
    /// A new running job.
    pub fn new(conn: Connection, id: u32, initiator_uid: u32, from_version: &str) -> Arc<Self> {
        Arc::new(JobHandle {
            path: job_path(id),
            initiator_uid,
            cancel: AtomicBool::new(false),
            past_point_of_no_return: Mutex::new(false),
            status: Mutex::new(JobStatus {
                id,
                state: "running".into(),
                stage: "checking".into(),
                progress: 0.0,
                bytes_done: 0,
                bytes_total: 0,
                target_version: String::new(),
                from_version: from_version.into(),
                result: String::new(),
                error: String::new(),
            }),
            conn,
        })
    }

    /// A copy of the status.
    pub fn status(&self) -> JobStatus {
        self.status.lock().unwrap().clone()
    }

    /// Asks the job to stop, unless it has finished or passed the point of no return.
    pub fn request_cancel(&self) -> CancelAnswer {
        let past = self.past_point_of_no_return.lock().unwrap();
        let st = self.status();
        if st.state == "finished" {
            CancelAnswer::Finished(st.result)
        } else if *past {
            CancelAnswer::PastPointOfNoReturn(st.stage)
        } else {
            self.cancel.store(true, Ordering::SeqCst);
            CancelAnswer::Accepted
        }
    }

    /// Passes the point of no return, unless a cancel was accepted first (then `false`: the
    /// job must end `canceled` with nothing changed).
    pub fn pass_point_of_no_return(&self) -> bool {
        let mut past = self.past_point_of_no_return.lock().unwrap();
        if self.cancel.load(Ordering::SeqCst) {
            return false;
        }
        *past = true;
        true
    }

    /// Changes the status and publishes what changed.
    pub async fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        let (before, after) = {
            let mut s = self.status.lock().unwrap();
            let before = s.clone();
            f(&mut s);
            (before, s.clone())
        };
        let mut changed: HashMap<&str, Variant<'_>> = HashMap::new();
        if before.state != after.state {
            changed.insert("State", Variant::from(after.state.clone()));
        }
        if before.stage != after.stage {
            changed.insert("Stage", Variant::from(after.stage.clone()));
        }
        if before.progress != after.progress {
            changed.insert("Progress", Variant::from(after.progress));
        }
        if before.bytes_done != after.bytes_done {
            changed.insert("BytesDone", Variant::from(after.bytes_done));
        }
        if before.bytes_total != after.bytes_total {
            changed.insert("BytesTotal", Variant::from(after.bytes_total));
        }
        if before.target_version != after.target_version {
            changed.insert("TargetVersion", Variant::from(after.target_version.clone()));
        }
        if before.from_version != after.from_version {
            changed.insert("FromVersion", Variant::from(after.from_version.clone()));
        }
        if before.result != after.result {
            changed.insert("Result", Variant::from(after.result.clone()));
        }
        // The error is private (see `Job1::error`): signals go to everyone, so a change is only
        // announced, and whoever may read it reads it.
        let mut invalidated: Vec<&str> = Vec::new();
        if before.error != after.error {
            invalidated.push("Error");
        }
        if changed.is_empty() && invalidated.is_empty() {
            return;
        }
        let _ = self
            .conn
            .emit_signal(
                None::<&str>,
                &self.path,
                "org.freedesktop.DBus.Properties",
                "PropertiesChanged",
                &(JOB_INTERFACE, changed, invalidated),
            )
            .await;
    }

    /// Moves to `stage` at `progress`.
    pub async fn stage(&self, stage: &str, progress: f64) {
        tracing::info!(job = self.status().id, stage, "update stage");
        self.update(|s| {
            s.stage = stage.into();
            s.progress = progress;
        })
        .await;
    }

    /// Marks the job finished and emits `Finished`.
    pub async fn finish(&self, result: &str, error: &str) {
        tracing::info!(job = self.status().id, result, error, "update finished");
        self.update(|s| {
            s.state = "finished".into();
            s.stage = "done".into();
            s.progress = 1.0;
            s.result = result.into();
            s.error = error.into();
        })
        .await;
        let success = matches!(result, "updated" | "up-to-date" | "dry-run");
        let public_error = if error.is_empty() {
            ""
        } else {
            banger_api::names::JOB_ERROR_WITHHELD
        };
        let _ = self
            .conn
            .emit_signal(
                None::<&str>,
                &self.path,
                JOB_INTERFACE,
                "Finished",
                &(success, result, public_error),
            )
            .await;
    }
}
