//! The release format: the signed manifest, `SHA256SUMS` and its signature, and the rules every
//! piece must satisfy before the update engine trusts it.
//!
//! Signatures are cosign-compatible: base64 of an ASN.1 DER ECDSA-P256 signature over the
//! SHA-256 of the signed file (what `openssl dgst -sha256 -sign` and `cosign sign-blob` make).
//! This module parses and checks; it never fetches, writes or installs anything.

pub mod manifest;
pub mod signature;
pub mod sums;
pub mod version;

pub use manifest::{Manifest, ReleaseEntry};
pub use signature::{TrustedKeys, verify_signature};
pub use sums::Sha256Sums;
pub use version::Version;

/// The product name every signed document must carry.
pub const PRODUCT: &str = "banger";

/// The target this binary was built for, as release artefacts name it.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// File name of the release tarball for `version` on [`TARGET`].
pub fn tarball_name(version: &Version) -> String {
    format!("{PRODUCT}-{version}-{TARGET}.tar.gz")
}

/// Why a release was refused. Each message names the document and the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// A signature did not verify against any trusted key.
    #[error("{what}: signature does not verify with any trusted key ({why})")]
    BadSignature {
        /// The signed document.
        what: String,
        /// Detail.
        why: String,
    },
    /// No usable trusted key.
    #[error("{0}")]
    NoTrustedKey(String),
    /// A document is malformed.
    #[error("{what} is malformed: {why}")]
    Malformed {
        /// The document.
        what: String,
        /// Detail.
        why: String,
    },
    /// The manifest has expired or is not yet valid.
    #[error("{0}")]
    Expired(String),
    /// The signed data names another product, version or target.
    #[error("{0}")]
    Mismatch(String),
}
