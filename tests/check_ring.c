/* check_ring - Check unit tests of the ipcd shared-memory ring (core/ring.c through ringops.h). */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringops.h"

#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* Single-threaded loops gain nothing from TSan's slow instrumentation. */
#define ROUNDS(n)	(UNDER_TSAN ? (n) / 4 : (n))

#define REC_HDR		((uint64_t)sizeof(struct ipcd_ring_rec))
#define ERRLEN		256

/* ---- helpers: rings --------------------------------------------------- */

/* A ring in MAP_SHARED anonymous memory that ends right at a PROT_NONE page,
 * so any access past the data area faults. */
struct tring {
	unsigned char *base;	/* the whole mapping */
	size_t total;		/* bytes mapped, guard page included */
	unsigned char *map;	/* the ring */
	size_t len;		/* ipcd_ring_map_size(cap) */
	struct ipcd_ring *r;
	struct ipcd_view v;
};

static unsigned char *guarded_map(size_t len, unsigned char **base,
				  size_t *total)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (len + pg - 1) / pg * pg;
	unsigned char *p;

	p = mmap(NULL, body + pg, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(mprotect(p + body, pg, PROT_NONE), 0);
	*base = p;
	*total = body + pg;
	return p + (body - len);
}

static void set_peers(struct ipcd_ring *r, uint32_t readers, uint32_t writers,
		      uint32_t epoch)
{
	atomic_store(&r->readers, readers);
	atomic_store(&r->writers_epoch, ((uint64_t)epoch << 32) | writers);
}

/* Format and attach a ring with one reader and one writer (epoch 1). */
static void ring_open(struct tring *t, uint64_t cap, uint32_t features,
		      uint32_t msg_max)
{
	memset(t, 0, sizeof(*t));
	t->len = ipcd_ring_map_size(cap);
	ck_assert_uint_ne(t->len, 0);
	t->map = guarded_map(t->len, &t->base, &t->total);
	ck_assert_int_eq(ipcd_ring_format(t->map, t->len, cap, features,
					  msg_max), 0);
	t->r = ipcd_map_ring(t->map, t->len, 0);
	ck_assert_ptr_nonnull(t->r);
	set_peers(t->r, 1, 1, 1);
	ck_assert_int_eq(ipcd_view_attach(&t->v, t->map, t->len), 0);
	ck_assert_uint_eq(t->v.eof_epoch, 1);
}

static void ring_close(struct tring *t)
{
	munmap(t->base, t->total);
}

static uint64_t load_head(const struct tring *t)
{
	return atomic_load(&t->r->head);
}

static uint64_t load_tail(const struct tring *t)
{
	return atomic_load(&t->r->tail);
}

static void set_indexes(struct tring *t, uint64_t head, uint64_t tail)
{
	atomic_store(&t->r->head, head);
	atomic_store(&t->r->tail, tail);
}

static struct ipcd_ring_rec rec_at(const struct tring *t, uint64_t pos)
{
	struct ipcd_ring_rec rec;

	memcpy(&rec, t->v.data + pos, sizeof(rec));
	return rec;
}

static void put_rec(struct tring *t, uint64_t pos, uint32_t len, uint32_t flags)
{
	struct ipcd_ring_rec rec = { .len = len, .flags = flags };

	memcpy(t->v.data + pos, &rec, sizeof(rec));
}

/* The lowest feature bit this build does not know. */
static uint32_t unknown_feature(void)
{
	uint32_t f = 1;

	while (f & IPCD_RING_F_KNOWN)
		f <<= 1;
	return f;
}

static uint64_t rec_size(uint64_t len)
{
	return REC_HDR + ((len + IPCD_REC_ALIGN - 1) & ~(uint64_t)(IPCD_REC_ALIGN - 1));
}

/* ---- helpers: deterministic data -------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *g)
{
	g->s += 0x9e3779b97f4a7c15ull;
	return mix64(g->s);
}

static uint64_t rng_below(struct rng *g, uint64_t n)
{
	return n ? rng_next(g) % n : 0;
}

/* A simple pattern for the unit tests. */
static void fill(unsigned char *buf, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8) + 1u);
}

/* The byte stream of the transfer tests: byte p of stream `seed` is byte
 * p % 8 of mix64(seed + p / 8).  Both ends compute it; nothing is stored. */
static unsigned char stream_byte(uint64_t seed, uint64_t p)
{
	uint64_t w = mix64(seed + (p >> 3));
	unsigned char b[8];

	memcpy(b, &w, 8);
	return b[p & 7];
}

static void stream_fill(uint64_t seed, uint64_t p, unsigned char *buf, size_t n)
{
	size_t i = 0;
	uint64_t w;

	for (; i < n && ((p + i) & 7); i++)
		buf[i] = stream_byte(seed, p + i);
	for (; i + 8 <= n; i += 8) {
		w = mix64(seed + ((p + i) >> 3));
		memcpy(buf + i, &w, 8);
	}
	for (; i < n; i++)
		buf[i] = stream_byte(seed, p + i);
}

/* Index of the first byte of buf that is not stream byte p + i, or n. */
static size_t stream_diff(uint64_t seed, uint64_t p, const unsigned char *buf,
			  size_t n, unsigned char *scratch)
{
	size_t i;

	stream_fill(seed, p, scratch, n);
	if (memcmp(buf, scratch, n) == 0)
		return n;
	for (i = 0; i < n && buf[i] == scratch[i]; i++)
		;
	return i;
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

/* Messages of the transfer tests: a sequence number, then a pattern that
 * depends on the sequence number and the length. */
static size_t msg_len(uint64_t seed, uint32_t seq, uint32_t msg_max)
{
	uint64_t h = mix64(seed ^ ((uint64_t)seq << 20));

	if ((h & 7) == 0)
		return 4 + (h >> 8) % (msg_max - 3);
	return 4 + (h >> 8) % 61;
}

static unsigned char msg_byte(uint32_t seq, size_t len, size_t i)
{
	return (unsigned char)(seq * 29u + len * 3u + i * 11u + (i >> 7));
}

static void msg_fill(unsigned char *buf, uint32_t seq, size_t len)
{
	size_t i;

	memcpy(buf, &seq, 4);
	for (i = 4; i < len; i++)
		buf[i] = msg_byte(seq, len, i);
}

static int msg_check(const unsigned char *buf, uint32_t seq, size_t len)
{
	size_t i;
	uint32_t s;

	memcpy(&s, buf, 4);
	if (s != seq)
		return 0;
	for (i = 4; i < len; i++)
		if (buf[i] != msg_byte(seq, len, i))
			return 0;
	return 1;
}

/* ---- helpers: processes ----------------------------------------------- */

/* The pid of a process that has exited and been reaped. */
static pid_t dead_pid(void)
{
	int st;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return pid;
}

/* In a child: die with the parent, so a failed test leaves nothing behind. */
static void child_setup(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(90);
}

/* Wait at most timeout_ms for pid to end; kill it if it does not.  Returns
 * the wait status, or -1 if it had to be killed. */
static int wait_child(pid_t pid, int timeout_ms)
{
	struct pollfd pfd;
	int fd, st, n, waited = 0;
	const struct timespec ms = { 0, 1000000 };

	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd >= 0) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		do
			n = poll(&pfd, 1, timeout_ms);
		while (n < 0 && errno == EINTR);
		close(fd);
		if (n == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
	} else {
		/* No pidfd: poll for the exit, within the same bound. */
		while (waitpid(pid, &st, WNOHANG) == 0) {
			if (waited++ >= timeout_ms) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				return -1;
			}
			nanosleep(&ms, NULL);
		}
		return st;
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return st;
}

/* ---- format and attach ------------------------------------------------ */

START_TEST(test_map_size)
{
	ck_assert_uint_eq(ipcd_ring_map_size(4096), IPCD_RING_HDR_SIZE + 4096);
	ck_assert_uint_eq(ipcd_ring_map_size(1u << 20), IPCD_RING_HDR_SIZE + (1u << 20));
	ck_assert_uint_eq(ipcd_ring_map_size(IPCD_RING_MAX_CAPACITY),
			  IPCD_RING_HDR_SIZE + (size_t)IPCD_RING_MAX_CAPACITY);
	ck_assert_uint_eq(ipcd_ring_map_size(0), 0);
	ck_assert_uint_eq(ipcd_ring_map_size(2048), 0);
	ck_assert_uint_eq(ipcd_ring_map_size(4095), 0);
	ck_assert_uint_eq(ipcd_ring_map_size(4097), 0);
	ck_assert_uint_eq(ipcd_ring_map_size(6144), 0);
	ck_assert_uint_eq(ipcd_ring_map_size((uint64_t)IPCD_RING_MAX_CAPACITY * 2), 0);
	ck_assert_uint_eq(ipcd_ring_map_size(UINT64_MAX), 0);
	ck_assert_uint_eq(ipcd_ring_map_size((uint64_t)1 << 40), 0);
	/* A duplex channel's two rings share the first page. */
	ck_assert_uint_eq(ipcd_map_len(4096, 0), IPCD_MAP_HDR_SIZE + 4096);
	ck_assert_uint_eq(ipcd_map_len(4096, IPCD_RING_F_MESSAGE), IPCD_MAP_HDR_SIZE + 4096);
	ck_assert_uint_eq(ipcd_map_len(65536, IPCD_RING_F_DUPLEX),
			  IPCD_MAP_HDR_SIZE + 2 * 65536);
	ck_assert_uint_eq(ipcd_map_len(65536, unknown_feature()), 0);
	ck_assert_uint_eq(ipcd_map_len(6144, IPCD_RING_F_DUPLEX), 0);
}
END_TEST

START_TEST(test_format_rejects)
{
	size_t len = 2 * IPCD_RING_HDR_SIZE + 16384;
	unsigned char *map = calloc(1, len);
	struct ipcd_map *r = (struct ipcd_map *)map;

	ck_assert_ptr_nonnull(map);
	/* Capacity: not a power of two, too small, too big, zero. */
	ck_assert_int_eq(ipcd_ring_format(map, len, 6000, 0, 0), -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, 4097, 0, 0), -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, 2048, 0, 0), -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, 0, 0, 0), -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, (uint64_t)1 << 31, 0, 0), -EINVAL);
	/* The mapping is one byte short. */
	ck_assert_int_eq(ipcd_ring_format(map, IPCD_RING_HDR_SIZE + 4095, 4096, 0, 0),
			 -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, 0, 4096, 0, 0), -EINVAL);
	/* A duplex channel's second ring does not fit. */
	ck_assert_int_eq(ipcd_ring_format(map, IPCD_MAP_HDR_SIZE + 8191, 4096,
					  IPCD_RING_F_DUPLEX, 0), -EINVAL);
	/* Unknown feature bits. */
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096, unknown_feature(), 0), -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096,
					  IPCD_RING_F_MESSAGE | (1u << 31), 64), -EINVAL);
	/* msg_max of a message ring: zero, or larger than a record can be. */
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096, IPCD_RING_F_MESSAGE, 0),
			 -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096, IPCD_RING_F_MESSAGE,
					  4096 - 7), -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096, IPCD_RING_F_MESSAGE,
					  4096), -EINVAL);
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096, IPCD_RING_F_MESSAGE,
					  UINT32_MAX), -EINVAL);
	/* Nothing was laid out by the failures. */
	ck_assert_uint_eq(r->magic, 0);
	/* The largest msg_max is accepted; a stream ring ignores msg_max. */
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096, IPCD_RING_F_MESSAGE,
					  4096 - 8), 0);
	ck_assert_uint_eq(r->msg_max, 4096 - 8);
	memset(map, 0, len);
	ck_assert_int_eq(ipcd_ring_format(map, len, 4096, 0, UINT32_MAX), 0);
	ck_assert_uint_eq(r->msg_max, 0);
	free(map);
}
END_TEST

START_TEST(test_format_layout)
{
	size_t len = ipcd_map_len(16384, IPCD_RING_F_MESSAGE | IPCD_RING_F_DUPLEX);
	unsigned char *map = calloc(1, len);
	struct ipcd_map *m = (struct ipcd_map *)map;
	struct ipcd_ring_desc *d = (struct ipcd_ring_desc *)(map + 64);
	struct ipcd_ring *r;
	size_t i;
	unsigned k;

	ck_assert_ptr_nonnull(map);
	ck_assert_uint_eq(len, 4096 + 2 * 16384);
	ck_assert_int_eq(ipcd_ring_format(map, len, 16384,
					  IPCD_RING_F_MESSAGE | IPCD_RING_F_DUPLEX, 1000), 0);
	/* The directory: "IPCR" and the version where version 1 had them. */
	ck_assert_mem_eq(map, "IPCR", 4);
	ck_assert_uint_eq(m->magic, IPCD_RING_MAGIC);
	ck_assert_uint_eq(m->version, IPCD_RING_VERSION);
	ck_assert_uint_eq(*(uint16_t *)(map + 4), 2);
	ck_assert_uint_eq(m->hdr_size, sizeof(*m));
	ck_assert_uint_eq(m->features, IPCD_RING_F_MESSAGE | IPCD_RING_F_DUPLEX);
	ck_assert_uint_eq(m->msg_max, 1000);
	ck_assert_uint_eq(m->map_size, len);
	ck_assert_uint_eq(m->anon, 0);
	ck_assert_uint_eq(m->nrings, 2);
	ck_assert_uint_eq(m->desc_off, 64);
	ck_assert_uint_eq(m->desc_size, sizeof(*d));
	for (k = 0; k < 2; k++) {
		ck_assert_uint_eq(d[k].kind, IPCD_RING_KIND_RECORDS);
		ck_assert_uint_eq(d[k].role, k);
		ck_assert_uint_eq(d[k].hdr_off, IPCD_MAP_RING_SLOT * (k + 1));
		ck_assert_uint_eq(d[k].data_off, IPCD_MAP_HDR_SIZE + 16384 * k);
		ck_assert_uint_eq(d[k].capacity, 16384);
		r = (struct ipcd_ring *)(map + d[k].hdr_off);
		ck_assert_ptr_eq(ipcd_map_ring(map, len, k), r);
		/* Line 0 of the ring: the directory's copy. */
		ck_assert_uint_eq(r->magic, IPCD_RING_MAGIC);
		ck_assert_uint_eq(r->version, IPCD_RING_VERSION);
		ck_assert_uint_eq(r->hdr_size, sizeof(struct ipcd_ring));
		ck_assert_uint_eq(r->features, m->features);
		ck_assert_uint_eq(r->msg_max, 1000);
		ck_assert_uint_eq(r->data_off, d[k].data_off);
		ck_assert_uint_eq(r->capacity, 16384);
		ck_assert_uint_eq(r->map_size, len);
		ck_assert_uint_eq(atomic_load(&r->head), 0);
		ck_assert_uint_eq(atomic_load(&r->tail), 0);
		ck_assert_uint_eq(atomic_load(&r->wlock), 0);
		ck_assert_uint_eq(atomic_load(&r->rlock), 0);
		ck_assert_uint_eq(atomic_load(&r->state), 0);
		/* The rest of the ring's slot stays zero. */
		for (i = sizeof(*r); i < IPCD_MAP_RING_SLOT; i++)
			ck_assert_uint_eq(((unsigned char *)r)[i], 0);
	}
	ck_assert_ptr_null(ipcd_map_ring(map, len, 2));
	/* Between the directory and the first ring, and after the last
	 * header, nothing; the data areas are zero. */
	for (i = 64 + 2 * sizeof(*d); i < IPCD_MAP_RING_SLOT; i++)
		ck_assert_uint_eq(map[i], 0);
	for (i = 3 * IPCD_MAP_RING_SLOT; i < len; i++)
		ck_assert_uint_eq(map[i], 0);
	free(map);
}
END_TEST

