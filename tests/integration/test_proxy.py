#!/usr/bin/env python3
"""PROXY protocol behind a load balancer, and the session's closing log
line (issue 7; etc/popbridge.ini.5 proxy_protocol, trusted_proxies).

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_proxy.py

Self-contained: a private Dovecot (tests/lib/dovecot.sh) with a few
messages for alice, a self-signed certificate (openssl), and four
popbridges, each on free 127.0.0.1 ports:

  main      pop3 + pop3s, proxy_protocol = yes, trusted_proxies = 127.0.0.1,
            max_per_ip = 1, allow_plaintext_auth = loopback
  other     proxy_protocol = yes, trusted_proxies = 127.0.0.2 only
  cidr      proxy_protocol = yes, trusted_proxies = 127.0.0.0/30, 10.0.0.0/8
  off       proxy_protocol = no, trusted_proxies = 127.0.0.1

PROXY v1 and v2 headers are built by hand. Clients bind to 127.0.0.x
source addresses to be a trusted proxy or not. What is checked: the log
names the real client ("session=N client=REAL via proxy PROXY", and
"session=N end client=REAL ..."), max_per_ip and allow_plaintext_auth see
the real address, headers from untrusted addresses are plain POP3 input,
trusted connections without a valid header are closed, LOCAL keeps the
proxy's address, pop3s takes the header before the TLS handshake; and
the closing log line of a session (key=value, parsed here) has counts
that match what the client did.

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script ("# ..." notes give suggestions for the log line).
"""

import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import corpus  # noqa: E402
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import (HOST, REPLY_WAIT, Client, Dovecot, Expected, Popbridge, cmd,  # noqa: E402
                    drain_until_close, first_diff, is_err, is_ok, note, read_line, show,
                    user_pass, want_temp)
from pop3wire import Pop3, Pop3Closed  # noqa: E402

PROXY_TIMEOUT = 10          # SESSION_PROXY_TIMEOUT_MS, etc/popbridge.ini.5
# what a failure shows of the logs of the case's popbridges
LOG_RE = r"session=\d+ (connect|client|end)|refused|warn|error|ERROR|runtime|SUMMARY|<4>|<3>"


R = pbtest.Report()
DOVECOT = None
MAIN = OTHER = CIDR = OFF = None
USERS = {}
CERT = KEY = None


# -- PROXY headers (haproxy's proxy-protocol.txt) ----------------------------------------

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst=None, sport=40000, dport=110, proto=None):
    six = ":" in src
    proto = proto or ("TCP6" if six else "TCP4")
    dst = dst or ("::1" if six else "127.0.0.1")
    return b"PROXY %s %s %s %d %d\r\n" % (proto.encode(), src.encode(), dst.encode(),
                                          sport, dport)


def tlv(t, value):
    return bytes([t]) + struct.pack("!H", len(value)) + value


def v2(src=None, dst=None, sport=40000, dport=110, command=1, fam=None, tlvs=b"",
       version=2, length=None):
    if src is None:
        body, f = b"", 0x00
    elif ":" in src:
        body = (socket.inet_pton(socket.AF_INET6, src)
                + socket.inet_pton(socket.AF_INET6, dst or "::1")
                + struct.pack("!HH", sport, dport))
        f = 0x21
    else:
        body = (socket.inet_pton(socket.AF_INET, src)
                + socket.inet_pton(socket.AF_INET, dst or "127.0.0.1")
                + struct.pack("!HH", sport, dport))
        f = 0x11
    body += tlvs
    return (V2SIG + bytes([(version << 4) | command, f if fam is None else fam])
            + struct.pack("!H", len(body) if length is None else length) + body)


# -- clients ---------------------------------------------------------------------------

class TLSPop3(Pop3):
    """POP3 over TLS through memory BIOs, so that the first TLS flight can
    share a segment with a PROXY header (prefix)."""

    def __init__(self, sock, prefix=b"", greet=True):
        ctx = ssl.create_default_context(cafile=CERT)
        self.sock = sock
        self.buf = b""
        self.received = 0           # plaintext octets
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.prefix = prefix
        while True:
            try:
                self.obj.do_handshake()
                self._out()
                break
            except ssl.SSLWantReadError:
                self._out()
                self._in()
        self.greeting = self.line() if greet else None

    def _out(self):
        data = self.out.read()
        if self.prefix:
            data, self.prefix = self.prefix + data, b""
        if data:
            self.sock.sendall(data)

    def _in(self):
        d = self.sock.recv(65536)
        if not d:
            raise Pop3Closed("connection closed during TLS")
        self.inc.write(d)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.obj.write(data)
        self._out()

    def _fill(self, n=65536):
        while True:
            try:
                chunk = self.obj.read(n)
            except ssl.SSLWantReadError:
                self._out()
                self._in()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                raise Pop3Closed("TLS closed (buffered: %r)" % self.buf[:200])
            if not chunk:
                raise Pop3Closed("TLS closed")
            self.received += len(chunk)
            self.buf += chunk
            return


def raw_connect(port, src=HOST, timeout=REPLY_WAIT):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((HOST, port))
    return s


def capa(p):
    """The lines of the CAPA response."""
    return pbtest.capa(p)[1].split(b"\r\n")


def login(p, user="alice"):
    return user_pass(p, user, USERS[user])


def imap_expected(user="alice"):
    return Expected.imap(DOVECOT.port, user, USERS[user], sections=("",))


