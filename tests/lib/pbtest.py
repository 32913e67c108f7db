"""Harness plumbing shared by the self-contained integration scripts
(tests/integration/test_faults.py, test_tls.py, test_policies.py,
test_hostile.py, test_proxy.py): the scratch directory, signals, free
ports, private Dovecot instances (tests/lib/dovecot.sh), popbridge
processes with their logs, the end-of-run log checks, and raw POP3 line
helpers. Result reporting stays in tests/integration/common.py (Report).

Environment honoured here: TEST_TMP (scratch directory; a private one
otherwise), KEEP_TMP=1 (keep that private one).
"""

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

from pop3wire import Pop3, Pop3Closed

HOST = "127.0.0.1"
LIB = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(LIB, "..", ".."))
REPLY_WAIT = 10.0           # default wait for one POP3 reply (read_line, cmd)

SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                       r"SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)")


def default_popbridge():
    """$POPBRIDGE, or build/asan/popbridge."""
    return os.environ.get("POPBRIDGE") or os.path.join(ROOT, "build", "asan", "popbridge")


def note(msg):
    for ln in str(msg).splitlines() or [""]:
        print("# " + ln, flush=True)


# -- the script's own process ------------------------------------------------------------

def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def catch_signals(*signums):
    """SIGTERM (and whatever else is named) raise KeyboardInterrupt, so
    that the script's finally: clauses clean up."""
    for s in (signal.SIGTERM,) + signums:
        signal.signal(s, on_signal)


def die_with_parent():
    """In a child (preexec_fn): SIGTERM when this script dies, however it dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def become_subreaper():
    """Dovecot is started by a bash that exits at once: let it become our
    child rather than init's, so that a harness killing our process tree
    also finds it."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)                 # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def scratch_dir(prefix, chmod=True):
    """(directory, own?): $TEST_TMP, or a private mkdtemp(prefix)."""
    own = "TEST_TMP" not in os.environ
    d = tempfile.mkdtemp(prefix=prefix) if own else os.environ["TEST_TMP"]
    os.makedirs(d, exist_ok=True)
    if chmod:
        os.chmod(d, 0o755)          # Dovecot's users must traverse it
    return d, own


def remove_scratch(d, own):
    """Removes a private scratch directory unless KEEP_TMP=1."""
    if own and os.environ.get("KEEP_TMP") != "1":
        shutil.rmtree(d, ignore_errors=True)
    elif own:
        print("# kept %s" % d)


def skip_for_target(ok_line):
    """run.sh's TARGET other than "popbridge" (Dovecot's own POP3, the
    reference model): prints ok_line % TARGET and a summary and returns
    0; None when the cases are to run."""
    target = os.environ.get("TARGET", "popbridge")
    if target == "popbridge":
        return None
    print(ok_line % target)
    print("1 passed, 0 failed")
    return 0


def missing_binary(script, path):
    """1 (after saying so) when path is not an executable popbridge."""
    if path and os.access(path, os.X_OK):
        return None
    print("%s: POPBRIDGE must name the popbridge binary (got %r)" % (script, path),
          file=sys.stderr)
    print("0 passed, 1 failed")
    return 1


def run_guarded(report, what, body, crash_lines=6):
    """Runs body(); an interruption (Ctrl-C, or a signal caught by
    catch_signals) or, unless crash_lines is None, an exception becomes
    the failure "the WHAT ran to the end"."""
    try:
        body()
    except KeyboardInterrupt as e:
        report.fail("the %s ran to the end" % what, ["interrupted (%s)" % e])
    except Exception as e:
        if crash_lines is None:
            raise
        tb = traceback.format_exc().strip().splitlines()
        report.fail("the %s ran to the end" % what,
                    ["%s: %s" % (type(e).__name__, e)] + tb[-crash_lines:])


def summary(report):
    """The last line, and the exit status."""
    print("%d passed, %d failed" % (report.passed, report.failed), flush=True)
    return 1 if report.failed else 0


def script_main(report, what, script, popbridge, prefix, body, cleanup):
    """The frame of a self-contained case script: skip for another TARGET,
    check the binary, make the scratch directory, run body(scratch) guarded
    (an interruption or crash becomes "the WHAT ran to the end"), always
    run cleanup(), remove the scratch directory, print the summary.
    Returns the exit status."""
    rc = skip_for_target("ok - " + what + " skipped for TARGET=%s")
    if rc is None:
        rc = missing_binary(script, popbridge)
    if rc is not None:
        return rc
    catch_signals(signal.SIGHUP)
    become_subreaper()
    tmp, own_tmp = scratch_dir(prefix)
    try:
        run_guarded(report, what, lambda: body(tmp))
    finally:
        cleanup()
        remove_scratch(tmp, own_tmp)
    return summary(report)


