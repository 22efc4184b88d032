/*
 * splice.c - splice(2), tee(2) and vmsplice(2) with a pipe channel on one
 * side.  The kernel moves pages between a pipe and another file; a channel
 * end moves bytes through its ring, so these calls copy through a buffer,
 * with the results the kernel gives: bytes moved, 0 at the end of the
 * input pipe, EAGAIN under SPLICE_F_NONBLOCK, ESPIPE for an offset on a
 * pipe, EINVAL where neither side is a pipe or both are one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h"

#define READY(fn) do { if (__builtin_expect(!real.fn, 0)) shim_init(); } while (0)
#define CHUNK	65536

static ssize_t ret(ssize_t n)
{
	if (n < 0) {
		errno = (int)-n;
		return -1;
	}
	return n;
}

/* A pipe channel end of fd (a reference), or NULL. */
static struct sfd *pipe_end(int fd)
{
	struct sfd *s = fdtab_any() ? fdtab_get(fd) : NULL;

	if (s && (s->kind != SK_PIPE || !sfd_chan(s, fd))) {
		sfd_put(s);
		return NULL;
	}
	return s;
}

/* Whether fd is a kernel pipe (the kernel's own splice and tee take it). */
static bool kernel_pipe(int fd)
{
	struct stat st;

	return real.fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* Are the ends in and out of one pipe channel?  Both ends of a pair are
 * one file of the mount; its cached attributes say which. */
static bool same_pipe(int in, int out)
{
	struct statx a, b;
	const int at = AT_EMPTY_PATH | AT_STATX_DONT_SYNC;

	return statx(in, "", at, STATX_INO, &a) == 0 && statx(out, "", at, STATX_INO, &b) == 0 &&
	       a.stx_ino == b.stx_ino && a.stx_dev_major == b.stx_dev_major &&
	       a.stx_dev_minor == b.stx_dev_minor;
}

/* An offset pointer the kernel reads and writes back. */
static bool offset_ok(loff_t *off)
{
	return !off || shim_user_ok(off, sizeof(*off), true);
}

/* Write all of buf to fd (at *off if off), as a splice puts its pages:
 * a short count only on an error after some bytes. */
static ssize_t put_all(int fd, loff_t *off, const char *buf, size_t n, bool nonblock)
{
	size_t done = 0;
	ssize_t w;

	while (done < n) {
		w = off ? pwrite(fd, buf + done, n - done, *off + (loff_t)done)
			: write(fd, buf + done, n - done);
		if (w < 0) {
			if (errno == EINTR && !done)
				continue;
			if (done || (errno == EAGAIN && !nonblock))
				break;
			return -errno;
		}
		done += (size_t)w;
	}
	if (off)
		*off += (loff_t)done;
	return (ssize_t)done;
}

SHIM_API ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t len,
			unsigned flags)
{
	struct sfd *si, *so;
	bool nb = flags & SPLICE_F_NONBLOCK;
	char *buf = NULL;
	ssize_t n, w;
	size_t want;

	READY(splice);
	si = pipe_end(in);
	so = pipe_end(out);
	if (!si && !so)
		return real.splice(in, off_in, out, off_out, len, flags);
	if (!len) {
		n = 0;
		goto out;
	}
	/* The kernel's order: offsets on pipes, a pipe into itself, then
	 * offsets it cannot read. */
	if ((off_in && (si || kernel_pipe(in))) || (off_out && (so || kernel_pipe(out)))) {
		n = -ESPIPE;
		goto out;
	}
	if (si && so && same_pipe(in, out)) {
		n = -EINVAL;
		goto out;
	}
	if (!offset_ok(off_in) || !offset_ok(off_out)) {
		n = -EFAULT;
		goto out;
	}
	want = len < CHUNK ? len : CHUNK;
	buf = malloc(want);
	if (!buf) {
		n = -ENOMEM;
		goto out;
	}
	if (si) {
		/* Out of the ring: look first, take only what went out. */
		n = shim_read(si, in, buf, want, MSG_PEEK | (nb ? MSG_DONTWAIT : 0), NULL, NULL);
		if (n <= 0)
			goto out;
		w = so ? shim_write(so, out, buf, (size_t)n, nb ? MSG_DONTWAIT : 0, NULL)
		       : put_all(out, off_out, buf, (size_t)n, nb);
		if (w > 0)
			shim_read(si, in, buf, (size_t)w, MSG_DONTWAIT, NULL, NULL);
		n = w;
	} else {
		/* Into the ring: as much as it takes without waiting, when it
		 * must not wait, so that nothing read is left over. */
		if (nb || atomic_load(&so->nonblock)) {
			ssize_t room = ipcd_ring_space(ipcd_out(atomic_load(&so->c)));

			if (room <= 0) {
				n = room < 0 ? room : -EAGAIN;
				goto out;
			}
			if ((size_t)room < want)
				want = (size_t)room;
		}
		n = off_in ? pread(in, buf, want, *off_in) : read(in, buf, want);
		if (n < 0) {
			n = -errno;
			goto out;
		}
		if (n == 0)
			goto out;
		if (off_in)
			*off_in += n;
		n = shim_write(so, out, buf, (size_t)n, 0, NULL);
	}
out:
	free(buf);
	if (si)
		sfd_put(si);
	if (so)
		sfd_put(so);
	return ret(n);
}

