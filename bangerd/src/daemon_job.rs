//! `org.banger.Daemon1.Job`: the D-Bus adapter over the daemon's jobs ([`crate::jobs`]). Each
//! job is served at `/org/banger/Daemon1/job/<id>` from before its work starts until it is no
//! longer kept; a task per job follows its status and emits `PropertiesChanged` (byte counts at
//! most ten a second, every stage change in order, each naming only what changed) and
//! `Finished` when it ends.
//!
//! Signals reach every user on the system bus, so `Error` changes are announced without their
//! value and `Finished` carries the withheld sentence; the owner and root read `Job.Error`
//! (nobody else may call the daemon at all).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::error::BusError;
use banger_api::job::{DaemonJobProperty as JobProperty, JobState};
use banger_api::names;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedObjectPath, Variant, fdo};

use crate::daemon1::check_caller;
use crate::jobs::{Job, JobStatus, Jobs};
use crate::manager::{Kind, Managed};

/// Fewest milliseconds between two `PropertiesChanged` of one job.
const SIGNAL_SPACING: Duration = Duration::from_millis(100);

/// The object path of job `id`.
pub fn job_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(names::daemon_job_path(id)).expect("job paths are valid")
}

/// The properties `PropertiesChanged` carries with their values (`Error` is only invalidated).
fn shown(s: &JobStatus) -> [(JobProperty, Variant<'static>); 6] {
    [
        (JobProperty::State, Variant::from(s.state.as_str())),
        (JobProperty::Stage, Variant::from(s.stage.clone())),
        (JobProperty::Progress, Variant::from(s.progress)),
        (JobProperty::BytesDone, Variant::from(s.bytes_done)),
        (JobProperty::BytesTotal, Variant::from(s.bytes_total)),
        (JobProperty::Result, Variant::from(result_word(s))),
    ]
}

fn result_word(s: &JobStatus) -> &'static str {
    s.result.map(|r| r.as_str()).unwrap_or("")
}

/// The job objects on the bus.
pub struct JobObjects {
    exported: Mutex<HashSet<u32>>,
    managed: Arc<Managed>,
}

impl JobObjects {
    /// No jobs yet; those served are listed in `managed` for the ObjectManager.
    pub fn new(managed: Arc<Managed>) -> Self {
        JobObjects {
            exported: Mutex::default(),
            managed,
        }
    }

    /// What the ObjectManager lists.
    pub fn managed(&self) -> Arc<Managed> {
        self.managed.clone()
    }

    /// Serves `job` on `conn` (and takes off the bus the jobs `jobs` no longer keeps), then
    /// follows it in a task of its own. Call it before the job's work starts, so that its path
    /// answers as soon as a client learns it.
    pub async fn serve(&self, conn: &Connection, jobs: &Jobs, job: &Arc<Job>) -> zbus::Result<()> {
        let server = conn.object_server();
        let gone: Vec<u32> = {
            let mut exported = self.exported.lock().unwrap();
            let gone: Vec<u32> = exported
                .iter()
                .copied()
                .filter(|id| !jobs.is_kept(*id))
                .collect();
            for id in &gone {
                exported.remove(id);
            }
            gone
        };
        for id in gone {
            self.managed.remove(&job_path(id));
            let _ = server.remove::<DaemonJob1, _>(job_path(id)).await;
        }
        self.managed.insert(job_path(job.id), Kind::Job);
        if let Err(e) = server
            .at(job_path(job.id), DaemonJob1 { job: job.clone() })
            .await
        {
            self.managed.remove(&job_path(job.id));
            return Err(e);
        }
        self.exported.lock().unwrap().insert(job.id);
        let conn = conn.clone();
        let job = job.clone();
        tokio::spawn(async move { follow(&conn, &job).await });
        Ok(())
    }
}

