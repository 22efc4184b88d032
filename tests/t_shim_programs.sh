#!/bin/bash
# t_shim_programs.sh - real, unmodified programs under the LD_PRELOAD shim,
# each result checked byte for byte, and for each case the mount's status
# counters show that the shim was loaded (created grew) and which path the
# bytes took: bytes grew by at least the payload, and slow_bytes (what the
# daemon moved itself) by no more than what the programs' stdio must write or
# read behind the shim's back.  The cases:
#   1. bash pipelines: SHIM_BIG_BYTES (default 2 GiB) from chan_tool gen
#      through bash -c 'cat | cat | cat' under the shim, sha256 against the
#      stream without the shim, slow_bytes +0; yes | head -n 1 ends yes with
#      SIGPIPE (status 141);
#   2. tar c DIR | tar x -C OTHER, a tree of a few hundred files, diff -r,
#      slow_bytes +0;
#   3. sort of a 40 MB file through a pipe, between cats (slow_bytes at most
#      sort's own stdio input and output);
#   4. gzip | gunzip round trip of the same file, slow_bytes +0;
#   5. xargs -P 4 running 200 shell commands that each pipe, slow_bytes +0;
#   6. Python subprocess (which starts children with vfork): Popen with
#      stdin/stdout/stderr PIPE, communicate of 6 MiB through cat and 3.6 MB
#      through tr, run with capture_output, and the parent's own stdout
#      staying its own while a child runs; slow_bytes at most tr's output;
#   7. Python multiprocessing with the 'fork' start method: Pipe duplex and
#      simplex, Queue from three processes, Pool.map; exact results,
#      slow_bytes +0;
#   8. Perl: open '-|', open '|-', pipe + fork both ways; slow_bytes +0;
#   9. Node child_process: spawn with stdio pipes (8 MiB through cat), exec,
#      fork's IPC channel with process.send (2000 round trips), and
#      spawnSync/execSync five times followed by plain files written and read
#      on the descriptor numbers the children's pipes had;
#  10. make -j4 and its jobserver: 40 targets that each run a pipe, and a
#      recursive $(MAKE) sub-make with 12 more; all built, slow_bytes +0;
#  11. nonblocking, poll and epoll semantics from Python: EAGAIN, a full pipe,
#      select.poll, select.select, select.epoll level and edge triggered,
#      blocking waits woken by a write from another thread within 1.5 s,
#      hang-up, EOF, EPIPE right after the last reader's close (1000 tries);
#  12. 2000 short-lived pipelines from one bash (echo | cat | tr), output
#      checked, then nothing left behind: channels= and memory= back to their
#      values before, no new fds in the harness, no process of ours left, no
#      extra mount, and the daemon's VmRSS grown by at most 8 MiB;
#  13. the shim disabled: IPCD_SHIM=off (created stays, kernel pipes, output
#      right); IPCD_MOUNT naming a plain directory (kernel pipes, output
#      right, nothing on stderr); IPCD_DEBUG=1 (diagnostics on stderr).
# A case that fails prints "not ok - ..." and the others still run; the exit
# status is 1 if any failed.  A missing perl, node, make, python3, tar or
# gzip skips that case with a SKIP line; only a missing shim skips it all.
# SHIM_BIG_BYTES overrides the size of case 1.
. "$top_srcdir/tests/lib.sh"

# lib.sh names the library and what LD_PRELOAD needs for it (in a sanitized
# build, the sanitizer runtimes first).
SHIM=${SHIM_LIB:-$top_builddir/.libs/libipcd-shim.so}
PRELOAD=${SHIM_PRELOAD:-$SHIM}
[ -f "$SHIM" ] || skip "the shim library $SHIM is not built"
BIG=${SHIM_BIG_BYTES:-2147483648}
case $BIG in '' | *[!0-9]*) fail "SHIM_BIG_BYTES=$BIG is not a number" ;; esac

PY=
if command -v "${PYTHON3:-python3}" >/dev/null 2>&1; then
	# The interpreter itself, not a wrapper script around it.
	PY=$("${PYTHON3:-python3}" -c 'import sys; assert sys.version_info >= (3, 9); print(sys.executable)' 2>/dev/null)
fi

mount_ipcd
shim_env

# shim SECS CMD...: CMD under the shim on our mount, within SECS seconds.
# The harness's own commands (getfattr, cmp, ...) run without the shim.
# Every pipe a channel (IPCD_SHIM_LEARN=off): these cases are about programs
# on channels; which pipes the shim leaves to the kernel is t_pairs.sh's.
shim() {
	local secs=$1
	shift
	timeout -k 5 "$secs" env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" IPCD_SHIM_LEARN=off "$@"
}

