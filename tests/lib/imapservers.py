"""Private IMAP servers for the tests, one interface for all of them:
Dovecot 2.3 (through pbtest.Dovecot / dovecot.sh), Cyrus IMAP 3.6 and GNU
Mailutils imap4d 3.15 (Debian bookworm; tests/lib/servers-deps.sh installs
them: Cyrus only unpacked into a private root, since it conflicts with
dovecot-imapd).

    srv = Cyrus(DIR, {"alice": "pw"}, suppress=("UIDPLUS", "MOVE"))
    srv.start()                 # free 127.0.0.1 port in srv.port
    srv.login_name("alice")     # the name to log in with (Mailutils: alice@DOMAIN)
    srv.deliver("alice", [bytes, ...])            -> [uid]   (raw APPEND)
    srv.mailbox("alice")        -> {uid: {"size": n, "flags": set}}
    srv.fetch("alice", uid, "HEADER")             -> bytes (BODY.PEEK[...])
    srv.set_flags("alice", [uid], "(\\Deleted)")  another client's STORE
    srv.expunge("alice")                          another client's EXPUNGE
    srv.rebuild("alice")        a real UIDVALIDITY change (and new UIDs)
    srv.stop()

Each instance lives in its own directory with its own configuration,
spool, sockets and logs, listens on 127.0.0.1 only, and is stopped with
its children by stop() (processes are found by pid, and by the instance's
own configuration path on their command line, never by a program name).

How each server is made private (see /work/shared/TESTBED.md):
- Cyrus: `master -C imapd.conf -M cyrus.conf`, every path of imapd.conf
  (configdirectory, partition-default, proc_path, mboxname_lockpath,
  sockets, temp_path, sasl_sasldb_path) inside DIR; users in a private
  sasldb (`saslpasswd2 -f`); altnamespace + unixhierarchysep, so INBOX,
  Junk and Trash are top level (autocreated at the first login);
  `failedloginpause: 0` (the default pause is 3 s); optional
  `suppress_capabilities` (Cyrus then refuses those commands too). The
  processes run as nobody (root) or the caller, in a session of their own.
  Cyrus refuses a bare CR or LF in APPEND, so deliver() makes them CRLF
  first (as an MTA would). The rebuild: an admin
  deletes the user's mailboxes, the user logs in again (autocreate, new
  UIDVALIDITY) and the messages are appended again in UID order, flags
  and INTERNALDATE kept.
- Mailutils: `imap4d --no-site-config --config-file DIR/imap4d.conf` in
  daemon mode, mbox storage, users from a virtdomain passwd-dir
  (user@DOMAIN, crypt(3) passwords). It stores Status:, X-UID: and
  X-IMAPbase: headers in the messages and rewrites them when flags change
  (sizes change), and refuses APPEND to an INBOX never selected (deliver()
  selects first). The rebuild: X-IMAPbase and X-UID
  headers stripped from the mbox file (imap4d then numbers the messages
  anew under a new UIDVALIDITY).
- Dovecot: dovecot.sh; the rebuild removes dovecot-uidlist and the
  indexes (new UIDVALIDITY, new UIDs).
"""

import glob
import imaplib
import os
import re
import signal
import socket
import subprocess
import time

import corpus
import pbtest

HOST = "127.0.0.1"
ROOT = pbtest.ROOT
CYRUS_ROOT = os.environ.get("CYRUS_ROOT") or os.path.join(ROOT, "build", "cyrus", "root")
CYRUS_BIN = os.path.join(CYRUS_ROOT, "usr", "lib", "cyrus", "bin")
CYRUS_LIBDIR = ":".join(glob.glob(os.path.join(CYRUS_ROOT, "usr", "lib", "*-linux-gnu")))
IMAP4D = "/usr/sbin/imap4d"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
INSTALL_HINT = "sh tests/lib/servers-deps.sh (make deps) installs it"

