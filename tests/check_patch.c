/*
 * check_patch - the libc entry patch (shim/patch.c) on its own, with counting
 * handlers that forward to the originals: libc's own stdio, system(), popen(),
 * freopen(), closedir() ... reach the handlers, byte for byte; the originals
 * keep return values, errno and pthread cancellation and never re-enter a
 * handler; threads and fork; unknown names, versions and bytes are refused
 * with nothing changed.  Exit 0 pass, 1 fail, 77 skip (with the reason).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/lib-names.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "patch.h"

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#define BUILD "AddressSanitizer"
#elif defined(__SANITIZE_THREAD__)
#define BUILD "ThreadSanitizer"
#else
#define BUILD "plain"
#endif

static int failures;

#define CHECK(c, ...) do {						\
	if (!(c)) {							\
		fprintf(stderr, "FAIL: %s:%d: %s: ", __func__, __LINE__, #c); \
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
		failures++;						\
	}								\
} while (0)

/* ---- counting handlers ---------------------------------------------------- */

enum kind {
	K_READ, K_WRITE, K_CLOSE, K_READ_NC, K_WRITE_NC, K_CLOSE_NC, K_LSEEK,
	K_CLOSE_RANGE, K_DUP2, K_DUP3, K_SPAWN, K_SPAWNP, K_N
};

static const char *const kname[K_N] = {
	"read", "write", "close", "__read_nocancel", "__write_nocancel",
	"__close_nocancel", "lseek64", "close_range", "dup2", "dup3",
	"posix_spawn", "posix_spawnp",
};
/* The versions patch.c knows them by, to find their bodies here too. */
static const char *const kver[K_N] = {
	"GLIBC_2.2.5", "GLIBC_2.2.5", "GLIBC_2.2.5", "GLIBC_PRIVATE", "GLIBC_PRIVATE",
	"GLIBC_PRIVATE", "GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.9",
	"GLIBC_2.15", "GLIBC_2.15",
};

#define NFD 1024
/*
 * What each handler saw: calls in all, and calls and bytes moved per fd.
 * Counters only (relaxed): they are read after the counted calls returned,
 * or after the thread or process that made them was joined or waited for,
 * which orders them.  The handlers also run in posix_spawn's child, which
 * shares this memory until it calls execve.
 */
static atomic_long c_all[K_N], c_fd[K_N][NFD], c_bytes[K_N][NFD];

static void count_call(enum kind k, int fd)
{
	atomic_fetch_add_explicit(&c_all[k], 1, memory_order_relaxed);
	if (fd >= 0 && fd < NFD)
		atomic_fetch_add_explicit(&c_fd[k][fd], 1, memory_order_relaxed);
}

static void count_bytes(enum kind k, int fd, ssize_t n)
{
	if (n > 0 && fd >= 0 && fd < NFD)
		atomic_fetch_add_explicit(&c_bytes[k][fd], n, memory_order_relaxed);
}

static long calls(enum kind k, int fd)
{
	return fd < 0 ? atomic_load(&c_all[k]) : atomic_load(&c_fd[k][fd]);
}

static long bytes(enum kind k, int fd)
{
	return atomic_load(&c_bytes[k][fd]);
}

static long calls_total(void)
{
	long t = 0;
	int k;

	for (k = 0; k < K_N; k++)
		t += atomic_load(&c_all[k]);
	return t;
}

static ssize_t (*o_read)(int, void *, size_t);
static ssize_t (*o_write)(int, const void *, size_t);
static int (*o_close)(int);
static ssize_t (*o_read_nc)(int, void *, size_t);
static ssize_t (*o_write_nc)(int, const void *, size_t);
static int (*o_close_nc)(int);
static off64_t (*o_lseek)(int, off64_t, int);
static int (*o_close_range)(unsigned, unsigned, int);
static int (*o_dup2)(int, int);
static int (*o_dup3)(int, int, int);
typedef int spawn_fn(pid_t *, const char *, const posix_spawn_file_actions_t *,
		     const posix_spawnattr_t *, char *const[], char *const[]);
static spawn_fn *o_spawn, *o_spawnp;

static ssize_t h_read(int fd, void *buf, size_t len)
{
	ssize_t r;

	count_call(K_READ, fd);
	r = o_read(fd, buf, len);
	count_bytes(K_READ, fd, r);
	return r;
}

static ssize_t h_write(int fd, const void *buf, size_t len)
{
	ssize_t r;

	count_call(K_WRITE, fd);
	r = o_write(fd, buf, len);
	count_bytes(K_WRITE, fd, r);
	return r;
}

static int h_close(int fd)
{
	count_call(K_CLOSE, fd);
	return o_close(fd);
}

static ssize_t h_read_nc(int fd, void *buf, size_t len)
{
	ssize_t r;

	count_call(K_READ_NC, fd);
	r = o_read_nc(fd, buf, len);
	count_bytes(K_READ_NC, fd, r);
	return r;
}

static ssize_t h_write_nc(int fd, const void *buf, size_t len)
{
	ssize_t r;

	count_call(K_WRITE_NC, fd);
	r = o_write_nc(fd, buf, len);
	count_bytes(K_WRITE_NC, fd, r);
	return r;
}

static int h_close_nc(int fd)
{
	count_call(K_CLOSE_NC, fd);
	return o_close_nc(fd);
}

static off64_t h_lseek(int fd, off64_t off, int whence)
{
	count_call(K_LSEEK, fd);
	return o_lseek(fd, off, whence);
}

static int h_close_range(unsigned first, unsigned last, int flags)
{
	count_call(K_CLOSE_RANGE, first < NFD ? (int)first : -1);
	return o_close_range(first, last, flags);
}

