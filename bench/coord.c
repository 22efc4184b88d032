/*
 * coord.c - how the processes that share a channel end take turns, measured
 * side by side in one run: a kernel pipe, the ring with lock words
 * (coord=lock), a ring per writer (coord=queues) and one ring of cells
 * reserved by fetch-and-add (coord=shared).  W writer processes
 * and R reader processes share one end, on memory of their own (no daemon):
 * every writer sends its records (writer, sequence, a check), every reader
 * checks each record whole, each writer's order as it sees it, and the
 * books balance at the end (every record once).
 *
 *   bench/coord [-n RECORDS] [-s SIZE] [-w W,W...] [-r R,R...] [-t pipe,lock,queues,shared] [-S]
 *
 * Prints one line per case: records per second, the ratio to the pipe of
 * the same shape, and the CPU time per record of all processes.  With -S,
 * writer 0 is stopped (SIGSTOP) for 20 ms of every 30 until it is done,
 * wherever it is, a lock held included: what a stopped process costs the
 * others.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coord.h"

#define MAXP 16
#define CAP (1u << 20)
#define SPIN 50000

struct shared {
	_Atomic unsigned writers_left;
	_Atomic uint64_t got;
	_Atomic unsigned bad;
	_Atomic unsigned go;
};

struct rec {
	uint32_t writer, seq, check, pad;
};

static unsigned nrec = 200000, size = 64;
static int stopper;
static struct shared *sh;
static unsigned char *map;
static size_t map_len;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(unsigned char *b, uint32_t w, uint32_t seq)
{
	struct rec r = { w, seq, w * 2654435761u ^ seq, 0 };

	memcpy(b, &r, sizeof(r));
	memset(b + sizeof(r), (int)(seq & 0xff), size - sizeof(r));
}

/* Check a record; per-writer order as this reader sees it. */
static void check(const unsigned char *b, uint32_t *last, unsigned writers)
{
	struct rec r;

	memcpy(&r, b, sizeof(r));
	if (r.writer >= writers || r.check != (r.writer * 2654435761u ^ r.seq) ||
	    b[size - 1] != (unsigned char)(r.seq & 0xff) ||
	    (last[r.writer] != UINT32_MAX && r.seq <= last[r.writer]))
		atomic_fetch_add(&sh->bad, 1);
	last[r.writer] = r.seq;
	atomic_fetch_add_explicit(&sh->got, 1, memory_order_relaxed);
}

static void set_peers(struct ipcd_view *v, unsigned n, uint32_t readers, uint32_t writers,
		      uint32_t epoch)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		atomic_store(&v[i].r->readers, readers);
		atomic_store(&v[i].r->writers_epoch, (uint64_t)epoch << 32 | writers);
	}
}

/* ---- the ring with lock words -------------------------------------------------- */

static void lock_writer(unsigned w, unsigned writers)
{
	struct ipcd_view v;
	unsigned char buf[4096];
	uint32_t seq, tid = ipcd_tid();
	ssize_t n;

	ipcd_view_attach(&v, map, map_len);
	for (seq = 0; seq < nrec; seq++) {
		fill(buf, w, seq);
		while ((n = ipcd_ring_write(&v, buf, size, tid)) < 0) {
			if (n == -EAGAIN)
				ipcd_ring_wait(&v, IPCD_WAIT_SPACE, size, NULL, SPIN);
			else if (n == -EBUSY)
				ipcd_ring_lock_wait(&v, IPCD_WAIT_SPACE);
			else
				_exit(2);
		}
	}
	if (atomic_fetch_sub(&sh->writers_left, 1) == 1) {
		set_peers(&v, 1, 1, 0, 1);
		ipcd_ring_wake_all(&v, IPCD_WAIT_DATA);
	}
	(void)writers;
	_exit(0);
}

