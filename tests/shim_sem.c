/*
 * shim_sem.c - semantics test of the LD_PRELOAD shim: pipes and socket pairs
 * must behave exactly as the kernel's.  The program uses nothing but libc.
 * Run without the shim, it checks its own expectations against kernel pipes
 * and sockets (the reference); run with the shim preloaded, the same checks
 * must pass over channels.
 *
 * Usage: shim_sem [-k] [-l] [CHECK...]
 *   -k      keep going: run every check (each in its own process) and report
 *           all failures instead of stopping at the first
 *   -l      list the checks
 *   CHECK   run only the named checks
 *
 * Each check prints "ok - ..."; the first failure prints "FAIL: ..." and the
 * program exits 1.  Some checks try many independent cases and report each
 * case that differs from the kernel on a "FAIL: ..." line of its own before
 * failing.  Every step that could block is bounded: a watchdog thread fails
 * the check after CHECK_SECS (or the check's own limit), and forked children
 * carry an alarm().
 * At the end it prints "# slow-path payload bytes: N": what its exec'd
 * children without the shim moved through the daemon on purpose, and
 * "# slow-path payload bytes allowed: M": what may go either way (stdio,
 * descriptors reopened through /proc, splice: the shim may or may not take
 * them into its rings).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define CHECK_SECS	20	/* the watchdog's limit for one check */
#define CHILD_SECS	25	/* alarm() of every forked child */
#define MAX_KIDS	16

/* ======================================================================
 * Harness: failure reports, the watchdog, children, the check table.
 * ====================================================================== */

static _Atomic(const char *) check_name = "setup";
static _Atomic(const char *) cur_step = "";
static pid_t runner_pid;			/* the process running checks */
static _Atomic pid_t kids[MAX_KIDS];		/* its live children */
static _Atomic int64_t wd_deadline;		/* CLOCK_MONOTONIC ns; 0: off */

/* Memory shared with every subprocess (one anonymous shared mapping). */
struct outcome {
	long r;			/* what the call returned */
	int err;		/* errno after it */
	long extra;		/* a case's own second result */
	int done;		/* the child got that far */
};
struct shared {
	_Atomic unsigned long slow_expected, slow_allowed;
	struct outcome out;
};
static struct shared *shm;

static _Atomic unsigned long *slow_expected;	/* shared with subprocesses */
static _Atomic unsigned long *slow_allowed;	/* the same, either path */
static int soft_fails;				/* cases failed in this check */
static int check_secs = CHECK_SECS;		/* the running check's limit */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t ms_since(int64_t t0)
{
	return (now_ns() - t0) / 1000000;
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void kill_kids(void)
{
	for (int i = 0; i < MAX_KIDS; i++) {
		pid_t p = atomic_exchange(&kids[i], 0);

		if (p > 0) {
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
		}
	}
}

static void say(const char *msg)
{
	size_t len = strlen(msg);

	while (len) {
		ssize_t n = write(STDOUT_FILENO, msg, len);

		if (n <= 0)
			break;
		msg += n;
		len -= (size_t)n;
	}
}

static _Noreturn void fail_at(int line, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static _Noreturn void fail_at(int line, const char *fmt, ...)
{
	char msg[1536];
	const char *step = atomic_load(&cur_step);
	va_list ap;
	int n;

	n = snprintf(msg, sizeof(msg), "FAIL: %s%s: ", atomic_load(&check_name),
		     getpid() == runner_pid ? "" : " (in a child process)");
	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < (int)sizeof(msg) - 1)
		snprintf(msg + n, sizeof(msg) - (size_t)n, "%s%s [shim_sem.c:%d]\n",
			 *step ? " -- during: " : "", step, line);
	fflush(stdout);
	say(msg);
	if (getpid() == runner_pid)
		kill_kids();
	_exit(1);
}

#define FAIL(...) fail_at(__LINE__, __VA_ARGS__)
#define EXPECT(cond, ...) do { if (!(cond)) FAIL(__VA_ARGS__); } while (0)

/* A case of a check that differs from the kernel: reported on a line of its
 * own; the check goes on with its other cases and fails at its end. */
static void soft_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void soft_at(int line, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;
	int n;

	n = snprintf(msg, sizeof(msg), "FAIL: %s: ", atomic_load(&check_name));
	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < (int)sizeof(msg) - 1)
		snprintf(msg + n, sizeof(msg) - (size_t)n, " [shim_sem.c:%d]\n", line);
	fflush(stdout);
	say(msg);
	soft_fails++;
}
#define SOFT(...) soft_at(__LINE__, __VA_ARGS__)

static const char *errname(int e)
{
	const char *s = strerrorname_np(e);

	return s ? s : "E?";
}

/* A call that must succeed: its result, or a failure naming it. */
static long sys_ok(long r, const char *what, int line)
{
	if (r < 0)
		fail_at(line, "%s failed: %s (%s)", what, errname(errno), strerror(errno));
	return r;
}
#define SYS(x) sys_ok((long)(x), #x, __LINE__)

/* A call that must fail with errno e. */
static void expect_err(long r, int e, const char *what, int line)
{
	int got = errno;

	if (r != -1)
		fail_at(line, "%s returned %ld, expected -1 with %s", what, r, errname(e));
	if (got != e)
		fail_at(line, "%s failed with %s (%s), expected %s", what,
			errname(got), strerror(got), errname(e));
}
#define EXPECT_ERR(x, e) do { errno = 0; expect_err((long)(x), (e), #x, __LINE__); } while (0)

static void expect_eq(long long got, long long want, const char *what, int line)
{
	int e = errno;

	if (got != want)
		fail_at(line, "%s is %lld, expected %lld%s%s", what, got, want,
			got == -1 ? "; errno " : "", got == -1 ? errname(e) : "");
}
#define EXPECT_EQ(got, want) do { errno = 0; \
	expect_eq((long long)(got), (long long)(want), #got, __LINE__); } while (0)

static const char *evname(unsigned ev, char *buf, size_t len)
{
	static const struct { unsigned bit; const char *name; } names[] = {
		{ POLLIN, "IN" }, { POLLPRI, "PRI" }, { POLLOUT, "OUT" },
		{ POLLERR, "ERR" }, { POLLHUP, "HUP" }, { POLLNVAL, "NVAL" },
		{ POLLRDNORM, "RDNORM" }, { POLLRDBAND, "RDBAND" },
		{ POLLWRNORM, "WRNORM" }, { POLLWRBAND, "WRBAND" },
		{ POLLRDHUP, "RDHUP" },
	};
	size_t at = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (ev & names[i].bit) {
			at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? "|" : "",
					       names[i].name);
			ev &= ~names[i].bit;
		}
	if (ev)
		at += (size_t)snprintf(buf + at, len - at, "%s%#x", at ? "|" : "", ev);
	if (!at)
		snprintf(buf, len, "0");
	return buf;
}

/* Poll and epoll event masks (their common bits have the same values). */
static void expect_rev(unsigned got, unsigned want, const char *what, int line)
{
	char g[96], w[96];

	if (got != want)
		fail_at(line, "%s is %s, expected %s", what, evname(got, g, sizeof(g)),
			evname(want, w, sizeof(w)));
}
#define EXPECT_REV(got, want) expect_rev((unsigned)(got), (unsigned)(want), #got, __LINE__)

/* What the next potentially blocking step is, for failure reports; a
 * check clears it once past the step. */
static void step(const char *what)
{
	atomic_store(&cur_step, what);
}

/* A helper's own step, only when its caller named none; true if set. */
static bool substep(const char *what)
{
	if (*atomic_load(&cur_step))
		return false;
	step(what);
	return true;
}

static void *watchdog(void *arg)
{
	char msg[512];

	(void)arg;
	for (;;) {
		int64_t d = atomic_load(&wd_deadline);

		msleep(50);
		if (d && now_ns() > d) {
			const char *s = atomic_load(&cur_step);

			snprintf(msg, sizeof(msg),
				 "FAIL: %s: no progress for %d s (watchdog)%s%s\n",
				 atomic_load(&check_name), check_secs,
				 *s ? " -- stuck in: " : "", s);
			fflush(stdout);
			say(msg);
			kill_kids();
			_exit(1);
		}
	}
	return NULL;
}

static void watchdog_start(void)
{
	sigset_t all, old;
	pthread_t t;

	/* The watchdog takes no signals: they belong to the checks. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&t, NULL, watchdog, NULL))
		FAIL("cannot start the watchdog thread");
	pthread_detach(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* fork() for a check: the child gets an alarm and no list of kids. */
static pid_t kid_fork(void)
{
	pid_t p;

	fflush(stdout);
	fflush(stderr);
	p = fork();
	if (p < 0)
		FAIL("fork: %s", strerror(errno));
	if (p == 0) {
		for (int i = 0; i < MAX_KIDS; i++)
			atomic_store(&kids[i], 0);
		alarm(CHILD_SECS);
		return 0;
	}
	for (int i = 0; i < MAX_KIDS; i++) {
		pid_t zero = 0;

		if (atomic_compare_exchange_strong(&kids[i], &zero, p))
			return p;
	}
	kill(p, SIGKILL);
	FAIL("too many children");
}

static void kid_forget(pid_t p)
{
	for (int i = 0; i < MAX_KIDS; i++) {
		pid_t q = p;

		if (atomic_compare_exchange_strong(&kids[i], &q, 0))
			return;
	}
}

static int kid_wait(pid_t p)
{
	int st;

	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			FAIL("waitpid(%d): %s", (int)p, strerror(errno));
	kid_forget(p);
	return st;
}

static const char *status_str(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(st),
			 strsignal(WTERMSIG(st)),
			 WTERMSIG(st) == SIGALRM ? ", its alarm: it hung" : "");
	else
		snprintf(buf, len, "ended with wait status %#x", st);
	return buf;
}

static void kid_ok(pid_t p, const char *what)
{
	char b[128];
	int st = kid_wait(p);

	step("");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("%s %s", what, status_str(st, b, sizeof(b)));
}

static void kid_killed_by(pid_t p, int sig, const char *what)
{
	char b[128];
	int st = kid_wait(p);

	step("");
	if (!WIFSIGNALED(st) || WTERMSIG(st) != sig)
		FAIL("%s %s, expected death by signal %d (%s)", what,
		     status_str(st, b, sizeof(b)), sig, strsignal(sig));
}

static pthread_t xthread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	int e = pthread_create(&t, NULL, fn, arg);

	if (e)
		FAIL("pthread_create: %s", strerror(e));
	return t;
}

static void xjoin(pthread_t t)
{
	int e = pthread_join(t, NULL);

	if (e)
		FAIL("pthread_join: %s", strerror(e));
}

/*
 * The program's open descriptors.  The shim keeps a few of its own at 512
 * and up (ipcd-shim(7)); those are not the program's, but there must never
 * be more than a handful of them: a leak there counts too.
 */
#define SHIM_OWN_FDS	512
#define SHIM_OWN_MAX	24
/* Channels the shim may hold for later pipes: kept pairs and pairs asked
 * for ahead of each kind, per process tree. */
#define SHIM_RESERVE	40

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0, own = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && atoi(de->d_name) != dirfd(d)) {
			if (atoi(de->d_name) >= SHIM_OWN_FDS)
				own++;
			else
				n++;
		}
	closedir(d);
	return own > SHIM_OWN_MAX ? n + own : n;
}

/* ======================================================================
 * Data helpers: a pattern, a checksum, whole reads and writes.
 * ====================================================================== */

#define PAT_LEN		((1u << 20) + 4093)	/* not a power of two */
#define PAT_SLACK	(8u << 20)		/* longest slice pat_at gives */

static bool pipes_unlocked(void);
static unsigned char *pat;

static void make_pattern(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	pat = malloc(PAT_LEN + PAT_SLACK);
	if (!pat)
		FAIL("out of memory");
	for (size_t i = 0; i < PAT_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pat[i] = (unsigned char)(x >> 24);
	}
	for (size_t i = PAT_LEN; i < PAT_LEN + PAT_SLACK; i++)
		pat[i] = pat[i - PAT_LEN];
}

/* The pattern stream's bytes [off, off + len). */
static const unsigned char *pat_at(uint64_t off, size_t len)
{
	if (len > PAT_SLACK)
		FAIL("pattern slice of %zu bytes is too long", len);
	return pat + off % PAT_LEN;
}

#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			FAIL("write of %zu bytes to fd %d: %s", len, fd,
			     n < 0 ? strerror(errno) : "returned 0");
		p += n;
		len -= (size_t)n;
	}
}

/* Read until len bytes or end of file; the count. */
static size_t read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			FAIL("read from fd %d: %s", fd, strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static void expect_read(int fd, const char *want)
{
	size_t len = strlen(want);
	char buf[256];
	size_t got;
	bool mine = substep("reading expected data");

	got = read_full(fd, buf, len);
	if (got != len || memcmp(buf, want, len))
		FAIL("fd %d gave \"%.*s\", expected \"%s\"", fd, (int)got, buf, want);
	if (mine)
		step("");
}

static void expect_eof(int fd)
{
	char c;
	ssize_t n;
	bool mine = substep("reading, expecting end of file");

	n = read(fd, &c, 1);
	if (n != 0)
		FAIL("read from fd %d returned %zd%s%s, expected 0 (end of file)", fd, n,
		     n < 0 ? " with " : "", n < 0 ? errname(errno) : "");
	if (mine)
		step("");
}

static void expect_eagain(int fd)
{
	char c;

	EXPECT_ERR(read(fd, &c, 1), EAGAIN);
}

static void xclose(int fd)
{
	if (close(fd) < 0)
		FAIL("close(%d): %s", fd, strerror(errno));
}

static void close2(int fds[2])
{
	xclose(fds[0]);
	xclose(fds[1]);
}

/*
 * Give a close() time to reach the other end before a check that does not
 * wait looks at that end.  The kernel needs none: its close takes effect
 * at once, which check "close-sync" asserts on its own; elsewhere this keeps
 * each check about its own subject.
 */
static void settle(void)
{
	msleep(20);
}

static int getfl(int fd)
{
	return (int)SYS(fcntl(fd, F_GETFL));
}

static void set_nonblock(int fd, bool on)
{
	int fl = getfl(fd);

	SYS(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK));
}

static void xpipe(int fds[2])
{
	SYS(pipe(fds));
}

static void xsocketpair(int type, int sv[2])
{
	SYS(socketpair(AF_UNIX, type, 0, sv));
}

/* A kernel pipe even under the shim: the system call itself. */
static void kernel_pipe(int fds[2])
{
	SYS(syscall(SYS_pipe2, fds, O_CLOEXEC));
}

static void install(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	SYS(sigaction(sig, &sa, NULL));
}

/* Fill a nonblocking write end with pattern bytes from offset `from`
 * until EAGAIN; the count. */
static size_t fill_nonblock(int wfd, size_t from, size_t chunk)
{
	size_t total = 0;

	for (;;) {
		ssize_t n = write(wfd, pat_at(from + total, chunk), chunk);

		if (n < 0) {
			EXPECT(errno == EAGAIN, "filling fd %d: write failed with %s, "
			       "expected EAGAIN once full", wfd, errname(errno));
			return total;
		}
		EXPECT(n > 0, "write to fd %d returned 0", wfd);
		total += (size_t)n;
		EXPECT(total < (256u << 20), "fd %d takes more than 256 MiB without EAGAIN", wfd);
	}
}

/* Read exactly len bytes that must be the pattern from offset `from`. */
static void read_pattern(int fd, size_t from, size_t len)
{
	unsigned char buf[1 << 16];	/* threads use it at once */
	size_t got = 0;
	bool mine = substep("reading pattern bytes");

	while (got < len) {
		size_t want = len - got < sizeof(buf) ? len - got : sizeof(buf);
		size_t n = read_full(fd, buf, want);

		EXPECT(n == want, "fd %d ended after %zu of %zu bytes", fd, got + n, len);
		EXPECT(!memcmp(buf, pat_at(from + got, n), n),
		       "fd %d: wrong data within bytes %zu..%zu", fd, got, got + n);
		got += n;
	}
	if (mine)
		step("");
}

/* A thread that writes (and/or closes) after a delay. */
struct later {
	int fd, delay_ms;
	const void *buf;
	size_t len;
	bool close_after;
	pthread_t t;
	int64_t t0;
};

static void *later_fn(void *arg)
{
	struct later *l = arg;

	msleep(l->delay_ms);
	if (l->len)
		write_all(l->fd, l->buf, l->len);
	if (l->close_after)
		xclose(l->fd);
	return NULL;
}

static void later_start(struct later *l, int fd, int delay_ms, const void *buf,
			size_t len, bool close_after)
{
	l->fd = fd;
	l->delay_ms = delay_ms;
	l->buf = buf;
	l->len = len;
	l->close_after = close_after;
	l->t0 = now_ns();
	l->t = xthread(later_fn, l);
}

/* Join it; whoever waited for its write or close must have woken at once
 * (a generous bound: the kernel takes microseconds). */
static void later_join(struct later *l)
{
	int64_t ms;

	xjoin(l->t);
	step("");
	ms = ms_since(l->t0);
	EXPECT(ms < l->delay_ms + 600, "the wait for an event %d ms away ended after "
	       "%lld ms: the event did not wake it", l->delay_ms, (long long)ms);
}

/* ======================================================================
 * Pipes: data, EOF, SIGPIPE, O_NONBLOCK, flags, sizes.
 * ====================================================================== */

static void check_pipe_roundtrip(void)
{
	char b[64];
	int p[2];

	xpipe(p);
	EXPECT_EQ(write(p[1], "hello", 5), 5);
	EXPECT_EQ(read(p[0], b, sizeof(b)), 5);
	EXPECT(!memcmp(b, "hello", 5), "read back \"%.5s\"", b);

	/* A byte stream: three writes, one read takes them all. */
	write_all(p[1], "ab", 2);
	write_all(p[1], "cd", 2);
	write_all(p[1], "ef", 2);
	EXPECT_EQ(read(p[0], b, sizeof(b)), 6);
	EXPECT(!memcmp(b, "abcdef", 6), "read back \"%.6s\"", b);

	/* A short buffer takes a prefix; the rest stays for the next read. */
	write_all(p[1], "0123456789", 10);
	EXPECT_EQ(read(p[0], b, 4), 4);
	EXPECT(!memcmp(b, "0123", 4), "prefix \"%.4s\"", b);
	EXPECT_EQ(read(p[0], b, sizeof(b)), 6);
	EXPECT(!memcmp(b, "456789", 6), "rest \"%.6s\"", b);

	/* Zero-length calls return 0 and move nothing. */
	EXPECT_EQ(write(p[1], b, 0), 0);
	set_nonblock(p[0], true);
	EXPECT_EQ(read(p[0], b, 0), 0);
	expect_eagain(p[0]);
	set_nonblock(p[0], false);
	step("zero-length read on an empty blocking pipe (must not block)");
	EXPECT_EQ(read(p[0], b, 0), 0);
	step("");
	write_all(p[1], "x", 1);
	EXPECT_EQ(read(p[0], b, 0), 0);
	expect_read(p[0], "x");
	close2(p);
}

#define BIG (64u << 20)

static void check_pipe_large(void)
{
	static const size_t wsz[] = { 1, 7, 4096, 65536, 100000, 1 << 20, 3, 12345, 4 << 20 };
	static const size_t rsz[] = { 65536, 1, 4095, 1 << 20, 777, 131072 };
	unsigned char *buf, trailer[8];
	uint64_t h = FNV_INIT, sent;
	size_t total = 0, ntrail = 0;
	int p[2];
	pid_t pid;

	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		uint64_t off = 0;

		xclose(p[0]);
		for (size_t i = 0; off < BIG; i++) {
			size_t n = wsz[i % 9] < BIG - off ? wsz[i % 9] : BIG - off;

			write_all(p[1], pat_at(off, n), n);
			h = fnv(h, pat_at(off, n), n);
			off += n;
		}
		write_all(p[1], &h, sizeof(h));	/* the writer's checksum */
		_exit(0);
	}
	xclose(p[1]);
	buf = malloc(1 << 20);
	EXPECT(buf, "out of memory");
	step("reading 64 MiB from the writer child");
	for (size_t i = 0;; i++) {
		ssize_t n = read(p[0], buf, rsz[i % 6]);
		size_t data;

		if (n < 0 && errno == EINTR)
			continue;
		EXPECT(n >= 0, "read after %zu bytes: %s", total, strerror(errno));
		if (n == 0)
			break;
		data = total >= BIG ? 0 : ((size_t)n < BIG - total ? (size_t)n : BIG - total);
		EXPECT(!memcmp(buf, pat_at(total, data), data),
		       "wrong data within bytes %zu..%zu", total, total + data);
		h = fnv(h, buf, data);
		EXPECT(ntrail + ((size_t)n - data) <= sizeof(trailer),
		       "more than %u bytes came", BIG + 8);
		memcpy(trailer + ntrail, buf + data, (size_t)n - data);
		ntrail += (size_t)n - data;
		total += (size_t)n;
	}
	step("");
	EXPECT_EQ(total, BIG + 8);
	memcpy(&sent, trailer, sizeof(sent));
	EXPECT(sent == h, "checksum %#" PRIx64 " of the data read, the writer's is %#" PRIx64,
	       h, sent);
	free(buf);
	xclose(p[0]);
	kid_ok(pid, "the writer child");
}

static void *close_later(void *arg)
{
	msleep(100);
	xclose(*(int *)arg);
	return NULL;
}

static void check_pipe_eof(void)
{
	int p[2], go[2];
	pthread_t t;
	pid_t pid;

	/* The parent's write end closed, a child writes and exits. */
	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		xclose(p[0]);
		write_all(p[1], "bye", 3);
		_exit(0);
	}
	xclose(p[1]);
	expect_read(p[0], "bye");
	expect_eof(p[0]);
	expect_eof(p[0]);	/* and it stays so */
	xclose(p[0]);
	kid_ok(pid, "the writer child");

	/* No EOF while a child still holds a write end. */
	xpipe(p);
	xpipe(go);
	pid = kid_fork();
	if (!pid) {
		char c;

		xclose(p[0]);
		xclose(go[1]);
		EXPECT_EQ(read(go[0], &c, 1), 0);
		write_all(p[1], "late", 4);
		_exit(0);
	}
	xclose(p[1]);
	xclose(go[0]);
	set_nonblock(p[0], true);
	msleep(20);
	expect_eagain(p[0]);
	xclose(go[1]);		/* the child may go on */
	set_nonblock(p[0], false);
	expect_read(p[0], "late");
	expect_eof(p[0]);
	xclose(p[0]);
	kid_ok(pid, "the writer child");

	/* A reader blocked on an empty pipe wakes with EOF. */
	xpipe(p);
	t = xthread(close_later, &p[1]);
	step("read blocked until another thread closes the write end");
	expect_eof(p[0]);
	step("");
	xjoin(t);
	xclose(p[0]);
}

/* close() takes effect at once: as soon as it returns, the other end sees
 * EOF or EPIPE.  Many rounds, so that a window of any size shows. */
static void check_close_sync(void)
{
	enum { ROUNDS = 50 };
	char c;
	int p[2], q[2], go[2], sv[2], d;
	pid_t pid;
	ssize_t n;

	for (int i = 0; i < ROUNDS; i++) {
		SYS(pipe2(p, O_NONBLOCK));
		xclose(p[1]);
		n = read(p[0], &c, 1);
		EXPECT(n == 0, "round %d: a nonblocking read right after the last writer's close() "
		       "returned %zd%s%s, not 0 (EOF)", i, n, n < 0 ? " with " : "",
		       n < 0 ? errname(errno) : "");
		xclose(p[0]);

		xpipe(p);
		xclose(p[0]);
		n = write(p[1], "x", 1);
		EXPECT(n == -1 && errno == EPIPE, "round %d: a write right after the last "
		       "reader's close() returned %zd%s%s, not -1 with EPIPE", i, n,
		       n < 0 ? " with " : "", n < 0 ? errname(errno) : "");
		xclose(p[1]);

		xsocketpair(SOCK_STREAM | SOCK_NONBLOCK, sv);
		xclose(sv[1]);
		n = recv(sv[0], &c, 1, 0);
		EXPECT(n == 0, "round %d: recv right after the peer's close() returned %zd%s%s, "
		       "not 0 (EOF)", i, n, n < 0 ? " with " : "", n < 0 ? errname(errno) : "");
		n = send(sv[0], "x", 1, MSG_NOSIGNAL);
		EXPECT(n == -1 && errno == EPIPE, "round %d: send right after the peer's close() "
		       "returned %zd%s%s, not -1 with EPIPE", i, n, n < 0 ? " with " : "",
		       n < 0 ? errname(errno) : "");
		xclose(sv[0]);
	}

	/* Closing one of two dups is no end of file; closing the second is. */
	SYS(pipe2(p, O_NONBLOCK));
	d = (int)SYS(dup(p[1]));
	xclose(p[1]);
	n = read(p[0], &c, 1);
	EXPECT(n == -1 && errno == EAGAIN, "read with a dup of the writer still open "
	       "returned %zd%s%s, not -1 with EAGAIN", n, n < 0 ? " with " : "",
	       n < 0 ? errname(errno) : "");
	xclose(d);
	n = read(p[0], &c, 1);
	EXPECT(n == 0, "read after the last dup's close() returned %zd, not 0", n);
	xclose(p[0]);

	/* A child's copy keeps the end open after the parent's close. */
	SYS(pipe2(p, O_NONBLOCK));
	SYS(pipe(go));
	pid = kid_fork();
	if (!pid) {
		xclose(go[1]);
		n = read(go[0], &c, 1);	/* until the parent has looked */
		_exit(n == 0 ? 0 : 1);
	}
	xclose(go[0]);
	xclose(p[1]);
	n = read(p[0], &c, 1);
	EXPECT(n == -1 && errno == EAGAIN, "read with a child still holding the writer "
	       "returned %zd%s%s, not -1 with EAGAIN", n, n < 0 ? " with " : "",
	       n < 0 ? errname(errno) : "");
	xclose(go[1]);
	kid_ok(pid, "the child holding the writer");
	xclose(p[0]);

	/* dup2 over a reader and close_range close it as close() does. */
	xpipe(p);
	xpipe(q);
	SYS(dup2(q[1], p[0]));
	n = write(p[1], "x", 1);
	EXPECT(n == -1 && errno == EPIPE, "write after dup2 replaced the only reader "
	       "returned %zd, not -1 with EPIPE", n);
	close2(p);
	close2(q);
	xpipe(p);
	if (close_range((unsigned)p[0], (unsigned)p[0], 0) == 0) {
		n = write(p[1], "x", 1);
		EXPECT(n == -1 && errno == EPIPE, "write after close_range closed the only "
		       "reader returned %zd, not -1 with EPIPE", n);
	} else {
		xclose(p[0]);
	}
	xclose(p[1]);
}

static void check_pipe_eof_killed(void)
{
	struct pollfd pf;
	unsigned char *buf;
	size_t len, got;
	int p[2], st, cap;
	pid_t pid;

	/* A writer that wrote, stopped, and was killed: its data, then EOF. */
	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		xclose(p[0]);
		write_all(p[1], pat_at(0, 32768), 32768);
		raise(SIGSTOP);
		_exit(0);
	}
	xclose(p[1]);
	step("waiting for the writer child to stop");
	EXPECT_EQ(waitpid(pid, &st, WUNTRACED), pid);
	step("");
	EXPECT(WIFSTOPPED(st), "the writer child did not stop");
	SYS(kill(pid, SIGKILL));
	kid_killed_by(pid, SIGKILL, "the writer child");
	read_pattern(p[0], 0, 32768);
	expect_eof(p[0]);
	xclose(p[0]);

	/* A writer killed while blocked in a write bigger than the pipe: the
	 * reader gets a prefix of its data, then EOF. */
	xpipe(p);
	cap = (int)SYS(fcntl(p[1], F_GETPIPE_SZ));
	/* A shared ring of cells takes up to four times its size. */
	len = (pipes_unlocked() ? 8 : 4) * (size_t)cap;
	EXPECT(len <= PAT_SLACK, "pipe size %d is too big for this check", cap);
	pid = kid_fork();
	if (!pid) {
		xclose(p[0]);
		(void)write(p[1], pat_at(0, len), len);
		_exit(0);
	}
	xclose(p[1]);
	pf.fd = p[0];
	pf.events = POLLIN;
	step("waiting for the writer's first bytes");
	EXPECT_EQ(poll(&pf, 1, 10000), 1);
	step("");
	msleep(150);		/* it fills the pipe and blocks */
	SYS(kill(pid, SIGKILL));
	kid_killed_by(pid, SIGKILL, "the writer child blocked in write");
	buf = malloc(len + 1);
	EXPECT(buf, "out of memory");
	step("reading what the killed writer left");
	got = read_full(p[0], buf, len + 1);
	step("");
	EXPECT(got > 0 && got < len, "got %zu bytes of a %zu-byte write cut by SIGKILL", got, len);
	EXPECT(!memcmp(buf, pat_at(0, got), got), "the %zu bytes left are not a prefix of the data",
	       got);
	free(buf);
	expect_eof(p[0]);
	xclose(p[0]);
}

static atomic_int sig_count;

static void count_sig(int sig)
{
	(void)sig;
	atomic_fetch_add(&sig_count, 1);
}

/* In a child with SIGPIPE's default action: a write that must kill it. */
static void sigpipe_victim(int how)
{
	int p[2];

	signal(SIGPIPE, SIG_DFL);
	if (how == 0)
		xpipe(p);
	else
		xsocketpair(SOCK_STREAM, p);
	xclose(p[0]);
	settle();
	if (how == 2)
		(void)send(p[1], "x", 1, 0);
	else
		(void)write(p[1], "x", 1);
	_exit(3);
}

static void check_sigpipe(void)
{
	static const char *const victims[] = {
		"a child writing to a pipe with no reader",
		"a child writing to a stream socket whose peer closed",
		"a child sending on a stream socket whose peer closed",
	};
	struct iovec iov[2] = { { "a", 1 }, { "b", 1 } };
	struct msghdr mh;
	sigset_t set, pend;
	int p[2];
	pid_t pid;

	/* Default action: the writer dies of SIGPIPE. */
	for (int how = 0; how < 3; how++) {
		pid = kid_fork();
		if (!pid)
			sigpipe_victim(how);
		kid_killed_by(pid, SIGPIPE, victims[how]);
	}

	/* Ignored: -1 with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	xpipe(p);
	xclose(p[0]);
	settle();
	EXPECT_ERR(write(p[1], "x", 1), EPIPE);
	EXPECT_ERR(writev(p[1], iov, 2), EPIPE);

	/* Caught: EPIPE, and the handler ran once before write returned. */
	atomic_store(&sig_count, 0);
	install(SIGPIPE, count_sig, 0);
	EXPECT_ERR(write(p[1], "x", 1), EPIPE);
	EXPECT_EQ(atomic_load(&sig_count), 1);

	/* Blocked: EPIPE, and SIGPIPE is left pending. */
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	SYS(pthread_sigmask(SIG_BLOCK, &set, NULL));
	EXPECT_ERR(write(p[1], "x", 1), EPIPE);
	SYS(sigpending(&pend));
	EXPECT(sigismember(&pend, SIGPIPE) == 1, "SIGPIPE is not pending after EPIPE");
	{
		struct timespec zero = { 0, 0 };

		EXPECT_EQ(sigtimedwait(&set, NULL, &zero), SIGPIPE);
	}
	SYS(pthread_sigmask(SIG_UNBLOCK, &set, NULL));
	signal(SIGPIPE, SIG_IGN);
	xclose(p[1]);

	/* MSG_NOSIGNAL: EPIPE without a signal (default action in a child). */
	pid = kid_fork();
	if (!pid) {
		int sv[2];

		signal(SIGPIPE, SIG_DFL);
		for (int k = 0; k < 2; k++) {
			xsocketpair(k ? SOCK_SEQPACKET : SOCK_STREAM, sv);
			xclose(sv[1]);
			settle();
			EXPECT_ERR(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
			EXPECT_ERR(sendto(sv[0], "x", 1, MSG_NOSIGNAL, NULL, 0), EPIPE);
			memset(&mh, 0, sizeof(mh));
			mh.msg_iov = iov;
			mh.msg_iovlen = 2;
			EXPECT_ERR(sendmsg(sv[0], &mh, MSG_NOSIGNAL), EPIPE);
			xclose(sv[0]);
		}
		_exit(0);
	}
	kid_ok(pid, "a child sending with MSG_NOSIGNAL to a closed peer");

	/* A seqpacket socket gives EPIPE but, unlike a stream, no SIGPIPE. */
	pid = kid_fork();
	if (!pid) {
		int sv[2];

		signal(SIGPIPE, SIG_DFL);
		xsocketpair(SOCK_SEQPACKET, sv);
		xclose(sv[1]);
		settle();
		EXPECT_ERR(send(sv[0], "x", 1, 0), EPIPE);
		EXPECT_ERR(write(sv[0], "x", 1), EPIPE);
		_exit(0);
	}
	kid_ok(pid, "a child sending on a seqpacket socket whose peer closed");
}

/* Empty: EAGAIN; fill to EAGAIN; drain all of it back intact; EAGAIN. */
static void nonblock_cycle(int rfd, int wfd)
{
	static unsigned char buf[1 << 16];
	size_t total, got = 0;

	expect_eagain(rfd);
	total = fill_nonblock(wfd, 0, 4096);
	EXPECT(total > 0, "nothing could be written to an empty fd %d", wfd);
	EXPECT_ERR(write(wfd, pat_at(0, 4096), 4096), EAGAIN);
	for (;;) {
		ssize_t n = read(rfd, buf, sizeof(buf));

		if (n < 0) {
			EXPECT(errno == EAGAIN, "draining: %s", errname(errno));
			break;
		}
		EXPECT(n > 0, "end of file while draining");
		EXPECT(!memcmp(buf, pat_at(got, (size_t)n), (size_t)n),
		       "wrong data within bytes %zu..%zu", got, got + (size_t)n);
		got += (size_t)n;
	}
	EXPECT(got == total, "drained %zu bytes of the %zu written", got, total);
	expect_eagain(rfd);
}

static void check_nonblock_pipe2(void)
{
	char b[2048];
	int p[2], sv[2], sent = 0, got = 0;

	SYS(pipe2(p, O_NONBLOCK));
	nonblock_cycle(p[0], p[1]);
	xclose(p[1]);
	settle();
	expect_eof(p[0]);	/* EOF wins over EAGAIN */
	xclose(p[0]);

	xsocketpair(SOCK_STREAM | SOCK_NONBLOCK, sv);
	nonblock_cycle(sv[1], sv[0]);
	nonblock_cycle(sv[0], sv[1]);
	xclose(sv[0]);
	settle();
	expect_eof(sv[1]);
	xclose(sv[1]);

	/* Datagrams: fill until EAGAIN, then every datagram comes back whole. */
	xsocketpair(SOCK_DGRAM | SOCK_NONBLOCK, sv);
	EXPECT_ERR(recv(sv[1], b, sizeof(b), 0), EAGAIN);
	for (;;) {
		ssize_t n = send(sv[0], pat_at((size_t)sent, 1000), 1000, 0);

		if (n < 0) {
			EXPECT(errno == EAGAIN, "filling a datagram socket: %s", errname(errno));
			break;
		}
		EXPECT_EQ(n, 1000);
		EXPECT(++sent < 1000000, "a datagram socket never fills");
	}
	for (;; got++) {
		ssize_t n = recv(sv[1], b, sizeof(b), 0);

		if (n < 0) {
			EXPECT(errno == EAGAIN, "draining a datagram socket: %s", errname(errno));
			break;
		}
		EXPECT_EQ(n, 1000);
		EXPECT(!memcmp(b, pat_at((size_t)got, 1000), 1000), "datagram %d is wrong", got);
	}
	EXPECT(got == sent, "received %d datagrams of %d", got, sent);
	close2(sv);
}

struct drainer {
	int fd;
	size_t len;
	pthread_t t;
};

static void *drain_fn(void *arg)
{
	struct drainer *d = arg;

	msleep(150);
	read_pattern(d->fd, 0, d->len);
	expect_eof(d->fd);
	return NULL;
}

static void check_nonblock_fcntl(void)
{
	struct drainer d;
	size_t total;
	int64_t t0;
	int p[2], on;

	xpipe(p);
	EXPECT(!(getfl(p[0]) & O_NONBLOCK) && !(getfl(p[1]) & O_NONBLOCK),
	       "a fresh pipe is nonblocking");
	set_nonblock(p[0], true);
	set_nonblock(p[1], true);
	EXPECT(getfl(p[0]) & O_NONBLOCK, "F_GETFL lacks O_NONBLOCK after F_SETFL");
	EXPECT(getfl(p[1]) & O_NONBLOCK, "F_GETFL lacks O_NONBLOCK after F_SETFL");
	nonblock_cycle(p[0], p[1]);

	/* Back to blocking: a write into a full pipe waits for the reader. */
	total = fill_nonblock(p[1], 0, 4096);
	set_nonblock(p[1], false);
	set_nonblock(p[0], false);
	EXPECT(!(getfl(p[1]) & O_NONBLOCK), "O_NONBLOCK stays after clearing it");
	d.fd = p[0];
	d.len = total + 8192;
	d.t = xthread(drain_fn, &d);
	t0 = now_ns();
	step("blocking write into a full pipe");
	write_all(p[1], pat_at(total, 8192), 8192);
	step("");
	EXPECT(ms_since(t0) >= 100, "a write into a full blocking pipe returned after %lld ms, "
	       "before the reader started", (long long)ms_since(t0));
	xclose(p[1]);
	xjoin(d.t);
	xclose(p[0]);

	/* FIONBIO sets and clears it too. */
	xpipe(p);
	on = 1;
	SYS(ioctl(p[0], FIONBIO, &on));
	EXPECT(getfl(p[0]) & O_NONBLOCK, "F_GETFL lacks O_NONBLOCK after FIONBIO");
	expect_eagain(p[0]);
	on = 0;
	SYS(ioctl(p[0], FIONBIO, &on));
	EXPECT(!(getfl(p[0]) & O_NONBLOCK), "O_NONBLOCK stays after FIONBIO 0");
	close2(p);
}

static void check_getfl(void)
{
	int p[2], sv[2];

	xpipe(p);
	EXPECT_EQ(getfl(p[0]) & (O_ACCMODE | O_NONBLOCK), O_RDONLY);
	EXPECT_EQ(getfl(p[1]) & (O_ACCMODE | O_NONBLOCK), O_WRONLY);
	EXPECT_EQ(SYS(fcntl(p[0], F_GETFD)), 0);
	/* O_NONBLOCK on one end leaves the other alone. */
	set_nonblock(p[0], true);
	EXPECT_EQ(getfl(p[0]) & (O_ACCMODE | O_NONBLOCK), O_RDONLY | O_NONBLOCK);
	EXPECT_EQ(getfl(p[1]) & (O_ACCMODE | O_NONBLOCK), O_WRONLY);
	/* F_SETFL cannot change the access mode. */
	SYS(fcntl(p[1], F_SETFL, O_RDWR));
	EXPECT_EQ(getfl(p[1]) & O_ACCMODE, O_WRONLY);
	close2(p);

	SYS(pipe2(p, O_NONBLOCK | O_CLOEXEC));
	EXPECT_EQ(getfl(p[0]) & (O_ACCMODE | O_NONBLOCK), O_RDONLY | O_NONBLOCK);
	EXPECT_EQ(getfl(p[1]) & (O_ACCMODE | O_NONBLOCK), O_WRONLY | O_NONBLOCK);
	EXPECT_EQ(SYS(fcntl(p[0], F_GETFD)), FD_CLOEXEC);
	EXPECT_EQ(SYS(fcntl(p[1], F_GETFD)), FD_CLOEXEC);
	SYS(fcntl(p[1], F_SETFD, 0));
	EXPECT_EQ(SYS(fcntl(p[1], F_GETFD)), 0);
	close2(p);

	for (int k = 0; k < 3; k++) {
		static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };

		xsocketpair(types[k], sv);
		EXPECT_EQ(getfl(sv[0]) & (O_ACCMODE | O_NONBLOCK), O_RDWR);
		EXPECT_EQ(getfl(sv[1]) & (O_ACCMODE | O_NONBLOCK), O_RDWR);
		close2(sv);
		xsocketpair(types[k] | SOCK_NONBLOCK | SOCK_CLOEXEC, sv);
		EXPECT_EQ(getfl(sv[0]) & (O_ACCMODE | O_NONBLOCK), O_RDWR | O_NONBLOCK);
		EXPECT_EQ(getfl(sv[1]) & (O_ACCMODE | O_NONBLOCK), O_RDWR | O_NONBLOCK);
		EXPECT_EQ(SYS(fcntl(sv[1], F_GETFD)), FD_CLOEXEC);
		close2(sv);
	}
}

