# shellcheck shell=bash
# shellcheck disable=SC2016 # code that runs inside the box is single-quoted on purpose
# Signed releases for the update scenarios, and a release server inside the box.
#
# Other versions of banger are built from this very source tree with BANGER_VERSION=<v> and
# cached in smoke/.cache/versions/<v>/ (keyed by the source tree). Release directories are
# then made WITHOUT banger's own release tool: GNU tar + gzip + sha256sum + openssl + python3
# (for the JSON), signed with a P-256 key made fresh for every run, so the format is checked
# by a second, independent implementation. A small HTTP server (lib/release-server.py) serves
# them on 127.0.0.1:8787 inside the box (it has a private network: loopback only), as the
# transient unit banger-release-server.service.
#
# Server roots (http://127.0.0.1:8787/<root>/manifest.json):
#   good      0.2.0, 0.3.0, 0.0.9; latest 0.2.0 (release_set_latest changes it)
#   broken    0.2.1, latest: its bangerd is a sh wrapper around the real 0.2.1 bangerd (copied
#             to /srv/banger-smoke/real/) that answers --version and --check-migrations but
#             exits 1 as a daemon, so an update to it must roll back
#   slow      0.2.0, latest, served at RELEASE_SLOW_RATE bytes/s (a job that stays in
#             "downloading" long enough to be looked at, refused or canceled)
#   hostile-* one hostile variant each (release_hostile_variants lists them)
#
# Functions
#   update_scenario_start ROOT     release_setup, release_require_update_cli,
#                                  release_reinstall_base, release_config ROOT, release_resign ROOT
#   release_setup                  all of the below that is not done yet in this run; call it
#                                  first in every update scenario (cheap once done)
#   release_require_update_cli     fail unless the binaries under test have `banger update`
#   release_build_versions         build RELEASE_VERSIONS (cached by source tree)
#   release_make_all               make every server root on the host, fresh key
#   release_publish                copy them into the box, start the server
#   release_config ROOT [K=V...]   /etc/banger/config.toml (+ trusted key) pointing at ROOT;
#                                  K=V overrides an [update] key (V is TOML; "K=" drops it);
#                                  config_mode=M / key_mode=M set the files' modes (default 0644)
#   release_unconfig               remove the config and the trusted key
#   release_set_latest ROOT V      re-sign ROOT's manifest (fresh issue time) with latest V
#   release_resign ROOT            re-sign ROOT's manifest with a fresh issue time
#   release_hostile_variants       one line per hostile variant (NAME ROOT CONFIG FETCH FAULT WHAT)
#   release_version_line V PROG    what PROG --version prints at version V
#   release_tarball_size ROOT V    bytes of ROOT's tarball for V
#   release_server_log             every request served so far (JSON lines)
#   release_requests_since N PATH_ERE   requests after line N of the log whose path matches
#   release_reinstall_base         forget the helper's update state, reinstall the binaries
#                                  under test (banger system install), wait until ready
#   install_identity               the three --version lines + install.toml's [release]
#   expect_install_is V WHAT       the install is entirely V (binaries, install.toml, Root1,
#                                  Daemon1), no staging or .previous left
#   update_leftovers               staging directory and .previous backups, if any
#   root1_prop NAME / job_prop PATH NAME / latest_job_path / wait_update_idle SECONDS
#   journal_state                  the update journal's state, or "none"
#   last_line TEXT                 the last non-empty line, without CR
#   update_job_of TEXT             the job path a `banger update` printed
#   expect_update_end RC ERE WHAT  exit status and last line of the last command
#   bg_start NAME CMD... / bg_wait NAME SECONDS   a command in the background (on the host)
#
# Versions: 0.2.0, 0.3.0 (newer), 0.0.9 (older than the 0.1.0 under test), 0.2.1 (the broken
# release's real binaries), 0.2.5 (binaries packed under 0.2.0's name: a version mismatch).
#
# Needs lib/box.sh, lib/assert.sh, lib/banger.sh.

RELEASE_VERSIONS=(0.2.0 0.3.0 0.0.9 0.2.1 0.2.5 0.2.2 0.2.3 0.2.4)
# Extra build environment per version. 0.2.2's bangerd has one more store migration, so an
# update to it migrates the store (and its rollback must restore the copy taken before).
declare -A RELEASE_BUILD_ENV=(
    [0.2.2]="BANGER_TEST_MIGRATION=CREATE TABLE smoke_migrated (x INTEGER);"
)
RELEASE_TARGET=x86_64-unknown-linux-gnu
RELEASE_PROGRAMS=(banger bangerd bangerd-root)
RELEASE_CACHE=${RELEASE_CACHE:-$SMOKE_REPO/smoke/.cache/versions}
RELEASE_TARGET_DIR=${RELEASE_TARGET_DIR:-$SMOKE_REPO/target/smoke}
RELEASE_WORK=${RELEASE_WORK:-$SMOKE_DIR/release}          # host: keys/, www/<root>/
RELEASE_BOX=/srv/banger-smoke                             # box: releases/, real/, server
RELEASE_PORT=8787
RELEASE_URL=http://127.0.0.1:$RELEASE_PORT
RELEASE_UNIT=banger-release-server.service
RELEASE_SLOW_RATE=${RELEASE_SLOW_RATE:-150000}
BANGER_CONFIG=/etc/banger/config.toml
RELEASE_BOX_KEY=/etc/banger/keys/smoke-release.pub.pem
BANGER_ROOT_STATE=/var/lib/banger-root
ROOT1_DEST=(org.banger.Root1 /org/banger/Root1)

