//! Firecracker: one process per VM, configured through its API socket.
//!
//! The process starts with nothing but an API socket and an instance id on its command line;
//! banger then sends the requests of [`Firecracker::setup_requests`] (machine, boot source,
//! drives, network card, start) to that socket. The guest's serial console is the process's
//! standard output. See `docs/firecracker.md`.
//!
//! This module only *describes* a VM (command line, requests, supported releases); it never
//! talks to the socket ([`super::api`] does) and runs no program except `firecracker --version`
//! in [`check_version`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{ApiRequest, Backend, BackendKind, VmmSpec};

/// The program looked for on the host.
pub const PROGRAM: &str = "firecracker";

/// The API socket's file name in the VM's directory.
pub const API_SOCKET: &str = "firecracker.sock";

/// A Firecracker release: (major, minor, patch).
pub type Version = (u32, u32, u32);

/// The releases banger drives: at least the first, and before the second.
///
/// v1.0.0 is the first release whose `/machine-config` knows `smt` (it was `ht_enabled`, and
/// mandatory, before) and the first whose API follows semantic versioning, so every 1.x accepts
/// the requests of [`Firecracker::setup_requests`]. v2.0.0 may remove what 1.x deprecated.
pub const SUPPORTED: (Version, Version) = ((1, 0, 0), (2, 0, 0));

/// Kernel arguments added for Firecracker to [`VmmSpec::kernel_cmdline`]: the boot-time savers
/// of Firecracker's own default command line. There is no PCI bus (banger does not pass
/// `--enable-pci`), and the i8042 controller has a keyboard port only (for Ctrl-Alt-Del), so
/// probing for more only waits for time-outs. Firecracker's `8250.nr_uarts=0` is left out: the
/// serial console is wanted.
const BOOT_ARGS: &str = "pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

/// The network card's id in the API (`/network-interfaces/{iface_id}`).
const NET_ID: &str = "eth0";

/// The guest's vsock context id. Each Firecracker process has a vsock device of its own, so
/// every guest may use the same one; 3 is the first that is not reserved.
const GUEST_CID: u32 = 3;

/// How long `firecracker --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);

/// How much of `firecracker --version`'s output is read.
const VERSION_OUTPUT_LIMIT: u64 = 4096;

/// The Firecracker back end.
#[derive(Debug, Clone)]
pub struct Firecracker {
    program: PathBuf,
}

impl Firecracker {
    /// A back end running `program`.
    pub fn new(program: PathBuf) -> Self {
        Firecracker { program }
    }
}

impl Backend for Firecracker {
    fn kind(&self) -> BackendKind {
        BackendKind::Firecracker
    }

    fn program(&self) -> &Path {
        &self.program
    }

    fn argv(&self, spec: &VmmSpec) -> Vec<String> {
        vec![
            self.program.display().to_string(),
            "--api-sock".into(),
            api_socket(spec).display().to_string(),
            // Firecracker accepts 1 to 64 alphanumerics and hyphens; the id is 12 hex digits.
            "--id".into(),
            format!("banger-vm-{}", spec.id),
        ]
    }

    fn api_socket(&self, spec: &VmmSpec) -> Option<PathBuf> {
        Some(api_socket(spec))
    }

    /// Machine, boot source, root filesystem (if any), config disk, network card, the guest
    /// agent's vsock device, start.
    ///
    /// Drives are attached in request order, so the guest sees the root filesystem as
    /// `/dev/vda` and the config disk after it, as under QEMU. The root filesystem is
    /// Firecracker's root device (which adds `root=/dev/vda rw` to the kernel command line)
    /// only when there is no initrd: with one, the initramfs is the guest's root and the
    /// root filesystem is an ordinary disk, exactly as QEMU presents it.
    fn setup_requests(&self, spec: &VmmSpec) -> Vec<ApiRequest> {
        let mut boot_source = json!({
            "kernel_image_path": spec.kernel.display().to_string(),
            "boot_args": format!("{} {BOOT_ARGS}", spec.kernel_cmdline()),
        });
        if let Some(initrd) = &spec.initrd {
            boot_source["initrd_path"] = json!(initrd.display().to_string());
        }
        let mut requests = vec![
            put(
                "/machine-config",
                json!({
                    "vcpu_count": spec.cpus,
                    "mem_size_mib": spec.memory_mib,
                    "smt": false,
                }),
            ),
            put("/boot-source", boot_source),
        ];
        if let Some(rootfs) = &spec.rootfs {
            requests.push(drive("rootfs", rootfs, spec.initrd.is_none()));
        }
        // Writable: the guest writes its host key into it.
        requests.push(drive("config", &spec.config_disk, false));
        requests.push(put(
            &format!("/network-interfaces/{NET_ID}"),
            json!({
                "iface_id": NET_ID,
                "host_dev_name": spec.tap,
                "guest_mac": spec.mac,
            }),
        ));
        // The guest agent's channel: Firecracker listens on this socket and forwards a
        // connection that starts with `CONNECT <port>` to that vsock port in the guest.
        requests.push(put(
            "/vsock",
            json!({
                "guest_cid": GUEST_CID,
                "uds_path": spec.vm_dir.join(banger_agent::HOST_SOCKET).display().to_string(),
            }),
        ));
        requests.push(put("/actions", json!({ "action_type": "InstanceStart" })));
        requests
    }

