//! What the services write to the journal beyond the message: the `MESSAGE_ID` of each update
//! outcome (so that `journalctl MESSAGE_ID=…` lists the update history, and
//! `banger update --history` reads it) and the names of the structured fields they attach.
//!
//! The ids are fixed for good: scripts and journal catalogs match on them.

use crate::job::JobResult;

/// An update job started (`JOB_ID`, `FROM_VERSION`, `INITIATOR_UID`).
pub const UPDATE_STARTED: &str = "57ce6bd630a44b30bd31d6128b4486f1";
/// An update job ended with the new release installed (`JOB_ID`, `FROM_VERSION`, `VERSION`,
/// `INITIATOR_UID`, `RESULT`).
pub const UPDATE_UPDATED: &str = "f2131e2debfa407f88f383344f0b6fe2";
/// An update job ended with the previous release back (fields as [`UPDATE_UPDATED`], and
/// `ERROR`).
pub const UPDATE_ROLLED_BACK: &str = "1509a51558044fb29d34c352fda4ea4c";
/// An update job failed with nothing changed, or with a rollback that did not complete
/// (fields as [`UPDATE_ROLLED_BACK`]).
pub const UPDATE_FAILED: &str = "c2a904b1ec334d419759c7747147ca48";
/// An update job ended otherwise: up to date, dry run, or canceled (fields as
/// [`UPDATE_UPDATED`]).
pub const UPDATE_ENDED: &str = "c574b4508f94410a8a074fefee6ed392";

/// Every update `MESSAGE_ID`, the start first.
pub const UPDATE_IDS: [&str; 5] = [
    UPDATE_STARTED,
    UPDATE_UPDATED,
    UPDATE_ROLLED_BACK,
    UPDATE_FAILED,
    UPDATE_ENDED,
];

/// The `MESSAGE_ID` of a job that ended with `result`.
pub fn update_outcome(result: JobResult) -> &'static str {
    match result {
        JobResult::Updated => UPDATE_UPDATED,
        JobResult::RolledBack => UPDATE_ROLLED_BACK,
        JobResult::Failed => UPDATE_FAILED,
        JobResult::UpToDate | JobResult::DryRun | JobResult::Canceled => UPDATE_ENDED,
    }
}

/// Journal field names (the services log them as lowercase tracing fields; the journal stores
/// them upper-cased).
pub mod field {
    /// The message id.
    pub const MESSAGE_ID: &str = "MESSAGE_ID";
    /// An update job's id.
    pub const JOB_ID: &str = "JOB_ID";
    /// The version an update installs.
    pub const VERSION: &str = "VERSION";
    /// The version installed when an update started.
    pub const FROM_VERSION: &str = "FROM_VERSION";
    /// The UID that asked for an update.
    pub const INITIATOR_UID: &str = "INITIATOR_UID";
    /// An update job's result (a `JobResult` word).
    pub const RESULT: &str = "RESULT";
    /// Why an update failed or rolled back.
    pub const ERROR: &str = "ERROR";
    /// A VM's id.
    pub const VM_ID: &str = "VM_ID";
    /// A systemd unit.
    pub const UNIT: &str = "UNIT";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_an_id_and_the_ids_are_distinct_journal_ids() {
        for r in JobResult::ALL {
            assert!(UPDATE_IDS.contains(&update_outcome(*r)));
        }
        let mut ids = UPDATE_IDS.to_vec();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), UPDATE_IDS.len());
        for id in UPDATE_IDS {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }
}
