#!/usr/bin/env python3
"""Reads a folder over IMAP: the expected bytes for the POP3 tests.

As a module (conn: a logged-in imaplib.IMAP4, see connect()):
    select(conn, folder, readonly=True)     -> number of messages
    list_uids(conn, folder)                 -> sorted [uid]
    info(conn, folder)                      -> {uid: {"size": n, "flags": [..]}}
    fetch(conn, uid, section="")            -> bytes of UID FETCH BODY.PEEK[section]
    fetch_all(conn, folder)                 -> [(uid, bytes)] sorted by UID
    flag_deleted(conn, folder, uid)         STORE +FLAGS (\\Deleted), no expunge
    pop3_expected(data)                     -> (retr_bytes, list_size)
    pop3_top(header, text, n)               -> what TOP returns for n lines
    dotstuff(data)                          -> the multi-line body on the wire

As a program:
    imapfetch.py --port P --user U --password PW [--folder F] --out DIR
        writes DIR/NNNN.eml (N = position in UID order, from 0001) and
        DIR/index (lines "NNNN UID RFC822.SIZE FLAGS")
    imapfetch.py ... --uids                 prints the UIDs, one a line
    imapfetch.py ... --expect-uids 1,2,5    exit 0 iff exactly these remain
    imapfetch.py ... --flag-deleted UID     flag \\Deleted without expunging
"""

import argparse
import imaplib
import os
import re
import sys

CRLF = b"\r\n"


def connect(port, user, password, host="127.0.0.1", timeout=30):
    conn = imaplib.IMAP4(host, port, timeout=timeout)
    conn.login(user, password)
    return conn


def _q(folder):
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def select(conn, folder="INBOX", readonly=True):
    typ, data = conn.select(_q(folder), readonly=readonly)
    if typ != "OK":
        raise RuntimeError("SELECT %s: %r" % (folder, data))
    return int(data[0])


_INFO_RE = re.compile(rb"\(.*?UID (\d+)")
_SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


def info(conn, folder="INBOX"):
    """{uid: {"size": RFC822.SIZE, "flags": [flag, ...]}} for the folder."""
    n = select(conn, folder)
    out = {}
    if n == 0:
        return out
    typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
    if typ != "OK":
        raise RuntimeError("UID FETCH: %r" % (data,))
    for item in data:
        if isinstance(item, tuple):
            item = item[0]
        if not item:
            continue
        m = _INFO_RE.search(item)
        if not m:
            continue
        s = _SIZE_RE.search(item)
        f = _FLAGS_RE.search(item)
        out[int(m.group(1))] = {
            "size": int(s.group(1)) if s else None,
            "flags": f.group(1).decode().split() if f else [],
        }
    return out


def list_uids(conn, folder="INBOX"):
    return sorted(info(conn, folder))


def fetch(conn, uid, section=""):
    """BODY.PEEK[section] of one message (folder already selected)."""
    typ, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[%s])" % section)
    if typ != "OK":
        raise RuntimeError("UID FETCH %s: %r" % (uid, data))
    for item in data:
        if isinstance(item, tuple) and b"BODY[" in item[0]:
            return item[1]
    raise RuntimeError("UID FETCH %s BODY.PEEK[%s]: no data in %r"
                       % (uid, section, data[:3]))


def fetch_all(conn, folder="INBOX", sections=("",)):
    """[(uid, bytes)] in UID order; with several sections, bytes is a tuple."""
    uids = list_uids(conn, folder)
    out = []
    for uid in uids:
        parts = tuple(fetch(conn, uid, s) for s in sections)
        out.append((uid, parts[0] if len(parts) == 1 else parts))
    return out


def flag_deleted(conn, folder, uid):
    """Another IMAP client's \\Deleted flag, left unexpunged."""
    select(conn, folder, readonly=False)
    typ, data = conn.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    if typ != "OK":
        raise RuntimeError("UID STORE: %r" % (data,))


# ---------------------------------------------------------------------------
# What a POP3 server in front of this IMAP folder must send (SPEC §2, §4).
#
# E (the bytes RETR delivers after un-stuffing) = the IMAP BODY[] bytes with
#   every bare LF turned into CRLF, and a CRLF appended when the message does
#   not end with one. A CR that is not followed by LF is data and stays.
# The LIST/STAT size = len(E) without that appended CRLF (the same as a
#   correct RFC822.SIZE).
# On the wire, RETR's multi-line body is dotstuff(E) + ".\r\n".

_BARE_LF = re.compile(rb"(?<!\r)\n")


def crlf(data):
    if data.count(b"\n") == data.count(CRLF):     # no bare LF: skip the slow regex
        return data
    return _BARE_LF.sub(CRLF, data)


def pop3_expected(data):
    """(retr_bytes, list_size) for IMAP BODY[] bytes `data`."""
    e = crlf(data)
    size = len(e)
    if e and not e.endswith(CRLF):
        e += CRLF
    return e, size


def dotstuff(e):
    """The multi-line response body for E (which ends in CRLF or is empty),
    terminator included."""
    out = []
    for line in _lines(e):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"".join(out) + b".\r\n"


def _lines(e):
    """Splits at LF only (a bare CR is not a line end); keeps the ends."""
    parts = e.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def pop3_top(header, text, n):
    """TOP msg n: the header block (IMAP BODY[HEADER], which includes the
    blank separator line when there is one), then the first n lines of the
    body (BODY[TEXT]); CRLF line ends, and a CRLF to end the result if the
    last line sent lacks one."""
    h = crlf(header)
    body_lines = _lines(crlf(text))[:n]
    out = h + b"".join(body_lines)
    if out and not out.endswith(CRLF):
        out += CRLF
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--folder", default="INBOX")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="directory for NNNN.eml files and index")
    g.add_argument("--uids", action="store_true")
    g.add_argument("--expect-uids", help="comma list (may be empty)")
    g.add_argument("--flag-deleted", type=int, metavar="UID")
    a = ap.parse_args(argv)

    conn = connect(a.port, a.user, a.password, a.host)
    try:
        if a.uids:
            for uid in list_uids(conn, a.folder):
                print(uid)
            return 0
        if a.expect_uids is not None:
            want = sorted(int(x) for x in a.expect_uids.split(",") if x.strip())
            have = list_uids(conn, a.folder)
            if have != want:
                print("expected UIDs %s, found %s" % (want, have), file=sys.stderr)
                return 1
            return 0
        if a.flag_deleted is not None:
            flag_deleted(conn, a.folder, a.flag_deleted)
            return 0
        os.makedirs(a.out, exist_ok=True)
        meta = info(conn, a.folder)
        with open(os.path.join(a.out, "index"), "w") as idx:
            for i, (uid, data) in enumerate(fetch_all(conn, a.folder), 1):
                with open(os.path.join(a.out, "%04d.eml" % i), "wb") as f:
                    f.write(data)
                m = meta.get(uid, {})
                idx.write("%04d %d %s %s\n" % (i, uid, m.get("size"),
                                               " ".join(m.get("flags", []))))
        return 0
    finally:
        try:
            conn.logout()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main())
