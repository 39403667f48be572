//! QEMU's `microvm` machine: everything on the command line, no API requests.
//!
//! Devices are virtio-mmio (`virtio-*-device`); the serial console goes to a file; no
//! firmware, display, default devices or user configuration is loaded. Under TCG the CPU model
//! is `max`; under KVM it is `host`, without the `arch-capabilities` MSR that some nested
//! hypervisors refuse.

use std::path::{Path, PathBuf};

use super::{ApiRequest, Backend, BackendKind, VmmSpec};
use banger_host::virt::Accelerator;

/// The program looked for on the host.
pub const PROGRAM: &str = "qemu-system-x86_64";

/// The QEMU back end.
#[derive(Debug, Clone)]
pub struct Qemu {
    program: PathBuf,
}

impl Qemu {
    /// A back end running `program`.
    pub fn new(program: PathBuf) -> Self {
        Qemu { program }
    }
}

impl Backend for Qemu {
    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    fn program(&self) -> &Path {
        &self.program
    }

    fn argv(&self, spec: &VmmSpec) -> Vec<String> {
        let (accel, cpu) = match spec.accel {
            Accelerator::Kvm { .. } => ("kvm", "host,-arch-capabilities"),
            Accelerator::Tcg { .. } => ("tcg", "max"),
        };
        let mut a: Vec<String> = vec![self.program.display().to_string()];
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&[
            "-name",
            &format!("banger-vm-{},process=banger-vm-{}", spec.id, spec.id),
        ]);
        push(&["-M", "microvm", "-accel", accel, "-cpu", cpu]);
        push(&[
            "-m",
            &spec.memory_mib.to_string(),
            "-smp",
            &spec.cpus.to_string(),
        ]);
        // A guest reboot (or panic, with panic=-1) ends the VMM, as it does with Firecracker:
        // the unit ends and the VM shows as stopped instead of looping.
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        push(&["-serial", &format!("file:{}", spec.serial_log.display())]);
        push(&["-kernel", &spec.kernel.display().to_string()]);
        if let Some(initrd) = &spec.initrd {
            push(&["-initrd", &initrd.display().to_string()]);
        }
        // Without an initrd nothing else would mount the root filesystem: it is the first
        // virtio disk, as Firecracker's root device is.
        let mut cmdline = spec.kernel_cmdline();
        if spec.rootfs.is_some() && spec.initrd.is_none() {
            cmdline.push_str(" root=/dev/vda rw");
        }
        push(&["-append", &cmdline]);
        push(&[
            "-netdev",
            &format!("tap,id=net0,ifname={},script=no,downscript=no", spec.tap),
            "-device",
            &format!("virtio-net-device,netdev=net0,mac={}", spec.mac),
        ]);
        let disks = spec
            .rootfs
            .iter()
            .map(|p| ("rootfs", p))
            .chain([("config", &spec.config_disk)]);
        for (id, path) in disks {
            let path = path.display().to_string();
            push(&[
                "-drive",
                &format!("id={id},file={},format=raw,if=none", qemu_escape(&path)),
                "-device",
                &format!("virtio-blk-device,drive={id}"),
            ]);
        }
        // The guest agent's channel: a virtio-serial port whose host side is a Unix socket
        // QEMU listens on (one client at a time), in the VM's directory.
        let agent = spec.vm_dir.join(banger_agent::HOST_SOCKET);
        push(&[
            "-device",
            "virtio-serial-device",
            "-chardev",
            &format!(
                "socket,id=agent,path={},server=on,wait=off",
                qemu_escape(&agent.display().to_string())
            ),
            "-device",
            &format!(
                "virtserialport,chardev=agent,name={}",
                banger_agent::VIRTIO_PORT_NAME
            ),
        ]);
        a
    }

    fn api_socket(&self, _spec: &VmmSpec) -> Option<PathBuf> {
        None
    }

    fn setup_requests(&self, _spec: &VmmSpec) -> Vec<ApiRequest> {
        Vec::new()
    }

    fn console_on_stdout(&self) -> bool {
        false
    }
}

/// QEMU option values are comma-separated; a literal comma is written twice.
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::tests::spec;

    fn joined(accel: Accelerator) -> String {
        Qemu::new("/usr/bin/qemu-system-x86_64".into())
            .argv(&spec(accel))
            .join(" ")
    }

    #[test]
    fn tcg_command_line() {
        let a = joined(Accelerator::Tcg { why: "t".into() });
        assert!(a.starts_with("/usr/bin/qemu-system-x86_64 "), "{a}");
        assert!(a.contains("-M microvm -accel tcg -cpu max"), "{a}");
        assert!(a.contains("-m 256 -smp 2"), "{a}");
        assert!(
            a.contains("-nodefaults -no-user-config -display none -no-reboot"),
            "{a}"
        );
        assert!(
            a.contains("-serial file:/var/lib/banger/vms/0123456789ab/serial.log"),
            "{a}"
        );
        assert!(
            a.contains("-initrd /var/lib/banger/images/deb/initrd"),
            "{a}"
        );
        assert!(
            a.contains("ifname=bt-0123456789ab,script=no,downscript=no"),
            "{a}"
        );
        assert!(
            a.contains("virtio-net-device,netdev=net0,mac=52:54:00:1e:00:02"),
            "{a}"
        );
        assert!(
            a.contains("id=config,file=/var/lib/banger/vms/0123456789ab/config.img,format=raw"),
            "{a}"
        );
        assert!(!a.contains("rootfs"), "{a}");
        assert!(
            a.contains("-device virtio-serial-device -chardev socket,id=agent,path=/var/lib/banger/vms/0123456789ab/agent.sock,server=on,wait=off -device virtserialport,chardev=agent,name=org.banger.agent.0"),
            "{a}"
        );
        assert!(!a.contains("root="), "{a}");
    }

    #[test]
    fn a_root_filesystem_without_initrd_is_the_root_device() {
        let mut s = spec(Accelerator::Tcg { why: "t".into() });
        s.rootfs = Some("/var/lib/banger/vms/0123456789ab/rootfs.img".into());
        let q = Qemu::new("/usr/bin/qemu-system-x86_64".into());
        let with_initrd = q.argv(&s).join(" ");
        assert!(!with_initrd.contains("root="), "{with_initrd}");
        s.initrd = None;
        let argv = q.argv(&s);
        let append = argv.iter().position(|a| a == "-append").expect("-append");
        assert!(
            argv[append + 1].ends_with(" root=/dev/vda rw"),
            "{}",
            argv[append + 1]
        );
    }

    #[test]
    fn kvm_uses_host_cpu_and_rootfs_comes_first() {
        let mut s = spec(Accelerator::Kvm {
            cpu_flag: "vmx".into(),
        });
        s.rootfs = Some("/var/lib/banger/vms/x,y/rootfs.img".into());
        let a = Qemu::new("/usr/bin/qemu-system-x86_64".into())
            .argv(&s)
            .join(" ");
        assert!(a.contains("-accel kvm -cpu host,-arch-capabilities"), "{a}");
        let root = a
            .find("id=rootfs,file=/var/lib/banger/vms/x,,y/rootfs.img")
            .expect(&a);
        assert!(root < a.find("id=config").unwrap(), "{a}");
    }

    #[test]
    fn no_api() {
        let q = Qemu::new("/usr/bin/qemu-system-x86_64".into());
        let s = spec(Accelerator::Tcg { why: "t".into() });
        assert!(q.api_socket(&s).is_none());
        assert!(q.setup_requests(&s).is_empty());
    }
}
