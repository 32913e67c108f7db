#!/bin/bash
# popbridge integration suite.
#
#   POPBRIDGE=/abs/path/build/asan/popbridge tests/integration/run.sh
#   (make integration does this)
#
# Starts a private Dovecot (IMAP on a free 127.0.0.1 port), appends the test
# corpus (tests/lib/corpus.py), starts "$POPBRIDGE -c CONF" in front of it
# and runs the cases in tests/integration/test_*.py plus real clients
# (curl, fetchmail, mpop). Prints one "ok - NAME" / "not ok - NAME" line per
# case and, last, exactly one line "N passed, M failed". Exit status 1 when
# anything failed.
#
# Environment:
#   POPBRIDGE     the binary under test (required for the default target)
#   KEEP_TMP=1    keep the temporary directory (logs, configs, mail) at the end
#   ONLY="pop3 clients delete concurrency neomutt upstream"
#                 run only these groups (default: all; "servers" runs the
#                 core cases against Cyrus, Mailutils and Dovecot)
#   POP3_TARGET   harness validation only:
#                 "dovecot"   run the cases against Dovecot's own POP3 server
#                             instead of popbridge (needs dovecot-pop3d);
#                             some cases fail there by design (see README)
#                 "reference" run them against tests/lib/refpop3.py, a small
#                             Python model of popbridge: everything passes;
#                             REFPOP3_BUG=name makes it misbehave on purpose
#
# Everything listens on 127.0.0.1 on ports the kernel hands out; every
# process started here is stopped on exit, Ctrl-C or failure.

if [ -z "${BASH_VERSION:-}" ]; then
	exec bash "$0" "$@"
fi
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=$ROOT/tests/lib
# shellcheck source=../lib/dovecot.sh
. "$LIB/dovecot.sh"

TARGET=${POP3_TARGET:-popbridge}
ONLY=${ONLY:-pop3 clients delete concurrency faults tls policies hostile proxy daemon neomutt servers window upstream accounts oauth}
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1
SCRIPT_TIMEOUT=${SCRIPT_TIMEOUT:-240}

PASS=0
FAIL=0
pass() { PASS=$((PASS + 1)); echo "ok - $1"; }
fail() {
	FAIL=$((FAIL + 1))
	echo "not ok - $1"
	shift
	local l
	for l in "$@"; do printf '    %s\n' "$l"; done
}
note() { echo "# $*"; }
summary() { echo "$PASS passed, $FAIL failed"; }

case $TARGET in
popbridge)
	if [ -z "${POPBRIDGE:-}" ] || [ ! -x "$POPBRIDGE" ]; then
		echo "run.sh: POPBRIDGE must name the popbridge binary (got '${POPBRIDGE:-}')" >&2
		FAIL=1
		summary
		exit 1
	fi
	;;
dovecot) ;;
reference)
	POPBRIDGE=$LIB/refpop3.py
	;;
*)
	echo "run.sh: unknown POP3_TARGET '$TARGET'" >&2
	exit 2
	;;
esac
for tool in python3 curl fetchmail mpop timeout /usr/sbin/dovecot; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "run.sh: $tool is missing (make deps installs it)" >&2
		FAIL=1
		summary
		exit 1
	fi
done

TMP=$(pb_mktemp_dir popbridge-it) || exit 1
DA=$TMP/dovecot-a
DB=$TMP/dovecot-b
mkdir -p "$DA" "$DB"
PB_PIDS=""
CHILD=""
CLEANED=0

