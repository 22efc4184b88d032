#!/bin/bash
# t_namespace.sh - the ipcd namespace through the kernel (run as root; the
# mount uses -o ring_size=16k so that thousands of channels fit any machine):
#   - mkdir/rmdir, nested; rmdir of a non-empty dir is ENOTEMPTY, rmdir of a
#     channel ENOTDIR, unlink of a dir EISDIR; directory link counts;
#   - channels made by `: > f` and touch (open O_CREAT); mknod p and mkfifo
#     are refused (EPERM) without leaving a name;
#     mknod of a char device is EPERM; EEXIST on a duplicate name; a name of
#     255 bytes works and one of 256 is ENAMETOOLONG; unlink;
#   - rename: a file, over an existing file (whose channel is freed), a
#     directory to another parent (link counts follow), a directory over an
#     empty one, over a non-empty one (ENOTEMPTY); RENAME_NOREPLACE (mv -n,
#     seen through strace) and RENAME_EXCHANGE (mv --exchange), each skipped
#     with a message where the tools cannot show it;
#   - chmod, chown and touch -d, checked with stat;
#   - readdir of 3000 channels: complete, no duplicates, and rm of them all;
#   - statfs: stat -f inodes (channels) and blocks (ring memory) used and
#     free follow creation and removal;
#   - a channel is a regular file of size 0 (a stream: programs that go by
#     a regular file's size read it to its end); its ring says what to map;
#   - a channel unlinked while open keeps working (write then read back on
#     the open fds), and its ring is freed at the last close, not before
#     (user.ipcd.status channels= and memory= on the mount root);
#   - xattrs: user.ipcd.kind get/set of every kind, user.ipcd.capacity set
#     (65536, 64k) and get, invalid values EINVAL, a change while the channel
#     is open EBUSY, user.ipcd.info fields, listxattr, an unknown user.*
#     attribute not supported;
#   - permissions under the default default_permissions,allow_other of a
#     root mount: nobody cannot open a root-owned 0600 channel but can open a
#     0666 one, can create its own in the sticky root, and cannot remove
#     root's (skipped with a message if we cannot run commands as nobody).
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
. "$top_srcdir/tests/lib.sh"
export LC_ALL=C

# errs DESCRIPTION MESSAGE CMD...: CMD fails, saying MESSAGE (strerror).
errs() {
	local d=$1 msg=$2 out
	shift 2
	if out=$(timeout 20 "$@" 2>&1); then
		echo "  unexpectedly succeeded: $*"
		bad "$d"
	elif grep -qF -- "$msg" <<<"$out"; then
		pass "$d"
	else
		echo "  wanted '$msg', got: $out"
		bad "$d"
	fi
}
ino() { stat -c %i "$1" 2>/dev/null; }
nlink() { stat -c %h "$1" 2>/dev/null; }
xget() { getfattr --only-values -n "$2" "$1" 2>/dev/null; }
status_field() {
	getfattr --only-values -n user.ipcd.status "$MNT" 2>/dev/null |
		tr ' ' '\n' | sed -n "s/^$1=//p"
}
nchannels() { status_field channels; }
mem_used() { status_field memory | cut -d/ -f1; }
channels_are() { [ "$(nchannels)" = "$1" ]; }
mem_is() { [ "$(mem_used)" = "$1" ]; }
field_is() { [ "$(info_field "$1" "$2")" = "$3" ]; }

command -v getfattr >/dev/null && command -v setfattr >/dev/null ||
	skip "getfattr/setfattr (the attr package) are not installed"
RING=16384
MAP=$((4096 + RING))
mount_ipcd -o ring_size=16k
# map_blocks FILE BYTES: the 512-byte blocks of FILE's mapping: BYTES as
# the lock's layout gives them; with another coordination its ring file's
# size (that layout is check_coord's and check_shared's to check).
map_blocks() {
	if [ "$COORD" = lock ]; then
		echo $(($2 / 512))
	else
		echo $(($(stat -c %s "$MNT/.rings/$(stat -c %i "$1")") / 512))
	fi
}
getfattr -n user.ipcd.status "$MNT" >/dev/null 2>&1 ||
	fail "no user.ipcd.status on the mount root"
