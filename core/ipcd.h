/*
 * ipcd.h - the ipcd C API: attach to a channel's ring through its file on an
 * ipcd mount and move bytes or messages with no system call in the common
 * case.  Every function returns 0, a count, or -errno; none sets errno.
 * See ipcd_open(3) and ipcd-ring(7).
 */
#ifndef IPCD_H
#define IPCD_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ipcd/ring.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ipcd_chan;

/* Flags for ipcd_send, ipcd_recv. */
#define IPCD_NONBLOCK	(1 << 0)	/* -EAGAIN instead of waiting */
#define IPCD_PEEK	(1 << 1)	/* ipcd_recv: leave the data in the ring */
#define IPCD_TRUNC	(1 << 2)	/* ipcd_recv: return a message's full length */

/* Flags for ipcd_mkchan. */
#define IPCD_MESSAGE	(1u << 0)	/* keep write boundaries */
#define IPCD_DUPLEX	(1u << 1)	/* two rings, one per direction */

/* Flag for ipcd_open: take side 1 of a duplex channel (default side 0). */
#define IPCD_SIDE1	0x40000000

/* Create a channel file at path (mode as for mknod), with the given kind and
 * ring capacity in bytes (0: the mount's default).  -EEXIST if it exists. */
int ipcd_mkchan(const char *path, mode_t mode, unsigned flags, size_t capacity);

/* Open the channel at path as a reader (O_RDONLY), writer (O_WRONLY) or both
 * (O_RDWR), plus O_NONBLOCK (and IPCD_SIDE1 for a duplex channel), and map
 * its ring.  On a duplex channel, side 0 sends what side 1 receives and the
 * other way round. */
int ipcd_open(const char *path, int flags, struct ipcd_chan **out);

/* The same for a channel file already open read-write as fd, on the side the
 * daemon has for it; on success the channel owns fd. */
int ipcd_attach(int fd, int flags, struct ipcd_chan **out);

/* Unmap and close. */
void ipcd_close(struct ipcd_chan *c);

/* Unmap and free, leaving the file descriptor open. */
void ipcd_detach(struct ipcd_chan *c);

/* Bytes (stream) or the next message's length (message channel) readable
 * now, or -EIO. */
ssize_t ipcd_readable(const struct ipcd_chan *c);

/* The capacity of the channel's ring(s) in bytes. */
size_t ipcd_capacity(const struct ipcd_chan *c);

/* The channel's file descriptor (for poll through the daemon, fstat, ...). */
int ipcd_fd(const struct ipcd_chan *c);

/* Whether the ring keeps message boundaries. */
int ipcd_is_message(const struct ipcd_chan *c);

/* Write len bytes (stream: all of them unless interrupted or nonblocking;
 * message: one message).  Returns bytes written or -EAGAIN, -EPIPE, -EINTR,
 * -EMSGSIZE, -EIO, -EBADF (not opened for writing). */
ssize_t ipcd_send(struct ipcd_chan *c, const void *buf, size_t len, int flags);

/* Read up to len bytes (stream) or one message, cut to len (with IPCD_TRUNC
 * the message's full length is returned even when longer than len).  Returns
 * bytes read, 0 at end of file, or -EAGAIN, -EINTR, -EIO, -EBADF,
 * -ECONNABORTED (the daemon died and no writer can be seen). */
ssize_t ipcd_recv(struct ipcd_chan *c, void *buf, size_t len, int flags);

/* Read in place, for a transport that sends straight from ring memory.
 * ipcd_peek waits as ipcd_recv does (not with IPCD_NONBLOCK or on a
 * nonblocking channel: -EAGAIN), then shows what ipcd_recv would return
 * next without taking it: on a stream, every byte queued, in iov[0] and,
 * where the ring wraps, iov[1]; on a message channel, the next message in
 * iov[0] (iov[1] empty).  Returns 1 when it shows something (an empty
 * message shows 0 bytes), 0 at end of file, or -EAGAIN, -EINTR, -EIO,
 * -EBADF, -EALREADY (a peek is in progress), -ECONNABORTED.  The memory
 * shown stays valid, and the channel's other readers wait, until the same
 * thread calls ipcd_consume, which takes n bytes of what a stream showed
 * (0: none), or n messages (0 or 1), and ends the peek; -EINVAL without a
 * peek or for more than it showed.  Attachments are passed over, as by
 * ipcd_recv. */
int ipcd_peek(struct ipcd_chan *c, struct iovec iov[2], int flags);
int ipcd_consume(struct ipcd_chan *c, size_t n);

/* Wait for POLLIN and/or POLLOUT; returns the events that hold (POLLIN,
 * POLLOUT, POLLHUP, POLLERR), 0 on timeout (timeout_ms < 0: forever), or
 * -EINTR. */
int ipcd_wait(struct ipcd_chan *c, short events, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* IPCD_H */
