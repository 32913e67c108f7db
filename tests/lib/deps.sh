#!/bin/sh
# Installs the Debian packages popbridge needs to build and test, when any
# is missing. Safe to run again: it only asks apt when something is absent.
set -e
pkgs="build-essential pkg-config libuv1-dev libssl-dev libinih-dev
libcriterion-dev dovecot-imapd dovecot-core fetchmail mpop curl python3
openssl procps man-db groff-base valgrind"
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