START_TEST(test_attach_rejects)
{
	struct tring t;
	struct ipcd_view v;
	struct ipcd_ring *r;
	struct ipcd_map *m;
	struct ipcd_ring_desc *d;
	unsigned char *save = malloc(IPCD_MAP_HDR_SIZE);

	ck_assert_ptr_nonnull(save);
	ring_open(&t, 8192, IPCD_RING_F_MESSAGE, 1000);
	r = t.r;
	m = (struct ipcd_map *)t.map;
	d = (struct ipcd_ring_desc *)(t.map + m->desc_off);
	memcpy(save, t.map, IPCD_MAP_HDR_SIZE);
#define RESTORE() memcpy(t.map, save, IPCD_MAP_HDR_SIZE)
#define REFUSED(e) ck_assert_int_eq(ipcd_view_attach(&v, t.map, t.len), (e))

	/* Too short to hold a directory, whatever it says. */
	ck_assert_int_eq(ipcd_view_attach(&v, t.map, IPCD_MAP_HDR_SIZE - 1), -EINVAL);
	ck_assert_int_eq(ipcd_view_attach(&v, t.map, 0), -EINVAL);
	/* Directory fine, data area cut short. */
	ck_assert_int_eq(ipcd_view_attach(&v, t.map, t.len - 1), -EINVAL);
	ck_assert_int_eq(ipcd_view_attach(&v, t.map, IPCD_MAP_HDR_SIZE), -EINVAL);
	/* No ring of role 1 in a simplex channel. */
	ck_assert_int_eq(ipcd_view_attach_role(&v, t.map, t.len, 1), -EINVAL);

	/* The directory. */
	m->magic = IPCD_RING_MAGIC ^ 1;
	REFUSED(-EIO);
	m->magic = 0;
	REFUSED(-EIO);
	RESTORE();
	m->version = IPCD_RING_VERSION + 1;
	REFUSED(-EPROTO);
	m->version = 1;		/* a mapping of version 1 says so where this one does */
	REFUSED(-EPROTO);
	RESTORE();
	m->features |= unknown_feature();
	REFUSED(-EIO);
	RESTORE();
	m->features = IPCD_RING_F_MESSAGE | IPCD_RING_F_DUPLEX;	/* one ring */
	REFUSED(-EIO);
	RESTORE();
	m->hdr_size = sizeof(*m) - 8;
	REFUSED(-EIO);
	m->hdr_size = IPCD_MAP_RING_SLOT + 1;
	REFUSED(-EIO);
	RESTORE();
	m->nrings = 0;
	REFUSED(-EIO);
	m->nrings = IPCD_MAP_RINGS_MAX + 1;
	REFUSED(-EIO);
	RESTORE();
	m->desc_size = 24;
	REFUSED(-EIO);
	RESTORE();
	m->desc_off = 8;	/* inside the directory header */
	REFUSED(-EIO);
	m->desc_off = IPCD_MAP_RING_SLOT - 16;	/* runs past its slot */
	REFUSED(-EIO);
	m->desc_off = 65;
	REFUSED(-EIO);
	RESTORE();
	m->map_size = t.len + 4096;	/* longer than what is mapped */
	REFUSED(-EINVAL);
	m->map_size = IPCD_MAP_HDR_SIZE;
	REFUSED(-EIO);
	m->map_size = t.len - 1;
	REFUSED(-EIO);
	RESTORE();

	/* The ring's entry. */
	d->kind = IPCD_RING_KIND_BYTES;	/* a message channel's rings hold records */
	REFUSED(-EIO);
	d->kind = 0;
	REFUSED(-EIO);
	RESTORE();
	d->role = 1;
	REFUSED(-EIO);
	RESTORE();
	d->hdr_off = 0;		/* on the directory */
	REFUSED(-EIO);
	d->hdr_off = IPCD_MAP_RING_SLOT + 8;
	REFUSED(-EIO);
	d->hdr_off = IPCD_MAP_HDR_SIZE - 64;	/* runs past the first page */
	REFUSED(-EIO);
	d->hdr_off = UINT64_MAX - 63;
	REFUSED(-EIO);
	RESTORE();
	d->capacity = 6000;
	REFUSED(-EIO);
	d->capacity = 2048;
	REFUSED(-EIO);
	d->capacity = 16384;		/* valid, but past the mapping */
	REFUSED(-EIO);
	RESTORE();
	d->data_off = IPCD_MAP_HDR_SIZE * 2;
	REFUSED(-EIO);
	d->data_off = 512;
	REFUSED(-EIO);
	d->data_off = UINT64_MAX & ~4095ull;
	REFUSED(-EIO);
	RESTORE();

	/* The ring's own header must say what the directory says. */
	r->magic = 0;
	REFUSED(-EIO);
	RESTORE();
	r->capacity = 4096;
	REFUSED(-EIO);
	RESTORE();
	r->data_off = IPCD_MAP_HDR_SIZE * 2;
	REFUSED(-EIO);
	RESTORE();
	r->map_size = t.len + 4096;
	REFUSED(-EIO);
	RESTORE();
	r->hdr_size = sizeof(*r) - 8;
	REFUSED(-EIO);
	RESTORE();
	r->features = 0;
	REFUSED(-EIO);
	RESTORE();
	m->msg_max = r->msg_max = 8192 - 7;
	REFUSED(-EIO);
	m->msg_max = r->msg_max = 0;
	REFUSED(-EIO);
	m->msg_max = r->msg_max = 8192 - 8;	/* the largest that fits */
	REFUSED(0);
	ck_assert_uint_eq(v.msg_max, 8192 - 8);
	RESTORE();
	/* The directory may put the ring's header elsewhere in the page. */
	memcpy(t.map + 3 * IPCD_MAP_RING_SLOT, r, sizeof(*r));
	d->hdr_off = 3 * IPCD_MAP_RING_SLOT;
	REFUSED(0);
	ck_assert_ptr_eq(v.r, t.map + 3 * IPCD_MAP_RING_SLOT);
	RESTORE();
	/* A longer mapping than needed is fine. */
	REFUSED(0);
#undef REFUSED
#undef RESTORE
	free(save);
	ring_close(&t);
}
END_TEST

START_TEST(test_attach_view)
{
	struct tring t;
	struct ipcd_view v;

	ring_open(&t, 65536, 0, 0);
	ck_assert_ptr_eq(t.v.r, t.map + IPCD_MAP_RING_SLOT);
	ck_assert_ptr_eq(t.v.data, t.map + IPCD_MAP_HDR_SIZE);
	ck_assert_uint_eq(t.v.cap, 65536);
	ck_assert_uint_eq(t.v.features, 0);
	ck_assert_uint_eq(t.v.msg_max, 0);
	ck_assert_uint_eq(t.v.map_len, t.len);
	/* The view keeps its own copies: a later change of the header does not
	 * change the bounds it works with. */
	t.r->capacity = 1u << 30;
	ck_assert_uint_eq(t.v.cap, 65536);
	ck_assert_int_eq(ipcd_view_attach(&v, t.map, t.len), -EIO);
	ring_close(&t);

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 333);
	ck_assert_uint_eq(t.v.features, IPCD_RING_F_MESSAGE);
	ck_assert_uint_eq(t.v.msg_max, 333);
	ck_assert_uint_eq(t.v.cap, 4096);
	ring_close(&t);
}
END_TEST

/* ---- stream rings ----------------------------------------------------- */

START_TEST(test_stream_empty)
{
	struct tring t;
	unsigned char buf[16];
	size_t full = 99;

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(), 0, &full),
			 -EAGAIN);
	ck_assert_uint_eq(full, 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(),
					IPCD_IO_PEEK, NULL), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 0);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 4096);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 0);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 1), 1);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 4096), 1);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 4097), 0);
	/* A zero-length write moves nothing and succeeds. */
	ck_assert_int_eq(ipcd_ring_write(&t.v, buf, 0, ipcd_tid()), 0);
	ck_assert_uint_eq(load_tail(&t), 0);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	ring_close(&t);
}
END_TEST

START_TEST(test_stream_roundtrip)
{
	struct tring t;
	unsigned char in[300], out[300];
	size_t full = 0;
	uint32_t tid = ipcd_tid();

	ck_assert_uint_eq(tid, (uint32_t)syscall(SYS_gettid));
	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "hello", 5, tid), 5);
	ck_assert_uint_eq(load_tail(&t), 5);
	ck_assert_mem_eq(t.v.data, "hello", 5);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 5);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 4096 - 5);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 1);
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 5);
	ck_assert_uint_eq(full, 5);
	ck_assert_mem_eq(out, "hello", 5);
	ck_assert_uint_eq(load_head(&t), 5);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), -EAGAIN);

	/* A stream has no boundaries: two writes, reads of other sizes. */
	fill(in, 300, 3);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 100, tid), 100);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in + 100, 200, tid), 200);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 300);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 30, tid, 0, &full), 30);
	ck_assert_uint_eq(full, 30);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out + 30, 0, tid, 0, &full), 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out + 30, 250, tid, 0, &full), 250);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out + 280, 250, tid, 0, &full), 20);
	ck_assert_mem_eq(out, in, 300);
	ck_assert_uint_eq(load_head(&t), 305);
	ck_assert_uint_eq(load_tail(&t), 305);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	ring_close(&t);
}
END_TEST

START_TEST(test_stream_wrap_exact)
{
	struct tring t;
	unsigned char in[4096], out[4096];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, 0, 0);
	fill(in, 3000, 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 3000, tid), 3000);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 3000, tid, 0, NULL), 3000);
	ck_assert_mem_eq(out, in, 3000);

	/* 2000 bytes from counter 3000: 1096 at the end, 904 at the start. */
	fill(in, 2000, 2);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 2000, tid), 2000);
	ck_assert_uint_eq(load_tail(&t), 5000);
	ck_assert_mem_eq(t.v.data + 3000, in, 1096);
	ck_assert_mem_eq(t.v.data, in + 1096, 904);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 2000);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 2096);
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 2000);
	ck_assert_mem_eq(out, in, 2000);
	ck_assert_uint_eq(load_head(&t), 5000);

	/* A read that crosses the end on its own. */
	fill(in, 4096, 3);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 4096, tid), 4096);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 4000, tid, 0, NULL), 4000);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out + 4000, 4000, tid, 0, NULL), 96);
	ck_assert_mem_eq(out, in, 4096);
	ring_close(&t);
}
END_TEST

/* Random writes and reads (and peeks) against a model of the ABI: every
 * return value, both indexes, and every byte. */
static void stream_model_run(uint64_t cap, uint64_t seed, int rounds)
{
	struct tring t;
	struct rng g = { seed };
	size_t bufsz = cap + 1024;
	unsigned char *buf = malloc(bufsz), *exp = malloc(bufsz);
	uint64_t wpos = 0, rpos = 0, wsum = FNV_INIT, rsum = FNV_INIT;
	uint32_t tid = ipcd_tid();
	size_t len, full;
	ssize_t n, want;
	int i, peek;

	ck_assert(buf && exp);
	ring_open(&t, cap, 0, 0);
	for (i = 0; i < rounds; i++) {
		uint64_t used = wpos - rpos, space = cap - used;

		if (rng_next(&g) & 1) {
			len = rng_below(&g, 8) == 0 ? rng_below(&g, bufsz + 1)
						    : rng_below(&g, cap / 4);
			if (len == 0)
				want = 0;
			else if (space == 0 || (len <= PIPE_BUF && len > space))
				want = -EAGAIN;
			else
				want = (ssize_t)(len < space ? len : space);
			stream_fill(seed, wpos, buf, len);
			n = ipcd_ring_write(&t.v, buf, len, tid);
			ck_assert_msg(n == want, "round %d: write %zu with %llu free: %zd, want %zd",
				      i, len, (unsigned long long)space, n, want);
			if (n > 0) {
				wsum = fnv(wsum, buf, (size_t)n);
				wpos += (uint64_t)n;
			}
			ck_assert_uint_eq(load_tail(&t), wpos);
		} else {
			len = rng_below(&g, 4) == 0 ? rng_below(&g, bufsz + 1)
						    : rng_below(&g, cap / 4);
			peek = rng_below(&g, 6) == 0;
			want = used == 0 ? -EAGAIN : (ssize_t)(len < used ? len : used);
			n = ipcd_ring_read(&t.v, buf, len, tid, peek ? IPCD_IO_PEEK : 0, &full);
			ck_assert_msg(n == want, "round %d: read %zu with %llu used: %zd, want %zd",
				      i, len, (unsigned long long)used, n, want);
			if (n > 0) {
				ck_assert_uint_eq(full, (size_t)n);
				ck_assert_msg(stream_diff(seed, rpos, buf, (size_t)n, exp) == (size_t)n,
					      "round %d: wrong bytes at %llu", i,
					      (unsigned long long)rpos);
				if (!peek) {
					rsum = fnv(rsum, buf, (size_t)n);
					rpos += (uint64_t)n;
				}
			}
			ck_assert_uint_eq(load_head(&t), rpos);
		}
		ck_assert_int_eq(ipcd_ring_readable(&t.v), (ssize_t)(wpos - rpos));
		ck_assert_int_eq(ipcd_ring_space(&t.v), (ssize_t)(cap - (wpos - rpos)));
	}
	while ((n = ipcd_ring_read(&t.v, buf, bufsz, tid, 0, NULL)) > 0) {
		ck_assert(stream_diff(seed, rpos, buf, (size_t)n, exp) == (size_t)n);
		rsum = fnv(rsum, buf, (size_t)n);
		rpos += (uint64_t)n;
	}
	ck_assert_int_eq(n, -EAGAIN);
	ck_assert_uint_eq(rpos, wpos);
	ck_assert_uint_eq(rsum, wsum);
	ck_assert_uint_gt(wpos, 20 * cap);	/* many laps were made */
	free(buf);
	free(exp);
	ring_close(&t);
}

START_TEST(test_stream_wrap_random)
{
	stream_model_run(4096, 11, ROUNDS(60000));
	stream_model_run(16384, 12, ROUNDS(40000));
}
END_TEST

START_TEST(test_stream_full)
{
	struct tring t;
	unsigned char in[8192], out[8192];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, 0, 0);
	fill(in, sizeof(in), 5);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 4096, tid), 4096);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 0);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 4096);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 1), 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 1, tid), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, PIPE_BUF, tid), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 8192, tid), -EAGAIN);
	ck_assert_uint_eq(load_tail(&t), 4096);
	/* Writes that published bytes are counted, refused ones not. */
	ck_assert_uint_eq(atomic_load(&t.v.r->writes), 1);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 4096);
	ck_assert_mem_eq(out, in, 4096);
	/* A write bigger than the whole ring takes what fits. */
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 8192, tid), 4096);
	ck_assert_uint_eq(atomic_load(&t.v.r->writes), 2);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 4096);
	ck_assert_mem_eq(out, in, 4096);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 0, tid), 0);
	ck_assert_uint_eq(atomic_load(&t.v.r->writes), 2);
	ring_close(&t);
}
END_TEST

START_TEST(test_stream_pipe_buf)
{
	struct tring t;
	unsigned char in[16384 + PIPE_BUF + 1], out[16384];
	uint32_t tid = ipcd_tid();
	size_t got = 0;
	ssize_t n;

	ring_open(&t, 16384, 0, 0);
	fill(in, sizeof(in), 7);
	/* Leave 100 bytes free. */
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 16384 - 100, tid), 16384 - 100);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 100);
	/* At most PIPE_BUF bytes: all or nothing. */
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 101, tid), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, PIPE_BUF, tid), -EAGAIN);
	ck_assert_uint_eq(load_tail(&t), 16384 - 100);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 100);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 101), 101);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, PIPE_BUF), PIPE_BUF);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, ipcd_ring_need(&t.v, 101)), 0);
	/* More than PIPE_BUF: partial. */
	ck_assert_uint_eq(ipcd_ring_need(&t.v, PIPE_BUF + 1), 1);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, ipcd_ring_need(&t.v, PIPE_BUF + 1)), 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in + 16384 - 100, PIPE_BUF + 1, tid), 100);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, PIPE_BUF + 1, tid), -EAGAIN);
	while ((n = ipcd_ring_read(&t.v, out + got, sizeof(out) - got, tid, 0, NULL)) > 0)
		got += (size_t)n;
	ck_assert_int_eq(n, -EAGAIN);
	ck_assert_uint_eq(got, 16384);
	ck_assert_mem_eq(out, in, 16384);
	/* Exactly the room left: fits, for both kinds of size. */
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 16384 - PIPE_BUF, tid), 16384 - PIPE_BUF);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, PIPE_BUF, tid), PIPE_BUF);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 0);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 0), 1);
	ring_close(&t);
}
END_TEST

