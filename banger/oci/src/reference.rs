//! Image references: `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]` (`docker://` is the same,
//! as skopeo spells it).
//!
//! The registry is always named: banger never picks one for the user, so a short name like
//! `debian:12` cannot silently mean some public registry. Every part is checked against the
//! distribution spec's grammar before anything is fetched, and the error names the part.

use std::fmt;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host`, `host:port` or `[v6]:port`.
    pub registry: String,
    /// `library/debian`: lowercase components separated by `/`.
    pub repository: String,
    /// The tag (`latest` when neither a tag nor a digest is given).
    pub tag: Option<String>,
    /// `sha256:` and 64 lowercase hex digits, when pinned.
    pub digest: Option<String>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reference:?} is not an image reference: {why} (expected oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. oci://127.0.0.1:5000/debian:12)"
)]
pub struct ReferenceError {
    /// What was given.
    pub reference: String,
    /// What is wrong with it.
    pub why: String,
}

/// The schemes a reference may start with.
pub const SCHEMES: [&str; 2] = ["oci://", "docker://"];

/// Whether `s` names an OCI image (by its scheme), as opposed to a catalog entry.
pub fn is_oci(s: &str) -> bool {
    SCHEMES.iter().any(|p| s.starts_with(p))
}

fn alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// One repository component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0] as char) || !alnum(b[b.len() - 1] as char) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i] as char;
        if alnum(ch) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i] as char) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|x| x == '-')) {
            return false;
        }
    }
    true
}

fn host_ok(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn registry_ok(r: &str) -> bool {
    let (host, port) = match r.rfind(':') {
        Some(i) if !r[i..].contains(']') => (&r[..i], Some(&r[i + 1..])),
        _ => (r, None),
    };
    host_ok(host)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0))
}

fn tag_ok(t: &str) -> bool {
    let mut cs = t.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn digest_ok(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

impl Reference {
    /// Parses `oci://…` or `docker://…`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let bad = |why: &str| ReferenceError {
            reference: s.to_string(),
            why: why.to_string(),
        };
        let rest = SCHEMES
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .ok_or_else(|| bad("it does not start with oci:// or docker://"))?;
        let (rest, digest) = match rest.split_once('@') {
            Some((r, d)) => {
                if !digest_ok(d) {
                    return Err(bad(&format!(
                        "digest {d:?} is not sha256: and 64 lowercase hex digits"
                    )));
                }
                (r, Some(d.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| {
            bad("it names no repository after the registry (banger never picks a registry for you)")
        })?;
        if !registry_ok(registry) {
            return Err(bad(&format!(
                "registry {registry:?} is not a host name or IP address with an optional port"
            )));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t)),
            _ => (path, None),
        };
        if repository.len() > 255 || !repository.split('/').all(component_ok) {
            return Err(bad(&format!(
                "repository {repository:?} must be lowercase letters, digits and separators (. _ __ -) in components joined by /"
            )));
        }
        if let Some(t) = tag
            && !tag_ok(t)
        {
            return Err(bad(&format!(
                "tag {t:?} must be up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What the manifest is asked for by: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("a reference has a tag or a digest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_references_parse() {
        let r = Reference::parse("oci://127.0.0.1:5000/debian:12").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "debian");
        assert_eq!(r.tag.as_deref(), Some("12"));
        assert_eq!(r.manifest_ref(), "12");
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/debian:12");
        let r = Reference::parse("docker://registry.example/library/my-app_x").unwrap();
        assert_eq!(r.repository, "library/my-app_x");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("oci://[::1]:5000/a/b@{d}")).unwrap();
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        let r = Reference::parse(&format!("oci://localhost/a:v1.2@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.manifest_ref(), d, "a digest pins even with a tag");
    }

    #[test]
    fn malformed_references_name_what_is_wrong() {
        for (s, want) in [
            ("debian:12", "does not start with oci://"),
            ("oci://debian", "names no repository"),
            ("oci://-bad-/x", "registry \"-bad-\""),
            ("oci://host:0/x", "registry \"host:0\""),
            ("oci://host:99999/x", "registry \"host:99999\""),
            ("oci://host/Debian", "repository \"Debian\""),
            ("oci://host/a//b", "repository \"a//b\""),
            ("oci://host/../etc", "repository \"../etc\""),
            ("oci://host/a:-x", "tag \"-x\""),
            ("oci://host/a:", "tag \"\""),
            ("oci://host/a@sha256:abc", "digest \"sha256:abc\""),
            ("oci://host/a@md5:00", "digest \"md5:00\""),
            ("oci://host/a b", "repository \"a b\""),
        ] {
            let e = Reference::parse(s).unwrap_err();
            assert!(e.to_string().contains(want), "{s}: {e}");
            assert!(e.to_string().contains("expected oci://REGISTRY"), "{e}");
        }
        assert!(is_oci("docker://x/y") && !is_oci("mini:12"));
    }
}
