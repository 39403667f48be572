//! What `banger update` shows: the job's properties as banger knows them ([`JobView`]), the
//! events they make ([`Event`]) as lines for people and as JSON, and the last line and exit code
//! of a run ([`Outcome`]).
//!
//! It is a pure view model: it reads no bus, no terminal and no signal, and it never decides
//! anything about the update; it only words what the helper reported.

use std::collections::HashMap;

use banger_api::job::{JobProperty, JobResult, Stage};
use banger_api::names::{JOB_INTERFACE, ROOT1_NAME};
use serde_json::json;
use zbus::OwnedVariant;

use super::HELPER_RETURN_PATIENCE;
use crate::cli::{EXIT_CANCELED, EXIT_FAILED, EXIT_OK, EXIT_ROLLED_BACK};

/// A command that shows a job's stage without banger.
pub fn watch_command(job: &str) -> String {
    format!("busctl get-property {ROOT1_NAME} {job} {JOB_INTERFACE} Stage")
}

/// The last line of a run and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What to tell the user.
    pub line: String,
    /// The exit code.
    pub code: i32,
}

/// The last line and exit code for a finished job, from its `Result`, `Error`, `FromVersion`
/// and `TargetVersion`.
pub fn outcome(result: &str, error: &str, from: &str, target: &str) -> Outcome {
    let error = if error.is_empty() {
        "no reason given"
    } else {
        error
    };
    let (line, code) = match JobResult::parse(result) {
        Some(JobResult::Updated) => (
            format!(
                "updated {} → {}",
                version_label(from),
                version_label(target)
            ),
            EXIT_OK,
        ),
        Some(JobResult::UpToDate) => (
            format!(
                "up to date ({})",
                version_label(if from.is_empty() { target } else { from })
            ),
            EXIT_OK,
        ),
        Some(JobResult::DryRun) => (
            format!(
                "dry run: {} downloaded, verified and staged; nothing was changed",
                version_label(target)
            ),
            EXIT_OK,
        ),
        // A failed rollback says so itself: never claim nothing changed then.
        Some(JobResult::Failed) if error.contains("ROLLBACK INCOMPLETE") => {
            (format!("update failed: {error}"), EXIT_FAILED)
        }
        Some(JobResult::Failed) => (
            format!("update failed: {error}; nothing was changed"),
            EXIT_FAILED,
        ),
        Some(JobResult::RolledBack) => (
            format!("update failed: {error} (rolled back to previous install)"),
            EXIT_ROLLED_BACK,
        ),
        Some(JobResult::Canceled) => (
            "update canceled; nothing was changed".to_string(),
            EXIT_CANCELED,
        ),
        None => (
            format!(
                "the update ended with a result banger does not know ({result:?}): {error}; \
                 check the install with: banger system status"
            ),
            EXIT_FAILED,
        ),
    };
    Outcome { line, code }
}

/// Whether the helper leaves the bus on purpose at `stage`: it restarts itself onto the new
/// binaries, or, after a rollback, back onto the old ones.
pub fn helper_restart_is_planned(stage: &str) -> bool {
    Stage::parse(stage) == Some(Stage::RestartingHelper)
}

/// The last line and exit code when the job object is gone after the helper restarted; what it
/// means depends on whether the job had reached the point of no return.
pub fn lost_outcome(last_stage: &str) -> Outcome {
    let line = if past_point_of_no_return(last_stage) {
        "the update job was lost when the helper restarted after the point of no return; the \
         install is either the previous or the new release — check it with: banger system status"
            .to_string()
    } else {
        "the update job was lost when the helper restarted before the point of no return; \
         nothing was changed"
            .to_string()
    };
    Outcome {
        line,
        code: EXIT_FAILED,
    }
}

/// Where a stage is in the order a job passes them; `None` for a word this banger does not
/// know (a newer helper's), which is shown but never compared.
fn stage_index(stage: &str) -> Option<usize> {
    Stage::parse(stage).map(Stage::position)
}

