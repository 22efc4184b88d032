/*
 * poll.c - readiness for channel ends without a trip through the daemon in
 * the common case.  poll, ppoll, select and pselect first look at the rings
 * of the channel fds (and, with a zero timeout, at the other fds through the
 * kernel); when something is ready they answer at once, and when only
 * channel fds are watched they spin briefly on the rings.  Otherwise they
 * wait in the kernel, where the daemon's poll support wakes them when a ring
 * changes, and then take the answer from the rings again.  epoll.c does the
 * same for epoll sets.
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define SPIN_NS	50000	/* as the ring's own waits */
#define SLICE_NS	10000000	/* a wait without an epoll set of ours */

/* poll with more fds than this looks up RLIMIT_NOFILE first, as the kernel
 * refuses more fds than that limit (EINVAL); fewer pass unchecked, which is
 * wrong only under a limit lowered below it. */
#define POLL_NFDS_CHECKED	16

/* The events that make select's sets ready, as the kernel counts them. */
#define SEL_IN	(POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR)
#define SEL_OUT	(POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR)
#define SEL_EX	POLLPRI

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
	/* A reaped child may have held the peer end without a word: what the
	 * daemon learns of its close must be in the rings first. */
	hold_catch_up(s, fd);
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
	data = ipcd_has_data(c);
	no_reader = ipcd_ring_readers(out) == 0;
	if (s->kind == SK_PIPE) {
		if (s->roles & IPCD_ROLE_READ) {
			if (data)
				rev |= POLLIN | POLLRDNORM;
			if (hup)
				rev |= POLLHUP;
		}
		if (s->roles & IPCD_ROLE_WRITE) {
			/* With no reader too, as the kernel: writable
			 * while there is room. */
			if (ipcd_has_room(c, PIPE_BUF))
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

/* The time left until deadline (UINT64_MAX: none, NULL), in *ts. */
static struct timespec *time_left(uint64_t deadline, struct timespec *ts)
{
	uint64_t t = now_ns(), left;

	if (deadline == UINT64_MAX)
		return NULL;
	left = deadline > t ? deadline - t : 0;
	ts->tv_sec = (time_t)(left / 1000000000u);
	ts->tv_nsec = (long)(left % 1000000000u);
	return ts;
}

/* A valid timeout in ns, INT64_MAX for one too long to tell from none. */
static int64_t ns_of(time_t sec, long nsec)
{
	if (sec > INT64_MAX / 1000000000 - 1)
		return INT64_MAX;
	return (int64_t)sec * 1000000000 + nsec;
}

static uint64_t deadline_of(int64_t timeout_ns)
{
	uint64_t t;

	if (timeout_ns < 0)
		return UINT64_MAX;
	t = now_ns();
	return (uint64_t)timeout_ns > UINT64_MAX - 1 - t ? UINT64_MAX - 1 :
							     t + (uint64_t)timeout_ns;
}

void shim_signals_hold(struct shim_sighold *h)
{
	sigset_t all;

	h->on = atomic_load_explicit(&shim_handlers, memory_order_relaxed);
	if (!h->on)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &h->old);
}

void shim_signals_release(struct shim_sighold *h)
{
	int e = errno;

	if (h->on)
		pthread_sigmask(SIG_SETMASK, &h->old, NULL);	/* handlers run */
	h->on = false;
	errno = e;
}

const sigset_t *shim_signals_wait_mask(const struct shim_sighold *h, const sigset_t *mask)
{
	return mask ? mask : h->on ? &h->old : NULL;
}

bool shim_signals_came(const struct shim_sighold *h, const sigset_t *mask)
{
	const sigset_t *m = shim_signals_wait_mask(h, mask);
	sigset_t pend;
	int i, e = errno, r;

	if (!h->on)
		return false;
	r = sigpending(&pend);
	errno = e;
	if (r < 0)
		return false;
	for (i = 1; i < NSIG; i++)
		if (sigismember(&pend, i) == 1 && sigismember(m, i) == 0)
			return true;
	return false;
}

/*
 * Spin over ready(arg) for at most ns, yielding now and then (a peer on our
 * CPU must get to run).  Signal handlers are held off meanwhile when the
 * program has any, so that a signal ends the call as it would end a kernel
 * poll: -1 if one came (its handler has run at the end), 1 if ready, 0 not.
 */
int shim_spin(uint64_t ns, bool (*ready)(void *), void *arg)
{
	struct shim_sighold h;
	uint64_t start = now_ns();
	int r = 0;

	shim_signals_hold(&h);
	while (now_ns() - start < ns) {
		if (ready(arg)) {
			r = 1;
			break;
		}
		cpu_relax();
		sched_yield();
	}
	if (!r && shim_signals_came(&h, NULL))
		r = -1;
	shim_signals_release(&h);
	return r;
}

/* fd's end with a reference, if its rings can be looked at; else NULL, and
 * the kernel answers for fd (through the daemon, if it is a channel end
 * the shim cannot map). */
static struct sfd *chan_get(int fd)
{
	struct sfd *s = fdtab_get(fd);

	if (s && !sfd_chan(s, fd)) {
		sfd_put(s);
		s = NULL;
	}
	return s;
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
		s = chan_get(fds[i].fd);
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
		s = fds[i].fd >= 0 ? chan_get(fds[i].fd) : NULL;
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
	for (i = 0; i < n; i++)
		if (o[i].fd >= 0) {
			fds[i].revents = r > 0 ? o[i].revents : 0;
			if (fds[i].revents)
				ready++;
		}
	free(o);
	return ready;
}

/* After a kernel wait: the channel fds' answers from their rings, the
 * others' as the kernel gave them; how many fds have events. */
static int rescan(struct pollfd *fds, nfds_t n)
{
	nfds_t i;
	int ready = 0;
	struct sfd *s;

	for (i = 0; i < n; i++) {
		if (fds[i].fd < 0) {
			fds[i].revents = 0;
			continue;
		}
		s = chan_get(fds[i].fd);
		if (s) {
			fds[i].revents = shim_revents(s, fds[i].fd, fds[i].events);
			sfd_put(s);
		}
		if (fds[i].revents)
			ready++;
	}
	return ready;
}

/*
 * The set the kernel waits on once the daemon has woken a wait for nothing:
 * the daemon answers a channel file's poll by pipe rules, and may keep
 * showing an end ready that is not by its socket's rules (a datagram end
 * whose peer is gone, a stream end whose peer shut down reading).  So the
 * channel fds go into an epoll set of ours, edge-triggered: a change of
 * their rings wakes the wait, the daemon's standing answer does not.  k
 * gets the other fds, and the epoll fd last (fd -1 if there is none: then
 * the rings are looked at every few milliseconds).
 */
static int edge_set(struct pollfd *fds, nfds_t n, struct pollfd *k)
{
	struct epoll_event ev;
	struct sfd *s;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	nfds_t i;

	for (i = 0; i < n; i++) {
		k[i] = fds[i];
		k[i].revents = 0;
		if (fds[i].fd < 0 || !(s = chan_get(fds[i].fd)))
			continue;
		sfd_put(s);
		k[i].fd = -1;
		if (ep < 0)
			continue;
		/* Every event the daemon answers with, so that no change of
		 * the rings goes unseen; a second entry of one fd is
		 * already there (EEXIST). */
		ev.events = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLET;
		ev.data.u64 = i;
		real.epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &ev);
	}
	k[n] = (struct pollfd){ ep, POLLIN, 0 };
	return ep;
}

