/*
 * life - what a channel costs over its whole life, as programs use one:
 * making and closing it, a fork that writes one byte and exits, an exec'd
 * program on two inherited pipes, many channels alive at once, a spawn that
 * reads a child's output.  It uses only ordinary calls (pipe, pipe2,
 * socketpair, fork, execv, posix_spawn, read, write, close, waitpid,
 * clock_gettime, readlink and getxattr) and no ipcd header, so the same
 * binary measures kernel pipes when run plainly and ipcd channels when run
 * with the shim preloaded (its exec'd children inherit LD_PRELOAD).
 *
 * One process runs one case once: bench/life_run.sh starts it again and
 * again, without and with the shim, alternating, and then calls
 * `life -R FILE` for the table.  bench/real_run.sh writes the same kind of
 * result file for real programs and prints its table with `life -R` too.
 *
 *   life -c CASE [-n MAX] [-w WARMUP] [-b SECONDS] [-m MOUNT] [-e KIND]
 *        [-l MODE] [-r ROUND] [-o FILE]
 *   life -L          the cases, as `case` lines of a result file
 *   life -R FILE     the ratio table of a result file
 *
 * Result file (text, one record a line, fields separated by blanks):
 *   case NAME UNIT OP VALUE DESCRIPTION...
 *        UNIT us or ms; OP le (target: median ratio <= VALUE), lt (ratio <
 *        VALUE), info (no target) or ctl (a control: both sides without the
 *        shim, the ratio shows the method's noise)
 *   run NAME MODE ROUND VALUE P10 P90 ITERS SERVED BYTES SLOW STATUS [CPU]
 *        MODE kernel or shim; ROUND 0 is a warm-up (checked, not timed);
 *        VALUE, P10, P90 in UNIT (median and percentiles of the samples, -1
 *        unknown); ITERS samples; SERVED, BYTES, SLOW the growth of the
 *        mount's served, bytes and slow_bytes counters per iteration (life)
 *        or per run (real programs), -1 unknown; STATUS ok, wrong (output
 *        differs), failed, timeout or inactive (the run did not get what its
 *        mode promises: channels with the shim, kernel pipes without); CPU
 *        (real programs) the CPU time in UNIT of the run's processes and of
 *        the daemon, -1 unknown.
 *
 * Exit status: 0 the case ran (or the table was printed and every run was
 * ok), 1 a case failed or some run was not ok, 2 usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <ipcd/ring.h>

extern char **environ;

#define MANY		500		/* channels alive at once in "many" */
#define MAX_SAMPLES	100000
#define LINE		"the whole life of a channel\n"
#define LINE_UP		"THE WHOLE LIFE OF A CHANNEL\n"

/* ---- a case ---------------------------------------------------------------- */

struct ctx;
typedef int (*once_fn)(struct ctx *x);

struct lcase {
	const char *name;
	once_fn once;
	bool sock;		/* probe socketpair() rather than pipe() */
	unsigned per;		/* operations per iteration (the unit of a sample) */
	long nmax, warm;	/* default iterations and warm-up */
	double budget;		/* default seconds of measuring, at most */
	const char *op;		/* le, lt, info, ctl */
	double target;
	const char *desc;
};

struct ctx {
	char why[256];		/* why the case failed */
	const char *cat, *tr, *echo;
};

