//! `banger vm create|start|stop|rm|list|show|ports|ssh|logs`. Reaching a VM over SSH is in
//! [`super::ssh`], the daemon connection in [`super::daemon_client`], output in
//! [`super::output`].
//!
//! It never decides what the daemon decides (names, limits, which states allow what).

use std::io::{ErrorKind, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use banger_api::proxies::Daemon1Proxy;
use banger_api::wire::{GuestInfo, GuestPort, SshTarget, VmInfo, VmState};
use banger_host::virt::find_program;
use clap::{Args, Subcommand};
use clap_complete::engine::ArgValueCandidates;

use super::daemon_client::{daemon, failed};
use super::output::{memory_label, or_dash, render_table, utc_minute};
use super::ssh::{
    HostKeyChanged, KEYSCAN_RUN_LIMIT, KnownHostsFile, exit_code, find_keyscan, fingerprint,
    fingerprint_label, key_words, keyscan_once, same_key, ssh_args, ssh_target, trust,
    wait_for_host_key,
};
use super::{CmdResult, EXIT_OK};

/// The most memory a VM may be given on the command line: 1 TiB, in MiB.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// How long `vm ssh` waits for a VM whose host key is not pinned yet to answer.
const PIN_TIMEOUT: Duration = Duration::from_secs(30);
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
        /// Name of the new VM (also its hostname): a-z, 0-9 and -, at most 63 characters.
        /// Without one, bangerd picks a short free name (like brisk-otter) and prints it.
        name: Option<String>,
        /// The image to make it from (see `banger image list`).
        #[arg(long, value_name = "IMAGE", add = ArgValueCandidates::new(super::generated::image_names))]
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
        #[arg(add = ArgValueCandidates::new(super::generated::vm_names))]
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop a VM (its unit is stopped; its disk and settings are kept).
    Stop {
        /// The VM.
        #[arg(add = ArgValueCandidates::new(super::generated::vm_names))]
        name: String,
    },
    /// Delete a stopped VM and its files.
    Rm {
        /// The VM.
        #[arg(add = ArgValueCandidates::new(super::generated::vm_names))]
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
        /// Then keep printing one line per change of a VM (created, deleted, its state…),
        /// from bangerd's signals, until Ctrl-C. With --json: one JSON object per line, the
        /// VMs there now first (event "present"), then the changes (as `banger events`).
        #[arg(long)]
        watch: bool,
    },
    /// Show everything about one VM, including its unit and pinned SSH host key, and for a
    /// running VM what its guest agent reports (uptime, kernel, addresses).
    Show {
        /// The VM.
        #[arg(add = ArgValueCandidates::new(super::generated::vm_names))]
        name: String,
        /// Print a JSON object instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
    /// List the TCP and UDP ports listening in a running VM, and the process holding each.
    ///
    /// Asked of the guest agent (banger-agent, see docs/guest.md in the sources) over the
    /// VM's agent channel, not over the network: it works with no SSH and no route to the
    /// guest. A pid of "-" means the agent could not tell which process holds the socket.
    Ports {
        /// The VM.
        #[arg(add = ArgValueCandidates::new(super::generated::vm_names))]
        name: String,
        /// Print a JSON array instead of a table.
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
        #[arg(add = ArgValueCandidates::new(super::generated::vm_names))]
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
        #[arg(add = ArgValueCandidates::new(super::generated::vm_names))]
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
            let wait = start.then(|| over_remote(WaitArgs { no_wait, timeout }));
            create(name.as_deref(), &image, cpus, memory, wait).await
        }
        VmCommand::Start { name, wait } => {
            let daemon = daemon().await?;
            start(&daemon, &name, over_remote(wait)).await
        }
        VmCommand::Stop { name } => stop(&name).await,
        VmCommand::Rm { name, force } => rm(&name, force).await,
        VmCommand::List { json, watch } => list(json, watch).await,
        VmCommand::Show { name, json } => show(&name, json).await,
        VmCommand::Ports { name, json } => ports(&name, json).await,
        VmCommand::Ssh { name, command } => ssh(&name, &command).await,
        VmCommand::Logs {
            name,
            follow,
            bytes,
        } => logs(&name, follow, bytes).await,
    }
}

