//! Virtual machine monitors behind one trait.
//!
//! A back end turns a [`VmmSpec`] (what to boot, with which resources, on which tap) into the
//! command line of the VMM process that systemd runs as the VM's unit, plus the HTTP requests
//! to send to the VMM's API socket once it listens (Firecracker configures a VM that way; QEMU
//! takes everything on its command line and sends nothing). Keeping the requests as data keeps
//! every back end a pure, testable description; [`api`] sends them.
//!
//! Which back end runs is decided by [`select`] from the admin's configuration and what is
//! installed, with a reason a person can read in `banger doctor`.

pub mod api;
pub mod firecracker;
pub mod qemu;

use std::path::{Path, PathBuf};

pub use banger_api::wire::BackendKind;
use banger_host::virt::Accelerator;

/// Everything a back end needs to boot one VM. Paths are absolute; the VMM process (running as
/// the install's owner) opens them itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmSpec {
    /// The VM's id (lowercase hex), also in its unit name.
    pub id: String,
    /// Uncompressed kernel (`vmlinux`) or a bzImage QEMU can load.
    pub kernel: PathBuf,
    /// Optional initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Optional root filesystem image (the VM's own writable copy), attached first.
    pub rootfs: Option<PathBuf>,
    /// The per-VM config disk (see `docs/guest.md`), attached after the root filesystem.
    pub config_disk: PathBuf,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Host tap device the VM's network card is connected to.
    pub tap: String,
    /// The network card's MAC address, `52:54:00:xx:xx:xx`.
    pub mac: String,
    /// Where the serial console goes.
    pub serial_log: PathBuf,
    /// The VM's own directory (API socket, logs).
    pub vm_dir: PathBuf,
    /// The accelerator to use.
    pub accel: Accelerator,
    /// Host TSC frequency in kHz, handed to TCG guests (`tsc_early_khz=`); 0 if unknown.
    pub tsc_khz: u64,
}

impl VmmSpec {
    /// Kernel command line shared by every back end: serial console, halt instead of reboot
    /// on panic (the unit then ends and the VM shows as stopped), and under TCG the host's TSC
    /// frequency, without which calibration can hang on a loaded host.
    pub fn kernel_cmdline(&self) -> String {
        let mut s = String::from("console=ttyS0 reboot=k panic=-1 quiet");
        if matches!(self.accel, Accelerator::Tcg { .. }) && self.tsc_khz > 0 {
            s.push_str(&format!(" tsc_early_khz={}", self.tsc_khz));
        }
        s
    }
}

/// One HTTP request to a VMM's API socket.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    /// `PUT`, `PATCH`, `GET`.
    pub method: &'static str,
    /// Path, e.g. `/machine-config`.
    pub path: String,
    /// JSON body.
    pub body: serde_json::Value,
}

/// A virtual machine monitor.
pub trait Backend: Send + Sync {
    /// Which back end this is.
    fn kind(&self) -> BackendKind;
    /// The VMM executable.
    fn program(&self) -> &Path;
    /// The full command line of the VMM process (`argv[0]` is [`Backend::program`]).
    fn argv(&self, spec: &VmmSpec) -> Vec<String>;
    /// The API socket to configure the VM through, if the back end has one.
    fn api_socket(&self, spec: &VmmSpec) -> Option<PathBuf>;
    /// Requests to send, in order, once the API socket accepts connections.
    fn setup_requests(&self, spec: &VmmSpec) -> Vec<ApiRequest>;
    /// Whether the VMM's standard output is the serial console (so the unit must send it to
    /// [`VmmSpec::serial_log`]).
    fn console_on_stdout(&self) -> bool;
}

/// The admin's choice in `/etc/banger/config.toml`, `[vm] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Firecracker when installed, else QEMU.
    #[default]
    Auto,
    /// Exactly this one.
    Only(BackendKind),
}

