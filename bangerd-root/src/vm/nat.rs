//! Outbound network for VMs: the VM subnet masqueraded out of the host's default route.
//!
//! Everything lives in one nftables table of banger's own (`ip banger`,
//! [`banger_host::nat::TABLE`]), written through the `nft` program's JSON interface as one
//! transaction that replaces the whole table, so a repeated start converges and a reader never
//! sees half a ruleset. Two base chains, both with policy accept so they decide only about
//! traffic that involves the VM bridge:
//!
//! - `postrouting` (nat): the subnet leaving through the uplink is masqueraded;
//! - `forward` (filter): the subnet may leave through the uplink and nowhere else, and only
//!   replies come back in; nothing unsolicited is forwarded to a guest. When banger had to turn
//!   forwarding on for the uplink, everything else arriving there is dropped too, so the host
//!   forwards nothing new but its VMs' traffic.
//!
//! IPv4 forwarding is turned on per interface (the bridge, the uplink), never globally, and the
//! old values go to the record first ([`banger_host::nat::NatRecord`]). The last VM's stop puts
//! it all back ([`banger_host::nat::release`]). Rules and sysctls banger did not create are never
//! touched.

use std::path::{Path, PathBuf};

use banger_api::net::Subnet;
use banger_host::nat::{self, FAMILY, NatRecord, NatRecordError, TABLE};
use serde_json::{Value, json};

use super::config::NetworkConfig;
use super::net::{Ip, NetError};

/// Where the kernel keeps the per-interface IPv4 settings.
pub const IPV4_CONF: &str = "/proc/sys/net/ipv4/conf";

/// Why outbound network could not be set up or released.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// `nft` is not installed.
    #[error(
        "the nft program (nftables) was not found in PATH or /usr/sbin, /sbin; install the \
         Debian package nftables, or set [network] nat = false in /etc/banger/config.toml"
    )]
    MissingNft,
    /// The host has no default route to masquerade out of.
    #[error(
        "this host has no IPv4 default route, so VMs have no way out; they still reach the host"
    )]
    NoUplink,
    /// Reading the routes failed.
    #[error(transparent)]
    Ip(#[from] NetError),
    /// nft, a sysctl or the record failed.
    #[error(transparent)]
    Host(#[from] NatRecordError),
}

/// What the rules are made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatPlan {
    /// The VM bridge.
    pub bridge: String,
    /// The VM subnet.
    pub subnet: Subnet,
    /// The interface of the host's default route.
    pub uplink: String,
    /// Interfaces whose forwarding banger turned on and that carry nothing but VM traffic
    /// through the host (the uplink, when it did not forward before).
    pub gated: Vec<String>,
}

/// A rule of banger's table: its chain, its expressions, and a comment `nft list` shows.
fn rule(chain: &str, expr: Vec<Value>, comment: &str) -> Value {
    json!({"add": {"rule": {
        "family": FAMILY, "table": TABLE, "chain": chain, "expr": expr, "comment": comment
    }}})
}

fn iifname(op: &str, name: &str) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": "iifname"}}, "right": name}})
}

fn oifname(op: &str, name: &str) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": "oifname"}}, "right": name}})
}

fn saddr_in(subnet: &Subnet) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": "ip", "field": "saddr"}},
        "right": {"prefix": {"addr": subnet.network().to_string(), "len": subnet.prefix()}}}})
}

fn verdict(v: &str) -> Value {
    json!({ v: null })
}

