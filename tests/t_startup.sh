#!/bin/bash
# t_startup.sh - ipcd's command line, start-up checks, mounting and ending
# (run as root):
#   - --help and -h (exit 0, the options listed); --version (exit 0, says
#     whether the fast path is available here);
#   - bad usage exits 2 with a message: no mount point, unknown option -x,
#     -o bogus, a third argument, bad values (ring_size=1000, ring_size=abc,
#     ring_size over max_ring_size, max_channels=0, fastpath=maybe,
#     coord=shared, queues out of range or not a number);
#   - start-up failures exit 1 with a message: mount point missing (the path
#     named), a file, already an ipcd mounted there ("busy"), no /dev/fuse
#     (a private mount namespace with an empty /dev; skipped if unshare fails);
#   - -o fastpath=off: status says off with the reason and mmap fails cleanly;
#     -o fastpath=require mounts with the fast path when --version says it is
#     available here, and exits 1 when not;
#   - as nobody, without CAP_SYS_ADMIN, through fusermount3 (skipped with a
#     message if nobody cannot mount here): fastpath=require exits 1 naming
#     CAP_SYS_ADMIN; the default (auto) mounts, user.ipcd.status says
#     fastpath=off with the reason, read/write of a channel works, mmap fails
#     with an error (chan_tool send), not a hang; fusermount3 -u ends it;
#   - SIGTERM and SIGINT to a foreground daemon: the mount goes and the
#     daemon exits 0 within seconds; fusermount3 -u ends it (exit 0);
#   - without -f the daemon daemonizes: the parent returns 0 with the mount
#     in place, a daemon process remains, serves channels, and the unmount
#     ends it;
#   - `ipcd SOURCE MOUNTPOINT -o OPTS` (as mount(8) runs it) ignores SOURCE
#     and applies OPTS;
#   - mount -t fuse.ipcd, when ipcd is installed in the system PATH mount
#     uses (else that part alone is skipped with a message): mount, use a
#     channel, umount;
#   - after SIGKILL the dead mount refuses a new daemon (exit 1), and after
#     fusermount3 -uz a fresh mount works again.
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
. "$top_srcdir/tests/lib.sh"
export LC_ALL=C
require_fuse
for tool in getfattr pgrep ps timeout; do
	command -v $tool >/dev/null || skip "$tool is not installed (attr, procps, coreutils)"
done

has() {
	grep -qE -- "$2" "$1" && return 0
	echo "  no /$2/ in: $(head -c 600 "$1")"
	return 1
}

# Every mount point, background process and directory we make, for cleanup
# (lib.sh's EXIT trap runs EXTRA_CLEANUP first).
MOUNTS=()
PIDS=()
DIRS=()
startup_cleanup() {
	local d p
	for d in "${MOUNTS[@]}"; do
		if is_mounted "$d"; then
			fusermount3 -uz "$d" 2>/dev/null || umount -l "$d" 2>/dev/null
		fi
	done
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	for d in "${DIRS[@]}"; do
		rmdir "$d" 2>/dev/null
	done
}
EXTRA_CLEANUP=startup_cleanup
LIMIT=120	# seconds any background daemon may live

