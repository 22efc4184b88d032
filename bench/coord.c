/*
 * coord.c - how the processes that share a channel end take turns, measured
 * side by side in one run: a kernel pipe, the ring with lock words
 * (coord=lock), a ring per writer (coord=queues) and one ring of cells
 * reserved by fetch-and-add (coord=shared).  W writer processes and R
 * reader processes share one end: every writer sends its records (writer,
 * sequence, a check, its send time), every reader checks each record whole
 * and each writer's order as it sees it, and the books balance at the end
 * (every record exactly once: per writer, the readers' counts, sums and
 * sums of squares of sequence numbers add up).
 *
 *   bench/coord [-n RECORDS | -N TOTAL] [-s SIZE] [-w W,W...] [-r R,R...]
 *               [-t pipe,lock,queues,shared] [-S] [-P USEC] [-m MOUNT [-p PID]]
 *               [-o TSV] [-T TIMELINE] [-W SECONDS] [-R ROUNDS] [-Q PCT]
 *
 * Without -m the rings live in memory of the benchmark's own (no daemon);
 * with -m they are channels on an ipcd mount, made for each case with the
 * coordination set by user.ipcd.coord and used through the C API, and the
 * CPU time per record includes the daemon's (-p: its pid) and its
 * coordination core's (core_us of the mount's user.ipcd.status).
 *
 * Prints one line per case: records per second (from the moment every
 * process has the end open to the read of the last record), the ratio to
 * the pipe of the same shape, per-record latency (receive time minus send
 * time, every stride-th record of each writer, at most NSAMP per case) at
 * p50, p99 and max, the CPU time per record and how often the processes
 * were preempted.  -o appends the same as a TSV line, with the share of
 * the CPUs that other processes and the hypervisor took meanwhile; -R runs
 * the modes of each shape in turn ROUNDS times, and with -Q a round in
 * which other processes and the hypervisor took more than PCT% of the CPUs
 * is run again.
 * With -S, writer 0 is stopped (SIGSTOP) for 20 ms of every 30 until it is
 * done, wherever it is, a lock held included: the rate and latencies are
 * those of the other writers, what a stopped process costs them, and -T
 * appends their records per millisecond over time.  With -P, every writer
 * sends one record each USEC microseconds: latency at light load.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "coord.h"
#include "ipcd.h"

#define MAXP 16
#define CAP (1u << 20)
#define SPIN 50000
#define NSAMP 100000		/* latency samples per case, all readers */
#define SLOTS (NSAMP + MAXP)	/* per reader: a writer's stride may round up */
#define BIN_NS 1000000		/* -T: 1 ms bins */
#define NBIN 60000
#define NSTOP 8192
#define EOF_S 3			/* end of file this long after the last record: lost */

struct tally {
	uint64_t n, sum, sumsq;
};

struct shared {
	_Atomic unsigned ready;		/* processes attached, waiting for go */
	_Atomic unsigned go;
	_Atomic unsigned writers_left;
	_Atomic unsigned bad;
	_Atomic uint64_t lost;		/* samples with no slot left */
	uint64_t t0;			/* the start, ns, set before go */
	_Atomic uint64_t wlast[MAXP];	/* when each writer's last record was read */
	struct tally tally[MAXP][MAXP];	/* [reader][writer], written at the end */
	unsigned nsamp[MAXP];
	_Atomic uint64_t bins[NBIN];	/* -S: others' records read per bin */
};

struct rec {
	uint32_t writer, seq, check, pad;
	uint64_t sent;			/* CLOCK_MONOTONIC ns; 0: not sampled */
};

struct result {
	double rate, cpu_ns, daemon_ns, core_ns, slow_pct, vcsw, ivcsw;
	double others, steal;		/* % of all CPUs during the case */
	uint64_t p50, p99, max, nsamp;
	int fail;
};

static unsigned nrec = 200000, size = 64, stride = 1, pace_us, limit_s = 300, rounds = 1;
static unsigned quiet_pct;
static int stopper;
static const char *mnt;
static pid_t daemon_pid;
static char chan_path[PATH_MAX];
static struct shared *sh;
static uint64_t *samples;		/* [reader][SLOTS] */
static unsigned char *map;
static size_t map_len;
static pid_t kids[2 * MAXP];
static unsigned nk;
static volatile sig_atomic_t timed_out;	/* 1: past -W; 2: no end of file */
static volatile sig_atomic_t ticking;
static unsigned ticks, eof_tick, cur_writers;
static uint64_t stop_at[NSTOP], cont_at[NSTOP];
static unsigned nstop;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t rec_check(uint32_t w, uint32_t seq)
{
	return w * 2654435761u ^ seq;
}

/* Only every stride-th record is timed: two clock reads a record would
 * cost the fastest modes a good part of their rate. */
static void fill(unsigned char *b, uint32_t w, uint32_t seq)
{
	struct rec r = { w, seq, rec_check(w, seq), 0, 0 };

	memset(b + sizeof(r), (int)(seq & 0xff), size - sizeof(r));
	if (seq % stride == 0)
		r.sent = now_ns();
	memcpy(b, &r, sizeof(r));
}

