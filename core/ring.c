/*
 * ring.c - the ipcd ring: formatting, attaching, the state checks, and
 * moving bytes and messages (under the locks of ring_lock.c, or by a
 * queue's claimant), reading in place.  Waking and sleeping are in
 * ring_wait.c.  The algorithm and memory ordering are described in
 * ipcd/ring.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ringint.h"
#include "coord.h"

/* ---- format and attach -------------------------------------------------- */

/* Make the hints of v count for nothing, so the next write and read load
 * both indexes: at attach, and once v met corruption. */
static void hints_drop(struct ipcd_view *v)
{
	atomic_store_explicit(&v->head_ok, false, RELAXED);
	atomic_store_explicit(&v->tail_ok, false, RELAXED);
}

static int valid_capacity(uint64_t cap)
{
	return cap >= IPCD_RING_MIN_CAPACITY && cap <= IPCD_RING_MAX_CAPACITY &&
	       (cap & (cap - 1)) == 0;
}

/* The largest record of the ring d: a message channel's largest message;
 * a stream channel's queue takes a write of up to its capacity less the
 * record header in one record, its ring of cells one of up to the
 * directory's msg_max (at least PIPE_BUF: so many bytes go whole). */
static uint32_t ring_msg_max(const struct ipcd_map *m, const struct ipcd_ring_desc *d)
{
	if ((m->features & IPCD_RING_F_MESSAGE) || d->kind == IPCD_RING_KIND_CELLS)
		return m->msg_max;
	if (d->kind == IPCD_RING_KIND_RECORDS)
		return (uint32_t)(d->capacity - sizeof(struct ipcd_ring_rec) < UINT32_MAX ?
				  d->capacity - sizeof(struct ipcd_ring_rec) : UINT32_MAX);
	return 0;
}

static unsigned sides_of(uint32_t features)
{
	return (features & IPCD_RING_F_DUPLEX) ? 2 : 1;
}

/* The layout the daemon gives n rings: entries from 64, headers in slots
 * of IPCD_MAP_RING_SLOT from the first slot after the entries, and the
 * header area whole pages. */
static uint64_t first_slot(unsigned n)
{
	uint64_t end = sizeof(struct ipcd_map) + (uint64_t)n * sizeof(struct ipcd_ring_desc);

	return (end + IPCD_MAP_RING_SLOT - 1) / IPCD_MAP_RING_SLOT * IPCD_MAP_RING_SLOT;
}

/* Writer slots of a ring of cells, at most (the layout's room). */
#define WSLOTS_MAX 16u

/* Reader slots a channel of queues gets: one a ring, at least 8; room for
 * the writer slots of a shared ring. */
static unsigned rslots_for(uint32_t coord, unsigned n)
{
	if (coord == IPCD_COORD_SHARED)
		return WSLOTS_MAX;
	if (coord != IPCD_COORD_QUEUES)
		return 0;
	return n < 8 ? 8 : n > IPCD_RSLOTS_MAX ? IPCD_RSLOTS_MAX : n;
}

/* The writer slots a ring of cells of capacity cap and largest record
 * rec_max gets: as many as leave half the cells free of what writers
 * between their check and their fetch-and-add may reserve beyond room
 * (ring.h); 0 if not even one fits. */
static unsigned wslots_for(uint64_t cap, uint32_t rec_max)
{
	uint64_t kmax = ipcd_cells_of(rec_max), n = cap / IPCD_CELL_SIZE / 2 / kmax;

	return n > WSLOTS_MAX ? WSLOTS_MAX : (unsigned)n;
}

/* Bytes one ring's data takes: a ring of cells has its cell entries after
 * the payload, to a whole page. */
static uint64_t span_of(uint32_t coord, uint64_t cap)
{
	uint64_t meta = cap / IPCD_CELL_SIZE * sizeof(struct ipcd_cell);

	if (coord != IPCD_COORD_SHARED)
		return cap;
	return cap + (meta + IPCD_MAP_HDR_SIZE - 1) / IPCD_MAP_HDR_SIZE * IPCD_MAP_HDR_SIZE;
}

static uint64_t area_of(unsigned n, unsigned nrslots)
{
	uint64_t end = first_slot(n) + (uint64_t)n * IPCD_MAP_RING_SLOT +
		       (uint64_t)nrslots * sizeof(struct ipcd_rslot);

	return (end + IPCD_MAP_HDR_SIZE - 1) / IPCD_MAP_HDR_SIZE * IPCD_MAP_HDR_SIZE;
}

/* Rings of a channel: nqueues per side with queues, else one. */
static unsigned rings_for(uint32_t features, uint32_t coord, uint32_t nqueues)
{
	if (coord > IPCD_COORD_MAX || (coord == IPCD_COORD_QUEUES) != (nqueues != 0) ||
	    nqueues > IPCD_QUEUES_MAX)
		return 0;
	return sides_of(features) * (coord == IPCD_COORD_QUEUES ? nqueues : 1);
}

size_t ipcd_ring_map_size(uint64_t capacity)
{
	return ipcd_map_len(capacity, 0);
}

size_t ipcd_map_len(uint64_t capacity, uint32_t features)
{
	return ipcd_map_len_coord(capacity, features, IPCD_COORD_LOCK, 0);
}

size_t ipcd_map_len_coord(uint64_t capacity, uint32_t features, uint32_t coord,
			  uint32_t nqueues)
{
	unsigned n = rings_for(features, coord, nqueues);

	if (!valid_capacity(capacity) || (features & ~IPCD_RING_F_KNOWN) || !n)
		return 0;
	return (size_t)area_of(n, rslots_for(coord, n)) + (size_t)span_of(coord, capacity) * n;
}

/* Every cell of a fresh ring of cells waits for its first ticket. */
static void cells_format(void *map, const struct ipcd_ring_desc *d)
{
	struct ipcd_cell *c = (struct ipcd_cell *)((char *)map + d->data_off + d->capacity);
	uint64_t i, n = d->capacity / IPCD_CELL_SIZE;

	for (i = 0; i < n; i++)
		atomic_store_explicit(&c[ipcd_cell_index(i, n)].word,
				      IPCD_CELL_WORD(IPCD_CELL_FREE, 0, i), RELAXED);
}

