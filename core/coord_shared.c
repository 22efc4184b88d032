/*
 * coord_shared.c - coordination by one shared ring (IPCD_COORD_SHARED):
 * every writer of a side reserves cells of the side's one ring with a
 * fetch-and-add on its tail, fills them and commits the record by a store
 * to its first cell's word; readers take committed records by one
 * compare-and-swap on that word.  ipcd/ring.h ("A ring of cells") gives
 * the protocol; this file follows it.
 *
 * Nothing waits for another thread here: a reader passes over the cells
 * of a record still being written (a hole), and a writer's reservation
 * never lands on a cell not yet consumed, because a writer reserves only
 * while tail - head leaves room for every other writer slot's largest
 * reservation.  What a writer stopped inside its reservation holds back is
 * head: the others go on until tail reaches head + room.  What a dead
 * thread holds is reaped: a reservation's cells go to the next round
 * unpublished, a record being taken goes back to be taken.
 *
 * Nothing here trusts the ring: indexes are checked against the caller's
 * own copy of the cell count, lengths against the largest record.
 */
#include <errno.h>
#include <string.h>

#include "coord.h"

#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define SEQCST memory_order_seq_cst

#define FREE(u)		IPCD_CELL_WORD(IPCD_CELL_FREE, 0, u)
#define CONT(u)		IPCD_CELL_WORD(IPCD_CELL_CONT, 0, u)
#define FULL(u)		IPCD_CELL_WORD(IPCD_CELL_FULL, 0, u)
#define TAKEN(u, tid)	IPCD_CELL_WORD(IPCD_CELL_TAKEN, tid, u)

static struct ipcd_cell *cell_at(const struct ipcd_shared *s, uint64_t u)
{
	return &s->cell[ipcd_cell_index(u, s->ncells)];
}

/* Whether a cell showing ticket tk is past ticket u: u was consumed. */
static bool past(uint32_t tk, uint64_t u)
{
	return (int32_t)(tk - (uint32_t)u) > 0;
}

static bool broken(const struct ipcd_shared *s)
{
	return atomic_load_explicit(&s->v.r->state, RELAXED) & IPCD_RING_S_BROKEN;
}

int ipcd_shared_attach(struct ipcd_shared *s, void *map, size_t len, unsigned side)
{
	const struct ipcd_map *m = map;
	int r;

	if (len < IPCD_MAP_HDR_SIZE || m->coord != IPCD_COORD_SHARED)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	r = ipcd_view_attach_role(&s->v, map, len, IPCD_ROLE(side, 0));
	if (r)
		return r;
	/* The directory was checked with the ring's span and slots. */
	s->ncells = s->v.cap / IPCD_CELL_SIZE;
	s->cell = (struct ipcd_cell *)(s->v.data + s->v.cap);
	s->rec_max = s->v.msg_max;
	s->stream = !(m->features & IPCD_RING_F_MESSAGE);
	s->ws = (struct ipcd_wslot *)((char *)map + m->rslot_off);
	s->nws = m->nrslots;
	s->room = s->ncells - (uint64_t)s->nws * ipcd_cells_of(s->rec_max);
	s->v.sh = s;
	ipcd_barrier_view(&s->v);	/* wake-ups with no fence (ring_wait.c) */
	return 0;
}

/*
 * head and tail, or -EIO if they cannot be right: tail never runs more
 * than the cells ahead of head, but head may move between the two loads,
 * so only a head that stayed where it was condemns them; -EAGAIN if it
 * kept moving.
 */
static int indexes(const struct ipcd_shared *s, uint64_t *head, uint64_t *tail)
{
	uint64_t h;
	int k;

	for (k = 0; k < 8; k++) {
		/* Acquire on head first: the tail loaded after it is no older. */
		*head = atomic_load_explicit(&s->v.r->head, ACQUIRE);
		*tail = atomic_load_explicit(&s->v.r->tail, ACQUIRE);
		if (*tail - *head <= s->ncells)
			return 0;
		h = atomic_load_explicit(&s->v.r->head, ACQUIRE);
		if (h == *head)
			return -EIO;
	}
	return -EAGAIN;	/* readers at work: look again */
}

/* ---- dead threads' reservations ------------------------------------------------ */

/* Give the cells of a reservation that was never published to the next
 * round; how many (0 if it was published, or is not ours to judge). */
