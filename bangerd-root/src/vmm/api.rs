//! Sends [`ApiRequest`]s to a VMM's API socket.
//!
//! Each request is one HTTP/1.1 exchange on a fresh Unix-socket connection (`Connection:
//! close`), with a deadline covering connect, write and read, and a cap on the answer's size.
//! A 2xx status is success; anything else becomes [`ApiError::Status`] carrying Firecracker's
//! `fault_message`. Every error names the socket and the request.
//!
//! This module never retries a request: the pre-boot `PUT`s could be repeated, but
//! `InstanceStart` cannot, and a VMM that fails one request is stopped by the caller, not
//! coaxed along.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::ApiRequest;

/// The largest answer accepted, headers and body together.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How often [`wait_for_socket`] tries to connect.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How much of a non-JSON error body goes into [`ApiError::Status`].
const MAX_FAULT_CHARS: usize = 1000;

/// Why a request to a VMM's API socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing accepted connections on the socket in time (the VMM did not start, or died).
    #[error(
        "the VMM's API socket {} did not accept connections within {waited:?}: {last}",
        .socket.display()
    )]
    NotListening {
        /// The socket.
        socket: PathBuf,
        /// How long connections were tried.
        waited: Duration,
        /// The last connection error.
        last: String,
    },
    /// The request cannot be written as HTTP (its method or path holds spaces or control
    /// characters).
    #[error("{method} {path:?} on {}: not a valid HTTP request line", .socket.display())]
    InvalidRequest {
        /// The socket.
        socket: PathBuf,
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
    },
    /// Connecting, writing or reading failed.
    #[error("{method} {path} on {}: {error}", .socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// What failed.
        error: io::Error,
    },
    /// No complete answer within the deadline.
    #[error("{method} {path} on {}: no complete answer within {timeout:?}", .socket.display())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The answer is not HTTP/1.x, or the connection closed before it was complete.
    #[error("{method} {path} on {}: bad answer: {detail}", .socket.display())]
    Malformed {
        /// The socket.
        socket: PathBuf,
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The answer exceeds [`MAX_RESPONSE_BYTES`].
    #[error("{method} {path} on {}: answer larger than {limit} bytes", .socket.display())]
    TooLarge {
        /// The socket.
        socket: PathBuf,
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// The cap, [`MAX_RESPONSE_BYTES`].
        limit: usize,
    },
    /// The VMM refused the request, e.g. "PUT /machine-config on
    /// /var/lib/banger/vms/x/firecracker.sock: 400 Bad Request: Invalid vcpu count".
    #[error(
        "{method} {path} on {}: {status} {reason}{}",
        .socket.display(),
        colon_then(.fault_message)
    )]
    Status {
        /// The socket.
        socket: PathBuf,
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// The HTTP status code.
        status: u16,
        /// Its reason phrase (the usual one when the VMM sent none).
        reason: String,
        /// The `fault_message` of the VMM's JSON error body, else the body itself, trimmed.
        fault_message: String,
    },
}

/// Waits until `socket` accepts a connection (the VMM creates it shortly after starting),
/// trying every few milliseconds for at most `timeout`.
pub async fn wait_for_socket(socket: &Path, timeout: Duration) -> Result<(), ApiError> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let last = match tokio::time::timeout(left, UnixStream::connect(socket)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connecting did not finish".to_string(),
        };
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(ApiError::NotListening {
                socket: socket.to_path_buf(),
                waited: timeout,
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(left)).await;
    }
}

/// Sends `req` to `socket` on a new connection; `timeout` covers connecting, writing and
/// reading the answer. Succeeds on a 2xx status.
pub async fn send(socket: &Path, req: &ApiRequest, timeout: Duration) -> Result<(), ApiError> {
    let at = || (socket.to_path_buf(), req.method, req.path.clone());
    let printable = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic());
    if !printable(req.method) || !printable(&req.path) {
        let (socket, method, path) = at();
        return Err(ApiError::InvalidRequest {
            socket,
            method,
            path,
        });
    }
    let message = encode(req);
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(&message).await?;
        read_response(&mut stream).await
    };
    let response = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(response)) => response,
        Err(_) => {
            let (socket, method, path) = at();
            return Err(ApiError::Timeout {
                socket,
                method,
                path,
                timeout,
            });
        }
        Ok(Err(failure)) => {
            let (socket, method, path) = at();
            return Err(match failure {
                Failure::Io(error) => ApiError::Io {
                    socket,
                    method,
                    path,
                    error,
                },
                Failure::Malformed(detail) => ApiError::Malformed {
                    socket,
                    method,
                    path,
                    detail,
                },
                Failure::TooLarge => ApiError::TooLarge {
                    socket,
                    method,
                    path,
                    limit: MAX_RESPONSE_BYTES,
                },
            });
        }
    };
    if (200..300).contains(&response.status) {
        return Ok(());
    }
    let (socket, method, path) = at();
    Err(ApiError::Status {
        socket,
        method,
        path,
        status: response.status,
        reason: response.reason,
        fault_message: fault_message(&response.body),
    })
}

