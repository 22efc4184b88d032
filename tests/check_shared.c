/*
 * check_shared.c - unit tests of coordination by one shared ring
 * (core/coord_shared.c): the layout of a ring of cells, reservations by
 * fetch-and-add, records taken by compare-and-swap, holes passed over in
 * each writer's order, and what stopped, killed and dead threads leave
 * behind.  Threads and forked processes share one mapping, as processes
 * share a channel's.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord.h"
#include "coordtest.h"

/* ---- helpers ------------------------------------------------------------------ */

struct ts {
	unsigned char *map;
	size_t len;
	struct ipcd_shared s;	/* side 0 */
};

static void peers(struct ts *t, uint32_t readers, uint32_t writers)
{
	atomic_store(&t->s.v.r->readers, readers);
	atomic_store(&t->s.v.r->writers_epoch, (uint64_t)1 << 32 | writers);
}

static void ts_open(struct ts *t, uint64_t cap, uint32_t features, uint32_t msg_max)
{
	memset(t, 0, sizeof(*t));
	t->len = ipcd_map_len_coord(cap, features, IPCD_COORD_SHARED, 0);
	ck_assert_uint_ne(t->len, 0);
	t->map = mmap(NULL, t->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(t->map, MAP_FAILED);
	ck_assert_int_eq(ipcd_map_format(t->map, t->len, cap, features, msg_max,
					 IPCD_COORD_SHARED, 0), 0);
	ck_assert_int_eq(ipcd_shared_attach(&t->s, t->map, t->len, 0), 0);
	peers(t, 1, 1);
	t->s.v.eof_epoch = 1;
}

static void ts_close(struct ts *t)
{
	munmap(t->map, t->len);
}

static uint32_t me(void)
{
	return ipcd_tid();
}

/* The entry of ticket u. */
static struct ipcd_cell *cell_of(struct ts *t, uint64_t u)
{
	return &t->s.cell[ipcd_cell_index(u, t->s.ncells)];
}

static uint64_t head_of(struct ts *t)
{
	return atomic_load(&t->s.v.r->head);
}

static uint64_t tail_of(struct ts *t)
{
	return atomic_load(&t->s.v.r->tail);
}

/*
 * A reservation made by hand, as a writer in slot w with thread tid makes
 * it and then stops (or dies): k cells from the tail, noted in the slot
 * unless `noted` is false (a writer stopped between its fetch-and-add and
 * noting the ticket).  Returns the ticket.
 */
static uint64_t reserve_by_hand(struct ts *t, unsigned w, uint32_t tid, uint64_t k, bool noted)
{
	uint64_t u;

	atomic_store(&t->s.ws[w].tid, tid);
	atomic_store(&t->s.ws[w].rsv, IPCD_RSV_PENDING);
	u = atomic_fetch_add(&t->s.v.r->tail, k);
	if (noted)
		atomic_store(&t->s.ws[w].rsv, IPCD_RSV(u, k));
	return u;
}

/* Publish that reservation: len bytes of record (writer, seq). */
static void commit_by_hand(struct ts *t, unsigned w, uint64_t u, size_t len, uint32_t writer,
			   uint32_t seq)
{
	unsigned char buf[4096];
	uint64_t i, k = ipcd_cells_of(len), n = t->s.ncells;
	struct ipcd_cell *c = cell_of(t, u);

	make_rec(buf, len, writer, seq);
	for (i = 0; i < len; i++)
		t->s.v.data[((u & (n - 1)) * IPCD_CELL_SIZE + i) & (t->s.v.cap - 1)] = buf[i];
	for (i = 1; i < k; i++)
		atomic_store(&cell_of(t, u + i)->word,
			     IPCD_CELL_WORD(IPCD_CELL_CONT, 0, u + i));
	atomic_store(&c->len, (uint32_t)len);
	atomic_store(&c->off, 0);
	atomic_store(&c->word, IPCD_CELL_WORD(IPCD_CELL_FULL, 0, u));
	atomic_store(&t->s.ws[w].rsv, 0);
}

/* Read one record of len bytes and check it is (writer, seq). */
static void expect_rec(struct ts *t, size_t len, uint32_t writer, uint32_t seq)
{
	unsigned char buf[4096];
	struct rec r;
	size_t full;
	ssize_t n = ipcd_shared_read(&t->s, buf, len, me(), 0, &full);

	ck_assert_int_eq(n, (ssize_t)len);
	ck_assert(check_rec(buf, len, &r));
	ck_assert_uint_eq(r.writer, writer);
	ck_assert_uint_eq(r.seq, seq);
}

/* A ring with the most writer slots (16), for tests that name slots. */
#define BIG 262144

/* ---- layout --------------------------------------------------------------------- */

START_TEST(test_layout)
{
	struct ts t;
	const struct ipcd_map *m;
	const struct ipcd_ring_desc *d;
	struct ipcd_shared other;
	uint64_t i;

	ts_open(&t, 65536, 0, 0);
	m = (const struct ipcd_map *)t.map;
	ck_assert_uint_eq(m->coord, IPCD_COORD_SHARED);
	ck_assert_uint_eq(m->nrings, 1);
	ck_assert_uint_eq(m->nqueues, 0);
	d = ipcd_map_desc(t.map, t.len, IPCD_ROLE(0, 0), NULL);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(d->kind, IPCD_RING_KIND_CELLS);
	/* The cell entries after the payload, within the mapping. */
	ck_assert_uint_le(d->data_off + d->capacity + d->capacity / IPCD_CELL_SIZE * 16,
			  m->map_size);
	ck_assert_uint_eq(m->map_size, t.len);
	ck_assert_uint_eq(t.s.ncells, 1024);
	/* Writer slots: each may reserve a PIPE_BUF record beyond room. */
	ck_assert_uint_ge(m->nrslots, 1);
	ck_assert_uint_le(m->rslot_off + m->nrslots * 64, m->hdr_area);
	ck_assert_uint_eq(t.s.rec_max, PIPE_BUF);
	ck_assert_uint_le(t.s.room + t.s.nws * ipcd_cells_of(PIPE_BUF), t.s.ncells);
	ck_assert_uint_ge(t.s.room, t.s.ncells / 2);
	for (i = 0; i < t.s.ncells; i++)
		ck_assert_uint_eq(atomic_load(&cell_of(&t, i)->word),
				  IPCD_CELL_WORD(IPCD_CELL_FREE, 0, i));
	ck_assert(t.s.stream);
	ts_close(&t);

	/* Duplex: each side its ring. */
	ts_open(&t, 65536, IPCD_RING_F_DUPLEX | IPCD_RING_F_MESSAGE, 1000);
	ck_assert_uint_eq(((const struct ipcd_map *)t.map)->nrings, 2);
	ck_assert_int_eq(ipcd_shared_attach(&other, t.map, t.len, 1), 0);
	ck_assert_ptr_ne(other.v.r, t.s.v.r);
	ck_assert_ptr_ne(other.cell, t.s.cell);
	ck_assert(!other.stream);
	ck_assert_uint_eq(other.rec_max, 1000);
	ts_close(&t);

	/* Records too large for the ring: no writer slot would fit. */
	{
		size_t len = ipcd_map_len_coord(8192, IPCD_RING_F_MESSAGE, IPCD_COORD_SHARED, 0);
		void *map = calloc(1, len);

		ck_assert_int_eq(ipcd_map_format(map, len, 8192, IPCD_RING_F_MESSAGE, 6000,
						 IPCD_COORD_SHARED, 0), -EINVAL);
		free(map);
	}
	/* Not a shared ring. */
	{
		size_t len = ipcd_map_len(4096, 0);
		void *map = calloc(1, len);

		ck_assert_int_eq(ipcd_ring_format(map, len, 4096, 0, 0), 0);
		ck_assert_int_eq(ipcd_shared_attach(&other, map, len, 0), -EINVAL);
		free(map);
	}
	ck_assert_uint_eq(ipcd_map_len_coord(4096, 0, IPCD_COORD_SHARED, 2), 0);
}
END_TEST

START_TEST(test_directory_rejects)
{
	struct ts t;
	struct ipcd_map *m;
	struct ipcd_ring_desc *d;
	struct ipcd_view v;
	unsigned char *save;

	ts_open(&t, 65536, 0, 0);
	m = (struct ipcd_map *)t.map;
	d = (struct ipcd_ring_desc *)(t.map + m->desc_off);
	save = malloc(m->hdr_area);
	memcpy(save, t.map, m->hdr_area);
#define RESTORE() memcpy(t.map, save, m->hdr_area)
#define REFUSED() ck_assert_int_eq(ipcd_view_attach(&v, t.map, t.len), -EIO)
	d->kind = IPCD_RING_KIND_BYTES;		/* a ring of cells that says bytes */
	REFUSED();
	RESTORE();
	m->coord = IPCD_COORD_LOCK;		/* cells without the coordination */
	REFUSED();
	RESTORE();
	m->nrslots = 0;
	REFUSED();
	m->nrslots = 17;			/* more slots than room allows */
	REFUSED();
	RESTORE();
	m->rslot_off = 8;			/* on the directory */
	REFUSED();
	RESTORE();
	d->capacity = 1u << 20;			/* cells past the mapping */
	REFUSED();
	RESTORE();
	ck_assert_int_eq(ipcd_view_attach(&v, t.map, t.len), 0);
#undef REFUSED
#undef RESTORE
	free(save);
	ts_close(&t);
}
END_TEST

/* ---- one thread ------------------------------------------------------------------ */

START_TEST(test_stream_basic)
{
	struct ts t;
	unsigned char big[3 * PIPE_BUF], out[3 * PIPE_BUF];
	uint32_t tid = me();
	size_t full, i, got;
	ssize_t n;

	ts_open(&t, 65536, 0, 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 10, tid, 0, &full), -EAGAIN);
	ck_assert_int_eq(ipcd_shared_can_read(&t.s), 0);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "hello ", 6, tid), 6);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "world", 5, tid), 5);
	ck_assert_int_eq(ipcd_shared_can_read(&t.s), 1);
	ck_assert_int_eq(ipcd_shared_readable(&t.s), 11);
	/* A part of a record, then the rest and the next record in one read;
	 * a peek looks on into the next record, as a read would take it. */
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 3, tid, 0, &full), 3);
	ck_assert_int_eq(memcmp(out, "hel", 3), 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 4, tid, IPCD_IO_PEEK, &full), 4);
	ck_assert_int_eq(memcmp(out, "lo w", 4), 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full), 8);
	ck_assert_int_eq(memcmp(out, "lo world", 8), 0);
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	/* A write longer than PIPE_BUF goes in records of PIPE_BUF. */
	for (i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7);
	for (got = 0; got < sizeof(big); got += (size_t)n) {
		n = ipcd_shared_write(&t.s, big + got, sizeof(big) - got, tid);
		ck_assert_int_eq(n, PIPE_BUF);
	}
	for (got = 0; got < sizeof(big); got += (size_t)n) {
		n = ipcd_shared_read(&t.s, out + got, sizeof(out) - got, tid, 0, &full);
		ck_assert_int_gt(n, 0);
	}
	ck_assert_int_eq(memcmp(out, big, sizeof(big)), 0);
	/* No reader: EPIPE; every writer gone and nothing left: EOF. */
	peers(&t, 0, 1);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "x", 1, tid), -EPIPE);
	ck_assert_int_eq(ipcd_shared_can_write(&t.s, 1), 1);
	peers(&t, 1, 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 1, tid, 0, &full), IPCD_EOF);
	ck_assert_int_eq(ipcd_shared_can_read(&t.s), 1);
	/* What went through, as the writer slots count it (the cells, 64
	 * bytes each, say more): 6 + 5 bytes and the big write's records. */
	{
		uint64_t bytes;
		uint32_t writes;

		ipcd_map_counts(t.map, t.len, t.s.v.r, NULL, &bytes, &writes);
		ck_assert_uint_eq(bytes, 6 + 5 + sizeof(big));
		ck_assert_uint_eq(writes, 2 + sizeof(big) / PIPE_BUF);
	}
	ipcd_shared_release(&t.s, tid);
	for (i = 0; i < t.s.nws; i++)
		ck_assert_uint_eq(atomic_load(&t.s.ws[i].tid), 0);
	ts_close(&t);
}
END_TEST

