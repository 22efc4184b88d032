/*
 * coord_queues.c - coordination by queues (IPCD_COORD_QUEUES): every thread
 * that writes a side of a channel has a ring of its own, so writers never
 * meet; readers take turns on each ring by a claim they keep across reads.
 *
 * Writing.  A thread looks for the queue whose owner is its thread id; the
 * first time, it takes one whose owner is 0, or a dead thread's, by one
 * compare-and-swap.  From then on it is the ring's only producer: a record
 * goes in with plain stores (ipcd_ring_put_owned), and a full barrier
 * before it looks for sleeping readers.  A thread that dies in the middle
 * of a record leaves it unpublished: tail never moved.
 *
 * Reading.  Each reading thread has a slot of its own (struct ipcd_rslot),
 * taken once as a writer takes a queue.  A reader takes from queue q only
 * while its slot's `inside` names q and q's rclaim still names its slot
 * after a full barrier:
 *
 *	holder (slot h):                another reader (slot o) taking over:
 *	store rs[h].inside = q          CAS rclaim: h -> moving(h to o)
 *	full barrier                    full barrier
 *	load rclaim == h? take : stop   load rs[h].inside == q (and h alive)?
 *	store rs[h].inside = 0              store rclaim = h : store rclaim = o
 *
 * While the claim moves, it names the slot it moves from, and nobody else
 * takes it (unless the mover died: then the next carries the move on), so
 * no third reader can take it from o and miss h inside.
 *
 * One of the two sees the other's store (Dekker), so no two readers take
 * from one queue at once, and the holder's reads cost no read-modify-write.
 * Each thread writes only its own slot, so no one's store undoes
 * another's.  A holder stopped or killed outside a read holds nothing
 * back; one stopped inside a read holds back that queue only, until it
 * continues (a dead one is passed over).
 *
 * Turns.  Readers start at the queue after the one last read, so every
 * writer gets its turn; a stream read takes bytes of one writer only, so a
 * write of at most PIPE_BUF bytes (one record) reaches a reader whole.
 */
#include <errno.h>
#include <string.h>

#include "coord.h"

#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define SEQCST memory_order_seq_cst

int ipcd_qset_attach(struct ipcd_qset *s, void *map, size_t len, unsigned side)
{
	const struct ipcd_map *m = map;
	unsigned i;
	int r;

	if (len < IPCD_MAP_HDR_SIZE || m->coord != IPCD_COORD_QUEUES ||
	    m->nqueues == 0 || m->nqueues > IPCD_QUEUES_MAX)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->n = m->nqueues;
	s->side = side;
	s->stream = !(m->features & IPCD_RING_F_MESSAGE);
	for (i = 0; i < s->n; i++) {
		r = ipcd_view_attach_role(&s->q[i], map, len, IPCD_ROLE(side, i));
		if (r)
			return r;
	}
	/* Checked with the directory by the attach: in the header area. */
	s->rs = (struct ipcd_rslot *)((char *)map + m->rslot_off);
	s->nrs = m->nrslots;
	s->q[0].qs = s;		/* waiting for data waits for any queue */
	for (i = 0; i < s->n; i++)
		ipcd_barrier_view(&s->q[i]);	/* wake-ups with no fence (ring_wait.c) */
	return 0;
}

/* ---- writing ------------------------------------------------------------------ */

/* Queues and reader slots are taken alike (ipcd_entry_of, coord.c). */
static _Atomic uint32_t *owner_word(void *p, unsigned i)
{
	return &((struct ipcd_qset *)p)->q[i].r->owner;
}

static _Atomic uint32_t *slot_word(void *p, unsigned i)
{
	return &((struct ipcd_qset *)p)->rs[i].tid;
}

static int take_queue(struct ipcd_qset *s, uint32_t tid)
{
	bool fresh;

	return ipcd_entry_of(s, s->n, owner_word, &s->wcache, tid, true, &fresh);
}

