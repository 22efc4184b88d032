/*
 * proc.c - the interposed calls around a process's life that channel ends
 * care about: fork, vfork, posix_spawn, _exit, reaping a child, opening a
 * channel file anew (through /proc or /dev/fd), signal handlers (which a
 * spin must not hide), and the raw syscall(2) forms of all that.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

extern char **environ;

#define READY(fn) do { if (__builtin_expect(!real.fn, 0)) shim_init(); } while (0)

/* ---- fork and spawn --------------------------------------------------------- */

SHIM_API pid_t fork(void)
{
	pid_t pid;

	READY(fork);
	/* The work is in the fork handlers (init.c), which also serve forks
	 * made inside libc; here only a fork that failed is undone. */
	pid = real.fork();
	if (pid != 0 && shim_fork_prepared() && pid < 0)
		hold_fork_failed();
	return pid;
}

/* Before a vfork: placeholders for what the child keeps past its exec. */
__attribute__((used)) void shim_vfork_prepare(void);
__attribute__((used)) void shim_vfork_prepare(void)
{
	READY(vfork);
	shim_keep_ready();
	hold_spawn(NULL, false);
	shim_site_child();
	/* Last: nothing may ask shim_in_vfork_child() between this and the
	 * vfork, or it would close the window in the parent too early. */
	shim_spawn_begin(true);
}

#if defined(__x86_64__)
/*
 * vfork: the child runs on our stack until it executes another program, so
 * the call must reach libc's vfork as a jump, with the stack as the caller
 * left it.  The preparation runs first, as an ordinary call.
 */
__attribute__((used)) void *shim_real_vfork;
__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	"vfork:\n"
	"	sub $8, %rsp\n"
	"	call shim_vfork_prepare\n"
	"	add $8, %rsp\n"
	"	mov shim_real_vfork(%rip), %rax\n"
	"	test %rax, %rax\n"
	"	jz 1f\n"
	"	jmp *%rax\n"
	"1:	jmp fork@PLT\n"
	".size vfork, .-vfork\n");

__attribute__((constructor)) static void vfork_setup(void)
{
	shim_init();
	shim_real_vfork = (void *)real.vfork;
}
#else
/* Elsewhere: a fork gives the same result to a caller that only execs or
 * exits, and the child has its own memory. */
SHIM_API pid_t vfork(void)
{
	return fork();
}
#endif

/*
 * The environment of a program about to run, with the list of descriptors
 * that may be our ends in it (inherit.c): on the stack, as a vfork child
 * must not allocate.
 */
