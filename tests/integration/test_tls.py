#!/usr/bin/env python3
"""TLS on both sides (issue 3; SPEC §1-§3, RFC 2595, RFC 8314), for real.

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_tls.py

Self-contained, like test_faults.py: it makes a test CA and certificates
with the openssl command line (tests/lib/testca.py), starts its own private
Dovecots (tests/lib/dovecot.sh with DOVECOT_SSL_CERT/DOVECOT_SSL_KEY: imaps
plus STARTTLS on the plain port), appends the corpus (tests/lib/corpus.py)
and starts the popbridge processes it needs on free 127.0.0.1 ports:

  main      pop3 (STLS) + pop3s with a test certificate; upstream imaps
            (tls = implicit) with ca_file = the test CA. Real clients over
            TLS (curl, fetchmail, mpop, poplib), CAPA/STLS rules, the STLS
            injection cases, the 5 MB message through TLS on both sides.
  starttls  upstream tls = starttls through a recording relay.
  byname, unknownca, otherca, implicit-on-plain, stuck
            upstream variants: host name instead of IP, no ca_file, another
            CA's ca_file, implicit TLS aimed at a plain IMAP port, a peer
            that never answers the ClientHello (timeout = 3).
  badcert   upstream imaps of a second Dovecot that serves, in turn, a
            certificate for another host name and an expired one; a
            variant with verify = no; one without ca_file (unknown CA).
  nostls    upstream tls = starttls where STARTTLS is not offered: a relay
            that strips it (a MITM downgrade) and a Dovecot without TLS.
  tls10     tls_min = 1.0 (openssl s_client -tls1 / -tls1_1).
  never     allow_plaintext_auth = never.
  reload    certificate files replaced, then SIGHUP.

Every retrieved message is compared byte for byte with IMAP BODY.PEEK[]
(E(i) as in test_pop3.py / test_clients.py, after each client's known
normalisation). At the end every popbridge must still run, exit 0 on
SIGTERM, and have no sanitizer report and no secret in its debug log.

Output as in run.sh: "ok - NAME" / "not ok - NAME" plus indented
diagnostics, last line "N passed, M failed"; exit status 1 when anything
failed. Environment: POPBRIDGE (default build/asan/popbridge), TARGET
(run.sh's; anything but "popbridge" skips), TEST_TMP (scratch directory;
a private one otherwise), KEEP_TMP=1 (keep that private one),
ONLY_CASE=substring (run only the cases whose name contains it).
"""

import base64
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LIB = os.path.join(ROOT, "tests", "lib")
sys.path.insert(0, LIB)
sys.path.insert(0, HERE)

from common import (Report, compare_deliveries, delivered, fetchmail_want,  # noqa: E402
                    first_diff, mda_dir, mpop_want, rc_string)
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
import testca  # noqa: E402
from pbtest import HOST  # noqa: E402
from pop3wire import Pop3, is_ok  # noqa: E402

REPLY_WAIT = 15.0           # longest wait for one POP3 reply
CLIENT_TIMEOUT = 90         # one run of curl / fetchmail / mpop
POPBRIDGE = pbtest.default_popbridge()
ONLY = os.environ.get("ONLY_CASE", "")
USER = "alice"

poplib._MAXLINE = 1 << 20   # the corpus has 65,537-octet lines


R = Report(max_lines=24)
TMP = ""
CA = None           # testca.TestCA
C = {}              # certificates by name (testca.Cert)
DA = DB = ""        # Dovecot directories
PORTS = {}          # "A"/"B" -> {"imap": n, "imaps": n}
PW = ""             # alice's password
E = None            # Expected
PBS = []            # every popbridge started
RELAYS = []
STARTED_DOVECOTS = []
USED_PORTS = set()


def need(cond, msg):
    if not cond:
        raise AssertionError(msg)


def case(name, fn, *a, **kw):
    if ONLY and ONLY not in name:
        return
    R.case(name, fn, *a, **kw)


# -- processes ------------------------------------------------------------------

def free_port():
    port = pbtest.free_port(USED_PORTS)
    USED_PORTS.add(port)
    return port


DOVECOT_ENV = ("DOVECOT_SSL_CERT", "DOVECOT_SSL_KEY", "DOVECOT_IMAPS_PORT",
               "DOVECOT_EXTRA_CONF", "DOVECOT_POP3", "DOVECOT_USERS")


