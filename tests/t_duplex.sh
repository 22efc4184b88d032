#!/bin/bash
# t_duplex.sh - duplex channels (two rings in one file, one per direction;
# the basis of socket pairs): side 0 and side 1 talk both ways over mmap and
# through read/write, a side that stops writing gives the other EOF, and
# message boundaries hold in both directions.
. "$top_srcdir/tests/lib.sh"
[ -n "${PYTHON3:-}" ] || PYTHON3=$(command -v python3) || skip "python3 is missing"
mount_ipcd

D=$MNT/duplex
"$CHAN_TOOL" mkchan "$D" duplex-stream 65536 || fail "mkchan duplex"
[ "$(getfattr --only-values -n user.ipcd.kind "$D")" = duplex-stream ] || fail "kind"
[ "$(stat -c %s "$D")" -eq 0 ] || fail "a channel's size is 0"

# side 1 in Python through the daemon; side 0 in C through mmap
timeout 30 "$PYTHON3" - "$D" > "$TMPD/py.out" <<'PY' &
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.ioctl(fd, 0x4004ab03, struct.pack("I", 1))          # side 1
assert struct.unpack("I", fcntl.ioctl(fd, 0x8004ab02, b"\0" * 4))[0] == 3 | 1 << 8
data = b""
while len(data) < 5:
    data += os.read(fd, 5 - len(data))
os.write(fd, b"pong\n")
fcntl.ioctl(fd, 0x4004ab01, struct.pack("I", 1))          # stop writing: EOF there
rest = b""
while True:
    b = os.read(fd, 65536)
    if not b:
        break
    rest += b
sys.stdout.write("%s %d\n" % (data.decode().strip(), len(rest)))
PY
py=$!
# readers0: side 1 ends reading ring 0; readers1: side 0 ends reading ring 1.
side_readers() { [ "$(info_field "$1" "readers$2")" -ge "$3" ] 2>/dev/null; }
wait_for 100 side_readers "$D" 0 1 || fail "the side 1 reader never opened"
sleep 0.3
coproc C0 { timeout 30 "$CHAN_TOOL" recv "$D"; }
exec 5<&"${C0[0]}"
sleep 0.3
{ echo ping; sleep 0.5; head -c 1000000 /dev/urandom; } |
	timeout 10 "$CHAN_TOOL" send "$D" || fail "side 0 send"
read -r -t 10 line <&5 || fail "side 0 got nothing back"
[ "$line" = pong ] || fail "side 0 got '$line'"
wait "$py" || fail "python side 1"
[ "$(cat "$TMPD/py.out")" = "ping 1000000" ] || fail "side 1 saw: $(cat "$TMPD/py.out")"
pass "duplex stream: both directions, EOF when the other side stops writing"

M=$MNT/dmsg
"$CHAN_TOOL" mkchan "$M" duplex-message || fail "mkchan duplex-message"
timeout 10 env CHAN_SIDE=1 "$CHAN_TOOL" recvmsg "$M" 3 > "$TMPD/m1" & r1=$!
timeout 10 "$CHAN_TOOL" recvmsg "$M" 2 > "$TMPD/m0" & r0=$!
wait_for 100 side_readers "$M" 0 1 && wait_for 100 side_readers "$M" 1 1 ||
	fail "the message readers never opened"
sleep 0.3
timeout 10 "$CHAN_TOOL" sendmsg "$M" a "b c" "" || fail "side 0 sendmsg"
CHAN_SIDE=1 timeout 10 "$CHAN_TOOL" sendmsg "$M" x yz || fail "side 1 sendmsg"
wait $r1 && wait $r0 || fail "message readers"
printf 'a\nb c\n\n' | cmp - "$TMPD/m1" || fail "side 1 messages"
printf 'x\nyz\n' | cmp - "$TMPD/m0" || fail "side 0 messages"
pass "duplex messages keep boundaries both ways"
exit 0