/// Whether a stage is at or after the swap of the binaries. Unknown stages count as before.
fn past_point_of_no_return(stage: &str) -> bool {
    Stage::parse(stage).is_some_and(Stage::past_point_of_no_return)
}

/// `v0.2.0` for `0.2.0`.
pub fn version_label(v: &str) -> String {
    if v.is_empty() {
        "an unknown version".to_string()
    } else if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    }
}

/// What happened to a request to cancel the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelStep {
    /// Ctrl-C was pressed; `Cancel()` is on its way.
    Asked,
    /// The helper accepted it; the job ends as canceled.
    Accepted,
    /// The helper refused: the job is past the point of no return.
    PastPointOfNoReturn,
    /// The call failed for another reason.
    Failed(String),
}

/// Something that happened while following an update, as shown to the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The helper started this job.
    Job {
        /// The job's object path.
        job: String,
    },
    /// The job entered a stage.
    Stage {
        /// The stage.
        stage: String,
    },
    /// Download progress.
    Progress {
        /// Bytes downloaded so far.
        bytes_done: u64,
        /// Bytes to download (0 when not known yet).
        bytes_total: u64,
    },
    /// The helper left the bus: on purpose when `planned` (it restarts itself during every
    /// update, and again when it rolls back), else it crashed, was stopped or was killed.
    HelperRestarting {
        /// The job's stage when it left.
        stage: String,
        /// Whether the update had asked for the restart.
        planned: bool,
    },
    /// The helper is back and the job is followed again.
    Reattached {
        /// The job's object path.
        job: String,
    },
    /// Progress of a cancel request.
    Cancel(CancelStep),
    /// A second Ctrl-C: banger stops following; the job goes on.
    Detached {
        /// The job's object path.
        job: String,
    },
    /// The job ended.
    Finished {
        /// `success` from the job's `Finished` signal (or derived from the result).
        success: bool,
        /// The job's `Result`.
        result: String,
        /// The job's `Error`.
        error: String,
        /// The version installed when the job started.
        from_version: String,
        /// The version the job installs.
        target_version: String,
        /// The last line and exit code.
        outcome: Outcome,
    },
    /// The job object no longer exists after the helper restarted.
    Lost {
        /// The last line and exit code.
        outcome: Outcome,
    },
}

