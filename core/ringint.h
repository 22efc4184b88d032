/*
 * ringint.h - what the ring's own files share (ring.c: formatting,
 * attaching and copying; ring_lock.c: thread ids and the robust locks;
 * ring_wait.c: waking, the wake-up barrier and sleeping).  Not for the
 * rest of the project: ringops.h is the ring's interface.
 */
#ifndef IPCD_RINGINT_H
#define IPCD_RINGINT_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#include "ringops.h"

#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define SEQCST memory_order_seq_cst

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline long futex(_Atomic uint32_t *w, int op, uint32_t val,
			 const struct timespec *ts)
{
	return ipcd_syscall(SYS_futex, (long)w, op, val, (long)ts, 0, 0);
}

/* ---- the locks (ring.h, "Locks"); reaping and waiting: ring_lock.c ---- */

static inline _Atomic uint32_t *lock_word(struct ipcd_view *v, enum ipcd_dir dir)
{
	return dir == IPCD_WAIT_DATA ? &v->r->rlock : &v->r->wlock;
}

static inline int lock_try(_Atomic uint32_t *l, uint32_t tid)
{
	uint32_t cur = 0;
	int spins;

	for (spins = 0; spins < 128; spins++) {
		/* Acquire: pairs with the release in lock_drop, so the previous
		 * holder's index stores are visible to us. */
		if (atomic_compare_exchange_weak_explicit(l, &cur, cur | tid,
							  ACQUIRE, RELAXED))
			return 0;
		if ((cur & ~IPCD_LOCK_WAITERS) > IPCD_LOCK_TID_MAX)
			return -EIO;
		if ((cur & ~IPCD_LOCK_WAITERS) != 0) {
			cpu_relax();
			cur = 0;
		}
	}
	return -EBUSY;
}

static inline void lock_drop(_Atomic uint32_t *l)
{
	/* Release: orders our index stores before the next holder's reads.
	 * Sequentially consistent, as ipcd_ring_wake_locked counts on it as a full
	 * barrier. */
	uint32_t old = atomic_exchange_explicit(l, 0, SEQCST);

	if (old & IPCD_LOCK_WAITERS)
		futex(l, FUTEX_WAKE, INT_MAX, NULL);
}

/* Wake the sleepers of direction dir (ring_wait.c), right after a lock's
 * release, whose exchange is the full barrier the wake-up needs. */
void ipcd_ring_wake_locked(struct ipcd_view *v, enum ipcd_dir dir);

#endif