START_TEST(test_message_basic)
{
	struct ts t;
	unsigned char buf[2000], out[2000];
	uint32_t tid = me();
	size_t full;

	ts_open(&t, 65536, IPCD_RING_F_MESSAGE, 2000);
	memset(buf, 'm', sizeof(buf));
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 2001 - 1, tid), 2000);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 2001, tid), -EMSGSIZE);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "", 0, tid), 0);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "abc", 3, tid), 3);
	ck_assert_int_eq(ipcd_shared_readable(&t.s), 2000);
	/* A message read short is cut, and gone. */
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 10, tid, IPCD_IO_PEEK, &full), 10);
	ck_assert_uint_eq(full, 2000);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 10, tid, 0, &full), 10);
	ck_assert_uint_eq(full, 2000);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full), 0);
	ck_assert_uint_eq(full, 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full), 3);
	ck_assert_int_eq(memcmp(out, "abc", 3), 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full), -EAGAIN);
	ts_close(&t);
}
END_TEST

/* Read in place: a record shown where it lies (in two spans where it
 * wraps), taken in part or whole, or left; other readers pass it. */
START_TEST(test_peek)
{
	struct ts t;
	struct ipcd_span sp[2];
	unsigned char buf[4096], out[4096];
	uint32_t tid = me();
	size_t full, i;

	ts_open(&t, 65536, 0, 0);
	ck_assert_int_eq(ipcd_shared_peek(&t.s, sp, tid), -EAGAIN);
	ck_assert_int_eq(ipcd_shared_consume(&t.s, 0), -EINVAL);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "abcdef", 6, tid), 6);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "gh", 2, tid), 2);
	ck_assert_int_eq(ipcd_shared_peek(&t.s, sp, tid), 6);
	ck_assert_int_eq(ipcd_shared_peek(&t.s, sp, tid), -EALREADY);
	ck_assert_uint_eq(sp[0].n, 6);
	ck_assert_uint_eq(sp[1].n, 0);
	ck_assert_int_eq(memcmp(sp[0].p, "abcdef", 6), 0);
	/* Another reader meanwhile takes the next record. */
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, sizeof(out), tid + 1, 0, &full), 2);
	ck_assert_int_eq(memcmp(out, "gh", 2), 0);
	ck_assert_int_eq(ipcd_shared_consume(&t.s, 7), -EINVAL);
	ck_assert_int_eq(ipcd_shared_consume(&t.s, 2), 0);
	ck_assert_int_eq(ipcd_shared_peek(&t.s, sp, tid), 4);
	ck_assert_int_eq(memcmp(sp[0].p, "cdef", 4), 0);
	ck_assert_int_eq(ipcd_shared_consume(&t.s, 4), 0);
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	/* A record that wraps: two spans. */
	atomic_store(&t.s.v.r->head, t.s.ncells - 1);
	atomic_store(&t.s.v.r->tail, t.s.ncells - 1);
	for (i = 0; i < t.s.ncells; i++)
		atomic_store(&cell_of(&t, i)->word, IPCD_CELL_WORD(IPCD_CELL_FREE, 0,
					     i < t.s.ncells - 1 ? i + t.s.ncells : i));
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 3);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 200, tid), 200);
	ck_assert_int_eq(ipcd_shared_peek(&t.s, sp, tid), 200);
	ck_assert_uint_eq(sp[0].n, IPCD_CELL_SIZE);
	ck_assert_uint_eq(sp[1].n, 200 - IPCD_CELL_SIZE);
	ck_assert_int_eq(memcmp(sp[0].p, buf, sp[0].n), 0);
	ck_assert_int_eq(memcmp(sp[1].p, buf + sp[0].n, sp[1].n), 0);
	ck_assert_int_eq(ipcd_shared_consume(&t.s, 0), 0);	/* left: read again */
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full), 200);
	ck_assert_int_eq(memcmp(out, buf, 200), 0);
	/* Every writer gone, nothing left: end of file. */
	peers(&t, 1, 0);
	ck_assert_int_eq(ipcd_shared_peek(&t.s, sp, tid), IPCD_EOF);
	ts_close(&t);
}
END_TEST

