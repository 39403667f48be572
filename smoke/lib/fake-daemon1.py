# A forged org.banger.Daemon1 for the smoke scenarios: run by the owner while bangerd is
# stopped (the bus policy lets the owner own the name). GetSshTarget answers by VM name:
#   addr  no user, and an address that is an ssh option (-oProxyCommand=touch MARK)
#   user  a valid address, and a user that is an ssh option (-oProxyCommand=touch MARK@ADDRESS)
#   key   a valid address and user, and a host key carrying a second known_hosts line
# GetVm says every VM is running. Prints "ready" once it owns the name; runs until killed
# (at most 300 s).
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

MARK = sys.argv[1]      # the file a ProxyCommand would create
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIErCfDbv70f4qhrCItn6lI5PNnbezM/EhIPhvGnkxgRZ"
PROXY = "-oProxyCommand=touch %s" % MARK
TARGETS = {
    "addr": (PROXY, "", "", KEY),
    "user": ("172.30.0.250", PROXY, "", KEY),
    "key": ("172.30.0.250", "root", "", KEY + "\n@cert-authority * " + KEY),
}


class Forged(dbus.service.Object):
    @dbus.service.method("org.banger.Daemon1", in_signature="s", out_signature="(ssss)")
    def GetSshTarget(self, name):
        return TARGETS[str(name)]

    @dbus.service.method("org.banger.Daemon1", in_signature="s", out_signature="(sssuussssxs)")
    def GetVm(self, name):
        return ("0123456789ab", name, "img", 1, 256, "running", "172.30.0.250", "qemu", "u", 0, KEY)


dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.SystemBus()
name = dbus.service.BusName("org.banger.Daemon1", bus, do_not_queue=True)
Forged(bus, "/org/banger/Daemon1")
print("ready", flush=True)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(300, loop.quit)
loop.run()
