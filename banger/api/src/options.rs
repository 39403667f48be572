//! The `a{sv}` options of `Root1.Update` and `Root1.StartVmm`: each key spelled once, and one
//! typed struct per method that the client turns into the dictionary ([`UpdateOptions::to_dict`])
//! and the service reads back ([`UpdateOptions::from_dict`]). Reading refuses an unknown key,
//! a wrong type or a missing required key with an [`OptionError`] that names it; what the
//! values mean (a version, a range of CPUs) is the service's to check.

use std::collections::HashMap;

use zbus::zvariant::{OwnedVariant, Variant};

use crate::wire::BackendKind;

/// Why an options dictionary was refused. Nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// A key this method does not take.
    #[error("unknown option {key:?} (known: {known}); nothing was done")]
    Unknown {
        /// The key.
        key: String,
        /// The keys the method takes, comma-separated.
        known: String,
    },
    /// A key with a value of another type.
    #[error("option {key:?} has the wrong type {got} (want {want}); nothing was done")]
    WrongType {
        /// The key.
        key: &'static str,
        /// The signature of the value sent.
        got: String,
        /// The signature the key takes.
        want: &'static str,
    },
    /// A required key that is missing.
    #[error("option {key:?} is required; nothing was done")]
    Missing {
        /// The key.
        key: &'static str,
    },
}

/// A received options dictionary, read key by key.
struct Dict<'a>(&'a HashMap<String, OwnedVariant>);

impl<'a> Dict<'a> {
    /// The dictionary, once every key in it is one of `known` (the first unknown one in
    /// sorted order is named).
    fn new(
        map: &'a HashMap<String, OwnedVariant>,
        known: &[&'static str],
    ) -> Result<Self, OptionError> {
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            Some(key) => Err(OptionError::Unknown {
                key: key.to_string(),
                known: known.join(", "),
            }),
            None => Ok(Dict(map)),
        }
    }

    /// The value of `key` (signature `want`), if present.
    fn get<T>(&self, key: &'static str, want: &'static str) -> Result<Option<T>, OptionError>
    where
        T: TryFrom<OwnedVariant>,
    {
        let Some(v) = self.0.get(key) else {
            return Ok(None);
        };
        let wrong = || OptionError::WrongType {
            key,
            got: v.value_signature().to_string(),
            want,
        };
        let value = v.try_clone().map_err(|_| wrong())?;
        T::try_from(value).map(Some).map_err(|_| wrong())
    }
}

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

/// The keys of `Root1.StartVmmWithInfo`'s reply.
pub mod vmm_info {
    /// `s`: the VM's unit.
    pub const UNIT: &str = "unit";
    /// `s`: the back end that runs it (a [`crate::wire::BackendKind`]).
    pub const BACKEND: &str = "backend";
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

    /// Reads the options a client sent.
    pub fn from_dict(map: &HashMap<String, OwnedVariant>) -> Result<Self, OptionError> {
        let d = Dict::new(map, &update::ALL)?;
        Ok(UpdateOptions {
            version: d.get(update::VERSION, "s")?,
            dry_run: d.get(update::DRY_RUN, "b")?.unwrap_or(false),
            force: d.get(update::FORCE, "b")?.unwrap_or(false),
            allow_downgrade: d.get(update::ALLOW_DOWNGRADE, "b")?.unwrap_or(false),
        })
    }
}

/// What the owner's daemon asks of `Root1.StartVmm`; `None` leaves the helper's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartVmmOptions {
    /// The image under the daemon's `images/` (required).
    pub image: String,
    /// Attach the VM's own `rootfs.img`.
    pub rootfs: bool,
    /// Virtual CPUs.
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub memory_mib: Option<u32>,
    /// The network card's MAC address.
    pub mac: Option<String>,
}

impl StartVmmOptions {
    /// The `a{sv}` to send.
    pub fn to_dict(&self) -> HashMap<&'static str, Variant<'static>> {
        let mut d = HashMap::from([
            (start_vmm::IMAGE, Variant::from(self.image.clone())),
            (start_vmm::ROOTFS, Variant::from(self.rootfs)),
        ]);
        if let Some(cpus) = self.cpus {
            d.insert(start_vmm::CPUS, Variant::from(cpus));
        }
        if let Some(mib) = self.memory_mib {
            d.insert(start_vmm::MEMORY_MIB, Variant::from(mib));
        }
        if let Some(mac) = &self.mac {
            d.insert(start_vmm::MAC, Variant::from(mac.clone()));
        }
        d
    }

    /// Reads the options the daemon sent.
    pub fn from_dict(map: &HashMap<String, OwnedVariant>) -> Result<Self, OptionError> {
        let d = Dict::new(map, &start_vmm::ALL)?;
        Ok(StartVmmOptions {
            image: d.get(start_vmm::IMAGE, "s")?.ok_or(OptionError::Missing {
                key: start_vmm::IMAGE,
            })?,
            rootfs: d.get(start_vmm::ROOTFS, "b")?.unwrap_or(false),
            cpus: d.get(start_vmm::CPUS, "u")?,
            memory_mib: d.get(start_vmm::MEMORY_MIB, "u")?,
            mac: d.get(start_vmm::MAC, "s")?,
        })
    }
}

