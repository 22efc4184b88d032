/*
 * check_coord.c - unit tests of coordination by queues (core/coord_queues.c):
 * the layout of a channel of queues, writers that never share a ring,
 * readers that take turns by claims, and what stopped, killed and dead
 * threads leave behind.  Threads and forked processes share one mapping,
 * as processes share a channel's.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coord.h"
#include "coordtest.h"

/* ---- helpers ------------------------------------------------------------------ */

struct tq {
	unsigned char *map;
	size_t len;
	struct ipcd_qset s;	/* side 0 */
};

static void peers(struct tq *t, uint32_t readers, uint32_t writers, uint32_t epoch)
{
	unsigned i;

	for (i = 0; i < t->s.n; i++) {
		atomic_store(&t->s.q[i].r->readers, readers);
		atomic_store(&t->s.q[i].r->writers_epoch, (uint64_t)epoch << 32 | writers);
	}
}

static void tq_open(struct tq *t, uint64_t cap, uint32_t features, unsigned nq)
{
	unsigned i;

	memset(t, 0, sizeof(*t));
	t->len = ipcd_map_len_coord(cap, features, IPCD_COORD_QUEUES, nq);
	ck_assert_uint_ne(t->len, 0);
	t->map = mmap(NULL, t->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(t->map, MAP_FAILED);
	ck_assert_int_eq(ipcd_map_format(t->map, t->len, cap, features,
					 (features & IPCD_RING_F_MESSAGE) ? (uint32_t)cap - 8 : 0,
					 IPCD_COORD_QUEUES, nq), 0);
	ck_assert_int_eq(ipcd_qset_attach(&t->s, t->map, t->len, 0), 0);
	peers(t, 1, 1, 1);
	for (i = 0; i < t->s.n; i++)
		t->s.q[i].eof_epoch = 1;
}

static void tq_close(struct tq *t)
{
	munmap(t->map, t->len);
}

static uint32_t me(void)
{
	return ipcd_tid();
}

/* ---- layout --------------------------------------------------------------------- */

START_TEST(test_layout)
{
	struct tq t;
	const struct ipcd_map *m;
	const struct ipcd_ring_desc *d;
	struct ipcd_qset other;
	unsigned i;

	tq_open(&t, 8192, 0, 4);
	m = (const struct ipcd_map *)t.map;
	ck_assert_uint_eq(m->coord, IPCD_COORD_QUEUES);
	ck_assert_uint_eq(m->nqueues, 4);
	ck_assert_uint_eq(m->nrings, 4);
	ck_assert_uint_ge(m->nrslots, 4);
	ck_assert_uint_eq(m->rslot_off % 64, 0);
	ck_assert_uint_le(m->rslot_off + m->nrslots * 64, m->hdr_area);
	ck_assert_uint_eq(m->map_size, t.len);
	ck_assert_uint_eq(t.len, m->hdr_area + 4 * 8192);
	for (i = 0; i < 4; i++) {
		d = ipcd_map_desc(t.map, t.len, IPCD_ROLE(0, i), NULL);
		ck_assert_ptr_nonnull(d);
		/* A stream channel's queues hold records all the same. */
		ck_assert_uint_eq(d->kind, IPCD_RING_KIND_RECORDS);
		ck_assert_uint_ge(d->data_off, m->hdr_area);
		ck_assert_uint_eq(t.s.q[i].msg_max, 8192 - 8);
		ck_assert(t.s.q[i].features & IPCD_RING_F_MESSAGE);
	}
	ck_assert_ptr_null(ipcd_map_desc(t.map, t.len, IPCD_ROLE(0, 4), NULL));
	ck_assert_ptr_null(ipcd_map_desc(t.map, t.len, IPCD_ROLE(1, 0), NULL));
	ck_assert(t.s.stream);
	tq_close(&t);

	/* Duplex: each side its queues. */
	tq_open(&t, 4096, IPCD_RING_F_DUPLEX | IPCD_RING_F_MESSAGE, 3);
	m = (const struct ipcd_map *)t.map;
	ck_assert_uint_eq(m->nrings, 6);
	ck_assert_int_eq(ipcd_qset_attach(&other, t.map, t.len, 1), 0);
	ck_assert_ptr_ne(other.q[0].r, t.s.q[0].r);
	ck_assert(!other.stream);
	tq_close(&t);

	/* Not a channel of queues. */
	{
		size_t len = ipcd_map_len(4096, 0);
		void *map = calloc(1, len);

		ck_assert_int_eq(ipcd_ring_format(map, len, 4096, 0, 0), 0);
		ck_assert_int_eq(ipcd_qset_attach(&other, map, len, 0), -EINVAL);
		free(map);
	}
	/* Invalid counts. */
	ck_assert_uint_eq(ipcd_map_len_coord(4096, 0, IPCD_COORD_QUEUES, 0), 0);
	ck_assert_uint_eq(ipcd_map_len_coord(4096, 0, IPCD_COORD_QUEUES, IPCD_QUEUES_MAX + 1), 0);
	ck_assert_uint_eq(ipcd_map_len_coord(4096, 0, IPCD_COORD_LOCK, 2), 0);
	ck_assert_uint_eq(ipcd_map_len_coord(4096, 0, IPCD_COORD_MAX + 1, 0), 0);
}
END_TEST

START_TEST(test_directory_rejects)
{
	struct tq t;
	struct ipcd_map *m;
	struct ipcd_view v;
	unsigned char *save;

	tq_open(&t, 4096, 0, 2);
	m = (struct ipcd_map *)t.map;
	save = malloc(m->hdr_area);
	memcpy(save, t.map, m->hdr_area);
#define RESTORE() memcpy(t.map, save, m->hdr_area)
#define REFUSED() ck_assert_int_eq(ipcd_view_attach(&v, t.map, t.len), -EIO)
	m->nqueues = 3;		/* more than the rings listed */
	REFUSED();
	RESTORE();
	m->nqueues = 0;
	REFUSED();
	RESTORE();
	m->coord = IPCD_COORD_LOCK;	/* queues without the coordination */
	REFUSED();
	RESTORE();
	m->nrslots = 0;
	REFUSED();
	m->nrslots = IPCD_RSLOTS_MAX + 1;
	REFUSED();
	RESTORE();
	m->rslot_off = 8;		/* on the directory */
	REFUSED();
	m->rslot_off = (uint32_t)m->hdr_area - 64;	/* past the header area */
	REFUSED();
	m->rslot_off += 1;
	REFUSED();
	RESTORE();
	/* A stream channel's queue entry that says bytes. */
	((struct ipcd_ring_desc *)(t.map + m->desc_off))[1].kind = IPCD_RING_KIND_BYTES;
	REFUSED();
	RESTORE();
	/* Queue index out of range. */
	((struct ipcd_ring_desc *)(t.map + m->desc_off))[1].role = IPCD_ROLE(0, 2);
	REFUSED();
	RESTORE();
	ck_assert_int_eq(ipcd_view_attach(&v, t.map, t.len), 0);
#undef REFUSED
#undef RESTORE
	free(save);
	tq_close(&t);
}
END_TEST

/* ---- one thread ------------------------------------------------------------------ */

START_TEST(test_stream_basic)
{
	struct tq t;
	char out[64];
	size_t full;
	uint32_t a = me(), b = (uint32_t)getppid();

	tq_open(&t, 4096, 0, 4);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EAGAIN);
	ck_assert_int_eq(ipcd_qset_can_read(&t.s), 0);
	/* Two writers, each its own queue. */
	ck_assert_int_eq(ipcd_qset_write(&t.s, "AAAA", 4, a), 4);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, 3, a, 0, &full), 3);
	ck_assert_mem_eq(out, "AAA", 3);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "bb", 2, b), 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "AA", 2, a), 2);
	ck_assert_ptr_nonnull(ipcd_qset_wq(&t.s, a));
	ck_assert_ptr_ne(ipcd_qset_wq(&t.s, a), ipcd_qset_wq(&t.s, b));
	ck_assert_uint_eq(atomic_load(&ipcd_qset_wq(&t.s, a)->r->owner), a);
	ck_assert_int_eq(ipcd_qset_can_read(&t.s), 1);
	/* The records' payload, less the 3 bytes already read. */
	ck_assert_int_eq(ipcd_qset_queued(&t.s), 4 - 3 + 2 + 2);
	/* The rest of the write a read stopped in comes next, whatever the
	 * order of the queues, then that writer's next write: a read takes
	 * one writer's bytes only. */
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 3);
	ck_assert_mem_eq(out, "AAA", 3);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, IPCD_IO_PEEK, &full), 2);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 2);
	ck_assert_mem_eq(out, "bb", 2);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EAGAIN);
	/* Writers gone: end of file once every queue is empty. */
	ck_assert_int_eq(ipcd_qset_write(&t.s, "z", 1, b), 1);
	peers(&t, 1, 0, 1);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 1);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), IPCD_EOF);
	ck_assert_int_eq(ipcd_qset_can_read(&t.s), 1);
	/* No reader: EPIPE. */
	peers(&t, 0, 1, 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "x", 1, a), -EPIPE);
	tq_close(&t);
}
END_TEST

