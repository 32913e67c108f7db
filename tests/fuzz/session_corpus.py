#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_session into corpus/fuzz_session/.

Each seed is the flags byte (see fuzz_session.c) and the IMAP server's side
of one session, one chunk per command popbridge sends for the harness's
POP3 script, joined by the separator. "T " at a line start stands for the
command's tag. Run it again after changing a transcript:

    python3 tests/fuzz/session_corpus.py

Files named crash-* are not written here: they are reproducers, kept by
hand until the bug is fixed.
"""
import os

SEP = b"~~~\n"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_session")

# Flags byte bits (fuzz_session.c).
TRASH, SEEN, KEEP = 1, 2, 3
MARK_SEEN = 1 << 2
JUNK = 1 << 3
SINCE = 1 << 4
NO_AHEAD = 1 << 5
LOCKSTEP = 1 << 6
AUTH_PLAIN = 1 << 7


def crlf(s):
    return s.replace("\n", "\r\n").encode()


def lit(data):
    return b"{%d}\r\n" % len(data) + data


def quoted(data):
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class Msg:
    def __init__(self, uid, header, text):
        self.uid = uid
        self.header = crlf(header)
        self.text = text if isinstance(text, bytes) else crlf(text)

    @property
    def whole(self):
        return self.header + self.text


M1 = Msg(1, "From: Alice <alice@example.com>\n"
            "To: bob@example.com\n"
            "Subject: Hello\n"
            "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
            "Message-ID: <1@example.com>\n"
            "\n",
         b"Hi Bob,\r\n.\r\n..dot-stuffed?\r\nbare LF\nline {5} with \"quotes\" ) (\r\n"
         b"last line without CRLF")
M2 = Msg(2, "From: Carol <carol@example.net>\n"
            "Subject: =?UTF-8?Q?caf=C3=A9?=\n"
            "\n",
         "Short.\n")
M3 = Msg(3, "Subject: three\n\n", "3\n")
MSGS = [M1, M2, M3]


def fetch(seq, uid, item, value, uid_first=True):
    """One FETCH response; value is the encoded body (literal, quoted,
    NIL) or None for an item without a value."""
    v = b"" if value is None else b" " + value
    if uid_first:
        return b"* %d FETCH (UID %d %s%s)\r\n" % (seq, uid, item, v)
    return b"* %d FETCH (%s%s UID %d)\r\n" % (seq, item, v, uid)


def ok(text="Completed"):
    return crlf("T OK %s\n" % text)


DOVECOT_CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT "
                "SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND URL-PARTIAL "
                "CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED "
                "I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
                "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY "
                "PREVIEW=FUZZY LITERAL+ NOTIFY SPECIAL-USE")


def dovecot_login():
    return [
        crlf("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE "
             "IDLE LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\n"),
        crlf("T OK [CAPABILITY %s] Logged in\n" % DOVECOT_CAPS),
        crlf('* ID ("name" "Dovecot")\nT OK ID completed (0.001 + 0.000 '
             'secs).\n'),
    ]


def dovecot_select(msgs, validity=1700000000, name="INBOX"):
    nxt = max([m.uid for m in msgs], default=0) + 1
    return crlf(
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\n"
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen "
        "\\Draft \\*)] Flags permitted.\n"
        "* %d EXISTS\n"
        "* 0 RECENT\n"
        "* OK [UIDVALIDITY %d] UIDs valid\n"
        "* OK [UIDNEXT %d] Predicted next UID\n"
        "T OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\n"
        % (len(msgs), validity, nxt))


def sizes(msgs, uid_first=True):
    out = b""
    for i, m in enumerate(msgs, 1):
        if uid_first:
            out += b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (
                i, m.uid, len(m.whole))
        else:
            out += b"* %d FETCH (RFC822.SIZE %d UID %d)\r\n" % (
                i, len(m.whole), m.uid)
    return out + ok("Fetch completed (0.001 + 0.000 secs).")


def whole(seq, m, enc=lit, **kw):
    return fetch(seq, m.uid, b"BODY[]", enc(m.whole), **kw) + ok(
        "Fetch completed.")


def header(seq, m, enc=lit, **kw):
    return fetch(seq, m.uid, b"BODY[HEADER]", enc(m.header), **kw) + ok(
        "Fetch completed.")


def text(seq, m, enc=lit, **kw):
    return fetch(seq, m.uid, b"BODY[TEXT]<0>", enc(m.text), **kw) + ok(
        "Fetch completed.")


def logout():
    return crlf("* BYE Logging out\nT OK Logout completed (0.001 + 0.000 "
                "secs).\n")


def gone(enc):
    """Whether popbridge takes the answer as "message no longer there"."""
    return enc in (nil, no_value)


def transactions(msgs=MSGS, enc_whole=lit, enc_header=lit, enc_text=lit,
                 ahead=True, reselect=None, **kw):
    """The replies to RETR 1, TOP 1 0, TOP 1 3, TOP 2 99999999, RETR 2:
    a read-ahead of the next message follows each RETR that worked, and
    TOP asks for the text only after a header. reselect answers the
    SELECT that comes first when the last folder listed was another."""
    m1, m2 = msgs[0], msgs[1]
    out = [reselect] if reselect is not None else []
    out.append(whole(1, m1, enc_whole, **kw))		# RETR 1
    if ahead and not gone(enc_whole):
        out.append(whole(2, m2, enc_whole, **kw))	# read away
    out.append(header(1, m1, enc_header, **kw))		# TOP 1 0
    for seq, m in ((1, m1), (2, m2)):			# TOP 1 3, TOP 2 ...
        out.append(header(seq, m, enc_header, **kw))
        if not gone(enc_header):
            out.append(text(seq, m, enc_text, **kw))
    out.append(whole(2, m2, enc_whole, **kw))		# RETR 2
    if ahead and not gone(enc_whole) and len(msgs) > 2:
        out.append(whole(3, msgs[2], enc_whole, **kw))
    return out


def expunge_quit():
    return [ok("Store completed."),
            crlf("* 1 EXPUNGE\nT OK Expunge completed.\n"), logout()]


def dovecot(**kw):
    return (dovecot_login() + [dovecot_select(MSGS), sizes(MSGS)] +
            transactions(**kw) + expunge_quit())


CYRUS_CAPS = ("IMAP4rev1 LITERAL+ ID ENABLE ACL RIGHTS=kxten QUOTA "
              "MAILBOX-REFERRALS NAMESPACE UIDPLUS NO_ATOMIC_RENAME UNSELECT "
              "CHILDREN MULTIAPPEND BINARY CATENATE CONDSTORE ESEARCH SEARCH=FUZZY "
              "SORT SORT=MODSEQ SORT=DISPLAY SORT=UID THREAD=ORDEREDSUBJECT "
              "THREAD=REFERENCES ANNOTATEMORE ANNOTATE-EXPERIMENT-1 METADATA "
              "LIST-EXTENDED LIST-STATUS LIST-MYRIGHTS LIST-METADATA WITHIN "
              "QRESYNC SCAN XLIST XMOVE MOVE SPECIAL-USE CREATE-SPECIAL-USE "
              "DIGEST=SHA1 X-REPLICATION URLAUTH URLAUTH=BINARY LOGINDISABLED "
              "COMPRESS=DEFLATE X-QUOTA=STORAGE X-QUOTA=MESSAGE IDLE")


def cyrus_login():
    # No capabilities in the greeting: popbridge asks. No SASL-IR: the
    # PLAIN response goes after a continuation request.
    return [
        crlf("* OK mail.example.org Cyrus IMAP 3.6.1-Debian-3.6.1-4 server "
             "ready\n"),
        crlf("* CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN "
             "AUTH=LOGIN SASL-IR UIDPLUS MOVE\nT OK Completed\n")
        .replace(b" SASL-IR", b""),
        b"+ \r\n",
        crlf("T OK [CAPABILITY %s] Success (no protection) "
             "SESSIONID=<mail.example.org-12345-1700000000-1-1234567890>\n"
             % CYRUS_CAPS),
        crlf('* ID ("name" "Cyrus IMAPD" "version" "3.6.1-Debian" '
             '"vendor" "Project Cyrus" "support-url" '
             '"https://www.cyrusimap.org")\nT OK Completed\n'),
    ]


def cyrus_select(msgs, validity=1612345678):
    nxt = max([m.uid for m in msgs], default=0) + 1
    return crlf(
        "* %d EXISTS\n"
        "* 0 RECENT\n"
        "* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)\n"
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted "
        "\\Seen \\*)] Ok\n"
        "* OK [UIDVALIDITY %d] Ok\n"
        "* OK [UIDNEXT %d] Ok\n"
        "* OK [HIGHESTMODSEQ 17] Ok\n"
        "* OK [URLMECH INTERNAL] Ok\n"
        "* OK [ANNOTATIONS 65536] Ok\n"
        "T OK [READ-WRITE] Completed\n" % (len(msgs), validity, nxt))


def write(name, flags, chunks):
    data = bytes([flags]) + SEP.join(chunks)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def nil(_):
    return b"NIL"


def empty_quoted(_):
    return b'""'


def empty_literal(_):
    return b"{0}\r\n"


def no_value(_):
    return None


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if not f.startswith("crash-"):
            os.unlink(os.path.join(OUT, f))

    # Dovecot: literals, in order; pipelined and in lockstep.
    write("dovecot-literals", 0, dovecot())
    write("dovecot-lockstep", LOCKSTEP, dovecot())
    write("dovecot-auth-plain-no-ahead", AUTH_PLAIN | NO_AHEAD,
          dovecot(ahead=False))
    # UID after the body: streamed before it is verified.
    write("dovecot-uid-last", LOCKSTEP, dovecot(uid_first=False))

    # Cyrus: CAPABILITY asked, AUTHENTICATE with a continuation, FETCH
    # items in Cyrus's order, and NIL for the text past its end.
    chunks = (cyrus_login() + [cyrus_select(MSGS), sizes(MSGS, False)] +
              transactions(enc_text=nil, uid_first=False) + expunge_quit())
    write("cyrus-nil-text", LOCKSTEP, chunks)

    # Zero-length bodies where the transfer has not started yet (RETR and
    # the header of TOP): "", {0}, NIL and an item without a value.
    for name, enc in (("empty-quoted", empty_quoted),
                      ("empty-literal", empty_literal),
                      ("empty-nil", nil), ("empty-no-value", no_value)):
        write("dovecot-%s" % name, LOCKSTEP,
              dovecot(enc_whole=enc, enc_header=enc))
    # The text of a partial fetch as {0} and NIL after a header.
    write("dovecot-text-empty-literal", LOCKSTEP,
          dovecot(enc_text=empty_literal))
    write("dovecot-text-nil", 0, dovecot(enc_text=nil))
    # Message 6 of a larger mailbox, Cyrus style: short bodies as quoted
    # strings, and an unsolicited FETCH of another message's empty text
    # in the middle of a partial fetch.
    many = [Msg(u, "Subject: m%d\n\n" % u, b"body %d" % u)
            for u in range(1, 7)]
    six = (cyrus_login() + [cyrus_select(many), sizes(many, False),
           whole(1, many[0]), whole(2, many[1]),
           header(1, many[0]), header(1, many[0]),
           fetch(6, 6, b"BODY[TEXT]<0>", b'""') +
           text(1, many[0], quoted),
           header(2, many[1]), text(2, many[1], quoted),
           whole(2, many[1]), whole(3, many[2])] + expunge_quit())
    write("cyrus-six-messages", LOCKSTEP, six)

    # Without UIDPLUS expunge falls back to MOVE; LOGIN instead of PLAIN.
    login = [crlf("* OK [CAPABILITY IMAP4rev1 LITERAL+ MOVE] ready\n"),
             ok("LOGIN completed"),
             crlf("* CAPABILITY IMAP4rev1 MOVE IDLE\nT OK done\n")]
    write("login-move-fallback", 0,
          login + [dovecot_select(MSGS), sizes(MSGS)] + transactions() +
          [crlf("* OK [COPYUID 9 1 1] Moved\n* 1 EXPUNGE\nT OK Move "
                "completed.\n"), logout()])

    # on_delete = trash with COPY (no MOVE), mark_seen: COPY, STORE,
    # EXPUNGE, then \Seen for message 2.
    caps = DOVECOT_CAPS.replace(" MOVE", "")
    login = dovecot_login()
    login[1] = crlf("T OK [CAPABILITY %s] Logged in\n" % caps)
    write("trash-copy-mark-seen", TRASH | MARK_SEEN,
          login + [dovecot_select(MSGS), sizes(MSGS)] + transactions() +
          [crlf("T OK [COPYUID 7 1 3] Copy completed.\n"),
           ok("Store completed."),
           crlf("* 1 EXPUNGE\nT OK Expunge completed.\n"),
           ok("Store completed."), logout()])

    # Two folders, since a date: SEARCH in each, Junk with one message;
    # the first fetch selects INBOX again.
    junk = [Msg(5, "Subject: spam\n\n", "Buy now\n")]
    write("junk-since", JUNK | SINCE | SEEN | LOCKSTEP,
          dovecot_login() +
          [dovecot_select(MSGS), crlf("* SEARCH 1 2 3\nT OK Search done\n"),
           sizes(MSGS), dovecot_select(junk, 42, "Junk"),
           crlf("* SEARCH 5\nT OK Search done\n"), sizes(junk)] +
          transactions(reselect=dovecot_select(MSGS)) +
          [ok("Store completed."), logout()])
    write("junk-missing", JUNK | KEEP,
          dovecot_login() +
          [dovecot_select(MSGS), sizes(MSGS),
           crlf("T NO Mailbox doesn't exist: Junk\n")] +
          transactions(reselect=dovecot_select(MSGS)) + [logout()])

    # Failures: a message gone (EXPUNGEISSUED), another message's data,
    # BYE in the middle, a malformed response.
    write("fetch-gone-wrong-uid", LOCKSTEP,
          dovecot_login() + [dovecot_select(MSGS), sizes(MSGS),
           crlf("T NO [EXPUNGEISSUED] Some messages were expunged\n"),
           header(1, M1), header(1, M1),
           fetch(1, 9, b"BODY[TEXT]<0>", lit(M1.text), uid_first=False) +
           ok()])
    write("bye-mid-fetch", 0,
          dovecot_login() + [dovecot_select(MSGS), sizes(MSGS),
           b"* 1 FETCH (UID 1 BODY[] {400}\r\n" + M1.whole[:100],
           crlf("* BYE Server shutting down\n")])
    write("login-failures", AUTH_PLAIN | LOCKSTEP,
          [crlf("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\n"),
           crlf("T NO [AUTHENTICATIONFAILED] Authentication failed.\n")])
    write("select-bad", 0,
          dovecot_login() +
          [crlf("* OK [UIDVALIDITY x] bad\n* 4294967296 EXISTS\nT BAD "
                "Error in IMAP command SELECT\n")])


if __name__ == "__main__":
    main()
