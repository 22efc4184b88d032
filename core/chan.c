/*
 * chan.c - the ipcd C API: a channel opened through the file system and
 * driven through its mapped ring.  Blocking here is spin-then-futex on the
 * ring; the daemon is involved only in open, close and role changes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "chanint.h"
#include "coord.h"
#include "ipcd.h"
#include "ringops.h"

struct ipcd_chan {
	int fd;
	unsigned roles;		/* IPCD_ROLE_* */
	int nonblock;		/* O_NONBLOCK given at open */
	struct ipcd_view in;	/* the ring we read */
	struct ipcd_view out;	/* the ring we write (the same unless duplex) */
	void *map;
	size_t map_len;
	bool owns_map;		/* ipcd_detach unmaps it (else the caller does) */
	/* The coordination of the channel (coord.h) and its state of the
	 * sides we read and write (the same for a simplex channel): for the
	 * lock, in and out themselves; else in and out are copies of their
	 * first rings, for waiting and polling. */
	const struct ipcd_coord_ops *ops;
	void *sin, *sout;
	void *states;			/* what to free */
	bool message;			/* the channel keeps records' bounds */
};

/*
 * A few detached channels' memory, for the next attach: a process that
 * makes and closes pipes across forks then writes no page of the
 * allocator's after a fork (each such page is copied).  A slot is taken
 * and given back with one exchange, so threads need no lock.
 */
#define SPARES	4
static _Atomic(struct ipcd_chan *) spare[SPARES] IPCD_FORKED;

static struct ipcd_chan *chan_alloc(void)
{
	struct ipcd_chan *c;

	for (int i = 0; i < SPARES; i++) {
		if (!atomic_load_explicit(&spare[i], memory_order_relaxed))
			continue;
		c = atomic_exchange_explicit(&spare[i], NULL, memory_order_acquire);
		if (c) {
			memset(c, 0, sizeof(*c));
			return c;
		}
	}
	return calloc(1, sizeof(struct ipcd_chan));
}

static void chan_free(struct ipcd_chan *c)
{
	for (int i = 0; i < SPARES; i++) {
		struct ipcd_chan *none = NULL;

		if (!atomic_load_explicit(&spare[i], memory_order_relaxed) &&
		    atomic_compare_exchange_strong_explicit(&spare[i], &none, c,
							    memory_order_release,
							    memory_order_relaxed))
			return;
	}
	free(c);
}

/*
 * One sleep lasts at most this long; then the waiter checks that the daemon
 * still runs (nobody else could tell it the other end has gone) and sleeps
 * again.  It also bounds the harm of a peer that zeroed the sleeper counts.
 */
static const struct timespec patrol = { 1, 0 };

/* Sleep in direction dir; -ECONNABORTED once the daemon is gone. */
static int chan_sleep(struct ipcd_chan *c, unsigned dirs, size_t need,
		      const struct timespec *timeout, uint64_t spin, uint32_t sigmark);

/*
 * How long a waiting end spins before it sleeps.  Spinning pays when the
 * peer answers within it (a running peer on another CPU), and only costs
 * when the peer is slow (it is starting, or it computes): so the spin of
 * this process follows what the last waits saw, between SPIN_MIN and the
 * most, IPCD_SPIN_NS (default 50 us; 0 turns spinning off).
 */
#define SPIN_MIN	2000u
static _Atomic uint64_t spin_now IPCD_FORKED;

static uint64_t spin_max(void)
{
	static uint64_t cached = UINT64_MAX;
	const char *s;

	if (cached == UINT64_MAX) {
		s = getenv("IPCD_SPIN_NS");
		cached = s ? strtoull(s, NULL, 10) : 50000;
	}
	return cached;
}

static uint64_t spin_ns(void)
{
	uint64_t v = atomic_load_explicit(&spin_now, memory_order_relaxed);

	return v ? v : spin_max();
}

/* A wait that spun for `spin` ns took `took` ns: spin longer after a wait
 * the spin caught, shorter after one it did not. */
