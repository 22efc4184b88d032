/*
 * calls.c - the interposed libc entry points on descriptors: making pairs,
 * moving bytes, closing and duplicating, fcntl, ioctl, stat, socket calls.
 * Each one looks the fd up in the channel table (a few loads, no lock) and,
 * when it is not a channel end, calls straight through to libc.  On a
 * channel end it behaves as libc would on a kernel pipe or socket pair: -1
 * and errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"

#ifndef FIGETBSZ
#define FIGETBSZ	_IO(0x00, 2)	/* <linux/fs.h>, which clashes with libc's */
#endif

#define READY(fn) do { if (__builtin_expect(!real.fn, 0)) shim_init(); } while (0)

static ssize_t ret(ssize_t n)
{
	if (n < 0) {
		errno = (int)-n;
		return -1;
	}
	return n;
}

/* Whether the caller's n bytes at p can be written: a call the kernel
 * served would fail with EFAULT otherwise. */
static bool user_writable(void *p, size_t n)
{
	return shim_user_ok(p, n, true);
}

/* A path argument that can be looked at: not NULL (the call itself then
 * gives EFAULT for one that cannot be read). */
static bool user_string(const char *p)
{
	__asm__("" : "+r"(p));
	return p != NULL;
}

static bool pair_writable(int fds[2])
{
	return user_writable(fds, 2 * sizeof(int));
}

/* The channel end of fd, attached, for one call: NULL if fd is not one
 * (an fd noted on arrival that turns out not to be one is forgotten). */
static struct sfd *get(int fd, bool *borrowed)
{
	struct sfd *s = fdtab_borrow(fd, borrowed);

	if (!s || sfd_chan(s, fd))
		return s;
	if (s->slow) {
		sfd_return(s, *borrowed);
		return NULL;
	}
	sfd_return(s, *borrowed);
	s = fdtab_clear(fd);
	if (s)
		sfd_put(s);
	return NULL;
}

static struct sfd *get_ref(int fd)
{
	struct sfd *s = fdtab_get(fd);

	if (!s || sfd_chan(s, fd))
		return s;
	if (s->slow) {
		sfd_put(s);
		return NULL;
	}
	sfd_put(s);
	s = fdtab_clear(fd);
	if (s)
		sfd_put(s);
	return NULL;
}

/* ---- creation ------------------------------------------------------------ */

/* The kernel's pipe; out of descriptors, the shim's own first give room
 * (pairs.c, shim_own_fds_release), so that the program gets as many as
 * the kernel would give it. */
static int kernel_pipe2(int fds[2], int flags)
{
	int r = real.pipe2(fds, flags);

	if (r < 0 && errno == EMFILE) {
		shim_own_fds_release();
		r = real.pipe2(fds, flags);
	}
	return r;
}

/* pipe2() called from pc (the caller's return address). */
static int pipe_at(int fds[2], int flags, uintptr_t pc)
{
	uint64_t site;

	READY(pipe2);
	if (!shim_on || (flags & ~(O_NONBLOCK | O_CLOEXEC | O_DIRECT)) ||
	    shim_in_vfork_child())
		return real.pipe2(fds, flags);	/* and the kernel's EINVAL */
	if (!pair_writable(fds)) {
		errno = EFAULT;
		return -1;
	}
	site = shim_site_key(pc);
	if (shim_site_kernel(site))
		return kernel_pipe2(fds, flags);
	if (shim_make_pair(fds, SK_PIPE, flags, site) == 0)
		return 0;
	return kernel_pipe2(fds, flags);
}

SHIM_API int pipe2(int fds[2], int flags)
{
	return pipe_at(fds, flags, (uintptr_t)__builtin_return_address(0));
}

SHIM_API int pipe(int fds[2])
{
	return pipe_at(fds, 0, (uintptr_t)__builtin_return_address(0));
}

SHIM_API int socketpair(int domain, int type, int proto, int sv[2])
{
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	int flags = ((type & SOCK_NONBLOCK) ? O_NONBLOCK : 0) |
		    ((type & SOCK_CLOEXEC) ? O_CLOEXEC : 0);
	enum skind kind;
	uint64_t site;
	int r;

	READY(socketpair);
	if (!shim_on || !shim_sockets || domain != AF_UNIX || proto != 0 ||
	    shim_in_vfork_child())
		return real.socketpair(domain, type, proto, sv);
	if (base == SOCK_STREAM)
		kind = SK_STREAM;
	else if (base == SOCK_DGRAM)
		kind = SK_DGRAM;
	else if (base == SOCK_SEQPACKET)
		kind = SK_SEQPACKET;
	else
		return real.socketpair(domain, type, proto, sv);
	if (!pair_writable(sv)) {
		errno = EFAULT;
		return -1;
	}
	site = shim_site_key((uintptr_t)__builtin_return_address(0));
	if (!shim_site_kernel(site) && shim_make_pair(sv, kind, flags, site) == 0)
		return 0;
	r = real.socketpair(domain, type, proto, sv);
	if (r < 0 && errno == EMFILE) {	/* as kernel_pipe2 */
		shim_own_fds_release();
		r = real.socketpair(domain, type, proto, sv);
	}
	return r;
}

/* ---- data ---------------------------------------------------------------- */

SHIM_API ssize_t read(int fd, void *buf, size_t len)
{
	struct sfd *s;
	bool borrowed;
	ssize_t n;

	SHIM_MARK_CALL();
	READY(read);
	s = get(fd, &borrowed);
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
	s = get(fd, &borrowed);
	if (!s)
		return real.write(fd, buf, len);
	n = shim_write(s, fd, buf, len, 0, NULL);
	sfd_return(s, borrowed);
	return ret(n);
}

/* An iovec array of cnt pieces the kernel would take: its count (more
 * than IOV_MAX: toomany), memory and lengths. */
static ssize_t iov_check(const struct iovec *iov, size_t cnt, ssize_t toomany)
{
	size_t i;

	if (cnt > IOV_MAX)
		return toomany;
	if (!shim_user_ok(iov, cnt * sizeof(*iov), false))
		return -EFAULT;
	for (i = 0; i < cnt; i++)
		if ((ssize_t)iov[i].iov_len < 0)
			return -EINVAL;
	return 0;
}

