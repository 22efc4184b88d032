/*
 * coord.h - how the processes that share a channel end take turns without a
 * lock (<ipcd/ring.h>, "Coordination").  One side of a channel is a set of
 * queues: rings of records, each written by one thread (its owner) and
 * read by one thread at a time (its claimant), coord_queues.c; or one
 * shared ring of cells, coord_shared.c; or, as before either, one ring
 * with lock words, coord_lock.c over ring.c.  The daemon, the C API and
 * the shim use them through one table of calls (struct ipcd_coord_ops).
 * Every call is non-blocking and returns a count or -errno, as ringops.h.
 */
#ifndef IPCD_COORD_H
#define IPCD_COORD_H

#include <stdbool.h>
#include <stdint.h>

#include "ringops.h"

/*
 * Queues, reader slots and writer slots are taken alike: an entry whose
 * word (word(set, i)) holds the thread's id is the thread's; the first
 * time it takes one whose word is 0, or else a dead thread's, by one
 * compare-and-swap.  *cache keeps (tid << 32) | (index + 1) of the last
 * answer.  Returns the index, -ENOENT (none yet, take false) or -ENOSPC
 * (every entry has a live thread); *fresh says whether it was taken now
 * (a dead thread's may still show what that thread left).
 */
typedef _Atomic uint32_t *(*ipcd_word_fn)(void *set, unsigned i);
int ipcd_entry_of(void *set, unsigned n, ipcd_word_fn word, _Atomic uint64_t *cache,
		  uint32_t tid, bool take, bool *fresh);
/* Free the entries whose word names a dead thread; how many. */
unsigned ipcd_entry_free_dead(void *set, unsigned n, ipcd_word_fn word);

struct ipcd_qset {
	unsigned n;			/* queues of the side */
	unsigned side;
	bool stream;			/* the channel is a stream: reads cross records */
	struct ipcd_view q[IPCD_QUEUES_MAX];
	struct ipcd_rslot *rs;		/* the channel's reader slots */
	unsigned nrs;
	_Atomic uint64_t wcache;	/* (tid << 32) | (queue + 1): a writer's queue */
	_Atomic uint64_t rcache;	/* (tid << 32) | (slot + 1): a reader's slot */
	_Atomic unsigned next;		/* the queue a reader looks at first */
	/* What readers here last saw: bit i while queue i had records when
	 * last looked at; most reads look only at those, and every
	 * IPCD_QSET_LOOKS-th read (or one that finds none there) at all. */
	_Atomic uint32_t seen;
	_Atomic uint32_t looks;
	_Atomic uint32_t slow_tid;	/* a thread that wrote through the daemon,
					   into its queue (the first): it takes a
					   queue of its own only once that is empty */
	/* A peek in progress: 1 + the queue this handle is inside, as the
	 * reader of slot peek_me, until consume; else 0. */
	unsigned peek_q, peek_me;
};

/* The queues that side `side` of the channel mapped at map (len bytes)
 * writes; -EINVAL if the channel is not coordinated by queues, or as
 * ipcd_view_attach. */
int ipcd_qset_attach(struct ipcd_qset *s, void *map, size_t len, unsigned side);

/*
 * Write buf as one record of the queue thread `tid` owns, taking a free
 * queue (or a dead thread's) the first time.  Returns bytes taken (a stream
 * write longer than PIPE_BUF may take fewer), -EAGAIN (the queue is full:
 * wait for space on ipcd_qset_wq), -ENOSPC (every queue has a live owner:
 * write through the daemon), -EPIPE, -EMSGSIZE or -EIO.
 */
ssize_t ipcd_qset_write(struct ipcd_qset *s, const void *buf, size_t len, uint32_t tid);

/* The index of the queue thread tid writes, taken for it the first time;
 * -ENOSPC if every queue has a live owner. */
int ipcd_qset_take(struct ipcd_qset *s, uint32_t tid);

/* The queue thread tid writes, for waiting on its space; NULL if none. */
struct ipcd_view *ipcd_qset_wq(struct ipcd_qset *s, uint32_t tid);

/*
 * Read from whichever queue has data and is free to take from, in turn:
 * one record (message channel; *full its length) or bytes of one writer
 * (stream).  Returns bytes, IPCD_EOF (every queue empty and every writer
 * gone), -EAGAIN (nothing to read), -EBUSY (a queue with data is being
 * read by another live thread: look again soon) or -EIO.  flags:
 * IPCD_IO_PEEK.
 */
ssize_t ipcd_qset_read(struct ipcd_qset *s, void *buf, size_t len, uint32_t tid,
		       unsigned flags, size_t *full);

/* Read in place (ipcd_ring_peek's contract): the next record of a queue
 * with data, which this reader stays inside (others pass that queue by)
 * until consume takes n bytes of it (a stream) or n records (0 or 1).
 * peek returns the length, IPCD_EOF, -EAGAIN, -EBUSY, -EALREADY or -EIO;
 * consume 0 or -EINVAL. */
ssize_t ipcd_qset_peek(struct ipcd_qset *s, struct ipcd_span sp[2], uint32_t tid);
int ipcd_qset_consume(struct ipcd_qset *s, uint64_t n);