impl Event {
    /// Whether `--quiet` still prints it: the outcome, and what answers the user's own Ctrl-C.
    pub fn shown_when_quiet(&self) -> bool {
        matches!(
            self,
            Event::Finished { .. } | Event::Lost { .. } | Event::Cancel(_) | Event::Detached { .. }
        )
    }

    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        let value = match self {
            Event::Job { job } => json!({"event": "job", "job": job}),
            Event::Stage { stage } => json!({"event": "stage", "stage": stage}),
            Event::Progress {
                bytes_done,
                bytes_total,
            } => json!({"event": "progress", "bytes_done": bytes_done, "bytes_total": bytes_total}),
            Event::HelperRestarting { stage, planned } => {
                json!({"event": "helper-restarting", "stage": stage, "planned": planned})
            }
            Event::Reattached { job } => json!({"event": "reattached", "job": job}),
            Event::Cancel(step) => match step {
                CancelStep::Asked => json!({"event": "cancel", "outcome": "asked"}),
                CancelStep::Accepted => json!({"event": "cancel", "outcome": "accepted"}),
                CancelStep::PastPointOfNoReturn => {
                    json!({"event": "cancel", "outcome": "past-point-of-no-return"})
                }
                CancelStep::Failed(error) => {
                    json!({"event": "cancel", "outcome": "failed", "error": error})
                }
            },
            Event::Detached { job } => json!({"event": "detached", "job": job}),
            Event::Finished {
                success,
                result,
                error,
                from_version,
                target_version,
                outcome,
            } => json!({
                "event": "finished",
                "success": success,
                "result": result,
                "error": error,
                "from_version": from_version,
                "target_version": target_version,
                "message": outcome.line,
                "exit_code": outcome.code,
            }),
            Event::Lost { outcome } => json!({
                "event": "lost",
                "message": outcome.line,
                "exit_code": outcome.code,
            }),
        };
        value.to_string()
    }

    /// The event as a line for people; `None` for events a person does not need to see and for
    /// progress, which is drawn in place on a terminal only.
    pub fn to_line(&self) -> Option<String> {
        match self {
            Event::Job { job } => Some(format!("job: {job}")),
            Event::Stage { stage } => Some(format!("stage: {stage}")),
            Event::Progress { .. } => None,
            Event::HelperRestarting { planned: true, .. } => Some(
                "bangerd-root is restarting itself onto the installed binaries, as every update \
                 (and every rollback) does; waiting for it to come back…"
                    .to_string(),
            ),
            Event::HelperRestarting {
                stage,
                planned: false,
            } => Some(format!(
                "bangerd-root left the bus during stage {} without the update asking it to (it \
                 crashed, or was stopped or killed). systemd restarts it after a failure, and \
                 whatever starts it next resumes the update from its journal; waiting up to {} s \
                 for it… If it does not come back: sudo banger system status, and journalctl -u \
                 bangerd-root",
                if stage.is_empty() { "(unknown)" } else { stage },
                HELPER_RETURN_PATIENCE.as_secs()
            )),
            Event::Reattached { .. } => Some("bangerd-root is back; following the update".into()),
            Event::Cancel(CancelStep::Asked) => Some(
                "canceling the update… (press Ctrl-C again to stop following and leave it running)"
                    .to_string(),
            ),
            Event::Cancel(CancelStep::Accepted) => None,
            Event::Cancel(CancelStep::PastPointOfNoReturn) => Some(
                "the update is past the point of no return and will finish on its own; following it…"
                    .to_string(),
            ),
            Event::Cancel(CancelStep::Failed(error)) => Some(format!(
                "could not cancel the update: {error}; following it…"
            )),
            Event::Detached { job } => Some(format!(
                "stopped following; the update continues in the background. See its stage with: {}",
                watch_command(job)
            )),
            Event::Finished { outcome, .. } | Event::Lost { outcome } => Some(outcome.line.clone()),
        }
    }
}

/// What banger knows of the job, from its properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobView {
    state: String,
    stage: String,
    bytes_done: u64,
    bytes_total: u64,
    from_version: String,
    target_version: String,
    result: String,
    error: String,
}

impl JobView {
    /// Takes in changed (or all) properties and returns the events they make, in the order a
    /// person reads them: the stage first, then progress.
    pub fn apply(&mut self, changed: &HashMap<String, OwnedVariant>) -> Vec<Event> {
        let text = |p: JobProperty| {
            changed
                .get(p.as_str())
                .and_then(|v| <&str>::try_from(v).ok())
                .map(str::to_string)
        };
        let number = |p: JobProperty| changed.get(p.as_str()).and_then(|v| u64::try_from(v).ok());
        let mut events = Vec::new();
        if let Some(stage) = text(JobProperty::Stage)
            && stage != self.stage
        {
            self.stage = stage;
            if !self.stage.is_empty() {
                events.push(Event::Stage {
                    stage: self.stage.clone(),
                });
            }
        }
        let (done, total) = (
            number(JobProperty::BytesDone),
            number(JobProperty::BytesTotal),
        );
        let moved = done.is_some_and(|d| d != self.bytes_done)
            || total.is_some_and(|t| t != self.bytes_total);
        self.bytes_done = done.unwrap_or(self.bytes_done);
        self.bytes_total = total.unwrap_or(self.bytes_total);
        if moved {
            events.push(Event::Progress {
                bytes_done: self.bytes_done,
                bytes_total: self.bytes_total,
            });
        }
        for (p, field) in [
            (JobProperty::State, &mut self.state),
            (JobProperty::FromVersion, &mut self.from_version),
            (JobProperty::TargetVersion, &mut self.target_version),
            (JobProperty::Result, &mut self.result),
            (JobProperty::Error, &mut self.error),
        ] {
            if let Some(v) = text(p) {
                *field = v;
            }
        }
        events
    }