# -- the closing log line ------------------------------------------------------------------

KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?=\s|$)')


def parse_end_line(line):
    """'<6>session=N end k=v k="v v" ...' -> dict, or raise ValueError
    naming what does not parse."""
    m = re.match(r'^(?:<\d>)?session=(\d+) end (.*)$', line)
    if not m:
        raise ValueError("not an end line: %r" % line)
    out = {"session": m.group(1)}
    rest = m.group(2)
    pos = 0
    while pos < len(rest):
        if rest[pos] == " ":
            pos += 1
            continue
        km = KV.match(rest, pos)
        if not km:
            raise ValueError("unparseable at %r" % rest[pos:pos + 40])
        k, v = km.group(1), km.group(2)
        if k in out:
            raise ValueError("key %s twice" % k)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[k] = v
        pos = km.end()
    return out


# -- the case runner ------------------------------------------------------------------------

def case(name, pbs, body):
    """A case about the popbridges pbs: it begins once they count no session."""
    R.case(name, body, watch=pbtest.Watch(pbs, LOG_RE, settle=12))


def proxied_ok(pb, header, real, proxy="127.0.0.1", src=None, then_quit=True):
    """A greeting after the header, and the log naming real via proxy."""
    probs = []
    off = pb.offset()
    c = Client(pb.port, src=src or proxy, header=header)
    try:
        if not is_ok(c.greeting):
            return ["greeting after the header -> %s" % show(c.greeting)]
        if then_quit:
            r = cmd(c, b"QUIT")
            if not is_ok(r):
                probs.append("QUIT -> %s" % show(r))
    finally:
        c.close()
    sid = pb.via(off, real, proxy)
    if sid is None:
        return probs + ["no log line 'session=N client=%s via proxy %s'" % (real, proxy)]
    end = pb.end_line(sid, 5)
    if end is None or not re.search(r"session=%s end client=%s " % (sid, re.escape(real)), end):
        probs.append("end line %r, want 'session=%s end client=%s ...'" % (end, sid, real))
    return probs


# == main: trusted 127.0.0.1, max_per_ip 1 ====================================================

def t_v1_tcp4():
    return proxied_ok(MAIN, v1("198.51.100.7", "127.0.0.1", 40000, 110), "198.51.100.7")


def t_v1_tcp6():
    return proxied_ok(MAIN, v1("2001:db8::7", "2001:db8::1", 40000, 110), "2001:db8::7")


def t_v2_tcp4_tlvs():
    t = tlv(0x02, b"mail.example.org") + tlv(0x04, b"\0" * 5) + tlv(0x05, b"abc123")
    return proxied_ok(MAIN, v2("198.51.100.8", tlvs=t), "198.51.100.8")


def t_v2_tcp6():
    return proxied_ok(MAIN, v2("2001:db8::8"), "2001:db8::8")


def t_v1_unknown():
    return proxied_ok(MAIN, b"PROXY UNKNOWN\r\n", "127.0.0.1")


def t_v2_local():
    probs = proxied_ok(MAIN, v2(None, command=0), "127.0.0.1")
    # LOCAL with an address block: the addresses are ignored.
    off = MAIN.offset()
    probs += ["LOCAL with addresses: " + x for x in
              proxied_ok(MAIN, v2("198.51.100.99", command=0), "127.0.0.1")]
    if "client=198.51.100.99" in MAIN.text(off):
        probs.append("the address of a LOCAL header was used: %s"
                     % [ln for ln in MAIN.text(off).splitlines() if "198.51.100.99" in ln][:2])
    return probs


def t_plaintext_auth_real_address():
    probs = []
    c = Client(MAIN.port, header=v1("198.51.100.9"))
    try:
        caps = capa(c)
        if b"USER" in caps:
            probs.append("CAPA offers USER to 198.51.100.9 (not loopback) without TLS")
        if b"STLS" not in caps:
            probs.append("CAPA lacks STLS: %r" % caps)
        r = cmd(c, b"USER alice")
        if not (isinstance(r, bytes) and r.startswith(b"-ERR [AUTH]")):
            probs.append("USER from 198.51.100.9 in clear -> %s, want -ERR [AUTH] ... STLS"
                         % show(r))
    finally:
        c.close()
    c = Client(MAIN.port, header=v1("127.0.0.9"))
    try:
        if b"USER" not in capa(c):
            probs.append("CAPA lacks USER for the proxied loopback client 127.0.0.9")
        r = login(c)
        if not is_ok(r):
            probs.append("login as the proxied loopback client 127.0.0.9 -> %s" % show(r))
        cmd(c, b"QUIT")
    finally:
        c.close()
    return probs