START_TEST(test_stream_epipe)
{
	struct tring t;
	unsigned char buf[8];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, 0, 0);
	set_peers(t.r, 0, 1, 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, tid), -EPIPE);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 0, tid), -EPIPE);
	ck_assert_uint_eq(load_tail(&t), 0);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 1), 1);	/* learns EPIPE */
	set_peers(t.r, 1, 1, 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, tid), 3);
	set_peers(t.r, 0, 1, 1);
	/* The reader's leaving does not lose what is already in. */
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), 3);
	ck_assert_mem_eq(buf, "abc", 3);
	ring_close(&t);

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 100);
	set_peers(t.r, 0, 1, 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, tid), -EPIPE);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 0, tid), -EPIPE);
	ck_assert_uint_eq(load_tail(&t), 0);
	ring_close(&t);
}
END_TEST

START_TEST(test_stream_eof)
{
	struct tring t;
	unsigned char buf[16];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, 0, 0);	/* reader came while a writer was open */
	ck_assert_int_eq(ipcd_ring_write(&t.v, "0123456789", 10, tid), 10);
	set_peers(t.r, 1, 0, 1);	/* the writer leaves */
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 1);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, 4, tid, 0, NULL), 4);
	ck_assert_mem_eq(buf, "0123", 4);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), 6);
	ck_assert_mem_eq(buf, "456789", 6);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), IPCD_EOF);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, IPCD_IO_PEEK, NULL),
			 IPCD_EOF);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), IPCD_EOF);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 1);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 0);
	/* A new writer generation: no longer at the end. */
	set_peers(t.r, 1, 1, 2);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 0);
	set_peers(t.r, 1, 0, 2);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), IPCD_EOF);
	ring_close(&t);
}
END_TEST

START_TEST(test_stream_eof_generation)
{
	struct tring t;
	unsigned char buf[16];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, 0, 0);
	/* Bytes left by an earlier generation; the writer is gone (epoch 5). */
	ck_assert_int_eq(ipcd_ring_write(&t.v, "old", 3, tid), 3);
	set_peers(t.r, 1, 0, 5);
	/* A reader opening now, with no writer, waits for the next one. */
	ipcd_view_mark_open(&t.v);
	ck_assert_uint_eq(t.v.eof_epoch, 6);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), 3);
	ck_assert_mem_eq(buf, "old", 3);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 0);
	/* The next writer comes (epoch 6): still no end while it is open. */
	set_peers(t.r, 1, 1, 6);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "new", 3, tid), 3);
	/* It goes: its bytes, then the end. */
	set_peers(t.r, 1, 0, 6);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), 3);
	ck_assert_mem_eq(buf, "new", 3);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), IPCD_EOF);

	/* A reader that opens while a writer is open ends with it. */
	set_peers(t.r, 1, 2, 9);
	ipcd_view_mark_open(&t.v);
	ck_assert_uint_eq(t.v.eof_epoch, 9);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	set_peers(t.r, 1, 1, 9);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	set_peers(t.r, 1, 0, 9);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), IPCD_EOF);

	/* The epoch wraps: opened at 0xffffffff with no writer. */
	set_peers(t.r, 1, 0, 0xffffffffu);
	ipcd_view_mark_open(&t.v);
	ck_assert_uint_eq(t.v.eof_epoch, 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 0);
	set_peers(t.r, 1, 1, 1);	/* the daemon skips epoch 0 */
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	set_peers(t.r, 1, 0, 1);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), IPCD_EOF);
	set_peers(t.r, 1, 0, 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), IPCD_EOF);

	/* attach itself applies the rule. */
	set_peers(t.r, 1, 0, 41);
	ck_assert_int_eq(ipcd_view_attach(&t.v, t.map, t.len), 0);
	ck_assert_uint_eq(t.v.eof_epoch, 42);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EAGAIN);
	ring_close(&t);
}
END_TEST

START_TEST(test_stream_peek)
{
	struct tring t;
	unsigned char in[64], out[64];
	uint32_t tid = ipcd_tid();
	size_t full = 0;

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abcdef", 6, tid), 6);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 3, tid, IPCD_IO_PEEK, &full), 3);
	ck_assert_uint_eq(full, 3);
	ck_assert_mem_eq(out, "abc", 3);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 64, tid, IPCD_IO_PEEK, &full), 6);
	ck_assert_mem_eq(out, "abcdef", 6);
	ck_assert_uint_eq(load_head(&t), 0);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 6);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 64, tid, 0, &full), 6);
	ck_assert_mem_eq(out, "abcdef", 6);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 64, tid, IPCD_IO_PEEK, &full), -EAGAIN);

	/* Peek across the end of the data area. */
	set_indexes(&t, 4096 - 10, 4096 - 10);
	fill(in, 40, 9);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 40, tid), 40);
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 64, tid, IPCD_IO_PEEK, NULL), 40);
	ck_assert_mem_eq(out, in, 40);
	ck_assert_uint_eq(load_head(&t), 4096 - 10);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 64, tid, 0, NULL), 40);
	ck_assert_mem_eq(out, in, 40);
	ck_assert_uint_eq(load_head(&t), 4096 + 30);
	ring_close(&t);
}
END_TEST

/* Reading in place: what a peek shows is what a read would take, in ring
 * memory, and stays until consume says how much of it is taken. */
START_TEST(test_stream_peek_consume)
{
	struct tring t;
	struct ipcd_span sp[2];
	unsigned char in[64], out[64];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), -EAGAIN);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);	/* not kept */
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 0), -EINVAL);	/* no peek */
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abcdef", 6, tid), 6);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 6);
	ck_assert_ptr_eq(sp[0].p, t.v.data);
	ck_assert_uint_eq(sp[0].n, 6);
	ck_assert_uint_eq(sp[1].n, 0);
	ck_assert_mem_eq(sp[0].p, "abcdef", 6);
	/* The read lock is ours meanwhile: another reader waits. */
	ck_assert_uint_eq(atomic_load(&t.r->rlock) & ~IPCD_LOCK_WAITERS, tid);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 64, tid + 1, 0, NULL), -EBUSY);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), -EALREADY);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 7), -EINVAL);	/* more than shown */
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 2), 0);
	ck_assert_uint_eq(load_head(&t), 2);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 0), -EINVAL);	/* ended */
	/* Consuming nothing leaves it all. */
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 4);
	ck_assert_mem_eq(sp[0].p, "cdef", 4);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 0), 0);
	ck_assert_uint_eq(load_head(&t), 2);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 64, tid, 0, NULL), 4);
	ck_assert_mem_eq(out, "cdef", 4);

	/* Across the end of the data area: two spans. */
	set_indexes(&t, 4096 - 10, 4096 - 10);
	fill(in, 40, 9);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 40, tid), 40);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 40);
	ck_assert_ptr_eq(sp[0].p, t.v.data + 4096 - 10);
	ck_assert_uint_eq(sp[0].n, 10);
	ck_assert_ptr_eq(sp[1].p, t.v.data);
	ck_assert_uint_eq(sp[1].n, 30);
	ck_assert_mem_eq(sp[0].p, in, 10);
	ck_assert_mem_eq(sp[1].p, in + 10, 30);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 40), 0);
	ck_assert_uint_eq(load_head(&t), 4096 + 30);

	/* At the end of file: no lock kept, and IPCD_EOF. */
	set_peers(t.r, 1, 0, 1);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), IPCD_EOF);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	/* Queued bytes first, then the end. */
	set_peers(t.r, 1, 1, 2);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "xy", 2, tid), 2);
	set_peers(t.r, 1, 0, 2);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 2);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 2), 0);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), IPCD_EOF);

	/* Damaged indexes: EIO, and the lock is not kept. */
	set_indexes(&t, 0, 8192);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), -EIO);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ring_close(&t);
}
END_TEST

START_TEST(test_msg_peek_consume)
{
	struct tring t;
	struct ipcd_span sp[2];
	unsigned char in[4000], out[4096];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 4088);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "one", 3, tid), 3);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "", 0, tid), 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "three", 5, tid), 5);
	/* One message at a time, whatever is queued behind it. */
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 3);
	ck_assert_ptr_eq(sp[0].p, t.v.data + 8);
	ck_assert_mem_eq(sp[0].p, "one", 3);
	ck_assert_uint_eq(sp[1].n, 0);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 2), -EINVAL);	/* messages: 0 or 1 */
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 0), 0);	/* left */
	ck_assert_uint_eq(load_head(&t), 0);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 3);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 1), 0);
	ck_assert_uint_eq(load_head(&t), 16);
	/* An empty message is shown as 0 bytes, and taken as one message. */
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 0);
	ck_assert_uint_eq(sp[0].n, 0);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 1), 0);
	ck_assert_uint_eq(load_head(&t), 24);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 5);
	ck_assert_mem_eq(sp[0].p, "three", 5);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 1), 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), -EAGAIN);

	/* A pad before the message: passed over at once, as a read does. */
	set_indexes(&t, 4008, 4008);
	fill(in, 100, 11);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 100, tid), 100);
	ck_assert_uint_eq(rec_at(&t, 4008).flags, IPCD_REC_PAD);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), 100);
	ck_assert_ptr_eq(sp[0].p, t.v.data + 8);
	ck_assert_mem_eq(sp[0].p, in, 100);
	ck_assert_uint_eq(load_head(&t), 4096);
	ck_assert_int_eq(ipcd_ring_consume(&t.v, 1), 0);
	ck_assert_uint_eq(load_head(&t), 4096 + 112);
	/* A lone pad: passed over, then nothing. */
	set_indexes(&t, 8192 - 16, 8192 - 16);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 100, tid), 100);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 100);
	set_indexes(&t, 8192 - 16, 8192);
	memcpy(t.v.data + 4096 - 16, &(struct ipcd_ring_rec){ 8, IPCD_REC_PAD }, 8);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), -EAGAIN);
	ck_assert_uint_eq(load_head(&t), 8192);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	/* A record that lies about its length: EIO. */
	set_indexes(&t, 8192, 8192 + 16);
	memcpy(t.v.data, &(struct ipcd_ring_rec){ 4000, 0 }, 8);
	ck_assert_int_eq(ipcd_ring_peek(&t.v, sp, tid), -EIO);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ring_close(&t);
}
END_TEST

/* The counters are 64-bit and may wrap; only differences matter. */
START_TEST(test_counter_wrap)
{
	struct tring t;
	unsigned char in[200], out[200];
	uint32_t tid = ipcd_tid();
	uint64_t start = UINT64_MAX - 40;

	fill(in, sizeof(in), 4);
	ring_open(&t, 4096, 0, 0);
	set_indexes(&t, start, start);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 200, tid), 200);
	ck_assert_uint_eq(load_tail(&t), start + 200);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 200);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 4096 - 200);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 200);
	ck_assert_mem_eq(out, in, 200);
	ring_close(&t);

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);
	start = UINT64_MAX - 15;		/* data offset 4096 - 16 */
	set_indexes(&t, start, start);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 100, tid), 100);
	ck_assert_uint_eq(load_tail(&t), start + 16 + rec_size(100));
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 100);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 100);
	ck_assert_mem_eq(out, in, 100);
	ck_assert_uint_eq(load_head(&t), load_tail(&t));
	ring_close(&t);
}
END_TEST

/* ---- message rings ---------------------------------------------------- */

START_TEST(test_msg_boundaries)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17,
		31, 63, 64, 100, 255, 256, 1000, 2047, 4095, 4096, 0, 0, 1 };
	struct tring t;
	unsigned char in[4096], out[4096 + 8];
	uint32_t tid = ipcd_tid();
	size_t i, j, full;
	ssize_t n;
	int round;

	ring_open(&t, 16384, IPCD_RING_F_MESSAGE, 4096);
	/* One record, laid out as the ABI says. */
	fill(in, 5, 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 5, tid), 5);
	ck_assert_uint_eq(load_tail(&t), 16);
	ck_assert_uint_eq(rec_at(&t, 0).len, 5);
	ck_assert_uint_eq(rec_at(&t, 0).flags, 0);
	ck_assert_mem_eq(t.v.data + 8, in, 5);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 5);
	ck_assert_uint_eq(full, 5);

	/* A zero-length message is a message. */
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 0, tid), 0);
	ck_assert_uint_eq(load_tail(&t), 24);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 1);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 0);
	full = 77;
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 0);
	ck_assert_uint_eq(full, 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), -EAGAIN);

	for (round = 0; round < 40; round++) {
		/* Write as many as fit (round-robin through sizes), read all. */
		size_t first = (size_t)round % (sizeof(sizes) / sizeof(sizes[0]));

		for (i = first, j = 0;; i = (i + 1) % (sizeof(sizes) / sizeof(sizes[0])), j++) {
			fill(in, sizes[i], (unsigned)(i + round));
			n = ipcd_ring_write(&t.v, in, sizes[i], tid);
			if (n == -EAGAIN)
				break;
			ck_assert_int_eq(n, (ssize_t)sizes[i]);
		}
		ck_assert_uint_gt(j, 0);
		for (i = first; j > 0; i = (i + 1) % (sizeof(sizes) / sizeof(sizes[0])), j--) {
			ck_assert_int_eq(ipcd_ring_readable(&t.v), (ssize_t)sizes[i]);
			fill(in, sizes[i], (unsigned)(i + round));
			memset(out, 0xee, sizeof(out));
			n = ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full);
			ck_assert_int_eq(n, (ssize_t)sizes[i]);
			ck_assert_uint_eq(full, sizes[i]);
			ck_assert_mem_eq(out, in, sizes[i]);
			ck_assert_uint_eq(out[sizes[i]], 0xee);
		}
		ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), -EAGAIN);
		ck_assert_uint_eq(load_head(&t), load_tail(&t));
	}
	ring_close(&t);
}
END_TEST

START_TEST(test_msg_truncate)
{
	struct tring t;
	unsigned char in[100], out[100];
	uint32_t tid = ipcd_tid();
	size_t full = 0;

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);
	fill(in, 100, 6);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 100, tid), 100);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "tail!", 5, tid), 5);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 50, tid), 50);
	/* A peek with a small buffer: cut, nothing consumed. */
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 10, tid, IPCD_IO_PEEK, &full), 10);
	ck_assert_uint_eq(full, 100);
	ck_assert_mem_eq(out, in, 10);
	ck_assert_uint_eq(load_head(&t), 0);
	/* A read with a small buffer: cut, and the rest is gone. */
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 10, tid, 0, &full), 10);
	ck_assert_uint_eq(full, 100);
	ck_assert_mem_eq(out, in, 10);
	ck_assert_uint_eq(out[10], 0);
	ck_assert_uint_eq(load_head(&t), rec_size(100));
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 5);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 5);
	ck_assert_uint_eq(full, 5);
	ck_assert_mem_eq(out, "tail!", 5);
	/* A zero-byte read takes the whole message away too. */
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, 0, tid, 0, &full), 0);
	ck_assert_uint_eq(full, 50);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), -EAGAIN);
	ck_assert_uint_eq(load_head(&t), load_tail(&t));
	ring_close(&t);
}
END_TEST

START_TEST(test_msg_emsgsize)
{
	struct tring t;
	unsigned char in[1001], out[1001];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);
	fill(in, sizeof(in), 8);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 1001, tid), -EMSGSIZE);
	/* Far too big, with a buffer that is not that long: never touched. */
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, (size_t)1 << 40, tid), -EMSGSIZE);
	ck_assert_uint_eq(load_tail(&t), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 1001), 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 1000, tid), 1000);
	ck_assert_uint_eq(load_tail(&t), rec_size(1000));
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 1000);
	ck_assert_mem_eq(out, in, 1000);
	ring_close(&t);
}
END_TEST