def dovecot(action, d, cert=None):
    """dovecot_start / dovecot_stop from tests/lib/dovecot.sh (sourced by
    bash). Start returns {"imap": port, "imaps": port or 0}."""
    env = {k: v for k, v in os.environ.items() if k not in DOVECOT_ENV}
    if cert is not None:
        # The leaf alone, as many servers send it: an unknown CA then shows
        # as "unable to get local issuer certificate" (with the CA in the
        # chain OpenSSL says "self-signed certificate in certificate chain").
        env["DOVECOT_SSL_CERT"] = cert.cert
        env["DOVECOT_SSL_KEY"] = cert.key
    script = ('. "$1/dovecot.sh" || exit 1\n'
              'dovecot_%s "$2" || exit 1\n'
              '[ -f "$2/ports" ] && . "$2/ports"\n'
              'echo "PORTS ${DOVECOT_IMAP_PORT:-0} ${DOVECOT_IMAPS_PORT:-0}"\n' % action)
    if action == "start" and d not in STARTED_DOVECOTS:
        STARTED_DOVECOTS.append(d)      # stopped at the end even if this breaks
    p = subprocess.run(["bash", "-c", script, "test_tls-dovecot", LIB, d],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("dovecot_%s %s failed: %s" % (
            action, d, p.stderr.decode("utf-8", "replace").strip()[-800:]))
    if action == "start":
        m = re.search(rb"PORTS (\d+) (\d+)", p.stdout)
        return {"imap": int(m.group(1)), "imaps": int(m.group(2))}
    return None


def dovecot_log_size(d):
    return pbtest.file_size(os.path.join(d, "dovecot.log"))


def dovecot_log(d, off=0):
    return pbtest.read_text(os.path.join(d, "dovecot.log"), off)


def dovecot_users(d):
    return pbtest.users_file(os.path.join(d, "users"))


def append_corpus(imap_port, user, password, only=None):
    argv = [sys.executable, os.path.join(LIB, "corpus.py"), "--port", str(imap_port),
            "--user", user, "--password", password]
    if only:
        argv += ["--only", only]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("corpus.py: %s" % p.stderr.decode("utf-8", "replace")[-600:])


class Popbridge:
    """One popbridge process with its own configuration, state and log."""

    def __init__(self, name, upstream, pop3s=False, cert=None, key=None,
                 tls_min=None, allow=None, timeout=10):
        self.name = name
        self.dir = os.path.join(TMP, "pb-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.sport = free_port() if pop3s else None
        self.cert, self.key = cert, key
        self.conf = os.path.join(self.dir, "popbridge.ini")
        self.logpath = os.path.join(self.dir, "popbridge.log")
        lines = ["[listen]", "pop3 = %s:%d" % (HOST, self.port),
                 "pop3s = " + ("%s:%d" % (HOST, self.sport) if pop3s else "")]
        if cert:
            lines += ["cert = " + cert, "key = " + key]
        if tls_min:
            lines.append("tls_min = " + tls_min)
        if allow:
            lines.append("allow_plaintext_auth = " + allow)
        lines += ["", "[upstream]"]
        for k in ("host", "port", "tls", "ca_file", "verify"):
            if k in upstream:
                lines.append("%s = %s" % (k, upstream[k]))
        lines += ["timeout = %d" % timeout, "",
                  "[state]", "dir = " + os.path.join(self.dir, "state"), "",
                  "[limits]", "auth_fail_delay = 0", "idle_timeout = 60",
                  "shutdown_grace = 5", "",
                  "[log]", "level = debug", ""]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))
        self.proc = None
        self.rc = None

    def start(self):
        self.proc = pbtest.spawn(POPBRIDGE, self.conf, self.logpath, append=True)
        PBS.append(self)
        why = pbtest.wait_greeting(self.proc, self.port)
        if why == "exited":
            raise RuntimeError("popbridge %s exited with status %s: %s" % (
                self.name, self.proc.returncode, self.log()[-600:]))
        if why:
            raise RuntimeError("popbridge %s does not greet on port %d within 30 s"
                               % (self.name, self.port))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_size(self):
        return pbtest.file_size(self.logpath)

    def log(self, off=0):
        return pbtest.read_text(self.logpath, off)

    def wait_log(self, pattern, off=0, secs=5.0):
        """The first log line since off matching pattern (regex), or None."""
        rx = re.compile(pattern, re.I)
        deadline = time.time() + secs
        while True:
            for ln in self.log(off).splitlines():
                if rx.search(ln):
                    return ln
            if time.time() >= deadline:
                return None
            time.sleep(0.1)

    def tail(self, off=0, n=8, pattern=r"warn|error|fail|tls|upstream|<[34]>"):
        rx = re.compile(pattern, re.I)
        return ["log: " + ln for ln in self.log(off).splitlines() if rx.search(ln)][-n:]

    def stop(self, secs=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.rc = self.proc.wait(secs)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.rc = "still running %d s after SIGTERM" % secs
        elif self.rc is None:
            self.rc = self.proc.returncode
        return self.rc


def start_pb(name, **kw):
    return Popbridge(name, **kw).start()


class Relay:
    """A TCP relay 127.0.0.1:port -> target that records every connection's
    bytes; strip (bytes) is cut out of whatever the server sends in clear
    (a STARTTLS-stripping man in the middle)."""

    def __init__(self, target, strip=None):
        self.target = target
        self.strip = strip
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.conns = []     # [{"c2s": bytearray, "s2c": bytearray}]
        self.socks = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        RELAYS.append(self)

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection((HOST, self.target), timeout=10)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            rec = {"c2s": bytearray(), "s2c": bytearray()}
            with self.lock:
                self.conns.append(rec)
                self.socks += [c, s]
            threading.Thread(target=self._pump, args=(c, s, rec["c2s"], False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, rec["s2c"], True),
                             daemon=True).start()

    def _pump(self, src, dst, rec, from_server):
        tls = False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                rec += data
                if from_server and self.strip and not tls:
                    if data[:1] in (b"\x14", b"\x15", b"\x16", b"\x17"):
                        tls = True
                    else:
                        data = data.replace(self.strip, b"")
                dst.sendall(data)
        except OSError:
            pass
        for x in (dst,):
            try:
                x.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def records(self):
        with self.lock:
            return [{"c2s": bytes(r["c2s"]), "s2c": bytes(r["s2c"])} for r in self.conns]

    def stop(self):
        self.stopped = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


def clear_part(c2s):
    """What popbridge sent upstream before a TLS handshake began (a record
    starting 0x16 0x03 right after a line end), and whether one began."""
    m = re.search(rb"(?:^|\n)\x16\x03", c2s)
    if not m:
        return c2s, False
    return c2s[:m.start() + (1 if c2s[m.start():m.start() + 1] == b"\n" else 0)], True


CRED_RX = re.compile(rb"(?im)^\S+ (LOGIN|AUTHENTICATE)\b")


# -- expectations ---------------------------------------------------------------

class Expected:
    """alice's INBOX as POP3 must present it (IMAP BODY.PEEK[], UID order)."""

    def __init__(self, port, user, password):
        conn = imapfetch.connect(port, user, password)
        try:
            rows = imapfetch.fetch_all(conn, "INBOX")
        finally:
            conn.logout()
        self.raw = [d for _, d in rows]
        exp = [imapfetch.pop3_expected(d) for d in self.raw]
        self.retr = [e for e, _ in exp]
        self.size = [s for _, s in exp]
        self.names = []
        for d in self.raw:
            m = re.search(rb"^X-Corpus-Name: (\S+)", d, re.M)
            self.names.append(m.group(1).decode() if m else "?")

    def __len__(self):
        return len(self.retr)

    def label(self, i):
        return "%d (%s)" % (i, self.names[i - 1])

    def index(self, name):
        return self.names.index(name) + 1


# -- POP3 over TLS ------------------------------------------------------------------

def client_ctx(cafile=None):
    ctx = ssl.create_default_context(cafile=cafile or CA.cert)
    return ctx


class P3(Pop3):
    """pop3wire.Pop3 over a plain or an implicit-TLS connection, with STLS."""

    def __init__(self, port, tls=False, ctx=None, timeout=REPLY_WAIT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""
        if tls:
            self.sock = (ctx or client_ctx()).wrap_socket(self.sock, server_hostname=HOST)
        self.greeting = self.line()

    def stls(self, ctx=None):
        r = self.cmd("STLS")
        if not is_ok(r):
            return r
        if self.buf:
            raise AssertionError("plaintext after STLS's +OK: %r" % self.buf[:200])
        self.sock = (ctx or client_ctx()).wrap_socket(self.sock, server_hostname=HOST)
        return r

    def fingerprint(self):
        return testca.fingerprint_der(self.sock.getpeercert(binary_form=True))

    def quiet(self, secs):
        """Whatever arrives within secs (b"" when nothing)."""
        self.sock.settimeout(secs)
        got = self.buf
        self.buf = b""
        try:
            while len(got) < 65536:
                chunk = self.sock.recv(65536)
                if not chunk:
                    got += b"<closed>"
                    break
                got += chunk
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        finally:
            self.sock.settimeout(REPLY_WAIT)
        return got


def parse_capa(body):
    caps = {}
    for line in body.split(b"\r\n"):
        if line:
            w = line.decode("latin-1").split()
            caps[w[0].upper()] = [x.upper() for x in w[1:]]
    return caps


def capa(p):
    r = p.cmd("CAPA")
    need(is_ok(r), "CAPA -> %r" % r)
    _, body, probs = p.multi()
    need(not probs, "CAPA: %s" % probs)
    return parse_capa(body), body


def login(p, user=USER, pw=None):
    r = p.login(user, pw or PW)
    need(is_ok(r), "login as %s -> %r" % (user, r))


def retr_exact(p, i):
    """RETR i: the wire bytes must be dotstuff(E(i)) + '.CRLF'."""
    r = p.cmd("RETR %d" % i)
    if not is_ok(r):
        return ["RETR %s -> %r" % (E.label(i), r)]
    raw, data, probs = p.multi()
    want = imapfetch.dotstuff(E.retr[i - 1])
    out = ["RETR %s: %s" % (E.label(i), x) for x in probs]
    if raw != want:
        out.append("RETR %s on the wire: %s" % (E.label(i), first_diff(raw, want)))
    return out


def is_temp(r):
    return isinstance(r, bytes) and r.startswith(b"-ERR [SYS/TEMP]") and b"wait" in r.lower()


# -- upstream cases ---------------------------------------------------------------------

def dovecot_tls_logins(d, off, secs=3.0):
    """Dovecot's login lines for alice since off (waits up to secs for one)."""
    deadline = time.time() + secs
    while True:
        lines = [ln for ln in dovecot_log(d, off).splitlines()
                 if "Login: user=<%s>" % USER in ln]
        if lines or time.time() >= deadline:
            return lines
        time.sleep(0.1)


def upstream_works(pb, dove_dir, want_tls_login=True):
    """USER/PASS, STAT, RETR 1 and 2 byte-exact, QUIT through pb; Dovecot
    logs the login as made over TLS."""
    doff = dovecot_log_size(dove_dir)
    off = pb.log_size()
    probs = []
    p = P3(pb.port)
    try:
        r = p.login(USER, PW)
        if not is_ok(r):
            return ["PASS -> %r" % r] + pb.tail(off)
        r = p.cmd("STAT")
        want = b"+OK %d %d\r\n" % (len(E), sum(E.size))
        if dove_dir == DA and r != want:
            probs.append("STAT -> %r, want %r" % (r, want))
        for i in (1, 2):
            probs += retr_exact(p, i)
        r = p.cmd("QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %r" % r)
    finally:
        p.close()
    if want_tls_login:
        logins = dovecot_tls_logins(dove_dir, doff)
        if not logins:
            probs.append("Dovecot logged no login for %s" % USER)
        elif not all(re.search(r"\bTLS\b", ln) for ln in logins):
            probs.append("Dovecot logged a login without TLS: %s" % logins[-1])
    return probs


def upstream_refused(pb, dove_dir, reason_rx):
    """PASS gets -ERR [SYS/TEMP] ... wait; popbridge's log names the
    reason; Dovecot saw no login."""
    doff = dovecot_log_size(dove_dir)
    off = pb.log_size()
    probs = []
    p = P3(pb.port)
    try:
        r = p.login(USER, PW)
        if not is_temp(r):
            probs.append("PASS -> %r, want -ERR [SYS/TEMP] ... wait ..." % r)
        r = p.cmd("QUIT")
        if not is_ok(r):
            probs.append("QUIT after the refused login -> %r" % r)
    finally:
        p.close()
    ln = pb.wait_log(reason_rx, off)
    if ln is None:
        probs.append("popbridge's log has no line matching /%s/" % reason_rx)
        probs += pb.tail(off)
    logins = [x for x in dovecot_log(dove_dir, doff).splitlines()
              if "user=<%s>" % USER in x]
    if logins:
        probs.append("Dovecot saw a login attempt: %s" % logins[-1])
    return probs


def strip_relay_case(pb, relay):
    """tls = starttls, STARTTLS not offered: refused, credentials never sent."""
    n0 = len(relay.records())
    probs = upstream_refused(pb, DA if relay.target == PORTS["A"]["imap"] else DB,
                             r"STARTTLS")
    recs = relay.records()[n0:]
    if not recs:
        return probs + ["popbridge never connected through the relay"]
    for rec in recs:
        clear, tls = clear_part(rec["c2s"])
        if CRED_RX.search(clear):
            probs.append("credentials went upstream in clear: %r" % clear[:300])
        if tls:
            probs.append("popbridge started TLS although STARTTLS was not offered")
        if b"STARTTLS" in rec["s2c"] and relay.strip is None:
            probs.append("the upstream offered STARTTLS after all: %r" % rec["s2c"][:200])
    if not [ln for ln in pb.log().splitlines() if re.search(r"does not offer STARTTLS", ln)]:
        probs.append("the log does not say the upstream lacks STARTTLS")
    return probs


def starttls_case(pb, relay):
    n0 = len(relay.records())
    probs = upstream_works(pb, DA)
    recs = relay.records()[n0:]
    if not recs:
        return probs + ["popbridge never connected through the relay"]
    for rec in recs:
        clear, tls = clear_part(rec["c2s"])
        if not re.search(rb"(?m)^\S+ STARTTLS\r\n", clear):
            probs.append("no STARTTLS command in the clear part: %r" % clear[:200])
        if not tls:
            probs.append("no TLS handshake followed STARTTLS: %r" % rec["c2s"][:200])
        if CRED_RX.search(clear):
            probs.append("credentials went upstream in clear: %r" % clear[:300])
    return probs


class Silent:
    """A TCP server that accepts and never says a word (a stuck upstream)."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()
        RELAYS.append(self)

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(c)

    def stop(self):
        for x in [self.lsock] + self.socks:
            try:
                x.close()
            except OSError:
                pass


def upstream_stuck(pb, limit):
    """The upstream accepts TCP but never answers the ClientHello:
    -ERR [SYS/TEMP] after [upstream] timeout, not a hang."""
    off = pb.log_size()
    p = P3(pb.port, timeout=limit + 10)
    try:
        t0 = time.time()
        r = p.login(USER, PW)
        dt = time.time() - t0
        need(is_temp(r), "PASS -> %r after %.1fs, want -ERR [SYS/TEMP] ... wait" % (r, dt))
        need(dt <= limit + 3, "the refusal took %.1fs ([upstream] timeout = %d)" % (dt, limit))
        r = p.cmd("QUIT")
        need(is_ok(r), "QUIT -> %r" % r)
    finally:
        p.close()
    need(pb.wait_log(r"upstream unavailable|upstream failed", off, 3),
         "nothing logged about the stuck upstream: %s" % pb.tail(off))


def pop3s_plaintext_client(pb):
    """A client speaking plain POP3 to the pop3s port: the greeting must never
    appear in clear, and the connection is closed."""
    s = socket.create_connection((HOST, pb.sport), timeout=5)
    got = b""
    closed = False
    try:
        s.sendall(b"CAPA\r\nUSER alice\r\n")
        deadline = time.time() + 8
        while time.time() < deadline:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    need(b"+OK" not in got and b"-ERR" not in got and b"USER" not in got,
         "POP3 text in clear on the pop3s port: %r" % got[:200])
    need(closed, "the connection stayed open 8 s after plaintext on pop3s")
    need(pb.alive(), "popbridge died")


def verify_no_warned(pb):
    text = pb.log()
    lines = text.splitlines()
    started = [k for k, ln in enumerate(lines) if " started; upstream " in ln]
    warn = [k for k, ln in enumerate(lines)
            if re.search(r"verify\s*=\s*no", ln) and (ln.startswith("<4>") or "warn" in ln.lower())]
    need(warn, "no start-up warning about verify = no: %s" % lines[:8])
    need(started and warn[0] < started[0],
         "the verify = no warning is not logged at start-up (before 'started'): %s"
         % lines[:8])


# -- downstream: real clients ---------------------------------------------------------

def run(argv, timeout=CLIENT_TIMEOUT, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, timeout=timeout, **kw)


def tail(b, n=6):
    return b.decode("utf-8", "replace").strip().splitlines()[-n:]


def curl_all(scheme, port, extra):
    probs = []
    url = "%s://%s:%d/" % (scheme, HOST, port)
    d = os.path.join(TMP, "curl-" + scheme)
    os.makedirs(d, exist_ok=True)
    for i in range(1, len(E) + 1):
        out = os.path.join(d, "%d.eml" % i)
        p = run(["curl", "-s", "-S", "--max-time", "60", "--cacert", CA.cert,
                 "-u", "%s:%s" % (USER, PW), "-o", out] + extra + [url + str(i)])
        if p.returncode != 0:
            probs.append("curl %s%d: exit %d %s" % (url, i, p.returncode, tail(p.stderr)))
            if p.returncode in (28, 35, 60):   # timeout / TLS: the rest would too
                break
            continue
        with open(out, "rb") as f:
            got = f.read()
        if got != E.retr[i - 1]:
            probs.append("curl message %s: %s" % (E.label(i), first_diff(got, E.retr[i - 1])))
    return probs


def curl_without_ca(port):
    """curl pop3s:// trusting only another CA refuses the certificate (exit
    60, CURLE_PEER_FAILED_VERIFICATION): the check above is not vacuous."""
    p = run(["curl", "-s", "-S", "--max-time", "30", "--cacert", C["other-ca"].cert,
             "-u", "%s:%s" % (USER, PW), "pop3s://%s:%d/" % (HOST, port)])
    need(p.returncode == 60, "curl trusting another CA: exit %d (want 60) %s" % (
        p.returncode, tail(p.stderr)))














def fetchmail_case(port, tls_lines, name):
    d, script, out = mda_dir(TMP, name)
    home = os.path.join(d, "home")
    os.makedirs(home, mode=0o700)
    rc = os.path.join(d, "fetchmailrc")
    with open(rc, "w") as f:
        f.write("set no bouncemail\n"
                "set invisible\n"
                # fetchmail matches the certificate against the name it
                # connects to (CN or DNS names only, never an IP address
                # SAN; with "via" the via name): so "localhost"
                "poll localhost service %d protocol pop3 uidl auth password timeout 60\n"
                "  user %s there with password %s is \"root\" here\n"
                "  keep\n  no rewrite\n  no mimedecode\n  no stripcr\n"
                "  no dropstatus\n  no dropdelivered\n"
                "%s"
                "  sslcertck\n"
                "  sslcertfile %s\n"
                "  mda %s\n"
                % (port, rc_string(USER), rc_string(PW), tls_lines,
                   rc_string(CA.cert), rc_string("%s %s" % (script, out))))
    os.chmod(rc, 0o600)
    env = dict(os.environ, FETCHMAILHOME=home, HOME=home)
    p = run(["fetchmail", "-f", rc, "-N", "-d0", "--nosyslog", "-v",
             "--idfile", os.path.join(d, "fetchids"), "--pidfile", os.path.join(d, "pid")],
            env=env)
    log = (p.stdout + p.stderr)
    with open(os.path.join(d, "run.log"), "wb") as f:
        f.write(log)
    probs = []
    if p.returncode != 0:
        probs.append("fetchmail exit %d: %s" % (p.returncode, tail(log, 8)))
    text = log.decode("utf-8", "replace")
    if not re.search(r"(?i)(SSL|TLS)", text):
        probs.append("fetchmail's verbose log does not mention TLS at all")
    probs += compare_deliveries(E, delivered(out), fetchmail_want, "fetchmail")
    return probs, text


def fetchmail_pop3s(port):
    probs, _ = fetchmail_case(port, "  ssl\n", "fetchmail-pop3s")
    return probs


def fetchmail_stls(port):
    probs, text = fetchmail_case(port, "  sslproto 'tls1.2+'\n", "fetchmail-stls")
    if "STLS" not in text:
        probs.append("fetchmail's verbose log shows no STLS command")
    return probs




def mpop_case(port, starttls, name):
    d, script, out = mda_dir(TMP, name)
    pwfile = os.path.join(d, "pw")
    with open(pwfile, "w") as f:
        f.write(PW)
    os.chmod(pwfile, 0o600)
    argv = ["mpop", "--host=%s" % HOST, "--port=%d" % port, "--auth=user",
            "--user=%s" % USER, "--passwordeval=cat %s" % pwfile,
            "--tls=on", "--tls-starttls=%s" % ("on" if starttls else "off"),
            "--tls-trust-file=%s" % CA.cert, "--tls-certcheck=on", "--timeout=60",
            "--uidls-file=%s" % os.path.join(d, "uidls"),
            "--delivery=mda,%s %s" % (script, out),
            "--received-header=off", "--keep=on", "--only-new=on", "-q"]
    p = run(argv, env=dict(os.environ, HOME=d))
    with open(os.path.join(d, "run.log"), "wb") as f:
        f.write(p.stdout + p.stderr)
    probs = []
    if p.returncode != 0:
        probs.append("mpop exit %d: %s" % (p.returncode, tail(p.stdout + p.stderr)))
    probs += compare_deliveries(E, delivered(out), mpop_want, "mpop")
    return probs


def poplib_check(p, who):
    probs = []
    p.user(USER)
    r = p.pass_(PW)
    if not r.startswith(b"+OK"):
        return ["%s: PASS -> %r" % (who, r)]
    n, _ = p.stat()
    if n != len(E):
        probs.append("%s: STAT says %d messages, want %d" % (who, n, len(E)))
    for i in range(1, len(E) + 1):
        _, lines, octets = p.retr(i)
        got = b"\r\n".join(lines) + b"\r\n"
        if got != E.retr[i - 1]:
            probs.append("%s message %s: %s" % (who, E.label(i), first_diff(got, E.retr[i - 1])))
        elif octets != len(E.retr[i - 1]):
            probs.append("%s message %s: %d octets, want %d" % (who, E.label(i), octets,
                                                               len(E.retr[i - 1])))
    p.quit()
    return probs


def poplib_pop3s(port):
    p = poplib.POP3_SSL(HOST, port, context=client_ctx(), timeout=60)
    return poplib_check(p, "POP3_SSL")


def poplib_stls(port):
    p = poplib.POP3(HOST, port, timeout=60)
    p.stls(context=client_ctx())
    need(isinstance(p.sock, ssl.SSLSocket), "poplib.stls() left the socket plain")
    return poplib_check(p, "POP3.stls()")


# -- downstream: CAPA, STLS, plaintext rules --------------------------------------

def capa_plain_offers_stls(pb):
    p = P3(pb.port)
    try:
        caps, body = capa(p)
        need("STLS" in caps, "CAPA before TLS lacks STLS: %r" % body)
        need("USER" in caps and "PLAIN" in caps.get("SASL", []),
             "CAPA from loopback (allow_plaintext_auth = loopback) lacks USER or "
             "SASL PLAIN: %r" % body)
    finally:
        p.close()


def capa_after_stls(pb):
    p = P3(pb.port)
    try:
        r = p.stls()
        need(is_ok(r), "STLS -> %r" % r)
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA after STLS still offers STLS: %r" % body)
        need("USER" in caps and "PLAIN" in caps.get("SASL", []),
             "CAPA after STLS lacks USER or SASL PLAIN: %r" % body)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "a second STLS -> %r, want -ERR" % r)
        login(p)
        need(is_ok(p.cmd("STAT")), "STAT after STLS + login failed")
        p.cmd("QUIT")
    finally:
        p.close()


def capa_pop3s(pb):
    p = P3(pb.sport, tls=True)
    try:
        need(p.greeting.startswith(b"+OK"), "pop3s greeting %r" % p.greeting)
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA on pop3s offers STLS: %r" % body)
        need("USER" in caps and "PLAIN" in caps.get("SASL", []),
             "CAPA on pop3s lacks USER or SASL PLAIN: %r" % body)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "STLS on pop3s -> %r, want -ERR" % r)
        login(p)
        p.cmd("QUIT")
    finally:
        p.close()


def pop3s_fingerprint(pb, cert):
    p = P3(pb.sport, tls=True)
    try:
        fp = p.fingerprint()
        need(fp == cert.fingerprint(), "pop3s presents %s, want %s (%s)" % (
            fp, cert.fingerprint(), cert.name))
    finally:
        p.close()


def stls_in_transaction(pb):
    p = P3(pb.port)
    try:
        login(p)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "STLS in TRANSACTION -> %r, want -ERR" % r)
        need(is_ok(p.cmd("NOOP")), "the session does not go on after the refused STLS")
        p.cmd("QUIT")
    finally:
        p.close()


def no_stls_without_cert(pb):
    p = P3(pb.port)
    try:
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA without cert/key offers STLS: %r" % body)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "STLS without cert/key -> %r, want -ERR" % r)
        p.cmd("QUIT")
    finally:
        p.close()


def stls_injection_capa(pb):
    """'STLS\\r\\nCAPA\\r\\n' in one write: the CAPA sent in clear must not
    be answered, neither in clear nor inside TLS."""
    p = P3(pb.port)
    try:
        p.send(b"STLS\r\nCAPA\r\n")
        r = p.line()
        need(is_ok(r), "STLS -> %r" % r)
        time.sleep(0.3)
        extra = p.quiet(0.7)
        need(not extra, "after STLS's +OK the server sent in clear: %r" % extra[:200])
        try:
            p.sock = client_ctx().wrap_socket(p.sock, server_hostname=HOST)
        except ssl.SSLError as e:
            raise AssertionError("TLS handshake after the injected STLS failed: %s" % e)
        got = p.quiet(1.5)
        need(not got, "inside TLS, unasked, the server sent %r: the CAPA injected in "
             "clear was answered (CVE-2011-0411 class)" % got[:300])
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA inside TLS offers STLS: %r" % body)
        got = p.quiet(0.7)
        need(not got, "after one CAPA inside TLS a second answer followed: %r" % got[:300])
        p.cmd("QUIT")
    finally:
        p.close()


def stls_injection_user(pb):
    """USER before STLS is forgotten: PASS after STLS gets -ERR."""
    p = P3(pb.port)
    try:
        r = p.cmd("USER " + USER)
        need(is_ok(r), "USER in clear from loopback -> %r (allow_plaintext_auth = "
             "loopback should accept it)" % r)
        r = p.stls()
        need(is_ok(r), "STLS -> %r" % r)
        r = p.cmd("PASS " + PW)
        need(r.startswith(b"-ERR"), "PASS after STLS (USER given before STLS) -> %r, "
             "want -ERR: the USER was not forgotten" % r)
        r = p.login(USER, PW)
        need(is_ok(r), "USER/PASS after that -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()


def stls_injection_user_pipelined(pb):
    """'STLS\\r\\nUSER alice\\r\\n' in one write, then TLS and PASS: the
    injected USER must not count."""
    p = P3(pb.port)
    try:
        p.send(b"STLS\r\nUSER " + USER.encode() + b"\r\n")
        r = p.line()
        need(is_ok(r), "STLS -> %r" % r)
        extra = p.quiet(0.7)
        need(not extra, "after STLS's +OK the server sent in clear: %r" % extra[:200])
        p.sock = client_ctx().wrap_socket(p.sock, server_hostname=HOST)
        got = p.quiet(1.0)
        need(not got, "inside TLS, unasked, the server sent %r" % got[:200])
        r = p.cmd("PASS " + PW)
        need(r.startswith(b"-ERR"), "PASS after an injected USER -> %r, want -ERR" % r)
        p.cmd("QUIT")
    finally:
        p.close()


def never_before_tls(pb):
    probs = []
    p = P3(pb.port)
    try:
        caps, body = capa(p)
        if "STLS" not in caps:
            probs.append("CAPA lacks STLS: %r" % body)
        if "USER" in caps:
            probs.append("CAPA offers USER before TLS with allow_plaintext_auth = never")
        if "PLAIN" in caps.get("SASL", []):
            probs.append("CAPA offers SASL PLAIN before TLS with allow_plaintext_auth = never")
        r = p.cmd("USER " + USER)
        if not (r.startswith(b"-ERR") and re.search(rb"STLS|TLS", r)):
            probs.append("USER before TLS -> %r, want -ERR naming STLS" % r)
        r = p.cmd("PASS " + PW)
        if not r.startswith(b"-ERR"):
            probs.append("PASS before TLS -> %r, want -ERR" % r)
        tok = base64.b64encode(b"\0" + USER.encode() + b"\0" + PW.encode())
        r = p.cmd(b"AUTH PLAIN " + tok)
        if not (r.startswith(b"-ERR") and re.search(rb"STLS|TLS", r)):
            probs.append("AUTH PLAIN (initial response) before TLS -> %r, want -ERR naming STLS" % r)
        r = p.cmd("AUTH PLAIN")
        if not r.startswith(b"-ERR"):
            probs.append("AUTH PLAIN (no initial response) before TLS -> %r, want -ERR "
                         "(the client must not be asked for credentials)" % r)
            if r.startswith(b"+"):
                p.cmd("*")
        r = p.cmd("AUTH")
        if is_ok(r):
            _, body, _ = p.multi()
            if b"PLAIN" in body:
                probs.append("bare AUTH lists PLAIN before TLS: %r" % body)
        r = p.cmd("STAT")
        if not r.startswith(b"-ERR"):
            probs.append("STAT before login -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    return probs


def never_after_stls(pb):
    probs = []
    p = P3(pb.port)
    try:
        r = p.stls()
        need(is_ok(r), "STLS -> %r" % r)
        caps, body = capa(p)
        if "USER" not in caps or "PLAIN" not in caps.get("SASL", []):
            probs.append("CAPA after STLS lacks USER or SASL PLAIN: %r" % body)
        r = p.login(USER, PW)
        if not is_ok(r):
            probs.append("USER/PASS after STLS -> %r" % r)
        else:
            probs += retr_exact(p, 1)
        p.cmd("QUIT")
    finally:
        p.close()
    p = P3(pb.port)
    try:
        p.stls()
        r = p.auth_plain(USER, PW)
        if not is_ok(r):
            probs.append("AUTH PLAIN after STLS -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    p = P3(pb.sport, tls=True)
    try:
        r = p.login(USER, PW)
        if not is_ok(r):
            probs.append("USER/PASS on pop3s -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    return probs


# -- tls_min ------------------------------------------------------------------------------

def s_client(port, version):
    """(greeted, protocol, output) of openssl s_client -VERSION on pop3s."""
    argv = ["openssl", "s_client", "-connect", "%s:%d" % (HOST, port), version,
            "-CAfile", CA.cert, "-verify_return_error", "-ign_eof"]
    if version in ("-tls1", "-tls1_1"):
        argv += ["-cipher", "DEFAULT@SECLEVEL=0"]
    try:
        p = subprocess.run(argv, input=b"QUIT\r\n", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
    except subprocess.TimeoutExpired:
        return False, None, "s_client timed out"
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    greeted = bool(re.search(r"(?m)^\+OK", p.stdout.decode("latin-1")))
    m = re.search(r"Protocol\s*:\s*(\S+)", out)
    return greeted, (m.group(1) if m else None), out


def old_tls_accepted(pb, version, proto):
    greeted, got, out = s_client(pb.sport, version)
    lines = [ln for ln in out.splitlines() if re.search(r"error|alert|Protocol|Cipher|\+OK", ln)]
    need(greeted, "openssl s_client %s against tls_min = 1.0: no greeting; %s" % (version, lines[:6]))
    need(got == proto, "negotiated %s, want %s" % (got, proto))


def old_tls_refused(pb, version):
    off = pb.log_size()
    greeted, got, out = s_client(pb.sport, version)
    lines = [ln for ln in out.splitlines() if re.search(r"error|alert|Protocol|\+OK", ln)]
    need(not greeted, "openssl s_client %s got a greeting from the default tls_min = 1.2 "
         "listener: %s" % (version, lines[:6]))
    ln = pb.wait_log(r"TLS handshake failed|unsupported protocol|version", off, 3)
    need(ln is not None, "popbridge logged nothing about the refused handshake: %s"
         % pb.tail(off))


def tls_min_warned(pb):
    """tls_min below 1.2 lowers OpenSSL's security level: said at start."""
    text = pb.log()
    need(re.search(r"tls_min = 1\.0: TLS 1\.0 and 1\.1 are broken", text),
         "no warning about tls_min = 1.0 at start: %s" % pb.tail(0))


def untrusted_cert_hint(pb):
    """A client that does not trust our certificate aborts the handshake:
    the log says so with a hint, and the session sent nothing it could
    read (bytes_out=0)."""
    off = pb.log_size()
    ctx = ssl.create_default_context()          # the system store: not our CA
    raw = socket.create_connection((HOST, pb.sport), timeout=10)
    try:
        ctx.wrap_socket(raw, server_hostname="localhost")
        need(False, "the handshake succeeded without trusting our CA")
    except ssl.SSLError:
        pass
    finally:
        raw.close()
    ln = pb.wait_log(r"refused our certificate.*install one it trusts", off, 5)
    need(ln is not None, "no hint about the refused certificate: %s" % pb.tail(off))
    end = pb.wait_log(r" end client=.*TLS handshake failed", off, 5)
    need(end is not None and " bytes_out=0 " in end,
         "end line should say bytes_out=0: %r" % end)


# -- reload ---------------------------------------------------------------------------------

def replace_file(src, dst):
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dst)


