/*
 * shim_bench - what the LD_PRELOAD shim does for a program that knows
 * nothing of ipcd.  It uses only ordinary calls (pipe, socketpair, read,
 * write, fork, sched_setaffinity, clock_gettime, getrusage and files under
 * /proc), and no ipcd header, so the same binary measures kernel pipes and
 * socket pairs when run plainly and ipcd channels when run with the shim
 * preloaded.
 * bench/shim_run.sh runs it both ways in one session and then calls it a
 * third time to compare the two result files.
 *
 * Cases (each data case with both processes pinned to one CPU, "same", and
 * to two different CPUs, "cross"):
 *
 *   pp      64-byte ping-pong over a pair of pipes and over one
 *           socketpair(AF_UNIX, SOCK_STREAM): round-trip latency
 *           (also over a bare ring, -t bare: two rings of bytes in shared
 *           memory, both ends spinning, the floor the shim is held to)
 *   s64     one-way stream of 64-byte write()s, read back 64 bytes per
 *           read(): messages per second
 *   s64k    one-way stream of 64 KiB write()s: bytes per second
 *   idle    two processes exchange some traffic, then both block in read()
 *           for a while: the CPU time they and the daemon use meanwhile
 *   ovh     read(), write() and fcntl(F_GETFL) on fds that are not channels
 *           (/dev/zero, /dev/null, a regular file): ns per call
 *
 *   shim_bench [-o FILE] [-p DAEMON_PID] [-l LABEL] [-c CASES] [-t KINDS]
 *              [-P PLACES] [-n ROUNDS] [-w WARMUP] [-T SECONDS] [-s SECONDS]
 *              [-i SECONDS]
 *   shim_bench -r KERNEL_FILE SHIM_FILE
 *
 * Exit status: 0 all cases ran, 1 a case failed, 2 usage.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE	64
#define BIG_SIZE	65536
#define DEF_ROUNDS	20000
#define DEF_WARMUP	2000
#define DEF_LIMIT_S	3		/* per ping-pong case, warm-up included */
#define DEF_STREAM_S	1.0		/* measured part of a stream case */
#define STREAM_WARM_S	0.1		/* before that, not measured */
#define DEF_IDLE_S	2.0
#define IDLE_ROUNDS	2000		/* traffic before the idle window */
#define SPIN_DEFAULT_NS	50000		/* the shim's default, see core/chan.c */
#define OVH_BATCHES	41
#define OVH_CALLS	5000

/* Targets the project hopes for; the comparison says whether they are met. */
#define TGT_PP_CROSS	50.0		/* cross-CPU pipe ping-pong speed-up */
#define TGT_PP_SAME	1.0		/* same-CPU: no slower than the pipe */
#define TGT_S64		20.0		/* 64-byte stream, messages/s */
#define TGT_BARE	0.5		/* cross-CPU pipe ping-pong: bare ring's time / shim's */
#define TGT_S64K	5.0		/* 64 KiB stream, bytes/s */
#define TGT_IDLE_US	2000.0		/* CPU of both processes + daemon in the window */
#define TGT_OVH_NS	5.0		/* extra ns per call on a non-channel fd */

/* Message flags. */
#define F_STOP		1u		/* ping-pong: the ponger reports and exits */
#define F_START		2u		/* stream: the measured part starts here */
#define F_END		4u		/* stream: the last message */

struct msg {
	uint64_t seq;
	uint32_t flags;
	uint32_t check;
	unsigned char fill[MSG_SIZE - 16];
};
_Static_assert(sizeof(struct msg) == MSG_SIZE, "a message is 64 bytes");

enum tkind { K_PIPE, K_SOCK, K_BARE, K_COUNT };
static const char *const knames[K_COUNT] = { "pipe", "socketpair", "bare" };

enum place { P_SAME, P_CROSS, P_COUNT };
static const char *const pnames[P_COUNT] = { "same", "cross" };

enum casekind { C_PP, C_S64, C_S64K, C_IDLE, C_OVH, C_COUNT };
static const char *const cnames[C_COUNT] = { "pp", "s64", "s64k", "idle", "ovh" };

/* What a child tells the parent on the control pipe when it is done. */
struct report {
	int err;			/* 0, or an errno-like code */
	int64_t cpu_ns;			/* its CPU time over the measured part */
	char what[160];			/* why it failed */
};

static struct {
	long rounds, warmup, limit_s;
	double stream_s, idle_s;
	const char *out, *label;
	pid_t daemon;
	bool want[C_COUNT], want_k[K_COUNT], want_p[P_COUNT];
	int cpu[2];			/* [0] parent, [1] child in "cross" */
	int ncpu;
	cpu_set_t orig;
} opt;

static FILE *resf;			/* the result file, or NULL */
static int failures;

/* ---- the hang watchdog -------------------------------------------------- */

static volatile pid_t wd_child[2];
static volatile sig_atomic_t wd_fired;

static void on_alarm(int sig)
{
	(void)sig;
	wd_fired = 1;
	if (wd_child[0] > 0)
		kill(wd_child[0], SIGKILL);
	if (wd_child[1] > 0)
		kill(wd_child[1], SIGKILL);
}

static void wd_arm(unsigned s, pid_t a, pid_t b)
{
	wd_fired = 0;
	wd_child[0] = a;
	wd_child[1] = b;
	alarm(s);
}

static void wd_disarm(void)
{
	alarm(0);
	wd_child[0] = wd_child[1] = 0;
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

/* utime + stime of a whole process from /proc/PID/stat (clock ticks), or -1. */
static int64_t proc_stat_ns(pid_t pid)
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
	/* The name may hold spaces and parentheses: start after the last ')';
	 * then state is field 3, utime and stime are fields 14 and 15. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &ut, &st) != 2)
		return -1;
	return (int64_t)((ut + st) * (1000000000.0 / (double)sysconf(_SC_CLK_TCK)));
}

/* Run time of all threads of a process in ns, from /proc/PID/task/ * /schedstat
 * (finer than the clock ticks of stat), or -1. */
static int64_t proc_sched_ns(pid_t pid)
{
	char path[300], buf[128];
	struct dirent *de;
	unsigned long long v;
	int64_t sum = 0;
	bool any = false;
	ssize_t n;
	DIR *d;
	int fd;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.32s/schedstat", (int)pid,
			 de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		if (sscanf(buf, "%llu", &v) == 1) {
			sum += (int64_t)v;
			any = true;
		}
	}
	closedir(d);
	return any ? sum : -1;
}

static int pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

