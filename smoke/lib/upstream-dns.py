#!/usr/bin/env python3
"""A tiny authoritative DNS server for the smoke suite's "upstream" network.

usage: upstream-dns.py ADDRESS NAME=IPV4...

Answers A questions for the NAMEs given (case-insensitive) on ADDRESS:53 (UDP and TCP); any other name
gets NXDOMAIN, other types of a known name an empty answer. Each answered question is logged on
stdout as "asked NAME TYPE", so a scenario can see that a question reached the upstream.
"""
import socket
import struct
import sys
import threading


def parse_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels).lower(), off
        if n & 0xC0:
            raise ValueError("compressed question names are not expected")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n


def answer(msg, zone):
    """The reply to `msg`, or None for what is not a single question."""
    if len(msg) < 12:
        return None
    tid, flags, qd = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000 or qd != 1:
        return None
    try:
        name, off = parse_name(msg, 12)
    except (ValueError, IndexError):
        return None
    qtype, _qclass = struct.unpack("!HH", msg[off:off + 4])
    question = msg[12:off + 4]
    print(f"asked {name} {qtype}", flush=True)
    ip = zone.get(name)
    rcode = 0 if ip is not None else 3
    answers = b""
    if ip is not None and qtype == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + ip
    header = struct.pack("!HHHHHH", tid, 0x8180 | 0x0400 | rcode, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


def serve_tcp(listener, zone):
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                reply = answer(data[2:], zone) if len(data) >= 2 else None
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                pass


def main():
    addr = sys.argv[1]
    zone = {}
    for arg in sys.argv[2:]:
        name, ip = arg.split("=", 1)
        zone[name.lower().rstrip(".")] = socket.inet_aton(ip)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((addr, 53))
    tcp.listen(16)
    threading.Thread(target=serve_tcp, args=(tcp, zone), daemon=True).start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    while True:
        msg, peer = s.recvfrom(4096)
        reply = answer(msg, zone)
        if reply is not None:
            s.sendto(reply, peer)


if __name__ == "__main__":
    main()
