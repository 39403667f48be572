//! Interface tests of org.banger.Daemon1 on a private system-like bus carrying banger's real
//! bus policy, through the real client proxies.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use banger_api::error::ErrorKind;
use banger_api::names;
use banger_api::proxies::Daemon1Proxy;
use banger_host::testbus::{PrivateBus, assert_served_contract};
use bangerd::core::Daemon;
use bangerd::daemon1::Daemon1;
use bangerd::vms::Vms;

fn me() -> String {
    banger_host::users::lookup(&banger_host::users::current_uid().to_string())
        .unwrap()
        .name
}

async fn serve(bus: &PrivateBus, store: &std::path::Path) -> (zbus::Connection, Arc<Daemon>) {
    let core = Arc::new(Daemon::open(store).unwrap());
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .expect("connecting to the private bus");
    let state_dir = store.parent().unwrap().to_path_buf();
    let vms = Arc::new(
        Vms::new(
            state_dir,
            core.store().clone(),
            core.operations().clone(),
            conn.clone(),
        )
        .await
        .unwrap(),
    );
    conn.object_server()
        .at(
            names::DAEMON1_PATH,
            Daemon1::new(core.clone(), vms, Arc::new(AtomicBool::new(true))),
        )
        .await
        .unwrap();
    conn.request_name(names::DAEMON1_NAME)
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
    assert_eq!(d.version().await.unwrap(), banger_host::build_info::VERSION);
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
    op.finish(banger_api::wire::OperationStage::Done);
    let ops = d.list_operations().await.unwrap();
    assert!(ops[0].done);
    let store = checks.iter().find(|c| c.check == "store").unwrap();
    assert_eq!(store.level, "PASS", "{store:?}");
}

/// Another local user is refused by the bus policy before the daemon sees the call.
#[tokio::test]
async fn other_user_is_denied_by_bus_policy() {
    assert_eq!(
        banger_host::users::current_uid(),
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

fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("not a method error: {other}"),
    }
}

/// Lists everything under `dir`, relative, sorted: "nothing changed" means this is equal.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn images_are_hashed_listed_and_hostile_imports_change_nothing() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (_svc, _core) = serve(&bus, &state.join("banger.db")).await;
    let client = bus.connect().await.unwrap();
    let d = Daemon1Proxy::new(&client).await.unwrap();

    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let kernel = src.join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF\x02\x01\x01 a tiny stand-in kernel").unwrap();
    let initrd = src.join("initrd");
    std::fs::write(&initrd, b"abc").unwrap();
    let junk = src.join("junk");
    std::fs::write(&junk, b"#!/bin/sh\n").unwrap();
    let k = kernel.to_str().unwrap();
    let i = initrd.to_str().unwrap();

    let info = d.import_image("deb", k, i, "").await.unwrap();
    assert_eq!(
        info.initrd_sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(info.rootfs_sha256, "");
    assert_eq!(
        std::fs::read(state.join("images/deb/kernel")).unwrap(),
        std::fs::read(&kernel).unwrap(),
        "the kernel is copied into the store"
    );
    let before = tree(&state);

    let missing = src.join("nope");
    let relative = "vmlinux";
    let cases: Vec<(&str, &str, &str, &str, &str)> = vec![
        ("deb", k, "", "", ErrorKind::AlreadyExists.name()),
        ("x", junk.to_str().unwrap(), "", "", "not a Linux kernel"),
        ("x", missing.to_str().unwrap(), "", "", "No such file"),
        ("x", k, missing.to_str().unwrap(), "", "initrd"),
        ("x", relative, "", "", "not absolute"),
        ("x", src.to_str().unwrap(), "", "", "not a regular file"),
        ("../x", k, "", "", "not valid"),
        ("x", "", "", "", "needs a kernel"),
    ];
    for (name, kernel, initrd, rootfs, want) in cases {
        let e = d
            .import_image(name, kernel, initrd, rootfs)
            .await
            .expect_err(want);
        let text = format!("{} {e}", error_name(&e));
        assert!(
            text.contains(want),
            "{name} {kernel}: want {want:?}, got {text}"
        );
        assert!(text.contains("nothing was imported"), "{text}");
        assert_eq!(tree(&state), before, "{want}: nothing may change");
    }

    let list = d.list_images().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].bytes, std::fs::metadata(&kernel).unwrap().len() + 3);

    // VM requests refused before anything is made.
    let vm_cases: Vec<(&str, &str, u32, u32, &str)> = vec![
        ("web", "nope", 1, 256, ErrorKind::NotFound.name()),
        ("web", "deb", 0, 256, "CPUs is impossible"),
        ("web", "deb", 1, 16 << 20, "MiB of memory is impossible"),
        ("web", "deb", 1, 1, "MiB of memory is impossible"),
        ("Web_1", "deb", 1, 256, "not valid"),
    ];
    for (name, image, cpus, mem, want) in vm_cases {
        let e = d.create_vm(name, image, cpus, mem).await.expect_err(want);
        let text = format!("{} {e}", error_name(&e));
        assert!(text.contains(want), "want {want:?}, got {text}");
        assert!(text.contains("nothing was created"), "{text}");
        assert_eq!(tree(&state), before, "{want}: nothing may change");
    }
    assert!(d.list_vms().await.unwrap().is_empty());
    let e = d.get_vm("web").await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotFound));

    let e = d.delete_image("nope").await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotFound));
    d.delete_image("deb").await.unwrap();
    assert!(d.list_images().await.unwrap().is_empty());
    assert!(!state.join("images/deb").exists());
}