ssize_t ipcd_qset_write(struct ipcd_qset *s, const void *buf, size_t len, uint32_t tid)
{
	struct ipcd_view *v;
	uint64_t old;
	ssize_t n;
	int q = take_queue(s, tid);

	if (q < 0)
		return q;
	v = &s->q[q];
	old = atomic_load_explicit(&v->r->tail, RELAXED);
	n = ipcd_ring_put_owned(v, buf, len, s->stream);
	/* Readers of every queue sleep on the first one's word. */
	if (atomic_load_explicit(&v->r->tail, RELAXED) != old)
		ipcd_ring_wake(&s->q[0], IPCD_WAIT_DATA);
	return n;
}

int ipcd_qset_take(struct ipcd_qset *s, uint32_t tid)
{
	return take_queue(s, tid);
}

struct ipcd_view *ipcd_qset_wq(struct ipcd_qset *s, uint32_t tid)
{
	bool fresh;
	int q = ipcd_entry_of(s, s->n, owner_word, &s->wcache, tid, false, &fresh);

	return q < 0 ? NULL : &s->q[q];
}

/* ---- reading ------------------------------------------------------------------ */

/* Whether q has a record (or a pad) to take; -EIO if its indexes cannot
 * be right. */
static bool plausible(const struct ipcd_view *v, uint64_t head, uint64_t tail)
{
	return tail - head <= v->cap && !((head | tail) & (IPCD_REC_ALIGN - 1));
}

/*
 * The indexes of a queue as a thread that is not inside it sees them: a
 * head read before and after the tail, the same both times (another reader
 * may be moving it).  0 with *head and *tail; -EAGAIN if the head kept
 * moving; -EIO if, with the head still, they cannot be right.
 */
static int stable(const struct ipcd_view *v, uint64_t *head, uint64_t *tail)
{
	uint64_t h;
	int k;

	for (k = 0; k < 4; k++) {
		*head = atomic_load_explicit(&v->r->head, ACQUIRE);
		*tail = atomic_load_explicit(&v->r->tail, ACQUIRE);
		h = atomic_load_explicit(&v->r->head, ACQUIRE);
		if (h == *head)
			return plausible(v, *head, *tail) ? 0 : -EIO;
	}
	return -EAGAIN;
}

static int has_data(struct ipcd_view *v)
{
	uint64_t head = atomic_load_explicit(&v->r->head, ACQUIRE);
	uint64_t tail = atomic_load_explicit(&v->qtail, ACQUIRE);
	int r;

	/* The hint understates the tail: data it shows is there. */
	if (tail != head && plausible(v, head, tail))
		return 1;
	r = stable(v, &head, &tail);
	if (r == -EAGAIN)
		return 1;	/* readers at work: let entering tell */
	if (r)
		return r;
	atomic_store_explicit(&v->qtail, tail, RELEASE);
	return head != tail;
}

/* The reader slot of thread tid, taken the first time (a free one, then a
 * dead thread's); -ENOSPC if every slot has a live thread. */
static int my_slot(struct ipcd_qset *s, uint32_t tid)
{
	bool fresh;
	int i = ipcd_entry_of(s, s->nrs, slot_word, &s->rcache, tid, true, &fresh);

	if (fresh)	/* a dead thread's may say it was inside */
		atomic_store_explicit(&s->rs[i].inside, 0, RELAXED);
	return i;
}

/*
 * rclaim: bits 0-7 the claimant slot + 1 (0: none); while a claim moves
 * (CLAIM_MOVING), bits 8-15 the slot + 1 it moves from, whose reader may
 * still be inside until the mover has looked.  Nobody takes a moving
 * claim from a live mover: it would lose sight of the reader inside.
 */
#define CLAIM_MOVING	(1u << 16)
#define CLAIM_HOLDER(c)	((c) & 0xffu)
#define CLAIM_FROM(c)	(((c) >> 8) & 0xffu)

/* Whether the thread of slot h (1 + index) lives. */
static bool slot_alive(const struct ipcd_qset *s, uint32_t h)
{
	return h != 0 && h <= s->nrs &&
	       ipcd_tid_alive(atomic_load_explicit(&s->rs[h - 1].tid, RELAXED));
}