    /// Takes in a full read of the properties. A read can be overtaken by a change the helper
    /// signalled while it was answering, so a read never moves the stage or the download back.
    pub fn apply_read(&mut self, properties: &HashMap<String, OwnedVariant>) -> Vec<Event> {
        let mut properties: HashMap<String, OwnedVariant> = properties
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.try_clone().ok()?)))
            .collect();
        let stage = properties
            .get(JobProperty::Stage.as_str())
            .and_then(|v| <&str>::try_from(v).ok());
        if let (Some(read), Some(known)) = (stage.and_then(stage_index), stage_index(&self.stage))
            && read < known
        {
            properties.remove(JobProperty::Stage.as_str());
        }
        let done = properties
            .get(JobProperty::BytesDone.as_str())
            .and_then(|v| u64::try_from(v).ok());
        if done.is_some_and(|d| d < self.bytes_done) {
            properties.remove(JobProperty::BytesDone.as_str());
            properties.remove(JobProperty::BytesTotal.as_str());
        }
        self.apply(&properties)
    }

    /// The job's stage as last reported ("" before the first report).
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Whether the properties say the job has ended.
    pub fn is_finished(&self) -> bool {
        self.state == "finished" && !self.result.is_empty()
    }

    /// The `Finished` event the properties describe, for a job a read found ended.
    pub fn finished_from_properties(&self) -> Event {
        self.finished(None, &self.result, &self.error)
    }

    /// The `Finished` event for this job.
    pub fn finished(&self, success: Option<bool>, result: &str, error: &str) -> Event {
        let outcome = outcome(result, error, &self.from_version, &self.target_version);
        Event::Finished {
            success: success.unwrap_or(outcome.code == EXIT_OK),
            result: result.to_string(),
            error: error.to_string(),
            from_version: self.from_version.clone(),
            target_version: self.target_version.clone(),
            outcome,
        }
    }
}

/// Whether a change of the owner of `org.banger.Root1` means the helper banger follows went away
/// or was replaced. `helper` is the unique name that last answered; stale changes (an owner that
/// left before the current one answered) do not count.
pub fn helper_changed(helper: Option<&str>, old: Option<&str>, new: Option<&str>) -> bool {
    match new {
        Some(new) => Some(new) != helper,
        None => old.is_some() && old == helper,
    }
}

#[cfg(test)]
mod tests {
    use zbus::Variant;

    use super::*;

