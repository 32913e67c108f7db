#!/usr/bin/env python3
"""Upstream faults a real server will not produce on demand (SPEC §2, §3,
§5; STYLE habit 9), played by a scripted IMAP peer (tests/lib/imapfault.py).

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_faults.py

Starts the peer on a free 127.0.0.1 port and one popbridge in front of it
(upstream timeout 2 s), then, per case: a fault plan for the peer, a raw
POP3 session, assertions on the client's replies and on what popbridge
sent upstream (no UID STORE / EXPUNGE / MOVE / COPY unless the case is
about QUIT), and a normal session through the well-behaved peer to show
popbridge still serves. popbridge also listens for pop3s with a
certificate from a throw-away test CA (tests/lib/testca.py): the
zero-length body cases run on both a plain and a TLS session. A case
that kills popbridge fails, and popbridge is started again (same state
directory, log appended) so that the cases after it still say something
of their own. At the end: popbridge exits 0 on SIGTERM and its log holds
no sanitizer report and no secret.

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script.
"""

import base64
import os
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import imapfetch  # noqa: E402
import pbtest  # noqa: E402
import testca  # noqa: E402
from imapfault import CAPS_FULL, Fault, FaultPeer, _msg  # noqa: E402
from pbtest import (REPLY_WAIT, Client, cmd, first_diff, is_err, is_ok, is_temp,  # noqa: E402
                    multi, read_line, show, user_pass, want_temp)
from pop3wire import Pop3Closed  # noqa: E402

UPSTREAM_TIMEOUT = 2        # [upstream] timeout in popbridge's config
USER, PW = b"alice", b"Alice-pw-1"
QUOTE_PW = b'p a"s\\s'                      # needs escaping when quoted
EIGHTBIT_PW = "pässwörd-ß".encode("utf-8")   # needs a literal
SECRETS = [PW, QUOTE_PW, EIGHTBIT_PW]


R = pbtest.Report()
PEER = None
PB = None           # the popbridge (pbtest.Popbridge)
CTX = None          # an ssl.SSLContext trusting the test CA

MSGS = None         # [(uid, bytes)] of the scripted mailbox
EXP = None          # [(retr bytes, list size)] per POP3 message number


def caps_without(*names):
    return [c for c in CAPS_FULL if c not in names]


INTERESTING = re.compile(r"upstream|imap[<>]|pop3>|transfer|update|warn|error|"
                         r"ERROR|runtime error|fail", re.I)


def log_lines(offset, limit=6):
    """popbridge's log lines since offset that say something about the
    upstream, trimmed to the last `limit`."""
    return PB.tail(limit, offset, INTERESTING)


# -- POP3 helpers -------------------------------------------------------------------

def pop3():
    return Client(PB.port, timeout=REPLY_WAIT)


def connect(transport):
    """A fresh POP3 session: transport "pop3" (plain) or "pop3s" (implicit
    TLS, checked against the test CA)."""
    return pop3() if transport == "pop3" else Client(PB.sport, tls=CTX)


def login(p, user=USER, password=PW):
    return user_pass(p, user, password)


def session_basics(p):
    """Logs in; STAT must show the whole scripted mailbox."""
    r = login(p)
    if not is_ok(r):
        raise AssertionError("login -> %s" % show(r))
    r = cmd(p, b"STAT")
    want = b"+OK %d %d\r\n" % (len(EXP), sum(s for _, s in EXP))
    if r != want:
        return ["STAT -> %s, want %r" % (show(r), want)]
    return []


def logged_in():
    """A POP3 session past PASS; raises AssertionError when login fails."""
    p = pop3()
    r = login(p)
    if not is_ok(r):
        p.close()
        raise AssertionError("login before the fault -> %s" % show(r))
    return p


def retr_ok(p, n, what=None):
    """RETR n must deliver exactly the expected bytes."""
    what = what or "RETR %d" % n
    r = cmd(p, b"RETR %d" % n)
    if not is_ok(r):
        return ["%s -> %s" % (what, show(r))]
    try:
        data, problems = multi(p)
    except (Pop3Closed, socket.timeout, OSError) as e:
        return ["%s: the multi-line response broke off: %s" % (what, e)]
    want = EXP[n - 1][0]
    probs = ["%s: %s" % (what, x) for x in problems]
    if data != want:
        probs.append("%s delivered other bytes: %s" % (what, first_diff(data, want)))
    return probs


def quit_after_fault(p):
    """After a fault in TRANSACTION the session must end without touching
    the mailbox (SPEC §5): if it is still open, QUIT must not claim that
    the DELEs were carried out."""
    r = cmd(p, b"QUIT", timeout=UPSTREAM_TIMEOUT + 6)
    p.close()
    if is_ok(r):
        return ["QUIT after the fault -> %r: the session went on and QUIT "
                "claims success" % r]
    return []


def drain(p, secs, stop_at_end=False):
    """(bytes, closed): what the server sends until it closes, for at most
    secs; with stop_at_end, also until a terminating '.' line."""
    got, p.buf = p.buf, b""
    p.sock.settimeout(secs)
    deadline = time.time() + secs
    try:
        while time.time() < deadline and len(got) < 8 << 20:
            if stop_at_end and terminator_at(got) >= 0:
                break           # already buffered with the status line
            chunk = p.sock.recv(65536)
            if not chunk:
                return got, True
            got += chunk
            if stop_at_end and terminator_at(got) >= 0:
                break
    except socket.timeout:
        pass
    except OSError:
        return got, True
    return got, False


def terminator_at(got):
    """Offset of a terminating '.' line in a multi-line body, or -1."""
    return (b"\r\n" + got).find(b"\r\n.\r\n")


def read_broken_transfer(p, n, prefix_check=True, allow_temp=False):
    """RETR n where the upstream breaks during the literal: after +OK the
    client must never see the terminating '.', only a closed connection
    (SPEC §5: a '.' would make a partial message look whole)."""
    r = cmd(p, b"RETR %d" % n)
    if allow_temp and is_temp(r):
        return quit_after_fault(p)
    if not is_ok(r):
        return ["RETR %d -> %s, want +OK and a broken-off transfer%s"
                % (n, show(r), " (or -ERR [SYS/TEMP] ... wait)" if allow_temp else "")]
    got, closed = drain(p, UPSTREAM_TIMEOUT + 8)
    probs = []
    want = imapfetch.dotstuff(EXP[n - 1][0])     # the whole, terminated body
    i = terminator_at(got)
    if i >= 0:
        probs.append("the client got a terminating '.' line after %d octets of a "
                     "broken transfer (%d octets expected in all)" % (i, len(want)))
    if not closed:
        probs.append("the connection was not closed within %ds after the upstream broke"
                     % (UPSTREAM_TIMEOUT + 8))
    if prefix_check and not want.startswith(got):
        probs.append("the partial data is not a prefix of the message: %s"
                     % first_diff(got, want[:len(got)]))
    p.close()
    return probs


