//! Output for people, shared by `banger vm` and `banger image`: tables, sizes, times, digests.

/// The version of the JSON shapes of `version`, `doctor`, `system status` and `daemon status
/// --json` (their `format_version`): a field may be added without changing it; a field's
/// meaning never changes without a new version.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// One MiB in bytes.
pub const MIB: u64 = 1 << 20;

/// Renders rows under a header as columns separated by two spaces; the last column is not
/// padded.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Unix seconds as UTC to the minute: `2026-11-22 05:12`.
pub fn utc_minute(unix: i64) -> String {
    let t = banger_api::time::rfc3339(u64::try_from(unix).unwrap_or(0));
    format!("{} {}", &t[..10], &t[11..16])
}

/// A byte count in whole MiB, rounded to nearest (at least 1 MiB for anything but nothing).
pub fn mib_label(bytes: u64) -> String {
    let mib = if bytes == 0 {
        0
    } else {
        ((bytes + MIB / 2) / MIB).max(1)
    };
    format!("{mib} MiB")
}

/// Memory for people: `256 MiB`, `2 GiB`.
pub fn memory_label(mib: u32) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// The first 12 hex digits of a SHA-256, or `-` when there is none.
pub fn short_sha256(hex: &str) -> String {
    if hex.is_empty() {
        "-".to_string()
    } else {
        hex.chars().take(12).collect()
    }
}

/// `-` for an empty value.
pub(super) fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(utc_minute(1_795_313_683), "2026-11-22 02:14");
        assert_eq!(utc_minute(-5), "1970-01-01 00:00");
        assert_eq!(mib_label(0), "0 MiB");
        assert_eq!(mib_label(1), "1 MiB");
        assert_eq!(mib_label(5 * MIB + MIB / 3), "5 MiB");
        assert_eq!(mib_label(5 * MIB + 2 * MIB / 3), "6 MiB");
        assert_eq!(memory_label(256), "256 MiB");
        assert_eq!(memory_label(1536), "1536 MiB");
        assert_eq!(memory_label(2048), "2 GiB");
        assert_eq!(short_sha256(""), "-");
        assert_eq!(short_sha256("0123456789abcdef"), "0123456789ab");
    }
}
