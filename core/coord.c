/*
 * coord.c - what the two designs of coordination share (coord.h): taking
 * an entry of a table once per thread, by its thread id, and freeing
 * the entries of dead threads.
 */
#include <errno.h>

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
