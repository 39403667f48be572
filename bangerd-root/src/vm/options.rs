//! What a caller may ask of `StartVmm`, checked before anything is touched: the VM id, the
//! options (read from the bus by [`banger_api::options::StartVmmOptions`]), and the names
//! derived from the id (unit, tap).
//!
//! Everything here is pure; a value that passes is safe to put in a path, an `ip` argument and a
//! unit name.

use banger_api::ids::{IdError, ImageName, VmId};
use banger_api::options::{OptionError, StartVmmOptions};

/// Why `StartVmm`'s arguments were refused. Nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadStart {
    /// The options dictionary itself (an unknown key, a wrong type, no image).
    #[error(transparent)]
    Options(#[from] OptionError),
    /// Not an image name.
    #[error("{0}; nothing was done")]
    ImageName(IdError),
    /// Not a MAC address banger hands out.
    #[error(
        "mac {0:?} is not of the form 52:54:00:xx:xx:xx (lowercase hexadecimal); nothing was done"
    )]
    Mac(String),
    /// More CPUs than allowed, or none.
    #[error("cpus = {cpus} is out of range: 1 to {max} on this host; nothing was done")]
    Cpus {
        /// Asked for.
        cpus: u32,
        /// The most allowed here.
        max: u32,
    },
    /// Too little or too much memory.
    #[error(
        "memory_mib = {mib} is out of range: {MIN_MEMORY_MIB} to {max} on this host; nothing \
         was done"
    )]
    Memory {
        /// Asked for.
        mib: u32,
        /// The most allowed here.
        max: u32,
    },
}

/// Reads a VM id sent over the bus (the rule is [`VmId::parse`]).
pub fn parse_id(id: &str) -> Result<VmId, String> {
    VmId::parse(id).map_err(|e| format!("{e}; nothing was done"))
}

/// The VM's systemd unit.
pub fn unit_name(id: &str) -> String {
    banger_api::names::vm_unit_name(id)
}

/// The VM's tap device: `bt-<id>`, 15 characters, the longest name Linux allows.
pub fn tap_name(id: &str) -> String {
    format!("{}{id}", super::config::TAP_PREFIX)
}

/// Checks an image name (the rule is [`ImageName::parse`]).
pub fn check_image_name(name: &str) -> Result<(), BadStart> {
    ImageName::parse(name)
        .map(drop)
        .map_err(BadStart::ImageName)
}

/// Checks a MAC address: `52:54:00:xx:xx:xx` in lowercase hexadecimal.
pub fn check_mac(mac: &str) -> Result<(), BadStart> {
    let ok = mac.len() == 17
        && mac.starts_with("52:54:00:")
        && mac.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                matches!(b, b'0'..=b'9' | b'a'..=b'f')
            }
        });
    if ok {
        Ok(())
    } else {
        Err(BadStart::Mac(mac.into()))
    }
}

/// The MAC address used when the caller names none: `52:54:00` and the id's last six digits.
pub fn default_mac(id: &str) -> String {
    let t = &id[6..12];
    format!("52:54:00:{}:{}:{}", &t[0..2], &t[2..4], &t[4..6])
}

/// What the host can give one VM at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Online CPUs.
    pub cpus: u32,
    /// Physical memory in MiB.
    pub memory_mib: u32,
}

impl HostLimits {
    /// Reads the live host's CPUs and memory.
    pub fn detect() -> Self {
        let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| count_cpu_list(&s))
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.get() as u32)
            })
            .unwrap_or(1);
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| mem_total_mib(&s))
            .unwrap_or(u32::MAX);
        HostLimits { cpus, memory_mib }
    }
}