static int h_dup2(int fd, int nfd)
{
	count_call(K_DUP2, nfd);
	return o_dup2(fd, nfd);
}

static int h_dup3(int fd, int nfd, int flags)
{
	count_call(K_DUP3, nfd);
	return o_dup3(fd, nfd, flags);
}

static int h_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		   const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	count_call(K_SPAWN, -1);
	return o_spawn(pid, path, fa, at, argv, envp);
}

static int h_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		    const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	count_call(K_SPAWNP, -1);
	return o_spawnp(pid, file, fa, at, argv, envp);
}

/* Every supported function, in enum kind order. */
static struct patch_site sites[K_N] = {
	{ "read", NULL, (void *)h_read, (void **)&o_read },
	{ "write", NULL, (void *)h_write, (void **)&o_write },
	{ "close", NULL, (void *)h_close, (void **)&o_close },
	{ "__read_nocancel", NULL, (void *)h_read_nc, (void **)&o_read_nc },
	{ "__write_nocancel", NULL, (void *)h_write_nc, (void **)&o_write_nc },
	{ "__close_nocancel", NULL, (void *)h_close_nc, (void **)&o_close_nc },
	{ "lseek64", NULL, (void *)h_lseek, (void **)&o_lseek },
	{ "close_range", NULL, (void *)h_close_range, (void **)&o_close_range },
	{ "dup2", NULL, (void *)h_dup2, (void **)&o_dup2 },
	{ "dup3", NULL, (void *)h_dup3, (void **)&o_dup3 },
	{ "posix_spawn", "GLIBC_2.15", (void *)h_spawn, (void **)&o_spawn },
	{ "posix_spawnp", "GLIBC_2.15", (void *)h_spawnp, (void **)&o_spawnp },
};

/* ---- helpers ---------------------------------------------------------------- */

#define SNAP 16

/* The body of kind k in libc, found here independently of patch.c. */
static uint8_t *entry(enum kind k)
{
	static void *libc;

	if (!libc)
		libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
	return libc ? dlvsym(libc, kname[k], kver[k]) : NULL;
}

static void snap_take(uint8_t s[K_N][SNAP])
{
	int k;

	for (k = 0; k < K_N; k++)
		if (entry(k))
			memcpy(s[k], entry(k), SNAP);
}

/* Overwrite one byte of libc's code, as another build would have it. */
static void poke(uint8_t *at, uint8_t v)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), page = (uintptr_t)at & ~(pg - 1);

	if (mprotect((void *)page, pg, PROT_READ | PROT_WRITE | PROT_EXEC)) {
		fprintf(stderr, "FAIL: mprotect: %s\n", strerror(errno));
		exit(1);
	}
	/* Not a C store: a sanitizer would instrument it, and has no shadow for code. */
#if defined(__x86_64__)
	__asm__ volatile("movb %1, %0" : "=m"(*at) : "q"(v) : "memory");
#else
	*at = v;	/* not reached: other architectures are skipped */
#endif
	mprotect((void *)page, pg, PROT_READ | PROT_EXEC);
}

/* A field of /proc/self/io ("syscw: 42"), or -1. */
static long proc_io(const char *field)
{
	char buf[1024], *p;
	ssize_t n;
	int fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, field);
	return p ? strtol(p + strlen(field) + 2, NULL, 10) : -1;
}

static void xpipe(int p[2])
{
	if (pipe(p)) {
		fprintf(stderr, "FAIL: pipe: %s\n", strerror(errno));
		exit(1);
	}
}