START_TEST(test_message_basic)
{
	struct tq t;
	char out[64];
	size_t full;
	uint32_t a = me();

	tq_open(&t, 4096, IPCD_RING_F_MESSAGE, 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "one", 3, a), 3);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "", 0, a), 0);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "three", 5, a), 5);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 3);
	ck_assert_uint_eq(full, 3);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 0);
	/* Cut to the buffer; the rest is gone, as for a datagram. */
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, 2, a, 0, &full), 2);
	ck_assert_uint_eq(full, 5);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EAGAIN);
	ck_assert_int_eq(ipcd_qset_write(&t.s, out, 4096, a), -EMSGSIZE);
	tq_close(&t);
}
END_TEST

/* Reading in place: a record of one queue, the reader inside it until it
 * consumes (another reader passes that queue by), a stream's record
 * consumed in parts, then the other writer's; a message whole. */
START_TEST(test_peek)
{
	struct tq t;
	struct ipcd_span sp[2];
	char out[64];
	size_t full;
	uint32_t a = me(), b = (uint32_t)getppid();
	ssize_t n;

	tq_open(&t, 4096, 0, 4);
	ck_assert_int_eq(ipcd_qset_peek(&t.s, sp, a), -EAGAIN);
	ck_assert_int_eq(ipcd_qset_consume(&t.s, 0), -EINVAL);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "hello", 5, a), 5);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "xy", 2, b), 2);
	n = ipcd_qset_peek(&t.s, sp, a);
	ck_assert(n == 5 || n == 2);
	ck_assert_uint_eq(sp[1].n, 0);
	ck_assert_int_eq(ipcd_qset_peek(&t.s, sp, a), -EALREADY);
	if (n == 2) {	/* b's queue came first: take it whole */
		ck_assert_int_eq(memcmp(sp[0].p, "xy", 2), 0);
		ck_assert_int_eq(ipcd_qset_consume(&t.s, 2), 0);
		ck_assert_int_eq(ipcd_qset_peek(&t.s, sp, a), 5);
	}
	ck_assert_int_eq(memcmp(sp[0].p, "hello", 5), 0);
	/* Another reader meanwhile takes what is in the other queues only. */
	if (n == 5)
		ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), b, 0, &full), 2);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), b, 0, &full), -EBUSY);
	ck_assert_int_eq(ipcd_qset_consume(&t.s, 6), -EINVAL);
	ck_assert_int_eq(ipcd_qset_consume(&t.s, 2), 0);
	ck_assert_int_eq(ipcd_qset_peek(&t.s, sp, a), 3);
	ck_assert_int_eq(memcmp(sp[0].p, "llo", 3), 0);
	ck_assert_int_eq(ipcd_qset_consume(&t.s, 3), 0);
	ck_assert_int_eq(ipcd_qset_peek(&t.s, sp, a), -EAGAIN);
	ck_assert_int_eq(ipcd_qset_queued(&t.s), 0);
	tq_close(&t);

	tq_open(&t, 4096, IPCD_RING_F_MESSAGE, 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "one", 3, a), 3);
	ck_assert_int_eq(ipcd_qset_peek(&t.s, sp, a), 3);
	ck_assert_int_eq(ipcd_qset_consume(&t.s, 2), -EINVAL);
	ck_assert_int_eq(ipcd_qset_consume(&t.s, 0), 0);	/* left: it comes again */
	ck_assert_int_eq(ipcd_qset_peek(&t.s, sp, a), 3);
	ck_assert_int_eq(ipcd_qset_consume(&t.s, 1), 0);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EAGAIN);
	tq_close(&t);
}
END_TEST