SHIM_API ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	struct sfd *s;
	ssize_t n;

	SHIM_MARK_CALL();
	READY(readv);
	s = get_ref(fd);
	if (!s)
		return real.readv(fd, iov, cnt);
	n = iov_check(iov, (size_t)cnt, -EINVAL);
	if (!n)
		n = shim_readv(s, fd, iov, cnt, 0, NULL, NULL);
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	struct sfd *s;
	ssize_t n;

	READY(writev);
	s = get_ref(fd);
	if (!s)
		return real.writev(fd, iov, cnt);
	n = iov_check(iov, (size_t)cnt, -EINVAL);
	if (!n)
		n = shim_writev(s, fd, iov, cnt, 0, NULL);
	sfd_put(s);
	return ret(n);
}

/* A socket call on a pipe channel fails as on a kernel pipe. */
static struct sfd *sock_get(int fd, ssize_t *err)
{
	struct sfd *s = get_ref(fd);

	*err = 0;
	if (s && s->kind == SK_PIPE) {
		sfd_put(s);
		*err = -ENOTSOCK;
		return NULL;
	}
	return s;
}

static ssize_t do_recv(struct sfd *s, int fd, void *buf, size_t len, int flags)
{
	size_t full = 0;
	ssize_t n;

	/* Flags a socket pair does not use are ignored, as the kernel does;
	 * MSG_OOB is refused by shim_read. */
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

	SHIM_MARK_CALL();
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

/* getsockname/getpeername of a socket pair end: AF_UNIX, no path; as the
 * kernel, as much of it as *alen asks for, and its whole length in *alen. */
static ssize_t family_only(struct sockaddr *addr, socklen_t *alen)
{
	sa_family_t fam = AF_UNIX;
	size_t k;

	if (!shim_user_ok(alen, sizeof(*alen), true))
		return -EFAULT;
	if ((int)*alen < 0)
		return -EINVAL;
	k = *alen < sizeof(fam) ? *alen : sizeof(fam);
	if (!shim_user_ok(addr, k, true))
		return -EFAULT;
	memcpy(addr, &fam, k);
	*alen = sizeof(fam);
	return 0;
}

/* The sender on a socket pair has no address: the kernel gives length 0,
 * once the bytes are taken (so a bad length loses them). */
static ssize_t unnamed(socklen_t *alen)
{
	if (!shim_user_ok(alen, sizeof(*alen), true))
		return -EFAULT;
	if ((int)*alen < 0)
		return -EINVAL;
	*alen = 0;
	return 0;
}

SHIM_API ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
			  struct sockaddr *addr, socklen_t *alen)
{
	struct sfd *s;
	ssize_t n, e;

	SHIM_MARK_CALL();
	READY(recvfrom);
	s = sock_get(fd, &n);
	if (!s)
		return n ? ret(n) : real.recvfrom(fd, buf, len, flags, addr, alen);
	n = do_recv(s, fd, buf, len, flags);
	if (n >= 0 && addr && (e = unnamed(alen)) < 0)
		n = e;
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

/* A msghdr the kernel would take, as far as it looks before the socket's
 * own code does: its memory (written back after a receive), its name
 * length, its pieces. */
static ssize_t msg_check(const struct msghdr *msg, bool recv)
{
	if (!shim_user_ok(msg, sizeof(*msg), recv))
		return -EFAULT;
	if (msg->msg_name && (int)msg->msg_namelen < 0)
		return -EINVAL;
	return iov_check(msg->msg_iov, msg->msg_iovlen, -EMSGSIZE);
}

SHIM_API ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct shim_rx rx;
	struct sfd *s;
	size_t full = 0, len;
	ssize_t n;
	bool ctl;
	int i;

	SHIM_MARK_CALL();
	READY(recvmsg);
	s = sock_get(fd, &n);
	if (!s) {
		if (n)
			return ret(n);
		n = real.recvmsg(fd, msg, flags);
		if (n >= 0 && msg->msg_controllen && shim_on)
			shim_adopt_rights(msg, flags);	/* channel ends passed to us */
		return n;
	}
	n = msg_check(msg, true);
	if (!n) {
		/* Descriptors that cannot be put in the control buffer are
		 * closed, as the kernel closes them. */
		ctl = msg->msg_control &&
		      shim_user_ok(msg->msg_control, msg->msg_controllen, true);
		rx.fd = fd;
		rx.c = atomic_load(&s->c);
		rx.want = ctl && msg->msg_controllen >= CMSG_LEN(sizeof(int));
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
			if (!ctl)
				msg->msg_controllen = 0;
			shim_put_rights(msg, &rx);
			if (msg->msg_name)
				msg->msg_namelen = 0;	/* the sender has no address */
		}
	}
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct sfd *s;
	ssize_t n;

	READY(send);
	s = sock_get(fd, &n);
	if (!s)
		return n ? ret(n) : real.send(fd, buf, len, flags);
	/* Flags a socket pair does not use are ignored, as the kernel does. */
	n = shim_write(s, fd, buf, len, flags, NULL);
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
		n = shim_write(s, fd, buf, len, flags, NULL);
	sfd_put(s);
	return ret(n);
}

SHIM_API ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct sfd *s;
	ssize_t n;

	READY(sendmsg);
	s = sock_get(fd, &n);
	if (!s) {
		if (n)
			return ret(n);
		shim_msg_leaving(msg);
		return real.sendmsg(fd, msg, flags);
	}
	n = msg_check(msg, false);
	if (!n && msg->msg_name && msg->msg_namelen)
		n = -EISCONN;
	else if (!n && msg->msg_controllen)
		n = shim_sendmsg_anc(s, fd, msg, flags);
	else if (!n)
		n = shim_writev(s, fd, msg->msg_iov, (int)msg->msg_iovlen, flags, NULL);
	sfd_put(s);
	return ret(n);
}

