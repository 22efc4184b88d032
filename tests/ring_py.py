#!/usr/bin/env python3
"""ring_py.py - an ipcd ring client in pure Python.

It uses nothing but the standard library (os, mmap, struct, fcntl for the
role ioctls, select for poll, time, and threading for the thread id and a
fence; no ctypes), to show that the ring ABI of core/ipcd/ring.h and
ipcd-ring(7) can be spoken by any language that can map a file and load and
store integers at fixed offsets.

Command line (exit status 0 done, 1 error with a message on stderr, 2 usage):

    ring_py.py send PATH [BLOCK]     copy stdin into the channel
    ring_py.py recv PATH [BLOCK]     copy the channel to stdout until EOF
    ring_py.py sendmsg PATH MSG...   send each argument as one message
    ring_py.py recvmsg PATH N        print N messages, one per line
    ring_py.py info PATH             attach for reading, print the header(s)

With CHAN_SIDE=1 in the environment it takes side 1 of a duplex channel.

As a module: Channel(path, "read" | "write" | "rw", side=0), then send /
recv on a stream channel, send_message / recv_message on a message channel,
and close().  Attaching follows core/chan.c and ipcd-ring(7): open
read-write, pick the side (duplex only), GETINFO (roles, side, end-of-file
epoch, pages to map), narrow the roles with SETROLE, mmap the channel's ring
file (.rings/<inode> under the mount's root) shared,
validate the header(s) as ring.c's ipcd_view_attach does.

What a pure-Python end can and cannot do
========================================

1. It never sleeps on a futex; it wakes futex sleepers through the daemon.
   Python has no futex call without ctypes.  A waiting Python end polls the
   ring instead, backing off from busy re-checks to sleeps of at most 1 ms;
   it never counts itself in rd_sleepers / wr_sleepers, so nobody ever needs
   to wake it.  After it publishes tail (head) it does what ring.h asks of a
   producer (consumer) as far as it can: a full fence, then, when
   rd_sleepers (wr_sleepers) is non-zero, data_seq (space_seq) += 1.  That
   bump alone reaches only a sleeper that took its snapshot of the word but
   has not yet entered FUTEX_WAIT: FUTEX_WAKE is the call it cannot make.
   So it then rings the doorbell ring.h defines for such peers, the ioctl
   IPCD_IOC_WAKE on its channel file: the daemon wakes every sleeper of the
   channel's rings and answers the read()s and write()s it parked.  The
   price is a round trip to the daemon per publish while someone sleeps,
   none while nobody does.  (The ioctl takes no inode lock, unlike fsync(2),
   which waits behind a write() the daemon holds back for room.)

   A waiting Python end also checks, once a second, that the daemon named
   in daemon_pid still runs, and reports ECONNABORTED if not, as the C API
   does.

2. It has no compare-and-swap, so its producer/consumer lock is advisory.
   Python's mmap offers loads and stores, no atomic read-modify-write.  The
   lock is taken by loading the word, storing our thread id into it only if
   its owner bits were 0, fencing, and re-reading it: we hold the lock if our
   id is still there.  This is not mutual exclusion.  A peer whose CAS lands between our
   load and our store also believes it holds the lock, and both copy at once;
   the re-read catches only a racer whose store lands after ours.  So a
   Python end must be the only producer (or the only consumer) of its
   direction: no second writer (reader) of that ring at the same time, in
   Python or C, and no slow-path read()/write() peer of the same role (the
   daemon takes the same lock for those).  What the lock still gives: C ends
   see a live holder and wait, C ends take the lock over from a dead Python
   holder (its thread id is checked with kill(tid, 0)), and we take it over
   from a dead holder the same way.  Release is a plain store of 0; a
   waiters bit a C end set meanwhile is lost, which is harmless because C
   lock waiters sleep at most 10 ms between looks.  Likewise data_seq and
   space_seq are bumped by load and store, not fetch-add: a concurrent C
   bump can swallow ours, which is why the doorbell of 1 follows it.

   On a channel coordinated by queues (coord=queues) none of this limits
   it: it asks the daemon for its queue (IPCD_IOC_QUEUE) and for a queue's
   claim (IPCD_IOC_CLAIM), where a C end makes a compare-and-swap, and
   then writes as the queue's only producer, or reads inside the queue by
   its reader slot, with plain stores and full_fence(): one of several
   writers or readers, in Python or C, at the same time.  On a channel of
   one shared ring (coord=shared) it asks the daemon to reserve a record's
   cells (IPCD_IOC_RESERVE) and to take a record (IPCD_IOC_TAKE), where a
   C end makes a fetch-and-add or a compare-and-swap, and moves the bytes
   and publishes or frees the cells itself: a system call per record.

3. Memory ordering, and how the shared words are touched.
   * Every shared header word is loaded and stored through memoryview casts
     of the mapping ('Q' for 64-bit, 'I' for 32-bit words).  Item get and
     set of such a view is a memcpy of exactly 8 (4) bytes to or from an
     aligned address, which the C compiler emits as one mov: single-copy
     atomic on x86-64.
   * Never struct.pack_into onto a shared word: the reference interpreter
     clears the target with memset before writing the value, so a peer can
     read 0 in between (measured: thousands of zero reads per second while
     another process stored non-zero values).  A tail that reads 0 makes a C
     peer see tail - head > capacity and fail the whole channel with EIO.
     struct.unpack_from is a plain load and would be fine; slice assignment
     (mm[a:b] = bytes) is a memcpy of the slice and would in practice also be
     one 8-byte store, but the memoryview casts say what is meant.
   * x86-64 is TSO: stores become visible in program order, and loads are
     not reordered with older loads nor with younger stores.  So "copy the
     bytes, then store tail" already is the release store of ring.h, and
     "load tail, then copy the bytes" the acquire load; the same holds for
     head in the other direction.  The interpreter performs these accesses
     as separate calls into C, in program order, which the C compiler cannot
     merge or reorder.
   * The one reordering TSO allows, a load passing an older store, matters
     where ring.h asks for a full fence: between publishing tail (head) and
     loading rd_sleepers (wr_sleepers).  full_fence() below takes and drops a
     threading.Lock; the interpreter implements that with an atomic
     read-modify-write (a LOCK-prefixed instruction), a full barrier on
     x86-64.
   * None of this holds on weakly ordered CPUs (arm64, POWER, ...), where
     plain stores may become visible out of order.  The module refuses to
     run anywhere but x86-64 unless IPCD_PY_ANY_ARCH=1 is set, and it has
     been checked only on the reference interpreter.

4. End of file.  A reader takes its eof_epoch from the daemon (GETINFO),
   which fixed it when the open file got its reader role.  When the ring is
   empty, it has EOF once writers == 0 and the writer epoch has reached
   eof_epoch (a signed 32-bit difference).  This client loads
   writers_epoch BEFORE head and tail: a writer stores its last tail before it
   closes, and the daemon publishes the close after that, so seeing the close
   first guarantees that the tail load which follows sees every byte written.
"""