/* Run fn in a child process; true if it exited 0. */
static bool in_child(void (*fn)(void))
{
	int st;
	pid_t pid = fork();

	if (pid < 0)
		return false;
	if (pid == 0) {
		failures = 0;
		fn();
		_exit(failures ? 1 : 0);
	}
	return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void run(const char *name, void (*fn)(void))
{
	int before = failures;

	fn();
	fprintf(stderr, "%s - %s\n", failures == before ? "ok" : "not ok", name);
}

static void run_child(const char *name, void (*fn)(void))
{
	bool ok = in_child(fn);

	failures += !ok;
	fprintf(stderr, "%s - %s (in a child)\n", ok ? "ok" : "not ok", name);
}

/* ---- refusal: each in a child, before the real patch ----------------------- */

static uint8_t pristine[K_N][SNAP];

/* Nothing patched: same bytes, *orig untouched, handlers never reached. */
static void expect_untouched(void)
{
	uint8_t now[K_N][SNAP];
	char c = 0;
	int k, p[2];
	FILE *f;

	snap_take(now);
	for (k = 0; k < K_N; k++) {
		void *o;

		memcpy(&o, sites[k].orig, sizeof(o));
		CHECK(!memcmp(now[k], pristine[k], SNAP), "%s changed", kname[k]);
		CHECK(o == NULL, "*orig of %s was set", kname[k]);
	}
	xpipe(p);
	CHECK(write(p[1], "z", 1) == 1 && read(p[0], &c, 1) == 1 && c == 'z', "pipe");
	f = fdopen(p[1], "w");
	CHECK(f && fputs("x", f) >= 0 && fclose(f) == 0, "stdio");
	CHECK(lseek(p[0], 0, SEEK_CUR) == -1 && errno == ESPIPE, "lseek");
	CHECK(dup2(p[0], p[0]) == p[0] && close(p[0]) == 0, "dup2, close");
	CHECK(calls_total() == 0, "a handler ran %ld times", calls_total());
}

/* After a refusal, a good list patches. */
static void expect_patchable(void)
{
	int p[2];
	char c;

	CHECK(patch_apply(sites, K_N) == 0, "%s", patch_error());
	xpipe(p);
	CHECK(write(p[1], "z", 1) == 1 && read(p[0], &c, 1) == 1, "pipe");
	CHECK(calls(K_WRITE, p[1]) == 1 && calls(K_READ, p[0]) == 1, "not counted");
}

static void refuse_unknown_name(void)
{
	static ssize_t (*o_fsync)(int);
	struct patch_site s[K_N + 1];

	memcpy(s, sites, sizeof(sites));
	s[K_N] = (struct patch_site){ "fsync", NULL, (void *)h_close, (void **)&o_fsync };
	CHECK(patch_apply(s, K_N + 1) == -ENOTSUP, "%s", patch_error());
	fprintf(stderr, "  (refused: %s)\n", patch_error());
	CHECK(o_fsync == NULL, "orig set");
	expect_untouched();
	expect_patchable();
}

static void refuse_old_version(void)
{
	struct patch_site s[K_N];

	memcpy(s, sites, sizeof(sites));
	s[K_SPAWN].version = "GLIBC_2.2.5";	/* the compat body: push $2, not known */
	CHECK(patch_apply(s, K_N) == -ENOTSUP, "%s", patch_error());
	fprintf(stderr, "  (refused: %s)\n", patch_error());
	expect_untouched();
	expect_patchable();
}

static void refuse_bad_lists(void)
{
	static off64_t (*o_lseek2)(int, off64_t, int);
	struct patch_site s[K_N + 1];
	struct patch_site many[PATCH_MAX + 1];
	int i;

	memcpy(s, sites, sizeof(sites));
	s[K_N] = (struct patch_site){ "lseek", NULL, (void *)h_lseek, (void **)&o_lseek2 };
	CHECK(patch_apply(s, K_N + 1) == -EINVAL, "alias of lseek64: %s", patch_error());
	fprintf(stderr, "  (refused: %s)\n", patch_error());
	memcpy(s, sites, sizeof(sites));
	s[K_DUP3].handler = NULL;
	CHECK(patch_apply(s, K_N) == -EINVAL, "NULL handler: %s", patch_error());
	CHECK(patch_apply(sites, 0) == -EINVAL, "no sites: %s", patch_error());
	for (i = 0; i <= PATCH_MAX; i++)
		many[i] = sites[i % K_N];
	CHECK(patch_apply(many, PATCH_MAX + 1) == -EINVAL, "too many: %s", patch_error());
	expect_untouched();
	expect_patchable();
}

/* One byte of the last function's body differs: its +14 is add's immediate. */
static void refuse_changed_tail(void)
{
	uint8_t *at = entry(K_SPAWNP) + 14;

	CHECK(*at == 0x18, "posix_spawnp+14 is %#x", *at);
	poke(at, 0x19);
	snap_take(pristine);
	CHECK(patch_apply(sites, K_N) == -ENOTSUP, "%s", patch_error());
	fprintf(stderr, "  (refused: %s)\n", patch_error());
	expect_untouched();
}

/* One displaced byte of the first function differs: read's cmpb immediate. */
static void refuse_changed_entry(void)
{
	uint8_t *at = entry(K_READ) + 6;

	CHECK(*at == 0x00, "read+6 is %#x", *at);
	poke(at, 0x01);		/* still a working read: only its path choice flips */
	snap_take(pristine);
	CHECK(patch_apply(sites, K_N) == -ENOTSUP, "%s", patch_error());
	fprintf(stderr, "  (refused: %s)\n", patch_error());
	expect_untouched();
}

/* ---- after the patch ---------------------------------------------------------- */

static void t_entries(void)
{
	uint8_t now[K_N][SNAP];
	int k;

	snap_take(now);
	for (k = 0; k < K_N; k++) {
		void *o;

		memcpy(&o, sites[k].orig, sizeof(o));
		CHECK(now[k][0] == 0xe9 && memcmp(now[k] + 5, pristine[k] + 5, SNAP - 5) == 0,
		      "%s: entry is not one jmp rel32", kname[k]);
		CHECK(o && o != (void *)entry(k), "%s: no trampoline", kname[k]);
	}
}

/* Patching a patched function again is refused; the first patch stays. */
static void t_reapply(void)
{
	static ssize_t (*o2)(int, const void *, size_t);
	struct patch_site s = { "write", NULL, (void *)h_read, (void **)&o2 };
	int p[2];
	long n;

	CHECK(patch_apply(&s, 1) == -ENOTSUP, "%s", patch_error());
	CHECK(o2 == NULL, "orig set");
	xpipe(p);
	n = calls(K_WRITE, p[1]);
	CHECK(write(p[1], "ab", 2) == 2, "write");
	CHECK(calls(K_WRITE, p[1]) == n + 1 && calls(K_READ, p[1]) == 0, "counts");
	close(p[0]);
	close(p[1]);
}

/*
 * printf() a few million lines into a pipe read by a child: every byte
 * arrives, in order, and went through the handler, which saw as many calls as
 * the kernel counted write system calls.
 */
static void t_printf(void)
{
	enum { LINES = 2000000, LEN = 8 };
	long n0, b0, w0, w1, total = 0, got[2] = { 0, 0 }, i;
	int p[2], res[2], saved, st;
	pid_t pid;

	xpipe(p);
	xpipe(res);
	pid = fork();
	if (pid == 0) {		/* reader: check the sequence "%07ld\n" */
		static char buf[65536];
		long line = 0, col = 0, v = 0, ok = 1, n_bytes = 0;
		ssize_t n;

		close(p[1]);
		close(res[0]);
		while ((n = read(p[0], buf, sizeof(buf))) > 0) {
			for (i = 0; i < n; i++, col++) {
				if (col == LEN - 1) {
					ok &= buf[i] == '\n' && v == line;
					line++;
					col = -1;
					v = 0;
				} else {
					ok &= buf[i] >= '0' && buf[i] <= '9';
					v = v * 10 + (buf[i] - '0');
				}
			}
			n_bytes += n;
		}
		got[0] = n_bytes;
		got[1] = ok && col == 0 && line == LINES;
		_exit(write(res[1], got, sizeof(got)) == sizeof(got) ? 0 : 1);
	}
	close(p[0]);
	close(res[1]);
	fflush(stdout);
	saved = dup(1);
	dup2(p[1], 1);
	close(p[1]);
	n0 = calls(K_WRITE, 1);
	b0 = bytes(K_WRITE, 1);
	w0 = proc_io("syscw");
	for (i = 0; i < LINES; i++)
		total += printf("%07ld\n", i);
	fflush(stdout);
	w1 = proc_io("syscw");
	n0 = calls(K_WRITE, 1) - n0;
	b0 = bytes(K_WRITE, 1) - b0;
	dup2(saved, 1);		/* the pipe's last writer: the reader sees EOF */
	close(saved);
	CHECK(read(res[0], got, sizeof(got)) == sizeof(got), "no result from the reader");
	close(res[0]);
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader");
	CHECK(total == (long)LINES * LEN, "printf wrote %ld", total);
	CHECK(b0 == total, "the handler moved %ld of %ld bytes", b0, total);
	CHECK(got[0] == total && got[1] == 1, "the reader got %ld bytes, in order: %ld",
	      got[0], got[1]);
	CHECK(n0 > 0 && n0 >= total / 65536, "%ld handler calls", n0);
	if (w0 >= 0 && w1 >= 0)
		CHECK(w1 - w0 == n0, "kernel: %ld write calls, handler: %ld", w1 - w0, n0);
	else
		fprintf(stderr, "  (no /proc/self/io: write calls not compared with the kernel's)\n");
	fprintf(stderr, "  (%d printf calls, %ld bytes in %ld write calls)\n", LINES, total, n0);
}

/* fputs, fwrite, fflush, fclose on an fdopen()ed pipe. */
static void t_stdio_write(void)
{
	static char big[32768], back[sizeof(big) + 6];
	long n0, b0, c0, cn0;
	size_t i;
	int p[2];
	FILE *f;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + 3);
	xpipe(p);
	n0 = calls(K_WRITE, p[1]);
	b0 = bytes(K_WRITE, p[1]);
	c0 = calls(K_CLOSE, p[1]);
	cn0 = calls(K_CLOSE_NC, p[1]);
	f = fdopen(p[1], "w");
	CHECK(f && fputs("hello\n", f) >= 0, "fputs");
	CHECK(calls(K_WRITE, p[1]) == n0, "buffered bytes written early");
	CHECK(fflush(f) == 0 && calls(K_WRITE, p[1]) == n0 + 1 &&
	      bytes(K_WRITE, p[1]) == b0 + 6, "fflush: %ld calls", calls(K_WRITE, p[1]) - n0);
	CHECK(fwrite(big, 1, sizeof(big), f) == sizeof(big) && fflush(f) == 0, "fwrite");
	CHECK(bytes(K_WRITE, p[1]) == b0 + 6 + (long)sizeof(big), "fwrite: %ld bytes",
	      bytes(K_WRITE, p[1]) - b0);
	CHECK(fclose(f) == 0, "fclose");
	CHECK(calls(K_CLOSE_NC, p[1]) == cn0 + 1 && calls(K_CLOSE, p[1]) == c0,
	      "fclose: %ld __close_nocancel, %ld close", calls(K_CLOSE_NC, p[1]) - cn0,
	      calls(K_CLOSE, p[1]) - c0);
	for (i = 0; i < sizeof(back);) {
		ssize_t n = read(p[0], back + i, sizeof(back) - i);

		if (n <= 0)
			break;
		i += (size_t)n;
	}
	CHECK(i == sizeof(back) && !memcmp(back, "hello\n", 6) && !memcmp(back + 6, big, sizeof(big)),
	      "read back %zu bytes", i);
	CHECK(read(p[0], back, 1) == 0, "no EOF: the close did not happen");
	close(p[0]);
}

