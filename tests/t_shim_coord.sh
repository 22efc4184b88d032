#!/bin/bash
# t_shim_coord.sh - many processes on one pipe under the LD_PRELOAD shim, in
# every coordination design (-o coord=lock, queues, shared), checked byte for
# byte with per-writer sequence numbers.  Each case runs first without the
# shim (kernel pipes: the reference, which must pass and proves that the
# checks hold for pipes), then under the shim on a fresh mount per design,
# and its summary must equal the kernel's.  The cases:
#   a1. fan-in: 6 writers forked from one shell share a pipe's write end,
#       20000 short lines each, one write() per line;
#   a2. the same with lines of 4000 bytes (at most PIPE_BUF: never torn);
#   b.  xargs -P 4 runs 200 sh -c writers of 10 lines each into one pipe;
#   c.  make -j4 with a sub-make: 52 recipes write numbered lines into the
#       stdout pipe they share, and the jobserver pipe the make processes
#       share keeps at most 4 recipes running;
#   d1. Python multiprocessing Pool(4): map and imap_unordered of 2000 items;
#   d2. Python multiprocessing Queue: 4 producers, 2 consumers, 3000 items a
#       producer, each consumer's items of each producer in order;
#   e1. fan-out: one writer of 30000 records of 64 bytes, 4 readers sharing
#       the read end, each read() exactly one record's size;
#   e2. the same with 2000 records of 4000 bytes and 3 readers.
# A line is "NAME SEQ <dots> NAME SEQ": a torn or interleaved line cannot
# pass for a whole one.  The checkers (tests/shim_coord.py) want every line
# or record exactly once, each writer's in order, nothing else.
# Under the shim, each case must also have been carried by channels: the
# mount's user.ipcd.status served= grew, and the pipe ends the checkers
# looked at are files of the mount.  After a design's cases, the mount must
# say which coordination anonymous pipes get (pipes=<coord> on the status
# line: the mount's, but the lock on a mount of queues) and count what it served
# (served_<coord>= grew), and the ends looked at must carry that
# coordination in their user.ipcd.coord.  One line per case and design;
# the exit status is 1 if any failed.
. "$top_srcdir/tests/lib.sh"

SHIM=${SHIM_LIB:-$top_builddir/.libs/libipcd-shim.so}
PRELOAD=${SHIM_PRELOAD:-$SHIM}
[ -f "$SHIM" ] || skip "the shim library $SHIM is not built"
require_fuse
command -v getfattr >/dev/null || skip "getfattr (the attr package) is not installed"
command -v make >/dev/null || skip "make is not installed"
command -v xargs >/dev/null || skip "xargs is not installed"
PY=
if command -v "${PYTHON3:-python3}" >/dev/null 2>&1; then
	# The interpreter itself, not a wrapper script around it: the shim
	# must be in the processes that use the pipes.
	PY=$("${PYTHON3:-python3}" -c 'import sys; assert sys.version_info >= (3, 9); print(sys.executable)' 2>/dev/null)
fi
[ -n "$PY" ] || skip "python3 (3.9 or later) is not installed"
H=$top_srcdir/tests/shim_coord.py
[ -f "$H" ] || fail "$H is missing"
export PY H

# The make of case c is a make of its own, not a child of make check's
# jobserver.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKE_TERMOUT MAKE_TERMERR

# Time limits.  A run normally takes a second or two (a few in a sanitized
# build, several times slower); LIM is its limit, a third of it after a run
# of the same design has hung, so that one broken design does not use up
# the others' time.  The whole test ends on its own, reporting the runs it
# had no time for, before run-with-timeout's TEST_TIMEOUT would kill it.
SLOW=1
if [ -n "$SHIM_SANITIZED" ] || ldd "$IPCD" 2>/dev/null | grep -q 'libasan\|libtsan'; then
	SLOW=3