/* Records for atomicity checks: a header, then bytes derived from it. */
struct rec_hdr {
	uint32_t magic;
	uint16_t writer, len;
	uint32_t seq, pad;
};
#define REC_MAGIC 0x52454331u

static size_t rec_len(unsigned w, unsigned s)
{
	return sizeof(struct rec_hdr) +
	       (w * 7919u + s * 104729u) % (PIPE_BUF - sizeof(struct rec_hdr) + 1);
}

static unsigned char rec_byte(unsigned w, unsigned s, size_t i)
{
	return (unsigned char)(w * 61 + s * 13 + i);
}

/* One record of at most PIPE_BUF bytes in one write (or one writev of
 * several pieces), which must go in whole. */
static void rec_write(int fd, unsigned w, unsigned s, bool vectored)
{
	unsigned char b[PIPE_BUF];
	struct rec_hdr h = { REC_MAGIC, (uint16_t)w, (uint16_t)rec_len(w, s), s, 0 };
	size_t len = h.len;
	ssize_t n;

	memcpy(b, &h, sizeof(h));
	for (size_t i = sizeof(h); i < len; i++)
		b[i] = rec_byte(w, s, i);
	if (vectored) {
		/* Five pieces, some of them empty. */
		size_t a = len / 3, c = len / 2;
		struct iovec iov[5] = {
			{ b, a }, { b + a, 0 }, { b + a, c - a }, { b + c, len - c }, { b, 0 },
		};

		n = writev(fd, iov, 5);
	} else {
		n = write(fd, b, len);
	}
	EXPECT(n == (ssize_t)len, "%s of a %zu-byte record returned %zd (%s)",
	       vectored ? "writev" : "write", len, n, n < 0 ? errname(errno) : "short");
}

/* Read records from `writers` writers, `per` each, until EOF; each must be
 * whole (not interleaved with another) and in order per writer. */
static void rec_read_all(int fd, unsigned writers, unsigned per)
{
	static const size_t rsz[] = { 1000, 7777, 1, 4096, 65536, 333 };
	unsigned char *acc = malloc(2 * 65536);
	unsigned next[8] = { 0 };
	size_t have = 0, total = 0;

	EXPECT(acc && writers <= 8, "setup");
	bool mine = substep("reading records until end of file");

	for (size_t i = 0;; i++) {
		ssize_t n = read(fd, acc + have, rsz[i % 6]);
		size_t at = 0;

		if (n < 0 && errno == EINTR)
			continue;
		EXPECT(n >= 0, "read: %s", strerror(errno));
		if (n == 0)
			break;
		have += (size_t)n;
		total += (size_t)n;
		while (have - at >= sizeof(struct rec_hdr)) {
			struct rec_hdr h;

			memcpy(&h, acc + at, sizeof(h));
			EXPECT(h.magic == REC_MAGIC && h.writer < writers,
			       "garbage where a record should start, %zu bytes into the stream "
			       "(interleaved writes?)", total - have + at);
			EXPECT(h.seq == next[h.writer],
			       "writer %u: record %u came where %u was due", h.writer, h.seq,
			       next[h.writer]);
			EXPECT(h.len == rec_len(h.writer, h.seq), "record length %u is wrong", h.len);
			if (have - at < h.len)
				break;
			for (size_t k = sizeof(h); k < h.len; k++)
				EXPECT(acc[at + k] == rec_byte(h.writer, h.seq, k),
				       "writer %u record %u is torn at byte %zu (another write "
				       "cut into it)", h.writer, h.seq, k);
			next[h.writer]++;
			at += h.len;
		}
		memmove(acc, acc + at, have - at);
		have -= at;
	}
	EXPECT(have == 0, "%zu stray bytes at end of file", have);
	for (unsigned w = 0; w < writers; w++)
		EXPECT(next[w] == per, "writer %u: %u records of %u came", w, next[w], per);
	free(acc);
	if (mine)
		step("");
}

static void atomic_writers(bool vectored)
{
	enum { WRITERS = 4, PER = 2500 };
	pid_t pid[WRITERS];
	int p[2];

	xpipe(p);
	for (unsigned w = 0; w < WRITERS; w++) {
		pid[w] = kid_fork();
		if (!pid[w]) {
			xclose(p[0]);
			for (unsigned s = 0; s < PER; s++)
				rec_write(p[1], w, s, vectored);
			_exit(0);
		}
	}
	xclose(p[1]);
	rec_read_all(p[0], WRITERS, PER);
	xclose(p[0]);
	for (unsigned w = 0; w < WRITERS; w++)
		kid_ok(pid[w], "a writer child");
}

static void check_pipe_buf_atomic(void)
{
	atomic_writers(false);
}

static void check_fionread(void)
{
	char b[64];
	int p[2], n;

	xpipe(p);
	SYS(ioctl(p[0], FIONREAD, &n));
	EXPECT_EQ(n, 0);
	write_all(p[1], pat_at(0, 123), 123);
	SYS(ioctl(p[0], FIONREAD, &n));
	EXPECT_EQ(n, 123);
	EXPECT_EQ(read(p[0], b, 23), 23);
	SYS(ioctl(p[0], FIONREAD, &n));
	EXPECT_EQ(n, 100);
	read_pattern(p[0], 23, 100);
	xclose(p[1]);
	SYS(ioctl(p[0], FIONREAD, &n));
	EXPECT_EQ(n, 0);
	xclose(p[0]);

	xsocketpair(SOCK_STREAM, p);
	write_all(p[0], "abc", 3);
	write_all(p[0], "defgh", 5);
	SYS(ioctl(p[1], FIONREAD, &n));
	EXPECT_EQ(n, 8);
	close2(p);

	/* A datagram socket tells the next datagram's size... */
	xsocketpair(SOCK_DGRAM, p);
	write_all(p[0], "abc", 3);
	write_all(p[0], "defgh", 5);
	SYS(ioctl(p[1], FIONREAD, &n));
	EXPECT_EQ(n, 3);
	close2(p);

	/* ...a seqpacket socket all queued bytes, as a stream does. */
	xsocketpair(SOCK_SEQPACKET, p);
	write_all(p[0], "abc", 3);
	write_all(p[0], "defgh", 5);
	SYS(ioctl(p[1], FIONREAD, &n));
	EXPECT_EQ(n, 8);
	close2(p);
}

static void check_lseek(void)
{
	int p[2], sv[2];

	xpipe(p);
	xsocketpair(SOCK_STREAM, sv);
	EXPECT_ERR(lseek(p[0], 0, SEEK_CUR), ESPIPE);
	EXPECT_ERR(lseek(p[1], 0, SEEK_CUR), ESPIPE);
	EXPECT_ERR(lseek(p[0], 10, SEEK_SET), ESPIPE);
	EXPECT_ERR(lseek(sv[0], 0, SEEK_CUR), ESPIPE);
	EXPECT_ERR(lseek(sv[1], 0, SEEK_END), ESPIPE);
	close2(p);
	close2(sv);
}

static void check_fstat(void)
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
	struct stat st;
	int p[2], sv[2];

	xpipe(p);
	for (int i = 0; i < 2; i++) {
		SYS(fstat(p[i], &st));
		EXPECT(S_ISFIFO(st.st_mode), "fstat of pipe end %d: mode %#o, not a FIFO", i,
		       (unsigned)st.st_mode);
		SYS(fstatat(p[i], "", &st, AT_EMPTY_PATH));
		EXPECT(S_ISFIFO(st.st_mode), "fstatat(AT_EMPTY_PATH) of pipe end %d: mode %#o",
		       i, (unsigned)st.st_mode);
	}
	close2(p);
	for (int k = 0; k < 3; k++) {
		xsocketpair(types[k], sv);
		for (int i = 0; i < 2; i++) {
			SYS(fstat(sv[i], &st));
			EXPECT(S_ISSOCK(st.st_mode), "fstat of socket type %d end %d: mode %#o, "
			       "not a socket", types[k], i, (unsigned)st.st_mode);
		}
		close2(sv);
	}
}

/* ======================================================================
 * Socket pairs.
 * ====================================================================== */

struct xfer {
	int fd;
	size_t len;
	bool reader;
	pthread_t t;
};

static void *xfer_fn(void *arg)
{
	struct xfer *x = arg;

	if (x->reader)
		read_pattern(x->fd, 0, x->len);
	else
		write_all(x->fd, pat_at(0, x->len), x->len);
	return NULL;
}

static void check_stream_pair(void)
{
	struct xfer x[4];
	struct later l;
	char b[64];
	int sv[2];

	/* Both directions at once, 4 MiB each way, one thread per job. */
	xsocketpair(SOCK_STREAM, sv);
	for (int i = 0; i < 4; i++) {
		x[i].fd = sv[i & 1];
		x[i].len = 4u << 20;
		x[i].reader = i >= 2;
		x[i].t = xthread(xfer_fn, &x[i]);
	}
	step("4 MiB each way over a stream pair");
	for (int i = 0; i < 4; i++)
		xjoin(x[i].t);
	step("");

	/* MSG_PEEK leaves the bytes; MSG_WAITALL waits for all it asked. */
	write_all(sv[0], "hello", 5);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), MSG_PEEK), 5);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), 0), 5);
	EXPECT(!memcmp(b, "hello", 5), "peeked data went missing");
	later_start(&l, sv[0], 100, "0123456789", 10, false);
	write_all(sv[0], "ab", 2);
	step("recv with MSG_WAITALL");
	EXPECT_EQ(recv(sv[1], b, 12, MSG_WAITALL), 12);
	EXPECT(!memcmp(b, "ab0123456789", 12), "MSG_WAITALL data \"%.12s\"", b);
	later_join(&l);

	/* SHUT_WR: the peer reads what was sent, then EOF; the local side
	 * gets EPIPE; the other direction still works. */
	write_all(sv[0], "tail", 4);
	SYS(shutdown(sv[0], SHUT_WR));
	expect_read(sv[1], "tail");
	expect_eof(sv[1]);
	expect_eof(sv[1]);
	EXPECT_ERR(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
	EXPECT_ERR(write(sv[0], "x", 1), EPIPE);	/* SIGPIPE is ignored */
	write_all(sv[1], "back", 4);
	expect_read(sv[0], "back");
	close2(sv);

	/* SHUT_WR from a side that never sent anything: EOF all the same,
	 * on stream and seqpacket pairs. */
	for (int k = 0; k < 2; k++) {
		xsocketpair(k ? SOCK_SEQPACKET : SOCK_STREAM, sv);
		SYS(shutdown(sv[1], SHUT_WR));
		EXPECT_EQ(recv(sv[0], b, sizeof(b), MSG_DONTWAIT), 0);
		step("read after the peer's SHUT_WR, nothing ever sent");
		expect_eof(sv[0]);
		step("");
		close2(sv);
	}

	/* SHUT_RD: local reads give 0 at once; the peer's writes EPIPE. */
	xsocketpair(SOCK_STREAM, sv);
	SYS(shutdown(sv[0], SHUT_RD));
	step("recv after SHUT_RD (must not block)");
	EXPECT_EQ(recv(sv[0], b, sizeof(b), 0), 0);
	step("");
	EXPECT_ERR(send(sv[1], "x", 1, MSG_NOSIGNAL), EPIPE);
	write_all(sv[0], "still", 5);
	expect_read(sv[1], "still");
	EXPECT_ERR(shutdown(sv[0], 42), EINVAL);
	close2(sv);

	/* Peer closed: EOF, and EPIPE on write. */
	xsocketpair(SOCK_STREAM, sv);
	write_all(sv[1], "last", 4);
	xclose(sv[1]);
	expect_read(sv[0], "last");
	expect_eof(sv[0]);
	EXPECT_ERR(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
	xclose(sv[0]);
}

static void msg_checks(int type)
{
	struct msghdr mh;
	struct iovec iov[2];
	char b[70000], c[8];
	int sv[2];

	xsocketpair(type, sv);
	/* Boundaries, both ways. */
	for (int dir = 0; dir < 2; dir++) {
		int s = sv[dir], r = sv[!dir];

		EXPECT_EQ(send(s, "a", 1, 0), 1);
		EXPECT_EQ(send(s, "bb", 2, 0), 2);
		EXPECT_EQ(write(s, "ccc", 3), 3);
		EXPECT_EQ(recv(r, b, sizeof(b), 0), 1);
		EXPECT_EQ(read(r, b, sizeof(b)), 2);
		EXPECT(!memcmp(b, "bb", 2), "second message \"%.2s\"", b);
		EXPECT_EQ(recv(r, b, sizeof(b), 0), 3);
		EXPECT(!memcmp(b, "ccc", 3), "third message \"%.3s\"", b);
	}

	/* A big message comes in one piece. */
	EXPECT_EQ(send(sv[0], pat_at(5, 60000), 60000, 0), 60000);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), 0), 60000);
	EXPECT(!memcmp(b, pat_at(5, 60000), 60000), "the 60000-byte message is wrong");

	/* A short buffer cuts the message; the rest is gone. */
	EXPECT_EQ(send(sv[0], "0123456789", 10, 0), 10);
	EXPECT_EQ(send(sv[0], "next", 4, 0), 4);
	EXPECT_EQ(recv(sv[1], c, 4, 0), 4);
	EXPECT(!memcmp(c, "0123", 4), "cut message \"%.4s\"", c);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), 0), 4);
	EXPECT(!memcmp(b, "next", 4), "the message after a cut one is \"%.4s\"", b);

	/* MSG_TRUNC: the real length. */
	EXPECT_EQ(send(sv[0], "0123456789", 10, 0), 10);
	EXPECT_EQ(recv(sv[1], c, 4, MSG_TRUNC), 10);
	EXPECT(!memcmp(c, "0123", 4), "MSG_TRUNC data \"%.4s\"", c);

	/* recvmsg: msg_flags says MSG_TRUNC when cut, and only then. */
	memset(&mh, 0, sizeof(mh));
	iov[0].iov_base = c;
	iov[0].iov_len = 4;
	mh.msg_iov = iov;
	mh.msg_iovlen = 1;
	EXPECT_EQ(send(sv[0], "abcdefgh", 8, 0), 8);
	EXPECT_EQ(recvmsg(sv[1], &mh, 0), 4);
	EXPECT(mh.msg_flags & MSG_TRUNC, "recvmsg of a cut message: msg_flags %#x lacks MSG_TRUNC",
	       (unsigned)mh.msg_flags);
	EXPECT_EQ(send(sv[0], "abcdefgh", 8, 0), 8);
	mh.msg_flags = 0;
	EXPECT_EQ(recvmsg(sv[1], &mh, MSG_TRUNC), 8);
	EXPECT(mh.msg_flags & MSG_TRUNC, "recvmsg(MSG_TRUNC): msg_flags %#x lacks MSG_TRUNC",
	       (unsigned)mh.msg_flags);
	EXPECT_EQ(send(sv[0], "abc", 3, 0), 3);
	iov[0].iov_base = b;
	iov[0].iov_len = sizeof(b);
	mh.msg_flags = MSG_TRUNC;
	EXPECT_EQ(recvmsg(sv[1], &mh, 0), 3);
	EXPECT(!(mh.msg_flags & MSG_TRUNC), "recvmsg of a whole message: msg_flags %#x has "
	       "MSG_TRUNC", (unsigned)mh.msg_flags);

	/* MSG_PEEK: the message stays, cut or not. */
	EXPECT_EQ(send(sv[0], "peek", 4, 0), 4);
	EXPECT_EQ(recv(sv[1], c, 2, MSG_PEEK), 2);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), MSG_PEEK), 4);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), 0), 4);
	EXPECT(!memcmp(b, "peek", 4), "peeked message \"%.4s\"", b);

	/* MSG_DONTWAIT on a blocking socket. */
	EXPECT_ERR(recv(sv[1], b, sizeof(b), MSG_DONTWAIT), EAGAIN);

	/* An empty message is a message. */
	EXPECT_EQ(send(sv[0], "", 0, 0), 0);
	EXPECT_EQ(send(sv[0], "z", 1, 0), 1);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), MSG_DONTWAIT), 0);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), MSG_DONTWAIT), 1);
	EXPECT_ERR(recv(sv[1], b, sizeof(b), MSG_DONTWAIT), EAGAIN);
	close2(sv);
}

static void check_dgram_seqpacket(void)
{
	int sv[2];

	msg_checks(SOCK_DGRAM);
	msg_checks(SOCK_SEQPACKET);

	/* A seqpacket socket whose peer closed: its messages, then EOF. */
	xsocketpair(SOCK_SEQPACKET, sv);
	EXPECT_EQ(send(sv[0], "one", 3, 0), 3);
	xclose(sv[0]);
	expect_read(sv[1], "one");
	expect_eof(sv[1]);
	xclose(sv[1]);
}

/* ---- descriptors passed with SCM_RIGHTS ---- */

/* sendmsg of `data` with the descriptors fds[0..n) on fd. */
static ssize_t send_fds(int fd, const char *data, size_t len, const int *fds, int n)
{
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { (void *)data, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	memset(&u, 0, sizeof(u));
	m.msg_control = u.buf;
	m.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, (size_t)n * sizeof(int));
	return sendmsg(fd, &m, 0);
}

/* recvmsg into buf with room for `room` descriptors; the descriptors
 * received go to fds, their count to *nfds, msg_flags to *mflags. */
static ssize_t recv_fds(int fd, char *buf, size_t len, int room, int *fds, int *nfds,
			int *mflags, int flags)
{
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	ssize_t n;

	memset(&u, 0, sizeof(u));
	m.msg_control = room ? u.buf : NULL;
	m.msg_controllen = room ? CMSG_SPACE((size_t)room * sizeof(int)) : 0;
	*nfds = 0;
	n = recvmsg(fd, &m, flags);
	if (n < 0)
		return n;
	*mflags = m.msg_flags;
	for (cm = room ? CMSG_FIRSTHDR(&m) : NULL; cm; cm = CMSG_NXTHDR(&m, cm)) {
		EXPECT(cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS,
		       "unexpected control message level %d type %d", cm->cmsg_level,
		       cm->cmsg_type);
		int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		for (int i = 0; i < k && *nfds < 8; i++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
	}
	return n;
}

static void check_rights(void)
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
	char buf[64], tmpl[] = "/tmp/shim_sem.XXXXXX";
	int sv[2], p[2], got[8], nfds, mf, file, st;
	ssize_t n;
	pid_t pid;

	file = (int)SYS(mkstemp(tmpl));
	SYS(unlink(tmpl));
	write_all(file, "file contents", 13);

	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		const char *tn = types[t] == SOCK_STREAM ? "stream" :
				 types[t] == SOCK_DGRAM ? "dgram" : "seqpacket";

		xsocketpair(types[t], sv);
		xpipe(p);
		/* Plain, then with a file and a pipe end, then plain again. */
		EXPECT_EQ(send(sv[0], "12345", 5, 0), 5);
		int two[2] = { file, p[0] };

		EXPECT_EQ(send_fds(sv[0], "abc", 3, two, 2), 3);
		EXPECT_EQ(send(sv[0], "xyz", 3, 0), 3);
		size_t have = 0;
		int seen = 0;

		while (have < 11) {
			n = recv_fds(sv[1], buf + have, sizeof(buf) - have, 4, got, &nfds, &mf, 0);
			EXPECT(n > 0, "%s: recvmsg returned %zd (%s)", tn, n, errname(errno));
			if (nfds) {
				EXPECT(!seen, "%s: descriptors came twice", tn);
				EXPECT(memchr(buf + have, 'a', (size_t)n) != NULL,
				       "%s: the descriptors came with \"%.*s\", not with the "
				       "bytes sent with them", tn, (int)n, buf + have);
				seen = nfds;
				EXPECT(nfds == 2, "%s: %d descriptors received, not 2", tn, nfds);
				EXPECT(!(mf & MSG_CTRUNC), "%s: MSG_CTRUNC with room for all", tn);
			}
			have += (size_t)n;
		}
		EXPECT(seen, "%s: the descriptors never came", tn);
		EXPECT(!memcmp(buf, "12345abcxyz", 11), "%s: bytes %.11s, not 12345abcxyz",
		       tn, buf);
		/* The file: the same open file (a shared offset). */
		EXPECT_EQ(lseek(got[0], 0, SEEK_CUR), 13);
		EXPECT_EQ(pread(got[0], buf, 4, 0), 4);
		EXPECT(!memcmp(buf, "file", 4), "%s: the passed file reads %.4s", tn, buf);
		SYS(lseek(file, 13, SEEK_SET));
		/* The pipe's read end works where it arrived. */
		write_all(p[1], "through", 7);
		expect_read(got[1], "through");
		xclose(got[0]);
		xclose(got[1]);
		close2(p);

		/* No room: the descriptors are closed and MSG_CTRUNC says so.
		 * Passing the only write end of a pipe shows the close: EOF. */
		xpipe(p);
		EXPECT_EQ(send_fds(sv[0], "w", 1, &p[1], 1), 1);
		xclose(p[1]);
		n = recv_fds(sv[1], buf, sizeof(buf), 0, got, &nfds, &mf, 0);
		EXPECT_EQ(n, 1);
		EXPECT(mf & MSG_CTRUNC, "%s: no MSG_CTRUNC when descriptors were dropped", tn);
		step("reading a pipe whose passed write end was dropped");
		EXPECT_EQ(read(p[0], buf, 1), 0);
		step("");
		xclose(p[0]);

		/* A plain recv drops them too. */
		xpipe(p);
		EXPECT_EQ(send_fds(sv[0], "r", 1, &p[1], 1), 1);
		xclose(p[1]);
		EXPECT_EQ(recv(sv[1], buf, sizeof(buf), 0), 1);
		step("reading a pipe whose passed write end a recv dropped");
		EXPECT_EQ(read(p[0], buf, 1), 0);
		step("");
		xclose(p[0]);

		/* Room for one (CMSG_SPACE rounds it up to two): two of three
		 * arrive, MSG_CTRUNC. */
		int three[3] = { file, file, file };

		EXPECT_EQ(send_fds(sv[0], "t", 1, three, 3), 1);
		n = recv_fds(sv[1], buf, sizeof(buf), 1, got, &nfds, &mf, MSG_CMSG_CLOEXEC);
		EXPECT_EQ(n, 1);
		EXPECT_EQ(nfds, (int)((CMSG_SPACE(sizeof(int)) - CMSG_LEN(0)) / sizeof(int)));
		EXPECT(mf & MSG_CTRUNC, "%s: no MSG_CTRUNC with room for one of two", tn);
		EXPECT(fcntl(got[0], F_GETFD) & FD_CLOEXEC,
		       "%s: MSG_CMSG_CLOEXEC did not set close-on-exec", tn);
		for (int i = 0; i < nfds; i++)
			xclose(got[i]);

		/* A bad descriptor fails the send, which then sends nothing. */
		int bad = 1000000;

		EXPECT_ERR(send_fds(sv[0], "b", 1, &bad, 1), EBADF);
		EXPECT_EQ(send(sv[0], "k", 1, 0), 1);
		EXPECT_EQ(recv(sv[1], buf, sizeof(buf), 0), 1);
		EXPECT(buf[0] == 'k', "%s: a failed send left bytes behind", tn);

		/* From a child process: it opens a pipe and passes its read end. */
		pid = kid_fork();
		if (!pid) {
			int q[2];

			xpipe(q);
			if (send_fds(sv[0], "c", 1, &q[0], 1) != 1)
				_exit(2);
			write_all(q[1], "child", 5);
			_exit(0);
		}
		step("receiving a pipe end from a child");
		n = recv_fds(sv[1], buf, sizeof(buf), 2, got, &nfds, &mf, 0);
		step("");
		EXPECT_EQ(n, 1);
		EXPECT_EQ(nfds, 1);
		kid_ok(pid, "the child passing a pipe end");
		expect_read(got[0], "child");
		EXPECT_EQ(read(got[0], buf, 1), 0);
		xclose(got[0]);
		close2(sv);
	}
	/* A pipe end passed over a kernel socket pair still works. */
	SYS(syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, sv));
	xpipe(p);
	EXPECT_EQ(send_fds(sv[0], "k", 1, &p[0], 1), 1);
	xclose(p[0]);
	n = recv_fds(sv[1], buf, sizeof(buf), 1, got, &nfds, &mf, 0);
	EXPECT_EQ(n, 1);
	EXPECT_EQ(nfds, 1);
	write_all(p[1], "kernel", 6);
	xclose(p[1]);
	expect_read(got[0], "kernel");
	EXPECT_EQ(read(got[0], buf, 1), 0);
	xclose(got[0]);
	close2(sv);
	(void)st;
	xclose(file);
}

static void check_sockopt(void)
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
	socklen_t len;
	int sv[2], p[2], v;
	char c;

	for (int k = 0; k < 3; k++) {
		xsocketpair(types[k], sv);
		for (int i = 0; i < 2; i++) {
			len = sizeof(v);
			SYS(getsockopt(sv[i], SOL_SOCKET, SO_TYPE, &v, &len));
			EXPECT_EQ(v, types[k]);
			EXPECT_EQ(len, sizeof(int));
			len = sizeof(v);
			SYS(getsockopt(sv[i], SOL_SOCKET, SO_DOMAIN, &v, &len));
			EXPECT_EQ(v, AF_UNIX);
			len = sizeof(v);
			SYS(getsockopt(sv[i], SOL_SOCKET, SO_ERROR, &v, &len));
			EXPECT_EQ(v, 0);
			len = sizeof(v);
			SYS(getsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &v, &len));
			EXPECT(v > 0, "SO_RCVBUF %d", v);
		}
		close2(sv);
	}
	/* A pipe is no socket. */
	xpipe(p);
	len = sizeof(v);
	EXPECT_ERR(getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &len), ENOTSOCK);
	EXPECT_ERR(send(p[1], "x", 1, 0), ENOTSOCK);
	EXPECT_ERR(recv(p[0], &c, 1, MSG_DONTWAIT), ENOTSOCK);
	EXPECT_ERR(shutdown(p[1], SHUT_WR), ENOTSOCK);
	close2(p);
}

/* ======================================================================
 * Descriptors: dup family, close_range, fork, exec.
 * ====================================================================== */

static void check_dup(void)
{
	int p[2], q[2], a[2], w[6], r2, sv[2];
	struct stat st;
	char b[16];

	xpipe(p);
	set_nonblock(p[0], true);
	w[0] = p[1];
	w[1] = (int)SYS(dup(p[1]));
	w[2] = (int)SYS(dup2(p[1], 100));
	w[3] = (int)SYS(dup3(p[1], 101, O_CLOEXEC));
	w[4] = (int)SYS(fcntl(p[1], F_DUPFD, 200));
	w[5] = (int)SYS(fcntl(p[1], F_DUPFD_CLOEXEC, 210));
	EXPECT_EQ(w[2], 100);
	EXPECT_EQ(w[3], 101);
	EXPECT(w[4] >= 200 && w[5] >= 210, "F_DUPFD gave %d and %d", w[4], w[5]);
	EXPECT_EQ(fcntl(w[1], F_GETFD), 0);
	EXPECT_EQ(fcntl(w[2], F_GETFD), 0);
	EXPECT_EQ(fcntl(w[3], F_GETFD), FD_CLOEXEC);
	EXPECT_EQ(fcntl(w[4], F_GETFD), 0);
	EXPECT_EQ(fcntl(w[5], F_GETFD), FD_CLOEXEC);
	EXPECT_EQ(dup2(p[1], p[1]), p[1]);
	EXPECT_ERR(dup3(p[1], p[1], 0), EINVAL);
	for (int i = 0; i < 6; i++) {
		EXPECT_EQ(getfl(w[i]) & O_ACCMODE, O_WRONLY);
		b[i] = (char)('0' + i);
		EXPECT_EQ(write(w[i], &b[i], 1), 1);
	}
	EXPECT_EQ(read(p[0], b, sizeof(b)), 6);
	EXPECT(!memcmp(b, "012345", 6), "through the dups came \"%.6s\"", b);
	/* EOF only when the last of them closes. */
	for (int i = 0; i < 6; i++) {
		EXPECT_EQ(write(w[i], "x", 1), 1);
		xclose(w[i]);
		EXPECT_EQ(read(p[0], b, sizeof(b)), 1);
		if (i < 5)
			expect_eagain(p[0]);
	}
	settle();
	expect_eof(p[0]);
	xclose(p[0]);

	/* Dups of the read end share one stream and one O_NONBLOCK. */
	xpipe(q);
	r2 = (int)SYS(dup(q[0]));
	write_all(q[1], "ab", 2);
	EXPECT_EQ(read(q[0], b, 1), 1);
	EXPECT_EQ(read(r2, b + 1, 1), 1);
	EXPECT(!memcmp(b, "ab", 2), "read through two dups \"%.2s\"", b);
	set_nonblock(r2, true);
	EXPECT(getfl(q[0]) & O_NONBLOCK, "O_NONBLOCK set through a dup is not on the original");
	expect_eagain(q[0]);
	xclose(r2);
	close2(q);

	/* dup2 onto the last write end closes it: its reader sees EOF. */
	xpipe(a);
	xpipe(q);
	SYS(dup2(q[1], a[1]));
	expect_eof(a[0]);
	write_all(a[1], "via", 3);	/* a[1] is q's write end now */
	expect_read(q[0], "via");
	xclose(a[0]);
	xclose(a[1]);
	close2(q);

	/* A dup of a socket end is the same socket. */
	xsocketpair(SOCK_SEQPACKET, sv);
	r2 = (int)SYS(dup(sv[0]));
	SYS(fstat(r2, &st));
	EXPECT(S_ISSOCK(st.st_mode), "a dup of a socket end is not a socket");
	EXPECT_EQ(send(r2, "dup", 3, 0), 3);
	xclose(r2);
	EXPECT_EQ(recv(sv[1], b, sizeof(b), 0), 3);
	close2(sv);
}

