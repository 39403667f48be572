//! The owner daemon's SQLite store and its versioned migrations.
//!
//! The schema version is SQLite's `user_version`: the number of migrations applied. A store
//! newer than this binary is never opened for writing, and [`check`] never writes at all, so
//! the update engine can ask a staged binary about the live store without risk.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

mod records;
pub use records::{ImageRecord, VmRecord};

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version the store has after this migration (1-based, consecutive).
    pub version: u32,
    /// Short name.
    pub name: &'static str,
    /// SQL applied in the migration's transaction.
    pub sql: &'static str,
}

/// Every migration of the schema, in order (see [`migrations`] for the ones a binary applies).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "operations",
        sql: include_str!("migrations/0001_operations.sql"),
    },
    Migration {
        version: 2,
        name: "images_vms",
        sql: include_str!("migrations/0002_images_vms.sql"),
    },
    Migration {
        version: 3,
        name: "vm_runtime",
        sql: include_str!("migrations/0003_vm_runtime.sql"),
    },
    Migration {
        version: 4,
        name: "catalogs",
        sql: include_str!("migrations/0004_catalogs.sql"),
    },
];

/// SQL for one more migration, compiled in when `BANGER_TEST_MIGRATION` is set at build time.
/// The smoke suite builds a release with it, so that an update whose new bangerd migrates the
/// store (and then rolls back) can be tested for real. Never set for builds anyone installs.
const TEST_MIGRATION: Option<&str> = option_env!("BANGER_TEST_MIGRATION");

/// The migrations this binary applies: [`MIGRATIONS`], and the test migration if it was
/// compiled in.
pub fn migrations() -> &'static [Migration] {
    static ALL: std::sync::LazyLock<Vec<Migration>> = std::sync::LazyLock::new(|| {
        let mut all = MIGRATIONS.to_vec();
        if let Some(sql) = TEST_MIGRATION.filter(|s| !s.is_empty()) {
            all.push(Migration {
                version: MIGRATIONS.len() as u32 + 1,
                name: "test_migration",
                sql,
            });
        }
        all
    });
    &ALL
}

/// The schema version this binary writes.
pub fn latest_version() -> u32 {
    migrations().last().map(|m| m.version).unwrap_or(0)
}

/// How a store relates to this binary's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Same version: nothing to do.
    Current {
        /// The version.
        version: u32,
    },
    /// No store yet: it will be created on start.
    Missing,
    /// Older: these migrations will be applied on start.
    Pending {
        /// The store's version.
        version: u32,
        /// Names of the pending migrations.
        pending: Vec<String>,
    },
    /// Newer than this binary: refuse.
    Newer {
        /// The store's version.
        version: u32,
    },
}

impl SchemaStatus {
    /// Exit code for `bangerd --check-migrations`: 0 compatible, 1 will migrate, 2 refuse.
    pub fn exit_code(&self) -> i32 {
        match self {
            SchemaStatus::Current { .. } => 0,
            SchemaStatus::Missing | SchemaStatus::Pending { .. } => 1,
            SchemaStatus::Newer { .. } => 2,
        }
    }

    /// One line saying why, naming the store.
    pub fn describe(&self, path: &Path) -> String {
        let latest = latest_version();
        match self {
            SchemaStatus::Current { version } => {
                format!(
                    "store {} is at schema v{version}, as this bangerd expects",
                    path.display()
                )
            }
            SchemaStatus::Missing => format!(
                "store {} does not exist yet; it will be created at schema v{latest} on start",
                path.display()
            ),
            SchemaStatus::Pending { version, pending } => format!(
                "store {} is at schema v{version}; {} migration(s) pending ({}) will be applied on start to reach v{latest}",
                path.display(),
                pending.len(),
                pending.join(", ")
            ),
            SchemaStatus::Newer { version } => format!(
                "store {} is at schema v{version}, newer than this bangerd understands (v{latest}); it was not touched: install a newer banger or restore a backup of the store",
                path.display()
            ),
        }
    }
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened or read.
    #[error("cannot read store {path}: {source}")]
    Unreadable {
        /// The store.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Something other than a regular file is at the store's path.
    #[error(
        "store {path} is {kind}, not a regular file: refusing to open it (move it away, or put \
         the store or a backup of it there)"
    )]
    NotAFile {
        /// The store.
        path: PathBuf,
        /// What is there instead ("a symbolic link", "a FIFO", …).
        kind: &'static str,
    },
    /// The store is newer than this binary.
    #[error("{0}")]
    TooNew(String),
    /// A migration failed (the store was left at its previous version).
    #[error(
        "migrating store {path} to v{version} ({name}) failed, store left at its previous version: {source}"
    )]
    Migration {
        /// The store.
        path: PathBuf,
        /// Target version.
        version: u32,
        /// Migration name.
        name: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("store {path}: {source}")]
    Query {
        /// The store.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

fn status_for(version: u32) -> SchemaStatus {
    let latest = latest_version();
    if version == latest {
        SchemaStatus::Current { version }
    } else if version > latest {
        SchemaStatus::Newer { version }
    } else {
        SchemaStatus::Pending {
            version,
            pending: migrations()
                .iter()
                .filter(|m| m.version > version)
                .map(|m| format!("v{} {}", m.version, m.name))
                .collect(),
        }
    }
}

fn read_version(conn: &Connection) -> rusqlite::Result<u32> {
    // Touch the schema so that a file that is not a database fails here, not later.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))
}

/// Refuses anything at `path` that is not a regular file, without following a symbolic link or
/// opening it: SQLite would follow a link to any file, and block forever on a FIFO.
fn check_regular(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let t = md.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device node"
    } else {
        "not a file"
    };
    Err(StoreError::NotAFile {
        path: path.into(),
        kind,
    })
}

