#!/bin/sh
# Runs every benchmark of perf/ against its baselines in one go, on an
# optimised build, and prints one JSON object per line, then one summary
# object whose keys name the speed targets: {"ratio": R, "target": T,
# "met": true|false}.
#
#   perf/run.sh           the full run (under fifteen minutes on 2 cores)
#   perf/run.sh --quick   the same fields from short runs (under two minutes)
#   perf/run.sh --plot    also draw the round-trip percentiles (perf/rtt.svg)
#   perf/run.sh --smoke   tiny counts: checks the harness, not the speed
set -eu
cd "$(dirname "$0")/.."
mode=full
plot=0
for arg in "$@"; do
	case $arg in
	--quick) mode=quick ;;
	--smoke) mode=smoke ;;
	--plot) plot=1 ;;
	*) echo "usage: perf/run.sh [--quick|--smoke] [--plot]" >&2; exit 2 ;;
	esac
done
case $mode in
full) iters=20000 sleep_iters=5000 warm=2000 stream=2000000 fan=5000 scale_iters=5000 reps=5 idle_ms=3000 crash=100 ;;
quick) iters=5000 sleep_iters=1000 warm=2000 stream=300000 fan=1000 scale_iters=1000 reps=3 idle_ms=1000 crash=30 ;;
smoke) iters=200 sleep_iters=50 warm=20 stream=2000 fan=50 scale_iters=50 reps=3 idle_ms=100 crash=3 ;;
esac

# Every round trip, liminal's and the baselines', gets the same warm-up
# (but bench_base's spin ping-pong on one core, which caps its own, since
# each of its round trips there costs a scheduler slice).
# On this kind of machine the first 1 000-2 000 sleeping round trips after
# start run at 25-30 us and then settle at about 42 us for good; when the
# baselines took a tenth of their count as warm-up and liminal 2 000, short
# runs compared the baselines' start against liminal's steady state.
build=${LIMINAL_PERF_BUILD:-build-perf}
if [ "${LIMINAL_PERF_NO_BUILD:-0}" != 1 ]; then
	sh scripts/deps.sh
	cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLIMINAL_TESTS=OFF >/dev/null
	cmake --build "$build" -j "$(nproc)" >/dev/null
fi
L=$build/perf/bench_liminal
B=$build/perf/bench_base
C=$build/perf/bench_crash
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() { "$@" | tee -a "$out"; }

# 1. Round trips, 64 B and 4 KiB, on two cores and on one.
for size in 64 4096; do
	for cpus in 0,1 0,0; do
		# A spin on one core costs whole scheduler slices: fewer rounds.
		n=$iters
		[ "$cpus" = 0,0 ] && n=$sleep_iters
		run $L --bench rtt --size $size --iters $n --reps $reps --warmup $warm --cpus $cpus
		run $L --bench rtt --size $size --iters $sleep_iters --reps $reps --warmup $warm --cpus $cpus --spin 0
		LIMINAL_WAIT=futex run $L --bench rtt --size $size --iters $sleep_iters --reps $reps --warmup $warm \
			--cpus $cpus --spin 0
		for impl in spin futex uds pipe eventfd zmq; do
			m=$sleep_iters
			[ $impl = spin ] && m=$n
			run $B --bench rtt --impl $impl --size $size --iters $m --reps $reps --warmup $warm --cpus $cpus
		done
	done
done

# 1b. The round-trip targets, paired.  The host behind this kind of machine
# changes speed for minutes at a time (the raw spin round trip goes from
# 0.12 to 0.49 us), so two figures taken a minute apart may come from
# different periods: one full run put liminal's spin in a slow one and the
# raw ping-pong in a fast one, 6.8x.  Here liminal and its baseline run back
# to back, round after round; each round gives one ratio, and the summary
# takes the median of the rounds'.
p50() { sed -n 's/.*"p50_ns":\([0-9.]*\).*/\1/p'; }
paired() { # paired TARGET ROUND NUM DEN
	awk -v t="$1" -v r="$2" -v a="$3" -v b="$4" 'BEGIN {
		printf("{\"bench\":\"paired\",\"target\":\"%s\",\"round\":%d,\"num_p50_ns\":%s,\"den_p50_ns\":%s,\"ratio\":%.3f}\n",
		       t, r, a, b, b > 0 ? a / b : 0)
	}' | tee -a "$out"
}
for r in $(seq $reps); do
	a=$($L --bench rtt --size 64 --iters $iters --reps 1 --warmup $warm --cpus 0,1 | p50)
	b=$($B --bench rtt --impl spin --size 64 --iters $iters --reps 1 --warmup $warm --cpus 0,1 | p50)
	paired rtt_spin_64_vs_raw_spin "$r" "$a" "$b"
	a=$($L --bench rtt --size 64 --iters $sleep_iters --reps 1 --warmup $warm --cpus 0,1 --spin 0 | p50)
	b=$($B --bench rtt --impl futex --size 64 --iters $sleep_iters --reps 1 --warmup $warm --cpus 0,1 | p50)
	c=$($B --bench rtt --impl uds --size 64 --iters $sleep_iters --reps 1 --warmup $warm --cpus 0,1 | p50)
	paired rtt_sleep_64_vs_raw_futex "$r" "$a" "$b"
	paired rtt_sleep_64_vs_uds "$r" "$a" "$c"
done

# 2. One-way stream of 64 B messages.
run $L --bench stream --size 64 --iters $stream --reps $reps --cpus 0,1
for impl in spinring pipe uds; do
	run $B --bench stream --impl $impl --size 64 --iters $stream --reps $reps --cpus 0,1
done

