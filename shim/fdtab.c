/*
 * fdtab.c - which file descriptors are accelerated channel ends.  A two-level
 * table of atomic pointers, indexed by fd number, with no fixed cap: the top
 * level covers every possible fd (reserved address space, touched lazily)
 * and second-level chunks appear when first needed.  Lookups take no lock.
 *
 * struct sfd memory is type-stable: it is recycled, never freed, so a lookup
 * that races with close() can take a reference and then notice the slot
 * changed, without touching freed memory.
 *
 * A single-threaded process may borrow an sfd for one call instead of taking
 * a reference (two atomic read-modify-writes saved per read and write): no
 * other thread can close it meanwhile, and if a signal handler does, the
 * last reference is left to the borrower to drop.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define SINGLE_THREADED()	(__libc_single_threaded != 0)
#else
#define SINGLE_THREADED()	false
#endif

#include "shim.h"

#define CHUNK_BITS	12
#define CHUNK		(1u << CHUNK_BITS)
#define TOP		((1u << 31) >> CHUNK_BITS)	/* fds are ints */

typedef _Atomic(struct sfd *) slot_t;

static _Atomic(slot_t *) *top;		/* TOP chunk pointers */
static atomic_bool any;			/* set once a channel fd was made */
static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sfd *free_list;		/* under free_mu */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/*
 * The sfd a call of the one thread borrows, or NULL; and whether it lost its
 * last reference meanwhile (a signal handler closed it), so that returning it
 * frees it.  Written only while the process is single-threaded, by that
 * thread or its signal handlers; atomics so that a handler's writes are seen.
 * While orphan is set nothing new is borrowed.
 */
static _Atomic(struct sfd *) lent;
static atomic_bool orphan;

static void free_mu_reset(void)
{
	pthread_mutex_init(&free_mu, NULL);
}

static void atfork_setup(void)
{
	pthread_atfork(NULL, NULL, free_mu_reset);
}

bool fdtab_any(void)
{
	return atomic_load_explicit(&any, memory_order_relaxed);
}

/* The slot of fd if its chunk exists: the lookup of every call, inlined. */
static inline slot_t *slot_find(int fd)
{
	_Atomic(slot_t *) *t = atomic_load_explicit(&top, memory_order_acquire);
	slot_t *chunk;

	if (fd < 0 || !t)
		return NULL;
	/* Acquire: pairs with the release of the chunk in slot(). */
	chunk = atomic_load_explicit(&t[fd >> CHUNK_BITS], memory_order_acquire);
	return chunk ? &chunk[fd & (CHUNK - 1)] : NULL;
}

