#!/bin/sh
# coord_report.sh DIR - the tables and plots of a coordination matrix run
# (bench/coord_run.sh) from DIR/coord.tsv and DIR/coord_timeline.tsv: the
# tables on stdout, PNG plots into DIR with gnuplot.  It can be run again on
# the files of an earlier run.  Without gnuplot it says so and prints the
# tables only.
set -u

dir=${1:-bench}
raw=$dir/coord.tsv
tl=$dir/coord_timeline.tsv
[ -s "$raw" ] || { echo "coord_report: no $raw" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/coord-report.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
tsv=$work/median.tsv

# ---- medians of the rounds -------------------------------------------------------
# Columns of coord.tsv: 1 where, 2 mode, 3 writers, 4 readers, 5 size,
# 6 records per writer, 7 pace_us, 8 stopped, 9 records/s, 10 vs pipe,
# 11 p50 ns, 12 p99 ns, 13 max ns, 14 cpu ns/rec (the daemon's included),
# 15 daemon ns/rec, 16 core ns/rec, 17 slow %, 18 sleeps/krec,
# 19 preempted/krec, 20 samples, 21 % of the CPUs other processes used,
# 22 % stolen by the hypervisor, 23 round, 24 disturbed (1: other
# processes and the hypervisor took more than coord -Q allows in a case of
# the round),
# 25 result.  median.tsv: the same columns 1-20, each the median of the
# case's rounds that passed and were not disturbed (of all that passed if
# every one was), then 21 the rounds used, 22 and 23 the smallest and
# largest vs pipe of those, 24 and 25 the largest others and steal of
# those, 26 result (FAILED if any round failed).
awk -F'\t' -v OFS='\t' '
function median(list,   v, n, i, j, x) {
	n = split(list, v, " ")
	if (!n)
		return "n/a"
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
			x = v[j]; v[j] = v[j - 1]; v[j - 1] = x
		}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
NR == 1 { next }
{
	k = $1 OFS $2 OFS $3 OFS $4 OFS $5 OFS $6 OFS $7 OFS $8
	if (!(k in seen)) {
		seen[k] = 1
		order[++n] = k
	}
	if ($25 != "ok") {
		bad[k] = 1
		next
	}
	# Two sets: the rounds not disturbed, and all.
	for (d = ($24 == 1); d <= 1; d++) {
		ok[k, d]++
		for (c = 9; c <= 20; c++)
			if ($c != "n/a")
				v[k, d, c] = v[k, d, c] " " $c
		if (!((k, d, "lo") in v) || $10 < v[k, d, "lo"]) v[k, d, "lo"] = $10
		if (!((k, d, "hi") in v) || $10 > v[k, d, "hi"]) v[k, d, "hi"] = $10
		if ($21 + 0 > v[k, d, "oth"]) v[k, d, "oth"] = $21 + 0
		if ($22 + 0 > v[k, d, "st"]) v[k, d, "st"] = $22 + 0
	}
}
END {
	for (i = 1; i <= n; i++) {
		k = order[i]
		d = ((k, 0) in ok) ? 0 : 1
		line = k
		for (c = 9; c <= 20; c++)
			line = line OFS median(v[k, d, c])
		print line, ok[k, d] + 0, v[k, d, "lo"], v[k, d, "hi"], v[k, d, "oth"] + 0,
			v[k, d, "st"] + 0, (k in bad) ? "FAILED" : "ok"
	}
}' "$raw" >"$tsv"

# ---- the stopped writer over time -----------------------------------------------
# For each mode and size, the first round of the stopped case that passed
# undisturbed (else the first that passed): its timeline for the plot, and
# from it the other writers' records per ms while writer 0 was stopped the
# whole ms and while it ran the whole ms, and the stopped ms in which they
# moved nothing (up to their last record).
for z in 64 4096; do
	for m in pipe lock queues shared; do
		r=$(awk -F'\t' -v z=$z -v m=$m 'NR > 1 && $1 == "mount" && $2 == m &&
			$5 == z && $8 == 1 && $25 == "ok" {
				if ($24 == 0 && !c) c = $23
				if (!a) a = $23
			} END { print c ? c : a ? a : 1 }' "$raw")
		awk -F'\t' -v z=$z -v m=$m -v r="$r" 'NR > 1 && $1 == "mount" && $2 == m &&
			$4 == z && $5 == r { print $6, $7 / 1000, $8 }' \
			"$tl" >"$work/tl_${m}_$z" 2>/dev/null
		awk -v z=$z -v m=$m '{ n++; v[n] = $2; s[n] = $3; if ($2 > 0) last = n }
		END {
			for (i = 1; i <= last; i++)
				if (s[i] >= 0.99) {
					ns++; sv += v[i]; se += v[i] == 0
				} else if (s[i] == 0) {
					nr++; rv += v[i]
				}
			if (ns && nr && rv > 0)
				print z, m, sv / ns / (rv / nr), se, ns
		}' "$work/tl_${m}_$z" >>"$work/tlstats"
	done
done
[ -e "$work/tlstats" ] || : >"$work/tlstats"

# ---- tables ------------------------------------------------------------------
rounds=$(awk -F'\t' 'NR > 1 && $23 > r { r = $23 } END { print r + 0 }' "$raw")
disturbed=$(awk -F'\t' 'NR > 1 && $24 == 1 { n++ } END { print n + 0 }' "$raw")
echo "Medians of the rounds of each case (ratios: median, and smallest-largest of the rounds);"
echo "$disturbed case runs were in rounds that other processes or the hypervisor disturbed: those"
echo "rounds were run again (up to round $rounds) and left out where an undisturbed one was had."
# What else ran: the share of the CPUs that other processes (21) and the
# hypervisor (22) took during the cases.
awk -F'\t' 'NR > 1 && $21 != "n/a" {
	n++; o += $21; s += $22
	if ($21 > om) om = $21
	if ($22 > sm) sm = $22
	if ($21 > 10) busy++
}
END {
	if (n)
		printf "Other processes used %.1f%% of the CPUs on average during the cases (at most\n" \
			"%.0f%%; over 10%% in %d of %d cases); the hypervisor took %.1f%% (at most %.0f%%).\n",
			o / n, om, busy, n, s / n, sm
}' "$raw"
awk -F'\t' '
function us(ns) { return ns < 10000 ? sprintf("%.1f", ns / 1000) : sprintf("%.0f", ns / 1000) }
function lat(k) { return (k in p50) ? us(p50[k]) "/" us(p99[k]) : "-" }
function ratio(k) { return (k in rate) ? sprintf("%.2fx", vs[k]) : "-" }
FILENAME != tsv {
	split($0, f, " ")
	tstop[f[1] SUBSEP f[2]] = sprintf("%.2fx", f[3])
	tempty[f[1] SUBSEP f[2]] = f[4] " of " f[5]
	next
}
function spread(k,   x) {
	if (!(k in rate))
		return "-"
	x = lo[k] == hi[k] ? sprintf("%.2fx", vs[k]) : sprintf("%.2fx %.1f-%.1f", vs[k], lo[k], hi[k])
	return oth[k] > 10 ? x "*" : x
}
{
	c = $7 > 0 ? "paced" : $8 > 0 ? "stopped" : "sat"
	k = $1 SUBSEP c SUBSEP $5 SUBSEP $3 SUBSEP $4 SUBSEP $2
	rate[k] = $9; vs[k] = $10; p50[k] = $11; p99[k] = $12; mx[k] = $13
	cpu[k] = $14; dmn[k] = $15; core[k] = $16; slow[k] = $17
	sleeps[k] = $18; pre[k] = $19; lo[k] = $22; hi[k] = $23; oth[k] = $24
	if ($26 != "ok")
		bad[++nbad] = $0
}
END {
	ns = split("1 1,2 1,4 1,8 1,1 2,1 4,1 8,4 4", shape, ",")
	nm = split("pipe lock queues shared", mode, " ")
	for (z = 64; z <= 4096; z *= 64) {
		printf "\n%d-byte records, channels on the mount, as fast as they go: records/s of the pipe,\n", z
		printf "the others as a ratio to it (same shape, same run); queues16: a mount with 16 rings a side;\n"
		printf "*: other processes took over 10%% of the CPUs in a round used for the case\n"
		printf "%-6s %11s %16s %16s %16s %16s |%27s\n", "w r", "pipe rec/s", "lock", "queues",
			"shared", "queues16", "in memory: lock queues shared"
		for (s = 1; s <= ns; s++) {
			split(shape[s], wr, " ")
			b = "mount" SUBSEP "sat" SUBSEP z SUBSEP wr[1] SUBSEP wr[2] SUBSEP
			m = "memory" SUBSEP "sat" SUBSEP z SUBSEP wr[1] SUBSEP wr[2] SUBSEP
			printf "%-6s %11s %16s %16s %16s %16s | %8s %8s %8s\n", shape[s],
				((b "pipe") in rate) ? sprintf("%.0f", rate[b "pipe"]) : "-",
				spread(b "lock"), spread(b "queues"), spread(b "shared"),
				spread(b "queues16"), ratio(m "lock"), ratio(m "queues"),
				ratio(m "shared")
		}
		printf "\n%d-byte records: latency p50/p99 in us (send to receive), as fast as they go\n", z
		printf "(mostly time queued in a full buffer) | paced: each writer one record every so often\n"
		printf "%-6s %14s %14s %14s %14s | %12s %12s %12s %12s\n", "w r", "pipe", "lock",
			"queues", "shared", "pipe", "lock", "queues", "shared"
		for (s = 1; s <= ns; s++) {
			split(shape[s], wr, " ")
			b = "mount" SUBSEP "sat" SUBSEP z SUBSEP wr[1] SUBSEP wr[2] SUBSEP
			p = "mount" SUBSEP "paced" SUBSEP z SUBSEP wr[1] SUBSEP wr[2] SUBSEP
			printf "%-6s %14s %14s %14s %14s | %12s %12s %12s %12s\n", shape[s],
				lat(b "pipe"), lat(b "lock"), lat(b "queues"), lat(b "shared"),
				lat(p "pipe"), lat(p "lock"), lat(p "queues"), lat(p "shared")
		}
		printf "\n%d-byte records: CPU ns per record, all processes and the daemon (in parentheses: the daemon,\n", z
		printf "%% of the bytes it moved itself), as fast as they go | preempted per 1000 records\n"
		printf "%-6s %8s %20s %20s %20s | %7s %7s %7s %7s\n", "w r", "pipe", "lock", "queues",
			"shared", "pipe", "lock", "queues", "shared"
		for (s = 1; s <= ns; s++) {
			split(shape[s], wr, " ")
			b = "mount" SUBSEP "sat" SUBSEP z SUBSEP wr[1] SUBSEP wr[2] SUBSEP
			line = sprintf("%-6s", shape[s])
			for (i = 1; i <= nm; i++) {
				k = b mode[i]
				if (!(k in cpu)) { line = line sprintf(" %20s", "-"); continue }
				x = sprintf("%.0f", cpu[k])
				if (dmn[k] + 0 > 0 || slow[k] + 0 > 0)
					x = x sprintf(" (%.0f; %.1f%%)", dmn[k], slow[k])
				line = line sprintf(i == 1 ? " %8s" : " %20s", x)
			}
			line = line " |"
			for (i = 1; i <= nm; i++) {
				x = ((b mode[i]) in pre) ? sprintf("%.2f", pre[b mode[i]]) : "-"
				line = line sprintf(" %7s", x)
			}
			print line
		}
		k = "mount" SUBSEP "sat" SUBSEP z SUBSEP 8 SUBSEP 1 SUBSEP "queues16"
		if (k in cpu)
			printf "queues16, 8 1: %.0f (%.0f; %.1f%%)\n", cpu[k], dmn[k], slow[k]
	}
	printf "\nWriter 0 stopped 20 ms of every 30 (4 writers, 1 reader): records/s of the other writers,\n"
	printf "as a ratio to the pipe stopped alike; over time (coord_timeline.tsv), their rate while\n"
	printf "writer 0 is stopped over their rate while it runs, and the ms in which it was stopped and\n"
	printf "they moved nothing, of all it was stopped; their latency in us\n"
	printf "%-5s %-7s %12s %8s %13s %10s %8s %8s %8s %7s\n", "size", "mode", "others rec/s",
		"vs pipe", "stop/running", "empty ms", "p50", "p99", "max", "cpu ns"
	for (z = 64; z <= 4096; z *= 64)
		for (i = 1; i <= nm; i++) {
			k = "mount" SUBSEP "stopped" SUBSEP z SUBSEP 4 SUBSEP 1 SUBSEP mode[i]
			t = z SUBSEP mode[i]
			if (!(k in rate))
				continue
			printf "%-5s %-7s %12.0f %7.2fx %13s %10s %8s %8s %8s %7.0f\n", z, mode[i],
				rate[k], vs[k], (t in tstop) ? tstop[t] : "-",
				(t in tempty) ? tempty[t] : "-", us(p50[k]), us(p99[k]), us(mx[k]),
				cpu[k]
		}
	if (nbad) {
		printf "\nFAILED cases (medians of the rounds that passed; see coord.tsv):\n"
		for (i = 1; i <= nbad; i++)
			print bad[i]
	}
}' tsv="$tsv" "$work/tlstats" "$tsv"

# ---- plots ---------------------------------------------------------------------
if ! command -v gnuplot >/dev/null 2>&1; then
	echo
	echo "coord_report: gnuplot not found: plots skipped (apt-get install gnuplot-nox)"
	exit 0
fi
if ! gnuplot -e 'set terminal pngcairo' </dev/null >/dev/null 2>&1; then
	echo
	echo "coord_report: this gnuplot has no pngcairo terminal: plots skipped"
	exit 0
fi
# pivot WHERE CASE SIZE AXIS COLUMN SCALE: one line per writer (AXIS w, one
# reader) or reader (AXIS r, one writer) count, a column per mode.
pivot() {
	awk -F'\t' -v where="$1" -v c="$2" -v size="$3" -v axis="$4" -v col="$5" \
		-v scale="$6" '$1 == where && $5 == size && $21 > 0 {
		k = $7 > 0 ? "paced" : $8 > 0 ? "stopped" : "sat"
		if (k != c)
			next
		if (axis == "w" && $4 == 1)
			x = $3
		else if (axis == "r" && $3 == 1)
			x = $4
		else
			next
		v[x, $2] = $col * scale
	}
	END {
		n = split("pipe lock queues shared queues16", m, " ")
		printf "n"
		for (i = 1; i <= n; i++)
			printf " %s", m[i]
		printf "\n"
		for (x = 1; x <= 8; x *= 2) {
			printf "%d", x
			for (i = 1; i <= n; i++)
				printf " %s", ((x, m[i]) in v) ? v[x, m[i]] : "NaN"
			printf "\n"
		}
	}' "$tsv" >"$work/$7"
}

