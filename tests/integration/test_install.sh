#!/bin/sh
# make install, checked in a temporary DESTDIR.
#
#   sh tests/integration/test_install.sh
#
# Installs with PREFIX=/usr/local, then checks each file and its mode, that
# the installed program runs and accepts the installed configuration, the
# man pages (man --warnings, when man is installed), the unit
# (systemd-analyze verify, when systemd is installed), that a second install
# keeps an edited configuration, that other PREFIX/SYSCONFDIR values reach
# the unit, and make uninstall. Prints one "ok - ..." / "not ok - ..." line
# per check and, last, "N passed, M failed"; exits 1 when anything failed.
# Builds build/popbridge (make install depends on it) and removes everything
# else it creates.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/popbridge-install.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

PASS=0
FAIL=0
pass() { PASS=$((PASS + 1)); echo "ok - $1"; }
fail() {
	FAIL=$((FAIL + 1))
	echo "not ok - $1"
	shift
	for l in "$@"; do printf '    %s\n' "$l"; done
}
check() {	# check NAME COMMAND...: ok when COMMAND succeeds
	name=$1
	shift
	if out=$("$@" 2>&1); then
		pass "$name"
	else
		fail "$name" "$(printf '%s\n' "$out" | tail -n 8)"
	fi
}
note() { echo "# $*"; }

mode_of() { stat -c %a "$1" 2>/dev/null || echo missing; }

check_file() {	# check_file PATH MODE
	m=$(mode_of "$D$1")
	if [ "$m" = "$2" ]; then
		pass "installed $1 (mode $2)"
	else
		fail "installed $1 (mode $2)" "found: $m"
	fi
}

install_into() {	# install_into DESTDIR [make variables...]
	dest=$1
	shift
	make -C "$ROOT" --no-print-directory install DESTDIR="$dest" "$@" \
		>"$TMP/make.log" 2>&1
}

D=$TMP/root
if install_into "$D" PREFIX=/usr/local; then
	pass "make install DESTDIR=... PREFIX=/usr/local"
else
	fail "make install DESTDIR=... PREFIX=/usr/local" \
		"$(tail -n 15 "$TMP/make.log")"
	echo "$PASS passed, $FAIL failed"
	exit 1
fi

check_file /usr/local/sbin/popbridge 755
check_file /usr/local/share/man/man8/popbridge.8 644
check_file /usr/local/share/man/man5/popbridge.ini.5 644
check_file /usr/local/lib/systemd/system/popbridge.service 644
check_file /etc/popbridge.ini 644
if [ -e "$D/etc/popbridge.ini.sample" ]; then
	fail "no popbridge.ini.sample on a first install"
else
	pass "no popbridge.ini.sample on a first install"
fi
check "installed config is the sample" cmp "$ROOT/etc/popbridge.ini" \
	"$D/etc/popbridge.ini"
unexpected=$(cd "$D" && find . -type f | sort | grep -v -x \
	-e ./usr/local/sbin/popbridge \
	-e ./usr/local/share/man/man8/popbridge.8 \
	-e ./usr/local/share/man/man5/popbridge.ini.5 \
	-e ./usr/local/lib/systemd/system/popbridge.service \
	-e ./etc/popbridge.ini)
if [ -z "$unexpected" ]; then
	pass "nothing else installed"
else
	fail "nothing else installed" "$unexpected"
fi

# The installed program runs and accepts the installed configuration.
BIN=$D/usr/local/sbin/popbridge
check "popbridge --version" sh -c \
	"'$BIN' --version | grep -q '^popbridge [0-9]'"
check "popbridge --check-config on the installed configuration" \
	"$BIN" -c "$D/etc/popbridge.ini" --check-config

# The unit names the installed paths and keeps the hardening.
UNIT=$D/usr/local/lib/systemd/system/popbridge.service
check "unit: ExecStart runs the installed program" grep -qx \
	'ExecStart=/usr/local/sbin/popbridge -c /etc/popbridge.ini' "$UNIT"
for line in 'Type=simple' 'ExecReload=/bin/kill -HUP $MAINPID' \
	'DynamicUser=yes' 'StateDirectory=popbridge' 'ProtectSystem=strict' \
	'NoNewPrivileges=yes' 'CapabilityBoundingSet=' 'Restart=on-failure' \
	'TimeoutStopSec=40'; do
	check "unit: $line" grep -qxF "$line" "$UNIT"
done
# The unit's StateDirectory is the configuration's default state dir.
check "unit: state directory matches [state] dir" sh -c \
	"'$BIN' -c '$D/etc/popbridge.ini' --check-config |
	 grep -qx 'dir = /var/lib/popbridge'"
grace=$("$BIN" -c "$D/etc/popbridge.ini" --check-config |
	sed -n 's/^shutdown_grace = //p')
stop=$(sed -n 's/^TimeoutStopSec=//p' "$UNIT")
if [ -n "$grace" ] && [ -n "$stop" ] && [ "$stop" -gt "$grace" ]; then
	pass "unit: TimeoutStopSec ($stop) > shutdown_grace ($grace)"
else
	fail "unit: TimeoutStopSec ($stop) > shutdown_grace ($grace)"
fi

