#!/bin/sh
# Installs what `make bench` needs beyond tests/lib/deps.sh, when missing:
# dovecot-pop3d (Dovecot's own POP3 server, the reference peer for figure 3)
# and gcc. Best effort: without dovecot-pop3d figure 3 is skipped.
exec sh "$(dirname "$0")/../lib/deps.sh" "bench deps" dovecot-pop3d gcc
