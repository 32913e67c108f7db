#!/usr/bin/env python3
"""popbridge's core cases against several IMAP servers (SPEC §2-§4):
Dovecot 2.3, Cyrus IMAP 3.6, Cyrus with UIDPLUS and MOVE suppressed, and
GNU Mailutils imap4d 3.15 (mbox; no UIDPLUS, no MOVE).

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_servers.py
    ONLY=servers POPBRIDGE=... bash tests/integration/run.sh

Self-contained: every server is a private instance (tests/lib/imapservers.py;
Cyrus and Mailutils come from tests/lib/servers-deps.sh) on a free
127.0.0.1 port with its own configuration and directories, and each
popbridge in front of one has its own configuration and state directory
(one per on_delete setting). Every case has its own user on every server.
Mail is delivered with IMAP APPEND; "another client" is a separate IMAP
connection (flags, EXPUNGE) or, for a rebuild, the server's own means
(Dovecot: dovecot-uidlist and indexes removed; Cyrus: the user's mailboxes
deleted by an admin and re-created, messages appended again; Mailutils:
X-IMAPbase/X-UID stripped from the mbox file). What popbridge must deliver
is read from the same server: E = BODY.PEEK[] with bare LF made CRLF (and a
CRLF added when the message lacks a final one); TOP from BODY.PEEK[HEADER]
and BODY.PEEK[TEXT] (tests/lib/imapfetch.py).

Cases, per server ("SERVER: NAME"):
  login             USER/PASS, AUTH PLAIN, one wrong password -> -ERR [AUTH]
  LIST/STAT/UIDL    the awkward corpus (tests/lib/corpus.py): counts, sizes
                    (RFC822.SIZE or exact), unique printable UIDLs, stable
  RETR              byte-exact and correctly dot-stuffed, every message
  sizes after RETR  LIST/STAT exact in that session and the next
  TOP n 0, TOP n 3 on an empty body, TOP n 300 on a body of exactly 16,384
  octets, TOP n 99999999
  fetchmail keep    everything delivered byte-exact once; a second run
                    fetches nothing; the mailbox unchanged
  fetchmail         without keep: delivered once, gone upstream (or flagged
                    \\Deleted without UIDPLUS and MOVE), not fetched again
  DELE+QUIT         exactly the deleted messages removed (the fallback
                    without UIDPLUS), the others untouched, UIDLs kept
  foreign \\Deleted  a message another client flagged \\Deleted survives
  on_delete = expunge | trash | seen | keep: checked after QUIT, and the
                    deleted messages are not listed again (two more
                    sessions) and never copied to Trash twice
  flags change      another client changes flags between sessions: LIST
                    sizes stay those RETR delivers (mbox rewrites headers)
  rebuild           a UIDVALIDITY change: fingerprinted messages keep their
                    UIDLs, a new message gets a new one
Each popbridge that dies during a case (an abort, a sanitizer report) fails
that case with its exit status and last log lines and is started again for
the next (a session cut short goes on in a new one); every POP3 reply has
10 s, every fetchmail run 60 s. At the end: every popbridge exits 0 on
SIGTERM and its log holds no sanitizer report and no password.

The servers start one after the other; then each server's cases run in a
thread of their own and print as one block when done (about a minute in
all on an idle 2-core machine; Mailutils, whose mbox makes a 5 MB APPEND
slow, takes longest).

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script; also ONLY_SERVER=dovecot,cyrus,... (ONLY_CASE
matches "SERVER: NAME"), CYRUS_ROOT (where servers-deps.sh unpacked
Cyrus).
"""

import concurrent.futures
import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import corpus  # noqa: E402
import imapfetch  # noqa: E402
import imapservers  # noqa: E402
import pbtest  # noqa: E402
from pbtest import (HOST, expect, fetchmail_want, first_diff, msg_name, note,  # noqa: E402
                    pw_of, sent, show_box, tail, uidl_problems)
from pop3wire import Pop3  # noqa: E402