for z in 64 4096; do
	pivot mount sat $z w 9 1e-6 "rate_w_$z"
	pivot mount sat $z r 9 1e-6 "rate_r_$z"
	pivot mount sat $z w 12 1e-3 "p99_w_$z"
	pivot mount sat $z r 12 1e-3 "p99_r_$z"
	pivot mount paced $z w 12 1e-3 "pp99_w_$z"
	pivot mount paced $z r 12 1e-3 "pp99_r_$z"
	pivot mount sat $z w 14 1 "cpu_w_$z"
	pivot mount sat $z r 14 1 "cpu_r_$z"
done

# panels NAME TITLE YLABEL TOP TOPSAYS TOPCOLS BOTTOM BOTTOMSAYS BOTTOMCOLS
# AXES: a 2x2 plot into NAME.png, log scales, the top row from the pivots
# TOP_64 and TOP_4096 (columns 2 to TOPCOLS), the bottom row likewise; x is
# writers or readers (AXES: writers, readers, or both: writers on top,
# readers below).
panels() {
	tx=${10} bx=${10}
	[ "${10}" = both ] && tx=writers bx=readers
	cat <<PANELS
set output "$dir/$1.png"
set multiplot layout 2,2 title "$2"
set logscale y
do for [z in "64 4096"] {
	set title sprintf("%s-byte records, $5", z); set xlabel "$tx"; set ylabel "$3"
	plot for [i=2:$6] sprintf("%s/$4_%s", w, z) using 1:i
}
do for [z in "64 4096"] {
	set title sprintf("%s-byte records, $8", z); set xlabel "$bx"; set ylabel "$3"
	plot for [i=2:$9] sprintf("%s/$7_%s", w, z) using 1:i
}
unset multiplot
PANELS
}