/// Over `-H` the VM's network is on the other host, out of reach of ssh-keyscan here: banger
/// starts the VM without waiting for SSH, and says so.
fn over_remote(wait: WaitArgs) -> WaitArgs {
    match super::remote::get() {
        Some(host) if !wait.no_wait => {
            eprintln!(
                "banger: not waiting for SSH over -H (the VM's network is on {}); `{}` waits \
                 and pins its host key",
                host.spec,
                host.run_there("vm ssh NAME")
            );
            WaitArgs {
                no_wait: true,
                ..wait
            }
        }
        _ => wait,
    }
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
// The commands.

async fn create(
    name: Option<&str>,
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
    // The daemon reads an empty name as "pick one".
    let vm = daemon
        .create_vm(name.unwrap_or(""), image, cpus, memory_mib)
        .await
        .map_err(failed(match name {
            Some(n) => format!("creating VM {n}"),
            None => "creating a VM".to_string(),
        }))?;
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
        Some(wait) => start(&daemon, &vm.name, wait).await,
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
/// when no key is pinned); `vm show` adds `guest` (the agent's answer, or null) and
/// `guest_error` (why there is none, or null).
#[derive(Debug, serde::Serialize)]
struct VmJson<'a> {
    #[serde(flatten)]
    vm: &'a VmInfo,
    host_key_fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest: Option<Option<&'a GuestInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_error: Option<Option<&'a str>>,
}

fn vm_json(vm: &VmInfo) -> VmJson<'_> {
    VmJson {
        vm,
        host_key_fingerprint: fingerprint(&vm.host_key).unwrap_or_default(),
        guest: None,
        guest_error: None,
    }
}

/// What `vm show` learned from the guest agent.
enum GuestView {
    /// The VM does not run: nobody was asked.
    NotRunning,
    /// The agent's answer.
    Info(GuestInfo),
    /// Why there is none.
    Error(String),
}

/// A duration in seconds as a person reads it: `42 s`, `3 min 07 s`, `2 h 05 min`, `3 d 4 h`.
fn duration_label(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        3600..86400 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
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

async fn list(json: bool, watch: bool) -> CmdResult {
    use super::events::{Kind, follow};
    match (watch, json) {
        (false, _) => print_vms(json).await,
        (true, true) => follow(Some(Kind::Vm), true, true, None).await,
        (true, false) => {
            follow(
                Some(Kind::Vm),
                false,
                false,
                Some(Box::pin(print_vms(false))),
            )
            .await
        }
    }
}

async fn print_vms(json: bool) -> CmdResult {
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
fn show_lines(vm: &VmInfo, guest: &GuestView) -> String {
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
    let mut fields = fields.to_vec();
    match guest {
        GuestView::NotRunning => {}
        GuestView::Error(e) => fields.push(("guest agent", e.clone())),
        GuestView::Info(g) => {
            fields.push(("uptime", duration_label(g.uptime_s)));
            fields.push(("guest kernel", or_dash(&g.kernel).to_string()));
            fields.push(("guest hostname", or_dash(&g.hostname).to_string()));
            let addresses: Vec<String> = g
                .addresses
                .iter()
                .map(|(iface, a)| format!("{a} ({iface})"))
                .collect();
            fields.push((
                "guest addresses",
                if addresses.is_empty() {
                    "-".to_string()
                } else {
                    addresses.join(", ")
                },
            ));
            fields.push(("boot id", or_dash(&g.boot_id).to_string()));
            fields.push(("guest agent", format!("banger-agent {}", g.agent_version)));
        }
    }
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
    let guest = if vm.state == VmState::Running.as_str() {
        match daemon.get_guest_info(name).await {
            Ok(g) => GuestView::Info(g),
            Err(e) => GuestView::Error(super::bus::CallError::from(&e).to_string()),
        }
    } else {
        GuestView::NotRunning
    };
    if json {
        let mut j = vm_json(&vm);
        let (info, error) = match &guest {
            GuestView::NotRunning => (None, None),
            GuestView::Info(g) => (Some(g), None),
            GuestView::Error(e) => (None, Some(e.as_str())),
        };
        j.guest = Some(info);
        j.guest_error = Some(error);
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print!("{}", show_lines(&vm, &guest));
    }
    Ok(EXIT_OK)
}

/// The `vm ports` table.
fn ports_table(ports: &[GuestPort]) -> String {
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            vec![
                p.proto.clone(),
                p.address.clone(),
                p.port.to_string(),
                if p.pid == 0 {
                    "-".to_string()
                } else {
                    p.pid.to_string()
                },
                or_dash(&p.process).to_string(),
            ]
        })
        .collect();
    render_table(&["PROTO", "ADDRESS", "PORT", "PID", "PROCESS"], &rows)
}

