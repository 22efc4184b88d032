/*
 * io.c - moving bytes on an accelerated fd through its ring, with the
 * semantics of a kernel pipe or socket pair: blocking unless O_NONBLOCK or
 * MSG_DONTWAIT, EPIPE with SIGPIPE when no reader is left (unless
 * MSG_NOSIGNAL), a message per call on message channels, and the
 * scatter/gather calls done as one read or write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define BOUNCE_STACK	16384

/* The end's rings, mapped at first use for an end that came from
 * elsewhere; NULL if it turns out not to be one. */
struct ipcd_chan *sfd_chan(struct sfd *s, int fd)
{
	struct ipcd_chan *c = atomic_load_explicit(&s->c, memory_order_acquire);

	if (__builtin_expect(c != NULL, 1))
		return c;
	if (!s->pending || !sfd_attach(s, fd))
		return NULL;
	return atomic_load(&s->c);
}

/* How a blocking call on s waits: its socket time-out, and whether a
 * signal handler that comes during a spin must end it. */
static struct ipcd_wopt wopt(struct sfd *s, bool rd)
{
	struct ipcd_wopt w = {
		.timeout_ns = atomic_load_explicit(rd ? &s->rcvtimeo : &s->sndtimeo,
						   memory_order_relaxed),
		.wflags = atomic_load_explicit(&shim_handlers, memory_order_relaxed) ?
			  IPCD_WAIT_SIGSAFE : 0,
		.sigmark = atomic_load_explicit(&ipcd_sigwatch.interrupting,
						memory_order_relaxed),
	};

	return w;
}

static int ioflags(struct sfd *s, int msg_flags)
{
	int f = 0;

	if (atomic_load_explicit(&s->nonblock, memory_order_relaxed) ||
	    (msg_flags & MSG_DONTWAIT))
		f |= IPCD_NONBLOCK;
	if (msg_flags & MSG_PEEK)
		f |= IPCD_PEEK;
	return f;
}

ssize_t shim_read(struct sfd *s, int fd, void *buf, size_t len, int flags,
		  size_t *full, struct shim_rx *rx)
{
	struct ipcd_chan *c = sfd_chan(s, fd);
	struct ipcd_anc_ops ops, *anc = NULL;	/* pipes carry no descriptors */
	struct ipcd_wopt w;
	struct shim_rx drop;
	ssize_t n, got = 0;

	if (!c)
		return -EIO;
	if (!(s->roles & IPCD_ROLE_READ))
		return -EBADF;
	if (atomic_load(&s->shut_rd))
		return 0;
	if (len == 0 && !ipcd_is_message(c))
		return 0;	/* as the kernel: a zero-length read never waits */
	if (!buf)
		return -EFAULT;
	w = wopt(s, true);
	if (s->kind == SK_DGRAM) {
		/* A datagram socket has no end of file: with its peer gone and
		 * nothing queued it has nothing to give, now or ever. */
		short rev = (short)ipcd_wait(c, POLLIN, 0);

		if ((rev & POLLHUP) && !(rev & POLLIN)) {
			if (ioflags(s, flags) & IPCD_NONBLOCK)
				return -EAGAIN;
			for (;;)
				if (real.poll(NULL, 0, -1) < 0 && errno == EINTR)
					return -EINTR;
		}
	}
	if (s->kind != SK_PIPE) {
		/* A socket pair end: descriptors may come with the bytes; with
		 * no room for them (no rx), the daemon closes them. */
		if (!rx) {
			drop.fd = fd;
			drop.c = c;
			drop.want = drop.cloexec = drop.taken = drop.lost = false;
			drop.nfds = 0;
			rx = &drop;
		}
		ops = (struct ipcd_anc_ops){ .take = shim_anc_take, .arg = rx };
		anc = &ops;
	}
	n = ipcd_recv_anc(c, buf, len, ioflags(s, flags) | (full ? IPCD_TRUNC : 0), anc, &w);
	if (n == -EAGAIN && (ioflags(s, flags) & IPCD_NONBLOCK)) {
		/* "Nothing yet" must not hide an end of file a reaped child
		 * left: catch up with the daemon once. */
		hold_catch_up(s, fd);
		n = ipcd_recv_anc(c, buf, len, ioflags(s, flags) | (full ? IPCD_TRUNC : 0),
				  anc, &w);
	}
	if (n >= 0 && full) {
		*full = (size_t)n;
		n = (size_t)n > len ? (ssize_t)len : n;
	}
	if (n <= 0 || !(flags & MSG_WAITALL) || ipcd_is_message(c))
		return n;
	/* MSG_WAITALL on a stream: keep reading until full, EOF or error. */
	got = n;
	while ((size_t)got < len) {
		/* Stops short of the next descriptors, as the kernel does. */
		n = ipcd_recv_anc(c, (char *)buf + got, len - (size_t)got,
				  ioflags(s, flags), anc, &w);
		if (n <= 0)
			break;
		got += n;
	}
	return got;
}

