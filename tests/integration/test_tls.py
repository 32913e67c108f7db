#!/usr/bin/env python3
"""TLS on both sides (issue 3; SPEC §1-§3, RFC 2595, RFC 8314), for real.

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_tls.py

Self-contained, like test_faults.py: it makes a test CA and certificates
with the openssl command line (tests/lib/testca.py), starts its own private
Dovecots (tests/lib/dovecot.sh with DOVECOT_SSL_CERT/DOVECOT_SSL_KEY: imaps
plus STARTTLS on the plain port), appends the corpus (tests/lib/corpus.py)
and starts the popbridge processes it needs on free 127.0.0.1 ports:

  main      pop3 (STLS) + pop3s with a test certificate; upstream imaps
            (tls = implicit) with ca_file = the test CA. Real clients over
            TLS (curl, fetchmail, mpop, poplib), CAPA/STLS rules, the STLS
            injection cases, the 5 MB message through TLS on both sides.
  starttls  upstream tls = starttls through a recording relay.
  byname, unknownca, otherca, implicit-on-plain, stuck
            upstream variants: host name instead of IP, no ca_file, another
            CA's ca_file, implicit TLS aimed at a plain IMAP port, a peer
            that never answers the ClientHello (timeout = 3).
  badcert   upstream imaps of a second Dovecot that serves, in turn, a
            certificate for another host name and an expired one; a
            variant with verify = no; one without ca_file (unknown CA).
  nostls    upstream tls = starttls where STARTTLS is not offered: a relay
            that strips it (a MITM downgrade) and a Dovecot without TLS.
  tls10     tls_min = 1.0 (openssl s_client -tls1 / -tls1_1).
  never     allow_plaintext_auth = never.
  reload    certificate files replaced, then SIGHUP.

Every retrieved message is compared byte for byte with IMAP BODY.PEEK[]
(E(i) as in test_pop3.py / test_clients.py, after each client's known
normalisation). At the end every popbridge must still run, exit 0 on
SIGTERM, and have no sanitizer report and no secret in its debug log.

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script.
"""

import base64
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import corpus  # noqa: E402
import pbtest  # noqa: E402
import testca  # noqa: E402
from pbtest import (HOST, Client, Dovecot, Expected, Fetchmail, Mpop, Relay,  # noqa: E402
                    SilentServer, capa, compare_deliveries, fetchmail_want, first_diff,
                    is_ok, is_temp, mpop_want, need, rc_string, run_client, tail)
import imapfetch  # noqa: E402

REPLY_WAIT = 15.0           # longest wait for one POP3 reply
CLIENT_TIMEOUT = 90         # one run of curl / fetchmail / mpop
USER = "alice"
LOG_RE = r"warn|error|fail|tls|upstream|<[34]>"     # log lines shown on a failure

poplib._MAXLINE = 1 << 20   # the corpus has 65,537-octet lines


R = pbtest.Report()
CA = None           # testca.TestCA
CTX = None          # an ssl.SSLContext trusting CA
C = {}              # certificates by name (testca.Cert)
DVA = DVB = None    # the Dovecots
PW = ""             # alice's password
E = None            # Expected


def start_pb(name, upstream, pop3s=False, cert=None, key=None, tls_min=None, allow=None,
             timeout=10):
    return pbtest.Popbridge(name, upstream=dict(upstream, timeout=timeout), pop3s=pop3s,
                            cert=cert, key=key,
                            listen={"tls_min": tls_min, "allow_plaintext_auth": allow}).start()


def log_tail(pb, off=0, n=8):
    return ["log: " + ln for ln in pb.tail(n, off, re.compile(LOG_RE, re.I))]


def clear_part(c2s):
    """What popbridge sent upstream before a TLS handshake began (a record
    starting 0x16 0x03 right after a line end), and whether one began."""
    m = re.search(rb"(?:^|\n)\x16\x03", c2s)
    if not m:
        return c2s, False
    return c2s[:m.start() + (1 if c2s[m.start():m.start() + 1] == b"\n" else 0)], True


CRED_RX = re.compile(rb"(?im)^\S+ (LOGIN|AUTHENTICATE)\b")


def P3(port, tls=False, timeout=REPLY_WAIT):
    """A POP3 client, over implicit TLS (trusting the test CA) with tls."""
    return Client(port, tls=CTX if tls else None, timeout=timeout)


def login(p, user=USER, pw=None):
    r = p.login(user, pw or PW)
    need(is_ok(r), "login as %s -> %r" % (user, r))


def retr_exact(p, i):
    """RETR i: the wire bytes must be dotstuff(E(i)) + '.CRLF'."""
    r = p.cmd("RETR %d" % i)
    if not is_ok(r):
        return ["RETR %s -> %r" % (E.label(i), r)]
    raw, data, probs = p.multi()
    want = imapfetch.dotstuff(E.retr[i - 1])
    out = ["RETR %s: %s" % (E.label(i), x) for x in probs]
    if raw != want:
        out.append("RETR %s on the wire: %s" % (E.label(i), first_diff(raw, want)))
    return out


# -- upstream cases ---------------------------------------------------------------------

def dovecot_tls_logins(dv, off, secs=3.0):
    """Dovecot's login lines for alice since off (waits up to secs for one)."""
    deadline = time.time() + secs
    while True:
        lines = [ln for ln in dv.log_text(off).splitlines()
                 if "Login: user=<%s>" % USER in ln]
        if lines or time.time() >= deadline:
            return lines
        time.sleep(0.1)