def free_port(taken=()):
    """A port the kernel hands out on 127.0.0.1, not in taken."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in taken:
            return port


# -- logs ----------------------------------------------------------------------------------

def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_text(path, off=0):
    """The file from offset off, decoded leniently; "" if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(off)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# -- popbridge processes -------------------------------------------------------------------

def spawn(binary, conf, log_path, append=False):
    """binary -c conf, stdout and stderr to log_path; dies with us."""
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen([binary, "-c", conf], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)


def wait_greeting(proc, port, src=None, secs=30, step=0.1):
    """Waits until a connection to port gets a +OK greeting: None then,
    "exited" when proc ends first, "timeout" after secs."""
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            if src is None:
                s = socket.create_connection((HOST, port), timeout=2)
                s.settimeout(3)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((src, 0))
                s.settimeout(3)
                s.connect((HOST, port))
            data = s.recv(512)
            s.close()
            if data.startswith(b"+OK"):
                return None
        except OSError:
            pass
        time.sleep(step)
    return "timeout"



def plain_conf(pop3_port, imap_port, state, maildrop=None, level="debug"):
    """A popbridge configuration for tests: plain POP3 on 127.0.0.1, an
    upstream without TLS on 127.0.0.1, no login delay; maildrop is a
    {key: value} of [maildrop] settings."""
    text = ("[listen]\npop3 = 127.0.0.1:%d\npop3s =\n\n"
            "[upstream]\nhost = 127.0.0.1\nport = %d\ntls = none\ntimeout = 10\n\n"
            % (pop3_port, imap_port))
    if maildrop:
        text += "[maildrop]\n" + "".join("%s = %s\n" % kv for kv in maildrop.items()) + "\n"
    return text + ("[state]\ndir = %s\n\n"
                   "[limits]\nauth_fail_delay = 0\nidle_timeout = 60\nshutdown_grace = 5\n\n"
                   "[log]\nlevel = %s\n" % (state, level))


class Popbridge:
    """Base for one popbridge process: the subclass sets name, port, log
    (the log file's path) and proc (via spawn)."""

    name = "popbridge"
    proc = None
    log = ""
    log_flags = 0           # re flags for wait_log's pattern (re.M: ^ and $ per line)

    def spawn(self, binary, conf, append=False):
        self.proc = spawn(binary, conf, self.log, append)
        return self.proc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def offset(self):
        return file_size(self.log)

    def text(self, off=0):
        return read_text(self.log, off)

    def tail(self, n=8, off=0, interesting=None):
        lines = self.text(off).splitlines()
        if interesting is not None:
            lines = [ln for ln in lines if re.search(interesting, ln)]
        return lines[-n:]

    def wait_log(self, off, pattern, timeout):
        """The first match of pattern in the log after off, waiting up to
        timeout seconds; None if none."""
        deadline = time.time() + timeout
        rx = re.compile(pattern, self.log_flags)
        while True:
            m = rx.search(self.text(off))
            if m or time.time() >= deadline:
                return m
            time.sleep(0.05)

    def active(self):
        t = self.text()
        return (len(re.findall(r"session=\d+ connect ", t))
                - len(re.findall(r"session=\d+ end ", t)))

    def wait_active(self, n, timeout=10):
        deadline = time.time() + timeout
        while self.active() != n and time.time() < deadline:
            time.sleep(0.05)
        return self.active()

    def end_line(self, sid, timeout=5):
        m = self.wait_log(0, r"session=%s end [^\n]*" % sid, timeout)
        return m.group(0) if m else None

    def stop(self, timeout=20):
        """SIGTERM; the exit status, or a string saying what went wrong."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return "still running %d s after SIGTERM (killed)" % timeout

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def finish_checks(report, pb):
    """The end of a script: pb exits 0 on SIGTERM, and its log holds no
    sanitizer report and no raw control byte."""
    rc = pb.stop()
    if rc == 0:
        report.ok("%s popbridge exits 0 on SIGTERM" % pb.name)
    else:
        report.fail("%s popbridge exits 0 on SIGTERM" % pb.name,
                    ["exit status %s" % rc] + pb.tail(8))
    with open(pb.log, "rb") as f:
        log = f.read()
    san = [ln for ln in log.decode("utf-8", "replace").splitlines() if SANITIZER.search(ln)]
    if san:
        report.fail("no sanitizer reports in the %s log" % pb.name, san[:12])
    else:
        report.ok("no sanitizer reports in the %s log" % pb.name)
    ctl = sorted({b for b in log if (b < 0x20 and b != 0x0a) or b == 0x7f})
    if ctl:
        i = min(log.find(bytes([b])) for b in ctl)
        report.fail("the %s log holds no raw control bytes" % pb.name,
                    ["bytes %s, first near %r" % (ctl, log[max(0, i - 60):i + 20])])
    else:
        report.ok("the %s log holds no raw control bytes" % pb.name)


def secret_forms(user, password):
    """How a password can leak into a log (bytes): in clear, IMAP-quoted,
    and inside an AUTH PLAIN token."""
    return {password, password.replace(b"\\", b"\\\\").replace(b'"', b'\\"'),
            base64.b64encode(b"\0" + user + b"\0" + password)}


# -- Dovecot (tests/lib/dovecot.sh) ----------------------------------------------------------

DOVECOT_ENV = ("DOVECOT_POP3", "DOVECOT_SSL_CERT", "DOVECOT_SSL_KEY",
               "DOVECOT_EXTRA_CONF", "DOVECOT_USERS")


def users_file(path):
    """{user: password} from a Dovecot passwd-file ({PLAIN} stripped)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            user, _, pw = line.rstrip("\n").partition(":")
            if user:
                out[user] = pw[len("{PLAIN}"):] if pw.startswith("{PLAIN}") else pw
    return out


