//! Interface tests of the VM plumbing on org.banger.Root1 (GetVmNetwork, StartVmm, StopVmm,
//! VmmDoctor) on a private system-like bus, through the real client proxy. polkit and systemd
//! are test doubles; the state directory and configuration live in the bus's scratch directory.
//!
//! Tests that reach the real `ip` commands run in a fresh network namespace: the test binary
//! re-runs itself under `unshare --net` (see `in_private_netns`), so the host's interfaces are
//! never touched. The smoke suite runs the same calls against a real systemd and a real VMM.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use banger_api::error::ErrorKind;
use banger_api::names;
use banger_api::proxies::Root1Proxy;
use banger_host::build_info::BuildIdentity;
use banger_host::install::{InstallMeta, Layout, Owner};
use banger_host::systemd::Systemd;
use banger_host::testbus::PrivateBus;
use banger_host::virt::Accelerator;
use bangerd_root::bus::authz::Authorizer;
use bangerd_root::bus::root1::Root1;
use bangerd_root::core::RootCore;
use bangerd_root::update::engine::{Engine, UpdatePaths};
use bangerd_root::vm::kvm::KvmAccess;
use bangerd_root::vm::testns::{require_private_netns, run_in_private_netns as in_private_netns};
use bangerd_root::vm::{Programs, VmHost, VmPaths};
use zbus::object_server::SignalEmitter;
use zbus::proxy::MethodFlags;
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

const ID: &str = "0123456789ab";
const OTHER_ID: &str = "ba9876543210";
/// A VM whose directory does not exist.
const MISSING_ID: &str = "ffffffffffff";
/// The install owner in most tests: not the test's own uid, so taps and files show whose they are.
const OWNER_UID: u32 = 4321;

// ---- polkit double -------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    /// Authorized only with ALLOW_USER_INTERACTION.
    Challenge,
    /// Never authorized.
    Deny,
}

struct PolkitDouble {
    verdict: Verdict,
    asked: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl PolkitDouble {
    fn check_authorization(
        &self,
        _subject: (String, HashMap<String, OwnedVariant>),
        action_id: String,
        _details: HashMap<String, String>,
        flags: u32,
        _cancellation_id: String,
    ) -> (bool, bool, HashMap<String, String>) {
        self.asked.lock().unwrap().push(action_id);
        match (self.verdict, flags & 1 == 1) {
            (Verdict::Challenge, true) => (true, false, HashMap::new()),
            (Verdict::Challenge, false) => (false, true, HashMap::new()),
            (Verdict::Deny, _) => (false, false, HashMap::new()),
        }
    }
}

// ---- systemd double ------------------------------------------------------------------------

/// What the next transient unit does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    /// Starts and keeps running.
    Run,
    /// Starts, writes an error to its stderr and exits at once.
    ExitAtOnce,
    /// The start job fails.
    JobFails,
    /// Acts as Firecracker: serves its API socket (owned by the owner) and prints a console line.
    Firecracker,
    /// Puts a symbolic link to another socket where Firecracker's API socket belongs.
    FirecrackerLink,
}

#[derive(Debug)]
struct Started {
    name: String,
    props: HashMap<String, OwnedVariant>,
}

struct SystemdState {
    behaviour: Behaviour,
    active: HashMap<String, String>,
    started: Vec<Started>,
    stopped: Vec<String>,
    /// Request lines the fake Firecracker received.
    api: Arc<Mutex<Vec<String>>>,
    /// Connections to the decoy socket a link pointed to.
    decoy_hits: Arc<Mutex<u32>>,
}

type Shared = Arc<Mutex<SystemdState>>;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum SdError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchUnit(String),
}

struct ManagerDouble {
    state: Shared,
    jobs: Mutex<u32>,
}

impl ManagerDouble {
    async fn job(&self, e: &SignalEmitter<'_>, unit: String, result: &str) -> OwnedObjectPath {
        let id = {
            let mut n = self.jobs.lock().unwrap();
            *n += 1;
            *n
        };
        let path =
            OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}")).unwrap();
        e.emit(
            "org.freedesktop.systemd1.Manager",
            "JobRemoved",
            &(id, path.clone(), unit, result.to_string()),
        )
        .await
        .unwrap();
        path
    }
}

fn unit_path(unit: &str) -> String {
    let id = unit
        .trim_start_matches("banger-vm-")
        .trim_end_matches(".service");
    format!("/org/freedesktop/systemd1/unit/vm_{id}")
}

fn fd_prop(props: &HashMap<String, OwnedVariant>, key: &str) -> Option<File> {
    match &**props.get(key)? {
        Variant::Fd(fd) => Some(File::from(fd.as_fd().try_clone_to_owned().unwrap())),
        other => panic!("{key} is not a file descriptor: {other:?}"),
    }
}

