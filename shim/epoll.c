/*
 * epoll.c - epoll over channel ends without a trip through the daemon in
 * the common case.  A channel fd added to an epoll set is also added to the
 * kernel's set (so that a wait can block on it through the daemon), but
 * with a tag of ours as its data: events the kernel reports for it are only
 * a wake-up; the shim decides readiness from the ring itself, honouring
 * level- and edge-triggered and one-shot registrations, and gives back the
 * caller's data.  Other fds pass through untouched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim.h"

#define REG_MAGIC	0x69706364u	/* marks our tags in epoll data */
#define SPIN_NS		50000

struct reg {
	uint32_t magic;
	int epfd, fd;
	uint32_t events;		/* as the caller asked */
	epoll_data_t data;		/* the caller's */
	bool armed;			/* false after a one-shot fired */
	uint64_t snap[2];		/* ring state at the last edge reported */
	struct reg *next;
};

static pthread_mutex_t mu SHIM_FORKED = PTHREAD_MUTEX_INITIALIZER;
static struct reg *regs;		/* under mu; short lists in practice */
IPCD_FORK_TEXT void shim_epoll_after_fork(void)
{
	mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

static struct reg *find(int epfd, int fd)
{
	struct reg *r;

	for (r = regs; r; r = r->next)
		if (r->epfd == epfd && r->fd == fd)
			return r;
	return NULL;
}

static void unlink_reg(struct reg *dead)
{
	struct reg **p;

	for (p = &regs; *p; p = &(*p)->next)
		if (*p == dead) {
			*p = dead->next;
			free(dead);
			return;
		}
}

/* Forget registrations of a closed fd, or of a closed epoll fd. */
void shim_epoll_forget(int fd)
{
	struct reg **p, *r;

	if (!__atomic_load_n(&regs, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&mu);
	for (p = &regs; (r = *p);) {
		if (r->fd == fd || r->epfd == fd) {
			*p = r->next;
			free(r);
		} else {
			p = &r->next;
		}
	}
	pthread_mutex_unlock(&mu);
}

static bool ours(const struct epoll_event *ev)
{
	const struct reg *r = ev->data.ptr;

	/* Our tags point at registrations; the caller's data rarely does. */
	if (!r)
		return false;
	pthread_mutex_lock(&mu);
	for (const struct reg *q = regs; q; q = q->next)
		if (q == r) {
			pthread_mutex_unlock(&mu);
			return q->magic == REG_MAGIC;
		}
	pthread_mutex_unlock(&mu);
	return false;
}

SHIM_API int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct epoll_event mine;
	struct sfd *s;
	struct reg *r;
	int rc;

	if (__builtin_expect(!real.epoll_ctl, 0))
		shim_init();
	if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && !ev)
		return real.epoll_ctl(epfd, op, fd, ev);	/* EFAULT, before all else */
	s = fdtab_get(fd);
	if (!s)
		return real.epoll_ctl(epfd, op, fd, ev);
	/* The kernel's set keeps the open file's registration past a close
	 * of fd: never to serve another pipe. */
	atomic_store(&s->dirty, true);
	sfd_put(s);
	pthread_mutex_lock(&mu);
	r = find(epfd, fd);
	switch (op) {
	case EPOLL_CTL_ADD:
		/* A registration we still list may be stale (the fd was closed
		 * behind our back): the kernel says whether it is there. */
		{
			struct reg *old = r;

			r = calloc(1, sizeof(*r));
			if (!r) {
				errno = ENOMEM;
				rc = -1;
				break;
			}
			r->magic = REG_MAGIC;
			r->epfd = epfd;
			r->fd = fd;
			r->events = ev->events;
			r->data = ev->data;
			r->armed = true;
			r->snap[0] = r->snap[1] = UINT64_MAX;
			mine.events = (ev->events & ~(EPOLLONESHOT | EPOLLEXCLUSIVE)) |
				      EPOLLET;
			mine.data.ptr = r;
			rc = real.epoll_ctl(epfd, op, fd, &mine);
			if (rc == 0) {
				if (old)
					unlink_reg(old);
				r->next = regs;
				regs = r;
			} else {
				free(r);
			}
		}
		break;
	case EPOLL_CTL_MOD:
		if (!r) {
			errno = ENOENT;
			rc = -1;
			break;
		}
		mine.events = (ev->events & ~(EPOLLONESHOT | EPOLLEXCLUSIVE)) | EPOLLET;
		mine.data.ptr = r;
		rc = real.epoll_ctl(epfd, op, fd, &mine);
		if (rc == 0) {
			r->events = ev->events;
			r->data = ev->data;
			r->armed = true;
			r->snap[0] = r->snap[1] = UINT64_MAX;
		}
		break;
	case EPOLL_CTL_DEL:
		rc = real.epoll_ctl(epfd, op, fd, ev);
		if (r)
			unlink_reg(r);
		break;
	default:
		rc = real.epoll_ctl(epfd, op, fd, ev);
	}
	pthread_mutex_unlock(&mu);
	return rc;
}

