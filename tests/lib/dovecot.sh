# shellcheck shell=bash
# tests/lib/dovecot.sh — a private Dovecot 2.3 instance for tests and the demo.
#
# Source it from bash:   . tests/lib/dovecot.sh
#
#   pb_free_port                 print a free TCP port on 127.0.0.1 (the kernel
#                                picks it: bind port 0, read it back, close)
#   pb_mktemp_dir [PREFIX]       mktemp -d under /tmp, mode 0755 so that the
#                                Dovecot users (dovenull, uid 65534) can
#                                traverse it
#   pb_wait_port PORT SECS [PID] wait until 127.0.0.1:PORT accepts a
#                                connection and sends a greeting line; fails
#                                early if PID (when given) dies
#   dovecot_write_users DIR      write DIR/users (passwd-file) from
#                                $DOVECOT_USERS ("user:password" lines)
#   dovecot_start DIR            write DIR/dovecot.conf and start Dovecot in the
#                                background; sets DOVECOT_IMAP_PORT,
#                                DOVECOT_POP3_PORT (only with DOVECOT_POP3=1),
#                                DOVECOT_CONF, DOVECOT_PID. Reuses the ports
#                                already in DIR/ports when restarted.
#   dovecot_stop DIR             stop it (TERM, then KILL the master and every
#                                process it had started); safe to call twice
#   pb_alive PID                 true while PID runs (a zombie does not count)
#   pb_stop_pid PID [SECS]       TERM, then KILL after SECS (default 10); reaps
#                                it when it is the caller's child
#   dovecot_log DIR [N]          print the last N lines of its log
#
# Environment read by dovecot_start:
#   DOVECOT_POP3=1        also serve POP3 on a free port (only to validate the
#                         test harness against Dovecot's own POP3 server;
#                         needs the dovecot-pop3d package)
#   DOVECOT_EXTRA_CONF    text appended to dovecot.conf (e.g. imap_capability)
#   DOVECOT_USERS         users to create if DIR/users does not exist yet;
#                         default: $DOVECOT_DEFAULT_USERS
#   DOVECOT_SSL_CERT, DOVECOT_SSL_KEY
#                         opt-in TLS (both set): ssl = yes with this PEM
#                         certificate chain and key; the plain IMAP port then
#                         offers STARTTLS, and an imaps listener (implicit
#                         TLS) runs on another free port, exported as
#                         DOVECOT_IMAPS_PORT (kept in DIR/ports for restarts).
#                         Unset (the default): ssl = no, no imaps port, and
#                         DIR/ports and dovecot.conf are exactly as before.
#
# Everything lives in DIR: dovecot.conf, users, run/ (base_dir), state/,
# dovecot.log, mail/USER/Maildir. Dovecot listens on 127.0.0.1 only.
# Works as root (the CI case: mail owned by uid/gid 65534) and as an
# ordinary user (everything runs as that user, no chroot).

# One user per line, "name:password". The password of "quote" contains a
# space, a double quote and a backslash: it is   p a"s\s
# (passwd-file allows anything but ':' in the password).
DOVECOT_DEFAULT_USERS='alice:Alice-pw-4e1f
bob:Bob-pw-9c22
carol:Carol-pw-0d7b
dave:Dave-pw-51aa
erin:Erin-pw-63f0
frank:Frank-pw-7b19
snap:Snap-pw-2c84
zed:Zed-pw-88e3
demo:demo
quote:p a"s\s'

