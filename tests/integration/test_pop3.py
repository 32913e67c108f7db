#!/usr/bin/env python3
"""POP3 protocol cases against alice's corpus (read-only: nothing is deleted).

Byte comparisons (see tests/lib/imapfetch.py for the helpers):
  E(i)     = IMAP BODY.PEEK[] of message i with bare LF -> CRLF, plus a CRLF
             when it does not end in one. This is what RETR must deliver
             after un-stuffing.
  size(i)  = len(E(i)) minus that added CRLF (SPEC §4: the size is the
             message's octets with CRLF line ends; a CRLF added only to
             terminate the message is not counted, as with RFC822.SIZE).
  wire(i)  = dotstuff(E(i)) + ".\\r\\n": every line starting with '.' gets
             one more '.', then the terminator. RETR's bytes after the +OK
             line must be exactly this.
  poplib   returns RETR as lines with the CRLF removed and one leading dot
           of ".."-lines removed; b"\\r\\n".join(lines) + b"\\r\\n" must be
           E(i), and its octet count len(E(i)).
  TOP i n  = IMAP BODY[HEADER] (the header block including the blank line
             that ends it) + the first n lines of BODY[TEXT], CRLF line
             ends, plus a CRLF if the result lacks a final one; dot-stuffed
             like RETR. For the one message with no blank line after its
             headers (headers-only-no-blank) a server may also add that
             blank line (RFC 1939 promises one); both forms are accepted.
"""

import base64
import os
import poplib
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import (CASE_TIMEOUT, HOST, IMAP_PORT, POP3_PORT, Expected, first_diff,  # noqa: E402
                    is_err, is_ok, login, need, parse_capa, pop3, uidl_problems, users,
                    wait_port_closed_by_peer)

# poplib refuses lines over 2048 octets (poplib._MAXLINE); the corpus has
# lines of 20,000 and 65,537 octets, which are legal POP3.
poplib._MAXLINE = 1 << 20

R = pbtest.Report()
USER, QUSER = "alice", "quote"
PW = QPW = ""       # their passwords (run.sh's Dovecot)
E = None            # alice's maildrop (Expected)
N = 0
UIDS_BEFORE = []


def multi_ok(p, command):
    r = p.cmd(command)
    need(is_ok(r), "%s -> %r" % (command, r))
    return p.multi()


def list_sizes(p):
    raw, body, probs = multi_ok(p, "LIST")
    need(not probs, "LIST: %s" % probs)
    out = []
    for line in body.split(b"\r\n"):
        if line:
            num, size = line.split()
            out.append((int(num), int(size)))
    return out


def uidl_map(p):
    raw, body, probs = multi_ok(p, "UIDL")
    need(not probs, "UIDL: %s" % probs)
    out = []
    for line in body.split(b"\r\n"):
        if line:
            m = re.fullmatch(rb"(\d+) (\S+)", line)
            need(m, "bad UIDL line %r" % line)
            out.append((int(m.group(1)), m.group(2)))
    return out


# -- cases ------------------------------------------------------------------------

def greeting():
    p = pop3()
    try:
        g = p.greeting
        need(is_ok(g), "greeting %r" % g)
        need(g.endswith(b"\r\n"), "greeting not CRLF-terminated: %r" % g)
        need(not re.search(rb"<[^<>]*@[^<>]*>", g),
             "greeting carries an APOP timestamp: %r" % g)
    finally:
        p.close()


def capa_before_login():
    p = pop3()
    try:
        raw, body, probs = multi_ok(p, "CAPA")
        need(not probs, probs)
        caps = parse_capa(body)
        missing = [c for c in ("USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES",
                               "AUTH-RESP-CODE", "SASL") if c not in caps]
        need(not missing, "CAPA lacks %s; got %r" % (missing, body))
        need("PLAIN" in caps["SASL"], "SASL line without PLAIN: %r" % caps["SASL"])
    finally:
        p.close()


