//! The signed image catalog index (docs/images.md): which kernels and root filesystems a
//! catalog offers, where their artefacts are, their exact sizes and digests, and for how long
//! this statement is valid. Signed like a release manifest ([`verify_signature`]): the same key
//! format, expiry, clock-skew rule and replay refusal. This module parses and checks; it never
//! fetches or writes anything.

use std::cmp::Ordering;

use banger_api::ids::ImageName;
use banger_api::time::{parse_rfc3339, rfc3339};
use serde::{Deserialize, Serialize};

use super::manifest::MAX_CLOCK_SKEW_SECS;
use super::signature::{TrustedKeys, verify_signature};
use super::{PRODUCT, ReleaseError};

/// The index schema this binary reads and writes.
pub const CATALOG_SCHEMA: u32 = 1;
/// The `kind` every catalog index carries (a release manifest has no such field, so neither
/// document passes for the other).
pub const CATALOG_KIND: &str = "catalog";
/// The longest version string.
pub const MAX_VERSION_LEN: usize = 32;

/// What an entry provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A kernel, and optionally an initrd.
    Kernel,
    /// A root filesystem image, booted with the kernel entry it names.
    Rootfs,
}

impl EntryKind {
    /// The word in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Kernel => "kernel",
            EntryKind::Rootfs => "rootfs",
        }
    }

    /// The bundle members an entry of this kind may hold, and whether each is required.
    pub fn members(self) -> &'static [(&'static str, bool)] {
        match self {
            EntryKind::Kernel => &[("kernel", true), ("initrd", false)],
            EntryKind::Rootfs => &[("rootfs", true)],
        }
    }
}

/// How an artefact is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtefactFormat {
    /// The artefact is the one file (the kernel, or the root filesystem image).
    #[serde(rename = "raw")]
    Raw,
    /// A tar bundle of role-named files.
    #[serde(rename = "tar")]
    Tar,
    /// A gzip-compressed tar bundle.
    #[serde(rename = "tar.gz")]
    TarGz,
}

/// The index as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogIndex {
    /// Format version ([`CATALOG_SCHEMA`]).
    pub schema: u32,
    /// Always `banger`.
    pub product: String,
    /// Always [`CATALOG_KIND`].
    pub kind: String,
    /// When it was signed (RFC 3339 UTC).
    pub issued_at: String,
    /// When it stops being valid (RFC 3339 UTC).
    pub expires_at: String,
    /// Everything offered.
    pub entries: Vec<CatalogEntry>,
}

/// One kernel or root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Its name: an image name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Kernel or root filesystem.
    pub kind: EntryKind,
    /// For a root filesystem: the kernel entry it boots with, `NAME:VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// URL of the artefact, relative to the index or absolute.
    pub url: String,
    /// How it is packed.
    pub format: ArtefactFormat,
    /// Its exact size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// The most bytes its files may take once unpacked.
    pub unpacked_size: u64,
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
}

impl CatalogEntry {
    /// `name:version`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
}