pb_free_port() {
	python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

pb_mktemp_dir() {
	local d
	d=$(mktemp -d "/tmp/${1:-popbridge}.XXXXXXXX") || return 1
	chmod 0755 "$d" || return 1
	printf '%s\n' "$d"
}

# pb_wait_port PORT SECONDS [PID]: a connection that yields a first line
# (greeting) counts as up. Returns 1 on timeout or when PID has exited.
pb_wait_port() {
	local port=$1 secs=$2 pid=${3:-} deadline
	deadline=$(( $(date +%s) + secs ))
	while :; do
		if python3 - "$port" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.settimeout(3)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(512)
    if not chunk:
        break
    data += chunk
s.close()
sys.exit(0 if data.startswith((b"+OK", b"* OK", b"-ERR")) else 1)
EOF
		then
			return 0
		fi
		if [ -n "$pid" ] && ! pb_alive "$pid"; then
			return 1
		fi
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

# _dovecot_wait_tls PORT SECONDS [PID]: like pb_wait_port, through an
# implicit-TLS handshake (the certificate is not checked here).
_dovecot_wait_tls() {
	local port=$1 secs=$2 pid=${3:-} deadline
	deadline=$(( $(date +%s) + secs ))
	while :; do
		if python3 - "$port" <<'PYEOF' 2>/dev/null
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.settimeout(3)
s = ctx.wrap_socket(s)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(512)
    if not chunk:
        break
    data += chunk
s.close()
sys.exit(0 if data.startswith(b"* OK") else 1)
PYEOF
		then
			return 0
		fi
		if [ -n "$pid" ] && ! pb_alive "$pid"; then
			return 1
		fi
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

dovecot_write_users() {
	local dir=$1 line user pass
	: > "$dir/users" || return 1
	while IFS= read -r line; do
		[ -z "$line" ] && continue
		user=${line%%:*}
		pass=${line#*:}
		printf '%s:{PLAIN}%s\n' "$user" "$pass" >> "$dir/users"
	done <<EOF
${DOVECOT_USERS:-$DOVECOT_DEFAULT_USERS}
EOF
	chmod 0644 "$dir/users"
}

# True when the caller asked for TLS (DOVECOT_SSL_CERT and DOVECOT_SSL_KEY).
_dovecot_ssl_wanted() {
	[ -n "${DOVECOT_SSL_CERT:-}" ] && [ -n "${DOVECOT_SSL_KEY:-}" ]
}

# The ssl lines of dovecot.conf: "ssl = no" unless TLS was asked for.
_dovecot_ssl_conf() {
	if _dovecot_ssl_wanted; then
		printf 'ssl = yes\nssl_cert = <%s\nssl_key = <%s' \
			"$DOVECOT_SSL_CERT" "$DOVECOT_SSL_KEY"
	else
		printf 'ssl = no'
	fi
}

# The body of the imaps inet_listener: port 0 (off) unless TLS was asked for.
_dovecot_imaps_conf() {
	if _dovecot_ssl_wanted && [ -n "${DOVECOT_IMAPS_PORT:-}" ]; then
		printf '    address = 127.0.0.1\n    port = %s\n    ssl = yes' \
			"$DOVECOT_IMAPS_PORT"
	else
		printf '    port = 0'
	fi
}

# Writes DIR/dovecot.conf for the ports in DOVECOT_IMAP_PORT / DOVECOT_POP3_PORT.
_dovecot_write_conf() {
	local dir=$1 uid gid protocols="imap" me
	if [ "$(id -u)" = 0 ]; then
		uid=65534
		gid=65534
	else
		uid=$(id -u)
		gid=$(id -g)
	fi
	[ -n "$DOVECOT_POP3_PORT" ] && protocols="imap pop3"
	{
		cat <<EOF
# Generated by tests/lib/dovecot.sh — a private test instance.
instance_name = $DOVECOT_INSTANCE
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
debug_log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = $protocols
$(_dovecot_ssl_conf)
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
first_valid_uid = 1
first_valid_gid = 1
mail_uid = $uid
mail_gid = $gid
mail_location = maildir:$dir/mail/%u/Maildir
mail_fsync = never
mail_max_userip_connections = 200
default_process_limit = 200
default_client_limit = 2000
shutdown_clients = yes

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/mail/%u
}

namespace inbox {
  inbox = yes
  separator = /
  mailbox Junk {
    auto = create
    special_use = \\Junk
  }
  mailbox Trash {
    auto = create
    special_use = \\Trash
  }
}

service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DOVECOT_IMAP_PORT
  }
  inet_listener imaps {
$(_dovecot_imaps_conf)
  }
  service_count = 0
}
EOF
		if [ -n "$DOVECOT_POP3_PORT" ]; then
			cat <<EOF
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DOVECOT_POP3_PORT
  }
  inet_listener pop3s {
    port = 0
  }
  service_count = 0
}
EOF
		else
			# pop3 is not in "protocols", but be explicit: no port 110/995.
			cat <<'EOF'
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF
		fi
		cat <<'EOF'
service submission-login {
  inet_listener submission {
    port = 0
  }
}
EOF
		if [ "$(id -u)" != 0 ]; then
			me=$(id -un)
			cat <<EOF
default_internal_user = $me
default_internal_group = $(id -gn)
default_login_user = $me
service imap-login {
  chroot =
}
service pop3-login {
  chroot =
}
EOF
		fi
		if [ -n "${DOVECOT_EXTRA_CONF:-}" ]; then
			printf '%s\n' "$DOVECOT_EXTRA_CONF"
		fi
	} > "$dir/dovecot.conf"
}

