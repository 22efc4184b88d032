/*
 * calls.c - the interposed libc entry points.  Each one looks the fd up in
 * the channel table (a few loads, no lock) and, when it is not an
 * accelerated channel end, calls straight through to libc.  On a channel end
 * it behaves as libc would on a kernel pipe or socket pair: -1 and errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"

#define READY(fn) do { if (__builtin_expect(!real.fn, 0)) shim_init(); } while (0)

static ssize_t ret(ssize_t n)
{
	if (n < 0) {
		errno = (int)-n;
		return -1;
	}
	return n;
}

/* ---- creation ------------------------------------------------------------ */

SHIM_API int pipe2(int fds[2], int flags)
{
	READY(pipe2);
	if (shim_on && !(flags & ~(O_NONBLOCK | O_CLOEXEC | O_DIRECT)) &&
	    shim_make_pair(fds, SK_PIPE, flags) == 0)
		return 0;
	return real.pipe2(fds, flags);
}

SHIM_API int pipe(int fds[2])
{
	return pipe2(fds, 0);
}

SHIM_API int socketpair(int domain, int type, int proto, int sv[2])
{
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	int flags = ((type & SOCK_NONBLOCK) ? O_NONBLOCK : 0) |
		    ((type & SOCK_CLOEXEC) ? O_CLOEXEC : 0);
	enum skind kind;

	READY(socketpair);
	if (!shim_on || !shim_sockets || domain != AF_UNIX || proto != 0)
		return real.socketpair(domain, type, proto, sv);
	if (base == SOCK_STREAM)
		kind = SK_STREAM;
	else if (base == SOCK_DGRAM)
		kind = SK_DGRAM;
	else if (base == SOCK_SEQPACKET)
		kind = SK_SEQPACKET;
	else
		return real.socketpair(domain, type, proto, sv);
	if (shim_make_pair(sv, kind, flags) == 0)
		return 0;
	return real.socketpair(domain, type, proto, sv);
}

/* ---- data ---------------------------------------------------------------- */

SHIM_API ssize_t read(int fd, void *buf, size_t len)
{
	struct sfd *s;
	bool borrowed;
	ssize_t n;

	READY(read);
	s = fdtab_borrow(fd, &borrowed);
	if (!s)
		return real.read(fd, buf, len);
	n = shim_read(s, fd, buf, len, 0, NULL, NULL);
	sfd_return(s, borrowed);
	return ret(n);
}

SHIM_API ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	READY(read_chk);
	if (len > buflen || !fdtab_any())
		return real.read_chk(fd, buf, len, buflen);
	return read(fd, buf, len);
}

SHIM_API ssize_t write(int fd, const void *buf, size_t len)
{
	struct sfd *s;
	bool borrowed;
	ssize_t n;

	READY(write);
	s = fdtab_borrow(fd, &borrowed);
	if (!s)
		return real.write(fd, buf, len);
	n = shim_write(s, buf, len, 0, NULL);
	sfd_return(s, borrowed);
	return ret(n);
}

SHIM_API ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	struct sfd *s;
	ssize_t n;

	READY(readv);
	s = fdtab_get(fd);
	if (!s)
		return real.readv(fd, iov, cnt);
	n = cnt < 0 || cnt > IOV_MAX ? -EINVAL : shim_readv(s, fd, iov, cnt, 0, NULL, NULL);
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	struct sfd *s;
	ssize_t n;

	READY(writev);
	s = fdtab_get(fd);
	if (!s)
		return real.writev(fd, iov, cnt);
	n = cnt < 0 || cnt > IOV_MAX ? -EINVAL : shim_writev(s, iov, cnt, 0, NULL);
	sfd_put(s);
	return ret(n);
}

/* A socket call on a pipe channel fails as on a kernel pipe. */
static struct sfd *sock_get(int fd, ssize_t *err)
{
	struct sfd *s = fdtab_get(fd);

	*err = 0;
	if (s && s->kind == SK_PIPE) {
		sfd_put(s);
		*err = -ENOTSOCK;
		return NULL;
	}
	return s;
}

static const int recv_known = MSG_PEEK | MSG_DONTWAIT | MSG_WAITALL | MSG_TRUNC |
			      MSG_CMSG_CLOEXEC | MSG_NOSIGNAL;

