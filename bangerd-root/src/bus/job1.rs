//! `org.banger.Root1.Job`: the D-Bus adapter over one update job's status, and [`BusJobs`],
//! which puts the engine's jobs on the bus and publishes what changes in them.

use std::collections::HashMap;
use std::sync::Arc;

use banger_api::error::BusError;
use banger_api::job::{JobProperty, JobResult, JobState};
use banger_api::names::{self, action};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedObjectPath, Variant, fdo};

use super::authz::{Authorizer, Trust};
use super::root1::Root1;
use crate::limits::Caller;
use crate::update::job::{
    CancelAnswer, JobHandle, JobPublisher, JobStatus, PortFuture, result_word,
};

/// The object path of job `id`.
pub fn job_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(names::job_path(id)).expect("job paths are valid")
}

/// A job's properties as `PropertiesChanged` carries them, `Error` aside: signals reach every
/// user, so a change of the error is announced without its value (see [`Job1::error`]).
fn shown(s: &JobStatus) -> [(JobProperty, Variant<'static>); 8] {
    [
        (JobProperty::State, Variant::from(s.state.as_str())),
        (JobProperty::Stage, Variant::from(s.stage.as_str())),
        (JobProperty::Progress, Variant::from(s.progress)),
        (JobProperty::BytesDone, Variant::from(s.bytes_done)),
        (JobProperty::BytesTotal, Variant::from(s.bytes_total)),
        (
            JobProperty::TargetVersion,
            Variant::from(s.target_version.clone()),
        ),
        (
            JobProperty::FromVersion,
            Variant::from(s.from_version.clone()),
        ),
        (JobProperty::Result, Variant::from(result_word(s.result))),
    ]
}

/// The engine's jobs on the bus: the newest job's object at its path (only the newest stays),
/// `JobNew` and `JobRemoved`, each job's `PropertiesChanged` and `Finished`, and
/// `PropertiesChanged` of the helper's `UpdateState` (at every stage) and `ActiveJob`.
pub struct BusJobs {
    conn: zbus::Connection,
    authz: Arc<Authorizer>,
    exported: std::sync::Mutex<Option<OwnedObjectPath>>,
}

impl BusJobs {
    /// Jobs published on `conn`, their `Error` shown to whom `authz` says.
    pub fn new(conn: zbus::Connection, authz: Arc<Authorizer>) -> Arc<Self> {
        Arc::new(BusJobs {
            conn,
            authz,
            exported: std::sync::Mutex::new(None),
        })
    }

    fn root1(&self) -> zbus::Result<SignalEmitter<'static>> {
        SignalEmitter::new(&self.conn, names::ROOT1_PATH)
    }

    fn job(&self, id: u32) -> zbus::Result<SignalEmitter<'static>> {
        SignalEmitter::new(&self.conn, job_path(id))
    }

    /// Announces Root1's `UpdateState` (and `ActiveJob` with `active_job`).
    async fn root1_changed(&self, active_job: bool) {
        let Ok(root1) = self
            .conn
            .object_server()
            .interface::<_, Root1>(names::ROOT1_PATH)
            .await
        else {
            // Not served (the recovery engine): nobody to tell.
            return;
        };
        let emitter = root1.signal_emitter();
        let root1 = root1.get().await;
        let _ = root1.update_state_changed(emitter).await;
        if active_job {
            let _ = root1.active_job_changed(emitter).await;
        }
    }
}

impl JobPublisher for BusJobs {
    fn job_new<'a>(&'a self, handle: &'a Arc<JobHandle>) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let server = self.conn.object_server();
            let path = job_path(handle.id);
            let old = self.exported.lock().unwrap().replace(path.clone());
            if let Some(old) = old {
                let _ = server.remove::<Job1, _>(old.as_str()).await;
            }
            server
                .at(&path, Job1::new(handle.clone(), self.authz.clone()))
                .await
                .map_err(|e| e.to_string())?;
            if let Ok(emitter) = self.root1() {
                let _ = Root1::job_new(&emitter, handle.id, path).await;
            }
            Ok(())
        })
    }

    fn job_changed<'a>(
        &'a self,
        handle: &'a JobHandle,
        before: &'a JobStatus,
        after: &'a JobStatus,
    ) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let changed: HashMap<&str, Variant<'_>> = shown(before)
                .into_iter()
                .zip(shown(after))
                .filter(|((_, old), (_, new))| old != new)
                .map(|(_, (property, new))| (property.as_str(), new))
                .collect();
            let invalidated: &[&str] = if before.error != after.error {
                &[JobProperty::Error.as_str()]
            } else {
                &[]
            };
            if changed.is_empty() && invalidated.is_empty() {
                return;
            }
            if before.stage != after.stage {
                // UpdateState is the running job's stage.
                self.root1_changed(false).await;
            }
            if let Ok(emitter) = self.job(handle.id) {
                let _ = fdo::Properties::properties_changed(
                    &emitter,
                    zbus::names::InterfaceName::from_static_str_unchecked(names::JOB_INTERFACE),
                    changed,
                    std::borrow::Cow::Borrowed(invalidated),
                )
                .await;
            }
        })
    }

    fn job_finished<'a>(&'a self, handle: &'a JobHandle, result: JobResult) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let public_error = if handle.status().error.is_empty() {
                ""
            } else {
                names::JOB_ERROR_WITHHELD
            };
            if let Ok(emitter) = self.job(handle.id) {
                let _ =
                    Job1::finished(&emitter, result.is_success(), result.as_str(), public_error)
                        .await;
            }
        })
    }

    fn job_removed<'a>(&'a self, handle: &'a JobHandle, result: JobResult) -> PortFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(emitter) = self.root1() {
                let _ =
                    Root1::job_removed(&emitter, handle.id, job_path(handle.id), result.as_str())
                        .await;
            }
        })
    }

    fn state_changed(&self) -> PortFuture<'_, ()> {
        Box::pin(self.root1_changed(true))
    }
}

