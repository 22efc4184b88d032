#!/bin/bash
# t_coord.sh - channels whose ends processes share without a lock, through
# a real mount, in either design: coordinated by queues (-o coord=queues,
# the default here) or by one shared ring (T_COORD=shared: -o
# coord=shared, as t_shared.sh runs it), and the attribute user.ipcd.coord:
#   - the attribute: read, set before any open, refused while open, for a
#     bad value; the mount's default; an anonymous pipe's (a shared ring on
#     a mount of shared rings, else the lock) and socket pair's (the lock);
#   - fan-in: 4 writers over mmap into one stream, each writer's lines whole
#     and in order, every line once;
#   - fan-out: 3 readers share the read end, every line reaches exactly one;
#   - writers through the daemon (cat, dd) and over mmap side by side, and
#     a reader through the daemon of what mmap writers wrote;
#   - message channels keep boundaries with several writers;
#   - end of file after the last writer, EPIPE with no reader;
#   - a writer stopped (SIGSTOP) holds nobody back, one killed (SIGKILL) in
#     the middle of its stream leaves no broken line, and queues (writer
#     slots) of dead writers are taken over by new ones (more writers in
#     turn than there are).
. "$top_srcdir/tests/lib.sh"

command -v getfattr >/dev/null && command -v setfattr >/dev/null ||
	skip "getfattr/setfattr (the attr package) are not installed"
DESIGN=${T_COORD:-queues}
case $DESIGN in
queues)
	mount_ipcd -o coord=queues,queues=5,ring_size=64k
	# What a client's writers have: 4 queues (the first is the daemon's).
	SLOTS=4 WHAT=queues ;;
shared)
	mount_ipcd -o coord=shared,ring_size=64k
	# A stream ring of 64 KiB has 8 writer slots; the first is the
	# daemon's, for the slow path.
	SLOTS=7 WHAT="writer slots" ;;
*)
	fail "T_COORD=$DESIGN: queues or shared" ;;
esac
# status NAME: one field of the mount's user.ipcd.status.
status() {
	getfattr --only-values -n user.ipcd.status "$MNT" | tr ' ' '\n' | sed -n "s/^$1=//p"
}
[ "$(status fastpath)" = on ] || skip "no mmap fast path here (coordination is the fast path's)"

coord_of() { getfattr --only-values -n user.ipcd.coord "$1" 2>/dev/null; }

# writers CHAN COUNT ID...: seqsend writers of COUNT lines, one an ID, at
# once.  The channel is held open as a writer until all have started, so
# that the end of file does not come between a writer that ends early and
# one that starts late.
writers() {
	local f=$1 n=$2 p pids= id
	shift 2
	exec 8>"$f"
	for id in "$@"; do
		timeout 60 "$CHAN_TOOL" seqsend "$f" "$id" "$n" & pids="$pids $!"
	done
	for p in $pids; do wait "$p" || fail "$f: writer failed"; done
	exec 8>&-
}

# check_lines FILE WRITERS COUNT [partial]: every line "ID SEQ ....", whole;
# each writer's sequence 0..COUNT-1 in order, every line once; "partial":
# each writer's sequence only rising (lines may be missing).
check_lines() {
	awk -v w="$2" -v n="$3" -v part="${4:-}" '
		length($0) != 31 || $1 !~ /^w[0-9]+$/ || $3 !~ /^\.*$/ { print "bad line " NR ": " $0; bad = 1; exit }
		{ id = substr($1, 2) + 0; if (id >= w) { print "bad writer " $1; bad = 1; exit }
		  if (part == "" ? $2 != next_[id] + 0 : $2 < next_[id] + 0) {
			print "writer " id ": " $2 " after " next_[id] - 1; bad = 1; exit }
		  next_[id] = $2 + 1 }
		END { if (bad) exit 1
		      if (part == "") for (i = 0; i < w; i++) if (next_[i] + 0 != n) { print "writer " i ": " next_[i] + 0 " of " n; exit 1 } }
	' "$1"
}

