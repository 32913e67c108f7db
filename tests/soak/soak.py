#!/usr/bin/env python3
"""Load test: many concurrent POP3 sessions through one popbridge (issue 5).

    make soak                      # builds build/popbridge, then runs this
    POPBRIDGE=/abs/build/popbridge python3 tests/soak/soak.py
    SOAK_SESSIONS=2000 SOAK_USERS=40 python3 tests/soak/soak.py

Self-contained. Starts a private Dovecot (tests/lib/dovecot.sh) with its
limits raised for load (TESTBED.md: default_process_limit,
default_client_limit, mail_max_userip_connections, imap-login
service_count = 0, ulimit -n), SOAK_USERS users with three messages each,
and the release popbridge ($POPBRIDGE, default build/popbridge) with
max_sessions and max_per_ip above the load. Then SOAK_SESSIONS sessions
(default 1,000; SOAK_USERS default 20, so 50 per user) run at once with
asyncio: connect, USER/PASS, STAT, and once every session is logged in
(all of them are open together at that point), UIDL, RETR 1, QUIT.

Passes when every session succeeded: greeting, login, STAT equal to the
mailbox, UIDL with the same unique values in every session of a user, RETR
1 byte for byte equal to IMAP BODY.PEEK[] (CRLF, dot-stuffed), QUIT +OK;
and afterwards popbridge still serves, has no session or descriptor left
over and exits 0 on SIGTERM. Prints the numbers: total time, per-session
latency (p50/p99/max, without the wait for the others), login latency,
popbridge's peak RSS and descriptors.

Bounded: everything gives up after SOAK_DEADLINE seconds (default 300).
Output: "ok - NAME" / "not ok - NAME" + indented diagnostics, "# ..." with
the numbers, a last line "N passed, M failed"; exit status 1 on failure.
Environment also: TEST_TMP (scratch directory, else a private one),
KEEP_TMP=1 (keep the private one).
"""

import asyncio
import os
import re
import resource
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LIB = os.path.join(ROOT, "tests", "lib")
sys.path.insert(0, LIB)

os.environ.setdefault("POPBRIDGE", os.path.join(ROOT, "build", "popbridge"))

import corpus  # noqa: E402
import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import HOST, note  # noqa: E402

POPBRIDGE = pbtest.default_popbridge()
N_SESSIONS = int(os.environ.get("SOAK_SESSIONS", "1000"))
N_USERS = int(os.environ.get("SOAK_USERS", "20"))
DEADLINE = float(os.environ.get("SOAK_DEADLINE", "300"))
STEP_TIMEOUT = 120.0        # one reply
MSG_SIZES = (20000, 3000, 60000)

R = pbtest.Report()
T_START = time.time()


def left():
    return DEADLINE - (time.time() - T_START)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < new:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pct(vals, p):
    if not vals:
        return float("nan")
    v = sorted(vals)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


# -- Dovecot with raised limits ------------------------------------------------------------

DOVECOT_LOAD_CONF = """
# soak.py: limits raised for %(n)d concurrent sessions (TESTBED.md)
default_process_limit = %(procs)d
default_client_limit = %(clients)d
mail_max_userip_connections = %(clients)d
service imap {
  process_limit = %(procs)d
}
service imap-login {
  service_count = 0
  process_min_avail = 2
}
service auth {
  client_limit = %(clients)d
}
service anvil {
  client_limit = %(clients)d
}
"""


class Dovecot(pbtest.Dovecot):
    """pbtest's, given longer to stop after the load."""

    stop_wait = 60

    def log_lines(self, pattern):
        try:
            with open(os.path.join(self.dir, "dovecot.log"), errors="replace") as f:
                return [ln.rstrip("\n") for ln in f if re.search(pattern, ln)]
        except OSError:
            return []


# -- popbridge ---------------------------------------------------------------------------

class Popbridge(pbtest.Popbridge):
    """pbtest's, for the load: limits above it, upstream timeout 120 s."""

    def __init__(self, tmp, imap_port):
        super().__init__("popbridge", imap_port, dir=tmp, upstream={"timeout": 120},
                         limits={"max_sessions": N_SESSIONS + 100,
                                 "max_per_ip": N_SESSIONS + 100, "idle_timeout": 600,
                                 "auth_fail_delay": 0, "shutdown_grace": 5},
                         level="info")

    def cpu_seconds(self):
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self, timeout=30):
        return super().stop(timeout)


