//! Interface tests of org.banger.Root1 on a private system-like bus carrying banger's real bus
//! policy, through the real client proxies. polkit and systemd are test doubles here (they run
//! for real in the smoke suite): the doubles record what the helper asked them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use banger_api::error::ErrorKind;
use banger_api::names;
use banger_api::proxies::JobProxy;
use banger_api::proxies::Root1Proxy;
use banger_host::install::Layout;
use banger_host::systemd::Systemd;
use banger_host::testbus::{PrivateBus, assert_served_contract};
use bangerd_root::bus::authz::Authorizer;
use bangerd_root::bus::job1::{Job1, job_path};
use bangerd_root::bus::root1::Root1;
use bangerd_root::core::RootCore;
use bangerd_root::update::engine::{Engine, UpdatePaths};
use bangerd_root::update::job::{JobHandle, Unpublished};
use zbus::object_server::SignalEmitter;
use zbus::proxy::MethodFlags;
use zbus::{OwnedObjectPath, OwnedVariant};

/// What the polkit double answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    /// Authorized only with ALLOW_USER_INTERACTION (a password would be asked).
    Challenge,
    /// Never authorized.
    Deny,
    /// Authorized, after a while (as when a person types a password).
    SlowAllow,
}

#[derive(Debug, Clone)]
struct Asked {
    subject_kind: String,
    subject_name: String,
    action: String,
    flags: u32,
}

struct PolkitDouble {
    verdict: Verdict,
    asked: Arc<Mutex<Vec<Asked>>>,
}

#[zbus::interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl PolkitDouble {
    async fn check_authorization(
        &self,
        subject: (String, HashMap<String, OwnedVariant>),
        action_id: String,
        _details: HashMap<String, String>,
        flags: u32,
        _cancellation_id: String,
    ) -> (bool, bool, HashMap<String, String>) {
        let name = subject
            .1
            .get("name")
            .and_then(|v| String::try_from(v.clone()).ok())
            .unwrap_or_default();
        self.asked.lock().unwrap().push(Asked {
            subject_kind: subject.0,
            subject_name: name,
            action: action_id,
            flags,
        });
        match (self.verdict, flags & 1 == 1) {
            (Verdict::SlowAllow, _) => {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                (true, false, HashMap::new())
            }
            (Verdict::Challenge, true) => (true, false, HashMap::new()),
            (Verdict::Challenge, false) => (false, true, HashMap::new()),
            (Verdict::Deny, _) => (false, false, HashMap::new()),
        }
    }
}

/// Enough of systemd's Manager for daemon jobs: each job completes with `result`.
struct SystemdDouble {
    result: &'static str,
    jobs: Arc<Mutex<Vec<(String, String)>>>,
}

