#!/usr/bin/env python3
"""Accounts and device passwords (issue 14) against two real Dovecots.

    POPBRIDGE=/abs/build/asan/popbridge python3 tests/integration/test_accounts.py

Self-contained: two private Dovecots (pbtest.Dovecot), A with the users
"office", "other" and "scanner" (the last one an IMAP user whose name is
also an account's pop3_user: it must never pass through), B with "home"
and STARTTLS (a test CA's certificate); one popbridge (pbtest.Popbridge:
plain POP3 on 127.0.0.1, [upstream] tls = none, auth_fail_delay = 1, the
state directory left for passwd to create) with two accounts:

    [account office-scanner]  pop3_user = scanner, upstream_user = office,
                              [upstream] (Dovecot A) inherited
    [account home]            upstream_user = home, host/port of Dovecot B,
                              tls = starttls with ca_file = the test CA

`popbridge passwd` gives office-scanner two devices ("scanner",
"printer", different passwords) and home one ("phone", --generate), and
stores both upstream passwords (device passwords with blanks, quotes and a
backslash). Then:

  - passwd's interface: exit status, one-line reasons, --list, nothing
    secret on stdout or stderr, --check-config listing the accounts;
  - both devices of office-scanner fetch byte-exact with fetchmail and
    with mpop (each compared with IMAP BODY.PEEK[]); USER/PASS and AUTH
    PLAIN, pop3_user in any case;
  - the two accounts at once, on their two Dovecots, from threads, home's
    sessions through STARTTLS with its own CA, office's without;
  - an account's own maildrop policy (home: on_delete = keep);
  - a wrong device password: -ERR [AUTH] after auth_fail_delay, and no
    IMAP connection at all (Dovecot's log, popbridge's session lines);
    the IMAP user "scanner" with its real password: refused the same way;
  - pass-through for other names ("other"), its UID map under today's name;
  - passwd while the daemon runs: a device added works at the next
    session, a revoked one gets -ERR [AUTH] while the other goes on;
  - kill -9 at random moments of passwd: the file is the old or the new;
  - a damaged account file: that account's logins -ERR [SYS/TEMP] with an
    error logged, the other account goes on; a stale upstream secret:
    -ERR [SYS/TEMP] ... wait, and the log names the fix;
  - SIGHUP with unknown_users = refuse and a new account: "other" refused
    at PASS, Dovecot sees nothing, a session logged in before the reload
    goes on, the new account logs in;
  - revoking the last device drops the key and the secret;
  - the state directory: every file 0600 or stricter, none holding any
    password (in clear, base64 or an AUTH PLAIN token); popbridge's log
    neither; and the end-of-run checks (exit 0 on SIGTERM, no sanitizer
    report).

Output and environment: tests/lib/pbtest.py (script_main), as every
integration script.
"""

import base64
import concurrent.futures
import hashlib
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

import corpus  # noqa: E402
import pbtest  # noqa: E402
import testca  # noqa: E402
from pbtest import HOST  # noqa: E402
from pop3wire import Pop3  # noqa: E402

POPBRIDGE = pbtest.default_popbridge()
R = pbtest.Report(max_lines=24, width=300)

UPSTREAM_PW = {"office": "Office-app-pw-71c9", "other": "Other-pw-5d21",
               "scanner": "Scanner-imap-pw-88aa", "home": "Home-app-pw-3b0e"}
# With blanks and quotes: PASS takes the rest of the line verbatim.
DEVICE_PW = {"scanner": "Scan-dev-pw-1f2e", "printer": "Print dev pw 'q' 9c4",
             "copier": 'Copier "dev" pw\\6a0b', "late": "Late-dev-pw-0c5e"}
GENERATED = {}              # label -> password printed by --generate
DELAY = 1                   # [limits] auth_fail_delay
FETCH_WAIT = 90

# Corpus messages that every client delivers unchanged (no over-long lines,
# which fetchmail breaks; no header-only message, which it completes).
OFFICE_MSGS = ("plain", "dot-lines", "leading-dot", "latin1-8bit", "utf8-8bit",
               "no-final-crlf", "body-dot", "dots-everywhere")