static void unpin(void)
{
	sched_setaffinity(0, sizeof(opt.orig), &opt.orig);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
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

/* Write or read all of len bytes.  0, -errno, or -ENODATA at end of file.
 * EINTR is retried unless the watchdog fired. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR && !wd_fired)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	ssize_t n;

	while (len) {
		n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR && !wd_fired)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Read len bytes from a control pipe.  A plain blocking read: the case's
 * watchdog bounds it.  (Not poll() with a timeout: under the shim a control
 * pipe is a channel too, and a poll() that finds a channel not ready waits in
 * the daemon, which at the time of writing is not woken by the peer's write,
 * so it would last until the timeout.)
 */
static int read_ctl(int ctl, void *buf, size_t len)
{
	return read_all(ctl, buf, len);
}

static const char *errstr(int r)
{
	if (wd_fired)
		return "stopped by the watchdog (hang?)";
	return r == -ENODATA ? "unexpected end of file" : strerror(-r);
}

/* ---- results ------------------------------------------------------------ */

/* v with prec decimals, or "n/a" when it is negative (not measured). */
static void fmt_num(char *buf, size_t len, double v, int prec)
{
	if (v < 0)
		snprintf(buf, len, "n/a");
	else
		snprintf(buf, len, "%.*f", prec, v);
}

static void put(const char *key, double v)
{
	if (resf) {
		fprintf(resf, "%s %.6g\n", key, v);
		fflush(resf);	/* a run stopped by its timeout keeps what it got */
	}
}

static void put_str(const char *key, const char *v)
{
	if (resf)
		fprintf(resf, "%s %s\n", key, v);
}

static void case_failed(const char *key, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void case_failed(const char *key, const char *fmt, ...)
{
	char why[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fprintf(stderr, "shim_bench: %s failed: %s\n", key, why);
	printf("%-26s FAILED: %s\n", key, why);
	if (resf)
		fprintf(resf, "%s.failed %s\n", key, why);
	failures++;
}

/* ---- a bare ring: the floor the shim is measured against ----------------- */

/*
 * Two processes and one shared mapping, nothing else: per direction a ring
 * of bytes as large as a pipe's buffer, one writer and one reader, its
 * indexes on lines of their own, a release store to publish and an
 * acquire load to see, no lock, no atomic read-modify-write, no fence, and
 * a waiting side that only spins (yielding now and then, so that two ends
 * on one CPU take turns).  Each side keeps the other's index as it last
 * loaded it and loads it again only when that shows too little (too few
 * bytes, too little room): the line the other side writes is read only
 * when needed.  No daemon, no sleeping, no checks of what the
 * other side wrote: what a channel costs beyond moving the bytes is the
 * difference to this.
 */
#define BARE_CAP	65536u
#define BARE_YIELD	64		/* polls between yields */

struct bare_ring {
	_Alignas(64) _Atomic uint64_t head;
	uint64_t seen_tail;	/* the reader's: tail as it last loaded it */
	_Alignas(64) _Atomic uint64_t tail;
	uint64_t seen_head;	/* the writer's: head as it last loaded it */
	_Alignas(64) unsigned char data[BARE_CAP];
};

struct bare {
	struct bare_ring ring[2];	/* [0] from A to B, [1] from B to A */
};

static inline void bare_relax(unsigned *polls)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
	if (++*polls % BARE_YIELD == 0)
		sched_yield();
}

static int bare_write(struct bare_ring *r, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed), h = r->seen_head;
	uint64_t at, n, first;
	unsigned polls = 0;

	while (len) {
		if (t - h == BARE_CAP)
			h = r->seen_head = atomic_load_explicit(&r->head, memory_order_acquire);
		if (t - h == BARE_CAP) {
			if (wd_fired)
				return -EINTR;
			bare_relax(&polls);
			continue;
		}
		n = BARE_CAP - (t - h) < len ? BARE_CAP - (t - h) : len;
		at = t % BARE_CAP;
		first = BARE_CAP - at < n ? BARE_CAP - at : n;
		memcpy(r->data + at, p, first);
		memcpy(r->data, p + first, n - first);
		t += n;
		p += n;
		len -= n;
		atomic_store_explicit(&r->tail, t, memory_order_release);
	}
	return 0;
}

static int bare_read(struct bare_ring *r, void *buf, size_t len)
{
	unsigned char *p = buf;
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed), t = r->seen_tail;
	uint64_t at, n, first;
	unsigned polls = 0;

	while (len) {
		if (t - h < len)
			t = r->seen_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (t == h) {
			if (wd_fired)
				return -EINTR;
			bare_relax(&polls);
			continue;
		}
		n = t - h < len ? t - h : len;
		at = h % BARE_CAP;
		first = BARE_CAP - at < n ? BARE_CAP - at : n;
		memcpy(p, r->data + at, first);
		memcpy(p + first, r->data, n - first);
		h += n;
		p += n;
		len -= n;
		atomic_store_explicit(&r->head, h, memory_order_release);
	}
	return 0;
}

/* ---- the two ends of a link ---------------------------------------------- */

/*
 * A link carries bytes both ways between side A (the parent) and side B (a
 * child): two pipes, or one socket pair.  fd[]: pipe ab (0 read, 1 write),
 * pipe ba (2 read, 3 write); or the socket pair in fd[0] (A) and fd[1] (B).
 */
struct link {
	enum tkind k;
	int fd[4];
	struct bare *bare;	/* K_BARE: the shared mapping */
};

struct side {
	int rfd, wfd;
	struct bare_ring *in, *out;	/* K_BARE */
};

static int link_open(struct link *l, enum tkind k)
{
	int i;

	l->k = k;
	l->bare = NULL;
	for (i = 0; i < 4; i++)
		l->fd[i] = -1;
	if (k == K_BARE) {
		l->bare = mmap(NULL, sizeof(struct bare), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (l->bare == MAP_FAILED) {
			l->bare = NULL;
			return -errno;
		}
		return 0;
	}
	if (k == K_PIPE) {
		if (pipe(&l->fd[0]) < 0)
			return -errno;
		if (pipe(&l->fd[2]) < 0)
			return -errno;
		return 0;
	}
	return socketpair(AF_UNIX, SOCK_STREAM, 0, l->fd) < 0 ? -errno : 0;
}

static struct side link_side(const struct link *l, int b)
{
	struct side s = { -1, -1, NULL, NULL };

	if (l->k == K_BARE) {
		s.in = &l->bare->ring[b ? 0 : 1];
		s.out = &l->bare->ring[b ? 1 : 0];
	} else if (l->k == K_PIPE) {
		s.rfd = b ? l->fd[0] : l->fd[2];
		s.wfd = b ? l->fd[3] : l->fd[1];
	} else {
		s.rfd = s.wfd = l->fd[b ? 1 : 0];
	}
	return s;
}

/* Close every fd of the link except those of side `b`. */
static void link_keep(struct link *l, int b)
{
	struct side s = link_side(l, b);
	int i;

	for (i = 0; i < 4; i++)
		if (l->fd[i] >= 0 && l->fd[i] != s.rfd && l->fd[i] != s.wfd) {
			close(l->fd[i]);
			l->fd[i] = -1;
		}
}

static void link_close(struct link *l)
{
	int i;

	if (l->bare) {
		munmap(l->bare, sizeof(struct bare));
		l->bare = NULL;
	}
	for (i = 0; i < 4; i++)
		if (l->fd[i] >= 0) {
			close(l->fd[i]);
			l->fd[i] = -1;
		}
}

/* The bytes of a link, whichever kind it is. */
static int side_write(const struct side *s, const void *buf, size_t len)
{
	return s->out ? bare_write(s->out, buf, len) : write_all(s->wfd, buf, len);
}

static int side_read(const struct side *s, void *buf, size_t len)
{
	return s->in ? bare_read(s->in, buf, len) : read_all(s->rfd, buf, len);
}

/* What an fd really is: "kernel" for a kernel pipe or socket, else "ipcd"
 * (the shim gave a channel file on the mount). */
static const char *fd_kind(int fd)
{
	char path[64], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return "unknown";
	target[n] = 0;
	if (!strncmp(target, "pipe:", 5) || !strncmp(target, "socket:", 7))
		return "kernel";
	return "ipcd";
}

/* Fork a child that runs fn(arg) and _exits with its value; -errno or pid. */
static pid_t spawn(int (*fn)(void *), void *arg)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fn(arg));
	}
	return pid;
}

static int reap(pid_t pid)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/* ---- ping-pong ----------------------------------------------------------- */

struct pp_child {
	struct link *l;
	int cpu, ctl;
};

static int ponger(void *arg)
{
	struct pp_child *a = arg;
	struct report rep = { 0 };
	struct side s;
	struct msg m;
	uint64_t expect = 0;
	int64_t start = 0;
	bool ready = false;
	int r;

	link_keep(a->l, 1);
	s = link_side(a->l, 1);
	r = pin_to(a->cpu);
	if (r) {
		snprintf(rep.what, sizeof(rep.what), "ponger: pin to cpu %d: %s", a->cpu,
			 strerror(-r));
		goto out;
	}
	/* 'R': ready; 'F' (below): failed, the report follows at once. */
	r = write_all(a->ctl, "R", 1);
	if (r)
		return 1;
	ready = true;
	for (;;) {
		r = side_read(&s, &m, sizeof(m));
		if (r) {
			snprintf(rep.what, sizeof(rep.what), "ponger: read of round %" PRIu64
				 ": %s", expect, errstr(r));
			break;
		}
		if (!msg_ok(&m) || m.seq != expect) {
			snprintf(rep.what, sizeof(rep.what), "ponger: wrong data in round %"
				 PRIu64 " (got seq %" PRIu64 ")", expect, m.seq);
			r = -EBADMSG;
			break;
		}
		if (m.seq == (uint64_t)opt.warmup)
			start = cpu_self_ns();
		if (m.flags & F_STOP) {
			rep.cpu_ns = start ? cpu_self_ns() - start : 0;
			break;
		}
		r = side_write(&s, &m, sizeof(m));
		if (r) {
			snprintf(rep.what, sizeof(rep.what), "ponger: write of round %" PRIu64
				 ": %s", expect, errstr(r));
			break;
		}
		expect++;
	}
out:
	rep.err = -r;
	if ((!ready && write_all(a->ctl, "F", 1)) || write_all(a->ctl, &rep, sizeof(rep)))
		return 1;
	return r ? 1 : 0;
}

