#!/bin/bash
# real_run.sh - `make bench-real`: real programs with and without the shim,
# in one session.  It mounts a fresh ipcd on a temporary directory, makes
# scratch data there (a git repository, a tree of small files, a Makefile,
# bulk files), then runs each case without the shim and with it
# (LD_PRELOAD=the shim, IPCD_MOUNT=the mount), alternating in pairs whose
# order is swapped each time (ABBA...).  Each case starts with warm-up runs,
# one without the shim, which gives the reference output and a time limit,
# and REAL_LEARN with it; then come the timed pairs.  For every run it records the wall time, the exit status,
# the sha256 of the standard output (and of a check run afterwards without
# the shim, e.g. that two trees are equal) and the growth of the mount's
# served, bytes and slow_bytes counters.  An output that differs from the
# reference is WRONG and is reported apart from speed; a run that fails or
# times out is reported as such; both are left out of the ratios.
# `life -R` prints the table: median wall times, the median shim/kernel
# ratio of the pairs and its spread, and each target met or not.
#
# Run from the build directory (make does).  Environment:
#   QUICK=1       2 pairs a case, for development
#   REAL_PAIRS    timed pairs a case (default 7; QUICK 2)
#   REAL_BUDGET   seconds a case may spend on its pairs before stopping
#                 early (default 45; at least 2 pairs are run)
#   REAL_LIMIT    the most seconds one run may take (default 120); a run's
#                 limit is 40 times its case's kernel warm-up plus 15 s
#   REAL_CASES    cases to run, blank-separated (default all)
#   REAL_LEARN    the shim's warm-up runs a case (default 4: what the shim
#                 learns settles first); 1 measures from a fresh page
#   REAL_FLOOR    1 (default): each round also runs the case preloading
#                 FLOOR, a library with nothing in it, so that the table
#                 shows what loading any library costs; 0: pairs only
#   IPCD, SHIM, LIFE, FLOOR  paths (defaults ./ipcd, ./.libs/libipcd-shim.so,
#                 ./bench/life, ./bench/floor.so); IPCD_CPUS pins the daemon
#                 (taskset list); IPCD_OPTS gives it -o options (coord=shared:
#                 the shim's pipes are shared rings)
# Programs: bash, coreutils, git, rsync, make, findutils (xargs), python3,
# node (optional), tar, gzip, grep, mawk or gawk.  A case whose program is
# missing is skipped with the reason.
#
# The cases' commands are single-quoted on purpose: bash -c expands them.
set -u

me="bench-real"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/mount.sh"

LIFE=${LIFE:-./bench/life}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	REAL_PAIRS=${REAL_PAIRS:-2}
else
	REAL_PAIRS=${REAL_PAIRS:-7}
fi
REAL_BUDGET=${REAL_BUDGET:-45}
REAL_LEARN=${REAL_LEARN:-4}
REAL_LIMIT=${REAL_LIMIT:-120}
REAL_CASES=${REAL_CASES:-}
REAL_FLOOR=${REAL_FLOOR:-1}
FLOOR=${FLOOR:-./bench/floor.so}
MIN_PAIRS=2

