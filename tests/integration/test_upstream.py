#!/usr/bin/env python3
"""The upstream IMAP server dies mid-session (SPEC §5).

Runs against a second, private Dovecot (DOVECOT_DIR) and a second popbridge
in front of it, in two phases driven by run.sh:

  test_upstream.py kill STATEFILE     sessions are open (one with DELEs pending, one in
                            the middle of the 5 MB RETR); this script
                            SIGKILLs every process of that Dovecot and checks
                            what the clients get; then new logins while it
                            is down. Saves what it saw in TEST_TMP/state.json.
  (run.sh restarts the Dovecot on the same port)
  test_upstream.py verify STATEFILE   nothing was deleted, and popbridge serves the
                            maildrop again with the same UIDLs.
"""

import json
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import (IMAP_PORT, Expected, env, first_diff, is_ok, login, pop3,  # noqa: E402
                    users)
from pop3wire import Pop3Closed  # noqa: E402

R = pbtest.Report()
USER, PW = "zed", ""
STATE = ""          # where the kill phase leaves what it saw for the verify phase
DOVECOT_DIR = ""    # the Dovecot this script kills


def dovecot_pids():
    """The Dovecot master of DOVECOT_DIR and all its descendants."""
    with open(os.path.join(DOVECOT_DIR, "dovecot.pid")) as f:
        master = int(f.read().strip())
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [master]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def kill_dovecot():
    pids = dovecot_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def sys_temp(line):
    return line.startswith(b"-ERR [SYS/TEMP]")


def read_reply_or_close(p, timeout=20):
    """The next line from the server, or None if it closed the connection
    without one."""
    p.sock.settimeout(timeout)
    try:
        return p.line()
    except Pop3Closed:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return None


def phase_kill():
    E = Expected.imap(IMAP_PORT, USER, PW)
    # The largest message (run.sh appends a 24 MB one): larger than what the
    # kernel buffers on the way (a few MB per socket), so that the kill
    # really cuts the RETR short instead of leaving it all in flight.
    big = max(range(1, len(E) + 1), key=lambda i: E.size[i - 1])
    saved = {"uids": E.uids}

    # Session 1: DELEs pending, then the upstream dies.
    s1 = login(USER, PW)
    r = s1.cmd("UIDL")
    assert is_ok(r), "UIDL -> %r" % r
    _, body, _ = s1.multi()
    saved["uidls"] = [ln.decode() for ln in body.split(b"\r\n") if ln]
    for k in (1, 2):
        r = s1.cmd("DELE %d" % k)
        assert is_ok(r), "DELE %d -> %r" % (k, r)

    # Session 2: in the middle of the big RETR, reading slowly.
    s2 = pop3(rcvbuf=32768, timeout=30)
    r = s2.login(USER, PW)
    assert is_ok(r), "second login -> %r" % r
    s2.send(b"RETR %d\r\n" % big)
    got2 = bytearray()
    while len(got2) < 128 * 1024:
        chunk = s2.sock.recv(16384)
        if not chunk:
            break
        got2 += chunk

    pids = kill_dovecot()
    saved["killed"] = pids
    time.sleep(0.5)

    results = {}
    # Session 1: the next command needs the upstream.
    try:
        s1.send(b"RETR 3\r\n")
    except OSError as e:   # it may have closed already; read what it sent
        results["s1_exc"] = repr(e)
    results["s1_reply"] = read_reply_or_close(s1)
    if results["s1_reply"] is not None and not sys_temp(results["s1_reply"]):
        # An unrelated line first? Take one more.
        results["s1_reply2"] = read_reply_or_close(s1, 5)
    # Does the session end? If the server keeps it open, a QUIT must not
    # claim success: the DELEs cannot have been carried out.
    results["s1_closed"] = False
    try:
        s1.send(b"QUIT\r\n")
        q = read_reply_or_close(s1, 10)
        results["s1_quit"] = q
        results["s1_closed"] = q is None
    except OSError:
        results["s1_closed"] = True
        results["s1_quit"] = None
    s1.close()

    # Session 2: read whatever comes until the server closes.
    # Until the server closes; or, once the reply looks complete, until it
    # has been quiet for 3 s (a server that had buffered the whole message
    # may finish it and keep the session).
    s2.sock.settimeout(30)
    try:
        while True:
            chunk = s2.sock.recv(65536)
            if not chunk:
                break
            got2 += chunk
            if got2.endswith(b"\r\n.\r\n"):
                s2.sock.settimeout(3)
    except socket.timeout:
        if not got2.endswith(b"\r\n.\r\n"):
            results["s2_timeout"] = True
    except OSError as e:
        results["s2_exc"] = repr(e)
    s2.close()
    results["s2_len"] = len(got2)
    nl = got2.find(b"\r\n")
    status, wire = bytes(got2[:nl + 2]), bytes(got2[nl + 2:])
    want_wire = imapfetch.dotstuff(E.retr[big - 1])
    results["s2_status"] = status[:80]
    results["s2_complete"] = wire == want_wire
    results["s2_terminated"] = wire.endswith(b"\r\n.\r\n")
    if results["s2_terminated"] and not results["s2_complete"]:
        results["s2_diff"] = first_diff(wire, want_wire)

    # New logins while the upstream is down.
    logins = {}
    for how in ("user", "auth"):
        try:
            p = pop3(timeout=30)
            lines = [p.greeting]
            if is_ok(p.greeting):
                if how == "user":
                    r = p.cmd("USER %s" % USER)
                    lines.append(r)
                    if is_ok(r):
                        lines.append(p.cmd("PASS %s" % PW))
                else:
                    lines.append(p.auth_plain(USER, PW))
            logins[how] = [ln.decode("latin-1") for ln in lines]
            p.close()
        except Exception as e:
            logins[how] = ["%s: %s" % (type(e).__name__, e)]
    results["logins"] = logins

    for k, v in list(results.items()):
        if isinstance(v, bytes):
            results[k] = v.decode("latin-1")
    saved["results"] = results
    with open(STATE, "w") as f:
        json.dump(saved, f, indent=1)
    return saved


