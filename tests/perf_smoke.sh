#!/bin/sh
# A smoke run of perf/run.sh with tiny counts against a build tree: every
# benchmark must print its line with sane fields, and the summary must name
# every target.  Timings are not looked at.  Usage: perf_smoke.sh SRC BUILD
set -eu
src=$1
build=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
LIMINAL_PERF_BUILD=$build LIMINAL_PERF_NO_BUILD=1 sh "$src/perf/run.sh" --smoke >"$out"
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
need() { # need BENCH IMPL_REGEX FIELD...
	b=$1
	i=$2
	shift 2
	line=$(grep "\"bench\":\"$b\"" "$out" | grep -E "\"impl\":\"$i\"" | head -1)
	[ -n "$line" ] || fail "no $b line for $i"
	for f in "$@"; do
		echo "$line" | grep -Eq "\"$f\":[0-9.]+[,}]" || fail "$b $i: no number for $f"
		echo "$line" | grep -Eq "\"$f\":0[,}]" && fail "$b $i: $f is zero"
	done
	return 0
}
for impl in liminal_io_uring_spin liminal_io_uring_sleep liminal_futex_sleep spin futex uds pipe eventfd; do
	need rtt "$impl" p50_ns p99_ns p999_ns cpu_ns_per_op reps
done
grep -q '"impl":"zmq"' "$out" || echo "note: no ZeroMQ line (libzmq missing)"
for impl in liminal_io_uring_spin spinring pipe uds; do
	need stream "$impl" msgs_per_s reps
done
need fanin 'liminal_.*' msgs_per_s p99_ns
need scale 'liminal_.*' p50_ns bytes_per_conv open_close_per_s
grep -q '"bench":"idle"' "$out" || fail "no idle line"
need crash_detect raw_pidfd_poll p50_ns p99_ns
need crash_detect liminal_recv_fail p50_ns p99_ns
need route_next_gap liminal_route_next p50_ns p99_ns
summary=$(grep '"summary"' "$out") || fail "no summary"
for k in rtt_spin_64_vs_raw_spin rtt_sleep_64_vs_raw_futex rtt_sleep_64_vs_uds \
	stream_vs_raw_spin_ring stream_vs_uds scale_100000_vs_1 one_core_spin_vs_raw_futex \
	fanin_8_spin_vs_sleep idle_cpu_fraction crash_return_vs_raw_pidfd route_next_gap_p99_ms; do
	echo "$summary" | grep -Eq "\"$k\":\{\"ratio\":[0-9.]+,\"target\":[0-9.]+,\"met\":(true|false)\}" ||
		fail "summary: $k missing or malformed"
done
n=$(wc -l <"$out")
echo "perf smoke: $n lines, every benchmark and target present"
