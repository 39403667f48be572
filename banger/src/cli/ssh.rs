//! Reaching a VM over SSH: the host key trusted on first use, the target the daemon names
//! (checked before any of it reaches a command line), the private known_hosts file and ssh's
//! command line.
//!
//! The first key a VM's SSH server offers is pinned in the daemon's store, and from then on
//! `banger` connects only to a server offering that key. This module only compares and pins
//! keys; it must never replace a pinned key (a VM whose key changed is deleted and recreated),
//! and it never decides what the daemon decides (names, limits, which states allow what).

use std::ffi::OsString;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use banger_api::proxies::Daemon1Proxy;
use banger_api::wire::{SshTarget, VmState};
use banger_host::virt::find_program;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use super::daemon_client::failed;

/// Pause between two `ssh-keyscan` attempts.
pub(super) const KEYSCAN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest one `ssh-keyscan` run may take (it gives up on a connection after 2 s itself).
pub(super) const KEYSCAN_RUN_LIMIT: Duration = Duration::from_secs(5);
/// How often the VM's state is read while waiting for SSH.
pub(super) const STATE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The type and base64 blob of a public key line (`ssh-ed25519 AAAA… comment`), comment
/// dropped.
pub(super) fn key_words(key: &str) -> Option<(&str, &str)> {
    let mut words = key.split_whitespace();
    Some((words.next()?, words.next()?))
}

/// The key type named inside an SSH public key blob (its first length-prefixed string).
pub(super) fn blob_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

/// Whether two public keys (`type base64 [comment]`) are the same key.
pub fn same_key(a: &str, b: &str) -> bool {
    match (key_words(a), key_words(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The SHA-256 fingerprint of a public key (`type base64 [comment]`), as `ssh-keygen -l` prints
/// it: `SHA256:` and the unpadded base64 of the SHA-256 of the key blob.
pub fn fingerprint(key: &str) -> Option<String> {
    let (_, b64) = key_words(key)?;
    let blob = STANDARD.decode(b64).ok()?;
    Some(format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(&blob).as_slice())
    ))
}

/// [`fingerprint`], or a word saying the key could not be read.
pub(super) fn fingerprint_label(key: &str) -> String {
    fingerprint(key).unwrap_or_else(|| "(unreadable key)".to_string())
}

/// The only host key type banger pins and lets ssh accept.
pub const HOST_KEY_TYPE: &str = "ssh-ed25519";

/// The first ed25519 host key in `ssh-keyscan` output (`HOST TYPE BASE64` lines), as
/// `ssh-ed25519 BASE64`. Comment lines, blank lines, other key types and lines whose blob does
/// not decode to a key of the named type are skipped.
pub fn parse_keyscan(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut words = line.split_whitespace();
        let (_host, kind, b64) = (words.next()?, words.next()?, words.next()?);
        if kind != HOST_KEY_TYPE {
            return None;
        }
        let blob = STANDARD.decode(b64).ok()?;
        (blob_type(&blob)? == kind).then(|| format!("{kind} {b64}"))
    })
}

/// A VM offered a different SSH host key than the one pinned on first use.
#[derive(Debug)]
pub struct HostKeyChanged {
    /// The VM's name.
    pub vm: String,
    /// The pinned key.
    pub pinned: String,
    /// The key the VM offered.
    pub offered: String,
}

impl std::fmt::Display for HostKeyChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing to connect to VM {}: its SSH host key changed since first use\n  \
             pinned key:  {}\n  offered key: {}\n\
             Someone may be impersonating the VM, or its config disk was replaced. If you \
             replaced the VM's disk on purpose, delete and recreate the VM.",
            self.vm,
            fingerprint_label(&self.pinned),
            fingerprint_label(&self.offered)
        )
    }
}

impl std::error::Error for HostKeyChanged {}

/// What happened to the key a VM offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trust {
    /// It was pinned now (first use).
    Pinned,
    /// It matches the pinned key.
    Verified,
}

impl Trust {
    pub(super) fn word(self) -> &'static str {
        match self {
            Trust::Pinned => "pinned",
            Trust::Verified => "verified",
        }
    }
}

