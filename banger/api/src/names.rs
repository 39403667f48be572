//! Bus names, object paths, interfaces, unit names and polkit action ids: the vocabulary shared by
//! every banger program and by the checked-in files under `dbus/`, `polkit/` and `systemd/`.

/// Well-known name, interface and object of the root helper.
pub const ROOT1_NAME: &str = "org.banger.Root1";
/// Object path of the root helper's main object.
pub const ROOT1_PATH: &str = "/org/banger/Root1";
/// Well-known name and interface of the owner daemon.
pub const DAEMON1_NAME: &str = "org.banger.Daemon1";
/// Object path of the owner daemon's main object.
pub const DAEMON1_PATH: &str = "/org/banger/Daemon1";
/// Interface of an update job object.
pub const JOB_INTERFACE: &str = "org.banger.Root1.Job";
/// Every update job object lives under this path (`<this>/<id>`).
pub const JOB_PATH_NAMESPACE: &str = "/org/banger/Root1/job";
/// The job's signal when it ends: `Finished(b success, s result, s error)`.
pub const JOB_FINISHED_SIGNAL: &str = "Finished";

/// The object path of update job `id`.
pub fn job_path(id: u32) -> String {
    format!("{JOB_PATH_NAMESPACE}/{id}")
}
/// Interface of a job object of the owner's daemon (an image pull).
pub const DAEMON_JOB_INTERFACE: &str = "org.banger.Daemon1.Job";
/// Every job object of the owner's daemon lives under this path (`<this>/<id>`).
pub const DAEMON_JOB_PATH_NAMESPACE: &str = "/org/banger/Daemon1/job";

/// The object path of the owner daemon's job `id`.
pub fn daemon_job_path(id: u32) -> String {
    format!("{DAEMON_JOB_PATH_NAMESPACE}/{id}")
}
/// Interface of a VM object of the owner's daemon.
pub const DAEMON_VM_INTERFACE: &str = "org.banger.Daemon1.Vm";
/// Every VM object lives under this path (`<this>/<vm id>`).
pub const DAEMON_VM_PATH_NAMESPACE: &str = "/org/banger/Daemon1/vm";
/// Interface of an image object of the owner's daemon.
pub const DAEMON_IMAGE_INTERFACE: &str = "org.banger.Daemon1.Image";
/// Every image object lives under this path (`<this>/<escaped image name>`).
pub const DAEMON_IMAGE_PATH_NAMESPACE: &str = "/org/banger/Daemon1/image";

/// The object path of VM `id` (12 hex digits, a valid path element as it is).
pub fn daemon_vm_path(id: &str) -> String {
    format!("{DAEMON_VM_PATH_NAMESPACE}/{}", escape_path_label(id))
}

/// The object path of image `name`, escaped as systemd escapes unit names in paths
/// (`debian-12` is `debian_2d12`).
pub fn daemon_image_path(name: &str) -> String {
    format!("{DAEMON_IMAGE_PATH_NAMESPACE}/{}", escape_path_label(name))
}

/// A name as one element of an object path, the way systemd spells unit names there: every
/// byte but `[A-Za-z0-9]` as `_xx` (lowercase hex).
pub fn escape_path_label(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect()
}