/// A job of the daemon, served on the daemon's connection as `PullImage` serves one.
async fn served_job(
    conn: &zbus::Connection,
) -> (
    Arc<bangerd::jobs::Job>,
    bangerd::jobs::Jobs,
    bangerd::daemon_job::JobObjects,
) {
    let jobs = bangerd::jobs::Jobs::default();
    let objects = bangerd::daemon_job::JobObjects::new(Default::default());
    let job = jobs.begin(
        banger_api::job::JOB_KIND_IMAGE_PULL,
        "mini:12 as mini".into(),
    );
    objects.serve(conn, &jobs, &job).await.unwrap();
    (job, jobs, objects)
}

#[tokio::test]
async fn job_introspection_matches_checked_in_contract() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (svc, _core) = serve(&bus, &dir.path().join("s.db")).await;
    let (job, _jobs, _objects) = served_job(&svc).await;
    assert_served_contract(
        &bus,
        names::DAEMON1_NAME,
        &names::daemon_job_path(job.id),
        names::DAEMON_JOB_INTERFACE,
    )
    .await;
}

/// Every message on `stream` until `Finished`, as (member, changed names, invalidated names).
async fn job_signals(stream: &mut zbus::MessageStream) -> Vec<(String, Vec<String>, Vec<String>)> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    for _ in 0..100 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("a job signal within 5 s")
            .unwrap()
            .unwrap();
        let member = msg.header().member().unwrap().to_string();
        if member == "Finished" {
            let (ok, result, error): (bool, String, String) = msg.body().deserialize().unwrap();
            out.push((member, vec![ok.to_string(), result], vec![error]));
            return out;
        }
        let (iface, changed, invalidated): (
            String,
            HashMap<String, zbus::OwnedVariant>,
            Vec<String>,
        ) = msg.body().deserialize().unwrap();
        assert_eq!(iface, names::DAEMON_JOB_INTERFACE);
        let mut changed: Vec<String> = changed.into_keys().collect();
        changed.sort();
        out.push((member, changed, invalidated));
    }
    panic!("no Finished after 100 signals: {out:?}");
}

#[tokio::test]
async fn a_job_signals_its_changes_withholds_its_error_and_can_be_canceled_once() {
    use banger_api::proxies::DaemonJobProxy;
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (svc, _core) = serve(&bus, &dir.path().join("s.db")).await;
    let (job, _jobs, _objects) = served_job(&svc).await;
    let path = names::daemon_job_path(job.id);
    let client = bus.connect().await.unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(path.as_str())
        .build()
        .unwrap();
    let mut stream =
        zbus::MessageStream::for_match_rule(rule, &client, std::num::NonZeroUsize::new(64))
            .await
            .unwrap();
    let proxy = DaemonJobProxy::builder(&client)
        .path(path.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(proxy.kind().await.unwrap(), "image-pull");
    assert_eq!(proxy.description().await.unwrap(), "mini:12 as mini");
    proxy.cancel().await.expect("a running job can be canceled");
    assert!(job.canceled(), "the cancel reaches the work");

    job.stage("downloading", 1000);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    job.bytes(500, 0.5);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    job.finish(Err("writing /x: No space left on device".into()));
    let seen = job_signals(&mut stream).await;
    let changes: Vec<&(String, Vec<String>, Vec<String>)> = seen
        .iter()
        .filter(|(m, _, _)| m == "PropertiesChanged")
        .collect();
    assert!(
        changes
            .iter()
            .any(|(_, c, _)| c.contains(&"Stage".to_string())
                && c.contains(&"BytesTotal".to_string())),
        "{seen:?}"
    );
    assert!(
        changes
            .iter()
            .any(|(_, c, _)| c == &["BytesDone".to_string(), "Progress".to_string()]),
        "a byte count changes only the counts: {seen:?}"
    );
    let last = changes.last().unwrap();
    assert!(last.1.contains(&"Result".to_string()) && last.1.contains(&"State".to_string()));
    assert_eq!(
        last.2,
        ["Error"],
        "the error is announced without its value"
    );
    let (_, finished, error) = seen.last().unwrap();
    assert_eq!(finished, &["false".to_string(), "canceled".to_string()]);
    assert_eq!(error, &[names::JOB_ERROR_WITHHELD.to_string()]);
    assert!(
        !error[0].contains("No space"),
        "signals never carry the reason"
    );
    assert_eq!(
        proxy.error().await.unwrap(),
        "writing /x: No space left on device",
        "the owner reads the reason"
    );
    assert_eq!(proxy.result().await.unwrap(), "canceled");
    let e = proxy.cancel().await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Busy), "{e}");
    assert!(e.to_string().contains("already finished"), "{e}");
}

