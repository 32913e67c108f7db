"""The integration-test harness: everything the case scripts in
tests/integration (and tests/soak) share. One module, one of each thing:

  reporting     Report (ok / not ok lines, counts, the case runner with
                ONLY_CASE), Watch (a case's popbridges: deaths, log lines),
                problems_of, need, expect, first_diff, note
  the frame     script_main (TARGET skip, binary and tool checks, scratch
                directory with TEST_TMP/KEEP_TMP, signals, cleanup of every
                process started here, the last line "N passed, M failed")
  run.sh's      POP3_PORT, IMAP_PORT, TARGET, users(), pop3(), login(): for
  server        the scripts that test the POP3 server run.sh started
  processes     free_port, Popbridge (config, start/stop/restart, log
                queries), final_checks / finish_checks, Dovecot
                (tests/lib/dovecot.sh), Relay and SilentServer
  expectations  Expected (what POP3 must deliver, read over IMAP)
  POP3          Client (plain, implicit TLS, STLS, source address, PROXY
                header), Pop3Session (logged in, AssertionError on -ERR),
                read_line / cmd / show / is_ok / is_err / is_temp / want_temp,
                capa, multi, uidl_problems, drain_until_close
  real clients  Fetchmail, Mpop (an MDA into a directory), fetchmail_want,
                mpop_want, compare_deliveries, run_client

Environment: TEST_TMP (scratch directory; a private one otherwise),
KEEP_TMP=1 (keep that private one), POPBRIDGE (the binary; default
build/asan/popbridge), TARGET (run.sh's), ONLY_CASE=substring (only the
cases whose name contains it), CASE_TIMEOUT (reply wait against run.sh's
server, default 20 s). See tests/integration/README.md.
"""

import base64
import collections
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import corpus
import imapfetch
from pop3wire import Pop3, Pop3Closed

HOST = "127.0.0.1"
LIB = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(LIB, "..", ".."))
REPLY_WAIT = 10.0           # default wait for one POP3 reply (read_line, cmd)
CLIENT_TIMEOUT = 120        # one run of curl / fetchmail / mpop

SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                       r"SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)")
CRASH_RE = re.compile(r"Assertion|assert|abort|AddressSanitizer|LeakSanitizer|"
                      r"runtime error|SUMMARY|Segmentation")
SIG_NAMES = {-s.value: s.name for s in signal.Signals}


def default_popbridge():
    """$POPBRIDGE, or build/asan/popbridge."""
    return os.environ.get("POPBRIDGE") or os.path.join(ROOT, "build", "asan", "popbridge")


def note(msg):
    for ln in str(msg).splitlines() or [""]:
        print("# " + ln, flush=True)


# -- the POP3 server run.sh started (groups pop3, clients, delete, ...) -------------------

def env(name, default=None):
    v = os.environ.get(name, default)
    if v is None:
        sys.exit("missing environment variable %s (run me from run.sh)" % name)
    return v


POP3_PORT = int(os.environ.get("POP3_PORT") or 0)     # the POP3 server under test
IMAP_PORT = int(os.environ.get("IMAP_PORT") or 0)     # its upstream Dovecot
TARGET = os.environ.get("TARGET", "popbridge")        # or "dovecot", "reference"
CASE_TIMEOUT = float(os.environ.get("CASE_TIMEOUT", "20"))


def users(dovecot_dir=None):
    """{user: password} of run.sh's Dovecot ($DOVECOT_DIR/users)."""
    return users_file(os.path.join(dovecot_dir or env("DOVECOT_DIR"), "users"))


