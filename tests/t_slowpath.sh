#!/bin/bash
# t_slowpath.sh - pipe semantics of a channel through plain open/read/write
# (the daemon's slow path):
#   - EOF once every writer closed; O_NONBLOCK gives EAGAIN on an empty read
#     and on a full ring; EPIPE with no reader; O_RDWR is both ends;
#   - writes of PIPE_BUF bytes from several processes are never interleaved;
#   - a blocked read and a blocked write are interrupted by a signal (EINTR),
#     and a reader killed while blocked goes away (no D state);
#   - poll POLLIN/POLLOUT/POLLHUP/POLLERR, select, and edge-triggered epoll;
#   - the ring role ioctl: a read-only role refuses writes (EBADF).
. "$top_srcdir/tests/lib.sh"
[ -n "${PYTHON3:-}" ] || PYTHON3=$(command -v python3) || skip "python3 is missing"
mount_ipcd

"$CHAN_TOOL" mkchan "$MNT/small" stream 4096 || fail "mkchan small"
timeout 120 "$PYTHON3" - "$MNT" "$COORD" <<'PY' || fail "slow path semantics (see above)"
import errno, fcntl, os, select, signal, struct, sys, time

mnt = sys.argv[1]
coord = sys.argv[2]    # the lock's ring of 4096 bytes has exact numbers
def ok(msg): print("ok -", msg, flush=True)
def fill(w):
    # Nonblocking writes of 4000 bytes until one is refused: how many.
    fl = fcntl.fcntl(w, fcntl.F_GETFL); fcntl.fcntl(w, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    n = 0
    while True:
        try:
            assert os.write(w, b"x" * 4000) == 4000    # whole, or refused
        except BlockingIOError:
            break
        n += 1
        assert n < 1000, "never full"
    fcntl.fcntl(w, fcntl.F_SETFL, fl)
    return n
def drain(r):
    fl = fcntl.fcntl(r, fcntl.F_GETFL); fcntl.fcntl(r, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    got = b""
    while True:
        try:
            b = os.read(r, 65536)
        except BlockingIOError:
            break
        if not b:
            break
        got += b
    fcntl.fcntl(r, fcntl.F_SETFL, fl)
    return got
def chan(name):
    p = os.path.join(mnt, name)
    os.close(os.open(p, os.O_CREAT | os.O_RDWR, 0o600))
    return p
def expect_err(code, fn, *a):
    try:
        fn(*a)
    except OSError as e:
        assert e.errno == code, (e, code)
        return
    raise AssertionError("no error %s" % errno.errorcode[code])

# EOF after the writers close; data written before is all there.
p = chan("eof")
r = os.open(p, os.O_RDONLY)
w1 = os.open(p, os.O_WRONLY); w2 = os.open(p, os.O_WRONLY)
os.write(w1, b"a" * 10); os.close(w1)
os.write(w2, b"b" * 5); os.close(w2)
assert os.read(r, 100) == b"a" * 10 + b"b" * 5
assert os.read(r, 100) == b""
os.close(r)
ok("EOF after every writer closed")

# Opens made O_RDWR only to be narrowed to reading are no writers, even
# several at once: a reader that came meanwhile sees no end of file.
SETROLE = 0x4004ab01
p = chan("narrow")
a = os.open(p, os.O_RDWR); b = os.open(p, os.O_RDWR)
r = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
fcntl.ioctl(a, SETROLE, struct.pack("I", 1))
fcntl.ioctl(b, SETROLE, struct.pack("I", 1))
expect_err(errno.EAGAIN, os.read, r, 10)
w = os.open(p, os.O_WRONLY); os.write(w, b"z"); os.close(w)
assert os.read(r, 10) == b"z"
assert os.read(r, 10) == b""
for f in (a, b, r):
    os.close(f)
ok("overlapping opens narrowed to reading are no writers")

# O_NONBLOCK: EAGAIN on empty; full ring; EPIPE with no reader.
p = os.path.join(mnt, "small")
r = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
w = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
expect_err(errno.EAGAIN, os.read, r, 10)
if coord == "lock":
    assert os.write(w, b"x" * 4000) == 4000
    expect_err(errno.EAGAIN, os.write, w, b"y" * 200)   # 96 free: atomic refuses
    assert os.write(w, b"z" * 8192) == 96               # > PIPE_BUF: partial
    expect_err(errno.EAGAIN, os.write, w, b"y" * 5000)
    assert len(os.read(r, 8192)) == 4096
else:
    # Queues and one shared ring have their own room: full is full all
    # the same, a refused write took nothing, and a write of more than
    # PIPE_BUF takes what fits once a little is free.
    n = fill(w)
    assert n >= 1
    got = drain(r)
    assert got == b"x" * 4000 * n, (len(got), n)
    n = fill(w)
    os.read(r, 4000)
    k = os.write(w, b"z" * 65536)
    assert 0 < k < 65536, k
    got = drain(r)
    assert got == b"x" * 4000 * (n - 1) + b"z" * k, (len(got), n, k)
fl = fcntl.fcntl(r, fcntl.F_GETFL); fcntl.fcntl(r, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)
os.close(r)
expect_err(errno.EPIPE, os.write, w, b"q")
os.close(w)
ok("EAGAIN when empty or full, partial over PIPE_BUF, EPIPE without reader")

# O_RDWR is both ends: its own data comes back, and no EPIPE.
p = chan("rdwr")
rw = os.open(p, os.O_RDWR)
os.write(rw, b"self"); assert os.read(rw, 10) == b"self"
os.close(rw)
ok("O_RDWR reads its own writes")

# The role ioctl: narrowing to read makes writes fail with EBADF.
IOC_SETROLE = 0x4004ab01
rw = os.open(p, os.O_RDWR)
fcntl.ioctl(rw, IOC_SETROLE, struct.pack("I", 1))
expect_err(errno.EBADF, os.write, rw, b"no")
expect_err(errno.EINVAL, fcntl.ioctl, rw, IOC_SETROLE, struct.pack("I", 2))
os.close(rw)
ok("role ioctl narrows an O_RDWR open")

# PIPE_BUF atomicity: 4 writers x 200 records of 4096 bytes.
p = chan("atomic")
r = os.open(p, os.O_RDONLY)
pids = []
for k in range(4):
    pid = os.fork()
    if pid == 0:
        w = os.open(p, os.O_WRONLY)
        for i in range(200):
            rec = struct.pack("II", k, i) * 512
            assert os.write(w, rec) == 4096
        os._exit(0)
    pids.append(pid)
data = bytearray()
while True:
    b = os.read(r, 65536)
    if not b:
        break
    data += b
for pid in pids:
    assert os.waitpid(pid, 0)[1] == 0
assert len(data) == 4 * 200 * 4096, len(data)
seen = {k: 0 for k in range(4)}
for off in range(0, len(data), 4096):
    rec = bytes(data[off:off + 4096])
    k, i = struct.unpack("II", rec[:8])
    assert rec == struct.pack("II", k, i) * 512, "torn record at %d" % off
    assert i == seen[k], ("order", k, i, seen[k]); seen[k] += 1
os.close(r)
ok("PIPE_BUF writes from 4 processes never interleave")

# A blocked read and a blocked write are interrupted by a signal.
class Alarm(Exception): pass
def on_alarm(*_): raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
p = chan("intr")
r = os.open(p, os.O_RDONLY); w = os.open(p, os.O_WRONLY)
signal.setitimer(signal.ITIMER_REAL, 0.3)
t = time.monotonic()
try:
    os.read(r, 10); raise AssertionError("read returned")
except Alarm:
    pass
assert time.monotonic() - t < 5
os.write(w, b"still works"); assert os.read(r, 100) == b"still works"
os.close(r); os.close(w)
p = os.path.join(mnt, "small")
r = os.open(p, os.O_RDONLY); w = os.open(p, os.O_WRONLY)
if coord == "lock":
    os.write(w, b"f" * 4096)
    full = b"f" * 4096
else:
    full = b"x" * 4000 * fill(w)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    os.write(w, b"g" * 4000); raise AssertionError("write returned")
except Alarm:
    pass
assert drain(r) == full
os.close(r); os.close(w)
signal.signal(signal.SIGALRM, signal.SIG_DFL)
ok("blocked read and write end with EINTR on a signal")

# A reader killed while blocked goes away at once.
p = chan("kill")
pid = os.fork()
if pid == 0:
    fd = os.open(p, os.O_RDONLY); os.read(fd, 10); os._exit(3)
time.sleep(0.3)
os.kill(pid, signal.SIGKILL)
t = time.monotonic()
while time.monotonic() - t < 5:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.02)
assert done == pid, "killed reader still there (D state?)"
ok("a reader killed while blocked exits")

# poll: POLLOUT on an empty channel, POLLIN with data, POLLHUP, POLLERR.
p = chan("poll")
r = os.open(p, os.O_RDONLY | os.O_NONBLOCK); w = os.open(p, os.O_WRONLY)
po = select.poll(); po.register(r, select.POLLIN); po.register(w, select.POLLOUT)
ev = dict(po.poll(1000))
assert ev.get(w) == select.POLLOUT and r not in ev, ev
os.write(w, b"hi")
ev = dict(po.poll(1000))
assert ev.get(r, 0) & select.POLLIN, ev
assert os.read(r, 10) == b"hi"
pid = os.fork()
if pid == 0:
    time.sleep(0.2); os.write(w, b"later"); os._exit(0)
t = time.monotonic()
ev = dict(select.poll().poll(0))
po2 = select.poll(); po2.register(r, select.POLLIN)
ev = dict(po2.poll(5000))
assert ev.get(r, 0) & select.POLLIN, ("woken", ev)
assert time.monotonic() - t < 4
os.waitpid(pid, 0)
assert os.read(r, 10) == b"later"
rl, wl, _ = select.select([r], [w], [], 0)
assert rl == [] and wl == [w]
os.close(w)
ev = dict(po2.poll(1000))
assert ev.get(r, 0) & select.POLLHUP, ev
os.close(r)
r = os.open(p, os.O_RDONLY); w = os.open(p, os.O_WRONLY)
os.close(r)
po3 = select.poll(); po3.register(w, select.POLLOUT)
ev = dict(po3.poll(1000))
assert ev.get(w, 0) & select.POLLERR, ev
os.close(w)
ok("poll and select: POLLIN, POLLOUT, POLLHUP, POLLERR, wake-up")

# Edge-triggered epoll: one event per new write, none in between.
p = chan("epoll")
r = os.open(p, os.O_RDONLY | os.O_NONBLOCK); w = os.open(p, os.O_WRONLY)
ep = select.epoll(); ep.register(r, select.EPOLLIN | select.EPOLLET)
assert ep.poll(0.2) == []
os.write(w, b"1")
assert [fd for fd, _ in ep.poll(2)] == [r]
assert ep.poll(0.2) == [], "edge fired twice"
os.write(w, b"2")
assert [fd for fd, _ in ep.poll(2)] == [r], "no edge for the second write"
assert os.read(r, 10) == b"12"
os.close(w)
ev = ep.poll(2)
assert ev and ev[0][1] & select.EPOLLHUP, ev
ep.close(); os.close(r)
ok("edge-triggered epoll")
PY
exit 0