M=$MNT

# ---- directories ------------------------------------------------------------
t "mkdir -p of nested directories" mkdir -p "$M/a/b/c"
t "nested directory exists" test -d "$M/a/b/c"
t "link count of a dir with one subdir is 3" eq "$(nlink "$M/a")" 3
t "link count of a leaf dir is 2" eq "$(nlink "$M/a/b/c")" 2
errs "mkdir of an existing name: EEXIST" "File exists" mkdir "$M/a"
errs "rmdir of a non-empty dir: ENOTEMPTY" "Directory not empty" rmdir "$M/a"
: > "$M/a/chan" || bad "create a/chan"
errs "rmdir of a channel: ENOTDIR" "Not a directory" rmdir "$M/a/chan"
errs "unlink(2) of a dir: EISDIR" "Is a directory" unlink "$M/a/b"
errs "mkdir under a channel: ENOTDIR" "Not a directory" mkdir "$M/a/chan/x"
t "unlink of a channel" unlink "$M/a/chan"
t "unlinked channel is gone" test ! -e "$M/a/chan"
t "rmdir of nested empty dirs, innermost first" rmdir "$M/a/b/c" "$M/a/b" "$M/a"
t "removed dirs are gone" test ! -e "$M/a"
t "root link count back to 2" eq "$(nlink "$M")" 2

# ---- making channels ---------------------------------------------------------
c0=$(nchannels)
: > "$M/f1" || bad ": > f1"
t "': > f' makes a channel, a regular file" eq "$(stat -c %F "$M/f1")" "regular empty file"
t "its st_size is 0" eq "$(stat -c %s "$M/f1")" 0
t "touch makes a channel" touch "$M/f2"
t "touched channel is a regular file" eq "$(stat -c %F "$M/f2" 2>&1)" "regular empty file"
t "status counts the new channels" eq "$(nchannels)" $((c0 + 2))
t "st_size of a touched channel is 0" eq "$(stat -c %s "$M/f2")" 0
t "capacity xattr of a new channel is ring_size" eq "$(xget "$M/f1" user.ipcd.capacity)" $RING
# A FIFO node would be a kernel pipe, not a channel: the daemon refuses it,
# and the refusal leaves no name behind.
errs "mknod NAME p: EPERM" "Operation not permitted" mknod "$M/p1" p
t "the refused mknod p left no name behind" test ! -e "$M/p1"
errs "mkfifo: EPERM" "Operation not permitted" mkfifo -m 640 "$M/p2"
t "the refused mkfifo left no name behind" test ! -e "$M/p2"
errs "mknod of a char device: EPERM" "Operation not permitted" mknod "$M/cdev" c 1 3
t "refused char device left no name" test ! -e "$M/cdev"
errs "mknod p over an existing name: EEXIST" "File exists" mknod "$M/f1" p
errs "mkfifo over an existing name: EEXIST" "File exists" mkfifo "$M/f1"
errs "mkdir over an existing channel: EEXIST" "File exists" mkdir "$M/f1"
n255=$(printf '%0255d' 0)
n256=$(printf '%0256d' 0)
t "a name of 255 bytes works" sh -c ': > "$1"' sh "$M/$n255"
t "the 255-byte name is listed" sh -c 'ls "$1" | grep -qx "$2"' sh "$M" "$n255"
errs "a channel name of 256 bytes: ENAMETOOLONG" "File name too long" \
	sh -c ': > "$1"' sh "$M/$n256"