def users_file(path):
    """{user: password} from a Dovecot passwd-file ({PLAIN} stripped)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            user, _, pw = line.rstrip("\n").partition(":")
            if user:
                out[user] = pw[len("{PLAIN}"):] if pw.startswith("{PLAIN}") else pw
    return out


def pw_of(user):
    """The password the self-contained scripts give a user of their own."""
    return "%s-Pw-%s" % (user.capitalize(), hashlib.sha256(user.encode()).hexdigest()[:6])


# -- reporting -----------------------------------------------------------------------------

def problems_of(fn, *args, **kw):
    """fn(*args, **kw) as a list of problems: [] when it returns a falsy
    value, what it returns (a string or a list), or what it raised (an
    AssertionError's text; any other exception with its traceback's end)."""
    try:
        problems = fn(*args, **kw)
    except AssertionError as e:
        return [str(e) or "assertion failed"]
    except Exception as e:  # a crash in a case is that case's failure
        tb = traceback.format_exc().strip().splitlines()
        return ["%s: %s" % (type(e).__name__, e)] + tb[-4:]
    if not problems:
        return []
    if isinstance(problems, str):
        return [problems]
    return list(problems)


class Report:
    """Prints "ok - NAME" / "not ok - NAME" plus at most max_lines indented
    diagnostic lines of at most width characters, and counts them.
    buffered: the lines are kept until flush() (cases run side by side
    print as one block each). ONLY_CASE=substring runs only the cases
    whose name contains it."""

    def __init__(self, max_lines=30, width=400, buffered=False):
        self.passed = 0
        self.failed = 0
        self.max_lines = max_lines
        self.width = width
        self.lines = [] if buffered else None
        self.only = os.environ.get("ONLY_CASE", "")

    def _emit(self, line):
        if self.lines is None:
            print(line, flush=True)
        else:
            self.lines.append(line)

    def note(self, msg):
        for ln in str(msg).splitlines() or [""]:
            self._emit("# " + ln)

    def ok(self, name):
        self.passed += 1
        self._emit("ok - %s" % name)

    def fail(self, name, diag=()):
        self.failed += 1
        self._emit("not ok - %s" % name)
        lines = []
        for d in diag:
            lines.extend(str(d).splitlines())
        for d in lines[:self.max_lines]:
            self._emit("    %s" % d[:self.width])
        if len(lines) > self.max_lines:
            self._emit("    ... (%d more lines)" % (len(lines) - self.max_lines))

    def check(self, name, problems):
        """ok when problems is empty, else not ok with them."""
        if problems:
            self.fail(name, problems)
        else:
            self.ok(name)
        return not problems

    def selected(self, name):
        return not self.only or self.only in name

    def case(self, name, fn, *args, watch=None, **kw):
        """Runs the case fn(*args, **kw) unless ONLY_CASE leaves it out: it
        passes when fn returns a falsy value or an empty list of problems,
        and fails with the problems it returns or raises (problems_of).
        watch: a Watch (or a list of Popbridge, made one), or any object
        with begin() and end(problems) -> problems, run around fn. Returns
        True (passed), False (failed) or None (left out)."""
        if not self.selected(name):
            return None
        if isinstance(watch, (list, tuple)):
            watch = Watch(watch)
        t0 = time.time()
        probs = problems_of(watch.begin) if watch is not None else []
        if not probs:
            probs = problems_of(fn, *args, **kw)
            if watch is not None:
                probs = watch.end(probs)
        if probs:
            probs.append("(%.1fs)" % (time.time() - t0))
        return self.check(name, probs)

    def flush(self, into=None):
        """A buffered report: prints its lines; with into, its counts move
        there."""
        for ln in self.lines or []:
            print(ln)
        sys.stdout.flush()
        self.lines = []
        if into is not None:
            into.passed += self.passed
            into.failed += self.failed
            self.passed = self.failed = 0

    def summary(self):
        """The last line, and the exit status."""
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed else 0


class Watch:
    """The popbridge processes a case is about (Report.case's watch): their
    log offsets when it starts; afterwards one that is no longer running is
    a problem (died=True), and a failure shows the last lines of each one's
    log since then that match pattern. settle: seconds to wait first for
    them to count no session. new=True watches the popbridges created
    during the case as well (their whole logs)."""

    def __init__(self, pbs=(), pattern=None, lines=10, settle=None, new=False, died=True):
        self.pbs = [pb for pb in pbs if pb is not None]
        self.pattern = pattern
        self.lines = lines
        self.settle = settle
        self.new = new
        self.died = died

    def begin(self):
        self.offs = [(pb, pb.offset()) for pb in self.pbs]
        self.n0 = len(popbridges())
        if self.settle:
            for pb in self.pbs:
                pb.wait_active(0, self.settle)

    def end(self, probs):
        watched = list(self.offs)
        if self.new:
            watched += [(pb, 0) for pb in popbridges()[self.n0:]]
        if self.died:
            for pb, _ in watched:
                if pb.proc is not None and not pb.alive():
                    probs.append("popbridge %s died (%s)" % (pb.name, pb.exit_text()))
        if probs:
            for pb, off in watched:
                probs.append("%s log:" % pb.name)
                probs += ["  " + ln for ln in pb.tail(self.lines, off, self.pattern)]
        return probs


def need(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect(cond, probs, text):
    """Appends text to probs unless cond; returns cond."""
    if not cond:
        probs.append(text)
    return cond


def first_diff(a, b, ctx=24):
    """A short description of where two byte strings differ."""
    if a == b:
        return "equal"
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return ("lengths %d vs %d, first difference at offset %d: got %r, want %r"
            % (len(a), len(b), i, a[max(0, i - 8):i + ctx], b[max(0, i - 8):i + ctx]))


# -- the script's own process ----------------------------------------------------------

SCRATCH = None              # the running script's scratch directory (script_main)
_RESOURCES = []             # what this process started: released at the end
_RESOURCES_LOCK = threading.Lock()


def _register(obj):
    with _RESOURCES_LOCK:
        _RESOURCES.append(obj)


def popbridges():
    """Every Popbridge made in this process, in order."""
    with _RESOURCES_LOCK:
        return [r for r in _RESOURCES if isinstance(r, Popbridge)]


def release_all():
    """Stops everything this process started (popbridges killed, relays
    closed, Dovecots stopped), newest first."""
    with _RESOURCES_LOCK:
        items = list(reversed(_RESOURCES))
    for r in items:
        try:
            r.release()
        except Exception as e:  # noqa: BLE001 - the cleanup goes on
            print("# stopping %s: %s" % (getattr(r, "name", r), e), file=sys.stderr)


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
        os.chmod(d, 0o755)          # Dovecot's users (and nobody) must traverse it
    return d, own


def remove_scratch(d, own):
    """Removes a private scratch directory unless KEEP_TMP=1."""
    if own and os.environ.get("KEEP_TMP") != "1":
        shutil.rmtree(d, ignore_errors=True)
    elif own:
        print("# kept %s" % d)


def run_guarded(report, what, body):
    """Runs body(); an interruption (Ctrl-C, or a signal caught by
    catch_signals) or an exception becomes the failure "the WHAT ran to
    the end"."""
    try:
        body()
    except KeyboardInterrupt as e:
        report.fail("the %s ran to the end" % what, ["interrupted (%s)" % e])
    except Exception as e:
        tb = traceback.format_exc().strip().splitlines()
        report.fail("the %s ran to the end" % what, ["%s: %s" % (type(e).__name__, e)] + tb[-6:])


def missing_tools(tools):
    """The programs (names on PATH, or absolute paths) that are not there."""
    return [t for t in tools
            if not (os.access(t, os.X_OK) if os.sep in t else shutil.which(t))]


def script_main(report, what, body, cleanup=None, own_popbridge=True, tools=(), why=None):
    """The frame of every case script; returns its exit status.

    own_popbridge: the script starts popbridge processes of its own
    ($POPBRIDGE): for a run.sh TARGET other than "popbridge" it only says
    "ok - WHAT skipped for TARGET=... (WHY)", and the binary must be there.
    False: its cases talk to the server run.sh started, whatever it is.
    tools: programs it needs (names on PATH or absolute paths).

    Then: SIGTERM, SIGHUP and SIGINT raise KeyboardInterrupt; this process
    is a subreaper (the Dovecots started through bash stay its children);
    body(scratch) runs with the scratch directory ($TEST_TMP or a private
    one, also in SCRATCH), and an interruption or crash in it becomes the
    failure "the WHAT ran to the end"; always cleanup(), then everything
    started here is stopped (release_all) and a private scratch directory
    removed (unless KEEP_TMP=1); last, "N passed, M failed"."""
    global SCRATCH
    if own_popbridge:
        if TARGET != "popbridge":
            report.ok("%s skipped for TARGET=%s%s" % (what, TARGET, " (%s)" % why if why else ""))
            return report.summary()
        binary = default_popbridge()
        if not os.access(binary, os.X_OK):
            report.fail("%s: the popbridge binary is there" % what,
                        ["POPBRIDGE must name the popbridge binary (got %r)" % binary])
            return report.summary()
    missing = missing_tools(tools)
    if missing:
        report.fail("%s: the tools they need are installed (make deps)" % what,
                    ["missing: %s" % " ".join(missing)])
        return report.summary()
    catch_signals(signal.SIGHUP, signal.SIGINT)
    become_subreaper()
    stem = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    tmp, own_tmp = scratch_dir("popbridge-%s." % stem.replace("test_", ""))
    SCRATCH = tmp
    t0 = time.time()
    try:
        run_guarded(report, what, lambda: body(tmp))
    finally:
        try:
            if cleanup is not None:
                cleanup()
        finally:
            release_all()
            remove_scratch(tmp, own_tmp)
    note("%s: %.0fs" % (what, time.time() - t0))
    return report.summary()


# -- ports -----------------------------------------------------------------------------

_PORTS = set()
_PORTS_LOCK = threading.Lock()


def free_port(taken=()):
    """A port the kernel hands out on 127.0.0.1, never one this process
    handed out before (nor one in taken); safe from several threads."""
    with _PORTS_LOCK:
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            s.close()
            if port not in taken and port not in _PORTS:
                _PORTS.add(port)
                return port


def taken(port):
    """Records a port chosen elsewhere (dovecot.sh) as handed out."""
    with _PORTS_LOCK:
        _PORTS.add(port)


# -- logs ------------------------------------------------------------------------------

def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def end_child(proc, timeout):
    """Closes a child's stdin (its end of input) and waits for its exit:
    the status, or "killed after N s" when it had to be killed."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return "killed after %g s" % timeout


class LineReader:
    """The lines of a child's output pipe, each waited for at most timeout
    seconds: line() is the next one (str, without its LF; a last line
    without one counts), or None at the end or after the timeout. Every
    line read is kept in .lines."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.lines = []

    def line(self, timeout=30):
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self.stream], [], [], left)
            if not r:
                return None
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                if not self.buf:
                    return None
                chunk = b"\n"
            self.buf += chunk
        ln, _, self.buf = self.buf.partition(b"\n")
        s = ln.decode("utf-8", "replace")
        self.lines.append(s)
        return s


