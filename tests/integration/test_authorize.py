#!/usr/bin/env python3
"""`popbridge authorize ACCOUNT` (issue 15) against a real authorization
server, oidc-provider (tests/lib/oauthserver.js, started by
tests/lib/oauthserver.py, which also plays the browser).

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_authorize.py

The configuration has accounts with auth = oauth2 and oauth = custom at
that server: "dev" (device and authorization endpoints: the device flow
by default), "web" (the authorization endpoint only: the loopback flow),
"conf" (a confidential client, its secret in the file), "badsecret" (the
same client with a wrong secret), "down" (endpoints on a closed port),
"tty" (loopback, driven through a pty), "race" (device flow, its file
changed by passwd during the flow) and "pw" (auth = password). No IMAP
server: authorize never connects to one.

What it checks:
  - the device flow end to end: standard output is exactly the
    verification URL and the user code, one line each; the browser
    approves; exit 0; the account file 0600; `passwd --list` says
    "upstream secret: stored"; the first device password became device
    "default";
  - a wrong device password fails at once (exit 1, "that password is no
    device's") without a request to the provider; the right one works;
  - the loopback flow through the listener: a request with a foreign
    state is refused (400) and the listener waits on; the browser follows
    the redirect; standard input a regular file that ends after the
    password line;
  - the loopback flow by a pasted URL (the browser does not follow the
    redirect): garbage, then the URL with another state, each refused
    with a message, then the right one;
  - on a terminal (a pty): the first device password asked twice without
    echo, the paste prompt, asked again after garbage, echo on at the end;
  - the file changed during the flow (a first device added by someone
    else, the password changed, another device added): read again and
    unlocked again, the other device kept;
  - access_denied and expired_token: exit 1 with a line saying so;
    invalid_client: exit 1 naming oauth_client_id; an endpoint that is
    down: exit 1;
  - usage and refusals: --flow device without a device URL (exit 2),
    authorize on an auth = password account (exit 1), `passwd --upstream`
    on an oauth2 account (exit 1, naming `popbridge authorize`);
  - no token, code, verifier or client secret the provider handed out or
    received appears in any run's standard output or error, nor in clear
    (or base64) in the state directory; no sanitizer report.
"""

import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import os
import pty
import select
import stat
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import pbtest  # noqa: E402
import oauthserver  # noqa: E402
from oauthserver import Browser, OAuthServer, CONF_CLIENT, CONF_SECRET, PUBLIC_CLIENT, SCOPE  # noqa: E402

POPBRIDGE = pbtest.default_popbridge()
R = pbtest.Report(max_lines=24, width=300)

DEV_PW = "Dev-first-pw-7c1a"
WEB_PW = "Web first pw 'q' 3e"
CONF_PW = "Conf-dev-pw-91b0"
TTY_PW = "Tty-dev-pw-48d2"
TIMEOUT = 10                # [upstream] timeout
RUN_WAIT = 90               # one whole run, its device polls included

CONF = ""
STATE = ""
OUTPUTS = []                # (name, text) of every run's stdout and stderr


def config_text(srv, down_port):
    def account(name, client=PUBLIC_CLIENT, secret=None, device=True, auth=True, base=None):
        base = base or srv.issuer
        lines = ["[account %s]" % name, "upstream_user = alice", "auth = oauth2", "oauth = custom",
                 "oauth_client_id = %s" % client, "oauth_token_url = %s/token" % base,
                 "oauth_scope = %s" % SCOPE]
        if secret:
            lines.append("oauth_client_secret = %s" % secret)
        if device:
            lines.append("oauth_device_url = %s/device/auth" % base)
        if auth:
            lines.append("oauth_authorization_url = %s/auth" % base)
        return "\n".join(lines) + "\n\n"

    return ("[upstream]\nhost = 127.0.0.1\nport = 1\ntls = none\ntimeout = %d\n\n"
            "[state]\ndir = %s\n\n" % (TIMEOUT, STATE)
            + account("dev")
            + account("web", device=False)
            + account("tty", device=False)
            + account("race")
            + account("conf", client=CONF_CLIENT, secret=CONF_SECRET)
            + account("badsecret", client=CONF_CLIENT, secret="not-the-secret-5e")
            + account("down", base="http://127.0.0.1:%d" % down_port)
            + "[account pw]\nupstream_user = alice\nauth = password\n")


