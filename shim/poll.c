/*
 * poll.c - readiness for channel ends without a trip through the daemon in
 * the common case.  poll, ppoll, select and pselect first look at the rings
 * of the channel fds (and, with a zero timeout, at the other fds through the
 * kernel); when something is ready they answer at once, and when only
 * channel fds are watched they spin briefly on the rings.  Otherwise they
 * fall back to the real call, where the daemon's poll support and the
 * coordination core give the same answers, just later.  epoll goes to the
 * kernel as it is: the channel files support it through the daemon.
 *
 * The answer for an end is the one the kernel gives for the object it stands
 * in for, bit for bit (shim_revents): a pipe's rules for pipes, an AF_UNIX
 * socket's for socket pairs, whose shutdowns the daemon does not know apart
 * from closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim.h"

#define SPIN_NS	50000	/* as the ring's own waits */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * What poll(2) says of end s for events, from its rings.  A pipe end: data
 * in (IN), every writer gone (HUP); room for PIPE_BUF bytes (OUT), no
 * reader (ERR, full or not).  A socket pair end goes by its shutdown state:
 * reading is shut down (IN and RDHUP) by its own shutdown(SHUT_RD) or, on a
 * stream or seqpacket pair, by the peer's SHUT_WR or close; writing likewise
 * by its own SHUT_WR or the peer's SHUT_RD or close; both shut down make
 * HUP.  A datagram end never learns its peer's shutdown or close.  A socket
 * stays writable after a shutdown as long as its bytes in flight leave room
 * (and with no reader left, whose queue the kernel would have freed).
 */
