/*
 * init.c - the shim's start and end: the real functions, the settings, the
 * mount (found on first need, without a trip to the daemon), libc's own
 * entry points (libc.c), the ends inherited across exec, and the last words
 * at exit (the holders protocol, hold.c).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "elfsym.h"
#include "shim.h"

struct real real;
bool shim_on, shim_debug, shim_sockets = true, shim_patched, shim_patch_wanted, shim_patch_text;
_Atomic bool shim_handlers;
_Atomic uint64_t shim_reaps SHIM_FORKED;
pid_t shim_pid SHIM_FORKED;

static struct shim_once init_once = SHIM_ONCE_INIT;
static struct shim_once mount_once = SHIM_ONCE_INIT;
static char mount_dir[4096];
static dev_t mount_dev;
static bool mount_ok;

void shim_once(struct shim_once *o, void (*fn)(void))
{
	int v = atomic_load_explicit(&o->state, memory_order_acquire);

	if (v == 2)
		return;
	v = 0;
	if (atomic_compare_exchange_strong(&o->state, &v, 1)) {
		atomic_store(&o->runner, pthread_self());
		fn();
		atomic_store_explicit(&o->state, 2, memory_order_release);
		return;
	}
	if (pthread_equal(atomic_load(&o->runner), pthread_self()))
		return;		/* from within fn itself */
	while (atomic_load_explicit(&o->state, memory_order_acquire) != 2)
		sched_yield();
}

void shim_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (!shim_debug)
		return;
	n = snprintf(buf, sizeof(buf), "ipcd-shim[%d]: ", getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (real.write)
		real.write(2, buf, (size_t)n);
}

/*
 * What dlsym(RTLD_NEXT, name) gives, found faster: the objects after ours
 * in load order are searched through their hash tables, up to libc.
 * Anything unusual on the way (an object that cannot be searched, an
 * indirect function) is left to dlsym.
 */
static struct elf_obj objs[ELF_MAX_OBJS];
static int nobjs, self_obj = -1, libc_obj = -1;

static const char *self_name = "";	/* our file's name, without its directory */

static void find_objects(void)
{
	const char *slash;

	nobjs = elf_objects(objs, ELF_MAX_OBJS);
	if (nobjs <= 0)
		return;
	self_obj = elf_find(objs, nobjs, (const void *)find_objects);
	libc_obj = elf_find(objs, nobjs, (const void *)gnu_get_libc_version);
	if (self_obj >= 0) {
		slash = strrchr(objs[self_obj].name, '/');
		self_name = slash ? slash + 1 : objs[self_obj].name;
	}
}

static void *next_sym(const char *name)
{
	uint32_t h = elf_hash(name);
	int i;

	if (self_obj < 0 || libc_obj <= self_obj)
		return dlsym(RTLD_NEXT, name);
	for (i = self_obj + 1; i <= libc_obj; i++) {
		const ElfW(Sym) *s;

		if (!objs[i].gnu)
			break;
		s = elf_lookup(&objs[i], name, h, NULL);
		if (!s)
			continue;
		if (ELF_ST_TYPE(s->st_info) == STT_GNU_IFUNC)
			break;
		return (void *)(objs[i].base + s->st_value);
	}
	return dlsym(RTLD_NEXT, name);
}

const struct elf_obj *shim_libc_obj(void)
{
	return libc_obj >= 0 ? &objs[libc_obj] : NULL;
}

void *shim_libc_sym(const char *name, const char *version, size_t *size)
{
	const struct elf_obj *o = shim_libc_obj();
	const ElfW(Sym) *s;

	if (!o || !o->gnu)
		return NULL;
	s = elf_lookup(o, name, elf_hash(name), version);
	if (!s || ELF_ST_TYPE(s->st_info) == STT_GNU_IFUNC)
		return NULL;
	if (size)
		*size = s->st_size;
	return (void *)(o->base + s->st_value);
}

void *shim_next_sym(const char *name)
{
	shim_init();
	return next_sym(name);
}

const char *shim_self_name(void)
{
	return self_name;
}