/* A record that does not fit before the end goes to offset 0 behind a pad. */
START_TEST(test_msg_pad)
{
	struct tring t;
	unsigned char in[4000], out[4096];
	uint32_t tid = ipcd_tid();
	size_t full;

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 4088);
	fill(in, 4000, 10);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 4000, tid), 4000);
	ck_assert_uint_eq(load_tail(&t), 4008);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 4000);
	/* 88 bytes to the end, the record takes 112. */
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 100), 88);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 80), 88);	/* 80 + 8 fits */
	fill(in, 100, 11);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 100, tid), 100);
	ck_assert_uint_eq(load_tail(&t), 4096 + 112);
	ck_assert_uint_eq(rec_at(&t, 4008).flags, IPCD_REC_PAD);
	ck_assert_uint_eq(rec_at(&t, 4008).len, 80);
	ck_assert_uint_eq(rec_at(&t, 0).flags, 0);
	ck_assert_uint_eq(rec_at(&t, 0).len, 100);
	ck_assert_mem_eq(t.v.data + 8, in, 100);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 100);
	/* A peek looks past the pad without consuming it. */
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, IPCD_IO_PEEK, &full), 100);
	ck_assert_uint_eq(full, 100);
	ck_assert_mem_eq(out, in, 100);
	ck_assert_uint_eq(load_head(&t), 4008);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 100);
	ck_assert_mem_eq(out, in, 100);
	ck_assert_uint_eq(load_head(&t), 4096 + 112);
	/* An exact fit at the end needs no pad. */
	set_indexes(&t, 8192 - 16, 8192 - 16);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 8, tid), 8);
	ck_assert_uint_eq(load_tail(&t), 8192);
	ck_assert_uint_eq(rec_at(&t, 4096 - 16).flags, 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 8);
	ck_assert_mem_eq(out, in, 8);
	ring_close(&t);
}
END_TEST

/* Only the pad fits: it goes in alone, the writer gets EAGAIN, and succeeds
 * once the reader has made room. */
START_TEST(test_msg_pad_alone)
{
	struct tring t;
	unsigned char a[2000], b[1992], c[2100], out[4096];
	uint32_t tid = ipcd_tid();
	size_t full;

	fill(a, sizeof(a), 20);
	fill(b, sizeof(b), 21);
	fill(c, sizeof(c), 22);
	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 4088);
	ck_assert_int_eq(ipcd_ring_write(&t.v, a, sizeof(a), tid), 2000);
	ck_assert_int_eq(ipcd_ring_write(&t.v, b, sizeof(b), tid), 1992);
	ck_assert_uint_eq(load_tail(&t), 4008);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 2000);
	ck_assert_mem_eq(out, a, 2000);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 2096);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 2100), 88);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 88), 1);

	ck_assert_int_eq(ipcd_ring_write(&t.v, c, sizeof(c), tid), -EAGAIN);
	ck_assert_uint_eq(load_tail(&t), 4096);
	ck_assert_uint_eq(rec_at(&t, 4008).flags, IPCD_REC_PAD);
	ck_assert_uint_eq(rec_at(&t, 4008).len, 80);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 2100), 2112);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 2008);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 2112), 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, c, sizeof(c), tid), -EAGAIN);
	ck_assert_uint_eq(load_tail(&t), 4096);

	/* The reader takes b; the pad is still unread, but c now fits. */
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 1992);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 1992);
	ck_assert_mem_eq(out, b, 1992);
	ck_assert_uint_eq(load_head(&t), 4008);
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 2112), 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, c, sizeof(c), tid), 2100);
	ck_assert_uint_eq(load_tail(&t), 4096 + 2112);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 2100);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 2100);
	ck_assert_uint_eq(full, 2100);
	ck_assert_mem_eq(out, c, 2100);
	ck_assert_uint_eq(load_head(&t), 4096 + 2112);
	ring_close(&t);
}
END_TEST

/* When not even the pad fits, nothing is written. */
START_TEST(test_msg_pad_no_room)
{
	struct tring t;
	unsigned char a[4080], b[4000], c[100], out[4096];
	uint32_t tid = ipcd_tid();
	size_t full;

	fill(a, sizeof(a), 30);
	fill(b, sizeof(b), 31);
	fill(c, sizeof(c), 32);
	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 4088);
	ck_assert_int_eq(ipcd_ring_write(&t.v, a, sizeof(a), tid), 4080);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 4080);
	ck_assert_int_eq(ipcd_ring_write(&t.v, a, 0, tid), 0);	/* fills to the end */
	ck_assert_uint_eq(load_tail(&t), 4096);
	ck_assert_int_eq(ipcd_ring_write(&t.v, b, sizeof(b), tid), 4000);
	ck_assert_uint_eq(load_tail(&t), 8104);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 80);
	ck_assert_uint_eq(ipcd_ring_need(&t.v, 100), 88);
	ck_assert_int_eq(ipcd_ring_write(&t.v, c, sizeof(c), tid), -EAGAIN);
	ck_assert_uint_eq(load_tail(&t), 8104);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 0);
	ck_assert_uint_eq(full, 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 4000);
	ck_assert_mem_eq(out, b, 4000);
	ck_assert_int_eq(ipcd_ring_write(&t.v, c, sizeof(c), tid), 100);
	ck_assert_uint_eq(load_tail(&t), 8104 + 88 + 112);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 100);
	ck_assert_mem_eq(out, c, 100);
	ring_close(&t);
}
END_TEST

START_TEST(test_msg_max_size)
{
	struct tring t;
	unsigned char *in = malloc(65536), *out = malloc(65536);
	uint32_t tid = ipcd_tid();
	size_t full;
	uint64_t cap;

	ck_assert(in && out);
	for (cap = 4096; cap <= 65536; cap *= 16) {
		uint32_t max = (uint32_t)cap - 8;

		fill(in, max, (unsigned)cap);
		ring_open(&t, cap, IPCD_RING_F_MESSAGE, max);
		ck_assert_int_eq(ipcd_ring_write(&t.v, in, max + 1, tid), -EMSGSIZE);
		ck_assert_int_eq(ipcd_ring_write(&t.v, in, max, tid), (ssize_t)max);
		ck_assert_uint_eq(load_tail(&t), cap);
		ck_assert_int_eq(ipcd_ring_space(&t.v), 0);
		ck_assert_int_eq(ipcd_ring_readable(&t.v), (ssize_t)max);
		ck_assert_int_eq(ipcd_ring_read(&t.v, out, max, tid, 0, &full), (ssize_t)max);
		ck_assert_uint_eq(full, max);
		ck_assert_mem_eq(out, in, max);

		/* From offset 8 it must wrap: the pad goes in alone first. */
		ck_assert_int_eq(ipcd_ring_write(&t.v, in, 0, tid), 0);
		ck_assert_int_eq(ipcd_ring_read(&t.v, out, max, tid, 0, &full), 0);
		ck_assert_uint_eq(ipcd_ring_need(&t.v, max), cap - 8);
		ck_assert_int_eq(ipcd_ring_write(&t.v, in, max, tid), -EAGAIN);
		ck_assert_uint_eq(load_tail(&t), 2 * cap);
		ck_assert_uint_eq(ipcd_ring_need(&t.v, max), cap);
		ck_assert_int_eq(ipcd_ring_read(&t.v, out, max, tid, 0, &full), -EAGAIN);
		ck_assert_uint_eq(load_head(&t), 2 * cap);
		ck_assert_int_eq(ipcd_ring_write(&t.v, in, max, tid), (ssize_t)max);
		ck_assert_int_eq(ipcd_ring_read(&t.v, out, max, tid, 0, &full), (ssize_t)max);
		ck_assert_mem_eq(out, in, max);
		ck_assert_uint_eq(load_head(&t), 3 * cap);
		ring_close(&t);
	}
	free(in);
	free(out);
}
END_TEST

/* Random messages against a model of the record layout (pads included). */
struct qmsg {
	uint32_t seq;
	uint32_t len;
	uint64_t end;	/* head after this message is read */
};

static void msg_model_run(uint64_t cap, uint32_t msg_max, uint64_t seed, int rounds)
{
	struct tring t;
	struct rng g = { seed };
	struct qmsg *q = calloc(cap / 8 + 1, sizeof(*q));
	unsigned char *buf = malloc(msg_max + 64), *exp = malloc(msg_max + 64);
	size_t qh = 0, qn = 0, qcap = cap / 8 + 1, len, full;
	uint64_t head = 0, tail = 0;
	uint32_t seq = 0, tid = ipcd_tid();
	ssize_t n, want;
	int i, peek, wrote = 0;

	ck_assert(q && buf && exp);
	ring_open(&t, cap, IPCD_RING_F_MESSAGE, msg_max);
	for (i = 0; i < rounds; i++) {
		if (rng_below(&g, 2)) {
			uint64_t space = cap - (tail - head), pos = tail & (cap - 1);
			uint64_t to_end = cap - pos, rs;

			switch (rng_below(&g, 8)) {
			case 0:
				len = rng_below(&g, msg_max + 2);
				break;
			case 1:
				len = msg_max - rng_below(&g, 3);
				break;
			default:
				len = rng_below(&g, 200);
				break;
			}
			rs = rec_size(len);
			if (len > msg_max) {
				want = -EMSGSIZE;
			} else {
				if (rs > to_end && to_end <= space) {
					tail += to_end;		/* the pad */
					space -= to_end;
					to_end = cap;
				}
				want = rs > to_end || rs > space ? -EAGAIN : (ssize_t)len;
			}
			if (want >= 0) {
				msg_fill(exp, seq, len);
				memcpy(buf, exp, len);
			}
			n = ipcd_ring_write(&t.v, want >= 0 ? buf : exp, len, tid);
			ck_assert_msg(n == want, "round %d: write %zu: %zd, want %zd", i, len, n, want);
			if (n >= 0) {
				tail += rs;
				q[(qh + qn++) % qcap] = (struct qmsg){ seq, (uint32_t)len, tail };
				seq++;
				wrote++;
			}
			ck_assert_uint_eq(load_tail(&t), tail);
		} else {
			size_t blen = rng_below(&g, 4) == 0 ? rng_below(&g, msg_max + 8)
							    : msg_max + 8;

			peek = rng_below(&g, 5) == 0;
			n = ipcd_ring_read(&t.v, buf, blen, tid, peek ? IPCD_IO_PEEK : 0, &full);
			if (qn == 0) {
				ck_assert_int_eq(n, -EAGAIN);
				head = tail;	/* a lone pad was consumed, if any */
			} else {
				struct qmsg *m = &q[qh];

				want = m->len < blen ? m->len : (ssize_t)blen;
				ck_assert_msg(n == want, "round %d: read: %zd, want %zd", i, n, want);
				ck_assert_uint_eq(full, m->len);
				msg_fill(exp, m->seq, m->len);
				ck_assert_mem_eq(buf, exp, (size_t)n);
				if (!peek) {
					head = m->end;
					qh = (qh + 1) % qcap;
					qn--;
				}
			}
			ck_assert_uint_eq(load_head(&t), head);
		}
		ck_assert_int_eq(ipcd_ring_space(&t.v), (ssize_t)(cap - (tail - head)));
		if (qn)
			ck_assert_int_eq(ipcd_ring_readable(&t.v), (ssize_t)q[qh].len);
	}
	ck_assert_int_gt(wrote, rounds / 8);
	ck_assert_uint_gt(tail, 10 * cap);
	free(q);
	free(buf);
	free(exp);
	ring_close(&t);
}

START_TEST(test_msg_random)
{
	msg_model_run(4096, 4088, 101, ROUNDS(60000));
	msg_model_run(4096, 700, 102, ROUNDS(60000));
	msg_model_run(65536, 5000, 103, ROUNDS(40000));
}
END_TEST

START_TEST(test_msg_eof)
{
	struct tring t;
	unsigned char in[4080], out[4096];
	uint32_t tid = ipcd_tid();
	size_t full;

	fill(in, sizeof(in), 40);
	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 4088);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 10, tid), 10);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 0, tid), 0);
	set_peers(t.r, 1, 0, 1);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 10);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), IPCD_EOF);

	/* The last thing in the ring is a lone pad: consuming it ends it. */
	set_peers(t.r, 1, 1, 2);
	ipcd_view_mark_open(&t.v);
	set_indexes(&t, 4008, 4008);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 4080, tid), -EAGAIN);
	ck_assert_uint_eq(load_tail(&t), 4096);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), -EAGAIN);
	ck_assert_uint_eq(load_head(&t), 4096);
	set_indexes(&t, 4008, 4096);	/* the same pad again */
	set_peers(t.r, 1, 0, 2);
	ck_assert_int_eq(ipcd_ring_can_read(&t.v), 1);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), IPCD_EOF);
	ck_assert_uint_eq(load_head(&t), 4096);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, &full), IPCD_EOF);
	ring_close(&t);
}
END_TEST

/*
 * A lone pad (written when only the pad fitted, see test_msg_pad_alone) is a
 * healthy state, but ipcd_ring_readable() calls it corrupt: it returns -EIO
 * when tail - head <= to_end after a pad.  The daemon's poll breaks the
 * channel for good when readable() is negative.
 */
START_TEST(test_msg_readable_lone_pad)
{
	struct tring t;
	unsigned char in[4080], out[4096];
	uint32_t tid = ipcd_tid();

	fill(in, sizeof(in), 41);
	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 4088);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 4000, tid), 4000);
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), 4000);
	ck_assert_int_eq(ipcd_ring_write(&t.v, in, 4080, tid), -EAGAIN);
	ck_assert_uint_eq(load_head(&t), 4008);
	ck_assert_uint_eq(load_tail(&t), 4096);
	ck_assert_int_eq(ipcd_ring_space(&t.v), 4008);
	/* The ring is fine: reading it works, and so must asking about it. */
	ck_assert_msg(ipcd_ring_readable(&t.v) == 0,
		      "ipcd_ring_readable() on a ring holding only a pad: %zd, want 0",
		      ipcd_ring_readable(&t.v));
	ck_assert_int_eq(ipcd_ring_read(&t.v, out, sizeof(out), tid, 0, NULL), -EAGAIN);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 0);
	ring_close(&t);
}
END_TEST

/* ---- corruption ------------------------------------------------------- */

static void expect_io_all(struct tring *t, const char *what)
{
	unsigned char buf[64];
	uint32_t tid = ipcd_tid();
	uint64_t head = load_head(t), tail = load_tail(t);
	size_t full = 5;

	ck_assert_msg(ipcd_ring_read(&t->v, buf, sizeof(buf), tid, 0, &full) == -EIO,
		      "%s: read", what);
	ck_assert_uint_eq(full, 0);
	ck_assert_msg(ipcd_ring_read(&t->v, buf, sizeof(buf), tid, IPCD_IO_PEEK, NULL) == -EIO,
		      "%s: peek", what);
	ck_assert_msg(ipcd_ring_write(&t->v, "x", 1, tid) == -EIO, "%s: write", what);
	ck_assert_msg(ipcd_ring_readable(&t->v) == -EIO, "%s: readable", what);
	ck_assert_msg(ipcd_ring_space(&t->v) == -EIO, "%s: space", what);
	ck_assert_msg(ipcd_ring_can_read(&t->v) == 1, "%s: can_read", what);
	ck_assert_msg(ipcd_ring_can_write(&t->v, 1) == 1, "%s: can_write", what);
	ck_assert_uint_eq(load_head(t), head);
	ck_assert_uint_eq(load_tail(t), tail);
	ck_assert_uint_eq(atomic_load(&t->r->rlock), 0);
	ck_assert_uint_eq(atomic_load(&t->r->wlock), 0);
}

START_TEST(test_corrupt_indexes)
{
	struct tring t;
	uint32_t features;

	for (features = 0; features <= IPCD_RING_F_MESSAGE; features++) {
		ring_open(&t, 4096, features, 1000);
		set_indexes(&t, 0, 4096 + 8);
		expect_io_all(&t, "tail - head = cap + 8");
		set_indexes(&t, 0, 4097);
		expect_io_all(&t, "tail - head = cap + 1");
		set_indexes(&t, 800, 400);
		expect_io_all(&t, "tail behind head");
		set_indexes(&t, 0, UINT64_MAX);
		expect_io_all(&t, "tail far ahead");
		set_indexes(&t, UINT64_MAX - 7, 4096 * 3);
		expect_io_all(&t, "head wrapped, tail not");
		/* Exactly full is fine. */
		set_indexes(&t, 8, 4096 + 8);
		ck_assert_int_eq(ipcd_ring_space(&t.v), 0);
		ring_close(&t);
	}
}
END_TEST

static void expect_read_io(struct tring *t, const char *what)
{
	unsigned char buf[4096];
	uint64_t head = load_head(t), tail = load_tail(t);

	ck_assert_msg(ipcd_ring_read(&t->v, buf, sizeof(buf), ipcd_tid(), 0, NULL) == -EIO,
		      "%s: read", what);
	ck_assert_msg(ipcd_ring_read(&t->v, buf, sizeof(buf), ipcd_tid(), IPCD_IO_PEEK,
				     NULL) == -EIO, "%s: peek", what);
	ck_assert_uint_eq(load_head(t), head);
	ck_assert_uint_eq(load_tail(t), tail);
	ck_assert_uint_eq(atomic_load(&t->r->rlock), 0);
}