/* Full at room, records that wrap at the end of the area, many rounds. */
START_TEST(test_wrap_and_full)
{
	struct ts t;
	unsigned char buf[4096], out[4096];
	uint32_t tid = me(), seq = 0, rseq = 0;
	size_t full, size;
	struct rec r;
	unsigned round;
	ssize_t n;

	ts_open(&t, 65536, IPCD_RING_F_MESSAGE, 4000);
	for (round = 0; round < 40; round++) {
		size = 100 + round * 97 % 3900;
		for (;;) {
			make_rec(buf, size, 0, seq);
			n = ipcd_shared_write(&t.s, buf, size, tid);
			if (n == -EAGAIN)
				break;
			ck_assert_int_eq(n, (ssize_t)size);
			seq++;
		}
		/* Full means room used up, no more. */
		ck_assert_uint_gt(tail_of(&t) - head_of(&t) + ipcd_cells_of(size), t.s.room);
		ck_assert_uint_le(tail_of(&t) - head_of(&t), t.s.room);
		ck_assert_int_eq(ipcd_shared_can_write(&t.s, size), 0);
		/* Take half, leave half for the next round. */
		while (rseq < seq - (seq - rseq) / 2) {
			n = ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full);
			ck_assert_int_gt(n, 0);
			ck_assert(check_rec(out, (size_t)n, &r));
			ck_assert_uint_eq(r.seq, rseq);
			rseq++;
		}
	}
	while ((n = ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full)) > 0) {
		ck_assert(check_rec(out, (size_t)n, &r));
		ck_assert_uint_eq(r.seq, rseq);
		rseq++;
	}
	ck_assert_uint_eq(rseq, seq);
	/* Several rounds of the area went by. */
	ck_assert_uint_gt(tail_of(&t), 4 * t.s.ncells);
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	ts_close(&t);
}
END_TEST