# newdir VAR: a fresh directory in /tmp (outside $TMPD, which only root may
# enter), remembered for cleanup; its name goes to VAR.
newdir() {
	local d
	d=$(mktemp -d "/tmp/ipcd-st.XXXXXX") || fail "mktemp"
	DIRS+=("$d")
	MOUNTS+=("$d")
	printf -v "$1" %s "$d"
}
# run_ipcd LOG ARGS...: run ipcd in the foreground of the test (bounded);
# its stderr and stdout go to LOG, its exit status is returned.
run_ipcd() {
	local log=$1
	shift
	timeout 30 "$IPCD" "$@" >"$log" 2>&1
}
gone() { ! is_mounted "$1"; }
dead() { ! kill -0 "$1" 2>/dev/null; }
# start_fg DIR [ipcd args...]: a foreground daemon on DIR under timeout; sets
# TPID (the timeout process, whose exit status is the daemon's) and DPID
# (the daemon), and LOG.  Returns 1 if it does not mount.
start_fg() {
	local d=$1
	shift
	LOG=$TMPD/daemon.$RANDOM.log
	timeout -k 5 $LIMIT "$IPCD" -f "$@" "$d" >"$LOG" 2>&1 &
	TPID=$!
	PIDS+=("$TPID")
	DPID=
	for _ in $(seq 1 100); do
		[ -z "$DPID" ] && DPID=$(pgrep -P "$TPID" | head -1)
		if is_mounted "$d" && [ -n "$DPID" ]; then
			PIDS+=("$DPID")
			return 0
		fi
		kill -0 "$TPID" 2>/dev/null || break
		sleep 0.05
	done
	echo "  daemon on $d did not mount: $(cat "$LOG")"
	return 1
}
# wait_exit PID: wait (at most 10 s) for a background job; its status.
wait_exit() {
	local n=100
	while kill -0 "$1" 2>/dev/null && [ $n -gt 0 ]; do
		# A zombie still answers kill -0: ask ps whether it is one.
		[ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = Z ] && break
		sleep 0.1
		n=$((n - 1))
	done
	[ $n -gt 0 ] || return 124
	wait "$1"
}
# chan_works DIR [RUNNER...]: a channel made in DIR carries bytes both ways
# (write then read back on one O_RDWR open), run by RUNNER (e.g. as nobody).
chan_works() {
	local d=$1
	shift
	timeout 20 "$@" sh -c 'exec 3<>"$1/c" && echo hello >&3 &&
		[ "$(timeout 5 head -c 6 <&3)" = hello ]' sh "$d"
}

E=$TMPD/err

# ---- help and version -------------------------------------------------------------
t "--help exits 0" run_ipcd "$E" --help
t "--help lists the options" \
	sh -c 'grep -q "^usage: ipcd" "$1" && grep -q -- "-o ring_size=" "$1" &&
		grep -q -- "-o fastpath=" "$1" && grep -q -- "-f " "$1" &&
		grep -q -- "--version" "$1"' sh "$E"
t "-h exits 0 and prints the usage" sh -c 'timeout 30 "$1" -h | grep -q "^usage: ipcd"' sh "$IPCD"
t "--version exits 0" run_ipcd "$E" --version
t "--version names the version" has "$E" "^ipcd [0-9]"
t "--version says whether the fast path is available" \
	has "$E" "^fast path: (available here|unavailable here: .+)"
FASTPATH_HERE=no
grep -q "^fast path: available here" "$E" && FASTPATH_HERE=yes

# ---- bad usage: exit 2 ----------------------------------------------------------------
newdir D
run_ipcd "$E"; rc=$?
t "no mount point: exit 2" eq $rc 2
t "no mount point: says so" has "$E" "no mount point"
run_ipcd "$E" -f; rc=$?
t "only -f: exit 2" eq $rc 2
run_ipcd "$E" -x "$D"; rc=$?
t "unknown option -x: exit 2" eq $rc 2
t "unknown option -x: names it" has "$E" "unknown option '-x'"
run_ipcd "$E" -f -o bogus "$D"; rc=$?
t "-o bogus: exit 2" eq $rc 2
t "-o bogus: names the option" has "$E" "bogus"
t "-o bogus: nothing mounted" gone "$D"
run_ipcd "$E" -f a "$D" c; rc=$?
t "a third argument: exit 2" eq $rc 2
t "a third argument: named" has "$E" "unexpected argument 'c'"
run_ipcd "$E" -f -o ring_size=1000 "$D"; rc=$?
t "ring_size=1000: exit 2" eq $rc 2
t "ring_size=1000: says powers of two" has "$E" "power"
run_ipcd "$E" -f -o ring_size=abc "$D"; rc=$?
t "ring_size=abc: exit 2 naming the value" \
	sh -c '[ $1 = 2 ] && grep -q "ring_size.*abc" "$2"' sh $rc "$E"
run_ipcd "$E" -f -o ring_size=128M,max_ring_size=64M "$D"; rc=$?
t "ring_size over max_ring_size: exit 2" eq $rc 2
run_ipcd "$E" -f -o max_channels=0 "$D"; rc=$?
t "max_channels=0: exit 2" eq $rc 2
run_ipcd "$E" -f -o fastpath=maybe "$D"; rc=$?
t "fastpath=maybe: exit 2" eq $rc 2
t "fastpath=maybe: lists the modes" has "$E" "auto, require or off.*maybe"
run_ipcd "$E" -f -o coord=spinlock "$D"; rc=$?
t "coord=spinlock: exit 2" eq $rc 2
t "coord=spinlock: lists the modes" has "$E" "lock, queues or shared.*spinlock"
for q in 1 17 x 4x ""; do
	run_ipcd "$E" -f -o "queues=$q" "$D"; rc=$?
	t "queues=$q: exit 2" eq $rc 2
	t "queues=$q: says the range" has "$E" "queues must be a number from 2 to 16"
