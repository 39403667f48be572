//! `VmmDoctor`: which back end and accelerator VMs will get and why, whether the Firecracker
//! release (if installed) is one banger drives, whether the VM network is in order, and whether
//! the `[vm]`/`[network]` configuration is valid. Read-only: it never creates the bridge.

use crate::vmm::{self, BackendKind, Selection};
use banger_api::wire::{DoctorCheck, Level};
use banger_host::virt::Accelerator;

use super::config::{NetworkConfig, VmConfig};
use super::launch::VmHost;
use super::nat::NatStatus;
use super::net::{BridgeHealth, Link, NetError, bridge_health};

/// The `vm config` check.
pub fn config_check(path: &std::path::Path, cfg: &Result<VmConfig, String>) -> DoctorCheck {
    match cfg {
        Ok(c) => DoctorCheck::new(
            Level::Pass,
            "vm config",
            format!(
                "{}: backend {}, bridge {}, subnet {}",
                if path.exists() {
                    path.display().to_string()
                } else {
                    format!("defaults ({} does not exist)", path.display())
                },
                match c.backend {
                    vmm::BackendChoice::Auto => "auto".to_string(),
                    vmm::BackendChoice::Only(k) => k.to_string(),
                },
                c.network.bridge,
                c.network.subnet
            ),
        ),
        Err(e) => DoctorCheck::new(
            Level::Fail,
            "vm config",
            format!("{e}; VMs cannot start until it is fixed"),
        ),
    }
}

/// The `vm backend` check.
pub fn backend_check(sel: &Selection, accel: &Accelerator) -> DoctorCheck {
    match (sel.kind, &sel.program, accel) {
        (Some(BackendKind::Firecracker), _, Accelerator::Tcg { why }) => DoctorCheck::new(
            Level::Fail,
            "vm backend",
            format!(
                "firecracker ({}), but Firecracker needs KVM and this host offers none ({why}); \
                 set [vm] backend = \"qemu\" in /etc/banger/config.toml",
                sel.why
            ),
        ),
        (Some(kind), Some(program), _) => DoctorCheck::new(
            Level::Pass,
            "vm backend",
            format!("{kind} at {}: {}", program.display(), sel.why),
        ),
        _ => DoctorCheck::new(Level::Fail, "vm backend", sel.why.clone()),
    }
}

/// The `accelerator` check.
pub fn accelerator_check(accel: &Accelerator) -> DoctorCheck {
    match accel {
        Accelerator::Kvm { cpu_flag } => DoctorCheck::new(
            Level::Pass,
            "accelerator",
            format!("kvm (/dev/kvm and the CPU flag {cpu_flag})"),
        ),
        Accelerator::Tcg { why } => DoctorCheck::new(
            Level::Warn,
            "accelerator",
            format!("tcg (QEMU software emulation, much slower): {why}"),
        ),
    }
}

/// The `vm network` check, from what `ip` said about the bridge.
pub fn network_check(net: &NetworkConfig, found: Result<Option<Link>, NetError>) -> DoctorCheck {
    let want = format!("{}/{}", net.host_address(), net.subnet.prefix());
    let bridge = &net.bridge;
    match found {
        Err(e) => DoctorCheck::new(Level::Fail, "vm network", e.to_string()),
        Ok(link) => match bridge_health(net, link.as_ref()) {
            BridgeHealth::Ready if !link.as_ref().is_some_and(|l| l.ipv6_off) => DoctorCheck::new(
                Level::Warn,
                "vm network",
                format!(
                    "bridge {bridge} has the host address {want}, but IPv6 is on: a guest's \
                     router advertisement could give this host a route; the next VM start turns \
                     it off"
                ),
            ),
            BridgeHealth::Ready => DoctorCheck::new(
                Level::Pass,
                "vm network",
                format!("bridge {bridge} is up with the host address {want}, IPv6 off"),
            ),
            BridgeHealth::Absent => DoctorCheck::new(
                Level::Pass,
                "vm network",
                format!("bridge {bridge} will be created on first VM start, with {want}"),
            ),
            BridgeHealth::OtherAddress(addrs) => DoctorCheck::new(
                Level::Warn,
                "vm network",
                format!(
                    "bridge {bridge} carries {} instead of {want}; the next VM start adds {want} \
                     (the subnet in /etc/banger/config.toml may have changed)",
                    if addrs.is_empty() {
                        "no IPv4 address".to_string()
                    } else {
                        addrs.join(", ")
                    }
                ),
            ),
            BridgeHealth::NotABridge(kind) => DoctorCheck::new(
                Level::Fail,
                "vm network",
                format!(
                    "interface {bridge} exists but is not a bridge (it is {}); VMs cannot start: \
                     set another [network] bridge in /etc/banger/config.toml",
                    if kind.is_empty() {
                        "a plain device"
                    } else {
                        &kind
                    }
                ),
            ),
        },
    }
}