/// What `Root1.StartVmmWithInfo` answers about the VM it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmStarted {
    /// The VM's unit.
    pub unit: String,
    /// The back end that runs it; `None` for a word this client does not know.
    pub backend: Option<BackendKind>,
}

impl VmmStarted {
    /// The `a{sv}` to answer.
    pub fn to_dict(&self) -> HashMap<String, OwnedVariant> {
        let mut d = HashMap::from([(
            vmm_info::UNIT.to_string(),
            OwnedVariant::from(zbus::Str::from(self.unit.clone())),
        )]);
        if let Some(b) = self.backend {
            d.insert(
                vmm_info::BACKEND.to_string(),
                OwnedVariant::from(zbus::Str::from(b.as_str())),
            );
        }
        d
    }

    /// Reads the answer. Keys a newer helper adds are ignored; the unit is required.
    pub fn from_dict(map: &HashMap<String, OwnedVariant>) -> Result<Self, OptionError> {
        let d = Dict(map);
        let backend: Option<String> = d.get(vmm_info::BACKEND, "s")?;
        Ok(VmmStarted {
            unit: d.get(vmm_info::UNIT, "s")?.ok_or(OptionError::Missing {
                key: vmm_info::UNIT,
            })?,
            backend: backend.as_deref().and_then(BackendKind::parse),
        })
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
            cpus: Some(2),
            memory_mib: Some(512),
            mac: Some("52:54:00:00:00:01".into()),
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

    /// What a client sends, as the service receives it.
    fn received(d: HashMap<&'static str, Variant<'static>>) -> HashMap<String, OwnedVariant> {
        d.into_iter()
            .map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v).unwrap()))
            .collect()
    }

    #[test]
    fn what_is_sent_reads_back_the_same() {
        for o in [
            UpdateOptions::default(),
            UpdateOptions {
                version: Some("0.3.1".into()),
                dry_run: true,
                force: true,
                allow_downgrade: true,
            },
        ] {
            assert_eq!(UpdateOptions::from_dict(&received(o.to_dict())), Ok(o));
        }
        for o in [
            StartVmmOptions {
                image: "deb".into(),
                ..StartVmmOptions::default()
            },
            StartVmmOptions {
                image: "deb".into(),
                rootfs: true,
                cpus: Some(3),
                memory_mib: Some(1024),
                mac: Some("52:54:00:00:00:02".into()),
            },
        ] {
            assert_eq!(StartVmmOptions::from_dict(&received(o.to_dict())), Ok(o));
        }
    }

    #[test]
    fn a_bad_dictionary_is_refused_naming_the_key() {
        let bad =
            |pairs: Vec<(&'static str, Variant<'static>)>| received(pairs.into_iter().collect());
        assert_eq!(
            UpdateOptions::from_dict(&bad(vec![("mirror", "x".into()), ("b", "y".into())]))
                .unwrap_err()
                .to_string(),
            "unknown option \"b\" (known: version, dry_run, force, allow_downgrade); nothing was \
             done"
        );
        assert_eq!(
            UpdateOptions::from_dict(&bad(vec![("dry_run", "yes".into())])).unwrap_err(),
            OptionError::WrongType {
                key: update::DRY_RUN,
                got: "s".into(),
                want: "b"
            }
        );
        assert_eq!(
            StartVmmOptions::from_dict(&bad(vec![("cpus", 2u32.into())])).unwrap_err(),
            OptionError::Missing {
                key: start_vmm::IMAGE
            }
        );
        assert_eq!(
            StartVmmOptions::from_dict(&bad(vec![("image", "d".into()), ("cpus", 2i32.into())]))
                .unwrap_err()
                .to_string(),
            "option \"cpus\" has the wrong type i (want u); nothing was done"
        );
    }

    #[test]
    fn a_started_vmm_reads_back_and_tolerates_new_keys() {
        let started = VmmStarted {
            unit: "banger-vm-0123456789ab.service".into(),
            backend: Some(BackendKind::Firecracker),
        };
        let mut d = started.to_dict();
        assert_eq!(VmmStarted::from_dict(&d), Ok(started));
        d.insert(
            "pid".into(),
            OwnedVariant::try_from(Variant::from(7u32)).unwrap(),
        );
        d.insert(
            vmm_info::BACKEND.into(),
            OwnedVariant::try_from(Variant::from("cloud-hypervisor")).unwrap(),
        );
        assert_eq!(VmmStarted::from_dict(&d).unwrap().backend, None);
        d.remove(vmm_info::UNIT);
        assert!(VmmStarted::from_dict(&d).is_err());
    }
}
