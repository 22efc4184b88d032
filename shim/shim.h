/*
 * shim.h - the ipcd LD_PRELOAD shim's internal interfaces: the table of the
 * real libc functions, the table of channel file descriptors, pairs of ends,
 * holders, and settings.
 *
 * The shim lives inside someone else's process: it never exits or aborts,
 * and whenever it cannot do something it falls back to the real call.
 */
#ifndef IPCD_SHIM_H
#define IPCD_SHIM_H

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chanint.h"
#include "ipcd.h"

/* The real functions: found once with dlsym(RTLD_NEXT), or, where the
 * libc entry is patched (patch.c), code with its original behaviour. */
struct real {
	int (*pipe)(int[2]);
	int (*pipe2)(int[2], int);
	int (*socketpair)(int, int, int, int[2]);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*read_nocancel)(int, void *, size_t);
	ssize_t (*write_nocancel)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned, int, struct timespec *);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
	int (*close)(int);
	int (*close_nocancel)(int);
	int (*close_range)(unsigned, unsigned, int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	ssize_t (*pread)(int, void *, size_t, off_t);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	ssize_t (*pread64)(int, void *, size_t, off64_t);
	ssize_t (*pwrite64)(int, const void *, size_t, off64_t);
	long (*syscall)(long, ...);
	int (*ioctl)(int, unsigned long, ...);
	int (*fstat)(int, struct stat *);
	int (*fstat64)(int, struct stat64 *);
	int (*fstatat)(int, const char *, struct stat *, int);
	int (*fstatat64)(int, const char *, struct stat64 *, int);
	off_t (*lseek)(int, off_t, int);
	off64_t (*lseek64)(int, off64_t, int);
	int (*shutdown)(int, int);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	int (*poll_chk)(struct pollfd *, nfds_t, int, size_t);
	int (*ppoll_chk)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t);
	pid_t (*fork)(void);
	pid_t (*vfork)(void);
	int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*execveat)(int, const char *, char *const[], char *const[], int);
	void (*_exit)(int);
	void (*_Exit)(int);
	pid_t (*waitpid)(pid_t, int *, int);
	pid_t (*wait)(int *);
	pid_t (*wait3)(int *, int, struct rusage *);
	pid_t (*wait4)(pid_t, int *, int, struct rusage *);
	int (*waitid)(idtype_t, id_t, siginfo_t *, int);
	int (*open)(const char *, int, ...);
	int (*open64)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*openat64)(int, const char *, int, ...);
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
	sighandler_t (*signal)(int, sighandler_t);
	ssize_t (*splice)(int, loff_t *, int, loff_t *, size_t, unsigned);
	ssize_t (*tee)(int, int, size_t, unsigned);
	ssize_t (*vmsplice)(int, const struct iovec *, size_t, unsigned);
};
extern struct real real;

/* What kind of kernel object a channel fd stands in for. */
enum skind { SK_PIPE, SK_STREAM, SK_DGRAM, SK_SEQPACKET };

/* One mapping of a channel's rings, shared by the ends this process has. */
struct smap {
	_Atomic int refs;		/* ends using it */
	void *map;
	size_t len;
	struct ipcd_ring *r0;		/* ring of role 0: holders (ring.h) */
	struct ipcd_ring *r1;		/* a duplex channel's ring of role 1, else NULL */
	ino_t ino;			/* the channel's inode, once asked (0) */
};

/*
 * One accelerated open file, a channel end: shared by every fd that dup()
 * made of it, and by both processes after fork() (the memory is copied, the
 * ring is shared).
 */
