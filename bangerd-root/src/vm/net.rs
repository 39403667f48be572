//! Host networking for VMs: one bridge carrying the host's address, one tap per VM attached to
//! it. Everything is done with the `ip` program of iproute2, by absolute path, with a timeout;
//! a failure names the exact command and what it printed.
//!
//! Every step is idempotent, so a repeated or concurrent call converges instead of failing. This
//! module must only ever touch the configured bridge and taps named `bt-<id>`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use banger_api::names;
use serde_json::Value;

use super::config::NetworkConfig;

/// The program looked for on the host.
pub const IP_PROGRAM: &str = "ip";

/// Why a network step failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// iproute2 is not installed.
    #[error(
        "the ip program (iproute2) was not found in PATH or /usr/sbin, /sbin; install the Debian \
         package iproute2"
    )]
    MissingIp,
    /// A command failed or could not run.
    #[error("`{command}` failed: {why}")]
    Command {
        /// The full command line.
        command: String,
        /// Its stderr, exit status, or why it did not run.
        why: String,
    },
    /// The bridge was created but is gone when read back.
    #[error("bridge {bridge} vanished right after creation")]
    BridgeVanished {
        /// The bridge.
        bridge: String,
    },
    /// An interface with the bridge's name exists and is something else.
    #[error(
        "interface {bridge} exists but is not a bridge (it is {kind}); rename it or set \
         [network] bridge in /etc/banger/config.toml"
    )]
    NotABridge {
        /// The interface.
        bridge: String,
        /// What it is ("a plain device", "veth", …).
        kind: String,
    },
}

/// The IPv6 settings of the bridge and of every tap (`/proc/sys/net/ipv6/conf/<if>/…`), as
/// libvirt sets them: the host takes part in no IPv6 on the VM network, so a guest's router
/// advertisement, redirect or address can never give the host a route or an address.
pub const IPV6_OFF: [(&str, &str); 4] = [
    ("accept_ra", "0"),
    ("autoconf", "0"),
    ("accept_redirects", "0"),
    ("disable_ipv6", "1"),
];

/// Where the kernel keeps the per-interface IPv6 settings.
const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

/// Turns IPv6 off on interface `name` ([`IPV6_OFF`]). A kernel without IPv6 has nothing to turn
/// off. Safe to repeat.
pub fn disable_ipv6(name: &str) -> Result<(), NetError> {
    let dir = Path::new(IPV6_CONF).join(name);
    if !Path::new(IPV6_CONF).exists() {
        return Ok(());
    }
    for (key, value) in IPV6_OFF {
        let path = dir.join(key);
        std::fs::write(&path, value).map_err(|e| NetError::Command {
            command: format!("echo {value} > {}", path.display()),
            why: e.to_string(),
        })?;
    }
    Ok(())
}

/// Whether IPv6 is off on interface `name` as [`disable_ipv6`] leaves it (`true` as well on a
/// kernel without IPv6). For `doctor`.
pub fn ipv6_is_off(name: &str) -> bool {
    if !Path::new(IPV6_CONF).exists() {
        return true;
    }
    let dir = Path::new(IPV6_CONF).join(name);
    IPV6_OFF.iter().all(|(key, value)| {
        std::fs::read_to_string(dir.join(key)).is_ok_and(|v| v.trim() == *value)
    })
}

/// Runs `ip` commands.
#[derive(Debug, Clone)]
pub struct Ip {
    program: PathBuf,
    /// Longest a single command may take.
    pub timeout: Duration,
}

/// What `ip` said about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `linkinfo.info_kind`: `bridge`, `tun`, … ("" for a plain device).
    pub kind: String,
    /// The bridge it is attached to, if any.
    pub master: Option<String>,
    /// IPv4 addresses with their prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// Whether it is administratively up.
    pub up: bool,
    /// For taps: the owning uid.
    pub tap_user: Option<u32>,
    /// Whether IPv6 is off on it as banger leaves its bridge and taps ([`ipv6_is_off`]).
    pub ipv6_off: bool,
    /// For a bridge port: whether it is isolated from the other isolated ports.
    pub isolated: Option<bool>,
}

