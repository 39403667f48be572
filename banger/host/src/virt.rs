//! What kind of hardware virtualization this host offers, and why.
//!
//! KVM is only worth using when `/dev/kvm` exists *and* the CPU advertises vmx or svm: a
//! paravirtualized `/dev/kvm` without them runs only specially built guest kernels, so banger
//! falls back to QEMU's TCG software emulation there.

use std::path::Path;

/// The accelerator banger will use for VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware KVM.
    Kvm {
        /// The CPU flag that proves hardware support (`vmx` or `svm`).
        cpu_flag: String,
    },
    /// QEMU software emulation.
    Tcg {
        /// Why KVM is not used.
        why: String,
    },
}

impl Accelerator {
    /// Detects the accelerator from the live system.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::decide(Path::new("/dev/kvm").exists(), &cpuinfo)
    }

    /// The decision, from facts (testable).
    pub fn decide(dev_kvm: bool, cpuinfo: &str) -> Self {
        let flag = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .flat_map(|l| l.split_whitespace())
            .find(|f| *f == "vmx" || *f == "svm");
        match (dev_kvm, flag) {
            (true, Some(f)) => Accelerator::Kvm { cpu_flag: f.into() },
            (false, Some(f)) => Accelerator::Tcg {
                why: format!(
                    "the CPU offers {f} but /dev/kvm is missing (load the kvm module to use KVM)"
                ),
            },
            (true, None) => Accelerator::Tcg {
                why: "/dev/kvm exists but the CPU advertises neither vmx nor svm (paravirtualized \
                      KVM runs only specially built guest kernels)"
                    .into(),
            },
            (false, None) => Accelerator::Tcg {
                why: "no /dev/kvm and no vmx/svm CPU flag".into(),
            },
        }
    }
}

/// Finds an executable by name on `PATH` (or the usual system directories).
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let vmx = "processor : 0\nflags : fpu vme vmx sse\n";
        let none = "processor : 0\nflags : fpu vme sse\n";
        assert_eq!(
            Accelerator::decide(true, vmx),
            Accelerator::Kvm {
                cpu_flag: "vmx".into()
            }
        );
        assert!(
            matches!(Accelerator::decide(true, none), Accelerator::Tcg { why } if why.contains("paravirtualized"))
        );
        assert!(
            matches!(Accelerator::decide(false, vmx), Accelerator::Tcg { why } if why.contains("missing"))
        );
    }
}
