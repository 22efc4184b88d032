/*
 * inherit.c - what a program finds when it starts: the channel ends among
 * its descriptors, its parent's connections to the pair factory, and the
 * numbers of the holders protocol (hold.c).
 *
 * A process with the shim that runs a program (execve and its relatives,
 * posix_spawn) tells it in IPCD_SHIM_FDS:
 *
 *	IPCD_SHIM_FDS=<how><pid>;<me>;<parent>;<supplies>;<fds>;<lineage>
 *
 * <how> is e for an execve by process <pid>, s for a child spawned by
 * process <pid>; <me> and <parent> are holder numbers in hexadecimal (0:
 * none); <supplies> lists kind/fd/inode of each factory connection the
 * program inherits, comma-separated; <fds> lists the descriptors that may
 * be channel ends, comma-separated.  The list may name more descriptors
 * than are ends (each is checked) but never fewer.  <lineage> lists, in
 * hexadecimal, the keys of the program that runs this one and of up to
 * two that ran it in turn (sites.c, "programs that need no shim").  A
 * list meant for another process (the pid is not ours, or for a spawn not
 * our parent's) is ignored.  The variable is taken out of the environment before the
 * program's own code runs.  Without it the shim reads /proc/self/fd, which
 * costs more than the rest of its start, and makes its own connections
 * when it first needs a pair (not at start: the daemon would make pairs
 * for every such program, 1.2 ms of its time each, measured, when most of
 * them make no channel).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

#define HINT_VAR	"IPCD_SHIM_FDS"
#define HINT_LEN	(sizeof(HINT_VAR) - 1)
#define SUPPLIES	8

/* ---- in the program that starts ---------------------------------------------- */

/* A number in base 10 or 16 (lower case) at *p, moved past it; by hand, as
 * this runs in the shim's start, before other libraries may be ready. */
static bool parse_u64(const char **p, int base, uint64_t *v)
{
	const char *c = *p;
	uint64_t x = 0;
	int dig;

	for (;; c++) {
		if (*c >= '0' && *c <= '9')
			dig = *c - '0';
		else if (base == 16 && *c >= 'a' && *c <= 'f')
			dig = *c - 'a' + 10;
		else
			break;
		x = x * (uint64_t)base + (uint64_t)dig;
	}
	if (c == *p)
		return false;
	*v = x;
	*p = c;
	return true;
}

/* Adopt each fd of "<fd>,<fd>,..." up to ';' or the end; then take the
 * lineage ";<key>,<key>..." if it follows. */
static void adopt_list(const char *p)
{
	uint64_t fd, up[PROG_LINEAGE];
	unsigned n = 0;

	while (parse_u64(&p, 10, &fd)) {
		if (fd <= INT32_MAX)
			shim_adopt_fd((int)fd, "inherited", 0);	/* past exec: not cloexec */
		if (*p == ',')
			p++;
	}
	if (*p++ != ';')
		return;
	while (n < PROG_LINEAGE - 1 && parse_u64(&p, 16, &up[n])) {
		n++;
		if (*p == ',')
			p++;
	}
	shim_prog_lineage(up, n);
}

/* Take the connections of "<kind>/<fd>/<ino>,..." up to ';'. */
static void adopt_supplies(const char **p)
{
	uint64_t k, fd, ino;

	while (parse_u64(p, 10, &k) && **p == '/' && (++*p, parse_u64(p, 10, &fd)) &&
	       **p == '/' && (++*p, parse_u64(p, 10, &ino))) {
		if (fd <= INT32_MAX)
			shim_supply_adopt((unsigned)k, (int)fd, ino);
		if (**p == ',')
			++*p;
	}
}

/* Whether the list in v was meant for this process; then take what it
 * gives but the fds, and leave *rest at them. */
