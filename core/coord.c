/*
 * coord.c - what the two designs of coordination share (coord.h): taking
 * an entry of a table once per thread, by its thread id, and freeing
 * the entries of dead threads.
 */
#include <errno.h>
#include <sched.h>

#include "coord.h"

int ipcd_entry_of(void *set, unsigned n, ipcd_word_fn word, _Atomic uint64_t *cache,
		  uint32_t tid, bool take, bool *fresh)
{
	uint64_t c = atomic_load_explicit(cache, memory_order_relaxed);
	unsigned k, i;
	uint32_t o;

	*fresh = false;
	if ((uint32_t)(c >> 32) == tid && (uint32_t)c != 0 && (uint32_t)c <= n &&
	    atomic_load_explicit(word(set, (uint32_t)c - 1), memory_order_relaxed) == tid)
		return (int)(uint32_t)c - 1;
	for (i = 0; i < n; i++)
		if (atomic_load_explicit(word(set, i), memory_order_relaxed) == tid)
			goto found;
	if (!take)
		return -ENOENT;
	/* Free entries first, from where the thread id points (threads that
	 * arrive together spread out); then dead threads'. */
	for (k = 0; k < 2 * n; k++) {
		i = (tid + k) % n;
		o = atomic_load_explicit(word(set, i), memory_order_relaxed);
		if (k < n ? o != 0 : (o == 0 || ipcd_tid_alive(o)))
			continue;
		/* Acquire: what the last holder did with it comes first. */
		if (atomic_compare_exchange_strong_explicit(word(set, i), &o, tid,
							    memory_order_acquire,
							    memory_order_relaxed)) {
			*fresh = true;
			goto found;
		}
	}
	return -ENOSPC;
found:
	atomic_store_explicit(cache, (uint64_t)tid << 32 | (i + 1), memory_order_relaxed);
	return (int)i;
}

unsigned ipcd_entry_free_dead(void *set, unsigned n, ipcd_word_fn word)
{
	unsigned i, freed = 0;
	uint32_t t;

	for (i = 0; i < n; i++) {
		t = atomic_load_explicit(word(set, i), memory_order_relaxed);
		if (t && !ipcd_tid_alive(t) &&
		    atomic_compare_exchange_strong_explicit(word(set, i), &t, 0,
							    memory_order_release,
							    memory_order_relaxed))
			freed++;
	}
	return freed;
}

const struct ipcd_coord_ops *ipcd_coord_ops(uint32_t coord)
{
	static const struct ipcd_coord_ops *const ops[] = {
		[IPCD_COORD_LOCK] = &ipcd_coord_lock,
		[IPCD_COORD_QUEUES] = &ipcd_coord_queues,
		[IPCD_COORD_SHARED] = &ipcd_coord_shared,
	};

	return coord <= IPCD_COORD_MAX ? ops[coord] : NULL;
}

int ipcd_map_recycle(void *map, size_t len)
{
	const struct ipcd_map *m = map;
	struct ipcd_ring *r[2 * IPCD_QUEUES_MAX];
	unsigned i, n = 0, side, q, nq;
	uint32_t daemon = 0, off, nslots, coord;

	if (len < sizeof(*m))
		return -EIO;
	coord = m->coord;
	if (coord == IPCD_COORD_LOCK)
		return 0;
	nq = coord == IPCD_COORD_QUEUES ? m->nqueues : 1;
	for (side = 0; side < 2; side++)
		for (q = 0; q < nq && q < IPCD_QUEUES_MAX; q++) {
			r[n] = ipcd_map_ring(map, len, IPCD_ROLE(side, q));
			if (r[n])
				n++;
			else if (!side)
				return -EIO;	/* side 1 only if duplex */
		}
	/* Read once: any peer may write the directory. */
	off = m->rslot_off;
	nslots = m->nrslots;
	if (!n || off % 64 || (uint64_t)off + (uint64_t)nslots * 64 > len)
		return -EIO;
	for (i = 0; i < n; i++)
		if (atomic_load(&r[i]->head) != atomic_load(&r[i]->tail) ||
		    atomic_load(&r[i]->state) || atomic_load(&r[i]->wlock) ||
		    atomic_load(&r[i]->rlock))
			return -EBUSY;
	/* The daemon's: the owner of each side's first queue, or the first
	 * writer slot's thread. */
	if (coord == IPCD_COORD_QUEUES) {
		struct ipcd_rslot *rs = (struct ipcd_rslot *)((char *)map + off);

		daemon = atomic_load(&r[0]->owner);
		for (i = 0; i < n; i++) {
			if (atomic_load(&r[i]->owner) != daemon)
				atomic_store(&r[i]->owner, 0);
			atomic_store(&r[i]->rclaim, 0);
			atomic_store(&r[i]->roff, 0);
		}
		for (i = 0; i < nslots; i++) {
			atomic_store(&rs[i].inside, 0);
			atomic_store(&rs[i].tid, 0);
		}
	} else {
		struct ipcd_wslot *ws = (struct ipcd_wslot *)((char *)map + off);

		/* One set of slots serves both sides. */
		for (i = 1; i < nslots; i++) {
			atomic_store(&ws[i].rsv, 0);
			atomic_store(&ws[i].tid, 0);
		}
	}
	return 0;
}

void ipcd_map_counts(const void *map, size_t len, const struct ipcd_ring *r0,
		     const struct ipcd_ring *r1, uint64_t *bytes, uint32_t *writes)
{
	const struct ipcd_map *m = map;
	const struct ipcd_wslot *ws;
	uint32_t off, n, i;

	*bytes = 0;
	*writes = 0;
	if (r0->kind != IPCD_RING_KIND_CELLS) {
		*bytes = atomic_load(&r0->tail) + (r1 ? atomic_load(&r1->tail) : 0);
		*writes = atomic_load(&r0->writes) + (r1 ? atomic_load(&r1->writes) : 0);
		return;
	}
	/* Read once: any peer may write the directory. */
	off = m->rslot_off;
	n = m->nrslots;
	if (off % 64 || (uint64_t)off + (uint64_t)n * sizeof(*ws) > len)
		return;
	ws = (const struct ipcd_wslot *)((const char *)map + off);
	for (i = 0; i < n; i++) {
		*bytes += atomic_load_explicit(&ws[i].bytes, memory_order_relaxed);
		*writes += atomic_load_explicit(&ws[i].writes, memory_order_relaxed);
	}
}

int ipcd_coord_yield(void *st, enum ipcd_dir dir)
{
	(void)st;
	(void)dir;
	sched_yield();
	return 0;
}