class Run:
    """One popbridge authorize: stdout read line by line, stderr in a
    file; stdin a pipe, or a file (stdin_file)."""

    def __init__(self, tmp, account, args=(), lines=(), stdin_file=None):
        self.name = "authorize-%s-%02d" % (account, len(OUTPUTS))
        self.err_path = os.path.join(tmp, self.name + ".err")
        data = b"".join(ln.encode() + b"\n" for ln in lines)
        if stdin_file is not None:
            with open(stdin_file, "wb") as f:
                f.write(data)
            stdin = open(stdin_file, "rb")
        else:
            stdin = subprocess.PIPE
        self.proc = subprocess.Popen([POPBRIDGE, "-c", CONF, "authorize", account] + list(args),
                                     stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=open(self.err_path, "wb"),
                                     preexec_fn=pbtest.die_with_parent)
        if stdin_file is not None:
            stdin.close()
        elif data:
            self.send_raw(data)
        self.reader = pbtest.LineReader(self.proc.stdout)
        self.out = self.reader.lines
        self.rc = None

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, line):
        self.send_raw(line.encode() + b"\n")

    def line(self, timeout=30):
        """The next line of standard output (None at its end or after
        timeout)."""
        return self.reader.line(timeout)

    def need_line(self, what, timeout=30):
        s = self.line(timeout)
        if s is None:
            self.finish(5)
            raise AssertionError("no %s on standard output (exit %s); stderr: %s"
                                 % (what, self.rc, self.err()[-600:]))
        return s

    def finish(self, timeout=RUN_WAIT):
        """Waits for the end: (exit status, stdout lines, stderr text)."""
        deadline = time.time() + timeout
        while self.line(max(0.1, deadline - time.time())) is not None:
            pass
        self.rc = pbtest.end_child(self.proc, max(1, deadline - time.time()))
        OUTPUTS.append((self.name + " stdout", "\n".join(self.out)))
        OUTPUTS.append((self.name + " stderr", self.err()))
        return self.rc, self.out, self.err()

    def err(self):
        return pbtest.read_text(self.err_path)

    def alive(self):
        return self.proc.poll() is None


def passwd(*args, lines=()):
    data = b"".join(ln.encode() + b"\n" for ln in lines)
    p = subprocess.run([POPBRIDGE, "-c", CONF, "passwd"] + list(args), input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    OUTPUTS.append(("passwd %s" % " ".join(args), out + err))
    return p.returncode, out, err


def account_file(name):
    return os.path.join(STATE, "account-" + name)


# -- what the file holds (accounts/account_keys.h, done again here) ----------------------

def _hkdf_sha256(ikm, info, n):
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:n]