# ---- the attribute -------------------------------------------------------------
C=$MNT/c
: > "$C"
[ "$(coord_of "$C")" = "$DESIGN" ] || fail "a new channel on a coord=$DESIGN mount: $(coord_of "$C")"
if [ "$DESIGN" = queues ]; then
	info_field "$C" queues | grep -qx 5 ||
		fail "info shows queues=5: $(getfattr --only-values -n user.ipcd.info "$C")"
fi
for d in lock queues shared "$DESIGN"; do
	setfattr -n user.ipcd.coord -v $d "$C" || fail "set coord $d"
	[ "$(coord_of "$C")" = $d ] || fail "coord $d read back"
done
setfattr -n user.ipcd.coord -v spinlock "$C" 2>/dev/null && fail "an unknown coordination was accepted"
setfattr -n user.ipcd.coord -v "" "$C" 2>/dev/null && fail "an empty coordination was accepted"
exec 7<>"$C"
setfattr -n user.ipcd.coord -v lock "$C" 2>"$TMPD/busy" && fail "coord changed while the channel is open"
grep -q 'busy' "$TMPD/busy" || fail "not EBUSY while open: $(cat "$TMPD/busy")"
exec 7>&-
getfattr -d -m - "$C" 2>/dev/null | grep -q '^user.ipcd.coord=' || fail "user.ipcd.coord is not listed"
pass "user.ipcd.coord: the mount's default ($DESIGN), set before opening, refused while open or unknown"

# fan_in NAME WRITERS COUNT: a new channel NAME, one reader over mmap into
# $TMPD/NAME, WRITERS seqsend writers of COUNT lines each.
fan_in() {
	local f=$MNT/$1 rd
	"$CHAN_TOOL" mkchan "$f" || fail "mkchan $1"
	timeout 60 "$CHAN_TOOL" recv "$f" > "$TMPD/$1" &
	rd=$!
	wait_for 50 readers_at_least "$f" 1 || fail "$1: the reader did not open"
	writers "$f" "$3" $(seq -f 'w%g' 0 $(($2 - 1)))
	wait "$rd" || fail "$1: the reader failed"
	check_lines "$TMPD/$1" "$2" "$3" || fail "$1: lines of $2 writers"
}

# ---- fan-in over mmap ------------------------------------------------------------
fan_in fanin 4 20000
[ "$(status slow_bytes)" = 0 ] || fail "fan-in went through the daemon"
pass "fan-in: 4 writers x 20000 lines over mmap, each writer's whole and in order, no daemon"

# More writers than $WHAT: the others write through the daemon, and each
# writer's order holds all the same.
fan_in fanin_more $((SLOTS + 3)) 10000
pass "$((SLOTS + 3)) writers on $SLOTS $WHAT: the rest through the daemon, each writer's lines in order, all once"

# The Python client (mmap and struct only) as one of the writers: the
# daemon gives it a queue (it cannot compare-and-swap), or reserves its
# cells of the shared ring (it cannot fetch-and-add), its records go in
# with plain stores, and it rings the doorbell for sleeping readers.
PY=
if [ -n "${PYTHON3:-}" ] && command -v "$PYTHON3" >/dev/null 2>&1 && [ "$(uname -m)" = x86_64 ]; then
	PY=$("$PYTHON3" -c 'import sys; assert sys.version_info >= (3, 8); print(sys.executable)' 2>/dev/null) || PY=
fi
if [ -z "$PY" ]; then
	echo "# the Python client's part is left out: no python3 3.8 or later on x86-64 here"
else
	F=$MNT/fanin_py
	"$CHAN_TOOL" mkchan "$F" || fail "mkchan fanin_py"
	timeout 60 "$CHAN_TOOL" recv "$F" > "$TMPD/fanin_py" &
	rd=$!
	wait_for 50 readers_at_least "$F" 1 || fail "reader did not open"
	exec 8>"$F"
	pids=
	# 4 C writers take 4 queues (or slots), so the Python one may find
	# none free: then its lines go through the daemon, in order.
	for i in 0 1 2 3; do
		timeout 60 "$CHAN_TOOL" seqsend "$F" "w$i" 10000 & pids="$pids $!"
	done
	timeout 60 "$PY" -B - "$top_srcdir/tests" "$F" <<'PY' & pids="$pids $!"
