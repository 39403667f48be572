//! A registry client for pulls, over the distribution spec's HTTP API: the manifest (an index
//! narrowed to linux/amd64), the configuration and the layer blobs, each verified by its
//! digest and bounded by its descriptor's size.
//!
//! Downloads go through [`banger_fetch::Fetcher`], with the limits of the root-owned
//! configuration (stall timeout, redirect hosts, the host's certificate authorities). A
//! registry on a loopback address is spoken to over plain HTTP, as container tools do; any
//! other over HTTPS. Registries that hand out anonymous pull tokens (`WWW-Authenticate:
//! Bearer …`) are followed; one that wants a user name and password is refused with a message
//! saying so: banger keeps no registry credentials.

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use banger_fetch::{DownloadError, Fetcher};
use sha2::{Digest, Sha256};

use crate::manifest::{self, Descriptor, Document, ImageConfig, Manifest, ManifestError};
use crate::reference::Reference;

/// Largest manifest or index read.
pub const MANIFEST_CAP: u64 = 4 << 20;
/// Largest image configuration read.
pub const CONFIG_CAP: u64 = 4 << 20;
/// Largest token answer read.
const TOKEN_CAP: u64 = 64 << 10;

/// Why talking to the registry failed. Messages name the reference or the blob.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An HTTP failure.
    #[error("{0}")]
    Download(#[from] DownloadError),
    /// A manifest, index or configuration was refused.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// Bytes that do not hash to their digest.
    #[error("{what} does not match its digest: expected {want}, got sha256:{got}")]
    Digest {
        /// Which document or blob.
        what: String,
        /// The digest it should have.
        want: String,
        /// The SHA-256 of what came.
        got: String,
    },
    /// The registry wants credentials, or its token service failed.
    #[error("{0}")]
    Auth(String),
}

/// What a reference resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The digest of the image manifest (for linux/amd64, when the reference named an index).
    pub digest: String,
    /// The manifest.
    pub manifest: Manifest,
    /// Its configuration.
    pub config: ImageConfig,
}

/// A client for one repository.
pub struct Registry<'a> {
    fetcher: &'a Fetcher,
    reference: &'a Reference,
    base: String,
    token: RefCell<Option<String>>,
}

/// `true` for `localhost`, `127.0.0.0/8` and `::1` (with or without a port).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The parameters of a `WWW-Authenticate: Bearer k="v",…` challenge, or why it cannot be
/// answered anonymously.
fn parse_challenge(challenge: &str) -> Result<Vec<(String, String)>, String> {
    let c = challenge.trim();
    let Some(params) = c
        .strip_prefix("Bearer ")
        .or_else(|| c.strip_prefix("bearer "))
    else {
        let scheme = c.split_whitespace().next().unwrap_or("none");
        return Err(format!(
            "the registry asks for {scheme} credentials; banger keeps no registry credentials and pulls only images that can be pulled anonymously"
        ));
    };
    let mut out = Vec::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("malformed challenge {challenge:?}"))?;
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| format!("malformed challenge {challenge:?}"))?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push((key.trim().to_ascii_lowercase(), value.to_string()));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

impl<'a> Registry<'a> {
    /// A client for `reference`'s repository.
    pub fn new(fetcher: &'a Fetcher, reference: &'a Reference) -> Self {
        let scheme = if is_loopback(&reference.registry) {
            "http"
        } else {
            "https"
        };
        Registry {
            fetcher,
            reference,
            base: format!(
                "{scheme}://{}/v2/{}",
                reference.registry, reference.repository
            ),
            token: RefCell::new(None),
        }
    }

    fn headers(&self, accept: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(a) = accept {
            h.push(("Accept", a.to_string()));
        }
        if let Some(t) = &*self.token.borrow() {
            h.push(("Authorization", format!("Bearer {t}")));
        }
        h
    }

