/*
 * ringops.h - operations on a mapped ipcd ring, shared by the daemon, the C
 * API and the shim.  Every function here is non-blocking and returns a count
 * or -errno; waiting is a separate step (ipcd_ring_wait).  Nothing here trusts
 * the shared header: every index is bounded by the caller's own copy of the
 * capacity, so a corrupted ring yields -EIO, never a loop or a stray access.
 */
#ifndef IPCD_RINGOPS_H
#define IPCD_RINGOPS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ipcd/ring.h"

/*
 * syscall(2), made right here on x86-64 and AArch64: -1 and errno, or the
 * result.  A forked child waking a sleeper or asking its thread id then
 * touches no page of libc's code (nor of a library that wraps syscall),
 * each of which would cost it a page fault.
 */
static inline long ipcd_syscall(long n, long a, long b, long c, long d, long e, long f)
{
	long r;
#if defined(__x86_64__)
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "0"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;

	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	r = x0;
#else
	return syscall(n, a, b, c, d, e, f);
#endif
	if (r < 0 && r > -4096) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* A process's view of one ring: the mapping plus copies it trusts. */
struct ipcd_view {
	struct ipcd_ring *r;	/* the shared header */
	unsigned char *data;	/* start of the data area */
	uint64_t cap;		/* capacity, validated at attach */
	uint32_t features;	/* IPCD_RING_F_*, copied at attach */
	uint32_t msg_max;	/* copied at attach */
	size_t map_len;		/* bytes mapped */
	uint32_t eof_epoch;	/* EOF only once the writer epoch reached this */
	/* The other side's index as this view last loaded it, so that most
	 * calls need not read the cache line the other side writes.  Indexes
	 * only grow, so a hint understates what is there; one that cannot tell
	 * is reloaded.  seen_head is used under wlock only, seen_tail under
	 * rlock only; each counts only while its flag is set.  Meeting
	 * corruption clears both flags (either side may), so the next calls
	 * load and check both indexes again.  Clear after attach. */
	uint64_t seen_head;
	uint64_t seen_tail;
	atomic_bool head_ok;
	atomic_bool tail_ok;
	/* An anonymous channel's ring 0, whose holders count in the end-of-
	 * file and no-reader rules (ring.h), with the ends that write and
	 * read this ring; NULL for a named channel. */
	struct ipcd_ring *ends;
	uint8_t wend, rend;
	/* A queue's tail as some thread of this process last loaded it: an
	 * understatement, so bytes it shows past head are there (release
	 * and acquire: whoever uses it sees them); saves loading the
	 * producer's line for every record. */
	_Atomic uint64_t qtail;
	/* The first queue of a side of queues stands for the whole set in
	 * ipcd_ring_can_read, and so in waiting for data; else NULL. */
	const struct ipcd_qset *qs;
	/* A ring of cells (coord_shared.c): its state, for the same. */
	const struct ipcd_shared *sh;
	/* A peek in progress (ipcd_ring_peek): the read lock is held, head was
	 * peek_head, and what it showed ends at peek_end. */
	bool peeking;
	/* A ring of queues or cells: its wakers may have joined the wake-up
	 * barrier and wake with no fence, so a sleeper makes the barrier
	 * (ipcd_barrier_sleep).  A lock's release is the barrier itself. */
	bool nofence;
	uint64_t peek_head, peek_end;
};

struct ipcd_qset;
struct ipcd_shared;

/* The entry of ticket u among a ring of n cells (a power of two, at least
 * 64): consecutive tickets four entries of 16 bytes apart, so that a
 * writer filling one and a reader taking the one before touch different
 * cache lines (ring.h, "A ring of cells"). */
static inline uint64_t ipcd_cell_index(uint64_t u, uint64_t n)
{
	uint64_t i = u & (n - 1);

	return (i & 3) * (n / 4) + (i >> 2);
}

/* Cells a record of len payload bytes takes in a ring of cells. */
static inline uint64_t ipcd_cells_of(uint64_t len)
{
	return len ? (len + IPCD_CELL_SIZE - 1) / IPCD_CELL_SIZE : 1;
}

/* A span of ring memory that a peek shows. */
struct ipcd_span {
	const void *p;
	size_t n;
};

/* Flags for ipcd_ring_read and ipcd_ring_write. */
#define IPCD_IO_PEEK	(1u << 0)	/* read without consuming */

/* Returned by ipcd_ring_read at end of file (every writer gone). */
#define IPCD_EOF	(-ENODATA)

/* Directions for waiting; ipcd_ring_wait takes a mask of them. */
enum ipcd_dir { IPCD_WAIT_DATA = 1, IPCD_WAIT_SPACE = 2 };

/* Also in the mask: end the wait with -EINTR once a signal handler that
 * lacks SA_RESTART has run on this thread since the call began (sigmark,
 * below), as a blocked read(2) or write(2) would end; other handlers just
 * run.  For a library that wraps the program's handlers so that they count
 * in ipcd_sigwatch. */
#define IPCD_WAIT_SIGSAFE	0x100u

/*
 * Signal handlers as a thread sees them.  A wrapper around the program's
 * handlers (the shim's) adds 1 to `ran` on the thread a handler runs on,
 * and to `interrupting` too for one without SA_RESTART; for those it also
 * bumps and wakes the futex words in
 * `sleeping` if the thread is about to sleep on them: a wait that noted the
 * count when its call began (its sigmark) sees the change at its next look,
 * with no signal mask to change on the way.
 */
struct ipcd_sigwatch {
	_Atomic uint32_t interrupting;
	_Atomic uint32_t ran;		/* every handler run here */
	_Atomic(_Atomic uint32_t *) sleeping[2];
};
/* Initial-exec: one load from the thread pointer, no call, so that a call
 * can note the count in its first instructions (24 bytes of static TLS,
 * which glibc keeps room for even in a library loaded late). */
extern _Thread_local struct ipcd_sigwatch ipcd_sigwatch
	__attribute__((tls_model("initial-exec")));

/* State written after every fork, by the parent or the child: kept on as
 * few pages as possible, as each page written after a fork is copied. */
#define IPCD_FORKED __attribute__((section(".data.ipcd_forked")))
/* Code a forked child runs at once (its fork handlers): side by side on as
 * few pages as possible, as the child faults in each page of a library's
 * code it touches first (the linker keeps .text.hot.* sections together). */
#define IPCD_FORK_TEXT __attribute__((section(".text.hot.ipcd_fork")))

/* In a signal handler: the count goes up and the sleeping thread wakes. */
void ipcd_sigwatch_interrupt(void);

/* Lay out a fresh mapping in `map` (map_len bytes, zeroed by the caller):
 * the directory and the rings of a channel of these features. */
int ipcd_ring_format(void *map, size_t map_len, uint64_t capacity,
		     uint32_t features, uint32_t msg_max);

/* Bytes a simplex channel's mapping needs with a ring of `capacity`; 0 if
 * capacity is invalid. */
size_t ipcd_ring_map_size(uint64_t capacity);

/* Bytes a mapping of rings of `capacity` needs, for a channel of these
 * features (a duplex one has two rings); 0 if either is invalid. */
size_t ipcd_map_len(uint64_t capacity, uint32_t features);

/* The same with coordination coord (IPCD_COORD_*) and, for queues,
 * nqueues rings a side (else 0). */
size_t ipcd_map_len_coord(uint64_t capacity, uint32_t features, uint32_t coord,
			  uint32_t nqueues);

/* ipcd_ring_format with coordination coord and nqueues (as above). */
int ipcd_map_format(void *map, size_t map_len, uint64_t capacity, uint32_t features,
		    uint32_t msg_max, uint32_t coord, uint32_t nqueues);

/* The directory entry of the ring of `role` in the mapping at map, checked
 * with the whole directory; NULL with *err (if err) -EIO for corruption,
 * -EPROTO for another version, -EINVAL for a mapping too short or no ring
 * of that role. */
const struct ipcd_ring_desc *ipcd_map_desc(const void *map, size_t map_len, uint32_t role,
					   int *err);

/* The header of the ring of `role`, found as ipcd_map_desc finds it; NULL
 * if there is none or the directory is wrong. */
struct ipcd_ring *ipcd_map_ring(void *map, size_t map_len, uint32_t role);

/* Check the directory of `map` and the header of its ring of role 0 and
 * fill `v`; -EPROTO/-EIO/-EINVAL if unusable. */
int ipcd_view_attach(struct ipcd_view *v, void *map, size_t map_len);

/* The same for the ring of `role` (the side that writes it). */
int ipcd_view_attach_role(struct ipcd_view *v, void *map, size_t map_len, uint32_t role);

/* Record the writer epoch now, for the end-of-file rule of a new reader. */
void ipcd_view_mark_open(struct ipcd_view *v);

/* Count the holders of r0 (ring 0 of an anonymous channel) in v's rules:
 * end wend writes v's ring, the other end reads it. */
void ipcd_view_set_ends(struct ipcd_view *v, struct ipcd_ring *r0, unsigned wend);

/* Open read ends of v's ring, as the no-reader rule counts them. */
uint32_t ipcd_ring_readers(const struct ipcd_view *v);

/*
 * Move bytes.  write returns bytes taken (>0), -EAGAIN (no room; nothing
 * taken for stream writes of at most PIPE_BUF bytes or any message),
 * -EBUSY (another live thread holds the lock), -EPIPE (no reader open),
 * -EMSGSIZE, or -EIO.  read returns bytes copied (>= 0; a message longer
 * than len is cut and *full gets its length), -EAGAIN (empty), IPCD_EOF,
 * -EBUSY or -EIO.  `tid` is the caller's thread id (ipcd_tid()).
 */
ssize_t ipcd_ring_write(struct ipcd_view *v, const void *buf, size_t len,
			uint32_t tid);
ssize_t ipcd_ring_read(struct ipcd_view *v, void *buf, size_t len,
		       uint32_t tid, unsigned flags, size_t *full);

/*
 * Attachments (ring.h).  take: an attachment sits at head `at`; take it and
 * return how many bytes it covers (streams; message rings: anything >= 0),
 * or -errno to read nothing.  bind: the bytes [at, at + n) of a stream, or
 * the record written at `at`, are about to be published; attach, 0 or
 * -errno to publish nothing.  Both run with the ring's lock held.
 */
struct ipcd_anc_ops {
	ssize_t (*take)(void *arg, uint64_t at);
	int (*bind)(void *arg, uint64_t at, size_t n);
	void *arg;
};

/* As ipcd_ring_write and ipcd_ring_read, honouring attachments: a read
 * stops before the next attachment and takes one at head first (not when
 * peeking); a write with anc->bind set binds its bytes. */
ssize_t ipcd_ring_write_anc(struct ipcd_view *v, const void *buf, size_t len,
			    uint32_t tid, const struct ipcd_anc_ops *anc);
ssize_t ipcd_ring_read_anc(struct ipcd_view *v, void *buf, size_t len,
			   uint32_t tid, unsigned flags, size_t *full,
			   const struct ipcd_anc_ops *anc);

/*
 * A queue (IPCD_COORD_QUEUES): a ring of records that one thread writes and
 * one reads at a time, each sure of it by its claim (coord_queues.c), so no
 * lock is taken.  put_owned adds one record (stream: a write longer than
 * PIPE_BUF takes what fits, at least one byte, as one record) and returns
 * what ipcd_ring_write does, less -EBUSY; take_owned takes one record
 * (message; *full its length) or, on a stream, bytes of consecutive
 * records from where the last read stopped (roff), and returns bytes,
 * -EAGAIN or -EIO.  Neither wakes anyone: ipcd_ring_wake does, after
 * the wake-up barrier (a full fence, or none for a process that joined).
 */
ssize_t ipcd_ring_put_owned(struct ipcd_view *v, const void *buf, size_t len, bool stream);
ssize_t ipcd_ring_take_owned(struct ipcd_view *v, void *buf, size_t len, unsigned flags,
			     size_t *full, bool stream);
void ipcd_ring_wake(struct ipcd_view *v, enum ipcd_dir dir);
/* Reading a queue in place, by its claimant: the record at head, from
 * roff (past a pad first), in sp[0] (sp[1] empty): its length, -EAGAIN or
 * -EIO; then consume n bytes of it (stream) or n records (0 or 1): 0 or
 * -EINVAL.  Neither wakes anyone. */
ssize_t ipcd_ring_peek_owned(struct ipcd_view *v, struct ipcd_span sp[2]);
int ipcd_ring_consume_owned(struct ipcd_view *v, uint64_t n, bool stream);

/*
 * Read in place.  peek takes the read lock and shows what a read would
 * take, without taking it: every byte queued (in up to two spans, as the
 * data area wraps) or the next message (sp[0]); it returns their length,
 * -EAGAIN (empty), IPCD_EOF, -EBUSY (another live reader holds the lock),
 * -EALREADY (a peek of v is in progress) or -EIO.  Attachments are passed
 * over, as by ipcd_ring_read.  The spans stay valid, and other readers
 * wait, until consume, which takes n bytes (at most those shown), or n
 * messages (0 or 1), and lets the lock go; -EINVAL without a peek or for
 * more than it showed.
 */
ssize_t ipcd_ring_peek(struct ipcd_view *v, struct ipcd_span sp[2], uint32_t tid);
int ipcd_ring_consume(struct ipcd_view *v, uint64_t n);

/* Bytes (stream) or bytes of the next message (message ring) readable now;
 * -EIO if corrupt. */
ssize_t ipcd_ring_readable(const struct ipcd_view *v);

/* Payload bytes of everything queued (all messages); -EIO if corrupt. */
ssize_t ipcd_ring_queued(const struct ipcd_view *v);

/* Whether thread id tid (a lock owner, a queue's owner or claimant) can be
 * alive: not 0, in range, and a thread of that id exists. */
int ipcd_tid_alive(uint32_t tid);

/* Free bytes below the limit; -EIO if corrupt. */
ssize_t ipcd_ring_space(const struct ipcd_view *v);

/* The most bytes the producer may queue: ring.h's limit, or the capacity. */
uint64_t ipcd_ring_limit(const struct ipcd_view *v);

/* Set that limit (a power of two from IPCD_RING_MIN_CAPACITY to the
 * capacity), taking wlock: 0, -EBUSY (more is queued, or the lock is held
 * by a live thread), -EINVAL or -EIO. */
int ipcd_ring_set_limit(struct ipcd_view *v, uint64_t limit, uint32_t tid);

/*
 * Map the ring(s) of the channel open as fd: len bytes, as the daemon says
 * (IPCD_IOC_GETINFO's map_pages, or the file's st_blocks).  On success
 * *map and *len describe the mapping (munmap them); -EINVAL for a length
 * too short, or mmap's -errno.  The header is checked by ipcd_view_attach.
 */
int ipcd_ring_map(int fd, size_t len, void **map, size_t *lenp);

/* Whether every writer is gone, by the end-of-file rule (POLLHUP). */
int ipcd_ring_hup(const struct ipcd_view *v);

/* Whether a read / write could make progress or learn its end now. */
int ipcd_ring_can_read(const struct ipcd_view *v);
int ipcd_ring_can_write(const struct ipcd_view *v, size_t need);

/* Free bytes a writer of len bytes waits for (ipcd_ring_wait's need). */
size_t ipcd_ring_need(const struct ipcd_view *v, size_t len);

/*
 * Sleep until the ring may have changed in one of the directions of `dirs`
 * (a mask of enum ipcd_dir), a writer waiting for `need` free bytes: spin for
 * up to spin_ns first, then sleep on the futex words.  timeout (relative) NULL waits forever.  Returns 0,
 * -ETIMEDOUT or -EINTR.  Lock holders never call it.
 */
int ipcd_ring_wait(struct ipcd_view *v, unsigned dirs, size_t need,
		   const struct timespec *timeout, uint64_t spin_ns);

/* The same for a pair of rings: data is awaited on `in`, space on `out`
 * (the two directions of a duplex channel); with IPCD_WAIT_SIGSAFE, sigmark
 * is ipcd_sigwatch.interrupting as it was when the call began. */
int ipcd_ring_wait_pair(struct ipcd_view *in, struct ipcd_view *out,
			unsigned dirs, size_t need,
			const struct timespec *timeout, uint64_t spin_ns,
			uint32_t sigmark);

/* Wait for a busy lock of direction dir (DATA: rlock, SPACE: wlock) to be
 * released, taking it over from a dead holder.  Returns 0 or -EINTR/-EIO. */
int ipcd_ring_lock_wait(struct ipcd_view *v, enum ipcd_dir dir);

/* Release a lock held by a thread that no longer exists.  Returns 1 if it
 * did, 0 if the lock is free or held by a live thread, -EIO if corrupt. */
int ipcd_ring_lock_reap(struct ipcd_view *v, enum ipcd_dir dir);

/* Whether the daemon that serves the ring still runs (1), or not (0). */
int ipcd_ring_daemon_alive(const struct ipcd_view *v);

/*
 * The wake-up barrier (ring_wait.c): ipcd_barrier_view marks v as a ring
 * whose wakers may wake with no fence and lets this process be one (it
 * joins once per process; a queue or shared ring's attach calls it;
 * IPCD_BARRIER=fence in the environment declines); ipcd_barrier_joined
 * says whether it did; a sleeper on such a ring calls ipcd_barrier_sleep
 * after counting itself and before its last look: true if the barrier ran
 * on every process that joined, false if it could not (sleep in short
 * slices).
 */
void ipcd_barrier_view(struct ipcd_view *v);
bool ipcd_barrier_joined(void);
bool ipcd_barrier_sleep(void);

/* Wake every sleeper of direction dir, whatever the sleeper counts say. */
void ipcd_ring_wake_all(struct ipcd_view *v, enum ipcd_dir dir);

/* The calling thread's id, cached per thread and refreshed after fork;
 * ipcd_tid_forget() drops the cache (a fork child's first act). */
uint32_t ipcd_tid(void);
void ipcd_tid_forget(void);

#endif /* IPCD_RINGOPS_H */