static unsigned void_rsv(struct ipcd_shared *s, uint64_t rsv)
{
	uint64_t t = IPCD_RSV_TICKET(rsv), k = IPCD_RSV_CELLS(rsv), i, w;
	unsigned n = 0;

	if (!k || k > ipcd_cells_of(s->rec_max))
		return 0;
	w = atomic_load_explicit(&cell_at(s, t)->word, ACQUIRE);
	if (IPCD_CELL_TICKET(w) != (uint32_t)t || IPCD_CELL_STATE(w) != IPCD_CELL_FREE)
		return 0;	/* published (or consumed): the record stands */
	for (i = 0; i < k; i++) {
		struct ipcd_cell *c = cell_at(s, t + i);

		w = atomic_load_explicit(&c->word, RELAXED);
		if (w != FREE(t + i) && w != CONT(t + i))
			continue;
		if (atomic_compare_exchange_strong_explicit(&c->word, &w, FREE(t + i + s->ncells),
							    RELEASE, RELAXED))
			n++;
	}
	return n;
}

/* ---- writing ------------------------------------------------------------------ */

static _Atomic uint32_t *wslot_word(void *p, unsigned i)
{
	return &((struct ipcd_shared *)p)->ws[i].tid;
}

/* The writer slot of thread tid, taken the first time; a dead thread's
 * comes with what it left (its reservation, given to the next round). */
static int my_wslot(struct ipcd_shared *s, uint32_t tid)
{
	bool fresh;
	int w = ipcd_entry_of(s, s->nws, wslot_word, &s->wcache, tid, true, &fresh);
	uint64_t rsv;

	if (w >= 0 && fresh) {
		rsv = atomic_load_explicit(&s->ws[w].rsv, ACQUIRE);
		if (rsv && rsv != IPCD_RSV_PENDING)
			void_rsv(s, rsv);
		/* A dead thread's ticket never noted (PENDING) shows as a hole
		 * nobody covers: the reaper gives it on. */
		atomic_store_explicit(&s->ws[w].rsv, 0, RELAXED);
	}
	return w;
}

/* Where byte off of the record at ticket u lies in the payload area,
 * which records wrap at its end. */
static uint64_t byte_at(const struct ipcd_shared *s, uint64_t u, uint32_t off)
{
	return ((u & (s->ncells - 1)) * IPCD_CELL_SIZE + off) & (s->v.cap - 1);
}

/* Bytes from at to the end of the area, at most len: the first span. */
static size_t first_span(const struct ipcd_shared *s, uint64_t at, size_t len)
{
	return len < s->v.cap - at ? len : (size_t)(s->v.cap - at);
}

/* Copy len bytes between buf and the payload of the record at ticket u,
 * from byte off of it. */
static void copy_out(const struct ipcd_shared *s, uint64_t u, uint32_t off, void *buf,
		     size_t len)
{
	uint64_t at = byte_at(s, u, off);
	size_t first = first_span(s, at, len);

	memcpy(buf, s->v.data + at, first);
	memcpy((char *)buf + first, s->v.data, len - first);
}

static void copy_in(const struct ipcd_shared *s, uint64_t u, const void *buf, size_t len)
{
	uint64_t at = byte_at(s, u, 0);
	size_t first = first_span(s, at, len);

	memcpy(s->v.data + at, buf, first);
	memcpy(s->v.data, (const char *)buf + first, len - first);
}

/* The cells a writer may see reserved: the ring's room, and with a limit
 * (a pipe's size, S bytes) S / 16 cells: as many writes of 16 bytes as S
 * holds (up to 4 S bytes in larger ones), and always one largest record. */
static uint64_t room_of(const struct ipcd_shared *s)
{
	uint64_t lim = atomic_load_explicit(&s->v.r->limit, RELAXED) / 16;

	if (!lim || lim >= s->room)
		return s->room;
	return lim > ipcd_cells_of(s->rec_max) ? lim : ipcd_cells_of(s->rec_max);
}

/*
 * Two readers that consume neighbouring records at once may each move
 * head before the other's cells show consumed to it (a store, then a load
 * of another word: without a full barrier either may miss the other's),
 * and leave head short of what is consumed.  The next consume moves it
 * on; where none may come (the ring full, or its writers gone), a full
 * barrier first, and head moved over what is consumed.
 */
static void catch_up(struct ipcd_shared *s)
{
	atomic_thread_fence(SEQCST);
	ipcd_shared_advance(s);
}

