# mount.sh - sourced by bench/life_run.sh, bench/real_run.sh and
# bench/coord_run.sh (its helpers; POSIX sh):
# a fresh ipcd on a temporary directory that an EXIT trap always unmounts
# (also on Ctrl-C, a failure or a hang stopped by timeout), the environment
# printed at the top of a run, and the mount's counters.
#
# The caller sets `me` (its name for messages) and may set IPCD, SHIM and
# IPCD_CPUS, and IPCD_OPTS (the daemon's -o options, e.g. coord=shared);
# it runs its measured programs in the background with their pid
# in `bench`, so that the trap can stop them first.  Everything under $tmp
# is removed at the end.

IPCD=${IPCD:-./ipcd}
SHIM=${SHIM:-./.libs/libipcd-shim.so}
IPCD_CPUS=${IPCD_CPUS:-}
tmp=
mnt=
log=
daemon=
bench=
mnts=
daemons=
logs=

die() {
	echo "$me: $*" >&2
	exit 1
}

# mounted_at DIR: whether a FUSE file system is mounted on DIR.
mounted_at() {
	# Field 2 of /proc/mounts is the mount point; our paths have no spaces.
	[ -n "$1" ] || return 1
	awk -v m="$1" '$2 == m && $3 ~ /^fuse/ { found = 1 } END { exit !found }' \
		/proc/mounts
}

mounted() {
	mounted_at "$mnt"
}

# stop_daemon PID: a daemon whose file system was unmounted ends; give it
# a moment, then insist.
stop_daemon() {
	i=0
	while kill -0 "$1" 2>/dev/null && [ "$i" -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$1" 2>/dev/null; then
		kill "$1" 2>/dev/null
		sleep 0.5
		kill -9 "$1" 2>/dev/null
	fi
	wait "$1" 2>/dev/null
}

cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	if [ -n "$bench" ] && kill -0 "$bench" 2>/dev/null; then
		# Interrupted: stop the measured program first (timeout passes the
		# signal on to its process group), so nothing holds the mount.
		kill "$bench" 2>/dev/null
		wait "$bench" 2>/dev/null
	fi
	# mnt, daemon and log; a caller with more mounts lists the others in
	# mnts, daemons and logs.
	for m in $mnt $mnts; do
		mounted_at "$m" &&
			{ fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null; }
	done
	for d in $daemon $daemons; do
		stop_daemon "$d"
	done
	left=
	for m in $mnt $mnts; do
		mounted_at "$m" || continue
		echo "$me: $m is still mounted" >&2
		left=1
		status=1
	done
	if [ -z "$left" ] && [ -n "$tmp" ] && [ -d "$tmp" ]; then
		for l in $log $logs; do
			[ -s "$l" ] || continue
			echo "--- daemon log $l ---" >&2
			cat "$l" >&2
		done
		rm -rf --one-file-system "$tmp"
	fi
	exit "$status"
}

# mount_fresh PREFIX: mount a new daemon on $tmp/mnt, tmp made with PREFIX.
mount_fresh() {
	[ -x "$IPCD" ] || die "no daemon at $IPCD (run from the build directory, or set IPCD)"
	[ -r "$SHIM" ] || die "no shim at $SHIM (make libipcd-shim.la, or set SHIM)"
	command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 not found (install fuse3)"
	command -v timeout >/dev/null 2>&1 || die "timeout not found (install coreutils)"
	[ "$(id -u)" = 0 ] ||
		echo "$me: not root: the daemon will run without the fast path" >&2
	# LD_PRELOAD wants an absolute path once programs change directory.
	case $SHIM in /*) ;; *) SHIM=$(pwd)/$SHIM ;; esac
	case $IPCD in /*) ;; *) IPCD=$(pwd)/$IPCD ;; esac

	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || die "mktemp failed"
	# What the shim learns of pipes (ipcd-shim(7), "Pipes that carry
	# little") starts from nothing in each run, unless the caller says.
	export IPCD_SHIM_SITES="${IPCD_SHIM_SITES:-$tmp/sites}"
	mnt=$tmp/mnt
	log=$tmp/ipcd.log
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	mkdir "$mnt" || die "cannot make $mnt"
	# IPCD_OPTS: the daemon's -o options, e.g. coord=shared.
	if [ -n "$IPCD_CPUS" ]; then
		taskset -c "$IPCD_CPUS" "$IPCD" -f ${IPCD_OPTS:+-o "$IPCD_OPTS"} "$mnt" >"$log" 2>&1 &
	else
		"$IPCD" -f ${IPCD_OPTS:+-o "$IPCD_OPTS"} "$mnt" >"$log" 2>&1 &
	fi
	daemon=$!
	i=0
	until mounted; do
		kill -0 "$daemon" 2>/dev/null || die "the daemon exited before mounting"
		[ $i -lt 100 ] || die "no mount on $mnt after 10 s"
		sleep 0.1
		i=$((i + 1))
	done
}

# The mount's status line.
status_line() {
	getfattr --absolute-names --only-values -n user.ipcd.status "$mnt" 2>/dev/null ||
		echo "status unknown"
}

# counters: "PIPES BYTES SLOW_BYTES" from the status line, -1 if unknown;
# PIPES is the pipes and socket pairs that channels served.
counters() {
	status_line | awk '{
		c = b = s = -1
		for (i = 1; i <= NF; i++) {
			split($i, kv, "=")
			if (kv[1] == "served") c = kv[2]
			else if (kv[1] == "bytes") b = kv[2]
			else if (kv[1] == "slow_bytes") s = kv[2]
		}
		printf "%s %s %s\n", c, b, s
	}'
}

# print_env SRCDIR: what this run measures, on what.
print_env() {
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "nproc: $(nproc)   uname -r: $(uname -r)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "source: $(git -C "$1" describe --always --dirty 2>/dev/null || echo unknown)" \
		"(the daemon and shim as built in $(pwd))"
	if [ -n "${IPCD_SPIN_NS:-}" ]; then
		echo "spin: IPCD_SPIN_NS=$IPCD_SPIN_NS ns"
	else
		echo "spin: IPCD_SPIN_NS unset (the shim's default)"
	fi
	echo "sites: $IPCD_SHIM_SITES${IPCD_SHIM_LEARN:+ (IPCD_SHIM_LEARN=$IPCD_SHIM_LEARN)}"
	echo "mount: $mnt ($(status_line))"
	echo "daemon: pid $daemon${IPCD_CPUS:+, pinned to cpus $IPCD_CPUS}"
	echo "shim: $SHIM"
}
