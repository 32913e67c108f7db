#!/usr/bin/env python3
"""popbridge with a server a round trip away: the fetch window, pipelined
RETR and TOP, and what may never happen inside the window (issue 13).

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_window.py
    ONLY=window POPBRIDGE=... bash tests/integration/run.sh

Self-contained, like test_neomutt.py: a private Dovecot (pbtest.Dovecot),
the latency relay of the bench (tests/bench/latrelay.c, built here with gcc
into the scratch directory) in front of it with 2 x 5 ms, and two
popbridges behind the relay, both with [upstream] read_ahead = 4 (MB):
"window" (mark_seen = no, the default) and "seen" (mark_seen = yes). Mail
is appended over IMAP straight to Dovecot, and what popbridge must deliver
is read from Dovecot the same way (tests/lib/imapfetch.py: BODY.PEEK[] with
bare LF made CRLF, TOP from BODY.PEEK[HEADER] and [TEXT]); "another
client" is a direct IMAP connection. Every case has its own user.

Nothing here is timed: the cases hold for today's popbridge (one message
read ahead) as much as for one with a window of several, on a slow, noisy
machine; they check behaviour, not speed. The cases:

  byte-exact       the awkward corpus (tests/lib/corpus.py) RETR'd one at
                   a time; all RETRs in one write; TOP n 0 and TOP n 3 of
                   every message in one write; RETR, UIDL, TOP, LIST, NOOP
                   of every message interleaved in one write
  \\Seen            mark_seen = yes: a session that RETRs message 1 and
                   waits with the window open, TOPs another and QUITs
                   leaves only message 1 \\Seen; then RETR 2 + QUIT in one
                   write adds only message 2
  abort            RETR 1..50 in one write, 10 KB read, the connection
                   shut down (FIN, then closed); and RETR 1..50, nothing
                   read, an RST: a fresh session lists all 50, none is
                   \\Deleted or \\Seen upstream (mark_seen = yes)
  expunge          another client expunges messages inside and beyond the
                   window: RETR of each answers -ERR "... no longer on the
                   server" or the whole message, never other bytes; every
                   other message byte-exact
  memory           20 x 2 MB, RETR 1..20 in one write, nothing read for 4 s
                   (a 32 KB receive buffer): popbridge's VmRSS grows by
                   less than 64 MB; then everything is read byte-exact
  upstream cut     RETR 1..10 (500 KB each, two of 8 MB) in one write; while
                   the client pauses after the first (whatever was fetched
                   ahead in flight), and as the reply to the first 8 MB one
                   begins (popbridge relaying it), the relay's connections
                   are reset (SIGUSR1), stalled (SIGUSR2: until popbridge's
                   upstream timeout of 10 s), or the relay is killed: each
                   reply after that is the whole message, byte-exact, or
                   -ERR [SYS/TEMP], or the connection closes; never a short
                   message ended by "."; afterwards a fresh session
                   delivers all 10 byte-exact and nothing is \\Deleted
At the end both popbridges exit 0 on SIGTERM, their logs hold no sanitizer
report, no raw control byte and no password.

Every wait is bounded (a POP3 reply 30 s, 45 s after a stall). Output:
"ok - NAME" / "not ok - NAME" plus indented diagnostics, "# ..." notes, a
last line "N passed, M failed"; exit status 1 when anything failed.
Environment: POPBRIDGE (default build/asan/popbridge), TARGET (run.sh's;
anything but "popbridge" skips), TEST_TMP, KEEP_TMP=1, WINDOW_DELAY_MS
(one-way delay, default 5).
"""

import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib")
sys.path.insert(0, LIB)
sys.path.insert(0, HERE)

import corpus  # noqa: E402
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import HOST, note  # noqa: E402
from pop3wire import Pop3, Pop3Closed  # noqa: E402

POPBRIDGE = pbtest.default_popbridge()
ROOT = pbtest.ROOT
DELAY_MS = float(os.environ.get("WINDOW_DELAY_MS", "5"))
READ_AHEAD = 4              # MB, [upstream] read_ahead of both popbridges
UP_TIMEOUT = 10             # [upstream] timeout
REPLY_WAIT = 30.0           # one POP3 reply
STALL_WAIT = UP_TIMEOUT + 35.0
RSS_BOUND_KB = 64 * 1024
CUT_SIZES = [500 << 10] * 3 + [8 << 20] + [500 << 10] * 2 + [8 << 20] + [500 << 10] * 3