def capa_no_stls():
    p = pop3()
    try:
        raw, body, probs = multi_ok(p, "CAPA")
        need("STLS" not in parse_capa(body),
             "STLS offered although [listen] has no cert/key: %r" % body)
    finally:
        p.close()


def capa_after_login():
    p = login(USER, PW)
    try:
        raw, body, probs = multi_ok(p, "CAPA")
        caps = parse_capa(body)
        missing = [c for c in ("UIDL", "TOP", "PIPELINING", "RESP-CODES")
                   if c not in caps]
        need(not missing, "CAPA in TRANSACTION lacks %s: %r" % (missing, body))
    finally:
        p.close()


def poplib_session(user=None, password=None):
    user, password = user or USER, password or PW
    c = poplib.POP3(HOST, POP3_PORT, timeout=CASE_TIMEOUT)
    c.user(user)
    c.pass_(password)
    return c


def poplib_stat():
    c = poplib_session()
    try:
        count, total = c.stat()
        need(count == N, "STAT count %d, IMAP has %d messages" % (count, N))
        need(total == sum(E.size),
             "STAT size %d, expected %d (sum of exact sizes)" % (total, sum(E.size)))
    finally:
        c.quit()


def poplib_list():
    c = poplib_session()
    probs = []
    try:
        resp, lines, _ = c.list()
        got = [tuple(int(x) for x in ln.split()) for ln in lines]
        want = [(i, E.size[i - 1]) for i in range(1, N + 1)]
        if got != want:
            probs.append("LIST %r" % got)
            probs.append("want %r" % want)
        for i in range(1, N + 1):
            r = c.list(i)
            m = re.fullmatch(rb"\+OK (\d+) (\d+)", r)
            if not m or (int(m.group(1)), int(m.group(2))) != (i, E.size[i - 1]):
                probs.append("LIST %s -> %r, want size %d" % (E.label(i), r, E.size[i - 1]))
    finally:
        c.quit()
    return probs


def poplib_retr():
    c = poplib_session()
    probs = []
    try:
        for i in range(1, N + 1):
            resp, lines, octets = c.retr(i)
            got = b"\r\n".join(lines) + b"\r\n"
            if got != E.retr[i - 1]:
                probs.append("RETR %s: %s" % (E.label(i), first_diff(got, E.retr[i - 1])))
            elif octets != len(E.retr[i - 1]):
                probs.append("RETR %s: poplib counted %d octets, want %d"
                             % (E.label(i), octets, len(E.retr[i - 1])))
    finally:
        c.quit()
    return probs


def raw_retr():
    """The exact bytes on the wire, and the size rule of SPEC §4."""
    p = login(USER, PW)
    probs = []
    try:
        sizes = dict(list_sizes(p))
        for i in range(1, N + 1):
            r = p.cmd("RETR %d" % i)
            if not is_ok(r):
                probs.append("RETR %s -> %r" % (E.label(i), r))
                continue
            m = re.match(rb"\+OK (\d+) octets", r)
            if m and int(m.group(1)) != E.size[i - 1]:
                probs.append("RETR %s status says %s octets, size is %d"
                             % (E.label(i), m.group(1).decode(), E.size[i - 1]))
            raw, data, wire_probs = p.multi()
            want = imapfetch.dotstuff(E.retr[i - 1])
            if raw != want:
                probs.append("RETR %s wire: %s" % (E.label(i), first_diff(raw, want)))
            probs.extend("RETR %s: %s" % (E.label(i), w) for w in wire_probs)
            added = 0 if E.raw[i - 1].endswith(b"\r\n") else 2
            if sizes.get(i) != len(data) - added:
                probs.append("LIST %s says %s, RETR delivered %d octets (%d of them "
                             "added to end the last line)"
                             % (E.label(i), sizes.get(i), len(data), added))
    finally:
        p.close()
    return probs