SHIM_API ssize_t tee(int in, int out, size_t len, unsigned flags)
{
	struct sfd *si, *so;
	bool nb = flags & SPLICE_F_NONBLOCK;
	char *buf = NULL;
	int tmp[2] = { -1, -1 };
	ssize_t n;

	READY(tee);
	si = pipe_end(in);
	so = pipe_end(out);
	if (!si && !so)
		return real.tee(in, out, len, flags);
	if (!len) {
		n = 0;
		goto out;
	}
	if ((!si && !kernel_pipe(in)) || (!so && !kernel_pipe(out)) ||
	    (si && so && same_pipe(in, out))) {
		n = -EINVAL;	/* two pipes, not one */
		goto out;
	}
	if (len > CHUNK)
		len = CHUNK;
	buf = malloc(len);
	if (!buf) {
		n = -ENOMEM;
		goto out;
	}
	if (si) {
		/* Copy without consuming. */
		n = shim_read(si, in, buf, len, MSG_PEEK | (nb ? MSG_DONTWAIT : 0), NULL, NULL);
	} else {
		/* A kernel pipe into a channel: the kernel's tee into a pipe of
		 * our own, which we then drain. */
		if (real.pipe2(tmp, O_CLOEXEC) < 0) {
			n = -errno;
			goto out;
		}
		n = real.tee(in, tmp[1], len, flags);
		if (n > 0)
			n = real.read(tmp[0], buf, (size_t)n);
		if (n < 0)
			n = -errno;
	}
	if (n > 0)
		n = so ? shim_write(so, out, buf, (size_t)n, nb ? MSG_DONTWAIT : 0, NULL)
		       : put_all(out, NULL, buf, (size_t)n, nb);
out:
	if (tmp[0] >= 0) {
		real.close(tmp[0]);
		real.close(tmp[1]);
	}
	free(buf);
	if (si)
		sfd_put(si);
	if (so)
		sfd_put(so);
	return ret(n);
}

SHIM_API ssize_t vmsplice(int fd, const struct iovec *iov, size_t nr, unsigned flags)
{
	struct sfd *s;
	int f = (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0;
	ssize_t n;

	READY(vmsplice);
	s = pipe_end(fd);
	if (!s)
		return real.vmsplice(fd, iov, nr, flags);
	if (nr > IOV_MAX)
		n = -EINVAL;
	else if (!shim_user_ok(iov, nr * sizeof(*iov), false))
		n = -EFAULT;
	else if (s->roles & IPCD_ROLE_WRITE)	/* user memory into the pipe */
		n = shim_writev(s, fd, iov, (int)nr, f, NULL);
	else					/* out of the pipe into user memory */
		n = shim_readv(s, fd, iov, (int)nr, f, NULL, NULL);
	sfd_put(s);
	return ret(n);
}