errs "a dir name of 256 bytes: ENAMETOOLONG" "File name too long" mkdir "$M/$n256"
errs "rename to a 256-byte name: ENAMETOOLONG" "File name too long" mv -T "$M/$n255" "$M/$n256"
t "unlink of the 255-byte name" rm "$M/$n255"
c1=$(nchannels)
t "unlink" rm "$M/f2"
t "unlinked name is gone" test ! -e "$M/f2"
t "unlink of an unopened channel frees it at once" eq "$(nchannels)" $((c1 - 1))

# ---- rename -------------------------------------------------------------------
: > "$M/r1"
i1=$(ino "$M/r1")
t "rename a channel" mv "$M/r1" "$M/r2"
t "renamed: old name gone, new name has the inode" \
	sh -c '[ ! -e "$1" ] && [ "$(stat -c %i "$2")" = "$3" ]' sh "$M/r1" "$M/r2" "$i1"
: > "$M/r3"
c1=$(nchannels)
t "rename over an existing channel" mv -f "$M/r2" "$M/r3"
t "target now names the moved inode" eq "$(ino "$M/r3")" "$i1"
t "source name gone" test ! -e "$M/r2"
t "the replaced channel is freed" eq "$(nchannels)" $((c1 - 1))
mkdir -p "$M/p1/sub/deep" "$M/p2"
: > "$M/p1/sub/deep/x"
isub=$(ino "$M/p1/sub")
t "move a directory to another parent" mv "$M/p1/sub" "$M/p2/"
t "moved directory keeps inode and contents" \
	sh -c '[ "$(stat -c %i "$1")" = "$2" ] && [ -f "$1/deep/x" ]' sh "$M/p2/sub" "$isub"
t "old parent loses a link (2)" eq "$(nlink "$M/p1")" 2
t "new parent gains a link (3)" eq "$(nlink "$M/p2")" 3
mkdir "$M/p1/e1" "$M/p2/e2"
ie1=$(ino "$M/p1/e1")
t "rename a directory over an empty directory (mv -T)" mv -T "$M/p1/e1" "$M/p2/e2"
t "target dir now is the moved one" eq "$(ino "$M/p2/e2")" "$ie1"
t "links after dir-over-dir: old parent 2, new parent 4" \
	eq "$(nlink "$M/p1") $(nlink "$M/p2")" "2 4"
mkdir "$M/p1/n1"
errs "rename a directory over a non-empty one: ENOTEMPTY" "Directory not empty" \
	mv -T "$M/p1/n1" "$M/p2/sub"
t "failed rename left both in place" test -d "$M/p1/n1" -a -f "$M/p2/sub/deep/x"

: > "$M/nr1"
: > "$M/nr2"
inr1=$(ino "$M/nr1")
inr2=$(ino "$M/nr2")
if ! command -v strace >/dev/null; then
	echo "ok - # SKIP RENAME_NOREPLACE: no strace to show that mv -n uses renameat2"
elif timeout 20 strace -f -qq -e trace=renameat2 -o "$TMPD/nr.trace" \
	mv -n "$M/nr1" "$M/nr2" 2>"$TMPD/nr.err"
	! grep -q 'RENAME_NOREPLACE' "$TMPD/nr.trace" 2>/dev/null; then
	# (mv -n may report the skipped move with a non-zero exit: ignored.)
	echo "ok - # SKIP RENAME_NOREPLACE: mv -n here does not use renameat2" \
		"RENAME_NOREPLACE, or strace fails ($(head -c 200 "$TMPD/nr.err"))"
else
	t "RENAME_NOREPLACE onto an existing name: EEXIST" \
		grep -q 'RENAME_NOREPLACE) = -1 EEXIST' "$TMPD/nr.trace"
	t "RENAME_NOREPLACE failure changed nothing" \
		eq "$(ino "$M/nr1") $(ino "$M/nr2")" "$inr1 $inr2"
	timeout 20 strace -f -qq -e trace=renameat2 -o "$TMPD/nr2.trace" \
		mv -n "$M/nr1" "$M/nr3"
	t "RENAME_NOREPLACE onto a free name succeeds" \
		grep -q 'RENAME_NOREPLACE) = 0' "$TMPD/nr2.trace"
	t "RENAME_NOREPLACE moved the inode" \
		sh -c '[ ! -e "$1" ] && [ "$(stat -c %i "$2")" = "$3" ]' sh "$M/nr1" "$M/nr3" "$inr1"