int ipcd_ring_format(void *map, size_t map_len, uint64_t capacity,
		     uint32_t features, uint32_t msg_max)
{
	return ipcd_map_format(map, map_len, capacity, features, msg_max, IPCD_COORD_LOCK, 0);
}

int ipcd_map_format(void *map, size_t map_len, uint64_t capacity, uint32_t features,
		    uint32_t msg_max, uint32_t coord, uint32_t nqueues)
{
	struct ipcd_map *m = map;
	struct ipcd_ring_desc *d;
	struct ipcd_ring *r;
	size_t len = ipcd_map_len_coord(capacity, features, coord, nqueues);
	unsigned i, n = rings_for(features, coord, nqueues), per = n / sides_of(features);
	bool records;

	if (!len || map_len < len)
		return -EINVAL;
	if ((features & IPCD_RING_F_MESSAGE) &&
	    (msg_max == 0 || msg_max > capacity - sizeof(struct ipcd_ring_rec)))
		return -EINVAL;
	if (!(features & IPCD_RING_F_MESSAGE))
		msg_max = coord != IPCD_COORD_SHARED ? 0 : msg_max > PIPE_BUF ? msg_max : PIPE_BUF;
	if (coord == IPCD_COORD_SHARED &&
	    !wslots_for(capacity, msg_max ? msg_max : PIPE_BUF))
		return -EINVAL;	/* records too large for the ring */
	/* Queues hold records whatever the channel's kind, so that a reader
	 * takes turns between writers at the boundaries of their writes. */
	records = (features & IPCD_RING_F_MESSAGE) || coord == IPCD_COORD_QUEUES;
	m->version = IPCD_RING_VERSION;
	m->hdr_size = sizeof(*m);
	m->features = features;
	m->msg_max = msg_max;
	m->map_size = len;
	m->nrings = n;
	m->desc_off = sizeof(*m);
	m->desc_size = sizeof(*d);
	m->coord = coord;
	m->nqueues = coord == IPCD_COORD_QUEUES ? nqueues : 0;
	m->nrslots = coord == IPCD_COORD_SHARED ?
		     wslots_for(capacity, msg_max ? msg_max : PIPE_BUF) : rslots_for(coord, n);
	m->rslot_off = m->nrslots ? (uint32_t)(first_slot(n) + (uint64_t)n * IPCD_MAP_RING_SLOT) : 0;
	m->hdr_area = area_of(n, rslots_for(coord, n));
	for (i = 0; i < n; i++) {
		d = (struct ipcd_ring_desc *)((char *)map + m->desc_off) + i;
		d->kind = coord == IPCD_COORD_SHARED ? IPCD_RING_KIND_CELLS :
			  records ? IPCD_RING_KIND_RECORDS : IPCD_RING_KIND_BYTES;
		d->role = IPCD_ROLE(i / per, i % per);
		d->hdr_off = first_slot(n) + (uint64_t)IPCD_MAP_RING_SLOT * i;
		d->data_off = m->hdr_area + span_of(coord, capacity) * i;
		d->capacity = capacity;
		r = (struct ipcd_ring *)((char *)map + d->hdr_off);
		r->version = IPCD_RING_VERSION;
		r->hdr_size = sizeof(*r);
		r->features = features;
		r->msg_max = ring_msg_max(m, d);
		r->kind = d->kind;
		r->data_off = d->data_off;
		r->capacity = capacity;
		r->map_size = len;
		r->magic = IPCD_RING_MAGIC;
		if (coord == IPCD_COORD_SHARED)
			cells_format(map, d);
	}
	/* The directory's magic goes last: a reader that sees it sees the
	 * whole directory and every header. */
	atomic_thread_fence(RELEASE);
	m->magic = IPCD_RING_MAGIC;
	return 0;
}

const struct ipcd_ring_desc *ipcd_map_desc(const void *map, size_t map_len, uint32_t role,
					   int *err)
{
	const struct ipcd_map *m = map;
	const struct ipcd_ring_desc *d, *found = NULL;
	unsigned i, n;
	int e = -EIO;

	if (map_len < IPCD_MAP_HDR_SIZE) {
		e = -EINVAL;
		goto out;
	}
	if (m->magic != IPCD_RING_MAGIC)
		goto out;
	if (m->version != IPCD_RING_VERSION) {
		e = -EPROTO;
		goto out;
	}
	n = rings_for(m->features, m->coord, m->nqueues);
	if (m->hdr_size < sizeof(*m) || m->hdr_size > IPCD_MAP_RING_SLOT || !n ||
	    m->nrings != n || m->desc_size != sizeof(*d) || m->desc_off < m->hdr_size ||
	    m->desc_off % 8 || (m->features & ~IPCD_RING_F_KNOWN) ||
	    m->hdr_area < IPCD_MAP_HDR_SIZE || m->hdr_area > IPCD_MAP_AREA_MAX ||
	    m->hdr_area % IPCD_MAP_HDR_SIZE ||
	    m->desc_off + (uint64_t)n * sizeof(*d) > m->hdr_area ||
	    m->map_size <= m->hdr_area || m->map_size % IPCD_MAP_HDR_SIZE ||
	    (m->coord != IPCD_COORD_LOCK ?
	     m->nrslots < 1 || m->nrslots > IPCD_RSLOTS_MAX || m->rslot_off % 64 ||
	     (m->coord == IPCD_COORD_SHARED && m->nrslots > WSLOTS_MAX) ||
	     m->rslot_off < m->desc_off + (uint64_t)n * sizeof(*d) ||
	     m->rslot_off + (uint64_t)m->nrslots * sizeof(struct ipcd_rslot) > m->hdr_area :
	     m->nrslots != 0 || m->rslot_off != 0) ||
	    (m->coord == IPCD_COORD_SHARED && !(m->features & IPCD_RING_F_MESSAGE) &&
	     m->msg_max < PIPE_BUF))
		goto out;
	if (map_len < m->map_size) {
		e = -EINVAL;
		goto out;
	}
	for (i = 0; i < n; i++) {
		d = (const struct ipcd_ring_desc *)((const char *)map + m->desc_off) + i;
		if (d->kind != (m->coord == IPCD_COORD_SHARED ? IPCD_RING_KIND_CELLS :
				(m->features & IPCD_RING_F_MESSAGE) ||
				m->coord == IPCD_COORD_QUEUES ? IPCD_RING_KIND_RECORDS
							      : IPCD_RING_KIND_BYTES) ||
		    IPCD_ROLE_SIDE(d->role) >= sides_of(m->features) ||
		    IPCD_ROLE_QUEUE(d->role) >= n / sides_of(m->features) ||
		    d->role > 0xffff ||
		    d->hdr_off < m->desc_off + (uint64_t)n * sizeof(*d) || d->hdr_off % 64 ||
		    d->hdr_off > m->hdr_area - sizeof(struct ipcd_ring) ||
		    !valid_capacity(d->capacity) || d->data_off < m->hdr_area ||
		    d->data_off % IPCD_MAP_HDR_SIZE || d->data_off > m->map_size ||
		    span_of(m->coord, d->capacity) > m->map_size - d->data_off ||
		    (m->coord == IPCD_COORD_SHARED &&
		     m->nrslots > wslots_for(d->capacity, ring_msg_max(m, d))))
			goto out;
		if (d->role == role) {
			if (found)	/* two rings of one role */
				goto out;
			found = d;
		}
	}
	if (found)
		return found;
	e = -EINVAL;	/* no ring of that role */
out:
	if (err)
		*err = e;
	return NULL;
}