def _gcm_open(key, nonce, aad, sealed):
    """AES-256-GCM through libcrypto (always there: popbridge links it)."""
    lib = ctypes.CDLL(ctypes.util.find_library("crypto"))
    vp, ip = ctypes.c_void_p, ctypes.c_int
    lib.EVP_CIPHER_CTX_new.restype = vp
    lib.EVP_aes_256_gcm.restype = vp
    lib.EVP_DecryptInit_ex.argtypes = [vp, vp, vp, ctypes.c_char_p, ctypes.c_char_p]
    lib.EVP_DecryptUpdate.argtypes = [vp, vp, ctypes.POINTER(ip), ctypes.c_char_p, ip]
    lib.EVP_DecryptFinal_ex.argtypes = [vp, vp, ctypes.POINTER(ip)]
    lib.EVP_CIPHER_CTX_ctrl.argtypes = [vp, ip, ip, ctypes.c_char_p]
    lib.EVP_CIPHER_CTX_free.argtypes = [vp]
    ct, tag = sealed[:-16], sealed[-16:]
    ctx = lib.EVP_CIPHER_CTX_new()
    n = ip(0)
    out = ctypes.create_string_buffer(len(ct) + 16)
    try:
        ok = (lib.EVP_DecryptInit_ex(ctx, lib.EVP_aes_256_gcm(), None, key, nonce) == 1 and
              lib.EVP_DecryptUpdate(ctx, None, ctypes.byref(n), aad, len(aad)) == 1 and
              lib.EVP_DecryptUpdate(ctx, out, ctypes.byref(n), ct, len(ct)) == 1 and
              lib.EVP_CIPHER_CTX_ctrl(ctx, 0x11, 16, tag) == 1 and      # EVP_CTRL_GCM_SET_TAG
              lib.EVP_DecryptFinal_ex(ctx, None, ctypes.byref(n)) == 1)
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)
    return out.raw[:len(ct)] if ok else None


def stored_secret(name, password):
    """The upstream secret in account name's file, opened with a device
    password; None when it does not open."""
    with open(account_file(name)) as f:
        rows = [ln.split() for ln in f.read().splitlines()]
    b64 = base64.b64decode
    key = None
    for r in (r for r in rows if r[0] == "device"):
        label, log_n, rr, pp = r[1], int(r[4]), int(r[5]), int(r[6])
        master = hashlib.scrypt(password.encode(), salt=b64(r[7]), n=1 << log_n, r=rr, p=pp,
                                maxmem=256 << 20, dklen=32)
        kek = _hkdf_sha256(master, b"popbridge device key v1", 32)
        aad = b"popbridge account key v1\0" + name.lower().encode() + b"\0" + label.lower().encode() + b"\0"
        key = _gcm_open(kek, b64(r[9]), aad, b64(r[10]))
        if key is not None:
            break
    up = [r for r in rows if r[0] == "upstream"]
    if key is None or not up:
        return None
    aad = b"popbridge upstream secret v1\0" + name.lower().encode() + b"\0"
    secret = _gcm_open(key, b64(up[0][1]), aad, b64(up[0][2]))
    return secret.decode() if secret is not None else None


def stored_refresh(probs, srv, name, password):
    """The stored secret, which must be a refresh token srv issued."""
    try:
        secret = stored_secret(name, password)
    except (OSError, ValueError, IndexError) as e:
        secret = None
        probs.append("account %s's file: %s" % (name, e))
    pbtest.expect(secret is not None and secret in srv.issued("refresh_token"), probs,
                  "account %s: the stored secret is not a refresh token the provider issued" % name)
    return secret


def sanitizer(err):
    return ["sanitizer: %s" % ln for ln in pbtest.sanitizer_lines(err)]


def one_line(err, probs, what):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    pbtest.expect(len(lines) == 1 and lines[0].startswith("popbridge: "), probs,
                  "%s: want one line on stderr, got %r" % (what, lines))


def provider_calls(srv):
    s = srv.stats()
    return s["device_authorization"], len(s["times"])


# -- the device flow -------------------------------------------------------------------

def device_run(tmp, srv, account, pw, approve=True, deny=False, inject=None, args=()):
    """A device flow with the browser approving (or denying): (exit,
    stdout lines, stderr, the two lines parsed)."""
    run = Run(tmp, account, args=args, lines=[pw])
    uri = run.need_line("verification URL")
    code = run.need_line("user code")
    if inject is not None:
        srv.control(**inject)
    if approve:
        page = Browser(srv).approve_device(code, deny=deny)
        if not deny:
            pbtest.need("device-flow-success" in page,
                        "the browser did not get the success page: %s" % page[-300:])
    rc, out, err = run.finish()
    return rc, out, err, uri, code