fi
rm -f "$M/nr1" "$M/nr2" "$M/nr3"

if mv --help 2>/dev/null | grep -q -- '--exchange'; then
	: > "$M/x1"
	: > "$M/x2"
	ix1=$(ino "$M/x1")
	ix2=$(ino "$M/x2")
	t "RENAME_EXCHANGE of two channels (mv --exchange)" mv --exchange "$M/x1" "$M/x2"
	t "the two names swapped inodes" eq "$(ino "$M/x1") $(ino "$M/x2")" "$ix2 $ix1"
	mkdir -p "$M/xa/dir" "$M/xb"
	: > "$M/xb/file"
	t "RENAME_EXCHANGE of a dir and a channel across parents" \
		mv --exchange "$M/xa/dir" "$M/xb/file"
	t "after the exchange xa/dir is a channel, xb/file a dir" \
		test -f "$M/xa/dir" -a -d "$M/xb/file"
	t "links follow the exchange: xa 2, xb 3" \
		eq "$(nlink "$M/xa") $(nlink "$M/xb")" "2 3"
	rm -rf "$M/x1" "$M/x2" "$M/xa" "$M/xb"
else
	echo "ok - # SKIP RENAME_EXCHANGE: mv has no --exchange here" \
		"($(mv --version | head -1); needs coreutils 9.5 or later)"
fi
rm -rf "$M/p1" "$M/p2" "$M/r3"

# ---- attributes ------------------------------------------------------------------
: > "$M/at"
t "chmod 640" chmod 640 "$M/at"
t "stat shows mode 640 and still a regular file" eq "$(stat -c '%a %F' "$M/at")" "640 regular empty file"
t "chown 1234:5678" chown 1234:5678 "$M/at"
t "stat shows owner 1234:5678" eq "$(stat -c %u:%g "$M/at")" 1234:5678
t "touch -d sets mtime and atime" touch -d '2001-02-03 04:05:06 UTC' "$M/at"
t "stat shows the times set" eq "$(stat -c '%X %Y' "$M/at")" "981173106 981173106"
t "touch -m -d sets only mtime" touch -m -d '2002-01-01 00:00:00 UTC' "$M/at"
t "stat shows mtime changed, atime kept" eq "$(stat -c '%X %Y' "$M/at")" "981173106 1009843200"
mkdir "$M/ad"
t "chmod of a directory" chmod 2750 "$M/ad"
t "stat shows dir mode 2750" eq "$(stat -c %a "$M/ad")" 2750
rm -rf "$M/at" "$M/ad"

# ---- readdir with many entries and statfs ------------------------------------------
sfiles() { stat -f -c %c "$M"; }
sfree() { stat -f -c %d "$M"; }
sbfree() { stat -f -c %f "$M"; }
t "statfs: total inodes is max_channels (65536)" eq "$(sfiles)" 65536
t "statfs: block size 4096" eq "$(stat -f -c %S "$M")" 4096
c0=$(nchannels)
free0=$(sfree)
bfree0=$(sbfree)
t "statfs free inodes = max_channels - channels" eq "$free0" $((65536 - c0))
N=3000
mkdir "$M/many"
seq -f 'c%04g' 1 $N > "$TMPD/names"
(cd "$M/many" && timeout 300 xargs touch < "$TMPD/names") || bad "touch $N channels"
t "ls lists $N entries" eq "$(ls "$M/many" | wc -l)" $N
t "ls -f lists them (plus . and ..) with no duplicates" \
	eq "$(ls -f "$M/many" | sort | uniq -d | wc -l) $(ls -f "$M/many" | wc -l)" "0 $((N + 2))"