/// Emits the job's changes until it finishes, then `Finished`.
async fn follow(conn: &Connection, job: &Job) {
    let Ok(emitter) = SignalEmitter::new(conn, job_path(job.id)) else {
        return;
    };
    let mut rx = job.watch();
    let mut before = rx.borrow_and_update().clone();
    loop {
        let ended = rx.changed().await.is_err();
        for after in job.drain(&mut rx) {
            announce(&emitter, &before, &after).await;
            before = after;
        }
        if before.state == JobState::Finished || ended {
            let success = before.result.is_some_and(|r| r.is_success());
            let public_error = if before.error.is_empty() {
                ""
            } else {
                names::JOB_ERROR_WITHHELD
            };
            let _ =
                DaemonJob1::finished(&emitter, success, result_word(&before), public_error).await;
            return;
        }
        tokio::time::sleep(SIGNAL_SPACING).await;
    }
}

/// One `PropertiesChanged` naming what differs from `before` to `after`, if anything does.
async fn announce(emitter: &SignalEmitter<'_>, before: &JobStatus, after: &JobStatus) {
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
    if !changed.is_empty() || !invalidated.is_empty() {
        let _ = fdo::Properties::properties_changed(
            emitter,
            zbus::names::InterfaceName::from_static_str_unchecked(names::DAEMON_JOB_INTERFACE),
            changed,
            std::borrow::Cow::Borrowed(invalidated),
        )
        .await;
    }
}

/// The object served at `/org/banger/Daemon1/job/<id>`.
pub struct DaemonJob1 {
    job: Arc<Job>,
}

#[zbus::interface(name = "org.banger.Daemon1.Job")]
impl DaemonJob1 {
    /// The job's id, unique while the daemon runs.
    #[zbus(property)]
    fn id(&self) -> u32 {
        self.job.id
    }

    /// What kind of work: `image-pull`.
    #[zbus(property)]
    fn kind(&self) -> &str {
        self.job.kind
    }

    /// What it was asked to do, for people (e.g. `debian:12 as debian`).
    #[zbus(property)]
    fn description(&self) -> String {
        self.job.what.clone()
    }

    /// `running` or `finished`.
    #[zbus(property)]
    fn state(&self) -> &str {
        self.job.status().state.as_str()
    }

    /// What it does now; for a pull: `resolving`, `downloading`, `unpacking`, `recording`.
    #[zbus(property)]
    fn stage(&self) -> String {
        self.job.status().stage
    }

    /// How far it is, 0 to 1 (a pull: bytes downloaded of all its artefacts).
    #[zbus(property)]
    fn progress(&self) -> f64 {
        self.job.status().progress
    }

    /// Bytes of the current stage done (downloading: bytes received).
    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.job.status().bytes_done
    }

    /// Bytes of the current stage in all, 0 when not known.
    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.job.status().bytes_total
    }

    /// "" while running, then `done`, `failed` or `canceled`.
    #[zbus(property)]
    fn result(&self) -> &str {
        result_word(&self.job.status())
    }

    /// Why it failed or was canceled, "" otherwise.
    #[zbus(property)]
    fn error(&self) -> String {
        self.job.status().error
    }

    /// What it made (the image's name), once done.
    #[zbus(property)]
    fn image(&self) -> String {
        self.job.status().made
    }

    /// Asks the job to stop; it ends `canceled` soon after, leaving nothing half-made. Refused
    /// with org.banger.Error.Busy once it has finished.
    async fn cancel(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        check_caller(conn, &hdr).await?;
        if self.job.cancel() {
            tracing::info!(job = self.job.id, "job cancel asked");
            Ok(())
        } else {
            Err(BusError::Busy(format!(
                "the job has already finished ({})",
                result_word(&self.job.status())
            )))
        }
    }

    /// Emitted once when the job ends: success, its `Result`, and (when it failed) a sentence
    /// saying the reason is in `Error`.
    #[zbus(signal)]
    async fn finished(
        emitter: &SignalEmitter<'_>,
        success: bool,
        result: &str,
        error: &str,
    ) -> zbus::Result<()>;
}
