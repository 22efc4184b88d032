/*
 * ipcd/ring.h - the shared-memory rings of an ipcd channel (ABI version 2).
 *
 * This header is the one contract shared by the daemon, the shim, the C API
 * and any program in any language that maps a channel file.  ipcd-ring(7)
 * restates it for readers who do not speak C.
 *
 * A mapping is a directory of rings (all integers little-endian, as the
 * host):
 *
 *	0            struct ipcd_map: the channel's kind, how its ends are
 *	             coordinated, how many rings, how much to map, and at
 *	             desc_off one struct ipcd_ring_desc per ring: its kind, its
 *	             role, where its header and its data area sit, and its
 *	             capacity
 *	hdr_off      each ring's header, struct ipcd_ring, in the header area
 *	             (the first hdr_area bytes, at least IPCD_MAP_HDR_SIZE)
 *	data_off     each ring's data area of `capacity` bytes (a power of
 *	             two), page-aligned, after the header area
 *
 * Readers never assume where a ring sits: they find it in the directory,
 * by its role.  A role is the side that writes the ring (bits 0-7) and,
 * where the side has several rings (coord IPCD_COORD_QUEUES), the ring's
 * index among them (bits 8-15).  A simplex channel's side is 0: its writers
 * write, its readers read; a duplex channel (IPCD_RING_F_DUPLEX) has sides
 * 0 and 1, and side s writes the rings of side s and reads the other's.
 *
 * Coordination (ipcd_map.coord): how the processes that share an end take
 * turns.  IPCD_COORD_LOCK: one ring per side, its producers and its
 * consumers each take a lock word (wlock, rlock) per operation.
 * IPCD_COORD_QUEUES: nqueues rings per side, each written by one thread at
 * a time, the one whose id it holds in `owner`, taken by compare-and-swap
 * once (from 0) and given back by a store of 0.  Each consuming thread
 * takes a reader slot (struct ipcd_rslot, at rslot_off) the same way, and
 * a queue's `rclaim` names the slot whose thread may take from it; it
 * keeps the claim across operations.  A consumer takes from a queue only
 * while its slot's `inside` names the queue, stored and then checked
 * against `rclaim` across a full barrier; another consumer may take the
 * claim over by compare-and-swap when the holder's slot shows it outside
 * (it looks after the swap and a full barrier, and gives the claim back
 * otherwise).
 * Nobody waits for a lock: a writer with no queue free writes through the
 * daemon; a consumer that finds a queue in use reads the others.  What a
 * dead thread held is taken over by the next that finds it dead, or by the
 * daemon.  The header
 * of a ring repeats, in its cache line 0, what the directory says of it
 * (a copy that attach checks), so that code holding only a ring finds its
 * capacity and data.  A mapping whose magic is right and whose version is
 * not IPCD_RING_VERSION is refused with EPROTO (a client of version 1 reads
 * the directory's version at the same offset as its ring's and refuses
 * too); any other inconsistency is corruption, and users report EIO.
 *
 * A channel file reports size 0 (it is not a regular file with bytes at
 * offsets): its st_blocks (512-byte units) and IPCD_IOC_GETINFO say how
 * much to map.  A client whose mmap
 * insists on a file as long as the mapping maps the channel's ring file
 * instead: IPCD_RINGS_DIR/<inode number> under the mount's root, a file of
 * the mapping's size, with the channel's owner and mode, that maps the same
 * rings and counts as neither reader nor writer.
 *
 * head and tail are 64-bit byte counters that only grow; the byte at counter
 * value c lives at data[c & (capacity - 1)].  The ring is empty when
 * head == tail and full when tail - head == capacity.  Any other relation
 * (tail - head > capacity) is corruption, and users report EIO.
 *
 * Producer (holds wlock):
 *	h = load_acquire(head)          pairs with the consumer's release of head
 *	room = (limit ? limit : capacity) - (tail - h)
 *	copy bytes to data[tail ...]
 *	store_release(tail, tail + n)   pairs with the consumer's acquire of tail
 *	full fence; if rd_sleepers != 0: data_seq += 1, FUTEX_WAKE(data_seq)
 *
 * Consumer (holds rlock):
 *	t = load_acquire(tail)          pairs with the producer's release of tail
 *	copy bytes from data[head ...]
 *	store_release(head, head + n)   pairs with the producer's acquire of head
 *	full fence; if wr_sleepers != 0: space_seq += 1, FUTEX_WAKE(space_seq)
 *
 * Either side may use the other's index from its own earlier load while that
 * shows room (or bytes) enough: indexes only grow, so it understates.
 *
 * Sleeping (a reader; writers mirror it with wr_sleepers and space_seq):
 *	rd_sleepers += 1 (sequentially consistent), s = data_seq,
 *	on a ring of queues or cells membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
 *	(if it fails: sleep at most about 10 ms at a time), re-check the ring,
 *	FUTEX_WAIT(data_seq, s),
 *	rd_sleepers -= 1.
 *
 * A waker registered with MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED may
 * leave its full fence out: the sleeper's membarrier runs one on its CPU.
 *
 * Message channels (IPCD_RING_F_MESSAGE) store records: an 8-byte
 * struct ipcd_ring_rec followed by `len` payload bytes, padded to 8.  A
 * record never wraps; when it does not fit before the end of the data area
 * the producer first writes a record with IPCD_REC_PAD that fills the rest.
 *
 * Locks (wlock, rlock): 0 when free, else the holder's thread id, with
 * IPCD_LOCK_WAITERS set while someone sleeps on the word.  A lock is held
 * only while bytes are copied, never while sleeping.  A waiter that finds
 * the holder's thread gone takes the lock over.
 *
 * Peer state (writers, readers, state, daemon_pid) is written only by the
 * daemon, from the opens and closes of the channel file.  It is the truth
 * about EOF and EPIPE; see ipcd-ring(7) for the exact end-of-file rule.  A
 * waiter that sleeps long re-checks that daemon_pid still lives: once the
 * daemon is gone nobody will publish an end of file, so it reports
 * ECONNABORTED instead of waiting forever.
 *
 * Attachments (ancillary data, such as descriptors passed with SCM_RIGHTS
 * on a socket pair the shim made) never enter the ring: the daemon keeps
 * them, each bound to the stream offset of the bytes or the record sent with
 * it, and anc_at shows the earliest one not yet taken.  The sender binds an
 * attachment (IPCD_IOC_ANC_BIND) while it holds wlock, before it publishes
 * the bytes.  A reader that honours attachments, having loaded tail, loads
 * anc_at: it reads no further than an attachment ahead of head, and one at
 * head it takes first (IPCD_IOC_ANC_TAKE).  A reader that ignores anc_at
 * loses the attachments it reads past, as a recv(2) without a control buffer
 * loses passed descriptors; the daemon closes them.
 *
 * A peer that cannot make futex calls publishes as above and then, if the
 * other side's sleeper count is non-zero, rings the doorbell: the ioctl
 * IPCD_IOC_WAKE on its channel file: the daemon wakes every sleeper of the
 * ring.
 */
