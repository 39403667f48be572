//! The owner's daemon as the update engine sees it: the operations it has in flight, and
//! whether it is ready after a restart. The bus layer ([`crate::bus::daemon::BusDaemon`])
//! asks `org.banger.Daemon1`; this module knows nothing of how.

use banger_api::wire::OperationInfo;

use super::job::PortFuture;

/// Why the daemon could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// The owner's `bangerd`, from the update engine's side.
pub trait DaemonPeer: Send + Sync {
    /// The operations it has registered (done ones included), or none when it is not running
    /// (nothing can be in flight then); an error when it runs but could not be asked.
    fn operations(&self) -> PortFuture<'_, Result<Vec<OperationInfo>, Unreachable>>;

    /// Whether it says it is ready; `false` when it cannot be asked (yet).
    fn ready(&self) -> PortFuture<'_, bool>;
}
