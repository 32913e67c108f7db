#!/usr/bin/env python3
"""Real POP3 clients (curl, fetchmail, mpop) against alice's corpus.

All of them keep the mail on the server (read-only for the maildrop).
E(i) is what RETR must deliver after un-stuffing (see test_pop3.py).

What each client does to the bytes (found against Dovecot's own POP3 server
and a correct reference server; only this is normalised, nothing else):

  curl      writes E(i) exactly: it un-stuffs, drops the ".\\r\\n" terminator
            and keeps the CRLF before it. Quirk: if a server (wrongly)
            sends a first body line with a single unstuffed '.', curl
            writes a CR in place of that dot.
  fetchmail (MDA delivery, "no stripcr", "set invisible", "no rewrite",
            "no mimedecode", "keep", "uidl") writes E(i) with CRLF kept,
            except:
            - a message whose header block is not ended by a blank line
              gets one (CRLF) appended;
            - lines longer than its 8 KiB line buffer are cut every 8192
              octets and junk bytes (a NUL, one garbage byte) plus CRLF are
              inserted: a fetchmail bug. For the long-lines message we
              compare everything before the first and after the last
              line longer than 8000 octets.
            (With the default "stripcr" it would also delete every CR,
            bare CRs inside lines included.)
  mpop      (--delivery=mda, --received-header=off) writes E(i) with every
            CRLF turned into LF; a bare CR inside a line stays.
"""

import os
import re
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import pbtest  # noqa: E402
from pbtest import (HOST, IMAP_PORT, POP3_PORT, Expected, Fetchmail, Mpop,  # noqa: E402
                    compare_deliveries, fetchmail_want, first_diff, mpop_want, run_client,
                    tail, users)

R = pbtest.Report()
USER, QUSER = "alice", "quote"
PW = QPW = ""       # their passwords (run.sh's Dovecot)
E = None            # alice's maildrop (Expected)
N = 0
FM = {}             # the fetchmail of the first run, for the second
MP = {}             # the same for mpop


# -- curl --------------------------------------------------------------------------

def curl_retr():
    probs = []
    url = "pop3://%s:%d/" % (HOST, POP3_PORT)
    for i in range(1, N + 1):
        out = os.path.join(pbtest.SCRATCH, "curl.%d" % i)
        p = run_client(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (USER, PW),
                        "-o", out, url + str(i)])
        if p.returncode != 0:
            probs.append("curl %s%d: exit %d %s" % (url, i, p.returncode, tail(p.stderr)))
            if p.returncode == 28:   # timed out: the rest would too, 60 s each
                probs.append("(stopped after curl timed out)")
                break
            continue
        with open(out, "rb") as f:
            got = f.read()
        if got != E.retr[i - 1]:
            probs.append("curl message %s: %s" % (E.label(i), first_diff(got, E.retr[i - 1])))
    return probs


def curl_list():
    p = run_client(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (USER, PW),
                    "pop3://%s:%d/" % (HOST, POP3_PORT)])
    assert p.returncode == 0, "curl exit %d %s" % (p.returncode, tail(p.stderr))
    want = b"".join(b"%d %d\r\n" % (i, E.size[i - 1]) for i in range(1, N + 1))
    assert p.stdout == want, "listing %r\nwant %r" % (p.stdout[:300], want[:300])


def curl_quote_user():
    p = run_client(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (QUSER, QPW),
                    "pop3://%s:%d/" % (HOST, POP3_PORT)])
    assert p.returncode == 0, "curl as %s: exit %d %s" % (QUSER, p.returncode, tail(p.stderr))
    assert re.fullmatch(rb"(\d+ \d+\r\n)+", p.stdout), "listing %r" % p.stdout[:200]


def curl_bad_password():
    p = run_client(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (USER, PW + "x"),
                    "pop3://%s:%d/" % (HOST, POP3_PORT)])
    # 67: CURLE_LOGIN_DENIED
    assert p.returncode == 67, "curl with a bad password: exit %d %s" % (
        p.returncode, tail(p.stderr))


# -- fetchmail ----------------------------------------------------------------------

def fetchmail_first():
    fm = FM["fm"] = Fetchmail(pbtest.SCRATCH, "fetchmail", POP3_PORT, USER, PW, timeout=60)
    mode = stat.S_IMODE(os.stat(fm.rc).st_mode)
    assert mode == 0o600, "rcfile mode %o" % mode
    run = fm.run()
    probs = []
    if run.rc != 0:
        probs.append("fetchmail exit %d: %s" % (run.rc, tail(run.output)))
    probs += compare_deliveries(E, run.new, fetchmail_want, "fetchmail")
    return probs


def fetchmail_second():
    assert FM, "the first fetchmail run did not happen"
    run = FM["fm"].run()
    # exit 1 is fetchmail's "no new mail"
    assert run.rc == 1, "second fetchmail run: exit %d (want 1, no mail): %s" % (
        run.rc, tail(run.output))
    assert not run.new, "second fetchmail run delivered %d more" % len(run.new)


# -- mpop ------------------------------------------------------------------------------

def mpop_first():
    mp = MP["mp"] = Mpop(pbtest.SCRATCH, "mpop", POP3_PORT, USER, PW)
    run = mp.run()
    probs = []
    if run.rc != 0:
        probs.append("mpop exit %d: %s" % (run.rc, tail(run.output)))
    probs += compare_deliveries(E, run.new, mpop_want, "mpop")
    return probs


def mpop_second():
    assert MP, "the first mpop run did not happen"
    run = MP["mp"].run()
    assert run.rc == 0, "second mpop run: exit %d %s" % (run.rc, tail(run.output))
    assert not run.new, "second mpop run delivered %d more" % len(run.new)


def mpop_quote_user():
    run = Mpop(pbtest.SCRATCH, "mpop-quote", POP3_PORT, QUSER, QPW).run()
    assert run.rc == 0, "mpop as %s: exit %d %s" % (QUSER, run.rc, tail(run.output))


def main():
    def body(tmp):
        global PW, QPW, E, N
        U = users()
        PW, QPW = U[USER], U[QUSER]
        try:
            E = Expected.imap(IMAP_PORT, USER, PW)
        except Exception as e:
            R.fail("read alice's corpus over IMAP", [repr(e)])
            return
        N = len(E)
        R.case("curl RETR of every message is byte-for-byte E(i)", curl_retr)
        R.case("curl listing equals LIST sizes", curl_list)
        R.case("curl as the user with space/quote/backslash password", curl_quote_user)
        R.case("curl with a bad password is refused (exit 67)", curl_bad_password)
        R.case("fetchmail (keep, uidl, MDA) delivers every message intact", fetchmail_first)
        R.case("fetchmail second run downloads nothing (UIDL)", fetchmail_second)
        R.case("mpop (keep, MDA) delivers every message intact", mpop_first)
        R.case("mpop second run downloads nothing (UIDL)", mpop_second)
        R.case("mpop as the user with space/quote/backslash password", mpop_quote_user)

    return pbtest.script_main(R, "client cases", body, own_popbridge=False)


if __name__ == "__main__":
    sys.exit(main())
