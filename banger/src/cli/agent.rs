//! A polkit text agent for the duration of one call, the way systemctl does it: when stdin is a
//! terminal and we are not root, `pkttyagent --process <our pid> --notify-fd N --fallback` is
//! started, and we wait until it has registered (it closes fd N) before making the call.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A running `pkttyagent`, killed on drop.
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts an agent when it can be useful: stdin is a terminal, we are not root, and
    /// `pkttyagent` is installed. Returns `None` otherwise.
    pub fn start_if_interactive() -> anyhow::Result<Option<Agent>> {
        if banger_host::users::current_uid() == 0 || !stdin_is_tty() {
            return Ok(None);
        }
        let Some(program) = banger_host::virt::find_program("pkttyagent") else {
            return Ok(None);
        };
        let (mut reader, writer) = std::io::pipe().context("creating the agent's notify pipe")?;
        let fd = writer.as_raw_fd();
        set_inheritable(fd).context("passing the notify pipe to pkttyagent")?;
        let child = Command::new(program)
            .args([
                "--process",
                &std::process::id().to_string(),
                "--notify-fd",
                &fd.to_string(),
                "--fallback",
            ])
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting pkttyagent")?;
        drop(writer);
        // EOF once the agent has registered with polkit (or has died).
        let mut buf = [0u8; 16];
        let _ = reader.read(&mut buf);
        Ok(Some(Agent { child }))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdin_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

#[allow(unsafe_code)]
fn set_inheritable(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; clearing FD_CLOEXEC has no memory-safety effect.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
