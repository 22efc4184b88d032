/*
 * ring_wait.c - waking and sleeping on a ring's futex words: the wake-ups,
 * the wake-up barrier (membarrier), where each side last ran, and the
 * spin-then-sleep wait of the C library and the shim.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#endif
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ringint.h"

/* ---- waking --------------------------------------------------------------- */

/*
 * A full barrier right after an atomic read-modify-write.  On x86 each of
 * those is one already (a locked instruction: earlier stores drain, later
 * loads wait), so only the compiler must be kept from moving accesses
 * across; elsewhere it takes a fence.
 */
static inline void mb_after_rmw(void)
{
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(SEQCST);
#else
	atomic_thread_fence(SEQCST);
#endif
}

/*
 * 1 + the CPU this thread runs on, or 0 if unknown: from the area the C
 * library registers for restartable sequences, which the kernel keeps up
 * to date; no system call, no call into libc.
 */
static inline uint32_t cpu_now(void)
{
#if defined(RSEQ_SIG) && (defined(__x86_64__) || defined(__aarch64__))
	const struct rseq *rs;
	int32_t c;

	if (__rseq_size == 0)
		return 0;
	rs = (const struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	c = (int32_t)*(const volatile uint32_t *)&rs->cpu_id;
	return c < 0 ? 0 : (uint32_t)c + 1;
#else
	return 0;
#endif
}

/* Leave the hint of where this side runs (wcpu, rcpu; ring.h): stored only
 * when it changed, on a line this side writes anyway. */
static inline void note_cpu(_Atomic uint32_t *w)
{
	uint32_t c = cpu_now();

	if (c && atomic_load_explicit(w, RELAXED) != c)
		atomic_store_explicit(w, c, RELAXED);
}

/* Called right after lock_drop, whose exchange serves as the full barrier. */
void ipcd_ring_wake_locked(struct ipcd_view *v, enum ipcd_dir dir)
{
	_Atomic uint32_t *sleepers, *seq;

	note_cpu(dir == IPCD_WAIT_DATA ? &v->r->wcpu : &v->r->rcpu);
	if (dir == IPCD_WAIT_DATA) {
		sleepers = &v->r->rd_sleepers;
		seq = &v->r->data_seq;
	} else {
		sleepers = &v->r->wr_sleepers;
		seq = &v->r->space_seq;
	}
	/* Full barrier: orders our index store before the sleeper check,
	 * against the sleeper's increment before its re-check of the index
	 * (Dekker). */
	mb_after_rmw();
	if (atomic_load_explicit(sleepers, RELAXED) == 0)
		return;
	atomic_fetch_add_explicit(seq, 1, RELEASE);
	futex(seq, FUTEX_WAKE, INT_MAX, NULL);
}

void ipcd_ring_wake_all(struct ipcd_view *v, enum ipcd_dir dir)
{
	_Atomic uint32_t *seq = dir == IPCD_WAIT_DATA ? &v->r->data_seq
						      : &v->r->space_seq;

	atomic_fetch_add_explicit(seq, 1, SEQCST);
	futex(seq, FUTEX_WAKE, INT_MAX, NULL);
}

/* ---- the wake-up barrier ------------------------------------------------- */

/*
 * A waker stores an index and then loads a sleeper count; a sleeper adds
 * itself to the count and then loads the index.  Each needs a full barrier
 * between its store and its load, or each may miss the other (a lost
 * wake-up).  The waker runs once per record, the sleeper once per sleep,
 * so the sleeper pays: a process that joins (registers for the kernel's
 * global expedited membarrier) stores and loads with no fence, and every
 * sleeper, after counting itself, has the kernel run a full barrier on
 * each CPU that runs a process that joined (or that process is not
 * running, and switching it out was one).  Either the waker's store is
 * then visible to the sleeper's look, or the waker's load comes after the
 * barrier and sees the count.  A process that has not joined (a kernel
 * without the call, a sandbox that forbids it, IPCD_BARRIER=fence, the
 * Python client) fences at each wake-up as before.  A sleeper whose own
 * call fails cannot force the barrier on the others: it sleeps in short
 * slices and looks again.  Joining survives fork (the child shares the
 * registered address space's copy), not exec (the new program joins
 * again when it attaches a ring).
 */
static atomic_int barrier_state IPCD_FORKED;	/* 1 joined, -1 cannot, 0 not yet */

static void barrier_join(void)
{
	long q;
	const char *e;
	int ok;

	if (atomic_load_explicit(&barrier_state, RELAXED))
		return;
	e = getenv("IPCD_BARRIER");
	q = ipcd_syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0, 0, 0, 0);
	ok = !(e && strcmp(e, "fence") == 0) && q > 0 &&
	     (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
	     (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
	     ipcd_syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0, 0, 0,
			  0) == 0;
	atomic_store_explicit(&barrier_state, ok ? 1 : -1, RELAXED);
}

/* v's wakers may wake with no fence: join, and have its sleepers pay. */
void ipcd_barrier_view(struct ipcd_view *v)
{
	v->nofence = true;
	barrier_join();
}

bool ipcd_barrier_joined(void)
{
	return atomic_load_explicit(&barrier_state, RELAXED) > 0;
}

bool ipcd_barrier_sleep(void)
{
	/* The call is a full barrier on our own CPU too. */
	if (ipcd_syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0, 0, 0, 0) == 0)
		return true;
	atomic_thread_fence(SEQCST);
	return false;
}

