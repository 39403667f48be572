//! The `a{sv}` options of `Root1.Update` and `Root1.StartVmm`: each key spelled once, and a
//! typed struct a client fills in and turns into the dictionary. The services parse the
//! dictionary themselves, matching these keys, so an unknown key or a wrong type is refused
//! with a message that names it.

use std::collections::HashMap;

use zbus::zvariant::Variant;

/// The keys of `Root1.Update`'s options.
pub mod update {
    /// `s`: the version to install instead of the latest.
    pub const VERSION: &str = "version";
    /// `b`: download, verify and stage only.
    pub const DRY_RUN: &str = "dry_run";
    /// `b`: reinstall even when the version is the installed one.
    pub const FORCE: &str = "force";
    /// `b`: allow installing an older version.
    pub const ALLOW_DOWNGRADE: &str = "allow_downgrade";
    /// Every key, in the order messages list them.
    pub const ALL: [&str; 4] = [VERSION, DRY_RUN, FORCE, ALLOW_DOWNGRADE];
}

/// The keys of `Root1.StartVmm`'s options.
pub mod start_vmm {
    /// `s`, required: the image under the daemon's `images/`.
    pub const IMAGE: &str = "image";
    /// `b`: attach the VM's own `rootfs.img`.
    pub const ROOTFS: &str = "rootfs";
    /// `u`: virtual CPUs.
    pub const CPUS: &str = "cpus";
    /// `u`: memory in MiB.
    pub const MEMORY_MIB: &str = "memory_mib";
    /// `s`: the network card's MAC address.
    pub const MAC: &str = "mac";
    /// Every key, in the order messages list them.
    pub const ALL: [&str; 5] = [IMAGE, ROOTFS, CPUS, MEMORY_MIB, MAC];
}

/// What a client asks of `Root1.Update`; `None` and `false` leave a key out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// Install this version instead of the latest.
    pub version: Option<String>,
    /// Download, verify and stage only.
    pub dry_run: bool,
    /// Reinstall the installed version.
    pub force: bool,
    /// Allow an older version.
    pub allow_downgrade: bool,
}

impl UpdateOptions {
    /// The `a{sv}` to send.
    pub fn to_dict(&self) -> HashMap<&'static str, Variant<'static>> {
        let mut d = HashMap::new();
        if let Some(v) = &self.version {
            d.insert(update::VERSION, Variant::from(v.clone()));
        }
        for (key, on) in [
            (update::DRY_RUN, self.dry_run),
            (update::FORCE, self.force),
            (update::ALLOW_DOWNGRADE, self.allow_downgrade),
        ] {
            if on {
                d.insert(key, Variant::from(true));
            }
        }
        d
    }
}

/// What the owner's daemon asks of `Root1.StartVmm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartVmmOptions {
    /// The image under the daemon's `images/`.
    pub image: String,
    /// Attach the VM's own `rootfs.img`.
    pub rootfs: bool,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// The network card's MAC address.
    pub mac: String,
}

impl StartVmmOptions {
    /// The `a{sv}` to send.
    pub fn to_dict(&self) -> HashMap<&'static str, Variant<'static>> {
        HashMap::from([
            (start_vmm::IMAGE, Variant::from(self.image.clone())),
            (start_vmm::ROOTFS, Variant::from(self.rootfs)),
            (start_vmm::CPUS, Variant::from(self.cpus)),
            (start_vmm::MEMORY_MIB, Variant::from(self.memory_mib)),
            (start_vmm::MAC, Variant::from(self.mac.clone())),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_vmm_sends_every_key_with_its_type() {
        let d = StartVmmOptions {
            image: "deb".into(),
            rootfs: true,
            cpus: 2,
            memory_mib: 512,
            mac: "52:54:00:00:00:01".into(),
        }
        .to_dict();
        let mut keys: Vec<_> = d.keys().copied().collect();
        keys.sort();
        let mut all = start_vmm::ALL.to_vec();
        all.sort();
        assert_eq!(keys, all);
        assert_eq!(d[start_vmm::CPUS], Variant::from(2u32));
        assert_eq!(d[start_vmm::IMAGE].value_signature().to_string(), "s");
    }

    #[test]
    fn update_leaves_out_what_is_not_asked() {
        assert!(UpdateOptions::default().to_dict().is_empty());
        let d = UpdateOptions {
            version: Some("0.2.0".into()),
            dry_run: true,
            ..UpdateOptions::default()
        }
        .to_dict();
        assert_eq!(d.len(), 2);
        assert_eq!(d[update::VERSION], Variant::from("0.2.0"));
        assert_eq!(d[update::DRY_RUN], Variant::from(true));
    }
}
