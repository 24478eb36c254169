#!/bin/sh
# The two entry points of the README's quick start.
#   scripts/dev.sh demo   install what is missing, build, run `liminal demo`
#   scripts/dev.sh test   install what is missing, build, run the whole suite:
#                         both wait backends, then again under ASan and UBSan
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

build() { # build DIR [cmake options...]
	dir=$1
	shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$dir" -j "$jobs" >/dev/null
}

sh scripts/deps.sh
case "${1:-}" in
demo)
	build build
	./build/tools/liminal demo
	;;
test)
	build build
	(cd build && ctest --output-on-failure -j "$jobs")
	build build-asan -DLIMINAL_SANITIZE=ON
	(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		ctest --output-on-failure -j "$jobs")
	;;
*)
	echo "usage: scripts/dev.sh demo|test" >&2
	exit 2
	;;
esac
