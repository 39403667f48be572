//! `banger vm create|start|stop|rm|list|show|ssh|logs`, and what `banger image` shares with it:
//! the connection to the owner daemon and how its refusals are told, tables, sizes and times for
//! people.
//!
//! SSH host keys are trusted on first use: the first key a VM's SSH server offers is pinned in
//! the daemon's store, and from then on `banger` connects only to a server offering that key.
//! This module only compares and pins keys; it must never replace a pinned key (a VM whose key
//! changed is deleted and recreated), and it never decides what the daemon decides (names,
//! limits, which states allow what).

use std::ffi::OsString;
use std::io::{ErrorKind, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use banger_api::error::ErrorKind as Reply;
use banger_api::proxies::Daemon1Proxy;
use banger_api::wire::{SshTarget, VmInfo, VmState};
use banger_host::virt::find_program;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use super::{CmdResult, EXIT_OK, bus};

/// The error the bus sends when no service provides a name (banger is not installed).
/// One MiB in bytes.
pub const MIB: u64 = 1 << 20;
/// The most memory a VM may be given on the command line: 1 TiB, in MiB.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// How long `vm ssh` waits for a VM whose host key is not pinned yet to answer.
const PIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two `ssh-keyscan` attempts.
const KEYSCAN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest one `ssh-keyscan` run may take (it gives up on a connection after 2 s itself).
const KEYSCAN_RUN_LIMIT: Duration = Duration::from_secs(5);
/// How often the VM's state is read while waiting for SSH.
const STATE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often `vm logs --follow` reads the console log again.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

const SSH_EXIT_CODES_HELP: &str = "\
Exit codes:
  the exit code of ssh, which is the remote command's (255: ssh failed to connect)
  1  the VM's SSH host key differs from the pinned one (nothing was sent to it), or banger
     could not look up or pin the VM's key
  3  not authorized (only the owner and root may manage VMs)";

/// `banger vm …`.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a stopped VM from an image (with --start, start it and wait for SSH as well).
    Create {
        /// Name of the new VM.
        name: String,
        /// The image to make it from (see `banger image list`).
        #[arg(long, value_name = "IMAGE")]
        image: String,
        /// Virtual CPUs.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        cpus: u32,
        /// Memory: a number of MiB, or a number with M, MiB, G or GiB (512M, 1G, 1.5G).
        #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_memory_mib)]
        memory: u32,
        /// Start the VM once it is created, as `banger vm start` does.
        #[arg(long)]
        start: bool,
        /// With --start: return once the VM's unit runs, without waiting for SSH.
        #[arg(long, requires = "start")]
        no_wait: bool,
        /// With --start: how long to wait for SSH to answer, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 120, requires = "start",
              value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
    },
    /// Start a VM and wait until its SSH server answers; pin its host key on first contact.
    ///
    /// The VM runs as the systemd unit banger-vm-<id>.service in banger.slice. The time printed
    /// is counted from the start request to the first answer of the guest's SSH server. If the
    /// guest offers a different host key than the one pinned, banger refuses and exits 1; the
    /// VM keeps running.
    Start {
        /// The VM.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop a VM (its unit is stopped; its disk and settings are kept).
    Stop {
        /// The VM.
        name: String,
    },
    /// Delete a stopped VM and its files.
    Rm {
        /// The VM.
        name: String,
        /// Stop the VM first if it is running.
        #[arg(long)]
        force: bool,
    },
    /// List VMs: name, state, address, CPUs, memory, image and id.
    List {
        /// Print a JSON array with every field instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show everything about one VM, including its unit and pinned SSH host key.
    Show {
        /// The VM.
        name: String,
        /// Print a JSON object instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
    /// Log in to a VM over SSH, or run a command in it (`banger vm ssh web1 -- uname -a`).
    ///
    /// Connects only to the SSH host key pinned for the VM; if none is pinned yet, waits up to
    /// 30 s for the VM to answer and pins the key it offers. Like ssh, the words of the command
    /// are joined with spaces and run by the guest user's shell.
    #[command(after_help = SSH_EXIT_CODES_HELP)]
    Ssh {
        /// The VM.
        name: String,
        /// The command to run instead of a login shell (put it after `--`).
        #[arg(
            value_name = "CMD",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        command: Vec<String>,
    },
    /// Print the end of a VM's serial console log; with --follow, keep printing until Ctrl-C.
    Logs {
        /// The VM.
        name: String,
        /// Keep printing what the console writes, until Ctrl-C.
        #[arg(long, short = 'f')]
        follow: bool,
        /// How many bytes from the end of the log to print first.
        #[arg(long, value_name = "N", default_value_t = 65536,
              value_parser = clap::value_parser!(u64).range(1..))]
        bytes: u64,
    },
}

/// How `vm start` waits for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct WaitArgs {
    /// Return once the VM's unit runs, without waiting for SSH (the host key is then pinned on
    /// the first `banger vm ssh`).
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for SSH to answer, in seconds; the VM keeps running if it does not.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// Runs one `banger vm` command.
pub async fn run(command: VmCommand) -> CmdResult {
    match command {
        VmCommand::Create {
            name,
            image,
            cpus,
            memory,
            start,
            no_wait,
            timeout,
        } => {
            let wait = start.then_some(WaitArgs { no_wait, timeout });
            create(&name, &image, cpus, memory, wait).await
        }
        VmCommand::Start { name, wait } => {
            let daemon = daemon().await?;
            start(&daemon, &name, wait).await
        }
        VmCommand::Stop { name } => stop(&name).await,
        VmCommand::Rm { name, force } => rm(&name, force).await,
        VmCommand::List { json } => list(json).await,
        VmCommand::Show { name, json } => show(&name, json).await,
        VmCommand::Ssh { name, command } => ssh(&name, &command).await,
        VmCommand::Logs {
            name,
            follow,
            bytes,
        } => logs(&name, follow, bytes).await,
    }
}

// ---------------------------------------------------------------------------------------------
// The owner daemon, shared with `banger image`.

/// Connects to the system bus and returns a proxy for the owner daemon (started on demand).
pub async fn daemon() -> anyhow::Result<Daemon1Proxy<'static>> {
    let conn = bus::system_bus().await?;
    Daemon1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .context("making a proxy for bangerd")
}