#[tokio::test]
async fn a_malformed_pull_reference_is_refused_before_any_work() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (_svc, core) = serve(&bus, &state.join("banger.db")).await;
    let client = bus.connect().await.unwrap();
    let d = Daemon1Proxy::new(&client).await.unwrap();
    let before = tree(&state);
    for (reference, name, want) in [
        ("", "", "reference"),
        ("../etc:1", "", "reference"),
        ("mini:", "", "reference"),
        ("mini:12", "Not/A/Name", "not valid"),
    ] {
        let e = d.pull_image(reference, name).await.unwrap_err();
        assert_eq!(
            ErrorKind::of(&e),
            Some(ErrorKind::InvalidArgument),
            "{reference:?} {name:?}: {e}"
        );
        assert!(e.to_string().contains(want), "{reference:?}: {e}");
    }
    assert!(core.operations().list().is_empty(), "no operation began");
    assert_eq!(tree(&state), before, "nothing was written");
}

mod common;

/// The daemon with its VM and image objects, on a host that is a test double (VM states are
/// read from it at each change: there is no systemd here to announce them).
async fn serve_objects(
    bus: &PrivateBus,
    state: &std::path::Path,
) -> (zbus::Connection, Arc<Vms>, Arc<common::FakeHost>) {
    let core = Arc::new(Daemon::open(&state.join("banger.db")).unwrap());
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let host = Arc::new(common::FakeHost::default());
    let vms = Arc::new(Vms::with_host(
        state.to_path_buf(),
        core.store().clone(),
        core.operations().clone(),
        host.clone(),
    ));
    let daemon1 = Daemon1::new(core, vms.clone(), Arc::new(AtomicBool::new(true)));
    let calls = daemon1.calls();
    let managed = daemon1.managed();
    conn.object_server()
        .at(names::DAEMON1_PATH, daemon1)
        .await
        .unwrap();
    conn.object_server()
        .at(
            names::DAEMON1_PATH,
            bangerd::manager::ObjectManager::new(managed.clone()),
        )
        .await
        .unwrap();
    let objects =
        bangerd::objects::Objects::start(conn.clone(), vms.clone(), calls, managed, None).await;
    tokio::spawn(objects.run());
    conn.request_name(names::DAEMON1_NAME).await.unwrap();
    (conn, vms, host)
}

/// Waits (5 s at most) for a signal `member` on `path`; returns its body's first elements as
/// the test needs them: for PropertiesChanged the changed properties, for InterfacesAdded the
/// properties of the added interface, for InterfacesRemoved nothing.
async fn signal_on(
    stream: &mut zbus::MessageStream,
    member: &str,
    path: &str,
) -> HashMap<String, zbus::OwnedVariant> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {member} on {path} within 5 s"))
            .unwrap()
            .unwrap();
        let h = msg.header();
        if h.member().map(|m| m.as_str()) != Some(member) {
            continue;
        }
        match member {
            "PropertiesChanged" if h.path().map(|p| p.as_str()) == Some(path) => {
                let (_, changed, _): (String, HashMap<String, zbus::OwnedVariant>, Vec<String>) =
                    msg.body().deserialize().unwrap();
                return changed;
            }
            "InterfacesAdded" => {
                let (at, mut ifaces): (
                    zbus::OwnedObjectPath,
                    HashMap<String, HashMap<String, zbus::OwnedVariant>>,
                ) = msg.body().deserialize().unwrap();
                if at.as_str() == path {
                    return ifaces.drain().next().map(|(_, p)| p).unwrap_or_default();
                }
            }
            "InterfacesRemoved" => {
                let (at, _): (zbus::OwnedObjectPath, Vec<String>) =
                    msg.body().deserialize().unwrap();
                if at.as_str() == path {
                    return HashMap::new();
                }
            }
            _ => {}
        }
    }
}

