//! `org.banger.Root1.Job`: the D-Bus adapter over one update job's status.

use std::collections::HashMap;
use std::sync::Arc;

use banger_api::error::BusError;
use banger_api::job::{JobResult, JobState};
use banger_api::names::{self, action};
use zbus::OwnedObjectPath;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::authz::{Authorizer, Trust};
use crate::limits::Caller;
use crate::root1::Root1;
use crate::update::job::{CancelAnswer, JobHandle, JobPublisher, PublishFuture, result_word};

/// The engine's jobs on the bus: the newest job's object at its path (only the newest stays),
/// `JobNew` and `JobRemoved`, and `PropertiesChanged` of the helper's `UpdateState` and
/// `ActiveJob`.
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
}

impl JobPublisher for BusJobs {
    fn job_new<'a>(&'a self, handle: &'a Arc<JobHandle>) -> PublishFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let server = self.conn.object_server();
            let old = self.exported.lock().unwrap().replace(handle.path.clone());
            if let Some(old) = old {
                let _ = server.remove::<Job1, _>(old.as_str()).await;
            }
            server
                .at(&handle.path, Job1::new(handle.clone(), self.authz.clone()))
                .await
                .map_err(|e| e.to_string())?;
            if let Ok(emitter) = self.root1() {
                let _ = Root1::job_new(&emitter, handle.status().id, handle.path.clone()).await;
            }
            Ok(())
        })
    }

    fn job_removed<'a>(
        &'a self,
        handle: &'a JobHandle,
        result: JobResult,
    ) -> PublishFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(emitter) = self.root1() {
                let _ = Root1::job_removed(
                    &emitter,
                    handle.status().id,
                    handle.path.clone(),
                    result.as_str(),
                )
                .await;
            }
        })
    }

    fn state_changed(
        &self,
        update_state: String,
        active_job: OwnedObjectPath,
    ) -> PublishFuture<'_, ()> {
        Box::pin(async move {
            let mut changed: HashMap<&str, zbus::Variant<'_>> = HashMap::new();
            changed.insert("UpdateState", zbus::Variant::from(update_state));
            changed.insert("ActiveJob", zbus::Variant::from(active_job));
            if let Ok(emitter) = self.root1() {
                let _ = zbus::fdo::Properties::properties_changed(
                    &emitter,
                    zbus::names::InterfaceName::from_static_str_unchecked(names::ROOT1_NAME),
                    changed,
                    std::borrow::Cow::Borrowed(&[]),
                )
                .await;
            }
        })
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
        self.handle.status().id
    }

    /// What the job does: `update`.
    #[zbus(property)]
    fn kind(&self) -> &str {
        "update"
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