    fn console_on_stdout(&self) -> bool {
        true
    }
}

fn api_socket(spec: &VmmSpec) -> PathBuf {
    spec.vm_dir.join(API_SOCKET)
}

fn put(path: &str, body: serde_json::Value) -> ApiRequest {
    ApiRequest {
        method: "PUT",
        path: path.to_string(),
        body,
    }
}

/// A writable virtio block device backed by the file at `path`.
fn drive(id: &str, path: &Path, is_root_device: bool) -> ApiRequest {
    put(
        &format!("/drives/{id}"),
        json!({
            "drive_id": id,
            "path_on_host": path.display().to_string(),
            "is_root_device": is_root_device,
            "is_read_only": false,
        }),
    )
}

/// The version in the output of `firecracker --version`, whose first line reads
/// `Firecracker v1.10.1` (builds from a source tree may append `-dev` or similar).
pub fn parse_version(output: &str) -> Option<Version> {
    let line = output.lines().map(str::trim).find(|l| !l.is_empty())?;
    let rest = line.strip_prefix("Firecracker")?.trim_start();
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let mut parts = rest.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let tail = parts.next()?;
    let end = tail
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(tail.len());
    if !matches!(tail[end..].chars().next(), None | Some('-' | '+' | ' ')) {
        return None;
    }
    let patch = tail[..end].parse().ok()?;
    Some((major, minor, patch))
}

/// Whether banger drives this release (see [`SUPPORTED`]).
pub fn is_supported(version: Version) -> bool {
    SUPPORTED.0 <= version && version < SUPPORTED.1
}

fn show(v: Version) -> String {
    format!("v{}.{}.{}", v.0, v.1, v.2)
}

/// What [`check_version`] found out about a Firecracker executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCheck {
    /// The executable asked.
    pub program: PathBuf,
    /// Its version, or why it is not known.
    pub outcome: VersionOutcome,
}

/// The version of a Firecracker executable, or why it is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionOutcome {
    /// `--version` named a release.
    Found {
        /// The release.
        version: Version,
        /// Whether it is in [`SUPPORTED`].
        supported: bool,
    },
    /// The executable could not be run, failed, or printed something else.
    Unknown {
        /// Why, in words.
        why: String,
    },
}

impl VersionCheck {
    /// Whether the executable is a release banger drives.
    pub fn is_supported(&self) -> bool {
        matches!(
            self.outcome,
            VersionOutcome::Found {
                supported: true,
                ..
            }
        )
    }

    /// One line for `banger doctor`, e.g. "Firecracker v1.10.1 at /usr/local/bin/firecracker
    /// (supported: v1.0.0 to before v2.0.0)".
    pub fn describe(&self) -> String {
        let range = format!(
            "supported: {} to before {}",
            show(SUPPORTED.0),
            show(SUPPORTED.1)
        );
        let program = self.program.display();
        match &self.outcome {
            VersionOutcome::Found {
                version,
                supported: true,
            } => format!("Firecracker {} at {program} ({range})", show(*version)),
            VersionOutcome::Found { version, .. } => format!(
                "Firecracker {} at {program} is not a supported release ({range}); install one \
                 in that range or set [vm] backend = \"qemu\"",
                show(*version)
            ),
            VersionOutcome::Unknown { why } => {
                format!("cannot tell which Firecracker release {program} is: {why} ({range})")
            }
        }
    }
}