/// Sends `reqs` in order, stopping at the first that fails.
pub async fn send_all(
    socket: &Path,
    reqs: &[ApiRequest],
    timeout: Duration,
) -> Result<(), ApiError> {
    for req in reqs {
        send(socket, req, timeout).await?;
    }
    Ok(())
}

/// The request as bytes; a `null` body is sent as no body.
fn encode(req: &ApiRequest) -> Vec<u8> {
    let body = if req.body.is_null() {
        String::new()
    } else {
        req.body.to_string()
    };
    format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        req.method,
        req.path,
        body.len()
    )
    .into_bytes()
}

/// Why an exchange failed, before the socket and request are attached.
enum Failure {
    Io(io::Error),
    Malformed(String),
    TooLarge,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

struct Response {
    status: u16,
    reason: String,
    body: Vec<u8>,
}

/// Reads one HTTP/1.x answer: status line and headers, then a body of `Content-Length` bytes,
/// or up to the end of the connection when there is no such header. 1xx, 204 and 304 answers
/// have no body (RFC 9112, 6.3), whatever their headers; Firecracker keeps the connection open
/// after its 204s, so nothing more is read.
async fn read_response(stream: &mut UnixStream) -> Result<Response, Failure> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err(Failure::TooLarge);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Failure::Malformed(if buf.is_empty() {
                "the connection closed without an answer".into()
            } else {
                format!(
                    "the connection closed after {} bytes, within the headers",
                    buf.len()
                )
            }));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end - 4])
        .map_err(|_| Failure::Malformed("the headers are not text".into()))?;
    let mut lines = head.split("\r\n");
    let (status, reason) = parse_status_line(lines.next().unwrap_or_default())?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Failure::Malformed(format!("header line {line:?}")));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| Failure::Malformed(format!("Content-Length {value:?}")))?;
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Failure::Malformed(format!(
                "Transfer-Encoding {value:?} is not supported"
            )));
        }
    }
    let mut body = buf.split_off(head_end);
    if status < 200 || status == 204 || status == 304 {
        body.clear();
    } else if let Some(len) = content_length {
        if head_end.saturating_add(len) > MAX_RESPONSE_BYTES {
            return Err(Failure::TooLarge);
        }
        while body.len() < len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(Failure::Malformed(format!(
                    "the connection closed after {} of {len} body bytes",
                    body.len()
                )));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else {
        while head_end + body.len() <= MAX_RESPONSE_BYTES {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        if head_end + body.len() > MAX_RESPONSE_BYTES {
            return Err(Failure::TooLarge);
        }
    }
    Ok(Response {
        status,
        reason,
        body,
    })
}

/// `HTTP/1.1 400 Bad Request` → (400, "Bad Request"); Firecracker sends no reason phrase, so
/// the usual one is filled in.
fn parse_status_line(line: &str) -> Result<(u16, String), Failure> {
    let bad = || Failure::Malformed(format!("status line {:?}", truncate(line, 80)));
    let (version, rest) = line.split_once(' ').ok_or_else(bad)?;
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&status) {
        return Err(bad());
    }
    let reason = match reason.trim() {
        "" => usual_reason(status).to_string(),
        r => r.to_string(),
    };
    Ok((status, reason))
}

fn usual_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Firecracker's error body is `{"fault_message": "..."}`; anything else is shown as it is.
fn fault_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("fault_message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| truncate(String::from_utf8_lossy(body).trim(), MAX_FAULT_CHARS))
}