impl NatPlan {
    /// The `nft -j -f -` document that replaces banger's table with this plan's, in one
    /// transaction (the table is added, so the delete never fails, then deleted and made anew).
    pub fn ruleset(&self) -> Value {
        let table = json!({"table": {"family": FAMILY, "name": TABLE}});
        let chain = |name: &str, kind: &str, prio: i32| {
            json!({"add": {"chain": {
                "family": FAMILY, "table": TABLE, "name": name,
                "type": kind, "hook": name, "prio": prio, "policy": "accept"
            }}})
        };
        let (b, u) = (self.bridge.as_str(), self.uplink.as_str());
        let mut cmds = vec![
            json!({"add": table}),
            json!({"delete": table}),
            json!({"add": table}),
            chain("postrouting", "nat", 100),
            chain("forward", "filter", 0),
            rule(
                "postrouting",
                vec![
                    saddr_in(&self.subnet),
                    oifname("==", u),
                    verdict("masquerade"),
                ],
                "banger: VMs out through the default route",
            ),
            rule(
                "forward",
                vec![
                    iifname("==", b),
                    oifname("==", u),
                    saddr_in(&self.subnet),
                    verdict("accept"),
                ],
                "banger: VMs out",
            ),
            // With br_netfilter loaded, frames between two guests on the bridge pass this hook
            // too (in and out on the bridge): whether guests see each other is the bridge
            // ports' isolation, not this table's.
            rule(
                "forward",
                vec![iifname("==", b), oifname("==", b), verdict("accept")],
                "banger: guest to guest on the bridge (isolation is the ports')",
            ),
            rule(
                "forward",
                vec![iifname("==", b), verdict("drop")],
                "banger: VMs reach no other network",
            ),
            rule(
                "forward",
                vec![
                    oifname("==", b),
                    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}},
                        "right": ["established", "related"]}}),
                    verdict("accept"),
                ],
                "banger: replies to VMs",
            ),
            rule(
                "forward",
                vec![oifname("==", b), verdict("drop")],
                "banger: nothing unsolicited to VMs",
            ),
        ];
        for g in &self.gated {
            cmds.push(rule(
                "forward",
                vec![iifname("==", g), verdict("drop")],
                "banger: forwarding is on here for VMs only",
            ));
        }
        json!({ "nftables": cmds })
    }
}

/// The interface of the IPv4 default route in `ip -j route show default` output (the first,
/// lowest metric first as `ip` lists them).
pub fn parse_default_route(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    v.as_array()?
        .iter()
        .find_map(|r| r.get("dev")?.as_str().map(str::to_string))
}

/// The host side of outbound network.
#[derive(Debug, Clone)]
pub struct Nat {
    /// `nft`, if installed.
    pub nft: Option<PathBuf>,
    /// The record of what was changed.
    pub record: PathBuf,
    /// Where the per-interface IPv4 sysctls are ([`IPV4_CONF`]).
    pub ipv4_conf: PathBuf,
}

/// How outbound network stands, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatStatus {
    /// `[network] nat = false`.
    Off,
    /// Rules in place for this plan's uplink.
    Active {
        /// The interface VMs leave through.
        uplink: String,
    },
    /// No rules now; the next VM start sets them.
    Idle,
    /// It cannot work here, and why.
    Broken(String),
}

impl Nat {
    /// The live host's.
    pub fn host(nft: Option<PathBuf>) -> Self {
        Nat {
            nft,
            record: PathBuf::from(nat::RECORD),
            ipv4_conf: PathBuf::from(IPV4_CONF),
        }
    }

    fn forwarding(&self, iface: &str) -> PathBuf {
        self.ipv4_conf.join(iface).join("forwarding")
    }

    /// The interface of the host's default route.
    pub async fn uplink(ip: &Ip) -> Result<String, NatError> {
        let out = ip.run(&["-4", "-j", "route", "show", "default"]).await?;
        parse_default_route(&out).ok_or(NatError::NoUplink)
    }

    /// Sets banger's table and the forwarding sysctls for `net` (bridge up already). Safe to
    /// repeat; a changed default route moves the rules with it.
    pub async fn apply(&self, ip: &Ip, net: &NetworkConfig) -> Result<NatPlan, NatError> {
        let nft = self.nft.clone().ok_or(NatError::MissingNft)?;
        let uplink = Self::uplink(ip).await?;
        let this = self.clone();
        let (bridge, subnet) = (net.bridge.clone(), net.subnet);
        tokio::task::spawn_blocking(move || this.apply_blocking(&nft, bridge, subnet, uplink))
            .await
            .map_err(|e| {
                NatError::Host(NatRecordError::Nft {
                    command: "nft".into(),
                    why: format!("the task running it failed: {e}"),
                })
            })?
    }