/* fgets, fread on an fdopen()ed pipe; then fclose. */
static void t_stdio_read(void)
{
	static char raw[3000], buf[4000];
	long n0, b0, cn0;
	size_t i;
	int p[2];
	FILE *f;

	for (i = 0; i < sizeof(raw); i++)
		raw[i] = (char)('a' + i % 26);
	xpipe(p);
	CHECK(write(p[1], "line one\nline two\n", 18) == 18 &&
	      write(p[1], raw, sizeof(raw)) == sizeof(raw), "write");
	close(p[1]);
	n0 = calls(K_READ, p[0]);
	b0 = bytes(K_READ, p[0]);
	cn0 = calls(K_CLOSE_NC, p[0]);
	f = fdopen(p[0], "r");
	CHECK(f && fgets(buf, sizeof(buf), f) && !strcmp(buf, "line one\n"), "fgets");
	CHECK(calls(K_READ, p[0]) > n0, "fgets did not reach read");
	CHECK(f && fgets(buf, sizeof(buf), f) && !strcmp(buf, "line two\n"), "fgets 2");
	CHECK(fread(buf, 1, sizeof(buf), f) == sizeof(raw) && !memcmp(buf, raw, sizeof(raw)),
	      "fread");
	CHECK(feof(f), "no EOF");
	CHECK(bytes(K_READ, p[0]) == b0 + 18 + (long)sizeof(raw), "read handler moved %ld bytes",
	      bytes(K_READ, p[0]) - b0);
	CHECK(fclose(f) == 0 && calls(K_CLOSE_NC, p[0]) == cn0 + 1, "fclose");
}