int ipcd_shared_reserve(struct ipcd_shared *s, size_t len, uint32_t tid, uint64_t *tp)
{
	struct ipcd_wslot *ws;
	uint64_t head, tail, t, k, i, room;
	int w, e;

	if (broken(s))
		return -EIO;
	if (ipcd_ring_readers(&s->v) == 0)
		return -EPIPE;
	if (len > s->rec_max)
		return -EMSGSIZE;
	k = ipcd_cells_of(len);
	w = my_wslot(s, tid);
	if (w < 0)
		return w;
	ws = &s->ws[w];
	/* head as this process last saw it understates it: room it shows is
	 * there, and the line readers write need not be loaded. */
	head = atomic_load_explicit(&s->seen_head, RELAXED);
	tail = atomic_load_explicit(&s->v.r->tail, ACQUIRE);
	room = room_of(s);
	if (tail - head > room - k) {
		e = indexes(s, &head, &tail);
		if (e)
			return e;
		if (tail + k - head > room) {
			/* Full, or head left short by readers that consumed
			 * neighbouring records at once, each before it saw
			 * the other's (see catch_up). */
			catch_up(s);
			e = indexes(s, &head, &tail);
			if (e)
				return e;
		}
		atomic_store_explicit(&s->seen_head, head, RELAXED);
		if (tail + k - head > room)
			return -EAGAIN;
	}
	/* The slot says a reservation is coming before the fetch-and-add
	 * makes it, so that a reaper that sees the ticket sees the slot
	 * busy; then which ticket. */
	atomic_store_explicit(&ws->rsv, IPCD_RSV_PENDING, RELAXED);
	t = atomic_fetch_add_explicit(&s->v.r->tail, k, SEQCST);
	atomic_store_explicit(&ws->rsv, IPCD_RSV(t, k), RELAXED);
	/* Acquire: the last round's reader copied out before we copy in. */
	for (i = 0; i < k; i++)
		if (atomic_load_explicit(&cell_at(s, t + i)->word, ACQUIRE) != FREE(t + i)) {
			/* Only a damaged ring (or a peer out of protocol)
			 * gets here: the room rule keeps rounds apart. */
			atomic_store_explicit(&ws->rsv, 0, RELAXED);
			return -EIO;
		}
	*tp = t;
	return w;
}

ssize_t ipcd_shared_write(struct ipcd_shared *s, const void *buf, size_t len, uint32_t tid)
{
	struct ipcd_cell *c0;
	uint64_t t, k, i;
	int w;

	if (len > s->rec_max && s->stream)
		len = s->rec_max;	/* the rest in later records */
	if (!len && s->stream)
		return 0;	/* as a pipe: nothing to write, no record */
	w = ipcd_shared_reserve(s, len, tid, &t);
	if (w < 0)
		return w;
	k = ipcd_cells_of(len);
	copy_in(s, t, buf, len);
	for (i = 1; i < k; i++)
		atomic_store_explicit(&cell_at(s, t + i)->word, CONT(t + i), RELAXED);
	c0 = cell_at(s, t);
	atomic_store_explicit(&c0->len, (uint32_t)len, RELAXED);
	atomic_store_explicit(&c0->off, 0, RELAXED);
	/* Release: the payload, the other cells' words and len first. */
	atomic_store_explicit(&c0->word, FULL(t), RELEASE);
	atomic_store_explicit(&s->ws[w].rsv, 0, RELEASE);
	/* The slot's counts: ours alone to write while we hold it. */
	atomic_store_explicit(&s->ws[w].writes,
			      atomic_load_explicit(&s->ws[w].writes, RELAXED) + 1, RELAXED);
	atomic_store_explicit(&s->ws[w].bytes,
			      atomic_load_explicit(&s->ws[w].bytes, RELAXED) + len, RELAXED);
	ipcd_ring_wake(&s->v, IPCD_WAIT_DATA);
	return (ssize_t)len;
}

/* ---- reading ------------------------------------------------------------------ */

/* Move head over the cells consumed from where it is; wake writers if it
 * moved. */
