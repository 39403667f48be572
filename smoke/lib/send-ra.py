# Sends one IPv6 router advertisement out of interface IFACE, as a hostile guest would: a
# default route (router lifetime 1800 s) and a prefix for address autoconfiguration
# (2001:db8:76::/64, on-link and autonomous). The kernel fills in the ICMPv6 checksum; the
# source is IFACE's link-local address. Usage: python3 -c "$(<send-ra.py)" IFACE
import socket
import struct
import sys

iface = sys.argv[1]
index = socket.if_nametoindex(iface)
mac = bytes.fromhex(open("/sys/class/net/%s/address" % iface).read().strip().replace(":", ""))
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
source_lladdr = struct.pack("!BB", 1, 1) + mac
prefix = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + socket.inet_pton(
    socket.AF_INET6, "2001:db8:76::")
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.sendto(ra + source_lladdr + prefix, ("ff02::1", 0, 0, index))
print("sent a router advertisement on %s" % iface)
