#!/bin/sh
# shim_run.sh - `make bench-shim`: mount a fresh ipcd on a temporary
# directory, run bench/shim_bench twice in this one session, first on kernel
# pipes and socket pairs, then with the LD_PRELOAD shim turning them into
# ipcd channels, and print both runs and their comparison.  Whatever happens,
# the EXIT trap stops the benchmark, unmounts the file system and stops the
# daemon.
#
# Run from the build directory (make does).  Environment:
#   IPCD        the daemon (default ./ipcd)
#   SHIM_BENCH  the benchmark (default ./bench/shim_bench)
#   SHIM        the shim (default ./.libs/libipcd-shim.so)
#   SHIM_BENCH_ARGS  extra arguments for both runs, e.g. "-c pp,idle" or "-s 0.5"
#   IPCD_SPIN_NS     passed through: how long a waiting end spins before it
#                    sleeps (the shim's default is 50000)
#   IPCD_CPUS   pin the daemon to these CPUs (taskset list, e.g. 0); by
#               default it runs wherever the scheduler puts it
#   IPCD_OPTS   the daemon's -o options, e.g. coord=shared (the shim's
#               pipes are then shared rings)
#   IPCD_SHIM_LEARN  default off here, as in bench-life: channels measured,
#               not the kernel pipes the shim would leave some places with
set -u
export IPCD_SHIM_LEARN=${IPCD_SHIM_LEARN:-off}

IPCD=${IPCD:-./ipcd}
SHIM_BENCH=${SHIM_BENCH:-./bench/shim_bench}
SHIM=${SHIM:-./.libs/libipcd-shim.so}
SHIM_BENCH_ARGS=${SHIM_BENCH_ARGS:-}
IPCD_CPUS=${IPCD_CPUS:-}
RUN_LIMIT=50		# seconds per run; the defaults need about 20

die() {
	echo "bench-shim: $*" >&2
	exit 1
}

[ -x "$IPCD" ] || die "no daemon at $IPCD (run from the build directory, or set IPCD)"
[ -x "$SHIM_BENCH" ] || die "no benchmark at $SHIM_BENCH (make bench/shim_bench, or set SHIM_BENCH)"
[ -r "$SHIM" ] || die "no shim at $SHIM (make libipcd-shim.la, or set SHIM)"
[ "$(id -u)" = 0 ] || echo "bench-shim: not root: the daemon will run without the fast path, and the shim will stay out of the way" >&2
command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 not found (install fuse3)"

# LD_PRELOAD wants an absolute path when the program changes directory, and
# mount points are compared as absolute paths.
case $SHIM in /*) ;; *) SHIM=$(pwd)/$SHIM ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ipcd-shim-bench.XXXXXX") || die "mktemp failed"
mnt=$tmp/mnt
log=$tmp/ipcd.log
daemon=
bench=

mounted() {
	# Field 2 of /proc/mounts is the mount point; our path has no spaces.
	awk -v m="$mnt" '$2 == m && $3 ~ /^fuse/ { found = 1 } END { exit !found }' \
		/proc/mounts
}

cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	if [ -n "$bench" ] && kill -0 "$bench" 2>/dev/null; then
		# Interrupted: stop the benchmark first, so nothing holds the
		# mount (its children die with it).
		kill "$bench" 2>/dev/null
		wait "$bench" 2>/dev/null
	fi
	if mounted; then
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null
	fi
	if [ -n "$daemon" ]; then
		# Unmounting ends the daemon; give it a moment, then insist.
		i=0
		while kill -0 "$daemon" 2>/dev/null && [ "$i" -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if kill -0 "$daemon" 2>/dev/null; then
			kill "$daemon" 2>/dev/null
			sleep 0.5
			kill -9 "$daemon" 2>/dev/null
		fi
		wait "$daemon" 2>/dev/null
	fi
	if mounted; then
		echo "bench-shim: $mnt is still mounted" >&2
		status=1
	fi
	if [ -s "$log" ]; then
		echo "--- daemon log ---" >&2
		cat "$log" >&2
	fi
	rm -f "$log" "$tmp/kernel.res" "$tmp/shim.res"
	rmdir "$mnt" 2>/dev/null
	rmdir "$tmp" 2>/dev/null
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir "$mnt" || die "cannot make $mnt"
if [ -n "$IPCD_CPUS" ]; then
	taskset -c "$IPCD_CPUS" "$IPCD" -f ${IPCD_OPTS:+-o "$IPCD_OPTS"} "$mnt" >"$log" 2>&1 &
else
	"$IPCD" -f ${IPCD_OPTS:+-o "$IPCD_OPTS"} "$mnt" >"$log" 2>&1 &
fi
daemon=$!

# Wait for the mount to appear (or the daemon to give up).
i=0
until mounted; do
	kill -0 "$daemon" 2>/dev/null || die "the daemon exited before mounting"
	[ $i -lt 100 ] || die "no mount on $mnt after 10 s"
	sleep 0.1
	i=$((i + 1))
done

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "nproc: $(nproc)   uname -r: $(uname -r)"
echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
if [ -n "${IPCD_SPIN_NS:-}" ]; then
	echo "spin: IPCD_SPIN_NS=$IPCD_SPIN_NS ns"
else
	echo "spin: IPCD_SPIN_NS unset (default 50000 ns)"
fi
echo "mount: $mnt ($(getfattr --only-values -n user.ipcd.status "$mnt" 2>/dev/null || echo 'status unknown'))"
echo "daemon: pid $daemon${IPCD_CPUS:+, pinned to cpus $IPCD_CPUS}"

# run LABEL [env assignments...]: one run of the benchmark, under a timeout,
# in the background so that a signal reaches the traps at once.
run() {
	label=$1
	shift
	echo
	echo "=== $label run ==="
	timeout -k 5 "$RUN_LIMIT" env "$@" "$SHIM_BENCH" -l "$label" -p "$daemon" \
		-o "$tmp/$label.res" $SHIM_BENCH_ARGS &
	bench=$!
	wait "$bench"
	rc=$?
	bench=
	[ $rc -eq 124 ] && echo "bench-shim: the $label run took over $RUN_LIMIT s and was stopped" >&2
	return $rc
}

status=0
run kernel -u LD_PRELOAD IPCD_SHIM=off || status=1
run shim LD_PRELOAD="$SHIM" IPCD_MOUNT="$mnt" || status=1
"$SHIM_BENCH" -r "$tmp/kernel.res" "$tmp/shim.res" || status=1
exit $status