fn text(props: &HashMap<String, zbus::OwnedVariant>, key: &str) -> String {
    String::try_from(
        props
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {props:?}"))
            .clone(),
    )
    .unwrap()
}

#[tokio::test]
async fn vms_and_images_are_objects_that_announce_every_change() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (_svc, vms, host) = serve_objects(&bus, &state).await;
    let client = bus.connect().await.unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path_namespace(names::DAEMON1_PATH)
        .build()
        .unwrap();
    let mut signals =
        zbus::MessageStream::for_match_rule(rule, &client, std::num::NonZeroUsize::new(256))
            .await
            .unwrap();
    let d = Daemon1Proxy::new(&client).await.unwrap();

    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF\x02\x01\x01 a tiny stand-in kernel").unwrap();
    d.import_image("deb-12", kernel.to_str().unwrap(), "", "")
        .await
        .unwrap();
    let image_path = names::daemon_image_path("deb-12");
    let added = signal_on(&mut signals, "InterfacesAdded", &image_path).await;
    assert_eq!(text(&added, "Name"), "deb-12");

    let vm = d.create_vm("web1", "deb-12", 1, 128).await.unwrap();
    let vm_path = names::daemon_vm_path(&vm.id);
    let added = signal_on(&mut signals, "InterfacesAdded", &vm_path).await;
    assert_eq!(
        (text(&added, "Name"), text(&added, "State")),
        ("web1".into(), "stopped".into())
    );
    assert!(added.contains_key("MemoryMiB"), "{added:?}");
    let used = signal_on(&mut signals, "PropertiesChanged", &image_path).await;
    assert_eq!(
        Vec::<String>::try_from(used["UsedBy"].clone()).unwrap(),
        ["web1"]
    );

    // Started through the VM's own object.
    let call = |method: &'static str| {
        let client = client.clone();
        let vm_path = vm_path.clone();
        async move {
            client
                .call_method(
                    Some(names::DAEMON1_NAME),
                    vm_path.as_str(),
                    Some(names::DAEMON_VM_INTERFACE),
                    method,
                    &(),
                )
                .await
        }
    };
    call("Start").await.unwrap();
    let changed = signal_on(&mut signals, "PropertiesChanged", &vm_path).await;
    assert_eq!(text(&changed, "State"), "running");
    assert_eq!(text(&changed, "Backend"), "qemu");
    assert!(
        !changed.contains_key("Name"),
        "only what changed: {changed:?}"
    );

    let managed = zbus::fdo::ObjectManagerProxy::builder(&client)
        .destination(names::DAEMON1_NAME)
        .path(names::DAEMON1_PATH)
        .build()
        .await
        .unwrap()
        .get_managed_objects()
        .await
        .unwrap();
    let paths: Vec<&str> = managed.keys().map(|p| p.as_str()).collect();
    assert!(
        paths.contains(&vm_path.as_str()) && paths.contains(&image_path.as_str()),
        "{paths:?}"
    );

    // A VM that stops on its own (its unit is gone) is seen at the next change.
    host.set(&vm.id, banger_api::wire::VmState::Failed);
    vms.pin_host_key(
        "web1",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOm4w5E2wFwPXg1LI2hXp7Y2Nk3dVRRTS0PUhPOi1tIf",
    )
    .unwrap();
    let changed = signal_on(&mut signals, "PropertiesChanged", &vm_path).await;
    assert_eq!(text(&changed, "State"), "failed");
    assert!(text(&changed, "HostKey").starts_with("ssh-ed25519 "));

    call("Stop").await.unwrap();
    let changed = signal_on(&mut signals, "PropertiesChanged", &vm_path).await;
    assert_eq!(text(&changed, "State"), "stopped");
    call("Delete").await.unwrap();
    signal_on(&mut signals, "InterfacesRemoved", &vm_path).await;
    let used = signal_on(&mut signals, "PropertiesChanged", &image_path).await;
    assert!(
        Vec::<String>::try_from(used["UsedBy"].clone())
            .unwrap()
            .is_empty()
    );
    // A client still holding the path: every call and property read says NotFound.
    for method in ["Start", "Stop", "Delete"] {
        let e = call(method).await.unwrap_err();
        assert_eq!(
            ErrorKind::of(&e),
            Some(ErrorKind::NotFound),
            "{method} on a deleted VM's path: {e}"
        );
        assert!(e.to_string().contains("web1"), "names the VM: {e}");
    }
    let e = client
        .call_method(
            Some(names::DAEMON1_NAME),
            vm_path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(names::DAEMON_VM_INTERFACE, "State"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        ErrorKind::of(&e),
        Some(ErrorKind::NotFound),
        "reading a deleted VM's State: {e}"
    );
    let managed = zbus::fdo::ObjectManagerProxy::builder(&client)
        .destination(names::DAEMON1_NAME)
        .path(names::DAEMON1_PATH)
        .build()
        .await
        .unwrap();
    let listed = managed.get_managed_objects().await.unwrap();
    assert!(
        !listed.keys().any(|p| p.as_str() == vm_path),
        "a deleted VM is not listed: {listed:?}"
    );
    assert!(listed.keys().any(|p| p.as_str() == image_path));
    d.delete_image("deb-12").await.unwrap();
    signal_on(&mut signals, "InterfacesRemoved", &image_path).await;
    let e = client
        .call_method(
            Some(names::DAEMON1_NAME),
            image_path.as_str(),
            Some(names::DAEMON_IMAGE_INTERFACE),
            "Delete",
            &(),
        )
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotFound), "{e}");
    assert!(managed.get_managed_objects().await.unwrap().is_empty());

    // The same name imported again: the object comes back, announced and listed.
    d.import_image("deb-12", kernel.to_str().unwrap(), "", "")
        .await
        .unwrap();
    let added = signal_on(&mut signals, "InterfacesAdded", &image_path).await;
    assert_eq!(text(&added, "Name"), "deb-12");
    let listed = managed.get_managed_objects().await.unwrap();
    assert_eq!(
        listed.keys().map(|p| p.as_str()).collect::<Vec<_>>(),
        [image_path.as_str()]
    );
    let image_props = zbus::fdo::PropertiesProxy::builder(&client)
        .destination(names::DAEMON1_NAME)
        .path(image_path.as_str())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let name = image_props
        .get(
            zbus::names::InterfaceName::from_static_str_unchecked(names::DAEMON_IMAGE_INTERFACE),
            "Name",
        )
        .await
        .unwrap();
    assert_eq!(String::try_from(name).unwrap(), "deb-12");
    assert!(
        d.list_vms().await.unwrap().is_empty(),
        "the daemon still answers"
    );
}