static ssize_t do_recv(struct sfd *s, int fd, void *buf, size_t len, int flags)
{
	size_t full = 0;
	ssize_t n;

	if (flags & ~recv_known)
		return -EOPNOTSUPP;
	n = shim_read(s, fd, buf, len, flags, &full, NULL);
	/* MSG_TRUNC: a datagram socket returns the real length. */
	if (n >= 0 && (flags & MSG_TRUNC) && s->kind != SK_STREAM)
		n = (ssize_t)full;
	return n;
}

SHIM_API ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct sfd *s;
	ssize_t n;

	READY(recv);
	s = sock_get(fd, &n);
	if (!s)
		return n ? ret(n) : real.recv(fd, buf, len, flags);
	n = do_recv(s, fd, buf, len, flags);
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	READY(recv_chk);
	if (len > buflen || !fdtab_any())
		return real.recv_chk(fd, buf, len, buflen, flags);
	return recv(fd, buf, len, flags);
}

/* getsockname/getpeername of a socket pair end: AF_UNIX, no path. */
static void family_only(struct sockaddr *addr, socklen_t *alen)
{
	sa_family_t fam = AF_UNIX;

	if (!addr || !alen)
		return;
	if (*alen >= sizeof(fam))
		memcpy(addr, &fam, sizeof(fam));
	*alen = sizeof(fam);
}

/* The peer of a socket pair has no address: length 0, as the kernel says. */
static void unnamed(struct sockaddr *addr, socklen_t *alen)
{
	(void)addr;
	if (alen)
		*alen = 0;
}

SHIM_API ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
			  struct sockaddr *addr, socklen_t *alen)
{
	struct sfd *s;
	ssize_t n;

	READY(recvfrom);
	s = sock_get(fd, &n);
	if (!s)
		return n ? ret(n) : real.recvfrom(fd, buf, len, flags, addr, alen);
	n = do_recv(s, fd, buf, len, flags);
	if (n >= 0)
		unnamed(addr, alen);
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen,
				int flags, struct sockaddr *addr, socklen_t *alen)
{
	READY(recvfrom_chk);
	if (len > buflen || !fdtab_any())
		return real.recvfrom_chk(fd, buf, len, buflen, flags, addr, alen);
	return recvfrom(fd, buf, len, flags, addr, alen);
}

SHIM_API ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct shim_rx rx;
	struct sfd *s;
	size_t full = 0, len;
	ssize_t n;
	int i;

	READY(recvmsg);
	s = sock_get(fd, &n);
	if (!s) {
		if (n)
			return ret(n);
		n = real.recvmsg(fd, msg, flags);
		if (n >= 0 && msg->msg_controllen && shim_on)
			shim_adopt_rights(msg);	/* channel ends passed to us */
		return n;
	}
	if (flags & ~recv_known) {
		n = -EOPNOTSUPP;
	} else {
		rx.fd = fd;
		rx.c = atomic_load(&s->c);
		rx.want = msg->msg_control && msg->msg_controllen >= CMSG_LEN(sizeof(int));
		rx.cloexec = !!(flags & MSG_CMSG_CLOEXEC);
		rx.taken = rx.lost = false;
		rx.nfds = 0;
		n = shim_readv(s, fd, msg->msg_iov, (int)msg->msg_iovlen, flags, &full, &rx);
		if (n >= 0) {
			for (len = 0, i = 0; i < (int)msg->msg_iovlen; i++)
				len += msg->msg_iov[i].iov_len;
			msg->msg_flags = 0;
			if (s->kind != SK_STREAM && full > len) {
				msg->msg_flags |= MSG_TRUNC;
				if (flags & MSG_TRUNC)
					n = (ssize_t)full;
			}
			shim_put_rights(msg, &rx);
			unnamed(msg->msg_name, &msg->msg_namelen);
		}
	}
	sfd_put(s);
	return ret(n);
}

static const int send_known = MSG_DONTWAIT | MSG_NOSIGNAL | MSG_EOR | MSG_MORE;