import sys
sys.path.insert(0, sys.argv[1])
import ring_py as R
w = R.Channel(sys.argv[2], "write")
for i in range(10000):
    line = ("w4 %d " % i).ljust(31, ".") + "\n"
    assert w.send(line.encode()) == 32
w.close()
PY
	for p in $pids; do wait "$p" || fail "a writer (C or Python) failed"; done
	exec 8>&-
	wait "$rd" || fail "reader of C and Python writers"
	check_lines "$TMPD/fanin_py" 5 10000 || fail "4 C writers and the Python client"
	# The Python client as one of two readers beside a C one: the daemon
	# moves claims for it (IOC_CLAIM) or takes records for it (IOC_TAKE);
	# every line reaches one of them.
	F=$MNT/fanout_py
	"$CHAN_TOOL" mkchan "$F" || fail "mkchan fanout_py"
	timeout 60 "$CHAN_TOOL" recv "$F" 32 > "$TMPD/fanout_py.c" &
	rdc=$!
	timeout 60 "$PY" -B - "$top_srcdir/tests" "$F" > "$TMPD/fanout_py.py" <<'PY' &
import sys
sys.path.insert(0, sys.argv[1])
import ring_py as R
r = R.Channel(sys.argv[2], "read")
while True:
    b = r.recv(32)
    if not b:
        break
    sys.stdout.buffer.write(b)
r.close()
PY
	rdp=$!
	wait_for 50 readers_at_least "$F" 2 || fail "the two readers did not open"
	writers "$F" 10000 w0 w1
	wait "$rdc" || fail "the C reader failed"
	wait "$rdp" || fail "the Python reader failed"
	check_lines "$TMPD/fanout_py.c" 2 0 partial || fail "the C reader's lines"
	check_lines "$TMPD/fanout_py.py" 2 0 partial || fail "the Python reader's lines"
	[ -s "$TMPD/fanout_py.py" ] || fail "the Python reader got nothing"
	cat "$TMPD/fanout_py.c" "$TMPD/fanout_py.py" | sort -k1,1 -k2,2n > "$TMPD/fanout_py.all"
	check_lines "$TMPD/fanout_py.all" 2 10000 || fail "C and Python readers: not every line exactly once"
	pass "the Python client writes as one of 5 writers ($WHAT), and reads as one of 2 readers (lines whole, in order, each once)"
fi

# ---- fan-out ----------------------------------------------------------------------
O=$MNT/fanout
"$CHAN_TOOL" mkchan "$O" || fail "mkchan fanout"
rds=
for i in 0 1 2; do
	timeout 60 "$CHAN_TOOL" recv "$O" 32 > "$TMPD/fanout.$i" & rds="$rds $!"
done
wait_for 50 readers_at_least "$O" 3 || fail "fan-out readers did not open"
timeout 60 "$CHAN_TOOL" seqsend "$O" w0 30000 || fail "fan-out writer"
for p in $rds; do wait "$p" || fail "a fan-out reader failed"; done
for i in 0 1 2; do
	check_lines "$TMPD/fanout.$i" 1 30000 partial || fail "fan-out reader $i out of order"
done
cat "$TMPD"/fanout.* | sort -k2,2n > "$TMPD/fanout.all"
check_lines "$TMPD/fanout.all" 1 30000 || fail "fan-out: not every line exactly once"
pass "fan-out: 3 readers share 30000 lines, each exactly once, in order as each saw them"

# ---- through the daemon and over mmap together --------------------------------------
M=$MNT/mixed
"$CHAN_TOOL" mkchan "$M" || fail "mkchan mixed"
timeout 60 cat "$M" > "$TMPD/mixed" &
rd=$!
wait_for 50 readers_at_least "$M" 1 || fail "cat did not open"
# One writer through the daemon, whole 32-byte lines, one write each,
# beside two over mmap (fd 9 holds the channel open until all are in).
exec 9>"$M"
awk 'BEGIN { for (i = 0; i < 10000; i++) { s = "w2 " i " "; while (length(s) < 31) s = s "."; print s } }' |
	timeout 60 dd of="$M" bs=32 iflag=fullblock status=none & dd=$!
