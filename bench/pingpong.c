/*
 * pingpong - round-trip latency of a 64-byte message between two processes
 * over three transports, measured in one run so the ratios compare like with
 * like:
 *
 *   pipe   a pair of kernel pipes
 *   slow   two ipcd channel files driven with open/read/write (every byte
 *          goes through the daemon)
 *   fast   two ipcd channels driven through the C API (the mapped ring)
 *   queues the same, the channels coordinated by queues (user.ipcd.coord):
 *          no lock word taken per message
 *
 * Each transport runs with both processes pinned to one CPU and, when there
 * are two CPUs to use, pinned to two different CPUs.  A round trip is: the
 * pinger sends a message, the ponger receives it and sends it back, the
 * pinger receives the echo and checks that every byte came back.
 *
 *   pingpong [-n ROUNDS] [-w WARMUP] [-t pipe,slow,fast,queues] [-d MOUNTDIR]
 *            [-p DAEMON_PID] [-T SECONDS]
 *
 * Exit status: 0 all cases ran, 1 a case failed, 2 usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "ipcd.h"

#define MSG_SIZE	64
#define MSG_STOP	1u		/* last message: the ponger reports and exits */
#define DEF_ROUNDS	20000
#define DEF_WARMUP	2000
#define DEF_LIMIT_S	8		/* per case, warm-up included */
#define SPIN_DEFAULT_NS	50000		/* the C API's default, see core/chan.c */
#define FUSE_MAGIC	0x65735546	/* statfs f_type of a FUSE mount */

struct msg {
	uint64_t seq;
	uint32_t flags;
	uint32_t check;
	unsigned char fill[MSG_SIZE - 16];
};
_Static_assert(sizeof(struct msg) == MSG_SIZE, "a message is 64 bytes");

enum transport { T_PIPE, T_SLOW, T_FAST, T_QUEUES, T_COUNT };
static const char *const tnames[T_COUNT] = { "pipe", "slow", "fast", "queues" };

/* Transports that go through the C API and the mapped rings. */
static bool mapped(enum transport t)
{
	return t == T_FAST || t == T_QUEUES;
}

enum placement { P_SAME, P_CROSS, P_COUNT };
static const char *const pnames[P_COUNT] = { "same-cpu", "cross-cpu" };

/* One process's two ends: it receives on rfd or rc, sends on wfd or wc. */
struct ends {
	enum transport t;
	int rfd, wfd;			/* pipe, slow */
	struct ipcd_chan *rc, *wc;	/* fast */
};

/* What the ponger tells the pinger when it is done. */
struct report {
	int err;			/* 0, or an errno-like code */
	int64_t cpu_ns;			/* user + system over the measured rounds */
	char what[160];			/* why it failed */
};

struct result {
	bool ran, failed, limited;
	long rounds;
	double med_us, p99_us;
	double cpu_us;			/* both processes, per round trip */
	double daemon_us;		/* daemon, per round trip; < 0 unknown */
	double busy;			/* CPUs kept busy: all CPU time / wall time */
	char why[200];
};

static struct {
	long rounds, warmup, limit_s;
	const char *dir;
	pid_t daemon;
	bool want[T_COUNT];
	int cpu[2];			/* the CPUs used: [0] pinger, [1] ponger */
	int ncpu;			/* CPUs the run may use (capped at 2) */
	cpu_set_t orig;			/* the affinity we started with */
} opt;

/* ---- the hang watchdog -------------------------------------------------- */

static volatile pid_t wd_child;
static volatile sig_atomic_t wd_fired;
static char wd_case[64];

static void wd_say(const char *s)
{
	ssize_t r = write(2, s, strlen(s));

	(void)r;
}

static void on_alarm(int sig)
{
	(void)sig;
	if (wd_child > 0)
		kill(wd_child, SIGKILL);
	if (!wd_fired) {
		/* First time: the blocked call in the loop returns EINTR (or
		 * EOF once the ponger is gone) and the case fails cleanly. */
		wd_fired = 1;
		alarm(5);
		return;
	}
	wd_say("pingpong: ");
	wd_say(wd_case);
	wd_say(": stuck even after the ponger was killed; giving up\n");
	_exit(1);
}

