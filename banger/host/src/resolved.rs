//! Telling systemd-resolved, where it runs, that the VM domain lives on the VM bridge: the
//! bridge's DNS server is the VMs' resolver on the host's bridge address, and
//! `~banger.internal` is a routing-only domain of the bridge, so the host's own lookups of
//! `<vm>.banger.internal` go there and nothing else does. Through resolved's D-Bus API
//! (`SetLinkDNS`, `SetLinkDomains`), never by editing files; resolved forgets it when the link
//! goes away.

use std::net::Ipv4Addr;

use zbus::Connection;

/// resolved's bus name.
pub const RESOLVED_NAME: &str = "org.freedesktop.resolve1";

#[zbus::proxy(
    interface = "org.freedesktop.resolve1.Manager",
    default_service = "org.freedesktop.resolve1",
    default_path = "/org/freedesktop/resolve1"
)]
trait Resolve1Manager {
    /// Sets a link's DNS servers: (address family, address bytes).
    #[zbus(no_autostart, name = "SetLinkDNS")]
    fn set_link_dns(&self, ifindex: i32, addresses: &[(i32, Vec<u8>)]) -> zbus::Result<()>;

    /// Sets a link's domains: (domain, routing only).
    #[zbus(no_autostart)]
    fn set_link_domains(&self, ifindex: i32, domains: &[(&str, bool)]) -> zbus::Result<()>;
}

/// What [`register_link`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// resolved routes `domain` to `server` on the link now.
    Yes,
    /// resolved does not run here: nothing to do.
    NoResolved,
}

/// Makes `server` the DNS server of interface `ifindex` and `domain` its routing-only domain,
/// when systemd-resolved runs (it is never started for this).
pub async fn register_link(
    conn: &Connection,
    ifindex: i32,
    server: Ipv4Addr,
    domain: &str,
) -> zbus::Result<Registered> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let name = zbus::names::BusName::try_from(RESOLVED_NAME).expect("a valid bus name");
    if !dbus.name_has_owner(name).await? {
        return Ok(Registered::NoResolved);
    }
    let m = Resolve1ManagerProxy::new(conn).await?;
    m.set_link_dns(ifindex, &[(libc::AF_INET, server.octets().to_vec())])
        .await?;
    m.set_link_domains(ifindex, &[(domain, true)]).await?;
    Ok(Registered::Yes)
}

/// The kernel's index of interface `name`, if it exists.
pub fn ifindex(name: &str) -> Option<i32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}
