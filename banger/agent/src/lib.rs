//! The guest agent's wire protocol, shared by the agent (which runs inside a VM, `main.rs`)
//! and by `bangerd` (which asks it). `docs/guest.md` describes it for other implementations.
//!
//! One channel per VM, a byte stream: under QEMU a virtio-serial port named
//! [`VIRTIO_PORT_NAME`], under Firecracker a vsock connection to port [`VSOCK_PORT`]. On it,
//! the host sends one request per line and the agent answers each with one line, both JSON
//! objects, each sent after a newline (so that a partial line left in the channel by a writer
//! that died mid-line never joins it); empty lines are ignored. Every answer echoes its
//! request's `id`, so an answer left over from an earlier connection is recognised and
//! skipped.
//!
//! The host does not trust what comes back: the guest is whatever its user made of it. Every
//! answer is size-capped, parsed into fixed types and checked ([`Info::checked`],
//! [`checked_ports`]); strings are cut to [`MAX_TEXT`] characters and control characters are
//! replaced, so that nothing a guest sends can move a terminal's cursor.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// The protocol version: `v` in every request and answer.
pub const PROTOCOL: u32 = 1;
/// The virtio-serial port's name (QEMU `virtserialport,name=…`); the guest finds it in
/// `/sys/class/virtio-ports/*/name`.
pub const VIRTIO_PORT_NAME: &str = "org.banger.agent.0";
/// The vsock port the agent listens on (Firecracker's vsock device).
pub const VSOCK_PORT: u32 = 52;
/// The host side of the channel, in the VM's directory: QEMU's or Firecracker's Unix socket.
pub const HOST_SOCKET: &str = "agent.sock";
/// Longest request line the agent reads; longer ones are answered with an error.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// Longest answer line the host reads.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Most listening sockets the host accepts in one answer.
pub const MAX_PORTS: usize = 4096;
/// Most addresses the host accepts in one answer.
pub const MAX_ADDRESSES: usize = 256;
/// Longest string (in characters) kept from an answer.
pub const MAX_TEXT: usize = 255;

/// What the host can ask.
pub mod op {
    /// Guest facts: [`super::Info`].
    pub const INFO: &str = "info";
    /// Listening sockets: a list of [`super::Port`].
    pub const PORTS: &str = "ports";
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// [`PROTOCOL`].
    pub v: u32,
    /// Chosen by the host, echoed in the answer.
    pub id: u64,
    /// One of [`op`].
    pub op: String,
}

/// One answer line: exactly one of `ok` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// [`PROTOCOL`].
    pub v: u32,
    /// The request's id (0 when the request could not be read).
    pub id: u64,
    /// The result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<serde_json::Value>,
    /// Why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The guest's view of itself (`op` [`op::INFO`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// The agent's version.
    pub agent_version: String,
    /// The guest's host name.
    pub hostname: String,
    /// The guest kernel's release (`uname -r`).
    pub kernel: String,
    /// Seconds since the guest booted.
    pub uptime_s: f64,
    /// The guest kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// Addresses of every interface but loopback.
    pub addresses: Vec<Address>,
}

/// One interface address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Interface name.
    pub iface: String,
    /// `ADDRESS/PREFIX`.
    pub address: String,
}

/// One listening socket (`op` [`op::PORTS`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// `tcp` or `udp`.
    pub proto: String,
    /// The local address it is bound to (`0.0.0.0`, `::`, `127.0.0.1`…).
    pub address: String,
    /// The local port.
    pub port: u16,
    /// A process that holds it, 0 when none could be found.
    pub pid: u32,
    /// That process's name (`comm`), "" when unknown.
    pub process: String,
}