#ifndef IPCD_RING_H
#define IPCD_RING_H

#include <stdint.h>

#ifdef __cplusplus
#include <atomic>
#define IPCD_ATOMIC(t) std::atomic<t>
#else
#include <stdatomic.h>
#define IPCD_ATOMIC(t) _Atomic t
#endif

#define IPCD_RING_MAGIC		0x52435049u	/* "IPCR" in memory order */
#define IPCD_RING_VERSION	2u
#define IPCD_MAP_HDR_SIZE	4096u		/* directory and ring headers */
#define IPCD_RING_HDR_SIZE	IPCD_MAP_HDR_SIZE	/* (its name in version 1) */
#define IPCD_MAP_RING_SLOT	512u		/* room of one ring header */
#define IPCD_MAP_RINGS_MAX	64u		/* rings a directory lists */
#define IPCD_MAP_AREA_MAX	(16u * IPCD_MAP_HDR_SIZE)	/* largest header area */

/* Coordination of the processes that share an end (ipcd_map.coord). */
#define IPCD_COORD_LOCK		0u	/* one ring a side, lock words */
#define IPCD_COORD_QUEUES	1u	/* a ring per writer, claimed once */
#define IPCD_COORD_SHARED	2u	/* one ring of cells, fetch-and-add */
#define IPCD_COORD_MAX		2u
#define IPCD_COORD_NAMES	{ "lock", "queues", "shared" }
#define IPCD_QUEUES_MAX		16u	/* rings a side may have */
#define IPCD_RSLOTS_MAX		64u	/* reader slots a channel may have */

/* A ring's role (struct ipcd_ring_desc). */
#define IPCD_ROLE_SIDE(role)	((role) & 0xffu)
#define IPCD_ROLE_QUEUE(role)	(((role) >> 8) & 0xffu)
#define IPCD_ROLE(side, queue)	((uint32_t)(side) | ((uint32_t)(queue) << 8))
#define IPCD_RING_MIN_CAPACITY	4096u		/* at least PIPE_BUF */
#define IPCD_RING_MAX_CAPACITY	(1u << 30)

/* Feature bits (ipcd_ring.features), fixed when the ring is made. */
#define IPCD_RING_F_MESSAGE	(1u << 0)	/* records keep write boundaries */
#define IPCD_RING_F_DUPLEX	(1u << 1)	/* two rings, one per direction */
#define IPCD_RING_F_KNOWN	(IPCD_RING_F_MESSAGE | IPCD_RING_F_DUPLEX)

/*
 * Anonymous channels (ipcd_ring.anon), made in pairs of open files for
 * the shim's pipe() and socketpair(): the kind of kernel object the channel
 * stands in for.  Each of the pair's two open files is one end: end 0 is a
 * pipe's read end or a socket pair's side 0, end 1 the write end or side 1.
 * The daemon marks the pair's open files with O_NOATIME, and end 1 also
 * with O_APPEND, so that F_GETFL tells a process which end it holds.
 * Anonymous channels follow pipe rules: a reader sees the end of file as
 * soon as no write end is open, whenever it came.
 */
#define IPCD_ANON_NONE		0u	/* a named channel */
#define IPCD_ANON_PIPE		1u
#define IPCD_ANON_PACKET	2u	/* a pipe in packet mode (O_DIRECT) */
#define IPCD_ANON_STREAM	3u	/* socketpair(AF_UNIX, SOCK_STREAM) */
#define IPCD_ANON_DGRAM		4u
#define IPCD_ANON_SEQPACKET	5u
#define IPCD_ANON_MAX		5u