def sizes_after_retr():
    """After every message was fetched (cases above), LIST/STAT still report
    the exact sizes, in a new session too."""
    p = login(USER, PW)
    try:
        got = list_sizes(p)
        want = [(i, E.size[i - 1]) for i in range(1, N + 1)]
        need(got == want, "LIST after RETR %r\nwant %r" % (got, want))
        r = p.cmd("STAT")
        need(r.strip() == b"+OK %d %d" % (N, sum(E.size)), "STAT -> %r" % r)
    finally:
        p.close()


def top(n):
    p = login(USER, PW)
    probs = []
    try:
        for i in range(1, N + 1):
            r = p.cmd("TOP %d %d" % (i, n))
            if not is_ok(r):
                probs.append("TOP %s %d -> %r" % (E.label(i), n, r))
                continue
            raw, data, wire_probs = p.multi()
            want = E.top(i, n)
            ok = raw == imapfetch.dotstuff(want)
            if not ok and E.names[i - 1] == "headers-only-no-blank":
                ok = raw == imapfetch.dotstuff(want + b"\r\n")
            if not ok:
                probs.append("TOP %s %d: %s" % (E.label(i), n,
                                                first_diff(raw, imapfetch.dotstuff(want))))
            probs.extend("TOP %s %d: %s" % (E.label(i), n, w) for w in wire_probs)
    finally:
        p.close()
    return probs


def check_uidls(pairs):
    probs = []
    if [k for k, _ in pairs] != list(range(1, N + 1)):
        probs.append("UIDL numbers %r, want 1..%d" % ([k for k, _ in pairs], N))
    return probs + uidl_problems([v for _, v in pairs])


SESSION_UIDLS = []


def uidl_format():
    p = login(USER, PW)
    try:
        pairs = uidl_map(p)
        probs = check_uidls(pairs)
        for k, v in pairs:
            r = p.cmd("UIDL %d" % k)
            if r.rstrip(b"\r\n") != b"+OK %d %s" % (k, v):
                probs.append("UIDL %d -> %r, the list said %r" % (k, r, v))
        SESSION_UIDLS.append(pairs)
        return probs
    finally:
        p.close()


def uidl_stable():
    p = login(USER, PW)
    try:
        pairs = uidl_map(p)
    finally:
        p.close()
    p = login(USER, PW)
    try:
        third = uidl_map(p)
    finally:
        p.close()
    need(SESSION_UIDLS, "no UIDLs from the earlier session")
    need(pairs == SESSION_UIDLS[0] == third,
         "UIDLs differ between sessions:\n%r\n%r\n%r" % (SESSION_UIDLS[0], pairs, third))


def stat_is(p, count=None):
    count = N if count is None else count
    r = p.cmd("STAT")
    need(r.strip() == b"+OK %d %d" % (count, sum(E.size[:count])),
         "STAT after login -> %r" % r)


def auth_plain_ir():
    p = pop3()
    try:
        r = p.auth_plain(USER, PW, initial=True)
        need(is_ok(r), "AUTH PLAIN <ir> -> %r" % r)
        stat_is(p)
    finally:
        p.close()


def auth_plain_no_ir():
    p = pop3()
    try:
        r = p.cmd("AUTH PLAIN")
        need(r.startswith(b"+ ") or r == b"+\r\n",
             "AUTH PLAIN without initial response -> %r, want a '+ ' continuation" % r)
        tok = base64.b64encode(b"\0" + USER.encode() + b"\0" + PW.encode())
        r = p.cmd(tok)
        need(is_ok(r), "AUTH PLAIN continuation -> %r" % r)
        stat_is(p)
    finally:
        p.close()


def auth_plain_cancel():
    p = pop3()
    try:
        r = p.cmd("AUTH PLAIN")
        need(r.startswith(b"+"), "AUTH PLAIN -> %r" % r)
        r = p.cmd("*")
        need(is_err(r), "cancelling AUTH with '*' -> %r, want -ERR" % r)
        r = p.login(USER, PW)
        need(is_ok(r), "USER/PASS after a cancelled AUTH -> %r" % r)
    finally:
        p.close()