cleanup() {
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	local pid
	if [ -n "$CHILD" ]; then
		# a case script still running (interrupted): its whole subtree
		for pid in $(_pb_descendants "$CHILD") $CHILD; do
			kill -TERM "$pid" 2>/dev/null
		done
		{ wait "$CHILD"; } 2>/dev/null
	fi
	for pid in $PB_PIDS; do
		pb_stop_pid "$pid" 5
	done
	dovecot_stop "$DA"
	dovecot_stop "$DB"
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "# kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'fail "interrupted (SIGINT)"; summary; exit 130' INT
trap 'fail "terminated (SIGTERM)"; summary; exit 143' TERM

# ---------------------------------------------------------------------------
# start_pop3 NAME IMAPPORT: popbridge in front of 127.0.0.1:IMAPPORT.
# Sets PB_PORT, PB_PID, PB_LOG.
start_pop3() {
	local name=$1 imap_port=$2 conf
	PB_PORT=$(pb_free_port) || return 1
	conf=$TMP/$name.ini
	PB_LOG=$TMP/$name.log
	mkdir -p "$TMP/$name-state"
	cat > "$conf" <<EOF
[listen]
pop3 = 127.0.0.1:$PB_PORT
pop3s =

[upstream]
host = 127.0.0.1
port = $imap_port
tls = none
timeout = 10

[state]
dir = $TMP/$name-state

[limits]
auth_fail_delay = 0

[log]
level = debug
EOF
	"$POPBRIDGE" -c "$conf" > "$PB_LOG" 2>&1 &
	PB_PID=$!
	PB_PIDS="$PB_PIDS $PB_PID"
	pb_wait_port "$PB_PORT" 30 "$PB_PID"
}

# run_py NAME SCRIPT [ARGS...]: runs one case script, shows its lines as they
# come and adds them to the totals. Needs POP3_PORT, IMAP_PORT, DOVECOT_DIR.
run_py() {
	local name=$1 script=$2 out rc p f
	shift 2
	out=$TMP/out.$name
	mkdir -p "$TMP/work.$name"
	# In the background, so that the INT/TERM traps run at once (bash
	# defers traps while a foreground command runs); cleanup kills it.
	(
		TEST_TMP=$TMP/work.$name TARGET=$TARGET \
			timeout -k 10 "$SCRIPT_TIMEOUT" \
			python3 "$HERE/$script" "$@" 2>&1 | tee "$out"
		exit "${PIPESTATUS[0]}"
	) &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=""
	p=$(grep -c '^ok - ' "$out")
	f=$(grep -c '^not ok - ' "$out")
	PASS=$((PASS + p))
	FAIL=$((FAIL + f))
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		fail "$name: $script timed out after ${SCRIPT_TIMEOUT}s"
	elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		fail "$name: $script exited with status $rc" "$(tail -n 5 "$out")"
	fi
}

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

append_corpus() { # dir user [--only names]
	local dir=$1 user=$2 pw
	shift 2
	pw=$(python3 -c 'import sys
for l in open(sys.argv[1], encoding="utf-8"):
    u, _, p = l.rstrip("\n").partition(":")
    if u == sys.argv[2]:
        print(p[len("{PLAIN}"):] if p.startswith("{PLAIN}") else p)' "$dir/users" "$user")
	timeout 120 python3 "$LIB/corpus.py" --port "$(. "$dir/ports"; echo "$DOVECOT_IMAP_PORT")" \
		--user "$user" --password "$pw" "$@"
}

# ---------------------------------------------------------------------------
note "target: $TARGET${POPBRIDGE:+ ($POPBRIDGE)}; temp dir $TMP"
[ "$TARGET" = dovecot ] && export DOVECOT_POP3=1

if ! dovecot_start "$DA" 2> "$TMP/dovecot-a.err"; then
	fail "Dovecot starts" "$(cat "$TMP/dovecot-a.err")"
	summary
	exit 1
fi
IMAP_A=$DOVECOT_IMAP_PORT
POP3_DOVECOT_A=$DOVECOT_POP3_PORT
note "dovecot A: imap 127.0.0.1:$IMAP_A"

if ! { append_corpus "$DA" alice && append_corpus "$DA" erin &&
	append_corpus "$DA" quote --only plain; } > "$TMP/corpus.log" 2>&1; then
	fail "corpus appended over IMAP" "$(tail -n 5 "$TMP/corpus.log")"
	summary
	exit 1
fi

PB_A_PID=""
if [ "$TARGET" = dovecot ]; then
	POP3_A=$POP3_DOVECOT_A
else
	if start_pop3 popbridge-a "$IMAP_A"; then
		pass "popbridge starts and greets on 127.0.0.1:$PB_PORT"
	else
		fail "popbridge starts and greets on 127.0.0.1:$PB_PORT" \
			"$(tail -n 15 "$PB_LOG")"
	fi
	POP3_A=$PB_PORT
	PB_A_PID=$PB_PID
	PB_A_LOG=$PB_LOG
fi

export POP3_PORT=$POP3_A IMAP_PORT=$IMAP_A DOVECOT_DIR=$DA
want pop3 && run_py pop3 test_pop3.py
want clients && run_py clients test_clients.py
want delete && run_py delete test_delete.py
want concurrency && run_py concurrency test_concurrency.py
# Faults a real server will not produce on demand: a scripted IMAP peer
# (tests/lib/imapfault.py) with its own popbridge.
want faults && run_py faults test_faults.py
# TLS on both sides: a test CA, Dovecot with imaps and STARTTLS, real clients.
want tls && run_py tls test_tls.py
# Maildrop policies and the UID map: folders, since, on_delete, mark_seen,
# missing UIDPLUS/MOVE, a real UIDVALIDITY change, kill -9 crash safety.
want policies && run_py policies test_policies.py
# Limits and hostile clients (floods, garbage, never-reading, slowloris).
want hostile && run_py hostile test_hostile.py
# PROXY protocol v1/v2 from trusted proxies, and the session end log line.
want proxy && run_py proxy test_proxy.py
# The daemon: root and [process] user, --check-config, SIGHUP, SIGTERM.
want daemon && run_py daemon test_daemon.py
# Real NeoMutt (under tmux) with pop_last = yes: LAST, its own Dovecot and
# popbridge; fetching twice downloads nothing the second time.
want neomutt && run_py neomutt test_neomutt.py
# The core cases against other IMAP servers: Dovecot, Cyrus IMAP (also
# without UIDPLUS and MOVE) and GNU Mailutils imap4d, each a private
# instance (tests/lib/imapservers.py; tests/lib/servers-deps.sh installs
# them). Four servers side by side: a longer limit than the other scripts.
want servers && SCRIPT_TIMEOUT=${SERVERS_TIMEOUT:-420} run_py servers test_servers.py
# The fetch window over a slow link: its own Dovecot behind the latency
# relay (tests/bench/latrelay.c), byte-exact transfers with the window
# open, aborts, upstream cuts and expunges inside it, bounded memory.
want window && run_py window test_window.py
want accounts && run_py accounts test_accounts.py   # accounts, device passwords (own Dovecots)
# OAuth2 (issue 15), against a real oidc-provider (npm) and bearer-only
# Dovecots: the token code driven by build/asan/oauth-driver, then OAuth2
# accounts end to end (popbridge authorize, POP3 clients, refresh,
# failures of the token endpoint and of the IMAP login).
want oauth && run_py oauth test_oauth.py
# popbridge authorize on its own: device and loopback flows, the refresh
# token sealed into the account file.
want oauth && run_py authorize test_authorize.py
want oauth && run_py oauth-login test_oauth_login.py

# ---------------------------------------------------------------------------
# The upstream dies: a second Dovecot and a second popbridge, so that the
# crash disturbs nothing else.
if want upstream; then
	if ! dovecot_start "$DB" 2> "$TMP/dovecot-b.err"; then
		fail "second Dovecot starts" "$(cat "$TMP/dovecot-b.err")"
	elif ! { append_corpus "$DB" zed --only plain,dot-lines,latin1-8bit,no-final-crlf,body-dot &&
		append_corpus "$DB" zed --generate 1 --size 24000000; } > "$TMP/corpus-b.log" 2>&1; then
		fail "corpus appended to the second Dovecot" "$(tail -n 5 "$TMP/corpus-b.log")"
	else
		IMAP_B=$DOVECOT_IMAP_PORT
		PB_B_PID=""
		if [ "$TARGET" = dovecot ]; then
			POP3_B=$DOVECOT_POP3_PORT
		else
			if ! start_pop3 popbridge-b "$IMAP_B"; then
				fail "second popbridge starts" "$(tail -n 15 "$PB_LOG")"
			fi
			POP3_B=$PB_PORT
			PB_B_PID=$PB_PID
			PB_B_LOG=$PB_LOG
		fi
		POP3_PORT=$POP3_B IMAP_PORT=$IMAP_B DOVECOT_DIR=$DB \
			run_py upstream-kill test_upstream.py kill "$TMP/upstream-state.json"
		# test_upstream.py SIGKILLed that Dovecot; bring it back, same ports.
		if dovecot_start "$DB" 2> "$TMP/dovecot-b2.err"; then
			POP3_PORT=$POP3_B IMAP_PORT=$IMAP_B DOVECOT_DIR=$DB \
				run_py upstream-verify test_upstream.py verify "$TMP/upstream-state.json"
		else
			fail "second Dovecot restarts after the crash" "$(cat "$TMP/dovecot-b2.err")"
		fi
	fi
fi

# ---------------------------------------------------------------------------
# popbridge itself: still up, no secrets in its debug log, no sanitizer
# reports, exit status 0 on SIGTERM.
if [ "$TARGET" != dovecot ]; then
	logs="$PB_A_LOG ${PB_B_LOG:-}"
	if pb_alive "$PB_A_PID"; then
		pass "popbridge is still running after the cases"
	else
		fail "popbridge is still running after the cases" "$(tail -n 15 "$PB_A_LOG")"
	fi
	for pid in $PB_A_PID ${PB_B_PID:-}; do
		if ! pb_alive "$pid"; then
			continue
		fi
		kill -TERM "$pid"
		rc=""
		for i in $(seq 1 400); do
			pb_alive "$pid" || break
			sleep 0.1
		done
		if pb_alive "$pid"; then
			fail "popbridge (pid $pid) stops within 40 s of SIGTERM"
			kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
		else
			wait "$pid"
			rc=$?
			if [ "$rc" = 0 ]; then
				pass "popbridge (pid $pid) exits 0 on SIGTERM"
			else
				fail "popbridge (pid $pid) exits 0 on SIGTERM" "exit status $rc"
			fi
		fi
	done
	# shellcheck disable=SC2086
	san=$(python3 "$LIB/pbtest.py" sanitizer $logs | head -n 8)
	if [ -z "$san" ]; then
		pass "no sanitizer reports in popbridge's logs"
	else
		fail "no sanitizer reports in popbridge's logs" "$san"
	fi
	# Secrets: every password in clear, in IMAP-quoted form, and the AUTH
	# PLAIN tokens the cases sent.
	# shellcheck disable=SC2086
	leaks=$(python3 "$LIB/pbtest.py" leaks "$DA/users" $logs)
	if [ -z "$leaks" ]; then
		pass "no passwords or AUTH tokens in popbridge's debug logs"
	else
		fail "no passwords or AUTH tokens in popbridge's debug logs" "$leaks"
	fi
	if [ "$FAIL" != 0 ]; then
		note "last lines of $PB_A_LOG:"
		tail -n 25 "$PB_A_LOG" 2>/dev/null | sed 's/^/#   /'
		[ "${KEEP_TMP:-0}" = 1 ] || note "run with KEEP_TMP=1 to keep the logs and configs"
	fi
fi

summary
[ "$FAIL" = 0 ]
