#!/bin/bash
# t_faults.sh - faults from clients never hurt the daemon or other channels:
#   - random bytes scribbled over a ring while it carries traffic: its users
#     end (data or EIO), never hang; the daemon lives; other channels carry
#     traffic on both paths correctly meanwhile and a new channel works after;
#   - a writer killed with SIGKILL part-way: the reader gets every byte of the
#     writer's completed writes, then EOF (fast-path and slow-path writers);
#   - a reader killed: the writer gets EPIPE instead of waiting;
#   - a process killed while holding a ring's producer lock: other writers
#     take the lock over and go on;
#   - the daemon killed: blocked clients get errors, not hangs (slow path and
#     fast path), new opens fail, and a new mount works afterwards.
. "$top_srcdir/tests/lib.sh"
mount_ipcd
PIDS=
EXTRA_CLEANUP='for p in $PIDS; do kill -9 $p 2>/dev/null; done'
gen() { "$CHAN_TOOL" gen "$@"; }
sum() { sha256sum | cut -d' ' -f1; }

# --- 1. scribbling ----------------------------------------------------------
V=$MNT/victim
"$CHAN_TOOL" mkchan "$V" stream 65536 || fail "mkchan victim"
"$CHAN_TOOL" mkchan "$MNT/vm" message 65536 || fail "mkchan vm"
for b in b1 b2; do "$CHAN_TOOL" mkchan "$MNT/$b" stream 65536 || fail "mkchan $b"; done
want=$(gen 200000000 3 | sum)

# bystanders: one fast-path pair, one slow-path pair
timeout 120 "$CHAN_TOOL" recv "$MNT/b1" | sum > "$TMPD/b1" & PIDS="$PIDS $!"; rb1=$!
timeout 120 cat "$MNT/b2" | sum > "$TMPD/b2" & rb2=$!
# victims: a fast reader and writer, a slow reader, a message pair
timeout 60 "$CHAN_TOOL" recv "$V" > /dev/null 2>"$TMPD/v1.err" & rv1=$!
timeout 60 cat "$MNT/vm" > /dev/null 2>&1 & rv2=$!
wait_for 100 readers_at_least "$MNT/b1" 1 && wait_for 100 readers_at_least "$MNT/b2" 1 &&
	wait_for 100 readers_at_least "$V" 1 && wait_for 100 readers_at_least "$MNT/vm" 1 ||
	fail "readers did not open"
gen 200000000 3 | timeout 120 "$CHAN_TOOL" send "$MNT/b1" & wb1=$!
gen 200000000 3 | timeout 120 dd of="$MNT/b2" bs=64k status=none & wb2=$!
gen 100000000 5 | timeout 60 "$CHAN_TOOL" send "$V" 2>/dev/null & wv1=$!
(for i in $(seq 1 2000); do echo "message $i"; done |
	timeout 60 xargs -n 50 "$CHAN_TOOL" sendmsg "$MNT/vm" 2>/dev/null) & wv2=$!
for seed in 11 12 13 14; do
	"$RING_PEER" scribble "$V" 3000 $seed || fail "scribble"
	"$RING_PEER" scribble "$MNT/vm" 3000 $seed || fail "scribble"
done
for p in $rv1 $rv2 $wv1 $wv2; do
	wait $p
	[ $? -ne 124 ] || fail "a user of a scribbled channel hung"
done
# a slow-path read of the damaged ring ends too (data, EOF or EIO)
timeout 10 head -c 1 "$V" > /dev/null 2>&1
[ $? -ne 124 ] || fail "slow-path read of a scribbled ring hung"
wait $wb1 && wait $wb2 && wait $rb1 && wait $rb2 || fail "bystander traffic failed"
[ "$(cat "$TMPD/b1")" = "$want" ] || fail "fast bystander data corrupted"
[ "$(cat "$TMPD/b2")" = "$want" ] || fail "slow bystander data corrupted"
kill -0 "$DAEMON_PID" || fail "daemon died"
# No reader: the writer gets SIGPIPE (and EPIPE), as on a pipe.
(echo fresh > "$MNT/fresh-reader-less") 2>/dev/null
[ $? -eq 141 ] || fail "a write with no reader did not end by SIGPIPE"
"$CHAN_TOOL" mkchan "$MNT/after" || fail "mkchan after"
timeout 10 cat "$MNT/after" > "$TMPD/after" & r=$!
wait_for 50 readers_at_least "$MNT/after" 1 || fail "reader after"
echo "still serving" > "$MNT/after"
wait $r && [ "$(cat "$TMPD/after")" = "still serving" ] || fail "new channel after scribbling"
pass "scribbled rings: users end, daemon and other channels unharmed"