_release_log() { printf '  [release %s] %s\n' "$(date +%T)" "$*"; }

# ---------------------------------------------------------------------------------------------
# Building other versions

# A hash of the source tree the binaries are built from (not smoke/, docs/ or Markdown files).
_release_tree_key() {
    (
        cd "$SMOKE_REPO" || exit 1
        if git rev-parse HEAD >/dev/null 2>&1; then
            local paths=(. ':(exclude)smoke' ':(exclude)docs' ':(exclude)*.md')
            {
                git rev-parse HEAD
                git diff HEAD --binary -- "${paths[@]}"
                git ls-files --others --exclude-standard -z -- "${paths[@]}" | xargs -0r sha256sum
            } | sha256sum | cut -d' ' -f1
        else
            find Cargo.toml Cargo.lock banger bangerd bangerd-root dbus polkit systemd -type f \
                -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
        fi
    )
}

_release_cached() {   # _release_cached VERSION KEY
    local d=$RELEASE_CACHE/$1 p
    [ "$(cat "$d/source-key" 2>/dev/null)" = "$2" ] || return 1
    for p in "${RELEASE_PROGRAMS[@]}"; do [ -x "$d/$p" ] || return 1; done
}

release_build_versions() {
    local key v p out
    key=$(_release_tree_key) || { fail "cannot compute the source tree key of $SMOKE_REPO"; return 1; }
    for v in "${RELEASE_VERSIONS[@]}"; do
        local extra=${RELEASE_BUILD_ENV[$v]:-}
        _release_cached "$v" "$key${extra:+ $extra}" && continue
        _release_log "building banger $v: ${extra:+$extra }BANGER_VERSION=$v cargo build --release --locked --target-dir $RELEASE_TARGET_DIR"
        local t0=$SECONDS
        # Without the release profile's LTO: these builds exercise the update's machinery, not
        # the code's size, and LTO would add about a minute to each of them.
        (cd "$SMOKE_REPO" && env -u BANGER_COMMIT -u BANGER_BUILT_AT -u BANGER_TEST_MIGRATION \
            CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
            BANGER_VERSION="$v" ${extra:+"$extra"} \
            cargo build --release --locked --quiet --target-dir "$RELEASE_TARGET_DIR" \
            --bin banger --bin bangerd --bin bangerd-root) ||
            { fail "building banger $v failed"; return 1; }
        rm -rf "$RELEASE_CACHE/$v.tmp"
        mkdir -p "$RELEASE_CACHE/$v.tmp"
        for p in "${RELEASE_PROGRAMS[@]}"; do
            cp "$RELEASE_TARGET_DIR/release/$p" "$RELEASE_CACHE/$v.tmp/$p"
            out=$("$RELEASE_CACHE/$v.tmp/$p" --version) ||
                { fail "$p $v --version failed"; return 1; }
            [[ $out == "$p v$v (commit "* ]] ||
                { fail "the $v build of $p reports '$out'"; return 1; }
        done
        printf '%s\n' "$key${extra:+ $extra}" >"$RELEASE_CACHE/$v.tmp/source-key"
        rm -rf "${RELEASE_CACHE:?}/$v"
        mv "$RELEASE_CACHE/$v.tmp" "$RELEASE_CACHE/$v"
        _release_log "banger $v built in $((SECONDS - t0))s: $("$RELEASE_CACHE/$v/banger" --version)"
    done
}

# ---------------------------------------------------------------------------------------------
# Making releases with openssl, tar, gzip, sha256sum and python3

_release_tarball_name() { printf 'banger-%s-%s.tar.gz' "$1" "$RELEASE_TARGET"; }

_rfc3339() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

# _release_sign FILE KEYNAME: FILE.sig = base64 (one line) of the DER ECDSA-P256/SHA-256 signature.
_release_sign() {
    openssl dgst -sha256 -sign "$RELEASE_WORK/keys/$2.pem" "$1" | base64 -w0 >"$1.sig"
}

# _release_tar SRCDIR OUT: the three programs of SRCDIR, as a release tarball (GNU tar + gzip).
_release_tar() {
    local mtime
    mtime=$(stat -c %Y "$1/banger")
    tar --create --format=ustar --owner=0 --group=0 --numeric-owner --mode=0755 \
        --mtime="@$mtime" -C "$1" "${RELEASE_PROGRAMS[@]}" | gzip -9 -n >"$2"
}

# _release_add ROOT VERSION SRCDIR: ROOT/VERSION/{tarball, SHA256SUMS, SHA256SUMS.sig}.
_release_add() {
    local root=$RELEASE_WORK/www/$1 v=$2 name
    name=$(_release_tarball_name "$v")
    mkdir -p "$root/$v"
    _release_tar "$3" "$root/$v/$name"
    _release_sums "$1" "$v"
}

# _release_sums ROOT VERSION [KEYNAME]: (re)write and sign SHA256SUMS for the tarball there.
_release_sums() {
    local dir=$RELEASE_WORK/www/$1/$2 name
    name=$(_release_tarball_name "$2")
    (cd "$dir" && sha256sum "$name" >SHA256SUMS)
    _release_sign "$dir/SHA256SUMS" "${3:-release}"
}

