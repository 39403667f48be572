//! The release format (the signed manifest, `SHA256SUMS` and its signature), the signed image
//! catalog index, and the rules every piece must satisfy before banger trusts it.
//!
//! Signatures are cosign-compatible: base64 of an ASN.1 DER ECDSA-P256 signature over the
//! SHA-256 of the signed file (what `openssl dgst -sha256 -sign` and `cosign sign-blob` make).
//! This module parses and checks; it never fetches, writes or installs anything.

pub mod catalog;
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
    #[error("no trusted release key: {why}; nothing was changed")]
    NoTrustedKey {
        /// "none is configured", or why each configured key was refused.
        why: String,
    },
    /// A document is malformed.
    #[error("{what} is malformed: {why}")]
    Malformed {
        /// The document.
        what: String,
        /// Detail.
        why: String,
    },
    /// The manifest has expired.
    #[error(
        "the release manifest expired at {expires_at} (now {now}): the release server must \
         publish a freshly signed manifest"
    )]
    Expired {
        /// When it expired (RFC 3339).
        expires_at: String,
        /// This host's clock (RFC 3339).
        now: String,
    },
    /// The manifest claims to be issued in the future.
    #[error(
        "the release manifest claims to be issued at {issued_at}, in the future (now {now}): \
         check this host's clock"
    )]
    NotYetValid {
        /// When it claims to be issued (RFC 3339).
        issued_at: String,
        /// This host's clock (RFC 3339).
        now: String,
    },
    /// The manifest is for another product.
    #[error("the release manifest is for product {found:?}, not {PRODUCT}")]
    WrongProduct {
        /// The product it names.
        found: String,
    },
    /// The manifest is for another channel.
    #[error("the release manifest is for channel {found:?}, but this host follows {follows:?}")]
    WrongChannel {
        /// The channel it names.
        found: String,
        /// The channel this host follows.
        follows: String,
    },
    /// An entry's tarball is not the file its version and target name.
    #[error("the manifest entry for v{version} ({target}) points at {file:?}, not {want:?}")]
    WrongTarball {
        /// The entry's version.
        version: Version,
        /// The entry's target.
        target: String,
        /// The file it points at.
        file: String,
        /// The file it must point at.
        want: String,
    },
    /// `SHA256SUMS` has no line for an artefact.
    #[error("SHA256SUMS does not list {name}")]
    NotInSums {
        /// The artefact.
        name: String,
    },
    /// The manifest offers nothing for this host's target.
    #[error(
        "the release manifest offers no release at all for this host's target {TARGET} (its \
         releases are for: {}); this host cannot be updated from it",
        if targets.is_empty() { "no target".to_string() } else { targets.join(", ") }
    )]
    NoReleaseForTarget {
        /// The targets it offers releases for, sorted.
        targets: Vec<String>,
    },
    /// The manifest does not offer the version asked for on this target.
    #[error("the release manifest offers no v{version} for {TARGET} (it offers: {})", offered.join(", "))]
    NotOffered {
        /// The version asked for.
        version: Version,
        /// What it offers for this target, newest first (`v1.2.3`).
        offered: Vec<String>,
    },
}