void ipcd_shared_advance(struct ipcd_shared *s)
{
	uint64_t h = atomic_load_explicit(&s->v.r->head, ACQUIRE), x = h;

	/* No tail needed: a cell not reserved this round shows its own
	 * ticket, never a later one. */
	while (x - h < s->ncells &&
	       past(IPCD_CELL_TICKET(atomic_load_explicit(&cell_at(s, x)->word, ACQUIRE)), x))
		x++;
	/* Consumed stays consumed: any head below x may go to x. */
	while (x > h)
		if (atomic_compare_exchange_weak_explicit(&s->v.r->head, &h, x, RELEASE, RELAXED)) {
			ipcd_ring_wake(&s->v, IPCD_WAIT_SPACE);
			return;
		}
}

/* The first ticket in [from, to) whose record is committed and not taken,
 * or to. */
static uint64_t first_full(const struct ipcd_shared *s, uint64_t from, uint64_t to,
			   uint64_t *hole)
{
	uint64_t u, w;

	for (u = from; u < to; u++) {
		w = atomic_load_explicit(&cell_at(s, u)->word, ACQUIRE);
		if (IPCD_CELL_TICKET(w) != (uint32_t)u) {
			if (!past(IPCD_CELL_TICKET(w), u) && *hole > u)
				*hole = u;	/* not yet this round's */
			continue;
		}
		if (IPCD_CELL_STATE(w) == IPCD_CELL_FULL)
			return u;
		if (IPCD_CELL_STATE(w) == IPCD_CELL_FREE && *hole > u)
			*hole = u;	/* reserved, not yet written */
	}
	return to;
}

/* Consume the record at ticket u of k cells: each cell to the next round,
 * the first last. */
static void consume(struct ipcd_shared *s, uint64_t u, uint64_t k)
{
	uint64_t i;

	for (i = k; i-- > 0;)
		atomic_store_explicit(&cell_at(s, u + i)->word, FREE(u + i + s->ncells), RELEASE);
	ipcd_shared_advance(s);
}

/*
 * Take the first committed record a reader may: 0 with *u (its first cell
 * now TAKEN by tid), -EAGAIN if there is none, -EIO.  Having taken one,
 * look again at the holes passed on the way: a record committed there
 * meanwhile may be an earlier one of the same writer, and goes first.
 */
static int take(struct ipcd_shared *s, uint32_t tid, uint64_t *up)
{
	uint64_t head, tail, u, hole, w, again;
	struct ipcd_cell *c;

	/* A stream's record a read took part of goes on first, so that no
	 * other record comes between its parts (one taken past it while it
	 * was a hole included). */
	u = atomic_load_explicit(&s->v.r->rpart, ACQUIRE);
	if (u) {
		uint64_t p = u--;

		c = cell_at(s, u);
		w = FULL(u);
		if (atomic_compare_exchange_strong_explicit(&c->word, &w, TAKEN(u, tid), ACQUIRE,
							    RELAXED)) {
			*up = u;
			return 0;
		}
		/* Consumed since (a stale mark): clear it.  Taken by another
		 * reader: it goes on with it, and we with what follows. */
		if (past(IPCD_CELL_TICKET(w), u))
			atomic_compare_exchange_strong_explicit(&s->v.r->rpart, &p, 0, RELAXED,
								RELAXED);
	}
	/* Most often the record at head is there to take: no hole passed,
	 * and no need to load the tail writers move. */
	head = atomic_load_explicit(&s->v.r->head, ACQUIRE);
	c = cell_at(s, head);
	w = FULL(head);
	if (atomic_load_explicit(&c->word, RELAXED) == w &&
	    atomic_compare_exchange_strong_explicit(&c->word, &w, TAKEN(head, tid), ACQUIRE,
						    RELAXED)) {
		*up = head;
		return 0;
	}
	for (;;) {
		int r = indexes(s, &head, &tail);

		if (r)
			return r;
		hole = UINT64_MAX;
		u = first_full(s, head, tail, &hole);
		if (u == tail)
			return -EAGAIN;
		c = cell_at(s, u);
		w = FULL(u);
		if (!atomic_compare_exchange_strong_explicit(&c->word, &w, TAKEN(u, tid), ACQUIRE,
							     RELAXED))
			continue;	/* another reader took it */
		if (hole < u) {
			uint64_t h2 = UINT64_MAX;

			again = first_full(s, hole, u, &h2);
			if (again < u) {
				/* Give it back, and take the earlier. */
				atomic_store_explicit(&c->word, FULL(u), RELEASE);
				continue;
			}
		}
		*up = u;
		return 0;
	}
}

