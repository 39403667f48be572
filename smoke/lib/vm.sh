# shellcheck shell=bash
# shellcheck disable=SC2016 # code that runs inside the box is single-quoted on purpose
# Real QEMU guests for the VM scenarios.
#
# smoke/run builds the guest image on the host (smoke/guest/build.sh: a Debian cloud kernel and
# an initramfs with busybox and dropbear, cached in smoke/.cache/guest) and binds its directory
# read-only at $GUEST_BOX inside the box. The scenarios drive VMs only through banger, as the
# owner user in a login session.
#
# Functions
#   vm_image_ready             import the guest image as "$GUEST_IMAGE" unless it is there
#   vm_up NAME [ARGS...]       create (ARGS go to `vm create`) and start NAME; prints what
#                              `banger vm start` printed (it waits until SSH answers)
#   vm_ssh NAME CMD...         `banger vm ssh NAME -- CMD...` as the owner
#   vm_boot_id NAME            the guest's boot_id, read over SSH
#   vm_id NAME                 the VM's id (from `banger vm show --json`)
#   vm_field NAME FIELD        one field of `banger vm show --json`
#   vm_remove_all              delete every VM (stopping running ones), as the owner
#   vm_probe_start NAME        SSH into NAME every 0.5 s in the background (inside the box,
#                              plain ssh with the pinned host key, independent of banger),
#                              one line per probe in $VM_PROBE_LOG: "<time> ok <boot_id>" or
#                              "<time> FAIL <rc> <stderr>"
#   vm_probe_stop              stop the probe
#   vm_probe_summary           "N probes, F failed, boot_ids: …"
#
# Needs lib/box.sh, lib/assert.sh, lib/banger.sh.

GUEST_BOX=/opt/banger-smoke/guest
GUEST_TOOLS_BOX=/opt/banger-smoke/guest-tools    # smoke/guest (raw-boot.sh)
GUEST_IMAGE=smoke-guest
VM_PROBE_UNIT=smoke-vm-probe.service
VM_PROBE_LOG=/tmp/smoke-vm-probe.log

as_owner() { box_as "$OWNER" "$@"; }

vm_image_ready() {
    local images
    images=$(as_owner "$BOX_BIN/banger" image list --json) || return 1
    if grep -q "\"name\": *\"$GUEST_IMAGE\"" <<<"$images"; then
        return 0
    fi
    as_owner "$BOX_BIN/banger" image import "$GUEST_IMAGE" \
        --kernel "$GUEST_BOX/vmlinux" --initrd "$GUEST_BOX/initramfs.cpio.gz"
}

vm_up() {
    local name=${1:?vm_up NAME}
    shift
    vm_image_ready >/dev/null || return 1
    as_owner "$BOX_BIN/banger" vm create "$name" --image "$GUEST_IMAGE" "$@" >/dev/null || return 1
    as_owner "$BOX_BIN/banger" vm start "$name"
}

vm_ssh() {
    local name=${1:?vm_ssh NAME CMD...}
    shift
    as_owner "$BOX_BIN/banger" vm ssh "$name" -- "$@"
}

vm_boot_id() { vm_ssh "${1:?vm_boot_id NAME}" cat /proc/sys/kernel/random/boot_id | tr -d '\r\n'; }

vm_field() {
    as_owner "$BOX_BIN/banger" vm show "${1:?vm_field NAME FIELD}" --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "${2:?FIELD}"
}

vm_id() { vm_field "${1:?vm_id NAME}" id; }

vm_remove_all() {
    local names
    names=$(as_owner "$BOX_BIN/banger" vm list --json 2>/dev/null |
        python3 -c 'import json, sys; [print(v["name"]) for v in json.load(sys.stdin)]') || return 0
    local n
    for n in $names; do
        as_owner "$BOX_BIN/banger" vm rm --force "$n" >/dev/null 2>&1 || true
    done
}

# Every VM and the guest image gone: what a scenario that imports the image itself starts from,
# and what one that only borrowed it leaves behind.
vm_remove_all_and_image() {
    vm_remove_all
    as_owner "$BOX_BIN/banger" image rm "$GUEST_IMAGE" >/dev/null 2>&1 || true
}