status() { timeout 10 getfattr --only-values -n user.ipcd.status "$MNT" 2>/dev/null; }
stat_field() { status | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# mark: remember the counters; deltas: set DC, DB, DS to their growth since.
counters() {
	# As strings: awk's numbers would print large counts in %g.
	# The pipes and socket pairs that channels served.
	status | tr ' ' '\n' | awk -F= 'BEGIN { c = b = s = "0" }
		$1 == "served" { c = $2 }
		$1 == "bytes" { b = $2 } $1 == "slow_bytes" { s = $2 }
		END { printf "%s %s %s\n", c, b, s }'
}
mark() { read -r C0 B0 S0 <<<"$(counters)"; }
deltas() {
	local c b s
	read -r c b s <<<"$(counters)"
	DC=$((c - C0))
	DB=$((b - B0))
	DS=$((s - S0))
}

# path_ok WHAT MIN_PIPES MIN_BYTES MAX_SLOW: the shim served pipes from
# channels and the bytes went through the rings, the daemon moving at most
# MAX_SLOW itself.
path_ok() {
	deltas
	[ "$DC" -ge "$2" ] ||
		fail "$1: pipes served by channels grew by $DC, not by at least $2: the shim was not used"
	[ "$DB" -ge "$3" ] ||
		fail "$1: bytes grew by $DB, not by at least $3"
	[ "$DS" -le "$4" ] ||
		fail "$1: slow_bytes grew by $DS, more than $4 (bytes grew by $DB)"
	echo "#   $1: pipes on channels +$DC, bytes +$DB, slow_bytes +$DS (at most $4)"
}

# Processes still running with our mount in their environment: only the
# programs under test have it.
ours() { procs_with "IPCD_MOUNT=$MNT"; }
kill_ours() { kill_procs_with "IPCD_MOUNT=$MNT"; }
EXTRA_CLEANUP=kill_ours

FAILED=0
# run_case NAME FUNCTION: run a case in a subshell, so that its fail only
# ends the case; then make sure it left no process of ours running.
run_case() {
	local name=$1 left p
	shift
	echo "# $name"
	("$@")
	local rc=$?
	left=$(ours)
	if [ -n "$left" ]; then
		for p in $left; do ps -o pid=,stat=,etime=,args= -p "$p"; done 2>/dev/null |
			sed 's/^/#   left: /'
		kill_ours
		[ "$rc" -eq 0 ] && echo "FAIL: $name left processes behind: $left"
		rc=1
	fi
	case $rc in
	0) ;;
	77) ;;
	*) echo "not ok - $name"; FAILED=$((FAILED + 1)) ;;
	esac
}

# why STATUS: what an exit status under timeout means.
why() {
	case $1 in
	124 | 137) echo "$1, stopped at the time limit" ;;
	134) echo "134, aborted" ;;
	*) if [ "$1" -gt 128 ]; then echo "$1, killed by signal $(($1 - 128))"; else echo "$1"; fi ;;
	esac
}

# need PROGRAM CASE: print a skip line and return 1 when PROGRAM is missing.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "SKIP: $2: $1 is not installed"
	return 1
}
need_py() {
	[ -n "$PY" ] && return 0
	echo "SKIP: $1: python3 (3.9 or later) is not installed"
	return 1
}

W=$TMPD/work
mkdir -p "$W"

# --- 1. bash pipelines -------------------------------------------------------
case_bash() {
	local want got st
	want=$("$CHAN_TOOL" gen "$BIG" 7 | sha256sum) || fail "gen without the shim"
	mark
	got=$("$CHAN_TOOL" gen "$BIG" 7 | shim 300 bash -c 'cat | cat | cat' | sha256sum)
	[ "$got" = "$want" ] || fail "cat | cat | cat of $BIG bytes: sha256 $got, want $want"
	path_ok "cat|cat|cat" 2 $((2 * BIG)) 0
	pass "bash: $BIG bytes through cat | cat | cat, sha256 equal, no slow path"

	mark
	got=$(shim 30 bash -c 'yes | head -n 1; echo "${PIPESTATUS[*]}"') ||
		fail "yes | head under the shim"
	st=$(printf 'y\n141 0')
	[ "$got" = "$st" ] || fail "yes | head -n 1: got '$got', want '$st'"
	path_ok "yes|head" 1 1 0
	pass "bash: yes | head -n 1 ends yes with SIGPIPE"
}

# --- 2. tar ------------------------------------------------------------------
case_tar() {
	local d f size
	need tar "tar c | tar x" || exit 77
	rm -rf "$W/src" "$W/dst"
	mkdir -p "$W/src" "$W/dst"
	for d in $(seq 1 20); do
		mkdir -p "$W/src/d$d/sub"
		for f in $(seq 1 15); do
			"$CHAN_TOOL" gen $((d * f * 97)) "$d$f" >"$W/src/d$d/f$f"
		done
		ln -s f1 "$W/src/d$d/link"
		echo "$d" >"$W/src/d$d/sub/x"
	done
	size=$(tar cf - -C "$W/src" . | wc -c)
	mark
	shim 60 bash -c 'tar cf - -C "$1" . | tar xf - -C "$2"' _ "$W/src" "$W/dst" ||
		fail "tar c | tar x under the shim"
	diff -r "$W/src" "$W/dst" >/dev/null || fail "the extracted tree differs"
	path_ok "tar|tar" 1 "$size" 0
	pass "tar c | tar x of $(find "$W/src" | wc -l) entries, diff -r equal, no slow path"
}

# A 40 MB text file for sort and gzip.
make_text() {
	[ -s "$W/text" ] && return 0
	"$CHAN_TOOL" gen 30000000 3 | od -An -tx8 -w16 -v | head -c 40000000 >"$W/text"
}

# --- 3. sort -----------------------------------------------------------------
case_sort() {
	local size
	make_text
	size=$(stat -c %s "$W/text")
	sort "$W/text" >"$W/sorted.want"
	mark
	shim 60 bash -c 'cat "$1" | cat | sort | cat | cat' _ "$W/text" >"$W/sorted" ||
		fail "sort pipeline under the shim"
	cmp -s "$W/sorted" "$W/sorted.want" || fail "sort output differs"
	# sort reads and writes through stdio (the daemon); the cats do not.
	path_ok "cat|cat|sort|cat|cat" 4 $((4 * size)) $((2 * size + 4096))
	pass "sort of $size bytes through pipes, output equal; the cats' rings took no slow path"
}

