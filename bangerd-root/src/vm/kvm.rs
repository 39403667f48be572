//! Whether a VMM can open `/dev/kvm`. With KVM, a VM's unit runs the VMM as the owner with the
//! supplementary group `kvm` (the group udev gives `/dev/kvm`), so two things must hold: the
//! group exists (else systemd fails the unit at its GROUP step, before the VMM runs), and
//! `/dev/kvm` is open to it (else the VMM fails to open it with EACCES). Each failure says
//! which one it is and what to run.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// The group a VM's unit gets to open `/dev/kvm`.
pub const KVM_GROUP: &str = "kvm";
/// The KVM device.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// Where to look, and the `kvm` group's id as found (`None`: no such group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmAccess {
    /// The device.
    pub device: PathBuf,
    /// The `kvm` group's id, if the group exists.
    pub group: Option<u32>,
}

impl KvmAccess {
    /// This host's device and `kvm` group; a failed group lookup counts as no group.
    pub fn detect() -> Self {
        KvmAccess {
            device: PathBuf::from(KVM_DEVICE),
            group: banger_host::users::group_id(KVM_GROUP).ok().flatten(),
        }
    }

    /// Whether the VMM, running as the owner with group `kvm`, can open the device: the reason
    /// it can (for `doctor`), or what is wrong and what to do.
    pub fn check(&self) -> Result<String, String> {
        let dev = self.device.display();
        let Some(gid) = self.group else {
            return Err(format!(
                "there is no {KVM_GROUP} group: a VM's unit runs the VMM with \
                 SupplementaryGroups={KVM_GROUP} to open {dev}, so systemd would fail it (at its \
                 GROUP step) before the VMM ran; create the group and give {dev} to it, as udev \
                 does: groupadd --system {KVM_GROUP} && chgrp {KVM_GROUP} {dev} && chmod 0660 {dev}"
            ));
        };
        let md = std::fs::metadata(&self.device)
            .map_err(|e| format!("{dev}: {e}: KVM cannot be used"))?;
        if !md.file_type().is_char_device() {
            return Err(format!(
                "{dev} is not a character device: KVM cannot be used"
            ));
        }
        let mode = md.mode() & 0o7777;
        if mode & 0o006 == 0o006 {
            return Ok(format!("{dev} is open to everyone (mode {mode:04o})"));
        }
        if md.gid() == gid && mode & 0o060 == 0o060 {
            return Ok(format!(
                "{dev} is open to the {KVM_GROUP} group (gid {gid}, mode {mode:04o}), which VM units get"
            ));
        }
        Err(format!(
            "{dev} (mode {mode:04o}, group id {}) is not open to the {KVM_GROUP} group (gid {gid}) \
             the VMM runs with, so the VMM would fail to open it; give it to the group, as udev \
             does: chgrp {KVM_GROUP} {dev} && chmod 0660 {dev}",
            md.gid()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_told_apart() {
        // /dev/null: a character device, mode 0666, group root.
        let null = |group| KvmAccess {
            device: "/dev/null".into(),
            group,
        };
        assert!(
            null(Some(4242))
                .check()
                .unwrap()
                .contains("open to everyone")
        );
        let e = null(None).check().unwrap_err();
        assert!(e.starts_with("there is no kvm group"), "{e}");
        assert!(e.contains("groupadd --system kvm"), "{e}");
        let e = KvmAccess {
            device: "/nonexistent/kvm".into(),
            group: Some(0),
        }
        .check()
        .unwrap_err();
        assert!(e.contains("No such file"), "{e}");
        let e = KvmAccess {
            device: "/etc/hostname".into(),
            group: Some(0),
        }
        .check()
        .unwrap_err();
        assert!(e.contains("not a character device"), "{e}");
        if banger_host::users::current_uid() == 0 {
            // A device like a host's /dev/kvm before udev gave it to the group.
            let t = tempfile::tempdir().unwrap();
            let kvm = t.path().join("kvm");
            let ok = std::process::Command::new("mknod")
                .args(["-m", "0600"])
                .arg(&kvm)
                .args(["c", "10", "232"])
                .status()
                .unwrap();
            assert!(ok.success());
            let e = KvmAccess {
                device: kvm.clone(),
                group: Some(4242),
            }
            .check()
            .unwrap_err();
            assert!(
                e.contains("mode 0600, group id 0) is not open to the kvm group (gid 4242)"),
                "{e}"
            );
            assert!(e.contains("chgrp kvm"), "{e}");
            std::os::unix::fs::chown(&kvm, None, Some(4242)).unwrap();
            std::fs::set_permissions(&kvm, std::os::unix::fs::PermissionsExt::from_mode(0o660))
                .unwrap();
            let ok = KvmAccess {
                device: kvm,
                group: Some(4242),
            }
            .check()
            .unwrap();
            assert!(ok.contains("open to the kvm group (gid 4242"), "{ok}");
        }
    }
}
