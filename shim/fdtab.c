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

/* A chunk: CHUNK slots, whether each fd is close-on-exec (kept for the
 * holders protocol: which ends a spawned program keeps), and which slots
 * were ever used, so that fdtab_each reads only those.  The last is never
 * cleared: a set and a clear racing on one fd cannot lose a bit. */
struct chunk {
	_Atomic uint64_t used[CHUNK / 64];
	_Atomic uint64_t cloexec[CHUNK / 64];
	slot_t slot[CHUNK];
};

/* The first chunk (fds below CHUNK, nearly all) lies in the library's own
 * zero pages: no allocation, and only the pages its fds use are touched.
 * The others hang off a top-level table made when first needed. */
static struct chunk first;
static _Atomic(struct chunk *) *top;	/* TOP chunk pointers; top[0] unused */
static _Atomic unsigned top_used = 1;	/* 1 + the highest chunk made */
static atomic_bool any;			/* set once a channel fd was made */
static pthread_mutex_t free_mu SHIM_FORKED = PTHREAD_MUTEX_INITIALIZER;
static struct sfd *free_list;		/* under free_mu */

/*
 * The sfd a call of the one thread borrows, or NULL; and whether it lost its
 * last reference meanwhile (a signal handler closed it), so that returning it
 * frees it.  Written only while the process is single-threaded, by that
 * thread or its signal handlers; atomics so that a handler's writes are seen.
 * While orphan is set nothing new is borrowed.
 */
static _Atomic(struct sfd *) lent;
static atomic_bool orphan;