class Dovecot:
    """A private Dovecot in directory d, run through dovecot.sh's
    dovecot_start / dovecot_stop; users ({user: password}) and extra
    (configuration text) as DOVECOT_USERS / DOVECOT_EXTRA_CONF."""

    stop_wait = 30          # seconds dovecot_stop may take

    def __init__(self, d, users=None, extra=None):
        self.dir = d
        self.users = users
        self.extra = extra
        self.pid = None
        self.port = None

    def _bash(self, script, timeout):
        env = dict(os.environ)
        for k in DOVECOT_ENV:
            env.pop(k, None)
        env["PB_LIB"] = LIB
        env["PB_DIR"] = self.dir
        if self.users:
            env["DOVECOT_USERS"] = "\n".join("%s:%s" % kv for kv in self.users.items())
        if self.extra:
            env["DOVECOT_EXTRA_CONF"] = self.extra
        with open(os.path.join(self.dir, "harness.out"), "ab") as out:
            r = subprocess.run(["bash", "-c", '. "$PB_LIB/dovecot.sh" && ' + script],
                               env=env, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=out, timeout=timeout)
        return r.returncode

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        rc = self._bash('dovecot_start "$PB_DIR"', 90)
        if rc != 0:
            try:
                with open(os.path.join(self.dir, "harness.out"), errors="replace") as f:
                    tail = f.read().splitlines()[-10:]
            except OSError:
                tail = []
            raise RuntimeError("dovecot_start failed (%d): %s" % (rc, " | ".join(tail)))
        ports = {}
        with open(os.path.join(self.dir, "ports")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                ports[k] = v
        self.port = int(ports["DOVECOT_IMAP_PORT"])
        with open(os.path.join(self.dir, "dovecot.pid")) as f:
            self.pid = int(f.read().strip())

    def stop(self):
        if self.pid is None:
            return
        try:
            self._bash('dovecot_stop "$PB_DIR"', self.stop_wait)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.waitpid(self.pid, os.WNOHANG)    # ours as subreaper
        except ChildProcessError:
            pass
        self.pid = None

    def passwords(self):
        return users_file(os.path.join(self.dir, "users"))


# -- raw POP3 lines ------------------------------------------------------------------------


class Pop3Session:
    """A logged-in POP3 session (USER/PASS) to pb for the case scripts;
    AssertionError on -ERR or a lost connection (saying so when popbridge
    is no longer running: pb.alive())."""

    def __init__(self, pb, user, pw, timeout=REPLY_WAIT):
        self.pb = pb
        self.what = "%s@%s" % (user, pb.name)
        try:
            self.p = Pop3(HOST, pb.port, timeout=timeout)
            r = self.p.login(user, pw)
        except (Pop3Closed, OSError) as e:
            raise AssertionError("%s: login: %s%s" % (self.what, e, self.died())) from None
        self.login_reply = r
        if not r.startswith(b"+OK"):
            self.p.close()
            raise AssertionError("%s: login -> %r" % (self.what, r))

    def died(self):
        time.sleep(0.3)
        return "" if self.pb.alive() else "; popbridge died"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.p.close()
        return False

    def ok(self, cmd):
        try:
            r = self.p.cmd(cmd)
        except (Pop3Closed, OSError) as e:
            raise AssertionError("%s: %s: %s%s" % (self.what, cmd, str(e)[:120],
                                                   self.died())) from None
        if not r.startswith(b"+OK"):
            raise AssertionError("%s: %s -> %r" % (self.what, cmd, r[:200]))
        return r

    def multi(self, cmd):
        self.ok(cmd)
        try:
            _, data, problems = self.p.multi()
        except (Pop3Closed, OSError) as e:
            raise AssertionError("%s: %s: connection lost in the response (%s)%s" % (
                self.what, cmd, str(e)[:120], self.died())) from None
        if problems:
            raise AssertionError("%s: %s: %s" % (self.what, cmd, "; ".join(problems[:3])))
        return data

    def stat(self):
        r = self.ok("STAT")
        m = re.match(rb"\+OK (\d+) (\d+)", r)
        if not m:
            raise AssertionError("%s: STAT -> %r" % (self.what, r))
        return int(m.group(1)), int(m.group(2))

    def _listing(self, cmd, conv):
        out = []
        for ln in self.multi(cmd).splitlines():
            parts = ln.split(b" ")
            if len(parts) != 2 or int(parts[0]) != len(out) + 1:
                raise AssertionError("%s: %s line %r" % (self.what, cmd, ln))
            out.append(conv(parts[1]))
        return out

    def uidl(self):
        """[uidl] in message-number order."""
        return self._listing("UIDL", lambda b: b.decode("latin-1"))

    def list(self):
        return self._listing("LIST", int)

    def retr(self, n):
        return self.multi("RETR %d" % n)

    def top(self, n, lines=0):
        return self.multi("TOP %d %d" % (n, lines))

    def dele(self, n):
        self.ok("DELE %d" % n)

    def quit(self):
        """QUIT's reply, whatever it is; the connection is closed."""
        try:
            r = self.p.cmd("QUIT")
        finally:
            self.p.close()
        return r

    def quit_ok(self):
        r = self.quit()
        if not r.startswith(b"+OK"):
            raise AssertionError("%s: QUIT -> %r" % (self.what, r))
        return r


def drain_until_close(sock, timeout, got=b""):
    """(got + the bytes received, closed?, seconds) until the peer closes
    or timeout seconds pass."""
    t0 = time.time()
    deadline = t0 + timeout
    try:
        while True:
            left = deadline - time.time()
            if left <= 0:
                return got, False, time.time() - t0
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return got, True, time.time() - t0
            got += chunk
    except socket.timeout:
        return got, False, time.time() - t0
    except OSError:
        return got, True, time.time() - t0



TIMEOUT = object()          # read_line: nothing within the time allowed


def read_line(p, timeout=REPLY_WAIT):
    """The next line; None when the server closed; TIMEOUT."""
    p.sock.settimeout(timeout)
    try:
        return p.line()
    except Pop3Closed:
        return None
    except socket.timeout:
        return TIMEOUT
    except OSError:             # ssl.SSLError included
        return None


def cmd(p, text, timeout=REPLY_WAIT):
    try:
        p.send(text + b"\r\n")
    except OSError:
        return None
    return read_line(p, timeout)


def show(r):
    if r is None:
        return "(connection closed, no reply)"
    if r is TIMEOUT:
        return "(no reply in time)"
    return repr(r[:200])


def is_ok(r):
    return isinstance(r, bytes) and r.startswith(b"+OK")


def is_err(r):
    return isinstance(r, bytes) and r.startswith(b"-ERR")


def want_temp(what, r):
    if isinstance(r, bytes) and r.startswith(b"-ERR [SYS/TEMP]") and b"wait" in r.lower():
        return []
    return ["%s -> %s, want -ERR [SYS/TEMP] ... wait ..." % (what, show(r))]