import errno
import fcntl
import mmap
import os
import platform
import stat
import struct
import sys
import threading
import time

# ---- the ABI (core/ipcd/ring.h) ------------------------------------------

RING_MAGIC = 0x52435049          # "IPCR" in memory order
RING_VERSION = 2
MAP_HDR_SIZE = 4096              # the directory and the ring headers
MAP_RING_SLOT = 512              # room of one ring header
MAP_RINGS_MAX = 64
MAP_AREA_MAX = 16 * 4096
COORD_LOCK = 0
COORD_QUEUES = 1
COORD_SHARED = 2
WSLOTS_MAX = 16
CELL_SIZE = 64                   # a ring of cells (coord shared)
CELL_FREE, CELL_CONT, CELL_FULL, CELL_TAKEN = 0, 1, 2, 3
QUEUES_MAX = 16
RSLOTS_MAX = 64
MAP_STRUCT_SIZE = 64             # sizeof(struct ipcd_map)
DESC_SIZE = 32                   # sizeof(struct ipcd_ring_desc)
RING_KIND_BYTES = 1
RING_KIND_RECORDS = 2
RING_KIND_CELLS = 3
RING_MIN_CAPACITY = 4096
RING_MAX_CAPACITY = 1 << 30
RING_STRUCT_SIZE = 448           # sizeof(struct ipcd_ring)
RING_F_MESSAGE = 1 << 0
RING_F_DUPLEX = 1 << 1           # two rings, one per direction
RING_F_KNOWN = RING_F_MESSAGE | RING_F_DUPLEX
RING_S_BROKEN = 1 << 0
LOCK_WAITERS = 0x80000000
LOCK_TID_MAX = 4194304
REC_PAD = 1 << 0
REC_ALIGN = 8
REC_HDR_SIZE = 8                 # struct ipcd_ring_rec { u32 len, flags; }
ROLE_READ = 1
ROLE_WRITE = 2
SIDE_SHIFT = 8
IOC_SETROLE = 0x4004AB01         # _IOW(0xab, 1, uint32_t)
IOC_GETROLE = 0x8004AB02         # _IOR(0xab, 2, uint32_t)
IOC_SETSIDE = 0x4004AB03         # _IOW(0xab, 3, uint32_t)
IOC_GETINFO = 0x8010AB04         # _IOR(0xab, 4, struct ipcd_fileinfo)
RINGS_DIR = ".rings"             # ring files, by inode number, under the root
IOC_WAKE = 0x0000AB05            # _IO(0xab, 5): the doorbell
IOC_QUEUE = 0x8004AB0B           # _IOR(0xab, 11, uint32_t): our queue
IOC_CLAIM = 0xC004AB0C           # _IOWR(0xab, 12, uint32_t): a queue's claim
IOC_RESERVE = 0xC008AB0D         # _IOWR(0xab, 13, uint64_t): cells of a shared ring
IOC_TAKE = 0x8008AB0E            # _IOR(0xab, 14, uint64_t): a shared ring's record
PIPE_BUF = 4096

# The directory: magic, version, hdr_size, features, msg_max, map_size,
# anon, nrings, desc_off, desc_size, coord, nqueues, hdr_area, rslot_off,
# nrslots; each ring's
# entry: kind, role, hdr_off, data_off, capacity; a ring header's cache line 0, the directory's copy:
# magic, version, hdr_size, features, msg_max, data_off, capacity, map_size
# (host byte order).
_MAP = struct.Struct("=IHHIIQIIIIIIQII")
_DESC = struct.Struct("=IIQQQ")
_HDR = struct.Struct("=IHHIIQQQ")
_REC = struct.Struct("=II")
_FILEINFO = struct.Struct("=IIII")     # roles, side, eof_epoch, reserved

# Indexes of the shared words in the 'Q' (8-byte) and 'I' (4-byte) views.
_Q_TAIL = 64 // 8
_Q_HEAD = 128 // 8
_Q_RPART = 152 // 8              # a ring of cells of a stream: 1 + a part-read ticket
_Q_WRITERS_EPOCH = 256 // 8
_I_WLOCK = 72 // 4
_I_WRITES = 84 // 4
_I_OWNER = 88 // 4
_I_RLOCK = 136 // 4
_I_RCLAIM = 140 // 4
_I_ROFF = 144 // 4
_I_DATA_SEQ = 192 // 4
_I_RD_SLEEPERS = 196 // 4
_I_SPACE_SEQ = 200 // 4
_I_WR_SLEEPERS = 204 // 4
_I_READERS = 264 // 4
_I_STATE = 268 // 4
_I_DAEMON_PID = 272 // 4

_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1

EOF = object()          # what the one-attempt reads return at end of file


def _err(code, what):
    # OSError picks the subclass from the errno (BrokenPipeError, ...).
    return OSError(code, "%s: %s" % (os.strerror(code), what))


def _check_platform():
    if os.environ.get("IPCD_PY_ANY_ARCH") == "1":
        return
    if platform.machine() not in ("x86_64", "AMD64"):
        raise _err(errno.ENOTSUP, "ring_py relies on x86-64 store ordering "
                   "(set IPCD_PY_ANY_ARCH=1 to try anyway)")
    if sys.implementation.name != "cpython":
        raise _err(errno.ENOTSUP, "ring_py was checked only on the reference "
                   "interpreter (set IPCD_PY_ANY_ARCH=1 to try anyway)")


_fence_lock = threading.Lock()


def full_fence():
    """A full memory barrier: an atomic read-modify-write in the interpreter
    (see note 3 of the module documentation)."""
    _fence_lock.acquire()
    _fence_lock.release()


def valid_capacity(cap):
    return (RING_MIN_CAPACITY <= cap <= RING_MAX_CAPACITY and
            cap & (cap - 1) == 0)


def map_len(cap, features):
    """Bytes a mapping needs with rings of cap (two for a duplex channel)."""
    if not valid_capacity(cap) or features & ~RING_F_KNOWN:
        return 0
    return MAP_HDR_SIZE + cap * (2 if features & RING_F_DUPLEX else 1)


def _cells(length):
    """Cells a record of length bytes takes in a ring of cells."""
    return (length + CELL_SIZE - 1) // CELL_SIZE if length else 1


