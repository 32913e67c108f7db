#!/usr/bin/env python3
"""A tiny HTTP server for the HTTP client's unit tests (tests/unit/test_oauth_http.c).

    httpfixture.py [--tls DIR]

Listens on a kernel-chosen 127.0.0.1 port and prints one line, "port N"
(with --tls: "port N ca DIR/ca.pem", after making a test CA and a
certificate for 127.0.0.1 in DIR with tests/lib/testca.py), then serves
until stdin closes or it is killed; it also stops by itself after 120 s.
Each request gets its own thread. Paths:

  /echo            200, JSON: method, path, query, body, content_type,
                   accept, user_agent, expect
  /status/N        status N, body "status N" (text/plain)
  /slow/MS         waits MS milliseconds, then 200 "slow"
  /big/N           200 with N bytes of "x" and a Content-Length
  /chunked/N       200 with N bytes of "x", chunked (no Content-Length)
  /hang            reads the request and never answers
  /drop            closes the connection without a byte
  /garbage         answers "this is not http" and closes
  /redirect        302 to /echo
"""

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, ctype="text/plain", extra=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _route(self, method):
        body = self._body()
        u = urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        head = parts[0]
        arg = parts[1] if len(parts) > 1 else ""
        if head == "echo":
            self._send(200, json.dumps({
                "method": method, "path": u.path, "query": u.query,
                "body": body.decode("latin-1"),
                "content_type": self.headers.get("Content-Type", ""),
                "accept": self.headers.get("Accept", ""),
                "user_agent": self.headers.get("User-Agent", ""),
                "expect": self.headers.get("Expect", ""),
            }), "application/json")
        elif head == "status":
            self._send(int(arg), "status %s" % arg)
        elif head == "slow":
            time.sleep(int(arg) / 1000.0)
            self._send(200, "slow")
        elif head == "big":
            self._send(200, b"x" * int(arg))
        elif head == "chunked":
            n = int(arg)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = 4096
            try:
                for i in range(0, n, step):
                    k = min(step, n - i)
                    self.wfile.write(b"%x\r\n" % k + b"x" * k + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif head == "hang":
            time.sleep(60)
            self.close_connection = True
        elif head == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif head == "garbage":
            self.wfile.write(b"this is not http\r\n\r\n")
            self.close_connection = True
        elif head == "redirect":
            self._send(302, "", extra=[("Location", "/echo")])
        else:
            self._send(404, "no such path")

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        pass        # a client that went away (a cancelled request) is normal here


def main():
    tls_dir = None
    if len(sys.argv) == 3 and sys.argv[1] == "--tls":
        tls_dir = sys.argv[2]
    srv = Server(("127.0.0.1", 0), Handler)
    line = "port %d" % srv.server_address[1]
    if tls_dir is not None:
        import ssl
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import testca
        ca = testca.TestCA(tls_dir)
        leaf = ca.issue("http", cn="127.0.0.1", san="IP:127.0.0.1")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(leaf.chain, leaf.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        line += " ca %s" % os.path.join(tls_dir, "ca.pem")
    print(line, flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    deadline = time.time() + 120
    # Ends when the test closes our stdin (or dies), or after 120 s.
    def watch_stdin():
        try:
            sys.stdin.read()
        except OSError:
            pass
        os._exit(0)
    threading.Thread(target=watch_stdin, daemon=True).start()
    while time.time() < deadline:
        time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    main()