/* Whether slot h is inside queue `role` with a live thread. */
static bool holder_inside(const struct ipcd_qset *s, uint32_t h, uint32_t role)
{
	if (h == 0 || h > s->nrs)
		return false;
	if (atomic_load_explicit(&s->rs[h - 1].inside, ACQUIRE) != role + 1)
		return false;
	return slot_alive(s, h);
}

/* Make the claim of queue i slot me's: 0, or -EBUSY if another reader is
 * inside it (or is taking it). */
static int claim(struct ipcd_qset *s, unsigned i, unsigned me)
{
	struct ipcd_view *v = &s->q[i];
	uint32_t role = IPCD_ROLE(s->side, i), mine = me + 1;
	uint32_t c = atomic_load_explicit(&v->r->rclaim, ACQUIRE), from, moving;

	if (c == mine)
		return 0;
	if (c & CLAIM_MOVING) {
		/* Another reader is taking it: wait, unless it died doing so
		 * (then carry its move on). */
		if (slot_alive(s, CLAIM_HOLDER(c)))
			return -EBUSY;
		from = CLAIM_FROM(c);
	} else {
		from = CLAIM_HOLDER(c);
	}
	moving = CLAIM_MOVING | from << 8 | mine;
	if (!atomic_compare_exchange_strong_explicit(&v->r->rclaim, &c, moving, SEQCST, RELAXED))
		return -EBUSY;
	/* After the swap, a full barrier: a holder inside stored its slot's
	 * inside before it checked rclaim, or sees our swap. */
	atomic_thread_fence(SEQCST);
	if (holder_inside(s, from, role)) {
		atomic_store_explicit(&v->r->rclaim, from, RELEASE);	/* back */
		return -EBUSY;
	}
	atomic_store_explicit(&v->r->rclaim, mine, RELEASE);
	return 0;
}

/* Become the reader inside queue i as slot me: 0, or -EBUSY if another
 * reader is inside it (or took it over). */
static int enter(struct ipcd_qset *s, unsigned i, unsigned me)
{
	struct ipcd_view *v = &s->q[i];
	uint32_t role = IPCD_ROLE(s->side, i), mine = me + 1;

	if (claim(s, i, me))
		return -EBUSY;
	atomic_store_explicit(&s->rs[me].inside, role + 1, RELAXED);
	atomic_thread_fence(SEQCST);
	if (atomic_load_explicit(&v->r->rclaim, ACQUIRE) != mine) {
		atomic_store_explicit(&s->rs[me].inside, 0, RELEASE);
		return -EBUSY;
	}
	return 0;
}

int ipcd_qset_claim(struct ipcd_qset *s, unsigned i, uint32_t tid)
{
	int me;

	if (i >= s->n)
		return -EINVAL;
	me = my_slot(s, tid);
	if (me < 0)
		return me;
	return claim(s, i, (unsigned)me) ? -EBUSY : me;
}

static void leave(struct ipcd_qset *s, unsigned me)
{
	/* Release: our stores of head and roff come first, for whoever
	 * takes the claim over next. */
	atomic_store_explicit(&s->rs[me].inside, 0, RELEASE);
}

static int writers_gone(const struct ipcd_qset *s)
{
	return ipcd_ring_hup(&s->q[0]);
}

/*
 * Visit the queues with data in turn, from the one after the last read,
 * and call fn(s, i, me, arg) inside each that slot me could enter, until
 * one returns other than -EAGAIN (nothing there after all: the next).
 * Returns what fn returned, or -EBUSY (a queue with data is being read by
 * another live thread: look again soon), IPCD_EOF or -EAGAIN.
 */
typedef ssize_t (*inside_fn)(struct ipcd_qset *s, unsigned i, unsigned me, void *arg);

/* Note what a look at queue i found (a hint for the next reads). */
static void saw(struct ipcd_qset *s, unsigned i, bool data)
{
	uint32_t seen = atomic_load_explicit(&s->seen, RELAXED), bit = 1u << i;

	if (!!(seen & bit) != data)
		atomic_store_explicit(&s->seen, data ? seen | bit : seen & ~bit, RELAXED);
}