/// Makes guest text safe to show: at most [`MAX_TEXT`] characters, every control character
/// (escape sequences included) replaced by `?`.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Info {
    /// The answer as the host keeps it: strings cleaned, counts and numbers checked.
    pub fn checked(mut self) -> Result<Info, String> {
        if !self.uptime_s.is_finite() || self.uptime_s < 0.0 {
            return Err(format!("uptime_s {} is not a duration", self.uptime_s));
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(format!(
                "{} addresses (at most {MAX_ADDRESSES} are accepted)",
                self.addresses.len()
            ));
        }
        for s in [
            &mut self.agent_version,
            &mut self.hostname,
            &mut self.kernel,
            &mut self.boot_id,
        ] {
            *s = clean_text(s);
        }
        for a in &mut self.addresses {
            a.iface = clean_text(&a.iface);
            a.address = clean_text(&a.address);
        }
        Ok(self)
    }
}

/// A ports answer as the host keeps it: protocols and addresses checked, names cleaned,
/// sorted, duplicates removed.
pub fn checked_ports(mut ports: Vec<Port>) -> Result<Vec<Port>, String> {
    if ports.len() > MAX_PORTS {
        return Err(format!(
            "{} listening sockets (at most {MAX_PORTS} are accepted)",
            ports.len()
        ));
    }
    for p in &mut ports {
        if p.proto != "tcp" && p.proto != "udp" {
            return Err(format!(
                "protocol '{}' is neither tcp nor udp",
                clean_text(&p.proto)
            ));
        }
        if p.address.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("'{}' is not an IP address", clean_text(&p.address)));
        }
        p.process = clean_text(&p.process);
    }
    ports.sort();
    ports.dedup();
    Ok(ports)
}

/// A socket read from `/proc/net/{tcp,udp}{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSocket {
    /// Local address.
    pub address: String,
    /// Local port.
    pub port: u16,
    /// The socket's inode (matches `socket:[N]` in `/proc/PID/fd`).
    pub inode: u64,
}

/// TCP's LISTEN state in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";
/// UDP's "unconnected" state (TCP_CLOSE) in `/proc/net/udp`.
const UDP_UNCONNECTED: &str = "07";

