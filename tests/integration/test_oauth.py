#!/usr/bin/env python3
"""OAuth2 upstream (issue 15, first slice): popbridge's OAuth client code
(src/oauth/, run by build/asan/oauth-driver from tests/oauth/driver.c)
against a real authorization server, oidc-provider
(tests/lib/oauthserver.js, started by tests/lib/oauthserver.py, which also
plays the browser), and a private Dovecot that accepts only bearer tokens
(passdb oauth2 asking the provider's introspection endpoint; auth_mechanisms
xoauth2 oauthbearer).

    python3 tests/integration/test_oauth.py      (after sh tests/lib/deps.sh
                                                  and make asan)

Not in run.sh's default groups yet: `want oauth && run_py oauth test_oauth.py`.
OAUTH_DRIVER names the driver (default build/asan/oauth-driver).

What it checks:
  - the device grant: the user code shown, the browser approves, the
    refresh token saved (0600); polling honours authorization_pending and
    slow_down (+5 s, here one "second" is 100 ms); denied, expired;
  - the code grant with PKCE (S256): through the loopback listener (a
    request with another state first is ignored), and by a pasted URL
    (garbage and wrong state refused, the right one taken);
  - the access token logs in at Dovecot with OAUTHBEARER (SASL-IR) and
    XOAUTH2; a bad token gets the JSON error challenge, decoded;
  - refresh: five logins at once share one request; the rotated refresh
    token is saved at once and the old one is not sent again; an access
    token near its end is refreshed;
  - a revoked grant is invalid_grant: -EACCES for every login, one log
    line naming `popbridge authorize ACCOUNT`, no second request;
  - a token endpoint that is down (refused), hangs (the request's bound),
    answers 503 or garbage: the error, then backoff without requests;
  - no token, code, client secret or PKCE verifier the provider handed out
    or received appears in any log of the run (driver, provider, Dovecot)
    or in the driver's output.
"""

import base64
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import pbtest  # noqa: E402
import oauthserver  # noqa: E402
from oauthserver import Browser, OAuthServer, PUBLIC_CLIENT, SCOPE  # noqa: E402

R = pbtest.Report()
DRIVER = os.environ.get("OAUTH_DRIVER") or os.path.join(pbtest.ROOT, "build", "asan", "oauth-driver")
ACCOUNT = "oauth-it"
EACCES, EAGAIN, ETIMEDOUT, ECONNREFUSED, EBADMSG, ESRCH, EREMOTEIO = 13, 11, 110, 111, 74, 3, 121

LOGS = []           # every log file of the run, for the leak check
OUTPUTS = []        # every driver's standard output