USERS = {
    "wcorpus": "Wcorpus-pw-1d7e",
    "wseen": "Wseen-pw-93a1",
    "wabort": "Wabort-pw-5c20",
    "wexpunge": "Wexpunge-pw-e41b",
    "wmem": "Wmem-pw-0f6d",
    "wcut": "Wcut-pw-7a58",
}

R = pbtest.Report(max_lines=24, width=300)
DV = None
RELAY = None
PB = None                   # mark_seen = no
PBS = None                  # mark_seen = yes


# -- processes --------------------------------------------------------------------

class Relay:
    """tests/bench/latrelay.c between popbridge and Dovecot; the port stays
    the same across restarts."""

    def __init__(self, d, upstream_port, delay_ms):
        self.bin = os.path.join(d, "latrelay")
        self.log = os.path.join(d, "latrelay.log")
        self.upstream = upstream_port
        self.delay = delay_ms
        self.port = 0
        self.proc = None
        src = os.path.join(ROOT, "tests", "bench", "latrelay.c")
        p = subprocess.run(["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-o", self.bin, src],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("gcc tests/bench/latrelay.c: %s"
                               % p.stdout.decode("utf-8", "replace")[-400:])

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.bin, str(self.port), str(self.upstream), "%g" % self.delay],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                preexec_fn=pbtest.die_with_parent)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else b""
        m = re.match(rb"READY (\d+)", line)
        if not m:
            self.kill()
            raise RuntimeError("latrelay did not start: %r; %s" % (line, self.tail()))
        self.port = int(m.group(1))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n=4):
        return " | ".join(pbtest.read_text(self.log).splitlines()[-n:])


class Popbridge(pbtest.Popbridge):
    def __init__(self, d, name, upstream_port, mark_seen):
        super().__init__(name, upstream_port, dir=d,
                         upstream={"timeout": UP_TIMEOUT, "read_ahead": READ_AHEAD},
                         maildrop={"mark_seen": "yes" if mark_seen else "no"})

    def idle(self, timeout=30):
        """[] once no session is open (by the log), else a problem."""
        n = self.wait_active(0, timeout)
        if n == 0:
            return []
        return ["popbridge %s still has %d session(s) open %ds later" % (self.name, n, timeout)]


# -- mail and expectations --------------------------------------------------------

def imap(user):
    return imapfetch.connect(DV.port, user, USERS[user])


def deliver(user, msgs):
    conn = imap(user)
    try:
        corpus.append(conn, "INBOX", msgs)
    finally:
        conn.logout()


class Expected:
    """The mailbox as POP3 must present it, read straight from Dovecot."""

    def __init__(self, user):
        conn = imap(user)
        try:
            rows = imapfetch.fetch_all(conn, "INBOX", sections=("", "HEADER", "TEXT"))
        finally:
            conn.logout()
        self.uids = [u for u, _ in rows]
        self.raw = [d[0] for _, d in rows]
        self.header = [d[1] for _, d in rows]
        self.text = [d[2] for _, d in rows]
        exp = [imapfetch.pop3_expected(d) for d in self.raw]
        self.retr = [e for e, _ in exp]
        self.size = [s for _, s in exp]
        self.names = [(re.search(rb"^X-Corpus-Name: (\S+)", d, re.M) or
                       re.search(rb"^Message-ID: <(\S+?)@", d, re.M))
                      for d in self.raw]
        self.names = [m.group(1).decode() if m else "?" for m in self.names]

    def __len__(self):
        return len(self.uids)

    def label(self, i):
        return "%d (%s)" % (i, self.names[i - 1])

    def top(self, i, n):
        return imapfetch.pop3_top(self.header[i - 1], self.text[i - 1], n)


def flags(user):
    """{uid: [flags]} straight from Dovecot."""
    conn = imap(user)
    try:
        return {u: m["flags"] for u, m in imapfetch.info(conn, "INBOX").items()}
    finally:
        conn.logout()