short shim_revents(struct sfd *s, int fd, short events)
{
	struct ipcd_chan *c = sfd_chan(s, fd);
	struct ipcd_view *in, *out;
	unsigned rev = 0;
	ssize_t room;
	bool hup, data, no_reader;

	if (!c)
		return POLLNVAL;
	in = ipcd_in(c);
	out = ipcd_out(c);
	room = ipcd_ring_space(out);
	if (room < 0 || ((atomic_load(&in->r->state) | atomic_load(&out->r->state)) &
			 IPCD_RING_S_BROKEN))
		return POLLERR;
	/* The hang-up first: bytes written before the last writer left are
	 * then seen (its acquire pairs with the release that publishes the
	 * writer gone, after its bytes). */
	hup = ipcd_ring_hup(in);
	data = atomic_load(&in->r->tail) != atomic_load(&in->r->head);
	no_reader = ipcd_ring_readers(out) == 0;
	if (s->kind == SK_PIPE) {
		if (s->roles & IPCD_ROLE_READ) {
			if (data)
				rev |= POLLIN | POLLRDNORM;
			if (hup)
				rev |= POLLHUP;
		}
		if (s->roles & IPCD_ROLE_WRITE) {
			if (room >= PIPE_BUF)
				rev |= POLLOUT | POLLWRNORM;
			if (no_reader)
				rev |= POLLERR;
		}
	} else {
		/* shutdown(2) took the role away (here, or before an exec). */
		bool rcv = atomic_load(&s->shut_rd) || !(s->roles & IPCD_ROLE_READ);
		bool snd = !(s->roles & IPCD_ROLE_WRITE);

		if (s->kind != SK_DGRAM) {
			rcv = rcv || hup;
			snd = snd || no_reader;
		}
		if (data || rcv)
			rev |= POLLIN | POLLRDNORM;
		if (rcv)
			rev |= POLLRDHUP;
		if (rcv && snd)
			rev |= POLLHUP;
		if (room >= PIPE_BUF || no_reader)
			rev |= POLLOUT | POLLWRNORM | POLLWRBAND;
	}
	return (short)(rev & ((unsigned short)events | POLLERR | POLLHUP));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Look at the rings.  Returns -1 if no fd is a channel end (use the real
 * call), else the number of fds with events, having filled revents of the
 * channel fds; *others says whether non-channel fds are in the set.
 */
static int scan(struct pollfd *fds, nfds_t n, bool *others)
{
	nfds_t i;
	int chans = 0, ready = 0;
	struct sfd *s;

	*others = false;
	for (i = 0; i < n; i++) {
		if (fds[i].fd < 0) {
			fds[i].revents = 0;	/* as poll(2) leaves it */
			continue;
		}
		s = fdtab_get(fds[i].fd);
		if (!s) {
			*others = true;
			continue;
		}
		chans++;
		fds[i].revents = shim_revents(s, fds[i].fd, fds[i].events);
		if (fds[i].revents)
			ready++;
		sfd_put(s);
	}
	return chans ? ready : -1;
}

/* With channel fds ready: ask the kernel about the others without waiting. */
static int merge_others(struct pollfd *fds, nfds_t n, int ready)
{
	struct pollfd *o = malloc(n * sizeof(*o));
	nfds_t i, k = 0;
	struct sfd *s;
	int r;

	if (!o)
		return ready;
	for (i = 0; i < n; i++) {
		s = fds[i].fd >= 0 ? fdtab_get(fds[i].fd) : NULL;
		if (s) {
			sfd_put(s);
			o[i].fd = -1;
		} else {
			o[i] = fds[i];
			k++;
		}
		o[i].revents = 0;
	}
	r = k ? real.poll(o, n, 0) : 0;
	for (i = 0; r > 0 && i < n; i++)
		if (o[i].fd >= 0) {
			fds[i].revents = o[i].revents;
			if (o[i].revents)
				ready++;
		}
	free(o);
	return ready;
}

struct spin_poll {
	struct pollfd *fds;
	nfds_t n;
	int ready;
};

static bool spin_ready(void *arg)
{
	struct spin_poll *sp = arg;
	bool others;

	sp->ready = scan(sp->fds, sp->n, &others);
	return sp->ready != 0;
}

/*
 * Spin over ready(arg) for at most ns, yielding now and then (a peer on our
 * CPU must get to run).  Signal handlers are held off meanwhile when the
 * program has any, so that a signal ends the call as it would end a kernel
 * poll: -1 if one came (its handler has run at the end), 1 if ready, 0 not.
 */
int shim_spin(uint64_t ns, bool (*ready)(void *), void *arg)
{
	bool sig = atomic_load_explicit(&shim_handlers, memory_order_relaxed);
	sigset_t all, old, pend;
	uint64_t start = now_ns();
	int r = 0, i;

	if (sig) {
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
	}
	while (now_ns() - start < ns) {
		if (ready(arg)) {
			r = 1;
			break;
		}
		cpu_relax();
		sched_yield();
	}
	if (sig) {
		if (sigpending(&pend) == 0)
			for (i = 1; i < NSIG; i++)
				if (sigismember(&pend, i) && !sigismember(&old, i)) {
					r = r ? r : -1;
					break;
				}
		pthread_sigmask(SIG_SETMASK, &old, NULL);	/* handlers run */
	}
	return r;
}

/* The fast answer, or -1 to go to the kernel, or -2 (errno set) to fail.
 * timeout_ns < 0: forever. */
static int fast_poll(struct pollfd *fds, nfds_t n, int64_t timeout_ns)
{
	bool others;
	int r;

	if (!fdtab_any())
		return -1;
	r = scan(fds, n, &others);
	if (r < 0)
		return -1;
	if (r > 0)
		return others ? merge_others(fds, n, r) : r;
	if (others) {
		r = merge_others(fds, n, 0);
		if (r > 0 || timeout_ns == 0)
			return r;
		return -1;
	}
	if (timeout_ns == 0)
		return 0;
	/* Only channel fds: spin on the rings before a trip to the daemon. */
	{
		struct spin_poll sp = { fds, n, 0 };

		r = shim_spin(timeout_ns < 0 || timeout_ns > SPIN_NS ? SPIN_NS :
			      (uint64_t)timeout_ns, spin_ready, &sp);
		if (r < 0) {
			errno = EINTR;	/* as poll(2): a handler ran */
			return -2;
		}
		if (r > 0)
			return sp.ready;
	}
	return -1;
}

SHIM_API int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int r;

	if (__builtin_expect(!real.poll, 0))
		shim_init();
	r = fast_poll(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000);
	if (r == -2)
		return -1;
	return r >= 0 ? r : real.poll(fds, n, timeout);
}