# _release_conf ROOT KEY=VALUE...: how ROOT's manifest is made (www/ROOT/.manifest.conf):
#   latest=V  key=release|other  issued=OFFSET  expires=OFFSET (seconds from signing time)
#   sig=ok|flip|none  extra=FIELD (an unknown field in the signed JSON)
_release_conf() {
    local root=$1 conf
    shift
    conf=$RELEASE_WORK/www/$root/.manifest.conf
    mkdir -p "$(dirname "$conf")"
    [ -f "$conf" ] || printf '%s\n' key=release issued=-60 expires=2592000 sig=ok >"$conf"
    local kv
    for kv in "$@"; do
        sed -i "/^${kv%%=*}=/d" "$conf"
        printf '%s\n' "$kv" >>"$conf"
    done
}

# _release_manifest ROOT: manifest.json from the version directories in ROOT, signed as its
# .manifest.conf says.
_release_manifest() {
    local root=$RELEASE_WORK/www/$1 latest="" key=release issued=-60 expires=2592000 sig=ok
    local extra="" k v now target=$RELEASE_TARGET
    while IFS='=' read -r k v; do
        case $k in
            latest | key | issued | expires | sig | extra | target) printf -v "$k" '%s' "$v" ;;
        esac
    done <"$root/.manifest.conf"
    now=$(date +%s)
    python3 - "$root" "$latest" "$(_rfc3339 $((now + issued)))" "$(_rfc3339 $((now + expires)))" \
        "$extra" "$target" "$RELEASE_TARGET" <<'EOF' || return 1
import json, os, re, sys
root, latest, issued, expires, extra, target, built_for = sys.argv[1:8]
def key(v):
    core, _, pre = v.partition("-")
    return tuple(int(x) for x in core.split(".")), pre == "", pre
versions = [v for v in os.listdir(root)
            if re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", v) and os.path.isdir(os.path.join(root, v))]
releases = []
for v in sorted(versions, key=key, reverse=True):
    name = f"banger-{v}-{target}.tar.gz"
    releases.append({
        "version": v, "target": target, "tarball": f"{v}/{name}",
        "sums": f"{v}/SHA256SUMS", "sums_sig": f"{v}/SHA256SUMS.sig",
        "size": os.path.getsize(os.path.join(root, v, f"banger-{v}-{built_for}.tar.gz")),
    })
m = {"schema": 1, "product": "banger", "channel": "stable", "issued_at": issued,
     "expires_at": expires, "latest": latest, "releases": releases}
if extra:
    m[extra] = "https://mirror.invalid/"
with open(os.path.join(root, "manifest.json"), "w") as f:
    json.dump(m, f, indent=2)
    f.write("\n")
EOF
    rm -f "$root/manifest.json.sig"
    case $sig in
        none) ;;
        ok) _release_sign "$root/manifest.json" "$key" ;;
        flip)
            # Flip the last byte of the DER signature (inside S): still DER, no longer valid.
            _release_sign "$root/manifest.json" "$key"
            python3 -c '
import base64, sys
p = sys.argv[1]
der = bytearray(base64.b64decode(open(p).read()))
der[-1] ^= 0x01
open(p, "w").write(base64.b64encode(bytes(der)).decode())' "$root/manifest.json.sig"
            ;;
    esac
}

# _release_craft OUT SPEC SRCDIR: a tarball with exactly the entries SPEC lists, written with
# python3's tarfile (GNU tar would refuse to write most of these). SPEC is space-separated
# NAME:KIND with KIND file (content: SRCDIR/NAME, or a few bytes), symlink=TARGET,
# hardlink=TARGET, chardev, dir.
_release_craft() {
    python3 - "$1" "$3" "$2" <<'EOF'
import io, os, sys, tarfile, time
out, src, spec = sys.argv[1], sys.argv[2], sys.argv[3].split()
with tarfile.open(out, "w:gz", format=tarfile.GNU_FORMAT, compresslevel=1) as t:
    for item in spec:
        name, _, kind = item.partition(":")
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid, info.mtime = 0o755, 0, 0, int(time.time())
        data = None
        if kind == "file":
            path = os.path.join(src, os.path.basename(name))
            data = open(path, "rb").read() if os.path.isfile(path) else b"#!/bin/sh\nexit 0\n"
            info.size = len(data)
        elif kind.startswith("symlink="):
            info.type, info.linkname = tarfile.SYMTYPE, kind.split("=", 1)[1]
        elif kind.startswith("hardlink="):
            info.type, info.linkname = tarfile.LNKTYPE, kind.split("=", 1)[1]
        elif kind == "chardev":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "dir":
            info.type = tarfile.DIRTYPE
        else:
            sys.exit("unknown entry kind " + kind)
        t.addfile(info, io.BytesIO(data) if data is not None else None)
EOF
}

# The hostile variants, one line each, tab-separated:
#   NAME   the variant
#   ROOT   the server root to point the config at (hostile-NAME, or good)
#   CONFIG release_config overrides ("-" for none)
#   FETCH  "no" if the tarball must not even be requested, else "any"
#   FAULT  an ERE (matched case-insensitively) the refusal must match: it names the fault
#   WHAT   what is hostile about it
release_hostile_variants() {
    local size
    size=$(release_tarball_size hostile-oversize 0.2.0) || return 1
    local cap=$((size + 1048576))
    awk -F' [|] ' 'NF { for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i)
        print $1 "\t" $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6 }' <<EOF