static void lock_reader(unsigned writers)
{
	struct ipcd_view v;
	unsigned char buf[4096];
	uint32_t last[MAXP], tid = ipcd_tid();
	ssize_t n;

	memset(last, 0xff, sizeof(last));
	ipcd_view_attach(&v, map, map_len);
	v.eof_epoch = 1;
	for (;;) {
		n = ipcd_ring_read(&v, buf, size, tid, 0, NULL);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN)
			ipcd_ring_wait(&v, IPCD_WAIT_DATA, 0, NULL, SPIN);
		else if (n == -EBUSY)
			ipcd_ring_lock_wait(&v, IPCD_WAIT_DATA);
		else if (n == (ssize_t)size)
			check(buf, last, writers);
		else
			_exit(3);
	}
	_exit(0);
}

/* ---- a ring per writer ---------------------------------------------------------- */

static void q_writer(unsigned w, unsigned writers)
{
	struct ipcd_qset s;
	struct ipcd_view *own;
	unsigned char buf[4096];
	uint32_t seq, tid = ipcd_tid();
	ssize_t n;

	ipcd_qset_attach(&s, map, map_len, 0);
	for (seq = 0; seq < nrec; seq++) {
		fill(buf, w, seq);
		while ((n = ipcd_qset_write(&s, buf, size, tid)) < 0) {
			if (n != -EAGAIN || !(own = ipcd_qset_wq(&s, tid)))
				_exit(2);
			ipcd_ring_wait(own, IPCD_WAIT_SPACE, size, NULL, SPIN);
		}
	}
	ipcd_qset_release(&s, tid);
	if (atomic_fetch_sub(&sh->writers_left, 1) == 1) {
		set_peers(s.q, s.n, 1, 0, 1);
		ipcd_ring_wake_all(&s.q[0], IPCD_WAIT_DATA);
	}
	(void)writers;
	_exit(0);
}

static void q_reader(unsigned writers)
{
	struct ipcd_qset s;
	unsigned char buf[4096];
	uint32_t last[MAXP], tid = ipcd_tid();
	size_t full;
	ssize_t n;

	memset(last, 0xff, sizeof(last));
	ipcd_qset_attach(&s, map, map_len, 0);
	s.q[0].eof_epoch = 1;
	for (;;) {
		n = ipcd_qset_read(&s, buf, size, tid, 0, &full);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN)
			ipcd_ring_wait(&s.q[0], IPCD_WAIT_DATA, 0, NULL, SPIN);
		else if (n == -EBUSY)
			sched_yield();
		else if (n == (ssize_t)size)
			check(buf, last, writers);
		else
			_exit(3);
	}
	ipcd_qset_release(&s, tid);
	_exit(0);
}

/* ---- one ring of cells, reserved by fetch-and-add -------------------------------- */

static void sh_writer(unsigned w, unsigned writers)
{
	struct ipcd_shared s;
	unsigned char buf[4096];
	uint32_t seq, tid = ipcd_tid();
	ssize_t n;

	ipcd_shared_attach(&s, map, map_len, 0);
	for (seq = 0; seq < nrec; seq++) {
		fill(buf, w, seq);
		while ((n = ipcd_shared_write(&s, buf, size, tid)) < 0) {
			if (n != -EAGAIN)
				_exit(2);
			ipcd_ring_wait(&s.v, IPCD_WAIT_SPACE, size, NULL, SPIN);
		}
	}
	ipcd_shared_release(&s, tid);
	if (atomic_fetch_sub(&sh->writers_left, 1) == 1) {
		set_peers(&s.v, 1, 1, 0, 1);
		ipcd_ring_wake_all(&s.v, IPCD_WAIT_DATA);
	}
	(void)writers;
	_exit(0);
}

static void sh_reader(unsigned writers)
{
	struct ipcd_shared s;
	unsigned char buf[4096];
	uint32_t last[MAXP], tid = ipcd_tid();
	size_t full;
	ssize_t n;

	memset(last, 0xff, sizeof(last));
	ipcd_shared_attach(&s, map, map_len, 0);
	s.v.eof_epoch = 1;
	for (;;) {
		n = ipcd_shared_read(&s, buf, size, tid, 0, &full);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN)
			ipcd_ring_wait(&s.v, IPCD_WAIT_DATA, 0, NULL, SPIN);
		else if (n == (ssize_t)size)
			check(buf, last, writers);
		else
			_exit(3);
	}
	_exit(0);
}