def reload_case(pb, old, new):
    probs = []
    old_s = P3(pb.sport, tls=True)
    try:
        fp = old_s.fingerprint()
        need(fp == old.fingerprint(), "before SIGHUP: %s, want %s" % (fp, old.fingerprint()))
        login(old_s)
        replace_file(new.chain, pb.cert)
        replace_file(new.key, pb.key)
        off = pb.log_size()
        pb.proc.send_signal(signal.SIGHUP)
        ln = pb.wait_log(r"reloaded|reload", off, 5)
        need(ln is not None and "fail" not in ln.lower(),
             "no 'configuration reloaded' line after SIGHUP: %s" % pb.tail(off))
        n = P3(pb.sport, tls=True)
        try:
            fp = n.fingerprint()
            if fp != new.fingerprint():
                probs.append("a new pop3s connection after SIGHUP presents %s, want the new "
                             "certificate %s (serial %s)" % (fp, new.fingerprint(), new.serial))
            peer = n.sock.getpeercert()
            subj = dict(x[0] for x in peer.get("subject", ()))
            if subj.get("commonName") != "popbridge-reloaded":
                probs.append("new certificate's CN is %r" % subj.get("commonName"))
            login(n)
            probs += retr_exact(n, 1)
            n.cmd("QUIT")
        finally:
            n.close()
        s = P3(pb.port)
        try:
            need(is_ok(s.stls()), "STLS after reload failed")
            if s.fingerprint() != new.fingerprint():
                probs.append("STLS after SIGHUP presents %s, want %s" % (s.fingerprint(),
                                                                        new.fingerprint()))
            s.cmd("QUIT")
        finally:
            s.close()
        # The session opened before the reload goes on over its old TLS.
        r = old_s.cmd("STAT")
        if not is_ok(r):
            probs.append("the session opened before SIGHUP: STAT -> %r" % r)
        probs += ["session opened before SIGHUP: " + x for x in retr_exact(old_s, 2)]
        r = old_s.cmd("QUIT")
        if not is_ok(r):
            probs.append("the session opened before SIGHUP: QUIT -> %r" % r)
    finally:
        old_s.close()
    return probs