/* The nocancel bodies: stdio opened with "c", closedir, get_nprocs. */
static void t_nocancel(void)
{
	char path[] = "/tmp/check_patch.XXXXXX", buf[256];
	long rn0, r0, wn0, w0, cn0, all;
	int fd;
	FILE *f;
	DIR *d;

	f = fopen("/proc/self/status", "rce");
	CHECK(f != NULL, "fopen /proc/self/status: %s", strerror(errno));
	if (f) {
		fd = fileno(f);
		rn0 = calls(K_READ_NC, fd);
		r0 = calls(K_READ, fd);
		cn0 = calls(K_CLOSE_NC, fd);
		CHECK(fgets(buf, sizeof(buf), f) && !strncmp(buf, "Name:", 5), "fgets");
		CHECK(calls(K_READ_NC, fd) > rn0 && calls(K_READ, fd) == r0,
		      "%ld __read_nocancel, %ld read", calls(K_READ_NC, fd) - rn0,
		      calls(K_READ, fd) - r0);
		CHECK(fclose(f) == 0 && calls(K_CLOSE_NC, fd) == cn0 + 1, "fclose");
	}
	fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
	if (fd >= 0) {
		close(fd);
		f = fopen(path, "wce");
		CHECK(f != NULL, "fopen %s", path);
		if (f) {
			fd = fileno(f);
			wn0 = calls(K_WRITE_NC, fd);
			w0 = calls(K_WRITE, fd);
			cn0 = calls(K_CLOSE_NC, fd);
			CHECK(fputs("abc\n", f) >= 0 && fclose(f) == 0, "fputs, fclose");
			CHECK(calls(K_WRITE_NC, fd) == wn0 + 1 && calls(K_WRITE, fd) == w0 &&
			      calls(K_CLOSE_NC, fd) == cn0 + 1, "nocancel write and close");
		}
		unlink(path);
	}
	d = opendir("/proc/self/fd");
	CHECK(d != NULL, "opendir");
	if (d) {
		fd = dirfd(d);
		cn0 = calls(K_CLOSE_NC, fd);
		CHECK(readdir(d) != NULL && closedir(d) == 0, "readdir, closedir");
		CHECK(calls(K_CLOSE_NC, fd) == cn0 + 1, "closedir did not reach __close_nocancel");
	}
	all = calls(K_READ_NC, -1);
	CHECK(get_nprocs() >= 1, "get_nprocs");
	fprintf(stderr, "  (get_nprocs: %ld __read_nocancel calls inside libc)\n",
		calls(K_READ_NC, -1) - all);
}

/* lseek, fseek, ftell; 64-bit offsets. */
static void t_lseek(void)
{
	char path[] = "/tmp/check_patch.XXXXXX", data[100];
	long n0;
	int fd, i, p[2];
	FILE *f;

	for (i = 0; i < 100; i++)
		data[i] = (char)i;
	fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
	if (fd < 0)
		return;
	unlink(path);
	CHECK(write(fd, data, sizeof(data)) == sizeof(data), "write");
	n0 = calls(K_LSEEK, fd);
	CHECK(lseek(fd, 10, SEEK_SET) == 10 && calls(K_LSEEK, fd) == n0 + 1, "lseek");
	CHECK(lseek64(fd, (off64_t)5 << 30, SEEK_SET) == (off64_t)5 << 30, "lseek64 5 GiB");
	CHECK(o_lseek(fd, 0, SEEK_CUR) == (off64_t)5 << 30 && calls(K_LSEEK, fd) == n0 + 2,
	      "orig lseek");
	f = fdopen(fd, "r+");
	CHECK(f && fseek(f, 20, SEEK_SET) == 0 && calls(K_LSEEK, fd) > n0 + 2, "fseek");
	CHECK(f && fgetc(f) == 20 && ftell(f) == 21, "fgetc, ftell");
	n0 = calls(K_LSEEK, fd);
	CHECK(f && fseeko(f, -1, SEEK_END) == 0 && calls(K_LSEEK, fd) > n0, "fseeko");
	CHECK(f && fgetc(f) == 99 && ftello(f) == 100, "fgetc, ftello at the end");
	if (f)
		fclose(f);
	xpipe(p);
	n0 = calls(K_LSEEK, p[0]);
	errno = 0;
	CHECK(lseek(p[0], 0, SEEK_CUR) == -1 && errno == ESPIPE, "pipe: %s", strerror(errno));
	errno = 0;
	CHECK(o_lseek(p[0], 0, SEEK_CUR) == -1 && errno == ESPIPE, "orig pipe");
	CHECK(calls(K_LSEEK, p[0]) == n0 + 1, "counts");
	close(p[0]);
	close(p[1]);
}

static void t_closefrom(void)
{
	int fd = dup2(0, 901);

	CHECK(fd == 901, "dup2");
	CHECK(calls(K_CLOSE_RANGE, 901) == 0, "counted early");
	closefrom(901);
	CHECK(calls(K_CLOSE_RANGE, 901) == 1, "closefrom did not reach close_range");
	CHECK(fcntl(901, F_GETFD) == -1 && errno == EBADF, "not closed");
}