def auth_plain_bad():
    p = pop3()
    try:
        r = p.auth_plain(USER, PW + "x", initial=True)
        need(r.startswith(b"-ERR [AUTH]"), "AUTH PLAIN, bad password -> %r" % r)
        r = p.auth_plain(USER, PW, initial=True)
        need(is_ok(r), "AUTH PLAIN after a failed one -> %r" % r)
    finally:
        p.close()


def bare_auth():
    p = pop3()
    try:
        raw, body, probs = multi_ok(p, "AUTH")
        mechs = [ln.strip().upper() for ln in body.split(b"\r\n") if ln.strip()]
        need(b"PLAIN" in mechs, "bare AUTH listed %r" % mechs)
    finally:
        p.close()


def user_pass_bad():
    p = pop3()
    try:
        r = p.login(USER, PW + "x")
        need(r.startswith(b"-ERR [AUTH]"), "PASS with a bad password -> %r" % r)
        r = p.login(USER, PW)
        need(is_ok(r), "a correct USER/PASS after a failed one -> %r" % r)
        stat_is(p)
    finally:
        p.close()


def unknown_user():
    p = pop3()
    try:
        r = p.login("nosuchuser", "whatever")
        need(r.startswith(b"-ERR [AUTH]"), "login as an unknown user -> %r" % r)
    finally:
        p.close()


def quote_user_pass():
    c = poplib_session(QUSER, QPW)   # PASS p a"s\s
    try:
        count, _ = c.stat()
    finally:
        c.quit()


def quote_user_auth():
    p = pop3()
    try:
        r = p.auth_plain(QUSER, QPW, initial=True)
        need(is_ok(r), "AUTH PLAIN as %s -> %r" % (QUSER, r))
        r = p.cmd("STAT")
        need(is_ok(r), "STAT -> %r" % r)
    finally:
        p.close()


def quote_user_near_miss():
    """Passwords that differ from p a"s\\s only in the quoting-sensitive
    characters must fail: escaping must neither drop nor add bytes."""
    probs = []
    for bad in ('p a"s\\', 'p a"ss', 'p as\\s', 'p a\\"s\\s', 'p a"s\\\\s'):
        p = pop3()
        try:
            r = p.login(QUSER, bad)
            if not r.startswith(b"-ERR [AUTH]"):
                probs.append("PASS %r -> %r" % (bad, r))
        finally:
            p.close()
    return probs


def alice_logins():
    """How many upstream logins as alice Dovecot has logged so far."""
    path = os.path.join(os.environ["DOVECOT_DIR"], "dovecot.log")
    with open(path, "rb") as f:
        return len(re.findall(rb"Login: user=<%s>" % USER.encode(), f.read()))


def injection():
    """No byte of the credentials may become IMAP syntax (SPEC §3). Quotes
    and literal markers in USER/PASS, and CR LF smuggled inside AUTH PLAIN
    (base64 can carry any byte): pasted raw, these would log in as alice.
    Every attempt must get -ERR, and Dovecot must log no login as alice
    while they run (nothing else logs in as alice meanwhile)."""
    probs = []
    before = alice_logins()
    for user, pw in (('alice" "%s' % PW, "x"),
                     ("alice", 'x" "%s' % PW),
                     ('alice {%d+}' % len(PW), "x"),
                     ("alice\\", '" "%s' % PW)):
        p = pop3()
        try:
            r = p.login(user, pw)
            if not r.startswith(b"-ERR"):
                probs.append("USER %r PASS %r -> %r" % (user, pw, r))
        finally:
            p.close()
    smuggled = ('x"\r\nZ1 LOGIN "alice" "%s"' % PW,
                'x"\r\nZ1 LOGIN alice %s\r\n' % PW,
                "x\r\nZ1 LOGIN alice %s" % PW)
    for pw in smuggled:
        p = pop3()
        try:
            r = p.auth_plain("nobody", pw, initial=True)
            if not r.startswith(b"-ERR"):
                probs.append("AUTH PLAIN nobody/%r -> %r" % (pw, r))
        finally:
            p.close()
    time.sleep(0.5)   # let Dovecot's log catch up
    after = alice_logins()
    if after != before:
        probs.append("Dovecot logged %d login(s) as alice during the injection "
                     "attempts" % (after - before))
    return probs