def _cell_index(u, n):
    """The entry of ticket u among n cells: consecutive tickets four
    entries apart (ring.h, ipcd_cell_index)."""
    i = u & (n - 1)
    return (i & 3) * (n // 4) + (i >> 2)


def _span(coord, cap):
    """Bytes one ring's data takes: a ring of cells has its 16-byte cell
    entries after the payload, to a whole page."""
    if coord != COORD_SHARED:
        return cap
    meta = cap // CELL_SIZE * 16
    return cap + (meta + MAP_HDR_SIZE - 1) // MAP_HDR_SIZE * MAP_HDR_SIZE


def rec_size(length):
    return REC_HDR_SIZE + ((length + REC_ALIGN - 1) & ~(REC_ALIGN - 1))


def check_map(buf, length, role):
    """Validate a mapping's directory and the header of its ring of `role`
    exactly as ring.c's ipcd_view_attach_role does, and return that ring's
    fields.  Raises OSError with the errno the C side returns: EINVAL
    (mapping too short, no ring of that role), EIO (not a channel, or
    corruption), EPROTO (another ABI version)."""
    if length < MAP_HDR_SIZE:
        raise _err(errno.EINVAL, "mapping of %d bytes is shorter than the "
                   "directory" % length)
    (magic, version, hdr_size, features, msg_max, map_size, anon, nrings,
     desc_off, desc_size, coord, nqueues, hdr_area, rslot_off,
     nrslots) = _MAP.unpack_from(buf, 0)
    if magic != RING_MAGIC:
        raise _err(errno.EIO, "bad ring magic 0x%08x" % magic)
    if version != RING_VERSION:
        raise _err(errno.EPROTO, "ring ABI version %d, not %d"
                   % (version, RING_VERSION))
    sides = 2 if features & RING_F_DUPLEX else 1
    if coord > COORD_SHARED or (coord == COORD_QUEUES) != (nqueues != 0) or \
            nqueues > QUEUES_MAX:
        n = 0
    else:
        n = sides * (nqueues if coord == COORD_QUEUES else 1)
    if (hdr_size < MAP_STRUCT_SIZE or hdr_size > MAP_RING_SLOT or not n or
            nrings != n or desc_size != DESC_SIZE or
            desc_off < hdr_size or desc_off % 8 or features & ~RING_F_KNOWN or
            hdr_area < MAP_HDR_SIZE or hdr_area > MAP_AREA_MAX or
            hdr_area % MAP_HDR_SIZE or desc_off + n * DESC_SIZE > hdr_area or
            map_size <= hdr_area or map_size % MAP_HDR_SIZE or
            (not 1 <= nrslots <= RSLOTS_MAX or rslot_off % 64 or
             rslot_off < desc_off + n * DESC_SIZE or
             rslot_off + nrslots * 64 > hdr_area or
             (coord == COORD_SHARED and nrslots > WSLOTS_MAX)
             if coord != COORD_LOCK else nrslots or rslot_off)):
        raise _err(errno.EIO, "corrupt directory (hdr_size=%d nrings=%d "
                   "desc_off=%d map_size=%d hdr_area=%d coord=%d features=0x%x)"
                   % (hdr_size, nrings, desc_off, map_size, hdr_area, coord,
                      features))
    if length < map_size:
        raise _err(errno.EINVAL, "mapping of %d bytes, the channel needs %d"
                   % (length, map_size))
    kind = (RING_KIND_CELLS if coord == COORD_SHARED else
            RING_KIND_RECORDS if features & RING_F_MESSAGE or
            coord == COORD_QUEUES else RING_KIND_BYTES)
    found = None
    for i in range(nrings):
        (d_kind, d_role, hdr_off, data_off, cap) = \
            _DESC.unpack_from(buf, desc_off + i * DESC_SIZE)
        if (d_kind != kind or d_role & 0xff >= sides or
                (d_role >> 8) & 0xff >= n // sides or d_role > 0xffff or
                hdr_off < desc_off + n * DESC_SIZE or
                hdr_off % 64 or hdr_off + RING_STRUCT_SIZE > hdr_area or
                not valid_capacity(cap) or data_off < hdr_area or
                data_off % MAP_HDR_SIZE or data_off > map_size or
                _span(coord, cap) > map_size - data_off):
            raise _err(errno.EIO, "corrupt entry %d of the directory" % i)
        if d_role == role:
            if found:
                raise _err(errno.EIO, "two rings of role %d" % role)
            found = (hdr_off, data_off, cap)
    if not found:
        raise _err(errno.EINVAL, "no ring of role %d" % role)
    hdr_off, data_off, cap = found
    # A queue of a stream channel takes a write of up to its capacity less
    # the record header in one record, a ring of cells the directory's
    # msg_max (at least PIPE_BUF).
    ring_max = msg_max if features & RING_F_MESSAGE or kind == RING_KIND_CELLS else (
        cap - REC_HDR_SIZE if kind == RING_KIND_RECORDS else 0)
    if kind == RING_KIND_CELLS and ring_max < PIPE_BUF:
        raise _err(errno.EIO, "a ring of cells whose records are under PIPE_BUF")
    if kind == RING_KIND_CELLS and \
            nrslots * _cells(ring_max) > cap // CELL_SIZE // 2:
        raise _err(errno.EIO, "more writer slots than the ring has room for")
    (r_magic, r_version, r_hdr_size, r_features, r_msg_max, r_data_off, r_cap,
     r_map_size) = _HDR.unpack_from(buf, hdr_off)
    if (r_magic != RING_MAGIC or r_version != RING_VERSION or
            r_hdr_size != RING_STRUCT_SIZE or r_features != features or
            r_msg_max != ring_max or r_data_off != data_off or r_cap != cap or
            r_map_size != map_size):
        raise _err(errno.EIO, "the header of ring %d differs from the "
                   "directory" % role)
    if features & RING_F_MESSAGE and (msg_max == 0 or
                                      msg_max > cap - REC_HDR_SIZE):
        raise _err(errno.EIO, "corrupt ring header (msg_max=%d, capacity=%d)"
                   % (msg_max, cap))
    return {"magic": magic, "version": version, "hdr_size": r_hdr_size,
            "features": features, "msg_max": msg_max, "hdr_off": hdr_off,
            "data_off": data_off, "capacity": cap, "map_size": map_size,
            "anon": anon, "nrings": nrings, "coord": coord, "nqueues": nqueues,
            "rslot_off": rslot_off, "nrslots": nrslots,
            "records": kind == RING_KIND_RECORDS, "ring_max": ring_max,
            "cells": kind == RING_KIND_CELLS}


def _tid_alive(tid):
    try:
        os.kill(tid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Ring:
    """One ring of a mapping: views of its shared words and data area, and
    the copies of its header this process trusts from now on."""

    def __init__(self, whole, hdr):
        base = hdr["hdr_off"]
        self.base = base
        self.map_size = hdr["map_size"]
        self.capacity = hdr["capacity"]
        self.features = hdr["features"]
        # A ring of records (a message channel's, or any queue) is written
        # and read as a message ring.
        self.msg_max = hdr["ring_max"]
        self.is_message = hdr["records"]
        self.mask = self.capacity - 1
        self.q = whole[base:base + MAP_RING_SLOT].cast("Q")
        self.w = whole[base:base + MAP_RING_SLOT].cast("I")
        off = hdr["data_off"]
        self.data = whole[off:off + self.capacity]
        # A ring of cells: its entries (word, len, off), 16 bytes a cell.
        self.cells = hdr.get("cells", False)
        self.ncells = self.capacity // CELL_SIZE
        self.cq = self.cw = None
        if self.cells:
            meta = whole[off + self.capacity:off + self.capacity + self.ncells * 16]
            self.cq = meta.cast("Q")
            self.cw = meta.cast("I")
            meta.release()
        if self.q.itemsize != 8 or self.w.itemsize != 4:
            raise _err(errno.ENOTSUP, "native Q/I are not 8/4 bytes")
        self.eof_epoch = 0      # the daemon's, for the ring we read (GETINFO)

    def release(self):
        for v in (self.q, self.w, self.data, self.cq, self.cw):
            if v is not None:
                v.release()

    def broken(self):
        return self.w[_I_STATE] & RING_S_BROKEN

    def writers_gone(self, we):
        return ((we & _M32) == 0 and
                ((we >> 32) - self.eof_epoch) & _M32 < 0x80000000)

    def used(self, head, tail):
        used = (tail - head) & _M64
        if used > self.capacity or (self.is_message and (head | tail) & (REC_ALIGN - 1)):
            raise _err(errno.EIO, "ring counters are damaged (head=%d tail=%d)"
                       % (head, tail))
        return used

    def daemon_alive(self):
        pid = self.w[_I_DAEMON_PID]
        return pid == 0 or pid > LOCK_TID_MAX or _tid_alive(pid)

    def info(self, sfx=""):
        we = self.q[_Q_WRITERS_EPOCH]
        d = {"kind": "message" if self.features & RING_F_MESSAGE else "stream",
             "capacity": self.capacity, "msg_max": self.msg_max,
             "hdr_size": _HDR.unpack_from(self.w, 0)[2],
             "map_size": self.map_size,
             "head": self.q[_Q_HEAD], "tail": self.q[_Q_TAIL],
             "wlock": self.w[_I_WLOCK], "rlock": self.w[_I_RLOCK],
             "rd_sleepers": self.w[_I_RD_SLEEPERS],
             "wr_sleepers": self.w[_I_WR_SLEEPERS],
             "readers": self.w[_I_READERS], "writers": we & _M32,
             "epoch": we >> 32, "state": self.w[_I_STATE],
             "daemon_pid": self.w[_I_DAEMON_PID]}
        return {k + sfx: v for k, v in d.items()}


class _Backoff:
    """Polling in place of futex sleep: re-check at once a few times, then
    sleep 10 us, doubling up to 1 ms (note 1); about once a second, check
    that the daemon still runs."""

    SPINS = 32
    MAX_SLEEP = 0.001
    PATROL = 1.0

    def __init__(self, timeout, ring):
        now = time.monotonic()
        self.deadline = None if timeout is None else now + timeout
        self.patrol = now + self.PATROL
        self.ring = ring
        self.n = 0

    def reset(self):
        self.n = 0

    def pause(self):
        self.n += 1
        if self.n > self.SPINS:
            time.sleep(min(self.MAX_SLEEP,
                           1e-5 * (1 << min(self.n - self.SPINS, 8))))
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            raise _err(errno.ETIMEDOUT, "no progress before the timeout")
        if now >= self.patrol:
            self.patrol = now + self.PATROL
            if not self.ring.daemon_alive():
                raise _err(errno.ECONNABORTED, "the ipcd daemon is gone")


def _mount_root(path):
    """The root of the mount that holds path: the last directory upwards
    on the same device."""
    path = os.path.abspath(path)
    dev = os.stat(os.path.dirname(path)).st_dev
    root = os.path.dirname(path)
    while root != "/":
        up = os.path.dirname(root)
        if os.stat(up).st_dev != dev:
            break
        root = up
    return root


class Channel:
    """One end of an ipcd channel, driven through its mapped ring(s)."""

    def __init__(self, path, role, side=0):
        roles = {"read": ROLE_READ, "write": ROLE_WRITE,
                 "rw": ROLE_READ | ROLE_WRITE}.get(role)
        if roles is None or side not in (0, 1):
            raise ValueError("role must be read, write or rw; side 0 or 1")
        _check_platform()
        self.roles = roles
        self._mm = None
        self._whole = None
        self._rings = []
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._attach(path, side)
        except BaseException:
            self.close()
            raise

    def _attach(self, path, side):
        # As core/chan.c does: pick the side first (duplex channels only).
        if side:
            fcntl.ioctl(self._fd, IOC_SETSIDE, struct.pack("=I", side))
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            raise _err(errno.ENOTSUP, "%s is not an ipcd channel" % path)
        # What the daemon knows of this open file: roles, side, the
        # end-of-file epoch it fixed when the file got its reader role, and
        # how much to map (a channel's size is 0: it is a stream).
        try:
            got, side, eof_epoch, pages = _FILEINFO.unpack(
                fcntl.ioctl(self._fd, IOC_GETINFO, bytes(_FILEINFO.size)))
        except OSError as e:
            if e.errno == errno.ENOTTY:
                raise _err(errno.ENOTSUP, "%s is not an ipcd channel" % path)
            raise
        size = pages * 4096
        if size < MAP_HDR_SIZE:
            raise _err(errno.ENOTSUP, "%s is not an ipcd channel" % path)
        if self.roles & got & 3 != self.roles:
            raise _err(errno.EBADF, "the open file lacks a role asked for")
        if self.roles != got & 3:
            fcntl.ioctl(self._fd, IOC_SETROLE, struct.pack("=I", self.roles))
        self.side = side
        # Python's mmap wants a file at least as long as the mapping: map
        # the channel's ring file (the same rings, ipcd-ring(7)).
        rfd = os.open(os.path.join(_mount_root(path), RINGS_DIR, str(st.st_ino)),
                      os.O_RDWR | os.O_CLOEXEC)
        try:
            self._mm = mmap.mmap(rfd, size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(rfd)
        self._whole = memoryview(self._mm)
        # The directory says where each ring sits: the one side 0 writes
        # (role 0), and a duplex channel's that side 1 writes (role 1).
        first = check_map(self._whole, size, 0)
        self.coord = first["coord"]
        nq = first["nqueues"] or 1
        sides = 2 if first["features"] & RING_F_DUPLEX else 1
        # Each side's rings by role: the side, and the queue's index.
        for sd in range(sides):
            for q in range(nq):
                self._rings.append(_Ring(self._whole, check_map(
                    self._whole, size, sd | q << 8)))
        # Side s writes ring(s) s and reads the other's (one side: both).
        out_side = self.side if sides == 2 else 0
        in_side = 1 - self.side if sides == 2 else 0
        self._out = self._rings[out_side * nq]
        self._in = self._rings[in_side * nq]
        # Queues: the side's rings we may write, and the one the daemon
        # gave this thread (IOC_QUEUE), once asked.
        self._queues = self._rings[out_side * nq:(out_side + 1) * nq]
        self._queue = None
        # Queues, reading: the other side's rings, our reader slot (given
        # by the daemon with a queue's claim, IOC_CLAIM), where we start.
        self._rqueues = self._rings[in_side * nq:(in_side + 1) * nq]
        self._in_side = in_side
        self._slot = None
        self._rnext = 0
        self._rslots = None
        if self.coord == COORD_QUEUES:
            off = first["rslot_off"]
            self._rslots = self._whole[off:off + 64 * first["nrslots"]].cast("I")
        self._wslots = self._wslotq = None
        if self.coord == COORD_SHARED:
            off = first["rslot_off"]
            self._wslots = self._whole[off:off + 64 * first["nrslots"]].cast("I")
            self._wslotq = self._whole[off:off + 64 * first["nrslots"]].cast("Q")
        self._in.eof_epoch = eof_epoch
        self.capacity = first["capacity"]
        self.msg_max = first["msg_max"] if first["features"] & RING_F_MESSAGE \
            else first["ring_max"]
        self.is_message = bool(first["features"] & RING_F_MESSAGE)
        self.is_duplex = sides == 2
        # The nudge of note 1: a poll that may wait makes the daemon look at
        # the rings and answer what it parked; it returns early once data
        # is there to read.

    # ---- life ----------------------------------------------------------

    def close(self):
        q = getattr(self, "_queue", None)
        if q is not None and self._rings:
            # Our queue is free again once every record of ours is read.
            if (q.w[_I_OWNER] == threading.get_native_id() and
                    q.q[_Q_HEAD] == q.q[_Q_TAIL]):
                q.w[_I_OWNER] = 0
            self._queue = None
        if getattr(self, "_rslots", None) is not None:
            self._rslots.release()
            self._rslots = None
        if getattr(self, "_wslots", None) is not None:
            # Our writer slot (a shared ring) is free again: nothing of
            # ours is reserved between calls.
            tid = threading.get_native_id()
            for i in range(len(self._wslots) // 16):
                if self._wslots[16 * i] == tid:
                    self._wslotq[8 * i + 1] = 0
                    self._wslots[16 * i] = 0
        for name in ("_wslots", "_wslotq"):
            v = getattr(self, name, None)
            if v is not None:
                v.release()
                setattr(self, name, None)
        for r in self._rings:
            r.release()
        self._rings = []
        if self._whole is not None:
            self._whole.release()
            self._whole = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError:
                pass    # closed all the same (a dead daemon fails the flush)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        return self._fd

    def info(self):
        """The shared state of the ring(s), for humans and tests."""
        if not self.is_duplex:
            d = self._rings[0].info()
        else:
            d = self._rings[0].info("0")
            d.update(self._rings[1].info("1"))
        d["side"] = self.side
        d["eof_epoch"] = self._in.eof_epoch
        return d

    def in_ring(self):
        return self._in.info()

    def out_ring(self):
        return self._out.info()

    # ---- the advisory lock (note 2) -------------------------------------

    @staticmethod
    def _lock(ring, idx, backoff):
        tid = threading.get_native_id()     # what C ends check with kill()
        while True:
            cur = ring.w[idx]
            owner = cur & ~LOCK_WAITERS
            if owner > LOCK_TID_MAX:
                raise _err(errno.EIO, "lock word 0x%08x is corrupt" % cur)
            if owner == 0:              # free (0, or the waiters bit alone)
                ring.w[idx] = cur | tid
                full_fence()
                if ring.w[idx] & ~LOCK_WAITERS == tid:
                    return
                # Another end's store landed after ours: it holds the lock.
            elif owner == tid:
                raise _err(errno.EDEADLK, "this thread already holds the lock")
            elif not _tid_alive(owner):
                # Take the lock over from a dead holder (no CAS: re-check).
                if ring.w[idx] == cur:
                    ring.w[idx] = 0
                continue
            backoff.pause()

    @staticmethod
    def _unlock(ring, idx):
        if ring.w[idx] & ~LOCK_WAITERS == threading.get_native_id():
            ring.w[idx] = 0
        # A C lock waiter sleeps at most 10 ms: no FUTEX_WAKE needed.

    # ---- waking (note 1) -------------------------------------------------

    def _wake(self, ring, sleepers_idx, seq_idx):
        full_fence()            # our index store before the sleeper check
        if ring.w[sleepers_idx] == 0:
            return
        ring.w[seq_idx] = (ring.w[seq_idx] + 1) & _M32
        # FUTEX_WAKE is the call we cannot make: ring the doorbell.
        try:
            fcntl.ioctl(self._fd, IOC_WAKE)
        except OSError:
            pass        # a damaged ring or a dead daemon: the caller learns it

    # ---- moving bytes ----------------------------------------------------

    @staticmethod
    def _copy_in(ring, at, src):
        n = len(src)
        pos = at & ring.mask
        first = ring.capacity - pos
        if first >= n:
            ring.data[pos:pos + n] = src
        else:
            ring.data[pos:] = src[:first]
            ring.data[:n - first] = src[first:]

    @staticmethod
    def _copy_out(ring, at, n):
        pos = at & ring.mask
        first = ring.capacity - pos
        if first >= n:
            return ring.data[pos:pos + n].tobytes()
        return ring.data[pos:].tobytes() + ring.data[:n - first].tobytes()

    def try_write(self, data, backoff=None):
        """One attempt to write, as ring.c's ipcd_ring_write.  Returns the
        bytes taken, or None when there is no room (nothing taken for a
        message or a stream write of at most PIPE_BUF bytes).  Raises
        BrokenPipeError with no reader, OSError EMSGSIZE or EIO."""
        if not self.roles & ROLE_WRITE:
            raise _err(errno.EBADF, "channel not opened for writing")
        if self.coord == COORD_QUEUES:
            return self._try_write_queue(data)
        if self.coord == COORD_SHARED:
            return self._try_write_shared(data)
        ring = self._out
        src = memoryview(data).cast("B")
        if ring.broken():
            raise _err(errno.EIO, "the daemon marked the ring broken")
        if ring.w[_I_READERS] == 0:
            raise _err(errno.EPIPE, "the channel has no reader")
        if len(src) == 0 and not ring.is_message:
            return 0
        self._lock(ring, _I_WLOCK, backoff or _Backoff(None, ring))
        try:
            old = ring.q[_Q_TAIL]
            n, tail = self._put_locked(ring, src)
            if tail != old:
                # Counted, as ring.h asks of every producer (under wlock).
                ring.w[_I_WRITES] = (ring.w[_I_WRITES] + 1) & _M32
                # TSO: the bytes copied above are visible before this store.
                ring.q[_Q_TAIL] = tail
        finally:
            self._unlock(ring, _I_WLOCK)
        if tail != old:
            self._wake(ring, _I_RD_SLEEPERS, _I_DATA_SEQ)
        return n

    def _try_write_queue(self, data):
        """try_write on a channel of queues (ipcd-ring(7), "Coordination by
        queues"): a record into the queue the daemon gave this thread, with
        no lock, as its only producer; a stream write of more than msg_max
        bytes takes msg_max.  With no queue free, through the daemon."""
        src = memoryview(data).cast("B")
        q0 = self._queues[0]
        if getattr(self, "_slow", False) and q0.q[_Q_HEAD] != q0.q[_Q_TAIL]:
            # Bytes of ours may still be in the daemon's queue: they come
            # first, so ours go the same way until it is empty.
            return os.write(self._fd, src)
        if self._queue is None or \
                self._queue.w[_I_OWNER] != threading.get_native_id():
            try:
                (idx,) = struct.unpack("=I", fcntl.ioctl(
                    self._fd, IOC_QUEUE, bytes(4)))
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                self._slow = True               # every queue has a live owner
                return os.write(self._fd, src)
            if idx >= len(self._queues):
                raise _err(errno.EIO, "the daemon gave queue %d of %d"
                           % (idx, len(self._queues)))
            self._queue = self._queues[idx]
        ring = self._queue
        if ring.broken():
            raise _err(errno.EIO, "the daemon marked the ring broken")
        if ring.w[_I_READERS] == 0:
            raise _err(errno.EPIPE, "the channel has no reader")
        if not self.is_message:
            if len(src) == 0:
                return 0
            src = src[:ring.msg_max]
        old = ring.q[_Q_TAIL]
        n, tail = self._put_locked(ring, src)
        if tail != old:
            ring.w[_I_WRITES] = (ring.w[_I_WRITES] + 1) & _M32
            ring.q[_Q_TAIL] = tail          # TSO: the record is in first
            # Readers of every queue sleep on the first queue's word.
            self._wake(self._queues[0], _I_RD_SLEEPERS, _I_DATA_SEQ)
        return n

    @staticmethod
    def _cell_word(state, ticket):
        return (ticket & _M32) << 32 | state

    def _try_write_shared(self, data):
        """try_write on one shared ring (ipcd-ring(7), "Coordination by one
        shared ring"): the daemon reserves the record's cells for this
        thread (IOC_RESERVE, where a C end makes a fetch-and-add); we fill
        them and publish with plain stores.  With no writer slot free,
        through the daemon."""
        src = memoryview(data).cast("B")
        ring = self._out
        if not self.is_message:
            if len(src) == 0:
                return 0
            src = src[:ring.msg_max]
        try:
            (t,) = struct.unpack("=Q", fcntl.ioctl(
                self._fd, IOC_RESERVE, struct.pack("=Q", len(src))))
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return None
            if e.errno == errno.ENOTCONN:
                raise _err(errno.ECONNABORTED, "the ipcd daemon is gone")
            if e.errno != errno.ENOSPC:
                raise
            return os.write(self._fd, src)      # every slot has a live writer
        k = _cells(len(src))
        for i in range(k):
            if ring.cq[2 * _cell_index(t + i, ring.ncells)] != \
                    self._cell_word(CELL_FREE, t + i):
                raise _err(errno.EIO, "cell of ticket %d is not free" % (t + i))
        self._copy_in(ring, (t % ring.ncells) * CELL_SIZE, src)   # payload in ticket order
        for i in range(1, k):
            ring.cq[2 * _cell_index(t + i, ring.ncells)] = self._cell_word(CELL_CONT, t + i)
        c = _cell_index(t, ring.ncells)
        ring.cw[4 * c + 2] = len(src)           # len, off
        ring.cw[4 * c + 3] = 0
        # TSO: the payload, the other words and len are in before this.
        ring.cq[2 * c] = self._cell_word(CELL_FULL, t)
        self._slot_clear(t, len(src))
        self._wake(ring, _I_RD_SLEEPERS, _I_DATA_SEQ)
        return len(src)

    def _slot_clear(self, t, n):
        """Our writer slot's reservation (ticket t, n bytes) is published:
        rsv 0, and the slot's counts of records and bytes grow."""
        tid = threading.get_native_id()
        for i in range(len(self._wslots) // 16):
            if self._wslots[16 * i] == tid:
                q = 8 * i + 1           # rsv, at byte 8 of the slot
                if self._wslotq[q] & ((1 << 48) - 1) == t & ((1 << 48) - 1):
                    self._wslotq[q] = 0
                w = 16 * i + 1          # writes, at byte 4
                self._wslots[w] = (self._wslots[w] + 1) & 0xffffffff
                b = 8 * i + 2           # bytes, at byte 16
                self._wslotq[b] = (self._wslotq[b] + n) & ((1 << 64) - 1)
                return

    def _try_read_shared(self, maxlen):
        """try_read on one shared ring: the daemon takes the next record
        for this thread (IOC_TAKE, where a C end makes a compare-and-swap);
        we copy it and give its cells to the next round (a stream read
        that takes part stores off and hands the record back)."""
        ring = self._in
        gone = ring.writers_gone(ring.q[_Q_WRITERS_EPOCH])   # before the indexes
        try:
            (u,) = struct.unpack("=Q", fcntl.ioctl(self._fd, IOC_TAKE, bytes(8)))
        except OSError as e:
            if e.errno == errno.ENOTCONN:
                raise _err(errno.ECONNABORTED, "the ipcd daemon is gone")
            if e.errno != errno.EAGAIN:
                raise
            if gone and ring.q[_Q_HEAD] == ring.q[_Q_TAIL]:
                return EOF
            if gone:
                fcntl.ioctl(self._fd, IOC_WAKE)     # the daemon reaps
            return None
        c = _cell_index(u, ring.ncells)
        length, off = ring.cw[4 * c + 2], ring.cw[4 * c + 3]
        if length > ring.msg_max or off > length or (off and self.is_message):
            ring.cq[2 * c] = self._cell_word(CELL_FULL, u)
            raise _err(errno.EIO, "bad record (len=%d off=%d)" % (length, off))
        n = length - off if self.is_message or maxlen <= 0 else min(length - off, maxlen)
        out = self._copy_out(ring, (u % ring.ncells) * CELL_SIZE + off, n)
        if not self.is_message and off + n < length:
            ring.cw[4 * c + 3] = off + n
            ring.q[_Q_RPART] = u + 1        # the next read goes on with it
            ring.cq[2 * c] = self._cell_word(CELL_FULL, u)     # back, the rest later
            return out
        if not self.is_message and ring.q[_Q_RPART] == u + 1:
            ring.q[_Q_RPART] = 0            # (a reader that finds it stale clears it too)
        for i in range(_cells(length) - 1, -1, -1):
            ring.cq[2 * _cell_index(u + i, ring.ncells)] = \
                self._cell_word(CELL_FREE, u + i + ring.ncells)
        # The doorbell moves head over what we freed, and wakes writers.
        full_fence()
        try:
            fcntl.ioctl(self._fd, IOC_WAKE)
        except OSError:
            pass
        return out

    def _put_locked(self, ring, src):
        head = ring.q[_Q_HEAD]
        tail = ring.q[_Q_TAIL]
        space = ring.capacity - ring.used(head, tail)
        length = len(src)
        if not ring.is_message:
            n = min(length, space)
            if n == 0 or (length <= PIPE_BUF and n < length):
                return None, tail
            self._copy_in(ring, tail, src[:n])
            return n, (tail + n) & _M64
        if length > ring.msg_max:
            raise _err(errno.EMSGSIZE, "message of %d bytes, channel takes "
                       "at most %d" % (length, ring.msg_max))
        pos = tail & ring.mask
        to_end = ring.capacity - pos
        rs = rec_size(length)
        if rs > to_end:
            # A record never wraps: fill the rest of the data area with a
            # pad record and start at offset 0, the pad alone if the record
            # does not fit behind it yet.
            if to_end > space:
                return None, tail
            ring.data[pos:pos + REC_HDR_SIZE] = _REC.pack(to_end - REC_HDR_SIZE,
                                                          REC_PAD)
            tail = (tail + to_end) & _M64
            space -= to_end
            pos = 0
        if rs > space:
            return None, tail
        ring.data[pos:pos + REC_HDR_SIZE] = _REC.pack(length, 0)
        ring.data[pos + REC_HDR_SIZE:pos + REC_HDR_SIZE + length] = src
        return length, (tail + rs) & _M64

    def try_read(self, maxlen=65536, backoff=None):
        """One attempt to read, as ring.c's ipcd_ring_read.  Returns bytes
        (for a message ring, one whole message, even b"" for an empty one),
        None when there is nothing yet, or EOF.  Raises OSError EIO."""
        if not self.roles & ROLE_READ:
            raise _err(errno.EBADF, "channel not opened for reading")
        if self.coord == COORD_QUEUES:
            return self._try_read_queue(maxlen)
        if self.coord == COORD_SHARED:
            return self._try_read_shared(maxlen)
        ring = self._in
        if ring.broken():
            raise _err(errno.EIO, "the daemon marked the ring broken")
        self._lock(ring, _I_RLOCK, backoff or _Backoff(None, ring))
        try:
            old = ring.q[_Q_HEAD]
            out, head = self._take_locked(ring, maxlen)
            if head != old:
                # TSO: our copies out of the slots are done before this store.
                ring.q[_Q_HEAD] = head
        finally:
            self._unlock(ring, _I_RLOCK)
        if head != old:
            self._wake(ring, _I_WR_SLEEPERS, _I_SPACE_SEQ)
        return out

    def _try_read_queue(self, maxlen):
        """try_read on a channel of queues (ipcd-ring(7), "Coordination by
        queues"): from a queue whose claim is our slot's (the daemon moves
        a claim for us, IOC_CLAIM), inside it by our slot's `inside`
        checked against the claim across a full barrier."""
        q0 = self._rqueues[0]
        gone = q0.writers_gone(q0.q[_Q_WRITERS_EPOCH])     # before the indexes
        busy = False
        n = len(self._rqueues)
        for k in range(n):
            i = (self._rnext + k) % n
            ring = self._rqueues[i]
            if ring.broken():
                raise _err(errno.EIO, "the daemon marked the ring broken")
            head = ring.q[_Q_HEAD]
            tail = ring.q[_Q_TAIL]
            if ring.q[_Q_HEAD] != head:
                busy = True             # another reader at work
                continue
            if ring.used(head, tail) == 0:
                continue
            if self._slot is None or ring.w[_I_RCLAIM] != self._slot + 1:
                try:
                    (slot,) = struct.unpack("=I", fcntl.ioctl(
                        self._fd, IOC_CLAIM, struct.pack("=I", i)))
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    busy = True
                    continue
                if 64 * (slot + 1) > len(self._rslots) * 4:
                    raise _err(errno.EIO, "the daemon gave slot %d" % slot)
                self._slot = slot
            inside = self._slot * 16 + 1        # the slot's second word
            self._rslots[inside] = (self._in_side | i << 8) + 1
            full_fence()
            if ring.w[_I_RCLAIM] != self._slot + 1:
                self._rslots[inside] = 0
                busy = True
                continue
            try:
                old = ring.q[_Q_HEAD]
                if self.is_message:
                    out, head = self._take_locked(ring, maxlen)
                    off = 0
                else:
                    out, head, off = self._take_records(ring, maxlen)
                    # TSO: the offset lands before the head that goes with it.
                    ring.w[_I_ROFF] = off
                if head != old:
                    ring.q[_Q_HEAD] = head
            finally:
                self._rslots[inside] = 0
            if head != old:
                self._wake(ring, _I_WR_SLEEPERS, _I_SPACE_SEQ)
            if out is None or out is EOF:
                continue                # a pad alone
            # Stopped inside a record: the rest of that write comes next.
            self._rnext = i if off else (i + 1) % n
            return out
        if busy:
            return None
        return EOF if gone else None

    def _take_records(self, ring, maxlen):
        """A stream's bytes from a queue's records, from roff into the one
        at head, record after record: (bytes, new head, new roff)."""
        head = ring.q[_Q_HEAD]
        tail = ring.q[_Q_TAIL]
        ring.used(head, tail)
        off = ring.w[_I_ROFF]
        parts = []
        got = 0
        while got < maxlen and head != tail:
            pos = head & ring.mask
            to_end = ring.capacity - pos
            length, flags = _REC.unpack_from(ring.data, pos)
            if flags & REC_PAD:
                if flags != REC_PAD or length != to_end - REC_HDR_SIZE or \
                        ring.used(head, tail) < to_end:
                    raise _err(errno.EIO, "bad pad record")
                head = (head + to_end) & _M64
                continue
            rs = rec_size(length)
            if flags or length > ring.msg_max or rs > ring.used(head, tail) or \
                    rs > to_end or off > length:
                raise _err(errno.EIO, "bad record (len=%d flags=0x%x off=%d)"
                           % (length, flags, off))
            k = min(length - off, maxlen - got)
            start = pos + REC_HDR_SIZE + off
            parts.append(ring.data[start:start + k].tobytes())
            got += k
            if off + k < length:
                off += k
                break
            head = (head + rs) & _M64
            off = 0
        return (b"".join(parts) if parts else None), head, off

    def _take_locked(self, ring, maxlen):
        we = ring.q[_Q_WRITERS_EPOCH]       # before tail: note 4
        head = ring.q[_Q_HEAD]
        tail = ring.q[_Q_TAIL]
        used = ring.used(head, tail)
        if used == 0:
            return (EOF if ring.writers_gone(we) else None), head
        if not ring.is_message:
            n = min(maxlen, used)
            return self._copy_out(ring, head, n), (head + n) & _M64
        pos = head & ring.mask
        to_end = ring.capacity - pos
        if used < REC_HDR_SIZE:
            raise _err(errno.EIO, "partial record header in the ring")
        length, flags = _REC.unpack_from(ring.data, pos)
        if flags & REC_PAD:
            # A pad fills exactly the rest of the data area.
            if flags != REC_PAD or length != to_end - REC_HDR_SIZE or used < to_end:
                raise _err(errno.EIO, "bad pad record (len=%d flags=0x%x)"
                           % (length, flags))
            head = (head + to_end) & _M64
            used -= to_end
            if used == 0:
                return None, head       # the next look may find EOF
            pos = 0
            to_end = ring.capacity
            if used < REC_HDR_SIZE:
                raise _err(errno.EIO, "partial record header in the ring")
            length, flags = _REC.unpack_from(ring.data, 0)
        rs = rec_size(length)
        if flags != 0 or length > ring.msg_max or rs > used or rs > to_end:
            raise _err(errno.EIO, "bad record (len=%d flags=0x%x)" % (length, flags))
        start = pos + REC_HDR_SIZE
        return ring.data[start:start + length].tobytes(), (head + rs) & _M64

    # ---- blocking calls ----------------------------------------------------

    def send(self, data, timeout=None):
        """Write all of data to a stream channel, polling for room."""
        if self.is_message:
            raise _err(errno.EINVAL, "message channel: use send_message")
        src = memoryview(data).cast("B")
        done = 0
        backoff = _Backoff(timeout, self._out)
        while done < len(src):
            n = self.try_write(src[done:], backoff)
            if n:
                done += n
                backoff.reset()
            else:
                backoff.pause()
        return done

    def recv(self, maxlen=65536, timeout=None):
        """Read up to maxlen bytes from a stream channel; b"" at EOF."""
        if self.is_message:
            raise _err(errno.EINVAL, "message channel: use recv_message")
        backoff = _Backoff(timeout, self._in)
        while True:
            out = self.try_read(maxlen, backoff)
            if out is EOF:
                return b""
            if out is not None:
                return out
            backoff.pause()

    def send_message(self, data, timeout=None):
        """Write one message, polling for room."""
        if not self.is_message:
            raise _err(errno.EINVAL, "stream channel: use send")
        backoff = _Backoff(timeout, self._out)
        while True:
            n = self.try_write(data, backoff)
            if n is not None:
                return n
            backoff.pause()

    def recv_message(self, timeout=None):
        """Read one whole message; None at EOF."""
        if not self.is_message:
            raise _err(errno.EINVAL, "stream channel: use recv")
        backoff = _Backoff(timeout, self._in)
        while True:
            out = self.try_read(0, backoff)
            if out is EOF:
                return None
            if out is not None:
                return out
            backoff.pause()


# ---- command line ------------------------------------------------------------

def _write_all(fd, buf):
    view = memoryview(buf)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _main(argv):
    usage = ("usage: ring_py.py send|recv PATH [BLOCK] | sendmsg PATH MSG... | "
             "recvmsg PATH N | info PATH\n")
    if len(argv) < 3:
        sys.stderr.write(usage)
        return 2
    cmd, path, rest = argv[1], argv[2], argv[3:]
    side = 1 if os.environ.get("CHAN_SIDE") == "1" else 0
    if cmd == "send":
        block = int(rest[0], 0) if rest else 65536
        with Channel(path, "write", side) as ch:
            while True:
                buf = os.read(0, block)
                if not buf:
                    break
                ch.send(buf)
    elif cmd == "recv":
        block = int(rest[0], 0) if rest else 65536
        with Channel(path, "read", side) as ch:
            while True:
                buf = ch.recv(block)
                if not buf:
                    break
                _write_all(1, buf)
    elif cmd == "sendmsg":
        with Channel(path, "write", side) as ch:
            for arg in rest:
                ch.send_message(os.fsencode(arg))
    elif cmd == "recvmsg":
        count = int(rest[0]) if rest else 1
        with Channel(path, "read", side) as ch:
            for i in range(count):
                msg = ch.recv_message()
                if msg is None:
                    raise _err(errno.ENODATA, "end of file after %d of %d "
                               "messages" % (i, count))
                _write_all(1, msg + b"\n")
    elif cmd == "info":
        with Channel(path, "read", side) as ch:
            info = ch.info()
        _write_all(1, "".join("%s=%s\n" % kv for kv in info.items()).encode())
    else:
        sys.stderr.write(usage)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv))
    except (OSError, ValueError) as e:
        sys.stderr.write("ring_py: %s %s: %s\n"
                         % (sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "", e))
        sys.exit(1)
