#!/bin/bash
# t_pairs.sh - pairs handed back to the daemon's factory (ipcd-ring(7),
# "Pairs made ahead of time"), at the protocol and under the shim:
#   1. a client asks for pipe pairs, queues bytes in one and names itself
#      its creator (through the mapped ring), hands it back, and asks
#      again: it gets the same channel, emptied, without creator, its limit
#      a pipe's, and its reuse counted; one with a holder slot filled is
#      refused;
#   2. a pair with a third open file on it (an end reopened through /proc)
#      is refused: asking again gives another channel;
#   3. a pair handed back by another user is refused (when run as root);
#   4. garbage: /dev/null, one end of a pair twice, the two ends of two
#      different pairs, a return with one descriptor: closed, and the
#      daemon serves on;
#   5. under the shim, 60 short-lived shells that each run a two-stage
#      pipeline: every output right, and the daemon makes far fewer
#      channels than the shells make pipes, as the pairs come back.
. "$top_srcdir/tests/lib.sh"

PYTHON3=${PYTHON3:-}
[ -n "$PYTHON3" ] || skip "PYTHON3 is empty (configure found no python3)"
command -v "$PYTHON3" >/dev/null 2>&1 || skip "python3 ($PYTHON3) is missing"
PY=$("$PYTHON3" -c 'import sys; assert sys.version_info >= (3, 9); print(sys.executable)') ||
	skip "$PYTHON3 is not a Python 3.9 or later (socket.send_fds)"
mount_ipcd
status_field() {
	getfattr --only-values -n user.ipcd.status "$MNT" 2>/dev/null |
		tr ' ' '\n' | sed -n "s/^$1=//p"
}
[ "$(status_field fastpath)" = on ] || skip "no fast path here (the factory needs it)"

cat >"$TMPD/pairs.py" <<'PY'
import fcntl, mmap, os, socket, struct, sys

mnt = sys.argv[1]
st = os.stat(mnt)
name = "\0ipcd.%u.%u.pairs" % (os.major(st.st_dev), os.minor(st.st_dev))
PIRS, RTRN, PIPE = 0x53524950, 0x4e525452, 1
fails = 0

def check(cond, what):
    global fails
    print(("ok - " if cond else "FAIL: ") + what)
    if not cond:
        fails += 1

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(10)
    s.connect(name)
    return s

def ask(s, n):
    s.send(struct.pack("<IIII", PIRS, PIPE, n, 0))

def take(s):
    msg, fds, _, _ = socket.recv_fds(s, 16, 2)
    magic, anon, map_len = struct.unpack("<IIQ", msg)
    assert magic == PIRS and anon == PIPE and len(fds) == 2, (magic, anon, fds)
    maps[fds[0]] = map_len
    return fds

maps = {}

def give(s, fds):
    socket.send_fds(s, [struct.pack("<IIII", RTRN, PIPE, 0, 0)], fds)

def ino(fd):
    return os.fstat(fd).st_ino

def status(key):
    v = os.getxattr(mnt, "user.ipcd.status").decode()
    return int(dict(f.split("=", 1) for f in v.split() if "=" in f)[key])

# Ring 0's header (ipcd-ring(7)): tail, limit, head, creator, holders.
# Offsets in the header of the ring of role 0, which the directory places:
# its first entry (at desc_off, offset 32 of the directory) has hdr_off at 8.
TAIL, LIMIT, HEAD, CREATOR, HOLDERS = 64, 76, 128, 208, 320

def r0(m):
    desc_off = struct.unpack_from("<I", m, 32)[0]
    return struct.unpack_from("<Q", m, desc_off + 8)[0]

