#!/bin/bash
# t_shim_sem.sh - the shim's semantics against the kernel's, with
# tests/shim_sem (one libc-only C program, run twice):
#   - without the shim, on kernel pipes and socket pairs: the reference, which
#     proves its expectations are the kernel's;
#   - with the shim preloaded (IPCD_MOUNT on a fresh mount): the same checks
#     over channels.  They cover pipe data, 64 MiB with a checksum, EOF (also
#     after SIGKILL of a writer), close taking effect at once, EPIPE and
#     SIGPIPE, O_NONBLOCK (pipe2, F_SETFL, FIONBIO), F_GETFL/F_GETFD, PIPE_BUF
#     atomicity across processes, FIONREAD, F_GETPIPE_SZ, lseek ESPIPE, fstat
#     types, stream/datagram/seqpacket pairs (shutdown, MSG_PEEK, MSG_TRUNC,
#     MSG_WAITALL, MSG_DONTWAIT, boundaries), getsockopt, the dup family,
#     close_range, fork, exec of inherited ends with and without the shim
#     (the slow path), CLOEXEC, a process with one thread (whose handlers
#     close the end a read waits on), EINTR and SA_RESTART, threads, poll, ppoll,
#     select, pselect and epoll (level, edge, one-shot, mixed with kernel
#     fds), readv/writev; and the cases from the field: invalid arguments
#     (EFAULT, EINVAL, EBADF... compared with kernel objects, no crash, nothing
#     left behind), exact pipe sizes, SO_PEERCRED/SO_PASSCRED/SO_RCVTIMEO and
#     friends, splice/tee/vmsplice, signals 20 us or 1 ms into a wait (timers,
#     kill from another process, SA_RESTART, rsync's SIGUSR2), closes by
#     exit/SIGKILL/exec seen right after waitpid(), closes learnt through
#     another channel, readiness of every state compared with kernel pipes and
#     sockets, the order of POLLIN and POLLHUP across processes, pipes up to
#     EMFILE, 10000 pipe()+close(), ends reopened through /proc and /dev/fd,
#     stdio (fclose, SIGPIPE, fd reuse, posix_spawn), processes with and
#     without the shim on one pipe, and a four-level fork/exec chain;
#   - the mount's counters (user.ipcd.status): the reference run made no
#     channel; the shim run made channels and moved bytes through the rings
#     with slow_bytes growing by what its exec'd children without the shim
#     moved through the daemon on purpose, plus at most what may take either
#     path (stdio, ends reopened through /proc, splice); no channel is left
#     behind.
# Both runs use -k: every check runs in its own process, and the shim run
# reports every check that fails, each reason on a "FAIL: check: ..." line.
. "$top_srcdir/tests/lib.sh"

PROG=${SHIM_SEM:-$top_builddir/tests/shim_sem}
[ -x "$PROG" ] || fail "$PROG is not built (make tests/shim_sem)"
PRELOAD=${SHIM_PRELOAD:-$top_builddir/.libs/libipcd-shim.so}
[ -f "$top_builddir/.libs/libipcd-shim.so" ] || fail "the shim is not built"

mount_ipcd
shim_env

status_field() {
	getfattr --only-values -n user.ipcd.status "$MNT" 2>/dev/null |
		tr ' ' '\n' | sed -n "s/^$1=//p"
}
no_channels() { [ "$(status_field channels)" = 0 ]; }

# run_prog LOG [VAR=value...]: run the program under env, its output to LOG.
run_prog() {
	log=$1
	shift
	vars=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
	[ "${1:-}" = -- ] && shift
	env -u LD_PRELOAD "${vars[@]}" timeout -k 5 "$RUN_SECS" "$PROG" "$@" >"$log" 2>&1
}

# Each run's limit: the checks bound their own waits (a watchdog per check,
# alarms in children), this only catches the unforeseen.
RUN_SECS=150

# 1. The reference: kernel pipes and sockets, the mount untouched.
c0=$(status_field created)
b0=$(status_field bytes)
s0=$(status_field slow_bytes)
[ -n "$c0" ] && [ -n "$b0" ] && [ -n "$s0" ] || fail "cannot read user.ipcd.status"
if ! run_prog "$TMPD/kernel.out" -- -k; then
	cat "$TMPD/kernel.out"
	fail "shim_sem fails on kernel pipes: its expectations are wrong"
fi
grep -q '^ok - ' "$TMPD/kernel.out" || fail "shim_sem ran no check"
[ "$(status_field created)" = "$c0" ] && [ "$(status_field bytes)" = "$b0" ] ||
	fail "the run without the shim touched the mount"
