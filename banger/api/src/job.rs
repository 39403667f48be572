//! The words of an update job (`org.banger.Root1.Job`): its `State`, its `Stage` and its
//! `Result`, each an enum with its one spelling on the bus. The helper sets them, the CLI and
//! any other client read them; nobody else spells them.

/// `Root1.UpdateState` while no job runs (otherwise it is the running job's [`Stage`]).
pub const UPDATE_IDLE: &str = "idle";

words! {
    /// `Job.State`.
    JobState {
        /// The job is working.
        Running => "running",
        /// The job has ended; `Result` says how.
        Finished => "finished",
    }
}

words! {
    /// `Job.Stage`, in the order a job passes them (`rolling-back` only after a failure past
    /// the swap).
    Stage {
        /// Reading the manifest, choosing the release.
        Checking => "checking",
        /// Fetching the tarball and its checksums.
        Downloading => "downloading",
        /// Checking signatures and checksums.
        Verifying => "verifying",
        /// Unpacking next to the install.
        Staging => "staging",
        /// Running the staged programs once.
        SanityCheck => "sanity-check",
        /// Waiting for the owner's operations (and inhibit holds) to end.
        WaitingForOperations => "waiting-for-operations",
        /// Renaming the new files over the installed ones: the point of no return.
        Swapping => "swapping",
        /// Restarting `bangerd.service`.
        RestartingDaemon => "restarting-daemon",
        /// Restarting `bangerd-root.service` onto the new helper.
        RestartingHelper => "restarting-helper",
        /// Running doctor against the new install.
        VerifyingInstall => "verifying-install",
        /// Removing the backups.
        Finalizing => "finalizing",
        /// The job has ended.
        Done => "done",
        /// Putting the previous install back.
        RollingBack => "rolling-back",
    }
}

impl Stage {
    /// The first stage a job can no longer be canceled in.
    pub const POINT_OF_NO_RETURN: Stage = Stage::Swapping;

    /// Where this stage is in [`Stage::ALL`], the order a job passes them.
    pub fn position(self) -> usize {
        Stage::ALL
            .iter()
            .position(|s| *s == self)
            .expect("every stage is in ALL")
    }

    /// Whether this stage comes at or after the point of no return in a job's order: it can no
    /// longer be canceled, and the install may already be the new one (`done` counts too: a
    /// job seen last at `done` may have ended either way).
    pub fn past_point_of_no_return(self) -> bool {
        self.position() >= Stage::POINT_OF_NO_RETURN.position()
    }
}

words! {
    /// `Job.Result` once the job has finished ("" on the bus while it runs).
    JobResult {
        /// The new release is installed and healthy.
        Updated => "updated",
        /// Nothing newer than the install.
        UpToDate => "up-to-date",
        /// Downloaded, verified and staged only; nothing changed.
        DryRun => "dry-run",
        /// Failed before the swap; nothing changed (unless the error says the rollback failed).
        Failed => "failed",
        /// Failed after the swap; the previous install is back.
        RolledBack => "rolled-back",
        /// Canceled before the point of no return; nothing changed.
        Canceled => "canceled",
    }
}

words! {
    /// The properties of `org.banger.Root1.Job`, by their names on the bus: what a client
    /// reads, and what `PropertiesChanged` on a job's object carries.
    JobProperty {
        /// `u`: the job's id.
        Id => "Id",
        /// `s`: what the job does (`update`).
        Kind => "Kind",
        /// `s`: a [`JobState`].
        State => "State",
        /// `s`: a [`Stage`].
        Stage => "Stage",
        /// `d`: progress from 0 to 1.
        Progress => "Progress",
        /// `t`: bytes downloaded so far.
        BytesDone => "BytesDone",
        /// `t`: bytes to download.
        BytesTotal => "BytesTotal",
        /// `s`: the version being installed.
        TargetVersion => "TargetVersion",
        /// `s`: the version installed when the job started.
        FromVersion => "FromVersion",
        /// `s`: a [`JobResult`], "" while the job runs.
        Result => "Result",
        /// `s`: why the job failed; a change is announced without its value.
        Error => "Error",
    }
}

