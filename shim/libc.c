/*
 * libc.c - libc's own entry points: stdio and other parts of libc call its
 * internal write, read, close, lseek, dup2 and posix_spawn (and their
 * _nocancel forms) directly, never through symbols the shim interposes.
 *
 * When the first channel end comes into the process (made, inherited or
 * received; a process that never has one pays nothing), libc's streams are
 * pointed at the shim through their tables (stdio.c): one page of data
 * changes.  The rest of libc that works on descriptors by itself (system,
 * popen, wordexp, freopen, daemon, login_tty, forkpty, closefrom) is
 * reached when such a function is first called with an end in the process:
 * then patch.c redirects the entries of libc's internal functions to the
 * shim's handlers, and the real table points at the originals.  Where
 * stdio.c does not know the tables, patch.c does all of it at the first end.
 * Where neither knows the libc build, nothing changes, and libc's own I/O on
 * a channel goes through the daemon (slower, same bytes).
 *
 * patch.c changes each entry with one atomic write, so threads already
 * running are safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <utmp.h>
#include <wordexp.h>

#include "patch.h"
#include "shim.h"

/* The shim's exported entry points serve as handlers where they fit. */
ssize_t read(int fd, void *buf, size_t len);
ssize_t write(int fd, const void *buf, size_t len);
int close(int fd);
off64_t lseek64(int fd, off64_t off, int whence);
int dup2(int old, int new);
int dup3(int old, int new, int flags);
int close_range(unsigned first, unsigned last, int flags);
int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		const posix_spawnattr_t *attr, char *const argv[], char *const envp[]);
int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		 const posix_spawnattr_t *attr, char *const argv[], char *const envp[]);

/* The _nocancel forms: as the cancellable ones, with their own originals. */
static ssize_t read_nocancel(int fd, void *buf, size_t len)
{
	return fdtab_has(fd) ? read(fd, buf, len) : real.read_nocancel(fd, buf, len);
}

static ssize_t write_nocancel(int fd, const void *buf, size_t len)
{
	return fdtab_has(fd) ? write(fd, buf, len) : real.write_nocancel(fd, buf, len);
}

static int close_nocancel(int fd)
{
	return shim_close_fd(fd, real.close_nocancel);
}

static bool patch_libc(void)
{
	struct patch_site sites[] = {
		{ "read", NULL, (void *)read, (void **)&real.read },
		{ "write", NULL, (void *)write, (void **)&real.write },
		{ "close", NULL, (void *)close, (void **)&real.close },
		{ "__read_nocancel", NULL, (void *)read_nocancel, (void **)&real.read_nocancel },
		{ "__write_nocancel", NULL, (void *)write_nocancel, (void **)&real.write_nocancel },
		{ "__close_nocancel", NULL, (void *)close_nocancel, (void **)&real.close_nocancel },
		{ "lseek64", NULL, (void *)lseek64, (void **)&real.lseek64 },
		{ "dup2", NULL, (void *)dup2, (void **)&real.dup2 },
		{ "dup3", NULL, (void *)dup3, (void **)&real.dup3 },
		{ "close_range", NULL, (void *)close_range, (void **)&real.close_range },
		{ "posix_spawn", NULL, (void *)posix_spawn, (void **)&real.posix_spawn },
		{ "posix_spawnp", NULL, (void *)posix_spawnp, (void **)&real.posix_spawnp },
	};
	int r;

	if (!real.read_nocancel || !real.write_nocancel || !real.close_nocancel) {
		shim_log("libc has no _nocancel entries: its own I/O goes through the daemon");
		return false;
	}
	r = patch_apply(sites, sizeof(sites) / sizeof(sites[0]));
	if (r) {
		shim_log("libc's own I/O is not reached (%s): it goes through the daemon",
			 patch_error());
		return false;
	}
	/* lseek and lseek64 are one body here. */
	real.lseek = (off_t (*)(int, off_t, int))real.lseek64;
	shim_log("libc's own I/O reaches the shim (its entries patched)");
	return true;
}

/* Whether the streams are reached through their tables, libc's code
 * patched later, when a function below first needs it. */
static bool by_tables;
static struct shim_once whole_once = SHIM_ONCE_INIT;

static void whole(void)
{
	(void)patch_libc();	/* if not, those functions go around the shim */
}

