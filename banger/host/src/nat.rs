//! What banger changed on this host to give VMs a way out, and how to put it all back.
//!
//! The helper (`bangerd-root`) masquerades the VM subnet in an nftables table of its own,
//! [`TABLE`] in family [`FAMILY`], and turns IPv4 forwarding on for the interfaces that need it.
//! Before it changes a sysctl it writes the old value to the record ([`RECORD`]), so whoever
//! releases the network (the helper when the last VM stops, `banger system uninstall` as a last
//! resort) restores exactly what was there. The record lives in `/run`: the kernel forgets the
//! table and the sysctls at reboot, and so does the record.
//!
//! This module only ever deletes the table named [`TABLE`] and writes back sysctls the record
//! names, and only where they still hold the value banger set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The nftables family of banger's table (IPv4 only: IPv6 is off on the VM network).
pub const FAMILY: &str = "ip";
/// The name of banger's nftables table. Nothing else is ever touched.
pub const TABLE: &str = "banger";
/// Where the helper records what it changed.
pub const RECORD: &str = "/run/bangerd-root/nat.toml";
/// The program that manages nftables.
pub const NFT_PROGRAM: &str = "nft";

/// One sysctl banger changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlChange {
    /// The file under `/proc/sys`.
    pub path: PathBuf,
    /// Its value before banger changed it.
    pub before: String,
    /// The value banger wrote.
    pub set: String,
}

/// What banger changed for VM networking, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRecord {
    /// The sysctls changed, in the order they were changed.
    #[serde(default)]
    pub sysctls: Vec<SysctlChange>,
}