impl SystemdDouble {
    async fn job(&self, emitter: &SignalEmitter<'_>, verb: &str, name: String) -> OwnedObjectPath {
        let id = {
            let mut jobs = self.jobs.lock().unwrap();
            jobs.push((verb.into(), name.clone()));
            jobs.len() as u32
        };
        let path =
            OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}")).unwrap();
        // Emitted before the reply: a client that subscribes late would miss it.
        emitter
            .emit(
                "org.freedesktop.systemd1.Manager",
                "JobRemoved",
                &(id, path.clone(), name, self.result.to_string()),
            )
            .await
            .unwrap();
        path
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl SystemdDouble {
    fn subscribe(&self) {}
    fn reset_failed_unit(&self, _name: String) {}
    async fn restart_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> OwnedObjectPath {
        self.job(&e, "restart", name).await
    }
    async fn start_transient_unit(
        &self,
        name: String,
        _mode: String,
        properties: Vec<(String, OwnedVariant)>,
        _aux: Vec<(String, Vec<(String, OwnedVariant)>)>,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> OwnedObjectPath {
        let keys: Vec<String> = properties.iter().map(|(k, _)| k.clone()).collect();
        self.job(&e, &format!("transient {}", keys.join(",")), name)
            .await
    }
    async fn stop_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> OwnedObjectPath {
        self.job(&e, "stop", name).await
    }
}

struct Fixture {
    bus: PrivateBus,
    /// The helper's connection.
    conn: zbus::Connection,
    authz: Arc<Authorizer>,
    _services: Vec<zbus::Connection>,
    asked: Arc<Mutex<Vec<Asked>>>,
    jobs: Arc<Mutex<Vec<(String, String)>>>,
}

async fn fixture(verdict: Verdict, job_result: &'static str) -> Fixture {
    let me = banger_host::users::lookup(&banger_host::users::current_uid().to_string()).unwrap();
    let bus = PrivateBus::start(&me.name).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let jobs = Arc::new(Mutex::new(Vec::new()));
    let polkit = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at(
            "/org/freedesktop/PolicyKit1/Authority",
            PolkitDouble {
                verdict,
                asked: asked.clone(),
            },
        )
        .name("org.freedesktop.PolicyKit1")
        .build()
        .await
        .unwrap();
    let systemd = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at(
            "/org/freedesktop/systemd1",
            SystemdDouble {
                result: job_result,
                jobs: jobs.clone(),
            },
        )
        .name("org.freedesktop.systemd1")
        .build()
        .await
        .unwrap();
    let conn = bus.connect().await.unwrap();
    let mut layout = Layout::new("/usr/local");
    layout.root = bus.dir().to_path_buf();
    let core = Arc::new(RootCore {
        systemd: Systemd::new(&conn).await.unwrap(),
        layout: layout.clone(),
    });
    let authz = Arc::new(Authorizer::new(conn.clone(), layout.install_toml()).without_root_trust());
    let paths = UpdatePaths {
        journal: bus.dir().join("journal.json"),
        state: bus.dir().join("state.toml"),
        config: bus.dir().join("config.toml"),
        pause_marker: bus.dir().join("paused"),
        pending_marker: bus.dir().join("update-pending"),
    };
    let engine = Engine::new(
        core.systemd.clone(),
        layout.clone(),
        paths,
        bangerd_root::bus::job1::BusJobs::new(conn.clone(), authz.clone()),
        bangerd_root::bus::daemon::BusDaemon::new(conn.clone()),
    );
    conn.object_server()
        .at(names::ROOT1_PATH, Root1::new(core, authz.clone(), engine))
        .await
        .unwrap();
    conn.object_server()
        .at(names::ROOT1_PATH, zbus::fdo::ObjectManager)
        .await
        .unwrap();
    conn.request_name(names::ROOT1_NAME).await.unwrap();
    Fixture {
        bus,
        conn: conn.clone(),
        authz,
        _services: vec![polkit, systemd, conn],
        asked,
        jobs,
    }
}

async fn call(f: &Fixture, method: &str, flags: MethodFlags) -> (zbus::Result<Option<()>>, String) {
    let client = f.bus.connect().await.unwrap();
    let me = client.unique_name().unwrap().to_string();
    let root1 = Root1Proxy::new(&client).await.unwrap();
    (root1.inner().call_with_flags(method, flags, &()).await, me)
}

#[tokio::test]
async fn introspection_matches_checked_in_contract() {
    let f = fixture(Verdict::Deny, "done").await;
    assert_served_contract(
        &f.bus,
        names::ROOT1_NAME,
        names::ROOT1_PATH,
        names::ROOT1_NAME,
    )
    .await;
}

#[tokio::test]
async fn without_interactive_flag_a_challenge_is_interactive_authorization_required() {
    let f = fixture(Verdict::Challenge, "done").await;
    let (r, me) = call(&f, "RestartDaemon", MethodFlags::empty()).await;
    let e = r.expect_err("must be refused");
    assert_eq!(
        ErrorKind::of(&e),
        Some(ErrorKind::InteractiveAuthorizationRequired)
    );
    let asked = f.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].subject_kind, "system-bus-name");
    assert_eq!(
        asked[0].subject_name, me,
        "the subject must be the caller, not the helper"
    );
    assert_eq!(asked[0].action, names::action::DAEMON_MANAGE);
    assert_eq!(asked[0].flags, 0);
    assert!(
        f.jobs.lock().unwrap().is_empty(),
        "no work before authorization"
    );
}