bad-signature    | hostile-bad-signature    | -                   | no  | manifest.*signature | manifest.json.sig with one byte of the signature flipped
wrong-key        | hostile-wrong-key        | -                   | no  | manifest.*signature | manifest signed by a key the host does not trust
unsigned         | hostile-unsigned         | -                   | no  | manifest\.json\.sig | no manifest.json.sig on the server
expired          | hostile-expired          | -                   | no  | expired | manifest expired yesterday
issued-in-future | hostile-issued-in-future | -                   | no  | future | manifest issued tomorrow
unknown-field    | hostile-unknown-field    | -                   | no  | unknown field | signed manifest with an unknown field
replayed         | hostile-replayed         | -                   | no  | replay | an older signed manifest after this host verified a newer one
other-target     | hostile-other-target     | -                   | no  | no release at all for this host's target x86_64-unknown-linux-gnu \(its releases are for: aarch64-unknown-linux-gnu\) | releases for another target only
sums-wrong-key   | hostile-sums-wrong-key   | -                   | no  | SHA256SUMS.*signature | SHA256SUMS signed by an untrusted key
sums-unsigned    | hostile-sums-unsigned    | -                   | no  | SHA256SUMS\.sig | no SHA256SUMS.sig on the server
not-in-sums      | hostile-not-in-sums      | -                   | no  | does not list | SHA256SUMS does not list the tarball
hash-mismatch    | hostile-hash-mismatch    | -                   | any | does not match SHA256SUMS|sha-?256 mismatch|checksum | tarball changed after SHA256SUMS was signed (same size)
version-mismatch | hostile-version-mismatch | -                   | any | 0\.2\.5 | the 0.2.0 tarball's binaries report 0.2.5
truncated        | hostile-truncated        | -                   | any | truncat | the server closes the connection half way
stall            | hostile-stall            | read_timeout_secs=3 | any | stall|timed out | the server sends headers, then nothing (read timeout 3 s)
oversize         | hostile-oversize         | max_download_bytes=$cap | any | larger than|exceed|too large | body 16 MiB larger than the manifest size and max_download_bytes
bad-gzip         | hostile-bad-gzip         | -                   | any | gzip|deflate | tarball with a corrupt deflate stream
extra-entry      | hostile-extra-entry      | -                   | any | evil\.sh | a fourth file next to the three programs
missing-entry    | hostile-missing-entry    | -                   | any | missing.*bangerd-root | bangerd-root missing
path-traversal   | hostile-path-traversal   | -                   | any | \.\./evil | an entry named ../evil
absolute-path    | hostile-absolute-path    | -                   | any | /tmp/evil | an entry named /tmp/evil
symlink-entry    | hostile-symlink-entry    | -                   | any | symbolic link|symlink | bangerd-root is a symlink to /bin/sh
hardlink-entry   | hostile-hardlink-entry   | -                   | any | hard ?link | bangerd-root is a hard link to /etc/shadow
device-entry     | hostile-device-entry     | -                   | any | device | bangerd-root is a character device (1,3)
directory-entry  | hostile-directory-entry  | -                   | any | director | a directory entry bin/ before the programs
dot-slash        | hostile-dot-slash        | -                   | any | \./banger | entries named ./banger, ./bangerd, ./bangerd-root
placeholder      | good                     | trusted_key_files=  | no  | placeholder | no trusted_key_files: only the embedded placeholder key
config-writable  | good                     | config_mode=0666    | no  | config\.toml | /etc/banger/config.toml is world-writable
key-writable     | good                     | key_mode=0666       | no  | smoke-release\.pub\.pem | the trusted key file is world-writable
EOF
}

release_make_all() {
    local w=$RELEASE_WORK v c k
    rm -rf "$w"
    mkdir -p "$w/keys" "$w/www"
    for k in release other; do
        if ! openssl ecparam -name prime256v1 -genkey -noout -out "$w/keys/$k.pem" 2>/dev/null ||
            ! openssl ec -in "$w/keys/$k.pem" -pubout -out "$w/keys/$k.pub.pem" 2>/dev/null; then
            fail "openssl could not make a P-256 key pair"
            return 1
        fi
    done
    c=$RELEASE_CACHE

    # good: three releases; broken: 0.2.1 with a bangerd that cannot run as a daemon
    for v in 0.2.0 0.3.0 0.0.9; do _release_add good "$v" "$c/$v"; done
    _release_conf good latest=0.2.0
    _release_manifest good

    mkdir -p "$w/broken-bin"
    cp "$c/0.2.1/banger" "$c/0.2.1/bangerd-root" "$w/broken-bin/"
    cat >"$w/broken-bin/bangerd" <<EOF
#!/bin/sh
# Smoke-test fixture (release 0.2.1 "broken"): answers like the real 0.2.1 bangerd for the
# update's sanity checks, but cannot run as the daemon, so an update to it must roll back.
case "\${1-}" in
--version | --check-migrations) exec $RELEASE_BOX/real/bangerd-0.2.1 "\$@" ;;
esac
echo "bangerd 0.2.1 (smoke fixture): this build cannot start" >&2
exit 1
EOF
    chmod 0755 "$w/broken-bin/bangerd"
    touch -r "$c/0.2.1/banger" "$w/broken-bin/bangerd"
    _release_add broken 0.2.1 "$w/broken-bin"
    _release_conf broken latest=0.2.1
    _release_manifest broken

    # migrating: 0.2.2 migrates the store, and its doctor fails, so the update rolls back after
    # the new bangerd has migrated the store.
    _release_fixture_bin migrating 0.2.2 banger "--version | version" \
        'echo "FAIL smoke fixture: the 0.2.2 doctor fails on purpose, after the store was migrated"; exit 1' \
        'release 0.2.2 "migrating": its bangerd migrates the store; its doctor always fails'
    _release_add migrating 0.2.2 "$w/migrating-bin"
    _release_conf migrating latest=0.2.2
    _release_manifest migrating

    # helper-broken: 0.2.3's bangerd-root answers --version and nothing else (it cannot start).
    _release_fixture_bin helper-broken 0.2.3 bangerd-root "--version" \
        'echo "bangerd-root 0.2.3 (smoke fixture): this build cannot start" >&2; exit 1' \
        'release 0.2.3 "helper-broken": its bangerd-root exits 1 unless asked --version'
    _release_add helper-broken 0.2.3 "$w/helper-broken-bin"
    _release_conf helper-broken latest=0.2.3
    _release_manifest helper-broken

    # helper-unstartable: 0.2.4's bangerd-root passes --version and its self-test, but cannot run
    # as the service: only the recovery unit can undo an update to it.
    _release_fixture_bin helper-unstartable 0.2.4 bangerd-root "--version | --self-test" \
        'echo "bangerd-root 0.2.4 (smoke fixture): this build cannot run as the service" >&2; exit 1' \
        'release 0.2.4 "helper-unstartable": its bangerd-root passes the self-test but cannot run as the service'
    _release_add helper-unstartable 0.2.4 "$w/helper-unstartable-bin"
    _release_conf helper-unstartable latest=0.2.4
    _release_manifest helper-unstartable

    mkdir -p "$w/www/slow"
    cp -a "$w/www/good/0.2.0" "$w/www/slow/0.2.0"
    _release_conf slow latest=0.2.0
    _release_manifest slow
    _release_behaviour_file slow "{\"0.2.0/$(_release_tarball_name 0.2.0)\": \"slow:$RELEASE_SLOW_RATE\"}"

    release_make_hostile || return 1
    sha256sum <"$w/keys/release.pub.pem" | cut -d' ' -f1 >"$w/ready"
}

