# Bus clients for the smoke scenarios (dbus-python; Debian's python3-dbus and python3-gi).
# Run inside the box as the user under test: python3 -c "$(<bus-client.py)" MODE ARGS...
#
#   loop WORKDIR SERVICE...     one connection per SERVICE (root1, daemon1), each reading its
#                               Version property in a tight loop (30 s call timeout) until
#                               WORKDIR/stop exists; touches WORKDIR/ready after the first
#                               round, then prints one JSON line: per service the calls, the
#                               failures (with the first errors) and the longest call in ms.
#   storm COUNT CONNS SECONDS METHOD...
#                               COUNT calls of each METHOD (root1.VmmDoctor,
#                               root1.CheckForUpdate, root1.Version) in flight at once, spread
#                               over CONNS connections, each with a 60 s timeout; every answered
#                               call is replaced by a new one until SECONDS have passed; prints
#                               one JSON line: per method the calls, answers, errors by D-Bus
#                               name, the longest call in ms, and the wall time.
#   listen SECONDS              prints every signal org.banger.Root1 sends (as this user can see
#                               it) for SECONDS, one JSON line each, then exits.
#   subscribers COUNT WORKDIR SECONDS
#                               COUNT connections, each subscribed to PropertiesChanged of
#                               org.banger.Daemon1's VM objects; touches WORKDIR/ready once all
#                               are subscribed, and when WORKDIR/stop exists (or SECONDS have
#                               passed) writes WORKDIR/seen.json: per connection, every State
#                               change it received as [object path, state], in arrival order.
import json
import os
import sys
import time

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

TARGETS = {
    "root1": ("org.banger.Root1", "/org/banger/Root1", "org.banger.Root1"),
    "daemon1": ("org.banger.Daemon1", "/org/banger/Daemon1", "org.banger.Daemon1"),
}
PROPS = "org.freedesktop.DBus.Properties"


def loop(work, services):
    buses = {s: dbus.SystemBus(private=True) for s in services}
    stats = {s: {"calls": 0, "failures": 0, "max_ms": 0.0, "errors": []} for s in services}
    first = True
    deadline = time.monotonic() + 600
    while not os.path.exists(os.path.join(work, "stop")) and time.monotonic() < deadline:
        for s in services:
            name, path, iface = TARGETS[s]
            st = stats[s]
            t = time.monotonic()
            try:
                buses[s].call_blocking(name, path, PROPS, "Get", "ss", (iface, "Version"), timeout=30)
            except dbus.DBusException as e:
                st["failures"] += 1
                if len(st["errors"]) < 10:
                    st["errors"].append("%.3f %s: %s" % (time.time(), e.get_dbus_name(), e.get_dbus_message()))
            ms = (time.monotonic() - t) * 1000
            st["calls"] += 1
            st["max_ms"] = round(max(st["max_ms"], ms), 1)
        if first:
            open(os.path.join(work, "ready"), "w").close()
            first = False
    print(json.dumps(stats))


def storm(count, conns, seconds, methods):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    buses = [dbus.SystemBus(private=True) for _ in range(conns)]
    stats = {m: {"calls": 0, "answers": 0, "errors": {}, "max_ms": 0.0} for m in methods}
    pending = [0]
    turn = [0]
    started = time.monotonic()
    until = started + seconds
    ml = GLib.MainLoop()

    def send(method):
        service, member = method.split(".", 1)
        name, path, iface = TARGETS[service]
        bus = buses[turn[0] % conns]
        turn[0] += 1
        t = time.monotonic()
        if member == "Version":
            args = (PROPS, "Get", "ss", (iface, "Version"))
        else:
            args = (iface, member, "", ())
        pending[0] += 1
        stats[method]["calls"] += 1
        bus.call_async(name, path, *args,
                       reply_handler=lambda *a: done(method, t),
                       error_handler=lambda e: done(method, t, e),
                       timeout=60)

    def done(method, t, err=None):
        st = stats[method]
        st["max_ms"] = round(max(st["max_ms"], (time.monotonic() - t) * 1000), 1)
        if err is None:
            st["answers"] += 1
        else:
            key = err.get_dbus_name() or "local"
            st["errors"][key] = st["errors"].get(key, 0) + 1
            st.setdefault("example", {})[key] = (err.get_dbus_message() or "")[:300]
        pending[0] -= 1
        if time.monotonic() < until:
            send(method)
        elif pending[0] == 0:
            ml.quit()

    for method in methods:
        for _ in range(count):
            send(method)
    GLib.timeout_add_seconds(int(seconds) + 120, ml.quit)
    ml.run()
    out = {"wall_s": round(time.monotonic() - started, 2), "unanswered": pending[0], "methods": stats}
    print(json.dumps(out))


def listen(seconds):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    ml = GLib.MainLoop()

    def seen(*args, **kw):
        print(json.dumps({"member": kw.get("member"), "path": kw.get("path"),
                          "args": [str(a) if not isinstance(a, dict) else {str(k): str(v) for k, v in a.items()}
                                   for a in args]}), flush=True)

    bus.add_signal_receiver(seen, sender_keyword="sender", member_keyword="member", path_keyword="path",
                            bus_name="org.banger.Root1")
    print(json.dumps({"listening": True}), flush=True)
    GLib.timeout_add_seconds(int(seconds), ml.quit)
    ml.run()


def subscribers(count, work, seconds):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    ml = GLib.MainLoop()
    seen = [[] for _ in range(count)]
    buses = []
    for i in range(count):
        bus = dbus.SystemBus(private=True)

        def changed(iface, props, _invalid, path=None, log=seen[i]):
            if iface == "org.banger.Daemon1.Vm" and "State" in props:
                log.append([str(path), str(props["State"])])

        bus.add_signal_receiver(changed, signal_name="PropertiesChanged",
                                dbus_interface=PROPS, bus_name="org.banger.Daemon1",
                                path_keyword="path")
        buses.append(bus)
    # A round trip on each connection: its match rule is in place once the bus has answered.
    for bus in buses:
        bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                          "GetId", "", ())
    open(os.path.join(work, "ready"), "w").close()
    deadline = time.monotonic() + seconds

    def check():
        if os.path.exists(os.path.join(work, "stop")) or time.monotonic() > deadline:
            with open(os.path.join(work, "seen.json.tmp"), "w") as f:
                json.dump(seen, f)
            os.rename(os.path.join(work, "seen.json.tmp"), os.path.join(work, "seen.json"))
            ml.quit()
            return False
        return True

    GLib.timeout_add(200, check)
    ml.run()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "loop":
        loop(sys.argv[2], sys.argv[3:])
    elif mode == "storm":
        storm(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:])
    elif mode == "listen":
        listen(float(sys.argv[2]))
    elif mode == "subscribers":
        subscribers(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit("unknown mode " + mode)
