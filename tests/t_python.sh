#!/bin/bash
# t_python.sh - any language can use the ring with nothing but mmap and
# integer loads and stores: tests/ring_py.py (pure Python, no ctypes) against
# the C API (chan_tool) and the daemon, every transfer checked byte for byte:
#   - header validation: ring_py refuses every header ring.c's attach
#     refuses, with the same errno, and reads the daemon's header as stated;
#   - streams over mmap on both ends, Python -> C and C -> Python, 8 MiB
#     through a 64 KiB ring each way (128 wraps, odd block sizes), sha256;
#   - messages over mmap on both ends, Python -> C and C -> Python: the
#     boundaries, empty messages, a message of exactly msg_max, and hundreds
#     of mixed sizes through a 4 KiB ring, so that pad records are written
#     and skipped (the ring counters prove it); EMSGSIZE above msg_max;
#   - slow-path peers: echo/dd/printf write() while Python reads over mmap
#     (within the ring, and 1 MiB through a 64 KiB ring by 4 KiB and by 1 MiB
#     writes, so the daemon parks writes: the case where the doorbell ioctl
#     would wait for the inode lock of the parked write), and Python writes
#     over mmap while cat read()s;
#   - duplex channels: Python on side 1 echoes 1 MiB from C on side 0 back to
#     it (both rings of one mapping), and messages both ways;
#   - waking without futex calls: a C reader and a C writer asleep in
#     FUTEX_WAIT are woken by Python's doorbell ioctl well within the C API's
#     own 1 s patrol (the IPCD_IOC_WAKE ioctl);
#   - dead lock holders: Python takes the producer lock over from a killed C
#     holder, and C from a killed Python holder;
#   - EPIPE for a Python writer without a reader; the role ioctl leaves a
#     Python reader counted as a reader only; no lock word left held;
#   - the daemon killed: a waiting Python end reports ECONNABORTED.
# The C peers run with the default spin: IPCD_SPIN_NS is unset, so they do
# fall asleep on the futex while a Python end is slow, and the Python end
# must wake them.  (A long spin would keep them awake and hide a missing
# wake; with the doorbell there is no need for that workaround.)
. "$top_srcdir/tests/lib.sh"
unset IPCD_SPIN_NS

PYTHON3=${PYTHON3:-}
[ -n "$PYTHON3" ] || skip "PYTHON3 is empty (configure found no python3)"
command -v "$PYTHON3" >/dev/null 2>&1 || skip "python3 ($PYTHON3) is missing"
# The interpreter itself, not a wrapper script that may start slowly.
PY=$("$PYTHON3" -c 'import sys; assert sys.version_info >= (3, 8); print(sys.executable)') ||
	skip "$PYTHON3 is not a Python 3.8 or later"
[ "$(uname -m)" = x86_64 ] || skip "ring_py.py relies on x86-64 store ordering"
RING_PY=$top_srcdir/tests/ring_py.py
mount_ipcd

# ringpy ARGS...: the Python client; cpeer ARGS...: chan_tool; time-limited.
ringpy() { timeout 60 "$PY" "$RING_PY" "$@"; }
cpeer() { timeout 60 "$CHAN_TOOL" "$@"; }
# pyrun ARGS... <<'PY': a Python script that imports ring_py.
pyrun() { timeout 60 "$PY" -B - "$top_srcdir/tests" "$@"; }
# A reader has opened the file and narrowed its roles: readers >= 1 and,
# with no writer around, writers back to 0 (an O_RDWR open counts as both
# until the role ioctl).  SFX is the ring of a duplex channel (0 or 1).
reader_ready() {
	[ "$(info_field "$1" "readers${2:-}")" -ge 1 ] 2>/dev/null &&
		[ "$(info_field "$1" "writers${2:-}")" = 0 ]
}
wait_reader() { wait_for 100 reader_ready "$1" "${3:-}" || fail "$2: reader did not open"; }
rec_bytes() { awk '{ n += 8 + int((length($0) + 7) / 8) * 8 } END { print n + 0 }' "$1"; }
sum() { sha256sum | cut -d' ' -f1; }

