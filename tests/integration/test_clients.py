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
import subprocess

from common import (Expected, Report, HOST, POP3_PORT, TEST_TMP, compare_deliveries,
                    delivered, fetchmail_want, first_diff, mda_dir, mpop_want,
                    rc_string, users)

R = Report()
U = users()
USER, PW = "alice", U["alice"]
QUSER, QPW = "quote", U["quote"]
try:
    E = Expected(USER, PW)
except Exception as e:
    R.fail("read alice's corpus over IMAP", [repr(e)])
    R.exit()
N = len(E)
os.makedirs(TEST_TMP, exist_ok=True)
CLIENT_TIMEOUT = 120


def run(argv, timeout=CLIENT_TIMEOUT, **kw):
    """Runs a client with a hard time limit; returns CompletedProcess."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def tail(b, n=6):
    lines = b.decode("utf-8", "replace").strip().splitlines()
    return lines[-n:]


# -- curl --------------------------------------------------------------------------

def curl_retr():
    probs = []
    url = "pop3://%s:%d/" % (HOST, POP3_PORT)
    for i in range(1, N + 1):
        out = os.path.join(TEST_TMP, "curl.%d" % i)
        p = run(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (USER, PW),
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
    p = run(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (USER, PW),
             "pop3://%s:%d/" % (HOST, POP3_PORT)])
    assert p.returncode == 0, "curl exit %d %s" % (p.returncode, tail(p.stderr))
    want = b"".join(b"%d %d\r\n" % (i, E.size[i - 1]) for i in range(1, N + 1))
    assert p.stdout == want, "listing %r\nwant %r" % (p.stdout[:300], want[:300])


def curl_quote_user():
    p = run(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (QUSER, QPW),
             "pop3://%s:%d/" % (HOST, POP3_PORT)])
    assert p.returncode == 0, "curl as %s: exit %d %s" % (QUSER, p.returncode, tail(p.stderr))
    assert re.fullmatch(rb"(\d+ \d+\r\n)+", p.stdout), "listing %r" % p.stdout[:200]


def curl_bad_password():
    p = run(["curl", "-s", "-S", "--max-time", "60", "-u", "%s:%s" % (USER, PW + "x"),
             "pop3://%s:%d/" % (HOST, POP3_PORT)])
    # 67: CURLE_LOGIN_DENIED
    assert p.returncode == 67, "curl with a bad password: exit %d %s" % (
        p.returncode, tail(p.stderr))


# -- fetchmail and mpop: shared ----------------------------------------------------









# -- fetchmail ----------------------------------------------------------------------



def fetchmail_setup():
    d, script, out = mda_dir(TEST_TMP, "fetchmail")
    home = os.path.join(d, "home")
    os.makedirs(home, mode=0o700)
    rc = os.path.join(d, "fetchmailrc")
    with open(rc, "w") as f:
        f.write("set no bouncemail\n"
                "set invisible\n"          # no Received: header
                "poll %s service %d protocol pop3 uidl auth password timeout 60\n"
                "  user %s there with password %s is \"root\" here\n"
                "  keep\n"                 # leave mail on the server
                "  no rewrite\n"           # do not touch addresses in headers
                "  no mimedecode\n"
                "  no stripcr\n"           # keep CRLF as received
                "  no dropstatus\n"
                "  no dropdelivered\n"
                "  sslproto ''\n"          # no STLS attempt
                "  mda %s\n"
                % (HOST, POP3_PORT, rc_string(USER), rc_string(PW),
                   rc_string("%s %s" % (script, out))))
    os.chmod(rc, 0o600)
    return d, rc, out, home


FM = {}


def fetchmail_argv(rc, d):
    return ["fetchmail", "-f", rc, "-N", "-d0", "--nosyslog",
            "--idfile", os.path.join(d, "fetchids"), "--pidfile", os.path.join(d, "pid")]


def fetchmail_env(home):
    env = dict(os.environ)
    env["FETCHMAILHOME"] = home
    env["HOME"] = home
    return env




def fetchmail_first():
    d, rc, out, home = fetchmail_setup()
    FM.update(d=d, rc=rc, out=out, home=home)
    mode = stat.S_IMODE(os.stat(rc).st_mode)
    assert mode == 0o600, "rcfile mode %o" % mode
    p = run(fetchmail_argv(rc, d), env=fetchmail_env(home))
    with open(os.path.join(d, "run1.log"), "wb") as f:
        f.write(p.stdout + p.stderr)
    probs = []
    if p.returncode != 0:
        probs.append("fetchmail exit %d: %s" % (p.returncode, tail(p.stderr + p.stdout)))
    probs += compare_deliveries(E, delivered(out), fetchmail_want, "fetchmail")
    return probs


def fetchmail_second():
    assert FM, "the first fetchmail run did not happen"
    before = len(os.listdir(FM["out"]))
    p = run(fetchmail_argv(FM["rc"], FM["d"]), env=fetchmail_env(FM["home"]))
    after = len(os.listdir(FM["out"]))
    # exit 1 is fetchmail's "no new mail"
    assert p.returncode == 1, "second fetchmail run: exit %d (want 1, no mail): %s" % (
        p.returncode, tail(p.stderr + p.stdout))
    assert after == before, "second fetchmail run delivered %d more" % (after - before)


# -- mpop ------------------------------------------------------------------------------

MP = {}


def mpop_argv(d, script, out, user=USER, pw=PW):
    pwfile = os.path.join(d, "pw." + user)
    with open(pwfile, "w") as f:
        f.write(pw)
    os.chmod(pwfile, 0o600)
    return ["mpop", "--host=%s" % HOST, "--port=%d" % POP3_PORT,
            "--auth=user", "--user=%s" % user,
            "--passwordeval=cat %s" % pwfile,
            "--tls=off", "--timeout=60",
            "--uidls-file=%s" % os.path.join(d, "uidls." + user),
            "--delivery=mda,%s %s" % (script, out),
            "--received-header=off", "--keep=on", "--only-new=on", "-q"]


def mpop_env(d):
    env = dict(os.environ)
    env["HOME"] = d            # no ~/.mpoprc interferes
    return env




def mpop_first():
    d, script, out = mda_dir(TEST_TMP, "mpop")
    MP.update(d=d, script=script, out=out)
    p = run(mpop_argv(d, script, out), env=mpop_env(d))
    with open(os.path.join(d, "run1.log"), "wb") as f:
        f.write(p.stdout + p.stderr)
    probs = []
    if p.returncode != 0:
        probs.append("mpop exit %d: %s" % (p.returncode, tail(p.stderr + p.stdout)))
    probs += compare_deliveries(E, delivered(out), mpop_want, "mpop")
    return probs


def mpop_second():
    assert MP, "the first mpop run did not happen"
    before = len(os.listdir(MP["out"]))
    p = run(mpop_argv(MP["d"], MP["script"], MP["out"]), env=mpop_env(MP["d"]))
    after = len(os.listdir(MP["out"]))
    assert p.returncode == 0, "second mpop run: exit %d %s" % (p.returncode, tail(p.stderr))
    assert after == before, "second mpop run delivered %d more" % (after - before)


def mpop_quote_user():
    d, script, out = mda_dir(TEST_TMP, "mpop-quote")
    p = run(mpop_argv(d, script, out, QUSER, QPW), env=mpop_env(d))
    assert p.returncode == 0, "mpop as %s: exit %d %s" % (QUSER, p.returncode,
                                                          tail(p.stderr + p.stdout))


R.case("curl RETR of every message is byte-for-byte E(i)", curl_retr)
R.case("curl listing equals LIST sizes", curl_list)
R.case("curl as the user with space/quote/backslash password", curl_quote_user)
R.case("curl with a bad password is refused (exit 67)", curl_bad_password)
R.case("fetchmail (keep, uidl, MDA) delivers every message intact", fetchmail_first)
R.case("fetchmail second run downloads nothing (UIDL)", fetchmail_second)
R.case("mpop (keep, MDA) delivers every message intact", mpop_first)
R.case("mpop second run downloads nothing (UIDL)", mpop_second)
R.case("mpop as the user with space/quote/backslash password", mpop_quote_user)
R.exit()