def case_device_flow(tmp, srv):
    probs = []
    d0 = srv.stats()["token"].get("urn:ietf:params:oauth:grant-type:device_code", 0)
    rc, out, err, uri, code = device_run(tmp, srv, "dev", DEV_PW)
    pbtest.expect(rc == 0, probs, "exit %s: %s" % (rc, err[-500:]))
    pbtest.expect(uri == srv.issuer + "/device", probs, "verification URL line %r" % uri)
    pbtest.expect(code and " " not in code and len(code) >= 6, probs, "user code line %r" % code)
    pbtest.expect(len(out) == 2, probs, "stdout has %d lines, want the URL and the code: %r" % (len(out), out))
    pbtest.expect("authorized" in err and "refresh token stored" in err, probs, "stderr: %s" % err[-400:])
    pbtest.expect("user_code=" in err, probs, "the complete URI is not on stderr: %s" % err[-400:])
    pbtest.expect("device default added" in err, probs, "the first device is not said: %s" % err[-400:])
    try:
        mode = stat.S_IMODE(os.stat(account_file("dev")).st_mode)
        pbtest.expect(mode == 0o600, probs, "account file mode %o" % mode)
    except OSError as e:
        probs.append("no account file: %s" % e)
    d1 = srv.stats()["token"].get("urn:ietf:params:oauth:grant-type:device_code", 0)
    pbtest.expect(d1 - d0 >= 1, probs, "no device_code grant at the token endpoint")
    rc, lout, lerr = passwd("dev", "--list")
    pbtest.expect(rc == 0 and "upstream secret: stored" in lout, probs, "passwd --list: %d %r %r" % (rc, lout, lerr))
    pbtest.expect(lout.count("device ") == 1 and "device default " in lout, probs, "devices: %r" % lout)
    stored_refresh(probs, srv, "dev", DEV_PW)
    return probs + sanitizer(err)


def case_wrong_then_right(tmp, srv):
    probs = []
    if not os.path.exists(account_file("dev")):
        rc, _, err, _, _ = device_run(tmp, srv, "dev", DEV_PW)
        pbtest.need(rc == 0, "the first authorization failed: %s" % err[-300:])
    before = open(account_file("dev"), "rb").read()
    old = stored_secret("dev", DEV_PW)
    calls = provider_calls(srv)
    t0 = time.time()
    run = Run(tmp, "dev", lines=["Not-the-device-pw-1"])
    rc, out, err = run.finish(30)
    took = time.time() - t0
    pbtest.expect(rc == 1, probs, "wrong password: exit %s" % rc)
    pbtest.expect("that password is no device's" in err, probs, "wrong password: %r" % err)
    one_line(err, probs, "wrong password")
    pbtest.expect(out == [], probs, "wrong password: stdout %r" % out)
    pbtest.expect(provider_calls(srv) == calls, probs, "the provider was asked: %s -> %s" % (calls, provider_calls(srv)))
    pbtest.expect(took < 20, probs, "the refusal took %.1f s" % took)
    pbtest.expect(open(account_file("dev"), "rb").read() == before, probs, "a refused run changed the file")
    rc, out, err, _, _ = device_run(tmp, srv, "dev", DEV_PW)
    pbtest.expect(rc == 0, probs, "right password: exit %s: %s" % (rc, err[-400:]))
    after = open(account_file("dev"), "rb").read()
    pbtest.expect(after != before, probs, "the new token was not stored")
    pbtest.expect("device default added" not in err, probs, "a second device was made: %s" % err)
    rc, lout, _ = passwd("dev", "--list")
    pbtest.expect(lout.count("device ") == 1 and "upstream secret: stored" in lout, probs, "--list: %r" % lout)
    new = stored_refresh(probs, srv, "dev", DEV_PW)
    pbtest.expect(new != old, probs, "the stored refresh token is the old one")
    return probs + sanitizer(err)


