#!/usr/bin/env bash
# `banger -H USER@HOST[:PORT]` reaches another host's services over SSH, as `systemctl -H` does:
# the bus connection is `ssh … systemd-stdio-bridge`. The "other host" is an OpenSSH server on
# 127.0.0.1:2222 inside the box with a host key of its own, and the owner logs in with a key.
# 1. `vm list --json`, `vm start` (not waiting for SSH, and saying so) and `vm stop` over -H
#    act on the same VMs as locally; sshd's log shows the owner's logins.
# 2. `update --check` over -H answers as locally; `update` needs a password there, which
#    cannot be asked over -H: exit 3, the hint says what to do, nothing is changed.
# 3. Commands that work on local files (doctor, system status, vm ssh, image import, update
#    --history) refuse -H and print the ssh command that runs them there.
# 4. A -H value that ssh would read as an option is refused before ssh runs; a changed host
#    key makes ssh refuse the connection (no login happens) and banger says what failed.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/release.sh
source "$SMOKE_LIB/release.sh"
# shellcheck source=../lib/vm.sh
source "$SMOKE_LIB/vm.sh"

BANGER=$BOX_BIN/banger
WORK=/tmp/smoke-remote
SSHD_UNIT=smoke-sshd.service
REMOTE=$OWNER@127.0.0.1:2222
OWNER_HOME=$(box_exec getent passwd "$OWNER" | cut -d: -f6)

cleanup() {
    local rc=$?
    box_exec systemctl stop "$SSHD_UNIT" 2>/dev/null || true
    box_exec rm -rf "$WORK" "$OWNER_HOME/.ssh/id_ed25519" "$OWNER_HOME/.ssh/id_ed25519.pub" \
        "$OWNER_HOME/.ssh/authorized_keys" "$OWNER_HOME/.ssh/known_hosts" /tmp/smoke-pwned || true
    vm_remove_all
    release_reinstall_base >/dev/null || true
    release_unconfig || true
    return "$rc"
}
trap cleanup EXIT

# --- the "other host": sshd on loopback with its own host key; the owner's key authorized
box_exec sh -c 'rm -rf "$1" && mkdir -p "$1" /run/sshd && chmod 755 "$1" &&
    ssh-keygen -q -t ed25519 -N "" -f "$1/host_key" && ssh-keygen -q -t ed25519 -N "" -f "$1/other_key" &&
    cat >"$1/sshd_config" <<EOF
Port 2222
ListenAddress 127.0.0.1
HostKey $1/host_key
PidFile $1/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM yes
AllowUsers $2
LogLevel VERBOSE
EOF' mk "$WORK" "$OWNER"
expect_rc 0 as_owner sh -c 'mkdir -p -m 700 ~/.ssh && rm -f ~/.ssh/id_ed25519 ~/.ssh/id_ed25519.pub &&
    ssh-keygen -q -t ed25519 -N "" -f ~/.ssh/id_ed25519 && cp ~/.ssh/id_ed25519.pub ~/.ssh/authorized_keys &&
    chmod 600 ~/.ssh/authorized_keys && printf "[127.0.0.1]:2222 %s\n" "$(cut -d" " -f1,2 "$1/host_key.pub")" >~/.ssh/known_hosts' \
    keys "$WORK"
expect_rc 0 box_exec systemd-run --quiet --unit="$SSHD_UNIT" /usr/sbin/sshd -D -e -f "$WORK/sshd_config"
sshd_listens() { box_exec ss -Hltn 'sport = :2222' | grep -q 2222; }
wait_for 15 "sshd to listen on 127.0.0.1:2222" sshd_listens || exit 1
logins() { box_exec journalctl -q --no-pager -u "$SSHD_UNIT" | grep -c "Accepted publickey for $OWNER" || true; }