def upstream_works(pb, dv, want_tls_login=True):
    """USER/PASS, STAT, RETR 1 and 2 byte-exact, QUIT through pb; Dovecot
    logs the login as made over TLS."""
    doff = dv.log_offset()
    off = pb.offset()
    probs = []
    p = P3(pb.port)
    try:
        r = p.login(USER, PW)
        if not is_ok(r):
            return ["PASS -> %r" % r] + log_tail(pb, off)
        r = p.cmd("STAT")
        want = b"+OK %d %d\r\n" % (len(E), sum(E.size))
        if dv is DVA and r != want:
            probs.append("STAT -> %r, want %r" % (r, want))
        for i in (1, 2):
            probs += retr_exact(p, i)
        r = p.cmd("QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %r" % r)
    finally:
        p.close()
    if want_tls_login:
        logins = dovecot_tls_logins(dv, doff)
        if not logins:
            probs.append("Dovecot logged no login for %s" % USER)
        elif not all(re.search(r"\bTLS\b", ln) for ln in logins):
            probs.append("Dovecot logged a login without TLS: %s" % logins[-1])
    return probs


def upstream_refused(pb, dv, reason_rx):
    """PASS gets -ERR [SYS/TEMP] ... wait; popbridge's log names the
    reason; Dovecot saw no login."""
    doff = dv.log_offset()
    off = pb.offset()
    probs = []
    p = P3(pb.port)
    try:
        r = p.login(USER, PW)
        if not is_temp(r):
            probs.append("PASS -> %r, want -ERR [SYS/TEMP] ... wait ..." % r)
        r = p.cmd("QUIT")
        if not is_ok(r):
            probs.append("QUIT after the refused login -> %r" % r)
    finally:
        p.close()
    ln = pb.wait_line(reason_rx, off)
    if ln is None:
        probs.append("popbridge's log has no line matching /%s/" % reason_rx)
        probs += log_tail(pb, off)
    logins = [x for x in dv.log_text(doff).splitlines()
              if "user=<%s>" % USER in x]
    if logins:
        probs.append("Dovecot saw a login attempt: %s" % logins[-1])
    return probs


def strip_relay_case(pb, relay):
    """tls = starttls, STARTTLS not offered: refused, credentials never sent."""
    n0 = len(relay.records())
    probs = upstream_refused(pb, DVA if relay.target == DVA.port else DVB,
                             r"STARTTLS")
    recs = relay.records()[n0:]
    if not recs:
        return probs + ["popbridge never connected through the relay"]
    for rec in recs:
        clear, tls = clear_part(rec["c2s"])
        if CRED_RX.search(clear):
            probs.append("credentials went upstream in clear: %r" % clear[:300])
        if tls:
            probs.append("popbridge started TLS although STARTTLS was not offered")
        if b"STARTTLS" in rec["s2c"] and relay.strip is None:
            probs.append("the upstream offered STARTTLS after all: %r" % rec["s2c"][:200])
    if not [ln for ln in pb.text().splitlines() if re.search(r"does not offer STARTTLS", ln)]:
        probs.append("the log does not say the upstream lacks STARTTLS")
    return probs


def starttls_case(pb, relay):
    n0 = len(relay.records())
    probs = upstream_works(pb, DVA)
    recs = relay.records()[n0:]
    if not recs:
        return probs + ["popbridge never connected through the relay"]
    for rec in recs:
        clear, tls = clear_part(rec["c2s"])
        if not re.search(rb"(?m)^\S+ STARTTLS\r\n", clear):
            probs.append("no STARTTLS command in the clear part: %r" % clear[:200])
        if not tls:
            probs.append("no TLS handshake followed STARTTLS: %r" % rec["c2s"][:200])
        if CRED_RX.search(clear):
            probs.append("credentials went upstream in clear: %r" % clear[:300])
    return probs


def upstream_stuck(pb, limit):
    """The upstream accepts TCP but never answers the ClientHello:
    -ERR [SYS/TEMP] after [upstream] timeout, not a hang."""
    off = pb.offset()
    p = P3(pb.port, timeout=limit + 10)
    try:
        t0 = time.time()
        r = p.login(USER, PW)
        dt = time.time() - t0
        need(is_temp(r), "PASS -> %r after %.1fs, want -ERR [SYS/TEMP] ... wait" % (r, dt))
        need(dt <= limit + 3, "the refusal took %.1fs ([upstream] timeout = %d)" % (dt, limit))
        r = p.cmd("QUIT")
        need(is_ok(r), "QUIT -> %r" % r)
    finally:
        p.close()
    need(pb.wait_line(r"upstream unavailable|upstream failed", off, 3),
         "nothing logged about the stuck upstream: %s" % log_tail(pb, off))


def pop3s_plaintext_client(pb):
    """A client speaking plain POP3 to the pop3s port: the greeting must never
    appear in clear, and the connection is closed."""
    s = socket.create_connection((HOST, pb.sport), timeout=5)
    got = b""
    closed = False
    try:
        s.sendall(b"CAPA\r\nUSER alice\r\n")
        deadline = time.time() + 8
        while time.time() < deadline:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    need(b"+OK" not in got and b"-ERR" not in got and b"USER" not in got,
         "POP3 text in clear on the pop3s port: %r" % got[:200])
    need(closed, "the connection stayed open 8 s after plaintext on pop3s")
    need(pb.alive(), "popbridge died")


def verify_no_warned(pb):
    text = pb.text()
    lines = text.splitlines()
    started = [k for k, ln in enumerate(lines) if " started; upstream " in ln]
    warn = [k for k, ln in enumerate(lines)
            if re.search(r"verify\s*=\s*no", ln) and (ln.startswith("<4>") or "warn" in ln.lower())]
    need(warn, "no start-up warning about verify = no: %s" % lines[:8])
    need(started and warn[0] < started[0],
         "the verify = no warning is not logged at start-up (before 'started'): %s"
         % lines[:8])