ONLY_SERVER = [s for s in os.environ.get("ONLY_SERVER", "").split(",") if s]
REPLY_WAIT = 10.0           # longest wait for one POP3 reply
CLIENT_TIMEOUT = 60         # one fetchmail run

R = pbtest.Report()
TARGETS = []

CASE_USERS = ["login", "corpus", "top", "fmkeep", "fmdel", "dele", "foreign", "odexpunge",
              "odtrash", "odseen", "odkeep", "flags", "rebuild"]

# For fetchmail and the flags case: the corpus without the 5 MB message,
# the long lines and the dot flood (RETR covers those).
SMALL = ["plain", "dot-lines", "leading-dot", "latin1-8bit", "utf8-8bit", "no-final-crlf",
         "no-final-crlf-dot", "headers-only-no-blank", "headers-only-blank", "body-dot",
         "crlf-mix", "body-many-lines"]
EMPTY_BODY = ["headers-only-blank", "headers-only-no-blank"]
TOP_NAMES = ["plain", "dot-lines", "no-final-crlf", "body-dot", "body-many-lines"] + EMPTY_BODY
BODY_16K = 16384


_CORPUS = []


def messages():
    """corpus.messages(), made once (the 5 MB attachment takes a while)."""
    if not _CORPUS:
        _CORPUS.extend(corpus.messages())
    return _CORPUS


def sixteen_k(body_len=BODY_16K, name="body-16k"):
    """A message whose body (after the blank line) is body_len octets of
    128-octet CRLF lines (the last one shorter when it must be)."""
    lines, left, i = [], body_len, 0
    while left > 0:
        n = min(128, left)
        if n < 2:                       # no line of one octet: lengthen the one before
            lines[-1] = lines[-1][:-2] + b"y" * n + b"\r\n"
            break
        lines.append((b"%05d " % i).ljust(n - 2, b"x")[:n - 2] + b"\r\n")
        left -= n
        i += 1
    return (corpus._hdr(name, b"A body of exactly %d octets" % body_len)
            + corpus._text_hdr() + b"\r\n" + b"".join(lines))


# -- the servers and their popbridges ---------------------------------------------

class Target:
    """A server under test and the popbridges in front of it."""

    def __init__(self, name, srv):
        self.name = name
        self.srv = srv
        self.pbs = {}
        self.report = pbtest.Report(buffered=True)

    def note(self, msg):
        self.report.note("%s: %s" % (self.name, msg))

    def pb(self, on_delete="expunge"):
        """The popbridge in front of this server with on_delete, started
        when first needed and again after it died (each death reported
        once, by crashes())."""
        p = self.pbs.get(on_delete)
        if p is None:
            p = self.pbs[on_delete] = pbtest.Popbridge(
                "%s-%s" % (self.name, on_delete), self.srv.port,
                maildrop={"on_delete": on_delete, "trash": "Trash"})
        return p.ensure()

    def login(self, user):
        return self.srv.login_name(user)

    def session(self, user, on_delete="expunge"):
        return pbtest.Pop3Session(self.pb(on_delete), self.login(user),
                                  self.srv.password(user))

    def crashes(self):
        out = []
        for p in self.pbs.values():
            out += p.take_deaths()
        return out


# -- POP3 ----------------------------------------------------------------------------

def per_message(t, user, items, fn, on_delete="expunge"):
    """Runs fn(session, item) for each item in as few sessions as it
    takes: when one ends early (popbridge died, the connection dropped),
    the problem is kept and the next item gets a new session."""
    probs = []
    s = None
    for it in items:
        try:
            if s is None:
                s = t.session(user, on_delete)
            p = fn(s, it)
            if p:
                probs.append(p)
        except AssertionError as e:
            probs.append(str(e))
            s.p.close() if s is not None else None
            s = None
    if s is not None:
        try:
            s.quit_ok()
        except AssertionError as e:
            probs.append(str(e))
    return probs


# -- what the server holds ---------------------------------------------------------------