/*
 * A writer stopped inside its reservation: readers pass its cells, other
 * writers go on until tail reaches head + room, and once it commits, its
 * record comes before its own next one even to a reader that had passed
 * its hole.
 */
START_TEST(test_holes)
{
	struct ts t;
	unsigned char buf[128];
	uint32_t tid = me(), stopped = (uint32_t)getppid(), seq = 0;
	size_t full;
	uint64_t u;
	ssize_t n;

	ts_open(&t, BIG, 0, 0);
	make_rec(buf, 100, 1, seq);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 100, tid), 100);
	u = reserve_by_hand(&t, 15, stopped, 2, true);	/* writer 0, seq 0 */
	make_rec(buf, 100, 1, ++seq);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 100, tid), 100);
	/* Both of writer 1's records, past the hole. */
	expect_rec(&t, 100, 1, 0);
	expect_rec(&t, 100, 1, 1);
	ck_assert_int_eq(ipcd_shared_read(&t.s, buf, 100, tid, 0, &full), -EAGAIN);
	ck_assert_int_eq(ipcd_shared_can_read(&t.s), 0);
	ck_assert_uint_eq(head_of(&t), u);	/* held at the hole */
	/* The others go on up to room, then wait. */
	for (;;) {
		make_rec(buf, 100, 1, ++seq);
		n = ipcd_shared_write(&t.s, buf, 100, tid);
		if (n == -EAGAIN)
			break;
		ck_assert_int_eq(n, 100);
		expect_rec(&t, 100, 1, seq);
	}
	ck_assert_uint_ge(tail_of(&t) - u, t.s.room - 2);
	/* The stopped writer goes on: its record, then its next, which a
	 * reader must not take first. */
	commit_by_hand(&t, 15, u, 100, 0, 0);
	u = reserve_by_hand(&t, 15, stopped, 2, true);
	commit_by_hand(&t, 15, u, 100, 0, 1);
	expect_rec(&t, 100, 0, 0);
	expect_rec(&t, 100, 0, 1);
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	make_rec(buf, 100, 1, seq);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 100, tid), 100);
	expect_rec(&t, 100, 1, seq);
	ts_close(&t);
}
END_TEST