def read_text(path, off=0):
    """The file from offset off, decoded leniently; "" if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(off)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def sanitizer_lines(text):
    """The lines of a sanitizer report in text."""
    return [ln for ln in text.splitlines() if SANITIZER.search(ln)]


def secret_forms(user, password):
    """How a password can leak into a log (bytes): in clear, IMAP-quoted,
    and inside an AUTH PLAIN token."""
    return {password, password.replace(b"\\", b"\\\\").replace(b'"', b'\\"'),
            base64.b64encode(b"\0" + user + b"\0" + password)}


def _b(s):
    return s.encode("utf-8") if isinstance(s, str) else s


# -- popbridge processes ---------------------------------------------------------------

def spawn(binary, conf, log_path, append=True):
    """binary -c conf, stdout and stderr to log_path; dies with us."""
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen([binary, "-c", conf], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)


def wait_greeting(proc, port, src=None, secs=30, step=0.05):
    """Waits until a connection to port (from src) gets a +OK greeting:
    None then, "exited" when proc ends first, "timeout" after secs."""
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                if src is not None:
                    s.bind((src, 0))
                s.settimeout(3)
                s.connect((HOST, port))
                data = s.recv(512)
            finally:
                s.close()
            if data.startswith(b"+OK"):
                return None
        except OSError:
            pass
        time.sleep(step)
    return "timeout"


def ini(sections):
    """Configuration text from [(section, {key: value} or text)]; a None
    value leaves its key out."""
    out = []
    for name, body in sections:
        out.append("[%s]" % name)
        if isinstance(body, str):
            out.append(body.rstrip("\n"))
        else:
            out += ["%s = %s" % (k, v) for k, v in body.items() if v is not None]
        out.append("")
    return "\n".join(out) + "\n"


def _merged(base, more):
    d = dict(base)
    d.update(more or {})
    return d


class StartError(AssertionError):
    """A popbridge that does not start (a case's failure, not a crash)."""


class Popbridge:
    """One popbridge process of a test: configuration DIR/NAME.ini, log
    DIR/NAME.log (appended to across restarts), state directory
    DIR/NAME-state (or state); DIR is the scratch directory. port (pop3)
    and, with pop3s=True, sport (pop3s) are free 127.0.0.1 ports.

    The configuration (conf_text, written when made and by write_conf):
      [listen]   pop3, pop3s, cert/key when given, then listen={...}
      [upstream] host 127.0.0.1, port upstream_port, tls = none,
                 timeout = 10, changed by upstream={...}
      [maildrop] maildrop={...}, when given
      [state]    dir
      [limits]   LIMITS changed by limits={...}
      [log]      level
      [process]  user, when given
    and extra (text) at the end. In every {...} a None value leaves the key
    out. make_state: create the state directory (True), and chmod it (a
    mode), or not (None). probe_src: the source address of the start-up
    probe (a trusted PROXY address would get no greeting)."""

    LIMITS = {"auth_fail_delay": 0, "idle_timeout": 60, "shutdown_grace": 5}
    log_flags = re.M        # wait_log patterns: ^ and $ per line

    def __init__(self, name, upstream_port=None, dir=None, binary=None, port=None,
                 pop3s=False, cert=None, key=None, listen=None, upstream=None,
                 maildrop=None, limits=None, level="debug", state=None, make_state=True,
                 user=None, extra="", probe_src=None):
        d = dir or SCRATCH
        if d is None:
            raise RuntimeError("Popbridge %s: no directory (script_main sets one)" % name)
        self.name = name
        self.binary = binary or default_popbridge()
        self.port = port or free_port()
        self.sport = free_port() if pop3s else None
        self.cert, self.key = cert, key
        self.conf = os.path.join(d, name + ".ini")
        self.log = os.path.join(d, name + ".log")
        self.state = state or os.path.join(d, name + "-state")
        if make_state:
            os.makedirs(self.state, exist_ok=True)
            if make_state is not True:
                os.chmod(self.state, make_state)
        self.listen = dict(listen or {})
        self.upstream = _merged({"host": HOST, "port": upstream_port, "tls": "none",
                                 "timeout": 10}, upstream)
        self.maildrop = maildrop
        self.limits = _merged(self.LIMITS, limits)
        self.level = level
        self.user = user
        self.extra = extra
        self.probe_src = probe_src
        self.proc = None
        self.asked = False          # the current process was told to stop
        self.start_offset = 0
        self.term_status = []       # exit status after each SIGTERM
        self.deaths = []            # exits nobody asked for (take_deaths)
        self._told = False
        _register(self)
        self.write_conf()

    # -- configuration ------------------------------------------------------------
    def conf_text(self):
        listen = {"pop3": "%s:%d" % (HOST, self.port),
                  "pop3s": "%s:%d" % (HOST, self.sport) if self.sport else ""}
        if self.cert:
            listen.update(cert=self.cert, key=self.key)
        listen.update(self.listen)
        sections = [("listen", listen), ("upstream", self.upstream)]
        if self.maildrop is not None:
            sections.append(("maildrop", self.maildrop))
        sections += [("state", {"dir": self.state}), ("limits", self.limits),
                     ("log", {"level": self.level})]
        if self.user is not None:
            sections.append(("process", {"user": self.user}))
        return ini(sections) + self.extra

    def write_conf(self, extra=""):
        with open(self.conf, "w") as f:
            f.write(self.conf_text() + extra)

    # -- the process -------------------------------------------------------------
    def spawn(self, binary=None, conf=None, append=True):
        """Starts the process (log appended to), without waiting."""
        self.deaths += self.death()
        self.start_offset = self.offset()
        self.proc = spawn(binary or self.binary, conf or self.conf, self.log, append)
        self.asked = False
        self._told = False
        return self.proc

    def try_start(self, timeout=30):
        """Starts it and waits for a greeting: None, or what went wrong."""
        self.spawn()
        why = wait_greeting(self.proc, self.port, src=self.probe_src, secs=timeout)
        if why == "exited":
            return "popbridge %s exited with status %s at start-up: %s" % (
                self.name, self.proc.returncode, " | ".join(self.tail(6, self.start_offset)))
        if why:
            return "popbridge %s does not greet %son port %d within %d s" % (
                self.name, "%s " % self.probe_src if self.probe_src else "", self.port, timeout)
        return None

    def start(self, timeout=30):
        """Starts it and waits for a greeting; StartError if it does not come."""
        err = self.try_start(timeout)
        if err:
            raise StartError(err)
        return self

    def ensure(self):
        """Started (again, after it died) unless it is running."""
        if not self.alive():
            self.start()
        return self

    def restart(self):
        rc = self.stop()
        if rc != 0:
            raise AssertionError("popbridge %s: exit status %r on SIGTERM" % (self.name, rc))
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exit_text(self):
        rc = self.proc.returncode if self.proc is not None else None
        if rc is None:
            return "running" if self.proc is not None else "never started"
        return SIG_NAMES.get(rc, "signal %d" % -rc) if rc < 0 else "exit status %s" % rc

    def death(self, n=4):
        """Lines about an exit of the current process nobody asked for
        (stop, kill), the first time it is seen; else []."""
        if self.proc is None or self.proc.poll() is None or self.asked or self._told:
            return []
        self._told = True
        lines = (self.tail(n, self.start_offset, CRASH_RE)
                 or self.tail(3, self.start_offset))
        return (["popbridge %s died (%s); its log says:" % (self.name, self.exit_text())]
                + ["  " + ln[:240] for ln in lines])

    def take_deaths(self):
        """The deaths not reported yet (each process's once)."""
        self.deaths += self.death()
        d, self.deaths = self.deaths, []
        return d

    def stop(self, timeout=20):
        """SIGTERM; the exit status, or a string saying what went wrong
        (None if it never ran). Recorded in term_status."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.asked = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = "still running %d s after SIGTERM (killed)" % timeout
        self.term_status.append(rc)
        return rc

    def kill(self, wait=True):
        """SIGKILL (wait: and reap it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.asked = True
            self.proc.kill()
            if wait:
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass

    release = kill

    def run_to_exit(self, timeout=15):
        """For a popbridge that must refuse to start: (status, log text);
        status is a string when it was still running after timeout."""
        self.spawn()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            rc = "still running %g s after start (stopped)" % timeout
        return rc, self.text()

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return -1

    def fds(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.proc.pid))
        except OSError:
            return -1

    # -- the log -----------------------------------------------------------------
    def offset(self):
        return file_size(self.log)

    def text(self, off=0):
        return read_text(self.log, off)

    def tail(self, n=8, off=0, interesting=None):
        """The last n log lines since off (that match interesting)."""
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

    def wait_line(self, pattern, off=0, timeout=5.0):
        """The first whole log line since off matching pattern (any case),
        waiting up to timeout seconds; None if none."""
        rx = re.compile(pattern, re.I)
        deadline = time.time() + timeout
        while True:
            for ln in self.text(off).splitlines():
                if rx.search(ln):
                    return ln
            if time.time() >= deadline:
                return None
            time.sleep(0.1)

    def lines_of(self, sid, off=0):
        """The log lines of session sid."""
        return [ln for ln in self.text(off).splitlines()
                if re.search(r"session=%s\b" % sid, ln)]

    def session_of(self, off, client, timeout=5):
        """The id of the session from client that connected after off."""
        m = self.wait_log(off, r"session=(\d+) connect client=%s\b" % re.escape(client),
                          timeout)
        return m.group(1) if m else None

    def via(self, off, real, proxy="127.0.0.1", timeout=5):
        """The session id whose log says 'client=REAL via proxy PROXY'."""
        m = self.wait_log(off, r"session=(\d+) client=%s via proxy %s\b"
                          % (re.escape(real), re.escape(proxy)), timeout)
        return m.group(1) if m else None

    def end_line(self, sid, timeout=5):
        m = self.wait_log(0, r"session=%s end [^\n]*" % sid, timeout)
        return m.group(0) if m else None

    def active(self):
        t = self.text()
        return (len(re.findall(r"session=\d+ connect ", t))
                - len(re.findall(r"session=\d+ end ", t)))

    def wait_active(self, n, timeout=10):
        deadline = time.time() + timeout
        while self.active() != n and time.time() < deadline:
            time.sleep(0.05)
        return self.active()


def final_checks(report, pbs, running=None, sigterm=None, sanitizer=None, control=None,
                 leaks=None, secrets=()):
    """The end of a script's popbridges (those ever started), each check
    reported under the name given (None: not made; checks sharing a name
    are one case):
      running    every one still runs
      sigterm    every one exits 0 on SIGTERM now (running ones are
                 stopped) and did at every earlier stop, and none died
                 without being asked to
      sanitizer  no sanitizer report in their logs
      control    no raw control byte (but LF) in their logs
      leaks      none of secrets (bytes or str) in their logs"""
    pbs = [pb for pb in pbs if pb.proc is not None]
    results = collections.OrderedDict()

    def add(name, probs):
        if name:
            results.setdefault(name, []).extend(probs)

    add(running, ["%s (%s)" % (pb.name, pb.exit_text()) for pb in pbs if not pb.alive()])
    if sigterm:
        probs = []
        for pb in pbs:
            mine = []
            if pb.alive():
                pb.stop()
            elif not pb.asked:
                mine.append("%s: %s without being asked to" % (pb.name, pb.exit_text()))
            mine += ["%s: exit status %r on SIGTERM" % (pb.name, rc)
                     for rc in pb.term_status if rc != 0]
            if mine:
                mine += ["  " + ln for ln in pb.tail(6)]
            probs += mine
        add(sigterm, probs)
    secrets = [_b(s) for s in secrets]
    for pb in pbs:
        raw = read_bytes(pb.log)
        text = raw.decode("utf-8", "replace")
        add(sanitizer, ["%s: %s" % (pb.name, ln) for ln in sanitizer_lines(text)[:6]])
        if control:
            ctl = sorted({b for b in raw if (b < 0x20 and b != 0x0a) or b == 0x7f})
            if ctl:
                i = min(raw.find(bytes([b])) for b in ctl)
                add(control, ["%s: bytes %s, first near %r" % (
                    pb.name, ctl, raw[max(0, i - 60):i + 20])])
            else:
                add(control, [])
        add(leaks, ["%s's log contains %r" % (pb.name, s) for s in secrets if s in raw])
    for name, probs in results.items():
        report.check(name, probs)


def finish_checks(report, pb):
    """The end of one popbridge: exits 0 on SIGTERM, and its log holds no
    sanitizer report and no raw control byte."""
    final_checks(report, [pb], sigterm="%s popbridge exits 0 on SIGTERM" % pb.name,
                 sanitizer="no sanitizer reports in the %s log" % pb.name,
                 control="the %s log holds no raw control bytes" % pb.name)


def sent(pb, offset, regex):
    """The IMAP commands pb logged (debug: "imap> TAG ...") since offset
    whose text after the tag matches regex."""
    return [ln for ln in pb.text(offset).splitlines()
            if re.search(r"imap> \S+ ", ln) and re.search(regex, ln.split("imap> ", 1)[1])]


# -- Dovecot (tests/lib/dovecot.sh) -----------------------------------------------------

DOVECOT_ENV = ("DOVECOT_POP3", "DOVECOT_SSL_CERT", "DOVECOT_SSL_KEY", "DOVECOT_IMAPS_PORT",
               "DOVECOT_EXTRA_CONF", "DOVECOT_USERS")


class Dovecot:
    """A private Dovecot in directory d, run through dovecot.sh's
    dovecot_start / dovecot_stop: users ({user: password}; default
    dovecot.sh's), extra (dovecot.conf text), ssl ((certificate file, key
    file): imaps on .imaps_port and STARTTLS on .port). Restarts (after
    changing ssl, say) keep the ports."""

    stop_wait = 30          # seconds dovecot_stop may take

    def __init__(self, d, users=None, extra=None, ssl=None):
        self.dir = d
        self.name = os.path.basename(d)
        self.users = dict(users) if users else None
        self.extra = extra
        self.ssl = ssl
        self.pid = None
        self.port = None
        self.imaps_port = None
        self.conf = os.path.join(d, "dovecot.conf")
        self.log = os.path.join(d, "dovecot.log")
        _register(self)

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
        if self.ssl:
            env["DOVECOT_SSL_CERT"], env["DOVECOT_SSL_KEY"] = self.ssl
        with open(os.path.join(self.dir, "harness.out"), "ab") as out:
            r = subprocess.run(["bash", "-c", '. "$PB_LIB/dovecot.sh" && ' + script],
                               env=env, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=out, timeout=timeout)
        return r.returncode

    def _pid_file(self):
        return os.path.join(self.dir, "dovecot.pid")

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        try:
            rc = self._bash('dovecot_start "$PB_DIR"', 90)
        finally:
            # stopped at the end even when the start broke off after the pid
            if os.path.exists(self._pid_file()):
                with open(self._pid_file()) as f:
                    self.pid = int(f.read().strip() or 0) or None
        if rc != 0:
            tail = read_text(os.path.join(self.dir, "harness.out")).splitlines()[-10:]
            raise RuntimeError("dovecot_start %s failed (%d): %s" % (self.dir, rc, " | ".join(tail)))
        ports = {}
        with open(os.path.join(self.dir, "ports")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                ports[k] = v
        self.port = int(ports["DOVECOT_IMAP_PORT"])
        self.imaps_port = int(ports.get("DOVECOT_IMAPS_PORT") or 0) or None
        taken(self.port)
        return self

    def stop(self):
        if self.pid is None and not os.path.exists(self._pid_file()):
            return
        try:
            self._bash('dovecot_stop "$PB_DIR"', self.stop_wait)
        except subprocess.TimeoutExpired:
            pass
        if self.pid is not None:
            try:
                os.waitpid(self.pid, os.WNOHANG)    # ours as subreaper
            except ChildProcessError:
                pass
        self.pid = None

    release = stop

    def passwords(self):
        return users_file(os.path.join(self.dir, "users"))

    def password(self, user):
        return (self.users or self.passwords())[user]

    def imap(self, user, timeout=30):
        """A logged-in imaplib connection."""
        return imapfetch.connect(self.port, user, self.password(user), timeout=timeout)

    def append(self, user, msgs, folder="INBOX"):
        """Appends [(name, bytes)] unchanged (tests/lib/corpus.py): the UIDs."""
        conn = self.imap(user)
        try:
            return corpus.append(conn, folder, msgs)
        finally:
            conn.logout()

    def maildir(self, user):
        return os.path.join(self.dir, "mail", user, "Maildir")

    def renumber(self, user):
        """New UIDVALIDITY and new UIDs for the INBOX: dovecot-uidlist and
        the indexes go. Returns the files removed."""
        md = self.maildir(user)
        removed = []
        for n in os.listdir(md):
            if n.startswith(("dovecot-uidlist", "dovecot.index", "dovecot.list.index")):
                os.unlink(os.path.join(md, n))
                removed.append(n)
        return removed

    def doveadm(self, *args):
        p = subprocess.run(["doveadm", "-c", self.conf] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0:
            raise AssertionError("doveadm %s: exit %d %s" % (
                " ".join(args), p.returncode, p.stderr.decode("utf-8", "replace")[-300:]))
        return p.stdout.decode("utf-8", "replace")

    def log_offset(self):
        return file_size(self.log)

    def log_text(self, off=0):
        return read_text(self.log, off)

    def log_tail(self, n=8):
        return self.log_text().splitlines()[-n:]


# -- expectations -----------------------------------------------------------------------

def msg_name(data):
    m = re.search(rb"^X-Corpus-Name: (\S+)", data, re.M)
    return m.group(1).decode() if m else "?"


class Expected:
    """The maildrop as POP3 must present it: rows [(uid, data)] in POP3
    order, data the message (IMAP BODY.PEEK[]) or a tuple (message,
    header, text). E.retr[i - 1] is what RETR i delivers (un-stuffed),
    E.size[i - 1] what LIST/STAT say (tests/lib/imapfetch.py)."""

    def __init__(self, rows, imap_size=None):
        self.uids = [u for u, _ in rows]
        self.parts = [d if isinstance(d, tuple) else (d,) for _, d in rows]
        self.raw = [p[0] for p in self.parts]
        self.header = [p[1] if len(p) > 1 else None for p in self.parts]
        self.text = [p[2] if len(p) > 2 else None for p in self.parts]
        self.imap_size = imap_size
        exp = [imapfetch.pop3_expected(d) for d in self.raw]
        self.retr = [e for e, _ in exp]      # what RETR delivers (un-stuffed)
        self.size = [s for _, s in exp]      # what LIST/STAT report
        self.names = [msg_name(d) for d in self.raw]

    @classmethod
    def imap(cls, port, user, password, folder="INBOX", sections=("", "HEADER", "TEXT")):
        """Read from a folder over IMAP (UID order)."""
        conn = imapfetch.connect(port, user, password)
        try:
            meta = imapfetch.info(conn, folder)
            rows = imapfetch.fetch_all(conn, folder, sections=sections)
        finally:
            conn.logout()
        return cls(rows, [meta[u]["size"] for u, _ in rows])

    def __len__(self):
        return len(self.uids)

    def label(self, i):
        """'3 (leading-dot)' for POP3 message number i (1-based)."""
        return "%d (%s)" % (i, self.names[i - 1])

    def index(self, name):
        """The POP3 message number of the corpus message name."""
        return self.names.index(name) + 1

    def top(self, i, n):
        return imapfetch.pop3_top(self.header[i - 1], self.text[i - 1], n)


# -- POP3 clients -----------------------------------------------------------------------

class Client(Pop3):
    """pop3wire.Pop3 to 127.0.0.1:port: from source address src, with
    SO_RCVBUF rcvbuf, header (bytes, e.g. a PROXY header) sent before the
    greeting is read (greet=False: not read), over implicit TLS with the
    ssl.SSLContext tls; stls() upgrades a plain one. Counts the octets
    received (after TLS) in .received."""

    def __init__(self, port, src=None, timeout=REPLY_WAIT, rcvbuf=None, header=None,
                 greet=True, tls=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.buf = b""
        self.received = 0
        try:
            if rcvbuf:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if src:
                self.sock.bind((src, 0))
            self.sock.settimeout(timeout)
            self.sock.connect((HOST, port))
            if header is not None:
                self.sock.sendall(header)
            if tls is not None:
                self.sock = tls.wrap_socket(self.sock, server_hostname=HOST)
            self.greeting = self.line() if greet else None
        except BaseException:
            self.sock.close()
            raise

    def _fill(self, n=65536):
        chunk = self.sock.recv(n)
        if not chunk:
            raise Pop3Closed("connection closed by server (buffered: %r)" % self.buf[:200])
        self.received += len(chunk)
        self.buf += chunk

    def stls(self, ctx):
        """STLS, then the TLS handshake (ctx: an ssl.SSLContext); the reply."""
        r = self.cmd("STLS")
        if not is_ok(r):
            return r
        if self.buf:
            raise AssertionError("plaintext after STLS's +OK: %r" % self.buf[:200])
        self.sock = ctx.wrap_socket(self.sock, server_hostname=HOST)
        return r

    def fingerprint(self):
        import testca
        return testca.fingerprint_der(self.sock.getpeercert(binary_form=True))

    def quiet(self, secs):
        """Whatever arrives within secs (b"" when nothing; b"<closed>" at
        the end if the server closed)."""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(secs)
        got = self.buf
        self.buf = b""
        try:
            while len(got) < 65536:
                chunk = self.sock.recv(65536)
                if not chunk:
                    got += b"<closed>"
                    break
                got += chunk
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        finally:
            self.sock.settimeout(timeout)
        return got


def pop3(timeout=None, port=None, **kw):
    """A Client to run.sh's POP3 server (or port)."""
    return Client(port or POP3_PORT, timeout=timeout or CASE_TIMEOUT, **kw)


def user_pass(p, user, password, timeout=REPLY_WAIT):
    """USER, then PASS (only after +OK) with cmd(): the last reply."""
    r = cmd(p, b"USER " + _b(user), timeout)
    if not is_ok(r):
        return r
    return cmd(p, b"PASS " + _b(password), timeout)


def login(user, password, port=None, timeout=None, **kw):
    """A Client logged in with USER/PASS to port (default: run.sh's POP3
    server, replies waited for CASE_TIMEOUT); AssertionError when that
    fails."""
    if timeout is None:
        timeout = CASE_TIMEOUT if port is None else REPLY_WAIT
    port = port or POP3_PORT
    try:
        p = Client(port, timeout=timeout, **kw)
    except (OSError, Pop3Closed) as e:
        raise AssertionError("connect to 127.0.0.1:%d: %s" % (port, e)) from None
    if not is_ok(p.greeting):
        p.close()
        raise AssertionError("greeting %s" % show(p.greeting))
    r = user_pass(p, user, password, timeout)
    if not is_ok(r):
        p.close()
        raise AssertionError("login as %s%s -> %s" % (
            _s(user), " from %s" % kw["src"] if kw.get("src") else "", show(r)))
    return p


def _s(s):
    return s.decode("utf-8", "replace") if isinstance(s, bytes) else s


class Pop3Session:
    """A logged-in POP3 session (USER/PASS) to pb (a Popbridge) for the
    case scripts; AssertionError on -ERR or a lost connection (saying so
    when popbridge is no longer running)."""

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
    """Sends a command line (bytes or str); its reply as read_line."""
    try:
        p.send(_b(text) + b"\r\n")
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


def is_temp(r):
    """-ERR [SYS/TEMP] with the word 'wait' (fetchmail reads it)."""
    return isinstance(r, bytes) and r.startswith(b"-ERR [SYS/TEMP]") and b"wait" in r.lower()


def want_temp(what, r):
    """[] for -ERR [SYS/TEMP] ... wait ..., else the problem."""
    if is_temp(r):
        return []
    if isinstance(r, bytes) and r.startswith(b"-ERR [SYS/TEMP]"):
        return ["%s -> %s: the text lacks 'wait' (fetchmail reads it)" % (what, show(r))]
    return ["%s -> %s, want -ERR [SYS/TEMP] ... wait ..." % (what, show(r))]


def multi(p, timeout=REPLY_WAIT):
    """(un-stuffed body, problems) of a multi-line response."""
    p.sock.settimeout(timeout)
    _, data, problems = p.multi()
    return data, problems


def parse_capa(body):
    """{CAPABILITY: [ARGUMENTS]} (upper case) of a CAPA response body."""
    caps = {}
    for line in body.split(b"\r\n"):
        if line:
            words = line.decode("latin-1").split()
            caps[words[0].upper()] = [w.upper() for w in words[1:]]
    return caps


def capa(p):
    """CAPA: (parse_capa of the body, the body); AssertionError on -ERR."""
    r = cmd(p, b"CAPA", p.sock.gettimeout())
    need(is_ok(r), "CAPA -> %s" % show(r))
    _, body, probs = p.multi()
    need(not probs, "CAPA: %s" % probs)
    return parse_capa(body), body


def uidl_problems(uidls, what="UIDL"):
    """Problems unless the UIDL values (str or bytes) are unique and 1-70
    characters of 0x21-0x7E."""
    probs = []
    if len(set(uidls)) != len(uidls):
        probs.append("%s: repeated values in %s" % (what, uidls))
    for u in uidls:
        b = _b(u)
        if not (1 <= len(b) <= 70) or any(not (0x21 <= c <= 0x7e) for c in b):
            probs.append("%s: %r is not 1-70 printable characters" % (what, u))
    return probs


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


def wait_close(p, timeout):
    """(bytes received, closed?, seconds) until the server closes p."""
    got, p.buf = p.buf, b""
    return drain_until_close(p.sock, timeout, got)


def wait_port_closed_by_peer(p, timeout=5):
    """True if the server closes p's connection within timeout."""
    p.sock.settimeout(timeout)
    try:
        while True:
            if not p.sock.recv(4096):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def show_box(box):
    """{uid: (tag, flags)} as '1:tag[\\Seen], 2:tag'."""
    return ", ".join("%d:%s%s" % (u, t, "[" + " ".join(sorted(f)) + "]" if f else "")
                     for u, (t, f) in sorted(box.items())) or "(empty)"


# -- real clients -------------------------------------------------------------------------

def run_client(argv, timeout=CLIENT_TIMEOUT, **kw):
    """Runs a client with a hard time limit; returns CompletedProcess."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, timeout=timeout, **kw)


def tail(b, n=6):
    """The last n lines of a client's output (bytes)."""
    return b.decode("utf-8", "replace").strip().splitlines()[-n:]


DELIVER = """#!/bin/sh
# MDA for the tests: each message into the next numbered file of $1.
dir=$1
n=$(ls "$dir" | wc -l)
exec cat > "$dir/$(printf %04d $((n + 1))).eml"
"""


def mda_dir(base, name):
    """A fresh base/name with the MDA script and an out/ directory:
    (directory, script, out)."""
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "out"))
    script = os.path.join(d, "deliver.sh")
    with open(script, "w") as f:
        f.write(DELIVER)
    os.chmod(script, 0o755)
    return d, script, os.path.join(d, "out")


def delivered(out, names=None):
    """The messages in out (or just the files named), in order."""
    res = []
    for n in sorted(os.listdir(out) if names is None else names):
        with open(os.path.join(out, n), "rb") as f:
            res.append(f.read())
    return res


def rc_string(s):
    """A string for a fetchmail rcfile."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


ClientRun = collections.namedtuple("ClientRun", "rc new output")


class MailClient:
    """A real client for one account in a fresh directory base/name: keeps
    its UIDL list across runs, delivers through an MDA into .out."""

    def __init__(self, base, name, run_timeout=CLIENT_TIMEOUT):
        self.d, self.script, self.out = mda_dir(base, name)
        self.run_timeout = run_timeout
        self.runs = 0

    def run(self):
        """One run: ClientRun(exit status, [messages it delivered], output)."""
        before = set(os.listdir(self.out))
        argv, env = self.command()
        p = run_client(argv, self.run_timeout, env=env)
        self.runs += 1
        output = p.stdout + p.stderr
        with open(os.path.join(self.d, "run%d.log" % self.runs), "wb") as f:
            f.write(output)
        return ClientRun(p.returncode, delivered(self.out, set(os.listdir(self.out)) - before),
                         output)


class Fetchmail(MailClient):
    """fetchmail (uidl, keep unless keep=False, no rewriting, CRLF kept,
    no Received: header) polling host:port; options: rcfile lines before
    the MDA (default: no STLS attempt); timeout: its server timeout;
    verbose: -v. The rcfile is mode 0600 (self.rc)."""

    def __init__(self, base, name, port, user, password, keep=True,
                 options="  sslproto ''\n", host=HOST, timeout=30, verbose=False,
                 run_timeout=CLIENT_TIMEOUT):
        super().__init__(base, name, run_timeout)
        self.home = os.path.join(self.d, "home")
        os.makedirs(self.home, mode=0o700)
        self.verbose = verbose
        self.rc = os.path.join(self.d, "fetchmailrc")
        with open(self.rc, "w") as f:
            f.write("set no bouncemail\n"
                    "set invisible\n"          # no Received: header
                    "poll %s service %d protocol pop3 uidl auth password timeout %d\n"
                    "  user %s there with password %s is \"root\" here\n"
                    "  %s\n"                   # leave mail on the server (or not)
                    "  no rewrite\n"           # do not touch addresses in headers
                    "  no mimedecode\n"
                    "  no stripcr\n"           # keep CRLF as received
                    "  no dropstatus\n"
                    "  no dropdelivered\n"
                    "%s"
                    "  mda %s\n"
                    % (host, port, timeout, rc_string(user), rc_string(password),
                       "keep" if keep else "no keep", options,
                       rc_string("%s %s" % (self.script, self.out))))
        os.chmod(self.rc, 0o600)

    def command(self):
        argv = ["fetchmail", "-f", self.rc, "-N", "-d0", "--nosyslog"]
        if self.verbose:
            argv.append("-v")
        argv += ["--idfile", os.path.join(self.d, "fetchids"),
                 "--pidfile", os.path.join(self.d, "pid")]
        return argv, dict(os.environ, FETCHMAILHOME=self.home, HOME=self.home)


class Mpop(MailClient):
    """mpop (keep, only new, no Received: header) from host:port with
    USER/PASS (the password read from a 0600 file, so that quotes and
    backslashes survive); tls: its --tls options."""

    def __init__(self, base, name, port, user, password, tls=("--tls=off",), host=HOST,
                 timeout=60, run_timeout=CLIENT_TIMEOUT):
        super().__init__(base, name, run_timeout)
        pwfile = os.path.join(self.d, "pw")
        with open(pwfile, "w") as f:
            f.write(password)
        os.chmod(pwfile, 0o600)
        self.argv = (["mpop", "--host=%s" % host, "--port=%d" % port, "--auth=user",
                      "--user=%s" % user, "--passwordeval=cat %s" % pwfile]
                     + list(tls)
                     + ["--timeout=%d" % timeout,
                        "--uidls-file=%s" % os.path.join(self.d, "uidls"),
                        "--delivery=mda,%s %s" % (self.script, self.out),
                        "--received-header=off", "--keep=on", "--only-new=on", "-q"])

    def command(self):
        return self.argv, dict(os.environ, HOME=self.d)   # no ~/.mpoprc interferes


def fetchmail_want(E, i, got):
    """fetchmail's known normalisation: it ends an unterminated header block
    with CRLF and breaks lines over 8192 octets (inserting junk), so for the
    long-lines message only the text around the long lines is compared."""
    e = E.retr[i - 1]
    if e.find(b"\r\n\r\n") < 0 and not e.startswith(b"\r\n"):
        e = e + b"\r\n"
    if E.names[i - 1] == "long-lines":
        lines = e.split(b"\r\n")
        long_idx = [k for k, ln in enumerate(lines) if len(ln) > 8000]
        if long_idx:
            pre = b"\r\n".join(lines[:long_idx[0]]) + b"\r\n"
            post = b"\r\n".join(lines[long_idx[-1] + 1:])
            if not got.startswith(pre):
                return "before the long lines: " + first_diff(got[:len(pre)], pre)
            if not got.endswith(post):
                return "after the long lines: " + first_diff(got[-len(post):], post)
            return None
    return None if got == e else first_diff(got, e)


def mpop_want(E, i, got):
    """mpop hands an MDA LF line ends."""
    e = E.retr[i - 1].replace(b"\r\n", b"\n")
    return None if got == e else first_diff(got, e)


def client_fetch(client, base, name, port, user, password, E):
    """One run of fetchmail or mpop (client) against 127.0.0.1:port, its
    files under base/name: problems unless it exits 0 having delivered
    everything in E (an Expected) byte for byte, as each client hands a
    message to its MDA."""
    if client == "fetchmail":
        c = Fetchmail(base, name, port, user, password, timeout=60)
        want = fetchmail_want
    else:
        c = Mpop(base, name, port, user, password)
        want = mpop_want
    run = c.run()
    probs = []
    if run.rc != 0:
        probs.append("%s exit %d: %s" % (client, run.rc, " | ".join(tail(run.output))))
    return probs + compare_deliveries(E, run.new, want, client)


def compare_deliveries(E, got, want_fn, who):
    probs = []
    if len(got) != len(E):
        probs.append("%s delivered %d messages, the maildrop has %d" % (who, len(got), len(E)))
    for i, g in enumerate(got[:len(E)], 1):
        x = want_fn(E, i, g)
        if x:
            probs.append("%s message %s: %s" % (who, E.label(i), x))
    return probs


# -- TCP stand-ins -----------------------------------------------------------------------

class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target that records every
    connection's bytes (records()); strip (bytes) is cut out of whatever
    the server sends before TLS starts (a STARTTLS-stripping man in the
    middle)."""

    def __init__(self, target, strip=None):
        self.target = target
        self.strip = strip
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.conns = []     # [{"c2s": bytearray, "s2c": bytearray}]
        self.socks = []
        self.lock = threading.Lock()
        self.stopped = False
        _register(self)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection((HOST, self.target), timeout=10)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            rec = {"c2s": bytearray(), "s2c": bytearray()}
            with self.lock:
                self.conns.append(rec)
                self.socks += [c, s]
            threading.Thread(target=self._pump, args=(c, s, rec["c2s"], False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, rec["s2c"], True),
                             daemon=True).start()

    def _pump(self, src, dst, rec, from_server):
        tls = False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                rec += data
                if from_server and self.strip and not tls:
                    if data[:1] in (b"\x14", b"\x15", b"\x16", b"\x17"):
                        tls = True
                    else:
                        data = data.replace(self.strip, b"")
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def records(self):
        with self.lock:
            return [{"c2s": bytes(r["c2s"]), "s2c": bytes(r["s2c"])} for r in self.conns]

    def stop(self):
        self.stopped = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass

    release = stop


class SilentServer:
    """A TCP server that accepts and never says a word (a stuck upstream)."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        _register(self)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(c)

    def stop(self):
        for x in [self.lsock] + self.socks:
            try:
                x.close()
            except OSError:
                pass

    release = stop


# -- run.sh's end-of-run checks --------------------------------------------------------

def log_leaks(users_path, logs, min_len=6):
    """Lines naming each secret of the passwd-file's users (every
    password of at least min_len characters in clear, IMAP-quoted, and in
    an AUTH PLAIN token) found in the logs."""
    secrets = set()
    for user, pw in users_file(users_path).items():
        if len(pw) >= min_len:      # "demo" is too short to search for
            secrets |= secret_forms(user.encode(), pw.encode())
    out = []
    for path in logs:
        data = read_bytes(path)
        out += ["%s contains %r" % (os.path.basename(path), x.decode("latin-1"))
                for x in sorted(secrets) if x in data]
    return out


def main(argv):
    """For run.sh: 'sanitizer LOG...' and 'leaks USERS LOG...' print the
    problems found (nothing when there are none)."""
    if argv[:1] == ["sanitizer"]:
        for path in argv[1:]:
            for ln in sanitizer_lines(read_text(path)):
                print(ln)
    elif argv[:1] == ["leaks"] and len(argv) >= 2:
        for ln in log_leaks(argv[1], argv[2:]):
            print(ln)
    else:
        sys.exit("usage: pbtest.py sanitizer LOG... | leaks USERS LOG...")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