dovecot_start() {
	local dir=$1
	[ -d "$dir" ] || { echo "dovecot_start: no such directory: $dir" >&2; return 1; }
	chmod 0755 "$dir"
	# A previous instance in this directory (killed from outside, say) is
	# stopped and reaped first: Dovecot refuses to start while the pid in
	# base_dir/master.pid still exists, and a zombie does.
	[ -f "$dir/dovecot.pid" ] && dovecot_stop "$dir"
	DOVECOT_CONF=$dir/dovecot.conf
	if [ -f "$dir/ports" ]; then
		# A restart: keep the ports and the instance name.
		# shellcheck disable=SC1091
		. "$dir/ports"
	else
		DOVECOT_INSTANCE="pbtest-$$-$(basename "$dir")"
		DOVECOT_IMAP_PORT=$(pb_free_port) || return 1
		DOVECOT_POP3_PORT=
		if [ "${DOVECOT_POP3:-0}" = 1 ]; then
			DOVECOT_POP3_PORT=$(pb_free_port) || return 1
			# bind-then-close could hand out the same port twice
			while [ "$DOVECOT_POP3_PORT" = "$DOVECOT_IMAP_PORT" ]; do
				DOVECOT_POP3_PORT=$(pb_free_port) || return 1
			done
		fi
		printf 'DOVECOT_INSTANCE=%s\nDOVECOT_IMAP_PORT=%s\nDOVECOT_POP3_PORT=%s\n' \
			"$DOVECOT_INSTANCE" "$DOVECOT_IMAP_PORT" "$DOVECOT_POP3_PORT" > "$dir/ports"
	fi
	if _dovecot_ssl_wanted; then
		# Opt-in TLS: an imaps port, chosen once and kept in DIR/ports.
		if ! grep -q '^DOVECOT_IMAPS_PORT=' "$dir/ports"; then
			DOVECOT_IMAPS_PORT=$(pb_free_port) || return 1
			while [ "$DOVECOT_IMAPS_PORT" = "$DOVECOT_IMAP_PORT" ] ||
				[ "$DOVECOT_IMAPS_PORT" = "$DOVECOT_POP3_PORT" ]; do
				DOVECOT_IMAPS_PORT=$(pb_free_port) || return 1
			done
			printf 'DOVECOT_IMAPS_PORT=%s\n' "$DOVECOT_IMAPS_PORT" >> "$dir/ports"
		fi
		DOVECOT_IMAPS_PORT=$(sed -n 's/^DOVECOT_IMAPS_PORT=//p' "$dir/ports")
		export DOVECOT_IMAPS_PORT
	fi
	[ -f "$dir/users" ] || dovecot_write_users "$dir" || return 1
	mkdir -p "$dir/mail" "$dir/state" || return 1
	if [ "$(id -u)" = 0 ]; then
		chown 65534:65534 "$dir/mail" || return 1
	fi
	_dovecot_write_conf "$dir" || return 1
	# -F keeps the master in the foreground, so $! is its pid; it runs as a
	# background job of this shell (SIGINT ignored; the caller's trap stops it).
	/usr/sbin/dovecot -F -c "$DOVECOT_CONF" >> "$dir/dovecot.stderr" 2>&1 &
	DOVECOT_PID=$!
	# bash still reaps it, but says nothing when a test kills it on purpose
	disown "$DOVECOT_PID" 2>/dev/null
	echo "$DOVECOT_PID" > "$dir/dovecot.pid"
	if ! pb_wait_port "$DOVECOT_IMAP_PORT" 20 "$DOVECOT_PID"; then
		echo "dovecot_start: Dovecot in $dir did not come up on 127.0.0.1:$DOVECOT_IMAP_PORT" >&2
		cat "$dir/dovecot.stderr" >&2 2>/dev/null
		dovecot_log "$dir" 20 >&2
		dovecot_stop "$dir"
		return 1
	fi
	if _dovecot_ssl_wanted && ! _dovecot_wait_tls "$DOVECOT_IMAPS_PORT" 20 "$DOVECOT_PID"; then
		echo "dovecot_start: Dovecot imaps did not come up on 127.0.0.1:$DOVECOT_IMAPS_PORT" >&2
		dovecot_log "$dir" 20 >&2
		dovecot_stop "$dir"
		return 1
	fi
	if [ -n "$DOVECOT_POP3_PORT" ] && ! pb_wait_port "$DOVECOT_POP3_PORT" 20 "$DOVECOT_PID"; then
		echo "dovecot_start: Dovecot POP3 did not come up on 127.0.0.1:$DOVECOT_POP3_PORT" >&2
		dovecot_log "$dir" 20 >&2
		dovecot_stop "$dir"
		return 1
	fi
	return 0
}

# True while pid $1 exists and is not a zombie (an unreaped child still
# answers kill -0).
pb_alive() {
	local st
	kill -0 "$1" 2>/dev/null || return 1
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case $st in Z*|"") return 1 ;; esac
	return 0
}

pb_stop_pid() {
	local pid=$1 secs=${2:-10} i
	[ -n "$pid" ] || return 0
	pb_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 $((secs * 10))); do
		pb_alive "$pid" || break
		sleep 0.1
	done
	pb_alive "$pid" && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# Prints the pids of all descendants of $1 (not $1 itself).
_pb_descendants() {
	local kid
	for kid in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		echo "$kid"
		_pb_descendants "$kid"
	done
}

dovecot_stop() {
	local dir=$1 pid kids i
	[ -f "$dir/dovecot.pid" ] || return 0
	pid=$(cat "$dir/dovecot.pid")
	rm -f "$dir/dovecot.pid"
	[ -n "$pid" ] || return 0
	if ! pb_alive "$pid"; then
		{ wait "$pid"; } 2>/dev/null   # reap it if it is our child (quietly)
		return 0
	fi
	kids=$(_pb_descendants "$pid")
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 50); do
		pb_alive "$pid" || break
		sleep 0.1
	done
	# Whatever survived (a wedged master, or a child that outlived it)
	# gets SIGKILL; only pids that belonged to this instance.
	for p in $pid $kids; do
		kill -KILL "$p" 2>/dev/null
	done
	{ wait "$pid"; } 2>/dev/null
	return 0
}

dovecot_log() {
	tail -n "${2:-30}" "$1/dovecot.log" 2>/dev/null
}