/* Records committed in holes come in ticket order: a writer's first
 * (reserved before another writer's record, committed after it) before
 * that record, and its second after.  (The race in which a reader passes
 * the hole, then takes a later record of the same writer, is the threads
 * tests' to meet: each reader checks every writer's order.) */
START_TEST(test_order_past_hole)
{
	struct ts t;
	uint32_t w0 = (uint32_t)getppid();
	uint64_t a, x;

	ts_open(&t, BIG, 0, 0);
	a = reserve_by_hand(&t, 14, w0, 2, true);	/* writer 0's first */
	x = reserve_by_hand(&t, 15, 1, 2, true);	/* writer 1's */
	commit_by_hand(&t, 15, x, 100, 1, 0);
	/* As if the reader had scanned past `a` to x: writer 0 commits a and
	 * its second, b, after x. */
	commit_by_hand(&t, 14, a, 100, 0, 0);
	{
		uint64_t b = reserve_by_hand(&t, 14, w0, 2, true);

		commit_by_hand(&t, 14, b, 100, 0, 1);
	}
	expect_rec(&t, 100, 0, 0);
	expect_rec(&t, 100, 1, 0);
	expect_rec(&t, 100, 0, 1);
	ts_close(&t);
}
END_TEST

/* A stream read that took part of a record taken past a hole: the next
 * read goes on with that record even once the hole is filled (an earlier
 * ticket), so no other write comes between its parts. */
START_TEST(test_part_past_hole)
{
	struct ts t;
	unsigned char out[512];
	uint32_t w0 = (uint32_t)getppid(), tid = me();
	uint64_t a, x;
	size_t full;
	struct rec r;

	ts_open(&t, BIG, 0, 0);
	a = reserve_by_hand(&t, 14, w0, 2, true);	/* a hole: writer 0's */
	x = reserve_by_hand(&t, 15, 1, 2, true);
	commit_by_hand(&t, 15, x, 100, 1, 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 10, tid, 0, &full), 10);
	ck_assert_uint_eq(atomic_load(&t.s.v.r->rpart), x + 1);
	commit_by_hand(&t, 14, a, 100, 0, 0);		/* the hole filled */
	/* The rest of writer 1's record first, then writer 0's, whole. */
	ck_assert_int_eq(ipcd_shared_read(&t.s, out + 10, 90, tid, 0, &full), 90);
	memcpy(&r, out, sizeof(r));
	ck_assert_uint_eq(r.writer, 1);
	ck_assert_uint_eq(atomic_load(&t.s.v.r->rpart), 0);
	expect_rec(&t, 100, 0, 0);
	/* A mark left by a reader that died before clearing it is stale
	 * once its record is consumed: readers clear it. */
	atomic_store(&t.s.v.r->rpart, x + 1);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 10, tid, 0, &full), -EAGAIN);
	ck_assert_uint_eq(atomic_load(&t.s.v.r->rpart), 0);
	ts_close(&t);
}
END_TEST

/* Head left short of what readers consumed (two that consumed
 * neighbouring records at once, each before it saw the other's): end of
 * file still comes once the writers are gone, and a writer that finds
 * the ring full moves head on before it says so. */
START_TEST(test_head_left_short)
{
	struct ts t;
	unsigned char out[4096];
	uint32_t tid = me();
	uint64_t h, n = 0;
	size_t full;

	ts_open(&t, 65536, 0, 0);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "abc", 3, tid), 3);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, sizeof(out), tid, 0, &full), 3);
	h = head_of(&t);
	atomic_store(&t.s.v.r->head, h - 1);
	peers(&t, 1, 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, out, 1, tid, 0, &full), IPCD_EOF);
	ck_assert_uint_eq(head_of(&t), h);
	/* Full but for what head was left short of. */
	peers(&t, 1, 1);
	while (ipcd_shared_write(&t.s, out, 64, tid) == 64)
		n++;
	ck_assert_uint_gt(n, 0);
	for (uint64_t i = 0; i < n; i++)
		ck_assert_int_eq(ipcd_shared_read(&t.s, out, 64, tid, 0, &full), 64);
	h = head_of(&t);
	atomic_store(&t.s.v.r->head, h - n);
	atomic_store(&t.s.seen_head, h - n);
	ck_assert_int_eq(ipcd_shared_write(&t.s, out, 64, tid), 64);
	ck_assert_uint_eq(head_of(&t), h);
	ts_close(&t);
}
END_TEST