# _release_fixture_bin NAME VERSION PROGRAM CASES OTHERWISE WHAT: $RELEASE_WORK/NAME-bin holds
# VERSION's three programs, PROGRAM replaced by a sh wrapper: when its first argument matches
# the case pattern CASES it runs the real PROGRAM (copied into the box as real/PROGRAM-VERSION by
# release_publish), otherwise it runs the shell code OTHERWISE. WHAT says what the fixture is.
_release_fixture_bin() {
    local name=$1 v=$2 prog=$3 cases=$4 otherwise=$5 what=$6 d=$RELEASE_WORK/$1-bin p
    mkdir -p "$d"
    for p in "${RELEASE_PROGRAMS[@]}"; do cp "$RELEASE_CACHE/$v/$p" "$d/"; done
    {
        printf '#!/bin/sh\n# Smoke-test fixture (%s).\n' "$what"
        printf 'case "${1-}" in\n%s) exec %s "$@" ;;\nesac\n%s\n' \
            "$cases" "$RELEASE_BOX/real/$prog-$v" "$otherwise"
    } >"$d/$prog"
    chmod 0755 "$d/$prog"
    touch -r "$RELEASE_CACHE/$v/banger" "$d/$prog"
}

_release_behaviour_file() { printf '%s\n' "$2" >"$RELEASE_WORK/www/$1/behaviour.json"; }