# -- the load ----------------------------------------------------------------------------

class SessionError(Exception):
    pass


class Load:
    def __init__(self, port, users, expected):
        self.port = port
        self.users = users              # [(name, password)]
        self.expected = expected        # name -> dict
        self.logged_in = 0
        self.finished_login = 0         # logged in or failed before the barrier
        self.all_in = None
        self.errors = []
        self.latency = []               # per session, without the barrier wait
        self.login_latency = []
        self.after_latency = []         # UIDL, RETR 1, QUIT once all are in
        self.all_in_at = None
        self.uidls = {}                 # user -> set of UIDL listings
        self.peak_rss = 0
        self.peak_fds = 0
        self.peak_concurrent = 0

    async def _line(self, reader, what):
        try:
            line = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise SessionError("%s: no reply within %ds" % (what, STEP_TIMEOUT))
        if not line:
            raise SessionError("%s: connection closed" % what)
        return line

    async def _cmd(self, reader, writer, text, what=None):
        writer.write(text + b"\r\n")
        await writer.drain()
        return await self._line(reader, what or text.split(b" ")[0].decode())

    async def _multi(self, reader, what):
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r\n.\r\n"), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise SessionError("%s: body not complete within %ds" % (what, STEP_TIMEOUT))
        except asyncio.IncompleteReadError as e:
            raise SessionError("%s: connection closed after %d octets" % (what, len(e.partial)))
        return data

    def _arrived(self):
        self.finished_login += 1
        if self.finished_login >= len(self.plan):
            self.all_in_at = time.monotonic()
            self.all_in.set()

    async def session(self, i, user, password):
        exp = self.expected[user]
        t0 = time.monotonic()
        waited = 0.0
        arrived = False
        writer = None
        try:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port, limit=1 << 20), STEP_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                raise SessionError("connect: %s" % (e or type(e).__name__))
            r = await self._line(reader, "greeting")
            if not r.startswith(b"+OK"):
                raise SessionError("greeting -> %r" % r[:100])
            r = await self._cmd(reader, writer, b"USER " + user.encode())
            if not r.startswith(b"+OK"):
                raise SessionError("USER -> %r" % r[:100])
            r = await self._cmd(reader, writer, b"PASS " + password.encode(), "PASS")
            if not r.startswith(b"+OK"):
                raise SessionError("PASS -> %r" % r[:100])
            self.login_latency.append(time.monotonic() - t0)
            r = await self._cmd(reader, writer, b"STAT")
            if r != exp["stat"]:
                raise SessionError("STAT -> %r, want %r" % (r[:100], exp["stat"]))
            # Everyone logs in before anyone goes on: all sessions are open
            # at once here.
            self.logged_in += 1
            self.peak_concurrent = max(self.peak_concurrent, self.logged_in)
            arrived = True
            self._arrived()
            tw = time.monotonic()
            try:
                await asyncio.wait_for(self.all_in.wait(), max(1.0, left() - 30))
            except asyncio.TimeoutError:
                raise SessionError("the other sessions did not all log in in time")
            waited = time.monotonic() - tw
            r = await self._cmd(reader, writer, b"UIDL")
            if not r.startswith(b"+OK"):
                raise SessionError("UIDL -> %r" % r[:100])
            data = await self._multi(reader, "UIDL")
            lines = data[:-3].split(b"\r\n")[:-1] if data != b".\r\n" else []
            if len(lines) != exp["count"]:
                raise SessionError("UIDL listed %d lines, want %d: %r"
                                   % (len(lines), exp["count"], data[:200]))
            self.uidls.setdefault(user, set()).add(data)
            r = await self._cmd(reader, writer, b"RETR 1")
            if not r.startswith(b"+OK"):
                raise SessionError("RETR 1 -> %r" % r[:100])
            data = await self._multi(reader, "RETR 1")
            if data != exp["retr1"]:
                raise SessionError("RETR 1: %d octets, want %d (first difference at %d)"
                                   % (len(data), len(exp["retr1"]),
                                      next((k for k in range(min(len(data),
                                                                 len(exp["retr1"])))
                                            if data[k] != exp["retr1"][k]),
                                           min(len(data), len(exp["retr1"])))))
            r = await self._cmd(reader, writer, b"QUIT")
            if not r.startswith(b"+OK"):
                raise SessionError("QUIT -> %r" % r[:100])
            try:
                rest = await asyncio.wait_for(reader.read(), 30)
            except asyncio.TimeoutError:
                raise SessionError("the connection stayed open 30 s after QUIT")
            if rest:
                raise SessionError("after QUIT: %r" % rest[:100])
            self.latency.append(time.monotonic() - t0 - waited)
            self.after_latency.append(time.monotonic() - tw - waited)
        except SessionError as e:
            self.errors.append("session %d (%s): %s" % (i, user, e))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            self.errors.append("session %d (%s): %s: %s" % (i, user, type(e).__name__, e))
        finally:
            if not arrived:
                self._arrived()
            if writer is not None:
                writer.close()
                try:
                    await asyncio.wait_for(writer.wait_closed(), 5)
                except (OSError, asyncio.TimeoutError):
                    pass

    async def monitor(self, pb, stop):
        while not stop.is_set():
            self.peak_rss = max(self.peak_rss, pb.rss_kb())
            self.peak_fds = max(self.peak_fds, pb.fds())
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    async def run(self, pb):
        self.all_in = asyncio.Event()
        self.plan = [(i, self.users[i % len(self.users)]) for i in range(N_SESSIONS)]
        stop = asyncio.Event()
        mon = asyncio.ensure_future(self.monitor(pb, stop))
        t0 = self.t0 = time.monotonic()
        tasks = [asyncio.ensure_future(self.session(i, u, p)) for i, (u, p) in self.plan]
        done, pending = await asyncio.wait(tasks, timeout=max(10.0, left() - 20))
        self.total = time.monotonic() - t0
        for t in pending:
            t.cancel()
        if pending:
            self.errors.append("%d sessions still running at the deadline (%.0f s)"
                               % (len(pending), DEADLINE))
            await asyncio.wait(pending, timeout=10)
        stop.set()
        await mon