START_TEST(test_corrupt_records)
{
	struct tring t;

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);

	put_rec(&t, 0, 16, 2);
	set_indexes(&t, 0, 24);
	expect_read_io(&t, "unknown flag");
	put_rec(&t, 0, 16, 1u << 31);
	expect_read_io(&t, "high flag");

	put_rec(&t, 0, 1001, 0);
	set_indexes(&t, 0, rec_size(1001));
	expect_read_io(&t, "len > msg_max");
	ck_assert_int_eq(ipcd_ring_readable(&t.v), -EIO);
	put_rec(&t, 0, UINT32_MAX, 0);
	expect_read_io(&t, "len 2^32-1");

	put_rec(&t, 0, 100, 0);
	set_indexes(&t, 0, 16);
	expect_read_io(&t, "len > used");
	set_indexes(&t, 0, 4);
	expect_read_io(&t, "used shorter than a header");

	/* A record that would run off the end (records never wrap). */
	put_rec(&t, 4000, 200, 0);
	set_indexes(&t, 4000, 4000 + 208);
	expect_read_io(&t, "record across the end");

	/* Pads. */
	put_rec(&t, 4000, 80, IPCD_REC_PAD);		/* should be 88 */
	put_rec(&t, 0, 8, 0);
	set_indexes(&t, 4000, 4096 + 16);
	expect_read_io(&t, "pad len short");
	put_rec(&t, 4000, 96, IPCD_REC_PAD);
	expect_read_io(&t, "pad len long");
	put_rec(&t, 4000, 88, IPCD_REC_PAD | 4);
	expect_read_io(&t, "pad with another flag");
	put_rec(&t, 4000, 88, IPCD_REC_PAD);
	set_indexes(&t, 4000, 4048);
	expect_read_io(&t, "pad longer than used");
	set_indexes(&t, 4000, 4096 + 16);
	put_rec(&t, 0, 8, 8);
	expect_read_io(&t, "bad record behind a good pad");
	put_rec(&t, 0, 800, 0);
	expect_read_io(&t, "record behind a pad longer than used");
	set_indexes(&t, 4000, 4096 + 4);
	expect_read_io(&t, "partial header behind a pad");
	put_rec(&t, 0, 8, IPCD_REC_PAD);
	set_indexes(&t, 4000, 4096 + 16);
	expect_read_io(&t, "pad behind a pad");

	/* And the same pad, well formed, reads fine. */
	put_rec(&t, 0, 8, 0);
	memcpy(t.v.data + 8, "8 bytes!", 8);
	{
		unsigned char buf[16];

		ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(), 0, NULL), 8);
		ck_assert_mem_eq(buf, "8 bytes!", 8);
	}
	ring_close(&t);
}
END_TEST

/* ipcd_ring_readable() is documented to return -EIO if corrupt, and the
 * daemon's poll relies on it; it misses what ipcd_ring_read() catches. */
START_TEST(test_corrupt_readable_agrees)
{
	struct tring t;

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);
	put_rec(&t, 0, 16, 2);
	set_indexes(&t, 0, 24);
	expect_read_io(&t, "unknown flag");
	ck_assert_msg(ipcd_ring_readable(&t.v) == -EIO,
		      "readable with a bad record flag: %zd", ipcd_ring_readable(&t.v));
	put_rec(&t, 0, 100, 0);
	set_indexes(&t, 0, 16);
	expect_read_io(&t, "len > used");
	ck_assert_msg(ipcd_ring_readable(&t.v) == -EIO,
		      "readable with a record longer than used: %zd",
		      ipcd_ring_readable(&t.v));
	ring_close(&t);
}
END_TEST

START_TEST(test_corrupt_broken)
{
	struct tring t;
	struct timespec ts = { 5, 0 };

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, ipcd_tid()), 3);
	atomic_store(&t.r->state, IPCD_RING_S_BROKEN);
	expect_io_all(&t, "broken stream");
	/* Waiting on a broken ring returns at once (it is "ready" with EIO). */
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA, 0, &ts, 0), 0);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_SPACE, 1, &ts, 0), 0);
	/* No reader and broken: EIO wins. */
	set_peers(t.r, 0, 1, 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "x", 1, ipcd_tid()), -EIO);
	atomic_store(&t.r->state, 0);
	set_peers(t.r, 1, 1, 1);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 3);
	ring_close(&t);

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 100);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, ipcd_tid()), 3);
	atomic_store(&t.r->state, IPCD_RING_S_BROKEN | 0x10);
	expect_io_all(&t, "broken messages");
	ring_close(&t);
}
END_TEST

START_TEST(test_corrupt_lock_tid)
{
	struct tring t;
	unsigned char buf[8];
	uint32_t tid = ipcd_tid();

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, tid), 3);

	atomic_store(&t.r->wlock, IPCD_LOCK_TID_MAX + 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "x", 1, tid), -EIO);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_SPACE), -EIO);
	ck_assert_int_eq(ipcd_ring_lock_wait(&t.v, IPCD_WAIT_SPACE), -EIO);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), IPCD_LOCK_TID_MAX + 1);
	atomic_store(&t.r->wlock, IPCD_LOCK_WAITERS | 0x7fffffffu);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "x", 1, tid), -EIO);
	ck_assert_uint_eq(load_tail(&t), 3);

	atomic_store(&t.r->rlock, UINT32_MAX);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EIO);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_DATA), -EIO);
	ck_assert_int_eq(ipcd_ring_lock_wait(&t.v, IPCD_WAIT_DATA), -EIO);
	atomic_store(&t.r->rlock, IPCD_LOCK_TID_MAX + 1);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EIO);
	ck_assert_uint_eq(load_head(&t), 0);

	/* IPCD_LOCK_TID_MAX itself is a possible (and here dead) owner. */
	atomic_store(&t.r->rlock, IPCD_LOCK_TID_MAX);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EBUSY);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_DATA), 1);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), 3);
	ck_assert_mem_eq(buf, "abc", 3);
	ring_close(&t);
}
END_TEST

/*
 * In a message ring head and tail are multiples of IPCD_REC_ALIGN; a
 * corrupted one that points into the last 7 bytes of the data area makes
 * ring.c touch the 8-byte record header past the end of the mapping (the
 * guard page here), instead of returning -EIO: put_locked() writes the pad
 * header at data + pos, take_locked() and ipcd_ring_readable() read the
 * header at data + pos, with pos > capacity - 8.
 */
START_TEST(test_corrupt_unaligned_write)
{
	struct tring t;

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);
	set_indexes(&t, 4096 - 4, 4096 - 4);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, ipcd_tid()), -EIO);
	ring_close(&t);
}
END_TEST

START_TEST(test_corrupt_unaligned_read)
{
	struct tring t;
	unsigned char buf[64];

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);
	set_indexes(&t, 4096 - 4, 4096 - 4 + 64);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(), 0, NULL), -EIO);
	ring_close(&t);
}
END_TEST

START_TEST(test_corrupt_unaligned_readable)
{
	struct tring t;

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 1000);
	set_indexes(&t, 4096 - 2, 4096 - 2 + 64);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), -EIO);
	ring_close(&t);
}
END_TEST

/* Scribbling over the ring: whatever the shared memory says, no call may
 * crash, hang, write outside the buffers it was given, or claim more than
 * was asked. */
static uint64_t fuzz_index(struct rng *g, uint64_t cap)
{
	uint64_t base;

	switch (rng_below(g, 4)) {
	case 0:
		base = rng_next(g);
		break;
	case 1:
		base = rng_below(g, 4) * cap;
		break;
	case 2:
		base = UINT64_MAX - rng_below(g, 2 * cap);
		break;
	default:
		base = rng_below(g, 1u << 20);
		break;
	}
	switch (rng_below(g, 6)) {
	case 0:
		return base;
	case 1:
		return (base & ~(cap - 1)) + cap - 1 - rng_below(g, 8);
	case 2:
		return (base & ~(cap - 1)) + cap - 8 * (1 + rng_below(g, 4));
	default:
		return base & ~(uint64_t)7;
	}
}

static uint64_t fuzz_delta(struct rng *g, uint64_t cap)
{
	switch (rng_below(g, 7)) {
	case 0:
		return 0;
	case 1:
		return rng_below(g, 32);
	case 2:
		return cap - 16 + rng_below(g, 32);
	case 3:
		return rng_next(g);
	case 4:
		return rng_below(g, cap + 1);
	default:
		return rng_below(g, cap + 1) & ~(uint64_t)7;
	}
}

static uint32_t fuzz_lock(struct rng *g, uint32_t live)
{
	switch (rng_below(g, 16)) {
	case 0:
		return (uint32_t)rng_next(g);
	case 1:
		return IPCD_LOCK_TID_MAX + 1 + (uint32_t)rng_below(g, 1000);
	case 2:
		return IPCD_LOCK_WAITERS;
	case 3:
		return live;
	case 4:
		return (uint32_t)rng_below(g, IPCD_LOCK_TID_MAX + 1) |
		       (rng_below(g, 2) ? IPCD_LOCK_WAITERS : 0);
	default:
		return 0;
	}
}

static uint32_t fuzz_len(struct rng *g, const struct tring *t, uint64_t pos)
{
	switch (rng_below(g, 8)) {
	case 0:
		return (uint32_t)rng_next(g);
	case 1:
		return t->v.msg_max + (uint32_t)rng_below(g, 3);
	case 2:
		return (uint32_t)(t->v.cap - pos - 8);	/* a plausible pad */
	case 3:
		return (uint32_t)(t->v.cap - pos - 8 + rng_below(g, 17) - 8);
	default:
		return (uint32_t)rng_below(g, 300);
	}
}

static void fuzz_scribble(struct tring *t, struct rng *g, const unsigned char *good)
{
	struct ipcd_ring *r = t->r;
	uint64_t cap = t->v.cap, head, pos;
	uint32_t flags;
	size_t i, n;

	head = fuzz_index(g, cap);
	set_indexes(t, head, head + fuzz_delta(g, cap));
	atomic_store(&r->wlock, fuzz_lock(g, (uint32_t)getpid()));
	atomic_store(&r->rlock, fuzz_lock(g, (uint32_t)getpid()));
	atomic_store(&r->state, rng_below(g, 10) ? 0 : (uint32_t)rng_next(g));
	atomic_store(&r->readers, (uint32_t)rng_below(g, 3));
	atomic_store(&r->writers_epoch, rng_below(g, 3) ? rng_below(g, 3) | (rng_below(g, 4) << 32)
						       : rng_next(g));
	if (rng_below(g, 4) == 0) {
		atomic_store(&r->data_seq, (uint32_t)rng_next(g));
		atomic_store(&r->space_seq, (uint32_t)rng_next(g));
		atomic_store(&r->rd_sleepers, (uint32_t)rng_below(g, 3));
		atomic_store(&r->wr_sleepers, (uint32_t)rng_below(g, 3));
	}
	/* Record headers where the reader and the writer will look. */
	for (i = 0; i < 3; i++) {
		pos = i == 0 ? head & (cap - 1) : i == 1 ? 0 : rng_below(g, cap);
		if (pos > cap - 8)
			pos = cap - 8;
		switch (rng_below(g, 4)) {
		case 0:
			flags = IPCD_REC_PAD;
			break;
		case 1:
			flags = (uint32_t)rng_next(g);
			break;
		default:
			flags = 0;
			break;
		}
		put_rec(t, pos, fuzz_len(g, t, pos), flags);
	}
	/* Random bytes in the data area and, now and then, the header. */
	n = rng_below(g, 64);
	pos = rng_below(g, cap - n + 1);
	for (i = 0; i < n; i++)
		t->v.data[pos + i] = (unsigned char)rng_next(g);
	memcpy(t->map, good, 64);
	if (rng_below(g, 8) == 0) {
		n = 1 + rng_below(g, 8);
		for (i = 0; i < n; i++) {
			pos = rng_below(g, IPCD_RING_HDR_SIZE);
			if (pos >= 4 || rng_below(g, 4) == 0)
				t->map[pos] = (unsigned char)rng_next(g);
		}
	}
}

static void fuzz_run(uint32_t features, uint64_t seed, int rounds)
{
	enum { BUF = 8192, CANARY = 64 };
	struct tring t;
	struct rng g = { seed };
	struct ipcd_view v2;
	unsigned char *buf = malloc(BUF + CANARY), *src = malloc(BUF);
	unsigned char good[64];
	uint32_t tid = ipcd_tid(), rl, wl;
	struct timespec zero = { 0, 0 };
	size_t len, full, i;
	ssize_t n, lim;
	int round, rc;

	ck_assert(buf && src);
	fill(src, BUF, 1);
	ring_open(&t, 4096, features, features ? 1000 : 0);
	memcpy(good, t.map, sizeof(good));
	lim = features ? (ssize_t)t.v.msg_max : (ssize_t)t.v.cap;
	for (round = 0; round < rounds; round++) {
		fuzz_scribble(&t, &g, good);
		rl = atomic_load(&t.r->rlock);
		wl = atomic_load(&t.r->wlock);
		switch (rng_below(&g, 10)) {
		case 0:
		case 1:
		case 2:
			len = rng_below(&g, BUF + 1);
			memset(buf + len, 0xa5, CANARY);
			full = SIZE_MAX;
			n = ipcd_ring_read(&t.v, buf, len, tid,
					   rng_below(&g, 3) ? 0 : IPCD_IO_PEEK, &full);
			for (i = 0; i < CANARY; i++)
				ck_assert_msg(buf[len + i] == 0xa5,
					      "round %d: read wrote past its buffer", round);
			if (n >= 0) {
				ck_assert_msg((size_t)n <= len, "round %d: read %zd > %zu",
					      round, n, len);
				if (features)
					ck_assert_uint_le(full, t.v.msg_max);
				else
					ck_assert_uint_eq(full, (size_t)n);
			} else {
				ck_assert_msg(n == -EAGAIN || n == IPCD_EOF || n == -EBUSY ||
					      n == -EIO, "round %d: read: %zd", round, n);
				ck_assert_uint_eq(full, 0);
			}
			break;
		case 3:
		case 4:
		case 5:
			len = rng_below(&g, 4) ? rng_below(&g, 1100) : rng_below(&g, BUF + 1);
			n = ipcd_ring_write(&t.v, src, len, tid);
			if (n >= 0)
				ck_assert_msg((size_t)n <= len, "round %d: write %zd > %zu",
					      round, n, len);
			else
				ck_assert_msg(n == -EAGAIN || n == -EBUSY || n == -EPIPE ||
					      n == -EMSGSIZE || n == -EIO,
					      "round %d: write: %zd", round, n);
			break;
		case 6:
			n = ipcd_ring_readable(&t.v);
			ck_assert_msg(n == -EIO || (n >= 0 && n <= lim),
				      "round %d: readable %zd", round, n);
			n = ipcd_ring_space(&t.v);
			ck_assert_msg(n == -EIO || (n >= 0 && n <= (ssize_t)t.v.cap),
				      "round %d: space %zd", round, n);
			break;
		case 7:
			rc = ipcd_ring_can_read(&t.v);
			ck_assert(rc == 0 || rc == 1);
			len = rng_below(&g, BUF);
			rc = ipcd_ring_can_write(&t.v, ipcd_ring_need(&t.v, len));
			ck_assert(rc == 0 || rc == 1);
			ck_assert_uint_le(ipcd_ring_need(&t.v, len), t.v.cap);
			ck_assert_uint_ge(ipcd_ring_need(&t.v, len), 1);
			break;
		case 8:
			rc = ipcd_ring_wait(&t.v, 1 + (unsigned)rng_below(&g, 3),
					    rng_below(&g, 5000), &zero, 0);
			ck_assert_msg(rc == 0 || rc == -ETIMEDOUT, "round %d: wait %d", round, rc);
			break;
		default:
			rc = ipcd_ring_lock_reap(&t.v, rng_below(&g, 2) ? IPCD_WAIT_DATA
								       : IPCD_WAIT_SPACE);
			ck_assert(rc == 0 || rc == 1 || rc == -EIO);
			/* lock_wait sleeps a tick on a held lock: only
			 * where it cannot. */
			if (rl == 0 || (rl & ~IPCD_LOCK_WAITERS) > IPCD_LOCK_TID_MAX) {
				rc = ipcd_ring_lock_wait(&t.v, IPCD_WAIT_DATA);
				ck_assert(rc == 0 || rc == -EIO);
			}
			break;
		}
		/* A call that found a lock free leaves it free. */
		if (rl == 0)
			ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
		if (wl == 0)
			ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
		/* Attaching a scribbled header fails or yields sane bounds. */
		if (rng_below(&g, 8) == 0 &&
		    ipcd_view_attach(&v2, t.map, t.len) == 0) {
			ck_assert_uint_ne(ipcd_ring_map_size(v2.cap), 0);
			ck_assert_uint_le(ipcd_ring_map_size(v2.cap), t.len);
			ck_assert_uint_eq(v2.features & ~IPCD_RING_F_KNOWN, 0);
			if (v2.features & IPCD_RING_F_MESSAGE)
				ck_assert_uint_le(v2.msg_max, v2.cap - 8);
		}
	}
	free(buf);
	free(src);
	ring_close(&t);
}

