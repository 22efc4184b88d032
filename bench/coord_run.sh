#!/bin/sh
# coord_run.sh - the coordination matrix of `make bench`: the kernel pipe,
# coord=lock, coord=queues and coord=shared, in one run, on channels of a
# freshly mounted ipcd (so that the daemon's CPU, its coordination core's
# included, counts in the CPU per record), with W writers and R readers:
#
#   writers 1, 2, 4, 8 with 1 reader; readers 2, 4, 8 with 1 writer; 4 and 4
#   records of 64 and 4096 bytes
#   saturated (as fast as they go): rate, latency, CPU per record
#   paced (each writer one record every COORD_PACE_US): latency at light load
#   writer 0 stopped 20 ms of every 30 (4 writers, 1 reader): what the
#     others lose, over time
#   8 writers of queues on a second mount with 16 rings a side (the default
#     8 leave the eighth writer to the daemon)
#   the saturated matrix again on rings in memory (no daemon), for reference
#
# It writes into $COORD_OUT (default bench/ under the current directory):
# coord.tsv (one line per case, see bench/README.md), coord_timeline.tsv,
# coord_table.txt (the tables printed at the end) and, with gnuplot, PNG
# plots.  The EXIT trap always unmounts both daemons.
#
# Run from the build directory (make does).  Environment:
#   COORD_ROUNDS      rounds of each shape, the four modes in turn (3); the
#                     tables and plots show the medians
#   COORD_QUIET       a round in which other processes and the hypervisor
#                     took more than this % of the CPUs is run again, up to
#                     COORD_ROUNDS more times per shape (10; 0: never)
#   COORD_RECORDS     records per case at 64 bytes, all writers (3000000)
#   COORD_RECORDS_4K  records per case at 4096 bytes (750000)
#   COORD_PACED       records per writer, paced (1000)
#   COORD_PACE_US     a paced writer's period in us (200)
#   COORD_STOP        records per writer with writer 0 stopped, 64 bytes
#                     (1000000; a quarter of that at 4096)
#   COORD_MEMORY      0: skip the runs in memory
#   COORD_QUICK       1: a few records of each, to try the script
#   COORD_OUT         where the results go
#   IPCD, COORD       the programs (./ipcd, ./bench/coord)
#   IPCD_CPUS         pin the daemons to these CPUs (a taskset list)
set -u

me=coord_run
IPCD=${IPCD:-./ipcd}
COORD=${COORD:-./bench/coord}
IPCD_CPUS=${IPCD_CPUS:-}
OUT=${COORD_OUT:-bench}
ROUNDS=${COORD_ROUNDS:-3}
QUIET=${COORD_QUIET:-10}
N64=${COORD_RECORDS:-3000000}
N4K=${COORD_RECORDS_4K:-750000}
PACED=${COORD_PACED:-1000}
PACE_US=${COORD_PACE_US:-200}
STOP=${COORD_STOP:-1000000}
MEMORY=${COORD_MEMORY:-1}
if [ "${COORD_QUICK:-0}" = 1 ]; then
	ROUNDS=${COORD_ROUNDS:-1} N64=400000 N4K=100000 PACED=200 STOP=300000
fi
# No case should take long: coord's own watchdog stops a case after
# CASE_LIMIT s (or 3 s after its last record without an end of file);
# timeout stops a whole run of coord, should that watchdog fail.
CASE_LIMIT=200
RUN_LIMIT=1800

# die, mounted_at and cleanup, which unmounts what mount_one lists.
. "$(dirname "$0")/mount.sh"

# mount_one DIR [OPTIONS]: a daemon on $tmp/DIR; its pid in $pid.
mount_one() {
	mkdir "$tmp/$1" || die "cannot make $tmp/$1"
	if [ -n "$IPCD_CPUS" ]; then
		taskset -c "$IPCD_CPUS" "$IPCD" -f ${2:+-o "$2"} "$tmp/$1" >"$tmp/$1.log" 2>&1 &
	else
		"$IPCD" -f ${2:+-o "$2"} "$tmp/$1" >"$tmp/$1.log" 2>&1 &
	fi
	pid=$!
	daemons="$daemons $pid"
	mnts="$mnts $tmp/$1"
	logs="$logs $tmp/$1.log"
	i=0
	until mounted_at "$tmp/$1"; do
		kill -0 "$pid" 2>/dev/null || die "the daemon on $tmp/$1 exited before mounting"
		[ $i -lt 100 ] || die "no mount on $tmp/$1 after 10 s"
		sleep 0.1
		i=$((i + 1))
	done
}

# coord ARGS...: one run of the benchmark, in the background so that a
# signal reaches the traps at once; its failure is remembered.
failed=0
coord() {
	timeout -k 5 "$RUN_LIMIT" "$COORD" -W "$CASE_LIMIT" -R "$ROUNDS" -Q "$QUIET" "$@" &
	bench=$!
	wait "$bench"
	rc=$?
	bench=
	[ $rc -eq 124 ] && echo "$me: coord $* ran past $RUN_LIMIT s and was stopped" >&2
	[ $rc -eq 0 ] || failed=1
	echo
}

