# lib.sh - shared set-up for the integration tests: mount a real ipcd on a
# temporary directory, always unmount it on exit (EXIT trap), and small
# assertion helpers.  Source it; then call mount_ipcd [ipcd options].
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
IPCD=$top_builddir/ipcd
CHAN_TOOL=$top_builddir/tests/chan_tool
RING_PEER=$top_builddir/tests/ring_peer
MNT=
DAEMON_PID=
TMPD=$(mktemp -d /tmp/ipcd-test.XXXXXX)
# What the shim learns of pipes stays in this test (ipcd-shim(7)).
export IPCD_SHIM_SITES=$TMPD/sites
EXTRA_CLEANUP=:

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
pass() { echo "ok - $*"; }

require_fuse() {
	[ "$(id -u)" = 0 ] || skip "needs root to mount with FUSE passthrough"
	[ -c /dev/fuse ] || skip "no /dev/fuse on this machine"
	command -v fusermount3 >/dev/null || skip "fusermount3 is not installed (fuse3)"
}

cleanup() {
	status=$?
	eval "$EXTRA_CLEANUP"
	if [ -n "$MNT" ]; then
		fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	fi
	if [ -n "$DAEMON_PID" ]; then
		kill "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	[ -n "$MNT" ] && rmdir "$MNT" 2>/dev/null
	rm -rf "$TMPD"
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Checks that go on after a failure: bad counts it, t runs one check
# (passed when its command succeeds), eq compares and says what differs.
# A script that uses them ends with: [ "$FAILS" = 0 ] || fail ...
FAILS=0
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
# t DESCRIPTION CMD...
t() {
	local d=$1
	shift
	if "$@"; then pass "$d"; else bad "$d"; fi
}
# eq ACTUAL EXPECTED
eq() {
	[ "$1" = "$2" ] && return 0
	echo "  got '$1', expected '$2'"
	return 1
}

is_mounted() { grep -q " $1 fuse" /proc/mounts; }

# The coordination the suite runs with (IPCD_TEST_COORD, default the
# daemon's: lock), for checks whose numbers depend on the layout.
COORD=${IPCD_TEST_COORD:-lock}

# counted N: the bytes a write of N bytes adds to a channel's info
# counters (written, buffered): itself with the lock; a record with its
# 8-byte header, to 8, with queues; whole 64-byte cells with one shared ring.
counted() {
	case $COORD in
	queues) echo $(((8 + $1 + 7) / 8 * 8)) ;;
	shared) echo $(($1 ? ($1 + 63) / 64 * 64 : 64)) ;;
	*) echo "$1" ;;
	esac
}

# mount_ipcd [options...]: mount a foreground daemon on a fresh directory.
mount_ipcd() {
	require_fuse
	MNT=$(mktemp -d /tmp/ipcd-mnt.XXXXXX)
	# IPCD_TEST_COORD: the coordination of the mount's channels (the suite
	# runs once per design); a test that names its own comes after.
	"$IPCD" -f ${IPCD_TEST_COORD:+-o coord=$IPCD_TEST_COORD} "$@" "$MNT" 2>"$TMPD/daemon.log" &
	DAEMON_PID=$!
	for _ in $(seq 1 100); do
		is_mounted "$MNT" && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$TMPD/daemon.log"
	fail "ipcd did not mount on $MNT"
}

# The daemon's own view of a channel, one field: info_field PATH NAME.
info_field() {
	getfattr --only-values -n user.ipcd.info "$1" 2>/dev/null |
		tr ' ' '\n' | sed -n "s/^$2=//p"
}

# wait_for COUNT CMD...: retry a condition for COUNT tenths of a second.
wait_for() {
	n=$1
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

readers_at_least() { [ "$(info_field "$1" readers)" -ge "$2" ] 2>/dev/null; }

# procs_with NAME=VALUE: the pids of the processes whose environment holds
# that entry; kill_procs_with NAME=VALUE: kill them (SIGKILL).
procs_with() {
	local p
	for p in /proc/[0-9]*; do
		grep -qzxF "$1" "$p/environ" 2>/dev/null && echo "${p#/proc/}"
	done
}
kill_procs_with() {
	local p
	for p in $(procs_with "$1"); do
		kill -9 "$p" 2>/dev/null
	done
}

# The shim as LD_PRELOAD wants it.  In a sanitized build the shim needs its
# sanitizer runtimes loaded before it; the programs run under it are not
# ours, so their own leaks are not reported (the shim's errors still are):
# a shim test calls shim_env after mounting, so the daemon keeps its checks.
SHIM_LIB=$top_builddir/.libs/libipcd-shim.so
SHIM_PRELOAD=$SHIM_LIB
SHIM_SANITIZED=
if [ -f "$SHIM_LIB" ]; then
	_rt=$(ldd "$SHIM_LIB" 2>/dev/null | awk '/libasan|libubsan|libtsan/ {print $3}' | tr '\n' ' ')
	if [ -n "$_rt" ]; then
		SHIM_PRELOAD="$_rt$SHIM_LIB"
		SHIM_SANITIZED=1
	fi
fi
shim_env() {
	[ -n "$SHIM_SANITIZED" ] &&
		export ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
	return 0
}
