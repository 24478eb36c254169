#!/bin/sh
# Draws the round-trip percentiles (p50, p99, p99.9) of every implementation
# from the JSON lines of perf/run.sh: one group of bars per implementation,
# 64 B on two cores, log scale.  Usage: perf/plot.sh RESULTS.jsonl OUT.svg|OUT.png
set -eu
in=$1
outfile=$2
command -v gnuplot >/dev/null || { echo "perf/plot.sh: gnuplot is not installed" >&2; exit 1; }
data=$(mktemp)
trap 'rm -f "$data"' EXIT
awk '
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
field($0, "bench") == "rtt" && field($0, "size") == "64" && field($0, "cpus") == "0,1" {
	printf "%s %s %s %s\n", field($0, "impl"), field($0, "p50_ns") / 1000,
	       field($0, "p99_ns") / 1000, field($0, "p999_ns") / 1000
}' "$in" >"$data"
case $outfile in
*.png) term="pngcairo size 1000,500" ;;
*) term="svg size 1000,500" ;;
esac
gnuplot <<GP
set terminal $term
set output "$outfile"
set title "Round trip, 64 B, client and server on separate cores"
set ylabel "microseconds (log)"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set key top left
plot "$data" using 2:xtic(1) title "p50", "" using 3 title "p99", "" using 4 title "p99.9"
GP
echo "perf/plot.sh: wrote $outfile" >&2