def bad_reload_case(pb, current, other):
    """A key that does not match the certificate: the reload is refused,
    the log says why, and new connections keep the current certificate."""
    replace_file(other.key, pb.key)
    off = pb.log_size()
    pb.proc.send_signal(signal.SIGHUP)
    ln = pb.wait_log(r"reload failed|keeping the old", off, 5)
    probs = []
    if ln is None:
        probs.append("no 'reload failed' line after SIGHUP with a mismatched key: %s"
                     % pb.tail(off))
    if not pb.alive():
        return probs + ["popbridge died on the bad reload"]
    p = P3(pb.sport, tls=True)
    try:
        if p.fingerprint() != current.fingerprint():
            probs.append("after the refused reload pop3s presents %s, want %s" % (
                p.fingerprint(), current.fingerprint()))
        login(p)
        p.cmd("QUIT")
    finally:
        p.close()
    return probs


# -- large message -------------------------------------------------------------------------

def big_over_tls(pb):
    i = E.index("big-attachment")
    need(len(E.retr[i - 1]) > 5_000_000, "the big message has only %d octets" % len(E.retr[i - 1]))
    p = P3(pb.sport, tls=True, timeout=60)
    try:
        login(p)
        t0 = time.time()
        probs = retr_exact(p, i)
        dt = time.time() - t0
        r = p.cmd("QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %r" % r)
        if probs:
            probs.append("(RETR took %.1fs)" % dt)
        return probs
    finally:
        p.close()


