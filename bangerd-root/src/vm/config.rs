//! The `[vm]` and `[network]` sections of the root-owned `/etc/banger/config.toml`: which VMM
//! back end to use, and the bridge and private IPv4 range VMs are connected to.
//!
//! The file is read by [`crate::config`], the one reader of it (root-owned, not writable by
//! others, unknown keys refused). Every value is checked here, and an error names the file, the
//! key and the bad value. Nothing a D-Bus caller sends reaches this module.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::vmm::BackendChoice;

use crate::config::{ConfigError, NetworkSection, VmSection, read_config_file};

/// The bridge used when the configuration names none.
pub use banger_api::names::DEFAULT_BRIDGE;
/// The range used when the configuration names none.
pub const DEFAULT_SUBNET: &str = "172.30.0.0/24";
/// Prefix of every tap device; a bridge may not use it.
pub const TAP_PREFIX: &str = "bt-";

/// A private IPv4 range in CIDR form; the host takes its first address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length, 16..=29.
    pub prefix: u8,
}

impl Subnet {
    /// Parses and checks `a.b.c.d/n`: an RFC 1918 network address with a prefix of /16 to /29.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| "is not in CIDR form (like 172.30.0.0/24)".to_string())?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("has no valid IPv4 address ({addr:?})"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("has no valid prefix length ({prefix:?})"))?;
        if !(16..=29).contains(&prefix) {
            return Err(format!(
                "has prefix /{prefix}; it must be /16 to /29 (room for the host and some VMs)"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        let bits = u32::from(network);
        if bits & !mask != 0 {
            return Err(format!(
                "is not a network address (did you mean {}/{prefix}?)",
                Ipv4Addr::from(bits & mask)
            ));
        }
        if !network.is_private() {
            return Err(
                "is not a private (RFC 1918) range: use part of 10.0.0.0/8, 172.16.0.0/12 or \
                 192.168.0.0/16"
                    .into(),
            );
        }
        Ok(Subnet { network, prefix })
    }

    /// The host's address on the bridge: the first address of the range.
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(addr) & mask == u32::from(self.network)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Checks a bridge name: 1 to 15 characters of `[a-zA-Z0-9_-]`, not starting with `-`, and not
/// using the taps' prefix `bt-`.
pub fn check_bridge_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err("must be 1 to 15 characters long (a Linux interface name)".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("may only hold letters, digits, '_' and '-'".into());
    }
    if name.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if name.starts_with(TAP_PREFIX) {
        return Err(format!(
            "must not start with {TAP_PREFIX:?} (used by VM taps)"
        ));
    }
    Ok(())
}

/// The VM network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The bridge every tap is attached to.
    pub bridge: String,
    /// The range the bridge and the guests take addresses from.
    pub subnet: Subnet,
}

impl NetworkConfig {
    /// The host's address on the bridge.
    pub fn host_address(&self) -> Ipv4Addr {
        self.subnet.host_address()
    }
}

/// The effective VM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// `[vm] backend`.
    pub backend: BackendChoice,
    /// `[network]`.
    pub network: NetworkConfig,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            backend: BackendChoice::Auto,
            network: NetworkConfig {
                bridge: DEFAULT_BRIDGE.into(),
                subnet: Subnet::parse(DEFAULT_SUBNET).expect("the default subnet is valid"),
            },
        }
    }
}

impl VmConfig {
    /// Loads and checks `path` (a missing file means the defaults).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = read_config_file(path)?;
        Self::from_sections(path, &file.vm, &file.network)
    }

    pub(crate) fn from_sections(
        path: &Path,
        vm: &VmSection,
        network: &NetworkSection,
    ) -> Result<Self, ConfigError> {
        let invalid = |key: &str, value: &str, why: String| ConfigError::Invalid {
            path: path.into(),
            why: format!("{key} = {value:?} {why}"),
        };
        let mut cfg = VmConfig::default();
        if let Some(b) = &vm.backend {
            cfg.backend = BackendChoice::parse(b).ok_or_else(|| {
                invalid(
                    "vm.backend",
                    b,
                    "is not a known back end (use auto, qemu or firecracker)".into(),
                )
            })?;
        }
        if let Some(b) = &network.bridge {
            check_bridge_name(b).map_err(|why| invalid("network.bridge", b, why))?;
            cfg.network.bridge = b.clone();
        }
        if let Some(s) = &network.subnet {
            cfg.network.subnet =
                Subnet::parse(s).map_err(|why| invalid("network.subnet", s, why))?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use crate::vmm::BackendKind;

    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("172.30.0.0/24").unwrap();
        assert_eq!(s.host_address(), Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(s.to_string(), "172.30.0.0/24");
        assert!(s.contains(Ipv4Addr::new(172, 30, 0, 200)));
        assert!(!s.contains(Ipv4Addr::new(172, 30, 1, 1)));
        for ok in [
            "10.0.0.0/16",
            "10.9.8.0/29",
            "192.168.0.0/16",
            "172.31.255.248/29",
        ] {
            Subnet::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("172.30.0.0", "CIDR"),
            ("172.30.0/24", "IPv4"),
            ("172.30.0.0/x", "prefix length"),
            ("10.0.0.0/8", "/16 to /29"),
            ("10.0.0.0/30", "/16 to /29"),
            ("172.30.0.5/24", "did you mean 172.30.0.0/24"),
            ("8.8.8.0/24", "RFC 1918"),
            ("172.32.0.0/24", "RFC 1918"),
            ("100.64.0.0/24", "RFC 1918"),
        ] {
            let e = Subnet::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn bridge_names() {
        for ok in ["banger0", "br_vm-1", "a", "abcdefghijklmno"] {
            check_bridge_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "abcdefghijklmnop",
            "br0;rm",
            "br 0",
            "-br",
            "bt-x",
            "bänger",
        ] {
            assert!(check_bridge_name(bad).is_err(), "{bad}");
        }
    }

    fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn defaults_without_a_file() {
        let c = VmConfig::load(Path::new("/nonexistent/config.toml")).unwrap();
        assert_eq!(c, VmConfig::default());
        assert_eq!(c.network.bridge, "banger0");
        assert_eq!(c.network.host_address().to_string(), "172.30.0.1");
    }

    #[test]
    fn the_file_is_read_and_bad_values_are_named() {
        if banger_host::users::current_uid() != 0 {
            eprintln!("skipped: the file must be root-owned");
            return;
        }
        let (_d, p) = write_config(
            "[update]\nchannel = \"stable\"\n[vm]\nbackend = \"qemu\"\n\
             [network]\nbridge = \"vmbr1\"\nsubnet = \"10.77.0.0/16\"\n",
        );
        let c = VmConfig::load(&p).unwrap();
        assert_eq!(c.backend, BackendChoice::Only(BackendKind::Qemu));
        assert_eq!(c.network.bridge, "vmbr1");
        assert_eq!(c.network.host_address().to_string(), "10.77.0.1");
        // The update side still reads the same file.
        crate::update::config::UpdateConfig::load(&p).unwrap();

        for (text, want) in [
            ("[vm]\nbackend = \"kvm\"\n", "vm.backend = \"kvm\""),
            (
                "[network]\nbridge = \"way-too-long-name\"\n",
                "network.bridge",
            ),
            (
                "[network]\nsubnet = \"8.8.8.0/24\"\n",
                "network.subnet = \"8.8.8.0/24\"",
            ),
            ("[network]\nnat = true\n", "unknown field"),
            ("[vm]\nbackend = 1\n", "invalid type"),
        ] {
            let (_d, p) = write_config(text);
            let e = VmConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains(&p.display().to_string()), "names the file: {e}");
        }
    }
}