/* Records wrap around the data area and pad to its end; a stream write
 * longer than PIPE_BUF takes what fits, a shorter one all or nothing. */
START_TEST(test_wrap_and_full)
{
	struct tq t;
	unsigned char in[8192], out[8192];
	size_t full, got, i;
	uint32_t a = me();
	ssize_t n;

	tq_open(&t, 8192, 0, 1);
	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7);
	for (i = 0; i < 200; i++) {
		n = ipcd_qset_write(&t.s, in, 100 + i * 13 % 900, a);
		ck_assert_int_eq(n, 100 + i * 13 % 900);
		got = 0;
		while (got < (size_t)n) {
			ssize_t k = ipcd_qset_read(&t.s, out + got, (size_t)n - got, a, 0, &full);

			ck_assert_int_gt(k, 0);
			got += (size_t)k;
		}
		ck_assert_mem_eq(out, in, (size_t)n);
	}
	tq_close(&t);
	/* Full: a short write waits whole, a long one takes what fits. */
	tq_open(&t, 8192, 0, 1);
	n = ipcd_qset_write(&t.s, in, 6000, a);
	ck_assert_int_eq(n, 6000);
	n = ipcd_qset_write(&t.s, in, 8000, a);
	ck_assert_int_eq(n, 8192 - 6008 - 8);	/* all the room, one record */
	ck_assert_int_eq(ipcd_qset_write(&t.s, in, 4096, a), -EAGAIN);
	ck_assert_int_eq(ipcd_qset_write(&t.s, in, 1, a), -EAGAIN);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 6000 + n);
	ck_assert_mem_eq(out, in, 6000);
	ck_assert_mem_eq(out + 6000, in, (size_t)n);
	tq_close(&t);
	/* A write longer than PIPE_BUF may be cut even where its record
	 * (at most the capacity less 8) would not be longer than PIPE_BUF. */
	tq_open(&t, 4096, 0, 1);
	ck_assert_int_eq(ipcd_qset_write(&t.s, in, 4000, a), 4000);
	ck_assert_int_eq(ipcd_qset_write(&t.s, in, 8192, a), 4096 - 4008 - 8);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 4000 + 80);
	tq_close(&t);
}
END_TEST