/*
 * Holders.  The daemon learns that an open file is gone only after the
 * last close(2) of it has returned, and an exiting process does not wait
 * for that.  So the processes that hold an end of an anonymous channel say
 * so in ring 0: holders[e] lists them, one slot each, by a number each
 * process draws at random (62 bits, never 0) and passes on to the programs
 * it runs in its own place.  A process that
 * drops its last descriptor of end e clears its slot; when none is left
 * while the daemon still shows end e open (ends_open), end e is as good as
 * closed: its readers count one writer less, its writers one reader less,
 * and the process that cleared the last slot wakes them.  Before it makes a
 * process that inherits an end (fork, spawn), a holder fills a slot with
 * IPCD_HOLDER_CHILD | its own number, which the child takes over with its
 * own (IPCD_HOLDER_SPAWN too, for a child that runs another program).  A
 * slot nobody takes over (a program without the shim, a process killed),
 * or a full table (IPCD_HOLDER_LOST in the last slot), only means that the
 * end lasts until the daemon sees it closed, as for any process outside
 * this protocol: nobody counts an end closed while someone holds it.
 *
 * Serving.  A process that takes a pair, new or kept or handed back, for
 * a pipe or a socket pair adds one to ring 0's served: the mount's status
 * sums them (served=), the pipes that channels served.
 *
 * Keeping.  The process that clears the last slot of end e of a pair, and
 * so holds its open file alone, may keep the file instead of closing it
 * (end e counts as closed all the same): the pair's creator (ring 0's
 * creator, a holder number) keeps it for its next pipe() or socketpair();
 * another process hands it to the creator over the abstract datagram
 * socket IPCD_KEEP_SOCK_FMT (the creator's number), as SCM_RIGHTS, or
 * closes it if that fails.  Once it has both ends of a pair, and nobody
 * holds either, the creator empties the rings, sets the limit back, bumps
 * ring 0's reuse, and fills the slots again: a new pipe without a trip to
 * the daemon.
 *
 * Sites.  The process that makes a pair may note in ring 0's site a
 * number for the place in its program that asked for it, and in its
 * site_tail and site_writes the sums of its rings' tail and writes at that
 * moment (of a ring of cells, of its writer slots' bytes and writes);
 * whoever first sees that the
 * pair carried all it will (the last holder of a pipe's write end, a reader
 * of its end of file, the last holder of a socket pair's end once the
 * other end has no writer left) takes the number
 * with an atomic exchange and counts what the pair carried, the same sums
 * less site_tail and site_writes, for that place
 * (ipcd-shim(7), "Pipes that carry little").  Other clients leave them
 * alone.
 */
#define IPCD_HOLDERS		8
#define IPCD_HOLDER_CHILD	(1ull << 63)
#define IPCD_HOLDER_SPAWN	(1ull << 62)
#define IPCD_HOLDER_LOST	(~0ull)
#define IPCD_KEEP_SOCK_PREFIX	"ipcd.keep."	/* abstract; then the creator's number */
#define IPCD_KEEP_SOCK_FMT	IPCD_KEEP_SOCK_PREFIX "%llu"
/* Their names, as the user.ipcd.anon attribute gives and takes them. */
#define IPCD_ANON_NAMES		{ "", "pipe", "packet", "stream", "dgram", "seqpacket" }

/*
 * The extended attributes of a mount and its channels (ipcd(7),
 * "Attributes"): their names, and the names of a channel's kinds as
 * IPCD_XATTR_KIND gives and takes them, indexed by the ring's features &
 * IPCD_RING_F_KNOWN.
 */
#define IPCD_XATTR_PREFIX	"user.ipcd."
#define IPCD_XATTR_KIND		IPCD_XATTR_PREFIX "kind"
#define IPCD_XATTR_CAPACITY	IPCD_XATTR_PREFIX "capacity"
#define IPCD_XATTR_LABEL	IPCD_XATTR_PREFIX "label"
#define IPCD_XATTR_INFO		IPCD_XATTR_PREFIX "info"
#define IPCD_XATTR_ANON		IPCD_XATTR_PREFIX "anon"
#define IPCD_XATTR_STATUS	IPCD_XATTR_PREFIX "status"	/* of the mount's root */
#define IPCD_XATTR_COORD	IPCD_XATTR_PREFIX "coord"	/* IPCD_COORD_NAMES */
#define IPCD_KIND_NAMES		{ "stream", "message", "duplex-stream", "duplex-message" }

/* The directory of ring files under a mount's root (not listed). */
#define IPCD_RINGS_DIR		".rings"

/*
 * Pairs of ends made ahead of time.  The daemon makes anonymous channels
 * and opens their two ends itself, so that a process that needs a pipe or
 * a socket pair only takes one: it connects a SOCK_SEQPACKET socket to the
 * abstract AF_UNIX name IPCD_PAIRS_SOCK_FMT (the mount's device number, as
 * stat(2) gives it for the mount point, in major and minor), asks with
 * struct ipcd_pairs_req for count more pairs of a kind, and receives each
 * pair as one struct ipcd_pairs_msg with the two ends attached (SCM_RIGHTS,
 * end 0 first).  The daemon keeps at most IPCD_PAIRS_INFLIGHT pairs sent
 * and not yet asked for again on one connection; a request for more says
 * how many of those were taken.
 *
 * A pair whose two open files are all that is open on it (the creator's,
 * with both ends back: "Keeping"; or one sent and never taken, by the
 * process that made the connection) may be handed back on the connection,
 * rather than closed, when that process ends: struct ipcd_pairs_req with
 * magic IPCD_PAIRS_RETURN, count 0, and the two ends attached as they came
 * (end 0 first).  If nothing else is open on the channel, it belongs to
 * the connection's user, its rings are idle and no holder slot is filled,
 * the daemon empties its rings, sets their limits back, clears the creator
 * and, if there was one, bumps ring 0's reuse, and sends it as a new pair to the next process of
 * that user that asks; otherwise it closes them.  A pair made for a
 * connection that closed before it was sent serves the same way.
 */
