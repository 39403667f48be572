//! Asking a VM's guest agent (protocol: `banger_agent`, `docs/guest.md`).
//!
//! The channel's host side is a Unix socket in the VM's directory, made by the VMM: QEMU
//! listens on it for its virtio-serial port; Firecracker listens on it for its vsock device
//! and forwards a connection that starts with `CONNECT <port>\n` to that guest port. The VMM
//! runs as the owner in a sandbox and could, if a guest escaped into it, put something else
//! in the socket's place, so the socket is opened without following links, must be a socket
//! owned by the owner, and is connected to through that descriptor.
//!
//! Everything the guest sends is untrusted: each exchange has a deadline, each line a size
//! cap, at most [`MAX_SKIPPED`] lines are skipped while looking for the answer, and answers
//! are parsed into fixed types and checked before anyone sees them. QEMU serves one client at
//! a time, so the questions to one VM are asked one after another.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_agent::{
    Answer, HOST_SOCKET, Info, MAX_ANSWER_BYTES, PROTOCOL, Port, Request, VSOCK_PORT,
    checked_ports, clean_text, op,
};
use banger_api::wire::BackendKind;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long one question may take, connection included.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines that are not the answer (empty, or left over from an earlier connection) skipped at
/// most.
const MAX_SKIPPED: usize = 64;
/// Longest line Firecracker's `CONNECT` answer may be.
const MAX_HANDSHAKE_BYTES: u64 = 64;

/// Why the agent gave no answer. Nothing on the host or in the guest was changed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The VMM made no agent socket.
    #[error(
        "the VM has no guest agent channel ({} does not exist): it was started by a banger \
         without one; restart the VM to add it",
        .0.display()
    )]
    NoChannel(PathBuf),
    /// Something else is where the socket should be.
    #[error("{}: {why}; the guest agent was not asked", .path.display())]
    NotASocket {
        /// The socket's path.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Connecting or talking failed.
    #[error("the guest agent's channel {}: {error}", .path.display())]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// No answer in time.
    #[error(
        "the guest agent did not answer within {} s: is banger-agent running in the guest? \
         (docs/guest.md says how an image gets one)",
        ANSWER_TIMEOUT.as_secs()
    )]
    Timeout,
    /// Firecracker did not forward the connection.
    #[error(
        "Firecracker did not connect to vsock port {VSOCK_PORT} in the guest (it answered \
         {0:?}): is banger-agent running in the guest?"
    )]
    Handshake(String),
    /// The channel closed before the answer.
    #[error("the guest agent's channel closed before it answered")]
    Closed,
    /// An answer line too long.
    #[error("the guest agent sent a line longer than {MAX_ANSWER_BYTES} bytes; it was ignored")]
    TooLong,
    /// The answer could not be read.
    #[error("the guest agent's answer is malformed: {0}")]
    Malformed(String),
    /// The agent refused the question.
    #[error("the guest agent refused the question: {0}")]
    Refused(String),
}

/// The agents of all VMs: one question at a time per VM.
#[derive(Default)]
pub struct Agents {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
}

impl Agents {
    /// The guest's view of itself.
    pub async fn info(
        &self,
        id: &str,
        vm_dir: &Path,
        backend: BackendKind,
    ) -> Result<Info, AgentError> {
        let info: Info = self.ask(id, vm_dir, backend, op::INFO).await?;
        info.checked().map_err(AgentError::Malformed)
    }

    /// The guest's listening sockets.
    pub async fn ports(
        &self,
        id: &str,
        vm_dir: &Path,
        backend: BackendKind,
    ) -> Result<Vec<Port>, AgentError> {
        let ports: Vec<Port> = self.ask(id, vm_dir, backend, op::PORTS).await?;
        checked_ports(ports).map_err(AgentError::Malformed)
    }

    /// Forgets a deleted VM's lock.
    pub fn forget(&self, id: &str) {
        self.locks.lock().unwrap().remove(id);
    }

    async fn ask<T: DeserializeOwned>(
        &self,
        id: &str,
        vm_dir: &Path,
        backend: BackendKind,
        what: &str,
    ) -> Result<T, AgentError> {
        let lock = self
            .locks
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .clone();
        let request = Request {
            v: PROTOCOL,
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            op: what.to_string(),
        };
        let path = vm_dir.join(HOST_SOCKET);
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        let _one_at_a_time = tokio::time::timeout_at(deadline, lock.lock())
            .await
            .map_err(|_| AgentError::Timeout)?;
        let stream = tokio::time::timeout_at(deadline, connect(&path))
            .await
            .map_err(|_| AgentError::Timeout)??;
        let value = exchange(stream, &path, backend, &request, deadline).await?;
        serde_json::from_value(value).map_err(|e| AgentError::Malformed(e.to_string()))
    }
}

