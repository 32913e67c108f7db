#!/bin/sh
# Runs each libFuzzer target for FUZZ_SECONDS (default 60) on a copy of its
# seed corpus, so that what the run finds stays in build/fuzz/ and the
# corpus in the repository changes only by hand. Fails when any target
# crashes, leaks, hangs or breaks an invariant; the input that did it is in
# build/fuzz/artifacts-TARGET/.
#
#   sh tests/fuzz/run.sh [TARGET...]      (default: all four)
set -u
seconds=${FUZZ_SECONDS:-60}
dir=build/fuzz
here=tests/fuzz
[ $# -gt 0 ] || set -- fuzz_pop3_parse fuzz_imap_parse fuzz_config fuzz_session
failed=""
for t in "$@"; do
	case $t in
	fuzz_pop3_parse) max_len=4096 ;;
	fuzz_imap_parse) max_len=65536 ;;
	fuzz_config) max_len=8192 ;;
	fuzz_session) max_len=65536 ;;
	*) echo "fuzz: unknown target $t" >&2; exit 2 ;;
	esac
	corpus=$dir/corpus-$t
	artifacts=$dir/artifacts-$t/
	log=$dir/$t.log
	rm -rf "$corpus"
	mkdir -p "$corpus" "$artifacts"
	cp "$here"/corpus/"$t"/* "$corpus"/
	dict=""
	[ -f "$here/$t.dict" ] && dict="-dict=$here/$t.dict"
	echo "== $t: ${seconds}s, max_len $max_len, log $log"
	if "$dir/$t" -max_total_time="$seconds" -max_len="$max_len" \
	    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix="$artifacts" $dict "$corpus" >"$log" 2>&1; then
		grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log"
	else
		failed="$failed $t"
		echo "!! $t failed; the end of $log:"
		tail -n 60 "$log"
		ls -l "$artifacts"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed"
	exit 1
fi
echo "fuzz: no crash in $*"