static bool pp_limited;

struct pp_res {
	long rounds;
	bool limited;
	double med_us, p99_us, cpu_us, busy;
};

static void pp_print_head(void)
{
	printf("\nping-pong, 64 B, round trip (write 64 B, read the 64 B echo)\n");
	printf("%-10s  %-5s  %7s  %10s  %10s  %10s  %9s\n", "transport", "cpus",
	       "rounds", "median_us", "p99_us", "cpu_us/rt", "cpus_busy");
}

/* One ping-pong case: its row in the table and its results, or with quiet
 * neither (a pair of pp_vs_bare).  Returns the median round trip in us, or
 * 0 if the case failed. */
static double case_pp(enum tkind k, enum place p, uint64_t *lat, bool quiet)
{
	char key[64];
	struct link l;
	struct pp_child a;
	struct pp_res res = { 0 };
	struct report rep = { 0 };
	struct side s;
	struct msg m, echo;
	uint64_t seq, total = (uint64_t)(opt.warmup + opt.rounds), t0, t1, tstart = 0;
	uint64_t deadline, wall = 1;
	int64_t c0 = 0, cpu = 0;
	int ctl[2] = { -1, -1 }, r;
	char ready = 0;
	double med = 0;
	pid_t child;

	snprintf(key, sizeof(key), "pp.%s.%s", knames[k], pnames[p]);
	fprintf(stderr, "shim_bench: %s ...\n", key);
	r = link_open(&l, k);
	if (r || pipe(ctl) < 0) {
		case_failed(key, "pipe/socketpair: %s", strerror(r ? -r : errno));
		link_close(&l);
		return 0;
	}
	a.l = &l;
	a.cpu = opt.cpu[p == P_CROSS ? 1 : 0];
	a.ctl = ctl[1];
	child = spawn(ponger, &a);
	close(ctl[1]);
	if (child < 0) {
		case_failed(key, "fork: %s", strerror((int)-child));
		close(ctl[0]);
		link_close(&l);
		return 0;
	}
	link_keep(&l, 0);
	s = link_side(&l, 0);
	wd_arm((unsigned)opt.limit_s + 10, child, 0);
	r = pin_to(opt.cpu[0]);
	if (r) {
		case_failed(key, "pin to cpu %d: %s", opt.cpu[0], strerror(-r));
		goto out;
	}
	r = read_ctl(ctl[0], &ready, 1);
	if (r || ready != 'R') {
		if (read_ctl(ctl[0], &rep, sizeof(rep)) == 0 && rep.err)
			case_failed(key, "%s", rep.what);
		else
			case_failed(key, "the ponger never became ready");
		goto out;
	}
	deadline = now_ns() + (uint64_t)opt.limit_s * 1000000000u;
	for (seq = 0; seq < total; seq++) {
		if (seq == (uint64_t)opt.warmup) {
			c0 = cpu_self_ns();
			tstart = now_ns();
		}
		fill_msg(&m, seq, 0);
		t0 = now_ns();
		r = side_write(&s, &m, sizeof(m));
		if (!r)
			r = side_read(&s, &echo, sizeof(echo));
		t1 = now_ns();
		if (r) {
			case_failed(key, "round %" PRIu64 ": %s", seq, errstr(r));
			goto out;
		}
		if (memcmp(&m, &echo, sizeof(m))) {
			case_failed(key, "wrong echo in round %" PRIu64, seq);
			goto out;
		}
		if (seq >= (uint64_t)opt.warmup)
			lat[seq - (uint64_t)opt.warmup] = t1 - t0;
		if (t1 > deadline && seq + 1 < total) {
			res.limited = true;
			seq++;
			break;
		}
	}
	res.rounds = seq > (uint64_t)opt.warmup ? (long)(seq - (uint64_t)opt.warmup) : 0;
	if (res.rounds > 0) {
		wall = now_ns() - tstart;
		cpu = cpu_self_ns() - c0;
	}
	fill_msg(&m, seq, F_STOP);
	r = side_write(&s, &m, sizeof(m));
	if (r) {
		case_failed(key, "stop message: %s", errstr(r));
		goto out;
	}
	r = read_ctl(ctl[0], &rep, sizeof(rep));
	if (r || rep.err) {
		case_failed(key, "%s", r ? "the ponger did not report" : rep.what);
		goto out;
	}
	if (res.rounds == 0) {
		case_failed(key, "no measured rounds within %ld s", opt.limit_s);
		goto out;
	}
	qsort(lat, (size_t)res.rounds, sizeof(*lat), cmp_u64);
	res.med_us = (double)lat[(res.rounds - 1) / 2] / 1000.0;
	res.p99_us = (double)lat[(res.rounds * 99 + 99) / 100 - 1] / 1000.0;
	res.cpu_us = (double)(cpu + rep.cpu_ns) / 1000.0 / (double)res.rounds;
	res.busy = (double)(cpu + rep.cpu_ns) / (double)wall;
	med = res.med_us;
	if (quiet)
		goto out;
	pp_limited |= res.limited;
	printf("%-10s  %-5s  %6ld%s  %10.2f  %10.2f  %10.2f  %9.2f\n", knames[k],
	       pnames[p], res.rounds, res.limited ? "*" : " ", res.med_us, res.p99_us,
	       res.cpu_us, res.busy);
	{
		char kk[96];

		snprintf(kk, sizeof(kk), "%s.med_us", key);
		put(kk, res.med_us);
		snprintf(kk, sizeof(kk), "%s.p99_us", key);
		put(kk, res.p99_us);
		snprintf(kk, sizeof(kk), "%s.rounds", key);
		put(kk, (double)res.rounds);
		snprintf(kk, sizeof(kk), "%s.busy", key);
		put(kk, res.busy);
	}
out:
	close(ctl[0]);
	link_close(&l);
	reap(child);
	wd_disarm();
	unpin();
	return med;
}

/*
 * The cross-CPU pipe ping-pong against the bare ring, in pairs run back to
 * back: where the host places the two vCPUs changes the speed of a cache
 * line between them several times over, from one minute to the next, so
 * two cases run a few seconds apart may not compare.  PP_PAIRS pairs of a
 * quarter of the rounds each; the ratio (bare ring's median over the
 * pipe's) of every pair, and their median.
 */
#define PP_PAIRS	5

static void pp_vs_bare(uint64_t *lat)
{
	double ratio[PP_PAIRS], pipe_us[PP_PAIRS], bare_us[PP_PAIRS], pm, bm;
	long rounds = opt.rounds, warmup = opt.warmup;
	int i, n = 0;

	opt.rounds = rounds / 4 > 0 ? rounds / 4 : 1;
	opt.warmup = warmup / 4;
	for (i = 0; i < PP_PAIRS; i++) {
		pm = case_pp(K_PIPE, P_CROSS, lat, true);
		bm = case_pp(K_BARE, P_CROSS, lat, true);
		if (pm <= 0 || bm <= 0)
			continue;
		pipe_us[n] = pm;
		bare_us[n] = bm;
		ratio[n++] = bm / pm;
	}
	opt.rounds = rounds;
	opt.warmup = warmup;
	if (n == 0) {
		case_failed("ppbare.cross", "no pair of pipe and bare ring ping-pongs ran");
		return;
	}
	qsort(ratio, (size_t)n, sizeof(*ratio), cmp_dbl);
	qsort(pipe_us, (size_t)n, sizeof(*pipe_us), cmp_dbl);
	qsort(bare_us, (size_t)n, sizeof(*bare_us), cmp_dbl);
	printf("pipe and bare ring, cross, %d pairs back to back of %ld rounds: medians %.2f "
	       "and %.2f us; bare/pipe %.2fx (pairs %.2fx-%.2fx)\n", n, rounds / 4 > 0 ? rounds / 4 : 1,
	       pipe_us[(n - 1) / 2], bare_us[(n - 1) / 2], ratio[(n - 1) / 2], ratio[0],
	       ratio[n - 1]);
	put("ppbare.cross.ratio", ratio[(n - 1) / 2]);
	put("ppbare.cross.ratio_min", ratio[0]);
	put("ppbare.cross.ratio_max", ratio[n - 1]);
	put("ppbare.cross.pipe_us", pipe_us[(n - 1) / 2]);
	put("ppbare.cross.bare_us", bare_us[(n - 1) / 2]);
}

