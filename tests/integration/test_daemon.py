#!/usr/bin/env python3
"""popbridge as a daemon (SPEC §1; issue 5): root and the state directory,
[process] user, --check-config / --version / --help, SIGHUP reloads and
SIGTERM's graceful shutdown.

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_daemon.py

Self-contained: starts a private Dovecot (tests/lib/dovecot.sh, sourced by
bash) on a free 127.0.0.1 port, appends a few plain messages
(tests/lib/corpus.py) for alice, bob, carol, dave and erin, and starts one
popbridge per case, each on its own free 127.0.0.1 port with its own state
directory:

  1  root without [process] user: a state directory with mode 0777 or 0775
     stops popbridge at start (non-zero exit, one error line naming the
     directory); with 0700 it starts and warns, suggesting [process] user.
  2  [process] user = nobody: /proc/PID/status shows nobody's uid and gid
     (all four fields of each), the socket bound before the switch still
     accepts, login + RETR work, the UID map is nobody's with mode 0600;
     user = no-such-user-xyz stops popbridge with a clear reason.
  3  --check-config prints a configuration that loads again to the same
     output; an unknown key on line 3 -> exit 1 and one line
     "FILE:3: [section] key: ..." on stderr; --version and --help exit 0.
  4  SIGHUP: info -> debug takes effect for new sessions; a broken file is
     refused, the old configuration stays, new sessions are served.
  5  SIGTERM with shutdown_grace = 5: new connections are refused, an open
     session may go on and its QUIT deletes (checked over IMAP); popbridge
     exits 0. A session that never QUITs is closed after the grace period
     and nothing is deleted.
  6  A missing state directory is created with mode 0700; a regular file
     named as the state directory stops popbridge with a clear reason.
  7  (beyond the issue's list) the same promises in other orders: a state
     directory root used before, then [process] user = nobody (root's UID
     maps stay usable); a state directory nobody cannot write (refused at
     start, or logins work); SIGHUP naming a missing [state] dir (created,
     or the reload refused).

At the end: no sanitizer report in any popbridge output.

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script. Needs root for cases 1 and 2 (they say "skipped"
otherwise).
"""

import os
import pwd
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import corpus  # noqa: E402
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import (HOST, REPLY_WAIT, Dovecot, Expected, cmd, first_diff, free_port,  # noqa: E402
                    is_ok, note, show)
from pop3wire import Pop3Closed  # noqa: E402

START_WAIT = 30             # popbridge greets within this
EXIT_WAIT = 15.0            # a popbridge that must refuse to start exits within this
GRACE = 5                   # [limits] shutdown_grace in case 5
N_MSGS = 3                  # plain messages per user


R = pbtest.Report()
DOVECOT = None
PASSWORDS = {}
CLI_OUTPUTS = []            # what popbridge printed on stderr when run by run_cli


def privileged_port():
    """A free 127.0.0.1 port that only root may bind (below
    net.ipv4.ip_unprivileged_port_start), or None."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            limit = int(f.read().strip())
    except (OSError, ValueError):
        limit = 1024
    ports = list(range(600, min(limit, 1024)))
    random.shuffle(ports)
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    return None


# -- Dovecot ------------------------------------------------------------------------

def imap_state(user):
    """{uid: flags} of user's INBOX."""
    conn = DOVECOT.imap(user, timeout=20)
    try:
        # \Recent belongs to whichever session sees a message first.
        return {u: sorted(f for f in v["flags"] if f != "\\Recent")
                for u, v in imapfetch.info(conn, "INBOX").items()}
    finally:
        conn.logout()


def expected(user):
    """user's INBOX as POP3 must present it."""
    return Expected.imap(DOVECOT.port, user, PASSWORDS[user], sections=("",))


# -- popbridge ----------------------------------------------------------------------

def popbridge(name, level="info", limits=None, make_state=0o700, **kw):
    """A popbridge of these cases (pbtest.Popbridge): level info, limits
    without shutdown_grace unless given, the state directory (default
    NAME-state) made with mode make_state (None: not made)."""
    return pbtest.Popbridge(name, DOVECOT.port if DOVECOT else 143, level=level,
                            limits=dict({"shutdown_grace": None}, **(limits or {})),
                            make_state=make_state, **kw)


# -- POP3 helpers -------------------------------------------------------------------

def login(pb, user):
    """A logged-in session; raises AssertionError when that fails."""
    return pbtest.login(user, PASSWORDS[user], pb.port)