SHIM_API int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len)
{
	if (__builtin_expect(!real.poll, 0))
		shim_init();
	if (n > len / sizeof(*fds))
		return real.poll_chk(fds, n, timeout, len);
	return poll(fds, n, timeout);
}

SHIM_API int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		   const sigset_t *mask)
{
	int r;

	if (__builtin_expect(!real.ppoll, 0))
		shim_init();
	r = fast_poll(fds, n, ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1);
	if (r == -2)
		return -1;
	return r >= 0 ? r : real.ppoll(fds, n, ts, mask);
}

SHIM_API int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
			 const sigset_t *mask, size_t len)
{
	if (__builtin_expect(!real.ppoll, 0))
		shim_init();
	if (n > len / sizeof(*fds))
		return real.ppoll_chk(fds, n, ts, mask, len);
	return ppoll(fds, n, ts, mask);
}

/* select in terms of the fast poll: only when a channel fd is in the sets. */
static int fast_select(int nfds, fd_set *r, fd_set *w, fd_set *e, int64_t timeout_ns)
{
	struct pollfd pf[FD_SETSIZE];
	nfds_t n = 0, i;
	struct sfd *s;
	bool chan = false;
	int fd, ready;

	if (!fdtab_any() || nfds < 0 || nfds > FD_SETSIZE)
		return -1;
	for (fd = 0; fd < nfds; fd++) {
		short ev = 0;

		if (r && FD_ISSET(fd, r))
			ev |= POLLIN;
		if (w && FD_ISSET(fd, w))
			ev |= POLLOUT;
		if (e && FD_ISSET(fd, e))
			ev |= POLLPRI;
		if (!ev)
			continue;
		if ((s = fdtab_get(fd))) {
			chan = true;
			sfd_put(s);
		}
		pf[n].fd = fd;
		pf[n].events = ev;
		pf[n].revents = 0;
		n++;
	}
	if (!chan)
		return -1;
	ready = fast_poll(pf, n, timeout_ns);
	if (ready == -2)
		return -2;
	if (ready < 0)
		return -1;
	if (r)
		FD_ZERO(r);
	if (w)
		FD_ZERO(w);
	if (e)
		FD_ZERO(e);
	ready = 0;
	for (i = 0; i < n; i++) {
		short rev = pf[i].revents;

		if (r && (pf[i].events & POLLIN) && (rev & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(pf[i].fd, r);
			ready++;
		}
		if (w && (pf[i].events & POLLOUT) && (rev & (POLLOUT | POLLERR))) {
			FD_SET(pf[i].fd, w);
			ready++;
		}
		if (e && (pf[i].events & POLLPRI) && (rev & POLLPRI)) {
			FD_SET(pf[i].fd, e);
			ready++;
		}
	}
	return ready;
}

/* fast_select changes the sets only when it answers. */
SHIM_API int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	int n;

	if (__builtin_expect(!real.select, 0))
		shim_init();
	n = fast_select(nfds, r, w, e,
			tv ? (int64_t)tv->tv_sec * 1000000000 + tv->tv_usec * 1000 : -1);
	if (n == -2)
		return -1;
	return n >= 0 ? n : real.select(nfds, r, w, e, tv);
}

SHIM_API int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
		     const struct timespec *ts, const sigset_t *mask)
{
	int n;

	if (__builtin_expect(!real.pselect, 0))
		shim_init();
	n = fast_select(nfds, r, w, e,
			ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1);
	if (n == -2)
		return -1;
	return n >= 0 ? n : real.pselect(nfds, r, w, e, ts, mask);
}