#[tokio::test]
async fn with_interactive_flag_polkit_may_prompt_and_the_job_runs() {
    let f = fixture(Verdict::Challenge, "done").await;
    let (r, _) = call(&f, "RestartDaemon", MethodFlags::ALLOW_INTERACTIVE_AUTH).await;
    r.expect("authorized restart succeeds");
    assert_eq!(
        f.asked.lock().unwrap()[0].flags,
        1,
        "ALLOW_USER_INTERACTION passed on"
    );
    assert_eq!(
        f.jobs.lock().unwrap().as_slice(),
        &[("restart".to_string(), names::DAEMON_UNIT.to_string())]
    );
}

/// A job started by uid 4242 (not the test's), served as the engine serves one.
async fn foreign_job(f: &Fixture) -> (Arc<JobHandle>, JobProxy<'static>) {
    let handle = JobHandle::new(Arc::new(Unpublished), 7, 4242, "0.1.0");
    let path = job_path(handle.id);
    f.conn
        .object_server()
        .at(&path, Job1::new(handle.clone(), f.authz.clone()))
        .await
        .unwrap();
    let client = f.bus.connect().await.unwrap();
    let job = JobProxy::builder(&client).path(path).build().await.unwrap();
    (handle, job)
}

#[tokio::test]
async fn a_cancel_that_waited_for_polkit_past_the_point_of_no_return_is_refused() {
    let f = fixture(Verdict::SlowAllow, "done").await;
    let (handle, job) = foreign_job(&f).await;
    let cancel = tokio::spawn(async move { job.cancel().await });
    // While polkit is still deciding (a person typing a password), the job swaps files.
    while f.asked.lock().unwrap().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    handle.stage(banger_api::job::Stage::Swapping, 0.85).await;
    assert!(handle.pass_point_of_no_return());
    let e = cancel.await.unwrap().expect_err("too late to cancel");
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Busy));
    assert!(
        e.to_string()
            .contains("past the point of no return (stage swapping)"),
        "{e}"
    );
    assert!(!handle.cancel.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        f.asked.lock().unwrap()[0].action,
        names::action::UPDATE_CANCEL
    );
}

#[tokio::test]
async fn an_accepted_cancel_keeps_the_job_from_the_point_of_no_return() {
    let f = fixture(Verdict::SlowAllow, "done").await;
    let (handle, job) = foreign_job(&f).await;
    job.cancel()
        .await
        .expect("canceled before the point of no return");
    assert!(
        !handle.pass_point_of_no_return(),
        "a job whose cancel was accepted must not swap"
    );
}

#[tokio::test]
async fn denied_is_not_authorized_and_nothing_runs() {
    let f = fixture(Verdict::Deny, "done").await;
    let (r, _) = call(&f, "StopDaemon", MethodFlags::ALLOW_INTERACTIVE_AUTH).await;
    let e = r.expect_err("must be refused");
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotAuthorized));
    assert!(e.to_string().contains("nothing was done"), "{e}");
    assert!(f.jobs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn failed_systemd_job_is_reported_with_its_result() {
    let f = fixture(Verdict::Challenge, "failed").await;
    let (r, _) = call(&f, "RestartDaemon", MethodFlags::ALLOW_INTERACTIVE_AUTH).await;
    let e = r.expect_err("a failed job must fail the call");
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Systemd));
    assert!(e.to_string().contains("'failed'"), "{e}");
    assert!(
        e.to_string().contains("journalctl -u bangerd.service"),
        "{e}"
    );
}