ssize_t shim_write(struct sfd *s, int fd, const void *buf, size_t len, int flags,
		   struct shim_tx *tx)
{
	struct ipcd_anc_ops ops = { .bind = shim_anc_bind, .arg = tx };
	struct ipcd_chan *c = sfd_chan(s, fd);
	struct ipcd_wopt w;
	ssize_t n;

	if (!c)
		return -EIO;
	if (!(s->roles & IPCD_ROLE_WRITE))
		return s->kind == SK_PIPE ? -EBADF : -EPIPE;
	if (!buf && len)
		return -EFAULT;
	/* A write must not go into a ring whose last reader a reaped child
	 * was: catch up with the daemon once. */
	hold_catch_up(s, fd);
	w = wopt(s, false);
	n = ipcd_send_anc(c, buf, len, ioflags(s, flags), tx ? &ops : NULL, &w);
	if (n == -EPIPE && s->kind == SK_DGRAM)
		return -ECONNREFUSED;	/* as a datagram socket whose peer is gone */
	/* The kernel raises SIGPIPE for pipes and stream sockets only. */
	if (n == -EPIPE && !(flags & MSG_NOSIGNAL) &&
	    (s->kind == SK_PIPE || s->kind == SK_STREAM))
		raise(SIGPIPE);
	return n;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;
	int i;

	for (i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* readv/recvmsg: one read into a bounce buffer, then scattered. */
ssize_t shim_readv(struct sfd *s, int fd, const struct iovec *iov, int cnt,
		   int flags, size_t *full, struct shim_rx *rx)
{
	char stack[BOUNCE_STACK], *b = stack;
	size_t len = iov_total(iov, cnt), at = 0, k;
	ssize_t n;
	int i;

	if (cnt == 1)
		return shim_read(s, fd, iov[0].iov_base, iov[0].iov_len, flags, full, rx);
	if (len > sizeof(stack) && !(b = malloc(len)))
		return -ENOMEM;
	n = shim_read(s, fd, b, len, flags, full, rx);
	for (i = 0; i < cnt && n > 0 && at < (size_t)n; i++) {
		k = iov[i].iov_len < (size_t)n - at ? iov[i].iov_len : (size_t)n - at;
		memcpy(iov[i].iov_base, b + at, k);
		at += k;
	}
	if (b != stack)
		free(b);
	return n;
}

/* writev/sendmsg: gathered into one write, so PIPE_BUF atomicity and
 * message boundaries hold. */
ssize_t shim_writev(struct sfd *s, int fd, const struct iovec *iov, int cnt, int flags,
		    struct shim_tx *tx)
{
	char stack[BOUNCE_STACK], *b = stack;
	size_t len = iov_total(iov, cnt), at = 0;
	ssize_t n;
	int i;

	if (cnt == 1)
		return shim_write(s, fd, iov[0].iov_base, iov[0].iov_len, flags, tx);
	if (len == 0)
		return shim_write(s, fd, "", 0, flags, tx);
	if (len > sizeof(stack) && !(b = malloc(len)))
		return -ENOMEM;
	for (i = 0; i < cnt; i++) {
		memcpy(b + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	n = shim_write(s, fd, b, len, flags, tx);
	if (b != stack)
		free(b);
	return n;
}
