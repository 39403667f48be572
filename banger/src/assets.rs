//! The system files an install consists of (units, bus policy, activation files, polkit policy),
//! embedded from the repository's `systemd/`, `dbus/` and `polkit/` directories so that every
//! binary carries the files that match it.
//!
//! Templates use three placeholders: `@OWNER@`, `@PREFIX@` and `@LIBEXEC@` (the binaries'
//! directory).

use std::path::PathBuf;

use crate::install::Layout;

/// Where an asset goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// `/etc/systemd/system`.
    UnitDir,
    /// `/etc/dbus-1/system.d`.
    BusPolicyDir,
    /// `/usr/share/dbus-1/system-services`.
    BusActivationDir,
    /// `/usr/share/polkit-1/actions`.
    PolkitActionsDir,
    /// `PREFIX/share/banger`.
    ShareDir,
}

/// One embedded system file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Installed file name.
    pub name: &'static str,
    /// Directory it goes to.
    pub dest: Dest,
    /// Raw text with placeholders.
    pub text: &'static str,
}

/// Every system file of an install.
pub const ASSETS: [Asset; 9] = [
    Asset {
        name: "bangerd-root.service",
        dest: Dest::UnitDir,
        text: include_str!("../../systemd/bangerd-root.service"),
    },
    Asset {
        name: "bangerd.service",
        dest: Dest::UnitDir,
        text: include_str!("../../systemd/bangerd.service"),
    },
    Asset {
        name: "banger.slice",
        dest: Dest::UnitDir,
        text: include_str!("../../systemd/banger.slice"),
    },
    Asset {
        name: "org.banger.Root1.conf",
        dest: Dest::BusPolicyDir,
        text: include_str!("../../dbus/org.banger.Root1.conf"),
    },
    Asset {
        name: "org.banger.Daemon1.conf",
        dest: Dest::BusPolicyDir,
        text: include_str!("../../dbus/org.banger.Daemon1.conf"),
    },
    Asset {
        name: "org.banger.Root1.service",
        dest: Dest::BusActivationDir,
        text: include_str!("../../dbus/org.banger.Root1.service"),
    },
    Asset {
        name: "org.banger.Daemon1.service",
        dest: Dest::BusActivationDir,
        text: include_str!("../../dbus/org.banger.Daemon1.service"),
    },
    Asset {
        name: "org.banger.policy",
        dest: Dest::PolkitActionsDir,
        text: include_str!("../../polkit/org.banger.policy"),
    },
    Asset {
        name: "49-banger-owner.rules.example",
        dest: Dest::ShareDir,
        text: include_str!("../../polkit/49-banger-owner.rules.example"),
    },
];

impl Asset {
    /// Installed path under `layout`.
    pub fn path(&self, layout: &Layout) -> PathBuf {
        let dir = match self.dest {
            Dest::UnitDir => layout.unit_dir(),
            Dest::BusPolicyDir => layout.bus_policy_dir(),
            Dest::BusActivationDir => layout.bus_activation_dir(),
            Dest::PolkitActionsDir => layout.polkit_actions_dir(),
            Dest::ShareDir => layout.share_dir(),
        };
        dir.join(self.name)
    }

    /// The text with placeholders substituted.
    pub fn render(&self, layout: &Layout, owner: &str) -> String {
        self.text
            .replace("@OWNER@", owner)
            .replace(
                "@LIBEXEC@",
                &layout.prefix.join("lib/banger/bin").to_string_lossy(),
            )
            .replace("@PREFIX@", &layout.prefix.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    #[test]
    fn every_placeholder_is_substituted() {
        let layout = Layout::new("/opt/b");
        for a in ASSETS {
            let text = a.render(&layout, "alice");
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
    fn policy_defines_every_action() {
        let policy = ASSETS
            .iter()
            .find(|a| a.name == "org.banger.policy")
            .unwrap();
        for id in names::action::ALL {
            assert!(
                policy.text.contains(&format!("<action id=\"{id}\"")),
                "polkit policy lacks {id}"
            );
        }
    }

    #[test]
    fn units_name_the_bus_names() {
        let unit = |n| ASSETS.iter().find(|a| a.name == n).unwrap().text;
        assert!(unit("bangerd-root.service").contains("BusName=org.banger.Root1"));
        assert!(unit("bangerd.service").contains("BusName=org.banger.Daemon1"));
        assert!(unit("bangerd.service").contains("User=@OWNER@"));
    }
}
