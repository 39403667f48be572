-- Images (kernel, initrd, root filesystem, each with its SHA-256) and the VMs made from them.
CREATE TABLE images (
    name          TEXT PRIMARY KEY NOT NULL,
    kernel_path   TEXT NOT NULL,
    kernel_sha256 TEXT NOT NULL,
    initrd_path   TEXT,
    initrd_sha256 TEXT,
    rootfs_path   TEXT,
    rootfs_sha256 TEXT,
    created       INTEGER NOT NULL
);
CREATE TABLE vms (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT UNIQUE NOT NULL,
    image      TEXT NOT NULL REFERENCES images(name),
    cpus       INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    state      TEXT NOT NULL,
    created    INTEGER NOT NULL
);