/// The `vm nat` check: whether VMs reach beyond the host, and why not.
pub fn nat_check(net: &NetworkConfig, status: NatStatus) -> DoctorCheck {
    let subnet = &net.subnet;
    match status {
        NatStatus::Off => DoctorCheck::new(
            Level::Pass,
            "vm nat",
            "off ([network] nat = false): VMs reach only this host",
        ),
        NatStatus::Active { uplink } => DoctorCheck::new(
            Level::Pass,
            "vm nat",
            format!("{subnet} is masqueraded out of {uplink} (nftables table ip banger)"),
        ),
        NatStatus::Idle => DoctorCheck::new(
            Level::Pass,
            "vm nat",
            format!(
                "on; no rules now (no VM runs): the next VM start masquerades {subnet} out of the \
                 default route"
            ),
        ),
        NatStatus::Broken(why) => DoctorCheck::new(
            Level::Warn,
            "vm nat",
            format!("{why}; VMs reach only this host"),
        ),
    }
}

impl VmHost {
    /// Every VM check, in a fixed order.
    pub async fn doctor(&self) -> Vec<DoctorCheck> {
        let path = self.paths().config.clone();
        let loaded = VmConfig::load(&path).map_err(|e| e.to_string());
        let mut out = vec![config_check(&path, &loaded)];
        let cfg = loaded.unwrap_or_default();

        let (firecracker, qemu) = self.programs().vmms();
        let accel = self.accelerator();
        let sel = vmm::select(cfg.backend, firecracker.clone(), qemu, &accel);
        out.push(backend_check(&sel, &accel));
        out.push(accelerator_check(&accel));
        out.push(match &accel {
            Accelerator::Tcg { .. } => DoctorCheck::new(
                Level::Pass,
                "kvm access",
                "not needed: VMs run under TCG software emulation",
            ),
            Accelerator::Kvm { .. } => match self.kvm_access() {
                Ok(why) => DoctorCheck::new(Level::Pass, "kvm access", why),
                Err(why) => DoctorCheck::new(
                    Level::Fail,
                    "kvm access",
                    format!("{why}; VMs cannot start"),
                ),
            },
        });

        if let Some(fc) = firecracker {
            let check =
                tokio::task::spawn_blocking(move || vmm::firecracker::check_version(&fc)).await;
            out.push(match check {
                Ok(c) if c.is_supported() => {
                    DoctorCheck::new(Level::Pass, "firecracker", c.describe())
                }
                Ok(c) => DoctorCheck::new(
                    // Only a failure when Firecracker is what VMs would run on.
                    if sel.kind == Some(BackendKind::Firecracker) {
                        Level::Fail
                    } else {
                        Level::Warn
                    },
                    "firecracker",
                    c.describe(),
                ),
                Err(e) => DoctorCheck::new(
                    Level::Warn,
                    "firecracker",
                    format!("checking the version failed: {e}"),
                ),
            });
        }

        let (found, ip) = match self.programs().ip() {
            Ok(ip) => (ip.link(&cfg.network.bridge).await, Some(ip)),
            Err(e) => (Err(e), None),
        };
        out.push(network_check(&cfg.network, found));
        let nat = self.nat().status(ip.as_ref(), &cfg.network).await;
        out.push(nat_check(&cfg.network, nat));
        out.push(tun_check(std::fs::metadata(TUN_DEVICE).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode()
        })));
        out
    }
}