/// The listening sockets in the text of one `/proc/net/` table: TCP sockets in LISTEN, UDP
/// sockets bound with no peer. `udp` says which table it is; lines that do not parse are
/// skipped.
pub fn parse_proc_net(text: &str, udp: bool) -> Vec<ProcSocket> {
    let want = if udp { UDP_UNCONNECTED } else { TCP_LISTEN };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != want {
                return None;
            }
            let (address, port) = parse_endpoint(f[1])?;
            if udp && parse_endpoint(f[2])?.1 != 0 {
                return None;
            }
            Some(ProcSocket {
                address,
                port,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// `0100007F:0016` (IPv4) or 32 hex digits and a port (IPv6): the kernel prints each 32-bit
/// word of the address in the machine's byte order.
fn parse_endpoint(s: &str) -> Option<(String, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let address = match addr.len() {
        8 => Ipv4Addr::from(word(addr)?).to_string(),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[4 * i..4 * i + 4].copy_from_slice(&word(&addr[8 * i..8 * i + 8])?);
            }
            Ipv6Addr::from(b).to_string()
        }
        _ => return None,
    };
    Some((address, port))
}

/// Joins sockets to the processes holding them: `owners` maps a socket inode to (pid, name).
pub fn ports_of(
    sockets: impl IntoIterator<Item = (&'static str, ProcSocket)>,
    owners: &BTreeMap<u64, (u32, String)>,
) -> Vec<Port> {
    let mut ports: Vec<Port> = sockets
        .into_iter()
        .map(|(proto, s)| {
            let (pid, process) = owners.get(&s.inode).cloned().unwrap_or_default();
            Port {
                proto: proto.to_string(),
                address: s.address,
                port: s.port,
                pid,
                process,
            }
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1201 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1305 1 0000000000000000 100 0 0 10 0
   2: 02001EAC:0016 01001EAC:C350 01 00000000:00000000 02:000A7C2B 00000000     0        0 1400 4 0000000000000000 20 4 29 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1202 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1203 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1500 2 0000000000000000 0
  11: 02001EAC:D431 0101A8C0:0035 01 00000000:00000000 00:00000000 00000000     0        0 1501 2 0000000000000000 0
";

    #[test]
    fn listening_tcp_sockets_are_read_and_connections_are_not() {
        let s = parse_proc_net(TCP, false);
        assert_eq!(
            s,
            vec![
                ProcSocket {
                    address: "0.0.0.0".into(),
                    port: 22,
                    inode: 1201
                },
                ProcSocket {
                    address: "127.0.0.1".into(),
                    port: 8080,
                    inode: 1305
                },
            ]
        );
    }

    #[test]
    fn ipv6_addresses_are_decoded_word_by_word() {
        let s = parse_proc_net(TCP6, false);
        assert_eq!(s[0].address, "::");
        assert_eq!(s[1].address, "::1");
        assert_eq!(s[1].port, 80);
    }

    #[test]
    fn udp_keeps_bound_sockets_without_a_peer() {
        let s = parse_proc_net(UDP, true);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].port, s[0].inode), (5353, 1500));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let junk = "header\nnot a line\n 0: zz:yy 00:00 0A a b c d e f\n 1: 0100007F 0:0 0A 1 2 3 4 5 6 7\n";
        assert!(parse_proc_net(junk, false).is_empty());
    }

    #[test]
    fn sockets_are_joined_to_their_processes() {
        let mut owners = BTreeMap::new();
        owners.insert(1201, (97, "dropbear".to_string()));
        let ports = ports_of(
            parse_proc_net(TCP, false).into_iter().map(|s| ("tcp", s)),
            &owners,
        );
        assert_eq!(ports.len(), 2);
        assert_eq!((ports[0].port, ports[0].pid), (22, 97));
        assert_eq!(ports[0].process, "dropbear");
        assert_eq!((ports[1].port, ports[1].pid), (8080, 0));
    }

    #[test]
    fn guest_text_cannot_carry_escape_sequences() {
        assert_eq!(clean_text("nc\x1b[2J\n"), "nc?[2J?");
        assert_eq!(clean_text(&"x".repeat(1000)).len(), MAX_TEXT);
    }

    #[test]
    fn bad_port_answers_are_refused_with_the_reason() {
        let p = |proto: &str, address: &str| Port {
            proto: proto.into(),
            address: address.into(),
            port: 1,
            pid: 0,
            process: "\x07bell".into(),
        };
        assert!(
            checked_ports(vec![p("sctp", "::")])
                .unwrap_err()
                .contains("'sctp' is neither tcp nor udp")
        );
        assert!(
            checked_ports(vec![p("tcp", "evil\x1b")])
                .unwrap_err()
                .contains("'evil?' is not an IP address")
        );
        let too_many = vec![p("tcp", "::"); MAX_PORTS + 1];
        assert!(checked_ports(too_many).unwrap_err().contains("at most"));
        let ok = checked_ports(vec![p("udp", "0.0.0.0"), p("udp", "0.0.0.0")]).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].process, "?bell");
    }

    #[test]
    fn info_answers_are_checked() {
        let info = Info {
            agent_version: "1".into(),
            hostname: "h\x1b]0;pwned\x07".into(),
            kernel: "6.1".into(),
            uptime_s: 3.5,
            boot_id: "b".into(),
            addresses: vec![],
        };
        assert_eq!(info.clone().checked().unwrap().hostname, "h?]0;pwned?");
        let mut bad = info.clone();
        bad.uptime_s = -1.0;
        assert!(bad.checked().unwrap_err().contains("uptime_s -1"));
    }

    #[test]
    fn requests_round_trip_and_refuse_unknown_fields() {
        let r = Request {
            v: PROTOCOL,
            id: 9,
            op: op::PORTS.into(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"v":1,"id":9,"op":"ports"}"#);
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        assert!(serde_json::from_str::<Request>(r#"{"v":1,"id":9,"op":"x","y":1}"#).is_err());
    }
}
