//! The identity stamped into this binary at build time (see `build.rs`).

use std::fmt;

/// Release version without a leading `v`, e.g. `0.1.0`.
pub const VERSION: &str = env!("BANGER_BUILD_VERSION");
/// Source commit the binary was built from (short hash), or `unknown`.
pub const COMMIT: &str = env!("BANGER_BUILD_COMMIT");
/// Build time, RFC 3339 UTC.
pub const BUILT_AT: &str = env!("BANGER_BUILD_BUILT_AT");

/// A build identity: the one compiled in, or one parsed from another binary's `--version`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildIdentity {
    /// Release version without a leading `v`.
    pub version: String,
    /// Source commit.
    pub commit: String,
    /// Build time, RFC 3339 UTC.
    pub built_at: String,
}

impl BuildIdentity {
    /// The identity of the running binary.
    pub fn current() -> Self {
        BuildIdentity {
            version: VERSION.into(),
            commit: COMMIT.into(),
            built_at: BUILT_AT.into(),
        }
    }

    /// The one-line form printed by `--version`: `PROGRAM vX.Y.Z (commit C, built T)`.
    pub fn version_line(&self, program: &str) -> String {
        format!(
            "{program} v{} (commit {}, built {})",
            self.version, self.commit, self.built_at
        )
    }

    /// Parses the one-line `--version` form for `program`, naming what did not match.
    pub fn parse_version_line(program: &str, line: &str) -> Result<Self, String> {
        let line = line.trim();
        let rest = line
            .strip_prefix(program)
            .and_then(|r| r.strip_prefix(" v"))
            .ok_or_else(|| format!("expected '{program} vX.Y.Z (…)', got {line:?}"))?;
        let (version, rest) = rest
            .split_once(" (commit ")
            .ok_or_else(|| format!("no '(commit …' in {line:?}"))?;
        let (commit, rest) = rest
            .split_once(", built ")
            .ok_or_else(|| format!("no ', built …' in {line:?}"))?;
        let built_at = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("no closing ')' in {line:?}"))?;
        if [version, commit, built_at]
            .iter()
            .any(|v| v.is_empty() || v.contains(char::is_whitespace))
        {
            return Err(format!("empty or spaced field in {line:?}"));
        }
        Ok(BuildIdentity {
            version: version.into(),
            commit: commit.into(),
            built_at: built_at.into(),
        })
    }
}

impl fmt::Display for BuildIdentity {
    /// The three-line form printed by `banger version`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "version: {}", self.version)?;
        writeln!(f, "commit: {}", self.commit)?;
        write!(f, "built_at: {}", self.built_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line_round_trips() {
        let id = BuildIdentity::current();
        let line = id.version_line("bangerd");
        assert!(line.starts_with("bangerd v"));
        assert_eq!(BuildIdentity::parse_version_line("bangerd", &line), Ok(id));
    }

    #[test]
    fn version_line_of_another_program_is_refused() {
        let line = BuildIdentity::current().version_line("bangerd");
        let err = BuildIdentity::parse_version_line("bangerd-root", &line).unwrap_err();
        assert!(err.contains("bangerd-root"), "{err}");
    }

    #[test]
    fn malformed_version_lines_name_the_fault() {
        for (line, want) in [
            ("banger v1.0.0", "commit"),
            ("banger v1.0.0 (commit abc, built now", "closing"),
            ("banger v1.0.0 (commit , built now)", "empty"),
            ("banger 1.0.0 (commit a, built b)", "expected"),
        ] {
            let err = BuildIdentity::parse_version_line("banger", line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn three_line_form() {
        let id = BuildIdentity {
            version: "1.2.3".into(),
            commit: "abc".into(),
            built_at: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(
            id.to_string(),
            "version: 1.2.3\ncommit: abc\nbuilt_at: 2026-01-01T00:00:00Z"
        );
    }
}