/* ---- helpers ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t cpu_self_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* utime + stime of a whole process from /proc/PID/stat, or -1. */
static int64_t cpu_proc_ns(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* The command name may hold spaces and parentheses: skip to the last
	 * ')', then state is field 3 and utime, stime are fields 14, 15. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &ut, &st) != 2)
		return -1;
	return (int64_t)((ut + st) * (1000000000.0 / (double)sysconf(_SC_CLK_TCK)));
}

static void fill_msg(struct msg *m, uint64_t seq, uint32_t flags)
{
	size_t i;

	m->seq = seq;
	m->flags = flags;
	m->check = (uint32_t)(seq * 2654435761u) ^ flags;
	for (i = 0; i < sizeof(m->fill); i++)
		m->fill[i] = (unsigned char)(seq * 31 + i * 7);
}

static bool msg_ok(const struct msg *m)
{
	struct msg want;

	fill_msg(&want, m->seq, m->flags);
	return memcmp(&want, m, sizeof(want)) == 0;
}

static int pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* ---- transports --------------------------------------------------------- */

static void ends_init(struct ends *e, enum transport t)
{
	e->t = t;
	e->rfd = e->wfd = -1;
	e->rc = e->wc = NULL;
}

static void ends_close(struct ends *e)
{
	if (e->rfd >= 0)
		close(e->rfd);
	if (e->wfd >= 0)
		close(e->wfd);
	ipcd_close(e->rc);
	ipcd_close(e->wc);
	ends_init(e, e->t);
}

/* Open the end this process receives on (pipe: already open). */
static int open_in(struct ends *e, const char *path)
{
	int r;

	switch (e->t) {
	case T_SLOW:
		e->rfd = open(path, O_RDONLY | O_CLOEXEC);
		return e->rfd < 0 ? -errno : 0;
	case T_FAST:
	case T_QUEUES:
		r = ipcd_open(path, O_RDONLY, &e->rc);
		return r;
	default:
		return 0;
	}
}

static int open_out(struct ends *e, const char *path)
{
	switch (e->t) {
	case T_SLOW:
		e->wfd = open(path, O_WRONLY | O_CLOEXEC);
		return e->wfd < 0 ? -errno : 0;
	case T_FAST:
	case T_QUEUES:
		return ipcd_open(path, O_WRONLY, &e->wc);
	default:
		return 0;
	}
}