# -- main ----------------------------------------------------------------------------------

def main():
    nofile = raise_nofile(max(8192, 4 * N_SESSIONS + 1024))

    def body(tmp):
        note("soak: %d sessions, %d users, popbridge %s, ulimit -n %d, deadline %.0f s"
             % (N_SESSIONS, N_USERS, POPBRIDGE, nofile, DEADLINE))
        if nofile < 2 * N_SESSIONS + 256:
            R.fail("enough file descriptors", ["ulimit -n is %d; %d sessions need about %d"
                                               % (nofile, N_SESSIONS, 2 * N_SESSIONS + 256)])
        users = [("soak%02d" % k, "Soak-pw-%02d" % k) for k in range(1, N_USERS + 1)]
        extra = DOVECOT_LOAD_CONF % {"n": N_SESSIONS, "procs": N_SESSIONS + 500,
                                     "clients": 4 * N_SESSIONS + 1000}
        dovecot = Dovecot(os.path.join(tmp, "dovecot"), dict(users), extra)
        dovecot.start()
        note("dovecot: imap 127.0.0.1:%d (pid %d)" % (dovecot.port, dovecot.pid))
        expected = {}
        t0 = time.time()
        for k, (u, p) in enumerate(users):
            msgs = []
            for j, size in enumerate(MSG_SIZES):
                msgs += corpus.generated(1, size, seed=k * 10 + j, prefix=u)
            dovecot.append(u, msgs)
            conn = dovecot.imap(u)
            try:
                rows = imapfetch.fetch_all(conn, "INBOX")
            finally:
                conn.logout()
            exp = [imapfetch.pop3_expected(d) for _, d in rows]
            expected[u] = {
                "count": len(exp),
                "stat": b"+OK %d %d\r\n" % (len(exp), sum(s for _, s in exp)),
                "retr1": imapfetch.dotstuff(exp[0][0]),
            }
        note("mail for %d users appended in %.1f s" % (len(users), time.time() - t0))
        pb = Popbridge(tmp, dovecot.port)
        err = pb.try_start()
        if err:
            R.fail("popbridge starts", [err, pb.text()[-500:]])
            return
        time.sleep(0.5)
        rss0, fds0 = pb.rss_kb(), pb.fds()
        note("popbridge on 127.0.0.1:%d: VmRSS %d kB, %d fds before the load"
             % (pb.port, rss0, fds0))
        load = Load(pb.port, users, expected)
        asyncio.run(load.run(pb))
        probs = list(load.errors)
        if len(probs) > 20:
            probs = probs[:20] + ["... %d errors in all" % len(load.errors)]
        for u, seen in load.uidls.items():
            if len(seen) != 1:
                probs.append("%s: %d different UIDL listings across its sessions"
                             % (u, len(seen)))
            else:
                vals = [ln.split(b" ", 1)[1] for ln in
                        next(iter(seen))[:-3].split(b"\r\n")[:-1]]
                if len(set(vals)) != len(vals) or any(
                        not re.fullmatch(rb"[\x21-\x7e]{1,70}", v) for v in vals):
                    probs.append("%s: bad UIDL values %r" % (u, vals))
        n_ok = len(load.latency)
        note("%d of %d sessions completed in %.2f s (at most %d logged in at once)"
             % (n_ok, N_SESSIONS, load.total, load.peak_concurrent))
        if load.latency:
            note("per-session latency without the wait for the others: p50 %.3f s, "
                 "p99 %.3f s, max %.3f s" % (pct(load.latency, 50), pct(load.latency, 99),
                                           max(load.latency)))
        if load.login_latency:
            note("connect to PASS +OK: p50 %.3f s, p99 %.3f s, max %.3f s; all %d "
                 "logged in after %.2f s" % (
                     pct(load.login_latency, 50), pct(load.login_latency, 99),
                     max(load.login_latency), load.peak_concurrent,
                     (load.all_in_at or time.monotonic()) - load.t0))
        if load.after_latency:
            note("then UIDL + RETR 1 + QUIT, all sessions at once: p50 %.3f s, p99 %.3f s,"
                 " max %.3f s" % (pct(load.after_latency, 50),
                                  pct(load.after_latency, 99), max(load.after_latency)))
        note("popbridge peak: VmRSS %d kB (%+d kB over idle, %.1f kB per session), "
             "%d fds" % (load.peak_rss, load.peak_rss - rss0,
                         (load.peak_rss - rss0) / max(1, N_SESSIONS), load.peak_fds))
        if n_ok != N_SESSIONS and not probs:
            probs.append("only %d of %d sessions completed" % (n_ok, N_SESSIONS))
        if load.peak_concurrent != N_SESSIONS and not probs:
            probs.append("only %d sessions were logged in at once" % load.peak_concurrent)
        R.check("%d concurrent sessions (%d users): connect, USER/PASS, STAT, UIDL, "
              "RETR 1 byte-exact, QUIT, zero errors" % (N_SESSIONS, N_USERS), probs)
        # Afterwards.
        probs = []
        deadline = time.time() + min(30, max(5, left()))
        while pb.active() != 0 and time.time() < deadline:
            time.sleep(0.1)
        if pb.active() != 0:
            probs.append("popbridge counts %d sessions after the load" % pb.active())
        while pb.fds() > fds0 and time.time() < deadline:
            time.sleep(0.1)
        if pb.fds() > fds0:
            probs.append("%d fds open after the load, %d before" % (pb.fds(), fds0))
        rss1 = pb.rss_kb()
        note("popbridge after the load: VmRSS %d kB, %d fds, %.2f s of CPU in all"
             % (rss1, pb.fds(), pb.cpu_seconds()))
        if not pb.alive():
            probs.append("popbridge died (status %s)" % pb.proc.returncode)
        else:
            try:
                s = socket.create_connection((HOST, pb.port), timeout=5)
                s.settimeout(5)
                g = s.recv(512)
                s.close()
                if not g.startswith(b"+OK"):
                    probs.append("a new connection afterwards -> %r" % g[:100])
            except OSError as e:
                probs.append("a new connection afterwards: %s" % e)
        derr = dovecot.log_lines(r"Error|Fatal|Panic|process_limit|client_limit")
        if derr:
            note("dovecot log: %d error/limit lines, e.g. %s" % (len(derr), derr[0][:200]))
        warn = [ln for ln in pb.text().splitlines() if ln.startswith(("<3>", "<4>"))]
        if warn:
            note("popbridge log: %d warnings/errors, e.g. %s" % (len(warn), warn[0][:200]))
        R.check("afterwards: popbridge serves, no session or descriptor left over", probs)
        rc = pb.stop()
        R.check("popbridge exits 0 on SIGTERM", [] if rc == 0 else ["exit status %s" % rc])

    return pbtest.script_main(R, "soak test", body)


if __name__ == "__main__":
    sys.exit(main())
