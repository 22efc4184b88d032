/*
 * hold.c - the holders protocol of ipcd/ring.h: which processes hold each
 * end of an anonymous channel, so that the last one to let go of an end
 * publishes it, and its peers see the end of file or EPIPE at once, as on a
 * kernel pipe, without waiting for the daemon to hear of the last close;
 * and so that the last holder can hand the end back to the pair's creator
 * for another pipe (pairs.c, "keeping").
 *
 * A process names itself by a random number, drawn when first needed; a
 * program it runs with the shim keeps it (inherit.c passes it on).  It fills a slot when a pair is made for it, hands a placeholder
 * to a child before fork or spawn (taken over by the child, or by the
 * program it runs if that one has the shim), and clears its slot when its
 * last descriptor of the end is closed or when it exits.  What it cannot
 * account for exactly (a child that runs a program without the shim, a
 * process killed, a descriptor sent over a socket) only leaves the end
 * counted as held: then the daemon's own count decides, as before.  The
 * protocol never counts an end as closed while someone still holds it.
 *
 * Locking: hold_mu guards the list of ends this process is counted for and
 * orders a fork against closes in other threads.  The slots themselves are
 * shared memory, changed with compare-and-swap.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define FREE_SLOTS	(IPCD_HOLDERS - 1)	/* the last is the lost flag */
#define ID_MASK		(~(IPCD_HOLDER_CHILD | IPCD_HOLDER_SPAWN))

static pthread_mutex_t hold_mu SHIM_FORKED = PTHREAD_MUTEX_INITIALIZER;
static struct sfd *held SHIM_FORKED;		/* ends we are counted for, under hold_mu */
static uint64_t my_id SHIM_FORKED, parent_id SHIM_FORKED;	/* 0: not known yet */
/* my_id came with the program (inherit.c): the slots of an end never
 * mapped here may name it.  A number drawn here is in no slot of such an
 * end. */
static bool id_passed SHIM_FORKED;
static _Atomic uint64_t synced SHIM_FORKED;		/* shim_reaps at the last catch-up */
static uint64_t fork_id SHIM_FORKED;		/* my_id when a fork began (child side) */
/* What our slots hold: my_id, or, in a forked child that has not needed
 * its own number yet, the placeholder its parent left (it stands for us
 * as well, and saves the child the look-up). 0: my_id. */
static uint64_t held_as SHIM_FORKED;

/*
 * A new number for this process: 62 random bits (the kernel's AT_RANDOM
 * bytes of this program, told apart between forks by the pid and the time),
 * never 0.  Numbers need only differ between processes that could meet in
 * one ring; nobody looks a process up by its number.
 */