def untouched(user, uids, seen=()):
    """Problems unless the mailbox holds exactly uids, none \\Deleted and
    only those in seen \\Seen."""
    f = flags(user)
    probs = []
    if sorted(f) != sorted(uids):
        probs.append("the mailbox holds UIDs %s, want %s" % (sorted(f)[:30], sorted(uids)[:30]))
    deleted = sorted(u for u, fl in f.items() if "\\Deleted" in fl)
    if deleted:
        probs.append("\\Deleted upstream: UIDs %s" % deleted)
    got_seen = sorted(u for u, fl in f.items() if "\\Seen" in fl)
    if got_seen != sorted(seen):
        probs.append("\\Seen upstream: UIDs %s, want %s" % (got_seen, sorted(seen)))
    return probs


# -- POP3 -------------------------------------------------------------------------

def session(pb, user, timeout=REPLY_WAIT, rcvbuf=None):
    """A raw logged-in Pop3 (pop3wire) to pb."""
    p = Pop3(HOST, pb.port, timeout=timeout, rcvbuf=rcvbuf)
    r = p.login(user, USERS[user])
    if not r.startswith(b"+OK"):
        p.close()
        raise AssertionError("login as %s to %s -> %r" % (user, pb.name, r[:200]))
    return p


def status(p, what):
    """The next status line; AssertionError when the connection is gone."""
    try:
        return p.line()
    except Pop3Closed:
        raise AssertionError("%s: the connection closed instead of a reply" % what) from None
    except socket.timeout:
        raise AssertionError("%s: no reply within %.0fs" % (what, p.sock.gettimeout())) from None


def body(p, what):
    """The multi-line body after a +OK; AssertionError on a lost
    connection or a protocol violation."""
    try:
        _, data, problems = p.multi()
    except Pop3Closed:
        raise AssertionError("%s: the connection closed inside the response" % what) from None
    except socket.timeout:
        raise AssertionError("%s: the response stalled for %.0fs"
                             % (what, p.sock.gettimeout())) from None
    if problems:
        raise AssertionError("%s: %s" % (what, "; ".join(problems[:3])))
    return data


def multi_ok(p, what):
    r = status(p, what)
    if not r.startswith(b"+OK"):
        raise AssertionError("%s -> %r" % (what, r[:200]))
    return body(p, what)


def quit_ok(p, what="QUIT"):
    try:
        p.send(b"QUIT\r\n")
        r = status(p, what)
    finally:
        p.close()
    if not r.startswith(b"+OK"):
        raise AssertionError("%s -> %r" % (what, r[:200]))


def want_bytes(E, i, got, what):
    if got == E.retr[i - 1]:
        return []
    return ["%s of message %s: %s" % (what, E.label(i), pbtest.first_diff(got, E.retr[i - 1]))]


def listing(p):
    """(LIST sizes, UIDLs) of a session, in message order."""
    p.send(b"LIST\r\n")
    sizes = [int(ln.split()[1]) for ln in multi_ok(p, "LIST").splitlines()]
    p.send(b"UIDL\r\n")
    uidls = [ln.split()[1] for ln in multi_ok(p, "UIDL").splitlines()]
    return sizes, uidls


# -- byte-exact ----------------------------------------------------------------------

def retr_one_at_a_time(E):
    p = session(PB, "wcorpus")
    probs = []
    for i in range(1, len(E) + 1):
        p.send(b"RETR %d\r\n" % i)
        probs += want_bytes(E, i, multi_ok(p, "RETR %d" % i), "RETR")
    quit_ok(p)
    return probs


def retr_pipelined(E):
    p = session(PB, "wcorpus")
    p.send(b"".join(b"RETR %d\r\n" % i for i in range(1, len(E) + 1)))
    probs = []
    for i in range(1, len(E) + 1):
        probs += want_bytes(E, i, multi_ok(p, "pipelined RETR %d" % i), "pipelined RETR")
    quit_ok(p)
    return probs


def top_pipelined(E):
    p = session(PB, "wcorpus")
    p.send(b"".join(b"TOP %d 0\r\nTOP %d 3\r\n" % (i, i) for i in range(1, len(E) + 1)))
    probs = []
    for i in range(1, len(E) + 1):
        for n in (0, 3):
            got = multi_ok(p, "pipelined TOP %d %d" % (i, n))
            want = E.top(i, n)
            if got != want:
                probs.append("TOP %d %d of %s: %s" % (i, n, E.label(i), pbtest.first_diff(got, want)))
    quit_ok(p)
    return probs