static void check_close_range(void)
{
	int p[4][2], q[2];

	for (int i = 0; i < 4; i++) {
		xpipe(p[i]);
		SYS(dup2(p[i][1], 300 + i));
		xclose(p[i][1]);
	}
	if (close_range(300, 303, 0) < 0) {
		EXPECT(errno == ENOSYS, "close_range: %s", strerror(errno));
		for (int i = 0; i < 4; i++) {
			xclose(300 + i);
			xclose(p[i][0]);
		}
		printf("# close_range: no such system call here\n");
		return;
	}
	for (int i = 0; i < 4; i++) {
		EXPECT_ERR(fcntl(300 + i, F_GETFD), EBADF);
		expect_eof(p[i][0]);
		xclose(p[i][0]);
	}

	/* CLOSE_RANGE_CLOEXEC marks them and leaves them working. */
	xpipe(q);
	SYS(dup2(q[1], 310));
	SYS(dup2(q[1], 311));
	SYS(close_range(310, 311, CLOSE_RANGE_CLOEXEC));
	EXPECT_EQ(fcntl(310, F_GETFD), FD_CLOEXEC);
	EXPECT_EQ(fcntl(311, F_GETFD), FD_CLOEXEC);
	write_all(311, "cx", 2);
	expect_read(q[0], "cx");
	xclose(q[1]);
	xclose(310);
	xclose(311);
	expect_eof(q[0]);
	xclose(q[0]);

	/* Open-ended. */
	xpipe(q);
	SYS(dup2(q[1], 400));
	xclose(q[1]);
	SYS(close_range(400, ~0u, 0));
	expect_eof(q[0]);
	xclose(q[0]);
}

static void check_fork(void)
{
	enum { N = 1000 };
	int down[2], up[2], shared[2], sv[2], p[2];
	unsigned counts[2] = { 0, 0 };
	uint64_t v[2];
	pid_t pid;

	/* Request and reply on two pipes; both processes also write to a
	 * third pipe whose write end they share. */
	xpipe(down);
	xpipe(up);
	xpipe(shared);
	pid = kid_fork();
	if (!pid) {
		uint64_t x;

		xclose(down[1]);
		xclose(up[0]);
		xclose(shared[0]);
		while (read_full(down[0], &x, sizeof(x)) == sizeof(x)) {
			uint64_t y[2] = { 1, x };

			x = x * 3 + 1;
			write_all(up[1], &x, sizeof(x));
			write_all(shared[1], y, sizeof(y));
		}
		_exit(0);
	}
	xclose(down[0]);
	xclose(up[1]);
	step("request and reply with a forked child");
	for (uint64_t i = 0; i < N; i++) {
		uint64_t y[2] = { 0, i }, x;

		write_all(down[1], &i, sizeof(i));
		EXPECT_EQ(read_full(up[0], &x, sizeof(x)), sizeof(x));
		EXPECT(x == i * 3 + 1, "reply %" PRIu64 " to %" PRIu64, x, i);
		write_all(shared[1], y, sizeof(y));
	}
	step("");
	xclose(down[1]);
	expect_eof(up[0]);
	xclose(up[0]);
	xclose(shared[1]);
	while (read_full(shared[0], v, sizeof(v)) == sizeof(v)) {
		EXPECT(v[0] < 2 && v[1] == counts[v[0]], "shared pipe: record %" PRIu64
		       " from process %" PRIu64 " out of order", v[1], v[0]);
		counts[v[0]]++;
	}
	EXPECT(counts[0] == N && counts[1] == N, "shared pipe: %u and %u records of %u",
	       counts[0], counts[1], N);
	xclose(shared[0]);
	kid_ok(pid, "the forked child");

	/* Ping-pong over a socket pair across fork. */
	xsocketpair(SOCK_STREAM, sv);
	pid = kid_fork();
	if (!pid) {
		uint32_t x;

		xclose(sv[0]);
		while (read_full(sv[1], &x, sizeof(x)) == sizeof(x)) {
			x++;
			write_all(sv[1], &x, sizeof(x));
		}
		_exit(0);
	}
	xclose(sv[1]);
	step("ping-pong over a socket pair with a forked child");
	for (uint32_t i = 0; i < N; i++) {
		uint32_t x = i * 2;

		write_all(sv[0], &x, sizeof(x));
		EXPECT_EQ(read_full(sv[0], &x, sizeof(x)), sizeof(x));
		EXPECT_EQ(x, i * 2 + 1);
	}
	step("");
	SYS(shutdown(sv[0], SHUT_WR));
	expect_eof(sv[0]);
	xclose(sv[0]);
	kid_ok(pid, "the forked child");

	/* Data written before fork is there for the child. */
	xpipe(p);
	write_all(p[1], "before", 6);
	pid = kid_fork();
	if (!pid) {
		expect_read(p[0], "before");
		write_all(p[1], "child", 5);
		_exit(0);
	}
	kid_ok(pid, "the forked child");
	xclose(p[1]);
	expect_read(p[0], "child");
	expect_eof(p[0]);
	xclose(p[0]);
}

/* --- exec ------------------------------------------------------------- */

#define EXEC_IN		(256u << 10)
#define EXEC_OUT	(256u << 10)
#define PONGS		200

extern char **environ;

/*
 * Exec this program as an exec child with args.  Without keep_preload the
 * child runs without LD_PRELOAD; its value travels in SHIM_SEM_PRELOAD so
 * that the child can give it back to a descendant it execs with keep_preload.
 */
static _Noreturn void exec_self(const char *const *args, bool keep_preload)
{
	static char saved[8192];
	char *argv[64], *envp[512];
	const char *pre = getenv("LD_PRELOAD");
	int n = 0, e = 0;

	argv[n++] = (char *)"shim_sem";
	argv[n++] = (char *)"--exec-child";
	while (*args && n < 63)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	if (!pre)
		pre = getenv("SHIM_SEM_PRELOAD");
	for (char **v = environ; *v && e < 510; v++)
		if (strncmp(*v, "SHIM_SEM_PRELOAD=", 17) && strncmp(*v, "LD_PRELOAD=", 11))
			envp[e++] = *v;
	if (pre && *pre) {
		snprintf(saved, sizeof(saved), "%s=%s",
			 keep_preload ? "LD_PRELOAD" : "SHIM_SEM_PRELOAD", pre);
		envp[e++] = saved;
	}
	envp[e] = NULL;
	execve("/proc/self/exe", argv, envp);
	FAIL("execve /proc/self/exe: %s", strerror(errno));
}

static const char *num(char *buf, int v)
{
	snprintf(buf, 16, "%d", v);
	return buf;
}

/* For the handlers of single_thread_child. */
static int sig_close_fd = -1, sig_from_fd = -1, sig_to_fd = -1;

static void close_in_handler(int sig)
{
	(void)sig;
	close(sig_close_fd);
}

static void relay_in_handler(int sig)
{
	char c;

	(void)sig;
	if (read(sig_from_fd, &c, 1) == 1 && write(sig_to_fd, &c, 1) != 1)
		_exit(3);
}

/* SIGUSR1 to ourselves in ms milliseconds, with no thread to send it. */
static void usr1_in(timer_t *t, int ms)
{
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
	struct itimerspec it = { .it_value = { 0, ms * 1000000L } };

	SYS(timer_create(CLOCK_MONOTONIC, &ev, t));
	SYS(timer_settime(*t, 0, &it, NULL));
}

/*
 * The exec'd side of the single-thread check: a process that never made a
 * thread, where the shim's reads and writes take no references.  Data goes
 * through; a handler that closes the end a blocked read() waits on ends that
 * read with EINTR, and a handler that reads and writes other pipes meanwhile
 * feeds it.
 */
static void single_thread_child(void)
{
	int a[2], b[2], i, j;
	timer_t t;
	char c;

	xpipe(a);
	for (i = 0; i < 10000; i++) {
		write_all(a[1], &i, sizeof(i));
		EXPECT_EQ(read_full(a[0], &j, sizeof(j)), sizeof(j));
		EXPECT(i == j, "read %d after writing %d", j, i);
	}
	step("a handler closes the end a read waits on");
	sig_close_fd = a[0];
	install(SIGUSR1, close_in_handler, 0);
	usr1_in(&t, 100);
	EXPECT_ERR(read(a[0], &c, 1), EINTR);
	SYS(timer_delete(t));
	EXPECT_ERR(fcntl(a[0], F_GETFD), EBADF);
	xclose(a[1]);

	step("a handler feeds the pipe a read waits on from another pipe");
	xpipe(a);
	xpipe(b);
	write_all(b[1], "x", 1);
	sig_from_fd = b[0];
	sig_to_fd = a[1];
	install(SIGUSR1, relay_in_handler, SA_RESTART);
	usr1_in(&t, 100);
	EXPECT_EQ(read(a[0], &c, 1), 1);
	EXPECT(c == 'x', "read '%c', not the 'x' the handler relayed", c);
	SYS(timer_delete(t));
	for (i = 0; i < 1000; i++) {
		write_all(a[1], &i, sizeof(i));
		EXPECT_EQ(read_full(a[0], &j, sizeof(j)), sizeof(j));
		EXPECT(i == j, "read %d after writing %d", j, i);
	}
	xclose(a[0]);
	xclose(a[1]);
	xclose(b[0]);
	xclose(b[1]);
	step("");
}

static int exec_child_more(const char *mode, int argc, char **argv);

/* The exec'd side of the exec checks. */
static int exec_child(int argc, char **argv)
{
	const char *mode = argc > 0 ? argv[0] : "";
	static char name[64];

	runner_pid = getpid();
	snprintf(name, sizeof(name), "exec child %s", mode);
	atomic_store(&check_name, name);
	make_pattern();
	if (!strcmp(mode, "pipe-echo") && argc == 3) {
		/* Read to EOF, report count and checksum, then send data. */
		int rfd = atoi(argv[1]), wfd = atoi(argv[2]);
		static unsigned char buf[65536];
		uint64_t rep[2] = { 0, FNV_INIT };
		ssize_t n;

		while ((n = read(rfd, buf, sizeof(buf))) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			EXPECT(n > 0, "read inherited fd %d: %s", rfd, strerror(errno));
			rep[0] += (uint64_t)n;
			rep[1] = fnv(rep[1], buf, (size_t)n);
		}
		write_all(wfd, rep, sizeof(rep));
		write_all(wfd, pat_at(11, EXEC_OUT), EXEC_OUT);
		return 0;
	}
	if (!strcmp(mode, "sock-pong") && argc == 2) {
		/* Answer each 16-byte ping, then expect EOF. */
		int fd = atoi(argv[1]);
		char b[16];

		for (int i = 0; i < PONGS; i++) {
			char want[17];

			EXPECT_EQ(read_full(fd, b, 16), 16);
			snprintf(want, sizeof(want), "ping %010d", i);
			EXPECT(!memcmp(b, want, 16), "ping %d is \"%.16s\"", i, b);
			memcpy(b, "pong", 4);
			write_all(fd, b, 16);
		}
		expect_eof(fd);
		return 0;
	}
	if (!strcmp(mode, "single") && argc == 1) {
		single_thread_child();
		return 0;
	}
	if (!strcmp(mode, "closed") && argc >= 3) {
		/* argv[1]: an inherited empty nonblocking read end; argv[2]:
		 * the go pipe; the rest: fds that exec must have closed. */
		int nb = atoi(argv[1]), go = atoi(argv[2]);

		for (int i = 3; i < argc; i++)
			EXPECT_ERR(fcntl(atoi(argv[i]), F_GETFD), EBADF);
		EXPECT(getfl(nb) & O_NONBLOCK, "the inherited end lost O_NONBLOCK");
		expect_eagain(nb);
		expect_eof(go);
		return 0;
	}
	return exec_child_more(mode, argc, argv);
}

static void exec_pipe_echo(bool keep)
{
	uint64_t rep[2];
	int in[2], out[2];
	char a[16], b[16];
	pid_t pid;

	xpipe(in);
	xpipe(out);
	pid = kid_fork();
	if (!pid) {
		const char *args[] = { "pipe-echo", num(a, in[0]), num(b, out[1]), NULL };

		xclose(in[1]);
		xclose(out[0]);
		exec_self(args, keep);
	}
	xclose(in[0]);
	xclose(out[1]);
	step("writing to an exec'd child");
	write_all(in[1], pat_at(7, EXEC_IN), EXEC_IN);
	xclose(in[1]);
	step("reading the exec'd child's report");
	EXPECT_EQ(read_full(out[0], rep, sizeof(rep)), sizeof(rep));
	step("");
	EXPECT(rep[0] == EXEC_IN, "the exec'd child read %" PRIu64 " bytes of %u", rep[0],
	       EXEC_IN);
	EXPECT(rep[1] == fnv(FNV_INIT, pat_at(7, EXEC_IN), EXEC_IN),
	       "the exec'd child read the wrong bytes");
	read_pattern(out[0], 11, EXEC_OUT);
	expect_eof(out[0]);
	xclose(out[0]);
	kid_ok(pid, "the exec'd child");
	if (!keep)
		atomic_fetch_add(slow_expected, EXEC_IN + sizeof(rep) + EXEC_OUT);
}

static void exec_sock_pong(bool keep)
{
	char a[16], b[17];
	int sv[2];
	pid_t pid;

	xsocketpair(SOCK_STREAM, sv);
	pid = kid_fork();
	if (!pid) {
		const char *args[] = { "sock-pong", num(a, sv[1]), NULL };

		xclose(sv[0]);
		exec_self(args, keep);
	}
	xclose(sv[1]);
	step("ping-pong with an exec'd child");
	for (int i = 0; i < PONGS; i++) {
		char want[17];

		snprintf(b, sizeof(b), "ping %010d", i);
		write_all(sv[0], b, 16);
		EXPECT_EQ(read_full(sv[0], b, 16), 16);
		snprintf(want, sizeof(want), "pong %010d", i);
		EXPECT(!memcmp(b, want, 16), "pong %d is \"%.16s\"", i, b);
	}
	step("");
	SYS(shutdown(sv[0], SHUT_WR));
	expect_eof(sv[0]);
	xclose(sv[0]);
	kid_ok(pid, "the exec'd child");
	if (!keep)
		atomic_fetch_add(slow_expected, 2u * 16 * PONGS);
}

/* CLOEXEC ends are gone in the exec'd child: the parent sees EOF on pipe
 * and socket whose last other end was there; the child finds the numbers
 * closed; an inherited nonblocking end stays nonblocking. */
static void exec_cloexec(bool keep)
{
	char s[6][16];
	int c[2], sv[2], nb[2], go[2], hi1, hi2;
	pid_t pid;

	SYS(pipe2(c, O_CLOEXEC));
	xsocketpair(SOCK_STREAM | SOCK_CLOEXEC, sv);
	SYS(pipe2(nb, O_NONBLOCK));
	xpipe(go);
	pid = kid_fork();
	if (!pid) {
		const char *args[8];

		xclose(go[1]);
		xclose(nb[1]);
		hi1 = (int)SYS(dup3(c[1], 150, O_CLOEXEC));
		hi2 = (int)SYS(fcntl(sv[1], F_DUPFD_CLOEXEC, 160));
		args[0] = "closed";
		args[1] = num(s[0], nb[0]);
		args[2] = num(s[1], go[0]);
		args[3] = num(s[2], c[1]);
		args[4] = num(s[3], sv[1]);
		args[5] = num(s[4], hi1);
		args[6] = num(s[5], hi2);
		args[7] = NULL;
		exec_self(args, keep);
	}
	xclose(c[1]);
	xclose(sv[1]);
	xclose(nb[0]);
	xclose(go[0]);
	step("EOF from a CLOEXEC pipe end closed by the child's exec");
	expect_eof(c[0]);
	step("EOF from a CLOEXEC socket end closed by the child's exec");
	expect_eof(sv[0]);
	step("");
	xclose(go[1]);		/* lets the child finish */
	kid_ok(pid, "the exec'd child");
	xclose(c[0]);
	xclose(sv[0]);
	xclose(nb[1]);
}

static void check_exec_preloaded(void)
{
	exec_pipe_echo(true);
	exec_sock_pong(true);
	exec_cloexec(true);
}

static void check_single(void)
{
	const char *args[] = { "single", NULL };
	pid_t pid = kid_fork();

	if (!pid)
		exec_self(args, true);
	step("a process with one thread");
	kid_ok(pid, "the single-threaded child");
}

static void check_exec_plain(void)
{
	exec_pipe_echo(false);
	exec_sock_pong(false);
	exec_cloexec(false);
}

/* ======================================================================
 * Signals and threads.
 * ====================================================================== */

/* A thread that sends SIGUSR1 to a target thread: `times` signals (0:
 * until told to stop) every every_ms after first_ms; then, if asked, it
 * writes data, or drains a full pipe. */
struct pester {
	pthread_t target, t;
	int first_ms, every_ms, times;
	atomic_bool stop;
	int fd;
	const char *data;	/* written after the signals */
	size_t drain;		/* or bytes to read after the signals */
};

static void *pester_fn(void *arg)
{
	struct pester *p = arg;

	msleep(p->first_ms);
	for (int i = 0; !atomic_load(&p->stop); i++) {
		if (p->times && i == p->times)
			break;
		pthread_kill(p->target, SIGUSR1);
		msleep(p->every_ms);
	}
	msleep(100);
	if (p->data)
		write_all(p->fd, p->data, strlen(p->data));
	if (p->drain)
		read_pattern(p->fd, 0, p->drain);
	return NULL;
}

static void pester_start(struct pester *p, int times, int fd, const char *data, size_t drain)
{
	p->target = pthread_self();
	p->first_ms = 150;
	p->every_ms = 60;
	p->times = times;
	atomic_store(&p->stop, false);
	p->fd = fd;
	p->data = data;
	p->drain = drain;
	p->t = xthread(pester_fn, p);
}

static void pester_end(struct pester *p)
{
	atomic_store(&p->stop, true);
	xjoin(p->t);
	step("");
}

static void check_eintr_restart(void)
{
	struct pester pe;
	char b[16];
	size_t full;
	int p[2], sv[2];
	ssize_t n;

	install(SIGUSR1, count_sig, SA_RESTART);

	/* A blocked read goes on after the handler, and gets the data. */
	xpipe(p);
	atomic_store(&sig_count, 0);
	pester_start(&pe, 2, p[1], "data", 0);
	step("read blocked while SA_RESTART signals arrive");
	n = read(p[0], b, sizeof(b));
	EXPECT(n == 4, "a read interrupted by an SA_RESTART handler returned %zd%s%s, "
	       "expected to go on and return the 4 bytes written later", n,
	       n < 0 ? " with " : "", n < 0 ? errname(errno) : "");
	EXPECT(!memcmp(b, "data", 4), "the read gave \"%.4s\"", b);
	pester_end(&pe);
	EXPECT(atomic_load(&sig_count) >= 1, "no handler ran");

	/* The same for recv on a stream socket. */
	xsocketpair(SOCK_STREAM, sv);
	atomic_store(&sig_count, 0);
	pester_start(&pe, 2, sv[1], "sock", 0);
	step("recv blocked while SA_RESTART signals arrive");
	n = recv(sv[0], b, sizeof(b), 0);
	EXPECT(n == 4, "a recv interrupted by an SA_RESTART handler returned %zd%s%s", n,
	       n < 0 ? " with " : "", n < 0 ? errname(errno) : "");
	pester_end(&pe);
	EXPECT(atomic_load(&sig_count) >= 1, "no handler ran");
	close2(sv);

	/* A write blocked on a full pipe goes on too once the reader drains. */
	close2(p);
	xpipe(p);
	set_nonblock(p[1], true);
	full = fill_nonblock(p[1], 0, 4096);
	set_nonblock(p[1], false);
	atomic_store(&sig_count, 0);
	pester_start(&pe, 2, p[0], NULL, full + 100);
	step("write blocked on a full pipe while SA_RESTART signals arrive");
	n = write(p[1], pat_at(full, 100), 100);
	EXPECT(n == 100, "a write interrupted by an SA_RESTART handler returned %zd%s%s", n,
	       n < 0 ? " with " : "", n < 0 ? errname(errno) : "");
	pester_end(&pe);
	EXPECT(atomic_load(&sig_count) >= 1, "no handler ran");
	close2(p);
	signal(SIGUSR1, SIG_DFL);
}

static void check_eintr(void)
{
	struct pester pe;
	struct pollfd pf;
	struct epoll_event ev;
	char b[16];
	int p[2], sv[2], ep;
	fd_set rs;

	install(SIGUSR1, count_sig, 0);
	xpipe(p);

	atomic_store(&sig_count, 0);
	pester_start(&pe, 0, -1, NULL, 0);
	step("read blocked until a signal without SA_RESTART");
	EXPECT_ERR(read(p[0], b, sizeof(b)), EINTR);
	pester_end(&pe);
	EXPECT(atomic_load(&sig_count) >= 1, "no handler ran");
	close2(p);

	xsocketpair(SOCK_STREAM, sv);
	pester_start(&pe, 0, -1, NULL, 0);
	step("recv blocked until a signal without SA_RESTART");
	EXPECT_ERR(recv(sv[0], b, sizeof(b), 0), EINTR);
	pester_end(&pe);
	close2(sv);

	/* A write blocked on a full pipe, nothing of it written: EINTR. */
	xpipe(p);
	set_nonblock(p[1], true);
	(void)fill_nonblock(p[1], 0, 4096);
	set_nonblock(p[1], false);
	pester_start(&pe, 0, -1, NULL, 0);
	step("write blocked on a full pipe until a signal without SA_RESTART");
	EXPECT_ERR(write(p[1], b, 1), EINTR);
	pester_end(&pe);
	close2(p);

	/* poll, select and epoll_wait are never restarted. */
	install(SIGUSR1, count_sig, SA_RESTART);
	xpipe(p);
	pf.fd = p[0];
	pf.events = POLLIN;
	pester_start(&pe, 0, -1, NULL, 0);
	step("poll until a signal");
	EXPECT_ERR(poll(&pf, 1, 10000), EINTR);
	pester_end(&pe);
	FD_ZERO(&rs);
	FD_SET(p[0], &rs);
	pester_start(&pe, 0, -1, NULL, 0);
	step("select until a signal");
	EXPECT_ERR(select(p[0] + 1, &rs, NULL, NULL, NULL), EINTR);
	pester_end(&pe);
	ep = (int)SYS(epoll_create1(EPOLL_CLOEXEC));
	ev.events = EPOLLIN;
	ev.data.u64 = 1;
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
	pester_start(&pe, 0, -1, NULL, 0);
	step("epoll_wait until a signal");
	EXPECT_ERR(epoll_wait(ep, &ev, 1, 10000), EINTR);
	pester_end(&pe);
	xclose(ep);
	close2(p);
	signal(SIGUSR1, SIG_DFL);
}

/* Threads on one pipe: records of REC_SZ bytes, written whole, read in
 * multiples; every record exactly once. */
#define T_WRITERS	4
#define T_READERS	4
#define T_PER		5000
#define REC_SZ		64

struct tshare {
	int fd;
	unsigned id;
	_Atomic unsigned char *seen;
};

static void *t_writer(void *arg)
{
	struct tshare *t = arg;
	unsigned char r[REC_SZ];

	for (uint32_t s = 0; s < T_PER; s++) {
		uint32_t hdr[2] = { t->id, s };

		memcpy(r, hdr, sizeof(hdr));
		for (size_t i = sizeof(hdr); i < REC_SZ; i++)
			r[i] = rec_byte(t->id, s, i);
		EXPECT_EQ(write(t->fd, r, REC_SZ), REC_SZ);
	}
	return NULL;
}

static void check_record(const unsigned char *r, size_t len, _Atomic unsigned char *seen)
{
	uint32_t hdr[2];

	memcpy(hdr, r, sizeof(hdr));
	EXPECT(hdr[0] < T_WRITERS && hdr[1] < T_PER, "garbage record (%u, %u)", hdr[0], hdr[1]);
	for (size_t i = sizeof(hdr); i < len; i++)
		EXPECT(r[i] == rec_byte(hdr[0], hdr[1], i), "record (%u, %u) torn at byte %zu",
		       hdr[0], hdr[1], i);
	EXPECT(atomic_fetch_add(&seen[hdr[0] * T_PER + hdr[1]], 1) == 0,
	       "record (%u, %u) came twice", hdr[0], hdr[1]);
}

static void *t_reader(void *arg)
{
	struct tshare *t = arg;
	unsigned char b[8 * REC_SZ];

	for (;;) {
		ssize_t n = read(t->fd, b, sizeof(b));

		EXPECT(n >= 0, "read: %s", strerror(errno));
		if (n == 0)
			return NULL;
		EXPECT(n % REC_SZ == 0, "a read returned %zd bytes, not whole %d-byte records "
		       "(atomic writes split)", n, REC_SZ);
		for (ssize_t i = 0; i < n; i += REC_SZ)
			check_record(b + i, REC_SZ, t->seen);
	}
}

/* Datagram threads: messages of varying size; a 1-byte one stops a reader. */
static void *d_writer(void *arg)
{
	struct tshare *t = arg;
	unsigned char r[2048];

	for (uint32_t s = 0; s < T_PER; s++) {
		uint32_t hdr[2] = { t->id, s };
		size_t len = 8 + (s * 37 + t->id * 11) % 2000;

		memcpy(r, hdr, sizeof(hdr));
		for (size_t i = sizeof(hdr); i < len; i++)
			r[i] = rec_byte(t->id, s, i);
		EXPECT_EQ(send(t->fd, r, len, 0), len);
	}
	return NULL;
}

static void *d_reader(void *arg)
{
	struct tshare *t = arg;
	unsigned char b[4096];

	for (;;) {
		ssize_t n = recv(t->fd, b, sizeof(b), 0);
		uint32_t hdr[2];

		EXPECT(n >= 0, "recv: %s", strerror(errno));
		if (n == 1)
			return NULL;
		EXPECT(n >= 8, "a %zd-byte datagram", n);
		memcpy(hdr, b, sizeof(hdr));
		EXPECT(hdr[0] < T_WRITERS && hdr[1] < T_PER, "garbage datagram");
		EXPECT((size_t)n == 8 + (hdr[1] * 37 + hdr[0] * 11) % 2000,
		       "datagram (%u, %u) has %zd bytes", hdr[0], hdr[1], n);
		check_record(b, (size_t)n, t->seen);
	}
}

static void run_threads(int wfd, int rfd, void *(*wfn)(void *), void *(*rfn)(void *),
			bool dgram)
{
	struct tshare w[T_WRITERS], r[T_READERS];
	pthread_t wt[T_WRITERS], rt[T_READERS];
	_Atomic unsigned char *seen = calloc(T_WRITERS * T_PER, 1);

	EXPECT(seen, "out of memory");
	for (unsigned i = 0; i < T_READERS; i++) {
		r[i] = (struct tshare){ rfd, i, seen };
		rt[i] = xthread(rfn, &r[i]);
	}
	for (unsigned i = 0; i < T_WRITERS; i++) {
		w[i] = (struct tshare){ wfd, i, seen };
		wt[i] = xthread(wfn, &w[i]);
	}
	step("threads writing and reading");
	for (unsigned i = 0; i < T_WRITERS; i++)
		xjoin(wt[i]);
	if (dgram)
		for (unsigned i = 0; i < T_READERS; i++)
			EXPECT_EQ(send(wfd, "", 1, 0), 1);
	else
		xclose(wfd);
	for (unsigned i = 0; i < T_READERS; i++)
		xjoin(rt[i]);
	step("");
	for (unsigned i = 0; i < T_WRITERS * T_PER; i++)
		EXPECT(seen[i] == 1, "record (%u, %u) never came", i / T_PER, i % T_PER);
	free((void *)seen);
}

static void check_threads(void)
{
	int p[2], sv[2];

	xpipe(p);
	run_threads(p[1], p[0], t_writer, t_reader, false);
	xclose(p[0]);
	xsocketpair(SOCK_DGRAM, sv);
	run_threads(sv[0], sv[1], d_writer, d_reader, true);
	close2(sv);
}

/* ======================================================================
 * Readiness: poll, ppoll, select, pselect, epoll.
 * ====================================================================== */

static short poll1(int fd, short events, int timeout)
{
	struct pollfd pf = { fd, events, 0 };
	int n = poll(&pf, 1, timeout);

	EXPECT(n >= 0, "poll(fd %d): %s", fd, strerror(errno));
	EXPECT(n == (pf.revents != 0), "poll returned %d with revents %#x", n,
	       (unsigned)pf.revents);
	return pf.revents;
}

static void check_poll(void)
{
	struct pollfd f[3];
	struct timespec ts;
	struct later l;
	sigset_t mask;
	char b[16];
	int64_t t0;
	int p[2], q[2], sv[2], closed;

	xpipe(p);
	f[0] = (struct pollfd){ p[0], POLLIN, 0 };
	f[1] = (struct pollfd){ p[1], POLLOUT, 0 };
	/* Timeout 0: the write end is writable, the empty read end not. */
	EXPECT_EQ(poll(f, 2, 0), 1);
	EXPECT_REV(f[0].revents, 0);
	EXPECT_REV(f[1].revents, POLLOUT);
	/* A positive timeout with nothing coming runs out. */
	t0 = now_ns();
	EXPECT_EQ(poll(f, 1, 120), 0);
	EXPECT(ms_since(t0) >= 100, "a 120 ms poll returned after %lld ms",
	       (long long)ms_since(t0));
	/* Data makes the read end readable. */
	write_all(p[1], "x", 1);
	EXPECT_REV(poll1(p[0], POLLIN, 0), POLLIN);
	EXPECT_REV(poll1(p[0], POLLIN | POLLOUT, 0), POLLIN);
	EXPECT_EQ(read(p[0], b, 1), 1);
	EXPECT_REV(poll1(p[0], POLLIN, 0), 0);
	/* Data arriving during a wait ends it. */
	later_start(&l, p[1], 100, "y", 1, false);
	step("poll waiting for data from a thread");
	EXPECT_REV(poll1(p[0], POLLIN, 10000), POLLIN);
	later_join(&l);
	EXPECT_EQ(read(p[0], b, 1), 1);
	/* A full pipe is not writable; drained, it is again. */
	set_nonblock(p[1], true);
	(void)fill_nonblock(p[1], 0, 4096);
	EXPECT_REV(poll1(p[1], POLLOUT, 0), 0);
	EXPECT_REV(poll1(p[0], POLLIN, 0), POLLIN);
	set_nonblock(p[0], true);
	while (read(p[0], b, sizeof(b)) > 0)
		;
	set_nonblock(p[0], false);
	set_nonblock(p[1], false);
	EXPECT_REV(poll1(p[1], POLLOUT, 0), POLLOUT);
	/* Writer gone: POLLIN|POLLHUP while data is left, then POLLHUP alone,
	 * also when not asked for. */
	write_all(p[1], "z", 1);
	xclose(p[1]);
	settle();
	EXPECT_REV(poll1(p[0], POLLIN, 0), POLLIN | POLLHUP);
	EXPECT_EQ(read(p[0], b, sizeof(b)), 1);
	EXPECT_REV(poll1(p[0], POLLIN, 0), POLLHUP);
	EXPECT_REV(poll1(p[0], 0, 0), POLLHUP);
	xclose(p[0]);

	/* Reader gone: the write end shows POLLERR (with POLLOUT). */
	xpipe(q);
	xclose(q[0]);
	settle();
	EXPECT_REV(poll1(q[1], 0, 0), POLLERR);
	EXPECT_REV(poll1(q[1], POLLOUT, 0), POLLOUT | POLLERR);
	xclose(q[1]);

	/* A blocked poll wakes when the last writer closes. */
	xpipe(q);
	later_start(&l, q[1], 100, NULL, 0, true);
	step("poll waiting for the writer to close");
	EXPECT_REV(poll1(q[0], POLLIN, 10000), POLLHUP);
	later_join(&l);
	xclose(q[0]);

	/* Stream and seqpacket sockets: writable; readable after a send;
	 * readable (a read gives EOF at once) after the peer's SHUT_WR;
	 * readable with POLLHUP after the peer closed. */
	for (int k = 0; k < 2; k++) {
		xsocketpair(k ? SOCK_SEQPACKET : SOCK_STREAM, sv);
		EXPECT_REV(poll1(sv[0], POLLIN | POLLOUT, 0), POLLOUT);
		write_all(sv[1], "s", 1);
		EXPECT_REV(poll1(sv[0], POLLIN | POLLOUT, 0), POLLIN | POLLOUT);
		EXPECT_EQ(read(sv[0], b, 1), 1);
		SYS(shutdown(sv[1], SHUT_WR));
		settle();
		EXPECT_REV(poll1(sv[0], POLLIN, 0), POLLIN);
		xclose(sv[1]);
		settle();
		EXPECT_REV(poll1(sv[0], POLLIN, 0), POLLIN | POLLHUP);
		expect_eof(sv[0]);
		xclose(sv[0]);
	}

	/* fd -1 is skipped; a closed number is POLLNVAL; with a channel. */
	xpipe(q);
	closed = (int)SYS(dup(q[1]));
	xclose(closed);
	f[0] = (struct pollfd){ -1, POLLIN, 0 };
	f[1] = (struct pollfd){ closed, POLLIN, 0 };
	f[2] = (struct pollfd){ q[1], POLLOUT, 0 };
	EXPECT_EQ(poll(f, 3, 0), 2);
	EXPECT_REV(f[0].revents, 0);
	EXPECT_REV(f[1].revents, POLLNVAL);
	EXPECT_REV(f[2].revents, POLLOUT);

	/* ppoll: zero, positive and no timeout, with a signal mask. */
	sigemptyset(&mask);
	f[0] = (struct pollfd){ q[0], POLLIN, 0 };
	ts = (struct timespec){ 0, 0 };
	EXPECT_EQ(ppoll(f, 1, &ts, &mask), 0);
	ts = (struct timespec){ 0, 120000000 };
	t0 = now_ns();
	EXPECT_EQ(ppoll(f, 1, &ts, &mask), 0);
	EXPECT(ms_since(t0) >= 100, "a 120 ms ppoll returned after %lld ms",
	       (long long)ms_since(t0));
	write_all(q[1], "p", 1);
	EXPECT_EQ(ppoll(f, 1, NULL, &mask), 1);
	EXPECT_REV(f[0].revents, POLLIN);
	close2(q);
}