vm_probe_start() {
    local name=${1:?vm_probe_start NAME} address key
    address=$(vm_field "$name" address) && key=$(vm_field "$name" host_key) || return 1
    [ -n "$key" ] || fail "vm_probe_start: VM $name has no pinned host key yet" || return 1
    # Plain ssh with the pinned key and the owner's VM key: the probe depends on the VM only,
    # not on banger's services, which the scenarios restart, kill and update meanwhile.
    box_exec sh -c 'printf "%s %s\n" "$1" "$2" >/run/smoke-probe-known-hosts; rm -f "$3"' \
        k "$address" "$key" "$VM_PROBE_LOG"
    box_exec systemd-run --quiet --unit="$VM_PROBE_UNIT" -p "User=$OWNER" \
        /bin/bash -c '
            while :; do
                t=$(date +%s.%N)
                if out=$(ssh -i /var/lib/banger/ssh/id_ed25519 -o IdentitiesOnly=yes \
                    -o UserKnownHostsFile=/run/smoke-probe-known-hosts -o GlobalKnownHostsFile=/dev/null \
                    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
                    "root@$1" cat /proc/sys/kernel/random/boot_id 2>/tmp/probe.err); then
                    echo "$t ok $out" >>"$2"
                else
                    rc=$?
                    echo "$t FAIL $rc $(tr "\n" " " </tmp/probe.err)" >>"$2"
                fi
                sleep 0.5
            done' probe "$address" "$VM_PROBE_LOG"
}

vm_probe_stop() {
    box_exec systemctl stop "$VM_PROBE_UNIT" 2>/dev/null || true
    box_exec systemctl reset-failed "$VM_PROBE_UNIT" 2>/dev/null || true
}

vm_probe_log() { box_exec cat "$VM_PROBE_LOG" 2>/dev/null || true; }

vm_probe_summary() {
    vm_probe_log | awk '
        $2 == "ok" { ok++; ids[$3] = 1 }
        $2 == "FAIL" { bad++ }
        END {
            n = 0; s = ""
            for (i in ids) { n++; s = s " " i }
            printf "%d probes, %d failed, %d distinct boot_id(s):%s\n", ok + bad, bad + 0, n, s
        }'
}

# vm_through_update ROOT RC ERE WHAT: with a VM running and probed every 0.5 s over SSH, run
# `banger update` against the release root ROOT as root; it must exit RC with a last line
# matching ERE. Afterwards the same boot_id answers, no probe failed, probes ran during the
# update, and the VM is listed as running by the (new or restored) bangerd.
# Needs lib/release.sh.
vm_through_update() {
    local root=${1:?vm_through_update ROOT RC ERE WHAT} rc=$2 ere=$3 what=$4
    update_scenario_start "$root"
    expect_rc 0 vm_up alive || return 1
    local boot_id id vmm before_probe during
    boot_id=$(vm_boot_id alive)
    id=$(vm_id alive)
    vmm=$(main_pid "banger-vm-$id.service")
    vm_probe_start alive
    probe_ok() { vm_probe_log | grep -q ' ok '; }
    wait_for 30 "the first SSH probe" probe_ok || return 1
    before_probe=$(vm_probe_log | wc -l)
    run_capture box_exec "$BANGER" update
    local out=$LAST_OUT
    expect_update_end "$rc" "$ere" "$what" || return 1
    sleep 3
    vm_probe_stop
    during=$(($(vm_probe_log | wc -l) - before_probe))
    echo "probes: $(vm_probe_summary); $during of them from the start of the update on"
    [ "$during" -ge 3 ] || fail "only $during SSH probes ran during the update" || return 1
    expect_eq "$(vm_probe_log | grep -c ' FAIL ' || true)" 0 "failed SSH probes" || {
        vm_probe_log | grep ' FAIL ' | head -5
        return 1
    }
    expect_eq "$(vm_probe_log | awk '{print $3}' | sort -u)" "$boot_id" "boot_ids the probes saw" || return 1
    expect_eq "$(main_pid "banger-vm-$id.service")" "$vmm" "the VMM's pid after the update" || return 1
    expect_eq "$(vm_boot_id alive)" "$boot_id" "boot_id after the update" || return 1
    expect_eq "$(vm_field alive state)" running "state listed after the update" || return 1
    proved "$what: '$(last_line "$out")'; VMM pid $vmm and boot_id $boot_id unchanged; $(vm_probe_summary)"
}