/* Take the edges the epoll set has seen (they only woke us). */
static void edge_drain(int ep)
{
	struct epoll_event ev[16];

	while (real.epoll_wait(ep, ev, 16, 0) == 16)
		;
}

/*
 * Wait in the kernel with the signal mask wmask (NULL: the thread's) until
 * some fd is ready by the rings' rules, or until deadline; the result and
 * errno of poll.  The channel fds are in the kernel's set through the
 * daemon's poll support.
 */
static int wait_kernel(struct pollfd *fds, nfds_t n, uint64_t deadline,
		       const sigset_t *wmask)
{
	struct pollfd *k = fds;
	struct timespec ts, *tp;
	nfds_t kn = n, i;
	bool timed_out;
	int ep = -1, r, e;

	for (;;) {
		bool sliced = false;

		tp = time_left(deadline, &ts);
		if (k != fds && k[n].fd < 0 && (!tp || tp->tv_sec || tp->tv_nsec > SLICE_NS)) {
			/* No epoll set: the rings are looked at again soon. */
			ts = (struct timespec){ 0, SLICE_NS };
			tp = &ts;
			sliced = true;
		}
		r = real.ppoll(k, kn, tp, wmask);
		if (r < 0)
			break;
		timed_out = r == 0 && tp && !sliced;
		if (k != fds) {
			if (k[n].revents)
				edge_drain(ep);
			for (i = 0; i < n; i++)
				if (k[i].fd >= 0)
					fds[i].revents = k[i].revents;
		}
		r = rescan(fds, n);
		if (r || timed_out)
			break;
		if (k == fds) {
			/* Woken for nothing: from now on, only changes count. */
			k = malloc((n + 1) * sizeof(*k));
			if (!k) {
				k = fds;
				break;	/* r is 0: time out early rather than spin */
			}
			ep = edge_set(fds, n, k);
			kn = n + 1;
		}
	}
	e = errno;
	if (k != fds)
		free(k);
	if (ep >= 0)
		close(ep);
	errno = e;
	return r;
}