def expected(srv, user, sections=("",)):
    """The maildrop as POP3 must present it, read from the server."""
    return pbtest.Expected(srv.fetch_all(user, sections=sections))


def tag_msg(tag, body=b""):
    t = tag.encode()
    return (b"From: Server Tests <servers@example.org>\r\n"
            b"To: Tester <tester@example.org>\r\n"
            b"Subject: message " + t + b"\r\n"
            b"Date: Tue, 04 Mar 2025 10:00:00 +0000\r\n"
            b"Message-ID: <" + t + b"@servers.popbridge.test>\r\n"
            b"X-Corpus-Name: " + t + b"\r\n"
            b"\r\n"
            b"Body of " + t + b".\r\n" + body)


def tags_of(srv, user, folder="INBOX"):
    """{uid: (tag, flags)} of a folder."""
    out = {}
    for uid, data in srv.fetch_all(user, folder, sections=("HEADER",)):
        out[uid] = msg_name(data)
    box = srv.mailbox(user, folder)
    return {u: (out.get(u, "?"), box[u]["flags"]) for u in box}


# -- cases -------------------------------------------------------------------------------

def case_login(t):
    probs = []
    user = "login"
    with t.session(user) as s:
        n, _ = s.stat()
        expect(n == 0, probs, "STAT says %d messages in an empty mailbox" % n)
        s.quit_ok()
    pb = t.pb()
    p = Pop3(HOST, pb.port, timeout=REPLY_WAIT)
    try:
        r = p.auth_plain(t.login(user), t.srv.password(user))
        expect(r.startswith(b"+OK"), probs, "AUTH PLAIN (initial response) -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    p = Pop3(HOST, pb.port, timeout=REPLY_WAIT + 5)
    try:
        r = p.login(t.login(user), t.srv.password(user) + "-wrong")
        expect(r.startswith(b"-ERR [AUTH]"), probs, "a wrong password -> %r, want -ERR [AUTH]" % r)
    finally:
        p.close()
    return probs


def setup_corpus(t):
    t.srv.deliver("corpus", [d for _, d in messages()])


def case_listing(t):
    probs = []
    user = "corpus"
    E = expected(t.srv, user)
    meta = t.srv.mailbox(user)
    with t.session(user) as s:
        st = s.stat()
        sizes = s.list()
        u1 = s.uidl()
        s.quit_ok()
    expect(st[0] == len(E), probs, "STAT says %d messages, the server holds %d" % (st[0], len(E)))
    expect(len(sizes) == len(E), probs, "LIST lists %d messages, the server holds %d"
           % (len(sizes), len(E)))
    expect(st[1] == sum(sizes), probs, "STAT total %d, LIST sums to %d" % (st[1], sum(sizes)))
    for i, n in enumerate(sizes[:len(E)]):
        ok = (n == E.size[i] or n == meta[E.uids[i]]["size"])
        expect(ok, probs, "LIST %d (%s): %d, want RFC822.SIZE %s or the exact %d" % (
            i + 1, E.names[i], n, meta[E.uids[i]]["size"], E.size[i]))
    probs += uidl_problems(u1)
    with t.session(user) as s:
        u2 = s.uidl()
        s.quit_ok()
    expect(u1 == u2, probs, "UIDLs differ between two sessions: %s / %s" % (u1, u2))
    return probs


def case_retr(t):
    user = "corpus"
    E = expected(t.srv, user)

    def one(s, i):
        data = s.multi("RETR %d" % (i + 1))
        if data != E.retr[i]:
            return "RETR %d (%s): %s" % (i + 1, E.names[i], first_diff(data, E.retr[i]))
        return None
    return per_message(t, user, range(len(E)), one)


def case_sizes_after_retr(t):
    """Runs after case_retr: the sizes are exact from then on."""
    probs = []
    user = "corpus"
    E = expected(t.srv, user)
    with t.session(user) as s:
        for i in range(len(E)):
            s.multi("RETR %d" % (i + 1))
        got = s.list()
        s.quit_ok()
    expect(got == E.size, probs, "LIST after RETR in the same session %s, want %s" % (got, E.size))
    with t.session(user) as s:
        got = s.list()
        st = s.stat()
        s.quit_ok()
    expect(got == E.size, probs, "LIST in the next session %s, want %s" % (got, E.size))
    expect(st == (len(E), sum(E.size)), probs, "STAT %s, want %s" % (st, (len(E), sum(E.size))))
    return probs


def setup_top(t):
    srv = t.srv
    msgs = [d for n, d in messages() if n in TOP_NAMES]
    srv.deliver("top", msgs)
    # a body of exactly 16,384 octets as the server stores it (mbox adds
    # a line end): measured, and once made again to measure if it is off
    uid = srv.deliver("top", [sixteen_k()])[0]
    got = len(srv.fetch("top", uid, "TEXT"))
    if got != BODY_16K:
        srv.set_flags("top", [uid], "(\\Deleted)")
        srv.expunge("top")
        uid = srv.deliver("top", [sixteen_k(2 * BODY_16K - got)])[0]
        got = len(srv.fetch("top", uid, "TEXT"))
    if got != BODY_16K:
        raise AssertionError("could not store a body of %d octets on %s (got %d)"
                             % (BODY_16K, t.name, got))


def top_case(t, names, n):
    E = expected(t.srv, "top", sections=("HEADER", "TEXT"))
    idx = [i for i, nm in enumerate(E.names) if nm in names]
    if len(idx) != len(names):
        return ["the server holds %s, want %s" % (E.names, names)]

    def one(s, i):
        want = imapfetch.pop3_top(E.parts[i][0], E.parts[i][1], n)
        got = s.multi("TOP %d %d" % (i + 1, n))
        if got != want:
            return "TOP %d %d (%s, body %d octets): %s" % (
                i + 1, n, E.names[i], len(E.parts[i][1]), first_diff(got, want))
        return None
    return per_message(t, "top", idx, one)


def fetchmail(t, user, keep):
    """fetchmail with UIDL tracking (keep or not) through t's popbridge."""
    return pbtest.Fetchmail(pbtest.SCRATCH, "fetchmail-%s-%s" % (t.name, user), t.pb().port,
                            t.login(user), t.srv.password(user), keep=keep,
                            run_timeout=CLIENT_TIMEOUT)


def fetchmail_case(t, keep):
    user = "fmkeep" if keep else "fmdel"
    probs = []
    E = expected(t.srv, user)
    before = t.srv.mailbox(user)
    fm = fetchmail(t, user, keep)
    rc, got, out = fm.run()
    out = tail(out, 4)
    crash = t.crashes()
    if crash:
        return ["first run: exit status %d: %s" % (rc, out)] + crash
    expect(rc == 0, probs, "first run: exit status %d, want 0: %s" % (rc, out))
    expect(len(got) == len(E), probs, "first run delivered %d messages, want %d"
           % (len(got), len(E)))
    for i, g in enumerate(got[:len(E)]):
        x = fetchmail_want(E, i + 1, g)
        if x:
            probs.append("message %d (%s): %s" % (i + 1, E.names[i], x))
    box = t.srv.mailbox(user)
    if keep:
        expect({u: m["flags"] for u, m in box.items()} == {u: m["flags"] for u, m in before.items()},
               probs, "with keep the mailbox changed: %s -> %s" % (
                   {u: sorted(m["flags"]) for u, m in before.items()},
                   {u: sorted(m["flags"]) for u, m in box.items()}))
    else:
        left = [u for u, m in box.items() if "\\Deleted" not in m["flags"]]
        expect(not left, probs, "without keep, UIDs %s are still in INBOX (not \\Deleted)" % left)
        if t.srv.has("UIDPLUS"):
            expect(not box, probs, "without keep, INBOX still holds UIDs %s" % sorted(box))
    rc, got, out = fm.run()
    out = tail(out, 4)
    probs += t.crashes()
    expect(rc == 1 and not got, probs, "second run: exit status %d, %d messages delivered, "
           "want 1 (no mail) and none: %s" % (rc, len(got), out))
    return probs


def setup_tagged(t, user, n=4):
    tags = ["%s-%d" % (user, i) for i in range(1, n + 1)]
    uids = t.srv.deliver(user, [tag_msg(x) for x in tags])
    return tags, uids


def removed_ok(t, box, uid, tag, probs, why, trash_ok=False):
    """The check for a message popbridge removed at QUIT: gone (UIDPLUS, or
    MOVE), or still there flagged \\Deleted (neither)."""
    srv = t.srv
    if srv.has("UIDPLUS") or srv.has("MOVE"):
        expect(uid not in box, probs, "%s (UID %d) still in INBOX after QUIT (%s): %s"
               % (tag, uid, why, show_box(box)))
    else:
        expect(uid not in box or "\\Deleted" in box[uid][1], probs,
               "%s (UID %d) after QUIT (%s, no UIDPLUS/MOVE): %s, want \\Deleted or gone"
               % (tag, uid, why, show_box(box)))


def case_dele(t):
    user = "dele"
    probs = []
    tags, uids = setup_tagged(t, user)
    before = tags_of(t.srv, user)
    with t.session(user) as s:
        u0 = s.uidl()
        s.ok("DELE 2")
        s.ok("DELE 4")
        r = s.quit_ok()
    expect(b"2 messages deleted" in r, probs, "QUIT -> %r" % r)
    box = tags_of(t.srv, user)
    for k in (0, 2):
        expect(box.get(uids[k]) == before[uids[k]], probs, "%s (not deleted) changed: %s"
               % (tags[k], show_box(box)))
    for k in (1, 3):
        removed_ok(t, box, uids[k], tags[k], probs, "on_delete = expunge")
    with t.session(user) as s:
        u1 = s.uidl()
        s.quit_ok()
    expect(u1 == [u0[0], u0[2]], probs, "next session UIDL %s, want %s" % (u1, [u0[0], u0[2]]))
    return probs


def case_foreign(t):
    user = "foreign"
    probs = []
    tags, uids = setup_tagged(t, user)
    t.srv.set_flags(user, [uids[2]], "(\\Deleted)")
    with t.session(user) as s:
        n, _ = s.stat()
        s.ok("DELE 1")
        s.quit_ok()
    t.note("popbridge lists %d of 4 messages when another client flagged one \\Deleted" % n)
    box = tags_of(t.srv, user)
    expect(uids[2] in box and "\\Deleted" in box[uids[2]][1], probs,
           "%s (flagged \\Deleted by another client, UID %d) after popbridge's QUIT: %s"
           % (tags[2], uids[2], show_box(box)))
    removed_ok(t, box, uids[0], tags[0], probs, "DELE 1")
    for k in (1, 3):
        expect(uids[k] in box and not box[uids[k]][1], probs, "%s changed: %s"
               % (tags[k], show_box(box)))
    return probs


def on_delete_case(t, how):
    user = "od" + how
    probs = []
    tags, uids = setup_tagged(t, user)
    before = tags_of(t.srv, user)
    pb = t.pb(how)
    off = pb.offset()
    with t.session(user, how) as s:
        u0 = s.uidl()
        s.multi("RETR 2")
        s.ok("DELE 2")
        s.ok("DELE 4")
        mid = tags_of(t.srv, user)
        expect(mid == before, probs, "before QUIT: %s, want unchanged %s" % (
            show_box(mid), show_box(before)))
        s.quit_ok()
    gone = [(uids[k], tags[k]) for k in (1, 3)]
    kept = [(uids[k], tags[k]) for k in (0, 2)]

    def check(when):
        box, trash = tags_of(t.srv, user), tags_of(t.srv, user, "Trash")
        for u, tg in kept:
            expect(box.get(u) == before[u], probs, "%s: %s (not deleted) changed: %s"
                   % (when, tg, show_box(box)))
        ttags = sorted(tg for tg, _ in trash.values())
        if how == "expunge":
            for u, tg in gone:
                removed_ok(t, box, u, tg, probs, when)
            want = sorted(tg for _, tg in gone) if (not t.srv.has("UIDPLUS")
                                                     and t.srv.has("MOVE")) else []
            expect(ttags == want, probs, "%s: Trash holds %s, want %s" % (when, ttags, want))
        elif how == "trash":
            for u, tg in gone:
                removed_ok(t, box, u, tg, probs, when)
            want = sorted(tg for _, tg in gone)
            expect(ttags == want, probs, "%s: Trash holds %s, want %s (each copied once)"
                   % (when, ttags, want))
        elif how == "seen":
            for u, tg in gone:
                expect(u in box and box[u][1] == before[u][1] | {"\\Seen"}, probs,
                       "%s: %s (UID %d): %s, want still in INBOX with \\Seen added"
                       % (when, tg, u, show_box(box)))
            expect(not trash, probs, "%s: Trash: %s, want empty" % (when, show_box(trash)))
        else:
            expect(box == before, probs, "%s: INBOX %s, want unchanged %s" % (
                when, show_box(box), show_box(before)))
            expect(not trash, probs, "%s: Trash: %s, want empty" % (when, show_box(trash)))

    check("after QUIT")
    if how == "keep":
        probs += ["sent: " + ln for ln in sent(pb, off, r"STORE|EXPUNGE|MOVE|COPY")]
        return probs
    want = [u0[0], u0[2]]
    for k in ("second", "third"):
        with t.session(user, how) as s:
            got = s.uidl()
            # listed again: a client that deletes what it downloads deletes them again
            again = [i + 1 for i, u in enumerate(got) if u in (u0[1], u0[3])]
            for n in again:
                s.ok("DELE %d" % n)
            s.quit_ok()
        expect(got == want, probs, "%s session: UIDL %s, want %s (deleted ones not listed "
               "again)%s" % (k, got, want, "; DELE %s + QUIT again" % again if again else ""))
        check("after the %s session" % k)
    return probs


def case_flags(t):
    """Another client changes flags between sessions; mbox servers rewrite
    Status/X-Status headers, so a message's size can change."""
    user = "flags"
    probs = []
    t.srv.deliver(user, [d for n, d in messages() if n in SMALL])
    E0 = expected(t.srv, user)
    with t.session(user) as s:
        for i in range(len(E0)):
            s.multi("RETR %d" % (i + 1))
        s.quit_ok()
    t.srv.set_flags(user, E0.uids, "(\\Flagged \\Answered)")
    t.srv.set_flags(user, E0.uids[::2], "(\\Seen)")
    E = expected(t.srv, user)
    changed = [E.names[i] for i in range(len(E)) if E.size[i] != E0.size[i]]
    t.note("sizes changed by the flag change: %s" % (changed or "none"))
    with t.session(user) as s:
        sizes = s.list()
        st = s.stat()
        got = [s.multi("RETR %d" % (i + 1)) for i in range(len(E))]
        s.quit_ok()
    for i in range(len(E)):
        expect(sizes[i] == E.size[i], probs, "LIST %d (%s): %d, the message is now %d octets"
               % (i + 1, E.names[i], sizes[i], E.size[i]))
        expect(got[i] == E.retr[i], probs, "RETR %d (%s): %s" % (
            i + 1, E.names[i], first_diff(got[i], E.retr[i])))
    expect(st[1] == sum(E.size), probs, "STAT %s, want total %d" % (st, sum(E.size)))
    return probs


def case_rebuild(t):
    user = "rebuild"
    probs = []
    srv = t.srv
    tags, uids = setup_tagged(t, user, 6)
    # gaps, so that the rebuilt mailbox really numbers the messages anew
    srv.set_flags(user, [uids[0], uids[3]], "(\\Deleted)")
    srv.expunge(user)
    tags = [x for k, x in enumerate(tags) if k not in (0, 3)]
    pb = t.pb()
    with t.session(user) as s:
        u0 = s.uidl()
        for i in range(len(u0)):
            s.multi("RETR %d" % (i + 1))        # fingerprinted
        s.quit_ok()
    before = dict(zip(tags, u0))
    v0 = srv.uidvalidity(user)
    box0 = sorted(srv.mailbox(user))
    srv.rebuild(user)
    srv.deliver(user, [tag_msg("rebuild-new")])
    v1 = srv.uidvalidity(user)
    box1 = srv.mailbox(user)
    t.note("rebuild: UIDVALIDITY %d -> %d, UIDs %s -> %s" % (v0, v1, box0, sorted(box1)))
    if v1 == v0:
        return ["the rebuild did not change UIDVALIDITY (%d)" % v0]
    off = pb.offset()
    with t.session(user) as s:
        u1 = s.uidl()
        names = [msg_name(s.multi("TOP %d 0" % (i + 1))) for i in range(len(u1))]
        s.quit_ok()
    after = dict(zip(names, u1))
    expect(sorted(names) == sorted(tags + ["rebuild-new"]), probs,
           "after the rebuild popbridge lists %s" % names)
    same = [x for x in tags if after.get(x) == before[x]]
    expect(len(same) == len(tags), probs, "UIDLs kept by %d of %d known messages: "
           "before %s, after %s" % (len(same), len(tags), before, after))
    newu = after.get("rebuild-new")
    expect(newu is not None and newu not in u0, probs,
           "the new message's UIDL %s is not new (known: %s)" % (newu, u0))
    lines = pb.tail(2, off, r"was rebuilt")
    if lines:
        t.note(lines[-1][:200])
    return probs


CASES = [
    ("login: USER/PASS, AUTH PLAIN, a wrong password -> -ERR [AUTH]", None, case_login),
    ("LIST/STAT/UIDL of the corpus agree with the server", setup_corpus, case_listing),
    ("RETR byte-exact for every corpus message (vs IMAP BODY.PEEK[])", None, case_retr),
    ("after RETR, LIST/STAT are exact in that session and the next", None,
     case_sizes_after_retr),
    ("TOP n 0 on every message", setup_top, lambda t: top_case(t, TOP_NAMES + ["body-16k"], 0)),
    ("TOP n 3 on an empty body", None, lambda t: top_case(t, EMPTY_BODY, 3)),
    ("TOP n 300 on a body of exactly 16,384 octets", None,
     lambda t: top_case(t, ["body-16k"], 300)),
    ("TOP n 99999999 on every message", None,
     lambda t: top_case(t, TOP_NAMES + ["body-16k"], 99999999)),
    ("fetchmail keep: all delivered byte-exact once, mailbox unchanged",
     lambda t: t.srv.deliver("fmkeep", [d for n, d in messages() if n in SMALL]
                             + [sixteen_k()]),
     lambda t: fetchmail_case(t, True)),
    ("fetchmail without keep: delivered once, removed upstream",
     lambda t: t.srv.deliver("fmdel", [d for n, d in messages() if n in SMALL]),
     lambda t: fetchmail_case(t, False)),
    ("DELE+QUIT removes exactly the deleted messages, UIDLs kept", None, case_dele),
    ("foreign \\Deleted: another client's flagged message is not expunged", None, case_foreign),
    ("on_delete = expunge", None, lambda t: on_delete_case(t, "expunge")),
    ("on_delete = trash: copied to Trash once, never listed again", None,
     lambda t: on_delete_case(t, "trash")),
    ("on_delete = seen", None, lambda t: on_delete_case(t, "seen")),
    ("on_delete = keep: QUIT changes nothing", None, lambda t: on_delete_case(t, "keep")),
    ("flags changed by another client: LIST sizes stay what RETR delivers", None, case_flags),
    ("rebuild (UIDVALIDITY change): known messages keep their UIDLs", None, case_rebuild),
]


class Crashes:
    """Report.case's watch for a server's case: the popbridges that died
    during it are its problems (t.pb() starts them again)."""

    def __init__(self, t):
        self.t = t

    def begin(self):
        pass

    def end(self, probs):
        return probs + self.t.crashes()


def run_case(t, name, setup, fn):
    full = "%s: %s" % (t.name, name)
    if not t.report.selected(full):
        if setup:
            setup(t)            # later cases may need its mail
        return
    t0 = time.time()

    def body():
        if setup:
            setup(t)
        return fn(t)

    t.report.case(full, body, watch=Crashes(t))
    if time.time() - t0 > 5:
        t.note("%s took %.1fs" % (name, time.time() - t0))


def start_target(t):
    """Starts the server and logs its users in once; False (reported) if
    that fails."""
    t0 = time.time()
    try:
        t.srv.start()
        pbtest.taken(t.srv.port)
        # the users' first logins (Cyrus creates their mailboxes) side by side
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(t.srv.prepare, CASE_USERS))
    except Exception as e:  # noqa: BLE001
        t.report.fail("%s: the server starts and its users log in" % t.name,
                      [str(e)] + t.srv.log_tail(6))
        return False
    t.note("IMAP on 127.0.0.1:%d (%.1fs to start and prepare %d users)"
           % (t.srv.port, time.time() - t0, len(CASE_USERS)))
    return True


