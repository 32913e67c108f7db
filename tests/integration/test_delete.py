#!/usr/bin/env python3
"""DELE/RSET/QUIT semantics, checked over IMAP, and the login snapshot.

Each case uses its own user (bob, carol, dave, snap) and appends its own
messages first, so no case depends on another's deletions.
"""

import os
import poplib
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import corpus  # noqa: E402
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import (CASE_TIMEOUT, HOST, IMAP_PORT, POP3_PORT, first_diff, is_err,  # noqa: E402
                    is_ok, login, users)

poplib._MAXLINE = 1 << 20
R = pbtest.Report()
U = {}              # run.sh's users and their passwords
SMALL = ["plain", "dot-lines", "latin1-8bit", "no-final-crlf", "body-dot", "crlf-mix"]


def imap(user):
    return imapfetch.connect(IMAP_PORT, user, U[user])


def fresh_mailbox(user, names=SMALL):
    """Empties user's INBOX and appends the named corpus messages; returns
    their UIDs in order."""
    conn = imap(user)
    try:
        imapfetch.select(conn, "INBOX", readonly=False)
        conn.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)")
        conn.expunge()
        msgs = [(n, d) for n, d in corpus.messages() if n in names]
        uids = corpus.append(conn, "INBOX", msgs)
        assert None not in uids, "no APPENDUID from the server"
        return uids
    finally:
        conn.logout()


def uids_now(user, folder="INBOX"):
    conn = imap(user)
    try:
        return imapfetch.list_uids(conn, folder)
    finally:
        conn.logout()


def pop3_uidls(user):
    p = login(user, U[user])
    try:
        r = p.cmd("UIDL")
        assert is_ok(r), "UIDL -> %r" % r
        _, body, _ = p.multi()
        p.cmd("QUIT")
        return [ln.split(b" ", 1)[1] for ln in body.split(b"\r\n") if ln]
    finally:
        p.close()


def stat(user):
    p = login(user, U[user])
    try:
        r = p.cmd("STAT")
        p.cmd("QUIT")
        return r
    finally:
        p.close()


def dele_quit():
    user = "bob"
    uids = fresh_mailbox(user)
    before = pop3_uidls(user)
    assert len(before) == len(uids), "POP3 lists %d messages, IMAP has %d" % (
        len(before), len(uids))
    probs = []
    c = poplib.POP3(HOST, POP3_PORT, timeout=CASE_TIMEOUT)
    c.user(user)
    c.pass_(U[user])
    count, size = c.stat()
    sizes = dict(tuple(int(x) for x in ln.split()) for ln in c.list()[1])
    c.dele(2)
    c.dele(4)
    count2, size2 = c.stat()
    if (count2, size2) != (count - 2, size - sizes[2] - sizes[4]):
        probs.append("STAT after DELE 2, DELE 4: %r, want %r"
                     % ((count2, size2), (count - 2, size - sizes[2] - sizes[4])))
    listed = [int(ln.split()[0]) for ln in c.list()[1]]
    if listed != [i for i in range(1, count + 1) if i not in (2, 4)]:
        probs.append("LIST after DELE lists %r" % listed)
    for cmd in ("RETR 2", "LIST 4", "TOP 2 0", "UIDL 4", "DELE 2"):
        try:
            r = c._shortcmd(cmd)
            probs.append("%s on a deleted message -> %r" % (cmd, r))
            if cmd.startswith(("RETR", "TOP")):
                c._getlongresp()
        except poplib.error_proto:
            pass
    r = c.quit()
    if not r.startswith(b"+OK"):
        probs.append("QUIT -> %r" % r)
    now = uids_now(user)
    want = [u for k, u in enumerate(uids, 1) if k not in (2, 4)]
    if now != want:
        probs.append("IMAP UIDs after QUIT %r, want %r (DELE 2 and 4 = UIDs %d, %d)"
                     % (now, want, uids[1], uids[3]))
    trash = uids_now(user, "Trash")
    if trash:
        probs.append("on_delete = expunge, yet Trash has UIDs %r" % trash)
    after = pop3_uidls(user)
    if after != [v for k, v in enumerate(before, 1) if k not in (2, 4)]:
        probs.append("UIDLs of the remaining messages changed: %r -> %r" % (before, after))
    return probs


def dele_drop():
    user = "carol"
    uids = fresh_mailbox(user)
    p = login(user, U[user])
    try:
        for k in (1, 2, 5):
            r = p.cmd("DELE %d" % k)
            assert is_ok(r), "DELE %d -> %r" % (k, r)
        r = p.cmd("STAT")
        assert is_ok(r), "STAT -> %r" % r
    finally:
        # drop the TCP connection: no QUIT
        try:
            p.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        p.close()
    time.sleep(1.5)   # give a wrong implementation time to do damage
    now = uids_now(user)
    assert now == uids, "after DELE and a dropped connection IMAP has %r, had %r" % (now, uids)
    r = stat(user)
    assert r.startswith(b"+OK %d " % len(uids)), "next session's STAT -> %r" % r


