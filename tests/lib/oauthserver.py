#!/usr/bin/env python3
"""A real OAuth 2.0 authorization server for the tests, and a browser that
plays the user.

    srv = OAuthServer(DIR, access_ttl=3600).start()   # oidc-provider under node
    srv.token_url, srv.device_url, srv.auth_url, srv.introspection_url
    srv.issued()          every token, code and secret it handed out
    srv.stats()           token requests by grant type, and the rest
    srv.control(fail=2, status=503, body="<html>")   the next token requests fail
    srv.revoke(token)     RFC 7009 revocation
    srv.pause() / srv.resume()    SIGSTOP / SIGCONT: a server that hangs
    srv.stop()

    b = Browser(srv)
    b.approve_device(user_code, login="alice")        # or deny=True
    url = b.authorize(auth_url, login="alice", follow=False)  # the redirect URL
    b.authorize(auth_url)           # follows the redirect to the loopback listener

The server is tests/lib/oauthserver.js (oidc-provider, pinned in
tests/lib/package.json; `sh tests/lib/deps.sh` installs it into
build/oauth-node, or $OAUTH_NODE_DIR) on a kernel-chosen 127.0.0.1 port;
its issuer is http://127.0.0.1:PORT. The memory adapter keeps every grant
in the process: a restart forgets them. Everything started here stops
with the test (pbtest's cleanup, or stop()).

    oauthserver.py DIR     runs one in the foreground (for trying things)
"""

import html
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

LIB = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(LIB, "..", ".."))
NODE_DIR = os.environ.get("OAUTH_NODE_DIR") or os.path.join(ROOT, "build", "oauth-node")
SCRIPT = os.path.join(LIB, "oauthserver.js")

PUBLIC_CLIENT = "popbridge-test"
CONF_CLIENT = "popbridge-conf"
CONF_SECRET = "conf-secret-2b7e"
DOVECOT_CLIENT = "dovecot"
DOVECOT_SECRET = "dovecot-secret-9f4a"
SCOPE = "openid offline_access imap"


def missing():
    """Why the server cannot run here ("" when it can)."""
    if not any(os.access(os.path.join(p, "node"), os.X_OK)
               for p in os.environ.get("PATH", "").split(os.pathsep)):
        return "node is not installed (sh tests/lib/deps.sh)"
    if not os.path.exists(os.path.join(NODE_DIR, "node_modules", "oidc-provider", "package.json")):
        return "oidc-provider is not installed in %s (sh tests/lib/deps.sh)" % NODE_DIR
    return ""


def _register(obj):
    """Stopped with the other processes of a pbtest script, if one runs."""
    mod = sys.modules.get("pbtest")
    if mod is not None:
        mod._register(obj)


