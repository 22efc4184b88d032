/*
 * shim.h - the ipcd LD_PRELOAD shim's internal interfaces: the table of the
 * real libc functions, the table of channel file descriptors, and settings.
 *
 * The shim lives inside someone else's process: it never exits or aborts,
 * and whenever it cannot do something it falls back to the real call.
 */
#ifndef IPCD_SHIM_H
#define IPCD_SHIM_H

#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "chanint.h"
#include "ipcd.h"

/* The real functions, found once with dlsym(RTLD_NEXT). */
struct real {
	int (*pipe)(int[2]);
	int (*pipe2)(int[2], int);
	int (*socketpair)(int, int, int, int[2]);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
	int (*close)(int);
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
};
extern struct real real;

/* What kind of kernel object a channel fd stands in for. */
enum skind { SK_PIPE, SK_STREAM, SK_DGRAM, SK_SEQPACKET };

/*
 * One accelerated open file: shared by every fd that dup() made of it, and
 * by both processes after fork() (the memory is copied, the ring is shared).
 */
struct sfd {
	_Atomic int refs;		/* fds pointing here, plus calls in flight */
	_Atomic(struct ipcd_chan *) c;	/* the mapped ring(s); NULL when free */
	enum skind kind;
	unsigned roles;			/* IPCD_ROLE_* */
	_Atomic int nonblock;		/* O_NONBLOCK of the open file */
	_Atomic int shut_rd;		/* shutdown(SHUT_RD) was called */
	struct sfd *next_free;
};

/* Settings read once from the environment. */
extern bool shim_on;			/* IPCD_SHIM != off and a mount was found */
extern bool shim_debug;			/* IPCD_DEBUG=1 */
extern bool shim_sockets;		/* IPCD_SHIM_SOCKETPAIR != off */

void shim_init(void);
void shim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* fdtab.c */
struct sfd *fdtab_get(int fd);		/* with a reference; NULL if not ours */
void sfd_put(struct sfd *s);
/* As fdtab_get, for one call of a single-threaded process: may lend s without
 * a reference (*borrowed says so); sfd_return(s, *borrowed) ends either. */
struct sfd *fdtab_borrow(int fd, bool *borrowed);
void sfd_return(struct sfd *s, bool borrowed);
int fdtab_set(int fd, struct sfd *s);	/* takes a reference on s */
/* Forget fd; true if it was a channel end that no other fd of this process
 * shares, so that closing it may be the open file's last close. */
bool fdtab_clear(int fd);
bool fdtab_any(void);			/* may any fd be ours? */
struct sfd *sfd_new(struct ipcd_chan *c, enum skind kind, unsigned roles); /* +1 ref */

/* create.c */
int shim_make_pair(int fds[2], enum skind kind, int flags);
void shim_adopt_inherited(void);
void shim_adopt_fd(int fd, const char *how); /* if a channel end on our mount */
void shim_sync_close(void);		/* after the last close of a channel end */

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
void shim_adopt_rights(const struct msghdr *msg);

/* io.c; rx and tx may be NULL */
ssize_t shim_read(struct sfd *s, int fd, void *buf, size_t len, int flags,
		  size_t *full, struct shim_rx *rx);
ssize_t shim_write(struct sfd *s, const void *buf, size_t len, int flags,
		   struct shim_tx *tx);
ssize_t shim_readv(struct sfd *s, int fd, const struct iovec *iov, int cnt,
		   int flags, size_t *full, struct shim_rx *rx);
ssize_t shim_writev(struct sfd *s, const struct iovec *iov, int cnt, int flags,
		    struct shim_tx *tx);

/* poll.c, epoll.c */
short shim_revents(struct sfd *s, short events);
void shim_epoll_forget(int fd);


#define SHIM_API __attribute__((visibility("default")))

/* The fortified entry points libc has but declares only in its internals. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
int fcntl64(int fd, int cmd, ...);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *alen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		const sigset_t *mask, size_t len);

#endif /* IPCD_SHIM_H */