# 0. Fast path and header.
C=$MNT/probe
"$CHAN_TOOL" mkchan "$C" stream 65536 || fail "mkchan"
if ! ringpy info "$C" > "$TMPD/info" 2> "$TMPD/info.err"; then
	grep -q 'No such device' "$TMPD/info.err" &&
		skip "no mmap fast path here: $(cat "$TMPD/info.err")"
	fail "ring_py info: $(cat "$TMPD/info.err")"
fi
# (Queues share it: ring_py shows the first queue's, of 8.)
grep -qx "capacity=$([ "$COORD" = queues ] && echo 8192 || echo 65536)" "$TMPD/info" ||
	fail "capacity as ring_py reads it: $(grep capacity= "$TMPD/info")"
grep -qx 'kind=stream' "$TMPD/info" || fail "kind as ring_py reads it"
grep -qx 'hdr_size=448' "$TMPD/info" || fail "hdr_size as ring_py reads it"
grep -qx "daemon_pid=$DAEMON_PID" "$TMPD/info" || fail "daemon_pid as ring_py reads it"
[ "$(info_field "$C" fastpath)" = on ] || fail "ring_py mapped without passthrough?"

pyrun <<'PY' || fail "header validation (see above)"
import errno, struct, sys
sys.path.insert(0, sys.argv[1])
import ring_py as R

def mapping(nrings=1, ring=None, **kw):
    """A directory of version 2 with its ring headers, as ring.c lays it
    out; kw and ring (a dict per ring index) change fields."""
    cap = 65536
    f = dict(magic=R.RING_MAGIC, version=2, hdr_size=64, features=0,
             msg_max=0, map_size=4096 + nrings * cap, anon=0, nrings=nrings,
             desc_off=64, desc_size=32, coord=0, nqueues=0, hdr_area=4096,
             rslot_off=0, nrslots=0)
    f.update(kw)
    buf = bytearray(4096)
    struct.pack_into("=IHHIIQIIIIIIQII", buf, 0, f["magic"], f["version"],
                     f["hdr_size"], f["features"], f["msg_max"], f["map_size"],
                     f["anon"], f["nrings"], f["desc_off"], f["desc_size"],
                     f["coord"], f["nqueues"], f["hdr_area"], f["rslot_off"],
                     f["nrslots"])
    for i in range(nrings):
        d = dict(kind=2 if f["features"] & 1 else 1, role=i,
                 hdr_off=512 * (i + 1), data_off=4096 + i * cap, capacity=cap,
                 r_magic=R.RING_MAGIC, r_version=2, r_hdr_size=448,
                 r_features=f["features"], r_msg_max=f["msg_max"],
                 r_map_size=f["map_size"])
        d.update((ring or {}).get(i, {}))
        struct.pack_into("=IIQQQ", buf, 64 + 32 * i, d["kind"], d["role"],
                         d["hdr_off"], d["data_off"], d["capacity"])
        if d["hdr_off"] + 64 <= len(buf):
            struct.pack_into("=IHHIIQQQ", buf, d["hdr_off"], d["r_magic"],
                             d["r_version"], d["r_hdr_size"], d["r_features"],
                             d["r_msg_max"], d["data_off"], d["capacity"],
                             d["r_map_size"])
    return buf

def expect(code, buf, map_len=4096 + 65536, role=0):
    try:
        R.check_map(buf, map_len, role)
    except OSError as e:
        assert e.errno == code, (e, errno.errorcode[code])
        return
    raise AssertionError("accepted, wanted %s" % errno.errorcode[code])