def apop():
    p = pop3()
    try:
        r = p.cmd("APOP %s c4c9334bac560ecc979e58001b3e22fb" % USER)
        need(is_err(r), "APOP -> %r" % r)
        r = p.login(USER, PW)
        need(is_ok(r), "USER/PASS after APOP -> %r" % r)
    finally:
        p.close()


def last():
    """RFC 1460 LAST, as Dovecot answers it: the highest message number
    retrieved, before (by the UID map) or in this session; RSET forgets
    this session's part."""
    p = login(USER, PW)
    try:
        r = p.cmd("LAST")
        need(is_ok(r) and re.match(rb"\+OK \d+\r\n$", r), "LAST -> %r" % r)
        before = int(r.split()[1])
        r = p.cmd("STAT")
        count = int(r.split()[1])
        need(before <= count, "LAST %d > STAT count %d" % (before, count))
        if before < count:
            p.cmd("RETR %d" % (before + 1))
            p.multi()
            r = p.cmd("LAST").strip()
            need(r == b"+OK %d" % (before + 1), "LAST after RETR %d -> %r" % (before + 1, r))
            r = p.cmd("RSET")
            need(is_ok(r), "RSET -> %r" % r)
            r = p.cmd("LAST").strip()
            need(r == b"+OK %d" % before, "LAST after RSET -> %r (want %d)" % (r, before))
        r = p.cmd("NOOP")
        need(is_ok(r), "NOOP after LAST -> %r" % r)
    finally:
        p.close()


def bad_numbers():
    p = login(USER, PW)
    probs = []
    try:
        for c in ("RETR 0", "RETR %d" % (N + 1), "RETR 4294967297", "RETR abc",
                  "RETR -1", "RETR", "TOP %d 0" % (N + 1), "TOP 1", "TOP 1 x",
                  "LIST 0", "LIST %d" % (N + 1), "UIDL %d" % (N + 1),
                  "DELE %d" % (N + 1), "DELE 0"):
            r = p.cmd(c)
            if not is_err(r):
                probs.append("%s -> %r" % (c, r))
                if is_ok(r) and c.split()[0] in ("RETR", "TOP"):
                    p.multi()   # stay in step with the server
        r = p.cmd("NOOP")
        if not is_ok(r):
            probs.append("NOOP afterwards -> %r" % r)
        r = p.cmd("STAT")
        if r.strip() != b"+OK %d %d" % (N, sum(E.size)):
            probs.append("STAT afterwards -> %r" % r)
        r = p.cmd("RETR 1")
        if is_ok(r):
            raw, _, _ = p.multi()
            if raw != imapfetch.dotstuff(E.retr[0]):
                probs.append("RETR 1 afterwards: %s"
                             % first_diff(raw, imapfetch.dotstuff(E.retr[0])))
        else:
            probs.append("RETR 1 afterwards -> %r" % r)
    finally:
        p.close()
    return probs


def before_login():
    """One connection per command: some servers (Dovecot) hang up after a
    few bad commands, which is fair."""
    probs = []
    for c in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "PASS %s" % PW):
        p = pop3()
        try:
            r = p.cmd(c)
            if not is_err(r):
                probs.append("%s before login -> %r" % (c, r))
            r = p.login(USER, PW)
            if not is_ok(r):
                probs.append("login after %s -> %r" % (c, r))
        finally:
            p.close()
    return probs


