//! The names and ids that cross the bus as strings, each with the one rule that says what a
//! valid one is: a VM's id ([`VmId`]), a VM's name ([`VmName`]) and an image's name
//! ([`ImageName`]). A value of one of these types has passed its rule; [`IdError`] says what
//! was wrong with one that did not.
//!
//! These types only check spelling. Whether a VM or image of that name exists, and what may be
//! done with it, is never decided here.

use std::fmt;

/// Which kind of name or id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A [`VmId`].
    VmId,
    /// A [`VmName`].
    VmName,
    /// An [`ImageName`].
    ImageName,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::VmId => "VM id",
            IdKind::VmName => "VM name",
            IdKind::ImageName => "image name",
        })
    }
}

/// What was wrong with a name or id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing was given.
    #[error("the {kind} is empty")]
    Empty {
        /// What was refused.
        kind: IdKind,
    },
    /// Longer than the rule allows.
    #[error("{kind} {value:?} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// What was refused.
        kind: IdKind,
        /// The value given.
        value: String,
        /// Its length in bytes.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// Not of the one length the rule allows.
    #[error("{kind} {value:?} is {len} bytes long; it must be exactly {want}")]
    WrongLength {
        /// What was refused.
        kind: IdKind,
        /// The value given.
        value: String,
        /// Its length in bytes.
        len: usize,
        /// The length required.
        want: usize,
    },
    /// A character the rule does not allow anywhere.
    #[error("{kind} {value:?} contains {found:?}; only {allowed} are allowed")]
    BadCharacter {
        /// What was refused.
        kind: IdKind,
        /// The value given.
        value: String,
        /// The first character not allowed.
        found: char,
        /// The characters allowed.
        allowed: &'static str,
    },
    /// A character the rule does not allow first.
    #[error("{kind} {value:?} starts with {found:?}; it must start with {allowed}")]
    BadFirst {
        /// What was refused.
        kind: IdKind,
        /// The value given.
        value: String,
        /// Its first character.
        found: char,
        /// The characters allowed first.
        allowed: &'static str,
    },
    /// A character the rule does not allow last.
    #[error("{kind} {value:?} ends with {found:?}; it must end with {allowed}")]
    BadLast {
        /// What was refused.
        kind: IdKind,
        /// The value given.
        value: String,
        /// Its last character.
        found: char,
        /// The characters allowed last.
        allowed: &'static str,
    },
}

/// The first character of `value` that `ok` refuses, as an [`IdError::BadCharacter`].
fn check_chars(
    kind: IdKind,
    value: &str,
    ok: fn(char) -> bool,
    allowed: &'static str,
) -> Result<(), IdError> {
    match value.chars().find(|c| !ok(*c)) {
        Some(found) => Err(IdError::BadCharacter {
            kind,
            value: value.to_string(),
            found,
            allowed,
        }),
        None => Ok(()),
    }
}