/*
 * The batch forms: on a socket pair channel, one message at a time, as the
 * kernel does (it stops at the first that fails, reporting it only if none
 * went through).
 */
SHIM_API int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	struct sfd *s;
	ssize_t r;
	unsigned i;

	READY(sendmmsg);
	s = sock_get(fd, &r);
	if (!s) {
		if (r)
			return (int)ret(r);
		for (i = 0; v && i < n; i++)
			shim_msg_leaving(&v[i].msg_hdr);
		return real.sendmmsg(fd, v, n, flags);
	}
	sfd_put(s);
	if (n > UIO_MAXIOV)
		n = UIO_MAXIOV;
	for (i = 0; i < n; i++) {
		r = sendmsg(fd, &v[i].msg_hdr, flags);
		if (r < 0)
			return i ? (int)i : -1;
		v[i].msg_len = (unsigned)r;
	}
	return (int)i;
}

SHIM_API int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
{
	struct sfd *s;
	ssize_t r;
	unsigned i;

	READY(recvmmsg);
	s = sock_get(fd, &r);
	if (!s) {
		if (r)
			return (int)ret(r);
		r = real.recvmmsg(fd, v, n, flags, t);
		for (i = 0; r > 0 && shim_on && i < (unsigned)r; i++)
			if (v[i].msg_hdr.msg_controllen)
				shim_adopt_rights(&v[i].msg_hdr, flags);
		return (int)r;
	}
	sfd_put(s);
	if (n > UIO_MAXIOV)
		n = UIO_MAXIOV;
	/* MSG_WAITFORONE: only the first may wait.  A timeout is not kept to
	 * (as the kernel keeps it only between messages, after the first). */
	for (i = 0; i < n; i++) {
		r = recvmsg(fd, &v[i].msg_hdr,
			    (flags & ~MSG_WAITFORONE) | (i && (flags & MSG_WAITFORONE) ?
							 MSG_DONTWAIT : 0));
		if (r < 0)
			return i ? (int)i : -1;
		v[i].msg_len = (unsigned)r;
		if (t && i == 0 && !(flags & MSG_WAITFORONE))
			flags |= MSG_DONTWAIT;
	}
	return (int)i;
}

/* ---- descriptors ---------------------------------------------------------- */

/* An end whose last fd here goes: let go of it (before the close, as an
 * end noted but never mapped still needs its fd for that). */
static struct sfd *going(int fd)
{
	struct sfd *s = fdtab_clear(fd);

	shim_epoll_forget(fd);
	if (s)
		hold_last(s, fd);	/* may keep a copy of it (pairs.c) */
	return s;
}

/*
 * After the close of s's last fd here: if the holders protocol could not
 * say it (this process is not among the end's holders), make sure the
 * daemon has seen the close before close() returns (shim_sync's comment),
 * so that its peers see the end of file or EPIPE at once.
 */
static void gone(struct sfd *s, bool counted, int r)
{
	if (r == 0 && !counted && (atomic_load(&s->c) || s->slow)) {
		int e = errno;

		/* Any request will do: the daemon answers in order. */
		if (getxattr(shim_mount_dir(), IPCD_XATTR_STATUS, NULL, 0) < 0)
			shim_log("cannot reach the daemon after a close: %s", strerror(errno));
		errno = e;
	}
	sfd_put(s);
}

/* close(fd) with the close function fn (libc's close, or its _nocancel). */
int shim_close_fd(int fd, int (*fn)(int))
{
	struct sfd *s;
	bool counted;
	int r;

	if (fd >= SHIM_OWN_FDS)
		shim_own_fds_gone((unsigned)fd, (unsigned)fd);
	if (!fdtab_any() || shim_in_vfork_child())
		return fn(fd);	/* a vfork child's closes are not ours to note */
	s = fdtab_get(fd);
	if (!s)
		return fn(fd);
	counted = atomic_load(&s->counted);
	sfd_put(s);
	s = going(fd);
	r = fn(fd);
	if (s)
		gone(s, counted, r);
	return r;
}

SHIM_API int close(int fd)
{
	READY(close);
	return shim_close_fd(fd, real.close);
}

struct range {
	unsigned first, last;
	int flags;
	struct sfd *gone[64];
	bool counted[64];
	int n;
};

static void range_one(int fd, struct sfd *s, void *arg)
{
	struct range *rg = arg;

	(void)s;
	if ((unsigned)fd < rg->first || (unsigned)fd > rg->last)
		return;
	if (rg->flags & CLOSE_RANGE_CLOEXEC) {
		fdtab_set_cloexec(fd, true);
		return;
	}
	if (rg->n < 64) {
		rg->counted[rg->n] = atomic_load(&s->counted);
		rg->gone[rg->n] = going(fd);
		if (rg->gone[rg->n])
			rg->n++;
	} else {
		struct sfd *g = going(fd);

		if (g)
			sfd_put(g);	/* too many at once: no catching up */
	}
}

SHIM_API int close_range(unsigned first, unsigned last, int flags)
{
	struct range rg = { first, last, flags, { 0 }, { 0 }, 0 };
	int r, i;

	READY(close_range);
	if (!real.close_range) {
		errno = ENOSYS;
		return -1;
	}
	if (!fdtab_any() || shim_in_vfork_child() || first > last ||
	    (flags & ~(CLOSE_RANGE_CLOEXEC | CLOSE_RANGE_UNSHARE))) {
		if (first <= last && !(flags & ~CLOSE_RANGE_UNSHARE))
			shim_own_fds_gone(first, last);
		return real.close_range(first, last, flags);
	}
	fdtab_each(range_one, &rg);
	/* After the ends let go of: a copy kept of one may lie in the range. */
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		shim_own_fds_gone(first, last);
	r = real.close_range(first, last, flags);
	for (i = 0; i < rg.n; i++)
		gone(rg.gone[i], rg.counted[i], r);
	return r;
}

/*
 * fd's close-on-exec flag was set (on) or cleared.  In a vfork child, which
 * must not change our table, an end made inheritable goes along with the
 * program it runs: a placeholder for it, and its number in the list for
 * that program, as for a dup2 there.
 */