def ring(fd):
    # Through the channel's ring file, whose size is the mapping's (Python's
    # mmap goes by the size); closed again before the pair is handed back.
    rf = os.open("%s/.rings/%d" % (mnt, ino(fd)), os.O_RDWR)
    try:
        return mmap.mmap(rf, maps[fd], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(rf)

def u64(m, off, v=None):
    if v is not None:
        struct.pack_into("<Q", m, r0(m) + off, v)
    return struct.unpack_from("<Q", m, r0(m) + off)[0]

def u32(m, off, v=None):
    if v is not None:
        struct.pack_into("<I", m, r0(m) + off, v)
    return struct.unpack_from("<I", m, r0(m) + off)[0]

s = connect()
ask(s, 2)
a, b = take(s), take(s)

# 1. Handed back with bytes queued and a creator: the same channel comes
#    back, emptied, with no creator, its limit a pipe's.
m = ring(a[0])
tail = u64(m, TAIL) + 5
u64(m, TAIL, tail)
u64(m, CREATOR, 12345)
u32(m, LIMIT, 4096)
m.close()
ia, reused = ino(a[0]), status("reused")
give(s, a)
for fd in a:
    os.close(fd)
ask(s, 1)
c = take(s)
check(ino(c[0]) == ia, "a pair handed back is the next one sent")
check(status("reused") == reused + 1, "its reuse is counted")
m = ring(c[0])
check(u64(m, HEAD) == tail and u64(m, TAIL) == tail, "it comes back emptied (head = tail)")
check(u64(m, CREATOR) == 0, "with no creator")
check(u32(m, LIMIT) == 65536, "its limit a pipe's again")
check(all(u64(m, HOLDERS + 8 * i) == 0 for i in range(16)), "no holder in its slots")
m.close()
check(fcntl.fcntl(c[1], fcntl.F_GETFL) & os.O_APPEND and
      not fcntl.fcntl(c[0], fcntl.F_GETFL) & os.O_APPEND, "its ends keep their flags")

# 1b. One whose holder slot is filled: refused.
ask(s, 1)
h1 = take(s)
m = ring(h1[0])
u64(m, HOLDERS, 777)
m.close()
ih = ino(h1[0])
give(s, h1)
ask(s, 1)
h2 = take(s)
check(ino(h2[0]) != ih, "a pair someone holds an end of is not sent again")
for fd in h1 + h2:
    os.close(fd)

# 2. A third open file on the channel: refused.
ib = ino(b[0])
r = os.open("/proc/self/fd/%d" % b[0], os.O_RDWR)
give(s, b)
ask(s, 1)
d = take(s)
check(ino(d[0]) != ib, "a pair with another open file on it is not sent again")
for fd in b:
    os.close(fd)
os.close(r)

# 3. Another user's return is refused (root only: the child becomes nobody).
if os.getuid() == 0:
    ask(s, 1)
    e = take(s)
    ie = ino(e[0])
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            t = connect()
            give(t, e)
            t.close()
            os._exit(0)
        except Exception as x:
            print("child:", x)
            os._exit(1)
    _, wst = os.waitpid(pid, 0)
    check(os.waitstatus_to_exitcode(wst) == 0, "another user's connection hands a pair back")
    for fd in e:
        os.close(fd)
    ask(s, 1)
    f = take(s)
    check(ino(f[0]) != ie, "a pair handed back by another user is not sent to us")
    for fd in f:
        os.close(fd)
else:
    print("# not root: the other-user case is left out")

# 4. Garbage: closed, and the daemon serves on.
n1 = os.open("/dev/null", os.O_RDWR)
n2 = os.open("/dev/null", os.O_RDWR)
give(s, [n1, n2])
ask(s, 2)
g, h = take(s), take(s)
bad_inos = {ino(g[0]), ino(h[0])}
give(s, [g[0], g[0]])
give(s, [g[1], g[1]])
give(s, [g[0], h[1]])
for fd in g + h + [n1, n2]:
    os.close(fd)
ask(s, 1)
k = take(s)
check(ino(k[0]) not in bad_inos, "garbage handed back is not sent")
t = connect()
socket.send_fds(t, [struct.pack("<IIII", RTRN, PIPE, 0, 0)], [k[0]])
try:
    gone = t.recv(16) == b""
except (ConnectionResetError, socket.timeout):
    gone = True
check(gone, "a return with one descriptor ends that connection")
for fd in c + d + k:
    os.close(fd)
s.close()
sys.exit(1 if fails else 0)
PY

# 1-4: the protocol.
timeout 60 "$PY" "$TMPD/pairs.py" "$MNT" >"$TMPD/py.out" 2>&1
rc=$?
cat "$TMPD/py.out"
[ $rc = 0 ] || bad "the pairs protocol script failed (status $rc)"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"

# 5. Short-lived shells under the shim: their pairs come back.
shim_env
c0=$(status_field created)
out=$(LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT timeout 120 bash -c '
	for i in $(seq 60); do sh -c "echo $i | tr 0-9 a-j"; done' 2>"$TMPD/shim.err")
c1=$(status_field created)
want=$(for i in $(seq 60); do echo "$i" | tr 0-9 a-j; done)
[ "$out" = "$want" ] || bad "60 shells under the shim: the output differs"
made=$((c1 - c0))
echo "# 60 shells made 60 pipes; the daemon made $made channels"
[ "$made" -le 20 ] || bad "60 shells: the daemon made $made channels for 60 pipes (want at most 20)"
[ "$made" -ge 1 ] || bad "60 shells: no channel made at all (was the shim loaded?)"
[ -s "$TMPD/shim.err" ] && { cat "$TMPD/shim.err"; bad "the shells wrote to stderr"; }
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"

# 5b. Programs that each make one pipe and end, every pipe a channel: the
#    pairs the daemon sent ahead to each and that it never took come back
#    with it, and serve the next (20 programs, 4 pairs asked for by each).
#    First the spares of the steps before expire (a second).
sleep 1.5
c0=$(status_field created)
s0=$(status_field served)
bad_runs=0
slowest=0
for i in $(seq 20); do
	t0=$(date +%s%N)
	LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT IPCD_SHIM_LEARN=off timeout 60 "$PY" -c '
import os
r, w = os.pipe()
os.write(w, b"x")
os.close(w)
assert os.read(r, 1) == b"x" and os.read(r, 1) == b""' || bad_runs=$((bad_runs + 1))
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$ms" -gt "$slowest" ] && slowest=$ms
done
made=$(($(status_field created) - c0))
served=$(($(status_field served) - s0))
echo "# 20 programs of one pipe each; the daemon made $made channels, which served $served pipes (slowest program: $slowest ms)"
[ "$served" = 20 ] || bad "20 programs of one pipe: served grew by $served (want 20, one a program)"
[ "$bad_runs" = 0 ] || bad "20 programs of one pipe: $bad_runs failed"
# About 24 when every program's untaken pairs are back before the next
# asks (4 at first, then one a program), 60 to 70 when they went with each.
# The returns of a program that ends race with the next one's request (the
# factory reads both sockets in whatever order epoll gives them): counts of
# 11 to 43 were seen, 37 on a quiet machine.  A pair handed back waits a second (the
# factory's SPARE_TTL_MS) for the next program: a program slower than half
# of that (a loaded machine) lets spares expire, and the count says nothing.
if [ "$slowest" -le 500 ]; then
	[ "$made" -le 50 ] || bad "20 programs of one pipe: the daemon made $made channels (want at most 50; 60 to 70 when untaken pairs went with each)"
else
	echo "# not counted: a program took $slowest ms (over 500), spares may have expired meanwhile"
fi

# 6. A pipe per child that only says whether its exec worked (xargs makes
#    one per command): its write end goes with the exec, nothing is written,
#    so after a few the shim gives that call site kernel pipes
#    (ipcd-shim(7), "Pipes that carry little").  The daemon stops making a
#    channel per command, and an exec that fails is still reported.
if command -v xargs >/dev/null 2>&1; then
	c0=$(status_field created)
	out=$(seq 60 | LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT timeout 120 xargs -n1 true 2>&1)
	rc=$?
	c1=$(status_field created)
	made=$((c1 - c0))
	echo "# xargs ran 60 commands; the daemon made $made channels"
	[ "$rc" = 0 ] && [ -z "$out" ] || bad "xargs -n1 true under the shim: status $rc, output '$out'"
	[ "$made" -le 20 ] ||
		bad "xargs over 60 commands: the daemon made $made channels (want at most 20)"
	# A command that deletes itself on its 8th run: the 9th exec fails,
	# and xargs says so and exits 127, as on the kernel.
	for mode in kernel shim; do
		mkdir -p "$TMPD/x-$mode"
		printf '#!/bin/sh\nn=$(cat count 2>/dev/null || echo 0)\necho $((n + 1)) >count\n[ "$n" -ge 7 ] && rm -f "$0"\nexit 0\n' \
			>"$TMPD/x-$mode/cmd"
		chmod +x "$TMPD/x-$mode/cmd"
	done
	(cd "$TMPD/x-kernel" && seq 20 | timeout 60 xargs -n1 ./cmd >/dev/null 2>err)
	krc=$?
	(cd "$TMPD/x-shim" && seq 20 | LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT \
		timeout 60 xargs -n1 ./cmd >/dev/null 2>err)
	src=$?
	kc=$(cat "$TMPD/x-kernel/count") sc=$(cat "$TMPD/x-shim/count")
	[ "$src" = "$krc" ] && [ "$sc" = "$kc" ] && grep -q cmd "$TMPD/x-shim/err" ||
		bad "a failed exec under xargs: status $src after $sc runs with the shim, $krc after $kc on the kernel"
	echo "# a failed exec under xargs: status $src after $sc runs, as on the kernel"
else
	echo "# no xargs here: the error-pipe case is not run"
fi

# 6b. The first process of a tree asks for pairs when it first makes a
#    channel, not at its start: ten programs that make none make the daemon
#    make no pair.
c0=$(status_field created)
for i in 1 2 3 4 5 6 7 8 9 10; do
	LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT timeout 20 sh -c 'exit 0' ||
		bad "sh -c 'exit 0' under the shim failed"
done
c1=$(status_field created)
echo "# ten programs that make no pipe: $((c1 - c0)) pairs made"
[ "$((c1 - c0))" = 0 ] || bad "ten programs that make no pipe made the daemon make $((c1 - c0)) pairs (want 0)"

# 7. The same for a runtime that makes a child's stdin, stdout, stderr and
#    exec-error pipes in one place: Python's subprocess.  With a few bytes
#    through each, all four become kernel pipes after a few runs; with 1.5
#    MiB through stdin and stdout, those two stay channels (a pipe that
#    carried at most 1 MiB in at most 64 writes counts as small too).
#    Counted: the pipes that are channels as subprocess makes them (4 a run
#    if nothing changed).
#    Each with a page of counts of its own (IPCD_SHIM_SITES): a site whose
#    pipes were small stays with the kernel for 31 pipes or more.
py_runs() {	# bytes-per-run sites-file: prints the failures, then the channels used
	LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT IPCD_SHIM_SITES=$2 timeout 120 "$PY" -c '
import os, subprocess, sys
n, mnt = int(sys.argv[1]), sys.argv[2]
bad = made = 0
real_pipe = os.pipe
def pipe():
    # subprocess makes its pipes with os.pipe: count those that are channels
    global made
    r, w = real_pipe()
    made += os.readlink("/proc/self/fd/%d" % w).startswith(mnt + "/")
    return r, w
os.pipe = pipe
for i in range(40):
    data = (b"x%d" % i) * (n // 4 + 1)
    r = subprocess.run(["cat"], input=data, capture_output=True)
    bad += r.returncode != 0 or r.stdout != data or r.stderr != b""
made_runs = made
try:
    subprocess.run(["/nonexistent/cmd"])
    bad += 1
except FileNotFoundError:
    pass
print(bad, made_runs)' "$1" "$MNT" 2>&1
}
set -- $(py_runs 4 "$TMPD/sites.py4")
echo "# python ran 40 subprocesses with 4 bytes each (160 pipes); $2 of them were channels"
[ "$1" = 0 ] || bad "python subprocess under the shim: '$1' (0: every run right, the failed exec reported)"
[ "$2" -le 30 ] || bad "python's 40 subprocesses of 4 bytes: $2 of 160 pipes were channels (want at most 30)"
set -- $(py_runs 1572864 "$TMPD/sites.py1m")
echo "# python ran 40 subprocesses with 1.5 MiB each (160 pipes); $2 of them were channels"
[ "$1" = 0 ] || bad "python subprocess of 1.5 MiB under the shim: '$1'"
# (Not all 80: a pipe that finds no pair at hand while the factory is
# busy is a kernel pipe at once; learnt small, they would be 8 to 20.)
[ "$2" -ge 45 ] && [ "$2" -le 125 ] ||
	bad "python's 40 subprocesses of 1.5 MiB: $2 of 160 pipes were channels (want 45 to 125: stdin and stdout carry the bytes)"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"

# 7b. A site whose probes keep carrying little is probed ever more rarely:
#    600 pipes of 4 bytes made in one place of one process.  Learning
#    takes 12 channels (a site for each count of pipes since the last
#    child up to 8, 1 pipe each, then 4 at the last), then probes come
#    after 32, 32, 64, 128 and 256 kernel pipes: 17 channels.  A probe
#    every 32 pipes would make 30.
set -- $(LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT IPCD_SHIM_SITES=$TMPD/sites.loop \
	timeout 120 "$PY" -c '
import os, sys
mnt = sys.argv[1]
bad = made = 0
for i in range(600):
    r, w = os.pipe()
    made += os.readlink("/proc/self/fd/%d" % w).startswith(mnt + "/")
    os.write(w, b"%3d" % i)
    os.close(w)
    bad += os.read(r, 10) != b"%3d" % i
    os.close(r)
print(bad, made)' "$MNT" 2>&1)
echo "# one place made 600 pipes of 3 bytes; $2 were channels"
[ "$1" = 0 ] || bad "600 pipes in a loop under the shim: '$1' (0: every byte right)"
[ "${2:-99}" -ge 12 ] && [ "${2:-99}" -le 20 ] ||
	bad "600 small pipes in one place: ${2:-?} channels (want 12 to 20: learnt, then ever rarer probes)"

# 7d. What a pipe carried counts in writes too: 40 pipes of 256 KiB each,
#    written in 4 writes of 64 KiB (a kernel pipe moves them as cheaply),
#    are learnt as small; 40 of 256 KiB in 2048 writes of 128 bytes (a
#    system call each on the kernel) stay channels.
writes_run() {	# bytes-per-write sites-file: the failures, then the channels
	LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT IPCD_SHIM_SITES=$TMPD/$2 \
		timeout 120 "$PY" -c '
import os, sys
mnt, size = sys.argv[1], int(sys.argv[2])
bad = made = 0
for i in range(40):
    r, w = os.pipe()
    made += os.readlink("/proc/self/fd/%d" % w).startswith(mnt + "/")
    pid = os.fork()
    if pid == 0:
        os.close(r)
        chunk = bytes([i]) * size
        for k in range(262144 // size):
            os.write(w, chunk)
        os._exit(0)
    os.close(w)
    got = 0
    while True:
        d = os.read(r, 65536)
        if not d:
            break
        bad += d != bytes([i]) * len(d)
        got += len(d)
    os.close(r)
    os.waitpid(pid, 0)
    bad += got != 262144
print(bad, made)' "$MNT" "$1" 2>&1
}
set -- $(writes_run 65536 sites.w64k)
echo "# 40 pipes of 256 KiB in 64 KiB writes: $2 were channels"
[ "$1" = 0 ] || bad "256 KiB pipes in 64 KiB writes: '$1' (0: every byte right)"
[ "${2:-99}" -le 15 ] || bad "40 pipes of 256 KiB in 4 writes each: ${2:-?} channels (want at most 15: learnt small)"
set -- $(writes_run 128 sites.w128)
echo "# 40 pipes of 256 KiB in 128-byte writes: $2 were channels"
[ "$1" = 0 ] || bad "256 KiB pipes in 128-byte writes: '$1' (0: every byte right)"
[ "${2:-0}" -ge 40 ] || bad "40 pipes of 256 KiB in 2048 writes each: ${2:-?} channels (want all 40)"

# 7c. Programs that need no shim: one that gets no channel end and, four
#    runs in a row, moved little through channels runs without the shim
#    (its LD_PRELOAD without it, other libraries kept); one whose pipeline
#    moves much (2 MB), or that gets a channel end, keeps it.
say_shim='case $LD_PRELOAD in *libipcd-shim*) echo shim;; *) echo "none:$LD_PRELOAD";; esac'
prog_runs() {	# sites-file preload script: the 8 answers of a loop
	LD_PRELOAD=$2 IPCD_MOUNT=$MNT IPCD_SHIM_SITES=$TMPD/$1 timeout 120 bash -c "$3" 2>&1 |
		tr '\n' ' '
}
loop="for i in 1 2 3 4 5 6 7 8; do /bin/sh -c '$say_shim'; done"
# What LD_PRELOAD keeps without the shim (a sanitizer's runtime, if any).
rest=$(echo "$SHIM_PRELOAD" | tr ' :' '\n\n' | grep -v '^$' | grep -v "/${SHIM_LIB##*/}\$" |
	paste -sd: -)
out=$(prog_runs sites.prog "$SHIM_PRELOAD" "$loop")
echo "# a program that needs no shim, 8 runs: $out"
[ "$out" = "shim shim shim shim $(printf "none:$rest %.0s" 1 2 3 4)" ] ||
	bad "a program that moves nothing: '$out' (want 4 runs with the shim, then none)"
out=$(prog_runs sites.prog "libm.so.6 $SHIM_PRELOAD" "$loop")
[ "$out" = "$(printf "none:libm.so.6${rest:+:$rest} %.0s" 1 2 3 4 5 6 7 8)" ] ||
	bad "a learnt program with another preloaded library: '$out' (want that library kept)"
out=$(IPCD_SHIM_LEARN=off prog_runs sites.prog "$SHIM_PRELOAD" "$loop")
[ "$out" = "$(printf 'shim %.0s' 1 2 3 4 5 6 7 8)" ] ||
	bad "IPCD_SHIM_LEARN=off: '$out' (want the shim in every run)"
out=$(prog_runs sites.prog2 "$SHIM_PRELOAD" \
	"for i in 1 2 3 4 5 6 7 8; do /bin/sh -c '$say_shim; seq 1 300000 | wc -c'; done")
echo "# a program whose pipeline moves 1988895 bytes, 8 runs: $out"
[ "$out" = "$(printf 'shim 1988895 %.0s' 1 2 3 4 5 6 7 8)" ] ||
	bad "a program whose pipeline moves much: '$out' (want the shim in every run)"
out=$(prog_runs sites.prog3 "$SHIM_PRELOAD" \
	"for i in 1 2 3 4 5 6 7 8; do seq 1 300000 | /bin/sh -c '$say_shim; cat >/dev/null'; done")
[ "$out" = "$(printf 'shim %.0s' 1 2 3 4 5 6 7 8)" ] ||
	bad "a program that gets a channel end: '$out' (want the shim in every run)"

# 7e. A page of counts that is full still learns: 300 programs of their
#    own, each with a pipe of its own, take every entry; then a new program
#    is still learnt after four runs (ipcd-shim(7), "Pipes that carry
#    little": the one that learnt least gives way).
words=$(seq 300 | tr 0-9 a-j | sed 's/^/w/')
LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT IPCD_SHIM_SITES=$TMPD/sites.full timeout 120 \
	bash -c 'for w in $0; do /bin/sh -c ": $w; echo $w | cat >/dev/null"; done' "$words" ||
	bad "300 programs to fill a page of counts failed"
used=$("$PY" -c '
import struct, sys
d = open(sys.argv[1], "rb").read()
print(sum(struct.unpack_from("<Q", d, i * 16)[0] != 0 for i in range(256)))' "$TMPD/sites.full")
out=$(prog_runs sites.full "$SHIM_PRELOAD" \
	"for i in 1 2 3 4 5 6 7 8; do /bin/sh -c ': fresh; $say_shim'; done")
echo "# a page of counts with $used of 256 entries taken; a new program, 8 runs: $out"
[ "$used" -ge 250 ] || bad "300 programs took only $used of the page's 256 entries (want it full)"
[ "$out" = "shim shim shim shim $(printf "none:$rest %.0s" 1 2 3 4)" ] ||
	bad "a new program on a full page: '$out' (want 4 runs with the shim, then none)"

# 8. What a site's pipes carried is known to the whole tree: xargs starts
#    a shell per job, which makes two pipes and ends; the shells learn
#    together that those pipes carry a few bytes.
if command -v xargs >/dev/null 2>&1; then
	c0=$(status_field served)
	out=$(seq 60 | LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT timeout 120 \
		xargs -n1 sh -c 'echo $0 | tr 0-9 a-j | wc -c' | sort | uniq -c)
	c1=$(status_field served)
	want=$(seq 60 | while read -r i; do echo "$i" | tr 0-9 a-j | wc -c; done | sort | uniq -c)
	used=$((c1 - c0))
	echo "# 60 shells under xargs (120 pipes, and xargs' own); $used were channels"
	[ "$out" = "$want" ] || bad "60 shells under xargs: the output differs"
	[ "$used" -le 40 ] || bad "60 shells under xargs: $used channels for 120 pipes of a few bytes (want at most 40)"
fi

# 8b. Socket pairs too: a child's stdin and stdout on one pair, a byte each
#    way; counted once the parent's end closes after the child's.
c0=$(status_field served)
out=$(LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT IPCD_SHIM_SITES=$TMPD/sites.sp timeout 120 "$PY" -c '
import socket, subprocess
bad = 0
for i in range(40):
    a, b = socket.socketpair()
    p = subprocess.Popen(["cat"], stdin=b, stdout=b)
    b.close()
    a.sendall(b"%d" % i)
    a.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = a.recv(100)
        if not d:
            break
        got += d
    a.close()
    bad += p.wait() != 0 or got != b"%d" % i
print(bad)' 2>&1)
c1=$(status_field served)
used=$((c1 - c0))
echo "# 40 children on socket pairs (and their exec-error pipes); $used channels"
[ "$out" = 0 ] || bad "children on socket pairs: '$out' (0: every exchange right)"
[ "$used" -le 25 ] || bad "40 children on socket pairs of a byte each way: $used channels for 80 pairs (want at most 25)"

# 8c. A runtime whose child runs a program: the child's close-on-exec copies
#    of the parent's ends go at the exec without a word (a socket pair's
#    parent side, an exec-error pipe), and the child makes a pipe of its own
#    just before (as Node's children do).  Nobody clears those slots, yet
#    each pair is counted once the daemon shows it closed, or at the exec
#    that closes it: 40 runs, 3 pairs each, learnt (66-68 channels before).
c0=$(status_field served)
out=$(LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT IPCD_SHIM_SITES=$TMPD/sites.rt timeout 120 "$PY" -c '
import os, socket
bad = 0
for i in range(40):
    a, b = socket.socketpair()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        x, y = os.pipe()
        os.dup2(b.fileno(), 0)
        os.dup2(b.fileno(), 1)
        try:
            os.execvp("cat", ["cat"])
        finally:
            os.write(w, b"e")
            os._exit(127)
    b.close()
    os.close(w)
    err = os.read(r, 1)
    os.close(r)
    a.sendall(b"%d" % i)
    a.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = a.recv(100)
        if not d:
            break
        got += d
    a.close()
    _, st = os.waitpid(pid, 0)
    bad += err != b"" or got != b"%d" % i or st != 0
print(bad)' 2>&1)
c1=$(status_field served)
used=$((c1 - c0))
echo "# 40 forked children running cat (120 pairs, their exec-time copies unsaid); $used channels"
[ "$out" = 0 ] || bad "forked children running cat: '$out' (0: every exchange right, no exec error)"
[ "$used" -le 40 ] || bad "40 forked children running cat: $used channels for 120 small pairs (want at most 40)"

# 9. A pipe that its maker alone holds and waits on (make's jobserver, a
#    self-pipe) becomes a kernel pipe at the first wait, with its bytes, its
#    size and its flags; with IPCD_SHIM_LEARN=off it stays a channel.
cat >"$TMPD/wait.py" <<'PY'
import fcntl, os, select, sys
r, w = os.pipe()
fcntl.fcntl(w, 1031, 8192)                  # F_SETPIPE_SZ
os.set_blocking(r, False)
os.write(w, b"abc")
os.read(r, 1)
ready = select.select([r], [], [], 0.05)[0]  # ready: no wait, no change
before = os.readlink("/proc/self/fd/%d" % r)
os.read(r, 2)
select.select([r], [], [], 0.05)             # empty: a wait
after = os.readlink("/proc/self/fd/%d" % r)
os.write(w, b"xyz")
print(before.startswith("pipe:"), after.startswith("pipe:"), ready == [r],
      os.read(r, 10) == b"xyz", os.get_blocking(r), os.get_blocking(w),
      fcntl.fcntl(w, 1032), fcntl.fcntl(r, fcntl.F_GETFD) & 1)
PY
out=$(LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT timeout 60 "$PY" "$TMPD/wait.py" 2>&1)
echo "# a pipe waited on alone: $out"
[ "$out" = "False True True True False True 8192 1" ] ||
	bad "a pipe waited on alone: '$out' (want a channel until the wait, then a kernel pipe with the bytes, size 8192 and flags kept)"
out=$(IPCD_SHIM_LEARN=off LD_PRELOAD=$SHIM_PRELOAD IPCD_MOUNT=$MNT timeout 60 "$PY" "$TMPD/wait.py" 2>&1)
[ "$out" = "False False True True False True 8192 1" ] ||
	bad "a pipe waited on alone, IPCD_SHIM_LEARN=off: '$out' (want a channel throughout)"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"
[ "$FAILS" = 0 ] || fail "$FAILS of the above failed"
pass "pairs handed back: reused when whole and idle, refused otherwise; pipes that carry little left to the kernel"
