#!/bin/bash
# t_shim_real.sh - real programs on channels, the kernel as the reference:
# each case is a bash script run twice, first without the shim (kernel pipes)
# and then under the shim on a fresh mount; its standard output (byte for
# byte; the cases print sha256 sums of big streams), its standard error and
# its exit status must be the same, and the scripts print PIPESTATUS where
# the statuses of a pipeline matter.  Under the shim every pipe is a channel
# (IPCD_SHIM_LEARN=off), as the point is programs on channels.  The cases:
#   1. a middle stage without the shim (env -i drops LD_PRELOAD) on 30 MiB:
#      cat, wc -c, tail -n, head -c, cp /dev/stdin, dd; the first and last
#      stages without the shim; what stat and Python's os.fstat say of
#      channel ends to programs without the shim (a regular file of size 0,
#      a documented difference);
#   2. stdio programs (sort, grep, sed, awk, uniq, seq, head, tail, tr, yes,
#      Python print) with exact output, and pipelines that end by SIGPIPE
#      quietly (seq | head -n1, seq | sort | head -n1, yes | head, awk | head,
#      python | head), with the kernel's statuses and nothing on stderr; with
#      SIGPIPE ignored, the kernel's "write error" and statuses;
#   3. ends reopened through /dev/fd, /dev/stdin and /proc/self/fd: while
#      read < <(seq 20000), mapfile, paste and diff of process substitutions,
#      printf x | cat /dev/stdin (also after the writer exited, also without
#      the shim), /dev/stdout reopened for writing, tee >(...);
#   4. processes with and without the shim on one pipe: writers interleaving
#      chunks and lines, readers alternating (dd iflag=fullblock; 4096-byte
#      blocks, as AddressSanitizer in a sanitized shim rejects dd's aligned
#      buffer of another size);
#   5. a fork/exec chain six levels deep, the shim off and on in turn, each
#      level a pipeline of its own around the next;
#   6. Python multiprocessing with the spawn start method: Process start and
#      join, a Pipe, a Pool; the time of start()+join() with and without the
#      shim goes to the log (not judged);
#   7. afterwards the mount's channels= is back to where it was.
# Every run has a time limit: a hang under the shim fails its case, naming
# it.  Skipped (77, with the reason) when not root or the fast path is off.
. "$top_srcdir/tests/lib.sh"

SHIM=${SHIM_LIB:-$top_builddir/.libs/libipcd-shim.so}
PRELOAD=${SHIM_PRELOAD:-$SHIM}
[ -f "$SHIM" ] || skip "the shim library $SHIM is not built"
command -v sha256sum >/dev/null || skip "sha256sum is not installed"

mount_ipcd
shim_env
status() { timeout 10 getfattr --only-values -n user.ipcd.status "$MNT" 2>/dev/null; }
stat_field() { status | tr ' ' '\n' | sed -n "s/^$1=//p"; }
case $(status) in
*fastpath=on*) ;;
*) skip "the mount serves no fast path: $(status)" ;;
esac

W=$TMPD/work
mkdir -p "$W"
D=$W/data30
"$CHAN_TOOL" gen $((30 << 20)) 5 >"$D" || fail "chan_tool gen"
"$CHAN_TOOL" gen $((3 << 20)) 6 >"$W/data3"
"$CHAN_TOOL" gen 300000 7 >"$W/d300k"
for i in 0 1 2 3; do "$CHAN_TOOL" gen 3000 "1$i" >"$W/c$i"; done
PY=$(command -v python3 || true)

# What every case script starts with: a PATH, and noshim, which runs a
# command with an empty environment (no LD_PRELOAD) but that PATH.
PRE='PATH=/usr/local/bin:/usr/bin:/bin; export PATH
noshim() { env -i PATH=/usr/local/bin:/usr/bin:/bin "$@"; }
'

# summ FILE: a file in a few words, for a failure line.
summ() {
	local n
	n=$(stat -c %s "$1")
	if [ "$n" -le 120 ] && ! LC_ALL=C grep -q '[^[:print:][:space:]]' "$1"; then
		printf "'%s'" "$(tr '\n' '|' <"$1")"
	else
		printf '%s bytes, sha256 %.16s' "$n" "$(sha256sum <"$1")"
	fi
}