class OAuthServer:
    def __init__(self, d, access_ttl=3600, users=("alice",), port=0):
        self.dir = d
        self.name = "oauthserver"
        self.access_ttl = access_ttl
        self.users = list(users)
        self.port = port
        self.proc = None
        self.log = os.path.join(d, "oauthserver.log")
        os.makedirs(d, exist_ok=True)
        _register(self)

    # -- the process --------------------------------------------------------------

    def start(self, timeout=30):
        env = dict(os.environ)
        env.update({
            "OAUTH_NODE_DIR": NODE_DIR,
            "OAUTH_PORT": str(self.port),
            "OAUTH_ACCESS_TTL": str(self.access_ttl),
            "OAUTH_STATE_DIR": self.dir,
            "OAUTH_USERS": ",".join(self.users),
            "NODE_NO_WARNINGS": "1",
        })
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["node", SCRIPT], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, env=env)
        deadline = time.time() + timeout
        line = b""
        os.set_blocking(self.proc.stdout.fileno(), False)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                chunk = self.proc.stdout.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                line += chunk
                m = re.search(rb"listening (\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    return self
            time.sleep(0.05)
        tail = open(self.log, "rb").read().decode("utf-8", "replace")[-800:]
        self.stop()
        raise RuntimeError("oauthserver.js did not start: %s" % tail)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc is None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGCONT)
        except OSError:
            pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    release = stop

    # -- where things are ------------------------------------------------------------

    @property
    def issuer(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def token_url(self):
        return self.issuer + "/token"

    @property
    def device_url(self):
        return self.issuer + "/device/auth"

    @property
    def auth_url(self):
        return self.issuer + "/auth"

    @property
    def introspection_url(self):
        return self.issuer + "/token/introspection"

    @property
    def revocation_url(self):
        return self.issuer + "/token/revocation"

    # -- what it did -------------------------------------------------------------------

    def _jsonl(self, name):
        out = []
        try:
            with open(os.path.join(self.dir, name), encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        out.append(json.loads(line))
        except OSError:
            pass
        return out

    def issued(self, kind=None):
        """The values of every token, code and client secret it handed out."""
        return [e["value"] for e in self._jsonl("issued.jsonl")
                if kind is None or e["kind"] == kind]

    def events(self):
        return self._jsonl("events.jsonl")

    def _call(self, path, data=None, headers=None, timeout=10):
        req = urllib.request.Request(self.issuer + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stats(self):
        return json.loads(self._call("/test/stats")[1])

    def control(self, **kw):
        st, _ = self._call("/test/control", json.dumps(kw).encode(),
                           {"Content-Type": "application/json"})
        assert st == 200, "control: %d" % st

    def revoke(self, token, hint="refresh_token", client_id=PUBLIC_CLIENT):
        body = urllib.parse.urlencode({"token": token, "token_type_hint": hint,
                                       "client_id": client_id}).encode()
        return self._call("/token/revocation", body,
                          {"Content-Type": "application/x-www-form-urlencoded"})[0]

    def introspect(self, token):
        """The introspection answer (as Dovecot would ask)."""
        import base64
        auth = base64.b64encode(("%s:%s" % (DOVECOT_CLIENT, DOVECOT_SECRET)).encode()).decode()
        st, body = self._call("/token/introspection", urllib.parse.urlencode({"token": token}).encode(),
                              {"Content-Type": "application/x-www-form-urlencoded",
                               "Authorization": "Basic " + auth})
        return json.loads(body) if st == 200 else {"status": st}

    def dovecot_conf(self, path, scope="imap"):
        """Writes the passdb oauth2 args file for a Dovecot that checks
        tokens here (TESTBED.md) and returns the dovecot.conf text that
        uses it."""
        with open(path, "w") as f:
            f.write("introspection_mode = post\n"
                    "introspection_url = http://%s:%s@127.0.0.1:%d/token/introspection\n"
                    "username_attribute = sub\n"
                    "active_attribute = active\n"
                    "active_value = true\n"
                    "scope = %s\n" % (DOVECOT_CLIENT, DOVECOT_SECRET, self.port, scope))
        return ("auth_mechanisms = xoauth2 oauthbearer\n"
                "passdb {\n"
                "  driver = oauth2\n"
                "  mechanisms = xoauth2 oauthbearer\n"
                "  args = %s\n"
                "}\n" % path)


# -- the browser -----------------------------------------------------------------------

class _Stop(Exception):
    def __init__(self, url):
        Exception.__init__(self, url)
        self.url = url


class _Redirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, browser):
        urllib.request.HTTPRedirectHandler.__init__(self)
        self.browser = browser

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.browser.chain.append(newurl)
        stop = self.browser.stop_at
        if stop and not newurl.startswith(self.browser.server.issuer + "/"):
            raise _Stop(newurl)
        return urllib.request.HTTPRedirectHandler.redirect_request(
            self, req, fp, code, msg, headers, newurl)


_INPUT = re.compile(r'<input\b[^>]*?\bname="([^"]*)"[^>]*?\bvalue="([^"]*)"', re.S)
_INPUT2 = re.compile(r'<input\b[^>]*?\bvalue="([^"]*)"[^>]*?\bname="([^"]*)"', re.S)
_ACTION = re.compile(r'<form\b[^>]*?\baction="([^"]*)"', re.S)


class Browser:
    """A user agent with cookies that logs in and consents at OAuthServer's
    own interaction routes."""

    def __init__(self, server, timeout=15):
        self.server = server
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.chain = []
        self.stop_at = False
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _Redirects(self))

    def _open(self, url, form=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(url, data=data)
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return r.status, r.geturl(), r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.geturl(), e.read().decode("utf-8", "replace")

    @staticmethod
    def _form(page):
        fields = {html.unescape(k): html.unescape(v) for k, v in _INPUT.findall(page)}
        for v, k in _INPUT2.findall(page):
            fields.setdefault(html.unescape(k), html.unescape(v))
        m = _ACTION.search(page)
        return (html.unescape(m.group(1)) if m else None), fields

    def _interact(self, url, login, deny):
        """Runs login and consent from an /interaction/UID URL; returns the
        last (status, url, page)."""
        res = None
        for _ in range(6):
            m = re.search(r"/interaction/([^/?#]+)$", url)
            if not m:
                return res
            st, _, page = self._open(url)
            assert st == 200, "interaction page: %d %s" % (st, page[:200])
            prompt = json.loads(page)["prompt"]
            if deny:
                res = self._open(url + "/abort", {})
            elif prompt == "login":
                res = self._open(url + "/login", {"login": login})
            else:
                res = self._open(url + "/confirm", {})
            url = res[1]
        return res

    def approve_device(self, user_code, login="alice", deny=False):
        """Types user_code at the device page, logs in and consents (deny:
        aborts at the confirmation). Returns the last page's text."""
        self.stop_at = False
        base = self.server.issuer + "/device"
        st, url, page = self._open(base + "?" + urllib.parse.urlencode({"user_code": user_code}))
        assert st == 200, "device page: %d" % st
        for _ in range(3):
            action, fields = self._form(page)
            if action is None or "xsrf" not in fields:
                break
            if "confirm" in fields and deny:
                fields.pop("confirm")
                fields["abort"] = "yes"
            st, url, page = self._open(urllib.parse.urljoin(url, action), fields)
            if "/interaction/" in url:
                st, url, page = self._interact(url, login, False)
                break
            if deny and "abort" in fields:
                break
        return page

    def authorize(self, auth_url, login="alice", deny=False, follow=True):
        """Opens auth_url, logs in, consents (deny: aborts). follow: the
        final redirect is followed (to the loopback listener) and its
        (status, page) returned; else the redirect URL is returned."""
        self.stop_at = not follow
        try:
            st, url, page = self._open(auth_url)
            if "/interaction/" in url:
                st, url, page = self._interact(url, login, deny)
        except _Stop as s:
            return s.url
        except urllib.error.URLError as e:
            return ("error", str(e))
        if follow:
            return st, page
        raise AssertionError("no redirect to the client (ended at %s: %d %s)" % (url, st, page[:200]))


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: oauthserver.py DIR")
    why = missing()
    if why:
        sys.exit(why)
    srv = OAuthServer(argv[1]).start()
    print("issuer %s (log %s); Ctrl-C stops it" % (srv.issuer, srv.log), flush=True)
    try:
        while srv.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    srv.stop()


if __name__ == "__main__":
    main(sys.argv)
