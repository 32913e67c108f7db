#!/bin/sh
# Installs what `make fuzz` needs, when any is missing: clang, Debian's
# libFuzzer runtime (libclang_rt.fuzzer, in libclang-rt-N-dev; the
# libclang-rt-dev package follows the default clang) and the libraries the
# fuzzed sources link with. Safe to run again: it only asks apt when
# something is absent.
set -e
pkgs="clang libclang-rt-dev libinih-dev libssl-dev"
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
echo "fuzz deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