def case_denied(tmp, srv):
    probs = []
    rc, out, err, _, _ = device_run(tmp, srv, "dev", DEV_PW, deny=True)
    pbtest.expect(rc == 1, probs, "denied: exit %s" % rc)
    pbtest.expect("access_denied" in err and "not authorized" in err, probs, "denied: %s" % err[-400:])
    last = [ln for ln in err.splitlines() if ln.strip()][-1:]
    pbtest.expect(last and "authorize dev again" in last[0], probs, "the last line does not say what to do: %r" % last)
    return probs + sanitizer(err)


def case_expired(tmp, srv):
    probs = []
    rc, out, err, _, _ = device_run(tmp, srv, "dev", DEV_PW, approve=False,
                                    inject={"fail": 1, "status": 400, "body": {"error": "expired_token"}})
    pbtest.expect(rc == 1, probs, "expired: exit %s" % rc)
    pbtest.expect("expired_token" in err and "authorize dev again" in err, probs, "expired: %s" % err[-400:])
    return probs + sanitizer(err)


def case_confidential(tmp, srv):
    """A client with a secret: device flow, first device by --device."""
    probs = []
    rc, out, err, _, _ = device_run(tmp, srv, "conf", CONF_PW, args=["--device", "phone"])
    pbtest.expect(rc == 0, probs, "exit %s: %s" % (rc, err[-400:]))
    rc, lout, _ = passwd("conf", "--list")
    pbtest.expect("device phone " in lout and "upstream secret: stored" in lout, probs, "--list: %r" % lout)
    stored_refresh(probs, srv, "conf", CONF_PW)
    return probs + sanitizer(err)


def case_bad_secret(tmp, srv):
    probs = []
    run = Run(tmp, "badsecret", lines=["Bad-secret-pw-0d"])
    rc, out, err = run.finish(60)
    pbtest.expect(rc == 1, probs, "exit %s" % rc)
    pbtest.expect("invalid_client" in err and "oauth_client_id" in err, probs, "stderr: %s" % err[-400:])
    pbtest.expect(out == [], probs, "stdout %r" % out)
    pbtest.expect(not os.path.exists(account_file("badsecret")), probs, "a failed run wrote a file")
    return probs + sanitizer(err)


def case_down(tmp, srv):
    probs = []
    run = Run(tmp, "down", lines=["Down-dev-pw-55"])
    rc, out, err = run.finish(60)
    pbtest.expect(rc == 1, probs, "exit %s" % rc)
    one_line(err, probs, "endpoint down")
    pbtest.expect("reachable" in err, probs, "stderr: %s" % err[-400:])
    return probs + sanitizer(err)


def _meanwhile(tmp, srv, pw, change):
    """A device flow on account race, with change() run while it waits
    for the browser: (exit, stderr)."""
    run = Run(tmp, "race", lines=[pw])
    run.need_line("verification URL")
    code = run.need_line("user code")
    change()
    Browser(srv).approve_device(code)
    rc, out, err = run.finish()
    return rc, err


def case_file_changed_meanwhile(tmp, srv):
    """The file is read again at the end: a first device that someone else
    added meanwhile, a password changed meanwhile, a device added
    meanwhile (kept)."""
    probs = []
    pw_a, pw_b, pw_c, pw_d = "Race-pw-a-0001", "Race-pw-b-0002", "Race-pw-c-0003", "Race-pw-d-0004"

    def ok(*args, lines=()):
        rc, out, err = passwd(*args, lines=lines)
        pbtest.need(rc == 0, "passwd %s: %d %s" % (" ".join(args), rc, err))

    rc, err = _meanwhile(tmp, srv, pw_a, lambda: ok("race", "--device", "other", lines=[pw_b]))
    pbtest.expect(rc == 1 and "a device was added meanwhile" in err, probs, "first device raced: %s %s" % (rc, err[-300:]))
    rc, lout, _ = passwd("race", "--list")
    pbtest.expect("device other " in lout and "device default" not in lout and "not stored" in lout, probs,
                  "after the race: %r" % lout)
    rc, err = _meanwhile(tmp, srv, pw_b, lambda: ok("race", "--device", "other", lines=[pw_c, pw_b]))
    pbtest.expect(rc == 1 and "no device's any more" in err, probs, "password changed meanwhile: %s %s" % (rc, err[-300:]))
    rc, err = _meanwhile(tmp, srv, pw_c, lambda: ok("race", "--device", "second", lines=[pw_d, pw_c]))
    pbtest.expect(rc == 0, probs, "device added meanwhile: %s %s" % (rc, err[-300:]))
    rc, lout, _ = passwd("race", "--list")
    pbtest.expect("device other " in lout and "device second " in lout and "upstream secret: stored" in lout,
                  probs, "the device added meanwhile was lost: %r" % lout)
    stored_refresh(probs, srv, "race", pw_d)
    return probs + sanitizer(err)


