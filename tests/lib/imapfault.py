#!/usr/bin/env python3
"""A scripted IMAP peer that injects upstream faults (for tests).

Not a mock of Dovecot: the real server is what the integration suite runs
against. This peer plays a small, well-behaved IMAP4rev1 server for one
scripted mailbox until a fault plan says to break: at the Nth occurrence
of a command (or at the greeting) it answers BYE, NO, BAD, says nothing,
drops the connection, stops in the middle of a literal, sends garbage,
announces a wrong literal size, answers for another UID, or interleaves
untagged responses. Everything the client sends is recorded (literal
payloads included) so a test can assert what was, and was not, sent.

    peer = FaultPeer()                    # 127.0.0.1, port from the kernel
    peer.start()
    peer.reset(caps=["IMAP4rev1", "AUTH=PLAIN", "MOVE"],  # fresh mailbox, log, plan
               plan=[Fault("SELECT", "no", code="UNAVAILABLE")])
    ... run a client against 127.0.0.1:peer.port ...
    peer.fired()                          # the faults that went off
    peer.mutations()                      # STORE/EXPUNGE/MOVE/COPY received
    peer.commands("LOGIN")                # [Command] with .text, .literals
    peer.refuse(); peer.listen()          # close / reopen the listening port
    peer.stop()

Commands are named by a key, which is also what a Fault matches:
    CAPABILITY LOGIN AUTHENTICATE ID SELECT EXAMINE NOOP LOGOUT
    FETCH_LIST    UID FETCH ... (UID RFC822.SIZE)     the snapshot listing
    FETCH_BODY    UID FETCH u (UID BODY.PEEK[])
    FETCH_HEADER  UID FETCH u (UID BODY.PEEK[HEADER])
    FETCH_TEXT    UID FETCH u (UID BODY.PEEK[TEXT]<o.l>)
    UID STORE, UID EXPUNGE, UID MOVE, UID COPY, EXPUNGE, STORE, MOVE, COPY
and the pseudo-command "greeting" (the moment a connection is accepted).

Fault actions (Fault(on, action, nth=1, **opts)); the Nth occurrence of
`on`, counted over the peer's life since the last reset, fires it once:
    bye               "* BYE" instead of the answer, then close
    respond_then_bye  the normal answer, then "* BYE" and close
    partial_then_bye  half of the untagged data, then "* BYE" and close
    no, bad           tagged NO / BAD (opts: code="UNAVAILABLE", text=...)
    silence           answer nothing, ever (keep reading and recording)
    drop              close without a word
    drop_mid_literal  FETCH_*: the response up to k=N octets of the
                      literal, then close (opts: k)
    garbage           send opts["lines"] (raw bytes, CRLF added) before the
                      normal answer (then="normal", default) or instead of
                      it (then="silence" / then="drop")
    literal_size      FETCH_*: announce size (opts: size=N, or delta=+-N)
                      while sending the real bytes and the tagged OK; then
                      silence (after="silence", default) or close
    wrong_uid         FETCH_*: a body for another message (opts: uid, and
                      uid_after=True to name the UID after the literal
                      only; then_right=True to send the right one after it)
    interleave        the normal answer with opts["lines"] (untagged lines)
                      inserted: where="before" (before any data),
                      "mid" (among the untagged data), "after_data"
                      (between the last data, e.g. a FETCH literal, and the
                      tagged OK: the default)
    reshape           FETCH_*: the right answer in another legal shape:
                      prefix=b"FLAGS (\\Seen) " (items before UID),
                      uid_after=True (UID after the literal), suffix=
                      b" FLAGS (\\Seen)" (items after the literal)
    zero              FETCH_*: the item asked for with a zero-length
                      value in one of the forms servers use (opts: form=):
                      "quoted" BODY[] "", "literal" BODY[] {0}, "nil"
                      BODY[] NIL (Dovecot, for a message expunged by
                      another client), "missing" BODY[] with no value at
                      all (GNU Mailutils: "* 1 FETCH (UID 1 BODY[TEXT])");
                      the item name is the one the request implies
                      (BODY[TEXT]<16384> for a partial), then the tagged OK
An interleaved "* n EXPUNGE" really removes message n (as if another
client had expunged it), so later answers stay consistent.
"""

import base64
import re
import select
import socket
import threading
import time

CRLF = b"\r\n"

# What a greeting/CAPABILITY says unless a test asks for less.
CAPS_FULL = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
             "AUTH=PLAIN UIDPLUS MOVE").split()

MUTATING = ("UID STORE", "UID EXPUNGE", "UID MOVE", "UID COPY",
            "EXPUNGE", "STORE", "MOVE", "COPY", "APPEND", "DELETE", "RENAME")

MAX_LINE = 64 * 1024        # longest command line accepted
MAX_LITERAL = 1 << 20       # longest literal accepted from the client
IDLE_LIMIT = 120.0          # a connection idle this long is closed anyway
UIDVALIDITY = 1700000001

# The zero-length forms of a FETCH body item's value (the "zero" action):
# None means the item name with no value after it.
ZERO_FORMS = {"quoted": b'""', "literal": b"{0}\r\n", "nil": b"NIL", "missing": None}


