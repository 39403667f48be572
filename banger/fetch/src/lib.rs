//! Bounded downloads: every byte streams through SHA-256 once, with a byte cap, a stall
//! timeout per read and a total timeout, so a hostile server can neither feed endless data nor
//! hold the update forever.
//!
//! TLS trusts the host's own certificate store (the one `update-ca-certificates` maintains, so
//! a site's own CA installed there counts), never a bundle compiled into the binary. Redirects
//! are followed only to the same scheme and the same host, or to a host the root-owned
//! configuration names (its `redirect_hosts`).
//!
//! Used by the helper for releases and by the daemon for image catalogs; each passes the
//! limits its own section of `/etc/banger/config.toml` sets.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The limits of a [`Fetcher`], from the root-owned configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes (a stall).
    pub read_timeout: Duration,
    /// Longest time one download may take.
    pub total_timeout: Duration,
    /// Hosts a redirect may lead to besides the URL's own.
    pub redirect_hosts: Vec<String>,
    /// Where an admin lists such hosts (named in the refusal), e.g. `[update] redirect_hosts`.
    pub redirect_setting: &'static str,
}

/// Why a download failed. Messages name the URL.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Connection, TLS or protocol failure, including stalls.
    #[error("downloading {url}: {why}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// HTTP 401: the server wants credentials; `challenge` is its `WWW-Authenticate`.
    #[error(
        "downloading {url}: the server answered HTTP 401 (it asks for credentials: {challenge:?})"
    )]
    Unauthorized {
        /// The URL.
        url: String,
        /// The `WWW-Authenticate` header, "" when none.
        challenge: String,
    },
    /// Not HTTP 200.
    #[error("downloading {url}: the server answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// More bytes than allowed.
    #[error("downloading {url}: the body is larger than the {cap}-byte limit; download stopped")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        cap: u64,
    },
    /// Fewer bytes than the signed size.
    #[error("downloading {url}: truncated, got {got} of {want} bytes")]
    Truncated {
        /// The URL.
        url: String,
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        want: u64,
    },
    /// Canceled by the caller.
    #[error("canceled")]
    Canceled,
    /// A redirect banger does not follow.
    #[error("downloading {url}: the server redirected to {location}, {why}; not followed")]
    Redirect {
        /// The URL asked for.
        url: String,
        /// Where the server pointed.
        location: String,
        /// Why that is refused.
        why: String,
    },
    /// Writing the local file failed.
    #[error("writing {path}: {why}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        why: String,
    },
}

/// A downloader with the configured limits.
pub struct Fetcher {
    agent: ureq::Agent,
    total: Duration,
    redirect_hosts: Vec<String>,
    redirect_setting: &'static str,
    /// Why the host's certificates could not be loaded, if so: `https` downloads then fail
    /// with it.
    roots_error: Option<String>,
}

/// Bytes one read stage chunk holds at most.
const CHUNK: usize = 256 * 1024;
/// Full chunks that may wait between reading and hashing-and-writing.
const DEPTH: usize = 4;

/// The reading stage's ends of the two channels: empty chunks back, full chunks out.
type Stages<'a> = (
    &'a mpsc::Receiver<Vec<u8>>,
    &'a mpsc::SyncSender<(Vec<u8>, usize)>,
);

/// Redirects followed for one download, at most.
const MAX_REDIRECTS: u32 = 5;

/// Where hosts keep their certificate authorities (the first that exists is used): Debian and
/// Ubuntu, Fedora and RHEL, openSUSE, Alpine and Arch.
const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The host's certificate authorities, read as root may trust them: from the first bundle of
/// [`SYSTEM_CA_BUNDLES`] that exists (links resolved), only through directories and into a file
/// that nobody but root can change.
pub fn system_roots() -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let Some(found) = SYSTEM_CA_BUNDLES.iter().map(Path::new).find(|p| p.exists()) else {
        return Err(format!(
            "no certificate authorities on this host (looked for {}): install ca-certificates",
            SYSTEM_CA_BUNDLES.join(", ")
        ));
    };
    let real = std::fs::canonicalize(found).map_err(|e| format!("{}: {e}", found.display()))?;
    let pem = banger_host::fsutil::read_root_owned(&real, 16 << 20)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} vanished", real.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", real.display()));
    }
    Ok(certs)
}

/// The result of a streamed download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes received.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
    /// The response's `Content-Type`, if it had one.
    pub content_type: Option<String>,
}

/// A small document, in memory.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The response's `Content-Type`, if it had one.
    pub content_type: Option<String>,
}