/// `": text"`, or nothing for an empty text.
fn colon_then(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};
    use tokio::net::UnixListener;

    use super::*;
    use crate::vmm::Backend;
    use crate::vmm::firecracker::Firecracker;
    use crate::vmm::tests::spec;
    use banger_host::virt::Accelerator;

    /// How the fake Firecracker answers.
    #[derive(Clone, Copy)]
    enum Answer {
        /// 204 as Firecracker sends it: no reason phrase, no length, connection kept open.
        NoContent,
        /// 400 with a `fault_message` for this path, 204 for the others.
        FaultOn(&'static str),
        /// A 400 whose body is not JSON, written a few bytes at a time.
        TrickledTextFault,
        /// Closes the connection after reading the request.
        Close,
        /// Something that is not HTTP.
        Garbage,
        /// Reads the request and never answers.
        Stall,
        /// A 200 with a body beyond the cap and no length, then closes.
        Huge,
        /// A 200 announcing a body beyond the cap.
        HugeLength,
        /// A 200 with a short body and its length.
        OkWithBody,
    }

    /// One request as the fake server saw it.
    #[derive(Debug)]
    struct Seen {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// Starts a fake Firecracker API server on `<dir>/firecracker.sock`.
    fn fake_firecracker(dir: &Path, answer: Answer) -> (PathBuf, Log) {
        let socket = dir.join("firecracker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let log: Log = Arc::default();
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, answer, seen.clone()));
            }
        });
        (socket, log)
    }

    async fn serve(mut stream: UnixStream, answer: Answer, log: Log) {
        let Some(seen) = read_request(&mut stream).await else {
            return;
        };
        let path = seen
            .request_line
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        log.lock().unwrap().push(seen);
        let fault = |msg: &str| {
            let body = json!({ "fault_message": msg }).to_string();
            format!(
                "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let no_content =
            "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n";
        let reply = match answer {
            Answer::FaultOn(p) if p == path => fault("Invalid vcpu count"),
            Answer::NoContent | Answer::FaultOn(_) => no_content.to_string(),
            Answer::TrickledTextFault => {
                let text =
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 15\r\n\r\n  not json at all";
                for piece in text.as_bytes().chunks(3) {
                    let _ = stream.write_all(piece).await;
                    let _ = stream.flush().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                return;
            }
            Answer::Close => return,
            Answer::Garbage => "SSH-2.0-OpenSSH_9.2\r\n\r\n".to_string(),
            Answer::Stall => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Answer::Huge => {
                format!(
                    "HTTP/1.1 200 OK\r\n\r\n{}",
                    "x".repeat(MAX_RESPONSE_BYTES + 10)
                )
            }
            Answer::HugeLength => "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_string(),
            Answer::OkWithBody => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_string(),
        };
        let _ = stream.write_all(reply.as_bytes()).await;
        // Like Firecracker, keep the connection open; the client must not wait for its end,
        // except for `Huge`, whose length is the connection's end.
        if matches!(answer, Answer::Huge | Answer::Garbage) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }

    async fn read_request(stream: &mut UnixStream) -> Option<Seen> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end - 4].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?.to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf.split_off(head_end);
        while body.len() < len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Seen {
            request_line,
            headers,
            body,
        })
    }

    fn full_spec() -> crate::vmm::VmmSpec {
        let mut s = spec(Accelerator::Kvm {
            cpu_flag: "vmx".into(),
        });
        s.rootfs = Some("/var/lib/banger/vms/0123456789ab/rootfs.img".into());
        s
    }

    fn requests() -> Vec<ApiRequest> {
        Firecracker::new("/usr/local/bin/firecracker".into()).setup_requests(&full_spec())
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn sends_the_setup_requests_as_http() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, log) = fake_firecracker(dir.path(), Answer::NoContent);
        let reqs = requests();
        send_all(&socket, &reqs, T).await.unwrap();
        let seen = log.lock().unwrap();
        let lines: Vec<&str> = seen.iter().map(|s| s.request_line.as_str()).collect();
        assert_eq!(
            lines,
            [
                "PUT /machine-config HTTP/1.1",
                "PUT /boot-source HTTP/1.1",
                "PUT /drives/rootfs HTTP/1.1",
                "PUT /drives/config HTTP/1.1",
                "PUT /network-interfaces/eth0 HTTP/1.1",
                "PUT /vsock HTTP/1.1",
                "PUT /actions HTTP/1.1",
            ]
        );
        for (s, req) in seen.iter().zip(&reqs) {
            assert_eq!(s.header("Host"), Some("localhost"));
            assert_eq!(s.header("Content-Type"), Some("application/json"));
            assert_eq!(s.header("Accept"), Some("application/json"));
            assert_eq!(s.header("Connection"), Some("close"));
            let len = s.body.len().to_string();
            assert_eq!(s.header("Content-Length"), Some(len.as_str()));
            let body: Value = serde_json::from_slice(&s.body).unwrap();
            assert_eq!(body, req.body);
        }
        assert_eq!(
            serde_json::from_slice::<Value>(&seen[0].body).unwrap(),
            json!({ "vcpu_count": 2, "mem_size_mib": 256, "smt": false })
        );
    }

    #[tokio::test]
    async fn stops_at_the_first_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, log) = fake_firecracker(dir.path(), Answer::FaultOn("/boot-source"));
        let err = send_all(&socket, &requests(), T).await.unwrap_err();
        assert_eq!(
            log.lock().unwrap().len(),
            2,
            "nothing is sent after the refusal"
        );
        match &err {
            ApiError::Status {
                method,
                path,
                status,
                fault_message,
                ..
            } => {
                assert_eq!(
                    (*method, path.as_str(), *status),
                    ("PUT", "/boot-source", 400)
                );
                assert_eq!(fault_message, "Invalid vcpu count");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "PUT /boot-source on {}: 400 Bad Request: Invalid vcpu count",
                socket.display()
            )
        );
    }

    #[tokio::test]
    async fn a_text_error_body_is_shown_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, _) = fake_firecracker(dir.path(), Answer::TrickledTextFault);
        let err = send(&socket, &requests()[0], T).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with(": 400 Bad Request: not json at a"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_2xx_with_a_body_is_success() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, _) = fake_firecracker(dir.path(), Answer::OkWithBody);
        send(&socket, &requests()[0], T).await.unwrap();
    }

    #[tokio::test]
    async fn closed_without_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, _) = fake_firecracker(dir.path(), Answer::Close);
        let err = send(&socket, &requests()[0], T).await.unwrap_err();
        assert!(matches!(err, ApiError::Malformed { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("PUT /machine-config on "), "{text}");
        assert!(text.contains("firecracker.sock"), "{text}");
        assert!(text.contains("closed without an answer"), "{text}");
    }

    #[tokio::test]
    async fn garbage_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, _) = fake_firecracker(dir.path(), Answer::Garbage);
        let err = send(&socket, &requests()[0], T).await.unwrap_err();
        assert!(matches!(err, ApiError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("SSH-2.0"), "{err}");
    }

    #[tokio::test]
    async fn stalled_answer_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, log) = fake_firecracker(dir.path(), Answer::Stall);
        let started = Instant::now();
        let err = send(&socket, &requests()[0], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(log.lock().unwrap().len(), 1, "the request was delivered");
        assert!(
            err.to_string().contains("no complete answer within 200ms"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn answers_beyond_the_cap_are_refused() {
        for answer in [Answer::Huge, Answer::HugeLength] {
            let dir = tempfile::tempdir().unwrap();
            let (socket, _) = fake_firecracker(dir.path(), answer);
            let err = send(&socket, &requests()[0], T).await.unwrap_err();
            assert!(matches!(err, ApiError::TooLarge { .. }), "{err:?}");
            assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
        }
    }

    #[tokio::test]
    async fn no_socket_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("firecracker.sock");
        let err = send(&socket, &requests()[0], T).await.unwrap_err();
        assert!(matches!(err, ApiError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&socket.display().to_string()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn request_line_injection_is_refused() {
        let mut req = requests()[0].clone();
        req.path = "/machine-config HTTP/1.1\r\nX: y".into();
        let err = send(Path::new("/nonexistent.sock"), &req, T)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::InvalidRequest { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn waits_for_the_socket_to_appear() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("firecracker.sock");
        let later = socket.clone();
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let listener = UnixListener::bind(&later).unwrap();
            let _ = listener.accept().await;
        });
        wait_for_socket(&socket, T).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn gives_up_waiting_for_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("firecracker.sock");
        let started = Instant::now();
        let err = wait_for_socket(&socket, Duration::from_millis(150))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(err, ApiError::NotListening { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&socket.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line("HTTP/1.1 204 ").ok(),
            Some((204, "No Content".to_string()))
        );
        assert_eq!(
            parse_status_line("HTTP/1.0 400 Bad thing").ok(),
            Some((400, "Bad thing".to_string()))
        );
        assert!(parse_status_line("HTTP/1.1 20 OK").is_err());
        assert!(parse_status_line("HTTP/2 200 OK").is_err());
        assert!(parse_status_line("hello").is_err());
    }

    #[test]
    fn fault_messages() {
        assert_eq!(fault_message(br#"{"fault_message":"x y"}"#), "x y");
        assert_eq!(fault_message(b"  plain\n"), "plain");
        assert_eq!(fault_message(b""), "");
        let long = "é".repeat(MAX_FAULT_CHARS + 5);
        assert_eq!(
            fault_message(long.as_bytes()).chars().count(),
            MAX_FAULT_CHARS + 1
        );
    }
}
