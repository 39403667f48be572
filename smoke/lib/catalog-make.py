"""Makes the smoke suite's image catalogs: signed indexes (openssl), bundles and raw artefacts,
good and hostile, as server roots for release-server.py.

usage: python3 catalog-make.py --out DIR --vmlinux FILE --initrd FILE --rootfs12 IMG
                               --rootfs11 IMG

DIR gets keys/ (catalog.pem, catalog.pub.pem, other.pem: made here with openssl) and www/ROOT/
for each root below, with index.json and index.json.sig (base64 of the DER ECDSA-P256 signature
over SHA-256, as `openssl dgst -sha256 -sign` makes it) and the artefacts its entries name.

Roots:
  good       every entry below; behaviour.json makes short-1 truncated, long-1 oversized and
             slow-12 slow
  badsig     good's index signed with another key
  nosig      good's index without index.json.sig
  expired    expired an hour ago
  future     issued an hour from now
  malformed  signed, with a field the format does not have
  replay     issued a minute ago; index-old.json(.sig) is a valid index issued an hour ago

Entries of good (REF kind format: what it is):
  guest:1.0 kernel tar.gz   the smoke guest's kernel and initramfs
  tiny:1    kernel raw      a small ELF stub (looks like a kernel; the hostile entries use it)
  mini:12   rootfs tar.gz   ext4 from Debian packages (--rootfs12), kernel guest:1.0
  mini:11   rootfs raw      an older ext4 (--rootfs11), kernel guest:1.0
  slow:12   rootfs tar.gz   mini:12's bundle, served slowly, kernel tiny:1
  trav:1 link:1 dev:1 extra:1 dup:1 swell:1 digest:1 short:1 long:1 notext:1 huge:1 vast:1
            rootfs          hostile (see HOSTILE), kernel tiny:1
  notkernel:1 kernel raw    a shell script
Standard library and openssl only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time

HOUR = 3600


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def member(name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o644
    info.linkname = link
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def tar_bytes(members, gz):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            t.addfile(info, data)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


class Root:
    def __init__(self, www, name):
        self.dir = os.path.join(www, name)
        os.makedirs(self.dir, exist_ok=True)
        self.entries = []

    def add(self, name, version, kind, fmt, data, unpacked, kernel=None, sha=None, size=None,
            description="", write=True):
        url = f"{name}-{version}.{fmt}"
        if write:
            with open(os.path.join(self.dir, url), "wb") as f:
                f.write(data)
        e = {
            "name": name,
            "version": version,
            "kind": kind,
            "url": url,
            "format": fmt,
            "size": len(data) if size is None else size,
            "sha256": sha or sha256(data),
            "unpacked_size": unpacked,
            "description": description,
        }
        if kernel:
            e["kernel"] = kernel
        self.entries.append(e)
        return url


def index(entries, issued, expires, extra=None):
    ix = {
        "schema": 1,
        "product": "banger",
        "kind": "catalog",
        "issued_at": rfc3339(issued),
        "expires_at": rfc3339(expires),
        "entries": entries,
    }
    if extra:
        ix.update(extra)
    return json.dumps(ix, indent=1).encode()


def sign(key, path):
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, path],
                         check=True, capture_output=True).stdout
    import base64
    with open(path + ".sig", "wb") as f:
        f.write(base64.b64encode(sig))


def publish(root_dir, name, data, key):
    path = os.path.join(root_dir, name)
    with open(path, "wb") as f:
        f.write(data)
    if key:
        sign(key, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--vmlinux", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--rootfs12", required=True)
    ap.add_argument("--rootfs11", required=True)
    a = ap.parse_args()

    shutil.rmtree(a.out, ignore_errors=True)
    keys, www = os.path.join(a.out, "keys"), os.path.join(a.out, "www")
    os.makedirs(keys)
    key, other = os.path.join(keys, "catalog.pem"), os.path.join(keys, "other.pem")
    for k in (key, other):
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                        "-out", k], check=True)
    subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-out",
                    os.path.join(keys, "catalog.pub.pem")], check=True, capture_output=True)

    read = lambda p: open(p, "rb").read()  # noqa: E731
    vmlinux, initrd = read(a.vmlinux), read(a.initrd)
    r12, r11 = read(a.rootfs12), read(a.rootfs11)
    tiny = b"\x7fELF\x02\x01\x01" + bytes(4089)
    not_ext = b"this is not a file system\n" * 400

    good = Root(www, "good")
    good.add("guest", "1.0", "kernel", "tar.gz",
             tar_bytes([member("kernel", vmlinux), member("initrd", initrd)], True),
             len(vmlinux) + len(initrd), description="the smoke guest kernel and initramfs")
    good.add("tiny", "1", "kernel", "raw", tiny, len(tiny), description="an ELF stub")
    b12 = tar_bytes([member("rootfs", r12)], True)
    good.add("mini", "12", "rootfs", "tar.gz", b12, len(r12), kernel="guest:1.0",
             description="busybox on ext4, from Debian packages")
    good.add("mini", "11", "rootfs", "raw", r11, len(r11), kernel="guest:1.0",
             description="the previous mini")
    slow = good.add("slow", "12", "rootfs", "tar.gz", b12, len(r12), kernel="tiny:1",
                    description="mini, served slowly")

    small_ext = r12[:65536]
    hostile = {
        "trav": ("tar", [member("../rootfs", small_ext)], 1 << 20),
        "link": ("tar", [member("rootfs", kind=tarfile.SYMTYPE, link="/etc/shadow")], 1 << 20),
        "dev": ("tar", [member("rootfs", kind=tarfile.CHRTYPE)], 1 << 20),
        "extra": ("tar", [member("rootfs", small_ext), member("init", b"#!/bin/sh\n")], 1 << 20),
        "dup": ("tar", [member("rootfs", small_ext), member("rootfs", small_ext)], 1 << 20),
        "swell": ("tar", [member("rootfs", small_ext)], 4096),
    }
    for name, (fmt, members, unpacked) in hostile.items():
        good.add(name, "1", "rootfs", fmt, tar_bytes(members, False), unpacked, kernel="tiny:1")
    good.add("digest", "1", "rootfs", "tar.gz", b12, len(r12), kernel="tiny:1",
             sha=sha256(b"something else"))
    short = good.add("short", "1", "rootfs", "tar.gz", b12, len(r12), kernel="tiny:1")
    long_ = good.add("long", "1", "rootfs", "tar.gz", b12, len(r12), kernel="tiny:1")
    good.add("notext", "1", "rootfs", "raw", not_ext, len(not_ext), kernel="tiny:1")
    good.add("huge", "1", "rootfs", "raw", b"", 200 << 20, kernel="tiny:1", size=200 << 20,
             write=False)
    good.add("vast", "1", "rootfs", "tar", tar_bytes([member("rootfs", small_ext)], False),
             2 << 30, kernel="tiny:1")
    script = b"#!/bin/sh\necho hi\n"
    good.add("notkernel", "1", "kernel", "raw", script, len(script))
    with open(os.path.join(good.dir, "behaviour.json"), "w") as f:
        json.dump({short: "truncate:1000", long_: f"oversize:{2 * len(b12) + 4096}",
                   slow: "slow:40000"}, f)

    now = int(time.time())
    fresh = index(good.entries, now - 60, now + 30 * 24 * HOUR)
    publish(good.dir, "index.json", fresh, key)
    for name, data, k in [
        ("badsig", fresh, other),
        ("nosig", fresh, None),
        ("expired", index(good.entries, now - 2 * HOUR, now - HOUR), key),
        ("future", index(good.entries, now + HOUR, now + 2 * HOUR), key),
        ("malformed", index(good.entries, now - 60, now + HOUR, {"mirror": "x"}), key),
        ("replay", fresh, key),
    ]:
        publish(Root(www, name).dir, "index.json", data, k)
    publish(os.path.join(www, "replay"), "index-old.json",
            index(good.entries, now - HOUR, now + 30 * 24 * HOUR), key)


if __name__ == "__main__":
    main()
