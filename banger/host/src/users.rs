//! Looking up local accounts (through NSS, via `getent`, so LDAP/sssd users work too).

use std::process::Command;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// Errors from account look-ups.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such account.
    #[error("no user named {0:?} on this host (check the name, or create the account first)")]
    NotFound(String),
    /// getent failed or printed something unexpected.
    #[error("looking up user {name:?}: {why}")]
    Lookup {
        /// The name or uid looked up.
        name: String,
        /// What went wrong.
        why: String,
    },
}

/// Looks up an account by name or numeric uid.
pub fn lookup(name_or_uid: &str) -> Result<Account, UserError> {
    let out = Command::new("getent")
        .args(["passwd", "--", name_or_uid])
        .output()
        .map_err(|e| UserError::Lookup {
            name: name_or_uid.into(),
            why: format!("running getent: {e}"),
        })?;
    if out.status.code() == Some(2) {
        return Err(UserError::NotFound(name_or_uid.into()));
    }
    if !out.status.success() {
        return Err(UserError::Lookup {
            name: name_or_uid.into(),
            why: format!("getent exited with {}", out.status),
        });
    }
    parse_passwd_line(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(""),
    )
    .map_err(|why| UserError::Lookup {
        name: name_or_uid.into(),
        why,
    })
}

/// The numeric id of group `name` (through NSS, via `getent`), or `None` when there is no such
/// group.
pub fn group_id(name: &str) -> Result<Option<u32>, UserError> {
    let out = Command::new("getent")
        .args(["group", "--", name])
        .output()
        .map_err(|e| UserError::Lookup {
            name: name.into(),
            why: format!("running getent: {e}"),
        })?;
    if out.status.code() == Some(2) {
        return Ok(None);
    }
    if !out.status.success() {
        return Err(UserError::Lookup {
            name: name.into(),
            why: format!("getent exited with {}", out.status),
        });
    }
    let line = String::from_utf8_lossy(&out.stdout);
    line.split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| UserError::Lookup {
            name: name.into(),
            why: format!("malformed group entry {:?}", line.trim()),
        })
}

/// Parses one `passwd(5)` line.
pub fn parse_passwd_line(line: &str) -> Result<Account, String> {
    let f: Vec<&str> = line.trim_end().split(':').collect();
    if f.len() != 7 {
        return Err(format!("malformed passwd entry {line:?}"));
    }
    let num = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("bad {what} {s:?} in passwd entry"))
    };
    Ok(Account {
        name: f[0].into(),
        uid: num(f[2], "uid")?,
        gid: num(f[3], "gid")?,
        home: f[5].into(),
    })
}

/// The longest login name accepted (useradd's limit).
pub const MAX_LOGIN_NAME: usize = 32;

/// Whether `name` is a login name banger accepts wherever it puts one: on a command line (ssh's
/// `user@host`), in a unit file, in bus policy XML and in polkit JavaScript. Letters, digits,
/// `_`, `.` and `-`, not starting with `-` or `.`, at most [`MAX_LOGIN_NAME`] characters: the
/// portable names of POSIX, which need no quoting or escaping in any of those places.
pub fn is_portable_login_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MAX_LOGIN_NAME
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The effective uid of this process.
pub fn current_uid() -> u32 {
    rustix_free_geteuid()
}

#[allow(unsafe_code)]
fn rustix_free_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd() {
        let a = parse_passwd_line("alice:x:1001:1002:Alice:/home/alice:/bin/bash\n").unwrap();
        assert_eq!((a.name.as_str(), a.uid, a.gid), ("alice", 1001, 1002));
        assert_eq!(a.home, "/home/alice");
        assert!(parse_passwd_line("alice:x:notanumber:1:A:/h:/s").is_err());
        assert!(parse_passwd_line("short:line").is_err());
    }

    #[test]
    fn portable_login_names() {
        for good in [
            "alice",
            "_svc",
            "john.doe",
            "a-b_c",
            "u1",
            "A",
            &"a".repeat(32),
        ] {
            assert!(is_portable_login_name(good), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            ".hidden",
            "a b",
            "a\"b",
            "a'b",
            "a<b>",
            "a&b",
            "a$",
            "a@b",
            "a/b",
            "a\nb",
            "\u{e9}t\u{e9}",
            &"a".repeat(33),
        ] {
            assert!(!is_portable_login_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn groups_by_name() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("no-such-group-banger-test").unwrap(), None);
    }

    #[test]
    fn root_exists_and_nobody_is_missing() {
        assert_eq!(lookup("root").unwrap().uid, 0);
        assert!(matches!(
            lookup("no-such-user-banger-test"),
            Err(UserError::NotFound(_))
        ));
    }
}