fn str_prop(props: &HashMap<String, OwnedVariant>, key: &str) -> Option<String> {
    props
        .get(key)
        .map(|v| String::try_from(v.try_clone().unwrap()).unwrap())
}

/// `--api-sock <path>` from the ExecStart of a Firecracker unit.
fn api_sock_arg(props: &HashMap<String, OwnedVariant>) -> PathBuf {
    let exec: Vec<(String, Vec<String>, bool)> =
        Vec::try_from(props["ExecStart"].try_clone().unwrap()).unwrap();
    let argv = &exec[0].1;
    let i = argv.iter().position(|a| a == "--api-sock").unwrap();
    PathBuf::from(&argv[i + 1])
}

/// A minimal HTTP server answering 204 to every request, recording request lines.
fn serve_api(listener: UnixListener, seen: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body by Content-Length.
            let (head_end, len) = loop {
                let n = c.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    break (Some(i + 4), len);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + len {
                let n = c.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let line = String::from_utf8_lossy(&buf)
                .lines()
                .next()
                .unwrap_or("")
                .trim_end_matches(" HTTP/1.1")
                .to_string();
            seen.lock().unwrap().push(line);
            let _ = c.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        }
    });
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl ManagerDouble {
    fn subscribe(&self) {}

    fn reset_failed_unit(&self, _name: String) {}

    fn load_unit(&self, name: String) -> OwnedObjectPath {
        OwnedObjectPath::try_from(unit_path(&name)).unwrap()
    }

    async fn start_transient_unit(
        &self,
        name: String,
        _mode: String,
        properties: Vec<(String, OwnedVariant)>,
        _aux: Vec<(String, Vec<(String, OwnedVariant)>)>,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> OwnedObjectPath {
        let props: HashMap<String, OwnedVariant> = properties.into_iter().collect();
        let result = {
            let mut st = self.state.lock().unwrap();
            let result = match st.behaviour {
                Behaviour::Run => {
                    st.active.insert(name.clone(), "active".into());
                    "done"
                }
                Behaviour::ExitAtOnce => {
                    let mut err = fd_prop(&props, "StandardErrorFileDescriptor").unwrap();
                    writeln!(err, "qemu-system-x86_64: could not load kernel '/x/kernel'").unwrap();
                    "done"
                }
                Behaviour::JobFails => "failed",
                Behaviour::Firecracker => {
                    let sock = api_sock_arg(&props);
                    let listener = UnixListener::bind(&sock).unwrap();
                    std::os::unix::fs::chown(&sock, Some(OWNER_UID), Some(OWNER_UID)).unwrap();
                    serve_api(listener, st.api.clone());
                    let mut out = fd_prop(&props, "StandardOutputFileDescriptor").unwrap();
                    writeln!(out, "console: hello").unwrap();
                    st.active.insert(name.clone(), "active".into());
                    "done"
                }
                Behaviour::FirecrackerLink => {
                    let sock = api_sock_arg(&props);
                    let decoy = sock.with_file_name("decoy.sock");
                    let listener = UnixListener::bind(&decoy).unwrap();
                    std::os::unix::fs::chown(&decoy, Some(OWNER_UID), Some(OWNER_UID)).unwrap();
                    let hits = st.decoy_hits.clone();
                    std::thread::spawn(move || {
                        for _ in listener.incoming() {
                            *hits.lock().unwrap() += 1;
                        }
                    });
                    std::os::unix::fs::symlink(&decoy, &sock).unwrap();
                    st.active.insert(name.clone(), "active".into());
                    "done"
                }
            };
            st.started.push(Started {
                name: name.clone(),
                props,
            });
            result
        };
        self.job(&e, name, result).await
    }

    async fn stop_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, SdError> {
        let known = {
            let mut st = self.state.lock().unwrap();
            st.stopped.push(name.clone());
            st.active.remove(&name).is_some()
        };
        if !known {
            return Err(SdError::NoSuchUnit(format!("Unit {name} not loaded.")));
        }
        Ok(self.job(&e, name, "done").await)
    }
}

struct UnitDouble {
    name: String,
    state: Shared,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl UnitDouble {
    #[zbus(property)]
    fn active_state(&self) -> String {
        let st = self.state.lock().unwrap();
        st.active
            .get(&self.name)
            .cloned()
            .unwrap_or_else(|| "inactive".into())
    }
    #[zbus(property)]
    fn sub_state(&self) -> String {
        if self.active_state() == "active" {
            "running".into()
        } else {
            "dead".into()
        }
    }
    #[zbus(property)]
    fn load_state(&self) -> String {
        "loaded".into()
    }
}

struct ServiceDouble;

#[zbus::interface(name = "org.freedesktop.systemd1.Service")]
impl ServiceDouble {
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> u32 {
        0
    }
}

// ---- fixture -------------------------------------------------------------------------------

struct Fixture {
    bus: PrivateBus,
    _services: Vec<zbus::Connection>,
    asked: Arc<Mutex<Vec<String>>>,
    systemd: Shared,
    paths: VmPaths,
}

impl Fixture {
    fn install_owner(&self, uid: u32) {
        let meta = InstallMeta {
            installed_at: "2026-11-22T00:00:00Z".into(),
            prefix: "/usr/local".into(),
            owner: Owner {
                user: "vmowner".into(),
                uid,
                gid: uid,
                home: "/home/vmowner".into(),
            },
            release: BuildIdentity::current(),
            package: None,
        };
        std::fs::create_dir_all(self.paths.install_toml.parent().unwrap()).unwrap();
        meta.write(&self.paths.install_toml).unwrap();
    }

    /// Image `deb` (kernel only) and VM dirs for `ID` and `OTHER_ID` with their config disks,
    /// owned by `uid`.
    fn make_state(&self, uid: u32) {
        let s = &self.paths.state_dir;
        std::fs::create_dir_all(s.join("images/deb")).unwrap();
        std::fs::write(s.join("images/deb/kernel"), "kernel").unwrap();
        for id in [ID, OTHER_ID] {
            let d = s.join("vms").join(id);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("config.img"), "config").unwrap();
            std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
        }
    }

    fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.paths.config.parent().unwrap()).unwrap();
        std::fs::write(&self.paths.config, text).unwrap();
    }

    fn set_behaviour(&self, b: Behaviour) {
        self.systemd.lock().unwrap().behaviour = b;
    }

    fn started(&self) -> usize {
        self.systemd.lock().unwrap().started.len()
    }

    fn vm_dir(&self, id: &str) -> PathBuf {
        self.paths.state_dir.join("vms").join(id)
    }

    async fn proxy(&self) -> (zbus::Connection, Root1Proxy<'static>) {
        let client = self.bus.connect().await.unwrap();
        let p = Root1Proxy::new(&client).await.unwrap();
        (client, p)
    }

    async fn start(
        &self,
        id: &str,
        opts: HashMap<&str, Variant<'_>>,
        flags: MethodFlags,
    ) -> zbus::Result<String> {
        let (_c, p) = self.proxy().await;
        p.inner()
            .call_with_flags::<_, _, String>("StartVmm", flags, &(id, opts))
            .await
            .map(|r| r.expect("a reply"))
    }

    /// `StartVmmWithInfo`, read as the daemon reads it.
    async fn start_with_info(
        &self,
        id: &str,
        opts: HashMap<&str, Variant<'_>>,
        flags: MethodFlags,
    ) -> zbus::Result<banger_api::options::VmmStarted> {
        let (_c, p) = self.proxy().await;
        let d = p
            .inner()
            .call_with_flags::<_, _, HashMap<String, OwnedVariant>>(
                "StartVmmWithInfo",
                flags,
                &(id, opts),
            )
            .await?
            .expect("a reply");
        Ok(banger_api::options::VmmStarted::from_dict(&d).expect("a well-formed reply"))
    }

    async fn stop(&self, id: &str, flags: MethodFlags) -> zbus::Result<()> {
        let (_c, p) = self.proxy().await;
        p.inner()
            .call_with_flags::<_, _, ()>("StopVmm", flags, &(id,))
            .await
            .map(|_| ())
    }
}