# -- the loopback flow -----------------------------------------------------------------

def redirect_of(url):
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return q.get("redirect_uri", [""])[0]


def case_loopback_listener(tmp, srv):
    probs = []
    # The password line, then the end of the input: only the listener.
    run = Run(tmp, "web", lines=[WEB_PW], stdin_file=os.path.join(tmp, "web-stdin"))
    url = run.need_line("authorization URL")
    redirect = redirect_of(url)
    pbtest.need(redirect.startswith("http://127.0.0.1:"), "redirect_uri %r in %s" % (redirect, url))
    pbtest.expect(url.startswith(srv.auth_url + "?") and "code_challenge_method=S256" in url, probs,
                  "the URL line %r" % url)
    try:
        urllib.request.urlopen(redirect + "?code=evil&state=not-ours", timeout=10)
        probs.append("the listener took a foreign state")
    except urllib.error.HTTPError as e:
        pbtest.expect(e.code == 400, probs, "foreign state got %d" % e.code)
    pbtest.expect(run.alive(), probs, "a foreign state ended the run")
    st, page = Browser(srv).authorize(url, follow=True)
    pbtest.expect(st == 200, probs, "the listener's page: %s %s" % (st, page[:200]))
    rc, out, err = run.finish()
    pbtest.expect(rc == 0, probs, "exit %s: %s" % (rc, err[-400:]))
    pbtest.expect(out == [url], probs, "stdout %r, want the URL alone" % out)
    rc, lout, _ = passwd("web", "--list")
    pbtest.expect("device default " in lout and "upstream secret: stored" in lout, probs, "--list: %r" % lout)
    stored_refresh(probs, srv, "web", WEB_PW)
    return probs + sanitizer(err)


def case_loopback_paste(tmp, srv):
    probs = []
    if not os.path.exists(account_file("web")):
        return ["no account file from the listener case"]
    before = open(account_file("web"), "rb").read()
    run = Run(tmp, "web", args=["--flow", "loopback"], lines=[WEB_PW])
    url = run.need_line("authorization URL")
    redirect = redirect_of(url)
    back = Browser(srv).authorize(url, follow=False)
    pbtest.need(isinstance(back, str) and back.startswith(redirect),
                "the browser was not sent back to %s: %r" % (redirect, back))
    run.send("this is not a URL")
    run.send(back.replace("state=", "state=x"))
    time.sleep(0.5)
    pbtest.expect(run.alive(), probs, "garbage or a wrong state ended the run: %s" % run.err()[-300:])
    run.send("  " + back + "  ")
    rc, out, err = run.finish()
    pbtest.expect(rc == 0, probs, "exit %s: %s" % (rc, err[-400:]))
    pbtest.expect("that is not the URL the browser ended at" in err, probs, "no word on the garbage: %s" % err[-500:])
    pbtest.expect("another attempt" in err, probs, "no word on the wrong state: %s" % err[-500:])
    pbtest.expect(err.find("not the URL") < err.find("another attempt") < err.find("authorized"), probs,
                  "messages out of order: %s" % err[-500:])
    pbtest.expect(out == [url], probs, "stdout %r" % out)
    pbtest.expect(open(account_file("web"), "rb").read() != before, probs, "the new token was not stored")
    stored_refresh(probs, srv, "web", WEB_PW)
    return probs + sanitizer(err)