/* Before a wait: pipes of the set that need no channel become kernel
 * pipes (shim_demote); whether any did. */
static bool demote_set(struct pollfd *fds, nfds_t n)
{
	bool any = false;
	nfds_t i;

	for (i = 0; i < n; i++)
		if (fds[i].fd >= 0 && fdtab_has(fds[i].fd) && shim_demote(fds[i].fd))
			any = true;
	return any;
}

/* poll(2) and ppoll(2): timeout_ns < 0 waits forever; mask is ppoll's. */
static int poll_common(struct pollfd *fds, nfds_t n, int64_t timeout_ns,
		       const struct timespec *ts, const sigset_t *mask, bool pp, uint32_t ran)
{
	struct shim_sighold h;
	bool others;
	uint64_t deadline;
	int r = -1, e;

	/* The kernel answers what it refuses: more fds than allowed
	 * (EINVAL), an array that is not there (EFAULT). */
	if (!fdtab_any() || (n && !fds))
		goto plain;
	if (n > POLL_NFDS_CHECKED) {
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && n > rl.rlim_cur)
			goto plain;
	}
	r = scan(fds, n, &others);
	if (r < 0)
		goto plain;
	if (!r && timeout_ns != 0 && demote_set(fds, n)) {
		r = scan(fds, n, &others);
		if (r < 0)
			goto plain;
	}
	if (!r && !others && timeout_ns != 0) {
		/* From here until the kernel waits, a signal must not slip by
		 * unnoticed: handlers wait, and the kernel's wait, which runs
		 * with the caller's mask, ends at once with EINTR for one that
		 * came.  First thing: a signal that comes during the call
		 * should find it held. */
		shim_signals_hold(&h);
	} else {
		if (others)
			r = merge_others(fds, n, r);
		if (r > 0 || timeout_ns == 0)
			return r;
		shim_signals_hold(&h);
	}
	/* A handler that ran since the call began (before signals were held)
	 * ends it, as one that comes during a kernel poll does. */
	if (h.on && shim_handlers_ran() != ran) {
		shim_signals_release(&h);
		errno = EINTR;
		return -1;
	}
	deadline = deadline_of(timeout_ns);
	if (!others) {
		/* Only channel fds: spin on the rings before a trip to the
		 * daemon. */
		uint64_t start = now_ns(), t;

		do {
			r = scan(fds, n, &others);
			if (r > 0) {
				shim_signals_release(&h);
				return r;
			}
			cpu_relax();
			sched_yield();
			t = now_ns();
		} while (t - start < SPIN_NS && t < deadline);
	}
	r = wait_kernel(fds, n, deadline, shim_signals_wait_mask(&h, mask));
	e = errno;
	shim_signals_release(&h);
	errno = e;
	return r;
plain:
	return pp ? real.ppoll(fds, n, ts, mask) :
		    real.poll(fds, n, timeout_ns < 0 ? -1 : (int)(timeout_ns / 1000000));
}

/* The count of handlers noted in the call's first instructions: one that
 * runs any later ends the call (shim_handlers_ran). */
static __attribute__((noinline)) int poll_from(struct pollfd *fds, nfds_t n, int timeout,
						uint32_t ran)
{
	if (__builtin_expect(!real.poll, 0))
		shim_init();
	return poll_common(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL, NULL,
			   false, ran);
}

SHIM_API int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return poll_from(fds, n, timeout, shim_handlers_ran());
}

SHIM_API int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len)
{
	if (__builtin_expect(!real.poll, 0))
		shim_init();
	if (n > len / sizeof(*fds))
		return real.poll_chk(fds, n, timeout, len);
	return poll(fds, n, timeout);
}

static __attribute__((noinline)) int ppoll_from(struct pollfd *fds, nfds_t n,
						 const struct timespec *ts,
						 const sigset_t *mask, uint32_t ran)
{
	int64_t t = -1;

	if (__builtin_expect(!real.ppoll, 0))
		shim_init();
	if (ts) {
		/* A bad timeout is the kernel's to refuse (EINVAL). */
		if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
			return real.ppoll(fds, n, ts, mask);
		t = ns_of(ts->tv_sec, ts->tv_nsec);
	}
	return poll_common(fds, n, t, ts, mask, true, ran);
}