static void cloexec_set(struct sfd *s, int fd, bool on)
{
	if (!shim_in_vfork_child()) {
		fdtab_set_cloexec(fd, on);
	} else if (!on && fdtab_cloexec(fd)) {
		hold_vfork_dup(s, fd);
		shim_vfork_dup(fd);
	}
}

/* dup2/dup3 of old over new, with the real call fn (cloexec: of new). */
static int dup_over(int old, int new, int flags, bool cloexec,
		    int (*fn)(int, int, int))
{
	struct sfd *s = NULL, *was = NULL;
	bool counted = false;
	int r;

	if (new >= SHIM_OWN_FDS && old != new && real.fcntl(old, F_GETFD) >= 0)
		shim_own_fds_gone((unsigned)new, (unsigned)new);
	if (!fdtab_any() || old == new)
		return fn(old, new, flags);
	if (shim_in_vfork_child()) {
		/* A vfork child setting up what the program it runs keeps. */
		r = fn(old, new, flags);
		s = r >= 0 && !cloexec ? fdtab_get(old) : NULL;
		if (s) {
			hold_vfork_dup(s, new);
			shim_vfork_dup(new);
			sfd_put(s);
		}
		return r;
	}
	s = fdtab_get(new);
	if (s) {
		counted = atomic_load(&s->counted);
		sfd_put(s);
		/* With a bad old, the call fails and new stays as it was. */
		if (real.fcntl(old, F_GETFD) < 0)
			return fn(old, new, flags);
		was = going(new);	/* dup2 closes what new was */
	}
	r = fn(old, new, flags);
	if (was)
		gone(was, counted, r);
	if (r >= 0 && (s = fdtab_get(old))) {
		fdtab_set(r, s, cloexec);
		sfd_put(s);
	}
	return r;
}

static int dup2_3(int old, int new, int flags)
{
	(void)flags;
	return real.dup2(old, new);
}

/* ---- pipes that only wait ------------------------------------------------- */

/*
 * A pipe that this process made and alone holds both ends of, and waits on
 * in poll or select: a channel saves nothing there, while each such wait
 * costs a poll request to the daemon and a wake-up through its
 * coordination core.  make's jobserver pipe and a program's self-pipe are
 * such pipes.  Put a kernel pipe on both of its fds instead, with the
 * bytes it held, its size and its flags, as if the program had made a
 * kernel pipe; the channel goes back to be kept for another pipe.  Only in
 * a single-threaded process, with signal handlers held off: nothing else
 * is in a call on either end meanwhile.
 */
bool shim_demote(int fd)
{
	struct sfd *s, *e[2] = { NULL, NULL };
	struct shim_sighold h = { .on = false };
	int k[2] = { -1, -1 }, pfd[2], nfd[2], cloexec[2], i;
	bool ok = false, counted[2];
	const struct smap *m;
	char buf[4096];
	uint64_t q;
	uint32_t limit;
	ssize_t n = 0;

	if (!shim_learning() || !fdtab_quiet() || shim_in_vfork_child() || !(s = fdtab_get(fd)))
		return false;
	m = s->m;
	ok = s->kind == SK_PIPE && s->made_here && m && !atomic_load(&s->dirty) &&
	     m->r0->anon == IPCD_ANON_PIPE && hold_pair_alone(s);
	sfd_put(s);	/* the table keeps it: nothing else runs meanwhile */
	if (!ok)
		return false;
	ok = false;
	hold_pair_here(m, pfd, nfd);
	if (nfd[0] != 1 || nfd[1] != 1)
		return false;	/* dup'ed ends: left as they are */
	for (i = 0; i < 2; i++) {
		e[i] = fdtab_get(pfd[i]);
		/* The table's reference and ours only: no call in flight (one a
		 * signal handler's poll interrupted, say). */
		if (!e[i] || e[i]->m != m || atomic_load(&e[i]->refs) != 2 ||
		    (cloexec[i] = real.fcntl(pfd[i], F_GETFD)) < 0)
			goto out;
	}
	q = atomic_load(&m->r0->tail) - atomic_load(&m->r0->head);
	limit = atomic_load(&m->r0->limit);
	if (q > sizeof(buf))
		goto out;
	shim_signals_hold(&h);
	if (real.pipe2(k, O_CLOEXEC) < 0 ||
	    (limit && limit != IPCD_PIPE_SIZE && real.fcntl(k[1], F_SETPIPE_SZ, (int)limit) < 0))
		goto out;
	/* From here on the bytes are in hand: nothing may fail them. */
	if (q)
		n = shim_read(e[0], pfd[0], buf, (size_t)q, MSG_DONTWAIT, NULL, NULL);
	if (n > 0 && real.write(k[1], buf, (size_t)n) != n)
		shim_log("demoting a pipe: %zd bytes could not be moved", n);
	/* Only the table's references stay, so that each end goes as at a
	 * close (fdtab_clear); nothing else can take one meanwhile. */
	for (i = 0; i < 2; i++) {
		counted[i] = atomic_load(&e[i]->counted);
		if (atomic_load(&e[i]->nonblock))
			real.fcntl(k[i], F_SETFL, O_NONBLOCK);
		sfd_put(e[i]);
		e[i] = NULL;
	}
	for (i = 1; i >= 0; i--) {
		struct sfd *was;
		int r;

		was = going(pfd[i]);
		r = real.dup3(k[i], pfd[i], (cloexec[i] & FD_CLOEXEC) ? O_CLOEXEC : 0);
		if (was)
			gone(was, counted[i], r);
	}
	shim_log("pipe on fds %d and %d: a kernel pipe now, with %zd bytes", pfd[0], pfd[1], n);
	ok = true;
out:
	for (i = 0; i < 2; i++) {
		if (k[i] >= 0)
			real.close(k[i]);
		if (e[i])
			sfd_put(e[i]);
	}
	shim_signals_release(&h);
	return ok;
}