#define IPCD_PAIRS_SOCK_FMT	"ipcd.%u.%u.pairs"
#define IPCD_PAIRS_MAGIC	0x53524950u	/* "PIRS" */
#define IPCD_PAIRS_RETURN	0x4e525452u	/* "RTRN" */
#define IPCD_PAIRS_INFLIGHT	16u
#define IPCD_PAIRS_DIR		".pairs"	/* the factory's own, not listed */
struct ipcd_pairs_req {
	uint32_t magic;		/* IPCD_PAIRS_MAGIC */
	uint32_t anon;		/* IPCD_ANON_*: the kind */
	uint32_t count;		/* pairs more */
	uint32_t reserved;	/* zero */
};
struct ipcd_pairs_msg {
	uint32_t magic;		/* IPCD_PAIRS_MAGIC */
	uint32_t anon;		/* IPCD_ANON_* */
	uint64_t map_len;	/* bytes to map, all rings */
};

/* A pipe's size when it is made (F_GETPIPE_SZ), as the kernel's. */
#define IPCD_PIPE_SIZE		65536u

/* State bits (ipcd_ring.state), set by the daemon only. */
#define IPCD_RING_S_BROKEN	(1u << 0)	/* corruption seen: everyone gets EIO */

/* Lock words. */
#define IPCD_LOCK_WAITERS	0x80000000u
#define IPCD_LOCK_TID_MAX	4194304u	/* PID_MAX_LIMIT: larger owners are corrupt */

/* Message record header. */
#define IPCD_REC_PAD		(1u << 0)	/* skip to the end of the data area */
#define IPCD_REC_ALIGN		8u

struct ipcd_ring_rec {
	uint32_t len;		/* payload bytes (for a pad: bytes after this header) */
	uint32_t flags;		/* IPCD_REC_*; other bits must be zero */
};

/*
 * The directory (ipcd_map at offset 0 of every mapping).  Its first eight
 * bytes are laid out as a version-1 ring header's were: magic, version.
 */
#define IPCD_RING_KIND_BYTES	1u	/* a byte stream */
#define IPCD_RING_KIND_RECORDS	2u	/* message records (IPCD_RING_F_MESSAGE) */
#define IPCD_RING_KIND_CELLS	3u	/* cells reserved by fetch-and-add */
#define IPCD_RING_KIND_NAMES	{ "", "bytes", "records", "cells" }

struct ipcd_ring_desc {
	uint32_t kind;		/* IPCD_RING_KIND_* */
	uint32_t role;		/* IPCD_ROLE(side that writes it, queue index) */
	uint64_t hdr_off;	/* its struct ipcd_ring, from the mapping's start */
	uint64_t data_off;	/* its data area, page-aligned */
	uint64_t capacity;	/* bytes in the data area, a power of two */
};

struct ipcd_map {
	uint32_t magic;		/* IPCD_RING_MAGIC */
	uint16_t version;	/* IPCD_RING_VERSION */
	uint16_t hdr_size;	/* sizeof(struct ipcd_map) */
	uint32_t features;	/* IPCD_RING_F_*: the channel's kind */
	uint32_t msg_max;	/* largest message payload (message channels) */
	uint64_t map_size;	/* bytes to map: every ring's data included */
	uint32_t anon;		/* IPCD_ANON_*, as in each ring's header */
	uint32_t nrings;	/* entries at desc_off, 1..IPCD_MAP_RINGS_MAX */
	uint32_t desc_off;	/* offset of the first struct ipcd_ring_desc */
	uint32_t desc_size;	/* sizeof(struct ipcd_ring_desc) */
	uint32_t coord;		/* IPCD_COORD_* */
	uint32_t nqueues;	/* rings a side has: 1, or 1..IPCD_QUEUES_MAX (queues) */
	uint64_t hdr_area;	/* bytes of directory and ring headers, whole pages */
	uint32_t rslot_off;	/* queues: offset of the reader slots; shared:
				   of the writer slots; else 0 */
	uint32_t nrslots;	/* queues, shared: 1..IPCD_RSLOTS_MAX, else 0 */
};

/* A reader's slot (queues), one cache line, written by its thread only,
 * but for the compare-and-swap that takes it. */
struct ipcd_rslot {
	IPCD_ATOMIC(uint32_t) tid;	/* the reading thread's id, or 0 */
	IPCD_ATOMIC(uint32_t) inside;	/* 1 + the role of the queue it takes
					   from now, or 0 */
	uint32_t reserved[14];		/* zero */
};

