//! Interface tests of org.banger.Daemon1 on a private system-like bus carrying banger's real
//! bus policy, through the real client proxies.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use banger::names;
use banger::proxies::Daemon1Proxy;
use banger::testbus::{PrivateBus, assert_served_contract};
use bangerd::core::Daemon;
use bangerd::daemon1::Daemon1;

fn me() -> String {
    banger::users::lookup(&banger::users::current_uid().to_string())
        .unwrap()
        .name
}

async fn serve(bus: &PrivateBus, store: &std::path::Path) -> (zbus::Connection, Arc<Daemon>) {
    let core = Arc::new(Daemon::open(store).unwrap());
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at(
            names::DAEMON1_PATH,
            Daemon1::new(core.clone(), Arc::new(AtomicBool::new(true))),
        )
        .name(names::DAEMON1_NAME)
        .build()
        .await
        .expect("owning org.banger.Daemon1 on the private bus");
    (conn, core)
}

#[tokio::test]
async fn introspection_matches_checked_in_contract() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_svc, _core) = serve(&bus, &dir.path().join("s.db")).await;
    assert_served_contract(
        &bus,
        names::DAEMON1_NAME,
        names::DAEMON1_PATH,
        names::DAEMON1_NAME,
    )
    .await;
}

#[tokio::test]
async fn owner_lists_operations_and_runs_doctor() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_svc, core) = serve(&bus, &dir.path().join("s.db")).await;
    let client = bus.connect().await.unwrap();
    let d = Daemon1Proxy::new(&client).await.unwrap();
    assert!(d.ready().await.unwrap());
    assert_eq!(d.version().await.unwrap(), banger::build_info::VERSION);
    assert!(d.list_operations().await.unwrap().is_empty());

    let op = core.operations().begin("vm.create").unwrap();
    op.stage("booting");
    let ops = d.list_operations().await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(
        (ops[0].kind.as_str(), ops[0].stage.as_str(), ops[0].done),
        ("vm.create", "booting", false)
    );
    let checks = d.doctor().await.unwrap();
    let ops_check = checks.iter().find(|c| c.check == "operations").unwrap();
    assert!(ops_check.detail.contains("1 in flight"), "{ops_check:?}");
    op.finish("done");
    let ops = d.list_operations().await.unwrap();
    assert!(ops[0].done);
    let store = checks.iter().find(|c| c.check == "store").unwrap();
    assert_eq!(store.level, "PASS", "{store:?}");
}

/// Another local user is refused by the bus policy before the daemon sees the call.
#[tokio::test]
async fn other_user_is_denied_by_bus_policy() {
    assert_eq!(
        banger::users::current_uid(),
        0,
        "this test switches to user nobody and must run as root"
    );
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_svc, _core) = serve(&bus, &dir.path().join("s.db")).await;
    let address = bus.address.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "busctl",
            ])
            .arg(format!("--address={address}"))
            .args([
                "call",
                names::DAEMON1_NAME,
                names::DAEMON1_PATH,
                names::DAEMON1_NAME,
                "ListOperations",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "nobody must be refused; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("Access denied")
            || stderr.contains("AccessDenied")
            || stderr.contains("denied"),
        "{stderr}"
    );
}

#[tokio::test]
async fn inhibit_lasts_until_released_or_the_caller_leaves() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_svc, core) = serve(&bus, &dir.path().join("s.db")).await;
    let client = bus.connect().await.unwrap();
    let d = Daemon1Proxy::new(&client).await.unwrap();
    let id = d.inhibit("benchmark run").await.unwrap();
    let live = core.operations().in_flight();
    assert_eq!(live.len(), 1);
    assert_eq!(
        (live[0].kind.as_str(), live[0].stage.as_str()),
        ("inhibit", "benchmark run")
    );
    d.uninhibit(&id).await.unwrap();
    assert!(core.operations().in_flight().is_empty());
    let e = d.uninhibit(&id).await.unwrap_err();
    assert!(e.to_string().contains("no inhibit operation"), "{e}");
    let e = d.inhibit("  ").await.unwrap_err();
    assert!(e.to_string().contains("printable"), "{e}");

    // A second client holds one and disconnects: the hold goes with it.
    let other = bus.connect().await.unwrap();
    Daemon1Proxy::new(&other)
        .await
        .unwrap()
        .inhibit("short-lived")
        .await
        .unwrap();
    assert_eq!(core.operations().in_flight().len(), 1);
    drop(other);
    for _ in 0..50 {
        if core.operations().in_flight().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        core.operations().in_flight().is_empty(),
        "the hold ends when its caller leaves"
    );
}