/* ---- a kernel pipe -------------------------------------------------------------- */

static int pfd[2];

static void pipe_writer(unsigned w, unsigned writers)
{
	unsigned char buf[4096];
	uint32_t seq;

	close(pfd[0]);
	for (seq = 0; seq < nrec; seq++) {
		fill(buf, w, seq);
		if (write(pfd[1], buf, size) != (ssize_t)size)
			_exit(2);
	}
	(void)writers;
	_exit(0);
}

static void pipe_reader(unsigned writers)
{
	unsigned char buf[4096];
	uint32_t last[MAXP];
	ssize_t n;

	memset(last, 0xff, sizeof(last));
	close(pfd[1]);
	/* Records of at most PIPE_BUF bytes arrive whole; a read of one
	 * record's size takes one (with several readers, each takes its own). */
	while ((n = read(pfd[0], buf, size)) > 0) {
		if (n != (ssize_t)size)
			_exit(3);
		check(buf, last, writers);
	}
	_exit(n < 0 ? 4 : 0);
}

/* ---- running a case --------------------------------------------------------------- */

static double cpu_children(void)
{
	struct rusage ru;

	getrusage(RUSAGE_CHILDREN, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int run(const char *mode, unsigned writers, unsigned readers, double *rate,
	       double *cpu)
{
	pid_t kids[2 * MAXP];
	unsigned i, nk = 0, nq = writers < 2 ? 2 : writers;
	double t0, t1, c0 = cpu_children();
	int st, fail = 0;

	memset(map, 0, map_len);
	memset(sh, 0, sizeof(*sh));
	atomic_store(&sh->writers_left, writers);
	if (!strcmp(mode, "pipe")) {
		if (pipe(pfd))
			return -1;
	} else if (!strcmp(mode, "lock")) {
		struct ipcd_view v;

		ipcd_ring_format(map, map_len, CAP, 0, 0);
		ipcd_view_attach(&v, map, map_len);
		set_peers(&v, 1, readers, writers, 1);
	} else if (!strcmp(mode, "queues")) {
		struct ipcd_qset s;

		ipcd_map_format(map, map_len, CAP / nq < 65536 ? 65536 : CAP / nq, 0, 0,
				IPCD_COORD_QUEUES, nq);
		ipcd_qset_attach(&s, map, map_len, 0);
		set_peers(s.q, s.n, readers, writers, 1);
	} else {
		struct ipcd_shared s;

		ipcd_map_format(map, map_len, CAP, 0, 0, IPCD_COORD_SHARED, 0);
		ipcd_shared_attach(&s, map, map_len, 0);
		set_peers(&s.v, 1, readers, writers, 1);
	}
	t0 = now();
	for (i = 0; i < readers + writers; i++) {
		pid_t p = fork();

		if (p < 0)
			return -1;
		if (p == 0) {
			if (i < readers) {
				if (!strcmp(mode, "pipe"))
					pipe_reader(writers);
				else if (!strcmp(mode, "lock"))
					lock_reader(writers);
				else if (!strcmp(mode, "queues"))
					q_reader(writers);
				else
					sh_reader(writers);
			} else {
				unsigned w = i - readers;

				if (!strcmp(mode, "pipe"))
					pipe_writer(w, writers);
				else if (!strcmp(mode, "lock"))
					lock_writer(w, writers);
				else if (!strcmp(mode, "queues"))
					q_writer(w, writers);
				else
					sh_writer(w, writers);
			}
		}
		kids[nk++] = p;
	}
	if (!strcmp(mode, "pipe")) {
		close(pfd[0]);
		close(pfd[1]);
	}
	if (stopper) {
		/* Writer 0 (the first after the readers) stopped now and then. */
		pid_t w0 = kids[readers];

		for (;;) {
			usleep(10000);
			if (kill(w0, SIGSTOP) < 0)
				break;
			usleep(20000);
			kill(w0, SIGCONT);
			if (waitpid(w0, &st, WNOHANG) == w0) {
				if (!WIFEXITED(st) || WEXITSTATUS(st))
					fail = 1;
				kids[readers] = 0;
				break;
			}
		}
	}
	for (i = 0; i < nk; i++) {
		if (!kids[i])
			continue;
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st))
			fail = 1;
	}
	t1 = now();
	*cpu = (cpu_children() - c0) / ((double)writers * nrec) * 1e6;
	*rate = (double)writers * nrec / (t1 - t0);
	if (atomic_load(&sh->bad) || atomic_load(&sh->got) != (uint64_t)writers * nrec)
		fail = 1;
	return fail;
}