/* Send one whole message; 0 or -errno. */
static int send_msg(struct ends *e, const struct msg *m)
{
	const char *p = (const char *)m;
	size_t done = 0;
	ssize_t n;

	while (done < sizeof(*m)) {
		if (mapped(e->t)) {
			n = ipcd_send(e->wc, p + done, sizeof(*m) - done, 0);
			if (n < 0)
				return (int)n;
		} else {
			n = write(e->wfd, p + done, sizeof(*m) - done);
			if (n < 0)
				return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Receive one whole message; 0, -errno, or -ENODATA at end of file. */
static int recv_msg(struct ends *e, struct msg *m)
{
	char *p = (char *)m;
	size_t done = 0;
	ssize_t n;

	while (done < sizeof(*m)) {
		if (mapped(e->t)) {
			n = ipcd_recv(e->rc, p + done, sizeof(*m) - done, 0);
			if (n < 0)
				return (int)n;
		} else {
			n = read(e->rfd, p + done, sizeof(*m) - done);
			if (n < 0)
				return -errno;
		}
		if (n == 0)
			return -ENODATA;
		done += (size_t)n;
	}
	return 0;
}

/* ---- the ponger (child) ------------------------------------------------- */

static int ponger_loop(struct ends *e, long warmup, struct report *rep)
{
	int64_t start = 0;
	uint64_t expect = 0;
	struct msg m;
	int r;

	for (;;) {
		r = recv_msg(e, &m);
		if (r) {
			snprintf(rep->what, sizeof(rep->what),
				 "ponger: receive of round %" PRIu64 ": %s", expect,
				 r == -ENODATA ? "unexpected end of file" : strerror(-r));
			return r;
		}
		/* The stop message carries the next sequence number too. */
		if (!msg_ok(&m) || m.seq != expect) {
			snprintf(rep->what, sizeof(rep->what),
				 "ponger: wrong data in round %" PRIu64 " (got seq %"
				 PRIu64 " flags %u, bytes %s)", expect, m.seq,
				 (unsigned)m.flags, msg_ok(&m) ? "intact" : "corrupt");
			return -EBADMSG;
		}
		if (m.seq == (uint64_t)warmup && !(m.flags & MSG_STOP))
			start = cpu_self_ns();
		if (m.flags & MSG_STOP) {
			rep->cpu_ns = start ? cpu_self_ns() - start : 0;
			return 0;
		}
		r = send_msg(e, &m);
		if (r) {
			snprintf(rep->what, sizeof(rep->what),
				 "ponger: send of round %" PRIu64 ": %s", expect,
				 strerror(-r));
			return r;
		}
		expect++;
	}
}

static void ponger(struct ends *e, const char *in, const char *out, int cpu,
		   int ctl, long warmup)
{
	struct report rep = { 0 };
	bool ready = false;
	ssize_t w;
	int r;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	r = pin_to(cpu);
	if (r) {
		snprintf(rep.what, sizeof(rep.what), "ponger: pin to cpu %d: %s",
			 cpu, strerror(-r));
		goto out;
	}
	r = open_in(e, in);
	if (r) {
		snprintf(rep.what, sizeof(rep.what), "ponger: open %.100s for reading: %s",
			 in, strerror(-r));
		goto out;
	}
	/* Tell the pinger our reader is open, so its first send meets one. */
	w = write(ctl, "R", 1);
	(void)w;
	ready = true;
	r = open_out(e, out);
	if (r) {
		snprintf(rep.what, sizeof(rep.what), "ponger: open %.100s for writing: %s",
			 out, strerror(-r));
		goto out;
	}
	r = ponger_loop(e, warmup, &rep);
out:
	rep.err = -r;
	ends_close(e);
	if (!ready) {
		/* 'F' instead of 'R': the report follows at once. */
		w = write(ctl, "F", 1);
		(void)w;
	}
	w = write(ctl, &rep, sizeof(rep));
	(void)w;
	_exit(r ? 1 : 0);
}

/* ---- the pinger (parent) and one case ------------------------------------ */

static void fail(struct result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct result *res, const char *fmt, ...)
{
	va_list ap;

	if (res->failed)
		return;		/* keep the first reason */
	res->failed = true;
	va_start(ap, fmt);
	vsnprintf(res->why, sizeof(res->why), fmt, ap);
	va_end(ap);
}

/* Read len bytes of what the ponger says on the control pipe: first 'R'
 * (ready) or 'F' (failed before that), and last its struct report. */
static int read_ctl(int ctl, void *buf, size_t len, int timeout_ms)
{
	struct pollfd pfd = { .fd = ctl, .events = POLLIN };
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		n = read(ctl, (char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		done += (size_t)n;
	}
	return 0;
}

/* The measured loop.  Returns 0 or -errno (with res->why set). */
static int pinger_loop(struct ends *e, uint64_t *lat, struct result *res,
		       int64_t *cpu_ns, int64_t *d_ns, uint64_t *wall_ns)
{
	uint64_t deadline = now_ns() + (uint64_t)opt.limit_s * 1000000000u;
	uint64_t seq, total = (uint64_t)(opt.warmup + opt.rounds), t0, t1, tstart = 0;
	int64_t c0 = 0, d0 = -1, d1;
	struct msg m, echo;
	int r;

	for (seq = 0; seq < total; seq++) {
		if (seq == (uint64_t)opt.warmup) {
			d0 = cpu_proc_ns(opt.daemon);
			c0 = cpu_self_ns();
			tstart = now_ns();
		}
		fill_msg(&m, seq, 0);
		t0 = now_ns();
		r = send_msg(e, &m);
		if (r) {
			fail(res, "pinger: send of round %" PRIu64 ": %s", seq,
			     wd_fired ? "stuck until the watchdog fired (hang?)" : strerror(-r));
			return r;
		}
		r = recv_msg(e, &echo);
		t1 = now_ns();
		if (r) {
			fail(res, "pinger: receive of round %" PRIu64 ": %s", seq,
			     wd_fired ? "no reply before the watchdog fired (hang?)" :
			     r == -ENODATA ? "unexpected end of file" : strerror(-r));
			return r;
		}
		if (memcmp(&m, &echo, sizeof(m)) != 0) {
			fail(res, "pinger: wrong data in the echo of round %" PRIu64
			     " (got seq %" PRIu64 ")", seq, echo.seq);
			return -EBADMSG;
		}
		if (seq >= (uint64_t)opt.warmup)
			lat[seq - (uint64_t)opt.warmup] = t1 - t0;
		if (t1 > deadline && seq + 1 < total) {
			res->limited = true;
			seq++;
			break;
		}
	}
	res->rounds = seq > (uint64_t)opt.warmup ? (long)(seq - (uint64_t)opt.warmup) : 0;
	if (res->rounds > 0) {
		*wall_ns = now_ns() - tstart;
		*cpu_ns = cpu_self_ns() - c0;
		d1 = cpu_proc_ns(opt.daemon);
		*d_ns = d0 >= 0 && d1 >= 0 ? d1 - d0 : -1;
	}
	/* Tell the ponger to report and leave. */
	fill_msg(&m, seq, MSG_STOP);
	r = send_msg(e, &m);
	if (r)
		fail(res, "pinger: send of the stop message: %s", strerror(-r));
	return r;
}

static void chan_paths(char *ab, char *ba, size_t len, enum transport t,
		       enum placement p)
{
	snprintf(ab, len, "%s/pingpong-%d-%s-%s-ab", opt.dir, (int)getpid(),
		 tnames[t], pnames[p]);
	snprintf(ba, len, "%s/pingpong-%d-%s-%s-ba", opt.dir, (int)getpid(),
		 tnames[t], pnames[p]);
}

static void run_case(enum transport t, enum placement p, uint64_t *lat,
		     struct result *res)
{
	char ab[PATH_MAX], ba[PATH_MAX];
	int ctl[2] = { -1, -1 }, pab[2] = { -1, -1 }, pba[2] = { -1, -1 };
	int cpu_ping = opt.cpu[0], cpu_pong = opt.cpu[p == P_CROSS ? 1 : 0];
	int64_t cpu_ns = 0, d_ns = -1;
	uint64_t wall_ns = 0;
	struct report rep = { 0 };
	struct ends e;
	char ready;
	pid_t child;
	int r, status = 0;

	memset(res, 0, sizeof(*res));
	res->ran = true;
	res->daemon_us = -1;
	ends_init(&e, t);
	snprintf(wd_case, sizeof(wd_case), "%s %s", pnames[p], tnames[t]);
	fprintf(stderr, "pingpong: running %s %s ...\n", pnames[p], tnames[t]);

	if (t == T_PIPE) {
		if (pipe2(pab, O_CLOEXEC) < 0 || pipe2(pba, O_CLOEXEC) < 0) {
			fail(res, "pipe: %s", strerror(errno));
			goto out_unlink;
		}
	} else {
		chan_paths(ab, ba, sizeof(ab), t, p);
		if ((r = ipcd_mkchan(ab, 0600, 0, 0)) || (r = ipcd_mkchan(ba, 0600, 0, 0))) {
			fail(res, "make channels in %s: %s", opt.dir, strerror(-r));
			goto out_unlink;
		}
		if (t == T_QUEUES &&
		    (setxattr(ab, IPCD_XATTR_COORD, "queues", 6, 0) < 0 ||
		     setxattr(ba, IPCD_XATTR_COORD, "queues", 6, 0) < 0)) {
			fail(res, "coord=queues: %s", strerror(errno));
			goto out_unlink;
		}
	}
	if (pipe2(ctl, O_CLOEXEC) < 0) {
		fail(res, "pipe: %s", strerror(errno));
		goto out_unlink;
	}
	fflush(NULL);
	child = fork();
	if (child < 0) {
		fail(res, "fork: %s", strerror(errno));
		goto out_unlink;
	}
	if (child == 0) {
		close(ctl[0]);
		if (t == T_PIPE) {
			close(pab[1]);
			close(pba[0]);
			e.rfd = pab[0];
			e.wfd = pba[1];
		}
		ponger(&e, ab, ba, cpu_pong, ctl[1], opt.warmup);
	}
	close(ctl[1]);
	ctl[1] = -1;
	wd_child = child;
	wd_fired = 0;
	alarm((unsigned)opt.limit_s + 20);
	if (t == T_PIPE) {
		close(pab[0]);
		close(pba[1]);
		e.rfd = pba[0];
		e.wfd = pab[1];
		pab[0] = pba[1] = pab[1] = pba[0] = -1;
	}
	r = pin_to(cpu_ping);
	if (r) {
		fail(res, "pinger: pin to cpu %d: %s", cpu_ping, strerror(-r));
		goto out_child;
	}
	r = open_in(&e, ba);
	if (r) {
		fail(res, "pinger: open %s for reading: %s", ba, strerror(-r));
		goto out_child;
	}
	r = read_ctl(ctl[0], &ready, 1, 10000);
	if (r || ready != 'R') {
		/* The ponger failed before it was ready: its report says why. */
		if (!r && read_ctl(ctl[0], &rep, sizeof(rep), 1000) == 0 && rep.err)
			fail(res, "%s", rep.what);
		else
			fail(res, "the ponger never became ready: %s",
			     r ? strerror(-r) : "bad control byte");
		goto out_child;
	}
	r = open_out(&e, ab);
	if (r) {
		fail(res, "pinger: open %s for writing: %s", ab, strerror(-r));
		goto out_child;
	}
	r = pinger_loop(&e, lat, res, &cpu_ns, &d_ns, &wall_ns);
	/* Either way the ponger reports, unless it is stuck or dead. */
	if (read_ctl(ctl[0], &rep, sizeof(rep), r ? 1000 : 10000) == 0) {
		if (rep.err) {
			/* Its reason comes first: it usually explains ours. */
			res->failed = false;
			fail(res, "%s", rep.what);
		}
	} else if (!r) {
		fail(res, "the ponger did not report after the stop message");
	}
out_child:
	ends_close(&e);
	if (res->failed)
		kill(child, SIGKILL);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	alarm(0);
	wd_child = 0;
	if (!res->failed && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		fail(res, "the ponger exited with status %d", status);
	if (!res->failed && res->rounds > 0) {
		qsort(lat, (size_t)res->rounds, sizeof(*lat), cmp_u64);
		/* Nearest rank. */
		res->med_us = (double)lat[(res->rounds - 1) / 2] / 1000.0;
		res->p99_us = (double)lat[(res->rounds * 99 + 99) / 100 - 1] / 1000.0;
		res->cpu_us = (double)(cpu_ns + rep.cpu_ns) / 1000.0 / (double)res->rounds;
		res->daemon_us = d_ns >= 0 ? (double)d_ns / 1000.0 / (double)res->rounds : -1;
		res->busy = (double)(cpu_ns + rep.cpu_ns + (d_ns > 0 ? d_ns : 0)) /
			    (double)wall_ns;
	} else if (!res->failed) {
		fail(res, "no measured rounds within the time limit");
	}
out_unlink:
	sched_setaffinity(0, sizeof(opt.orig), &opt.orig);
	if (ctl[0] >= 0)
		close(ctl[0]);
	if (ctl[1] >= 0)
		close(ctl[1]);
	if (t == T_PIPE) {
		int *fds[] = { &pab[0], &pab[1], &pba[0], &pba[1] };
		size_t i;

		for (i = 0; i < 4; i++)
			if (*fds[i] >= 0)
				close(*fds[i]);
	} else {
		unlink(ab);
		unlink(ba);
	}
	if (res->failed)
		fprintf(stderr, "pingpong: %s %s failed: %s\n", pnames[p], tnames[t],
			res->why);
}

/* ---- set-up and the report ------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pingpong [-n ROUNDS] [-w WARMUP] [-t pipe,slow,fast,queues] [-d MOUNTDIR]\n"
		"                [-p DAEMON_PID] [-T SECONDS]\n"
		"  -n ROUNDS   measured round trips per case (default %d)\n"
		"  -w WARMUP   round trips before measuring (default %d)\n"
		"  -t LIST     transports, comma-separated (default pipe,slow,fast,queues)\n"
		"  -d DIR      a directory on an ipcd mount (needed for slow and fast)\n"
		"  -p PID      the ipcd daemon, to charge its CPU time to each case\n"
		"  -T SECONDS  time limit per case, warm-up included (default %d)\n"
		"Environment: IPCD_SPIN_NS, how long a fast-path end spins before it\n"
		"sleeps (default %d).\n", DEF_ROUNDS, DEF_WARMUP, DEF_LIMIT_S, SPIN_DEFAULT_NS);
}

static long parse_long(const char *s, long min, long max, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "pingpong: bad %s '%s' (%ld to %ld)\n", what, s, min, max);
		exit(2);
	}
	return v;
}

static void parse_transports(char *list)
{
	char *tok, *save = NULL;
	int t;

	memset(opt.want, 0, sizeof(opt.want));
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (t = 0; t < T_COUNT; t++)
			if (!strcmp(tok, tnames[t]))
				break;
		if (t == T_COUNT) {
			fprintf(stderr, "pingpong: unknown transport '%s' (pipe, slow, fast, queues)\n",
				tok);
			exit(2);
		}
		opt.want[t] = true;
	}
}

/* Whether the fast path works on this mount: map a scratch channel. */
static int probe_fast(char *why, size_t len)
{
	char path[PATH_MAX];
	struct ipcd_chan *c;
	int r;

	snprintf(path, sizeof(path), "%s/pingpong-%d-probe", opt.dir, (int)getpid());
	r = ipcd_mkchan(path, 0600, 0, 0);
	if (r) {
		snprintf(why, len, "cannot make a channel in %s: %s", opt.dir,
			 strerror(-r));
		return r;
	}
	r = ipcd_open(path, O_RDWR, &c);
	if (r)
		snprintf(why, len, "ipcd_open: %s%s", strerror(-r),
			 r == -ENODEV ? " (the mount has no fast path)" : "");
	else
		ipcd_close(c);
	unlink(path);
	return r;
}

/* The CPUs the daemon's main thread may use, as a list ("0-1", "0"). */
static const char *daemon_cpus(char *buf, size_t len)
{
	cpu_set_t set;
	size_t used = 0;
	int i, j;

	if (sched_getaffinity(opt.daemon, sizeof(set), &set) < 0) {
		snprintf(buf, len, "unknown (%s)", strerror(errno));
		return buf;
	}
	buf[0] = 0;
	for (i = 0; i < CPU_SETSIZE && used < len; i = j) {
		if (!CPU_ISSET(i, &set)) {
			j = i + 1;
			continue;
		}
		for (j = i + 1; j < CPU_SETSIZE && CPU_ISSET(j, &set); j++)
			;
		used += (size_t)snprintf(buf + used, len - used, j - 1 > i ? "%s%d-%d" : "%s%d",
					 used ? "," : "", i, j - 1);
	}
	if (CPU_EQUAL(&set, &opt.orig))
		snprintf(buf + strlen(buf), len - strlen(buf), " (not pinned)");
	return buf;
}

static void ratio_str(char *buf, size_t len, double pipe_v, double other, bool ok)
{
	double q;

	if (!ok || pipe_v <= 0 || other <= 0) {
		snprintf(buf, len, "-");
		return;
	}
	q = pipe_v / other;
	if (q >= 1.0)
		snprintf(buf, len, "%.2f (%.1fx faster)", q, q);
	else
		snprintf(buf, len, "%.2f (%.1fx slower)", q, 1.0 / q);
}

static bool good(const struct result *r)
{
	return r->ran && !r->failed && r->rounds > 0;
}

static void print_results(struct result res[P_COUNT][T_COUNT])
{
	char buf[6][40];
	int p, t;

	printf("\n%-9s  %-9s  %7s  %10s  %10s  %14s  %14s  %9s\n", "placement",
	       "transport", "rounds", "median_us", "p99_us", "cpu_us/rt_proc",
	       "cpu_us/rt_daem", "cpus_busy");
	for (p = 0; p < P_COUNT; p++) {
		for (t = 0; t < T_COUNT; t++) {
			const struct result *r = &res[p][t];

			if (!r->ran)
				continue;
			if (!good(r)) {
				printf("%-9s  %-9s  FAILED: %s\n", pnames[p], tnames[t], r->why);
				continue;
			}
			if (r->daemon_us >= 0)
				snprintf(buf[0], sizeof(buf[0]), "%.2f", r->daemon_us);
			else
				snprintf(buf[0], sizeof(buf[0]), "n/a");
			printf("%-9s  %-9s  %6ld%s  %10.2f  %10.2f  %14.2f  %14s  %9.2f\n",
			       pnames[p], tnames[t], r->rounds, r->limited ? "*" : " ",
			       r->med_us, r->p99_us, r->cpu_us, buf[0], r->busy);
		}
	}

	printf("\nratios to the kernel pipe (pipe latency / transport latency; "
	       "above 1: faster than the pipe, below 1: slower)\n");
	printf("%-9s  %-22s  %-22s  %-22s  %-22s  %-22s  %s\n", "placement",
	       "pipe/slow median", "pipe/slow p99", "pipe/fast median", "pipe/fast p99",
	       "pipe/queues median", "pipe/queues p99");
	for (p = 0; p < P_COUNT; p++) {
		const struct result *pp = &res[p][T_PIPE], *s = &res[p][T_SLOW],
				    *f = &res[p][T_FAST], *q = &res[p][T_QUEUES];

		if (!pp->ran && !s->ran && !f->ran && !q->ran)
			continue;
		ratio_str(buf[0], sizeof(buf[0]), pp->med_us, s->med_us, good(pp) && good(s));
		ratio_str(buf[1], sizeof(buf[1]), pp->p99_us, s->p99_us, good(pp) && good(s));
		ratio_str(buf[2], sizeof(buf[2]), pp->med_us, f->med_us, good(pp) && good(f));
		ratio_str(buf[3], sizeof(buf[3]), pp->p99_us, f->p99_us, good(pp) && good(f));
		ratio_str(buf[4], sizeof(buf[4]), pp->med_us, q->med_us, good(pp) && good(q));
		ratio_str(buf[5], sizeof(buf[5]), pp->p99_us, q->p99_us, good(pp) && good(q));
		printf("%-9s  %-22s  %-22s  %-22s  %-22s  %-22s  %s\n", pnames[p], buf[0],
		       buf[1], buf[2], buf[3], buf[4], buf[5]);
	}
	printf("\nlatency: one round trip (send 64 bytes, receive the 64-byte echo), "
	       "nearest-rank percentiles\n"
	       "cpu_us/rt_proc: user+system CPU of both processes per round trip "
	       "(getrusage)\n"
	       "cpu_us/rt_daem: the daemon's utime+stime per round trip (/proc/PID/stat, "
	       "clock-tick resolution)\n"
	       "cpus_busy: all that CPU time divided by the wall time of the "
	       "measured rounds\n");
	for (p = 0; p < P_COUNT; p++)
		for (t = 0; t < T_COUNT; t++)
			if (res[p][t].limited) {
				printf("*: stopped at the %ld s time limit before the "
				       "full round count\n", opt.limit_s);
				return;
			}
}

int main(int argc, char **argv)
{
	static struct result res[P_COUNT][T_COUNT];
	char tlist[] = "pipe,slow,fast,queues", why[256], status[512], cpus[64];
	const char *spin_env = getenv("IPCD_SPIN_NS");
	struct sigaction sa;
	uint64_t *lat;
	bool any_failed = false;
	int c, i, p, t;
	ssize_t n;

	opt.rounds = DEF_ROUNDS;
	opt.warmup = DEF_WARMUP;
	opt.limit_s = DEF_LIMIT_S;
	parse_transports(tlist);
	while ((c = getopt(argc, argv, "n:w:t:d:p:T:h")) != -1) {
		switch (c) {
		case 'n': opt.rounds = parse_long(optarg, 1, 100000000, "round count"); break;
		case 'w': opt.warmup = parse_long(optarg, 0, 100000000, "warm-up count"); break;
		case 't': parse_transports(optarg); break;
		case 'd': opt.dir = optarg; break;
		case 'p': opt.daemon = (pid_t)parse_long(optarg, 1, INT_MAX, "daemon pid"); break;
		case 'T': opt.limit_s = parse_long(optarg, 1, 3600, "time limit"); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if ((opt.want[T_SLOW] || opt.want[T_FAST] || opt.want[T_QUEUES]) && !opt.dir) {
		fprintf(stderr, "pingpong: the slow and fast transports need -d "
			"MOUNTDIR (a directory on an ipcd mount), or use -t pipe\n");
		return 2;
	}
	if (opt.want[T_SLOW] || opt.want[T_FAST] || opt.want[T_QUEUES]) {
		struct statfs sfs;

		if (statfs(opt.dir, &sfs) < 0) {
			fprintf(stderr, "pingpong: %s: %s\n", opt.dir, strerror(errno));
			return 2;
		}
		if ((unsigned long)sfs.f_type != FUSE_MAGIC) {
			fprintf(stderr, "pingpong: %s is not on an ipcd (FUSE) mount\n",
				opt.dir);
			return 2;
		}
	}
	if (opt.daemon && cpu_proc_ns(opt.daemon) < 0) {
		fprintf(stderr, "pingpong: cannot read /proc/%d/stat: daemon CPU time "
			"not measured\n", (int)opt.daemon);
		opt.daemon = 0;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;	/* no SA_RESTART: blocked calls return EINTR */
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The CPUs: the first two this process may run on. */
	if (sched_getaffinity(0, sizeof(opt.orig), &opt.orig) < 0) {
		perror("pingpong: sched_getaffinity");
		return 1;
	}
	for (i = 0; i < CPU_SETSIZE && opt.ncpu < 2; i++)
		if (CPU_ISSET(i, &opt.orig))
			opt.cpu[opt.ncpu++] = i;

	printf("ipcd ping-pong: %d-byte messages, %ld measured round trips per case "
	       "after %ld warm-up, time limit %ld s per case\n", MSG_SIZE, opt.rounds,
	       opt.warmup, opt.limit_s);
	if (spin_env)
		printf("fast path spin before sleeping: %llu ns (IPCD_SPIN_NS=%s)\n",
		       strtoull(spin_env, NULL, 10), spin_env);
	else
		printf("fast path spin before sleeping: %d ns (default; IPCD_SPIN_NS "
		       "unset)\n", SPIN_DEFAULT_NS);
	printf("CPUs usable: %d (of %ld online); same-cpu: both on cpu %d",
	       CPU_COUNT(&opt.orig), sysconf(_SC_NPROCESSORS_ONLN), opt.cpu[0]);
	if (opt.ncpu > 1)
		printf("; cross-cpu: pinger on cpu %d, ponger on cpu %d\n", opt.cpu[0],
		       opt.cpu[1]);
	else
		printf("\nonly one CPU is available: the cross-cpu case is skipped\n");
	if (opt.dir) {
		n = getxattr(opt.dir, IPCD_XATTR_STATUS, status, sizeof(status) - 1);
		if (n > 0) {
			status[n] = 0;
			status[strcspn(status, "\n")] = 0;
			printf("mount: %s (%s)\n", opt.dir, status);
		} else {
			printf("mount: %s\n", opt.dir);
		}
	}
	if (opt.daemon)
		printf("daemon: pid %d, may run on cpus %s\n", (int)opt.daemon,
		       daemon_cpus(cpus, sizeof(cpus)));
	else if (opt.want[T_SLOW] || opt.want[T_FAST] || opt.want[T_QUEUES])
		printf("daemon: pid unknown (no -p), its CPU time is not measured\n");
	if ((opt.want[T_FAST] || opt.want[T_QUEUES]) && probe_fast(why, sizeof(why))) {
		printf("fast path unavailable, skipped: %s\n", why);
		opt.want[T_FAST] = opt.want[T_QUEUES] = false;
		any_failed = true;
	}
	fflush(stdout);

	lat = calloc((size_t)opt.rounds, sizeof(*lat));
	if (!lat) {
		perror("pingpong: calloc");
		return 1;
	}
	for (p = 0; p < P_COUNT; p++) {
		if (p == P_CROSS && opt.ncpu < 2)
			break;
		for (t = 0; t < T_COUNT; t++) {
			if (!opt.want[t])
				continue;
			run_case((enum transport)t, (enum placement)p, lat, &res[p][t]);
			any_failed |= res[p][t].failed;
		}
	}
	free(lat);
	print_results(res);
	return any_failed ? 1 : 0;
}