# both NAME SECS SCRIPT: SCRIPT without the shim, then with it; the same
# stdout, stderr and exit status, or a failure saying what differs.
both() {
	local name=$1 secs=$2 script=$PRE$3 ks ss diffs=
	local K=$TMPD/k S=$TMPD/s
	timeout -k 2 "$secs" env -u LD_PRELOAD -u IPCD_MOUNT W="$W" D="$D" \
		bash -c "$script" >"$K.out" 2>"$K.err"
	ks=$?
	if [ "$ks" -eq 124 ] || [ "$ks" -eq 137 ]; then
		bad "$name: the reference run on kernel pipes did not end within $secs s"
		return
	fi
	timeout -k 2 "$secs" env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" IPCD_SHIM_LEARN=off W="$W" D="$D" \
		bash -c "$script" >"$S.out" 2>"$S.err"
	ss=$?
	if [ "$ss" -eq 124 ] || [ "$ss" -eq 137 ]; then
		bad "$name: hung under the shim (stopped after $secs s, stdout so far $(summ "$S.out")); on the kernel it printed $(summ "$K.out")"
		return
	fi
	cmp -s "$K.out" "$S.out" ||
		diffs="stdout $(summ "$S.out"), the kernel's $(summ "$K.out")"
	cmp -s "$K.err" "$S.err" ||
		diffs="$diffs${diffs:+; }stderr $(summ "$S.err"), the kernel's $(summ "$K.err")"
	[ "$ks" = "$ss" ] || diffs="$diffs${diffs:+; }exit status $ss, the kernel's $ks"
	if [ -z "$diffs" ]; then
		pass "$name"
	else
		bad "$name: $diffs"
	fi
}