#define FIND(name) real.name = next_sym(#name)

static void find_real(void)
{
	find_objects();
	FIND(pipe); FIND(pipe2); FIND(socketpair);
	FIND(read); FIND(write); FIND(readv); FIND(writev);
	FIND(recv); FIND(send); FIND(recvfrom); FIND(sendto);
	FIND(recvmsg); FIND(sendmsg); FIND(recvmmsg); FIND(sendmmsg);
	real.read_chk = next_sym("__read_chk");
	real.recv_chk = next_sym("__recv_chk");
	real.recvfrom_chk = next_sym("__recvfrom_chk");
	real.read_nocancel = next_sym("__read_nocancel");
	real.write_nocancel = next_sym("__write_nocancel");
	real.close_nocancel = next_sym("__close_nocancel");
	FIND(close); FIND(close_range); FIND(dup); FIND(dup2); FIND(dup3);
	FIND(fcntl); FIND(fcntl64); FIND(ioctl);
	FIND(pread); FIND(pwrite); FIND(pread64); FIND(pwrite64); FIND(syscall);
	FIND(fstat); FIND(fstat64); FIND(fstatat); FIND(fstatat64); FIND(lseek); FIND(lseek64);
	FIND(shutdown); FIND(getsockopt); FIND(setsockopt);
	FIND(getsockname); FIND(getpeername);
	FIND(poll); FIND(ppoll); FIND(select); FIND(pselect);
	FIND(epoll_ctl); FIND(epoll_wait); FIND(epoll_pwait);
	real.poll_chk = next_sym("__poll_chk");
	real.ppoll_chk = next_sym("__ppoll_chk");
	FIND(fork); FIND(vfork); FIND(posix_spawn); FIND(posix_spawnp);
	FIND(execve); FIND(execvpe); FIND(fexecve); FIND(execveat);
	FIND(_exit); FIND(_Exit);
	FIND(waitpid); FIND(wait); FIND(wait3); FIND(wait4); FIND(waitid);
	FIND(open); FIND(open64); FIND(openat); FIND(openat64);
	FIND(sigaction); FIND(signal);
	FIND(splice); FIND(tee); FIND(vmsplice);
}

static bool env_off(const char *name)
{
	const char *v = getenv(name);

	return v && (!strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "no"));
}

/*
 * The mount, when first needed: IPCD_MOUNT or /ipcd, a directory on an
 * anonymous device as FUSE mounts are.  Asked without a trip to the daemon
 * (AT_STATX_DONT_SYNC); whether it really is ipcd shows when a pair comes
 * or a ring is mapped, which check their own headers.  A relative path is
 * made absolute; an absolute one is kept as given, as it costs a lookup per
 * component to resolve and the program that set it is likely to use it.
 */
static void find_mount(void)
{
	const char *mnt = getenv("IPCD_MOUNT");
	struct statx stx;
	size_t n;

	if (!mnt || !*mnt)
		mnt = "/ipcd";
	if (mnt[0] == '/') {
		n = strlen(mnt);
		if (n >= sizeof(mount_dir))
			goto none;
		memcpy(mount_dir, mnt, n + 1);
		while (n > 1 && mount_dir[n - 1] == '/')
			mount_dir[--n] = '\0';
	} else if (!realpath(mnt, mount_dir)) {
		goto none;
	}
	if (statx(AT_FDCWD, mount_dir, AT_STATX_DONT_SYNC, STATX_TYPE, &stx) < 0 ||
	    !S_ISDIR(stx.stx_mode) || stx.stx_dev_major != 0)
		goto none;
	mount_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	mount_ok = true;
	return;
none:
	shim_log("no ipcd mount with the fast path at %s: kernel pipes", mnt);
}

bool shim_mount_ready(void)
{
	if (!shim_on)
		return false;
	shim_once(&mount_once, find_mount);
	return mount_ok;
}

const char *shim_mount_dir(void)
{
	return mount_dir;
}

dev_t shim_mount_dev(void)
{
	return mount_dev;
}