/// Trust on first use: pins `offered` when nothing is pinned, accepts it when it is the pinned
/// key, and refuses with [`HostKeyChanged`] otherwise.
pub(super) async fn trust(
    daemon: &Daemon1Proxy<'_>,
    name: &str,
    pinned: &str,
    offered: &str,
) -> anyhow::Result<Trust> {
    if pinned.is_empty() {
        daemon
            .pin_host_key(name, offered)
            .await
            .map_err(failed(format!(
                "pinning the SSH host key of VM {name} ({})",
                fingerprint_label(offered)
            )))?;
        Ok(Trust::Pinned)
    } else if same_key(pinned, offered) {
        Ok(Trust::Verified)
    } else {
        Err(HostKeyChanged {
            vm: name.to_string(),
            pinned: pinned.to_string(),
            offered: offered.to_string(),
        }
        .into())
    }
}

/// `ssh-keyscan` on `PATH`; `then` says what was (not) done when it is missing.
pub(super) fn find_keyscan(then: &str) -> anyhow::Result<PathBuf> {
    find_program("ssh-keyscan").ok_or_else(|| {
        anyhow!("ssh-keyscan was not found on PATH (install openssh-client); {then}")
    })
}

/// Asks `address` once for its ed25519 host key; `None` when nothing answered in time.
pub(super) async fn keyscan_once(
    keyscan: &Path,
    address: &str,
    limit: Duration,
) -> anyhow::Result<Option<String>> {
    let run = tokio::process::Command::new(keyscan)
        .args(["-T", "2", "-t", "ed25519", "--", address])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, run).await {
        Err(_) => Ok(None),
        Ok(out) => {
            let out = out.with_context(|| format!("running {}", keyscan.display()))?;
            Ok(parse_keyscan(&String::from_utf8_lossy(&out.stdout)))
        }
    }
}

/// Polls the VM's SSH server with `ssh-keyscan` until it offers a host key or `timeout` has
/// passed since `since`; gives up early when the VM is no longer running.
pub(super) async fn wait_for_host_key(
    daemon: &Daemon1Proxy<'_>,
    name: &str,
    address: &str,
    keyscan: &Path,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = since + timeout;
    let mut next_state_check = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_state_check {
            let vm = daemon
                .get_vm(name)
                .await
                .map_err(failed(format!("reading the state of VM {name}")))?;
            if matches!(
                VmState::parse(&vm.state),
                Some(VmState::Stopped | VmState::Stopping | VmState::Failed)
            ) {
                bail!(
                    "VM {name} is {}, so its SSH server cannot answer; its console log may say \
                     why: banger vm logs {name}",
                    vm.state
                );
            }
            next_state_check = now + STATE_CHECK_INTERVAL;
        }
        let left = deadline.saturating_duration_since(now);
        let limit = left.clamp(KEYSCAN_INTERVAL, KEYSCAN_RUN_LIMIT);
        if let Some(key) = keyscan_once(keyscan, address, limit).await? {
            return Ok(key);
        }
        if Instant::now() + KEYSCAN_INTERVAL >= deadline {
            bail!(
                "the SSH server of VM {name} ({address}) did not answer within {} s; the VM was \
                 left running (its console log: banger vm logs {name})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(KEYSCAN_INTERVAL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// What the daemon says about reaching a VM, checked before any of it reaches a command line.

/// The daemon's answer to "how do I reach VM `name`" was not something banger passes to ssh.
#[derive(Debug)]
pub struct BadSshTarget {
    /// The VM.
    pub vm: String,
    /// What was wrong, naming the field and its value.
    pub why: String,
}

impl std::fmt::Display for BadSshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing to connect to VM {}: bangerd described it with {}; nothing was run. \
             Check that org.banger.Daemon1 is the installed bangerd (banger system status)",
            self.vm, self.why
        )
    }
}

impl std::error::Error for BadSshTarget {}

/// Checks every field of `target` that banger hands to `ssh` or `ssh-keyscan`, or writes into a
/// known_hosts file: the address must be an IP address, the user a portable login name, the
/// identity file an absolute path, the host key one `ssh-ed25519 BASE64` key. Whoever answers on
/// the daemon's name, and whatever is in its store, `banger vm ssh` (perhaps run as root) must
/// never turn it into an ssh option or an extra known_hosts line.
pub fn check_ssh_target(vm: &str, target: &SshTarget) -> Result<(), BadSshTarget> {
    let bad = |why: String| BadSshTarget {
        vm: vm.to_string(),
        why,
    };
    if target.address.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(format!(
            "the address {:?}, which is not an IP address",
            target.address
        )));
    }
    if !target.user.is_empty() && !banger_host::users::is_portable_login_name(&target.user) {
        return Err(bad(format!(
            "the user {:?}, which is not a login name (letters, digits, '_', '.', '-', not \
             starting with '-' or '.')",
            target.user
        )));
    }
    if !target.identity_file.is_empty()
        && (!target.identity_file.starts_with('/')
            || target.identity_file.contains(char::is_control))
    {
        return Err(bad(format!(
            "the identity file {:?}, which is not an absolute path",
            target.identity_file
        )));
    }
    if !target.host_key.is_empty() && !is_single_host_key(&target.host_key) {
        return Err(bad(format!(
            "the host key {:?}, which is not one {HOST_KEY_TYPE} key",
            target.host_key
        )));
    }
    Ok(())
}