/*
 * A ring of cells (coord IPCD_COORD_SHARED, kind IPCD_RING_KIND_CELLS).
 * Its data area holds capacity / IPCD_CELL_SIZE cells of payload, and
 * right after them (at data_off + capacity) one struct ipcd_cell per
 * cell, then padding to a page.  tail counts the cells ever reserved and
 * head the cells below which every one has been consumed; cell c serves
 * the tickets (cell numbers) u with u % cells == c, in turn: its payload
 * is at byte c * IPCD_CELL_SIZE, its entry at index (c % 4) * (cells / 4)
 * + c / 4 (so that neighbouring tickets' entries lie on different cache
 * lines).  A record is
 * `len` payload bytes in ceil(len / IPCD_CELL_SIZE) consecutive cells (at
 * least one), which may wrap at the end of the area.
 *
 * A cell's word holds a state, a thread id and the low 32 bits of the
 * ticket it holds or waits for:
 *	FREE(u)   waiting for ticket u (whose writer may have reserved it)
 *	CONT(u)   a record's second or later cell, written
 *	FULL(u)   a record's first cell: len and off are valid
 *	TAKEN(u)  a record's first cell that reader `tid` is copying
 * Consuming ticket u stores FREE(u + cells) in every cell of the record.
 *
 * Writer (thread tid, in writer slot w, one reservation at a time):
 *	h = load_acquire(head); t0 = load(tail)
 *	if t0 + k - h > room: full (room: capacity in cells less
 *	    nslots * kmax, so the reservations between a check and its
 *	    fetch-and-add never reach a cell not yet consumed; with a
 *	    limit, at most limit / 16 but at least kmax)
 *	slot[w].rsv = PENDING; t = fetch_add(tail, k); slot[w].rsv = RSV(t, k)
 *	copy the payload; store CONT(t + i) for i >= 1; store len, off = 0
 *	store_release(word[t], FULL(t)); slot[w].rsv = 0
 *	full fence; wake sleeping readers
 * Reader: from head to tail, the first FULL(u) it can swap to TAKEN(u,
 * tid); cells that show FREE (reserved, not yet written) are holes, passed
 * over: having taken u, it looks again at the holes it passed, and takes
 * one that is FULL now instead (a writer's earlier record is committed
 * before its later one is reserved, so each writer's order holds).  It
 * copies, stores FREE(u + i + cells) in each cell of the record (a stream
 * read that takes part stores off and FULL(u) back), then moves head over
 * consumed cells by compare-and-swap and wakes sleeping writers.
 * A writer stopped inside a reservation holds back its own cells only:
 * readers pass them, and writers go on until tail reaches head + room.
 * The thread of a writer slot whose rsv is not 0, or of a TAKEN cell,
 * that no longer exists is reaped: its reservation's cells become FREE
 * for the next round (never published), its taken record FULL again.
 */
#define IPCD_CELL_SIZE		64u
#define IPCD_CELL_FREE		0u
#define IPCD_CELL_CONT		1u
#define IPCD_CELL_FULL		2u
#define IPCD_CELL_TAKEN		3u
#define IPCD_CELL_WORD(state, tid, ticket) \
	((uint64_t)(uint32_t)(ticket) << 32 | (uint64_t)(tid) << 3 | (uint64_t)(state))
#define IPCD_CELL_STATE(w)	((uint32_t)(w) & 7u)
#define IPCD_CELL_TID(w)	((uint32_t)(w) >> 3)
#define IPCD_CELL_TICKET(w)	((uint32_t)((w) >> 32))
struct ipcd_cell {
	IPCD_ATOMIC(uint64_t) word;	/* state, thread, ticket */
	IPCD_ATOMIC(uint32_t) len;	/* FULL/TAKEN: payload bytes */
	IPCD_ATOMIC(uint32_t) off;	/* stream: bytes of them already read */
};

/* A writer's slot (shared), one cache line, at rslot_off. */
#define IPCD_RSV_PENDING	(1ull << 63)	/* reserving: the ticket is not known yet */
#define IPCD_RSV(t, k)		((uint64_t)(k) << 48 | ((t) & 0xffffffffffffull))
#define IPCD_RSV_TICKET(r)	((r) & 0xffffffffffffull)
#define IPCD_RSV_CELLS(r)	((uint32_t)((r) >> 48) & 0x7fffu)
struct ipcd_wslot {
	IPCD_ATOMIC(uint32_t) tid;	/* the writing thread's id, or 0 */
	IPCD_ATOMIC(uint32_t) writes;	/* records its threads published, modulo
					   2^32: counted by the thread in it */
	IPCD_ATOMIC(uint64_t) rsv;	/* 0, IPCD_RSV_PENDING or IPCD_RSV(t, k) */
	IPCD_ATOMIC(uint64_t) bytes;	/* their payload bytes, likewise */
	uint64_t reserved[5];		/* zero */
};

/* writers_epoch packs two daemon-written counters into one atomic word. */
#define IPCD_WRITERS(we)	((uint32_t)((we) & 0xffffffffu))
#define IPCD_WEPOCH(we)		((uint32_t)((we) >> 32))

struct ipcd_ring {
	/* Cache line 0: written once by the daemon when the ring is made, a
	 * copy of what the directory says (checked at attach). */
	uint32_t magic;		/* IPCD_RING_MAGIC */
	uint16_t version;	/* IPCD_RING_VERSION */
	uint16_t hdr_size;	/* sizeof(struct ipcd_ring) */
	uint32_t features;	/* IPCD_RING_F_*: the channel's */
	uint32_t msg_max;	/* largest message payload (message rings) */
	uint64_t data_off;	/* offset of the data area in the mapping */
	uint64_t capacity;	/* size of the data area, a power of two */
	uint64_t map_size;	/* the whole mapping's, as the directory's */
	uint32_t anon;		/* IPCD_ANON_*: what an anonymous channel
				   stands in for; 0 for a named channel */
	uint32_t kind;		/* IPCD_RING_KIND_*, as the directory's */
	uint64_t reserved0[2];	/* zero */

