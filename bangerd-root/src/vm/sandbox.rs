//! The sandbox of a VM's unit: what QEMU or Firecracker needs to run one guest, and nothing
//! more. A VMM runs untrusted guest code next to an emulator of thousands of lines; if a guest
//! escapes into it, this is what it finds.
//!
//! The VMM needs: its VM's directory (the writable disks, the console log, the API socket),
//! the image's kernel and initrd (read-only, elsewhere in the state directory), `/dev/net/tun`
//! to attach to its tap, `/dev/kvm` when KVM is used, Unix sockets (Firecracker's API), and
//! the system calls of an ordinary service. It needs no capability (it runs as the owner), no
//! IP socket (the guest's network is the tap), no new privileges, no other device, no kernel
//! tunable, no namespace and no other user's processes.
//!
//! This module must never loosen the sandbox for one back end without saying why here, and
//! never deny writable-executable memory under TCG (QEMU's code generator needs it).

use crate::vmm::VmmSpec;
use banger_host::systemd::UnitProperty;
use banger_host::virt::Accelerator;

/// Highest file descriptor count a VMM may open (disks, tap, logs, eventfds, API socket).
pub const VMM_MAX_FILES: u64 = 1024;
/// Most tasks (threads) a VMM may run: one per vCPU, I/O and RCU threads, and headroom.
pub fn vmm_max_tasks(cpus: u32) -> u64 {
    64 + 2 * u64::from(cpus)
}

/// The unit properties that confine the VMM of `spec`.
pub fn vm_sandbox(spec: &VmmSpec) -> Vec<UnitProperty> {
    use UnitProperty::{Bool, Devices, NameList, Str, Strs, U32, U64};
    let kvm = matches!(spec.accel, Accelerator::Kvm { .. });
    let mut devices = vec![("/dev/net/tun".to_string(), "rw".to_string())];
    if kvm {
        devices.push(("/dev/kvm".into(), "rw".into()));
    }
    let mut p = vec![
        Bool("NoNewPrivileges", true),
        U64("CapabilityBoundingSet", 0),
        U64("AmbientCapabilities", 0),
        // The whole file system is read-only but for the VM's own directory.
        Str("ProtectSystem", "strict".into()),
        Strs(
            "ReadWritePaths",
            vec![spec.vm_dir.to_string_lossy().into_owned()],
        ),
        Str("ProtectHome", "yes".into()),
        Bool("PrivateTmp", true),
        Str("DevicePolicy", "closed".into()),
        Devices("DeviceAllow", devices),
        Bool("ProtectKernelTunables", true),
        Bool("ProtectKernelModules", true),
        Bool("ProtectKernelLogs", true),
        Bool("ProtectControlGroups", true),
        Bool("ProtectClock", true),
        Bool("ProtectHostname", true),
        Str("ProtectProc", "invisible".into()),
        Str("ProcSubset", "pid".into()),
        Str("KeyringMode", "private".into()),
        Bool("PrivateIPC", true),
        Bool("RemoveIPC", true),
        // No namespace of any kind may be created (the mask of allowed ones is empty).
        U64("RestrictNamespaces", 0),
        Bool("RestrictRealtime", true),
        Bool("RestrictSUIDSGID", true),
        Bool("LockPersonality", true),
        NameList("RestrictAddressFamilies", true, vec!["AF_UNIX".into()]),
        Strs("SystemCallArchitectures", vec!["native".into()]),
        // `seccomp`: QEMU probes for (and can install) a seccomp filter of its own, which only
        // ever narrows this one further.
        NameList(
            "SystemCallFilter",
            true,
            vec![
                "@system-service".into(),
                "@resources".into(),
                "seccomp".into(),
            ],
        ),
        NameList(
            "SystemCallFilter",
            false,
            vec![
                "@privileged".into(),
                "@mount".into(),
                "@module".into(),
                "@reboot".into(),
                "@swap".into(),
                "@raw-io".into(),
                "@clock".into(),
                "@debug".into(),
                "@obsolete".into(),
                "@cpu-emulation".into(),
            ],
        ),
        U32("UMask", 0o077),
        U64("LimitNOFILE", VMM_MAX_FILES),
        U64("TasksMax", vmm_max_tasks(spec.cpus)),
    ];
    if kvm {
        // With KVM the guest runs on the CPU; the VMM generates no code of its own.
        p.push(Bool("MemoryDenyWriteExecute", true));
    }
    p
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn spec(accel: Accelerator) -> VmmSpec {
        VmmSpec {
            id: "0123456789ab".into(),
            kernel: "/var/lib/banger/images/deb/kernel".into(),
            initrd: None,
            rootfs: None,
            config_disk: "/var/lib/banger/vms/0123456789ab/config.img".into(),
            cpus: 2,
            memory_mib: 256,
            tap: "bt-0123456789ab".into(),
            mac: "52:54:00:00:00:02".into(),
            serial_log: "/var/lib/banger/vms/0123456789ab/serial.log".into(),
            vm_dir: PathBuf::from("/var/lib/banger/vms/0123456789ab"),
            accel,
            tsc_khz: 0,
        }
    }

    fn find<'a>(p: &'a [UnitProperty], name: &str) -> Vec<&'a UnitProperty> {
        p.iter().filter(|x| x.name() == name).collect()
    }

    #[test]
    fn only_the_vms_own_directory_is_writable() {
        let p = vm_sandbox(&spec(Accelerator::Tcg { why: "t".into() }));
        assert_eq!(
            find(&p, "ReadWritePaths"),
            [&UnitProperty::Strs(
                "ReadWritePaths",
                vec!["/var/lib/banger/vms/0123456789ab".into()]
            )]
        );
        assert!(p.contains(&UnitProperty::Str("ProtectSystem", "strict".into())));
        assert!(p.contains(&UnitProperty::U64("CapabilityBoundingSet", 0)));
    }

    #[test]
    fn devices_follow_the_accelerator() {
        let tcg = vm_sandbox(&spec(Accelerator::Tcg { why: "t".into() }));
        assert_eq!(
            find(&tcg, "DeviceAllow"),
            [&UnitProperty::Devices(
                "DeviceAllow",
                vec![("/dev/net/tun".into(), "rw".into())]
            )]
        );
        assert!(
            find(&tcg, "MemoryDenyWriteExecute").is_empty(),
            "TCG generates code"
        );
        let kvm = vm_sandbox(&spec(Accelerator::Kvm {
            cpu_flag: "vmx".into(),
        }));
        assert_eq!(
            find(&kvm, "DeviceAllow"),
            [&UnitProperty::Devices(
                "DeviceAllow",
                vec![
                    ("/dev/net/tun".into(), "rw".into()),
                    ("/dev/kvm".into(), "rw".into())
                ]
            )]
        );
        assert!(kvm.contains(&UnitProperty::Bool("MemoryDenyWriteExecute", true)));
    }

    #[test]
    fn limits_scale_with_cpus() {
        assert_eq!(vmm_max_tasks(1), 66);
        let p = vm_sandbox(&spec(Accelerator::Tcg { why: "t".into() }));
        assert!(p.contains(&UnitProperty::U64("TasksMax", 68)));
        assert!(p.contains(&UnitProperty::U64("LimitNOFILE", VMM_MAX_FILES)));
    }
}