/* Every child: attached; wait until all are, so that the clock starts with
 * every end open (a writer with no reader yet would get EPIPE). */
static void start(void)
{
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load(&sh->go))
		usleep(100);
}

/* -P: one record per pace_us of each writer, writers spread over the
 * period; a writer that falls behind goes on from now, not in a burst. */
static void pace(uint64_t *next, unsigned w, unsigned writers)
{
	struct timespec ts;
	uint64_t t;

	if (!pace_us)
		return;
	if (!*next)
		*next = sh->t0 + (uint64_t)pace_us * 1000 * w / writers;
	ts.tv_sec = (time_t)(*next / 1000000000u);
	ts.tv_nsec = (long)(*next % 1000000000u);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	t = now_ns();
	*next += (uint64_t)pace_us * 1000;
	if (*next < t)
		*next = t;
}

/* ---- readers: checks, books and latencies -------------------------------------- */

struct reader {
	unsigned id, writers, n;
	uint32_t last[MAXP];
	struct tally t[MAXP];
	uint64_t *samp;
};

static void reader_init(struct reader *rd, unsigned id, unsigned writers)
{
	memset(rd, 0, sizeof(*rd));
	memset(rd->last, 0xff, sizeof(rd->last));
	rd->id = id;
	rd->writers = writers;
	rd->samp = samples + (size_t)id * SLOTS;
}

/* With -S, only the writers that are not stopped: what they pay for it. */
static void sample(struct reader *rd, const struct rec *r, uint64_t t)
{
	uint64_t bin;

	if (stopper && r->writer == 0 && rd->writers > 1)
		return;
	if (rd->n < SLOTS)
		rd->samp[rd->n++] = t > r->sent ? t - r->sent : 0;
	else
		atomic_fetch_add(&sh->lost, 1);
	if (!stopper)
		return;
	bin = (t - sh->t0) / BIN_NS;
	atomic_fetch_add_explicit(&sh->bins[bin < NBIN ? bin : NBIN - 1], stride,
				  memory_order_relaxed);
}

/* Check a record; per-writer order as this reader sees it.  Counts are
 * the reader's own until it ends: a shared counter would be one more
 * contended line per record in every mode. */
static void check(struct reader *rd, const unsigned char *b)
{
	struct rec r;
	struct tally *t;
	uint64_t at;

	memcpy(&r, b, sizeof(r));
	if (r.writer >= rd->writers || r.check != rec_check(r.writer, r.seq) ||
	    b[size - 1] != (unsigned char)(r.seq & 0xff) ||
	    (rd->last[r.writer] != UINT32_MAX && r.seq <= rd->last[r.writer])) {
		atomic_fetch_add(&sh->bad, 1);
		return;
	}
	rd->last[r.writer] = r.seq;
	t = &rd->t[r.writer];
	t->n++;
	t->sum += r.seq;
	t->sumsq += (uint64_t)r.seq * r.seq;
	if (!r.sent && r.seq != nrec - 1)
		return;
	at = now_ns();
	if (r.sent)
		sample(rd, &r, at);
	if (r.seq == nrec - 1)
		atomic_store(&sh->wlast[r.writer], at);
}

static _Noreturn void reader_done(struct reader *rd)
{
	memcpy(sh->tally[rd->id], rd->t, sizeof(rd->t));
	sh->nsamp[rd->id] = rd->n;
	_exit(0);
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
	uint64_t next = 0;
	ssize_t n;

	ipcd_view_attach(&v, map, map_len);
	start();
	for (seq = 0; seq < nrec; seq++) {
		pace(&next, w, writers);
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
	_exit(0);
}

static void lock_reader(unsigned id, unsigned writers)
{
	struct ipcd_view v;
	struct reader rd;
	unsigned char buf[4096];
	uint32_t tid = ipcd_tid();
	ssize_t n;

	reader_init(&rd, id, writers);
	ipcd_view_attach(&v, map, map_len);
	v.eof_epoch = 1;
	start();
	for (;;) {
		n = ipcd_ring_read(&v, buf, size, tid, 0, NULL);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN)
			ipcd_ring_wait(&v, IPCD_WAIT_DATA, 0, NULL, SPIN);
		else if (n == -EBUSY)
			ipcd_ring_lock_wait(&v, IPCD_WAIT_DATA);
		else if (n == (ssize_t)size)
			check(&rd, buf);
		else
			_exit(3);
	}
	reader_done(&rd);
}

/* ---- a ring per writer ---------------------------------------------------------- */

