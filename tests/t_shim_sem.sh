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
#     fds), readv/writev;
#   - the mount's counters (user.ipcd.status): the reference run made no
#     channel; the shim run made channels and moved bytes through the rings
#     with slow_bytes growing by exactly what its exec'd children without the
#     shim moved through the daemon on purpose; no channel is left behind.
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
	env -u LD_PRELOAD "${vars[@]}" timeout -k 5 150 "$PROG" "$@" >"$log" 2>&1
}

# 1. The reference: kernel pipes and sockets, the mount untouched.
c0=$(status_field created)
b0=$(status_field bytes)
s0=$(status_field slow_bytes)
[ -n "$c0" ] && [ -n "$b0" ] && [ -n "$s0" ] || fail "cannot read user.ipcd.status"
if ! run_prog "$TMPD/kernel.out"; then
	cat "$TMPD/kernel.out"
	fail "shim_sem fails on kernel pipes: its expectations are wrong"
fi
grep -q '^ok - ' "$TMPD/kernel.out" || fail "shim_sem ran no check"
[ "$(status_field created)" = "$c0" ] && [ "$(status_field bytes)" = "$b0" ] ||
	fail "the run without the shim touched the mount"
pass "the reference run on kernel pipes and sockets ($(grep -c '^ok - ' "$TMPD/kernel.out") checks)"

# 2. The same checks through the shim.
if ! run_prog "$TMPD/shim.out" LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT"; then
	cat "$TMPD/shim.out"
	fail "shim_sem fails under the shim (the first FAIL line above says where)"
fi
[ "$(grep -c '^ok - ' "$TMPD/shim.out")" = "$(grep -c '^ok - ' "$TMPD/kernel.out")" ] ||
	fail "the shim run ran another number of checks"
sed -n 's/^ok - /ok - shim: /p' "$TMPD/shim.out"

# 3. The counters: channels made, bytes through the rings, and the slow path
#    used only where the program meant to.
c1=$(status_field created)
b1=$(status_field bytes)
s1=$(status_field slow_bytes)
want_slow=$(sed -n 's/^# slow-path payload bytes: //p' "$TMPD/shim.out")
[ -n "$want_slow" ] || fail "the program did not report its slow-path bytes"
[ $((c1 - c0)) -ge 50 ] ||
	fail "the shim made $((c1 - c0)) channels; pipes and socket pairs were not intercepted"
[ $((b1 - b0)) -ge $((64 << 20)) ] ||
	fail "only $((b1 - b0)) bytes went through rings"
[ $((s1 - s0)) -eq "$want_slow" ] ||
	fail "slow_bytes grew by $((s1 - s0)), expected $want_slow (the exec'd children without the shim)"
pass "counters: $((c1 - c0)) channels made, $((b1 - b0)) bytes through rings, $((s1 - s0)) slow-path bytes, all deliberate"

wait_for 50 no_channels || fail "channels left behind: $(status_field channels)"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"
pass "no channel left behind, the daemon still runs"
exit 0
