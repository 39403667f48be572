#!/usr/bin/env python3
"""Asks a DNS server one A question over UDP (or TCP), as a resolver would.

usage: dns-ask.py SERVER NAME [--tcp]

Prints one line: "A 1.2.3.4 ..." with the addresses answered, or the response code name
("NXDOMAIN", "SERVFAIL", ...) when there is none; exits 1 when no answer came within 5 s.
"""
import random
import socket
import struct
import sys

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def main():
    server, name = sys.argv[1], sys.argv[2]
    tid = random.randrange(65536)
    q = struct.pack("!HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack("!HH", 1, 1)
    try:
        if "--tcp" in sys.argv[3:]:
            s = socket.create_connection((server, 53), timeout=5)
            s.sendall(struct.pack("!H", len(q)) + q)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = s.recv(4096)
                if not chunk:
                    print("the connection closed without an answer")
                    sys.exit(1)
                data += chunk
            msg = data[2:]
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            s.sendto(q, (server, 53))
            msg, _ = s.recvfrom(4096)
    except (socket.timeout, ConnectionError) as e:
        print(f"no answer within 5 s ({e})")
        sys.exit(1)
    rid, flags, qd, an = struct.unpack("!HHHH", msg[:8])
    if rid != tid:
        print("an answer with another id")
        sys.exit(1)
    off = 12
    for _ in range(qd):
        while msg[off] != 0:
            if msg[off] & 0xC0:
                off += 1
                break
            off += msg[off] + 1
        off += 5
    addrs = []
    for _ in range(an):
        if msg[off] & 0xC0:
            off += 2
        else:
            while msg[off] != 0:
                off += msg[off] + 1
            off += 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[off:off + 4]))
        off += rdlen
    if addrs:
        print("A " + " ".join(addrs))
    else:
        print(RCODES.get(flags & 0xF, str(flags & 0xF)))


if __name__ == "__main__":
    main()
