"""Shared plumbing for the integration cases (imported by test_*.py).

run.sh passes everything through the environment:
    POP3_PORT      where the POP3 server under test listens (127.0.0.1)
    IMAP_PORT      the upstream Dovecot's IMAP port
    DOVECOT_DIR    its directory (DOVECOT_DIR/users holds the passwords)
    TEST_TMP       a scratch directory for this script
    TARGET         "popbridge" (normal) or "dovecot" (harness validation
                   against Dovecot's own POP3 server)

Output: one line per case, "ok - NAME" or "not ok - NAME" followed by a
few indented diagnostic lines. run.sh counts them.
"""

import os
import re
import socket
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import imapfetch  # noqa: E402
import pop3wire   # noqa: E402

HOST = "127.0.0.1"
TIMEOUT = float(os.environ.get("CASE_TIMEOUT", "20"))


def env(name, default=None):
    v = os.environ.get(name, default)
    if v is None:
        sys.exit("missing environment variable %s (run me from run.sh)" % name)
    return v


POP3_PORT = int(env("POP3_PORT", "0"))
IMAP_PORT = int(env("IMAP_PORT", "0"))
TARGET = env("TARGET", "popbridge")
TEST_TMP = env("TEST_TMP", "/tmp")


def users(dovecot_dir=None):
    """{user: password} from the passwd-file Dovecot uses."""
    path = os.path.join(dovecot_dir or env("DOVECOT_DIR"), "users")
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            user, _, pw = line.partition(":")
            if pw.startswith("{PLAIN}"):
                pw = pw[len("{PLAIN}"):]
            out[user] = pw
    return out


# -- reporting ----------------------------------------------------------------

class Report:
    """Counts and prints results; a failure shows at most max_lines
    diagnostic lines of at most width characters each."""

    def __init__(self, max_lines=12, width=300):
        self.passed = 0
        self.failed = 0
        self.max_lines = max_lines
        self.width = width

    def ok(self, name):
        self.passed += 1
        print("ok - %s" % name, flush=True)

    def fail(self, name, diag=()):
        self.failed += 1
        print("not ok - %s" % name, flush=True)
        lines = []
        for d in diag:
            lines.extend(str(d).splitlines())
        for d in lines[:self.max_lines]:
            print("    %s" % d[:self.width], flush=True)
        if len(lines) > self.max_lines:
            print("    ... (%d more lines)" % (len(lines) - self.max_lines), flush=True)

    def case(self, name, fn, *args, **kw):
        """Runs fn; it passes when it returns a falsy value or an empty list
        of problems, and fails with the problems it returns or raises."""
        t0 = time.time()
        try:
            problems = fn(*args, **kw)
        except AssertionError as e:
            problems = [str(e) or "assertion failed"]
        except Exception as e:  # a crash in a case is that case's failure
            tb = traceback.format_exc().strip().splitlines()
            problems = ["%s: %s" % (type(e).__name__, e)] + tb[-4:]
        if problems:
            if isinstance(problems, str):
                problems = [problems]
            self.fail(name, list(problems) + ["(%.1fs)" % (time.time() - t0)])
        else:
            self.ok(name)

    def exit(self):
        sys.exit(1 if self.failed else 0)


# -- expectations -----------------------------------------------------------------

class Expected:
    """The maildrop as POP3 must present it, read from IMAP (UID order)."""

    def __init__(self, user, password, folder="INBOX"):
        conn = imapfetch.connect(IMAP_PORT, user, password)
        try:
            meta = imapfetch.info(conn, folder)
            rows = imapfetch.fetch_all(conn, folder, sections=("", "HEADER", "TEXT"))
        finally:
            conn.logout()
        self.uids = [u for u, _ in rows]
        self.raw = [d[0] for _, d in rows]
        self.header = [d[1] for _, d in rows]
        self.text = [d[2] for _, d in rows]
        self.imap_size = [meta[u]["size"] for u in self.uids]
        exp = [imapfetch.pop3_expected(d) for d in self.raw]
        self.retr = [e for e, _ in exp]      # what RETR delivers (un-stuffed)
        self.size = [s for _, s in exp]      # what LIST/STAT report
        self.names = [msg_name(d) for d in self.raw]

    def __len__(self):
        return len(self.uids)

    def label(self, i):
        """'3 (leading-dot)' for POP3 message number i (1-based)."""
        return "%d (%s)" % (i, self.names[i - 1])

    def top(self, i, n):
        return imapfetch.pop3_top(self.header[i - 1], self.text[i - 1], n)


