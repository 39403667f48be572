//! The VM domain is registered with systemd-resolved through its D-Bus API, on a private bus
//! with a stand-in for resolved that records what it was told; without resolved, nothing is
//! asked and nothing fails.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use banger_host::resolved::{Registered, register_link};
use banger_host::testbus::PrivateBus;

type Calls = Arc<Mutex<Vec<String>>>;

struct FakeResolved(Calls);

#[zbus::interface(name = "org.freedesktop.resolve1.Manager")]
impl FakeResolved {
    #[zbus(name = "SetLinkDNS")]
    fn set_link_dns(&self, ifindex: i32, addresses: Vec<(i32, Vec<u8>)>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("dns {ifindex} {addresses:?}"));
    }

    fn set_link_domains(&self, ifindex: i32, domains: Vec<(String, bool)>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("domains {ifindex} {domains:?}"));
    }
}

#[tokio::test]
async fn the_bridge_gets_the_vm_resolver_and_a_routing_only_domain() {
    let me = banger_host::users::lookup(&banger_host::users::current_uid().to_string()).unwrap();
    let bus = PrivateBus::start(&me.name).unwrap();
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let host = Ipv4Addr::new(172, 30, 0, 1);

    // No resolved on this bus: nothing to do.
    assert_eq!(
        register_link(&conn, 7, host, "banger.internal")
            .await
            .unwrap(),
        Registered::NoResolved
    );

    let calls: Calls = Arc::default();
    let _resolved = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at("/org/freedesktop/resolve1", FakeResolved(calls.clone()))
        .name("org.freedesktop.resolve1")
        .build()
        .await
        .unwrap();
    assert_eq!(
        register_link(&conn, 7, host, "banger.internal")
            .await
            .unwrap(),
        Registered::Yes
    );
    assert_eq!(
        *calls.lock().unwrap(),
        [
            "dns 7 [(2, [172, 30, 0, 1])]",
            "domains 7 [(\"banger.internal\", true)]"
        ]
    );
}