START_TEST(test_corrupt_fuzz)
{
	fuzz_run(0, 1001, ROUNDS(20000));
	fuzz_run(IPCD_RING_F_MESSAGE, 1002, ROUNDS(30000));
}
END_TEST

/* ---- locks ------------------------------------------------------------ */

START_TEST(test_lock_dead_owner)
{
	struct tring t;
	unsigned char buf[8];
	uint32_t tid = ipcd_tid();
	pid_t dead = dead_pid();

	ring_open(&t, 4096, 0, 0);
	atomic_store(&t.r->wlock, (uint32_t)dead);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, tid), -EBUSY);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), (uint32_t)dead);
	ck_assert_uint_eq(load_tail(&t), 0);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_DATA), 0);	/* the other lock */
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_SPACE), 1);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_SPACE), 0);	/* free now */
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, tid), 3);

	atomic_store(&t.r->rlock, (uint32_t)dead | IPCD_LOCK_WAITERS);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), -EBUSY);
	ck_assert_uint_eq(load_head(&t), 0);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_DATA), 1);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), tid, 0, NULL), 3);
	ck_assert_mem_eq(buf, "abc", 3);
	ring_close(&t);
}
END_TEST

/* lock_wait takes a lock over from a dead holder. */
START_TEST(test_lock_wait_dead_owner)
{
	struct tring t;
	pid_t dead = dead_pid();
	int i;

	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 100);
	atomic_store(&t.r->wlock, (uint32_t)dead);
	for (i = 0; i < 100 && atomic_load(&t.r->wlock) != 0; i++)
		ck_assert_int_eq(ipcd_ring_lock_wait(&t.v, IPCD_WAIT_SPACE), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, ipcd_tid()), 3);
	atomic_store(&t.r->rlock, (uint32_t)dead);
	for (i = 0; i < 100 && atomic_load(&t.r->rlock) != 0; i++)
		ck_assert_int_eq(ipcd_ring_lock_wait(&t.v, IPCD_WAIT_DATA), 0);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ck_assert_int_eq(ipcd_ring_readable(&t.v), 3);
	ring_close(&t);
}
END_TEST

struct lock_probe {
	struct ipcd_view *v;
	ssize_t wrote, got;
	uint32_t tid;
};

static void *lock_probe_main(void *arg)
{
	struct lock_probe *p = arg;
	unsigned char buf[8];

	p->tid = ipcd_tid();
	p->wrote = ipcd_ring_write(p->v, "abc", 3, p->tid);
	p->got = ipcd_ring_read(p->v, buf, sizeof(buf), p->tid, 0, NULL);
	return NULL;
}

struct parked {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint32_t tid;
	int go;
};

static void *parked_main(void *arg)
{
	struct parked *p = arg;

	pthread_mutex_lock(&p->mu);
	p->tid = ipcd_tid();
	pthread_cond_broadcast(&p->cv);
	while (!p->go)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

START_TEST(test_lock_live_owner)
{
	struct tring t;
	struct lock_probe p;
	struct parked pk;
	pthread_t th;
	uint32_t me = (uint32_t)getpid();

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "xyz", 3, ipcd_tid()), 3);
	/* Both locks held by this process's main thread, asked from another. */
	atomic_store(&t.r->wlock, me);
	atomic_store(&t.r->rlock, me | IPCD_LOCK_WAITERS);
	memset(&p, 0, sizeof(p));
	p.v = &t.v;
	ck_assert_int_eq(pthread_create(&th, NULL, lock_probe_main, &p), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_uint_ne(p.tid, me);
	ck_assert_int_eq(p.wrote, -EBUSY);
	ck_assert_int_eq(p.got, -EBUSY);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_SPACE), 0);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_DATA), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), me);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), me | IPCD_LOCK_WAITERS);
	/* lock_wait returns (to retry) but does not take a live lock. */
	ck_assert_int_eq(ipcd_ring_lock_wait(&t.v, IPCD_WAIT_SPACE), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wlock) & ~IPCD_LOCK_WAITERS, me);
	ck_assert_uint_eq(load_tail(&t), 3);
	ck_assert_uint_eq(load_head(&t), 0);

	/* Held by a live thread other than the main one. */
	memset(&pk, 0, sizeof(pk));
	pthread_mutex_init(&pk.mu, NULL);
	pthread_cond_init(&pk.cv, NULL);
	ck_assert_int_eq(pthread_create(&th, NULL, parked_main, &pk), 0);
	pthread_mutex_lock(&pk.mu);
	while (pk.tid == 0)
		pthread_cond_wait(&pk.cv, &pk.mu);
	pthread_mutex_unlock(&pk.mu);
	ck_assert_uint_ne(pk.tid, me);
	atomic_store(&t.r->wlock, pk.tid);
	atomic_store(&t.r->rlock, 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, ipcd_tid()), -EBUSY);
	ck_assert_int_eq(ipcd_ring_lock_reap(&t.v, IPCD_WAIT_SPACE), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), pk.tid);
	pthread_mutex_lock(&pk.mu);
	pk.go = 1;
	pthread_cond_broadcast(&pk.cv);
	pthread_mutex_unlock(&pk.mu);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ring_close(&t);
}
END_TEST

/* A lock word with only the waiters bit has no owner: it can be taken, and
 * dropping it wakes and clears. */
START_TEST(test_lock_waiters_bit_only)
{
	struct tring t;
	unsigned char buf[8];

	ring_open(&t, 4096, 0, 0);
	atomic_store(&t.r->wlock, IPCD_LOCK_WAITERS);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "abc", 3, ipcd_tid()), 3);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	atomic_store(&t.r->rlock, IPCD_LOCK_WAITERS);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(), 0, NULL), 3);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	ring_close(&t);
}
END_TEST

START_TEST(test_daemon_alive)
{
	struct tring t;

	ring_open(&t, 4096, 0, 0);
	atomic_store(&t.r->daemon_pid, 0);		/* no daemon recorded */
	ck_assert_int_eq(ipcd_ring_daemon_alive(&t.v), 1);
	atomic_store(&t.r->daemon_pid, (uint32_t)getpid());
	ck_assert_int_eq(ipcd_ring_daemon_alive(&t.v), 1);
	atomic_store(&t.r->daemon_pid, (uint32_t)dead_pid());
	ck_assert_int_eq(ipcd_ring_daemon_alive(&t.v), 0);
	atomic_store(&t.r->daemon_pid, IPCD_LOCK_TID_MAX + 1);	/* not a pid */
	ck_assert_int_eq(ipcd_ring_daemon_alive(&t.v), 1);
	ring_close(&t);
}
END_TEST

/* ---- waiting ---------------------------------------------------------- */

START_TEST(test_wait_timeout)
{
	struct tring t;
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	unsigned char buf[4096];

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA, 0, &ts, 0), -ETIMEDOUT);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA, 0, &ts, 100000), -ETIMEDOUT);
	ck_assert_uint_eq(atomic_load(&t.r->rd_sleepers), 0);
	/* Both directions at once: nothing to read, and less room than asked. */
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA | IPCD_WAIT_SPACE, 4097,
					&ts, 0), -ETIMEDOUT);
	ck_assert_uint_eq(atomic_load(&t.r->rd_sleepers), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wr_sleepers), 0);
	fill(buf, sizeof(buf), 1);
	ck_assert_int_eq(ipcd_ring_write(&t.v, buf, 4096, ipcd_tid()), 4096);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_SPACE, 1, &ts, 0), -ETIMEDOUT);
	ck_assert_uint_eq(atomic_load(&t.r->wr_sleepers), 0);
	ring_close(&t);
}
END_TEST

/* Waits whose condition already holds return 0 at once; the 10 s timeout
 * only turns a would-be hang into a failure. */
START_TEST(test_wait_ready)
{
	struct tring t;
	struct timespec ts = { 10, 0 };

	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_SPACE, 4096, &ts, 0), 0);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA | IPCD_WAIT_SPACE, 1, &ts, 0), 0);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "a", 1, ipcd_tid()), 1);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA, 0, &ts, 0), 0);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA, 0, &ts, 1000), 0);
	/* Less room than asked, but no reader: a writer learns EPIPE. */
	ck_assert_int_eq(ipcd_ring_can_write(&t.v, 4096), 0);
	set_peers(t.r, 0, 1, 1);
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_SPACE, 4096, &ts, 0), 0);
	/* Empty, writer gone: a reader learns EOF. */
	set_peers(t.r, 1, 0, 1);
	{
		unsigned char c;

		ck_assert_int_eq(ipcd_ring_read(&t.v, &c, 1, ipcd_tid(), 0, NULL), 1);
	}
	ck_assert_int_eq(ipcd_ring_wait(&t.v, IPCD_WAIT_DATA, 0, &ts, 0), 0);
	ring_close(&t);
}
END_TEST

struct sleeper {
	struct ipcd_view v;
	unsigned dir;
	int rc;
	ssize_t n;
	unsigned char buf[256];
	ssize_t before;
};

static void *reader_sleeper(void *arg)
{
	struct sleeper *s = arg;
	uint32_t tid = ipcd_tid();

	s->before = ipcd_ring_read(&s->v, s->buf, sizeof(s->buf), tid, 0, NULL);
	s->rc = ipcd_ring_wait(&s->v, IPCD_WAIT_DATA, 0, NULL, 0);
	s->n = ipcd_ring_read(&s->v, s->buf, sizeof(s->buf), tid, 0, NULL);
	return NULL;
}

static void *writer_sleeper(void *arg)
{
	struct sleeper *s = arg;
	uint32_t tid = ipcd_tid();

	fill(s->buf, 100, 77);
	s->before = ipcd_ring_write(&s->v, s->buf, 100, tid);
	s->rc = ipcd_ring_wait(&s->v, IPCD_WAIT_SPACE, ipcd_ring_need(&s->v, 100), NULL, 0);
	s->n = ipcd_ring_write(&s->v, s->buf, 100, tid);
	return NULL;
}

/* Let a thread get as far as registering as a sleeper. */
static void until_sleeping(_Atomic uint32_t *sleepers)
{
	while (atomic_load(sleepers) == 0)
		sched_yield();
}

START_TEST(test_wait_wakes_reader)
{
	struct tring t;
	struct sleeper *s = calloc(1, sizeof(*s));
	pthread_t th;

	ck_assert_ptr_nonnull(s);
	ring_open(&t, 4096, 0, 0);
	ck_assert_int_eq(ipcd_view_attach(&s->v, t.map, t.len), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, reader_sleeper, s), 0);
	until_sleeping(&t.r->rd_sleepers);
	ck_assert_int_eq(ipcd_ring_write(&t.v, "wake up", 7, ipcd_tid()), 7);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(s->before, -EAGAIN);
	ck_assert_int_eq(s->rc, 0);
	ck_assert_int_eq(s->n, 7);
	ck_assert_mem_eq(s->buf, "wake up", 7);
	ck_assert_uint_eq(atomic_load(&t.r->rd_sleepers), 0);

	/* The writer leaving (the daemon's wake_all) wakes it too: EOF. */
	ck_assert_int_eq(pthread_create(&th, NULL, reader_sleeper, s), 0);
	until_sleeping(&t.r->rd_sleepers);
	set_peers(t.r, 1, 0, 1);
	ipcd_ring_wake_all(&t.v, IPCD_WAIT_DATA);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(s->rc, 0);
	ck_assert_int_eq(s->n, IPCD_EOF);
	free(s);
	ring_close(&t);
}
END_TEST

START_TEST(test_wait_wakes_writer)
{
	struct tring t;
	struct sleeper *s = calloc(1, sizeof(*s));
	unsigned char buf[4096];
	pthread_t th;

	ck_assert_ptr_nonnull(s);
	ring_open(&t, 4096, IPCD_RING_F_MESSAGE, 2000);
	ck_assert_int_eq(ipcd_view_attach(&s->v, t.map, t.len), 0);
	fill(buf, sizeof(buf), 3);
	ck_assert_int_eq(ipcd_ring_write(&t.v, buf, 2000, ipcd_tid()), 2000);
	ck_assert_int_eq(ipcd_ring_write(&t.v, buf, 1990, ipcd_tid()), 1990);
	ck_assert_int_eq(pthread_create(&th, NULL, writer_sleeper, s), 0);
	until_sleeping(&t.r->wr_sleepers);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(), 0, NULL), 2000);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(s->before, -EAGAIN);
	ck_assert_int_eq(s->rc, 0);
	ck_assert_int_eq(s->n, 100);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(), 0, NULL), 1990);
	ck_assert_int_eq(ipcd_ring_read(&t.v, buf, sizeof(buf), ipcd_tid(), 0, NULL), 100);
	fill(s->buf, 100, 77);
	ck_assert_mem_eq(buf, s->buf, 100);
	ck_assert_uint_eq(atomic_load(&t.r->wr_sleepers), 0);
	free(s);
	ring_close(&t);
}
END_TEST

/* Two rings, as the two directions of a duplex channel: data is awaited on
 * `in`, space on `out`, never the other way round. */
struct pair_sleeper {
	struct ipcd_view in, out;
	int rc;
};

static void *pair_sleeper_main(void *arg)
{
	struct pair_sleeper *s = arg;

	s->rc = ipcd_ring_wait_pair(&s->in, &s->out, IPCD_WAIT_DATA | IPCD_WAIT_SPACE,
				    100, NULL, 0, 0);
	return NULL;
}

START_TEST(test_wait_pair)
{
	struct tring in, out;
	struct pair_sleeper *s = calloc(1, sizeof(*s));
	struct timespec ts = { 0, 20 * 1000 * 1000 }, ten = { 10, 0 };
	unsigned char buf[4096];
	pthread_t th;

	ck_assert_ptr_nonnull(s);
	fill(buf, sizeof(buf), 2);
	ring_open(&in, 4096, 0, 0);
	ring_open(&out, 4096, 0, 0);
	ck_assert_int_eq(ipcd_ring_write(&out.v, buf, 4096, ipcd_tid()), 4096);
	/* Data sits in `out` and room in `in`: neither counts. */
	ck_assert_int_eq(ipcd_ring_wait_pair(&in.v, &out.v, IPCD_WAIT_DATA, 0, &ts, 0, 0),
			 -ETIMEDOUT);
	ck_assert_int_eq(ipcd_ring_wait_pair(&in.v, &out.v, IPCD_WAIT_SPACE, 1, &ts, 0, 0),
			 -ETIMEDOUT);
	ck_assert_int_eq(ipcd_ring_wait_pair(&in.v, &out.v, IPCD_WAIT_DATA | IPCD_WAIT_SPACE,
					     1, &ts, 0, 0), -ETIMEDOUT);
	ck_assert_uint_eq(atomic_load(&in.r->rd_sleepers), 0);
	ck_assert_uint_eq(atomic_load(&out.r->wr_sleepers), 0);
	/* The other way round, both are ready. */
	ck_assert_int_eq(ipcd_ring_wait_pair(&out.v, &in.v, IPCD_WAIT_DATA, 0, &ten, 0, 0), 0);
	ck_assert_int_eq(ipcd_ring_wait_pair(&out.v, &in.v, IPCD_WAIT_SPACE, 1, &ten, 0, 0), 0);

	/* A sleeper on both is woken by room made in `out`... */
	ck_assert_int_eq(ipcd_view_attach(&s->in, in.map, in.len), 0);
	ck_assert_int_eq(ipcd_view_attach(&s->out, out.map, out.len), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, pair_sleeper_main, s), 0);
	until_sleeping(&out.r->wr_sleepers);
	ck_assert_int_eq(ipcd_ring_read(&out.v, buf, 200, ipcd_tid(), 0, NULL), 200);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(s->rc, 0);
	ck_assert_uint_eq(atomic_load(&in.r->rd_sleepers), 0);
	ck_assert_uint_eq(atomic_load(&out.r->wr_sleepers), 0);
	/* ...and by data written to `in`. */
	ck_assert_int_eq(ipcd_ring_write(&out.v, buf, 200, ipcd_tid()), 200);
	ck_assert_int_eq(pthread_create(&th, NULL, pair_sleeper_main, s), 0);
	until_sleeping(&in.r->rd_sleepers);
	ck_assert_int_eq(ipcd_ring_write(&in.v, "x", 1, ipcd_tid()), 1);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(s->rc, 0);
	free(s);
	ring_close(&in);
	ring_close(&out);
}
END_TEST