async fn ports(name: &str, json: bool) -> CmdResult {
    let daemon = daemon().await?;
    let ports = daemon.get_guest_ports(name).await.map_err(failed(format!(
        "asking VM {name}'s guest agent for its ports"
    )))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ports)?);
    } else {
        print!("{}", ports_table(&ports));
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
    use super::super::ssh::tests::{KEY, KEY_FP};
    use super::*;

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
        let shown = show_lines(&vm(), &GuestView::NotRunning);
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
        let shown = show_lines(&fresh, &GuestView::NotRunning);
        assert!(shown.contains("host key: not pinned yet\n"), "{shown}");
        assert!(shown.contains("backend:  not started yet\n"), "{shown}");
    }

    #[test]
    fn show_adds_the_guest_agents_view_or_why_there_is_none() {
        let g = GuestInfo {
            agent_version: "0.1.0".into(),
            hostname: "web1".into(),
            kernel: "6.1.0-57-cloud-amd64".into(),
            uptime_s: 187.4,
            boot_id: "b0".into(),
            addresses: vec![("eth0".into(), "172.30.0.2/24".into())],
        };
        let shown = show_lines(&vm(), &GuestView::Info(g));
        assert!(shown.contains("uptime:          3 min 07 s\n"), "{shown}");
        assert!(
            shown.contains("guest addresses: 172.30.0.2/24 (eth0)\n"),
            "{shown}"
        );
        assert!(
            shown.contains("guest agent:     banger-agent 0.1.0\n"),
            "{shown}"
        );
        let shown = show_lines(&vm(), &GuestView::Error("no answer".into()));
        assert!(shown.ends_with("guest agent: no answer\n"), "{shown}");
        assert!(!shown.contains("uptime"), "{shown}");
    }

    #[test]
    fn durations_read_like_a_person_says_them() {
        assert_eq!(duration_label(0.4), "0 s");
        assert_eq!(duration_label(59.9), "59 s");
        assert_eq!(duration_label(61.0), "1 min 01 s");
        assert_eq!(duration_label(7500.0), "2 h 05 min");
        assert_eq!(duration_label(3.0 * 86400.0 + 4.0 * 3600.0), "3 d 4 h");
    }

    #[test]
    fn the_ports_table_marks_unknown_owners() {
        let p = |proto: &str, port, pid, process: &str| GuestPort {
            proto: proto.into(),
            address: "0.0.0.0".into(),
            port,
            pid,
            process: process.into(),
        };
        assert_eq!(
            ports_table(&[p("tcp", 22, 97, "dropbear"), p("udp", 5353, 0, "")]),
            "PROTO  ADDRESS  PORT  PID  PROCESS\n\
             tcp    0.0.0.0  22    97   dropbear\n\
             udp    0.0.0.0  5353  -    -\n"
        );
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
