//! Image and VM records.

use banger_api::wire::{BackendKind, VmState};
use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

/// An imported image: files under `images/<name>/` and their hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Unique name.
    pub name: String,
    /// Stored kernel file.
    pub kernel_path: String,
    /// Its SHA-256.
    pub kernel_sha256: String,
    /// Stored initrd, if any.
    pub initrd_path: Option<String>,
    /// Its SHA-256.
    pub initrd_sha256: Option<String>,
    /// Stored root filesystem, if any.
    pub rootfs_path: Option<String>,
    /// Its SHA-256.
    pub rootfs_sha256: Option<String>,
    /// Bytes stored, all files together.
    pub bytes: u64,
    /// Import time (Unix seconds).
    pub created: i64,
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecord {
    /// 12 lowercase hex digits.
    pub id: String,
    /// Unique name (also the guest's hostname).
    pub name: String,
    /// Image name.
    pub image: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// What the owner last asked for: `running` or `stopped`.
    pub state: String,
    /// IPv4 address on the VM network.
    pub address: String,
    /// MAC address.
    pub mac: String,
    /// Whether the VM has its own root filesystem copy.
    pub has_rootfs: bool,
    /// Back end that last ran it ("" before the first start).
    pub backend: String,
    /// Pinned SSH host key ("" until first contact).
    pub host_key: String,
    /// Creation time (Unix seconds).
    pub created: i64,
}

impl VmRecord {
    /// Whether the owner last asked for the VM to run.
    pub fn wants_running(&self) -> bool {
        VmState::parse(&self.state) == Some(VmState::Running)
    }
}

const VM_COLUMNS: &str = "id, name, image, cpus, memory_mib, state, address, mac, has_rootfs, backend, host_key, created";

fn vm_from_row(r: &Row<'_>) -> rusqlite::Result<VmRecord> {
    Ok(VmRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get(2)?,
        cpus: r.get(3)?,
        memory_mib: r.get(4)?,
        state: r.get(5)?,
        address: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        mac: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
        has_rootfs: r.get(8)?,
        backend: r.get(9)?,
        host_key: r.get(10)?,
        created: r.get(11)?,
    })
}

const IMAGE_COLUMNS: &str = "name, kernel_path, kernel_sha256, initrd_path, initrd_sha256, \
                             rootfs_path, rootfs_sha256, bytes, created";

fn image_from_row(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        name: r.get(0)?,
        kernel_path: r.get(1)?,
        kernel_sha256: r.get(2)?,
        initrd_path: r.get(3)?,
        initrd_sha256: r.get(4)?,
        rootfs_path: r.get(5)?,
        rootfs_sha256: r.get(6)?,
        bytes: r.get::<_, i64>(7)? as u64,
        created: r.get(8)?,
    })
}