/* ---- one-way streams ----------------------------------------------------- */

struct st_child {
	struct link *l;
	int cpu, ctl;
	size_t size;
};

/* Stamp a stream message: seq and flags at the front, seq again at the end. */
static void stamp(unsigned char *buf, size_t size, uint64_t seq, uint32_t flags)
{
	uint64_t f = flags;

	memcpy(buf, &seq, 8);
	memcpy(buf + 8, &f, 8);
	if (size >= 32)
		memcpy(buf + size - 8, &seq, 8);
}

static int writer(void *arg)
{
	struct st_child *a = arg;
	struct report rep = { 0 };
	unsigned char *buf;
	uint64_t seq = 0, t, tstart, trun = 0, mask;
	uint64_t warm = (uint64_t)(STREAM_WARM_S * 1e9), run = (uint64_t)(opt.stream_s * 1e9);
	int64_t c0 = 0;
	uint32_t flags;
	struct side s;
	int phase = 0, r;	/* 0 warm-up, 1 measured, 2 done */

	link_keep(a->l, 1);
	s = link_side(a->l, 1);
	buf = malloc(a->size);
	if (!buf) {
		r = -ENOMEM;
		snprintf(rep.what, sizeof(rep.what), "writer: out of memory");
		goto out;
	}
	memset(buf, 0x5a, a->size);
	r = pin_to(a->cpu);
	if (r) {
		snprintf(rep.what, sizeof(rep.what), "writer: pin to cpu %d: %s", a->cpu,
			 strerror(-r));
		goto out;
	}
	/* Look at the clock every message for big ones, every 256 small ones. */
	mask = a->size >= 4096 ? 0 : 255;
	tstart = now_ns();
	for (;;) {
		flags = 0;
		if ((seq & mask) == 0) {
			t = now_ns();
			if (phase == 0 && t - tstart >= warm) {
				phase = 1;
				flags = F_START;
				trun = t;
				c0 = cpu_self_ns();
			} else if (phase == 1 && t - trun >= run) {
				phase = 2;
				flags = F_END;
			}
		}
		stamp(buf, a->size, seq, flags);
		r = side_write(&s, buf, a->size);
		if (r) {
			snprintf(rep.what, sizeof(rep.what), "writer: write of message %"
				 PRIu64 ": %s", seq, errstr(r));
			break;
		}
		if (flags & F_END) {
			rep.cpu_ns = cpu_self_ns() - c0;
			break;
		}
		seq++;
	}
out:
	free(buf);
	rep.err = -r;
	if (write_all(a->ctl, &rep, sizeof(rep)))
		return 1;
	return r ? 1 : 0;
}

static void st_print_head(void)
{
	printf("\none-way streams (the child writes, the parent reads)\n");
	printf("%-26s  %-5s  %10s  %14s  %9s  %10s\n", "case", "cpus", "messages",
	       "rate", "cpus_busy", "daemon_ms");
}

static void case_stream(enum tkind k, enum place p, size_t size)
{
	char key[64], kk[96], label[40], dbuf[32];
	struct link l;
	struct st_child a;
	struct report rep = { 0 };
	struct side s;
	unsigned char *buf = NULL;
	uint64_t expect = 0, seq, t0 = 0, t1 = 0, seq0 = 0, got_flags, tail;
	int64_t c0 = 0, c1 = 0, d0, d1;
	int ctl[2] = { -1, -1 }, r;
	bool big = size > MSG_SIZE;
	double rate, count, busy;
	pid_t child;

	snprintf(key, sizeof(key), "%s.%s.%s", big ? "s64k" : "s64", knames[k], pnames[p]);
	snprintf(label, sizeof(label), "%s %s", big ? "64 KiB" : "64 B", knames[k]);
	fprintf(stderr, "shim_bench: %s ...\n", key);
	buf = malloc(size);
	r = link_open(&l, k);
	if (!buf || r || pipe(ctl) < 0) {
		case_failed(key, "set-up: %s", !buf ? "out of memory" :
			    strerror(r ? -r : errno));
		link_close(&l);
		free(buf);
		return;
	}
	a.l = &l;
	a.cpu = opt.cpu[p == P_CROSS ? 1 : 0];
	a.ctl = ctl[1];
	a.size = size;
	r = pin_to(opt.cpu[0]);
	if (r) {
		case_failed(key, "pin to cpu %d: %s", opt.cpu[0], strerror(-r));
		close(ctl[0]);
		close(ctl[1]);
		link_close(&l);
		free(buf);
		return;
	}
	d0 = proc_sched_ns(opt.daemon);
	child = spawn(writer, &a);
	close(ctl[1]);
	if (child < 0) {
		case_failed(key, "fork: %s", strerror((int)-child));
		close(ctl[0]);
		link_close(&l);
		free(buf);
		unpin();
		return;
	}
	link_keep(&l, 0);
	s = link_side(&l, 0);
	wd_arm((unsigned)(STREAM_WARM_S + opt.stream_s) + 10, child, 0);
	for (;;) {
		r = side_read(&s, buf, size);
		if (r) {
			case_failed(key, "read of message %" PRIu64 ": %s", expect, errstr(r));
			goto out;
		}
		memcpy(&seq, buf, 8);
		memcpy(&got_flags, buf + 8, 8);
		tail = seq;
		if (size >= 32)
			memcpy(&tail, buf + size - 8, 8);
		if (seq != expect || tail != seq || got_flags > (F_START | F_END)) {
			case_failed(key, "wrong data in message %" PRIu64 " (got seq %" PRIu64
				    ")", expect, seq);
			goto out;
		}
		if (got_flags & F_START) {
			t0 = now_ns();
			c0 = cpu_self_ns();
			seq0 = seq;
		}
		if (got_flags & F_END) {
			t1 = now_ns();
			c1 = cpu_self_ns();
			break;
		}
		expect++;
	}
	d1 = proc_sched_ns(opt.daemon);
	r = read_ctl(ctl[0], &rep, sizeof(rep));
	if (r || rep.err) {
		case_failed(key, "%s", r ? "the writer did not report" : rep.what);
		goto out;
	}
	if (t1 <= t0 || seq == seq0) {
		case_failed(key, "nothing measured");
		goto out;
	}
	count = (double)(seq - seq0);
	rate = count / ((double)(t1 - t0) / 1e9);
	busy = (double)(c1 - c0 + rep.cpu_ns) / (double)(t1 - t0);
	fmt_num(dbuf, sizeof(dbuf), d0 >= 0 && d1 >= 0 ? (double)(d1 - d0) / 1e6 : -1, 2);
	if (big)
		printf("%-26s  %-5s  %10.0f  %9.2f GB/s  %9.2f  %10s\n", label, pnames[p],
		       count, rate * (double)size / 1e9, busy, dbuf);
	else
		printf("%-26s  %-5s  %10.0f  %7.2f Mmsg/s  %9.2f  %10s\n", label,
		       pnames[p], count, rate / 1e6, busy, dbuf);
	snprintf(kk, sizeof(kk), "%s.rate", key);
	put(kk, big ? rate * (double)size : rate);
	snprintf(kk, sizeof(kk), "%s.busy", key);
	put(kk, busy);
out:
	close(ctl[0]);
	link_close(&l);
	reap(child);
	wd_disarm();
	free(buf);
	unpin();
}

/* ---- idle after traffic -------------------------------------------------- */