pass "the reference run on kernel pipes and sockets ($(grep -c '^ok - ' "$TMPD/kernel.out") checks)"

# 2. The same checks through the shim, every one of them even after failures,
#    with every pipe a channel (IPCD_SHIM_LEARN=off: otherwise the pipes of a
#    call site that carry little become kernel pipes, and those checks would
#    look at the kernel).
RUN_SECS=500
run_prog "$TMPD/shim.out" LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" IPCD_SHIM_LEARN=off -- -k
rc=$?
sed -n 's/^ok - /ok - shim: /p' "$TMPD/shim.out"
grep -v '^ok - ' "$TMPD/shim.out"
nk=$(grep -c '^ok - ' "$TMPD/kernel.out")
ns=$(grep -c '^ok - ' "$TMPD/shim.out")
RUN_OK=1
if [ "$rc" -ne 0 ] || [ "$ns" != "$nk" ]; then
	RUN_OK=
	bad "shim_sem under the shim: $ns of $nk checks pass (exit status $rc); the FAIL lines above say why"
fi

# 3. The counters: channels made, bytes through the rings, and the slow path
#    used only where the program meant to.
c1=$(status_field created)
b1=$(status_field bytes)
s1=$(status_field slow_bytes)
want_slow=$(sed -n 's/^# slow-path payload bytes: //p' "$TMPD/shim.out")
may_slow=$(sed -n 's/^# slow-path payload bytes allowed: //p' "$TMPD/shim.out")
[ -n "$want_slow" ] && [ -n "$may_slow" ] || fail "the program did not report its slow-path bytes"
counters_ok() {
	[ $((c1 - c0)) -ge 50 ] ||
		{ echo "  the shim made $((c1 - c0)) channels; pipes and socket pairs were not intercepted"; return 1; }
	[ $((b1 - b0)) -ge $((64 << 20)) ] ||
		{ echo "  only $((b1 - b0)) bytes went through rings"; return 1; }
	[ $((s1 - s0)) -ge "$want_slow" ] && [ $((s1 - s0)) -le $((want_slow + may_slow)) ] ||
		{ echo "  slow_bytes grew by $((s1 - s0)), expected $want_slow (the exec'd children without the shim) plus at most $may_slow (stdio, reopened ends, splice)"; return 1; }
}
if [ -n "$RUN_OK" ]; then
	t "counters: $((c1 - c0)) channels made, $((b1 - b0)) bytes through rings, $((s1 - s0)) slow-path bytes, all deliberate" counters_ok
else
	echo "# counters (not judged, the run failed): $((c1 - c0)) channels made," \
		"$((b1 - b0)) bytes through rings, $((s1 - s0)) slow-path bytes" \
		"($want_slow deliberate, $may_slow either way)"
fi

# libc's own I/O reached the other way (ipcd-shim(7), "Reaching libc's own
# I/O"): its entries patched from the first end on, not its streams' tables.
RUN_SECS=120
if run_prog "$TMPD/text.out" LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" IPCD_SHIM_PATCH=text \
	IPCD_SHIM_LEARN=off -- stdio; then
	pass "stdio with IPCD_SHIM_PATCH=text (libc's entries patched at the first end)"
else
	grep -v '^ok - ' "$TMPD/text.out"
	bad "stdio with IPCD_SHIM_PATCH=text differs from the kernel"
fi

# And with the shim's default, where pipes that carry little, or that only
# their maker waits on, become kernel pipes: the same answers from the
# checks that make many pipes in one place or wait on their own.
RUN_SECS=300
if run_prog "$TMPD/learn.out" LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" -- -k \
	poll poll-mixed readiness readiness-order many-pipes pipe-loop close-exit \
	close-notify fine-points mixed stdio; then
	pass "the checks with the shim's default (pipes left to the kernel as it learns)"
else
	grep -v '^ok - ' "$TMPD/learn.out"
	bad "with the shim's default, a check differs from the kernel"
fi

anon_left() { ls -A "$MNT/.anon" 2>/dev/null | wc -l; }
no_anon() { [ "$(anon_left)" = 0 ]; }
if wait_for 50 no_channels && wait_for 10 no_anon; then
	pass "no channel left behind"
else
	bad "left behind: channels=$(status_field channels), $(anon_left) files in $MNT/.anon"
fi
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"
pass "the daemon still runs"
[ "$FAILS" = 0 ] || fail "$FAILS of the above failed"
exit 0