static int fail(struct ctx *x, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record why the case failed; returns -err (a positive errno, or 0 for EIO). */
static int fail(struct ctx *x, int err, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(x->why, sizeof(x->why), fmt, ap);
	va_end(ap);
	if (err && n >= 0 && (size_t)n < sizeof(x->why))
		snprintf(x->why + n, sizeof(x->why) - (size_t)n, ": %s", strerror(err));
	return -(err ? err : EIO);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read until end of file into buf (at most cap bytes); the count or -errno.
 * More than cap bytes is an error (-EFBIG). */
static ssize_t read_eof(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	char extra;
	ssize_t n;

	for (;;) {
		n = got < cap ? read(fd, buf + got, cap - got) : read(fd, &extra, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return (ssize_t)got;
		if (got >= cap)
			return -EFBIG;
		got += (size_t)n;
	}
}

/* Wait for a child; 0 if it exited with status 0. */
static int reap(struct ctx *x, pid_t pid, const char *who)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return fail(x, errno, "waitpid(%s)", who);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFSIGNALED(st))
		return fail(x, 0, "%s died of signal %d", who, WTERMSIG(st));
	return fail(x, 0, "%s exited with status %d", who, WEXITSTATUS(st));
}

static int check_out(struct ctx *x, const char *who, const char *got, ssize_t n,
		     const char *want)
{
	size_t wl = strlen(want);

	if (n < 0)
		return fail(x, (int)-n, "reading %s's output", who);
	if ((size_t)n != wl || memcmp(got, want, wl))
		return fail(x, 0, "%s gave %zd bytes \"%.*s\", wanted \"%s\"", who, n,
			    (int)(n > 40 ? 40 : n), got, want);
	return 0;
}

/* ---- the cases --------------------------------------------------------------- */

/* pipe() and two close(). */
static int once_pipe_close(struct ctx *x)
{
	int p[2];

	if (pipe(p) < 0)
		return fail(x, errno, "pipe");
	if (close(p[0]) < 0 || close(p[1]) < 0)
		return fail(x, errno, "close");
	return 0;
}

/* socketpair(AF_UNIX, SOCK_STREAM) and two close(). */
static int once_sp_close(struct ctx *x)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return fail(x, errno, "socketpair");
	if (close(sv[0]) < 0 || close(sv[1]) < 0)
		return fail(x, errno, "close");
	return 0;
}

/* echo x | cat in C: a child writes one byte and exits; the parent reads it
 * and the end of file, and reaps the child. */
static int once_fork1(struct ctx *x)
{
	char buf[8];
	ssize_t n;
	pid_t pid;
	int p[2], r;

	if (pipe(p) < 0)
		return fail(x, errno, "pipe");
	pid = fork();
	if (pid < 0) {
		r = errno;
		close(p[0]);
		close(p[1]);
		return fail(x, r, "fork");
	}
	if (pid == 0) {
		close(p[0]);
		_exit(write(p[1], "x", 1) == 1 ? 0 : 1);
	}
	close(p[1]);
	n = read_eof(p[0], buf, sizeof(buf));
	close(p[0]);
	r = check_out(x, "the child", buf, n, "x");
	return reap(x, pid, "the child") ?: r;
}

/* A child with two pipes on its stdin and stdout execs prog; the parent
 * writes one line, closes, reads the answer and the end of file, reaps. */