impl Ip {
    /// `ip` at `program`.
    pub fn new(program: PathBuf) -> Self {
        Ip {
            program,
            timeout: Duration::from_secs(10),
        }
    }

    /// Finds `ip` on this host.
    pub fn find() -> Result<Self, NetError> {
        banger_host::virt::find_program(IP_PROGRAM)
            .map(Ip::new)
            .ok_or(NetError::MissingIp)
    }

    /// The program run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The command line as a person would type it.
    pub fn command_line(&self, args: &[&str]) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs `ip ARGS`; returns stdout, or an error naming the command and its stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String, NetError> {
        let command = self.command_line(args);
        let fail = |why: String| NetError::Command {
            command: command.clone(),
            why,
        };
        let child = tokio::process::Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.timeout, child)
            .await
            .map_err(|_| fail(format!("no answer within {} s", self.timeout.as_secs())))?
            .map_err(|e| fail(format!("could not run it: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
            Err(fail(if stderr.is_empty() {
                format!("{}", out.status)
            } else {
                format!("{stderr} ({})", out.status)
            }))
        }
    }

    /// Describes interface `name`, or `None` when it does not exist.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetError> {
        match self.run(&["-j", "-d", "addr", "show", "dev", name]).await {
            Ok(out) => match parse_link(&out) {
                Some(mut l) => {
                    l.ipv6_off = ipv6_is_off(name);
                    Ok(Some(l))
                }
                None => Err(NetError::Command {
                    command: self.command_line(&["-j", "-d", "addr", "show", "dev", name]),
                    why: format!("unexpected output {:?}", out.trim()),
                }),
            },
            Err(NetError::Command { why, .. }) if is_missing(&why) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `ip ARGS`, treating the error that says "already so" as success.
    async fn run_tolerating(&self, args: &[&str], already: &[&str]) -> Result<bool, NetError> {
        match self.run(args).await {
            Ok(_) => Ok(true),
            Err(NetError::Command { why, .. }) if already.iter().any(|a| why.contains(a)) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes sure the bridge exists, carries the host address and is up. Safe to repeat and to
    /// run concurrently. An interface of that name that is not a bridge is refused; other
    /// addresses already on the bridge are left alone.
    pub async fn ensure_bridge(&self, net: &NetworkConfig) -> Result<(), NetError> {
        let bridge = net.bridge.as_str();
        let host = net.host_address();
        let cidr = format!("{host}/{}", net.subnet.prefix());
        let link = match self.link(bridge).await? {
            Some(l) => l,
            None => {
                if self
                    .run_tolerating(&["link", "add", bridge, "type", "bridge"], &["File exists"])
                    .await?
                {
                    // Before it is ever up, so it never sees an advertisement.
                    disable_ipv6(bridge)?;
                    self.run(&["link", "set", "dev", bridge, "alias", names::BRIDGE_ALIAS])
                        .await?;
                    tracing::info!(bridge, "created the VM bridge");
                }
                self.link(bridge)
                    .await?
                    .ok_or_else(|| NetError::BridgeVanished {
                        bridge: bridge.to_string(),
                    })?
            }
        };
        if link.kind != "bridge" {
            return Err(NetError::NotABridge {
                bridge: bridge.to_string(),
                kind: if link.kind.is_empty() {
                    "a plain device".to_string()
                } else {
                    link.kind.clone()
                },
            });
        }
        if !link
            .ipv4
            .iter()
            .any(|(a, p)| *a == host && *p == net.subnet.prefix())
        {
            let others: Vec<String> = link.ipv4.iter().map(|(a, p)| format!("{a}/{p}")).collect();
            if !others.is_empty() {
                tracing::warn!(bridge, ?others, "the VM bridge carries other addresses too");
            }
            self.run_tolerating(
                &["addr", "add", &cidr, "dev", bridge],
                &["File exists", "already assigned"],
            )
            .await?;
            tracing::info!(bridge, address = %cidr, "gave the VM bridge the host address");
        }
        // Also on a bridge made by an older banger, or by someone else and adopted.
        disable_ipv6(bridge)?;
        if !link.up {
            self.run(&["link", "set", "dev", bridge, "up"]).await?;
        }
        Ok(())
    }

    /// Creates tap `tap` owned by `uid`, attached to `bridge` and up; a stale tap of the same
    /// name is removed first. An `isolated` tap is a bridge port that exchanges frames only with
    /// the bridge itself (the host), never with another isolated port (another guest). On
    /// failure the tap is removed again.
    pub async fn create_tap(
        &self,
        tap: &str,
        uid: u32,
        bridge: &str,
        isolated: bool,
    ) -> Result<(), NetError> {
        if self.delete_tap(tap).await? {
            tracing::info!(tap, "removed a stale tap");
        }
        let uid = uid.to_string();
        self.run(&["tuntap", "add", "dev", tap, "mode", "tap", "user", &uid])
            .await?;
        let attach = async {
            disable_ipv6(tap)?;
            self.run(&["link", "set", "dev", tap, "master", bridge])
                .await?;
            let isolated = if isolated { "on" } else { "off" };
            self.run(&[
                "link",
                "set",
                "dev",
                tap,
                "type",
                "bridge_slave",
                "isolated",
                isolated,
            ])
            .await?;
            self.run(&["link", "set", "dev", tap, "up"]).await
        };
        if let Err(e) = attach.await {
            if let Err(e2) = self.delete_tap(tap).await {
                tracing::warn!(tap, "removing the half-made tap failed too: {e2}");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes tap `tap`; returns whether there was one. Safe to repeat.
    pub async fn delete_tap(&self, tap: &str) -> Result<bool, NetError> {
        self.run_tolerating(&["link", "del", "dev", tap], &["Cannot find device"])
            .await
    }
}

/// Whether `ip`'s complaint means "no such interface".
fn is_missing(why: &str) -> bool {
    why.contains("does not exist") || why.contains("Cannot find device")
}

/// Parses the output of `ip -j -d addr show dev NAME`.
fn parse_link(json: &str) -> Option<Link> {
    let v: Value = serde_json::from_str(json).ok()?;
    let l = v.as_array()?.first()?;
    let s = |v: &Value| v.as_str().map(str::to_string);
    let info = l.get("linkinfo");
    let kind = info
        .and_then(|i| i.get("info_kind"))
        .and_then(s)
        .unwrap_or_default();
    let tap_user = info
        .and_then(|i| i.get("info_data"))
        .and_then(|d| d.get("user"))
        .and_then(Value::as_u64)
        .and_then(|u| u32::try_from(u).ok());
    let ipv4 = l
        .get("addr_info")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|x| x.get("family").and_then(Value::as_str) == Some("inet"))
                .filter_map(|x| {
                    let addr = x.get("local")?.as_str()?.parse().ok()?;
                    let prefix = u8::try_from(x.get("prefixlen")?.as_u64()?).ok()?;
                    Some((addr, prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    let isolated = l
        .get("linkinfo")
        .and_then(|i| i.get("info_slave_data"))
        .and_then(|d| d.get("isolated"))
        .and_then(Value::as_bool);
    let up = l
        .get("flags")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
    Some(Link {
        kind,
        master: l.get("master").and_then(s),
        ipv4,
        up,
        tap_user,
        ipv6_off: false,
        isolated,
    })
}

/// How the bridge looks against the configuration, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeHealth {
    /// Present, a bridge, with the host address.
    Ready,
    /// Not there yet; the first VM start creates it.
    Absent,
    /// Present, but without the host address (the listed ones instead).
    OtherAddress(Vec<String>),
    /// An interface of that name that is not a bridge.
    NotABridge(String),
}

/// Judges `link` (the configured bridge as found, if at all) against `net`.
pub fn bridge_health(net: &NetworkConfig, link: Option<&Link>) -> BridgeHealth {
    match link {
        None => BridgeHealth::Absent,
        Some(l) if l.kind != "bridge" => BridgeHealth::NotABridge(l.kind.clone()),
        Some(l)
            if l.ipv4
                .iter()
                .any(|(a, p)| *a == net.host_address() && *p == net.subnet.prefix()) =>
        {
            BridgeHealth::Ready
        }
        Some(l) => {
            BridgeHealth::OtherAddress(l.ipv4.iter().map(|(a, p)| format!("{a}/{p}")).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::config::VmConfig;

    const BRIDGE_JSON: &str = r#"[{"ifindex":2,"ifname":"banger0","flags":["BROADCAST","MULTICAST","UP"],
        "linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}},
        "addr_info":[{"family":"inet","local":"172.30.0.1","prefixlen":24},
                     {"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
    const TAP_JSON: &str = r#"[{"ifindex":3,"ifname":"bt-0123456789ab","flags":["BROADCAST"],
        "master":"banger0","linkinfo":{"info_kind":"tun","info_data":{"type":"tap","user":1234},
        "info_slave_kind":"bridge"},"addr_info":[]}]"#;

    #[test]
    fn parses_ip_json() {
        let b = parse_link(BRIDGE_JSON).unwrap();
        assert_eq!(b.kind, "bridge");
        assert!(b.up);
        assert_eq!(b.ipv4, vec![(Ipv4Addr::new(172, 30, 0, 1), 24)]);
        assert_eq!(b.master, None);
        let t = parse_link(TAP_JSON).unwrap();
        assert_eq!((t.kind.as_str(), t.tap_user), ("tun", Some(1234)));
        assert_eq!(t.master.as_deref(), Some("banger0"));
        assert!(!t.up);
        assert!(parse_link("[]").is_none());
        assert!(parse_link("nonsense").is_none());
    }

    #[test]
    fn bridge_health_judgements() {
        let net = VmConfig::default().network;
        let b = parse_link(BRIDGE_JSON).unwrap();
        assert_eq!(bridge_health(&net, Some(&b)), BridgeHealth::Ready);
        assert_eq!(bridge_health(&net, None), BridgeHealth::Absent);
        let mut other = b.clone();
        other.ipv4 = vec![(Ipv4Addr::new(10, 0, 0, 1), 24)];
        assert_eq!(
            bridge_health(&net, Some(&other)),
            BridgeHealth::OtherAddress(vec!["10.0.0.1/24".into()])
        );
        let t = parse_link(TAP_JSON).unwrap();
        assert_eq!(
            bridge_health(&net, Some(&t)),
            BridgeHealth::NotABridge("tun".into())
        );
    }

    #[tokio::test]
    async fn failures_name_the_command_and_its_stderr() {
        let ip = Ip::new("/bin/sh".into());
        let e = ip
            .run(&["-c", "echo 'RTNETLINK answers: Nope' >&2; exit 2"])
            .await;
        let e = e.unwrap_err().to_string();
        assert!(e.starts_with("`/bin/sh -c echo"), "{e}");
        assert!(e.contains("RTNETLINK answers: Nope"), "{e}");
        let e = Ip::new("/nonexistent/ip".into())
            .run(&["link"])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("could not run it"), "{e}");
        let mut slow = Ip::new("/bin/sleep".into());
        slow.timeout = Duration::from_millis(100);
        let e = slow.run(&["5"]).await.unwrap_err();
        assert!(e.to_string().contains("no answer within"), "{e}");
        // "Already so" errors are not failures.
        let sh = Ip::new("/bin/sh".into());
        let r = sh
            .run_tolerating(
                &["-c", "echo 'Cannot find device \"x\"' >&2; exit 1"],
                &["Cannot find device"],
            )
            .await;
        assert!(!r.unwrap());
    }

    /// Runs [`netns_inner`] in a fresh network namespace (`unshare --net`), so the real `ip`
    /// commands touch nothing on the host.
    #[test]
    fn bridge_and_tap_in_a_private_network_namespace() {
        crate::vm::testns::run_in_private_netns("vm::net::tests::netns_inner");
    }

    #[test]
    #[ignore = "runs inside a private network namespace, started by \
                bridge_and_tap_in_a_private_network_namespace"]
    fn netns_inner() {
        crate::vm::testns::require_private_netns();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ip = Ip::find().expect("ip is installed");
            let net = VmConfig::default().network;
            let tap = "bt-0123456789ab";

            // The bridge: created once, then left as it is.
            assert_eq!(ip.link("banger0").await.unwrap(), None);
            ip.ensure_bridge(&net).await.unwrap();
            ip.ensure_bridge(&net).await.unwrap();
            let b = ip.link("banger0").await.unwrap().unwrap();
            assert_eq!(bridge_health(&net, Some(&b)), BridgeHealth::Ready);
            assert!(b.up);
            assert!(ipv6_is_off("banger0"), "IPv6 is off on the bridge");
            // A bridge whose IPv6 settings someone reset gets them back.
            std::fs::write("/proc/sys/net/ipv6/conf/banger0/accept_ra", "1").unwrap();
            assert!(!ipv6_is_off("banger0"));
            ip.ensure_bridge(&net).await.unwrap();
            assert!(ipv6_is_off("banger0"));
            let shown = std::process::Command::new("ip")
                .args(["-j", "link", "show", "dev", "banger0"])
                .output()
                .unwrap();
            let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
            assert_eq!(
                shown[0]["ifalias"],
                names::BRIDGE_ALIAS,
                "a bridge banger created says so"
            );
            // Concurrent callers converge.
            let (r1, r2) = tokio::join!(ip.ensure_bridge(&net), ip.ensure_bridge(&net));
            r1.unwrap();
            r2.unwrap();

            // The tap: owned by the VM's user, on the bridge, up; a stale one is replaced.
            ip.create_tap(tap, 1234, "banger0", true).await.unwrap();
            let t = ip.link(tap).await.unwrap().unwrap();
            assert_eq!(t.isolated, Some(true), "guests do not see each other");
            assert_eq!((t.kind.as_str(), t.tap_user), ("tun", Some(1234)));
            assert_eq!(t.master.as_deref(), Some("banger0"));
            assert!(t.up);
            assert!(ipv6_is_off(tap), "IPv6 is off on the tap");
            ip.create_tap(tap, 4321, "banger0", false).await.unwrap();
            let t = ip.link(tap).await.unwrap().unwrap();
            assert_eq!((t.tap_user, t.isolated), (Some(4321), Some(false)));

            // Removal is idempotent.
            assert!(ip.delete_tap(tap).await.unwrap());
            assert!(!ip.delete_tap(tap).await.unwrap());
            assert_eq!(ip.link(tap).await.unwrap(), None);

            // Attaching to a missing bridge fails naming the command, and leaves no tap.
            let e = ip
                .create_tap(tap, 1234, "nobridge", true)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("master nobridge"), "{e}");
            assert_eq!(ip.link(tap).await.unwrap(), None);

            // An interface of the bridge's name that is not a bridge is refused.
            ip.run(&["tuntap", "add", "dev", "notbr0", "mode", "tap"])
                .await
                .unwrap();
            let mut other = net.clone();
            other.bridge = "notbr0".into();
            let e = ip.ensure_bridge(&other).await.unwrap_err();
            assert!(e.to_string().contains("not a bridge"), "{e}");

            // A bridge with another address gets ours added; the other one stays.
            ip.run(&["link", "add", "br9", "type", "bridge"])
                .await
                .unwrap();
            ip.run(&["addr", "add", "10.9.0.1/24", "dev", "br9"])
                .await
                .unwrap();
            other.bridge = "br9".into();
            let l = ip.link("br9").await.unwrap();
            assert!(matches!(
                bridge_health(&other, l.as_ref()),
                BridgeHealth::OtherAddress(_)
            ));
            ip.ensure_bridge(&other).await.unwrap();
            let l = ip.link("br9").await.unwrap().unwrap();
            assert_eq!(l.ipv4.len(), 2, "{l:?}");
            assert_eq!(bridge_health(&other, Some(&l)), BridgeHealth::Ready);
        });
    }
}