/* A handler that ends a blocked call (as one without SA_RESTART would). */
static void sigwatch_handler(int sig)
{
	(void)sig;
	ipcd_sigwatch_interrupt();
}

/* IPCD_WAIT_SIGSAFE: a wait ends with -EINTR once a handler counted in
 * ipcd_sigwatch since its mark, be it before the wait, during the spin or
 * in the sleep (the handler bumps the word slept on); other waits go on. */
START_TEST(test_wait_sigwatch)
{
	struct sigaction sa = { 0 }, old;
	struct itimerval it = { { 0, 0 }, { 0, 30 * 1000 } };
	struct timespec ts = { 0, 20 * 1000 * 1000 }, five = { 5, 0 }, t0, t1;
	struct tring t;
	uint32_t mark;

	ring_open(&t, 4096, 0, 0);
	/* Counted before the wait: it ends at once, spin or no spin. */
	mark = atomic_load(&ipcd_sigwatch.interrupting);
	ipcd_sigwatch_interrupt();
	ck_assert_int_eq(ipcd_ring_wait_pair(&t.v, &t.v, IPCD_WAIT_DATA | IPCD_WAIT_SIGSAFE, 0,
					     &ts, 0, mark), -EINTR);
	ck_assert_int_eq(ipcd_ring_wait_pair(&t.v, &t.v, IPCD_WAIT_DATA | IPCD_WAIT_SIGSAFE, 0,
					     &ts, 1000, mark), -EINTR);
	/* Without the flag, or with the mark up to date: a plain timeout. */
	ck_assert_int_eq(ipcd_ring_wait_pair(&t.v, &t.v, IPCD_WAIT_DATA, 0, &ts, 0, mark),
			 -ETIMEDOUT);
	mark = atomic_load(&ipcd_sigwatch.interrupting);
	ck_assert_int_eq(ipcd_ring_wait_pair(&t.v, &t.v, IPCD_WAIT_DATA | IPCD_WAIT_SIGSAFE, 0,
					     &ts, 0, mark), -ETIMEDOUT);
	/* A handler installed with SA_RESTART (the futex wait would go on)
	 * that counts in the middle of the sleep wakes it.  ThreadSanitizer
	 * holds signals back until its own interceptors run, which a raw
	 * futex wait never reaches: there the handler comes only after. */
#if defined(__SANITIZE_THREAD__)
	(void)sa;
	(void)old;
	(void)it;
	(void)five;
	(void)t0;
	(void)t1;
	ring_close(&t);
	return;
#endif
	sa.sa_handler = sigwatch_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGALRM, &sa, &old), 0);
	mark = atomic_load(&ipcd_sigwatch.interrupting);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	ck_assert_int_eq(ipcd_ring_wait_pair(&t.v, &t.v, IPCD_WAIT_DATA | IPCD_WAIT_SIGSAFE, 0,
					     &five, 0, mark), -EINTR);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 5);
	ck_assert_ptr_null(atomic_load(&ipcd_sigwatch.sleeping[0]));
	ck_assert_uint_eq(atomic_load(&t.r->rd_sleepers), 0);
	ck_assert_int_eq(sigaction(SIGALRM, &old, NULL), 0);
	ring_close(&t);
}
END_TEST

/* ---- interleavings, driven by hardware watchpoints -------------------- */

/*
 * A reader runs ipcd_ring_read() on one thread while data breakpoints sit on
 * head, tail and writers_epoch.  At the k-th access to any of them (k = 1, 2,
 * ...) the SIGTRAP handler plays the writer: it writes and then the writer
 * leaves (writers = 0), exactly as a writer thread and the daemon would in
 * that window.  Whatever k is, the read must not report the end of the file
 * while what was written is still unread.
 */
#define NWATCH 3

static int watch_fd[NWATCH];
static volatile sig_atomic_t trap_hits, trap_target;

struct race {
	struct tring t;
	struct ipcd_view wv;
	const unsigned char *msg;
	size_t len;
	ssize_t wrote;
	int fired;
};

static struct race race;

static void watch_enable(int on)
{
	int i;

	for (i = 0; i < NWATCH; i++)
		ioctl(watch_fd[i], on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
}

/* The writer's last write, then its close as the daemon publishes it. */
static void race_writer(void)
{
	race.wrote = ipcd_ring_write(&race.wv, race.msg, race.len, ipcd_tid());
	atomic_store(&race.t.r->writers_epoch, (uint64_t)1 << 32);
	race.fired = 1;
}

static void trap_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code != TRAP_PERF)
		return;
	if (++trap_hits != trap_target)
		return;
	watch_enable(0);
	race_writer();
}

/* Returns 0, or -errno when hardware breakpoints are not available. */
static int watch_open(void *const addr[NWATCH])
{
	struct perf_event_attr a;
	struct sigaction sa;
	int i, err;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = trap_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGTRAP, &sa, NULL), 0);
	for (i = 0; i < NWATCH; i++) {
		memset(&a, 0, sizeof(a));
		a.type = PERF_TYPE_BREAKPOINT;
		a.size = sizeof(a);
		a.bp_type = HW_BREAKPOINT_RW;
		a.bp_addr = (uintptr_t)addr[i];
		a.bp_len = HW_BREAKPOINT_LEN_8;
		a.sample_period = 1;
		a.disabled = 1;
		a.exclude_kernel = 1;
		a.exclude_hv = 1;
		a.sigtrap = 1;
		a.remove_on_exec = 1;
		a.sig_data = (uint64_t)i;
		watch_fd[i] = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1,
					   PERF_FLAG_FD_CLOEXEC);
		if (watch_fd[i] < 0) {
			err = errno;
			while (i-- > 0)
				close(watch_fd[i]);
			return -err;
		}
	}
	return 0;
}

static void watch_close(void)
{
	int i;

	for (i = 0; i < NWATCH; i++)
		close(watch_fd[i]);
}

static int race_skip(void)
{
	if (UNDER_TSAN) {
		/* TSan's atomics re-read under its own locks; a handler that
		 * runs ring code there would deadlock the runtime. */
		fprintf(stderr, "check_ring: interleaving tests skipped under TSan\n");
		return 1;
	}
	return 0;
}

typedef void (*race_setup_fn)(struct race *);

/* Run one read per interleaving point; returns how many points there were,
 * or -1 when they cannot be set up (the test then says so and passes). */
static int race_run(race_setup_fn setup, const char *what)
{
	void *addr[NWATCH];
	unsigned char buf[256];
	uint32_t tid = ipcd_tid();
	size_t full;
	ssize_t n;
	int k, rc;

	for (k = 1; k < 100; k++) {
		/* A fresh ring each time, and watchpoints on its words. */
		setup(&race);
		addr[0] = &race.t.r->head;
		addr[1] = &race.t.r->tail;
		addr[2] = &race.t.r->writers_epoch;
		rc = watch_open(addr);
		if (rc < 0) {
			fprintf(stderr, "check_ring: %s: no hardware breakpoints (%s), "
				"interleaving test not run\n", what, strerror(-rc));
			ring_close(&race.t);
			return -1;
		}
		trap_hits = 0;
		trap_target = k;
		race.fired = 0;
		watch_enable(1);
		n = ipcd_ring_read(&race.t.v, buf, sizeof(buf), tid, 0, &full);
		watch_enable(0);
		if (k == 1 && !trap_hits) {
			/* The read loads head and tail: no trap at all means
			 * breakpoints that can be set but never fire (some
			 * virtual machines).  Make sure with a plain store. */
			trap_target = -1;
			watch_enable(1);
			atomic_store(&race.t.r->head, atomic_load(&race.t.r->head));
			watch_enable(0);
			if (!trap_hits) {
				fprintf(stderr, "check_ring: %s: hardware breakpoints are set but "
					"never fire here, interleaving test not run\n", what);
				watch_close();
				ring_close(&race.t);
				return -1;
			}
		}
		watch_close();
		if (!race.fired) {
			ring_close(&race.t);
			break;		/* the read made fewer than k accesses */
		}
		ck_assert_int_eq(race.wrote, (ssize_t)race.len);
		ck_assert_msg(n != IPCD_EOF || load_head(&race.t) == load_tail(&race.t),
			      "%s: writer acted at watched access %d: read returned EOF "
			      "with %llu bytes still in the ring", what, k,
			      (unsigned long long)(load_tail(&race.t) - load_head(&race.t)));
		if (n == -EAGAIN)
			n = ipcd_ring_read(&race.t.v, buf, sizeof(buf), tid, 0, &full);
		ck_assert_msg(n == (ssize_t)race.len, "%s: point %d: read %zd", what, k, n);
		ck_assert_mem_eq(buf, race.msg, race.len);
		ck_assert_int_eq(ipcd_ring_read(&race.t.v, buf, sizeof(buf), tid, 0, &full),
				 IPCD_EOF);
		ring_close(&race.t);
	}
	return k - 1;
}

static void race_setup_stream(struct race *rc)
{
	ring_open(&rc->t, 4096, 0, 0);
	rc->wv = rc->t.v;
	rc->msg = (const unsigned char *)"last words";
	rc->len = 10;
}

static void race_setup_msg(struct race *rc)
{
	ring_open(&rc->t, 4096, IPCD_RING_F_MESSAGE, 100);
	rc->wv = rc->t.v;
	rc->msg = (const unsigned char *)"last words";
	rc->len = 10;
}

/* A lone pad at the head; the writer's last message is empty, at offset 0. */
static void race_setup_pad(struct race *rc)
{
	ring_open(&rc->t, 4096, IPCD_RING_F_MESSAGE, 100);
	rc->wv = rc->t.v;
	set_indexes(&rc->t, 4064, 4096);
	put_rec(&rc->t, 4064, 24, IPCD_REC_PAD);
	rc->msg = (const unsigned char *)"";
	rc->len = 0;
}

static void race_test(race_setup_fn setup, const char *what)
{
	int points;

	if (race_skip())
		return;
	points = race_run(setup, what);
	/* Unless skipped: at least the loads of head, tail and writers_epoch. */
	if (points >= 0)
		ck_assert_int_ge(points, 3);
}

START_TEST(test_race_eof_stream)
{
	race_test(race_setup_stream, "stream");
}
END_TEST

START_TEST(test_race_eof_msg)
{
	race_test(race_setup_msg, "message");
}
END_TEST

START_TEST(test_race_eof_after_pad)
{
	race_test(race_setup_pad, "message after a pad");
}
END_TEST

/* ---- transfers between threads and processes -------------------------- */

#define STREAM_TOTAL	((uint64_t)64 << 20)
#define STREAM_SEED	0x5eed0001u
#define MSG_COUNT	200000u
#define MSG_SEED	0x5eed0002u

static const struct timespec poll_tick = { 0, 200 * 1000 * 1000 };

/* Whether the peer process (if any) is gone before it should be. */
static int peer_gone(pid_t peer)
{
	return peer > 0 && waitpid(peer, NULL, WNOHANG) != 0;
}

/* Sleep for a direction; on a peer process, wake up now and then to check it
 * is still there.  Returns NULL or an error. */
static const char *block(struct ipcd_view *v, unsigned dir, size_t need,
			 uint64_t spin, pid_t peer)
{
	int rc = ipcd_ring_wait(v, dir, need, peer > 0 ? &poll_tick : NULL, spin);

	if (rc == -ETIMEDOUT && peer_gone(peer))
		return "peer process died";
	if (rc != 0 && rc != -ETIMEDOUT)
		return "ipcd_ring_wait failed";
	return NULL;
}

static const char *block_lock(struct ipcd_view *v, enum ipcd_dir dir)
{
	return ipcd_ring_lock_wait(v, dir) == 0 ? NULL : "ipcd_ring_lock_wait failed";
}

/* The writer leaves, as the daemon would publish it. */
static void writer_leaves(struct ipcd_view *v)
{
	uint64_t we = atomic_load(&v->r->writers_epoch);

	atomic_store(&v->r->writers_epoch, we & ~(uint64_t)0xffffffffu);
	ipcd_ring_wake_all(v, IPCD_WAIT_DATA);
}

static const char *produce_stream(struct ipcd_view *v, uint64_t total, size_t maxchunk,
				  uint64_t spin, pid_t peer, char *err)
{
	unsigned char *buf = malloc(maxchunk);
	struct rng g = { STREAM_SEED ^ 0xabcdef };
	uint32_t tid = ipcd_tid();
	uint64_t pos = 0;
	const char *e = NULL;
	size_t len, off;
	ssize_t n;

	if (!buf)
		return "malloc";
	while (pos < total && !e) {
		len = 1 + rng_below(&g, maxchunk);
		if (len > total - pos)
			len = total - pos;
		stream_fill(STREAM_SEED, pos, buf, len);
		for (off = 0; off < len && !e;) {
			n = ipcd_ring_write(v, buf + off, len - off, tid);
			if (n > 0) {
				if (len - off <= PIPE_BUF && (size_t)n != len - off) {
					snprintf(err, ERRLEN, "write of %zu <= PIPE_BUF took %zd",
						 len - off, n);
					e = err;
				}
				off += (size_t)n;
			} else if (n == -EAGAIN) {
				e = block(v, IPCD_WAIT_SPACE, ipcd_ring_need(v, len - off), spin,
					  peer);
			} else if (n == -EBUSY) {
				e = block_lock(v, IPCD_WAIT_SPACE);
			} else {
				snprintf(err, ERRLEN, "write at %llu: %zd",
					 (unsigned long long)(pos + off), n);
				e = err;
			}
		}
		pos += len;
	}
	free(buf);
	if (!e)
		writer_leaves(v);
	return e;
}

static const char *consume_stream(struct ipcd_view *v, uint64_t total, size_t maxchunk,
				  uint64_t spin, pid_t peer, char *err)
{
	unsigned char *buf = malloc(maxchunk), *scratch = malloc(maxchunk);
	struct rng g = { STREAM_SEED ^ 0x123456 };
	uint32_t tid = ipcd_tid();
	uint64_t pos = 0;
	const char *e = NULL;
	size_t len, bad;
	ssize_t n;

	if (!buf || !scratch)
		return "malloc";
	while (!e) {
		len = 1 + rng_below(&g, maxchunk);
		n = ipcd_ring_read(v, buf, len, tid, 0, NULL);
		if (n > 0) {
			bad = stream_diff(STREAM_SEED, pos, buf, (size_t)n, scratch);
			if (bad != (size_t)n || (uint64_t)n > total - pos) {
				snprintf(err, ERRLEN, "wrong byte at stream offset %llu",
					 (unsigned long long)(pos + bad));
				e = err;
			}
			pos += (uint64_t)n;
		} else if (n == -EAGAIN) {
			e = block(v, IPCD_WAIT_DATA, 0, spin, peer);
		} else if (n == -EBUSY) {
			e = block_lock(v, IPCD_WAIT_DATA);
		} else if (n == IPCD_EOF) {
			if (pos != total) {
				snprintf(err, ERRLEN, "EOF after %llu of %llu bytes",
					 (unsigned long long)pos, (unsigned long long)total);
				e = err;
			}
			break;
		} else {
			snprintf(err, ERRLEN, "read at %llu: %zd", (unsigned long long)pos, n);
			e = err;
		}
	}
	free(buf);
	free(scratch);
	return e;
}

