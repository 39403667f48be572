//! The `[vm]` and `[network]` sections of the root-owned `/etc/banger/config.toml`: which VMM
//! back end to use, and the bridge and private IPv4 range VMs are connected to.
//!
//! The file is read by [`crate::config`], the one reader of it (root-owned, not writable by
//! others, unknown keys refused). Every value is checked here, and an error names the file, the
//! key and the bad value. Nothing a D-Bus caller sends reaches this module.

use std::net::Ipv4Addr;
use std::path::Path;

pub use banger_api::net::Subnet;

use crate::vmm::BackendChoice;

use crate::config::{ConfigError, NetworkSection, VmSection, read_config_file};

/// The bridge used when the configuration names none.
pub use banger_api::names::DEFAULT_BRIDGE;
/// The range used when the configuration names none.
pub const DEFAULT_SUBNET: &str = "172.30.0.0/24";
/// Prefix of every tap device; a bridge may not use it.
pub const TAP_PREFIX: &str = "bt-";

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
    /// `[network] nat`: whether VMs reach the outside world through the host's default route
    /// (masqueraded). Default on.
    pub nat: bool,
    /// `[network] isolate`: whether guests are kept from reaching each other on the bridge
    /// (they always reach the host). Default on.
    pub isolate: bool,
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
                nat: true,
                isolate: true,
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
                Subnet::parse(s).map_err(|why| invalid("network.subnet", s, why.to_string()))?;
        }
        if let Some(nat) = network.nat {
            cfg.network.nat = nat;
        }
        if let Some(isolate) = network.isolate {
            cfg.network.isolate = isolate;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use crate::vmm::BackendKind;

    use super::*;

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
        assert!(c.network.nat && c.network.isolate, "both on by default");
        let (_d2, p2) = write_config("[network]\nnat = false\nisolate = false\n");
        let off = VmConfig::load(&p2).unwrap().network;
        assert!(!off.nat && !off.isolate);
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
            ("[network]\nmasquerade = true\n", "unknown field"),
            ("[network]\nnat = \"yes\"\n", "invalid type"),
            ("[vm]\nbackend = 1\n", "invalid type"),
        ] {
            let (_d, p) = write_config(text);
            let e = VmConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains(&p.display().to_string()), "names the file: {e}");
        }
    }
}