/// Why a catalog index, or a request against it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The signature does not verify, or no key is usable.
    #[error("{0}")]
    Signature(ReleaseError),
    /// Not a well-formed index.
    #[error("the catalog index is malformed: {0}")]
    Malformed(String),
    /// It has expired.
    #[error(
        "the catalog index expired at {expires_at} (now {now}): the catalog server must publish \
         a freshly signed index"
    )]
    Expired {
        /// When it expired (RFC 3339).
        expires_at: String,
        /// This host's clock (RFC 3339).
        now: String,
    },
    /// It claims to be issued in the future.
    #[error(
        "the catalog index claims to be issued at {issued_at}, in the future (now {now}): check \
         this host's clock"
    )]
    NotYetValid {
        /// When it claims to be issued (RFC 3339).
        issued_at: String,
        /// This host's clock (RFC 3339).
        now: String,
    },
    /// Older than one already verified from the same catalog.
    #[error(
        "the catalog index was issued at {issued_at}, before one this host already verified \
         ({newest}): refusing a replayed older index"
    )]
    Replayed {
        /// When this one was issued (RFC 3339).
        issued_at: String,
        /// The newest one seen (RFC 3339).
        newest: String,
    },
    /// A reference that is not `NAME[:VERSION]`.
    #[error("{reference:?} is not a catalog reference NAME[:VERSION]: {why}")]
    BadReference {
        /// As given.
        reference: String,
        /// What is wrong.
        why: String,
    },
    /// Nothing by that name (and version).
    #[error("the catalog has no entry {reference} ({})", if offered.is_empty() { "it offers nothing".to_string() } else { format!("it offers: {}", offered.join(", ")) })]
    NoEntry {
        /// What was asked for.
        reference: String,
        /// What it offers under that name, or everything when nothing has that name.
        offered: Vec<String>,
    },
}

/// A request for a catalog entry: `NAME` or `NAME:VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    /// The entry's name.
    pub name: String,
    /// The version asked for, or the highest.
    pub version: Option<String>,
}

fn version_error(v: &str) -> Option<String> {
    if v.is_empty() || v.len() > MAX_VERSION_LEN {
        return Some(format!("a version has 1 to {MAX_VERSION_LEN} characters"));
    }
    v.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+')))
        .map(|c| format!("{c:?} is not allowed in a version (a-z, A-Z, 0-9, ., -, _ and +)"))
}

impl EntryRef {
    /// Parses `NAME[:VERSION]`.
    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        let bad = |why: String| CatalogError::BadReference {
            reference: s.to_string(),
            why,
        };
        let (name, version) = match s.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        ImageName::parse(name).map_err(|e| bad(e.to_string()))?;
        if let Some(v) = version
            && let Some(why) = version_error(v)
        {
            return Err(bad(why));
        }
        Ok(EntryRef {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }
}

impl std::fmt::Display for EntryRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Orders versions: dot-separated parts compared one by one, numerically where both are
/// numbers, as text otherwise; a version that is a prefix of another is the lower.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// An index whose signature, dates and entries have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    /// The contents.
    pub index: CatalogIndex,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
}