_UID_RE = re.compile(rb"UID (\d+)")
_SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]*)"')
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def _q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def crlf_only(data):
    """data with every bare CR and bare LF made CRLF."""
    n = data.count(b"\r\n")
    if data.count(b"\r") == n and data.count(b"\n") == n:
        return data
    return _BARE.sub(b"\r\n", data)


def wait_imap(port, secs, proc=None):
    """None once 127.0.0.1:port greets with "* OK"; else why not."""
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return "exited with status %s" % proc.returncode
        try:
            s = socket.create_connection((HOST, port), timeout=2)
            s.settimeout(3)
            data = s.recv(512)
            s.close()
            if data.startswith(b"* OK"):
                return None
        except OSError:
            pass
        time.sleep(0.1)
    return "no IMAP greeting on 127.0.0.1:%d within %d s" % (port, secs)


try:
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except (ImportError, OSError):
    _LIBC = None


def _die_with_parent():
    """In a child (preexec_fn, after any change of user): SIGTERM when the
    test dies. libc is loaded beforehand: after the switch to nobody the
    Python library may no longer be readable."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM, 0, 0, 0)     # PR_SET_PDEATHSIG


def _pids_with_arg(arg):
    """Pids whose command line holds arg (an instance's own config path)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmd:
            out.append(int(d))
    return out


def _stop_proc(proc, conf, secs=10):
    """SIGTERM to proc, then SIGKILL to it and whatever else still runs
    with conf on its command line (the instance's children)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(secs)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    deadline = time.time() + 3
    while True:
        left = [p for p in _pids_with_arg(conf) if p != os.getpid()]
        if not left or time.time() > deadline:
            break
        time.sleep(0.1)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


class ImapServer:
    """What every server offers the tests: IMAP as "another client"."""

    kind = "imap"
    caps_missing = ()       # capabilities hidden on purpose (UIDPLUS, MOVE)
    folders = ("Junk", "Trash")

    def __init__(self, d, users):
        self.dir = d
        self.users = dict(users)
        self.port = None

    # -- names ---------------------------------------------------------------
    def login_name(self, user):
        return user

    def password(self, user):
        return self.users[user]

    def passwords(self):
        return {self.login_name(u): p for u, p in self.users.items()}

    def has(self, cap):
        return cap not in self.caps_missing

    # -- IMAP as another client ----------------------------------------------
    def imap(self, user, timeout=30):
        conn = imaplib.IMAP4(HOST, self.port, timeout=timeout)
        conn.login(self.login_name(user), self.users[user])
        return conn

    def _select(self, conn, folder, readonly):
        typ, data = conn.select(_q(folder), readonly=readonly)
        if typ != "OK":
            raise RuntimeError("%s: SELECT %s: %r" % (self.kind, folder, data))
        return int(data[0] or 0)

    def prepare(self, user):
        """Makes sure the user's Junk and Trash exist (first login)."""
        conn = self.imap(user)
        try:
            typ, data = conn.list()
            have = set()
            for ln in data or []:
                if isinstance(ln, bytes):
                    have.add(ln.rsplit(b" ", 1)[-1].strip(b'"').decode("latin-1"))
            for f in self.folders:
                if f not in have:
                    typ, resp = conn.create(_q(f))
                    if typ != "OK":
                        raise RuntimeError("%s: CREATE %s: %r" % (self.kind, f, resp))
        finally:
            conn.logout()

    def deliver(self, user, msgs, folder="INBOX"):
        """Appends the messages (bytes, unchanged) in order; their UIDs."""
        conn = self.imap(user)
        try:
            before = set(self._uids(conn, folder))
            uids = [corpus._raw_append(conn, folder, m) for m in msgs]
            if None in uids:            # no UIDPLUS: the new UIDs, in order
                new = sorted(set(self._uids(conn, folder)) - before)
                if len(new) != len(msgs):
                    raise RuntimeError("%s: %d messages appended, %d new UIDs"
                                       % (self.kind, len(msgs), len(new)))
                uids = new
            return uids
        finally:
            conn.logout()

    def _uids(self, conn, folder):
        if self._select(conn, folder, True) == 0:
            return []
        typ, data = conn.uid("SEARCH", None, "ALL")
        return [int(x) for x in data[0].split()] if data and data[0] else []

    def mailbox(self, user, folder="INBOX", conn=None):
        """{uid: {"size": RFC822.SIZE, "flags": set (no \\Recent), "date": ..}}."""
        own = conn is None
        conn = conn or self.imap(user)
        try:
            out = {}
            if self._select(conn, folder, True) == 0:
                return out
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
            if typ != "OK":
                raise RuntimeError("%s: UID FETCH: %r" % (self.kind, data))
            for item in data:
                if isinstance(item, tuple):
                    item = item[0]
                m = _UID_RE.search(item or b"")
                if not m:
                    continue
                s, f, d = _SIZE_RE.search(item), _FLAGS_RE.search(item), _DATE_RE.search(item)
                out[int(m.group(1))] = {
                    "size": int(s.group(1)) if s else None,
                    "flags": set(f.group(1).decode().split()) - {"\\Recent"} if f else set(),
                    "date": d.group(1).decode() if d else None}
            return out
        finally:
            if own:
                conn.logout()

    def fetch(self, user, uid, section="", folder="INBOX", conn=None):
        """BODY.PEEK[section] of one message."""
        own = conn is None
        conn = conn or self.imap(user)
        try:
            if own:
                self._select(conn, folder, True)
            typ, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[%s])" % section)
            if typ != "OK":
                raise RuntimeError("%s: UID FETCH %d: %r" % (self.kind, uid, data))
            for item in data:
                if isinstance(item, tuple) and b"BODY[" in item[0]:
                    return item[1]
                if isinstance(item, bytes) and re.search(rb'BODY\[[A-Z]*\] ""', item):
                    return b""
            raise RuntimeError("%s: UID FETCH %d BODY.PEEK[%s]: no data in %r"
                               % (self.kind, uid, section, data[:3]))
        finally:
            if own:
                conn.logout()

    def fetch_all(self, user, folder="INBOX", sections=("",)):
        """[(uid, bytes or a tuple of bytes per section)] in UID order."""
        conn = self.imap(user)
        try:
            uids = self._uids(conn, folder)
            out = []
            for uid in uids:
                parts = tuple(self.fetch(user, uid, s, conn=conn) for s in sections)
                out.append((uid, parts[0] if len(parts) == 1 else parts))
            return out
        finally:
            conn.logout()

    def set_flags(self, user, uids, flags, how="+FLAGS", folder="INBOX"):
        conn = self.imap(user)
        try:
            self._select(conn, folder, False)
            typ, data = conn.uid("STORE", ",".join(str(u) for u in uids), how, flags)
            if typ != "OK":
                raise RuntimeError("%s: UID STORE: %r" % (self.kind, data))
        finally:
            conn.logout()

    def expunge(self, user, folder="INBOX"):
        """Another client's plain EXPUNGE (everything flagged \\Deleted)."""
        conn = self.imap(user)
        try:
            self._select(conn, folder, False)
            typ, data = conn.expunge()
            if typ != "OK":
                raise RuntimeError("%s: EXPUNGE: %r" % (self.kind, data))
        finally:
            conn.logout()

    def uidvalidity(self, user, folder="INBOX"):
        conn = self.imap(user)
        try:
            self._select(conn, folder, True)
            return int(conn.untagged_responses["UIDVALIDITY"][-1])
        finally:
            conn.logout()

    def rebuild(self, user, folder="INBOX"):
        raise NotImplementedError

    def log_tail(self, n=8):
        return []