release_make_hostile() {
    local c=$RELEASE_CACHE name tb size r
    name=$(_release_tarball_name 0.2.0)
    size=$(stat -c %s "$RELEASE_WORK/www/good/0.2.0/$name")
    h() {   # h VARIANT: hostile-VARIANT with a copy of the good 0.2.0 release to start from
        r=hostile-$1
        mkdir -p "$RELEASE_WORK/www/$r"
        cp -a "$RELEASE_WORK/www/good/0.2.0" "$RELEASE_WORK/www/$r/0.2.0"
        tb=$RELEASE_WORK/www/$r/0.2.0/$name
        _release_conf "$r" latest=0.2.0
    }
    craft() {   # craft VARIANT SPEC: hostile-VARIANT whose tarball has exactly SPEC's entries
        h "$1"
        _release_craft "$tb" "$2" "$c/0.2.0"
        _release_sums "$r" 0.2.0
    }
    h bad-signature && _release_conf "$r" sig=flip
    h wrong-key && _release_conf "$r" key=other
    h unsigned && _release_conf "$r" sig=none
    h expired && _release_conf "$r" issued=-172800 expires=-86400
    h issued-in-future && _release_conf "$r" issued=86400 expires=2678400
    h unknown-field && _release_conf "$r" extra=mirror
    h replayed && _release_conf "$r" issued=-3600
    h other-target && _release_conf "$r" target=aarch64-unknown-linux-gnu
    h sums-wrong-key && _release_sums "$r" 0.2.0 other
    h sums-unsigned && rm "$RELEASE_WORK/www/$r/0.2.0/SHA256SUMS.sig"
    h not-in-sums && {
        sed -i "s/  $name\$/  banger-0.2.0-$RELEASE_TARGET.tar.xz/" "$RELEASE_WORK/www/$r/0.2.0/SHA256SUMS"
        _release_sign "$RELEASE_WORK/www/$r/0.2.0/SHA256SUMS" release
    }
    h hash-mismatch && python3 -c '
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0xff
open(p, "wb").write(b)' "$tb"
    h version-mismatch && { _release_tar "$c/0.2.5" "$tb"; _release_sums "$r" 0.2.0; }
    h truncated && _release_behaviour_file "$r" "{\"0.2.0/$name\": \"truncate:$((size / 2))\"}"
    h stall && _release_behaviour_file "$r" "{\"0.2.0/$name\": \"stall\"}"
    h oversize && _release_behaviour_file "$r" "{\"0.2.0/$name\": \"oversize:$((size + 16 * 1048576))\"}"
    h bad-gzip && {
        python3 -c '
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
for i in range(len(b) // 3, len(b) // 3 + 4096):
    b[i] = (b[i] * 7 + 13) & 0xff
open(p, "wb").write(b)' "$tb"
        _release_sums "$r" 0.2.0
    }
    craft extra-entry "banger:file bangerd:file bangerd-root:file evil.sh:file"
    craft missing-entry "banger:file bangerd:file"
    craft path-traversal "banger:file bangerd:file bangerd-root:file ../evil:file"
    craft absolute-path "banger:file bangerd:file bangerd-root:file /tmp/evil:file"
    craft symlink-entry "banger:file bangerd:file bangerd-root:symlink=/bin/sh"
    craft hardlink-entry "banger:file bangerd:file bangerd-root:hardlink=/etc/shadow"
    craft device-entry "banger:file bangerd:file bangerd-root:chardev"
    craft directory-entry "bin/:dir banger:file bangerd:file bangerd-root:file"
    craft dot-slash "./banger:file ./bangerd:file ./bangerd-root:file"
    for r in "$RELEASE_WORK"/www/hostile-*; do
        _release_manifest "$(basename "$r")" || return 1
    done
    unset -f h craft
}

# ---------------------------------------------------------------------------------------------
# Publishing into the box and serving

# _release_push ROOT FILE...: copy files of a host root into the served tree in the box (a
# file missing on the host is removed in the box).
_release_push() {
    local root=$1 f
    shift
    for f in "$@"; do
        if [ -f "$RELEASE_WORK/www/$root/$f" ]; then
            box_exec sh -c 'cat >"$1.tmp" && mv "$1.tmp" "$1"' push \
                "$RELEASE_BOX/releases/$root/$f" <"$RELEASE_WORK/www/$root/$f" || return 1
        else
            box_exec rm -f "$RELEASE_BOX/releases/$root/$f" || return 1
        fi
    done
}

release_server_up() {
    box_exec python3 -c '
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$RELEASE_URL/good/manifest.json"
}

release_publish() {
    box_exec rm -rf "$RELEASE_BOX/releases" "$RELEASE_BOX/ready" &&
        box_exec mkdir -p "$RELEASE_BOX/releases" "$RELEASE_BOX/real" || return 1
    tar -C "$RELEASE_WORK/www" --exclude=.manifest.conf -cf - . |
        box_exec tar -C "$RELEASE_BOX/releases" --no-same-owner -xf - ||
        { fail "could not copy the release roots into the box"; return 1; }
    local real
    for real in bangerd-0.2.1 banger-0.2.2 bangerd-root-0.2.3 bangerd-root-0.2.4; do
        box_exec sh -c 'cat >"$1" && chmod 0755 "$1"' real "$RELEASE_BOX/real/$real" \
            <"$RELEASE_CACHE/${real##*-}/${real%-*}" || return 1
    done
    box_exec sh -c 'cat >"$1"' server "$RELEASE_BOX/release-server.py" \
        <"$SMOKE_LIB/release-server.py" || return 1
    if [ "$(unit_state "$RELEASE_UNIT")" != active ]; then
        box_exec systemctl reset-failed "$RELEASE_UNIT" 2>/dev/null || true
        box_exec systemd-run --quiet --unit="$RELEASE_UNIT" --collect \
            --description="banger smoke release server" \
            python3 "$RELEASE_BOX/release-server.py" --dir "$RELEASE_BOX/releases" \
            --port "$RELEASE_PORT" --log "$RELEASE_BOX/server.log" ||
            { fail "could not start $RELEASE_UNIT"; return 1; }
    fi
    wait_for 15 "the release server to answer on $RELEASE_URL" release_server_up ||
        { show_journal "$RELEASE_UNIT"; return 1; }
    box_exec sh -c 'cat >"$1"' ready "$RELEASE_BOX/ready" <"$RELEASE_WORK/ready"
}

release_setup() {
    local have=""
    if [ -f "$RELEASE_WORK/ready" ]; then
        have=$(box_exec cat "$RELEASE_BOX/ready" 2>/dev/null || true)
    fi
    if [ -n "$have" ] && [ "$have" = "$(cat "$RELEASE_WORK/ready")" ]; then
        [ "$(unit_state "$RELEASE_UNIT")" = active ] || release_publish || return 1
        return 0
    fi
    release_build_versions || return 1
    _release_log "making the release roots in $RELEASE_WORK/www (fresh P-256 key)"
    release_make_all || { fail "making the release roots failed"; return 1; }
    release_publish || return 1
    _release_log "serving $(find "$RELEASE_WORK/www" -mindepth 1 -maxdepth 1 -type d | wc -l) roots on $RELEASE_URL"
}

# update_scenario_start ROOT: the usual start of an update scenario: releases ready and served,
# `banger update` present, the base version freshly installed, the box pointed at ROOT whose
# manifest is re-signed now (so it is the newest this host has seen).
update_scenario_start() {
    local root=${1:?update_scenario_start ROOT}
    release_setup
    release_require_update_cli
    release_reinstall_base
    release_config "$root"
    release_resign "$root"
}

release_require_update_cli() {
    run_capture box_exec "$BOX_BIN/banger" update --help
    [ "$LAST_RC" = 0 ] && return 0
    fail "the binaries under test have no working 'banger update' (banger update --help exits $LAST_RC)" || true
    _evidence "output:" "$LAST_OUT"
    return 1
}

release_set_latest() {
    _release_conf "${1:?release_set_latest ROOT VERSION}" "latest=${2:?}"
    release_resign "$1"
}

release_resign() {
    _release_manifest "${1:?release_resign ROOT}" && _release_push "$1" manifest.json manifest.json.sig
}

release_tarball_size() {
    stat -c %s "$RELEASE_WORK/www/${1:?}/${2:?}/$(_release_tarball_name "$2")"
}

release_server_log() { box_exec cat "$RELEASE_BOX/server.log" 2>/dev/null || true; }
release_server_log_lines() { release_server_log | wc -l; }

# release_requests_since N PATH_ERE: log lines after line N whose "path" matches PATH_ERE.
release_requests_since() {
    release_server_log | tail -n "+$(($1 + 1))" | grep -E "\"path\": \"[^\"]*($2)[^\"]*\"" || true
}

# ---------------------------------------------------------------------------------------------
# Pointing the box at a root

release_config() {
    local root=${1:?release_config ROOT [KEY=VALUE...]}
    shift
    local -A over=()
    local keys=(manifest_url channel trusted_key_files max_download_bytes connect_timeout_secs
        read_timeout_secs total_timeout_secs)
    local -A val=(
        [manifest_url]="\"$RELEASE_URL/$root/manifest.json\""
        [channel]='"stable"'
        [trusted_key_files]="[\"$RELEASE_BOX_KEY\"]"
        [max_download_bytes]=268435456
        [connect_timeout_secs]=5
        [read_timeout_secs]=15
        [total_timeout_secs]=600
    )
    local kv config_mode=0644 key_mode=0644
    for kv in "$@"; do
        case $kv in
            config_mode=*) config_mode=${kv#*=} ;;
            key_mode=*) key_mode=${kv#*=} ;;
            *=*) over[${kv%%=*}]=${kv#*=} ;;
            *) fail "release_config: '$kv' is not KEY=VALUE"; return 1 ;;
        esac
    done
    local text="# written by the banger smoke suite (lib/release.sh)"$'\n'"[update]"$'\n' k v
    for k in "${keys[@]}"; do
        v=${val[$k]}
        [ -n "${over[$k]+set}" ] && v=${over[$k]}
        [ -n "$v" ] && text+="$k = $v"$'\n'
    done
    box_exec sh -euc '
        install -d -m 0755 -o root -g root /etc/banger/keys
        cat >"$1.tmp"
        chown root:root "$1.tmp"; chmod "$2" "$1.tmp"; mv "$1.tmp" "$1"' config \
        "$BANGER_CONFIG" "$config_mode" <<<"$text" || return 1
    box_exec sh -euc 'cat >"$1.tmp"; chown root:root "$1.tmp"; chmod "$2" "$1.tmp"; mv "$1.tmp" "$1"' \
        key "$RELEASE_BOX_KEY" "$key_mode" <"$RELEASE_WORK/keys/release.pub.pem"
}