impl CatalogIndex {
    /// Serializes the index as the bytes to sign.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("the index serializes");
        v.push(b'\n');
        v
    }

    /// Checks `bytes` against the signature `sig` (base64 DER) with `keys`, then its schema,
    /// product, kind, dates (at `now`, Unix seconds) and every entry.
    pub fn verify(
        bytes: &[u8],
        sig: &[u8],
        keys: &TrustedKeys,
        now: u64,
    ) -> Result<VerifiedIndex, CatalogError> {
        verify_signature(keys, "the catalog index", bytes, sig).map_err(CatalogError::Signature)?;
        let bad = CatalogError::Malformed;
        let ix: CatalogIndex = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if ix.schema != CATALOG_SCHEMA {
            return Err(bad(format!(
                "schema {} (this banger reads {CATALOG_SCHEMA})",
                ix.schema
            )));
        }
        if ix.product != PRODUCT {
            return Err(bad(format!(
                "it is for product {:?}, not {PRODUCT}",
                ix.product
            )));
        }
        if ix.kind != CATALOG_KIND {
            return Err(bad(format!(
                "its kind is {:?}, not {CATALOG_KIND:?}",
                ix.kind
            )));
        }
        let issued = parse_rfc3339(&ix.issued_at)
            .ok_or_else(|| bad(format!("issued_at {:?} is not RFC 3339 UTC", ix.issued_at)))?;
        let expires = parse_rfc3339(&ix.expires_at).ok_or_else(|| {
            bad(format!(
                "expires_at {:?} is not RFC 3339 UTC",
                ix.expires_at
            ))
        })?;
        if expires <= issued {
            return Err(bad("it expires before it was issued".into()));
        }
        if now >= expires {
            return Err(CatalogError::Expired {
                expires_at: ix.expires_at,
                now: rfc3339(now),
            });
        }
        if issued > now + MAX_CLOCK_SKEW_SECS {
            return Err(CatalogError::NotYetValid {
                issued_at: ix.issued_at,
                now: rfc3339(now),
            });
        }
        ix.check_entries().map_err(bad)?;
        Ok(VerifiedIndex {
            index: ix,
            issued_at: issued,
        })
    }

    fn check_entries(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for e in &self.entries {
            let r = e.reference();
            ImageName::parse(&e.name).map_err(|x| format!("entry {r}: {x}"))?;
            if let Some(why) = version_error(&e.version) {
                return Err(format!("entry {r}: {why}"));
            }
            if !seen.insert((e.name.as_str(), e.version.as_str())) {
                return Err(format!("entry {r} is listed twice"));
            }
            if e.size == 0 || e.unpacked_size == 0 {
                return Err(format!("entry {r} has a size of 0"));
            }
            if e.format == ArtefactFormat::Raw && e.unpacked_size != e.size {
                return Err(format!(
                    "entry {r} is raw, so its unpacked_size must equal its size"
                ));
            }
            if e.sha256.len() != 64
                || !e
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!(
                    "entry {r}: sha256 {:?} is not 64 lowercase hex digits",
                    e.sha256
                ));
            }
            match (e.kind, &e.kernel) {
                (EntryKind::Kernel, Some(_)) => {
                    return Err(format!("entry {r} is a kernel and names a kernel"));
                }
                (EntryKind::Rootfs, None) => {
                    return Err(format!("entry {r} is a rootfs and names no kernel"));
                }
                (EntryKind::Rootfs, Some(k)) => {
                    let found = self.entries.iter().find(|x| x.reference() == *k);
                    match found {
                        Some(x) if x.kind == EntryKind::Kernel => {}
                        Some(_) => return Err(format!("entry {r} names {k}, which is no kernel")),
                        None => {
                            return Err(format!("entry {r} names kernel {k}, not in the index"));
                        }
                    }
                }
                (EntryKind::Kernel, None) => {}
            }
        }
        Ok(())
    }
}

impl VerifiedIndex {
    /// Refuses this index when it was issued before `newest_seen` (Unix seconds), the newest
    /// issue time this host has verified from the same catalog URL.
    pub fn check_not_replayed(&self, newest_seen: u64) -> Result<(), CatalogError> {
        if self.issued_at < newest_seen {
            return Err(CatalogError::Replayed {
                issued_at: self.index.issued_at.clone(),
                newest: rfc3339(newest_seen),
            });
        }
        Ok(())
    }

    /// The entry `r` asks for: the exact version, or the highest of that name.
    pub fn find(&self, r: &EntryRef) -> Result<&CatalogEntry, CatalogError> {
        let named: Vec<&CatalogEntry> = self
            .index
            .entries
            .iter()
            .filter(|e| e.name == r.name)
            .collect();
        let found = match &r.version {
            Some(v) => named.iter().copied().find(|e| e.version == *v),
            None => named
                .iter()
                .copied()
                .max_by(|a, b| compare_versions(&a.version, &b.version)),
        };
        found.ok_or_else(|| CatalogError::NoEntry {
            reference: r.to_string(),
            offered: if named.is_empty() {
                self.index
                    .entries
                    .iter()
                    .map(CatalogEntry::reference)
                    .collect()
            } else {
                named.iter().map(|e| e.reference()).collect()
            },
        })
    }

