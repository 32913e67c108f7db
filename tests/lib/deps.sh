#!/bin/sh
# Installs Debian packages when any is missing. Safe to run again: it only
# asks apt when something is absent.
#
#   deps.sh                   what popbridge needs to build and test
#   deps.sh LABEL PKG...      those packages (tests/fuzz/deps.sh and
#                             tests/bench/deps.sh name theirs this way)
set -e
label="deps"
pkgs="build-essential pkg-config libuv1-dev libssl-dev libinih-dev
libcriterion-dev dovecot-imapd dovecot-core fetchmail mpop curl python3
openssl procps man-db groff-base valgrind neomutt tmux
libcurl4-openssl-dev libjansson-dev"
if [ $# -gt 0 ]; then
	label=$1
	shift
	pkgs="$*"
fi
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	echo "$label: installing$missing"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -q --no-install-recommends $missing
fi
# The OAuth tests' server (Node.js, oidc-provider) with the default list.
if [ "$label" = deps ]; then
	sh "$(dirname "$0")/oauth-deps.sh"
fi