SHIM_API int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		   const sigset_t *mask)
{
	return ppoll_from(fds, n, ts, mask, shim_handlers_ran());
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

/*
 * select and pselect in terms of the poll above, when a channel fd is in
 * the sets: -2 to leave the call to the kernel, else its result.  tv, if
 * not NULL, gets the time left, as Linux's select(2) leaves it.
 */
static int fast_select(int nfds, fd_set *r, fd_set *w, fd_set *e, int64_t timeout_ns,
		       const sigset_t *mask, struct timeval *tv, uint32_t ran)
{
	struct pollfd pf[FD_SETSIZE];
	struct timespec ts, *tp;
	nfds_t n = 0, i;
	struct sfd *s;
	bool chan = false;
	uint64_t deadline = deadline_of(timeout_ns);
	int fd, ready;

	if (!fdtab_any() || nfds < 0 || nfds > FD_SETSIZE)
		return -2;
	for (fd = 0; fd < nfds; fd++) {
		short ev = 0;

		if (r && FD_ISSET(fd, r))
			ev |= POLLIN | POLLRDNORM | POLLRDBAND;
		if (w && FD_ISSET(fd, w))
			ev |= POLLOUT | POLLWRNORM | POLLWRBAND;
		if (e && FD_ISSET(fd, e))
			ev |= POLLPRI;
		if (!ev)
			continue;
		if ((s = chan_get(fd))) {
			chan = true;
			sfd_put(s);
		}
		pf[n].fd = fd;
		pf[n].events = ev;
		pf[n].revents = 0;
		n++;
	}
	if (!chan)
		return -2;
	tp = timeout_ns < 0 ? NULL : &ts;
	ts.tv_sec = (time_t)(timeout_ns / 1000000000);
	ts.tv_nsec = (long)(timeout_ns % 1000000000);
	ready = poll_common(pf, n, timeout_ns, tp, mask, true, ran);
	if (ready < 0)
		return -1;
	for (i = 0; i < n; i++)
		if (pf[i].revents & POLLNVAL) {
			errno = EBADF;	/* select refuses a closed fd */
			return -1;
		}
	if (r)
		FD_ZERO(r);
	if (w)
		FD_ZERO(w);
	if (e)
		FD_ZERO(e);
	ready = 0;
	for (i = 0; i < n; i++) {
		short rev = pf[i].revents;

		if (r && (pf[i].events & POLLIN) && (rev & SEL_IN)) {
			FD_SET(pf[i].fd, r);
			ready++;
		}
		if (w && (pf[i].events & POLLOUT) && (rev & SEL_OUT)) {
			FD_SET(pf[i].fd, w);
			ready++;
		}
		if (e && (pf[i].events & POLLPRI) && (rev & SEL_EX)) {
			FD_SET(pf[i].fd, e);
			ready++;
		}
	}
	if (tv) {
		uint64_t t = now_ns(), left = deadline > t ? deadline - t : 0;

		tv->tv_sec = (time_t)(left / 1000000000u);
		tv->tv_usec = (suseconds_t)(left % 1000000000u / 1000);
	}
	return ready;
}

/* fast_select changes the sets only when it answers.  The entry points of
 * the poll family note the count of handlers first (poll_from). */
static __attribute__((noinline)) int select_from(int nfds, fd_set *r, fd_set *w, fd_set *e,
						  struct timeval *tv, uint32_t ran)
{
	int n;

	if (__builtin_expect(!real.select, 0))
		shim_init();
	if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000))
		return real.select(nfds, r, w, e, tv);	/* EINVAL */
	n = fast_select(nfds, r, w, e, tv ? ns_of(tv->tv_sec, tv->tv_usec * 1000) : -1, NULL,
			tv, ran);
	return n != -2 ? n : real.select(nfds, r, w, e, tv);
}

SHIM_API int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	return select_from(nfds, r, w, e, tv, shim_handlers_ran());
}

static __attribute__((noinline)) int pselect_from(int nfds, fd_set *r, fd_set *w, fd_set *e,
						   const struct timespec *ts, const sigset_t *mask,
						   uint32_t ran)
{
	int n;

	if (__builtin_expect(!real.pselect, 0))
		shim_init();
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L))
		return real.pselect(nfds, r, w, e, ts, mask);	/* EINVAL */
	n = fast_select(nfds, r, w, e, ts ? ns_of(ts->tv_sec, ts->tv_nsec) : -1, mask, NULL,
			ran);
	return n != -2 ? n : real.pselect(nfds, r, w, e, ts, mask);
}

SHIM_API int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
		     const struct timespec *ts, const sigset_t *mask)
{
	return pselect_from(nfds, r, w, e, ts, mask, shim_handlers_ran());
}
