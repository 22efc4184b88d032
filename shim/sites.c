/*
 * sites.c - which pipes stay kernel pipes: pipes that carry little.
 *
 * A channel costs more to make, hand to a child and give back than a
 * kernel pipe, and pays that back only on the bytes it carries.  Shells,
 * make and language runtimes make most of their pipes in a few places of
 * their code, and what the pipes made in one place carry varies little: a
 * shell loop's `echo $i | tr ... | wc -c` moves a few bytes through each,
 * a runtime's pipe that tells it whether exec worked moves none.  So the
 * shim names each place that asks for a pipe (a site: the object and the
 * offset in it of the caller's return address; how many pipes the process
 * made since it last started a child, as a runtime makes a child's stdin,
 * stdout, stderr and exec-error pipes in one place, in that order; and the
 * program's arguments with their numbers left out, as a shell makes every
 * pipe in one place, and `sh -c 'seq 1 3000000 | wc -l'` is not
 * `sh -c 'echo 17 | wc -c'`, which is `sh -c 'echo 18 | wc -c'`), writes
 * the name into the pipe's ring with the tail at that
 * moment (ipcd/ring.h, "Sites"), and counts for the site, when the write
 * end is let go of for good (a socket pair: one end, after the other has
 * no writer left anywhere), whether the pair carried little: at most
 * SITE_SMALL bytes, or at most SITE_FEW in at most SITE_WRITES writes
 * (note()).  After SITE_RUN small pipes in a row a site gets kernel pipes,
 * but for a probe, now and then a channel again, which starts over if it
 * carries more.  The first probe comes after SITE_PROBE kernel pipes, and
 * each probe that carried little doubles the gap, up to SITE_PROBE <<
 * SITE_BACKOFF: a loop that runs thousands of small pipelines pays for a
 * handful of channels, not for one in every SITE_PROBE (3-4% of a shell
 * loop's time, measured).
 *
 * The counts sit in one page shared by all the user's processes, the file
 * /dev/shm/ipcd.sites.<uid> (IPCD_SHIM_SITES names another), mapped when a
 * process first needs it; the programs a process runs inherit its
 * descriptor (IPCD_SHIM_FDS, as a supply of kind SHIM_SITES_KIND) rather
 * than open the file again.  The `sh -c` that make or xargs starts for each
 * job makes two pipes and ends, and only all of them together learn what
 * those pipes carry; a shell pipeline run again learns from the last run.
 * Without the file (no /dev/shm, or someone else's file there) a process
 * tree shares a page of its own.  The page holds 192 sites and 64
 * programs; a new one whose places are all taken replaces the one there
 * that learnt least (entry_find), so that a page used for months still
 * learns.  The counts are atomics; a lost update costs one pipe of the
 * wrong sort, never a wrong byte.
 * IPCD_SHIM_LEARN=off makes every pipe a channel, and keeps it one
 * (calls.c, "pipes that only wait").
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord.h"
#include "shim.h"

#define SITE_SMALL	4096	/* bytes: a pipe that carried no more is small */
#define SITE_FEW	(1u << 20)	/* bytes: nor one that carried no more... */
#define SITE_WRITES	64	/* ...in at most this many writes */
#define SITE_RUN	4	/* small pipes in a row: kernel pipes */
#define SITE_PROBE	32	/* kernel pipes before a site's first probe */
#define SITE_BACKOFF	5	/* small probes that double the gap (to 1024) */
#define TAB_BYTES	4096
#define LOCAL_SITES	16	/* without a shared page */
#define PLACES		16	/* return addresses named, per process */

struct site {
	_Atomic uint64_t key;	/* 0: a free slot */
	_Atomic uint32_t small;	/* small pipes in a row, at most SITE_RUN + SITE_BACKOFF */
	_Atomic uint32_t kernel;	/* kernel pipes given since */
};
#define TAB_SITES	(TAB_BYTES / sizeof(struct site))
#define PROG_SLOTS	64	/* the page's last entries: programs (below) */
#define PROBE_MAX	16	/* entries a key may sit in, from its first */