fn programs() -> Programs {
    Programs::Fixed {
        ip: banger_host::virt::find_program("ip"),
        qemu: Some("/usr/bin/qemu-system-x86_64".into()),
        firecracker: Some("/usr/local/bin/firecracker".into()),
        nft: banger_host::virt::find_program("nft"),
    }
}

async fn fixture(verdict: Verdict, accel: Accelerator) -> Fixture {
    // With KVM, a usable device stands in for /dev/kvm (this host may have no kvm group).
    let kvm = KvmAccess {
        device: "/dev/null".into(),
        group: Some(0),
    };
    fixture_with(verdict, accel, kvm).await
}

async fn fixture_with(verdict: Verdict, accel: Accelerator, kvm: KvmAccess) -> Fixture {
    let me = banger_host::users::lookup(&banger_host::users::current_uid().to_string()).unwrap();
    let bus = PrivateBus::start(&me.name).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let state: Shared = Arc::new(Mutex::new(SystemdState {
        behaviour: Behaviour::Run,
        active: HashMap::new(),
        started: Vec::new(),
        stopped: Vec::new(),
        api: Arc::new(Mutex::new(Vec::new())),
        decoy_hits: Arc::new(Mutex::new(0)),
    }));
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
    let mut sd = zbus::connection::Builder::address(bus.address.as_str()).serve_at(
        "/org/freedesktop/systemd1",
        ManagerDouble {
            state: state.clone(),
            jobs: Mutex::new(0),
        },
    );
    for id in [ID, OTHER_ID, MISSING_ID] {
        let unit = format!("banger-vm-{id}.service");
        sd = sd
            .serve_at(
                unit_path(&unit),
                UnitDouble {
                    name: unit.clone(),
                    state: state.clone(),
                },
            )
            .serve_at(unit_path(&unit), ServiceDouble);
    }
    let sd = sd.name("org.freedesktop.systemd1").build().await.unwrap();

    let conn = bus.connect().await.unwrap();
    let mut layout = Layout::new("/usr/local");
    layout.root = bus.dir().to_path_buf();
    let paths = VmPaths::from_layout(&layout);
    let core = Arc::new(RootCore {
        systemd: Systemd::new(&conn).await.unwrap(),
        layout: layout.clone(),
    });
    let authz = Arc::new(Authorizer::new(conn.clone(), layout.install_toml()).without_root_trust());
    let engine = Engine::new(
        core.systemd.clone(),
        layout,
        UpdatePaths {
            journal: bus.dir().join("journal.json"),
            state: bus.dir().join("state.toml"),
            config: paths.config.clone(),
            pause_marker: bus.dir().join("paused"),
            pending_marker: bus.dir().join("update-pending"),
        },
        bangerd_root::bus::job1::BusJobs::new(conn.clone(), authz.clone()),
        bangerd_root::bus::daemon::BusDaemon::new(conn.clone()),
    );
    let mut vms = VmHost::new(core.systemd.clone(), paths.clone())
        .with_programs(programs())
        .with_accelerator(accel)
        .with_kvm(kvm);
    vms.settle = std::time::Duration::from_millis(50);
    let root1 = Root1::new(core, authz, engine).with_vm_host(Arc::new(vms));
    conn.object_server()
        .at(names::ROOT1_PATH, root1)
        .await
        .unwrap();
    conn.request_name(names::ROOT1_NAME).await.unwrap();
    Fixture {
        bus,
        _services: vec![polkit, sd, conn],
        asked,
        systemd: state,
        paths,
    }
}