/* Dead threads: a reservation never published, one never even noted, a
 * record being taken; the reaper gives each on, and end of file comes. */
START_TEST(test_reap)
{
	struct ts t;
	unsigned char buf[256];
	uint32_t tid = me(), dead = dead_tid(), live = (uint32_t)getppid();
	size_t full;
	uint64_t u, v;

	ts_open(&t, BIG, 0, 0);
	/* Noted: the reaper knows its cells. */
	u = reserve_by_hand(&t, 10, dead, 3, true);
	make_rec(buf, 100, 1, 0);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 100, tid), 100);
	expect_rec(&t, 100, 1, 0);
	ck_assert_uint_eq(head_of(&t), u);
	ck_assert_uint_ge(ipcd_shared_reap(&t.s), 3);
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	ck_assert_uint_eq(atomic_load(&t.s.ws[10].tid), 0);
	/* Not noted (PENDING): cells no slot covers; but not while a live
	 * writer is between its fetch-and-add and noting its ticket. */
	u = reserve_by_hand(&t, 11, dead, 2, false);
	v = reserve_by_hand(&t, 12, live, 1, false);
	ck_assert_uint_eq(ipcd_shared_reap(&t.s), 1);	/* the dead slot only */
	ck_assert_uint_eq(head_of(&t), u);
	atomic_store(&t.s.ws[12].rsv, IPCD_RSV(v, 1));
	ck_assert_uint_eq(ipcd_shared_reap(&t.s), 2);	/* u's two cells */
	ck_assert_uint_eq(head_of(&t), v);
	commit_by_hand(&t, 12, v, 20, 2, 0);
	expect_rec(&t, 20, 2, 0);
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	atomic_store(&t.s.ws[12].tid, 0);
	/* A record a dead reader was taking: back to be taken. */
	make_rec(buf, 200, 3, 0);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 200, tid), 200);
	u = head_of(&t);
	atomic_store(&cell_of(&t, u)->word,
		     IPCD_CELL_WORD(IPCD_CELL_TAKEN, dead, u));
	ck_assert_int_eq(ipcd_shared_read(&t.s, buf, 200, tid, 0, &full), -EAGAIN);
	ck_assert_uint_eq(ipcd_shared_reap(&t.s), 1);
	expect_rec(&t, 200, 3, 0);
	/* A dead writer's slot taken by a new thread: its reservation goes
	 * to the next round first. */
	u = reserve_by_hand(&t, (unsigned)(tid % t.s.nws), dead, 1, true);
	ipcd_shared_release(&t.s, tid);
	for (unsigned i = 0; i < t.s.nws; i++)
		if (i != tid % t.s.nws)
			atomic_store(&t.s.ws[i].tid, live);
	make_rec(buf, 50, 4, 0);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 50, tid), 50);
	expect_rec(&t, 50, 4, 0);
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	/* Every slot a live thread's: write through the daemon. */
	atomic_store(&t.s.ws[tid % t.s.nws].tid, live);
	ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 50, tid), -ENOSPC);
	for (unsigned i = 0; i < t.s.nws; i++)
		atomic_store(&t.s.ws[i].tid, 0);
	/* Every writer gone, a dead one's hole left: the read reaps, EOF. */
	u = reserve_by_hand(&t, 3, dead, 2, true);
	peers(&t, 1, 0);
	ck_assert_int_eq(ipcd_shared_read(&t.s, buf, 10, tid, 0, &full), IPCD_EOF);
	ts_close(&t);
}
END_TEST

