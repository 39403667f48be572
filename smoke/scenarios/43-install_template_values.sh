#!/usr/bin/env bash
# Install values that would break out of a template are refused before anything is written.
# The owner's name and the prefix are substituted unescaped into the units, the bus policy XML
# and the polkit JavaScript, so `banger system install` accepts only a portable login name and
# an absolute path of plain characters. Accounts whose names need escaping (NSS allows them:
# here they are written into /etc/passwd directly) and prefixes with spaces, quotes, systemd
# specifiers or `..` are refused naming the value, exit 1, and every installed file is as it
# was.
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

BAD_USERS=('ev"il' "ev'il" 'ev&il<x>' '-evil')
cleanup() {
    local rc=$?
    box_exec sed -i '/^ev["&'"'"'<]\|^-evil:/d' /etc/passwd || true
    if [ "$rc" != 0 ]; then   # a refusal that came too late may have left a broken install
        box_exec "$BOX_BIN/banger" system install --owner "$OWNER" >/dev/null 2>&1 || true
    fi
    return "$rc"
}
trap cleanup EXIT

wait_daemon_ready 15
uid=2900
for u in "${BAD_USERS[@]}"; do
    box_exec sh -c 'printf "%s:x:%s:%s::/nonexistent:/usr/sbin/nologin\n" "$1" "$2" "$2" >>/etc/passwd' \
        add "$u" "$uid"
    uid=$((uid + 1))
done
snapshot_install before

for u in "${BAD_USERS[@]}"; do
    expect_rc 1 box_exec "$BOX_BIN/banger" system install "--owner=$u"
    expect_contains "$LAST_OUT" "the owner's login name \"${u//\"/\\\"}\" cannot be written safely" \
        "system install --owner $u"
    expect_contains "$LAST_OUT" "nothing was changed" "system install --owner $u"
    snapshot_install after-owner
    expect_same_snapshot before after-owner "after system install --owner $u"
    proved "system install --owner '$u' (an existing account) is refused, naming the name; nothing changed"
done

for prefix in '/opt/banger x' '/opt/"b"' '/opt/%h' '/opt/$HOME' '/opt/../etc' "/opt/b';x"; do
    expect_rc 1 box_exec "$BOX_BIN/banger" system install --owner "$OWNER" "--prefix=$prefix"
    expect_contains "$LAST_OUT" "cannot be written safely into banger's unit and bus files" \
        "system install --prefix $prefix"
    expect_contains "$LAST_OUT" "nothing was changed" "system install --prefix $prefix"
    expect_rc 1 box_exec test -e "$prefix/lib/banger"
    snapshot_install after-prefix
    expect_same_snapshot before after-prefix "after system install --prefix $prefix"
    proved "system install --prefix '$prefix' is refused before anything is written"
done

# The services were never touched either.
expect_rc 0 box_as "$OWNER" "$BANGER" doctor
proved "banger doctor still passes"
