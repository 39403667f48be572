//! The `banger` command line: one module per command group.

mod agent;
mod bus;
mod daemon;
mod daemon_client;
mod doctor;
mod events;
mod generated;
mod image;
mod image_pull;
mod inhibit;
mod output;
mod progress;
mod remote;
mod ssh;
mod system;
mod update;
mod vm;

use std::path::PathBuf;

use banger_host::build_info::BuildIdentity;
use clap::{CommandFactory, Parser, Subcommand};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the command failed (the message says why and what was left unchanged).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the command line was malformed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the caller is not authorized (polkit said no, or a prompt was needed but
/// impossible).
pub const EXIT_NOT_AUTHORIZED: i32 = 3;
/// Exit code: an update failed after installing and was rolled back to the previous install.
pub const EXIT_ROLLED_BACK: i32 = 4;
/// Exit code: an update or an image pull was canceled; nothing was changed.
pub const EXIT_CANCELED: i32 = 5;
/// Exit code: `banger update` stopped following on a second Ctrl-C; the update goes on.
pub const EXIT_INTERRUPTED: i32 = 130;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the command failed (the message says why and what was left unchanged)
  2  the command line was malformed
  3  not authorized (polkit refused, or a password was needed but no terminal was available)
  4  an update failed after installing and was rolled back to the previous install
  5  an update or an image pull was canceled; nothing was changed";

const UPDATE_EXIT_CODES_HELP: &str = "\
Exit codes:
  0    updated, already up to date, or a dry run staged the release; --check got an answer
  1    the update failed and nothing was changed, another update is already running, or the
       job was lost when the helper restarted
  2    the command line was malformed
  3    not authorized (polkit refused, or a password was needed but no terminal was available)
  4    the update failed after installing and was rolled back to the previous install
  5    the update was canceled; nothing was changed
  130  Ctrl-C twice: banger stopped following; the update goes on in the background";

/// Disposable Linux microVMs on your workstation.
#[derive(Debug, Parser)]
#[command(
    name = "banger",
    disable_version_flag = true,
    after_help = EXIT_CODES_HELP,
    arg_required_else_help = true
)]
struct Cli {
    /// Print the version line and exit.
    #[arg(short = 'V', long)]
    version: bool,
    /// Show the raw texts behind error messages (such as the bus's own words when its policy
    /// refuses a call).
    #[arg(short = 'v', long, global = true)]
    verbose: bool,
    /// Print results, warnings and errors only: no progress bar and no stage lines (a bar is
    /// drawn only on a terminal anyway, and coloured only without NO_COLOR).
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
    /// Operate on the services of another host over SSH, as `systemctl -H` does: the bus
    /// connection is `ssh -xT [USER@]HOST systemd-stdio-bridge`, so the host must accept your
    /// SSH login and be in your known_hosts. polkit there decides; it cannot ask for a
    /// password over -H. Commands that work on this machine's files or reach a VM's network
    /// (system, doctor, image import, vm ssh, update --history) refuse it; vm start does not
    /// wait for SSH.
    #[arg(
        short = 'H',
        long = "host",
        value_name = "[USER@]HOST[:PORT]",
        global = true
    )]
    host: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print this binary's version, commit and build time, one per line.
    Version {
        /// Print one JSON object instead (a versioned shape: format_version 1; see
        /// docs/operations.md).
        #[arg(long)]
        json: bool,
    },
    /// Create, start, stop, delete and list VMs, log in to them over SSH and read their
    /// consoles.
    ///
    /// Each running VM is the systemd unit banger-vm-<id>.service in banger.slice; it keeps
    /// running when banger's services restart or update.
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// Import, list and delete the images VMs are made from (a kernel, optionally an initrd
    /// and a root filesystem).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Install, inspect, restart or remove banger's system services (mostly needs root).
    #[command(subcommand)]
    System(SystemCommand),
    /// Inspect or control the owner daemon (bangerd) through the root helper.
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Check the installation and the host, printing PASS/WARN/FAIL lines; exits 1 on any FAIL.
    Doctor {
        /// Print one JSON object instead (a versioned shape: format_version 1; see
        /// docs/operations.md).
        #[arg(long)]
        json: bool,
    },
    /// Print every change to VMs, images and jobs as it happens, until Ctrl-C.
    ///
    /// Follows the signals of bangerd's objects (the ObjectManager at /org/banger/Daemon1:
    /// InterfacesAdded, InterfacesRemoved, PropertiesChanged), never polling: one line per
    /// change, such as `vm web1: State=running`, including changes nobody asked banger for (a
    /// guest that powers off, a VMM that is killed). Across a restart of bangerd it reads the
    /// objects again and reports what differs.
    Events {
        /// One JSON object per line: time, event (added, removed, changed, daemon-stopped,
        /// daemon-started), kind (vm, image, job), path, name, properties.
        #[arg(long)]
        json: bool,
    },
    /// Run a command while holding off updates: bangerd lists an "inhibit" operation until the
    /// command exits, and `banger update` refuses (without --force) meanwhile. Exits with the
    /// command's status.
    Inhibit {
        /// Why, shown as the operation's stage (e.g. "benchmark run").
        #[arg(long, default_value = "banger inhibit")]
        why: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Update banger to a newer signed release through the root helper, or just check for one.
    ///
    /// Asks polkit first (org.banger.update; org.banger.update.pinned with --to;
    /// org.banger.update.downgrade with --allow-downgrade), then follows the update job,
    /// printing each stage, until it ends. The helper restarts itself during every update;
    /// banger follows the job across the restart by itself.
    ///
    /// Ctrl-C cancels the update until the point of no return (the swap of the installed
    /// binaries); after it, the update finishes on its own. A second Ctrl-C stops following
    /// and leaves the update running.
    #[command(after_help = UPDATE_EXIT_CODES_HELP)]
    Update(update::UpdateArgs),
}