def t_max_per_ip_real():
    probs = []
    held = []
    try:
        off = MAIN.offset()
        a = Client(MAIN.port, header=v1("198.51.100.10"))
        held.append(a)
        if not is_ok(a.greeting):
            return ["first session for 198.51.100.10 -> %s" % show(a.greeting)]
        for what, hdr in (("v1", v1("198.51.100.10", sport=40001)),
                          ("v2", v2("198.51.100.10", sport=40002))):
            b = Client(MAIN.port, header=hdr, greet=False)
            r = read_line(b, 5)
            probs += want_temp("second session for 198.51.100.10 (%s; max_per_ip = 1)"
                               % what, r)
            data, closed, _ = drain_until_close(b.sock, 5)
            b.close()
            if not closed:
                probs.append("the refused %s session stayed open" % what)
        if not MAIN.wait_log(off, r"session=\d+ end client=198\.51\.100\.10 [^\n]*"
                             r"max_per_ip", 3):
            probs.append("no end line 'client=198.51.100.10 ... max_per_ip reached'")
        for real in ("198.51.100.11", "198.51.100.12"):
            c = Client(MAIN.port, header=v1(real))
            held.append(c)
            if not is_ok(c.greeting):
                probs.append("%s while 198.51.100.10 is at its limit -> %s"
                             % (real, show(c.greeting)))
        # One IPv6 client, spelled two ways.
        c = Client(MAIN.port, header=v1("2001:db8::10"))
        held.append(c)
        if not is_ok(c.greeting):
            probs.append("2001:db8::10 -> %s" % show(c.greeting))
        b = Client(MAIN.port, header=v1("2001:db8:0:0:0:0:0:10", sport=40003), greet=False)
        probs += want_temp("2001:db8:0:0:0:0:0:10 while 2001:db8::10 is connected", read_line(b, 5))
        b.close()
        # The limit frees up when the session ends.
        a.close()
        held.remove(a)
        deadline = time.time() + 5
        ok = False
        while time.time() < deadline and not ok:
            c = Client(MAIN.port, header=v1("198.51.100.10", sport=40004))
            if is_ok(c.greeting):
                ok = True
                held.append(c)
            else:
                c.close()
                time.sleep(0.2)
        if not ok:
            probs.append("198.51.100.10 still refused 5 s after its session ended")
    finally:
        for c in held:
            c.close()
    return probs


def t_direct_and_proxied_share():
    probs = []
    d = Client(MAIN.port, src="127.0.0.3")
    try:
        if not is_ok(d.greeting):
            return ["direct 127.0.0.3 -> %s" % show(d.greeting)]
        b = Client(MAIN.port, header=v1("127.0.0.3"), greet=False)
        probs += want_temp("a proxied 127.0.0.3 while 127.0.0.3 is connected directly "
                           "(max_per_ip = 1)", read_line(b, 5))
        b.close()
    finally:
        d.close()
    return probs