    fn props(pairs: &[(&str, OwnedVariant)]) -> HashMap<String, OwnedVariant> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.try_clone().unwrap()))
            .collect()
    }

    fn s(v: &str) -> OwnedVariant {
        OwnedVariant::try_from(Variant::from(v)).unwrap()
    }

    #[test]
    fn outcome_for_every_result() {
        let cases = [
            ("updated", "", "updated v0.1.0 → v0.2.0", EXIT_OK),
            ("up-to-date", "", "up to date (v0.1.0)", EXIT_OK),
            (
                "dry-run",
                "",
                "dry run: v0.2.0 downloaded, verified and staged; nothing was changed",
                EXIT_OK,
            ),
            (
                "failed",
                "signature does not verify",
                "update failed: signature does not verify; nothing was changed",
                EXIT_FAILED,
            ),
            (
                "rolled-back",
                "bangerd did not become ready",
                "update failed: bangerd did not become ready (rolled back to previous install)",
                EXIT_ROLLED_BACK,
            ),
            (
                "canceled",
                "canceled by uid 1000",
                "update canceled; nothing was changed",
                EXIT_CANCELED,
            ),
        ];
        for (result, error, line, code) in cases {
            assert_eq!(
                outcome(result, error, "0.1.0", "0.2.0"),
                Outcome {
                    line: line.to_string(),
                    code
                },
                "{result}"
            );
        }
    }

    #[test]
    fn failed_rollback_never_claims_nothing_changed() {
        let o = outcome(
            "failed",
            "swap failed; ROLLBACK INCOMPLETE: restoring x: EIO",
            "0.1.0",
            "0.2.0",
        );
        assert_eq!(
            o.line,
            "update failed: swap failed; ROLLBACK INCOMPLETE: restoring x: EIO"
        );
        assert_eq!(o.code, EXIT_FAILED);
    }

    #[test]
    fn outcome_without_details() {
        assert_eq!(
            outcome("failed", "", "0.1.0", "").line,
            "update failed: no reason given; nothing was changed"
        );
        assert_eq!(
            outcome("up-to-date", "", "", "0.2.0").line,
            "up to date (v0.2.0)"
        );
        assert_eq!(
            outcome("updated", "", "v0.1.0", "0.2.0").line,
            "updated v0.1.0 → v0.2.0"
        );
        let unknown = outcome("exploded", "boom", "0.1.0", "0.2.0");
        assert_eq!(unknown.code, EXIT_FAILED);
        assert!(unknown.line.contains("\"exploded\""), "{}", unknown.line);
    }

    #[test]
    fn lost_job_depends_on_the_point_of_no_return() {
        for stage in ["", "checking", "downloading", "waiting-for-operations"] {
            let o = lost_outcome(stage);
            assert_eq!(o.code, EXIT_FAILED);
            assert_eq!(
                o.line,
                "the update job was lost when the helper restarted before the point of no \
                 return; nothing was changed",
                "{stage}"
            );
        }
        for stage in [
            "swapping",
            "restarting-helper",
            "finalizing",
            "rolling-back",
        ] {
            let o = lost_outcome(stage);
            assert_eq!(o.code, EXIT_FAILED);
            assert!(o.line.contains("after the point of no return"), "{stage}");
            assert!(!o.line.contains("nothing was changed"), "{stage}");
        }
    }

    #[test]
    fn events_render_as_one_json_object_each() {
        let view = JobView {
            from_version: "0.1.0".into(),
            target_version: "0.2.0".into(),
            ..JobView::default()
        };
        let cases = [
            (
                Event::Stage {
                    stage: "downloading".into(),
                },
                json!({"event": "stage", "stage": "downloading"}),
            ),
            (
                Event::Progress {
                    bytes_done: 10,
                    bytes_total: 100,
                },
                json!({"event": "progress", "bytes_done": 10, "bytes_total": 100}),
            ),
            (
                Event::Cancel(CancelStep::PastPointOfNoReturn),
                json!({"event": "cancel", "outcome": "past-point-of-no-return"}),
            ),
            (
                view.finished(Some(false), "rolled-back", "doctor failed"),
                json!({
                    "event": "finished",
                    "success": false,
                    "result": "rolled-back",
                    "error": "doctor failed",
                    "from_version": "0.1.0",
                    "target_version": "0.2.0",
                    "message": "update failed: doctor failed (rolled back to previous install)",
                    "exit_code": 4,
                }),
            ),
            (
                view.finished(None, "updated", ""),
                json!({
                    "event": "finished",
                    "success": true,
                    "result": "updated",
                    "error": "",
                    "from_version": "0.1.0",
                    "target_version": "0.2.0",
                    "message": "updated v0.1.0 → v0.2.0",
                    "exit_code": 0,
                }),
            ),
        ];
        for (event, expected) in cases {
            let text = event.to_json();
            assert!(!text.contains('\n'), "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v, expected);
        }
    }

    #[test]
    fn lines_for_people() {
        assert_eq!(
            Event::Stage {
                stage: "verifying".into()
            }
            .to_line()
            .unwrap(),
            "stage: verifying"
        );
        assert_eq!(
            Event::Cancel(CancelStep::PastPointOfNoReturn)
                .to_line()
                .unwrap(),
            "the update is past the point of no return and will finish on its own; following it…"
        );
        let detached = Event::Detached {
            job: "/org/banger/Root1/job/3".into(),
        }
        .to_line()
        .unwrap();
        assert!(
            detached.ends_with(
                "busctl get-property org.banger.Root1 /org/banger/Root1/job/3 \
                 org.banger.Root1.Job Stage"
            ),
            "{detached}"
        );
        assert_eq!(
            Event::Progress {
                bytes_done: 1,
                bytes_total: 2
            }
            .to_line(),
            None
        );
    }

    #[test]
    fn a_helper_that_went_away_unasked_is_not_called_restarting() {
        let left = |stage: &str| Event::HelperRestarting {
            stage: stage.into(),
            planned: helper_restart_is_planned(stage),
        };
        let planned = left("restarting-helper").to_line().unwrap();
        assert!(
            planned.starts_with("bangerd-root is restarting itself"),
            "{planned}"
        );
        for stage in [
            "downloading",
            "swapping",
            "verifying-install",
            "rolling-back",
        ] {
            let line = left(stage).to_line().unwrap();
            assert!(
                line.starts_with(&format!(
                    "bangerd-root left the bus during stage {stage} without the update asking it to"
                )),
                "{line}"
            );
            assert!(!line.contains("is restarting"), "{line}");
            assert!(line.contains("sudo banger system status"), "{line}");
        }
        let v: serde_json::Value = serde_json::from_str(&left("swapping").to_json()).unwrap();
        assert_eq!(
            v,
            json!({"event": "helper-restarting", "stage": "swapping", "planned": false})
        );
    }

    #[test]
    fn view_reports_stage_and_progress_changes_once() {
        let mut view = JobView::default();
        let events = view.apply(&props(&[
            ("State", s("running")),
            ("Stage", s("downloading")),
            ("BytesDone", OwnedVariant::from(0u64)),
            ("BytesTotal", OwnedVariant::from(100u64)),
            ("FromVersion", s("0.1.0")),
            ("TargetVersion", s("0.2.0")),
            ("Result", s("")),
        ]));
        assert_eq!(
            events,
            [
                Event::Stage {
                    stage: "downloading".into()
                },
                Event::Progress {
                    bytes_done: 0,
                    bytes_total: 100
                }
            ]
        );
        assert!(!view.is_finished());
        // The same values again (a re-read after a restart) say nothing new.
        assert!(
            view.apply(&props(&[
                ("Stage", s("downloading")),
                ("BytesTotal", OwnedVariant::from(100u64))
            ]))
            .is_empty()
        );
        assert_eq!(
            view.apply(&props(&[("BytesDone", OwnedVariant::from(40u64))])),
            [Event::Progress {
                bytes_done: 40,
                bytes_total: 100
            }]
        );
        view.apply(&props(&[
            ("State", s("finished")),
            ("Stage", s("done")),
            ("Result", s("updated")),
        ]));
        assert!(view.is_finished());
        assert_eq!(
            view.finished(None, "updated", "").to_line().unwrap(),
            "updated v0.1.0 → v0.2.0"
        );
    }

    #[test]
    fn a_read_overtaken_by_a_signal_does_not_move_back() {
        let mut view = JobView::default();
        view.apply(&props(&[
            ("Stage", s("verifying-install")),
            ("BytesDone", OwnedVariant::from(100u64)),
            ("BytesTotal", OwnedVariant::from(100u64)),
        ]));
        let events = view.apply_read(&props(&[
            ("State", s("running")),
            ("Stage", s("restarting-helper")),
            ("BytesDone", OwnedVariant::from(0u64)),
            ("BytesTotal", OwnedVariant::from(0u64)),
            ("TargetVersion", s("0.2.0")),
        ]));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(view.stage, "verifying-install");
        assert_eq!(view.target_version, "0.2.0");
        assert_eq!(
            view.apply_read(&props(&[("Stage", s("finalizing"))])),
            [Event::Stage {
                stage: "finalizing".into()
            }]
        );
    }

    #[test]
    fn helper_changes_that_matter() {
        // The followed helper left, or another one took the name.
        assert!(helper_changed(Some(":1.5"), Some(":1.5"), None));
        assert!(helper_changed(Some(":1.5"), Some(":1.5"), Some(":1.9")));
        assert!(helper_changed(Some(":1.5"), None, Some(":1.9")));
        // Stale: the activation of the helper that is followed, or an older helper leaving.
        assert!(!helper_changed(Some(":1.5"), None, Some(":1.5")));
        assert!(!helper_changed(Some(":1.5"), Some(":1.2"), None));
    }
}