    fn apply_blocking(
        &self,
        nft: &Path,
        bridge: String,
        subnet: Subnet,
        uplink: String,
    ) -> Result<NatPlan, NatError> {
        let mut rec = NatRecord::load(&self.record)?;
        rec.set_sysctl(&self.record, &self.forwarding(&bridge), "1")?;
        rec.set_sysctl(&self.record, &self.forwarding(&uplink), "1")?;
        // An uplink whose forwarding banger turned on (now, or for an earlier default route).
        let gated = [&uplink]
            .into_iter()
            .filter(|i| rec.changed(&self.forwarding(i)))
            .cloned()
            .collect();
        let plan = NatPlan {
            bridge,
            subnet,
            uplink,
            gated,
        };
        nat::run_nft(nft, &["-j", "-f", "-"], Some(&plan.ruleset().to_string()))?;
        Ok(plan)
    }

    /// Puts back everything banger changed for outbound network. Safe to repeat.
    pub async fn release(&self) -> Result<nat::Released, NatError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || nat::release(this.nft.as_deref(), &this.record))
            .await
            .map_err(|e| {
                NatError::Host(NatRecordError::Nft {
                    command: "nft".into(),
                    why: format!("the task running it failed: {e}"),
                })
            })?
            .map_err(NatError::Host)
    }

    /// How it stands against `net`, for `doctor`. Read-only.
    pub async fn status(&self, ip: Option<&Ip>, net: &NetworkConfig) -> NatStatus {
        if !net.nat {
            return NatStatus::Off;
        }
        let Some(nft) = self.nft.clone() else {
            return NatStatus::Broken(NatError::MissingNft.to_string());
        };
        let uplink = match ip {
            Some(ip) => Self::uplink(ip).await,
            None => Err(NatError::Ip(NetError::MissingIp)),
        };
        let uplink = match uplink {
            Ok(u) => u,
            Err(e) => return NatStatus::Broken(e.to_string()),
        };
        let listed = tokio::task::spawn_blocking(move || {
            nat::run_nft(&nft, &["-j", "list", "table", FAMILY, TABLE], None)
        })
        .await;
        match listed {
            Ok(Ok(json)) if masquerades_out_of(&json, &uplink) => NatStatus::Active { uplink },
            Ok(Ok(_)) => NatStatus::Broken(format!(
                "table {FAMILY} {TABLE} does not masquerade out of {uplink}, the default \
                 route's interface (it changed since the last VM start?); the next VM start \
                 sets it anew"
            )),
            Ok(Err(NatRecordError::Nft { why, .. })) if why.contains("No such file") => {
                NatStatus::Idle
            }
            Ok(Err(e)) => NatStatus::Broken(e.to_string()),
            Err(e) => NatStatus::Broken(e.to_string()),
        }
    }
}