/* For a reader that cannot compare-and-swap (the daemon does it for it):
 * take a reader slot for thread tid and the claim of queue i for it, as a
 * read would; returns the slot's index, -EBUSY (another reader is inside
 * or taking it), -ENOSPC (no slot free) or -EINVAL. */
int ipcd_qset_claim(struct ipcd_qset *s, unsigned i, uint32_t tid);

/* Whether a read would not wait: data in some queue, end of file, or a
 * broken or damaged ring. */
int ipcd_qset_can_read(const struct ipcd_qset *s);

/* What ipcd_readable tells: bytes queued (stream), or the length of a
 * message a read would take; -EIO if damaged. */
ssize_t ipcd_qset_readable(const struct ipcd_qset *s);

/* Payload bytes of the records in every queue, less what a stream read
 * already took of one; -EIO if damaged. */
ssize_t ipcd_qset_queued(const struct ipcd_qset *s);

/* Give back what thread tid holds: its queue (once empty: until then, its
 * records come before any it may write elsewhere), its reader slot, and
 * the claims that name the slot. */
void ipcd_qset_release(struct ipcd_qset *s, uint32_t tid);

/* Free what dead threads hold (the daemon, now and then); how many. */
unsigned ipcd_qset_reap(struct ipcd_qset *s);

/*
 * One shared ring of cells (IPCD_COORD_SHARED, coord_shared.c): writers
 * reserve cells by fetch-and-add, readers take committed records by
 * compare-and-swap.  Calls as the queues' above.
 */
struct ipcd_shared {
	struct ipcd_view v;		/* the side's ring; v.data: the payload */
	struct ipcd_cell *cell;		/* one entry per cell */
	uint64_t ncells;		/* a power of two */
	uint64_t room;			/* cells a writer may see reserved */
	uint32_t rec_max;		/* largest record (stream: PIPE_BUF) */
	bool stream;
	struct ipcd_wslot *ws;		/* writer slots */
	unsigned nws;
	_Atomic uint64_t wcache;	/* (tid << 32) | (slot + 1) */
	_Atomic uint64_t seen_head;	/* head as a writer here last loaded it */
	/* A peek in progress: the record at ticket peek_u is TAKEN by this
	 * handle, and showed peek_n bytes from its off. */
	bool peeking;
	uint64_t peek_u;
	uint32_t peek_n;
};

int ipcd_shared_attach(struct ipcd_shared *s, void *map, size_t len, unsigned side);

/* Write buf as one record (a stream write longer than PIPE_BUF may take
 * less): bytes taken, -EAGAIN (no room: wait on s->v for space),
 * -ENOSPC (every writer slot has a live thread: write through the
 * daemon), -EPIPE, -EMSGSIZE or -EIO. */
ssize_t ipcd_shared_write(struct ipcd_shared *s, const void *buf, size_t len, uint32_t tid);

/*
 * The steps of a write, for a peer that cannot fetch-and-add (the daemon
 * makes them for it, IPCD_IOC_RESERVE): reserve the cells of a record of
 * len bytes for thread tid, noted in its writer slot, and set *t to the
 * ticket; returns the slot's index or what ipcd_shared_write returns.
 * The peer then fills the cells and commits them (ring.h).  take: the
 * next record, TAKEN by tid (IPCD_IOC_TAKE), after moving head over what
 * was consumed (advance: that alone); 0 with *u, -EAGAIN or -EIO.
 */
int ipcd_shared_reserve(struct ipcd_shared *s, size_t len, uint32_t tid, uint64_t *t);
int ipcd_shared_take(struct ipcd_shared *s, uint32_t tid, uint64_t *u);
void ipcd_shared_advance(struct ipcd_shared *s);

/* Read one record (message; *full its length) or, from a stream, bytes
 * of records in turn: bytes, IPCD_EOF, -EAGAIN or -EIO.  flags:
 * IPCD_IO_PEEK. */
ssize_t ipcd_shared_read(struct ipcd_shared *s, void *buf, size_t len, uint32_t tid,
			 unsigned flags, size_t *full);

/* Read in place (ipcd_ring_peek's contract): take the next record and
 * show its bytes not yet read, in one span or two (it may wrap); they stay
 * the caller's until consume takes n bytes of them (a stream; the rest
 * goes back to be read) or n records (0 or 1).  peek returns the length,
 * IPCD_EOF, -EAGAIN, -EALREADY or -EIO; consume 0 or -EINVAL. */
ssize_t ipcd_shared_peek(struct ipcd_shared *s, struct ipcd_span sp[2], uint32_t tid);
int ipcd_shared_consume(struct ipcd_shared *s, uint64_t n);

int ipcd_shared_can_read(const struct ipcd_shared *s);
/* Whether a published record is there to take (holes are not). */
int ipcd_shared_has_data(const struct ipcd_shared *s);
int ipcd_shared_can_write(const struct ipcd_shared *s, size_t need);
/* Room for a record of need bytes, readers or not. */
int ipcd_shared_has_room(const struct ipcd_shared *s, size_t need);