static void check_poll_mixed(void)
{
	struct pollfd f[5];
	struct later l;
	int c[2], k[2], dn, nfds;
	fd_set rs, ws;
	struct timeval tv;
	struct timespec ts;
	sigset_t mask;
	int64_t t0;
	char b[8];

	xpipe(c);
	kernel_pipe(k);
	dn = (int)SYS(open("/dev/null", O_RDWR | O_CLOEXEC));
	nfds = (c[0] > c[1] ? c[0] : c[1]);
	nfds = (nfds > k[0] ? nfds : k[0]);
	nfds = (nfds > k[1] ? nfds : k[1]);
	nfds = (nfds > dn ? nfds : dn) + 1;

	/* Nothing ready but /dev/null (always is) and the write ends. */
	f[0] = (struct pollfd){ c[0], POLLIN, 0 };
	f[1] = (struct pollfd){ k[0], POLLIN, 0 };
	f[2] = (struct pollfd){ dn, POLLIN, 0 };
	f[3] = (struct pollfd){ c[1], POLLOUT, 0 };
	f[4] = (struct pollfd){ k[1], POLLOUT, 0 };
	EXPECT_EQ(poll(f, 5, 0), 3);
	EXPECT_REV(f[0].revents, 0);
	EXPECT_REV(f[1].revents, 0);
	EXPECT_REV(f[2].revents, POLLIN);
	EXPECT_REV(f[3].revents, POLLOUT);
	EXPECT_REV(f[4].revents, POLLOUT);
	/* The read ends alone: timeout 0, then a positive one, run out. */
	EXPECT_EQ(poll(f, 2, 0), 0);
	t0 = now_ns();
	EXPECT_EQ(poll(f, 2, 120), 0);
	EXPECT(ms_since(t0) >= 100, "a 120 ms poll returned after %lld ms",
	       (long long)ms_since(t0));
	/* Channel data arrives while waiting on both. */
	later_start(&l, c[1], 100, "c", 1, false);
	step("poll on a channel and a kernel pipe, data coming to the channel");
	EXPECT_EQ(poll(f, 2, 10000), 1);
	EXPECT_REV(f[0].revents, POLLIN);
	EXPECT_REV(f[1].revents, 0);
	later_join(&l);
	/* Now both have data: a kernel pipe write wakes nothing new but shows. */
	write_all(k[1], "k", 1);
	EXPECT_EQ(poll(f, 3, 0), 3);
	EXPECT_REV(f[0].revents, POLLIN);
	EXPECT_REV(f[1].revents, POLLIN);
	EXPECT_REV(f[2].revents, POLLIN);
	EXPECT_EQ(read(c[0], b, 1), 1);
	EXPECT_EQ(read(k[0], b, 1), 1);
	/* Kernel pipe data arrives while waiting on both. */
	later_start(&l, k[1], 100, "k", 1, false);
	step("poll on a channel and a kernel pipe, data coming to the kernel pipe");
	EXPECT_EQ(poll(f, 2, 10000), 1);
	EXPECT_REV(f[0].revents, 0);
	EXPECT_REV(f[1].revents, POLLIN);
	later_join(&l);
	EXPECT_EQ(read(k[0], b, 1), 1);

	/* select: exact sets, timeouts 0 and positive, and a wake-up. */
	FD_ZERO(&rs);
	FD_ZERO(&ws);
	FD_SET(c[0], &rs);
	FD_SET(k[0], &rs);
	FD_SET(dn, &rs);
	FD_SET(c[1], &ws);
	FD_SET(k[1], &ws);
	tv = (struct timeval){ 0, 0 };
	EXPECT_EQ(select(nfds, &rs, &ws, NULL, &tv), 3);
	EXPECT(!FD_ISSET(c[0], &rs) && !FD_ISSET(k[0], &rs) && FD_ISSET(dn, &rs),
	       "select read set wrong");
	EXPECT(FD_ISSET(c[1], &ws) && FD_ISSET(k[1], &ws), "select write set wrong");
	FD_ZERO(&rs);
	FD_SET(c[0], &rs);
	FD_SET(k[0], &rs);
	tv = (struct timeval){ 0, 120000 };
	t0 = now_ns();
	EXPECT_EQ(select(nfds, &rs, NULL, NULL, &tv), 0);
	EXPECT(ms_since(t0) >= 100, "a 120 ms select returned after %lld ms",
	       (long long)ms_since(t0));
	EXPECT(!FD_ISSET(c[0], &rs) && !FD_ISSET(k[0], &rs), "select timed out with fds set");
	FD_SET(c[0], &rs);
	FD_SET(k[0], &rs);
	later_start(&l, c[1], 100, "s", 1, false);
	tv = (struct timeval){ 10, 0 };
	step("select waiting for channel data");
	EXPECT_EQ(select(nfds, &rs, NULL, NULL, &tv), 1);
	EXPECT(FD_ISSET(c[0], &rs) && !FD_ISSET(k[0], &rs), "select woke with the wrong set");
	later_join(&l);
	EXPECT_EQ(read(c[0], b, 1), 1);
	/* select on the channel alone, data ready at once. */
	write_all(c[1], "t", 1);
	FD_ZERO(&rs);
	FD_SET(c[0], &rs);
	EXPECT_EQ(select(c[0] + 1, &rs, NULL, NULL, NULL), 1);
	EXPECT(FD_ISSET(c[0], &rs), "select lost the ready channel");
	EXPECT_EQ(read(c[0], b, 1), 1);

	/* pselect the same way. */
	sigemptyset(&mask);
	FD_ZERO(&rs);
	FD_SET(c[0], &rs);
	FD_SET(k[0], &rs);
	ts = (struct timespec){ 0, 0 };
	EXPECT_EQ(pselect(nfds, &rs, NULL, NULL, &ts, &mask), 0);
	FD_SET(c[0], &rs);
	FD_SET(k[0], &rs);
	ts = (struct timespec){ 0, 120000000 };
	t0 = now_ns();
	EXPECT_EQ(pselect(nfds, &rs, NULL, NULL, &ts, &mask), 0);
	EXPECT(ms_since(t0) >= 100, "a 120 ms pselect returned after %lld ms",
	       (long long)ms_since(t0));
	FD_SET(c[0], &rs);
	FD_SET(k[0], &rs);
	later_start(&l, k[1], 100, "u", 1, false);
	ts = (struct timespec){ 10, 0 };
	step("pselect waiting for kernel pipe data");
	EXPECT_EQ(pselect(nfds, &rs, NULL, NULL, &ts, &mask), 1);
	EXPECT(!FD_ISSET(c[0], &rs) && FD_ISSET(k[0], &rs), "pselect woke with the wrong set");
	later_join(&l);
	EXPECT_EQ(read(k[0], b, 1), 1);

	/* Hung up: readable for select; reader gone: writable. */
	{
		int h[2], e[2];

		xpipe(h);
		xpipe(e);
		xclose(h[1]);
		xclose(e[0]);
		settle();
		FD_ZERO(&rs);
		FD_ZERO(&ws);
		FD_SET(h[0], &rs);
		FD_SET(e[1], &ws);
		tv = (struct timeval){ 0, 0 };
		EXPECT_EQ(select((h[0] > e[1] ? h[0] : e[1]) + 1, &rs, &ws, NULL, &tv), 2);
		EXPECT(FD_ISSET(h[0], &rs) && FD_ISSET(e[1], &ws),
		       "select: a hung-up read end is not readable or a reader-less write "
		       "end not writable");
		xclose(h[0]);
		xclose(e[1]);
	}
	close2(c);
	close2(k);
	xclose(dn);
}

static int ewait(int ep, struct epoll_event *ev, int max, int timeout)
{
	int n = epoll_wait(ep, ev, max, timeout);

	EXPECT(n >= 0, "epoll_wait: %s", strerror(errno));
	return n;
}

static void check_epoll(void)
{
	struct epoll_event ev, out[4];
	struct later l;
	int ep, p[2], k[2], q[2], sv[2];
	char b[16];
	sigset_t mask;

	ep = (int)SYS(epoll_create1(EPOLL_CLOEXEC));
	xpipe(p);
	kernel_pipe(k);
	ev.events = EPOLLIN;
	ev.data.u64 = 0xc0ffee;
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
	EXPECT_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), EEXIST);
	ev.data.u64 = 0xbeef;
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, k[0], &ev));

	/* Level-triggered: reported while data is left. */
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	write_all(p[1], "0123456789", 10);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLIN);
	EXPECT(out[0].data.u64 == 0xc0ffee, "epoll data %#" PRIx64, out[0].data.u64);
	EXPECT_EQ(read(p[0], b, 5), 5);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_EQ(read(p[0], b, 5), 5);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	/* A wait with a timeout: runs out, or ends with data. */
	EXPECT_EQ(ewait(ep, out, 4, 100), 0);
	later_start(&l, p[1], 100, "w", 1, false);
	step("epoll_wait for channel data from a thread");
	EXPECT_EQ(ewait(ep, out, 4, 10000), 1);
	EXPECT(out[0].data.u64 == 0xc0ffee, "woke for the wrong fd");
	later_join(&l);
	/* Mixed with the kernel pipe: both reported, each with its data. */
	write_all(k[1], "k", 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 2);
	EXPECT(out[0].data.u64 + out[1].data.u64 == 0xc0ffee + 0xbeef, "wrong epoll data");
	EXPECT_EQ(read(k[0], b, 1), 1);
	EXPECT_EQ(read(p[0], b, 1), 1);
	later_start(&l, k[1], 100, "k", 1, false);
	step("epoll_wait for kernel pipe data from a thread");
	EXPECT_EQ(ewait(ep, out, 4, 10000), 1);
	EXPECT(out[0].data.u64 == 0xbeef, "woke for the wrong fd");
	later_join(&l);
	EXPECT_EQ(read(k[0], b, 1), 1);
	sigemptyset(&mask);
	write_all(p[1], "m", 1);
	EXPECT_EQ(epoll_pwait(ep, out, 4, 1000, &mask), 1);
	EXPECT_EQ(read(p[0], b, 1), 1);
	/* Deleted: no more reports. */
	SYS(epoll_ctl(ep, EPOLL_CTL_DEL, k[0], NULL));
	write_all(k[1], "k", 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	/* Writer gone: EPOLLHUP (with EPOLLIN while data is left). */
	write_all(p[1], "h", 1);
	xclose(p[1]);
	settle();
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLIN | EPOLLHUP);
	EXPECT_EQ(read(p[0], b, 2), 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLHUP);
	xclose(p[0]);		/* closing drops it from the set */
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);

	/* A write end: EPOLLOUT; reader gone: EPOLLERR with EPOLLOUT. */
	xpipe(q);
	ev.events = EPOLLOUT;
	ev.data.u64 = 7;
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, q[1], &ev));
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLOUT);
	xclose(q[0]);
	settle();
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLOUT | EPOLLERR);
	xclose(q[1]);

	/* A stream socket end. */
	xsocketpair(SOCK_STREAM, sv);
	ev.events = EPOLLIN;
	ev.data.u64 = 9;
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev));
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	write_all(sv[1], "s", 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLIN);
	close2(sv);
	close2(k);
	xclose(ep);
}

static void check_epoll_et(void)
{
	struct epoll_event ev, out[4];
	struct later l;
	int ep, p[2];
	char b[16];

	ep = (int)SYS(epoll_create1(EPOLL_CLOEXEC));
	xpipe(p);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 42;
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	/* Each write is an edge, reported once. */
	write_all(p[1], "0123456789", 10);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLIN);
	EXPECT(out[0].data.u64 == 42, "epoll data %" PRIu64, out[0].data.u64);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	EXPECT_EQ(ewait(ep, out, 4, 50), 0);
	write_all(p[1], "a", 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	/* Drained, then new data from a thread while waiting. */
	EXPECT_EQ(read(p[0], b, sizeof(b)), 11);
	(void)ewait(ep, out, 4, 0);	/* a read may or may not be an edge */
	later_start(&l, p[1], 100, "t", 1, false);
	step("edge-triggered epoll_wait for data from a thread");
	EXPECT_EQ(ewait(ep, out, 4, 10000), 1);
	EXPECT_REV(out[0].events, EPOLLIN);
	later_join(&l);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	/* The writer closing is an edge too. */
	xclose(p[1]);
	settle();
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_REV(out[0].events, EPOLLIN | EPOLLHUP);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	xclose(p[0]);

	/* One-shot: one report until re-armed with EPOLL_CTL_MOD. */
	xpipe(p);
	ev.events = EPOLLIN | EPOLLONESHOT;
	ev.data.u64 = 43;
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
	write_all(p[1], "x", 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	write_all(p[1], "y", 1);
	EXPECT_EQ(ewait(ep, out, 4, 0), 0);
	SYS(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev));
	EXPECT_EQ(ewait(ep, out, 4, 0), 1);
	EXPECT(out[0].data.u64 == 43, "epoll data %" PRIu64, out[0].data.u64);
	close2(p);
	xclose(ep);
}

/* ======================================================================
 * Scatter/gather.
 * ====================================================================== */

static void check_iov(void)
{
	char a[3], m[5], z[100], b[64];
	struct iovec iv[4];
	struct msghdr mh;
	int p[2], sv[2];

	/* writev gathers into one write; a read sees it whole. */
	xpipe(p);
	iv[0] = (struct iovec){ "abc", 3 };
	iv[1] = (struct iovec){ "", 0 };
	iv[2] = (struct iovec){ "defgh", 5 };
	iv[3] = (struct iovec){ "ijklmnopqrst", 12 };
	EXPECT_EQ(writev(p[1], iv, 4), 20);
	EXPECT_EQ(read(p[0], b, sizeof(b)), 20);
	EXPECT(!memcmp(b, "abcdefghijklmnopqrst", 20), "writev gave \"%.20s\"", b);
	/* readv scatters in order. */
	EXPECT_EQ(writev(p[1], iv, 4), 20);
	iv[0] = (struct iovec){ a, 3 };
	iv[1] = (struct iovec){ m, 0 };
	iv[2] = (struct iovec){ m, 5 };
	iv[3] = (struct iovec){ z, sizeof(z) };
	EXPECT_EQ(readv(p[0], iv, 4), 20);
	EXPECT(!memcmp(a, "abc", 3) && !memcmp(m, "defgh", 5) &&
	       !memcmp(z, "ijklmnopqrst", 12), "readv scattered wrongly");
	/* Less data than the first buffer. */
	write_all(p[1], "xy", 2);
	EXPECT_EQ(readv(p[0], iv, 4), 2);
	EXPECT(!memcmp(a, "xy", 2), "short readv");
	/* Empty and invalid vectors. */
	EXPECT_EQ(writev(p[1], iv, 0), 0);
	{
		static struct iovec many[IOV_MAX + 1];
		volatile int neg = -1;

		for (int i = 0; i <= IOV_MAX; i++)
			many[i] = (struct iovec){ a, 1 };
		EXPECT_ERR(writev(p[1], many, IOV_MAX + 1), EINVAL);
		EXPECT_ERR(readv(p[0], many, neg), EINVAL);
	}
	close2(p);

	/* writev of at most PIPE_BUF is atomic against other writers. */
	atomic_writers(true);

	/* On datagram and seqpacket sockets, one vector is one message. */
	for (int k = 0; k < 2; k++) {
		xsocketpair(k ? SOCK_SEQPACKET : SOCK_DGRAM, sv);
		iv[0] = (struct iovec){ "abc", 3 };
		iv[1] = (struct iovec){ "defgh", 5 };
		EXPECT_EQ(writev(sv[0], iv, 2), 8);
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iv;
		mh.msg_iovlen = 2;
		EXPECT_EQ(sendmsg(sv[0], &mh, 0), 8);
		EXPECT_EQ(send(sv[0], "next", 4, 0), 4);
		iv[2] = (struct iovec){ a, 2 };
		iv[3] = (struct iovec){ z, sizeof(z) };
		EXPECT_EQ(readv(sv[1], iv + 2, 2), 8);
		EXPECT(!memcmp(a, "ab", 2) && !memcmp(z, "cdefgh", 6), "readv of a message");
		mh.msg_iov = iv + 2;
		EXPECT_EQ(recvmsg(sv[1], &mh, 0), 8);
		EXPECT(!memcmp(a, "ab", 2) && !memcmp(z, "cdefgh", 6), "recvmsg of a message");
		EXPECT_EQ(mh.msg_flags, 0);
		EXPECT_EQ(recv(sv[1], b, sizeof(b), 0), 4);
		close2(sv);
	}
}

/* ======================================================================
 * Finer points where kernel and shim are easy to tell apart.
 * ====================================================================== */

static void check_fine_points(void)
{
	struct sockaddr_un sa;
	socklen_t alen;
	char b[16];
	int p[2], sv[2];

	/* F_GETFL of a pipe or socket pair end shows no more than the
	 * access mode (nothing like O_LARGEFILE of a file). */
	xpipe(p);
	xsocketpair(SOCK_STREAM, sv);
	EXPECT_EQ(fcntl(p[0], F_GETFL), O_RDONLY);
	EXPECT_EQ(fcntl(p[1], F_GETFL), O_WRONLY);
	EXPECT_EQ(fcntl(sv[0], F_GETFL), O_RDWR);
	close2(sv);
	close2(p);

	/* Positional I/O on a pipe fails with ESPIPE. */
	xpipe(p);
	EXPECT_ERR(pwrite(p[1], "x", 1, 0), ESPIPE);
	write_all(p[1], "x", 1);
	EXPECT_ERR(pread(p[0], b, 1, 0), ESPIPE);
	close2(p);

	/* The peer of a socket pair has no name: recvfrom gives length 0,
	 * getsockname the bare family. */
	xsocketpair(SOCK_DGRAM, sv);
	EXPECT_EQ(send(sv[0], "n", 1, 0), 1);
	alen = sizeof(sa);
	EXPECT_EQ(recvfrom(sv[1], b, sizeof(b), 0, (struct sockaddr *)&sa, &alen), 1);
	EXPECT_EQ(alen, 0);
	alen = sizeof(sa);
	SYS(getsockname(sv[0], (struct sockaddr *)&sa, &alen));
	EXPECT_EQ(alen, sizeof(sa_family_t));
	EXPECT_EQ(sa.sun_family, AF_UNIX);

	/* A datagram socket has no end of file: its peer gone, recv finds
	 * nothing to read. */
	xclose(sv[0]);
	settle();
	EXPECT_ERR(recv(sv[1], b, sizeof(b), MSG_DONTWAIT), EAGAIN);
	/* ... and sending to a closed peer is refused, not a broken pipe. */
	EXPECT_ERR(send(sv[1], "x", 1, 0), ECONNREFUSED);
	xclose(sv[1]);
}

/* ======================================================================
 * Cases from the field.  Some calls are made on kernel objects too (pipes
 * and socket pairs from raw system calls, which the shim does not see), and
 * the answers compared.
 * ====================================================================== */

#ifndef MSG_PROBE
#define MSG_PROBE 0x10		/* the kernel's; libc does not name it */
#endif
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* Cases on kernel objects: pipes and socket pairs made by system calls,
 * which the shim does not see. */
static bool kmode;

static long mk_pipe(int *fds)
{
	return kmode ? syscall(SYS_pipe2, fds, 0) : pipe(fds);
}

static long mk_pipe2(int *fds, int flags)
{
	return kmode ? syscall(SYS_pipe2, fds, flags) : pipe2(fds, flags);
}

static long mk_pair(int domain, int type, int proto, int *sv)
{
	return kmode ? syscall(SYS_socketpair, domain, type, proto, sv) :
		       socketpair(domain, type, proto, sv);
}

/* The IPCD_MOUNT of a run under the shim, or NULL. */
static const char *shim_mount(void)
{
	const char *m = getenv("IPCD_MOUNT");

	return m && *m && getenv("LD_PRELOAD") ? m : NULL;
}

/* Whether the mount gives pipes a coordination other than the lock (its
 * status's pipes=): their buffering is then not F_GETPIPE_SZ bytes
 * exactly (ipcd-shim(7)). */
static bool pipes_unlocked(void)
{
	const char *m = shim_mount();
	char st[1024];
	ssize_t n;

	if (!m || (n = getxattr(m, "user.ipcd.status", st, sizeof(st) - 1)) <= 0)
		return false;
	st[n] = 0;
	return strstr(st, " pipes=") && !strstr(st, " pipes=lock");
}

/* Entries in the mount's directory of anonymous channels, or -1. */
static int anon_entries(void)
{
	const char *m = shim_mount();
	char path[4200];
	struct dirent *de;
	DIR *d;
	int n = 0;

	if (!m)
		return -1;
	snprintf(path, sizeof(path), "%s/.anon", m);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static const char *rw_str(long r, int e, char *buf, size_t len)
{
	if (r == -1)
		snprintf(buf, len, "-1 with %s", errname(e));
	else
		snprintf(buf, len, "%ld", r);
	return buf;
}

/* ======================================================================
 * Invalid arguments: every call fails as the kernel's does.
 * ====================================================================== */

enum iobj { I_NONE, I_PIPE, I_STREAM, I_DGRAM, I_SEQPACKET };
#define DIFF LONG_MIN	/* no fixed answer: whatever the kernel object gives */

struct icase {
	const char *name;
	enum iobj obj;
	long (*fn)(int *f, long *extra);
	long want;		/* the kernel's result, or DIFF */
	int err;		/* and errno when want is -1 */
	int sanitized;		/* AddressSanitizer checks the arguments first */
};

static int *volatile nullp;	/* NULL the compiler cannot see through */
static char *volatile nullc;
static char *volatile badc = (char *)16;	/* an address nothing maps */
static int *ro_ints(void)
{
	void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return m == MAP_FAILED ? NULL : m;
}

/* -errno or the count: a case's second result. */
static long res2(long r)
{
	return r < 0 ? -errno : r;
}

static void close_if(long r, int *f)
{
	if (r == 0) {
		close(f[0]);
		close(f[1]);
	}
}

static long i_pipe_null(int *f, long *x) { (void)f; (void)x; return kmode ? syscall(SYS_pipe, nullp) : pipe(nullp); }
static long i_pipe2_null(int *f, long *x) { (void)f; (void)x; return mk_pipe2(nullp, 0); }
static long i_pipe2_null_fl(int *f, long *x) { (void)f; (void)x; return mk_pipe2(nullp, O_CLOEXEC | O_NONBLOCK); }
static long i_pipe_ro(int *f, long *x) { (void)f; (void)x; return mk_pipe(ro_ints()); }
static long i_pipe2_ro(int *f, long *x) { (void)f; (void)x; return mk_pipe2(ro_ints(), O_CLOEXEC); }
static long i_pipe2_append(int *f, long *x) { long r = mk_pipe2(f, O_APPEND); (void)x; close_if(r, f); return r; }
static long i_pipe2_rdwr(int *f, long *x) { long r = mk_pipe2(f, O_RDWR); (void)x; close_if(r, f); return r; }
static long i_pipe2_bits(int *f, long *x) { long r = mk_pipe2(f, 0x10000000); (void)x; close_if(r, f); return r; }
static long i_sp_null(int *f, long *x) { (void)f; (void)x; return mk_pair(AF_UNIX, SOCK_STREAM, 0, nullp); }
static long i_sp_null_dg(int *f, long *x) { (void)f; (void)x; return mk_pair(AF_UNIX, SOCK_DGRAM, 0, nullp); }
static long i_sp_null_sp(int *f, long *x) { (void)f; (void)x; return mk_pair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, nullp); }
static long i_sp_ro(int *f, long *x) { (void)f; (void)x; return mk_pair(AF_UNIX, SOCK_STREAM, 0, ro_ints()); }
static long i_sp_inet(int *f, long *x) { long r = mk_pair(AF_INET, SOCK_STREAM, 0, f); (void)x; close_if(r, f); return r; }
static long i_sp_proto(int *f, long *x) { long r = mk_pair(AF_UNIX, SOCK_STREAM, 6, f); (void)x; close_if(r, f); return r; }
static long i_sp_type(int *f, long *x) { long r = mk_pair(AF_UNIX, 7, 0, f); (void)x; close_if(r, f); return r; }
static long i_sp_type12(int *f, long *x) { long r = mk_pair(AF_UNIX, 12, 0, f); (void)x; close_if(r, f); return r; }
static long i_sp_flags(int *f, long *x) { long r = mk_pair(AF_UNIX, SOCK_STREAM | 0x100, 0, f); (void)x; close_if(r, f); return r; }
static long i_sp_domain(int *f, long *x) { long r = mk_pair(4242, SOCK_STREAM, 0, f); (void)x; close_if(r, f); return r; }

/* On an object: f[0] and f[1] are its ends. */
/* The first call's errno, kept across a second call. */
#define KEEP(call, second) do { long r_ = (call); int e_ = errno; second; errno = e_; return r_; } while (0)

static long i_read_null2(int *f, long *x)
{
	char b[16];

	write_all(f[1], "abc", 3);
	KEEP(read(f[0], nullc, 10), *x = res2(read(f[0], b, sizeof(b))));
}

static long i_read_bad(int *f, long *x)
{
	char b[16];

	write_all(f[1], "abc", 3);
	KEEP(read(f[0], badc, 10), *x = res2(read(f[0], b, sizeof(b))));
}

static long i_write_null(int *f, long *x)
{
	char b[16];

	SYS(fcntl(f[0], F_SETFL, O_NONBLOCK));
	KEEP(write(f[1], nullc, 10), *x = res2(read(f[0], b, sizeof(b))));
}

static long i_read_wend(int *f, long *x) { char b[4]; (void)x; return read(f[1], b, 1); }
static long i_write_rend(int *f, long *x) { (void)x; return write(f[0], "x", 1); }
static long i_read_neg(int *f, long *x) { char b[4]; (void)f; (void)x; return read(-1, b, 1); }
static long i_write_closed(int *f, long *x)
{
	int d = dup(f[1]);

	(void)x;
	close(d);
	return write(d, "x", 1);
}

static long i_readv_neg(int *f, long *x)
{
	char b[4];
	struct iovec iv = { b, 4 };
	volatile int neg = -1;

	(void)x;
	write_all(f[1], "abc", 3);
	return readv(f[0], &iv, neg);
}

static long i_readv_null(int *f, long *x)
{
	char b[16];
	struct iovec *volatile iv = NULL;

	write_all(f[1], "abc", 3);
	KEEP(readv(f[0], iv, 1), *x = res2(read(f[0], b, sizeof(b))));
}

static long i_writev_null(int *f, long *x)
{
	struct iovec *volatile iv = NULL;

	(void)x;
	return writev(f[1], iv, 1);
}

static long i_writev_nullbase(int *f, long *x)
{
	char b[16];
	struct iovec iv[2] = { { "ab", 2 }, { NULL, 5 } };

	SYS(fcntl(f[0], F_SETFL, O_NONBLOCK));
	KEEP(writev(f[1], iv, 2), *x = res2(read(f[0], b, sizeof(b))));
}

static long i_readv_zero(int *f, long *x)
{
	struct iovec iv = { NULL, 0 };

	(void)x;
	write_all(f[1], "abc", 3);
	return readv(f[0], &iv, 0);
}

static long i_writev_big(int *f, long *x)
{
	static struct iovec many[IOV_MAX + 1];

	(void)x;
	for (int i = 0; i <= IOV_MAX; i++)
		many[i] = (struct iovec){ (void *)"a", 1 };
	return writev(f[1], many, IOV_MAX + 1);
}

static long i_recv_null(int *f, long *x)
{
	char b[16];

	write_all(f[1], "abc", 3);
	KEEP(recv(f[0], nullc, 10, 0), *x = res2(recv(f[0], b, sizeof(b), MSG_DONTWAIT)));
}

static long i_send_null(int *f, long *x)
{
	char b[16];

	KEEP(send(f[1], nullc, 10, 0), *x = res2(recv(f[0], b, sizeof(b), MSG_DONTWAIT)));
}

static long i_recvmsg_null(int *f, long *x)
{
	struct msghdr *volatile m = NULL;

	(void)x;
	write_all(f[1], "abc", 3);
	return recvmsg(f[0], m, 0);
}

static long i_sendmsg_null(int *f, long *x)
{
	struct msghdr *volatile m = NULL;

	(void)x;
	return sendmsg(f[1], m, 0);
}

static long i_recvmsg_iovnull(int *f, long *x)
{
	struct msghdr m;

	(void)x;
	memset(&m, 0, sizeof(m));
	m.msg_iovlen = 1;
	write_all(f[1], "abc", 3);
	return recvmsg(f[0], &m, 0);
}

static long i_sendmsg_bigiov(int *f, long *x)
{
	static struct iovec many[IOV_MAX + 1];
	struct msghdr m;

	(void)x;
	for (int i = 0; i <= IOV_MAX; i++)
		many[i] = (struct iovec){ (void *)"a", 1 };
	memset(&m, 0, sizeof(m));
	m.msg_iov = many;
	m.msg_iovlen = IOV_MAX + 1;
	return sendmsg(f[1], &m, 0);
}

static long recv_flag(int *f, long *x, int flag)
{
	char b[16];

	write_all(f[1], "abc", 3);
	KEEP(recv(f[0], b, sizeof(b), flag | MSG_DONTWAIT),
	     *x = res2(recv(f[0], b, sizeof(b), MSG_DONTWAIT)));
}

static long send_flag(int *f, long *x, int flag)
{
	char b[16];

	KEEP(send(f[1], "abc", 3, flag | MSG_DONTWAIT),
	     *x = res2(recv(f[0], b, sizeof(b), MSG_DONTWAIT)));
}

static long i_recv_oob(int *f, long *x) { return recv_flag(f, x, MSG_OOB); }
static long i_recv_errq(int *f, long *x) { return recv_flag(f, x, MSG_ERRQUEUE); }
static long i_recv_waitone(int *f, long *x) { return recv_flag(f, x, MSG_WAITFORONE); }
static long i_recv_rst(int *f, long *x) { return recv_flag(f, x, MSG_RST); }
static long i_send_oob(int *f, long *x) { return send_flag(f, x, MSG_OOB); }
static long i_send_confirm(int *f, long *x) { return send_flag(f, x, MSG_CONFIRM); }
static long i_send_probe(int *f, long *x) { return send_flag(f, x, MSG_PROBE); }
static long i_send_fastopen(int *f, long *x) { return send_flag(f, x, MSG_FASTOPEN); }
static long i_send_zerocopy(int *f, long *x) { return send_flag(f, x, MSG_ZEROCOPY); }

static long i_fcntl_badcmd(int *f, long *x) { (void)x; return fcntl(f[0], 0x7fff); }
static long i_setpipe_neg(int *f, long *x) { (void)x; return fcntl(f[0], F_SETPIPE_SZ, -1); }
static long i_setpipe_huge(int *f, long *x) { (void)x; return fcntl(f[1], F_SETPIPE_SZ, (1u << 31) + 1); }
static long i_setpipe_sock(int *f, long *x) { (void)x; return fcntl(f[0], F_SETPIPE_SZ, 4096); }
static long i_getpipe_sock(int *f, long *x) { (void)x; return fcntl(f[0], F_GETPIPE_SZ); }
static long i_fcntl_setlk_null(int *f, long *x) { (void)x; return fcntl(f[0], F_SETLK, nullc); }
static long i_fcntl_seals(int *f, long *x) { (void)x; return fcntl(f[1], F_ADD_SEALS, F_SEAL_WRITE); }
static long i_fcntl_closed(int *f, long *x) { int d = dup(f[0]); (void)x; close(d); return fcntl(d, F_GETFL); }
static long i_shut_neg(int *f, long *x) { (void)x; return shutdown(f[0], -1); }
static long i_shut_3(int *f, long *x) { (void)x; return shutdown(f[0], 3); }
static long i_shut_badfd(int *f, long *x) { (void)f; (void)x; return shutdown(-5, SHUT_WR); }
static long i_fionread_null(int *f, long *x) { (void)x; write_all(f[1], "abc", 3); return ioctl(f[0], FIONREAD, nullc); }
static long i_fionbio_null(int *f, long *x) { (void)x; return ioctl(f[0], FIONBIO, nullc); }
static long i_ioctl_bad(int *f, long *x) { int v = 0; (void)x; return ioctl(f[0], 0x7e7e7e7e, &v); }

static long i_gso_nolen(int *f, long *x)
{
	int v = 0;

	(void)x;
	return getsockopt(f[0], SOL_SOCKET, SO_TYPE, &v, (socklen_t *)nullc);
}

static long i_gso_short(int *f, long *x)
{
	int v = 0;
	socklen_t len = 2;
	long r = getsockopt(f[0], SOL_SOCKET, SO_TYPE, &v, &len);
	int e = errno;

	*x = (long)len << 32 | (v & 0xffff);
	errno = e;
	return r;
}

static long i_gso_neglen(int *f, long *x)
{
	int v = 0;
	socklen_t len = (socklen_t)-1;

	(void)x;
	return getsockopt(f[0], SOL_SOCKET, SO_TYPE, &v, &len);
}

static long i_gso_badopt(int *f, long *x)
{
	int v = 0;
	socklen_t len = sizeof(v);

	(void)x;
	return getsockopt(f[0], SOL_SOCKET, 9999, &v, &len);
}

static long i_gso_tcp(int *f, long *x)
{
	int v = 0;
	socklen_t len = sizeof(v);

	(void)x;
	return getsockopt(f[0], IPPROTO_TCP, 1, &v, &len);
}

static long i_gso_nullval(int *f, long *x)
{
	socklen_t len = sizeof(int);

	(void)x;
	return getsockopt(f[0], SOL_SOCKET, SO_TYPE, nullc, &len);
}

static long i_sso_badopt(int *f, long *x) { int v = 1; (void)x; return setsockopt(f[0], SOL_SOCKET, 9999, &v, sizeof(v)); }
static long i_sso_nullval(int *f, long *x) { (void)x; return setsockopt(f[0], SOL_SOCKET, SO_RCVBUF, nullc, sizeof(int)); }
static long i_sso_zerolen(int *f, long *x) { int v = 1; (void)x; return setsockopt(f[0], SOL_SOCKET, SO_RCVBUF, &v, 0); }
static long i_sso_tcp(int *f, long *x) { int v = 1; (void)x; return setsockopt(f[0], IPPROTO_TCP, 1, &v, sizeof(v)); }

static long i_poll_null(int *f, long *x)
{
	struct pollfd *volatile pf = NULL;

	(void)f;
	(void)x;
	return poll(pf, 1, 0);
}

static long i_poll_toomany(int *f, long *x)
{
	struct pollfd pf[2] = { { f[0], POLLIN, 0 }, { f[1], POLLOUT, 0 } };
	volatile nfds_t n = 1u << 30;

	(void)x;
	return poll(pf, n, 0);
}

static long i_select_neg(int *f, long *x)
{
	fd_set rs;
	struct timeval tv = { 0, 0 };
	volatile int n = -1;

	(void)x;
	FD_ZERO(&rs);
	FD_SET(f[0], &rs);
	return select(n, &rs, NULL, NULL, &tv);
}

static long i_epoll_ctl_null(int *f, long *x)
{
	struct epoll_event *volatile ev = NULL;
	int ep = epoll_create1(0);

	KEEP(epoll_ctl(ep, EPOLL_CTL_ADD, f[0], ev), (*x = 0, close(ep)));
}

static long i_epoll_ctl_op(int *f, long *x)
{
	struct epoll_event ev = { EPOLLIN, { 0 } };
	int ep = epoll_create1(0);

	KEEP(epoll_ctl(ep, 99, f[0], &ev), (*x = 0, close(ep)));
}

static long i_epoll_wait_null(int *f, long *x)
{
	struct epoll_event ev = { EPOLLIN, { 0 } }, *volatile out = NULL;
	int ep = epoll_create1(0);

	write_all(f[1], "abc", 3);
	epoll_ctl(ep, EPOLL_CTL_ADD, f[0], &ev);
	KEEP(epoll_wait(ep, out, 1, 0), (*x = 0, close(ep)));
}

static long i_dup3_flags(int *f, long *x) { (void)x; return dup3(f[0], 200, O_NONBLOCK); }
static long i_splice_off(int *f, long *x)
{
	loff_t off = 0;
	int k[2];

	(void)x;
	write_all(f[1], "abc", 3);
	SYS(syscall(SYS_pipe2, k, 0));
	KEEP(splice(f[0], &off, k[1], NULL, 3, SPLICE_F_NONBLOCK), (close(k[0]), close(k[1])));
}

static long i_tee_same(int *f, long *x)
{
	(void)x;
	write_all(f[1], "abc", 3);
	return tee(f[0], f[1], 3, SPLICE_F_NONBLOCK);
}