SHIM_API int dup(int fd)
{
	struct sfd *s;
	int r;

	READY(dup);
	r = real.dup(fd);
	if (r >= 0 && fdtab_any() && (s = fdtab_get(fd))) {
		if (shim_in_vfork_child())
			shim_vfork_dup(r);
		else
			fdtab_set(r, s, false);
		sfd_put(s);
	}
	return r;
}

SHIM_API int dup2(int old, int new)
{
	READY(dup2);
	return dup_over(old, new, 0, false, dup2_3);
}

SHIM_API int dup3(int old, int new, int flags)
{
	READY(dup3);
	return dup_over(old, new, flags, flags & O_CLOEXEC, real.dup3);
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

/* The flags a pair's end carries to say which end it is (ring.h). */
static int end_marks(const struct sfd *s)
{
	return s->end < 0 ? 0 : O_NOATIME | (s->end ? O_APPEND : 0);
}

/* F_SETPIPE_SZ: the kernel's rounding (a power of two of pages, at least
 * one) and limits, within the ring's capacity. */
static int set_pipe_size(struct sfd *s, int fd, unsigned long arg)
{
	struct ipcd_chan *c = sfd_chan(s, fd);
	unsigned long size = 4096, max = 1048576;
	char buf[32];
	int pfd, r;
	ssize_t n;

	if (!c)
		return -EIO;
	/* The kernel takes the argument as an unsigned int, whatever the
	 * register held above it. */
	arg = (unsigned int)arg;
	if (arg > 1UL << 31)
		return -EINVAL;
	while (size < arg)
		size <<= 1;
	pfd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC);
	if (pfd >= 0) {
		n = real.read(pfd, buf, sizeof(buf) - 1);
		real.close(pfd);
		if (n > 0) {
			buf[n] = 0;
			max = strtoul(buf, NULL, 10);
		}
	}
	if (size > max && geteuid() != 0)
		return -EPERM;
	if (size > ipcd_capacity(c))
		return -EPERM;	/* past the ring (ipcd-shim(7)) */
	do {
		r = ipcd_ring_set_limit(ipcd_out(c), size, ipcd_tid());
		if (r == -EBUSY && ipcd_ring_queued(ipcd_out(c)) <= (ssize_t)size)
			r = ipcd_ring_lock_wait(ipcd_out(c), IPCD_WAIT_SPACE) ?: -EAGAIN;
	} while (r == -EAGAIN);
	return r ? r : (int)size;
}