# shapes WHERE SIZE RECORDS [ARGS...]: the matrix's shapes, saturated unless
# ARGS say otherwise.
shapes() {
	where=$1 size=$2 n=$3
	shift 3
	coord $where -s "$size" $n -w 1,2,4,8 -r 1 -o "$OUT/coord.tsv" "$@"
	coord $where -s "$size" $n -w 1 -r 2,4,8 -o "$OUT/coord.tsv" "$@"
	coord $where -s "$size" $n -w 4 -r 4 -o "$OUT/coord.tsv" "$@"
}

[ -x "$IPCD" ] || die "no daemon at $IPCD (run from the build directory, or set IPCD)"
[ -x "$COORD" ] || die "no benchmark at $COORD (make bench/coord, or set COORD)"
[ "$(id -u)" = 0 ] || echo "$me: not root: the daemon will run without the fast path" >&2
command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 not found (install fuse3)"
command -v timeout >/dev/null 2>&1 || die "timeout not found (install coreutils)"
mkdir -p "$OUT" || die "cannot make $OUT"
rm -f "$OUT/coord.tsv" "$OUT/coord_timeline.tsv" "$OUT/coord_table.txt" "$OUT"/coord_*.png

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ipcd-coord.XXXXXX") || die "mktemp failed"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
mount_one a
pa=$pid
mount_one b queues=16
pb=$pid
start=$(date +%s)

ncpu=$(nproc)
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "nproc: $ncpu   uname -r: $(uname -r)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "source: $(git -C "$(dirname "$0")" describe --always --dirty 2>/dev/null || echo unknown)"
echo "mounts: $tmp/a (pid $pa, $(getfattr --absolute-names --only-values \
	-n user.ipcd.status "$tmp/a" 2>/dev/null | cut -d' ' -f1))," \
	"$tmp/b (pid $pb, -o queues=16)${IPCD_CPUS:+, daemons pinned to cpus $IPCD_CPUS}"
echo "records: $N64 per case at 64 bytes, $N4K at 4096; paced: $PACED per writer," \
	"one each $PACE_US us; stopped: $STOP per writer; $ROUNDS rounds of each shape," \
	"a round run again when others took over $QUIET% of the CPUs"
echo "note: $ncpu CPUs: a case of more than $ncpu processes oversubscribes them" \
	"(8 processes: $((8 / ncpu)) to a CPU), and every process that waits spins" \
	"before it sleeps: preemption is part of what these cases measure"
echo

echo "== saturated, channels on the mount"
shapes "-m $tmp/a -p $pa" 64 "-N $N64"
shapes "-m $tmp/a -p $pa" 4096 "-N $N4K"

echo "== 8 writers of queues on a mount with 16 rings a side"
for s in 64 4096; do
	n=$N64
	[ $s = 4096 ] && n=$N4K
	coord -m "$tmp/b" -p "$pb" -s $s -N $n -w 8 -r 1 -t queues -o "$tmp/q16.tsv"
done
# Its lines as mode queues16; the ratio is to the main run's pipe (the
# median of its rounds, of those not disturbed if there are any).
if [ -s "$tmp/q16.tsv" ]; then
	awk -F'\t' -v OFS='\t' 'NR == FNR {
		if ($1 == "mount" && $2 == "pipe" && $7 == 0 && $8 == 0 && $25 == "ok") {
			k = $3 "/" $4 "/" $5
			all[k] = all[k] " " $9
			if ($24 == 0)
				clean[k] = clean[k] " " $9
		}
		next
	}
	function median(list,   v, n, i, j, x) {
		n = split(list, v, " ")
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
				x = v[j]; v[j] = v[j - 1]; v[j - 1] = x
			}
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	FNR > 1 {
		$2 = "queues16"
		k = $3 "/" $4 "/" $5
		p = k in clean ? median(clean[k]) : k in all ? median(all[k]) : 0
		$10 = p > 0 ? sprintf("%.4f", $9 / p) : 0
		print
	}' "$OUT/coord.tsv" "$tmp/q16.tsv" >>"$OUT/coord.tsv"
fi

echo "== paced: each writer one record every $PACE_US us"
shapes "-m $tmp/a -p $pa" 64 "-n $PACED" -P "$PACE_US"
shapes "-m $tmp/a -p $pa" 4096 "-n $PACED" -P "$PACE_US"

echo "== writer 0 stopped 20 ms of every 30"
coord -m "$tmp/a" -p "$pa" -s 64 -n "$STOP" -w 4 -r 1 -S -o "$OUT/coord.tsv" \
	-T "$OUT/coord_timeline.tsv"
coord -m "$tmp/a" -p "$pa" -s 4096 -n $((STOP / 4)) -w 4 -r 1 -S -o "$OUT/coord.tsv" \
	-T "$OUT/coord_timeline.tsv"

if [ "$MEMORY" != 0 ]; then
	echo "== saturated, rings in memory (no daemon)"
	shapes "" 64 "-N $N64"
	shapes "" 4096 "-N $N4K"
fi

echo "measured in $(($(date +%s) - start)) s; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
sh "$(dirname "$0")/coord_report.sh" "$OUT" | tee "$OUT/coord_table.txt"
[ -s "$OUT/coord_table.txt" ] || failed=1
exit $failed