def run_cases(t):
    t0 = time.time()
    try:
        for name, setup, fn in CASES:
            run_case(t, name, setup, fn)
        finish_target(t)
    except Exception as e:  # noqa: BLE001 - reported, the other servers go on
        tb = traceback.format_exc().strip().splitlines()
        t.report.fail("%s: the cases ran to the end" % t.name,
                      ["%s: %s" % (type(e).__name__, e)] + tb[-4:])
    finally:
        t.srv.stop()
    t.note("%.1fs for the cases" % (time.time() - t0))


def finish_target(t):
    if not t.pbs:
        return
    logs = "%s: no sanitizer reports and no passwords in popbridge's logs" % t.name
    pbtest.final_checks(t.report, t.pbs.values(),
                        sigterm="%s: every popbridge exits 0 on SIGTERM" % t.name,
                        sanitizer=logs, leaks=logs, secrets=t.srv.users.values())


def targets(tmp):
    users = {u: pw_of(u) for u in CASE_USERS}
    out = [
        Target("dovecot", imapservers.Dovecot(os.path.join(tmp, "dovecot"), users)),
        Target("cyrus", imapservers.Cyrus(os.path.join(tmp, "cyrus"), users)),
        Target("cyrus-nouidplus", imapservers.Cyrus(os.path.join(tmp, "cyrus-nouidplus"), users,
                                                    suppress=("UIDPLUS", "MOVE"))),
        Target("mailutils", imapservers.Mailutils(os.path.join(tmp, "mailutils"), users)),
    ]
    return [t for t in out if not ONLY_SERVER or t.name in ONLY_SERVER]


def main():
    def body(tmp):
        note("popbridge %s; scratch %s" % (pbtest.default_popbridge(), tmp))
        messages()          # made once, before the threads share it
        TARGETS.extend(targets(tmp))
        # Servers start one after the other (each takes its port), then
        # each server's cases run in a thread of its own: they share no
        # process, user or port, and most of their time is spent waiting.
        ready = [t for t in TARGETS if start_target(t)]
        for t in TARGETS:
            if t not in ready:
                t.report.flush(R)
        threads = []
        for t in ready:
            th = threading.Thread(target=run_cases, args=(t,), name=t.name, daemon=True)
            th.start()
            threads.append((th, t))
        while threads:
            for th, t in list(threads):
                th.join(0.2)
                if not th.is_alive():
                    threads.remove((th, t))
                    t.report.flush(R)

    def cleanup():
        for t in TARGETS:
            try:
                t.srv.stop()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                print("# stopping %s: %s" % (t.name, e), file=sys.stderr)

    return pbtest.script_main(R, "server cases", body, cleanup, tools=("fetchmail",))


if __name__ == "__main__":
    sys.exit(main())