/* Damage: the reader and writer say EIO, the reaper stays in bounds. */
START_TEST(test_corrupt)
{
	struct ts t;
	unsigned char buf[128];
	uint32_t tid = me();
	size_t full;
	uint64_t u;

	ts_open(&t, BIG, 0, 0);
	atomic_store(&t.s.v.r->tail, t.s.ncells + 5);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "x", 1, tid), -EIO);
	ck_assert_int_eq(ipcd_shared_read(&t.s, buf, 1, tid, 0, &full), -EIO);
	ck_assert_int_eq(ipcd_shared_can_read(&t.s), 1);
	ck_assert_int_eq(ipcd_shared_readable(&t.s), -EIO);
	ipcd_shared_reap(&t.s);
	atomic_store(&t.s.v.r->tail, 0);
	/* A committed record whose length is past the largest. */
	ck_assert_int_eq(ipcd_shared_write(&t.s, "abc", 3, tid), 3);
	atomic_store(&cell_of(&t, 0)->len, 100000);
	ck_assert_int_eq(ipcd_shared_read(&t.s, buf, sizeof(buf), tid, 0, &full), -EIO);
	ck_assert_int_eq(ipcd_shared_readable(&t.s), -EIO);
	atomic_store(&cell_of(&t, 0)->len, 3);
	ck_assert_int_eq(ipcd_shared_read(&t.s, buf, sizeof(buf), tid, 0, &full), 3);
	/* A cell a writer reserves that is not free for it. */
	u = tail_of(&t);
	atomic_store(&cell_of(&t, u)->word,
		     IPCD_CELL_WORD(IPCD_CELL_FULL, 0, u + 77));
	ck_assert_int_eq(ipcd_shared_write(&t.s, "y", 1, tid), -EIO);
	/* A reservation noted with too many cells: the reaper leaves it. */
	atomic_store(&t.s.ws[2].tid, dead_tid());
	atomic_store(&t.s.ws[2].rsv, IPCD_RSV(0, 0x7fff));
	ipcd_shared_reap(&t.s);
	ck_assert_uint_eq(atomic_load(&t.s.ws[2].tid), 0);
	/* The broken state: EIO for everyone. */
	atomic_store(&t.s.v.r->state, IPCD_RING_S_BROKEN);
	ck_assert_int_eq(ipcd_shared_write(&t.s, "x", 1, tid), -EIO);
	ck_assert_int_eq(ipcd_shared_read(&t.s, buf, 1, tid, 0, &full), -EIO);
	ts_close(&t);
}
END_TEST

/* ---- many threads and processes -------------------------------------------------- */

#define RECS 20000

struct load {
	struct ts *t;
	unsigned writers, readers;
	size_t size;
	_Atomic unsigned writers_left;
	_Atomic uint64_t got;
	_Atomic unsigned bad;
	unsigned char *seen;
	pthread_mutex_t mu;
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
		while ((n = ipcd_shared_write(&l->t->s, buf, l->size, tid)) == -EAGAIN)
			sched_yield();
		if (n != (ssize_t)l->size) {
			atomic_fetch_add(&l->bad, 1);
			break;
		}
	}
	ipcd_shared_release(&l->t->s, tid);
	if (atomic_fetch_sub(&l->writers_left, 1) == 1)
		peers(l->t, l->readers, 0);
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
		n = ipcd_shared_read(&l->t->s, buf, l->size, tid, 0, &full);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN) {
			sched_yield();
			continue;
		}
		/* A read of one record's size: every record is one write,
		 * whole, as none is longer than PIPE_BUF. */
		if (n != (ssize_t)l->size || !check_rec(buf, (size_t)n, &r) ||
		    r.writer >= l->writers || r.seq >= RECS) {
			fprintf(stderr, "reader %u: a bad record (%zd bytes)\n", tid, n);
			atomic_fetch_add(&l->bad, 1);
			break;
		}
		if (last[r.writer] != UINT32_MAX && r.seq <= last[r.writer]) {
			fprintf(stderr, "reader %u: writer %u's %u after %u\n", tid, r.writer,
				r.seq, last[r.writer]);
			atomic_fetch_add(&l->bad, 1);
		}
		last[r.writer] = r.seq;
		pthread_mutex_lock(&l->mu);
		if (l->seen[r.writer * RECS + r.seq]++) {
			fprintf(stderr, "reader %u: writer %u's %u twice\n", tid, r.writer, r.seq);
			atomic_fetch_add(&l->bad, 1);
		}
		pthread_mutex_unlock(&l->mu);
		atomic_fetch_add(&l->got, 1);
	}
	return NULL;
}

static void run_load(uint32_t features, unsigned writers, unsigned readers, size_t size)
{
	struct ts t;
	struct load l = { .t = &t, .writers = writers, .readers = readers, .size = size };
	pthread_t wt[8], rt[8];
	struct warg wa[8];
	unsigned i;
	size_t k;

	/* Small enough that the ring wraps many times and fills often. */
	ts_open(&t, 65536, features, features & IPCD_RING_F_MESSAGE ? 1024 : 0);
	peers(&t, readers, writers);
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
	ck_assert_uint_eq(head_of(&t), tail_of(&t));
	free(l.seen);
	ts_close(&t);
}

START_TEST(test_fan_in)
{
	run_load(0, 4, 1, 64);
}
END_TEST

START_TEST(test_fan_out)
{
	run_load(0, 1, 4, 64);
}
END_TEST

START_TEST(test_many_to_many)
{
	run_load(IPCD_RING_F_MESSAGE, 4, 4, 200);
}
END_TEST

/* Writer processes killed at any instruction, a reservation half done
 * included: what they published arrives whole and in order, what they
 * had not never surfaces, and the other writer's records flow on. */