int ipcd_view_attach_role(struct ipcd_view *v, void *map, size_t map_len, uint32_t role)
{
	const struct ipcd_map *m = map;
	const struct ipcd_ring_desc *d;
	struct ipcd_ring *r;
	uint64_t cap;
	int e;

	d = ipcd_map_desc(map, map_len, role, &e);
	if (!d)
		return e;
	r = (struct ipcd_ring *)((char *)map + d->hdr_off);
	cap = d->capacity;
	/* The ring's own copy must say what the directory says. */
	if (r->magic != IPCD_RING_MAGIC || r->version != IPCD_RING_VERSION ||
	    r->hdr_size != sizeof(*r) || r->features != m->features ||
	    r->msg_max != ring_msg_max(m, d) || r->data_off != d->data_off ||
	    r->capacity != cap || r->map_size != m->map_size)
		return -EIO;
	if (d->kind != IPCD_RING_KIND_BYTES &&
	    (r->msg_max == 0 || r->msg_max > cap - sizeof(struct ipcd_ring_rec)))
		return -EIO;
	v->r = r;
	v->data = (unsigned char *)map + d->data_off;
	v->cap = cap;
	/* A ring of records is read and written as a message ring's, whatever
	 * the channel (a stream channel's queues). */
	v->features = r->features | (d->kind == IPCD_RING_KIND_RECORDS ? IPCD_RING_F_MESSAGE : 0);
	v->msg_max = r->msg_max;
	v->map_len = map_len;
	v->seen_head = 0;
	v->seen_tail = 0;
	v->ends = NULL;
	v->wend = v->rend = 0;
	v->qs = NULL;
	v->sh = NULL;
	v->nofence = false;
	v->peeking = false;
	atomic_store_explicit(&v->qtail, 0, RELAXED);
	hints_drop(v);
	ipcd_view_mark_open(v);
	return 0;
}

int ipcd_view_attach(struct ipcd_view *v, void *map, size_t map_len)
{
	return ipcd_view_attach_role(v, map, map_len, 0);
}

struct ipcd_ring *ipcd_map_ring(void *map, size_t map_len, uint32_t role)
{
	const struct ipcd_ring_desc *d = ipcd_map_desc(map, map_len, role, NULL);

	return d ? (struct ipcd_ring *)((char *)map + d->hdr_off) : NULL;
}

int ipcd_ring_map(int fd, size_t len, void **mapp, size_t *lenp)
{
	void *map;

	/* The length comes from the daemon (GETINFO, st_blocks), never from
	 * the header, which any peer may write: a touch past the memory
	 * behind the mapping would fault. */
	if (len < IPCD_MAP_HDR_SIZE)
		return -EINVAL;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	*mapp = map;
	*lenp = len;
	return 0;
}

void ipcd_view_mark_open(struct ipcd_view *v)
{
	uint64_t we = atomic_load_explicit(&v->r->writers_epoch, ACQUIRE);

	/* A reader that arrives with no writer waits for one to come and go. */
	v->eof_epoch = IPCD_WEPOCH(we) + (IPCD_WRITERS(we) == 0);
}

static uint64_t rec_size(uint64_t len)
{
	return sizeof(struct ipcd_ring_rec) +
	       ((len + IPCD_REC_ALIGN - 1) & ~(uint64_t)(IPCD_REC_ALIGN - 1));
}

/* ---- state checks ------------------------------------------------------- */

static int broken(const struct ipcd_view *v)
{
	return atomic_load_explicit(&v->r->state, RELAXED) & IPCD_RING_S_BROKEN;
}

/*
 * Whether end e of an anonymous channel is as good as closed: the daemon
 * still shows it open, but no process holds it any more (ring.h,
 * "Holders").  Acquire: pairs with the release of a holder clearing its
 * slot, so what it published before is seen.
 */
static bool end_gone(const struct ipcd_ring *r0, unsigned e)
{
	unsigned i;

	if (!(atomic_load_explicit(&r0->ends_open, ACQUIRE) & (1u << e)))
		return false;	/* already counted out by the daemon */
	for (i = 0; i < IPCD_HOLDERS; i++)
		if (atomic_load_explicit(&r0->holders[e][i], ACQUIRE))
			return false;
	return true;
}

/* The open write ends of v's ring, less one its holders have all left. */
static uint32_t writers_now(const struct ipcd_view *v, uint64_t we)
{
	uint32_t w = IPCD_WRITERS(we);

	if (w && v->ends && end_gone(v->ends, v->wend))
		w--;
	return w;
}

/* The same for the read ends. */
static uint32_t readers_now(const struct ipcd_view *v)
{
	uint32_t n = atomic_load_explicit(&v->r->readers, RELAXED);

	if (n == 1 && v->ends && end_gone(v->ends, v->rend))
		n = 0;
	return n;
}

/* Whether every writer is gone in the sense of the end-of-file rule. */
static int writers_gone(const struct ipcd_view *v)
{
	uint64_t we = atomic_load_explicit(&v->r->writers_epoch, ACQUIRE);

	return writers_now(v, we) == 0 &&
	       (int32_t)(IPCD_WEPOCH(we) - v->eof_epoch) >= 0;
}