void ipcd_ring_wake(struct ipcd_view *v, enum ipcd_dir dir)
{
	if (atomic_load_explicit(&barrier_state, RELAXED) > 0)
		atomic_signal_fence(SEQCST);	/* the sleeper's membarrier */
	else
		atomic_thread_fence(SEQCST);
	ipcd_ring_wake_locked(v, dir);
}

/* ---- waiting ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* How long a wait polls without yielding while the other side runs on
 * another CPU. */
#define PURE_SPIN_NS	3000u

/* Whether the side we wait for last ran on a CPU other than ours (the
 * writer's hint when we wait for data, the reader's for space). */
static bool peer_elsewhere(const struct ipcd_view *in, const struct ipcd_view *out,
			   unsigned dirs)
{
	uint32_t me = cpu_now(), peer;

	if (!me)
		return false;
	peer = atomic_load_explicit((dirs & IPCD_WAIT_DATA) ? &in->r->wcpu : &out->r->rcpu,
				    RELAXED);
	return peer && peer != me;
}

static int ready(const struct ipcd_view *in, const struct ipcd_view *out,
		 unsigned dirs, size_t need)
{
	return ((dirs & IPCD_WAIT_DATA) && ipcd_ring_can_read(in)) ||
	       ((dirs & IPCD_WAIT_SPACE) && ipcd_ring_can_write(out, need));
}

/* Wait on word a (and b, if not NULL) with a relative timeout. */
static long futex_waitv2(_Atomic uint32_t *a, uint32_t va, _Atomic uint32_t *b,
			 uint32_t vb, const struct timespec *rel)
{
	struct futex_waitv w[2] = {
		{ .val = va, .uaddr = (uintptr_t)a, .flags = FUTEX_32 },
		{ .val = vb, .uaddr = (uintptr_t)b, .flags = FUTEX_32 },
	};
	struct timespec abs;

	if (rel) {
		clock_gettime(CLOCK_MONOTONIC, &abs);
		abs.tv_sec += rel->tv_sec;
		abs.tv_nsec += rel->tv_nsec;
		if (abs.tv_nsec >= 1000000000L) {
			abs.tv_sec++;
			abs.tv_nsec -= 1000000000L;
		}
	}
	return ipcd_syscall(SYS_futex_waitv, (long)w, b ? 2 : 1, 0, rel ? (long)&abs : 0,
			    CLOCK_MONOTONIC, 0);
}

_Thread_local struct ipcd_sigwatch ipcd_sigwatch __attribute__((tls_model("initial-exec")));

void ipcd_sigwatch_interrupt(void)
{
	int i;

	atomic_fetch_add_explicit(&ipcd_sigwatch.interrupting, 1, RELAXED);
	for (i = 0; i < 2; i++) {
		_Atomic uint32_t *w = atomic_load_explicit(&ipcd_sigwatch.sleeping[i], RELAXED);

		if (w) {
			atomic_fetch_add_explicit(w, 1, SEQCST);
			futex(w, FUTEX_WAKE, INT_MAX, NULL);
		}
	}
}

/* Whether a handler that ends a blocked call ran since the call began. */
static bool interrupted(bool sigsafe, uint32_t sigmark)
{
	return sigsafe &&
	       atomic_load_explicit(&ipcd_sigwatch.interrupting, RELAXED) != sigmark;
}