class Driver:
    """One run of oauth-driver: its stdout read line by line, its stderr
    (popbridge's log, debug level) in a file."""

    def __init__(self, tmp, srv, args, token_url=None, timeout_ms=5000, extra=()):
        self.n = len(LOGS)
        self.log = os.path.join(tmp, "driver-%02d.log" % self.n)
        LOGS.append(self.log)
        self.state = os.path.join(tmp, "refresh-token")
        self.access = os.path.join(tmp, "access-token")
        argv = [DRIVER, "--token-url", token_url or srv.token_url,
                "--device-url", srv.device_url, "--auth-url", srv.auth_url,
                "--client-id", PUBLIC_CLIENT, "--scope", SCOPE,
                "--timeout-ms", str(timeout_ms), "--state", self.state,
                "--access", self.access, "--account", ACCOUNT] + list(extra) + list(args)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.log, "wb"), preexec_fn=pbtest.die_with_parent)
        self.reader = pbtest.LineReader(self.proc.stdout)
        self.out = self.reader.lines

    def line(self, timeout=30):
        """The next line of output (None at the end or after timeout)."""
        s = self.reader.line(timeout)
        if s is not None:
            OUTPUTS.append(s)
        return s

    def until(self, prefix, timeout=30):
        """Lines up to and including the first that starts with prefix."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.line(max(0.1, deadline - time.time()))
            if s is None:
                break
            if s.startswith(prefix):
                return s
        raise AssertionError("no %r line from the driver; it said %s; log: %s" % (
            prefix, self.out[-8:], pbtest.read_text(self.log)[-600:]))

    def send(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout=60):
        """Runs to the end: (exit status, every output line)."""
        while self.line(timeout) is not None:
            pass
        return pbtest.end_child(self.proc, timeout), self.out

    def text(self):
        return pbtest.read_text(self.log)


def tokens(tmp, srv, *steps, **kw):
    """Runs `oauth-driver tokens STEPS`: (exit, output lines, log text)."""
    d = Driver(tmp, srv, ["tokens"] + list(steps), **kw)
    rc, out = d.finish()
    return rc, out, d.text()


def answers(out):
    """["ok", "err -13", ...] of the get steps, in order."""
    res = []
    for ln in out:
        parts = ln.split()
        if len(parts) >= 4 and parts[0] == "step" and parts[2] == "get":
            res.append(parts[3] if parts[3] == "ok" else "err %s" % parts[4])
    return res


def requests(out):
    for ln in out:
        if ln.startswith("requests "):
            return int(ln.split()[1])
    return None


def read(path):
    with open(path) as f:
        return f.read().strip()


def sanitizer(text):
    return ["sanitizer: %s" % ln for ln in pbtest.sanitizer_lines(text)]


# -- the grants ---------------------------------------------------------------------

def device_grant(tmp, srv, deny=False, inject=None, approve=True):
    """Runs the device grant with the browser approving (or denying);
    returns (done line, driver)."""
    d = Driver(tmp, srv, ["device"], extra=["--ms-per-s", "100"])
    code = d.until("user_code").split()[1]
    d.until("verification_uri_complete")
    if inject is not None:
        srv.control(**inject)
    if approve:
        page = Browser(srv).approve_device(code, deny=deny)
        if not deny:
            pbtest.need("device-flow-success" in page, "the browser did not get the success page: %s" % page[-300:])
    done = d.until("done", timeout=60)
    d.finish()
    return done, d


def ensure_grant(tmp, srv):
    """A refresh and an access token in tmp (a device grant unless an
    earlier case left them): cases also run alone (ONLY_CASE)."""
    if os.path.exists(os.path.join(tmp, "refresh-token")) and \
            os.path.exists(os.path.join(tmp, "access-token")):
        return
    done, _ = device_grant(tmp, srv)
    pbtest.need(done.startswith("done 0"), "no grant to start from: %s" % done)


def case_device_grant(tmp, srv):
    probs = []
    t0 = len(srv.stats()["times"])
    done, d = device_grant(tmp, srv)
    pbtest.expect(done.startswith("done 0"), probs, "device grant ended %r" % done)
    st = os.stat(d.state)
    pbtest.expect(stat.S_IMODE(st.st_mode) == 0o600, probs, "refresh token file mode %o" % stat.S_IMODE(st.st_mode))
    pbtest.expect(read(d.state) in srv.issued("refresh_token"), probs, "the saved refresh token is not one the provider issued")
    pbtest.expect(read(d.access) in srv.issued("access_token"), probs, "the access token is not the provider's")
    s = srv.stats()
    pbtest.expect(s["device_authorization"] >= 1, probs, "no device authorization request")
    pbtest.expect(len(s["times"]) - t0 >= 1, probs, "no poll")
    return probs + sanitizer(d.text())


def case_device_slow_down(tmp, srv):
    """slow_down makes every later poll 5 "s" (500 ms) later."""
    probs = []
    t0 = len(srv.stats()["times"])
    d = Driver(tmp, srv, ["device"], extra=["--ms-per-s", "100"])
    code = d.until("user_code").split()[1]
    srv.control(fail=2, status=400, body={"error": "slow_down"})
    # Two slow_downs, then the pending answers until the browser approves.
    time.sleep(2.0)
    Browser(srv).approve_device(code)
    done = d.until("done", timeout=60)
    d.finish()
    times = srv.stats()["times"][t0:]
    gaps = [b - a for a, b in zip(times, times[1:])]
    pbtest.expect(done.startswith("done 0"), probs, "ended %r" % done)
    pbtest.expect(len(gaps) >= 2, probs, "too few polls: %s" % gaps)
    if len(gaps) >= 2:
        # interval 5 -> 10 after the first slow_down, 15 after the second
        pbtest.expect(900 <= gaps[0] <= 2500, probs, "after one slow_down the gap is %d ms, want ~1000" % gaps[0])
        pbtest.expect(1400 <= gaps[1] <= 3000, probs, "after two the gap is %d ms, want ~1500" % gaps[1])
    return probs


def case_device_denied(tmp, srv):
    done, d = device_grant(tmp, srv, deny=True)
    probs = []
    pbtest.expect(done.startswith("done -%d" % EACCES) and "access_denied" in done, probs, "denied grant ended %r" % done)
    return probs


def case_device_expired(tmp, srv):
    done, d = device_grant(tmp, srv, inject={"fail": 1, "status": 400, "body": {"error": "expired_token"}},
                           approve=False)
    probs = []
    pbtest.expect(done.startswith("done -%d" % ETIMEDOUT), probs, "expired grant ended %r" % done)
    return probs


def _code_run(tmp, srv):
    d = Driver(tmp, srv, ["code"])
    url = d.until("url ").split(" ", 1)[1]
    redirect = d.until("redirect ").split(" ", 1)[1]
    return d, url, redirect


def case_code_listener(tmp, srv):
    probs = []
    d, url, redirect = _code_run(tmp, srv)
    pbtest.expect("code_challenge_method=S256" in url and "code_challenge=" in url, probs, "no PKCE in %s" % url)
    pbtest.expect(redirect.startswith("http://127.0.0.1:"), probs, "redirect %s" % redirect)
    # A page elsewhere makes the browser load the redirect URI with a code
    # and state of its own: ignored.
    try:
        urllib.request.urlopen(redirect + "?code=evil&state=not-ours", timeout=5)
        probs.append("the listener accepted a foreign state")
    except urllib.error.HTTPError as e:
        pbtest.expect(e.code == 400, probs, "foreign state got %d" % e.code)
    st, page = Browser(srv).authorize(url, follow=True)
    pbtest.expect(st == 200 and "You may close this window" in page, probs, "the listener's page: %s %s" % (st, page[:200]))
    done = d.until("done")
    d.finish()
    pbtest.expect(done.startswith("done 0"), probs, "code grant ended %r" % done)
    pbtest.expect(read(d.state) in srv.issued("refresh_token"), probs, "refresh token not saved")
    try:
        urllib.request.urlopen(redirect + "?code=x&state=y", timeout=5)
        probs.append("the listener still answers after the grant")
    except urllib.error.HTTPError as e:
        probs.append("the listener still answers after the grant (%d)" % e.code)
    except (urllib.error.URLError, OSError):
        pass
    pbtest.expect(len(srv.issued("code_verifier")) >= 1, probs, "the provider saw no code_verifier")
    return probs + sanitizer(d.text())


def case_code_paste(tmp, srv):
    probs = []
    d, url, redirect = _code_run(tmp, srv)
    back = Browser(srv).authorize(url, follow=False)
    pbtest.need(isinstance(back, str) and back.startswith(redirect), "the browser was not sent back to %s: %r" % (redirect, back))
    d.send("this is not a URL")
    pbtest.expect(d.until("paste") == "paste -%d" % EBADMSG, probs, "garbage: %s" % d.out[-1])
    d.send(back.replace("state=", "state=x"))
    pbtest.expect(d.until("paste") == "paste -%d" % ESRCH, probs, "wrong state: %s" % d.out[-1])
    d.send("  " + back + "  ")
    pbtest.expect(d.until("paste") == "paste 0", probs, "the right URL: %s" % d.out[-1])
    done = d.until("done")
    d.finish()
    pbtest.expect(done.startswith("done 0"), probs, "pasted grant ended %r" % done)
    return probs


# -- IMAP with the token -----------------------------------------------------------------

class Imap:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.f = self.s.makefile("rb")
        self.greeting = self.f.readline()

    def cmd(self, line):
        self.s.sendall(line.encode() + b"\r\n")

    def until_tagged(self, tag):
        lines = []
        while True:
            ln = self.f.readline()
            if not ln:
                return lines, None
            lines.append(ln.decode("utf-8", "replace").rstrip("\r\n"))
            if lines[-1].startswith(tag + " "):
                return lines, lines[-1]
            if lines[-1].startswith("+"):
                return lines, lines[-1]

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def sasl_ir(tmp, mech, user, port):
    out = os.path.join(tmp, "sasl-ir")
    p = subprocess.run([DRIVER, "--access", os.path.join(tmp, "access-token"), "--out", out,
                        "sasl", mech, user, "127.0.0.1", str(port)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    OUTPUTS.extend(p.stdout.decode("utf-8", "replace").splitlines())
    pbtest.need(p.returncode == 0, "driver sasl: %s" % p.stdout[-300:])
    return read(out)


def case_imap_login(tmp, srv, dv):
    probs = []
    ensure_grant(tmp, srv)
    c = Imap(dv.port)
    c.cmd("a CAPABILITY")
    lines, tagged = c.until_tagged("a")
    caps = " ".join(lines)
    for want in ("AUTH=OAUTHBEARER", "AUTH=XOAUTH2", "SASL-IR", "LOGINDISABLED"):
        pbtest.expect(want in caps, probs, "Dovecot does not show %s: %s" % (want, caps[:300]))
    c.close()
    for mech in ("OAUTHBEARER", "XOAUTH2"):
        ir = sasl_ir(tmp, mech, "alice", dv.port)
        c = Imap(dv.port)
        c.cmd("b AUTHENTICATE %s %s" % (mech, ir))
        lines, tagged = c.until_tagged("b")
        pbtest.expect(tagged is not None and tagged.startswith("b OK"), probs, "%s login: %s" % (mech, lines[-3:]))
        c.cmd("c SELECT INBOX")
        lines, tagged = c.until_tagged("c")
        pbtest.expect(tagged is not None and tagged.startswith("c OK"), probs, "%s SELECT: %s" % (mech, lines[-2:]))
        c.close()
    return probs


def case_imap_bad_token(tmp, srv, dv):
    """A token the provider does not know: the error challenge, answered,
    then NO."""
    probs = []
    ensure_grant(tmp, srv)
    good = read(os.path.join(tmp, "access-token"))
    with open(os.path.join(tmp, "access-token"), "w") as f:
        f.write("not-a-real-token-" + "x" * 20)
    try:
        ir = sasl_ir(tmp, "OAUTHBEARER", "alice", dv.port)
    finally:
        with open(os.path.join(tmp, "access-token"), "w") as f:
            f.write(good)
    c = Imap(dv.port)
    c.cmd("d AUTHENTICATE OAUTHBEARER %s" % ir)
    lines, last = c.until_tagged("d")
    pbtest.expect(last is not None and last.startswith("+ "), probs, "no error challenge: %s" % lines[-3:])
    if last is not None and last.startswith("+"):
        challenge = last[1:].strip()
        p = subprocess.run([DRIVER, "sasl-error", challenge], stdout=subprocess.PIPE, timeout=30)
        said = p.stdout.decode("utf-8", "replace").strip()
        OUTPUTS.append(said)
        pbtest.expect(said.startswith("sasl-error 0 status=invalid_token"), probs,
                      "challenge %r decoded as %r" % (challenge, said))
        c.cmd("AQ==")
        lines, last = c.until_tagged("d")
    pbtest.expect(last is not None and last.startswith("d NO"), probs, "bad token: %s" % lines[-3:])
    c.close()
    return probs


# -- refresh ------------------------------------------------------------------------------

def case_refresh_single_flight(tmp, srv):
    probs = []
    ensure_grant(tmp, srv)
    state = os.path.join(tmp, "refresh-token")
    before = read(state)
    n0 = srv.stats()["token"].get("refresh_token", 0)
    rc, out, log = tokens(tmp, srv, "get*5")
    pbtest.expect(answers(out) == ["ok"] * 5, probs, "five logins: %s" % answers(out))
    pbtest.expect(requests(out) == 1, probs, "requests %s for five logins at once" % requests(out))
    n1 = srv.stats()["token"].get("refresh_token", 0)
    pbtest.expect(n1 - n0 == 1, probs, "the provider saw %d refreshes" % (n1 - n0))
    after = read(state)
    pbtest.expect(after != before, probs, "the rotated refresh token was not saved")
    pbtest.expect(after in srv.issued("refresh_token"), probs, "the saved token is not the provider's")
    pbtest.expect(log.count("rotated and saved") == 1, probs, "log: %s" % log[-400:])
    # The next run reads the new one and works: the old one is never sent
    # again (reusing it would revoke the grant).
    rc, out, log = tokens(tmp, srv, "get", "reject", "get")
    pbtest.expect(answers(out) == ["ok", "ok"], probs, "after rotation: %s" % answers(out))
    pbtest.expect(requests(out) == 2, probs, "a rejected access token is refreshed: %s" % requests(out))
    errs = [e for e in srv.events() if e.get("event") == "grant.error" and e.get("grant_type") == "refresh_token"]
    pbtest.expect(not errs, probs, "the provider refused something: %s" % errs)
    return probs + sanitizer(log)


def case_refresh_expiry(tmp, short):
    """Access tokens of 4 s: cached for 2 s (half their life), then
    refreshed."""
    probs = []
    os.makedirs(tmp, exist_ok=True)
    done, d = device_grant(tmp, short)
    pbtest.need(done.startswith("done 0"), "grant at the short-lived provider: %s" % done)
    rc, out, log = tokens(tmp, short, "get", "sleep:500", "get", "sleep:2000", "get")
    pbtest.expect(answers(out) == ["ok"] * 3, probs, "%s" % answers(out))
    pbtest.expect(requests(out) == 2, probs, "requests %s (want 2: cached, then expired)" % requests(out))
    return probs


def case_revoked(tmp, srv):
    probs = []
    ensure_grant(tmp, srv)
    rt = read(os.path.join(tmp, "refresh-token"))
    st = srv.revoke(rt)
    pbtest.need(st == 200, "revocation answered %d" % st)
    rc, out, log = tokens(tmp, srv, "get", "get*3", "sleep:1500", "get")
    pbtest.expect(answers(out) == ["err -%d" % EACCES] * 5, probs, "after revocation: %s" % answers(out))
    pbtest.expect(requests(out) == 1, probs, "a refused grant is not asked again: %s requests" % requests(out))
    lines = [ln for ln in log.splitlines() if "popbridge authorize %s" % ACCOUNT in ln]
    pbtest.expect(len(lines) == 1, probs, "want one line naming 'popbridge authorize %s': %s" % (ACCOUNT, lines or log[-500:]))
    pbtest.expect(any("invalid_grant" in ln for ln in lines), probs, "the line does not say invalid_grant: %s" % lines)
    return probs


def case_endpoint_down(tmp, srv):
    probs = []
    port = pbtest.free_port()
    down = "http://127.0.0.1:%d/token" % port
    rc, out, log = tokens(tmp, srv, "get", "sleep:200", "get", "sleep:1000", "get", token_url=down)
    pbtest.expect(answers(out) == ["err -%d" % ECONNREFUSED, "err -%d" % EAGAIN, "err -%d" % ECONNREFUSED],
                  probs, "refused, backoff, then again: %s" % answers(out))
    pbtest.expect(requests(out) == 2, probs, "requests %s" % requests(out))
    pbtest.expect("next try in 1 s" in log and "next try in 2 s" in log, probs, "the backoff is not logged: %s" % log[-400:])
    return probs


def case_endpoint_hangs(tmp, srv):
    probs = []
    srv.pause()
    try:
        t0 = time.time()
        rc, out, log = tokens(tmp, srv, "get", "get", timeout_ms=1500)
        took = time.time() - t0
    finally:
        srv.resume()
    pbtest.expect(answers(out) == ["err -%d" % ETIMEDOUT, "err -%d" % EAGAIN], probs, "hung endpoint: %s" % answers(out))
    pbtest.expect(1.4 <= took <= 8, probs, "took %.1f s (bound 1.5 s)" % took)
    return probs


def case_endpoint_garbage(tmp, srv):
    probs = []
    ensure_grant(tmp, srv)
    srv.control(fail=2, status=503, body="<html>down for maintenance</html>")
    rc, out, log = tokens(tmp, srv, "get", "get", "sleep:1100", "get", "sleep:2100", "get")
    pbtest.expect(answers(out) == ["err -%d" % EREMOTEIO, "err -%d" % EAGAIN, "err -%d" % EREMOTEIO, "ok"],
                  probs, "503 twice, backoff, then tokens: %s" % answers(out))
    srv.control(fail=1, status=200, body="<html>a login page</html>")
    rc, out, log = tokens(tmp, srv, "get", "sleep:1100", "get")
    pbtest.expect(answers(out) == ["err -%d" % EBADMSG, "ok"], probs, "garbage, then tokens: %s" % answers(out))
    return probs


def case_no_secret_logged(tmp, servers, dv):
    probs = []
    secrets = set()
    for s in servers:
        secrets.update(v for v in s.issued() if v and len(v) >= 8)
    pbtest.need(len(secrets) >= 10, "the provider recorded only %d secrets" % len(secrets))
    files = list(LOGS) + [s.log for s in servers] + [dv.log]
    texts = [(f, pbtest.read_text(f)) for f in files] + [("driver output", "\n".join(OUTPUTS))]
    pbtest.note("%d secrets looked for in %d logs and the drivers' output" % (len(secrets), len(files)))
    for name, text in texts:
        for sec in secrets:
            forms = {sec, base64.b64encode(sec.encode()).decode()}
            for form in forms:
                if form in text:
                    probs.append("%s shows a secret (%s...)" % (os.path.basename(name), form[:6]))
    return probs


def case_sanitizers(tmp):
    probs = []
    for f in LOGS:
        probs += ["%s: %s" % (os.path.basename(f), ln) for ln in pbtest.sanitizer_lines(pbtest.read_text(f))]
    pbtest.expect(len(LOGS) >= 10, probs, "only %d driver runs" % len(LOGS))
    return probs


def body(tmp):
    why = oauthserver.missing()
    if why:
        R.fail("the OAuth tests' server is installed", [why])
        return
    srv = OAuthServer(os.path.join(tmp, "provider"), access_ttl=3600).start()
    short = OAuthServer(os.path.join(tmp, "provider-short"), access_ttl=4).start()
    dvdir = os.path.join(tmp, "dovecot")
    os.makedirs(dvdir, exist_ok=True)
    dv = pbtest.Dovecot(dvdir, users={"nobody-oauth": "Unused-Pw-1"},
                        extra=srv.dovecot_conf(os.path.join(dvdir, "oauth2.conf.ext"))).start()
    R.case("device grant: the code shown, the browser approves, the refresh token saved (0600)",
           case_device_grant, tmp, srv)
    R.case("device grant: slow_down adds 5 s to every later poll", case_device_slow_down, tmp, srv)
    R.case("device grant: the user denies: access_denied", case_device_denied, tmp, srv)
    R.case("device grant: expired_token ends it", case_device_expired, tmp, srv)
    R.case("code grant with PKCE: the loopback listener ignores a foreign state, takes the right one, closes",
           case_code_listener, tmp, srv)
    R.case("code grant: a pasted redirect URL (garbage and wrong state refused)", case_code_paste, tmp, srv)
    R.case("IMAP login with the access token: OAUTHBEARER (SASL-IR) and XOAUTH2 at a bearer-only Dovecot",
           case_imap_login, tmp, srv, dv)
    R.case("IMAP login with a bad token: the JSON error challenge, decoded, then NO",
           case_imap_bad_token, tmp, srv, dv)
    R.case("refresh: five logins at once share one request; the rotated token is saved at once",
           case_refresh_single_flight, tmp, srv)
    R.case("refresh: a 4 s access token is cached for half its life, then refreshed",
           case_refresh_expiry, os.path.join(tmp, "short"), short)
    R.case("token endpoint answers 503, then garbage: temporary errors with backoff, then tokens",
           case_endpoint_garbage, tmp, srv)
    R.case("token endpoint hangs: the request ends at its bound, then backoff", case_endpoint_hangs, tmp, srv)
    R.case("token endpoint down: refused, then backoff without a request, then refused again",
           case_endpoint_down, tmp, srv)
    R.case("a revoked grant: invalid_grant for every login, one log line naming 'popbridge authorize'",
           case_revoked, tmp, srv)
    R.case("no token, code, secret or verifier in any log or output of the run",
           case_no_secret_logged, tmp, [srv, short], dv)
    R.case("every driver run ended without a sanitizer report", case_sanitizers, tmp)


if __name__ == "__main__":
    sys.exit(pbtest.script_main(R, "OAuth2 cases", body, own_popbridge=False,
                                tools=("node", DRIVER, "/usr/sbin/dovecot")))
