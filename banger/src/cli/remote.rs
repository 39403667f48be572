//! `banger -H [USER@]HOST[:PORT]`: the services of another host, reached as `systemctl -H`
//! reaches them. The bus connection is the standard input and output of
//! `ssh -xT … HOST systemd-stdio-bridge` (zbus's `unixexec:` transport), so the remote bus sees
//! the SSH user, its policy and polkit decide as they would there, and ssh checks the host key
//! against the user's known_hosts as for any login.
//!
//! The host is checked before it reaches ssh's command line: a value that ssh could read as an
//! option (`-oProxyCommand=…`) never becomes one.

use std::ffi::OsString;
use std::sync::OnceLock;

/// The program run on the remote host; it connects its standard I/O to the system bus there.
pub const BRIDGE: &str = "systemd-stdio-bridge";

/// The host `-H` named, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    /// The login name, when given.
    pub user: Option<String>,
    /// A host name or an IP address (IPv6 without its brackets).
    pub host: String,
    /// The SSH port, when given.
    pub port: Option<u16>,
    /// As it was given, for messages.
    pub spec: String,
}

/// Why a `-H` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "-H {spec:?}: {why}; expected [USER@]HOST[:PORT] (e.g. alice@build1, build1:2222, [2001:db8::1])"
)]
pub struct BadHost {
    spec: String,
    why: &'static str,
}

fn is_login_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['-', '.'])
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

impl RemoteHost {
    /// Parses `[USER@]HOST[:PORT]`; an IPv6 address goes in brackets (`[2001:db8::1]:22`).
    pub fn parse(spec: &str) -> Result<Self, BadHost> {
        let bad = |why| BadHost {
            spec: spec.to_string(),
            why,
        };
        let (user, rest) = match spec.rsplit_once('@') {
            Some((user, rest)) => {
                if !is_login_name(user) {
                    return Err(bad(
                        "the user is not a login name (letters, digits, '.', '_', '-')",
                    ));
                }
                (Some(user.to_string()), rest)
            }
            None => (None, spec),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address opened with '[' is not closed"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the address in brackets is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (addr.to_string(), port)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (rest.to_string(), None),
            }
        };
        if !host.contains(':') && !is_host_name(&host) {
            return Err(bad(
                "the host is not a host name or an address (letters, digits, '.', '-'; not \
                 starting with '-')",
            ));
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            ),
        };
        Ok(RemoteHost {
            user,
            host,
            port,
            spec: spec.to_string(),
        })
    }

    /// The arguments of `ssh` that run the bridge there: no X11, no terminal, no escape
    /// character (the stream is binary), and `--` before the host.
    pub fn ssh_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-xT".into(), "-e".into(), "none".into()];
        if let Some(port) = self.port {
            args.push("-p".into());
            args.push(port.to_string().into());
        }
        if let Some(user) = &self.user {
            args.push("-l".into());
            args.push(user.into());
        }
        args.push("--".into());
        args.push(self.host.clone().into());
        args.push(BRIDGE.into());
        args
    }

    /// How to run `command` on the host itself, for messages: `ssh -t alice@build1 banger …`.
    pub fn run_there(&self, command: &str) -> String {
        let port = self.port.map(|p| format!(" -p {p}")).unwrap_or_default();
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("ssh -t{port} {user}{host} banger {command}")
    }
}

static REMOTE: OnceLock<RemoteHost> = OnceLock::new();

/// Sends every bus connection to `host` from now on (`banger -H`).
pub fn set(host: RemoteHost) {
    let _ = REMOTE.set(host);
}

/// The host `-H` named, if any.
pub fn get() -> Option<&'static RemoteHost> {
    REMOTE.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn hosts_parse_as_systemctl_takes_them() {
        let h = RemoteHost::parse("alice@build1.example.org").unwrap();
        assert_eq!(
            (h.user.as_deref(), h.host.as_str(), h.port),
            (Some("alice"), "build1.example.org", None)
        );
        let h = RemoteHost::parse("192.0.2.7:2222").unwrap();
        assert_eq!(
            (h.user, h.host.as_str(), h.port),
            (None, "192.0.2.7", Some(2222))
        );
        let h = RemoteHost::parse("bob@[2001:db8::1]:22").unwrap();
        assert_eq!(
            (h.user.as_deref(), h.host.as_str(), h.port),
            (Some("bob"), "2001:db8::1", Some(22))
        );
        assert_eq!(RemoteHost::parse("[::1]").unwrap().host, "::1");
    }

    #[test]
    fn hosts_that_could_become_ssh_options_are_refused() {
        for (spec, why) in [
            ("", "the host is not"),
            ("-oProxyCommand=touch /tmp/x", "the host is not"),
            ("alice@-oProxyCommand=x", "the host is not"),
            ("-l@build1", "the user is not"),
            ("al ice@build1", "the user is not"),
            ("build1 -v", "the host is not"),
            ("build1:0", "the port is not"),
            ("build1:99999", "the port is not"),
            ("build1:ssh", "the port is not"),
            ("[2001:db8::1", "is not closed"),
            ("[build1]", "not an IPv6 address"),
            ("[::1]x", "junk after"),
            ("build1\nx", "the host is not"),
        ] {
            let e = RemoteHost::parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec:?}: {e}");
            assert!(e.contains("[USER@]HOST[:PORT]"), "{e}");
        }
    }

    #[test]
    fn ssh_runs_the_bridge_with_the_host_after_the_options() {
        let h = RemoteHost::parse("alice@build1:2222").unwrap();
        assert_eq!(
            words(h.ssh_args()),
            [
                "-xT",
                "-e",
                "none",
                "-p",
                "2222",
                "-l",
                "alice",
                "--",
                "build1",
                "systemd-stdio-bridge"
            ]
        );
        assert_eq!(
            words(RemoteHost::parse("build1").unwrap().ssh_args()),
            ["-xT", "-e", "none", "--", "build1", "systemd-stdio-bridge"]
        );
        assert_eq!(
            h.run_there("vm ssh web1"),
            "ssh -t -p 2222 alice@build1 banger vm ssh web1"
        );
        assert_eq!(
            RemoteHost::parse("[::1]").unwrap().run_there("doctor"),
            "ssh -t [::1] banger doctor"
        );
    }
}