int ipcd_ring_wait_pair(struct ipcd_view *in, struct ipcd_view *out,
			unsigned dirs, size_t need,
			const struct timespec *timeout, uint64_t spin_ns,
			uint32_t sigmark)
{
	static const struct timespec slice = { 0, 10 * 1000 * 1000 };
	uint32_t ds = 0, ss = 0;
	uint64_t start;
	long rc = 0;
	int i, burst, got = 0;
	bool sigsafe = dirs & IPCD_WAIT_SIGSAFE, sliced = false;

	dirs &= IPCD_WAIT_DATA | IPCD_WAIT_SPACE;
	if (interrupted(sigsafe, sigmark))
		return -EINTR;
	if (spin_ns) {
		/* The other side last ran on another CPU: its answer may come
		 * any moment, and a yield (a system call) would only see it
		 * late.  Poll without yielding for a while first. */
		if (peer_elsewhere(in, out, dirs)) {
			uint64_t limit = spin_ns < PURE_SPIN_NS ? spin_ns : PURE_SPIN_NS;

			start = now_ns();
			for (i = 0;; i++) {
				if (ready(in, out, dirs, need))
					return 0;
				cpu_relax();
				if (i % 64 == 63 &&
				    (now_ns() - start >= limit || interrupted(sigsafe, sigmark)))
					break;
			}
		}
		/* Look 1, 2, 4 ... 64 times between yields: a peer that shares
		 * our CPU gets it almost at once, one on another CPU is caught
		 * by the polls.  A handler that runs meanwhile counts in
		 * ipcd_sigwatch: the next look sees it. */
		start = now_ns();
		for (burst = 1; !got; burst = burst < 64 ? burst * 2 : 64) {
			for (i = 0; i < burst; i++) {
				if (ready(in, out, dirs, need)) {
					got = 1;
					break;
				}
				cpu_relax();
			}
			if (got || now_ns() - start >= spin_ns)
				break;
			if (interrupted(sigsafe, sigmark))
				return -EINTR;
			sched_yield();
		}
		if (got)
			return 0;
	}
	/* Sequentially consistent: our sleeper count is visible before we
	 * re-check the ring, against the waker's fence in wake(). */
	if (dirs & IPCD_WAIT_DATA) {
		atomic_fetch_add_explicit(&in->r->rd_sleepers, 1, SEQCST);
		ds = atomic_load_explicit(&in->r->data_seq, ACQUIRE);
	}
	if (dirs & IPCD_WAIT_SPACE) {
		atomic_fetch_add_explicit(&out->r->wr_sleepers, 1, SEQCST);
		ss = atomic_load_explicit(&out->r->space_seq, ACQUIRE);
	}
	/* Wakers that joined the barrier load our count with no fence: the
	 * kernel runs it for them now, or we cannot be sure of being woken
	 * and sleep a slice at a time.  Under a lock, its release is the
	 * wakers' barrier: nothing to do. */
	if ((((dirs & IPCD_WAIT_DATA) && in->nofence) ||
	     ((dirs & IPCD_WAIT_SPACE) && out->nofence)) &&
	    !ipcd_barrier_sleep() &&
	    (!timeout || timeout->tv_sec > 0 || timeout->tv_nsec > slice.tv_nsec)) {
		timeout = &slice;
		sliced = true;
	}
	/* A handler that comes from here on bumps the words we sleep on, so
	 * the futex wait does not start or ends at once. */
	if (sigsafe) {
		atomic_store_explicit(&ipcd_sigwatch.sleeping[0],
				      (dirs & IPCD_WAIT_DATA) ? &in->r->data_seq : NULL, RELAXED);
		atomic_store_explicit(&ipcd_sigwatch.sleeping[1],
				      (dirs & IPCD_WAIT_SPACE) ? &out->r->space_seq : NULL,
				      RELAXED);
		atomic_signal_fence(SEQCST);
	}
	/* futex_waitv with an absolute deadline: a handler installed with
	 * SA_RESTART lets the wait go on, as a pipe's read would. */
	if (!ready(in, out, dirs, need) && !interrupted(sigsafe, sigmark)) {
		if (dirs == IPCD_WAIT_DATA)
			rc = futex_waitv2(&in->r->data_seq, ds, NULL, 0, timeout);
		else if (dirs == IPCD_WAIT_SPACE)
			rc = futex_waitv2(&out->r->space_seq, ss, NULL, 0, timeout);
		else
			rc = futex_waitv2(&in->r->data_seq, ds, &out->r->space_seq,
					  ss, timeout);
	}
	if (sigsafe) {
		atomic_store_explicit(&ipcd_sigwatch.sleeping[0], NULL, RELAXED);
		atomic_store_explicit(&ipcd_sigwatch.sleeping[1], NULL, RELAXED);
		atomic_signal_fence(SEQCST);
	}
	if (dirs & IPCD_WAIT_DATA)
		atomic_fetch_sub_explicit(&in->r->rd_sleepers, 1, RELAXED);
	if (dirs & IPCD_WAIT_SPACE)
		atomic_fetch_sub_explicit(&out->r->wr_sleepers, 1, RELAXED);
	if ((rc < 0 && errno == EINTR) || interrupted(sigsafe, sigmark))
		return -EINTR;
	if (rc < 0 && errno == ETIMEDOUT && !sliced)
		return -ETIMEDOUT;
	return 0;	/* the caller looks again (after a slice, too) */
}

int ipcd_ring_wait(struct ipcd_view *v, unsigned dirs, size_t need,
		   const struct timespec *timeout, uint64_t spin_ns)
{
	return ipcd_ring_wait_pair(v, v, dirs, need, timeout, spin_ns, 0);
}