/// Connects to the socket at `path` if it is the owner's socket, through its descriptor.
async fn connect(path: &Path) -> Result<UnixStream, AgentError> {
    let io = |error| AgentError::Io {
        path: path.to_path_buf(),
        error,
    };
    let pinned = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AgentError::NoChannel(path.to_path_buf()));
        }
        Err(e) => return Err(io(e)),
    };
    let md = pinned.metadata().map_err(io)?;
    let me = banger_host::users::current_uid();
    let why = if !md.file_type().is_socket() {
        Some("is not a Unix socket (a symbolic link or another file is in its place)".to_string())
    } else if md.uid() != me {
        Some(format!("belongs to uid {}, not to {me}", md.uid()))
    } else {
        None
    };
    if let Some(why) = why {
        return Err(AgentError::NotASocket {
            path: path.to_path_buf(),
            why,
        });
    }
    UnixStream::connect(format!("/proc/self/fd/{}", pinned.as_raw_fd()))
        .await
        .map_err(io)
}

/// One question and its answer on a connected stream.
async fn exchange(
    stream: UnixStream,
    path: &Path,
    backend: BackendKind,
    request: &Request,
    deadline: tokio::time::Instant,
) -> Result<serde_json::Value, AgentError> {
    let io = |error| AgentError::Io {
        path: path.to_path_buf(),
        error,
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    if backend == BackendKind::Firecracker {
        tokio::time::timeout_at(
            deadline,
            w.write_all(format!("CONNECT {VSOCK_PORT}\n").as_bytes()),
        )
        .await
        .map_err(|_| AgentError::Timeout)?
        .map_err(io)?;
        let mut line = Vec::new();
        tokio::time::timeout_at(
            deadline,
            (&mut r)
                .take(MAX_HANDSHAKE_BYTES)
                .read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| AgentError::Timeout)?
        .map_err(io)?;
        let line = String::from_utf8_lossy(&line);
        if !line.starts_with("OK ") {
            return Err(AgentError::Handshake(clean_text(line.trim_end())));
        }
    }
    // The leading newline ends whatever partial line an earlier connection left behind, so
    // the agent reads this request on a line of its own.
    let mut out = b"\n".to_vec();
    out.extend(serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?);
    out.push(b'\n');
    tokio::time::timeout_at(deadline, w.write_all(&out))
        .await
        .map_err(|_| AgentError::Timeout)?
        .map_err(io)?;
    answer_for(&mut r, request.id, deadline)
        .await
        .map_err(|e| match e {
            LineError::Io(error) => io(error),
            LineError::Agent(e) => e,
        })
}

enum LineError {
    Io(std::io::Error),
    Agent(AgentError),
}

/// Reads lines until the answer to request `id`; skips up to [`MAX_SKIPPED`] others. When
/// the deadline passes after lines that could not be read, their fault is the error.
async fn answer_for(
    r: &mut (impl AsyncBufRead + Unpin),
    id: u64,
    deadline: tokio::time::Instant,
) -> Result<serde_json::Value, LineError> {
    let mut last_problem: Option<String> = None;
    for _ in 0..=MAX_SKIPPED {
        let line = match tokio::time::timeout_at(deadline, read_line(r)).await {
            Ok(line) => line?,
            Err(_) => {
                return Err(LineError::Agent(match last_problem {
                    Some(p) => AgentError::Malformed(format!(
                        "{p} (and no answer to request {id} within {} s)",
                        ANSWER_TIMEOUT.as_secs()
                    )),
                    None => AgentError::Timeout,
                }));
            }
        };
        if line.is_empty() {
            continue;
        }
        let answer: Answer = match serde_json::from_slice(&line) {
            Ok(a) => a,
            Err(e) => {
                last_problem = Some(e.to_string());
                continue;
            }
        };
        if answer.id != id {
            continue;
        }
        return match (answer.v, answer.ok, answer.error) {
            (PROTOCOL, Some(v), None) => Ok(v),
            (PROTOCOL, None, Some(e)) => Err(LineError::Agent(AgentError::Refused(clean_text(&e)))),
            (PROTOCOL, _, _) => Err(LineError::Agent(AgentError::Malformed(
                "an answer needs exactly one of ok and error".into(),
            ))),
            (v, _, _) => Err(LineError::Agent(AgentError::Malformed(format!(
                "protocol version {v}, not {PROTOCOL}"
            )))),
        };
    }
    Err(LineError::Agent(AgentError::Malformed(
        match last_problem {
            Some(p) => format!("{p} (and no answer to request {id} in {MAX_SKIPPED} lines)"),
            None => format!("no answer to request {id} in {MAX_SKIPPED} lines"),
        },
    )))
}

/// One line without its newline, at most [`MAX_ANSWER_BYTES`].
async fn read_line(r: &mut (impl AsyncBufRead + Unpin)) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .await
        .map_err(LineError::Io)?;
    if n == 0 {
        return Err(LineError::Agent(AgentError::Closed));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_ANSWER_BYTES {
        return Err(LineError::Agent(AgentError::TooLong));
    } else {
        return Err(LineError::Agent(AgentError::Closed));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake agent on a socket in a temporary directory: reads one request, then writes
    /// what `reply` makes of its id.
    async fn agent_answering(
        reply: impl Fn(u64) -> Vec<u8> + Send + 'static,
        firecracker: bool,
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(dir.path().join(HOST_SOCKET)).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                let mut line = String::new();
                if firecracker {
                    r.read_line(&mut line).await.unwrap();
                    assert_eq!(line, format!("CONNECT {VSOCK_PORT}\n"));
                    w.write_all(b"OK 1073741824\n").await.unwrap();
                }
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap() == 0 {
                        break;
                    }
                    if let Ok(req) = serde_json::from_str::<Request>(line.trim()) {
                        let _ = w.write_all(&reply(req.id)).await;
                        break;
                    }
                }
            }
        });
        dir
    }

    fn ports_json(id: u64) -> Vec<u8> {
        format!(
            "{{\"v\":1,\"id\":{},\"ok\":[]}}\nnot json\n{{\"v\":1,\"id\":{id},\"ok\":[{{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":22,\"pid\":5,\"process\":\"drop\\u001bbear\"}}]}}\n",
            id + 1000
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn stale_and_garbled_lines_are_skipped_and_text_is_cleaned() {
        for fc in [false, true] {
            let dir = agent_answering(ports_json, fc).await;
            let backend = if fc {
                BackendKind::Firecracker
            } else {
                BackendKind::Qemu
            };
            let ports = Agents::default()
                .ports("a", dir.path(), backend)
                .await
                .unwrap();
            assert_eq!(ports.len(), 1);
            assert_eq!(ports[0].process, "drop?bear");
        }
    }

    #[tokio::test]
    async fn hostile_answers_are_refused_naming_the_fault() {
        type Reply = Box<dyn Fn(u64) -> Vec<u8> + Send>;
        let cases: Vec<(Reply, &str)> = vec![
            (
                Box::new(|_| vec![b'a'; MAX_ANSWER_BYTES + 10]),
                "longer than 262144 bytes",
            ),
            (Box::new(|_| b"garbage\n".repeat(80)), "malformed"),
            (
                Box::new(|id| format!("{{\"v\":1,\"id\":{id},\"error\":\"no\\u001b\"}}\n").into()),
                "refused the question: no?",
            ),
            (
                Box::new(|id| format!("{{\"v\":1,\"id\":{id}}}\n").into()),
                "exactly one of ok and error",
            ),
            (
                Box::new(|id| {
                    format!("{{\"v\":1,\"id\":{id},\"ok\":[{{\"proto\":\"icmp\",\"address\":\"::\",\"port\":1,\"pid\":0,\"process\":\"\"}}]}}\n").into()
                }),
                "neither tcp nor udp",
            ),
            (Box::new(|_| b"{\"v\":1".to_vec()), "closed before"),
        ];
        for (reply, want) in cases {
            let dir = agent_answering(reply, false).await;
            let e = Agents::default()
                .ports("a", dir.path(), BackendKind::Qemu)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
    }

    #[tokio::test]
    async fn a_silent_agent_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let _l = UnixListener::bind(dir.path().join(HOST_SOCKET)).unwrap();
        let e = Agents::default()
            .info("a", dir.path(), BackendKind::Qemu)
            .await
            .unwrap_err();
        assert!(matches!(e, AgentError::Timeout), "{e}");
    }

    #[tokio::test]
    async fn garbage_then_silence_names_the_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(dir.path().join(HOST_SOCKET)).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"this is not json\n").await.unwrap();
            tokio::time::sleep(ANSWER_TIMEOUT * 2).await;
        });
        let e = Agents::default()
            .info("a", dir.path(), BackendKind::Qemu)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the guest agent's answer is malformed: expected"),
            "{e}"
        );
        assert!(
            e.ends_with("(and no answer to request 1 within 3 s)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_missing_or_replaced_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = Agents::default();
        let e = a
            .info("a", dir.path(), BackendKind::Qemu)
            .await
            .unwrap_err();
        assert!(matches!(e, AgentError::NoChannel(_)), "{e}");
        std::os::unix::fs::symlink("/run/dbus/system_bus_socket", dir.path().join(HOST_SOCKET))
            .unwrap();
        let e = a
            .info("a", dir.path(), BackendKind::Qemu)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is not a Unix socket"), "{e}");
    }

    #[tokio::test]
    async fn firecracker_refusing_the_connection_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(dir.path().join(HOST_SOCKET)).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"FAILURE\n").await;
        });
        let e = Agents::default()
            .info("a", dir.path(), BackendKind::Firecracker)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("answered \"FAILURE\""), "{e}");
    }
}
