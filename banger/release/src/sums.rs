//! `SHA256SUMS`: lines of `<64 hex>  <file name>` (the format `sha256sum` writes).

use super::ReleaseError;

/// A parsed `SHA256SUMS` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Sums {
    entries: Vec<(String, [u8; 32])>,
}

impl Sha256Sums {
    /// Parses the file, refusing anything that is not exactly the `sha256sum` format.
    pub fn parse(text: &[u8]) -> Result<Self, ReleaseError> {
        let bad = |why: String| ReleaseError::Malformed {
            what: "SHA256SUMS".into(),
            why,
        };
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (hex, name) = line
                .split_once("  ")
                .or_else(|| line.split_once(" *"))
                .ok_or_else(|| bad(format!("line {} is not '<sha256>  <file>'", n + 1)))?;
            let digest = parse_hex32(hex)
                .ok_or_else(|| bad(format!("line {} has a bad SHA-256 {hex:?}", n + 1)))?;
            if name.is_empty() || name.contains('/') || name.contains('\0') {
                return Err(bad(format!("line {} names a bad file {name:?}", n + 1)));
            }
            if entries.iter().any(|(e, _)| e == name) {
                return Err(bad(format!("{name} is listed twice")));
            }
            entries.push((name.to_string(), digest));
        }
        if entries.is_empty() {
            return Err(bad("it lists no file".into()));
        }
        Ok(Sha256Sums { entries })
    }

    /// The digest listed for `name`.
    pub fn digest_of(&self, name: &str) -> Result<[u8; 32], ReleaseError> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
            .ok_or_else(|| ReleaseError::NotInSums {
                name: name.to_string(),
            })
    }
}

/// Parses 64 lowercase or uppercase hex digits.
pub fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Lowercase hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn parses_sha256sum_output() {
        let s = Sha256Sums::parse(format!("{H}  banger-1.0.0-x.tar.gz\n{H} *other\n").as_bytes())
            .unwrap();
        assert_eq!(to_hex(&s.digest_of("banger-1.0.0-x.tar.gz").unwrap()), H);
        assert!(
            s.digest_of("missing")
                .unwrap_err()
                .to_string()
                .contains("does not list missing")
        );
    }

    #[test]
    fn refuses_malformed_lines() {
        for bad in [
            "".to_string(),
            format!("{H} one-space"),
            format!("{}  f", &H[..60]),
            format!("{H}  ../f"),
            format!("{H}  f\n{H}  f"),
            "zz  f".to_string(),
        ] {
            assert!(Sha256Sums::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
