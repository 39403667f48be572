//! The system files an install consists of (units, bus policy, activation files, polkit policy),
//! embedded from the repository's `systemd/`, `dbus/` and `polkit/` directories so that every
//! binary carries the files that match it.
//!
//! Templates use three placeholders: `@OWNER@`, `@PREFIX@` and `@LIBEXEC@` (the binaries'
//! directory). Only the owner's files ([`Asset::owner`]) name the owner, so the others are the
//! same on every host and can belong to a package; the owner's are always in `/etc`.

use std::path::PathBuf;

use banger_api::names;

use crate::install::Layout;

/// Where an asset goes (see [`Layout`] for the two kinds of install).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// `/etc/systemd/system`, or `PREFIX/lib/systemd/system` for a package.
    UnitDir,
    /// `/etc/systemd/system/bangerd.service.d`.
    DaemonDropinDir,
    /// `/etc/dbus-1/system.d`, or `/usr/share/dbus-1/system.d` for a package.
    BusPolicyDir,
    /// `/etc/dbus-1/system.d`.
    AdminBusPolicyDir,
    /// `/usr/share/dbus-1/system-services`.
    BusActivationDir,
    /// `/usr/share/polkit-1/actions`.
    PolkitActionsDir,
    /// `PREFIX/share/banger`, or `/etc/banger` for a package (whose share directory is the
    /// package manager's).
    ExampleDir,
}

/// One embedded system file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Installed file name.
    pub name: &'static str,
    /// Directory it goes to.
    pub dest: Dest,
    /// Whether it names the owner (written by `banger system setup`, never packaged).
    pub owner: bool,
    /// Raw text with placeholders.
    pub text: &'static str,
}

/// Every system file of an install.
pub const ASSETS: [Asset; 13] = [
    Asset {
        name: "bangerd-root.service",
        dest: Dest::UnitDir,
        owner: false,
        text: include_str!("../../../systemd/bangerd-root.service"),
    },
    Asset {
        name: "bangerd-root-recover.service",
        dest: Dest::UnitDir,
        owner: false,
        text: include_str!("../../../systemd/bangerd-root-recover.service"),
    },
    Asset {
        name: "bangerd-root-resume.service",
        dest: Dest::UnitDir,
        owner: false,
        text: include_str!("../../../systemd/bangerd-root-resume.service"),
    },
    Asset {
        name: "bangerd.service",
        dest: Dest::UnitDir,
        owner: false,
        text: include_str!("../../../systemd/bangerd.service"),
    },
    Asset {
        name: "owner.conf",
        dest: Dest::DaemonDropinDir,
        owner: true,
        text: include_str!("../../../systemd/bangerd-owner.conf"),
    },
    Asset {
        name: "banger.slice",
        dest: Dest::UnitDir,
        owner: false,
        text: include_str!("../../../systemd/banger.slice"),
    },
    Asset {
        name: "org.banger.Root1.conf",
        dest: Dest::BusPolicyDir,
        owner: false,
        text: include_str!("../../../dbus/org.banger.Root1.conf"),
    },
    Asset {
        name: "org.banger.Daemon1.conf",
        dest: Dest::BusPolicyDir,
        owner: false,
        text: include_str!("../../../dbus/org.banger.Daemon1.conf"),
    },
    Asset {
        name: "org.banger.Daemon1.owner.conf",
        dest: Dest::AdminBusPolicyDir,
        owner: true,
        text: include_str!("../../../dbus/org.banger.Daemon1.owner.conf"),
    },
    Asset {
        name: "org.banger.Root1.service",
        dest: Dest::BusActivationDir,
        owner: false,
        text: include_str!("../../../dbus/org.banger.Root1.service"),
    },
    Asset {
        name: "org.banger.Daemon1.service",
        dest: Dest::BusActivationDir,
        owner: false,
        text: include_str!("../../../dbus/org.banger.Daemon1.service"),
    },
    Asset {
        name: names::POLKIT_POLICY,
        dest: Dest::PolkitActionsDir,
        owner: false,
        text: include_str!("../../../polkit/org.banger.policy"),
    },
    Asset {
        name: "49-banger-owner.rules.example",
        dest: Dest::ExampleDir,
        owner: true,
        text: include_str!("../../../polkit/49-banger-owner.rules.example"),
    },
];