	/* Cache line 1: written by the producer holding wlock. */
	IPCD_ATOMIC(uint64_t) tail;	/* bytes ever published */
	IPCD_ATOMIC(uint32_t) wlock;	/* producer lock: 0 or tid | WAITERS */
	IPCD_ATOMIC(uint32_t) limit;	/* most bytes queued at once (a pipe's
					   size); 0: the capacity.  Changed
					   under wlock only */
	IPCD_ATOMIC(uint32_t) reuse;	/* anonymous: bumped by a process that
					   makes a new pipe of the pair */
	IPCD_ATOMIC(uint32_t) writes;	/* writes that published bytes, modulo
					   2^32.  Under wlock only */
	IPCD_ATOMIC(uint32_t) owner;	/* queues: the writer's thread id, or 0 */
	IPCD_ATOMIC(uint32_t) wcpu;	/* a hint: 1 + the CPU the last writer that
					   woke readers ran on, or 0 */
	uint32_t reserved1[8];		/* zero */

	/* Cache line 2: written by the consumer holding rlock. */
	IPCD_ATOMIC(uint64_t) head;	/* bytes ever consumed */
	IPCD_ATOMIC(uint32_t) rlock;	/* consumer lock: 0 or tid | WAITERS */
	IPCD_ATOMIC(uint32_t) rclaim;	/* queues: 1 + the reader slot that
					   may take from it, or 0 */
	IPCD_ATOMIC(uint32_t) roff;	/* queues, stream: bytes of the record at
					   head already read */
	uint32_t reserved2a;		/* zero */
	IPCD_ATOMIC(uint64_t) rpart;	/* shared, stream: 1 + the ticket of a
					   record a read took part of (the
					   next read goes on with it), or 0 */
	IPCD_ATOMIC(uint32_t) rcpu;	/* a hint: 1 + the CPU the last reader that
					   woke writers ran on, or 0 */
	uint32_t reserved2[7];		/* zero */

	/* Cache line 3: sleeping and waking; rarely written. */
	IPCD_ATOMIC(uint32_t) data_seq;	   /* futex: producers bump it to wake readers */
	IPCD_ATOMIC(uint32_t) rd_sleepers; /* readers (and the daemon) asleep on data_seq */
	IPCD_ATOMIC(uint32_t) space_seq;   /* futex: consumers bump it to wake writers */
	IPCD_ATOMIC(uint32_t) wr_sleepers; /* writers (and the daemon) asleep on space_seq */
	IPCD_ATOMIC(uint64_t) creator;	   /* anonymous, ring 0: the holder id of
					      the process that made the pair */
	IPCD_ATOMIC(uint64_t) site;	   /* anonymous pipe, ring 0: what its
					      maker calls the place it was made
					      (0: none, or already counted) */
	IPCD_ATOMIC(uint64_t) site_tail;   /* tail when that pipe was made */
	IPCD_ATOMIC(uint32_t) site_writes; /* writes when that pipe was made */
	IPCD_ATOMIC(uint32_t) served;	   /* anonymous, ring 0: pipes and socket
					      pairs the pair served (modulo 2^32) */
	uint32_t reserved3[4];		   /* zero */

	/* Cache line 4: peer state, written by the daemon only. */
	IPCD_ATOMIC(uint64_t) writers_epoch; /* low 32: open write ends; high 32: epoch */
	IPCD_ATOMIC(uint32_t) readers;	     /* open read ends */
	IPCD_ATOMIC(uint32_t) state;	     /* IPCD_RING_S_* */
	IPCD_ATOMIC(uint32_t) daemon_pid;    /* the serving daemon, for liveness */
	uint32_t reserved4;		     /* zero */
	IPCD_ATOMIC(uint64_t) anc_at;	     /* 0, or 1 + offset of the first
						pending attachment */
	IPCD_ATOMIC(uint32_t) ends_open;     /* anonymous, ring 0: bit e while
						end e's open file exists */
	uint32_t reserved5[7];		     /* zero */

	/* Cache lines 5 and 6 (ring 0 of an anonymous channel): which
	 * processes hold each end, written by those processes (ring.h,
	 * "Holders"). */
	IPCD_ATOMIC(uint64_t) holders[2][IPCD_HOLDERS];
};

#ifndef __cplusplus
_Static_assert(sizeof(struct ipcd_ring_rec) == 8, "record header is 8 bytes");
_Static_assert(sizeof(struct ipcd_ring) == 448, "ring header is 7 cache lines");
_Static_assert(sizeof(struct ipcd_ring) <= IPCD_MAP_RING_SLOT, "a ring header fits its slot");
_Static_assert(sizeof(struct ipcd_map) == 64, "directory header is 64 bytes");
_Static_assert(sizeof(struct ipcd_ring_desc) == 32, "ring descriptor is 32 bytes");
_Static_assert(IPCD_MAP_RING_SLOT * (IPCD_MAP_RINGS_MAX + 1) + 64 * 32 + 64 * IPCD_RSLOTS_MAX <=
	       IPCD_MAP_AREA_MAX, "the largest directory fits the largest header area");