/// Deleted objects stay on the bus answering NotFound for the next `BURIED_KEPT` deletions,
/// then go: the bus is not a record of every image ever deleted.
#[tokio::test]
async fn deleted_objects_answer_not_found_for_a_bounded_while() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (_svc, vms, _host) = serve_objects(&bus, &state).await;
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF\x02\x01\x01 a tiny stand-in kernel").unwrap();
    let client = bus.connect().await.unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.ObjectManager")
        .build()
        .unwrap();
    let mut signals =
        zbus::MessageStream::for_match_rule(rule, &client, std::num::NonZeroUsize::new(1024))
            .await
            .unwrap();
    let deleted = bangerd::objects::BURIED_KEPT + 4;
    for i in 0..deleted {
        let image = banger_api::ids::ImageName::parse(&format!("img-{i}")).unwrap();
        vms.import_image(&image, kernel.to_str().unwrap(), "", "")
            .await
            .unwrap();
        // The objects follow in their own task: one change at a time, each seen served.
        signal_on(
            &mut signals,
            "InterfacesAdded",
            &names::daemon_image_path(image.as_str()),
        )
        .await;
        vms.delete_image(&image).await.unwrap();
        signal_on(
            &mut signals,
            "InterfacesRemoved",
            &names::daemon_image_path(image.as_str()),
        )
        .await;
    }
    let delete = |i: usize| {
        let client = client.clone();
        async move {
            client
                .call_method(
                    Some(names::DAEMON1_NAME),
                    names::daemon_image_path(&format!("img-{i}")).as_str(),
                    Some(names::DAEMON_IMAGE_INTERFACE),
                    "Delete",
                    &(),
                )
                .await
                .unwrap_err()
        }
    };
    for i in 0..4 {
        let e = delete(i).await;
        assert!(
            e.to_string()
                .contains("org.freedesktop.DBus.Error.UnknownObject"),
            "img-{i} was dropped from the bus: {e}"
        );
    }
    for i in [4, deleted / 2, deleted - 1] {
        let e = delete(i).await;
        assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotFound), "img-{i}: {e}");
        assert!(e.to_string().contains(&format!("img-{i}")), "{e}");
    }
    let om = zbus::fdo::ObjectManagerProxy::builder(&client)
        .destination(names::DAEMON1_NAME)
        .path(names::DAEMON1_PATH)
        .build()
        .await
        .unwrap();
    assert!(om.get_managed_objects().await.unwrap().is_empty());
}

