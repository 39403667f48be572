//! Long work of the daemon (an image pull) as jobs: each has an id, a kind, a status that
//! changes as it goes (stage, bytes, progress) and ends with a result, and can be asked to
//! cancel. This module knows nothing of D-Bus: the status is a [`watch`] channel that the bus
//! layer ([`crate::daemon_job`]) follows to serve `org.banger.Daemon1.Job` objects and emit
//! their signals; a burst of byte counts reaches it as the newest status, so watchers cost
//! nothing per byte downloaded. Stage changes are kept in order as well (with the last count
//! of the stage they end), so that a client sees every stage even when one takes no time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use banger_api::job::{DaemonJobResult, JobState};
use tokio::sync::watch;

/// What a job is doing and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// Running or finished.
    pub state: JobState,
    /// A word for what it does now (the kind's own stages).
    pub stage: String,
    /// How far it is, 0 to 1.
    pub progress: f64,
    /// Bytes moved so far, where that means something.
    pub bytes_done: u64,
    /// Bytes to move in all, 0 when not known.
    pub bytes_total: u64,
    /// How it ended, once finished.
    pub result: Option<DaemonJobResult>,
    /// Why it failed, once failed.
    pub error: String,
    /// What it made (an image name), once done.
    pub made: String,
}

/// One job: its status, for the bus layer to follow, and its cancel flag, for the work to
/// check.
pub struct Job {
    /// Its id, unique for the daemon's life.
    pub id: u32,
    /// What kind of work (`image-pull`).
    pub kind: &'static str,
    /// What it was asked to do, for people (`debian:12 as debian`).
    pub what: String,
    status: watch::Sender<JobStatus>,
    /// Statuses at stage changes not yet taken by [`Job::drain`], oldest first. Also the lock
    /// every change takes, so that a drain sees steps and status agree.
    steps: Mutex<VecDeque<JobStatus>>,
    cancel: Arc<AtomicBool>,
}

/// Most stage steps kept for a follower that is behind; older ones are dropped.
const MAX_STEPS: usize = 64;

impl Job {
    /// The status now.
    pub fn status(&self) -> JobStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every newest status.
    pub fn watch(&self) -> watch::Receiver<JobStatus> {
        self.status.subscribe()
    }

    /// The flag the work checks; set by [`Job::cancel`].
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Asks the work to stop. False when the job had already finished.
    pub fn cancel(&self) -> bool {
        if self.status.borrow().state == JobState::Finished {
            return false;
        }
        self.cancel.store(true, Ordering::SeqCst);
        true
    }

    /// Whether cancel was asked.
    pub fn canceled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The stage steps since the last drain, then the status now (marked seen on `rx`).
    pub fn drain(&self, rx: &mut watch::Receiver<JobStatus>) -> Vec<JobStatus> {
        let mut steps = self.steps.lock().unwrap();
        let mut out: Vec<JobStatus> = steps.drain(..).collect();
        out.push(rx.borrow_and_update().clone());
        out
    }

    fn step(steps: &mut VecDeque<JobStatus>, s: &JobStatus) {
        if steps.len() == MAX_STEPS {
            steps.pop_front();
        }
        steps.push_back(s.clone());
    }

    /// Enters `stage`, with `total` bytes to move (0 when none).
    pub fn stage(&self, stage: &str, total: u64) {
        let mut steps = self.steps.lock().unwrap();
        self.status.send_if_modified(|s| {
            let changed = s.stage != stage || s.bytes_total != total || s.bytes_done != 0;
            if changed {
                if s.bytes_done > 0 {
                    // The end of the stage before: its last count.
                    Self::step(&mut steps, s);
                }
                s.stage = stage.to_string();
                s.bytes_total = total;
                s.bytes_done = 0;
                Self::step(&mut steps, s);
            }
            changed
        });
    }

    /// Reports `done` bytes of the stage's total and how far the job is (0 to 1).
    pub fn bytes(&self, done: u64, progress: f64) {
        let _steps = self.steps.lock().unwrap();
        self.status.send_if_modified(|s| {
            let progress = progress.clamp(0.0, 1.0);
            let changed = s.bytes_done != done || s.progress != progress;
            s.bytes_done = done;
            s.progress = progress;
            changed
        });
    }

    /// Ends the job: `Ok(made)` as done, or the error (as canceled when cancel was asked).
    pub fn finish(&self, outcome: Result<String, String>) {
        let canceled = self.canceled();
        let _steps = self.steps.lock().unwrap();
        self.status.send_modify(|s| {
            s.state = JobState::Finished;
            match outcome {
                Ok(made) => {
                    s.result = Some(DaemonJobResult::Done);
                    s.progress = 1.0;
                    s.made = made;
                }
                Err(e) => {
                    s.result = Some(if canceled {
                        DaemonJobResult::Canceled
                    } else {
                        DaemonJobResult::Failed
                    });
                    s.error = e;
                }
            }
        });
    }
}

