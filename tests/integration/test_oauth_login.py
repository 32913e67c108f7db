#!/usr/bin/env python3
"""OAuth2 accounts end to end (issue 15): `popbridge authorize` against a
real authorization server (oidc-provider, tests/lib/oauthserver.py, which
also plays the user's browser), then POP3 clients logging in with a device
password while popbridge logs in upstream with a bearer token at private
Dovecots that accept nothing else (passdb oauth2 asking the provider's
introspection endpoint).

    python3 tests/integration/test_oauth_login.py   (after sh tests/lib/deps.sh
                                                      and make asan)

The accounts:
  ob  device flow, public client; Dovecot A (auth_mechanisms xoauth2
      oauthbearer): popbridge must pick OAUTHBEARER
  xo  loopback flow, confidential client (a client secret); Dovecot B
      (auth_mechanisms xoauth2 only): XOAUTH2
  mm  device flow, upstream_user bob: the token is alice's, so Dovecot
      refuses it
  fp  device flow; the scripted IMAP peer (tests/lib/imapfault.py) for
      what Dovecot will not do on demand: no SASL-IR, a challenge that is
      not base64, a second challenge, BYE, a dropped connection
Access tokens live 10 s (popbridge uses one for half its life, 5 s).

What it checks:
  - authorize by the device flow (the URL and the user code on lines of
    their own) and by the loopback redirect; the refresh token stored
    only encrypted (0600);
  - poplib, fetchmail and mpop fetch byte-exact through OAUTHBEARER, and
    poplib through XOAUTH2;
  - the access token expires between two sessions: the next login
    refreshes and saves the rotated refresh token (a restarted popbridge
    logs in with what it saved; oidc-provider revokes a grant whose old
    refresh token is used again);
  - two devices of one account logging in at the same moment: one refresh;
  - a token the IMAP server refuses: -ERR [AUTH], the server's reason in
    the log; odd bearer exchanges (above) get a clear -ERR and leave
    popbridge serving;
  - the token endpoint answering 503, down, or hanging: -ERR [SYS/TEMP]
    ... wait, a burst of logins costs at most a few requests (backoff), a
    login works again once it recovers;
  - a revoked grant: -ERR [AUTH] for every login, one log line naming
    `popbridge authorize ob`, and authorizing again repairs it;
  - no failure changes the mailbox or the UID map; no token, code, client
    secret or verifier in any log, output or state file.
"""

import base64
import imaplib
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import corpus  # noqa: E402
import imapfault  # noqa: E402
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
import oauthserver  # noqa: E402
from oauthserver import Browser, OAuthServer, CONF_CLIENT, CONF_SECRET, PUBLIC_CLIENT, SCOPE  # noqa: E402

R = pbtest.Report()
DRIVER = os.environ.get("OAUTH_DRIVER") or os.path.join(pbtest.ROOT, "build", "asan", "oauth-driver")
ACCESS_TTL = 10
DEV_PW = {"ob": "Ob-device-pw-41", "xo": "Xo-device-pw-52", "mm": "Mm-device-pw-63",
          "fp": "Fp-device-pw-85"}
SECOND_PW = "Ob-second-pw-74"
USER = {"ob": "alice-ob", "xo": "alice-xo", "mm": "bob-mm", "fp": "alice-fp"}
MSGS = ("plain", "dot-lines", "leading-dot", "latin1-8bit", "utf8-8bit", "no-final-crlf",
        "body-dot", "dots-everywhere")

S = {}          # the run's processes and paths
OUTPUTS = []    # every command's output, for the leak check


# -- the parts -----------------------------------------------------------------------