int ipcd_shared_take(struct ipcd_shared *s, uint32_t tid, uint64_t *u)
{
	/* Whoever freed cells without moving head (a peer that cannot
	 * compare-and-swap) is caught up with first. */
	ipcd_shared_advance(s);
	if (broken(s))
		return -EIO;
	return take(s, tid, u);
}

static int writers_gone(const struct ipcd_shared *s)
{
	return ipcd_ring_hup(&s->v);
}

/*
 * Take the next record as reader tid: 0 with its ticket *u, its length
 * *rl and the bytes already read of it *off; IPCD_EOF once every writer
 * is gone and nothing is left (what a dead writer left unpublished is
 * reaped first); -EAGAIN; -EIO (a record whose lengths cannot be right
 * is handed back).
 */
static int take_record(struct ipcd_shared *s, uint32_t tid, uint64_t *u, uint32_t *rl,
		       uint32_t *off)
{
	struct ipcd_cell *c;
	uint64_t head, tail;
	int r;

	if (broken(s))
		return -EIO;
	r = take(s, tid, u);
	if (r == -EAGAIN && writers_gone(s)) {
		if (ipcd_shared_reap(s))
			r = take(s, tid, u);
		if (r == -EAGAIN)
			catch_up(s);
		if (r == -EAGAIN && !indexes(s, &head, &tail) && head == tail)
			return IPCD_EOF;
	}
	if (r)
		return r;
	c = cell_at(s, *u);
	*rl = atomic_load_explicit(&c->len, RELAXED);
	*off = atomic_load_explicit(&c->off, RELAXED);
	if (*rl > s->rec_max || *off > *rl || (*off && !s->stream)) {
		atomic_store_explicit(&c->word, FULL(*u), RELEASE);
		return -EIO;
	}
	return 0;
}

/* A stream's record u was read up to off: the next read goes on with it. */
static void part_left(struct ipcd_shared *s, uint64_t u, uint32_t off)
{
	atomic_store_explicit(&cell_at(s, u)->off, off, RELAXED);
	atomic_store_explicit(&s->v.r->rpart, u + 1, RELAXED);
}

/* Consume a record that a read took all of (or the rest of). */
static void done_with(struct ipcd_shared *s, uint64_t u, uint32_t rl)
{
	uint64_t p = u + 1;

	if (s->stream && atomic_load_explicit(&s->v.r->rpart, RELAXED) == p)
		atomic_compare_exchange_strong_explicit(&s->v.r->rpart, &p, 0, RELAXED, RELAXED);
	consume(s, u, ipcd_cells_of(rl));
}

/* Take the next record and read from it: all of it, or (a stream) what
 * len holds, the rest left for the next read. */
static ssize_t read_one(struct ipcd_shared *s, void *buf, size_t len, uint32_t tid,
			size_t *full)
{
	struct ipcd_cell *c;
	uint32_t rl, off;
	uint64_t u;
	size_t n;
	int r = take_record(s, tid, &u, &rl, &off);

	if (r)
		return r;
	c = cell_at(s, u);
	n = rl - off < len ? rl - off : len;
	copy_out(s, u, off, buf, n);
	if (full)
		*full = rl - off;
	if (s->stream && off + n < rl) {
		part_left(s, u, off + (uint32_t)n);
		/* Release: our copy (and off) before the next taker's. */
		atomic_store_explicit(&c->word, FULL(u), RELEASE);
		return (ssize_t)n;
	}
	done_with(s, u, rl);
	return (ssize_t)n;
}

/*
 * Copy record u's unread bytes (at most len) without taking it: only if
 * it is published and untouched from before the copy to after it (no
 * reader took it, or part of it, meanwhile; its cells are not reused
 * before it is consumed).  Its bytes, or -EAGAIN.
 */
static ssize_t look_at(const struct ipcd_shared *s, uint64_t u, void *buf, size_t len,
		       size_t *full)
{
	struct ipcd_cell *c = cell_at(s, u);
	uint32_t rl, off;
	size_t n;

	if (atomic_load_explicit(&c->word, ACQUIRE) != FULL(u))
		return -EAGAIN;
	rl = atomic_load_explicit(&c->len, RELAXED);
	off = atomic_load_explicit(&c->off, RELAXED);
	if (rl > s->rec_max || off > rl || (off && !s->stream))
		return -EAGAIN;	/* changing under us; a read tells if damaged */
	n = rl - off < len ? rl - off : len;
	copy_out(s, u, off, buf, n);
	/* Acquire: the copy is done before the word and off are looked at
	 * again. */
	atomic_thread_fence(ACQUIRE);
	if (atomic_load_explicit(&c->word, RELAXED) != FULL(u) ||
	    atomic_load_explicit(&c->off, RELAXED) != off)
		return -EAGAIN;
	if (full)
		*full = rl - off;
	return (ssize_t)n;
}