impl Asset {
    /// Installed path under `layout`.
    pub fn path(&self, layout: &Layout) -> PathBuf {
        let dir = match self.dest {
            Dest::UnitDir => layout.unit_dir(),
            Dest::DaemonDropinDir => layout
                .admin_unit_dir()
                .join(format!("{}.d", names::DAEMON_UNIT)),
            Dest::BusPolicyDir => layout.bus_policy_dir(),
            Dest::AdminBusPolicyDir => layout.admin_bus_policy_dir(),
            Dest::BusActivationDir => layout.bus_activation_dir(),
            Dest::PolkitActionsDir => layout.polkit_actions_dir(),
            Dest::ExampleDir if layout.packaged => layout.etc_dir(),
            Dest::ExampleDir => layout.share_dir(),
        };
        dir.join(self.name)
    }

    /// The text with placeholders substituted. The values are substituted unescaped into
    /// unit files, bus policy XML and polkit JavaScript, so only values that need no escaping in
    /// any of them are accepted (see [`check_owner`] and [`check_prefix`]).
    pub fn render(&self, layout: &Layout, owner: &str) -> Result<String, TemplateError> {
        check_owner(owner)?;
        let prefix = check_prefix(&layout.prefix)?;
        Ok(self
            .text
            .replace("@OWNER@", owner)
            .replace("@LIBEXEC@", &format!("{prefix}/lib/banger/bin"))
            .replace("@PREFIX@", prefix))
    }

    /// The text of a file that names no owner (see [`Asset::owner`]).
    pub fn render_shared(&self, layout: &Layout) -> Result<String, TemplateError> {
        debug_assert!(!self.owner, "{} names the owner", self.name);
        let prefix = check_prefix(&layout.prefix)?;
        Ok(self
            .text
            .replace("@LIBEXEC@", &format!("{prefix}/lib/banger/bin"))
            .replace("@PREFIX@", prefix))
    }
}

/// A value that cannot be written into the install's templates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The owner's login name.
    #[error(
        "the owner's login name {0:?} cannot be written safely into banger's unit, bus policy and \
         polkit files: use an account whose name has only letters, digits, '_', '.' and '-', does \
         not start with '-' or '.', and has at most 32 characters; nothing was changed"
    )]
    Owner(String),
    /// The installation prefix.
    #[error(
        "the prefix {0:?} cannot be written safely into banger's unit and bus files: use an \
         absolute path of letters, digits and '/', '_', '.', '-', '+', without '.' or '..' \
         components or '//'; nothing was changed"
    )]
    Prefix(String),
}

/// Checks that `owner` is safe in every template (a portable login name).
pub fn check_owner(owner: &str) -> Result<(), TemplateError> {
    if crate::users::is_portable_login_name(owner) {
        Ok(())
    } else {
        Err(TemplateError::Owner(owner.to_string()))
    }
}