fi
LIM=$((60 * SLOW))
DEADLINE=$((SECONDS + ${TEST_TIMEOUT:-600} - 40))
HUNG=
LIMIT=$LIM
# Writers wait this long for one another to be up before they write.
START_DELAY=$(awk -v s=$SLOW 'BEGIN { print 0.4 * s }')

W=$TMPD/work
mkdir -p "$W"

# Every program a case starts carries SHIM_COORD_RUN in its environment, so
# that whatever outlives its case (or the test) can be found and stopped.
ours() { procs_with "SHIM_COORD_RUN=$TMPD"; }
kill_ours() { kill_procs_with "SHIM_COORD_RUN=$TMPD"; }
no_ours() { [ -z "$(ours)" ]; }
EXTRA_CLEANUP=kill_ours

# MODE is kernel (no shim) or the design of the mount now on MNT.
MODE=kernel
# run CMD...: CMD on kernel pipes or under the shim, within LIMIT seconds;
# the Python cases give up waiting for a message well before, and say so.
# Every pipe a channel under the shim (IPCD_SHIM_LEARN=off): what is tested
# is the channels' coordination, not which pipes the shim leaves to the
# kernel.
run() {
	if [ "$MODE" = kernel ]; then
		timeout -k 5 "$LIMIT" env -u LD_PRELOAD SHIM_COORD_RUN="$TMPD" \
			SHIM_COORD_WAIT=$((LIMIT / 4)) "$@"
	else
		timeout -k 5 "$LIMIT" env LD_PRELOAD="$PRELOAD" IPCD_MOUNT="$MNT" \
			IPCD_SHIM_LEARN=off SHIM_COORD_RUN="$TMPD" SHIM_COORD_WAIT=$((LIMIT / 4)) "$@"
	fi
}

status() { timeout 10 getfattr --only-values -n user.ipcd.status "$MNT" 2>/dev/null; }
# field NAME [STATUS]: one field of a status line (the mount's now by default).
field() { printf '%s\n' "${2:-$(status)}" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# count NAME STATUS: a counter of a status line, 0 when it has none (a
# daemon gone says nothing).
count() {
	local v
	v=$(field "$1" "$2")
	case $v in '' | *[!0-9]*) echo 0 ;; *) echo "$v" ;; esac
}

# A moment shortly ahead, for writers to start together once all are up.
soon() { awk -v t="$(date +%s.%N)" -v d="$1" 'BEGIN { printf "%.3f", t + d }'; }

# why STATUS: what an exit status under timeout means.
why() {
	case $1 in
	124 | 137) echo "status $1: stopped at the time limit" ;;
	*) if [ "$1" -gt 128 ]; then echo "status $1: killed by signal $(($1 - 128))"; else echo "status $1"; fi ;;
	esac
}

# names PREFIX N COUNT: the checker's writer list PREFIX1:COUNT ... PREFIXN:COUNT.
names() {
	local i
	for i in $(seq 1 "$2"); do printf '%s%d:%d ' "$1" "$i" "$3"; done
}

# 40 dots: the padding of the lines the shell writers write.
DOTS=........................................
export DOTS

# ---- the cases: each writes its summary and details to stdout -------------
# $D is the case's own directory, $P its probe file (shim_coord.py probe).

# a: writers forked from one shell, sharing the pipe's write end.
fanin() {
	local n=$1 k=$2 fmt=$3
	run bash -c '
		n=$1 k=$2 fmt=$3 at=$4 probe=$5
		shift 5
		{
			for ((i = 1; i <= n; i++)); do "$PY" "$H" write "w$i" "$k" "$fmt" "$at" & done
			wait
		} | "$PY" "$H" check "$fmt" --probe "$probe" "$@"' \
		_ "$n" "$k" "$fmt" "$(soon "$START_DELAY")" "$P" $(names w "$n" "$k")
}
case_a1() { fanin 6 20000 +40; }
case_a2() { fanin 6 300 4000; }

