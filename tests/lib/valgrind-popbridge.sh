#!/bin/sh
# Runs build/popbridge under valgrind for the integration suite
# (make valgrind). Each process writes its report to $VG_LOG_DIR; an empty
# report means no memory error and no definite or indirect leak.
here=$(cd "$(dirname "$0")/../.." && pwd)
exec valgrind -q --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect \
	--show-leak-kinds=definite,indirect \
	--log-file="${VG_LOG_DIR:?}/vg.%p.log" "$here/build/popbridge" "$@"
