#!/usr/bin/env bash
# Files root trusts are read only when nobody but root could have written them: the helper
# opens /etc/banger/config.toml, every trusted key file and /etc/banger/install.toml without
# following links, checks the open file (a regular file owned by root, not writable by group or
# others) and every directory above it (owned by root, not writable by group or others), and
# reads from that descriptor. A key file that is a link (even to the right key), a key or
# config in a group-writable directory, a config that is a link, and an install.toml that is a
# link are each refused naming the path, and nothing is fetched or changed.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"

LINKED_KEY=/etc/banger/keys/linked.pub.pem
cleanup() {
    local rc=$?
    box_exec sh -c 'rm -f "$1" /root/smoke-config.toml; chmod 0755 /etc/banger /etc/banger/keys 2>/dev/null
        if [ -L "$2" ]; then cp --remove-destination "$(readlink "$2")" "$2"; fi; rm -f /root/smoke-install.toml' \
        cleanup "$LINKED_KEY" "$BANGER_INSTALL_TOML" || true
    release_unconfig || true
    box_exec systemctl restart bangerd-root.service || true
    return "$rc"
}
trap cleanup EXIT

release_setup
release_require_update_cli
wait_daemon_ready 15
release_config good
release_resign good
expect_rc 0 box_exec "$BANGER" update --check
proved "with the shipped layout, banger update --check works: $(last_line "$LAST_OUT")"
snapshot_install before

# refused WHAT NEEDLE: update --check exits 1 naming NEEDLE, nothing fetched or changed.
refused() {
    local what=$1 needle=$2 mark
    mark=$(release_server_log_lines)
    expect_rc 1 box_exec "$BANGER" update --check
    expect_contains "$LAST_OUT" "$needle" "banger update --check with $what"
    expect_contains "$LAST_OUT" "refusing to trust" "banger update --check with $what"
    expect_eq "$(release_requests_since "$mark" '.')" "" "requests to the release server with $what"
    snapshot_install after
    expect_same_snapshot before after "after update --check with $what" /etc/banger
    proved "$what: refused before anything is fetched: $(grep -o '/[^ ]* is [^;]*; refusing to trust [^ ]*' <<<"$LAST_OUT" | head -n 1)"
}

# (a) The trusted key file is a symbolic link to the real key.
expect_rc 0 box_exec ln -s "$RELEASE_BOX_KEY" "$LINKED_KEY"
release_config good "trusted_key_files=[\"$LINKED_KEY\"]"
refused "a trusted key file that is a symbolic link" "$LINKED_KEY is a symbolic link"
box_exec rm -f "$LINKED_KEY"

# (b) The keys' directory is group-writable.
release_config good
expect_rc 0 box_exec chmod 0775 /etc/banger/keys
refused "a group-writable key directory" "/etc/banger/keys is writable by group or others (mode 775)"
box_exec chmod 0755 /etc/banger/keys

# (c) /etc/banger itself is group-writable (it holds the config).
expect_rc 0 box_exec chmod 0775 /etc/banger
refused "a group-writable /etc/banger" "/etc/banger is writable by group or others (mode 775)"
box_exec chmod 0755 /etc/banger

# (d) The config is a link to a root-owned copy of itself.
expect_rc 0 box_exec sh -c 'cp -p "$1" /root/smoke-config.toml && ln -sf /root/smoke-config.toml "$1"' \
    link "$BANGER_CONFIG"
refused "a config that is a symbolic link" "$BANGER_CONFIG is a symbolic link"
release_config good

# (e) install.toml is a link: the helper no longer trusts it, so it names no installed version.
expect_rc 0 box_exec sh -c 'cp -p "$1" /root/smoke-install.toml && ln -sf /root/smoke-install.toml "$1"' \
    link "$BANGER_INSTALL_TOML"
expect_rc '!0' root1_prop InstalledVersion
expect_contains "$LAST_OUT" "$BANGER_INSTALL_TOML is a symbolic link" "Root1 InstalledVersion with a linked install.toml"
proved "an install.toml that is a symbolic link is not trusted: $(grep -o "$BANGER_INSTALL_TOML is a symbolic link[^;]*; refusing to trust [^ ]*" <<<"$LAST_OUT" | head -n 1)"