fn tcg() -> Accelerator {
    Accelerator::Tcg { why: "test".into() }
}

fn image(name: &str) -> HashMap<&'static str, Variant<'static>> {
    HashMap::from([("image", Variant::from(name.to_string()))])
}

fn as_root() -> bool {
    if banger_host::users::current_uid() == 0 {
        true
    } else {
        eprintln!("skipped: needs root");
        false
    }
}

// ---- tests on the host (they stop before any network change) -------------------------------

#[tokio::test]
async fn start_and_stop_are_authorized_before_any_work() {
    let f = fixture(Verdict::Deny, tcg()).await;
    f.install_owner(OWNER_UID);
    let e = f
        .start(ID, image("deb"), MethodFlags::ALLOW_INTERACTIVE_AUTH)
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotAuthorized));
    let e = f
        .stop(ID, MethodFlags::ALLOW_INTERACTIVE_AUTH)
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotAuthorized));
    // Even a malformed request is refused for authorization first.
    let e = f
        .start("../etc", HashMap::new(), MethodFlags::empty())
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotAuthorized));
    assert_eq!(
        f.asked.lock().unwrap().as_slice(),
        [names::action::VM_MANAGE; 3]
    );
    let st = f.systemd.lock().unwrap();
    assert!(
        st.started.is_empty() && st.stopped.is_empty(),
        "no work before authorization"
    );
}

#[tokio::test]
async fn without_the_interactive_flag_a_challenge_needs_interactive_authorization() {
    let f = fixture(Verdict::Challenge, tcg()).await;
    f.install_owner(OWNER_UID);
    let e = f
        .start(ID, image("deb"), MethodFlags::empty())
        .await
        .unwrap_err();
    assert_eq!(
        ErrorKind::of(&e),
        Some(ErrorKind::InteractiveAuthorizationRequired)
    );
    assert_eq!(f.started(), 0);
}

#[tokio::test]
async fn the_owner_is_trusted_and_malformed_requests_are_invalid_arguments() {
    let f = fixture(Verdict::Deny, tcg()).await;
    // The caller (this test) is the install owner: polkit is never asked.
    f.install_owner(banger_host::users::current_uid());
    let flags = MethodFlags::empty();
    let cases: Vec<(&str, HashMap<&str, Variant<'_>>, &str)> = vec![
        ("../etc/x", image("deb"), "VM id \"../etc/x\" contains '.'"),
        (
            "0123456789AB",
            image("deb"),
            "VM id \"0123456789AB\" contains 'A'",
        ),
        (ID, HashMap::new(), "\"image\" is required"),
        (ID, image("../x"), "image name \"../x\" contains '/'"),
        (
            ID,
            HashMap::from([
                ("image", Variant::from("deb")),
                ("kernel", Variant::from("/etc/shadow")),
            ]),
            "unknown option \"kernel\"",
        ),
        (
            ID,
            HashMap::from([
                ("image", Variant::from("deb")),
                ("cpus", Variant::from("2")),
            ]),
            "\"cpus\" has the wrong type s",
        ),
        (
            ID,
            HashMap::from([
                ("image", Variant::from("deb")),
                ("memory_mib", Variant::from(1u32)),
            ]),
            "memory_mib = 1 is out of range",
        ),
        (
            ID,
            HashMap::from([("image", Variant::from("deb")), ("mac", Variant::from("x"))]),
            "mac \"x\"",
        ),
    ];
    for (id, opts, want) in cases {
        let e = f.start(id, opts, flags).await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), Some(ErrorKind::InvalidArgument), "{e}");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    let e = f.stop("nope", flags).await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::InvalidArgument));
    assert!(
        f.asked.lock().unwrap().is_empty(),
        "the owner needs no polkit"
    );
    let st = f.systemd.lock().unwrap();
    assert!(st.started.is_empty() && st.stopped.is_empty());
}