[ -x "$LIFE" ] || die "no table printer at $LIFE (make bench/life, or set LIFE)"
case $LIFE in /*) ;; *) LIFE=$(pwd)/$LIFE ;; esac
if [ "$REAL_FLOOR" = 1 ]; then
	[ -f "$FLOOR" ] || die "no floor library at $FLOOR (make bench/floor.so, set FLOOR, or REAL_FLOOR=0)"
	case $FLOOR in /*) ;; *) FLOOR=$(pwd)/$FLOOR ;; esac
fi
# One locale for every run: sort's order and speed depend on it.
export LC_ALL=C

mount_fresh ipcd-real
print_env "$here/.."
res=$tmp/real.res
notes=$tmp/notes
data=$tmp/data
: >"$res"
: >"$notes"
mkdir "$data" || die "cannot make $data"

# ---- scratch data, made without the shim ------------------------------------

setup_started=$EPOCHREALTIME
have() { command -v "$1" >/dev/null 2>&1; }
# need PROGRAM: have it; python3 and node are looked up below, by full path.
need() {
	case $1 in
	python3) [ -n "$PY" ] ;;
	node) [ -n "$NODE" ] ;;
	*) have "$1" ;;
	esac
}

# A git repository of 300 commits over 40 files.
make_repo() {
	git init -q "$data/repo" &&
	(
		cd "$data/repo" &&
		for i in $(seq 300); do
			printf 'commit refs/heads/main\n'
			printf 'committer bench <bench@ipcd> %d +0000\n' $((1700000000 + i))
			printf 'data <<E\nchange %d\nE\n' "$i"
			printf 'M 644 inline f%02d.txt\ndata <<E\n' $((i % 40))
			seq "$i" $((i + 60))
			printf 'E\n\n'
		done | git fast-import --quiet &&
		git symbolic-ref HEAD refs/heads/main &&
		git checkout -q -f main &&
		git config gc.auto 0 &&
		git config user.name bench && git config user.email bench@ipcd
	)
}

# 3000 small files in 30 directories.
make_tree() {
	local d f pad
	for d in $(seq -w 30); do
		mkdir -p "$data/tree/d$d" || return 1
		for f in $(seq -w 100); do
			printf -v pad '%0*d' $((10#$f * 7)) 0
			printf 'file %s/%s\n%s\n' "$d" "$f" "$pad" >"$data/tree/d$d/f$f" || return 1
		done
	done
}

# 16 files of about 2.7 MB that gzip -1 compresses to about three quarters.
make_bulk() {
	local i
	mkdir -p "$data/bulk" || return 1
	for i in $(seq -w 16); do
		head -c 2000000 /dev/urandom | base64 >"$data/bulk/b$i" || return 1
	done
}

# 200 targets, each a short pipeline writing its own file; all prints them
# in order, so the output is the same whatever order -j2 ran them in.
make_makefile() {
	local i
	mkdir -p "$data/mk" || return 1
	{
		printf 'T :='
		for i in $(seq 200); do printf ' out/t%d' "$i"; done
		printf '\nall: $(T)\n\t@cat $(T) | sha256sum\n'
		printf 'out/t%%:\n\t@echo $* | tr 0-9 a-j | wc -c > $@\n'
	} >"$data/mk/Makefile"
}

make_py() {
	cat >"$data/subproc.py" <<'EOF'
import subprocess
n = 0
for i in range(200):
    r = subprocess.run(['cat'], input=b'x', capture_output=True)
    n += len(r.stdout) if r.returncode == 0 and r.stdout == b'x' else 1000
print(n)
EOF
	cat >"$data/mpspawn.py" <<'EOF'
import multiprocessing as mp

def work(q, i):
    q.put(i * i)

if __name__ == '__main__':
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    ps = [ctx.Process(target=work, args=(q, i)) for i in range(20)]
    for p in ps:
        p.start()
    total = sum(q.get() for p in ps)
    for p in ps:
        p.join()
    print(total, [p.exitcode for p in ps].count(0))
EOF
	cat >"$data/spawnsync.js" <<'EOF'
const cp = require('child_process');
let n = 0;
for (let i = 0; i < 200; i++) {
  const r = cp.spawnSync('cat', { input: 'x' });
  n += r.status === 0 && String(r.stdout) === 'x' ? 1 : 1000;
}
console.log(n);
EOF
}

echo
printf 'scratch data in %s: ' "$data"
have git && { make_repo >/dev/null 2>&1 || die "cannot make the git repository"; }
make_tree || die "cannot make the tree of small files"
make_bulk || die "cannot make the bulk files"
make_makefile || die "cannot make the Makefile"
make_py || die "cannot write the scripts"
echo "$(find "$data" -type f | wc -l) files, $(du -sm "$data" | cut -f1) MB," \
	"$(((${EPOCHREALTIME/[.,]/} - ${setup_started/[.,]/}) / 1000)) ms"

# The interpreters by full path: a version manager's wrapper on PATH would
# add its own processes to every run.
PY=
for p in /usr/bin/python3 "$(command -v python3 2>/dev/null)"; do
	[ -n "$p" ] && [ -x "$p" ] && { PY=$p; break; }
done
NODE=$(command -v node 2>/dev/null || command -v nodejs 2>/dev/null || true)

# ---- the cases -----------------------------------------------------------------

# rcase NAME OP VALUE DESCRIPTION CMD [PREP [CHECK [NEEDS]]]
# OP VALUE: the target for the median shim/kernel ratio (le: at most; lt:
# below; info: none).  CMD runs as `bash -c CMD` in $data, with or without
# the shim, and is timed; PREP runs before each run and CHECK after it, both
# without the shim and untimed; CHECK's output is compared with CMD's.
# NEEDS: programs that must exist, else the case is skipped.
cases=()
declare -A c_op c_val c_desc c_cmd c_prep c_check c_needs
rcase() {
	cases+=("$1")
	c_op[$1]=$2 c_val[$1]=$3 c_desc[$1]=$4 c_cmd[$1]=$5
	c_prep[$1]=${6:-} c_check[$1]=${7:-} c_needs[$1]=${8:-}
}

rcase startup info 0 "bash -c true: starting a process with the shim loaded (a fixed part of every case)" \
	'true'
rcase bash_loop le 1 "300 short pipelines in a bash loop" \
	'for i in $(seq 300); do echo $i | tr 0-9 a-j | wc -c; done'
rcase git_log le 1 "git log -p | wc -c, 300 commits" \
	'git -C repo log -p | wc -c' '' '' git
rcase git_status le 1 "git status" \
	'git -C repo status' '' '' git
# A run stopped by its time limit may leave lock and temporary files behind.
git_unlock='rm -f repo/.git/*.lock repo/.git/refs/heads/*.lock repo/.git/objects/pack/.tmp-* repo/.git/objects/pack/tmp_*'
rcase git_repack le 1 "git repack -a -d (runs pack-objects on pipes)" \
	'git -C repo repack -a -d -q' "$git_unlock" 'git -C repo count-objects -v | grep -E "^(count|in-pack|packs):"' git
rcase git_gc le 1 "git gc (pack-refs, reflog, repack, prune...)" \
	'git -C repo gc -q' "$git_unlock" 'git -C repo count-objects -v | grep -E "^(count|in-pack|packs):"' git
rcase git_clone le 1 "git clone file:// (fetch-pack and upload-pack over pipes)" \
	'git clone -q "file://$PWD/repo" clone && git -C clone log --oneline | wc -l' \
	"rm -rf clone; $git_unlock" 'git -C clone fsck --no-progress 2>&1 | head -5; git -C clone rev-parse HEAD' git
rcase rsync le 1 "rsync -a of 3000 small files to a new directory" \
	'rsync -a tree/ copy/' 'rm -rf copy' \
	'diff -r tree copy && (cd copy && find . -printf "%P %m %s %T@\n" | sort | sha256sum) && echo trees equal' \
	rsync
rcase make_j2 le 1 "make -j2, 200 targets each a short pipeline" \
	'make -s -j2 -C mk' 'rm -rf mk/out && mkdir mk/out' '' make
rcase xargs_p2 le 1 "xargs -P2 over 500 jobs, each a short pipeline" \
	"seq 500 | xargs -P2 -n1 sh -c 'echo \$0 | tr 0-9 a-j | wc -c' | sort | uniq -c" '' '' xargs
rcase py_subproc info 0 "python3: 200 subprocess.run(['cat'], input=b'x', capture_output=True)" \
	"$PY subproc.py" '' '' python3
rcase py_mpspawn info 0 "python3 multiprocessing, spawn: 20 processes started, a Queue, joined" \
	"$PY mpspawn.py" '' '' python3
rcase node_spawn info 0 "node: 200 child_process.spawnSync('cat', {input: 'x'})" \
	"$NODE spawnsync.js" '' '' node
rcase seq_wc le 1 "seq 1 3000000 | wc -l" \
	'seq 1 3000000 | wc -l'
rcase sort_uniq le 1 "seq 1 300000 | sort | uniq -c | wc -l" \
	'seq 1 300000 | sort | uniq -c | wc -l'
rcase grep le 1 "seq 1 3000000 | grep -c 7" \
	'seq 1 3000000 | grep -c 7' '' '' grep
rcase awk le 1 "seq 1 3000000 | awk '{s+=\$1} END {print s}'" \
	"seq 1 3000000 | awk '{s+=\$1} END {print s}'" '' '' awk
rcase yes_head lt 1 "yes | head -c 100M | wc -c" \
	'yes | head -c 100M | wc -c'
rcase tar_gzip lt 1 "tar c bulk | gzip -1 | wc -c (43 MB of base64)" \
	'tar c bulk | gzip -1 | wc -c' '' '' 'tar gzip'
rcase dd_cat lt 1 "dd if=/dev/zero bs=1M count=200 | cat | cat | wc -c" \
	'dd if=/dev/zero bs=1M count=200 status=none | cat | cat | wc -c'

if [ -n "$REAL_CASES" ]; then
	for c in $REAL_CASES; do
		[ -n "${c_op[$c]+x}" ] || die "no case $c (cases: ${cases[*]})"
	done
	read -r -a cases <<<"$REAL_CASES"
fi

# ---- running -----------------------------------------------------------------------

# note TEXT: for the list printed before the table (the progress line
# shows only the run's status).
note() {
	echo "$*" >>"$notes"
}

# cpu_snap FILE: the CPU time so far of everything this shell has waited
# for (times, which must run in this shell, not in a subshell) and of the
# daemon's threads (schedstat, in ns), into FILE; no process is started, so
# nothing of the snapshot's own counts.
cpu_snap() {
	local f ns d=0
	times >"$1"
	for f in /proc/"$daemon"/task/*/schedstat; do
		read -r ns _ 2>/dev/null <"$f" && d=$((d + ns))
	done
	echo "daemon $d" >>"$1"
}