# -- downstream: real clients ---------------------------------------------------------

def curl_all(scheme, port, extra):
    probs = []
    url = "%s://%s:%d/" % (scheme, HOST, port)
    d = os.path.join(pbtest.SCRATCH, "curl-" + scheme)
    os.makedirs(d, exist_ok=True)
    for i in range(1, len(E) + 1):
        out = os.path.join(d, "%d.eml" % i)
        p = run_client(["curl", "-s", "-S", "--max-time", "60", "--cacert", CA.cert,
                        "-u", "%s:%s" % (USER, PW), "-o", out] + extra + [url + str(i)],
                       CLIENT_TIMEOUT)
        if p.returncode != 0:
            probs.append("curl %s%d: exit %d %s" % (url, i, p.returncode, tail(p.stderr)))
            if p.returncode in (28, 35, 60):   # timeout / TLS: the rest would too
                break
            continue
        with open(out, "rb") as f:
            got = f.read()
        if got != E.retr[i - 1]:
            probs.append("curl message %s: %s" % (E.label(i), first_diff(got, E.retr[i - 1])))
    return probs


def curl_without_ca(port):
    """curl pop3s:// trusting only another CA refuses the certificate (exit
    60, CURLE_PEER_FAILED_VERIFICATION): the check above is not vacuous."""
    p = run_client(["curl", "-s", "-S", "--max-time", "30", "--cacert", C["other-ca"].cert,
                    "-u", "%s:%s" % (USER, PW), "pop3s://%s:%d/" % (HOST, port)], CLIENT_TIMEOUT)
    need(p.returncode == 60, "curl trusting another CA: exit %d (want 60) %s" % (
        p.returncode, tail(p.stderr)))














def fetchmail_case(port, tls_lines, name):
    # fetchmail matches the certificate against the name it connects to
    # (CN or DNS names only, never an IP address SAN; with "via" the via
    # name): so "localhost"
    fm = Fetchmail(pbtest.SCRATCH, name, port, USER, PW, host="localhost", timeout=60,
                   verbose=True, run_timeout=CLIENT_TIMEOUT,
                   options=tls_lines + "  sslcertck\n  sslcertfile %s\n" % rc_string(CA.cert))
    run = fm.run()
    probs = []
    if run.rc != 0:
        probs.append("fetchmail exit %d: %s" % (run.rc, tail(run.output, 8)))
    text = run.output.decode("utf-8", "replace")
    if not re.search(r"(?i)(SSL|TLS)", text):
        probs.append("fetchmail's verbose log does not mention TLS at all")
    probs += compare_deliveries(E, run.new, fetchmail_want, "fetchmail")
    return probs, text


def fetchmail_pop3s(port):
    probs, _ = fetchmail_case(port, "  ssl\n", "fetchmail-pop3s")
    return probs


def fetchmail_stls(port):
    probs, text = fetchmail_case(port, "  sslproto 'tls1.2+'\n", "fetchmail-stls")
    if "STLS" not in text:
        probs.append("fetchmail's verbose log shows no STLS command")
    return probs


def mpop_case(port, starttls, name):
    mp = Mpop(pbtest.SCRATCH, name, port, USER, PW, run_timeout=CLIENT_TIMEOUT,
              tls=["--tls=on", "--tls-starttls=%s" % ("on" if starttls else "off"),
                   "--tls-trust-file=%s" % CA.cert, "--tls-certcheck=on"])
    run = mp.run()
    probs = []
    if run.rc != 0:
        probs.append("mpop exit %d: %s" % (run.rc, tail(run.output)))
    probs += compare_deliveries(E, run.new, mpop_want, "mpop")
    return probs


def poplib_check(p, who):
    probs = []
    p.user(USER)
    r = p.pass_(PW)
    if not r.startswith(b"+OK"):
        return ["%s: PASS -> %r" % (who, r)]
    n, _ = p.stat()
    if n != len(E):
        probs.append("%s: STAT says %d messages, want %d" % (who, n, len(E)))
    for i in range(1, len(E) + 1):
        _, lines, octets = p.retr(i)
        got = b"\r\n".join(lines) + b"\r\n"
        if got != E.retr[i - 1]:
            probs.append("%s message %s: %s" % (who, E.label(i), first_diff(got, E.retr[i - 1])))
        elif octets != len(E.retr[i - 1]):
            probs.append("%s message %s: %d octets, want %d" % (who, E.label(i), octets,
                                                               len(E.retr[i - 1])))
    p.quit()
    return probs


def poplib_pop3s(port):
    p = poplib.POP3_SSL(HOST, port, context=CTX, timeout=60)
    return poplib_check(p, "POP3_SSL")


def poplib_stls(port):
    p = poplib.POP3(HOST, port, timeout=60)
    p.stls(context=CTX)
    need(isinstance(p.sock, ssl.SSLSocket), "poplib.stls() left the socket plain")
    return poplib_check(p, "POP3.stls()")


# -- downstream: CAPA, STLS, plaintext rules --------------------------------------

def capa_plain_offers_stls(pb):
    p = P3(pb.port)
    try:
        caps, body = capa(p)
        need("STLS" in caps, "CAPA before TLS lacks STLS: %r" % body)
        need("USER" in caps and "PLAIN" in caps.get("SASL", []),
             "CAPA from loopback (allow_plaintext_auth = loopback) lacks USER or "
             "SASL PLAIN: %r" % body)
    finally:
        p.close()