START_TEST(test_queues_run_out)
{
	struct tq t;
	uint32_t a = me(), b = (uint32_t)getppid(), gone = dead_tid();

	tq_open(&t, 4096, 0, 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "a", 1, a), 1);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "b", 1, b), 1);
	/* Every queue has a live owner: through the daemon instead. */
	ck_assert_int_eq(ipcd_qset_write(&t.s, "c", 1, 1), -ENOSPC);
	/* A dead owner's queue is taken over, with what it wrote kept. */
	atomic_store(&t.s.q[1].r->owner, gone);
	atomic_store(&t.s.q[0].r->owner, a);
	{
		struct ipcd_qset s2 = t.s;

		atomic_store(&s2.wcache, 0);
		ck_assert_int_eq(ipcd_qset_write(&s2, "c", 1, 1), 1);
		ck_assert_uint_eq(atomic_load(&t.s.q[1].r->owner), 1);
	}
	/* Given back with records of a in it, a queue stays a's: what a
	 * writes next must not be read before them.  Once read, it is free. */
	ck_assert_int_eq(ipcd_qset_write(&t.s, "a", 1, a), 1);
	ipcd_qset_release(&t.s, a);
	ck_assert_uint_eq(atomic_load(&t.s.q[0].r->owner), a);
	{
		char out[8];
		size_t full;

		while (ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full) > 0)
			;
	}
	ipcd_qset_release(&t.s, a);
	ck_assert_uint_eq(atomic_load(&t.s.q[0].r->owner), 0);
	atomic_store(&t.s.q[0].r->owner, gone);
	ck_assert_uint_eq(ipcd_qset_reap(&t.s), 1);
	ck_assert_uint_eq(atomic_load(&t.s.q[0].r->owner), 0);
	tq_close(&t);
}
END_TEST

/* Claims: a reader inside a queue keeps others out of it; outside, its
 * claim is taken over; a dead reader's is passed over. */