# b: xargs -P 4, each job a dash whose echo builtin writes a line at a time.
case_b() {
	run bash -c '
		probe=$1
		shift
		seq 1 200 | xargs -P 4 -n 1 sh -c "for s in 0 1 2 3 4 5 6 7 8 9; do echo \"x\$1 \$s $DOTS x\$1 \$s\"; done" _ |
			"$PY" "$H" check +40 --probe "$probe" "$@"' _ "$P" $(names x 200 10)
}

# c: make -j4.  Each recipe notes itself in run/ while it runs and records
# how many recipes it saw there: never more than the 4 jobs -j4 allows, if
# the jobserver pipe lost or doubled no token.
make_files() {
	local d=$1 i s lines=
	mkdir -p "$d/run" "$d/conc"
	for s in $(seq 0 29); do lines="$lines $s"; done
	# R: a recipe for target $@ (the name written into its lines).
	{
		printf 'R = @: > run/$@; ls run | wc -l > conc/$@; '
		printf 'for s in%s; do echo "$@ $$s %s $@ $$s"; done; sleep 0.02; rm -f run/$@\n' "$lines" "$DOTS"
	} >"$d/rules.mk"
	{
		printf 'include rules.mk\nT ='
		for i in $(seq 1 40); do printf ' t%d' "$i"; done
		printf '\nall: $(T) sub\n$(T):\n\t$(R)\n'
		printf 'sub:\n\t+@$(MAKE) -f sub.mk\n.PHONY: all sub $(T)\n'
	} >"$d/Makefile"
	{
		printf 'include rules.mk\nS ='
		for i in $(seq 1 12); do printf ' s%d' "$i"; done
		printf '\nall: $(S)\n$(S):\n\t$(R)\n.PHONY: all $(S)\n'
	} >"$d/sub.mk"
}
case_c() {
	local most
	make_files "$D/mk"
	run bash -c '
		dir=$1 probe=$2
		shift 2
		make -j4 --no-print-directory -C "$dir" | "$PY" "$H" check +40 --probe "$probe" "$@"' \
		_ "$D/mk" "$P" $(names t 40 30) $(names s 12 30) || return
	most=$(cat "$D"/mk/conc/* | sort -n | tail -1)
	[ "$(ls "$D/mk/conc" | wc -l)" = 52 ] || { echo "#   $(ls "$D/mk/conc" | wc -l) of 52 recipes ran"; return 1; }
	[ "$most" -le 4 ] || { echo "#   $most recipes ran at once under make -j4: the jobserver gave out more tokens than it has"; return 1; }
	echo "#   at most $most recipes at once"
}

# d: Python multiprocessing (fork start method).
case_d1() { run "$PY" "$H" pool 2000 --probe "$P"; }
case_d2() { run "$PY" "$H" queue 4 2 3000 --probe "$P"; }

# e: one writer, readers sharing the read end.  Each write is one whole
# record of at most PIPE_BUF bytes, and each read asks for exactly one: on
# a pipe holding only whole records, every read then takes one whole record.
fanout() {
	local count=$1 size=$2 readers=$3 r outs=
	for r in $(seq 1 "$readers"); do outs="$outs $D/r$r"; done
	run bash -c '
		count=$1 size=$2 readers=$3 at=$4 probe=$5 dir=$6
		"$PY" "$H" records "$count" "$size" "$at" | {
			for ((r = 1; r <= readers; r++)); do "$PY" "$H" readrec "$size" "$dir/r$r" --probe "$probe" & done
			wait
		}' _ "$count" "$size" "$readers" "$(soon "$START_DELAY")" "$P" "$D" || return
	"$PY" "$H" check-records "$count" "$size" $outs
}
case_e1() { fanout 30000 64 4; }
case_e2() { fanout 2000 4000 3; }

CASES="a1 a2 b c d1 d2 e1 e2"
desc() {
	case $1 in
	a1) echo "fan-in: 6 writers x 20000 lines of about 58 bytes" ;;
	a2) echo "fan-in: 6 writers x 300 lines of 4000 bytes" ;;
	b) echo "xargs -P 4: 200 writers x 10 lines" ;;
	c) echo "make -j4 and a sub-make: 52 recipes x 30 lines, jobserver" ;;
	d1) echo "multiprocessing Pool(4): map, imap_unordered" ;;
	d2) echo "multiprocessing Queue: 4 producers x 3000, 2 consumers" ;;
	e1) echo "fan-out: 30000 records of 64 bytes, 4 readers" ;;
	e2) echo "fan-out: 2000 records of 4000 bytes, 3 readers" ;;
	esac
}

FAILED=0
# The kernel's summary of each case, what the shim's runs must equal.
declare -A REF
# Every pipe end probed in the current design: "coord count" tallies.
PROBED=

# one CASE: run a case in the current MODE and judge it.
one() {
	local c=$1 rc out sum why_bad='' st0 st1 dserved dbytes dslow where coord t0 secs left
	left=$((DEADLINE - SECONDS))
	if [ "$left" -lt 15 ]; then
		echo "not ok - $c $(desc "$c") [$MODE]: not run, the test's time is up"
		FAILED=$((FAILED + 1))
		return
	fi
	LIMIT=$LIM
	[ -n "$HUNG" ] && LIMIT=$((LIM / 3))
	[ "$LIMIT" -le $((left - 10)) ] || LIMIT=$((left - 10))
	D=$W/$MODE/$c
	P=$D/probe
	mkdir -p "$D"
	out=$D/out
	[ "$MODE" = kernel ] || st0=$(status)
	t0=$(date +%s%N)
	"case_$c" >"$out" 2>"$D/err"
	rc=$?
	t0=$((($(date +%s%N) - t0) / 10000000))
	[ "$MODE" = kernel ] || st1=$(status)
	sum=$(head -n 1 "$out")
	if [ "$rc" -ne 0 ]; then
		why_bad="$(why "$rc")"
		case $rc in 124 | 137) HUNG=1 ;; esac
	elif [ -s "$D/err" ]; then
		why_bad="stderr: $(head -c 300 "$D/err")"
	elif [ "$MODE" != kernel ] && [ "$sum" != "${REF[$c]:-}" ]; then
		why_bad="summary '$sum', the kernel's '${REF[$c]:-(none: the reference failed)}'"
	fi
	if ! wait_for 50 no_ours; then
		why_bad="${why_bad:+$why_bad; }left processes behind: $(ours | tr '\n' ' ')"
		kill_ours
	fi
	# Which pipe ends the checkers read: kernel pipes, or the mount's files.
	while IFS='	' read -r where coord; do
		case $MODE:$where in
		kernel:pipe:*) ;;
		kernel:*) why_bad="${why_bad:+$why_bad; }without the shim a pipe end is $where" ;;
		*:"$MNT"/*) PROBED="$PROBED$coord " ;;
		*) why_bad="${why_bad:+$why_bad; }a pipe end is $where, not a channel of $MNT: the shim did not carry it" ;;
		esac
	done < <(cat "$P" 2>/dev/null)
	[ -s "$P" ] || why_bad="${why_bad:+$why_bad; }no pipe end was probed"
	if [ "$MODE" != kernel ]; then
		dserved=$(($(count served "$st1") - $(count served "$st0")))
		dbytes=$(($(count bytes "$st1") - $(count bytes "$st0")))
		dslow=$(($(count slow_bytes "$st1") - $(count slow_bytes "$st0")))
		[ "$dserved" -ge 1 ] ||
			why_bad="${why_bad:+$why_bad; }served= did not grow: channels carried no pipe"
		sum="$sum; served +$dserved, bytes +$dbytes, slow_bytes +$dslow"
	fi
	secs=$((t0 / 100)).$((t0 / 10 % 10))
	if [ -z "$why_bad" ]; then
		[ "$MODE" = kernel ] && REF[$c]=$sum
		echo "ok - $c $(desc "$c") [$MODE]: $sum; ${secs} s"
		sed -n '2,$p' "$out"
	else
		echo "not ok - $c $(desc "$c") [$MODE]: $why_bad (after ${secs} s)"
		sed -n '1,$p' "$out" | sed 's/^\([^#]\)/#   \1/'
		# The end of a traceback says what happened.
		[ -s "$D/err" ] && tail -n 6 "$D/err" | sed 's/^/#   stderr: /'
		FAILED=$((FAILED + 1))
	fi
}

# coordination DESIGN ST0: after a design's cases, the mount says which
# coordination anonymous pipes get, and counted what that coordination
# served; the ends the checkers looked at carry it.
coordination() {
	local c=$1 st0=$2 st1 pipes n0 n1 tally='' bad='' want=$1
	# Queues do not keep the order of writes made one after another by
	# different processes, which a pipe keeps: a mount of queues leaves
	# pipes on the lock (ipcd(8)).
	[ "$c" = queues ] && want=lock
	st1=$(status)
	pipes=$(field pipes "$st1")
	if [ -z "$PROBED" ]; then
		bad="no case looked at a channel's end"
	else
		tally=$(printf '%s\n' $PROBED | sort | uniq -c | awk '{ printf "%s%s x %s", (NR > 1 ? ", " : ""), $2, $1 }')
		[ "$(printf '%s\n' $PROBED | sort -u)" = "$want" ] ||
			bad="the pipe ends the checkers read are coordinated by: $tally (user.ipcd.coord), not all by $want"
	fi
	if [ -z "$pipes" ]; then
		bad="${bad:+$bad; }the mount's status line has no pipes= field (status: $st1)"
	elif [ "$pipes" != "$want" ]; then
		bad="${bad:+$bad; }status says pipes=$pipes on a mount with -o coord=$c, not $want"
	else
		n0=$(count "served_$want" "$st0")
		n1=$(count "served_$want" "$st1")
		if [ -z "$(field "served_$want" "$st1")" ]; then
			bad="${bad:+$bad; }status has pipes=$want but no served_$want= count"
		elif [ "$((n1 - n0))" -lt 1 ]; then
			bad="${bad:+$bad; }served_$want did not grow ($n0 -> $n1)"
		fi
	fi
	if [ -z "$bad" ]; then
		echo "ok - coordination [$c]: pipes=$pipes, served_$want $n0 -> $n1; ends read: $tally"
	else
		echo "not ok - coordination [$c]: $bad"
		FAILED=$((FAILED + 1))
	fi
}

unmount_ipcd() {
	kill_ours
	kill -0 "$DAEMON_PID" 2>/dev/null || {
		echo "not ok - the daemon of coord=$MODE died: $(tail -5 "$TMPD/daemon.log")"
		FAILED=$((FAILED + 1))
	}
	fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	kill "$DAEMON_PID" 2>/dev/null
	wait "$DAEMON_PID" 2>/dev/null
	rmdir "$MNT" 2>/dev/null
	MNT=''
	DAEMON_PID=''
}

START=$SECONDS
echo "# kernel pipes: the reference"
for c in $CASES; do one "$c"; done
for design in lock queues shared; do
	echo "# -o coord=$design"
	mount_ipcd -o "coord=$design"
	shim_env
	case $(status) in
	*fastpath=on*) ;;
	*) skip "the mount serves no fast path (the shim needs it): $(status)" ;;
	esac
	MODE=$design
	PROBED=''
	HUNG=''
	ST0=$(status)
	for c in $CASES; do one "$c"; done
	coordination "$design" "$ST0"
	unmount_ipcd
	MODE=kernel
done
echo "# $((SECONDS - START)) s; $FAILED check(s) failed"
[ "$FAILED" -eq 0 ] || exit 1
exit 0
