#!/usr/bin/env bash
# Hostile releases and servers (lib/release.sh, release_hostile_variants): bad, foreign or
# missing signatures, expired, future-dated, malformed and replayed manifests, unsigned or
# incomplete SHA256SUMS, changed tarballs, mismatched versions, truncated, stalled and endless
# downloads, corrupt gzip, and tarballs with extra, missing, traversing, absolute, linked,
# device and directory entries; plus a host that trusts no key, and configuration files others
# could write. Each must be refused with exit 1 and a message naming the fault, without
# fetching the tarball when the metadata is already wrong, and leave every installed file
# byte-identical and no staging behind.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

cleanup() {
    local rc=$?
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

release_setup
release_require_update_cli
release_reinstall_base
base=$(release_base_version)
snapshot_install hostile-before
count=0
while IFS=$'\t' read -r name root config fetch fault what <&3; do
    overrides=()
    [ "$config" = - ] || read -r -a overrides <<<"$config"
    if [ "$name" = replayed ]; then
        # First let the host verify a newer manifest (a dry run against the good root).
        release_config good
        release_resign good
        expect_rc 0 box_exec "$BANGER" update --dry-run
        sleep 1
    fi
    release_config "$root" "${overrides[@]}"
    release_resign "$root"     # issue time: now (or the variant's own offset from now)
    mark=$(release_server_log_lines)
    t0=$EPOCHREALTIME
    run_capture box_exec "$BANGER" update
    took=$(_box_elapsed "$t0")
    expect_update_end 1 '^update failed: .+; nothing was changed$' "banger update against $name ($what)"
    line=$(last_line "$LAST_OUT")
    if ! grep -qiE -- "$fault" <<<"$line"; then
        fail "$name ($what): the refusal does not name the fault (/$fault/i)" || true
        _evidence "last line:" "$line"
        exit 1
    fi
    if [ "$fetch" = no ]; then
        expect_eq "$(release_requests_since "$mark" '\.tar\.gz')" "" "tarball requests for $name"
    fi
    snapshot_install hostile-after
    expect_same_snapshot hostile-before hostile-after "after $name ($what)"
    expect_eq "$(update_leftovers)" "" "staging or backups after $name"
    wait_update_idle 10
    count=$((count + 1))
    proved "$name ($what): exit 1 in ${took}s, '${line:0:220}'"
done 3< <(release_hostile_variants)

[ "$count" -ge 17 ] || fail "only $count hostile variants ran"
expect_install_is "$base" "after all hostile variants"
expect_rc 0 box_as "$OWNER" "$BANGER" doctor
proved "all $count hostile variants were refused naming their fault; the install stayed byte-identical, entirely v$base, and healthy"