# -- the end --------------------------------------------------------------------------------

SAN_RX = pbtest.SANITIZER


def finish():
    dead = ["%s (status %s)" % (pb.name, pb.proc.returncode) for pb in PBS if not pb.alive()]
    if dead:
        R.fail("every popbridge is still running after the TLS cases", dead)
    else:
        R.ok("every popbridge is still running after the TLS cases")
    bad = []
    for pb in PBS:
        was_alive = pb.alive()
        rc = pb.stop()
        if was_alive and rc != 0:
            bad.append("%s: %s" % (pb.name, rc))
    if bad:
        R.fail("every popbridge exits 0 on SIGTERM", bad)
    else:
        R.ok("every popbridge exits 0 on SIGTERM")
    san = []
    leaks = []
    secrets = {PW.encode(), base64.b64encode(b"\0" + USER.encode() + b"\0" + PW.encode())}
    for pb in PBS:
        raw = open(pb.logpath, "rb").read()
        san += ["%s: %s" % (pb.name, ln) for ln in raw.decode("utf-8", "replace").splitlines()
                if SAN_RX.search(ln)]
        leaks += ["%s's log contains %r" % (pb.name, s) for s in secrets if s in raw]
    if san:
        R.fail("no sanitizer reports in popbridge's logs", san[:12])
    else:
        R.ok("no sanitizer reports in popbridge's logs")
    if leaks:
        R.fail("no passwords or AUTH tokens in popbridge's debug logs", leaks)
    else:
        R.ok("no passwords or AUTH tokens in popbridge's debug logs")


