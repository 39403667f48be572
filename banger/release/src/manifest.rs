//! The signed release manifest: which releases exist on a channel, where their files are, and
//! for how long this statement is valid.
//!
//! ```json
//! {
//!   "schema": 1, "product": "banger", "channel": "stable",
//!   "issued_at": "2026-11-22T00:00:00Z", "expires_at": "2026-12-22T00:00:00Z",
//!   "latest": "0.2.0",
//!   "releases": [{ "version": "0.2.0", "target": "x86_64-unknown-linux-gnu",
//!                  "tarball": "0.2.0/banger-0.2.0-x86_64-unknown-linux-gnu.tar.gz",
//!                  "sums": "0.2.0/SHA256SUMS", "sums_sig": "0.2.0/SHA256SUMS.sig",
//!                  "size": 12345678 }]
//! }
//! ```
//! URLs are relative to the manifest's own URL (or absolute). `manifest.json.sig` next to it
//! signs the exact bytes.

use serde::{Deserialize, Serialize};

use super::signature::{TrustedKeys, verify_signature};
use super::version::Version;
use super::{PRODUCT, ReleaseError, TARGET, tarball_name};
use banger_api::time::{parse_rfc3339, rfc3339};

/// The manifest schema this binary reads and writes.
pub const SCHEMA: u32 = 1;
/// How far in the future an issue time may be (clock skew).
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// The manifest as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version ([`SCHEMA`]).
    pub schema: u32,
    /// Always `banger`.
    pub product: String,
    /// Release channel, e.g. `stable`.
    pub channel: String,
    /// When it was signed (RFC 3339 UTC).
    pub issued_at: String,
    /// When it stops being valid (RFC 3339 UTC).
    pub expires_at: String,
    /// The latest stable version on this channel.
    pub latest: String,
    /// Every release offered.
    pub releases: Vec<ReleaseEntry>,
}

/// One release for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseEntry {
    /// Its version.
    pub version: String,
    /// Its target triple.
    pub target: String,
    /// URL of the tarball.
    pub tarball: String,
    /// URL of `SHA256SUMS`.
    pub sums: String,
    /// URL of `SHA256SUMS.sig`.
    pub sums_sig: String,
    /// Exact tarball size in bytes.
    pub size: u64,
}

/// A manifest whose signature, dates and contents have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    /// The contents.
    pub manifest: Manifest,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Latest stable version.
    pub latest: Version,
}

impl Manifest {
    /// Serializes the manifest as the bytes to sign.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Verifies `bytes` against `sig` and checks every rule: product, channel, schema, dates
    /// (against `now`), versions, and that each tarball is named for its own version and target.
    pub fn verify(
        bytes: &[u8],
        sig: &[u8],
        keys: &TrustedKeys,
        channel: &str,
        now: u64,
    ) -> Result<VerifiedManifest, ReleaseError> {
        verify_signature(keys, "the release manifest", bytes, sig)?;
        let bad = |why: String| ReleaseError::Malformed {
            what: "the release manifest".into(),
            why,
        };
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if m.schema != SCHEMA {
            return Err(bad(format!(
                "schema {} (this banger reads {SCHEMA})",
                m.schema
            )));
        }
        if m.product != PRODUCT {
            return Err(ReleaseError::WrongProduct { found: m.product });
        }
        if m.channel != channel {
            return Err(ReleaseError::WrongChannel {
                found: m.channel,
                follows: channel.to_string(),
            });
        }
        let issued = parse_rfc3339(&m.issued_at)
            .ok_or_else(|| bad(format!("issued_at {:?} is not RFC 3339 UTC", m.issued_at)))?;
        let expires = parse_rfc3339(&m.expires_at)
            .ok_or_else(|| bad(format!("expires_at {:?} is not RFC 3339 UTC", m.expires_at)))?;
        if expires <= issued {
            return Err(bad("it expires before it was issued".into()));
        }
        if now >= expires {
            return Err(ReleaseError::Expired {
                expires_at: m.expires_at,
                now: rfc3339(now),
            });
        }
        if issued > now + MAX_CLOCK_SKEW_SECS {
            return Err(ReleaseError::NotYetValid {
                issued_at: m.issued_at,
                now: rfc3339(now),
            });
        }
        let latest = Version::parse(&m.latest).map_err(bad)?;
        for r in &m.releases {
            let v = Version::parse(&r.version).map_err(bad)?;
            let file = r.tarball.rsplit('/').next().unwrap_or_default();
            let want = format!("{PRODUCT}-{v}-{}.tar.gz", r.target);
            if file != want {
                return Err(ReleaseError::WrongTarball {
                    version: v,
                    target: r.target.clone(),
                    file: file.to_string(),
                    want,
                });
            }
            if r.size == 0 {
                return Err(bad(format!("the entry for v{v} has size 0")));
            }
        }
        let verified = VerifiedManifest {
            manifest: m,
            issued_at: issued,
            latest,
        };
        verified.find(&verified.latest)?;
        Ok(verified)
    }
}