#[derive(Debug, Subcommand)]
enum SystemCommand {
    /// Install binaries, units, bus policy, activation files and polkit policy, then start the
    /// services (root). The binaries are taken from the directory of this banger; the Cockpit
    /// page built beside them (make cockpit) goes to <prefix>/share/cockpit/banger when
    /// Cockpit is installed.
    ///
    /// With --destdir, write instead the file set of a package under DIR (what `make install`
    /// and the .deb contain): units in <prefix>/lib/systemd/system, bus policy in
    /// /usr/share/dbus-1/system.d, no owner anywhere, nothing started. Run `banger system
    /// setup --owner USER` on the host it is installed on.
    Install {
        /// The user who will own VMs and run bangerd (default: the user who ran sudo).
        #[arg(long, value_name = "USER", conflicts_with = "destdir")]
        owner: Option<String>,
        /// Installation prefix.
        #[arg(long, value_name = "DIR", default_value = banger_host::install::DEFAULT_PREFIX)]
        prefix: PathBuf,
        /// Write a package's file set under DIR instead of installing on this host.
        #[arg(long, value_name = "DIR")]
        destdir: Option<PathBuf>,
        /// With --destdir: the package manager that will own the files (named by `banger
        /// update`, which refuses to replace them).
        #[arg(
            long,
            value_name = "NAME",
            requires = "destdir",
            default_value = "dpkg"
        )]
        managed_by: String,
    },
    /// Set up a packaged install (a .deb, or `make install`) for its owner, and start the
    /// services (root): writes the files that name the owner (bangerd's drop-in, its bus
    /// policy, /etc/banger/install.toml) and enables the units. Run it again after an
    /// upgrade (the package does) or to change nothing but restart onto the installed files.
    Setup {
        /// The user who will own VMs and run bangerd (default: the owner already set up, else
        /// the user who ran sudo).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
    },
    /// Show the installed release and the state of the services.
    Status {
        /// Print one JSON object instead (a versioned shape: format_version 1; see
        /// docs/operations.md).
        #[arg(long)]
        json: bool,
    },
    /// Restart bangerd-root and bangerd through systemd (root).
    Restart,
    /// Stop the services and remove everything `install` put in place (root). The store in
    /// /var/lib/banger and /etc/banger are kept unless --purge is given. On a packaged
    /// install it undoes `setup` only: the package's files stay for its package manager.
    Uninstall {
        /// Also remove /var/lib/banger (VM records, images) and /etc/banger.
        #[arg(long)]
        purge: bool,
        /// Stop running VMs first (without it, uninstall refuses while any VM runs).
        #[arg(long)]
        stop_vms: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DaemonCommand {
    /// Show the state of bangerd and bangerd-root.
    Status {
        /// Print one JSON object instead (a versioned shape: format_version 1; see
        /// docs/operations.md).
        #[arg(long)]
        json: bool,
    },
    /// Start bangerd (asks polkit: org.banger.daemon.manage).
    Start,
    /// Stop bangerd; running VMs keep running (asks polkit: org.banger.daemon.manage).
    Stop,
    /// Restart bangerd (asks polkit: org.banger.daemon.manage).
    Restart,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: i32,
    /// The error.
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let code = if bus::is_authorization_error(&error) {
            EXIT_NOT_AUTHORIZED
        } else {
            EXIT_FAILED
        };
        Failure { code, error }
    }
}