static unsigned parse_list(const char *s, unsigned *out)
{
	unsigned n = 0;
	char *end;

	while (*s && n < 8) {
		out[n++] = (unsigned)strtoul(s, &end, 10);
		s = *end == ',' ? end + 1 : end;
		if (end == s && *s)
			break;
	}
	return n;
}

int main(int argc, char **argv)
{
	unsigned ws[8] = { 1, 2, 4 }, rs[8] = { 1 }, nw = 3, nr = 1, i, j, k;
	const char *modes[4] = { "pipe", "lock", "queues", "shared" };
	const char *types = "pipe,lock,queues,shared";
	double rate, cpu, base;
	int opt, bad = 0;

	while ((opt = getopt(argc, argv, "n:s:w:r:t:S")) != -1) {
		switch (opt) {
		case 'n': nrec = (unsigned)strtoul(optarg, NULL, 0); break;
		case 's': size = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'w': nw = parse_list(optarg, ws); break;
		case 'r': nr = parse_list(optarg, rs); break;
		case 't': types = optarg; break;
		case 'S': stopper = 1; break;
		default:
			fprintf(stderr, "usage: coord [-n RECORDS] [-s SIZE] [-w LIST] [-r LIST] "
				"[-t pipe,lock,queues,shared] [-S]\n");
			return 2;
		}
	}
	if (size < sizeof(struct rec) || size > 4096 || !nw || !nr) {
		fprintf(stderr, "coord: size from %zu to 4096, and some writers and readers\n",
			sizeof(struct rec));
		return 2;
	}
	map_len = ipcd_map_len_coord(CAP, 0, IPCD_COORD_LOCK, 0);
	{
		size_t q = ipcd_map_len_coord(65536 * 16 > CAP ? 65536 : CAP / 16, 0,
					      IPCD_COORD_QUEUES, 16);

		if (q > map_len)
			map_len = q;
		q = ipcd_map_len_coord(CAP, 0, IPCD_COORD_SHARED, 0);
		if (q > map_len)
			map_len = q;
		map_len += 16 * CAP;	/* room for any split of the queues */
	}
	map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED || sh == MAP_FAILED)
		return 1;
	printf("coord: %u records of %u bytes per writer; %ld CPUs online%s\n", nrec, size,
	       sysconf(_SC_NPROCESSORS_ONLN),
	       stopper ? "; writer 0 stopped 20 ms of every 30" : "");
	printf("%-7s %7s %7s %14s %10s %12s  %s\n", "mode", "writers", "readers", "records/s",
	       "vs pipe", "cpu_us/rec", "result");
	for (i = 0; i < nw; i++) {
		for (j = 0; j < nr; j++) {
			base = 0;
			for (k = 0; k < 4; k++) {
				int r;

				if (!strstr(types, modes[k]))
					continue;
				if (ws[i] > MAXP || rs[j] > MAXP)
					continue;
				r = run(modes[k], ws[i], rs[j], &rate, &cpu);
				if (k == 0)
					base = rate;
				printf("%-7s %7u %7u %14.0f %9.2fx %12.3f  %s\n", modes[k], ws[i],
				       rs[j], rate, base > 0 ? rate / base : 0.0, cpu,
				       r ? "FAILED" : "ok");
				bad |= r != 0;
				fflush(stdout);
			}
		}
	}
	return bad;
}
