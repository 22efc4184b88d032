#!/bin/bash
# t_bulk.sh - a large transfer (1 GiB by default, BULK_BYTES overrides)
# through one channel on each path, checked by sha256:
#   slow -> slow (dd into the file, cat out of it), fast -> fast (C over
#   mmap on both ends), fast -> slow and slow -> fast.
. "$top_srcdir/tests/lib.sh"
mount_ipcd
BYTES=${BULK_BYTES:-1073741824}
want=$("$CHAN_TOOL" gen "$BYTES" 7 | sha256sum | cut -d' ' -f1)

# transfer NAME WRITER READER: WRITER/READER are "fast" or "slow".
transfer() {
	c=$MNT/$1
	"$CHAN_TOOL" mkchan "$c" || fail "mkchan $c"
	if [ "$3" = fast ]; then
		timeout 300 "$CHAN_TOOL" recv "$c" 1048576 | sha256sum > "$TMPD/sum" &
	else
		timeout 300 dd if="$c" bs=1M status=none | sha256sum > "$TMPD/sum" &
	fi
	rd=$!
	wait_for 100 readers_at_least "$c" 1 || fail "$1: reader did not open"
	if [ "$2" = fast ]; then
		"$CHAN_TOOL" gen "$BYTES" 7 |
			timeout 300 "$CHAN_TOOL" send "$c" 1048576 || fail "$1: send"
	else
		"$CHAN_TOOL" gen "$BYTES" 7 |
			timeout 300 dd of="$c" bs=1M iflag=fullblock status=none ||
			fail "$1: dd"
	fi
	wait "$rd" || fail "$1: reader"
	[ "$(cut -d' ' -f1 "$TMPD/sum")" = "$want" ] || fail "$1: sha256 differs"
	# (Queues count their records' headers, one shared ring whole cells.)
	w=$(info_field "$c" written)
	[ "$w" = "$BYTES" ] || { [ "$COORD" != lock ] && [ "$w" -gt "$BYTES" ]; } ||
		fail "$1: ring counted $w"
	rm -f "$c"
	pass "$1: $BYTES bytes, sha256 matches"
}
transfer slow-slow slow slow
transfer fast-fast fast fast
transfer fast-slow fast slow
transfer slow-fast slow fast
exit 0
