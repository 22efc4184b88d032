/*
 * ring_lock.c - thread ids, and the robust producer and consumer locks of
 * a ring (taking and dropping them is inline, in ringint.h): whose they
 * are, taking one over from a dead holder, and waiting for one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ringint.h"

/* ---- thread id ---------------------------------------------------------- */

static _Thread_local uint32_t tid_cache __attribute__((tls_model("initial-exec")));
static atomic_bool tid_registered IPCD_FORKED;

IPCD_FORK_TEXT void ipcd_tid_forget(void)
{
	tid_cache = 0;
}

static void tid_setup(void)
{
	pthread_atfork(NULL, NULL, ipcd_tid_forget);
}

uint32_t ipcd_tid(void)
{
	if (tid_cache == 0) {
		/* Once per process: pthread_once would make a system call
		 * every time it runs for the first time. */
		if (!atomic_load_explicit(&tid_registered, RELAXED) &&
		    !atomic_exchange(&tid_registered, true))
			tid_setup();
		tid_cache = (uint32_t)ipcd_syscall(SYS_gettid, 0, 0, 0, 0, 0, 0);
	}
	return tid_cache;
}

static int tid_alive(uint32_t tid)
{
	return kill((pid_t)tid, 0) == 0 || errno == EPERM;
}

int ipcd_tid_alive(uint32_t tid)
{
	return tid != 0 && tid <= IPCD_LOCK_TID_MAX && tid_alive(tid);
}

int ipcd_ring_daemon_alive(const struct ipcd_view *v)
{
	uint32_t pid = atomic_load_explicit(&v->r->daemon_pid, RELAXED);

	return pid == 0 || pid > IPCD_LOCK_TID_MAX || tid_alive(pid);
}

int ipcd_ring_lock_reap(struct ipcd_view *v, enum ipcd_dir dir)
{
	_Atomic uint32_t *l = lock_word(v, dir);
	uint32_t cur = atomic_load_explicit(l, RELAXED);
	uint32_t owner = cur & ~IPCD_LOCK_WAITERS;

	if (owner == 0)
		return 0;
	if (owner > IPCD_LOCK_TID_MAX)
		return -EIO;
	if (tid_alive(owner))
		return 0;
	if (!atomic_compare_exchange_strong_explicit(l, &cur, 0, RELEASE, RELAXED))
		return 0;
	futex(l, FUTEX_WAKE, INT_MAX, NULL);
	return 1;
}

int ipcd_ring_lock_wait(struct ipcd_view *v, enum ipcd_dir dir)
{
	_Atomic uint32_t *l = lock_word(v, dir);
	const struct timespec tick = { 0, 10 * 1000 * 1000 };
	uint32_t cur = atomic_load_explicit(l, RELAXED);
	int r;

	if (cur == 0)
		return 0;
	if ((cur & ~IPCD_LOCK_WAITERS) > IPCD_LOCK_TID_MAX)
		return -EIO;
	if (!(cur & IPCD_LOCK_WAITERS) &&
	    !atomic_compare_exchange_strong_explicit(l, &cur, cur | IPCD_LOCK_WAITERS,
						     RELAXED, RELAXED))
		return 0;	/* it changed: try again */
	cur |= IPCD_LOCK_WAITERS;
	if (futex(l, FUTEX_WAIT, cur, &tick) < 0) {
		if (errno == EINTR)
			return -EINTR;
		if (errno == ETIMEDOUT) {
			r = ipcd_ring_lock_reap(v, dir);
			if (r < 0)
				return r;
		}
	}
	return 0;
}