void shim_libc_whole(void)
{
	if (by_tables && fdtab_any() && !shim_in_vfork_child())
		shim_once(&whole_once, whole);
}

static void reach_libc(void)
{
	if (!shim_patch_text && shim_stdio_hook()) {
		by_tables = true;
		shim_patched = true;
		shim_log("libc's streams reach the shim (their tables)");
		return;
	}
	shim_patched = patch_libc();
}

static struct shim_once first_once = SHIM_ONCE_INIT;

static void first_end(void)
{
	if (shim_patch_wanted)
		reach_libc();
	/* The rings' lock owner, asked now: a forked child then only asks
	 * the kernel again, and registers nothing. */
	(void)ipcd_tid();
	shim_user_objects();
}

void shim_first_end(void)
{
	if (!shim_in_vfork_child())
		shim_once(&first_once, first_end);
}

/*
 * The functions of libc that dup, close or spawn on descriptors inside
 * libc: each makes libc's entries reach the shim (once, and only with an
 * end in the process) before it runs.
 */
static void *next_once(void **slot, const char *name)
{
	void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (!f) {
		f = shim_next_sym(name);
		__atomic_store_n(slot, f, __ATOMIC_RELEASE);
	}
	return f;
}

/* fn: libc's function name, found once (any thread may be first). */
#define NEXT(fn, name) ((fn) = (__typeof__(fn))next_once(&fn##_at, name))

SHIM_API int system(const char *cmd)
{
	static void *fn_at;
	int (*fn)(const char *);

	NEXT(fn, "system");
	if (!fn)
		return errno = ENOSYS, -1;
	shim_libc_whole();
	return fn(cmd);
}

SHIM_API FILE *popen(const char *cmd, const char *mode)
{
	static void *fn_at;
	FILE *(*fn)(const char *, const char *);

	NEXT(fn, "popen");
	if (!fn)
		return errno = ENOSYS, NULL;
	shim_libc_whole();
	return fn(cmd, mode);
}

SHIM_API int wordexp(const char *words, wordexp_t *we, int flags)
{
	static void *fn_at;
	int (*fn)(const char *, wordexp_t *, int);

	NEXT(fn, "wordexp");
	if (!fn)
		return WRDE_NOSPACE;
	shim_libc_whole();
	return fn(words, we, flags);
}

/* freopen and freopen64 (one prototype): libc's `name`, found in *at. */
static FILE *reopen(void **at, const char *name, const char *path, const char *mode,
		    FILE *fp)
{
	FILE *(*fn)(const char *, const char *, FILE *) =
		(FILE *(*)(const char *, const char *, FILE *))next_once(at, name);

	if (!fn)
		return errno = ENOSYS, NULL;
	shim_libc_whole();
	return fn(path, mode, fp);
}

SHIM_API FILE *freopen(const char *path, const char *mode, FILE *fp)
{
	static void *at;

	return reopen(&at, "freopen", path, mode, fp);
}

SHIM_API FILE *freopen64(const char *path, const char *mode, FILE *fp)
{
	static void *at;

	return reopen(&at, "freopen64", path, mode, fp);
}

SHIM_API int daemon(int nochdir, int noclose)
{
	static void *fn_at;
	int (*fn)(int, int);

	NEXT(fn, "daemon");
	if (!fn)
		return errno = ENOSYS, -1;
	shim_libc_whole();
	return fn(nochdir, noclose);
}

SHIM_API int login_tty(int fd)
{
	static void *fn_at;
	int (*fn)(int);

	NEXT(fn, "login_tty");
	if (!fn)
		return errno = ENOSYS, -1;
	shim_libc_whole();
	return fn(fd);
}

SHIM_API pid_t forkpty(int *amaster, char *name, const struct termios *tio,
		       const struct winsize *ws)
{
	static void *fn_at;
	pid_t (*fn)(int *, char *, const struct termios *, const struct winsize *);

	NEXT(fn, "forkpty");
	if (!fn)
		return errno = ENOSYS, -1;
	shim_libc_whole();
	return fn(amaster, name, tio, ws);
}

SHIM_API void closefrom(int low)
{
	static void *fn_at;
	void (*fn)(int);

	NEXT(fn, "closefrom");
	shim_libc_whole();
	if (fn)
		fn(low);
	else
		close_range((unsigned)low, ~0u, 0);
}