# -- setup and the case list ------------------------------------------------------------

def make_certs():
    global CA
    d = os.path.join(TMP, "pki")
    CA = testca.TestCA(d)
    C["dovecot"] = CA.issue("dovecot", cn="localhost", san="IP:127.0.0.1,DNS:localhost")
    C["wronghost"] = CA.issue("wronghost", cn="wrong.example", san="DNS:wrong.example")
    C["expired"] = CA.issue("expired", cn="localhost", san="IP:127.0.0.1,DNS:localhost",
                            not_before="20200101000000Z", not_after="20200201000000Z")
    C["pop3"] = CA.issue("pop3", cn="popbridge-test", san="IP:127.0.0.1,DNS:localhost")
    C["reloaded"] = CA.issue("reloaded", cn="popbridge-reloaded",
                             san="IP:127.0.0.1,DNS:localhost", key_type="rsa", serial=0xBEEF)
    # a second, unrelated CA: its server certificate is unknown to ours
    other = testca.TestCA(os.path.join(TMP, "pki-other"), cn="Some Other CA")
    C["other-ca"] = other


def cases():
    global E, PW, PORTS
    # -- Dovecot A (imaps + STARTTLS with the good certificate) and the corpus
    PORTS["A"] = dovecot("start", DA, C["dovecot"])
    PW = dovecot_users(DA)[USER]
    append_corpus(PORTS["A"]["imap"], USER, PW)
    E = Expected(PORTS["A"]["imap"], USER, PW)
    print("# dovecot A: imap %d imaps %d; %d messages for %s" % (
        PORTS["A"]["imap"], PORTS["A"]["imaps"], len(E), USER), flush=True)
    ca_file = CA.cert
    imaps_a = {"host": HOST, "port": PORTS["A"]["imaps"], "tls": "implicit",
               "ca_file": ca_file}

    # ---- upstream -----------------------------------------------------------------
    main = start_pb("main", upstream=imaps_a, pop3s=True, cert=C["pop3"].chain,
                    key=C["pop3"].key)
    case("upstream tls = implicit, good certificate: login, STAT, RETR byte-exact "
         "(Dovecot logs a TLS login)", upstream_works, main, DA)
    imaps_a_name = dict(imaps_a, host="localhost")
    by_name = start_pb("byname", upstream=imaps_a_name)
    case("upstream tls = implicit by host name (localhost, DNS SAN): login and RETR",
         upstream_works, by_name, DA)

    relay = Relay(PORTS["A"]["imap"])
    stls_up = start_pb("starttls", upstream={"host": HOST, "port": relay.port,
                                              "tls": "starttls", "ca_file": ca_file})
    case("upstream tls = starttls: STARTTLS before any credentials, login and RETR work",
         starttls_case, stls_up, relay)

    strip = Relay(PORTS["A"]["imap"], strip=b" STARTTLS")
    stripped = start_pb("stripped", upstream={"host": HOST, "port": strip.port,
                                               "tls": "starttls", "ca_file": ca_file})
    case("upstream tls = starttls, STARTTLS stripped by a man in the middle: "
         "-ERR [SYS/TEMP], no credentials in clear", strip_relay_case, stripped, strip)

    unknown = start_pb("unknownca", upstream=dict(imaps_a, ca_file=""))
    case("upstream certificate from an unknown CA (no ca_file: system store) is refused: "
         "'unable to get local issuer certificate'", upstream_refused, unknown, DA,
         r"TLS.*unable to get local issuer certificate")
    other = start_pb("otherca", upstream=dict(imaps_a, ca_file=C["other-ca"].cert))
    case("upstream certificate not signed by the configured ca_file is refused",
         upstream_refused, other, DA,
         r"TLS.*unable to get local issuer certificate")

    plain_as_tls = start_pb("implicit-on-plain", upstream=dict(imaps_a, port=PORTS["A"]["imap"]))
    case("upstream tls = implicit against a plain IMAP port: -ERR [SYS/TEMP], the TLS "
         "error is logged", upstream_refused, plain_as_tls, DA, r"TLS with upstream .* failed")
    silent = Silent()
    stuck = start_pb("stuck", upstream=dict(imaps_a, port=silent.port), timeout=3)
    case("upstream that never answers the TLS handshake: -ERR [SYS/TEMP] within the "
         "timeout", upstream_stuck, stuck, 3)

    # -- Dovecot B: a certificate for another host name, then an expired one
    PORTS["B"] = dovecot("start", DB, C["wronghost"])
    DB_USERS = dovecot_users(DB)
    need(DB_USERS[USER] == PW, "the two Dovecots have different passwords for alice")
    append_corpus(PORTS["B"]["imap"], USER, PW, only="plain,dot-lines")
    imaps_b = {"host": "localhost", "port": PORTS["B"]["imaps"], "tls": "implicit",
               "ca_file": ca_file}
    wh_name = start_pb("wronghost-name", upstream=imaps_b)
    case("upstream certificate for another host name is refused: 'hostname mismatch', "
         "-ERR [SYS/TEMP]", upstream_refused, wh_name, DB, r"TLS.*hostname mismatch")
    wh_ip = start_pb("wronghost-ip", upstream=dict(imaps_b, host=HOST))
    case("upstream certificate without the configured IP address is refused "
         "('IP address mismatch'), -ERR [SYS/TEMP]", upstream_refused, wh_ip, DB,
         r"TLS.*(IP address mismatch|hostname mismatch)")
    vno = start_pb("verify-no", upstream=dict(imaps_b, verify="no"))
    case("verify = no: a warning at start-up", verify_no_warned, vno)

    def vno_works():
        probs = []
        p = P3(vno.port)
        try:
            r = p.login(USER, PW)
            if not is_ok(r):
                return ["PASS -> %r" % r] + vno.tail()
            r = p.cmd("RETR 1")
            if not is_ok(r):
                probs.append("RETR 1 -> %r" % r)
            else:
                p.multi()
            p.cmd("QUIT")
        finally:
            p.close()
        return probs
    case("verify = no accepts the wrong-host certificate: login and RETR work", vno_works)

    dovecot("stop", DB)
    PORTS["B"] = dovecot("start", DB, C["expired"])
    case("upstream certificate that has expired is refused: 'certificate has expired', "
         "-ERR [SYS/TEMP]", upstream_refused, wh_ip, DB, r"TLS.*certificate has expired")

    # -- Dovecot B without TLS: STARTTLS is not in its capabilities at all
    dovecot("stop", DB)
    PORTS["B"] = dovecot("start", DB, None)
    relay_b = Relay(PORTS["B"]["imap"])
    nostls = start_pb("nostls", upstream={"host": HOST, "port": relay_b.port,
                                           "tls": "starttls", "ca_file": ca_file})
    case("upstream tls = starttls against a Dovecot without STARTTLS: -ERR [SYS/TEMP], "
         "no credentials in clear", strip_relay_case, nostls, relay_b)
    dovecot("stop", DB)

    # ---- downstream ---------------------------------------------------------------------
    case("pop3s presents the configured certificate", pop3s_fingerprint, main, C["pop3"])
    case("pop3s: a client that does not trust the certificate is logged with a hint, "
         "bytes_out=0", untrusted_cert_hint, main)
    case("pop3s: a plaintext client never sees the greeting in clear and is closed",
         pop3s_plaintext_client, main)
    case("CAPA before TLS lists STLS (and USER, SASL PLAIN from loopback)",
         capa_plain_offers_stls, main)
    case("CAPA after STLS: no STLS, USER and SASL PLAIN; a second STLS -> -ERR; login works",
         capa_after_stls, main)
    case("CAPA on pop3s: no STLS; STLS on pop3s -> -ERR; login works", capa_pop3s, main)
    case("STLS in TRANSACTION -> -ERR, the session goes on", stls_in_transaction, main)
    case("without cert/key: CAPA has no STLS and STLS -> -ERR", no_stls_without_cert, stls_up)
    case("STLS injection: 'STLS\\r\\nCAPA\\r\\n' in one write, the clear CAPA is never "
         "answered", stls_injection_capa, main)
    case("STLS injection: USER before STLS is forgotten, PASS after STLS -> -ERR",
         stls_injection_user, main)
    case("STLS injection: 'STLS\\r\\nUSER alice\\r\\n' in one write, PASS after TLS -> -ERR",
         stls_injection_user_pipelined, main)

    never = start_pb("never", upstream=imaps_a, pop3s=True, cert=C["pop3"].chain,
                     key=C["pop3"].key, allow="never")
    case("allow_plaintext_auth = never: before TLS CAPA hides USER/SASL PLAIN, "
         "USER/PASS/AUTH -> -ERR naming STLS", never_before_tls, never)
    case("allow_plaintext_auth = never: after STLS (and on pop3s) USER/PASS and AUTH PLAIN work",
         never_after_stls, never)

    case("large message (5 MB) via pop3s with imaps upstream is byte-exact", big_over_tls, main)

    case("curl pop3s:// --cacert: every message byte-for-byte", curl_all, "pop3s",
         main.sport, [])
    case("curl --ssl-reqd pop3:// (STLS): every message byte-for-byte", curl_all, "pop3",
         main.port, ["--ssl-reqd"])
    case("curl pop3s:// trusting another CA refuses the certificate (exit 60)", curl_without_ca, main.sport)
    case("fetchmail ssl (pop3s), sslcertck + sslcertfile: every message intact",
         fetchmail_pop3s, main.sport)
    case("fetchmail sslproto tls1.2+ (STLS), sslcertck + sslcertfile: every message intact",
         fetchmail_stls, main.port)
    case("mpop --tls=on --tls-starttls=off (pop3s), --tls-trust-file: every message intact",
         mpop_case, main.sport, False, "mpop-pop3s")
    case("mpop --tls=on --tls-starttls=on (STLS), --tls-trust-file: every message intact",
         mpop_case, main.port, True, "mpop-stls")
    case("poplib POP3_SSL: every message byte-for-byte", poplib_pop3s, main.sport)
    case("poplib POP3.stls(): every message byte-for-byte", poplib_stls, main.port)

    # ---- tls_min --------------------------------------------------------------------------
    tls10 = start_pb("tls10", upstream=imaps_a, pop3s=True, cert=C["pop3"].chain,
                     key=C["pop3"].key, tls_min="1.0")
    case("tls_min = 1.0: openssl s_client -tls1 is served", old_tls_accepted, tls10,
         "-tls1", "TLSv1")
    case("tls_min = 1.0: openssl s_client -tls1_1 is served", old_tls_accepted, tls10,
         "-tls1_1", "TLSv1.1")
    case("tls_min = 1.0: TLS 1.3 still works", old_tls_accepted, tls10, "-tls1_3", "TLSv1.3")
    case("tls_min = 1.0 is warned about at start", tls_min_warned, tls10)
    case("default tls_min (1.2): openssl s_client -tls1 is refused", old_tls_refused, main,
         "-tls1")
    case("default tls_min (1.2): openssl s_client -tls1_1 is refused", old_tls_refused, main,
         "-tls1_1")
    case("default tls_min (1.2): openssl s_client -tls1_2 is served", old_tls_accepted, main,
         "-tls1_2", "TLSv1.2")

    # ---- SIGHUP ------------------------------------------------------------------------------
    rdir = os.path.join(TMP, "reload-certs")
    os.makedirs(rdir, exist_ok=True)
    rcert, rkey = os.path.join(rdir, "fullchain.pem"), os.path.join(rdir, "privkey.pem")
    replace_file(C["pop3"].chain, rcert)
    replace_file(C["pop3"].key, rkey)
    rl = start_pb("reload", upstream=imaps_a, pop3s=True, cert=rcert, key=rkey)
    case("SIGHUP after replacing cert/key: new connections get the new certificate, "
         "a running session goes on", reload_case, rl, C["pop3"], C["reloaded"])
    case("SIGHUP with a key that does not match: reload refused, the current certificate "
         "stays", bad_reload_case, rl, C["reloaded"], C["pop3"])