# --- 2. writer killed part-way ------------------------------------------------
killed_writer() {	# $1: fast or slow writer
	c=$MNT/kw-$1
	"$CHAN_TOOL" mkchan "$c" stream 65536 || fail "mkchan"
	timeout 60 "$CHAN_TOOL" recv "$c" 1000 > "$TMPD/kw.out" & r=$!
	wait_for 50 readers_at_least "$c" 1 || fail "reader"
	if [ "$1" = fast ]; then
		gen 1000000000 9 | "$CHAN_TOOL" count-send "$c" 4000 2>"$TMPD/kw.count" &
	else
		gen 1000000000 9 | "$PYTHON3" -c '
import os, sys; ipcd_kw = 1
fd = os.open(sys.argv[1], os.O_WRONLY); total = 0
while True:
    b = sys.stdin.buffer.read(4000)
    total += os.write(fd, b)
    sys.stderr.write("%d\n" % total); sys.stderr.flush()
' "$c" 2>"$TMPD/kw.count" &
	fi
	# Killed once it has written (a writer still starting would never
	# open the channel, and the reader would wait for one).
	wait_for 100 grep -q '^[0-9]' "$TMPD/kw.count" || fail "$1: the writer wrote nothing in 10 s"
	sleep 0.2
	pkill -9 -f "count-send $c" ; pkill -9 -f "import os, sys; ipcd_kw"
	wait $r || fail "$1: reader did not end cleanly after the writer died"
	got=$(stat -c %s "$TMPD/kw.out")
	reported=$(grep -E '^[0-9]+$' "$TMPD/kw.count" | tail -n 1)
	[ -n "$reported" ] && [ "$reported" -gt 0 ] || fail "$1: writer wrote nothing"
	[ "$got" -ge "$reported" ] || fail "$1: lost bytes: got $got < reported $reported"
	cmp -s "$TMPD/kw.out" <(gen "$got" 9) || fail "$1: received bytes are not the stream"
	pass "$1 writer killed: reader got all $reported reported bytes ($got), then EOF"
}
# The interpreter itself, not a wrapper script that starts it.
PYTHON3=${PYTHON3:-$(command -v python3)}
[ -n "$PYTHON3" ] && PYTHON3=$("$PYTHON3" -c 'import sys; print(sys.executable)')
killed_writer fast
[ -n "$PYTHON3" ] && killed_writer slow

# --- 3. reader killed: EPIPE --------------------------------------------------
c=$MNT/kr
"$CHAN_TOOL" mkchan "$c" stream 65536 || fail "mkchan"
"$CHAN_TOOL" recv "$c" > /dev/null & r=$!
PIDS="$PIDS $r"
wait_for 50 readers_at_least "$c" 1 || fail "reader"
kill -STOP $r
gen 10000000 1 | timeout 20 "$CHAN_TOOL" send "$c" 2>"$TMPD/kr.err" & w=$!
sleep 0.3
kill -9 $r
wait $w; st=$?
[ $st -ne 124 ] || fail "writer hung after its reader died"
grep -q "Broken pipe" "$TMPD/kr.err" || fail "writer did not get EPIPE: $(cat "$TMPD/kr.err")"
pass "reader killed: writer gets EPIPE"

# --- 4. lock holder killed ----------------------------------------------------
# (A channel with the lock, whatever the mount's coordination.)
c=$MNT/lock
"$CHAN_TOOL" mkchan "$c" || fail "mkchan"
[ "$COORD" = lock ] || setfattr -n user.ipcd.coord -v lock "$c" || fail "coord lock"
timeout 30 "$CHAN_TOOL" recv "$c" > "$TMPD/lock.out" & r=$!
wait_for 50 readers_at_least "$c" 1 || fail "reader"
coproc HOLD { exec "$RING_PEER" hold-lock "$c"; }
PIDS="$PIDS $HOLD_PID"
read -r -t 5 line <&"${HOLD[0]}" && [ "$line" = locked ] || fail "hold-lock"
echo "after the holder" | timeout 20 "$CHAN_TOOL" send "$c" & w=$!
sleep 0.3
kill -0 $w 2>/dev/null || fail "writer did not wait for the held lock"
kill -9 "$HOLD_PID"
wait $w || fail "writer did not take the dead holder's lock over"
wait $r
[ "$(cat "$TMPD/lock.out")" = "after the holder" ] || fail "data after takeover"
pass "lock holder killed: the lock is taken over"

# --- 5. daemon killed -----------------------------------------------------------
"$CHAN_TOOL" mkchan "$MNT/d1" || fail "mkchan"
"$CHAN_TOOL" mkchan "$MNT/d2" || fail "mkchan"
timeout 30 cat "$MNT/d1" > /dev/null 2>"$TMPD/d1.err" & r1=$!
timeout 30 "$CHAN_TOOL" recv "$MNT/d2" > /dev/null 2>"$TMPD/d2.err" & r2=$!
exec 7>"$MNT/d2"	# a writer keeps d2 from seeing EOF
wait_for 50 readers_at_least "$MNT/d1" 1 && wait_for 50 readers_at_least "$MNT/d2" 1 ||
	fail "readers"
kill -9 "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=
wait $r1; s1=$?
wait $r2; s2=$?
exec 7>&-
[ $s1 -ne 124 ] && [ $s1 -ne 0 ] || fail "slow-path reader: status $s1 after the daemon died"
[ $s2 -ne 124 ] && [ $s2 -ne 0 ] || fail "fast-path reader: status $s2 after the daemon died"
grep -q "abort" "$TMPD/d2.err" || fail "fast-path reader error: $(cat "$TMPD/d2.err")"
timeout 5 cat "$MNT/d1" 2>/dev/null; st=$?
[ $st -ne 0 ] && [ $st -ne 124 ] || fail "open after the daemon died: status $st"
fusermount3 -uz "$MNT"
old=$MNT
MNT=
rmdir "$old"
mount_ipcd
"$CHAN_TOOL" mkchan "$MNT/again" || fail "mkchan on a new mount"
timeout 10 "$CHAN_TOOL" recv "$MNT/again" > "$TMPD/again" & r=$!
wait_for 50 readers_at_least "$MNT/again" 1 || fail "reader on a new mount"
echo works > "$MNT/again"
wait $r && [ "$(cat "$TMPD/again")" = works ] || fail "new mount"
pass "daemon killed: clients get errors, a new mount works"
exit 0