#[tokio::test]
async fn kvm_without_a_kvm_group_or_device_access_says_which_and_starts_nothing() {
    if !as_root() {
        return;
    }
    let kvm = Accelerator::Kvm {
        cpu_flag: "vmx".into(),
    };
    let cases = [
        (
            KvmAccess {
                device: "/dev/null".into(),
                group: None,
            },
            "there is no kvm group",
        ),
        (
            KvmAccess {
                device: "/nonexistent/kvm".into(),
                group: Some(0),
            },
            "/nonexistent/kvm: No such file",
        ),
    ];
    for (access, want) in cases {
        let f = fixture_with(Verdict::Deny, kvm.clone(), access).await;
        f.install_owner(banger_host::users::current_uid());
        f.make_state(banger_host::users::current_uid());
        f.write_config("[vm]\nbackend = \"qemu\"\n");
        let e = f
            .start(ID, image("deb"), MethodFlags::empty())
            .await
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Vm), "{e}");
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(e.to_string().contains("nothing was started"), "{e}");
        assert_eq!(f.started(), 0, "no unit was started");
        let (_c, p) = f.proxy().await;
        let checks = p.vmm_doctor().await.unwrap();
        let c = checks.iter().find(|c| c.check == "kvm access").unwrap();
        assert_eq!(c.level, "FAIL", "{c}");
        assert!(c.detail.contains(want), "{c}");
    }
}

#[tokio::test]
async fn a_missing_image_or_vm_is_not_found_and_nothing_starts() {
    if !as_root() {
        return;
    }
    let f = fixture(Verdict::Deny, tcg()).await;
    f.install_owner(banger_host::users::current_uid());
    f.make_state(banger_host::users::current_uid());
    let e = f
        .start(ID, image("nosuch"), MethodFlags::empty())
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains("image \"nosuch\""), "{e}");
    let e = f
        .start(MISSING_ID, image("deb"), MethodFlags::empty())
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains("vms/ffffffffffff"), "{e}");
    assert_eq!(f.started(), 0);
}

#[tokio::test]
async fn start_without_install_metadata_names_the_file() {
    let f = fixture(Verdict::Challenge, tcg()).await;
    let e = f
        .start(ID, image("deb"), MethodFlags::ALLOW_INTERACTIVE_AUTH)
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::InstallMetadata), "{e}");
    assert!(e.to_string().contains("install.toml"), "{e}");
}

#[tokio::test]
async fn vm_network_comes_from_the_configuration() {
    let f = fixture(Verdict::Deny, tcg()).await;
    let (_c, p) = f.proxy().await;
    assert_eq!(
        p.get_vm_network().await.unwrap(),
        (
            "banger0".into(),
            "172.30.0.0/24".into(),
            "172.30.0.1".into()
        )
    );
    if !as_root() {
        return;
    }
    f.write_config("[network]\nbridge = \"vmbr7\"\nsubnet = \"10.77.0.0/16\"\n");
    assert_eq!(
        p.get_vm_network().await.unwrap(),
        ("vmbr7".into(), "10.77.0.0/16".into(), "10.77.0.1".into())
    );
    f.write_config("[network]\nsubnet = \"10.77.0.0/8\"\n");
    let e = p.get_vm_network().await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Vm));
    assert!(
        e.to_string().contains("network.subnet = \"10.77.0.0/8\""),
        "{e}"
    );
    assert!(e.to_string().contains("config.toml"), "{e}");
    assert!(
        f.asked.lock().unwrap().is_empty(),
        "read-only: no authorization"
    );
}