void ipcd_view_set_ends(struct ipcd_view *v, struct ipcd_ring *r0, unsigned wend)
{
	v->ends = r0;
	v->wend = (uint8_t)wend;
	v->rend = (uint8_t)(1 - wend);
}

uint32_t ipcd_ring_readers(const struct ipcd_view *v)
{
	return readers_now(v);
}

/* Load the indexes; -EIO when they cannot be right. */
static int load_used(const struct ipcd_view *v, uint64_t *head, uint64_t *tail)
{
	/* Both acquire: head pairs with the consumer's release (its reads of the
	 * slots are done), tail with the producer's release (its bytes are in). */
	*head = atomic_load_explicit(&v->r->head, ACQUIRE);
	*tail = atomic_load_explicit(&v->r->tail, ACQUIRE);
	if (*tail - *head > v->cap)
		return -EIO;
	if ((v->features & IPCD_RING_F_MESSAGE) &&
	    ((*head | *tail) & (IPCD_REC_ALIGN - 1)))
		return -EIO;
	return 0;
}

ssize_t ipcd_ring_readable(const struct ipcd_view *v)
{
	uint64_t head, tail, pos, to_end;
	struct ipcd_ring_rec rec;

	if (broken(v) || load_used(v, &head, &tail))
		return -EIO;
	if (!(v->features & IPCD_RING_F_MESSAGE) || head == tail)
		return (ssize_t)(tail - head);
	pos = head & (v->cap - 1);
	to_end = v->cap - pos;
	if (tail - head < sizeof(rec))
		return -EIO;
	memcpy(&rec, v->data + pos, sizeof(rec));
	if (rec.flags & IPCD_REC_PAD) {
		if (rec.flags != IPCD_REC_PAD || rec.len != to_end - sizeof(rec) ||
		    tail - head < to_end)
			return -EIO;
		if (tail - head == to_end)
			return 0;
		head += to_end;
		pos = 0;
		to_end = v->cap;
		if (tail - head < sizeof(rec))
			return -EIO;
		memcpy(&rec, v->data, sizeof(rec));
	}
	if (rec.flags != 0 || rec.len > v->msg_max ||
	    rec_size(rec.len) > tail - head || rec_size(rec.len) > to_end)
		return -EIO;
	return rec.len;
}

ssize_t ipcd_ring_queued(const struct ipcd_view *v)
{
	uint64_t head, tail, pos, to_end, sum = 0;
	struct ipcd_ring_rec rec;

	if (broken(v) || load_used(v, &head, &tail))
		return -EIO;
	if (!(v->features & IPCD_RING_F_MESSAGE))
		return (ssize_t)(tail - head);
	/* Every step moves head forward by at least 8 bytes: bounded. */
	while (head != tail) {
		pos = head & (v->cap - 1);
		to_end = v->cap - pos;
		if (tail - head < sizeof(rec))
			return -EIO;
		memcpy(&rec, v->data + pos, sizeof(rec));
		if (rec.flags == IPCD_REC_PAD) {
			if (rec.len != to_end - sizeof(rec) || tail - head < to_end)
				return -EIO;
			head += to_end;
			continue;
		}
		if (rec.flags != 0 || rec.len > v->msg_max ||
		    rec_size(rec.len) > tail - head || rec_size(rec.len) > to_end)
			return -EIO;
		sum += rec.len;
		head += rec_size(rec.len);
	}
	return (ssize_t)sum;
}

/* The most bytes the producer may have queued: the pipe size if one was
 * set, else the capacity; a damaged value is brought back in range. */
static uint64_t room_cap(const struct ipcd_view *v)
{
	uint64_t lim = atomic_load_explicit(&v->r->limit, RELAXED);

	if (lim == 0 || lim > v->cap)
		return v->cap;
	return lim < IPCD_RING_MIN_CAPACITY ? IPCD_RING_MIN_CAPACITY : lim;
}

uint64_t ipcd_ring_limit(const struct ipcd_view *v)
{
	return room_cap(v);
}

/* Free bytes below the limit (none when over it). */
static uint64_t room(const struct ipcd_view *v, uint64_t head, uint64_t tail)
{
	uint64_t lim = room_cap(v);

	return tail - head >= lim ? 0 : lim - (tail - head);
}

ssize_t ipcd_ring_space(const struct ipcd_view *v)
{
	uint64_t head, tail;

	if (broken(v) || load_used(v, &head, &tail))
		return -EIO;
	return (ssize_t)room(v, head, tail);
}

int ipcd_ring_set_limit(struct ipcd_view *v, uint64_t limit, uint32_t tid)
{
	uint64_t head, tail;
	int r;

	if (limit < IPCD_RING_MIN_CAPACITY || limit > v->cap || (limit & (limit - 1)))
		return -EINVAL;
	r = lock_try(&v->r->wlock, tid);
	if (r)
		return r;
	if (load_used(v, &head, &tail)) {
		r = -EIO;
	} else if (v->sh ? ipcd_shared_queued(v->sh) > (ssize_t)limit : tail - head > limit) {
		r = -EBUSY;
	} else {
		atomic_store_explicit(&v->r->limit, limit == v->cap ? 0 : (uint32_t)limit,
				      RELAXED);
	}
	lock_drop(&v->r->wlock);
	if (!r)
		/* A larger room may let a sleeping writer go on. */
		ipcd_ring_wake_locked(v, IPCD_WAIT_SPACE);
	return r;
}

int ipcd_ring_hup(const struct ipcd_view *v)
{
	return writers_gone(v);
}

int ipcd_ring_can_read(const struct ipcd_view *v)
{
	uint64_t head, tail;

	/* The first queue of a side stands for all of them (coord.h). */
	if (v->qs)
		return ipcd_qset_can_read(v->qs);
	if (v->sh)
		return ipcd_shared_can_read(v->sh);
	if (broken(v) || load_used(v, &head, &tail))
		return 1;
	return head != tail || writers_gone(v);
}

int ipcd_ring_can_write(const struct ipcd_view *v, size_t need)
{
	uint64_t head, tail;

	if (v->sh)
		return ipcd_shared_can_write(v->sh, need);
	if (broken(v) || load_used(v, &head, &tail))
		return 1;
	if (readers_now(v) == 0)
		return 1;
	return room(v, head, tail) >= (need ? need : 1);
}