static const struct icase icases[] = {
	{ "pipe(NULL)", I_NONE, i_pipe_null, -1, EFAULT, 0 },
	{ "pipe2(NULL, 0)", I_NONE, i_pipe2_null, -1, EFAULT, 0 },
	{ "pipe2(NULL, O_CLOEXEC|O_NONBLOCK)", I_NONE, i_pipe2_null_fl, -1, EFAULT, 0 },
	{ "pipe(read-only memory)", I_NONE, i_pipe_ro, -1, EFAULT, 0 },
	{ "pipe2(read-only memory, O_CLOEXEC)", I_NONE, i_pipe2_ro, -1, EFAULT, 0 },
	{ "pipe2(fds, O_APPEND)", I_NONE, i_pipe2_append, -1, EINVAL, 0 },
	{ "pipe2(fds, O_RDWR)", I_NONE, i_pipe2_rdwr, -1, EINVAL, 0 },
	{ "pipe2(fds, 0x10000000)", I_NONE, i_pipe2_bits, -1, EINVAL, 0 },
	{ "socketpair(AF_UNIX, SOCK_STREAM, 0, NULL)", I_NONE, i_sp_null, -1, EFAULT, 0 },
	{ "socketpair(AF_UNIX, SOCK_DGRAM, 0, NULL)", I_NONE, i_sp_null_dg, -1, EFAULT, 0 },
	{ "socketpair(AF_UNIX, SOCK_SEQPACKET|SOCK_CLOEXEC, 0, NULL)", I_NONE, i_sp_null_sp, -1, EFAULT, 0 },
	{ "socketpair(AF_UNIX, SOCK_STREAM, 0, read-only memory)", I_NONE, i_sp_ro, -1, EFAULT, 0 },
	{ "socketpair(AF_INET, SOCK_STREAM, 0)", I_NONE, i_sp_inet, -1, EOPNOTSUPP, 0 },
	{ "socketpair(AF_UNIX, SOCK_STREAM, 6)", I_NONE, i_sp_proto, -1, EPROTONOSUPPORT, 0 },
	{ "socketpair(AF_UNIX, type 7, 0)", I_NONE, i_sp_type, -1, ESOCKTNOSUPPORT, 0 },
	{ "socketpair(AF_UNIX, type 12, 0)", I_NONE, i_sp_type12, -1, EINVAL, 0 },
	{ "socketpair(AF_UNIX, SOCK_STREAM|0x100, 0)", I_NONE, i_sp_flags, -1, EINVAL, 0 },
	{ "socketpair(4242, SOCK_STREAM, 0)", I_NONE, i_sp_domain, -1, EAFNOSUPPORT, 0 },
	{ "read(pipe, NULL, 10) with 3 bytes queued", I_PIPE, i_read_null2, -1, EFAULT, 0 },
	{ "read(pipe, (char *)16, 10) with 3 bytes queued", I_PIPE, i_read_bad, -1, EFAULT, 0 },
	{ "write(pipe, NULL, 10)", I_PIPE, i_write_null, -1, EFAULT, 0 },
	{ "read on a pipe's write end", I_PIPE, i_read_wend, -1, EBADF, 0 },
	{ "write on a pipe's read end", I_PIPE, i_write_rend, -1, EBADF, 0 },
	{ "read(-1)", I_PIPE, i_read_neg, -1, EBADF, 0 },
	{ "write on a closed pipe end's number", I_PIPE, i_write_closed, -1, EBADF, 0 },
	{ "readv(pipe, iov, -1)", I_PIPE, i_readv_neg, -1, EINVAL, 0 },
	{ "readv(pipe, NULL, 1) with 3 bytes queued", I_PIPE, i_readv_null, -1, EFAULT, 0 },
	{ "writev(pipe, NULL, 1)", I_PIPE, i_writev_null, -1, EFAULT, 1 },
	{ "writev(pipe, {\"ab\", NULL/5}, 2)", I_PIPE, i_writev_nullbase, DIFF, 0, 1 },
	{ "readv(pipe, iov, 0)", I_PIPE, i_readv_zero, 0, 0, 0 },
	{ "writev(pipe, iov, IOV_MAX + 1)", I_PIPE, i_writev_big, -1, EINVAL, 0 },
	{ "recv(stream, NULL, 10) with 3 bytes queued", I_STREAM, i_recv_null, -1, EFAULT, 0 },
	{ "recv(dgram, NULL, 10) with 3 bytes queued", I_DGRAM, i_recv_null, -1, EFAULT, 0 },
	{ "send(stream, NULL, 10)", I_STREAM, i_send_null, -1, EFAULT, 0 },
	{ "send(seqpacket, NULL, 10)", I_SEQPACKET, i_send_null, -1, EFAULT, 0 },
	{ "recvmsg(stream, NULL)", I_STREAM, i_recvmsg_null, -1, EFAULT, 0 },
	{ "sendmsg(stream, NULL)", I_STREAM, i_sendmsg_null, -1, EFAULT, 0 },
	{ "recvmsg(stream) with msg_iov NULL, msg_iovlen 1", I_STREAM, i_recvmsg_iovnull, -1, EFAULT, 0 },
	{ "sendmsg(stream) with IOV_MAX + 1 pieces", I_STREAM, i_sendmsg_bigiov, -1, EMSGSIZE, 0 },
	{ "recv(stream, MSG_OOB)", I_STREAM, i_recv_oob, DIFF, 0, 0 },
	{ "recv(dgram, MSG_OOB)", I_DGRAM, i_recv_oob, DIFF, 0, 0 },
	{ "recv(seqpacket, MSG_OOB)", I_SEQPACKET, i_recv_oob, DIFF, 0, 0 },
	{ "recv(stream, MSG_ERRQUEUE)", I_STREAM, i_recv_errq, DIFF, 0, 0 },
	{ "recv(dgram, MSG_ERRQUEUE)", I_DGRAM, i_recv_errq, DIFF, 0, 0 },
	{ "recv(stream, MSG_WAITFORONE)", I_STREAM, i_recv_waitone, DIFF, 0, 0 },
	{ "recv(stream, MSG_RST)", I_STREAM, i_recv_rst, DIFF, 0, 0 },
	{ "send(stream, MSG_OOB)", I_STREAM, i_send_oob, DIFF, 0, 0 },
	{ "send(dgram, MSG_OOB)", I_DGRAM, i_send_oob, DIFF, 0, 0 },
	{ "send(seqpacket, MSG_OOB)", I_SEQPACKET, i_send_oob, DIFF, 0, 0 },
	{ "send(stream, MSG_CONFIRM)", I_STREAM, i_send_confirm, DIFF, 0, 0 },
	{ "send(dgram, MSG_CONFIRM)", I_DGRAM, i_send_confirm, DIFF, 0, 0 },
	{ "send(stream, MSG_PROBE)", I_STREAM, i_send_probe, DIFF, 0, 0 },
	{ "send(stream, MSG_FASTOPEN)", I_STREAM, i_send_fastopen, DIFF, 0, 0 },
	{ "send(stream, MSG_ZEROCOPY)", I_STREAM, i_send_zerocopy, DIFF, 0, 0 },
	{ "fcntl(pipe, 0x7fff)", I_PIPE, i_fcntl_badcmd, -1, EINVAL, 0 },
	{ "fcntl(pipe, F_SETPIPE_SZ, -1)", I_PIPE, i_setpipe_neg, -1, EINVAL, 0 },
	{ "fcntl(pipe, F_SETPIPE_SZ, 2^31 + 1)", I_PIPE, i_setpipe_huge, -1, EINVAL, 0 },
	{ "fcntl(stream, F_SETPIPE_SZ, 4096)", I_STREAM, i_setpipe_sock, -1, EBADF, 0 },
	{ "fcntl(dgram, F_GETPIPE_SZ)", I_DGRAM, i_getpipe_sock, -1, EBADF, 0 },
	{ "fcntl(pipe, F_SETLK, NULL)", I_PIPE, i_fcntl_setlk_null, -1, EFAULT, 0 },
	{ "fcntl(pipe, F_ADD_SEALS)", I_PIPE, i_fcntl_seals, -1, EINVAL, 0 },
	{ "fcntl(closed number, F_GETFL)", I_PIPE, i_fcntl_closed, -1, EBADF, 0 },
	{ "shutdown(stream, -1)", I_STREAM, i_shut_neg, -1, EINVAL, 0 },
	{ "shutdown(seqpacket, 3)", I_SEQPACKET, i_shut_3, -1, EINVAL, 0 },
	{ "shutdown(-5, SHUT_WR)", I_STREAM, i_shut_badfd, -1, EBADF, 0 },
	{ "ioctl(pipe, FIONREAD, NULL)", I_PIPE, i_fionread_null, -1, EFAULT, 0 },
	{ "ioctl(stream, FIONREAD, NULL)", I_STREAM, i_fionread_null, -1, EFAULT, 0 },
	{ "ioctl(pipe, FIONBIO, NULL)", I_PIPE, i_fionbio_null, -1, EFAULT, 1 },
	{ "ioctl(pipe, 0x7e7e7e7e)", I_PIPE, i_ioctl_bad, DIFF, 0, 0 },
	{ "ioctl(stream, 0x7e7e7e7e)", I_STREAM, i_ioctl_bad, DIFF, 0, 0 },
	{ "getsockopt(SO_TYPE, optlen NULL)", I_STREAM, i_gso_nolen, -1, EFAULT, 0 },
	{ "getsockopt(SO_TYPE, optlen 2)", I_DGRAM, i_gso_short, DIFF, 0, 0 },
	{ "getsockopt(SO_TYPE, optlen -1)", I_STREAM, i_gso_neglen, -1, EINVAL, 0 },
	{ "getsockopt(SOL_SOCKET, 9999)", I_STREAM, i_gso_badopt, -1, ENOPROTOOPT, 0 },
	{ "getsockopt(IPPROTO_TCP, TCP_NODELAY)", I_STREAM, i_gso_tcp, DIFF, 0, 0 },
	{ "getsockopt(SO_TYPE, optval NULL)", I_SEQPACKET, i_gso_nullval, -1, EFAULT, 0 },
	{ "setsockopt(SOL_SOCKET, 9999)", I_STREAM, i_sso_badopt, -1, ENOPROTOOPT, 0 },
	{ "setsockopt(SO_RCVBUF, optval NULL)", I_STREAM, i_sso_nullval, -1, EFAULT, 0 },
	{ "setsockopt(SO_RCVBUF, optlen 0)", I_DGRAM, i_sso_zerolen, -1, EINVAL, 0 },
	{ "setsockopt(IPPROTO_TCP, TCP_NODELAY)", I_STREAM, i_sso_tcp, DIFF, 0, 0 },
	{ "poll(NULL, 1, 0)", I_PIPE, i_poll_null, -1, EFAULT, 1 },
	{ "poll(channel fds, 2^30, 0)", I_PIPE, i_poll_toomany, -1, EINVAL, 1 },
	{ "select(-1) with a pipe in the set", I_PIPE, i_select_neg, -1, EINVAL, 0 },
	{ "epoll_ctl(EPOLL_CTL_ADD, pipe, NULL)", I_PIPE, i_epoll_ctl_null, -1, EFAULT, 0 },
	{ "epoll_ctl(op 99, pipe)", I_PIPE, i_epoll_ctl_op, -1, EINVAL, 0 },
	{ "epoll_wait(events NULL) with a readable pipe", I_PIPE, i_epoll_wait_null, -1, EFAULT, 0 },
	{ "dup3(pipe, 200, O_NONBLOCK)", I_PIPE, i_dup3_flags, -1, EINVAL, 0 },
	{ "splice from a pipe with an offset", I_PIPE, i_splice_off, -1, ESPIPE, 0 },
	{ "tee from a pipe into itself", I_PIPE, i_tee_same, -1, EINVAL, 0 },
};

/* Run one case on a kernel object (kernel) or the libc one (the shim's
 * when preloaded) in a child; what it gave as a string. */
static void icase_run(const struct icase *c, bool kernel, char *buf, size_t len,
		      struct outcome *o, int *how)
{
	char b[160];
	pid_t pid;
	int st;

	/* The child's stderr, for a sanitizer's summary of a crash. */
	int ef = (int)SYS(memfd_create("stderr", MFD_CLOEXEC));

	memset(&shm->out, 0, sizeof(shm->out));
	pid = kid_fork();
	if (!pid) {
		int f[2] = { -1, -1 }, n0, n1;
		long extra = 0, r;

		dup2(ef, 2);
		alarm(3);
		kmode = kernel;
		signal(SIGPIPE, SIG_IGN);
		switch (c->obj) {
		case I_NONE: break;
		case I_PIPE: SYS(mk_pipe(f)); break;
		case I_STREAM: SYS(mk_pair(AF_UNIX, SOCK_STREAM, 0, f)); break;
		case I_DGRAM: SYS(mk_pair(AF_UNIX, SOCK_DGRAM, 0, f)); break;
		case I_SEQPACKET: SYS(mk_pair(AF_UNIX, SOCK_SEQPACKET, 0, f)); break;
		}
		n0 = count_fds();
		errno = 0;
		r = c->fn(f, &extra);
		shm->out.err = errno;
		shm->out.r = r;
		shm->out.extra = extra;
		n1 = count_fds();
		/* A failed creation must leave no descriptor behind. */
		shm->out.done = 1 + (n1 != n0 && c->obj == I_NONE);
		_exit(0);
	}
	st = kid_wait(pid);
	*o = shm->out;
	*how = 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && o->done) {
		rw_str(o->r, o->err, buf, len);
		if (o->extra)
			snprintf(buf + strlen(buf), len - strlen(buf), " (then %ld)", o->extra);
		xclose(ef);
		return;
	}
	*how = 1;
	if (WIFSIGNALED(st))
		snprintf(buf, len, "a process killed by %s%s", sigabbrev_np(WTERMSIG(st)) ?
			 sigabbrev_np(WTERMSIG(st)) : "a signal",
			 WTERMSIG(st) == SIGALRM ? " (its 3 s alarm: the call hung)" : "");
	else
		snprintf(buf, len, "a process that %s", status_str(st, b, sizeof(b)));
	{
		char err[8192], *sum, *nl;
		ssize_t n = pread(ef, err, sizeof(err) - 1, 0);

		err[n > 0 ? n : 0] = 0;
		sum = strstr(err, "SUMMARY: ");
		if (sum) {
			nl = strchr(sum, '\n');
			if (nl)
				*nl = 0;
			snprintf(buf + strlen(buf), len - strlen(buf), " (%s)", sum + 9);
		}
	}
	xclose(ef);
}

static void check_inval(void)
{
	char kb[384], sb[384];
	struct outcome ko, so;
	int kh, sh, anon0 = anon_entries(), anon1;

	for (size_t i = 0; i < sizeof(icases) / sizeof(icases[0]); i++) {
		const struct icase *c = &icases[i];

#ifdef __SANITIZE_ADDRESS__
		/* Its interceptors read the arguments before the call and
		 * report what the kernel would answer with EFAULT or EINVAL. */
		if (c->sanitized) {
			printf("# %s: left out under AddressSanitizer\n", c->name);
			continue;
		}
#endif
		step(c->name);
		icase_run(c, true, kb, sizeof(kb), &ko, &kh);
		if (kh)
			FAIL("%s: on kernel objects it gave %s", c->name, kb);
		if (c->want != DIFF && (ko.r != c->want || (c->want == -1 && ko.err != c->err))) {
			char w[64];

			FAIL("%s: the kernel gives %s, not %s: the expectation is wrong",
			     c->name, kb, rw_str(c->want, c->err, w, sizeof(w)));
		}
		if (ko.done == 2)
			FAIL("%s: on the kernel it left a descriptor open", c->name);
		icase_run(c, false, sb, sizeof(sb), &so, &sh);
		step("");
		if (sh || so.r != ko.r || so.err != ko.err || so.extra != ko.extra)
			SOFT("%s: gave %s; the kernel gives %s", c->name, sb, kb);
		else if (so.done == 2)
			SOFT("%s: gave %s as the kernel does, but left a descriptor open",
			     c->name, sb);
	}
	anon1 = anon_entries();
	if (anon1 > anon0)
		SOFT("%d channel files left in %s/.anon (%d before the cases)", anon1, shim_mount(),
		     anon0);
}

/* ======================================================================
 * Pipe sizes: F_GETPIPE_SZ and F_SETPIPE_SZ as the kernel rounds them.
 * ====================================================================== */

/* A nonblocking pipe's writer fills exactly `size` bytes, then EAGAIN;
 * they all come back.  False (after reporting) if not. */
static bool fills_exactly(int p[2], int size, const char *when)
{
	char c;

	size_t total, chunks;

	set_nonblock(p[0], true);
	set_nonblock(p[1], true);
	chunks = fill_nonblock(p[1], 0, 4096);
	total = chunks;
	while (write(p[1], "z", 1) == 1)
		total++;
	read_pattern(p[0], 0, chunks);
	while (read(p[0], &c, 1) == 1)
		;
	expect_eagain(p[0]);
	set_nonblock(p[0], false);
	set_nonblock(p[1], false);
	if (total != (size_t)size) {
		SOFT("%s: an empty pipe of F_GETPIPE_SZ %d took %zu bytes before EAGAIN "
		     "(the kernel: exactly its size)", when, size, total);
		return false;
	}
	return true;
}

static void check_pipe_size(void)
{
	long page = sysconf(_SC_PAGESIZE), maxsz = 1 << 20;
	struct {
		long ask, pages;	/* the size asked for, what it gives in pages */
	} sizes[] = {
		{ 0, 1 }, { 1, 1 }, { 4096, 1 }, { 4097, 2 }, { 5000, 2 }, { 12288, 4 },
		{ 65536, 16 }, { 65537, 32 }, { 200000, 64 }, { 8192, 2 }, { 1 << 20, 256 },
		{ 65536, 16 },
	};
	FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
	int p[2], sv[2], sz;
	char b[64];

	if (f) {
		if (fscanf(f, "%ld", &maxsz) != 1)
			maxsz = 1 << 20;
		fclose(f);
	}
	EXPECT(page == 4096, "this check assumes 4 KiB pages, not %ld", page);
	if (pipes_unlocked()) {
		printf("# pipe-size: left out: this mount's pipes are one shared ring of "
		       "cells, which buffers up to four times F_GETPIPE_SZ\n");
		return;
	}
	xpipe(p);
	sz = fcntl(p[0], F_GETPIPE_SZ);
	if (sz != 16 * page)
		SOFT("F_GETPIPE_SZ of a new pipe is %d, the kernel's is %ld", sz, 16 * page);
	EXPECT_EQ(fcntl(p[1], F_GETPIPE_SZ), sz);
	fills_exactly(p, sz, "a new pipe");

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		long want = sizes[i].pages * page;
		int r;

		if (want > maxsz)
			continue;
		snprintf(b, sizeof(b), "after F_SETPIPE_SZ %ld", sizes[i].ask);
		r = fcntl(p[i & 1], F_SETPIPE_SZ, (int)sizes[i].ask);
		if (r != want) {
			SOFT("F_SETPIPE_SZ %ld returned %d%s%s, the kernel gives %ld", sizes[i].ask,
			     r, r < 0 ? " with " : "", r < 0 ? errname(errno) : "", want);
			continue;
		}
		if (fcntl(p[0], F_GETPIPE_SZ) != want || fcntl(p[1], F_GETPIPE_SZ) != want) {
			SOFT("%s: F_GETPIPE_SZ gives %d and %d, not %ld", b,
			     fcntl(p[0], F_GETPIPE_SZ), fcntl(p[1], F_GETPIPE_SZ), want);
			continue;
		}
		fills_exactly(p, (int)want, b);
	}

	/* Shrinking below what is queued: EBUSY, the data untouched; growing
	 * or shrinking to what still holds it works. */
	errno = 0;
	sz = fcntl(p[0], F_SETPIPE_SZ, 65536);
	if (sz == 65536) {
		write_all(p[1], pat_at(0, 3 * 4096), 3 * 4096);
		errno = 0;
		sz = fcntl(p[1], F_SETPIPE_SZ, 8192);
		if (sz != -1 || errno != EBUSY)
			SOFT("F_SETPIPE_SZ 8192 with 12288 bytes queued gave %s, the kernel -1 "
			     "with EBUSY", rw_str(sz, errno, b, sizeof(b)));
		sz = fcntl(p[1], F_SETPIPE_SZ, 16384);
		if (sz != 16384)
			SOFT("F_SETPIPE_SZ 16384 with 12288 bytes queued gave %s, the kernel 16384",
			     rw_str(sz, errno, b, sizeof(b)));
		read_pattern(p[0], 0, 3 * 4096);
		set_nonblock(p[0], true);
		expect_eagain(p[0]);
		set_nonblock(p[0], false);
	} else {
		SOFT("F_SETPIPE_SZ 65536 gave %s, the kernel 65536; the EBUSY case is left out",
		     rw_str(sz, errno, b, sizeof(b)));
	}
	close2(p);

	xsocketpair(SOCK_STREAM, sv);
	EXPECT_ERR(fcntl(sv[0], F_GETPIPE_SZ), EBADF);
	EXPECT_ERR(fcntl(sv[0], F_SETPIPE_SZ, 65536), EBADF);
	close2(sv);
}

/* ======================================================================
 * Socket options: credentials, timeouts, the rest compared with a kernel
 * socket pair.
 * ====================================================================== */

struct sockval {
	long r;
	int err;
	socklen_t len;
	unsigned char v[32];
};

static struct sockval gso(int fd, int level, int opt)
{
	struct sockval s;

	memset(&s, 0, sizeof(s));
	s.len = sizeof(s.v);
	errno = 0;
	s.r = getsockopt(fd, level, opt, s.v, &s.len);
	s.err = errno;
	if (s.r < 0)
		s.len = 0;
	return s;
}

static const char *sockval_str(const struct sockval *s, char *buf, size_t len)
{
	size_t at;

	if (s->r < 0)
		return rw_str(s->r, s->err, buf, len);
	at = (size_t)snprintf(buf, len, "length %u:", (unsigned)s->len);
	for (socklen_t i = 0; i < s->len && i < sizeof(s->v) && at < len - 4; i++)
		at += (size_t)snprintf(buf + at, len - at, " %02x", s->v[i]);
	return buf;
}

static void check_sockopt_cred(void)
{
	static const struct { int opt; const char *name; } opts[] = {
		{ SO_TYPE, "SO_TYPE" }, { SO_DOMAIN, "SO_DOMAIN" },
		{ SO_PROTOCOL, "SO_PROTOCOL" }, { SO_ACCEPTCONN, "SO_ACCEPTCONN" },
		{ SO_ERROR, "SO_ERROR" }, { SO_KEEPALIVE, "SO_KEEPALIVE" },
		{ SO_LINGER, "SO_LINGER" }, { SO_RCVLOWAT, "SO_RCVLOWAT" },
		{ SO_SNDLOWAT, "SO_SNDLOWAT" }, { SO_RCVTIMEO, "SO_RCVTIMEO" },
		{ SO_SNDTIMEO, "SO_SNDTIMEO" }, { SO_PEEK_OFF, "SO_PEEK_OFF" },
		{ SO_OOBINLINE, "SO_OOBINLINE" }, { SO_PRIORITY, "SO_PRIORITY" },
		{ SO_BROADCAST, "SO_BROADCAST" }, { SO_REUSEADDR, "SO_REUSEADDR" },
		{ SO_TIMESTAMP, "SO_TIMESTAMP" }, { SO_PASSSEC, "SO_PASSSEC" },
	};
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
	static const char *const tnames[] = { "stream", "dgram", "seqpacket" };
	struct ucred cred;
	socklen_t len;
	int sv[2], kv[2], v;
	pid_t pid;
	char a[160], b[160];

	/* SO_PEERCRED: who called socketpair, seen from both ends, also
	 * after a fork in the child; SO_PASSCRED off, set, on. */
	for (int k = 0; k < 3; k++) {
		xsocketpair(types[k], sv);
		for (int i = 0; i < 2; i++) {
			memset(&cred, 0, sizeof(cred));
			len = sizeof(cred);
			if (getsockopt(sv[i], SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
				SOFT("%s end %d: getsockopt SO_PEERCRED failed with %s; the kernel "
				     "gives pid %d uid %d gid %d", tnames[k], i, errname(errno),
				     (int)getpid(), (int)geteuid(), (int)getegid());
				continue;
			}
			if (len != sizeof(cred) || cred.pid != getpid() || cred.uid != geteuid() ||
			    cred.gid != getegid())
				SOFT("%s end %d: SO_PEERCRED says pid %d uid %d gid %d (length %u); "
				     "the kernel: pid %d uid %d gid %d (length %zu)", tnames[k], i,
				     (int)cred.pid, (int)cred.uid, (int)cred.gid, (unsigned)len,
				     (int)getpid(), (int)geteuid(), (int)getegid(), sizeof(cred));
		}
		if (k == 0) {
			pid_t me = getpid();

			pid = kid_fork();
			if (!pid) {
				memset(&cred, 0, sizeof(cred));
				len = sizeof(cred);
				if (getsockopt(sv[1], SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
					_exit(2);
				_exit(cred.pid == me ? 0 : 3);
			}
			v = kid_wait(pid);
			if (!WIFEXITED(v) || WEXITSTATUS(v))
				SOFT("stream: in a forked child, SO_PEERCRED %s; the kernel gives the "
				     "pid of the process that called socketpair (%d)",
				     WIFEXITED(v) && WEXITSTATUS(v) == 2 ? "fails" : "gives another pid",
				     (int)me);
		}
		len = sizeof(v);
		v = -1;
		if (getsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &v, &len) < 0 || v != 0) {
			SOFT("%s: SO_PASSCRED of a new socket gives %s, the kernel 0", tnames[k],
			     v == -1 ? errname(errno) : "not 0");
		} else {
			v = 1;
			if (setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &v, sizeof(v)) < 0)
				SOFT("%s: setsockopt SO_PASSCRED 1 failed with %s", tnames[k],
				     errname(errno));
			v = -1;
			len = sizeof(v);
			if (getsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &v, &len) < 0 || v != 1)
				SOFT("%s: SO_PASSCRED after setting it to 1 gives %d, the kernel 1",
				     tnames[k], v);
			v = -1;
			len = sizeof(v);
			if (getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, &len) < 0 || v != 0)
				SOFT("%s: SO_PASSCRED of the other end gives %d after setting this "
				     "one, the kernel 0", tnames[k], v);
		}
		close2(sv);
	}

	/* The same options on a kernel pair and on ours: the same answers.
	 * One line per option that differs, naming the socket types. */
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		char where[64] = "", first[160] = "", kern[160] = "";

		for (int k = 0; k < 3; k++) {
			struct sockval ks, ss;

			xsocketpair(types[k], sv);
			SYS(syscall(SYS_socketpair, AF_UNIX, types[k], 0, kv));
			ks = gso(kv[0], SOL_SOCKET, opts[i].opt);
			ss = gso(sv[0], SOL_SOCKET, opts[i].opt);
			close2(sv);
			close2(kv);
			if (ks.r == ss.r && ks.err == ss.err && ks.len == ss.len &&
			    !memcmp(ks.v, ss.v, ks.len))
				continue;
			sockval_str(&ss, a, sizeof(a));
			sockval_str(&ks, b, sizeof(b));
			if (*first && (strcmp(first, a) || strcmp(kern, b))) {
				SOFT("getsockopt %s gives %s on %s; the kernel gives %s", opts[i].name,
				     first, where, kern);
				*where = 0;
			}
			snprintf(first, sizeof(first), "%s", a);
			snprintf(kern, sizeof(kern), "%s", b);
			snprintf(where + strlen(where), sizeof(where) - strlen(where), "%s%s",
				 *where ? ", " : "", tnames[k]);
		}
		if (*where)
			SOFT("getsockopt %s gives %s on %s; the kernel gives %s", opts[i].name,
			     first, where, kern);
	}
}

/* A thread that, unless told first, writes a byte or drains a fd after ms
 * milliseconds: the end of a wait that should have ended otherwise. */
struct backstop {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, acted;
	int fd, ms;
	size_t drain;		/* 0: write one byte */
	pthread_t t;
};

static void *backstop_fn(void *arg)
{
	struct backstop *b = arg;
	struct timespec until;
	int64_t ns;

	clock_gettime(CLOCK_REALTIME, &until);
	ns = until.tv_nsec + (int64_t)b->ms * 1000000;
	until.tv_sec += ns / 1000000000;
	until.tv_nsec = ns % 1000000000;
	pthread_mutex_lock(&b->mu);
	while (!b->done)
		if (pthread_cond_timedwait(&b->cv, &b->mu, &until) == ETIMEDOUT)
			break;
	b->acted = !b->done;
	pthread_mutex_unlock(&b->mu);
	if (b->acted) {
		if (b->drain) {
			/* At most that much, and only what is there: never wait. */
			static char sink[1 << 16];
			struct pollfd pf = { b->fd, POLLIN, 0 };
			size_t got = 0;

			while (got < b->drain && poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN)) {
				ssize_t n = read(b->fd, sink, b->drain - got < sizeof(sink) ?
						 b->drain - got : sizeof(sink));

				if (n <= 0)
					break;
				got += (size_t)n;
			}
		} else {
			(void)!write(b->fd, "b", 1);
		}
	}
	return NULL;
}