impl BackendChoice {
    /// Parses `auto`, `qemu`, `firecracker`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(BackendChoice::Auto),
            other => BackendKind::parse(other).map(BackendChoice::Only),
        }
    }
}

/// What [`select`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The back end, if one can run.
    pub kind: Option<BackendKind>,
    /// Its executable.
    pub program: Option<PathBuf>,
    /// Why, in words.
    pub why: String,
}

/// Picks the back end: the configured one, or with `auto` Firecracker when its binary is
/// found and hardware KVM is usable, else QEMU (which also runs under TCG). `firecracker` and
/// `qemu` are the programs found on this host (if any); `accel` is what the host offers.
pub fn select(
    choice: BackendChoice,
    firecracker: Option<PathBuf>,
    qemu: Option<PathBuf>,
    accel: &Accelerator,
) -> Selection {
    let none = |why: String| Selection {
        kind: None,
        program: None,
        why,
    };
    let pick = |kind: BackendKind, p: PathBuf, why: String| Selection {
        kind: Some(kind),
        program: Some(p),
        why,
    };
    let no_kvm = match accel {
        Accelerator::Kvm { .. } => None,
        Accelerator::Tcg { why } => Some(why.clone()),
    };
    match choice {
        BackendChoice::Only(BackendKind::Qemu) => match qemu {
            Some(q) => pick(
                BackendKind::Qemu,
                q,
                "[vm] backend = \"qemu\" in the configuration".into(),
            ),
            None => none(format!(
                "[vm] backend = \"qemu\" in the configuration, but {} is not installed \
                 (Debian package qemu-system-x86)",
                qemu::PROGRAM
            )),
        },
        BackendChoice::Only(BackendKind::Firecracker) => match (firecracker, no_kvm) {
            (None, _) => none(format!(
                "[vm] backend = \"firecracker\" in the configuration, but {} is not installed",
                firecracker::PROGRAM
            )),
            (Some(_), Some(why)) => none(format!(
                "[vm] backend = \"firecracker\" in the configuration, but Firecracker needs KVM, \
                 which this host cannot offer ({why}); set backend = \"qemu\" or \"auto\""
            )),
            (Some(fc), None) => pick(
                BackendKind::Firecracker,
                fc,
                "[vm] backend = \"firecracker\" in the configuration".into(),
            ),
        },
        BackendChoice::Auto => match (firecracker, qemu, no_kvm) {
            (Some(fc), _, None) => {
                let why = format!("backend auto: Firecracker is installed ({})", fc.display());
                pick(BackendKind::Firecracker, fc, why)
            }
            (Some(_), Some(q), Some(why)) => pick(
                BackendKind::Qemu,
                q,
                format!(
                    "backend auto: Firecracker is installed but needs KVM, which this host \
                     cannot offer ({why}); using QEMU"
                ),
            ),
            (None, Some(q), _) => {
                let why = format!(
                    "backend auto: Firecracker is not installed, QEMU is ({})",
                    q.display()
                );
                pick(BackendKind::Qemu, q, why)
            }
            (Some(_), None, Some(why)) => none(format!(
                "backend auto: Firecracker is installed but needs KVM ({why}), and {} is not \
                 installed (Debian package qemu-system-x86)",
                qemu::PROGRAM
            )),
            (None, None, _) => none(format!(
                "backend auto: neither {} nor {} is installed (install the Debian package \
                 qemu-system-x86, or Firecracker)",
                firecracker::PROGRAM,
                qemu::PROGRAM
            )),
        },
    }
}

/// The back end for `kind`, running `program`.
pub fn backend(kind: BackendKind, program: PathBuf) -> Box<dyn Backend> {
    match kind {
        BackendKind::Qemu => Box::new(qemu::Qemu::new(program)),
        BackendKind::Firecracker => Box::new(firecracker::Firecracker::new(program)),
    }
}

