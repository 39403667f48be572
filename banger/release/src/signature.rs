//! Trusted release keys and cosign-compatible signature checks.
//!
//! A key is a P-256 public key in PEM (`BEGIN PUBLIC KEY`). The embedded key file may be a
//! placeholder (a build without a release key): then nothing verifies, and the error says what
//! the maintainer must do.

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};

use super::ReleaseError;

/// The release key embedded at build time (`banger/keys/release.pub.pem`).
pub const EMBEDDED_KEY: &str = include_str!("../../keys/release.pub.pem");

/// The keys a signature may verify against, each with where it came from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
    refused: Vec<String>,
}

impl TrustedKeys {
    /// Adds a PEM key from `origin` (a path or "embedded"). A placeholder or an unparsable key
    /// is remembered as refused, so the final error can say why nothing is trusted.
    pub fn add_pem(&mut self, origin: &str, pem: &str) {
        if !pem.contains("-----BEGIN PUBLIC KEY-----") {
            self.refused.push(format!(
                "{origin} is a placeholder, not a public key (maintainers: put the P-256 release \
                 public key in banger/keys/release.pub.pem before building; admins: list a key \
                 file in update.trusted_key_files in /etc/banger/config.toml)"
            ));
            return;
        }
        match pem.trim().parse::<VerifyingKey>() {
            Ok(k) => self.keys.push((origin.to_string(), k)),
            Err(_) => self
                .refused
                .push(format!("{origin} is not a P-256 public key in PEM form")),
        }
    }

    /// The embedded key plus nothing else.
    pub fn embedded() -> Self {
        let mut k = TrustedKeys::default();
        k.add_pem("the embedded release key", EMBEDDED_KEY);
        k
    }

    /// Whether any key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Refuses when no key is usable, saying why.
    pub fn require_some(&self) -> Result<(), ReleaseError> {
        if self.keys.is_empty() {
            return Err(ReleaseError::NoTrustedKey {
                why: if self.refused.is_empty() {
                    "none is configured".to_string()
                } else {
                    self.refused.join("; ")
                },
            });
        }
        Ok(())
    }
}

/// Verifies `sig_text` (base64 of a DER ECDSA-P256/SHA-256 signature, as `cosign sign-blob`
/// and `openssl dgst -sha256 -sign | base64` make it) over `data` with any trusted key.
pub fn verify_signature(
    keys: &TrustedKeys,
    what: &str,
    data: &[u8],
    sig_text: &[u8],
) -> Result<(), ReleaseError> {
    keys.require_some()?;
    let bad = |why: &str| ReleaseError::BadSignature {
        what: what.to_string(),
        why: why.to_string(),
    };
    let text: Vec<u8> = sig_text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return Err(bad("the signature file is empty"));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| bad("the signature is not base64"))?;
    let sig = DerSignature::try_from(der.as_slice())
        .map_err(|_| bad("the signature is not an ASN.1 DER ECDSA signature"))?;
    if keys.keys.iter().any(|(_, k)| k.verify(data, &sig).is_ok()) {
        Ok(())
    } else {
        Err(bad(&format!(
            "tried {}",
            keys.keys
                .iter()
                .map(|(o, _)| o.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Makes a key pair with openssl and signs `data` the way releases are signed.
    fn openssl_signed(dir: &std::path::Path, data: &[u8]) -> (String, Vec<u8>) {
        let key = dir.join("key.pem");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key.to_str().unwrap(),
        ]);
        let pubkey = run(&["ec", "-in", key.to_str().unwrap(), "-pubout"]);
        let file = dir.join("data");
        std::fs::write(&file, data).unwrap();
        let der = run(&[
            "dgst",
            "-sha256",
            "-sign",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        let sig = base64::engine::general_purpose::STANDARD.encode(der);
        (String::from_utf8(pubkey).unwrap(), sig.into_bytes())
    }

    #[test]
    fn openssl_signatures_verify_and_tampering_does_not() {
        let dir = tempfile::tempdir().unwrap();
        // ECDSA signatures are randomized: check several, so both low-S and high-S ones occur.
        for i in 0..8u8 {
            let data = format!("hello release {i}\n").into_bytes();
            let (pem, sig) = openssl_signed(dir.path(), &data);
            let mut keys = TrustedKeys::default();
            keys.add_pem("test key", &pem);
            verify_signature(&keys, "SHA256SUMS", &data, &sig).expect("openssl signature verifies");
            let mut tampered = data.clone();
            tampered[0] ^= 1;
            let e = verify_signature(&keys, "SHA256SUMS", &tampered, &sig).unwrap_err();
            assert!(e.to_string().contains("does not verify"), "{e}");
        }
    }

    #[test]
    fn wrong_key_malformed_and_placeholder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_pem, sig) = openssl_signed(dir.path(), b"x");
        let (other_pem, _) = openssl_signed(dir.path(), b"y");
        let mut keys = TrustedKeys::default();
        keys.add_pem("other key", &other_pem);
        let e = verify_signature(&keys, "manifest.json", b"x", &sig).unwrap_err();
        assert!(e.to_string().contains("manifest.json"), "{e}");
        assert!(
            verify_signature(&keys, "m", b"x", b"!!notbase64")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        assert!(
            verify_signature(&keys, "m", b"x", b"aGVsbG8=")
                .unwrap_err()
                .to_string()
                .contains("DER")
        );
        assert!(
            verify_signature(&keys, "m", b"x", b"")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );

        let placeholder = TrustedKeys::embedded();
        let e = verify_signature(&placeholder, "m", b"x", &sig).unwrap_err();
        assert!(matches!(e, ReleaseError::NoTrustedKey { .. }));
        assert!(e.to_string().contains("placeholder"), "{e}");
        assert!(e.to_string().contains("nothing was changed"), "{e}");
    }
}