/*
 * Process X pings process Y IDLE_ROUNDS times over a link, tells the parent
 * it is done and reads again; Y is blocked reading for the next ping.  Both
 * now wait in read() with nothing coming.  The parent, which kept the link's
 * write ends, measures their CPU time and the daemon's over the idle window,
 * then writes a stop message to each.
 */
struct idle_child {
	struct link *l;
	int which;		/* 0: X (side A of the link), 1: Y (side B) */
	int cpu, ctl;
};

static int idler(void *arg)
{
	struct idle_child *a = arg;
	struct side s = link_side(a->l, a->which);
	struct msg m;
	long i;
	int r;

	pin_to(a->cpu);
	if (a->which == 0) {
		for (i = 0; i < IDLE_ROUNDS; i++) {
			fill_msg(&m, (uint64_t)i, 0);
			if ((r = side_write(&s, &m, sizeof(m))) ||
			    (r = side_read(&s, &m, sizeof(m))))
				return 1;
		}
		if (write_all(a->ctl, "D", 1))
			return 1;
		/* Idle: the parent's stop message ends this read. */
		r = side_read(&s, &m, sizeof(m));
		return r || !(m.flags & F_STOP);
	}
	for (;;) {
		if (side_read(&s, &m, sizeof(m)) || !msg_ok(&m))
			return 1;
		if (m.flags & F_STOP)
			return 0;
		if (side_write(&s, &m, sizeof(m)))
			return 1;
	}
}

static void case_idle(enum tkind k)
{
	char key[64], kk[96], nb[3][32];
	struct link l;
	struct idle_child ax, ay;
	struct side sa, sb;
	struct msg m;
	struct timespec ts;
	int64_t p0[2], p1[2], ps0[2], ps1[2], d0, d1, ds0, ds1, procs, procs_stat;
	int ctl[2] = { -1, -1 }, r, i;
	uint64_t w0, w1;
	pid_t x = -1, y = -1;
	char done = 0;

	snprintf(key, sizeof(key), "idle.%s", knames[k]);
	fprintf(stderr, "shim_bench: %s (%.1f s) ...\n", key, opt.idle_s);
	r = link_open(&l, k);
	if (r || pipe(ctl) < 0) {
		case_failed(key, "set-up: %s", strerror(r ? -r : errno));
		link_close(&l);
		return;
	}
	ax = (struct idle_child){ &l, 0, opt.cpu[0], ctl[1] };
	ay = (struct idle_child){ &l, 1, opt.cpu[opt.ncpu > 1 ? 1 : 0], ctl[1] };
	x = spawn(idler, &ax);
	y = x > 0 ? spawn(idler, &ay) : -1;
	close(ctl[1]);
	if (x < 0 || y < 0) {
		case_failed(key, "fork: %s", strerror(x < 0 ? (int)-x : (int)-y));
		if (x > 0)
			kill(x, SIGKILL);	/* it holds every end: no EOF would stop it */
		goto out;
	}
	wd_arm((unsigned)opt.idle_s + 10, x, y);
	r = read_ctl(ctl[0], &done, 1);
	if (r || done != 'D') {
		case_failed(key, "the traffic before the idle window did not finish");
		goto out;
	}
	w0 = now_ns();
	p0[0] = proc_stat_ns(x);
	p0[1] = proc_stat_ns(y);
	ps0[0] = proc_sched_ns(x);
	ps0[1] = proc_sched_ns(y);
	d0 = proc_stat_ns(opt.daemon);
	ds0 = proc_sched_ns(opt.daemon);
	ts.tv_sec = (time_t)opt.idle_s;
	ts.tv_nsec = (long)((opt.idle_s - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR && !wd_fired)
		;
	p1[0] = proc_stat_ns(x);
	p1[1] = proc_stat_ns(y);
	ps1[0] = proc_sched_ns(x);
	ps1[1] = proc_sched_ns(y);
	d1 = proc_stat_ns(opt.daemon);
	ds1 = proc_sched_ns(opt.daemon);
	w1 = now_ns();
	/* Wake both: X reads side A's read end, Y side B's. */
	sa = link_side(&l, 0);
	sb = link_side(&l, 1);
	fill_msg(&m, 0, F_STOP);
	if (write_all(sb.wfd, &m, sizeof(m)) || write_all(sa.wfd, &m, sizeof(m))) {
		case_failed(key, "could not send the stop messages");
		goto out;
	}
	for (i = 0; i < 2; i++)
		if (p0[i] < 0 || p1[i] < 0) {
			case_failed(key, "cannot read /proc/PID/stat of the children");
			goto out;
		}
	procs_stat = p1[0] - p0[0] + p1[1] - p0[1];
	procs = ps0[0] >= 0 && ps0[1] >= 0 && ps1[0] >= 0 && ps1[1] >= 0 ?
		ps1[0] - ps0[0] + ps1[1] - ps0[1] : -1;
	fmt_num(nb[0], sizeof(nb[0]), procs >= 0 ? (double)procs / 1e3 : -1, 1);
	fmt_num(nb[1], sizeof(nb[1]), d0 >= 0 && d1 >= 0 ? (double)(d1 - d0) / 1e6 : -1, 1);
	fmt_num(nb[2], sizeof(nb[2]), ds0 >= 0 && ds1 >= 0 ? (double)(ds1 - ds0) / 1e3 : -1, 1);
	printf("%-26s  %8.2f  %13.1f  %10s  %15s  %10s\n", knames[k],
	       (double)(w1 - w0) / 1e9, (double)procs_stat / 1e6, nb[0], nb[1], nb[2]);
	snprintf(kk, sizeof(kk), "%s.procs_stat_ms", key);
	put(kk, (double)procs_stat / 1e6);
	snprintf(kk, sizeof(kk), "%s.procs_us", key);
	put(kk, procs >= 0 ? (double)procs / 1e3 : -1.0);
	snprintf(kk, sizeof(kk), "%s.daemon_stat_ms", key);
	put(kk, d0 >= 0 && d1 >= 0 ? (double)(d1 - d0) / 1e6 : -1.0);
	snprintf(kk, sizeof(kk), "%s.daemon_us", key);
	put(kk, ds0 >= 0 && ds1 >= 0 ? (double)(ds1 - ds0) / 1e3 : -1.0);
out:
	close(ctl[0]);
	link_close(&l);
	if (x > 0)
		reap(x);
	if (y > 0)
		reap(y);
	wd_disarm();
}

/* ---- overhead on fds that are not channels ------------------------------- */

enum ovh_op { O_READ, O_WRITE, O_FCNTL, O_COUNT };
static const char *const onames[O_COUNT] = { "read", "write", "fcntl" };
static const char *const olabels[O_COUNT] = {
	"read(/dev/zero, 1 B)", "write(/dev/null, 1 B)", "fcntl(F_GETFL), file"
};

/* ns per call over n calls; raw: the system call without libc's wrapper
 * (and so without any preloaded wrapper either). */
static double time_calls(enum ovh_op op, bool raw, int fd, long n)
{
	char c = 0;
	uint64_t t0;
	long i;

	t0 = now_ns();
	switch (op) {
	case O_READ:
		if (raw)
			for (i = 0; i < n; i++)
				syscall(SYS_read, fd, &c, 1);
		else
			for (i = 0; i < n; i++)
				if (read(fd, &c, 1) < 0)
					break;
		break;
	case O_WRITE:
		if (raw)
			for (i = 0; i < n; i++)
				syscall(SYS_write, fd, &c, 1);
		else
			for (i = 0; i < n; i++)
				if (write(fd, &c, 1) < 0)
					break;
		break;
	default:
		if (raw)
			for (i = 0; i < n; i++)
				syscall(SYS_fcntl, fd, F_GETFL);
		else
			for (i = 0; i < n; i++)
				if (fcntl(fd, F_GETFL) < 0)
					break;
		break;
	}
	return (double)(now_ns() - t0) / (double)n;
}

static void case_ovh(void)
{
	char path[] = "/tmp/shim_bench.XXXXXX", kk[96];
	double libc[OVH_BATCHES], raw[OVH_BATCHES], lmed, rmed;
	int fds[O_COUNT], keep[2] = { -1, -1 }, op, b;

	fprintf(stderr, "shim_bench: ovh ...\n");
	/* A channel (under the shim) stays open throughout, so the shim's fd
	 * table is in use and every call takes the full lookup. */
	if (pipe(keep) < 0) {
		case_failed("ovh", "pipe: %s", strerror(errno));
		return;
	}
	fds[O_READ] = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	fds[O_WRITE] = open("/dev/null", O_WRONLY | O_CLOEXEC);
	fds[O_FCNTL] = mkstemp(path);
	if (fds[O_FCNTL] >= 0)
		unlink(path);
	if (fds[O_READ] < 0 || fds[O_WRITE] < 0 || fds[O_FCNTL] < 0) {
		case_failed("ovh", "open: %s", strerror(errno));
		goto out;
	}
	pin_to(opt.cpu[0]);
	printf("\ncalls on fds that are not channels (a pipe() stays open meanwhile); "
	       "median of %d batches of %d calls\n", OVH_BATCHES, OVH_CALLS);
	printf("%-26s  %12s  %16s  %14s\n", "call", "libc ns/call", "syscall() ns/call",
	       "difference ns");
	for (op = 0; op < O_COUNT; op++) {
		time_calls((enum ovh_op)op, false, fds[op], OVH_CALLS);	/* warm */
		time_calls((enum ovh_op)op, true, fds[op], OVH_CALLS);
		/* Interleaved, so drift on the machine hits both alike. */
		for (b = 0; b < OVH_BATCHES; b++) {
			libc[b] = time_calls((enum ovh_op)op, false, fds[op], OVH_CALLS);
			raw[b] = time_calls((enum ovh_op)op, true, fds[op], OVH_CALLS);
		}
		qsort(libc, OVH_BATCHES, sizeof(double), cmp_dbl);
		qsort(raw, OVH_BATCHES, sizeof(double), cmp_dbl);
		lmed = libc[OVH_BATCHES / 2];
		rmed = raw[OVH_BATCHES / 2];
		printf("%-26s  %12.1f  %16.1f  %+14.1f\n", olabels[op], lmed, rmed, lmed - rmed);
		snprintf(kk, sizeof(kk), "ovh.%s.libc_ns", onames[op]);
		put(kk, lmed);
		snprintf(kk, sizeof(kk), "ovh.%s.raw_ns", onames[op]);
		put(kk, rmed);
	}
out:
	for (op = 0; op < O_COUNT; op++)
		if (fds[op] >= 0)
			close(fds[op]);
	close(keep[0]);
	close(keep[1]);
	unpin();
}

/* ---- the comparison of two result files ---------------------------------- */

struct kv {
	char key[64];
	char val[200];
};

struct resfile {
	struct kv *kv;
	int n;
};

static int load(const char *path, struct resfile *rf)
{
	char line[300], *sp;
	FILE *f = fopen(path, "r");
	int cap = 0;

	rf->kv = NULL;
	rf->n = 0;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = 0;
		if (rf->n == cap) {
			struct kv *m;

			cap = cap ? cap * 2 : 64;
			m = realloc(rf->kv, (size_t)cap * sizeof(*m));
			if (!m) {
				fclose(f);
				return -ENOMEM;
			}
			rf->kv = m;
		}
		snprintf(rf->kv[rf->n].key, sizeof(rf->kv[0].key), "%.63s", line);
		snprintf(rf->kv[rf->n].val, sizeof(rf->kv[0].val), "%.199s", sp + 1);
		rf->n++;
	}
	fclose(f);
	return 0;
}