def capa_after_stls(pb):
    p = P3(pb.port)
    try:
        r = p.stls(CTX)
        need(is_ok(r), "STLS -> %r" % r)
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA after STLS still offers STLS: %r" % body)
        need("USER" in caps and "PLAIN" in caps.get("SASL", []),
             "CAPA after STLS lacks USER or SASL PLAIN: %r" % body)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "a second STLS -> %r, want -ERR" % r)
        login(p)
        need(is_ok(p.cmd("STAT")), "STAT after STLS + login failed")
        p.cmd("QUIT")
    finally:
        p.close()


def capa_pop3s(pb):
    p = P3(pb.sport, tls=True)
    try:
        need(p.greeting.startswith(b"+OK"), "pop3s greeting %r" % p.greeting)
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA on pop3s offers STLS: %r" % body)
        need("USER" in caps and "PLAIN" in caps.get("SASL", []),
             "CAPA on pop3s lacks USER or SASL PLAIN: %r" % body)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "STLS on pop3s -> %r, want -ERR" % r)
        login(p)
        p.cmd("QUIT")
    finally:
        p.close()


def pop3s_fingerprint(pb, cert):
    p = P3(pb.sport, tls=True)
    try:
        fp = p.fingerprint()
        need(fp == cert.fingerprint(), "pop3s presents %s, want %s (%s)" % (
            fp, cert.fingerprint(), cert.name))
    finally:
        p.close()


def stls_in_transaction(pb):
    p = P3(pb.port)
    try:
        login(p)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "STLS in TRANSACTION -> %r, want -ERR" % r)
        need(is_ok(p.cmd("NOOP")), "the session does not go on after the refused STLS")
        p.cmd("QUIT")
    finally:
        p.close()


def no_stls_without_cert(pb):
    p = P3(pb.port)
    try:
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA without cert/key offers STLS: %r" % body)
        r = p.cmd("STLS")
        need(r.startswith(b"-ERR"), "STLS without cert/key -> %r, want -ERR" % r)
        p.cmd("QUIT")
    finally:
        p.close()


def stls_injection_capa(pb):
    """'STLS\\r\\nCAPA\\r\\n' in one write: the CAPA sent in clear must not
    be answered, neither in clear nor inside TLS."""
    p = P3(pb.port)
    try:
        p.send(b"STLS\r\nCAPA\r\n")
        r = p.line()
        need(is_ok(r), "STLS -> %r" % r)
        time.sleep(0.3)
        extra = p.quiet(0.7)
        need(not extra, "after STLS's +OK the server sent in clear: %r" % extra[:200])
        try:
            p.sock = CTX.wrap_socket(p.sock, server_hostname=HOST)
        except ssl.SSLError as e:
            raise AssertionError("TLS handshake after the injected STLS failed: %s" % e)
        got = p.quiet(1.5)
        need(not got, "inside TLS, unasked, the server sent %r: the CAPA injected in "
             "clear was answered (CVE-2011-0411 class)" % got[:300])
        caps, body = capa(p)
        need("STLS" not in caps, "CAPA inside TLS offers STLS: %r" % body)
        got = p.quiet(0.7)
        need(not got, "after one CAPA inside TLS a second answer followed: %r" % got[:300])
        p.cmd("QUIT")
    finally:
        p.close()