size_t ipcd_ring_need(const struct ipcd_view *v, size_t len)
{
	uint64_t to_end, rs;

	if (v->sh)	/* cells: ipcd_ring_can_write counts them */
		return len;
	if (!(v->features & IPCD_RING_F_MESSAGE))
		return len <= PIPE_BUF ? (len ? len : 1) : 1;
	if (len > v->msg_max)
		return 1;
	to_end = v->cap - (atomic_load_explicit(&v->r->tail, RELAXED) & (v->cap - 1));
	rs = rec_size(len);
	/* A record that must wrap first needs room for the pad alone. */
	return rs <= to_end ? rs : to_end;
}

/* ---- moving bytes ------------------------------------------------------- */

/* Whether head and tail (one of them a hint) can be those of the ring. */
static int plausible(const struct ipcd_view *v, uint64_t head, uint64_t tail)
{
	return tail - head <= v->cap &&
	       (!(v->features & IPCD_RING_F_MESSAGE) ||
		!((head | tail) & (IPCD_REC_ALIGN - 1)));
}

/* Free bytes a write of len at tail needs, a pad included (0: it fails
 * whatever the room). */
static uint64_t put_need(const struct ipcd_view *v, uint64_t tail, size_t len)
{
	uint64_t to_end, rs;

	if (v->sh)	/* cells: ipcd_ring_can_write counts them */
		return len;
	if (!(v->features & IPCD_RING_F_MESSAGE))
		return len;
	if (len > v->msg_max)
		return 0;
	rs = rec_size(len);
	to_end = v->cap - (tail & (v->cap - 1));
	return rs > to_end ? to_end + rs : rs;
}

static void copy_in(struct ipcd_view *v, uint64_t at, const void *src, size_t n)
{
	size_t pos = at & (v->cap - 1), first = v->cap - pos;

	if (first >= n) {
		memcpy(v->data + pos, src, n);
	} else {
		memcpy(v->data + pos, src, first);
		memcpy(v->data, (const char *)src + first, n - first);
	}
}

static void copy_out(struct ipcd_view *v, uint64_t at, void *dst, size_t n)
{
	size_t pos = at & (v->cap - 1), first = v->cap - pos;

	if (first >= n) {
		memcpy(dst, v->data + pos, n);
	} else {
		memcpy(dst, v->data + pos, first);
		memcpy((char *)dst + first, v->data, n - first);
	}
}

/*
 * Called with wlock held.  Returns bytes taken or -errno; *tailp is the tail
 * to publish, which may have moved even on -EAGAIN (a pad record alone).
 */
static ssize_t put_locked(struct ipcd_view *v, const void *buf, size_t len,
			  uint64_t *tailp)
{
	uint64_t head, tail, space, pos, to_end, rs;
	struct ipcd_ring_rec rec;

	/* Only wlock holders store tail, and our lock's acquire ordered the
	 * last store before this load.  Head comes from the hint while it
	 * shows room enough: the consumer's line stays where it is. */
	tail = atomic_load_explicit(&v->r->tail, RELAXED);
	head = v->seen_head;
	if (!atomic_load_explicit(&v->head_ok, RELAXED) || !plausible(v, head, tail) ||
	    room(v, head, tail) < put_need(v, tail, len)) {
		if (load_used(v, &head, &tail)) {
			hints_drop(v);
			return -EIO;
		}
		v->seen_head = head;
		atomic_store_explicit(&v->head_ok, true, RELAXED);
	}
	space = room(v, head, tail);
	*tailp = tail;
	if (!(v->features & IPCD_RING_F_MESSAGE)) {
		size_t n = len < space ? len : space;

		if (n == 0 || (len <= PIPE_BUF && n < len))
			return -EAGAIN;
		copy_in(v, tail, buf, n);
		*tailp = tail + n;
		return (ssize_t)n;
	}
	if (len > v->msg_max)
		return -EMSGSIZE;
	pos = tail & (v->cap - 1);
	to_end = v->cap - pos;
	rs = rec_size(len);
	if (rs > to_end) {
		/* The record must start at offset 0: fill the rest with a pad,
		 * alone if the record does not fit behind it yet. */
		if (to_end > space)
			return -EAGAIN;
		rec.len = (uint32_t)(to_end - sizeof(rec));
		rec.flags = IPCD_REC_PAD;
		memcpy(v->data + pos, &rec, sizeof(rec));
		tail += to_end;
		space -= to_end;
		*tailp = tail;
		pos = 0;
	}
	if (rs > space)
		return -EAGAIN;
	rec.len = (uint32_t)len;
	rec.flags = 0;
	memcpy(v->data + pos, &rec, sizeof(rec));
	memcpy(v->data + pos + sizeof(rec), buf, len);
	*tailp = tail + rs;
	return (ssize_t)len;
}

/* Why nothing may be written into v: -EIO (broken), -EPIPE (no reader),
 * or 0. */
static int put_refused(const struct ipcd_view *v)
{
	if (broken(v))
		return -EIO;
	return readers_now(v) == 0 ? -EPIPE : 0;
}

ssize_t ipcd_ring_write(struct ipcd_view *v, const void *buf, size_t len,
			uint32_t tid)
{
	return ipcd_ring_write_anc(v, buf, len, tid, NULL);
}

ssize_t ipcd_ring_write_anc(struct ipcd_view *v, const void *buf, size_t len,
			    uint32_t tid, const struct ipcd_anc_ops *anc)
{
	uint64_t tail, old;
	ssize_t n;
	int r;

	if ((r = put_refused(v)))
		return r;
	if (len == 0 && !(v->features & IPCD_RING_F_MESSAGE))
		return 0;
	r = lock_try(&v->r->wlock, tid);
	if (r)
		return r;
	old = atomic_load_explicit(&v->r->tail, RELAXED);
	n = put_locked(v, buf, len, &tail);
	if (n >= 0 && anc && anc->bind) {
		r = anc->bind(anc->arg, old, (size_t)n);
		if (r < 0) {
			/* Nothing is published: the bytes are not there. */
			lock_drop(&v->r->wlock);
			return r;
		}
	}
	if (n != -EIO && tail != old) {
		/* Counted for whoever judges what a pipe carried (ring.h,
		 * "Sites"); on the producer's line, which we write anyway. */
		atomic_store_explicit(&v->r->writes,
				      atomic_load_explicit(&v->r->writes, RELAXED) + 1, RELAXED);
		/* Release: our bytes are visible before the new tail; pairs with
		 * the consumer's acquire load of tail. */
		atomic_store_explicit(&v->r->tail, tail, RELEASE);
	}
	lock_drop(&v->r->wlock);
	if (n != -EIO && tail != old)
		ipcd_ring_wake_locked(v, IPCD_WAIT_DATA);
	return n;
}