#define WITH_LIST(envp, argv, fa, spawn, out)					\
	char *out##_slots[shim_env_len(envp) + 2];				\
	char out##_buf[SHIM_HINT_MAX];						\
	bool out##_pass;							\
	char *const *out = shim_exec_env(envp, argv, out##_slots, out##_buf,	\
					 sizeof(out##_buf), fa, spawn, &out##_pass)

/* Run call with the factory connections inherited if the list says so
 * (their close-on-exec flag back on if the call returns). */
#define PASSING(out, call)							\
	({									\
		int r_, e_;							\
		if (out##_pass)							\
			shim_supply_cloexec(false);				\
		r_ = (call);							\
		e_ = errno;							\
		if (out##_pass)							\
			shim_supply_cloexec(true);				\
		errno = e_;							\
		r_;								\
	})

SHIM_API int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	int r;

	READY(posix_spawn);
	shim_keep_ready();
	hold_spawn(fa, false);
	WITH_LIST(envp, argv, fa, true, env);
	shim_spawn_begin(false);
	r = PASSING(env, real.posix_spawn(pid, path, fa, attr, argv, env));
	shim_spawn_end();
	shim_site_child();
	return r;
}

SHIM_API int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	int r;

	READY(posix_spawnp);
	shim_keep_ready();
	hold_spawn(fa, false);
	WITH_LIST(envp, argv, fa, true, env);
	shim_spawn_begin(false);
	r = PASSING(env, real.posix_spawnp(pid, file, fa, attr, argv, env));
	shim_spawn_end();
	shim_site_child();
	return r;
}

/* ---- running another program ----------------------------------------------------- */

SHIM_API int execve(const char *path, char *const argv[], char *const envp[])
{
	READY(execve);
	hold_exec();
	WITH_LIST(envp, argv, NULL, false, env);
	return PASSING(env, real.execve(path, argv, env));
}

SHIM_API int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

SHIM_API int execvpe(const char *file, char *const argv[], char *const envp[])
{
	READY(execvpe);
	hold_exec();
	WITH_LIST(envp, argv, NULL, false, env);
	return PASSING(env, real.execvpe(file, argv, env));
}

SHIM_API int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

SHIM_API int fexecve(int fd, char *const argv[], char *const envp[])
{
	READY(fexecve);
	hold_exec();
	WITH_LIST(envp, argv, NULL, false, env);
	return PASSING(env, real.fexecve(fd, argv, env));
}

SHIM_API int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		      int flags)
{
	READY(execveat);
	hold_exec();
	WITH_LIST(envp, argv, NULL, false, env);
	return PASSING(env, real.execveat(dirfd, path, argv, env, flags));
}

/* The execl forms: their arguments as an array, on the stack. */
static size_t count_args(const char *arg, va_list *ap)
{
	size_t k = 0;

	for (; arg; arg = va_arg(*ap, const char *))
		k++;
	return k;
}

/* argv[0..k] from arg and k - 1 more, then NULL; *ap is left past the NULL. */
static void fill_args(char **argv, size_t k, const char *arg, va_list *ap)
{
	size_t i;

	argv[0] = (char *)arg;
	for (i = 1; i < k; i++)
		argv[i] = va_arg(*ap, char *);
	if (k)
		(void)va_arg(*ap, char *);
	argv[k] = NULL;
}

SHIM_API int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	size_t k;

	va_start(ap, arg);
	k = count_args(arg, &ap);
	va_end(ap);
	char *argv[k + 1];

	va_start(ap, arg);
	fill_args(argv, k, arg, &ap);
	va_end(ap);
	return execve(path, argv, environ);
}

SHIM_API int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	size_t k;

	va_start(ap, arg);
	k = count_args(arg, &ap);
	va_end(ap);
	char *argv[k + 1];

	va_start(ap, arg);
	fill_args(argv, k, arg, &ap);
	va_end(ap);
	return execvpe(file, argv, environ);
}

SHIM_API int execle(const char *path, const char *arg, ...)
{
	char *const *envp;
	va_list ap;
	size_t k;

	va_start(ap, arg);
	k = count_args(arg, &ap);
	va_end(ap);
	char *argv[k + 1];

	va_start(ap, arg);
	fill_args(argv, k, arg, &ap);
	envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}

/* ---- the end --------------------------------------------------------------- */

SHIM_API void _exit(int status)
{
	READY(_exit);
	hold_exit();
	shim_keep_return();
	shim_prog_exit();
	real._exit(status);
	__builtin_unreachable();
}

SHIM_API void _Exit(int status)
{
	READY(_Exit);
	hold_exit();
	shim_keep_return();
	shim_prog_exit();
	real._Exit(status);
	__builtin_unreachable();
}

/* ---- reaping a child -------------------------------------------------------- */

/* A child ended and was reaped: the ends it held are closed, though the
 * daemon may not have seen it yet (hold_catch_up). */
static void reaped(pid_t r, int status, bool stopped_ok)
{
	if (r > 0 && fdtab_any() && (!stopped_ok || WIFEXITED(status) || WIFSIGNALED(status)))
		atomic_fetch_add(&shim_reaps, 1);
}

SHIM_API pid_t waitpid(pid_t pid, int *status, int opts)
{
	int st = 0;
	pid_t r;

	READY(waitpid);
	r = real.waitpid(pid, status ? status : &st, opts);
	reaped(r, status ? *status : st, true);
	return r;
}

SHIM_API pid_t wait(int *status)
{
	int st = 0;
	pid_t r;

	READY(wait);
	r = real.wait(status ? status : &st);
	reaped(r, status ? *status : st, true);
	return r;
}

SHIM_API pid_t wait3(int *status, int opts, struct rusage *ru)
{
	int st = 0;
	pid_t r;

	READY(wait3);
	r = real.wait3(status ? status : &st, opts, ru);
	reaped(r, status ? *status : st, true);
	return r;
}