struct sfd {
	_Atomic int refs;		/* fds pointing here, plus calls in flight */
	_Atomic bool live;		/* allocated (memory is recycled, never freed) */
	_Atomic(struct ipcd_chan *) c;	/* the rings; NULL until attached */
	struct smap *m;			/* the mapping c uses */
	enum skind kind;
	unsigned roles;			/* IPCD_ROLE_* */
	int end;			/* 0, 1: a pair's end (ring.h); -1: a reopen */
	bool made_here;			/* a pair made in this process (one smap) */
	_Atomic bool dirty;		/* shut down, in an epoll set, owned for
					   SIGIO: never to serve another pipe */
	bool pending;			/* noted on arrival: attach at first use */
	size_t map_len;			/* noted on arrival: what to map (0: ask) */
	bool slow;			/* a reopen that cannot be mapped: the
					   daemon serves it; kept to see its close */
	bool inherited;			/* came across exec (may take a placeholder) */
	_Atomic int nonblock;		/* O_NONBLOCK of the open file */
	_Atomic int shut_rd;		/* shutdown(SHUT_RD) was called */
	_Atomic bool counted;		/* this process is among its holders */
	_Atomic uint64_t reaps_seen;	/* shim_reaps when it came here, or when a
					   catch-up last found nothing to ask */
	_Atomic uint64_t rcvtimeo;	/* SO_RCVTIMEO, ns (0: none) */
	_Atomic uint64_t sndtimeo;	/* SO_SNDTIMEO */
	_Atomic int passcred;		/* SO_PASSCRED */
	pid_t cred_pid;			/* SO_PEERCRED: who made the pair */
	uid_t cred_uid;
	gid_t cred_gid;
	struct sfd *next_free;
	struct sfd *held_next;		/* in the holds list (hold.c), under its lock */
	struct sfd *held_prev;
};

/* Settings read once from the environment, and the mount. */
extern bool shim_on;			/* IPCD_SHIM != off and a mount was found */
extern bool shim_debug;			/* IPCD_DEBUG=1 */
extern bool shim_sockets;		/* IPCD_SHIM_SOCKETPAIR != off */
extern bool shim_patched;		/* libc's own I/O reaches the shim (patch.c) */
extern bool shim_patch_wanted;		/* IPCD_SHIM_PATCH != off */
extern bool shim_patch_text;		/* IPCD_SHIM_PATCH=text */
extern _Atomic bool shim_handlers;	/* some signal handler was installed */
extern _Atomic uint64_t shim_reaps;	/* children reaped so far */
extern pid_t shim_pid;			/* getpid() as of the last fork */

/* Something to do once in a process, as pthread_once, but with no system
 * call on the way (glibc's wakes its waiters after every first run).  A
 * call from the thread running it, while it runs, returns at once. */
struct shim_once {
	_Atomic int state;		/* 0: not yet, 1: running, 2: done */
	_Atomic(pthread_t) runner;
};
#define SHIM_ONCE_INIT	{ 0, 0 }
void shim_once(struct shim_once *o, void (*fn)(void));

void shim_init(void);
void shim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool shim_mount_ready(void);		/* the mount, found on first need */
const char *shim_mount_dir(void);
dev_t shim_mount_dev(void);
/* Whether this call runs in a child that shares our memory (vfork,
 * posix_spawn), which must not change the tables. */
bool shim_in_vfork_child(void);
/* Around a spawn whose child shares our memory (vfork: the window closes
 * when the parent runs again, not at shim_spawn_end). */
void shim_spawn_begin(bool vfork);
void shim_spawn_end(void);
bool shim_fork_prepared(void);		/* after a fork, in the parent: was it? */

/* fdtab.c */
struct sfd *fdtab_get(int fd);		/* with a reference; NULL if not ours */
bool fdtab_has(int fd);			/* whether fd is ours now (no reference) */
void sfd_put(struct sfd *s);
/* As fdtab_get, for one call of a single-threaded process: may lend s without
 * a reference (*borrowed says so); sfd_return(s, *borrowed) ends either. */
struct sfd *fdtab_borrow(int fd, bool *borrowed);
void sfd_return(struct sfd *s, bool borrowed);
/* Whether no other thread, and no call this one interrupted, can be using
 * an end of ours now. */
bool fdtab_quiet(void);
int fdtab_set(int fd, struct sfd *s, bool cloexec);	/* takes a reference */
void fdtab_set_cloexec(int fd, bool on);
bool fdtab_cloexec(int fd);
/* Forget fd; returns its end, with the table's reference, if no other fd
 * of this process has it (the caller ends it with sfd_last), else NULL. */
