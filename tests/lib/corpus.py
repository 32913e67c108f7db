#!/usr/bin/env python3
"""Awkward test messages for popbridge, appended over IMAP.

As a module:
    corpus.messages()                -> [(name, bytes)], in append order
    corpus.append(conn, folder, msgs) -> [uid]   (conn: logged-in imaplib.IMAP4)
    corpus.generated(n, size, seed)  -> [(name, bytes)] plain messages of ~size

As a program:
    corpus.py --port P --user U --password PW [--folder INBOX]
              [--only NAME[,NAME...]] [--generate N --size BYTES]
    corpus.py --list                 names and sizes of the corpus
    corpus.py --write-dir DIR        write the raw corpus files (no IMAP)

The messages are appended byte for byte: imaplib's APPEND would rewrite every
bare CR and bare LF to CRLF, which would defeat the CR/LF mixtures, so
append() sends the literal unchanged (see _raw_append).

What Dovecot 2.3 makes of them (its BODY[] is what the tests expect):
bare LF comes back as CRLF; a bare CR in mid-line is kept; "\\r\\r\\n" comes
back as "\\r\\n" and a trailing lone CR is dropped; a message without a final
line end keeps lacking it; RFC822.SIZE equals the length of BODY[].
"""

import argparse
import base64
import imaplib
import os
import random
import re
import sys
import time

CRLF = b"\r\n"