    /// Runs `call`, and once more with a token when the registry answers 401 with a Bearer
    /// challenge.
    fn authorized<T>(
        &self,
        accept: Option<&str>,
        call: impl Fn(&[(&'static str, String)]) -> Result<T, DownloadError>,
    ) -> Result<T, RegistryError> {
        match call(&self.headers(accept)) {
            Err(DownloadError::Unauthorized { challenge, .. }) if self.token.borrow().is_none() => {
                self.login(&challenge)?;
                Ok(call(&self.headers(accept))?)
            }
            other => Ok(other?),
        }
    }

    /// Asks the challenge's token service for an anonymous pull token.
    fn login(&self, challenge: &str) -> Result<(), RegistryError> {
        let who = format!("the registry {}", self.reference.registry);
        let params =
            parse_challenge(challenge).map_err(|e| RegistryError::Auth(format!("{who}: {e}")))?;
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let realm = get("realm").ok_or_else(|| {
            RegistryError::Auth(format!("{who}: its challenge names no token realm"))
        })?;
        let insecure_ok = is_loopback(&self.reference.registry);
        if !(realm.starts_with("https://") || (insecure_ok && realm.starts_with("http://"))) {
            return Err(RegistryError::Auth(format!(
                "{who}: its token realm {realm:?} is not an https URL"
            )));
        }
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(service) = get("service") {
            url.push_str(&format!("{sep}service={}", query_escape(service)));
            sep = '&';
        }
        let scope = get("scope")
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
        url.push_str(&format!("{sep}scope={}", query_escape(&scope)));
        let doc = self.fetcher.fetch_document(&url, TOKEN_CAP, &[])?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&doc.bytes)
            .map_err(|e| RegistryError::Auth(format!("{who}: its token service answered {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                RegistryError::Auth(format!("{who}: its token service gave no usable token"))
            })?;
        *self.token.borrow_mut() = Some(token);
        Ok(())
    }

    /// GETs the manifest `r` (a tag or a digest), checking it against `r` when `r` is a digest.
    fn manifest(&self, r: &str, what: &str) -> Result<(String, Document), RegistryError> {
        let url = format!("{}/manifests/{r}", self.base);
        let doc = self.authorized(Some(manifest::ACCEPT), |h| {
            self.fetcher.fetch_document(&url, MANIFEST_CAP, h)
        })?;
        let got = sha256_hex(&doc.bytes);
        if let Some(want) = r.strip_prefix("sha256:")
            && want != got
        {
            return Err(RegistryError::Digest {
                what: what.into(),
                want: r.into(),
                got,
            });
        }
        let parsed = manifest::parse(&doc.bytes, doc.content_type.as_deref(), what)?;
        Ok((format!("sha256:{got}"), parsed))
    }

    /// Resolves the reference to a linux/amd64 image manifest and its configuration.
    pub fn resolve(&self) -> Result<Resolved, RegistryError> {
        let what = format!("the manifest of {}", self.reference);
        let (mut digest, mut doc) = self.manifest(self.reference.manifest_ref(), &what)?;
        if let Document::Index(list) = &doc {
            let d = manifest::pick_platform(list, &what)?.clone();
            let inner = format!(
                "the linux/amd64 manifest {} of {}",
                d.digest, self.reference
            );
            let (got, parsed) = self.manifest(&d.digest, &inner)?;
            if let Document::Index(_) = parsed {
                return Err(ManifestError {
                    what: inner,
                    why: "an index inside an index".into(),
                }
                .into());
            }
            (digest, doc) = (got, parsed);
        }
        let Document::Manifest(manifest) = doc else {
            unreachable!("indexes are resolved above")
        };
        let cwhat = format!(
            "the configuration {} of {}",
            manifest.config.digest, self.reference
        );
        if manifest.config.size > CONFIG_CAP {
            return Err(ManifestError {
                what: cwhat,
                why: format!(
                    "{} bytes, more than the {CONFIG_CAP}-byte limit",
                    manifest.config.size
                ),
            }
            .into());
        }
        let url = self.blob_url(&manifest.config);
        let doc = self.authorized(None, |h| {
            self.fetcher.fetch_document(&url, manifest.config.size, h)
        })?;
        self.check(&manifest.config, &doc.bytes, &cwhat)?;
        let config = manifest::parse_config(&doc.bytes, &manifest, &cwhat)?;
        Ok(Resolved {
            digest,
            manifest,
            config,
        })
    }

    fn check(&self, d: &Descriptor, bytes: &[u8], what: &str) -> Result<(), RegistryError> {
        let got = sha256_hex(bytes);
        if bytes.len() as u64 != d.size || Some(got.as_str()) != d.digest.strip_prefix("sha256:") {
            return Err(RegistryError::Digest {
                what: what.into(),
                want: d.digest.clone(),
                got,
            });
        }
        Ok(())
    }

    fn blob_url(&self, d: &Descriptor) -> String {
        format!("{}/blobs/{}", self.base, d.digest)
    }

    /// Streams blob `d` into `dest` through SHA-256: exactly `d.size` bytes (refused when over
    /// `cap`), and refused when it does not hash to `d.digest`.
    pub fn blob_to_file(
        &self,
        d: &Descriptor,
        what: &str,
        cap: u64,
        dest: &Path,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), RegistryError> {
        if d.size > cap {
            return Err(ManifestError {
                what: what.into(),
                why: format!("{} bytes, more than the {cap} allowed", d.size),
            }
            .into());
        }
        let url = self.blob_url(d);
        let progress = RefCell::new(progress);
        let fetched = self.authorized(None, |h| {
            let mut p = progress.borrow_mut();
            self.fetcher
                .fetch_to_file_with(&url, d.size, cap, dest, cancel, &mut **p, h)
        })?;
        let got: String = fetched.sha256.iter().map(|b| format!("{b:02x}")).collect();
        if Some(got.as_str()) != d.digest.strip_prefix("sha256:") {
            return Err(RegistryError::Digest {
                what: what.into(),
                want: d.digest.clone(),
                got,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use banger_fetch::FetchLimits;

    /// A registry on loopback that wants an anonymous bearer token: serves `docs` (path →
    /// (content type, body)) to requests carrying `Bearer T0K`, a 401 challenge to others, and
    /// the token at /token. Records every request line with its Authorization header. Serves
    /// at most `max` requests.
    fn registry(
        docs: HashMap<String, (String, Vec<u8>)>,
        max: usize,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen2, addr2) = (seen.clone(), addr.clone());
        std::thread::spawn(move || {
            for stream in l.incoming().take(max) {
                let mut stream = stream.unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization: ") {
                        auth = v.trim().to_string();
                    }
                }
                seen2.lock().unwrap().push(format!("{path} [{auth}]"));
                let (status, extra, ctype, body) = if path.starts_with("/token?") {
                    (
                        "200 OK",
                        String::new(),
                        "application/json".to_string(),
                        br#"{"token":"T0K"}"#.to_vec(),
                    )
                } else if auth != "bearer t0k" {
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"http://{addr2}/token\",service=\"svc\",scope=\"repository:smoke/x:pull\"\r\n"
                    );
                    (
                        "401 Unauthorized",
                        challenge,
                        "text/plain".into(),
                        b"no".to_vec(),
                    )
                } else if let Some((t, b)) = docs.get(&path) {
                    ("200 OK", String::new(), t.clone(), b.clone())
                } else {
                    (
                        "404 Not Found",
                        String::new(),
                        "text/plain".into(),
                        b"none".to_vec(),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        (addr, seen)
    }

    fn fetcher() -> Fetcher {
        Fetcher::new(&FetchLimits {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            redirect_hosts: vec![],
            redirect_setting: "[update] redirect_hosts",
        })
    }

    fn digest(b: &[u8]) -> String {
        format!("sha256:{}", sha256_hex(b))
    }

    /// An image (its manifest behind tag 1) whose layer the registry serves as `served`.
    fn image_docs(layer: &[u8], served: &[u8]) -> (HashMap<String, (String, Vec<u8>)>, String) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["x"]}}"#;
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            manifest::OCI_CONFIG,
            digest(config),
            config.len(),
            digest(layer),
            layer.len()
        );
        let mut docs = HashMap::new();
        docs.insert(
            "/v2/smoke/x/manifests/1".to_string(),
            (
                manifest::OCI_MANIFEST.to_string(),
                manifest.clone().into_bytes(),
            ),
        );
        docs.insert(
            format!("/v2/smoke/x/blobs/{}", digest(config)),
            ("application/octet-stream".into(), config.to_vec()),
        );
        docs.insert(
            format!("/v2/smoke/x/blobs/{}", digest(layer)),
            ("application/octet-stream".into(), served.to_vec()),
        );
        (docs, digest(manifest.as_bytes()))
    }

    #[test]
    fn a_pull_gets_an_anonymous_token_and_verifies_every_blob() {
        let layer = vec![7u8; 3000];
        let (docs, manifest_digest) = image_docs(&layer, &layer);
        let (addr, seen) = registry(docs, 8);
        let f = fetcher();
        let r = Reference::parse(&format!("oci://{addr}/smoke/x:1")).unwrap();
        let reg = Registry::new(&f, &r);
        let resolved = reg.resolve().unwrap();
        assert_eq!(resolved.digest, manifest_digest);
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("layer");
        let mut last = 0;
        reg.blob_to_file(
            &resolved.manifest.layers[0],
            "layer 1",
            1 << 20,
            &dest,
            &AtomicBool::new(false),
            &mut |n| last = n,
        )
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), layer);
        assert_eq!(last, 3000);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], "/v2/smoke/x/manifests/1 []", "{seen:?}");
        assert_eq!(
            seen[1], "/token?service=svc&scope=repository%3Asmoke%2Fx%3Apull []",
            "{seen:?}"
        );
        assert!(
            seen[2..].iter().all(|l| l.ends_with("[bearer t0k]")),
            "{seen:?}"
        );

        // A blob over the cap is refused before it is fetched.
        let e = reg
            .blob_to_file(
                &resolved.manifest.layers[0],
                "layer 1",
                100,
                &dest,
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("3000 bytes, more than the 100 allowed"),
            "{e}"
        );
    }