/// The object served at `/org/banger/Root1/job/<id>`.
pub struct Job1 {
    handle: Arc<JobHandle>,
    authz: Arc<Authorizer>,
}

impl Job1 {
    /// An adapter over `handle`.
    pub fn new(handle: Arc<JobHandle>, authz: Arc<Authorizer>) -> Self {
        Job1 { handle, authz }
    }

    /// Whether the job has finished already (no authorization needed to be told so).
    fn answer_now(&self) -> CancelAnswer {
        let st = self.handle.status();
        if st.state == JobState::Finished {
            CancelAnswer::Finished(st.result)
        } else {
            CancelAnswer::Accepted
        }
    }
}

fn finished(result: Option<JobResult>) -> BusError {
    BusError::Busy(format!(
        "the job has already finished ({})",
        result_word(result)
    ))
}

#[zbus::interface(name = "org.banger.Root1.Job")]
impl Job1 {
    /// Job id.
    #[zbus(property)]
    fn id(&self) -> u32 {
        self.handle.id
    }

    /// What the job does: `update`.
    #[zbus(property)]
    fn kind(&self) -> &str {
        banger_api::job::JOB_KIND_UPDATE
    }

    /// `running` or `finished`.
    #[zbus(property)]
    fn state(&self) -> String {
        self.handle.status().state.as_str().into()
    }

    /// Current stage: checking, downloading, verifying, staging, sanity-check,
    /// waiting-for-operations, swapping, restarting-daemon, restarting-helper,
    /// verifying-install, finalizing, rolling-back, done.
    #[zbus(property)]
    fn stage(&self) -> String {
        self.handle.status().stage.as_str().into()
    }

    /// Progress from 0 to 1.
    #[zbus(property)]
    fn progress(&self) -> f64 {
        self.handle.status().progress
    }

    /// Bytes downloaded so far.
    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.handle.status().bytes_done
    }

    /// Bytes to download.
    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.handle.status().bytes_total
    }

    /// Version being installed ("" until known).
    #[zbus(property)]
    fn target_version(&self) -> String {
        self.handle.status().target_version
    }

    /// Version installed when the job started.
    #[zbus(property)]
    #[allow(clippy::wrong_self_convention)]
    fn from_version(&self) -> String {
        self.handle.status().from_version
    }

    /// "" while running; then updated, up-to-date, dry-run, rolled-back, failed or canceled.
    #[zbus(property)]
    fn result(&self) -> String {
        result_word(self.handle.status().result).into()
    }

    /// "" or why the job failed or rolled back. Only root, the install owner and the job's
    /// initiator read the reason itself (it can name the owner's VMs and the reasons given for
    /// holding off updates); anyone else reads a sentence saying so. A change is announced
    /// without its value (`PropertiesChanged` reaches every user).
    #[zbus(property(emits_changed_signal = "invalidates"))]
    async fn error(&self, #[zbus(header)] hdr: Option<Header<'_>>) -> String {
        let error = self.handle.status().error;
        if error.is_empty() {
            return error;
        }
        let allowed = match &hdr {
            Some(hdr) => match self.authz.caller(hdr).await {
                Ok(Caller::Trusted) => true,
                Ok(Caller::Other(uid)) => uid == self.handle.initiator_uid,
                Err(_) => false,
            },
            None => false,
        };
        if allowed {
            error
        } else {
            names::JOB_ERROR_WITHHELD.to_string()
        }
    }

    /// Cancels the job before the point of no return (before it starts swapping files). The
    /// job's initiator may cancel without a password; others need org.banger.update.cancel.
    /// Safe to repeat.
    async fn cancel(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BusError> {
        if let CancelAnswer::Finished(result) = self.answer_now() {
            return Err(finished(result));
        }
        let uid = self.authz.caller_uid(&hdr).await?;
        if uid != self.handle.initiator_uid {
            // This may wait for a person to type a password: the job's stage is only looked at
            // once polkit has answered.
            self.authz
                .authorize(&hdr, action::UPDATE_CANCEL, Trust::PolkitOnly)
                .await?;
        }
        match self.handle.request_cancel() {
            CancelAnswer::Accepted => Ok(()),
            CancelAnswer::Finished(result) => Err(finished(result)),
            CancelAnswer::PastPointOfNoReturn(stage) => Err(BusError::Busy(format!(
                "the update is past the point of no return (stage {stage}): it will finish or \
                 roll back on its own"
            ))),
        }
    }

    /// The job ended: success, result (as in Result) and error.
    #[zbus(signal)]
    async fn finished(
        emitter: &SignalEmitter<'_>,
        success: bool,
        result: &str,
        error: &str,
    ) -> zbus::Result<()>;
}