static void q_writer(unsigned w, unsigned writers)
{
	struct ipcd_qset s;
	struct ipcd_view *own;
	unsigned char buf[4096];
	uint32_t seq, tid = ipcd_tid();
	uint64_t next = 0;
	ssize_t n;

	ipcd_qset_attach(&s, map, map_len, 0);
	start();
	for (seq = 0; seq < nrec; seq++) {
		pace(&next, w, writers);
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
	_exit(0);
}

static void q_reader(unsigned id, unsigned writers)
{
	struct ipcd_qset s;
	struct reader rd;
	unsigned char buf[4096];
	uint32_t tid = ipcd_tid();
	size_t full;
	ssize_t n;

	reader_init(&rd, id, writers);
	ipcd_qset_attach(&s, map, map_len, 0);
	s.q[0].eof_epoch = 1;
	start();
	for (;;) {
		n = ipcd_qset_read(&s, buf, size, tid, 0, &full);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN)
			ipcd_ring_wait(&s.q[0], IPCD_WAIT_DATA, 0, NULL, SPIN);
		else if (n == -EBUSY)
			sched_yield();
		else if (n == (ssize_t)size)
			check(&rd, buf);
		else
			_exit(3);
	}
	ipcd_qset_release(&s, tid);
	reader_done(&rd);
}

/* ---- one ring of cells, reserved by fetch-and-add -------------------------------- */

static void sh_writer(unsigned w, unsigned writers)
{
	struct ipcd_shared s;
	unsigned char buf[4096];
	uint32_t seq, tid = ipcd_tid();
	uint64_t next = 0;
	ssize_t n;

	ipcd_shared_attach(&s, map, map_len, 0);
	start();
	for (seq = 0; seq < nrec; seq++) {
		pace(&next, w, writers);
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
	_exit(0);
}

static void sh_reader(unsigned id, unsigned writers)
{
	struct ipcd_shared s;
	struct reader rd;
	unsigned char buf[4096];
	uint32_t tid = ipcd_tid();
	size_t full;
	ssize_t n;

	reader_init(&rd, id, writers);
	ipcd_shared_attach(&s, map, map_len, 0);
	s.v.eof_epoch = 1;
	start();
	for (;;) {
		n = ipcd_shared_read(&s, buf, size, tid, 0, &full);
		if (n == IPCD_EOF)
			break;
		if (n == -EAGAIN)
			ipcd_ring_wait(&s.v, IPCD_WAIT_DATA, 0, NULL, SPIN);
		else if (n == (ssize_t)size)
			check(&rd, buf);
		else
			_exit(3);
	}
	reader_done(&rd);
}

/* ---- a kernel pipe -------------------------------------------------------------- */

static int pfd[2];

static void pipe_writer(unsigned w, unsigned writers)
{
	unsigned char buf[4096];
	uint32_t seq;
	uint64_t next = 0;

	close(pfd[0]);
	start();
	for (seq = 0; seq < nrec; seq++) {
		pace(&next, w, writers);
		fill(buf, w, seq);
		if (write(pfd[1], buf, size) != (ssize_t)size)
			_exit(2);
	}
	_exit(0);
}

static void pipe_reader(unsigned id, unsigned writers)
{
	struct reader rd;
	unsigned char buf[4096];
	ssize_t n;

	reader_init(&rd, id, writers);
	close(pfd[1]);
	start();
	/* Records of at most PIPE_BUF bytes arrive whole; a read of one
	 * record's size takes one (with several readers, each takes its own). */
	while ((n = read(pfd[0], buf, size)) > 0) {
		if (n != (ssize_t)size)
			_exit(3);
		check(&rd, buf);
	}
	if (n < 0)
		_exit(4);
	reader_done(&rd);
}

/* ---- a channel on an ipcd mount, through the C API ------------------------------ */

static struct ipcd_chan *mnt_open(int flags)
{
	struct ipcd_chan *c;

	if (ipcd_open(chan_path, flags, &c))
		_exit(5);
	return c;
}

/* With every writer slot taken (the first is the daemon's), ipcd_send
 * writes through the daemon: its CPU is then part of the record's. */
static void mnt_writer(unsigned w, unsigned writers)
{
	struct ipcd_chan *c = mnt_open(O_WRONLY);
	unsigned char buf[4096];
	uint64_t next = 0;
	uint32_t seq;

	start();
	for (seq = 0; seq < nrec; seq++) {
		pace(&next, w, writers);
		fill(buf, w, seq);
		if (ipcd_send(c, buf, size, 0) != (ssize_t)size)
			_exit(2);
	}
	ipcd_close(c);
	_exit(0);
}

static void mnt_reader(unsigned id, unsigned writers)
{
	struct ipcd_chan *c = mnt_open(O_RDONLY);
	struct reader rd;
	unsigned char buf[4096];
	ssize_t n;

	reader_init(&rd, id, writers);
	start();
	/* A stream channel: a write of at most PIPE_BUF bytes is read whole,
	 * as from a pipe; a short read fails the case. */
	while ((n = ipcd_recv(c, buf, size, 0)) > 0) {
		if (n != (ssize_t)size)
			_exit(3);
		check(&rd, buf);
	}
	if (n < 0)
		_exit(4);
	ipcd_close(c);
	reader_done(&rd);
}

/* ---- setting a case up ----------------------------------------------------------- */

static int setup_memory(const char *mode, unsigned writers, unsigned readers)
{
	unsigned nq = writers < 2 ? 2 : writers;

	memset(map, 0, map_len);
	if (!strcmp(mode, "lock")) {
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
	return 0;
}

/* A new stream channel of the mount's capacity, with this coordination
 * set before anyone opens it. */
static int setup_mount(const char *mode)
{
	static unsigned seq;
	int r;

	snprintf(chan_path, sizeof(chan_path), "%s/coord.%d.%u", mnt, (int)getpid(), seq++);
	r = ipcd_mkchan(chan_path, 0600, 0, 0);
	if (r) {
		fprintf(stderr, "coord: cannot make %s: %s\n", chan_path, strerror(-r));
		return -1;
	}
	if (setxattr(chan_path, "user.ipcd.coord", mode, strlen(mode), 0)) {
		fprintf(stderr, "coord: setxattr user.ipcd.coord=%s on %s: %s\n", mode,
			chan_path, strerror(errno));
		unlink(chan_path);
		return -1;
	}
	return 0;
}

static _Noreturn void child(const char *mode, unsigned i, unsigned writers, unsigned readers)
{
	static const struct {
		const char *mode;
		void (*reader)(unsigned id, unsigned writers);
		void (*writer)(unsigned w, unsigned writers);
	} run_as[] = {
		{ "pipe", pipe_reader, pipe_writer },
		{ "lock", lock_reader, lock_writer },
		{ "queues", q_reader, q_writer },
		{ "shared", sh_reader, sh_writer },
	};
	unsigned k;

	signal(SIGALRM, SIG_DFL);
	for (k = 0; k < 4; k++) {
		if (strcmp(mode, run_as[k].mode))
			continue;
		if (mnt && k > 0) {
			if (i < readers)
				mnt_reader(i, writers);
			mnt_writer(i - readers, writers);
		}
		if (i < readers)
			run_as[k].reader(i, writers);
		run_as[k].writer(i - readers, writers);
	}
	_exit(6);
}

/* ---- measuring ------------------------------------------------------------------- */

struct cpu {
	double cpu, daemon, core;	/* seconds; daemon and core < 0: unknown */
	double slow;			/* bytes; < 0: unknown */
	double vcsw, ivcsw;
	double self, busy, steal;	/* seconds: this process, all CPUs, stolen */
	uint64_t at;			/* ns */
};

/* The daemon's utime+stime, all its threads (clock ticks). */
static double daemon_cpu(void)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	int ok;

	if (!daemon_pid)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)daemon_pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	/* The name in parentheses may hold spaces: count from its end. */
	if (!p || !(p = strrchr(buf, ')')))
		return -1;
	ok = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return ok == 2 ? (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) : -1;
}