static const char *produce_msgs(struct ipcd_view *v, uint32_t count, uint64_t spin,
				pid_t peer, char *err)
{
	unsigned char *buf = malloc(v->msg_max);
	uint32_t tid = ipcd_tid(), seq;
	const char *e = NULL;
	size_t len;
	ssize_t n;

	if (!buf)
		return "malloc";
	for (seq = 0; seq < count && !e; seq++) {
		len = msg_len(MSG_SEED, seq, v->msg_max);
		msg_fill(buf, seq, len);
		for (;;) {
			n = ipcd_ring_write(v, buf, len, tid);
			if (n == (ssize_t)len)
				break;
			if (n == -EAGAIN) {
				e = block(v, IPCD_WAIT_SPACE, ipcd_ring_need(v, len), spin, peer);
			} else if (n == -EBUSY) {
				e = block_lock(v, IPCD_WAIT_SPACE);
			} else {
				snprintf(err, ERRLEN, "write of message %u (%zu bytes): %zd",
					 seq, len, n);
				e = err;
			}
			if (e)
				break;
		}
	}
	free(buf);
	if (!e)
		writer_leaves(v);
	return e;
}

static const char *consume_msgs(struct ipcd_view *v, uint32_t count, uint64_t spin,
				pid_t peer, char *err)
{
	unsigned char *buf = malloc(v->msg_max);
	uint32_t tid = ipcd_tid(), seq = 0;
	const char *e = NULL;
	size_t len, full;
	ssize_t n;

	if (!buf)
		return "malloc";
	while (!e) {
		n = ipcd_ring_read(v, buf, v->msg_max, tid, 0, &full);
		if (n >= 0) {
			len = msg_len(MSG_SEED, seq, v->msg_max);
			if (seq >= count || (size_t)n != len || full != len ||
			    !msg_check(buf, seq, len)) {
				snprintf(err, ERRLEN, "message %u: got %zd bytes (full %zu), "
					 "want %zu, or wrong content", seq, n, full, len);
				e = err;
			}
			seq++;
		} else if (n == -EAGAIN) {
			e = block(v, IPCD_WAIT_DATA, 0, spin, peer);
		} else if (n == -EBUSY) {
			e = block_lock(v, IPCD_WAIT_DATA);
		} else if (n == IPCD_EOF) {
			if (seq != count) {
				snprintf(err, ERRLEN, "EOF after %u of %u messages", seq, count);
				e = err;
			}
			break;
		} else {
			snprintf(err, ERRLEN, "read of message %u: %zd", seq, n);
			e = err;
		}
	}
	free(buf);
	return e;
}

struct side {
	struct ipcd_view v;
	int msgs;
	uint64_t spin;
	const char *e;
	char err[ERRLEN];
};

static void *producer_main(void *arg)
{
	struct side *s = arg;

	s->e = s->msgs ? produce_msgs(&s->v, MSG_COUNT, s->spin, 0, s->err)
		       : produce_stream(&s->v, STREAM_TOTAL, 3 * PIPE_BUF, s->spin, 0, s->err);
	return NULL;
}

static void spsc_threads(uint64_t cap, int msgs, uint32_t msg_max)
{
	struct tring t;
	struct side *p = calloc(1, sizeof(*p));
	const char *e;
	char err[ERRLEN];
	pthread_t th;

	ck_assert_ptr_nonnull(p);
	ring_open(&t, cap, msgs ? IPCD_RING_F_MESSAGE : 0, msg_max);
	ck_assert_int_eq(ipcd_view_attach(&p->v, t.map, t.len), 0);
	p->msgs = msgs;
	p->spin = 0;		/* the producer always goes to sleep */
	ck_assert_int_eq(pthread_create(&th, NULL, producer_main, p), 0);
	e = msgs ? consume_msgs(&t.v, MSG_COUNT, 20000, 0, err)
		 : consume_stream(&t.v, STREAM_TOTAL, 3 * PIPE_BUF, 20000, 0, err);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(p->e == NULL, "producer: %s", p->e);
	ck_assert_msg(e == NULL, "consumer: %s", e);
	ck_assert_uint_eq(atomic_load(&t.r->rd_sleepers), 0);
	ck_assert_uint_eq(atomic_load(&t.r->wr_sleepers), 0);
	ck_assert_uint_eq(load_head(&t), load_tail(&t));
	free(p);
	ring_close(&t);
}

START_TEST(test_spsc_stream_threads)
{
	spsc_threads(16384, 0, 0);
}
END_TEST

START_TEST(test_spsc_msg_threads)
{
	spsc_threads(16384, 1, 3000);
}
END_TEST

static void spsc_procs(int msgs)
{
	struct tring t;
	char err[ERRLEN];
	const char *e;
	pid_t parent = getpid(), pid;
	int st;

	ring_open(&t, msgs ? 16384 : 4096, msgs ? IPCD_RING_F_MESSAGE : 0,
		  msgs ? 3000 : 0);
	ck_assert_uint_eq(ipcd_tid(), (uint32_t)parent);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct ipcd_view v;

		child_setup(parent);
		/* The cached thread id is refreshed in the child. */
		if (ipcd_tid() != (uint32_t)getpid())
			_exit(3);
		if (ipcd_view_attach(&v, t.map, t.len) != 0)
			_exit(4);
		/* Child produces a stream, or consumes messages. */
		e = msgs ? consume_msgs(&v, MSG_COUNT, 0, parent, err)
			 : produce_stream(&v, STREAM_TOTAL, 3 * PIPE_BUF, 20000, parent, err);
		if (e) {
			fprintf(stderr, "check_ring child: %s\n", e);
			_exit(1);
		}
		_exit(0);
	}
	e = msgs ? produce_msgs(&t.v, MSG_COUNT, 20000, pid, err)
		 : consume_stream(&t.v, STREAM_TOTAL, 3 * PIPE_BUF, 0, pid, err);
	if (e)
		kill(pid, SIGKILL);
	st = wait_child(pid, 60000);
	ck_assert_msg(e == NULL, "parent: %s", e);
	ck_assert_msg(st != -1, "child did not finish");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed: status %#x", st);
	ck_assert_uint_eq(load_head(&t), load_tail(&t));
	ring_close(&t);
}

START_TEST(test_spsc_stream_procs)
{
	spsc_procs(0);
}
END_TEST

START_TEST(test_spsc_msg_procs)
{
	spsc_procs(1);
}
END_TEST

/* Two producers, writes of at most PIPE_BUF: each one a record tagged with
 * its producer and sequence number, which must come out whole and in order. */
#define MP_RECS		60000u
#define MP_HDR		8u

static size_t mp_len(unsigned id, uint32_t seq)
{
	uint64_t h = mix64(((uint64_t)id << 40) ^ seq ^ 0x77);

	if ((h & 31) == 0)
		return (h >> 8) & 1 ? PIPE_BUF : PIPE_BUF - (h >> 9) % 512;
	return MP_HDR + (h >> 8) % 300;
}

static unsigned char mp_byte(unsigned id, uint32_t seq, size_t i)
{
	return (unsigned char)(id * 101u + seq * 7u + i * 13u + (i >> 8));
}

struct mp_producer {
	struct ipcd_view v;
	struct ipcd_view *vp;	/* the view written through: v, or a shared one */
	unsigned id;
	const char *e;
	char err[ERRLEN];
};

static void *mp_producer_main(void *arg)
{
	struct mp_producer *p = arg;
	unsigned char buf[PIPE_BUF];
	uint32_t tid = ipcd_tid(), seq;
	uint16_t len16, id16 = (uint16_t)p->id;
	size_t len, i;
	ssize_t n;

	for (seq = 0; seq < MP_RECS && !p->e; seq++) {
		len = mp_len(p->id, seq);
		len16 = (uint16_t)len;
		memcpy(buf, &len16, 2);
		memcpy(buf + 2, &id16, 2);
		memcpy(buf + 4, &seq, 4);
		for (i = MP_HDR; i < len; i++)
			buf[i] = mp_byte(p->id, seq, i);
		for (;;) {
			n = ipcd_ring_write(p->vp, buf, len, tid);
			if (n == (ssize_t)len)
				break;
			if (n == -EAGAIN) {
				p->e = block(p->vp, IPCD_WAIT_SPACE, ipcd_ring_need(p->vp, len),
					     (seq & 1) ? 5000 : 0, 0);
			} else if (n == -EBUSY) {
				p->e = block_lock(p->vp, IPCD_WAIT_SPACE);
			} else {
				snprintf(p->err, ERRLEN, "producer %u: write of %zu: %zd",
					 p->id, len, n);
				p->e = p->err;
			}
			if (p->e)
				break;
		}
	}
	return NULL;
}

struct mp_consumer {
	struct ipcd_view *v;
	uint32_t next[2];
	const char *e;
	char err[ERRLEN];
};

static void *mp_consumer_main(void *arg)
{
	struct mp_consumer *c = arg;
	unsigned char acc[2 * PIPE_BUF];
	struct rng g = { 99 };
	uint32_t tid = ipcd_tid(), seq;
	uint16_t len16, id16;
	size_t have = 0, off, i, room;
	ssize_t n;

	while (!c->e) {
		room = sizeof(acc) - have;
		n = ipcd_ring_read(c->v, acc + have, 1 + rng_below(&g, room), tid, 0, NULL);
		if (n == -EAGAIN) {
			c->e = block(c->v, IPCD_WAIT_DATA, 0, 2000, 0);
			continue;
		}
		if (n == -EBUSY) {
			c->e = block_lock(c->v, IPCD_WAIT_DATA);
			continue;
		}
		if (n == IPCD_EOF)
			break;
		if (n < 0) {
			snprintf(c->err, ERRLEN, "read: %zd", n);
			c->e = c->err;
			break;
		}
		have += (size_t)n;
		for (off = 0; have - off >= MP_HDR && !c->e;) {
			memcpy(&len16, acc + off, 2);
			memcpy(&id16, acc + off + 2, 2);
			memcpy(&seq, acc + off + 4, 4);
			if (len16 < MP_HDR || len16 > PIPE_BUF || id16 > 1 ||
			    seq != c->next[id16] || len16 != mp_len(id16, seq)) {
				snprintf(c->err, ERRLEN, "torn or out-of-order record: len %u "
					 "id %u seq %u (next %u/%u)", len16, id16, seq,
					 c->next[0], c->next[1]);
				c->e = c->err;
				break;
			}
			if (have - off < len16)
				break;
			for (i = MP_HDR; i < len16; i++) {
				if (acc[off + i] != mp_byte(id16, seq, i)) {
					snprintf(c->err, ERRLEN, "record %u/%u: bad byte %zu",
						 id16, seq, i);
					c->e = c->err;
					break;
				}
			}
			c->next[id16]++;
			off += len16;
		}
		memmove(acc, acc + off, have - off);
		have -= off;
	}
	if (!c->e && (have != 0 || c->next[0] != MP_RECS || c->next[1] != MP_RECS)) {
		snprintf(c->err, ERRLEN, "at EOF: %zu bytes left, records %u and %u of %u",
			 have, c->next[0], c->next[1], MP_RECS);
		c->e = c->err;
	}
	return NULL;
}

/* shared: both producers and the consumer use one view, as the threads of
 * a process that share a channel end do; else each producer has its own. */
static void mpsc(bool shared)
{
	struct tring t;
	struct mp_producer *p = calloc(2, sizeof(*p));
	struct mp_consumer *c = calloc(1, sizeof(*c));
	pthread_t pt[2], ct;
	unsigned i;

	ck_assert(p && c);
	ring_open(&t, 16384, 0, 0);
	c->v = &t.v;
	ck_assert_int_eq(pthread_create(&ct, NULL, mp_consumer_main, c), 0);
	for (i = 0; i < 2; i++) {
		p[i].id = i;
		p[i].vp = shared ? &t.v : &p[i].v;
		ck_assert_int_eq(ipcd_view_attach(&p[i].v, t.map, t.len), 0);
		ck_assert_int_eq(pthread_create(&pt[i], NULL, mp_producer_main, &p[i]), 0);
	}
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(pt[i], NULL), 0);
	writer_leaves(&t.v);
	ck_assert_int_eq(pthread_join(ct, NULL), 0);
	for (i = 0; i < 2; i++)
		ck_assert_msg(p[i].e == NULL, "%s", p[i].e);
	ck_assert_msg(c->e == NULL, "consumer: %s", c->e);
	ck_assert_uint_eq(atomic_load(&t.r->wlock), 0);
	ck_assert_uint_eq(atomic_load(&t.r->rlock), 0);
	free(p);
	free(c);
	ring_close(&t);
}

START_TEST(test_mpsc_atomic_writes)
{
	mpsc(false);
}
END_TEST

START_TEST(test_mpsc_shared_view)
{
	mpsc(true);
}
END_TEST

/* ---- the suite -------------------------------------------------------- */

static Suite *ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc;

	tc = tcase_create("abi");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_map_size);
	tcase_add_test(tc, test_format_rejects);
	tcase_add_test(tc, test_format_layout);
	tcase_add_test(tc, test_attach_rejects);
	tcase_add_test(tc, test_attach_view);
	suite_add_tcase(s, tc);

	tc = tcase_create("stream");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_stream_empty);
	tcase_add_test(tc, test_stream_roundtrip);
	tcase_add_test(tc, test_stream_wrap_exact);
	tcase_add_test(tc, test_stream_wrap_random);
	tcase_add_test(tc, test_stream_full);
	tcase_add_test(tc, test_stream_pipe_buf);
	tcase_add_test(tc, test_stream_epipe);
	tcase_add_test(tc, test_stream_eof);
	tcase_add_test(tc, test_stream_eof_generation);
	tcase_add_test(tc, test_stream_peek);
	tcase_add_test(tc, test_stream_peek_consume);
	tcase_add_test(tc, test_counter_wrap);
	suite_add_tcase(s, tc);

	tc = tcase_create("message");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_msg_boundaries);
	tcase_add_test(tc, test_msg_truncate);
	tcase_add_test(tc, test_msg_emsgsize);
	tcase_add_test(tc, test_msg_pad);
	tcase_add_test(tc, test_msg_pad_alone);
	tcase_add_test(tc, test_msg_pad_no_room);
	tcase_add_test(tc, test_msg_max_size);
	tcase_add_test(tc, test_msg_random);
	tcase_add_test(tc, test_msg_eof);
	tcase_add_test(tc, test_msg_readable_lone_pad);
	tcase_add_test(tc, test_msg_peek_consume);
	suite_add_tcase(s, tc);

	tc = tcase_create("corruption");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_corrupt_indexes);
	tcase_add_test(tc, test_corrupt_records);
	tcase_add_test(tc, test_corrupt_readable_agrees);
	tcase_add_test(tc, test_corrupt_broken);
	tcase_add_test(tc, test_corrupt_lock_tid);
	tcase_add_test(tc, test_corrupt_unaligned_write);
	tcase_add_test(tc, test_corrupt_unaligned_read);
	tcase_add_test(tc, test_corrupt_unaligned_readable);
	tcase_add_test(tc, test_corrupt_fuzz);
	suite_add_tcase(s, tc);

	tc = tcase_create("locks");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_lock_dead_owner);
	tcase_add_test(tc, test_lock_wait_dead_owner);
	tcase_add_test(tc, test_lock_live_owner);
	tcase_add_test(tc, test_lock_waiters_bit_only);
	tcase_add_test(tc, test_daemon_alive);
	suite_add_tcase(s, tc);

	tc = tcase_create("wait");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_wait_timeout);
	tcase_add_test(tc, test_wait_ready);
	tcase_add_test(tc, test_wait_wakes_reader);
	tcase_add_test(tc, test_wait_wakes_writer);
	tcase_add_test(tc, test_wait_pair);
	tcase_add_test(tc, test_wait_sigwatch);
	suite_add_tcase(s, tc);

	tc = tcase_create("interleavings");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_race_eof_stream);
	tcase_add_test(tc, test_race_eof_msg);
	tcase_add_test(tc, test_race_eof_after_pad);
	suite_add_tcase(s, tc);

	tc = tcase_create("transfer");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_spsc_stream_threads);
	tcase_add_test(tc, test_spsc_msg_threads);
	tcase_add_test(tc, test_spsc_stream_procs);
	tcase_add_test(tc, test_spsc_msg_procs);
	tcase_add_test(tc, test_mpsc_atomic_writes);
	tcase_add_test(tc, test_mpsc_shared_view);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ring_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