/*
 * Children that share our memory (vfork, posix_spawn, a raw clone with
 * CLONE_VM) are only possible while a window is open: the count of spawns
 * under way, and per thread whether it began a vfork.  Outside one, no
 * system call is needed to tell.
 */
static _Atomic int vfork_window;
static __thread bool vfork_pending __attribute__((tls_model("initial-exec")));

void shim_spawn_begin(bool vfork)
{
	atomic_fetch_add(&vfork_window, 1);
	if (vfork) {
		shim_vfork_reset();
		vfork_pending = true;	/* the child shares it; closed in the parent */
	}
}

void shim_spawn_end(void)
{
	atomic_fetch_sub(&vfork_window, 1);
}

bool shim_in_vfork_child(void)
{
	if (!shim_pid || !atomic_load_explicit(&vfork_window, memory_order_relaxed))
		return false;
	/* A child made with vfork() or posix_spawn() runs in our memory until
	 * it executes another program; its pid is not ours. */
	if (shim_getpid() != shim_pid)
		return true;
	/* The thread that made a vfork child runs again only once that child
	 * has executed another program or ended: its window closes. */
	if (vfork_pending) {
		vfork_pending = false;
		shim_spawn_end();
	}
	return false;
}

/*
 * Fork handlers, registered first: ours run last before a fork and first
 * after it, so that the handlers of libraries loaded after us (which may
 * close descriptors in the child) find our tables and locks right.
 */
static bool fork_prepared SHIM_FORKED;

static void atfork_prepare(void)
{
	/* Before the fork: written after it, the page would be copied in the
	 * parent, and again in the child. */
	shim_site_child();
	fork_prepared = shim_on && fdtab_any() && !shim_in_vfork_child();
	if (!fork_prepared)
		return;
	shim_keep_ready();
	hold_fork_prepare();
}

static void atfork_parent(void)
{
	if (fork_prepared)
		hold_fork_parent();
}

IPCD_FORK_TEXT static void atfork_child(void)
{
	shim_pid = shim_getpid();
	shim_prog_fork_child();
	shim_site_watch_fork_child();
	ipcd_tid_forget();
	fdtab_after_fork();
	shim_epoll_after_fork();
	if (fork_prepared) {
		hold_fork_child();
		shim_pairs_after_fork();
	}
	fork_prepared = false;
}

bool shim_fork_prepared(void)
{
	bool was = fork_prepared;

	fork_prepared = false;
	return was;
}

static void init(void)
{
	const char *dbg = getenv("IPCD_DEBUG"), *patch;

	find_real();
	shim_debug = dbg && *dbg && strcmp(dbg, "0");
	shim_pid = shim_getpid();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (!real.read || !real.write || !real.close || !real.fcntl ||
	    !real.pipe2 || !real.fstatat) {
		shim_log("cannot find the real libc functions; staying out of the way");
		return;
	}
	if (env_off("IPCD_SHIM")) {
		shim_log("IPCD_SHIM=off: not intercepting");
		return;
	}
	shim_sockets = !env_off("IPCD_SHIM_SOCKETPAIR");
	shim_on = true;
	shim_patch_wanted = !env_off("IPCD_SHIM_PATCH");
	patch = getenv("IPCD_SHIM_PATCH");
	shim_patch_text = patch && !strcmp(patch, "text");
	shim_adopt_inherited();
}

void shim_init(void)
{
	shim_once(&init_once, init);
}

/* glibc hands a library's constructors the program's arguments. */
__attribute__((constructor)) static void shim_ctor(int argc, char **argv)
{
	shim_sites_args(argc, argv);
	shim_init();
}

/*
 * At exit: let go of the ends we hold, so that their peers see it at once.
 * Destructors run before exit() flushes stdio: flush first, so that no byte
 * follows the end of file.
 */
__attribute__((destructor)) static void shim_dtor(void)
{
	if (!shim_on)
		return;
	shim_prog_exit();
	if (fdtab_any()) {
		fflush(NULL);
		hold_exit();
	}
	shim_keep_return();
}