static void spin_learn(uint64_t spin, uint64_t took)
{
	uint64_t max = spin_max(), v;

	if (!max)
		return;
	if (took <= spin)
		v = spin * 2 > max ? max : spin * 2;
	else
		v = spin / 2 < SPIN_MIN ? SPIN_MIN : spin / 2;
	if (v > max)
		v = max;
	if (v != atomic_load_explicit(&spin_now, memory_order_relaxed))
		atomic_store_explicit(&spin_now, v, memory_order_relaxed);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int chan_sleep(struct ipcd_chan *c, unsigned dirs, size_t need,
		      const struct timespec *timeout, uint64_t spin, uint32_t sigmark)
{
	const struct timespec *t = timeout;
	uint64_t t0 = spin ? mono_ns() : 0;
	int r;

	if (!t || t->tv_sec >= patrol.tv_sec)
		t = &patrol;
	r = ipcd_ring_wait_pair(&c->in, &c->out, dirs, need, t, spin, sigmark);
	if (spin && (r == 0 || r == -ETIMEDOUT))
		spin_learn(spin, mono_ns() - t0);
	if (r == -ETIMEDOUT && !ipcd_ring_daemon_alive(&c->in))
		return -ECONNABORTED;
	if (r == -ETIMEDOUT && t != timeout)
		return 0;	/* a patrol, not the caller's timeout */
	return r;
}

int ipcd_mkchan(const char *path, mode_t mode, unsigned flags, size_t capacity)
{
	static const char *const kinds[] = IPCD_KIND_NAMES;
	const char *kind = kinds[flags & IPCD_RING_F_KNOWN];
	char num[32];

	_Static_assert(IPCD_MESSAGE == IPCD_RING_F_MESSAGE && IPCD_DUPLEX == IPCD_RING_F_DUPLEX,
		       "the flags of ipcd_mkchan are the ring's features");

	if (flags & ~(IPCD_MESSAGE | IPCD_DUPLEX))
		return -EINVAL;
	if (mknod(path, S_IFREG | (mode & 07777), 0) < 0)
		return -errno;
	if (flags && setxattr(path, IPCD_XATTR_KIND, kind, strlen(kind), 0) < 0)
		goto err;
	if (capacity) {
		snprintf(num, sizeof(num), "%zu", capacity);
		if (setxattr(path, IPCD_XATTR_CAPACITY, num, strlen(num), 0) < 0)
			goto err;
	}
	return 0;
err:
	{
		int e = errno;

		unlink(path);
		return -e;
	}
}

/* The ring side 0 writes into first, and the one side 1 writes into
 * second: the same ring but for a duplex channel. */
static int attach_rings(struct ipcd_view *first, struct ipcd_view *second, void *map,
			size_t len)
{
	int r = ipcd_view_attach_role(first, map, len, 0);

	if (r)
		return r;
	*second = *first;
	if (first->features & IPCD_RING_F_DUPLEX)
		return ipcd_view_attach_role(second, map, len, 1);
	return 0;
}

/*
 * Set up c over the rings at map (len bytes) for side `side`: the views
 * of the rings it reads and writes and, but for the lock, its state of
 * each side (an array of the design's states, one a side).  wrap: for
 * an anonymous channel, apply a pair's rules (ring.h): holders count, end
 * 1 writes a pipe's ring and side s ring s of a socket pair, and a reader
 * never waits for a writer to come (with none left, end of file).
 */
static int chan_setup(struct ipcd_chan *c, void *map, size_t len, unsigned side, bool wrap)
{
	const struct ipcd_map *m = map;
	struct ipcd_view first, second, *vin, *vout;
	unsigned i, sides;
	char *states;
	uint64_t we;
	int r;

	r = attach_rings(&first, &second, map, len);
	if (r)
		return r;
	c->ops = ipcd_coord_ops(m->coord);
	if (!c->ops)
		return -EINVAL;
	c->out = side ? second : first;
	c->in = side ? first : second;
	c->states = NULL;
	c->message = !!(m->features & IPCD_RING_F_MESSAGE);
	if (c->ops == &ipcd_coord_lock) {
		c->sin = &c->in;
		c->sout = &c->out;
	} else {
		sides = (m->features & IPCD_RING_F_DUPLEX) ? 2 : 1;
		states = calloc(sides, c->ops->size);
		if (!states)
			return -ENOMEM;
		for (i = 0; i < sides && !r; i++)
			r = c->ops->attach(states + i * c->ops->size, map, len, i);
		if (r) {
			free(states);
			return r;
		}
		c->states = states;
		c->sout = states + (sides == 2 ? side : 0) * c->ops->size;
		c->sin = states + (sides == 2 ? 1 - side : 0) * c->ops->size;
	}
	vin = c->ops->view(c->sin);
	vout = c->ops->view(c->sout);
	if (wrap && first.r->anon) {
		c->ops->set_ends(c->sout, first.r, second.r == first.r ? 1 : side);
		c->ops->set_ends(c->sin, first.r, second.r == first.r ? 1 : 1 - side);
		we = atomic_load(&vin->r->writers_epoch);
		vin->eof_epoch = IPCD_WEPOCH(we);
	}
	if (c->states) {
		c->in = *vin;
		c->out = *vout;
	}
	return 0;
}

/* Map the ring(s) of fd into c; side is that of fd's open file, len the
 * length the daemon gave (0: learn it from the header). */
static int chan_map(struct ipcd_chan *c, int fd, size_t len, unsigned side)
{
	void *map;
	int r;

	r = ipcd_ring_map(fd, len, &map, &len);
	if (r)
		return r;
	r = chan_setup(c, map, len, side, false);
	if (r) {
		munmap(map, len);
		return r;
	}
	c->map = map;
	c->map_len = len;
	c->owns_map = true;
	return 0;
}

int ipcd_chan_wrap(int fd, void *map, size_t len, unsigned roles, unsigned side,
		   struct ipcd_chan **out)
{
	struct ipcd_chan *c;
	int r;

	c = chan_alloc();
	if (!c)
		return -ENOMEM;
	r = chan_setup(c, map, len, side, true);
	if (r) {
		chan_free(c);
		return r;
	}
	c->map = map;
	c->map_len = len;
	c->owns_map = false;
	c->fd = fd;
	c->roles = roles;
	*out = c;
	return 0;
}

int ipcd_attach(int fd, int flags, struct ipcd_chan **out)
{
	struct ipcd_chan *c;
	struct ipcd_fileinfo fi;
	struct stat st;
	uint32_t roles, got;
	int r;

	switch (flags & O_ACCMODE) {
	case O_RDONLY: roles = IPCD_ROLE_READ; break;
	case O_WRONLY: roles = IPCD_ROLE_WRITE; break;
	case O_RDWR: roles = IPCD_ROLE_READ | IPCD_ROLE_WRITE; break;
	default: return -EINVAL;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -ENOTSUP;
	if (ioctl(fd, IPCD_IOC_GETINFO, &fi) < 0)
		return errno == ENOTTY ? -ENOTSUP : -errno;
	got = fi.roles;
	if ((roles & (got & 3)) != roles)
		return -EBADF;	/* the open file lacks a role asked for */
	if (roles != (got & 3) && ioctl(fd, IPCD_IOC_SETROLE, &roles) < 0)
		return -errno;
	c = chan_alloc();
	if (!c)
		return -ENOMEM;
	r = chan_map(c, fd, (size_t)fi.map_pages * 4096, fi.side);
	if (r) {
		chan_free(c);
		return r;
	}
	/* The end-of-file rule belongs to the open file, which may be older
	 * than this mapping (inherited across exec): the daemon knows it. */
	c->in.eof_epoch = fi.eof_epoch;
	c->ops->view(c->sin)->eof_epoch = fi.eof_epoch;
	c->fd = fd;
	c->roles = roles;
	c->nonblock = !!(flags & O_NONBLOCK);
	*out = c;
	return 0;
}

int ipcd_open(const char *path, int flags, struct ipcd_chan **out)
{
	uint32_t side = 1;
	int fd, r;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if ((flags & IPCD_SIDE1) && ioctl(fd, IPCD_IOC_SETSIDE, &side) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = ipcd_attach(fd, flags & ~IPCD_SIDE1, out);
	if (r)
		close(fd);
	return r;
}

void ipcd_detach(struct ipcd_chan *c)
{
	if (!c)
		return;
	/* What this thread holds is free again; other threads' go when they
	 * end (a dead thread's is taken over). */
	c->ops->release(c->sin, ipcd_tid());
	if (c->sout != c->sin)
		c->ops->release(c->sout, ipcd_tid());
	free(c->states);
	if (c->owns_map)
		munmap(c->map, c->map_len);
	chan_free(c);
}

void ipcd_close(struct ipcd_chan *c)
{
	int fd;

	if (!c)
		return;
	fd = c->fd;
	ipcd_detach(c);
	close(fd);
}

ssize_t ipcd_readable(const struct ipcd_chan *c)
{
	return c->ops->readable(c->sin);
}

uint32_t ipcd_daemon_pid(const struct ipcd_chan *c)
{
	return atomic_load_explicit(&c->in.r->daemon_pid, memory_order_relaxed);
}

ssize_t ipcd_queued(const struct ipcd_chan *c)
{
	return c->ops->queued(c->sin);
}

size_t ipcd_capacity(const struct ipcd_chan *c)
{
	return c->in.cap;
}

int ipcd_fd(const struct ipcd_chan *c)
{
	return c->fd;
}

int ipcd_is_message(const struct ipcd_chan *c)
{
	return c->message;
}

ssize_t ipcd_send(struct ipcd_chan *c, const void *buf, size_t len, int flags)
{
	return ipcd_send_anc(c, buf, len, flags, NULL, NULL);
}

/* What is left of a wait of w that began at t0 (ns), into *left; -EAGAIN
 * once it is over (a socket's time-out), 0 with *tp NULL for no limit. */
static int wait_left(const struct ipcd_wopt *w, uint64_t *t0, struct timespec *left,
		     const struct timespec **tp)
{
	uint64_t now, end;

	*tp = NULL;
	if (!w || !w->timeout_ns)
		return 0;
	now = mono_ns();
	if (!*t0)
		*t0 = now;
	end = *t0 + w->timeout_ns;
	if (now >= end)
		return -EAGAIN;
	left->tv_sec = (time_t)((end - now) / 1000000000u);
	left->tv_nsec = (long)((end - now) % 1000000000u);
	*tp = left;
	return 0;
}

/* A send found no room for `need` bytes in out (c->out, or the thread's
 * own queue): wait for it as w says; 0 to try again, else -errno (-EAGAIN
 * once the caller's time is up). */
static int send_wait(struct ipcd_chan *c, const struct ipcd_view *out, size_t need,
		     const struct ipcd_wopt *w, uint64_t *t0)
{
	const struct timespec *tp;
	struct timespec left;
	struct ipcd_view keep = c->out;
	int r = wait_left(w, t0, &left, &tp);

	if (!r) {
		c->out = *out;
		r = chan_sleep(c, IPCD_WAIT_SPACE | (w ? w->wflags : 0), need, tp, spin_ns(),
			       w ? w->sigmark : 0);
		c->out = keep;
	}
	return r == -ETIMEDOUT ? -EAGAIN : r;
}

/*
 * A record at a time, or bytes of a stream as they go in, into the side's
 * ring (the thread's own queue, with queues).  A write with no queue or
 * writer slot free for the thread goes through the daemon, a write(2) on
 * the channel file, which has put the bytes in when it returns; so the
 * thread's order holds either way.
 */
ssize_t ipcd_send_anc(struct ipcd_chan *c, const void *buf, size_t len, int flags,
		      const struct ipcd_anc_ops *anc, const struct ipcd_wopt *w)
{
	const char *p = buf;
	struct ipcd_view *room;
	uint32_t tid = ipcd_tid();
	uint64_t t0 = 0;
	size_t done = 0;
	ssize_t n;
	int r;

	if (!(c->roles & IPCD_ROLE_WRITE))
		return -EBADF;
	flags |= c->nonblock ? IPCD_NONBLOCK : 0;
	for (;;) {
		n = c->ops->write(c->sout, p + done, len - done, tid, anc);
		if (n == -ENOSPC && !anc) {
			n = write(c->fd, p + done, len - done);
			if (n < 0)
				n = -errno;
		}
		if (n >= 0) {
			anc = NULL;	/* the attachment goes with the first bytes */
			done += (size_t)n;
			if (done == len || c->message)
				return (ssize_t)done;
			continue;
		}
		if (n == -EBUSY) {
			r = c->ops->busy(c->sout, IPCD_WAIT_SPACE);
		} else if (n == -EAGAIN && !(flags & IPCD_NONBLOCK)) {
			room = c->ops->space_view(c->sout, tid);
			r = room ? send_wait(c, room, ipcd_ring_need(room, len - done), w, &t0) : 0;
		} else {
			r = (int)n;
		}
		if (r < 0)
			return done ? (ssize_t)done : r;
	}
}

ssize_t ipcd_recv(struct ipcd_chan *c, void *buf, size_t len, int flags)
{
	return ipcd_recv_anc(c, buf, len, flags, NULL, NULL);
}

ssize_t ipcd_recv_anc(struct ipcd_chan *c, void *buf, size_t len, int flags,
		      const struct ipcd_anc_ops *anc, const struct ipcd_wopt *w)
{
	unsigned ioflags = (flags & IPCD_PEEK) ? IPCD_IO_PEEK : 0;
	unsigned wflags = w ? w->wflags : 0;
	const struct timespec *tp;
	struct timespec left;
	uint64_t t0 = 0;
	size_t full;
	ssize_t n;
	int r;

	if (!(c->roles & IPCD_ROLE_READ))
		return -EBADF;
	flags |= c->nonblock ? IPCD_NONBLOCK : 0;
	for (;;) {
		n = c->ops->read(c->sin, buf, len, ipcd_tid(), ioflags, &full, anc);
		if (n >= 0)
			return (flags & IPCD_TRUNC) ? (ssize_t)full : n;
		if (n == IPCD_EOF)
			return 0;
		if (n == -EBUSY) {
			r = c->ops->busy(c->sin, IPCD_WAIT_DATA);
		} else if (n == -EAGAIN && !(flags & IPCD_NONBLOCK)) {
			r = wait_left(w, &t0, &left, &tp);
			if (!r)
				r = chan_sleep(c, IPCD_WAIT_DATA | wflags, 0, tp, spin_ns(),
					       w ? w->sigmark : 0);
			if (r == -ETIMEDOUT)
				r = -EAGAIN;
		} else {
			r = (int)n;
		}
		if (r < 0)
			return r;
	}
}

int ipcd_peek(struct ipcd_chan *c, struct iovec iov[2], int flags)
{
	struct ipcd_span sp[2];
	ssize_t n;
	int r;

	if (!(c->roles & IPCD_ROLE_READ))
		return -EBADF;
	if (!iov)
		return -EFAULT;
	if (!c->ops->peek)
		return -EOPNOTSUPP;
	flags |= c->nonblock ? IPCD_NONBLOCK : 0;
	for (;;) {
		n = c->ops->peek(c->sin, sp, ipcd_tid());
		if (n >= 0) {
			iov[0].iov_base = (void *)sp[0].p;
			iov[0].iov_len = sp[0].n;
			iov[1].iov_base = (void *)sp[1].p;
			iov[1].iov_len = sp[1].n;
			return 1;
		}
		if (n == IPCD_EOF)
			return 0;
		/* Queues: the ones with data are other readers' for now (a
		 * peek may hold one a while): nothing to show yet. */
		if (n == -EBUSY && (flags & IPCD_NONBLOCK))
			r = -EAGAIN;
		else if (n == -EBUSY)
			r = c->ops->busy(c->sin, IPCD_WAIT_DATA);
		else if (n == -EAGAIN && !(flags & IPCD_NONBLOCK))
			r = chan_sleep(c, IPCD_WAIT_DATA, 0, NULL, spin_ns(), 0);
		else
			r = (int)n;
		if (r < 0)
			return r;
	}
}

int ipcd_consume(struct ipcd_chan *c, size_t n)
{
	if (!c->ops->consume)
		return -EOPNOTSUPP;
	return c->ops->consume(c->sin, n);
}

int ipcd_has_data(const struct ipcd_chan *c)
{
	return c->ops->has_data(c->sin);
}

int ipcd_has_room(struct ipcd_chan *c, size_t need)
{
	return c->ops->has_room(c->sout, need, ipcd_tid());
}

/* Whether a write of need bytes would go in now or fail at once (no
 * reader left, a broken ring). */
static int can_write(struct ipcd_chan *c, size_t need)
{
	return ipcd_ring_readers(&c->out) == 0 || ipcd_has_room(c, need);
}

void ipcd_marks(const struct ipcd_chan *c, uint64_t m[2])
{
	const uint64_t k = 0x9e3779b97f4a7c15ull;

	/* A record published into cells reserved before moves no index. */
	m[0] = c->ops->moved(c->sin, true) ^
	       atomic_load(&c->in.r->writers_epoch) * k ^
	       (uint64_t)c->ops->has_data(c->sin) << 62;
	m[0] ^= (uint64_t)ipcd_ring_hup(&c->in) << 63;
	m[1] = c->ops->moved(c->sout, false) ^
	       (ipcd_ring_readers(&c->out) + 1) * k ^
	       atomic_load(&c->in.r->state) ^ atomic_load(&c->out.r->state) << 1;
}

static short revents(struct ipcd_chan *c, short events)
{
	short rev = 0;

	if ((atomic_load(&c->in.r->state) | atomic_load(&c->out.r->state)) &
	    IPCD_RING_S_BROKEN)
		return POLLERR;
	if (c->roles & IPCD_ROLE_READ) {
		/* Bytes (or a pad to skip) are in; hang-up as soon as every
		 * writer is gone, data or not, as for a pipe. */
		if (ipcd_has_data(c))
			rev |= POLLIN;
		if (ipcd_ring_hup(&c->in))
			rev |= POLLHUP;
	}
	if ((c->roles & IPCD_ROLE_WRITE) && can_write(c, PIPE_BUF)) {
		if (ipcd_ring_readers(&c->out) == 0)
			rev |= POLLERR | POLLOUT;	/* as a pipe */
		else
			rev |= POLLOUT;
	}
	return rev & (events | POLLHUP | POLLERR);
}

int ipcd_wait(struct ipcd_chan *c, short events, int timeout_ms)
{
	struct timespec now, end, left;
	unsigned dirs = 0;
	short rev;
	int r;

	if (events & POLLIN)
		dirs |= IPCD_WAIT_DATA;
	if (events & POLLOUT)
		dirs |= IPCD_WAIT_SPACE;
	clock_gettime(CLOCK_MONOTONIC, &end);
	if (timeout_ms > 0) {
		end.tv_sec += timeout_ms / 1000;
		end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (end.tv_nsec >= 1000000000L) {
			end.tv_sec++;
			end.tv_nsec -= 1000000000L;
		}
	}
	for (;;) {
		rev = revents(c, events);
		if (rev || timeout_ms == 0 || !dirs)
			return rev;
		if (timeout_ms > 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			left.tv_sec = end.tv_sec - now.tv_sec;
			left.tv_nsec = end.tv_nsec - now.tv_nsec;
			if (left.tv_nsec < 0) {
				left.tv_sec--;
				left.tv_nsec += 1000000000L;
			}
			if (left.tv_sec < 0)
				return 0;
		}
		r = chan_sleep(c, dirs, PIPE_BUF, timeout_ms > 0 ? &left : NULL,
			       spin_ns(), 0);
		if (r < 0 && r != -ETIMEDOUT)
			return r;
	}
}

void ipcd_set_nonblock(struct ipcd_chan *c, int on)
{
	c->nonblock = !!on;
}

struct ipcd_view *ipcd_in(struct ipcd_chan *c)
{
	return &c->in;
}

struct ipcd_view *ipcd_out(struct ipcd_chan *c)
{
	return &c->out;
}