/* dup2, dup3, close_range, freopen (dup3 inside), closefrom (close_range inside). */
static void t_dup(void)
{
	long n;
	int fd, p[2];
	FILE *f;

	xpipe(p);
	n = calls(K_DUP2, 900);
	CHECK(dup2(p[0], 900) == 900 && calls(K_DUP2, 900) == n + 1, "dup2");
	n = calls(K_DUP3, 902);
	CHECK(dup3(p[0], 902, O_CLOEXEC) == 902 && calls(K_DUP3, 902) == n + 1, "dup3");
	CHECK(fcntl(902, F_GETFD) == FD_CLOEXEC, "dup3 O_CLOEXEC");
	n = calls(K_CLOSE_RANGE, 900);
	CHECK(close_range(900, 900, 0) == 0 && calls(K_CLOSE_RANGE, 900) == n + 1, "close_range");
	CHECK(fcntl(900, F_GETFD) == -1 && errno == EBADF, "close_range did not close");
	close(902);
	close(p[0]);
	close(p[1]);

	f = fopen("/dev/null", "r");
	CHECK(f != NULL, "fopen");
	if (f) {
		fd = fileno(f);
		n = calls(K_DUP3, fd);
		CHECK(freopen("/dev/zero", "r", f) == f && fileno(f) == fd, "freopen");
		CHECK(calls(K_DUP3, fd) == n + 1, "freopen did not reach dup3");
		CHECK(fgetc(f) == 0, "not /dev/zero");
		fclose(f);
	}
	CHECK(in_child(t_closefrom), "closefrom, in a child");
}

/* system(), popen() and posix_spawnp() reach the spawn handlers. */
static void t_spawn(void)
{
	char *argv[] = { "true", NULL }, buf[64];
	long s0, sp0, d0;
	int st;
	pid_t pid;
	FILE *f;

	s0 = calls(K_SPAWN, -1);
	st = system("exit 3");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "system: %#x", st);
	CHECK(calls(K_SPAWN, -1) == s0 + 1, "system did not reach posix_spawn");

	s0 = calls(K_SPAWN, -1);
	d0 = calls(K_DUP2, 1);
	f = popen("echo patched", "r");
	CHECK(f && fgets(buf, sizeof(buf), f) && !strcmp(buf, "patched\n"), "popen");
	CHECK(f && pclose(f) == 0, "pclose");
	CHECK(calls(K_SPAWN, -1) == s0 + 1, "popen did not reach posix_spawn");
	/* The spawned child shares our memory until execve: its dup2 counts here. */
	CHECK(calls(K_DUP2, 1) == d0 + 1, "dup2 in popen's child: %ld", calls(K_DUP2, 1) - d0);

	sp0 = calls(K_SPAWNP, -1);
	CHECK(posix_spawnp(&pid, "true", NULL, NULL, argv, environ) == 0, "posix_spawnp");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "true");
	CHECK(calls(K_SPAWNP, -1) == sp0 + 1, "posix_spawnp not counted");

	s0 = calls(K_SPAWN, -1);
	CHECK(posix_spawn(&pid, "/nonexistent/x", NULL, NULL, argv, environ) == ENOENT,
	      "posix_spawn of nothing");
	CHECK(o_spawn(&pid, "/nonexistent/x", NULL, NULL, argv, environ) == ENOENT,
	      "orig posix_spawn of nothing");
	CHECK(calls(K_SPAWN, -1) == s0 + 1, "counts");
}

/*
 * Failing and succeeding calls give the same return value and errno through
 * the handler and through orig, and orig never reaches a handler.
 */
static void t_errno(void)
{
	long all[K_N];
	char c = 0;
	int k, p[2], q[2];
	void (*old)(int);
	FILE *f;

#define SAME(call, want_ret, want_errno) do {					\
	errno = 0;								\
	long r_ = (long)(call);							\
	int e_ = errno;								\
	CHECK(r_ == (long)(want_ret) && e_ == (want_errno), "%s: %ld, %s",	\
	      #call, r_, strerror(e_));						\
} while (0)

	for (k = 0; k < K_N; k++)
		all[k] = calls(k, -1);
	xpipe(p);
	SAME(write(-1, "x", 1), -1, EBADF);
	SAME(o_write(-1, "x", 1), -1, EBADF);
	SAME(o_write_nc(-1, "x", 1), -1, EBADF);
	SAME(read(-1, &c, 1), -1, EBADF);
	SAME(o_read(-1, &c, 1), -1, EBADF);
	SAME(o_read_nc(-1, &c, 1), -1, EBADF);
	SAME(close(-1), -1, EBADF);
	SAME(o_close(-1), -1, EBADF);
	SAME(o_close_nc(-1), -1, EBADF);
	SAME(lseek(-1, 0, SEEK_SET), -1, EBADF);
	SAME(o_lseek(p[0], 0, SEEK_SET), -1, ESPIPE);
	SAME(dup2(-1, 5), -1, EBADF);
	SAME(o_dup2(-1, 5), -1, EBADF);
	SAME(dup3(p[0], p[0], 0), -1, EINVAL);
	SAME(o_dup3(p[0], p[0], 0), -1, EINVAL);
	SAME(dup3(p[0], 903, 0x4000), -1, EINVAL);
	SAME(close_range(10, 5, 0), -1, EINVAL);
	SAME(o_close_range(10, 5, 0), -1, EINVAL);

	/* EAGAIN on an empty nonblocking pipe */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	SAME(read(p[0], &c, 1), -1, EAGAIN);
	SAME(o_read(p[0], &c, 1), -1, EAGAIN);
	SAME(o_read_nc(p[0], &c, 1), -1, EAGAIN);

	/* success leaves errno alone */
	errno = 4242;
	CHECK(write(p[1], "yz", 2) == 2 && errno == 4242, "write");
	CHECK(o_write(p[1], "w", 1) == 1 && o_write_nc(p[1], "v", 1) == 1 && errno == 4242,
	      "orig write");
	CHECK(read(p[0], &c, 1) == 1 && c == 'y' && errno == 4242, "read");
	CHECK(o_read(p[0], &c, 1) == 1 && c == 'z' && o_read_nc(p[0], &c, 1) == 1 && c == 'w' &&
	      errno == 4242, "orig read");
	CHECK(dup2(p[0], 903) == 903 && o_dup2(p[0], 904) == 904 && o_dup3(p[0], 905, 0) == 905 &&
	      close(903) == 0 && o_close(904) == 0 && o_close_nc(905) == 0 &&
	      o_close_range(906, 910, 0) == 0 && errno == 4242, "dup, close");

	CHECK(calls(K_READ, -1) - all[K_READ] == 3, "read: %ld", calls(K_READ, -1) - all[K_READ]);
	CHECK(calls(K_CLOSE, -1) - all[K_CLOSE] == 2, "close: %ld", calls(K_CLOSE, -1) - all[K_CLOSE]);
	CHECK(calls(K_CLOSE_NC, -1) == all[K_CLOSE_NC], "orig reached __close_nocancel's handler");
	CHECK(calls(K_DUP2, -1) - all[K_DUP2] == 2 && calls(K_DUP3, -1) - all[K_DUP3] == 2 &&
	      calls(K_CLOSE_RANGE, -1) - all[K_CLOSE_RANGE] == 1 &&
	      calls(K_LSEEK, -1) - all[K_LSEEK] == 1, "dup2, dup3, close_range, lseek");
	CHECK(calls(K_READ_NC, -1) == all[K_READ_NC] && calls(K_WRITE_NC, -1) == all[K_WRITE_NC],
	      "orig reached a nocancel handler");

	/* EPIPE with SIGPIPE ignored: directly and through stdio */
	old = signal(SIGPIPE, SIG_IGN);
	xpipe(q);
	close(q[0]);
	SAME(write(q[1], "x", 1), -1, EPIPE);
	SAME(o_write(q[1], "x", 1), -1, EPIPE);
	SAME(o_write_nc(q[1], "x", 1), -1, EPIPE);
	CHECK(calls(K_WRITE, -1) - all[K_WRITE] == 3, "write: %ld", calls(K_WRITE, -1) - all[K_WRITE]);
	f = fdopen(q[1], "w");
	CHECK(f && fputs("x", f) >= 0, "fputs");
	errno = 0;
	CHECK(f && fflush(f) == EOF && errno == EPIPE && ferror(f), "fflush: %s", strerror(errno));
	CHECK(calls(K_WRITE, -1) - all[K_WRITE] == 4 && calls(K_CLOSE, -1) - all[K_CLOSE] == 3,
	      "fflush's write, close of the reader");
	if (f)
		fclose(f);
	signal(SIGPIPE, old);

	close(p[0]);
	close(p[1]);
#undef SAME
}