/// The name [`escape_path_label`] made `label` from, if it made it.
pub fn unescape_path_label(label: &str) -> Option<String> {
    let b = label.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' {
            let hex = label.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if b[i].is_ascii_alphanumeric() {
            out.push(b[i]);
            i += 1;
        } else {
            return None;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (escape_path_label(&s) == label).then_some(s)
}

/// The name of the polkit policy file (under `/usr/share/polkit-1/actions`).
pub const POLKIT_POLICY: &str = "org.banger.policy";
/// Prefix of every banger D-Bus error name.
pub const ERROR_PREFIX: &str = "org.banger.Error";
/// Major version of the D-Bus API (the `1` in `Root1`); additive changes keep it.
pub const API_VERSION: u32 = 1;

/// What `Job.Error` and the `Finished` signal say about a failed job to anyone but root, the
/// install owner and the job's initiator: the detail can name the owner's VMs and the reasons
/// given for holding off updates, which are nobody else's business.
pub const JOB_ERROR_WITHHELD: &str = "the reason is shown only to root, to the owner of this \
     banger install and to the user who started the job (as Job.Error)";

/// systemd unit of the root helper.
pub const ROOT_UNIT: &str = "bangerd-root.service";
/// The unit that rolls back an update whose new helper cannot start (`OnFailure=` of the
/// helper's unit).
pub const RECOVER_UNIT: &str = "bangerd-root-recover.service";
/// The unit that, at boot, finishes an update a crash or power loss interrupted (enabled).
pub const RESUME_UNIT: &str = "bangerd-root-resume.service";
/// systemd unit of the owner daemon.
pub const DAEMON_UNIT: &str = "bangerd.service";
/// systemd slice that holds every VM unit.
pub const VM_SLICE: &str = "banger.slice";

/// VM unit names: `banger-vm-<id>.service`.
pub const VM_UNIT_PATTERN: &str = "banger-vm-*.service";
/// Prefix of every VM unit's name.
pub const VM_UNIT_PREFIX: &str = "banger-vm-";

/// The systemd unit of VM `id`: `banger-vm-<id>.service`.
pub fn vm_unit_name(id: &str) -> String {
    format!("{VM_UNIT_PREFIX}{id}.service")
}

/// The DNS domain VMs are named under: `<vm>.banger.internal`. `.internal` is reserved for
/// private use and never delegated, so these names cannot collide with real ones.
pub const VM_DNS_DOMAIN: &str = "banger.internal";

/// The VM bridge unless `[network] bridge` in /etc/banger/config.toml names another.
pub const DEFAULT_BRIDGE: &str = "banger0";

/// The interface alias bangerd-root gives a bridge it created, so that uninstalling removes
/// only a bridge banger made (a bridge that already existed is adopted and left alone).
pub const BRIDGE_ALIAS: &str = "banger VM bridge";

/// polkit action ids (see `polkit/org.banger.policy`).
pub mod action {
    /// Ask whether an update is available (allowed to anyone).
    pub const UPDATE_CHECK: &str = "org.banger.update.check";
    /// Update to the latest stable release.
    pub const UPDATE: &str = "org.banger.update";
    /// Update to a chosen version.
    pub const UPDATE_PINNED: &str = "org.banger.update.pinned";
    /// Install an older version than the one installed.
    pub const UPDATE_DOWNGRADE: &str = "org.banger.update.downgrade";
    /// Cancel someone else's update.
    pub const UPDATE_CANCEL: &str = "org.banger.update.cancel";
    /// Host plumbing for VMs, for callers other than the owner's daemon.
    pub const VM_MANAGE: &str = "org.banger.vm.manage";
    /// Start, stop or restart the owner daemon.
    pub const DAEMON_MANAGE: &str = "org.banger.daemon.manage";

    /// Every action the shipped policy must define.
    pub const ALL: [&str; 7] = [
        UPDATE_CHECK,
        UPDATE,
        UPDATE_PINNED,
        UPDATE_DOWNGRADE,
        UPDATE_CANCEL,
        VM_MANAGE,
        DAEMON_MANAGE,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_path_labels_escape_and_come_back() {
        assert_eq!(
            daemon_image_path("debian-12.1_x"),
            "/org/banger/Daemon1/image/debian_2d12_2e1_5fx"
        );
        assert_eq!(
            daemon_vm_path("0123456789ab"),
            "/org/banger/Daemon1/vm/0123456789ab"
        );
        for name in ["debian-12.1_x", "a", "web1"] {
            assert_eq!(
                unescape_path_label(&escape_path_label(name)).as_deref(),
                Some(name)
            );
        }
        for bad in ["_2", "_zz", "a-b", "_41", ""] {
            assert_eq!(
                unescape_path_label(bad).filter(|s| !s.is_empty()),
                None,
                "{bad:?}"
            );
        }
    }
}