static int exec_filter(struct ctx *x, const char *prog, char *const argv[],
		       const char *want)
{
	char buf[256];
	int in[2], out[2], r;
	ssize_t n;
	pid_t pid;

	if (pipe(in) < 0)
		return fail(x, errno, "pipe");
	if (pipe(out) < 0) {
		r = errno;
		close(in[0]);
		close(in[1]);
		return fail(x, r, "pipe");
	}
	pid = fork();
	if (pid < 0) {
		r = errno;
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return fail(x, r, "fork");
	}
	if (pid == 0) {
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
			_exit(126);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execv(prog, argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	r = write_all(in[1], LINE, sizeof(LINE) - 1);
	close(in[1]);
	if (r < 0) {
		close(out[0]);
		reap(x, pid, prog);
		return fail(x, -r, "writing to %s", prog);
	}
	n = read_eof(out[0], buf, sizeof(buf));
	close(out[0]);
	r = check_out(x, prog, buf, n, want);
	return reap(x, pid, prog) ?: r;
}

/* cat copies with read() and write(). */
static int once_exec_cat(struct ctx *x)
{
	char *const argv[] = { "cat", NULL };

	return exec_filter(x, x->cat, argv, LINE);
}

/* tr writes its output with stdio. */
static int once_exec_tr(struct ctx *x)
{
	char *const argv[] = { "tr", "a-z", "A-Z", NULL };

	return exec_filter(x, x->tr, argv, LINE_UP);
}

/* MANY pipes made, all alive, then all closed. */
static int once_many(struct ctx *x)
{
	static int p[MANY][2];
	int i, j, r = 0;

	for (i = 0; i < MANY; i++)
		if (pipe(p[i]) < 0) {
			r = fail(x, errno, "pipe number %d", i + 1);
			break;
		}
	for (j = 0; j < i; j++)
		if ((close(p[j][0]) < 0 || close(p[j][1]) < 0) && !r)
			r = fail(x, errno, "close");
	return r;
}

/* What Python's subprocess.run(..., capture_output=True) does on Linux, in
 * the posix_spawn form: a close-on-exec pipe, the child's stdout dup2'ed onto
 * it, read everything, wait. */
static int once_spawn(struct ctx *x)
{
	char *const argv[] = { "echo", "life", NULL };
	posix_spawn_file_actions_t fa;
	char buf[64];
	ssize_t n;
	pid_t pid;
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) < 0)
		return fail(x, errno, "pipe2");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	r = posix_spawn(&pid, x->echo, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (r) {
		close(p[0]);
		return fail(x, r, "posix_spawn(%s)", x->echo);
	}
	n = read_eof(p[0], buf, sizeof(buf));
	close(p[0]);
	r = check_out(x, "echo", buf, n, "life\n");
	return reap(x, pid, "echo") ?: r;
}

static const struct lcase cases[] = {
	{ "pipe_close", once_pipe_close, false, 1, 1000, 20, 0.6, "le", 3.0,
	  "pipe() + two close()" },
	{ "sp_close", once_sp_close, true, 1, 1000, 20, 0.6, "info", 0,
	  "socketpair(AF_UNIX, SOCK_STREAM) + two close()" },
	{ "fork1", once_fork1, false, 1, 300, 5, 0.8, "le", 1.1,
	  "pipe, fork, child writes 1 byte and exits, parent reads it and EOF, waitpid" },
	{ "exec_cat", once_exec_cat, false, 1, 150, 3, 1.0, "le", 1.1,
	  "two pipes dup2'ed onto 0 and 1, exec /bin/cat, write a line, close, read it and EOF, waitpid" },
	{ "exec_tr", once_exec_tr, false, 1, 150, 3, 1.0, "info", 0,
	  "the same with `tr a-z A-Z` (stdio output)" },
	{ "many", once_many, false, MANY, 20, 1, 1.2, "info", 0,
	  "500 pipes made and alive, then all closed; time per pipe" },
	{ "spawn", once_spawn, false, 1, 200, 3, 1.0, "info", 0,
	  "pipe2(O_CLOEXEC) + posix_spawn(echo) with stdout on it + read all + waitpid" },
	{ "fork1_def", once_fork1, false, 1, 300, 5, 0.8, "le", 1.1,
	  "fork1 with the shim's default: its pipes are learnt (life_run.sh runs *_def so)" },
	{ "exec_cat_def", once_exec_cat, false, 1, 150, 3, 1.0, "le", 1.1,
	  "exec_cat with the shim's default: its pipes, and cat, are learnt" },
	{ "fork1_aa", once_fork1, false, 1, 300, 5, 0.8, "ctl", 0,
	  "control: fork1, both sides without the shim (shows the method's noise)" },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* ---- measuring one case -------------------------------------------------------- */

static struct {
	const char *cname, *mount, *expect, *mode, *out;
	long nmax, warm, round;
	double budget;
} opt = { .mode = "kernel", .expect = NULL, .nmax = -1, .warm = -1, .budget = -1 };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What fd really is: "kernel" for a kernel pipe or socket, "ipcd" for a file
 * under the mount, else "other". */
static const char *fd_kind(int fd, const char *mount)
{
	char path[64], target[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return "unknown";
	target[n] = 0;
	if (!strncmp(target, "pipe:", 5) || !strncmp(target, "socket:", 7))
		return "kernel";
	if (mount && !strncmp(target, mount, strlen(mount)))
		return "ipcd";
	return "other";
}

/* Whether the shim is loaded here (its default may give kernel pipes). */
static bool shim_loaded(void)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "libipcd-shim") != NULL;
	fclose(f);
	return found;
}

/* The mount's counters: pipes on channels (served), bytes and slow_bytes;
 * false if unknown. */
static bool counters(const char *mount, double v[3])
{
	static const char *const keys[3] = { " served=", " bytes=", " slow_bytes=" };
	char buf[512], *p;
	ssize_t n;
	int i;

	if (!mount)
		return false;
	n = getxattr(mount, IPCD_XATTR_STATUS, buf + 1, sizeof(buf) - 2);
	if (n < 0)
		return false;
	buf[0] = ' ';
	buf[n + 1] = 0;
	for (i = 0; i < 3; i++) {
		p = strstr(buf, keys[i]);
		if (!p)
			return false;
		v[i] = strtod(p + strlen(keys[i]), NULL);
	}
	return true;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, size_t n, double p)
{
	size_t i;

	if (!n)
		return -1;
	i = (size_t)ceil(p / 100.0 * (double)n);
	return v[i ? i - 1 : 0];
}

static const char *find_prog(const char *a, const char *b)
{
	if (access(a, X_OK) == 0)
		return a;
	if (access(b, X_OK) == 0)
		return b;
	return NULL;
}

static int measure(const struct lcase *lc)
{
	double c0[3], c1[3], dc[3] = { -1, -1, -1 }, *s, med = -1, p10 = -1, p90 = -1;
	const char *status = "ok", *kind;
	struct ctx x = { .why = "" };
	uint64_t t0, t1, start;
	long nmax, warm, i, n = 0;
	bool have_c0, have_c1;
	struct rlimit rl;
	double budget;
	FILE *f = NULL;
	int pr[2], r = 0;

	nmax = opt.nmax > 0 ? opt.nmax : lc->nmax;
	warm = opt.warm >= 0 ? opt.warm : lc->warm;
	budget = opt.budget >= 0 ? opt.budget : lc->budget;
	if (nmax > MAX_SAMPLES)
		nmax = MAX_SAMPLES;
	s = calloc((size_t)nmax, sizeof(*s));
	if (!s) {
		fprintf(stderr, "life: out of memory\n");
		return 1;
	}
	/* Room for MANY pipes and whatever the shim keeps open. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	x.cat = find_prog("/bin/cat", "/usr/bin/cat");
	x.tr = find_prog("/usr/bin/tr", "/bin/tr");
	x.echo = find_prog("/bin/echo", "/usr/bin/echo");
	if (!x.cat || !x.tr || !x.echo) {
		fail(&x, 0, "cat, tr or echo not found in /bin or /usr/bin");
		r = -1;
		status = "failed";
	}

	/* What does this process get from the call the case uses? */
	if (lc->sock ? socketpair(AF_UNIX, SOCK_STREAM, 0, pr) : pipe(pr)) {
		if (!r)
			fail(&x, errno, lc->sock ? "socketpair" : "pipe");
		r = -1;
		status = "failed";
		kind = "none";
	} else {
		kind = fd_kind(pr[0], opt.mount);
		close(pr[0]);
		close(pr[1]);
	}
	if (!r && opt.expect && !strcmp(opt.expect, "shim")) {
		if (!shim_loaded()) {
			fail(&x, 0, "this run expects the shim, and it is not loaded");
			r = -1;
			status = "inactive";
		}
	} else if (!r && opt.expect && strcmp(kind, opt.expect)) {
		fail(&x, 0, "%s() gave %s, this run expects %s", lc->sock ? "socketpair" : "pipe",
		     kind, opt.expect);
		r = -1;
		status = "inactive";
	}

	have_c0 = counters(opt.mount, c0);
	for (i = 0; !r && i < warm; i++)
		r = lc->once(&x);
	warm = i;	/* done */
	start = now_ns();
	for (i = 0; !r && i < nmax; i++) {
		t0 = now_ns();
		r = lc->once(&x);
		t1 = now_ns();
		if (r)
			break;
		s[n++] = (double)(t1 - t0) / 1000.0 / lc->per;
		if (n >= 5 && (double)(t1 - start) / 1e9 >= budget)
			break;
	}
	have_c1 = counters(opt.mount, c1);
	if (r && !strcmp(status, "ok"))
		status = "failed";
	if (have_c0 && have_c1 && warm + n > 0)
		for (i = 0; i < 3; i++)
			dc[i] = (c1[i] - c0[i]) / (double)(warm + n) / lc->per;
	/* Without the shim, nothing may have made a channel on the mount. */
	if (!r && opt.expect && !strcmp(opt.expect, "kernel") && dc[0] > 0) {
		fail(&x, 0, "the mount's served counter grew in a run without the shim");
		status = "inactive";
		r = -1;
	}
	if (!r && opt.expect && !strcmp(opt.expect, "ipcd") && dc[0] == 0) {
		fail(&x, 0, "no pipe was served by a channel in a run with the shim");
		status = "inactive";
		r = -1;
	}
	if (n) {
		qsort(s, (size_t)n, sizeof(*s), cmp_dbl);
		med = pct(s, (size_t)n, 50);
		p10 = pct(s, (size_t)n, 10);
		p90 = pct(s, (size_t)n, 90);
	}
	printf("life: %-10s %-6s round %ld: %s, median %.2f us (p10 %.2f, p90 %.2f), %ld samples"
	       " after %ld warm-up; served %.3g bytes %.3g slow_bytes %.3g per %s\n",
	       lc->name, opt.mode, opt.round, kind, med, p10, p90, n, warm, dc[0], dc[1],
	       dc[2], lc->per > 1 ? "pipe" : "iteration");
	if (r)
		printf("life: %s %s round %ld %s: %s\n", lc->name, opt.mode, opt.round,
		       status, x.why);
	if (opt.out) {
		f = fopen(opt.out, "a");
		if (!f) {
			fprintf(stderr, "life: %s: %s\n", opt.out, strerror(errno));
			free(s);
			return 1;
		}
		fprintf(f, "run %s %s %ld %.4f %.4f %.4f %ld %.4g %.4g %.4g %s\n", lc->name,
			opt.mode, opt.round, med, p10, p90, n, dc[0], dc[1], dc[2], status);
		if (r)
			fprintf(f, "note %s %s %ld %s\n", lc->name, opt.mode, opt.round, x.why);
		fclose(f);
	}
	free(s);
	return r ? 1 : 0;
}

/* ---- the table ------------------------------------------------------------------ */

#define MAXC	64
#define MAXR	128

struct crow {
	char name[32], unit[8], op[8], desc[200];
	double target;
	int nk, ns, nf;
	struct rrun {
		long round;
		double v, c[3], cpu;
		char st[16];
	} k[MAXR], s[MAXR], f[MAXR];	/* kernel, shim, floor (an empty library) */
	int bad_k, bad_s, wrong, failed, timeout, inactive, total;
};

static struct crow rows[MAXC];
static int nrows;

/* A run whose time counts: it ran to the end, whatever its output (a wrong
 * output is reported apart from the speed). */
static bool timed(const struct rrun *r)
{
	return r->round > 0 && r->v >= 0 && (!strcmp(r->st, "ok") || !strcmp(r->st, "wrong"));
}

static struct crow *row_find(const char *name, bool make)
{
	int i;

	for (i = 0; i < nrows; i++)
		if (!strcmp(rows[i].name, name))
			return &rows[i];
	if (!make || nrows == MAXC)
		return NULL;
	memset(&rows[nrows], 0, sizeof(rows[nrows]));
	snprintf(rows[nrows].name, sizeof(rows[nrows].name), "%s", name);
	snprintf(rows[nrows].unit, sizeof(rows[nrows].unit), "?");
	snprintf(rows[nrows].op, sizeof(rows[nrows].op), "info");
	return &rows[nrows++];
}

static double median_of(double *v, int n)
{
	if (n <= 0)
		return -1;
	qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median over the rounds of a's value over b's in the same round; -1
 * when no round has both. */
static double round_ratio(const struct rrun *a, int na, const struct rrun *b, int nb)
{
	double r[MAXR];
	int i, j, n = 0;

	for (i = 0; i < na; i++) {
		if (!timed(&a[i]))
			continue;
		for (j = 0; j < nb; j++)
			if (b[j].round == a[i].round && timed(&b[j]) && b[j].v > 0) {
				r[n++] = a[i].v / b[j].v;
				break;
			}
	}
	return median_of(r, n);
}

/* A number in at most 7 characters: k/M/G above 10^4, 3 significant digits
 * below 100. */
static void human(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v >= 1e9)
		snprintf(buf, len, "%.3gG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, len, "%.3gM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, len, "%.3gk", v / 1e3);
	else if (v >= 100)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.3g", v);
}

static void fmt_val(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v >= 1000)
		snprintf(buf, len, "%.0f", v);
	else if (v >= 10)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.2f", v);
}