#[tokio::test]
async fn properties_without_install_metadata_name_the_file() {
    let f = fixture(Verdict::Deny, "done").await;
    let client = f.bus.connect().await.unwrap();
    let root1 = Root1Proxy::builder(&client)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    assert_eq!(
        root1.version().await.unwrap(),
        banger_host::build_info::VERSION
    );
    assert_eq!(root1.api_version().await.unwrap(), 1);
    let e = root1.installed_version().await.unwrap_err();
    assert!(e.to_string().contains("install.toml"), "{e}");
}

#[tokio::test]
async fn transient_units_are_started_through_the_manager_and_awaited() {
    let f = fixture(Verdict::Deny, "done").await;
    let client = f.bus.connect().await.unwrap();
    let systemd = Systemd::new(&client).await.unwrap();
    let svc = banger_host::systemd::TransientService {
        name: "banger-vm-7.service".into(),
        description: "test VM".into(),
        argv: vec!["/bin/sleep".into(), "1000".into()],
        slice: Some(names::VM_SLICE.into()),
        user: Some("nobody".into()),
        environment: vec![("A".into(), "b".into())],
        ..Default::default()
    };
    systemd.start_transient(&svc).await.unwrap();
    assert_eq!(
        f.jobs.lock().unwrap().last().unwrap(),
        &(
            "transient Description,ExecStart,CollectMode,Slice,User,Environment".to_string(),
            "banger-vm-7.service".to_string()
        )
    );
    let bad = banger_host::systemd::TransientService {
        argv: vec!["sleep".into()],
        ..svc
    };
    let e = systemd.start_transient(&bad).await.unwrap_err();
    assert!(e.to_string().contains("absolute path"), "{e}");
}

async fn update_call(
    f: &Fixture,
    options: HashMap<&str, zbus::Variant<'_>>,
) -> zbus::Result<Option<OwnedObjectPath>> {
    let client = f.bus.connect().await.unwrap();
    let root1 = Root1Proxy::new(&client).await.unwrap();
    root1
        .inner()
        .call_with_flags("Update", MethodFlags::ALLOW_INTERACTIVE_AUTH, &(options,))
        .await
}

#[tokio::test]
async fn update_options_choose_the_polkit_action_before_any_work() {
    let f = fixture(Verdict::Deny, "done").await;
    let cases: Vec<(HashMap<&str, zbus::Variant<'_>>, &str)> = vec![
        (HashMap::new(), names::action::UPDATE),
        (
            HashMap::from([("version", zbus::Variant::from("0.2.0"))]),
            names::action::UPDATE_PINNED,
        ),
        (
            HashMap::from([
                ("version", zbus::Variant::from("0.0.9")),
                ("allow_downgrade", zbus::Variant::from(true)),
            ]),
            names::action::UPDATE_DOWNGRADE,
        ),
    ];
    for (i, (opts, want)) in cases.into_iter().enumerate() {
        let e = update_call(&f, opts).await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotAuthorized));
        assert_eq!(f.asked.lock().unwrap()[i].action, want);
    }
    assert!(
        !f.bus.dir().join("journal.json").exists(),
        "a refused update leaves no journal"
    );
}

#[tokio::test]
async fn malformed_update_options_are_invalid_arguments() {
    let f = fixture(Verdict::Challenge, "done").await;
    for (opts, want) in [
        (
            HashMap::from([("mirror", zbus::Variant::from("http://evil"))]),
            "unknown option \"mirror\"",
        ),
        (
            HashMap::from([("dry_run", zbus::Variant::from("yes"))]),
            "wrong type",
        ),
        (
            HashMap::from([("version", zbus::Variant::from("1.2"))]),
            "MAJOR.MINOR.PATCH",
        ),
    ] {
        let e = update_call(&f, opts).await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), Some(ErrorKind::InvalidArgument));
        assert!(e.to_string().contains(want), "{e}");
    }
    assert!(
        f.asked.lock().unwrap().is_empty(),
        "malformed calls never reach polkit"
    );
}