def t_untrusted_v1():
    probs = []
    off = MAIN.offset()
    c = Client(MAIN.port, src="127.0.0.3")
    try:
        if not is_ok(c.greeting):
            return ["untrusted 127.0.0.3 is greeted at once -> %s" % show(c.greeting)]
        r = cmd(c, v1("198.51.100.13").rstrip(b"\r\n"))
        if not is_err(r):
            probs.append("a PROXY v1 line from untrusted 127.0.0.3 -> %s, want -ERR" % show(r))
        if b"USER" not in capa(c):
            probs.append("CAPA afterwards lacks USER (the loopback client 127.0.0.3)")
        r = cmd(c, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %s" % show(r))
    finally:
        c.close()
    time.sleep(0.3)
    t = MAIN.text(off)
    if "client=198.51.100.13" in t:
        probs.append("the untrusted header's address was taken as the client's: %s"
                     % [ln for ln in t.splitlines() if "client=198.51.100.13" in ln][:3])
    if not re.search(r"session=\d+ connect client=127\.0\.0\.3\b", t):
        probs.append("no 'session=N connect client=127.0.0.3' line")
    if not re.search(r"session=\d+ end client=127\.0\.0\.3 ", t):
        probs.append("no 'session=N end client=127.0.0.3' line")
    if "via proxy" in t:
        probs.append("a 'via proxy' line for an untrusted client")
    return probs


def t_untrusted_v2():
    """The v2 signature holds "QUIT\\n": to a POP3 server that does not
    expect it, it ends the session (as intended by its authors)."""
    probs = []
    off = MAIN.offset()
    c = Client(MAIN.port, src="127.0.0.3")
    try:
        c.send(v2("198.51.100.14"))
        data, closed, _ = drain_until_close(c.sock, 5)
        lines = data.split(b"\r\n")
        if any(ln.startswith(b"+OK") and b"signing off" not in ln for ln in lines):
            probs.append("a v2 header from untrusted 127.0.0.3 got %r" % data[:200])
        if not closed:
            probs.append("the session goes on after the QUIT inside the v2 signature: %r"
                         % data[:200])
    finally:
        c.close()
    time.sleep(0.3)
    t = MAIN.text(off)
    if "client=198.51.100.14" in t or "via proxy" in t:
        probs.append("the untrusted v2 header was honoured: %s"
                     % [ln for ln in t.splitlines() if "via proxy" in ln][:2])
    if not re.search(r"session=\d+ end client=127\.0\.0\.3 ", t):
        probs.append("no 'session=N end client=127.0.0.3' line")
    return probs


def refused_trusted(pb, payload, what, src="127.0.0.1", wait=5):
    """A trusted connection that sends payload must be closed without a
    greeting."""
    probs = []
    off = pb.offset()
    s = raw_connect(pb.port, src)
    try:
        try:
            s.sendall(payload)
        except OSError:
            pass
        data, closed, secs = drain_until_close(s, wait)
    finally:
        s.close()
    if b"+OK" in data:
        probs.append("%s: greeted or answered +OK: %r" % (what, data[:120]))
    if not closed:
        probs.append("%s: still open after %d s" % (what, wait))
    if not pb.wait_log(off, r"session=\d+ end client=%s [^\n]*reason=\"bad PROXY header\""
                       % re.escape(src), 3):
        probs.append("%s: no end line with reason=\"bad PROXY header\"" % what)
    return probs


def t_no_header():
    probs = refused_trusted(MAIN, b"CAPA\r\n", "CAPA instead of a header")
    probs += refused_trusted(MAIN, b"USER alice\r\nPASS x\r\n", "USER/PASS instead of a header")
    if not MAIN.wait_log(0, r"no PROXY header from a trusted proxy", 1):
        probs.append("no log line saying why ('no PROXY header from a trusted proxy')")
    return probs


MALFORMED = [
    ("v1 without the destination port", b"PROXY TCP4 198.51.100.7 127.0.0.1 40000\r\n"),
    ("v1 with an extra field", b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 110 x\r\n"),
    ("v1 with a bad IPv4 address", b"PROXY TCP4 198.51.100.300 127.0.0.1 40000 110\r\n"),
    ("v1 with a host name", b"PROXY TCP4 evil.example 127.0.0.1 40000 110\r\n"),
    ("v1 TCP4 with an IPv6 address", b"PROXY TCP4 2001:db8::1 127.0.0.1 40000 110\r\n"),
    ("v1 with port 70000", b"PROXY TCP4 198.51.100.7 127.0.0.1 70000 110\r\n"),
    ("v1 with a signed port", b"PROXY TCP4 198.51.100.7 127.0.0.1 +4000 110\r\n"),
    ("v1 with protocol TCP5", b"PROXY TCP5 198.51.100.7 127.0.0.1 40000 110\r\n"),
    ("v1 ending in a bare LF", b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 110\n"),
    ("v1 in lower case", b"proxy TCP4 198.51.100.7 127.0.0.1 40000 110\r\n"),
    ("v1 longer than 107 octets", b"PROXY TCP4 " + b"1" * 200 + b"\r\n"),
    ("v1 with a NUL", b"PROXY TCP4 198.51.100.7\x00 127.0.0.1 40000 110\r\n"),
    ("v2 version 1", v2("198.51.100.7", version=1)),
    ("v2 version 3", v2("198.51.100.7", version=3)),
    ("v2 command 2", v2("198.51.100.7", command=2)),
    ("v2 length 600", v2("198.51.100.7", length=600) + bytes(600)),
    ("v2 TCP4 with a 4-octet block", v2("198.51.100.7", length=4)),
    ("v2 TCP6 with a 12-octet block", v2("198.51.100.7", fam=0x21)),
    ("v2 family 0x99", v2("198.51.100.7", fam=0x99)),
    ("half a v2 signature, then POP3", V2SIG[:6] + b"CAPA\r\n"),
    ("binary junk", bytes(range(1, 64))),
]


def t_malformed():
    probs = []
    for what, payload in MALFORMED:
        probs += refused_trusted(MAIN, payload, what, wait=4)
    return probs


def t_silent_and_dribbling():
    """No header within 10 s: closed, even while bytes keep coming."""
    probs = []
    res = {}

    def silent():
        s = raw_connect(MAIN.port, timeout=PROXY_TIMEOUT + 6)
        try:
            res["silent"] = drain_until_close(s, PROXY_TIMEOUT + 5)
        finally:
            s.close()

    def dribble():
        s = raw_connect(MAIN.port, timeout=PROXY_TIMEOUT + 6)
        hdr = v1("198.51.100.15")
        t0 = time.time()
        try:
            for i in range(len(hdr)):
                if time.time() - t0 > PROXY_TIMEOUT + 5:
                    break
                try:
                    s.sendall(hdr[i:i + 1])
                except OSError:
                    break
                s.settimeout(1.0)
                try:
                    d = s.recv(4096)
                    if not d:
                        res["dribble"] = (b"", True, time.time() - t0)
                        return
                    res["dribble_data"] = d
                except socket.timeout:
                    pass
                except OSError:
                    res["dribble"] = (b"", True, time.time() - t0)
                    return
            res["dribble"] = (b"", False, time.time() - t0)
        finally:
            s.close()

    ths = [threading.Thread(target=silent, daemon=True),
           threading.Thread(target=dribble, daemon=True)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(PROXY_TIMEOUT + 10)
    for what in ("silent", "dribble"):
        if what not in res:
            probs.append("%s: no result" % what)
            continue
        data, closed, secs = res[what]
        if not closed:
            probs.append("%s trusted connection still open after %.1f s" % (what, secs))
        elif not (PROXY_TIMEOUT - 1 <= secs <= PROXY_TIMEOUT + 4):
            probs.append("%s trusted connection closed after %.1f s, want ~%d s"
                         % (what, secs, PROXY_TIMEOUT))
        if b"+OK" in data or b"+OK" in res.get("dribble_data", b""):
            probs.append("%s: greeted" % what)
    if not MAIN.wait_log(0, r'reason="no PROXY header in time"', 2):
        probs.append("no end line with reason=\"no PROXY header in time\"")
    return probs


def t_split_and_pipelined():
    probs = []
    # v1 in three pieces.
    hdr = v1("198.51.100.16")
    off = MAIN.offset()
    s = raw_connect(MAIN.port)
    try:
        for piece in (hdr[:3], hdr[3:20], hdr[20:]):
            s.sendall(piece)
            time.sleep(0.05)
        s.settimeout(5)
        g = s.recv(512)
        if not g.startswith(b"+OK"):
            probs.append("v1 in three pieces -> %r" % g[:100])
    finally:
        s.close()
    if MAIN.via(off, "198.51.100.16") is None:
        probs.append("v1 in three pieces: no via-proxy log line")
    # v2 a byte at a time.
    hdr = v2("198.51.100.17", tlvs=tlv(0x02, b"x.example"))
    off = MAIN.offset()
    s = raw_connect(MAIN.port)
    try:
        for i in range(len(hdr)):
            s.sendall(hdr[i:i + 1])
            time.sleep(0.005)
        s.settimeout(5)
        g = s.recv(512)
        if not g.startswith(b"+OK"):
            probs.append("v2 a byte at a time -> %r" % g[:100])
    finally:
        s.close()
    if MAIN.via(off, "198.51.100.17") is None:
        probs.append("v2 a byte at a time: no via-proxy log line")
    # Header and commands in one segment.
    for what, hdr in (("v1", v1("198.51.100.18")), ("v2", v2("198.51.100.19"))):
        c = Client(MAIN.port, header=hdr + b"CAPA\r\nQUIT\r\n")
        try:
            if not is_ok(c.greeting):
                probs.append("%s + CAPA + QUIT in one segment: greeting -> %s"
                             % (what, show(c.greeting)))
                continue
            r = read_line(c, 5)
            if not is_ok(r):
                probs.append("%s + CAPA in one segment: CAPA -> %s" % (what, show(r)))
                continue
            _, data, _ = c.multi()
            r = read_line(c, 5)
            if not is_ok(r):
                probs.append("%s + QUIT in one segment: QUIT -> %s" % (what, show(r)))
        finally:
            c.close()
    return probs


def tls_session(pb, s, prefix=b"", real=None, full=True):
    """Over TLS on socket s: greeting, login, STAT, RETR 1 byte-exact, QUIT."""
    probs = []
    try:
        t = TLSPop3(s, prefix=prefix)
    except (ssl.SSLError, OSError, Pop3Closed) as e:
        return ["TLS handshake: %s: %s" % (type(e).__name__, e)]
    if not is_ok(t.greeting):
        return ["greeting over TLS -> %s" % show(t.greeting)]
    if not full:
        r = cmd(t, b"QUIT")
        return [] if is_ok(r) else ["QUIT -> %s" % show(r)]
    if b"USER" not in capa(t):
        probs.append("CAPA over TLS lacks USER")
    r = login(t)
    if not is_ok(r):
        return probs + ["login over TLS -> %s" % show(r)]
    exp = imap_expected()
    r = cmd(t, b"STAT")
    want = b"+OK %d %d\r\n" % (len(exp), sum(exp.size))
    if r != want:
        probs.append("STAT -> %s, want %r" % (show(r), want))
    r = cmd(t, b"RETR 1")
    if not is_ok(r):
        probs.append("RETR 1 -> %s" % show(r))
    else:
        raw, _, _ = t.multi()
        w = imapfetch.dotstuff(exp.retr[0])
        if raw != w:
            probs.append("RETR 1 over TLS: %s" % first_diff(raw, w))
    r = cmd(t, b"QUIT")
    if not is_ok(r):
        probs.append("QUIT -> %s" % show(r))
    return probs


def t_pop3s_v1():
    off = MAIN.offset()
    s = raw_connect(MAIN.sport)
    try:
        s.sendall(v1("198.51.100.20", dport=995))
        time.sleep(0.1)          # the header alone first, then the ClientHello
        probs = tls_session(MAIN, s)
    finally:
        s.close()
    sid = MAIN.via(off, "198.51.100.20")
    if sid is None:
        probs.append("no 'client=198.51.100.20 via proxy 127.0.0.1' line")
    else:
        if not any("TLS established" in ln for ln in MAIN.lines_of(sid, off)):
            probs.append("session %s: no 'TLS established' line" % sid)
        end = MAIN.end_line(sid, 5)
        if end is None or "client=198.51.100.20 " not in end:
            probs.append("end line %r" % end)
    return probs


def t_pop3s_v2_same_segment():
    off = MAIN.offset()
    s = raw_connect(MAIN.sport)
    try:
        probs = tls_session(MAIN, s, prefix=v2("198.51.100.21", dport=995))
    finally:
        s.close()
    if MAIN.via(off, "198.51.100.21") is None:
        probs.append("no 'client=198.51.100.21 via proxy 127.0.0.1' line")
    return probs


def t_pop3s_no_header():
    probs = []
    off = MAIN.offset()
    s = raw_connect(MAIN.sport)
    try:
        try:
            t = TLSPop3(s)
            probs.append("a TLS session without a PROXY header from a trusted proxy "
                         "was greeted: %s" % show(t.greeting))
        except (ssl.SSLError, OSError, Pop3Closed):
            pass
    finally:
        s.close()
    if not MAIN.wait_log(off, r'reason="bad PROXY header"', 3):
        probs.append("no end line with reason=\"bad PROXY header\"")
    return probs


def t_pop3s_untrusted():
    probs = []
    off = MAIN.offset()
    s = raw_connect(MAIN.sport, src="127.0.0.3")
    try:
        probs += tls_session(MAIN, s, full=False)
    finally:
        s.close()
    t = MAIN.text(off)
    if not re.search(r"session=\d+ connect client=127\.0\.0\.3\b", t):
        probs.append("no 'connect client=127.0.0.3' line")
    if "via proxy" in t:
        probs.append("a via-proxy line for a direct pop3s client")
    return probs


def t_pop3s_over_limit():
    probs = []
    s1 = raw_connect(MAIN.sport)
    held = None
    try:
        s1.sendall(v1("198.51.100.22"))
        held = TLSPop3(s1)
        if not is_ok(held.greeting):
            return ["first pop3s session for 198.51.100.22 -> %s" % show(held.greeting)]
        s2 = raw_connect(MAIN.sport)
        try:
            s2.sendall(v1("198.51.100.22", sport=40001))
            try:
                t = TLSPop3(s2)
                r = t.greeting
                if is_ok(r):
                    probs.append("a second pop3s session for 198.51.100.22 was greeted "
                                 "(max_per_ip = 1)")
            except (ssl.SSLError, OSError, Pop3Closed):
                pass
        finally:
            s2.close()
    finally:
        s1.close()
    return probs


def t_stls_after_header():
    probs = []
    off = MAIN.offset()
    c = Client(MAIN.port, header=v1("198.51.100.23"))
    try:
        if not is_ok(c.greeting):
            return ["greeting -> %s" % show(c.greeting)]
        r = cmd(c, b"STLS")
        if not is_ok(r):
            return ["STLS -> %s" % show(r)]
        t = TLSPop3(c.sock, greet=False)
        if b"USER" not in capa(t):
            probs.append("CAPA after STLS lacks USER")
        r = login(t)
        if not is_ok(r):
            probs.append("login after STLS -> %s" % show(r))
        r = cmd(t, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %s" % show(r))
    finally:
        c.close()
    if MAIN.via(off, "198.51.100.23") is None:
        probs.append("no via-proxy line for 198.51.100.23")
    return probs


SUGGEST = {}


def logout_line(pb, connect, real):
    """Login, LIST, RETR 2 messages, DELE 1, QUIT; then exactly one end line
    for the session with matching counts."""
    probs = []
    before = imap_expected()
    if len(before) < 3:
        return ["alice has only %d messages left" % len(before)]
    off = pb.offset()
    t0 = time.time()
    p = connect()
    wire = 0
    sizes = []
    try:
        if not is_ok(p.greeting):
            return ["greeting -> %s" % show(p.greeting)]
        r = login(p)
        if not is_ok(r):
            return ["login -> %s" % show(r)]
        r = cmd(p, b"LIST")
        if not is_ok(r):
            return ["LIST -> %s" % show(r)]
        p.multi()
        for n in (2, 3):
            r = cmd(p, b"RETR %d" % n)
            if not is_ok(r):
                return ["RETR %d -> %s" % (n, show(r))]
            raw, data, _ = p.multi()
            wire += len(r) + len(raw)
            sizes.append(before.size[n - 1])
            m = re.match(rb"\+OK (\d+) octets", r)
            if m and int(m.group(1)) != before.size[n - 1]:
                probs.append("RETR %d announced %s octets, LIST size %d"
                             % (n, m.group(1).decode(), before.size[n - 1]))
        r = cmd(p, b"DELE 1")
        if not is_ok(r):
            return ["DELE 1 -> %s" % show(r)]
        r = cmd(p, b"QUIT")
        if not is_ok(r):
            return ["QUIT -> %s" % show(r)]
        try:
            p.sock.settimeout(3)
            while True:
                p._fill()
        except (Pop3Closed, OSError, ssl.SSLError):
            pass
        total = p.received
    finally:
        p.close()
    elapsed_ms = (time.time() - t0) * 1000
    after = imap_expected()
    if after.uids != before.uids[1:]:
        probs.append("IMAP UIDs after QUIT %s, want %s (exactly message 1 deleted)"
                     % (after.uids, before.uids[1:]))
    time.sleep(0.3)
    text = pb.text(off)
    m = re.search(r"session=(\d+) login user=alice messages=(\d+) octets=(\d+)", text)
    if not m:
        return probs + ["no 'session=N login user=alice messages=M octets=O' line"]
    sid = m.group(1)
    if int(m.group(2)) != len(before):
        probs.append("login line says messages=%s, the maildrop has %d"
                     % (m.group(2), len(before)))
    ends = [ln for ln in text.splitlines() if re.search(r"session=%s end\b" % sid, ln)]
    if len(ends) != 1:
        return probs + ["%d end lines for session %s: %s" % (len(ends), sid, ends)]
    try:
        kv = parse_end_line(ends[0])
    except ValueError as e:
        return probs + ["end line does not parse: %s" % e]
    want = {"client": real, "user": "alice", "reason": "quit", "retrieved": "2",
            "deleted": "1"}
    for k, v in want.items():
        if kv.get(k) != v:
            probs.append("%s=%r in %r, want %r" % (k, kv.get(k), ends[0], v))
    for k in ("bytes_out", "duration_ms"):
        if not re.fullmatch(r"\d+", kv.get(k, "")):
            probs.append("%s=%r is not a number" % (k, kv.get(k)))
    if not probs:
        b = int(kv["bytes_out"])
        if b not in (sum(sizes), total):
            probs.append("bytes_out=%d, want the messages' %d octets or the %d octets the "
                         "client received in all (RETR responses: %d)"
                         % (b, sum(sizes), total, wire))
        note("bytes_out=%d: the 2 messages' sizes (LIST) add up to %d octets, their "
             "responses are %d octets, the client received %d octets in all"
             % (b, sum(sizes), wire, total))
        d = int(kv["duration_ms"])
        if d > elapsed_ms + 1000:
            probs.append("duration_ms=%d, the client saw %.0f ms" % (d, elapsed_ms))
    have = set(kv)
    for keys, why in ((("upstream",), "which IMAP server the session used"),
                      (("tls",), "whether the client used TLS (and the version)"),
                      (("via", "proxy"), "the proxy's address, when proxied"),
                      (("listed", "messages"), "how many messages the maildrop listed")):
        if not any(k in have for k in keys):
            SUGGEST.setdefault("/".join(keys), why)
    return probs


def t_logout_proxied_pop3s():
    def connect():
        s = raw_connect(MAIN.sport)
        s.sendall(v1("198.51.100.30"))
        return TLSPop3(s)
    return logout_line(MAIN, connect, "198.51.100.30")


def t_logout_direct():
    return logout_line(OTHER, lambda: Client(OTHER.port, src="127.0.0.1"), "127.0.0.1")


# == other: trusted 127.0.0.2 only ============================================================

def t_other_trusted():
    return proxied_ok(OTHER, v1("198.51.100.40"), "198.51.100.40", proxy="127.0.0.2")


def t_other_untrusted_127_0_0_1():
    probs = []
    off = OTHER.offset()
    c = Client(OTHER.port, src="127.0.0.1")
    try:
        if not is_ok(c.greeting):
            return ["127.0.0.1 (untrusted here) is greeted at once -> %s" % show(c.greeting)]
        r = cmd(c, v1("198.51.100.41").rstrip(b"\r\n"))
        if not is_err(r):
            probs.append("PROXY line from untrusted 127.0.0.1 -> %s, want -ERR" % show(r))
        cmd(c, b"QUIT")
    finally:
        c.close()
    time.sleep(0.3)
    t = OTHER.text(off)
    if "client=198.51.100.41" in t or "via proxy" in t:
        probs.append("the header from untrusted 127.0.0.1 was honoured")
    if not re.search(r"session=\d+ end client=127\.0\.0\.1 ", t):
        probs.append("no 'end client=127.0.0.1' line")
    return probs


def t_other_no_header():
    return refused_trusted(OTHER, b"CAPA\r\n", "127.0.0.2 without a header", src="127.0.0.2")


# == cidr and off =============================================================================

def t_cidr():
    probs = proxied_ok(CIDR, v1("198.51.100.50"), "198.51.100.50", proxy="127.0.0.3")
    off = CIDR.offset()
    c = Client(CIDR.port, src="127.0.0.4")
    try:
        if not is_ok(c.greeting):
            probs.append("127.0.0.4 (outside 127.0.0.0/30) is greeted at once -> %s"
                         % show(c.greeting))
        else:
            r = cmd(c, v1("198.51.100.51").rstrip(b"\r\n"))
            if not is_err(r):
                probs.append("PROXY line from 127.0.0.4 -> %s, want -ERR" % show(r))
    finally:
        c.close()
    time.sleep(0.2)
    if "client=198.51.100.51" in CIDR.text(off):
        probs.append("a header from 127.0.0.4 (outside 127.0.0.0/30) was honoured")
    return probs


def t_off():
    probs = []
    off = OFF.offset()
    c = Client(OFF.port, src="127.0.0.1")
    try:
        if not is_ok(c.greeting):
            return ["proxy_protocol = no: 127.0.0.1 is greeted at once -> %s"
                    % show(c.greeting)]
        r = cmd(c, v1("198.51.100.60").rstrip(b"\r\n"))
        if not is_err(r):
            probs.append("PROXY line with proxy_protocol = no -> %s, want -ERR" % show(r))
    finally:
        c.close()
    time.sleep(0.2)
    if "client=198.51.100.60" in OFF.text(off):
        probs.append("a header was honoured with proxy_protocol = no")
    return probs


# == setup and the end =========================================================================

def make_cert():
    global CERT, KEY
    CERT = os.path.join(pbtest.SCRATCH, "cert.pem")
    KEY = os.path.join(pbtest.SCRATCH, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", KEY, "-out",
                        CERT, "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl req failed: %s" % r.stdout.decode(errors="replace")[-300:])


def setup():
    global DOVECOT, MAIN, OTHER, CIDR, OFF
    make_cert()
    DOVECOT = Dovecot(os.path.join(pbtest.SCRATCH, "dovecot")).start()
    USERS.update(DOVECOT.passwords())
    note("dovecot: imap 127.0.0.1:%d" % DOVECOT.port)
    msgs = [m for m in corpus.messages() if m[0] in ("plain", "dot-lines",
                                                    "leading-dot", "no-final-crlf")]
    DOVECOT.append("alice", msgs + corpus.generated(6, 5000, prefix="proxy"))
    base_limits = {"idle_timeout": 30, "auth_fail_delay": 0, "shutdown_grace": 2}
    MAIN = Popbridge("main", DOVECOT.port, pop3s=True, cert=CERT, key=KEY,
                     listen={"proxy_protocol": "yes", "trusted_proxies": "127.0.0.1",
                             "allow_plaintext_auth": "loopback"},
                     limits=dict(base_limits, max_per_ip=1), probe_src="127.0.0.3")
    OTHER = Popbridge("other", DOVECOT.port,
                      listen={"proxy_protocol": "yes", "trusted_proxies": "127.0.0.2"},
                      limits=dict(base_limits, max_per_ip=5), probe_src="127.0.0.1")
    CIDR = Popbridge("cidr", DOVECOT.port,
                     listen={"proxy_protocol": "yes",
                             "trusted_proxies": "127.0.0.0/30, 10.0.0.0/8"},
                     limits=dict(base_limits, max_per_ip=5), probe_src="127.0.0.4")
    OFF = Popbridge("off", DOVECOT.port,
                    listen={"proxy_protocol": "no", "trusted_proxies": "127.0.0.1"},
                    limits=dict(base_limits, max_per_ip=5), probe_src="127.0.0.1")
    ok = True
    for pb in (MAIN, OTHER, CIDR, OFF):
        err = pb.try_start()
        if err:
            R.fail("popbridge %s starts" % pb.name, [err])
            ok = False
        else:
            note("popbridge %s on 127.0.0.1:%d%s" % (pb.name, pb.port, " and pop3s :%d"
                                                       % pb.sport if pb.sport else ""))
    return ok


def cases():
    M = [MAIN]
    case("v1 TCP4 from trusted 127.0.0.1: greeted, log says client=198.51.100.7 via "
         "proxy 127.0.0.1, end client=198.51.100.7", M, t_v1_tcp4)
    case("v1 TCP6: the log names 2001:db8::7", M, t_v1_tcp6)
    case("v2 TCP4 with TLVs (authority, noop, unique id): the log names 198.51.100.8", M,
         t_v2_tcp4_tlvs)
    case("v2 TCP6: the log names 2001:db8::8", M, t_v2_tcp6)
    case("v1 UNKNOWN keeps the proxy's address", M, t_v1_unknown)
    case("v2 LOCAL keeps the proxy's address (with and without an address block)", M,
         t_v2_local)
    case("allow_plaintext_auth = loopback judges the real address (198.51.100.9 no, "
         "127.0.0.9 yes)", M, t_plaintext_auth_real_address)
    case("max_per_ip = 1 counts the real address: same client (v1, v2, IPv6 spelled two "
         "ways) refused, other clients served, freed when it ends", M, t_max_per_ip_real)
    case("a direct 127.0.0.3 and a proxied 127.0.0.3 share max_per_ip", M,
         t_direct_and_proxied_share)
    case("untrusted 127.0.0.3: greeted at once, a PROXY v1 line is an unknown "
         "command, the log shows 127.0.0.3", M, t_untrusted_v1)
    case("untrusted 127.0.0.3: a PROXY v2 header is not honoured (its QUIT ends the "
         "session)", M, t_untrusted_v2)
    case("trusted connection without a header: closed, no greeting", M, t_no_header)
    case("trusted connection with a malformed header (%d kinds): closed, no greeting"
         % len(MALFORMED), M, t_malformed)
    case("trusted connection silent, or dribbling its header a byte a second: closed "
         "after ~10 s", M, t_silent_and_dribbling)
    case("headers split into pieces, and followed by commands in the same segment", M,
         t_split_and_pipelined)
    case("pop3s + PROXY v1: the header before the TLS handshake, then login, STAT, RETR "
         "byte-exact over TLS", M, t_pop3s_v1)
    case("pop3s + PROXY v2 with the ClientHello in the same segment", M,
         t_pop3s_v2_same_segment)
    case("pop3s from the trusted proxy without a header: no TLS session", M,
         t_pop3s_no_header)
    case("pop3s from untrusted 127.0.0.3: plain implicit TLS", M, t_pop3s_untrusted)
    case("pop3s + PROXY over max_per_ip: the second session is not served", M,
         t_pop3s_over_limit)
    case("STLS after a PROXY header on the plain port", M, t_stls_after_header)
    case("logout log line (proxied pop3s): exactly one end line, user=alice "
         "reason=\"quit\" retrieved=2 deleted=1, parseable", M, t_logout_proxied_pop3s)
    case("logout log line (direct): the same with client=127.0.0.1", [OTHER],
         t_logout_direct)
    case("trusted_proxies = 127.0.0.2: its header is honoured", [OTHER], t_other_trusted)
    case("trusted_proxies = 127.0.0.2: a header from 127.0.0.1 is not honoured", [OTHER],
         t_other_untrusted_127_0_0_1)
    case("trusted_proxies = 127.0.0.2: no header from 127.0.0.2 -> closed", [OTHER],
         t_other_no_header)
    case("trusted_proxies = 127.0.0.0/30: 127.0.0.3 honoured, 127.0.0.4 not", [CIDR],
         t_cidr)
    case("proxy_protocol = no: a header from 127.0.0.1 (listed in trusted_proxies) is "
         "not honoured", [OFF], t_off)
    for k, why in SUGGEST.items():
        note("suggestion: the end line has no %s= field (%s)" % (k, why))


def main():
    def body(tmp):
        if setup():
            cases()
            for pb in (MAIN, OTHER, CIDR, OFF):
                if pb is not None and pb.proc is not None:
                    pbtest.finish_checks(R, pb)

    return pbtest.script_main(R, "PROXY protocol cases", body)


if __name__ == "__main__":
    sys.exit(main())