/// Refuses an empty `value`, or one longer than `max` bytes.
fn check_length(kind: IdKind, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong {
            kind,
            value: value.to_string(),
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// The string type behind one of the names: `as_str`, `Display`, `AsRef<str>`.
macro_rules! name_type {
    ($name:ident) => {
        impl $name {
            /// The value as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A VM's id: exactly 12 lowercase hexadecimal digits. It names the VM's directory, its unit
/// (`banger-vm-<id>.service`) and its tap; the daemon draws it at random when the VM is created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmId(String);

impl VmId {
    /// The length of every id.
    pub const LEN: usize = 12;

    /// Checks `s` against the rule.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::VmId;
        if s.is_empty() {
            return Err(IdError::Empty { kind });
        }
        check_chars(
            kind,
            s,
            |c| matches!(c, '0'..='9' | 'a'..='f'),
            "0-9 and a-f",
        )?;
        if s.len() != Self::LEN {
            return Err(IdError::WrongLength {
                kind,
                value: s.to_string(),
                len: s.len(),
                want: Self::LEN,
            });
        }
        Ok(VmId(s.to_string()))
    }

    /// The id spelling these six bytes in hexadecimal.
    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        VmId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

name_type!(VmId);

/// A VM's name, which is also its guest's hostname: a hostname label,
/// `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmName(String);

impl VmName {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 63;

    /// Checks `s` against the rule.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::VmName;
        check_length(kind, s, Self::MAX_LEN)?;
        check_chars(
            kind,
            s,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            "a-z, 0-9 and -",
        )?;
        let ends = "a-z or 0-9";
        if s.starts_with('-') {
            return Err(IdError::BadFirst {
                kind,
                value: s.to_string(),
                found: '-',
                allowed: ends,
            });
        }
        if s.ends_with('-') {
            return Err(IdError::BadLast {
                kind,
                value: s.to_string(),
                found: '-',
                allowed: ends,
            });
        }
        Ok(VmName(s.to_string()))
    }
}

name_type!(VmName);

/// An image's name, which is also its directory under `images/`: `[a-z0-9][a-z0-9._-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName(String);

impl ImageName {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 63;

    /// Checks `s` against the rule.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::ImageName;
        check_length(kind, s, Self::MAX_LEN)?;
        check_chars(
            kind,
            s,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
            "a-z, 0-9, ., _ and -",
        )?;
        if let Some(found) = s
            .chars()
            .next()
            .filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        {
            return Err(IdError::BadFirst {
                kind,
                value: s.to_string(),
                found,
                allowed: "a-z or 0-9",
            });
        }
        Ok(ImageName(s.to_string()))
    }
}

name_type!(ImageName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_ids() {
        for ok in ["0123456789ab", "ffffffffffff", "000000000000"] {
            let id = VmId::parse(ok).unwrap();
            assert_eq!(id.as_str(), ok);
            assert_eq!(id.to_string(), ok);
        }
        assert_eq!(
            VmId::from_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab]).as_str(),
            "0123456789ab"
        );
        let cases = [
            ("", IdError::Empty { kind: IdKind::VmId }),
            (
                "0123456789a",
                IdError::WrongLength {
                    kind: IdKind::VmId,
                    value: "0123456789a".into(),
                    len: 11,
                    want: 12,
                },
            ),
            (
                "0123456789abc",
                IdError::WrongLength {
                    kind: IdKind::VmId,
                    value: "0123456789abc".into(),
                    len: 13,
                    want: 12,
                },
            ),
            (
                "0123456789AB",
                IdError::BadCharacter {
                    kind: IdKind::VmId,
                    value: "0123456789AB".into(),
                    found: 'A',
                    allowed: "0-9 and a-f",
                },
            ),
            (
                "../../etc/xx",
                IdError::BadCharacter {
                    kind: IdKind::VmId,
                    value: "../../etc/xx".into(),
                    found: '.',
                    allowed: "0-9 and a-f",
                },
            ),
        ];
        for (bad, error) in cases {
            assert_eq!(VmId::parse(bad), Err(error), "{bad:?}");
        }
        assert_eq!(
            VmId::parse("0123456789a").unwrap_err().to_string(),
            "VM id \"0123456789a\" is 11 bytes long; it must be exactly 12"
        );
        // Twelve bytes that are not twelve hex digits.
        assert!(VmId::parse("ääääää").is_err());
    }

    #[test]
    fn vm_names() {
        for ok in ["web", "a", "web-1", "0x", "1-2", &"a".repeat(63)] {
            let name = VmName::parse(ok).unwrap();
            assert_eq!(name.as_str(), ok);
            assert_eq!(name.as_ref(), ok);
        }
        for bad in ["Web", "a_b", "a.b", "a b", "ä", "../etc"] {
            assert!(
                matches!(VmName::parse(bad), Err(IdError::BadCharacter { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            VmName::parse(""),
            Err(IdError::Empty {
                kind: IdKind::VmName
            })
        );
        assert!(matches!(
            VmName::parse(&"a".repeat(64)),
            Err(IdError::TooLong {
                len: 64,
                max: 63,
                ..
            })
        ));
        assert!(matches!(
            VmName::parse("-a"),
            Err(IdError::BadFirst { found: '-', .. })
        ));
        assert!(matches!(
            VmName::parse("a-"),
            Err(IdError::BadLast { found: '-', .. })
        ));
        assert_eq!(
            VmName::parse("Web").unwrap_err().to_string(),
            "VM name \"Web\" contains 'W'; only a-z, 0-9 and - are allowed"
        );
        assert_eq!(
            VmName::parse("a-").unwrap_err().to_string(),
            "VM name \"a-\" ends with '-'; it must end with a-z or 0-9"
        );
    }

    #[test]
    fn image_names() {
        for ok in ["debian-12", "d.1_2", "0", "a..", "x-", &"a".repeat(63)] {
            assert_eq!(ImageName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["X", "a/b", "a b", "ä"] {
            assert!(
                matches!(ImageName::parse(bad), Err(IdError::BadCharacter { .. })),
                "{bad:?}"
            );
        }
        for bad in [".x", "-x", "_x", ".."] {
            assert!(
                matches!(ImageName::parse(bad), Err(IdError::BadFirst { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            ImageName::parse(""),
            Err(IdError::Empty {
                kind: IdKind::ImageName
            })
        );
        assert!(matches!(
            ImageName::parse(&"a".repeat(64)),
            Err(IdError::TooLong { len: 64, .. })
        ));
        assert_eq!(
            ImageName::parse("..").unwrap_err().to_string(),
            "image name \"..\" starts with '.'; it must start with a-z or 0-9"
        );
        assert_eq!(
            ImageName::parse("").unwrap_err().to_string(),
            "the image name is empty"
        );
    }

    /// Every string of up to three characters from an alphabet that has each kind of character
    /// the rules tell apart, plus the lengths around each limit.
    fn samples() -> Vec<String> {
        let alphabet = [
            "a", "z", "0", "f", "g", "-", ".", "_", "A", "/", " ", "ä", "\n",
        ];
        let mut out = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = out
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            out.extend(longer);
        }
        for n in [11, 12, 13, 62, 63, 64] {
            out.push("a".repeat(n));
            out.push(format!("{}-", "a".repeat(n - 1)));
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn the_rules_read_byte_by_byte() {
        let image = |s: &str| {
            let b = s.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
        };
        let vm = |s: &str| {
            let b = s.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        };
        let id =
            |s: &str| s.len() == 12 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        for s in samples() {
            assert_eq!(ImageName::parse(&s).is_ok(), image(&s), "{s:?}");
            assert_eq!(VmName::parse(&s).is_ok(), vm(&s), "{s:?}");
            assert_eq!(VmId::parse(&s).is_ok(), id(&s), "{s:?}");
        }
        for s in ["0123456789ab", "0123456789aB", "ääääää"] {
            assert_eq!(VmId::parse(s).is_ok(), id(s), "{s:?}");
        }
    }
}