t "the listing is exactly the names made" \
	sh -c 'ls "$1" | cmp -s - "$2"' sh "$M/many" "$TMPD/names"
t "status counts them" eq "$(nchannels)" $((c0 + N))
t "statfs free inodes drop by $N" eq "$(sfree)" $((free0 - N))
t "statfs free blocks drop by the ring memory" eq "$(sbfree)" $((bfree0 - N * RING / 4096))
(cd "$M/many" && timeout 300 xargs rm -f < "$TMPD/names") || bad "rm $N channels"
t "all $N removed, listing empty" eq "$(ls -A "$M/many" | wc -l)" 0
t "rmdir of the emptied dir" rmdir "$M/many"
t "statfs free inodes and blocks back" eq "$(sfree) $(sbfree)" "$free0 $bfree0"

# ---- st_size and capacity --------------------------------------------------------
: > "$M/sz"
t "st_size = 0" eq "$(stat -c %s "$M/sz")" 0
t "st_blocks: the length to map, in 512-byte blocks" eq "$(stat -c %b "$M/sz")" "$(map_blocks "$M/sz" $MAP)"
t "O_TRUNC and truncate -s leave the channel as it is" \
	sh -c ': > "$1" && truncate -s 100 "$1" && [ "$(stat -c %s "$1")" = 0 ]' sh "$M/sz"
timeout 5 cat "$M/sz" > "$TMPD/sz.out" & r=$!
wait_for 50 readers_at_least "$M/sz" 1
printf 'written, then read back' > "$M/sz"
wait "$r"
t "bytes written are read back whole, not as a file of some size" \
	eq "$(cat "$TMPD/sz.out")" "written, then read back"

# ---- unlinked while open ----------------------------------------------------------
c0=$(nchannels)
m0=$(mem_used)
: > "$M/u"
t "a new channel adds to channels and memory" eq "$(nchannels) $(mem_used)" "$((c0 + 1)) $((m0 + RING))"
exec 3<>"$M/u" 4<"$M/u"
t "unlink while open" rm "$M/u"
t "the name is gone" test ! -e "$M/u"
echo hello >&3
t "write then read back on the unlinked channel" eq "$(timeout 5 head -c 6 <&3)" hello
echo again >&3
t "a second open fd of it reads too" eq "$(timeout 5 head -c 6 <&4)" again
t "info through /proc/self/fd shows 2 opens" wait_for 50 field_is /proc/self/fd/4 opens 2
t "unlinked but open: channel and memory still counted" \
	eq "$(nchannels) $(mem_used)" "$((c0 + 1)) $((m0 + RING))"
exec 3>&-
t "after the first close: 1 open left" wait_for 50 field_is /proc/self/fd/4 opens 1
t "not freed before the last close" eq "$(nchannels) $(mem_used)" "$((c0 + 1)) $((m0 + RING))"
exec 4<&-
t "freed at the last close: channels back" wait_for 50 channels_are "$c0"
t "freed at the last close: memory back" wait_for 50 mem_is "$m0"

# ---- xattrs ----------------------------------------------------------------------
X=$M/xa
: > "$X"
t "kind of a new channel is stream" eq "$(xget "$X" user.ipcd.kind)" stream
t "set kind message" setfattr -n user.ipcd.kind -v message "$X"
t "get kind message" eq "$(xget "$X" user.ipcd.kind)" message
t "info says kind=message" eq "$(info_field "$X" kind)" message
t "set kind stream" setfattr -n user.ipcd.kind -v stream "$X"
t "get kind stream" eq "$(xget "$X" user.ipcd.kind)" stream
# every name of <ipcd/ring.h>'s IPCD_KIND_NAMES, both ways
mb=$(mem_used)
X2=$M/xa2
: > "$X2"
for k in duplex-stream duplex-message message stream; do
	t "set kind $k" setfattr -n user.ipcd.kind -v "$k" "$X2"
	t "get kind $k" eq "$(xget "$X2" user.ipcd.kind)" "$k"
	t "info says kind=$k" eq "$(info_field "$X2" kind)" "$k"
	case $k in
	duplex-*) blocks=$(map_blocks "$X2" $((4096 + 2 * RING))) ;;	# two rings, one first page
	*) blocks=$(map_blocks "$X2" $((4096 + RING))) ;;
	esac
	t "st_blocks of a $k channel: its mapping" eq "$(stat -c %b "$X2")" "$blocks"