# cpu_ms BEFORE AFTER: the CPU time between two snapshots, in ms.
cpu_ms() {
	awk 'function s(t,  m) { m = t; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", t); sub(/s$/, "", t)
		return m * 60000 + t * 1000 }
	FNR == 2 { c[FILENAME == ARGV[1]] = s($1) + s($2) }
	/^daemon/ { d[FILENAME == ARGV[1]] = $2 / 1e6 }
	END { printf "%.3f", c[0] - c[1] + d[0] - d[1] }' "$1" "$2"
}

# run_one NAME MODE ROUND LIMIT: one run; appends its record to $res and
# sets run_st (ok, wrong, failed, timeout, inactive), run_ms, and run_cpu:
# the CPU time of the program's processes and of the daemon, in ms.
run_one() {
	local name=$1 mode=$2 round=$3 limit=$4 t0 t1 rc h c0 b0 s0 c1 b1 s1
	local out=$tmp/out.$mode err=$tmp/err.$mode
	if [ -n "${c_prep[$name]}" ]; then
		bash -c "${c_prep[$name]}" >/dev/null 2>&1
	fi
	read -r c0 b0 s0 <<<"$(counters)"
	cpu_snap "$tmp/cpu.0"
	t0=${EPOCHREALTIME/[.,]/}
	if [ "$mode" = shim ]; then
		timeout -k 5 "$limit" env LD_PRELOAD="$SHIM" IPCD_MOUNT="$mnt" \
			bash -c "${c_cmd[$name]}" >"$out" 2>"$err" </dev/null &
	elif [ "$mode" = floor ]; then
		timeout -k 5 "$limit" env LD_PRELOAD="$FLOOR" IPCD_SHIM=off \
			bash -c "${c_cmd[$name]}" >"$out" 2>"$err" </dev/null &
	else
		timeout -k 5 "$limit" env -u LD_PRELOAD IPCD_SHIM=off \
			bash -c "${c_cmd[$name]}" >"$out" 2>"$err" </dev/null &
	fi
	bench=$!
	wait "$bench"
	rc=$?
	bench=
	t1=${EPOCHREALTIME/[.,]/}
	cpu_snap "$tmp/cpu.1"
	read -r c1 b1 s1 <<<"$(counters)"
	run_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1000 }')
	run_cpu=$(cpu_ms "$tmp/cpu.0" "$tmp/cpu.1")
	if [ -n "${c_check[$name]}" ]; then
		{ echo "--- check"; bash -c "${c_check[$name]}" 2>&1; } >>"$out"
	fi
	h=$(sha256sum <"$out" | cut -c1-64)
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		run_st=timeout
		note "$name $mode round $round: TIMEOUT after $limit s"
	elif [ $rc -ne 0 ]; then
		run_st=failed
		note "$name $mode round $round: FAILED, exit status $rc: $(head -c 300 "$err" | tr '\n' ' ')"
	elif [ -n "$ref_hash" ] && [ "$h" != "$ref_hash" ]; then
		run_st=wrong
		note "$name $mode round $round: WRONG output (sha256 ${h:0:12}, reference ${ref_hash:0:12}); first differences:"
		diff "$tmp/ref.out" "$out" 2>&1 | head -6 | sed 's/^/    /' >>"$notes"
	else
		run_st=ok
	fi
	# Without the shim nothing may make channels; with it, say so when none was made.
	if [ "$c0" != -1 ] && [ "$c1" != -1 ]; then
		if [ "$mode" != shim ] && [ "$c1" -gt "$c0" ]; then
			run_st=inactive
			note "$name $mode round $round: the served counter grew without the shim"
		fi
		if [ "$mode" = shim ] && [ "$c1" -eq "$c0" ] && [ "$round" = 0 ] &&
			[ "$name" != startup ]; then
			note "$name: no channel served a pipe in this program (only the shim's loading is measured)"
		fi
	fi
	# Something on stderr with the shim that the kernel run did not print.
	if [ "$mode" = shim ] && [ "$run_st" = ok ] && [ -s "$err" ] &&
		! cmp -s "$err" "$tmp/ref.err" && [ -z "${stderr_noted[$name]:-}" ]; then
		stderr_noted[$name]=1
		note "$name shim round $round: stderr differs from the kernel run's: $(head -c 300 "$err" | tr '\n' ' ')"
	fi
	echo "run $name $mode $round $run_ms -1 -1 1 $((c1 - c0)) $((b1 - b0)) $((s1 - s0)) $run_st $run_cpu" >>"$res"
}