cat >"$work/plot.gp" <<EOF
set terminal pngcairo size 1200,900 font "sans,10"
set datafile missing "NaN"
set key autotitle columnhead top left
set logscale x 2
set xrange [0.85:9.4]
set xtics ("1" 1, "2" 2, "4" 4, "8" 8)
set grid
set style data linespoints
w = "$work"

$(panels coord_throughput "Records per second (millions, log scale), ipcd mount, 2 vCPUs: past 2 processes they take turns on the CPUs" \
	"M records/s" rate_w "1 reader" 6 rate_r "1 writer" 5 both)
$(panels coord_latency "p99 latency, send to receive (us, log scale): as fast as they go (mostly queueing in a full buffer), and paced" \
	"p99 us" p99_w "1 reader, as fast as they go" 6 pp99_w "1 reader, each writer paced" 5 writers)
$(panels coord_latency_readers "p99 latency against readers (us, log scale), 1 writer" \
	"p99 us" p99_r "as fast as they go" 5 pp99_r "paced" 5 readers)
$(panels coord_cpu "CPU time per record (ns, log scale): all processes and the daemon, as fast as they go" \
	"CPU ns/record" cpu_w "1 reader" 6 cpu_r "1 writer" 5 both)

set terminal pngcairo size 1200,1100 font "sans,10"
set output "$dir/coord_stopped.png"
unset logscale
set xtics auto
set xrange [0:300]
set yrange [0:*]
set y2range [0:1]
unset y2tics
set style fill transparent solid 0.25 noborder
set key top right opaque
set multiplot layout 4,2 title "Writer 0 stopped 20 ms of every 30 (shaded): the 3 other writers' records per ms (thousands), 1 reader"
do for [m in "pipe lock queues shared"] {
	do for [z in "64 4096"] {
		set title sprintf("%s, %s-byte records", m, z); set xlabel "ms"; set ylabel "k records/ms"
		f = sprintf("%s/tl_%s_%s", w, m, z)
		plot f using 1:3 axes x1y2 with filledcurves x1 lc rgb "gray" title "writer 0 stopped", \
			f using 1:2 with lines lw 1.5 lc rgb "#1f77b4" title "others"
	}
}
unset multiplot
EOF
if gnuplot "$work/plot.gp" 2>"$work/gnuplot.err"; then
	echo
	echo "plots: $(ls "$dir"/coord_*.png | tr '\n' ' ')"
else
	echo
	echo "coord_report: gnuplot failed, plots incomplete:" >&2
	cat "$work/gnuplot.err" >&2
fi