    #[test]
    fn a_blob_that_does_not_hash_to_its_digest_is_refused() {
        let layer = vec![7u8; 3000];
        let (mut docs, _) = image_docs(&layer, &[8u8; 3000]);
        // The manifest, served under a digest it does not have.
        let m = docs["/v2/smoke/x/manifests/1"].clone();
        docs.insert(
            format!("/v2/smoke/x/manifests/sha256:{}", "0".repeat(64)),
            m,
        );
        let (addr, _) = registry(docs, 8);
        let f = fetcher();
        let r = Reference::parse(&format!("oci://{addr}/smoke/x:1")).unwrap();
        let reg = Registry::new(&f, &r);
        let resolved = reg.resolve().unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = reg
            .blob_to_file(
                &resolved.manifest.layers[0],
                "layer 1 of x",
                1 << 20,
                &d.path().join("l"),
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("layer 1 of x does not match its digest: expected sha256:"),
            "{e}"
        );

        // A manifest pinned by a digest it does not have.
        let pinned =
            Reference::parse(&format!("oci://{addr}/smoke/x@sha256:{}", "0".repeat(64))).unwrap();
        let e = Registry::new(&f, &pinned)
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HTTP 404") || e.contains("does not match its digest"),
            "{e}"
        );
    }

    #[test]
    fn loopback_registries_are_spoken_to_over_http_only() {
        for r in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
            "127.9.9.9",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "registry.example.org",
            "192.0.2.1:5000",
            "[2001:db8::1]:443",
            "localhost.example.org",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn bearer_challenges_are_parsed_and_basic_ones_refused() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:library/debian:pull""#,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.example.org/token".into()),
                ("service".into(), "registry.example.org".into()),
                ("scope".into(), "repository:library/debian:pull".into()),
            ]
        );
        let e = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap_err();
        assert!(e.contains("asks for Basic credentials"), "{e}");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_err());
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