#[tokio::test]
async fn update_without_install_metadata_is_refused_naming_the_file() {
    let f = fixture(Verdict::Challenge, "done").await;
    let e = update_call(&f, HashMap::new()).await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::InstallMetadata));
    assert!(e.to_string().contains("install.toml"), "{e}");
}

#[tokio::test]
async fn update_of_a_packaged_install_is_refused_before_polkit_naming_the_package_manager() {
    let f = fixture(Verdict::Challenge, "done").await;
    let meta = banger_host::install::InstallMeta {
        installed_at: "2026-12-01T00:00:00Z".into(),
        prefix: "/usr".into(),
        owner: banger_host::install::Owner {
            user: "nobody".into(),
            uid: 65534,
            gid: 65534,
            home: "/nonexistent".into(),
        },
        release: banger_host::build_info::BuildIdentity::current(),
        package: Some(banger_host::install::Packaging::for_manager("dpkg")),
    };
    let toml = f.bus.dir().join("etc/banger/install.toml");
    std::fs::create_dir_all(toml.parent().unwrap()).unwrap();
    meta.write(&toml).unwrap();
    let before = std::fs::read(&toml).unwrap();
    let e = update_call(&f, HashMap::new()).await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Failed), "{e}");
    let text = e.to_string();
    assert!(text.contains("installed here by dpkg"), "{text}");
    assert!(
        text.contains("sudo apt-get install --only-upgrade banger"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(f.asked.lock().unwrap().is_empty(), "polkit was asked");
    assert_eq!(std::fs::read(&toml).unwrap(), before);
    // The same install from `banger system install` goes on to polkit.
    let meta = banger_host::install::InstallMeta {
        package: None,
        ..meta
    };
    meta.write(&toml).unwrap();
    let _ = update_call(&f, HashMap::new()).await;
    assert_eq!(f.asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn job_introspection_matches_checked_in_contract() {
    let f = fixture(Verdict::Deny, "done").await;
    // Served by the helper's own connection, as the engine does.
    let conn = f._services[2].clone();
    let handle = JobHandle::new(Arc::new(Unpublished), 1, 0, "0.1.0");
    let path = job_path(handle.id);
    let authz = Arc::new(Authorizer::new(
        conn.clone(),
        f.bus.dir().join("install.toml"),
    ));
    conn.object_server()
        .at(&path, Job1::new(handle.clone(), authz))
        .await
        .unwrap();
    assert_served_contract(
        &f.bus,
        names::ROOT1_NAME,
        path.as_str(),
        "org.banger.Root1.Job",
    )
    .await;
}

/// The next `PropertiesChanged` on `stream`: (changed property names, invalidated names).
async fn next_change(stream: &mut zbus::MessageStream) -> (Vec<String>, Vec<String>) {
    use futures_util::StreamExt;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("a PropertiesChanged within 5 s")
        .unwrap()
        .unwrap();
    let (iface, changed, invalidated): (String, HashMap<String, OwnedVariant>, Vec<String>) =
        msg.body().deserialize().unwrap();
    assert_eq!(iface, names::JOB_INTERFACE);
    let mut changed: Vec<String> = changed.into_keys().collect();
    changed.sort();
    (changed, invalidated)
}

#[tokio::test]
async fn a_job_change_is_one_signal_naming_what_changed_and_withholding_the_error() {
    use banger_api::job::{JobResult, Stage};
    let f = fixture(Verdict::Deny, "done").await;
    let conn = f._services[2].clone();
    let jobs = bangerd_root::bus::job1::BusJobs::new(conn.clone(), f.authz.clone());
    let handle = JobHandle::new(jobs.clone(), 3, 0, "0.1.0");
    let client = f.bus.connect().await.unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(job_path(3))
        .build()
        .unwrap();
    let mut stream =
        zbus::MessageStream::for_match_rule(rule, &client, std::num::NonZeroUsize::new(16))
            .await
            .unwrap();
    use bangerd_root::update::job::JobPublisher;
    jobs.job_new(&handle).await.unwrap();
    handle.stage(Stage::Downloading, 0.1).await;
    assert_eq!(
        next_change(&mut stream).await,
        (vec!["Progress".into(), "Stage".into()], vec![])
    );
    // No change, no signal: the next one seen is the download's.
    handle.stage(Stage::Downloading, 0.1).await;
    handle
        .update(|s| {
            s.bytes_done = 10;
            s.bytes_total = 100;
        })
        .await;
    assert_eq!(
        next_change(&mut stream).await,
        (vec!["BytesDone".into(), "BytesTotal".into()], vec![])
    );
    handle.finish(JobResult::Failed, "the owner's secret").await;
    let (changed, invalidated) = next_change(&mut stream).await;
    assert_eq!(changed, ["Progress", "Result", "Stage", "State"]);
    assert_eq!(invalidated, ["Error"]);
    use futures_util::StreamExt;
    let finished = stream.next().await.unwrap().unwrap();
    let (success, result, error): (bool, String, String) = finished.body().deserialize().unwrap();
    assert_eq!(
        (success, result.as_str(), error.as_str()),
        (false, "failed", names::JOB_ERROR_WITHHELD)
    );
}

#[tokio::test]
async fn jobs_are_managed_objects_and_update_state_is_announced_at_every_stage() {
    use banger_api::job::Stage;
    use bangerd_root::update::job::JobPublisher;
    use futures_util::StreamExt;
    let f = fixture(Verdict::Deny, "done").await;
    let conn = f._services[2].clone();
    let jobs = bangerd_root::bus::job1::BusJobs::new(conn.clone(), f.authz.clone());
    let handle = JobHandle::new(jobs.clone(), 5, 0, "0.1.0");
    let client = f.bus.connect().await.unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path_namespace(names::ROOT1_PATH)
        .build()
        .unwrap();
    let mut stream =
        zbus::MessageStream::for_match_rule(rule, &client, std::num::NonZeroUsize::new(64))
            .await
            .unwrap();
    jobs.job_new(&handle).await.unwrap();
    let om = zbus::fdo::ObjectManagerProxy::builder(&client)
        .destination(names::ROOT1_NAME)
        .path(names::ROOT1_PATH)
        .build()
        .await
        .unwrap();
    let managed = om.get_managed_objects().await.unwrap();
    assert!(
        managed.contains_key(&job_path(5)),
        "the job is a managed object: {:?}",
        managed.keys().collect::<Vec<_>>()
    );
    // Every message until a root1 PropertiesChanged naming UpdateState.
    let mut seen = Vec::new();
    for stage in [Stage::Downloading, Stage::Verifying, Stage::Staging] {
        handle.stage(stage, 0.2).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let msg = tokio::time::timeout_at(deadline, stream.next())
                .await
                .unwrap_or_else(|_| panic!("no UpdateState change at stage {stage}: {seen:?}"))
                .unwrap()
                .unwrap();
            let h = msg.header();
            let member = h.member().map(|m| m.to_string()).unwrap_or_default();
            let path = h.path().map(|p| p.to_string()).unwrap_or_default();
            seen.push(format!("{path} {member}"));
            if path == names::ROOT1_PATH && member == "PropertiesChanged" {
                let (_, changed, _): (String, HashMap<String, OwnedVariant>, Vec<String>) =
                    msg.body().deserialize().unwrap();
                if changed.contains_key("UpdateState") {
                    break;
                }
            }
        }
    }
    assert!(
        seen.iter().any(|s| s.ends_with("InterfacesAdded")),
        "the new job's InterfacesAdded: {seen:?}"
    );
}