def check_kill(saved):
    res = saved["results"]
    r1 = res.get("s1_reply")
    r2 = res.get("s1_reply2")
    replies = [x for x in (r1, r2) if x]
    probs = []
    if not any(x.startswith("-ERR [SYS/TEMP]") for x in replies):
        probs.append("after the upstream died, RETR got %r%s"
                     % (replies or "no reply (connection closed)",
                        " " + res["s1_exc"] if "s1_exc" in res else ""))
    q = res.get("s1_quit")
    if q and q.startswith("+OK"):
        probs.append("QUIT with DELEs pending and the upstream dead -> %r" % q)
    return probs


def check_wait_word(saved):
    res = saved["results"]
    temp = [x for x in (res.get("s1_reply"), res.get("s1_reply2")) if x
            and x.startswith("-ERR [SYS/TEMP]")]
    for how, lines in res["logins"].items():
        temp += [ln for ln in lines if ln.startswith("-ERR [SYS/TEMP]")]
    if not temp:
        return ["no -ERR [SYS/TEMP] text seen at all"]
    bad = [t for t in temp if not re.search(r"\bwait\b", t, re.I)]
    return ["[SYS/TEMP] text without the word 'wait': %r" % t for t in bad]


def check_mid_retr(saved):
    res = saved["results"]
    print("# mid-RETR kill: %d octets reached the client, %s" % (
        res["s2_len"], "the message was complete" if res["s2_complete"]
        else "cut short" + (" and terminated" if res["s2_terminated"] else
                            ", no terminator")), flush=True)
    if not res["s2_status"].startswith("+OK"):
        return ["RETR of the big message -> %r" % res["s2_status"]]
    if res.get("s2_timeout"):
        return ["the interrupted RETR neither finished nor was closed within 30 s "
                "(%d octets received)" % res["s2_len"]]
    if res["s2_terminated"] and not res["s2_complete"]:
        return ["an interrupted RETR was terminated with '.' although the bytes are "
                "wrong: %s" % res.get("s2_diff")]
    return []


def check_logins(saved):
    probs = []
    for how, lines in saved["results"]["logins"].items():
        if not any(ln.startswith("-ERR [SYS/TEMP]") for ln in lines):
            probs.append("%s login with the upstream down: %r" % (how, lines))
    return probs


def phase_verify():
    with open(STATE) as f:
        saved = json.load(f)
    probs = []
    conn = imapfetch.connect(IMAP_PORT, USER, PW)
    try:
        now = imapfetch.list_uids(conn)
    finally:
        conn.logout()
    if now != saved["uids"]:
        probs.append("IMAP UIDs after the crash %r, before %r" % (now, saved["uids"]))
    deadline = time.time() + 20
    while True:
        try:
            p = login(USER, PW)
            break
        except (AssertionError, OSError) as e:
            if time.time() > deadline:
                probs.append("no login through popbridge after the upstream came back: %s" % e)
                return probs
            time.sleep(0.5)
    try:
        r = p.cmd("UIDL")
        if not is_ok(r):
            probs.append("UIDL -> %r" % r)
        else:
            _, body, _ = p.multi()
            uidls = [ln.decode() for ln in body.split(b"\r\n") if ln]
            if uidls != saved["uidls"]:
                probs.append("UIDLs after the restart %r, before %r" % (uidls, saved["uidls"]))
        p.cmd("QUIT")
    finally:
        p.close()
    return probs


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else ""
    if phase not in ("kill", "verify"):
        sys.exit("usage: test_upstream.py kill|verify [STATEFILE]")

    def body(tmp):
        global PW, STATE, DOVECOT_DIR
        PW = users()[USER]
        DOVECOT_DIR = env("DOVECOT_DIR")
        STATE = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
            os.environ.get("TEST_TMP", "/tmp"), "state.json")
        if phase == "verify":
            R.case("upstream back: nothing was deleted, same UIDLs", phase_verify)
            return
        try:
            saved = phase_kill()
        except Exception as e:
            import traceback
            R.fail("upstream killed mid-session: the scenario itself failed",
                   ["%s: %s" % (type(e).__name__, e)]
                   + traceback.format_exc().strip().splitlines()[-4:])
            saved = {}
        if "results" in saved:
            R.case("upstream killed: next command gets -ERR [SYS/TEMP], QUIT no +OK",
                   check_kill, saved)
            R.case("upstream killed: [SYS/TEMP] texts contain 'wait'", check_wait_word, saved)
            R.case("upstream killed mid-RETR: never a false '.' terminator",
                   check_mid_retr, saved)
            R.case("upstream down: USER/PASS and AUTH PLAIN get -ERR [SYS/TEMP]",
                   check_logins, saved)

    return pbtest.script_main(R, "upstream cases", body, own_popbridge=False)


if __name__ == "__main__":
    sys.exit(main())