def no_mutations(why="after the fault"):
    m = PEER.mutations()
    if m:
        return ["popbridge changed the mailbox %s: %s" % (why, "; ".join(
            c.text for c in m))]
    return []


def mailbox_unchanged():
    if PEER.state() != PEER.initial_state():
        return ["the mailbox changed: %s" % PEER.state()]
    return []


# -- the case runner ----------------------------------------------------------------

def good_session():
    """A normal session through the well-behaved peer (nothing deleted)."""
    PEER.reset()
    probs = []
    try:
        p = pop3()
    except OSError as e:
        return ["good session after the fault: popbridge no longer accepts "
                "connections: %s" % e]
    try:
        probs += session_basics(p)
        probs += retr_ok(p, 2)
        r = cmd(p, b"UIDL")
        if not is_ok(r):
            probs.append("UIDL -> %s" % show(r))
        else:
            data, _ = multi(p)
            if len(data.splitlines()) != len(EXP):
                probs.append("UIDL listed %d lines" % len(data.splitlines()))
        r = cmd(p, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %s" % show(r))
    except (Pop3Closed, socket.timeout, OSError, AssertionError) as e:
        probs.append("%s: %s" % (type(e).__name__, e))
    finally:
        p.close()
    probs += no_mutations("in a read-only session")
    return ["good session after the fault: " + x for x in probs]


def masked(line):
    """A transcript line with credentials cut off."""
    m = re.match(r"(\[c\d+\] \S+ (AUTHENTICATE PLAIN|LOGIN))\b", line, re.I)
    return m.group(1) + " ..." if m else line


class FaultCase:
    """Report.case's watch for a fault case: the peer gets the plan first;
    afterwards faults that never fired and what the peer noticed are
    problems, a failure shows what popbridge sent upstream and logged, a
    normal session through the well-behaved peer must work (good), and a
    popbridge that died is a problem and is started again."""

    def __init__(self, plan, good, expect_fired, peer_opts):
        self.plan, self.good, self.expect_fired = plan, good, expect_fired
        self.peer_opts = peer_opts

    def begin(self):
        self.off = PB.offset()
        self.t0 = time.time()
        PEER.reset(plan=self.plan, **self.peer_opts)

    def end(self, probs):
        if self.expect_fired:
            for f in PEER.unfired():
                probs.append("the fault never fired: %r (popbridge did not get "
                             "that far)" % f)
        probs += ["peer noticed: %s" % v for v in PEER.violations()]
        if probs:
            probs.append("(%.1fs) popbridge sent upstream:" % (time.time() - self.t0))
            probs += ["  " + masked(t) for t in PEER.transcript(8)]
            probs += ["  log: " + ln for ln in log_lines(self.off)]
        if self.good and PB.alive():
            probs += good_session()
        if not PB.alive():
            probs.append("popbridge died (%s); log: %s"
                         % (PB.exit_text(), log_lines(self.off, 10)))
            # The cases after this one must not all fail for it.
            PEER.reset()
            err = PB.try_start()
            probs.append("popbridge restarted for the next cases" if err is None
                         else "popbridge does not start again: %s" % err)
        return probs


def case(name, body, plan=(), good=True, expect_fired=True, **peer_opts):
    R.case(name, body, watch=FaultCase(plan, good, expect_fired, peer_opts))


# -- bodies ------------------------------------------------------------------------

def login_fails(kind="temp"):
    """PASS gets the reply `kind` says; nothing upstream is changed."""
    def body():
        p = pop3()
        r = login(p)
        probs = []
        if kind == "temp":
            probs += want_temp("PASS", r)
        elif kind == "auth":
            if not (isinstance(r, bytes) and r.startswith(b"-ERR [AUTH]")):
                probs.append("PASS -> %s, want -ERR [AUTH]" % show(r))
        else:
            if not is_err(r):
                probs.append("PASS -> %s, want -ERR" % show(r))
        if isinstance(r, bytes):
            cmd(p, b"QUIT", timeout=3)
        p.close()
        return probs + no_mutations() + mailbox_unchanged()
    return body


def connect_refused():
    PEER.refuse()
    try:
        return login_fails("temp")()
    finally:
        PEER.listen()


def retr_fails(n=2, top=None):
    """DELE 1, then RETR n (or TOP n lines) meets the fault: -ERR
    [SYS/TEMP] before any data, and the DELE is never carried out."""
    def body():
        p = logged_in()
        probs = []
        r = cmd(p, b"DELE 1")
        if not is_ok(r):
            probs.append("DELE 1 -> %s" % show(r))
        r = cmd(p, b"RETR %d" % n if top is None else b"TOP %d %d" % (n, top))
        probs += want_temp("RETR %d" % n if top is None else "TOP %d %d" % (n, top), r)
        probs += quit_after_fault(p)
        return probs + no_mutations() + mailbox_unchanged()
    return body


def retr_broken(n, prefix_check=True, allow_temp=False):
    def body():
        p = logged_in()
        probs = []
        r = cmd(p, b"DELE 1")
        if not is_ok(r):
            probs.append("DELE 1 -> %s" % show(r))
        probs += read_broken_transfer(p, n, prefix_check, allow_temp)
        return probs + no_mutations() + mailbox_unchanged()
    return body


def top_broken(n, lines):
    def body():
        p = logged_in()
        r = cmd(p, b"TOP %d %d" % (n, lines))
        if not is_ok(r):
            return ["TOP %d %d -> %s, want +OK and a broken-off transfer" % (n, lines, show(r))]
        got, closed = drain(p, UPSTREAM_TIMEOUT + 8)
        p.close()
        probs = []
        if terminator_at(got) >= 0:
            probs.append("TOP: the client got a terminating '.' after a broken transfer")
        if not closed:
            probs.append("TOP: the connection was not closed")
        return probs + no_mutations() + mailbox_unchanged()
    return body


def update_fails(expect_store=True, flagged_ok=False):
    """DELE 1 and 3, QUIT: UPDATE meets the fault. The client gets -ERR
    [SYS/TEMP] some deleted messages not removed ... wait, the session
    ends, and no EXPUNGE of any kind follows a failed STORE."""
    def body():
        p = logged_in()
        probs = []
        for k in (1, 3):
            r = cmd(p, b"DELE %d" % k)
            if not is_ok(r):
                probs.append("DELE %d -> %s" % (k, show(r)))
        r = cmd(p, b"QUIT", timeout=UPSTREAM_TIMEOUT + 8)
        probs += want_temp("QUIT", r)
        if isinstance(r, bytes) and b"some deleted messages not removed" not in r:
            probs.append("QUIT -> %r lacks 'some deleted messages not removed'" % r)
        if isinstance(r, bytes) and read_line(p, 5) is not None:
            probs.append("the connection stayed open after QUIT")
        p.close()
        names = [c.name for c in PEER.commands()]
        stores = PEER.commands("UID STORE")
        if expect_store and not stores:
            probs.append("no UID STORE was sent")
        failed_store = [f for f in PEER.fired() if f.on == "UID STORE"]
        if failed_store:
            after = names[names.index("UID STORE") + 1:]
            bad = [x for x in after if x in ("UID EXPUNGE", "EXPUNGE", "UID MOVE", "MOVE")]
            if bad:
                probs.append("after the failed UID STORE popbridge still sent %s" % bad)
        if "EXPUNGE" in names:
            probs.append("a plain EXPUNGE was sent")
        state = PEER.state()
        uids = [u for u, _ in state]
        if uids != [u for u, _ in PEER.initial_state()]:
            probs.append("messages were removed although UPDATE failed: %s" % state)
        if not flagged_ok and state != PEER.initial_state():
            probs.append("the mailbox changed: %s" % state)
        return probs
    return body


def fallback_move():
    """No UIDPLUS, MOVE offered: QUIT does UID MOVE set "Trash"."""
    p = logged_in()
    probs = []
    for k in (1, 3):
        r = cmd(p, b"DELE %d" % k)
        if not is_ok(r):
            probs.append("DELE %d -> %s" % (k, show(r)))
    r = cmd(p, b"QUIT")
    if not is_ok(r):
        probs.append("QUIT -> %s" % show(r))
    p.close()
    muts = PEER.mutations()
    moves = [c for c in muts if c.name == "UID MOVE"]
    other = [c.text for c in muts if c.name != "UID MOVE"]
    if other:
        probs.append("besides UID MOVE popbridge sent %s" % other)
    if not moves:
        probs.append("no UID MOVE was sent: %s" % [masked(t) for t in PEER.transcript(4)])
    for c in moves:
        m = re.match(rb'UID MOVE ([0-9,:]+) "?Trash"?$', c.segments[0], re.I)
        if not m:
            probs.append("unexpected MOVE form: %s" % c.text)
    if [u for u, _ in PEER.state()] != [5, 9, 12]:
        probs.append("mailbox after QUIT: %s, want UIDs [5, 9, 12]" % PEER.state())
    return probs


def fallback_flags_only():
    """No UIDPLUS, no MOVE: only UID STORE +FLAGS.SILENT (\\Deleted)."""
    p = logged_in()
    probs = []
    for k in (1, 3):
        r = cmd(p, b"DELE %d" % k)
        if not is_ok(r):
            probs.append("DELE %d -> %s" % (k, show(r)))
    r = cmd(p, b"QUIT")
    if not is_ok(r):
        probs.append("QUIT -> %s" % show(r))
    p.close()
    muts = PEER.mutations()
    for c in muts:
        if c.name != "UID STORE":
            probs.append("sent %s (only UID STORE is allowed without UIDPLUS and MOVE)"
                         % c.text)
        elif not re.match(rb"UID STORE [0-9,:]+ \+FLAGS\.SILENT \(\\Deleted\)$",
                          c.segments[0], re.I):
            probs.append("unexpected STORE form: %s" % c.text)
    if not muts:
        probs.append("no UID STORE was sent")
    want = [(3, ["\\Deleted"]), (5, []), (8, ["\\Deleted"]), (9, []), (12, [])]
    if PEER.state() != want:
        probs.append("mailbox after QUIT: %s, want %s" % (PEER.state(), want))
    # The flagged messages stay on the server but leave the POP3 view for
    # good (the UID map hides them): they must not come back.
    p = logged_in()
    r = cmd(p, b"STAT")
    if not (isinstance(r, bytes) and r.startswith(b"+OK 3 ")):
        probs.append("next session: STAT -> %s, want 3 messages" % show(r))
    cmd(p, b"QUIT")
    p.close()
    return probs


def auth_continuation():
    """No SASL-IR: AUTHENTICATE PLAIN, then the response after '+'."""
    p = pop3()
    r = login(p)
    cmd(p, b"QUIT", timeout=3)
    p.close()
    probs = []
    if not is_ok(r):
        probs.append("PASS -> %s" % show(r))
    auths = PEER.commands("AUTHENTICATE")
    if len(auths) != 1:
        return probs + ["%d AUTHENTICATE commands: %s" % (
            len(auths), [masked(t) for t in PEER.transcript()])]
    a = auths[0]
    if a.segments[0].upper() != b"AUTHENTICATE PLAIN":
        probs.append("sent %r, want AUTHENTICATE PLAIN without initial response"
                     % a.segments[0])
    elif a.continuation is None:
        probs.append("no response line after the continuation request")
    elif base64.b64decode(a.continuation) != b"\0" + USER + b"\0" + PW:
        probs.append("the PLAIN response decodes to something else")
    if PEER.commands("LOGIN"):
        probs.append("LOGIN sent as well")
    return probs


def login_cmd(password, want_form):
    """No AUTH=PLAIN: LOGIN, with the password as want_form says."""
    def body():
        p = pop3()
        r = login(p, USER, password)
        cmd(p, b"QUIT", timeout=3)
        p.close()
        probs = []
        if not is_ok(r):
            probs.append("PASS -> %s" % show(r))
        logins = PEER.commands("LOGIN")
        if PEER.commands("AUTHENTICATE"):
            probs.append("AUTHENTICATE sent although AUTH=PLAIN is not offered")
        if len(logins) != 1:
            return probs + ["%d LOGIN commands" % len(logins)]
        c = logins[0]
        head = c.segments[0]
        if want_form == "quoted":
            q = b'"' + password.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            want = b'LOGIN "alice" ' + q
            if head != want or c.literals:
                probs.append("sent %s, want %r" % (c.text, want))
        else:
            if not re.match(rb'LOGIN ("alice"|alice) $', head) or len(c.literals) != 1:
                probs.append("sent %s, want LOGIN \"alice\" {n%s}" % (
                    c.text, "+" if want_form == "nonsync" else ""))
            else:
                n, nonsync, data, early = c.literals[0]
                if data != password or n != len(password):
                    probs.append("the literal holds %r" % data)
                if want_form == "sync" and nonsync:
                    probs.append("used {%d+} although LITERAL+ is not offered" % n)
                if want_form == "sync" and early:
                    probs.append("sent the literal before the '+' continuation")
                if want_form == "nonsync" and not nonsync:
                    probs.append("used a synchronizing {%d} although LITERAL+ is offered" % n)
        if PEER.last_login != (USER, password):
            probs.append("the peer did not see the right credentials: %r"
                         % (PEER.last_login and PEER.last_login[0]))
        return probs
    return body


def logindisabled():
    p = pop3()
    r = login(p)
    if isinstance(r, bytes):
        cmd(p, b"QUIT", timeout=3)
    p.close()
    probs = []
    if not is_err(r):
        probs.append("PASS -> %s, want -ERR" % show(r))
    sent = PEER.commands("LOGIN", "AUTHENTICATE")
    if sent:
        probs.append("credentials were sent: %s" % [c.name for c in sent])
    return probs


def normal_session(extra=None):
    """Interleaved untagged data must change nothing the client sees."""
    def body():
        p = pop3()
        probs = session_basics(p)
        r = cmd(p, b"LIST")
        if is_ok(r):
            data, _ = multi(p)
            want = b"".join(b"%d %d\r\n" % (i + 1, s) for i, (_, s) in enumerate(EXP))
            if data != want:
                probs.append("LIST: %s" % first_diff(data, want))
        else:
            probs.append("LIST -> %s" % show(r))
        probs += retr_ok(p, 2)
        if extra:
            probs += extra(p)
        r = cmd(p, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %s" % show(r))
        p.close()
        return probs + no_mutations("in a read-only session")
    return body


def after_expunge(p):
    """Message 3 (UID 8) was expunged upstream mid-session: numbering holds,
    RETR 4 still gets UID 9, RETR 3 gets -ERR, the session goes on."""
    probs = retr_ok(p, 4, "RETR 4 after '* 3 EXPUNGE'")
    r = cmd(p, b"RETR 3")
    if not is_err(r):
        probs.append("RETR 3 (expunged upstream) -> %s, want -ERR" % show(r))
        if is_ok(r):
            multi(p)
    probs += retr_ok(p, 5, "RETR 5 after '* 3 EXPUNGE'")
    return probs


def others_served_meanwhile():
    """While one session waits on a silent upstream, another is served at
    once; then the first gets -ERR [SYS/TEMP]."""
    p1 = pop3()
    p1.send(b"USER " + USER + b"\r\nPASS " + PW + b"\r\n")
    deadline = time.time() + 5
    while not PEER.commands("SELECT") and time.time() < deadline:
        time.sleep(0.02)
    probs = []
    if not PEER.commands("SELECT"):
        probs.append("the first session never reached SELECT")
    t0 = time.time()
    try:
        p2 = pop3()
        probs += ["second session: " + x for x in session_basics(p2)]
        probs += ["second session: " + x for x in retr_ok(p2, 4)]
        cmd(p2, b"QUIT")
        p2.close()
    except (OSError, Pop3Closed, AssertionError) as e:
        probs.append("second session: %s: %s" % (type(e).__name__, e))
    took = time.time() - t0
    if took > UPSTREAM_TIMEOUT * 0.75:
        probs.append("the second session took %.1fs: it waited for the stuck one" % took)
    r = read_line(p1)           # USER's +OK
    if is_ok(r):
        r = read_line(p1)       # PASS's answer
    probs += want_temp("PASS (first session, upstream silent at SELECT)", r)
    p1.close()
    return probs + no_mutations() + mailbox_unchanged()


def wrong_uid_only():
    """The server answers RETR 2 (UID 5) with the body of UID 8 only."""
    p = logged_in()
    probs = []
    r = cmd(p, b"RETR 2")
    if is_ok(r):
        try:
            data, _ = multi(p)
            probs.append("RETR 2 -> +OK and %d octets (%s) instead of -ERR" % (
                len(data), "the body of UID 8" if data == EXP[2][0] else "other data"))
        except (Pop3Closed, socket.timeout, OSError):
            probs.append("RETR 2 -> +OK, then the transfer broke off")
    elif not is_err(r):
        probs.append("RETR 2 -> %s, want -ERR" % show(r))
    else:
        probs += retr_ok(p, 1, "RETR 1 after the wrong answer")
    cmd(p, b"QUIT", timeout=5)
    p.close()
    return probs + no_mutations() + mailbox_unchanged()


def wrong_uid_after_literal():
    """Body of UID 8 with its UID named only after the literal: popbridge
    cannot know in advance, but must not present it as message 2 (UID 5):
    -ERR, or +OK followed by a close without the terminating '.'."""
    p = logged_in()
    probs = []
    r = cmd(p, b"RETR 2")
    if is_ok(r):
        got, _ = drain(p, UPSTREAM_TIMEOUT + 6, stop_at_end=True)
        j = terminator_at(got)
        if j >= 0:
            other = imapfetch.dotstuff(EXP[2][0])[:-3]
            probs.append("RETR 2 delivered a complete message of %d octets: %s" % (
                j, "the body of UID 8" if got[:j] == other else "other data"))
    elif not is_err(r):
        probs.append("RETR 2 -> %s, want -ERR" % show(r))
    cmd(p, b"QUIT", timeout=5)
    p.close()
    return probs + no_mutations() + mailbox_unchanged()


def wrong_then_right():
    p = logged_in()
    probs = retr_ok(p, 2, "RETR 2 (answered with UID 8 first, then UID 5)")
    cmd(p, b"QUIT", timeout=5)
    p.close()
    return probs + no_mutations()


def ahead_then(check):
    """RETR 1 in order, so that popbridge asks for message 2 ahead (the
    peer's second FETCH_BODY, where the fault sits); DELE 1; then check(p)
    meets the fault. Nothing may be deleted."""
    def body():
        p = logged_in()
        probs = retr_ok(p, 1, "RETR 1 (before the fault)")
        r = cmd(p, b"DELE 1")
        if not is_ok(r):
            probs.append("DELE 1 -> %s" % show(r))
        probs += check(p)
        return probs + no_mutations() + mailbox_unchanged()
    return body


def ahead_retr_temp(p):
    r = cmd(p, b"RETR 2", timeout=UPSTREAM_TIMEOUT + 8)
    return want_temp("RETR 2", r) + quit_after_fault(p)


def ahead_retr_refused(p):
    r = cmd(p, b"RETR 2")
    probs = []
    if not is_err(r):
        probs.append("RETR 2 -> %s, want -ERR (another UID's body)" % show(r))
    else:
        probs += retr_ok(p, 3, "RETR 3 after the wrong answer")
    cmd(p, b"RSET")     # the session goes on; this case is not about QUIT
    cmd(p, b"QUIT", timeout=5)
    p.close()
    return probs


def ahead_waits():
    """A client that pauses after RETR 1 for longer than the upstream
    timeout still gets message 2 whole: the reply read ahead waits, it does
    not time out."""
    p = logged_in()
    probs = retr_ok(p, 1)
    time.sleep(UPSTREAM_TIMEOUT + 1.5)
    probs += retr_ok(p, 2, "RETR 2 after a pause longer than the upstream timeout")
    probs += retr_ok(p, 3, "RETR 3 (read ahead while RETR 2 was sent)")
    uid2 = MSGS[1][0]
    asked = [c.text for c in PEER.commands("FETCH_BODY")
             if re.search(r"UID FETCH %d \(" % uid2, c.text)]
    if len(asked) != 1:
        probs.append("message 2 (UID %d) was asked for %d times, want once (ahead): %s"
                     % (uid2, len(asked), asked))
    cmd(p, b"QUIT", timeout=5)
    p.close()
    return probs + no_mutations("in a read-only session")


# -- zero-length bodies ------------------------------------------------------------
#
# A body item can come back empty in four forms (imapfault's "zero" action):
# "" (quoted), {0} (literal), NIL, and the item name with no value at all
# (GNU Mailutils: "* 1 FETCH (UID 1 BODY[TEXT])"). Each is tried in every
# place a body can be: RETR (BODY[]), RETR of a message read ahead, TOP n 0
# (BODY[HEADER]), TOP n 3 (BODY[HEADER], then the partial BODY[TEXT]<0.N>)
# and a partial past the end of the text (TOP of a message whose text is
# exactly SESSION_TOP_CHUNK_MIN = 16,384 octets: the next partial asked for,
# BODY[TEXT]<16384.N>, is empty). Each on a plain and on a pop3s session.
#
# The right answers:
#  - "", {0}, no value: the part is empty. RETR of a 0-octet message is
#    +OK and the empty message (the "." line alone), LIST says 0 before and
#    after; TOP with an empty text or past its end is +OK, the header block
#    byte-exact (its blank line included), and "." - exactly as if the text
#    had ended there.
#  - NIL for BODY[] or BODY[HEADER] is Dovecot's answer for a message that
#    another client expunged: -ERR ... no longer on the server, nothing
#    sent after a +OK, and the session goes on. NIL for a partial TEXT is
#    the end of the text, like the empty forms.
# After the answer the same session retrieves another message byte-exact
# and QUITs (+OK, nothing changed upstream); then a new session on the same
# transport logs in and retrieves, and the case runner's normal session
# shows popbridge still serves.
#
# popbridge may, knowing RFC822.SIZE, not ask for a part that starts at or
# past the end of the text at all (TOP 3 3 and TOP 4 3 below): the answer
# must be right either way, so those cases do not insist that the fault
# fires.

TOP_CHUNK = 16 * 1024       # src/pop3/session_priv.h SESSION_TOP_CHUNK_MIN
ZTEXT = ([b"." + b"y" * 8189, b"z" * 8190])     # 2 lines, 16,384 octets with CRLFs
ZERO_LABEL = {"quoted": '""', "literal": "{0}", "nil": "NIL", "missing": "no value"}
# where: (what the client sends, fault key, nth, what is asked, message number)
ZERO_WHERE = {
    "retr": (b"RETR 2", "FETCH_BODY", 1, "RETR 2: BODY[] of a 0-octet message", 2),
    "ahead": (b"RETR 2", "FETCH_BODY", 2,
              "RETR 1 then RETR 2: BODY[] of a 0-octet message read ahead", 2),
    "header": (b"TOP 2 0", "FETCH_HEADER", 1,
               "TOP 2 0: BODY[HEADER] of a 0-octet message", 2),
    "text": (b"TOP 3 3", "FETCH_TEXT", 1,
             "TOP 3 3: BODY[TEXT]<0.N> of a header-only message", 3),
    "past": (b"TOP 4 3", "FETCH_TEXT", 2,
             "TOP 4 3: BODY[TEXT]<16384.N> past the end of a 16,384-octet text", 4),
}
ZBOX = None         # [(uid, bytes)]
ZEXP = None         # [(retr bytes, list size)]


def zero_mailbox():
    """1 a plain message, 2 a 0-octet message, 3 a header-only message
    (header block and its blank line, no text), 4 a message whose text is
    exactly 16,384 octets in 2 lines (the first starting with a dot), 5 a
    plain message. UIDs that the other cases' mailbox does not use, so
    that the UID map never sees two contents under one UID."""
    global ZBOX, ZEXP
    if ZBOX is None:
        ZBOX = [
            (3, MSGS[0][1]),
            (20, b""),
            (21, _msg(6, b"header only", [])),
            (22, _msg(7, b"text of exactly 16384 octets", ZTEXT)),
            (30, _msg(8, b"after the empty ones", [b"still here", b".", b"end"])),
        ]
        text = ZBOX[3][1][ZBOX[3][1].find(b"\r\n\r\n") + 4:]
        assert len(text) == TOP_CHUNK, len(text)
        assert ZBOX[2][1].endswith(b"\r\n\r\n")
        ZEXP = [imapfetch.pop3_expected(d) for _, d in ZBOX]
    return ZBOX


def zero_want(where):
    """The un-stuffed body the command must deliver (None: -ERR)."""
    n = ZERO_WHERE[where][4]
    data = ZBOX[n - 1][1]
    if where in ("retr", "ahead"):
        return ZEXP[n - 1][0]
    i = data.find(b"\r\n\r\n")
    header, text = (data, b"") if i < 0 else (data[:i + 4], data[i + 4:])
    lines = int(ZERO_WHERE[where][0].split()[2])
    return imapfetch.pop3_top(header, text, lines)


def zero_read(p, what, want):
    """Reads a multi-line answer that must be exactly dotstuff(want)."""
    wire = imapfetch.dotstuff(want)
    got, closed = drain(p, UPSTREAM_TIMEOUT + 6, stop_at_end=True)
    j = terminator_at(got)
    if j < 0:
        how = "closed the connection" if closed else "sent nothing more for %ds" % (
            UPSTREAM_TIMEOUT + 6)
        return ["%s -> +OK, then popbridge %s after %d octets without the final "
                "'.' (want %d octets: %s)" % (what, how, len(got), len(wire),
                                             show(wire[-60:]))]
    if got != wire:
        return ["%s: the answer is not byte-exact (%d octets, want %d): %s"
                % (what, len(got), len(wire), first_diff(got, wire))]
    return []


def zero_retr_ok(p, n, what):
    r = cmd(p, b"RETR %d" % n)
    if not is_ok(r):
        return ["%s -> %s" % (what, show(r))]
    return zero_read(p, what, ZEXP[n - 1][0])


def zero_list(p, n, when):
    r = cmd(p, b"LIST %d" % n)
    want = b"+OK %d %d\r\n" % (n, ZEXP[n - 1][1])
    if r != want:
        return ["LIST %d %s -> %s, want %r" % (n, when, show(r), want)]
    return []


def zero_session(transport):
    """A logged-in session on transport whose STAT matches the mailbox."""
    p = connect(transport)
    r = login(p)
    if not is_ok(r):
        p.close()
        raise AssertionError("%s login -> %s" % (transport, show(r)))
    r = cmd(p, b"STAT")
    want = b"+OK %d %d\r\n" % (len(ZEXP), sum(s for _, s in ZEXP))
    if r != want:
        p.close()
        raise AssertionError("%s STAT -> %s, want %r" % (transport, show(r), want))
    return p


def zero_case(transport, where, form):
    def body():
        zero_mailbox()
        send, key, nth, _, n = ZERO_WHERE[where]
        gone = form == "nil" and key != "FETCH_TEXT"
        p = zero_session(transport)
        probs = []
        try:
            if where == "ahead":
                probs += zero_retr_ok(p, 1, "RETR 1 (before the message read ahead)")
            if where in ("retr", "ahead"):
                probs += zero_list(p, n, "before RETR")
            what = send.decode()
            r = cmd(p, send, timeout=UPSTREAM_TIMEOUT + 6)
            if gone:
                if not (isinstance(r, bytes) and r.startswith(b"-ERR")
                        and b"no longer on the server" in r):
                    probs.append("%s -> %s, want -ERR ... no longer on the server "
                                 "(NIL: the message was expunged)" % (what, show(r)))
                    if is_ok(r):
                        drain(p, 2, stop_at_end=True)
            elif not is_ok(r):
                probs.append("%s -> %s, want +OK and %s" % (
                    what, show(r), "the empty message" if key == "FETCH_BODY"
                    else "the header block"))
            else:
                probs += zero_read(p, what, zero_want(where))
            if probs and (r is None or not PB.alive()):
                return probs + ["(the session is gone: nothing more to check in it)"]
            if where in ("retr", "ahead") and not gone:
                probs += zero_list(p, n, "after RETR")
            # The session goes on: another message, whole, then QUIT.
            probs += zero_retr_ok(p, 5, "RETR 5 after %s" % what)
            r = cmd(p, b"QUIT")
            if not is_ok(r):
                probs.append("QUIT -> %s" % show(r))
        except (Pop3Closed, socket.timeout, OSError) as e:
            probs.append("%s: %s" % (type(e).__name__, e))
        finally:
            p.close()
        if key == "FETCH_TEXT":
            asked = [c for c in PEER.commands("FETCH_TEXT")]
            fired = bool(PEER.fired())
            if not fired:
                pbtest.note("%s: popbridge did not ask for the empty part (%s)"
                            % (what, "; ".join(c.text for c in asked) or "no FETCH_TEXT"))
        probs += no_mutations("in a read-only session")
        if PB.alive() and not probs:
            # The next client on the same transport.
            try:
                q = zero_session(transport)
                probs += ["next %s session: " % transport + x
                          for x in zero_retr_ok(q, 4, "RETR 4")]
                cmd(q, b"QUIT")
                q.close()
            except (AssertionError, Pop3Closed, socket.timeout, OSError) as e:
                probs.append("next %s session: %s: %s" % (transport, type(e).__name__, e))
        return probs
    return body


def zero_cases():
    for transport in ("pop3", "pop3s"):
        for where in ("retr", "ahead", "header", "text", "past"):
            send, key, nth, desc, _ = ZERO_WHERE[where]
            for form in ("quoted", "literal", "nil", "missing"):
                gone = form == "nil" and key != "FETCH_TEXT"
                if gone:
                    want = "-ERR no longer on the server, session goes on"
                elif key == "FETCH_BODY":
                    want = "+OK, the empty message, LIST 0"
                else:
                    want = "+OK, the header byte-exact, end of text"
                case("zero-length body %s, %s, %s -> %s" % (
                     ZERO_LABEL[form], desc, transport, want),
                     zero_case(transport, where, form),
                     [Fault(key, "zero", nth=nth, form=form)],
                     messages=zero_mailbox(),
                     expect_fired=key != "FETCH_TEXT")


# -- the cases -------------------------------------------------------------------------

def cases():
    T = login_fails("temp")
    # Connecting and the greeting.
    case("connect refused -> -ERR [SYS/TEMP]", connect_refused, expect_fired=False)
    case("connect, then no greeting (timeout) -> -ERR [SYS/TEMP]", T,
         [Fault("greeting", "silence")])
    case("* BYE as greeting -> -ERR [SYS/TEMP]", T, [Fault("greeting", "bye")])
    case("dropped before the greeting -> -ERR [SYS/TEMP]", T, [Fault("greeting", "drop")])
    case("garbage greeting -> -ERR [SYS/TEMP]", T,
         [Fault("greeting", "garbage", lines=[b"HTTP/1.1 400 Bad Request"])])
    # CAPABILITY.
    case("NO to CAPABILITY -> -ERR [SYS/TEMP]", T, [Fault("CAPABILITY", "no")],
         greeting_caps=False)
    case("BAD to CAPABILITY -> -ERR [SYS/TEMP]", T, [Fault("CAPABILITY", "bad")],
         greeting_caps=False)
    case("no answer to CAPABILITY -> -ERR [SYS/TEMP]", T,
         [Fault("CAPABILITY", "silence")], greeting_caps=False)
    case("* BYE in answer to CAPABILITY -> -ERR [SYS/TEMP]", T,
         [Fault("CAPABILITY", "bye")], greeting_caps=False)
    case("NO to CAPABILITY after login -> -ERR [SYS/TEMP]", T,
         [Fault("CAPABILITY", "no")], ok_caps=False)
    # Login.
    case("NO to AUTHENTICATE -> -ERR [AUTH]", login_fails("auth"),
         [Fault("AUTHENTICATE", "no", code="AUTHENTICATIONFAILED")])
    case("plain NO (no code) to AUTHENTICATE -> -ERR [AUTH]", login_fails("auth"),
         [Fault("AUTHENTICATE", "no")])
    case("NO [UNAVAILABLE] to AUTHENTICATE -> -ERR [SYS/TEMP]", T,
         [Fault("AUTHENTICATE", "no", code="UNAVAILABLE")])
    case("BAD to AUTHENTICATE -> -ERR [SYS/TEMP]", T, [Fault("AUTHENTICATE", "bad")])
    case("* BYE in answer to AUTHENTICATE -> -ERR [SYS/TEMP]", T,
         [Fault("AUTHENTICATE", "bye")])
    case("no answer to AUTHENTICATE -> -ERR [SYS/TEMP]", T,
         [Fault("AUTHENTICATE", "silence")])
    nplain = caps_without("AUTH=PLAIN")
    case("NO to LOGIN -> -ERR [AUTH]", login_fails("auth"),
         [Fault("LOGIN", "no", code="AUTHENTICATIONFAILED")], caps=nplain)
    case("NO [UNAVAILABLE] to LOGIN -> -ERR [SYS/TEMP]", T,
         [Fault("LOGIN", "no", code="UNAVAILABLE")], caps=nplain)
    case("BAD to LOGIN -> -ERR [SYS/TEMP]", T, [Fault("LOGIN", "bad")], caps=nplain)
    case("dropped after LOGIN -> -ERR [SYS/TEMP]", T, [Fault("LOGIN", "drop")], caps=nplain)
    case("* BYE right after a successful login -> -ERR [SYS/TEMP]", T,
         [Fault("AUTHENTICATE", "respond_then_bye")])
    case("no answer to ID -> -ERR [SYS/TEMP]", T, [Fault("ID", "silence")])
    # SELECT.
    case("NO to SELECT -> -ERR [SYS/TEMP]", T, [Fault("SELECT", "no")])
    case("NO [UNAVAILABLE] to SELECT -> -ERR [SYS/TEMP]", T,
         [Fault("SELECT", "no", code="UNAVAILABLE")])
    case("BAD to SELECT -> -ERR [SYS/TEMP]", T, [Fault("SELECT", "bad")])
    case("* BYE instead of SELECT's answer -> -ERR [SYS/TEMP]", T, [Fault("SELECT", "bye")])
    case("* BYE in the middle of SELECT's answer -> -ERR [SYS/TEMP]", T,
         [Fault("SELECT", "partial_then_bye")])
    case("no answer to SELECT -> -ERR [SYS/TEMP]", T, [Fault("SELECT", "silence")])
    case("dropped at SELECT -> -ERR [SYS/TEMP]", T, [Fault("SELECT", "drop")])
    case("garbage line before SELECT's answer -> -ERR [SYS/TEMP]", T,
         [Fault("SELECT", "garbage", lines=[b"this is not IMAP at all"])])
    # The listing.
    case("NO to UID FETCH 1:* -> -ERR [SYS/TEMP]", T, [Fault("FETCH_LIST", "no")])
    case("BAD to UID FETCH 1:* -> -ERR [SYS/TEMP]", T, [Fault("FETCH_LIST", "bad")])
    case("* BYE during the UID FETCH listing -> -ERR [SYS/TEMP]", T,
         [Fault("FETCH_LIST", "partial_then_bye")])
    case("no answer to UID FETCH 1:* -> -ERR [SYS/TEMP]", T, [Fault("FETCH_LIST", "silence")])
    case("dropped at UID FETCH 1:* -> -ERR [SYS/TEMP]", T, [Fault("FETCH_LIST", "drop")])
    case("unbalanced parenthesis in the listing -> -ERR [SYS/TEMP]", T,
         [Fault("FETCH_LIST", "garbage", lines=[b"* 1 FETCH (UID 3 RFC822.SIZE 264"])])
    case("{99999999999} literal in the listing -> -ERR [SYS/TEMP]", T,
         [Fault("FETCH_LIST", "garbage", then="silence",
                lines=[b"* 1 FETCH (UID 3 RFC822.SIZE 264 X-JUNK {99999999999}"])])
    case("garbage line in the listing -> -ERR [SYS/TEMP]", T,
         [Fault("FETCH_LIST", "garbage", lines=[b")))((( %%% garbage"])])
    # RETR and TOP before any data.
    case("NO to UID FETCH body -> -ERR [SYS/TEMP], DELE not applied", retr_fails(),
         [Fault("FETCH_BODY", "no")])
    case("NO [SERVERBUG] to UID FETCH body -> -ERR [SYS/TEMP], DELE not applied",
         retr_fails(), [Fault("FETCH_BODY", "no", code="SERVERBUG",
                              text="Internal error occurred")])
    case("BAD to UID FETCH body -> -ERR [SYS/TEMP], DELE not applied", retr_fails(),
         [Fault("FETCH_BODY", "bad")])
    case("* BYE mid-RETR before the literal -> -ERR [SYS/TEMP], DELE not applied",
         retr_fails(), [Fault("FETCH_BODY", "bye")])
    case("no answer to UID FETCH body -> -ERR [SYS/TEMP], DELE not applied",
         retr_fails(), [Fault("FETCH_BODY", "silence")])
    case("dropped at UID FETCH body -> -ERR [SYS/TEMP], DELE not applied", retr_fails(),
         [Fault("FETCH_BODY", "drop")])
    case("garbage before the FETCH body -> -ERR [SYS/TEMP], DELE not applied",
         retr_fails(), [Fault("FETCH_BODY", "garbage", lines=[b"* 2 FETCH (UID 5 ((("])])
    case("* BYE after the snapshot, then RETR -> -ERR [SYS/TEMP], DELE not applied",
         retr_fails(), [Fault("FETCH_LIST", "respond_then_bye")])
    case("NO to UID FETCH BODY.PEEK[HEADER] (TOP) -> -ERR [SYS/TEMP]",
         retr_fails(2, top=1), [Fault("FETCH_HEADER", "no")])
    # Broken transfers.
    case("drop mid-literal in RETR of the 200 KB message: no '.', closed",
         retr_broken(4), [Fault("FETCH_BODY", "drop_mid_literal", k=100000)])
    case("drop mid-literal after 10 octets of a small RETR: no '.', closed",
         retr_broken(2), [Fault("FETCH_BODY", "drop_mid_literal", k=10)])
    case("literal 100 octets shorter than the data: no '.', closed",
         retr_broken(4, allow_temp=True), [Fault("FETCH_BODY", "literal_size", delta=-100)])
    case("literal 50 octets longer than the data: no '.', closed",
         retr_broken(2, prefix_check=False, allow_temp=True),
         [Fault("FETCH_BODY", "literal_size", delta=50)])
    case("{99999999999} literal in RETR: -ERR [SYS/TEMP] or no '.', closed",
         retr_broken(2, prefix_check=False, allow_temp=True),
         [Fault("FETCH_BODY", "literal_size", size=99999999999)])
    case("drop mid-literal in TOP's BODY.PEEK[TEXT]: no '.', closed",
         top_broken(4, 50), [Fault("FETCH_TEXT", "drop_mid_literal", k=300)])
    # UPDATE.
    case("NO to UID STORE at QUIT -> -ERR [SYS/TEMP] not removed, no EXPUNGE",
         update_fails(), [Fault("UID STORE", "no")])
    case("BAD to UID STORE at QUIT -> -ERR [SYS/TEMP] not removed, no EXPUNGE",
         update_fails(), [Fault("UID STORE", "bad")])
    case("NO to UID EXPUNGE at QUIT -> -ERR [SYS/TEMP] not removed",
         update_fails(flagged_ok=True), [Fault("UID EXPUNGE", "no")])
    case("dropped at UID STORE during UPDATE -> -ERR [SYS/TEMP]",
         update_fails(), [Fault("UID STORE", "drop")])
    case("dropped at UID EXPUNGE during UPDATE -> -ERR [SYS/TEMP]",
         update_fails(flagged_ok=True), [Fault("UID EXPUNGE", "drop")])
    case("no answer to UID STORE during UPDATE -> -ERR [SYS/TEMP]",
         update_fails(), [Fault("UID STORE", "silence")])
    case("* BYE instead of UID EXPUNGE's answer -> -ERR [SYS/TEMP]",
         update_fails(flagged_ok=True), [Fault("UID EXPUNGE", "bye")])
    case("a session stuck on a silent upstream does not hold up another",
         others_served_meanwhile, [Fault("SELECT", "silence")])
    # Missing capabilities.
    case("no UIDPLUS, MOVE offered: QUIT does UID MOVE set \"Trash\", no EXPUNGE",
         fallback_move, caps=caps_without("UIDPLUS"), expect_fired=False)
    case("no SASL-IR: AUTHENTICATE PLAIN answered after the continuation",
         auth_continuation, caps=caps_without("SASL-IR"), expect_fired=False)
    case("no AUTH=PLAIN: LOGIN with quoted, escaped strings",
         login_cmd(QUOTE_PW, "quoted"), caps=nplain, expect_fired=False,
         users={USER: QUOTE_PW})
    case("8-bit password, no LITERAL+: synchronizing {n} sent after '+'",
         login_cmd(EIGHTBIT_PW, "sync"), caps=caps_without("AUTH=PLAIN", "LITERAL+"),
         expect_fired=False, users={USER: EIGHTBIT_PW})
    case("8-bit password with LITERAL+: {n+} without waiting",
         login_cmd(EIGHTBIT_PW, "nonsync"), caps=nplain, expect_fired=False,
         users={USER: EIGHTBIT_PW})
    case("LOGINDISABLED without AUTH=PLAIN -> -ERR, no credentials sent",
         logindisabled, caps=nplain + ["LOGINDISABLED"], expect_fired=False)
    # Untagged data at odd moments.
    case("untagged ALERT/EXISTS/FETCH before SELECT's tagged OK",
         normal_session(),
         [Fault("SELECT", "interleave", lines=[
             b"* OK [ALERT] System maintenance at 22:00", b"* 6 EXISTS",
             b"* 2 FETCH (FLAGS (\\Seen))", b"* 1 RECENT"])])
    case("untagged FETCH without size, ALERT, EXISTS inside the listing",
         normal_session(),
         [Fault("FETCH_LIST", "interleave", where="mid", lines=[
             b"* 2 FETCH (FLAGS (\\Seen))", b"* OK [ALERT] Quota at 95%",
             b"* 4 FETCH (UID 9 FLAGS (\\Seen))", b"* 6 EXISTS"])])
    case("* 3 EXPUNGE, ALERT, FETCH between a FETCH literal and its tagged OK",
         normal_session(after_expunge),
         [Fault("FETCH_BODY", "interleave", where="after_data", lines=[
             b"* 1 FETCH (FLAGS (\\Seen))", b"* OK [ALERT] Quota at 95%",
             b"* 3 EXPUNGE"])])
    case("untagged FETCH for the same UID and EXISTS before the body",
         normal_session(),
         [Fault("FETCH_BODY", "interleave", where="before", lines=[
             b"* 2 FETCH (UID 5 FLAGS (\\Seen))", b"* 6 EXISTS",
             b"* OK [ALERT] hello"])])
    case("FLAGS after the literal in the same FETCH response", normal_session(),
         [Fault("FETCH_BODY", "reshape", suffix=b" FLAGS (\\Seen)")])
    case("FLAGS before UID, and the UID after the literal", normal_session(),
         [Fault("FETCH_BODY", "reshape", prefix=b"FLAGS (\\Seen) ", uid_after=True)])
    # Answers for another UID.
    case("UID FETCH answered for another UID only -> -ERR, not delivered",
         wrong_uid_only, [Fault("FETCH_BODY", "wrong_uid", uid=8)])
    case("another UID's body first, then the right one -> the right message",
         wrong_then_right, [Fault("FETCH_BODY", "wrong_uid", uid=8, then_right=True)])
    case("another UID's body with its UID after the literal -> not delivered as RETR 2",
         wrong_uid_after_literal, [Fault("FETCH_BODY", "wrong_uid", uid=8, uid_after=True)])
    # The read-ahead: after RETR 1, message 2 is asked for before its RETR.
    case("read ahead, then the client pauses past the upstream timeout: RETR 2 whole",
         ahead_waits, expect_fired=False)
    case("read ahead, then the connection drops: RETR 2 -> -ERR [SYS/TEMP], no DELE done",
         ahead_then(ahead_retr_temp), [Fault("FETCH_BODY", "drop", nth=2)])
    case("read ahead, then no answer: RETR 2 -> -ERR [SYS/TEMP] after the timeout",
         ahead_then(ahead_retr_temp), [Fault("FETCH_BODY", "silence", nth=2)])
    case("read ahead, then * BYE: RETR 2 -> -ERR [SYS/TEMP]",
         ahead_then(ahead_retr_temp), [Fault("FETCH_BODY", "bye", nth=2)])
    case("read ahead, cut mid-literal: RETR 2 closes without the final dot",
         ahead_then(lambda p: read_broken_transfer(p, 2)),
         [Fault("FETCH_BODY", "drop_mid_literal", nth=2, k=40)])
    case("read ahead answered for another UID: RETR 2 -> -ERR, not delivered",
         ahead_then(ahead_retr_refused), [Fault("FETCH_BODY", "wrong_uid", nth=2, uid=8)])
    case("read ahead, then the connection drops: QUIT after DELE -> -ERR, nothing deleted",
         ahead_then(quit_after_fault), [Fault("FETCH_BODY", "drop", nth=2)])
    case("read ahead, then no answer: QUIT after DELE -> -ERR after the timeout",
         ahead_then(quit_after_fault), [Fault("FETCH_BODY", "silence", nth=2)])
    case("read ahead, then TOP 2 meets the dropped connection -> -ERR [SYS/TEMP]",
         ahead_then(lambda p: want_temp("TOP 2 0", cmd(p, b"TOP 2 0", timeout=UPSTREAM_TIMEOUT + 8))
                    + quit_after_fault(p)),
         [Fault("FETCH_BODY", "drop", nth=2)])
    # Zero-length bodies in every form and place, plain and TLS.
    zero_cases()
    # Last: flag-only deletions leave the POP3 view for good (the UID map
    # hides them), which would renumber every later case's maildrop.
    case("no UIDPLUS, no MOVE: QUIT only flags \\Deleted, no EXPUNGE of any kind",
         fallback_flags_only, caps=caps_without("UIDPLUS", "MOVE"), expect_fired=False,
         good=False)


def finish():
    """popbridge is alive, stops with status 0 on SIGTERM, and its log has
    no sanitizer report and no secret."""
    pbtest.final_checks(R, [PB], running="popbridge is still running after the fault cases",
                        sigterm="popbridge exits 0 on SIGTERM",
                        sanitizer="no sanitizer reports in popbridge's log",
                        leaks="no passwords or AUTH tokens in popbridge's debug log",
                        secrets=[x for s in SECRETS for x in pbtest.secret_forms(USER, s)])


def main():
    def body(tmp):
        global PEER, MSGS, EXP, CTX, PB
        PEER = FaultPeer()
        PEER.start()
        MSGS = PEER.base_messages
        EXP = [imapfetch.pop3_expected(d) for _, d in MSGS]
        pbtest.note("imapfault peer on 127.0.0.1:%d; scratch %s" % (PEER.port, tmp))
        ca = testca.TestCA(os.path.join(tmp, "pki"))
        cert = ca.issue("pop3s", cn="popbridge-faults", san="IP:127.0.0.1,DNS:localhost")
        CTX = ssl.create_default_context(cafile=ca.cert)
        PB = pbtest.Popbridge("faults", PEER.port, pop3s=True, cert=cert.chain, key=cert.key,
                              upstream={"timeout": UPSTREAM_TIMEOUT},
                              limits={"idle_timeout": 30})
        err = PB.try_start()
        if err:
            R.fail("popbridge starts in front of the fault peer", [err] + log_lines(0, 10))
            return
        pbtest.note("popbridge (%s) on 127.0.0.1:%d, pop3s %d" % (PB.binary, PB.port, PB.sport))
        cases()
        finish()

    def cleanup():
        if PEER is not None:
            PEER.stop()

    return pbtest.script_main(R, "fault cases", body, cleanup,
                              why="the scripted peer is their upstream, not Dovecot")


if __name__ == "__main__":
    sys.exit(main())