/*
 * An attachment in [head, tail) limits a read: one ahead stops a stream read
 * there, one at head is taken first (not when peeking) and limits the read
 * to the bytes it covers.  anc_at is loaded after tail (acquire), so an
 * attachment bound before those bytes were published is seen.
 */
static ssize_t anc_limit(struct ipcd_view *v, uint64_t head, uint64_t tail,
			 uint64_t *used, unsigned flags, const struct ipcd_anc_ops *anc)
{
	uint64_t at = atomic_load_explicit(&v->r->anc_at, ACQUIRE);
	ssize_t covers;

	if (at-- == 0 || at < head || at >= tail)
		return 0;
	if (at > head) {
		/* A message ring's record at head ends at or before `at`. */
		if (!(v->features & IPCD_RING_F_MESSAGE))
			*used = at - head;
		return 0;
	}
	if (flags & IPCD_IO_PEEK)
		return 0;
	covers = anc->take(anc->arg, at);
	if (covers < 0)
		return covers;
	if (!(v->features & IPCD_RING_F_MESSAGE) && (uint64_t)covers < *used)
		*used = covers ? (uint64_t)covers : *used;
	return 0;
}

/* The record at head, a pad before it passed over (*headp moves past it):
 * 0 and *rec, *pos; -EAGAIN if none; -EIO if it cannot be right. */
static int rec_next(const struct ipcd_view *v, uint64_t *headp, uint64_t tail,
		    struct ipcd_ring_rec *rec, uint64_t *pos)
{
	uint64_t head = *headp, used = tail - head, to_end;

	if (used == 0)
		return -EAGAIN;
	*pos = head & (v->cap - 1);
	to_end = v->cap - *pos;
	if (used < sizeof(*rec))
		return -EIO;
	memcpy(rec, v->data + *pos, sizeof(*rec));
	if (rec->flags & IPCD_REC_PAD) {
		if (rec->flags != IPCD_REC_PAD || rec->len != to_end - sizeof(*rec) ||
		    used < to_end)
			return -EIO;
		head += to_end;
		used -= to_end;
		*headp = head;
		if (used == 0)
			return -EAGAIN;
		*pos = 0;
		to_end = v->cap;
		if (used < sizeof(*rec))
			return -EIO;
		memcpy(rec, v->data, sizeof(*rec));
	}
	if (rec->flags != 0 || rec->len > v->msg_max || rec_size(rec->len) > used ||
	    rec_size(rec->len) > to_end)
		return -EIO;
	return 0;
}

/* take_locked's work on the indexes head and tail (checked by the caller);
 * gone: the writers were gone before tail was loaded. */
static ssize_t take_at(struct ipcd_view *v, void *buf, size_t len,
		       size_t *full, uint64_t *headp, uint64_t head,
		       uint64_t tail, int gone, unsigned flags,
		       const struct ipcd_anc_ops *anc)
{
	uint64_t used, pos;
	struct ipcd_ring_rec rec;
	size_t n;
	ssize_t e;
	int r;

	used = tail - head;
	*headp = head;
	if (used == 0)
		return gone ? IPCD_EOF : -EAGAIN;
	if (anc && (e = anc_limit(v, head, tail, &used, flags, anc)) < 0)
		return e;
	if (!(v->features & IPCD_RING_F_MESSAGE)) {
		n = len < used ? len : (size_t)used;
		copy_out(v, head, buf, n);
		*headp = head + n;
		*full = n;
		return (ssize_t)n;
	}
	/* A pad before the record is passed over (it fills exactly the rest
	 * of the data area); *headp shows it even when nothing follows. */
	r = rec_next(v, &head, tail, &rec, &pos);
	*headp = head;
	if (r)
		return r;
	n = len < rec.len ? len : rec.len;
	memcpy(buf, v->data + pos + sizeof(rec), n);
	*headp = head + rec_size(rec.len);
	*full = rec.len;
	return (ssize_t)n;
}

/*
 * Called with rlock held.  Returns bytes copied or -errno; *headp is the head
 * to publish, which may have moved even on -EAGAIN (a pad was skipped).
 */
static ssize_t take_locked(struct ipcd_view *v, void *buf, size_t len,
			   size_t *full, uint64_t *headp, unsigned flags,
			   const struct ipcd_anc_ops *anc)
{
	uint64_t head, tail;
	ssize_t n;
	int gone;

	/* First from the hint of tail, when it shows all a stream read asks
	 * for or a message: the producer's line stays where it is.  Only rlock
	 * holders store head, and our lock's acquire ordered the last store
	 * before this load; the hint's bytes were ordered before us by the
	 * acquire load that got it, and the lock since.  Anything short is
	 * done again from loaded indexes, so it gives what it gave before. */
	head = atomic_load_explicit(&v->r->head, RELAXED);
	tail = v->seen_tail;
	if (atomic_load_explicit(&v->tail_ok, RELAXED) && tail != head &&
	    plausible(v, head, tail) &&
	    ((v->features & IPCD_RING_F_MESSAGE) || tail - head >= len)) {
		n = take_at(v, buf, len, full, headp, head, tail, 0, flags, anc);
		if (n != -EAGAIN && n != -EIO)
			return n;
	}
	/* Before the indexes: if the writers were gone, their last tail is in. */
	gone = writers_gone(v);
	if (load_used(v, &head, &tail)) {
		hints_drop(v);
		return -EIO;
	}
	v->seen_tail = tail;
	atomic_store_explicit(&v->tail_ok, true, RELAXED);
	n = take_at(v, buf, len, full, headp, head, tail, gone, flags, anc);
	if (n == -EIO)
		hints_drop(v);
	return n;
}

ssize_t ipcd_ring_read(struct ipcd_view *v, void *buf, size_t len,
		       uint32_t tid, unsigned flags, size_t *full)
{
	return ipcd_ring_read_anc(v, buf, len, tid, flags, full, NULL);
}