/*
 * Take turns between the queues with records, from s->next on: fn on the
 * first this reader can enter.  Most calls look only at the queues that
 * had records when last looked at, so that one writer among many idle
 * queues costs no look at each of them per record; every
 * IPCD_QSET_LOOKS-th call, and one that finds nothing there, looks at
 * all (a writer that starts in an idle queue waits at most that many
 * reads of the others).  The end of file, -EAGAIN and errors come only
 * from a look at all, so that they are those a look at every queue in
 * turn from s->next meets.
 */
#define IPCD_QSET_LOOKS	16u

static ssize_t each_with_data(struct ipcd_qset *s, unsigned me, inside_fn fn, void *arg)
{
	unsigned k, i, start = atomic_load_explicit(&s->next, RELAXED);
	uint32_t seen = atomic_load_explicit(&s->seen, RELAXED);
	uint32_t looks = atomic_load_explicit(&s->looks, RELAXED);
	bool all = !seen || looks % IPCD_QSET_LOOKS == 0;
	int gone, d, busy = 0;
	ssize_t n;

	atomic_store_explicit(&s->looks, looks + 1, RELAXED);
	/* Before the indexes: if the writers were gone, their last records
	 * are in. */
	gone = writers_gone(s);
again:
	for (k = 0; k < s->n; k++) {
		i = (start + k) % s->n;
		if (!all && !(seen & (1u << i)))
			continue;
		d = has_data(&s->q[i]);
		if (d < 0) {
			if (!all)
				goto look_at_all;	/* errors as a look at all meets them */
			return d;
		}
		saw(s, i, d);
		if (!d)
			continue;
		if (enter(s, i, me)) {
			busy = 1;
			continue;
		}
		n = fn(s, i, me, arg);
		/* -EAGAIN: a pad alone, or taken just before us.  A failure
		 * took nothing: a look at all meets it (or what comes first). */
		if (n >= 0 || (n != -EAGAIN && all))
			return n;
		if (n != -EAGAIN)
			goto look_at_all;
	}
	if (!all) {
look_at_all:
		all = true;
		busy = 0;
		goto again;
	}
	if (busy)
		return -EBUSY;
	return gone ? IPCD_EOF : -EAGAIN;
}

struct read_arg {
	void *buf;
	size_t len, *full;
	unsigned flags;
};

static ssize_t read_inside(struct ipcd_qset *s, unsigned i, unsigned me, void *arg)
{
	struct read_arg *a = arg;
	ssize_t n = ipcd_ring_take_owned(&s->q[i], a->buf, a->len, a->flags, a->full, s->stream);
	/* Stopped inside a record: the rest of that write comes next, so
	 * that it reaches this reader whole; else the next queue's turn. */
	bool part = s->stream && atomic_load_explicit(&s->q[i].r->roff, RELAXED);

	leave(s, me);
	if (n >= 0 && !(a->flags & IPCD_IO_PEEK)) {
		atomic_store_explicit(&s->next, part ? i : (i + 1) % s->n, RELAXED);
		ipcd_ring_wake(&s->q[i], IPCD_WAIT_SPACE);
	}
	return n;
}

ssize_t ipcd_qset_read(struct ipcd_qset *s, void *buf, size_t len, uint32_t tid,
		       unsigned flags, size_t *full)
{
	size_t dummy;
	struct read_arg a = { buf, len, full ? full : &dummy, flags };
	int me = my_slot(s, tid);

	*a.full = 0;
	if (me < 0)
		return me;
	return each_with_data(s, (unsigned)me, read_inside, &a);
}

static ssize_t peek_inside(struct ipcd_qset *s, unsigned i, unsigned me, void *arg)
{
	ssize_t n = ipcd_ring_peek_owned(&s->q[i], arg);

	if (n < 0) {
		leave(s, me);
		return n;
	}
	/* Inside until consume: the bytes stay ours. */
	s->peek_q = i + 1;
	s->peek_me = me;
	return n;
}