#[tokio::test]
async fn doctor_reports_backend_accelerator_firecracker_network_and_config() {
    let f = fixture(Verdict::Deny, tcg()).await;
    let (_c, p) = f.proxy().await;
    // A bridge name no host has, so the check is read-only and predictable.
    if as_root() {
        f.write_config("[vm]\nbackend = \"qemu\"\n[network]\nbridge = \"bgtest9\"\n");
    }
    let checks = p.vmm_doctor().await.unwrap();
    let by_name: HashMap<&str, &banger_api::wire::DoctorCheck> =
        checks.iter().map(|c| (c.check.as_str(), c)).collect();
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        names,
        [
            "vm config",
            "vm backend",
            "accelerator",
            "kvm access",
            "firecracker",
            "vm network",
            "vm nat",
            "tun device"
        ]
    );
    // On (the default); whether this host has a default route decides which it says.
    let nat = by_name["vm nat"];
    assert!(
        (nat.level == "PASS" && nat.detail.contains("masquerade"))
            || (nat.level == "WARN" && nat.detail.ends_with("VMs reach only this host")),
        "{nat}"
    );
    assert_eq!(
        by_name["vm config"].level, "PASS",
        "{}",
        by_name["vm config"]
    );
    assert_eq!(by_name["accelerator"].level, "WARN");
    assert!(by_name["accelerator"].detail.starts_with("tcg"));
    // The fixed firecracker path does not exist: its version cannot be told.
    assert!(
        by_name["firecracker"].detail.contains("cannot tell"),
        "{}",
        by_name["firecracker"]
    );
    if as_root() {
        assert_eq!(
            by_name["vm backend"].level, "PASS",
            "{}",
            by_name["vm backend"]
        );
        assert!(by_name["vm backend"].detail.starts_with("qemu at "));
        assert_eq!(
            by_name["vm network"].level, "PASS",
            "{}",
            by_name["vm network"]
        );
        assert!(
            by_name["vm network"]
                .detail
                .contains("bgtest9 will be created on first VM start")
        );
        f.write_config("[vm]\nbackend = \"bhyve\"\n");
        let checks = p.vmm_doctor().await.unwrap();
        assert_eq!(checks[0].level, "FAIL");
        assert!(
            checks[0].detail.contains("vm.backend = \"bhyve\""),
            "{}",
            checks[0]
        );
    }
}

// ---- tests in a private network namespace --------------------------------------------------

fn ip_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(banger_host::virt::find_program("ip").unwrap())
        .args(["-j", "-d"])
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The tap's (master, owner uid), or None when it does not exist.
fn tap(id: &str) -> Option<(String, u64)> {
    let v = ip_json(&["link", "show", "dev", &format!("bt-{id}")]);
    let l = v.as_array()?.first()?;
    Some((
        l["master"].as_str().unwrap_or("").to_string(),
        l["linkinfo"]["info_data"]["user"]
            .as_u64()
            .unwrap_or(u64::MAX),
    ))
}

/// The unit's property names, without the sandbox's (`vm::sandbox`, tested there and in smoke).
fn keys(props: &HashMap<String, OwnedVariant>) -> Vec<&str> {
    let sandbox = sandbox_names();
    let mut k: Vec<&str> = props
        .keys()
        .map(String::as_str)
        .filter(|k| !sandbox.contains(k))
        .collect();
    k.sort();
    k
}

/// The names of the sandbox properties every VM unit gets.
fn sandbox_names() -> Vec<&'static str> {
    let spec = bangerd_root::vmm::VmmSpec {
        id: ID.into(),
        kernel: "/k".into(),
        initrd: None,
        rootfs: None,
        config_disk: "/c".into(),
        cpus: 1,
        memory_mib: 128,
        tap: format!("bt-{ID}"),
        mac: "52:54:00:00:00:07".into(),
        serial_log: "/s".into(),
        vm_dir: "/v".into(),
        accel: Accelerator::Tcg { why: "test".into() },
        tsc_khz: 0,
    };
    bangerd_root::vm::sandbox::vm_sandbox(&spec)
        .iter()
        .map(|p| p.name())
        .collect()
}

#[test]
fn qemu_start_stop_and_failures_in_a_private_network_namespace() {
    in_private_netns("qemu_inner");
}

#[tokio::test]
#[ignore = "runs in a private network namespace, started by \
            qemu_start_stop_and_failures_in_a_private_network_namespace"]