static const char *get_str(const struct resfile *rf, const char *key)
{
	int i;

	for (i = 0; i < rf->n; i++)
		if (!strcmp(rf->kv[i].key, key))
			return rf->kv[i].val;
	return NULL;
}

/* The value of key, or NAN-like -1 when it is missing (every value we
 * compare is positive). */
static double get(const struct resfile *rf, const char *key)
{
	const char *v = get_str(rf, key);

	return v ? strtod(v, NULL) : -1.0;
}

enum better { LOWER, HIGHER };

static void speedup_str(char *buf, size_t len, double kern, double shim, enum better b)
{
	double q;

	if (kern <= 0 || shim <= 0) {
		snprintf(buf, len, "-");
		return;
	}
	q = b == LOWER ? kern / shim : shim / kern;
	snprintf(buf, len, q >= 10 ? "%.0fx" : "%.2fx", q);
}

static int targets_met, targets_total;

static void target_str(char *buf, size_t len, double kern, double shim, enum better b,
		       double want)
{
	double q;

	if (want <= 0) {
		snprintf(buf, len, "(info)");
		return;
	}
	targets_total++;
	if (kern <= 0 || shim <= 0) {
		snprintf(buf, len, ">= %gx: no data", want);
		return;
	}
	q = b == LOWER ? kern / shim : shim / kern;
	if (q >= want)
		targets_met++;
	snprintf(buf, len, ">= %gx: %s", want, q >= want ? "met" : "NOT met");
}

static void cmp_row(const struct resfile *k, const struct resfile *s, const char *label,
		    const char *cpus, const char *key, double scale, enum better b,
		    double want)
{
	char kb[32], sb[32], q[32], t[48], fk[96];
	double kv = get(k, key), sv = get(s, key);

	snprintf(fk, sizeof(fk), "%.*s.failed", (int)(strrchr(key, '.') - key), key);
	if (kv > 0)
		snprintf(kb, sizeof(kb), "%.2f", kv * scale);
	else
		snprintf(kb, sizeof(kb), "%s", get_str(k, fk) ? "FAILED" : "-");
	if (sv > 0)
		snprintf(sb, sizeof(sb), "%.2f", sv * scale);
	else
		snprintf(sb, sizeof(sb), "%s", get_str(s, fk) ? "FAILED" : "-");
	speedup_str(q, sizeof(q), kv, sv, b);
	target_str(t, sizeof(t), kv, sv, b, want);
	printf("%-34s  %-5s  %10s  %10s  %9s  %s\n", label, cpus, kb, sb, q, t);
}

/*
 * The shim's pipe against the bare ring, both from the shim run (one
 * session, one placement): the kernel column shows the bare ring's figure,
 * the shim column the pipe's under the shim, the ratio the bare ring's
 * over the shim's (1: as fast as the floor; the target: within 2 times).
 */
static void bare_rows(const struct resfile *s)
{
	char kb[32], sb[32], q[32], t[64], key[96];
	double bv, sv, qv, lo = 0, hi = 0;
	int p;

	for (p = 0; p < P_COUNT; p++) {
		snprintf(key, sizeof(key), "pp.bare.%s.med_us", pnames[p]);
		bv = get(s, key);
		snprintf(key, sizeof(key), "pp.pipe.%s.med_us", pnames[p]);
		sv = get(s, key);
		qv = bv > 0 && sv > 0 ? bv / sv : 0;
		/* Across CPUs, the pairs run back to back (pp_vs_bare). */
		if (p == P_CROSS && get(s, "ppbare.cross.ratio") > 0) {
			bv = get(s, "ppbare.cross.bare_us");
			sv = get(s, "ppbare.cross.pipe_us");
			qv = get(s, "ppbare.cross.ratio");
			lo = get(s, "ppbare.cross.ratio_min");
			hi = get(s, "ppbare.cross.ratio_max");
		}
		snprintf(kb, sizeof(kb), bv > 0 ? "%.2f" : "-", bv);
		snprintf(sb, sizeof(sb), sv > 0 ? "%.2f" : "-", sv);
		snprintf(q, sizeof(q), qv > 0 ? "%.2fx" : "-", qv);
		if (p == P_CROSS) {
			targets_total++;
			if (qv >= TGT_BARE)
				targets_met++;
			snprintf(t, sizeof(t), "within %gx of bare: %s", 1 / TGT_BARE,
				 qv <= 0 ? "no data" : qv >= TGT_BARE ? "met" : "NOT met");
			if (hi > 0)
				snprintf(t + strlen(t), sizeof(t) - strlen(t), " (pairs %.2fx-%.2fx)",
					 lo, hi);
		} else {
			snprintf(t, sizeof(t), "(info)");
		}
		printf("%-34s  %-5s  %10s  %10s  %9s  %s\n", "ping-pong pipe vs bare ring, us",
		       pnames[p], kb, sb, q, t);
	}
}