SHIM_API ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct sfd *s;
	ssize_t n;

	READY(send);
	s = sock_get(fd, &n);
	if (!s)
		return n ? ret(n) : real.send(fd, buf, len, flags);
	n = (flags & ~send_known) ? -EOPNOTSUPP : shim_write(s, buf, len, flags, NULL);
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			const struct sockaddr *addr, socklen_t alen)
{
	struct sfd *s;
	ssize_t n;

	READY(sendto);
	s = sock_get(fd, &n);
	if (!s)
		return n ? ret(n) : real.sendto(fd, buf, len, flags, addr, alen);
	if (addr && alen)
		n = -EISCONN;	/* a socket pair is connected */
	else
		n = (flags & ~send_known) ? -EOPNOTSUPP : shim_write(s, buf, len, flags, NULL);
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct sfd *s;
	ssize_t n;

	READY(sendmsg);
	s = sock_get(fd, &n);
	if (!s)
		return n ? ret(n) : real.sendmsg(fd, msg, flags);
	if (msg->msg_name && msg->msg_namelen)
		n = -EISCONN;
	else if (flags & ~send_known)
		n = -EOPNOTSUPP;
	else if (msg->msg_controllen)
		n = shim_sendmsg_anc(s, fd, msg, flags);
	else
		n = shim_writev(s, msg->msg_iov, (int)msg->msg_iovlen, flags, NULL);
	sfd_put(s);
	return ret(n);
}

/* ---- descriptors --------------------------------------------------------- */

/* Before fd is closed: forget it; true if the close may be the last one
 * of a channel end (then shim_sync_close once it is done). */
static bool forget(int fd)
{
	bool last = fdtab_clear(fd);

	shim_epoll_forget(fd);
	return last;
}

/* After close_range(first, last) closed them: forget the fds, and wait
 * for the daemon once if that may have ended a channel end. */
static void forget_range(unsigned first, unsigned last)
{
	unsigned long fd;
	bool sync = false;

	if (!fdtab_any())
		return;
	for (fd = first; fd <= last; fd++) {
		if (fd > (1ul << 20) && last - first > (1u << 20))
			break;	/* nothing is that high in practice */
		sync |= forget((int)fd);
	}
	if (sync)
		shim_sync_close();
}

SHIM_API int close(int fd)
{
	bool last;
	int r;

	READY(close);
	last = forget(fd);
	r = real.close(fd);
	if (last && r == 0)
		shim_sync_close();
	return r;
}

SHIM_API int close_range(unsigned first, unsigned last, int flags)
{
	int r;

	READY(close_range);
	if (!real.close_range) {
		errno = ENOSYS;
		return -1;
	}
	r = real.close_range(first, last, flags);
	if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
		forget_range(first, last);
	return r;
}

/* After a dup of old into new (n >= 0), new shares old's channel end. */
static int dup_done(int old, int n)
{
	struct sfd *s;

	if (n < 0)
		return n;
	/* dup2 and dup3 closed what n was. */
	if (fdtab_clear(n))
		shim_sync_close();
	s = fdtab_get(old);
	if (s) {
		fdtab_set(n, s);
		sfd_put(s);
	}
	return n;
}

SHIM_API int dup(int fd)
{
	READY(dup);
	return dup_done(fd, real.dup(fd));
}

SHIM_API int dup2(int old, int new)
{
	READY(dup2);
	if (old == new)
		return real.dup2(old, new);
	return dup_done(old, real.dup2(old, new));
}

SHIM_API int dup3(int old, int new, int flags)
{
	READY(dup3);
	return dup_done(old, real.dup3(old, new, flags));
}

/* The kernel sets O_LARGEFILE on every open file of a 64-bit process, but
 * not on pipes and sockets; libc's headers define it as 0 there. */
#if defined(__x86_64__) || defined(__aarch64__)
#define KERNEL_O_LARGEFILE	0100000
#else
#define KERNEL_O_LARGEFILE	0
#endif

static int access_mode(const struct sfd *s)
{
	switch (s->roles & (IPCD_ROLE_READ | IPCD_ROLE_WRITE)) {
	case IPCD_ROLE_READ: return O_RDONLY;
	case IPCD_ROLE_WRITE: return O_WRONLY;
	default: return O_RDWR;
	}
}