ssize_t ipcd_qset_peek(struct ipcd_qset *s, struct ipcd_span sp[2], uint32_t tid)
{
	int me;

	if (s->peek_q)
		return -EALREADY;
	me = my_slot(s, tid);
	if (me < 0)
		return me;
	return each_with_data(s, (unsigned)me, peek_inside, sp);
}

int ipcd_qset_consume(struct ipcd_qset *s, uint64_t n)
{
	unsigned i;
	int r;

	if (!s->peek_q)
		return -EINVAL;
	i = s->peek_q - 1;
	r = ipcd_ring_consume_owned(&s->q[i], n, s->stream);
	if (r)
		return r;
	s->peek_q = 0;
	/* The rest of a record stopped in comes next, as after a read. */
	if (!(s->stream && atomic_load_explicit(&s->q[i].r->roff, RELAXED)))
		atomic_store_explicit(&s->next, (i + 1) % s->n, RELAXED);
	leave(s, s->peek_me);
	ipcd_ring_wake(&s->q[i], IPCD_WAIT_SPACE);
	return 0;
}

int ipcd_qset_can_read(const struct ipcd_qset *s)
{
	unsigned i;

	if (writers_gone(s))
		return 1;
	for (i = 0; i < s->n; i++)
		if (has_data((struct ipcd_view *)&s->q[i]) ||
		    (atomic_load_explicit(&s->q[i].r->state, RELAXED) & IPCD_RING_S_BROKEN))
			return 1;
	return 0;
}

ssize_t ipcd_qset_readable(const struct ipcd_qset *s)
{
	struct ipcd_ring_rec rec;
	uint64_t head, tail, pos;
	unsigned i;
	int r;

	if (s->stream)
		return ipcd_qset_queued(s);
	/* The next message of the first queue that has one: its header is
	 * read at a head that stayed put, so no writer reused the slot. */
	for (i = 0; i < s->n; i++) {
		const struct ipcd_view *v = &s->q[i];

		r = stable(v, &head, &tail);
		if (r == -EIO)
			return r;
		if (r || head == tail)
			continue;
		pos = head & (v->cap - 1);
		if (tail - head < sizeof(rec) || v->cap - pos < sizeof(rec))
			return -EIO;
		memcpy(&rec, v->data + pos, sizeof(rec));
		if (atomic_load_explicit(&v->r->head, ACQUIRE) != head)
			continue;
		if (rec.flags & IPCD_REC_PAD)
			continue;	/* the message after a pad: for the reader */
		if (rec.flags || rec.len > v->msg_max)
			return -EIO;
		return rec.len;
	}
	return 0;
}

/*
 * Payload bytes of the records of v between head and tail.  Another reader
 * may take them meanwhile and their writer reuse the space: a walk counts
 * only if head stayed where it was.  -EAGAIN if it moved, -EIO if the
 * records cannot be right.
 */
static ssize_t payload(const struct ipcd_view *v, uint64_t head, uint64_t tail)
{
	const uint64_t h0 = head;
	struct ipcd_ring_rec rec;
	uint64_t pos, to_end, sum = 0, size;
	int bad = 0;

	/* Every step moves head forward by at least a header: bounded. */
	while (head != tail && !bad) {
		pos = head & (v->cap - 1);
		to_end = v->cap - pos;
		if (tail - head < sizeof(rec)) {
			bad = 1;
			break;
		}
		memcpy(&rec, v->data + pos, sizeof(rec));
		if (rec.flags == IPCD_REC_PAD) {
			bad = rec.len != to_end - sizeof(rec) || tail - head < to_end;
			head += to_end;
			continue;
		}
		size = (sizeof(rec) + (uint64_t)rec.len + IPCD_REC_ALIGN - 1) &
		       ~(uint64_t)(IPCD_REC_ALIGN - 1);
		bad = rec.flags != 0 || rec.len > v->msg_max || size > tail - head ||
		      size > to_end;
		sum += rec.len;
		head += size;
	}
	if (atomic_load_explicit(&v->r->head, ACQUIRE) != h0)
		return -EAGAIN;
	return bad ? -EIO : (ssize_t)sum;
}