/// Whether `nft -j list table ip banger` output has a masquerade rule out of `uplink`.
fn masquerades_out_of(json: &str, uplink: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return false;
    };
    let Some(items) = v.get("nftables").and_then(Value::as_array) else {
        return false;
    };
    items.iter().filter_map(|i| i.get("rule")).any(|r| {
        let expr = r.get("expr").and_then(Value::as_array);
        expr.is_some_and(|e| {
            e.iter().any(|x| x.get("masquerade").is_some())
                && e.iter().any(|x| {
                    x.pointer("/match/left/meta/key").and_then(Value::as_str) == Some("oifname")
                        && x.pointer("/match/right").and_then(Value::as_str) == Some(uplink)
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(gated: &[&str]) -> NatPlan {
        NatPlan {
            bridge: "banger0".into(),
            subnet: Subnet::parse("172.30.0.0/24").unwrap(),
            uplink: "eth0".into(),
            gated: gated.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_ruleset_replaces_only_bangers_table_and_names_every_rule() {
        let v = plan(&[]).ruleset();
        let cmds = v["nftables"].as_array().unwrap();
        // add, delete, add: one transaction that works whether or not the table exists.
        for (i, verb) in ["add", "delete", "add"].iter().enumerate() {
            assert_eq!(cmds[i][verb]["table"]["name"], "banger");
            assert_eq!(cmds[i][verb]["table"]["family"], "ip");
        }
        for c in cmds {
            let (_, obj) = c.as_object().unwrap().iter().next().unwrap();
            let (_, o) = obj.as_object().unwrap().iter().next().unwrap();
            let table = o.get("table").or_else(|| o.get("name")).unwrap();
            assert_eq!(table, "banger", "{c}");
            if let Some(r) = obj.get("rule") {
                assert!(
                    r["comment"].as_str().unwrap().starts_with("banger: "),
                    "{c}"
                );
            }
        }
        let text = v.to_string();
        assert!(text.contains(r#""masquerade":null"#));
        assert!(text.contains(r#""prefix":{"addr":"172.30.0.0","len":24}"#));
        assert!(
            !text.contains("delete\":{\"rule"),
            "never deletes anything else"
        );
        // Listed back, the table is what `status` recognises.
        let listed =
            json!({"nftables": cmds.iter().filter_map(|c| c.get("add")).collect::<Vec<_>>()});
        assert!(masquerades_out_of(&listed.to_string(), "eth0"));
        assert!(!masquerades_out_of(&listed.to_string(), "wlan0"));
    }

    #[test]
    fn guest_to_guest_frames_are_left_to_the_bridge_even_with_br_netfilter() {
        let text = plan(&[]).ruleset().to_string();
        let accept = text.find("guest to guest on the bridge").unwrap();
        let drop = text.find("VMs reach no other network").unwrap();
        assert!(accept < drop, "the accept must come before the drop");
    }

    #[test]
    fn a_gated_uplink_forwards_nothing_but_vm_traffic() {
        let text = plan(&["eth0"]).ruleset().to_string();
        assert!(text.contains("forwarding is on here for VMs only"));
        assert!(
            !plan(&[])
                .ruleset()
                .to_string()
                .contains("forwarding is on here")
        );
    }

    #[test]
    fn default_route_parsing() {
        let two = r#"[{"dst":"default","gateway":"192.0.2.254","dev":"up0","flags":[]},
                      {"dst":"default","gateway":"10.0.0.1","dev":"wlan0","metric":600}]"#;
        assert_eq!(parse_default_route(two).as_deref(), Some("up0"));
        assert_eq!(parse_default_route("[]"), None);
        assert_eq!(parse_default_route("nonsense"), None);
    }

    #[test]
    fn status_reads_the_masquerade_rule() {
        let listed = r#"{"nftables":[{"metainfo":{}},{"table":{"family":"ip","name":"banger"}},
            {"rule":{"family":"ip","table":"banger","chain":"postrouting","expr":[
              {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},
                        "right":{"prefix":{"addr":"172.30.0.0","len":24}}}},
              {"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"eth0"}},
              {"masquerade":null}]}}]}"#;
        assert!(masquerades_out_of(listed, "eth0"));
        assert!(!masquerades_out_of(listed, "wlan0"));
        assert!(!masquerades_out_of("{}", "eth0"));
    }

    /// Runs [`nat_netns_inner`] in a fresh network namespace, so the real `nft` and sysctls
    /// touch nothing on the host.
    #[test]
    fn nat_with_the_real_nft_in_a_private_network_namespace() {
        if banger_host::virt::find_program(nat::NFT_PROGRAM).is_none() {
            panic!("nft is not installed: install the Debian package nftables (make deps)");
        }
        crate::vm::testns::run_in_private_netns("vm::nat::tests::nat_netns_inner");
    }

    #[test]
    #[ignore = "runs inside a private network namespace, started by \
                nat_with_the_real_nft_in_a_private_network_namespace"]
    fn nat_netns_inner() {
        crate::vm::testns::require_private_netns();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ip = Ip::find().expect("ip is installed");
            let nft = banger_host::virt::find_program(nat::NFT_PROGRAM).unwrap();
            let run = |args: &[&str]| {
                let out = std::process::Command::new(args[0])
                    .args(&args[1..])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{args:?}: {out:?}");
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let dir = tempfile::tempdir().unwrap();
            let nat = Nat {
                nft: Some(nft.clone()),
                record: dir.path().join("nat.toml"),
                ipv4_conf: PathBuf::from(IPV4_CONF),
            };
            let net = crate::vm::config::VmConfig::default().network;
            ip.ensure_bridge(&net).await.unwrap();

            // No default route: refused, nothing changed.
            let e = nat.apply(&ip, &net).await.unwrap_err();
            assert!(matches!(e, NatError::NoUplink), "{e}");
            assert!(!nat::table_exists(&nft).unwrap());
            assert!(!nat.record.exists());

            // An uplink (one end of a veth pair, with a default route), and someone else's
            // table.
            run(&[
                "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1",
            ]);
            run(&["ip", "link", "set", "up1", "up"]);
            run(&["ip", "addr", "add", "192.0.2.1/24", "dev", "up0"]);
            run(&["ip", "link", "set", "up0", "up"]);
            run(&["ip", "route", "add", "default", "via", "192.0.2.254"]);
            run(&["nft", "add", "table", "inet", "theirs"]);
            let theirs = run(&["nft", "list", "table", "inet", "theirs"]);
            let fwd = |i: &str| std::fs::read_to_string(format!("{IPV4_CONF}/{i}/forwarding"));
            let global = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
            assert_eq!(fwd("up0").unwrap().trim(), "0");

            let plan = nat.apply(&ip, &net).await.unwrap();
            assert_eq!(plan.uplink, "up0");
            assert_eq!(plan.gated, ["up0"], "forwarding was off on the uplink");
            let again = nat.apply(&ip, &net).await.unwrap();
            assert_eq!(again, plan, "a repeat converges");
            let listed = run(&["nft", "-j", "list", "table", "ip", "banger"]);
            assert!(masquerades_out_of(&listed, "up0"), "{listed}");
            let text = run(&["nft", "list", "table", "ip", "banger"]);
            assert_eq!(
                text.matches("masquerade").count(),
                1,
                "replaced, not added: {text}"
            );
            assert_eq!(fwd("up0").unwrap().trim(), "1");
            assert_eq!(fwd("banger0").unwrap().trim(), "1");
            assert_eq!(
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
                global,
                "the global switch is never touched"
            );
            assert_eq!(
                nat.status(Some(&ip), &net).await,
                NatStatus::Active {
                    uplink: "up0".into()
                }
            );

            let done = nat.release().await.unwrap();
            assert!(done.table);
            assert_eq!(done.restored.len(), 2, "{done:?}");
            assert!(!nat::table_exists(&nft).unwrap());
            assert_eq!(fwd("up0").unwrap().trim(), "0");
            assert_eq!(fwd("banger0").unwrap().trim(), "0");
            assert_eq!(run(&["nft", "list", "table", "inet", "theirs"]), theirs);
            assert!(!nat.record.exists());
            assert_eq!(nat.status(Some(&ip), &net).await, NatStatus::Idle);
            let mut off = net.clone();
            off.nat = false;
            assert_eq!(nat.status(Some(&ip), &off).await, NatStatus::Off);
            assert_eq!(nat.release().await.unwrap(), nat::Released::default());
        });
    }
}
