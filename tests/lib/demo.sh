#!/bin/bash
# popbridge demo: a private Dovecot with a few messages, popbridge in front.
#
#   make demo            (builds build/popbridge, then runs this)
#   POPBRIDGE=path tests/lib/demo.sh
#   DEMO_POP3_PORT=2110 tests/lib/demo.sh      (default: 1110 if free)
#
# popbridge runs in the foreground and logs to the terminal; Ctrl-C stops
# it, and the demo Dovecot and its temporary directory go with it.

if [ -z "${BASH_VERSION:-}" ]; then
	exec bash "$0" "$@"
fi
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=dovecot.sh
. "$HERE/dovecot.sh"

BIN=${POPBRIDGE:-$ROOT/build/popbridge}
if [ ! -x "$BIN" ]; then
	echo "demo: $BIN is missing; run 'make' first" >&2
	exit 1
fi

port_free() {
	python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

TMP=$(pb_mktemp_dir popbridge-demo) || exit 1
DIR=$TMP/dovecot
mkdir -p "$DIR"
cleanup() {
	trap - EXIT INT TERM
	dovecot_stop "$DIR"
	rm -rf "$TMP"
	echo "demo: stopped, cleaned up $TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DOVECOT_USERS='demo:demo' dovecot_start "$DIR" || exit 1
IMAP_PORT=$DOVECOT_IMAP_PORT

python3 "$HERE/corpus.py" --port "$IMAP_PORT" --user demo --password demo \
	--only plain,dot-lines,latin1-8bit,utf8-8bit,no-final-crlf,body-many-lines || exit 1

if [ -n "${DEMO_POP3_PORT:-}" ]; then
	PORT=$DEMO_POP3_PORT
elif port_free 1110; then
	PORT=1110
else
	PORT=$(pb_free_port)
fi

CONF=$TMP/popbridge.ini
mkdir -p "$TMP/state"
cat > "$CONF" <<EOF
[listen]
pop3 = 127.0.0.1:$PORT
pop3s =

[upstream]
host = 127.0.0.1
port = $IMAP_PORT
tls = none
timeout = 10

[state]
dir = $TMP/state

[limits]
auth_fail_delay = 0

[log]
level = debug
EOF

cat <<EOF

  popbridge demo
  --------------
  IMAP upstream : Dovecot on 127.0.0.1:$IMAP_PORT (user demo, password demo),
                  6 sample messages in INBOX
  POP3 (popbridge): 127.0.0.1:$PORT   config: $CONF

  Try:
    curl pop3://demo:demo@127.0.0.1:$PORT/            # LIST
    curl pop3://demo:demo@127.0.0.1:$PORT/1           # RETR 1
    curl -X UIDL pop3://demo:demo@127.0.0.1:$PORT/
    curl -X 'TOP 2 3' pop3://demo:demo@127.0.0.1:$PORT/
    python3 -c 'import poplib; p = poplib.POP3("127.0.0.1", $PORT); p.user("demo"); p.pass_("demo"); print(p.stat()); p.quit()'
    mpop --host=127.0.0.1 --port=$PORT --auth=user --user=demo --passwordeval='echo demo' \\
         --tls=off --keep=on --uidls-file=$TMP/uidls --delivery=mbox,$TMP/mbox

  More mail (arrives in the next POP3 session):
    python3 $HERE/corpus.py --port $IMAP_PORT --user demo --password demo --generate 3 --size 2000

  Thunderbird / any mail client: incoming server POP3, host 127.0.0.1,
  port $PORT, connection security None, authentication "Normal password",
  user name demo, password demo. Keep "Leave messages on server" on to keep
  the demo mail (it lives on the IMAP server; POP3 DELE expunges it there).

  Ctrl-C stops popbridge and the demo Dovecot.

EOF

# In the foreground: Ctrl-C reaches popbridge (SIGINT = clean stop), then
# the EXIT trap stops Dovecot.
"$BIN" -c "$CONF"
rc=$?
echo "demo: popbridge exited with status $rc"
exit "$rc"