struct sfd *fdtab_clear(int fd);
bool fdtab_any(void);			/* may any fd be ours? */
/* Call fn for every fd of ours (under no lock; the table may change). */
void fdtab_each(void (*fn)(int fd, struct sfd *s, void *arg), void *arg);
struct sfd *sfd_new(enum skind kind, unsigned roles, int end); /* +1 ref */

/* pairs.c: making pairs and taking ends in */
int shim_make_pair(int fds[2], enum skind kind, int flags, uint64_t site);
int shim_move_high(int fd);		/* at SHIM_OWN_FDS or above, cloexec */
/* calls.c: put a kernel pipe in place of the pipe whose end fd is, made
 * here and held by nobody else, if it may be; whether it did */
bool shim_demote(int fd);
/* hold.c: whether this process alone holds both ends of s's pair (and is
 * counted for them); an fd here of each end of the pair mapped as m and
 * how many fds each has (ends shut down or in an epoll set not counted) */
bool hold_pair_alone(struct sfd *s);
void hold_pair_here(const struct smap *m, int fd[2], int n[2]);
/* sites.c: the site of a pipe or socket pair asked for at pc, counting the pipes made
 * since this process last started a child (0: not learning); a child is
 * started; whether a pipe of that site should be the kernel's */
uint64_t shim_site_key(uintptr_t pc);
void shim_site_child(void);
bool shim_site_kernel(uint64_t key);
/* The rings of role 0 and 1 of the channel mapped at map (len bytes), as
 * its directory says, found once when it is mapped: *r1 is NULL for a
 * pipe.  false if the directory cannot be right. */
static inline bool shim_rings(void *map, size_t len, struct ipcd_ring **r0,
			      struct ipcd_ring **r1)
{
	*r0 = ipcd_map_ring(map, len, 0);
	*r1 = *r0 && ((*r0)->features & IPCD_RING_F_DUPLEX) ? ipcd_map_ring(map, len, 1)
							     : NULL;
	return *r0 && (*r1 || !((*r0)->features & IPCD_RING_F_DUPLEX));
}

/* sites.c: a pair of site key is made on the rings mapped at map (len
 * bytes); what it carries is final (a pipe's write end let go of for good,
 * or its end of file read, or both ends of a socket pair let go of; counted
 * once, never again) */
void shim_site_mark(const struct smap *m, uint64_t key);
void shim_site_done(const struct smap *m);
/* A pair let go of here while others still hold it, whose site is not
 * counted yet: count it once the daemon shows all its ends gone. */
void shim_site_watch(struct smap *m);
void shim_site_resolve(void);
void shim_site_watch_fork_child(void);
/* sites.c: whether the other end of the socket pair mapped at map, whose
 * end `end` we hold, is closed everywhere (the daemon's count) */
bool shim_site_peer_closed(struct ipcd_ring *r0, struct ipcd_ring *r1, int end);
/* sites.c: the shared page of counts, passed on like a supply of this
 * kind; its fd (-1: none) and inode; the program closed that fd */
#define SHIM_SITES_KIND	15
void shim_sites_adopt(int fd, uint64_t ino);
int shim_sites_fd(uint64_t *ino);
void shim_sites_fd_gone(void);
void shim_sites_fd_release(void);	/* close it, to give the program room */
void shim_sites_after_fork(void);
bool shim_learning(void);		/* IPCD_SHIM_LEARN is not off */
void shim_sites_args(int argc, char **argv);	/* the program's arguments */

/* Programs that need no shim (sites.c). */
#define PROG_LINEAGE	4		/* this program's key and 3 runners' */
extern _Atomic bool shim_prog_used;
void shim_prog_moved_slow(size_t n);
/* n bytes moved through a channel's rings by this process. */
static inline void shim_prog_moved(ssize_t n)
{
	if (n > 0 && !atomic_load_explicit(&shim_prog_used, memory_order_relaxed))
		shim_prog_moved_slow((size_t)n);
}
void shim_prog_lineage(const uint64_t *up, unsigned n);	/* the runners' keys */
const uint64_t *shim_prog_lineage_of(void);	/* PROG_LINEAGE keys, 0: none */
void shim_prog_exit(void);			/* the program ends: count it */
void shim_prog_fork_child(void);		/* in a forked child */
bool shim_prog_wanted(char *const argv[]);	/* false: run it without the shim */
/* End `end` of the pair mapped at map (fd open on it; s its end here, or
 * NULL) is held by nobody else: keep it for another pipe if we made the
 * pair, else hand it to the process that did (ring.h, "Keeping"). */