static int compare(const char *kpath, const char *spath)
{
	struct resfile k, s;
	char key[96], label[64], kb[32], sb[32], t[64];
	const char *pk, *ps;
	double kv, sv, ks, ss, dk, ds, extra;
	int kk, p, o, r;

	if ((r = load(kpath, &k)) || (r = load(spath, &s))) {
		fprintf(stderr, "shim_bench: cannot read the result files: %s\n",
			strerror(-r));
		return 1;
	}
	pk = get_str(&s, "meta.pipe");
	ps = get_str(&s, "meta.socketpair");
	printf("\nshim vs kernel, both measured in this session\n");
	printf("kernel run: pipe() gave %s, socketpair() gave %s\n",
	       get_str(&k, "meta.pipe") ? get_str(&k, "meta.pipe") : "?",
	       get_str(&k, "meta.socketpair") ? get_str(&k, "meta.socketpair") : "?");
	printf("shim run:   pipe() gave %s, socketpair() gave %s\n", pk ? pk : "?",
	       ps ? ps : "?");
	if (!pk || strcmp(pk, "ipcd") || !ps || strcmp(ps, "ipcd"))
		printf("WARNING: the shim run did not get ipcd channels; its numbers are "
		       "those of the kernel\n");
	printf("speed-up: how many times better the shim is (latency: kernel/shim; "
	       "rate: shim/kernel); above 1 the shim is better\n\n");
	printf("%-34s  %-5s  %10s  %10s  %9s  %s\n", "case", "cpus", "kernel", "shim",
	       "speed-up", "target");
	for (kk = 0; kk < K_COUNT; kk++)
		for (p = 0; p < P_COUNT; p++) {
			snprintf(key, sizeof(key), "pp.%s.%s.med_us", knames[kk], pnames[p]);
			snprintf(label, sizeof(label), "ping-pong %s median rt, us", knames[kk]);
			cmp_row(&k, &s, label, pnames[p], key, 1, LOWER,
				kk != K_PIPE ? 0 : p == P_SAME ? TGT_PP_SAME : TGT_PP_CROSS);
			snprintf(key, sizeof(key), "pp.%s.%s.p99_us", knames[kk], pnames[p]);
			snprintf(label, sizeof(label), "ping-pong %s p99 rt, us", knames[kk]);
			cmp_row(&k, &s, label, pnames[p], key, 1, LOWER, 0);
		}
	bare_rows(&s);
	for (kk = 0; kk < K_COUNT; kk++)
		for (p = 0; p < P_COUNT; p++) {
			snprintf(key, sizeof(key), "s64.%s.%s.rate", knames[kk], pnames[p]);
			snprintf(label, sizeof(label), "64 B stream %s, Mmsg/s", knames[kk]);
			cmp_row(&k, &s, label, pnames[p], key, 1e-6, HIGHER,
				kk == K_PIPE ? TGT_S64 : 0);
		}
	for (kk = 0; kk < K_COUNT; kk++)
		for (p = 0; p < P_COUNT; p++) {
			snprintf(key, sizeof(key), "s64k.%s.%s.rate", knames[kk], pnames[p]);
			snprintf(label, sizeof(label), "64 KiB stream %s, GB/s", knames[kk]);
			cmp_row(&k, &s, label, pnames[p], key, 1e-9, HIGHER,
				kk == K_PIPE ? TGT_S64K : 0);
		}
	for (kk = 0; kk < K_COUNT; kk++) {
		if (kk == K_BARE)
			continue;	/* a bare ring never blocks */
		snprintf(key, sizeof(key), "idle.%s.procs_us", knames[kk]);
		kv = get(&k, key);
		sv = get(&s, key);
		snprintf(key, sizeof(key), "idle.%s.daemon_us", knames[kk]);
		dk = get(&k, key);
		ds = get(&s, key);
		snprintf(label, sizeof(label), "idle %g s %s, CPU us", get(&s, "meta.idle_s"),
			 knames[kk]);
		/* Both processes plus the daemon (when its pid was given). */
		snprintf(kb, sizeof(kb), kv >= 0 ? "%.0f" : "-", kv + (dk > 0 ? dk : 0));
		snprintf(sb, sizeof(sb), sv >= 0 ? "%.0f" : "-", sv + (ds > 0 ? ds : 0));
		if (sv >= 0)
			sv += ds > 0 ? ds : 0;
		targets_total++;
		if (sv >= 0 && sv < TGT_IDLE_US)
			targets_met++;
		snprintf(t, sizeof(t), "< %.0f us: %s%s", TGT_IDLE_US,
			 sv < 0 ? "no data" : sv < TGT_IDLE_US ? "met" : "NOT met",
			 ds < 0 ? " (daemon not measured)" : "");
		printf("%-34s  %-5s  %10s  %10s  %9s  %s\n", label, "-", kb, sb, "-", t);
	}
	for (o = 0; o < O_COUNT; o++) {
		snprintf(key, sizeof(key), "ovh.%s.libc_ns", onames[o]);
		kv = get(&k, key);
		sv = get(&s, key);
		snprintf(key, sizeof(key), "ovh.%s.raw_ns", onames[o]);
		ks = get(&k, key);
		ss = get(&s, key);
		snprintf(label, sizeof(label), "%s, ns", olabels[o]);
		snprintf(kb, sizeof(kb), kv > 0 ? "%.1f" : "-", kv);
		snprintf(sb, sizeof(sb), sv > 0 ? "%.1f" : "-", sv);
		/* The shim's cost: how much more a libc call costs than the raw
		 * system call with the shim, minus the same without it.  Both
		 * differences are taken inside one process, interleaved. */
		targets_total++;
		if (kv > 0 && sv > 0 && ks > 0 && ss > 0) {
			extra = (sv - ss) - (kv - ks);
			if (extra <= TGT_OVH_NS)
				targets_met++;
			snprintf(t, sizeof(t), "<= %.0f ns extra: %s (%+.1f ns)", TGT_OVH_NS,
				 extra <= TGT_OVH_NS ? "met" : "NOT met", extra);
			printf("%-34s  %-5s  %10s  %10s  %+8.1fns  %s\n", label, "-", kb, sb,
			       sv - kv, t);
		} else {
			printf("%-34s  %-5s  %10s  %10s  %9s  no data\n", label, "-", kb, sb, "-");
		}
	}
	printf("\ntargets met: %d of %d\n", targets_met, targets_total);
	printf("rt: one round trip, nearest-rank percentiles.  idle: CPU time of both "
	       "blocked processes and the daemon\n"
	       "  over the window, from /proc/PID/task/*/schedstat.  Calls on non-channel "
	       "fds: the speed-up column\n"
	       "  shows shim minus kernel ns/call (two processes); the target uses the "
	       "in-process difference to\n"
	       "  a raw syscall(), shim minus kernel.\n");
	free(k.kv);
	free(s.kv);
	return 0;
}