static bool hint_take(const char *v, const char **rest)
{
	const char *p = v + 1;
	uint64_t pid, me, par;

	if ((v[0] != 'e' && v[0] != 's') || !parse_u64(&p, 10, &pid) || *p++ != ';' ||
	    !parse_u64(&p, 16, &me) || *p++ != ';' || !parse_u64(&p, 16, &par) ||
	    *p++ != ';')
		return false;
	if (v[0] == 'e' ? pid != (uint64_t)syscall(SYS_getpid) : pid != (uint64_t)getppid())
		return false;
	hold_set_ids(me, par);
	adopt_supplies(&p);
	if (*p++ != ';')
		return false;
	*rest = p;
	return true;
}

static void scan_proc(void)
{
	char buf[4096];
	long n;
	int d = real.open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (d < 0)
		return;
	while ((n = syscall(SYS_getdents64, d, buf, sizeof(buf))) > 0) {
		long off = 0;

		while (off < n) {
			struct dirent64 *de = (struct dirent64 *)(buf + off);
			const char *p = de->d_name;
			uint64_t fd;

			off += de->d_reclen;
			if (parse_u64(&p, 10, &fd) && !*p && fd <= INT32_MAX && (int)fd != d)
				shim_adopt_fd((int)fd, "inherited", 0);
		}
	}
	real.close(d);
}

void shim_adopt_inherited(void)
{
	const char *v = getenv(HINT_VAR), *list;

	if (v && hint_take(v, &list)) {
		adopt_list(list);
	} else {
		if (v)
			shim_log("%s is not for this process: reading /proc/self/fd", HINT_VAR);
		scan_proc();
	}
	if (v)
		unsetenv(HINT_VAR);
}

/* ---- in the process that runs a program ------------------------------------- */

/*
 * A vfork child shares our table but must not change it: the ends it dup2s
 * onto other numbers before it runs a program are noted here instead (per
 * thread, as a vfork child runs on its parent's thread), for its list.
 */
#define VFORK_DUPS	16
static __thread int vfork_dups[VFORK_DUPS] __attribute__((tls_model("initial-exec")));
static __thread int vfork_ndups __attribute__((tls_model("initial-exec")));	/* > VFORK_DUPS: too many to list */

void shim_vfork_reset(void)
{
	vfork_ndups = 0;
}

void shim_vfork_dup(int newfd)
{
	if (newfd < 0 || vfork_ndups >= VFORK_DUPS) {
		vfork_ndups = VFORK_DUPS + 1;
		return;
	}
	vfork_dups[vfork_ndups++] = newfd;
}

/*
 * The list is written by hand rather than with snprintf: a child between
 * fork and exec runs it, and each page of libc's formatting code it would
 * touch costs that child a page fault, for a string of a few numbers.
 */
struct hint {
	char *p, *end;		/* the next byte; the end of the buffer */
	bool full;
};

static void hint_char(struct hint *h, char c)
{
	if (h->p + 1 >= h->end)	/* room for the terminating NUL */
		h->full = true;
	if (h->full)
		return;
	*h->p++ = c;
	*h->p = '\0';
}