def mixed_pipelined(E):
    """RETR, UIDL, TOP, LIST and NOOP of every message, then STAT, in one
    write; the listings come from the same session beforehand (a LIST size
    may become the exact one once the message was retrieved)."""
    p = session(PB, "wcorpus")
    sizes, uidls = listing(p)
    n = len(E)
    if len(sizes) != n or len(uidls) != n:
        raise AssertionError("LIST has %d and UIDL %d messages, IMAP %d" % (len(sizes), len(uidls), n))
    p.send(b"".join(b"RETR %d\r\nUIDL %d\r\nTOP %d 1\r\nLIST %d\r\nNOOP\r\n" % (i, i, i, i)
                    for i in range(1, n + 1)) + b"STAT\r\n")
    probs = []
    for i in range(1, n + 1):
        probs += want_bytes(E, i, multi_ok(p, "RETR %d (mixed)" % i), "RETR (mixed)")
        r = status(p, "UIDL %d" % i)
        if r.rstrip(b"\r\n") != b"+OK %d %s" % (i, uidls[i - 1]):
            probs.append("UIDL %d -> %r, want +OK %d %s" % (i, r[:100], i, uidls[i - 1].decode()))
        got = multi_ok(p, "TOP %d 1 (mixed)" % i)
        if got != E.top(i, 1):
            probs.append("TOP %d 1 of %s: %s" % (i, E.label(i), pbtest.first_diff(got, E.top(i, 1))))
        r = status(p, "LIST %d" % i)
        m = re.match(rb"\+OK (\d+) (\d+)\r\n$", r)
        if not m or int(m.group(1)) != i or int(m.group(2)) not in (sizes[i - 1], E.size[i - 1]):
            probs.append("LIST %d -> %r, want +OK %d %d" % (i, r[:100], i, E.size[i - 1]))
        r = status(p, "NOOP after message %d" % i)
        if not r.startswith(b"+OK"):
            probs.append("NOOP -> %r" % r[:100])
    r = status(p, "STAT")
    if not re.match(rb"\+OK %d \d+\r\n$" % n, r):
        probs.append("STAT -> %r, want +OK %d ..." % (r[:100], n))
    quit_ok(p)
    return probs


# -- \Seen, abort ----------------------------------------------------------------------

def seen_only_retrieved():
    E = Expected("wseen")
    probs = untouched("wseen", E.uids)
    if probs:
        return ["before the session: "] + probs
    p = session(PBS, "wseen")
    p.send(b"RETR 1\r\n")
    probs += want_bytes(E, 1, multi_ok(p, "RETR 1"), "RETR")
    time.sleep(1.5)             # the window opens meanwhile
    p.send(b"TOP 3 0\r\n")
    got = multi_ok(p, "TOP 3 0")
    if got != E.top(3, 0):
        probs.append("TOP 3 0: %s" % pbtest.first_diff(got, E.top(3, 0)))
    p.send(b"LIST\r\n")
    multi_ok(p, "LIST")
    time.sleep(0.5)
    quit_ok(p)
    probs += PBS.idle()
    probs += ["after RETR 1, TOP 3 0, QUIT: " + x for x in untouched("wseen", E.uids, E.uids[:1])]
    p = session(PBS, "wseen")
    p.send(b"RETR 2\r\nQUIT\r\n")
    probs += want_bytes(E, 2, multi_ok(p, "RETR 2"), "RETR")
    r = status(p, "QUIT")
    p.close()
    if not r.startswith(b"+OK"):
        probs.append("QUIT -> %r" % r[:100])
    probs += PBS.idle()
    probs += ["after RETR 2 + QUIT in one write: " + x
              for x in untouched("wseen", E.uids, E.uids[:2])]
    return probs