/* From the mount root's status line: the coordination core's CPU time
 * (core_us) and the payload the daemon moved itself (slow_bytes). */
static void mount_status(double *core, double *slow)
{
	char buf[1024], *p;
	ssize_t n;

	*core = *slow = -1;
	if (!mnt)
		return;
	n = getxattr(mnt, "user.ipcd.status", buf, sizeof(buf) - 1);
	if (n < 0)
		return;
	buf[n] = 0;
	if ((p = strstr(buf, " core_us=")))
		*core = (double)strtoull(p + 9, NULL, 10) / 1e6;
	if ((p = strstr(buf, " slow_bytes=")))
		*slow = (double)strtoull(p + 12, NULL, 10);
}

/* All CPUs' busy time, and the time the hypervisor gave them to others
 * (steal), from /proc/stat in clock ticks. */
static void machine_cpu(struct cpu *u)
{
	unsigned long long us, ni, sy, id, io, irq, sirq, st;
	double hz = (double)sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "r");

	u->busy = u->steal = -1;
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &us, &ni, &sy, &id, &io,
		   &irq, &sirq, &st) == 8) {
		u->busy = (double)(us + ni + sy + irq + sirq) / hz;
		u->steal = (double)st / hz;
	}
	fclose(f);
}

static double seconds(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void usage_now(struct cpu *u)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	u->self = seconds(&ru.ru_utime) + seconds(&ru.ru_stime);
	getrusage(RUSAGE_CHILDREN, &ru);
	u->cpu = seconds(&ru.ru_utime) + seconds(&ru.ru_stime);
	u->vcsw = (double)ru.ru_nvcsw;
	u->ivcsw = (double)ru.ru_nivcsw;
	u->daemon = daemon_cpu();
	mount_status(&u->core, &u->slow);
	machine_cpu(u);
	u->at = now_ns();
}

