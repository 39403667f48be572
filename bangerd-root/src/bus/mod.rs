//! The helper's bus layer: the only code that serves objects, emits signals and maps the
//! cores' errors to `org.banger.Error.*`. `root1` is `org.banger.Root1` (it authorizes every
//! call through `authz` first, then calls the update engine or the VM host), `job1` serves the
//! engine's jobs and publishes their changes, and `daemon` is the owner's `bangerd` as the
//! engine asks it.
//!
//! Nothing here decides an update or a VM's plumbing: it translates, and it must never start
//! work before authorization has answered.

pub mod authz;
pub mod daemon;
pub mod job1;
pub mod root1;
