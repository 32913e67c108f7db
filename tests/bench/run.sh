#!/bin/bash
# popbridge benchmarks (make bench; not part of make check).
#
#   POPBRIDGE=/abs/path/build/popbridge bash tests/bench/run.sh
#
# Starts a private Dovecot (tests/lib/dovecot.sh) with a generated corpus
# written straight into its maildirs, popbridge (the optimized build) in
# front of it, and measures, each side by side in one run:
#
#   1. RETR of 200 x 1 MB messages through popbridge vs. UID FETCH
#      BODY.PEEK[] of the same messages straight over IMAP        ratio <= 1.15
#   2. login, STAT, UIDL on a 10,000-message mailbox vs. IMAP LOGIN,
#      SELECT, UID FETCH 1:* (UID RFC822.SIZE)                     ratio <= 1.2
#   3. 1 and 2 through Dovecot's own POP3 server over imapc (a second
#      Dovecot whose mail_location is imapc: pointing at the first), when
#      dovecot-pop3d is installed                                 (reference)
#   4. 1,000 and 10,000 concurrent idle POP3 sessions: popbridge's RSS per
#      session                                                    <= 50 KB
#   5. popbridge's peak RSS while retrieving one 50 MB message vs. one 5 KB
#      message (and a 50 MB message read slowly)                  within 1 MB
#   6. figure 1 with TLS on both sides (pop3s, imaps)             ratio <= 1.15
#   7. the server a round trip away: tests/bench/latrelay.c between
#      popbridge and Dovecot delays each direction by 20 ms and by 50 ms
#      (the direct IMAP client goes through the same relay); popbridge
#      (a) PASS -> +OK in round trips                             <= 3 RTT
#      (b) RETR 1..N one at a time and (c) all RETRs in one write, for
#          200 x 20 KB and 20 x 1 MB, vs LOGIN + SELECT +
#          UID FETCH 1:* BODY.PEEK[] (each timed from connect to the last
#          byte, login included)                                  ratio <= 2.0
#      (d) TOP n 0 of every message in one write vs
#          UID FETCH 1:* BODY.PEEK[HEADER]                        ratio <= 2.0
#      (e) the same through Dovecot POP3 over imapc (through the relay),
#          when dovecot-pop3d is installed                        (reference)
#
# The client is tests/bench/pbbench.c (one program, one I/O layer for both
# protocols), built here with gcc -O2. Each timing is the median of
# BENCH_REPS runs (default 11) after one warm-up run per side; the sides
# take turns within every repetition, and a ratio is the median of the
# per-repetition ratios (each popbridge run over the direct run just before
# it, so that the machine's drifting speed cancels). Prints a table and one
# JSON line per row,
# and exits 0 even when a target is missed (the table says MISSED).
#
# Environment:
#   POPBRIDGE      the binary (default: build/popbridge)
#   BENCH_REPS     repetitions per timing (default 11)
#   BENCH_ONLY     figures to run, e.g. "1 2" (default "1 2 3 4 5 6 7")
#   BENCH_REPS7    repetitions per figure 7 timing (default 3: without a
#                  fetch window a run at 2 x 50 ms takes ~20 s); no warm-up
#                  runs there but one login per side and mailbox
#   BENCH_REF7     of those, how many also run Dovecot POP3 (default 1)
#   BENCH_DELAYS7  one-way delays for figure 7, ms (default "20 50")
#   BENCH_READ_AHEAD  popbridge's [upstream] read_ahead for figure 7, MB
#                  (default: popbridge's own default)
#   BENCH_IDLE     session counts for figure 4 (default "1000 10000")
#   BENCH_NICE     niceness for everything the bench starts (default -10
#                  as root, so that other jobs on the machine disturb the
#                  timings less; 0 to leave it)
#   BENCH_TIMEOUT  hard limit for the whole run in seconds (default 2400);
#                  figure 7 stops its repetitions early (and reports the
#                  ones it has) when the next would not fit
#   BENCH_JSON     also write the JSON lines to this file
#   KEEP_TMP=1     keep the temporary directory (logs, configs, mail)

if [ -z "${BASH_VERSION:-}" ]; then
	exec bash "$0" "$@"
fi
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=$ROOT/tests/lib
# shellcheck source=../lib/dovecot.sh
. "$LIB/dovecot.sh"

POPBRIDGE=${POPBRIDGE:-$ROOT/build/popbridge}
REPS=${BENCH_REPS:-11}
ONLY=${BENCH_ONLY:-1 2 3 4 5 6 7}
IDLE_COUNTS=${BENCH_IDLE:-1000 10000}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-2400}
REPS7=${BENCH_REPS7:-3}
REF7_REPS=${BENCH_REF7:-1}
DELAYS7=${BENCH_DELAYS7:-20 50}
T_START=$(date +%s)
if [ "$(id -u)" = 0 ]; then
	NICE=${BENCH_NICE:--10}
else
	NICE=${BENCH_NICE:-0}