static void fmt_ratio(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v >= 100)
		snprintf(buf, len, "%.0fx", v);
	else if (v >= 10)
		snprintf(buf, len, "%.1fx", v);
	else
		snprintf(buf, len, "%.2fx", v);
}

static int table(const char *path)
{
	char line[1024], name[32], mode[16], st[16], a[8], b[8];
	char kv[16], sv[16], rv[16], lo[16], hi[16], cr[16], by[16], sl[16], tg[16];
	int i, j, met = 0, targets = 0, bad_runs = 0, wrong_rows = 0, nodata = 0;
	bool floors = false;
	double v, p10, p90, cc[3], tv, cpu;
	long round, iters;
	int nf;
	struct crow *rw;
	FILE *f;

	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "life: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		int off = 0;

		line[strcspn(line, "\n")] = 0;
		if (sscanf(line, "case %31s %7s %7s %lf %n", name, a, b, &tv, &off) == 4 &&
		    off > 0) {
			rw = row_find(name, true);
			if (!rw)
				continue;
			snprintf(rw->unit, sizeof(rw->unit), "%s", a);
			snprintf(rw->op, sizeof(rw->op), "%s", b);
			rw->target = tv;
			snprintf(rw->desc, sizeof(rw->desc), "%s", line + off);
		} else if ((nf = sscanf(line, "run %31s %15s %ld %lf %lf %lf %ld %lf %lf %lf %15s %lf",
					name, mode, &round, &v, &p10, &p90, &iters, &cc[0], &cc[1],
					&cc[2], st, &cpu)) >= 11) {
			struct rrun *rr;

			rw = row_find(name, true);
			if (!rw)
				continue;
			rw->total++;
			if (strcmp(st, "ok")) {
				bad_runs++;
				rw->wrong += !strcmp(st, "wrong");
				rw->failed += !strcmp(st, "failed");
				rw->timeout += !strcmp(st, "timeout");
				rw->inactive += !strcmp(st, "inactive");
			}
			if (!strcmp(mode, "kernel") && rw->nk < MAXR)
				rr = &rw->k[rw->nk++];
			else if (!strcmp(mode, "shim") && rw->ns < MAXR)
				rr = &rw->s[rw->ns++];
			else if (!strcmp(mode, "floor") && rw->nf < MAXR)
				rr = &rw->f[rw->nf++];
			else
				continue;
			rr->round = round;
			rr->v = v;
			rr->cpu = nf == 12 ? cpu : -1;
			memcpy(rr->c, cc, sizeof(cc));
			snprintf(rr->st, sizeof(rr->st), "%s", st);
		}
	}
	fclose(f);

	for (i = 0; i < nrows; i++)
		floors |= rows[i].nf > 0;
	printf("%-14s %-4s %9s %9s %8s %17s %6s", "case", "unit", "kernel", "shim", "ratio",
	       "spread (min-max)", "cpu");
	if (floors)
		printf(" %6s %7s", "floor", "shim/fl");
	printf(" %5s %7s %7s %7s  %-16s %-7s %s\n", "pairs", "served", "bytes", "slow", "runs",
	       "target", "verdict");
	for (i = 0; i < nrows; i++) {
		double kvals[MAXR], svals[MAXR], ratios[MAXR], cvals[3][MAXR], cpur[MAXR];
		int nkv = 0, nsv = 0, nr = 0, ncv = 0, ncpu = 0, k2;
		char cv[16];
		double rmin = -1, rmax = -1, ratio, ckeep[3];
		const char *verdict;
		char runs[32];

		rw = &rows[i];
		for (j = 0; j < rw->nk; j++)
			if (timed(&rw->k[j]))
				kvals[nkv++] = rw->k[j].v;
		for (j = 0; j < rw->ns; j++) {
			if ((!strcmp(rw->s[j].st, "ok") || !strcmp(rw->s[j].st, "wrong")) &&
			    rw->s[j].c[0] >= 0) {
				for (k2 = 0; k2 < 3; k2++)
					cvals[k2][ncv] = rw->s[j].c[k2];
				ncv++;
			}
			if (!timed(&rw->s[j]))
				continue;
			svals[nsv++] = rw->s[j].v;
			/* The kernel run of the same round makes a pair. */
			for (k2 = 0; k2 < rw->nk; k2++)
				if (rw->k[k2].round == rw->s[j].round && timed(&rw->k[k2]) &&
				    rw->k[k2].v > 0) {
					ratios[nr] = rw->s[j].v / rw->k[k2].v;
					if (rw->s[j].cpu >= 0 && rw->k[k2].cpu > 0)
						cpur[ncpu++] = rw->s[j].cpu / rw->k[k2].cpu;
					if (rmin < 0 || ratios[nr] < rmin)
						rmin = ratios[nr];
					if (ratios[nr] > rmax)
						rmax = ratios[nr];
					nr++;
					break;
				}
		}
		ratio = median_of(ratios, nr);
		for (k2 = 0; k2 < 3; k2++)
			ckeep[k2] = median_of(cvals[k2], ncv);
		fmt_val(kv, sizeof(kv), median_of(kvals, nkv));
		fmt_val(sv, sizeof(sv), median_of(svals, nsv));
		fmt_ratio(rv, sizeof(rv), ratio);
		fmt_ratio(lo, sizeof(lo), rmin);
		fmt_ratio(hi, sizeof(hi), rmax);
		if (ncpu)
			fmt_ratio(cv, sizeof(cv), median_of(cpur, ncpu));
		else
			snprintf(cv, sizeof(cv), "-");
		human(cr, sizeof(cr), ckeep[0]);
		human(by, sizeof(by), ckeep[1]);
		human(sl, sizeof(sl), ckeep[2]);
		if (!rw->total)
			snprintf(runs, sizeof(runs), "skipped");
		else if (rw->wrong)
			snprintf(runs, sizeof(runs), "WRONG %d/%d", rw->wrong, rw->total);
		else if (rw->timeout)
			snprintf(runs, sizeof(runs), "TIMEOUT %d/%d", rw->timeout, rw->total);
		else if (rw->failed)
			snprintf(runs, sizeof(runs), "FAILED %d/%d", rw->failed, rw->total);
		else if (rw->inactive)
			snprintf(runs, sizeof(runs), "INACTIVE %d/%d", rw->inactive, rw->total);
		else
			snprintf(runs, sizeof(runs), "ok %d/%d", rw->total, rw->total);
		wrong_rows += rw->wrong > 0;

		if (!strcmp(rw->op, "le") || !strcmp(rw->op, "lt")) {
			bool lt = !strcmp(rw->op, "lt");
			int bad = rw->wrong + rw->failed + rw->timeout + rw->inactive;
			bool ok = nr && !bad && (lt ? ratio < rw->target : ratio <= rw->target);
			bool border = nr && rmin <= rw->target && rmax >= rw->target;

			snprintf(tg, sizeof(tg), "%s %.3gx", lt ? "<" : "<=", rw->target);
			targets += rw->total > 0;
			met += ok;
			/* Speed does not count where the program did not work. */
			if (rw->wrong)
				verdict = "NOT met: WRONG output";
			else if (rw->timeout)
				verdict = "NOT met: runs timed out";
			else if (rw->failed)
				verdict = "NOT met: runs failed";
			else if (rw->inactive)
				verdict = "NOT met: runs inactive";
			else if (!rw->total)
				verdict = "skipped";
			else if (!nr)
				verdict = "no data";
			else if (ok)
				verdict = border ? "met (spread crosses)" : "met";
			else
				verdict = border ? "NOT met (spread crosses)" : "NOT met";
		} else {
			snprintf(tg, sizeof(tg), "%s", !strcmp(rw->op, "ctl") ? "control" : "-");
			verdict = !strcmp(rw->op, "ctl") ? "(kernel vs kernel)" : "(info)";
		}
		printf("%-14s %-4s %9s %9s %8s %8s-%-8s %6s", rw->name, rw->unit, kv, sv, rv, lo,
		       hi, cv);
		if (floors) {
			char fk[16], sf[16];

			fmt_ratio(fk, sizeof(fk), round_ratio(rw->f, rw->nf, rw->k, rw->nk));
			fmt_ratio(sf, sizeof(sf), round_ratio(rw->s, rw->ns, rw->f, rw->nf));
			printf(" %6s %7s", fk, sf);
		}
		printf(" %5d %7s %7s %7s  %-16s %-7s %s\n", nr, cr, by, sl, runs, tg, verdict);
	}
	for (i = 0; i < nrows; i++)
		nodata += rows[i].total == 0;
	printf("\ntargets met: %d of %d", met, targets);
	if (nodata)
		printf(" (%d case%s skipped)", nodata, nodata > 1 ? "s" : "");
	if (wrong_rows) {
		printf("\nWRONG OUTPUT in %d case%s:", wrong_rows, wrong_rows > 1 ? "s" : "");
		for (i = 0; i < nrows; i++)
			if (rows[i].wrong)
				printf(" %s", rows[i].name);
	}
	printf("\n");
	fputs("kernel, shim: median of the runs' values (micro cases: the median time of one\n"
	      "  iteration, or of one pipe for `many`; real programs: the wall time of a run).\n"
	      "ratio: median of shim/kernel over the pairs run back to back (below 1: the shim\n"
	      "  is faster); spread: the smallest and the largest pair ratio; cpu: the median\n"
	      "  pair ratio of CPU time, the daemon's included (real programs).  Runs that failed\n"
	      "  or timed out are left out; runs with a wrong output are timed but fail their\n"
	      "  target.  runs: how many runs (warm-ups included) were checked, and any problem.\n"
	      "served, bytes, slow: the growth of the mount's counters in a shim run, per\n"
	      "  iteration (micro cases) or per run (real programs): the pipes and socket pairs\n"
	      "  that channels served; bytes through the rings grow bytes only; slow is the\n"
	      "  payload the daemon moved itself (the slow path).\n",
	      stdout);
	if (floors)
		fputs("floor: median over the rounds of floor/kernel, where the floor run preloads a\n"
		      "  library with nothing in it, linked as the shim is: what loading any library\n"
		      "  costs these programs.  shim/fl: median of shim/floor, the shim's own cost\n"
		      "  above that floor (1: none).\n",
		      stdout);
	for (i = 0; i < nrows; i++)
		if (rows[i].desc[0])
			printf("  %-14s %s\n", rows[i].name, rows[i].desc);
	return bad_runs ? 1 : 0;
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
		"usage: life -c CASE [-n MAX] [-w WARMUP] [-b SECONDS] [-m MOUNT] [-e KIND]\n"
		"            [-l MODE] [-r ROUND] [-o FILE]\n"
		"       life -L\n"
		"       life -R FILE\n"
		"  -c CASE     one of:");
	for (size_t i = 0; i < NCASES; i++)
		fprintf(stderr, " %s", cases[i].name);
	fprintf(stderr,
		"\n"
		"  -n, -w      measured iterations at most, warm-up iterations (per case defaults)\n"
		"  -b SECONDS  stop measuring after this long (at least 5 samples)\n"
		"  -m MOUNT    the ipcd mount: its counters are read before and after\n"
		"  -e KIND     what pipe()/socketpair() must give: kernel or ipcd; or shim:\n"
		"              the shim is loaded, whatever it gives (its default)\n"
		"  -l MODE     kernel or shim, written to the result file\n"
		"  -r ROUND    round number, written to the result file\n"
		"  -o FILE     append a run record to FILE\n"
		"  -L          print the cases as case records\n"
		"  -R FILE     print the ratio table of a result file\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const struct lcase *lc = NULL;
	const char *rfile = NULL;
	bool list = false;
	char *end;
	size_t i;
	int ch;

	while ((ch = getopt(argc, argv, "c:n:w:b:m:e:l:r:o:LR:")) != -1) {
		switch (ch) {
		case 'c': opt.cname = optarg; break;
		case 'n': opt.nmax = strtol(optarg, &end, 10); if (*end || opt.nmax < 1) usage(); break;
		case 'w': opt.warm = strtol(optarg, &end, 10); if (*end || opt.warm < 0) usage(); break;
		case 'b': opt.budget = strtod(optarg, &end); if (*end || opt.budget < 0) usage(); break;
		case 'm': opt.mount = optarg; break;
		case 'e': opt.expect = optarg; break;
		case 'l': opt.mode = optarg; break;
		case 'r': opt.round = strtol(optarg, &end, 10); if (*end) usage(); break;
		case 'o': opt.out = optarg; break;
		case 'L': list = true; break;
		case 'R': rfile = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (rfile)
		return table(rfile);
	if (list) {
		for (i = 0; i < NCASES; i++)
			printf("case %s us %s %g %s\n", cases[i].name, cases[i].op,
			       cases[i].target, cases[i].desc);
		return 0;
	}
	if (!opt.cname)
		usage();
	for (i = 0; i < NCASES; i++)
		if (!strcmp(cases[i].name, opt.cname))
			lc = &cases[i];
	if (!lc) {
		fprintf(stderr, "life: no case %s\n", opt.cname);
		usage();
	}
	if (opt.expect && strcmp(opt.expect, "kernel") && strcmp(opt.expect, "ipcd") &&
	    strcmp(opt.expect, "shim"))
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	return measure(lc);
}