def accounts_text(token_url=None):
    srv, a, b = S["srv"], S["dv_a"], S["dv_b"]

    def account(name, upstream_user, dv, client=PUBLIC_CLIENT, secret=None, device=True,
                port=None):
        lines = ["[account %s]" % name, "pop3_user = %s" % USER[name],
                 "upstream_user = %s" % upstream_user, "auth = oauth2", "oauth = custom",
                 "oauth_client_id = %s" % client]
        if secret:
            lines.append("oauth_client_secret = %s" % secret)
        lines += ["oauth_token_url = %s" % (token_url or srv.token_url),
                  "oauth_authorization_url = %s" % srv.auth_url]
        if device:
            lines.append("oauth_device_url = %s" % srv.device_url)
        lines += ["oauth_scope = %s" % SCOPE, "host = 127.0.0.1", "port = %d" % (port or dv.port),
                  "tls = none", ""]
        return "\n".join(lines)

    return ("[accounts]\nunknown_users = refuse\n\n" +
            account("ob", "alice", a) +
            account("xo", "alice", b, client=CONF_CLIENT, secret=CONF_SECRET, device=False) +
            account("mm", "bob", a) +
            account("fp", "alice", a, port=S["peer"].port))


def cli(*args, lines=(), timeout=60):
    """popbridge -c CONF ARGS with lines on stdin: (status, stdout, stderr)."""
    p = subprocess.run([S["pb"].binary, "-c", S["pb"].conf] + list(args),
                       input="".join(ln + "\n" for ln in lines), capture_output=True,
                       text=True, timeout=timeout)
    OUTPUTS.extend([p.stdout, p.stderr])
    return p.returncode, p.stdout, p.stderr


class Authorize:
    """One run of popbridge authorize ACCOUNT: the device password on
    stdin, stdout read line by line."""

    def __init__(self, account, pw, flow=None):
        argv = [S["pb"].binary, "-c", S["pb"].conf, "authorize", account]
        if flow:
            argv += ["--flow", flow]
        self.err = os.path.join(S["tmp"], "authorize-%s-%d.err" % (account, len(OUTPUTS)))
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.err, "wb"), preexec_fn=pbtest.die_with_parent)
        self.proc.stdin.write((pw + "\n").encode())
        self.proc.stdin.flush()
        self.reader = pbtest.LineReader(self.proc.stdout)
        self.out = self.reader.lines

    def line(self, timeout=30):
        """The next non-empty line of stdout, or None (the end, or
        timeout)."""
        deadline = time.time() + timeout
        while True:
            s = self.reader.line(max(0, deadline - time.time()))
            if s is None or s.strip():
                return s if s is None else s.strip()

    def finish(self, timeout=90):
        rc = pbtest.end_child(self.proc, timeout)
        rest = (self.reader.buf + self.proc.stdout.read()).decode("utf-8", "replace")
        self.out += rest.splitlines()
        err = pbtest.read_text(self.err)
        OUTPUTS.extend(self.out + [err])
        return rc, err


def authorize_device(account, pw):
    """The device flow with the browser approving: problems."""
    a = Authorize(account, pw)
    url, code = a.line(), a.line()
    probs = []
    pbtest.expect(url is not None and url.startswith("http://127.0.0.1:"), probs,
                  "the first line is not the verification URL: %r" % url)
    pbtest.expect(code is not None and " " not in code and len(code) >= 4, probs,
                  "the second line is not a user code: %r" % code)
    if probs:
        a.proc.kill()
        return probs + [pbtest.read_text(a.err)[-300:]]
    page = Browser(S["srv"]).approve_device(code)
    pbtest.expect("device-flow-success" in page, probs, "the browser did not succeed: %s" % page[-200:])
    rc, err = a.finish()
    pbtest.expect(rc == 0, probs, "authorize %s exit %r: %s" % (account, rc, err[-300:]))
    return probs


def authorize_loopback(account, pw):
    a = Authorize(account, pw, flow="loopback")
    url = a.line()
    probs = []
    if url is None or not url.startswith(S["srv"].auth_url):
        a.proc.kill()
        return ["the first line is not the authorization URL: %r (%s)" % (url, pbtest.read_text(a.err)[-300:])]
    st, page = Browser(S["srv"]).authorize(url, follow=True)
    pbtest.expect(st == 200, probs, "the loopback listener answered %s %s" % (st, page[:200]))
    rc, err = a.finish()
    pbtest.expect(rc == 0, probs, "authorize %s exit %r: %s" % (account, rc, err[-300:]))
    return probs