/* Start it with every signal blocked: signals are for the thread under test. */
static void backstop_start(struct backstop *b, int fd, int ms, size_t drain)
{
	sigset_t all, old;

	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->done = b->acted = false;
	b->fd = fd;
	b->ms = ms;
	b->drain = drain;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	b->t = xthread(backstop_fn, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Stop it; true if it acted. */
static bool backstop_end(struct backstop *b)
{
	pthread_mutex_lock(&b->mu);
	b->done = true;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	xjoin(b->t);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	return b->acted;
}

/* Fill a stream socket end until a 1-byte send would block. */
static size_t fill_stream(int fd)
{
	size_t total = 0;
	ssize_t n;

	while ((n = send(fd, pat_at(total, 4096), 4096, MSG_DONTWAIT)) > 0)
		total += (size_t)n;
	while ((n = send(fd, "z", 1, MSG_DONTWAIT)) > 0)
		total += (size_t)n;
	EXPECT(errno == EAGAIN, "filling a stream socket: %s", errname(errno));
	return total;
}

static void check_sock_timeo(void)
{
	struct timeval tv = { 0, 200000 }, got;
	struct backstop bs;
	socklen_t len;
	int64_t t0, ms;
	size_t full;
	char c, b[64];
	int sv[2], p[2];
	ssize_t n;
	bool acted;

	/* Set and read back. */
	xsocketpair(SOCK_STREAM, sv);
	for (int k = 0; k < 2; k++) {
		int opt = k ? SO_SNDTIMEO : SO_RCVTIMEO;
		const char *name = k ? "SO_SNDTIMEO" : "SO_RCVTIMEO";

		if (setsockopt(sv[0], SOL_SOCKET, opt, &tv, sizeof(tv)) < 0) {
			SOFT("setsockopt %s 200 ms failed: %s", name, errname(errno));
			continue;
		}
		memset(&got, 0, sizeof(got));
		len = sizeof(got);
		if (getsockopt(sv[0], SOL_SOCKET, opt, &got, &len) < 0)
			SOFT("getsockopt %s after setting 200 ms: %s; the kernel gives it back",
			     name, errname(errno));
		else if (len != sizeof(got) || got.tv_sec != 0 || got.tv_usec != 200000)
			SOFT("getsockopt %s after setting 200 ms gives %ld s %ld us (length %u), "
			     "the kernel 0 s 200000 us", name, (long)got.tv_sec,
			     (long)got.tv_usec, (unsigned)len);
	}

	/* A blocking recv, and a read, time out with EAGAIN; a byte comes
	 * 2 s later if they do not. */
	for (int k = 0; k < 2; k++) {
		backstop_start(&bs, sv[1], 2000, 0);
		step(k ? "read with SO_RCVTIMEO 200 ms" : "recv with SO_RCVTIMEO 200 ms");
		t0 = now_ns();
		n = k ? read(sv[0], &c, 1) : recv(sv[0], &c, 1, 0);
		int e = errno;

		ms = ms_since(t0);
		step("");
		acted = backstop_end(&bs);
		if (n != -1 || e != EAGAIN)
			SOFT("a blocking %s with SO_RCVTIMEO 200 ms returned %s after %lld ms%s; "
			     "the kernel gives -1 with EAGAIN after 200 ms", k ? "read" : "recv",
			     rw_str(n, e, b, sizeof(b)), (long long)ms,
			     acted ? " (the byte written at 2 s)" : "");
		else
			printf("# %s with SO_RCVTIMEO 200 ms: EAGAIN after %lld ms\n",
			       k ? "read" : "recv", (long long)ms);
		if (acted)
			(void)recv(sv[0], b, sizeof(b), MSG_DONTWAIT);
	}

	/* A blocking send into a full socket times out the same way; the
	 * other end drains it 2 s later if it does not. */
	full = fill_stream(sv[0]);
	backstop_start(&bs, sv[1], 2000, full);
	step("send into a full socket with SO_SNDTIMEO 200 ms");
	t0 = now_ns();
	n = send(sv[0], "y", 1, 0);
	{
		int e = errno;

		ms = ms_since(t0);
		step("");
		acted = backstop_end(&bs);
		if (n != -1 || e != EAGAIN)
			SOFT("a blocking send into a full socket with SO_SNDTIMEO 200 ms returned "
			     "%s after %lld ms%s; the kernel gives -1 with EAGAIN after 200 ms",
			     rw_str(n, e, b, sizeof(b)), (long long)ms,
			     acted ? " (when the peer drained it at 2 s)" : "");
		else
			printf("# send with SO_SNDTIMEO 200 ms: EAGAIN after %lld ms\n", (long long)ms);
	}
	close2(sv);

	/* A pipe has no socket options. */
	xpipe(p);
	EXPECT_ERR(setsockopt(p[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), ENOTSOCK);
	close2(p);
}

/* ======================================================================
 * Cases in child processes.
 * ====================================================================== */

static void subcase_alarm(int sig)
{
	char msg[512];
	const char *s = atomic_load(&cur_step);

	(void)sig;
	snprintf(msg, sizeof(msg), "FAIL: %s: hung: no end within its time limit%s%s\n",
		 atomic_load(&check_name), *s ? " -- stuck in: " : "", s);
	say(msg);
	kill_kids();
	_exit(1);
}

/*
 * Run fn(arg) as one case of a check, in a child process limited to secs
 * seconds: a crash or a hang there fails that case alone, and the check goes
 * on.  A failing case prints its own FAIL line; true if it passed.
 */
static bool subcase(const char *what, void (*fn)(void *), void *arg, int secs)
{
	char b[160];
	pid_t pid;
	int st;

	pid = kid_fork();
	if (!pid) {
		static char name[256];

		snprintf(name, sizeof(name), "%s: %s", atomic_load(&check_name), what);
		atomic_store(&check_name, name);
		runner_pid = getpid();
		soft_fails = 0;
		install(SIGALRM, subcase_alarm, 0);
		alarm((unsigned)secs);
		fn(arg);
		_exit(soft_fails ? 1 : 0);
	}
	st = kid_wait(pid);
	step("");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return true;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
		soft_fails++;	/* its FAIL line says why */
	else
		SOFT("%s: the case's process %s", what, status_str(st, b, sizeof(b)));
	return false;
}

/* ======================================================================
 * splice, tee and vmsplice on pipe ends.
 * ====================================================================== */

static int tmpfile_with(size_t len)
{
	char tmpl[] = "/tmp/shim_sem.XXXXXX";
	int fd = (int)SYS(mkstemp(tmpl));

	SYS(unlink(tmpl));
	if (len)
		write_all(fd, pat_at(0, len), len);
	return fd;
}

/* The next bytes of fd are exactly pattern [from, from + len), then EAGAIN
 * (fd nonblocking); otherwise a case failure naming `what`. */
static void expect_only_pattern(int fd, size_t from, size_t len, const char *what)
{
	unsigned char *b = malloc(len + 1);
	size_t got = 0;
	ssize_t n;

	EXPECT(b, "out of memory");
	set_nonblock(fd, true);
	while (got < len + 1 && (n = read(fd, b + got, len + 1 - got)) > 0)
		got += (size_t)n;
	set_nonblock(fd, false);
	if (got != len)
		SOFT("%s: the pipe then held %zu bytes, not %zu", what, got, len);
	else if (memcmp(b, pat_at(from, len), len))
		SOFT("%s: the pipe then held other bytes than those spliced", what);
	free(b);
}

static void splice_file_to_pipe(void *arg)
{
	int f = tmpfile_with(20000), p[2];
	loff_t off = 1000;
	ssize_t n;
	char b[64];

	(void)arg;
	xpipe(p);
	n = splice(f, &off, p[1], NULL, 5000, 0);
	if (n != 5000)
		SOFT("splice(file, pipe, 5000) returned %s, the kernel 5000",
		     rw_str(n, errno, b, sizeof(b)));
	else {
		expect_only_pattern(p[0], 1000, 5000, "file to pipe");
		EXPECT_EQ(off, 6000);
	}
	close2(p);
	xclose(f);
}

static void splice_pipe_to_file(void *arg)
{
	int f = tmpfile_with(0), p[2];
	unsigned char buf[6000];
	loff_t off = 0;
	ssize_t n;
	char b[64];

	(void)arg;
	xpipe(p);
	write_all(p[1], pat_at(3, 6000), 6000);
	n = splice(p[0], NULL, f, &off, 6000, 0);
	if (n != 6000) {
		SOFT("splice(pipe, file, 6000) with 6000 bytes queued returned %s, the kernel "
		     "6000", rw_str(n, errno, b, sizeof(b)));
	} else {
		EXPECT_EQ(pread(f, buf, sizeof(buf), 0), 6000);
		if (memcmp(buf, pat_at(3, 6000), 6000))
			SOFT("pipe to file: the file holds other bytes than the pipe had");
		set_nonblock(p[0], true);
		n = read(p[0], buf, 1);
		if (n != -1 || errno != EAGAIN)
			SOFT("pipe to file: the pipe still gives %s after the splice took it all",
			     rw_str(n, errno, b, sizeof(b)));
	}
	close2(p);
	xclose(f);
}

static void splice_pipe_to_pipe(void *arg)
{
	bool kernel_dst = arg != NULL;
	int p[2], q[2];
	ssize_t n;
	char b[64];

	xpipe(p);
	if (kernel_dst)
		kernel_pipe(q);
	else
		xpipe(q);
	write_all(p[1], pat_at(5, 7000), 7000);
	n = splice(p[0], NULL, q[1], NULL, 7000, 0);
	if (n != 7000)
		SOFT("splice(pipe, %spipe, 7000) returned %s, the kernel 7000",
		     kernel_dst ? "kernel " : "", rw_str(n, errno, b, sizeof(b)));
	else {
		expect_only_pattern(q[0], 5, 7000, "pipe to pipe: the destination");
		expect_only_pattern(p[0], 0, 0, "pipe to pipe: the source");
	}
	/* Nothing queued, nonblocking: EAGAIN; writer gone: 0. */
	n = splice(p[0], NULL, q[1], NULL, 100, SPLICE_F_NONBLOCK);
	if (n != -1 || errno != EAGAIN)
		SOFT("splice(empty pipe, pipe, SPLICE_F_NONBLOCK) returned %s, the kernel -1 "
		     "with EAGAIN", rw_str(n, errno, b, sizeof(b)));
	xclose(p[1]);
	n = splice(p[0], NULL, q[1], NULL, 100, 0);
	if (n != 0)
		SOFT("splice from a pipe whose writer closed returned %s, the kernel 0",
		     rw_str(n, errno, b, sizeof(b)));
	xclose(p[0]);
	close2(q);
}

static void splice_kernel_to_pipe(void *arg)
{
	int k[2], p[2];
	ssize_t n;
	char b[64];

	(void)arg;
	kernel_pipe(k);
	xpipe(p);
	write_all(k[1], pat_at(9, 3000), 3000);
	n = splice(k[0], NULL, p[1], NULL, 3000, 0);
	if (n != 3000)
		SOFT("splice(kernel pipe, pipe, 3000) returned %s, the kernel 3000",
		     rw_str(n, errno, b, sizeof(b)));
	else
		expect_only_pattern(p[0], 9, 3000, "kernel pipe to pipe");
	close2(k);
	close2(p);
}

static void splice_tee(void *arg)
{
	int p[2], q[2];
	ssize_t n;
	char b[64];

	(void)arg;
	xpipe(p);
	xpipe(q);
	write_all(p[1], pat_at(11, 3000), 3000);
	n = tee(p[0], q[1], 3000, 0);
	if (n != 3000)
		SOFT("tee(pipe, pipe, 3000) returned %s, the kernel 3000",
		     rw_str(n, errno, b, sizeof(b)));
	else {
		expect_only_pattern(q[0], 11, 3000, "tee: the destination");
		expect_only_pattern(p[0], 11, 3000, "tee: the source (tee leaves it)");
	}
	n = tee(p[0], q[1], 100, SPLICE_F_NONBLOCK);
	if (n != -1 || errno != EAGAIN)
		SOFT("tee from an empty pipe with SPLICE_F_NONBLOCK returned %s, the kernel -1 "
		     "with EAGAIN", rw_str(n, errno, b, sizeof(b)));
	close2(p);
	close2(q);
}

static void splice_vmsplice(void *arg)
{
	unsigned char out[4000];
	struct iovec iv;
	int p[2];
	ssize_t n;
	char b[64];

	(void)arg;
	xpipe(p);
	iv = (struct iovec){ (void *)pat_at(13, 4000), 4000 };
	n = vmsplice(p[1], &iv, 1, 0);
	if (n != 4000)
		SOFT("vmsplice into a pipe returned %s, the kernel 4000",
		     rw_str(n, errno, b, sizeof(b)));
	else
		expect_only_pattern(p[0], 13, 4000, "vmsplice into a pipe");
	write_all(p[1], pat_at(17, 4000), 4000);
	iv = (struct iovec){ out, sizeof(out) };
	n = vmsplice(p[0], &iv, 1, 0);
	if (n != 4000)
		SOFT("vmsplice out of a pipe with 4000 bytes queued returned %s, the kernel 4000",
		     rw_str(n, errno, b, sizeof(b)));
	else if (memcmp(out, pat_at(17, 4000), 4000))
		SOFT("vmsplice out of a pipe gave other bytes than written");
	close2(p);
}

static void splice_socket(void *arg)
{
	int p[2], sv[2];
	ssize_t n;
	char b[64];
	unsigned char buf[5000];

	(void)arg;
	xpipe(p);
	xsocketpair(SOCK_STREAM, sv);
	/* socket to pipe */
	write_all(sv[1], pat_at(21, 2500), 2500);
	n = splice(sv[0], NULL, p[1], NULL, 2500, 0);
	if (n != 2500)
		SOFT("splice(stream socket, pipe, 2500) returned %s, the kernel 2500",
		     rw_str(n, errno, b, sizeof(b)));
	else
		expect_only_pattern(p[0], 21, 2500, "socket to pipe");
	/* pipe to socket */
	write_all(p[1], pat_at(23, 2500), 2500);
	n = splice(p[0], NULL, sv[0], NULL, 2500, 0);
	if (n != 2500) {
		SOFT("splice(pipe, stream socket, 2500) returned %s, the kernel 2500",
		     rw_str(n, errno, b, sizeof(b)));
	} else {
		set_nonblock(sv[1], true);
		n = read(sv[1], buf, sizeof(buf));
		if (n != 2500 || memcmp(buf, pat_at(23, 2500), 2500))
			SOFT("pipe to socket: the peer read %zd bytes, not the 2500 spliced", n);
	}
	close2(p);
	close2(sv);
}

static void check_splice(void)
{
	static int one = 1;

	/* What splice moves between a channel and a file or a kernel pipe may
	 * go through the daemon. */
	atomic_fetch_add(slow_allowed, 2 * (5000 + 6000 + 2 * 7000 + 3000 + 2 * 3000 +
					    2 * 4000 + 2 * 2500));
	subcase("file to pipe", splice_file_to_pipe, NULL, 5);
	subcase("pipe to file", splice_pipe_to_file, NULL, 5);
	subcase("pipe to pipe", splice_pipe_to_pipe, NULL, 5);
	subcase("pipe to kernel pipe", splice_pipe_to_pipe, &one, 5);
	subcase("kernel pipe to pipe", splice_kernel_to_pipe, NULL, 5);
	subcase("tee", splice_tee, NULL, 5);
	subcase("vmsplice", splice_vmsplice, NULL, 5);
	subcase("socket pair", splice_socket, NULL, 5);
}

/* ======================================================================
 * Signals during a wait: the wait ends with EINTR (or goes on with
 * SA_RESTART for read and write), also for a signal in its first
 * microseconds.
 * ====================================================================== */

enum wcall { W_READ, W_WRITE, W_RECV, W_SEND, W_POLL, W_SELECT, W_EPOLL, W_PPOLL, W_NCALLS };
static const char *const wnames[W_NCALLS] = {
	"read (empty pipe)", "write (full pipe)", "recv (empty stream socket)",
	"send (full stream socket)", "poll (empty pipe)", "select (empty pipe)",
	"epoll_wait (empty pipe)", "ppoll (empty stream socket)",
};
#define WAIT_MS		300	/* the timeout of poll and friends, the backstop of the rest */

static atomic_int sig_in_call, sig_fired, sig_early;
/* Where and when (ns of CLOCK_MONOTONIC) the last signal interrupted the
 * thread, and when the call under test began and ended: a miss says so. */
static _Atomic uintptr_t sig_pc;
static _Atomic int64_t sig_at, call_began, call_ended;

/*
 * The code that runs after sig_in_call is set and before a call reaches
 * the implementation under test (libc's or the shim's): this program, the
 * loader (lazy binding) and a sanitizer's interceptors.  A signal that
 * interrupts code there came before the call, as one before the flag did.
 * The window is short, but a thread that wakes from a long sleep runs it
 * with cold caches and page tables, and under a sanitizer it reads shadow
 * memory: a timer there is no miss of the call's.
 */
static struct {
	uintptr_t lo, hi;
} before_call[16];
static int n_before_call;

static int note_before_call(struct dl_phdr_info *info, size_t size, void *arg)
{
	const char *name = info->dlpi_name;

	(void)size;
	(void)arg;
	if (*name && !strstr(name, "/ld-linux") && !strstr(name, "/libasan.") &&
	    !strstr(name, "/libubsan.") && !strstr(name, "/libtsan."))
		return 0;
	for (int i = 0; i < info->dlpi_phnum && n_before_call < 16; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		before_call[n_before_call].lo = info->dlpi_addr + ph->p_vaddr;
		before_call[n_before_call].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
		n_before_call++;
	}
	return 0;
}

/* Where the signal interrupted the thread; 0 if this machine is not known. */
static uintptr_t interrupted_pc(const void *ctx)
{
	const ucontext_t *uc = ctx;

#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.pc;
#else
	(void)uc;
	return 0;
#endif
}

static void mark_sig(int sig, siginfo_t *si, void *ctx)
{
	uintptr_t pc = interrupted_pc(ctx);
	bool early = !atomic_load(&sig_in_call);
	struct timespec t;

	(void)sig;
	(void)si;
	clock_gettime(CLOCK_MONOTONIC, &t);
	atomic_store(&sig_at, (int64_t)t.tv_sec * 1000000000 + t.tv_nsec);
	atomic_store(&sig_pc, pc);
	for (int i = 0; i < n_before_call && !early; i++)
		early = pc >= before_call[i].lo && pc < before_call[i].hi;
	if (early)
		atomic_store(&sig_early, 1);
	atomic_fetch_add(&sig_fired, 1);
}

/* The objects the calls wait on: an empty pipe q, a full pipe p, a socket
 * pair whose direction sv[0] -> sv[1] is empty and sv[1] -> sv[0] full. */
struct wobj {
	int p[2], q[2], sv[2], ep;
	size_t pfull, sfull;
};

static void refill(struct wobj *o)
{
	set_nonblock(o->p[1], true);
	while (write(o->p[1], pat_at(0, 4096), 4096) > 0)
		;
	while (write(o->p[1], "z", 1) == 1)
		;
	set_nonblock(o->p[1], false);
	(void)fill_stream(o->sv[1]);
}

static void wobj_open(struct wobj *o)
{
	struct epoll_event ev = { EPOLLIN, { 0 } };
	int n;

	xpipe(o->p);
	xpipe(o->q);
	xsocketpair(SOCK_STREAM, o->sv);
	refill(o);
	SYS(ioctl(o->p[0], FIONREAD, &n));
	o->pfull = (size_t)n;
	SYS(ioctl(o->sv[0], FIONREAD, &n));
	o->sfull = (size_t)n;
	o->ep = (int)SYS(epoll_create1(EPOLL_CLOEXEC));
	SYS(epoll_ctl(o->ep, EPOLL_CTL_ADD, o->q[0], &ev));
}

static void wobj_close(struct wobj *o)
{
	close2(o->p);
	close2(o->q);
	close2(o->sv);
	xclose(o->ep);
}

/* Back to the state before the round, whatever the backstop did. */
static void wobj_reset(struct wobj *o)
{
	char b[64];

	set_nonblock(o->q[0], true);
	while (read(o->q[0], b, sizeof(b)) > 0)
		;
	set_nonblock(o->q[0], false);
	while (recv(o->sv[1], b, sizeof(b), MSG_DONTWAIT) > 0)
		;
	refill(o);
}

static long wait_call(enum wcall w, struct wobj *o, int *err)
{
	struct pollfd pf = { w == W_PPOLL ? o->sv[1] : o->q[0], POLLIN, 0 };
	struct timeval tv = { 0, WAIT_MS * 1000 };
	struct timespec ts = { 0, WAIT_MS * 1000000L };
	struct epoll_event ev;
	fd_set rs;
	char c = 'w';
	long r = -2;

	FD_ZERO(&rs);
	FD_SET(o->q[0], &rs);
	atomic_store(&call_began, now_ns());
	atomic_store(&sig_in_call, 1);
	switch (w) {
	case W_READ: r = read(o->q[0], &c, 1); break;
	case W_WRITE: r = write(o->p[1], &c, 1); break;
	case W_RECV: r = recv(o->sv[1], &c, 1, 0); break;
	case W_SEND: r = send(o->sv[1], &c, 1, 0); break;
	case W_POLL: r = poll(&pf, 1, WAIT_MS); break;
	case W_SELECT: r = select(o->q[0] + 1, &rs, NULL, NULL, &tv); break;
	case W_EPOLL: r = epoll_wait(o->ep, &ev, 1, WAIT_MS); break;
	case W_PPOLL: r = ppoll(&pf, 1, &ts, NULL); break;
	case W_NCALLS: break;
	}
	*err = errno;
	atomic_store(&sig_in_call, 0);
	atomic_store(&call_ended, now_ns());
	return r;
}

/* Whether the last signal reached the thread only once the call under
 * test had waited its whole timeout (WAIT_MS). */
static bool sig_after_timeout(void)
{
	int64_t b = atomic_load(&call_began), at = atomic_load(&sig_at);

	return at - b >= (int64_t)WAIT_MS * 1000000;
}

/* Where a signal landed, for a miss's message: the object and offset. */
static void where_sig(char *buf, size_t len)
{
	uintptr_t pc = atomic_load(&sig_pc);
	int64_t b = atomic_load(&call_began), at = atomic_load(&sig_at),
		e = atomic_load(&call_ended);
	Dl_info di;

	if (pc && dladdr((void *)pc, &di) && di.dli_fname)
		snprintf(buf, len, "; the call took %.3f ms, the signal came %.3f ms into it, "
			 "at %s+%#lx (%s)", (double)(e - b) / 1e6, (double)(at - b) / 1e6,
			 di.dli_fname, (unsigned long)(pc - (uintptr_t)di.dli_fbase),
			 di.dli_sname ? di.dli_sname : "?");
	else
		snprintf(buf, len, "; the call took %.3f ms, the signal came %.3f ms into it",
			 (double)(e - b) / 1e6, (double)(at - b) / 1e6);
}

/* The backstop's action for a call: a byte for the readers, draining for
 * the writers. */
static void wait_backstop(struct backstop *b, enum wcall w, struct wobj *o, int ms)
{
	switch (w) {
	case W_READ: backstop_start(b, o->q[1], ms, 0); break;
	case W_WRITE: backstop_start(b, o->p[0], ms, o->pfull); break;
	case W_SEND: backstop_start(b, o->sv[0], ms, o->sfull); break;
	default: backstop_start(b, o->sv[0], ms, 0); break;
	}
}

static bool is_restartable(enum wcall w)
{
	return w == W_READ || w == W_WRITE || w == W_RECV || w == W_SEND;
}

/* How a signal is sent: a timer of this thread, or another process. */
struct sigsrc {
	timer_t timer;
	long delay_ns;
	pid_t helper;		/* a process that sends it on request */
	int go;			/* a kernel pipe to the helper */
};

static void sigsrc_arm(struct sigsrc *s, unsigned round)
{
	if (s->helper) {
		unsigned char d = (unsigned char)(round * 7 % 21);	/* x 100 us */

		if (write(s->go, &d, 1) != 1)
			FAIL("the signal helper is gone");
	} else {
		struct itimerspec it = { .it_value = { 0, s->delay_ns } };

		SYS(timer_settime(s->timer, 0, &it, NULL));
	}
}

static void sigsrc_disarm(struct sigsrc *s)
{
	if (!s->helper) {
		struct itimerspec it;

		memset(&it, 0, sizeof(it));
		SYS(timer_settime(s->timer, 0, &it, NULL));
	} else {
		/* The helper's signal may still be on its way: wait for it. */
		for (int i = 0; i < 2000 && !atomic_load(&sig_fired); i++)
			usleep(100);
	}
}

/*
 * Rounds of one call with one signal source.  Without SA_RESTART every
 * call must end with EINTR; with it, read/write/recv/send go on until the
 * backstop lets them finish, while poll and friends still end with EINTR.
 * A round whose signal came before the call began does not count (nor one
 * that interrupted this program, the loader or a sanitizer: before_call).
 * The kernel may miss a signal that lands between the call's entry and the
 * system call itself (a few instructions), so one miss in the rounds is
 * tolerated; so are two rounds in which the signal reached the thread only
 * after the call had waited out its timeout (a virtual CPU held off that
 * long), which then rightly returns 0.  A miss says where and when the
 * signal landed.
 */
static void signal_rounds(enum wcall w, struct sigsrc *src, bool restart, const char *when)
{
	enum { ROUNDS = 8, TRIES = 40 };
	bool cont = restart && is_restartable(w);
	struct sigaction sa;
	int ok = 0, missed = 0, early = 0, nosig = 0, late = 0, tries = 0, e;
	char first[480] = "", first_late[256] = "", b[64];
	struct backstop bs;
	struct wobj o;
	long r;

	wobj_open(&o);
	if (!n_before_call)
		dl_iterate_phdr(note_before_call, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = mark_sig;
	sa.sa_flags = SA_SIGINFO | (restart ? SA_RESTART : 0);
	sigemptyset(&sa.sa_mask);
	SYS(sigaction(SIGUSR1, &sa, NULL));
	while (ok + missed < ROUNDS && tries++ < TRIES && missed < 2) {
		bool acted, was_early;
		int fired;

		atomic_store(&sig_fired, 0);
		atomic_store(&sig_early, 0);
		if (is_restartable(w))
			wait_backstop(&bs, w, &o, cont ? 30 : WAIT_MS);
		step(wnames[w]);
		sigsrc_arm(src, (unsigned)tries);
		r = wait_call(w, &o, &e);
		fired = atomic_load(&sig_fired);
		was_early = atomic_load(&sig_early);
		sigsrc_disarm(src);
		step("");
		acted = is_restartable(w) ? backstop_end(&bs) : false;
		if (was_early) {
			early++;
		} else if (!fired) {
			nosig++;
			if (!*first)
				snprintf(first, sizeof(first), "returned %s before any signal",
					 rw_str(r, e, b, sizeof(b)));
		} else if (cont ? r == 1 : (r == -1 && e == EINTR)) {
			ok++;
		} else if (!cont && r == 0 && sig_after_timeout()) {
			/* The thread ran its timeout out before the signal
			 * reached it (a vCPU held off that long): the kernel's
			 * answer too.  Now and then only. */
			late++;
			if (!*first_late)
				where_sig(first_late, sizeof(first_late));
		} else {
			missed++;
			if (!*first) {
				char at[256];

				where_sig(at, sizeof(at));
				snprintf(first, sizeof(first), "returned %s%s%s",
					 rw_str(r, e, b, sizeof(b)),
					 acted ? (cont ? "" : " when the backstop ended the wait") :
					 (r == 0 ? " (its timeout)" : ""), at);
			}
		}
		wobj_reset(&o);
	}
	signal(SIGUSR1, SIG_IGN);
	wobj_close(&o);
	if (late > 2)
		SOFT("%s, %s%s: %d rounds timed out with the signal only after the timeout%s",
		     wnames[w], when, restart ? ", SA_RESTART" : "", late, first_late);
	if (missed > 1 || nosig)
		SOFT("%s, %s%s: %d of %d rounds did not %s: first %s", wnames[w], when,
		     restart ? ", SA_RESTART" : "", missed + nosig, ok + missed + nosig,
		     cont ? "go on to return the byte that came 30 ms later" :
		     "end with EINTR (the kernel's answer)", first);
	else if (ok < ROUNDS / 2)
		printf("# %s, %s: only %d rounds counted (%d with the signal before the call)\n",
		       wnames[w], when, ok, early);
}

static void make_timer(struct sigsrc *s, long delay_ns)
{
	struct sigevent ev;

	memset(&ev, 0, sizeof(ev));
	memset(s, 0, sizeof(*s));
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = SIGUSR1;
	ev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
	SYS(timer_create(CLOCK_MONOTONIC, &ev, &s->timer));
	s->delay_ns = delay_ns;
}

static void check_sig_timer(void)
{
	static const long delays[] = { 20000, 1000000 };
	static const char *const dn[] = { "signal 20 us after the call", "signal 1 ms after the call" };
	struct sigsrc s;

	for (int d = 0; d < 2; d++) {
		make_timer(&s, delays[d]);
		for (int w = 0; w < W_NCALLS; w++)
			signal_rounds((enum wcall)w, &s, false, dn[d]);
		SYS(timer_delete(s.timer));
	}
}

static void check_sig_restart(void)
{
	static const long delays[] = { 20000, 1000000 };
	static const char *const dn[] = { "signal 20 us after the call", "signal 1 ms after the call" };
	struct sigsrc s;

	for (int d = 0; d < 2; d++) {
		make_timer(&s, delays[d]);
		for (int w = 0; w < W_NCALLS; w++)
			signal_rounds((enum wcall)w, &s, true, dn[d]);
		SYS(timer_delete(s.timer));
	}
}

/* The helper process: on each byte, wait that many 100 us, then kill. */
static _Noreturn void kill_helper(int go, pid_t target)
{
	unsigned char d;

	while (read(go, &d, 1) == 1) {
		if (d)
			usleep(100u * d);
		kill(target, SIGUSR1);
	}
	_exit(0);
}

static void usr2_note(int sig)
{
	(void)sig;
	atomic_fetch_add(&sig_count, 1);
}

/* rsync's shape: a parent waits in poll (or select) on a socket pair end;
 * a child sends it SIGUSR2, whose handler has no SA_RESTART. */
static void rsync_shape(bool use_select)
{
	struct pollfd pf;
	fd_set rs;
	int sv[2], e;
	long r;
	pid_t pid, me = getpid();
	char b[64];

	xsocketpair(SOCK_STREAM, sv);
	install(SIGUSR2, usr2_note, 0);
	atomic_store(&sig_count, 0);
	pid = kid_fork();
	if (!pid) {
		xclose(sv[0]);
		msleep(100);
		kill(me, SIGUSR2);
		msleep(500);
		write_all(sv[1], "x", 1);	/* the backstop */
		_exit(0);
	}
	xclose(sv[1]);
	step(use_select ? "select until the child's SIGUSR2" : "poll until the child's SIGUSR2");
	if (use_select) {
		FD_ZERO(&rs);
		FD_SET(sv[0], &rs);
		r = select(sv[0] + 1, &rs, NULL, NULL, NULL);
	} else {
		pf = (struct pollfd){ sv[0], POLLIN, 0 };
		r = poll(&pf, 1, -1);
	}
	e = errno;
	step("");
	if (r != -1 || e != EINTR)
		SOFT("%s blocked on a socket pair end: the child's SIGUSR2 at 100 ms did not end "
		     "it with EINTR; it returned %s%s", use_select ? "select" : "poll",
		     rw_str(r, e, b, sizeof(b)),
		     atomic_load(&sig_count) ? " when the child's byte came at 0.6 s" :
		     " (and the handler never ran)");
	kid_ok(pid, "the child sending SIGUSR2");
	xclose(sv[0]);
	signal(SIGUSR2, SIG_DFL);
}

static void check_sig_kill(void)
{
	struct sigsrc s;
	int go[2];

	memset(&s, 0, sizeof(s));
	kernel_pipe(go);
	/* The helper must not take the signal from the parent's handler set. */
	s.helper = kid_fork();
	if (!s.helper) {
		xclose(go[1]);
		kill_helper(go[0], getppid());
	}
	xclose(go[0]);
	s.go = go[1];
	for (int w = 0; w < W_NCALLS; w++)
		signal_rounds((enum wcall)w, &s, false, "kill() from another process 0-2 ms later");
	xclose(go[1]);
	kid_ok(s.helper, "the process sending signals");
	rsync_shape(false);
	rsync_shape(true);
}

/* ======================================================================
 * Closing is immediate, also when the other process exits or is killed:
 * right after waitpid() the survivor sees EPIPE or EOF.
 * ====================================================================== */

enum cekind {
	CE_READER_EXITS, CE_READER_KILLED, CE_WRITER_EXITS, CE_WRITER_KILLED,
	CE_PEER_EXITS, CE_PEER_KILLED, CE_READER_EXECS, CE_NKINDS
};
static const char *const cenames[CE_NKINDS] = {
	"the only reader (a child) exited", "the only reader (a child) was killed by SIGKILL",
	"the only writer (a child) exited", "the only writer (a child) was killed by SIGKILL",
	"the socket peer (a child) exited", "the socket peer (a child) was killed by SIGKILL",
	"the only reader (a child) exec'd /bin/true without the shim and exited",
};

/* One round; NULL if the survivor saw what the kernel shows, else what. */
static const char *close_exit_round(enum cekind k, char *buf, size_t len)
{
	bool sock = k == CE_PEER_EXITS || k == CE_PEER_KILLED;
	bool killed = k == CE_READER_KILLED || k == CE_WRITER_KILLED || k == CE_PEER_KILLED;
	bool writer_left = k == CE_WRITER_EXITS || k == CE_WRITER_KILLED;
	int f[2], keep, give, st;
	ssize_t n;
	char c, b[64];
	pid_t pid;

	if (sock)
		xsocketpair(SOCK_STREAM | SOCK_NONBLOCK, f);
	else
		SYS(pipe2(f, O_NONBLOCK));
	keep = writer_left || sock ? 0 : 1;	/* the survivor's end */
	give = !keep;
	fflush(stdout);
	pid = fork();
	EXPECT(pid >= 0, "fork: %s", strerror(errno));
	if (!pid) {
		if (k == CE_READER_EXECS) {
			char *argv[] = { (char *)"true", NULL }, *envp[] = { NULL };

			execve("/bin/true", argv, envp);
			_exit(127);
		}
		if (killed)
			for (;;)
				pause();
		_exit(0);
	}
	xclose(f[give]);
	if (killed)
		kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0)
		EXPECT(errno == EINTR, "waitpid: %s", strerror(errno));
	if (sock) {
		n = recv(f[keep], &c, 1, MSG_DONTWAIT);
		if (n != 0)
			snprintf(buf, len, "recv gave %s, not 0 (EOF)", rw_str(n, errno, b, sizeof(b)));
		else if ((n = send(f[keep], "x", 1, MSG_NOSIGNAL)) != -1 || errno != EPIPE)
			snprintf(buf, len, "send gave %s, not -1 with EPIPE",
				 rw_str(n, errno, b, sizeof(b)));
		else
			buf = NULL;
	} else if (writer_left) {
		n = read(f[keep], &c, 1);
		if (n != 0)
			snprintf(buf, len, "a nonblocking read gave %s, not 0 (EOF)",
				 rw_str(n, errno, b, sizeof(b)));
		else
			buf = NULL;
	} else {
		n = write(f[keep], "x", 1);
		if (n != -1 || errno != EPIPE)
			snprintf(buf, len, "a write gave %s, not -1 with EPIPE",
				 rw_str(n, errno, b, sizeof(b)));
		else
			buf = NULL;
	}
	xclose(f[keep]);
	return buf;
}

static void check_close_exit(void)
{
	for (int k = 0; k < CE_NKINDS; k++) {
		int rounds = k == CE_READER_EXECS ? 50 : 200, bad = 0, first = -1;
		char what[160], first_what[160] = "";

		step(cenames[k]);
		for (int i = 0; i < rounds; i++) {
			const char *w = close_exit_round((enum cekind)k, what, sizeof(what));

			if (w && bad++ == 0) {
				first = i;
				snprintf(first_what, sizeof(first_what), "%s", w);
			}
		}
		step("");
		if (bad)
			SOFT("%s, right after waitpid(): %d of %d rounds wrong, the first (round %d): %s",
			     cenames[k], bad, rounds, first, first_what);
	}
}

/* ======================================================================
 * A close learnt through another channel: a closes end X, then writes
 * "done" on Y; b reads "done", then looks at X without waiting.
 * ====================================================================== */

/* What b sees of X: "EOF" / "EPIPE" as the kernel, or something else. */
static const char *look_at_x(int x, bool x_was_writer, char *buf, size_t len)
{
	struct pollfd pf = { x, x_was_writer ? POLLIN : POLLOUT, 0 };
	char b[64], ev[64], c;
	int n;
	ssize_t r;

	n = poll(&pf, 1, 0);
	if (x_was_writer) {
		r = read(x, &c, 1);
		if (r == 0 && n == 1 && pf.revents == POLLHUP)
			return NULL;
		snprintf(buf, len, "poll gave %s and a nonblocking read %s; the kernel: POLLHUP "
			 "and 0 (EOF)", evname((unsigned)pf.revents, ev, sizeof(ev)),
			 rw_str(r, errno, b, sizeof(b)));
	} else {
		r = write(x, "x", 1);
		if (r == -1 && errno == EPIPE && n == 1 && pf.revents == (POLLOUT | POLLERR))
			return NULL;
		snprintf(buf, len, "poll gave %s and a write %s; the kernel: OUT|ERR and -1 "
			 "with EPIPE", evname((unsigned)pf.revents, ev, sizeof(ev)),
			 rw_str(r, errno, b, sizeof(b)));
	}
	return buf;
}

static void notify_rounds_fork(bool x_is_write_end)
{
	enum { ROUNDS = 100 };
	int bad = 0, first = -1;
	char what[256], first_what[256] = "";

	for (int i = 0; i < ROUNDS; i++) {
		int x[2], y[2], theirs = x_is_write_end ? 1 : 0;
		pid_t pid;
		const char *w;

		SYS(pipe2(x, O_NONBLOCK));
		xpipe(y);
		pid = kid_fork();
		if (!pid) {
			xclose(x[!theirs]);
			xclose(y[0]);
			xclose(x[theirs]);
			write_all(y[1], "done", 4);
			_exit(0);
		}
		xclose(x[theirs]);
		xclose(y[1]);
		expect_read(y[0], "done");
		w = look_at_x(x[!theirs], x_is_write_end, what, sizeof(what));
		if (w && bad++ == 0) {
			first = i;
			snprintf(first_what, sizeof(first_what), "%s", w);
		}
		kid_ok(pid, "the child closing X");
		xclose(x[!theirs]);
		xclose(y[0]);
	}
	if (bad)
		SOFT("a child closed the %s end of X, then wrote \"done\" on Y; after reading "
		     "\"done\": %d of %d rounds wrong, the first (round %d): %s",
		     x_is_write_end ? "write" : "read", bad, ROUNDS, first, first_what);
}

#define NOTIFY_EXEC_ROUNDS 16

/* The exec'd side: close X_i, say so on Y, wait for the go on G. */
static void notify_child(int argc, char **argv)
{
	int y = atoi(argv[1]), g = atoi(argv[2]);
	char c;

	for (int i = 3; i < argc; i++) {
		xclose(atoi(argv[i]));
		write_all(y, "d", 1);
		EXPECT_EQ(read(g, &c, 1), 1);
	}
}

static void notify_rounds_exec(bool keep)
{
	int x[NOTIFY_EXEC_ROUNDS][2], y[2], g[2], bad = 0, first = -1;
	char nb[NOTIFY_EXEC_ROUNDS + 3][16], what[256], first_what[256] = "";
	const char *args[NOTIFY_EXEC_ROUNDS + 4];
	pid_t pid;

	xpipe(y);
	xpipe(g);
	for (int i = 0; i < NOTIFY_EXEC_ROUNDS; i++)
		SYS(pipe2(x[i], O_NONBLOCK));
	pid = kid_fork();
	if (!pid) {
		args[0] = "notify";
		args[1] = num(nb[0], y[1]);
		args[2] = num(nb[1], g[0]);
		for (int i = 0; i < NOTIFY_EXEC_ROUNDS; i++) {
			int theirs = i % 2 ? 0 : 1;	/* even: the write end */

			xclose(x[i][!theirs]);
			args[3 + i] = num(nb[2 + i], x[i][theirs]);
		}
		args[3 + NOTIFY_EXEC_ROUNDS] = NULL;
		xclose(y[0]);
		xclose(g[1]);
		exec_self(args, keep);
	}
	xclose(y[1]);
	xclose(g[0]);
	for (int i = 0; i < NOTIFY_EXEC_ROUNDS; i++)
		xclose(x[i][i % 2 ? 0 : 1]);
	for (int i = 0; i < NOTIFY_EXEC_ROUNDS; i++) {
		int theirs = i % 2 ? 0 : 1;
		const char *w;

		step("waiting for the exec'd child's word");
		expect_read(y[0], "d");
		step("");
		w = look_at_x(x[i][!theirs], theirs == 1, what, sizeof(what));
		if (w && bad++ == 0) {
			first = i;
			snprintf(first_what, sizeof(first_what), "X's %s end: %s",
				 theirs ? "write" : "read", w);
		}
		write_all(g[1], "g", 1);
		xclose(x[i][!theirs]);
	}
	expect_eof(y[0]);
	xclose(y[0]);
	xclose(g[1]);
	kid_ok(pid, "the exec'd child closing X");
	if (!keep)
		atomic_fetch_add(slow_expected, 2 * NOTIFY_EXEC_ROUNDS);
	if (bad)
		SOFT("an exec'd child %s closed one end of X, then wrote on Y; after reading it: "
		     "%d of %d rounds wrong, the first (round %d): %s",
		     keep ? "with the shim" : "without the shim", bad, NOTIFY_EXEC_ROUNDS, first,
		     first_what);
}

static void check_close_notify(void)
{
	notify_rounds_fork(true);
	notify_rounds_fork(false);
	notify_rounds_exec(true);
	notify_rounds_exec(false);
}

/* ======================================================================
 * Readiness: poll, select and epoll say of a channel end what they say of
 * a kernel pipe or socket end in the same state, for every mask.
 * ====================================================================== */

/* Everything poll, select and epoll report for fd, as one string; without
 * the *NORM and *BAND bits when `coarse`. */
static void readiness_of(int fd, char *buf, size_t len, bool coarse)
{
	const unsigned fine = POLLRDNORM | POLLWRNORM | POLLRDBAND | POLLWRBAND;
	static const short masks[] = {
		0, POLLIN, POLLOUT, POLLIN | POLLOUT,
		POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND | POLLWRNORM |
			POLLWRBAND | POLLRDHUP,
	};
	static const char *const mn[] = { "0", "IN", "OUT", "IN|OUT", "all" };
	struct epoll_event ev = {
		EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLRDNORM | EPOLLWRNORM, { 0 }
	}, out;
	struct timeval tv = { 0, 0 };
	fd_set r, w, x;
	size_t at = 0;
	char e[96];
	int ep, n;

	for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
		struct pollfd pf = { fd, masks[i], 0 };

		n = poll(&pf, 1, 0);
		at += (size_t)snprintf(buf + at, len - at, "poll(%s)=%s%s ", mn[i],
				       evname((unsigned)pf.revents & ~(coarse ? fine : 0), e,
					      sizeof(e)),
				       n == (pf.revents != 0) ? "" : "(count wrong)");
	}
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	FD_SET(fd, &r);
	FD_SET(fd, &w);
	FD_SET(fd, &x);
	n = select(fd + 1, &r, &w, &x, &tv);
	at += (size_t)snprintf(buf + at, len - at, "select=%s%s%s%s ", FD_ISSET(fd, &r) ? "r" : "",
			       FD_ISSET(fd, &w) ? "w" : "", FD_ISSET(fd, &x) ? "x" : "",
			       n < 0 ? "(failed)" : "");
	ep = (int)SYS(epoll_create1(EPOLL_CLOEXEC));
	SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
	out.events = 0;
	n = epoll_wait(ep, &out, 1, 0);
	snprintf(buf + at, len - at, "epoll=%s",
		 n == 1 ? evname(out.events & ~(coarse ? fine : 0), e, sizeof(e)) : "0");
	xclose(ep);
}

/* The parts of two readiness strings that differ, in da and db. */
static void readiness_diff(char *a, char *b, char *da, char *db, size_t len)
{
	char *sa, *sb, *pa, *pb;

	*da = *db = 0;
	for (pa = strtok_r(a, " ", &sa), pb = strtok_r(b, " ", &sb); pa && pb;
	     pa = strtok_r(NULL, " ", &sa), pb = strtok_r(NULL, " ", &sb))
		if (strcmp(pa, pb)) {
			snprintf(da + strlen(da), len - strlen(da), " %s", pa);
			snprintf(db + strlen(db), len - strlen(db), " %s", pb);
		}
}

/* States where only the RDNORM/WRNORM/RDBAND/WRBAND bits differ: counted,
 * and reported once at the end of the check. */
static int norm_only;
static char norm_first[1200];

/* Compare one end of ours with the kernel's. */
static void same_readiness(int ours, int kern, const char *state, const char *end)
{
	char a[512], b[512], da[512], db[512];

	readiness_of(ours, a, sizeof(a), true);
	readiness_of(kern, b, sizeof(b), true);
	if (strcmp(a, b)) {
		readiness_diff(a, b, da, db, sizeof(da));
		SOFT("%s, %s:%s; the kernel:%s", state, end, da, db);
		return;
	}
	readiness_of(ours, a, sizeof(a), false);
	readiness_of(kern, b, sizeof(b), false);
	if (strcmp(a, b)) {
		readiness_diff(a, b, da, db, sizeof(da));
		if (!norm_only++)
			snprintf(norm_first, sizeof(norm_first), "%s, %s:%s; the kernel:%s", state,
				 end, da, db);
	}
}

/* A pair of ours and the kernel's, put through the same steps. */
struct twin {
	int o[2], k[2];
	bool open[2];
};

static void twin_check(struct twin *t, const char *state, const char *e0, const char *e1)
{
	if (t->open[0])
		same_readiness(t->o[0], t->k[0], state, e0);
	if (t->open[1])
		same_readiness(t->o[1], t->k[1], state, e1);
}

static void twin_close(struct twin *t, int i)
{
	xclose(t->o[i]);
	xclose(t->k[i]);
	t->open[i] = false;
}

static void twin_end(struct twin *t)
{
	for (int i = 0; i < 2; i++)
		if (t->open[i])
			twin_close(t, i);
}

static void twin_write(struct twin *t, int i, size_t n)
{
	write_all(t->o[i], pat_at(0, n), n);
	write_all(t->k[i], pat_at(0, n), n);
}

static void twin_read(struct twin *t, int i, size_t n)
{
	read_pattern(t->o[i], 0, n);
	read_pattern(t->k[i], 0, n);
}

static void drain_nb(int fd)
{
	char b[65536];

	set_nonblock(fd, true);
	while (read(fd, b, sizeof(b)) > 0)
		;
	set_nonblock(fd, false);
}

static void fill_nb(int fd)
{
	set_nonblock(fd, true);
	(void)fill_nonblock(fd, 0, 4096);
	while (write(fd, "z", 1) == 1)
		;
	set_nonblock(fd, false);
}

static void twin_pipe(struct twin *t)
{
	xpipe(t->o);
	kernel_pipe(t->k);
	t->open[0] = t->open[1] = true;
}

static void check_readiness(void)
{
	static const int types[] = { SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM };
	static const char *const tn[] = { "stream", "seqpacket", "dgram" };
	struct twin t;
	char st[160];
	int d[2];

	norm_only = 0;
	/* Pipes: data, full, partly drained, drained, hung up. */
	twin_pipe(&t);
	twin_check(&t, "pipe: new", "read end", "write end");
	twin_write(&t, 1, 1);
	twin_check(&t, "pipe: 1 byte written", "read end", "write end");
	twin_read(&t, 0, 1);
	twin_check(&t, "pipe: the byte read", "read end", "write end");
	fill_nb(t.o[1]);
	fill_nb(t.k[1]);
	twin_check(&t, "pipe: filled until a write would block", "read end", "write end");
	{
		char b[4096];

		EXPECT_EQ(read(t.o[0], b, 1), 1);
		EXPECT_EQ(read(t.k[0], b, 1), 1);
		twin_check(&t, "pipe: full, then 1 byte read", "read end", "write end");
		EXPECT_EQ(read(t.o[0], b, 4095), 4095);
		EXPECT_EQ(read(t.k[0], b, 4095), 4095);
		twin_check(&t, "pipe: full, then 4096 bytes read", "read end", "write end");
	}
	drain_nb(t.o[0]);
	drain_nb(t.k[0]);
	twin_check(&t, "pipe: drained", "read end", "write end");
	d[0] = (int)SYS(dup(t.o[1]));
	d[1] = (int)SYS(dup(t.k[1]));
	twin_write(&t, 1, 3);
	twin_close(&t, 1);
	twin_check(&t, "pipe: 3 bytes written, one of two write ends closed", "read end", "");
	xclose(d[0]);
	xclose(d[1]);
	twin_check(&t, "pipe: 3 bytes written, every write end closed", "read end", "");
	twin_read(&t, 0, 3);
	twin_check(&t, "pipe: hung up, the 3 bytes read", "read end", "");
	twin_end(&t);

	twin_pipe(&t);
	twin_close(&t, 0);
	twin_check(&t, "pipe: the read end closed", "", "write end");
	twin_end(&t);
	twin_pipe(&t);
	fill_nb(t.o[1]);
	fill_nb(t.k[1]);
	twin_close(&t, 0);
	twin_check(&t, "pipe: full, then the read end closed", "", "write end");
	twin_end(&t);

	/* Socket pairs: data, a full direction, shutdowns, the peer gone. */
	for (int k = 0; k < 3; k++) {
		int ty = types[k];

#define SOCKS() do { xsocketpair(ty, t.o); \
		SYS(syscall(SYS_socketpair, AF_UNIX, ty, 0, t.k)); \
		t.open[0] = t.open[1] = true; } while (0)
#define STATE(s) (snprintf(st, sizeof(st), "%s: %s", tn[k], s), st)
		SOCKS();
		twin_check(&t, STATE("new"), "end 0", "end 1");
		twin_write(&t, 1, 3);
		twin_check(&t, STATE("end 1 sent 3 bytes"), "end 0", "end 1");
		twin_read(&t, 0, 3);
		twin_check(&t, STATE("end 0 read them"), "end 0", "end 1");
		if (ty != SOCK_DGRAM) {
			fill_nb(t.o[1]);
			fill_nb(t.k[1]);
			twin_check(&t, STATE("end 1 sent until a send would block"), "end 0", "end 1");
			drain_nb(t.o[0]);
			drain_nb(t.k[0]);
			twin_check(&t, STATE("end 0 drained it"), "end 0", "end 1");
		}
		SYS(shutdown(t.o[1], SHUT_WR));
		SYS(shutdown(t.k[1], SHUT_WR));
		twin_check(&t, STATE("end 1 shut down writing"), "end 0", "end 1");
		SYS(shutdown(t.o[0], SHUT_RD));
		SYS(shutdown(t.k[0], SHUT_RD));
		twin_check(&t, STATE("then end 0 shut down reading"), "end 0", "end 1");
		twin_end(&t);

		SOCKS();
		twin_write(&t, 1, 3);
		twin_close(&t, 1);
		twin_check(&t, STATE("end 1 sent 3 bytes and closed"), "end 0", "");
		twin_read(&t, 0, 3);
		twin_check(&t, STATE("end 1 closed, its bytes read"), "end 0", "");
		twin_end(&t);

		SOCKS();
		SYS(shutdown(t.o[0], SHUT_RDWR));
		SYS(shutdown(t.k[0], SHUT_RDWR));
		twin_check(&t, STATE("end 0 shut down both ways"), "end 0", "end 1");
		twin_end(&t);
#undef SOCKS
#undef STATE
	}
	if (norm_only)
		SOFT("in %d more states only the RDNORM/WRNORM/RDBAND/WRBAND bits differ, the "
		     "first: %s", norm_only, norm_first);
}

/*
 * The order of events across processes: a child writes a byte and exits.
 * A parent blocked in poll or epoll_wait must see the byte (POLLIN) no
 * later than the hang-up, read it, and after waitpid() see POLLHUP alone.
 */
static const char *order_round(int mode, bool plain, char *buf, size_t len)
{
	struct epoll_event ev = { EPOLLIN, { 0 } }, out;
	struct pollfd pf;
	char c, b[64], e[64];
	unsigned first;
	int p[2], ep = -1, n;
	ssize_t r;
	pid_t pid;

	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		char a[16];
		const char *args[] = { "write-exit", num(a, p[1]), NULL };

		xclose(p[0]);
		if (plain)
			exec_self(args, false);
		msleep(mode == 2 ? 5 : 0);
		write_all(p[1], "x", 1);
		_exit(0);
	}
	xclose(p[1]);
	if (mode == 1) {
		ep = (int)SYS(epoll_create1(EPOLL_CLOEXEC));
		SYS(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
	}
	step("waiting for the child's byte");
	if (mode == 1) {
		out.events = 0;
		n = epoll_wait(ep, &out, 1, 5000);
		first = n == 1 ? out.events : 0;
		xclose(ep);
	} else {
		pf = (struct pollfd){ p[0], POLLIN, 0 };
		n = poll(&pf, 1, 5000);
		first = n == 1 ? (unsigned)pf.revents : 0;
	}
	step("");
	buf[0] = 0;
	if (!(first & POLLIN))
		snprintf(buf, len, "the first wake-up said %s, without POLLIN while a byte was "
			 "unread", evname(first, e, sizeof(e)));
	r = read(p[0], &c, 1);
	if (!*buf && (r != 1 || c != 'x'))
		snprintf(buf, len, "after %s the read gave %s, not the byte",
			 evname(first, e, sizeof(e)), rw_str(r, errno, b, sizeof(b)));
	kid_ok(pid, "the child writing and exiting");
	pf = (struct pollfd){ p[0], POLLIN, 0 };
	n = poll(&pf, 1, 0);
	if (!*buf && (n != 1 || pf.revents != POLLHUP))
		snprintf(buf, len, "after waitpid() poll said %s, not HUP",
			 evname((unsigned)pf.revents, e, sizeof(e)));
	xclose(p[0]);
	return *buf ? buf : NULL;
}

static void check_readiness_order(void)
{
	static const char *const modes[] = {
		"poll", "epoll_wait", "poll, the child writing 5 ms later"
	};

	for (int plain = 0; plain < 2; plain++)
		for (int m = 0; m < 3; m++) {
			int rounds = plain ? 16 : 100, bad = 0, first = -1;
			char what[256], fw[256] = "";

			for (int i = 0; i < rounds; i++) {
				const char *w = order_round(m, plain, what, sizeof(what));

				if (w && bad++ == 0) {
					first = i;
					snprintf(fw, sizeof(fw), "%s", w);
				}
			}
			if (plain)
				atomic_fetch_add(slow_expected, (unsigned long)rounds);
			if (bad)
				SOFT("%s; a child %s writes a byte and exits: %d of %d rounds wrong, "
				     "the first (round %d): %s", modes[m],
				     plain ? "exec'd without the shim" : "(forked)", bad, rounds,
				     first, fw);
		}
}

/* ======================================================================
 * Many channels at once, and many made and closed.
 * ====================================================================== */

/* Open descriptors numbered below lim, the directory's own not counted. */
/* The program's descriptors below lim (the shim's own, as count_fds
 * says, are not the program's). */
static int fds_below(long lim)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0, own = 0;

	EXPECT(d, "opendir /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && atoi(de->d_name) != dirfd(d) && atol(de->d_name) < lim) {
			if (atol(de->d_name) >= SHIM_OWN_FDS)
				own++;
			else
				n++;
		}
	closedir(d);
	return own > SHIM_OWN_MAX ? n + own : n;
}