def pipelining():
    """All commands in one write; the answers must come in order."""
    p = pop3()
    probs = []
    try:
        p.send(("USER %s\r\nPASS %s\r\nSTAT\r\nLIST 2\r\nUIDL 2\r\nRETR 2\r\n"
                "RETR %d\r\nTOP 1 0\r\nNOOP\r\nLIST\r\nRETR 3\r\nSTAT\r\n"
                % (USER, PW, N + 1)).encode())
        r = p.line()
        if not is_ok(r):
            probs.append("USER -> %r" % r)
        r = p.line()
        if not is_ok(r):
            probs.append("PASS -> %r" % r)
            return probs
        r = p.line()
        if r.strip() != b"+OK %d %d" % (N, sum(E.size)):
            probs.append("STAT -> %r" % r)
        r = p.line()
        if not re.fullmatch(rb"\+OK 2 %d\s*" % E.size[1], r):
            probs.append("LIST 2 -> %r" % r)
        r = p.line()
        if not re.fullmatch(rb"\+OK 2 \S+\s*", r):
            probs.append("UIDL 2 -> %r" % r)
        r = p.line()
        if not is_ok(r):
            probs.append("RETR 2 -> %r" % r)
            return probs
        raw, _, _ = p.multi()
        if raw != imapfetch.dotstuff(E.retr[1]):
            probs.append("RETR 2: %s" % first_diff(raw, imapfetch.dotstuff(E.retr[1])))
        r = p.line()
        if not is_err(r):
            probs.append("RETR %d -> %r" % (N + 1, r))
            return probs
        r = p.line()
        if not is_ok(r):
            probs.append("TOP 1 0 -> %r" % r)
            return probs
        raw, _, _ = p.multi()
        if raw != imapfetch.dotstuff(E.top(1, 0)):
            probs.append("TOP 1 0: %s" % first_diff(raw, imapfetch.dotstuff(E.top(1, 0))))
        r = p.line()
        if not is_ok(r):
            probs.append("NOOP -> %r" % r)
        r = p.line()
        if not is_ok(r):
            probs.append("LIST -> %r" % r)
            return probs
        raw, body, _ = p.multi()
        want = b"".join(b"%d %d\r\n" % (i, E.size[i - 1]) for i in range(1, N + 1))
        if body != want:
            probs.append("LIST: %s" % first_diff(body, want))
        r = p.line()
        if not is_ok(r):
            probs.append("RETR 3 -> %r" % r)
            return probs
        raw, _, _ = p.multi()
        if raw != imapfetch.dotstuff(E.retr[2]):
            probs.append("RETR 3: %s" % first_diff(raw, imapfetch.dotstuff(E.retr[2])))
        r = p.line()
        if r.strip() != b"+OK %d %d" % (N, sum(E.size)):
            probs.append("last STAT -> %r" % r)
    finally:
        p.close()
    return probs


def long_command():
    """SPEC §2: over 255 octets -> -ERR, the session goes on. The line would
    mean "LIST 1" to a parser that ignored the length."""
    p = login(USER, PW)
    try:
        r = p.cmd(b"LIST " + b"0" * 299 + b"1")
        need(is_err(r), "a 305-octet LIST line -> %r" % r)
        r = p.cmd(b"NOOP")
        need(is_ok(r), "NOOP afterwards -> %r" % r)
        r = p.cmd("LIST 1")
        need(r.strip() == b"+OK 1 %d" % E.size[0], "LIST 1 afterwards -> %r" % r)
    finally:
        p.close()


def quit_authorization():
    p = pop3()
    try:
        r = p.cmd("QUIT")
        need(is_ok(r), "QUIT before login -> %r" % r)
        need(wait_port_closed_by_peer(p), "connection still open after QUIT")
    finally:
        p.close()


def quit_transaction():
    p = login(USER, PW)
    try:
        r = p.cmd("QUIT")
        need(is_ok(r), "QUIT -> %r" % r)
        need(wait_port_closed_by_peer(p), "connection still open after QUIT")
    finally:
        p.close()