static uint64_t new_id(void)
{
	static _Atomic uint64_t seq;
	const void *at = (const void *)getauxval(AT_RANDOM);
	uint64_t rnd[2] = { 0, 0 };
	struct timespec ts;
	uint64_t x;

	if (at)
		memcpy(rnd, at, sizeof(rnd));	/* 16 bytes, not aligned */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	x = rnd[0] ^ (rnd[1] << 1) ^ ((uint64_t)shim_pid << 32) ^
	    (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
	    atomic_fetch_add(&seq, 0x9e3779b97f4a7c15ull);
	/* splitmix64's finaliser: every input bit reaches every output bit */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	x &= ID_MASK;
	return x ? x : 1;
}

uint64_t hold_me(void)
{
	if (!my_id)
		my_id = new_id();
	return my_id;
}

uint64_t hold_known(void)
{
	return my_id;
}

static uint64_t held_value(void)
{
	return held_as ? held_as : my_id;
}

/* Our parent's number, if it told us (fork, or the list of inherit.c). */
static uint64_t parent(void)
{
	return parent_id;
}

void hold_ids(bool spawn, uint64_t *me, uint64_t *par)
{
	if (spawn || shim_in_vfork_child()) {
		/* A new process, or one running in our memory (then our
		 * number is its parent's): the number its placeholders carry
		 * is ours, and it has none of its own yet. */
		*me = 0;
		*par = my_id;
		return;
	}
	*me = my_id;
	*par = parent_id;
}

void hold_set_ids(uint64_t me, uint64_t par)
{
	my_id = me & ID_MASK;
	parent_id = par & ID_MASK;
	id_passed = my_id != 0;
}

/* ---- slots ---------------------------------------------------------------------- */

static _Atomic uint64_t *slots_of(struct ipcd_ring *r0, int end)
{
	return r0->holders[end];
}

static bool slot_add(_Atomic uint64_t *sl, uint64_t v)
{
	uint64_t zero;
	int i;

	for (i = 0; i < FREE_SLOTS; i++) {
		zero = 0;
		if (atomic_compare_exchange_strong(&sl[i], &zero, v))
			return true;
	}
	/* Full: nobody can tell any more when the end is let go of; the
	 * lost flag keeps it held until the daemon sees it closed. */
	atomic_store(&sl[FREE_SLOTS], IPCD_HOLDER_LOST);
	return false;
}

static bool slot_swap(_Atomic uint64_t *sl, uint64_t from, uint64_t to)
{
	uint64_t v;
	int i;

	for (i = 0; i < FREE_SLOTS; i++) {
		v = from;
		if (atomic_compare_exchange_strong(&sl[i], &v, to))
			return true;
	}
	return false;
}

static bool slot_has(_Atomic uint64_t *sl, uint64_t v)
{
	int i;

	for (i = 0; i < FREE_SLOTS; i++)
		if (atomic_load(&sl[i]) == v)
			return true;
	return false;
}

/* Whether our slot is the only one of end `end` (under hold_mu: nobody
 * else can add one meanwhile, only holders make placeholders). */
static bool only_us(struct ipcd_ring *r0, int end);

bool hold_empty(struct ipcd_ring *r0, int end)
{
	_Atomic uint64_t *sl = slots_of(r0, end);
	int i;

	for (i = 0; i < IPCD_HOLDERS; i++)
		if (atomic_load(&sl[i]))
			return false;
	return true;
}

static bool only_us(struct ipcd_ring *r0, int end)
{
	_Atomic uint64_t *sl = slots_of(r0, end);
	uint64_t v, me_v = held_value();
	int i, mine = 0;

	for (i = 0; i < IPCD_HOLDERS; i++) {
		v = atomic_load(&sl[i]);
		if (v == me_v)
			mine++;
		else if (v)
			return false;
	}
	return mine == 1;
}

bool hold_pair_alone(struct sfd *s)
{
	bool r;

	if (!atomic_load(&s->counted) || !s->m || s->end < 0 ||
	    !only_us(s->m->r0, 0) || !only_us(s->m->r0, 1))
		return false;	/* the usual answer, without the lock */
	pthread_mutex_lock(&hold_mu);
	r = atomic_load(&s->counted) && only_us(s->m->r0, 0) && only_us(s->m->r0, 1);
	pthread_mutex_unlock(&hold_mu);
	return r;
}

/* Bump seq, and wake its sleepers if it has any (sequentially consistent
 * both, against a sleeper that counts itself and then looks again). */
static void wake_word(_Atomic uint32_t *seq, _Atomic uint32_t *sleepers)
{
	atomic_fetch_add(seq, 1);
	if (atomic_load(sleepers))
		ipcd_syscall(SYS_futex, (long)seq, FUTEX_WAKE, INT_MAX, 0, 0, 0);
}

/*
 * End `end` of the channel whose rings are r0 and r1 (NULL for a pipe) is
 * let go of by its last holder: wake whoever waits on it, so that they see
 * the end of file (its readers) or EPIPE (its writers).
 */
static void wake_ends(struct ipcd_ring *r0, struct ipcd_ring *r1, int end)
{
	if (r1) {
		/* Side e writes ring e and reads the other. */
		if (end) {
			wake_word(&r1->data_seq, &r1->rd_sleepers);
			wake_word(&r0->space_seq, &r0->wr_sleepers);
		} else {
			wake_word(&r0->data_seq, &r0->rd_sleepers);
			wake_word(&r1->space_seq, &r1->wr_sleepers);
		}
	} else if (end) {
		/* A pipe: end 1 writes, end 0 reads its one ring. */
		wake_word(&r0->data_seq, &r0->rd_sleepers);
	} else {
		wake_word(&r0->space_seq, &r0->wr_sleepers);
	}
}

/* Clear value v from the slots of end `end` of the channel of rings r0 and
 * r1; true if that was the last holder (then its peers are woken). */
static bool drop(const struct smap *m, int end, uint64_t v)
{
	struct ipcd_ring *r0 = m->r0, *r1 = m->r1;
	_Atomic uint64_t *sl = slots_of(r0, end);
	int i;

	for (i = 0; i < FREE_SLOTS; i++) {
		uint64_t x = v;

		if (atomic_compare_exchange_strong(&sl[i], &x, 0))
			break;
	}
	if (!hold_empty(r0, end))
		return false;
	wake_ends(r0, r1, end);
	/* What a pipe, or a socket pair, carried is known now. */
	if (r1 ? hold_empty(r0, !end) || shim_site_peer_closed(r0, r1, end) : end == 1)
		shim_site_done(m);
	return true;
}

/* ---- the list of ends we hold (under hold_mu) ------------------------------------- */

static void list_add(struct sfd *s)
{
	s->held_prev = NULL;
	s->held_next = held;
	if (held)
		held->held_prev = s;
	held = s;
}

static void list_del(struct sfd *s)
{
	if (s->held_prev)
		s->held_prev->held_next = s->held_next;
	else if (held == s)
		held = s->held_next;
	if (s->held_next)
		s->held_next->held_prev = s->held_prev;
	s->held_next = s->held_prev = NULL;
}

/* A forked child about to fill new slots takes its parent's placeholders
 * over with its own number first (under hold_mu); false if it has none. */
static bool be_myself(void)
{
	struct sfd *s;

	if (!hold_me())
		return false;
	if (held_as) {
		for (s = held; s; s = s->held_next)
			slot_swap(slots_of(s->m->r0, s->end), held_as, my_id);
		held_as = 0;
	}
	return true;
}

/* ---- ends coming and going --------------------------------------------------------- */

void hold_mine(struct sfd *s)
{
	if (!shim_patched || !s->m || s->end < 0)
		return;
	pthread_mutex_lock(&hold_mu);
	if (be_myself() && slot_add(slots_of(s->m->r0, s->end), my_id)) {
		atomic_store(&s->counted, true);
		list_add(s);
	}
	pthread_mutex_unlock(&hold_mu);
}

void hold_claim(struct sfd *s, int fd)
{
	_Atomic uint64_t *sl;

	(void)fd;
	if (!shim_patched || !s->m || s->end < 0)
		return;
	sl = slots_of(s->m->r0, s->end);
	pthread_mutex_lock(&hold_mu);
	/* Counted already (before an exec), or take the placeholder our
	 * parent left for the program it spawned, or for the child it forked
	 * before that one ran this program. */
	if (be_myself() &&
	    (slot_has(sl, my_id) ||
	     (parent() && (slot_swap(sl, IPCD_HOLDER_CHILD | IPCD_HOLDER_SPAWN | parent_id,
				     my_id) ||
			   slot_swap(sl, IPCD_HOLDER_CHILD | parent_id, my_id))))) {
		atomic_store(&s->counted, true);
		list_add(s);
	}
	pthread_mutex_unlock(&hold_mu);
}

/* A noted end that was never mapped here: take back what stands for us
 * (our number, or the placeholder our parent left), mapping just long
 * enough; give the end back if we held it last (fd must still be open). */
static void drop_pending(struct sfd *s, int fd)
{
	_Atomic uint64_t *sl;
	struct ipcd_ring *r0, *r1;
	uint64_t v;
	void *map;
	size_t len;

	if (!shim_patched || s->end < 0)
		return;
	/* Nothing can stand for us in its slots: no number of ours came
	 * with the program and no parent left placeholders.  Mapping the
	 * ring would only show that (a forked child of a shell whose output
	 * is a channel, as each of its commands closes that output). */
	if (!id_passed && !parent())
		return;
	if (!hold_me() || ipcd_ring_map(fd, shim_map_len(fd), &map, &len) < 0)
		return;
	if (!shim_rings(map, len, &r0, &r1)) {
		munmap(map, len);
		return;
	}
	sl = slots_of(r0, s->end);
	v = slot_has(sl, my_id) ? my_id : !parent() ? 0 :
	    slot_has(sl, IPCD_HOLDER_CHILD | parent_id) ? IPCD_HOLDER_CHILD | parent_id :
	    IPCD_HOLDER_CHILD | IPCD_HOLDER_SPAWN | parent_id;
	if (r0->anon && v && drop(&(struct smap){ .map = map, .len = len, .r0 = r0, .r1 = r1 },
				  s->end, v))
		shim_give_end(fd, NULL, r0, s->end);
	munmap(map, len);
}

void hold_last(struct sfd *s, int fd)
{
	bool last = false;

	if (shim_in_vfork_child())
		return;	/* the parent's memory: its counts are its own */
	if (s->pending) {
		if (s->inherited)
			drop_pending(s, fd);
		return;
	}
	if (!atomic_load(&s->counted))
		return;
	pthread_mutex_lock(&hold_mu);
	if (atomic_exchange(&s->counted, false)) {
		list_del(s);
		last = drop(s->m, s->end, held_value());
	}
	pthread_mutex_unlock(&hold_mu);
	if (!last)
		shim_site_watch(s->m);
	/* Nobody else holds it: the pair may serve another pipe. */
	if (last && !atomic_load(&s->dirty))
		shim_give_end(fd, s, s->m->r0, s->end);
}

void hold_untracked(struct ipcd_ring *r0)
{
	/* Nobody will fill the slots of these ends: empty slots must not read
	 * as "let go of by all". */
	atomic_store(&slots_of(r0, 0)[FREE_SLOTS], IPCD_HOLDER_LOST);
	atomic_store(&slots_of(r0, 1)[FREE_SLOTS], IPCD_HOLDER_LOST);
}

void hold_sent(struct sfd *s)
{
	/* The receiver cannot be named: the end stays held until the daemon
	 * sees it closed. */
	if (s->m && s->end >= 0)
		atomic_store(&slots_of(s->m->r0, s->end)[FREE_SLOTS], IPCD_HOLDER_LOST);
}

/* ---- fork, spawn, exit -------------------------------------------------------------- */

void hold_fork_prepare(void)
{
	struct sfd *s;

	pthread_mutex_lock(&hold_mu);
	fork_id = held ? (be_myself() ? my_id : 0) : 0;
	for (s = held; s && fork_id; s = s->held_next)
		slot_add(slots_of(s->m->r0, s->end), IPCD_HOLDER_CHILD | fork_id);
}

void hold_fork_parent(void)
{
	pthread_mutex_unlock(&hold_mu);
}

void hold_fork_failed(void)
{
	struct sfd *s;

	/* No child: take the placeholders back. */
	pthread_mutex_lock(&hold_mu);
	for (s = held; s && fork_id; s = s->held_next)
		slot_swap(slots_of(s->m->r0, s->end), IPCD_HOLDER_CHILD | fork_id, 0);
	pthread_mutex_unlock(&hold_mu);
}

IPCD_FORK_TEXT void hold_fork_child(void)
{
	struct sfd *s, *next;

	hold_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	/* The placeholders our parent left stand for us until we need our
	 * own number (be_myself). */
	parent_id = fork_id;
	my_id = 0;
	id_passed = false;
	held_as = fork_id ? IPCD_HOLDER_CHILD | fork_id : 0;
	for (s = held; s; s = next) {
		next = s->held_next;
		if (!fork_id) {
			atomic_store(&s->counted, false);
			list_del(s);
		}
	}
	atomic_store(&synced, atomic_load(&shim_reaps));
}

struct spawn_scan {
	const posix_spawn_file_actions_t *fa;
	bool all;			/* every end goes (a fork, unknown actions) */
};

struct dup2_of {
	int fd;
	bool found;
};

static bool dup2_from(int tag, const int fds[2], void *arg)
{
	struct dup2_of *d = arg;

	if (tag == SHIM_FA_DUP2 && fds[0] == d->fd)
		d->found = true;
	return true;
}

/* Whether a spawned child keeps fd: not close-on-exec, or dup2'd. */
static bool goes_along(const struct spawn_scan *sc, int fd)
{
	struct dup2_of d = { fd, false };

	if (sc->all || !fdtab_cloexec(fd))
		return true;
	if (!sc->fa)
		return false;
	return !shim_fa_each(sc->fa, dup2_from, &d) || d.found;
}

static void spawn_one(int fd, struct sfd *s, void *arg)
{
	if (atomic_load(&s->counted) && goes_along(arg, fd))
		slot_add(slots_of(s->m->r0, s->end),
			 IPCD_HOLDER_CHILD | IPCD_HOLDER_SPAWN | my_id);
}

void hold_spawn(const posix_spawn_file_actions_t *fa, bool all)
{
	struct spawn_scan sc = { fa, all };

	if (!held || shim_in_vfork_child())
		return;
	pthread_mutex_lock(&hold_mu);
	if (!be_myself()) {
		pthread_mutex_unlock(&hold_mu);
		return;
	}
	/* One placeholder per descriptor that goes along: one per copy errs
	 * on the side of holding. */
	fdtab_each(spawn_one, &sc);
	pthread_mutex_unlock(&hold_mu);
}

void hold_vfork_dup(struct sfd *s, int newfd)
{
	(void)newfd;
	/* The child, in our memory, keeps s past its exec: a placeholder for
	 * what it will run, named after us (its parent). */
	if (atomic_load(&s->counted) && my_id)
		slot_add(slots_of(s->m->r0, s->end),
			 IPCD_HOLDER_CHILD | IPCD_HOLDER_SPAWN | my_id);
}

static void exit_pending(int fd, struct sfd *s, void *arg)
{
	(void)arg;
	if (s->pending && s->inherited && s->end >= 0)
		drop_pending(s, fd);
}

struct give {
	struct sfd *s;
	bool done;
};

/* Give back an end we held last, from one of its fds in our table. */
static void exit_give(int fd, struct sfd *s, void *arg)
{
	struct give *g = arg;

	if (s == g->s && !g->done && s->m) {
		shim_give_end(fd, s, s->m->r0, s->end);
		g->done = true;
	}
}

void hold_exit(void)
{
	struct sfd *s;

	if (shim_in_vfork_child() || !shim_patched || !fdtab_any())
		return;
	/* None held (a forked child of a process whose pipes are kernel
	 * pipes): no lock to take, nor libc's pages of its code to fault in.
	 * A thread that makes a pair while another ends the process leaves
	 * its slots filled, which only holds the ends until the daemon sees
	 * them closed. */
	if (!__atomic_load_n(&held, __ATOMIC_RELAXED)) {
		fdtab_each(exit_pending, NULL);
		return;
	}
	pthread_mutex_lock(&hold_mu);
	while ((s = held)) {
		list_del(s);
		if (!atomic_exchange(&s->counted, false))
			continue;
		/* Held by us alone: hand it back before letting go of it, so
		 * that our last act is the wake-up of its peers. */
		if (only_us(s->m->r0, s->end) && !atomic_load(&s->dirty)) {
			struct give g = { s, false };

			fdtab_each(exit_give, &g);
		}
		drop(s->m, s->end, held_value());
	}
	pthread_mutex_unlock(&hold_mu);
	fdtab_each(exit_pending, NULL);
}

struct exec_look {
	const struct smap *m;
	bool stays;
};

static void exec_stays(int fd, struct sfd *t, void *arg)
{
	struct exec_look *x = arg;

	if (t->m == x->m && !fdtab_cloexec(fd))
		x->stays = true;
}

void hold_exec(void)
{
	struct sfd *s;

	if (!held || shim_in_vfork_child())
		return;
	/* A pair held here alone whose every descriptor closes at this exec
	 * has carried all it will once the exec is done (a runtime's pipe
	 * made in its child just before): count it now, as nobody will clear
	 * our slots.  Should the exec fail, the count was early, which costs
	 * at most a pipe of the wrong sort. */
	pthread_mutex_lock(&hold_mu);
	for (s = held; s; s = s->held_next) {
		struct exec_look x = { s->m, false };

		if (!atomic_load_explicit(&s->m->r0->site, memory_order_relaxed) ||
		    !only_us(s->m->r0, 0) || !only_us(s->m->r0, 1))
			continue;
		fdtab_each(exec_stays, &x);
		if (!x.stays)
			shim_site_done(s->m);
	}
	pthread_mutex_unlock(&hold_mu);
}

struct pair_look {
	const struct smap *m;
	int fd[2], n[2];
};

static void pair_each(int fd, struct sfd *t, void *arg)
{
	struct pair_look *p = arg;

	if (t->m != p->m || t->end < 0 || t->end > 1 || atomic_load(&t->dirty))
		return;
	p->fd[t->end] = fd;
	p->n[t->end]++;
}

void hold_pair_here(const struct smap *m, int fd[2], int n[2])
{
	struct pair_look p = { m, { -1, -1 }, { 0, 0 } };

	fdtab_each(pair_each, &p);
	memcpy(fd, p.fd, sizeof(p.fd));
	memcpy(n, p.n, sizeof(p.n));
}

void hold_catch_up(struct sfd *s, int fd)
{
	uint64_t r = atomic_load_explicit(&shim_reaps, memory_order_relaxed);
	int fds[2], n[2];

	/* A child reaped since s came here may have held it without a word
	 * (killed, or running a program without the shim): the daemon knows. */
	if (r == atomic_load_explicit(&s->reaps_seen, memory_order_relaxed) ||
	    r == atomic_load_explicit(&synced, memory_order_relaxed))
		return;
	/* Unless the other end is open here too: then no close elsewhere can
	 * end the pipe for this one (a reader still has a writer, a writer a
	 * reader), which is all the daemon could tell.  make's jobserver pipe
	 * is one: it reads and writes both ends between its children.  Looked
	 * up once per reaped child and end. */
	if (s->m && s->end >= 0) {
		hold_pair_here(s->m, fds, n);
		if (n[1 - s->end]) {
			atomic_store_explicit(&s->reaps_seen, r, memory_order_relaxed);
			return;
		}
	}
	shim_sync(fd);
	atomic_store(&synced, r);
}