def retr(p, n, want):
    """RETR n must deliver exactly want; a list of problems."""
    r = cmd(p, b"RETR %d" % n)
    if not is_ok(r):
        return ["RETR %d -> %s" % (n, show(r))]
    try:
        p.sock.settimeout(REPLY_WAIT)
        _, data, problems = p.multi()
    except (Pop3Closed, socket.timeout, OSError) as e:
        return ["RETR %d: the multi-line response broke off: %s" % (n, e)]
    probs = ["RETR %d: %s" % (n, x) for x in problems]
    if data != want:
        probs.append("RETR %d delivered other bytes: %s" % (n, first_diff(data, want)))
    return probs


def stop_checked(pb, probs):
    """Stops pb; a stop other than a clean exit 0 on SIGTERM is a problem."""
    rc = pb.stop()
    if rc != 0:
        probs.append("exit status on SIGTERM: %s, want 0" % rc)


def with_log(pb, probs, n=6):
    """probs, with the tail of pb's log when there are any."""
    if probs:
        probs += ["log: " + ln for ln in pb.tail(n)]
    return probs


def short_session(pb, user):
    """login, STAT, QUIT; a list of problems."""
    try:
        p = login(pb, user)
    except AssertionError as e:
        return [str(e)]
    probs = []
    r = cmd(p, b"STAT")
    if not is_ok(r):
        probs.append("STAT -> %s" % show(r))
    r = cmd(p, b"QUIT")
    if not is_ok(r):
        probs.append("QUIT -> %s" % show(r))
    p.close()
    return probs


def try_new_connection(port):
    """None when a new connection is refused (connect fails, -ERR, or
    closed without a greeting); else what it got."""
    try:
        s = socket.create_connection((HOST, port), timeout=3)
    except OSError:
        return None
    try:
        s.settimeout(3)
        data = s.recv(512)
    except socket.timeout:
        return "connected, and no greeting within 3 s (still accepted?)"
    except OSError:
        return None
    finally:
        s.close()
    if not data or data.startswith(b"-ERR"):
        return None
    return "a new connection got %r" % data[:100]


def error_lines(text):
    """popbridge's error-level lines (syslog <3> or a human 'error' tag)."""
    return [ln for ln in text.splitlines()
            if ln.startswith("<3>") or re.search(r"\berror\b", ln[:40], re.I)]