/*
 * A peek (IPCD_IO_PEEK): what a read would take now, in its order (the
 * record a read took part of, then the published records from head on),
 * copied while every record stays where it is, so that other readers
 * never find one gone for a moment.  Bytes, IPCD_EOF or -EAGAIN.
 */
static ssize_t peek_copy(struct ipcd_shared *s, void *buf, size_t len, size_t *full)
{
	uint64_t head, tail, u, p, hole;
	size_t got = 0, f = 0;
	ssize_t n;
	int r = indexes(s, &head, &tail);

	if (r)
		return r;
	p = atomic_load_explicit(&s->v.r->rpart, ACQUIRE);
	if (p && p - 1 - head < tail - head) {
		n = look_at(s, p - 1, buf, len, &f);
		if (n > 0)
			got = (size_t)n;
	}
	/* A message: one record; a stream: records while len has room. */
	for (u = head; u < tail && got < len && !(got && !s->stream); u++) {
		hole = UINT64_MAX;
		u = first_full(s, u, tail, &hole);
		if (u == tail)
			break;
		if (p && u == p - 1)
			continue;
		n = look_at(s, u, (char *)buf + got, len - got, got ? NULL : &f);
		if (n > 0)
			got += (size_t)n;
	}
	if (got) {
		if (full)
			*full = s->stream ? got : f;
		return (ssize_t)got;
	}
	if (!writers_gone(s))
		return -EAGAIN;
	catch_up(s);
	return !indexes(s, &head, &tail) && head == tail ? IPCD_EOF : -EAGAIN;
}

ssize_t ipcd_shared_read(struct ipcd_shared *s, void *buf, size_t len, uint32_t tid,
			 unsigned flags, size_t *full)
{
	size_t got, f;
	ssize_t n;

	if (flags & IPCD_IO_PEEK)
		return broken(s) ? -EIO : peek_copy(s, buf, len, full);
	n = read_one(s, buf, len, tid, &f);
	if (n < 0)
		return n;
	if (full)
		*full = f;
	got = (size_t)n;
	/* A stream read goes on through the records that follow, each
	 * writer's whole (none of PIPE_BUF bytes or less is split). */
	while (s->stream && got < len &&
	       (n = read_one(s, (char *)buf + got, len - got, tid, NULL)) > 0)
		got += (size_t)n;
	return (ssize_t)got;
}

ssize_t ipcd_shared_peek(struct ipcd_shared *s, struct ipcd_span sp[2], uint32_t tid)
{
	uint64_t u, at;
	uint32_t rl, off;
	int r;

	if (s->peeking)
		return -EALREADY;
	r = take_record(s, tid, &u, &rl, &off);
	if (r)
		return r;
	at = byte_at(s, u, off);
	sp[0].p = s->v.data + at;
	sp[0].n = first_span(s, at, rl - off);
	sp[1].p = s->v.data;
	sp[1].n = rl - off - sp[0].n;
	s->peeking = true;
	s->peek_u = u;
	s->peek_n = rl - off;
	return (ssize_t)(rl - off);
}

int ipcd_shared_consume(struct ipcd_shared *s, uint64_t n)
{
	struct ipcd_cell *c;
	uint64_t u = s->peek_u;

	if (!s->peeking || n > (s->stream ? s->peek_n : 1))
		return -EINVAL;
	s->peeking = false;
	c = cell_at(s, u);
	if (s->stream ? n == s->peek_n : n == 1) {
		done_with(s, u, atomic_load_explicit(&c->len, RELAXED));
		return 0;
	}
	if (s->stream)
		part_left(s, u, atomic_load_explicit(&c->off, RELAXED) + (uint32_t)n);
	/* Release: the caller's reads of the bytes come first. */
	atomic_store_explicit(&c->word, FULL(u), RELEASE);
	return 0;
}

int ipcd_shared_has_data(const struct ipcd_shared *s)
{
	uint64_t head, tail, hole = UINT64_MAX;

	if (indexes(s, &head, &tail))
		return 0;
	return first_full(s, head, tail, &hole) < tail;
}