static struct site local[LOCAL_SITES] SHIM_FORKED;
static struct site *_Atomic tab SHIM_FORKED;	/* the shared page once mapped */
static _Atomic int tab_fd SHIM_FORKED = -1;	/* its memfd (-1: none known here) */
static _Atomic uint64_t tab_ino SHIM_FORKED;
static _Atomic bool tab_failed SHIM_FORKED;	/* no page could be had: local counts */
static pthread_mutex_t tab_mu SHIM_FORKED = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned pipes_since_child SHIM_FORKED;
static uint64_t args_hash;		/* the program's arguments, numbers out */
static uint64_t lineage[PROG_LINEAGE];	/* this program's key, then its runners' */
static bool prog_forked SHIM_FORKED;	/* a fork of the process started */
static _Atomic size_t prog_bytes SHIM_FORKED;	/* moved through channels here */
_Atomic bool shim_prog_used SHIM_FORKED;	/* more than SITE_SMALL: the lineage told */
static uint64_t prog_key(uint64_t args);
static _Atomic int learn = -1;		/* IPCD_SHIM_LEARN, read once */

static struct {
	_Atomic uintptr_t pc;
	_Atomic uint64_t place;
} places[PLACES] SHIM_FORKED;

bool shim_learning(void)
{
	if (learn < 0) {
		const char *v = getenv("IPCD_SHIM_LEARN");

		learn = !(v && (!strcmp(v, "off") || !strcmp(v, "0")));
	}
	return learn;
}

/* ---- the page ---------------------------------------------------------------- */

/*
 * The user's page: IPCD_SHIM_SITES, or /dev/shm/ipcd.sites.<uid>, made if
 * missing.  Only a regular file of ours, of the page's size or made so,
 * is taken: another user's file there gets us a page of our own.
 */
static int tab_named(struct stat *st)
{
	const char *path = getenv("IPCD_SHIM_SITES");
	char own[64];
	int fd;

	if (!path || !*path) {
		snprintf(own, sizeof(own), "/dev/shm/ipcd.sites.%u", (unsigned)geteuid());
		path = own;
	}
	fd = real.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_uid != geteuid() ||
	    (st->st_mode & 077) || (st->st_size != TAB_BYTES &&
				    (st->st_size != 0 || ftruncate(fd, TAB_BYTES) < 0))) {
		shim_log("%s is not a sites page of ours: one for this process tree", path);
		real.close(fd);
		return -1;
	}
	return fd;
}

/* Map the inherited page, or the user's, or make one (under tab_mu). */
static struct site *tab_open(void)
{
	struct stat st;
	void *p;
	int fd = tab_fd;

	if (fd < 0) {
		fd = tab_named(&st);
		if (fd < 0) {
			fd = (int)memfd_create("ipcd-sites", MFD_CLOEXEC);
			if (fd < 0 || ftruncate(fd, TAB_BYTES) < 0 || fstat(fd, &st) < 0) {
				if (fd >= 0)
					real.close(fd);
				return NULL;
			}
		}
		fd = shim_move_high(fd);
		if (fd < 0)
			return NULL;
		tab_ino = (uint64_t)st.st_ino;
		tab_fd = fd;
	}
	p = mmap(NULL, TAB_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		shim_log("cannot map the sites page: %s", strerror(errno));
		return NULL;
	}
	return p;
}

/* The table and its size: the shared page, or the local one. */
static struct site *table(unsigned *n)
{
	struct site *t = atomic_load_explicit(&tab, memory_order_acquire);

	if (!t && !tab_failed) {
		pthread_mutex_lock(&tab_mu);
		t = atomic_load(&tab);
		if (!t) {
			t = tab_open();
			if (t)
				atomic_store_explicit(&tab, t, memory_order_release);
			else
				tab_failed = true;
		}
		pthread_mutex_unlock(&tab_mu);
	}
	if (!t) {
		*n = LOCAL_SITES;
		return local;
	}
	*n = TAB_SITES - PROG_SLOTS;
	return t;
}