class Tty:
    """What a terminal shows: the master side of a pty."""

    def __init__(self, fd):
        self.fd = fd
        self.seen = b""

    def until(self, text, timeout=30):
        deadline = time.time() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("the terminal never showed %r; it shows %r" % (text, self.seen[-400:]))
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:         # the child closed its side
                    chunk = b""
                if not chunk:
                    raise AssertionError("the terminal closed before %r; it shows %r" % (text, self.seen[-400:]))
                self.seen += chunk

    def type(self, line):
        os.write(self.fd, line.encode() + b"\n")


def case_terminal(tmp, srv):
    """On a terminal: the first device password asked twice without echo,
    the prompt for a pasted URL, asked again after garbage; echo is on
    again at the end."""
    probs = []
    master, slave = pty.openpty()
    proc = subprocess.Popen([POPBRIDGE, "-c", CONF, "authorize", "tty"], stdin=slave, stderr=slave,
                            stdout=subprocess.PIPE, start_new_session=True,
                            preexec_fn=pbtest.die_with_parent)
    os.close(slave)
    term = Tty(master)
    back = None
    try:
        term.until("New password for device default of account tty: ")
        term.type(TTY_PW)
        term.until("Again: ")
        term.type(TTY_PW)
        url = proc.stdout.readline().decode().strip()
        pbtest.need(url.startswith(srv.auth_url + "?"), "stdout %r" % url)
        term.until("or paste the URL your browser ended at: ")
        back = Browser(srv).authorize(url, follow=False)
        pbtest.need(isinstance(back, str), "the browser was not sent back: %r" % (back,))
        term.type("garbage")
        term.until("still waiting")
        term.until("or paste the URL your browser ended at: ")
        term.type(back)
        term.until("refresh token stored", RUN_WAIT)
        rc = proc.wait(RUN_WAIT)
        pbtest.expect(rc == 0, probs, "exit %s" % rc)
        pbtest.expect(proc.stdout.read() == b"", probs, "more on stdout than the URL")
        attrs = termios.tcgetattr(master)
        pbtest.expect(attrs[3] & termios.ECHO, probs, "echo is still off after the run")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
        shown = term.seen.decode("utf-8", "replace")
        # The pasted URL is the terminal's echo of what was typed.
        OUTPUTS.append(("terminal", shown.replace(back, "<pasted>") if back else shown))
    pbtest.expect(TTY_PW not in shown, probs, "the terminal echoed the device password")
    stored_refresh(probs, srv, "tty", TTY_PW)
    return probs + sanitizer(shown)


# -- refusals --------------------------------------------------------------------------

def case_refusals(tmp, srv):
    probs = []
    calls = provider_calls(srv)
    run = Run(tmp, "web", args=["--flow", "device"], lines=[WEB_PW])
    rc, out, err = run.finish(30)
    pbtest.expect(rc == 2, probs, "--flow device without a device URL: exit %s" % rc)
    pbtest.expect("oauth_device_url" in err, probs, "--flow device: %r" % err)
    one_line(err, probs, "--flow device")
    run = Run(tmp, "pw", lines=["Pw-dev-pw-0001"])
    rc, out, err = run.finish(30)
    pbtest.expect(rc == 1, probs, "auth = password: exit %s" % rc)
    pbtest.expect("not oauth2" in err, probs, "auth = password: %r" % err)
    one_line(err, probs, "auth = password")
    run = Run(tmp, "dev", args=["--flow", "sideways"])
    rc, out, err = run.finish(30)
    pbtest.expect(rc == 2, probs, "--flow sideways: exit %s" % rc)
    rc, out, err = passwd("dev", "--upstream", lines=["some-secret", DEV_PW])
    pbtest.expect(rc == 1, probs, "passwd --upstream on oauth2: exit %s" % rc)
    pbtest.expect("account dev uses OAuth2: run popbridge authorize dev" in err, probs, "passwd --upstream: %r" % err)
    one_line(err, probs, "passwd --upstream")
    pbtest.expect(provider_calls(srv) == calls, probs, "a refusal asked the provider")
    return probs