/* fcntl on a channel end s (a reference the caller gives up). */
static int shim_fcntl(int (*fn)(int, int, ...), struct sfd *s, int fd, int cmd,
		      unsigned long arg)
{
	struct sfd *stale;
	int r;

	switch (cmd) {
	case F_GETFL:
		r = fn(fd, F_GETFL);
		if (r >= 0)
			r = (r & ~(O_ACCMODE | O_NONBLOCK | KERNEL_O_LARGEFILE | end_marks(s))) |
			    access_mode(s) | (atomic_load(&s->nonblock) ? O_NONBLOCK : 0);
		break;
	case F_SETFL:
		/* The end keeps the flags that say which it is. */
		r = fn(fd, F_SETFL, (arg & ~(unsigned long)(O_ACCMODE | O_APPEND | O_NOATIME)) |
			O_RDWR | (unsigned long)end_marks(s));
		if (r == 0) {
			struct ipcd_chan *c = atomic_load(&s->c);

			if (arg & O_ASYNC)
				atomic_store(&s->dirty, true);
			atomic_store(&s->nonblock, !!(arg & O_NONBLOCK));
			if (c)
				ipcd_set_nonblock(c, !!(arg & O_NONBLOCK));
		}
		break;
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		r = fn(fd, cmd, arg);
		if (r >= 0 && cmd == F_DUPFD && shim_in_vfork_child())
			shim_vfork_dup(r);
		if (r >= 0 && !shim_in_vfork_child()) {
			stale = fdtab_clear(r);
			if (stale)
				sfd_put(stale);
			fdtab_set(r, s, cmd == F_DUPFD_CLOEXEC);
		}
		break;
	case F_SETFD:
		r = fn(fd, cmd, arg);
		if (r == 0)
			cloexec_set(s, fd, arg & FD_CLOEXEC);
		break;
	case F_GETPIPE_SZ:
		if (s->kind != SK_PIPE || !sfd_chan(s, fd)) {
			errno = EBADF;
			r = -1;
		} else {
			r = (int)ipcd_ring_limit(ipcd_out(atomic_load(&s->c)));
		}
		break;
	case F_SETPIPE_SZ:
		r = s->kind != SK_PIPE ? -EBADF : set_pipe_size(s, fd, arg);
		if (r < 0) {
			errno = -r;
			r = -1;
		}
		break;
	default:
		/* Owners of signals and leases stay with the open file. */
		if (cmd == F_SETOWN || cmd == F_SETOWN_EX || cmd == F_SETSIG ||
		    cmd == F_SETLEASE || cmd == F_NOTIFY)
			atomic_store(&s->dirty, true);
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

/* The result of a call passed on: as it is, or -errno. */
static int passed(int r)
{
	return r < 0 ? -errno : r;
}

/* An int argument of an ioctl, read as the kernel reads it. */
static int arg_in(const void *arg, int *v)
{
	if (!shim_user_ok(arg, sizeof(int), false))
		return -EFAULT;
	memcpy(v, arg, sizeof(int));
	return 0;
}

/* An int result of an ioctl, written as the kernel writes it. */
static int arg_out(void *arg, int v)
{
	if (!shim_user_ok(arg, sizeof(int), true))
		return -EFAULT;
	memcpy(arg, &v, sizeof(int));
	return 0;
}

/*
 * ioctl on a channel end s, as on a kernel pipe or socket pair: the few
 * requests they take, answered from the rings or passed to the open file
 * where the kernel does the same for any file; the network device
 * requests any socket takes, asked of a socket of our own; ENOTTY for the
 * rest, which the channel file must not see (its own requests excepted).
 * The result, or -errno.
 */
static int end_ioctl(struct sfd *s, int fd, unsigned long req, void *arg)
{
	bool sock = s->kind != SK_PIPE;
	ssize_t n;
	int v, r, k;

	switch (req) {
	case FIONREAD:
		/* A datagram socket says its next message, the others all. */
		n = s->kind == SK_DGRAM ? ipcd_readable(atomic_load(&s->c))
					: ipcd_queued(atomic_load(&s->c));
		return n < 0 ? -EIO : arg_out(arg, (int)n);
	case FIONBIO:
		if ((r = arg_in(arg, &v)))
			return r;
		if ((r = passed(real.ioctl(fd, req, &v))))
			return r;
		atomic_store(&s->nonblock, !!v);
		ipcd_set_nonblock(atomic_load(&s->c), !!v);
		return 0;
	case FIOASYNC:
		if ((r = arg_in(arg, &v)))
			return r;
		atomic_store(&s->dirty, true);
		return passed(real.ioctl(fd, req, &v));
	case FIOCLEX:
	case FIONCLEX:
		if ((r = passed(real.ioctl(fd, req, arg))))
			return r;
		cloexec_set(s, fd, req == FIOCLEX);
		return 0;
	case FIGETBSZ:
		return passed(real.ioctl(fd, req, arg));
	}
	if (_IOC_TYPE(req) == _IOC_TYPE(IPCD_IOC_SYNC))
		return passed(real.ioctl(fd, req, arg));	/* the channel file's own */
	if (!sock)
		return -ENOTTY;
	switch (req) {
	case FIOSETOWN:
	case SIOCSPGRP:
		/* The socket's owner is its open file's (F_SETOWN). */
		if ((r = arg_in(arg, &v)))
			return r;
		atomic_store(&s->dirty, true);
		return passed(real.fcntl(fd, F_SETOWN, v));
	case FIOGETOWN:
	case SIOCGPGRP:
		return arg_out(arg, real.fcntl(fd, F_GETOWN));
	case SIOCATMARK:
		return arg_out(arg, 0);	/* no out-of-band byte is kept */
	case SIOCOUTQ:
		/* What the peer has not read yet. */
		n = ipcd_ring_queued(ipcd_out(atomic_load(&s->c)));
		return n < 0 ? -EIO : arg_out(arg, (int)n);
	}
	if (_IOC_TYPE(req) != SOCK_IOC_TYPE)
		return -ENOTTY;
	k = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (k < 0)
		return -errno;
	r = passed(real.ioctl(k, req, arg));
	real.close(k);
	return r;
}

SHIM_API int ioctl(int fd, unsigned long req, ...)
{
	struct sfd *s;
	va_list ap;
	void *arg;
	int r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	READY(ioctl);
	s = get_ref(fd);
	if (!s)
		return real.ioctl(fd, req, arg);
	r = end_ioctl(s, fd, req, arg);
	sfd_put(s);
	return (int)ret(r);
}

/*
 * fstat of a channel end shows what it stands in for, and asks nothing of
 * the daemon: the kernel's cached attributes (AT_STATX_DONT_SYNC) give its
 * device, inode, owner and times, as a kernel pipe shows its own.  A
 * program that looks at its standard streams before it reads would
 * otherwise wait for a round trip through the daemon each time.
 */
static int end_stat(enum skind kind, int fd, struct stat *st)
{
	struct statx x;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &x) < 0)
		return -1;
	memset(st, 0, sizeof(*st));
	st->st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
	st->st_ino = x.stx_ino;
	st->st_mode = kind == SK_PIPE ? (S_IFIFO | 0600) : (S_IFSOCK | 0777);
	st->st_nlink = 1;
	st->st_uid = x.stx_uid;
	st->st_gid = x.stx_gid;
	st->st_blksize = 4096;
	st->st_atim.tv_sec = x.stx_atime.tv_sec;
	st->st_atim.tv_nsec = x.stx_atime.tv_nsec;
	st->st_mtim.tv_sec = x.stx_mtime.tv_sec;
	st->st_mtim.tv_nsec = x.stx_mtime.tv_nsec;
	st->st_ctim.tv_sec = x.stx_ctime.tv_sec;
	st->st_ctim.tv_nsec = x.stx_ctime.tv_nsec;
	return 0;
}

/* The stat call `call` on fd, unless fd is a channel end (fd < 0: not an
 * fd's own stat).  struct stat and struct stat64 are one layout here. */
#define STAT_BODY(call)							\
	struct sfd *s = fd >= 0 ? get_ref(fd) : NULL;			\
	int r, kind = s ? (int)s->kind : -1;				\
	_Static_assert(sizeof(*(st)) == sizeof(struct stat), "stat layout"); \
	if (s)								\
		sfd_put(s);						\
	else if (fd >= 0 && (r = (call)) == 0 && S_ISREG((st)->st_mode) && \
		 (st)->st_size == 0)					\
		kind = shim_end_kind(fd);	/* one served by the daemon */ \
	else								\
		return fd >= 0 ? r : (call);				\
	if (kind < 0)							\
		return 0;						\
	if (!user_writable((st), sizeof(*(st)))) {			\
		errno = EFAULT;						\
		return -1;						\
	}								\
	return end_stat((enum skind)kind, fd, (struct stat *)(st))

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
	int fd = user_string(path) && (flags & AT_EMPTY_PATH) && !*path ? dirfd : -1;

	READY(fstatat);
	STAT_BODY(real.fstatat(dirfd, path, st, flags));
}

SHIM_API int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	int fd = user_string(path) && (flags & AT_EMPTY_PATH) && !*path ? dirfd : -1;

	READY(fstatat64);
	STAT_BODY(real.fstatat64(dirfd, path, st, flags));
}