/// How to reach VM `name`, as the daemon says, checked by [`check_ssh_target`].
pub(super) async fn ssh_target(daemon: &Daemon1Proxy<'_>, name: &str) -> anyhow::Result<SshTarget> {
    let target = daemon
        .get_ssh_target(name)
        .await
        .map_err(failed(format!("looking up how to reach VM {name}")))?;
    check_ssh_target(name, &target)?;
    Ok(target)
}

/// Whether `key` is exactly `ssh-ed25519 BASE64` (an optional comment of printable words
/// allowed) whose blob is an ed25519 key: nothing that could add a line to known_hosts.
pub(super) fn is_single_host_key(key: &str) -> bool {
    if key.contains(char::is_control) {
        return false;
    }
    let Some((kind, b64)) = key_words(key) else {
        return false;
    };
    kind == HOST_KEY_TYPE
        && STANDARD
            .decode(b64)
            .ok()
            .is_some_and(|blob| blob_type(&blob) == Some(HOST_KEY_TYPE))
}

// ---------------------------------------------------------------------------------------------
// The known_hosts file handed to ssh.

/// A private `known_hosts` file holding only the VM's pinned key, removed when dropped.
pub(super) struct KnownHostsFile {
    pub(super) path: PathBuf,
}

impl KnownHostsFile {
    /// Writes `ADDRESS KEY` to a new file (mode 0600) in `$XDG_RUNTIME_DIR`, or the temporary
    /// directory when that is not set.
    pub(super) fn create(address: &str, key: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute() && d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut attempt = 0u32;
        loop {
            let path = dir.join(format!(
                "banger-known-hosts-{}-{nanos:08x}-{attempt}",
                std::process::id()
            ));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match file {
                Ok(mut f) => {
                    let this = KnownHostsFile { path };
                    f.write_all(format!("{address} {key}\n").as_bytes())
                        .with_context(|| format!("writing {}", this.path.display()))?;
                    return Ok(this);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("creating a known_hosts file in {}", dir.display())));
                }
            }
        }
    }
}

impl Drop for KnownHostsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The arguments of `ssh` (after the program name).
pub(super) fn ssh_args(
    target: &SshTarget,
    known_hosts: &Path,
    tty: bool,
    command: &[String],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if !target.identity_file.is_empty() {
        args.push("-i".into());
        args.push(target.identity_file.clone().into());
    }
    let known_hosts = known_hosts.to_string_lossy();
    let known_hosts = if known_hosts.contains(char::is_whitespace) {
        format!("\"{known_hosts}\"")
    } else {
        known_hosts.into_owned()
    };
    for option in [
        "IdentitiesOnly=yes".to_string(),
        format!("UserKnownHostsFile={known_hosts}"),
        "GlobalKnownHostsFile=/dev/null".to_string(),
        "StrictHostKeyChecking=yes".to_string(),
        "HostKeyAlgorithms=ssh-ed25519".to_string(),
        "BatchMode=yes".to_string(),
        "ConnectTimeout=5".to_string(),
        "LogLevel=ERROR".to_string(),
    ] {
        args.push("-o".into());
        args.push(option.into());
    }
    args.push(if tty { "-t" } else { "-T" }.into());
    // Options end here: whatever follows is the destination and the remote command, never an
    // option (ssh parses options again after the destination unless `--` came before it).
    args.push("--".into());
    args.push(if target.user.is_empty() {
        target.address.clone().into()
    } else {
        format!("{}@{}", target.user, target.address).into()
    });
    args.extend(command.iter().map(OsString::from));
    args
}

