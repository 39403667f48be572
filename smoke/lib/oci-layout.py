"""Makes the smoke suite's OCI images as OCI image layouts (pushed to the box's registry with
`skopeo copy oci:DIR:TAG docker://…`): a bootable Debian image from a root filesystem tarball,
and hostile or unbootable ones whose one layer is written here member by member.

usage: python3 oci-layout.py --out DIR [--rootfs TAR]

DIR/<name>/ is an OCI layout with the tag "1" for each image, and DIR/<name>.layers lists
its layer digests (sha256:HEX), lowest first:
  debian     --rootfs TAR as one gzip layer, then a second layer that whites out /etc/motd
             and adds /etc/banger-smoke-oci ("banger smoke oci image")          (needs --rootfs)
  trav       a member "../escape"
  link       "etc" a symbolic link to /tmp, then "etc/evil" a file below it
  dev        a character device "dev/evil"
  whiteout   a whiteout "usr/.wh.." (one that would remove usr's parent, the root)
  noboot     only /bin/sh: no init, no SSH server
  digest     a harmless layer, which the scenario alters in the registry's storage
  arm        an index whose only image is linux/arm64
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


class Layout:
    def __init__(self, path):
        self.path = path
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(os.path.join(path, "blobs", "sha256"))
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def blob(self, data, media):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", d), "wb") as f:
            f.write(data)
        return {"mediaType": media, "digest": "sha256:" + d, "size": len(data)}

    def image(self, layers, arch="amd64"):
        """layers: uncompressed tar bytes; returns the manifest's descriptor."""
        descs, diff_ids = [], []
        self.layers = descs
        for tar in layers:
            diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
            descs.append(self.blob(gzip.compress(tar, compresslevel=1, mtime=0), LAYER_GZ))
        config = {"architecture": arch, "os": "linux",
                  "config": {"Cmd": ["/sbin/init"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        cdesc = self.blob(json.dumps(config).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": descs}
        m = self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)
        m["platform"] = {"architecture": arch, "os": "linux"}
        return m

    def tag(self, desc, tag="1"):
        d = dict(desc)
        d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d]}, f)
        with open(self.path + ".layers", "w") as f:
            f.write("".join(x["digest"] + "\n" for x in self.layers))


def layer(members):
    """members: (name, type, data, linkname, mode); written raw so hostile names survive."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, link, mode in members:
            i = tarfile.TarInfo(name)
            i.type, i.size, i.linkname, i.mode = kind, len(data), link, mode
            if kind == tarfile.CHRTYPE:
                i.devmajor, i.devminor = 1, 3
            t.addfile(i, io.BytesIO(data) if data else None)
    return out.getvalue()


F, D, L, C = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE
HOSTILE = {
    "trav": [("etc", D, b"", "", 0o755), ("../escape", F, b"x", "", 0o644)],
    "link": [("etc", L, b"", "/tmp", 0o777), ("etc/evil", F, b"x", "", 0o644)],
    "dev": [("dev", D, b"", "", 0o755), ("dev/evil", C, b"", "", 0o600)],
    "whiteout": [("usr", D, b"", "", 0o755), ("usr/.wh..", F, b"", "", 0o644)],
    "noboot": [("bin", D, b"", "", 0o755), ("bin/sh", F, b"\x7fELF", "", 0o755)],
    "digest": [("etc", D, b"", "", 0o755), ("etc/served-altered", F, b"x" * 4096, "", 0o644)],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rootfs")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.rootfs:
        with open(a.rootfs, "rb") as f:
            base = f.read()
        top = layer([("etc", D, b"", "", 0o755), ("etc/.wh.motd", F, b"", "", 0o644),
                     ("etc/banger-smoke-oci", F, b"banger smoke oci image\n", "", 0o644)])
        lay = Layout(os.path.join(a.out, "debian"))
        lay.tag(lay.image([base, top]))
    for name, members in HOSTILE.items():
        lay = Layout(os.path.join(a.out, name))
        lay.tag(lay.image([layer(members)]))
    lay = Layout(os.path.join(a.out, "arm"))
    arm = lay.image([layer(HOSTILE["noboot"])], arch="arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [arm]}
    lay.tag(lay.blob(json.dumps(index).encode(), OCI_INDEX))


if __name__ == "__main__":
    main()