def _hdr(name, subject, extra=b""):
    """A plain header block (without the blank separator line)."""
    return (b"From: Corpus Sender <sender@example.org>\r\n"
            b"To: Tester <tester@example.org>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
            b"Message-ID: <" + name.encode() + b"@corpus.popbridge.test>\r\n"
            b"X-Corpus-Name: " + name.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\n" + extra)


def _text_hdr(charset=b"us-ascii", cte=b"7bit"):
    return (b"Content-Type: text/plain; charset=" + charset + b"\r\n"
            b"Content-Transfer-Encoding: " + cte + b"\r\n")


def _big_attachment(total=5 * 1024 * 1024):
    """multipart/mixed with ~total bytes of base64 (76-char lines)."""
    rnd = random.Random(1939)
    n = total * 3 // 4
    raw = rnd.randbytes(n) if hasattr(rnd, "randbytes") else \
        bytes(rnd.getrandbits(8) for _ in range(n))
    b64 = base64.encodebytes(raw).replace(b"\n", CRLF)  # 76-char lines
    boundary = b"=_popbridge_corpus_boundary_7f3a"
    return (_hdr("big-attachment", b"A 5 MB attachment",
                 b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n")
            + CRLF
            + b"This is a multi-part message in MIME format.\r\n"
            + b"--" + boundary + CRLF
            + _text_hdr() + CRLF
            + b"The attachment follows.\r\n"
            + b".A dot-led line in the text part.\r\n"
            + b"--" + boundary + CRLF
            + b"Content-Type: application/octet-stream; name=\"random.bin\"\r\n"
            + b"Content-Transfer-Encoding: base64\r\n"
            + b"Content-Disposition: attachment; filename=\"random.bin\"\r\n"
            + CRLF
            + b64
            + b"--" + boundary + b"--" + CRLF)


def _dots_everywhere():
    """Thousands of dot-led lines of varying length, so that dot-stuffing
    and CRLF handling meet every offset of whatever buffer size the server
    streams with (1..5 dots, 0..130 more characters per line)."""
    lines = []
    for i in range(3000):
        lines.append(b"." * (1 + i % 5) + b"x" * ((i * 7) % 131))
    return (_hdr("dots-everywhere", b"Dot-led lines at every offset")
            + _text_hdr() + CRLF + CRLF.join(lines) + CRLF)


def messages():
    """The corpus, in the order it is appended: [(name, bytes)]."""
    m = []
    m.append(("plain", _hdr("plain", b"A plain message") + _text_hdr() + CRLF
              + b"Hello,\r\n"
              + b"From the start of a line, \"From \" must not become \">From \".\r\n"
              + b"\r\n"
              + b"Regards\r\n"))
    m.append(("dot-lines", _hdr("dot-lines", b"Lines that begin with dots")
              + _text_hdr() + CRLF
              + b".\r\n"                      # the body starts with a lone dot
              + b"..\r\n"
              + b"...\r\n"
              + b".foo\r\n"
              + b"..bar\r\n"
              + b". space after a dot\r\n"
              + b"middle\r\n"
              + b".\r\n"                      # a lone dot in the middle
              + b"\r\n"
              + b".\r\n"
              + b"not.a.dot at the start.\r\n"
              + b"last line\r\n"))
    m.append(("leading-dot", b".X-Leading-Dot: the very first line starts with a dot\r\n"
              + _hdr("leading-dot", b"First line of the message begins with '.'")
              + CRLF + b".body starts with a dot too\r\n"))
    m.append(("latin1-8bit",
              b"From: J\xf6rg M\xfcller <joerg@example.org>\r\n"
              b"To: Tester <tester@example.org>\r\n"
              b"Subject: Gr\xfc\xdfe aus K\xf6ln \xa7 \xbd \xff\r\n"
              b"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
              b"Message-ID: <latin1-8bit@corpus.popbridge.test>\r\n"
              b"X-Corpus-Name: latin1-8bit\r\n"
              b"MIME-Version: 1.0\r\n"
              + _text_hdr(b"iso-8859-1", b"8bit") + CRLF
              + b"Raw Latin-1: \xe4\xf6\xfc \xc4\xd6\xdc \xdf \xe9\xe8\xea \xa0nbsp \xff\xfe\r\n"
              + b"\xb7 a line that starts with an 8-bit byte\r\n"))
    m.append(("utf8-8bit",
              b"From: =?utf-8?q?x?= \xe5\xbc\xa0\xe4\xb8\x89 <zhang@example.org>\r\n"
              b"To: Tester <tester@example.org>\r\n"
              b"Subject: Gr\xc3\xbc\xc3\x9fe \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80\r\n"
              b"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
              b"Message-ID: <utf8-8bit@corpus.popbridge.test>\r\n"
              b"X-Corpus-Name: utf8-8bit\r\n"
              b"MIME-Version: 1.0\r\n"
              + _text_hdr(b"utf-8", b"8bit") + CRLF
              + "Grüße, ĉu vi parolas? Ελληνικά, русский, 日本語, 😀🎉\r\n".encode()
              + ".§ a dot-led UTF-8 line ü\r\n".encode()))
    m.append(("long-lines", _hdr("long-lines", b"Very long lines") + _text_hdr() + CRLF
              + b"short first line\r\n"
              + (b"0123456789abcdefghij" * 1000) + CRLF           # 20,000 chars
              + b"." + (b"Z" * 65536) + CRLF                      # dot-led, 65,537 chars
              + b"after the long lines\r\n"))
    m.append(("no-final-crlf", _hdr("no-final-crlf", b"The last line has no line end")
              + _text_hdr() + CRLF
              + b"first line\r\n"
              + b"last line without CRLF"))
    m.append(("no-final-crlf-dot", _hdr("no-final-crlf-dot",
                                        b"Ends in a lone dot without a line end")
              + _text_hdr() + CRLF
              + b"the next line is a lone dot without CRLF\r\n"
              + b"."))
    m.append(("big-attachment", _big_attachment()))
    m.append(("headers-only-no-blank", _hdr("headers-only-no-blank",
                                            b"Headers only, no blank line")))
    m.append(("headers-only-blank", _hdr("headers-only-blank",
                                         b"Headers only, then a blank line") + CRLF))
    m.append(("body-dot", _hdr("body-dot", b"The body is a single dot")
              + CRLF + b".\r\n"))
    m.append(("crlf-mix", _hdr("crlf-mix", b"CR and LF mixtures") + _text_hdr() + CRLF
              + b"crlf line\r\n"
              + b"bare lf line\n"
              + b".dot after a bare lf\n"
              + b"bare cr\rin the middle of a line\r\n"
              + b"cr cr lf\r\r\n"
              + b"\n"
              + b"lf lf above\n\n"
              + b"last crlf line\r\n"))
    m.append(("dots-everywhere", _dots_everywhere()))
    m.append(("body-many-lines", _hdr("body-many-lines", b"Short lines for TOP")
              + _text_hdr() + CRLF
              + b"".join(b"line %d\r\n" % i for i in range(1, 11))))
    return m


def generated(n, size, seed=0, prefix="gen"):
    """n plain messages of about `size` octets each (CRLF, 76-char lines)."""
    out = []
    for i in range(n):
        name = "%s-%d-%d" % (prefix, seed, i)
        head = _hdr(name, b"Generated message %d" % i) + _text_hdr() + CRLF
        body = []
        left = max(0, size - len(head))
        j = 0
        while left > 0:
            line = (b"%s line %d " % (name.encode(), j)).ljust(76, b"x")[:max(0, left - 2)]
            body.append(line + CRLF)
            left -= len(line) + 2
            j += 1
        out.append((name, head + b"".join(body)))
    return out


def _raw_append(conn, folder, data):
    """APPEND data unchanged (imaplib.append would normalise CR/LF)."""
    saved = imaplib.MapCRLF
    imaplib.MapCRLF = re.compile(rb"\r\n")  # CRLF -> CRLF: a no-op
    try:
        typ, resp = conn.append(folder, None, None, data)
    finally:
        imaplib.MapCRLF = saved
    if typ != "OK":
        raise RuntimeError("APPEND failed: %r" % (resp,))
    m = re.search(rb"APPENDUID \d+ (\d+)", resp[0] or b"")
    return int(m.group(1)) if m else None


def append(conn, folder, msgs):
    """Appends [(name, bytes)] in order; returns the UIDs (None if unknown)."""
    return [_raw_append(conn, folder, data) for _name, data in msgs]


def connect(port, user, password, host="127.0.0.1", timeout=30):
    conn = imaplib.IMAP4(host, port, timeout=timeout)
    conn.login(user, password)
    return conn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--folder", default="INBOX")
    ap.add_argument("--only", help="comma list of corpus names to append")
    ap.add_argument("--generate", type=int, metavar="N",
                    help="append N generated messages instead of the corpus")
    ap.add_argument("--size", type=int, default=4096,
                    help="approximate size of a generated message (octets)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--write-dir")
    a = ap.parse_args(argv)

    if a.generate is not None:
        msgs = generated(a.generate, a.size, a.seed)
    else:
        msgs = messages()
        if a.only:
            want = [w.strip() for w in a.only.split(",") if w.strip()]
            names = {n for n, _ in msgs}
            bad = [w for w in want if w not in names]
            if bad:
                ap.error("unknown corpus names: %s" % ", ".join(bad))
            msgs = [(n, d) for n, d in msgs if n in want]

    if a.list:
        for n, d in msgs:
            print("%-24s %9d" % (n, len(d)))
        return 0
    if a.write_dir:
        os.makedirs(a.write_dir, exist_ok=True)
        for i, (n, d) in enumerate(msgs, 1):
            with open(os.path.join(a.write_dir, "%04d-%s.eml" % (i, n)), "wb") as f:
                f.write(d)
        return 0
    if a.port is None or a.user is None or a.password is None:
        ap.error("--port, --user and --password are required to append")
    conn = connect(a.port, a.user, a.password, a.host)
    try:
        t0 = time.time()
        if a.generate is not None and a.generate > 50:
            # many small messages: one literal at a time is fine, but say so
            print("appending %d messages of ~%d octets" % (a.generate, a.size),
                  file=sys.stderr)
        uids = append(conn, a.folder, msgs)
        print("appended %d messages to %s/%s in %.1fs" %
              (len(uids), a.user, a.folder, time.time() - t0), file=sys.stderr)
    finally:
        try:
            conn.logout()
        except Exception:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