# --- 4. gzip -----------------------------------------------------------------
case_gzip() {
	local size csize
	need gzip "gzip | gunzip" || exit 77
	make_text
	size=$(stat -c %s "$W/text")
	csize=$(gzip -c <"$W/text" | wc -c)
	mark
	shim 60 bash -c 'cat "$1" | gzip -c | cat | gunzip -c | cat' _ "$W/text" >"$W/gz.out" ||
		fail "gzip pipeline under the shim"
	cmp -s "$W/gz.out" "$W/text" || fail "gzip | gunzip round trip differs"
	path_ok "cat|gzip|cat|gunzip|cat" 4 $((2 * size + 2 * csize)) 0
	pass "gzip | gunzip round trip of $size bytes, equal, no slow path"
}

# --- 5. xargs ----------------------------------------------------------------
case_xargs() {
	local n
	seq 1 200 >"$W/nums"
	n=$(stat -c %s "$W/nums")
	mark
	shim 60 xargs -P 4 -n 1 sh -c 'printf "%s\n" "$1" | cat | tr 0-9 a-j' _ \
		<"$W/nums" >"$W/xargs.out" || fail "xargs -P 4 under the shim"
	sort "$W/xargs.out" >"$W/xargs.sorted"
	tr 0-9 a-j <"$W/nums" | sort | cmp -s - "$W/xargs.sorted" ||
		fail "xargs -P 4 output differs"
	path_ok "xargs -P 4" 400 $((2 * n)) 0
	pass "xargs -P 4: 200 commands each with a pipe, output equal, no slow path"
}

# --- 6, 7, 11. Python ---------------------------------------------------------
cat >"$W/subproc.py" <<'EOF'
import os, random, subprocess, sys

bad = 0

def check(cond, what):
    global bad
    if not cond:
        sys.stderr.write("FAILED: %s\n" % what)
        bad += 1

data = random.Random(1).randbytes(6 << 20)
p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
# While the child runs, the parent's own stdout is still its own.
os.write(1, b"parent stdout\n")
out, _ = p.communicate(data, timeout=60)
check(p.returncode == 0, "cat exit status %s" % p.returncode)
check(out == data, "cat: %d bytes back of %d, starting %r" % (len(out), len(data), out[:20]))