# -- secrets -------------------------------------------------------------------------

def forms(secret):
    return {secret, base64.b64encode(secret.encode()).decode()}


def case_no_secret_shown(tmp, srv):
    probs = []
    secrets = {v for v in srv.issued() if v and len(v) >= 8} | {CONF_SECRET}
    kinds = {e for e in ("access_token", "refresh_token", "device_code", "authorization_code",
                         "code_verifier") if srv.issued(e)}
    pbtest.expect(len(kinds) == 5, probs, "the provider recorded only %s" % sorted(kinds))
    pbtest.need(len(secrets) >= 10, "only %d secrets recorded" % len(secrets))
    files = []
    for name in sorted(os.listdir(STATE)):
        with open(os.path.join(STATE, name), "rb") as f:
            files.append(("state file " + name, f.read().decode("latin-1")))
    texts = OUTPUTS + files
    pbtest.note("%d secrets looked for in %d outputs and %d state files"
                % (len(secrets), len(OUTPUTS), len(files)))
    for name, text in texts:
        for sec in secrets:
            for form in forms(sec):
                if form in text:
                    probs.append("%s shows a secret (%s...)" % (name, form[:6]))
    for pw in (DEV_PW, WEB_PW, CONF_PW, TTY_PW):
        for name, text in texts:
            if pw in text:
                probs.append("%s shows a device password" % name)
    for name in os.listdir(STATE):
        mode = stat.S_IMODE(os.stat(os.path.join(STATE, name)).st_mode)
        pbtest.expect(mode & 0o077 == 0, probs, "%s has mode %o" % (name, mode))
    return probs


def body(tmp):
    global CONF, STATE
    why = oauthserver.missing()
    if why:
        R.fail("the OAuth tests' server is installed", [why])
        return
    srv = OAuthServer(os.path.join(tmp, "provider"), access_ttl=3600).start()
    STATE = os.path.join(tmp, "state")
    CONF = os.path.join(tmp, "popbridge.ini")
    with open(CONF, "w") as f:
        f.write(config_text(srv, pbtest.free_port()))
    R.case("device flow: the URL and the code alone on stdout, the browser approves, the token stored (0600)",
           case_device_flow, tmp, srv)
    R.case("a wrong device password fails before any request; the right one authorizes again",
           case_wrong_then_right, tmp, srv)
    R.case("device flow: the user denies: exit 1, access_denied", case_denied, tmp, srv)
    R.case("device flow: expired_token: exit 1, run it again", case_expired, tmp, srv)
    R.case("device flow with a confidential client and --device for the first device",
           case_confidential, tmp, srv)
    R.case("a wrong client secret: exit 1, invalid_client, check oauth_client_id", case_bad_secret, tmp, srv)
    R.case("endpoints down: exit 1 with one line", case_down, tmp, srv)
    R.case("the file changed during the flow: read again, unlocked again, a device added meanwhile kept",
           case_file_changed_meanwhile, tmp, srv)
    R.case("loopback flow through the listener (a foreign state ignored); stdin a file that ends",
           case_loopback_listener, tmp, srv)
    R.case("loopback flow by a pasted URL: garbage and a wrong state refused, the right URL taken",
           case_loopback_paste, tmp, srv)
    R.case("on a terminal: the password twice without echo, the paste prompt, echo on again",
           case_terminal, tmp, srv)
    R.case("refusals: --flow without its endpoint (2), auth = password (1), passwd --upstream on oauth2 (1)",
           case_refusals, tmp, srv)
    R.case("no token, code, verifier, client secret or device password in any output or state file",
           case_no_secret_shown, tmp, srv)


if __name__ == "__main__":
    sys.exit(pbtest.script_main(R, "authorize cases", body, tools=("node",)))
