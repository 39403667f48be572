//! `bangerd-root --self-test`: proof, before an update swaps anything, that the staged helper
//! can start. It reads what the service reads at start (install metadata, configuration, the
//! update journal the running helper has just written) and serves Root1's `Version` over the
//! peer-to-peer D-Bus connection on its standard input, a socket the update engine holds the
//! other end of ([`check_staged_helper`]).
//!
//! A self-test never touches the system bus, systemd or any file: it only reads.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use banger_api::names;
use banger_host::build_info;
use banger_host::install::{InstallMeta, Layout};
use futures_util::StreamExt;

use crate::update::config::UpdateConfig;
use crate::update::journal::Journal;
use crate::update::paths::UpdatePaths;
use crate::vm::config::VmConfig;

/// How long either side of the self-test waits for the other.
const PATIENCE: Duration = Duration::from_secs(15);

/// The object a self-testing helper serves: Root1's identity, nothing else.
struct SelfTest;

#[zbus::interface(name = "org.banger.Root1")]
impl SelfTest {
    /// Version of this binary.
    #[zbus(property)]
    fn version(&self) -> &str {
        build_info::VERSION
    }

    /// Major version of the D-Bus API.
    #[zbus(property)]
    fn api_version(&self) -> u32 {
        names::API_VERSION
    }
}

/// The child side: checks, then serves until the engine hangs up.
pub async fn run() -> anyhow::Result<()> {
    let layout = Layout::new("/");
    let paths = UpdatePaths::system();
    InstallMeta::read_trusted(&layout.install_toml()).context("reading the install metadata")?;
    UpdateConfig::load(&paths.config).context("reading the update configuration")?;
    VmConfig::load(&paths.config).context("reading the VM configuration")?;
    Journal::load(&paths.journal).context("reading the update journal")?;
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("taking the socket on standard input")?;
    let stream = std::os::unix::net::UnixStream::from(fd);
    let conn = tokio::time::timeout(
        PATIENCE,
        zbus::connection::Builder::unix_stream(stream)
            .p2p()
            .server(zbus::Guid::generate())
            .serve_at(names::ROOT1_PATH, SelfTest)
            .build(),
    )
    .await
    .context("no D-Bus handshake on standard input")?
    .context("serving Root1 on standard input")?;
    // Serve until the engine closes its end.
    let mut messages = zbus::MessageStream::from(&conn);
    let _ =
        tokio::time::timeout(PATIENCE, async { while messages.next().await.is_some() {} }).await;
    Ok(())
}

/// The engine side: runs `program --self-test` with one end of a socket pair on its standard
/// input, reads its Root1 `Version` over that socket, and checks it is `version`. The error says
/// what the staged helper did instead, with what it printed.
pub async fn check_staged_helper(program: &Path, version: &str) -> Result<(), String> {
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("making a socket pair: {e}"))?;
    let child = tokio::process::Command::new(program)
        .arg("--self-test")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {} --self-test: {e}", program.display()))?;
    let asked = async {
        let conn = zbus::connection::Builder::unix_stream(ours)
            .p2p()
            .build()
            .await
            .map_err(|e| format!("no D-Bus handshake: {e}"))?;
        let reply = conn
            .call_method(
                None::<&str>,
                names::ROOT1_PATH,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(names::ROOT1_NAME, "Version"),
            )
            .await
            .map_err(|e| format!("reading Root1 Version: {e}"))?;
        let answer: zbus::OwnedVariant = reply
            .body()
            .deserialize()
            .map_err(|e| format!("reading Root1 Version: {e}"))?;
        String::try_from(answer).map_err(|e| format!("reading Root1 Version: {e}"))
    };
    let answered = tokio::time::timeout(PATIENCE, asked)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", PATIENCE.as_secs())));
    let ended = tokio::time::timeout(PATIENCE, child.wait_with_output()).await;
    let (status, stderr) = match ended {
        Ok(Ok(out)) => (
            Some(out.status),
            String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => (None, String::new()),
    };
    let said = if stderr.is_empty() {
        String::new()
    } else {
        format!("; it said: {}", tail(&stderr, 600))
    };
    match (answered, status) {
        (_, Some(st)) if !st.success() => Err(format!(
            "the staged bangerd-root cannot start: its self-test exited with {st}{said}"
        )),
        (Ok(v), Some(_)) if v == version => Ok(()),
        (Ok(v), Some(_)) => Err(format!(
            "the staged bangerd-root answers Version {v:?}, not {version:?}"
        )),
        (Ok(_), None) => Err(format!(
            "the staged bangerd-root did not exit within {} s of its self-test",
            PATIENCE.as_secs()
        )),
        (Err(e), _) => Err(format!("the staged bangerd-root cannot start: {e}{said}")),
    }
}

/// The last `n` bytes of `s`, at a character boundary.
fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