#[tokio::test]
async fn object_introspection_matches_checked_in_contract() {
    let bus = PrivateBus::start(&me()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (_svc, vms, _host) = serve_objects(&bus, &state).await;
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF\x02\x01\x01 a tiny stand-in kernel").unwrap();
    let image = banger_api::ids::ImageName::parse("deb").unwrap();
    vms.import_image(&image, kernel.to_str().unwrap(), "", "")
        .await
        .unwrap();
    let vm = vms
        .create_vm(
            Some(&banger_api::ids::VmName::parse("web1").unwrap()),
            "deb",
            1,
            128,
        )
        .await
        .unwrap();
    // The objects follow in their own task: wait until both are served.
    let client = bus.connect().await.unwrap();
    let om = zbus::fdo::ObjectManagerProxy::builder(&client)
        .destination(names::DAEMON1_NAME)
        .path(names::DAEMON1_PATH)
        .build()
        .await
        .unwrap();
    for _ in 0..100 {
        if om.get_managed_objects().await.unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (path, shown, iface) in [
        (
            names::daemon_vm_path(&vm.id),
            format!("{}/ID", names::DAEMON_VM_PATH_NAMESPACE),
            names::DAEMON_VM_INTERFACE,
        ),
        (
            names::daemon_image_path("deb"),
            names::daemon_image_path("deb"),
            names::DAEMON_IMAGE_INTERFACE,
        ),
    ] {
        banger_host::testbus::assert_served_contract_shown_at(
            &bus,
            names::DAEMON1_NAME,
            &path,
            &shown,
            iface,
        )
        .await;
    }
}

/// `org.freedesktop.LogControl1`, as `systemctl service-log-level` uses it.
#[tokio::test]
async fn the_log_level_changes_without_a_restart() {
    use banger_host::runtime::{LOG_CONTROL_PATH, LogControl, init_service_logging};
    // The only test in this binary that sets the global subscriber.
    let level = init_service_logging("bangerd");
    let bus = PrivateBus::start(&me()).unwrap();
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    conn.object_server()
        .at(LOG_CONTROL_PATH, LogControl::new(level.clone(), "bangerd"))
        .await
        .unwrap();
    conn.request_name(names::DAEMON1_NAME).await.unwrap();
    let client = bus.connect().await.unwrap();
    let props = zbus::fdo::PropertiesProxy::builder(&client)
        .destination(names::DAEMON1_NAME)
        .path(LOG_CONTROL_PATH)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let iface =
        zbus::names::InterfaceName::from_static_str_unchecked("org.freedesktop.LogControl1");
    let get = |name: &'static str| {
        let props = props.clone();
        let iface = iface.clone();
        async move { String::try_from(props.get(iface, name).await.unwrap()).unwrap() }
    };
    assert_eq!(get("SyslogIdentifier").await, "bangerd");
    let before = get("LogLevel").await;
    props
        .set(iface.clone(), "LogLevel", &zbus::Variant::from("debug"))
        .await
        .unwrap();
    assert_eq!(get("LogLevel").await, "debug");
    assert_eq!(
        level.get(),
        "debug",
        "the running subscriber's level changed"
    );
    let e = props
        .set(iface.clone(), "LogLevel", &zbus::Variant::from("loud"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown log level \"loud\": use one of emerg, alert"),
        "{e}"
    );
    assert_eq!(
        get("LogLevel").await,
        "debug",
        "a bad level changes nothing"
    );
    let e = props
        .set(iface.clone(), "LogTarget", &zbus::Variant::from("kmsg"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
    props
        .set(
            iface.clone(),
            "LogLevel",
            &zbus::Variant::from(before.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(get("LogLevel").await, before);
}
