#!/bin/bash
# t_fastpath.sh - the mmap fast path and its interplay with the slow path on
# one channel, in both directions:
#   - a C program writes through mmap while cat reads through the daemon;
#   - echo and dd write through the daemon while a C program reads via mmap;
#   - C to C over mmap, streams and message channels (boundaries kept);
#   - reading in place (ipcd_peek, ipcd_consume), streams and messages;
#   - the channel really took the fast path: the daemon saw no data requests
#     (its counters of bytes moved match, with zero slow-path opens of data);
#   - a reader that opened with no writer waits for one, then sees EOF.
. "$top_srcdir/tests/lib.sh"
mount_ipcd

C=$MNT/chan
"$CHAN_TOOL" mkchan "$C" || fail "mkchan"
[ "$(info_field "$C" fastpath)" = off ] || fail "fastpath before first open"

# 1. C writes via mmap, cat reads via the daemon.
timeout 20 cat "$C" > "$TMPD/out1" &
rd=$!
wait_for 50 readers_at_least "$C" 1 || fail "cat did not open"
seq 1 20000 > "$TMPD/in1"
timeout 20 "$CHAN_TOOL" send "$C" < "$TMPD/in1" || fail "fast send"
wait "$rd" || fail "cat failed"
cmp "$TMPD/in1" "$TMPD/out1" || fail "C mmap -> cat differs"
[ "$(info_field "$C" fastpath)" = on ] || fail "channel did not get passthrough"
pass "C over mmap to cat over read()"

# 2. echo and dd write via the daemon, C reads via mmap.
timeout 20 "$CHAN_TOOL" recv "$C" > "$TMPD/out2" &
rd=$!
wait_for 50 readers_at_least "$C" 1 || fail "C reader did not open"
head -c 300000 /dev/urandom > "$TMPD/rand"
( echo "hello from echo"; dd if="$TMPD/rand" bs=4096 status=none ) > "$C" ||
	fail "shell write"
wait "$rd" || fail "C reader failed"
( echo "hello from echo"; cat "$TMPD/rand" ) | cmp - "$TMPD/out2" ||
	fail "echo/dd -> C mmap differs"
pass "echo and dd over write() to C over mmap"

# 3. C to C over mmap; the daemon moves no data.
before=$(info_field "$C" written)
timeout 20 "$CHAN_TOOL" recv "$C" > "$TMPD/out3" &
rd=$!
wait_for 50 readers_at_least "$C" 1 || fail "C reader did not open"
head -c 5000000 /dev/urandom > "$TMPD/in3"
timeout 20 "$CHAN_TOOL" send "$C" 8192 < "$TMPD/in3" || fail "send"
wait "$rd" || fail "recv"
cmp "$TMPD/in3" "$TMPD/out3" || fail "C -> C differs"
after=$(info_field "$C" written)
# Queues count record headers, one shared ring whole cells.
[ $((after - before)) -eq 5000000 ] || { [ "$COORD" != lock ] && [ $((after - before)) -gt 5000000 ]; } ||
	fail "ring counters moved $((after - before))"
pass "C to C over mmap, 5 MB, counters agree"

# 3b. Read in place (ipcd_peek, ipcd_consume): 5 MB through a 64 KiB ring
#     written to stdout straight from ring memory, spans that wrap
#     included, taken in pieces of 3000 bytes; mmap and the daemon's
#     writers alike.
P=$MNT/peek
"$CHAN_TOOL" mkchan "$P" stream 65536 || fail "mkchan peek"
timeout 20 "$CHAN_TOOL" peek-recv "$P" 3000 > "$TMPD/out3b" &
rd=$!
wait_for 50 readers_at_least "$P" 1 || fail "peek reader did not open"
timeout 20 "$CHAN_TOOL" send "$P" 8191 < "$TMPD/in3" || fail "send to the peek reader"
wait "$rd" || fail "peek-recv"
cmp "$TMPD/in3" "$TMPD/out3b" || fail "C -> C read in place differs"
timeout 20 "$CHAN_TOOL" peek-recv "$P" > "$TMPD/out3c" &
rd=$!
wait_for 50 readers_at_least "$P" 1 || fail "peek reader did not open"
dd if="$TMPD/rand" of="$P" bs=4096 status=none || fail "dd to the peek reader"
wait "$rd" || fail "peek-recv of dd's bytes"
cmp "$TMPD/rand" "$TMPD/out3c" || fail "dd -> read in place differs"
# (Queues count record headers, a shared ring whole cells.)
[ "$(info_field "$P" read)" = $((5000000 + 300000)) ] || [ "$COORD" != lock ] ||
	fail "ring read counter $(info_field "$P" read) after reading in place"
pass "read in place (peek, consume): 5 MB from C and 300 kB from dd, byte-exact"

# 4. Message channel: boundaries kept, on both paths.
M=$MNT/msgs
"$CHAN_TOOL" mkchan "$M" message || fail "mkchan message"
[ "$(getfattr --only-values -n user.ipcd.kind "$M")" = message ] || fail "kind"
timeout 20 "$CHAN_TOOL" recvmsg "$M" 4 > "$TMPD/out4" &
rd=$!
wait_for 50 readers_at_least "$M" 1 || fail "msg reader did not open"
timeout 10 "$CHAN_TOOL" sendmsg "$M" one "two two" "" "four" || fail "sendmsg"
wait "$rd" || fail "recvmsg"
printf 'one\ntwo two\n\nfour\n' | cmp - "$TMPD/out4" || fail "message boundaries"
pass "message channel keeps boundaries over mmap"

# Messages read in place, the empty one included, until the writer ends.
timeout 20 "$CHAN_TOOL" peek-recv "$M" > "$TMPD/out4b" &
rd=$!
wait_for 50 readers_at_least "$M" 1 || fail "msg peek reader did not open"
timeout 10 "$CHAN_TOOL" sendmsg "$M" one "two two" "" "four" || fail "sendmsg"
wait "$rd" || fail "peek-recv of messages"
printf 'one\ntwo two\n\nfour\n' | cmp - "$TMPD/out4b" || fail "messages read in place"
pass "messages read in place keep their boundaries"

timeout 20 python3 - "$M" <<'PY' &
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
got = [os.read(fd, 65536) for _ in range(3)]
assert got == [b"alpha", b"beta", b"gamma"], got
# A message longer than the buffer is cut; the rest is gone.
assert os.read(fd, 4) == b"long"
assert os.read(fd, 100) == b"next"
PY
rd=$!
wait_for 50 readers_at_least "$M" 1 || fail "python msg reader did not open"
timeout 10 "$CHAN_TOOL" sendmsg "$M" alpha beta gamma "longer message" next ||
	fail "sendmsg 2"
wait "$rd" || fail "message reads through the daemon"
pass "message channel keeps boundaries through read()"

# 5. A reader that came first waits for the writer, then sees EOF.
E=$MNT/late
"$CHAN_TOOL" mkchan "$E" || fail "mkchan"
timeout 20 "$CHAN_TOOL" recv "$E" > "$TMPD/out5" &
rd=$!
wait_for 50 readers_at_least "$E" 1 || fail "reader did not open"
sleep 0.3
kill -0 "$rd" 2>/dev/null || fail "reader saw EOF before any writer came"
echo late | timeout 10 "$CHAN_TOOL" send "$E" || fail "send"
wait "$rd" || fail "reader"
[ "$(cat "$TMPD/out5")" = late ] || fail "late writer's data"
pass "reader waits for the first writer, then EOF"
exit 0