done
t "nothing was mounted by the bad command lines" gone "$D"

# ---- start-up failures: exit 1 ---------------------------------------------------
run_ipcd "$E" -f "$D/missing"; rc=$?
t "missing mount point: exit 1" eq $rc 1
t "missing mount point: the path is named" has "$E" "$D/missing.*No such file"
: > "$D/file"
run_ipcd "$E" -f "$D/file"; rc=$?
t "mount point is a file: exit 1" eq $rc 1
t "mount point is a file: says not a directory" has "$E" "$D/file is not a directory"
rm -f "$D/file"

if start_fg "$D"; then
	pass "a foreground daemon mounts"
	t "status attribute present" sh -c 'getfattr -n user.ipcd.status "$1" >/dev/null 2>&1' sh "$D"
	run_ipcd "$E" -f "$D"; rc=$?
	t "second daemon on a mounted dir: exit 1" eq $rc 1
	t "second daemon: says busy" has "$E" "$D is busy"
	t "the first mount still serves" chan_works "$D"

	# ---- SIGTERM -----------------------------------------------------------
	kill -TERM "$DPID"
	t "SIGTERM: the mount goes" wait_for 50 gone "$D"
	wait_exit "$TPID"; rc=$?
	t "SIGTERM: the daemon exits 0" eq $rc 0
else
	bad "a foreground daemon mounts"
fi

if start_fg "$D"; then
	kill -INT "$DPID"
	t "SIGINT: the mount goes" wait_for 50 gone "$D"
	wait_exit "$TPID"; rc=$?
	t "SIGINT: the daemon exits 0" eq $rc 0
else
	bad "a daemon mounts for SIGINT"
fi

if start_fg "$D"; then
	t "fusermount3 -u unmounts" fusermount3 -u "$D"
	wait_exit "$TPID"; rc=$?
	t "fusermount3 -u ends the daemon (exit 0)" eq $rc 0
	t "and the mount is gone" gone "$D"
else
	bad "a daemon mounts for fusermount3 -u"
fi

# ---- no /dev/fuse ---------------------------------------------------------------
if ! timeout 10 unshare -m true 2>/dev/null; then
	echo "ok - # SKIP no /dev/fuse: unshare -m does not work here"
else
	timeout 30 unshare -m sh -c 'mount -t tmpfs none /dev && exec "$1" -f "$2"' \
		sh "$IPCD" "$D" >"$E" 2>&1
	rc=$?
	t "no /dev/fuse: exit 1" eq $rc 1
	t "no /dev/fuse: says /dev/fuse does not exist" has "$E" "/dev/fuse does not exist"
	t "no /dev/fuse: nothing mounted" gone "$D"
fi

# ---- fastpath=off and fastpath=require as root --------------------------------------
if start_fg "$D" -o fastpath=off; then
	t "fastpath=off: status says off, reason fastpath=off" \
		sh -c 'getfattr --absolute-names --only-values -n user.ipcd.status "$1" |
			grep -q "^fastpath=off reason=fastpath=off "' sh "$D"
	t "fastpath=off: read/write works" chan_works "$D"
	timeout 20 "$CHAN_TOOL" send "$D/c" </dev/null >"$E" 2>&1; rc=$?
	t "fastpath=off: mmap fails with an error, no hang (exit 1)" eq $rc 1
	t "fastpath=off: the error is ENODEV" has "$E" "No such device"
	fusermount3 -u "$D"
	wait_exit "$TPID" >/dev/null
else
	bad "fastpath=off mounts"
fi
if [ $FASTPATH_HERE = yes ]; then
	if start_fg "$D" -o fastpath=require; then
		pass "fastpath=require mounts where --version says available"
		t "fastpath=require: status says on" \
			sh -c 'getfattr --absolute-names --only-values -n user.ipcd.status "$1" |
				grep -q "^fastpath=on "' sh "$D"
		fusermount3 -u "$D"
		wait_exit "$TPID" >/dev/null
	else
		bad "fastpath=require mounts where --version says available"
	fi
