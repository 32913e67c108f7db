#!/usr/bin/env python3
"""Session limits and hostile clients (SPEC §1 [limits], §2, §5; issue 5).

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_hostile.py

Self-contained: starts a private Dovecot (tests/lib/dovecot.sh), appends
the corpus (tests/lib/corpus.py) for alice and a few plain messages for
bob, and three popbridges in front of it, each on its own free 127.0.0.1
port:

  limits    $POPBRIDGE (ASan): max_sessions = 5, max_per_ip = 3,
            idle_timeout = 2, auth_fail_delay = 1
  hostile   $POPBRIDGE (ASan): max_per_ip = 20; long lines, binary
            garbage and NUL bytes, 10,000 pipelined commands, clients that
            never read, slowloris
  release   $POPBRIDGE_RELEASE (default build/popbridge, no sanitizer):
            the memory cases, measured as VmRSS in /proc/PID/status

Clients bind to other 127.0.0.x source addresses to look like different
hosts. At the end: a normal session (login, STAT, LIST, RETR of every
message byte for byte against IMAP BODY.PEEK[], QUIT) on a fresh
connection to each popbridge, the release build's RSS and open file
descriptors back near their baseline, each popbridge exits 0 on SIGTERM,
and the logs hold no sanitizer report and no raw control byte.

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script ("# ..." lines give the numbers measured); also
POPBRIDGE_RELEASE (default build/popbridge).
"""

import base64
import os
import random
import re
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import corpus  # noqa: E402
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import (HOST, Client, Dovecot, Expected, Popbridge, cmd,  # noqa: E402
                    first_diff, is_err, is_ok, multi, note, read_line, show, user_pass,
                    wait_close, want_temp)
from pop3wire import Pop3Closed  # noqa: E402

POPBRIDGE_REL = os.environ.get("POPBRIDGE_RELEASE") or os.path.join(pbtest.ROOT, "build",
                                                                    "popbridge")

# The limits instance.
L_MAX_SESSIONS = 5
L_MAX_PER_IP = 3
L_IDLE = 2
L_AUTH_DELAY = 1
# The hostile instance.
H_MAX_PER_IP = 20

LONG_LINE = 100 * 1024
N_PIPELINED = 10000
N_LONG_CLIENTS = 50
# RSS limits (kB) on the release build.
RSS_LONG_LINES_KB = 1024       # 50 x 100 KB lines buffered would be ~5000
RSS_RETR_KB = 2048             # a 5 MB message buffered would be ~5000+
RSS_PIPELINE_KB = 2048
RSS_BASELINE_KB = 4096         # "back near its baseline"
# what a failure shows of the case's popbridge log
LOG_RE = r"session=|refused|warn|error|ERROR|runtime|flood|SUMMARY"


R = pbtest.Report()
DOVECOT = None
L = H = REL = None
USERS = {}
EXP = {}            # user -> Expected


# -- POP3 clients ------------------------------------------------------------------

def login(p, user, password=None):
    return user_pass(p, user, password if password is not None else USERS[user])


def logged_in(port, user, src=None, **kw):
    return pbtest.login(user, USERS[user], port, src=src, **kw)


def send_nonblocking(sock, data, secs):
    """Sends as much of data as the peer takes within secs; returns the
    number of bytes sent."""
    sock.setblocking(False)
    sent = 0
    deadline = time.time() + secs
    try:
        while sent < len(data) and time.time() < deadline:
            _, w, _ = select.select([], [sock], [], max(0.0, min(0.2, deadline - time.time())))
            if not w:
                continue
            try:
                sent += sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                continue
            except OSError:
                break
    finally:
        sock.setblocking(True)
    return sent


# -- expectations ------------------------------------------------------------------

def mailbox_state(user):
    conn = DOVECOT.imap(user)
    try:
        return imapfetch.info(conn, "INBOX")
    finally:
        conn.logout()