/// The device the VMM (running as the owner) opens to attach to its tap.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// Whether an unprivileged VMM can open the tun device: udev makes it 0666 on a normal host.
pub fn tun_check(mode: std::io::Result<u32>) -> DoctorCheck {
    match mode {
        Ok(m) if m & 0o006 == 0o006 => DoctorCheck::new(
            Level::Pass,
            "tun device",
            format!("{TUN_DEVICE} is open to the VMM (mode {:04o})", m & 0o7777),
        ),
        Ok(m) => DoctorCheck::new(
            Level::Fail,
            "tun device",
            format!(
                "{TUN_DEVICE} has mode {:04o}: the VMM, which runs as the owner, cannot attach to \
                 its tap; make it 0666 as udev does by default (chmod 0666 {TUN_DEVICE})",
                m & 0o7777
            ),
        ),
        Err(e) => DoctorCheck::new(
            Level::Fail,
            "tun device",
            format!("{TUN_DEVICE}: {e}: VMs cannot get a network (is the tun module available?)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::{Path, PathBuf};

    use super::*;

    fn level(c: &DoctorCheck) -> Level {
        c.level()
    }

    #[test]
    fn tun_device() {
        assert_eq!(level(&tun_check(Ok(0o20666))), Level::Pass);
        let c = tun_check(Ok(0o20600));
        assert_eq!(level(&c), Level::Fail);
        assert!(c.detail.contains("mode 0600"), "{c}");
        assert_eq!(
            level(&tun_check(Err(std::io::ErrorKind::NotFound.into()))),
            Level::Fail
        );
    }

    #[test]
    fn config_and_backend() {
        let p = Path::new("/nonexistent/config.toml");
        let c = config_check(p, &Ok(VmConfig::default()));
        assert_eq!(level(&c), Level::Pass);
        assert!(c.detail.contains("defaults"), "{c}");
        assert!(c.detail.contains("172.30.0.0/24"), "{c}");
        let c = config_check(p, &Err("x: network.subnet = \"1\" is bad".into()));
        assert_eq!(level(&c), Level::Fail);
        assert!(c.detail.contains("network.subnet"), "{c}");

        let tcg = Accelerator::Tcg {
            why: "no vmx".into(),
        };
        let kvm = Accelerator::Kvm {
            cpu_flag: "svm".into(),
        };
        let q = vmm::select(
            vmm::BackendChoice::Auto,
            None,
            Some(PathBuf::from("/usr/bin/qemu-system-x86_64")),
            &tcg,
        );
        let c = backend_check(&q, &tcg);
        assert_eq!(level(&c), Level::Pass);
        assert!(
            c.detail.starts_with("qemu at /usr/bin/qemu-system-x86_64"),
            "{c}"
        );
        let none = vmm::select(vmm::BackendChoice::Auto, None, None, &tcg);
        assert_eq!(level(&backend_check(&none, &tcg)), Level::Fail);
        let fc_path = Some(PathBuf::from("/usr/local/bin/firecracker"));
        let fc = vmm::select(vmm::BackendChoice::Auto, fc_path.clone(), None, &kvm);
        assert_eq!(level(&backend_check(&fc, &kvm)), Level::Pass);
        let fc = vmm::select(vmm::BackendChoice::Auto, fc_path, None, &tcg);
        let c = backend_check(&fc, &tcg);
        assert_eq!(level(&c), Level::Fail);
        assert!(c.detail.contains("needs KVM"), "{c}");

        assert_eq!(level(&accelerator_check(&kvm)), Level::Pass);
        let c = accelerator_check(&tcg);
        assert_eq!(level(&c), Level::Warn);
        assert!(c.detail.contains("no vmx"), "{c}");
    }

    #[test]
    fn network() {
        let net = VmConfig::default().network;
        let bridge = Link {
            kind: "bridge".into(),
            master: None,
            ipv4: vec![(Ipv4Addr::new(172, 30, 0, 1), 24)],
            up: true,
            tap_user: None,
            ipv6_off: true,
            isolated: None,
        };
        let c = network_check(&net, Ok(Some(bridge.clone())));
        assert_eq!(level(&c), Level::Pass);
        let ipv6_on = Link {
            ipv6_off: false,
            ..bridge.clone()
        };
        let c = network_check(&net, Ok(Some(ipv6_on)));
        assert_eq!(level(&c), Level::Warn);
        assert!(c.detail.contains("IPv6 is on"), "{c}");
        let c = network_check(&net, Ok(None));
        assert_eq!(level(&c), Level::Pass);
        assert!(
            c.detail.contains("will be created on first VM start"),
            "{c}"
        );
        let mut other = bridge.clone();
        other.ipv4 = vec![(Ipv4Addr::new(10, 1, 0, 1), 16)];
        let c = network_check(&net, Ok(Some(other)));
        assert_eq!(level(&c), Level::Warn);
        assert!(c.detail.contains("10.1.0.1/16"), "{c}");
        let mut tap = bridge;
        tap.kind = "tun".into();
        assert_eq!(level(&network_check(&net, Ok(Some(tap)))), Level::Fail);
        let c = network_check(&net, Err(NetError::MissingIp));
        assert_eq!(level(&c), Level::Fail);
        assert!(c.detail.contains("iproute2"), "{c}");
    }
}