/// The command's name and why, when it works only on the machine it runs on (for `-H`).
fn local_only(command: &Command) -> Option<(&'static str, &'static str)> {
    const FILES: &str = "works on this machine's files";
    Some(match command {
        Command::System(SystemCommand::Install { .. }) => ("system install", FILES),
        Command::System(SystemCommand::Setup { .. }) => ("system setup", FILES),
        Command::System(SystemCommand::Uninstall { .. }) => ("system uninstall", FILES),
        Command::System(SystemCommand::Status { .. }) => ("system status", FILES),
        Command::System(SystemCommand::Restart) => ("system restart", FILES),
        Command::Doctor { .. } => ("doctor", "checks this machine's files and host"),
        Command::Image(image::ImageCommand::Import { .. }) => (
            "image import",
            "hands bangerd paths of files, which it would read on its own host",
        ),
        Command::Vm(vm::VmCommand::Ssh { .. }) => (
            "vm ssh",
            "needs the VM's key and network, which are on the VM's host",
        ),
        Command::Update(args) if args.history => {
            ("update --history", "reads this machine's journal")
        }
        _ => return None,
    })
}

/// Result of a command: an exit code or a failure.
pub type CmdResult = Result<i32, Failure>;

/// Runs the command line; returns the exit code.
pub fn main() -> i32 {
    // A shell asking for completions (BANGER_COMPLETE=bash …) is answered and ends here.
    generated::complete_if_asked(Cli::command);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    if cli.version {
        println!("{}", BuildIdentity::current().version_line("banger"));
        return EXIT_OK;
    }
    bus::set_verbose(cli.verbose);
    progress::set_quiet(cli.quiet);
    let Some(command) = cli.command else {
        return EXIT_USAGE;
    };
    if let Some(spec) = &cli.host {
        let host = match remote::RemoteHost::parse(spec) {
            Ok(host) => host,
            Err(e) => {
                eprintln!("banger: {e}");
                return EXIT_USAGE;
            }
        };
        if let Some((name, why)) = local_only(&command) {
            eprintln!(
                "banger: `banger {name}` {why}, so it cannot run over -H; run it there: {}",
                host.run_there(name)
            );
            return EXIT_USAGE;
        }
        remote::set(host);
    }
    if let Command::Version { json } = command {
        let id = BuildIdentity::current();
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "format_version": output::JSON_FORMAT_VERSION,
                    "program": "banger",
                    "version": id.version,
                    "commit": id.commit,
                    "built_at": id.built_at,
                })
            );
        } else {
            println!("{id}");
        }
        return EXIT_OK;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("banger: starting the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let result = rt.block_on(async {
        match command {
            Command::Version { .. } => unreachable!("handled above"),
            Command::System(SystemCommand::Install {
                owner,
                prefix,
                destdir: Some(destdir),
                managed_by,
            }) => {
                debug_assert!(owner.is_none());
                system::stage(&destdir, &prefix, &managed_by)
            }
            Command::System(SystemCommand::Install {
                owner,
                prefix,
                destdir: None,
                ..
            }) => system::install(owner, prefix).await,
            Command::System(SystemCommand::Setup { owner }) => system::setup(owner).await,
            Command::System(SystemCommand::Status { json }) => system::status(json).await,
            Command::System(SystemCommand::Restart) => system::restart().await,
            Command::System(SystemCommand::Uninstall { purge, stop_vms }) => {
                system::uninstall(purge, stop_vms).await
            }
            Command::Daemon(DaemonCommand::Status { json }) => daemon::status(json).await,
            Command::Daemon(DaemonCommand::Start) => daemon::control(daemon::Verb::Start).await,
            Command::Daemon(DaemonCommand::Stop) => daemon::control(daemon::Verb::Stop).await,
            Command::Daemon(DaemonCommand::Restart) => daemon::control(daemon::Verb::Restart).await,
            Command::Doctor { json } => doctor::run(json).await,
            Command::Events { json } => events::follow(None, json, false, None).await,
            Command::Inhibit { why, command } => inhibit::run(why, command).await,
            Command::Update(args) => update::run(args).await,
            Command::Vm(command) => vm::run(command).await,
            Command::Image(command) => image::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("banger: {:#}", f.error);
            f.code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("3  not authorized"), "{help}");
        assert!(help.contains("4  an update failed"), "{help}");
        assert!(
            help.contains("5  an update or an image pull was canceled"),
            "{help}"
        );
    }

    #[test]
    fn update_help_documents_its_flags_and_exit_codes() {
        let mut cli = Cli::command();
        let update = cli
            .find_subcommand_mut("update")
            .expect("update subcommand");
        let help = update.render_long_help().to_string();
        for needle in [
            "--check",
            "--dry-run",
            "--force",
            "--to <VERSION>",
            "--allow-downgrade",
            "--json",
            "4    the update failed after installing",
            "5    the update was canceled",
        ] {
            assert!(help.contains(needle), "{needle}: {help}");
        }
    }

    #[test]
    fn host_is_global_and_local_commands_refuse_it() {
        let local = |args: &[&str]| {
            let cli = Cli::try_parse_from(["banger"].iter().chain(args)).unwrap();
            assert_eq!(cli.host.as_deref(), Some("alice@build1"), "{args:?}");
            local_only(&cli.command.unwrap()).map(|(name, _)| name)
        };
        for (args, name) in [
            (&["-H", "alice@build1", "doctor"][..], "doctor"),
            (&["doctor", "-H", "alice@build1"], "doctor"),
            (
                &["--host", "alice@build1", "system", "install"],
                "system install",
            ),
            (&["-H", "alice@build1", "system", "status"], "system status"),
            (&["-H", "alice@build1", "vm", "ssh", "web1"], "vm ssh"),
            (
                &[
                    "-H",
                    "alice@build1",
                    "image",
                    "import",
                    "d",
                    "--kernel",
                    "k",
                ],
                "image import",
            ),
            (
                &["-H", "alice@build1", "update", "--history"],
                "update --history",
            ),
        ] {
            assert_eq!(local(args), Some(name), "{args:?}");
        }
        for args in [
            &["-H", "alice@build1", "vm", "list"][..],
            &["-H", "alice@build1", "vm", "start", "web1"],
            &["-H", "alice@build1", "update", "--check"],
            &["-H", "alice@build1", "update"],
            &["-H", "alice@build1", "events", "--json"],
            &["-H", "alice@build1", "daemon", "status"],
            &["-H", "alice@build1", "image", "pull", "debian"],
        ] {
            assert_eq!(local(args), None, "{args:?}");
        }
        let cli = Cli::try_parse_from(["banger", "-q", "update", "--check"]).unwrap();
        assert!(cli.quiet);
    }

    #[test]
    fn update_check_excludes_changes() {
        for flags in [
            &["--check", "--dry-run"][..],
            &["--check", "--to", "0.2.0"],
            &["--check", "--allow-downgrade"],
            &["--check", "--force"],
        ] {
            let args = ["banger", "update"].iter().chain(flags);
            assert!(Cli::try_parse_from(args).is_err(), "{flags:?}");
        }
        assert!(Cli::try_parse_from(["banger", "update", "--check", "--json"]).is_ok());
    }

    fn vm_command(args: &[&str]) -> Result<vm::VmCommand, clap::Error> {
        let cli = Cli::try_parse_from(["banger", "vm"].iter().chain(args))?;
        match cli.command {
            Some(Command::Vm(command)) => Ok(command),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn vm_ssh_keeps_the_command_whole() {
        for args in [
            &["ssh", "web1", "--", "uname", "-a"][..],
            &["ssh", "web1", "uname", "-a"],
        ] {
            match vm_command(args).unwrap() {
                vm::VmCommand::Ssh { name, command } => {
                    assert_eq!(name, "web1");
                    assert_eq!(command, ["uname", "-a"], "{args:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        match vm_command(&["ssh", "web1", "--", "ls", "--", "-l"]).unwrap() {
            vm::VmCommand::Ssh { command, .. } => assert_eq!(command, ["ls", "--", "-l"]),
            other => panic!("{other:?}"),
        }
        match vm_command(&["ssh", "web1"]).unwrap() {
            vm::VmCommand::Ssh { command, .. } => assert!(command.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn vm_create_needs_an_image_and_checks_sizes() {
        assert!(vm_command(&["create", "web1"]).is_err());
        match vm_command(&["create", "--image", "deb"]).unwrap() {
            vm::VmCommand::Create { name, .. } => assert_eq!(name, None, "the daemon picks one"),
            other => panic!("{other:?}"),
        }
        match vm_command(&["create", "web1", "--image", "deb"]).unwrap() {
            vm::VmCommand::Create {
                name,
                image,
                cpus,
                memory,
                start,
                no_wait,
                timeout,
            } => {
                assert_eq!((name.as_deref(), image.as_str()), (Some("web1"), "deb"));
                assert_eq!(
                    (cpus, memory, start, no_wait, timeout),
                    (1, 256, false, false, 120)
                );
            }
            other => panic!("{other:?}"),
        }
        match vm_command(&[
            "create", "w", "--image", "d", "--memory", "1.5G", "--cpus", "4",
        ])
        .unwrap()
        {
            vm::VmCommand::Create { cpus, memory, .. } => assert_eq!((cpus, memory), (4, 1536)),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["--memory", "0"][..],
            &["--memory", "1.5M"],
            &["--memory", "2T"],
            &["--memory", "lots"],
            &["--cpus", "0"],
            &["--no-wait"],
            &["--timeout", "30"],
        ] {
            let args = ["create", "w", "--image", "d"].iter().chain(bad).copied();
            let args: Vec<&str> = args.collect();
            assert!(vm_command(&args).is_err(), "{bad:?}");
        }
        let e = vm_command(&["create", "w", "--image", "d", "--memory", "1.5M"]).unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        assert!(e.to_string().contains("not a whole number of MiB"), "{e}");
        match vm_command(&["create", "w", "--image", "d", "--start", "--timeout", "30"]).unwrap() {
            vm::VmCommand::Create { start, timeout, .. } => {
                assert_eq!((start, timeout), (true, 30))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn vm_start_logs_and_rm_flags() {
        match vm_command(&["start", "web1"]).unwrap() {
            vm::VmCommand::Start { name, wait } => {
                assert_eq!(name, "web1");
                assert_eq!((wait.no_wait, wait.timeout), (false, 120));
            }
            other => panic!("{other:?}"),
        }
        match vm_command(&["start", "web1", "--no-wait", "--timeout", "5"]).unwrap() {
            vm::VmCommand::Start { wait, .. } => {
                assert_eq!((wait.no_wait, wait.timeout), (true, 5))
            }
            other => panic!("{other:?}"),
        }
        assert!(vm_command(&["start", "web1", "--timeout", "0"]).is_err());
        match vm_command(&["logs", "web1"]).unwrap() {
            vm::VmCommand::Logs { follow, bytes, .. } => {
                assert_eq!((follow, bytes), (false, 65536))
            }
            other => panic!("{other:?}"),
        }
        match vm_command(&["logs", "web1", "-f", "--bytes", "10"]).unwrap() {
            vm::VmCommand::Logs { follow, bytes, .. } => assert_eq!((follow, bytes), (true, 10)),
            other => panic!("{other:?}"),
        }
        assert!(vm_command(&["logs", "web1", "--bytes", "0"]).is_err());
        match vm_command(&["rm", "web1", "--force"]).unwrap() {
            vm::VmCommand::Rm { name, force } => assert_eq!((name.as_str(), force), ("web1", true)),
            other => panic!("{other:?}"),
        }
        for args in [
            &["list", "--json"][..],
            &["show", "web1", "--json"],
            &["stop", "web1"],
        ] {
            assert!(vm_command(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn vm_help_lists_every_subcommand() {
        let mut cli = Cli::command();
        let vm = cli.find_subcommand_mut("vm").expect("vm subcommand");
        let help = vm.render_help().to_string();
        for sub in [
            "create", "start", "stop", "rm", "list", "show", "ssh", "logs",
        ] {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(sub)),
                "{sub}: {help}"
            );
        }
        let top = Cli::command().render_help().to_string();
        for sub in ["vm", "image"] {
            assert!(
                top.lines().any(|l| l.trim_start().starts_with(sub)),
                "{sub}: {top}"
            );
        }
    }

    #[test]
    fn image_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(["banger", "image"].iter().chain(args));
        assert!(parse(&["import", "deb"]).is_err(), "--kernel is required");
        let cli = parse(&["import", "deb", "--kernel", "k", "--rootfs", "r"]).unwrap();
        match cli.command {
            Some(Command::Image(image::ImageCommand::Import {
                name,
                kernel,
                initrd,
                rootfs,
            })) => {
                assert_eq!(name, "deb");
                assert_eq!(kernel, PathBuf::from("k"));
                assert_eq!(initrd, None);
                assert_eq!(rootfs, Some(PathBuf::from("r")));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["list", "--json"]).is_ok());
        assert!(parse(&["rm", "deb"]).is_ok());
    }
}