/// A child's exit status as an exit code (128 + the signal when it was killed by one).
pub(super) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A key and its fingerprint as printed by `ssh-keygen -lf` (OpenSSH 9).
    pub(crate) const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIErCfDbv70f4qhrCItn6lI5PNnbezM/EhIPhvGnkxgRZ test";
    pub(crate) const KEY_FP: &str = "SHA256:iWqCKu15iob4FSM32P+H4QgsJTvmqHOstI0OEsd/QSA";
    const ECDSA_KEY: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCT7jXbp+hkzWh5hb9ap/lD0bXmRzZwXNq4uHMs1gvAeirKwgd55dtMTJ+3NKwxd7myS3I8aCCWvMTvuGy1mVCk= test";
    const ECDSA_FP: &str = "SHA256:KBx0Rp9IMsdH4XThAujJPGlBY3wI5oKumSGcRvwQ0zU";
    const OTHER_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMvQGoWtyWyjj+1jkpN4gM7qsAxfyXPLrEO8B6L4bt8u other";
    const OTHER_FP: &str = "SHA256:bn1dTdWxQl74rTepzg7c59/DJbvZ/G9hU6jHMg+FfCE";

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        assert_eq!(fingerprint(KEY).as_deref(), Some(KEY_FP));
        assert_eq!(fingerprint(ECDSA_KEY).as_deref(), Some(ECDSA_FP));
        // Without the comment, and as ssh-keyscan gives it (after the host).
        let bare = KEY.rsplit_once(' ').unwrap().0;
        assert_eq!(fingerprint(bare).as_deref(), Some(KEY_FP));
        assert_eq!(fingerprint(""), None);
        assert_eq!(fingerprint("ssh-ed25519"), None);
        assert_eq!(fingerprint("ssh-ed25519 !!!not-base64"), None);
    }

    #[test]
    fn fingerprint_matches_a_freshly_generated_key() {
        let Some(keygen) = find_program("ssh-keygen") else {
            eprintln!("ssh-keygen is not installed; skipped");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let ok = std::process::Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "c", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let out = std::process::Command::new(&keygen)
            .arg("-lf")
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let listed = String::from_utf8(out.stdout).unwrap();
        let theirs = listed.split_whitespace().nth(1).unwrap();
        assert_eq!(fingerprint(&public).as_deref(), Some(theirs), "{listed}");
    }

    #[test]
    fn keys_compare_without_comments() {
        let bare = KEY.rsplit_once(' ').unwrap().0;
        assert!(same_key(KEY, bare));
        assert!(same_key(bare, &format!("  {bare} other comment ")));
        assert!(!same_key(KEY, ECDSA_KEY));
        assert!(!same_key(KEY, OTHER_KEY));
        assert!(!same_key("", ""));
        assert!(!same_key(KEY, ""));
    }

    #[test]
    fn keyscan_output() {
        let bare = KEY.rsplit_once(' ').unwrap().0;
        let blob = bare.split_once(' ').unwrap().1;
        let out = format!(
            "# 172.30.0.2:22 SSH-2.0-OpenSSH_9.6\n\n172.30.0.2 {bare}\n172.30.0.2 {ECDSA_KEY}\n"
        );
        assert_eq!(parse_keyscan(&out).as_deref(), Some(bare));
        // Only ed25519 keys count; the first one wins.
        let other = OTHER_KEY.rsplit_once(' ').unwrap().0;
        let out = format!("172.30.0.2 {ECDSA_KEY}\r\n172.30.0.2 {other}\r\n172.30.0.2 {bare}\n");
        assert_eq!(parse_keyscan(&out).as_deref(), Some(other));
        assert_eq!(parse_keyscan(&format!("172.30.0.2 {ECDSA_KEY}\n")), None);
        // Garbage, comments, truncated lines and keys whose blob names another type are skipped.
        for garbage in [
            "",
            "\n\n",
            "# 172.30.0.2:22 SSH-2.0-OpenSSH_9.6\n",
            "172.30.0.2\n",
            "172.30.0.2 ssh-ed25519\n",
            "172.30.0.2 ssh-ed25519 !!!!\n",
            "172.30.0.2 ssh-ed25519 AAAA\n",
            "connect to host 172.30.0.2 port 22: Connection refused\n",
        ] {
            assert_eq!(parse_keyscan(garbage), None, "{garbage:?}");
        }
        let lying = format!("172.30.0.2 ssh-rsa {blob}\n172.30.0.2 {bare}\n");
        assert_eq!(parse_keyscan(&lying).as_deref(), Some(bare));
    }

    #[test]
    fn host_key_changed_message() {
        let e = anyhow::Error::new(HostKeyChanged {
            vm: "web1".into(),
            pinned: KEY.into(),
            offered: OTHER_KEY.into(),
        });
        let text = format!("banger: {e:#}");
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "banger: refusing to connect to VM web1: its SSH host key changed since first use"
            )
        );
        assert!(text.contains(&format!("pinned key:  {KEY_FP}")), "{text}");
        assert!(text.contains(&format!("offered key: {OTHER_FP}")), "{text}");
        assert!(text.contains(
            "Someone may be impersonating the VM, or its config disk was replaced. If you \
             replaced the VM's disk on purpose, delete and recreate the VM."
        ));
        assert_eq!(
            super::super::Failure::from(e).code,
            super::super::EXIT_FAILED
        );
    }

    fn target() -> SshTarget {
        SshTarget {
            address: "172.30.0.2".into(),
            user: "banger".into(),
            identity_file: "/var/lib/banger/ssh/id_ed25519".into(),
            host_key: KEY.into(),
        }
    }

    fn joined(args: Vec<OsString>) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn ssh_command_line() {
        let kh = Path::new("/run/user/1000/banger-known-hosts-1-0");
        let login = joined(ssh_args(&target(), kh, true, &[]));
        assert_eq!(
            login,
            "-i /var/lib/banger/ssh/id_ed25519 -o IdentitiesOnly=yes \
             -o UserKnownHostsFile=/run/user/1000/banger-known-hosts-1-0 \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
             -o HostKeyAlgorithms=ssh-ed25519 -o BatchMode=yes -o ConnectTimeout=5 \
             -o LogLevel=ERROR -t -- banger@172.30.0.2"
        );
        let cmd = joined(ssh_args(
            &target(),
            kh,
            false,
            &["uname".into(), "-a".into()],
        ));
        assert!(cmd.ends_with(" -T -- banger@172.30.0.2 uname -a"), "{cmd}");
        let spaced = ssh_args(&target(), Path::new("/tmp/a b/kh"), false, &[]);
        assert!(spaced.contains(&OsString::from("UserKnownHostsFile=\"/tmp/a b/kh\"")));
    }

    #[test]
    fn ssh_targets_that_could_become_options_are_refused() {
        assert!(check_ssh_target("web1", &target()).is_ok());
        let empty_user = SshTarget {
            user: String::new(),
            host_key: String::new(),
            ..target()
        };
        assert!(check_ssh_target("web1", &empty_user).is_ok());
        assert!(
            check_ssh_target(
                "web1",
                &SshTarget {
                    address: "fd00::2".into(),
                    ..target()
                }
            )
            .is_ok()
        );
        let cases: [(SshTarget, &str); 7] = [
            (
                SshTarget {
                    address: "-oProxyCommand=touch /tmp/x".into(),
                    ..target()
                },
                "the address",
            ),
            (
                SshTarget {
                    address: "web1.example".into(),
                    ..target()
                },
                "not an IP address",
            ),
            (
                SshTarget {
                    address: String::new(),
                    ..target()
                },
                "the address",
            ),
            (
                SshTarget {
                    user: "-oProxyCommand=sh".into(),
                    ..target()
                },
                "the user",
            ),
            (
                SshTarget {
                    user: "root@10.0.0.1".into(),
                    ..target()
                },
                "the user",
            ),
            (
                SshTarget {
                    identity_file: "id_ed25519".into(),
                    ..target()
                },
                "the identity file",
            ),
            (
                SshTarget {
                    host_key: format!("{KEY}\n@cert-authority * {KEY}"),
                    ..target()
                },
                "the host key",
            ),
        ];
        for (t, needle) in cases {
            let e = check_ssh_target("web1", &t).unwrap_err().to_string();
            assert!(
                e.starts_with("refusing to connect to VM web1: bangerd described it with"),
                "{e}"
            );
            assert!(e.contains(needle) && e.contains("nothing was run"), "{e}");
        }
        let rsa = SshTarget {
            host_key: "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ".into(),
            ..target()
        };
        assert!(check_ssh_target("web1", &rsa).is_err());
    }

    #[test]
    fn known_hosts_file_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let f = KnownHostsFile::create("172.30.0.2", "ssh-ed25519 AAAA").unwrap();
        let path = f.path.clone();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "172.30.0.2 ssh-ed25519 AAAA\n"
        );
        let g = KnownHostsFile::create("172.30.0.3", "ssh-ed25519 BBBB").unwrap();
        assert_ne!(g.path, path);
        drop(f);
        assert!(!path.exists());
    }
}