int ipcd_shared_can_read(const struct ipcd_shared *s)
{
	uint64_t head, tail;

	if (broken(s) || indexes(s, &head, &tail))
		return 1;
	return ipcd_shared_has_data(s) || writers_gone(s);
}

int ipcd_shared_has_room(const struct ipcd_shared *s, size_t need)
{
	uint64_t head, tail, k;

	if (broken(s) || indexes(s, &head, &tail))
		return 1;
	k = ipcd_cells_of(need < s->rec_max ? need : s->rec_max);
	return tail + k - head <= room_of(s);
}

int ipcd_shared_can_write(const struct ipcd_shared *s, size_t need)
{
	return ipcd_ring_readers(&s->v) == 0 || ipcd_shared_has_room(s, need);
}

/* The bytes of published records: the next one's (all false, message
 * rings), or all of them. */
static ssize_t published(const struct ipcd_shared *s, bool all)
{
	uint64_t head, tail, u, w, hole = UINT64_MAX;
	ssize_t n = 0;
	struct ipcd_cell *c;
	uint32_t rl, off;
	int r = indexes(s, &head, &tail);

	if (r)
		return r == -EAGAIN ? 0 : r;
	for (u = first_full(s, head, tail, &hole); u < tail;
	     u = first_full(s, u + 1, tail, &hole)) {
		c = cell_at(s, u);
		rl = atomic_load_explicit(&c->len, RELAXED);
		off = atomic_load_explicit(&c->off, RELAXED);
		w = atomic_load_explicit(&c->word, ACQUIRE);
		if (w != FULL(u))
			continue;	/* taken meanwhile */
		if (rl > s->rec_max || off > rl)
			return -EIO;
		if (!all)
			return (ssize_t)rl;
		n += rl - off;
	}
	return n;
}

ssize_t ipcd_shared_readable(const struct ipcd_shared *s)
{
	return published(s, s->stream);
}

ssize_t ipcd_shared_queued(const struct ipcd_shared *s)
{
	return published(s, true);
}

/* ---- giving back ----------------------------------------------------------------- */

void ipcd_shared_release(struct ipcd_shared *s, uint32_t tid)
{
	bool fresh;
	int w = ipcd_entry_of(s, s->nws, wslot_word, &s->wcache, tid, false, &fresh);

	if (w < 0)
		return;
	atomic_store_explicit(&s->ws[w].rsv, 0, RELAXED);
	atomic_store_explicit(&s->ws[w].tid, 0, RELEASE);
	atomic_store_explicit(&s->wcache, 0, RELAXED);
}

unsigned ipcd_shared_reap(struct ipcd_shared *s)
{
	uint64_t head, tail, u, w, rsv[IPCD_RSLOTS_MAX];
	unsigned i, n = 0;
	bool pending = false;
	uint32_t tid;

	/* Writer slots of dead threads: their reservation to the next
	 * round, the slot free. */
	for (i = 0; i < s->nws; i++) {
		tid = atomic_load_explicit(&s->ws[i].tid, ACQUIRE);
		if (!tid || ipcd_tid_alive(tid))
			continue;
		u = atomic_load_explicit(&s->ws[i].rsv, ACQUIRE);
		if (u && u != IPCD_RSV_PENDING)
			n += void_rsv(s, u);
		atomic_store_explicit(&s->ws[i].rsv, 0, RELAXED);
		if (atomic_compare_exchange_strong_explicit(&s->ws[i].tid, &tid, 0, RELEASE,
							    RELAXED))
			n++;
	}
	if (indexes(s, &head, &tail))
		return n;
	/* Records that dead readers were taking: back to be taken. */
	for (u = head; u < tail; u++) {
		w = atomic_load_explicit(&cell_at(s, u)->word, RELAXED);
		if (IPCD_CELL_STATE(w) == IPCD_CELL_TAKEN && IPCD_CELL_TICKET(w) == (uint32_t)u &&
		    !ipcd_tid_alive(IPCD_CELL_TID(w)) &&
		    atomic_compare_exchange_strong_explicit(&cell_at(s, u)->word, &w, FULL(u),
							    RELEASE, RELAXED))
			n++;
	}
	/* Cells reserved and never written whose reservation no slot shows:
	 * a thread that died between its fetch-and-add and noting the
	 * ticket.  Tail first, then the slots (each reservation below that
	 * tail shows PENDING or its ticket, unless its thread is gone), then
	 * the cells; a live thread still noting its ticket puts it off. */
	tail = atomic_load_explicit(&s->v.r->tail, ACQUIRE);
	for (i = 0; i < s->nws; i++) {
		rsv[i] = atomic_load_explicit(&s->ws[i].rsv, ACQUIRE);
		if (rsv[i] == IPCD_RSV_PENDING)
			pending = true;
	}
	head = atomic_load_explicit(&s->v.r->head, ACQUIRE);
	for (u = head; !pending && u < tail && tail - head <= s->ncells; u++) {
		w = atomic_load_explicit(&cell_at(s, u)->word, ACQUIRE);
		if (w != FREE(u))
			continue;
		for (i = 0; i < s->nws; i++)
			if (rsv[i] && u - IPCD_RSV_TICKET(rsv[i]) < IPCD_RSV_CELLS(rsv[i]))
				break;
		if (i == s->nws &&
		    atomic_compare_exchange_strong_explicit(&cell_at(s, u)->word, &w,
							    FREE(u + s->ncells), RELEASE, RELAXED))
			n++;
	}
	if (n)
		ipcd_shared_advance(s);
	return n;
}