START_TEST(test_claims)
{
	struct tq t;
	char out[16];
	size_t full;
	uint32_t a = me(), b = (uint32_t)getppid(), gone = dead_tid(), c;
	unsigned sa;

	tq_open(&t, 4096, IPCD_RING_F_MESSAGE, 1);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "m1", 2, a), 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "m2", 2, a), 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "m3", 2, a), 2);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 2);
	c = atomic_load(&t.s.q[0].r->rclaim);
	ck_assert_uint_ne(c, 0);
	sa = c - 1;
	ck_assert_uint_eq(atomic_load(&t.s.rs[sa].tid), a);
	ck_assert_uint_eq(atomic_load(&t.s.rs[sa].inside), 0);
	/* a is outside: b takes the claim over and reads. */
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), b, 0, &full), 2);
	ck_assert_mem_eq(out, "m2", 2);
	ck_assert_uint_ne(atomic_load(&t.s.q[0].r->rclaim), c);
	/* a inside (as if stopped there): b keeps out, and says so. */
	atomic_store(&t.s.q[0].r->rclaim, c);
	atomic_store(&t.s.rs[sa].inside, IPCD_ROLE(0, 0) + 1);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), b, 0, &full), -EBUSY);
	ck_assert_uint_eq(atomic_load(&t.s.q[0].r->rclaim), c);	/* given back */
	ck_assert_int_eq(ipcd_qset_can_read(&t.s), 1);
	/* Its thread dies there: passed over. */
	atomic_store(&t.s.rs[sa].tid, gone);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), b, 0, &full), 2);
	ck_assert_mem_eq(out, "m3", 2);
	/* The reaper frees the dead's slot. */
	ck_assert_uint_ge(ipcd_qset_reap(&t.s), 1);
	ck_assert_uint_eq(atomic_load(&t.s.rs[sa].tid), 0);
	/* Given back, slots and claims are free. */
	ipcd_qset_release(&t.s, b);
	ck_assert_uint_eq(atomic_load(&t.s.q[0].r->rclaim), 0);
	tq_close(&t);
}
END_TEST

START_TEST(test_corrupt)
{
	struct tq t;
	char out[64];
	size_t full;
	uint32_t a = me();
	struct ipcd_view *w;

	tq_open(&t, 4096, 0, 2);
	atomic_store(&t.s.q[1].r->tail, 8192);		/* more than its capacity */
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EIO);
	atomic_store(&t.s.q[1].r->tail, 12);		/* not a record's end */
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EIO);
	/* A record that lies about its length. */
	atomic_store(&t.s.q[1].r->tail, 16);
	memcpy(t.s.q[1].data, &(struct ipcd_ring_rec){ 3000, 0 }, 8);
	ck_assert_int_eq(ipcd_ring_take_owned(&t.s.q[1], out, sizeof(out), 0, &full, true),
			 -EIO);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EIO);
	atomic_store(&t.s.q[1].r->tail, 0);
	/* A reader offset past its record. */
	ck_assert_int_eq(ipcd_qset_write(&t.s, "abc", 3, a), 3);
	w = ipcd_qset_wq(&t.s, a);
	ck_assert_ptr_nonnull(w);
	atomic_store(&w->r->roff, 100);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), -EIO);
	/* Slot and claim numbers out of range pass for nobody's. */
	atomic_store(&w->r->roff, 0);
	atomic_store(&w->r->rclaim, 1000);
	ck_assert_int_eq(ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full), 3);
	ck_assert_mem_eq(out, "abc", 3);
	tq_close(&t);
}
END_TEST

/* ---- many threads and processes -------------------------------------------------- */

#define RECS 20000

struct load {
	struct tq *t;
	unsigned writers, readers;
	size_t size;			/* bytes a record */
	_Atomic unsigned writers_left;
	_Atomic uint64_t got;		/* records read, by all readers */
	_Atomic unsigned bad;
	uint32_t next_seq[8];		/* per writer: readers check order... */
	unsigned char *seen;		/* writers * RECS flags */
	pthread_mutex_t mu;		/* for the test's own books only */
};

struct warg {
	struct load *l;
	uint32_t id;
};

static void *writer_main(void *p)
{
	struct warg *w = p;
	struct load *l = w->l;
	unsigned char buf[4096];
	uint32_t seq, tid = me();
	ssize_t n;

	for (seq = 0; seq < RECS; seq++) {
		make_rec(buf, l->size, w->id, seq);
		while ((n = ipcd_qset_write(&l->t->s, buf, l->size, tid)) == -EAGAIN)
			sched_yield();
		if (n != (ssize_t)l->size) {
			atomic_fetch_add(&l->bad, 1);
			break;
		}
	}
	ipcd_qset_release(&l->t->s, tid);
	if (atomic_fetch_sub(&l->writers_left, 1) == 1)
		peers(l->t, l->readers, 0, 1);
	return NULL;
}

