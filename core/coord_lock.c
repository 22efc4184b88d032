/*
 * coord_lock.c - coordination by lock words (IPCD_COORD_LOCK): one ring a
 * side, whose writers take turns by the ring's write lock and readers by
 * its read lock (ring.c, ring_lock.c).  This is the table of calls (coord.h) over the
 * ring's own operations, so that ends use every design alike; it is also
 * the only design whose rings carry attachments.
 */
#include <errno.h>
#include <stdatomic.h>

#include "coord.h"

static int lock_attach(void *st, void *map, size_t len, unsigned side)
{
	return ipcd_view_attach_role(st, map, len, side);
}

static struct ipcd_view *lock_view(void *st)
{
	return st;
}

static void lock_set_ends(void *st, struct ipcd_ring *r0, unsigned wend)
{
	ipcd_view_set_ends(st, r0, wend);
}

static ssize_t lock_write(void *st, const void *buf, size_t len, uint32_t tid,
			  const struct ipcd_anc_ops *anc)
{
	return ipcd_ring_write_anc(st, buf, len, tid, anc);
}

static ssize_t lock_read(void *st, void *buf, size_t len, uint32_t tid, unsigned flags,
			 size_t *full, const struct ipcd_anc_ops *anc)
{
	return ipcd_ring_read_anc(st, buf, len, tid, flags, full, anc);
}

static ssize_t lock_peek(void *st, struct ipcd_span sp[2], uint32_t tid)
{
	return ipcd_ring_peek(st, sp, tid);
}

static int lock_consume(void *st, uint64_t n)
{
	return ipcd_ring_consume(st, n);
}

static int lock_busy(void *st, enum ipcd_dir dir)
{
	return ipcd_ring_lock_wait(st, dir);
}

static struct ipcd_view *lock_space_view(void *st, uint32_t tid)
{
	(void)tid;
	return st;
}

static int lock_has_data(const void *st)
{
	const struct ipcd_view *v = st;

	/* A pad to skip counts: the read that skips it finds what follows. */
	return atomic_load(&v->r->tail) != atomic_load(&v->r->head);
}

static int lock_has_room(void *st, size_t need, uint32_t tid)
{
	ssize_t n = ipcd_ring_space(st);

	(void)tid;
	return n < 0 || (size_t)n >= (need ? need : 1);
}

static ssize_t lock_readable(const void *st)
{
	return ipcd_ring_readable(st);
}

static ssize_t lock_queued(const void *st)
{
	return ipcd_ring_queued(st);
}

static uint64_t lock_moved(const void *st, bool tails)
{
	const struct ipcd_view *v = st;

	return atomic_load(tails ? &v->r->tail : &v->r->head);
}

/* A thread holds nothing between calls; a dead holder's lock is taken
 * over by whoever meets it (ipcd_ring_lock_wait, ipcd_ring_lock_reap). */
static void lock_release(void *st, uint32_t tid)
{
	(void)st;
	(void)tid;
}

static unsigned lock_reap(void *st)
{
	(void)st;
	return 0;
}

const struct ipcd_coord_ops ipcd_coord_lock = {
	.name = "lock",
	.size = sizeof(struct ipcd_view),
	.attach = lock_attach,
	.view = lock_view,
	.set_ends = lock_set_ends,
	.write = lock_write,
	.read = lock_read,
	.peek = lock_peek,
	.consume = lock_consume,
	.busy = lock_busy,
	.space_view = lock_space_view,
	.has_data = lock_has_data,
	.has_room = lock_has_room,
	.readable = lock_readable,
	.queued = lock_queued,
	.moved = lock_moved,
	.release = lock_release,
	.reap = lock_reap,
};