/// The one kind of job the helper runs (`Job.Kind`).
pub const JOB_KIND_UPDATE: &str = "update";

words! {
    /// How a job of the owner's daemon (`org.banger.Daemon1.Job`) ended.
    DaemonJobResult {
        /// It did what was asked.
        Done => "done",
        /// It failed; `Error` says why, and nothing was left half-made.
        Failed => "failed",
        /// It was canceled; nothing was left half-made.
        Canceled => "canceled",
    }
}

impl DaemonJobResult {
    /// Whether it did what was asked.
    pub fn is_success(self) -> bool {
        self == DaemonJobResult::Done
    }
}

words! {
    /// The stages of an image pull (`Daemon1.PullImage`).
    PullStage {
        /// Fetching and verifying the signed catalog index.
        Resolving => "resolving",
        /// Downloading an artefact (bytes are counted).
        Downloading => "downloading",
        /// Unpacking a bundle and checking what it holds.
        Unpacking => "unpacking",
        /// Writing the root filesystem image (OCI images: the applied layers as ext4).
        Building => "building",
        /// Moving the image into place and recording it.
        Recording => "recording",
    }
}

words! {
    /// The properties of `org.banger.Daemon1.Job` (the shape of `Root1.Job`'s, with what a
    /// daemon job has of its own).
    DaemonJobProperty {
        /// `u`: the job's id.
        Id => "Id",
        /// `s`: what the job does (`image-pull`).
        Kind => "Kind",
        /// `s`: what it was asked to do, for people.
        Description => "Description",
        /// `s`: a [`JobState`].
        State => "State",
        /// `s`: a stage of its kind ([`PullStage`]).
        Stage => "Stage",
        /// `d`: progress from 0 to 1.
        Progress => "Progress",
        /// `t`: bytes of the stage done.
        BytesDone => "BytesDone",
        /// `t`: bytes of the stage in all.
        BytesTotal => "BytesTotal",
        /// `s`: a [`DaemonJobResult`], "" while the job runs.
        Result => "Result",
        /// `s`: why it failed; a change is announced without its value.
        Error => "Error",
        /// `s`: what it made.
        Image => "Image",
    }
}

/// The kind of an image pull job.
pub const JOB_KIND_IMAGE_PULL: &str = "image-pull";

impl JobResult {
    /// What the `Finished` signal's `success` says.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            JobResult::Updated | JobResult::UpToDate | JobResult::DryRun
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::check_words as check;

    #[test]
    fn every_word_parses_back_and_is_distinct() {
        check(JobState::ALL, JobState::as_str, JobState::parse);
        check(Stage::ALL, Stage::as_str, Stage::parse);
        check(JobResult::ALL, JobResult::as_str, JobResult::parse);
        check(JobProperty::ALL, JobProperty::as_str, JobProperty::parse);
        check(
            DaemonJobProperty::ALL,
            DaemonJobProperty::as_str,
            DaemonJobProperty::parse,
        );
        check(
            DaemonJobResult::ALL,
            DaemonJobResult::as_str,
            DaemonJobResult::parse,
        );
        check(PullStage::ALL, PullStage::as_str, PullStage::parse);
    }

    #[test]
    fn the_point_of_no_return_is_the_swap() {
        assert!(!Stage::WaitingForOperations.past_point_of_no_return());
        assert!(Stage::Swapping.past_point_of_no_return());
        assert!(Stage::RollingBack.past_point_of_no_return());
        assert!(Stage::Done.past_point_of_no_return());
        assert!(!Stage::Checking.past_point_of_no_return());
    }

    #[test]
    fn success_is_what_changed_nothing_wrongly() {
        let ok: Vec<_> = JobResult::ALL.iter().filter(|r| r.is_success()).collect();
        assert_eq!(
            ok,
            [
                &JobResult::Updated,
                &JobResult::UpToDate,
                &JobResult::DryRun
            ]
        );
    }
}