static void *reader_main(void *p)
{
	struct load *l = p;
	unsigned char buf[4096];
	uint32_t last[8], tid = me();
	struct rec r;
	size_t full;
	ssize_t n;
	unsigned i;

	for (i = 0; i < 8; i++)
		last[i] = UINT32_MAX;
	for (;;) {
		n = ipcd_qset_read(&l->t->s, buf, l->size, tid, 0, &full);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN || n == -EBUSY) {
			sched_yield();
			continue;
		}
		/* A stream read of one record's size gets one record whole:
		 * every write is one record and reads stop at its end. */
		if (n != (ssize_t)l->size || !check_rec(buf, (size_t)n, &r) ||
		    r.writer >= l->writers || r.seq >= RECS) {
			fprintf(stderr, "reader %u: a bad record (%zd bytes)\n", tid, n);
			atomic_fetch_add(&l->bad, 1);
			break;
		}
		/* Each writer's order, as this reader sees it. */
		if (last[r.writer] != UINT32_MAX && r.seq <= last[r.writer]) {
			fprintf(stderr, "reader %u: writer %u's %u after %u\n", tid, r.writer,
				r.seq, last[r.writer]);
			atomic_fetch_add(&l->bad, 1);
		}
		last[r.writer] = r.seq;
		pthread_mutex_lock(&l->mu);
		if (l->seen[r.writer * RECS + r.seq]++) {
			fprintf(stderr, "reader %u: writer %u's %u twice\n", tid, r.writer, r.seq);
			atomic_fetch_add(&l->bad, 1);	/* twice */
		}
		pthread_mutex_unlock(&l->mu);
		atomic_fetch_add(&l->got, 1);
	}
	ipcd_qset_release(&l->t->s, tid);
	return NULL;
}

static void run_load(uint32_t features, unsigned nq, unsigned writers, unsigned readers,
		     size_t size)
{
	struct tq t;
	struct load l = { .t = &t, .writers = writers, .readers = readers, .size = size };
	pthread_t wt[8], rt[8];
	struct warg wa[8];
	unsigned i;
	size_t k;

	tq_open(&t, 16384, features, nq);
	peers(&t, readers, writers, 1);
	atomic_store(&l.writers_left, writers);
	l.seen = calloc(writers, RECS);
	pthread_mutex_init(&l.mu, NULL);
	for (i = 0; i < readers; i++)
		ck_assert_int_eq(pthread_create(&rt[i], NULL, reader_main, &l), 0);
	for (i = 0; i < writers; i++) {
		wa[i].l = &l;
		wa[i].id = i;
		ck_assert_int_eq(pthread_create(&wt[i], NULL, writer_main, &wa[i]), 0);
	}
	for (i = 0; i < writers; i++)
		pthread_join(wt[i], NULL);
	for (i = 0; i < readers; i++)
		pthread_join(rt[i], NULL);
	ck_assert_uint_eq(atomic_load(&l.bad), 0);
	ck_assert_uint_eq(atomic_load(&l.got), (uint64_t)writers * RECS);
	for (k = 0; k < (size_t)writers * RECS; k++)
		ck_assert_uint_eq(l.seen[k], 1);
	free(l.seen);
	tq_close(&t);
}

START_TEST(test_fan_in)
{
	run_load(0, 4, 4, 1, 64);
}
END_TEST

START_TEST(test_fan_out)
{
	run_load(0, 2, 1, 4, 64);
}
END_TEST

START_TEST(test_many_to_many)
{
	run_load(IPCD_RING_F_MESSAGE, 4, 4, 4, 200);
}
END_TEST

START_TEST(test_more_writers_than_queues)
{
	/* Two queues, four writers: the ones without a queue wait for one
	 * to be given back (as the daemon would take their writes). */
	struct tq t;
	uint32_t a = me(), b = (uint32_t)getppid();

	tq_open(&t, 4096, 0, 2);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "x", 1, a), 1);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "y", 1, b), 1);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "z", 1, 1), -ENOSPC);
	ipcd_qset_release(&t.s, b);	/* "y" is still in it: kept */
	ck_assert_int_eq(ipcd_qset_write(&t.s, "z", 1, 1), -ENOSPC);
	{
		char out[8];
		size_t full;

		while (ipcd_qset_read(&t.s, out, sizeof(out), a, 0, &full) > 0)
			;
	}
	ipcd_qset_release(&t.s, b);
	ck_assert_int_eq(ipcd_qset_write(&t.s, "z", 1, 1), 1);
	tq_close(&t);
}
END_TEST

/* A writer process killed at any instruction: what it published arrives
 * whole and in order, what it had not never surfaces, and the others'
 * records flow on. */