# -- Dovecot ---------------------------------------------------------------------------

class Dovecot(ImapServer):
    """pbtest.Dovecot (tests/lib/dovecot.sh) with the common interface;
    extra is appended to dovecot.conf (e.g. an imap_capability line)."""

    kind = "dovecot"

    def __init__(self, d, users, extra=None, caps_missing=()):
        super().__init__(d, users)
        self.dv = pbtest.Dovecot(d, users, extra)
        self.caps_missing = tuple(caps_missing)

    def start(self):
        self.dv.start()
        self.port = self.dv.port

    def stop(self):
        self.dv.stop()

    def rebuild(self, user, folder="INBOX"):
        """New UIDVALIDITY and new UIDs: dovecot-uidlist and the indexes go."""
        if folder != "INBOX":
            raise NotImplementedError("Dovecot rebuild of %s" % folder)
        self.dv.renumber(user)

    def log_tail(self, n=8):
        return self.dv.log_tail(n)


# -- servers run as a child process (self.proc, self.conf, self.log) -------------------

class SpawnedServer(ImapServer):
    def stop(self):
        _stop_proc(self.proc, self.conf)
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=8):
        return pbtest.read_text(self.log).splitlines()[-n:]


# -- Cyrus -------------------------------------------------------------------------------

def _run_as():
    """(uid, gid, user name, group name) the server processes run as."""
    if os.getuid() == 0:
        return 65534, 65534, "nobody", "nogroup"
    import grp
    import pwd
    return (os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name,
            grp.getgrgid(os.getgid()).gr_name)


