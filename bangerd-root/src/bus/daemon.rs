//! [`DaemonPeer`] over `org.banger.Daemon1`: never activating the daemon (a stopped daemon has
//! nothing in flight).

use banger_api::proxies::Daemon1Proxy;
use banger_api::wire::OperationInfo;
use zbus::Connection;
use zbus::proxy::CacheProperties;

use crate::update::daemon::{DaemonPeer, Unreachable};
use crate::update::job::PortFuture;

/// The owner's daemon on the system bus.
pub struct BusDaemon {
    conn: Connection,
}

impl BusDaemon {
    /// The daemon reached through `conn`.
    pub fn new(conn: Connection) -> std::sync::Arc<Self> {
        std::sync::Arc::new(BusDaemon { conn })
    }

    async fn proxy(&self) -> zbus::Result<Daemon1Proxy<'static>> {
        Daemon1Proxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }
}

/// Whether `e` says nobody owns the daemon's name.
fn not_running(e: &zbus::Error) -> bool {
    matches!(
        e,
        zbus::Error::FDO(e) if matches!(
            e.as_ref(),
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        )
    )
}

impl DaemonPeer for BusDaemon {
    fn operations(&self) -> PortFuture<'_, Result<Vec<OperationInfo>, Unreachable>> {
        Box::pin(async move {
            let d = self.proxy().await.map_err(|e| Unreachable(e.to_string()))?;
            match d.list_operations().await {
                Ok(ops) => Ok(ops),
                Err(e) if not_running(&e) => Ok(Vec::new()),
                Err(e) => Err(Unreachable(e.to_string())),
            }
        })
    }

    fn ready(&self) -> PortFuture<'_, bool> {
        Box::pin(async move {
            match self.proxy().await {
                Ok(d) => d.ready().await.unwrap_or(false),
                Err(_) => false,
            }
        })
    }
}