/// Checks that `prefix` is safe in every template and returns it as text: an absolute, normal
/// path (no `.`/`..` components, no empty ones, no trailing `/` unless it is `/`) of plain
/// characters, none of which means anything to systemd (`%` specifiers, `$` variables,
/// whitespace splitting, quotes), to XML or to JavaScript.
pub fn check_prefix(prefix: &std::path::Path) -> Result<&str, TemplateError> {
    let bad = || TemplateError::Prefix(prefix.to_string_lossy().into_owned());
    let text = prefix.to_str().ok_or_else(bad)?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-' | '+');
    let normal = text == "/"
        || (text.starts_with('/')
            && !text.ends_with('/')
            && text[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
    if normal && text.chars().all(plain) {
        Ok(text)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_placeholder_is_substituted() {
        let layout = Layout::new("/opt/b");
        for a in ASSETS {
            let text = a.render(&layout, "alice").unwrap();
            assert!(
                !text.contains('@') || !text.contains("@OWNER@"),
                "{}",
                a.name
            );
            for p in ["@OWNER@", "@PREFIX@", "@LIBEXEC@"] {
                assert!(!text.contains(p), "{} still has {p}", a.name);
            }
        }
    }

    #[test]
    fn values_that_need_escaping_anywhere_are_refused() {
        let ok = Layout::new("/opt/banger-1.0+x");
        for a in ASSETS {
            assert!(a.render(&ok, "john.doe").is_ok(), "{}", a.name);
        }
        for owner in [
            "a\"b", "a'b", "a<b", "a&b", "a b", "-x", "a$b", "a%b", "a\nb", "",
        ] {
            let e = ASSETS[0].render(&ok, owner).unwrap_err();
            assert_eq!(e, TemplateError::Owner(owner.into()));
            assert!(e.to_string().contains("nothing was changed"), "{e}");
        }
        for prefix in [
            "opt/b",
            "/opt/a b",
            "/opt/a\"b",
            "/opt/%h",
            "/opt/$X",
            "/opt/a'b",
            "/opt/<b>",
            "/opt/a&b",
            "/opt/../etc",
            "/opt/./b",
            "/opt//b",
            "/opt/b/",
            "",
            "/opt/\u{e9}",
        ] {
            let e = ASSETS[0].render(&Layout::new(prefix), "alice").unwrap_err();
            assert_eq!(e, TemplateError::Prefix(prefix.into()), "{prefix}");
        }
        assert_eq!(check_prefix(std::path::Path::new("/")), Ok("/"));
    }

    #[test]
    fn policy_defines_every_action() {
        let policy = ASSETS
            .iter()
            .find(|a| a.name == names::POLKIT_POLICY)
            .unwrap();
        for id in names::action::ALL {
            assert!(
                policy.text.contains(&format!("<action id=\"{id}\"")),
                "polkit policy lacks {id}"
            );
        }
    }

    #[test]
    fn the_recovery_units_are_wired_to_the_helper() {
        let unit = |n| ASSETS.iter().find(|a| a.name == n).unwrap().text;
        assert!(
            unit("bangerd-root.service").contains(&format!("OnFailure={}", names::RECOVER_UNIT))
        );
        assert!(
            unit(names::RECOVER_UNIT)
                .contains("ExecStart=@LIBEXEC@/bangerd-root.previous --recover")
        );
        assert!(
            unit(names::RECOVER_UNIT)
                .contains("ConditionPathExists=@LIBEXEC@/bangerd-root.previous")
        );
        assert!(
            unit(names::RESUME_UNIT).contains("ExecStart=@LIBEXEC@/bangerd-root --resume-pending")
        );
        assert!(unit(names::RESUME_UNIT).contains("WantedBy=multi-user.target"));
    }

    #[test]
    fn units_name_the_bus_names() {
        let unit = |n| ASSETS.iter().find(|a| a.name == n).unwrap().text;
        assert!(unit("bangerd-root.service").contains("BusName=org.banger.Root1"));
        assert!(unit("bangerd.service").contains("BusName=org.banger.Daemon1"));
        assert!(unit("owner.conf").contains("\nUser=@OWNER@\n"));
    }

    #[test]
    fn xml_comments_hold_no_double_hyphen() {
        // dbus-daemon refuses a policy file whose comment holds "--" (not well-formed XML).
        for a in ASSETS.iter().filter(|a| a.text.starts_with("<?xml")) {
            let mut rest = a.text;
            while let Some(i) = rest.find("<!--") {
                let body = &rest[i + 4..];
                let end = body.find("-->").expect("unterminated comment");
                assert!(!body[..end].contains("--"), "{}: {}", a.name, &body[..end]);
                rest = &body[end + 3..];
            }
        }
    }

    #[test]
    fn only_the_owner_files_name_the_owner_and_they_all_live_in_etc() {
        for a in ASSETS {
            let names_owner = a
                .text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#') && !l.trim_start().starts_with("//"))
                .any(|l| l.contains("@OWNER@"));
            assert_eq!(names_owner, a.owner, "{}", a.name);
        }
        let pkg = Layout::packaged("/usr").under("/stage");
        let src = Layout::new("/usr/local").under("/stage");
        for a in ASSETS {
            let (p, s) = (a.path(&pkg), a.path(&src));
            if a.owner {
                assert!(p.starts_with("/stage/etc"), "{}: {}", a.name, p.display());
            } else {
                assert!(p.starts_with("/stage/usr"), "{}: {}", a.name, p.display());
                let text = a.render_shared(&pkg).unwrap();
                for ph in ["@OWNER@", "@PREFIX@", "@LIBEXEC@"] {
                    assert!(!text.contains(ph), "{}: {ph}", a.name);
                }
            }
            assert!(s.starts_with("/stage"), "{}", s.display());
        }
        let drop_in = ASSETS.iter().find(|a| a.name == "owner.conf").unwrap();
        assert_eq!(
            drop_in.path(&pkg),
            Path::new("/stage/etc/systemd/system/bangerd.service.d/owner.conf")
        );
    }
}