impl Store {
    /// The newest issue time (Unix seconds) of an index verified from catalog `url`, 0 when
    /// none was.
    pub fn catalog_newest(&self, url: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT issued_at FROM catalog_seen WHERE url = ?1",
                params![url],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|t| t.unwrap_or(0).max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Records that an index issued at `issued_at` was verified from catalog `url`; never moves
    /// the time back.
    pub fn set_catalog_newest(&self, url: &str, issued_at: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO catalog_seen (url, issued_at) VALUES (?1, ?2) \
                 ON CONFLICT(url) DO UPDATE SET issued_at = max(issued_at, excluded.issued_at)",
                params![url, issued_at as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records an imported image.
    pub fn insert_image(&self, i: &ImageRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO images ({IMAGE_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"
                ),
                params![
                    i.name,
                    i.kernel_path,
                    i.kernel_sha256,
                    i.initrd_path,
                    i.initrd_sha256,
                    i.rootfs_path,
                    i.rootfs_sha256,
                    i.bytes as i64,
                    i.created
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// One image.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE name = ?1"),
                [name],
                image_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every image, by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images ORDER BY name"))
            .map_err(|e| self.err(e))?;
        st.query_map([], image_from_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// Removes an image record; false when there was none.
    pub fn delete_image(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM images WHERE name = ?1", [name])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Records a new VM.
    pub fn insert_vm(&self, v: &VmRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO vms ({VM_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
                ),
                params![
                    v.id,
                    v.name,
                    v.image,
                    v.cpus,
                    v.memory_mib,
                    v.state,
                    v.address,
                    v.mac,
                    v.has_rootfs,
                    v.backend,
                    v.host_key,
                    v.created
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// One VM by name.
    pub fn vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {VM_COLUMNS} FROM vms WHERE name = ?1"),
                [name],
                vm_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every VM, by name.
    pub fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {VM_COLUMNS} FROM vms ORDER BY name"))
            .map_err(|e| self.err(e))?;
        st.query_map([], vm_from_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// Sets what the owner asked for ([`VmState::Running`] or [`VmState::Stopped`]) and, when
    /// given, the back end.
    pub fn set_vm_state(
        &self,
        id: &str,
        state: VmState,
        backend: Option<BackendKind>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE vms SET state = ?2, backend = COALESCE(?3, backend) WHERE id = ?1",
                params![id, state.as_str(), backend.map(BackendKind::as_str)],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Pins a host key, only if none is pinned yet; returns the key pinned afterwards.
    pub fn pin_host_key(&self, id: &str, key: &str) -> Result<String, StoreError> {
        self.conn
            .execute(
                "UPDATE vms SET host_key = ?2 WHERE id = ?1 AND host_key = ''",
                params![id, key],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .query_row("SELECT host_key FROM vms WHERE id = ?1", [id], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Removes a VM record; false when there was none.
    pub fn delete_vm(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM vms WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            kernel_path: "k".into(),
            kernel_sha256: "aa".into(),
            initrd_path: Some("i".into()),
            initrd_sha256: Some("bb".into()),
            rootfs_path: None,
            rootfs_sha256: None,
            bytes: 42,
            created: 7,
        }
    }

    fn vm(id: &str, name: &str, address: &str) -> VmRecord {
        VmRecord {
            id: id.into(),
            name: name.into(),
            image: "deb".into(),
            cpus: 1,
            memory_mib: 256,
            state: VmState::Stopped.as_str().into(),
            address: address.into(),
            mac: "52:54:00:1e:00:02".into(),
            has_rootfs: false,
            backend: String::new(),
            host_key: String::new(),
            created: 9,
        }
    }

    #[test]
    fn records_round_trip_and_constraints_hold() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.insert_image(&image("deb")).unwrap();
        assert_eq!(s.image("deb").unwrap(), Some(image("deb")));
        assert!(s.insert_image(&image("deb")).is_err(), "names are unique");
        let a = vm("000000000001", "web", "172.30.0.2");
        s.insert_vm(&a).unwrap();
        assert_eq!(s.vm("web").unwrap(), Some(a.clone()));
        assert!(
            s.insert_vm(&vm("000000000002", "web", "172.30.0.3"))
                .is_err(),
            "VM names are unique"
        );
        assert!(
            s.insert_vm(&vm("000000000003", "db", "172.30.0.2"))
                .is_err(),
            "addresses are unique"
        );
        let mut orphan = vm("000000000004", "x", "172.30.0.9");
        orphan.image = "nope".into();
        assert!(
            s.insert_vm(&orphan).is_err(),
            "a VM needs an existing image"
        );
        assert!(
            s.delete_image("deb").is_err(),
            "an image in use cannot go (foreign key)"
        );
        s.set_vm_state(&a.id, VmState::Running, Some(BackendKind::Qemu))
            .unwrap();
        let got = s.vm("web").unwrap().unwrap();
        assert_eq!(
            (got.state.as_str(), got.backend.as_str()),
            ("running", "qemu")
        );
        assert_eq!(
            s.pin_host_key(&a.id, "ssh-ed25519 AAAA1").unwrap(),
            "ssh-ed25519 AAAA1"
        );
        assert_eq!(
            s.pin_host_key(&a.id, "ssh-ed25519 BBBB2").unwrap(),
            "ssh-ed25519 AAAA1",
            "a pinned key is never replaced"
        );
        assert!(s.delete_vm(&a.id).unwrap());
        assert!(!s.delete_vm(&a.id).unwrap());
        assert!(s.delete_image("deb").unwrap());
        assert!(s.images().unwrap().is_empty());
    }
}