# 3. Fan-in: clients calling one server.
for k in 1 2 4 8; do
	run $L --bench fanin --clients $k --iters $fan --reps $reps --warmup $warm
	run $L --bench fanin --clients $k --iters $fan --reps $reps --warmup $warm --spin 0
done

# 4. Scale: one busy conversation among many idle ones.
for c in 1 100 10000 100000; do
	run $L --bench scale --convs $c --iters $scale_iters --reps $reps --warmup $warm --cpus 0,1
done

# 5. Idle cost of a server blocked in lmn_next.
run $L --bench idle --ms $idle_ms

# 6. Crash detection and the ROUTE_NEXT gap.
run $C $crash

# The summary: ratios in this run against the targets.
awk -v out="$out" '
function field(line, key,    m) {
	# A quoted value runs to the next quote (it may hold commas); a
	# number runs to the next comma or brace.
	if (match(line, "\"" key "\":\"[^\"]*")) {
		m = substr(line, RSTART, RLENGTH)
		sub("\"" key "\":\"", "", m)
		return m
	}
	if (match(line, "\"" key "\":[^,}]*")) {
		m = substr(line, RSTART, RLENGTH)
		sub("\"" key "\":", "", m)
		return m
	}
	return ""
}
function pick(bench, impl, size, cpus, extra_key, extra_val, key,    i) {
	for (i = 1; i <= n; i++)
		if (field(L[i], "bench") == bench && field(L[i], "impl") ~ impl &&
		    (size == "" || field(L[i], "size") == size) &&
		    (cpus == "" || field(L[i], "cpus") == cpus) &&
		    (extra_key == "" || field(L[i], extra_key) == extra_val))
			return field(L[i], key) + 0
	return 0
}
# The median ratio of the paired rounds of a target, or -1 if none ran.
function paired_median(name,    i, k, j, v, tmp) {
	k = 0
	for (i = 1; i <= n; i++)
		if (field(L[i], "bench") == "paired" && field(L[i], "target") == name)
			v[++k] = field(L[i], "ratio") + 0
	if (!k)
		return -1
	for (i = 2; i <= k; i++)
		for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
			tmp = v[j]; v[j] = v[j - 1]; v[j - 1] = tmp
		}
	return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
}
# cmp: "le" (at most t), "lt" (under t: "beats", "under 1 %") or "ge".
function target(name, num, den, t, cmp,    r, met) {
	r = den > 0 ? num / den : 0
	if (paired_median(name) >= 0) {
		r = paired_median(name)
		den = 1
	}
	met = den > 0 && (cmp == "le" ? r <= t : cmp == "lt" ? r < t : r >= t)
	s = s (s == "" ? "" : ",") sprintf("\"%s\":{\"ratio\":%.3f,\"target\":%s,\"met\":%s}",
					   name, r, t, met ? "true" : "false")
}
{ L[++n] = $0 }
END {
	s = ""
	target("rtt_spin_64_vs_raw_spin",
	       pick("rtt", "^liminal_io_uring_spin$", 64, "0,1", "", "", "p50_ns"),
	       pick("rtt", "^spin$", 64, "0,1", "", "", "p50_ns"), 1.5, "le")
	target("rtt_sleep_64_vs_raw_futex",
	       pick("rtt", "^liminal_io_uring_sleep$", 64, "0,1", "", "", "p50_ns"),
	       pick("rtt", "^futex$", 64, "0,1", "", "", "p50_ns"), 1.1, "le")
	target("rtt_sleep_64_vs_uds",
	       pick("rtt", "^liminal_io_uring_sleep$", 64, "0,1", "", "", "p50_ns"),
	       pick("rtt", "^uds$", 64, "0,1", "", "", "p50_ns"), 1.0, "lt")
	target("stream_vs_raw_spin_ring",
	       pick("stream", "^liminal", 64, "", "", "", "msgs_per_s"),
	       pick("stream", "^spinring$", 64, "", "", "", "msgs_per_s"), 0.5, "ge")
	target("stream_vs_uds",
	       pick("stream", "^liminal", 64, "", "", "", "msgs_per_s"),
	       pick("stream", "^uds$", 64, "", "", "", "msgs_per_s"), 10, "ge")
	target("scale_100000_vs_1",
	       pick("scale", "^liminal", "", "", "convs", 100000, "p50_ns"),
	       pick("scale", "^liminal", "", "", "convs", 1, "p50_ns"), 1.1, "le")
	target("one_core_spin_vs_raw_futex",
	       pick("rtt", "^liminal_io_uring_spin$", 64, "0,0", "", "", "p50_ns"),
	       pick("rtt", "^futex$", 64, "0,0", "", "", "p50_ns"), 1.2, "le")
	target("fanin_8_spin_vs_sleep",
	       pick("fanin", "_spin$", "", "", "clients", 8, "msgs_per_s"),
	       pick("fanin", "_sleep$", "", "", "clients", 8, "msgs_per_s"), 1.0, "ge")
	target("idle_cpu_fraction", pick("idle", "^liminal", "", "", "", "", "cpu_fraction"), 1,
	       0.01, "lt")
	target("crash_return_vs_raw_pidfd",
	       pick("crash_detect", "^liminal_recv_fail$", "", "", "", "", "p50_ns"),
	       pick("crash_detect", "^raw_pidfd_poll$", "", "", "", "", "p50_ns"), 1.2, "le")
	target("route_next_gap_p99_ms",
	       pick("route_next_gap", "^liminal_route_next$", "", "", "", "", "p99_ns") / 1e6, 1,
	       1, "lt")
	printf("{\"summary\":{%s}}\n", s)
}' "$out"

if [ $plot = 1 ]; then
	sh perf/plot.sh "$out" perf/rtt.svg
fi
