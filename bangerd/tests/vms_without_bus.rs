//! The daemon's VM lifecycle against a host that is a test double: what `Vms` records, what it
//! asks of the host, and what it leaves when the host refuses, without any bus. (The same calls
//! against the real helper run in the smoke suite.)

use std::sync::Arc;

use banger_api::ids::{ImageName, VmName};
use banger_api::options::StartVmmOptions;
use banger_api::wire::{BackendKind, OperationStage, VmState};
use bangerd::core::Daemon;
use bangerd::vms::{VmError, Vms};

mod common;
use common::FakeHost;

fn named(name: &str) -> VmName {
    VmName::parse(name).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    core: Arc<Daemon>,
    host: Arc<FakeHost>,
    vms: Vms,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let core = Arc::new(Daemon::open(&state.join("banger.db")).unwrap());
    let host = Arc::new(FakeHost::default());
    let vms = Vms::with_host(
        state.clone(),
        core.store().clone(),
        core.operations().clone(),
        host.clone(),
    );
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let kernel = src.join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF\x02\x01\x01 a tiny stand-in kernel").unwrap();
    vms.import_image(
        &ImageName::parse("deb").unwrap(),
        kernel.to_str().unwrap(),
        "",
        "",
    )
    .await
    .unwrap();
    Fixture {
        _dir: dir,
        core,
        host,
        vms,
    }
}

fn recorded_state(core: &Daemon, name: &str) -> String {
    core.store()
        .lock()
        .unwrap()
        .vm(name)
        .unwrap()
        .unwrap()
        .state
}

fn stages(core: &Daemon) -> Vec<String> {
    core.operations()
        .list()
        .into_iter()
        .map(|o| format!("{} {}", o.kind, o.stage))
        .collect()
}

#[tokio::test]
async fn a_vm_is_created_started_stopped_and_deleted_through_the_host() {
    let f = fixture().await;
    let vm = f
        .vms
        .create_vm(Some(&named("web")), "deb", 2, 512)
        .await
        .unwrap();
    assert_eq!(vm.state, VmState::Stopped.as_str());
    assert!(
        f.host.started.lock().unwrap().is_empty(),
        "create starts nothing"
    );

    let vm = f.vms.start_vm(&named("web")).await.unwrap();
    assert_eq!(vm.state, VmState::Running.as_str());
    assert_eq!(
        vm.backend,
        BackendKind::Qemu.as_str(),
        "the host's back end is recorded"
    );
    let started = f.host.started.lock().unwrap().clone();
    let record = f.core.store().lock().unwrap().vm("web").unwrap().unwrap();
    assert_eq!(
        started,
        [(
            record.id.clone(),
            StartVmmOptions {
                image: "deb".into(),
                rootfs: false,
                cpus: Some(2),
                memory_mib: Some(512),
                mac: Some(record.mac.clone()),
            }
        )],
        "the host is asked with the record's resources"
    );
    assert_eq!(recorded_state(&f.core, "web"), VmState::Running.as_str());

    // Starting a running VM asks nothing more.
    f.vms.start_vm(&named("web")).await.unwrap();
    assert_eq!(f.host.started.lock().unwrap().len(), 1);

    let err = f.vms.delete_vm(&named("web")).await.unwrap_err();
    assert!(matches!(err, VmError::VmIsLive { .. }), "{err:?}");
    assert!(f.core.store().lock().unwrap().vm("web").unwrap().is_some());

    let vm = f.vms.stop_vm(&named("web")).await.unwrap();
    assert_eq!(vm.state, VmState::Stopped.as_str());
    assert_eq!(recorded_state(&f.core, "web"), VmState::Stopped.as_str());
    f.vms.delete_vm(&named("web")).await.unwrap();
    assert!(f.core.store().lock().unwrap().vm("web").unwrap().is_none());
    assert!(f.vms.list_vms().await.unwrap().is_empty());
    let done = OperationStage::Done.as_str();
    for kind in ["vm.create", "vm.start", "vm.stop", "vm.delete"] {
        assert!(
            stages(&f.core).contains(&format!("{kind} {done}")),
            "{kind} finished: {:?}",
            stages(&f.core)
        );
    }
}

#[tokio::test]
async fn a_start_the_host_refuses_stays_a_refusal_and_changes_nothing() {
    let f = fixture().await;
    f.vms
        .create_vm(Some(&named("web")), "deb", 1, 256)
        .await
        .unwrap();
    let before = f.core.store().lock().unwrap().vm("web").unwrap();
    *f.host.refuse_start.lock().unwrap() = Some(VmError::NotAuthorized("polkit said no".into()));
    let err = f.vms.start_vm(&named("web")).await.unwrap_err();
    assert!(
        matches!(&err, VmError::NotAuthorized(m) if m == "polkit said no"),
        "{err:?}"
    );
    assert_eq!(f.core.store().lock().unwrap().vm("web").unwrap(), before);
    assert!(
        stages(&f.core).contains(&format!("vm.start {}", OperationStage::Failed.as_str())),
        "{:?}",
        stages(&f.core)
    );
    assert!(f.core.operations().in_flight().is_empty());
}

#[tokio::test]
async fn a_vm_that_ended_while_the_daemon_was_away_is_recorded_stopped_and_cleaned_up() {
    let f = fixture().await;
    f.vms
        .create_vm(Some(&named("web")), "deb", 1, 256)
        .await
        .unwrap();
    f.vms
        .create_vm(Some(&named("db")), "deb", 1, 256)
        .await
        .unwrap();
    f.vms.start_vm(&named("web")).await.unwrap();
    f.vms.start_vm(&named("db")).await.unwrap();
    let web = f
        .core
        .store()
        .lock()
        .unwrap()
        .vm("web")
        .unwrap()
        .unwrap()
        .id;
    let db = f.core.store().lock().unwrap().vm("db").unwrap().unwrap().id;
    // web's VMM exited while bangerd was down; db's still runs.
    f.host.set(&web, VmState::Stopped);

    f.vms.reconcile().await;
    assert_eq!(recorded_state(&f.core, "web"), VmState::Stopped.as_str());
    assert_eq!(recorded_state(&f.core, "db"), VmState::Running.as_str());
    // The cleanup runs in the background; give it a bounded moment.
    for _ in 0..100 {
        if !f.host.stopped.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(*f.host.stopped.lock().unwrap(), [web]);
    assert!(!f.host.stopped.lock().unwrap().contains(&db));
}

#[tokio::test]
async fn a_vm_created_without_a_name_gets_a_free_memorable_one() {
    let f = fixture().await;
    let a = f.vms.create_vm(None, "deb", 1, 256).await.unwrap();
    let b = f.vms.create_vm(None, "deb", 1, 256).await.unwrap();
    for vm in [&a, &b] {
        let name = VmName::parse(&vm.name).unwrap();
        assert!(
            name.as_str().contains('-') && name.as_str().len() <= 20,
            "{name:?}"
        );
        assert!(
            f.core
                .store()
                .lock()
                .unwrap()
                .vm(&vm.name)
                .unwrap()
                .is_some()
        );
    }
    assert_ne!(a.name, b.name, "each picked name is free");
    assert_ne!(a.address, b.address, "each has its own address");
}
