//! The per-VM config disk ("banger config disk v1") that the guest's init reads.
//!
//! A raw 1 MiB disk, found by the guest by its magic rather than its position:
//! - bytes 0..64 KiB: `BANGER-CONFIG-V1\n`, then `key=value` lines (`vm_id`, `hostname`, `ip`
//!   in CIDR form, `gateway`, and one `ssh_authorized_key` per key), then `END\n`, then zeros;
//! - bytes 64..128 KiB: the host-key region, written by the guest on its first boot
//!   (`BANGER-HOSTKEY-V1 <n>\n` and n bytes), so the guest keeps its SSH host key across
//!   reboots and the pinned key stays valid;
//! - the rest: zeros.
//!
//! Values are checked here, so nothing a caller sends can add lines or keys.

use std::net::Ipv4Addr;

/// Size of the disk.
pub const DISK_BYTES: usize = 1 << 20;
/// Size of the text region.
pub const TEXT_BYTES: usize = 64 << 10;
/// The first line.
pub const MAGIC: &str = "BANGER-CONFIG-V1";

/// What the guest is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// The VM's id.
    pub vm_id: String,
    /// Hostname (the VM's name).
    pub hostname: String,
    /// Address and prefix length.
    pub address: Ipv4Addr,
    /// Prefix length of the VM network.
    pub prefix: u8,
    /// The host's address on the bridge.
    pub gateway: Ipv4Addr,
    /// OpenSSH public key lines allowed to log in as root.
    pub authorized_keys: Vec<String>,
    /// The guest's resolver (the host's address on the bridge: the VMs' resolver).
    pub nameserver: Ipv4Addr,
    /// The search domain, so that `web1` alone resolves (`banger.internal`).
    pub search: String,
}

/// Why a config disk could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("config disk: {0}")]
pub struct DiskError(String);

fn clean(what: &str, v: &str) -> Result<(), DiskError> {
    if v.is_empty() || v.len() > 4096 || v.chars().any(|c| c.is_control()) {
        return Err(DiskError(format!(
            "{what} must be 1 to 4096 printable characters without line breaks"
        )));
    }
    Ok(())
}

impl GuestConfig {
    /// The disk image.
    pub fn render(&self) -> Result<Vec<u8>, DiskError> {
        clean("vm_id", &self.vm_id)?;
        clean("hostname", &self.hostname)?;
        if self.prefix == 0 || self.prefix > 30 {
            return Err(DiskError(format!("prefix /{} is not usable", self.prefix)));
        }
        if self.authorized_keys.is_empty() {
            return Err(DiskError("at least one SSH key is needed".into()));
        }
        clean("search", &self.search)?;
        let mut text = format!(
            "{MAGIC}\nvm_id={}\nhostname={}\nip={}/{}\ngateway={}\nnameserver={}\nsearch={}\n",
            self.vm_id,
            self.hostname,
            self.address,
            self.prefix,
            self.gateway,
            self.nameserver,
            self.search
        );
        for k in &self.authorized_keys {
            clean("ssh_authorized_key", k)?;
            text.push_str(&format!("ssh_authorized_key={k}\n"));
        }
        text.push_str("END\n");
        if text.len() > TEXT_BYTES {
            return Err(DiskError(format!(
                "{} bytes of settings do not fit in {TEXT_BYTES}",
                text.len()
            )));
        }
        let mut disk = vec![0u8; DISK_BYTES];
        disk[..text.len()].copy_from_slice(text.as_bytes());
        Ok(disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GuestConfig {
        GuestConfig {
            vm_id: "0123456789ab".into(),
            hostname: "web".into(),
            address: Ipv4Addr::new(172, 30, 0, 2),
            prefix: 24,
            gateway: Ipv4Addr::new(172, 30, 0, 1),
            nameserver: Ipv4Addr::new(172, 30, 0, 1),
            search: "banger.internal".into(),
            authorized_keys: vec!["ssh-ed25519 AAAAC3Nza banger@host".into()],
        }
    }

    #[test]
    fn layout() {
        let d = cfg().render().unwrap();
        assert_eq!(d.len(), DISK_BYTES);
        let text = String::from_utf8_lossy(&d[..TEXT_BYTES]);
        let text = text.trim_end_matches('\0');
        assert_eq!(
            text,
            "BANGER-CONFIG-V1\nvm_id=0123456789ab\nhostname=web\nip=172.30.0.2/24\n\
             gateway=172.30.0.1\nnameserver=172.30.0.1\nsearch=banger.internal\n\
             ssh_authorized_key=ssh-ed25519 AAAAC3Nza banger@host\nEND\n"
        );
        assert!(
            d[TEXT_BYTES..].iter().all(|b| *b == 0),
            "host-key region starts empty"
        );
    }

    #[test]
    fn injection_is_refused() {
        let mut c = cfg();
        c.hostname = "web\nip=1.2.3.4/8".into();
        assert!(c.render().is_err());
        let mut c = cfg();
        c.authorized_keys = vec!["ssh-ed25519 A\nEND".into()];
        assert!(c.render().is_err());
        let mut c = cfg();
        c.authorized_keys.clear();
        assert!(c.render().is_err());
        let mut c = cfg();
        c.authorized_keys = vec!["k".repeat(4000); 20];
        assert!(c.render().unwrap_err().to_string().contains("do not fit"));
    }
}