/// Reports how the store at `path` relates to this binary, without writing anything.
pub fn check(path: &Path) -> Result<SchemaStatus, StoreError> {
    check_regular(path)?;
    if !path.exists() {
        // A missing file and a missing parent directory both mean "fresh store".
        return match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SchemaStatus::Missing),
            Err(e) => Err(StoreError::Unreadable {
                path: path.into(),
                source: rusqlite::Error::InvalidPath(format!("{e}").into()),
            }),
            Ok(_) => Ok(SchemaStatus::Missing),
        };
    }
    let unreadable = |source| StoreError::Unreadable {
        path: path.into(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    Ok(status_for(read_version(&conn).map_err(unreadable)?))
}

/// Writes a consistent copy of the store at `path` to `dest` (which must not exist), owned
/// and moded like the original, without writing to the original. The update engine keeps one
/// while a new bangerd may migrate the store, so a rollback can give the old bangerd the store
/// it understands.
pub fn snapshot(path: &Path, dest: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let unreadable = |source| StoreError::Unreadable {
        path: path.into(),
        source,
    };
    check_regular(path)?;
    if dest.exists() {
        return Err(StoreError::Query {
            path: dest.into(),
            source: rusqlite::Error::InvalidPath(
                format!("{} already exists", dest.display()).into(),
            ),
        });
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| unreadable(rusqlite::Error::InvalidPath(e.to_string().into())))?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(unreadable)?;
    let dest_str = dest.to_string_lossy().to_string();
    conn.execute("VACUUM INTO ?1", [&dest_str])
        .map_err(|source| StoreError::Query {
            path: dest.into(),
            source,
        })?;
    let fix = || -> std::io::Result<()> {
        std::os::unix::fs::chown(dest, Some(meta.uid()), Some(meta.gid()))?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        std::fs::File::open(dest)?.sync_all()
    };
    fix().map_err(|e| StoreError::Query {
        path: dest.into(),
        source: rusqlite::Error::InvalidPath(e.to_string().into()),
    })
}

/// An open, current store.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the store; refuses a newer one untouched.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Look before opening read-write, so a newer or foreign file is never modified.
        if let SchemaStatus::Newer { .. } = check(path)? {
            return Err(StoreError::TooNew(check(path)?.describe(path)));
        }
        let mut conn = Connection::open(path).map_err(|source| StoreError::Unreadable {
            path: path.into(),
            source,
        })?;
        let q = |source| StoreError::Query {
            path: path.into(),
            source,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(q)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;").map_err(q)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let version = read_version(&tx).map_err(q)?;
        if version > latest_version() {
            return Err(StoreError::TooNew(status_for(version).describe(path)));
        }
        for m in migrations().iter().filter(|m| m.version > version) {
            tx.execute_batch(m.sql)
                .and_then(|()| tx.pragma_update(None, "user_version", m.version))
                .map_err(|source| StoreError::Migration {
                    path: path.into(),
                    version: m.version,
                    name: m.name,
                    source,
                })?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied store migration"
            );
        }
        tx.commit().map_err(q)?;
        Ok(Store {
            conn,
            path: path.into(),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version (always the latest once open).
    pub fn version(&self) -> Result<u32, StoreError> {
        read_version(&self.conn).map_err(|source| self.err(source))
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Query {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a new operation.
    pub fn insert_operation(
        &self,
        id: &str,
        kind: &str,
        stage: &str,
        started: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO operations (id, kind, stage, started) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, kind, stage, started as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Updates an operation's stage, and its finish time when `finished` is set.
    pub fn update_operation(
        &self,
        id: &str,
        stage: &str,
        finished: Option<u64>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE operations SET stage = ?2, finished = ?3 WHERE id = ?1",
                rusqlite::params![id, stage, finished.map(|f| f as i64)],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Marks operations left unfinished by a previous daemon as interrupted; returns how many.
    pub fn interrupt_unfinished(&self, now: u64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE operations SET stage = 'interrupted', finished = ?1 WHERE finished IS NULL",
                [now as i64],
            )
            .map_err(|e| self.err(e))
    }

    /// Reads a metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Writes a metadata value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn links_fifos_and_directories_are_refused_unopened() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.db");
        Store::open(&real).unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let fifo = dir.path().join("fifo.db");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: mkfifo only reads the NUL-terminated path it is given.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0);
        for (p, kind) in [
            (&link, "a symbolic link"),
            (&fifo, "a FIFO"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            // A FIFO would block these forever if it were opened.
            for e in [
                check(p).unwrap_err(),
                Store::open(p).err().unwrap(),
                snapshot(p, &dir.path().join("snap.db")).unwrap_err(),
            ] {
                let m = e.to_string();
                assert!(m.contains(kind) && m.contains("not a regular file"), "{m}");
            }
        }
        assert!(check(&real).is_ok());
    }

    #[test]
    fn migrations_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn fresh_store_is_created_at_latest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        assert_eq!(check(&p).unwrap(), SchemaStatus::Missing);
        assert_eq!(check(&p).unwrap().exit_code(), 1);
        let s = Store::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), latest_version());
        drop(s);
        assert_eq!(check(&p).unwrap().exit_code(), 0);
    }

    #[test]
    fn older_store_is_pending_then_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(MIGRATIONS[0].sql).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute("INSERT INTO meta VALUES ('k', 'kept')", [])
            .unwrap();
        drop(c);
        let before = sha(&p);
        let st = check(&p).unwrap();
        assert_eq!(st.exit_code(), 1);
        assert!(
            st.describe(&p).contains("v2 images_vms"),
            "{}",
            st.describe(&p)
        );
        assert_eq!(sha(&p), before, "check must not write");
        let s = Store::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), latest_version());
        assert_eq!(s.meta("k").unwrap().as_deref(), Some("kept"));
    }

    #[test]
    fn newer_store_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        let before = sha(&p);
        let st = check(&p).unwrap();
        assert_eq!(st.exit_code(), 2);
        assert!(st.describe(&p).contains("v999"));
        let err = Store::open(&p).err().expect("must refuse");
        assert!(err.to_string().contains("newer"), "{err}");
        assert_eq!(sha(&p), before, "refusal must not write");
    }

    #[test]
    fn garbage_file_is_unreadable_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        std::fs::write(&p, vec![0x42u8; 4096]).unwrap();
        assert!(matches!(check(&p), Err(StoreError::Unreadable { .. })));
        assert!(Store::open(&p).is_err());
        assert_eq!(sha(&p), vec![0x42u8; 4096]);
    }

    #[test]
    fn failed_migration_leaves_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(MIGRATIONS[0].sql).unwrap();
        // A table the next migration wants to create already exists: the migration must fail
        // and roll back as a whole.
        c.execute_batch("CREATE TABLE images (x INTEGER);").unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        drop(c);
        let err = Store::open(&p).err().expect("migration must fail");
        assert!(err.to_string().contains("images_vms"), "{err}");
        assert_eq!(check(&p).unwrap(), status_for(1));
    }

    #[test]
    fn snapshot_is_a_faithful_copy_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let s = Store::open(&p).unwrap();
        s.set_meta("k", "v").unwrap();
        let before = sha(&p);
        let copy = dir.path().join("s.db.pre-update");
        snapshot(&p, &copy).unwrap();
        assert_eq!(sha(&p), before, "the original is not written");
        let c = Store::open(&copy).unwrap();
        assert_eq!(c.meta("k").unwrap().as_deref(), Some("v"));
        assert_eq!(c.version().unwrap(), latest_version());
        let e = snapshot(&p, &copy).expect_err("an existing destination is refused");
        assert!(e.to_string().contains("already exists"), "{e}");
    }

    #[test]
    fn operations_survive_and_are_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let s = Store::open(&p).unwrap();
        s.insert_operation("a", "vm.create", "booting", 10).unwrap();
        s.insert_operation("b", "vm.stop", "done", 10).unwrap();
        s.update_operation("b", "done", Some(11)).unwrap();
        assert_eq!(s.interrupt_unfinished(12).unwrap(), 1);
    }
}