ssize_t ipcd_ring_read_anc(struct ipcd_view *v, void *buf, size_t len,
			   uint32_t tid, unsigned flags, size_t *full,
			   const struct ipcd_anc_ops *anc)
{
	uint64_t head, old;
	bool moved;
	size_t dummy;
	ssize_t n;
	int r;

	if (!full)
		full = &dummy;
	*full = 0;
	if (broken(v))
		return -EIO;
	r = lock_try(&v->r->rlock, tid);
	if (r)
		return r;
	old = atomic_load_explicit(&v->r->head, RELAXED);
	n = take_locked(v, buf, len, full, &head, flags, anc);
	moved = n != -EIO && head != old && (n < 0 || !(flags & IPCD_IO_PEEK));
	if (moved)
		/* Release: our reads of the slots are done before the producer
		 * may reuse them; pairs with its acquire load of head. */
		atomic_store_explicit(&v->r->head, head, RELEASE);
	lock_drop(&v->r->rlock);
	if (moved)
		ipcd_ring_wake_locked(v, IPCD_WAIT_SPACE);
	if (n == -EAGAIN && moved)
		/* Only a pad was consumed: the ring may have ended meanwhile. */
		return writers_gone(v) &&
		       atomic_load_explicit(&v->r->tail, ACQUIRE) == head ? IPCD_EOF : -EAGAIN;
	return n;
}

/* ---- a ring with one producer and one consumer at a time (queues) ------------- */

/* The longest record payload that fits at tail now, a pad first if that
 * gives more; 0 if none. */
static size_t fit_now(const struct ipcd_view *v, uint64_t head, uint64_t tail)
{
	uint64_t space = room(v, head, tail), to_end = v->cap - (tail & (v->cap - 1));
	uint64_t here = space < to_end ? space : to_end;
	uint64_t after = space > to_end ? space - to_end : 0, best;

	best = here > after ? here : after;
	if (best < sizeof(struct ipcd_ring_rec) + IPCD_REC_ALIGN)
		return 0;
	best = (best - sizeof(struct ipcd_ring_rec)) & ~(uint64_t)(IPCD_REC_ALIGN - 1);
	return best < v->msg_max ? (size_t)best : v->msg_max;
}

ssize_t ipcd_ring_put_owned(struct ipcd_view *v, const void *buf, size_t len, bool stream)
{
	uint64_t head, tail, old, pub;
	ssize_t n;
	size_t fit;
	bool cut;
	int r;

	if ((r = put_refused(v)))
		return r;
	/* Whether the write may be cut, as a pipe's: by the length asked for,
	 * not the record it becomes. */
	cut = stream && len > PIPE_BUF;
	if (stream) {
		if (len == 0)
			return 0;
		if (len > v->msg_max)
			len = v->msg_max;
	}
	/* The only producer: our own stores of tail are the last ones. */
	old = atomic_load_explicit(&v->r->tail, RELAXED);
	n = put_locked(v, buf, len, &tail);
	if (n == -EAGAIN && cut && !load_used(v, &head, &pub)) {
		/* A stream write longer than PIPE_BUF takes what fits, from
		 * the published tail: the pad the first try laid (unpublished)
		 * is laid again only if the record goes after it. */
		fit = fit_now(v, head, pub);
		if (fit)
			n = put_locked(v, buf, fit < len ? fit : len, &tail);
	}
	if (n != -EIO && tail != old) {
		atomic_store_explicit(&v->r->writes,
				      atomic_load_explicit(&v->r->writes, RELAXED) + 1, RELAXED);
		atomic_store_explicit(&v->r->tail, tail, RELEASE);
	}
	return n;
}

/* The queue's tail, loaded (acquire) into *tail and the hint; -EIO if it
 * cannot be right with head. */
static int qtail_load(struct ipcd_view *v, uint64_t head, uint64_t *tail)
{
	*tail = atomic_load_explicit(&v->r->tail, ACQUIRE);
	if (!plausible(v, head, *tail))
		return -EIO;
	atomic_store_explicit(&v->qtail, *tail, RELEASE);
	return 0;
}

ssize_t ipcd_ring_peek_owned(struct ipcd_view *v, struct ipcd_span sp[2])
{
	uint64_t head, old, tail, pos;
	struct ipcd_ring_rec rec;
	uint32_t off;
	int r;

	if (broken(v))
		return -EIO;
	head = old = atomic_load_explicit(&v->r->head, ACQUIRE);
	if (qtail_load(v, head, &tail))
		return -EIO;
	off = atomic_load_explicit(&v->r->roff, RELAXED);
	r = rec_next(v, &head, tail, &rec, &pos);
	if (head != old)	/* past a pad, as a read would go */
		atomic_store_explicit(&v->r->head, head, RELEASE);
	if (r)
		return r;
	if (off > rec.len)
		return -EIO;
	/* A record never wraps (a pad goes first): one span. */
	sp[0].p = v->data + pos + sizeof(rec) + off;
	sp[0].n = rec.len - off;
	sp[1].p = NULL;
	sp[1].n = 0;
	return (ssize_t)(rec.len - off);
}

int ipcd_ring_consume_owned(struct ipcd_view *v, uint64_t n, bool stream)
{
	uint64_t head = atomic_load_explicit(&v->r->head, RELAXED), tail, pos;
	struct ipcd_ring_rec rec;
	uint32_t off = atomic_load_explicit(&v->r->roff, RELAXED);

	if (qtail_load(v, head, &tail) || rec_next(v, &head, tail, &rec, &pos))
		return -EINVAL;	/* nothing peeked at head */
	if (stream ? off + n > rec.len : n > 1)
		return -EINVAL;
	if (!n)
		return 0;
	if (stream && off + n < rec.len) {
		atomic_store_explicit(&v->r->roff, off + (uint32_t)n, RELAXED);
		return 0;
	}
	if (stream)
		atomic_store_explicit(&v->r->roff, 0, RELAXED);
	/* Release: the caller's reads of the bytes are done first. */
	atomic_store_explicit(&v->r->head, head + rec_size(rec.len), RELEASE);
	return 0;
}