/* fcntl on a channel end s (a reference the caller gives up). */
static int shim_fcntl(int (*fn)(int, int, ...), struct sfd *s, int fd, int cmd,
		      unsigned long arg)
{
	int r;

	switch (cmd) {
	case F_GETFL:
		r = fn(fd, F_GETFL);
		if (r >= 0)
			r = (r & ~(O_ACCMODE | O_NONBLOCK | KERNEL_O_LARGEFILE)) | access_mode(s) |
			    (atomic_load(&s->nonblock) ? O_NONBLOCK : 0);
		break;
	case F_SETFL:
		r = fn(fd, F_SETFL, (arg & ~O_ACCMODE) | O_RDWR);
		if (r == 0)
			atomic_store(&s->nonblock, !!(arg & O_NONBLOCK));
		break;
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		r = fn(fd, cmd, arg);
		if (r >= 0) {
			fdtab_clear(r);
			fdtab_set(r, s);
		}
		break;
	case F_GETPIPE_SZ:
		if (s->kind != SK_PIPE) {
			errno = EBADF;
			r = -1;
		} else {
			r = (int)ipcd_capacity(atomic_load(&s->c));
		}
		break;
	case F_SETPIPE_SZ:
		/* A ring keeps its size: fine when it is already as big. */
		if (s->kind != SK_PIPE) {
			errno = EBADF;
			r = -1;
		} else if (arg <= ipcd_capacity(atomic_load(&s->c))) {
			r = (int)ipcd_capacity(atomic_load(&s->c));
		} else {
			errno = EBUSY;
			r = -1;
		}
		break;
	default:
		r = fn(fd, cmd, arg);
	}
	sfd_put(s);
	return r;
}

/*
 * fcntl and fcntl64 are variadic, and a variadic function cannot pass the
 * call on with a tail jump: the wrapper's frame stays under libc's, and the
 * return through it after the system call costs about 10 ns here (the
 * return predictions do not survive the kernel).  Where the optional
 * argument travels in a register just as a named one would (x86-64, and
 * AArch64 on Linux), the wrappers take it as a named argument instead, and
 * a call on an fd that is not a channel jumps straight into libc.
 */
#if defined(__x86_64__) || defined(__aarch64__)
#define FCNTL_ENTRY(name)						\
	SHIM_API int name##_entry(int fd, int cmd, unsigned long arg)	\
		__asm__(#name);						\
	SHIM_API int name##_entry(int fd, int cmd, unsigned long arg)
#define FCNTL_ARG()	((void)0)
#else
#define FCNTL_ENTRY(name)						\
	SHIM_API int name(int fd, int cmd, ...)
#define FCNTL_ARG()	unsigned long arg;				\
	do {								\
		va_list ap;						\
		va_start(ap, cmd);					\
		arg = va_arg(ap, unsigned long);			\
		va_end(ap);						\
	} while (0)
#endif

FCNTL_ENTRY(fcntl)
{
	struct sfd *s;
	FCNTL_ARG();

	READY(fcntl);
	s = fdtab_get(fd);
	if (!s)
		return real.fcntl(fd, cmd, arg);
	return shim_fcntl(real.fcntl, s, fd, cmd, arg);
}

/* What callers built with 64-bit file offsets call instead. */
FCNTL_ENTRY(fcntl64)
{
	int (*fn)(int, int, ...);
	struct sfd *s;
	FCNTL_ARG();

	READY(fcntl64);
	fn = real.fcntl64 ? real.fcntl64 : real.fcntl;
	s = fdtab_get(fd);
	if (!s)
		return fn(fd, cmd, arg);
	return shim_fcntl(fn, s, fd, cmd, arg);
}

SHIM_API int ioctl(int fd, unsigned long req, ...)
{
	struct sfd *s;
	va_list ap;
	void *arg;
	ssize_t n;
	int r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	READY(ioctl);
	s = fdtab_get(fd);
	if (!s)
		return real.ioctl(fd, req, arg);
	if (req == FIONREAD) {
		/* A datagram socket says its next message, the others all. */
		n = s->kind == SK_DGRAM ? ipcd_readable(atomic_load(&s->c))
					: ipcd_queued(atomic_load(&s->c));
		r = n < 0 ? (errno = EIO, -1) : (*(int *)arg = (int)n, 0);
	} else if (req == FIONBIO) {
		atomic_store(&s->nonblock, !!*(int *)arg);
		r = real.ioctl(fd, req, arg);
	} else {
		r = real.ioctl(fd, req, arg);
	}
	sfd_put(s);
	return r;
}

/* fstat of a channel end shows what it stands in for. */
static void fake_stat(const struct sfd *s, struct stat *st)
{
	st->st_mode = s->kind == SK_PIPE ? (S_IFIFO | 0600) : (S_IFSOCK | 0777);
	st->st_size = 0;
	st->st_blocks = 0;
	st->st_nlink = 1;
	st->st_blksize = 4096;
}

#define STAT_BODY(call)							\
	struct sfd *s;							\
	int r = (call);							\
	if (r == 0 && (s = fdtab_get(fd))) {				\
		struct stat tmp;					\
		memset(&tmp, 0, sizeof(tmp));				\
		fake_stat(s, &tmp);					\
		(st)->st_mode = tmp.st_mode;				\
		(st)->st_size = tmp.st_size;				\
		(st)->st_blocks = tmp.st_blocks;			\
		(st)->st_nlink = tmp.st_nlink;				\
		(st)->st_blksize = tmp.st_blksize;			\
		sfd_put(s);						\
	}								\
	return r

SHIM_API int fstat(int fd, struct stat *st)
{
	READY(fstat);
	STAT_BODY(real.fstat(fd, st));
}

SHIM_API int fstat64(int fd, struct stat64 *st)
{
	READY(fstat64);
	STAT_BODY(real.fstat64(fd, st));
}

SHIM_API int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	int fd = (flags & AT_EMPTY_PATH) && !*path ? dirfd : -1;

	READY(fstatat);
	STAT_BODY(real.fstatat(dirfd, path, st, flags));
}