HOME_MSGS = ("plain", "crlf-mix", "no-final-crlf-dot", "body-many-lines")

TMP = ""
CA = None                   # testca.TestCA: Dovecot B's certificate
DV_A = None
DV_B = None
PB = None
CONF = ""
STATE = ""


# -- processes ------------------------------------------------------------------

def accounts_text(refuse=False, late=False):
    text = ("[accounts]\nunknown_users = %s\n\n"
            "[account office-scanner]\n"
            "pop3_user = scanner\n"
            "upstream_user = office\n\n"
            "[account home]\n"
            "upstream_user = home\n"
            "host = 127.0.0.1\n"
            "port = %d\n"
            "tls = starttls\n"
            "ca_file = %s\n"
            "on_delete = keep\n" % ("refuse" if refuse else "passthrough", DV_B.port,
                                     CA.cert))
    if late:
        text += "\n[account late]\npop3_user = late-dev\nupstream_user = other\n"
    return text


def write_conf(refuse=False, late=False):
    PB.extra = accounts_text(refuse, late)
    PB.write_conf()


def passwd(*args, lines=(), timeout=60):
    """popbridge -c CONF passwd ARGS with lines on standard input: (exit
    status, stdout, stderr)."""
    data = b"".join((ln.encode() if isinstance(ln, str) else ln) + b"\n" for ln in lines)
    p = subprocess.run([POPBRIDGE, "-c", CONF, "passwd"] + list(args), input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def passwd_ok(*args, lines=()):
    rc, out, err = passwd(*args, lines=lines)
    if rc != 0:
        raise AssertionError("passwd %s: exit %d: %s" % (" ".join(args), rc, err.strip()))
    if pbtest.SANITIZER.search(err):
        raise AssertionError("passwd %s: sanitizer report: %s" % (" ".join(args), err[:400]))
    return out, err


def account_file(name):
    return os.path.join(STATE, "account-" + name)


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def replace_file(path, data):
    tmp = path + ".test-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# -- POP3 -----------------------------------------------------------------------

def connect():
    return Pop3(HOST, PB.port, timeout=20)


def login_reply(user, pw, auth_plain=False):
    """The reply to PASS (or AUTH PLAIN) and the seconds it took; the
    session is closed."""
    p = connect()
    try:
        t0 = time.time()
        r = p.auth_plain(user, pw) if auth_plain else p.login(user, pw)
        return r, time.time() - t0
    finally:
        p.close()


def session(user, pw):
    return pbtest.Pop3Session(PB, user, pw, timeout=20)


def Mailbox(port, user):
    """What POP3 must deliver for an IMAP mailbox (RETR bytes in UID
    order)."""
    return pbtest.Expected.imap(port, user, UPSTREAM_PW[user], sections=("",))


def check_session(user, pw, box):
    """Logs in, checks STAT, LIST and every RETR against box; QUIT."""
    probs = []
    with session(user, pw) as s:
        n, octets = s.stat()
        if n != len(box) or octets != sum(box.size):
            probs.append("STAT %d %d, want %d %d" % (n, octets, len(box), sum(box.size)))
        sizes = s.list()
        if sizes != box.size:
            probs.append("LIST %r, want %r" % (sizes, box.size))
        for i in range(1, min(n, len(box)) + 1):
            got = s.retr(i)
            if got != box.retr[i - 1]:
                probs.append("RETR %s: %s" % (box.label(i),
                                             pbtest.first_diff(got, box.retr[i - 1])))
        s.quit_ok()
    return probs


# -- fetchmail and mpop -----------------------------------------------------------

def client_fetch(client, label, user, pw, box):
    """One run of fetchmail or mpop as device label: everything in box,
    byte for byte (as each client hands a message to its MDA)."""
    return pbtest.client_fetch(client, TMP, "%s-%s" % (client, label), PB.port, user, pw, box)


# -- logs -------------------------------------------------------------------------

def dovecot_logins(dv, off):
    """Lines of Dovecot's log after off that show an IMAP login or a login
    attempt (imap-login, auth)."""
    text = dv.log_text(off)
    return [ln for ln in text.splitlines()
            if "imap-login:" in ln or "auth:" in ln or "auth-worker" in ln]


def failed_session(off, user):
    """The id of the session whose login failed for user since off."""
    m = PB.wait_log(off, r"session=(\d+) login failed user=%s: " % re.escape(user), 5)
    return m.group(1) if m else None


def upstream_lines(sid):
    return [ln for ln in PB.text().splitlines()
            if re.search(r"session=%s (imap[<>]|upstream|waits for login \()" % sid, ln)]


def wrong_password_never_upstream(user, pw, auth_plain=False):
    """-ERR [AUTH] after auth_fail_delay, and neither Dovecot nor
    popbridge's log shows any IMAP for that session."""
    probs = []
    off_a = DV_A.log_offset()
    off_b = DV_B.log_offset()
    off = PB.offset()
    r, secs = login_reply(user, pw, auth_plain)
    if not (isinstance(r, bytes) and r.startswith(b"-ERR [AUTH]")):
        probs.append("login -> %r, want -ERR [AUTH]" % r)
    if secs < DELAY - 0.05:
        probs.append("answered after %.2f s, before auth_fail_delay (%d s)" % (secs, DELAY))
    sid = failed_session(off, user)
    if sid is None:
        probs.append("no 'login failed' line for %s" % user)
    else:
        probs += ["popbridge went upstream: " + ln for ln in upstream_lines(sid)]
    time.sleep(0.3)
    probs += ["Dovecot A saw: " + ln for ln in dovecot_logins(DV_A, off_a)]
    probs += ["Dovecot B saw: " + ln for ln in dovecot_logins(DV_B, off_b)]
    return probs


# -- the UID map's file name (store/uidmap_file.c) ------------------------------------

def map_name(host, port, user):
    h = hashlib.sha256(host.encode() + b"\0" + str(port).encode() + b"\0" + user)
    return h.hexdigest()[:32]


# -- cases ------------------------------------------------------------------------

def setup_passwords():
    probs = []
    out, err = passwd_ok("office-scanner", "--device", "scanner", lines=[DEVICE_PW["scanner"]])
    if out:
        probs.append("stdout not empty: %r" % out)
    if "device scanner added (1 device)" not in err:
        probs.append("stderr: %r" % err)
    # The second device: its password, then the first one's to unlock.
    passwd_ok("office-scanner", "--device", "printer",
              lines=[DEVICE_PW["printer"], DEVICE_PW["scanner"]])
    passwd_ok("office-scanner", "--upstream",
              lines=[UPSTREAM_PW["office"], DEVICE_PW["printer"]])
    out, err = passwd_ok("home", "--device", "phone", "--generate")
    pw = out.strip()
    if not re.fullmatch(r"[A-Za-z0-9]{24}", pw) or out != pw + "\n":
        probs.append("--generate printed %r, want 24 letters and digits and a line end" % out)
    GENERATED["phone"] = pw
    passwd_ok("home", "--upstream", lines=[UPSTREAM_PW["home"], pw])
    st = os.stat(STATE)
    if stat.S_IMODE(st.st_mode) != 0o700:
        probs.append("state directory created with mode %o, want 700" % stat.S_IMODE(st.st_mode))
    return probs


def passwd_list():
    out, _ = passwd_ok("office-scanner", "--list")
    lines = out.splitlines()
    probs = []
    if [ln.split()[1] for ln in lines if ln.startswith("device ")] != ["scanner", "printer"]:
        probs.append("--list: %r" % out)
    if "upstream secret: stored" not in lines:
        probs.append("--list does not say the secret is stored: %r" % out)
    for s in list(DEVICE_PW.values()) + list(UPSTREAM_PW.values()):
        if s in out:
            probs.append("--list shows a secret")
    return probs


def passwd_refusals():
    probs = []
    before = read_bytes(account_file("office-scanner"))
    cases = [
        (("office-scanner", "--device", "copier"), ["Copier-dev-pw-6a0b", "not-a-device-pw"],
         "that password is no device's"),
        (("office-scanner", "--device", "copier"), ["short"], "too short"),
        (("office-scanner", "--device", "copier"), [], "no line"),
        (("office-scanner", "--device", "nosuch", "--revoke"), [], "has no device nosuch"),
        (("office-scanner", "--upstream"), ["x", "not-a-device-pw"], "that password is no device's"),
        (("nobody", "--list"), [], "no [account nobody] section"),
        (("office-scanner", "--device", "bad/label"), [], "bad device label"),
        (("office-scanner", "--revoke"), [], "--revoke needs --device"),
        (("office-scanner", "--upstream", "--generate"), [], "--upstream goes without"),
    ]
    for args, lines, want in cases:
        rc, out, err = passwd(*args, lines=lines)
        if rc == 0:
            probs.append("passwd %s: exit 0" % " ".join(args))
        if want not in err or len(err.strip().splitlines()) != 1 and rc == 1:
            probs.append("passwd %s: stderr %r, want one line with %r" % (" ".join(args), err, want))
        if out:
            probs.append("passwd %s: stdout %r" % (" ".join(args), out))
    if read_bytes(account_file("office-scanner")) != before:
        probs.append("a refused passwd changed the file")
    return probs


def check_config():
    p = subprocess.run([POPBRIDGE, "-c", CONF, "--check-config"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    probs = []
    if p.returncode != 0:
        probs.append("exit %d: %s" % (p.returncode, p.stderr.decode()[:300]))
    for want in ("[accounts]\nunknown_users = passthrough\n",
                 "\n[account office-scanner]\npop3_user = scanner\nupstream_user = office\n",
                 "\n[account home]\npop3_user = home\nupstream_user = home\n",
                 "; account office-scanner: 2 devices (scanner, printer); upstream secret "
                 "stored (not shown)",
                 "; account home: 1 device (phone); upstream secret stored (not shown)"):
        if want not in out:
            probs.append("no %r in the output" % want)
    for s in list(DEVICE_PW.values()) + list(UPSTREAM_PW.values()) + list(GENERATED.values()):
        if s in out:
            probs.append("--check-config shows a secret")
    return probs


def clients_fetch(label, client):
    box = Mailbox(DV_A.port, "office")
    if len(box) != len(OFFICE_MSGS):
        return ["office's mailbox has %d messages, want %d" % (len(box), len(OFFICE_MSGS))]
    return client_fetch(client, label, "scanner", DEVICE_PW[label], box)


def login_forms():
    probs = []
    box = Mailbox(DV_A.port, "office")
    for user, pw, plain in (("scanner", DEVICE_PW["printer"], True),
                            ("SCANNER", DEVICE_PW["scanner"], False),
                            ("Scanner", DEVICE_PW["scanner"], True)):
        p = connect()
        try:
            r = p.auth_plain(user, pw) if plain else p.login(user, pw)
            want = "+OK maildrop has %d messages" % len(box)
            if not r.decode("latin-1").startswith(want):
                probs.append("%s %s -> %r" % ("AUTH PLAIN" if plain else "USER/PASS", user, r))
            p.cmd("QUIT")
        finally:
            p.close()
    m = PB.wait_log(0, r"session=\d+ login user=Scanner account=office-scanner messages=%d "
                    % len(box), 5)
    if not m:
        probs.append("no login line naming the account")
    return probs


def two_accounts_at_once():
    office = Mailbox(DV_A.port, "office")
    home = Mailbox(DV_B.port, "home")
    if len(home) != len(HOME_MSGS):
        return ["home's mailbox has %d messages, want %d" % (len(home), len(HOME_MSGS))]
    jobs = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as ex:
        for _ in range(3):
            jobs.append(ex.submit(check_session, "scanner", DEVICE_PW["scanner"], office))
            jobs.append(ex.submit(check_session, "scanner", DEVICE_PW["printer"], office))
            jobs.append(ex.submit(check_session, "home", GENERATED["phone"], home))
        probs = []
        for j in jobs:
            probs += j.result(timeout=120)
    text = PB.text()
    ends = re.findall(r"session=\d+ end [^\n]*upstream=127\.0\.0\.1:(\d+)", text)
    if str(DV_B.port) not in ends or str(DV_A.port) not in ends:
        probs.append("session end lines do not name both upstreams: %r" % sorted(set(ends)))
    # home's sessions went through STARTTLS with its own CA; office's not.
    tls = {m.group(1) for m in re.finditer(r"session=(\d+) imap> \S+ STARTTLS", text)}
    homes = {m.group(1) for m in re.finditer(r"session=(\d+) login user=home account=home ",
                                             text)}
    offices = {m.group(1) for m in re.finditer(
        r"session=(\d+) login user=scanner account=office-scanner ", text)}
    if not homes or not homes <= tls:
        probs.append("home's sessions %s did not all use STARTTLS (%s)" % (
            sorted(homes), sorted(tls)))
    if offices & tls:
        probs.append("office-scanner's sessions used STARTTLS: %s" % sorted(offices & tls))
    return probs


def account_maildrop_policy():
    """home says on_delete = keep, over [maildrop]'s expunge: a DELE
    confirmed by QUIT leaves the message upstream."""
    before = Mailbox(DV_B.port, "home")
    with session("home", GENERATED["phone"]) as s:
        s.dele(1)
        s.quit_ok()
    after = Mailbox(DV_B.port, "home")
    if after.raw != before.raw:
        return ["home's mailbox changed: %d messages, was %d" % (len(after), len(before))]
    return []


def wrong(pw):
    """pw with its last character changed."""
    return pw[:-1] + ("x" if pw[-1] != "x" else "y")


def wrong_device_password():
    return (wrong_password_never_upstream("scanner", "Scan-dev-pw-1f2f")
            + wrong_password_never_upstream("home", wrong(GENERATED["phone"]), True)
            + wrong_password_never_upstream("scanner", UPSTREAM_PW["office"]))


def account_name_never_passes_through():
    # "scanner" is also an IMAP user of Dovecot A, with its own password.
    return wrong_password_never_upstream("scanner", UPSTREAM_PW["scanner"])


def passthrough_unchanged():
    probs = []
    with session("other", UPSTREAM_PW["other"]) as s:
        n, _ = s.stat()
        if n != 1:
            probs.append("other's STAT: %d messages, want 1" % n)
        s.quit_ok()
    name = map_name("127.0.0.1", DV_A.port, b"other")
    if not os.path.exists(os.path.join(STATE, name)):
        probs.append("no UID map %s (today's name for other) in %s: %s" % (
            name, STATE, sorted(os.listdir(STATE))))
    # The accounts' maps are theirs: not the name pass-through would use.
    for user, port in (("office", DV_A.port), ("home", DV_B.port)):
        if os.path.exists(os.path.join(STATE, map_name("127.0.0.1", port, user.encode()))):
            probs.append("the account's map for %s has the pass-through name" % user)
    maps = [f for f in os.listdir(STATE) if re.fullmatch(r"[0-9a-f]{32}", f)]
    if len(maps) != 3:
        probs.append("%d UID maps, want 3 (other, office-scanner, home): %s" % (len(maps), maps))
    return probs


def passwd_while_running():
    probs = []
    passwd_ok("office-scanner", "--device", "copier",
              lines=[DEVICE_PW["copier"], DEVICE_PW["printer"]])
    box = Mailbox(DV_A.port, "office")
    probs += check_session("scanner", DEVICE_PW["copier"], box)
    return probs


def revoke_while_running():
    probs = []
    box = Mailbox(DV_A.port, "office")
    # A session logged in before the revocation goes on.
    s = session("scanner", DEVICE_PW["printer"])
    passwd_ok("office-scanner", "--device", "printer", "--revoke")
    try:
        if s.retr(1) != box.retr[0]:
            probs.append("the running session's RETR 1 changed")
        s.quit_ok()
    except AssertionError as e:
        probs.append("the running session: %s" % e)
    probs += wrong_password_never_upstream("scanner", DEVICE_PW["printer"])
    probs += check_session("scanner", DEVICE_PW["scanner"], box)
    probs += check_session("scanner", DEVICE_PW["copier"], box)
    out, _ = passwd_ok("office-scanner", "--list")
    if "device printer " in out:
        probs.append("--list still shows printer: %r" % out)
    return probs


def kill_during_passwd():
    probs = []
    path = account_file("office-scanner")
    rnd = random.Random(14)
    killed_mid = completed = 0
    added = []
    for i in range(10):
        before = read_bytes(path)
        label = "k%d" % i
        p = subprocess.Popen([POPBRIDGE, "-c", CONF, "passwd", "office-scanner",
                              "--device", label], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.stdin.write(("Kill-dev-pw-%d\n%s\n" % (i, DEVICE_PW["scanner"])).encode())
        p.stdin.close()
        time.sleep(rnd.uniform(0.0, 0.6))
        p.send_signal(signal.SIGKILL)
        rc = p.wait(10)
        after = read_bytes(path)
        rc_l, out, err = passwd("office-scanner", "--list")
        if rc_l != 0:
            probs.append("after kill %d: --list fails: %s" % (i, err.strip()))
            continue
        has = ("device %s " % label) in out
        if after == before:
            if has:
                probs.append("after kill %d: same bytes, yet the device is listed" % i)
        elif not has:
            probs.append("after kill %d: the file changed without the new device" % i)
        if has:
            added.append(label)
        if rc == -signal.SIGKILL and after == before:
            killed_mid += 1
        else:
            completed += 1
    pbtest.note("kill -9 during passwd: %d runs left the old file, %d the new one"
                % (killed_mid, len(added)))
    for label in added:
        passwd_ok("office-scanner", "--device", label, "--revoke")
    box = Mailbox(DV_A.port, "office")
    probs += check_session("scanner", DEVICE_PW["scanner"], box)
    return probs


def damaged_file():
    probs = []
    path = account_file("home")
    good = read_bytes(path)
    replace_file(path, good.replace(b"\ndevice phone ", b"\ndevise phone ", 1))
    try:
        off = PB.offset()
        r, _ = login_reply("home", GENERATED["phone"])
        probs += pbtest.want_temp("home's login with a damaged file", r)
        m = PB.wait_log(off, r"account home: [^\n]*account-home: line 3: unknown record", 5)
        if not m:
            probs.append("no error naming the file and line: %s" % PB.tail(4, off))
        # The other account goes on.
        probs += check_session("scanner", DEVICE_PW["scanner"], Mailbox(DV_A.port, "office"))
    finally:
        replace_file(path, good)
    probs += check_session("home", GENERATED["phone"], Mailbox(DV_B.port, "home"))
    return probs


def stale_upstream_secret():
    probs = []
    passwd_ok("home", "--upstream", lines=["Home-app-pw-OLD", GENERATED["phone"]])
    off = PB.offset()
    r, secs = login_reply("home", GENERATED["phone"])
    probs += pbtest.want_temp("home's login with a stale upstream secret", r)
    if not PB.wait_log(off, r"account=home: the upstream refused the stored secret "
                       r"[^\n]*popbridge passwd home --upstream", 5):
        probs.append("the log does not name the fix: %s" % PB.tail(4, off))
    passwd_ok("home", "--upstream", lines=[UPSTREAM_PW["home"], GENERATED["phone"]])
    probs += check_session("home", GENERATED["phone"], Mailbox(DV_B.port, "home"))
    return probs


def sighup_refuse_and_new_account():
    probs = []
    box = Mailbox(DV_A.port, "office")
    held = session("scanner", DEVICE_PW["scanner"])
    write_conf(refuse=True, late=True)
    passwd_ok("late", "--device", "d1", lines=[DEVICE_PW["late"]])
    passwd_ok("late", "--upstream", lines=[UPSTREAM_PW["other"], DEVICE_PW["late"]])
    off = PB.offset()
    PB.proc.send_signal(signal.SIGHUP)
    if not PB.wait_log(off, r"configuration reloaded from [^\n]*; 3 accounts", 10):
        return ["no reload line: %s" % PB.tail(4, off)]
    try:
        if held.retr(2) != box.retr[1]:
            probs.append("the session from before the reload: RETR 2 differs")
        held.quit_ok()
    except AssertionError as e:
        probs.append("the session from before the reload: %s" % e)
    # USER is accepted (no enumeration); PASS is refused, never upstream.
    p = connect()
    try:
        r = p.cmd(b"USER other")
        if not r.startswith(b"+OK"):
            probs.append("USER other -> %r, want +OK (refused at PASS)" % r)
    finally:
        p.close()
    probs += wrong_password_never_upstream("other", UPSTREAM_PW["other"])
    probs += wrong_password_never_upstream("nobody", "Nobody-pw-1234")
    with session("late-dev", DEVICE_PW["late"]) as s:
        n, _ = s.stat()
        if n != 1:
            probs.append("the new account's STAT: %d, want 1" % n)
        s.quit_ok()
    probs += check_session("scanner", DEVICE_PW["scanner"], box)
    return probs


def revoke_last_device():
    probs = []
    rc, out, err = passwd("home", "--device", "phone", "--revoke")
    if rc != 0 or "it was the last" not in err:
        probs.append("revoking the last device: exit %d, %r" % (rc, err))
    if b"\nupstream " in (read_bytes(account_file("home")) or b""):
        probs.append("the upstream secret is still in the file")
    off = PB.offset()
    r, _ = login_reply("home", GENERATED["phone"])
    if not r.startswith(b"-ERR [AUTH]"):
        probs.append("the revoked last device -> %r" % r)
    if not PB.wait_log(off, r"account home has no device password yet", 5):
        probs.append("the log does not say the account has no device: %s" % PB.tail(3, off))
    # A new device: the account is back, but without its secret until
    # it is stored again.
    passwd_ok("home", "--device", "phone2", lines=["Phone2-dev-pw-aa01"])
    DEVICE_PW["phone2"] = "Phone2-dev-pw-aa01"
    off = PB.offset()
    r, _ = login_reply("home", "Phone2-dev-pw-aa01")
    probs += pbtest.want_temp("a new device before the secret is stored again", r)
    if not PB.wait_log(off, r"account=home: device password right, but no upstream secret", 5):
        probs.append("the log does not name the missing secret: %s" % PB.tail(3, off))
    passwd_ok("home", "--upstream", lines=[UPSTREAM_PW["home"], "Phone2-dev-pw-aa01"])
    probs += check_session("home", "Phone2-dev-pw-aa01", Mailbox(DV_B.port, "home"))
    return probs


def all_secrets():
    out = set()
    for pw in list(DEVICE_PW.values()) + list(GENERATED.values()):
        out.add(pw.encode())
        out.add(base64.b64encode(pw.encode()))
    for u in ("scanner", "SCANNER", "Scanner", "home", "late-dev"):
        for pw in list(DEVICE_PW.values()) + list(GENERATED.values()):
            out |= pbtest.secret_forms(u.encode(), pw.encode())
    for u, pw in UPSTREAM_PW.items():
        out |= pbtest.secret_forms(u.encode(), pw.encode())
        out.add(base64.b64encode(pw.encode()))
    out |= {b"Home-app-pw-OLD"}
    return out


def state_dir_clean():
    probs = []
    secrets = all_secrets()
    for root, dirs, files in os.walk(STATE):
        for d in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode)
            if mode & 0o077:
                probs.append("directory %s has mode %o" % (d, mode))
        for f in files:
            path = os.path.join(root, f)
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o177:
                probs.append("%s has mode %o, want 0600 or stricter" % (f, mode))
            data = read_bytes(path) or b""
            for s in secrets:
                if s in data:
                    probs.append("%s contains %r" % (f, s[:40]))
    if not os.listdir(STATE):
        probs.append("the state directory is empty")
    return probs


# -- the run ------------------------------------------------------------------------

def cases(tmp):
    global TMP, CA, DV_A, DV_B, PB, CONF, STATE
    TMP = tmp
    DV_A = pbtest.Dovecot(os.path.join(tmp, "dovecot-a"),
                          users={u: UPSTREAM_PW[u] for u in ("office", "other", "scanner")})
    # B offers STARTTLS with a certificate of a private CA, which only the
    # account "home" trusts (its ca_file): a TLS context of its own.
    CA = testca.TestCA(os.path.join(tmp, "pki"))
    cert = CA.issue("dovecot-b", cn="localhost", san="IP:127.0.0.1,DNS:localhost")
    DV_B = pbtest.Dovecot(os.path.join(tmp, "dovecot-b"), users={"home": UPSTREAM_PW["home"]},
                          ssl=(cert.cert, cert.key))
    DV_A.start()
    DV_B.start()
    msgs = corpus.messages()
    for dv, user, names in ((DV_A, "office", OFFICE_MSGS), (DV_B, "home", HOME_MSGS),
                            (DV_A, "other", ("plain",)), (DV_A, "scanner", ("plain",))):
        dv.append(user, [m for m in msgs if m[0] in names])
    # The state directory is passwd's to create (mode 0700).
    PB = pbtest.Popbridge("accounts", DV_A.port, limits={"auth_fail_delay": DELAY},
                          make_state=False, extra=accounts_text())
    CONF = PB.conf
    STATE = PB.state

    R.case("passwd: two devices and the upstream secret of office-scanner, a "
           "--generate'd device of home; exit 0, messages on stderr only", setup_passwords)
    R.case("passwd --list shows the device labels, never a secret", passwd_list)
    R.case("passwd refuses bad input with a one-line reason and changes nothing",
           passwd_refusals)
    R.case("--check-config lists the account sections and their devices, no secret",
           check_config)
    PB.start()
    for label in ("scanner", "printer"):
        for client in ("fetchmail", "mpop"):
            R.case("device %s of office-scanner fetches byte-exact with %s" % (label, client),
                   clients_fetch, label, client)
    R.case("USER/PASS and AUTH PLAIN log in through the account, pop3_user in any case",
           login_forms)
    R.case("two accounts on two Dovecots served at once, each its own mail",
           two_accounts_at_once)
    R.case("an account's own maildrop policy applies (home: on_delete = keep)",
           account_maildrop_policy)
    R.case("a wrong device password: -ERR [AUTH] after auth_fail_delay, never "
           "tried upstream", wrong_device_password)
    R.case("an account's pop3_user never passes through, even with that IMAP "
           "user's own password", account_name_never_passes_through)
    R.case("pass-through for other names, its UID map under today's name",
           passthrough_unchanged)
    R.case("passwd while the daemon runs: a new device works at the next session",
           passwd_while_running)
    R.case("a revoked device gets -ERR [AUTH] while the others go on",
           revoke_while_running)
    R.case("kill -9 during popbridge passwd leaves the old file or the new one",
           kill_during_passwd)
    R.case("a damaged account file: that account -ERR [SYS/TEMP] with the error "
           "logged, the other goes on", damaged_file)
    R.case("a stale upstream secret: -ERR [SYS/TEMP] ... wait, the log names the fix",
           stale_upstream_secret)
    R.case("SIGHUP: unknown_users = refuse and a new account for new sessions, "
           "running sessions keep theirs", sighup_refuse_and_new_account)
    R.case("revoking the last device destroys the key and the upstream secret",
           revoke_last_device)
    R.case("the state directory: every file 0600 or stricter, no password in any form",
           state_dir_clean)


def main():
    def body(tmp):
        cases(tmp)
        if PB is not None and PB.proc is not None:
            pbtest.finish_checks(R, PB)
            pbtest.final_checks(R, [PB], leaks="no device or upstream password in the "
                                "accounts popbridge log", secrets=sorted(all_secrets()))

    return pbtest.script_main(R, "accounts cases", body, tools=("fetchmail", "mpop"))


if __name__ == "__main__":
    sys.exit(main())