release_unconfig() {
    box_exec rm -f "$BANGER_CONFIG" "$RELEASE_BOX_KEY"
    box_exec rmdir /etc/banger/keys 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Observing the install and the update job

last_line() { tr -d '\r' <<<"$1" | grep -v '^[[:space:]]*$' | tail -n 1; }

root1_prop() {
    box_exec busctl --system get-property "${ROOT1_DEST[@]}" org.banger.Root1 "${1:?root1_prop NAME}"
}

job_prop() {
    box_exec busctl --system get-property org.banger.Root1 "${1:?job_prop PATH NAME}" \
        org.banger.Root1.Job "${2:?}"
}

# The job object with the highest id, or nothing.
latest_job_path() {
    box_exec busctl --system --list tree org.banger.Root1 2>/dev/null |
        grep -E '^/org/banger/Root1/job/[0-9]+$' | sort -t/ -k5,5n | tail -n 1 || true
}

is_update_idle() {
    local state job
    state=$(root1_prop UpdateState 2>&1) && job=$(root1_prop ActiveJob 2>&1)
    echo "UpdateState $state, ActiveJob $job"
    [ "$state" = 's "idle"' ] && [ "$job" = 'o "/"' ]
}
wait_update_idle() { wait_for "${1:-60}" "Root1 UpdateState idle, ActiveJob /" is_update_idle; }

# Staging and backups an update leaves only while it runs.
update_leftovers() {
    box_exec sh -c 'ls -d "$1/lib/banger/.staging" "$1"/lib/banger/bin/*.previous \
        /etc/banger/*.previous /etc/banger/.install.toml.* 2>/dev/null || true' \
        leftovers "$BANGER_PREFIX"
}

# release_version_line V PROGRAM: the --version line PROGRAM prints at V. The version of the
# binaries under test (RELEASE_BASE) is read from them in the box, the others from the cache.
release_version_line() {
    local v=${1:?} p=${2:?}
    if [ "$v" = "$(release_base_version)" ]; then
        box_exec "$BOX_BIN/$p" --version
    else
        "$RELEASE_CACHE/$v/$p" --version
    fi
}

release_base_version() {
    if [ -z "${RELEASE_BASE:-}" ]; then
        RELEASE_BASE=$(box_exec "$BOX_BIN/banger" --version | sed -E 's/^banger v([^ ]+) .*/\1/')
    fi
    printf '%s\n' "$RELEASE_BASE"
}

# The installed identity: one line per binary (its --version) and install.toml's [release].
install_identity() {
    local p
    for p in "${RELEASE_PROGRAMS[@]}"; do
        box_exec "$BANGER_PREFIX/lib/banger/bin/$p" --version 2>&1 || echo "$p: --version failed"
    done
    box_exec python3 -c '
import sys, tomllib
r = tomllib.load(open(sys.argv[1], "rb"))["release"]
print("install.toml: v%s (commit %s, built %s)" % (r["version"], r["commit"], r["built_at"]))' \
        "$BANGER_INSTALL_TOML" 2>&1 || echo "install.toml: unreadable"
}

# What install_identity prints when everything is at V.
expected_identity() {
    local v=${1:?} p line=""
    for p in "${RELEASE_PROGRAMS[@]}"; do
        line=$(release_version_line "$v" "$p") || return 1
        printf '%s\n' "$line"
    done
    printf 'install.toml: v%s\n' "${line#bangerd-root v}"
}

expect_install_is() {
    local v=${1:?expect_install_is VERSION WHAT} what=${2:?} got want
    got=$(install_identity)
    want=$(expected_identity "$v")
    expect_eq "$got" "$want" "$what: installed binaries and install.toml (all at v$v)" || return 1
    expect_eq "$(update_leftovers)" "" "$what: staging or .previous backups left" || return 1
    wait_daemon_ready 30 || return 1
    expect_eq "$(root1_prop Version)" "s \"$v\"" "$what: Root1 Version" || return 1
    expect_eq "$(root1_prop InstalledVersion)" "s \"$v\"" "$what: Root1 InstalledVersion" || return 1
    expect_eq "$(box_exec busctl --system get-property org.banger.Daemon1 /org/banger/Daemon1 \
        org.banger.Daemon1 Version)" "s \"$v\"" "$what: Daemon1 Version"
}

# Harness reset between update scenarios: no update may be running. Forgets the helper's
# anti-rollback state and journal (each scenario builds the history it tests), then
# reinstalls the binaries under test with their own installer, as smoke/run did.
release_reinstall_base() {
    box_exec systemctl stop bangerd-root.service || true
    box_exec rm -f "$BANGER_ROOT_STATE/state.toml" "$BANGER_ROOT_STATE/update-journal.json" \
        /run/banger/update-paused || return 1
    box_exec systemctl reset-failed bangerd-root.service bangerd.service 2>/dev/null || true
    expect_rc 0 box_exec "$BOX_BIN/banger" system install --owner "$OWNER" || return 1
    wait_daemon_ready 30 || return 1
    wait_unit_state 15 bangerd-root.service active
}

# ---------------------------------------------------------------------------------------------
# Fault injection: BANGER_UPDATE_PAUSE_AT in a drop-in of the helper's unit

PAUSE_DROPIN=/run/systemd/system/bangerd-root.service.d/smoke-pause.conf
PAUSE_DROPIN_PERSISTENT=/etc/systemd/system/bangerd-root.service.d/smoke-pause.conf
PAUSED=/run/banger/update-paused

# update_pause_at POINT [persistent]: restart the helper so that updates pause at journal state
# POINT (the drop-in in /run, or in /etc with "persistent", to outlive a reboot).
update_pause_at() {
    local point=${1:?update_pause_at POINT [persistent]} dropin=$PAUSE_DROPIN
    [ "${2:-}" = persistent ] && dropin=$PAUSE_DROPIN_PERSISTENT
    box_exec sh -euc 'mkdir -p "$(dirname "$1")"
        printf "[Service]\nEnvironment=BANGER_UPDATE_PAUSE_AT=%s\n" "$2" >"$1"
        systemctl daemon-reload
        systemctl restart bangerd-root.service' pause "$dropin" "$point" || return 1
    wait_unit_state 15 bangerd-root.service active
}
# update_paused_at POINT: the helper reports that it is paused at POINT.
update_paused_at() {
    local got
    got=$(box_exec cat "$PAUSED" 2>/dev/null) || true
    echo "update-paused: ${got:-(none)}"
    [ "$got" = "$1" ]
}
# The next helper resumes instead of pausing again (the paused one stays paused).
update_drop_pause() {
    box_exec sh -c 'rm -f "$1" "$2" && systemctl daemon-reload' drop \
        "$PAUSE_DROPIN" "$PAUSE_DROPIN_PERSISTENT"
}
# The paused helper goes on.
update_resume_paused() { box_exec rm -f "$PAUSED"; }
update_unpause() { update_drop_pause && update_resume_paused; }

# The job path a `banger update` printed (text or --json), or nothing.
update_job_of() { grep -oE '/org/banger/Root1/job/[0-9]+' <<<"$1" | head -n 1 || true; }

# expect_update_end RC LINE_ERE WHAT: the last LAST_RC / last line of LAST_OUT.
expect_update_end() {
    local rc=${1:?} re=${2:?} what=${3:?expect_update_end RC LINE_ERE WHAT}
    if [ "$LAST_RC" != "$rc" ]; then
        fail "$what: expected exit status $rc, got $LAST_RC" || true
        _evidence "output:" "$LAST_OUT"
        return 1
    fi
    expect_line "$(last_line "$LAST_OUT")" "$re" "$what: last line"
}

# The journal's state ("phase" in the file), or "none".
journal_state() {
    box_exec python3 -c '
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except FileNotFoundError:
    print("none")
else:
    print(j.get("state", j.get("phase", "?")))' "$BANGER_ROOT_STATE/update-journal.json"
}