_Static_assert(__builtin_offsetof(struct ipcd_map, coord) == 40, "coord");
_Static_assert(__builtin_offsetof(struct ipcd_map, hdr_area) == 48, "hdr_area");
_Static_assert(__builtin_offsetof(struct ipcd_ring, owner) == 88, "owner on line 1");
_Static_assert(__builtin_offsetof(struct ipcd_ring, rclaim) == 140, "rclaim on line 2");
_Static_assert(__builtin_offsetof(struct ipcd_ring, roff) == 144, "roff on line 2");
_Static_assert(__builtin_offsetof(struct ipcd_ring, rpart) == 152, "rpart on line 2");
_Static_assert(__builtin_offsetof(struct ipcd_ring, wcpu) == 92, "wcpu on line 1");
_Static_assert(__builtin_offsetof(struct ipcd_ring, rcpu) == 160, "rcpu on line 2");
_Static_assert(sizeof(struct ipcd_rslot) == 64, "a reader slot is a cache line");
_Static_assert(sizeof(struct ipcd_wslot) == 64, "a writer slot is a cache line");
_Static_assert(__builtin_offsetof(struct ipcd_wslot, writes) == 4, "a slot's writes");
_Static_assert(__builtin_offsetof(struct ipcd_wslot, bytes) == 16, "a slot's bytes");
_Static_assert(sizeof(struct ipcd_cell) == 16, "a cell's entry is 16 bytes");
_Static_assert(__builtin_offsetof(struct ipcd_map, rslot_off) == 56, "rslot_off");
_Static_assert(__builtin_offsetof(struct ipcd_map, version) == 4, "version where v1 had it");
_Static_assert(__builtin_offsetof(struct ipcd_map, nrings) == 28, "nrings");
_Static_assert(__builtin_offsetof(struct ipcd_ring, tail) == 64, "tail on line 1");
_Static_assert(__builtin_offsetof(struct ipcd_ring, wlock) == 72, "wlock on line 1");
_Static_assert(__builtin_offsetof(struct ipcd_ring, head) == 128, "head on line 2");
_Static_assert(__builtin_offsetof(struct ipcd_ring, rlock) == 136, "rlock on line 2");
_Static_assert(__builtin_offsetof(struct ipcd_ring, data_seq) == 192, "wait words on line 3");
_Static_assert(__builtin_offsetof(struct ipcd_ring, rd_sleepers) == 196, "rd_sleepers");
_Static_assert(__builtin_offsetof(struct ipcd_ring, space_seq) == 200, "space_seq");
_Static_assert(__builtin_offsetof(struct ipcd_ring, wr_sleepers) == 204, "wr_sleepers");
_Static_assert(__builtin_offsetof(struct ipcd_ring, writers_epoch) == 256, "peer state on line 4");
_Static_assert(__builtin_offsetof(struct ipcd_ring, readers) == 264, "readers");
_Static_assert(__builtin_offsetof(struct ipcd_ring, state) == 268, "state");
_Static_assert(__builtin_offsetof(struct ipcd_ring, daemon_pid) == 272, "daemon_pid");
_Static_assert(__builtin_offsetof(struct ipcd_ring, anc_at) == 280, "anc_at");
_Static_assert(__builtin_offsetof(struct ipcd_ring, anon) == 40, "anon on line 0");
_Static_assert(__builtin_offsetof(struct ipcd_ring, limit) == 76, "limit on line 1");
_Static_assert(__builtin_offsetof(struct ipcd_ring, reuse) == 80, "reuse on line 1");
_Static_assert(__builtin_offsetof(struct ipcd_ring, ends_open) == 288, "ends_open");
_Static_assert(__builtin_offsetof(struct ipcd_ring, creator) == 208, "creator on line 3");
_Static_assert(__builtin_offsetof(struct ipcd_ring, site) == 216, "site on line 3");
_Static_assert(__builtin_offsetof(struct ipcd_ring, writes) == 84, "writes on line 1");
_Static_assert(__builtin_offsetof(struct ipcd_ring, site_writes) == 232, "site_writes");
_Static_assert(__builtin_offsetof(struct ipcd_ring, served) == 236, "served");
_Static_assert(__builtin_offsetof(struct ipcd_ring, holders) == 320, "holders on line 5");
#endif

/*
 * ioctls on an open channel file, each with one uint32_t:
 * SETROLE narrows the roles of this open file to the IPCD_ROLE_* bits given;
 * GETROLE reads them back, with the side in bits 8 and up; SETSIDE picks the
 * side (0 or 1) of a duplex channel: side s writes ring s and reads the other.
 */
#define IPCD_ROLE_READ		1u
#define IPCD_ROLE_WRITE		2u
#define IPCD_SIDE_SHIFT		8
#define IPCD_IOC_SETROLE	0x4004ab01u	/* _IOW(0xab, 1, uint32_t) */
#define IPCD_IOC_GETROLE	0x8004ab02u	/* _IOR(0xab, 2, uint32_t) */
#define IPCD_IOC_SETSIDE	0x4004ab03u	/* _IOW(0xab, 3, uint32_t) */

/* WAKE (no argument): the doorbell for peers that cannot make futex calls;
 * the daemon wakes every sleeper of the channel's rings.  Unlike fsync(2) it
 * takes no lock a parked write(2) holds. */
#define IPCD_IOC_WAKE		0x0000ab05u	/* _IO(0xab, 5) */

/* SHUTROLE: as SETROLE, but the roles given up count as having been used
 * (a shutdown(2)): a writer that leaves this way ends the stream even if
 * it never wrote. */
#define IPCD_IOC_SHUTROLE	0x4004ab06u	/* _IOW(0xab, 6, uint32_t) */

/* GETINFO: what the daemon knows of this open file, for a new mapping. */
struct ipcd_fileinfo {
	uint32_t roles;		/* IPCD_ROLE_* */
	uint32_t side;		/* duplex side, else 0 */
	uint32_t eof_epoch;	/* end of file once the writer epoch reached it */
	uint32_t map_pages;	/* bytes to map (all rings), in 4096-byte pages */
};
#define IPCD_IOC_GETINFO	0x8010ab04u	/* _IOR(0xab, 4, struct ipcd_fileinfo) */
#ifndef __cplusplus
_Static_assert(sizeof(struct ipcd_fileinfo) == 16, "fileinfo is 16 bytes");
#endif