/// The host's TSC frequency in kHz from `/proc/cpuinfo` (`cpu MHz`), 0 if unknown.
pub fn host_tsc_khz() -> u64 {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    parse_tsc_khz(&cpuinfo)
}

fn parse_tsc_khz(cpuinfo: &str) -> u64 {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0) as u64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A spec for tests.
    pub fn spec(accel: Accelerator) -> VmmSpec {
        VmmSpec {
            id: "0123456789ab".into(),
            kernel: "/var/lib/banger/images/deb/vmlinux".into(),
            initrd: Some("/var/lib/banger/images/deb/initrd".into()),
            rootfs: None,
            config_disk: "/var/lib/banger/vms/0123456789ab/config.img".into(),
            cpus: 2,
            memory_mib: 256,
            tap: "bt-0123456789ab".into(),
            mac: "52:54:00:1e:00:02".into(),
            serial_log: "/var/lib/banger/vms/0123456789ab/serial.log".into(),
            vm_dir: "/var/lib/banger/vms/0123456789ab".into(),
            accel,
            tsc_khz: 2_100_000,
        }
    }

    fn tcg() -> Accelerator {
        Accelerator::Tcg { why: "test".into() }
    }

    #[test]
    fn cmdline_passes_tsc_only_under_tcg() {
        assert!(
            spec(tcg())
                .kernel_cmdline()
                .contains("tsc_early_khz=2100000")
        );
        let kvm = spec(Accelerator::Kvm {
            cpu_flag: "vmx".into(),
        });
        assert!(!kvm.kernel_cmdline().contains("tsc_early_khz"));
        assert!(!kvm.kernel_cmdline().contains("trust_cpu"));
    }

    #[test]
    fn selection() {
        let fc = Some(PathBuf::from("/usr/local/bin/firecracker"));
        let q = Some(PathBuf::from("/usr/bin/qemu-system-x86_64"));
        let kvm = Accelerator::Kvm {
            cpu_flag: "vmx".into(),
        };
        let tcg = tcg();
        let s = select(BackendChoice::Auto, fc.clone(), q.clone(), &kvm);
        assert_eq!(s.kind, Some(BackendKind::Firecracker));
        let s = select(BackendChoice::Auto, fc.clone(), q.clone(), &tcg);
        assert_eq!(
            s.kind,
            Some(BackendKind::Qemu),
            "no KVM: Firecracker cannot run"
        );
        assert!(s.why.contains("needs KVM"), "{}", s.why);
        let s = select(BackendChoice::Auto, None, q.clone(), &kvm);
        assert_eq!(s.kind, Some(BackendKind::Qemu));
        assert!(s.why.contains("not installed"), "{}", s.why);
        let s = select(
            BackendChoice::Only(BackendKind::Qemu),
            fc.clone(),
            q.clone(),
            &kvm,
        );
        assert_eq!(s.kind, Some(BackendKind::Qemu));
        let s = select(
            BackendChoice::Only(BackendKind::Firecracker),
            None,
            q.clone(),
            &kvm,
        );
        assert_eq!(s.kind, None);
        assert!(s.why.contains("not installed"), "{}", s.why);
        let s = select(
            BackendChoice::Only(BackendKind::Firecracker),
            fc.clone(),
            q,
            &tcg,
        );
        assert_eq!(s.kind, None);
        assert!(s.why.contains("needs KVM"), "{}", s.why);
        let s = select(BackendChoice::Auto, fc, None, &tcg);
        assert_eq!(s.kind, None);
        let s = select(BackendChoice::Auto, None, None, &kvm);
        assert_eq!(s.kind, None);
        assert!(s.why.contains("qemu-system-x86"), "{}", s.why);
        assert_eq!(BackendChoice::parse("kvm"), None);
    }

    #[test]
    fn tsc_from_cpuinfo() {
        assert_eq!(parse_tsc_khz("cpu MHz\t\t: 2099.998\n"), 2_099_998);
        assert_eq!(parse_tsc_khz("nothing"), 0);
    }
}