impl VerifiedManifest {
    /// The entry for `version` on this binary's target.
    pub fn find(&self, version: &Version) -> Result<&ReleaseEntry, ReleaseError> {
        self.manifest
            .releases
            .iter()
            .find(|r| r.target == TARGET && Version::parse(&r.version).as_ref() == Ok(version))
            .ok_or_else(|| {
                let offered = self.offered();
                if offered.is_empty() {
                    let mut targets: Vec<String> = self
                        .manifest
                        .releases
                        .iter()
                        .map(|r| r.target.clone())
                        .collect();
                    targets.sort_unstable();
                    targets.dedup();
                    ReleaseError::NoReleaseForTarget { targets }
                } else {
                    ReleaseError::NotOffered {
                        version: version.clone(),
                        offered,
                    }
                }
            })
    }

    /// Versions offered for this target, newest first.
    pub fn offered(&self) -> Vec<String> {
        let mut v: Vec<Version> = self
            .manifest
            .releases
            .iter()
            .filter(|r| r.target == TARGET)
            .filter_map(|r| Version::parse(&r.version).ok())
            .collect();
        v.sort();
        v.reverse();
        v.iter().map(|v| format!("v{v}")).collect()
    }
}

/// The expected tarball file name for `version` (for callers that build entries).
pub fn expected_tarball(version: &Version) -> String {
    tarball_name(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{DerSignature, SigningKey};

    fn sample(now: u64) -> Manifest {
        Manifest {
            schema: SCHEMA,
            product: PRODUCT.into(),
            channel: "stable".into(),
            issued_at: rfc3339(now - 60),
            expires_at: rfc3339(now + 86_400),
            latest: "0.2.0".into(),
            releases: vec![ReleaseEntry {
                version: "0.2.0".into(),
                target: TARGET.into(),
                tarball: format!("0.2.0/{}", tarball_name(&Version::parse("0.2.0").unwrap())),
                sums: "0.2.0/SHA256SUMS".into(),
                sums_sig: "0.2.0/SHA256SUMS.sig".into(),
                size: 100,
            }],
        }
    }

    fn signer() -> (SigningKey, TrustedKeys) {
        // A fixed test key: deterministic, and never a release key.
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
            sk.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .unwrap();
        let mut keys = TrustedKeys::default();
        keys.add_pem("test", &pem);
        (sk, keys)
    }

    fn sign(sk: &SigningKey, data: &[u8]) -> Vec<u8> {
        let sig: DerSignature = sk.sign(data);
        base64::engine::general_purpose::STANDARD
            .encode(sig.as_bytes())
            .into_bytes()
    }

    #[test]
    fn accepts_a_good_manifest() {
        let now = 1_795_313_683;
        let (sk, keys) = signer();
        let bytes = sample(now).to_json();
        let v = Manifest::verify(&bytes, &sign(&sk, &bytes), &keys, "stable", now).unwrap();
        assert_eq!(v.latest.to_string(), "0.2.0");
        assert_eq!(v.find(&v.latest).unwrap().size, 100);
        let e = v.find(&Version::parse("9.9.9").unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("offers no v9.9.9") && e.to_string().contains("v0.2.0"),
            "{e}"
        );
    }

    #[test]
    fn refuses_each_bad_manifest_naming_the_fault() {
        let now = 1_795_313_683;
        let (sk, keys) = signer();
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(move |m| m.expires_at = rfc3339(now - 1)),
                "expired",
            ),
            (
                Box::new(move |m| m.issued_at = rfc3339(now + 3600)),
                "in the future",
            ),
            (Box::new(|m| m.product = "other".into()), "product"),
            (Box::new(|m| m.channel = "beta".into()), "channel"),
            (Box::new(|m| m.schema = 2), "schema"),
            (Box::new(|m| m.latest = "x".into()), "not MAJOR.MINOR.PATCH"),
            (Box::new(|m| m.latest = "0.3.0".into()), "offers no v0.3.0"),
            (
                Box::new(|m| {
                    for r in &mut m.releases {
                        r.target = "aarch64-unknown-linux-gnu".into();
                        r.tarball =
                            format!("banger-{}-aarch64-unknown-linux-gnu.tar.gz", r.version);
                    }
                }),
                "offers no release at all for this host's target x86_64-unknown-linux-gnu \
                 (its releases are for: aarch64-unknown-linux-gnu)",
            ),
            (
                Box::new(|m| {
                    m.releases[0].tarball = "banger-0.1.0-x86_64-unknown-linux-gnu.tar.gz".into()
                }),
                "points at",
            ),
            (Box::new(|m| m.issued_at = "yesterday".into()), "RFC 3339"),
        ];
        for (mutate, want) in cases {
            let mut m = sample(now);
            mutate(&mut m);
            let bytes = m.to_json();
            let e = Manifest::verify(&bytes, &sign(&sk, &bytes), &keys, "stable", now).unwrap_err();
            assert!(e.to_string().contains(want), "want {want:?}: {e}");
        }
        // Signed, then changed: the signature no longer covers it.
        let bytes = sample(now).to_json();
        let sig = sign(&sk, &bytes);
        let mut changed = bytes.clone();
        let pos = changed.iter().position(|&b| b == b'2').unwrap();
        changed[pos] = b'9';
        let e = Manifest::verify(&changed, &sig, &keys, "stable", now).unwrap_err();
        assert!(matches!(e, ReleaseError::BadSignature { .. }), "{e}");
        // Unknown fields are refused: the signed data means exactly what this binary reads.
        let extra = String::from_utf8(bytes)
            .unwrap()
            .replacen('{', "{\"mirror\": \"x\",", 1);
        let e = Manifest::verify(
            extra.as_bytes(),
            &sign(&sk, extra.as_bytes()),
            &keys,
            "stable",
            now,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