def stls_injection_user(pb):
    """USER before STLS is forgotten: PASS after STLS gets -ERR."""
    p = P3(pb.port)
    try:
        r = p.cmd("USER " + USER)
        need(is_ok(r), "USER in clear from loopback -> %r (allow_plaintext_auth = "
             "loopback should accept it)" % r)
        r = p.stls(CTX)
        need(is_ok(r), "STLS -> %r" % r)
        r = p.cmd("PASS " + PW)
        need(r.startswith(b"-ERR"), "PASS after STLS (USER given before STLS) -> %r, "
             "want -ERR: the USER was not forgotten" % r)
        r = p.login(USER, PW)
        need(is_ok(r), "USER/PASS after that -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()


def stls_injection_user_pipelined(pb):
    """'STLS\\r\\nUSER alice\\r\\n' in one write, then TLS and PASS: the
    injected USER must not count."""
    p = P3(pb.port)
    try:
        p.send(b"STLS\r\nUSER " + USER.encode() + b"\r\n")
        r = p.line()
        need(is_ok(r), "STLS -> %r" % r)
        extra = p.quiet(0.7)
        need(not extra, "after STLS's +OK the server sent in clear: %r" % extra[:200])
        p.sock = CTX.wrap_socket(p.sock, server_hostname=HOST)
        got = p.quiet(1.0)
        need(not got, "inside TLS, unasked, the server sent %r" % got[:200])
        r = p.cmd("PASS " + PW)
        need(r.startswith(b"-ERR"), "PASS after an injected USER -> %r, want -ERR" % r)
        p.cmd("QUIT")
    finally:
        p.close()


def never_before_tls(pb):
    probs = []
    p = P3(pb.port)
    try:
        caps, body = capa(p)
        if "STLS" not in caps:
            probs.append("CAPA lacks STLS: %r" % body)
        if "USER" in caps:
            probs.append("CAPA offers USER before TLS with allow_plaintext_auth = never")
        if "PLAIN" in caps.get("SASL", []):
            probs.append("CAPA offers SASL PLAIN before TLS with allow_plaintext_auth = never")
        r = p.cmd("USER " + USER)
        if not (r.startswith(b"-ERR") and re.search(rb"STLS|TLS", r)):
            probs.append("USER before TLS -> %r, want -ERR naming STLS" % r)
        r = p.cmd("PASS " + PW)
        if not r.startswith(b"-ERR"):
            probs.append("PASS before TLS -> %r, want -ERR" % r)
        tok = base64.b64encode(b"\0" + USER.encode() + b"\0" + PW.encode())
        r = p.cmd(b"AUTH PLAIN " + tok)
        if not (r.startswith(b"-ERR") and re.search(rb"STLS|TLS", r)):
            probs.append("AUTH PLAIN (initial response) before TLS -> %r, want -ERR naming STLS" % r)
        r = p.cmd("AUTH PLAIN")
        if not r.startswith(b"-ERR"):
            probs.append("AUTH PLAIN (no initial response) before TLS -> %r, want -ERR "
                         "(the client must not be asked for credentials)" % r)
            if r.startswith(b"+"):
                p.cmd("*")
        r = p.cmd("AUTH")
        if is_ok(r):
            _, body, _ = p.multi()
            if b"PLAIN" in body:
                probs.append("bare AUTH lists PLAIN before TLS: %r" % body)
        r = p.cmd("STAT")
        if not r.startswith(b"-ERR"):
            probs.append("STAT before login -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    return probs


def never_after_stls(pb):
    probs = []
    p = P3(pb.port)
    try:
        r = p.stls(CTX)
        need(is_ok(r), "STLS -> %r" % r)
        caps, body = capa(p)
        if "USER" not in caps or "PLAIN" not in caps.get("SASL", []):
            probs.append("CAPA after STLS lacks USER or SASL PLAIN: %r" % body)
        r = p.login(USER, PW)
        if not is_ok(r):
            probs.append("USER/PASS after STLS -> %r" % r)
        else:
            probs += retr_exact(p, 1)
        p.cmd("QUIT")
    finally:
        p.close()
    p = P3(pb.port)
    try:
        p.stls(CTX)
        r = p.auth_plain(USER, PW)
        if not is_ok(r):
            probs.append("AUTH PLAIN after STLS -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    p = P3(pb.sport, tls=True)
    try:
        r = p.login(USER, PW)
        if not is_ok(r):
            probs.append("USER/PASS on pop3s -> %r" % r)
        p.cmd("QUIT")
    finally:
        p.close()
    return probs


# -- tls_min ------------------------------------------------------------------------------

def s_client(port, version):
    """(greeted, protocol, output) of openssl s_client -VERSION on pop3s."""
    argv = ["openssl", "s_client", "-connect", "%s:%d" % (HOST, port), version,
            "-CAfile", CA.cert, "-verify_return_error", "-ign_eof"]
    if version in ("-tls1", "-tls1_1"):
        argv += ["-cipher", "DEFAULT@SECLEVEL=0"]
    try:
        p = subprocess.run(argv, input=b"QUIT\r\n", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
    except subprocess.TimeoutExpired:
        return False, None, "s_client timed out"
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    greeted = bool(re.search(r"(?m)^\+OK", p.stdout.decode("latin-1")))
    m = re.search(r"Protocol\s*:\s*(\S+)", out)
    return greeted, (m.group(1) if m else None), out


def old_tls_accepted(pb, version, proto):
    greeted, got, out = s_client(pb.sport, version)
    lines = [ln for ln in out.splitlines() if re.search(r"error|alert|Protocol|Cipher|\+OK", ln)]
    need(greeted, "openssl s_client %s against tls_min = 1.0: no greeting; %s" % (version, lines[:6]))
    need(got == proto, "negotiated %s, want %s" % (got, proto))


def old_tls_refused(pb, version):
    off = pb.offset()
    greeted, got, out = s_client(pb.sport, version)
    lines = [ln for ln in out.splitlines() if re.search(r"error|alert|Protocol|\+OK", ln)]
    need(not greeted, "openssl s_client %s got a greeting from the default tls_min = 1.2 "
         "listener: %s" % (version, lines[:6]))
    ln = pb.wait_line(r"TLS handshake failed|unsupported protocol|version", off, 3)
    need(ln is not None, "popbridge logged nothing about the refused handshake: %s"
         % log_tail(pb, off))


def tls_min_warned(pb):
    """tls_min below 1.2 lowers OpenSSL's security level: said at start."""
    text = pb.text()
    need(re.search(r"tls_min = 1\.0: TLS 1\.0 and 1\.1 are broken", text),
         "no warning about tls_min = 1.0 at start: %s" % log_tail(pb))


def untrusted_cert_hint(pb):
    """A client that does not trust our certificate aborts the handshake:
    the log says so with a hint, and the session sent nothing it could
    read (bytes_out=0)."""
    off = pb.offset()
    ctx = ssl.create_default_context()          # the system store: not our CA
    raw = socket.create_connection((HOST, pb.sport), timeout=10)
    try:
        ctx.wrap_socket(raw, server_hostname="localhost")
        need(False, "the handshake succeeded without trusting our CA")
    except ssl.SSLError:
        pass
    finally:
        raw.close()
    ln = pb.wait_line(r"refused our certificate.*install one it trusts", off, 5)
    need(ln is not None, "no hint about the refused certificate: %s" % log_tail(pb, off))
    end = pb.wait_line(r" end client=.*TLS handshake failed", off, 5)
    need(end is not None and " bytes_out=0 " in end,
         "end line should say bytes_out=0: %r" % end)


# -- reload ---------------------------------------------------------------------------------

def replace_file(src, dst):
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dst)


def reload_case(pb, old, new):
    probs = []
    old_s = P3(pb.sport, tls=True)
    try:
        fp = old_s.fingerprint()
        need(fp == old.fingerprint(), "before SIGHUP: %s, want %s" % (fp, old.fingerprint()))
        login(old_s)
        replace_file(new.chain, pb.cert)
        replace_file(new.key, pb.key)
        off = pb.offset()
        pb.proc.send_signal(signal.SIGHUP)
        ln = pb.wait_line(r"reloaded|reload", off, 5)
        need(ln is not None and "fail" not in ln.lower(),
             "no 'configuration reloaded' line after SIGHUP: %s" % log_tail(pb, off))
        n = P3(pb.sport, tls=True)
        try:
            fp = n.fingerprint()
            if fp != new.fingerprint():
                probs.append("a new pop3s connection after SIGHUP presents %s, want the new "
                             "certificate %s (serial %s)" % (fp, new.fingerprint(), new.serial))
            peer = n.sock.getpeercert()
            subj = dict(x[0] for x in peer.get("subject", ()))
            if subj.get("commonName") != "popbridge-reloaded":
                probs.append("new certificate's CN is %r" % subj.get("commonName"))
            login(n)
            probs += retr_exact(n, 1)
            n.cmd("QUIT")
        finally:
            n.close()
        s = P3(pb.port)
        try:
            need(is_ok(s.stls(CTX)), "STLS after reload failed")
            if s.fingerprint() != new.fingerprint():
                probs.append("STLS after SIGHUP presents %s, want %s" % (s.fingerprint(),
                                                                        new.fingerprint()))
            s.cmd("QUIT")
        finally:
            s.close()
        # The session opened before the reload goes on over its old TLS.
        r = old_s.cmd("STAT")
        if not is_ok(r):
            probs.append("the session opened before SIGHUP: STAT -> %r" % r)
        probs += ["session opened before SIGHUP: " + x for x in retr_exact(old_s, 2)]
        r = old_s.cmd("QUIT")
        if not is_ok(r):
            probs.append("the session opened before SIGHUP: QUIT -> %r" % r)
    finally:
        old_s.close()
    return probs


def bad_reload_case(pb, current, other):
    """A key that does not match the certificate: the reload is refused,
    the log says why, and new connections keep the current certificate."""
    replace_file(other.key, pb.key)
    off = pb.offset()
    pb.proc.send_signal(signal.SIGHUP)
    ln = pb.wait_line(r"reload failed|keeping the old", off, 5)
    probs = []
    if ln is None:
        probs.append("no 'reload failed' line after SIGHUP with a mismatched key: %s"
                     % log_tail(pb, off))
    if not pb.alive():
        return probs + ["popbridge died on the bad reload"]
    p = P3(pb.sport, tls=True)
    try:
        if p.fingerprint() != current.fingerprint():
            probs.append("after the refused reload pop3s presents %s, want %s" % (
                p.fingerprint(), current.fingerprint()))
        login(p)
        p.cmd("QUIT")
    finally:
        p.close()
    return probs


# -- large message -------------------------------------------------------------------------

def big_over_tls(pb):
    i = E.index("big-attachment")
    need(len(E.retr[i - 1]) > 5_000_000, "the big message has only %d octets" % len(E.retr[i - 1]))
    p = P3(pb.sport, tls=True, timeout=60)
    try:
        login(p)
        t0 = time.time()
        probs = retr_exact(p, i)
        dt = time.time() - t0
        r = p.cmd("QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %r" % r)
        if probs:
            probs.append("(RETR took %.1fs)" % dt)
        return probs
    finally:
        p.close()


# -- the end ---------------------------------------------------------------------------------

def finish():
    pbtest.final_checks(
        R, pbtest.popbridges(),
        running="every popbridge is still running after the TLS cases",
        sigterm="every popbridge exits 0 on SIGTERM",
        sanitizer="no sanitizer reports in popbridge's logs",
        leaks="no passwords or AUTH tokens in popbridge's debug logs",
        secrets=[PW.encode(), base64.b64encode(b"\0" + USER.encode() + b"\0" + PW.encode())])


# -- setup and the case list ------------------------------------------------------------

def make_certs():
    global CA, CTX
    d = os.path.join(pbtest.SCRATCH, "pki")
    CA = testca.TestCA(d)
    C["dovecot"] = CA.issue("dovecot", cn="localhost", san="IP:127.0.0.1,DNS:localhost")
    C["wronghost"] = CA.issue("wronghost", cn="wrong.example", san="DNS:wrong.example")
    C["expired"] = CA.issue("expired", cn="localhost", san="IP:127.0.0.1,DNS:localhost",
                            not_before="20200101000000Z", not_after="20200201000000Z")
    C["pop3"] = CA.issue("pop3", cn="popbridge-test", san="IP:127.0.0.1,DNS:localhost")
    C["reloaded"] = CA.issue("reloaded", cn="popbridge-reloaded",
                             san="IP:127.0.0.1,DNS:localhost", key_type="rsa", serial=0xBEEF)
    # a second, unrelated CA: its server certificate is unknown to ours
    other = testca.TestCA(os.path.join(pbtest.SCRATCH, "pki-other"), cn="Some Other CA")
    C["other-ca"] = other
    CTX = ssl.create_default_context(cafile=CA.cert)


def leaf(cert):
    """(certificate, key) for Dovecot: the leaf alone, as many servers send
    it: an unknown CA then shows as "unable to get local issuer
    certificate" (with the CA in the chain OpenSSL says "self-signed
    certificate in certificate chain")."""
    return (cert.cert, cert.key) if cert is not None else None


def cases():
    global E, PW, DVA, DVB
    # -- Dovecot A (imaps + STARTTLS with the good certificate) and the corpus
    DVA = Dovecot(os.path.join(pbtest.SCRATCH, "dovecot-a"), ssl=leaf(C["dovecot"])).start()
    PW = DVA.password(USER)
    DVA.append(USER, corpus.messages())
    E = Expected.imap(DVA.port, USER, PW, sections=("",))
    pbtest.note("dovecot A: imap %d imaps %d; %d messages for %s" % (
        DVA.port, DVA.imaps_port, len(E), USER))
    ca_file = CA.cert
    imaps_a = {"host": HOST, "port": DVA.imaps_port, "tls": "implicit",
               "ca_file": ca_file}

    # ---- upstream -----------------------------------------------------------------
    main = start_pb("main", upstream=imaps_a, pop3s=True, cert=C["pop3"].chain,
                    key=C["pop3"].key)
    R.case("upstream tls = implicit, good certificate: login, STAT, RETR byte-exact "
           "(Dovecot logs a TLS login)", upstream_works, main, DVA)
    imaps_a_name = dict(imaps_a, host="localhost")
    by_name = start_pb("byname", upstream=imaps_a_name)
    R.case("upstream tls = implicit by host name (localhost, DNS SAN): login and RETR",
           upstream_works, by_name, DVA)

    relay = Relay(DVA.port)
    stls_up = start_pb("starttls", upstream={"host": HOST, "port": relay.port,
                                              "tls": "starttls", "ca_file": ca_file})
    R.case("upstream tls = starttls: STARTTLS before any credentials, login and RETR work",
           starttls_case, stls_up, relay)

    strip = Relay(DVA.port, strip=b" STARTTLS")
    stripped = start_pb("stripped", upstream={"host": HOST, "port": strip.port,
                                               "tls": "starttls", "ca_file": ca_file})
    R.case("upstream tls = starttls, STARTTLS stripped by a man in the middle: "
           "-ERR [SYS/TEMP], no credentials in clear", strip_relay_case, stripped, strip)

    unknown = start_pb("unknownca", upstream=dict(imaps_a, ca_file=""))
    R.case("upstream certificate from an unknown CA (no ca_file: system store) is refused: "
           "'unable to get local issuer certificate'", upstream_refused, unknown, DVA,
           r"TLS.*unable to get local issuer certificate")
    other = start_pb("otherca", upstream=dict(imaps_a, ca_file=C["other-ca"].cert))
    R.case("upstream certificate not signed by the configured ca_file is refused",
           upstream_refused, other, DVA,
           r"TLS.*unable to get local issuer certificate")

    plain_as_tls = start_pb("implicit-on-plain", upstream=dict(imaps_a, port=DVA.port))
    R.case("upstream tls = implicit against a plain IMAP port: -ERR [SYS/TEMP], the TLS "
           "error is logged", upstream_refused, plain_as_tls, DVA, r"TLS with upstream .* failed")
    silent = SilentServer()
    stuck = start_pb("stuck", upstream=dict(imaps_a, port=silent.port), timeout=3)
    R.case("upstream that never answers the TLS handshake: -ERR [SYS/TEMP] within the "
           "timeout", upstream_stuck, stuck, 3)

    # -- Dovecot B: a certificate for another host name, then an expired one
    DVB = Dovecot(os.path.join(pbtest.SCRATCH, "dovecot-b"), ssl=leaf(C["wronghost"])).start()
    need(DVB.password(USER) == PW, "the two Dovecots have different passwords for alice")
    DVB.append(USER, [m for m in corpus.messages() if m[0] in ("plain", "dot-lines")])
    imaps_b = {"host": "localhost", "port": DVB.imaps_port, "tls": "implicit",
               "ca_file": ca_file}
    wh_name = start_pb("wronghost-name", upstream=imaps_b)
    R.case("upstream certificate for another host name is refused: 'hostname mismatch', "
           "-ERR [SYS/TEMP]", upstream_refused, wh_name, DVB, r"TLS.*hostname mismatch")
    wh_ip = start_pb("wronghost-ip", upstream=dict(imaps_b, host=HOST))
    R.case("upstream certificate without the configured IP address is refused "
           "('IP address mismatch'), -ERR [SYS/TEMP]", upstream_refused, wh_ip, DVB,
           r"TLS.*(IP address mismatch|hostname mismatch)")
    vno = start_pb("verify-no", upstream=dict(imaps_b, verify="no"))
    R.case("verify = no: a warning at start-up", verify_no_warned, vno)

    def vno_works():
        probs = []
        p = P3(vno.port)
        try:
            r = p.login(USER, PW)
            if not is_ok(r):
                return ["PASS -> %r" % r] + log_tail(vno)
            r = p.cmd("RETR 1")
            if not is_ok(r):
                probs.append("RETR 1 -> %r" % r)
            else:
                p.multi()
            p.cmd("QUIT")
        finally:
            p.close()
        return probs
    R.case("verify = no accepts the wrong-host certificate: login and RETR work", vno_works)

    DVB.stop()
    DVB.ssl = leaf(C["expired"])
    DVB.start()
    R.case("upstream certificate that has expired is refused: 'certificate has expired', "
           "-ERR [SYS/TEMP]", upstream_refused, wh_ip, DVB, r"TLS.*certificate has expired")

    # -- Dovecot B without TLS: STARTTLS is not in its capabilities at all
    DVB.stop()
    DVB.ssl = None
    DVB.start()
    relay_b = Relay(DVB.port)
    nostls = start_pb("nostls", upstream={"host": HOST, "port": relay_b.port,
                                           "tls": "starttls", "ca_file": ca_file})
    R.case("upstream tls = starttls against a Dovecot without STARTTLS: -ERR [SYS/TEMP], "
           "no credentials in clear", strip_relay_case, nostls, relay_b)
    DVB.stop()

    # ---- downstream ---------------------------------------------------------------------
    R.case("pop3s presents the configured certificate", pop3s_fingerprint, main, C["pop3"])
    R.case("pop3s: a client that does not trust the certificate is logged with a hint, "
           "bytes_out=0", untrusted_cert_hint, main)
    R.case("pop3s: a plaintext client never sees the greeting in clear and is closed",
           pop3s_plaintext_client, main)
    R.case("CAPA before TLS lists STLS (and USER, SASL PLAIN from loopback)",
           capa_plain_offers_stls, main)
    R.case("CAPA after STLS: no STLS, USER and SASL PLAIN; a second STLS -> -ERR; login works",
           capa_after_stls, main)
    R.case("CAPA on pop3s: no STLS; STLS on pop3s -> -ERR; login works", capa_pop3s, main)
    R.case("STLS in TRANSACTION -> -ERR, the session goes on", stls_in_transaction, main)
    R.case("without cert/key: CAPA has no STLS and STLS -> -ERR", no_stls_without_cert, stls_up)
    R.case("STLS injection: 'STLS\\r\\nCAPA\\r\\n' in one write, the clear CAPA is never "
           "answered", stls_injection_capa, main)
    R.case("STLS injection: USER before STLS is forgotten, PASS after STLS -> -ERR",
           stls_injection_user, main)
    R.case("STLS injection: 'STLS\\r\\nUSER alice\\r\\n' in one write, PASS after TLS -> -ERR",
           stls_injection_user_pipelined, main)

    never = start_pb("never", upstream=imaps_a, pop3s=True, cert=C["pop3"].chain,
                     key=C["pop3"].key, allow="never")
    R.case("allow_plaintext_auth = never: before TLS CAPA hides USER/SASL PLAIN, "
           "USER/PASS/AUTH -> -ERR naming STLS", never_before_tls, never)
    R.case("allow_plaintext_auth = never: after STLS (and on pop3s) USER/PASS and AUTH PLAIN work",
           never_after_stls, never)

    R.case("large message (5 MB) via pop3s with imaps upstream is byte-exact", big_over_tls, main)

    R.case("curl pop3s:// --cacert: every message byte-for-byte", curl_all, "pop3s",
           main.sport, [])
    R.case("curl --ssl-reqd pop3:// (STLS): every message byte-for-byte", curl_all, "pop3",
           main.port, ["--ssl-reqd"])
    R.case("curl pop3s:// trusting another CA refuses the certificate (exit 60)", curl_without_ca, main.sport)
    R.case("fetchmail ssl (pop3s), sslcertck + sslcertfile: every message intact",
           fetchmail_pop3s, main.sport)
    R.case("fetchmail sslproto tls1.2+ (STLS), sslcertck + sslcertfile: every message intact",
           fetchmail_stls, main.port)
    R.case("mpop --tls=on --tls-starttls=off (pop3s), --tls-trust-file: every message intact",
           mpop_case, main.sport, False, "mpop-pop3s")
    R.case("mpop --tls=on --tls-starttls=on (STLS), --tls-trust-file: every message intact",
           mpop_case, main.port, True, "mpop-stls")
    R.case("poplib POP3_SSL: every message byte-for-byte", poplib_pop3s, main.sport)
    R.case("poplib POP3.stls(): every message byte-for-byte", poplib_stls, main.port)

    # ---- tls_min --------------------------------------------------------------------------
    tls10 = start_pb("tls10", upstream=imaps_a, pop3s=True, cert=C["pop3"].chain,
                     key=C["pop3"].key, tls_min="1.0")
    R.case("tls_min = 1.0: openssl s_client -tls1 is served", old_tls_accepted, tls10,
           "-tls1", "TLSv1")
    R.case("tls_min = 1.0: openssl s_client -tls1_1 is served", old_tls_accepted, tls10,
           "-tls1_1", "TLSv1.1")
    R.case("tls_min = 1.0: TLS 1.3 still works", old_tls_accepted, tls10, "-tls1_3", "TLSv1.3")
    R.case("tls_min = 1.0 is warned about at start", tls_min_warned, tls10)
    R.case("default tls_min (1.2): openssl s_client -tls1 is refused", old_tls_refused, main,
           "-tls1")
    R.case("default tls_min (1.2): openssl s_client -tls1_1 is refused", old_tls_refused, main,
           "-tls1_1")
    R.case("default tls_min (1.2): openssl s_client -tls1_2 is served", old_tls_accepted, main,
           "-tls1_2", "TLSv1.2")

    # ---- SIGHUP ------------------------------------------------------------------------------
    rdir = os.path.join(pbtest.SCRATCH, "reload-certs")
    os.makedirs(rdir, exist_ok=True)
    rcert, rkey = os.path.join(rdir, "fullchain.pem"), os.path.join(rdir, "privkey.pem")
    replace_file(C["pop3"].chain, rcert)
    replace_file(C["pop3"].key, rkey)
    rl = start_pb("reload", upstream=imaps_a, pop3s=True, cert=rcert, key=rkey)
    R.case("SIGHUP after replacing cert/key: new connections get the new certificate, "
           "a running session goes on", reload_case, rl, C["pop3"], C["reloaded"])
    R.case("SIGHUP with a key that does not match: reload refused, the current certificate "
           "stays", bad_reload_case, rl, C["reloaded"], C["pop3"])


def main():
    def body(tmp):
        pbtest.note("popbridge %s; scratch %s" % (pbtest.default_popbridge(), tmp))
        make_certs()
        cases()
        finish()

    return pbtest.script_main(R, "TLS cases", body,
                              tools=("openssl", "curl", "fetchmail", "mpop", "bash",
                                     "/usr/sbin/dovecot"),
                              why="they test popbridge's own TLS")


if __name__ == "__main__":
    sys.exit(main())