static void kill_all(void)
{
	unsigned i;

	for (i = 0; i < nk; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
}

/* Every second of a case: a case past its time, or whose readers have
 * not seen the end of file EOF_S seconds after every writer's last
 * record was read (waiting ends spin before they sleep: a lost wake-up
 * could burn the CPUs for the whole limit), is stopped. */
static void on_tick(int sig)
{
	unsigned w;

	(void)sig;
	if (!ticking)
		return;
	ticks++;
	for (w = 0; w < cur_writers && atomic_load(&sh->wlast[w]); w++)
		;
	if (w == cur_writers && !eof_tick)
		eof_tick = ticks;
	if (ticks >= limit_s)
		timed_out = 1;
	else if (eof_tick && ticks - eof_tick >= EOF_S)
		timed_out = 2;
	if (timed_out) {
		ticking = 0;
		kill_all();
	}
}

static void tick(int on)
{
	struct itimerval it = { { on, 0 }, { on, 0 } };

	ticks = eof_tick = 0;
	ticking = on;
	setitimer(ITIMER_REAL, &it, NULL);
}

/* Wait until every child is attached (or one has died), then start. */
static int start_all(unsigned n)
{
	unsigned i;
	int st;

	while (atomic_load(&sh->ready) < n) {
		for (i = 0; i < nk; i++)
			if (waitpid(kids[i], &st, WNOHANG) == kids[i]) {
				kids[i] = 0;
				return -1;
			}
		if (timed_out)
			return -1;
		usleep(200);
	}
	sh->t0 = now_ns();
	atomic_store(&sh->go, 1);
	return 0;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000u), (long)(t % 1000000000u) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* -S: writer 0 stopped 20 ms of every 30 until it ends; 0 if it ended
 * well.  On a fixed schedule from the start, whatever the signals do. */
static int stop_writer0(pid_t w0)
{
	uint64_t at = sh->t0;
	int st;

	for (;;) {
		at += 10000000;
		sleep_until(at);
		if (nstop < NSTOP)
			stop_at[nstop] = now_ns() - sh->t0;
		if (kill(w0, SIGSTOP) < 0)
			return 1;
		at += 20000000;
		sleep_until(at);
		kill(w0, SIGCONT);
		if (nstop < NSTOP)
			cont_at[nstop++] = now_ns() - sh->t0;
		if (waitpid(w0, &st, WNOHANG) == w0)
			return !WIFEXITED(st) || WEXITSTATUS(st);
	}
}

/* Sum of s*s for s < n, modulo 2^64: divide out the 6 first. */
static uint64_t sum_squares(uint64_t n)
{
	uint64_t a = n - 1, b = n, c = 2 * n - 1;

	if (!n)
		return 0;
	if (a % 2 == 0)
		a /= 2;
	else
		b /= 2;
	if (a % 3 == 0)
		a /= 3;
	else if (b % 3 == 0)
		b /= 3;
	else
		c /= 3;
	return a * b * c;
}

/* Every record exactly once: per writer, what all readers saw adds up. */
static int books_balance(unsigned writers, unsigned readers)
{
	uint64_t sum = (uint64_t)nrec * (nrec - 1) / 2, sq = sum_squares(nrec);
	unsigned w, r;

	for (w = 0; w < writers; w++) {
		struct tally t = { 0, 0, 0 };

		for (r = 0; r < readers; r++) {
			t.n += sh->tally[r][w].n;
			t.sum += sh->tally[r][w].sum;
			t.sumsq += sh->tally[r][w].sumsq;
		}
		if (t.n != nrec || t.sum != sum || t.sumsq != sq || !atomic_load(&sh->wlast[w])) {
			fprintf(stderr, "coord: writer %u: %llu of %u records read, or some "
				"twice\n", w, (unsigned long long)t.n, nrec);
			return 1;
		}
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentiles of all readers' samples. */
static void latencies(unsigned readers, struct result *res)
{
	uint64_t *all, n = 0;
	unsigned r;

	for (r = 0; r < readers; r++)
		n += sh->nsamp[r];
	res->nsamp = n;
	if (!n || !(all = malloc(n * sizeof(*all))))
		return;
	n = 0;
	for (r = 0; r < readers; r++) {
		memcpy(all + n, samples + (size_t)r * SLOTS, sh->nsamp[r] * sizeof(*all));
		n += sh->nsamp[r];
	}
	if (atomic_load(&sh->lost))
		fprintf(stderr, "coord: %llu latency samples found no room\n",
			(unsigned long long)atomic_load(&sh->lost));
	qsort(all, n, sizeof(*all), cmp_u64);
	res->p50 = all[(n * 50 + 99) / 100 - 1];
	res->p99 = all[(n * 99 + 99) / 100 - 1];
	res->max = all[n - 1];
	free(all);
}

/* Records per second from the start to the read of the last record (with
 * -S, of the writers not stopped): what the peers moved, not how long the
 * end of file took to be seen or the processes to be reaped. */
static double rate_of(unsigned writers)
{
	unsigned w, first = stopper && writers > 1 ? 1 : 0;
	uint64_t end = 0;

	for (w = first; w < writers; w++)
		if (atomic_load(&sh->wlast[w]) > end)
			end = atomic_load(&sh->wlast[w]);
	if (end <= sh->t0)
		return 0;
	return (double)(writers - first) * nrec / ((double)(end - sh->t0) / 1e9);
}

/* Wait for every child; with -S, stop writer 0 now and then meanwhile
 * (not once the case has failed: its children are gone). */
static int reap(unsigned readers, int failed)
{
	unsigned i;
	int st, fail = 0;

	if (stopper && !failed && kids[readers] > 0) {
		fail |= stop_writer0(kids[readers]);
		kids[readers] = 0;
	}
	for (i = 0; i < nk; i++) {
		if (!kids[i])
			continue;
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "coord: %s %u %s\n", i < readers ? "reader" : "writer",
				i < readers ? i : i - readers,
				WIFEXITED(st) ? "failed" : "was killed");
			fail = 1;
		}
		kids[i] = 0;
	}
	return fail;
}

/* What other processes used of all CPUs during the case, in %: all busy
 * time less the case's processes, this one and the daemon (clock ticks:
 * rough for short cases); and the steal.  Under 0 from rounding: 0. */
static void others_cpu(const struct cpu *u0, const struct cpu *u1, struct result *res)
{
	double all = (double)(u1->at - u0->at) / 1e9 * (double)sysconf(_SC_NPROCESSORS_ONLN);
	double mine = u1->cpu - u0->cpu + u1->self - u0->self;

	res->others = res->steal = -1;
	if (u0->busy < 0 || u1->busy < 0 || all <= 0)
		return;
	if (u0->daemon >= 0 && u1->daemon >= 0)
		mine += u1->daemon - u0->daemon;
	res->others = (u1->busy - u0->busy - mine) / all * 100;
	res->others = res->others > 0 ? res->others : 0;
	res->steal = (u1->steal - u0->steal) / all * 100;
}

static void per_record(const struct cpu *u0, const struct cpu *u1, uint64_t recs,
		       struct result *res)
{
	double n = (double)recs;

	res->daemon_ns = u0->daemon < 0 || u1->daemon < 0 ? -1 : (u1->daemon - u0->daemon) / n * 1e9;
	res->core_ns = u0->core < 0 || u1->core < 0 ? -1 : (u1->core - u0->core) / n * 1e9;
	res->cpu_ns = (u1->cpu - u0->cpu) / n * 1e9 + (res->daemon_ns > 0 ? res->daemon_ns : 0);
	res->slow_pct = u0->slow < 0 || u1->slow < 0 ? -1 : (u1->slow - u0->slow) / (n * size) * 100;
	res->vcsw = (u1->vcsw - u0->vcsw) / n * 1000;
	others_cpu(u0, u1, res);
	res->ivcsw = (u1->ivcsw - u0->ivcsw) / n * 1000;
}

static void run(const char *mode, unsigned writers, unsigned readers, struct result *res)
{
	int is_pipe = !strcmp(mode, "pipe");
	struct cpu u0, u1;
	unsigned i;

	memset(res, 0, sizeof(*res));
	memset(sh, 0, sizeof(*sh));
	atomic_store(&sh->writers_left, writers);
	stride = (unsigned)(((uint64_t)writers * nrec + NSAMP - 1) / NSAMP);
	nk = nstop = 0;
	timed_out = 0;
	cur_writers = writers;
	if ((is_pipe && pipe(pfd)) || (!is_pipe && mnt && setup_mount(mode)) ||
	    (!is_pipe && !mnt && setup_memory(mode, writers, readers))) {
		res->fail = 1;
		return;
	}
	usage_now(&u0);
	tick(1);
	for (i = 0; i < readers + writers; i++) {
		pid_t p = fork();

		if (p == 0)
			child(mode, i, writers, readers);
		if (p < 0)
			break;
		kids[nk++] = p;
	}
	if (is_pipe) {
		close(pfd[0]);
		close(pfd[1]);
	}
	res->fail = i < readers + writers || start_all(readers + writers);
	if (res->fail)
		kill_all();
	res->fail |= reap(readers, res->fail);
	tick(0);
	usage_now(&u1);
	if (timed_out == 1)
		fprintf(stderr, "coord: %s %uw %ur: no end after %u s, stopped\n", mode,
			writers, readers, limit_s);
	else if (timed_out)
		fprintf(stderr, "coord: %s %uw %ur: every record read, but no end of file "
			"%u s later: stopped\n", mode, writers, readers, EOF_S);
	if (!is_pipe && mnt)
		unlink(chan_path);
	if (atomic_load(&sh->bad))
		fprintf(stderr, "coord: %s %uw %ur: %u records broken or out of a writer's "
			"order\n", mode, writers, readers, atomic_load(&sh->bad));
	res->fail |= timed_out || atomic_load(&sh->bad) || books_balance(writers, readers);
	res->rate = rate_of(writers);
	per_record(&u0, &u1, (uint64_t)writers * nrec, res);
	latencies(readers, res);
}

/* ---- output ---------------------------------------------------------------------- */

static FILE *tsv, *timeline;

/* A value that may be unknown (< 0), for the table and the TSV. */
static const char *opt(char *buf, size_t len, double v, int prec)
{
	if (v < 0)
		return "n/a";
	snprintf(buf, len, "%.*f", prec, v);
	return buf;
}

static void print_row(const char *mode, unsigned w, unsigned r, const struct result *res,
		      double base, unsigned round, int disturbed)
{
	char b1[24], b2[24], b3[24];
	const char *dn = opt(b1, sizeof(b1), res->daemon_ns, 1);
	const char *cn = opt(b2, sizeof(b2), res->core_ns, 1);
	const char *sp = opt(b3, sizeof(b3), res->slow_pct, 2);
	double vs = base > 0 ? res->rate / base : 0.0;

	printf("%-7s %2u %2u %5u %11.0f %7.2fx %8.1f %8.1f %8.1f %9.1f %8s %7s %6s %7.2f  %s\n",
	       mode, w, r, size, res->rate, vs, (double)res->p50 / 1e3, (double)res->p99 / 1e3,
	       (double)res->max / 1e3, res->cpu_ns, dn, cn, sp, res->ivcsw,
	       res->fail ? "FAILED" : "ok");
	fflush(stdout);
	if (!tsv)
		return;
	fprintf(tsv, "%s\t%s\t%u\t%u\t%u\t%u\t%u\t%d\t%.0f\t%.4f\t%llu\t%llu\t%llu\t%.1f"
		"\t%s\t%s\t%s\t%.3f\t%.3f\t%llu\t%.1f\t%.1f\t%u\t%d\t%s\n",
		mnt ? "mount" : "memory", mode, w, r, size, nrec, pace_us, stopper, res->rate, vs,
		(unsigned long long)res->p50, (unsigned long long)res->p99,
		(unsigned long long)res->max, res->cpu_ns, dn, cn, sp, res->vcsw, res->ivcsw,
		(unsigned long long)res->nsamp, res->others, res->steal, round + 1, disturbed,
		res->fail ? "FAILED" : "ok");
	fflush(tsv);
}

/* -T: the others' records per ms, and how much of that ms writer 0 was
 * stopped. */
static void print_timeline(const char *mode, unsigned writers, unsigned round)
{
	uint64_t end = 0, b, lo, hi, s;
	unsigned w, k;

	for (w = 0; w < writers; w++)
		if (atomic_load(&sh->wlast[w]) > end)
			end = atomic_load(&sh->wlast[w]);
	end = end > sh->t0 ? (end - sh->t0) / BIN_NS + 1 : 0;
	for (b = 0; b < end && b < NBIN; b++) {
		lo = b * BIN_NS;
		hi = lo + BIN_NS;
		for (s = 0, k = 0; k < nstop; k++)
			if (stop_at[k] < hi && cont_at[k] > lo)
				s += (cont_at[k] < hi ? cont_at[k] : hi) -
				     (stop_at[k] > lo ? stop_at[k] : lo);
		fprintf(timeline, "%s\t%s\t%u\t%u\t%u\t%llu\t%llu\t%.2f\n",
			mnt ? "mount" : "memory", mode, writers, size, round + 1, (unsigned long long)b,
			(unsigned long long)atomic_load(&sh->bins[b]), (double)s / BIN_NS);
	}
	fflush(timeline);
}

static FILE *open_out(const char *path, const char *header)
{
	FILE *f = fopen(path, "a");

	if (!f) {
		perror(path);
		exit(2);
	}
	if (ftell(f) == 0)
		fprintf(f, "%s\n", header);
	return f;
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

static int setup(void)
{
	struct sigaction sa;
	size_t q;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_tick;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	map_len = ipcd_map_len_coord(CAP, 0, IPCD_COORD_LOCK, 0);
	q = ipcd_map_len_coord(65536 * 16 > CAP ? 65536 : CAP / 16, 0, IPCD_COORD_QUEUES, 16);
	if (q > map_len)
		map_len = q;
	q = ipcd_map_len_coord(CAP, 0, IPCD_COORD_SHARED, 0);
	if (q > map_len)
		map_len = q;
	map_len += 16 * CAP;	/* room for any split of the queues */
	map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	samples = mmap(NULL, (size_t)MAXP * SLOTS * sizeof(*samples), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return map == MAP_FAILED || sh == MAP_FAILED || samples == MAP_FAILED ? -1 : 0;
}

static void header(unsigned total)
{
	printf("coord: %s; %u records of %u bytes %s; %ld CPUs online%s%s\n",
	       mnt ? "channels on the mount" : "rings in memory (no daemon)",
	       total ? total : nrec, size, total ? "per case" : "per writer",
	       sysconf(_SC_NPROCESSORS_ONLN),
	       stopper ? "; writer 0 stopped 20 ms of every 30 (rate and latency: the others)" : "",
	       pace_us ? "; paced" : "");
	if (pace_us)
		printf("coord: each writer sends one record every %u us\n", pace_us);
	printf("%-7s %2s %2s %5s %11s %8s %8s %8s %8s %9s %8s %7s %6s %7s  %s\n", "mode", "w",
	       "r", "size", "records/s", "vs pipe", "p50_us", "p99_us", "max_us", "cpu_ns/rec",
	       "daemon_ns", "core_ns", "slow%", "preempt", "result");
}

static _Noreturn void usage_exit(void)
{
	fprintf(stderr, "usage: coord [-n RECORDS | -N TOTAL] [-s SIZE] [-w LIST] [-r LIST] "
		"[-t pipe,lock,queues,shared] [-S] [-P USEC] [-m MOUNT [-p PID]] [-o TSV] "
		"[-T TIMELINE] [-W SECONDS] [-R ROUNDS] [-Q PCT]\n");
	exit(2);
}

/* Each mode of a shape once, the pipe first: a round's ratios are taken
 * seconds apart, so that what else the machine does weighs on them alike.
 * The rows are printed when the round is over, flagged disturbed if other
 * processes and the hypervisor took more than -Q percent of the CPUs
 * during any of its cases (each case's timeline at once: its bins are the
 * next case's). */
static int run_round(const char *types, unsigned w, unsigned r, unsigned round, int *disturbed)
{
	static const char *const modes[4] = { "pipe", "lock", "queues", "shared" };
	struct result res[4];
	const char *ran[4];
	double noisy = 0;
	unsigned k, n = 0;
	int bad = 0;

	for (k = 0; k < 4; k++) {
		if (!strstr(types, modes[k]))
			continue;
		run(modes[k], w, r, &res[n]);
		if (timeline && stopper)
			print_timeline(modes[k], w, round);
		if (res[n].others + res[n].steal > noisy)
			noisy = res[n].others + res[n].steal;
		bad |= res[n].fail;
		ran[n++] = modes[k];
	}
	*disturbed = quiet_pct && noisy > quiet_pct;
	if (rounds > 1 || *disturbed)
		printf("-- round %u%s\n", round + 1, *disturbed ? ", disturbed: others took "
		       "more of the CPUs than -Q allows" : "");
	for (k = 0; k < n; k++)
		print_row(ran[k], w, r, &res[k], !strcmp(ran[0], "pipe") && !res[0].fail ?
			  res[0].rate : 0, round, *disturbed);
	return bad;
}

/* -R rounds of a shape; with -Q, a disturbed round is run again, up to
 * -R times more. */
static int run_shape(const char *types, unsigned w, unsigned r)
{
	unsigned done = 0, round = 0, again = quiet_pct ? rounds : 0;
	int bad = 0, disturbed;

	while (done < rounds) {
		bad |= run_round(types, w, r, round++, &disturbed);
		if (disturbed && again) {
			again--;
			continue;
		}
		done++;
	}
	return bad;
}

int main(int argc, char **argv)
{
	unsigned ws[8] = { 1, 2, 4 }, rs[8] = { 1 }, nw = 3, nr = 1, i, j, total = 0;
	const char *types = "pipe,lock,queues,shared";
	int opt, bad = 0;

	while ((opt = getopt(argc, argv, "n:N:s:w:r:t:SP:m:p:o:T:W:R:Q:")) != -1) {
		switch (opt) {
		case 'n': nrec = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'N': total = (unsigned)strtoul(optarg, NULL, 0); break;
		case 's': size = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'w': nw = parse_list(optarg, ws); break;
		case 'r': nr = parse_list(optarg, rs); break;
		case 't': types = optarg; break;
		case 'S': stopper = 1; break;
		case 'P': pace_us = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'm': mnt = optarg; break;
		case 'p': daemon_pid = (pid_t)strtol(optarg, NULL, 0); break;
		case 'o': tsv = open_out(optarg, "where\tmode\twriters\treaders\tsize\t"
				"records_per_writer\tpace_us\tstopped\trecords_per_s\tvs_pipe\t"
				"p50_ns\tp99_ns\tmax_ns\tcpu_ns_per_rec\tdaemon_ns_per_rec\t"
				"core_ns_per_rec\tslow_pct\tsleeps_per_krec\tpreempt_per_krec\tsamples\t"
				"others_pct\tsteal_pct\tround\tdisturbed\tresult"); break;
		case 'T': timeline = open_out(optarg, "where\tmode\twriters\tsize\tround\tms\t"
				"others_records\tw0_stopped"); break;
		case 'W': limit_s = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'R': rounds = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'Q': quiet_pct = (unsigned)strtoul(optarg, NULL, 0); break;
		default: usage_exit();
		}
	}
	if (optind < argc || size < sizeof(struct rec) || size > 4096 || !nw || !nr || !nrec ||
	    !rounds) {
		fprintf(stderr, "coord: size from %zu to 4096, and some writers, readers and "
			"records\n", sizeof(struct rec));
		usage_exit();
	}
	if (setup())
		return 1;
	header(total);
	for (i = 0; i < nw; i++) {
		for (j = 0; j < nr; j++) {
			if (!ws[i] || !rs[j] || ws[i] > MAXP || rs[j] > MAXP)
				continue;
			if (total)
				nrec = total / ws[i] ? total / ws[i] : 1;
			bad |= run_shape(types, ws[i], rs[j]);
		}
	}
	return bad;
}