void shim_give_end(int fd, struct sfd *s, struct ipcd_ring *r0, int end);
void shim_keep_flush(void);		/* close what was kept */
void shim_keep_return(void);		/* at exit: kept pairs to the factory */
void shim_keep_ready(void);		/* before a fork or spawn: the keep socket */
/* The shim's own descriptors sit at SHIM_OWN_FDS and up, close-on-exec;
 * the program closing or replacing some of them (first..last) makes it
 * forget them. */
#define SHIM_OWN_FDS	512
void shim_own_fds_gone(unsigned first, unsigned last);
void shim_own_fds_release(void);	/* EMFILE: the shim lets go of its own */
size_t shim_map_len(int fd);		/* what to map (st_blocks), or 0 */
bool sfd_attach(struct sfd *s, int fd);	/* map an inherited end's rings */
int shim_end_kind(int fd);		/* skind of an unattached end, or -1 */
/* fd a channel end?  Note it, to attach at first use (cloexec < 0: ask). */
void shim_adopt_fd(int fd, const char *how, int cloexec);
void shim_sync(int fd);			/* ipcd-ring(7) SYNC on fd */
void shim_pairs_after_fork(void);
/* The factory connections, to pass on to a program about to run: up to max
 * of them, kind, fd and inode each; their close-on-exec flag off (on: back
 * on).  And one a program was started with. */
int shim_supply_list(unsigned *kinds, int *fds, uint64_t *inos, int max);
void shim_supply_cloexec(bool on);
void shim_supply_adopt(unsigned kind, int fd, uint64_t ino);

/* hold.c: the holders protocol (ring.h "Holders") */
uint64_t hold_me(void);			/* this process's holder number */
uint64_t hold_known(void);		/* the same if asked before, else 0 */
/* This process's number and its parent's as a program it runs should
 * know them (0: none; spawn: a new process runs it); and those a program
 * was started with. */
void hold_ids(bool spawn, uint64_t *me, uint64_t *parent);
void hold_set_ids(uint64_t me, uint64_t parent);
bool hold_empty(struct ipcd_ring *r0, int end);
void hold_claim(struct sfd *s, int fd);	/* s came into this process */
void hold_mine(struct sfd *s);		/* s was made for this process */
void hold_last(struct sfd *s, int fd);	/* this process's last fd of s closed */
/* Around a fork (pthread_atfork handlers, init.c: before any handler
 * registered later, whose closes in the child must find our tables right);
 * hold_fork_failed() after a fork that made no child. */
void hold_fork_prepare(void);
void hold_fork_parent(void);
void hold_fork_child(void);
void hold_fork_failed(void);
void fdtab_after_fork(void);		/* in the child */
void shim_epoll_after_fork(void);
/* Before a spawn (all: every end goes along, as in a fork). */
void hold_spawn(const posix_spawn_file_actions_t *fa, bool all);
void hold_vfork_dup(struct sfd *s, int newfd);	/* a vfork child's dup2 */
void hold_exit(void);			/* the process ends */
void hold_exec(void);			/* before an exec: count what ends with it */
/* Before an answer that a close elsewhere could change: catch up with the
 * daemon if a child was reaped since s came here. */
void hold_catch_up(struct sfd *s, int fd);
void hold_sent(struct sfd *s);		/* s leaves with SCM_RIGHTS */
/* A pair made where the protocol cannot be kept (libc not patched): its
 * ends last until the daemon sees them closed. */
void hold_untracked(struct ipcd_ring *r0);

/*
 * Descriptors passed with SCM_RIGHTS on a socket pair channel (anc.c).  A
 * receive on a socket pair end takes the descriptors that came with the
 * bytes it reads: into rx when the caller has room for them (recvmsg), else
 * the daemon closes them.  A send binds the descriptors in tx to its bytes.
 */
