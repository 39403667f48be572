//! The state of one update job, shared between the engine (which changes it) and the
//! `org.banger.Root1.Job` object (which shows it). Every change is published as
//! `PropertiesChanged` on the job's object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use banger_api::job::{JobResult, JobState, Stage};
use zbus::{Connection, OwnedObjectPath, Variant};

use banger_api::names::JOB_INTERFACE;

/// Everything a client can read about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// Id.
    pub id: u32,
    /// Running or finished.
    pub state: JobState,
    /// Current stage.
    pub stage: Stage,
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
    /// Final result, `None` while running.
    pub result: Option<JobResult>,
    /// Why it failed, "".
    pub error: String,
}

impl JobStatus {
    /// Ends the job with `result`.
    pub fn end(&mut self, result: JobResult, error: &str) {
        self.state = JobState::Finished;
        self.stage = Stage::Done;
        self.progress = 1.0;
        self.result = Some(result);
        self.error = error.into();
    }
}

/// `Job.Result` on the bus: "" while the job runs.
pub fn result_word(result: Option<JobResult>) -> &'static str {
    result.map_or("", JobResult::as_str)
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
    PastPointOfNoReturn(Stage),
    /// The job has already finished (with this result).
    Finished(Option<JobResult>),
}

/// A boxed future of a [`JobPublisher`] call.
pub type PublishFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where the engine makes its jobs visible. The engine decides when; the bus layer
/// ([`crate::job1::BusJobs`]) decides how (the job's object, `JobNew`, `JobRemoved`, the
/// helper's `PropertiesChanged`), so the engine exports nothing itself.
pub trait JobPublisher: Send + Sync {
    /// A job was created: make it readable, then announce it. Done before `Update` returns
    /// the job's path, so the path is readable as soon as a client has it.
    fn job_new<'a>(&'a self, handle: &'a Arc<JobHandle>) -> PublishFuture<'a, Result<(), String>>;

    /// A job ended with `result` (its status already says so).
    fn job_removed<'a>(&'a self, handle: &'a JobHandle, result: JobResult)
    -> PublishFuture<'a, ()>;

    /// The helper's `UpdateState` or `ActiveJob` changed to these.
    fn state_changed(
        &self,
        update_state: String,
        active_job: OwnedObjectPath,
    ) -> PublishFuture<'_, ()>;
}

/// The object path of job `id`.
pub fn job_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{}/{id}", banger_api::names::JOB_PATH_NAMESPACE))
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
                state: JobState::Running,
                stage: Stage::Checking,
                progress: 0.0,
                bytes_done: 0,
                bytes_total: 0,
                target_version: String::new(),
                from_version: from_version.into(),
                result: None,
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
        if st.state == JobState::Finished {
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
            changed.insert("State", Variant::from(after.state.as_str()));
        }
        if before.stage != after.stage {
            changed.insert("Stage", Variant::from(after.stage.as_str()));
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
            changed.insert("Result", Variant::from(result_word(after.result)));
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
    pub async fn stage(&self, stage: Stage, progress: f64) {
        tracing::info!(
            job = self.status().id,
            stage = stage.as_str(),
            "update stage"
        );
        self.update(|s| {
            s.stage = stage;
            s.progress = progress;
        })
        .await;
    }

    /// Marks the job finished and emits `Finished`.
    pub async fn finish(&self, result: JobResult, error: &str) {
        tracing::info!(
            job = self.status().id,
            result = result.as_str(),
            error,
            "update finished"
        );
        self.update(|s| s.end(result, error)).await;
        let success = result.is_success();
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
                &(success, result.as_str(), public_error),
            )
            .await;
    }
}
