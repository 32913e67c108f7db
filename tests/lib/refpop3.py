#!/usr/bin/env python3
"""A reference model of popbridge, only for validating the test harness.

    refpop3.py -c popbridge.ini

Reads the same INI as popbridge ([listen] pop3, [upstream] host/port/
timeout, the rest is accepted and ignored) and serves POP3 on 127.0.0.1 by
translating each session to IMAP with imaplib, one thread per client. It is
deliberately simple (whole messages in memory, no TLS, no UID map: UIDL is
"UIDVALIDITY.UID") and is NOT the product: its purpose is to show that the
integration cases can all pass against a correct implementation, and
(with REFPOP3_BUG=name, see BUGS) that each case fails when the behaviour
it guards breaks.

run.sh uses it with POP3_TARGET=reference.
"""

import argparse
import base64
import configparser
import imaplib
import os
import re
import signal
import socket
import sys
import threading

CRLF = b"\r\n"
MAX_LINE = 255

# Deliberate faults, to check that the suite notices (REFPOP3_BUG=a,b).
BUGS = {
    "nostuff-first": "do not dot-stuff the first line of a message",
    "nostuff": "never dot-stuff",
    "lf": "send bare LF line ends",
    "size-plus-crlf": "count the CRLF added to an unterminated message in LIST",
    "plain-expunge": "UPDATE with a plain EXPUNGE (kills other clients' \\Deleted)",
    "delete-on-drop": "carry out DELE when the connection drops",
    "no-rset": "RSET does not undo DELE",
    "seen": "RETR with BODY[] (sets \\Seen)",
    "uidl-seq": "UIDL is the message number",
    "no-sys-temp": "say -ERR without [SYS/TEMP] when the upstream fails",
    "serial": "serve one session at a time",
    "raw-login": "paste credentials raw into LOGIN",
    "top-off-by-one": "TOP n sends n+1 body lines",
    "no-auth-code": "bad login without [AUTH]",
    "live-list": "re-read the mailbox on STAT (no snapshot)",
}
ACTIVE = set(filter(None, os.environ.get("REFPOP3_BUG", "").split(",")))
for b in ACTIVE:
    if b not in BUGS:
        sys.exit("refpop3: unknown REFPOP3_BUG %r; known: %s" % (b, ", ".join(BUGS)))
SERIAL = threading.Lock()


def log(msg):
    print("refpop3: %s" % msg, file=sys.stderr, flush=True)


class Upstream(Exception):
    pass