struct shim_rx {
	int fd;				/* the channel end */
	struct ipcd_chan *c;
	bool want;			/* keep them (recvmsg with control room) */
	bool cloexec;			/* MSG_CMSG_CLOEXEC */
	bool taken;			/* out: an attachment was taken */
	bool lost;			/* out: descriptors were dropped */
	int nfds;			/* out */
	int fds[IPCD_ANC_MAX_FDS];	/* out */
};
struct shim_tx {
	int fd;				/* the channel end */
	int nfds;
	int fds[IPCD_ANC_MAX_FDS];
};
ssize_t shim_anc_take(void *rx, uint64_t at);	/* ipcd_anc_ops.take */
int shim_anc_bind(void *tx, uint64_t at, size_t n);	/* ipcd_anc_ops.bind */
ssize_t shim_sendmsg_anc(struct sfd *s, int fd, const struct msghdr *msg, int flags);
void shim_put_rights(struct msghdr *msg, struct shim_rx *rx);
void shim_adopt_rights(const struct msghdr *msg, int flags);
void shim_rights_leaving(const int *fds, int n);
void shim_msg_leaving(const struct msghdr *msg);

/* io.c; rx and tx may be NULL */
struct ipcd_chan *sfd_chan(struct sfd *s, int fd);	/* attached, or NULL */
ssize_t shim_read(struct sfd *s, int fd, void *buf, size_t len, int flags,
		  size_t *full, struct shim_rx *rx);
ssize_t shim_write(struct sfd *s, int fd, const void *buf, size_t len, int flags,
		   struct shim_tx *tx);
ssize_t shim_readv(struct sfd *s, int fd, const struct iovec *iov, int cnt,
		   int flags, size_t *full, struct shim_rx *rx);
ssize_t shim_writev(struct sfd *s, int fd, const struct iovec *iov, int cnt, int flags,
		    struct shim_tx *tx);

/* io.c: the memory of the program and its libraries, as good to read */
void shim_user_objects(void);

/* poll.c, epoll.c */
short shim_revents(struct sfd *s, int fd, short events);
void shim_epoll_forget(int fd);
/* Spin for at most ns over ready(arg) with signals held: 1 ready, 0 not,
 * -1 a signal came (its handler has run). */
int shim_spin(uint64_t ns, bool (*ready)(void *), void *arg);
/* Signal handlers held off while a call looks at rings between kernel
 * waits (when the program has any): the kernel waits run with the mask
 * shim_signals_wait_mask gives (the caller's own, or mask: ppoll's,
 * epoll_pwait's), so that a signal that came meanwhile ends them at once,
 * and shim_signals_came says whether one came that such a wait would have
 * taken.  Release lets the handlers run; it keeps errno. */
struct shim_sighold {
	bool on;
	sigset_t old;
};
void shim_signals_hold(struct shim_sighold *h);
/* How many of the program's handlers have run on this thread: read first
 * thing in a call of the poll family, a change later means one ran during
 * the call, which ends it with EINTR as the kernel's would. */
static inline uint32_t shim_handlers_ran(void)
{
	return atomic_load_explicit(&ipcd_sigwatch.ran, memory_order_relaxed);
}
void shim_signals_release(struct shim_sighold *h);
const sigset_t *shim_signals_wait_mask(const struct shim_sighold *h, const sigset_t *mask);
bool shim_signals_came(const struct shim_sighold *h, const sigset_t *mask);

/* inherit.c: the ends a program starts with (IPCD_SHIM_FDS) */
void shim_adopt_inherited(void);
size_t shim_env_len(char *const envp[]);
/* envp for a program about to run, with its list of our ends: in slots
 * (room for shim_env_len(envp) + 2) and buf; or envp itself.  *pass: the
 * list names factory connections, to leave open across the exec
 * (shim_supply_cloexec). */
char *const *shim_exec_env(char *const envp[], char *const argv[], char **slots, char *buf,
			   size_t size, const posix_spawn_file_actions_t *fa, bool spawn,
			   bool *pass);