static slot_t *slot(int fd, bool make)
{
	_Atomic(slot_t *) *t = atomic_load_explicit(&top, memory_order_acquire);
	slot_t *chunk, *expect = NULL;

	if (!make)
		return slot_find(fd);
	if (fd < 0)
		return NULL;
	if (!t) {
		t = mmap(NULL, TOP * sizeof(*t), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (t == MAP_FAILED)
			return NULL;
		{
			_Atomic(slot_t *) *old = NULL;

			/* Release: the zeroed table is visible before it is used. */
			if (!atomic_compare_exchange_strong_explicit(
				    &top, &old, t, memory_order_acq_rel,
				    memory_order_acquire)) {
				munmap(t, TOP * sizeof(*t));
				t = old;
			}
		}
	}
	chunk = atomic_load_explicit(&t[fd >> CHUNK_BITS], memory_order_acquire);
	if (!chunk && make) {
		chunk = calloc(CHUNK, sizeof(*chunk));
		if (!chunk)
			return NULL;
		/* Release: pairs with the acquire load above in other threads. */
		if (!atomic_compare_exchange_strong_explicit(
			    &t[fd >> CHUNK_BITS], &expect, chunk,
			    memory_order_acq_rel, memory_order_acquire)) {
			free(chunk);
			chunk = expect;
		}
	}
	return chunk ? &chunk[fd & (CHUNK - 1)] : NULL;
}

struct sfd *fdtab_get(int fd)
{
	slot_t *sl;
	struct sfd *s;

	if (!fdtab_any())
		return NULL;
	sl = slot_find(fd);
	if (!sl)
		return NULL;
	s = atomic_load_explicit(sl, memory_order_acquire);
	if (!s)
		return NULL;
	atomic_fetch_add(&s->refs, 1);
	/* The slot may have been cleared (and s recycled) meanwhile. */
	if (atomic_load_explicit(sl, memory_order_acquire) != s) {
		sfd_put(s);
		return NULL;
	}
	return s;
}

struct sfd *fdtab_borrow(int fd, bool *borrowed)
{
	slot_t *sl;
	struct sfd *s;

	*borrowed = false;
	if (!SINGLE_THREADED() || atomic_load_explicit(&lent, memory_order_relaxed) ||
	    atomic_load_explicit(&orphan, memory_order_relaxed))
		return fdtab_get(fd);	/* also a handler's call during a borrow */
	if (!fdtab_any())
		return NULL;
	sl = slot_find(fd);
	if (!sl)
		return NULL;
	s = atomic_load_explicit(sl, memory_order_acquire);
	if (!s)
		return NULL;
	atomic_store_explicit(&lent, s, memory_order_relaxed);
	/* A handler that closed fd before the store above cleared the slot. */
	atomic_signal_fence(memory_order_seq_cst);
	if (atomic_load_explicit(sl, memory_order_relaxed) != s) {
		sfd_return(s, true);
		return NULL;
	}
	*borrowed = true;
	return s;
}

static void sfd_free(struct sfd *s);

void sfd_return(struct sfd *s, bool borrowed)
{
	if (!borrowed) {
		sfd_put(s);
		return;
	}
	atomic_store_explicit(&lent, NULL, memory_order_relaxed);
	/* A handler sets orphan only while lent is s: after the store above,
	 * none will, and those that ran before are seen below. */
	atomic_signal_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&orphan, memory_order_relaxed)) {
		sfd_free(s);
		atomic_store_explicit(&orphan, false, memory_order_relaxed);
	}
}

void sfd_put(struct sfd *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	if (s == atomic_load_explicit(&lent, memory_order_relaxed)) {
		/* A signal handler closed what the call it interrupted borrowed:
		 * that call frees it when it returns it. */
		atomic_store_explicit(&orphan, true, memory_order_relaxed);
		return;
	}
	sfd_free(s);
}

/* Detach and recycle an sfd that lost its last reference. */
static void sfd_free(struct sfd *s)
{
	struct ipcd_chan *c;

	/* Only the put that ends a live sfd frees it; a stale lookup's put on a
	 * recycled one finds c already NULL. */
	c = atomic_exchange(&s->c, NULL);
	if (!c)
		return;
	ipcd_detach(c);
	pthread_mutex_lock(&free_mu);
	s->next_free = free_list;
	free_list = s;
	pthread_mutex_unlock(&free_mu);
}

/* A new sfd holding one reference, the caller's. */
struct sfd *sfd_new(struct ipcd_chan *c, enum skind kind, unsigned roles)
{
	struct sfd *s;

	pthread_once(&atfork_once, atfork_setup);
	pthread_mutex_lock(&free_mu);
	s = free_list;
	if (s)
		free_list = s->next_free;
	pthread_mutex_unlock(&free_mu);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
	}
	/* The creator's reference; a stale lookup may hold others briefly. */
	atomic_fetch_add(&s->refs, 1);
	s->kind = kind;
	s->roles = roles;
	atomic_store(&s->nonblock, 0);
	atomic_store(&s->shut_rd, 0);
	s->next_free = NULL;
	atomic_store(&s->c, c);
	return s;
}

int fdtab_set(int fd, struct sfd *s)
{
	slot_t *sl = slot(fd, true);
	struct sfd *old;

	if (!sl)
		return -1;
	atomic_fetch_add(&s->refs, 1);
	atomic_store_explicit(&any, true, memory_order_relaxed);
	old = atomic_exchange(sl, s);
	if (old)
		sfd_put(old);
	return 0;
}

bool fdtab_clear(int fd)
{
	slot_t *sl;
	struct sfd *old;
	bool last;

	if (!fdtab_any())
		return false;
	sl = slot(fd, false);
	if (!sl)
		return false;
	old = atomic_exchange(sl, NULL);
	if (!old)
		return false;
	/* Ours was the only reference: no other fd here, no call in flight. */
	last = atomic_load(&old->refs) == 1;
	sfd_put(old);
	return last;
}