SHIM_API pid_t wait4(pid_t pid, int *status, int opts, struct rusage *ru)
{
	int st = 0;
	pid_t r;

	READY(wait4);
	r = real.wait4(pid, status ? status : &st, opts, ru);
	reaped(r, status ? *status : st, true);
	return r;
}

SHIM_API int waitid(idtype_t type, id_t id, siginfo_t *info, int opts)
{
	int r;

	READY(waitid);
	r = real.waitid(type, id, info, opts);
	if (r == 0 && info && info->si_pid && !(opts & WNOWAIT) &&
	    (info->si_code == CLD_EXITED || info->si_code == CLD_KILLED ||
	     info->si_code == CLD_DUMPED))
		reaped(info->si_pid, 0, false);
	return r;
}

/* ---- opening a channel file anew ---------------------------------------------- */

/*
 * A process that opens an end it has (through /proc/self/fd or /dev/fd, as
 * a shell's process substitution does) gets another open file of the same
 * channel, which must behave as the pipe it stands for.  The path tells
 * cheaply whether it may be one; a stale entry (a close we missed) on the
 * number the kernel gave is dropped.
 */
static bool in_mount(const char *path)
{
	size_t n;

	if (!shim_mount_ready())
		return false;
	n = strlen(shim_mount_dir());
	return !strncmp(path, shim_mount_dir(), n) && (path[n] == '/' || path[n] == '\0');
}

static int opened(int fd, const char *path, int flags)
{
	struct sfd *stale;

	if (fd < 0 || !shim_on)
		return fd;
	if (fdtab_any() && !shim_in_vfork_child()) {
		stale = fdtab_clear(fd);
		if (stale)
			sfd_put(stale);
	}
	if (path && (!strncmp(path, "/dev/fd/", 8) || !strncmp(path, "/proc/", 6) ||
		     !strncmp(path, "/dev/std", 8) || in_mount(path)))
		shim_adopt_fd(fd, "reopened", flags & O_CLOEXEC);
	return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

SHIM_API int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	READY(open);
	return opened(real.open(path, flags, mode), path, flags);
}

SHIM_API int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	READY(open64);
	return opened(real.open64(path, flags, mode), path, flags);
}

SHIM_API int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	READY(openat);
	return opened(real.openat(dirfd, path, flags, mode), path, flags);
}

SHIM_API int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	READY(openat64);
	return opened(real.openat64(dirfd, path, flags, mode), path, flags);
}

/* ---- signal handlers ---------------------------------------------------------- */

/*
 * The program's signal handlers run through a wrapper of the shim's, which
 * counts on the thread a handler without SA_RESTART runs on, and wakes the
 * ring word the thread sleeps on (ringops.h, ipcd_sigwatch): a blocked read
 * or write on a channel end then ends with EINTR as the kernel's would,
 * however early in the call the signal came, without a signal mask to
 * change on each wait.  sigaction() shows the program its own handlers.
 */
static struct sigaction prog_act[NSIG];	/* the program's, where wrapped */
/* Beside the state a forked child writes anyway: a child that sets its
 * signals back to their defaults before it runs a program then copies no
 * page of its own for it.  Both are written only when they change. */
static _Atomic bool wrapped[NSIG] SHIM_FORKED;

static void wrapper(int sig, siginfo_t *info, void *ctx)
{
	struct sigaction h = prog_act[sig];
	int e = errno;

	if (h.sa_flags & SA_RESETHAND)
		atomic_store_explicit(&wrapped[sig], false, memory_order_relaxed);
	atomic_fetch_add_explicit(&ipcd_sigwatch.ran, 1, memory_order_relaxed);
	if (!(h.sa_flags & SA_RESTART))
		ipcd_sigwatch_interrupt();
	errno = e;
	if (h.sa_flags & SA_SIGINFO)
		h.sa_sigaction(sig, info, ctx);
	else if (h.sa_handler != SIG_DFL && h.sa_handler != SIG_IGN)
		h.sa_handler(sig);
}

static bool is_handler(const struct sigaction *act)
{
	return (act->sa_flags & SA_SIGINFO) ||
	       (act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN);
}