    /// The kernel entry a root filesystem entry boots with (checked to exist at verification).
    pub fn kernel_of(&self, e: &CatalogEntry) -> Option<&CatalogEntry> {
        let k = e.kernel.as_deref()?;
        self.index.entries.iter().find(|x| x.reference() == k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{DerSignature, SigningKey};

    const NOW: u64 = 1_800_000_000;

    fn entry(name: &str, version: &str, kind: EntryKind, kernel: Option<&str>) -> CatalogEntry {
        CatalogEntry {
            name: name.into(),
            version: version.into(),
            kind,
            kernel: kernel.map(str::to_string),
            url: format!("{name}-{version}.tar.gz"),
            format: ArtefactFormat::TarGz,
            size: 10,
            sha256: "a".repeat(64),
            unpacked_size: 20,
            description: String::new(),
        }
    }

    fn sample() -> CatalogIndex {
        CatalogIndex {
            schema: CATALOG_SCHEMA,
            product: PRODUCT.into(),
            kind: CATALOG_KIND.into(),
            issued_at: rfc3339(NOW - 60),
            expires_at: rfc3339(NOW + 86_400),
            entries: vec![
                entry("linux", "6.1.9", EntryKind::Kernel, None),
                entry("linux", "6.1.10", EntryKind::Kernel, None),
                entry("debian", "12", EntryKind::Rootfs, Some("linux:6.1.9")),
            ],
        }
    }

    fn keypair() -> (SigningKey, TrustedKeys) {
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
            sk.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .unwrap();
        let mut keys = TrustedKeys::default();
        keys.add_pem("test key", &pem);
        (sk, keys)
    }

    fn signed(sk: &SigningKey, bytes: &[u8]) -> Vec<u8> {
        let sig: DerSignature = sk.sign(bytes);
        base64::engine::general_purpose::STANDARD
            .encode(sig.as_bytes())
            .into_bytes()
    }

    fn verify(ix: &CatalogIndex) -> Result<VerifiedIndex, CatalogError> {
        let (sk, keys) = keypair();
        let bytes = ix.to_json();
        CatalogIndex::verify(&bytes, &signed(&sk, &bytes), &keys, NOW)
    }

    #[test]
    fn a_signed_index_verifies_and_finds_entries() {
        let v = verify(&sample()).unwrap();
        let highest = v.find(&EntryRef::parse("linux").unwrap()).unwrap();
        assert_eq!(highest.version, "6.1.10", "numeric, not textual order");
        let exact = v.find(&EntryRef::parse("linux:6.1.9").unwrap()).unwrap();
        assert_eq!(exact.version, "6.1.9");
        let deb = v.find(&EntryRef::parse("debian").unwrap()).unwrap();
        assert_eq!(v.kernel_of(deb).unwrap().reference(), "linux:6.1.9");
        let e = v.find(&EntryRef::parse("linux:5").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the catalog has no entry linux:5 (it offers: linux:6.1.9, linux:6.1.10)"
        );
        let e = v.find(&EntryRef::parse("arch").unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .contains("has no entry arch (it offers: linux:6.1.9"),
            "{e}"
        );
    }

    #[test]
    fn a_tampered_or_foreign_signature_is_refused() {
        let (sk, keys) = keypair();
        let bytes = sample().to_json();
        let sig = signed(&sk, &bytes);
        let mut tampered = bytes.clone();
        tampered[10] ^= 1;
        let e = CatalogIndex::verify(&tampered, &sig, &keys, NOW).unwrap_err();
        assert!(
            e.to_string()
                .contains("the catalog index: signature does not verify"),
            "{e}"
        );
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let e = CatalogIndex::verify(&bytes, &signed(&other, &bytes), &keys, NOW).unwrap_err();
        assert!(matches!(e, CatalogError::Signature(_)), "{e}");
    }

    #[test]
    fn dates_are_enforced_and_replays_refused() {
        let mut ix = sample();
        ix.expires_at = rfc3339(NOW - 1);
        ix.issued_at = rfc3339(NOW - 100);
        assert!(matches!(verify(&ix), Err(CatalogError::Expired { .. })));
        let mut ix = sample();
        ix.issued_at = rfc3339(NOW + MAX_CLOCK_SKEW_SECS + 10);
        let e = verify(&ix).unwrap_err();
        assert!(e.to_string().contains("in the future"), "{e}");
        let v = verify(&sample()).unwrap();
        v.check_not_replayed(NOW - 60).unwrap();
        let e = v.check_not_replayed(NOW).unwrap_err();
        assert!(
            e.to_string()
                .contains("before one this host already verified"),
            "{e}"
        );
    }

    #[test]
    fn malformed_entries_are_refused_with_what_is_wrong() {
        type Spoil = Box<dyn Fn(&mut CatalogIndex)>;
        let cases: Vec<(Spoil, &str)> = vec![
            (
                Box::new(|ix| ix.entries[0].sha256 = "A".repeat(64)),
                "lowercase hex",
            ),
            (Box::new(|ix| ix.entries[0].size = 0), "size of 0"),
            (
                Box::new(|ix| ix.entries[0].name = "Bad".into()),
                "entry Bad:6.1.9",
            ),
            (
                Box::new(|ix| ix.entries[0].version = "1/2".into()),
                "not allowed in a version",
            ),
            (
                Box::new(|ix| ix.entries[1].version = "6.1.9".into()),
                "listed twice",
            ),
            (
                Box::new(|ix| ix.entries[2].kernel = None),
                "names no kernel",
            ),
            (
                Box::new(|ix| ix.entries[2].kernel = Some("linux:9".into())),
                "not in the index",
            ),
            (
                Box::new(|ix| ix.entries[0].kernel = Some("linux:6.1.10".into())),
                "is a kernel and names",
            ),
            (
                Box::new(|ix| ix.entries[2].kernel = Some("debian:12".into())),
                "which is no kernel",
            ),
            (
                Box::new(|ix| ix.entries[0].format = ArtefactFormat::Raw),
                "unpacked_size must equal",
            ),
            (Box::new(|ix| ix.kind = "manifest".into()), "its kind is"),
            (Box::new(|ix| ix.schema = 2), "schema 2"),
        ];
        for (change, want) in cases {
            let mut ix = sample();
            change(&mut ix);
            let e = verify(&ix).unwrap_err();
            assert!(e.to_string().contains(want), "want {want:?}: {e}");
        }
    }

    #[test]
    fn unknown_fields_and_release_manifests_do_not_pass() {
        let (sk, keys) = keypair();
        let text = String::from_utf8(sample().to_json()).unwrap();
        let extra = text.replacen("\"schema\"", "\"mirror\": \"x\",\n  \"schema\"", 1);
        let e = CatalogIndex::verify(extra.as_bytes(), &signed(&sk, extra.as_bytes()), &keys, NOW)
            .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let manifest = br#"{"schema":1,"product":"banger","channel":"stable","issued_at":"2026-01-01T00:00:00Z","expires_at":"2030-01-01T00:00:00Z","latest":"0.1.0","releases":[]}"#;
        let e = CatalogIndex::verify(manifest, &signed(&sk, manifest), &keys, NOW).unwrap_err();
        assert!(matches!(e, CatalogError::Malformed(_)), "{e}");
    }

    #[test]
    fn references_and_versions() {
        assert_eq!(
            EntryRef::parse("debian:12").unwrap(),
            EntryRef {
                name: "debian".into(),
                version: Some("12".into())
            }
        );
        for bad in ["", "Debian", "debian:", "debian:1 2", ":12", "a:b:c"] {
            let e = EntryRef::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("is not a catalog reference"),
                "{bad}: {e}"
            );
        }
        assert_eq!(compare_versions("6.1.10", "6.1.9"), Ordering::Greater);
        assert_eq!(compare_versions("12", "12.1"), Ordering::Less);
        assert_eq!(compare_versions("1.0-rc1", "1.0-rc2"), Ordering::Less);
        assert_eq!(compare_versions("2", "2"), Ordering::Equal);
    }
}