async fn qemu_inner() {
    require_private_netns();
    let f = fixture(Verdict::Challenge, tcg()).await;
    f.install_owner(OWNER_UID);
    f.make_state(OWNER_UID);
    f.write_config("[vm]\nbackend = \"qemu\"\n");
    let flags = MethodFlags::ALLOW_INTERACTIVE_AUTH;
    let opts = || {
        HashMap::from([
            ("image", Variant::from("deb")),
            ("cpus", Variant::from(1u32)),
            ("memory_mib", Variant::from(128u32)),
            ("mac", Variant::from("52:54:00:00:00:07")),
        ])
    };

    // A good start: bridge, tap, then the unit with the right properties.
    let unit = f.start(ID, opts(), flags).await.unwrap();
    assert_eq!(unit, format!("banger-vm-{ID}.service"));
    let bridge = ip_json(&["addr", "show", "dev", "banger0"]);
    assert_eq!(bridge[0]["linkinfo"]["info_kind"], "bridge");
    assert!(bridge.to_string().contains("\"172.30.0.1\""), "{bridge}");
    assert_eq!(tap(ID), Some(("banger0".into(), u64::from(OWNER_UID))));
    {
        let st = f.systemd.lock().unwrap();
        let s = &st.started[0];
        assert_eq!(s.name, unit);
        assert_eq!(
            keys(&s.props),
            [
                "CollectMode",
                "Description",
                "ExecStart",
                "ExecStopPostEx",
                "Slice",
                "StandardErrorFileDescriptor",
                "Type",
                "User"
            ],
            "no kvm group under TCG; QEMU writes its console itself"
        );
        for name in sandbox_names() {
            assert!(s.props.contains_key(name), "the unit has no {name}");
        }
        let rw: Vec<String> =
            Vec::try_from(s.props["ReadWritePaths"].try_clone().unwrap()).unwrap();
        assert_eq!(rw.len(), 1);
        assert!(rw[0].ends_with(&format!("/vms/{ID}")), "{rw:?}");
        assert_eq!(str_prop(&s.props, "Type").unwrap(), "exec");
        let post: Vec<(String, Vec<String>, Vec<String>)> =
            Vec::try_from(s.props["ExecStopPostEx"].try_clone().unwrap()).unwrap();
        assert_eq!(post.len(), 1);
        let (path, argv, flags) = &post[0];
        assert!(path.starts_with('/') && path.ends_with("/ip"), "{path}");
        assert_eq!(argv[1..], ["link", "delete", "dev", &format!("bt-{ID}")]);
        assert_eq!(
            flags,
            &["privileged", "ignore-failure"],
            "as root, whatever it says"
        );
        assert_eq!(
            str_prop(&s.props, "CollectMode").unwrap(),
            "inactive",
            "a crashed VMM stays visible as failed"
        );
        assert_eq!(str_prop(&s.props, "User").unwrap(), "vmowner");
        assert_eq!(str_prop(&s.props, "Slice").unwrap(), "banger.slice");
        assert_eq!(
            str_prop(&s.props, "Description").unwrap(),
            format!("banger VM {ID} (qemu)")
        );
        // The stderr descriptor is vmm.log in the VM's directory, handed to the owner.
        let mut err = fd_prop(&s.props, "StandardErrorFileDescriptor").unwrap();
        writeln!(err, "from the VMM").unwrap();
    }
    let log = f.vm_dir(ID).join("vmm.log");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "from the VMM\n");
    let md = std::fs::metadata(&log).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (OWNER_UID, 0o600));

    // Already running: refused, nothing touched.
    let e = f.start(ID, opts(), flags).await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Vm));
    assert!(e.to_string().contains("already running"), "{e}");
    assert_eq!(f.started(), 1);
    assert!(tap(ID).is_some());

    // Stop: unit stopped, tap gone; again: no error.
    f.stop(ID, flags).await.unwrap();
    assert_eq!(tap(ID), None);
    f.stop(ID, flags).await.unwrap();
    assert_eq!(
        f.systemd.lock().unwrap().stopped,
        [unit.clone(), unit.clone()]
    );

    // The VMM exits at once: reported with its message, and nothing is left.
    f.set_behaviour(Behaviour::ExitAtOnce);
    let e = f.start(ID, opts(), flags).await.unwrap_err();
    assert_eq!(ErrorKind::of(&e), Some(ErrorKind::Vm));
    let m = e.to_string();
    assert!(m.contains("the VMM exited at once"), "{m}");
    assert!(m.contains("could not load kernel '/x/kernel'"), "{m}");
    assert!(m.contains("nothing is left running"), "{m}");
    assert_eq!(tap(ID), None);

    // The start job fails: the same.
    f.set_behaviour(Behaviour::JobFails);
    let e = f.start(ID, opts(), flags).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("'failed'"), "{m}");
    assert!(m.contains("nothing is left running"), "{m}");
    assert_eq!(tap(ID), None);

    // A stale tap of the same name is replaced.
    f.set_behaviour(Behaviour::Run);
    let ip = banger_host::virt::find_program("ip").unwrap();
    let st = Command::new(&ip)
        .args([
            "tuntap",
            "add",
            "dev",
            &format!("bt-{OTHER_ID}"),
            "mode",
            "tap",
            "user",
            "1",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    // The same start, answered with what the daemon records.
    let started = f.start_with_info(OTHER_ID, opts(), flags).await.unwrap();
    assert_eq!(
        started,
        banger_api::options::VmmStarted {
            unit: format!("banger-vm-{OTHER_ID}.service"),
            backend: Some(banger_api::wire::BackendKind::Qemu),
        }
    );
    assert_eq!(
        tap(OTHER_ID),
        Some(("banger0".into(), u64::from(OWNER_UID)))
    );
    f.stop(OTHER_ID, flags).await.unwrap();

    // vmm.log replaced by a link to a root file: the link is replaced, the file untouched.
    let secret = f.bus.dir().join("secret");
    std::fs::write(&secret, "root only").unwrap();
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&secret, &log).unwrap();
    f.start(ID, opts(), flags).await.unwrap();
    {
        let st = f.systemd.lock().unwrap();
        let mut err = fd_prop(
            &st.started.last().unwrap().props,
            "StandardErrorFileDescriptor",
        )
        .unwrap();
        writeln!(err, "VMM output").unwrap();
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only");
    assert_eq!(std::fs::metadata(&secret).unwrap().uid(), 0);
    let md = std::fs::symlink_metadata(&log).unwrap();
    assert!(md.file_type().is_file());
    assert_eq!(md.uid(), OWNER_UID);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "VMM output\n");
    f.stop(ID, flags).await.unwrap();

    // The VM directory replaced by a link: refused before anything changes.
    let before = f.started();
    let real = f.vm_dir(ID).with_file_name("moved");
    std::fs::rename(f.vm_dir(ID), &real).unwrap();
    std::os::unix::fs::symlink(&real, f.vm_dir(ID)).unwrap();
    let e = f.start(ID, opts(), flags).await.unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(e.to_string().contains("nothing was started"), "{e}");
    assert_eq!(f.started(), before);
    assert_eq!(tap(ID), None);
}