# -- the mailbox, as an administrator sees it (a token of its own) -------------------

def admin_token():
    """A valid access token for alice (the driver's own grant, kept fresh
    by its token cache)."""
    argv = [DRIVER, "--token-url", S["srv"].token_url, "--device-url", S["srv"].device_url,
            "--auth-url", S["srv"].auth_url, "--client-id", CONF_CLIENT, "--client-secret",
            CONF_SECRET, "--scope", SCOPE, "--timeout-ms", "10000", "--state",
            os.path.join(S["tmp"], "admin-refresh"), "--access", os.path.join(S["tmp"], "admin-access"),
            "--account", "admin", "--ms-per-s", "100"]
    if not os.path.exists(os.path.join(S["tmp"], "admin-refresh")):
        p = subprocess.Popen(argv + ["device"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        code = None
        for ln in p.stdout:
            if ln.startswith(b"user_code "):
                code = ln.split()[1].decode()
                break
        pbtest.need(code, "the driver showed no user code")
        Browser(S["srv"]).approve_device(code)
        p.stdout.read()
        pbtest.need(p.wait(60) == 0, "the administrator's grant failed")
    else:
        p = subprocess.run(argv + ["tokens", "get"], capture_output=True, timeout=60)
        pbtest.need(b"get ok" in p.stdout, "the administrator's token: %s" % p.stdout[-200:])
    with open(os.path.join(S["tmp"], "admin-access")) as f:
        return f.read().strip()


def admin_imap(dv):
    conn = imaplib.IMAP4("127.0.0.1", dv.port, timeout=30)
    tok = admin_token()
    conn.authenticate("XOAUTH2", lambda _: ("user=alice\x01auth=Bearer %s\x01\x01" % tok).encode())
    return conn


def mailbox(dv):
    """What POP3 must deliver (RETR bytes in UID order)."""
    conn = admin_imap(dv)
    try:
        meta = imapfetch.info(conn, "INBOX")
        rows = imapfetch.fetch_all(conn, "INBOX", sections=("",))
    finally:
        conn.logout()
    return pbtest.Expected(rows, [meta[u]["size"] for u, _ in rows])


def fill(dv):
    msgs = [(n, d) for n, d in corpus.messages() if n in MSGS]
    conn = admin_imap(dv)
    try:
        corpus.append(conn, "INBOX", msgs)
    finally:
        conn.logout()


# -- POP3 ----------------------------------------------------------------------------

def pop3_login(account, pw=None):
    """The login reply (bytes) of USER/PASS, the session closed."""
    p = pbtest.pop3(port=S["pb"].port, timeout=30)
    try:
        return p.login(USER[account], pw or DEV_PW[account])
    finally:
        p.close()


def check_session(account, box, pw=None):
    probs = []
    with pbtest.Pop3Session(S["pb"], USER[account], pw or DEV_PW[account], timeout=30) as s:
        n, octets = s.stat()
        if n != len(box) or octets != sum(box.size):
            probs.append("STAT %d %d, want %d %d" % (n, octets, len(box), sum(box.size)))
        for i in range(1, min(n, len(box)) + 1):
            got = s.retr(i)
            if got != box.retr[i - 1]:
                probs.append("RETR %s: %s" % (box.label(i), pbtest.first_diff(got, box.retr[i - 1])))
        s.quit_ok()
    return probs


def token_posts():
    return len(S["srv"].stats()["times"])


def refreshes():
    return S["srv"].stats()["token"].get("refresh_token", 0)


def wait_expiry():
    """Until the access tokens popbridge holds are past half their life."""
    time.sleep(ACCESS_TTL / 2 + 0.7)


def account_file(name):
    return os.path.join(S["pb"].state, "account-%s" % name)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def state_snapshot():
    """The state directory's files (UID maps, account files) by name."""
    d = S["pb"].state
    return {n: read_bytes(os.path.join(d, n)) for n in sorted(os.listdir(d))
            if os.path.isfile(os.path.join(d, n))}


def maps_of(snap):
    return {n: v for n, v in snap.items() if not n.startswith("account-")}


# -- cases ---------------------------------------------------------------------------

def case_authorize_device():
    before = refreshes()
    probs = authorize_device("ob", DEV_PW["ob"])
    probs += authorize_device("mm", DEV_PW["mm"])
    probs += authorize_device("fp", DEV_PW["fp"])
    for name in ("ob", "mm", "fp"):
        path = account_file(name)
        pbtest.expect(os.path.exists(path), probs, "no account file for %s" % name)
        if os.path.exists(path):
            mode = os.stat(path).st_mode & 0o777
            pbtest.expect(mode == 0o600, probs, "%s mode %o" % (path, mode))
    rc, out, err = cli("passwd", "ob", "--list")
    pbtest.expect(rc == 0 and "upstream secret: stored" in out, probs, "passwd --list: %r %r" % (out, err))
    pbtest.expect(refreshes() == before, probs, "authorize refreshed a token")
    return probs


def case_authorize_loopback():
    probs = authorize_loopback("xo", DEV_PW["xo"])
    rc, out, err = cli("passwd", "xo", "--list")
    pbtest.expect(rc == 0 and "upstream secret: stored" in out, probs, "passwd --list: %r %r" % (out, err))
    rc, out, err = cli("--check-config")
    pbtest.expect(rc == 0 and "; account xo: 1 device (default); authorized" in out, probs,
                  "--check-config: %r" % [ln for ln in out.splitlines() if "account xo" in ln])
    pbtest.expect(CONF_SECRET not in out + err and "; oauth_client_secret = (secret, not shown)" in out,
                  probs, "--check-config shows the client secret, or not that there is one")
    return probs


def case_poplib(account, mech):
    off = S["pb"].offset()
    probs = check_session(account, S["box_a" if account == "ob" else "box_b"])
    said = S["pb"].text(off)
    pbtest.expect("logging in with %s" % mech in said, probs,
                  "popbridge did not log in with %s: %s" % (mech, S["pb"].tail(6, off)))
    return probs


def case_clients(client):
    return pbtest.client_fetch(client, S["tmp"], client + "-ob", S["pb"].port, USER["ob"],
                               DEV_PW["ob"], S["box_a"])


def case_expiry_refresh_saved():
    probs = []
    wait_expiry()
    t0 = time.time()
    r = pop3_login("ob")
    pbtest.expect(r.startswith(b"+OK"), probs, "first login: %r" % r)
    file0 = read_bytes(account_file("ob"))
    n0 = refreshes()
    r = pop3_login("ob")
    pbtest.expect(r.startswith(b"+OK"), probs, "second login: %r" % r)
    # The token is used for half its life; a machine too slow to log in
    # twice within that cannot tell.
    if time.time() - t0 < ACCESS_TTL / 2 - 1:
        pbtest.expect(refreshes() == n0, probs, "a login with a valid cached token refreshed")
    else:
        pbtest.note("two logins took %.1f s: the cached token's use not checked" % (time.time() - t0))
    wait_expiry()
    n0 = refreshes()
    off = S["pb"].offset()
    r = pop3_login("ob")
    pbtest.expect(r.startswith(b"+OK"), probs, "login after expiry: %r" % r)
    pbtest.expect(refreshes() == n0 + 1, probs, "%d refreshes after expiry, want 1" % (refreshes() - n0))
    pbtest.expect(read_bytes(account_file("ob")) != file0, probs, "the rotated refresh token was not saved")
    pbtest.expect("refresh token rotated and saved" in S["pb"].text(off), probs,
                  "no rotation line: %s" % S["pb"].tail(5, off))
    # A new process has only the file: the rotated token must be in it.
    S["pb"].restart()
    r = pop3_login("ob")
    pbtest.expect(r.startswith(b"+OK"), probs, "login after a restart (the saved token): %r" % r)
    errs = [e for e in S["srv"].events() if e.get("event") == "grant.error"]
    pbtest.expect(not errs, probs, "the provider refused a grant: %s" % errs[-2:])
    return probs


def case_two_devices_one_refresh():
    probs = []
    rc, out, err = cli("passwd", "ob", "--device", "second", lines=(SECOND_PW, DEV_PW["ob"]))
    pbtest.need(rc == 0, "passwd --device second: %s" % err)
    wait_expiry()
    n0 = refreshes()
    replies = {}

    def login(label, pw):
        replies[label] = pop3_login("ob", pw)

    ts = [threading.Thread(target=login, args=(lbl, pw)) for lbl, pw in
          (("first", DEV_PW["ob"]), ("second", SECOND_PW), ("first-again", DEV_PW["ob"]))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for lbl, r in sorted(replies.items()):
        pbtest.expect(r.startswith(b"+OK"), probs, "%s: %r" % (lbl, r))
    pbtest.expect(len(replies) == 3, probs, "answers: %s" % replies)
    pbtest.expect(refreshes() - n0 == 1, probs, "%d refreshes for three logins at once" % (refreshes() - n0))
    return probs


def case_imap_refuses_token():
    probs = []
    snap = maps_of(state_snapshot())
    off = S["pb"].offset()
    r = pop3_login("mm")
    pbtest.expect(r.startswith(b"-ERR [AUTH]"), probs, "a token Dovecot refuses: %r" % r)
    said = S["pb"].text(off)
    lines = [ln for ln in said.splitlines() if "refused the OAuth2 token" in ln]
    pbtest.expect(lines and "status=" in lines[0], probs,
                  "the log does not show the server's reason: %s" % S["pb"].tail(6, off))
    pbtest.expect(maps_of(state_snapshot()) == snap, probs, "a UID map changed")
    # Once more: the token is cached now, so it is tried, forgotten, a
    # new one asked for and refused too.
    n0 = refreshes()
    r = pop3_login("mm")
    pbtest.expect(r.startswith(b"-ERR [AUTH]"), probs, "again: %r" % r)
    pbtest.expect(refreshes() - n0 == 1, probs, "a refused cached token: %d refreshes, want 1" % (refreshes() - n0))
    return probs


CAPS_BOTH = ["IMAP4rev1", "SASL-IR", "ID", "UIDPLUS", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"]
BEARER_FAULTS = [
    # label, capabilities, the peer's bearer mode, faults, reply, log text
    ("XOAUTH2 without SASL-IR: the response after the continuation",
     ["IMAP4rev1", "ID", "UIDPLUS", "AUTH=XOAUTH2"], "accept", [], b"+OK", "logging in with XOAUTH2"),
    ("OAUTHBEARER with SASL-IR preferred to XOAUTH2", CAPS_BOTH, "accept", [], b"+OK",
     "logging in with OAUTHBEARER"),
    ("the JSON error challenge answered with AQ==, then NO: [AUTH], the status logged", CAPS_BOTH,
     "refuse", [], b"-ERR [AUTH]", "status=invalid_token"),
    ("XOAUTH2's error challenge answered with an empty line",
     ["IMAP4rev1", "SASL-IR", "AUTH=XOAUTH2"], "refuse", [], b"-ERR [AUTH]", "status=invalid_token"),
    ("a challenge that is not base64: answered, then [AUTH]", CAPS_BOTH, "garbage", [],
     b"-ERR [AUTH]", "not JSON"),
    ("a second challenge: the connection is given up, [SYS/TEMP]", CAPS_BOTH, "twice", [],
     b"-ERR [SYS/TEMP]", "unexpected continuation"),
    ("no bearer mechanism offered: [SYS/TEMP], said in the log", ["IMAP4rev1", "SASL-IR", "AUTH=PLAIN"],
     "accept", [], b"-ERR [SYS/TEMP]", "neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2"),
    ("BYE instead of the AUTHENTICATE answer: [SYS/TEMP]", CAPS_BOTH, "accept",
     [imapfault.Fault("AUTHENTICATE", "bye")], b"-ERR [SYS/TEMP]", None),
    ("the connection dropped at AUTHENTICATE: [SYS/TEMP]", CAPS_BOTH, "accept",
     [imapfault.Fault("AUTHENTICATE", "drop")], b"-ERR [SYS/TEMP]", None),
    ("NO [UNAVAILABLE] at AUTHENTICATE: [SYS/TEMP]", CAPS_BOTH, "accept",
     [imapfault.Fault("AUTHENTICATE", "no", code="UNAVAILABLE")], b"-ERR [SYS/TEMP]", None),
]


def case_bearer_exchange(caps, mode, plan, want, needle):
    probs = []
    peer = S["peer"]
    peer.reset(caps=caps, plan=plan, bearer=mode)
    off = S["pb"].offset()
    r = pop3_login("fp")
    pbtest.expect(r.startswith(want), probs, "the login answered %r, want %r" % (r, want))
    said = S["pb"].text(off)
    if needle:
        pbtest.expect(needle in said, probs, "the log does not say %r: %s" % (needle, S["pb"].tail(5, off)))
    auths = peer.commands("AUTHENTICATE")
    if any(c in caps for c in ("AUTH=XOAUTH2", "AUTH=OAUTHBEARER")):
        pbtest.expect(auths, probs, "no AUTHENTICATE reached the peer")
    else:
        pbtest.expect(not auths and not peer.commands("LOGIN"), probs,
                      "a login without a bearer mechanism: %s" % (auths or peer.commands("LOGIN")))
    for c in auths:
        if c.bearer is None:
            continue
        mech, user, token = c.bearer
        pbtest.expect(user == b"alice", probs, "%s for user %r" % (mech, user))
        pbtest.expect(token.decode() in S["srv"].issued("access_token"), probs,
                      "the token sent is not one the provider issued")
        if mode == "refuse":
            reply = b"AQ==" if mech == "OAUTHBEARER" else b""
            pbtest.expect(c.sasl_reply == reply, probs, "%s: the challenge was answered %r" % (mech, c.sasl_reply))
    pbtest.expect(not peer.violations(), probs, "protocol violations: %s" % peer.violations()[:3])
    pbtest.expect(not peer.mutations(), probs, "the mailbox was changed: %s" % peer.mutations()[:2])
    pbtest.expect(S["pb"].alive(), probs, "popbridge died")
    return probs


def case_endpoint_503():
    probs = []
    snap = state_snapshot()
    wait_expiry()
    S["srv"].control(fail=50, status=503, body="<html>down for maintenance</html>")
    n0 = token_posts()
    off = S["pb"].offset()
    replies = [pop3_login("ob") for _ in range(6)]
    for r in replies:
        pbtest.expect(r.startswith(b"-ERR [SYS/TEMP]") and b"wait" in r, probs, "during the outage: %r" % r)
    sent = token_posts() - n0
    # 1 s, then 2 s of backoff: a slow machine's six logins may span both.
    pbtest.expect(1 <= sent <= 3, probs, "six logins in an outage sent %d token requests" % sent)
    pbtest.expect("next try in" in S["pb"].text(off), probs, "no backoff line: %s" % S["pb"].tail(4, off))
    S["srv"].control(fail=0)
    deadline = time.time() + 70
    r = b""
    while time.time() < deadline:
        r = pop3_login("ob")
        if r.startswith(b"+OK"):
            break
        time.sleep(0.5)
    pbtest.expect(r.startswith(b"+OK"), probs, "no login within a minute of the recovery: %r" % r)
    pbtest.expect(maps_of(state_snapshot()) == maps_of(snap), probs, "a UID map changed")
    return probs


def case_endpoint_down():
    """The token endpoint's server is gone (connection refused)."""
    probs = []
    dead = "http://127.0.0.1:%d/token" % pbtest.free_port()
    S["pb"].extra = accounts_text(token_url=dead)
    S["pb"].write_conf()
    off = S["pb"].offset()
    S["pb"].proc.send_signal(1)
    S["pb"].wait_line("configuration reloaded", off, timeout=10)
    off = S["pb"].offset()
    replies = [pop3_login("ob") for _ in range(5)]
    for r in replies:
        pbtest.expect(r.startswith(b"-ERR [SYS/TEMP]"), probs, "endpoint down: %r" % r)
    tries = S["pb"].text(off).count("next try in")
    pbtest.expect(1 <= tries <= 3, probs, "five logins made %d requests" % tries)
    S["pb"].extra = accounts_text()
    S["pb"].write_conf()
    off = S["pb"].offset()
    S["pb"].proc.send_signal(1)
    S["pb"].wait_line("configuration reloaded", off, timeout=10)
    r = pop3_login("ob")
    pbtest.expect(r.startswith(b"+OK"), probs, "after the endpoint is back: %r" % r)
    return probs


def case_endpoint_hangs():
    """A provider that accepts and never answers: each login ends within
    [upstream] timeout (the next, during the backoff, at once). The hung request may still rotate the grant once the provider
    wakes up, so the account is authorized again afterwards."""
    probs = []
    wait_expiry()
    S["srv"].pause()
    try:
        t0 = time.time()
        r1 = pop3_login("xo")
        t1 = time.time()
        r2 = pop3_login("xo")
        t2 = time.time()
    finally:
        S["srv"].resume()
    for r, took in ((r1, t1 - t0), (r2, t2 - t1)):
        pbtest.expect(r.startswith(b"-ERR [SYS/TEMP]"), probs, "hung endpoint: %r" % r)
        pbtest.expect(took <= S["timeout"] + 4, probs, "a login took %.1f s (timeout %d s)" % (
            took, S["timeout"]))
    probs += authorize_loopback("xo", DEV_PW["xo"])
    r = pop3_login("xo")
    pbtest.expect(r.startswith(b"+OK"), probs, "after authorizing again: %r" % r)
    return probs


def case_revoked():
    probs = []
    snap = maps_of(state_snapshot())
    # ob's grant (and mm's: public client tokens); the administrator's and
    # xo's are the confidential client's.
    for tok in S["srv"].issued("refresh_token"):
        S["srv"].revoke(tok)
    wait_expiry()
    n0 = refreshes()
    off = S["pb"].offset()
    replies = [pop3_login("ob") for _ in range(3)] + [pop3_login("ob", SECOND_PW)]
    for r in replies:
        pbtest.expect(r.startswith(b"-ERR [AUTH]"), probs, "revoked grant: %r" % r)
    said = S["pb"].text(off)
    lines = [ln for ln in said.splitlines() if "popbridge authorize ob" in ln]
    pbtest.expect(len(lines) == 1, probs, "want one line naming 'popbridge authorize ob': %s" % lines)
    pbtest.expect(refreshes() - n0 <= 1, probs,
                  "%d refresh requests for a refused grant" % (refreshes() - n0))
    pbtest.expect(maps_of(state_snapshot()) == snap, probs, "a UID map changed")
    probs += authorize_device("ob", DEV_PW["ob"])
    probs += check_session("ob", S["box_a"])
    return probs


def case_mailbox_unchanged():
    probs = []
    now = mailbox(S["dv_a"])
    pbtest.expect(now.raw == S["box_a"].raw, probs, "Dovecot A's INBOX changed: %d messages, was %d" % (
        len(now), len(S["box_a"])))
    return probs


def case_no_secret_anywhere():
    probs = []
    secrets = {v for v in S["srv"].issued() if v and len(v) >= 8}
    pbtest.need(len(secrets) >= 10, "the provider recorded only %d secrets" % len(secrets))
    texts = [("popbridge log", pbtest.read_text(S["pb"].log)),
             ("command output", "\n".join(OUTPUTS)),
             ("Dovecot A log", S["dv_a"].log_text()), ("Dovecot B log", S["dv_b"].log_text())]
    for n, data in state_snapshot().items():
        texts.append(("state file " + n, data.decode("latin-1")))
    pbtest.note("%d secrets looked for in %d texts" % (len(secrets), len(texts)))
    for name, text in texts:
        for sec in secrets:
            for form in (sec, base64.b64encode(sec.encode()).decode()):
                if form in text:
                    probs.append("%s shows a secret (%s...)" % (name, form[:6]))
    return probs


def body(tmp):
    why = oauthserver.missing()
    if why:
        R.fail("the OAuth tests' server is installed", [why])
        return
    S["tmp"] = tmp
    S["timeout"] = 3
    S["peer"] = imapfault.FaultPeer()
    S["peer"].start()
    srv = S["srv"] = OAuthServer(os.path.join(tmp, "provider"), access_ttl=ACCESS_TTL).start()
    conf = {}
    for name, mechs in (("dv_a", "xoauth2 oauthbearer"), ("dv_b", "xoauth2")):
        d = os.path.join(tmp, name)
        os.makedirs(d, exist_ok=True)
        extra = srv.dovecot_conf(os.path.join(d, "oauth2.conf.ext")).replace(
            "auth_mechanisms = xoauth2 oauthbearer", "auth_mechanisms = " + mechs)
        conf[name] = pbtest.Dovecot(d, users={"nobody-oauth": "Unused-Pw-1"}, extra=extra).start()
    S["dv_a"], S["dv_b"] = conf["dv_a"], conf["dv_b"]
    fill(S["dv_a"])
    fill(S["dv_b"])
    S["box_a"], S["box_b"] = mailbox(S["dv_a"]), mailbox(S["dv_b"])
    pb = S["pb"] = pbtest.Popbridge("oauth", upstream_port=S["dv_a"].port,
                                    upstream={"timeout": S["timeout"]}, extra="")
    pb.extra = accounts_text()
    pb.write_conf()
    pb.start()
    R.case("authorize by the device flow: the URL and the code on lines of their own; stored 0600",
           case_authorize_device)
    R.case("authorize by the loopback redirect (a confidential client)", case_authorize_loopback)
    R.case("poplib fetches byte-exact through AUTHENTICATE OAUTHBEARER", case_poplib, "ob", "OAUTHBEARER")
    R.case("poplib fetches byte-exact through XOAUTH2 where only XOAUTH2 is offered",
           case_poplib, "xo", "XOAUTH2")
    R.case("fetchmail fetches byte-exact with an OAuth2 account", case_clients, "fetchmail")
    R.case("mpop fetches byte-exact with an OAuth2 account", case_clients, "mpop")
    R.case("the access token expires between sessions: one refresh, the rotated token saved (a restart "
           "logs in with it)", case_expiry_refresh_saved)
    R.case("two devices of one account logging in at once: one refresh", case_two_devices_one_refresh)
    R.case("the IMAP server refuses the token: -ERR [AUTH], its reason in the log",
           case_imap_refuses_token)
    for label, caps, mode, plan, want, needle in BEARER_FAULTS:
        R.case("bearer login, scripted peer: " + label, case_bearer_exchange, caps, mode, plan, want,
               needle)
    R.case("token endpoint answers 503: [SYS/TEMP] ... wait, backoff, works again after",
           case_endpoint_503)
    R.case("token endpoint down: [SYS/TEMP], backoff, works again after", case_endpoint_down)
    R.case("token endpoint hangs: [SYS/TEMP] within [upstream] timeout, backoff", case_endpoint_hangs)
    R.case("no failure changed the mailbox", case_mailbox_unchanged)
    R.case("a revoked grant: [AUTH] for every login, one log line naming popbridge authorize; "
           "authorize repairs it", case_revoked)
    R.case("no token, code or client secret in any log, output or state file", case_no_secret_anywhere)
    pbtest.final_checks(R, [pb], running="popbridge is still running after the cases",
                        sigterm="popbridge exits 0 on SIGTERM",
                        sanitizer="no sanitizer reports in popbridge's log")
    S["peer"].stop()


if __name__ == "__main__":
    sys.exit(pbtest.script_main(R, "OAuth2 login cases", body, own_popbridge=False,
                                tools=("node", DRIVER, "/usr/sbin/dovecot", "fetchmail", "mpop")))