SHIM_API off_t lseek(int fd, off_t off, int whence)
{
	struct sfd *s;

	READY(lseek);
	s = get_ref(fd);
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
	s = get_ref(fd);
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
	atomic_store(&s->dirty, true);	/* its roles change for good */
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

/* SO_PEERCRED of an end that came from elsewhere: the daemon knows. */
static void peer_cred(struct sfd *s, int fd, struct ucred *uc)
{
	if (!s->cred_pid && real.ioctl(fd, IPCD_IOC_GETCRED, uc) == 0) {
		s->cred_pid = uc->pid;
		s->cred_uid = uc->uid;
		s->cred_gid = uc->gid;
	}
	uc->pid = s->cred_pid;
	uc->uid = s->cred_uid;
	uc->gid = s->cred_gid;
}

/*
 * The SOL_SOCKET options of a socket pair end, as a kernel socket pair
 * answers them: credentials, time-outs and SO_PASSCRED as set; the buffer
 * sizes, the ring's; the rest as they are on a new pair (setsockopt keeps
 * none of them).  The answer is cut to *len, as the kernel cuts it.
 */
static ssize_t end_getsockopt(struct sfd *s, int fd, int opt, void *val, socklen_t *len)
{
	union {
		int i;
		unsigned long ul;
		struct ucred uc;
		struct timeval tv;
		struct { int64_t sec, usec; } tv64;	/* __kernel_sock_timeval */
		sa_family_t fam;
	} u;
	size_t n = sizeof(int);
	uint64_t ns;

	if (!shim_user_ok(len, sizeof(*len), true))
		return -EFAULT;
	if ((int)*len < 0)
		return -EINVAL;
	memset(&u, 0, sizeof(u));
	switch (opt) {
	case SO_PEERCRED:
		peer_cred(s, fd, &u.uc);
		n = sizeof(u.uc);
		break;
	case SO_RCVTIMEO_OLD:
	case SO_SNDTIMEO_OLD:
	case SO_RCVTIMEO_NEW:
	case SO_SNDTIMEO_NEW:
		ns = atomic_load(opt == SO_RCVTIMEO_OLD || opt == SO_RCVTIMEO_NEW ?
				 &s->rcvtimeo : &s->sndtimeo);
		if (opt == SO_RCVTIMEO_OLD || opt == SO_SNDTIMEO_OLD) {
			u.tv.tv_sec = (time_t)(ns / 1000000000u);
			u.tv.tv_usec = (suseconds_t)(ns % 1000000000u / 1000);
			n = sizeof(u.tv);
		} else {
			u.tv64.sec = (int64_t)(ns / 1000000000u);
			u.tv64.usec = (int64_t)(ns % 1000000000u / 1000);
			n = sizeof(u.tv64);
		}
		break;
	case SO_TYPE:
		u.i = s->kind == SK_STREAM ? SOCK_STREAM :
		      s->kind == SK_DGRAM ? SOCK_DGRAM : SOCK_SEQPACKET;
		break;
	case SO_DOMAIN:
		u.i = AF_UNIX;
		break;
	case SO_PASSCRED:
		u.i = atomic_load(&s->passcred);
		break;
	case SO_SNDBUF:
	case SO_RCVBUF:
		u.i = (int)ipcd_capacity(atomic_load(&s->c));
		break;
	case SO_RCVLOWAT:
	case SO_SNDLOWAT:
		u.i = 1;
		break;
	case SO_PEEK_OFF:		/* off */
	case SO_INCOMING_CPU:		/* none */
		u.i = -1;
		break;
	case SO_LINGER:			/* struct linger, off */
	case SO_TIMESTAMPING_OLD:	/* struct so_timestamping, off */
	case SO_TIMESTAMPING_NEW:
	case SO_TXTIME:			/* struct sock_txtime, none */
		n = 8;
		break;
	case SO_MAX_PACING_RATE:	/* none: all ones, as long as len lets it */
		if (*len >= sizeof(u.ul))
			n = sizeof(u.ul);
		u.ul = ~0UL;
		if (n == sizeof(int))
			u.i = -1;
		break;
	case SO_PEERNAME:
		/* The peer's address, its family only: the kernel wants no
		 * more room than it has to give. */
		u.fam = AF_UNIX;
		if (*len > sizeof(u.fam))
			return -EINVAL;
		n = sizeof(u.fam);
		break;
	case SO_BINDTODEVICE:		/* bound to no device */
	case SO_GET_FILTER:		/* no filter */
		n = 0;			/* an empty answer */
		break;
	case SO_TXREHASH:		/* for TCP only */
		return -EOPNOTSUPP;
	case SO_DEBUG:
	case SO_REUSEADDR:
	case SO_ERROR:
	case SO_DONTROUTE:
	case SO_BROADCAST:
	case SO_KEEPALIVE:
	case SO_OOBINLINE:
	case SO_NO_CHECK:
	case SO_PRIORITY:
	case SO_BSDCOMPAT:
	case SO_REUSEPORT:
	case SO_TIMESTAMP_OLD:
	case SO_ACCEPTCONN:
	case SO_PASSSEC:
	case SO_TIMESTAMPNS_OLD:
	case SO_MARK:
	case SO_PROTOCOL:
	case SO_RXQ_OVFL:
	case SO_WIFI_STATUS:
	case SO_NOFCS:
	case SO_LOCK_FILTER:
	case SO_SELECT_ERR_QUEUE:
	case SO_BUSY_POLL:
	case SO_INCOMING_NAPI_ID:
	case SO_ZEROCOPY:
	case SO_BINDTOIFINDEX:
	case SO_TIMESTAMP_NEW:
	case SO_TIMESTAMPNS_NEW:
	case SO_PREFER_BUSY_POLL:
	case SO_BUF_LOCK:
	case SO_RESERVE_MEM:
	case SO_RCVMARK:
		break;
	default:
		return -ENOPROTOOPT;
	}
	if (n > *len)
		n = *len;
	if (!shim_user_ok(val, n, true))
		return -EFAULT;
	memcpy(val, &u, n);
	*len = (socklen_t)n;
	return 0;
}

SHIM_API int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	struct sfd *s;
	ssize_t e;

	READY(getsockopt);
	s = sock_get(fd, &e);
	if (!s)
		return e ? (int)ret(e) : real.getsockopt(fd, level, opt, val, len);
	e = level == SOL_SOCKET ? end_getsockopt(s, fd, opt, val, len) : -EOPNOTSUPP;
	sfd_put(s);
	return (int)ret(e);
}