# -- the mailbox ----------------------------------------------------------------

def _msg(n, subject, body_lines, extra_headers=b""):
    hdr = (b"From: Sender %d <sender%d@example.org>\r\n"
           b"To: alice@example.org\r\n"
           b"Subject: " % (n, n) + subject + b"\r\n"
           b"Date: Mon, 2 Jan 2023 10:%02d:00 +0000\r\n" % n +
           b"Message-ID: <fault-%d@example.org>\r\n" % n +
           extra_headers +
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n")
    return hdr + CRLF + b"".join(l + CRLF for l in body_lines)


def default_messages():
    """[(uid, bytes)]: a few messages with gaps in the UIDs (so that
    sequence numbers and UIDs differ), lines starting with dots, and one
    of about 200 KB."""
    big_lines = [b"line %06d of the big message: " % i + b"x" * 60
                 for i in range(2600)]
    big_lines[100] = b".a dotted line inside the big message"
    big_lines[1000] = b"."
    return [
        (3, _msg(1, b"plain", [b"Hello Alice,", b"", b"just a plain message.",
                               b"-- ", b"Bob"])),
        (5, _msg(2, b"dot lines", [b".leading dot", b"..two dots", b".",
                                   b"middle", b". space after dot", b"end"])),
        (8, _msg(3, b"third", [b"the third message", b"has three lines",
                               b"and ends here"])),
        (9, _msg(4, b"big", big_lines)),
        (12, _msg(5, b"last", [b"the last one"])),
    ]


class Message:
    def __init__(self, uid, data, flags=()):
        self.uid = uid
        self.data = data
        self.flags = set(flags)

    def header(self):
        i = self.data.find(b"\r\n\r\n")
        return self.data if i < 0 else self.data[:i + 4]

    def text(self):
        i = self.data.find(b"\r\n\r\n")
        return b"" if i < 0 else self.data[i + 4:]


# -- plan and records ---------------------------------------------------------------

class Fault:
    def __init__(self, on, action, nth=1, **opts):
        self.on = on
        self.action = action
        self.nth = nth
        self.opts = opts
        self.fired_conn = None      # connection id once fired

    def __repr__(self):
        o = "".join(", %s=%r" % kv for kv in sorted(self.opts.items()))
        return "Fault(%r, %r, nth=%d%s)" % (self.on, self.action, self.nth, o)


class Command:
    """One command as received: text is the whole command with literal
    payloads inline (latin-1), CRLFs included after literal announcements."""

    def __init__(self, conn, tag, name, key, raw, segments, literals):
        self.conn = conn
        self.tag = tag
        self.name = name            # "UID FETCH", "LOGIN", ...
        self.key = key              # the fault key (see module doc)
        self.raw = raw              # bytes exactly as received
        self.segments = segments    # [bytes] text pieces between literals
        self.literals = literals    # [(size, nonsync, data, early)]
        self.continuation = None    # AUTHENTICATE: the client's answer line
        self.auth = None            # AUTHENTICATE: (user, password) decoded
        self.bearer = None          # OAUTHBEARER/XOAUTH2: (mech, user, token)
        self.sasl_reply = None      # the answer to an error challenge
        self.sasl_reply2 = None
        self.time = time.time()

    @property
    def text(self):
        return self.raw.decode("latin-1").replace("\r\n", "\\r\\n")

    def __repr__(self):
        t = self.text
        return "[c%d] %s" % (self.conn, t if len(t) < 200 else t[:200] + "...")


# -- tokenizing client commands -------------------------------------------------------

_TOKEN = re.compile(rb'\s*(?:"((?:[^"\\]|\\.)*)"|(\()|(\))|([^\s()"]+))', re.S)


def _tokens(segments, literals):
    """Flat tokens of a command after the tag: atoms and strings as bytes,
    lists as nested Python lists, literals as their data."""
    out = [[]]
    for i, seg in enumerate(segments):
        pos = 0
        while pos < len(seg):
            m = _TOKEN.match(seg, pos)
            if not m or m.end() == pos:
                if seg[pos:].strip():
                    raise ValueError("cannot tokenize %r" % seg[pos:pos + 40])
                break
            pos = m.end()
            if m.group(1) is not None:
                out[-1].append(re.sub(rb"\\(.)", rb"\1", m.group(1)))
            elif m.group(2):
                out.append([])
            elif m.group(3):
                if len(out) < 2:
                    raise ValueError("unbalanced ')'")
                inner = out.pop()
                out[-1].append(inner)
            else:
                out[-1].append(m.group(4))
        if i < len(literals):
            out[-1].append(literals[i][2])
    if len(out) != 1:
        raise ValueError("unbalanced '('")
    return out[0]


def _b(s):
    return s.encode("utf-8") if isinstance(s, str) else s


def parse_uid_set(s, uids):
    """The UIDs of `uids` (sorted list) named by an IMAP sequence set."""
    if not uids:
        return []
    top = uids[-1]
    want = set()
    ranges = []
    for part in s.split(b","):
        a, _, b = part.partition(b":")
        lo = top if a == b"*" else int(a)
        hi = lo if not b else (top if b == b"*" else int(b))
        if lo > hi:
            lo, hi = hi, lo
        ranges.append((lo, hi))
    for u in uids:
        if any(lo <= u <= hi for lo, hi in ranges):
            want.add(u)
    return sorted(want)


# -- one connection --------------------------------------------------------------

class _Closed(Exception):
    pass


class Connection(threading.Thread):
    def __init__(self, peer, sock, cid):
        super().__init__(name="imapfault-c%d" % cid, daemon=True)
        self.peer = peer
        self.sock = sock
        self.cid = cid
        self.buf = b""
        self.authed = False
        self.selected = False
        self.silent = False
        self.closed = False
        self.sock.settimeout(0.25)

    # -- I/O ---------------------------------------------------------------
    def send(self, data):
        if self.closed or self.silent:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.close()
            raise _Closed()

    def line(self, text):
        self.send(text + CRLF)

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        idle_since = time.time()
        while True:
            if self.closed or self.peer.stopping.is_set():
                raise _Closed()
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if time.time() - idle_since > IDLE_LIMIT:
                    self.peer.note("c%d: idle for %ds, closed" % (self.cid, IDLE_LIMIT))
                    raise _Closed()
                continue
            except OSError:
                raise _Closed()
            if not chunk:
                raise _Closed()
            self.buf += chunk
            return

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                ln, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                if not ln.endswith(CRLF):
                    self.peer.note("c%d: line ends in a bare LF: %r" % (self.cid, ln[-40:]))
                return ln[:-2] if ln.endswith(CRLF) else ln[:-1]
            if len(self.buf) > MAX_LINE:
                self.peer.note("c%d: command line over %d octets" % (self.cid, MAX_LINE))
                raise _Closed()
            self._fill()

    def readexact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def pending(self, wait=0.15):
        """True when the client has sent bytes we have not read yet."""
        if self.buf:
            return True
        try:
            r, _, _ = select.select([self.sock], [], [], wait)
        except (OSError, ValueError):
            return False
        return bool(r)

    # -- main loop -----------------------------------------------------------
    def run(self):
        try:
            self.greet()
            while not self.closed:
                cmd = self.read_command()
                if cmd is None:
                    continue
                self.handle(cmd)
        except _Closed:
            pass
        except Exception as e:  # a bug here must not hang the test
            self.peer.note("c%d: peer error %s: %s" % (self.cid, type(e).__name__, e))
        finally:
            self.close()
            self.peer.conn_done(self)

    def greet(self):
        f = self.peer.take_fault("greeting", self.cid)
        caps = self.peer.cfg["caps"]
        ok = (b"* OK [CAPABILITY " + " ".join(caps).encode() + b"] imapfault ready"
              if self.peer.cfg["greeting_caps"] else b"* OK imapfault ready")
        if f is None:
            self.line(ok)
            return
        a = f.action
        if a == "silence":
            self.silent = True
        elif a == "drop":
            self.close()
            raise _Closed()
        elif a == "bye":
            self.line(b"* BYE " + _b(f.opts.get("text", b"server shutting down")))
            self.close()
            raise _Closed()
        elif a == "garbage":
            for ln in f.opts["lines"]:
                self.line(_b(ln))
            then = f.opts.get("then", "normal")
            if then == "normal":
                self.line(ok)
            elif then == "drop":
                self.close()
                raise _Closed()
            else:
                self.silent = True
        elif a == "raw":
            self.send(f.opts["data"])
        else:
            raise ValueError("unknown greeting action %r" % a)

    def read_command(self):
        first = self.readline()
        raw = first + CRLF
        line = first
        segments, literals = [], []
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not m:
                segments.append(line)
                break
            segments.append(line[:m.start()])
            n, nonsync = int(m.group(1)), m.group(2) == b"+"
            if n > MAX_LITERAL:
                self.peer.note("c%d: literal of %d octets refused" % (self.cid, n))
                self.line(b"* BAD literal too large")
                return None
            early = False
            if nonsync:
                caps = [c.upper() for c in self.peer.cfg["caps"]]
                if "LITERAL+" not in caps and not ("LITERAL-" in caps and n <= 4096):
                    self.peer.note("c%d: non-synchronizing literal {%d+} without "
                                   "LITERAL+" % (self.cid, n))
            else:
                early = self.pending()
                if early:
                    self.peer.note("c%d: literal data sent before the "
                                   "continuation request" % self.cid)
                if not self.silent:
                    self.line(b"+ Ready for literal data")
            data = self.readexact(n)
            literals.append((n, nonsync, data, early))
            rest = self.readline()
            raw += data + rest + CRLF
            line = rest
        parts = segments[0].split(b" ", 1)
        tag = parts[0]
        body = parts[1] if len(parts) > 1 else b""
        segments = [body] + segments[1:]
        words = body.split(b" ", 2)
        name = words[0].upper().decode("latin-1") if words[0] else ""
        if name == "UID" and len(words) > 1:
            name = "UID " + words[1].upper().decode("latin-1")
        key = self.key_of(name, body)
        cmd = Command(self.cid, tag, name, key, raw, segments, literals)
        self.peer.record(cmd)
        return cmd

    @staticmethod
    def key_of(name, body):
        if name != "UID FETCH":
            return name
        u = body.upper()
        if b"RFC822.SIZE" in u:
            return "FETCH_LIST"
        if b"[HEADER]" in u:
            return "FETCH_HEADER"
        if b"[TEXT]" in u:
            return "FETCH_TEXT"
        if b"BODY.PEEK[]" in u or b"BODY[]" in u or b"RFC822" in u:
            return "FETCH_BODY"
        return "FETCH_OTHER"

    # -- commands ----------------------------------------------------------------
    def handle(self, cmd):
        if self.silent:
            return
        f = self.peer.take_fault(cmd.key, self.cid)
        if cmd.name == "AUTHENTICATE" and not self.authenticate(cmd, f):
            return
        if f is None:
            chunks, tagged, after = self.answer(cmd)
            self.emit(chunks, tagged, after)
            return
        self.apply_fault(cmd, f)

    def emit(self, chunks, tagged, after=None):
        for c in chunks:
            self.send(c)
        if tagged is not None:
            self.send(tagged)
        if after is not None:
            after()

    def bye(self, text=b"server shutting down"):
        self.line(b"* BYE " + _b(text))
        self.close()
        raise _Closed()

    def status(self, cmd, word, f):
        code = f.opts.get("code")
        text = _b(f.opts.get("text", b"scripted failure"))
        code = _b(code)
        return (cmd.tag + b" " + word + b" " + (b"[" + code + b"] " if code else b"")
                + text + CRLF)

    def apply_fault(self, cmd, f):
        a = f.action
        if a == "bye":
            self.bye(f.opts.get("text", b"server shutting down"))
        elif a in ("no", "bad"):
            self.send(self.status(cmd, a.upper().encode(), f))
        elif a == "silence":
            self.silent = True
        elif a == "drop":
            self.close()
            raise _Closed()
        elif a == "respond_then_bye":
            chunks, tagged, after = self.answer(cmd)
            self.emit(chunks, tagged, after)
            self.bye(f.opts.get("text", b"idle for too long"))
        elif a == "partial_then_bye":
            chunks, _, _ = self.answer(cmd)
            for c in chunks[:len(chunks) // 2]:
                self.send(c)
            self.bye(f.opts.get("text", b"server shutting down"))
        elif a == "garbage":
            for ln in f.opts["lines"]:
                self.send(_b(ln) + CRLF)
            then = f.opts.get("then", "normal")
            if then == "normal":
                self.emit(*self.answer(cmd))
            elif then == "drop":
                self.close()
                raise _Closed()
            else:
                self.silent = True
        elif a == "interleave":
            chunks, tagged, after = self.answer(cmd)
            where = f.opts.get("where", "after_data")
            extra = [_b(ln) + CRLF for ln in f.opts["lines"]]
            if where == "before":
                out = extra + chunks
            elif where == "mid":
                h = max(1, len(chunks) // 2) if chunks else 0
                out = chunks[:h] + extra + chunks[h:]
            else:
                out = chunks + extra
            for c in out:
                self.send(c)
                if c in extra:
                    self.expunge_effect(c)
            self.emit([], tagged, after)
        elif a in ("drop_mid_literal", "literal_size", "wrong_uid", "reshape", "zero"):
            self.body_fault(cmd, f)
        elif a == "raw":
            self.send(f.opts["data"])
            if f.opts.get("then") == "drop":
                self.close()
                raise _Closed()
            if f.opts.get("then") == "silence":
                self.silent = True
        else:
            raise ValueError("unknown action %r" % a)

    def expunge_effect(self, chunk):
        m = re.match(rb"\* (\d+) EXPUNGE\r\n$", chunk)
        if m:
            self.peer.expunge_seq(int(m.group(1)))

    def initial_response(self, cmd, f, toks, caps):
        """The client's SASL initial response: in the command (SASL-IR), or
        its answer to our "+" (recorded in cmd.continuation). None when a
        fault planned "at" the continuation answered instead."""
        if len(toks) > 2:
            if "SASL-IR" not in caps:
                self.peer.note("c%d: SASL-IR used but not advertised" % self.cid)
            return toks[2]
        if f is not None and f.opts.get("at") == "continuation":
            self.apply_fault(cmd, f)    # instead of the "+"
            return None
        self.line(b"+ ")
        cmd.continuation = self.readline()
        return cmd.continuation

    def authenticate(self, cmd, f):
        """The SASL PLAIN exchange up to the decoded credentials (kept in
        cmd.auth for answer()). False when it already answered."""
        toks = _tokens(cmd.segments, cmd.literals)
        caps = [c.upper() for c in self.peer.cfg["caps"]]
        if len(toks) >= 2 and isinstance(toks[1], bytes) and \
                toks[1].upper() in (b"OAUTHBEARER", b"XOAUTH2"):
            return self.authenticate_bearer(cmd, f, toks, caps)
        if len(toks) < 2 or toks[1].upper() != b"PLAIN":
            self.line(cmd.tag + b" NO [CANNOT] unsupported mechanism")
            return False
        if "AUTH=PLAIN" not in caps:
            self.peer.note("c%d: AUTHENTICATE PLAIN but AUTH=PLAIN not advertised"
                           % self.cid)
        resp = self.initial_response(cmd, f, toks, caps)
        if resp is None:
            return False
        if resp == b"*":
            self.line(cmd.tag + b" BAD authentication cancelled")
            return False
        try:
            _, user, pw = base64.b64decode(resp, validate=True).split(b"\0", 2)
        except (ValueError, TypeError):
            self.peer.note("c%d: malformed AUTHENTICATE PLAIN response" % self.cid)
            self.line(cmd.tag + b" BAD invalid base64 or PLAIN message")
            return False
        cmd.auth = (user, pw)
        return True

    def authenticate_bearer(self, cmd, f, toks, caps):
        """OAUTHBEARER (RFC 7628) or XOAUTH2 with the peer's bearer mode:
        "accept" any token; "refuse" with the JSON error challenge (the
        client's answer recorded in cmd.sasl_reply), then NO; "garbage": a
        challenge that is not base64; "twice": a second challenge after
        the client's answer. cmd.bearer = (mech, user, token)."""
        mech = toks[1].upper()
        if "AUTH=" + mech.decode() not in caps:
            self.peer.note("c%d: AUTHENTICATE %s but not advertised" % (self.cid, mech.decode()))
        resp = self.initial_response(cmd, f, toks, caps)
        if resp is None:
            return False
        try:
            raw = base64.b64decode(resp, validate=True)
        except (ValueError, TypeError):
            self.peer.note("c%d: malformed %s response" % (self.cid, mech.decode()))
            self.line(cmd.tag + b" BAD invalid base64")
            return False
        if mech == b"OAUTHBEARER":
            m = re.match(rb"n,a=([^,]*),\x01(?:host=[^\x01]*\x01)?(?:port=\d+\x01)?"
                         rb"auth=Bearer ([^\x01]+)\x01\x01$", raw)
        else:
            m = re.match(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)\x01\x01$", raw)
        if not m:
            self.peer.note("c%d: malformed %s message" % (self.cid, mech.decode()))
            self.line(cmd.tag + b" BAD malformed message")
            return False
        cmd.bearer = (mech.decode(), m.group(1), m.group(2))
        mode = self.peer.cfg["bearer"]
        if mode == "accept":
            cmd.auth = ("bearer", m.group(1))
            return True
        challenge = base64.b64encode(b'{"status":"invalid_token","schemes":"bearer",'
                                     b'"scope":"imap"}')
        self.line(b"+ " + (b"!!not base64!!" if mode == "garbage" else challenge))
        cmd.sasl_reply = self.readline()
        if mode == "twice":
            self.line(b"+ " + challenge)
            cmd.sasl_reply2 = self.readline()
        self.line(cmd.tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.")
        return False

    def login_result(self, cmd, user, pw):
        users = self.peer.cfg["users"]
        if users.get(user) != pw:
            self.peer.note("c%d: login as %r refused" % (self.cid, user))
            return [], cmd.tag + b" NO [AUTHENTICATIONFAILED] Authentication failed." + CRLF, None
        self.authed = True
        self.peer.last_login = (user, pw)
        text = b"Logged in"
        if self.peer.cfg["ok_caps"]:
            text = b"[CAPABILITY " + " ".join(self.post_caps()).encode() + b"] " + text
        return [], cmd.tag + b" OK " + text + CRLF, None

    def post_caps(self):
        return [c for c in self.peer.cfg["caps"]
                if not c.upper().startswith("AUTH=") and c.upper() not in
                ("LOGINDISABLED", "SASL-IR", "STARTTLS", "LOGIN-REFERRALS")]

    def answer(self, cmd):
        """The normal answer: ([untagged chunk bytes], tagged line, after)."""
        t = cmd.tag
        ok = t + b" OK completed" + CRLF
        n = cmd.name
        if n == "CAPABILITY":
            caps = self.post_caps() if self.authed else self.peer.cfg["caps"]
            return [b"* CAPABILITY " + " ".join(caps).encode() + CRLF], ok, None
        if n == "NOOP" or n == "CHECK":
            return [], ok, None
        if n == "LOGOUT":
            return ([b"* BYE Logging out" + CRLF], t + b" OK Logout completed." + CRLF,
                    self._close_after)
        if n == "AUTHENTICATE" and cmd.auth[0] == "bearer":
            self.authed = True
            self.peer.last_login = (cmd.auth[1], None)
            text = b"Logged in"
            if self.peer.cfg["ok_caps"]:
                text = b"[CAPABILITY " + " ".join(self.post_caps()).encode() + b"] " + text
            return [], t + b" OK " + text + CRLF, None
        if n == "AUTHENTICATE":
            return self.login_result(cmd, *cmd.auth)
        if n == "STARTTLS":
            return [], t + b" NO STARTTLS not available here" + CRLF, None
        if n == "LOGIN":
            caps = [c.upper() for c in self.peer.cfg["caps"]]
            if "LOGINDISABLED" in caps:
                self.peer.note("c%d: LOGIN sent although LOGINDISABLED" % self.cid)
                return [], t + b" NO [PRIVACYREQUIRED] LOGIN disabled" + CRLF, None
            try:
                toks = _tokens(cmd.segments, cmd.literals)
                user, pw = toks[1], toks[2]
                if len(toks) != 3 or isinstance(user, list) or isinstance(pw, list):
                    raise ValueError("LOGIN takes two strings")
            except (ValueError, IndexError) as e:
                self.peer.note("c%d: malformed LOGIN: %s" % (self.cid, e))
                return [], t + b" BAD malformed LOGIN" + CRLF, None
            return self.login_result(cmd, user, pw)
        if not self.authed:
            return [], t + b" BAD not authenticated" + CRLF, None
        if n == "ID":
            return [b'* ID ("name" "imapfault")' + CRLF], ok, None
        if n in ("SELECT", "EXAMINE"):
            return self.select(cmd)
        if n in ("UNSELECT", "CLOSE"):
            self.selected = False
            return [], ok, None
        if not self.selected:
            return [], t + b" BAD no mailbox selected" + CRLF, None
        if n == "UID FETCH":
            return self.fetch(cmd)
        if n == "UID STORE":
            return self.store(cmd)
        if n == "UID EXPUNGE":
            if "UIDPLUS" not in [c.upper() for c in self.peer.cfg["caps"]]:
                return [], t + b" BAD unknown command (no UIDPLUS)" + CRLF, None
            return self.expunge(cmd, uid_set=cmd.segments[0].split(b" ")[2])
        if n == "EXPUNGE":
            return self.expunge(cmd, uid_set=None)
        if n in ("UID MOVE", "UID COPY"):
            if n == "UID MOVE" and "MOVE" not in [c.upper() for c in self.peer.cfg["caps"]]:
                return [], t + b" BAD unknown command (no MOVE)" + CRLF, None
            return self.move_copy(cmd, move=(n == "UID MOVE"))
        return [], t + b" BAD unknown command" + CRLF, None

    def _close_after(self):
        self.close()
        raise _Closed()

    def select(self, cmd):
        try:
            toks = _tokens(cmd.segments, cmd.literals)
            box = toks[1]
        except (ValueError, IndexError):
            return [], cmd.tag + b" BAD malformed SELECT" + CRLF, None
        if box.upper() != b"INBOX":
            self.selected = False
            return [], cmd.tag + b" NO [NONEXISTENT] Mailbox doesn't exist" + CRLF, None
        with self.peer.lock:
            n = len(self.peer.mailbox)
            nxt = max([m.uid for m in self.peer.mailbox] + [self.peer.uidnext - 1]) + 1
        self.selected = True
        chunks = [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
                  b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen "
                  b"\\Draft \\*)] Flags permitted.\r\n",
                  b"* %d EXISTS\r\n" % n,
                  b"* 0 RECENT\r\n",
                  b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % UIDVALIDITY,
                  b"* OK [UIDNEXT %d] Predicted next UID\r\n" % nxt]
        return chunks, cmd.tag + b" OK [READ-WRITE] Select completed." + CRLF, None

    def targets(self, cmd):
        """[(seq, Message)] named by the UID set of a UID command."""
        words = cmd.segments[0].split(b" ")
        with self.peer.lock:
            box = list(self.peer.mailbox)
        uids = parse_uid_set(words[2], [m.uid for m in box])
        return [(i + 1, m) for i, m in enumerate(box) if m.uid in uids]

    def fetch(self, cmd):
        chunks = []
        for seq, m in self.targets(cmd):
            chunks.append(self.fetch_chunk(cmd.key, seq, m, cmd))
        return chunks, cmd.tag + b" OK Fetch completed." + CRLF, None

    def part(self, key, m, cmd):
        """(item name, bytes) a body fetch returns."""
        if key == "FETCH_HEADER":
            return b"BODY[HEADER]", m.header()
        if key == "FETCH_TEXT":
            mo = re.search(rb"\[TEXT\]<(\d+)\.(\d+)>", cmd.segments[0], re.I)
            text = m.text()
            if not mo:
                return b"BODY[TEXT]", text
            o, ln = int(mo.group(1)), int(mo.group(2))
            return b"BODY[TEXT]<%d>" % o, text[o:o + ln]
        return b"BODY[]", m.data

    def fetch_chunk(self, key, seq, m, cmd):
        if key == "FETCH_LIST":
            return b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (seq, m.uid, len(m.data))
        item, data = self.part(key, m, cmd)
        return (b"* %d FETCH (UID %d %s {%d}\r\n" % (seq, m.uid, item, len(data))
                + data + b")\r\n")

    def body_fault(self, cmd, f):
        a = f.action
        targets = self.targets(cmd)
        if not targets or cmd.key == "FETCH_LIST":
            raise ValueError("%s needs a body fetch of an existing message" % a)
        seq, m = targets[0]
        item, data = self.part(cmd.key, m, cmd)
        ok = cmd.tag + b" OK Fetch completed." + CRLF
        if a == "drop_mid_literal":
            k = min(int(f.opts.get("k", len(data) // 2)), len(data))
            self.send(b"* %d FETCH (UID %d %s {%d}\r\n" % (seq, m.uid, item, len(data)))
            self.send(data[:k])
            time.sleep(0.05)        # let it arrive as data before the FIN
            self.close()
            raise _Closed()
        if a == "literal_size":
            size = f.opts.get("size")
            if size is None:
                size = len(data) + int(f.opts.get("delta", 0))
            self.send(b"* %d FETCH (UID %d %s {%d}\r\n" % (seq, m.uid, item, size))
            self.send(data + b")\r\n" + ok)
            if f.opts.get("after", "silence") == "silence":
                self.silent = True
            else:
                time.sleep(0.05)
                self.close()
                raise _Closed()
            return
        if a == "wrong_uid":
            other_uid = int(f.opts["uid"])
            with self.peer.lock:
                box = list(self.peer.mailbox)
            other = [(i + 1, x) for i, x in enumerate(box) if x.uid == other_uid]
            if not other:
                raise ValueError("wrong_uid: no message with UID %d" % other_uid)
            oseq, om = other[0]
            _, odata = self.part(cmd.key, om, cmd)
            if f.opts.get("uid_after"):
                self.send(b"* %d FETCH (%s {%d}\r\n" % (oseq, item, len(odata)) + odata
                          + b" UID %d)\r\n" % om.uid)
            else:
                self.send(b"* %d FETCH (UID %d %s {%d}\r\n" % (oseq, om.uid, item, len(odata))
                          + odata + b")\r\n")
            if f.opts.get("then_right"):
                self.send(self.fetch_chunk(cmd.key, seq, m, cmd))
            self.send(ok)
            return
        if a == "zero":
            form = f.opts.get("form", "literal")
            if form not in ZERO_FORMS:
                raise ValueError("zero: form must be one of %s" % ", ".join(ZERO_FORMS))
            value = ZERO_FORMS[form]
            self.send(b"* %d FETCH (UID %d %s%s)\r\n" % (
                seq, m.uid, item, b" " + value if value is not None else b"") + ok)
            return
        if a == "reshape":
            pre = _b(f.opts.get("prefix", b""))
            suf = _b(f.opts.get("suffix", b""))
            if f.opts.get("uid_after"):
                head = b"* %d FETCH (%s%s {%d}\r\n" % (seq, pre, item, len(data))
                suf = b" UID %d" % m.uid + suf
            else:
                head = b"* %d FETCH (%sUID %d %s {%d}\r\n" % (seq, pre, m.uid, item, len(data))
            self.send(head + data + suf + b")\r\n" + ok)
            return
        raise ValueError(a)

    def store(self, cmd):
        words = cmd.segments[0].split(b" ", 4)
        if len(words) < 5:
            return [], cmd.tag + b" BAD malformed STORE" + CRLF, None
        op = words[3].upper()
        flags = set(re.findall(rb"\\?[A-Za-z$]+", words[4]))
        chunks = []
        with self.peer.lock:
            for seq, m in self.targets(cmd):
                if op.startswith(b"+FLAGS"):
                    m.flags |= flags
                elif op.startswith(b"-FLAGS"):
                    m.flags -= flags
                else:
                    m.flags = set(flags)
                if not op.endswith(b".SILENT"):
                    chunks.append(b"* %d FETCH (UID %d FLAGS (%s))\r\n"
                                  % (seq, m.uid, b" ".join(sorted(m.flags))))
        return chunks, cmd.tag + b" OK Store completed." + CRLF, None

    def expunge(self, cmd, uid_set):
        chunks = []
        with self.peer.lock:
            box = self.peer.mailbox
            allowed = (set(parse_uid_set(uid_set, [m.uid for m in box]))
                       if uid_set is not None else None)
            i = 0
            while i < len(box):
                m = box[i]
                if b"\\Deleted" in m.flags and (allowed is None or m.uid in allowed):
                    chunks.append(b"* %d EXPUNGE\r\n" % (i + 1))
                    del box[i]
                else:
                    i += 1
        return chunks, cmd.tag + b" OK Expunge completed." + CRLF, None

    def move_copy(self, cmd, move):
        try:
            toks = _tokens(cmd.segments, cmd.literals)
            box = toks[3]
        except (ValueError, IndexError):
            return [], cmd.tag + b" BAD malformed command" + CRLF, None
        if box != b"Trash":
            return [], cmd.tag + b" NO [TRYCREATE] Mailbox doesn't exist" + CRLF, None
        chunks = []
        with self.peer.lock:
            targets = self.targets(cmd)
            src, dst = [], []
            for _, m in targets:
                src.append(m.uid)
                dst.append(self.peer.trash_uidnext)
                self.peer.trash.append(Message(self.peer.trash_uidnext, m.data))
                self.peer.trash_uidnext += 1
            if targets:
                chunks.append(b"* OK [COPYUID %d %s %s] Moved\r\n" % (
                    UIDVALIDITY + 1, b",".join(b"%d" % u for u in src),
                    b",".join(b"%d" % u for u in dst)))
            if move:
                for seq, m in sorted(targets, reverse=True):
                    chunks.append(b"* %d EXPUNGE\r\n" % seq)
                    self.peer.mailbox.remove(m)
        return chunks, cmd.tag + b" OK completed." + CRLF, None


# -- the server -------------------------------------------------------------------

class FaultPeer:
    def __init__(self, messages=None, caps=CAPS_FULL, users=None):
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.base_messages = messages or default_messages()
        self.default_users = users or {b"alice": b"Alice-pw-1"}
        self.lsock = None
        self.port = 0
        self.conns = []
        self.conn_seq = 0
        self.accepter = None
        self.reset(caps=caps)

    # -- control -------------------------------------------------------------
    def reset(self, caps=None, plan=(), users=None, greeting_caps=True,
              ok_caps=True, messages=None, bearer="accept"):
        """A fresh mailbox, an empty log and a new plan; connections still
        open from an earlier case are closed first."""
        self.close_connections()
        with self.lock:
            self.cfg = {
                "caps": list(caps if caps is not None else CAPS_FULL),
                "users": dict(users or self.default_users),
                "greeting_caps": greeting_caps,
                "ok_caps": ok_caps,
                "bearer": bearer,
            }
            msgs = messages or self.base_messages
            self.mailbox = [Message(u, d) for u, d in msgs]
            self.uidnext = max(u for u, _ in msgs) + 1 if msgs else 1
            self.trash = []
            self.trash_uidnext = 1
            self.plan = list(plan)
            self.counts = {}
            self.log = []
            self.notes = []
            self.accepted = 0
            self.last_login = None

    def start(self):
        self.listen()
        return self

    def listen(self):
        """Opens the listening socket (again, on the same port once known)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.settimeout(0.2)
        self.port = s.getsockname()[1]
        self.lsock = s
        self.accepter = threading.Thread(target=self._accept_loop, args=(s,),
                                         name="imapfault-accept", daemon=True)
        self.accepter.start()

    def refuse(self):
        """Closes the listening socket: connections are refused until
        listen() is called again."""
        s, self.lsock = self.lsock, None
        if s is not None:
            s.close()
        if self.accepter is not None:
            self.accepter.join(2)
            self.accepter = None

    def stop(self):
        self.stopping.set()
        self.refuse()
        self.close_connections()

    def close_connections(self, wait=2.0):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close()
        deadline = time.time() + wait
        for c in conns:
            c.join(max(0.0, deadline - time.time()))

    def _accept_loop(self, lsock):
        while not self.stopping.is_set() and self.lsock is lsock:
            try:
                sock, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conn_seq += 1
                self.accepted += 1
                c = Connection(self, sock, self.conn_seq)
                self.conns.append(c)
            c.start()

    def conn_done(self, c):
        with self.lock:
            if c in self.conns:
                self.conns.remove(c)

    # -- plan and records ------------------------------------------------------
    def take_fault(self, key, cid):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            for f in self.plan:
                if f.fired_conn is None and f.on == key and f.nth == self.counts[key]:
                    f.fired_conn = cid
                    self.notes.append("c%d: fault %r fired" % (cid, f))
                    return f
        return None

    def record(self, cmd):
        with self.lock:
            self.log.append(cmd)

    def note(self, text):
        with self.lock:
            self.notes.append(text)

    def expunge_seq(self, seq):
        with self.lock:
            if 1 <= seq <= len(self.mailbox):
                del self.mailbox[seq - 1]

    # -- queries --------------------------------------------------------------------
    def fired(self):
        with self.lock:
            return [f for f in self.plan if f.fired_conn is not None]

    def unfired(self):
        with self.lock:
            return [f for f in self.plan if f.fired_conn is None]

    def commands(self, *names):
        """Recorded commands, all or those whose name or key is in names."""
        with self.lock:
            return [c for c in self.log
                    if not names or c.name in names or c.key in names]

    def mutations(self):
        return self.commands(*MUTATING)

    def violations(self):
        """Protocol violations the peer noticed (literal sent early, SASL-IR
        or LITERAL+ used without being advertised, malformed commands...)."""
        bad = ("before the continuation", "without LITERAL+", "not advertised",
               "malformed", "although LOGINDISABLED", "bare LF", "peer error",
               "over ")
        with self.lock:
            return [n for n in self.notes if any(b in n for b in bad)]

    def state(self):
        """[(uid, sorted flags)] of the mailbox now."""
        with self.lock:
            return [(m.uid, sorted(f.decode() for f in m.flags)) for m in self.mailbox]

    def initial_state(self):
        return [(u, []) for u, _ in self.base_messages]

    def transcript(self, limit=20):
        """Short lines describing what the client sent (for diagnostics)."""
        with self.lock:
            lines = ["%r" % c for c in self.log[-limit:]]
        return lines


if __name__ == "__main__":
    # A manual check: python3 imapfault.py [port] and talk to it with nc.
    import sys
    peer = FaultPeer()
    if len(sys.argv) > 1:
        peer.port = int(sys.argv[1])
    peer.start()
    print("imapfault listening on 127.0.0.1:%d (user alice, password Alice-pw-1)"
          % peer.port, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        peer.stop()
