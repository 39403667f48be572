# shellcheck shell=bash
# shellcheck disable=SC2016 # code that runs inside the box is single-quoted on purpose
# A real OCI registry in the box, for the OCI scenario and the bench: Debian's docker-registry
# on loopback (port 5055; the package's own service, on 5000, is stopped), serving images
# pushed with skopeo from OCI layouts made by lib/oci-layout.py.
#
#   oci_registry_up WORK IMAGE...   make the layouts in WORK (the Debian rootfs from
#                                   smoke/guest/oci-rootfs.sh, cached), start the registry and
#                                   push smoke/IMAGE:1 for each IMAGE ("arm" with --all)
#   oci_registry_down               stop it and remove its storage
#   OCI_REG, OCI_REG_BOX            its address; where its storage and the layouts are in the box
#
# Needs lib/box.sh and lib/assert.sh.

OCI_REG=127.0.0.1:5055
OCI_REG_UNIT=banger-smoke-registry.service
OCI_REG_BOX=/srv/banger-smoke-registry

oci_registry_up() {
    local work=${1:?oci_registry_up WORK IMAGE...} rootfs img all
    shift
    rootfs=$("$SMOKE_REPO/smoke/guest/oci-rootfs.sh") || { fail "smoke/guest/oci-rootfs.sh failed"; return 1; }
    rm -rf "$work" && mkdir -p "$work" || return 1
    python3 "$SMOKE_LIB/oci-layout.py" --out "$work/layouts" --rootfs "$rootfs" || { fail "oci-layout.py failed"; return 1; }
    box_exec systemctl stop "$OCI_REG_UNIT" docker-registry.service 2>/dev/null || true
    box_exec rm -rf "$OCI_REG_BOX" && box_exec mkdir -p "$OCI_REG_BOX/layouts" "$OCI_REG_BOX/data" || return 1
    tar -C "$work/layouts" -cf - . | box_exec tar -C "$OCI_REG_BOX/layouts" --no-same-owner -xf - ||
        { fail "could not copy the layouts into the box"; return 1; }
    box_exec sh -c 'cat >"$1"' cfg "$OCI_REG_BOX/config.yml" <<EOC || return 1
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $OCI_REG_BOX/data
http:
  addr: $OCI_REG
EOC
    box_exec systemctl reset-failed "$OCI_REG_UNIT" 2>/dev/null || true
    box_exec systemd-run --quiet --unit="$OCI_REG_UNIT" --collect --description="banger smoke registry" \
        docker-registry serve "$OCI_REG_BOX/config.yml" || { fail "could not start $OCI_REG_UNIT"; return 1; }
    wait_for 15 "the registry to answer on $OCI_REG" box_exec curl -sf -o /dev/null "http://$OCI_REG/v2/" ||
        { show_journal "$OCI_REG_UNIT"; return 1; }
    for img in "$@"; do
        all=()
        [ "$img" != arm ] || all=(--all)
        box_exec skopeo copy --quiet "${all[@]}" --dest-tls-verify=false "oci:$OCI_REG_BOX/layouts/$img:1" \
            "docker://$OCI_REG/smoke/$img:1" || { fail "skopeo copy of $img failed"; return 1; }
    done
}

oci_registry_down() {
    box_exec systemctl stop "$OCI_REG_UNIT" 2>/dev/null || true
    box_exec rm -rf "$OCI_REG_BOX"
}