def proc_ids(pid):
    """{'Uid': [...], 'Gid': [...], 'Groups': [...]} from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out


def need_root():
    if os.geteuid() != 0:
        return "skipped: not running as root"
    return None


# -- 1: root and the state directory --------------------------------------------------

def refuses_open_state_dir(mode):
    def body():
        if need_root():
            note(need_root())
            return []
        pb = popbridge("c1-mode%o" % mode, make_state=mode)
        rc, out = pb.run_to_exit()
        probs = []
        if rc == 0 or not isinstance(rc, int):
            probs.append("exit status %s, want non-zero" % rc)
        errs = error_lines(out)
        if len(errs) != 1:
            probs.append("%d error lines, want exactly one: %r" % (len(errs), errs))
        if not any(pb.state in ln for ln in errs):
            probs.append("no error line names the state directory %s" % pb.state)
        if probs:
            probs += ["output: " + ln for ln in out.splitlines()[-8:]]
        return probs
    return body


def starts_with_private_state_dir():
    if need_root():
        note(need_root())
        return []
    pb = popbridge("c1-mode700", make_state=0o700)
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge: %s" % err]
    probs = []
    warn = [ln for ln in pb.text().splitlines() if "[process] user" in ln]
    if not warn:
        probs.append("no log line suggests [process] user")
    elif not (warn[0].startswith("<4>") or re.search(r"\bwarn", warn[0], re.I)):
        probs.append("the [process] user hint is not a warning: %r" % warn[0])
    if error_lines(pb.text()):
        probs.append("error lines: %r" % error_lines(pb.text()))
    stop_checked(pb, probs)
    return with_log(pb, probs, 8)


# -- 2: [process] user ------------------------------------------------------------------

def drops_to_nobody():
    if need_root():
        note(need_root())
        return []
    nobody = pwd.getpwnam("nobody")
    # A port only root can bind: that it accepts as nobody shows it was
    # bound before the switch.
    port = privileged_port()
    if port is None:
        note("no free privileged port; case 2 listens on an ordinary one")
    pb = popbridge("c2-nobody", user="nobody", make_state=0o700, port=port)
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge: %s" % err]
    probs = []
    ids = proc_ids(pb.proc.pid)
    if ids.get("Uid") != [nobody.pw_uid] * 4:
        probs.append("Uid in /proc/%d/status: %s, want %d x4"
                     % (pb.proc.pid, ids.get("Uid"), nobody.pw_uid))
    if ids.get("Gid") != [nobody.pw_gid] * 4:
        probs.append("Gid in /proc/%d/status: %s, want %d x4"
                     % (pb.proc.pid, ids.get("Gid"), nobody.pw_gid))
    if 0 in ids.get("Groups", []):
        probs.append("supplementary groups still include root's: %s" % ids.get("Groups"))
    # The listening socket was bound as root; it still accepts.
    want = expected("alice")
    try:
        p = login(pb, "alice")
    except AssertionError as e:
        probs.append(str(e))
    else:
        r = cmd(p, b"STAT")
        w = b"+OK %d %d\r\n" % (len(want), sum(want.size))
        if r != w:
            probs.append("STAT -> %s, want %r" % (show(r), w))
        probs += retr(p, 1, want.retr[0])
        r = cmd(p, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT -> %s" % show(r))
        p.close()
    # The UID map written by nobody.
    st = os.stat(pb.state)
    if st.st_uid != nobody.pw_uid:
        probs.append("the state directory is owned by uid %d, want %d (handed over)"
                     % (st.st_uid, nobody.pw_uid))
    maps = [n for n in os.listdir(pb.state) if not n.startswith(".")]
    if not maps:
        probs.append("no UID map in %s after a login: %s" % (pb.state, os.listdir(pb.state)))
    for n in maps:
        st = os.lstat(os.path.join(pb.state, n))
        if not stat.S_ISREG(st.st_mode):
            probs.append("%s in the state directory is not a regular file" % n)
            continue
        if (st.st_uid, st.st_gid) != (nobody.pw_uid, nobody.pw_gid):
            probs.append("UID map %s is owned by %d:%d, want nobody (%d:%d)"
                         % (n, st.st_uid, st.st_gid, nobody.pw_uid, nobody.pw_gid))
        if stat.S_IMODE(st.st_mode) != 0o600:
            probs.append("UID map %s has mode %04o, want 0600" % (n, stat.S_IMODE(st.st_mode)))
    if not pb.wait_log(0, r"running as user nobody", 1):
        probs.append("the log does not say it runs as user nobody")
    stop_checked(pb, probs)
    return with_log(pb, probs)


def unknown_user_refused():
    if need_root():
        note(need_root())
        return []
    pb = popbridge("c2-nouser", user="no-such-user-xyz", make_state=0o700)
    rc, out = pb.run_to_exit()
    probs = []
    if rc == 0 or not isinstance(rc, int):
        probs.append("exit status %s, want non-zero" % rc)
    errs = [ln for ln in error_lines(out) if "no-such-user-xyz" in ln]
    if not errs:
        probs.append("no error line names the user no-such-user-xyz")
    if probs:
        probs += ["output: " + ln for ln in out.splitlines()[-8:]]
    return probs


# -- 3: command line ------------------------------------------------------------------

def run_cli(args, timeout=15):
    try:
        r = subprocess.run([pbtest.default_popbridge()] + args, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("popbridge %s still running after %d s" % (" ".join(args), timeout))
    CLI_OUTPUTS.append(r.stderr)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


CHECK_CONFIGS = {
    "empty": "",
    "daemon": None,   # the configuration of a test instance
    "rich": """[listen]
pop3 = 127.0.0.1:1110, [::1]:1110
pop3s =
tls_min = 1.0
allow_plaintext_auth = never
proxy_protocol = yes
trusted_proxies = 10.0.0.0/8, 192.0.2.7, 2001:db8::/32

[upstream]
provider = gmail
verify = no
timeout = 7

[maildrop]
folders = INBOX, Junk, Entw&APw-rfe
since = 2024-01-31
on_delete = trash
trash = [Gmail]/Trash
mark_seen = yes

[state]
dir = /var/lib/popbridge-test

[limits]
max_sessions = 7
max_per_ip = 3
idle_timeout = 900
auth_fail_delay = 0
shutdown_grace = 0

[log]
level = debug