/// Runs `program --version` (for at most a few seconds) and reads the release from it.
pub fn check_version(program: &Path) -> VersionCheck {
    check_version_within(program, VERSION_TIMEOUT)
}

fn check_version_within(program: &Path, timeout: Duration) -> VersionCheck {
    let outcome = match run_version(program, timeout) {
        Err(why) => VersionOutcome::Unknown { why },
        Ok(output) => match parse_version(&output) {
            Some(version) => VersionOutcome::Found {
                version,
                supported: is_supported(version),
            },
            None => {
                let first = output.lines().next().unwrap_or("").trim();
                let first: String = first.chars().take(80).collect();
                VersionOutcome::Unknown {
                    why: format!("`--version` printed {first:?}, not \"Firecracker vX.Y.Z\""),
                }
            }
        },
    };
    VersionCheck {
        program: program.to_path_buf(),
        outcome,
    }
}

/// The standard output of `program --version`, or why there is none.
fn run_version(program: &Path, timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        // A thread, so that a child which keeps writing (or whose own children keep the pipe
        // open) cannot block the wait below.
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.take(VERSION_OUTPUT_LIMIT).read_to_end(&mut out);
            let _ = tx.send(out);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`--version` did not finish within {timeout:?}"));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for `--version` failed: {e}"));
            }
        }
    };
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(200));
    let output = String::from_utf8_lossy(&rx.recv_timeout(grace).unwrap_or_default()).into_owned();
    if !status.success() {
        return Err(format!("`--version` failed ({status})"));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;
    use crate::vmm::tests::spec;
    use banger_host::virt::Accelerator;

    /// The parts of Firecracker's published API spec that banger's requests use, as data.
    ///
    /// Read from `src/firecracker/swagger/firecracker.yaml` in the
    /// firecracker-microvm/firecracker repository, `info.version: 1.17.0-dev` (commit
    /// 004d935399ba6062240af269638635d54229f5bf). Each operation lists its method, path
    /// template and body schema; each schema its `required` list and every one of its
    /// `properties` with the JSON type (and `enum`, `minimum`, `maximum`) the spec gives.
    mod published {
        /// A property's JSON type.
        pub enum Ty {
            Str,
            Bool,
            Int { min: Option<i64>, max: Option<i64> },
            Enum(&'static [&'static str]),
            Object,
        }

        pub struct Schema {
            pub name: &'static str,
            pub required: &'static [&'static str],
            /// Required by a property's description rather than by `required` (a drive's
            /// `path_on_host` and `is_read_only` "are required for virtio-block config").
            pub required_by_description: &'static [&'static str],
            pub properties: &'static [(&'static str, Ty)],
        }

        pub struct Operation {
            pub method: &'static str,
            /// With `{name}` for a path parameter.
            pub path: &'static str,
            pub body: &'static Schema,
        }

        const INT: Ty = Ty::Int {
            min: None,
            max: None,
        };

        pub const MACHINE_CONFIGURATION: Schema = Schema {
            name: "MachineConfiguration",
            required: &["mem_size_mib", "vcpu_count"],
            required_by_description: &[],
            properties: &[
                (
                    "cpu_template",
                    Ty::Enum(&["C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"]),
                ),
                ("smt", Ty::Bool),
                ("mem_size_mib", INT),
                ("track_dirty_pages", Ty::Bool),
                (
                    "vcpu_count",
                    Ty::Int {
                        min: Some(1),
                        max: Some(32),
                    },
                ),
                ("huge_pages", Ty::Enum(&["None", "Transparent", "2M"])),
            ],
        };

        pub const BOOT_SOURCE: Schema = Schema {
            name: "BootSource",
            required: &["kernel_image_path"],
            required_by_description: &[],
            properties: &[
                ("boot_args", Ty::Str),
                ("initrd_path", Ty::Str),
                ("kernel_image_path", Ty::Str),
            ],
        };

        pub const DRIVE: Schema = Schema {
            name: "Drive",
            required: &["drive_id", "is_root_device"],
            required_by_description: &["is_read_only", "path_on_host"],
            properties: &[
                ("drive_id", Ty::Str),
                ("partuuid", Ty::Str),
                ("is_root_device", Ty::Bool),
                ("cache_type", Ty::Enum(&["Unsafe", "Writeback"])),
                ("is_read_only", Ty::Bool),
                ("path_on_host", Ty::Str),
                ("rate_limiter", Ty::Object),
                ("io_engine", Ty::Enum(&["Sync", "Async"])),
                ("socket", Ty::Str),
            ],
        };

        pub const NETWORK_INTERFACE: Schema = Schema {
            name: "NetworkInterface",
            required: &["host_dev_name", "iface_id"],
            required_by_description: &[],
            properties: &[
                ("guest_mac", Ty::Str),
                ("host_dev_name", Ty::Str),
                ("iface_id", Ty::Str),
                (
                    "mtu",
                    Ty::Int {
                        min: Some(68),
                        max: Some(65535),
                    },
                ),
                ("rx_rate_limiter", Ty::Object),
                ("tx_rate_limiter", Ty::Object),
            ],
        };

        pub const VSOCK: Schema = Schema {
            name: "Vsock",
            required: &["guest_cid", "uds_path"],
            required_by_description: &[],
            properties: &[
                (
                    "guest_cid",
                    Ty::Int {
                        min: Some(3),
                        max: None,
                    },
                ),
                ("uds_path", Ty::Str),
                ("vsock_id", Ty::Str),
            ],
        };

        pub const INSTANCE_ACTION_INFO: Schema = Schema {
            name: "InstanceActionInfo",
            required: &["action_type"],
            required_by_description: &[],
            properties: &[(
                "action_type",
                Ty::Enum(&["FlushMetrics", "InstanceStart", "SendCtrlAltDel"]),
            )],
        };

        pub const OPERATIONS: &[Operation] = &[
            Operation {
                method: "PUT",
                path: "/machine-config",
                body: &MACHINE_CONFIGURATION,
            },
            Operation {
                method: "PATCH",
                path: "/machine-config",
                body: &MACHINE_CONFIGURATION,
            },
            Operation {
                method: "PUT",
                path: "/boot-source",
                body: &BOOT_SOURCE,
            },
            Operation {
                method: "PUT",
                path: "/drives/{drive_id}",
                body: &DRIVE,
            },
            Operation {
                method: "PUT",
                path: "/network-interfaces/{iface_id}",
                body: &NETWORK_INTERFACE,
            },
            Operation {
                method: "PUT",
                path: "/vsock",
                body: &VSOCK,
            },
            Operation {
                method: "PUT",
                path: "/actions",
                body: &INSTANCE_ACTION_INFO,
            },
        ];
    }

    use published::{OPERATIONS, Operation, Ty};

    /// The operation `method path` matches, with its path parameters as (name, value).
    fn operation(method: &str, path: &str) -> Option<(&'static Operation, Vec<(String, String)>)> {
        let segments: Vec<&str> = path.split('/').collect();
        OPERATIONS.iter().find_map(|op| {
            let template: Vec<&str> = op.path.split('/').collect();
            if op.method != method || template.len() != segments.len() {
                return None;
            }
            let mut params = Vec::new();
            for (t, s) in template.iter().zip(&segments) {
                match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    Some(name) if !s.is_empty() => params.push((name.to_string(), s.to_string())),
                    Some(_) => return None,
                    None if t == s => {}
                    None => return None,
                }
            }
            Some((op, params))
        })
    }

    fn type_error(ty: &Ty, value: &Value) -> Option<String> {
        match ty {
            Ty::Str if !value.is_string() => Some("is not a string".into()),
            Ty::Bool if !value.is_boolean() => Some("is not a boolean".into()),
            Ty::Object if !value.is_object() => Some("is not an object".into()),
            Ty::Int { min, max } => match value.as_i64() {
                None => Some("is not an integer".into()),
                Some(n) if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) => {
                    Some(format!("{n} is outside {min:?}..={max:?}"))
                }
                Some(_) => None,
            },
            Ty::Enum(values) => match value.as_str() {
                Some(s) if values.contains(&s) => None,
                _ => Some(format!("{value} is not one of {values:?}")),
            },
            _ => None,
        }
    }

    /// Every way `req` departs from the published spec; empty when it conforms.
    fn violations(req: &ApiRequest) -> Vec<String> {
        let at = format!("{} {}", req.method, req.path);
        let Some((op, params)) = operation(req.method, &req.path) else {
            return vec![format!("{at}: no such operation in the spec")];
        };
        let schema = op.body;
        let Some(body) = req.body.as_object() else {
            return vec![format!("{at}: body is not a JSON object")];
        };
        let mut found = Vec::new();
        for field in schema.required.iter().chain(schema.required_by_description) {
            if !body.contains_key(*field) {
                found.push(format!("{at}: {} requires {field}", schema.name));
            }
        }
        for (field, value) in body {
            match schema.properties.iter().find(|(name, _)| name == field) {
                None => found.push(format!("{at}: {} has no property {field}", schema.name)),
                Some((_, ty)) => {
                    if let Some(e) = type_error(ty, value) {
                        found.push(format!("{at}: {field} {e}"));
                    }
                }
            }
        }
        for (name, value) in params {
            // Firecracker refuses a body whose id differs from the path's, and (since v0.13)
            // ids that are not alphanumerics and underscores.
            if body.get(&name).and_then(Value::as_str) != Some(value.as_str()) {
                found.push(format!(
                    "{at}: body {name} differs from the path's {value:?}"
                ));
            }
            if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                found.push(format!(
                    "{at}: {name} {value:?} is not alphanumerics and underscores"
                ));
            }
        }
        found
    }

    fn kvm() -> Accelerator {
        Accelerator::Kvm {
            cpu_flag: "vmx".into(),
        }
    }

    fn fc() -> Firecracker {
        Firecracker::new("/usr/local/bin/firecracker".into())
    }

    /// Specs covering every branch of `setup_requests`.
    fn variants() -> Vec<VmmSpec> {
        let mut out = Vec::new();
        for initrd in [true, false] {
            for rootfs in [true, false] {
                for cpus in [1, 2, 32] {
                    let mut s = spec(kvm());
                    if !initrd {
                        s.initrd = None;
                    }
                    if rootfs {
                        s.rootfs = Some("/var/lib/banger/vms/0123456789ab/rootfs.img".into());
                    }
                    s.cpus = cpus;
                    out.push(s);
                }
            }
        }
        out
    }

    #[test]
    fn requests_match_published_api_spec() {
        for s in variants() {
            let requests = fc().setup_requests(&s);
            assert!(!requests.is_empty());
            for req in &requests {
                let v = violations(req);
                assert!(v.is_empty(), "{v:#?} in {req:?}");
            }
        }
    }

    #[test]
    fn spec_check_catches_mistakes() {
        let base = &fc().setup_requests(&spec(kvm()))[0];
        assert!(violations(base).is_empty());
        let with = |f: &dyn Fn(&mut ApiRequest)| {
            let mut r = base.clone();
            f(&mut r);
            violations(&r)
        };
        let misspelled = with(&|r| {
            let n = r
                .body
                .as_object_mut()
                .unwrap()
                .remove("vcpu_count")
                .unwrap();
            r.body["vcpus_count"] = n;
        });
        assert!(
            misspelled.iter().any(|v| v.contains("requires vcpu_count")),
            "{misspelled:?}"
        );
        assert!(
            misspelled
                .iter()
                .any(|v| v.contains("no property vcpus_count")),
            "{misspelled:?}"
        );
        let as_string = with(&|r| r.body["mem_size_mib"] = json!("256"));
        assert!(
            as_string.iter().any(|v| v.contains("not an integer")),
            "{as_string:?}"
        );
        let too_many = with(&|r| r.body["vcpu_count"] = json!(33));
        assert!(
            too_many.iter().any(|v| v.contains("outside")),
            "{too_many:?}"
        );
        let bad_bool = with(&|r| r.body["smt"] = json!("false"));
        assert!(
            bad_bool.iter().any(|v| v.contains("not a boolean")),
            "{bad_bool:?}"
        );
        assert!(!with(&|r| r.method = "POST").is_empty());
        assert!(!with(&|r| r.path = "/machine-configuration".into()).is_empty());

        let drive = drive("config", Path::new("/x/config.img"), false);
        assert!(violations(&drive).is_empty());
        let mut wrong_id = drive.clone();
        wrong_id.path = "/drives/cfg".into();
        assert!(violations(&wrong_id).iter().any(|v| v.contains("differs")));
        let mut no_path = drive.clone();
        no_path.body.as_object_mut().unwrap().remove("path_on_host");
        assert!(
            violations(&no_path)
                .iter()
                .any(|v| v.contains("requires path_on_host"))
        );
        let mut hyphen = drive;
        hyphen.path = "/drives/con-fig".into();
        hyphen.body["drive_id"] = json!("con-fig");
        assert!(
            violations(&hyphen)
                .iter()
                .any(|v| v.contains("underscores"))
        );

        let start = put("/actions", json!({ "action_type": "Start" }));
        assert!(violations(&start).iter().any(|v| v.contains("not one of")));
    }

    #[test]
    fn requests_come_in_boot_order() {
        for s in variants() {
            let requests = fc().setup_requests(&s);
            let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
            let mut expected = vec!["/machine-config", "/boot-source"];
            if s.rootfs.is_some() {
                expected.push("/drives/rootfs");
            }
            expected.extend([
                "/drives/config",
                "/network-interfaces/eth0",
                "/vsock",
                "/actions",
            ]);
            assert_eq!(paths, expected);
            assert!(requests.iter().all(|r| r.method == "PUT"));
            let drives: Vec<&Value> = requests
                .iter()
                .filter(|r| r.path.starts_with("/drives/"))
                .map(|r| &r.body)
                .collect();
            let ids: HashSet<&str> = drives
                .iter()
                .map(|d| d["drive_id"].as_str().unwrap())
                .collect();
            assert_eq!(ids.len(), drives.len(), "drive ids must be unique");
            let roots = drives
                .iter()
                .filter(|d| d["is_root_device"] == true)
                .count();
            assert!(roots <= 1, "Firecracker allows one root device");
        }
    }

    #[test]
    fn request_bodies() {
        let s = spec(kvm());
        let requests = fc().setup_requests(&s);
        assert_eq!(
            requests[0].body,
            json!({ "vcpu_count": 2, "mem_size_mib": 256, "smt": false })
        );
        assert_eq!(
            requests[1].body,
            json!({
                "kernel_image_path": "/var/lib/banger/images/deb/vmlinux",
                "initrd_path": "/var/lib/banger/images/deb/initrd",
                "boot_args": "console=ttyS0 reboot=k panic=-1 quiet pci=off i8042.noaux \
                              i8042.nomux i8042.nopnp i8042.dumbkbd",
            })
        );
        assert_eq!(
            requests[2].body,
            json!({
                "drive_id": "config",
                "path_on_host": "/var/lib/banger/vms/0123456789ab/config.img",
                "is_root_device": false,
                "is_read_only": false,
            })
        );
        assert_eq!(
            requests[3].body,
            json!({
                "iface_id": "eth0",
                "host_dev_name": "bt-0123456789ab",
                "guest_mac": "52:54:00:1e:00:02",
            })
        );
        assert_eq!(
            requests[4].body,
            json!({
                "guest_cid": 3,
                "uds_path": "/var/lib/banger/vms/0123456789ab/agent.sock",
            })
        );
        assert_eq!(requests[5].body, json!({ "action_type": "InstanceStart" }));
        // Linux interface names are at most 15 bytes; Firecracker refuses longer ones.
        assert!(s.tap.len() <= 15);
    }

    #[test]
    fn rootfs_is_the_root_device_only_without_initrd() {
        let mut s = spec(kvm());
        s.rootfs = Some("/var/lib/banger/vms/0123456789ab/rootfs.img".into());
        let rootfs = |s: &VmmSpec| {
            fc().setup_requests(s)
                .into_iter()
                .find(|r| r.path == "/drives/rootfs")
                .unwrap()
                .body
        };
        let with_initrd = rootfs(&s);
        assert_eq!(with_initrd["is_root_device"], false);
        assert_eq!(
            with_initrd["path_on_host"],
            "/var/lib/banger/vms/0123456789ab/rootfs.img"
        );
        s.initrd = None;
        assert_eq!(rootfs(&s)["is_root_device"], true);
        let boot = &fc().setup_requests(&s)[1].body;
        assert!(boot.get("initrd_path").is_none(), "{boot}");
    }

    #[test]
    fn command_line_and_socket() {
        let s = spec(kvm());
        let f = fc();
        assert_eq!(
            f.argv(&s),
            [
                "/usr/local/bin/firecracker",
                "--api-sock",
                "/var/lib/banger/vms/0123456789ab/firecracker.sock",
                "--id",
                "banger-vm-0123456789ab",
            ]
        );
        // Firecracker's rule for --id: 1 to 64 alphanumerics and hyphens.
        let id = &f.argv(&s)[4];
        assert!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_eq!(
            f.api_socket(&s),
            Some(PathBuf::from(
                "/var/lib/banger/vms/0123456789ab/firecracker.sock"
            ))
        );
        assert!(f.console_on_stdout());
        assert_eq!(f.kind(), BackendKind::Firecracker);
        assert_eq!(f.program(), Path::new("/usr/local/bin/firecracker"));
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("Firecracker v1.10.1\n\n"), Some((1, 10, 1)));
        assert_eq!(
            parse_version(
                "Firecracker v1.4.1\n\nSupported snapshot data format versions: v1.0.0\n"
            ),
            Some((1, 4, 1))
        );
        assert_eq!(parse_version("Firecracker v1.17.0-dev\n"), Some((1, 17, 0)));
        assert_eq!(parse_version("\nFirecracker 0.25.2"), Some((0, 25, 2)));
        assert_eq!(parse_version("Firecracker v1.10"), None);
        assert_eq!(parse_version("Firecracker v1.10.x"), None);
        assert_eq!(parse_version("Firecracker v1.10.1.2"), None);
        assert_eq!(parse_version("QEMU emulator version 8.2.2"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn supported_range() {
        assert!(!is_supported((0, 25, 2)));
        assert!(is_supported((1, 0, 0)));
        assert!(is_supported((1, 10, 1)));
        assert!(is_supported((1, 99, 99)));
        assert!(!is_supported((2, 0, 0)));
    }

    /// Runs `check_version_within` on a shell script with `body`. Writing an executable and
    /// running it at once can meet ETXTBSY when another test thread forks meanwhile: retry.
    fn check_script(body: &str, mode: u32, timeout: Duration) -> VersionCheck {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firecracker");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut check = check_version_within(&path, timeout);
        for _ in 0..20 {
            if !check.describe().contains("Text file busy") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            check = check_version_within(&path, timeout);
        }
        check
    }

    #[test]
    fn version_of_a_supported_release() {
        let c = check_script(
            r#"echo "Firecracker v1.10.1"; echo"#,
            0o755,
            VERSION_TIMEOUT,
        );
        assert_eq!(
            c.outcome,
            VersionOutcome::Found {
                version: (1, 10, 1),
                supported: true
            }
        );
        assert!(c.is_supported());
        let line = c.describe();
        assert!(line.starts_with("Firecracker v1.10.1 at /"), "{line}");
        assert!(
            line.ends_with("/firecracker (supported: v1.0.0 to before v2.0.0)"),
            "{line}"
        );
    }

    #[test]
    fn version_of_an_unsupported_release() {
        let c = check_script(r#"echo "Firecracker v0.25.2""#, 0o755, VERSION_TIMEOUT);
        assert!(!c.is_supported());
        assert!(c.describe().contains("v0.25.2"), "{}", c.describe());
        assert!(
            c.describe().contains("not a supported release"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn version_unknown_when_garbage() {
        let c = check_script("echo 'Usage: something else'", 0o755, VERSION_TIMEOUT);
        assert!(!c.is_supported());
        assert!(
            c.describe().contains("Usage: something else"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn version_unknown_when_not_executable() {
        let c = check_script(r#"echo "Firecracker v1.10.1""#, 0o644, VERSION_TIMEOUT);
        assert!(matches!(c.outcome, VersionOutcome::Unknown { .. }), "{c:?}");
        assert!(c.describe().contains("cannot run it"), "{}", c.describe());
        let missing = check_version(Path::new("/nonexistent/firecracker"));
        assert!(
            missing.describe().contains("/nonexistent/firecracker"),
            "{}",
            missing.describe()
        );
        assert!(!missing.is_supported());
    }

    #[test]
    fn version_unknown_when_failing_or_stalling() {
        let c = check_script(
            r#"echo "Firecracker v1.10.1"; exit 3"#,
            0o755,
            VERSION_TIMEOUT,
        );
        assert!(c.describe().contains("failed"), "{}", c.describe());
        let started = Instant::now();
        let c = check_script("exec sleep 30", 0o755, Duration::from_millis(300));
        assert!(c.describe().contains("did not finish"), "{}", c.describe());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