#[test]
fn firecracker_start_in_a_private_network_namespace() {
    in_private_netns("firecracker_inner");
}

#[tokio::test]
#[ignore = "runs in a private network namespace, started by \
            firecracker_start_in_a_private_network_namespace"]
async fn firecracker_inner() {
    require_private_netns();
    let kvm = Accelerator::Kvm {
        cpu_flag: "vmx".into(),
    };
    let f = fixture(Verdict::Challenge, kvm).await;
    f.install_owner(OWNER_UID);
    f.make_state(OWNER_UID);
    f.write_config("[vm]\nbackend = \"firecracker\"\n[network]\nsubnet = \"10.55.0.0/24\"\n");
    let flags = MethodFlags::ALLOW_INTERACTIVE_AUTH;
    // Stale sockets from an earlier run are removed before the start.
    std::fs::write(f.vm_dir(ID).join("firecracker.sock"), "").unwrap();
    std::fs::write(f.vm_dir(ID).join("agent.sock"), "").unwrap();

    f.set_behaviour(Behaviour::Firecracker);
    let started = f.start_with_info(ID, image("deb"), flags).await.unwrap();
    assert_eq!(
        started.backend,
        Some(banger_api::wire::BackendKind::Firecracker)
    );
    let unit = started.unit;
    assert!(
        !f.vm_dir(ID).join("agent.sock").exists(),
        "the stale agent socket was removed"
    );
    {
        let st = f.systemd.lock().unwrap();
        let s = &st.started[0];
        assert_eq!(s.name, unit);
        let k = keys(&s.props);
        assert!(k.contains(&"StandardOutputFileDescriptor"), "{k:?}");
        assert!(k.contains(&"SupplementaryGroups"), "{k:?}");
        let groups: Vec<String> =
            Vec::try_from(s.props["SupplementaryGroups"].try_clone().unwrap()).unwrap();
        assert_eq!(groups, ["kvm"]);
        assert_eq!(
            str_prop(&s.props, "Description").unwrap(),
            format!("banger VM {ID} (firecracker)")
        );
        assert_eq!(
            st.api.lock().unwrap().as_slice(),
            [
                "PUT /machine-config",
                "PUT /boot-source",
                "PUT /drives/config",
                "PUT /network-interfaces/eth0",
                "PUT /vsock",
                "PUT /actions"
            ]
        );
    }
    // The console (the VMM's stdout) went to serial.log, owned by the owner.
    let serial = f.vm_dir(ID).join("serial.log");
    assert_eq!(
        std::fs::read_to_string(&serial).unwrap(),
        "console: hello\n"
    );
    assert_eq!(std::fs::metadata(&serial).unwrap().uid(), OWNER_UID);
    assert!(
        ip_json(&["addr", "show", "dev", "banger0"])
            .to_string()
            .contains("10.55.0.1")
    );
    f.stop(ID, flags).await.unwrap();
    assert_eq!(tap(ID), None);

    // A link in place of the API socket is never followed: the start fails and is undone.
    f.set_behaviour(Behaviour::FirecrackerLink);
    let e = f.start(OTHER_ID, image("deb"), flags).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("not a Unix socket"), "{m}");
    assert!(m.contains("nothing is left running"), "{m}");
    assert_eq!(*f.systemd.lock().unwrap().decoy_hits.lock().unwrap(), 0);
    assert_eq!(tap(OTHER_ID), None);
    assert!(
        f.systemd
            .lock()
            .unwrap()
            .stopped
            .contains(&format!("banger-vm-{OTHER_ID}.service")),
        "the unit was stopped"
    );
}