def msg_name(data):
    m = re.search(rb"^X-Corpus-Name: (\S+)", data, re.M)
    return m.group(1).decode() if m else "?"


def first_diff(a, b, ctx=24):
    """A short description of where two byte strings differ."""
    if a == b:
        return "equal"
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return ("lengths %d vs %d, first difference at offset %d: got %r, want %r"
            % (len(a), len(b), i, a[max(0, i - 8):i + ctx], b[max(0, i - 8):i + ctx]))


def pop3(timeout=None, port=None, **kw):
    return pop3wire.Pop3(HOST, port or POP3_PORT, timeout=timeout or TIMEOUT, **kw)


def login(user, password, port=None):
    """A logged-in raw session (USER/PASS); raises if login fails."""
    p = pop3(port=port)
    r = p.login(user, password)
    if not pop3wire.is_ok(r):
        p.close()
        raise AssertionError("login as %s failed: %r" % (user, r))
    return p


def wait_port_closed_by_peer(p, timeout=5):
    """True if the server closes the connection within timeout."""
    p.sock.settimeout(timeout)
    try:
        while True:
            if not p.sock.recv(4096):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


# -- MDA delivery, and what fetchmail and mpop do to a message ---------------------

DELIVER = """#!/bin/sh
# MDA for the tests: each message into the next numbered file of $1.
dir=$1
n=$(ls "$dir" | wc -l)
exec cat > "$dir/$(printf %04d $((n + 1))).eml"
"""


def mda_dir(base, name):
    """A fresh base/name with the MDA script and an out/ directory."""
    import shutil
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "out"))
    script = os.path.join(d, "deliver.sh")
    with open(script, "w") as f:
        f.write(DELIVER)
    os.chmod(script, 0o755)
    return d, script, os.path.join(d, "out")


def delivered(out):
    res = []
    for n in sorted(os.listdir(out)):
        with open(os.path.join(out, n), "rb") as f:
            res.append(f.read())
    return res


def rc_string(s):
    """A string for a fetchmail rcfile."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fetchmail_want(E, i, got):
    """fetchmail's known normalisation: it ends an unterminated header block
    with CRLF and breaks lines over 8192 octets (inserting junk), so for the
    long-lines message only the text around the long lines is compared."""
    e = E.retr[i - 1]
    if e.find(b"\r\n\r\n") < 0 and not e.startswith(b"\r\n"):
        e = e + b"\r\n"
    if E.names[i - 1] == "long-lines":
        lines = e.split(b"\r\n")
        long_idx = [k for k, ln in enumerate(lines) if len(ln) > 8000]
        if long_idx:
            pre = b"\r\n".join(lines[:long_idx[0]]) + b"\r\n"
            post = b"\r\n".join(lines[long_idx[-1] + 1:])
            if not got.startswith(pre):
                return "before the long lines: " + first_diff(got[:len(pre)], pre)
            if not got.endswith(post):
                return "after the long lines: " + first_diff(got[-len(post):], post)
            return None
    return None if got == e else first_diff(got, e)


def mpop_want(E, i, got):
    """mpop hands an MDA LF line ends."""
    e = E.retr[i - 1].replace(b"\r\n", b"\n")
    return None if got == e else first_diff(got, e)


def compare_deliveries(E, got, want_fn, who):
    probs = []
    if len(got) != len(E):
        probs.append("%s delivered %d messages, the maildrop has %d" % (who, len(got), len(E)))
    for i, g in enumerate(got[:len(E)], 1):
        x = want_fn(E, i, g)
        if x:
            probs.append("%s message %s: %s" % (who, E.label(i), x))
    return probs
