//! Bounded downloads: every byte streams through SHA-256 once, with a byte cap, a stall
//! timeout per read and a total timeout, so a hostile server can neither feed endless data nor
//! hold the update forever.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::config::UpdateConfig;

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
}

/// The result of a streamed download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes received.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
}

impl Fetcher {
    /// A fetcher using `cfg`'s timeouts.
    pub fn new(cfg: &UpdateConfig) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_per_read(Some(cfg.read_timeout))
            .timeout_global(Some(cfg.total_timeout))
            .http_status_as_error(false)
            .max_redirects(3)
            .user_agent(format!("banger/{}", banger::build_info::VERSION))
            .build();
        Fetcher {
            agent: config.into(),
            total: cfg.total_timeout,
        }
    }

    /// Downloads a small document into memory, refusing more than `cap` bytes.
    pub fn fetch_small(&self, url: &str, cap: u64) -> Result<Vec<u8>, DownloadError> {
        let mut out = Vec::new();
        self.stream(
            url,
            cap,
            None,
            &AtomicBool::new(false),
            &mut |chunk| {
                out.extend_from_slice(chunk);
                Ok(())
            },
            &mut |_| {},
        )?;
        Ok(out)
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
        let werr = |e: std::io::Error| DownloadError::Write {
            path: dest.display().to_string(),
            why: e.to_string(),
        };
        let mut file = std::fs::File::create(dest).map_err(werr)?;
        let fetched = self.stream(
            url,
            cap.min(size),
            Some(size),
            cancel,
            &mut |chunk| file.write_all(chunk),
            progress,
        )?;
        file.sync_all().map_err(werr)?;
        Ok(fetched)
    }

    fn stream(
        &self,
        url: &str,
        cap: u64,
        exact: Option<u64>,
        cancel: &AtomicBool,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Fetched, DownloadError> {
        let transport = |why: String| DownloadError::Transport {
            url: url.to_string(),
            why,
        };
        let started = Instant::now();
        let mut resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| transport(describe(&e)))?;
        let status = resp.status().as_u16();
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
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total: u64 = 0;
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(DownloadError::Canceled);
            }
            if started.elapsed() > self.total {
                return Err(transport(format!(
                    "took longer than {} s",
                    self.total.as_secs()
                )));
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
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
            total += n as u64;
            if total > cap {
                return Err(DownloadError::TooLarge {
                    url: url.into(),
                    cap,
                });
            }
            hasher.update(&buf[..n]);
            sink(&buf[..n]).map_err(|e| DownloadError::Write {
                path: url.into(),
                why: e.to_string(),
            })?;
            progress(total);
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
        Ok(Fetched {
            bytes: total,
            sha256: hasher.finalize().into(),
        })
    }
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