def abort_mid_window(E, rst):
    p = session(PBS, "wabort", rcvbuf=32768)
    before = listing(p)[1]
    p.send(b"".join(b"RETR %d\r\n" % i for i in range(1, len(E) + 1)))
    if not rst:
        got = b""
        p.sock.settimeout(REPLY_WAIT)
        while len(got) < 10000:
            chunk = p.sock.recv(4096)
            if not chunk:
                break
            got += chunk
        # FIN first (popbridge reads the end while it is still sending),
        # then the close (an RST, as unread data is left).
        p.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
    else:
        time.sleep(0.3)
        p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    p.close()
    probs = PBS.idle()
    p = session(PBS, "wabort")
    n, _ = (int(x) for x in re.match(rb"\+OK (\d+) (\d+)", status_of(p, b"STAT")).groups())
    after = listing(p)[1]
    quit_ok(p)
    if n != len(E):
        probs.append("a fresh session's STAT says %d messages, want %d" % (n, len(E)))
    if after != before:
        probs.append("the UIDLs changed: %d before, %d after" % (len(before), len(after)))
    probs += PBS.idle()
    probs += untouched("wabort", E.uids)
    return probs


def status_of(p, cmd):
    p.send(cmd + b"\r\n")
    r = status(p, cmd.decode())
    if not r.startswith(b"+OK"):
        raise AssertionError("%s -> %r" % (cmd.decode(), r[:200]))
    return r


# -- expunge ---------------------------------------------------------------------------------

GONE = b"no longer on the server"


def expunge_inside_window():
    E = Expected("wexpunge")
    n = len(E)
    gone = [2, 3, n - 2]         # inside today's read-ahead, inside a window, beyond it
    p = session(PB, "wexpunge")
    p.send(b"RETR 1\r\n")
    probs = want_bytes(E, 1, multi_ok(p, "RETR 1"), "RETR")
    time.sleep(1.0)             # the window fills
    conn = imap("wexpunge")
    try:
        imapfetch.select(conn, "INBOX", readonly=False)
        for i in gone:
            typ, data = conn.uid("STORE", str(E.uids[i - 1]), "+FLAGS", "(\\Deleted)")
            if typ != "OK":
                raise AssertionError("UID STORE: %r" % (data,))
        typ, data = conn.expunge()
        if typ != "OK":
            raise AssertionError("EXPUNGE: %r" % (data,))
    finally:
        conn.logout()

    def one(i, what):
        r = status(p, what)
        if i in gone:
            seen.append("%d %s" % (i, "-ERR" if r.startswith(b"-ERR") else "whole"))
        if r.startswith(b"-ERR") and i in gone:
            if GONE not in r:
                return ["%s of expunged message %s -> %r, want -ERR ... %s"
                        % (what, E.label(i), r[:150], GONE.decode())]
            return []
        if not r.startswith(b"+OK"):
            return ["%s of %s message %s -> %r" % (what, "expunged" if i in gone else "kept",
                                                   E.label(i), r[:150])]
        return want_bytes(E, i, body(p, "%s %d" % (what, i)), what)

    seen = []
    p.send(b"RETR 2\r\n")
    probs += one(2, "RETR")
    p.send(b"".join(b"RETR %d\r\n" % i for i in range(3, n + 1)))
    for i in range(3, n + 1):
        probs += one(i, "pipelined RETR")
    quit_ok(p)
    note("expunged inside and beyond the window: RETR %s" % ", ".join(seen))
    probs += PB.idle()
    probs += untouched("wexpunge", [u for k, u in enumerate(E.uids, 1) if k not in gone])
    return probs


# -- memory ------------------------------------------------------------------------------------