ssize_t ipcd_qset_queued(const struct ipcd_qset *s)
{
	uint64_t head, tail, sum = 0, off;
	unsigned i, tries;
	ssize_t n;
	int r;

	/* The records' payload, less what a stream read took of the record
	 * at head; a queue whose head keeps moving (being read meanwhile)
	 * is left out. */
	for (i = 0; i < s->n; i++) {
		for (tries = 0, n = -EAGAIN; tries < 4 && n == -EAGAIN; tries++) {
			r = stable(&s->q[i], &head, &tail);
			if (r == -EIO)
				return r;
			if (r)
				continue;
			off = s->stream ? atomic_load_explicit(&s->q[i].r->roff, RELAXED) : 0;
			n = head == tail ? 0 : payload(&s->q[i], head, tail);
			if (n > 0)
				n -= off < (uint64_t)n ? (ssize_t)off : n;
		}
		if (n == -EIO)
			return n;
		if (n > 0)
			sum += (uint64_t)n;
	}
	return (ssize_t)sum;
}

/* ---- giving back ----------------------------------------------------------------- */

void ipcd_qset_release(struct ipcd_qset *s, uint32_t tid)
{
	unsigned i, j;
	uint32_t t;

	for (i = 0; i < s->n; i++) {
		/* A queue with records of ours still in it stays ours: a
		 * write of ours into another queue could be read first. */
		if (atomic_load_explicit(&s->q[i].r->owner, RELAXED) != tid ||
		    atomic_load_explicit(&s->q[i].r->head, ACQUIRE) !=
		    atomic_load_explicit(&s->q[i].r->tail, RELAXED))
			continue;
		/* Release: our records are in before the queue is free. */
		t = tid;
		atomic_compare_exchange_strong_explicit(&s->q[i].r->owner, &t, 0, RELEASE,
							RELAXED);
	}
	for (j = 0; j < s->nrs; j++) {
		if (atomic_load_explicit(&s->rs[j].tid, RELAXED) != tid)
			continue;
		for (i = 0; i < s->n; i++) {
			t = j + 1;	/* not a claim moving: its mover decides */
			atomic_compare_exchange_strong_explicit(&s->q[i].r->rclaim, &t, 0,
								RELEASE, RELAXED);
		}
		atomic_store_explicit(&s->rs[j].inside, 0, RELAXED);
		t = tid;
		atomic_compare_exchange_strong_explicit(&s->rs[j].tid, &t, 0, RELEASE, RELAXED);
	}
	if ((uint32_t)(atomic_load_explicit(&s->wcache, RELAXED) >> 32) == tid)
		atomic_store_explicit(&s->wcache, 0, RELAXED);
	if ((uint32_t)(atomic_load_explicit(&s->rcache, RELAXED) >> 32) == tid)
		atomic_store_explicit(&s->rcache, 0, RELAXED);
}

unsigned ipcd_qset_reap(struct ipcd_qset *s)
{
	/* A freed slot's inside is left as it was: its next thread clears it
	 * when it takes the slot, and no one trusts it of a slot without a
	 * live thread. */
	return ipcd_entry_free_dead(s, s->n, owner_word) +
	       ipcd_entry_free_dead(s, s->nrs, slot_word);
}

/* ---- the table of calls (coord.h) ------------------------------------------------- */

static int q_attach(void *st, void *map, size_t len, unsigned side)
{
	return ipcd_qset_attach(st, map, len, side);
}

static struct ipcd_view *q_view(void *st)
{
	return &((struct ipcd_qset *)st)->q[0];
}

static void q_set_ends(void *st, struct ipcd_ring *r0, unsigned wend)
{
	struct ipcd_qset *s = st;
	unsigned i;

	/* A writer's own queue says whether a reader is left. */
	for (i = 0; i < s->n; i++)
		ipcd_view_set_ends(&s->q[i], r0, wend);
}