done
rm -f "$X2"
t "a removed channel's memory back" wait_for 50 mem_is "$mb"
m0=$(mem_used)
t "set capacity 65536" setfattr -n user.ipcd.capacity -v 65536 "$X"
t "get capacity 65536" eq "$(xget "$X" user.ipcd.capacity)" 65536
t "info follows the capacity" eq "$(info_field "$X" capacity)" 65536
t "memory used follows the capacity" eq "$(mem_used)" $((m0 - RING + 65536))
t "set capacity 8k" setfattr -n user.ipcd.capacity -v 8k "$X"
t "get capacity 8192" eq "$(xget "$X" user.ipcd.capacity)" 8192
t "set capacity 64k" setfattr -n user.ipcd.capacity -v 64k "$X"
t "get capacity 65536 after 64k" eq "$(xget "$X" user.ipcd.capacity)" 65536
t "info capacity=65536" eq "$(info_field "$X" capacity)" 65536
for v in bogus Stream "" "stream message"; do
	errs "kind '$v': EINVAL" "Invalid argument" setfattr -n user.ipcd.kind -v "$v" "$X"
done
for v in 1000 abc 0 64q -4096 1k 2G; do
	errs "capacity '$v': EINVAL" "Invalid argument" setfattr -n user.ipcd.capacity -v "$v" "$X"
done
t "invalid values changed nothing" \
	eq "$(xget "$X" user.ipcd.kind) $(xget "$X" user.ipcd.capacity)" "stream 65536"
exec 5<>"$X"
errs "capacity change while open: EBUSY" "Device or resource busy" \
	setfattr -n user.ipcd.capacity -v 32k "$X"
errs "kind change while open: EBUSY" "Device or resource busy" \
	setfattr -n user.ipcd.kind -v message "$X"
printf abc >&5
# The fields, in any order; fastpath= depends on the machine.
info_fields() {
	getfattr --absolute-names --only-values -n user.ipcd.info "$1" 2>/dev/null |
		tr ' ' '\n' | grep -v -e '^fastpath=' -e '^$' | sort | tr '\n' ' '
}
b3=$(counted 3)
t "info fields with an O_RDWR open and 3 bytes buffered" eq "$(info_fields "$X")" \
	"buffered=$b3 capacity=65536 coord=$COORD core_us=0 kind=stream opens=1 $([ "$COORD" = queues ] && echo 'queues=8 ')read=0 readers=1 state=ok writers=1 written=$b3 "
t "info fastpath is on or off" sh -c 'case "$1" in on|off) exit 0;; esac; exit 1' sh "$(info_field "$X" fastpath)"
t "read the 3 bytes back" eq "$(timeout 5 head -c 3 <&5)" abc
t "info after reading: buffered=0 read=3" \
	eq "$(info_field "$X" buffered) $(info_field "$X" read)" "0 $b3"
exec 5>&-
wait_for 50 field_is "$X" opens 0 || bad "the open was not released"
t "capacity change after close works" setfattr -n user.ipcd.capacity -v 32k "$X"
t "capacity now 32768" eq "$(xget "$X" user.ipcd.capacity)" 32768
t "listxattr of a channel names kind, capacity, info" \
	eq "$(getfattr -m - "$X" 2>/dev/null | grep -x -e user.ipcd.kind \
		-e user.ipcd.capacity -e user.ipcd.info | sort | tr '\n' ' ')" \
	"user.ipcd.capacity user.ipcd.info user.ipcd.kind "