/// Request headers: (name, value).
pub type Headers<'a> = &'a [(&'static str, String)];

/// The host (and port) of an `http(s)` URL, lowercased.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl Fetcher {
    /// A fetcher with these limits, trusting the host's certificate authorities.
    pub fn new(cfg: &FetchLimits) -> Self {
        let (roots, roots_error) = match system_roots() {
            Ok(certs) => (certs, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
            .build();
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_per_read(Some(cfg.read_timeout))
            .timeout_global(Some(cfg.total_timeout))
            .http_status_as_error(false)
            // Redirects are followed by hand, each one checked (see `Fetcher::get`).
            .max_redirects(0)
            .tls_config(tls)
            .user_agent(format!("banger/{}", banger_host::build_info::VERSION))
            .build();
        Fetcher {
            agent: config.into(),
            total: cfg.total_timeout,
            redirect_hosts: cfg.redirect_hosts.clone(),
            redirect_setting: cfg.redirect_setting,
            roots_error,
        }
    }

    /// GETs `url` with `headers`, following redirects that [`redirect_allowed`] allows. An
    /// `Authorization` header is sent to the URL's own host only, never after a redirect to
    /// another one.
    fn get(
        &self,
        url: &str,
        headers: Headers<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>, DownloadError> {
        let mut current = url.to_string();
        let origin = url_host(url);
        for _ in 0..=MAX_REDIRECTS {
            if current.starts_with("https://")
                && let Some(e) = &self.roots_error
            {
                return Err(DownloadError::Transport {
                    url: current,
                    why: format!("cannot check the server's certificate: {e}"),
                });
            }
            let mut req = self.agent.get(&current);
            for (name, value) in headers {
                if name.eq_ignore_ascii_case("authorization") && url_host(&current) != origin {
                    continue;
                }
                req = req.header(*name, value);
            }
            let resp = req.call().map_err(|e| DownloadError::Transport {
                url: current.clone(),
                why: describe(&e),
            })?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let next = redirect_allowed(
                &current,
                &location,
                &self.redirect_hosts,
                self.redirect_setting,
            )
            .map_err(|why| DownloadError::Redirect {
                url: current.clone(),
                location: location.clone(),
                why,
            })?;
            tracing::info!(from = %current, to = %next, "following a redirect");
            current = next;
        }
        Err(DownloadError::Transport {
            url: url.into(),
            why: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// Downloads a small document into memory, refusing more than `cap` bytes.
    pub fn fetch_small(&self, url: &str, cap: u64) -> Result<Vec<u8>, DownloadError> {
        Ok(self.fetch_document(url, cap, &[])?.bytes)
    }

    /// Downloads a small document into memory with request `headers`, refusing more than
    /// `cap` bytes; keeps its `Content-Type`.
    pub fn fetch_document(
        &self,
        url: &str,
        cap: u64,
        headers: Headers<'_>,
    ) -> Result<Document, DownloadError> {
        let mut out = Vec::new();
        let fetched = self.stream(
            url,
            cap,
            None,
            &AtomicBool::new(false),
            &mut out,
            &mut |_| {},
            headers,
        )?;
        Ok(Document {
            bytes: out,
            content_type: fetched.content_type,
        })
    }

    /// Streams `url` into `dest`, hashing as it goes. The body must be exactly `size` bytes and
    /// never more than `cap`. `progress` sees the running byte count; `cancel` stops it.
    pub fn fetch_to_file(
        &self,
        url: &str,
        size: u64,
        cap: u64,
        dest: &Path,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Fetched, DownloadError> {
        self.fetch_to_file_with(url, size, cap, dest, cancel, progress, &[])
    }

    /// [`Fetcher::fetch_to_file`] with request `headers`.
    #[allow(clippy::too_many_arguments)]
    pub fn fetch_to_file_with(
        &self,
        url: &str,
        size: u64,
        cap: u64,
        dest: &Path,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(u64),
        headers: Headers<'_>,
    ) -> Result<Fetched, DownloadError> {
        let werr = |e: std::io::Error| DownloadError::Write {
            path: dest.display().to_string(),
            why: e.to_string(),
        };
        let file = std::fs::File::create(dest).map_err(werr)?;
        // The disk writes each finished stretch while the download goes on, not all at the end.
        let mut sink = banger_host::fsutil::WriteBehind::new(&file);
        let fetched = self
            .stream(
                url,
                cap.min(size),
                Some(size),
                cancel,
                &mut sink,
                progress,
                headers,
            )
            .map_err(|e| match e {
                // The sink is this file: name it, not the URL.
                DownloadError::Write { why, .. } => DownloadError::Write {
                    path: dest.display().to_string(),
                    why,
                },
                other => other,
            })?;
        file.sync_all().map_err(werr)?;
        Ok(fetched)
    }

    /// Streams the body of `url` into `sink` through SHA-256, in two stages that overlap: this
    /// thread reads from the network into chunks of up to [`CHUNK`] bytes, checking the cap,
    /// the exact size, the total time and `cancel`; a second thread hashes each chunk and then
    /// writes it, in order. At most [`DEPTH`] full chunks wait between the two, so memory stays
    /// bounded whatever the server sends. The bytes written are the bytes hashed.
    #[allow(clippy::too_many_arguments)]
    fn stream<W: Write + Send>(
        &self,
        url: &str,
        cap: u64,
        exact: Option<u64>,
        cancel: &AtomicBool,
        sink: &mut W,
        progress: &mut dyn FnMut(u64),
        headers: Headers<'_>,
    ) -> Result<Fetched, DownloadError> {
        let started = Instant::now();
        let mut resp = self.get(url, headers)?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if status == 401 {
            return Err(DownloadError::Unauthorized {
                url: url.into(),
                challenge: header("www-authenticate").unwrap_or_default(),
            });
        }
        let content_type = header("content-type");
        if status != 200 {
            return Err(DownloadError::Status {
                url: url.into(),
                status,
            });
        }
        if let Some(len) = resp.body().content_length()
            && len > cap
        {
            return Err(DownloadError::TooLarge {
                url: url.into(),
                cap,
            });
        }
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        // A small document needs no more than its cap.
        let chunk = usize::try_from(cap.saturating_add(1))
            .unwrap_or(CHUNK)
            .clamp(4096, CHUNK);
        std::thread::scope(|scope| {
            let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(DEPTH);
            let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 1);
            for _ in 0..=DEPTH {
                let _ = empty_tx.send(vec![0u8; chunk]);
            }
            let stage = scope.spawn(move || -> std::io::Result<Sha256> {
                let mut hasher = Sha256::new();
                for (buf, n) in full_rx {
                    hasher.update(&buf[..n]);
                    sink.write_all(&buf[..n])?;
                    // The reader may have stopped; then nobody needs the buffer back.
                    let _ = empty_tx.send(buf);
                }
                Ok(hasher)
            });
            let read = self.read_chunks(
                url,
                cap,
                exact,
                cancel,
                started,
                &mut reader,
                (&empty_rx, &full_tx),
                progress,
            );
            drop(full_tx);
            let hashed = stage.join().unwrap_or_else(|_| {
                Err(std::io::Error::other("the hash-and-write stage panicked"))
            });
            // A failed write is why the reading stopped, if it did.
            let hasher = hashed.map_err(|e| DownloadError::Write {
                path: url.into(),
                why: e.to_string(),
            })?;
            let total = read?;
            Ok(Fetched {
                bytes: total,
                sha256: hasher.finalize().into(),
                content_type,
            })
        })
    }

    /// The reading stage of [`Fetcher::stream`]: fills the empty chunks it gets back from the
    /// other stage and hands them over full; returns the byte count. It returns early, with
    /// what it read, when the other stage has stopped (that stage's error is the one reported).
    #[allow(clippy::too_many_arguments)]
    fn read_chunks(
        &self,
        url: &str,
        cap: u64,
        exact: Option<u64>,
        cancel: &AtomicBool,
        started: Instant,
        reader: &mut dyn Read,
        (empty, full): Stages<'_>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, DownloadError> {
        let transport = |why: String| DownloadError::Transport {
            url: url.to_string(),
            why,
        };
        let mut total: u64 = 0;
        let mut eof = false;
        while !eof {
            let Ok(mut buf) = empty.recv() else {
                return Ok(total);
            };
            let mut n = 0;
            while n < buf.len() {
                if cancel.load(Ordering::SeqCst) {
                    return Err(DownloadError::Canceled);
                }
                if started.elapsed() > self.total {
                    return Err(transport(format!(
                        "took longer than {} s",
                        self.total.as_secs()
                    )));
                }
                let got = match reader.read(&mut buf[n..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(got) => got,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // A server that closes early looks like an unexpected EOF.
                        if let Some(want) = exact
                            && matches!(e.kind(), std::io::ErrorKind::UnexpectedEof)
                        {
                            return Err(DownloadError::Truncated {
                                url: url.into(),
                                got: total,
                                want,
                            });
                        }
                        return Err(transport(describe_io(&e)));
                    }
                };
                n += got;
                total += got as u64;
                if total > cap {
                    return Err(DownloadError::TooLarge {
                        url: url.into(),
                        cap,
                    });
                }
                progress(total);
            }
            if n > 0 && full.send((buf, n)).is_err() {
                return Ok(total);
            }
        }
        if let Some(want) = exact
            && total != want
        {
            return Err(DownloadError::Truncated {
                url: url.into(),
                got: total,
                want,
            });
        }
        Ok(total)
    }
}

/// Resolves `href`, found in the document at `base` (`what` names it in errors), to an
/// absolute URL: an absolute `http(s)` URL stays as it is, a relative one is taken from
/// `base`'s directory and must stay below it (no `..`, `.`, leading `/`, query or fragment).
pub fn resolve_href(base: &str, href: &str, what: &str) -> Result<String, String> {
    if href.starts_with("https://") || href.starts_with("http://") {
        return Ok(href.to_string());
    }
    if href.is_empty()
        || href.starts_with('/')
        || href.split('/').any(|seg| seg == ".." || seg == ".")
        || href.contains(['?', '#', '\\', ' '])
    {
        return Err(format!("{what} names an unsafe relative URL {href:?}"));
    }
    match base.rfind('/') {
        Some(i) if base.contains("://") => Ok(format!("{}{href}", &base[..=i])),
        _ => Err(format!("{base} is not an absolute URL with a path")),
    }
}

/// The scheme and the host (with its port, if any) of an absolute `http(s)` URL.
fn origin(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains('@')).then_some((scheme, host))
}

/// Where a redirect from `from` to `location` leads, if banger follows it: only to the same
/// scheme (never from `https` to `http`, nor the other way), and to the same host and port
/// unless the host is one of `allowed_hosts`. A `location` that is a path stays on `from`'s
/// host.
pub fn redirect_allowed(
    from: &str,
    location: &str,
    allowed_hosts: &[String],
    setting: &str,
) -> Result<String, String> {
    let (scheme, host) = origin(from).ok_or_else(|| format!("{from} is not an absolute URL"))?;
    if location.is_empty() {
        return Err("without saying where (no Location header)".into());
    }
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok(format!("{scheme}://{host}{location}"));
    }
    let Some((to_scheme, to_host)) = origin(location) else {
        return Err("which is not an absolute http(s) URL or path".into());
    };
    if to_scheme != scheme {
        return Err(format!("from {scheme} to {to_scheme}"));
    }
    let bare = |h: &str| h.rsplit_once(':').map_or(h, |(n, _)| n).to_string();
    if to_host != host
        && !allowed_hosts
            .iter()
            .any(|a| a == to_host || *a == bare(to_host))
    {
        return Err(format!(
            "another host ({to_host}); list it in {setting} in /etc/banger/config.toml to \
             allow it"
        ));
    }
    Ok(location.to_string())
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => describe_io(io),
        other => other.to_string(),
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            "the server stalled (no data within the read timeout)".into()
        }
        _ => {
            let s = e.to_string();
            if s.to_lowercase().contains("timeout") || s.to_lowercase().contains("timed out") {
                format!("the server stalled ({s})")
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTING: &str = "[update] redirect_hosts";

    /// Serves one HTTP/1.1 response on loopback: `length` in Content-Length, then `body`, then
    /// closes. Returns the URL.
    fn serve_once(length: usize, body: Vec<u8>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/artefact", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        });
        url
    }

    fn fetcher() -> Fetcher {
        Fetcher::new(&FetchLimits {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            redirect_hosts: Vec::new(),
            redirect_setting: SETTING,
        })
    }

    /// A body of `n` bytes that no two chunks share, so that an order mistake changes the hash.
    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn a_download_is_written_whole_and_in_order_and_hashed_once() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        // Several chunks and a partial last one.
        let data = body(3 * CHUNK + 12345);
        let url = serve_once(data.len(), data.clone());
        let mut seen = Vec::new();
        let got = fetcher()
            .fetch_to_file(
                &url,
                data.len() as u64,
                1 << 30,
                &dest,
                &AtomicBool::new(false),
                &mut |n| seen.push(n),
            )
            .unwrap();
        assert_eq!(got.bytes, data.len() as u64);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(got.sha256, want);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(seen.last().copied(), Some(data.len() as u64));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress only grows");
    }

    #[test]
    fn a_small_document_comes_back_whole() {
        let data = body(10_000);
        let url = serve_once(data.len(), data.clone());
        assert_eq!(fetcher().fetch_small(&url, 20_000).unwrap(), data);
    }

    #[test]
    fn a_body_over_the_cap_or_short_of_its_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let cancel = AtomicBool::new(false);
        // No Content-Length lie: more bytes than the cap allows.
        let data = body(2 * CHUNK);
        let url = serve_once(data.len(), data.clone());
        let e = fetcher()
            .fetch_to_file(
                &url,
                CHUNK as u64,
                CHUNK as u64,
                &dest,
                &cancel,
                &mut |_| {},
            )
            .unwrap_err();
        assert!(matches!(e, DownloadError::TooLarge { .. }), "{e}");
        // The server promises more than it sends.
        let data = body(CHUNK + 10);
        let url = serve_once(2 * CHUNK, data);
        let e = fetcher()
            .fetch_to_file(&url, 2 * CHUNK as u64, 1 << 30, &dest, &cancel, &mut |_| {})
            .unwrap_err();
        assert!(
            matches!(e, DownloadError::Truncated { got, .. } if got == CHUNK as u64 + 10),
            "{e}"
        );
    }

    #[test]
    fn a_failing_write_stops_the_download_and_names_the_file() {
        let data = body(2 * CHUNK);
        let url = serve_once(data.len(), data.clone());
        let e = fetcher()
            .fetch_to_file(
                &url,
                data.len() as u64,
                1 << 30,
                Path::new("/dev/full"),
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap_err();
        match e {
            DownloadError::Write { path, why } => {
                assert_eq!(path, "/dev/full");
                assert!(why.contains("space"), "{why}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_canceled_download_says_so() {
        let data = body(2 * CHUNK);
        let url = serve_once(data.len(), data);
        let dir = tempfile::tempdir().unwrap();
        let e = fetcher()
            .fetch_to_file(
                &url,
                2 * CHUNK as u64,
                1 << 30,
                &dir.path().join("out"),
                &AtomicBool::new(true),
                &mut |_| {},
            )
            .unwrap_err();
        assert!(matches!(e, DownloadError::Canceled), "{e}");
    }

    #[test]
    fn redirects_stay_on_the_scheme_and_the_host() {
        let from = "https://releases.example.org/stable/manifest.json";
        let ok = |loc: &str| redirect_allowed(from, loc, &[], SETTING).unwrap();
        assert_eq!(
            ok("/v2/manifest.json"),
            "https://releases.example.org/v2/manifest.json"
        );
        assert_eq!(
            ok("https://releases.example.org/x"),
            "https://releases.example.org/x"
        );
        for (loc, why) in [
            ("http://releases.example.org/x", "from https to http"),
            (
                "https://evil.example.net/x",
                "another host (evil.example.net)",
            ),
            ("https://releases.example.org:8443/x", "another host"),
            ("//evil.example.net/x", "not an absolute"),
            ("ftp://releases.example.org/x", "from https to ftp"),
            ("", "no Location"),
            ("manifest.json", "not an absolute"),
        ] {
            let e = redirect_allowed(from, loc, &[], SETTING).unwrap_err();
            assert!(e.contains(why), "{loc}: {e}");
        }
        let mirrors = ["mirror.example.net".to_string()];
        assert_eq!(
            redirect_allowed(from, "https://mirror.example.net:8443/x", &mirrors, SETTING).unwrap(),
            "https://mirror.example.net:8443/x"
        );
        assert!(redirect_allowed(from, "http://mirror.example.net/x", &mirrors, SETTING).is_err());
    }

    #[test]
    fn relative_urls_resolve_below_their_document() {
        let base = "http://127.0.0.1:8787/stable/manifest.json";
        assert_eq!(
            resolve_href(base, "0.2.0/SHA256SUMS", "it").unwrap(),
            "http://127.0.0.1:8787/stable/0.2.0/SHA256SUMS"
        );
        assert_eq!(
            resolve_href(base, "https://m.example.org/x", "it").unwrap(),
            "https://m.example.org/x"
        );
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "a?b", "./a", "a\\b"] {
            let e = resolve_href(base, bad, "the index").unwrap_err();
            assert!(e.contains("the index names an unsafe"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_hosts_certificate_authorities_are_found() {
        // Every machine these tests run on has Debian's ca-certificates.
        let roots = system_roots().unwrap();
        assert!(roots.len() > 10, "{} certificates", roots.len());
    }
}