else
	run_ipcd "$E" -f -o fastpath=require "$D"; rc=$?
	t "fastpath=require where unavailable: exit 1" eq $rc 1
	t "fastpath=require where unavailable: says why" has "$E" "fastpath=require, but"
fi

# ---- as nobody, without CAP_SYS_ADMIN ---------------------------------------------
NB_RUN=(setpriv --reuid=65534 --regid=65534 --clear-groups)
newdir NB
chown 65534:65534 "$NB"
nb_skip=
if ! timeout 10 "${NB_RUN[@]}" true 2>/dev/null; then
	nb_skip="setpriv cannot run commands as nobody"
elif ! timeout 10 "${NB_RUN[@]}" "$IPCD" --version >/dev/null 2>&1; then
	nb_skip="nobody cannot run $IPCD"
else
	LOG=$TMPD/nobody.log
	timeout -k 5 $LIMIT "${NB_RUN[@]}" "$IPCD" -f "$NB" >"$LOG" 2>&1 &
	TPID=$!
	PIDS+=("$TPID")
	for _ in $(seq 1 100); do
		is_mounted "$NB" && break
		kill -0 "$TPID" 2>/dev/null || break
		sleep 0.05
	done
	if ! is_mounted "$NB"; then
		wait_exit "$TPID" >/dev/null
		nb_skip="nobody cannot mount here ($(tr '\n' ' ' <"$LOG"))"
	fi
fi
if [ -n "$nb_skip" ]; then
	echo "ok - # SKIP non-root daemon: $nb_skip"
else
	pass "as nobody the default (auto) mounts through fusermount3"
	DPID=$(pgrep -P "$TPID" | head -1)
	[ -n "$DPID" ] && PIDS+=("$DPID")
	t "nobody's daemon runs as uid 65534" \
		eq "$(ps -o uid= -p "${DPID:-0}" 2>/dev/null | tr -d ' ')" 65534
	timeout 20 "${NB_RUN[@]}" getfattr --absolute-names --only-values \
		-n user.ipcd.status "$NB" >"$E" 2>&1
	t "status says fastpath=off with a reason" has "$E" "^fastpath=off reason=.*CAP_SYS_ADMIN"
	t "the daemon said once why the fast path is off" \
		eq "$(grep -c "fast path off" "$LOG")" 1
	t "read/write of a channel works for nobody" chan_works "$NB" "${NB_RUN[@]}"
	timeout 20 "${NB_RUN[@]}" "$CHAN_TOOL" send "$NB/c" </dev/null >"$E" 2>&1; rc=$?
	t "mmap fails cleanly: chan_tool send exits 1, no hang" eq $rc 1
	t "mmap fails with ENODEV" has "$E" "No such device"
	t "nobody unmounts with fusermount3 -u" timeout 20 "${NB_RUN[@]}" fusermount3 -u "$NB"
	wait_exit "$TPID"; rc=$?
	t "nobody's daemon exits 0 after the unmount" eq $rc 0
	timeout 30 "${NB_RUN[@]}" "$IPCD" -f -o fastpath=require "$NB" >"$E" 2>&1; rc=$?
	t "as nobody fastpath=require: exit 1" eq $rc 1
	t "as nobody fastpath=require: names CAP_SYS_ADMIN" has "$E" "fastpath=require, but.*CAP_SYS_ADMIN"
	t "as nobody fastpath=require: nothing mounted" gone "$NB"
fi

# ---- daemonizing without -f -----------------------------------------------------
timeout 30 "$IPCD" "$D" >"$E" 2>&1; rc=$?
t "without -f the command returns 0" eq $rc 0
t "without -f the mount is in place when it returns" is_mounted "$D"
BG=$(pgrep -f -x "$IPCD $D" | head -1)
[ -n "$BG" ] && PIDS+=("$BG")
t "a background daemon remains" test -n "$BG"
t "the background daemon is in its own session" \
	eq "$(ps -o sid= -p "${BG:-0}" | tr -d ' ')" "${BG:-none}"
t "the daemonized mount serves channels" chan_works "$D"
t "unmount of the daemonized mount" fusermount3 -u "$D"
t "the unmount ends the background daemon" wait_for 50 dead "${BG:-0}"