/* ---- the table of calls (coord.h) ------------------------------------------------- */

static int sh_attach(void *st, void *map, size_t len, unsigned side)
{
	return ipcd_shared_attach(st, map, len, side);
}

static struct ipcd_view *sh_view(void *st)
{
	return &((struct ipcd_shared *)st)->v;
}

static void sh_set_ends(void *st, struct ipcd_ring *r0, unsigned wend)
{
	ipcd_view_set_ends(&((struct ipcd_shared *)st)->v, r0, wend);
}

static ssize_t sh_write(void *st, const void *buf, size_t len, uint32_t tid,
			const struct ipcd_anc_ops *anc)
{
	if (anc && anc->bind)
		return -EOPNOTSUPP;
	return ipcd_shared_write(st, buf, len, tid);
}

static ssize_t sh_read(void *st, void *buf, size_t len, uint32_t tid, unsigned flags,
		       size_t *full, const struct ipcd_anc_ops *anc)
{
	(void)anc;	/* no attachments here */
	return ipcd_shared_read(st, buf, len, tid, flags, full);
}

static ssize_t sh_peek(void *st, struct ipcd_span sp[2], uint32_t tid)
{
	return ipcd_shared_peek(st, sp, tid);
}

static int sh_consume(void *st, uint64_t n)
{
	return ipcd_shared_consume(st, n);
}

static struct ipcd_view *sh_space_view(void *st, uint32_t tid)
{
	(void)tid;
	return &((struct ipcd_shared *)st)->v;
}

static int sh_has_data(const void *st)
{
	return ipcd_shared_has_data(st);
}

static int sh_has_room(void *st, size_t need, uint32_t tid)
{
	(void)tid;
	return ipcd_shared_has_room(st, need);
}

static ssize_t sh_readable(const void *st)
{
	return ipcd_shared_readable(st);
}

static ssize_t sh_queued(const void *st)
{
	return ipcd_shared_queued(st);
}

/* Cells, of IPCD_CELL_SIZE bytes each: a record's last is padded. */
static uint64_t sh_moved(const void *st, bool tails)
{
	const struct ipcd_shared *s = st;

	return atomic_load_explicit(tails ? &s->v.r->tail : &s->v.r->head, RELAXED) *
	       IPCD_CELL_SIZE;
}

static void sh_release(void *st, uint32_t tid)
{
	ipcd_shared_release(st, tid);
}

static unsigned sh_reap(void *st)
{
	return ipcd_shared_reap(st);
}

const struct ipcd_coord_ops ipcd_coord_shared = {
	.name = "shared",
	.size = sizeof(struct ipcd_shared),
	.attach = sh_attach,
	.view = sh_view,
	.set_ends = sh_set_ends,
	.write = sh_write,
	.read = sh_read,
	.peek = sh_peek,
	.consume = sh_consume,
	.busy = ipcd_coord_yield,
	.space_view = sh_space_view,
	.has_data = sh_has_data,
	.has_room = sh_has_room,
	.readable = sh_readable,
	.queued = sh_queued,
	.moved = sh_moved,
	.release = sh_release,
	.reap = sh_reap,
};