/* ---- cancellation ------------------------------------------------------------- */

enum bmode { B_READ, B_WRITE, B_FGETS, B_ORIG_READ };

struct blocked {
	enum bmode mode;
	int fd;
	FILE *f;
	atomic_int cleaned;	/* set by the cancellation clean-up handler */
};

static void blocked_cleanup(void *arg)
{
	atomic_store(&((struct blocked *)arg)->cleaned, 1);
}

static void *blocked_thread(void *arg)
{
	struct blocked *b = arg;
	static char buf[65536];
	char line[16];

	pthread_cleanup_push(blocked_cleanup, b);
	switch (b->mode) {
	case B_READ:
		read(b->fd, buf, 1);
		break;
	case B_WRITE:
		write(b->fd, buf, sizeof(buf));
		break;
	case B_FGETS:
		fgets(line, sizeof(line), b->f);
		break;
	case B_ORIG_READ:
		o_read(b->fd, buf, 1);
		break;
	}
	pthread_cleanup_pop(0);
	return NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* A thread blocked in a patched call ends with pthread_cancel. */
static void cancel_one(enum bmode mode, const char *what)
{
	struct blocked b = { .mode = mode };
	struct timespec until;
	enum kind k = mode == B_WRITE ? K_WRITE : K_READ;
	void *ret = NULL;
	pthread_t t;
	int p[2], i, err;
	long n0;

	xpipe(p);
	b.fd = mode == B_WRITE ? p[1] : p[0];
	if (mode == B_WRITE) {		/* fill the pipe */
		static char fill[4096];

		fcntl(p[1], F_SETFL, O_NONBLOCK);
		while (write(p[1], fill, sizeof(fill)) > 0)
			;
		fcntl(p[1], F_SETFL, 0);
	}
	if (mode == B_FGETS)
		b.f = fdopen(p[0], "r");
	n0 = calls(k, b.fd);
	if (pthread_create(&t, NULL, blocked_thread, &b)) {
		CHECK(0, "pthread_create");
		return;
	}
	/* Wait until it is inside the handler (orig: give it time), then a bit more. */
	for (i = 0; i < 5000 && mode != B_ORIG_READ && calls(k, b.fd) == n0; i++)
		sleep_ms(1);
	sleep_ms(mode == B_ORIG_READ ? 100 : 20);
	pthread_cancel(t);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	err = pthread_timedjoin_np(t, &ret, &until);
	if (err) {		/* unblock it, so that the test ends */
		CHECK(0, "%s: still blocked 5 s after pthread_cancel", what);
		signal(SIGPIPE, SIG_IGN);
		close(p[1]);
		close(p[0]);
		pthread_join(t, &ret);
		return;
	}
	CHECK(ret == PTHREAD_CANCELED, "%s: not cancelled", what);
	CHECK(atomic_load(&b.cleaned) == 1, "%s: clean-up handler did not run", what);
	CHECK(mode == B_ORIG_READ || calls(k, b.fd) == n0 + 1, "%s: not through the handler", what);
	if (b.f)
		fclose(b.f);
	else
		close(p[0]);
	close(p[1]);
}

static void t_cancel(void)
{
	cancel_one(B_READ, "read");
	cancel_one(B_WRITE, "write");
	cancel_one(B_FGETS, "fgets");
	cancel_one(B_ORIG_READ, "orig read");
}

/* ---- threads and fork ----------------------------------------------------------- */

enum { THREADS = 4, ROUNDS = 10000 };

static void *busy_thread(void *arg)
{
	char buf[16] = "0123456789abcde", zero[16];
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int zfd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	FILE *f = fdopen(dup(fd), "w");
	long w0, wb0, fw0, r0, i;
	bool ok = fd >= 0 && zfd >= 0 && f && fd < NFD && zfd < NFD && fileno(f) < NFD;

	if (ok) {
		setvbuf(f, NULL, _IONBF, 0);
		w0 = calls(K_WRITE, fd);
		wb0 = bytes(K_WRITE, fd);
		fw0 = calls(K_WRITE, fileno(f));
		r0 = calls(K_READ, zfd);
		for (i = 0; i < ROUNDS; i++) {
			ok &= write(fd, buf, 16) == 16;
			ok &= fputs(buf, f) >= 0;
			ok &= read(zfd, zero, sizeof(zero)) == sizeof(zero);
		}
		ok &= calls(K_WRITE, fd) - w0 == ROUNDS && bytes(K_WRITE, fd) - wb0 == 16L * ROUNDS &&
		      calls(K_WRITE, fileno(f)) - fw0 == ROUNDS && calls(K_READ, zfd) - r0 == ROUNDS;
	}
	if (f)
		fclose(f);
	close(fd);
	close(zfd);
	*(bool *)arg = ok;
	return NULL;
}

static void t_threads(void)
{
	pthread_t t[THREADS];
	bool ok[THREADS];
	long w0 = calls(K_WRITE, -1);
	int i;

	for (i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, busy_thread, &ok[i]) == 0, "pthread_create");
	for (i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		CHECK(ok[i], "thread %d: counts or results wrong", i);
	}
	CHECK(calls(K_WRITE, -1) - w0 >= 2L * THREADS * ROUNDS, "write calls: %ld",
	      calls(K_WRITE, -1) - w0);
}