[process]
user = nobody
""",
}


def check_config_roundtrip():
    probs = []
    for name, text in CHECK_CONFIGS.items():
        if text is None:
            text = popbridge("c3-conf", level="debug", limits={"shutdown_grace": GRACE},
                             state=os.path.join(pbtest.SCRATCH, "c3-state"),
                             make_state=None).conf_text()
        f1 = os.path.join(pbtest.SCRATCH, "c3-%s.ini" % name)
        f2 = os.path.join(pbtest.SCRATCH, "c3-%s.printed.ini" % name)
        with open(f1, "w") as f:
            f.write(text)
        rc, out1, err = run_cli(["-c", f1, "--check-config"])
        if rc != 0:
            probs.append("%s: --check-config exit %d, want 0; stderr %r" % (name, rc, err[:200]))
            continue
        if not out1.strip():
            probs.append("%s: --check-config printed nothing" % name)
            continue
        with open(f2, "w") as f:
            f.write(out1)
        rc, out2, err = run_cli(["-c", f2, "--check-config"])
        if rc != 0:
            probs.append("%s: the printed configuration does not load again: exit %d, %r"
                         % (name, rc, err.strip()[:250]))
            continue
        # The header names the file it came from; nothing else may differ.
        if out2 != out1.replace(f1, f2):
            a = out1.replace(f1, f2).splitlines()
            b = out2.splitlines()
            diff = [("-%s / +%s" % (x, y)) for x, y in zip(a, b) if x != y][:4]
            probs.append("%s: the printed configuration prints differently: %s%s"
                         % (name, diff, " (%d vs %d lines)" % (len(a), len(b))
                            if len(a) != len(b) else ""))
    return probs


def check_config_bad_file():
    path = os.path.join(pbtest.SCRATCH, "c3-bad.ini")
    with open(path, "w") as f:
        f.write("[listen]\npop3 = 127.0.0.1:%d\nno_such_key = 1\n\n[log]\nlevel = info\n"
                % free_port())
    probs = []
    rx = re.compile(r"^(popbridge: )?%s:3: \[listen\] no_such_key: \S.*$" % re.escape(path))
    for args in (["-c", path, "--check-config"], ["-c", path]):
        rc, out, err = run_cli(args)
        what = "popbridge " + " ".join(args[2:] or ["(start)"])
        if rc != 1:
            probs.append("%s: exit %d, want 1" % (what, rc))
        lines = err.splitlines()
        if len(lines) != 1 or not rx.match(lines[0]):
            probs.append("%s: stderr %r, want one line '%s:3: [listen] no_such_key: ...'"
                         % (what, err[:300], path))
        if out.strip():
            probs.append("%s: printed on stdout: %r" % (what, out[:200]))
    return probs


def version_and_help():
    probs = []
    rc, out, err = run_cli(["--version"])
    if rc != 0 or not re.match(r"^popbridge \d+\.\d+\.\d+\S*\n$", out):
        probs.append("--version: exit %d, stdout %r, stderr %r" % (rc, out[:100], err[:100]))
    rc, out, err = run_cli(["--help"])
    if rc != 0 or "usage" not in out.lower() or "--check-config" not in out:
        probs.append("--help: exit %d, stdout %r, stderr %r" % (rc, out[:100], err[:100]))
    rc, out, err = run_cli(["-V"])
    if rc != 0 or not out.startswith("popbridge "):
        probs.append("-V: exit %d, stdout %r" % (rc, out[:100]))
    rc, out, err = run_cli(["-h"])
    if rc != 0 or "usage" not in out.lower():
        probs.append("-h: exit %d, stdout %r" % (rc, out[:100]))
    return probs


# -- 4: SIGHUP ------------------------------------------------------------------------

def sighup_reload():
    pb = popbridge("c4-hup", level="info")
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge: %s" % err]
    probs = []
    try:
        # At info no command is logged.
        off = pb.offset()
        probs += ["at info: " + x for x in short_session(pb, "bob")]
        if pb.wait_log(off, r"session=\d+ end ", 5) is None:
            probs.append("at info: no session end line")
        if re.search(r"pop3< STAT", pb.text(off)):
            probs.append("at info, a POP3 command was logged: %r"
                         % re.search(r".*pop3< STAT.*", pb.text(off)).group(0))
        # info -> debug.
        pb.level = "debug"
        pb.write_conf()
        off = pb.offset()
        pb.proc.send_signal(signal.SIGHUP)
        if pb.wait_log(off, r"configuration reloaded", 10) is None:
            probs.append("no 'configuration reloaded' in the log within 10 s of SIGHUP: %r"
                         % pb.tail(3, off))
            return probs
        off = pb.offset()
        probs += ["at debug: " + x for x in short_session(pb, "bob")]
        m = pb.wait_log(off, r"^.*session=\d+ pop3< STAT.*$", 5)
        if m is None:
            probs.append("after the reload to debug, a new session's STAT was not logged: %r"
                         % pb.tail(4, off))
        elif not (m.group(0).startswith("<7>") or re.search(r"\bdebug\b", m.group(0), re.I)):
            probs.append("the command line is not at debug level: %r" % m.group(0))
        # A broken file is refused.
        pb.write_conf(extra="\n[limits]\nno_such_key = 1\n")
        off = pb.offset()
        pb.proc.send_signal(signal.SIGHUP)
        m = pb.wait_log(off, r"^.*reload failed.*$", 10)
        if m is None:
            probs.append("no 'reload failed' in the log within 10 s of SIGHUP with a broken "
                         "file: %r" % pb.tail(3, off))
        else:
            if "no_such_key" not in m.group(0):
                probs.append("the reload failure does not name the bad key: %r" % m.group(0))
            if not re.search(r"keep", m.group(0), re.I):
                probs.append("the reload failure does not say the old configuration stays: %r"
                             % m.group(0))
        if not pb.alive():
            probs.append("popbridge died after the failed reload (status %s)"
                         % pb.proc.returncode)
            return probs
        off = pb.offset()
        probs += ["after the failed reload: " + x for x in short_session(pb, "bob")]
        if pb.wait_log(off, r"session=\d+ pop3< STAT", 5) is None:
            probs.append("after the failed reload, debug logging is gone (old configuration "
                         "not kept?)")
        if pb.wait_log(off, r"session=\d+ end ", 5) is None:
            probs.append("after the failed reload: no session end line")
    finally:
        stop_checked(pb, probs)
    return with_log(pb, probs)


def sighup_session_keeps_its_config():
    """A session keeps the configuration it started with: on_delete = keep
    at login, expunge after a SIGHUP; its DELE + QUIT deletes nothing, and
    QUIT answers at once (it used to wait for the idle timeout)."""
    pb = popbridge("c4-keep", level="info")
    pb.write_conf(extra="\n[maildrop]\non_delete = keep\n")
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge: %s" % err]
    probs = []
    try:
        before = imap_state("alice")
        try:
            p = login(pb, "alice")
        except AssertionError as e:
            return [str(e)]
        try:
            r = cmd(p, b"DELE 1")
            if not is_ok(r):
                probs.append("DELE 1 -> %s" % show(r))
            pb.write_conf(extra="\n[maildrop]\non_delete = expunge\n")
            off = pb.offset()
            pb.proc.send_signal(signal.SIGHUP)
            if pb.wait_log(off, r"configuration reloaded", 10) is None:
                return probs + ["no 'configuration reloaded' within 10 s: %r" % pb.tail(3, off)]
            t0 = time.time()
            try:
                r = cmd(p, b"QUIT")
            except (Pop3Closed, socket.timeout, OSError) as e:
                r = ("no answer: %s" % e).encode()
            if not is_ok(r):
                probs.append("QUIT after the reload -> %s (%.1f s)" % (show(r), time.time() - t0))
        finally:
            p.close()
        after = imap_state("alice")
        if after != before:
            probs.append("the session started with on_delete = keep, yet the mailbox "
                         "changed: %d -> %d messages" % (len(before), len(after)))
    finally:
        stop_checked(pb, probs)
    return with_log(pb, probs)


# -- 5: SIGTERM -----------------------------------------------------------------------

def sigterm_graceful_quit():
    user = "carol"
    want = expected(user)
    uids = want.uids
    pb = popbridge("c5-quit", limits={"shutdown_grace": GRACE})
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge: %s" % err]
    probs = []
    p = login(pb, user)
    try:
        r = cmd(p, b"DELE 1")
        if not is_ok(r):
            return ["DELE 1 -> %s" % show(r)]
        off = pb.offset()
        t0 = time.time()
        pb.proc.send_signal(signal.SIGTERM)
        if pb.wait_log(off, r"stop accepting", 5) is None:
            probs.append("no 'stop accepting' in the log within 5 s of SIGTERM")
        got = try_new_connection(pb.port)
        if got:
            probs.append("after SIGTERM: %s" % got)
        # The open session goes on.
        rest = want.size[1:]
        r = cmd(p, b"STAT")
        w = b"+OK %d %d\r\n" % (len(rest), sum(rest))
        if r != w:
            probs.append("STAT after SIGTERM -> %s, want %r" % (show(r), w))
        probs += ["after SIGTERM: " + x for x in retr(p, 2, want.retr[1])]
        r = cmd(p, b"QUIT")
        if not is_ok(r):
            probs.append("QUIT after SIGTERM -> %s" % show(r))
        elif time.time() - t0 >= GRACE:
            probs.append("the session took %.1fs, past the grace period: the test is "
                         "too slow to mean anything" % (time.time() - t0))
    finally:
        p.close()
    rc = pb.wait_exit(GRACE + 10)
    if rc is None:
        probs.append("popbridge still running %d s after SIGTERM" % (GRACE + 10))
        pb.kill()
    elif rc != 0:
        probs.append("exit status %s after SIGTERM, want 0" % rc)
    left = imap_state(user)
    if sorted(left) != uids[1:]:
        probs.append("over IMAP after QUIT: UIDs %s, want %s (message 1, UID %d, deleted)"
                     % (sorted(left), uids[1:], uids[0]))
    return with_log(pb, probs)


def sigterm_grace_expires():
    user = "dave"
    want = expected(user)
    before = imap_state(user)
    pb = popbridge("c5-grace", limits={"shutdown_grace": GRACE})
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge: %s" % err]
    probs = []
    p = login(pb, user)
    closed_after = None
    try:
        r = cmd(p, b"DELE 1")
        if not is_ok(r):
            return ["DELE 1 -> %s" % show(r)]
        r = cmd(p, b"DELE 2")
        if not is_ok(r):
            return ["DELE 2 -> %s" % show(r)]
        t0 = time.time()
        pb.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        got = try_new_connection(pb.port)
        if got:
            probs.append("after SIGTERM: %s" % got)
        # Never QUIT: wait for popbridge to close the session.
        p.sock.settimeout(GRACE + 10)
        got = b""
        try:
            while True:
                chunk = p.sock.recv(4096)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            probs.append("the session was not closed within %d s of SIGTERM" % (GRACE + 10))
        except OSError:
            pass
        closed_after = time.time() - t0
        if got and not got.startswith(b"-ERR"):
            probs.append("before closing, popbridge sent %r" % got[:200])
    finally:
        p.close()
    if closed_after is not None and not (GRACE - 1 <= closed_after <= GRACE + 3):
        probs.append("the session was closed %.1fs after SIGTERM, want about %d s "
                     "(shutdown_grace)" % (closed_after, GRACE))
    rc = pb.wait_exit(10)
    if rc is None:
        probs.append("popbridge still running 10 s after closing the session")
        pb.kill()
    elif rc != 0:
        probs.append("exit status %s after SIGTERM, want 0" % rc)
    after = imap_state(user)
    if after != before:
        probs.append("over IMAP the mailbox changed: %s -> %s" % (before, after))
    if len(after) != len(want):
        probs.append("over IMAP %d messages, want %d" % (len(after), len(want)))
    if not pb.wait_log(0, r"session=\d+ end [^\n]*deleted=0", 1):
        probs.append("no session end line with deleted=0")
    return with_log(pb, probs)


# -- 6: the state directory ------------------------------------------------------------

def missing_state_dir_created(user=None, name="c6-missing"):
    def body():
        if user and need_root():
            note(need_root())
            return []
        parent = os.path.join(pbtest.SCRATCH, name)
        os.makedirs(parent, exist_ok=True)
        os.chmod(parent, 0o755)
        state = os.path.join(parent, "state")
        if os.path.lexists(state):
            shutil.rmtree(state)
        pb = popbridge(name, state=state, user=user, make_state=None)
        err = pb.try_start(START_WAIT)
        probs = []
        if err:
            return ["popbridge: %s" % err]
        try:
            st = os.stat(state)
        except OSError as e:
            probs.append("state directory %s not created: %s" % (state, e))
        else:
            if not stat.S_ISDIR(st.st_mode):
                probs.append("%s is not a directory" % state)
            if stat.S_IMODE(st.st_mode) != 0o700:
                probs.append("state directory mode %04o, want 0700" % stat.S_IMODE(st.st_mode))
            if user:
                uid = pwd.getpwnam(user).pw_uid
                if st.st_uid != uid:
                    probs.append("state directory owned by uid %d, want %s (%d)"
                                 % (st.st_uid, user, uid))
        if not pb.wait_log(0, r"created state directory", 1):
            probs.append("the log does not say the state directory was created")
        probs += short_session(pb, "erin")
        stop_checked(pb, probs)
        return with_log(pb, probs)
    return body


def state_dir_is_file():
    path = os.path.join(pbtest.SCRATCH, "c6-file-state")
    with open(path, "w") as f:
        f.write("not a directory\n")
    pb = popbridge("c6-file", state=path, make_state=None)
    rc, out = pb.run_to_exit()
    probs = []
    if rc == 0 or not isinstance(rc, int):
        probs.append("exit status %s, want non-zero" % rc)
    errs = error_lines(out)
    if len(errs) != 1 or path not in errs[0] or "director" not in errs[0]:
        probs.append("want one error line naming %s and saying it is no directory: %r"
                     % (path, errs))
    if probs:
        probs += ["output: " + ln for ln in out.splitlines()[-8:]]
    return probs


# -- beyond the list: the same promises in other orders ---------------------

def nobody_keeps_root_maps():
    """A state directory used as root, then [process] user = nobody: the
    UID maps root wrote must stay usable (popbridge hands the directory
    over; its maps must follow, or an account seen before can never log
    in again)."""
    if need_root():
        note(need_root())
        return []
    state = os.path.join(pbtest.SCRATCH, "c7-shared-state")
    pb = popbridge("c7-root", state=state)
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge as root: %s" % err]
    probs = ["as root: " + x for x in short_session(pb, "alice")]
    rc = pb.stop()
    if rc != 0:
        probs.append("as root: exit status on SIGTERM: %s" % rc)
    maps = sorted(n for n in os.listdir(state) if not n.startswith("."))
    if not maps:
        return probs + ["no UID map written as root"]
    pb = popbridge("c7-nobody", state=state, user="nobody", make_state=None)
    err = pb.try_start(START_WAIT)
    if err:
        return probs + ["popbridge as nobody: %s" % err]
    want = expected("alice")
    try:
        p = login(pb, "alice")
    except AssertionError as e:
        probs.append("as nobody, after root wrote the map: %s" % e)
    else:
        probs += ["as nobody: " + x for x in retr(p, 1, want.retr[0])]
        r = cmd(p, b"QUIT")
        if not is_ok(r):
            probs.append("as nobody: QUIT -> %s" % show(r))
        p.close()
    owners = ["%s %d:%d %04o" % (n, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
              for n in maps for st in [os.stat(os.path.join(state, n))]]
    rc = pb.stop()
    if rc != 0:
        probs.append("as nobody: exit status on SIGTERM: %s" % rc)
    if probs:
        probs += ["maps: %s" % owners]
        probs += ["log: " + ln for ln in error_lines(pb.text())[-3:]]
    return probs


def nobody_cannot_write_state_dir():
    """[process] user = nobody with a state directory nobody cannot write
    (0700, another user's): popbridge must refuse to start naming it, or
    else serve logins; starting and then failing every login is neither."""
    if need_root():
        note(need_root())
        return []
    state = os.path.join(pbtest.SCRATCH, "c8-other-state")
    os.makedirs(state, exist_ok=True)
    os.chmod(state, 0o700)
    os.chown(state, 4242, 4242)
    pb = popbridge("c8-nobody", state=state, user="nobody", make_state=None)
    err = pb.try_start(START_WAIT)
    if err:
        errs = error_lines(pb.text())
        if pb.proc.poll() not in (None, 0) and any(state in ln for ln in errs):
            return []
        return ["popbridge: %s; want a non-zero exit with an error line naming %s"
                % (err, state)]
    probs = []
    r = short_session(pb, "bob")
    if r:
        probs.append("popbridge started as nobody with a state directory nobody cannot "
                     "write, and then: %s" % "; ".join(r))
        probs += ["log: " + ln for ln in error_lines(pb.text())[-2:]]
    rc = pb.stop()
    if rc != 0:
        probs.append("exit status on SIGTERM: %s" % rc)
    return probs


def sighup_missing_state_dir():
    """SIGHUP naming a [state] dir that does not exist yet: popbridge
    must create it as at start, or refuse the reload and keep the old
    one; either way new sessions still log in."""
    pb = popbridge("c9-hup-state")
    err = pb.try_start(START_WAIT)
    if err:
        return ["popbridge: %s" % err]
    probs = []
    try:
        parent = os.path.join(pbtest.SCRATCH, "c9-new")
        os.makedirs(parent, exist_ok=True)
        pb.state = os.path.join(parent, "state")
        pb.write_conf()
        off = pb.offset()
        pb.proc.send_signal(signal.SIGHUP)
        m = pb.wait_log(off, r"^.*(configuration reloaded|reload failed).*$", 10)
        if m is None:
            return ["neither 'configuration reloaded' nor 'reload failed' within 10 s"]
        r = short_session(pb, "erin")
        if r:
            probs.append("after %r: %s" % (m.group(0), "; ".join(r)))
            probs += ["log: " + ln for ln in error_lines(pb.text(off))[-2:]]
        if "reloaded" in m.group(0) and not os.path.isdir(pb.state):
            probs.append("the reload was accepted and %s was not created" % pb.state)
    finally:
        stop_checked(pb, probs)
    return probs


# -- the run --------------------------------------------------------------------------

def setup():
    global DOVECOT, PASSWORDS
    DOVECOT = Dovecot(os.path.join(pbtest.SCRATCH, "dovecot")).start()
    PASSWORDS = DOVECOT.passwords()
    note("dovecot: imap 127.0.0.1:%d; scratch %s" % (DOVECOT.port, pbtest.SCRATCH))
    for seed, user in enumerate(("alice", "bob", "carol", "dave", "erin")):
        DOVECOT.append(user, corpus.generated(N_MSGS, 2000 + 500 * seed, seed=seed,
                                              prefix=user))


def cases():
    R.case("root, no [process] user, state dir 0777: exits non-zero naming the dir",
           refuses_open_state_dir(0o777))
    R.case("root, no [process] user, state dir 0775: exits non-zero naming the dir",
           refuses_open_state_dir(0o775))
    R.case("root, no [process] user, state dir 0700: starts, warns to set [process] user",
           starts_with_private_state_dir)
    R.case("[process] user = nobody: uid/gid dropped, socket accepts, RETR, map 0600 nobody's",
           drops_to_nobody)
    R.case("[process] user = no-such-user-xyz: exits non-zero with a clear reason",
           unknown_user_refused)
    R.case("--check-config output loads again and prints the same", check_config_roundtrip)
    R.case("unknown key on line 3: exit 1, one line FILE:3: [listen] no_such_key: ...",
           check_config_bad_file)
    R.case("--version and --help exit 0", version_and_help)
    R.case("SIGHUP: info -> debug applies to new sessions; a broken file is refused, "
           "old config kept, still serving", sighup_reload)
    R.case("SIGHUP: a running session keeps its configuration (on_delete = keep stays "
           "keep; QUIT answers at once)", sighup_session_keeps_its_config)
    R.case("SIGTERM: new connections refused, the open session finishes, QUIT deletes, exit 0",
           sigterm_graceful_quit)
    R.case("SIGTERM: a session without QUIT is closed after shutdown_grace, nothing "
           "deleted, exit 0", sigterm_grace_expires)
    R.case("missing state directory is created with mode 0700", missing_state_dir_created())
    R.case("missing state directory with [process] user = nobody: created 0700, nobody's",
           missing_state_dir_created("nobody", "c6-missing-nobody"))
    R.case("state directory that is a regular file: exits non-zero with a clear reason",
           state_dir_is_file)
    R.case("[process] user = nobody on a state dir root used before: old UID maps usable",
           nobody_keeps_root_maps)
    R.case("[process] user = nobody, state dir nobody cannot write: refused at start or "
           "logins work", nobody_cannot_write_state_dir)
    R.case("SIGHUP naming a missing [state] dir: created or reload refused; logins work",
           sighup_missing_state_dir)


def finish():
    san = []
    for text in [pb.text() for pb in pbtest.popbridges()] + [
            o.decode("utf-8", "replace") for o in CLI_OUTPUTS]:
        san += pbtest.sanitizer_lines(text)
    R.check("no sanitizer reports in popbridge's output", san[:10])


def main():
    def body(tmp):
        try:
            setup()
        except Exception as e:
            R.fail("private Dovecot starts with the test mail",
                   ["%s: %s" % (type(e).__name__, e)])
        else:
            cases()
            finish()

    return pbtest.script_main(R, "daemon cases", body)


if __name__ == "__main__":
    sys.exit(main())