# limit NAME SECS SCRIPT WANT: a documented difference (ipcd-shim(7),
# "Programs without the shim"): SCRIPT under the shim prints exactly WANT
# (lines joined by |), where kernel pipes would print something else.
limit() {
	local name=$1 secs=$2 script=$PRE$3 want=$4 got
	got=$(timeout -k 2 "$secs" env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" IPCD_SHIM_LEARN=off W="$W" D="$D" \
		bash -c "$script" 2>&1 | tr '\n' '|')
	if [ "$got" = "$want" ]; then
		pass "$name (as documented: '$want')"
	else
		bad "$name: '$got', documented: '$want'"
	fi
}

CH0=$(stat_field channels)

# --- 1. a middle stage without the shim ---------------------------------------
echo "# 1. stages without the shim"
both "cat | env -i cat | sha256sum (30 MiB)" 60 \
	'cat "$D" | noshim cat | sha256sum; echo "${PIPESTATUS[*]}"'
both "cat | env -i wc -c (30 MiB)" 60 \
	'cat "$D" | noshim wc -c; echo "${PIPESTATUS[*]}"'
both "cat | env -i tail -n 3 (30 MiB)" 60 \
	'cat "$D" | noshim tail -n 3 | sha256sum; echo "${PIPESTATUS[*]}"'
both "cat | env -i head -c 20000000 (30 MiB)" 60 \
	'cat "$D" | noshim head -c 20000000 | sha256sum'
both "cat | env -i cp /dev/stdin FILE (30 MiB)" 60 \
	'rm -f "$W/cp.out"; cat "$D" | noshim cp /dev/stdin "$W/cp.out"; echo "${PIPESTATUS[*]}"; sha256sum <"$W/cp.out"'
both "cat | env -i dd bs=64k | sha256sum (30 MiB)" 60 \
	'cat "$D" | noshim dd bs=64k status=none | sha256sum; echo "${PIPESTATUS[*]}"'
both "cat | env -i dd iflag=fullblock of=FILE (30 MiB)" 60 \
	'rm -f "$W/dd.out"; cat "$D" | noshim dd bs=1M iflag=fullblock status=none of="$W/dd.out"; echo "${PIPESTATUS[*]}"; sha256sum <"$W/dd.out"'
both "env -i cat | cat | env -i sha256sum (30 MiB)" 60 \
	'noshim cat "$D" | cat | noshim sha256sum; echo "${PIPESTATUS[*]}"'
# A program without the shim sees a channel end as what it is on the
# mount: a regular file of size 0, which it reads and writes as a pipe.
limit "what stat says of pipe ends to a program without the shim" 20 \
	': | noshim stat -L -c "%F %s" /dev/stdin; noshim stat -L -c "%F %s" /dev/stdout | cat' \
	'regular empty file 0|regular empty file 0|'
if [ -n "$PY" ]; then
	limit "what os.fstat says of a pipe end to Python without the shim" 20 \
		': | noshim python3 -c "import os, stat; s = os.fstat(0); print(stat.S_ISFIFO(s.st_mode), s.st_size)"' \
		'False 0|'
	limit "what stat says of a socket pair end to a program without the shim" 20 \
		'python3 -c "
import socket, subprocess
a, b = socket.socketpair()
subprocess.run([\"/usr/bin/stat\", \"-L\", \"-c\", \"%F\", \"/dev/fd/%d\" % b.fileno()],
               pass_fds=[b.fileno()], env={})"' \
		'regular empty file|'
fi

# --- 2. stdio programs, and SIGPIPE ----------------------------------------
echo "# 2. stdio programs and quiet SIGPIPE"
both "seq | sort -r | grep | sed | awk | tr" 60 \
	'seq 1 200000 | sort -r | grep 7 | sed s/1/x/g | awk "{ n++; s += length(\$0) } END { print n, s }" | tr 0-9 a-j; echo "${PIPESTATUS[*]}"'
both "seq | sed | sort -n | uniq -c | sort | tail | head" 60 \
	'seq 1 300000 | sed -n "p;p" | sort -n | uniq -c | sort -k2n | tail -n 3 | head -n 2; echo "${PIPESTATUS[*]}"'
both "yes | head -c 5000000 | sha256sum" 30 \
	'yes abcdefgh | head -c 5000000 | sha256sum; echo "${PIPESTATUS[*]}"'
both "seq 1 10000000 | head -n1: SIGPIPE, quietly" 60 \
	'seq 1 10000000 | head -n1; echo "${PIPESTATUS[*]}"'
both "seq 1 1000000 | sort | head -n1: SIGPIPE, quietly" 60 \
	'seq 1 1000000 | sort | head -n1; echo "${PIPESTATUS[*]}"'
both "yes | head -n 100000 | tail -n 1" 30 \
	'yes | head -n 100000 | tail -n 1; echo "${PIPESTATUS[*]}"'
both "awk printing 3000000 lines | head -n 2" 30 \
	'awk "BEGIN { for (i = 0; i < 3000000; i++) print i }" | head -n 2; echo "${PIPESTATUS[*]}"'
both "SIGPIPE ignored: seq | head -n1 says write error" 60 \
	'trap "" PIPE; seq 1 10000000 | head -n1; echo "${PIPESTATUS[*]}"'
if [ -n "$PY" ]; then
	both "python printing 10**7 lines | head -n1" 60 \
		'python3 -c "
for i in range(10**7):
    print(i)" | head -n1; echo "${PIPESTATUS[*]}"'
fi

# --- 3. ends reopened ------------------------------------------------------
echo "# 3. reopened ends"
both "while read < <(seq 20000) counts every line" 15 \
	'n=0; while read -r l; do n=$((n + 1)); done < <(seq 20000); echo $n'
both "mapfile < <(seq 5000)" 15 \
	'mapfile -t a < <(seq 5000); echo "${#a[@]} ${a[4999]}"'
both "read -r first < <(seq 10 20)" 8 \
	'read -r first < <(seq 10 20); echo "$first"'
both "paste <(seq 3) <(seq 4 6), five times" 8 \
	'for i in 1 2 3 4 5; do paste <(seq 3) <(seq 4 6); done'
both "cat <(seq 3) <(seq 4 6), five times" 8 \
	'for i in 1 2 3 4 5; do cat <(seq 3) <(seq 4 6); done'
both "diff <(seq 1000) <(seq 1000), five times" 8 \
	'for i in 1 2 3 4 5; do diff <(seq 1000) <(seq 1000) && echo same; done'
both "wc -l < <(seq 100000)" 8 'wc -l < <(seq 100000)'
both "printf x | cat /dev/stdin, five times" 8 \
	'for i in 1 2 3 4 5; do printf x | cat /dev/stdin; echo " ${PIPESTATUS[*]}"; done'
both "printf x | (sleep 0.3; cat /dev/stdin): the writer gone first" 8 \
	'printf x | (sleep 0.3; cat /dev/stdin); echo; echo "${PIPESTATUS[*]}"'
both "printf x | env -i cat /dev/stdin" 8 'printf x | noshim cat /dev/stdin; echo'
both "seq 5 | cat /proc/self/fd/0, five times" 8 \
	'for i in 1 2 3 4 5; do seq 5 | cat /proc/self/fd/0; done'
both "seq 5 | env -i cat /proc/self/fd/0" 8 'seq 5 | noshim cat /proc/self/fd/0'
both "echo > /dev/stdout, a write end reopened" 8 'bash -c "echo hi > /dev/stdout" | cat'
both "echo > /dev/fd/1 between two writers" 8 \
	'{ echo a; bash -c "echo b > /dev/fd/1"; echo c; } | cat'
# The process substitution may end after the pipeline: wait for its file.
both "seq | tee >(wc -l)" 8 \
	'rm -f "$W/tee.n"; seq 10000 | tee >(wc -l > "$W/tee.t"; mv "$W/tee.t" "$W/tee.n") > /dev/null
	 for i in $(seq 600); do [ -e "$W/tee.n" ] && break; sleep 0.01; done; cat "$W/tee.n"'

# --- 4. with and without the shim on one pipe ------------------------------
echo "# 4. processes with and without the shim on one pipe"
both "writers with and without the shim interleaving 3000-byte chunks" 60 \
	'for i in $(seq 40); do cat "$W/c$((i % 4))"; noshim cat "$W/c$(((i + 1) % 4))"; done | sha256sum'
both "writers with and without the shim interleaving lines" 60 \
	'for i in $(seq 100); do echo "a$i"; noshim /bin/echo "b$i"; /bin/echo "c$i"; done | cat | sha256sum'
both "readers with and without the shim taking 4096 bytes in turn" 60 \
	'cat "$W/d300k" | { for i in $(seq 36); do dd bs=4096 count=1 iflag=fullblock status=none; noshim dd bs=4096 count=1 iflag=fullblock status=none; done; cat; } | sha256sum'

# --- 5. a fork/exec chain ------------------------------------------------------
echo "# 5. a fork/exec chain"
cat >"$W/chain.sh" <<'EOF'
# chain.sh LEVEL: a pipeline around the next level; odd levels run without
# the shim, even ones with it (when the run has one, and with the sanitizer
# options the run has).
n=$1
[ "$n" -eq 0 ] && exec sha256sum
if [ $((n % 2)) -eq 1 ]; then
	next() { env -i PATH="$PATH" SAVED_PRELOAD="$SAVED_PRELOAD" SAVED_MOUNT="$SAVED_MOUNT" \
		SAVED_ASAN="$SAVED_ASAN" bash "$0" $((n - 1)); }
else
	next() { env LD_PRELOAD="$SAVED_PRELOAD" IPCD_MOUNT="$SAVED_MOUNT" IPCD_SHIM_LEARN=off \
		ASAN_OPTIONS="$SAVED_ASAN" bash "$0" $((n - 1)); }
fi
cat | next | cat
EOF
both "a fork/exec chain six levels deep, the shim off and on in turn" 60 \
	'SAVED_PRELOAD=${LD_PRELOAD:-} SAVED_MOUNT=${IPCD_MOUNT:-} SAVED_ASAN=${ASAN_OPTIONS:-} bash "$W/chain.sh" 6 < "$W/data3"'

# --- 6. Python multiprocessing, spawn -----------------------------------------
if [ -n "$PY" ]; then
	echo "# 6. Python multiprocessing with the spawn start method"
	cat >"$W/spawn.py" <<'EOF'
import multiprocessing as mp, sys, time

def double(q, x):
    q.put(x * 2)

def echo(conn):
    conn.send(conn.recv()[::-1])
    conn.close()

def sq(x):
    return x * x

if __name__ == "__main__":
    mp.set_start_method("spawn")
    q = mp.Queue()
    t0 = time.monotonic()
    p = mp.Process(target=double, args=(q, 21))
    p.start()
    got = q.get(timeout=60)
    p.join(60)
    dt = time.monotonic() - t0
    print("process", p.exitcode, got)
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b,))
    p.start()
    a.send(b"spawned" * 1000)
    print("pipe", a.recv() == (b"spawned" * 1000)[::-1])
    p.join(60)
    print("pipe exit", p.exitcode)
    with mp.Pool(2) as pool:
        print("pool", sum(pool.map(sq, range(1000))))
    with open(sys.argv[1], "w") as f:
        f.write("%.3f\n" % dt)
EOF
	both "multiprocessing spawn: Process, Pipe, Pool" 120 \
		'python3 "$W/spawn.py" "$W/spawn.$([ -n "${LD_PRELOAD:-}" ] && echo shim || echo kernel)"'
	echo "# multiprocessing spawn, start()+join() of one process: kernel" \
		"$(cat "$W/spawn.kernel" 2>/dev/null || echo '?') s, shim" \
		"$(cat "$W/spawn.shim" 2>/dev/null || echo '?') s (not judged)"
fi

# --- 7. nothing left behind -----------------------------------------------------
channels_back() { [ "$(stat_field channels)" = "$CH0" ]; }
if wait_for 100 channels_back; then
	pass "the mount's channels= is back to $CH0"
else
	bad "the mount's channels= is $(stat_field channels) ten seconds after the cases, $CH0 before"
fi
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"
[ "$FAILS" = 0 ] || fail "$FAILS case(s) differ from the kernel"
exit 0