START_TEST(test_writer_killed)
{
	struct tq t;
	unsigned char buf[512];
	uint32_t last[2] = { UINT32_MAX, UINT32_MAX }, tid = me();
	struct rec r;
	size_t full;
	unsigned round, other = 0;
	ssize_t n;
	pid_t p;
	int st;

	tq_open(&t, 16384, 0, 2);
	for (round = 0; round < 30; round++) {
		p = fork();
		ck_assert_int_ge(p, 0);
		if (p == 0) {
			uint32_t seq, ctid = me();

			for (seq = 0;; seq++) {
				make_rec(buf, 256, 0, seq);
				while (ipcd_qset_write(&t.s, buf, 256, ctid) == -EAGAIN)
					;
			}
		}
		/* Read a while, kill it somewhere, read what is left. */
		last[0] = UINT32_MAX;
		for (unsigned k = 0; k < 50 + round * 7; k++) {
			n = ipcd_qset_read(&t.s, buf, 256, tid, 0, &full);
			if (n == -EAGAIN || n == -EBUSY)
				continue;
			ck_assert_int_eq(n, 256);
			ck_assert(check_rec(buf, 256, &r));
			ck_assert(last[0] == UINT32_MAX || r.seq == last[0] + 1);
			last[0] = r.seq;
		}
		kill(p, SIGKILL);
		ck_assert_int_eq(waitpid(p, &st, 0), p);
		/* Another writer, meanwhile and after. */
		make_rec(buf, 256, 1, other++);
		ck_assert_int_eq(ipcd_qset_write(&t.s, buf, 256, tid), 256);
		while ((n = ipcd_qset_read(&t.s, buf, 256, tid, 0, &full)) != -EAGAIN) {
			ck_assert_int_eq(n, 256);
			ck_assert(check_rec(buf, 256, &r));
			if (r.writer == 0) {
				ck_assert(last[0] == UINT32_MAX || r.seq == last[0] + 1);
				last[0] = r.seq;
			} else {
				ck_assert(last[1] == UINT32_MAX || r.seq == last[1] + 1);
				last[1] = r.seq;
			}
		}
		ck_assert_uint_eq(last[1], other - 1);
		/* The dead child's queue is free for the next. */
		ipcd_qset_reap(&t.s);
	}
	tq_close(&t);
}
END_TEST

/* A writer stopped in the middle of its stream (at any instruction)
 * holds back nobody: the other writer's records keep coming. */
START_TEST(test_writer_stopped)
{
	struct tq t;
	unsigned char buf[512];
	uint32_t tid = me();
	struct rec r;
	size_t full;
	unsigned round, seq = 0, mine;
	ssize_t n;
	pid_t p;
	int st;

	tq_open(&t, 16384, 0, 2);
	p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		uint32_t s, ctid = me();

		for (s = 0;; s++) {
			make_rec(buf, 128, 0, s);
			while (ipcd_qset_write(&t.s, buf, 128, ctid) == -EAGAIN)
				;
		}
	}
	for (round = 0; round < 20; round++) {
		usleep(200 + round * 50);
		kill(p, SIGSTOP);
		ck_assert_int_eq(waitpid(p, &st, WUNTRACED), p);
		/* Drain what it published, then ours gets through at once. */
		while ((n = ipcd_qset_read(&t.s, buf, 128, tid, 0, &full)) > 0)
			ck_assert(check_rec(buf, 128, &r));
		for (mine = 0; mine < 100; mine++) {
			make_rec(buf, 128, 1, seq++);
			ck_assert_int_eq(ipcd_qset_write(&t.s, buf, 128, tid), 128);
			n = ipcd_qset_read(&t.s, buf, 128, tid, 0, &full);
			ck_assert_int_eq(n, 128);
			ck_assert(check_rec(buf, 128, &r));
			ck_assert_uint_eq(r.writer, 1);
		}
		kill(p, SIGCONT);
	}
	kill(p, SIGKILL);
	waitpid(p, &st, 0);
	tq_close(&t);
}
END_TEST

/* ---- the wake-up barrier ------------------------------------------------------- */

/* Whether this kernel lets a process join (ring_wait.c, barrier_join). */
static bool barrier_possible(void)
{
	long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	return q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
	       (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
}

/* From here on, membarrier fails with EPERM in this process (as in a
 * sandbox that forbids it). */
static void forbid_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
	ck_assert_int_eq(syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0), -1);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define WAKE_RECS	3000

