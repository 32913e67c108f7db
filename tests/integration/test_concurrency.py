#!/usr/bin/env python3
"""Two sessions at once: a slow reader of the 5 MB message (alice) must not
hold up another session's full STAT/UIDL/LIST/RETR cycle (erin)."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import imapfetch  # noqa: E402
import pbtest  # noqa: E402
from pbtest import IMAP_PORT, Expected, first_diff, is_ok, login, pop3, users  # noqa: E402

R = pbtest.Report()
U = {}              # run.sh's users and their passwords
SLOW_CHUNK = 16384
SLOW_PAUSE = 0.025      # ~650 KB/s: the 5 MB message takes about 8 s


def slow_reader(state, label_big, want_wire, started):
    """RETR of the big message, read in small sips through a small receive
    buffer so that the server has to hold back."""
    p = None
    try:
        p = pop3(rcvbuf=32768, timeout=60)
        r = p.login("alice", U["alice"])
        if not is_ok(r):
            state["error"] = "login -> %r" % r
            return
        p.send(b"RETR %d\r\n" % label_big)
        buf = bytearray(p.buf)
        p.buf = b""
        t0 = time.time()
        while True:
            chunk = p.sock.recv(SLOW_CHUNK)
            if not chunk:
                state["error"] = "connection closed after %d octets" % len(buf)
                return
            buf += chunk
            if buf.startswith(b"-") and b"\r\n" in buf:
                state["error"] = "RETR -> %r" % bytes(buf[:200])
                return
            if len(buf) >= 256 * 1024:
                started.set()
            if buf.endswith(b"\r\n.\r\n"):
                break
            time.sleep(SLOW_PAUSE)
        state["end"] = time.time()
        state["secs"] = state["end"] - t0
        nl = buf.find(b"\r\n")
        status, wire = bytes(buf[:nl + 2]), bytes(buf[nl + 2:])
        if not is_ok(status):
            state["error"] = "RETR -> %r" % status
        elif wire != want_wire:
            state["error"] = "slow RETR: %s" % first_diff(wire, want_wire)
        else:
            state["ok"] = True
    except Exception as e:
        state["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        started.set()
        if p:
            p.close()


def full_cycle(E):
    p = login("erin", U["erin"])
    try:
        r = p.cmd("STAT")
        assert r.strip() == b"+OK %d %d" % (len(E), sum(E.size)), "STAT -> %r" % r
        for c in ("UIDL", "LIST"):
            r = p.cmd(c)
            assert is_ok(r), "%s -> %r" % (c, r)
            p.multi()
        for i in range(1, len(E) + 1):
            r = p.cmd("RETR %d" % i)
            assert is_ok(r), "RETR %d -> %r" % (i, r)
            raw, _, _ = p.multi()
            want = imapfetch.dotstuff(E.retr[i - 1])
            assert raw == want, "RETR %s: %s" % (E.label(i), first_diff(raw, want))
        r = p.cmd("QUIT")
        assert is_ok(r), "QUIT -> %r" % r
    finally:
        p.close()


def concurrent():
    EA = Expected.imap(IMAP_PORT, "alice", U["alice"])
    EE = Expected.imap(IMAP_PORT, "erin", U["erin"])
    big = EA.names.index("big-attachment") + 1
    state = {}
    started = threading.Event()
    t = threading.Thread(target=slow_reader,
                         args=(state, big, imapfetch.dotstuff(EA.retr[big - 1]), started),
                         daemon=True)
    t.start()
    if not started.wait(30):
        return ["the slow reader got no 256 KB within 30 s: %s" % state.get("error")]
    if "error" in state or "end" in state:
        return ["the slow reader ended early: %r" % state]
    t0 = time.time()
    probs = []
    try:
        full_cycle(EE)
    except AssertionError as e:
        probs.append("fast session: %s" % e)
    fast_end = time.time()
    t.join(120)
    if t.is_alive():
        probs.append("the slow reader did not finish within 120 s")
    if "error" in state:
        probs.append("slow session: %s" % state["error"])
    elif "end" in state and not probs:
        if state["end"] <= fast_end:
            probs.append("the fast cycle (%.1fs) only finished after the slow RETR "
                         "(%.1fs): sessions are not served concurrently"
                         % (fast_end - t0, state["secs"]))
    return probs


def main():
    def body(tmp):
        U.update(users())
        R.case("slow 5 MB RETR does not block another session's full cycle", concurrent)

    return pbtest.script_main(R, "concurrency cases", body, own_popbridge=False)


if __name__ == "__main__":
    sys.exit(main())