/// How many finished jobs stay listed (and on the bus) for clients to read their result.
const KEEP_FINISHED: usize = 16;

/// The daemon's jobs.
pub struct Jobs {
    next: AtomicU32,
    all: Mutex<BTreeMap<u32, Arc<Job>>>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            next: AtomicU32::new(1),
            all: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Jobs {
    /// A new running job; older finished ones beyond [`KEEP_FINISHED`] are forgotten.
    pub fn begin(&self, kind: &'static str, what: String) -> Arc<Job> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (status, _) = watch::channel(JobStatus {
            state: JobState::Running,
            stage: String::new(),
            progress: 0.0,
            bytes_done: 0,
            bytes_total: 0,
            result: None,
            error: String::new(),
            made: String::new(),
        });
        let job = Arc::new(Job {
            id,
            kind,
            what,
            status,
            steps: Mutex::new(VecDeque::new()),
            cancel: Arc::new(AtomicBool::new(false)),
        });
        {
            let mut all = self.all.lock().unwrap();
            let finished: Vec<u32> = all
                .iter()
                .filter(|(_, j)| j.status().state == JobState::Finished)
                .map(|(id, _)| *id)
                .collect();
            for old in finished
                .iter()
                .take(finished.len().saturating_sub(KEEP_FINISHED - 1))
            {
                all.remove(old);
            }
            all.insert(id, job.clone());
        }
        job
    }

    /// Job `id`, while it is kept.
    pub fn get(&self, id: u32) -> Option<Arc<Job>> {
        self.all.lock().unwrap().get(&id).cloned()
    }

    /// Every kept job, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        self.all.lock().unwrap().values().cloned().collect()
    }

    /// Whether job `id` is still kept.
    pub fn is_kept(&self, id: u32) -> bool {
        self.all.lock().unwrap().contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_reports_and_ends_once() {
        let jobs = Jobs::default();
        let j = jobs.begin("image-pull", "x".into());
        assert_eq!(jobs.get(j.id).unwrap().status().state, JobState::Running);
        let mut rx = j.watch();
        j.stage("downloading", 100);
        j.bytes(40, 0.2);
        assert!(rx.has_changed().unwrap());
        let now = rx.borrow_and_update().clone();
        assert_eq!(
            (now.bytes_done, now.bytes_total, now.progress),
            (40, 100, 0.2)
        );
        j.bytes(40, 0.2);
        assert!(!rx.has_changed().unwrap(), "no change, no news");
        j.finish(Ok("deb".into()));
        let end = j.status();
        assert_eq!(end.state, JobState::Finished);
        assert_eq!(end.result, Some(DaemonJobResult::Done));
        assert_eq!((end.made.as_str(), end.progress), ("deb", 1.0));
        assert!(!j.cancel(), "a finished job cannot be canceled");
    }

    #[test]
    fn every_stage_is_kept_in_order_with_the_last_count_of_the_one_before() {
        let jobs = Jobs::default();
        let j = jobs.begin("image-pull", "x".into());
        let mut rx = j.watch();
        j.stage("resolving", 0);
        j.stage("downloading", 100);
        j.bytes(60, 0.6);
        j.bytes(100, 1.0);
        j.stage("unpacking", 0);
        j.stage("recording", 0);
        let seen: Vec<(String, u64, u64)> = j
            .drain(&mut rx)
            .into_iter()
            .map(|s| (s.stage, s.bytes_done, s.bytes_total))
            .collect();
        let want = [
            ("resolving", 0, 0),
            ("downloading", 0, 100),
            ("downloading", 100, 100),
            ("unpacking", 0, 0),
            ("recording", 0, 0),
            ("recording", 0, 0),
        ];
        let want: Vec<(String, u64, u64)> = want
            .iter()
            .map(|(s, d, t)| (s.to_string(), *d, *t))
            .collect();
        assert_eq!(seen, want, "the steps, then the status now");
        assert_eq!(j.drain(&mut rx).len(), 1, "a drain takes the steps");
        assert!(!rx.has_changed().unwrap());
    }

    #[test]
    fn a_canceled_job_ends_canceled_and_old_jobs_are_forgotten() {
        let jobs = Jobs::default();
        let j = jobs.begin("image-pull", "x".into());
        assert!(j.cancel());
        assert!(j.cancel_flag().load(Ordering::SeqCst));
        j.finish(Err("canceled".into()));
        assert_eq!(j.status().result, Some(DaemonJobResult::Canceled));
        for _ in 0..KEEP_FINISHED + 3 {
            jobs.begin("image-pull", "y".into())
                .finish(Err("no".into()));
        }
        let running = jobs.begin("image-pull", "z".into());
        assert!(!jobs.is_kept(j.id), "the oldest finished job is forgotten");
        assert!(jobs.is_kept(running.id));
        assert_eq!(jobs.list().len(), KEEP_FINISHED);
        assert_eq!(
            jobs.get(running.id - 1).unwrap().status().result,
            Some(DaemonJobResult::Failed)
        );
    }
}