/// Turns a failed call to the owner daemon into an error that starts with `what` (which names
/// the object, e.g. "creating VM web1") and ends with the daemon's message and error name.
/// When the bus itself refused the caller, prints a hint saying who may manage VMs.
pub fn failed(what: impl std::fmt::Display) -> impl FnOnce(zbus::Error) -> anyhow::Error {
    let what = what.to_string();
    move |e| {
        let e = bus::CallError::from(&e);
        if let Some(hint) = e.kind.and_then(hint_for) {
            eprintln!("banger: hint: {hint}");
        }
        anyhow::Error::new(e).context(what)
    }
}

/// What to tell people after a D-Bus error of this kind, if anything.
fn hint_for(kind: Reply) -> Option<&'static str> {
    match kind {
        Reply::AccessDenied => Some(
            "VMs belong to the user who installed banger (see `banger system status`); only that \
             user and root can manage them.",
        ),
        Reply::ServiceUnknown => {
            Some("banger's services are not installed; see `banger system install`.")
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Output for people, shared with `banger image`.

/// Renders rows under a header as columns separated by two spaces; the last column is not
/// padded.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Unix seconds as UTC to the minute: `2026-11-22 05:12`.
pub fn utc_minute(unix: i64) -> String {
    let t = banger_api::time::rfc3339(u64::try_from(unix).unwrap_or(0));
    format!("{} {}", &t[..10], &t[11..16])
}

/// A byte count in whole MiB, rounded to nearest (at least 1 MiB for anything but nothing).
pub fn mib_label(bytes: u64) -> String {
    let mib = if bytes == 0 {
        0
    } else {
        ((bytes + MIB / 2) / MIB).max(1)
    };
    format!("{mib} MiB")
}

/// Memory for people: `256 MiB`, `2 GiB`.
pub fn memory_label(mib: u32) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// The first 12 hex digits of a SHA-256, or `-` when there is none.
pub fn short_sha256(hex: &str) -> String {
    if hex.is_empty() {
        "-".to_string()
    } else {
        hex.chars().take(12).collect()
    }
}

/// `-` for an empty value.
fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

// ---------------------------------------------------------------------------------------------
// Memory sizes.

/// Parses a memory size into MiB: a plain number is MiB; `M`/`MiB` and `G`/`GiB` (any case)
/// may follow, and a decimal point is allowed (`1.5G`) as long as the result is a whole number
/// of MiB. Zero and more than 1 TiB are refused.
pub fn parse_memory_mib(s: &str) -> Result<u32, String> {
    let not_a_size = || {
        format!(
            "{s:?} is not a memory size: use a whole number of MiB, or a number followed by M, \
             MiB, G or GiB (e.g. 512M, 1G, 1.5G)"
        )
    };
    let too_big =
        || format!("{s:?} is more than 1 TiB ({MAX_MEMORY_MIB} MiB), the most a VM may have");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_mib: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mib" => 1,
        "g" | "gib" => 1024,
        _ => return Err(not_a_size()),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || frac.contains('.') || (number.contains('.') && frac.is_empty()) {
        return Err(not_a_size());
    }
    if frac.len() > 18 {
        return Err(format!("{s:?} has too many decimals for a memory size"));
    }
    let mantissa: u128 = format!("{int}{frac}").parse().map_err(|_| too_big())?;
    let scale = 10u128.pow(frac.len() as u32);
    let total = mantissa.checked_mul(unit_mib).ok_or_else(too_big)?;
    if !total.is_multiple_of(scale) {
        return Err(format!("{s:?} is not a whole number of MiB"));
    }
    let mib = total / scale;
    if mib == 0 {
        return Err(format!("{s:?} is zero; a VM needs some memory"));
    }
    if mib > u128::from(MAX_MEMORY_MIB) {
        return Err(too_big());
    }
    u32::try_from(mib).map_err(|_| too_big())
}

// ---------------------------------------------------------------------------------------------
// SSH host keys.

/// The type and base64 blob of a public key line (`ssh-ed25519 AAAA… comment`), comment
/// dropped.
fn key_words(key: &str) -> Option<(&str, &str)> {
    let mut words = key.split_whitespace();
    Some((words.next()?, words.next()?))
}

/// The key type named inside an SSH public key blob (its first length-prefixed string).
fn blob_type(blob: &[u8]) -> Option<&str> {
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
fn fingerprint_label(key: &str) -> String {
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
enum Trust {
    /// It was pinned now (first use).
    Pinned,
    /// It matches the pinned key.
    Verified,
}

impl Trust {
    fn word(self) -> &'static str {
        match self {
            Trust::Pinned => "pinned",
            Trust::Verified => "verified",
        }
    }
}

/// Trust on first use: pins `offered` when nothing is pinned, accepts it when it is the pinned
/// key, and refuses with [`HostKeyChanged`] otherwise.
async fn trust(
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
fn find_keyscan(then: &str) -> anyhow::Result<PathBuf> {
    find_program("ssh-keyscan").ok_or_else(|| {
        anyhow!("ssh-keyscan was not found on PATH (install openssh-client); {then}")
    })
}

/// Asks `address` once for its ed25519 host key; `None` when nothing answered in time.
async fn keyscan_once(
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
async fn wait_for_host_key(
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
async fn ssh_target(daemon: &Daemon1Proxy<'_>, name: &str) -> anyhow::Result<SshTarget> {
    let target = daemon
        .get_ssh_target(name)
        .await
        .map_err(failed(format!("looking up how to reach VM {name}")))?;
    check_ssh_target(name, &target)?;
    Ok(target)
}

/// Whether `key` is exactly `ssh-ed25519 BASE64` (an optional comment of printable words
/// allowed) whose blob is an ed25519 key: nothing that could add a line to known_hosts.
fn is_single_host_key(key: &str) -> bool {
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
struct KnownHostsFile {
    path: PathBuf,
}

impl KnownHostsFile {
    /// Writes `ADDRESS KEY` to a new file (mode 0600) in `$XDG_RUNTIME_DIR`, or the temporary
    /// directory when that is not set.
    fn create(address: &str, key: &str) -> anyhow::Result<Self> {
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
fn ssh_args(
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
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// The commands.

async fn create(
    name: &str,
    image: &str,
    cpus: u32,
    memory_mib: u32,
    start_after: Option<WaitArgs>,
) -> CmdResult {
    if let Some(w) = start_after
        && !w.no_wait
    {
        find_keyscan("nothing was created (or use --no-wait)")?;
    }
    let daemon = daemon().await?;
    let vm = daemon
        .create_vm(name, image, cpus, memory_mib)
        .await
        .map_err(failed(format!("creating VM {name}")))?;
    println!(
        "created vm {} (image {}, {} CPU{}, {}, address {})",
        vm.name,
        vm.image,
        vm.cpus,
        if vm.cpus == 1 { "" } else { "s" },
        memory_label(vm.memory_mib),
        or_dash(&vm.address)
    );
    match start_after {
        Some(wait) => start(&daemon, name, wait).await,
        None => Ok(EXIT_OK),
    }
}

/// `vm start`: start, then (unless told not to) wait for SSH and pin or check the host key.
async fn start(daemon: &Daemon1Proxy<'_>, name: &str, wait: WaitArgs) -> CmdResult {
    let keyscan = if wait.no_wait {
        None
    } else {
        Some(find_keyscan("nothing was started (or use --no-wait)")?)
    };
    let since = Instant::now();
    let vm = daemon
        .start_vm(name)
        .await
        .map_err(failed(format!("starting VM {name}")))?;
    let Some(keyscan) = keyscan else {
        println!(
            "vm {name} started at {} ({}); not waiting for SSH",
            or_dash(&vm.address),
            vm.unit
        );
        return Ok(EXIT_OK);
    };
    let target = ssh_target(daemon, name).await?;
    let offered = wait_for_host_key(
        daemon,
        name,
        &target.address,
        &keyscan,
        since,
        Duration::from_secs(wait.timeout),
    )
    .await?;
    let waited = since.elapsed();
    let trust = trust(daemon, name, &target.host_key, &offered).await?;
    println!(
        "vm {name} running at {}; SSH answered after {:.1} s (host key {} {})",
        target.address,
        waited.as_secs_f64(),
        fingerprint_label(&offered),
        trust.word()
    );
    Ok(EXIT_OK)
}

async fn stop(name: &str) -> CmdResult {
    let daemon = daemon().await?;
    daemon
        .stop_vm(name)
        .await
        .map_err(failed(format!("stopping VM {name}")))?;
    println!("vm {name} stopped");
    Ok(EXIT_OK)
}

async fn rm(name: &str, force: bool) -> CmdResult {
    let daemon = daemon().await?;
    if force {
        let vm = daemon
            .get_vm(name)
            .await
            .map_err(failed(format!("looking up VM {name}; nothing was deleted")))?;
        if VmState::parse(&vm.state).is_some_and(VmState::is_live) {
            daemon
                .stop_vm(name)
                .await
                .map_err(failed(format!("stopping VM {name} before deleting it")))?;
            println!("vm {name} stopped");
        }
    }
    daemon
        .delete_vm(name)
        .await
        .map_err(failed(format!("deleting VM {name}")))?;
    println!("deleted vm {name}");
    Ok(EXIT_OK)
}

/// A VM as JSON: every field of [`VmInfo`] in its order, then `host_key_fingerprint` (""
/// when no key is pinned).
#[derive(Debug, serde::Serialize)]
struct VmJson<'a> {
    #[serde(flatten)]
    vm: &'a VmInfo,
    host_key_fingerprint: String,
}

fn vm_json(vm: &VmInfo) -> VmJson<'_> {
    VmJson {
        vm,
        host_key_fingerprint: fingerprint(&vm.host_key).unwrap_or_default(),
    }
}

/// The `vm list` table.
fn vm_table(vms: &[VmInfo]) -> String {
    let rows: Vec<Vec<String>> = vms
        .iter()
        .map(|vm| {
            vec![
                vm.name.clone(),
                or_dash(&vm.state).to_string(),
                or_dash(&vm.address).to_string(),
                vm.cpus.to_string(),
                memory_label(vm.memory_mib),
                vm.image.clone(),
                vm.id.clone(),
            ]
        })
        .collect();
    render_table(
        &["NAME", "STATE", "ADDRESS", "CPUS", "MEMORY", "IMAGE", "ID"],
        &rows,
    )
}

async fn list(json: bool) -> CmdResult {
    let daemon = daemon().await?;
    let mut vms = daemon.list_vms().await.map_err(failed("listing VMs"))?;
    vms.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        let all: Vec<VmJson<'_>> = vms.iter().map(vm_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if vms.is_empty() {
        eprintln!("no VMs; create one with: banger vm create NAME --image IMAGE");
    } else {
        print!("{}", vm_table(&vms));
    }
    Ok(EXIT_OK)
}

/// The `vm show` lines.
fn show_lines(vm: &VmInfo) -> String {
    let host_key = match fingerprint(&vm.host_key) {
        Some(fp) => format!("{fp} ({})", key_words(&vm.host_key).map_or("", |k| k.0)),
        None if vm.host_key.is_empty() => "not pinned yet".to_string(),
        None => "(unreadable key)".to_string(),
    };
    let fields = [
        ("name", vm.name.clone()),
        ("id", vm.id.clone()),
        ("state", or_dash(&vm.state).to_string()),
        ("address", or_dash(&vm.address).to_string()),
        ("image", vm.image.clone()),
        ("cpus", vm.cpus.to_string()),
        ("memory", memory_label(vm.memory_mib)),
        ("unit", or_dash(&vm.unit).to_string()),
        (
            "backend",
            if vm.backend.is_empty() {
                "not started yet".to_string()
            } else {
                vm.backend.clone()
            },
        ),
        ("created", format!("{} UTC", utc_minute(vm.created))),
        ("host key", host_key),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

async fn show(name: &str, json: bool) -> CmdResult {
    let daemon = daemon().await?;
    let vm = daemon
        .get_vm(name)
        .await
        .map_err(failed(format!("looking up VM {name}")))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&vm_json(&vm))?);
    } else {
        print!("{}", show_lines(&vm));
    }
    Ok(EXIT_OK)
}

async fn ssh(name: &str, command: &[String]) -> CmdResult {
    let ssh = find_program("ssh").ok_or_else(|| {
        anyhow!("ssh was not found on PATH; install openssh-client to reach VMs over SSH")
    })?;
    let daemon = daemon().await?;
    let mut target = ssh_target(&daemon, name).await?;
    if target.host_key.is_empty() {
        let keyscan = find_keyscan("cannot learn the VM's host key, so nothing was done")?;
        let offered = wait_for_host_key(
            &daemon,
            name,
            &target.address,
            &keyscan,
            Instant::now(),
            PIN_TIMEOUT,
        )
        .await?;
        trust(&daemon, name, "", &offered).await?;
        eprintln!(
            "banger: pinned the SSH host key of VM {name} on first use: {}",
            fingerprint_label(&offered)
        );
        target.host_key = offered;
    }
    let known_hosts = KnownHostsFile::create(&target.address, &target.host_key)?;
    let tty =
        command.is_empty() && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // Ctrl-C reaches ssh (same process group); banger outlives it to remove the known_hosts file.
    let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("setting up the Ctrl-C handler")?;
    let status = tokio::process::Command::new(&ssh)
        .args(ssh_args(&target, &known_hosts.path, tty, command))
        .status()
        .await
        .with_context(|| format!("running {}", ssh.display()))?;
    let code = exit_code(status);
    if code == 255
        && let Some(e) = explain_ssh_failure(&daemon, name, &target).await
    {
        return Err(e.into());
    }
    Ok(code)
}

/// After ssh failed to connect: says so when the VM is not running, and turns a changed host key
/// into [`HostKeyChanged`].
async fn explain_ssh_failure(
    daemon: &Daemon1Proxy<'_>,
    name: &str,
    target: &SshTarget,
) -> Option<anyhow::Error> {
    if let Ok(vm) = daemon.get_vm(name).await
        && VmState::parse(&vm.state) != Some(VmState::Running)
    {
        eprintln!(
            "banger: VM {name} is {}; start it with: banger vm start {name}",
            or_dash(&vm.state)
        );
        return None;
    }
    let keyscan = find_program("ssh-keyscan")?;
    let offered = keyscan_once(&keyscan, &target.address, KEYSCAN_RUN_LIMIT)
        .await
        .ok()??;
    (!same_key(&offered, &target.host_key)).then(|| {
        HostKeyChanged {
            vm: name.to_string(),
            pinned: target.host_key.clone(),
            offered,
        }
        .into()
    })
}

/// Writes console bytes to stdout without carriage returns.
fn write_log(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let text: Vec<u8> = data.iter().copied().filter(|&b| b != b'\r').collect();
    out.write_all(&text)?;
    out.flush()
}

async fn logs(name: &str, follow: bool, bytes: u64) -> CmdResult {
    let daemon = daemon().await?;
    let what = format!("reading the console log of VM {name}");
    let mut offset = -i64::try_from(bytes).unwrap_or(i64::MAX);
    let mut stdout = std::io::stdout();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (data, next) = daemon
            .read_vm_log(name, offset)
            .await
            .map_err(failed(&what))?;
        match write_log(&mut stdout, &data) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(EXIT_OK),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("writing to standard output")
                    .into());
            }
        }
        offset = i64::try_from(next).unwrap_or(i64::MAX);
        // A read returns at most a chunk (1 MiB); read on at once until one comes back empty.
        if !data.is_empty() {
            continue;
        }
        if !follow {
            return Ok(EXIT_OK);
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(EXIT_OK),
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key and its fingerprint as printed by `ssh-keygen -lf` (OpenSSH 9).
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIErCfDbv70f4qhrCItn6lI5PNnbezM/EhIPhvGnkxgRZ test";
    const KEY_FP: &str = "SHA256:iWqCKu15iob4FSM32P+H4QgsJTvmqHOstI0OEsd/QSA";
    const ECDSA_KEY: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCT7jXbp+hkzWh5hb9ap/lD0bXmRzZwXNq4uHMs1gvAeirKwgd55dtMTJ+3NKwxd7myS3I8aCCWvMTvuGy1mVCk= test";
    const ECDSA_FP: &str = "SHA256:KBx0Rp9IMsdH4XThAujJPGlBY3wI5oKumSGcRvwQ0zU";
    const OTHER_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMvQGoWtyWyjj+1jkpN4gM7qsAxfyXPLrEO8B6L4bt8u other";
    const OTHER_FP: &str = "SHA256:bn1dTdWxQl74rTepzg7c59/DJbvZ/G9hU6jHMg+FfCE";

    #[test]
    fn memory_sizes() {
        for (s, mib) in [
            ("256", 256),
            ("512M", 512),
            ("512m", 512),
            ("512MiB", 512),
            ("512mib", 512),
            ("1G", 1024),
            ("1g", 1024),
            ("2GiB", 2048),
            ("1.5G", 1536),
            ("0.5g", 512),
            ("1.25G", 1280),
            ("1.0M", 1),
            (" 768 M ", 768),
            ("1024G", 1 << 20),
            ("1048576", 1 << 20),
        ] {
            assert_eq!(parse_memory_mib(s), Ok(mib), "{s}");
        }
    }

    #[test]
    fn memory_sizes_refused_with_the_value_named() {
        for (s, why) in [
            ("0", "is zero"),
            ("0M", "is zero"),
            ("0.0G", "is zero"),
            ("1.5M", "not a whole number of MiB"),
            ("1.0001G", "not a whole number of MiB"),
            ("0.1", "not a whole number of MiB"),
            ("1025G", "more than 1 TiB"),
            ("1048577", "more than 1 TiB"),
            (
                "99999999999999999999999999999999999999999999",
                "more than 1 TiB",
            ),
            ("", "not a memory size"),
            ("G", "not a memory size"),
            ("abc", "not a memory size"),
            ("-1G", "not a memory size"),
            ("512MB", "not a memory size"),
            ("1T", "not a memory size"),
            ("1e3", "not a memory size"),
            (".5G", "not a memory size"),
            ("5.G", "not a memory size"),
            ("1.2.3G", "not a memory size"),
        ] {
            let e = parse_memory_mib(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains(&format!("{s:?}")), "{s}: {e}");
        }
    }

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

    #[test]
    fn access_denied_exits_3_with_a_hint() {
        let e = zbus::Error::MethodError(
            zbus::names::OwnedErrorName::try_from(Reply::AccessDenied.name()).unwrap(),
            Some("Rejected send message".into()),
            zbus::message::Message::method_call("/", "Ping")
                .build(&())
                .unwrap(),
        );
        let e = failed("listing VMs")(e);
        assert_eq!(
            format!("{e:#}"),
            format!(
                "listing VMs: the system bus refused the call: its security policy does not let \
                 this user send it ({})",
                Reply::AccessDenied.name()
            ),
            "the bus's own text is for --verbose"
        );
        assert_eq!(
            super::super::Failure::from(e).code,
            super::super::EXIT_NOT_AUTHORIZED
        );
        // zbus may also hand the bus's own refusal over as an fdo error.
        let fdo = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("no".into())));
        let e = failed("listing VMs")(fdo);
        assert_eq!(
            super::super::Failure::from(e).code,
            super::super::EXIT_NOT_AUTHORIZED
        );
        assert!(
            hint_for(Reply::AccessDenied)
                .unwrap()
                .contains("only that user and root")
        );
        assert_eq!(hint_for(Reply::NotFound), None);
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

    #[test]
    fn labels() {
        assert_eq!(utc_minute(1_795_313_683), "2026-11-22 02:14");
        assert_eq!(utc_minute(-5), "1970-01-01 00:00");
        assert_eq!(mib_label(0), "0 MiB");
        assert_eq!(mib_label(1), "1 MiB");
        assert_eq!(mib_label(5 * MIB + MIB / 3), "5 MiB");
        assert_eq!(mib_label(5 * MIB + 2 * MIB / 3), "6 MiB");
        assert_eq!(memory_label(256), "256 MiB");
        assert_eq!(memory_label(1536), "1536 MiB");
        assert_eq!(memory_label(2048), "2 GiB");
        assert_eq!(short_sha256(""), "-");
        assert_eq!(short_sha256("0123456789abcdef"), "0123456789ab");
    }

    fn vm() -> VmInfo {
        VmInfo {
            id: "0123456789ab".into(),
            name: "web1".into(),
            image: "deb".into(),
            cpus: 2,
            memory_mib: 1024,
            state: "running".into(),
            address: "172.30.0.2".into(),
            backend: "qemu".into(),
            unit: "banger-vm-0123456789ab.service".into(),
            created: 1_795_313_683,
            host_key: KEY.rsplit_once(' ').unwrap().0.into(),
        }
    }

    #[test]
    fn vm_table_and_show() {
        let mut other = vm();
        other.name = "a-much-longer-name".into();
        other.state = "stopped".into();
        other.memory_mib = 256;
        other.cpus = 1;
        let table = vm_table(&[vm(), other]);
        assert_eq!(
            table,
            "NAME                STATE    ADDRESS     CPUS  MEMORY   IMAGE  ID\n\
             web1                running  172.30.0.2  2     1 GiB    deb    0123456789ab\n\
             a-much-longer-name  stopped  172.30.0.2  1     256 MiB  deb    0123456789ab\n"
        );
        let shown = show_lines(&vm());
        assert!(shown.starts_with("name:     web1\n"), "{shown}");
        assert!(
            shown.contains("unit:     banger-vm-0123456789ab.service\n"),
            "{shown}"
        );
        assert!(shown.contains("backend:  qemu\n"), "{shown}");
        assert!(
            shown.contains("created:  2026-11-22 02:14 UTC\n"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("host key: {KEY_FP} (ssh-ed25519)\n")),
            "{shown}"
        );
        let mut fresh = vm();
        fresh.host_key.clear();
        fresh.backend.clear();
        let shown = show_lines(&fresh);
        assert!(shown.contains("host key: not pinned yet\n"), "{shown}");
        assert!(shown.contains("backend:  not started yet\n"), "{shown}");
    }

    #[test]
    fn vm_json_has_every_field_and_the_fingerprint() {
        let text = serde_json::to_string(&vm_json(&vm())).unwrap();
        assert!(
            text.starts_with(r#"{"id":"0123456789ab","name":"web1","#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "id",
            "name",
            "image",
            "cpus",
            "memory_mib",
            "state",
            "address",
            "backend",
            "unit",
            "created",
            "host_key",
        ] {
            assert!(v.get(field).is_some(), "{field}: {v}");
        }
        assert_eq!(v["host_key_fingerprint"], KEY_FP);
        assert_eq!(v["memory_mib"], 1024);
        let mut fresh = vm();
        fresh.host_key.clear();
        assert_eq!(vm_json(&fresh).host_key_fingerprint, "");
    }

    #[test]
    fn console_bytes_lose_carriage_returns() {
        let mut out = Vec::new();
        write_log(&mut out, b"Booting\r\nlogin: \xff\r\n").unwrap();
        assert_eq!(out, b"Booting\nlogin: \xff\n");
    }
}