/*
 * ANC_BIND (writer, holding wlock, before publishing): attach the
 * descriptors fds[0..nfds) of the calling process to the bytes at stream
 * offset `at` (`len` bytes of a stream, or the record written at `at` of a
 * message ring, pad included) of the ring this open file writes.  The
 * daemon takes its own copies of the descriptors.
 */
#define IPCD_ANC_MAX_FDS	253		/* as SCM_MAX_FD */
struct ipcd_anc_bind {
	uint64_t at;
	uint32_t len;
	uint32_t nfds;
	int32_t fds[IPCD_ANC_MAX_FDS];
	uint32_t reserved;	/* zero */
};
#define IPCD_IOC_ANC_BIND	0x4408ab07u	/* _IOW(0xab, 7, struct ipcd_anc_bind) */

/*
 * ANC_TAKE (reader, holding rlock, head == at): take the attachment at `at`
 * of the ring this open file reads.  With IPCD_ANC_DROP the daemon closes
 * the descriptors; else it keeps them for one claim on its descriptor
 * socket (the abstract AF_UNIX name "ipcd.<daemon_pid>.fds", a
 * SOCK_SEQPACKET socket): send the 8-byte token, receive one message with
 * the descriptors (SCM_RIGHTS).  An unclaimed token expires after
 * IPCD_ANC_CLAIM_SECS seconds.  On return `len` holds the bytes the
 * attachment covers (streams) and `nfds` the descriptors.
 */
#define IPCD_ANC_SOCK_FMT	"ipcd.%u.fds"	/* abstract name; %u: daemon_pid */
#define IPCD_ANC_DROP		1u
#define IPCD_ANC_CLAIM_SECS	10
struct ipcd_anc_take {
	uint64_t at;		/* in */
	uint32_t flags;		/* in: IPCD_ANC_* */
	uint32_t len;		/* out */
	uint32_t nfds;		/* out */
	uint32_t reserved;	/* zero */
	uint64_t token;		/* out */
};
#define IPCD_IOC_ANC_TAKE	0xc020ab08u	/* _IOWR(0xab, 8, struct ipcd_anc_take) */

/*
 * SYNC (no argument): the kernel tells the daemon of a file's last close
 * after close(2) has returned, so the peer counts in a ring can lag it.
 * The daemon handles what the kernel sends in order, so it answers SYNC
 * only once every close that came before is through: a peer that must know
 * (right after closing what may have been the last end, or after reaping a
 * child that held one) asks it once.
 */
#define IPCD_IOC_SYNC		0x0000ab09u	/* _IO(0xab, 9) */

/* GETCRED: who made the anonymous channel (a socket pair's SO_PEERCRED):
 * struct ucred { int32 pid; uint32 uid; uint32 gid; }. */
#define IPCD_IOC_GETCRED	0x800cab0au	/* _IOR(0xab, 10, struct ucred) */

/* QUEUE (coord queues): the index of the queue the calling thread writes
 * on this open file's side, taken for it the first time (a free one or a
 * dead thread's) as a compare-and-swap of its owner would: for peers that
 * cannot make one.  ENOSPC if every queue has a live owner (write through
 * the daemon), EIO on a broken channel, EINVAL on a channel without
 * queues, EBADF without the writer role. */
#define IPCD_IOC_QUEUE		0x8004ab0bu	/* _IOR(0xab, 11, uint32_t) */

/* CLAIM (coord queues): in, the index of a queue of the side this open
 * file reads; the daemon takes a reader slot for the calling thread (the
 * first time) and the queue's claim for that slot, as a compare-and-swap
 * would (ipcd-ring(7), "Coordination by queues"); out, the slot's index.
 * EBUSY if another reader is inside the queue or taking it, ENOSPC if no
 * slot is free, EIO on a broken channel, EINVAL on a channel without
 * queues or for no such queue, EBADF without the reader role. */
#define IPCD_IOC_CLAIM		0xc004ab0cu	/* _IOWR(0xab, 12, uint32_t) */

/* RESERVE (coord shared): in, the length of a record to write on this open
 * file's side; out, its first ticket.  The daemon takes a writer slot for
 * the calling thread (the first time) and reserves the record's cells for
 * it, as a fetch-and-add would ("A ring of cells" above); the caller fills
 * them and commits.  EAGAIN if the ring is full, ENOSPC if no slot is
 * free, EMSGSIZE, EPIPE, EIO, EINVAL on a channel without a shared ring,
 * EBADF without the writer role. */
#define IPCD_IOC_RESERVE	0xc008ab0du	/* _IOWR(0xab, 13, uint64_t) */

/* TAKE (coord shared): out, the ticket of the next published record of
 * the side this open file reads, now TAKEN by the calling thread, as a
 * compare-and-swap would; the daemon first moves head over the cells
 * consumed.  The caller copies, then frees the cells (or stores off and
 * FULL back) and rings the doorbell (IPCD_IOC_WAKE, which also moves
 * head).  EAGAIN if there is none, EIO, EINVAL, EBADF as above. */
#define IPCD_IOC_TAKE		0x8008ab0eu	/* _IOR(0xab, 14, uint64_t) */
#ifndef __cplusplus
_Static_assert(sizeof(struct ipcd_anc_bind) == 1032, "anc_bind is 1032 bytes");
_Static_assert(sizeof(struct ipcd_anc_take) == 32, "anc_take is 32 bytes");
_Static_assert(sizeof(struct ipcd_pairs_req) == 16, "pairs_req is 16 bytes");
_Static_assert(sizeof(struct ipcd_pairs_msg) == 16, "pairs_msg is 16 bytes");
#endif

#endif /* IPCD_RING_H */