ok = R.check_map(mapping(), 4096 + 65536, 0)
assert ok["capacity"] == 65536 and ok["hdr_off"] == 512 and ok["data_off"] == 4096
d = mapping(2, features=2)                                      # duplex
assert R.check_map(d, 4096 + 2 * 65536, 1)["data_off"] == 4096 + 65536
# The directory may put a ring anywhere it fits: readers follow it.
moved = mapping(ring={0: dict(hdr_off=3072)})
assert R.check_map(moved, 4096 + 65536, 0)["hdr_off"] == 3072
m = mapping(features=1, msg_max=65528)
assert R.check_map(m, 4096 + 65536, 0)["msg_max"] == 65528
expect(errno.EINVAL, mapping(), 4095)
expect(errno.EINVAL, mapping(), 4096 + 65535)
expect(errno.EINVAL, mapping(), role=1)                         # no such ring
expect(errno.EIO, mapping(magic=0))
expect(errno.EPROTO, mapping(version=1))    # what a client of version 1 meets too
expect(errno.EPROTO, mapping(version=3))
expect(errno.EIO, mapping(hdr_size=63))
expect(errno.EIO, mapping(nrings=0))
expect(errno.EIO, mapping(nrings=2))
expect(errno.EIO, mapping(coord=2))
expect(errno.EIO, mapping(coord=1))                             # queues, none
expect(errno.EIO, mapping(nqueues=1))                           # lock, queues
expect(errno.EIO, mapping(hdr_area=0))
expect(errno.EIO, mapping(hdr_area=6000))
expect(errno.EIO, mapping(hdr_area=65536 + 4096))
expect(errno.EIO, mapping(hdr_area=4096 + 65536))               # no data left
expect(errno.EIO, mapping(nrslots=1))                           # lock, reader slots
expect(errno.EIO, mapping(rslot_off=1024))
expect(errno.EIO, mapping(desc_size=24))
expect(errno.EIO, mapping(desc_off=4))
expect(errno.EIO, mapping(features=4))
expect(errno.EIO, mapping(features=2))                          # duplex, one ring
expect(errno.EIO, mapping(map_size=65536))
expect(errno.EIO, mapping(ring={0: dict(kind=2)}))
expect(errno.EIO, mapping(ring={0: dict(kind=0)}))
expect(errno.EIO, mapping(ring={0: dict(role=1)}))
expect(errno.EIO, mapping(ring={0: dict(hdr_off=0)}))            # on the directory
expect(errno.EIO, mapping(ring={0: dict(hdr_off=520)}))          # not aligned
expect(errno.EIO, mapping(ring={0: dict(hdr_off=3712)}))         # past the header area
expect(errno.EIO, mapping(ring={0: dict(hdr_off=64)}))           # on the entries
expect(errno.EIO, mapping(ring={0: dict(role=0x100)}))           # queue 1 of 1
expect(errno.EIO, mapping(ring={0: dict(data_off=2048)}))
expect(errno.EIO, mapping(ring={0: dict(data_off=8192)}))        # past the mapping
expect(errno.EIO, mapping(ring={0: dict(capacity=2048)}))
expect(errno.EIO, mapping(ring={0: dict(capacity=1 << 31)}))
expect(errno.EIO, mapping(2, features=2, ring={1: dict(role=0)}), 4096 + 2 * 65536)
expect(errno.EIO, mapping(ring={0: dict(r_magic=0)}))            # header and directory differ
expect(errno.EIO, mapping(ring={0: dict(r_hdr_size=4096)}))
expect(errno.EIO, mapping(ring={0: dict(r_map_size=8192)}))
expect(errno.EIO, mapping(features=1, msg_max=0))
expect(errno.EIO, mapping(features=1, msg_max=65529))
print("ok - ring_py refuses the headers ring.c refuses, with the same errno")
PY
pass "ring_py reads the daemon's header (capacity, kind, hdr_size, daemon_pid)"

# 1. Stream, Python writes over mmap, C reads over mmap: 8 MiB, 64 KiB ring.
BIG=8388608
S=$MNT/py2c
"$CHAN_TOOL" mkchan "$S" stream 65536 || fail "mkchan"
want=$("$CHAN_TOOL" gen $BIG 11 | sum)
cpeer recv "$S" | sum > "$TMPD/sum1" &
rd=$!
wait_reader "$S" "py2c"
"$CHAN_TOOL" gen $BIG 11 | ringpy send "$S" 65521 || fail "py2c: ring_py send"
wait "$rd" || fail "py2c: C reader"
[ "$(cat "$TMPD/sum1")" = "$want" ] || fail "py2c: sha256 differs"
# With queues or one shared ring the counters count records or cells:
# at least the bytes, and all of them read.
counts_big() { [ "$1" = $BIG ] || { [ "$COORD" != lock ] && [ "$1" -gt $BIG ]; }; }
counts_big "$(info_field "$S" written)" || fail "py2c: ring counted $(info_field "$S" written)"
[ "$(info_field "$S" read)" = "$(info_field "$S" written)" ] || fail "py2c: ring read $(info_field "$S" read)"
pass "stream Python -> C over mmap: 8 MiB through a 64 KiB ring, sha256 matches"