/* ---- set-up --------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shim_bench [-o FILE] [-p DAEMON_PID] [-l LABEL] [-c CASES] [-t KINDS]\n"
		"                  [-P PLACES] [-n ROUNDS] [-w WARMUP] [-T SECONDS] [-s SECONDS]\n"
		"                  [-i SECONDS]\n"
		"       shim_bench -r KERNEL_FILE SHIM_FILE\n"
		"  -o FILE     also write the results as \"key value\" lines to FILE\n"
		"  -p PID      the ipcd daemon, to measure its CPU time\n"
		"  -l LABEL    a name for this run in the output (e.g. kernel, shim)\n"
		"  -c CASES    comma-separated subset of pp,s64,s64k,idle,ovh (default all)\n"
		"  -t KINDS    subset of pipe,socketpair,bare (default all; bare: a ring\n"
		"              in shared memory, both ends spinning, no ipcd)\n"
		"  -P PLACES   subset of same,cross (default both)\n"
		"  -n ROUNDS   measured ping-pong round trips per case (default %d)\n"
		"  -w WARMUP   ping-pong round trips before measuring (default %d)\n"
		"  -T SECONDS  time limit per ping-pong case (default %d)\n"
		"  -s SECONDS  measured time per stream case (default %.1f, after %.1f s "
		"warm-up)\n"
		"  -i SECONDS  idle window (default %.1f)\n"
		"  -r K S      compare result files of a kernel run and a shim run\n",
		DEF_ROUNDS, DEF_WARMUP, DEF_LIMIT_S, DEF_STREAM_S, STREAM_WARM_S, DEF_IDLE_S);
}

static double parse_num(const char *s, double min, double max, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "shim_bench: bad %s '%s' (%g to %g)\n", what, s, min, max);
		exit(2);
	}
	return v;
}

/* A comma-separated subset of names[] into want[]. */
static void parse_list(char *list, const char *const *names, int count, bool *want,
		       const char *what)
{
	char *tok, *save = NULL;
	int c;

	memset(want, 0, (size_t)count * sizeof(*want));
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (c = 0; c < count; c++)
			if (!strcmp(tok, names[c]))
				break;
		if (c == count) {
			fprintf(stderr, "shim_bench: unknown %s '%s'\n", what, tok);
			exit(2);
		}
		want[c] = true;
	}
}

int main(int argc, char **argv)
{
	char clist[] = "pp,s64,s64k,idle,ovh", klist[] = "pipe,socketpair,bare",
	     plist[] = "same,cross";
	const char *spin = getenv("IPCD_SPIN_NS"), *cmp = NULL;
	struct sigaction sa;
	struct utsname un;
	struct link probe;
	uint64_t *lat;
	int c, i, k, p;

	opt.rounds = DEF_ROUNDS;
	opt.warmup = DEF_WARMUP;
	opt.limit_s = DEF_LIMIT_S;
	opt.stream_s = DEF_STREAM_S;
	opt.idle_s = DEF_IDLE_S;
	opt.label = "this run";
	parse_list(clist, cnames, C_COUNT, opt.want, "case");
	parse_list(klist, knames, K_COUNT, opt.want_k, "transport");
	parse_list(plist, pnames, P_COUNT, opt.want_p, "placement");
	while ((c = getopt(argc, argv, "o:p:l:c:t:P:n:w:T:s:i:r:h")) != -1) {
		switch (c) {
		case 'o': opt.out = optarg; break;
		case 'p': opt.daemon = (pid_t)parse_num(optarg, 1, INT_MAX, "pid"); break;
		case 'l': opt.label = optarg; break;
		case 'c': parse_list(optarg, cnames, C_COUNT, opt.want, "case"); break;
		case 't': parse_list(optarg, knames, K_COUNT, opt.want_k, "transport"); break;
		case 'P': parse_list(optarg, pnames, P_COUNT, opt.want_p, "placement"); break;
		case 'n': opt.rounds = (long)parse_num(optarg, 1, 1e8, "round count"); break;
		case 'w': opt.warmup = (long)parse_num(optarg, 0, 1e8, "warm-up count"); break;
		case 'T': opt.limit_s = (long)parse_num(optarg, 1, 3600, "time limit"); break;
		case 's': opt.stream_s = parse_num(optarg, 0.01, 600, "stream time"); break;
		case 'i': opt.idle_s = parse_num(optarg, 0.1, 600, "idle time"); break;
		case 'r': cmp = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (cmp) {
		if (optind != argc - 1) {
			usage(stderr);
			return 2;
		}
		return compare(cmp, argv[optind]);
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (opt.out) {
		resf = fopen(opt.out, "w");
		if (!resf) {
			fprintf(stderr, "shim_bench: %s: %s\n", opt.out, strerror(errno));
			return 1;
		}
	}
	if (opt.daemon && proc_stat_ns(opt.daemon) < 0) {
		fprintf(stderr, "shim_bench: cannot read /proc/%d/stat: daemon CPU time "
			"not measured\n", (int)opt.daemon);
		opt.daemon = 0;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;	/* no SA_RESTART: blocked calls return EINTR */
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (sched_getaffinity(0, sizeof(opt.orig), &opt.orig) < 0) {
		perror("shim_bench: sched_getaffinity");
		return 1;
	}
	for (i = 0; i < CPU_SETSIZE && opt.ncpu < 2; i++)
		if (CPU_ISSET(i, &opt.orig))
			opt.cpu[opt.ncpu++] = i;
	if (opt.ncpu < 2)
		opt.cpu[1] = opt.cpu[0];

	uname(&un);
	printf("shim_bench, %s: nproc %ld, uname -r %s, pid %d\n", opt.label,
	       sysconf(_SC_NPROCESSORS_ONLN), un.release, (int)getpid());
	if (spin)
		printf("spin before sleeping: %s ns (IPCD_SPIN_NS)\n", spin);
	else
		printf("spin before sleeping: %d ns (default; IPCD_SPIN_NS unset)\n",
		       SPIN_DEFAULT_NS);
	if (link_open(&probe, K_PIPE) == 0) {
		printf("pipe() gives: %s", fd_kind(probe.fd[0]));
		put_str("meta.pipe", fd_kind(probe.fd[0]));
	}
	link_close(&probe);
	if (link_open(&probe, K_SOCK) == 0) {
		printf("; socketpair() gives: %s", fd_kind(probe.fd[0]));
		put_str("meta.socketpair", fd_kind(probe.fd[0]));
	}
	link_close(&probe);
	printf("\nCPUs: same = both on cpu %d; cross = parent on cpu %d, child on cpu %d%s\n",
	       opt.cpu[0], opt.cpu[0], opt.cpu[1],
	       opt.ncpu < 2 ? " (only one CPU: cross is the same as same)" : "");
	put_str("meta.label", opt.label);
	put("meta.spin_ns", spin ? strtod(spin, NULL) : SPIN_DEFAULT_NS);
	put("meta.idle_s", opt.idle_s);
	fflush(stdout);

	if (opt.want[C_PP]) {
		lat = calloc((size_t)opt.rounds, sizeof(*lat));
		if (!lat) {
			perror("shim_bench: calloc");
			return 1;
		}
		pp_print_head();
		for (k = 0; k < K_COUNT; k++)
			for (p = 0; p < P_COUNT; p++)
				if (opt.want_k[k] && opt.want_p[p])
					case_pp((enum tkind)k, (enum place)p, lat, false);
		if (opt.want_k[K_PIPE] && opt.want_k[K_BARE] && opt.want_p[P_CROSS] &&
		    opt.ncpu >= 2)
			pp_vs_bare(lat);
		free(lat);
		if (pp_limited)
			printf("*: cut short by the %ld s time limit\n", opt.limit_s);
	}
	if (opt.want[C_S64] || opt.want[C_S64K]) {
		st_print_head();
		for (i = 0; i < 2; i++) {
			if (!opt.want[i ? C_S64K : C_S64])
				continue;
			for (k = 0; k < K_COUNT; k++)
				for (p = 0; p < P_COUNT; p++)
					if (opt.want_k[k] && opt.want_p[p])
						case_stream((enum tkind)k, (enum place)p,
							    i ? BIG_SIZE : MSG_SIZE);
		}
		printf("rate over %.1f s after %.1f s of warm-up; 64 B: one write() per "
		       "message, one read() of 64 B per message\n",
		       opt.stream_s, STREAM_WARM_S);
	}
	if (opt.want[C_IDLE]) {
		printf("\nidle: after %d round trips both processes block in read() "
		       "(cpus %d and %d)\n", IDLE_ROUNDS, opt.cpu[0], opt.cpu[1]);
		printf("%-26s  %8s  %13s  %10s  %15s  %10s\n", "transport", "window_s",
		       "procs_ms_stat", "procs_us", "daemon_ms_stat", "daemon_us");
		for (k = 0; k < K_COUNT; k++)
			if (opt.want_k[k] && k != K_BARE)
				case_idle((enum tkind)k);
		printf("_stat: utime+stime from /proc/PID/stat (clock ticks); _us: run "
		       "time from /proc/PID/task/*/schedstat\n");
	}
	if (opt.want[C_OVH])
		case_ovh();
	if (resf)
		fclose(resf);
	return failures ? 1 : 0;
}
