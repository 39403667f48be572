#!/usr/bin/env bash
# banger's Cockpit page in a real browser: Debian's cockpit-ws and cockpit-bridge serve it on
# loopback in the box (cockpit.socket, as installed), headless Chromium driven by Selenium
# logs in through Cockpit's login page and uses it.
# 1. `banger system install` put the page where Cockpit finds it (cockpit-bridge lists it).
# 2. The owner logs in: the VMs banger created are rows; Start on one flips it to running while
#    the other's VMM is killed from a shell and its row turns failed, without a reload; the
#    console shows the guest's serial log; a VM created in the page appears, and deleting it
#    there removes its row (and the VM: banger agrees).
# 3. Another user logs in: no rows, a no-access message, and Update is refused (polkit wants an
#    administrator's password the page cannot ask for); nothing changes.
# 4. The owner (with the example polkit rule that lets the owner update without a password)
#    updates from the page to a release whose bangerd cannot start: the page shows the stages
#    and a rollback, and v0.1.0 installed again. Then to a good release: the stages show as they
#    happen, the result is "updated", v0.2.0 is installed. The VM started in the page is the
#    same VM throughout (VMM pid and boot_id unchanged).
# Screenshots of every step are saved under $SMOKE_DIR/artefacts/cockpit.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

BANGER=$BOX_BIN/banger
WORK=/tmp/smoke-cockpit
SHOTS=$SMOKE_DIR/artefacts/cockpit
OWNER_RULE=/etc/polkit-1/rules.d/49-banger-owner.rules
PAGE_DIR=$BANGER_PREFIX/share/cockpit/banger

cleanup() {
    local rc=$?
    copy_shots || true
    box_exec rm -f "$OWNER_RULE" || true
    vm_remove_all
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

copy_shots() {
    mkdir -p "$SHOTS"
    box_exec tar -C "$WORK/shots" -cf - . 2>/dev/null | tar -C "$SHOTS" -xf - 2>/dev/null || true
}

# browser USER PASSWORD PREFIX STEPS [ARGS...]: run the Selenium driver in the box as root
# (Chromium wants no sandbox there); its STEP lines are the evidence.
browser() {
    local user=$1 pass=$2 prefix=$3 steps=$4
    shift 4
    run_capture box_exec timeout 600 python3 - --user "$user" --password "$pass" \
        --shots "$WORK/shots" --prefix "$prefix" --profile "$WORK/profile-$prefix" --steps "$steps" "$@" \
        <"$SMOKE_LIB/cockpit-browser.py"
    BROWSER_OUT=$LAST_OUT
    printf '%s\n' "$BROWSER_OUT" | sed 's/^/    /'
    [ "$LAST_RC" = 0 ] || fail "the browser steps as $user ($steps) failed"
}
step_line() { grep -E "^STEP $1: ok" <<<"$BROWSER_OUT" | head -n 1; }

box_exec sh -c 'rm -rf "$1" && mkdir -p "$1/shots"' mk "$WORK"
rm -rf "$SHOTS"

# --- 1. the page is installed where Cockpit finds it
expect_rc 0 box_exec test -f "$PAGE_DIR/manifest.json"
run_capture box_exec cockpit-bridge --packages
expect_line "$LAST_OUT" '^banger[[:space:]]' "cockpit-bridge --packages" || exit 1
proved "system install put the page in $PAGE_DIR and Cockpit lists it: $(grep -E '^banger' <<<"$LAST_OUT" | tr -s ' ')"

# Cockpit as Debian installs it: cockpit.socket on port 9090 (plain HTTP is allowed from loopback).
expect_rc 0 box_exec systemctl start cockpit.socket
wait_for 30 "Cockpit's login page on 127.0.0.1:9090" \
    box_exec curl -fsS -o /dev/null http://127.0.0.1:9090/ || { show_journal cockpit.service; exit 1; }

# --- 2. the owner's VMs, live
update_scenario_start good
expect_rc 0 vm_image_ready
expect_rc 0 as_owner "$BANGER" vm create ck1 --image "$GUEST_IMAGE"
expect_rc 0 vm_up ck2
id2=$(vm_id ck2)
browser "$OWNER" "$OWNER_PASS" owner- list,start-kill,console,create-delete \
    --vms ck1,ck2 --start ck1 --killed ck2 \
    --kill-cmd "systemctl kill --signal=KILL banger-vm-$id2.service" \
    --create ck3 --image "$GUEST_IMAGE" || exit 1
expect_eq "$(vm_field ck1 state)" running "ck1's state, as banger lists it" || exit 1
expect_eq "$(vm_field ck2 state)" failed "ck2's state, as banger lists it" || exit 1
run_capture as_owner "$BANGER" vm list
expect_no_line "$LAST_OUT" '^ck3[[:space:]]' "banger vm list after the page deleted ck3" || exit 1
proved "owner: $(step_line list)"
proved "owner: $(step_line start-kill)"
proved "owner: $(step_line console)"
proved "owner: $(step_line create-delete); banger vm list agrees"

# --- 3. another user
before=$(install_identity)
browser "$OTHER" "$OTHER_PASS" other- denied || exit 1
expect_contains "$BROWSER_OUT" "administrator" "the refusal the other user saw" || exit 1
expect_eq "$(install_identity)" "$before" "the install after the other user's attempt" || exit 1
wait_update_idle 10 || exit 1
proved "other user: $(step_line denied); the install is unchanged"

# --- 4. the owner updates from the page, with the VM running
ck1_id=$(vm_id ck1)
vmm=$(main_pid "banger-vm-$ck1_id.service")
boot_id=$(vm_boot_id ck1)
[ -n "$boot_id" ] || fail "no boot_id from ck1 over SSH" || exit 1
box_exec sh -c 'sed "s/@OWNER@/$1/" "$2" >"$3"' rule "$OWNER" \
    "$BANGER_PREFIX/share/banger/49-banger-owner.rules.example" "$OWNER_RULE"
same_vm() {
    expect_eq "$(main_pid "banger-vm-$ck1_id.service")" "$vmm" "ck1's VMM pid $1" || return 1
    expect_eq "$(vm_boot_id ck1)" "$boot_id" "ck1's boot_id $1"
}
release_config broken && release_resign broken
browser "$OWNER" "$OWNER_PASS" rollback- update --start ck1 --expect-version 0.2.1 \
    --expect-result rolled-back --expect-installed 0.1.0 || exit 1
expect_install_is 0.1.0 "after the rolled-back update from the page" || exit 1
same_vm "after the rollback" || exit 1
proved "owner, broken release: $(step_line update); VMM pid and boot_id unchanged"

update_scenario_start good
box_exec sh -c 'sed "s/@OWNER@/$1/" "$2" >"$3"' rule "$OWNER" \
    "$BANGER_PREFIX/share/banger/49-banger-owner.rules.example" "$OWNER_RULE"
browser "$OWNER" "$OWNER_PASS" update- update --start ck1 --expect-version 0.2.0 \
    --expect-result updated --expect-installed 0.2.0 || exit 1
expect_install_is 0.2.0 "after the update from the page" || exit 1
same_vm "after the update" || exit 1
proved "owner: $(step_line update); VMM pid $vmm and boot_id $boot_id unchanged"

copy_shots
proved "screenshots: $(find "$SHOTS" -name '*.png' | wc -l) in $SHOTS"