def untouched():
    """All of the above only read: every message is still there, and none
    got \\Seen (mark_seen = no: RETR/TOP use BODY.PEEK)."""
    conn = imapfetch.connect(IMAP_PORT, USER, PW)
    try:
        meta = imapfetch.info(conn)
    finally:
        conn.logout()
    need(sorted(meta) == UIDS_BEFORE, "UIDs now %r, were %r" % (sorted(meta), UIDS_BEFORE))
    seen = [u for u, m in meta.items() if "\\Seen" in m["flags"]]
    need(not seen, "UIDs %r got \\Seen upstream" % seen)


def main():
    def body(tmp):
        global PW, QPW, E, N, UIDS_BEFORE
        U = users()
        PW, QPW = U[USER], U[QUSER]
        need(QPW == 'p a"s\\s', "the quote user's password is %r" % QPW)
        try:
            E = Expected.imap(IMAP_PORT, USER, PW)
            if len(E) < 10:
                raise RuntimeError("alice has only %d messages over IMAP" % len(E))
        except Exception as e:  # nothing below makes sense without it
            R.fail("read alice's corpus over IMAP", [repr(e)])
            return
        N = len(E)
        UIDS_BEFORE = list(E.uids)
        R.case("greeting is +OK, CRLF, no APOP timestamp", greeting)
        R.case("CAPA before login: USER UIDL TOP PIPELINING RESP-CODES AUTH-RESP-CODE SASL PLAIN",
               capa_before_login)
        R.case("CAPA without a certificate does not offer STLS", capa_no_stls)
        R.case("CAPA after login", capa_after_login)
        R.case("poplib USER/PASS + STAT count and size", poplib_stat)
        R.case("poplib LIST and LIST n sizes", poplib_list)
        R.case("poplib RETR of every message equals IMAP BODY[]", poplib_retr)
        R.case("RETR on the wire is dotstuff(IMAP BODY[]) + .CRLF; LIST size rule", raw_retr)
        R.case("LIST/STAT exact after RETR", sizes_after_retr)
        R.case("TOP n 0 is the header block", top, 0)
        R.case("TOP n 3 is the header block and 3 body lines", top, 3)
        R.case("UIDL unique, 1-70 printable chars, UIDL n agrees", uidl_format)
        R.case("UIDL stable across sessions", uidl_stable)
        R.case("AUTH PLAIN with initial response", auth_plain_ir)
        R.case("AUTH PLAIN without initial response", auth_plain_no_ir)
        R.case("AUTH PLAIN cancelled with *", auth_plain_cancel)
        R.case("AUTH PLAIN bad password -> -ERR [AUTH]", auth_plain_bad)
        R.case("bare AUTH lists PLAIN", bare_auth)
        R.case("USER/PASS bad password -> -ERR [AUTH], retry works", user_pass_bad)
        R.case("unknown user -> -ERR [AUTH]", unknown_user)
        R.case("password with space, quote, backslash: USER/PASS (poplib)", quote_user_pass)
        R.case("password with space, quote, backslash: AUTH PLAIN", quote_user_auth)
        R.case("near-miss passwords of the quote user are refused", quote_user_near_miss)
        R.case("credentials cannot inject IMAP syntax", injection)
        R.case("APOP -> -ERR", apop)
        R.case("LAST -> +OK highest retrieved; RSET forgets this session's", last)
        R.case("RETR 0 / past the end / junk -> -ERR, session goes on", bad_numbers)
        R.case("TRANSACTION commands before login -> -ERR", before_login)
        R.case("pipelined commands answered in order", pipelining)
        R.case("command line over 255 octets -> -ERR, session goes on", long_command)
        R.case("QUIT in AUTHORIZATION closes", quit_authorization)
        R.case("QUIT in TRANSACTION closes", quit_transaction)
        R.case("read-only sessions leave the mailbox and \\Seen untouched", untouched)

    return pbtest.script_main(R, "pop3 cases", body, own_popbridge=False)


if __name__ == "__main__":
    sys.exit(main())