fi
PW=bench-pw			# every bench user's password
export PYTHONDONTWRITEBYTECODE=1

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
say() { echo "# $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

[ -x "$POPBRIDGE" ] || die "no popbridge binary at $POPBRIDGE (make build/popbridge)"
for tool in gcc python3 openssl timeout /usr/sbin/dovecot doveadm; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done

TMP=$(pb_mktemp_dir popbridge-bench) || exit 1
DM=$TMP/dovecot		# the IMAP server
DR=$TMP/dovecot-imapc	# Dovecot POP3 over imapc (figure 3)
mkdir -p "$DM" "$DR"
RESULTS=$TMP/results.jsonl
: > "$RESULTS"
PB_PIDS=""
HOLD_PID=""
WATCHDOG=""
CLEANED=0

cleanup() {
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	local pid
	exec 9>&- 2>/dev/null
	for pid in $HOLD_PID; do
		pb_stop_pid "$pid" 5
	done
	for pid in $PB_PIDS; do
		pb_stop_pid "$pid" 5
	done
	dovecot_stop "$DR"
	dovecot_stop "$TMP/dovecot-imapc-lat"
	dovecot_stop "$DM"
	[ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		say "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'echo "# interrupted" >&2; exit 130' INT
trap 'echo "# bench: stopped (BENCH_TIMEOUT=${BENCH_TIMEOUT}s reached, or terminated)" >&2; exit 143' TERM

# The whole run is bounded.
# (Its sleep dies with it, and it holds none of our output open.)
(
	trap 'kill "$sp" 2>/dev/null; exit 0' TERM
	sleep "$BENCH_TIMEOUT" &
	sp=$!
	wait "$sp" && kill -TERM $$
) > /dev/null 2>&1 < /dev/null &
WATCHDOG=$!
disown "$WATCHDOG" 2>/dev/null

if [ "$NICE" != 0 ]; then
	if renice -n "$NICE" -p $$ >/dev/null 2>&1; then
		say "running at nice $NICE (BENCH_NICE=0 to leave the priority alone)"
	else
		say "could not renice to $NICE; running at the default priority"
		NICE=0
	fi
fi

# Figure 4 needs two descriptors per logged-in session in popbridge.
ulimit -Hn 65536 2>/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

# --- the client -------------------------------------------------------------
BENCH=$TMP/pbbench
# shellcheck disable=SC2046
gcc -O2 -std=c11 -Wall -Wextra -o "$BENCH" "$HERE/pbbench.c" \
	$(pkg-config --cflags --libs openssl 2>/dev/null || echo -lssl -lcrypto) ||
	die "cannot build tests/bench/pbbench.c"
RELAY=$TMP/relay
gcc -O2 -std=c11 -Wall -Wextra -o "$RELAY" "$HERE/relay.c" ||
	die "cannot build tests/bench/relay.c"
LATRELAY=$TMP/latrelay
if want 7; then
	gcc -O2 -std=c11 -Wall -Wextra -o "$LATRELAY" "$HERE/latrelay.c" ||
		die "cannot build tests/bench/latrelay.c"
fi

# --- machine ----------------------------------------------------------------
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GB=$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
DOVECOT_VERSION=$(/usr/sbin/dovecot --version 2>/dev/null | cut -d' ' -f1)
MACHINE="machine: $(nproc) x $CPU, ${MEM_GB} GiB RAM, Linux $(uname -r); Dovecot $DOVECOT_VERSION; $("$POPBRIDGE" --version 2>/dev/null); load average at start $(cut -d' ' -f1-3 /proc/loadavg); nice $NICE; open files $NOFILE; median of $REPS runs"
want 7 && MACHINE="$MACHINE (figure 7: median of $REPS7)"
say "$MACHINE"
say "temp dir $TMP"

# --- TLS: a test CA and a certificate for 127.0.0.1 ---------------------------
TLSD=$TMP/tls
mkdir -p "$TLSD"
{
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLSD/ca.key" \
		-out "$TLSD/ca.pem" -days 2 -subj "/CN=popbridge bench CA" &&
	openssl req -newkey rsa:2048 -nodes -keyout "$TLSD/server.key" \
		-out "$TLSD/server.csr" -subj "/CN=127.0.0.1" &&
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$TLSD/ext" &&
	openssl x509 -req -in "$TLSD/server.csr" -CA "$TLSD/ca.pem" \
		-CAkey "$TLSD/ca.key" -CAcreateserial -out "$TLSD/server.pem" \
		-days 2 -extfile "$TLSD/ext"
} > "$TMP/openssl.log" 2>&1 || die "openssl: $(tail -n 3 "$TMP/openssl.log")"
chmod 0644 "$TLSD"/*

# --- corpus -----------------------------------------------------------------
IDLE_USERS=50
MAX_IDLE=0
for n in $IDLE_COUNTS; do [ "$n" -gt "$MAX_IDLE" ] && MAX_IDLE=$n; done
USERS="bench1m:$PW
many10k:$PW
rss:$PW"
SPECS="bench1m:200:1048576 many10k:10000:1000-8000 rss:1:5120 rss:1:52428800"
for i in $(seq 0 $((IDLE_USERS - 1))); do
	u=$(printf 'idle%02d' "$i")
	USERS="$USERS
$u:$PW"
	SPECS="$SPECS $u:20:1000-4000"
done
if want 7; then
	# figure 7: 200 x 20 KB and 20 x 1 MB
	USERS="$USERS
lat20k:$PW
lat1m:$PW"
	SPECS="$SPECS lat20k:200:20480 lat1m:20:1048576"
fi
OWNER=""
[ "$(id -u)" = 0 ] && OWNER=65534:65534
mkdir -p "$DM/mail"
say "writing the corpus (200 x 1 MB, 10,000 small, 5 KB + 50 MB, $IDLE_USERS x 20 small)"
# shellcheck disable=SC2086
python3 "$HERE/gencorpus.py" --mail "$DM/mail" ${OWNER:+--owner $OWNER} $SPECS ||
	die "corpus generation failed"

# --- the IMAP server ----------------------------------------------------------
IMAPS_PORT=$(pb_free_port)
# The timings run against Dovecot as tests/lib/dovecot.sh configures it
# (one imap process per connection, as by default) plus TLS. Figure 4
# restarts it with LIMITS_CONF: MAX_IDLE upstream connections, imap
# processes serving up to 1000 connections each (all mail has one uid, so
# Dovecot allows it).
IMAP_PROCS=$(( MAX_IDLE / 1000 + 4 ))
BASE_CONF="ssl = yes
ssl_cert = <$TLSD/server.pem
ssl_key = <$TLSD/server.key
service imap-login {
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}"
LIMITS_CONF="mail_max_userip_connections = $(( MAX_IDLE + 1000 ))
default_client_limit = $(( MAX_IDLE + 1000 ))
default_process_limit = 1000
default_vsz_limit = 0
service imap-login {
  process_min_avail = 2
  client_limit = 2000
  process_limit = 20
}
service imap {
  service_count = 0
  client_limit = 1000
  process_limit = $IMAP_PROCS
}"
export DOVECOT_USERS="$USERS"
export DOVECOT_EXTRA_CONF="$BASE_CONF"
dovecot_start "$DM" 2> "$TMP/dovecot.err" ||
	die "Dovecot did not start: $(tail -n 5 "$TMP/dovecot.err")"
IMAP_PORT=$DOVECOT_IMAP_PORT
unset DOVECOT_EXTRA_CONF
say "Dovecot: imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT"
# Index every mailbox once (sizes from the S=/W= file names), so that no
# timed run pays for the first scan.
for u in $(printf '%s\n' "$USERS" | cut -d: -f1); do
	doveadm -c "$DOVECOT_CONF" mailbox status -u "$u" 'messages vsize' INBOX \
		>> "$TMP/index.log" 2>&1 || die "doveadm could not index $u: $(tail -n 3 "$TMP/index.log")"
done

# --- popbridge ---------------------------------------------------------------
# pb_wait_listen PORT SECS PID: until 127.0.0.1:PORT accepts a connection.
pb_wait_listen() {
	local deadline=$(( $(date +%s) + $2 ))
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		pb_alive "$3" || return 1
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

# start_pb NAME MODE [UPSTREAM_PORT]: MODE plain (pop3, upstream imap) or
# tls (pop3s, upstream imaps with the test CA); plain upstream to
# UPSTREAM_PORT when given (figure 7's relay), PB_UPSTREAM_EXTRA added to
# [upstream]. Sets PB_PORT, PB_PID, PB_LOG.
start_pb() {
	local name=$1 mode=$2 conf listen
	PB_PORT=$(pb_free_port) || return 1
	conf=$TMP/$name.ini
	PB_LOG=$TMP/$name.log
	mkdir -p "$TMP/$name-state"
	if [ "$mode" = tls ]; then
		listen="pop3 =
pop3s = 127.0.0.1:$PB_PORT
cert = $TLSD/server.pem
key = $TLSD/server.key"
		upstream="port = $IMAPS_PORT
tls = implicit
ca_file = $TLSD/ca.pem"
	else
		listen="pop3 = 127.0.0.1:$PB_PORT
pop3s ="
		upstream="port = ${3:-$IMAP_PORT}
tls = none"
	fi
	[ -n "${PB_UPSTREAM_EXTRA:-}" ] && upstream="$upstream
$PB_UPSTREAM_EXTRA"
	cat > "$conf" <<EOF
[listen]
$listen

[upstream]
host = 127.0.0.1
$upstream
timeout = 120

[state]
dir = $TMP/$name-state

[limits]
max_sessions = $(( MAX_IDLE + 1000 ))
max_per_ip = $(( MAX_IDLE + 1000 ))
auth_fail_delay = 0

[log]
level = info
EOF
	"$POPBRIDGE" -c "$conf" > "$PB_LOG" 2>&1 &
	PB_PID=$!
	PB_PIDS="$PB_PIDS $PB_PID"
	if [ "$mode" = tls ]; then
		# a TLS listener sends no greeting before the handshake
		pb_wait_listen "$PB_PORT" 30 "$PB_PID"
	else
		pb_wait_port "$PB_PORT" 30 "$PB_PID"
	fi || { say "popbridge $name did not start: $(tail -n 5 "$PB_LOG")"; return 1; }
}

# run TIMEOUT ARGS...: one pbbench run; prints its key=value line, or
# nothing (with the reason on stderr) when it failed.
run() {
	local secs=$1 out
	shift
	out=$(timeout -k 5 "$secs" "$BENCH" "$@" --timeout "$secs" 2>"$TMP/run.err") || {
		say "pbbench $1 on port ${*: -1} failed: $(tail -n 2 "$TMP/run.err")"
		return 1
	}
	printf '%s\n' "$out"
}
kv() { # kv KEY LINE: the value of KEY in a key=value line
	printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

add() { python3 "$HERE/report.py" add "$RESULTS" "$@"; }
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_s() { # CPU seconds (user + system) used so far by pid $1
	local f
	f=$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	# shellcheck disable=SC2086
	set -- $f
	awk -v t="$(( ${12} + ${13} ))" -v hz="$HZ" 'BEGIN { printf "%.3f", t / hz }'
}
skip() { # skip FIGURE NAME LABEL REASON
	add figure="$1" name="$2" kind=skipped label="$3" reason="$4"
	say "figure $1 ($3) skipped: $4"
}

# dovecot_cpu DIR: CPU seconds used so far by the Dovecot in DIR: the master,
# every live descendant, and (through the master's cutime/cstime) every
# process that has exited, such as one imap process per connection.
dovecot_cpu() {
	local m p
	m=$(cat "$1/dovecot.pid" 2>/dev/null)
	[ -n "$m" ] || { echo 0; return; }
	{
		cat "/proc/$m/stat"
		for p in $(_pb_descendants "$m"); do
			cat "/proc/$p/stat"
		done
	} 2>/dev/null | awk -v hz="$HZ" '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 }
		END { printf "%.3f", t / hz }'
}

# one_run SIDE MODE PORT ARGS...: one pbbench run; SIDE is direct (client and
# Dovecot), pb (plus popbridge) or ref (plus the imapc Dovecot). Sets
# R_LINE (pbbench's output), R_TIME (its timing) and R_CPU (CPU seconds of
# every process on the path, the client's own included).
one_run() {
	local side=$1 mode=$2 port=$3 d0 d1 p0=0 p1=0 r0=0 r1=0 c
	shift 3
	d0=$(dovecot_cpu "$DM")
	[ "$side" = pb ] && p0=$(cpu_s "$TIMING_PB_PID")
	[ "$side" = ref ] && r0=$(dovecot_cpu "$DR")
	R_LINE=$(run 300 "$mode" "$@" --port "$port") || return 1
	d1=$(dovecot_cpu "$DM")
	[ "$side" = pb ] && p1=$(cpu_s "$TIMING_PB_PID")
	[ "$side" = ref ] && r1=$(dovecot_cpu "$DR")
	R_TIME=$(kv time "$R_LINE")
	R_PBCPU=$(awk -v a="$p0" -v b="$p1" 'BEGIN { printf "%.3f", b - a }')
	c=$(kv cpu "$R_LINE")
	R_CPU=$(awk "BEGIN { printf \"%.3f\", $d1 - $d0 + $p1 - $p0 + $r1 - $r0 + ${c:-0} }")
}

# timing FIG NAME LABEL TARGET USER POP_MODE IMAP_MODE POP_PORT IMAP_PORT
#        REF_NAME REF_LABEL REF_PORT [extra pbbench args...]
# Runs the sides in turn REPS times after one warm-up run each and adds the
# rows (REF_* empty: no figure 3 reference). Every run must deliver the same
# as the direct IMAP run: the same octets (RETR) or messages (listing).
timing() {
	local fig=$1 name=$2 label=$3 target=$4 user=$5 pmode=$6 imode=$7
	local pport=$8 iport=$9 rname=${10} rlabel=${11} rport=${12}
	shift 12
	local key=bytes pr="" ir="" rr="" pc="" pcpu="" icpu="" rcpu=""
	local want_v v first_pb first_ref="" i
	local common=(--user "$user" --pass "$PW" "$@")
	[ "$imode" = imap-list ] && key=msgs
	say "figure $fig: $label"
	one_run direct "$imode" "$iport" "${common[@]}" ||
		{ skip "$fig" "$name" "$label" "the direct IMAP run failed: $(tail -n 1 "$TMP/run.err")"; return 1; }
	want_v=$(kv "$key" "$R_LINE")
	one_run pb "$pmode" "$pport" "${common[@]}" ||
		{ skip "$fig" "$name" "$label" "the popbridge run failed: $(tail -n 1 "$TMP/run.err")"; return 1; }
	first_pb=$R_TIME
	v=$(kv "$key" "$R_LINE")
	if [ "$v" != "$want_v" ]; then
		skip "$fig" "$name" "$label" "popbridge delivered $key=$v, IMAP $key=$want_v"
		return 1
	fi
	if [ -n "$rport" ]; then
		if one_run ref "$pmode" "$rport" "${common[@]}"; then
			first_ref=$R_TIME
			v=$(kv "$key" "$R_LINE")
			if [ "$v" != "$want_v" ]; then
				skip 3 "$rname" "$rlabel" "Dovecot POP3 delivered $key=$v, IMAP $key=$want_v"
				rport=""
			fi
		else
			skip 3 "$rname" "$rlabel" "Dovecot POP3 over imapc failed: $(tail -n 1 "$TMP/run.err")"
			rport=""
		fi
	fi
	for i in $(seq 1 "$REPS"); do
		one_run direct "$imode" "$iport" "${common[@]}" || break
		ir="$ir $R_TIME"
		icpu="$icpu $R_CPU"
		one_run pb "$pmode" "$pport" "${common[@]}" || break
		pr="$pr $R_TIME"
		pcpu="$pcpu $R_CPU"
		pc="$pc $R_PBCPU"
		if [ -n "$rport" ]; then
			one_run ref "$pmode" "$rport" "${common[@]}" || break
			rr="$rr $R_TIME"
			rcpu="$rcpu $R_CPU"
		fi
	done
	if [ "$(echo "$pr" | wc -w)" != "$REPS" ] || [ "$(echo "$ir" | wc -w)" != "$REPS" ]; then
		skip "$fig" "$name" "$label" "a timed run failed: $(tail -n 1 "$TMP/run.err")"
		return 1
	fi
	add figure="$fig" name="$name" kind="${TIMING_KIND:-ratio}" label="$label" target="$target" \
		popbridge_runs="$pr" direct_runs="$ir" popbridge_first_s="$first_pb" \
		popbridge_cpu_runs="$pc" path_cpu_runs="$pcpu" direct_path_cpu_runs="$icpu" \
		"$key=$want_v"
	if [ -n "$rport" ] && [ "$(echo "$rr" | wc -w)" = "$REPS" ]; then
		add figure=3 name="$rname" kind=reference label="$rlabel" compare="$name" \
			pop3_runs="$rr" direct_runs="$ir" dovecot_pop3_first_s="$first_ref" \
			path_cpu_runs="$rcpu" direct_path_cpu_runs="$icpu"
	elif [ -n "$rport" ]; then
		skip 3 "$rname" "$rlabel" "a timed Dovecot POP3 run failed"
	fi
}

# --- figure 3's server: Dovecot POP3 over imapc --------------------------------
REF_PORT=""
REF_WHY=""
if want 3; then
	sh "$HERE/deps.sh" > "$TMP/deps.log" 2>&1
	if [ ! -x /usr/lib/dovecot/pop3 ]; then
		REF_WHY="dovecot-pop3d is not installed (and could not be: $(tail -n 1 "$TMP/deps.log"))"
	else
		export DOVECOT_POP3=1 DOVECOT_USERS="$USERS"
		export DOVECOT_EXTRA_CONF="mail_location = imapc:~/imapc
imapc_host = 127.0.0.1
imapc_port = $IMAP_PORT
imapc_user = %u
imapc_password = $PW
imapc_features = rfc822.size
mail_max_userip_connections = 1000"
		if dovecot_start "$DR" 2> "$TMP/dovecot-imapc.err"; then
			REF_PORT=$DOVECOT_POP3_PORT
			say "Dovecot POP3 over imapc: pop3 127.0.0.1:$REF_PORT"
		else
			REF_WHY="the imapc Dovecot did not start: $(tail -n 2 "$TMP/dovecot-imapc.err" | tr '\n' ' ')"
		fi
		unset DOVECOT_POP3 DOVECOT_EXTRA_CONF
	fi
fi

if want 1 || want 2 || want 3; then
	start_pb popbridge plain || die "popbridge did not start"
	PLAIN_PORT=$PB_PORT
	TIMING_PB_PID=$PB_PID
fi
RP=""
want 3 && RP=$REF_PORT
if want 1 || want 3; then
	timing 1 retr_200x1MB "RETR 200 x 1 MB vs UID FETCH BODY.PEEK[]" 1.15 \
		bench1m pop3-retr imap-fetch "$PLAIN_PORT" "$IMAP_PORT" \
		retr_200x1MB_dovecot_pop3 "RETR 200 x 1 MB: Dovecot POP3 over imapc vs IMAP" "$RP"
fi
# The floor under figure 1: IMAP through a relay that only copies bytes
# (tests/bench/relay.c) against IMAP straight to Dovecot.
if want 1; then
	RELAY_PORT=$(pb_free_port)
	"$RELAY" "$RELAY_PORT" "$IMAP_PORT" > "$TMP/relay.out" 2>&1 &
	RELAY_PID=$!
	PB_PIDS="$PB_PIDS $RELAY_PID"
	if pb_wait_listen "$RELAY_PORT" 10 "$RELAY_PID"; then
		TIMING_PB_PID=$RELAY_PID TIMING_KIND=floor \
			timing 1 retr_200x1MB_relay "floor: UID FETCH through a copying relay vs IMAP" "" \
			bench1m imap-fetch imap-fetch "$RELAY_PORT" "$IMAP_PORT" "" "" ""
	else
		skip 1 retr_200x1MB_relay "floor: a copying relay" "tests/bench/relay.c did not start"
	fi
	pb_stop_pid "$RELAY_PID"
	TIMING_PB_PID=$PB_PID
fi
if want 2 || want 3; then
	timing 2 login_stat_uidl_10k "login+STAT+UIDL, 10,000 msgs vs LOGIN+SELECT+UID FETCH 1:*" 1.2 \
		many10k pop3-list imap-list "$PLAIN_PORT" "$IMAP_PORT" \
		login_stat_uidl_10k_dovecot_pop3 "login+STAT+UIDL 10,000: Dovecot POP3 over imapc vs IMAP" "$RP"
fi
if want 3 && [ -z "$REF_PORT" ]; then
	skip 3 dovecot_pop3_imapc "Dovecot POP3 over imapc" "$REF_WHY"
fi
if [ -n "$REF_PORT" ]; then
	dovecot_stop "$DR"
fi

# --- figure 6: TLS on both sides ----------------------------------------------
if want 6; then
	if start_pb popbridge-tls tls; then
		TIMING_PB_PID=$PB_PID
		timing 6 retr_200x1MB_tls "TLS: RETR 200 x 1 MB (pop3s) vs UID FETCH (imaps)" 1.15 \
			bench1m pop3-retr imap-fetch "$PB_PORT" "$IMAPS_PORT" "" "" "" \
			--tls --ca "$TLSD/ca.pem"
		pb_stop_pid "$PB_PID"
	else
		skip 6 retr_200x1MB_tls "TLS: RETR 200 x 1 MB" "popbridge with pop3s did not start"
	fi
fi

# --- figure 7: the server a round trip away -----------------------------------------
# popbridge -> latrelay -> Dovecot, and the direct IMAP client and Dovecot
# POP3's imapc through the same relay; each delay a fresh relay on the same
# port. Every run is a whole session timed from connect() to the last byte
# (pbbench's whole-session modes); the sides take turns in each repetition.
LAT_PID=""
DR7=$TMP/dovecot-imapc-lat
secs_left() { echo $(( T_START + BENCH_TIMEOUT - $(date +%s) )); }

# lat_start DELAY_MS: the relay on LAT_PORT with that one-way delay.
lat_start() {
	local out=$TMP/latrelay-$1.out i
	[ -n "$LAT_PID" ] && pb_stop_pid "$LAT_PID" 5
	"$LATRELAY" "$LAT_PORT" "$IMAP_PORT" "$1" > "$out" 2> "$TMP/latrelay-$1.log" &
	LAT_PID=$!
	PB_PIDS="$PB_PIDS $LAT_PID"
	for i in $(seq 1 100); do
		grep -q '^READY' "$out" 2>/dev/null && return 0
		pb_alive "$LAT_PID" || break
		sleep 0.1
	done
	say "latrelay did not start: $(tail -n 2 "$TMP/latrelay-$1.log")"
	return 1
}

# lat_run MODE PORT USER: one run, bounded by what BENCH_TIMEOUT leaves
# (a minute kept for the report); sets R_LINE and R_TIME, or says why not
# in $TMP/run.err.
lat_run() {
	local secs
	secs=$(( $(secs_left) - 60 ))
	[ "$secs" -gt 300 ] && secs=300
	if [ "$secs" -lt 10 ]; then
		echo "not run: BENCH_TIMEOUT=$BENCH_TIMEOUT nearly reached" > "$TMP/run.err"
		return 1
	fi
	if ! R_LINE=$(timeout -k 5 "$secs" "$BENCH" "$1" --user "$3" --pass "$PW" \
		--port "$2" --timeout "$secs" 2>"$TMP/run.err"); then
		[ -s "$TMP/run.err" ] ||
			echo "no result within ${secs}s (what BENCH_TIMEOUT=$BENCH_TIMEOUT left)" > "$TMP/run.err"
		say "pbbench $1 on port $2 failed: $(tail -n 2 "$TMP/run.err")"
		return 1
	fi
	R_TIME=$(kv time "$R_LINE")
}

# lat_same WANT_BYTES WANT_MSGS: R_LINE delivered as much as the direct run.
lat_same() {
	[ "$(kv bytes "$R_LINE")" = "$1" ] && [ "$(kv msgs "$R_LINE")" = "$2" ]
}

# lat_login D: (a) PASS -> +OK, popbridge and Dovecot POP3, in round trips.
# Dovecot's POP3 answers PASS before it has asked imapc for anything, so
# its row is PASS -> STAT's +OK (popbridge's STAT is answered locally; both
# times are in the JSON of both rows).
lat_login() {
	local d=$1 pr="" ps="" rr="" rs="" i n=$(( REPS7 > 5 ? REPS7 : 5 ))
	local label="2x$d ms: PASS -> +OK (200 msgs), round trips"
	say "figure 7: $label"
	for i in $(seq 1 "$n"); do
		lat_run pop3-login "$PB7_PORT" lat20k || break
		pr="$pr $R_TIME"
		ps="$ps $(kv stat "$R_LINE")"
		if [ -n "$REF7_PORT" ] && lat_run pop3-login "$REF7_PORT" lat20k; then
			rr="$rr $R_TIME"
			rs="$rs $(kv stat "$R_LINE")"
		fi
	done
	if [ -z "$pr" ]; then
		skip 7 "login_2x${d}ms" "$label" "pop3-login failed: $(tail -n 1 "$TMP/run.err")"
		return
	fi
	add figure=7 name="login_2x${d}ms" kind=rtt label="$label" target=3 \
		rtt_ms=$(( 2 * d )) time_runs="$pr" pass_to_stat_runs="$ps"
	if [ -n "$rr" ]; then
		add figure=7 name="login_2x${d}ms_dovecot_pop3" kind=rtt side=dovecot_pop3 \
			label="2x$d ms: Dovecot POP3 over imapc, PASS -> STAT's +OK" \
			rtt_ms=$(( 2 * d )) time_runs="$rs" pass_to_ok_runs="$rr"
	elif [ -n "$REF7_PORT" ]; then
		skip 7 "login_2x${d}ms_dovecot_pop3" "2x$d ms: Dovecot POP3 PASS -> +OK" \
			"pop3-login failed: $(tail -n 1 "$TMP/run.err")"
	fi
}

# lat_timing D NAME LABEL USER POP_MODE IMAP_MODE: REPS7 repetitions of
# direct, popbridge and (the first REF7_REPS times) Dovecot POP3; every run
# must deliver the direct run's octets and message count. Stops early when
# another repetition would not fit in BENCH_TIMEOUT.
lat_timing() {
	local d=$1 name=$2 label=$3 user=$4 pmode=$5 imode=$6
	local pr="" ir="" rr="" rir="" wb="" wm="" dt i t0 last=0 k=0 why=""
	label="2x$d ms: $label"
	say "figure 7: $label"
	for i in $(seq 1 "$REPS7"); do
		# Another repetition only when one more as long as the last fits.
		if [ $(( $(secs_left) - 90 )) -lt "$last" ]; then
			[ "$k" -gt 0 ] && say "figure 7: $name stops after $k of $REPS7 repetitions (BENCH_TIMEOUT=$BENCH_TIMEOUT)"
			why="not run: BENCH_TIMEOUT=$BENCH_TIMEOUT nearly reached"
			break
		fi
		t0=$(date +%s)
		lat_run "$imode" "$LAT_PORT" "$user" ||
			{ why="the direct IMAP run: $(tail -n 1 "$TMP/run.err")"; break; }
		if [ -z "$wb" ]; then
			wb=$(kv bytes "$R_LINE")
			wm=$(kv msgs "$R_LINE")
		elif ! lat_same "$wb" "$wm"; then
			why="the direct IMAP runs disagree: $R_LINE"
			break
		fi
		dt=$R_TIME
		lat_run "$pmode" "$PB7_PORT" "$user" ||
			{ why="the popbridge run: $(tail -n 1 "$TMP/run.err")"; break; }
		if ! lat_same "$wb" "$wm"; then
			why="popbridge delivered bytes=$(kv bytes "$R_LINE") msgs=$(kv msgs "$R_LINE"), IMAP bytes=$wb msgs=$wm"
			break
		fi
		ir="$ir $dt"
		pr="$pr $R_TIME"
		k=$(( k + 1 ))
		if [ -n "$REF7_PORT" ] && [ "$i" -le "$REF7_REPS" ]; then
			if ! lat_run "$pmode" "$REF7_PORT" "$user"; then
				say "Dovecot POP3 over imapc failed: $(tail -n 1 "$TMP/run.err")"
			elif ! lat_same "$wb" "$wm"; then
				say "Dovecot POP3 delivered bytes=$(kv bytes "$R_LINE"), IMAP $wb"
			else
				rr="$rr $R_TIME"
				rir="$rir $dt"
			fi
		fi
		last=$(( $(date +%s) - t0 ))
	done
	if [ "$k" = 0 ]; then
		skip 7 "$name" "$label" "$why"
		return 1
	fi
	[ -n "$why" ] && say "figure 7: $name: $why (after $k repetitions)"
	add figure=7 name="$name" kind=ratio label="$label" target=2.0 \
		popbridge_runs="$pr" direct_runs="$ir" reps="$k" delay_ms="$d" \
		bytes="$wb" msgs="$wm"
	if [ -n "$rr" ]; then
		add figure=7 name="${name}_dovecot_pop3" kind=reference \
			label="$label: Dovecot POP3 over imapc" compare="$name" \
			pop3_runs="$rr" direct_runs="$rir" delay_ms="$d"
	elif [ -n "$REF7_PORT" ]; then
		skip 7 "${name}_dovecot_pop3" "$label: Dovecot POP3 over imapc" "its runs failed"
	fi
}

if want 7; then
	T7=$(date +%s)
	LAT_PORT=$(pb_free_port)
	REF7_PORT=""
	sh "$HERE/deps.sh" > "$TMP/deps7.log" 2>&1
	if [ ! -x /usr/lib/dovecot/pop3 ]; then
		skip 7 dovecot_pop3_imapc_lat "Dovecot POP3 over imapc through the relay" \
			"dovecot-pop3d is not installed (and could not be: $(tail -n 1 "$TMP/deps7.log"))"
	else
		mkdir -p "$DR7"
		export DOVECOT_POP3=1 DOVECOT_USERS="$USERS"
		export DOVECOT_EXTRA_CONF="mail_location = imapc:~/imapc
imapc_host = 127.0.0.1
imapc_port = $LAT_PORT
imapc_user = %u
imapc_password = $PW
imapc_features = rfc822.size
mail_max_userip_connections = 1000"
		if dovecot_start "$DR7" 2> "$TMP/dovecot-imapc-lat.err"; then
			REF7_PORT=$DOVECOT_POP3_PORT
			say "Dovecot POP3 over imapc through the relay: pop3 127.0.0.1:$REF7_PORT"
		else
			skip 7 dovecot_pop3_imapc_lat "Dovecot POP3 over imapc through the relay" \
				"the imapc Dovecot did not start: $(tail -n 2 "$TMP/dovecot-imapc-lat.err" | tr '\n' ' ')"
		fi
		unset DOVECOT_POP3 DOVECOT_EXTRA_CONF
	fi
	PB_UPSTREAM_EXTRA=${BENCH_READ_AHEAD:+read_ahead = $BENCH_READ_AHEAD}
	if ! start_pb popbridge-lat plain "$LAT_PORT"; then
		skip 7 latency "figure 7" "popbridge did not start"
	else
		PB7_PORT=$PB_PORT
		PB7_PID=$PB_PID
		first=1
		for d in $DELAYS7; do
			lat_start "$d" || { skip 7 "latency_2x${d}ms" "2x$d ms" "latrelay did not start"; continue; }
			say "figure 7: latrelay 127.0.0.1:$LAT_PORT -> $IMAP_PORT, 2 x $d ms"
			if [ "$first" = 1 ]; then
				# Warm-up: Dovecot's caches, popbridge's UID map and the
				# imapc index; a login each (and one direct fetch).
				first=0
				for u in lat20k lat1m; do
					lat_run imap-all "$LAT_PORT" "$u" >/dev/null
					lat_run pop3-login "$PB7_PORT" "$u" >/dev/null
					[ -n "$REF7_PORT" ] && lat_run pop3-login "$REF7_PORT" "$u" >/dev/null
				done
			fi
			lat_login "$d"
			lat_timing "$d" "retr_seq_200x20KB_2x${d}ms" "RETR 200 x 20 KB one at a time vs UID FETCH 1:*" \
				lat20k pop3-seq imap-all
			lat_timing "$d" "retr_seq_20x1MB_2x${d}ms" "RETR 20 x 1 MB one at a time vs UID FETCH 1:*" \
				lat1m pop3-seq imap-all
			lat_timing "$d" "retr_pipe_200x20KB_2x${d}ms" "RETR 200 x 20 KB pipelined vs UID FETCH 1:*" \
				lat20k pop3-pipe imap-all
			lat_timing "$d" "retr_pipe_20x1MB_2x${d}ms" "RETR 20 x 1 MB pipelined vs UID FETCH 1:*" \
				lat1m pop3-pipe imap-all
			lat_timing "$d" "top0_pipe_200_2x${d}ms" "TOP n 0 x 200 pipelined vs UID FETCH 1:* BODY.PEEK[HEADER]" \
				lat20k pop3-top-pipe imap-hdr
		done
		pb_stop_pid "$PB7_PID"
	fi
	unset PB_UPSTREAM_EXTRA
	[ -n "$LAT_PID" ] && pb_stop_pid "$LAT_PID" 5
	[ -n "$REF7_PORT" ] && dovecot_stop "$DR7"
	say "figure 7 took $(( $(date +%s) - T7 )) s"
fi

# --- figure 4: idle sessions ----------------------------------------------------
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null; }
nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# idle FIG COUNT STATE LABEL: STATE is login (TRANSACTION) or greeted
# (AUTHORIZATION). A fresh popbridge, one warm-up session, VmRSS; then COUNT
# sessions opened (spread over the idle users, one pbbench holder per user)
# and held while VmRSS is read again.
idle() {
	local fig=$1 n=$2 state=$3 label=$4 name before after l ok=0 fail=0 err=""
	local per left=$n u k i f holders="" outs="" fds ready deadline
	local flags=()
	name="idle_${n}_${state}"
	[ "$state" = login ] && flags=(--login)
	say "figure $fig: $label"
	start_pb "popbridge-idle-$n-$state" plain ||
		{ skip "$fig" "$name" "$label" "popbridge did not start"; return 1; }
	if ! run 60 pop3-list --user idle00 --pass "$PW" --port "$PB_PORT" > /dev/null; then
		skip "$fig" "$name" "$label" "the warm-up session failed"
		pb_stop_pid "$PB_PID"
		return 1
	fi
	sleep 0.2
	before=$(rss_kb "$PB_PID")
	rm -f "$TMP/hold.in"
	mkfifo "$TMP/hold.in" || return 1
	# fd 9 keeps the FIFO open for writing; closing it is everyone's EOF.
	exec 9<>"$TMP/hold.in"
	per=$(( (n + IDLE_USERS - 1) / IDLE_USERS ))
	for i in $(seq 0 $((IDLE_USERS - 1))); do
		[ "$left" -le 0 ] && break
		u=$(printf 'idle%02d' "$i")
		k=$(( left < per ? left : per ))
		left=$(( left - k ))
		"$BENCH" pop3-idle --user "$u" --pass "$PW" --port "$PB_PORT" \
			--sessions "$k" "${flags[@]}" --window 4 --timeout 600 \
			< "$TMP/hold.in" > "$TMP/hold.$i.out" 2>&1 9>&- &
		holders="$holders $!"
		outs="$outs $TMP/hold.$i.out"
	done
	HOLD_PID=$holders
	# Until every holder has reported (bounded).
	deadline=$(( $(date +%s) + 600 ))
	while :; do
		ready=0
		for f in $outs; do
			grep -q '^READY\|pbbench:' "$f" && ready=$((ready + 1))
		done
		[ "$ready" -eq "$(echo "$outs" | wc -w)" ] && break
		[ "$(date +%s)" -ge "$deadline" ] && break
		sleep 0.2
	done
	sleep 0.5
	after=$(rss_kb "$PB_PID")
	fds=$(nfds "$PB_PID")
	for f in $outs; do
		l=$(grep '^READY' "$f" | head -n 1)
		if [ -n "$l" ]; then
			ok=$(( ok + $(kv ok "$l") ))
			fail=$(( fail + $(kv fail "$l") ))
			if [ "$(kv fail "$l")" != 0 ] && [ -z "$err" ]; then
				err=$(printf '%s\n' "$l" | sed -n 's/.*first_error="\(.*\)"/\1/p')
			fi
		elif [ -z "$err" ]; then
			err=$(tail -n 1 "$f")
		fi
	done
	# Release the sessions.
	exec 9>&-
	for i in $holders; do
		wait "$i" 2>/dev/null
	done
	HOLD_PID=""
	add figure="$fig" name="$name" kind=idle label="$label" sessions="$n" \
		sessions_ok="$ok" state="$state" rss_before_kb="$before" \
		rss_after_kb="$after" popbridge_fds="$fds" target=50 \
		${err:+"first_error=$err"}
	[ "$ok" = "$n" ] || say "only $ok of $n sessions opened: $err"
	pb_stop_pid "$PB_PID"
}

if want 4; then
	say "restarting Dovecot with limits for $MAX_IDLE connections"
	dovecot_stop "$DM"
	DOVECOT_EXTRA_CONF="$BASE_CONF
$LIMITS_CONF" dovecot_start "$DM" 2> "$TMP/dovecot.err" ||
		die "Dovecot did not restart: $(tail -n 5 "$TMP/dovecot.err")"
	# popbridge's descriptors at rest (listeners, loop, log) plus a margin
	start_pb popbridge-fdprobe plain && BASE_FDS=$(nfds "$PB_PID") || BASE_FDS=32
	pb_stop_pid "$PB_PID"
	MAX_LOGGED_IN=$(( (NOFILE - BASE_FDS - 64) / 2 ))
	for n in $IDLE_COUNTS; do
		if [ "$n" -le "$MAX_LOGGED_IN" ]; then
			idle 4 "$n" login "$n idle sessions, logged in (TRANSACTION)"
		else
			# Each logged-in session holds a client and an upstream socket:
			# n of them need 2n descriptors, more than this machine allows.
			m=$(( MAX_LOGGED_IN / 100 * 100 ))
			say "figure 4: $n logged-in sessions need $((2 * n + BASE_FDS)) descriptors; the limit is $NOFILE (ulimit -Hn)"
			idle 4 "$n" greeted "$n idle sessions, greeted only (AUTHORIZATION; fd limit $NOFILE)"
			idle 4 "$m" login "$m idle sessions, logged in (most the fd limit $NOFILE allows)"
		fi
	done
fi

# --- figure 5: RSS while retrieving a large vs. a small message -------------------
# rss_once PICK [RATE]: a fresh popbridge; prints pbbench's pop3-rss line.
rss_once() {
	local pick=$1 rate=${2:-} l
	start_pb "popbridge-rss-$pick${rate:+-slow}" plain || return 1
	l=$(run 300 pop3-rss --user rss --pass "$PW" --port "$PB_PORT" --pid "$PB_PID" \
		--pick "$pick" ${rate:+--rate "$rate"})
	pb_stop_pid "$PB_PID"
	[ -n "$l" ] && printf '%s\n' "$l"
}
if want 5; then
	say "figure 5: RSS while retrieving 50 MB vs. 5 KB"
	small=$(rss_once smallest) && large=$(rss_once largest) &&
		slow=$(rss_once largest 25)
	if [ -n "${small:-}" ] && [ -n "${large:-}" ]; then
		add figure=5 name=retr_rss_50MB_vs_5KB kind=rss \
			label="peak RSS, RETR of 50 MB vs 5 KB" target=1024 \
			peak_small_kb="$(kv peak_kb "$small")" peak_large_kb="$(kv peak_kb "$large")" \
			base_small_kb="$(kv base_kb "$small")" base_large_kb="$(kv base_kb "$large")" \
			size_small="$(kv size "$small")" size_large="$(kv size "$large")" \
			retr_large_s="$(kv time "$large")" hwm_reset="$(kv hwm_reset "$large")"
		if [ -n "${slow:-}" ]; then
			add figure=5 name=retr_rss_50MB_slow_client kind=rss \
				label="peak RSS, RETR of 50 MB read at 25 MB/s vs 5 KB" target=1024 \
				peak_small_kb="$(kv peak_kb "$small")" peak_large_kb="$(kv peak_kb "$slow")" \
				retr_large_s="$(kv time "$slow")"
		fi
	else
		skip 5 retr_rss_50MB_vs_5KB "peak RSS, RETR of 50 MB vs 5 KB" "a pop3-rss run failed"
	fi
fi

# --- report ------------------------------------------------------------------------
echo
python3 "$HERE/report.py" print "$RESULTS" "$MACHINE"
if [ -n "${BENCH_JSON:-}" ]; then
	cp "$RESULTS" "$BENCH_JSON"
fi
exit 0