#define SHIM_HINT_MAX	4096
void shim_vfork_reset(void);		/* a vfork begins: no dups noted */
void shim_vfork_dup(int newfd);		/* a vfork child made newfd an end (-1: unknown) */
/* posix_spawn file actions, as glibc lays them out; false if unknown, or
 * when fn returns false. */
enum { SHIM_FA_CLOSE, SHIM_FA_DUP2, SHIM_FA_OPEN, SHIM_FA_CHDIR, SHIM_FA_FCHDIR,
       SHIM_FA_CLOSEFROM, SHIM_FA_TCSETPGRP, SHIM_FA_LAST = SHIM_FA_TCSETPGRP };
bool shim_fa_each(const posix_spawn_file_actions_t *fa,
		  bool (*fn)(int tag, const int fds[2], void *arg), void *arg);

/* libc.c: before the first end enters the process: libc's own I/O reaches
 * the shim from then on (stdio.c, or patch.c) */
void shim_first_end(void);
/* libc.c: before a libc function that works on descriptors inside libc
 * (system, popen, freopen, daemon ...): its internal entries reach the shim */
void shim_libc_whole(void);
/* stdio.c: libc's streams reach the shim through their tables; false if
 * this libc's tables are not as expected (nothing was changed) */
bool shim_stdio_hook(void);

/* init.c: this library's file name; libc's loaded object; a symbol of
 * libc (version NULL: the default one) and its size, or NULL; what
 * dlsym(RTLD_NEXT, name) gives */
const char *shim_self_name(void);
struct elf_obj;
const struct elf_obj *shim_libc_obj(void);
void *shim_libc_sym(const char *name, const char *version, size_t *size);
void *shim_next_sym(const char *name);

/* calls.c: close(fd) with fn, libc's close or another form of it */
int shim_close_fd(int fd, int (*fn)(int));

#define SHIM_API __attribute__((visibility("default")))

/* getpid(2) made right here: a child between fork and exec that calls it
 * touches no page of libc's code, each of which would cost it a fault. */
static inline pid_t shim_getpid(void)
{
	return (pid_t)ipcd_syscall(SYS_getpid, 0, 0, 0, 0, 0, 0);
}

/* Whether s begins with prefix (no library call, as above). */
static inline bool has_prefix(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return false;
	return true;
}

/*
 * The count of interrupting signal handlers (ipcd_sigwatch) as a reading
 * call found it in its first instructions: a handler that runs after that
 * ends the call if it would block, as one that comes once the kernel's own
 * call has begun does.  Noted only from a wrapper's entry to its exit
 * (SHIM_MARK_CALL), taken at most once (shim_call_mark_take).
 */
struct shim_call_mark {
	uint32_t mark;
	bool set;
};
extern _Thread_local struct shim_call_mark shim_call_mark
	__attribute__((tls_model("initial-exec")));

static inline void shim_call_mark_end(int *scope)
{
	(void)scope;
	shim_call_mark.set = false;
}

#define SHIM_MARK_CALL()							\
	int shim_mark_scope_ __attribute__((cleanup(shim_call_mark_end), unused)) = \
		(shim_call_mark.mark = atomic_load_explicit(&ipcd_sigwatch.interrupting, \
							    memory_order_relaxed), \
		 shim_call_mark.set = true, 0)

/* State a forked child or its parent writes at once (ringops.h). */
#define SHIM_FORKED IPCD_FORKED

/* The fortified entry points libc has but declares only in its internals. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
int fcntl64(int fd, int cmd, ...);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *alen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		const sigset_t *mask, size_t len);

/* io.c: user memory a call is given.  How many of the n bytes at p, from
 * the first, the kernel could read (or write, when write) before a page
 * that faults; and whether all of them. */
size_t shim_user_span(const void *p, size_t n, bool write);
bool shim_user_ok(const void *p, size_t n, bool write);
/* anc.c: close the descriptors rx took, which its caller will not get. */
void shim_drop_rights(struct shim_rx *rx);

#endif /* IPCD_SHIM_H */