# The last run's status for the progress line, when it is not ok.
flag() {
	[ "$run_st" = ok ] || printf '(%s)' "${run_st^^}"
}

declare -A stderr_noted
started=${EPOCHREALTIME/[.,]/}
cd "$data" || die "cannot enter $data"
if [ "$REAL_FLOOR" = 1 ]; then
	echo "run times: k kernel, s shim, f floor (an empty library preloaded), in ms"
else
	echo "run times: k kernel, s shim, in ms"
fi
for name in "${cases[@]}"; do
	echo "case ${name} ms ${c_op[$name]} ${c_val[$name]} ${c_desc[$name]}" >>"$res"
	missing=
	for p in ${c_needs[$name]}; do
		need "$p" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		note "$name: SKIPPED, not installed:$missing"
		continue
	fi
	case_start=${EPOCHREALTIME/[.,]/}
	printf '%-11s' "$name:"
	# Warm-up, one run each way: the kernel one gives the reference output
	# and the time limit.
	ref_hash=
	run_one "$name" kernel 0 "$REAL_LIMIT"
	if [ "$run_st" != ok ]; then
		note "$name: SKIPPED, its kernel warm-up run did not succeed ($run_st)"
		echo " kernel warm-up $run_st, skipped"
		continue
	fi
	cp "$tmp/out.kernel" "$tmp/ref.out"
	cp "$tmp/err.kernel" "$tmp/ref.err"
	ref_hash=$(sha256sum <"$tmp/ref.out" | cut -c1-64)
	limit=$(awk -v ms="$run_ms" -v cap="$REAL_LIMIT" \
		'BEGIN { l = int(ms * 40 / 1000) + 15; print (l > cap ? cap : l) }')
	printf ' warm-up k%.0f' "$run_ms"
	# The shim's warm-ups: what it learns of the case's pipes and
	# programs settles in the session's page of counts, as for a program
	# a user runs again (REAL_LEARN=1: from a fresh page).
	w=1
	while [ "$w" -le "$REAL_LEARN" ]; do
		run_one "$name" shim 0 "$limit"
		printf ' s%.0f%s' "$run_ms" "$(flag)"
		[ "$run_st" = timeout ] && break
		w=$((w + 1))
	done
	printf ' ms, pairs:'
	if [ "$run_st" = timeout ]; then
		echo "; the shim's warm-up timed out: no timed runs"
		continue
	fi
	r=1
	while [ "$r" -le "$REAL_PAIRS" ]; do
		# Each mode takes each place in turn: ABBA for a pair, a
		# rotation with the floor.
		if [ "$REAL_FLOOR" = 1 ]; then
			case $((r % 3)) in
			1) order="kernel shim floor" ;;
			2) order="shim floor kernel" ;;
			0) order="floor kernel shim" ;;
			esac
		elif [ $((r % 2)) = 1 ]; then
			order="kernel shim"
		else
			order="shim kernel"
		fi
		hung=
		for mode in $order; do
			run_one "$name" "$mode" "$r" "$limit"
			printf ' %s%.0f%s' "${mode:0:1}" "$run_ms" "$(flag)"
			[ "$run_st" = timeout ] && hung=1
		done
		if [ -n "$hung" ]; then
			printf ' (a run timed out: stopping this case)'
			break
		fi
		spent=$(((${EPOCHREALTIME/[.,]/} - case_start) / 1000000))
		if [ "$r" -ge "$MIN_PAIRS" ] && [ "$spent" -ge "$REAL_BUDGET" ] && [ "$r" -lt "$REAL_PAIRS" ]; then
			printf ' (budget of %s s spent after %d pairs)' "$REAL_BUDGET" "$r"
			break
		fi
		r=$((r + 1))
	done
	echo " ($(((${EPOCHREALTIME/[.,]/} - case_start) / 1000000)) s)"
done
echo "all cases: $(((${EPOCHREALTIME/[.,]/} - started) / 1000000)) s"

echo
if [ -s "$notes" ]; then
	echo "problems and notes:"
	sed 's/^/  /' "$notes"
	echo
fi
echo "shim/kernel, wall time of whole programs, up to $REAL_PAIRS pairs a case, alternating"
"$LIFE" -R "$res"
