#!/bin/sh
# life_run.sh - `make bench-life`: what a channel costs over its whole life
# (made, forked, exec'd, closed), with and without the shim, in one session.
# It mounts a fresh ipcd on a temporary directory, then runs every case of
# bench/life in rounds: in each round one process without the shim and one
# with it, back to back, the order swapped every round (ABBA...), so that a
# drift of the shared VM hits both alike.  Each pair gives a ratio
# shim/kernel; `life -R` prints their median and spread per case and whether
# the target is met.  Every process runs under timeout; a run that fails,
# hangs, or did not get what its mode promises (channels with the shim,
# kernel pipes without) is reported and left out of the ratios.  The EXIT
# trap always unmounts.
#
# Run from the build directory (make does).  Environment:
#   QUICK=1        2 rounds of short runs, for development
#   LIFE_ROUNDS    rounds (default 10; QUICK 2)
#   LIFE_CASES     cases to run, blank-separated (default all; see life -L)
#   LIFE_ARGS      extra options for every life run, e.g. "-b 0.3"
#   LIFE_LIMIT     seconds a life process may take (default 60)
#   LIFE_VERBOSE=1 print every run's line as it ends
#   IPCD, SHIM, LIFE  paths (defaults ./ipcd, ./.libs/libipcd-shim.so,
#                  ./bench/life); IPCD_CPUS pins the daemon (taskset list)
#   IPCD_SHIM_LEARN  default off here: each case makes its pipes in one
#                  place, so the shim would soon leave them to the kernel
#                  (ipcd-shim(7), "Pipes that carry little"), and these
#                  cases measure what a channel costs; the *_def cases
#                  run with the shim's default (learning on), as users do,
#                  and bench-real measures programs so
set -u
export IPCD_SHIM_LEARN=${IPCD_SHIM_LEARN:-off}

me="bench-life"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/mount.sh"

LIFE=${LIFE:-./bench/life}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	LIFE_ROUNDS=${LIFE_ROUNDS:-2}
	quick_args="-b 0.15"
else
	LIFE_ROUNDS=${LIFE_ROUNDS:-10}
	quick_args=
fi
LIFE_CASES=${LIFE_CASES:-}
LIFE_ARGS=${LIFE_ARGS:-}
LIFE_LIMIT=${LIFE_LIMIT:-60}
LIFE_VERBOSE=${LIFE_VERBOSE:-0}

[ -x "$LIFE" ] || die "no benchmark at $LIFE (make bench/life, or set LIFE)"
case $LIFE in /*) ;; *) LIFE=$(pwd)/$LIFE ;; esac

mount_fresh ipcd-life
print_env "$here/.."
res=$tmp/life.res
runlog=$tmp/life.log
: >"$runlog"

# The cases and their targets, as records of the result file.
"$LIFE" -L >"$tmp/cases" || die "life -L failed"
if [ -z "$LIFE_CASES" ]; then
	LIFE_CASES=$(awk '{ print $2 }' "$tmp/cases")
fi
: >"$res"
for c in $LIFE_CASES; do
	grep -q "^case $c " "$tmp/cases" || die "no case $c (life -L lists them)"
	grep "^case $c " "$tmp/cases" >>"$res"
done

# one CASE MODE ROUND: one life process; MODE kernel or shim.  The control
# case runs both sides without the shim.
one() {
	o_c=$1 o_mode=$2 o_r=$3
	before=$(wc -l <"$res")
	if [ "$o_mode" = shim ] && [ "${o_c%_def}" != "$o_c" ]; then
		# The shim's default: what it learnt in the runs before (the
		# session's page of counts) decides what each pipe is.
		timeout -k 5 "$LIFE_LIMIT" env LD_PRELOAD="$SHIM" IPCD_MOUNT="$mnt" \
			IPCD_SHIM_LEARN=on \
			"$LIFE" -c "$o_c" -m "$mnt" -e shim -l shim -r "$o_r" -o "$res" \
			$quick_args $LIFE_ARGS >"$tmp/one.out" 2>&1 </dev/null &
	elif [ "$o_mode" = shim ] && [ "$o_c" != fork1_aa ]; then
		timeout -k 5 "$LIFE_LIMIT" env LD_PRELOAD="$SHIM" IPCD_MOUNT="$mnt" \
			"$LIFE" -c "$o_c" -m "$mnt" -e ipcd -l shim -r "$o_r" -o "$res" \
			$quick_args $LIFE_ARGS >"$tmp/one.out" 2>&1 </dev/null &
	else
		timeout -k 5 "$LIFE_LIMIT" env -u LD_PRELOAD IPCD_SHIM=off \
			"$LIFE" -c "$o_c" -m "$mnt" -e kernel -l "$o_mode" -r "$o_r" -o "$res" \
			$quick_args $LIFE_ARGS >"$tmp/one.out" 2>&1 </dev/null &
	fi
	bench=$!
	wait "$bench"
	rc=$?
	bench=
	cat "$tmp/one.out" >>"$runlog"
	[ "$LIFE_VERBOSE" = 1 ] && cat "$tmp/one.out"
	if [ "$(wc -l <"$res")" = "$before" ]; then
		# life wrote nothing: it hung, crashed or was killed.
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			st=timeout why="no result after $LIFE_LIMIT s (hang?)"
		else
			st=failed why="life exited with status $rc and no result"
		fi
		echo "run $o_c $o_mode $o_r -1 -1 -1 0 -1 -1 -1 $st" >>"$res"
		echo "note $o_c $o_mode $o_r $why" >>"$res"
	fi
	# Not ok: say so on the progress line; the reasons come before the table.
	o_st=$(tail -n 2 "$res" | awk '$1 == "run" { st = $NF } END { print st }')
	[ "$o_st" = ok ] || printf '(%s %s)' "$o_mode" "$o_st"
}

# Is the shim really there?  One short run must get channels.
printf '%s' "probe: "
timeout -k 5 30 env LD_PRELOAD="$SHIM" IPCD_MOUNT="$mnt" "$LIFE" -c pipe_close -n 5 -w 0 \
	-m "$mnt" -e ipcd -l shim </dev/null 2>&1 | sed 's/^life: //'
echo

started=$(date +%s)
r=1
while [ "$r" -le "$LIFE_ROUNDS" ]; do
	printf 'round %d/%d:' "$r" "$LIFE_ROUNDS"
	for c in $LIFE_CASES; do
		printf ' %s' "$c"
		if [ $((r % 2)) = 1 ]; then
			one "$c" kernel "$r"
			one "$c" shim "$r"
		else
			one "$c" shim "$r"
			one "$c" kernel "$r"
		fi
	done
	echo " ($(($(date +%s) - started)) s)"
	r=$((r + 1))
done

echo
if grep -q '^note ' "$res"; then
	echo "problems (each such run is left out of the ratios):"
	# Same problem in several rounds: one line, with its count.
	grep '^note ' "$res" | sed 's/^note \([^ ]*\) \([^ ]*\) [0-9]* /\1 \2: /' |
		sort | uniq -c | sort -rn | head -40
	echo
fi
echo "shim/kernel; rounds: $LIFE_ROUNDS, a kernel and a shim run in each, their order alternating"
"$LIFE" -R "$res"
