#!/bin/bash
# t_manlint.sh - every manual page in man/ is clean:
#   - `mandoc -T lint -W warning` reports nothing for it (MANDOC names the
#     mandoc program; without it the test is skipped, exit 77);
#   - `man --warnings -l` renders it with nothing on standard error, when a
#     man that has --warnings is installed (else that part alone is skipped,
#     with a message);
#   - a page that is a `.so` redirect names a page that exists: it is checked
#     from a man1..man9 tree such as `make install` builds, where `.so
#     man3/ipcd_open.3` resolves; the one warning mandoc always gives for
#     `.so` ("better use ln(1)") is the only message allowed for it.
# Any other message fails the test (exit 1), and every message is printed.
# Run from the build directory by `make check`, with top_srcdir set.
set -u
export LC_ALL=C

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
MANDIR=$(cd "$top_srcdir/man" 2>/dev/null && pwd) || {
	echo "FAIL: no man directory at $top_srcdir/man"
	exit 1
}

if [ -z "${MANDOC:-}" ]; then
	echo "SKIP: MANDOC is not set (configure found no mandoc): pages not linted"
	exit 77
fi
if ! command -v "$MANDOC" >/dev/null 2>&1; then
	echo "SKIP: MANDOC=$MANDOC is not a program here: pages not linted"
	exit 77
fi

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ipcd-manlint.XXXXXX") || exit 1
trap 'rm -rf "$TMPD"' EXIT

# The pages, in a tree laid out by section, as installed.
pages=()
for f in "$MANDIR"/*.[1-9]; do
	[ -f "$f" ] || continue
	name=${f##*/}
	sec=${name##*.}
	mkdir -p "$TMPD/man$sec"
	ln -s "$f" "$TMPD/man$sec/$name"
	pages+=("man$sec/$name")
done
if [ ${#pages[@]} -eq 0 ]; then
	echo "FAIL: no manual pages in $MANDIR"
	exit 1
fi

# is_so PAGE: the page is one `.so` request and nothing else.
is_so() {
	[ "$(grep -cv '^[[:space:]]*$' "$TMPD/$1")" -eq 1 ] &&
		grep -q '^\.so[[:space:]]' "$TMPD/$1"
}

failures=0
report() {	# report PAGE TOOL OUTPUT
	echo "FAIL: $1: $2:"
	printf '%s\n' "$3" | sed 's/^/    /'
	failures=$((failures + 1))
}

# --- mandoc --------------------------------------------------------------
for p in "${pages[@]}"; do
	out=$(cd "$TMPD" && "$MANDOC" -T lint -W warning "$p" 2>&1)
	st=$?
	if is_so "$p"; then
		target=$(sed -n 's/^\.so[[:space:]]*//p' "$TMPD/$p")
		[ -f "$TMPD/$target" ] ||
			out="${out:+$out
}its .so target $target is not among the pages"
		out=$(printf '%s\n' "$out" |
			grep -v ': WARNING: \.so is fragile, better use ln(1)')
		# mandoc exits 2 for warnings, higher for errors.
		[ $st -le 2 ] || [ -n "$out" ] || out="(exit status $st, no message)"
	elif [ $st -ne 0 ] && [ -z "$out" ]; then
		out="(exit status $st, no message)"
	fi
	if [ -n "$out" ]; then
		report "$p" "mandoc -T lint -W warning" "$out"
	else
		echo "ok - mandoc: $p"
	fi
done

# --- man -----------------------------------------------------------------
if ! command -v man >/dev/null 2>&1; then
	echo "SKIP (part): man is not installed: pages not rendered with --warnings"
elif ! man --help 2>&1 | grep -q -- '--warnings'; then
	echo "SKIP (part): this man has no --warnings option: pages not rendered"
else
	for p in "${pages[@]}"; do
		err=$(cd "$TMPD" && MANWIDTH=80 MANPAGER=cat PAGER=cat \
			man --warnings -l "$p" 2>&1 >/dev/null)
		st=$?
		[ $st -eq 0 ] || err="${err:+$err
}(exit status $st)"
		if [ -n "$err" ]; then
			report "$p" "man --warnings -l" "$err"
		else
			echo "ok - man: $p"
		fi
	done
fi

if [ $failures -ne 0 ]; then
	echo "FAIL: $failures problem(s) in the manual pages"
	exit 1
fi
echo "ok - ${#pages[@]} pages are clean"
exit 0