/* What an entry is worth keeping: nothing if it learnt nothing (a key
 * that is not there counts as carrying much, as one that did), more the
 * further it learnt, and, once learnt, the more it served. */
static uint64_t entry_worth(struct site *e)
{
	uint64_t s = atomic_load_explicit(&e->small, memory_order_relaxed);

	return s << 32 | atomic_load_explicit(&e->kernel, memory_order_relaxed);
}

/*
 * The entry of key among the n from t, taken for it if add: NULL if none.
 * A key sits in one of PROBE_MAX entries from its first; when all are
 * taken, the one worth least goes to the new key.  The page is shared by
 * all the user's programs over time and would otherwise fill up and stop
 * learning.  Two processes that take one entry at once lose a count, not
 * a byte.
 */
static struct site *entry_find(struct site *t, unsigned n, uint64_t key, bool add)
{
	unsigned i, h = (unsigned)(key % n), w = n < PROBE_MAX ? n : PROBE_MAX;
	struct site *least = NULL;
	uint64_t cur;

	for (i = 0; i < w; i++) {
		struct site *e = &t[(h + i) % n];

		cur = atomic_load_explicit(&e->key, memory_order_relaxed);
		if (cur == key)
			return e;
		if (!cur) {
			if (!add)
				return NULL;
			if (atomic_compare_exchange_strong(&e->key, &cur, key) || cur == key)
				return e;
		}
		if (add && (!least || entry_worth(e) < entry_worth(least)))
			least = e;
	}
	if (!least)
		return NULL;
	cur = atomic_load_explicit(&least->key, memory_order_relaxed);
	if (!atomic_compare_exchange_strong(&least->key, &cur, key))
		return cur == key ? least : NULL;
	atomic_store_explicit(&least->small, 0, memory_order_relaxed);
	atomic_store_explicit(&least->kernel, 0, memory_order_relaxed);
	return least;
}

/* One more pipe (or run) of what e names that carried little, or one that
 * carried more: then the count starts over. */
static void entry_count(struct site *e, bool small, unsigned run)
{
	unsigned s = atomic_load_explicit(&e->small, memory_order_relaxed);

	if (small) {
		if (s < run + SITE_BACKOFF)
			atomic_store_explicit(&e->small, s + 1, memory_order_relaxed);
		return;
	}
	/* Stored only if not 0 already: the line is shared. */
	if (s)
		atomic_store_explicit(&e->small, 0, memory_order_relaxed);
	if (atomic_load_explicit(&e->kernel, memory_order_relaxed))
		atomic_store_explicit(&e->kernel, 0, memory_order_relaxed);
}

/* Whether what e names is learnt small, after run in a row, and this is
 * not a probe: the first after SITE_PROBE, and each small one doubles the
 * gap, up to SITE_PROBE << SITE_BACKOFF. */
static bool entry_learnt(struct site *e, unsigned run)
{
	unsigned s = atomic_load_explicit(&e->small, memory_order_relaxed), gap;

	if (s < run)
		return false;
	gap = SITE_PROBE << (s - run < SITE_BACKOFF ? s - run : SITE_BACKOFF);
	return (atomic_fetch_add_explicit(&e->kernel, 1, memory_order_relaxed) + 1) % gap != 0;
}

void shim_sites_adopt(int fd, uint64_t ino)
{
	struct stat st;

	if (tab_fd != -1 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_ino != ino || st.st_size != TAB_BYTES)
		return;
	real.fcntl(fd, F_SETFD, FD_CLOEXEC);
	tab_ino = ino;
	tab_fd = fd;
}

int shim_sites_fd(uint64_t *ino)
{
	int fd = tab_fd;

	*ino = tab_ino;
	return fd;
}

void shim_sites_fd_gone(void)
{
	tab_fd = -1;	/* the mapping stays; programs we run make their own */
}