/* These may be called from another library's start (a sanitizer's,
 * installing its handlers) before ours: they find the real one, nothing
 * more. */
SHIM_API int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sigaction k, prev;
	bool was;
	int r;

	if (__builtin_expect(!real.sigaction, 0))
		real.sigaction = dlsym(RTLD_NEXT, "sigaction");
	if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
		return real.sigaction(sig, act, old);
	was = atomic_load(&wrapped[sig]);
	if (act && is_handler(act)) {
		/* The program's handler, mask and flags; ours in front. */
		k = *act;
		k.sa_flags |= SA_SIGINFO;
		k.sa_sigaction = wrapper;
		if (!atomic_load_explicit(&shim_handlers, memory_order_relaxed))
			atomic_store_explicit(&shim_handlers, true, memory_order_relaxed);
		r = real.sigaction(sig, &k, &prev);
		if (r == 0) {
			if (was && prev.sa_sigaction == wrapper)
				prev = prog_act[sig];
			if (memcmp(&prog_act[sig], act, sizeof(*act)))
				prog_act[sig] = *act;
			if (!was)
				atomic_store(&wrapped[sig], true);
		}
	} else {
		r = real.sigaction(sig, act, &prev);
		if (r == 0) {
			if (was && prev.sa_sigaction == wrapper && (prev.sa_flags & SA_SIGINFO))
				prev = prog_act[sig];
			if (act && was)
				atomic_store(&wrapped[sig], false);
		}
	}
	if (r == 0 && old)
		*old = prev;
	return r;
}

/* signal(): the BSD semantics of glibc's, through sigaction. */
SHIM_API sighandler_t signal(int sig, sighandler_t h)
{
	struct sigaction act, old;

	memset(&act, 0, sizeof(act));
	act.sa_handler = h;
	act.sa_flags = SA_RESTART;
	sigemptyset(&act.sa_mask);
	if (sig > 0 && sig < NSIG)
		sigaddset(&act.sa_mask, sig);
	if (sigaction(sig, &act, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

/* ---- raw system calls ---------------------------------------------------------- */

static int raw_close(int fd)
{
	return (int)real.syscall(SYS_close, fd);
}

/* Programs that make these calls through syscall(2) must not leave the
 * tables behind. */
SHIM_API long syscall(long nr, ...)
{
	va_list ap;
	long a[6];
	int i;

	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	READY(syscall);
	switch (nr) {
	case SYS_close:
		return shim_close_fd((int)a[0], raw_close);
	case SYS_dup2:
		return dup2((int)a[0], (int)a[1]);
	case SYS_dup3:
		return dup3((int)a[0], (int)a[1], (int)a[2]);
	case SYS_close_range:
		return close_range((unsigned)a[0], (unsigned)a[1], (int)a[2]);
	case SYS_exit_group:
		hold_exit();
		break;
	case SYS_execve:
		return execve((const char *)a[0], (char *const *)a[1], (char *const *)a[2]);
	case SYS_execveat:
		return execveat((int)a[0], (const char *)a[1], (char *const *)a[2],
				(char *const *)a[3], (int)a[4]);
	case SYS_rt_sigaction:
		/* The kernel's struct differs from libc's: not wrapped; waits
		 * on channel ends then may miss such a handler's EINTR. */
		break;
	case SYS_clone:
	case SYS_clone3:
	case SYS_fork:
	case SYS_vfork:
		/* A child made here holds what we hold (unless it shares our
		 * descriptors), and nobody takes its placeholders over unless
		 * it runs a program with the shim: the ends stay held until
		 * the daemon sees them go. */
	{
		unsigned long fl = nr == SYS_clone ? (unsigned long)a[0] :
				   nr == SYS_clone3 && a[0] ? *(const unsigned long *)a[0] :
				   nr == SYS_vfork ? CLONE_VM : 0;

		/* A child in our memory: from now on, always ask (a window
		 * that never closes). */
		if (fl & CLONE_VM)
			shim_spawn_begin(false);
		if (!(fl & CLONE_FILES))
			hold_spawn(NULL, true);
		break;
	}
	}
	return real.syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