# 2. Stream, C writes, Python reads: the same, the other way round.
S=$MNT/c2py
"$CHAN_TOOL" mkchan "$S" stream 65536 || fail "mkchan"
want=$("$CHAN_TOOL" gen $BIG 12 | sum)
ringpy recv "$S" 4093 | sum > "$TMPD/sum2" &
rd=$!
wait_reader "$S" "c2py"
[ "$(info_field "$S" readers)" = 1 ] || fail "c2py: Python reader counted $(info_field "$S" readers) times"
"$CHAN_TOOL" gen $BIG 12 | cpeer send "$S" 4093 || fail "c2py: C send"
wait "$rd" || fail "c2py: ring_py recv"
[ "$(cat "$TMPD/sum2")" = "$want" ] || fail "c2py: sha256 differs"
counts_big "$(info_field "$S" written)" || fail "c2py: ring counted $(info_field "$S" written)"
pass "stream C -> Python over mmap: 8 MiB through a 64 KiB ring, sha256 matches"
pass "the role ioctl made the Python reader a reader only (readers=1 writers=0)"

# Small streams both ways, exact bytes with cmp (NULs, no final newline).
S=$MNT/small
"$CHAN_TOOL" mkchan "$S" || fail "mkchan"
printf 'a\0b\nc' > "$TMPD/in3"
cpeer recv "$S" > "$TMPD/out3" &
rd=$!
wait_reader "$S" "small py2c"
ringpy send "$S" < "$TMPD/in3" || fail "small: ring_py send"
wait "$rd" || fail "small: C reader"
cmp "$TMPD/in3" "$TMPD/out3" || fail "small Python -> C differs"
ringpy recv "$S" > "$TMPD/out3b" &
rd=$!
wait_reader "$S" "small c2py"
cpeer send "$S" < "$TMPD/in3" || fail "small: C send"
wait "$rd" || fail "small: ring_py recv"
cmp "$TMPD/in3" "$TMPD/out3b" || fail "small C -> Python differs"
pass "small streams with NULs, both ways, cmp equal"

# 3. Messages: boundaries, empty messages, msg_max exactly, both ways.
M=$MNT/msgs
"$CHAN_TOOL" mkchan "$M" message 4096 || fail "mkchan message"
MAX=$(ringpy info "$M" | sed -n 's/^msg_max=//p')
# (One shared ring is at least 64 KiB: a sixteenth of it.)
[ "$MAX" = "$([ "$COORD" = shared ] && echo 4096 || echo 4088)" ] ||
	fail "msg_max of a 4 KiB message ring is $MAX"
maxmsg=$(head -c "$MAX" /dev/zero | tr '\0' 'M')
cpeer recvmsg "$M" 5 > "$TMPD/out4" &
rd=$!
wait_reader "$M" "msg py2c"
ringpy sendmsg "$M" one "two two" "" "$maxmsg" four || fail "ring_py sendmsg"
wait "$rd" || fail "C recvmsg"
printf 'one\ntwo two\n\n%s\nfour\n' "$maxmsg" | cmp - "$TMPD/out4" || fail "Python -> C message boundaries"
pass "messages Python -> C over mmap: boundaries, empty, msg_max bytes"

ringpy recvmsg "$M" 5 > "$TMPD/out5" &
rd=$!
wait_reader "$M" "msg c2py"
cpeer sendmsg "$M" alpha "" "beta gamma" "$maxmsg" delta || fail "C sendmsg"
wait "$rd" || fail "ring_py recvmsg"
printf 'alpha\n\nbeta gamma\n%s\ndelta\n' "$maxmsg" | cmp - "$TMPD/out5" || fail "C -> Python message boundaries"
pass "messages C -> Python over mmap: boundaries, empty, msg_max bytes"

# Hundreds of mixed sizes through the 4 KiB ring: records wrap the ring
# about a hundred times, so pads go in before many of them.
awk 'BEGIN { for (i = 1; i <= 700; i++) { n = (i * 131) % 997; if (i % 53 == 0) n = 0;
	s = ""; for (j = 0; j < n; j++) s = s sprintf("%c", 97 + (i + j) % 26); print s } }' \
	> "$TMPD/msgs"
