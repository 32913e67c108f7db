#!/bin/sh
# Installs what `make bench` needs beyond tests/lib/deps.sh, when missing:
# dovecot-pop3d (Dovecot's own POP3 server, the reference peer for figure 3)
# and gcc. Best effort: without dovecot-pop3d figure 3 is skipped.
pkgs="dovecot-pop3d gcc"
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
echo "bench deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || exit 1
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
