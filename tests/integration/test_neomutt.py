#!/usr/bin/env python3
"""Real NeoMutt with `pop_last = yes` (RFC 1460 LAST) against popbridge.

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_neomutt.py

NeoMutt's <fetch-mail> (key G) with $pop_last set asks STAT, then LAST, and
RETRs only the messages numbered above LAST's answer into $spool_file
(pop/pop.c pop_fetch_mail); a -ERR to LAST counts as 0, so everything is
downloaded again on every fetch. popbridge's LAST (Dovecot-compatible) is
`+OK N`, N the highest message number this account has retrieved with
RETR, remembered across sessions in the UID map (0 if none); RSET in a
session resets nothing persistent.

Self-contained like test_faults.py: a private Dovecot (pbtest.Dovecot)
with three messages for user "nm", one popbridge in front of it (plain
POP3 on 127.0.0.1, upstream tls = none), and NeoMutt under tmux (a private
tmux server on a socket in the scratch directory; send-keys, capture-pane)
with a muttrc that reads nothing else (-n -F, HOME in the scratch
directory): pop_host pop://nm@127.0.0.1:PORT, pop_pass, pop_last = yes,
pop_delete = no, pop_reconnect, spool_file a local Maildir, no TLS, no
other network. The steps:

  1. G: the 3 messages arrive in the Maildir (popbridge logs retrieved=3)
  2. G again: nothing is downloaded (still 3; LAST was asked; retrieved=0)
  3. one new message delivered to Dovecot over IMAP, G: exactly 1 more
  4. raw POP3: LAST answers +OK 4 in a new session, still after RSET;
     another account: +OK 0 before any RETR, +OK 2 after RETR 2, and
     +OK 2 again in the next session (after QUIT)

Each wait is bounded (a fetch: 60 s); the tmux server is killed at the
end, whatever happened. When neomutt or tmux is missing it is installed
(tests/lib/deps.sh); if that fails, one "ok - ... # SKIP" line says so.

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script.
"""

import email.utils
import imaplib
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import pbtest  # noqa: E402
from pbtest import HOST, cmd, show  # noqa: E402

USER, PW = "nm", "Nm-pw-3c81"
USER0, PW0 = "nm0", "Nm0-pw-77d2"
FETCH_WAIT = 60             # one <fetch-mail>, from the key to the session's end
START_WAIT = 20             # NeoMutt's index on the screen

R = pbtest.Report()
DV = None
PB = None
TMUX = None


# -- processes ------------------------------------------------------------------

def session_ends(pb, off):
    """[(session id, user, retrieved)] of the sessions that ended since off."""
    return [(m.group(1), m.group(2), int(m.group(3))) for m in re.finditer(
        r"session=(\S+) end [^\n]*?user=(\S+) [^\n]*?retrieved=(\d+)", pb.text(off))]