/// Why the record could not be read or written, or the network not released.
#[derive(Debug, thiserror::Error)]
pub enum NatRecordError {
    /// Reading or writing the record failed.
    #[error("{doing} {}: {source}", path.display())]
    Io {
        /// "reading", "writing", "removing".
        doing: &'static str,
        /// The record.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The record does not parse.
    #[error("{} is not a NAT record banger wrote ({why}); remove it after checking `nft list table {FAMILY} {TABLE}` and the forwarding sysctls", path.display())]
    Corrupt {
        /// The record.
        path: PathBuf,
        /// The parser's message.
        why: String,
    },
    /// `nft` failed.
    #[error("`{command}` failed: {why}")]
    Nft {
        /// The command line.
        command: String,
        /// Its stderr or exit status.
        why: String,
    },
    /// A sysctl could not be restored.
    #[error("restoring {} to {value:?}: {source}", path.display())]
    Sysctl {
        /// The sysctl's file.
        path: PathBuf,
        /// The value to restore.
        value: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl NatRecord {
    /// Reads the record at `path`; none is an empty record.
    pub fn load(path: &Path) -> Result<Self, NatRecordError> {
        match std::fs::read_to_string(path) {
            Ok(t) => toml::from_str(&t).map_err(|e| NatRecordError::Corrupt {
                path: path.into(),
                why: e.message().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(NatRecordError::Io {
                doing: "reading",
                path: path.into(),
                source,
            }),
        }
    }

    /// Writes the record to `path` (root only), creating its directory.
    pub fn save(&self, path: &Path) -> Result<(), NatRecordError> {
        let io = |doing, source| NatRecordError::Io {
            doing,
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("writing", e))?;
        }
        let text = format!(
            "# What bangerd-root changed for VM networking; read back to undo it. Do not edit.\n{}",
            toml::to_string(self).expect("the record serializes")
        );
        crate::fsutil::atomic_write(path, text.as_bytes(), 0o600).map_err(|e| io("writing", e))
    }

    /// Changes sysctl `path` to `value`, recording the old value first (once: a sysctl already
    /// recorded keeps its first `before`). Nothing is written or recorded when it already holds
    /// `value`. Returns whether it was changed now.
    pub fn set_sysctl(
        &mut self,
        record: &Path,
        path: &Path,
        value: &str,
    ) -> Result<bool, NatRecordError> {
        let current = read_trimmed(path).map_err(|source| NatRecordError::Io {
            doing: "reading",
            path: path.into(),
            source,
        })?;
        if current == value {
            return Ok(false);
        }
        if !self.sysctls.iter().any(|c| c.path == path) {
            self.sysctls.push(SysctlChange {
                path: path.into(),
                before: current,
                set: value.into(),
            });
            self.save(record)?;
        }
        std::fs::write(path, value).map_err(|source| NatRecordError::Sysctl {
            path: path.into(),
            value: value.into(),
            source,
        })?;
        Ok(true)
    }

    /// Whether banger turned on the sysctl at `path`.
    pub fn changed(&self, path: &Path) -> bool {
        self.sysctls.iter().any(|c| c.path == path)
    }
}

fn read_trimmed(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// `nft` at `program`, run with `args` and `stdin`; stdout, or an error naming the command.
pub fn run_nft(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, NatRecordError> {
    use std::io::Write;
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let fail = |why: String| NatRecordError::Nft {
        command: command.clone(),
        why,
    };
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not run it: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(format!("writing its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        Err(fail(if stderr.is_empty() {
            out.status.to_string()
        } else {
            format!("{stderr} ({})", out.status)
        }))
    }
}

/// Whether banger's table exists (`nft list table ip banger`).
pub fn table_exists(nft: &Path) -> Result<bool, NatRecordError> {
    match run_nft(nft, &["list", "table", FAMILY, TABLE], None) {
        Ok(_) => Ok(true),
        Err(NatRecordError::Nft { why, .. }) if why.contains("No such file or directory") => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// What [`release`] undid.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Whether banger's table was there and is gone now.
    pub table: bool,
    /// The sysctls written back.
    pub restored: Vec<PathBuf>,
    /// The sysctls left as they are because someone else changed them since.
    pub left: Vec<PathBuf>,
}

/// Puts back everything the record at `record` says banger changed: deletes banger's table (when
/// `nft` is given and the table exists), writes back each sysctl that still holds banger's
/// value, then removes the record. Safe to repeat. On error the record stays, so a later call
/// can finish the job.
pub fn release(nft: Option<&Path>, record: &Path) -> Result<Released, NatRecordError> {
    let rec = NatRecord::load(record)?;
    let mut done = Released::default();
    if let Some(nft) = nft
        && table_exists(nft)?
    {
        run_nft(nft, &["delete", "table", FAMILY, TABLE], None)?;
        done.table = true;
    }
    for c in rec.sysctls.iter().rev() {
        match read_trimmed(&c.path) {
            Ok(v) if v == c.set => {
                std::fs::write(&c.path, &c.before).map_err(|source| NatRecordError::Sysctl {
                    path: c.path.clone(),
                    value: c.before.clone(),
                    source,
                })?;
                done.restored.push(c.path.clone());
            }
            // The interface is gone (its sysctls with it), or someone changed it since.
            Ok(_) => done.left.push(c.path.clone()),
            Err(_) => {}
        }
    }
    match std::fs::remove_file(record) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(NatRecordError::Io {
                doing: "removing",
                path: record.into(),
                source,
            });
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sysctl_is_recorded_before_it_changes_and_restored_only_if_still_ours() {
        let d = tempfile::tempdir().unwrap();
        let record = d.path().join("run/nat.toml");
        let a = d.path().join("a_forwarding");
        let b = d.path().join("b_forwarding");
        let c = d.path().join("c_forwarding");
        std::fs::write(&a, "0\n").unwrap();
        std::fs::write(&b, "0\n").unwrap();
        std::fs::write(&c, "1\n").unwrap();
        let mut rec = NatRecord::load(&record).unwrap();
        assert!(rec.set_sysctl(&record, &a, "1").unwrap());
        assert!(rec.set_sysctl(&record, &b, "1").unwrap());
        assert!(!rec.set_sysctl(&record, &c, "1").unwrap(), "already so");
        assert!(!rec.set_sysctl(&record, &a, "1").unwrap(), "repeat");
        let saved = NatRecord::load(&record).unwrap();
        assert_eq!(saved, rec);
        assert_eq!(
            saved.sysctls.len(),
            2,
            "c was never changed, so never recorded"
        );
        assert!(saved.changed(&a) && !saved.changed(&c));
        assert_eq!(saved.sysctls[0].before, "0");
        // Someone else turns b off again meanwhile: it is theirs now.
        std::fs::write(&b, "0").unwrap();
        let done = release(None, &record).unwrap();
        assert_eq!(done.restored, vec![a.clone()]);
        assert_eq!(done.left, vec![b.clone()], "b is someone else's again");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(&c).unwrap(), "1\n", "never touched");
        assert!(!record.exists());
        assert_eq!(release(None, &record).unwrap(), Released::default());
    }

    #[test]
    fn a_changed_value_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let record = d.path().join("nat.toml");
        let a = d.path().join("a");
        std::fs::write(&a, "0").unwrap();
        let mut rec = NatRecord::default();
        rec.set_sysctl(&record, &a, "1").unwrap();
        std::fs::write(&a, "2").unwrap();
        let done = release(None, &record).unwrap();
        assert_eq!(done.left, vec![a.clone()]);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "2");
    }

    #[test]
    fn a_corrupt_record_is_refused_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let record = d.path().join("nat.toml");
        std::fs::write(&record, "sysctls = 3").unwrap();
        let e = release(None, &record).unwrap_err();
        assert!(matches!(e, NatRecordError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("nft list table ip banger"), "{e}");
        assert!(record.exists());
    }
}