# ---- ipcd SOURCE MOUNTPOINT -o OPTS -----------------------------------------------
newdir S
timeout 30 "$IPCD" "$S" "$D" -o ring_size=64k,fastpath=off >"$E" 2>&1; rc=$?
t "ipcd SOURCE MOUNTPOINT -o OPTS returns 0" eq $rc 0
t "it mounted MOUNTPOINT" is_mounted "$D"
t "SOURCE was not mounted" gone "$S"
BG=$(pgrep -f -x "$IPCD $S $D -o ring_size=64k,fastpath=off" | head -1)
[ -n "$BG" ] && PIDS+=("$BG")
t "the mount's source is ipcd, type fuse.ipcd" \
	eq "$(awk -v d="$D" '$2 == d { print $1, $3 }' /proc/mounts)" "ipcd fuse.ipcd"
: > "$D/opt"
t "the -o options apply (ring_size=64k)" \
	eq "$(getfattr --only-values -n user.ipcd.capacity "$D/opt" 2>/dev/null)" 65536
t "the -o options apply (fastpath=off)" \
	sh -c 'getfattr --absolute-names --only-values -n user.ipcd.status "$1" | grep -q "^fastpath=off "' sh "$D"
fusermount3 -u "$D"
t "the SOURCE-form daemon ends at unmount" wait_for 50 dead "${BG:-0}"

# ---- mount -t fuse.ipcd -----------------------------------------------------------
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if ! SYS_IPCD=$(PATH=$SYS_PATH command -v ipcd); then
	echo "ok - # SKIP mount -t fuse.ipcd: ipcd is not installed in $SYS_PATH"
else
	# From /, where no file named ipcd can make mount take the source
	# for a path.
	(cd / && timeout 30 env PATH=$SYS_PATH mount -t fuse.ipcd ipcd "$D") >"$E" 2>&1
	rc=$?
	t "mount -t fuse.ipcd ipcd DIR (with $SYS_IPCD) exits 0" eq $rc 0
	t "mount -t fuse.ipcd: mounted" is_mounted "$D"
	BG=$(pgrep -f -- "^([^ ]*/)?ipcd [^ ]+ $D( |\$)" | head -1)
	[ -n "$BG" ] || echo "  no daemon process found for $D"
	[ -n "$BG" ] && PIDS+=("$BG")
	t "mount -t fuse.ipcd: a channel works" chan_works "$D"
	t "umount of it" timeout 30 umount "$D"
	t "umount: the mount is gone" gone "$D"
	t "umount ends its daemon" wait_for 50 dead "${BG:-0}"
fi

# ---- after SIGKILL ---------------------------------------------------------------
if start_fg "$D"; then
	: > "$D/k"
	kill -KILL "$DPID"
	wait_exit "$TPID" >/dev/null 2>&1
	t "SIGKILL: the dead mount stays listed" is_mounted "$D"
	errs_out=$(timeout 10 stat "$D/k" 2>&1)
	t "SIGKILL: the dead mount says not connected" \
		sh -c 'case "$1" in *"not connected"*) exit 0;; esac; echo "  got: $1"; exit 1' sh "$errs_out"
	run_ipcd "$E" -f "$D"; rc=$?
	t "a new daemon on the dead mount: exit 1" eq $rc 1
	t "a new daemon on the dead mount: names the path" has "$E" "$D"
	t "fusermount3 -uz of the dead mount" fusermount3 -uz "$D"
	t "the dead mount is gone" gone "$D"
	if start_fg "$D"; then
		pass "a fresh mount after SIGKILL"
		t "the fresh mount serves channels" chan_works "$D"
		t "the fresh mount starts empty but for the new channel" eq "$(ls "$D")" c
		fusermount3 -u "$D"
		wait_exit "$TPID"; rc=$?
		t "the fresh daemon exits 0 at unmount" eq $rc 0
	else
		bad "a fresh mount after SIGKILL"
	fi
else
	bad "a daemon mounts for SIGKILL"
fi

left=
for d in "${MOUNTS[@]}"; do is_mounted "$d" && left="$left $d"; done
t "nothing of ours is left mounted" eq "$left" ""
[ "$FAILS" = 0 ] || fail "$FAILS check(s) failed"
echo "all start-up checks passed"
