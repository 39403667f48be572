//! The state of one update job, shared between the engine (which changes it) and the bus
//! layer (which shows it). Every change goes to the job's [`JobPublisher`] as the status
//! before and after; this module never exports or emits anything itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use banger_api::job::{JobResult, JobState, Stage};

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
    /// The job's id.
    pub id: u32,
    /// UID of the caller that started it (may cancel without a password).
    pub initiator_uid: u32,
    /// Set to ask the engine to stop before the point of no return.
    pub cancel: AtomicBool,
    /// Whether the job is past the point of no return. Taken together with `cancel` (see
    /// [`JobHandle::request_cancel`] and [`JobHandle::pass_point_of_no_return`]), so a cancel
    /// is either honoured or refused, never accepted and then ignored.
    past_point_of_no_return: Mutex<bool>,
    status: Mutex<JobStatus>,
    events: Arc<dyn JobPublisher>,
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

/// A boxed future returned by the engine's ports ([`JobPublisher`], [`super::daemon::DaemonPeer`]).
pub type PortFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where the engine makes its jobs and their changes visible. The engine decides when; the bus
/// layer ([`crate::bus::job1::BusJobs`]) decides how (the job's object, `JobNew`,
/// `PropertiesChanged`, `Finished`, `JobRemoved`, the helper's own properties), so the engine
/// exports and emits nothing itself.
pub trait JobPublisher: Send + Sync {
    /// A job was created: make it readable, then announce it. Done before `Update` returns
    /// the job's path, so the path is readable as soon as a client has it.
    fn job_new<'a>(&'a self, handle: &'a Arc<JobHandle>) -> PortFuture<'a, Result<(), String>>;

    /// The job's status changed from `before` to `after` (they differ).
    fn job_changed<'a>(
        &'a self,
        handle: &'a JobHandle,
        before: &'a JobStatus,
        after: &'a JobStatus,
    ) -> PortFuture<'a, ()>;

    /// The job ended with `result` (its status already says so), after its last change.
    fn job_finished<'a>(&'a self, handle: &'a JobHandle, result: JobResult) -> PortFuture<'a, ()>;

    /// The job is no longer the helper's concern: it ended with `result`.
    fn job_removed<'a>(&'a self, handle: &'a JobHandle, result: JobResult) -> PortFuture<'a, ()>;

    /// The helper's update state (`idle` or the running job's stage) or its active job (the
    /// running job's id, if any) may have changed.
    fn state_changed(&self) -> PortFuture<'_, ()>;
}

/// A publisher that shows nothing, for jobs nobody follows (and for tests).
pub struct Unpublished;

impl JobPublisher for Unpublished {
    fn job_new<'a>(&'a self, _: &'a Arc<JobHandle>) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn job_changed<'a>(
        &'a self,
        _: &'a JobHandle,
        _: &'a JobStatus,
        _: &'a JobStatus,
    ) -> PortFuture<'a, ()> {
        Box::pin(async {})
    }
    fn job_finished<'a>(&'a self, _: &'a JobHandle, _: JobResult) -> PortFuture<'a, ()> {
        Box::pin(async {})
    }
    fn job_removed<'a>(&'a self, _: &'a JobHandle, _: JobResult) -> PortFuture<'a, ()> {
        Box::pin(async {})
    }
    fn state_changed(&self) -> PortFuture<'_, ()> {
        Box::pin(async {})
    }
}

impl JobHandle {
    /// A new running job.
    pub fn new(
        events: Arc<dyn JobPublisher>,
        id: u32,
        initiator_uid: u32,
        from_version: &str,
    ) -> Arc<Self> {
        Arc::new(JobHandle {
            id,
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
            events,
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

    /// Changes the status and publishes the change, if there is one.
    pub async fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        let (before, after) = {
            let mut s = self.status.lock().unwrap();
            let before = s.clone();
            f(&mut s);
            (before, s.clone())
        };
        if before != after {
            self.events.job_changed(self, &before, &after).await;
        }
    }

    /// Moves to `stage` at `progress`.
    pub async fn stage(&self, stage: Stage, progress: f64) {
        tracing::info!(job_id = self.id, stage = stage.as_str(), "update stage");
        self.update(|s| {
            s.stage = stage;
            s.progress = progress;
        })
        .await;
    }

    /// Marks the job finished and publishes its end.
    /// The end is written to the journal with the `MESSAGE_ID` of its outcome
    /// (`banger_api::journal`), at warning for a rollback and error for a failure.
    pub async fn finish(&self, result: JobResult, error: &str) {
        self.log_outcome(result, error);
        self.finish_again(result, error).await;
    }

    /// Marks the job finished and publishes its end, without writing the outcome to the
    /// journal: for a job whose end was recorded (and logged) before, re-announced by a
    /// restarted helper, so that `journalctl MESSAGE_ID=…` lists each end once.
    pub async fn finish_again(&self, result: JobResult, error: &str) {
        self.update(|s| s.end(result, error)).await;
        self.events.job_finished(self, result).await;
    }

    /// Writes the job's outcome to the journal, with its `MESSAGE_ID` and fields.
    pub fn log_outcome(&self, result: JobResult, error: &str) {
        let st = self.status();
        let (id, from, to) = (
            self.id,
            st.from_version.as_str(),
            st.target_version.as_str(),
        );
        macro_rules! outcome {
            ($level:ident, $($message:tt)+) => {
                tracing::$level!(
                    message_id = banger_api::journal::update_outcome(result),
                    job_id = id,
                    result = result.as_str(),
                    from_version = from,
                    version = to,
                    initiator_uid = self.initiator_uid,
                    error,
                    $($message)+
                )
            };
        }
        match result {
            JobResult::Updated => outcome!(info, "update job {id}: updated v{from} → v{to}"),
            JobResult::RolledBack => outcome!(
                warn,
                "update job {id}: v{to} rolled back, v{from} is installed again: {error}"
            ),
            JobResult::Failed => outcome!(error, "update job {id} failed: {error}"),
            _ => outcome!(info, "update job {id} ended: {}", result.as_str()),
        }
    }
}