SHIM_API int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	int fd = (flags & AT_EMPTY_PATH) && !*path ? dirfd : -1;

	READY(fstatat64);
	STAT_BODY(real.fstatat64(dirfd, path, st, flags));
}

SHIM_API off_t lseek(int fd, off_t off, int whence)
{
	struct sfd *s;

	READY(lseek);
	s = fdtab_get(fd);
	if (!s)
		return real.lseek(fd, off, whence);
	sfd_put(s);
	errno = ESPIPE;
	return -1;
}

SHIM_API off64_t lseek64(int fd, off64_t off, int whence)
{
	struct sfd *s;

	READY(lseek64);
	s = fdtab_get(fd);
	if (!s)
		return real.lseek64(fd, off, whence);
	sfd_put(s);
	errno = ESPIPE;
	return -1;
}

/* ---- sockets ------------------------------------------------------------- */

SHIM_API int shutdown(int fd, int how)
{
	struct sfd *s;
	ssize_t e;
	uint32_t keep;
	int r = 0;

	READY(shutdown);
	s = sock_get(fd, &e);
	if (!s)
		return e ? (int)ret(e) : real.shutdown(fd, how);
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) {
		sfd_put(s);
		errno = EINVAL;
		return -1;
	}
	keep = s->roles;
	if (how != SHUT_WR)
		keep &= ~IPCD_ROLE_READ;
	if (how != SHUT_RD)
		keep &= ~IPCD_ROLE_WRITE;
	if (keep != s->roles) {
		/* The peer learns it from the daemon: EOF, or EPIPE. */
		r = real.ioctl(fd, IPCD_IOC_SHUTROLE, &keep);
		if (r == 0 && !(keep & IPCD_ROLE_READ))
			atomic_store(&s->shut_rd, 1);	/* reads now give 0 */
		if (r == 0 && !(keep & IPCD_ROLE_WRITE))
			s->roles &= ~IPCD_ROLE_WRITE;	/* writes now give EPIPE */
	}
	sfd_put(s);
	return r;
}