/*
 * A writer (a forked child: joined by inheritance) sends records one at a
 * time with pauses of 0 to ~60 us, so that the reader, which never spins,
 * is about to sleep or asleep at each; a lost wake-up shows as a wait
 * that ends by its 3 s timeout with a record there.  With sliced, the
 * reader cannot issue the barrier: it must still get every record, and
 * come back from waits by itself while nothing comes (during the
 * writer's one long pause, which the writer marks in shared memory).
 */
static void wake_run(bool sliced)
{
	struct tq t;
	unsigned char buf[64];
	const struct timespec timeout = { 3, 0 };
	uint32_t tid = me(), seq = 0;
	_Atomic int *pausing;
	unsigned back_in_pause = 0;
	uint64_t t0;
	struct rec r;
	size_t full;
	ssize_t n;
	pid_t p;
	int st, w;

	pausing = mmap(NULL, sizeof(*pausing), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(pausing, MAP_FAILED);
	tq_open(&t, 4096, 0, 2);
	ck_assert_int_eq(ipcd_barrier_joined(), barrier_possible());
	p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		uint32_t s, ctid = me();
		unsigned pause = 1;

		if (ipcd_barrier_joined() != barrier_possible())
			_exit(3);
		for (s = 0; s < WAKE_RECS; s++) {
			pause = pause * 1103515245u + 12345u;
			if (s == WAKE_RECS / 2) {
				/* A long pause, marked: a sliced reader's waits
				 * come back meanwhile with nothing written. */
				atomic_store(pausing, 1);
				usleep(800 * 1000);
				atomic_store(pausing, 0);
			} else if (pause >> 28)
				usleep((pause >> 24) & 63);
			make_rec(buf, sizeof(buf), 0, s);
			while (ipcd_qset_write(&t.s, buf, sizeof(buf), ctid) == -EAGAIN)
				;
		}
		_exit(0);
	}
	if (sliced)
		forbid_membarrier();
	while (seq < WAKE_RECS) {
		n = ipcd_qset_read(&t.s, buf, sizeof(buf), tid, 0, &full);
		if (n == -EAGAIN) {
			t0 = mono_ms();
			w = ipcd_ring_wait(&t.s.q[0], IPCD_WAIT_DATA, 1, &timeout, 0);
			ck_assert_msg(w == 0, "record %u: wait returned %d after %llu ms (%s)",
				      seq, w, (unsigned long long)(mono_ms() - t0),
				      w == -ETIMEDOUT ? "a lost wake-up" : "error");
			back_in_pause += atomic_load(pausing);
			continue;
		}
		ck_assert_int_eq(n, sizeof(buf));
		ck_assert(check_rec(buf, sizeof(buf), &r));
		ck_assert_uint_eq(r.seq, seq);
		seq++;
	}
	ck_assert_int_eq(waitpid(p, &st, 0), p);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* Sliced: waits came back by themselves while the writer paused. */
	if (sliced)
		ck_assert_msg(back_in_pause >= 3, "%u waits came back during the writer's pause (want 3 or more)", back_in_pause);
	munmap(pausing, sizeof(*pausing));
	tq_close(&t);
}

START_TEST(test_wake_barrier)
{
	wake_run(false);
}
END_TEST

/* The reader in a forked child: the seccomp filter stays with it. */
START_TEST(test_wake_sliced)
{
	pid_t p = fork();
	int st;

	ck_assert_int_ge(p, 0);
	if (p == 0) {
		wake_run(true);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(p, &st, 0), p);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the sliced reader failed");
}
END_TEST

static Suite *coord_suite(void)
{
	Suite *s = suite_create("coord");
	TCase *tc = tcase_create("queues");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_directory_rejects);
	tcase_add_test(tc, test_stream_basic);
	tcase_add_test(tc, test_message_basic);
	tcase_add_test(tc, test_peek);
	tcase_add_test(tc, test_wrap_and_full);
	tcase_add_test(tc, test_queues_run_out);
	tcase_add_test(tc, test_claims);
	tcase_add_test(tc, test_corrupt);
	tcase_add_test(tc, test_fan_in);
	tcase_add_test(tc, test_fan_out);
	tcase_add_test(tc, test_many_to_many);
	tcase_add_test(tc, test_more_writers_than_queues);
	tcase_add_test(tc, test_writer_killed);
	tcase_add_test(tc, test_writer_stopped);
	tcase_add_test(tc, test_wake_barrier);
	tcase_add_test(tc, test_wake_sliced);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(coord_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
