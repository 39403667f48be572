//! Bounds on the work any local user can make the helper do.
//!
//! Every local user may call `Root1` (the bus policy lets them send), and several methods need
//! no authorization (`VmmDoctor`, `CheckForUpdate`, …). Without bounds, one user firing
//! thousands of calls would make the helper spawn processes and fetch manifests without end,
//! and starve the owner's update of threads and of polkit's attention. So:
//!
//! - [`CallLimits`] admits at most [`PER_USER`] calls of one user at a time, and at most
//!   [`SHARED`] calls of all such users together; the rest are refused at once with
//!   `org.banger.Error.Busy`, before any work (authorization included) is done. Root and the
//!   install owner are not counted: the owner's daemon and updates must never wait behind
//!   another user.
//! - [`Shared`] runs one piece of work at a time and hands its result to everyone who asked
//!   meanwhile, and, for callers that are not trusted, keeps it for a short time.
//!
//! This module must never make a trusted caller (root, the owner) wait for an untrusted one
//! beyond one run of the shared work, and never queue calls without bound.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls one user (neither root nor the owner) may have in progress at once.
pub const PER_USER: usize = 4;
/// Calls all such users together may have in progress at once.
pub const SHARED: usize = 32;

/// Who is calling, as far as the limits care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Root or the install owner: never limited, always served fresh results.
    Trusted,
    /// Any other user, by uid.
    Other(u32),
}

/// Too many calls in progress; nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bangerd-root is already answering {in_progress} calls from uid {uid} (at most {limit} at \
     once for a user who is neither root nor banger's owner); nothing was done: try again in a \
     moment"
)]
pub struct TooMany {
    /// The caller.
    pub uid: u32,
    /// Calls of that kind in progress.
    pub in_progress: usize,
    /// The limit that was reached.
    pub limit: usize,
}

#[derive(Debug, Default)]
struct Counts {
    per_user: HashMap<u32, usize>,
    shared: usize,
}

/// Admission of calls by untrusted users.
#[derive(Debug)]
pub struct CallLimits {
    counts: Arc<Mutex<Counts>>,
    per_user: usize,
    shared: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self::new(PER_USER, SHARED)
    }
}

/// One admitted call; dropping it ends the call.
#[derive(Debug)]
pub struct Admitted {
    counts: Option<(Arc<Mutex<Counts>>, u32)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((counts, uid)) = self.counts.take() {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            c.shared = c.shared.saturating_sub(1);
            if let Some(n) = c.per_user.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    c.per_user.remove(&uid);
                }
            }
        }
    }
}

impl CallLimits {
    /// Limits of `per_user` calls per user and `shared` for all of them.
    pub fn new(per_user: usize, shared: usize) -> Self {
        CallLimits {
            counts: Arc::default(),
            per_user,
            shared,
        }
    }

    /// Admits a call of `caller`, or refuses it at once.
    pub fn admit(&self, caller: Caller) -> Result<Admitted, TooMany> {
        let Caller::Other(uid) = caller else {
            return Ok(Admitted { counts: None });
        };
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.per_user.get(&uid).copied().unwrap_or(0);
        if mine >= self.per_user {
            return Err(TooMany {
                uid,
                in_progress: mine,
                limit: self.per_user,
            });
        }
        if c.shared >= self.shared {
            return Err(TooMany {
                uid,
                in_progress: mine,
                limit: self.shared,
            });
        }
        *c.per_user.entry(uid).or_default() += 1;
        c.shared += 1;
        Ok(Admitted {
            counts: Some((self.counts.clone(), uid)),
        })
    }
}

/// Work whose result many callers may share: one run at a time; whoever asks while it runs
/// waits for it and, if untrusted, gets its result; untrusted callers also get a result up to
/// `max_age` old. Trusted callers always get a run that started after they asked.
pub struct Shared<T> {
    last: tokio::sync::Mutex<Option<(Instant, T)>>,
    max_age: Duration,
}

impl<T: Clone> Shared<T> {
    /// Shares results up to `max_age` old with untrusted callers.
    pub fn new(max_age: Duration) -> Self {
        Shared {
            last: tokio::sync::Mutex::new(None),
            max_age,
        }
    }

    /// The result of `work`, run now or shared as described above.
    pub async fn get<F, Fut>(&self, caller: Caller, work: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((started, value)) = last.as_ref() {
            let usable = match caller {
                Caller::Trusted => *started >= asked,
                Caller::Other(_) => started.elapsed() <= self.max_age,
            };
            if usable {
                return value.clone();
            }
        }
        let started = Instant::now();
        let value = work().await;
        *last = Some((started, value.clone()));
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn untrusted_users_are_limited_each_and_together() {
        let l = CallLimits::new(2, 3);
        let a1 = l.admit(Caller::Other(1001)).unwrap();
        let _a2 = l.admit(Caller::Other(1001)).unwrap();
        let e = l.admit(Caller::Other(1001)).unwrap_err();
        assert_eq!((e.uid, e.in_progress, e.limit), (1001, 2, 2));
        assert!(e.to_string().contains("nothing was done"), "{e}");
        let _b1 = l.admit(Caller::Other(1002)).unwrap();
        let e = l.admit(Caller::Other(1003)).unwrap_err();
        assert_eq!(e.limit, 3, "the shared limit");
        // Trusted callers are never counted nor refused.
        let trusted: Vec<_> = (0..100)
            .map(|_| l.admit(Caller::Trusted).unwrap())
            .collect();
        drop(trusted);
        drop(a1);
        let _again = l.admit(Caller::Other(1003)).unwrap();
        assert!(
            l.admit(Caller::Other(1001)).is_err(),
            "shared limit reached again"
        );
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_run() {
        let shared = Arc::new(Shared::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicUsize::new(0));
        let ask = |caller| {
            let (shared, runs) = (shared.clone(), runs.clone());
            async move {
                shared
                    .get(caller, || async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        runs.fetch_add(1, Ordering::SeqCst)
                    })
                    .await
            }
        };
        let results =
            futures_util::future::join_all((0..50).map(|i| ask(Caller::Other(1000 + i)))).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "one run for 50 untrusted askers"
        );
        assert!(results.iter().all(|r| *r == 0));
        // Later untrusted askers get the kept result; a trusted one gets a fresh run.
        assert_eq!(ask(Caller::Other(7)).await, 0);
        assert_eq!(ask(Caller::Trusted).await, 1);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn untrusted_results_expire() {
        let shared = Shared::new(Duration::from_millis(20));
        let n = AtomicUsize::new(0);
        let run = || async { n.fetch_add(1, Ordering::SeqCst) };
        assert_eq!(shared.get(Caller::Other(1), run).await, 0);
        assert_eq!(shared.get(Caller::Other(1), run).await, 0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(shared.get(Caller::Other(1), run).await, 1);
    }
}