def dele_rset_quit():
    user = "carol"
    uids = fresh_mailbox(user)
    p = login(user, U[user])
    probs = []
    try:
        r0 = p.cmd("STAT")
        for k in (1, 3):
            r = p.cmd("DELE %d" % k)
            if not is_ok(r):
                probs.append("DELE %d -> %r" % (k, r))
        r = p.cmd("RSET")
        if not is_ok(r):
            probs.append("RSET -> %r" % r)
        r = p.cmd("STAT")
        if r != r0:
            probs.append("STAT after RSET %r, before DELE %r" % (r, r0))
        r = p.cmd("RETR 1")
        if is_ok(r):
            p.multi()
        else:
            probs.append("RETR 1 after RSET -> %r" % r)
        r = p.cmd("QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %r" % r)
    finally:
        p.close()
    now = uids_now(user)
    if now != uids:
        probs.append("after DELE, RSET, QUIT IMAP has %r, had %r" % (now, uids))
    return probs


def foreign_deleted():
    """Another client's \\Deleted flag (not expunged) must survive our UPDATE:
    popbridge may only UID EXPUNGE its own UIDs, never a plain EXPUNGE."""
    user = "dave"
    uids = fresh_mailbox(user)
    conn = imap(user)
    try:
        imapfetch.select(conn)
        first = imapfetch.fetch(conn, uids[0])
        imapfetch.flag_deleted(conn, "INBOX", uids[2])
    finally:
        conn.logout()
    p = login(user, U[user])
    try:
        r = p.cmd("RETR 1")
        assert is_ok(r), "RETR 1 -> %r" % r
        _, data, _ = p.multi()
        want, _ = imapfetch.pop3_expected(first)
        assert data == want, "POP3 message 1 is not UID %d: %s" % (
            uids[0], first_diff(data, want))
        r = p.cmd("DELE 1")
        assert is_ok(r), "DELE 1 -> %r" % r
        r = p.cmd("QUIT")
        assert is_ok(r), "QUIT -> %r" % r
    finally:
        p.close()
    conn = imap(user)
    try:
        meta = imapfetch.info(conn)
    finally:
        conn.logout()
    want = uids[1:]
    assert sorted(meta) == want, "IMAP UIDs %r, want %r (UID %d flagged \\Deleted by "\
        "another client must stay)" % (sorted(meta), want, uids[2])
    assert "\\Deleted" in meta[uids[2]]["flags"], "UID %d lost its \\Deleted flag" % uids[2]


def snapshot():
    """SPEC §2: the maildrop is a snapshot taken at login."""
    user = "snap"
    fresh_mailbox(user, ["plain", "dot-lines", "body-dot"])
    p = login(user, U[user])
    probs = []
    try:
        r1 = p.cmd("STAT")
        conn = imap(user)
        try:
            corpus.append(conn, "INBOX", [m for m in corpus.messages() if m[0] == "latin1-8bit"])
        finally:
            conn.logout()
        r2 = p.cmd("STAT")
        if not (r1.startswith(b"+OK 3 ") and r2 == r1):
            probs.append("STAT at login %r, after a new message arrived %r" % (r1, r2))
        r = p.cmd("LIST 4")
        if not is_err(r):
            probs.append("LIST 4 (arrived after login) -> %r" % r)
        r = p.cmd("RETR 4")
        if not is_err(r):
            probs.append("RETR 4 (arrived after login) -> %r" % r)
            if is_ok(r):
                p.multi()
        r = p.cmd("QUIT")
    finally:
        p.close()
    r = stat(user)
    if not r.startswith(b"+OK 4 "):
        probs.append("next session's STAT -> %r, want 4 messages" % r)
    return probs


def expunged_mid_session():
    """SPEC §3: a message expunged upstream mid-session gives -ERR for RETR
    and the session goes on."""
    user = "snap"
    uids = fresh_mailbox(user, ["plain", "dot-lines", "body-dot"])
    p = login(user, U[user])
    probs = []
    try:
        r = p.cmd("STAT")
        conn = imap(user)
        try:
            imapfetch.select(conn, "INBOX", readonly=False)
            conn.uid("STORE", str(uids[1]), "+FLAGS.SILENT", "(\\Deleted)")
            conn.expunge()
        finally:
            conn.logout()
        r = p.cmd("RETR 2")
        if not is_err(r):
            probs.append("RETR of a message expunged upstream -> %r" % r)
            if is_ok(r):
                p.multi()
        r = p.cmd("RETR 3")
        if is_ok(r):
            p.multi()
        else:
            probs.append("RETR 3 afterwards -> %r" % r)
        r = p.cmd("NOOP")
        if not is_ok(r):
            probs.append("NOOP afterwards -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    now = uids_now(user)
    if now != [uids[0], uids[2]]:
        probs.append("IMAP UIDs %r, want %r" % (now, [uids[0], uids[2]]))
    return probs


def main():
    def body(tmp):
        U.update(users())
        R.case("DELE 2 msgs + QUIT expunges exactly those; the rest keep their UIDLs", dele_quit)
        R.case("DELE then dropped connection removes nothing", dele_drop)
        R.case("DELE, RSET, QUIT removes nothing", dele_rset_quit)
        R.case("a message another client flagged \\Deleted survives our UPDATE", foreign_deleted)
        R.case("maildrop is a snapshot: new mail shows up in the next session", snapshot)
        R.case("message expunged upstream mid-session: RETR -ERR, session goes on",
               expunged_mid_session)

    return pbtest.script_main(R, "delete cases", body, own_popbridge=False)


if __name__ == "__main__":
    sys.exit(main())