class Tmux:
    """A private tmux server (its own socket) running one NeoMutt."""

    def __init__(self, d):
        self.sock = os.path.join(d, "tmux.sock")
        self.env = dict(os.environ, HOME=os.path.join(d, "home"), LANG="C.UTF-8",
                        LC_ALL="C.UTF-8", TERM="xterm-256color")
        for k in ("TMUX", "TMUX_PANE", "MAIL", "MAILDIR", "EMAIL", "NEOMUTT_CONFIG"):
            self.env.pop(k, None)
        os.makedirs(self.env["HOME"], exist_ok=True)
        self.started = False

    def run(self, *args, timeout=10):
        return subprocess.run(["tmux", "-S", self.sock] + list(args), env=self.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def start(self, command):
        self.started = True
        p = self.run("-f", "/dev/null", "new-session", "-d", "-s", "nm", "-x", "160",
                     "-y", "48", command)
        if p.returncode != 0:
            raise RuntimeError("tmux new-session: %s" % p.stderr.decode("utf-8", "replace"))
        self.run("set-option", "-g", "remain-on-exit", "on")

    def keys(self, *keys):
        p = self.run("send-keys", "-t", "nm", *keys)
        if p.returncode != 0:
            raise AssertionError("tmux send-keys %s: %s" % (
                keys, p.stderr.decode("utf-8", "replace").strip()))

    def screen(self):
        p = self.run("capture-pane", "-p", "-t", "nm")
        if p.returncode != 0:
            return "(capture-pane failed: %s)" % p.stderr.decode("utf-8", "replace").strip()
        return p.stdout.decode("utf-8", "replace")

    def wait_screen(self, pattern, secs):
        deadline = time.time() + secs
        while True:
            s = self.screen()
            if re.search(pattern, s) or time.time() >= deadline:
                return re.search(pattern, s), s
            time.sleep(0.2)

    def stop(self):
        if self.started:
            try:
                self.run("kill-server", timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.started = False


def screen_lines(s, n=10):
    lines = [ln.rstrip() for ln in s.splitlines() if ln.strip()]
    return ["screen: " + ln for ln in lines[-n:]]


# -- mail --------------------------------------------------------------------------

def message(n, subject):
    return ("From: Sender %d <sender%d@example.org>\r\n"
            "To: nm@example.org\r\n"
            "Subject: %s\r\n"
            "Date: %s\r\n"
            "Message-ID: <neomutt-%d@example.org>\r\n"
            "\r\n"
            "Message number %d for the pop_last case.\r\n" % (
                n, n, subject, email.utils.formatdate(1700000000 + n * 60), n, n)
            ).encode()


def deliver(user, pw, msgs):
    conn = imaplib.IMAP4(HOST, DV.port, timeout=30)
    try:
        conn.login(user, pw)
        for n, subject in msgs:
            typ, data = conn.append("INBOX", None, None, message(n, subject))
            if typ != "OK":
                raise AssertionError("APPEND: %r" % data)
    finally:
        try:
            conn.logout()
        except Exception:  # noqa: BLE001
            pass


def maildir_count(d):
    n = 0
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        n += len([f for f in os.listdir(p) if not f.startswith(".")])
    return n


def maildir_subjects(d):
    out = []
    for sub in ("new", "cur"):
        for f in sorted(os.listdir(os.path.join(d, sub))):
            with open(os.path.join(d, sub, f), "rb") as fh:
                m = re.search(rb"^Subject: (.*?)\r?$", fh.read(), re.M)
            out.append(m.group(1).decode("utf-8", "replace") if m else "?")
    return sorted(out)


# -- the NeoMutt steps ----------------------------------------------------------

def muttrc(d, maildir):
    path = os.path.join(d, "muttrc")
    with open(path, "w") as f:
        f.write("""# test_neomutt.py: nothing but this file is read (neomutt -n -F)
set pop_host = "pop://%(user)s@127.0.0.1:%(port)d"
set pop_user = "%(user)s"
set pop_pass = "%(pw)s"
set pop_authenticators = "user"
set pop_last = yes
set pop_delete = no
set pop_reconnect = yes
set ssl_starttls = no
set ssl_force_tls = no
set spool_file = "%(maildir)s"
set mbox_type = Maildir
set folder = "%(dir)s/mail"
set record = ""
set postponed = "%(dir)s/postponed"
set header_cache = ""
set message_cachedir = ""
set hostname = "localhost.localdomain"
set sendmail = "/bin/false"
set mail_check = 3600
set mail_check_stats = no
set beep = no
set wait_key = no
""" % {"user": USER, "pw": PW, "port": PB.port, "maildir": maildir, "dir": d})
    os.chmod(path, 0o600)
    return path


def fetch(step, maildir, want_new, expect_last=True):
    """Presses G once and waits for popbridge's end line of the session
    NeoMutt opened; the Maildir must have grown by want_new messages."""
    before = maildir_count(maildir)
    off = PB.offset()
    TMUX.keys("G")
    deadline = time.time() + FETCH_WAIT
    ends = []
    while time.time() < deadline:
        ends = [e for e in session_ends(PB, off) if e[1] == USER]
        if ends:
            break
        time.sleep(0.2)
    probs = []
    if not ends:
        return ["%s: no POP3 session of %s ended within %ds after G" % (
            step, USER, FETCH_WAIT)] + screen_lines(TMUX.screen()) + [
            "popbridge: " + ln for ln in PB.tail(6, off)]
    time.sleep(0.3)             # the Maildir is written before QUIT; be generous
    after = maildir_count(maildir)
    sid, _, retrieved = ends[0]
    text = PB.text(off)
    asked_last = re.search(r"session=%s pop3< LAST" % re.escape(sid), text)
    if after - before != want_new:
        probs.append("%s: %d new message(s) in the Maildir (%d -> %d), want %d; "
                     "popbridge says retrieved=%d" % (step, after - before, before,
                                                      after, want_new, retrieved))
    if retrieved != want_new:
        probs.append("%s: popbridge's session end says retrieved=%d, want %d"
                     % (step, retrieved, want_new))
    if expect_last and not asked_last:
        probs.append("%s: NeoMutt did not send LAST (is pop_last in effect?)" % step)
    last = re.search(r"session=%s pop3> (\S+[^\n]*)" % re.escape(sid),
                     text[asked_last.end():]) if asked_last else None
    if probs:
        if last:
            probs.append("popbridge answered LAST with %r" % last.group(1)[:80])
        probs += ["subjects now: %s" % ", ".join(maildir_subjects(maildir))]
        probs += screen_lines(TMUX.screen(), 6)
    return probs


# -- LAST over raw POP3 -----------------------------------------------------------

def session(user, pw):
    return pbtest.login(user, pw, PB.port)


def want_last(p, n, when):
    r = cmd(p, b"LAST")
    if isinstance(r, bytes) and re.match(rb"\+OK %d(\s.*)?\r\n$" % n, r):
        return []
    return ["LAST %s -> %s, want +OK %d" % (when, show(r), n)]


def last_remembered():
    """After NeoMutt's fetches (RETR 1..4): a new session says +OK 4, and
    RSET changes nothing."""
    p = session(USER, PW)
    probs = want_last(p, 4, "in a new session after NeoMutt retrieved 1-4")
    r = cmd(p, b"RSET")
    if not pbtest.is_ok(r):
        probs.append("RSET -> %s" % show(r))
    probs += want_last(p, 4, "after RSET")
    cmd(p, b"QUIT")
    p.close()
    return probs


def last_fresh_account():
    """An account that never retrieved: +OK 0; after RETR 2 +OK 2 in the
    session, and after QUIT in the next one. (Whether an RSET after a
    RETR in the same session undoes it is left open: RFC 1460 says the
    session-start value, the brief only that nothing persistent is reset.)"""
    p = session(USER0, PW0)
    probs = want_last(p, 0, "before any RETR")
    r = cmd(p, b"RETR 2")
    if not pbtest.is_ok(r):
        probs.append("RETR 2 -> %s" % show(r))
    else:
        p.multi()
    probs += want_last(p, 2, "after RETR 2")
    r = cmd(p, b"QUIT")
    if not pbtest.is_ok(r):
        probs.append("QUIT -> %s" % show(r))
    p.close()
    p = session(USER0, PW0)
    probs += want_last(p, 2, "in the next session")
    cmd(p, b"QUIT")
    p.close()
    return probs


# -- main ------------------------------------------------------------------------------

def have_tools():
    """None when neomutt and tmux are there (installing them if needed),
    else why not."""
    if shutil.which("neomutt") and shutil.which("tmux"):
        return None
    deps = os.path.join(pbtest.LIB, "deps.sh")
    try:
        p = subprocess.run(["sh", deps, "neomutt", "neomutt", "tmux"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600)
        out = p.stdout.decode("utf-8", "replace").strip().splitlines()[-1:]
        out.append("deps.sh exit status %d" % p.returncode)
    except (OSError, subprocess.TimeoutExpired) as e:
        out = [str(e)]
    if shutil.which("neomutt") and shutil.which("tmux"):
        return None
    missing = [t for t in ("neomutt", "tmux") if not shutil.which(t)]
    return "%s not found and cannot be installed (%s)" % (" and ".join(missing),
                                                         "; ".join(out))


def cases(tmp):
    global DV, PB, TMUX
    DV = pbtest.Dovecot(os.path.join(tmp, "dovecot"), users={USER: PW, USER0: PW0})
    DV.start()
    deliver(USER, PW, [(1, "first"), (2, "second"), (3, "third")])
    deliver(USER0, PW0, [(11, "zero one"), (12, "zero two"), (13, "zero three")])
    PB = pbtest.Popbridge("neomutt", DV.port).start()
    pbtest.note("dovecot imap 127.0.0.1:%d, popbridge pop3 127.0.0.1:%d" % (DV.port, PB.port))
    maildir = os.path.join(tmp, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    os.makedirs(os.path.join(tmp, "mail"), exist_ok=True)      # $folder
    rc = muttrc(tmp, maildir)
    TMUX = Tmux(tmp)
    TMUX.start("exec neomutt -n -F %s" % rc)
    ok, s = TMUX.wait_screen(r"NeoMutt|Mutt:|q:Quit", START_WAIT)
    if not ok:
        R.fail("NeoMutt starts under tmux", ["no index within %ds" % START_WAIT]
               + screen_lines(s))
        return
    R.ok("NeoMutt starts under tmux with the test muttrc")
    R.case("neomutt pop_last: first <fetch-mail> downloads the 3 messages",
           fetch, "first G", maildir, 3)
    R.case("neomutt pop_last: second <fetch-mail> downloads nothing (LAST says 3)",
           fetch, "second G", maildir, 0)
    deliver(USER, PW, [(4, "fourth, delivered later")])
    R.case("neomutt pop_last: after one new delivery, <fetch-mail> downloads exactly 1",
           fetch, "third G", maildir, 1)
    R.case("LAST in a new session is the highest message retrieved (+OK 4), "
           "RSET changes nothing", last_remembered)
    R.case("LAST of an account that never retrieved is +OK 0, then +OK 2 after "
           "RETR 2, in that session and the next", last_fresh_account)


def main():
    def body(tmp):
        why = have_tools()
        if why:
            R.ok("neomutt with pop_last = yes fetches only new mail # SKIP %s" % why)
            return
        try:
            cases(tmp)
        finally:
            if TMUX is not None:
                TMUX.stop()
        if PB is not None and PB.proc is not None:
            pbtest.finish_checks(R, PB)
            pbtest.final_checks(
                R, [PB], leaks="no passwords or AUTH tokens in the neomutt popbridge log",
                secrets=[x for u, pw in ((USER, PW), (USER0, PW0))
                         for x in pbtest.secret_forms(u.encode(), pw.encode())])

    def cleanup():
        if TMUX is not None:
            TMUX.stop()

    return pbtest.script_main(R, "neomutt cases", body, cleanup)


if __name__ == "__main__":
    sys.exit(main())
