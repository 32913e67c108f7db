#!/bin/sh
# Installs what tests/integration/test_servers.py needs besides deps.sh:
#
#   - GNU Mailutils imap4d and sasl2-bin (saslpasswd2), with apt;
#   - Cyrus IMAP (cyrus-imapd, cyrus-common) unpacked into a private root,
#     NOT installed: both declare "Conflicts: imap-server", so apt would
#     remove dovecot-imapd. `apt-get download` + `dpkg -x` put the binaries
#     under $CYRUS_ROOT (default build/cyrus/root); the libraries they link
#     (the lib* packages of their Depends) are installed with apt. Nothing of
#     Dovecot's is touched; no Cyrus service, user or file outside
#     $CYRUS_ROOT is created.
#
#   sh tests/lib/servers-deps.sh          (make deps runs it)
#
# Safe to run again: when the root and a stamp are in place it only asks
# dpkg whether the packages are still there (well under a second).
# Needs root (or sudo) and Debian's package mirrors, like deps.sh.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
CYRUS_ROOT=${CYRUS_ROOT:-$TOP/build/cyrus/root}
STAMP=$CYRUS_ROOT/.popbridge-stamp
BIN=$CYRUS_ROOT/usr/lib/cyrus/bin

had_imap4d=no
if dpkg-query -W -f='${Status}' mailutils-imap4d 2>/dev/null | grep -q "ok installed"; then
	had_imap4d=yes
fi
sh "$HERE/deps.sh" servers-deps mailutils-imap4d sasl2-bin libsasl2-modules netbase
# The package enables a system imap4d on port 143, next to the system
# Dovecot's: the tests start their own, so one installed here is switched
# off again (where systemd runs; without systemd the package starts nothing).
if [ "$had_imap4d" = no ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO="sudo"
	$SUDO systemctl disable --now mailutils-imap4d.service >/dev/null 2>&1 || true
fi

# The unpacked libraries (libcyrus*.so), for LD_LIBRARY_PATH.
libdir() {
	echo "$CYRUS_ROOT"/usr/lib/*-linux-gnu
}

# ldd_ok: every binary the tests run finds all its libraries.
ldd_ok() {
	LIBDIR=$(libdir)
	for b in master imapd ctl_cyrusdb; do
		[ -x "$BIN/$b" ] || return 1
		if LD_LIBRARY_PATH=$LIBDIR ldd "$BIN/$b" 2>/dev/null | grep -q "not found"; then
			return 1
		fi
	done
	return 0
}

if [ -f "$STAMP" ]; then
	# shellcheck disable=SC2046
	sh "$HERE/deps.sh" servers-deps $(sed -n 's/^libs=//p' "$STAMP")
	ldd_ok && exit 0
	echo "servers-deps: $CYRUS_ROOT is incomplete; unpacking again"
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
dl=$(mktemp -d "${TMPDIR:-/tmp}/cyrus-debs.XXXXXX")
trap 'rm -rf "$dl"' EXIT
# apt-get download writes into the current directory; as root it warns that
# the _apt user cannot write there (harmless): the directory is made
# world-writable only for the download.
chmod 0777 "$dl"
echo "servers-deps: downloading cyrus-imapd and cyrus-common"
if ! (cd "$dl" && apt-get download -q cyrus-imapd cyrus-common); then
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q
	(cd "$dl" && apt-get download -q cyrus-imapd cyrus-common)
fi
# The libraries: lib* alternatives of both packages' Depends (the rest -
# an MTA, adduser, debconf, perl - serve the packaged service, not us).
libs=$(for d in "$dl"/*.deb; do dpkg-deb -f "$d" Depends; done |
	tr ',' '\n' | sed 's/|.*//; s/(.*//; s/[[:space:]]//g; s/:any$//' |
	grep '^lib' | sort -u | tr '\n' ' ')
# shellcheck disable=SC2086
sh "$HERE/deps.sh" servers-deps $libs

new=$CYRUS_ROOT.new
rm -rf "$new"
mkdir -p "$new"
for d in "$dl"/*.deb; do
	dpkg -x "$d" "$new"
done
version=$(dpkg-deb -f "$dl"/cyrus-imapd_*.deb Version)
printf 'version=%s\nlibs=%s\n' "$version" "$libs" > "$new/.popbridge-stamp"
rm -rf "$CYRUS_ROOT"
mv "$new" "$CYRUS_ROOT"
if ! ldd_ok; then
	echo "servers-deps: Cyrus binaries in $CYRUS_ROOT miss libraries:" >&2
	LIBDIR=$(libdir)
	for b in master imapd ctl_cyrusdb; do
		LD_LIBRARY_PATH=$LIBDIR ldd "$BIN/$b" 2>&1 | grep "not found" >&2
	done
	exit 1
fi
echo "servers-deps: Cyrus $version unpacked into $CYRUS_ROOT"
