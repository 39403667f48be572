//! Files generated from the command line's definition and checked in: the man pages
//! (`docs/man/banger*.1`) and the shell completions (`completions/`). A test renders them and
//! fails when a checked-in file differs; `make update-generated` rewrites them.
//!
//! Completions are dynamic: the installed scripts call `banger` itself with
//! `BANGER_COMPLETE=<shell>` set, so the candidates always match the binary, and VM and image
//! names come from the daemon (see [`vm_names`]).

use std::path::PathBuf;
use std::time::Duration;

use banger_host::install::Layout;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::EnvCompleter;

/// The environment variable that asks `banger` for completions instead of running.
pub const COMPLETE_VAR: &str = "BANGER_COMPLETE";

/// How long a completion may wait for the daemon.
const NAMES_PATIENCE: Duration = Duration::from_secs(2);

/// Answers a completion request and exits, when the shell made one; returns otherwise. Call it
/// before anything is printed.
pub fn complete_if_asked(cmd: fn() -> clap::Command) {
    clap_complete::CompleteEnv::with_factory(cmd)
        .var(COMPLETE_VAR)
        .bin("banger")
        .completer("banger")
        .complete();
}

/// Names from the daemon, or none when it cannot be asked within a moment (a completion never
/// prints errors).
fn names_from_daemon(images: bool) -> Vec<CompletionCandidate> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let names = rt.block_on(async {
        tokio::time::timeout(NAMES_PATIENCE, async {
            let daemon = super::daemon_client::daemon().await.ok()?;
            if images {
                let all = daemon.list_images().await.ok()?;
                Some(all.into_iter().map(|i| i.name).collect::<Vec<_>>())
            } else {
                let all = daemon.list_vms().await.ok()?;
                Some(all.into_iter().map(|v| v.name).collect::<Vec<_>>())
            }
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
    });
    names.into_iter().map(CompletionCandidate::new).collect()
}

fn man(cmd: clap::Command, section: &str) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("banger manual")
        .source("banger")
        .render(&mut out)
        .expect("rendering to memory cannot fail");
    out
}

/// `cmd`'s page as `name`, then those of its subcommands as `name-SUB`, depth first.
fn pages_of(cmd: &clap::Command, name: String, bin: String, out: &mut Vec<(String, Vec<u8>)>) {
    // clap names commands with 'static strings; the few pages made per process leak them.
    let page_name: &'static str = Box::leak(name.clone().into_boxed_str());
    out.push((
        format!("{name}.1"),
        // `banger help CMD` is `banger CMD --help`: no page of its own.
        man(
            cmd.clone()
                .name(page_name)
                .bin_name(bin.clone())
                .disable_help_subcommand(true),
            "1",
        ),
    ));
    for sub in cmd.get_subcommands() {
        pages_of(
            sub,
            format!("{name}-{}", sub.get_name()),
            format!("{bin} {}", sub.get_name()),
            out,
        );
    }
}

/// The CLI's man pages: banger(1), and banger-CMD(1), banger-CMD-SUB(1)… for every command.
pub fn man_pages(cli: &clap::Command) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    pages_of(cli, "banger".into(), "banger".into(), &mut out);
    out
}

/// The pages the CLI does not make, as (directory, name, text): the services' (generated from
/// their own arguments and checked in), banger.conf(5) and banger-dbus(7) (written by hand).
const OTHER_PAGES: [(&str, &str, &str); 4] = [
    (
        "man8",
        "bangerd.8",
        include_str!("../../../docs/man/bangerd.8"),
    ),
    (
        "man8",
        "bangerd-root.8",
        include_str!("../../../docs/man/bangerd-root.8"),
    ),
    (
        "man5",
        "banger.conf.5",
        include_str!("../../../docs/man/banger.conf.5"),
    ),
    (
        "man7",
        "banger-dbus.7",
        include_str!("../../../docs/man/banger-dbus.7"),
    ),
];

/// The completion registration scripts: (shell, file name, the directory under PREFIX/share).
pub fn completion_scripts() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let shells: [(&dyn EnvCompleter, &str, &str); 3] = [
        (
            &clap_complete::env::Bash,
            "banger",
            "bash-completion/completions",
        ),
        (&clap_complete::env::Zsh, "_banger", "zsh/site-functions"),
        (
            &clap_complete::env::Fish,
            "banger.fish",
            "fish/vendor_completions.d",
        ),
    ];
    shells
        .into_iter()
        .map(|(shell, file, dir)| {
            let mut out = Vec::new();
            shell
                .write_registration(COMPLETE_VAR, "banger", "banger", "banger", &mut out)
                .expect("writing to memory cannot fail");
            (dir, file, out)
        })
        .collect()
}

/// Every documentation file an install writes under `layout`'s prefix: the man pages and the
/// shell completions, as (path, contents).
pub fn doc_files(layout: &Layout, cli: &clap::Command) -> Vec<(PathBuf, Vec<u8>)> {
    let share = layout.prefix_path("share");
    let mut out: Vec<(PathBuf, Vec<u8>)> = man_pages(cli)
        .into_iter()
        .map(|(name, text)| (share.join("man/man1").join(name), text))
        .collect();
    out.extend(OTHER_PAGES.iter().map(|(dir, name, text)| {
        (
            share.join("man").join(dir).join(name),
            text.as_bytes().to_vec(),
        )
    }));
    out.extend(
        completion_scripts()
            .into_iter()
            .map(|(dir, file, text)| (share.join(dir).join(file), text)),
    );
    out
}

/// The VMs' names, for completing a VM argument.
pub fn vm_names() -> Vec<CompletionCandidate> {
    names_from_daemon(false)
}

/// The images' names, for completing an image argument.
pub fn image_names() -> Vec<CompletionCandidate> {
    names_from_daemon(true)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use clap::CommandFactory;

    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Compares `text` with the checked-in `path`, or rewrites it with BANGER_UPDATE_GENERATED=1.
    fn check(path: &Path, text: &[u8]) {
        banger_host::testbus::assert_contract(std::str::from_utf8(text).unwrap(), path);
    }

    pub(crate) fn cli_pages() -> Vec<(String, Vec<u8>)> {
        man_pages(&super::super::Cli::command())
    }

    #[test]
    fn checked_in_generated_man_pages_and_completions_match() {
        let mandir = repo().join("docs/man");
        for (name, text) in cli_pages() {
            check(&mandir.join(name), &text);
        }
        let completions = repo().join("completions");
        for (_, file, text) in completion_scripts() {
            check(&completions.join(file), &text);
        }
    }

    #[test]
    fn the_man_pages_document_every_subcommand() {
        let pages = cli_pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "banger.1",
            "banger-vm.1",
            "banger-vm-create.1",
            "banger-image-pull.1",
            "banger-update.1",
        ] {
            assert!(names.contains(&want), "{names:?}");
        }
        // Every page a page refers to exists.
        for (name, text) in &pages {
            let text = String::from_utf8_lossy(text);
            for line in text.lines() {
                if let Some(r) = line.strip_suffix("(1)")
                    && r.starts_with("banger")
                {
                    let target = format!("{}.1", r.replace("\\-", "-"));
                    assert!(
                        names.contains(&target.as_str()),
                        "{name} refers to {target}"
                    );
                }
            }
        }
        let vm = String::from_utf8(
            pages
                .iter()
                .find(|(n, _)| n == "banger-vm.1")
                .unwrap()
                .1
                .clone(),
        )
        .unwrap();
        for sub in ["create", "start", "ssh", "logs"] {
            assert!(vm.contains(sub), "banger-vm(1) names {sub}: {vm}");
        }
    }
}
