//! The VM network's address range: one parser and one rule, used by the helper when it reads
//! `[network] subnet` from its configuration and by the daemon when it reads back what the
//! helper reports.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The shortest prefix a VM range may have.
pub const MIN_PREFIX: u8 = 16;
/// The longest prefix a VM range may have (room for the host and some VMs).
pub const MAX_PREFIX: u8 = 29;

/// A private IPv4 range in CIDR form; the host takes its first address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a range was refused. Each message completes "subnet X …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// No `/`.
    #[error("is not in CIDR form (like 172.30.0.0/24)")]
    NotCidr,
    /// The part before `/` is not an IPv4 address.
    #[error("has no valid IPv4 address ({0:?})")]
    BadAddress(String),
    /// The part after `/` is not a number.
    #[error("has no valid prefix length ({0:?})")]
    BadPrefix(String),
    /// The prefix is outside [`MIN_PREFIX`]..=[`MAX_PREFIX`].
    #[error(
        "has prefix /{0}; it must be /{MIN_PREFIX} to /{MAX_PREFIX} (room for the host and some VMs)"
    )]
    PrefixRange(u8),
    /// Host bits are set.
    #[error("is not a network address (did you mean {network}/{prefix}?)")]
    NotNetworkAddress {
        /// The network address it lies in.
        network: Ipv4Addr,
        /// Its prefix.
        prefix: u8,
    },
    /// Not RFC 1918.
    #[error(
        "is not a private (RFC 1918) range: use part of 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
    )]
    NotPrivate,
}

impl Subnet {
    /// Parses and checks `a.b.c.d/n`: an RFC 1918 network address with a prefix of
    /// [`MIN_PREFIX`] to [`MAX_PREFIX`].
    pub fn parse(s: &str) -> Result<Self, SubnetError> {
        let (addr, prefix) = s.split_once('/').ok_or(SubnetError::NotCidr)?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| SubnetError::BadAddress(addr.to_string()))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| SubnetError::BadPrefix(prefix.to_string()))?;
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(SubnetError::PrefixRange(prefix));
        }
        let mask = mask(prefix);
        let bits = u32::from(network);
        if bits & !mask != 0 {
            return Err(SubnetError::NotNetworkAddress {
                network: Ipv4Addr::from(bits & mask),
                prefix,
            });
        }
        if !network.is_private() {
            return Err(SubnetError::NotPrivate);
        }
        Ok(Subnet { network, prefix })
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The host's address on the bridge: the first address of the range.
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The broadcast address: the last of the range.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// The addresses a guest may have, lowest first: all but the network, the host's and the
    /// broadcast address.
    pub fn guest_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let base = u32::from(self.network);
        (2..(1u32 << (32 - self.prefix)) - 1).map(move |i| Ipv4Addr::from(base + i))
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX << (32 - prefix)
}

impl FromStr for Subnet {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Self, SubnetError> {
        Subnet::parse(s)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_ranges_and_their_addresses() {
        let s = Subnet::parse("172.30.0.0/24").unwrap();
        assert_eq!(s.host_address(), Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(172, 30, 0, 255));
        assert_eq!(s.to_string(), "172.30.0.0/24");
        assert!(s.contains(Ipv4Addr::new(172, 30, 0, 200)));
        assert!(!s.contains(Ipv4Addr::new(172, 30, 1, 1)));
        let guests: Vec<_> = s.guest_addresses().collect();
        assert_eq!(guests.first(), Some(&Ipv4Addr::new(172, 30, 0, 2)));
        assert_eq!(guests.last(), Some(&Ipv4Addr::new(172, 30, 0, 254)));
        assert_eq!(guests.len(), 253);
        for ok in [
            "10.0.0.0/16",
            "10.9.8.0/29",
            "192.168.0.0/16",
            "172.31.255.248/29",
        ] {
            assert_eq!(ok.parse::<Subnet>().unwrap().to_string(), ok);
        }
        assert_eq!(
            Subnet::parse("10.9.8.0/29")
                .unwrap()
                .guest_addresses()
                .count(),
            5
        );
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (bad, why) in [
            ("172.30.0.0", SubnetError::NotCidr),
            ("172.30.0/24", SubnetError::BadAddress("172.30.0".into())),
            ("172.30.0.0/x", SubnetError::BadPrefix("x".into())),
            ("10.0.0.0/8", SubnetError::PrefixRange(8)),
            ("10.0.0.0/30", SubnetError::PrefixRange(30)),
            (
                "172.30.0.5/24",
                SubnetError::NotNetworkAddress {
                    network: Ipv4Addr::new(172, 30, 0, 0),
                    prefix: 24,
                },
            ),
            ("8.8.8.0/24", SubnetError::NotPrivate),
            ("172.32.0.0/24", SubnetError::NotPrivate),
            ("100.64.0.0/24", SubnetError::NotPrivate),
        ] {
            assert_eq!(Subnet::parse(bad).unwrap_err(), why, "{bad}");
        }
        assert!(
            SubnetError::NotNetworkAddress {
                network: Ipv4Addr::new(172, 30, 0, 0),
                prefix: 24
            }
            .to_string()
            .contains("did you mean 172.30.0.0/24")
        );
    }
}
