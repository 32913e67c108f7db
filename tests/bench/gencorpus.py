#!/usr/bin/env python3
"""Writes the benchmark mailboxes straight into Dovecot maildirs.

    gencorpus.py --mail DIR [--owner UID:GID] USER:COUNT:SIZE ...

Each spec adds COUNT messages to DIR/USER/Maildir/cur. SIZE is an exact
octet count (e.g. 1048576) or a range MIN-MAX (sizes drawn from a seeded
generator). Messages are CRLF text: a plain header block and 76-column
base64-looking lines with a dot-led line every 97 lines (so dot-stuffing
happens, as with real mail). File names carry S= and W= (the physical and
the CRLF size, equal here), so Dovecot learns RFC822.SIZE without reading
the file. Much faster than APPEND: 10,000 messages take about a second.
"""

import argparse
import base64
import os
import random
import sys

LINE = 78  # 76 characters + CRLF


def make_pool(nbytes, seed):
    rnd = random.Random(seed)
    raw = rnd.randbytes(nbytes * 3 // 4) if hasattr(rnd, "randbytes") else \
        os.urandom(nbytes * 3 // 4)
    b64 = base64.b64encode(raw)
    lines = [b64[i:i + 76] for i in range(0, len(b64) - 76, 76)]
    for i in range(0, len(lines), 97):
        lines[i] = b"." + lines[i][1:]  # dot-stuffed by POP3
    return b"\r\n".join(lines) + b"\r\n"


def header(user, n, size):
    return ("From: Bench Sender <bench@example.org>\r\n"
            "To: %s <%s@example.org>\r\n"
            "Subject: popbridge bench message %d (%d octets)\r\n"
            "Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
            "Message-ID: <bench-%s-%d@popbridge.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "Content-Transfer-Encoding: 7bit\r\n"
            "\r\n" % (user, user, n, size, user, n)).encode()


def message(pool, user, n, size, rnd):
    head = header(user, n, size)
    rest = size - len(head)
    if rest < 0:
        raise SystemExit("gencorpus: %d octets is too small for a message" % size)
    nlines, last = divmod(rest, LINE)
    if last in (1, 2):  # too short for a line of its own: lengthen one
        if nlines == 0:
            return head + b"x" * last  # no room for a final CRLF
        nlines -= 1
        last += LINE
    body_len = nlines * LINE
    out = [head]
    while body_len > 0:
        start = rnd.randrange(0, len(pool) // LINE) * LINE
        chunk = pool[start:start + body_len]
        out.append(chunk)
        body_len -= len(chunk)
    if last:
        out.append(b"x" * (last - 2) + b"\r\n")
    data = b"".join(out)
    assert len(data) == size, (len(data), size)
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mail", required=True, help="the mail root (DIR/USER/Maildir)")
    ap.add_argument("--owner", default="", help="UID:GID to chown everything to")
    ap.add_argument("--seed", type=int, default=1939)
    ap.add_argument("specs", nargs="+", help="USER:COUNT:SIZE or USER:COUNT:MIN-MAX")
    a = ap.parse_args()
    uid = gid = -1
    if a.owner:
        uid, gid = (int(x) for x in a.owner.split(":"))
    rnd = random.Random(a.seed)
    pool = make_pool(8 * 1024 * 1024, a.seed)
    pid = os.getpid()
    serial = 0
    base_time = 1741000000
    for spec in a.specs:
        user, count, size = spec.split(":")
        count = int(count)
        if "-" in size:
            lo, hi = (int(x) for x in size.split("-"))
        else:
            lo = hi = int(size)
        md = os.path.join(a.mail, user, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        cur = os.path.join(md, "cur")
        for i in range(count):
            serial += 1
            sz = lo if lo == hi else rnd.randint(lo, hi)
            data = message(pool, user, serial, sz, rnd)
            t = base_time + serial
            name = "%d.M%dP%d.popbridge-bench,S=%d,W=%d:2," % (t, serial, pid, sz, sz)
            path = os.path.join(cur, name)
            with open(path, "wb") as f:
                f.write(data)
            os.utime(path, (t, t))
            if uid >= 0:
                os.chown(path, uid, gid)
        if uid >= 0:
            for d in (os.path.join(a.mail, user), md,
                      os.path.join(md, "cur"), os.path.join(md, "new"),
                      os.path.join(md, "tmp")):
                os.chown(d, uid, gid)
    if uid >= 0:
        os.chown(a.mail, uid, gid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