mapfile -t msgs < "$TMPD/msgs"
recs=$(rec_bytes "$TMPD/msgs")
for dir in py2c c2py; do
	M=$MNT/mix-$dir
	"$CHAN_TOOL" mkchan "$M" message 4096 || fail "mkchan"
	if [ $dir = py2c ]; then
		cpeer recvmsg "$M" ${#msgs[@]} > "$TMPD/out6" &
		rd=$!
		wait_reader "$M" "mix $dir"
		ringpy sendmsg "$M" "${msgs[@]}" || fail "mix $dir: ring_py sendmsg"
	else
		ringpy recvmsg "$M" ${#msgs[@]} > "$TMPD/out6" &
		rd=$!
		wait_reader "$M" "mix $dir"
		cpeer sendmsg "$M" "${msgs[@]}" || fail "mix $dir: C sendmsg"
	fi
	wait "$rd" || fail "mix $dir: reader"
	cmp "$TMPD/msgs" "$TMPD/out6" || fail "mix $dir: messages differ"
	written=$(info_field "$M" written)
	[ "$written" -gt "$recs" ] || fail "mix $dir: no pad records ($written <= $recs)"
	[ "$(info_field "$M" read)" = "$written" ] || fail "mix $dir: reader stopped short"
	pass "mix $dir: ${#msgs[@]} messages of 0..996 bytes through 4 KiB, $((written - recs)) bytes of pads"
done

# EMSGSIZE above msg_max, and msg_max itself, Python to Python in one
# process (a fresh ring: a record of msg_max bytes fills all of it, so it
# goes in only at offset 0 of an empty ring).
M=$MNT/emsgsize
"$CHAN_TOOL" mkchan "$M" message 4096 || fail "mkchan"
pyrun "$M" <<'PY' || fail "EMSGSIZE (see above)"
import errno, sys
sys.path.insert(0, sys.argv[1])
import ring_py as R
r = R.Channel(sys.argv[2], "read")
w = R.Channel(sys.argv[2], "write")
try:
    w.send_message(b"x" * (w.msg_max + 1))
    raise AssertionError("a message above msg_max went in")
except OSError as e:
    assert e.errno == errno.EMSGSIZE, e
assert w.send_message(b"y" * w.msg_max) == w.msg_max
assert r.recv_message(timeout=5) == b"y" * w.msg_max
w.close()
assert r.recv_message(timeout=5) is None
r.close()
PY
pass "EMSGSIZE above msg_max; msg_max itself goes through"

# 4. Slow-path peers with Python on the mmap side.
S=$MNT/slow
"$CHAN_TOOL" mkchan "$S" || fail "mkchan"
head -c 300000 /dev/urandom > "$TMPD/rand"
ringpy recv "$S" > "$TMPD/out7" &
rd=$!
wait_reader "$S" "slow echo"
( echo "hello from echo"; dd if="$TMPD/rand" bs=4096 status=none ) > "$S" ||
	fail "shell write"
wait "$rd" || fail "ring_py recv after echo/dd"
( echo "hello from echo"; cat "$TMPD/rand" ) | cmp - "$TMPD/out7" ||
	fail "echo/dd -> Python differs"
pass "echo and dd over write() to Python over mmap"

timeout 30 cat "$S" > "$TMPD/out8" &
rd=$!
wait_reader "$S" "slow cat"
ringpy send "$S" < "$TMPD/rand" || fail "ring_py send to cat"
wait "$rd" || fail "cat"
cmp "$TMPD/rand" "$TMPD/out8" || fail "Python -> cat differs"
pass "Python over mmap to cat over read()"

S=$MNT/slow-small
"$CHAN_TOOL" mkchan "$S" stream 65536 || fail "mkchan"
head -c 1048576 /dev/urandom > "$TMPD/rand2"
for bs in 4096 1M; do
	ringpy recv "$S" > "$TMPD/out9" &
	rd=$!
	wait_reader "$S" "slow dd bs=$bs"
	t0=$(date +%s%N)
	timeout 60 dd if="$TMPD/rand2" of="$S" bs=$bs status=none || fail "dd bs=$bs into a small ring"
	wait "$rd" || fail "ring_py recv after dd bs=$bs"
	ms=$((($(date +%s%N) - t0) / 1000000))
	cmp "$TMPD/rand2" "$TMPD/out9" || fail "dd bs=$bs -> Python through 64 KiB differs"
	pass "1 MiB by dd bs=$bs through a 64 KiB ring to Python (the daemon parks writes): $ms ms"
done

timeout 60 cat "$S" > "$TMPD/out10" &
rd=$!
wait_reader "$S" "slow cat big"
t0=$(date +%s%N)
ringpy send "$S" 4096 < "$TMPD/rand2" || fail "ring_py send through a small ring"
wait "$rd" || fail "cat"
ms=$((($(date +%s%N) - t0) / 1000000))
cmp "$TMPD/rand2" "$TMPD/out10" || fail "Python -> cat through 64 KiB differs"
pass "1 MiB from Python through a 64 KiB ring to cat (the daemon parks reads): $ms ms"

M=$MNT/slow-msg
"$CHAN_TOOL" mkchan "$M" message || fail "mkchan"
ringpy recvmsg "$M" 3 > "$TMPD/out11" &
rd=$!
wait_reader "$M" "slow printf"
{ printf %s alpha; printf %s "beta gamma"; printf %s delta; } > "$M" || fail "printf"
wait "$rd" || fail "ring_py recvmsg after printf"
printf 'alpha\nbeta gamma\ndelta\n' | cmp - "$TMPD/out11" || fail "write() boundaries as Python sees them"
pass "each write() by printf is one message to Python over mmap"

# 5. Duplex: Python on side 1 echoes what C on side 0 sends, through the
# two rings of one mapping; then messages both ways.
D=$MNT/duplex
"$CHAN_TOOL" mkchan "$D" duplex-stream 65536 || fail "mkchan duplex"
head -c 1048576 /dev/urandom > "$TMPD/dup.in"
cpeer recv "$D" > "$TMPD/dup.out" &		# side 0 reads ring 1
rc0=$!
wait_reader "$D" "duplex C side 0" 1
pyrun "$D" <<'PY' &
import sys
sys.path.insert(0, sys.argv[1])
import ring_py as R
with R.Channel(sys.argv[2], "rw", side=1) as ch:
    assert ch.is_duplex and ch.side == 1
    while True:
        data = ch.recv(65536)
        if not data:
            break
        ch.send(data)
PY
py=$!
wait_reader "$D" "duplex Python side 1" 0
cpeer send "$D" < "$TMPD/dup.in" || fail "duplex: C side 0 send"
wait "$py" || fail "duplex: Python echo on side 1"
wait "$rc0" || fail "duplex: C side 0 recv"
cmp "$TMPD/dup.in" "$TMPD/dup.out" || fail "duplex echo differs"
(BIG=1048576; counts_big "$(info_field "$D" written0)" && counts_big "$(info_field "$D" written1)") ||
	fail "duplex counters: $(getfattr --only-values -n user.ipcd.info "$D")"
pass "duplex: Python on side 1 echoed 1 MiB from C on side 0, both rings over mmap"

D=$MNT/dmsg
"$CHAN_TOOL" mkchan "$D" duplex-message 4096 || fail "mkchan duplex-message"
CHAN_SIDE=1 ringpy recvmsg "$D" 3 > "$TMPD/dm1" &
r1=$!
wait_reader "$D" "duplex msg side 1" 0
cpeer sendmsg "$D" a "b c" "" || fail "duplex: C side 0 sendmsg"
wait "$r1" || fail "duplex: Python side 1 recvmsg"
printf 'a\nb c\n\n' | cmp - "$TMPD/dm1" || fail "duplex messages to Python side 1"
cpeer recvmsg "$D" 2 > "$TMPD/dm0" &
r0=$!
wait_reader "$D" "duplex msg side 0" 1
CHAN_SIDE=1 ringpy sendmsg "$D" x yz || fail "duplex: Python side 1 sendmsg"
wait "$r0" || fail "duplex: C side 0 recvmsg"
printf 'x\nyz\n' | cmp - "$TMPD/dm0" || fail "duplex messages from Python side 1"
pass "duplex messages both ways between C side 0 and Python side 1"

# 6. Waking without futex calls.  The C peer runs with the default spin and
# falls asleep in FUTEX_WAIT (the Python end sees it in the sleeper count);
# then Python publishes, bumps the word and rings the doorbell ioctl.  Every
# wake must come well before the C API's own patrol (1 s) would notice.
G=$MNT/bell-rd
"$CHAN_TOOL" mkchan "$G" || fail "mkchan"
# (With the lock, whatever the mount's coordination: the counters looked at
# here are its bytes.)
[ "$COORD" = lock ] || setfattr -n user.ipcd.coord -v lock "$G" || fail "coord lock"
cpeer recv "$G" > "$TMPD/bell" &
rd=$!
wait_reader "$G" "doorbell reader"
pyrun "$G" "$TMPD/bell" > "$TMPD/bell.ms" <<'PY' || fail "doorbell to a sleeping C reader (see above)"
import sys, time
sys.path.insert(0, sys.argv[1])
import ring_py as R
w = R.Channel(sys.argv[2], "write")
worst = 0.0
for i in range(5):
    end = time.monotonic() + 10
    while w.out_ring()["rd_sleepers"] == 0:
        if time.monotonic() > end:
            sys.exit("round %d: the C reader never fell asleep" % i)
        time.sleep(0.005)
    time.sleep(0.02)                    # well inside FUTEX_WAIT by now
    want = b"".join(b"ping %d\n" % j for j in range(i + 1))
    t0 = time.monotonic()
    w.send(b"ping %d\n" % i)
    while True:
        with open(sys.argv[3], "rb") as f:
            if f.read() == want:
                break
        if time.monotonic() - t0 > 5:
            sys.exit("round %d: the C reader was not woken in 5 s" % i)
        time.sleep(0.001)
    worst = max(worst, time.monotonic() - t0)
w.close()
print(int(worst * 1000))
PY
wait "$rd" || fail "doorbell: C reader"
ms=$(cat "$TMPD/bell.ms")
[ "$ms" -lt 500 ] || fail "doorbell: a sleeping C reader took $ms ms to wake"
pass "a C reader asleep in FUTEX_WAIT is woken by Python's doorbell ioctl (worst of 5: $ms ms)"

G=$MNT/bell-wr
"$CHAN_TOOL" mkchan "$G" stream 4096 || fail "mkchan"
# (With the lock, whatever the mount's coordination: the counters looked at
# here are its bytes.)
[ "$COORD" = lock ] || setfattr -n user.ipcd.coord -v lock "$G" || fail "coord lock"
pyrun "$G" > "$TMPD/bell2" <<'PY' &
import sys, time
sys.path.insert(0, sys.argv[1])
import ring_py as R
TOTAL = 5 * 4096
r = R.Channel(sys.argv[2], "read")
got, worst, asleep = 0, 0.0, 0
while got < TOTAL:
    end = time.monotonic() + 10
    while True:                 # until the writer sleeps, or has written all
        s = r.in_ring()
        if s["wr_sleepers"] or got + s["tail"] - s["head"] == TOTAL:
            break
        if time.monotonic() > end:
            sys.exit("the C writer neither slept nor finished")
        time.sleep(0.005)
    slept = s["wr_sleepers"] > 0
    time.sleep(0.02)            # well inside FUTEX_WAIT by now
    got += len(r.recv(65536, timeout=5))
    t0 = time.monotonic()
    if got == TOTAL:
        break
    while r.in_ring()["tail"] == got:
        if time.monotonic() - t0 > 5:
            sys.exit("the C writer was not woken in 5 s")
        time.sleep(0.001)
    if slept:
        asleep += 1
        worst = max(worst, time.monotonic() - t0)
assert r.recv(timeout=5) == b"", "no EOF after all the data"
print(asleep, int(worst * 1000))
PY
py=$!
wait_reader "$G" "doorbell writer"
head -c 20480 /dev/zero | cpeer send "$G" 4096 || fail "doorbell: C writer"
wait "$py" || fail "doorbell to a sleeping C writer (see above)"
read -r asleep ms < "$TMPD/bell2"
[ "$asleep" -ge 3 ] || fail "doorbell: the C writer slept only $asleep times"
[ "$ms" -lt 500 ] || fail "doorbell: a sleeping C writer took $ms ms to wake"
pass "a C writer asleep for room is woken by Python's doorbell ioctl ($asleep wakes, worst $ms ms)"

# 7. Dead lock holders.  A C process dies holding the producer lock: the
# Python writer waits, then takes the lock over.  A Python process dies
# holding it: a C writer takes it over from the Python thread id.
L=$MNT/lock-c
"$CHAN_TOOL" mkchan "$L" || fail "mkchan"
[ "$COORD" = lock ] || setfattr -n user.ipcd.coord -v lock "$L" || fail "coord lock"
cpeer recv "$L" > "$TMPD/lock.out" &
rd=$!
wait_reader "$L" "lock-c"
coproc HOLD { exec "$RING_PEER" hold-lock "$L"; }
hold=$HOLD_PID
EXTRA_CLEANUP='kill -9 $hold 2>/dev/null'
read -r -t 5 line <&"${HOLD[0]}" && [ "$line" = locked ] || fail "hold-lock"
echo "after the C holder" | ringpy send "$L" &
w=$!
sleep 0.3
kill -0 $w 2>/dev/null || fail "the Python writer did not wait for the held lock"
{ kill -9 "$hold"; wait "$hold"; } 2>/dev/null
wait $w || fail "the Python writer did not take the dead holder's lock over"
wait $rd || fail "lock-c: C reader"
[ "$(cat "$TMPD/lock.out")" = "after the C holder" ] || fail "data after the takeover: $(cat "$TMPD/lock.out")"

L=$MNT/lock-py
"$CHAN_TOOL" mkchan "$L" || fail "mkchan"
[ "$COORD" = lock ] || setfattr -n user.ipcd.coord -v lock "$L" || fail "coord lock"
cpeer recv "$L" > "$TMPD/lock.out" &
rd=$!
wait_reader "$L" "lock-py"
pyrun "$L" > "$TMPD/hold.pid" 2> "$TMPD/hold.err" <<'PY' &
import os, sys, time
sys.path.insert(0, sys.argv[1])
import ring_py as R
w = R.Channel(sys.argv[2], "write")
R.Channel._lock(w._out, R._I_WLOCK, R._Backoff(5, w._out))
print(os.getpid(), flush=True)
time.sleep(60)
PY
holder=$!
wait_for 50 test -s "$TMPD/hold.pid" || fail "the Python process did not take the lock"
hold=$(cat "$TMPD/hold.pid")
[ "$(ringpy info "$L" | sed -n 's/^wlock=//p')" = "$hold" ] ||
	fail "wlock is not the Python thread id $hold"
echo "after the Python holder" | cpeer send "$L" &
w=$!
sleep 0.3
kill -0 $w 2>/dev/null || fail "the C writer did not wait for the lock Python holds"
{ kill -9 "$hold"; wait "$holder"; } 2>/dev/null
wait $w || fail "the C writer did not take the dead Python holder's lock over"
wait $rd || fail "lock-py: C reader"
[ "$(cat "$TMPD/lock.out")" = "after the Python holder" ] || fail "data after the takeover: $(cat "$TMPD/lock.out")"
pass "dead lock holders: Python takes over from C, C takes over from Python"

# 8. EPIPE without a reader; no lock word left held anywhere.
S=$MNT/noreader
"$CHAN_TOOL" mkchan "$S" || fail "mkchan"
echo x | ringpy send "$S" 2> "$TMPD/epipe" && fail "send without a reader succeeded"
grep -q 'Broken pipe' "$TMPD/epipe" || fail "no EPIPE: $(cat "$TMPD/epipe")"
pass "EPIPE for a Python writer without a reader"
for f in "$MNT"/*; do
	ringpy info "$f" > "$TMPD/info" || fail "info $f"
	! grep -E '^(wlock|rlock|state)[01]?=[^0]' "$TMPD/info" ||
		fail "$f: $(tr '\n' ' ' < "$TMPD/info")"
done
pass "every ring: both lock words free, state ok"

# 9. The daemon killed: a Python end waiting for data reports ECONNABORTED
# (a writer stays open, so no end of file comes), as C ends do.
S=$MNT/orphan
"$CHAN_TOOL" mkchan "$S" || fail "mkchan"
ringpy recv "$S" > /dev/null 2> "$TMPD/orphan.err" &
rd=$!
wait_reader "$S" "orphan"
exec 7> "$S"
{ kill -9 "$DAEMON_PID"; wait "$DAEMON_PID"; } 2>/dev/null
DAEMON_PID=
wait "$rd"
st=$?
exec 7>&-
[ $st -ne 0 ] && [ $st -ne 124 ] || fail "Python reader: status $st after the daemon died"
grep -q 'abort' "$TMPD/orphan.err" || fail "Python reader error: $(cat "$TMPD/orphan.err")"
pass "the daemon killed: a waiting Python reader gets ECONNABORTED"
exit 0