IPCD_FORK_TEXT void shim_sites_after_fork(void)
{
	tab_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

void shim_sites_fd_release(void)
{
	pthread_mutex_lock(&tab_mu);
	if (tab_fd >= 0)
		real.close(tab_fd);
	tab_fd = -1;
	pthread_mutex_unlock(&tab_mu);
}

/* ---- sites -------------------------------------------------------------------- */

/* One byte more into an FNV-1a hash. */
static inline uint64_t fnv(uint64_t x, unsigned char c)
{
	return (x ^ c) * 0x100000001b3ull;
}

/* The arguments argv[0..argc) (argc < 0: to the NULL), numbers out. */
static uint64_t args_of(int argc, char *const *argv)
{
	uint64_t x = 0xcbf29ce484222325ull;
	size_t left = 1024;	/* bytes looked at, at most */
	int i;

	for (i = 0; (argc < 0 || i < argc) && argv && argv[i] && left; i++) {
		const unsigned char *c;
		bool num = false;

		for (c = (const unsigned char *)argv[i]; *c && left; c++, left--) {
			bool d = *c >= '0' && *c <= '9';

			if (!d || !num)
				x = fnv(x, d ? '#' : *c);
			num = d;
		}
		x = fnv(x, 0xff);	/* between arguments */
	}
	return x;
}

void shim_sites_args(int argc, char **argv)
{
	args_hash = args_of(argc, argv);
	lineage[0] = prog_key(args_hash);
}

/* ---- programs that need no shim ------------------------------------------------ */

/*
 * A program is named by its arguments, numbers out (its key, apart from
 * the sites' by PROG_SALT), and counted in the last PROG_SLOTS entries of
 * the page: each time it ends having moved at most SITE_SMALL bytes
 * through channels itself, as the process that was started (not a fork
 * of it), and with none of the programs it ran, in turn, having moved more.
 * Its lineage is its key and those of the programs that ran it, nearest
 * first (inherit.c passes them on): a process that moves more than
 * SITE_SMALL bytes starts the counts of all of them over.  After PROG_RUN
 * such runs in a row, a process with the shim runs that program without
 * it, unless the program would get channel ends (inherit.c decides);
 * probes keep it honest as for sites.  A program started with the shim
 * that runs another program does not end: it counts for neither.
 */
#define PROG_SALT	0x5be0cd19137e2179ull
#define PROG_RUN	4

static uint64_t prog_key(uint64_t args)
{
	uint64_t k = args ^ PROG_SALT;

	return k ? k : 1;
}

/* A program's entry in the shared page t: NULL if none (programs not
 * named keep the shim). */
static struct site *prog_find(struct site *t, uint64_t key, bool add)
{
	return entry_find(t + TAB_SITES - PROG_SLOTS, PROG_SLOTS, key, add);
}

/* The shared page, or NULL (a page of this tree's own is too small). */
static struct site *prog_table(void)
{
	unsigned n;
	struct site *t = table(&n);

	return n == TAB_SITES - PROG_SLOTS ? t : NULL;
}

void shim_prog_lineage(const uint64_t *up, unsigned n)
{
	unsigned i;

	for (i = 0; i < n && i + 1 < PROG_LINEAGE; i++)
		lineage[i + 1] = up[i];
}

const uint64_t *shim_prog_lineage_of(void)
{
	return lineage;
}

void shim_prog_moved_slow(size_t n)
{
	struct site *t, *e;
	int j;

	if (atomic_fetch_add_explicit(&prog_bytes, n, memory_order_relaxed) + n <= SITE_SMALL ||
	    atomic_exchange(&shim_prog_used, true) || !(t = prog_table()))
		return;
	for (j = 0; j < PROG_LINEAGE && lineage[j]; j++)
		if ((e = prog_find(t, lineage[j], true)))
			entry_count(e, false, PROG_RUN);
}

void shim_prog_exit(void)
{
	struct site *t, *e;

	if (!lineage[0] || prog_forked || atomic_load(&shim_prog_used) ||
	    !shim_learning() || shim_in_vfork_child() || !(t = prog_table()))
		return;
	if ((e = prog_find(t, lineage[0], true)))
		entry_count(e, true, PROG_RUN);
}

bool shim_prog_wanted(char *const argv[])
{
	struct site *t, *e;

	if (!shim_learning())
		return true;
	/* A child in our memory maps nothing: the page if it is there. */
	t = atomic_load_explicit(&tab, memory_order_acquire);
	if (!t && !shim_in_vfork_child())
		t = prog_table();
	if (!t || t == local)
		return true;
	e = prog_find(t, prog_key(args_of(-1, argv)), false);
	return !e || !entry_learnt(e, PROG_RUN);
}

IPCD_FORK_TEXT void shim_prog_fork_child(void)
{
	prog_forked = true;
}

void shim_site_child(void)
{
	if (atomic_load_explicit(&pipes_since_child, memory_order_relaxed))
		atomic_store_explicit(&pipes_since_child, 0, memory_order_relaxed);
}

/* What a return address stands for in any process that runs the same
 * object: the object's name and the offset in it.  Remembered per pc: a
 * slot is claimed by its pc first, and its place, never 0, is read as
 * known only once written. */
static uint64_t place_of(uintptr_t pc)
{
	unsigned i, h = (unsigned)(pc >> 4) % PLACES;
	uint64_t x = 0xcbf29ce484222325ull, known;
	const unsigned char *c;
	Dl_info di;

	for (i = 0; i < PLACES; i++) {
		unsigned j = (h + i) % PLACES;

		if (atomic_load_explicit(&places[j].pc, memory_order_acquire) == pc &&
		    (known = atomic_load_explicit(&places[j].place, memory_order_acquire)))
			return known;
	}
	if (!dladdr((void *)pc, &di) || !di.dli_fname)
		return pc;
	for (c = (const unsigned char *)di.dli_fname; *c; c++)
		x = fnv(x, *c);
	x ^= (uint64_t)(pc - (uintptr_t)di.dli_fbase) * 0x9e3779b97f4a7c15ull;
	x += !x;
	for (i = 0; i < PLACES; i++) {
		unsigned j = (h + i) % PLACES;
		uintptr_t cur = 0;

		if (atomic_compare_exchange_strong(&places[j].pc, &cur, pc)) {
			atomic_store_explicit(&places[j].place, x, memory_order_release);
			break;
		}
		if (cur == pc)
			break;	/* another thread's, the same place */
	}
	return x;
}

/* ---- pairs left to the daemon's count ----------------------------------------- */

/*
 * A pair that this process lets go of while other slots of it are still
 * filled is counted by whoever clears the last one.  A slot may stand for
 * a process that will never clear it: a child that ran another program
 * lost its close-on-exec copies of the ends at that exec without a word
 * (a runtime's exec-error pipe, its own ends of its child's socket pairs),
 * and the pair would never be counted, its site never learnt.  So the
 * mapping is kept a while, and once the daemon shows every open file of
 * the pair gone (ends_open 0), nothing can move through it any more: what
 * it carried is counted then, at this process's next pipe() or socketpair().
 */
#define WATCH_MAX	16

static struct smap *watch[WATCH_MAX] SHIM_FORKED;
static _Atomic unsigned watched SHIM_FORKED;	/* entries in watch */
static pthread_mutex_t watch_mu SHIM_FORKED = PTHREAD_MUTEX_INITIALIZER;

static void watch_unref(struct smap *m)
{
	if (atomic_fetch_sub(&m->refs, 1) == 1) {
		munmap(m->map, m->len);
		free(m);
	}
}

void shim_site_watch(struct smap *m)
{
	unsigned i, n;

	if (!m->r0->anon || !atomic_load_explicit(&m->r0->site, memory_order_relaxed))
		return;	/* not a pair of a site, or counted */
	/* Never waits: a signal handler's close or pipe() may come here. */
	if (pthread_mutex_trylock(&watch_mu))
		return;
	n = atomic_load(&watched);
	for (i = 0; i < n && watch[i] != m; i++)
		;
	if (i == n) {
		if (n == WATCH_MAX) {	/* full: one goes uncounted */
			watch_unref(watch[0]);
			memmove(watch, watch + 1, (WATCH_MAX - 1) * sizeof(watch[0]));
			n--;
		}
		atomic_fetch_add(&m->refs, 1);
		watch[n++] = m;
		atomic_store(&watched, n);
	}
	pthread_mutex_unlock(&watch_mu);
}

void shim_site_resolve(void)
{
	unsigned i = 0, n;
	struct smap *m;

	if (pthread_mutex_trylock(&watch_mu))
		return;	/* another thread is at it */
	n = atomic_load(&watched);
	while (i < n) {
		m = watch[i];
		if (atomic_load(&m->r0->site) && atomic_load(&m->r0->ends_open)) {
			i++;
			continue;	/* still open somewhere */
		}
		shim_site_done(m);	/* nothing if counted already */
		watch_unref(m);
		watch[i] = watch[--n];
	}
	atomic_store(&watched, n);
	pthread_mutex_unlock(&watch_mu);
}

IPCD_FORK_TEXT void shim_site_watch_fork_child(void)
{
	/* The entries came along with their mappings: the child may count
	 * them as well (the site goes to one counter only, ring.h). */
	watch_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

uint64_t shim_site_key(uintptr_t pc)
{
	unsigned n = atomic_fetch_add_explicit(&pipes_since_child, 1, memory_order_relaxed);
	uint64_t key;

	if (!shim_learning())
		return 0;
	key = (place_of(pc) ^ args_hash) + (uint64_t)(n < 8 ? n : 8) * 0xc2b2ae3d27d4eb4full;
	return key ? key : 1;
}

bool shim_site_kernel(uint64_t key)
{
	struct site *t, *e;
	unsigned n;

	if (!key)
		return false;
	if (atomic_load_explicit(&watched, memory_order_relaxed) && !shim_in_vfork_child())
		shim_site_resolve();
	t = table(&n);
	e = entry_find(t, n, key, false);
	return e && entry_learnt(e, SITE_RUN);
}

/*
 * What a pipe of site key carried, bytes in writes: count it.  Small is
 * what a kernel pipe moves more cheaply than a channel costs to make, hand
 * on and give back: a few bytes, or bytes in a few large writes (git's
 * packs, 200 kB in a few dozen), where a channel saves a system call and
 * perhaps a wake-up per write and no copy.
 */
static void note(uint64_t key, uint64_t bytes, uint32_t writes)
{
	unsigned n;
	struct site *t = table(&n), *e = entry_find(t, n, key, true);

	shim_log("site %016llx: a pair carried %llu bytes in %u writes",
		 (unsigned long long)key, (unsigned long long)bytes, writes);
	if (e)
		entry_count(e, bytes <= SITE_SMALL ||
			       (bytes <= SITE_FEW && writes <= SITE_WRITES), SITE_RUN);
}

bool shim_site_peer_closed(struct ipcd_ring *r0, struct ipcd_ring *r1, int end)
{
	struct ipcd_ring *peer = end ? r0 : r1;	/* side e writes ring e */

	return r1 && IPCD_WRITERS(atomic_load(&peer->writers_epoch)) == 0;
}

void shim_site_mark(const struct smap *m, uint64_t key)
{
	uint64_t bytes;
	uint32_t writes;

	/* What both rings carried so far (ring 0 keeps the sum). */
	ipcd_map_counts(m->map, m->len, m->r0, m->r1, &bytes, &writes);
	atomic_store(&m->r0->site_tail, bytes);
	atomic_store(&m->r0->site_writes, writes);
	atomic_store(&m->r0->site, key);
}

void shim_site_done(const struct smap *m)
{
	uint64_t key, bytes;
	uint32_t writes;

	if (!atomic_load_explicit(&m->r0->site, memory_order_relaxed))
		return;
	key = atomic_exchange(&m->r0->site, 0);
	if (!key)
		return;
	ipcd_map_counts(m->map, m->len, m->r0, m->r1, &bytes, &writes);
	note(key, bytes - atomic_load(&m->r0->site_tail),
	     writes - atomic_load(&m->r0->site_writes));
}