ssize_t ipcd_ring_take_owned(struct ipcd_view *v, void *buf, size_t len, unsigned flags,
			     size_t *full, bool stream)
{
	uint64_t head, tail, old, pos;
	struct ipcd_ring_rec rec;
	size_t got = 0, k;
	uint32_t off;
	ssize_t res;
	bool reloaded = false;
	int r = 0;

	*full = 0;
	if (broken(v))
		return -EIO;
	/* Acquire both: the last consumer's head and offset (who may have
	 * been another process before a claim moved), and the producer's
	 * bytes; tail from the hint while it shows any. */
	head = atomic_load_explicit(&v->r->head, ACQUIRE);
	tail = atomic_load_explicit(&v->qtail, ACQUIRE);
	if ((tail == head || !plausible(v, head, tail)) && qtail_load(v, head, &tail))
		return -EIO;
	old = head;
	off = atomic_load_explicit(&v->r->roff, RELAXED);
	if (!stream) {
		r = rec_next(v, &head, tail, &rec, &pos);
		if (r == 0) {
			k = len < rec.len ? len : rec.len;
			memcpy(buf, v->data + pos + sizeof(rec), k);
			*full = rec.len;
			got = k;
			head += rec_size(rec.len);
		}
	} else {
		/* Bytes of one writer, record after record, the first from
		 * where the last read stopped in it. */
		while (got < len) {
			r = rec_next(v, &head, tail, &rec, &pos);
			if (r == -EAGAIN && !reloaded) {
				/* The hint ran out: all there is, as a pipe gives. */
				reloaded = true;
				if (qtail_load(v, head, &tail))
					return -EIO;
				continue;
			}
			if (r)
				break;
			if (off > rec.len) {
				r = -EIO;
				break;
			}
			k = rec.len - off < len - got ? rec.len - off : len - got;
			memcpy((char *)buf + got, v->data + pos + sizeof(rec) + off, k);
			got += k;
			if (off + k < rec.len) {
				off += (uint32_t)k;
				break;
			}
			head += rec_size(rec.len);
			off = 0;
		}
		*full = got;
	}
	if (r == -EIO)
		return -EIO;
	res = stream ? (got ? (ssize_t)got : -EAGAIN) : (r ? r : (ssize_t)got);
	if (flags & IPCD_IO_PEEK)
		return res;
	if (stream)
		atomic_store_explicit(&v->r->roff, off, RELAXED);
	if (head != old)
		/* Release: our reads of the slots (and roff) are done first. */
		atomic_store_explicit(&v->r->head, head, RELEASE);
	return res;
}

/* ---- peek and consume: reading in place ---------------------------------- */

ssize_t ipcd_ring_peek(struct ipcd_view *v, struct ipcd_span sp[2], uint32_t tid)
{
	struct ipcd_ring_rec rec;
	uint64_t head, tail, used, pos, to_end;
	bool moved = false;
	ssize_t n;
	int gone, r;

	if (v->peeking)
		return -EALREADY;
	if (broken(v))
		return -EIO;
	r = lock_try(&v->r->rlock, tid);
	if (r)
		return r;
	gone = writers_gone(v);
	if (load_used(v, &head, &tail)) {
		n = -EIO;
		goto out;
	}
	used = tail - head;
	sp[0].p = sp[1].p = NULL;
	sp[0].n = sp[1].n = 0;
	pos = head & (v->cap - 1);
	to_end = v->cap - pos;
	if (used && (v->features & IPCD_RING_F_MESSAGE)) {
		if (used < sizeof(rec)) {
			n = -EIO;
			goto out;
		}
		memcpy(&rec, v->data + pos, sizeof(rec));
		if (rec.flags & IPCD_REC_PAD) {
			/* A pad fills exactly the rest of the data area: past
			 * it at once, as a read would go. */
			if (rec.flags != IPCD_REC_PAD || rec.len != to_end - sizeof(rec) ||
			    used < to_end) {
				n = -EIO;
				goto out;
			}
			head += to_end;
			used -= to_end;
			atomic_store_explicit(&v->r->head, head, RELEASE);
			moved = true;
			pos = 0;
			to_end = v->cap;
			if (used && used < sizeof(rec)) {
				n = -EIO;
				goto out;
			}
			if (used)
				memcpy(&rec, v->data, sizeof(rec));
		}
		if (used && (rec.flags != 0 || rec.len > v->msg_max ||
			     rec_size(rec.len) > used || rec_size(rec.len) > to_end)) {
			n = -EIO;
			goto out;
		}
	}
	if (used == 0) {
		n = gone && atomic_load_explicit(&v->r->tail, ACQUIRE) == head ? IPCD_EOF
									       : -EAGAIN;
		goto out;
	}
	if (v->features & IPCD_RING_F_MESSAGE) {
		sp[0].p = v->data + pos + sizeof(rec);
		sp[0].n = rec.len;
		v->peek_end = head + rec_size(rec.len);
		n = rec.len;
	} else {
		sp[0].p = v->data + pos;
		sp[0].n = used < to_end ? used : to_end;
		if (used > to_end) {
			sp[1].p = v->data;
			sp[1].n = used - to_end;
		}
		v->peek_end = tail;
		n = (ssize_t)used;
	}
	/* The read lock stays ours until ipcd_ring_consume. */
	v->peek_head = head;
	v->peeking = true;
	return n;
out:
	if (n == -EIO)
		hints_drop(v);
	lock_drop(&v->r->rlock);
	if (moved)
		ipcd_ring_wake_locked(v, IPCD_WAIT_SPACE);	/* a pad was consumed */
	return n;
}

int ipcd_ring_consume(struct ipcd_view *v, uint64_t n)
{
	uint64_t head;

	if (!v->peeking)
		return -EINVAL;
	if (v->features & IPCD_RING_F_MESSAGE) {
		if (n > 1)
			return -EINVAL;
		head = n ? v->peek_end : v->peek_head;
	} else {
		if (n > v->peek_end - v->peek_head)
			return -EINVAL;
		head = v->peek_head + n;
	}
	v->peeking = false;
	if (head != v->peek_head)
		/* Release: the caller's reads of the bytes are done before the
		 * producer may reuse them. */
		atomic_store_explicit(&v->r->head, head, RELEASE);
	lock_drop(&v->r->rlock);
	if (head != v->peek_head)
		ipcd_ring_wake_locked(v, IPCD_WAIT_SPACE);
	return 0;
}