def full_session(port, user, src=None, every=True):
    """A normal session: login, STAT, LIST, UIDL, RETR byte for byte (every
    message, or just a few), QUIT. Returns problems."""
    exp = EXP[user]
    probs = []
    p = logged_in(port, user, src=src, timeout=60)
    try:
        r = cmd(p, b"STAT")
        want = b"+OK %d %d\r\n" % (len(exp), sum(exp.size))
        if r != want:
            probs.append("STAT -> %s, want %r" % (show(r), want))
        r = cmd(p, b"LIST")
        if not is_ok(r):
            probs.append("LIST -> %s" % show(r))
        else:
            data, pr = multi(p)
            probs += ["LIST: " + x for x in pr]
            want = b"".join(b"%d %d\r\n" % (i + 1, s) for i, s in enumerate(exp.size))
            if data != want:
                probs.append("LIST: %s" % first_diff(data, want))
        r = cmd(p, b"UIDL")
        if not is_ok(r):
            probs.append("UIDL -> %s" % show(r))
        else:
            data, pr = multi(p)
            if len(data.splitlines()) != len(exp):
                probs.append("UIDL listed %d lines for %d messages"
                             % (len(data.splitlines()), len(exp)))
        nums = range(1, len(exp) + 1) if every else sorted({1, len(exp)})
        for n in nums:
            r = cmd(p, b"RETR %d" % n, timeout=60)
            if not is_ok(r):
                probs.append("RETR %d -> %s" % (n, show(r)))
                break
            raw, data, pr = p.multi()
            probs += ["RETR %d: %s" % (n, x) for x in pr]
            if raw != imapfetch.dotstuff(exp.retr[n - 1]):
                probs.append("RETR %d is not byte-exact on the wire: %s"
                             % (n, first_diff(raw, imapfetch.dotstuff(exp.retr[n - 1]))))
        r = cmd(p, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %s" % show(r))
    except (Pop3Closed, socket.timeout, OSError, ValueError) as e:
        probs.append("%s: %s" % (type(e).__name__, e))
    finally:
        p.close()
    return probs


# -- the case runner ---------------------------------------------------------------

def case(name, pb, body):
    R.case(name, body, watch=pbtest.Watch([pb], LOG_RE))


# == limits (ASan, max_sessions 5, max_per_ip 3, idle 2 s, auth delay 1 s) ==============

def t_max_sessions():
    probs = []
    if L.wait_active(0, 10) != 0:
        return ["popbridge still counts %d sessions before the case" % L.active()]
    held = []
    try:
        for i in range(L_MAX_SESSIONS):
            c = Client(L.port, src="127.0.0.%d" % (2 + i))
            held.append(c)
            if not is_ok(c.greeting):
                probs.append("session %d of %d -> %s" % (i + 1, L_MAX_SESSIONS, show(c.greeting)))
        off = L.offset()
        extra = Client(L.port, src="127.0.0.7", greet=False)
        r = read_line(extra, 5)
        probs += want_temp("connection %d (max_sessions = %d)" % (L_MAX_SESSIONS + 1,
                                                                   L_MAX_SESSIONS), r)
        data, closed, secs = wait_close(extra, 5)
        extra.close()
        if not closed:
            probs.append("the refused connection is still open 5 s after the -ERR")
        if data:
            probs.append("after the -ERR the refused connection got more: %r" % data[:100])
        if not L.wait_log(off, r"refused client=127\.0\.0\.7: max_sessions", 3):
            probs.append("no log line 'refused client=127.0.0.7: max_sessions reached'")
        if L.wait_log(off, r"session=\d+ connect client=127\.0\.0\.7", 0.2):
            probs.append("the refused connection got a session anyway (log)")
        # A freed slot is reused.
        held.pop(0).close()
        L.wait_active(L_MAX_SESSIONS - 1, 5)
        c = Client(L.port, src="127.0.0.7")
        held.append(c)
        if not is_ok(c.greeting):
            probs.append("after one of the %d sessions ended, a new connection -> %s"
                         % (L_MAX_SESSIONS, show(c.greeting)))
    finally:
        for c in held:
            c.close()
    return probs


def t_max_per_ip():
    probs = []
    L.wait_active(0, 10)
    held = []
    try:
        for i in range(L_MAX_PER_IP):
            c = Client(L.port, src="127.0.0.8")
            held.append(c)
            if not is_ok(c.greeting):
                probs.append("session %d of %d from 127.0.0.8 -> %s"
                             % (i + 1, L_MAX_PER_IP, show(c.greeting)))
        off = L.offset()
        extra = Client(L.port, src="127.0.0.8", greet=False)
        r = read_line(extra, 5)
        probs += want_temp("connection %d from 127.0.0.8 (max_per_ip = %d)"
                           % (L_MAX_PER_IP + 1, L_MAX_PER_IP), r)
        data, closed, _ = wait_close(extra, 5)
        extra.close()
        if not closed:
            probs.append("the refused connection is still open 5 s after the -ERR")
        if data:
            probs.append("after the -ERR the refused connection got more: %r" % data[:100])
        if not L.wait_log(off, r"refused client=127\.0\.0\.8: max_per_ip", 3):
            probs.append("no log line 'refused client=127.0.0.8: max_per_ip reached'")
        other = Client(L.port, src="127.0.0.9")
        held.append(other)
        if not is_ok(other.greeting):
            probs.append("127.0.0.9 while 127.0.0.8 is at its limit -> %s"
                         % show(other.greeting))
        else:
            r = login(other, "alice")
            if not is_ok(r):
                probs.append("127.0.0.9: login -> %s" % show(r))
        held.pop(0).close()
        L.wait_active(L_MAX_PER_IP, 5)
        again = Client(L.port, src="127.0.0.8")
        held.append(again)
        if not is_ok(again.greeting):
            probs.append("after one 127.0.0.8 session ended, a new one from there -> %s"
                         % show(again.greeting))
    finally:
        for c in held:
            c.close()
    return probs


def t_idle_authorization():
    probs = []
    off = L.offset()
    c = Client(L.port, src="127.0.0.11")
    try:
        data, closed, secs = wait_close(c, L_IDLE + 6)
    finally:
        c.close()
    if not closed:
        probs.append("a silent client in AUTHORIZATION is still connected after %.1f s "
                     "(idle_timeout = %d)" % (secs, L_IDLE))
    elif not (L_IDLE - 0.2 <= secs <= L_IDLE + 3):
        probs.append("closed after %.2f s, want about %d s (idle_timeout)" % (secs, L_IDLE))
    if data:
        probs.append("the autologout was not silent: %r" % data[:200])
    sid = L.session_of(off, "127.0.0.11")
    end = L.end_line(sid, 3) if sid else None
    if end is None or 'reason="idle timeout"' not in end:
        probs.append("end log line: %r, want reason=\"idle timeout\"" % end)
    return probs


def t_idle_after_dele():
    probs = []
    before = mailbox_state("bob")
    off = L.offset()
    c = logged_in(L.port, "bob", src="127.0.0.12")
    try:
        r = cmd(c, b"STAT")
        if not is_ok(r):
            probs.append("STAT -> %s" % show(r))
        # Activity restarts the timer: a NOOP every 1.2 s for 3.6 s.
        for _ in range(3):
            time.sleep(L_IDLE * 0.6)
            r = cmd(c, b"NOOP", timeout=3)
            if not is_ok(r):
                probs.append("NOOP %.1f s after the previous command -> %s (the idle "
                             "timer must restart on every command)" % (L_IDLE * 0.6, show(r)))
                break
        for n in (1, 2):
            r = cmd(c, b"DELE %d" % n)
            if not is_ok(r):
                probs.append("DELE %d -> %s" % (n, show(r)))
        data, closed, secs = wait_close(c, L_IDLE + 6)
    finally:
        c.close()
    if not closed:
        probs.append("still connected %.1f s after the last command" % secs)
    elif not (L_IDLE - 0.2 <= secs <= L_IDLE + 3):
        probs.append("closed %.2f s after the last command, want about %d s" % (secs, L_IDLE))
    if data:
        probs.append("the autologout was not silent: %r" % data[:200])
    sid = L.session_of(off, "127.0.0.12")
    end = L.end_line(sid, 3) if sid else None
    if end is None or 'reason="idle timeout"' not in end or " deleted=0" not in end:
        probs.append("end log line: %r, want reason=\"idle timeout\" deleted=0" % end)
    time.sleep(0.5)
    after = mailbox_state("bob")
    if sorted(after) != sorted(before):
        probs.append("bob's UIDs changed after the idle timeout: %s -> %s"
                     % (sorted(before), sorted(after)))
    for uid, meta in after.items():
        if "\\Deleted" in meta["flags"]:
            probs.append("bob's UID %d is flagged \\Deleted after the idle timeout" % uid)
    return probs


def _failed_logins(c, send_one, what):
    probs = []
    times = []
    for i in range(3):
        t0 = time.time()
        r = send_one(i)
        dt = time.time() - t0
        times.append("%.2f" % dt)
        if not (isinstance(r, bytes) and r.startswith(b"-ERR [AUTH]")):
            probs.append("%s %d -> %s, want -ERR [AUTH]" % (what, i + 1, show(r)))
            return probs
        if dt < L_AUTH_DELAY - 0.1:
            probs.append("%s %d answered after %.2f s, want >= %.1f s (auth_fail_delay = %d)"
                         % (what, i + 1, dt, L_AUTH_DELAY - 0.1, L_AUTH_DELAY))
        if dt > L_AUTH_DELAY + 3:
            probs.append("%s %d answered only after %.2f s" % (what, i + 1, dt))
    note("%s failures answered after %s s (Dovecot itself takes ~0.5 s to refuse)"
         % (what, ", ".join(times)))
    data, closed, _ = wait_close(c, 3)
    if not closed:
        probs.append("the session is still open after three failed logins")
    if data:
        probs.append("after the third failure it sent %r" % data[:200])
    return probs


def t_auth_delay_pass():
    c = Client(L.port, src="127.0.0.13")
    try:
        def one(i):
            r = cmd(c, b"USER alice")
            if not is_ok(r):
                return r
            return cmd(c, b"PASS wrong-%d" % i, timeout=L_AUTH_DELAY + 5)
        probs = _failed_logins(c, one, "PASS")
    finally:
        c.close()
    # The delay is no ban: the right password on a new connection at once.
    c = Client(L.port, src="127.0.0.13")
    try:
        t0 = time.time()
        r = login(c, "alice")
        dt = time.time() - t0
        if not is_ok(r):
            probs.append("a correct login afterwards -> %s" % show(r))
        elif dt > L_AUTH_DELAY:
            probs.append("a correct login afterwards took %.2f s" % dt)
    finally:
        c.close()
    return probs


def t_auth_delay_auth_plain():
    c = Client(L.port, src="127.0.0.13")
    try:
        def one(i):
            tok = base64.b64encode(b"\0alice\0wrong-%d" % i)
            return cmd(c, b"AUTH PLAIN " + tok, timeout=L_AUTH_DELAY + 5)
        return _failed_logins(c, one, "AUTH PLAIN")
    finally:
        c.close()


def t_auth_delay_pipelined():
    """Three guesses in one write: each failure still waits, and the
    session ends after the third."""
    probs = []
    c = Client(L.port, src="127.0.0.13")
    try:
        c.send(b"".join(b"USER alice\r\nPASS guess-%d\r\n" % i for i in range(3)))
        t0 = time.time()
        last = t0
        for i in range(3):
            r = read_line(c, 5)
            if not is_ok(r):
                probs.append("USER %d -> %s" % (i + 1, show(r)))
                return probs
            r = read_line(c, L_AUTH_DELAY + 5)
            now = time.time()
            if not (isinstance(r, bytes) and r.startswith(b"-ERR [AUTH]")):
                probs.append("pipelined PASS %d -> %s" % (i + 1, show(r)))
                return probs
            if now - last < L_AUTH_DELAY - 0.1:
                probs.append("pipelined PASS %d answered %.2f s after the previous reply, "
                             "want >= %.1f s" % (i + 1, now - last, L_AUTH_DELAY - 0.1))
            last = now
        data, closed, _ = wait_close(c, 3)
        if not closed:
            probs.append("still open after three pipelined failures")
        if data:
            probs.append("after the third failure it sent %r" % data[:200])
    finally:
        c.close()
    return probs


def t_hangups():
    """Clients that hang up while popbridge waits: during the login delay,
    during the upstream login, during a RETR."""
    probs = []
    off = L.offset()
    c = Client(L.port, src="127.0.0.16")
    c.send(b"USER alice\r\nPASS wrong\r\n")
    time.sleep(0.7)                 # Dovecot answered, the delay runs
    c.close()
    c = Client(L.port, src="127.0.0.16")
    c.send(b"USER alice\r\nPASS %s\r\n" % USERS["alice"].encode())
    c.close()                       # while the upstream login runs
    c = logged_in(L.port, "alice", src="127.0.0.16")
    c.send(b"RETR 9\r\n")
    c.sock.recv(100)
    c.close()                       # mid-transfer
    time.sleep(L_AUTH_DELAY + 1)
    ends = re.findall(r"session=\d+ end client=127\.0\.0\.16 [^\n]*", L.text(off))
    if len(ends) != 3:
        probs.append("%d end lines for the 3 sessions that hung up: %s" % (len(ends), ends))
    r = full_session(L.port, "alice", src="127.0.0.16", every=False)
    return probs + r


def t_never_reads_idle():
    """10,000 pipelined LISTs, nothing read: popbridge stops at its output
    limit, another client is served meanwhile, the idle timeout ends the
    session and its descriptors are released."""
    probs = []
    L.wait_active(0, 10)
    time.sleep(0.3)
    fds0 = L.fds()
    off = L.offset()
    c = logged_in(L.port, "alice", src="127.0.0.14", rcvbuf=4096)
    try:
        sent = send_nonblocking(c.sock, b"LIST\r\n" * N_PIPELINED, 3)
        note("never-reading client (limits): %d of %d octets of pipelined LISTs accepted"
             % (sent, N_PIPELINED * 6))
        o = Client(L.port, src="127.0.0.15")
        try:
            r = cmd(o, b"CAPA", timeout=3)
            if not is_ok(r):
                probs.append("another client meanwhile: CAPA -> %s" % show(r))
        finally:
            o.close()
        sid = L.session_of(off, "127.0.0.14")
        end = L.end_line(sid, L_IDLE + 8) if sid else None
        if end is None:
            probs.append("the never-reading session did not end within %d s (idle_timeout "
                         "= %d)" % (L_IDLE + 8, L_IDLE))
        elif not re.search(r'reason="(idle timeout|input flood)"', end):
            probs.append("end line %r, want reason idle timeout (or input flood)" % end)
        deadline = time.time() + 10
        while L.fds() > fds0 and time.time() < deadline:
            time.sleep(0.1)
        if L.fds() > fds0:
            probs.append("popbridge holds %d descriptors, %d before the client came "
                         "(10 s after the session ended)" % (L.fds(), fds0))
    finally:
        c.close()
    return probs


# == hostile (ASan) ========================================================================

def t_long_line_authorization():
    """100 KB without CRLF, then CRLF and CAPA."""
    probs = []
    c = Client(H.port, src="127.0.0.40")
    try:
        sent = send_nonblocking(c.sock, b"A" * LONG_LINE, 10)
        if sent != LONG_LINE:
            probs.append("popbridge took only %d of %d octets of the line within 10 s "
                         "(it stopped reading)" % (sent, LONG_LINE))
        early, closed, _ = wait_close(c, 1.0)
        if closed:
            note("100 KB line in AUTHORIZATION: connection cut before the line ended, "
                 "after %r" % early[:80])
            if early and not early.startswith(b"-ERR"):
                probs.append("the connection was cut after %r" % early[:100])
            if early.count(b"\r\n") > 1:
                probs.append("several replies before the cut: %r" % early[:200])
            return probs
        if early:
            probs.append("reply before the line ended: %r" % early[:200])
        c.send(b"\r\nCAPA\r\n")
        r = read_line(c, 5)
        if r is None:
            note("100 KB line: connection cut when the line ended")
            return probs
        if not is_err(r):
            probs.append("the 100 KB line -> %s, want -ERR" % show(r))
        r = read_line(c, 5)
        if not is_ok(r):
            probs.append("CAPA after the long line -> %s (one -ERR per long line, then "
                         "the session goes on)" % show(r))
        else:
            data, pr = multi(c)
            if b"USER" not in data:
                probs.append("CAPA after the long line lacks USER: %r" % data[:200])
        r = login(c, "alice")
        if not is_ok(r):
            probs.append("login after the long line -> %s" % show(r))
        else:
            r = cmd(c, b"STAT")
            exp = EXP["alice"]
            want = b"+OK %d %d\r\n" % (len(exp), sum(exp.size))
            if r != want:
                probs.append("STAT -> %s, want %r" % (show(r), want))
    finally:
        c.close()
    return probs


def t_long_line_transaction():
    """After login: RETR 1 followed by 100 KB, then STAT, in one write."""
    probs = []
    c = logged_in(H.port, "alice", src="127.0.0.41")
    try:
        c.send(b"RETR 1" + b"7" * LONG_LINE + b"\r\nSTAT\r\n")
        r = read_line(c, 10)
        if not is_err(r):
            probs.append("RETR 1<100 KB> -> %s, want -ERR (not a RETR)" % show(r))
            return probs
        first = r
        r = read_line(c, 10)
        if r is None:
            note("100 KB line in TRANSACTION: %r, then the connection was cut" % first)
            return probs
        exp = EXP["alice"]
        want = b"+OK %d %d\r\n" % (len(exp), sum(exp.size))
        if r != want:
            probs.append("STAT after the long line -> %s, want %r" % (show(r), want))
        r = cmd(c, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %s" % show(r))
    finally:
        c.close()
    return probs


def t_long_line_trickled():
    """The same 100 KB line in 1 KB pieces: -ERR when it ends, session goes on."""
    probs = []
    c = Client(H.port, src="127.0.0.42")
    try:
        for _ in range(LONG_LINE // 1024):
            c.send(b"B" * 1024)
            time.sleep(0.001)
        c.send(b"\r\nCAPA\r\n")
        r = read_line(c, 5)
        if not is_err(r):
            probs.append("the trickled 100 KB line -> %s, want -ERR" % show(r))
        r = read_line(c, 5)
        if not is_ok(r):
            probs.append("CAPA after it -> %s" % show(r))
    finally:
        c.close()
    return probs


def t_auth_line_too_long():
    """An AUTH PLAIN continuation over the 16 KiB bound: -ERR, and the AUTH
    exchange is over (the next line is a command again)."""
    probs = []
    c = Client(H.port, src="127.0.0.48")
    try:
        r = cmd(c, b"AUTH PLAIN")
        if not (isinstance(r, bytes) and r.startswith(b"+ ")):
            return ["AUTH PLAIN -> %s, want '+ '" % show(r)]
        c.send(b"QUFB" * 5000 + b"\r\n")
        r = read_line(c, 5)
        if not is_err(r):
            probs.append("a 20,000-octet AUTH response -> %s, want -ERR" % show(r))
        r = cmd(c, b"CAPA")
        if not is_ok(r):
            probs.append("CAPA after the rejected AUTH response -> %s, want +OK (the "
                         "AUTH exchange ended with the -ERR; this line is a command)"
                         % show(r))
        else:
            multi(c)
        r = login(c, "alice")
        if not is_ok(r):
            probs.append("USER/PASS afterwards -> %s" % show(r))
    finally:
        c.close()
    return probs


def t_slow_reader_not_idle():
    """A client that reads a big RETR slowly but steadily is not idle."""
    probs = []
    exp = EXP["alice"]
    big = max(range(len(exp)), key=lambda i: exp.size[i]) + 1
    off = L.offset()
    c = logged_in(L.port, "alice", src="127.0.0.17", rcvbuf=8192)
    got = 0
    try:
        c.send(b"RETR %d\r\n" % big)
        t0 = time.time()
        secs = 4 * L_IDLE
        while time.time() - t0 < secs:
            c.sock.settimeout(L_IDLE + 2)
            try:
                chunk = c.sock.recv(2048)
            except socket.timeout:
                probs.append("no data for %d s after %d octets" % (L_IDLE + 2, got))
                break
            if not chunk:
                probs.append("the connection was closed after %d octets (%.1f s) while "
                             "the client was reading" % (got, time.time() - t0))
                break
            got += len(chunk)
            time.sleep(0.05)          # ~40 KB/s
    finally:
        c.close()
    sid = L.session_of(off, "127.0.0.17")
    end = L.end_line(sid, 3) if sid else None
    note("slow reader (~40 KB/s, idle_timeout %d s): %d octets in %d s; end line: %s"
         % (L_IDLE, got, 4 * L_IDLE, end))
    if end and "idle timeout" in end:
        probs.append("ended as idle while reading: %s" % end)
    return probs


def garbage_lines(seed, n):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        ln = bytes(rnd.choice([b for b in range(256) if b != 10])
                   for _ in range(rnd.randint(1, 200)))
        out.append(b"\xff" + ln)      # never a valid command by accident
    return out


def t_garbage_nul():
    probs = []
    c = Client(H.port, src="127.0.0.43")
    try:
        lines = garbage_lines(5, 30) + [
            b"USER al\x00ice", b"CAPA\x00", b"\x00\x00\x00", b"PASS \x00", b"", b"\x00",
            b"QUIT\x00", b"\x1b[2J\x1b[31mred",
            b"CAPA\rQUIT",
        ]
        c.send(b"".join(ln + b"\r\n" for ln in lines))
        for i, ln in enumerate(lines):
            r = read_line(c, 5)
            if not is_err(r):
                probs.append("line %d %r -> %s, want -ERR" % (i + 1, ln[:40], show(r)))
                if not isinstance(r, bytes):
                    return probs
        r = cmd(c, b"CAPA")
        if not is_ok(r):
            probs.append("CAPA after the garbage -> %s" % show(r))
        else:
            multi(c)
        r = login(c, "alice")
        if not is_ok(r):
            probs.append("login after the garbage -> %s" % show(r))
            return probs
        tlines = [b"STAT\x00", b"RETR 1\x00", b"DELE\x001", b"DELE 1\x00", b"LIST \xff\xfe",
                  b"TOP 1 \x00", b"RETR \x00\x00", b"DELE 0x1", b"DELE -1",
                  b"DELE 99999999999", b"RETR 1 1"] + garbage_lines(6, 20)
        c.send(b"".join(ln + b"\r\n" for ln in tlines))
        for i, ln in enumerate(tlines):
            r = read_line(c, 5)
            if not is_err(r):
                probs.append("TRANSACTION line %r -> %s, want -ERR" % (ln[:40], show(r)))
                if not isinstance(r, bytes):
                    return probs
        r = cmd(c, b"STAT")
        exp = EXP["alice"]
        want = b"+OK %d %d\r\n" % (len(exp), sum(exp.size))
        if r != want:
            probs.append("STAT after the garbage -> %s, want %r (nothing deleted)"
                         % (show(r), want))
        r = cmd(c, b"QUIT")
        if not is_ok(r) or re.search(rb"\b[1-9]\d* messages? deleted", r):
            probs.append("QUIT -> %s, want +OK with nothing deleted" % show(r))
    finally:
        c.close()
    return probs


def t_binary_protocols():
    """A TLS ClientHello and an HTTP request on the plain port: only -ERR
    lines (or a close), never +OK, and popbridge goes on."""
    import ssl
    probs = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    for what, payload in (("a TLS ClientHello", hello),
                          ("an HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                          ("a PROXY v2 header", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
                           + bytes(12))):
        c = Client(H.port, src="127.0.0.44")
        try:
            c.send(payload)
            data, closed, _ = wait_close(c, 2)
            for ln in data.split(b"\r\n"):
                if ln.startswith(b"+OK") and not ln.startswith(b"+OK popbridge signing off"):
                    probs.append("%s got %r" % (what, ln[:100]))
        finally:
            c.close()
    c = Client(H.port, src="127.0.0.44")
    try:
        r = cmd(c, b"CAPA")
        if not is_ok(r):
            probs.append("CAPA afterwards -> %s" % show(r))
    finally:
        c.close()
    return probs


def t_pipelined_10000():
    """10,000 commands in one write after login, read as they come: every
    one answered, in order."""
    probs = []
    exp = EXP["alice"]
    n = len(exp)
    stat = b"+OK %d %d\r\n" % (n, sum(exp.size))
    cmds, want = [], []
    for i in range(N_PIPELINED):
        k = i % 3
        if k == 0:
            cmds.append(b"NOOP\r\n")
            want.append(None)
        elif k == 1:
            cmds.append(b"STAT\r\n")
            want.append(stat)
        else:
            m = 1 + (i // 3) % n
            cmds.append(b"LIST %d\r\n" % m)
            want.append(b"+OK %d %d\r\n" % (m, exp.size[m - 1]))
    payload = b"".join(cmds)
    c = logged_in(H.port, "alice", src="127.0.0.45", timeout=60)
    err = {}

    def writer():
        try:
            c.sock.sendall(payload)
        except OSError as e:
            err["send"] = str(e)

    t0 = time.time()
    th = threading.Thread(target=writer, daemon=True)
    th.start()
    got = 0
    try:
        deadline = time.time() + 90
        for i in range(N_PIPELINED):
            r = read_line(c, max(0.1, deadline - time.time()))
            if not isinstance(r, bytes):
                probs.append("reply %d of %d (%r) -> %s; %d answered"
                             % (i + 1, N_PIPELINED, cmds[i].strip(), show(r), got))
                break
            if (want[i] is None and r != b"+OK\r\n" and not is_ok(r)) or \
                    (want[i] is not None and r != want[i]):
                probs.append("reply %d (%r) -> %s, want %r (out of order or wrong)"
                             % (i + 1, cmds[i].strip(), show(r), want[i] or b"+OK"))
                break
            got += 1
        if got == N_PIPELINED:
            r = cmd(c, b"QUIT")
            if not is_ok(r):
                probs.append("QUIT after the pipeline -> %s" % show(r))
            note("10,000 pipelined commands answered in %.2f s" % (time.time() - t0))
    finally:
        c.close()
        th.join(5)
    if "send" in err:
        probs.append("sending the pipeline failed: %s" % err["send"])
    return probs


def t_pipelined_never_reads():
    probs = []
    fds0 = H.fds()
    off = H.offset()
    c = logged_in(H.port, "alice", src="127.0.0.46", rcvbuf=4096)
    try:
        sent = send_nonblocking(c.sock, b"LIST\r\n" * N_PIPELINED, 3)
        note("never-reading client (hostile): %d of %d octets of pipelined LISTs accepted"
             % (sent, N_PIPELINED * 6))
        t0 = time.time()
        probs += ["meanwhile: " + x for x in full_session(H.port, "alice", src="127.0.0.47",
                                                          every=False)]
        if time.time() - t0 > 10:
            probs.append("a normal session took %.1f s meanwhile" % (time.time() - t0))
        sid = H.session_of(off, "127.0.0.46")
        end = H.end_line(sid, 0.1) if sid else None
        if end is not None and not re.search(r'reason="input flood"', end):
            probs.append("the stalled session ended on its own: %r" % end)
    finally:
        c.close()
    end = H.end_line(sid, 5) if sid else None
    if end is None:
        probs.append("the stalled session did not end within 5 s of the client closing")
    deadline = time.time() + 10
    while H.fds() > fds0 and time.time() < deadline:
        time.sleep(0.1)
    if H.fds() > fds0:
        probs.append("popbridge holds %d descriptors, %d before" % (H.fds(), fds0))
    return probs


def t_slowloris():
    """max_per_ip connections from one address, each dribbling a byte per
    second: the next from that address is refused, another address is
    served."""
    probs = []
    H.wait_active(0, 10)
    src = "127.0.0.50"
    conns = []
    stop = threading.Event()
    try:
        for i in range(H_MAX_PER_IP):
            c = Client(H.port, src=src, timeout=5)
            conns.append(c)
            if not is_ok(c.greeting):
                probs.append("slow connection %d -> %s" % (i + 1, show(c.greeting)))
        pattern = b"CAPA\r\n"

        def dribble():
            k = 0
            while not stop.is_set() and k < 60:
                for c in conns:
                    try:
                        c.sock.send(pattern[k % len(pattern):k % len(pattern) + 1])
                    except OSError:
                        pass
                k += 1
                stop.wait(1.0)

        th = threading.Thread(target=dribble, daemon=True)
        th.start()
        time.sleep(2.5)
        off = H.offset()
        extra = Client(H.port, src=src, greet=False)
        r = read_line(extra, 5)
        probs += want_temp("connection %d from %s (max_per_ip = %d)"
                           % (H_MAX_PER_IP + 1, src, H_MAX_PER_IP), r)
        data, closed, _ = wait_close(extra, 5)
        extra.close()
        if not closed:
            probs.append("the refused connection stayed open")
        if not H.wait_log(off, r"refused client=127\.0\.0\.50: max_per_ip", 3):
            probs.append("no 'refused client=127.0.0.50: max_per_ip reached' log line")
        t0 = time.time()
        other = full_session(H.port, "alice", src="127.0.0.51", every=False)
        probs += ["127.0.0.51 meanwhile: " + x for x in other]
        if time.time() - t0 > 10:
            probs.append("a session from 127.0.0.51 took %.1f s meanwhile" % (time.time() - t0))
        dead = 0
        for c in conns:
            c.sock.setblocking(False)
            try:
                if c.sock.recv(65536, socket.MSG_PEEK) == b"":
                    dead += 1
            except (BlockingIOError, OSError):
                pass
            c.sock.setblocking(True)
        note("slowloris: %d of %d slow connections closed by popbridge after %.0f s"
             % (dead, len(conns), time.time() - t0 + 2.5))
    finally:
        stop.set()
        for c in conns:
            c.close()
    if H.wait_active(0, 10) != 0:
        probs.append("popbridge still counts %d sessions 10 s after the slow clients left"
                     % H.active())
    return probs


# == release build: memory ======================================================================

def settle_rss(pb, secs=0.6):
    """The median of a few samples."""
    vals = []
    for _ in range(5):
        vals.append(pb.rss_kb())
        time.sleep(secs / 5)
    return sorted(vals)[2]


BASE = {}


def t_rel_baseline():
    probs = full_session(REL.port, "alice", src="127.0.0.60", every=False)
    REL.wait_active(0, 10)
    BASE["rss"] = settle_rss(REL)
    BASE["fds"] = REL.fds()
    note("release popbridge baseline after a normal session: VmRSS %d kB, %d fds"
         % (BASE["rss"], BASE["fds"]))
    return probs


def t_rel_long_lines():
    probs = []
    conns = []
    try:
        for i in range(N_LONG_CLIENTS):
            c = Client(REL.port, src="127.0.0.61", timeout=10)
            conns.append(c)
            if not is_ok(c.greeting):
                probs.append("client %d -> %s" % (i + 1, show(c.greeting)))
                return probs
        r1 = settle_rss(REL)
        peak = r1
        line = b"A" * LONG_LINE
        for i, c in enumerate(conns):
            sent = send_nonblocking(c.sock, line, 5)
            if sent != LONG_LINE:
                probs.append("client %d: popbridge took %d of %d octets within 5 s"
                             % (i + 1, sent, LONG_LINE))
                break
            peak = max(peak, REL.rss_kb())
        time.sleep(0.5)
        r2 = settle_rss(REL)
        peak = max(peak, r2)
        grow = peak - r1
        note("50 idle clients cost %d kB; their 50 x 100 KB lines without CRLF added "
             "%d kB at the peak (%d kB after)" % (r1 - BASE.get("rss", r1), grow, r2 - r1))
        if grow > RSS_LONG_LINES_KB:
            probs.append("RSS grew by %d kB while 50 clients sent 100 KB lines without "
                         "CRLF (limit %d kB; buffered lines would be ~%d kB)"
                         % (grow, RSS_LONG_LINES_KB, N_LONG_CLIENTS * LONG_LINE // 1024))
        cut = answered = 0
        for c in conns:
            try:
                c.send(b"\r\n")
            except OSError:
                cut += 1
                continue
            r = read_line(c, 5)
            if is_err(r):
                answered += 1
            elif r is None:
                cut += 1
            else:
                probs.append("after the long line ended -> %s, want -ERR" % show(r))
                break
        note("long lines: %d sessions answered -ERR when the line ended, %d were cut"
             % (answered, cut))
    finally:
        for c in conns:
            c.close()
    return probs


def t_rel_retr_never_reads():
    probs = []
    exp = EXP["alice"]
    big = max(range(len(exp)), key=lambda i: exp.size[i]) + 1
    c = logged_in(REL.port, "alice", src="127.0.0.62", rcvbuf=4096)
    try:
        r = cmd(c, b"STAT")
        if not is_ok(r):
            return ["STAT -> %s" % show(r)]
        r1 = settle_rss(REL)
        peak = r1
        c.send(b"RETR %d\r\n" % big * 20)
        t0 = time.time()
        while time.time() - t0 < 6:
            peak = max(peak, REL.rss_kb())
            time.sleep(0.1)
        c.sock.setblocking(False)
        try:
            queued = len(c.sock.recv(1 << 20, socket.MSG_PEEK))
        except (BlockingIOError, OSError):
            queued = 0
        c.sock.setblocking(True)
        note("RETR %d (%d octets) x 20, never read: RSS %d kB -> peak %d kB (+%d kB); "
             "%d octets waiting in the client's socket" % (big, exp.size[big - 1], r1, peak,
                                                         peak - r1, queued))
        if queued == 0:
            probs.append("no data reached the client: the transfer never started")
        if peak - r1 > RSS_RETR_KB:
            probs.append("RSS grew by %d kB while a client did not read a %d-octet RETR "
                         "(limit %d kB)" % (peak - r1, exp.size[big - 1], RSS_RETR_KB))
        t1 = time.time()
        probs += ["meanwhile: " + x for x in full_session(REL.port, "alice",
                                                          src="127.0.0.63", every=False)]
        if time.time() - t1 > 15:
            probs.append("a normal session took %.1f s meanwhile" % (time.time() - t1))
    finally:
        c.close()
    return probs


def t_rel_pipeline_never_reads():
    probs = []
    c = logged_in(REL.port, "alice", src="127.0.0.64", rcvbuf=4096)
    try:
        r1 = settle_rss(REL)
        peak = r1
        sent = send_nonblocking(c.sock, b"LIST\r\n" * N_PIPELINED, 3)
        t0 = time.time()
        while time.time() - t0 < 3:
            peak = max(peak, REL.rss_kb())
            time.sleep(0.1)
        note("10,000 pipelined LISTs (%d octets taken), never read: RSS +%d kB"
             % (sent, peak - r1))
        if peak - r1 > RSS_PIPELINE_KB:
            probs.append("RSS grew by %d kB (limit %d kB)" % (peak - r1, RSS_PIPELINE_KB))
    finally:
        c.close()
    return probs


def t_rel_churn():
    """500 connections that close at once, some before the greeting, some
    after a command: none is left behind."""
    probs = []
    for i in range(500):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.66", 0))
            s.settimeout(5)
            s.connect((HOST, REL.port))
            if i % 3 == 1:
                s.recv(100)
            elif i % 3 == 2:
                s.sendall(b"CAPA\r\nUSER x\r\n")
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        except OSError as e:
            probs.append("connection %d: %s" % (i + 1, e))
            break
        finally:
            s.close()
    if REL.wait_active(0, 15) != 0:
        probs.append("popbridge still counts %d sessions 15 s after 500 short connections"
                     % REL.active())
    return probs


def t_rel_back_to_baseline():
    probs = []
    if REL.wait_active(0, 15) != 0:
        probs.append("popbridge still counts %d sessions 15 s after the hostile clients left"
                     % REL.active())
    deadline = time.time() + 10
    while REL.fds() > BASE["fds"] and time.time() < deadline:
        time.sleep(0.1)
    fds = REL.fds()
    if fds > BASE["fds"]:
        probs.append("%d open descriptors, %d at the baseline" % (fds, BASE["fds"]))
    rss = settle_rss(REL, 1.0)
    note("release popbridge after the hostile clients: VmRSS %d kB (baseline %d kB, "
         "%+d kB), %d fds (baseline %d)" % (rss, BASE["rss"], rss - BASE["rss"], fds,
                                           BASE["fds"]))
    if rss - BASE["rss"] > RSS_BASELINE_KB:
        probs.append("VmRSS %d kB, %d kB above the baseline %d kB (limit %d kB)"
                     % (rss, rss - BASE["rss"], BASE["rss"], RSS_BASELINE_KB))
    probs += full_session(REL.port, "alice", src="127.0.0.65", every=True)
    return probs


# == the end ======================================================================================

def setup():
    global DOVECOT, L, H, REL
    DOVECOT = Dovecot(os.path.join(pbtest.SCRATCH, "dovecot")).start()
    USERS.update(DOVECOT.passwords())
    note("dovecot: imap 127.0.0.1:%d" % DOVECOT.port)
    DOVECOT.append("alice", corpus.messages())
    DOVECOT.append("bob", corpus.generated(4, 3000, prefix="bob"))
    for u in ("alice", "bob"):
        EXP[u] = Expected.imap(DOVECOT.port, u, USERS[u], sections=("",))
    L = Popbridge("limits", DOVECOT.port, limits={
        "max_sessions": L_MAX_SESSIONS, "max_per_ip": L_MAX_PER_IP,
        "idle_timeout": L_IDLE, "auth_fail_delay": L_AUTH_DELAY, "shutdown_grace": 2})
    H = Popbridge("hostile", DOVECOT.port, limits={
        "max_sessions": 200, "max_per_ip": H_MAX_PER_IP, "idle_timeout": 60,
        "auth_fail_delay": 0, "shutdown_grace": 2})
    REL = Popbridge("release", DOVECOT.port, binary=POPBRIDGE_REL, limits={
        "max_sessions": 300, "max_per_ip": 100, "idle_timeout": 60,
        "auth_fail_delay": 0, "shutdown_grace": 2}, level="info")
    ok = True
    for pb in (L, H, REL):
        err = pb.try_start()
        if err:
            R.fail("popbridge %s (%s) starts" % (pb.name, pb.binary), [err])
            ok = False
        else:
            note("popbridge %s: %s on 127.0.0.1:%d" % (pb.name, pb.binary, pb.port))
    return ok


def cases():
    case("max_sessions = 5: the 6th gets -ERR [SYS/TEMP] ... wait and is closed; "
         "a freed slot is reused", L, t_max_sessions)
    case("max_per_ip = 3: the 4th from 127.0.0.8 is refused, 127.0.0.9 is served", L,
         t_max_per_ip)
    case("idle_timeout = 2 in AUTHORIZATION: silent close after ~2 s", L,
         t_idle_authorization)
    case("idle_timeout = 2 after DELE: NOOPs restart it, then a silent close, "
         "nothing deleted", L, t_idle_after_dele)
    case("auth_fail_delay = 1: each failed PASS waits >= 0.9 s, the third closes", L,
         t_auth_delay_pass)
    case("auth_fail_delay = 1: failed AUTH PLAIN waits too, the third closes", L,
         t_auth_delay_auth_plain)
    case("auth_fail_delay = 1: three pipelined guesses are each delayed, then closed",
         L, t_auth_delay_pipelined)
    case("clients hanging up during the auth delay, the upstream login and a RETR: "
         "each session ends, popbridge goes on", L, t_hangups)
    case("a client reading a 5 MB RETR slowly but steadily is not idle "
         "(idle_timeout = 2)", L, t_slow_reader_not_idle)
    case("10,000 pipelined LISTs never read: others served, the session is closed "
         "(idle timeout or input limit), descriptors released", L, t_never_reads_idle)
    case("a 100 KB line without CRLF in AUTHORIZATION: one -ERR when it ends and the "
         "session goes on, or -ERR and cut", H, t_long_line_authorization)
    case("a 100 KB line in TRANSACTION (RETR 1<100 KB>): -ERR, not a RETR; then STAT "
         "answered, or cut", H, t_long_line_transaction)
    case("a 100 KB line trickled in 1 KB pieces: -ERR when it ends, session goes on",
         H, t_long_line_trickled)
    case("an AUTH PLAIN response over 16 KiB: -ERR, then the next line is a command "
         "again", H, t_auth_line_too_long)
    case("binary garbage and NUL bytes: one -ERR per line in both states, "
         "nothing deleted", H, t_garbage_nul)
    case("a TLS ClientHello, an HTTP request, a PROXY v2 header on the plain port: "
         "no +OK, popbridge goes on", H, t_binary_protocols)
    case("10,000 pipelined NOOP/STAT/LIST n in one write: all answered, in order", H,
         t_pipelined_10000)
    case("10,000 pipelined LISTs never read: others served meanwhile, the session "
         "ends when the client hangs up", H, t_pipelined_never_reads)
    case("slowloris: %d connections from 127.0.0.50 at a byte a second; the next "
         "from there refused, 127.0.0.51 served" % H_MAX_PER_IP, H, t_slowloris)
    case("after the hostile clients: a normal session on the ASan build, every "
         "message byte-exact", H, lambda: full_session(H.port, "alice", src="127.0.0.70"))
    if not os.access(POPBRIDGE_REL, os.X_OK):
        R.fail("the release build exists for the memory cases",
               ["%s is missing: make build/popbridge" % POPBRIDGE_REL])
        return
    case("release: baseline after a normal session", REL, t_rel_baseline)
    case("release: 50 clients send 100 KB lines without CRLF; RSS grows < %d kB"
         % RSS_LONG_LINES_KB, REL, t_rel_long_lines)
    case("release: RETR of the 5 MB message x 20, never read; RSS grows < %d kB, "
         "others served" % RSS_RETR_KB, REL, t_rel_retr_never_reads)
    case("release: 10,000 pipelined LISTs never read; RSS grows < %d kB"
         % RSS_PIPELINE_KB, REL, t_rel_pipeline_never_reads)
    case("release: 500 connections that hang up at once (some with RST) leave no "
         "session behind", REL, t_rel_churn)
    if "rss" in BASE:
        case("release: RSS within %d kB of the baseline and descriptors back once the "
             "hostile clients are gone; a normal session byte-exact" % RSS_BASELINE_KB,
             REL, t_rel_back_to_baseline)


def main():
    def body(tmp):
        if setup():
            cases()
            for pb in (L, H, REL):
                if pb is not None and pb.proc is not None:
                    pbtest.finish_checks(R, pb)

    return pbtest.script_main(R, "hostile-client cases", body)


if __name__ == "__main__":
    sys.exit(main())
