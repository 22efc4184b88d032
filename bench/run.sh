#!/bin/sh
# run.sh - `make bench`: mount a fresh ipcd on a temporary directory, run the
# ping-pong benchmark against it and print the results.  Whatever happens,
# the EXIT trap unmounts the file system and stops the daemon.
#
# Run from the build directory (make does).  Environment:
#   IPCD        the daemon (default ./ipcd)
#   PINGPONG    the benchmark (default ./bench/pingpong)
#   PINGPONG_ARGS  extra arguments for it, e.g. "-n 50000" or "-t pipe,fast"
#   IPCD_SPIN_NS   passed through: the fast path's spin before sleeping
#   IPCD_CPUS   pin the daemon to these CPUs (taskset list, e.g. 0); by
#               default it runs wherever the scheduler puts it
set -u

IPCD=${IPCD:-./ipcd}
PINGPONG=${PINGPONG:-./bench/pingpong}
PINGPONG_ARGS=${PINGPONG_ARGS:-}
IPCD_CPUS=${IPCD_CPUS:-}

die() {
	echo "bench: $*" >&2
	exit 1
}

[ -x "$IPCD" ] || die "no daemon at $IPCD (run from the build directory, or set IPCD)"
[ -x "$PINGPONG" ] || die "no benchmark at $PINGPONG (make bench/pingpong, or set PINGPONG)"
[ "$(id -u)" = 0 ] || echo "bench: not root: the daemon will run without the fast path" >&2
command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 not found (install fuse3)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ipcd-bench.XXXXXX") || die "mktemp failed"
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
		# mount (its ponger dies with it).
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
		echo "bench: $mnt is still mounted" >&2
		status=1
	fi
	if [ -s "$log" ]; then
		echo "--- daemon log ---" >&2
		cat "$log" >&2
	fi
	rmdir "$mnt" 2>/dev/null
	rm -f "$log"
	rmdir "$tmp" 2>/dev/null
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir "$mnt" || die "cannot make $mnt"
if [ -n "$IPCD_CPUS" ]; then
	taskset -c "$IPCD_CPUS" "$IPCD" -f "$mnt" >"$log" 2>&1 &
else
	"$IPCD" -f "$mnt" >"$log" 2>&1 &
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

# timeout bounds the run even if a case hangs past the benchmark's own
# watchdog; 6 cases of at most 8 s each fit well inside it.  It runs in the
# background so that a signal reaches the traps at once.
timeout -k 5 120 "$PINGPONG" -d "$mnt" -p "$daemon" $PINGPONG_ARGS &
bench=$!
wait "$bench"
rc=$?
bench=
[ $rc -eq 124 ] && echo "bench: the benchmark ran past 120 s and was stopped" >&2
exit $rc