# Man pages: groff's warnings, and nothing on stderr.
if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
	for page in man8/popbridge.8 man5/popbridge.ini.5; do
		f=$D/usr/local/share/man/$page
		out=$(man --warnings -E UTF-8 -l -Tutf8 -Z "$f" 2>&1 >/dev/null)
		if [ $? -eq 0 ] && [ -z "$out" ]; then
			pass "man --warnings $page"
		else
			fail "man --warnings $page" "$out"
		fi
	done
	# Every key of the configuration has its entry in popbridge.ini(5).
	keys=$("$BIN" -c "$D/etc/popbridge.ini" --check-config |
		sed -n 's/^;* *\([a-z0-9_]*\) =.*/\1/p')
	text=$(MANWIDTH=200 man -l "$D/usr/local/share/man/man5/popbridge.ini.5" \
		2>/dev/null | col -b)
	missing=""
	for k in $keys; do
		printf '%s\n' "$text" | grep -q "^       $k = " ||
			missing="$missing $k"
	done
	if [ -n "$keys" ] && [ -z "$missing" ]; then
		pass "popbridge.ini(5) has an entry for every key"
	else
		fail "popbridge.ini(5) has an entry for every key" \
			"missing:$missing"
	fi
	# ... and gives the default the program has (empty shown "(empty)").
	: >"$TMP/empty.ini"
	"$BIN" -c "$TMP/empty.ini" --check-config |
		sed -n 's/^\([a-z0-9_]*\) = *\(.*\)$/\1 = \2/p' |
		sed 's/ = $/ = (empty)/' >"$TMP/defaults.prog"
	printf '%s\n' "$text" | sed -n 's/^       \([a-z0-9_]*\) = /\1 = /p' |
		sed 's/  */ /g' >"$TMP/defaults.man"
	wrong=$(grep -v -x -F -f "$TMP/defaults.man" "$TMP/defaults.prog")
	if [ -s "$TMP/defaults.prog" ] && [ -z "$wrong" ]; then
		pass "popbridge.ini(5) shows the program's defaults"
	else
		fail "popbridge.ini(5) shows the program's defaults" \
			"program default not in the man page: $wrong"
	fi
else
	note "skip man page checks: man or groff not installed" \
		"(apt-get install man-db groff-base)"
fi

# systemd-analyze verify wants ExecStart to exist and runs man for
# Documentation=, so check a copy that points into DESTDIR.
if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir -p "$TMP/verify"
	sed "s|^ExecStart=/usr/local/sbin/popbridge|ExecStart=$BIN|" "$UNIT" \
		>"$TMP/verify/popbridge.service"
	out=$(MANPATH=$D/usr/local/share/man \
		systemd-analyze verify "$TMP/verify/popbridge.service" 2>&1)
	if [ $? -eq 0 ] && [ -z "$out" ]; then
		pass "systemd-analyze verify popbridge.service"
	else
		fail "systemd-analyze verify popbridge.service" "$out"
	fi
else
	note "skip systemd-analyze verify: systemd not installed"
fi

# A second install never overwrites an existing configuration.
echo "; edited by the administrator" >>"$D/etc/popbridge.ini"
cp "$D/etc/popbridge.ini" "$TMP/edited.ini"
if install_into "$D" PREFIX=/usr/local; then
	pass "make install again"
else
	fail "make install again" "$(tail -n 15 "$TMP/make.log")"
fi
check "existing popbridge.ini kept" cmp "$TMP/edited.ini" "$D/etc/popbridge.ini"
check_file /etc/popbridge.ini.sample 644
check "popbridge.ini.sample is the new sample" cmp "$ROOT/etc/popbridge.ini" \
	"$D/etc/popbridge.ini.sample"

# make uninstall removes what install put there, except the configuration.
if make -C "$ROOT" --no-print-directory uninstall DESTDIR="$D" \
	PREFIX=/usr/local >"$TMP/make.log" 2>&1; then
	pass "make uninstall"
else
	fail "make uninstall" "$(tail -n 15 "$TMP/make.log")"
fi
left=$(cd "$D" && find . -type f | sort | tr '\n' ' ')
if [ "$left" = "./etc/popbridge.ini " ]; then
	pass "uninstall leaves only the configuration"
else
	fail "uninstall leaves only the configuration" "left: $left"
fi

# Other directories reach the file locations and the unit.
D=$TMP/other
if install_into "$D" PREFIX=/opt/popbridge SYSCONFDIR=/etc/popbridge \
	SYSTEMDUNITDIR=/etc/systemd/system; then
	pass "make install PREFIX=/opt/popbridge SYSCONFDIR=/etc/popbridge"
else
	fail "make install PREFIX=/opt/popbridge SYSCONFDIR=/etc/popbridge" \
		"$(tail -n 15 "$TMP/make.log")"
fi
check_file /opt/popbridge/sbin/popbridge 755
check_file /opt/popbridge/share/man/man8/popbridge.8 644
check_file /etc/popbridge/popbridge.ini 644
check "unit: ExecStart follows PREFIX and SYSCONFDIR" grep -qx \
	'ExecStart=/opt/popbridge/sbin/popbridge -c /etc/popbridge/popbridge.ini' \
	"$D/etc/systemd/system/popbridge.service"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