/* Collect ready channel registrations of epfd into out[0..max); under mu. */
static int scan(int epfd, struct epoll_event *out, int max, bool *has_chan)
{
	struct reg *r;
	struct sfd *s;
	uint64_t now[2];
	uint32_t rev;
	int n = 0;

	*has_chan = false;
	for (r = regs; r && n < max; r = r->next) {
		if (r->epfd != epfd)
			continue;
		*has_chan = true;
		if (!r->armed || !(s = fdtab_get(r->fd)))
			continue;
		rev = (uint16_t)shim_revents(s, r->fd, (short)(r->events & 0xffff));
		if (rev & POLLNVAL) {
			sfd_put(s);
			continue;
		}
		ipcd_marks(atomic_load(&s->c), now);
		sfd_put(s);
		rev &= r->events | EPOLLHUP | EPOLLERR;
		if (!rev)
			continue;
		if (r->events & EPOLLET) {
			/* An edge: only when the ring moved since the last one. */
			if (now[0] == r->snap[0] && now[1] == r->snap[1])
				continue;
			r->snap[0] = now[0];
			r->snap[1] = now[1];
		}
		if (r->events & EPOLLONESHOT)
			r->armed = false;
		out[n].events = rev;
		out[n].data = r->data;
		n++;
	}
	return n;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Kernel results without our tags, appended after out[n]. */
static int merge_kernel(struct epoll_event *out, int n, int max,
			struct epoll_event *k, int kn)
{
	int i;

	for (i = 0; i < kn && n < max; i++)
		if (!ours(&k[i]))
			out[n++] = k[i];
	return n;
}

static int wait_common(int epfd, struct epoll_event *out, int max, int timeout,
		       const sigset_t *mask, bool pwait, uint32_t ran)
{
	struct epoll_event *k;
	struct shim_sighold h = { .on = false };
	const sigset_t *wmask;
	uint64_t start, deadline, t;
	bool has_chan;
	int n, kn, wait_ms, e;

	/* No room for events (NULL) is the kernel's to refuse. */
	if (!fdtab_any() || max <= 0 || !out || !__atomic_load_n(&regs, __ATOMIC_RELAXED))
		goto plain;
	pthread_mutex_lock(&mu);
	n = scan(epfd, out, max, &has_chan);
	pthread_mutex_unlock(&mu);
	if (!has_chan)
		goto plain;
	/* Nothing ready: from now on signal handlers wait (a spin, or a look
	 * at the rings between two kernel waits, must not hide one), and the
	 * kernel waits run with the caller's mask: a signal that came
	 * meanwhile ends them at once with EINTR, as epoll_wait ends whatever
	 * the handler's SA_RESTART.  First thing, before the clock is read:
	 * a signal that comes during the call should find it held. */
	if (!n && timeout != 0) {
		shim_signals_hold(&h);
		/* One that ran since the call began, before the hold, ends it. */
		if (h.on && shim_handlers_ran() != ran) {
			shim_signals_release(&h);
			errno = EINTR;
			return -1;
		}
	}
	wmask = shim_signals_wait_mask(&h, pwait ? mask : NULL);
	k = malloc((size_t)max * sizeof(*k));
	if (!k) {
		shim_signals_release(&h);
		goto plain;
	}
	start = now_ns();
	deadline = timeout < 0 ? UINT64_MAX : start + (uint64_t)timeout * 1000000u;
	for (;;) {
		/* Ring events in hand, or still spinning: just look at the
		 * kernel's other fds.  Else block there until something moves
		 * (the daemon wakes it for a channel), then look again. */
		t = now_ns();
		if (n || timeout == 0 || t - start < SPIN_NS)
			wait_ms = 0;
		else if (timeout < 0)
			wait_ms = -1;
		else
			wait_ms = t >= deadline ? 0 : (int)((deadline - t + 999999) / 1000000);
		if (wait_ms == 0)
			kn = real.epoll_wait(epfd, k, n ? max - n : max, 0);
		else if (wmask)
			kn = real.epoll_pwait(epfd, k, max, wait_ms, wmask);
		else
			kn = real.epoll_wait(epfd, k, max, wait_ms);
		if (kn < 0 && !n) {
			e = errno;
			shim_signals_release(&h);
			free(k);
			errno = e;
			return -1;
		}
		n = merge_kernel(out, n, max, k, kn > 0 ? kn : 0);
		if (n || (timeout >= 0 && now_ns() >= deadline))
			break;
		pthread_mutex_lock(&mu);
		n = scan(epfd, out, max, &has_chan);
		pthread_mutex_unlock(&mu);
		if (n)
			continue;	/* add the kernel's ready fds, then return */
	}
	free(k);
	if (!n && shim_signals_came(&h, wmask)) {
		/* One came while the call looked and before it timed out. */
		shim_signals_release(&h);
		errno = EINTR;
		return -1;
	}
	shim_signals_release(&h);
	return n;
plain:
	return pwait ? real.epoll_pwait(epfd, out, max, timeout, mask)
		     : real.epoll_wait(epfd, out, max, timeout);
}

/* Handlers counted first thing, as in poll (poll.c, poll_from). */
static __attribute__((noinline)) int epoll_wait_from(int epfd, struct epoll_event *out, int max,
						      int timeout, uint32_t ran)
{
	if (__builtin_expect(!real.epoll_wait, 0))
		shim_init();
	return wait_common(epfd, out, max, timeout, NULL, false, ran);
}

SHIM_API int epoll_wait(int epfd, struct epoll_event *out, int max, int timeout)
{
	return epoll_wait_from(epfd, out, max, timeout, shim_handlers_ran());
}

static __attribute__((noinline)) int epoll_pwait_from(int epfd, struct epoll_event *out, int max,
						       int timeout, const sigset_t *mask,
						       uint32_t ran)
{
	if (__builtin_expect(!real.epoll_pwait, 0))
		shim_init();
	return wait_common(epfd, out, max, timeout, mask, true, ran);
}

SHIM_API int epoll_pwait(int epfd, struct epoll_event *out, int max, int timeout,
			 const sigset_t *mask)
{
	return epoll_pwait_from(epfd, out, max, timeout, mask, shim_handlers_ran());
}