/// Counts a kernel CPU list such as `0-3,6,8-9`.
fn count_cpu_list(s: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

/// `MemTotal` from `/proc/meminfo`, in MiB.
fn mem_total_mib(meminfo: &str) -> Option<u32> {
    let kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(u32::try_from(kib / 1024).unwrap_or(u32::MAX))
}

/// The options of `StartVmm`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// The image under `images/`.
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

/// Default virtual CPUs.
pub const DEFAULT_CPUS: u32 = 1;
/// Default memory in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Smallest memory a VM may have, in MiB.
pub const MIN_MEMORY_MIB: u32 = 64;
/// Most virtual CPUs a VM may have.
pub const MAX_CPUS: u32 = 32;

impl StartOptions {
    /// Checks what the daemon asked for VM `id` (already checked), filling in the defaults:
    /// values out of range or malformed are refused, naming them.
    pub fn check(id: &str, asked: StartVmmOptions, limits: HostLimits) -> Result<Self, BadStart> {
        let o = StartOptions {
            image: asked.image,
            rootfs: asked.rootfs,
            cpus: asked.cpus.unwrap_or(DEFAULT_CPUS),
            memory_mib: asked.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
            mac: asked.mac.unwrap_or_else(|| default_mac(id)),
        };
        check_image_name(&o.image)?;
        check_mac(&o.mac)?;
        let max_cpus = MAX_CPUS.min(limits.cpus.max(1));
        if !(1..=max_cpus).contains(&o.cpus) {
            return Err(BadStart::Cpus {
                cpus: o.cpus,
                max: max_cpus,
            });
        }
        if o.memory_mib < MIN_MEMORY_MIB || o.memory_mib > limits.memory_mib {
            return Err(BadStart::Memory {
                mib: o.memory_mib,
                max: limits.memory_mib,
            });
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use zbus::{OwnedVariant, Variant};

    use super::*;

    const ID: &str = "0123456789ab";
    const LIMITS: HostLimits = HostLimits {
        cpus: 2,
        memory_mib: 2048,
    };

    /// What the helper does with a received dictionary.
    fn parse(
        id: &str,
        map: &HashMap<String, OwnedVariant>,
        limits: HostLimits,
    ) -> Result<StartOptions, BadStart> {
        StartOptions::check(id, StartVmmOptions::from_dict(map)?, limits)
    }

    fn opts(pairs: &[(&str, Variant<'static>)]) -> HashMap<String, OwnedVariant> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v.clone()).unwrap()))
            .collect()
    }

    #[test]
    fn ids_and_names() {
        assert_eq!(parse_id(ID).unwrap().as_str(), ID);
        for bad in [
            "",
            "0123456789a",
            "0123456789abc",
            "0123456789AB",
            "../../etc/x",
            "g123456789ab",
        ] {
            assert!(parse_id(bad).unwrap_err().contains("VM id"), "{bad}");
        }
        assert_eq!(unit_name(ID), "banger-vm-0123456789ab.service");
        assert_eq!(tap_name(ID), "bt-0123456789ab");
        assert_eq!(tap_name(ID).len(), 15, "IFNAMSIZ - 1");
        assert_eq!(default_mac(ID), "52:54:00:67:89:ab");
        check_mac(&default_mac(ID)).unwrap();
    }

    #[test]
    fn image_names_and_macs() {
        for ok in ["debian", "deb-12.cloud_1", "0", &"a".repeat(63)] {
            check_image_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", ".hidden", "-x", "Deb", "a/b", "..", &"a".repeat(64)] {
            assert!(check_image_name(bad).is_err(), "{bad}");
        }
        for bad in [
            "52:54:00:AB:cd:ef",
            "02:54:00:ab:cd:ef",
            "52:54:00:ab:cd",
            "52-54-00-ab-cd-ef",
        ] {
            assert!(check_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_with_defaults_and_all_set() {
        let o = parse(ID, &opts(&[("image", "deb".into())]), LIMITS).unwrap();
        assert_eq!(
            o,
            StartOptions {
                image: "deb".into(),
                rootfs: false,
                cpus: DEFAULT_CPUS,
                memory_mib: DEFAULT_MEMORY_MIB,
                mac: "52:54:00:67:89:ab".into(),
            }
        );
        let o = parse(
            ID,
            &opts(&[
                ("image", "deb".into()),
                ("rootfs", true.into()),
                ("cpus", 2u32.into()),
                ("memory_mib", 2048u32.into()),
                ("mac", "52:54:00:00:00:01".into()),
            ]),
            LIMITS,
        )
        .unwrap();
        assert!(o.rootfs);
        assert_eq!(
            (o.cpus, o.memory_mib, o.mac.as_str()),
            (2, 2048, "52:54:00:00:00:01")
        );
    }

    #[test]
    fn bad_options_are_named() {
        for (pairs, want) in [
            (vec![], "\"image\" is required"),
            (
                vec![("image", "deb".into()), ("disk", "x".into())],
                "unknown option \"disk\"",
            ),
            (
                vec![("image", 3u32.into())],
                "option \"image\" has the wrong type u",
            ),
            (
                vec![("image", "deb".into()), ("cpus", 2i32.into())],
                "\"cpus\" has the wrong type i",
            ),
            (
                vec![("image", "deb".into()), ("rootfs", "yes".into())],
                "\"rootfs\" has the wrong",
            ),
            (
                vec![("image", "../etc".into())],
                "image name \"../etc\" contains '/'",
            ),
            (
                vec![("image", "deb".into()), ("cpus", 0u32.into())],
                "cpus = 0 is out of range",
            ),
            (
                vec![("image", "deb".into()), ("cpus", 3u32.into())],
                "1 to 2 on this host",
            ),
            (
                vec![("image", "deb".into()), ("memory_mib", 63u32.into())],
                "memory_mib = 63",
            ),
            (
                vec![("image", "deb".into()), ("memory_mib", 4096u32.into())],
                "64 to 2048",
            ),
            (
                vec![("image", "deb".into()), ("mac", "52:54:00:1:2:3".into())],
                "mac \"52:54",
            ),
        ] {
            let e = parse(ID, &opts(&pairs), LIMITS).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(e.contains("nothing was done"), "{e}");
        }
        let big = HostLimits {
            cpus: 64,
            memory_mib: 1 << 20,
        };
        let e = parse(
            ID,
            &opts(&[("image", "d".into()), ("cpus", 33u32.into())]),
            big,
        )
        .unwrap_err();
        assert_eq!(e, BadStart::Cpus { cpus: 33, max: 32 });
    }

    #[test]
    fn host_facts() {
        assert_eq!(count_cpu_list("0-3,6,8-9\n"), Some(7));
        assert_eq!(count_cpu_list("0\n"), Some(1));
        assert_eq!(count_cpu_list("x"), None);
        assert_eq!(mem_total_mib("MemTotal:       25165824 kB\n"), Some(24576));
        let live = HostLimits::detect();
        assert!(live.cpus >= 1 && live.memory_mib >= 64, "{live:?}");
    }
}
