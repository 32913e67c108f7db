#!/bin/sh
# Installs what `make fuzz` needs, when any is missing: clang, Debian's
# libFuzzer runtime (libclang_rt.fuzzer, in libclang-rt-N-dev; the
# libclang-rt-dev package follows the default clang) and the libraries the
# fuzzed sources link with.
exec sh "$(dirname "$0")/../lib/deps.sh" "fuzz deps" \
	clang libclang-rt-dev libinih-dev libssl-dev