/* v in base 10 or 16 (lower case), no leading zeros. */
static void hint_num(struct hint *h, uint64_t v, unsigned base)
{
	char d[20];
	int n = 0;

	do {
		d[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		hint_char(h, d[--n]);
}

static void hint_add(struct hint *h, int fd)
{
	if (h->p[-1] != ';')
		hint_char(h, ',');
	hint_num(h, (uint64_t)fd, 10);
}

static void hint_each(int fd, struct sfd *s, void *arg)
{
	(void)s;
	hint_add(arg, fd);
}

/*
 * glibc's posix_spawn_file_actions_t (2.36): the used count, then the
 * array of 32-byte actions, each its tag and, 8 bytes in, for a dup2 the
 * source and target descriptors, for an open the target.  Checked once
 * against an action made here.
 */
struct fa_view {
	int allocated, used;
	const unsigned char *actions;
};
#define FA_SIZE	32

static int fa_layout_ok(void)
{
	static int ok = -1;
	posix_spawn_file_actions_t fa;
	const struct fa_view *v = (const void *)&fa;
	int tag, fds[2];

	if (ok >= 0)
		return ok;
	ok = 0;
	if (posix_spawn_file_actions_init(&fa))
		return ok;
	if (posix_spawn_file_actions_adddup2(&fa, 7, 9) == 0 && v->used == 1) {
		memcpy(&tag, v->actions, sizeof(tag));
		memcpy(fds, v->actions + 8, sizeof(fds));
		ok = tag == SHIM_FA_DUP2 && fds[0] == 7 && fds[1] == 9;
	}
	posix_spawn_file_actions_destroy(&fa);
	return ok;
}

bool shim_fa_each(const posix_spawn_file_actions_t *fa,
		  bool (*fn)(int tag, const int fds[2], void *arg), void *arg)
{
	const struct fa_view *v = (const void *)fa;
	int i, tag, fds[2];

	if (!fa_layout_ok())
		return false;
	for (i = 0; i < v->used; i++) {
		const unsigned char *a = v->actions + (size_t)i * FA_SIZE;

		memcpy(&tag, a, sizeof(tag));
		memcpy(fds, a + 8, sizeof(fds));
		if (tag < 0 || tag > SHIM_FA_LAST || !fn(tag, fds, arg))
			return false;
	}
	return true;
}

/* The descriptors a child gets from its file actions may be channel ends. */
static bool hint_action(int tag, const int fds[2], void *arg)
{
	if (tag == SHIM_FA_DUP2)
		hint_add(arg, fds[1]);
	else if (tag == SHIM_FA_OPEN)
		hint_add(arg, fds[0]);
	return true;
}

/*
 * The next library named by an LD_PRELOAD value at *p, moved past it: its
 * start, its length in *len, and in *us whether it is this shim; NULL at
 * the end.  By hand: a child between fork and exec runs it, and each page
 * of libc it touches that the child had not (strstr's) is a fault.
 */
static const char *preload_next(const char **p, size_t *len, bool *us)
{
	const char *self = shim_self_name(), *c = *p, *tok, *base;
	size_t n = strlen(self);

	while (*c == ' ' || *c == ':')
		c++;
	if (!*c)
		return NULL;
	for (tok = base = c; *c && *c != ' ' && *c != ':'; c++)
		if (*c == '/')
			base = c + 1;
	*len = (size_t)(c - tok);
	*us = n && (size_t)(c - base) == n && !memcmp(base, self, n);
	*p = c;
	return tok;
}

/* Whether environment entry e is LD_PRELOAD naming this shim. */
static bool preloads_us(const char *e)
{
	const char *p = e + 11;
	size_t len;
	bool us;

	if (!has_prefix(e, "LD_PRELOAD="))
		return false;
	while (preload_next(&p, &len, &us))
		if (us)
			return true;
	return false;
}

size_t shim_env_len(char *const envp[])
{
	size_t n = 0;

	while (envp && envp[n])
		n++;
	return n;
}

/* Whether any end of ours goes along into a program run. */
struct along {
	bool any;
};

static void along_each(int fd, struct sfd *s, void *arg)
{
	(void)s;
	if (!fdtab_cloexec(fd))
		((struct along *)arg)->any = true;
}

static bool along_action(int tag, const int fds[2], void *arg)
{
	/* An end dup2'd into the child, or a file opened there (which may
	 * be a channel: its name is not to be had). */
	if ((tag == SHIM_FA_DUP2 && fdtab_has(fds[0])) || tag == SHIM_FA_OPEN)
		((struct along *)arg)->any = true;
	return true;
}

/* Whether the program run gets a channel end from us. */
static bool ends_go_along(const posix_spawn_file_actions_t *fa)
{
	struct along a = { false };

	if (fdtab_any())
		fdtab_each(along_each, &a);
	if (fa && !shim_fa_each(fa, along_action, &a))
		return true;
	if (shim_in_vfork_child() && vfork_ndups)
		return true;
	return a.any;
}

/*
 * The LD_PRELOAD entry e without this shim, into buf: "" if nothing else
 * is left (the entry goes), NULL if it does not fit.
 */
static const char *without_us(const char *e, char *buf, size_t size)
{
	const char *p = e + 11, *tok;
	size_t at = 11, len;
	bool us;

	if (size < 12)
		return NULL;
	memcpy(buf, "LD_PRELOAD=", 11);
	while ((tok = preload_next(&p, &len, &us))) {
		if (us)
			continue;
		if (at + len + 2 > size)
			return NULL;
		if (at > 11)
			buf[at++] = ':';
		memcpy(buf + at, tok, len);
		at += len;
	}
	buf[at] = '\0';
	return at > 11 ? buf : "";
}

char *const *shim_exec_env(char *const envp[], char *const argv[], char **slots, char *buf,
			   size_t size, const posix_spawn_file_actions_t *fa, bool spawn,
			   bool *pass)
{
	const char *pre = NULL, *e;
	const uint64_t *up;
	unsigned kinds[SUPPLIES];
	int sfds[SUPPLIES], ns;
	uint64_t inos[SUPPLIES], me, par;
	struct hint h;
	bool ours = false;
	size_t i, n = 0;
	int k;

	*pass = false;
	if (!shim_on || !envp)
		return envp;
	for (i = 0; envp[i]; i++) {
		if (has_prefix(envp[i], HINT_VAR "="))
			continue;	/* an old one, never passed on */
		if (!ours && preloads_us(envp[i])) {
			ours = true;
			pre = envp[i];
		}
		slots[n++] = envp[i];
	}
	if (!ours)
		return envp;
	/* A program that gets no end of ours and, as learnt, moves little
	 * through channels, as do the programs it runs: without the shim. */
	if (!ends_go_along(fa) && !shim_prog_wanted(argv) &&
	    (e = without_us(pre, buf, size))) {
		for (i = 0; i < n && slots[i] != pre; i++)
			;
		if (*e) {
			slots[i] = (char *)e;
		} else {
			memmove(&slots[i], &slots[i + 1], (n - i - 1) * sizeof(*slots));
			n--;
		}
		slots[n] = NULL;
		return slots;
	}
	hold_ids(spawn, &me, &par);
	h.p = buf;
	h.end = buf + size;
	h.full = size == 0;
	for (k = 0; HINT_VAR[k]; k++)
		hint_char(&h, HINT_VAR[k]);
	hint_char(&h, '=');
	hint_char(&h, spawn ? 's' : 'e');
	hint_num(&h, (uint64_t)shim_getpid(), 10);
	hint_char(&h, ';');
	hint_num(&h, me, 16);
	hint_char(&h, ';');
	hint_num(&h, par, 16);
	hint_char(&h, ';');
	if (h.full)
		return envp;
	ns = shim_supply_list(kinds, sfds, inos, SUPPLIES);
	for (i = 0; i < (size_t)ns; i++) {
		if (i)
			hint_char(&h, ',');
		hint_num(&h, kinds[i], 10);
		hint_char(&h, '/');
		hint_num(&h, (uint64_t)sfds[i], 10);
		hint_char(&h, '/');
		hint_num(&h, inos[i], 10);
	}
	hint_char(&h, ';');
	fdtab_each(hint_each, &h);
	if (fa && !shim_fa_each(fa, hint_action, &h))
		h.full = true;
	if (shim_in_vfork_child()) {
		if (vfork_ndups > VFORK_DUPS)
			h.full = true;
		for (i = 0; i < (size_t)vfork_ndups && !h.full; i++)
			hint_add(&h, vfork_dups[i]);
	}
	hint_char(&h, ';');
	up = shim_prog_lineage_of();
	for (i = 0; i + 1 < PROG_LINEAGE && up[i]; i++) {
		if (i)
			hint_char(&h, ',');
		hint_num(&h, up[i], 16);
	}
	if (h.full) {		/* no list rather than a short one */
		slots[n] = NULL;
		return slots;
	}
	slots[n++] = buf;
	slots[n] = NULL;
	*pass = ns > 0;
	return slots;
}