txt = b"hello world\n" * 300000
p = subprocess.Popen(["tr", "a-z", "A-Z"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
out, err = p.communicate(txt, timeout=60)
check((p.returncode, err) == (0, b""), "tr: status %s, stderr %r" % (p.returncode, err))
check(out == txt.upper(), "tr: %d bytes back of %d" % (len(out), len(txt)))

r = subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"],
                   capture_output=True, timeout=30)
check((r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n"), "run: %r" % r)
sys.stderr.write("payload %d tr %d\n" % (2 * len(data) + 2 * len(txt), len(txt)))
sys.exit(1 if bad else 0)
EOF

cat >"$W/mp.py" <<'EOF'
import multiprocessing as mp, os, random, sys

def blob(n, seed):
    return random.Random(seed).randbytes(n)

def echo_child(conn):
    while True:
        m = conn.recv_bytes()
        if m == b"quit":
            break
        conn.send_bytes(m[::-1])
    conn.send({"done": True, "pid": os.getpid()})
    conn.close()

def simplex_child(w, n):
    for i in range(n):
        w.send((i, "x" * (i % 1000)))
    w.send_bytes(blob(3 << 20, 5))
    w.close()

def queue_child(q, k):
    for i in range(500):
        q.put((k, i, bytes([i % 256]) * (i * 7)))
    q.put((k, None, b""))

def sq(x):
    return x * x + 1

def duplex():
    a, b = mp.Pipe()
    p = mp.Process(target=echo_child, args=(b,))
    p.start()
    b.close()
    moved = 0
    for i in range(200):
        m = blob(i * 331 % 70000, i)
        a.send_bytes(m)
        assert a.recv_bytes() == m[::-1], "echo %d" % i
        moved += 2 * len(m)
    a.send_bytes(b"quit")
    d = a.recv()
    assert d == {"done": True, "pid": p.pid}, d
    p.join(30)
    assert p.exitcode == 0, p.exitcode
    return moved

def simplex():
    r, w = mp.Pipe(duplex=False)
    p = mp.Process(target=simplex_child, args=(w, 2000))
    p.start()
    w.close()
    for i in range(2000):
        got = r.recv()
        assert got == (i, "x" * (i % 1000)), "message %d: %r" % (i, got)
    assert r.recv_bytes() == blob(3 << 20, 5), "3 MiB blob"
    try:
        r.recv()
        raise AssertionError("no EOF after the writer closed")
    except EOFError:
        pass
    p.join(30)
    assert p.exitcode == 0, p.exitcode
    return (3 << 20) + sum(i % 1000 for i in range(2000))

def queue():
    q = mp.Queue()
    ps = [mp.Process(target=queue_child, args=(q, k)) for k in range(3)]
    for p in ps:
        p.start()
    got, ends = {}, 0
    while ends < 3:
        k, i, b = q.get(timeout=60)
        if i is None:
            ends += 1
            continue
        assert b == bytes([i % 256]) * (i * 7), "item %d of %d" % (i, k)
        got.setdefault(k, []).append(i)
    for p in ps:
        p.join(30)
        assert p.exitcode == 0, p.exitcode
    assert all(got[k] == list(range(500)) for k in range(3)), "order per producer"
    return 3 * sum(i * 7 for i in range(500))

def pool():
    with mp.Pool(4) as pl:
        assert pl.map(sq, range(10000), chunksize=50) == [sq(x) for x in range(10000)]
        items = [b"y" * (i * 1000) for i in range(100)]
        assert pl.map(len, items) == [len(b) for b in items]
    return sum(len(b) for b in items)

if __name__ == "__main__":
    assert mp.get_start_method() == "fork", mp.get_start_method()
    moved = globals()[sys.argv[1]]()
    sys.stderr.write("payload %d\n" % moved)
EOF

cat >"$W/events.py" <<'EOF'
import errno, fcntl, os, select, threading, time

bad = []

def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)

def soft(cond, what):
    # Reported, and the run goes on to the next check.
    if not cond:
        print("FAILED: " + what, flush=True)
        bad.append(what)

def later(delay, fn):
    t = threading.Thread(target=lambda: (time.sleep(delay), fn()))
    t.start()
    return t

# Nonblocking reads and writes: EAGAIN, a full pipe, every byte back.
r, w = os.pipe()
os.set_blocking(r, False)
os.set_blocking(w, False)
check(fcntl.fcntl(r, fcntl.F_GETFL) & os.O_NONBLOCK, "F_GETFL shows O_NONBLOCK")
try:
    os.read(r, 100)
    check(False, "read of an empty pipe did not fail")
except BlockingIOError as e:
    check(e.errno == errno.EAGAIN, "EAGAIN on an empty read")
sent, i = bytearray(), 0
while True:
    chunk = bytes((i + k) % 251 for k in range(7000))
    try:
        n = os.write(w, chunk)
    except BlockingIOError:
        break
    sent += chunk[:n]
    i += 1
while True:
    try:
        os.write(w, b"z")
    except BlockingIOError:
        break
    sent += b"z"
check(len(sent) >= 4096, "a full pipe holds at least a page: %d" % len(sent))
check(select.select([], [w], [], 0)[1] == [], "a full pipe is not writable")
got = bytearray()
while True:
    try:
        b = os.read(r, 65536)
    except BlockingIOError:
        break
    got += b
check(got == sent, "bytes back: %d of %d" % (len(got), len(sent)))
print("nonblocking: EAGAIN both ways, %d bytes filled and read back" % len(sent))

# poll and select: readiness, and blocking waits woken by a write.
p = select.poll()
p.register(r, select.POLLIN)
check(p.poll(0) == [], "an empty pipe polls not readable")
os.write(w, b"abc")
check(p.poll(0) == [(r, select.POLLIN)], "readable after a write")
check(os.read(r, 10) == b"abc", "poll data")
pw = select.poll()
pw.register(w, select.POLLOUT)
check(pw.poll(0) == [(w, select.POLLOUT)], "the write end is writable")
os.set_blocking(r, True)
t0 = time.monotonic()
th = later(0.2, lambda: os.write(w, b"wake"))
ev = p.poll(4000)
dt = time.monotonic() - t0
th.join()
soft(ev == [(r, select.POLLIN)] and dt < 1.5,
     "blocking poll(4 s): %r after %.2f s for a write made at 0.2 s" % (ev, dt))
check(os.read(r, 10) == b"wake", "data after poll")
t0 = time.monotonic()
th = later(0.2, lambda: os.write(w, b"sel"))
rl, _, _ = select.select([r], [], [], 4)
dt = time.monotonic() - t0
th.join()
soft(rl == [r] and dt < 1.5,
     "blocking select(4 s): %r after %.2f s for a write made at 0.2 s" % (rl, dt))
check(os.read(r, 10) == b"sel", "data after select")
print("poll and select: readiness as for a pipe")

# epoll, edge- and level-triggered.
ep = select.epoll()
ep.register(r, select.EPOLLIN | select.EPOLLET)
check(ep.poll(0) == [], "epoll: nothing yet")
os.write(w, b"12345")
check(ep.poll(0) == [(r, select.EPOLLIN)], "epoll ET: one edge")
check(ep.poll(0) == [], "epoll ET: no second report without new data")
os.write(w, b"678")
check(ep.poll(0) == [(r, select.EPOLLIN)], "epoll ET: a new edge after more data")
check(os.read(r, 100) == b"12345678", "epoll data")
ep.modify(r, select.EPOLLIN)
os.write(w, b"L")
check(ep.poll(0) == [(r, select.EPOLLIN)] and ep.poll(0) == [(r, select.EPOLLIN)],
      "epoll LT: reported again while readable")
check(os.read(r, 1) == b"L", "LT data")
ep.modify(r, select.EPOLLIN | select.EPOLLET)
t0 = time.monotonic()
th = later(0.2, lambda: os.write(w, b"ep"))
ev = ep.poll(4)
dt = time.monotonic() - t0
th.join()
soft(ev == [(r, select.EPOLLIN)] and dt < 1.5,
     "blocking epoll(4 s): %r after %.2f s for a write made at 0.2 s" % (ev, dt))
check(os.read(r, 10) == b"ep", "data after epoll")
os.close(w)
ev = ep.poll(1)
check(ev == [(r, select.EPOLLHUP)], "epoll hang-up when the writer is gone: %r" % ev)
check(os.read(r, 10) == b"", "EOF")
ep.close()
os.close(r)
print("epoll: edge, level, hang-up and EOF as for a pipe")

# EPIPE as soon as the last reader has closed (Python ignores SIGPIPE), and
# EOF as soon as the last writer has: close() takes effect before it returns.
late = eagain = 0
for i in range(1000):
    r2, w2 = os.pipe()
    os.close(r2)
    try:
        os.write(w2, b"x")
        late += 1
    except BrokenPipeError:
        pass
    os.close(w2)
    r2, w2 = os.pipe()
    os.set_blocking(r2, False)
    os.close(w2)
    try:
        check(os.read(r2, 1) == b"", "EOF after the writer's close")
    except BlockingIOError:
        eagain += 1
    os.close(r2)
check(late == 0, "%d of 1000 writes right after the reader's close() succeeded" % late)
check(eagain == 0, "%d of 1000 reads right after the writer's close() gave EAGAIN" % eagain)
if bad:
    raise SystemExit("%d checks failed" % len(bad))
print("EPIPE and EOF right after close(), 1000 times each")
EOF

case_py_subprocess() {
	local payload trlen
	need_py "Python subprocess" || exit 77
	mark
	shim 60 "$PY" "$W/subproc.py" >"$W/sp.out" 2>"$W/sp.err"
	local rc=$?
	sed 's/^/#   /' "$W/sp.err" | grep -v '#   payload' | head -20
	[ "$rc" -eq 0 ] || fail "Python subprocess script: exit status $(why "$rc")"
	[ "$(cat "$W/sp.out")" = "parent stdout" ] ||
		fail "the parent's stdout got '$(head -c 200 "$W/sp.out")'"
	read -r _ payload _ trlen <<<"$(grep '^payload' "$W/sp.err")"
	# tr writes through stdio: its output is allowed through the daemon.
	path_ok "subprocess" 4 "$payload" $((trlen + 4096))
	pass "Python subprocess: communicate through cat and tr, run(capture_output), exact"
}

case_py_mp() {
	local mode payload rc
	need_py "Python multiprocessing" || exit 77
	for mode in duplex simplex queue pool; do
		mark
		shim 40 "$PY" "$W/mp.py" "$mode" >"$W/mp.out" 2>"$W/mp.err"
		rc=$?
		grep -v '^payload' "$W/mp.err" | tail -5 | sed 's/^/#   /'
		[ "$rc" -eq 0 ] || fail "multiprocessing $mode: exit status $(why "$rc")"
		payload=$(sed -n 's/^payload //p' "$W/mp.err")
		path_ok "multiprocessing $mode" 1 "$payload" 0
		pass "Python multiprocessing ($mode, fork): exact results, no slow path"
	done
}

case_py_events() {
	need_py "nonblocking, poll and epoll" || exit 77
	mark
	shim 60 "$PY" "$W/events.py" >"$W/ev.out" 2>&1
	local rc=$?
	sed 's/^/#   /' "$W/ev.out"
	[ "$rc" -eq 0 ] || fail "nonblocking/poll/epoll semantics: exit status $(why "$rc")"
	path_ok "events" 3 4096 0
	pass "nonblocking, poll, select and epoll semantics under the shim"
}

# --- 8. Perl -----------------------------------------------------------------
cat >"$W/kids.pl" <<'EOF'
use strict;
use warnings;
my $moved = 0;
# open '-|': read what a child writes.
my $want = join('', map { "line $_\n" } 1 .. 50000);
my $pid = open(my $from, '-|') // die "fork: $!";
if (!$pid) {
	syswrite(STDOUT, $want) == length($want) or die "child write: $!";
	exit 0;
}
my $got = do { local $/; <$from> };
close($from) or die "open -| child: $?";
die "open -| output differs" unless $got eq $want;
$moved += length($want);
# open '|-': write to a child's stdin.
$pid = open(my $to, '|-') // die "fork: $!";
if (!$pid) {
	my ($n, $s) = (0, 0);
	while (my $l = <STDIN>) { $n++; $s += $l }
	open(my $o, '>', $ARGV[0]) or die "$ARGV[0]: $!";
	print $o "$n $s\n";
	close($o) or die;
	exit 0;
}
my $lines = join('', map { "$_\n" } 1 .. 100000);
print $to $lines;
close($to) or die "open |- child: $?";
$moved += length($lines);
open(my $res, '<', $ARGV[0]) or die;
my $sum = <$res>;
die "open |- child saw $sum" unless $sum eq "100000 5000050000\n";
# pipe + fork, a child that echoes reversed blocks.
pipe(my $pr, my $cw) or die;
pipe(my $cr, my $pw) or die;
$pid = fork // die "fork: $!";
if (!$pid) {
	close $pr;
	close $pw;
	while (sysread($cr, my $buf, 65536)) { syswrite($cw, scalar reverse $buf) }
	exit 0;
}
close $cr;
close $cw;
my $big = join('', map { chr(65 + ($_ * 7) % 26) } 0 .. (1 << 20) - 1);
my $back = '';
for my $i (0 .. 15) {
	syswrite($pw, substr($big, $i * 65536, 65536)) == 65536 or die "write: $!";
	my $b = '';
	while (length($b) < 65536) {
		sysread($pr, $b, 65536 - length($b), length($b)) or die "early EOF";
	}
	$back .= reverse $b;
}
close $pw;
die "a byte after the last block" if sysread($pr, my $extra, 1);
waitpid($pid, 0);
die "pipe child status $?" if $?;
die "pipe + fork round trip differs" unless $back eq $big;
$moved += 2 * length($big);
print STDERR "payload $moved\n";
EOF

case_perl() {
	local payload
	need perl "Perl child processes" || exit 77
	mark
	shim 60 perl "$W/kids.pl" "$W/perl.sum" 2>"$W/perl.err" ||
		fail "perl under the shim: $(head -c 300 "$W/perl.err")"
	payload=$(sed -n 's/^payload //p' "$W/perl.err")
	path_ok "perl" 3 "$payload" 0
	pass "Perl: open '-|', open '|-', pipe + fork; exact, no slow path"
}

# --- 9. Node -----------------------------------------------------------------
cat >"$W/kids.js" <<'EOF'
'use strict';
const cp = require('child_process');
const assert = require('assert');
const crypto = require('crypto');

if (process.argv[2] === 'child') {
  process.on('message', (m) => {
    if (m.cmd === 'quit') {
      process.send({ bye: true }, () => process.disconnect());
      return;
    }
    process.send({ n: m.n, sq: m.n * m.n, s: m.s.split('').reverse().join('') });
  });
  return;
}

function spawnCat() {
  return new Promise((resolve, reject) => {
    const data = crypto.randomBytes(8 << 20);
    const c = cp.spawn('cat', [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [], err = [];
    c.stdout.on('data', (d) => out.push(d));
    c.stderr.on('data', (d) => err.push(d));
    c.on('error', reject);
    c.on('close', (code) => {
      try {
        assert.strictEqual(code, 0);
        assert.strictEqual(Buffer.concat(err).length, 0);
        assert.ok(Buffer.concat(out).equals(data), 'cat gave back other bytes');
        resolve(2 * data.length);
      } catch (e) { reject(e); }
    });
    c.stdin.end(data);
  });
}

function execSh() {
  return new Promise((resolve, reject) => {
    cp.exec('seq 1 20000 | tr 0-9 a-j; echo err >&2', { maxBuffer: 1 << 24 }, (e, out, err) => {
      if (e) return reject(e);
      let want = '';
      for (let i = 1; i <= 20000; i++)
        want += String(i).replace(/[0-9]/g, (d) => 'abcdefghij'[d]) + '\n';
      try {
        assert.strictEqual(out, want);
        assert.strictEqual(err, 'err\n');
        resolve(out.length);
      } catch (x) { reject(x); }
    });
  });
}

function ipc() {
  return new Promise((resolve, reject) => {
    const c = cp.fork(__filename, ['child']);
    const N = 2000;
    let got = 0, moved = 0;
    c.on('message', (m) => {
      if (m.bye) return;
      try {
        assert.strictEqual(m.sq, m.n * m.n);
        assert.strictEqual(m.s, ('x' + m.n).repeat(m.n % 50).split('').reverse().join(''));
      } catch (e) { return reject(e); }
      moved += m.s.length;
      if (++got === N) c.send({ cmd: 'quit' });
    });
    c.on('exit', (code) => {
      if (code === 0 && got === N) resolve(moved);
      else reject(new Error(`IPC child exited with ${code} after ${got} of ${N} replies`));
    });
    for (let n = 0; n < N; n++) {
      const s = ('x' + n).repeat(n % 50);
      moved += s.length;
      c.send({ n, s });
    }
  });
}

// spawnSync runs its own event loop each time; afterwards plain files are
// opened on the descriptor numbers the children's pipes had.
function sync() {
  const fs = require('fs'), path = require('path');
  let moved = 0;
  for (let k = 0; k < 5; k++) {
    const input = Buffer.alloc(100000, 65 + k);
    const r = cp.spawnSync('cat', [], { input });
    assert.ok(r.status === 0 && r.stdout.equals(input), `spawnSync ${k}: cat gave back other bytes`);
    moved += 2 * input.length;
  }
  assert.strictEqual(String(cp.execSync('echo a; echo b >&2', { stdio: 'pipe' })), 'a\n');
  for (let i = 0; i < 20; i++) {
    const p = path.join(process.argv[3], `f${i}`);
    const data = `file ${i}\n`.repeat(1000);
    fs.writeFileSync(p, data);
    const back = fs.readFileSync(p, 'utf8');
    assert.ok(back === data, `file ${i}: ${back.length} bytes read back, ${data.length} written`);
  }
  return Promise.resolve(moved);
}

const which = { spawn: spawnCat, exec: execSh, ipc: ipc, sync: sync }[process.argv[2]];
which().then((moved) => {
  process.stderr.write(`payload ${moved}\n`);
}, (e) => {
  console.error(e);
  process.exit(1);
});
EOF

case_node() {
	local node mode payload rc slow
	node=$(command -v node || command -v nodejs) || {
		echo "SKIP: Node child_process: node is not installed"
		exit 77
	}
	mkdir -p "$W/nodefiles"
	for mode in spawn exec ipc sync; do
		mark
		shim 40 "$node" "$W/kids.js" "$mode" "$W/nodefiles" >"$W/node.out" 2>"$W/node.err"
		rc=$?
		grep -v '^payload' "$W/node.err" | head -8 | sed 's/^/#   /'
		[ "$rc" -eq 0 ] || fail "node $mode: exit status $(why "$rc")"
		payload=$(sed -n 's/^payload //p' "$W/node.err")
		slow=0
		# seq and tr write through stdio: that much may go through the daemon.
		[ "$mode" = exec ] && slow=$((2 * $(seq 1 20000 | wc -c) + 4096))
		path_ok "node $mode" 1 "$payload" "$slow"
		pass "Node child_process $mode: exact$([ "$mode" = sync ] && echo ', files on the reused fds exact')"
	done
}

# --- 10. make ----------------------------------------------------------------
case_make() {
	local i t js
	need make "make -j4 with its jobserver" || exit 77
	rm -rf "$W/mk"
	mkdir -p "$W/mk/sub"
	{
		printf 'T :='
		for i in $(seq 1 40); do printf ' out/t%d' "$i"; done
		printf '\nall: $(T) sub\n\t@echo all-done\n'
		printf 'out/t%%: | out\n'
		printf '\t@printf "%%s\\n" "$*" | cat | tr 0-9 a-j > $@.tmp && mv $@.tmp $@\n'
		printf 'out:\n\tmkdir -p out\n'
		printf 'sub: | out\n\t+$(MAKE) -C sub\n'
		printf '.PHONY: all sub\n'
	} >"$W/mk/Makefile"
	# The sub-make also writes down what its jobserver read end is.
	{
		printf 'comma := ,\n'
		printf 'JS = $(patsubst --jobserver-auth=%%,%%,$(filter --jobserver-auth=%%,$(MAKEFLAGS)))\n'
		printf 'all: js'
		for i in $(seq 1 12); do printf ' s%d' "$i"; done
		printf '\ns%%:\n\t@sleep 0.0$*; printf "%%s\\n" "$*" | cat > ../out/s$*\n'
		printf 'js:\n\t+@case "$(JS)" in fifo:* | "") echo "$(JS)" ;; *) readlink /proc/self/fd/$(firstword $(subst $(comma), ,$(JS))) ;; esac > ../out/jobserver\n'
		printf '.PHONY: all js\n'
	} >"$W/mk/sub/Makefile"
	mark
	# A make of its own: not a child of the jobserver of a make check.
	unset MAKEFLAGS MFLAGS MAKELEVEL MAKE_TERMOUT MAKE_TERMERR
	shim 60 make -j4 -C "$W/mk" >"$W/make.log" 2>&1 ||
		fail "make -j4 under the shim: $(tail -5 "$W/make.log")"
	grep -qi 'jobserver' "$W/make.log" &&
		fail "make complained about its jobserver: $(grep -i jobserver "$W/make.log")"
	grep -qx all-done "$W/make.log" || fail "make did not finish: $(tail -3 "$W/make.log")"
	for i in $(seq 1 40); do
		t=$(printf '%s\n' "$i" | tr 0-9 a-j)
		[ "$(cat "$W/mk/out/t$i" 2>/dev/null)" = "$t" ] || fail "target t$i not built right"
	done
	for i in $(seq 1 12); do
		[ "$(cat "$W/mk/out/s$i" 2>/dev/null)" = "$i" ] || fail "sub-make target s$i not built"
	done
	js=$(cat "$W/mk/out/jobserver" 2>/dev/null)
	case $js in
	"$MNT"/*) echo "#   the sub-make's jobserver read end: $js" ;;
	fifo:*) echo "#   this make's jobserver is a named FIFO ($js), not a pipe" ;;
	*) fail "the sub-make's jobserver read end is '$js', not a channel on $MNT" ;;
	esac
	# The jobserver pipe is one channel; the recipes' pipelines make 92 more.
	path_ok "make -j4" 93 100 0
	pass "make -j4 with its jobserver on a channel and a sub-make: all 52 targets built, no slow path"
}

# --- 12. 2000 short-lived pipelines, and nothing left behind -----------------
fd_list() { ls "/proc/$1/fd" 2>/dev/null | sort -n | tr '\n' ' '; }
# fds_new BEFORE AFTER: the fds in AFTER that were not in BEFORE (a leak);
# one gone since is not (the read end of a command substitution that was
# running when BEFORE was taken, on a busy machine).
fds_new() {
	local f out=
	for f in $2; do
		case " $1 " in *" $f "*) ;; *) out="$out$f " ;; esac
	done
	printf '%s' "$out"
}
mounts_here() { grep -c " ${MNT}[ /]" /proc/mounts; }
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$DAEMON_PID/status"; }
# No more than before: pairs handed back to the daemon may have been held
# then, and closed since.
channels_back() { [ "$(stat_field channels)" -le "$1" ] 2>/dev/null; }

case_many() {
	local ch0 mem0 fds0 fds1 sfds0 sfds1 me mnt0 rss0 rss1 n mem1 secs t0
	wait_for 50 channels_back "$CHANNELS_IDLE" || true
	ch0=$(stat_field channels)
	mem0=$(stat_field memory)
	# The case shell's own pid: $BASHPID inside $(...) would be the
	# command substitution's, whose fds come and go with its pipeline.
	me=$BASHPID
	fds0=$(fd_list $$)
	sfds0=$(fd_list "$me")
	mnt0=$(mounts_here)
	rss0=$(rss_kb)
	seq 1 2000 | tr 0-9 a-j >"$W/many.want"
	n=$(seq 1 2000 | wc -c)
	mark
	# 6000 processes: a sanitized build starts each several times slower,
	# beside another test on the other vCPU.
	secs=120
	ldd "$top_builddir/ipcd" 2>/dev/null | grep -q libasan && secs=360
	t0=$SECONDS
	shim $secs bash -c 'for i in $(seq 1 2000); do echo $i | cat | tr 0-9 a-j; done' \
		>"$W/many.out" ||
		fail "2000 pipelines under the shim: status $(why $?) after $((SECONDS - t0)) s, $(wc -l < "$W/many.out") lines out"
	echo "#   2000 pipelines in $((SECONDS - t0)) s"
	cmp -s "$W/many.out" "$W/many.want" || fail "2000 pipelines: output differs"
	# echo (a bash builtin) and seq write through stdio; cat does not.
	path_ok "2000 pipelines" 4000 $((3 * n)) $((2 * n))
	wait_for 100 channels_back "$ch0" ||
		fail "channels=$(stat_field channels) ten seconds after, $ch0 before"
	mem1=$(stat_field memory)
	[ "$mem1" = "$mem0" ] || fail "channel memory $mem1 after, $mem0 before"
	fds1=$(fd_list $$)
	[ -z "$(fds_new "$fds0" "$fds1")" ] || fail "the harness's fds: $fds1, before: $fds0"
	sfds1=$(fd_list "$me")
	[ -z "$(fds_new "$sfds0" "$sfds1")" ] || fail "the case shell's fds: $sfds1, before: $sfds0"
	[ -z "$(ours)" ] || fail "processes left: $(ours)"
	[ "$(mounts_here)" = "$mnt0" ] || fail "mounts at $MNT: $(mounts_here), before: $mnt0"
	rss1=$(rss_kb)
	# A sanitized daemon holds freed memory in quarantine for a while.
	bound=8192
	ldd "$top_builddir/ipcd" 2>/dev/null | grep -q libasan && bound=131072
	[ "$rss1" -le $((rss0 + bound)) ] ||
		fail "daemon VmRSS grew from $rss0 kB to $rss1 kB (bound: $bound kB)"
	echo "#   channels $ch0 -> $(stat_field channels), memory $mem0 -> $mem1," \
		"daemon VmRSS $rss0 -> $rss1 kB"
	# The same with the shim's default: after a few, kernel pipes.
	mark
	timeout -k 5 120 env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" bash -c \
		'for i in $(seq 1 2000); do echo $i | cat | tr 0-9 a-j; done' \
		>"$W/many.out" || fail "2000 pipelines under the shim, learning"
	cmp -s "$W/many.out" "$W/many.want" || fail "2000 pipelines, learning: output differs"
	deltas
	[ "$DC" -le 400 ] ||
		fail "2000 pipelines of a few bytes: $DC channels for 4000 pipes (want at most 400)"
	echo "#   with the shim's default: $DC channels for 4000 pipes"
	pass "2000 pipelines exact; no channel, fd, process or mount left; daemon VmRSS +$((rss1 - rss0)) kB (bound $bound)"
}

# --- 13. the shim disabled ---------------------------------------------------
case_disabled() {
	local got c0 plain=$TMPD/plain
	mkdir -p "$plain"
	c0=$(stat_field created)
	got=$(timeout 30 env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" IPCD_SHIM=off \
		bash -c 'seq 1 3000 | cat | tr 0-9 a-j | md5sum; : | readlink /proc/self/fd/0' 2>"$W/off.err")
	[ "$(stat_field created)" = "$c0" ] || fail "IPCD_SHIM=off: created grew"
	[ "$(echo "$got" | sed -n 1p)" = "$(seq 1 3000 | tr 0-9 a-j | md5sum)" ] ||
		fail "IPCD_SHIM=off: output differs"
	case $(echo "$got" | sed -n 2p) in
	pipe:*) ;;
	*) fail "IPCD_SHIM=off: stdin of readlink is $(echo "$got" | sed -n 2p), not a kernel pipe" ;;
	esac
	[ ! -s "$W/off.err" ] || fail "IPCD_SHIM=off: stderr: $(head -c 200 "$W/off.err")"
	pass "IPCD_SHIM=off: no channel made, kernel pipes, output right"

	c0=$(stat_field created)
	got=$(timeout 30 env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$plain" \
		bash -c 'seq 1 3000 | cat | tr 0-9 a-j | md5sum; : | readlink /proc/self/fd/0' 2>"$W/plain.err")
	[ "$(echo "$got" | sed -n 1p)" = "$(seq 1 3000 | tr 0-9 a-j | md5sum)" ] ||
		fail "no mount: output differs"
	case $(echo "$got" | sed -n 2p) in
	pipe:*) ;;
	*) fail "no mount: stdin of readlink is $(echo "$got" | sed -n 2p), not a kernel pipe" ;;
	esac
	[ ! -s "$W/plain.err" ] || fail "no mount: stderr got: $(head -c 300 "$W/plain.err")"
	[ "$(stat_field created)" = "$c0" ] || fail "no mount: created grew on $MNT"
	[ -z "$(ls -A "$plain")" ] || fail "no mount: the shim wrote into $plain: $(ls -A "$plain")"
	pass "IPCD_MOUNT on a plain directory: kernel pipes, output right, stderr empty"

	mark
	got=$(timeout 30 env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" IPCD_DEBUG=1 IPCD_SHIM_LEARN=off \
		bash -c 'seq 1 3000 | cat | tr 0-9 a-j | md5sum; : | readlink /proc/self/fd/0' 2>"$W/dbg.err")
	[ "$(echo "$got" | sed -n 1p)" = "$(seq 1 3000 | tr 0-9 a-j | md5sum)" ] ||
		fail "IPCD_DEBUG=1: output differs"
	case $(echo "$got" | sed -n 2p) in
	"$MNT"/*) ;;
	*) fail "IPCD_DEBUG=1: stdin of readlink is $(echo "$got" | sed -n 2p), not a channel" ;;
	esac
	grep -Eq '^ipcd-shim\[[0-9]+\]: pipe channel: fds [0-9]+ and [0-9]+ \(site [0-9a-f]{16}\)$' "$W/dbg.err" ||
		fail "IPCD_DEBUG=1: no diagnostics on stderr: $(head -c 300 "$W/dbg.err")"
	grep -q '^ipcd-shim\[[0-9]*\]: noted inherited channel fd [0-9]* (end [01])$' "$W/dbg.err" ||
		fail "IPCD_DEBUG=1: no word of inherited channels: $(head -c 300 "$W/dbg.err")"
	# seq and tr write through stdio, and md5sum reads through it.
	path_ok "debug" 3 1 $((3 * $(seq 1 3000 | wc -c)))
	got=$(timeout 30 env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$plain" IPCD_DEBUG=1 \
		bash -c ': | cat' 2>&1)
	echo "$got" | grep -q "no ipcd mount with the fast path at $plain" ||
		fail "IPCD_DEBUG=1 without a mount says: $got"
	pass "IPCD_DEBUG=1: diagnostics on stderr (channels made and inherited, a missing mount)"
}

START=$(date +%s)
CHANNELS_IDLE=$(stat_field channels)
run_case "1. bash pipelines" case_bash
run_case "2. tar c | tar x" case_tar
run_case "3. sort through a pipe" case_sort
run_case "4. gzip | gunzip" case_gzip
run_case "5. xargs -P 4" case_xargs
run_case "6. Python subprocess" case_py_subprocess
run_case "7. Python multiprocessing" case_py_mp
run_case "8. Perl child processes" case_perl
run_case "9. Node child_process" case_node
run_case "10. make -j4 with a jobserver" case_make
run_case "11. nonblocking, poll and epoll" case_py_events
run_case "12. 2000 short-lived pipelines" case_many
run_case "13. the shim disabled" case_disabled
echo "# $(($(date +%s) - START)) s; $FAILED case(s) failed"
[ "$FAILED" -eq 0 ] || exit 1
exit 0