IPCD_FORK_TEXT void fdtab_after_fork(void)
{
	free_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

bool fdtab_any(void)
{
	return atomic_load_explicit(&any, memory_order_relaxed);
}

/* The chunk of fd if it exists: the lookup of every call, inlined. */
static inline struct chunk *chunk_find(int fd)
{
	_Atomic(struct chunk *) *t;

	if (fd < 0)
		return NULL;
	if (fd < (int)CHUNK)
		return &first;
	t = atomic_load_explicit(&top, memory_order_acquire);
	if (!t)
		return NULL;
	/* Acquire: pairs with the release of the chunk in chunk_make(). */
	return atomic_load_explicit(&t[fd >> CHUNK_BITS], memory_order_acquire);
}

static inline slot_t *slot_find(int fd)
{
	struct chunk *c = chunk_find(fd);

	return c ? &c->slot[fd & (CHUNK - 1)] : NULL;
}

static struct chunk *chunk_make(int fd)
{
	_Atomic(struct chunk *) *t = atomic_load_explicit(&top, memory_order_acquire);
	struct chunk *chunk, *expect = NULL;

	if (fd < 0)
		return NULL;
	if (fd < (int)CHUNK)
		return &first;
	if (!t) {
		t = mmap(NULL, TOP * sizeof(*t), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (t == MAP_FAILED)
			return NULL;
		{
			_Atomic(struct chunk *) *old = NULL;

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
	if (!chunk) {
		/* Zero pages from the kernel, touched only where fds are: the
		 * low numbers and the bitmaps share the first page. */
		chunk = mmap(NULL, sizeof(*chunk), PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (chunk == MAP_FAILED)
			return NULL;
		/* Release: pairs with the acquire load above in other threads. */
		if (!atomic_compare_exchange_strong_explicit(
			    &t[fd >> CHUNK_BITS], &expect, chunk,
			    memory_order_acq_rel, memory_order_acquire)) {
			munmap(chunk, sizeof(*chunk));
			chunk = expect;
		}
		{
			unsigned want = (unsigned)(fd >> CHUNK_BITS) + 1, u = atomic_load(&top_used);

			while (u < want && !atomic_compare_exchange_weak(&top_used, &u, want))
				;
		}
	}
	return chunk;
}

void fdtab_set_cloexec(int fd, bool on)
{
	struct chunk *c = chunk_find(fd);
	uint64_t bit;

	if (!c)
		return;
	bit = 1ull << (fd & 63);
	if (on)
		atomic_fetch_or(&c->cloexec[(fd & (CHUNK - 1)) / 64], bit);
	else
		atomic_fetch_and(&c->cloexec[(fd & (CHUNK - 1)) / 64], ~bit);
}

bool fdtab_cloexec(int fd)
{
	struct chunk *c = chunk_find(fd);

	return c && (atomic_load(&c->cloexec[(fd & (CHUNK - 1)) / 64]) >> (fd & 63) & 1);
}

void fdtab_each(void (*fn)(int fd, struct sfd *s, void *arg), void *arg)
{
	_Atomic(struct chunk *) *t = atomic_load_explicit(&top, memory_order_acquire);
	struct chunk *c;
	struct sfd *s;
	unsigned i, j, w;

	if (!fdtab_any())
		return;
	for (i = 0; i < atomic_load(&top_used) && i < TOP; i++) {
		c = i ? (t ? atomic_load_explicit(&t[i], memory_order_acquire) : NULL) : &first;
		if (!c)
			continue;
		for (w = 0; w < CHUNK / 64; w++) {
			uint64_t bits = atomic_load_explicit(&c->used[w], memory_order_acquire);

			while (bits) {
				j = w * 64 + (unsigned)__builtin_ctzll(bits);
				bits &= bits - 1;
				s = atomic_load_explicit(&c->slot[j], memory_order_acquire);
				if (s)
					fn((int)(i * CHUNK + j), s, arg);
			}
		}
	}
}

bool fdtab_has(int fd)
{
	slot_t *sl = fdtab_any() ? slot_find(fd) : NULL;

	return sl && atomic_load_explicit(sl, memory_order_acquire);
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

bool fdtab_quiet(void)
{
	return SINGLE_THREADED() && !atomic_load_explicit(&lent, memory_order_relaxed) &&
	       !atomic_load_explicit(&orphan, memory_order_relaxed);
}

struct sfd *fdtab_borrow(int fd, bool *borrowed)
{
	slot_t *sl;
	struct sfd *s;

	*borrowed = false;
	if (!fdtab_quiet())
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
	struct smap *m;

	/* Only the put that ends a live sfd frees it; a stale lookup's put on a
	 * recycled one finds it no longer live. */
	if (!atomic_exchange(&s->live, false))
		return;
	c = atomic_exchange(&s->c, NULL);
	if (c)
		ipcd_detach(c);
	m = s->m;
	s->m = NULL;
	if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
		munmap(m->map, m->len);
		free(m);
	}
	pthread_mutex_lock(&free_mu);
	s->next_free = free_list;
	free_list = s;
	pthread_mutex_unlock(&free_mu);
}

/* A new sfd holding one reference, the caller's: end `end` (or -1) of
 * a channel of kind `kind`, not attached yet. */
struct sfd *sfd_new(enum skind kind, unsigned roles, int end)
{
	struct sfd *s;

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
	s->m = NULL;
	s->kind = kind;
	s->roles = roles;
	s->end = end;
	s->pending = false;
	s->map_len = 0;
	s->slow = false;
	s->inherited = false;
	s->made_here = false;
	atomic_store(&s->dirty, false);
	atomic_store(&s->nonblock, 0);
	atomic_store(&s->shut_rd, 0);
	atomic_store(&s->counted, false);
	atomic_store(&s->reaps_seen, atomic_load(&shim_reaps));
	atomic_store(&s->rcvtimeo, 0);
	atomic_store(&s->sndtimeo, 0);
	atomic_store(&s->passcred, 0);
	s->cred_pid = 0;
	s->cred_uid = 0;
	s->cred_gid = 0;
	s->next_free = NULL;
	s->held_next = s->held_prev = NULL;
	atomic_store(&s->c, NULL);
	atomic_store(&s->live, true);
	return s;
}

int fdtab_set(int fd, struct sfd *s, bool cloexec)
{
	struct chunk *c = chunk_make(fd);
	struct sfd *old;

	if (!c)
		return -1;
	atomic_fetch_add(&s->refs, 1);
	atomic_store_explicit(&any, true, memory_order_relaxed);
	fdtab_set_cloexec(fd, cloexec);
	old = atomic_exchange(&c->slot[fd & (CHUNK - 1)], s);
	if (!(atomic_load_explicit(&c->used[(fd & (CHUNK - 1)) / 64], memory_order_relaxed) &
	      1ull << (fd & 63)))
		atomic_fetch_or_explicit(&c->used[(fd & (CHUNK - 1)) / 64], 1ull << (fd & 63),
					 memory_order_release);
	if (old)
		sfd_put(old);
	return 0;
}

struct sfd *fdtab_clear(int fd)
{
	slot_t *sl;
	struct sfd *old;

	if (!fdtab_any())
		return NULL;
	sl = slot_find(fd);
	if (!sl)
		return NULL;
	old = atomic_exchange(sl, NULL);
	if (!old)
		return NULL;
	/* Ours was the only reference: no other fd here, no call in flight.
	 * The caller ends it (and its holding) with the table's reference. */
	if (atomic_load(&old->refs) == 1)
		return old;
	sfd_put(old);
	return NULL;
}