errs_ok=$(getfattr --absolute-names -d -m - "$X" 2>&1 >/dev/null)
t "every attribute listxattr names can be read (getfattr -d)" eq "$errs_ok" ""
t "listxattr of the root names status" \
	eq "$(getfattr -m - "$M" 2>/dev/null | grep ^user | tr '\n' ' ')" "user.ipcd.status "
t "status has fastpath, channels, memory and byte counts" \
	sh -c 'getfattr --absolute-names --only-values -n user.ipcd.status "$1" | grep -Eq "^fastpath=(on|off( reason=.+)?) channels=[0-9]+ memory=[0-9]+/[0-9]+ created=[0-9]+ reused=[0-9]+ served=[0-9]+ bytes=[0-9]+ slow_bytes=[0-9]+ core_us=[0-9]+ pipes=(lock|shared) served_lock=[0-9]+ served_queues=[0-9]+ served_shared=[0-9]+$"' sh "$M"
errs "set an unknown user.* xattr: not supported" "Operation not supported" \
	setfattr -n user.other -v 1 "$X"
errs "get an unknown user.* xattr: no such attribute" "No such attribute" \
	getfattr -n user.other "$X"
errs "set the read-only user.ipcd.info: refused" "Operation not permitted" \
	setfattr -n user.ipcd.info -v x "$X"
errs "remove user.ipcd.kind: refused" "Operation not permitted" \
	setfattr -x user.ipcd.kind "$X"
rm -f "$X" "$M/sz" "$M/f1"

# ---- permissions -------------------------------------------------------------------
t "root mount is shared like /tmp (1777)" eq "$(stat -c %a "$M")" 1777
t "root mount has default_permissions and allow_other" \
	sh -c 'grep " $1 fuse" /proc/mounts | grep -q "default_permissions.*allow_other\|allow_other.*default_permissions"' sh "$M"
if setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
	NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups sh -c)
elif su -s /bin/sh nobody -c true 2>/dev/null; then
	NOBODY=(su -s /bin/sh nobody -c)
else
	NOBODY=()
fi
if [ ${#NOBODY[@]} = 0 ]; then
	echo "ok - # SKIP permissions: cannot run commands as nobody (setpriv and su failed)"
else
	(umask 077 && : > "$M/priv") && chmod 600 "$M/priv"
	: > "$M/pub" && chmod 666 "$M/pub"
	t "the private channel is root's, 0600" eq "$(stat -c '%u %a' "$M/priv")" "0 600"
	errs "nobody cannot open a root 0600 channel" "Permission denied" \
		"${NOBODY[@]}" "exec 3<'$M/priv'"
	errs "nobody cannot write-open it either" "Permission denied" \
		"${NOBODY[@]}" "exec 3>'$M/priv'"
	t "nobody can open a 0666 channel, write and read it" timeout 20 "${NOBODY[@]}" \
		"exec 3<>'$M/pub' && echo hi >&3 && [ \"\$(timeout 5 head -c 3 <&3)\" = hi ]"
	errs "nobody cannot chmod root's channel" "Operation not permitted" \
		"${NOBODY[@]}" "chmod 666 '$M/priv'"
	t "nobody can make a channel in the sticky root" timeout 20 "${NOBODY[@]}" ": > '$M/mine'"
	t "it is owned by nobody" eq "$(stat -c %u "$M/mine")" 65534
	errs "nobody cannot remove root's channel (sticky root)" "Operation not permitted" \
		"${NOBODY[@]}" "rm -f '$M/pub'"
	errs "nobody cannot read user.ipcd.info of a 0600 channel" "Permission denied" \
		"${NOBODY[@]}" "getfattr -n user.ipcd.info '$M/priv'"
	rm -f "$M/priv" "$M/pub" "$M/mine"
fi

t "everything removed: root is empty" eq "$(ls -A "$M" | wc -l)" 0
[ "$FAILS" = 0 ] || fail "$FAILS check(s) failed"
echo "all namespace checks passed"
