"""The smoke suite's release server: serves a directory over HTTP, and misbehaves on request.

usage: python3 release-server.py --dir DIR [--port 8787] [--bind 127.0.0.1] [--log FILE]
                                 [--tls-cert PEM --tls-key PEM]

With --tls-cert and --tls-key it serves HTTPS with that certificate.

GET/HEAD /ROOT/PATH serves DIR/ROOT/PATH. Each server root DIR/ROOT may hold a
behaviour.json mapping a PATH (relative to the root) to a misbehaviour; it is re-read on
every request, so a scenario can change it while the server runs:

  "stall"          status line and headers (Content-Length = file size), then nothing
                   until the client gives up (at most an hour)
  "truncate:N"     Content-Length = file size, but only the first N bytes, then close
  "oversize:N"     no Content-Length: the file, then filler bytes up to N in all, then close
  "slow:N"         the whole file at about N bytes per second
  "status:CODE"    an empty response with that HTTP status (e.g. 404, 500)
  "redirect:URL"   302 Found to URL (absolute, or a path on this server)

Every request is logged as one JSON object per line (time, path, status, behaviour,
bytes sent, whether the whole body was sent) to --log, for scenarios to assert on what
was (or was not) downloaded. Standard library only.
"""

import argparse
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    server_version = "banger-smoke-release-server/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the JSON log replaces the default stderr lines
        pass

    def do_HEAD(self):
        self.respond(head=True)

    def do_GET(self):
        self.respond(head=False)

    # ------------------------------------------------------------------------------------
    def respond(self, head):
        self.close_connection = True
        path = unquote(urlsplit(self.path).path)
        entry = {"method": self.command, "path": path, "behaviour": "", "sent": 0}
        try:
            self.serve(path, head, entry)
        except (BrokenPipeError, ConnectionResetError, socket.timeout) as e:
            entry["client_gone"] = type(e).__name__
        finally:
            entry["time"] = round(time.time(), 3)
            self.server.log(entry)

    def serve(self, path, head, entry):
        base = os.path.realpath(self.server.dir)
        file = os.path.realpath(os.path.join(base, path.lstrip("/")))
        if not file.startswith(base + os.sep) or not os.path.isfile(file):
            self.empty(404, entry)
            return
        rel = os.path.relpath(file, base)
        root, _, inner = rel.partition(os.sep)
        behaviour = self.behaviour(os.path.join(base, root), inner)
        entry["behaviour"] = behaviour
        size = os.path.getsize(file)

        kind, _, arg = behaviour.partition(":")
        if kind == "status":
            self.empty(int(arg), entry)
            return
        if kind == "redirect":
            self.empty(302, entry, location=arg)
            return
        entry["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        if kind != "oversize":
            self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.flush()
        if head:
            return

        if kind == "stall":
            deadline = time.monotonic() + 3600
            # Wait for the client to hang up (or the hour to pass), sending nothing.
            self.connection.settimeout(1)
            while time.monotonic() < deadline:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        break
                    time.sleep(1)  # the client sent more: not a hang-up, keep waiting
                except socket.timeout:
                    continue
                except OSError:
                    break
            return
        limit = size
        if kind == "truncate":
            limit = min(size, int(arg))
        rate = int(arg) if kind == "slow" else 0
        with open(file, "rb") as f:
            sent = self.copy(f, limit, rate, entry)
        if kind == "oversize":
            total = int(arg)
            filler = b"\0" * CHUNK
            while sent < total:
                n = min(CHUNK, total - sent)
                self.wfile.write(filler[:n])
                sent += n
                entry["sent"] = sent
        self.wfile.flush()
        entry["complete"] = sent == size

    def copy(self, f, limit, rate, entry):
        sent = 0
        start = time.monotonic()
        while sent < limit:
            data = f.read(min(CHUNK if not rate else max(1, rate // 10), limit - sent))
            if not data:
                break
            self.wfile.write(data)
            sent += len(data)
            entry["sent"] = sent
            if rate:
                self.wfile.flush()
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        return sent

    def empty(self, status, entry, location=None):
        entry["status"] = status
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    @staticmethod
    def behaviour(root, inner):
        try:
            with open(os.path.join(root, "behaviour.json"), encoding="utf-8") as f:
                table = json.load(f)
        except FileNotFoundError:
            return ""
        value = table.get(inner, "")
        return value if isinstance(value, str) else ""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, directory, log_path):
        super().__init__(addr, Handler)
        self.dir = directory
        self.log_path = log_path
        self.lock = threading.Lock()

    def log(self, entry):
        line = json.dumps(entry, sort_keys=True)
        with self.lock:
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            else:
                print(line, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--log", default="")
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    a = p.parse_args()
    server = Server((a.bind, a.port), a.dir, a.log)
    scheme = "http"
    if a.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(f"serving {a.dir} on {scheme}://{a.bind}:{a.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