class Session:
    def __init__(self, sock, cfg):
        self.sock = sock
        self.cfg = cfg
        self.rfile = sock.makefile("rb")
        self.imap = None
        self.user = None
        self.msgs = []          # [(uid, size)]
        self.uidvalidity = 0
        self.deleted = set()
        self.exact = {}         # uid -> exact size once fetched

    # -- output -----------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def ok(self, text=""):
        self.send(b"+OK" + (b" " + text.encode() if text else b"") + CRLF)

    def err(self, text):
        self.send(b"-ERR " + text.encode() + CRLF)

    def multi(self, data):
        """data ends in CRLF (or is empty)."""
        out = []
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for k, ln in enumerate(lines):
            if ln.endswith(b"\r"):
                ln = ln[:-1]
            stuff = ln.startswith(b".")
            if "nostuff" in ACTIVE or ("nostuff-first" in ACTIVE and k == 0):
                stuff = False
            out.append((b"." if stuff else b"") + ln + (b"\n" if "lf" in ACTIVE else CRLF))
        self.send(b"".join(out) + b".\r\n")

    # -- IMAP ---------------------------------------------------------------
    def imap_call(self, fn, *a):
        try:
            typ, data = fn(*a)
        except (imaplib.IMAP4.abort, OSError, EOFError) as e:
            raise Upstream(str(e))
        return typ, data

    def login(self, user, password):
        # imaplib quotes only \ and "; CR, LF or NUL inside a quoted string
        # would end the command line (an injection). Refuse them.
        if "raw-login" not in ACTIVE and re.search(r"[\r\n\0]", user + password):
            return False
        up = self.cfg["upstream"]
        try:
            imap = imaplib.IMAP4(up.get("host", "127.0.0.1"), int(up.get("port", "143")),
                                 timeout=float(up.get("timeout", "30")))
        except OSError as e:
            raise Upstream(str(e))
        try:
            if "raw-login" in ACTIVE:
                typ, data = imap._simple_command("LOGIN", '"%s"' % user, '"%s"' % password)
                if typ != "OK":
                    raise imaplib.IMAP4.error("LOGIN failed")
                imap.state = "AUTH"
            else:
                typ, data = imap.login(user, password)
        except imaplib.IMAP4.error:
            imap.shutdown()
            return False
        except (imaplib.IMAP4.abort, OSError, EOFError) as e:
            raise Upstream(str(e))
        self.imap = imap
        self.snapshot()
        return True

    def snapshot(self):
        typ, data = self.imap_call(self.imap.select, "INBOX")
        if typ != "OK":
            raise Upstream("SELECT failed")
        typ, data = self.imap_call(self.imap.response, "UIDVALIDITY")
        self.uidvalidity = int(data[0]) if data and data[0] else 0
        msgs = []
        typ, data = self.imap_call(self.imap.uid, "FETCH", "1:*", "(UID RFC822.SIZE)")
        for item in data or []:
            if isinstance(item, tuple):
                item = item[0]
            if not item:
                continue
            m = re.search(rb"UID (\d+)", item)
            s = re.search(rb"RFC822\.SIZE (\d+)", item)
            if m and s:
                msgs.append((int(m.group(1)), int(s.group(1))))
        self.msgs = sorted(msgs)

    def fetch(self, uid, section):
        peek = "BODY[%s]" if "seen" in ACTIVE else "BODY.PEEK[%s]"
        typ, data = self.imap_call(self.imap.uid, "FETCH", str(uid), "(%s)" % (peek % section))
        if typ != "OK":
            raise Upstream("FETCH failed")
        for item in data or []:
            if isinstance(item, tuple) and b"BODY[" in item[0]:
                return item[1]
        return None

    # -- helpers ------------------------------------------------------------
    def msg(self, arg):
        if not re.fullmatch(r"[0-9]{1,9}", arg or ""):
            return None
        n = int(arg)
        if n < 1 or n > len(self.msgs) or n in self.deleted:
            return None
        return n

    def size(self, n):
        uid, size = self.msgs[n - 1]
        return self.exact.get(uid, size)

    def uidl(self, n):
        if "uidl-seq" in ACTIVE:
            return str(n)
        return "%d.%d" % (self.uidvalidity, self.msgs[n - 1][0])

    @staticmethod
    def normal(data):
        e = re.sub(rb"(?<!\r)\n", CRLF, data)
        size = len(e)
        if e and not e.endswith(CRLF):
            e += CRLF
            if "size-plus-crlf" in ACTIVE:
                size += 2
        return e, size

    # -- the session ------------------------------------------------------
    def run(self):
        self.ok("popbridge reference ready")
        pending_user = None
        while True:
            line = self.rfile.readline(64 * 1024)
            if not line:
                return self.drop()
            if not line.endswith(b"\n"):
                self.err("line too long")
                return self.drop()
            if len(line.rstrip(b"\r\n")) > MAX_LINE:
                self.err("command line too long")
                continue
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            cmd, _, arg = text.partition(" ")
            cmd = cmd.upper()
            try:
                if self.imap is None:
                    if cmd == "QUIT":
                        self.ok("bye")
                        return self.close()
                    if cmd == "CAPA":
                        self.send(b"+OK\r\n")
                        self.multi(b"USER\r\nUIDL\r\nTOP\r\nPIPELINING\r\nRESP-CODES\r\n"
                                   b"AUTH-RESP-CODE\r\nSASL PLAIN\r\n"
                                   b"IMPLEMENTATION refpop3\r\n")
                    elif cmd == "USER" and arg:
                        pending_user = arg
                        self.ok()
                    elif cmd == "PASS" and pending_user is not None:
                        u, pending_user = pending_user, None
                        self.try_login(u, arg)
                    elif cmd == "AUTH" and not arg:
                        self.send(b"+OK\r\n")
                        self.multi(b"PLAIN\r\n")
                    elif cmd == "AUTH" and arg.split(" ")[0].upper() == "PLAIN":
                        parts = arg.split(" ")
                        if len(parts) > 1:
                            tok = parts[1]
                        else:
                            self.send(b"+ \r\n")
                            tok = self.rfile.readline(16 * 1024).rstrip(b"\r\n").decode()
                            if tok == "*":
                                self.err("AUTH cancelled")
                                continue
                        try:
                            _, u, p = base64.b64decode(tok, validate=True).split(b"\0")
                        except Exception:
                            self.err("bad AUTH PLAIN data")
                            continue
                        self.try_login(u.decode(), p.decode())
                    elif cmd == "APOP":
                        self.err("APOP not supported")
                    else:
                        self.err("not in this state")
                else:
                    if self.transaction(cmd, arg) == "quit":
                        return self.close()
            except Upstream as e:
                log("upstream failed: %s" % e)
                self.err("%supstream server unavailable, please wait and try again"
                         % ("" if "no-sys-temp" in ACTIVE else "[SYS/TEMP] "))
                return self.close()

    def try_login(self, user, password):
        if self.login(user, password):
            self.user = user
            self.ok("logged in")
        else:
            self.err("%sauthentication failed" % ("" if "no-auth-code" in ACTIVE else "[AUTH] "))

    def transaction(self, cmd, arg):
        args = arg.split(" ") if arg else []
        if cmd == "STAT" and not args:
            if "live-list" in ACTIVE:
                self.snapshot()
            live = [n for n in range(1, len(self.msgs) + 1) if n not in self.deleted]
            self.ok("%d %d" % (len(live), sum(self.size(n) for n in live)))
        elif cmd in ("LIST", "UIDL") and len(args) <= 1:
            f = (lambda n: str(self.size(n))) if cmd == "LIST" else self.uidl
            if args:
                n = self.msg(args[0])
                if n is None:
                    return self.err("no such message")
                self.ok("%d %s" % (n, f(n)))
            else:
                self.send(b"+OK\r\n")
                self.multi(b"".join(b"%d %s\r\n" % (n, f(n).encode())
                                    for n in range(1, len(self.msgs) + 1)
                                    if n not in self.deleted))
        elif cmd == "RETR" and len(args) == 1:
            n = self.msg(args[0])
            if n is None:
                return self.err("no such message")
            data = self.fetch(self.msgs[n - 1][0], "")
            if data is None:
                return self.err("message vanished upstream")
            e, size = self.normal(data)
            self.exact[self.msgs[n - 1][0]] = size
            self.send(b"+OK %d octets\r\n" % size)
            self.multi(e)
        elif cmd == "TOP" and len(args) == 2 and re.fullmatch(r"\d{1,9}", args[1]):
            n = self.msg(args[0])
            if n is None:
                return self.err("no such message")
            uid = self.msgs[n - 1][0]
            head = self.fetch(uid, "HEADER")
            text = self.fetch(uid, "TEXT")
            if head is None or text is None:
                return self.err("message vanished upstream")
            k = int(args[1]) + (1 if "top-off-by-one" in ACTIVE else 0)
            lines = re.sub(rb"(?<!\r)\n", CRLF, text).split(b"\n")
            body = b"\n".join(lines[:k]) + (b"\n" if 0 < k < len(lines) else b"")
            out = re.sub(rb"(?<!\r)\n", CRLF, head) + body
            if out and not out.endswith(CRLF):
                out += CRLF
            self.send(b"+OK\r\n")
            self.multi(out)
        elif cmd == "DELE" and len(args) == 1:
            n = self.msg(args[0])
            if n is None:
                return self.err("no such message")
            self.deleted.add(n)
            self.ok("marked")
        elif cmd == "RSET" and not args:
            if "no-rset" not in ACTIVE:
                self.deleted.clear()
            self.ok()
        elif cmd == "NOOP" and not args:
            self.ok()
        elif cmd == "CAPA":
            self.send(b"+OK\r\n")
            self.multi(b"USER\r\nUIDL\r\nTOP\r\nPIPELINING\r\nRESP-CODES\r\n")
        elif cmd == "QUIT":
            self.update()
            self.ok("bye")
            return "quit"
        else:
            self.err("unknown command or bad arguments")

    def update(self):
        if not self.deleted or self.imap is None:
            return
        uids = ",".join(str(self.msgs[n - 1][0]) for n in sorted(self.deleted))
        typ, _ = self.imap_call(self.imap.uid, "STORE", uids, "+FLAGS.SILENT", "(\\Deleted)")
        if typ != "OK":
            raise Upstream("STORE failed")
        if "plain-expunge" in ACTIVE:
            typ, _ = self.imap_call(self.imap.expunge)
        else:
            typ, _ = self.imap_call(self.imap.uid, "EXPUNGE", uids)
        if typ != "OK":
            raise Upstream("EXPUNGE failed")

    def drop(self):
        if "delete-on-drop" in ACTIVE:
            try:
                self.update()
            except Upstream:
                pass
        self.close()

    def close(self):
        if self.imap is not None:
            try:
                self.imap.logout()
            except Exception:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


def serve(cfg):
    listen = cfg["listen"].get("pop3", "127.0.0.1:1110").split(",")[0].strip()
    host, _, port = listen.rpartition(":")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host.strip("[]"), int(port)))
    srv.listen(64)
    log("listening on %s" % listen)

    def stop(*_):
        log("stopping")
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def handle(conn):
        conn.settimeout(600)
        try:
            if "serial" in ACTIVE:
                with SERIAL:
                    Session(conn, cfg).run()
            else:
                Session(conn, cfg).run()
        except Exception as e:   # a crashed session closes, never hangs
            log("session failed: %s: %s" % (type(e).__name__, e))
            try:
                conn.close()
            except OSError:
                pass

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", required=True)
    a = ap.parse_args()
    cfg = configparser.ConfigParser(inline_comment_prefixes=(";",))
    cfg.read(a.c)
    if ACTIVE:
        log("deliberate bugs: %s" % ", ".join(sorted(ACTIVE)))
    serve(cfg)


if __name__ == "__main__":
    main()