# --- 1. VMs over -H
expect_rc 0 vm_image_ready
expect_rc 0 as_owner "$BANGER" vm create r1 --image "$GUEST_IMAGE"
expect_rc 0 as_owner "$BANGER" vm list --json
local_list=$LAST_OUT
expect_rc 0 as_owner "$BANGER" -H "$REMOTE" vm list --json
expect_eq "$LAST_OUT" "$local_list" "vm list --json over -H (against the local one)"
expect_contains "$LAST_OUT" '"name": "r1"' "vm list --json over -H"
[ "$(logins)" -ge 1 ] || fail "sshd logged no login of $OWNER: $(box_exec journalctl -q --no-pager -u "$SSHD_UNIT")" || exit 1
proved "banger -H $REMOTE vm list --json lists what the local one lists, through sshd ($(logins) login(s) of $OWNER)"

expect_rc 0 as_owner "$BANGER" -H "$REMOTE" vm start r1
expect_contains "$LAST_OUT" "not waiting for SSH over -H" "vm start over -H"
expect_contains "$LAST_OUT" "ssh -t -p 2222 $OWNER@127.0.0.1 banger vm ssh NAME" "vm start over -H"
r1_runs() { [ "$(vm_field r1 state)" = running ]; }
wait_for 30 "r1 to run" r1_runs || exit 1
expect_rc 0 as_owner "$BANGER" -H "$REMOTE" vm stop r1
expect_eq "$(vm_field r1 state)" stopped "r1's state after vm stop over -H"
proved "vm start and vm stop over -H act on the VM (start says it does not wait for SSH)"

# --- 2. update over -H
update_scenario_start good
base=$(release_base_version)
expect_rc 0 as_owner "$BANGER" update --check
local_check=$LAST_OUT
expect_rc 0 as_owner "$BANGER" -H "$REMOTE" update --check
expect_eq "$LAST_OUT" "$local_check" "update --check over -H (against the local one)"
proved "update --check over -H: $(last_line "$LAST_OUT")"
expect_rc 3 as_owner "$BANGER" -H "$REMOTE" update
expect_contains "$LAST_OUT" "cannot be asked over -H" "update over -H without a way to authenticate"
expect_contains "$LAST_OUT" "example polkit rule" "update over -H without a way to authenticate"
hint=$(grep -m1 -o 'banger: hint: .*' <<<"$LAST_OUT")
expect_install_is "$base" "after the refused update over -H"
proved "update over -H needs a password there: exit 3, '$hint'; still v$base"

# --- 3. local-only commands
for cmd in "doctor" "system status" "vm ssh r1" "update --history" "image import x --kernel /k"; do
    # shellcheck disable=SC2086 # the command's words
    expect_rc 2 as_owner "$BANGER" -H "$REMOTE" $cmd
    expect_contains "$LAST_OUT" "cannot run over -H; run it there: ssh -t -p 2222 $OWNER@127.0.0.1 banger" \
        "banger -H $cmd"
done
proved "doctor, system status, vm ssh, update --history and image import refuse -H and say how to run them there"

# --- 4. hostile values and a changed host key
before=$(logins)
expect_rc 2 as_owner "$BANGER" --host="-oProxyCommand=touch /tmp/smoke-pwned" vm list
expect_contains "$LAST_OUT" "the host is not a host name" "a -H value that is an ssh option"
expect_rc 2 as_owner "$BANGER" --host="$OWNER@127.0.0.1:22x" vm list
expect_contains "$LAST_OUT" "the port is not a number" "a -H value with a bad port"
expect_rc 1 box_exec test -e /tmp/smoke-pwned
proved "-H values that are options or malformed are refused before ssh runs (nothing was touched)"

expect_rc 0 as_owner sh -c 'printf "[127.0.0.1]:2222 %s\n" "$(cut -d" " -f1,2 "$1/other_key.pub")" >~/.ssh/known_hosts' \
    keys "$WORK"
expect_rc 1 as_owner "$BANGER" -H "$REMOTE" vm list
expect_contains "$LAST_OUT" "REMOTE HOST IDENTIFICATION HAS CHANGED" "vm list over -H with a changed host key"
expect_contains "$LAST_OUT" "reaching the system bus of $REMOTE over ssh failed" \
    "vm list over -H with a changed host key"
expect_eq "$(logins)" "$before" "logins of $OWNER after the changed host key"
proved "a changed host key is refused by ssh, no login happens, and banger says what failed"