def main():
    global TMP, DA, DB
    rc = pbtest.skip_for_target("ok - TLS cases skipped for TARGET=%s "
                                "(they test popbridge's own TLS)")
    if rc is not None:
        return rc
    if not os.access(POPBRIDGE, os.X_OK):
        print("not ok - popbridge binary present")
        print("    POPBRIDGE must name the popbridge binary (got %r)" % POPBRIDGE)
        print("0 passed, 1 failed")
        return 1
    missing = [t for t in ("openssl", "curl", "fetchmail", "mpop", "bash")
               if shutil.which(t) is None]
    if missing or not os.path.exists("/usr/sbin/dovecot"):
        print("not ok - tools present")
        print("    missing: %s" % (missing or ["/usr/sbin/dovecot"]))
        print("0 passed, 1 failed")
        return 1
    pbtest.catch_signals()
    TMP, own_tmp = pbtest.scratch_dir("popbridge-tls.")
    DA, DB = os.path.join(TMP, "dovecot-a"), os.path.join(TMP, "dovecot-b")
    os.makedirs(DA, exist_ok=True)
    os.makedirs(DB, exist_ok=True)
    print("# popbridge %s; scratch %s" % (POPBRIDGE, TMP), flush=True)
    t0 = time.time()

    def body():
        make_certs()
        cases()
        finish()

    try:
        pbtest.run_guarded(R, "TLS cases", body, crash_lines=4)
    finally:
        for pb in PBS:
            if pb.alive():
                pb.proc.kill()
                pb.proc.wait(5)
        for r in RELAYS:
            r.stop()
        for d in STARTED_DOVECOTS:
            try:
                dovecot("stop", d)
            except Exception as e:
                print("# stopping Dovecot in %s: %s" % (d, e))
        pbtest.remove_scratch(TMP, own_tmp)
    print("# %.0fs" % (time.time() - t0))
    return pbtest.summary(R)


if __name__ == "__main__":
    sys.exit(main())