/* Bytes (stream) or the next message's length readable now; -EIO. */
ssize_t ipcd_shared_readable(const struct ipcd_shared *s);
/* Payload bytes of every published record not yet taken; -EIO. */
ssize_t ipcd_shared_queued(const struct ipcd_shared *s);

/* Give back thread tid's writer slot (it has no reservation between
 * calls). */
void ipcd_shared_release(struct ipcd_shared *s, uint32_t tid);

/* Free what dead threads hold: their reservations (never published) and
 * the records they were taking (back to be taken); how many. */
unsigned ipcd_shared_reap(struct ipcd_shared *s);

/*
 * One table of calls per design (coord_lock.c, coord_queues.c,
 * coord_shared.c), so that every end of a channel (the C API, the shim
 * through it, the daemon's slow path) reads, writes, waits and polls a
 * side the same way whatever coordinates it.  st is the side's state: a
 * struct ipcd_view (lock), struct ipcd_qset (queues) or struct
 * ipcd_shared (shared), of `size` bytes, made by attach.  Returns are as
 * the designs' own calls above.
 */
struct ipcd_coord_ops {
	const char *name;		/* as IPCD_COORD_NAMES */
	size_t size;
	int (*attach)(void *st, void *map, size_t len, unsigned side);
	/* The side's first ring: its header holds the ends, the sleepers,
	 * the state and the futex words of the side. */
	struct ipcd_view *(*view)(void *st);
	/* An anonymous channel's rules (ring.h): the holders of r0's ends
	 * count, end wend writes the side (ipcd_view_set_ends on each of
	 * its rings). */
	void (*set_ends)(void *st, struct ipcd_ring *r0, unsigned wend);
	/* anc: attachments (SCM_RIGHTS); only the lock's rings carry them,
	 * the others refuse a write that has some with -EOPNOTSUPP. */
	ssize_t (*write)(void *st, const void *buf, size_t len, uint32_t tid,
			 const struct ipcd_anc_ops *anc);
	ssize_t (*read)(void *st, void *buf, size_t len, uint32_t tid, unsigned flags,
			size_t *full, const struct ipcd_anc_ops *anc);
	/* NULL: reading in place is not offered (-EOPNOTSUPP). */
	ssize_t (*peek)(void *st, struct ipcd_span sp[2], uint32_t tid);
	int (*consume)(void *st, uint64_t n);
	/* A read or write said -EBUSY: another thread is inside; wait for
	 * it to leave (0: try again; -errno). */
	int (*busy)(void *st, enum ipcd_dir dir);
	/* The ring thread tid waits on for room (its own queue), NULL if
	 * it has none yet (it may take one: try again).  A write that says
	 * -ENOSPC (no queue or writer slot free for the thread) goes
	 * through the daemon, a write(2) on the channel file. */
	struct ipcd_view *(*space_view)(void *st, uint32_t tid);
	/* Whether a published record or byte is there to read (a reserved,
	 * unwritten one is not), and whether there is room for a write of
	 * need bytes by thread tid (readers or not; a broken ring: yes, the
	 * write fails at once). */
	int (*has_data)(const void *st);
	int (*has_room)(void *st, size_t need, uint32_t tid);
	ssize_t (*readable)(const void *st);
	ssize_t (*queued)(const void *st);
	/* Bytes ever written (tails) or taken, as the rings count them. */
	uint64_t (*moved)(const void *st, bool tails);
	void (*release)(void *st, uint32_t tid);
	unsigned (*reap)(void *st);
};

extern const struct ipcd_coord_ops ipcd_coord_lock, ipcd_coord_queues, ipcd_coord_shared;

/* busy for the designs without locks: another reader is inside the only
 * queue with data (a shared ring's never says -EBUSY); it is done in a
 * moment, and nothing of its is ours to wait on: give the CPU up once. */
int ipcd_coord_yield(void *st, enum ipcd_dir dir);

/*
 * Ready the rings at map (len bytes), coordinated by queues or one shared
 * ring, to serve a new pair of ends (pairs kept or recycled, ring.h):
 * only if every ring is empty and idle (-EBUSY otherwise, -EIO if the
 * directory is wrong); then no thread owns a queue or a reader or writer
 * slot any longer, but the daemon its own (the first).  Nothing may hold
 * an end meanwhile.  0 at once for the lock.
 */
int ipcd_map_recycle(void *map, size_t len);

/*
 * What the rings at map (len bytes), r0 and r1 (NULL but duplex) their
 * rings of roles 0 and 1, carried so far: payload bytes (record headers
 * and pads included, but for a ring of cells: its writer slots' counts)
 * and writes, modulo 2^32.
 */
void ipcd_map_counts(const void *map, size_t len, const struct ipcd_ring *r0,
		     const struct ipcd_ring *r1, uint64_t *bytes, uint32_t *writes);

/* The table of coordination `coord` (IPCD_COORD_*), NULL if unknown. */
const struct ipcd_coord_ops *ipcd_coord_ops(uint32_t coord);

#endif /* IPCD_COORD_H */