writers "$M" 10000 w0 w1
wait "$dd" || fail "dd through the daemon"
exec 9>&-
wait "$rd" || fail "cat failed"
check_lines "$TMPD/mixed" 3 10000 || fail "mixed writers through cat"
pass "two mmap writers and dd through the daemon, read by cat through the daemon"

# A stream write longer than a queue (ring_size=64k over 5 queues: 8 KiB
# each), or than a shared ring's record (4 KiB), goes in piece by piece,
# whole in the end.
B=$MNT/big
"$CHAN_TOOL" mkchan "$B" || fail "mkchan big"
head -c 1000000 /dev/urandom > "$TMPD/big.in"
timeout 30 "$CHAN_TOOL" recv "$B" > "$TMPD/big.out" &
rd=$!
wait_for 50 readers_at_least "$B" 1 || fail "big: the reader did not open"
timeout 30 "$CHAN_TOOL" send "$B" 65536 < "$TMPD/big.in" || fail "big: a 64 KiB send into 8 KiB queues"
wait "$rd" || fail "big: the reader"
cmp "$TMPD/big.in" "$TMPD/big.out" || fail "big: the bytes differ"
pass "sends of 64 KiB through $DESIGN: 1 MB whole"

# ---- messages ---------------------------------------------------------------------
G=$MNT/msg
"$CHAN_TOOL" mkchan "$G" message || fail "mkchan message"
timeout 30 "$CHAN_TOOL" recvmsg "$G" 600 > "$TMPD/msg" &
rd=$!
wait_for 50 readers_at_least "$G" 1 || fail "message reader did not open"
exec 8>"$G"
pids=
for i in 0 1 2; do
	(args=; for j in $(seq 0 199); do args="$args m$i-$j"; done
	 exec timeout 30 "$CHAN_TOOL" sendmsg "$G" $args) & pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a message writer failed"; done
exec 8>&-
wait "$rd" || fail "message reader"
for i in 0 1 2; do
	grep "^m$i-" "$TMPD/msg" | sed "s/^m$i-//" | awk '$1 != NR - 1 { exit 1 }' ||
		fail "messages of writer $i out of order or cut"
done
[ "$(wc -l < "$TMPD/msg")" = 600 ] || fail "messages: $(wc -l < "$TMPD/msg") of 600"
pass "messages: 3 writers x 200, boundaries kept, each writer's in order"

# ---- end of file and no reader -----------------------------------------------------------
E=$MNT/eof
"$CHAN_TOOL" mkchan "$E" || fail "mkchan eof"
timeout 10 "$CHAN_TOOL" recv "$E" > "$TMPD/eof" &
rd=$!
wait_for 50 readers_at_least "$E" 1 || fail "eof reader did not open"
echo one | timeout 10 "$CHAN_TOOL" send "$E" || fail "first writer"
wait "$rd" || fail "no end of file after the last writer"
[ "$(cat "$TMPD/eof")" = one ] || fail "eof data: $(cat "$TMPD/eof")"
echo x | timeout 10 "$CHAN_TOOL" send "$E" 2>"$TMPD/epipe" && fail "a write with no reader succeeded"
grep -q 'Broken pipe' "$TMPD/epipe" || fail "no EPIPE: $(cat "$TMPD/epipe")"
pass "end of file after the last writer; EPIPE with no reader"