static ssize_t q_write(void *st, const void *buf, size_t len, uint32_t tid,
		       const struct ipcd_anc_ops *anc)
{
	struct ipcd_qset *s = st;
	ssize_t n;

	if (anc && anc->bind)
		return -EOPNOTSUPP;
	/* Bytes of the thread's still in the daemon's queue come first: it
	 * writes there until they are read. */
	if (atomic_load_explicit(&s->slow_tid, RELAXED) == tid && !ipcd_qset_wq(s, tid) &&
	    atomic_load(&s->q[0].r->head) != atomic_load(&s->q[0].r->tail))
		return -ENOSPC;
	n = ipcd_qset_write(s, buf, len, tid);
	if (n == -ENOSPC)
		atomic_store_explicit(&s->slow_tid, tid, RELAXED);
	return n;
}

static ssize_t q_peek(void *st, struct ipcd_span sp[2], uint32_t tid)
{
	return ipcd_qset_peek(st, sp, tid);
}

static int q_consume(void *st, uint64_t n)
{
	return ipcd_qset_consume(st, n);
}

static ssize_t q_read(void *st, void *buf, size_t len, uint32_t tid, unsigned flags,
		      size_t *full, const struct ipcd_anc_ops *anc)
{
	(void)anc;	/* no attachments here */
	return ipcd_qset_read(st, buf, len, tid, flags, full);
}

static struct ipcd_view *q_space_view(void *st, uint32_t tid)
{
	return ipcd_qset_wq(st, tid);
}

static int q_has_data(const void *st)
{
	const struct ipcd_qset *s = st;
	unsigned i;

	for (i = 0; i < s->n; i++)
		if (has_data((struct ipcd_view *)&s->q[i]) > 0)
			return 1;
	return 0;
}

/* Room below a ring's limit for need bytes (a broken one: yes). */
static int room_for(const struct ipcd_view *v, size_t need)
{
	ssize_t n = ipcd_ring_space(v);

	return n < 0 || (size_t)n >= (need ? need : 1);
}

static int q_has_room(void *st, size_t need, uint32_t tid)
{
	struct ipcd_qset *s = st;
	struct ipcd_view *own = ipcd_qset_wq(s, tid);
	unsigned i;
	uint32_t o;

	if (own)
		return room_for(own, ipcd_ring_need(own, need));
	/* A queue free to take is room; with none, the write goes through
	 * the daemon's queue. */
	for (i = 1; i < s->n; i++) {
		o = atomic_load_explicit(&s->q[i].r->owner, RELAXED);
		if (!o || !ipcd_tid_alive(o))
			return 1;
	}
	return room_for(&s->q[0], ipcd_ring_need(&s->q[0], need));
}

static ssize_t q_readable(const void *st)
{
	return ipcd_qset_readable(st);
}

static ssize_t q_queued(const void *st)
{
	return ipcd_qset_queued(st);
}

static uint64_t q_moved(const void *st, bool tails)
{
	const struct ipcd_qset *s = st;
	uint64_t sum = 0;
	unsigned i;

	for (i = 0; i < s->n; i++)
		sum += atomic_load_explicit(tails ? &s->q[i].r->tail : &s->q[i].r->head, RELAXED);
	return sum;
}

static void q_release(void *st, uint32_t tid)
{
	ipcd_qset_release(st, tid);
}

static unsigned q_reap(void *st)
{
	return ipcd_qset_reap(st);
}

const struct ipcd_coord_ops ipcd_coord_queues = {
	.name = "queues",
	.size = sizeof(struct ipcd_qset),
	.attach = q_attach,
	.view = q_view,
	.set_ends = q_set_ends,
	.write = q_write,
	.read = q_read,
	.peek = q_peek,
	.consume = q_consume,
	.busy = ipcd_coord_yield,
	.space_view = q_space_view,
	.has_data = q_has_data,
	.has_room = q_has_room,
	.readable = q_readable,
	.queued = q_queued,
	.moved = q_moved,
	.release = q_release,
	.reap = q_reap,
};