static void fork_child(void)
{
	int p[2];
	char buf[8];
	FILE *f;

	xpipe(p);
	CHECK(write(p[1], "abc", 3) == 3 && read(p[0], buf, 3) == 3, "pipe");
	CHECK(calls(K_WRITE, p[1]) >= 1 && calls(K_READ, p[0]) >= 1, "not counted after fork");
	f = fdopen(p[1], "w");
	CHECK(f && fputs("def", f) >= 0 && fclose(f) == 0, "stdio");
	CHECK(calls(K_CLOSE_NC, p[1]) >= 1, "fclose not counted after fork");
	CHECK(read(p[0], buf, 8) == 3 && read(p[0], buf, 8) == 0, "data, EOF");
}

static void t_fork(void)
{
	CHECK(in_child(fork_child), "the child failed");
}

/* ---- main ----------------------------------------------------------------------- */

static void probe_child(void)
{
	int err = patch_apply(sites, K_N);

	if (err == -ENOTSUP) {
		fprintf(stderr, "SKIP: this libc (%s) is not one patch.c knows: %s\n",
			gnu_get_libc_version(), patch_error());
		expect_untouched();
		_exit(failures ? 1 : 77);
	}
	CHECK(err == 0, "patch_apply: %d, %s", err, patch_error());
}

int main(void)
{
	int st;
	pid_t pid;

	fprintf(stderr, "check_patch: glibc %s, %s build\n", gnu_get_libc_version(), BUILD);
	snap_take(pristine);
#if !defined(__x86_64__)
	CHECK(patch_apply(sites, K_N) == -ENOTSUP, "not refused on this architecture");
	expect_untouched();
	if (failures)
		return 1;
	fprintf(stderr, "SKIP: not x86-64: patch.c refuses (%s), as it must\n", patch_error());
	return 77;
#endif
	/* Can this libc be patched at all?  Asked in a child: a patch is for good. */
	pid = fork();
	if (pid == 0) {
		probe_child();
		_exit(failures ? 1 : 0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return 1;
	if (WEXITSTATUS(st) != 0)
		return WEXITSTATUS(st);

	run_child("refuse an unknown name, nothing changed", refuse_unknown_name);
	run_child("refuse an unknown version, nothing changed", refuse_old_version);
	run_child("refuse bad lists, nothing changed", refuse_bad_lists);
	run_child("refuse a changed byte in the last function's body", refuse_changed_tail);
	run_child("refuse a changed displaced byte of the first function", refuse_changed_entry);

	if (patch_apply(sites, K_N)) {
		fprintf(stderr, "FAIL: patch_apply: %s\n", patch_error());
		return 1;
	}
	run("entries are jumps, trampolines set", t_entries);
	run("no second patch over the first", t_reapply);
	run("printf into a pipe: every byte through the handler", t_printf);
	run("fputs, fwrite, fflush, fclose", t_stdio_write);
	run("fgets, fread, fclose", t_stdio_read);
	run("nocancel: fopen \"c\", closedir, get_nprocs", t_nocancel);
	run("lseek, fseek, ftell", t_lseek);
	run("dup2, dup3, close_range, freopen, closefrom", t_dup);
	run("system, popen, posix_spawnp", t_spawn);
	run("errno and results, one thread", t_errno);
	run("pthread_cancel of blocked read, write, fgets", t_cancel);
	run("threads at once", t_threads);
	run("errno and results, after threads", t_errno);
	run("after fork", t_fork);
	if (failures) {
		fprintf(stderr, "FAIL: %d check(s)\n", failures);
		return 1;
	}
	fprintf(stderr, "ok - all\n");
	return 0;
}