# ---- a writer stopped, a writer killed -------------------------------------------------------
S=$MNT/stop
"$CHAN_TOOL" mkchan "$S" || fail "mkchan stop"
timeout 60 "$CHAN_TOOL" recv "$S" 32 > "$TMPD/stop" 2>"$TMPD/stop.err" &
rd=$!
wait_for 50 readers_at_least "$S" 1 || fail "stop reader did not open"
# Held open as a writer, so that the end of file waits.
exec 8>"$S"
# The writer itself (not under timeout, which would get the signals).
"$CHAN_TOOL" seqsend "$S" w0 100000000 & victim=$!
EXTRA_CLEANUP='kill -9 $victim 2>/dev/null'
sleep 0.3
kill -STOP "$victim"
lines0=$(wc -l < "$TMPD/stop")
t0=$EPOCHREALTIME
# While it is stopped (anywhere in its stream), another writer's lines flow.
timeout 30 "$CHAN_TOOL" seqsend "$S" w1 100 || fail "the other writer"
wait_for 100 sh -c "[ \$(grep -c '^w1 ' '$TMPD/stop') -ge 100 ]" ||
	fail "lines of another writer did not get through while one was stopped"
t1=$EPOCHREALTIME
kill -KILL "$victim"
wait "$victim" 2>/dev/null
exec 8>&-
wait "$rd" || fail "stop reader: status $?, $(cat "$TMPD/stop.err")"
grep -v '^w1 ' "$TMPD/stop" > "$TMPD/stop.w0"
check_lines "$TMPD/stop.w0" 1 0 partial || fail "the killed writer left a broken or missing line"
grep '^w1 ' "$TMPD/stop" > "$TMPD/stop.w1"
check_lines "$TMPD/stop.w1" 2 100 partial || fail "the other writer's lines"
[ "$(wc -l < "$TMPD/stop.w1")" = 100 ] || fail "the other writer's lines: $(wc -l < "$TMPD/stop.w1")"
pass "a stopped writer held nobody back ($(((${t1/./} - ${t0/./}) / 1000)) ms for 100 lines of another), a killed one left whole lines ($lines0+ before)"

# What dead writers held is taken over: 12 writers in turn, killed, on
# fewer queues (writer slots).
K=$MNT/reuse
"$CHAN_TOOL" mkchan "$K" || fail "mkchan reuse"
slow0=$(status slow_bytes)
timeout 60 "$CHAN_TOOL" recv "$K" 32 > "$TMPD/reuse" &
rd=$!
wait_for 50 readers_at_least "$K" 1 || fail "reuse reader did not open"
exec 8>"$K"
for i in $(seq 0 11); do
	"$CHAN_TOOL" seqsend "$K" "w$i" 100000000 & v=$!
	EXTRA_CLEANUP='kill -9 $v 2>/dev/null'
	sleep 0.05
	kill -KILL "$v"
	wait "$v" 2>/dev/null
done
timeout 30 "$CHAN_TOOL" seqsend "$K" w12 1 || fail "the last writer"
exec 8>&-
wait "$rd" || fail "reuse reader"
check_lines "$TMPD/reuse" 13 0 partial || fail "lines of writers killed in turn"
grep -q '^w12 0 ' "$TMPD/reuse" || fail "the last writer's line"
[ "$(status slow_bytes)" = "$slow0" ] ||
	fail "writers went through the daemon ($(($(status slow_bytes) - slow0)) bytes): nothing taken over"
pass "12 writers killed in turn on $SLOTS $WHAT: each dead one's taken over, lines whole"

# ---- anonymous pairs: pipes take a shared ring, else the lock -------------------------------
# One shared ring keeps a pipe's order; queues do not (a later writer's
# queue may be read first), and only the lock's rings carry descriptors.
[ "$DESIGN" = shared ] && want=shared || want=lock
P=$MNT/pair
: > "$P"
setfattr -n user.ipcd.anon -v pipe "$P" || fail "set anon"
[ "$(coord_of "$P")" = "$want" ] || fail "an anonymous pipe is coordinated by $(coord_of "$P"), not $want"
P=$MNT/spair
: > "$P"
setfattr -n user.ipcd.anon -v stream "$P" || fail "set anon"
[ "$(coord_of "$P")" = lock ] || fail "an anonymous socket pair is coordinated by $(coord_of "$P")"
getfattr -n user.ipcd.status --only-values "$MNT" | grep -q " pipes=$want " ||
	fail "the status does not say pipes=$want"
pass "an anonymous pipe is coordinated by $want, a socket pair by the lock, as the status says"