START_TEST(test_writer_killed)
{
	struct ts t;
	unsigned char buf[512], out[512];
	uint32_t last[2] = { UINT32_MAX, UINT32_MAX }, tid = me();
	struct rec r;
	size_t full;
	unsigned round, other = 0, k;
	ssize_t n;
	pid_t p;
	int st;

	ts_open(&t, 65536, 0, 0);
	for (round = 0; round < 30; round++) {
		p = fork();
		ck_assert_int_ge(p, 0);
		if (p == 0) {
			uint32_t seq, ctid = me();

			for (seq = 0;; seq++) {
				make_rec(buf, 256, 0, seq);
				while (ipcd_shared_write(&t.s, buf, 256, ctid) == -EAGAIN)
					;
			}
		}
		last[0] = UINT32_MAX;
		for (k = 0; k < 50 + round * 7; k++) {
			n = ipcd_shared_read(&t.s, buf, 256, tid, 0, &full);
			if (n == -EAGAIN)
				continue;
			ck_assert_int_eq(n, 256);
			ck_assert(check_rec(buf, 256, &r));
			ck_assert(last[0] == UINT32_MAX || r.seq == last[0] + 1);
			last[0] = r.seq;
		}
		kill(p, SIGKILL);
		ck_assert_int_eq(waitpid(p, &st, 0), p);
		/* The other writer, right after: room comes as the dead one's
		 * records are read (the ring may be full of them). */
		ipcd_shared_reap(&t.s);
		for (k = 0; k < 3; k++) {
			make_rec(out, 256, 1, other);
			while (ipcd_shared_write(&t.s, out, 256, tid) == -EAGAIN) {
				n = ipcd_shared_read(&t.s, buf, 256, tid, 0, &full);
				ck_assert_int_eq(n, 256);
				ck_assert(check_rec(buf, 256, &r));
				ck_assert(last[r.writer] == UINT32_MAX ||
					  r.seq == last[r.writer] + 1);
				last[r.writer] = r.seq;
			}
			other++;
		}
		while ((n = ipcd_shared_read(&t.s, buf, 256, tid, 0, &full)) != -EAGAIN) {
			ck_assert_int_eq(n, 256);
			ck_assert(check_rec(buf, 256, &r));
			ck_assert(last[r.writer] == UINT32_MAX || r.seq == last[r.writer] + 1);
			last[r.writer] = r.seq;
		}
		ck_assert_uint_eq(last[1], other - 1);
		/* Nothing of the dead writer's holds head back. */
		ck_assert_uint_eq(head_of(&t), tail_of(&t));
	}
	ts_close(&t);
}
END_TEST

/* A writer stopped wherever it is, inside a reservation included: the
 * other writer's records keep coming (within room). */
START_TEST(test_writer_stopped)
{
	struct ts t;
	unsigned char buf[512];
	uint32_t tid = me();
	struct rec r;
	size_t full;
	unsigned round, seq = 0, mine;
	ssize_t n;
	pid_t p;
	int st;

	ts_open(&t, 65536, 0, 0);
	p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		uint32_t s, ctid = me();

		for (s = 0;; s++) {
			make_rec(buf, 128, 0, s);
			while (ipcd_shared_write(&t.s, buf, 128, ctid) == -EAGAIN)
				;
		}
	}
	for (round = 0; round < 20; round++) {
		usleep(200 + round * 50);
		kill(p, SIGSTOP);
		ck_assert_int_eq(waitpid(p, &st, WUNTRACED), p);
		while ((n = ipcd_shared_read(&t.s, buf, 128, tid, 0, &full)) > 0)
			ck_assert(check_rec(buf, 128, &r));
		for (mine = 0; mine < 100; mine++) {
			make_rec(buf, 128, 1, seq++);
			ck_assert_int_eq(ipcd_shared_write(&t.s, buf, 128, tid), 128);
			n = ipcd_shared_read(&t.s, buf, 128, tid, 0, &full);
			ck_assert_int_eq(n, 128);
			ck_assert(check_rec(buf, 128, &r));
			ck_assert_uint_eq(r.writer, 1);
		}
		kill(p, SIGCONT);
	}
	kill(p, SIGKILL);
	waitpid(p, &st, 0);
	ts_close(&t);
}
END_TEST

static Suite *shared_suite(void)
{
	Suite *s = suite_create("shared");
	TCase *tc = tcase_create("shared");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_directory_rejects);
	tcase_add_test(tc, test_stream_basic);
	tcase_add_test(tc, test_message_basic);
	tcase_add_test(tc, test_wrap_and_full);
	tcase_add_test(tc, test_peek);
	tcase_add_test(tc, test_holes);
	tcase_add_test(tc, test_order_past_hole);
	tcase_add_test(tc, test_part_past_hole);
	tcase_add_test(tc, test_head_left_short);
	tcase_add_test(tc, test_reap);
	tcase_add_test(tc, test_corrupt);
	tcase_add_test(tc, test_fan_in);
	tcase_add_test(tc, test_fan_out);
	tcase_add_test(tc, test_many_to_many);
	tcase_add_test(tc, test_writer_killed);
	tcase_add_test(tc, test_writer_stopped);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(shared_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