def memory_bounded():
    E = Expected("wmem")
    n = len(E)
    p = session(PB, "wmem", rcvbuf=32768)
    status_of(p, b"STAT")
    time.sleep(0.5)
    base = PB.rss_kb()
    if base < 0:
        raise AssertionError("cannot read /proc/%d/status" % PB.proc.pid)
    p.send(b"".join(b"RETR %d\r\n" % i for i in range(1, n + 1)))
    peak = base
    t_end = time.time() + 4.0
    while time.time() < t_end:
        v = PB.rss_kb()
        if v > peak:
            peak = v
        time.sleep(0.1)
    stalled_peak = peak
    probs = []
    if stalled_peak - base > RSS_BOUND_KB:
        probs.append("popbridge's VmRSS grew by %d KB (%d -> %d) while the client read "
                     "nothing, bound %d KB" % (stalled_peak - base, base, stalled_peak,
                                               RSS_BOUND_KB))
    for i in range(1, n + 1):
        probs += want_bytes(E, i, multi_ok(p, "pipelined RETR %d" % i), "RETR")
        v = PB.rss_kb()
        if v > peak:
            peak = v
    quit_ok(p)
    note("memory: VmRSS %d KB before, +%d KB at most while the client read nothing for 4 s, "
         "+%d KB at most while it read %d x %d KB" % (base, stalled_peak - base, peak - base,
                                                    n, len(E.raw[0]) // 1024))
    return probs


# -- upstream cut ------------------------------------------------------------------------------

def cut_inside_window(E, how, when):
    """RETR 1..N in one write; the relay is reset, stalled or killed (how)
    either while the client pauses after reading message 1 (when="pause":
    whatever was fetched ahead is in flight) or as soon as the reply to the
    first message larger than read_ahead begins (when="stream": popbridge
    is relaying it). Before the cut every reply is exact; after it each is
    whole and exact, -ERR [SYS/TEMP], or the end of the connection."""
    n = len(E)
    wait = STALL_WAIT if how == "stall" else REPLY_WAIT
    big = next(i for i in range(1, n + 1) if len(E.raw[i - 1]) > READ_AHEAD << 20)
    p = session(PB, "wcut", timeout=wait, rcvbuf=65536)
    p.send(b"".join(b"RETR %d\r\n" % i for i in range(1, n + 1)))

    def cut():
        if how == "reset":
            RELAY.signal(signal.SIGUSR1)
        elif how == "stall":
            RELAY.signal(signal.SIGUSR2)
        else:
            RELAY.kill()

    probs = []
    is_cut = False
    whole = errs = 0
    closed = None
    for i in range(1, n + 1):
        try:
            r = p.line()
        except Pop3Closed:
            closed = "before the reply to RETR %d" % i
            break
        except socket.timeout:
            probs.append("no reply to RETR %d and no end of the connection within %.0fs%s"
                         % (i, wait, " after the upstream %s" % how if is_cut else ""))
            break
        if r.startswith(b"-ERR"):
            errs += 1
            if not is_cut:
                probs.append("RETR %d -> %r before any cut" % (i, r[:150]))
            elif not r.startswith(b"-ERR [SYS/TEMP]"):
                probs.append("RETR %d after the upstream %s -> %r, want -ERR [SYS/TEMP]"
                             % (i, how, r[:150]))
            continue
        if not r.startswith(b"+OK"):
            probs.append("RETR %d -> %r" % (i, r[:150]))
            break
        if when == "stream" and i == big:
            cut()
            is_cut = True
        try:
            _, data, problems = p.multi()
        except Pop3Closed:
            if is_cut:      # cut short without a terminator: as it must be
                closed = "inside the body of RETR %d (%s)" % (i, E.label(i))
            else:
                probs.append("the connection closed inside RETR %d before any cut" % i)
            break
        except socket.timeout:
            probs.append("RETR %d stalled for %.0fs inside the response%s" % (
                i, wait, " after the upstream %s" % how if is_cut else ""))
            break
        if data != E.retr[i - 1]:
            probs.append("RETR %d%s ended with \".\" but is not the message: %s" % (
                i, " after the upstream %s" % how if is_cut else "",
                pbtest.first_diff(data, E.retr[i - 1])))
            break
        probs += problems[:2]
        if is_cut:
            whole += 1
        if when == "pause" and i == 1:
            time.sleep(0.3)
            cut()
            is_cut = True
    p.close()
    if not is_cut:
        probs.append("the relay was never cut (how=%s, when=%s)" % (how, when))
    note("upstream %s (%s): %d whole message(s) after the cut, %d -ERR, %s" % (
        how, when, whole, errs, "connection closed " + closed if closed else
        "connection still open"))
    if how == "kill":
        RELAY.start()
    probs += PB.idle(timeout=STALL_WAIT)
    # Nothing lost: a fresh session delivers everything.
    p = session(PB, "wcut")
    r = status_of(p, b"STAT")
    if not r.startswith(b"+OK %d " % n):
        probs.append("a fresh session's STAT -> %r, want %d messages" % (r[:80], n))
    for i in range(1, n + 1):
        p.send(b"RETR %d\r\n" % i)
        probs += want_bytes(E, i, multi_ok(p, "RETR %d (fresh session)" % i), "RETR")
    quit_ok(p)
    probs += untouched("wcut", E.uids)
    return probs


# -- main --------------------------------------------------------------------------------------

def cases(tmp):
    global DV, RELAY, PB, PBS
    DV = pbtest.Dovecot(os.path.join(tmp, "dovecot"), users=USERS)
    DV.start()
    RELAY = Relay(tmp, DV.port, DELAY_MS)
    RELAY.start()
    PB = Popbridge(tmp, "window", RELAY.port, mark_seen=False)
    PB.start()
    PBS = Popbridge(tmp, "seen", RELAY.port, mark_seen=True)
    PBS.start()
    note("dovecot imap 127.0.0.1:%d, latrelay 127.0.0.1:%d (2 x %g ms), popbridge "
         "127.0.0.1:%d, with mark_seen 127.0.0.1:%d" % (DV.port, RELAY.port, DELAY_MS,
                                                        PB.port, PBS.port))
    t0 = time.time()
    deliver("wcorpus", corpus.messages())
    deliver("wseen", corpus.generated(10, 100 * 1024, 1, "seen"))
    deliver("wabort", corpus.generated(50, 30 * 1024, 2, "abort"))
    deliver("wexpunge", corpus.generated(20, 100 * 1024, 3, "expunge"))
    deliver("wmem", corpus.generated(20, 2 * 1024 * 1024, 4, "mem"))
    # Small messages and ones larger than read_ahead and than the socket
    # buffers, so that a cut falls inside a message as well as between.
    deliver("wcut", [m for k, size in enumerate(CUT_SIZES)
                     for m in corpus.generated(1, size, 50 + k, "cut%d" % k)])
    note("mail appended in %.1fs" % (time.time() - t0))

    E = Expected("wcorpus")
    R.case("window: the awkward corpus RETR'd one at a time is byte-exact",
           retr_one_at_a_time, E)
    R.case("window: the awkward corpus with all RETRs in one write is byte-exact",
           retr_pipelined, E)
    R.case("window: TOP n 0 and TOP n 3 of every message in one write are exact",
           top_pipelined, E)
    R.case("window: RETR, UIDL, TOP, LIST, NOOP of every message in one write, in order",
           mixed_pipelined, E)
    R.case("window: mark_seen sets \\Seen only on messages retrieved, not on those "
           "fetched ahead", seen_only_retrieved)
    Ea = Expected("wabort")
    R.case("window: a client that closes inside the window (RETR 1..50 in one write) "
           "loses nothing, nothing \\Seen", abort_mid_window, Ea, False)
    R.case("window: a client that resets inside the window loses nothing, nothing \\Seen",
           abort_mid_window, Ea, True)
    R.case("window: messages expunged by another client inside and beyond the window: "
           "-ERR or the whole message, the others exact", expunge_inside_window)
    R.case("window: a client that reads nothing with the window full keeps popbridge's "
           "VmRSS growth under 64 MB, then gets everything exact", memory_bounded)
    Ec = Expected("wcut")
    for when, moment in (("pause", "while the client pauses after message 1"),
                         ("stream", "as a message larger than read_ahead begins")):
        for how, what in (("reset", "the relay's connections reset"),
                          ("stall", "the relay stalled until the upstream timeout"),
                          ("kill", "the relay killed")):
            R.case("window: upstream cut %s (%s): whole messages, -ERR [SYS/TEMP] or a "
                   "closed connection; nothing lost" % (moment, what),
                   cut_inside_window, Ec, how, when)
    for pb in (PB, PBS):
        pbtest.finish_checks(R, pb)
        with open(pb.log, "rb") as f:
            log = f.read()
        leaks = ["the log contains %r" % x for u, pw in USERS.items()
                 for x in pbtest.secret_forms(u.encode(), pw.encode()) if x in log]
        if leaks:
            R.fail("no passwords or AUTH tokens in the %s popbridge log" % pb.name, leaks)
        else:
            R.ok("no passwords or AUTH tokens in the %s popbridge log" % pb.name)


def main():
    def cleanup():
        for pb in (PB, PBS):
            if pb is not None:
                pb.kill()
        if RELAY is not None:
            RELAY.stop()
        if DV is not None:
            DV.stop()

    return pbtest.script_main(R, "window cases", cases, cleanup)


if __name__ == "__main__":
    sys.exit(main())
