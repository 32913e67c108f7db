#!/usr/bin/env python3
"""A POP3 client that shows exactly what is on the wire (for tests).

    p = Pop3("127.0.0.1", port, timeout=20)   # reads the greeting
    p.greeting                                 # b"+OK ...\\r\\n"
    p.cmd("USER alice")                        # -> status line, CRLF included
    raw, data, problems = p.multi()            # a multi-line body:
        raw       the bytes as received, terminator ".\\r\\n" included
        data      un-stuffed content (CRLF line ends as received)
        problems  protocol violations seen (bare-LF line ends, a line that
                  starts with a single '.' but is not the terminator)
    p.send(b"STAT\\r\\nLIST\\r\\n")            # raw bytes, e.g. pipelining
    p.close()

Every read is bounded by the socket timeout; a closed connection raises
Pop3Closed, a timeout socket.timeout. Nothing here is lenient on purpose:
the tests decide what to accept.
"""

import base64
import socket

CRLF = b"\r\n"
MAX_LINE = 1 << 20          # longest line we are willing to buffer
MAX_MULTI = 64 << 20        # largest multi-line response


class Pop3Closed(Exception):
    pass


class Pop3:
    def __init__(self, host, port, timeout=20.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.greeting = self.line()

    # -- raw I/O -----------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, n=65536):
        chunk = self.sock.recv(n)
        if not chunk:
            raise Pop3Closed("connection closed by server (buffered: %r)"
                             % self.buf[:200])
        self.buf += chunk

    def line(self):
        """One line, its LF (and CR, if any) included."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                out, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return out
            if len(self.buf) > MAX_LINE:
                raise ValueError("line longer than %d octets" % MAX_LINE)
            start = len(self.buf)
            self._fill()

    def read_until_close(self, limit=1 << 20):
        """Everything the server sends until it closes (or times out:
        socket.timeout propagates)."""
        out = self.buf
        self.buf = b""
        while len(out) < limit:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- commands ----------------------------------------------------------
    def cmd(self, text):
        self.send(text.encode("latin-1") + CRLF if isinstance(text, str)
                  else text + CRLF)
        return self.line()

    def multi(self):
        raw = []
        data = []
        problems = []
        total = 0
        n = 0
        while True:
            ln = self.line()
            n += 1
            raw.append(ln)
            total += len(ln)
            if total > MAX_MULTI:
                raise ValueError("multi-line response over %d octets" % MAX_MULTI)
            if not ln.endswith(CRLF):
                problems.append("line %d ends in a bare LF: %r" % (n, ln[-40:]))
            if ln == b".\r\n" or ln == b".\n":
                break
            if ln.startswith(b"."):
                if not ln.startswith(b".."):
                    problems.append("line %d starts with a single '.': %r"
                                    % (n, ln[:40]))
                ln = ln[1:]
            data.append(ln)
        return b"".join(raw), b"".join(data), problems

    def login(self, user, password):
        """USER/PASS; returns the PASS status line (or the USER one if -ERR)."""
        r = self.cmd(b"USER " + _b(user))
        if not r.startswith(b"+OK"):
            return r
        return self.cmd(b"PASS " + _b(password))

    def auth_plain(self, user, password, initial=True):
        tok = base64.b64encode(b"\0" + _b(user) + b"\0" + _b(password))
        if initial:
            return self.cmd(b"AUTH PLAIN " + tok)
        r = self.cmd(b"AUTH PLAIN")
        if not r.startswith(b"+"):
            return r
        if r.startswith(b"+OK") or r.startswith(b"-"):
            return r
        return self.cmd(tok)


def _b(s):
    return s.encode("utf-8") if isinstance(s, str) else s


def is_ok(line):
    return line.startswith(b"+OK")


def is_err(line):
    return line.startswith(b"-ERR")