static void many_pipes_body(void *arg)
{
	enum { ALIVE = 500 };
	struct rlimit rl;
	struct pollfd *pf;
	int (*f)[2], n = 0, e, open0, want, ready;
	long lim;

	(void)arg;
	SYS(getrlimit(RLIMIT_NOFILE, &rl));
	lim = rl.rlim_max < 1024 ? (long)rl.rlim_max : 1024;
	rl.rlim_cur = (rlim_t)lim;
	SYS(setrlimit(RLIMIT_NOFILE, &rl));
	f = calloc((size_t)lim, sizeof(*f));
	pf = calloc((size_t)lim, sizeof(*pf));
	EXPECT(f && pf, "out of memory");
	open0 = fds_below(lim);
	want = (int)(lim - open0) / 2;
	step("pipe() until it fails");
	while (n < lim && pipe(f[n]) == 0)
		n++;
	e = errno;
	step("");
	if (e != EMFILE || n != want)
		SOFT("pipe() until it failed: %d pipes, then %s; with %d of %ld descriptors open "
		     "the kernel makes exactly %d, then EMFILE", n, errname(e), open0, lim, want);
	EXPECT(n >= ALIVE, "only %d pipes could be made", n);

	/* 500 of them carry data at once: each its own 8 bytes. */
	for (int i = 0; i < ALIVE; i++) {
		uint64_t v = 0x5a5a000000000000ull | (uint64_t)i;

		write_all(f[i][1], &v, sizeof(v));
		pf[i] = (struct pollfd){ f[i][0], POLLIN, 0 };
	}
	ready = poll(pf, ALIVE, 0);
	if (ready != ALIVE)
		SOFT("poll of %d read ends, each with 8 bytes queued: %d ready", ALIVE, ready);
	for (int i = 0; i < ALIVE; i++) {
		uint64_t v = 0;

		if (read_full(f[i][0], &v, sizeof(v)) != sizeof(v) ||
		    v != (0x5a5a000000000000ull | (uint64_t)i)) {
			SOFT("pipe %d of %d gave %#" PRIx64 ", not its own bytes", i, ALIVE, v);
			break;
		}
	}
	/* Every other one written again: exactly those are ready. */
	for (int i = 0; i < ALIVE; i += 2)
		write_all(f[i][1], "e", 1);
	ready = poll(pf, ALIVE, 0);
	if (ready != ALIVE / 2)
		SOFT("poll of %d read ends, every other one with a byte: %d ready, not %d", ALIVE,
		     ready, ALIVE / 2);
	for (int i = 0; i < ALIVE; i++)
		if (pf[i].revents != (i % 2 ? 0 : POLLIN)) {
			SOFT("poll of %d read ends: pipe %d has revents %#x", ALIVE, i,
			     (unsigned)pf[i].revents);
			break;
		}
	for (int i = 0; i < n; i++)
		close2(f[i]);
	if (fds_below(lim) != open0)
		SOFT("%d descriptors open after closing them all, %d before", fds_below(lim), open0);

	/* Socket pairs the same way, below a limit of 256. */
	rl.rlim_cur = 256;
	SYS(setrlimit(RLIMIT_NOFILE, &rl));
	open0 = fds_below(256);
	want = (256 - open0) / 2;
	n = 0;
	step("socketpair() until it fails");
	while (n < 256 && socketpair(AF_UNIX, n % 2 ? SOCK_DGRAM : SOCK_STREAM, 0, f[n]) == 0)
		n++;
	e = errno;
	step("");
	if (e != EMFILE || n != want)
		SOFT("socketpair() until it failed: %d pairs, then %s; with %d of 256 descriptors "
		     "open the kernel makes exactly %d, then EMFILE", n, errname(e), open0, want);
	for (int i = 0; i < n; i++)
		close2(f[i]);
	free(f);
	free(pf);
}

static void check_many_pipes(void)
{
	subcase("pipes and socket pairs up to the descriptor limit", many_pipes_body, NULL, 50);
}

/* One field of the mount's user.ipcd.status, or -1. */
static long mount_status(const char *field)
{
	const char *m = shim_mount();
	char buf[512], key[64];
	ssize_t n;
	char *at;

	if (!m)
		return -1;
	n = getxattr(m, "user.ipcd.status", buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	snprintf(key, sizeof(key), " %s=", field);
	at = strstr(buf, key);
	return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

/* channels= of the mount back to at most `before` within 5 s; -1 if
 * there is no mount to ask (a run without the shim). */
static long channels_back(long before)
{
	long now = mount_status("channels");

	for (int i = 0; i < 100 && now > before; i++) {
		msleep(50);
		now = mount_status("channels");
	}
	return now;
}

static void check_pipe_loop(void)
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
	long ch0 = mount_status("channels"), ch1;
	int fds0 = count_fds(), p[2];

	step("10000 times pipe() and two close()");
	for (int i = 0; i < 10000; i++) {
		xpipe(p);
		close2(p);
	}
	step("1000 times socketpair() and two close()");
	for (int i = 0; i < 1000; i++) {
		xsocketpair(types[i % 3], p);
		close2(p);
	}
	step("");
	EXPECT(count_fds() == fds0, "%d descriptors open after the loop, %d before", count_fds(),
	       fds0);
	if (ch0 >= 0) {
		/* The shim keeps a few pairs for the next pipe() and receives a
		 * few ahead (ipcd-shim(7)): a bounded reserve, not a leak. */
		ch1 = channels_back(ch0 + SHIM_RESERVE);
		if (ch1 > ch0 + SHIM_RESERVE)
			SOFT("the mount's channels= is %ld 5 s after 10000 pipe()+close() and 1000 "
			     "socketpair()+close(); it was %ld before (the shim may keep %d)",
			     ch1, ch0, SHIM_RESERVE);
		else
			printf("# channels= %ld before the loop, %ld after\n", ch0, ch1);
	}
}

/* ======================================================================
 * Reopening an end through /proc/self/fd/N or /dev/fd/N.
 * ====================================================================== */

static int reopen_as(const char *dir, int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "%s/%d", dir, fd);
	return open(path, flags);
}

static void expect_fifo(int fd, int acc, const char *what)
{
	struct stat st;
	int fl;

	SYS(fstat(fd, &st));
	if (!S_ISFIFO(st.st_mode))
		SOFT("%s: fstat says mode %#o, not a FIFO", what, (unsigned)st.st_mode);
	fl = getfl(fd);
	if ((fl & O_ACCMODE) != acc)
		SOFT("%s: F_GETFL access mode %d, not %d", what, fl & O_ACCMODE, acc);
}

/* The next read of fd gives `want` (nonblocking: at once). */
static void read_now(int fd, const char *want, const char *what)
{
	char b[64];
	ssize_t n;
	size_t len = strlen(want);

	set_nonblock(fd, true);
	n = read(fd, b, sizeof(b));
	set_nonblock(fd, false);
	if (len == 0 ? n != 0 : (n != (ssize_t)len || memcmp(b, want, len)))
		SOFT("%s: a read gave %s%s%.*s%s, the kernel %s%s%s", what,
		     rw_str(n, errno, b + 32, 32), n > 0 ? " \"" : "", n > 0 ? (int)n : 0, b,
		     n > 0 ? "\"" : "", len ? "\"" : "0 (EOF)", len ? want : "", len ? "\"" : "");
}

static void reopen_read_queued(void *arg)
{
	const char *dir = arg;
	int p[2], r;

	xpipe(p);
	write_all(p[1], "abc", 3);
	r = reopen_as(dir, p[0], O_RDONLY);
	EXPECT(r >= 0, "open(%s/N, O_RDONLY) of a read end: %s", dir, errname(errno));
	expect_fifo(r, O_RDONLY, "the reopened read end");
	step("reading the reopened read end");
	read_now(r, "abc", "the reopened read end, 3 bytes queued");
	write_all(p[1], "d", 1);
	read_now(p[0], "d", "the original read end after the reopened one read");
	xclose(r);
	xclose(p[1]);
	read_now(p[0], "", "the original read end after the writer's close");
	xclose(p[0]);
	atomic_fetch_add(slow_allowed, 3);
}

static void reopen_write(void *arg)
{
	const char *dir = arg;
	int p[2], w;

	xpipe(p);
	w = reopen_as(dir, p[1], O_WRONLY);
	EXPECT(w >= 0, "open(%s/N, O_WRONLY) of a write end: %s", dir, errname(errno));
	expect_fifo(w, O_WRONLY, "the reopened write end");
	EXPECT_EQ(write(w, "def", 3), 3);
	read_now(p[0], "def", "bytes written through the reopened write end");
	xclose(p[1]);
	set_nonblock(p[0], true);
	{
		char c;
		ssize_t n = read(p[0], &c, 1);

		if (n != -1 || errno != EAGAIN)
			SOFT("with the reopened write end still open, a read gave %s, the kernel "
			     "-1 with EAGAIN", rw_str(n, errno, (char[32]){ 0 }, 32));
	}
	set_nonblock(p[0], false);
	xclose(w);
	read_now(p[0], "", "after the reopened write end closed too");
	xclose(p[0]);
	atomic_fetch_add(slow_allowed, 3);
}

static void reopen_rdwr(void *arg)
{
	int p[2], rw;

	(void)arg;
	xpipe(p);
	rw = reopen_as("/proc/self/fd", p[0], O_RDWR);
	EXPECT(rw >= 0, "open(/proc/self/fd/N, O_RDWR) of a read end: %s", errname(errno));
	EXPECT_EQ(write(rw, "xy", 2), 2);
	read_now(p[0], "xy", "bytes written through a read end reopened O_RDWR");
	xclose(p[1]);
	{
		char c;
		ssize_t n;

		set_nonblock(p[0], true);
		n = read(p[0], &c, 1);
		set_nonblock(p[0], false);
		if (n != -1 || errno != EAGAIN)
			SOFT("the O_RDWR reopened end still writes, yet a read gave %s, the kernel -1 "
			     "with EAGAIN", rw_str(n, errno, (char[32]){ 0 }, 32));
	}
	xclose(rw);
	read_now(p[0], "", "after the O_RDWR reopened end closed");
	xclose(p[0]);
	atomic_fetch_add(slow_allowed, 2);
}

static void reopen_after_exit(void *arg)
{
	int p[2], r;
	pid_t pid;

	(void)arg;
	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		xclose(p[0]);
		write_all(p[1], "x", 1);
		_exit(0);
	}
	xclose(p[1]);
	kid_ok(pid, "the writer child");
	step("open(/proc/self/fd/N) of a read end whose writer exited");
	r = reopen_as("/proc/self/fd", p[0], O_RDONLY);
	step("");
	EXPECT(r >= 0, "open of a read end whose writer exited: %s", errname(errno));
	step("reading it");
	read_now(r, "x", "a read end reopened after its writer exited, 1 byte queued");
	read_now(r, "", "the same, once the byte was read");
	step("");
	xclose(r);
	/* Empty, no writer: EOF at once. */
	step("open(/proc/self/fd/N) of an empty read end with no writer");
	r = reopen_as("/proc/self/fd", p[0], O_RDONLY);
	step("");
	EXPECT(r >= 0, "open of an empty read end with no writer: %s", errname(errno));
	read_now(r, "", "an empty read end with no writer, reopened");
	xclose(r);
	xclose(p[0]);
	atomic_fetch_add(slow_allowed, 1);
}

static void reopen_no_reader(void *arg)
{
	int p[2], w;
	ssize_t n;

	(void)arg;
	xpipe(p);
	xclose(p[0]);
	step("open(/proc/self/fd/N, O_WRONLY) of a write end with no reader");
	w = reopen_as("/proc/self/fd", p[1], O_WRONLY);
	step("");
	if (w < 0) {
		SOFT("open of a write end with no reader failed with %s; the kernel opens it",
		     errname(errno));
	} else {
		n = write(w, "x", 1);
		if (n != -1 || errno != EPIPE)
			SOFT("a write through it gave %s, the kernel -1 with EPIPE",
			     rw_str(n, errno, (char[32]){ 0 }, 32));
		xclose(w);
	}
	xclose(p[1]);
}

static void reopen_socket(void *arg)
{
	int sv[2], r;

	(void)arg;
	xsocketpair(SOCK_STREAM, sv);
	r = reopen_as("/proc/self/fd", sv[0], O_RDWR);
	if (r >= 0 || errno != ENXIO) {
		SOFT("open(/proc/self/fd/N) of a socket pair end gave %s, the kernel -1 with ENXIO",
		     rw_str(r, errno, (char[32]){ 0 }, 32));
		if (r >= 0)
			close(r);
	}
	close2(sv);
}

static void reopen_nonblock(void *arg)
{
	int p[2], r;

	(void)arg;
	xpipe(p);
	r = reopen_as("/dev/fd", p[0], O_RDONLY | O_NONBLOCK);
	EXPECT(r >= 0, "open(/dev/fd/N, O_RDONLY|O_NONBLOCK): %s", errname(errno));
	if (!(getfl(r) & O_NONBLOCK))
		SOFT("a read end reopened with O_NONBLOCK has no O_NONBLOCK in F_GETFL");
	if (getfl(p[0]) & O_NONBLOCK)
		SOFT("reopening with O_NONBLOCK made the original end nonblocking");
	{
		char c;
		ssize_t n = read(r, &c, 1);

		if (n != -1 || errno != EAGAIN)
			SOFT("reopened with O_NONBLOCK, empty, a writer open: a read gave %s, the "
			     "kernel -1 with EAGAIN", rw_str(n, errno, (char[32]){ 0 }, 32));
	}
	xclose(r);
	close2(p);
}

static void reopen_dev_stdin(void *arg)
{
	enum { LEN = 100000 };
	int p[2];
	pid_t pid;

	(void)arg;
	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		int in;

		xclose(p[1]);
		SYS(dup2(p[0], 0));
		xclose(p[0]);
		in = open("/dev/stdin", O_RDONLY);
		EXPECT(in >= 0, "open(/dev/stdin) of a pipe: %s", errname(errno));
		read_pattern(in, 0, LEN);
		expect_eof(in);
		_exit(0);
	}
	xclose(p[0]);
	write_all(p[1], pat_at(0, LEN), LEN);
	xclose(p[1]);
	kid_ok(pid, "a child reading its stdin pipe through open(\"/dev/stdin\")");
	atomic_fetch_add(slow_allowed, LEN);
}

#define REOPEN_LEN	(64u << 10)

/* An exec'd child reads (or writes) an inherited end through /proc. */
static void reopen_exec(bool keep, bool reading)
{
	char a[16], b[16];
	uint64_t rep[2];
	int p[2], out[2];
	pid_t pid;

	xpipe(p);
	xpipe(out);
	pid = kid_fork();
	if (!pid) {
		const char *args[] = { reading ? "reopen-read" : "reopen-write",
				       num(a, reading ? p[0] : p[1]), num(b, out[1]), NULL };

		xclose(reading ? p[1] : p[0]);
		xclose(out[0]);
		exec_self(args, keep);
	}
	xclose(reading ? p[0] : p[1]);
	xclose(out[1]);
	if (reading) {
		step("writing to an exec'd child that reopened its read end");
		write_all(p[1], pat_at(3, REOPEN_LEN), REOPEN_LEN);
		xclose(p[1]);
		step("its report");
		EXPECT_EQ(read_full(out[0], rep, sizeof(rep)), sizeof(rep));
		step("");
		if (rep[0] != REOPEN_LEN || rep[1] != fnv(FNV_INIT, pat_at(3, REOPEN_LEN), REOPEN_LEN))
			SOFT("an exec'd child %s read %" PRIu64 " bytes%s through its reopened read "
			     "end, of %u written", keep ? "with the shim" : "without the shim",
			     rep[0], rep[0] == REOPEN_LEN ? " (other bytes)" : "", REOPEN_LEN);
	} else {
		step("reading from an exec'd child that reopened its write end");
		read_pattern(p[0], 5, REOPEN_LEN);
		expect_eof(p[0]);
		step("");
		xclose(p[0]);
	}
	expect_eof(out[0]);
	xclose(out[0]);
	kid_ok(pid, "the exec'd child reopening an inherited end");
	if (keep) {
		atomic_fetch_add(slow_allowed, REOPEN_LEN);
	} else {
		atomic_fetch_add(slow_expected, REOPEN_LEN + (reading ? sizeof(rep) : 0));
	}
}

static void reopen_exec_plain_r(void *arg) { (void)arg; reopen_exec(false, true); }
static void reopen_exec_plain_w(void *arg) { (void)arg; reopen_exec(false, false); }
static void reopen_exec_shim_r(void *arg) { (void)arg; reopen_exec(true, true); }
static void reopen_exec_shim_w(void *arg) { (void)arg; reopen_exec(true, false); }

static void check_reopen(void)
{
	subcase("/proc/self/fd/N of a read end, data queued", reopen_read_queued,
		(void *)"/proc/self/fd", 5);
	subcase("/dev/fd/N of a read end, data queued", reopen_read_queued, (void *)"/dev/fd", 5);
	subcase("/proc/self/fd/N of a write end", reopen_write, (void *)"/proc/self/fd", 5);
	subcase("/dev/fd/N of a write end", reopen_write, (void *)"/dev/fd", 5);
	subcase("a read end reopened O_RDWR", reopen_rdwr, NULL, 5);
	subcase("a read end reopened after its writer exited", reopen_after_exit, NULL, 5);
	subcase("a write end reopened with no reader", reopen_no_reader, NULL, 5);
	subcase("a socket pair end reopened", reopen_socket, NULL, 5);
	subcase("a read end reopened O_NONBLOCK", reopen_nonblock, NULL, 5);
	subcase("open(\"/dev/stdin\") on a pipe", reopen_dev_stdin, NULL, 10);
	subcase("exec'd without the shim, reading a reopened end", reopen_exec_plain_r, NULL, 10);
	subcase("exec'd without the shim, writing a reopened end", reopen_exec_plain_w, NULL, 10);
	subcase("exec'd with the shim, reading a reopened end", reopen_exec_shim_r, NULL, 10);
	subcase("exec'd with the shim, writing a reopened end", reopen_exec_shim_w, NULL, 10);
}

/* ======================================================================
 * stdio on channel ends: libc writes and closes through its own internal
 * calls.
 * ====================================================================== */

#define STDIO_LINES	20000
#define STDIO_BLOB	(1u << 20)

static void stdio_roundtrip(void *arg)
{
	char line[64], want[64];
	unsigned char *blob;
	FILE *in;
	int p[2];
	pid_t pid;

	(void)arg;
	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		FILE *out;

		/* printf and puts on stdout, then its fclose; then fdopen.  The
		 * log comes back to fd 1 for any failure after that. */
		int log = (int)SYS(dup(STDOUT_FILENO));

		xclose(p[0]);
		SYS(dup2(p[1], STDOUT_FILENO));
		for (int i = 0; i < STDIO_LINES; i++)
			if (printf("line %06d\n", i) != 12)
				break;
		puts("the end of the lines");
		errno = 0;
		if (fclose(stdout) != 0) {
			SYS(dup2(log, STDOUT_FILENO));
			FAIL("printf, puts and fclose(stdout) into a pipe: %s", strerror(errno));
		}
		SYS(dup2(log, STDOUT_FILENO));
		xclose(log);
		out = fdopen(p[1], "w");
		EXPECT(out, "fdopen(w): %s", strerror(errno));
		EXPECT(putc('!', out) == '!', "putc failed");
		EXPECT(fwrite(pat_at(7, STDIO_BLOB), 1, STDIO_BLOB, out) == STDIO_BLOB,
		       "fwrite failed: %s", strerror(errno));
		EXPECT(fclose(out) == 0, "fclose failed: %s", strerror(errno));
		_exit(0);
	}
	xclose(p[1]);
	in = fdopen(p[0], "r");
	EXPECT(in, "fdopen(r): %s", strerror(errno));
	step("fgets of lines a child writes with printf");
	for (int i = 0; i < STDIO_LINES; i++) {
		snprintf(want, sizeof(want), "line %06d\n", i);
		if (!fgets(line, sizeof(line), in) || strcmp(line, want)) {
			SOFT("stdio: line %d read back as \"%.20s\", not \"line %06d\"", i,
			     feof(in) ? "(end of file)" : line, i);
			goto out;
		}
	}
	if (!fgets(line, sizeof(line), in) || strcmp(line, "the end of the lines\n")) {
		SOFT("stdio: the puts line came back as \"%.30s\"", line);
		goto out;
	}
	if (getc(in) != '!') {
		SOFT("stdio: putc's byte did not come back");
		goto out;
	}
	blob = malloc(STDIO_BLOB + 1);
	EXPECT(blob, "out of memory");
	step("fread of what a child wrote with fwrite");
	{
		size_t got = fread(blob, 1, STDIO_BLOB + 1, in);

		if (got != STDIO_BLOB || memcmp(blob, pat_at(7, STDIO_BLOB), STDIO_BLOB))
			SOFT("stdio: fread gave %zu bytes%s, fwrite wrote %u", got,
			     got == STDIO_BLOB ? " (other bytes)" : "", STDIO_BLOB);
		else if (!feof(in))
			SOFT("stdio: no end of file after the writer's fclose");
	}
	free(blob);
out:
	step("");
	fclose(in);
	kid_ok(pid, "the stdio writer child");
	atomic_fetch_add(slow_allowed, 2 * (STDIO_LINES * 12 + 22 + STDIO_BLOB));
}