/* SO_RCVTIMEO or SO_SNDTIMEO (old: as struct timeval, else as the
 * kernel's 64-bit one) into *to, in ns. */
static ssize_t set_timeout(_Atomic uint64_t *to, const void *val, socklen_t len, bool old)
{
	struct timeval tv;
	struct { int64_t sec, usec; } tv64;
	int64_t sec, usec;

	if (len < (old ? sizeof(tv) : sizeof(tv64)))
		return -EINVAL;
	if (!shim_user_ok(val, old ? sizeof(tv) : sizeof(tv64), false))
		return -EFAULT;
	if (old) {
		memcpy(&tv, val, sizeof(tv));
		sec = tv.tv_sec;
		usec = tv.tv_usec;
	} else {
		memcpy(&tv64, val, sizeof(tv64));
		sec = tv64.sec;
		usec = tv64.usec;
	}
	if (usec < 0 || usec >= 1000000)
		return -EDOM;
	/* Negative: no time-out, as the kernel takes it. */
	atomic_store(to, sec < 0 ? 0 : (uint64_t)sec * 1000000000u + (uint64_t)usec * 1000u);
	return 0;
}

/*
 * setsockopt at SOL_SOCKET on a socket pair end: checked as the kernel
 * checks it; SO_RCVTIMEO, SO_SNDTIMEO and SO_PASSCRED are kept, the other
 * options a kernel socket pair takes change nothing, and those it refuses
 * are refused.  SO_PEEK_OFF is refused too: peeking does not honour it.
 */
static ssize_t end_setsockopt(struct sfd *s, int opt, const void *val, socklen_t len)
{
	char name[IFNAMSIZ] = "";
	size_t k;
	int v;

	if ((int)len < 0)
		return -EINVAL;
	if (opt == SO_BINDTODEVICE) {
		/* A name, or none; changes nothing when the device exists. */
		k = len < sizeof(name) - 1 ? len : sizeof(name) - 1;
		if (!shim_user_ok(val, k, false))
			return -EFAULT;
		memcpy(name, val, k);
		return !name[0] || if_nametoindex(name) ? 0 : -ENODEV;
	}
	if (len < sizeof(int))
		return -EINVAL;
	if (!shim_user_ok(val, sizeof(int), false))
		return -EFAULT;
	memcpy(&v, val, sizeof(v));
	switch (opt) {
	case SO_RCVTIMEO_OLD:
	case SO_RCVTIMEO_NEW:
		return set_timeout(&s->rcvtimeo, val, len, opt == SO_RCVTIMEO_OLD);
	case SO_SNDTIMEO_OLD:
	case SO_SNDTIMEO_NEW:
		return set_timeout(&s->sndtimeo, val, len, opt == SO_SNDTIMEO_OLD);
	case SO_PASSCRED:
		atomic_store(&s->passcred, !!v);
		return 0;
	case SO_LINGER:
		if (len < sizeof(struct linger))
			return -EINVAL;
		return shim_user_ok(val, sizeof(struct linger), false) ? 0 : -EFAULT;
	case SO_REUSEPORT:		/* for internet sockets only */
		return v ? -EOPNOTSUPP : 0;
	case SO_PEEK_OFF:
	case SO_ZEROCOPY:
	case SO_RESERVE_MEM:
	case SO_TXREHASH:
		return -EOPNOTSUPP;
	case SO_ATTACH_FILTER:		/* an int is no filter or program */
	case SO_ATTACH_BPF:
	case SO_ATTACH_REUSEPORT_CBPF:
	case SO_ATTACH_REUSEPORT_EBPF:
	case SO_DETACH_REUSEPORT_BPF:
	case SO_TXTIME:
		return -EINVAL;
	case SO_DETACH_FILTER:
		return -ENOENT;		/* none attached */
	case SO_DEBUG:
	case SO_REUSEADDR:
	case SO_DONTROUTE:
	case SO_BROADCAST:
	case SO_SNDBUF:
	case SO_RCVBUF:
	case SO_SNDBUFFORCE:
	case SO_RCVBUFFORCE:
	case SO_KEEPALIVE:
	case SO_OOBINLINE:
	case SO_NO_CHECK:
	case SO_PRIORITY:
	case SO_BSDCOMPAT:
	case SO_RCVLOWAT:
	case SO_TIMESTAMP_OLD:
	case SO_TIMESTAMPNS_OLD:
	case SO_TIMESTAMPING_OLD:
	case SO_PASSSEC:
	case SO_MARK:
	case SO_RXQ_OVFL:
	case SO_WIFI_STATUS:
	case SO_NOFCS:
	case SO_LOCK_FILTER:
	case SO_SELECT_ERR_QUEUE:
	case SO_BUSY_POLL:
	case SO_MAX_PACING_RATE:
	case SO_INCOMING_CPU:
	case SO_CNX_ADVICE:
	case SO_BINDTOIFINDEX:
	case SO_TIMESTAMP_NEW:
	case SO_TIMESTAMPNS_NEW:
	case SO_TIMESTAMPING_NEW:
	case SO_PREFER_BUSY_POLL:
	case SO_BUSY_POLL_BUDGET:
	case SO_BUF_LOCK:
	case SO_RCVMARK:
		return 0;
	default:
		return -ENOPROTOOPT;
	}
}

SHIM_API int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct sfd *s;
	ssize_t e;

	READY(setsockopt);
	s = sock_get(fd, &e);
	if (!s)
		return e ? (int)ret(e) : real.setsockopt(fd, level, opt, val, len);
	e = level == SOL_SOCKET ? end_setsockopt(s, opt, val, len) : -EOPNOTSUPP;
	sfd_put(s);
	return (int)ret(e);
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
	e = family_only(addr, alen);
	sfd_put(s);
	return (int)ret(e);
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
	struct sfd *s = get_ref(fd);

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