def cyrus_missing():
    """None when Cyrus is unpacked and saslpasswd2 installed; else why not."""
    for p in (os.path.join(CYRUS_BIN, "master"), os.path.join(CYRUS_BIN, "imapd"), SASLPASSWD2):
        if not os.access(p, os.X_OK):
            return "%s is missing (%s)" % (p, INSTALL_HINT)
    return None


def mailutils_missing():
    if not os.access(IMAP4D, os.X_OK):
        return "%s is missing (%s)" % (IMAP4D, INSTALL_HINT)
    return None


class Cyrus(SpawnedServer):
    """A private Cyrus IMAP 3.6 (master + imapd) in directory d."""

    kind = "cyrus"
    realm = "cyrus.test"
    admin = "pbadmin"

    def __init__(self, d, users, suppress=()):
        super().__init__(d, users)
        self.caps_missing = tuple(suppress)
        self.conf = os.path.join(d, "imapd.conf")
        self.master_conf = os.path.join(d, "cyrus.conf")
        self.log = os.path.join(d, "master.log")
        self.admin_pw = "Adm-%s" % os.urandom(6).hex()
        self.proc = None

    def _write_conf(self):
        d = self.dir
        _, _, uname, gname = _run_as()
        lines = [
            "# Generated by tests/lib/imapservers.py - a private test instance.",
            "configdirectory: %s/conf" % d,
            "partition-default: %s/spool" % d,
            "defaultpartition: default",
            "proc_path: %s/proc" % d,
            "mboxname_lockpath: %s/lock" % d,
            "temp_path: %s/tmp" % d,
            "idlesocket: %s/socket/idle" % d,
            "notifysocket: %s/socket/notify" % d,
            "lmtpsocket: %s/socket/lmtp" % d,
            "ptloader_sock: %s/socket/ptsock" % d,
            "cyrus_user: %s" % uname,
            "cyrus_group: %s" % gname,
            "servername: %s" % self.realm,
            "syslog_prefix: pbtest-cyrus-%d" % self.port,
            "sasl_pwcheck_method: auxprop",
            "sasl_auxprop_plugin: sasldb",
            "sasl_sasldb_path: %s/sasldb2" % d,
            "sasl_mech_list: PLAIN LOGIN",
            "allowplaintext: yes",
            "altnamespace: yes",
            "unixhierarchysep: yes",
            "admins: %s" % self.admin,
            "autocreate_quota: 0",
            "autocreate_inbox_folders: Junk | Trash",
            "failedloginpause: 0",
            "delete_mode: immediate",
            "virtdomains: off",
        ]
        if self.caps_missing:
            lines.append("suppress_capabilities: %s" % " ".join(self.caps_missing))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        b = CYRUS_BIN
        with open(self.master_conf, "w") as f:
            f.write("""# Generated by tests/lib/imapservers.py.
START {
  recover cmd="%s/ctl_cyrusdb -C %s -r"
}
SERVICES {
  imap cmd="%s/imapd -C %s" listen="%s:%d" prefork=0 maxchild=100
}
EVENTS {
}
""" % (b, self.conf, b, self.conf, HOST, self.port))

    def _saslpasswd(self, user, pw):
        p = subprocess.run([SASLPASSWD2, "-p", "-c", "-f", os.path.join(self.dir, "sasldb2"),
                            "-u", self.realm, user], input=pw.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("saslpasswd2 %s: %s" % (user, p.stdout.decode("utf-8", "replace")))

    def start(self):
        why = cyrus_missing()
        if why:
            raise RuntimeError(why)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        if self.port is None:
            self.port = pbtest.free_port()
        for sub in ("conf", "spool", "proc", "lock", "tmp", "socket", "run"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self._write_conf()
        for u, pw in self.users.items():
            self._saslpasswd(u, pw)
        self._saslpasswd(self.admin, self.admin_pw)
        uid, gid, _, _ = _run_as()
        for top, dirs, files in os.walk(self.dir):
            for n in dirs + files:
                os.lchown(os.path.join(top, n), uid, gid)
        os.lchown(self.dir, uid, gid)
        env = dict(os.environ, LD_LIBRARY_PATH=CYRUS_LIBDIR)
        # Already the Cyrus user when master starts, it changes no
        # credentials, so the parent-death signal set after the switch stays.
        # A session of its own: master signals its whole process group when
        # it stops, which would otherwise reach another instance's imapd
        # processes (same user) started from this test.
        who = {"user": uid, "group": gid, "extra_groups": []} if os.getuid() == 0 else {}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [os.path.join(CYRUS_BIN, "master"), "-C", self.conf, "-M", self.master_conf,
                 "-p", os.path.join(self.dir, "run", "master.pid")],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent, cwd=self.dir, start_new_session=True, **who)
        why = wait_imap(self.port, 30, self.proc)
        if why:
            self.stop()
            raise RuntimeError("Cyrus in %s: %s; %s" % (self.dir, why, " | ".join(self.log_tail())))

    def prepare(self, user):
        # INBOX, Junk and Trash are autocreated at the first login.
        self.imap(user).logout()

    def deliver(self, user, msgs, folder="INBOX"):
        """Cyrus refuses a bare CR or LF in APPEND ("Message contains bare
        newlines"): they become CRLF first, as an MTA would deliver them."""
        return super().deliver(user, [crlf_only(m) for m in msgs], folder)

    def _admin(self):
        conn = imaplib.IMAP4(HOST, self.port, timeout=30)
        conn.login(self.admin, self.admin_pw)
        return conn

    def rebuild(self, user, folder="INBOX"):
        """The user's mailboxes deleted by an admin and created anew (new
        UIDVALIDITY); every folder's messages appended again in UID order
        with their flags and INTERNALDATE."""
        conn = self.imap(user)
        saved = {}
        try:
            for f in ("INBOX",) + tuple(self.folders):
                box = self.mailbox(user, f, conn=conn)
                saved[f] = [(self.fetch(user, u, conn=conn), box[u]) for u in sorted(box)]
        finally:
            conn.logout()
        adm = self._admin()
        try:
            mbox = "user/%s" % user
            typ, data = adm.setacl(_q(mbox), self.admin, "lrswipkxtecda")
            if typ != "OK":
                raise RuntimeError("cyrus: SETACL %s: %r" % (mbox, data))
            typ, data = adm.delete(_q(mbox))
            if typ != "OK":
                raise RuntimeError("cyrus: DELETE %s: %r" % (mbox, data))
        finally:
            adm.logout()
        conn = self.imap(user)          # autocreates INBOX, Junk, Trash
        saved_map = imaplib.MapCRLF
        imaplib.MapCRLF = re.compile(rb"\r\n")      # append bytes unchanged
        try:
            for f, msgs in saved.items():
                for data, meta in msgs:
                    flags = " ".join(sorted(meta["flags"])) or None
                    date = '"%s"' % meta["date"] if meta["date"] else None
                    typ, resp = conn.append(_q(f), "(%s)" % flags if flags else None, date, data)
                    if typ != "OK":
                        raise RuntimeError("cyrus: APPEND to %s: %r" % (f, resp))
        finally:
            imaplib.MapCRLF = saved_map
            conn.logout()


# -- GNU Mailutils -----------------------------------------------------------------------

class Mailutils(SpawnedServer):
    """A private GNU Mailutils imap4d (mbox) in directory d; users log in
    as user@DOMAIN."""

    kind = "mailutils"
    domain = "mu.test"
    caps_missing = ("UIDPLUS", "MOVE")

    def __init__(self, d, users):
        super().__init__(d, users)
        self.conf = os.path.join(d, "imap4d.conf")
        self.log = os.path.join(d, "imap4d.log")
        self.proc = None

    def login_name(self, user):
        return "%s@%s" % (user, self.domain)

    def home(self, user):
        return os.path.join(self.dir, "mail", user)

    def mbox(self, user, folder="INBOX"):
        return os.path.join(self.home(user), folder)

    def _write(self):
        d = self.dir
        uid, gid, _, _ = _run_as()
        os.makedirs(os.path.join(d, "passwd"), exist_ok=True)
        lines = []
        for u, pw in self.users.items():
            if ":" in pw or "\n" in pw:
                raise ValueError("a Mailutils password cannot hold ':' or a newline")
            h = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(),
                               stdout=subprocess.PIPE, check=True, timeout=30)
            lines.append("%s:%s:%d:%d::%s:/bin/false" % (u, h.stdout.decode().strip(), uid, gid,
                                                        self.home(u)))
            os.makedirs(self.home(u), exist_ok=True)
            os.chown(self.home(u), uid, gid)
        path = os.path.join(d, "passwd", self.domain)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path, 0o600)
        with open(self.conf, "w") as f:
            # authorization falls back to "system" so that imap4d (root)
            # can look up its own uid when it writes an mbox "From " line.
            f.write("""# Generated by tests/lib/imapservers.py - a private test instance.
mode daemon;
foreground yes;
pidfile %s/imap4d.pid;
max-children 100;
server %s:%d {
  tls-mode false;
};
auth {
  authentication generic;
  authorization virtdomain:system;
};
virtdomain {
  passwd-dir %s/passwd;
};
mailbox {
  mail-spool %s/spool;
  mailbox-type mbox;
};
logging {
  syslog no;
  print-severity yes;
};
tcp-wrappers {
  enable no;
};
""" % (d, HOST, self.port, d, d))
            if os.environ.get("MAILUTILS_DEBUG"):
                f.write('debug { level "%s"; };\n' % os.environ["MAILUTILS_DEBUG"])

    def start(self):
        why = mailutils_missing()
        if why:
            raise RuntimeError(why)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        if self.port is None:
            self.port = pbtest.free_port()
        self._write()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [IMAP4D, "--no-site-config", "--config-file", self.conf],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent, cwd=self.dir, start_new_session=True)
        why = wait_imap(self.port, 20, self.proc)
        if why:
            self.stop()
            raise RuntimeError("imap4d in %s: %s; %s" % (self.dir, why, " | ".join(self.log_tail())))

    def rebuild(self, user, folder="INBOX"):
        """X-IMAPbase and X-UID headers stripped from the mbox file: imap4d
        assigns a new UIDVALIDITY and new UIDs at the next SELECT."""
        path = self.mbox(user, folder)
        with open(path, "rb") as f:
            data = f.read()
        out, in_header, prev_blank = [], False, True
        for ln in data.splitlines(keepends=True):
            if prev_blank and ln.startswith(b"From "):
                in_header = True
            elif in_header and ln in (b"\n", b"\r\n"):
                in_header = False
            elif in_header and re.match(rb"(?i)X-(IMAPbase|UID):", ln):
                prev_blank = False
                continue
            prev_blank = ln in (b"\n", b"\r\n")
            out.append(ln)
        st = os.stat(path)
        tmp = path + ".rebuild"
        with open(tmp, "wb") as f:
            f.write(b"".join(out))
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.rename(tmp, path)