SHIM_API int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	struct sfd *s;
	ssize_t e;
	int v, r = 0;

	READY(getsockopt);
	s = sock_get(fd, &e);
	if (!s)
		return e ? (int)ret(e) : real.getsockopt(fd, level, opt, val, len);
	if (level != SOL_SOCKET || !val || !len || *len < sizeof(int)) {
		errno = level != SOL_SOCKET ? EOPNOTSUPP : EINVAL;
		r = -1;
	} else {
		switch (opt) {
		case SO_TYPE:
			v = s->kind == SK_STREAM ? SOCK_STREAM :
			    s->kind == SK_DGRAM ? SOCK_DGRAM : SOCK_SEQPACKET;
			break;
		case SO_DOMAIN: v = AF_UNIX; break;
		case SO_PROTOCOL: v = 0; break;
		case SO_ERROR: v = 0; break;
		case SO_ACCEPTCONN: v = 0; break;
		case SO_SNDBUF:
		case SO_RCVBUF: v = (int)ipcd_capacity(atomic_load(&s->c)); break;
		default:
			errno = ENOPROTOOPT;
			r = -1;
		}
		if (r == 0) {
			memcpy(val, &v, sizeof(v));
			*len = sizeof(v);
		}
	}
	sfd_put(s);
	return r;
}

SHIM_API int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct sfd *s;
	ssize_t e;

	READY(setsockopt);
	s = sock_get(fd, &e);
	if (!s)
		return e ? (int)ret(e) : real.setsockopt(fd, level, opt, val, len);
	sfd_put(s);
	/* Buffer sizes and the like: the ring's are fixed; accept quietly. */
	if (level != SOL_SOCKET) {
		errno = EOPNOTSUPP;
		return -1;
	}
	return 0;
}

/* getsockname and getpeername: a socket pair end has no address. */
static int sock_name(int (*fn)(int, struct sockaddr *, socklen_t *), int fd,
		     struct sockaddr *addr, socklen_t *alen)
{
	struct sfd *s;
	ssize_t e;

	s = sock_get(fd, &e);
	if (!s)
		return e ? (int)ret(e) : fn(fd, addr, alen);
	family_only(addr, alen);
	sfd_put(s);
	return 0;
}

SHIM_API int getsockname(int fd, struct sockaddr *addr, socklen_t *alen)
{
	READY(getsockname);
	return sock_name(real.getsockname, fd, addr, alen);
}

SHIM_API int getpeername(int fd, struct sockaddr *addr, socklen_t *alen)
{
	READY(getpeername);
	return sock_name(real.getpeername, fd, addr, alen);
}

/* ---- positioned I/O, vfork, raw close ------------------------------------- */

static bool is_chan(int fd)
{
	struct sfd *s = fdtab_get(fd);

	if (s)
		sfd_put(s);
	return s != NULL;
}

#define POSITIONED(type, name, args, call)				\
SHIM_API type name args							\
{									\
	type (*fn) args = real.name;					\
	if (__builtin_expect(!fn, 0)) {					\
		shim_init();						\
		fn = real.name;						\
	}								\
	if (is_chan(fd)) {						\
		errno = ESPIPE;						\
		return -1;						\
	}								\
	return fn call;							\
}

POSITIONED(ssize_t, pread, (int fd, void *b, size_t n, off_t o), (fd, b, n, o))
POSITIONED(ssize_t, pwrite, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o))
POSITIONED(ssize_t, pread64, (int fd, void *b, size_t n, off64_t o), (fd, b, n, o))
POSITIONED(ssize_t, pwrite64, (int fd, const void *b, size_t n, off64_t o), (fd, b, n, o))

/*
 * vfork: the child would share our memory, fd table included, and its
 * dup2/close before exec would rewrite the parent's view.  fork gives the
 * same result to a caller that only execs or exits.
 */
SHIM_API pid_t vfork(void)
{
	return fork();
}

/* Programs that close through syscall(2) must not leave stale entries. */
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
	if (nr == SYS_close && fdtab_any()) {
		bool last = forget((int)a[0]);
		long r = real.syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);

		if (last && r == 0)
			shim_sync_close();
		return r;
	} else if ((nr == SYS_dup2 || nr == SYS_dup3) && fdtab_any()) {
		long r = real.syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);

		return r < 0 ? r : dup_done((int)a[0], (int)r);
	} else if (nr == SYS_close_range && fdtab_any() && !(a[2] & CLOSE_RANGE_CLOEXEC)) {
		long r = real.syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);

		if (r == 0)
			forget_range((unsigned)a[0], (unsigned)a[1]);
		return r;
	}
	return real.syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