static void stdio_sigpipe(void *arg)
{
	pid_t pid;
	int st;
	char b[128];

	(void)arg;
	/* SIGPIPE's default action: fflush into a pipe with no reader kills. */
	pid = kid_fork();
	if (!pid) {
		int p[2];
		FILE *out;

		signal(SIGPIPE, SIG_DFL);
		xpipe(p);
		xclose(p[0]);
		out = fdopen(p[1], "w");
		fputs("x\n", out);
		fflush(out);
		_exit(3);
	}
	st = kid_wait(pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGPIPE)
		SOFT("stdio: fflush into a pipe with no reader, SIGPIPE at its default: the child "
		     "%s; the kernel kills it with SIGPIPE", status_str(st, b, sizeof(b)));

	/* Ignored: fflush fails with EPIPE. */
	pid = kid_fork();
	if (!pid) {
		int p[2], r;
		FILE *out;

		signal(SIGPIPE, SIG_IGN);
		xpipe(p);
		xclose(p[0]);
		out = fdopen(p[1], "w");
		fputs("x\n", out);
		errno = 0;
		r = fflush(out);
		_exit(r == EOF && errno == EPIPE && ferror(out) ? 0 : 4);
	}
	st = kid_wait(pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		SOFT("stdio: fflush into a pipe with no reader, SIGPIPE ignored: the child %s; "
		     "the kernel gives EOF with EPIPE", status_str(st, b, sizeof(b)));
}

/* Make the next pipe's read end the lowest free descriptor. */
static void lowest_pipe(int p[2])
{
	int lo = (int)SYS(open("/dev/null", O_RDONLY));

	xclose(lo);
	xpipe(p);
	EXPECT(p[0] == lo, "the pipe's read end is %d, not the lowest free %d", p[0], lo);
}

static void stdio_fclose_reuse(void *arg)
{
	unsigned char b[8];
	struct stat st;
	FILE *f;
	int p[2], fd, old;
	ssize_t n;

	(void)arg;
	/* The read end: fdopen, fclose, the number reused for /dev/urandom. */
	lowest_pipe(p);
	write_all(p[1], "stale!!!", 8);
	f = fdopen(p[0], "r");
	EXPECT(f, "fdopen: %s", strerror(errno));
	old = p[0];
	EXPECT(fclose(f) == 0, "fclose: %s", strerror(errno));
	fd = (int)SYS(open("/dev/urandom", O_RDONLY));
	EXPECT(fd == old, "open after fclose got %d, not %d", fd, old);
	SYS(fstat(fd, &st));
	if (!S_ISCHR(st.st_mode))
		SOFT("fstat of /dev/urandom, opened on the number an fclose'd read end had, says "
		     "mode %#o", (unsigned)st.st_mode);
	step("reading /dev/urandom on the number an fclose'd read end had");
	n = read(fd, b, sizeof(b));
	step("");
	if (n != 8)
		SOFT("read of 8 bytes from /dev/urandom on the number an fclose'd read end had "
		     "gave %s", rw_str(n, errno, (char[32]){ 0 }, 32));
	else if (!memcmp(b, "stale!!!", 8))
		SOFT("read from /dev/urandom on the number an fclose'd read end had gave the "
		     "old pipe's bytes \"stale!!!\"");
	xclose(fd);
	xclose(p[1]);

	/* The write end: fclose, /dev/null on its number, a write there. */
	xpipe(p);
	SYS(fcntl(p[0], F_SETFL, O_NONBLOCK));
	f = fdopen(p[1], "w");
	EXPECT(f, "fdopen: %s", strerror(errno));
	old = p[1];
	EXPECT(fclose(f) == 0, "fclose: %s", strerror(errno));
	fd = (int)SYS(open("/dev/null", O_WRONLY));
	if (fd != old) {
		xclose(fd);
		xclose(p[0]);
		printf("# the number of the fclose'd write end was not reused (%d, %d)\n", fd, old);
		return;
	}
	n = write(fd, "garbage", 7);
	if (n != 7)
		SOFT("write to /dev/null on the number an fclose'd write end had gave %s",
		     rw_str(n, errno, (char[32]){ 0 }, 32));
	xclose(fd);
	n = read(p[0], b, sizeof(b));
	if (n != 0)
		SOFT("the reader of a pipe whose write end was fclose'd, and whose number now "
		     "is /dev/null, read %s%s, the kernel 0 (EOF)",
		     rw_str(n, errno, (char[32]){ 0 }, 32),
		     n > 0 ? " bytes written to /dev/null" : "");
	xclose(p[0]);
}

static void stdio_fclose_eof(void *arg)
{
	enum { ROUNDS = 50 };
	int bad = 0, first = -1;
	char what[128] = "";

	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		int p[2];
		char b[8];
		ssize_t n;
		FILE *f;

		SYS(pipe2(p, O_NONBLOCK));
		f = fdopen(p[1], "w");
		fputs("abc", f);
		fclose(f);
		n = read(p[0], b, sizeof(b));
		if (n == 3)
			n = read(p[0], b, sizeof(b));
		else if (!bad)
			snprintf(what, sizeof(what), "the first read gave %s, not the 3 bytes",
				 rw_str(n, errno, (char[32]){ 0 }, 32));
		if (n != 0 && bad++ == 0) {
			first = i;
			if (!*what)
				snprintf(what, sizeof(what), "a read after the data gave %s, not 0 (EOF)",
					 rw_str(n, errno, (char[32]){ 0 }, 32));
		}
		xclose(p[0]);
	}
	if (bad)
		SOFT("fclose of the only write end, then a nonblocking read: %d of %d rounds "
		     "wrong, the first (round %d): %s", bad, ROUNDS, first, what);
	atomic_fetch_add(slow_allowed, 3 * ROUNDS);
}

static void stdio_posix_spawn(void *arg)
{
	enum { LEN = 300000 };
	posix_spawn_file_actions_t fa;
	char *argv[] = { (char *)"cat", NULL };
	int in[2], out[2], e, st;
	struct later l;
	pid_t pid;

	(void)arg;
	xpipe(in);
	xpipe(out);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_addclose(&fa, in[1]);
	posix_spawn_file_actions_addclose(&fa, out[0]);
	e = posix_spawn(&pid, "/bin/cat", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	EXPECT(e == 0, "posix_spawn: %s", strerror(e));
	xclose(in[0]);
	xclose(out[1]);
	later_start(&l, in[1], 0, pat_at(1, LEN), LEN, true);
	step("reading what a posix_spawn'd cat echoes");
	read_pattern(out[0], 1, LEN);
	expect_eof(out[0]);
	step("");
	xjoin(l.t);
	xclose(out[0]);
	EXPECT_EQ(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		SOFT("the posix_spawn'd cat ended with wait status %#x", st);
}

/*
 * The parts of libc that dup, close and spawn on descriptors by themselves,
 * out of the program's sight: freopen (dup3 inside), closefrom
 * (close_range inside), system and popen (posix_spawn inside).  Each must
 * leave the pipes as the kernel's would: stdout moved to a file by freopen
 * takes no more bytes into its pipe, and the pipe's reader sees EOF; ends
 * closed by closefrom are closed at once; a command run by system or popen
 * writes into an inherited end.
 */
static void stdio_libc_fds(void *arg)
{
	char tmpl[] = "/tmp/shim_sem.XXXXXX", buf[64], cmd[64];
	int p[2], q[2], go[2], file, st;
	FILE *f;
	pid_t pid;
	ssize_t n;

	(void)arg;
	/* freopen: stdout was a pipe, then a file. */
	file = (int)SYS(mkstemp(tmpl));
	xclose(file);
	xpipe(p);
	pid = kid_fork();
	if (!pid) {
		xclose(p[0]);
		SYS(dup2(p[1], STDOUT_FILENO));
		xclose(p[1]);
		printf("before\n");
		fflush(stdout);
		if (!freopen(tmpl, "w", stdout))
			_exit(3);
		printf("after\n");
		exit(0);
	}
	xclose(p[1]);
	step("reading what stdout took before and after freopen");
	n = (ssize_t)read_full(p[0], buf, sizeof(buf));
	step("");
	kid_ok(pid, "the child that freopened its stdout");
	if (n != 7 || memcmp(buf, "before\n", 7))
		SOFT("freopen of a stdout that was a pipe: the pipe took \"%.*s\", not \"before\\n\"",
		     (int)(n < 0 ? 0 : n), buf);
	xclose(p[0]);
	file = (int)SYS(open(tmpl, O_RDONLY));
	n = (ssize_t)read_full(file, buf, sizeof(buf));
	if (n != 6 || memcmp(buf, "after\n", 6))
		SOFT("freopen of a stdout that was a pipe: the file took \"%.*s\", not \"after\\n\"",
		     (int)(n < 0 ? 0 : n), buf);
	xclose(file);
	SYS(unlink(tmpl));

	/* closefrom: the child's write end, closed by it, is an EOF at once;
	 * its read end, closed by it, an EPIPE at once. */
	xpipe(go);
	xpipe(p);
	xpipe(q);
	pid = kid_fork();
	if (!pid) {
		int lo = p[0] < q[0] ? p[0] : q[0];

		xclose(go[0]);
		if (go[1] > lo)
			_exit(4);	/* not the lowest: cannot close the rest only */
		closefrom(lo);
		write_all(go[1], "c", 1);
		pause();	/* the parent kills us */
		_exit(5);
	}
	xclose(go[1]);
	xclose(p[1]);
	xclose(q[0]);
	set_nonblock(p[0], true);
	expect_read(go[0], "c");
	n = read(p[0], buf, 1);
	if (n != 0)
		SOFT("closefrom closed the only other write end: a nonblocking read then gave %s, "
		     "the kernel 0 (EOF)", rw_str(n, errno, (char[32]){ 0 }, 32));
	signal(SIGPIPE, SIG_IGN);
	n = write(q[1], "x", 1);
	if (n != -1 || errno != EPIPE)
		SOFT("closefrom closed the only other read end: a write then gave %s, the kernel "
		     "EPIPE", rw_str(n, errno, (char[32]){ 0 }, 32));
	signal(SIGPIPE, SIG_DFL);
	kill(pid, SIGKILL);
	st = kid_wait(pid);
	if (!WIFSIGNALED(st))
		SOFT("the closefrom child ended early: status %#x", st);
	xclose(p[0]);
	xclose(q[1]);
	xclose(go[0]);

	/* system and popen: the command writes into an inherited end. */
	xpipe(p);
	snprintf(cmd, sizeof(cmd), "printf system >&%d", p[1]);
	st = system(cmd);
	if (st != 0)
		SOFT("system(\"%s\") gave status %#x", cmd, st);
	snprintf(cmd, sizeof(cmd), "cat >&%d", p[1]);
	f = popen(cmd, "w");
	EXPECT(f, "popen(\"%s\"): %s", cmd, strerror(errno));
	fputs("+popen", f);
	st = pclose(f);
	if (st != 0)
		SOFT("pclose gave status %#x", st);
	xclose(p[1]);
	step("reading what system and popen's commands wrote");
	n = (ssize_t)read_full(p[0], buf, sizeof(buf));
	step("");
	if (n != 12 || memcmp(buf, "system+popen", 12))
		SOFT("system and popen wrote \"%.*s\" into an inherited pipe, not \"system+popen\"",
		     (int)(n < 0 ? 0 : n), buf);
	xclose(p[0]);
}

static void check_stdio(void)
{
	subcase("printf/puts/putc/fwrite/fclose, then fgets/getc/fread", stdio_roundtrip, NULL, 15);
	subcase("SIGPIPE through stdio", stdio_sigpipe, NULL, 5);
	subcase("fclose, then open() on the same number", stdio_fclose_reuse, NULL, 5);
	subcase("fclose of the write end is an EOF at once", stdio_fclose_eof, NULL, 10);
	subcase("posix_spawn with channel ends as stdin and stdout", stdio_posix_spawn, NULL, 10);
	subcase("freopen, closefrom, system and popen on pipes", stdio_libc_fds, NULL, 15);
}

/* ======================================================================
 * Processes with and without the shim on one channel.
 * ====================================================================== */

#define MIX_N		300
#define MIX_REC		100

/* Lines "A nnnnn" from us and "B nnnnn" from an exec'd child, strictly
 * alternating, tokens passed on two other pipes. */
static void mixed_writers(bool keep)
{
	char a[3][16], line[16];
	int d[2], t1[2], t2[2];
	unsigned char *got;
	size_t len;
	pid_t pid;

	xpipe(d);
	xpipe(t1);
	xpipe(t2);
	pid = kid_fork();
	if (!pid) {
		const char *args[] = { "mixed-writer", num(a[0], d[1]), num(a[1], t1[0]),
				       num(a[2], t2[1]), NULL };

		xclose(d[0]);
		xclose(t1[1]);
		xclose(t2[0]);
		exec_self(args, keep);
	}
	xclose(t1[0]);
	xclose(t2[1]);
	step("alternating lines with an exec'd child");
	for (int i = 0; i < MIX_N; i++) {
		char c;

		snprintf(line, sizeof(line), "A %05d\n", i);
		write_all(d[1], line, 8);
		write_all(t1[1], "t", 1);
		EXPECT_EQ(read(t2[0], &c, 1), 1);
	}
	xclose(t1[1]);
	xclose(d[1]);
	got = malloc(2 * MIX_N * 8 + 1);
	EXPECT(got, "out of memory");
	len = read_full(d[0], got, 2 * MIX_N * 8 + 1);
	step("");
	kid_ok(pid, "the exec'd writer");
	for (int i = 0; i < 2 * MIX_N; i++) {
		snprintf(line, sizeof(line), "%c %05d\n", i % 2 ? 'B' : 'A', i / 2);
		if ((size_t)(i * 8 + 8) > len || memcmp(got + i * 8, line, 8)) {
			SOFT("lines alternating between this process and an exec'd child %s: line %d "
			     "is \"%.7s\", not \"%.7s\" (%zu bytes in all, %d expected)",
			     keep ? "with the shim" : "without the shim", i,
			     (size_t)(i * 8 + 8) > len ? "(missing)" : (char *)got + i * 8, line,
			     len, 2 * MIX_N * 8);
			break;
		}
	}
	if (len != 2 * MIX_N * 8)
		SOFT("lines alternating with an exec'd child %s: %zu bytes came, %d were written",
		     keep ? "with the shim" : "without the shim", len, 2 * MIX_N * 8);
	free(got);
	expect_eof(t2[0]);
	xclose(t2[0]);
	xclose(d[0]);
	if (!keep)
		atomic_fetch_add(slow_expected, MIX_N * 8 + 2 * MIX_N);
}

/* Records from us, read alternately by us and an exec'd child. */
static void mixed_readers(bool keep)
{
	unsigned char rec[MIX_REC];
	char a[3][16];
	int d[2], t1[2], t2[2];
	pid_t pid;

	xpipe(d);
	xpipe(t1);
	xpipe(t2);
	pid = kid_fork();
	if (!pid) {
		const char *args[] = { "mixed-reader", num(a[0], d[0]), num(a[1], t1[0]),
				       num(a[2], t2[1]), NULL };

		xclose(d[1]);
		xclose(t1[1]);
		xclose(t2[0]);
		exec_self(args, keep);
	}
	xclose(t1[0]);
	xclose(t2[1]);
	step("writing records for two alternating readers");
	for (int i = 0; i < 2 * MIX_N; i++)
		write_all(d[1], pat_at((size_t)i * MIX_REC, MIX_REC), MIX_REC);
	xclose(d[1]);
	for (int i = 0; i < MIX_N; i++) {
		char c;
		size_t n = read_full(d[0], rec, MIX_REC);

		if (n != MIX_REC || memcmp(rec, pat_at((size_t)(2 * i) * MIX_REC, MIX_REC), MIX_REC)) {
			SOFT("records read alternately with an exec'd child %s: this process's read "
			     "%d got %zu bytes%s", keep ? "with the shim" : "without the shim", 2 * i,
			     n, n == MIX_REC ? " of another record" : "");
			break;
		}
		write_all(t1[1], "t", 1);
		if (read(t2[0], &c, 1) != 1 || c != 'k') {
			SOFT("records read alternately with an exec'd child %s: the child's read %d "
			     "got other bytes", keep ? "with the shim" : "without the shim", 2 * i + 1);
			break;
		}
	}
	step("");
	xclose(t1[1]);
	kid_ok(pid, "the exec'd reader");
	xclose(t2[0]);
	xclose(d[0]);
	if (!keep)
		atomic_fetch_add(slow_expected, MIX_N * MIX_REC + 2 * MIX_N);
}

/* PIPE_BUF records from two forked writers (with the shim if it is
 * preloaded) and two exec'd without it, at once: none torn. */
static void mixed_atomic(void)
{
	enum { PER = 500 };
	pid_t pid[4];
	unsigned long slow = 0;
	int p[2];

	xpipe(p);
	for (unsigned w = 0; w < 4; w++) {
		pid[w] = kid_fork();
		if (!pid[w]) {
			char a[3][16];
			const char *args[] = { "rec-writer", num(a[0], p[1]), num(a[1], (int)w),
					       num(a[2], PER), NULL };

			xclose(p[0]);
			if (w >= 2)
				exec_self(args, false);
			for (unsigned s = 0; s < PER; s++)
				rec_write(p[1], w, s, false);
			_exit(0);
		}
		if (w >= 2)
			for (unsigned s = 0; s < PER; s++)
				slow += rec_len(w, s);
	}
	xclose(p[1]);
	rec_read_all(p[0], 4, PER);
	xclose(p[0]);
	for (unsigned w = 0; w < 4; w++)
		kid_ok(pid[w], "a writer");
	atomic_fetch_add(slow_expected, slow);
}

static void check_mixed(void)
{
	mixed_writers(false);
	mixed_writers(true);
	mixed_readers(false);
	mixed_readers(true);
	mixed_atomic();
}

/* ======================================================================
 * fork/exec chains: a pipe inherited four levels down, through processes
 * with and without the shim.
 * ====================================================================== */

#define CHAIN_LEN	(256u << 10)

/* Level n (2..4) of the chain, exec'd. */
static void chain_level(int level, int down, int up)
{
	char line[96], a[3][16];
	pid_t pid;

	if (level == 4) {
		static unsigned char buf[65536];
		uint64_t h = FNV_INIT, total = 0;
		ssize_t n;

		while ((n = read(down, buf, sizeof(buf))) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			EXPECT(n > 0, "level 4: read: %s", strerror(errno));
			h = fnv(h, buf, (size_t)n);
			total += (uint64_t)n;
		}
		snprintf(line, sizeof(line), "level 4 %" PRIu64 " %016" PRIx64 "\n", total, h);
		write_all(up, line, strlen(line));
		return;
	}
	snprintf(line, sizeof(line), "level %d\n", level);
	write_all(up, line, strlen(line));
	pid = kid_fork();
	if (!pid) {
		const char *args[] = { "chain", num(a[0], level + 1), num(a[1], down),
				       num(a[2], up), NULL };

		/* Levels 2 and 4 run without the shim, 3 with it. */
		exec_self(args, level + 1 == 3);
	}
	kid_ok(pid, "the next level");
}

static void check_exec_chain(void)
{
	char want[128], *got;
	int down[2], up[2];
	size_t len;
	pid_t pid;

	xpipe(down);
	xpipe(up);
	pid = kid_fork();
	if (!pid) {
		pid_t l2;
		char a[3][16];

		xclose(down[1]);
		xclose(up[0]);
		write_all(up[1], "level 1\n", 8);
		l2 = kid_fork();
		if (!l2) {
			const char *args[] = { "chain", "2", num(a[1], down[0]), num(a[2], up[1]),
					       NULL };

			exec_self(args, false);
		}
		kid_ok(l2, "level 2");
		_exit(0);
	}
	xclose(down[0]);
	xclose(up[1]);
	step("writing to level 4 through the chain");
	write_all(down[1], pat_at(0, CHAIN_LEN), CHAIN_LEN);
	xclose(down[1]);
	got = malloc(4096);
	EXPECT(got, "out of memory");
	step("reading the levels' lines");
	len = read_full(up[0], got, 4095);
	step("");
	got[len] = 0;
	kid_ok(pid, "level 1");
	xclose(up[0]);
	snprintf(want, sizeof(want), "level 1\nlevel 2\nlevel 3\nlevel 4 %u %016" PRIx64 "\n",
		 CHAIN_LEN, fnv(FNV_INIT, pat_at(0, CHAIN_LEN), CHAIN_LEN));
	if (strcmp(got, want))
		SOFT("a fork/exec chain four levels deep (2 and 4 without the shim) said \"%s\", "
		     "not \"%s\"", got, want);
	/* Level 2 wrote its line, level 4 read everything and wrote its
	 * line, through the daemon. */
	atomic_fetch_add(slow_expected, 8 + CHAIN_LEN + (strlen(want) - 24));
	free(got);
}

/* ======================================================================
 * The exec'd sides of the checks above.
 * ====================================================================== */

static int exec_child_more(const char *mode, int argc, char **argv)
{
	if (!strcmp(mode, "notify") && argc >= 3) {
		notify_child(argc, argv);
		return 0;
	}
	if (!strcmp(mode, "write-exit") && argc == 2) {
		write_all(atoi(argv[1]), "x", 1);
		return 0;
	}
	if (!strcmp(mode, "reopen-read") && argc == 3) {
		static unsigned char buf[65536];
		uint64_t rep[2] = { 0, FNV_INIT };
		int fd = reopen_as("/proc/self/fd", atoi(argv[1]), O_RDONLY);
		ssize_t n;

		EXPECT(fd >= 0, "open(/proc/self/fd/%s): %s", argv[1], strerror(errno));
		xclose(atoi(argv[1]));
		while ((n = read(fd, buf, sizeof(buf))) != 0) {
			EXPECT(n > 0, "read of the reopened end: %s", strerror(errno));
			rep[0] += (uint64_t)n;
			rep[1] = fnv(rep[1], buf, (size_t)n);
		}
		write_all(atoi(argv[2]), rep, sizeof(rep));
		return 0;
	}
	if (!strcmp(mode, "reopen-write") && argc == 3) {
		int fd = reopen_as("/dev/fd", atoi(argv[1]), O_WRONLY);

		EXPECT(fd >= 0, "open(/dev/fd/%s, O_WRONLY): %s", argv[1], strerror(errno));
		xclose(atoi(argv[1]));
		write_all(fd, pat_at(5, REOPEN_LEN), REOPEN_LEN);
		xclose(fd);
		return 0;
	}
	if (!strcmp(mode, "mixed-writer") && argc == 4) {
		int d = atoi(argv[1]), t1 = atoi(argv[2]), t2 = atoi(argv[3]);
		char line[16], c;

		for (int i = 0; i < MIX_N; i++) {
			EXPECT_EQ(read(t1, &c, 1), 1);
			snprintf(line, sizeof(line), "B %05d\n", i);
			write_all(d, line, 8);
			write_all(t2, "t", 1);
		}
		expect_eof(t1);
		return 0;
	}
	if (!strcmp(mode, "mixed-reader") && argc == 4) {
		int d = atoi(argv[1]), t1 = atoi(argv[2]), t2 = atoi(argv[3]);
		unsigned char rec[MIX_REC];
		char c;

		for (int i = 0; i < MIX_N; i++) {
			size_t n;

			EXPECT_EQ(read(t1, &c, 1), 1);
			n = read_full(d, rec, MIX_REC);
			write_all(t2, n == MIX_REC && !memcmp(rec, pat_at((size_t)(2 * i + 1) *
								      MIX_REC, MIX_REC),
							     MIX_REC) ? "k" : "x", 1);
		}
		expect_eof(d);
		expect_eof(t1);
		return 0;
	}
	if (!strcmp(mode, "rec-writer") && argc == 4) {
		int fd = atoi(argv[1]);
		unsigned w = (unsigned)atoi(argv[2]), per = (unsigned)atoi(argv[3]);

		for (unsigned s = 0; s < per; s++)
			rec_write(fd, w, s, false);
		return 0;
	}
	if (!strcmp(mode, "chain") && argc == 4) {
		chain_level(atoi(argv[1]), atoi(argv[2]), atoi(argv[3]));
		return 0;
	}
	FAIL("bad arguments");
}

/* ======================================================================
 * The table, and main.
 * ====================================================================== */

struct check {
	const char *name;
	void (*fn)(void);
	const char *what;
};

static const struct check checks[] = {
	{ "roundtrip", check_pipe_roundtrip,
	  "pipe: data round trip, stream reads, zero-length read and write" },
	{ "large", check_pipe_large,
	  "pipe: 64 MiB from a forked writer, checksum and content" },
	{ "eof", check_pipe_eof,
	  "pipe: EOF only when the last writer closes (child, blocked reader)" },
	{ "close-sync", check_close_sync,
	  "close() takes effect at once: the other end sees EOF or EPIPE right away" },
	{ "eof-killed", check_pipe_eof_killed,
	  "pipe: data then EOF after a writer is killed by SIGKILL (idle, blocked in write)" },
	{ "sigpipe", check_sigpipe,
	  "EPIPE and SIGPIPE: default kills, ignored, caught, blocked, MSG_NOSIGNAL" },
	{ "nonblock-pipe2", check_nonblock_pipe2,
	  "O_NONBLOCK from pipe2 and SOCK_NONBLOCK: EAGAIN on empty read and full write" },
	{ "nonblock-fcntl", check_nonblock_fcntl,
	  "O_NONBLOCK by F_SETFL and FIONBIO, and back to blocking" },
	{ "getfl", check_getfl,
	  "F_GETFL: O_RDONLY/O_WRONLY pipe ends, O_RDWR sockets, O_NONBLOCK; FD_CLOEXEC" },
	{ "pipe-buf", check_pipe_buf_atomic,
	  "PIPE_BUF atomicity with 4 writer processes" },
	{ "fionread", check_fionread,
	  "FIONREAD on pipes, stream, datagram and seqpacket sockets" },
	{ "pipe-size", check_pipe_size,
	  "F_GETPIPE_SZ 65536; F_SETPIPE_SZ rounds as the kernel, EBUSY below what is queued; "
	  "a nonblocking writer fills exactly the size" },
	{ "lseek", check_lseek,
	  "lseek gives ESPIPE" },
	{ "fstat", check_fstat,
	  "fstat: S_ISFIFO for pipes, S_ISSOCK for socket pair ends" },
	{ "stream", check_stream_pair,
	  "socketpair STREAM: both ways at once, MSG_PEEK, MSG_WAITALL, shutdown, EOF" },
	{ "dgram", check_dgram_seqpacket,
	  "DGRAM and SEQPACKET: boundaries, MSG_TRUNC, msg_flags, MSG_PEEK, MSG_DONTWAIT" },
	{ "rights", check_rights,
	  "SCM_RIGHTS on socket pairs: with their bytes, dropped without room, from a child" },
	{ "sockopt", check_sockopt,
	  "getsockopt SO_TYPE and friends; socket calls on a pipe give ENOTSOCK" },
	{ "dup", check_dup,
	  "dup, dup2, dup3, F_DUPFD(_CLOEXEC): ends work, EOF after the last dup closes" },
	{ "close-range", check_close_range,
	  "close_range, also with CLOSE_RANGE_CLOEXEC and open-ended" },
	{ "fork", check_fork,
	  "fork: parent and child both use the ends" },
	{ "exec", check_exec_preloaded,
	  "exec with inherited ends, the shim preloaded in the child; CLOEXEC ends gone" },
	{ "exec-plain", check_exec_plain,
	  "exec with inherited ends, LD_PRELOAD removed for the child; CLOEXEC ends gone" },
	{ "single", check_single,
	  "one thread: data, a handler closing the end a read waits on, one using other pipes" },
	{ "eintr-restart", check_eintr_restart,
	  "blocked read, recv and write go on after an SA_RESTART handler" },
	{ "eintr", check_eintr,
	  "EINTR without SA_RESTART; poll, select, epoll_wait never restart" },
	{ "threads", check_threads,
	  "threads reading and writing one pipe and one datagram socket: no loss, no dups" },
	{ "poll", check_poll,
	  "poll and ppoll on channel fds: timeouts, POLLIN, POLLOUT, POLLHUP, POLLERR" },
	{ "poll-mixed", check_poll_mixed,
	  "poll, select, pselect on channels mixed with a kernel pipe and /dev/null" },
	{ "epoll", check_epoll,
	  "epoll level-triggered on channel ends, mixed with a kernel pipe" },
	{ "epoll-et", check_epoll_et,
	  "epoll edge-triggered and one-shot on a channel read end" },
	{ "iov", check_iov,
	  "writev and readv: gather, scatter, atomic, one message per vector" },
	{ "fine-points", check_fine_points,
	  "exact F_GETFL; pread/pwrite ESPIPE; unnamed peers; datagrams: no EOF, ECONNREFUSED" },
	{ "inval", check_inval,
	  "invalid arguments (NULL and read-only buffers, flags, iovcnt, fds, options) fail "
	  "as on the kernel, crash nothing, leave nothing behind" },
	{ "sockopt-cred", check_sockopt_cred,
	  "SO_PEERCRED (also after fork), SO_PASSCRED, and 18 more options as a kernel pair says" },
	{ "sock-timeo", check_sock_timeo,
	  "SO_RCVTIMEO/SO_SNDTIMEO: set, read back, recv/read/send time out with EAGAIN" },
	{ "splice", check_splice,
	  "splice, tee, vmsplice: file/pipe/socket to and from pipe ends" },
	{ "sig-timer", check_sig_timer,
	  "a timer signal 20 us or 1 ms into read/write/recv/send/poll/select/epoll_wait/ppoll "
	  "ends it with EINTR" },
	{ "sig-restart", check_sig_restart,
	  "with SA_RESTART, read/write/recv/send go on after an early signal; poll and "
	  "friends still give EINTR" },
	{ "sig-kill", check_sig_kill,
	  "kill() from another process ends waits with EINTR; rsync's poll/select and SIGUSR2" },
	{ "close-exit", check_close_exit,
	  "a child holding the only other end exits, is killed or execs: EPIPE or EOF right "
	  "after waitpid(), every time" },
	{ "close-notify", check_close_notify,
	  "a close learnt by a message on another channel is already visible (fork, exec "
	  "with and without the shim)" },
	{ "readiness", check_readiness,
	  "poll (every mask), select and epoll say of channel ends what they say of kernel "
	  "pipes and sockets in the same state" },
	{ "readiness-order", check_readiness_order,
	  "a child writes and exits: the parent's poll/epoll sees POLLIN no later than the "
	  "hang-up, then POLLHUP" },
	{ "many-pipes", check_many_pipes,
	  "pipe()/socketpair() until EMFILE make exactly the kernel's count; 500 pipes carry "
	  "data and poll at once" },
	{ "pipe-loop", check_pipe_loop,
	  "10000 pipe()+close() and 1000 socketpair()+close() leave no fd and no channel" },
	{ "reopen", check_reopen,
	  "ends reopened through /proc/self/fd and /dev/fd, by processes with and without "
	  "the shim: same pipe, EOF at once when the writer is gone" },
	{ "stdio", check_stdio,
	  "stdio on channel ends: exact bytes, SIGPIPE, fclose is a close (EOF, fd reused), "
	  "posix_spawn; freopen, closefrom, system and popen" },
	{ "mixed", check_mixed,
	  "a process with and one without the shim on one pipe: alternating writers, "
	  "alternating readers, PIPE_BUF records" },
	{ "exec-chain", check_exec_chain,
	  "a pipe inherited four levels down through fork and exec, with and without the shim" },
};
#define NCHECKS (sizeof(checks) / sizeof(checks[0]))

/* Checks that may take longer than CHECK_SECS under a slow shim: each case
 * has its own bound, and their sum can exceed it. */
static const struct {
	const char *name;
	int secs;
} limits[] = {
	{ "inval", 60 }, { "splice", 60 }, { "sig-timer", 60 }, { "sig-restart", 60 },
	{ "sig-kill", 60 }, { "close-exit", 90 }, { "close-notify", 40 },
	{ "readiness-order", 60 }, { "many-pipes", 60 }, { "pipe-loop", 90 },
	{ "reopen", 120 }, { "stdio", 60 }, { "mixed", 40 },
};

static int limit_of(const struct check *c)
{
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		if (!strcmp(limits[i].name, c->name))
			return limits[i].secs;
	return CHECK_SECS;
}

static void run_check(const struct check *c)
{
	int fds = count_fds();
	sigset_t none;

	atomic_store(&check_name, c->name);
	step("");
	soft_fails = 0;
	check_secs = limit_of(c);
	atomic_store(&wd_deadline, now_ns() + (int64_t)check_secs * 1000000000);
	c->fn();
	atomic_store(&wd_deadline, 0);
	step("");
	if (soft_fails)
		FAIL("%d case%s above differ%s from the kernel", soft_fails,
		     soft_fails == 1 ? "" : "s", soft_fails == 1 ? "s" : "");
	for (int i = 0; i < MAX_KIDS; i++)
		EXPECT(atomic_load(&kids[i]) == 0, "left a child process behind");
	EXPECT(count_fds() == fds, "the check leaked file descriptors (%d open, %d before)",
	       count_fds(), fds);
	printf("ok - %s\n", c->what);
	fflush(stdout);
	/* Back to the starting state for the next check. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, SIG_DFL);
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	atomic_store(&check_name, "between checks");
}

static bool selected(const struct check *c, int argc, char **argv)
{
	if (argc == 0)
		return true;
	for (int i = 0; i < argc; i++)
		if (!strcmp(argv[i], c->name))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	bool keep_going = false;
	int opt, failed = 0, ran = 0;
	int64_t t0 = now_ns();

	if (argc >= 2 && !strcmp(argv[1], "--exec-child"))
		return exec_child(argc - 2, argv + 2);
	while ((opt = getopt(argc, argv, "kl")) != -1) {
		switch (opt) {
		case 'k':
			keep_going = true;
			break;
		case 'l':
			for (size_t i = 0; i < NCHECKS; i++)
				printf("%-15s %s\n", checks[i].name, checks[i].what);
			return 0;
		default:
			fprintf(stderr, "usage: %s [-k] [-l] [check...]\n", argv[0]);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	for (int i = 0; i < argc; i++) {
		size_t k = 0;

		while (k < NCHECKS && strcmp(checks[k].name, argv[i]))
			k++;
		if (k == NCHECKS) {
			fprintf(stderr, "no check named %s (-l lists them)\n", argv[i]);
			return 2;
		}
	}
	runner_pid = getpid();
	make_pattern();
	shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		FAIL("mmap: %s", strerror(errno));
	slow_expected = &shm->slow_expected;
	slow_allowed = &shm->slow_allowed;
	signal(SIGPIPE, SIG_IGN);
	if (!keep_going)
		watchdog_start();
	for (size_t i = 0; i < NCHECKS; i++) {
		if (!selected(&checks[i], argc, argv))
			continue;
		ran++;
		if (!keep_going) {
			run_check(&checks[i]);
			continue;
		}
		/* Each check in its own process, so that one failure
		 * leaves the others to run. */
		fflush(stdout);
		pid_t pid = fork();

		if (pid < 0)
			FAIL("fork: %s", strerror(errno));
		if (pid == 0) {
			runner_pid = getpid();
			alarm((unsigned)limit_of(&checks[i]) + 10);
			watchdog_start();
			run_check(&checks[i]);
			_exit(0);
		}
		int st;

		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			char b[128];

			failed++;
			if (!WIFEXITED(st))
				printf("FAIL: %s: the check's process %s\n", checks[i].name,
				       status_str(st, b, sizeof(b)));
		}
	}
	printf("# slow-path payload bytes: %lu\n", atomic_load(slow_expected));
	printf("# slow-path payload bytes allowed: %lu\n", atomic_load(slow_allowed));
	printf("# %d checks, %d failed, %.1f s\n", ran, failed,
	       (double)(now_ns() - t0) / 1e9);
	return failed ? 1 : 0;
}
