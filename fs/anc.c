/*
 * anc.c - attachments: descriptors passed with SCM_RIGHTS on the socket
 * pairs the shim makes.  They never enter a ring.  A sender binds them to
 * the offset of the bytes they travel with (ANC_BIND): the daemon copies the
 * descriptors out of the sender's process with pidfd_getfd(2) and publishes
 * the earliest pending offset in the ring's anc_at.  The reader that comes
 * to that offset takes the attachment (ANC_TAKE) and claims the descriptors
 * on the daemon's descriptor socket with a one-time token, because only a
 * socket can hand a descriptor to another process.
 *
 * Everything here runs under fs->mu, but for the socket thread's own
 * socket calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD	O_EXCL
#endif

#define ANC_MAX_PENDING	1024	/* attachments waiting in one ring */
#define ANC_MAX_CLAIMS	4096	/* tokens waiting for their claim */

struct anc {
	uint64_t at;			/* stream offset it is bound to */
	uint32_t len;			/* bytes it covers (streams) */
	unsigned nfds;
	struct cds_list_head link;	/* in rs->ancs, by offset */
	int fds[];
};

struct claim {
	uint64_t token;
	time_t expires;			/* CLOCK_MONOTONIC seconds */
	unsigned nfds;
	struct cds_list_head link;	/* in claims */
	int fds[];
};

static CDS_LIST_HEAD(claims);		/* under mu */
static unsigned nclaims;
static uint64_t held, held_max = 512;	/* passed descriptors we hold, under mu */
static int listen_fd = -1, wake_fd = -1;
static pthread_t sock_thread;
static bool sock_running;

/*
 * Descriptors to close, under mu.  A passed descriptor may be a file of our
 * own mount, and closing one makes the kernel send us a flush request and
 * wait for its answer: the session thread must never close one itself.  The
 * socket thread closes them, without holding mu.
 */
static int *defer;
static size_t ndefer, defer_cap;

static void close_fds(const int *fds, unsigned n)
{
	size_t want = ndefer + n, cap = defer_cap ? defer_cap : 64;
	uint64_t one = 1;
	int *p;

	if (!n)
		return;
	while (cap < want)
		cap *= 2;
	if (cap != defer_cap) {
		p = realloc(defer, cap * sizeof(*p));
		if (!p) {
			/* Out of memory: better a leak than a deadlock. */
			ipcd_log(LOG_ERR, "out of memory: %u passed descriptors leak", n);
			return;
		}
		defer = p;
		defer_cap = cap;
	}
	memcpy(defer + ndefer, fds, n * sizeof(*fds));
	ndefer += n;
	if (wake_fd >= 0 && write(wake_fd, &one, sizeof(one)) < 0)
		ipcd_log(LOG_WARNING, "cannot wake the descriptor thread: %s",
			 strerror(errno));
}

/* Close what was deferred (socket thread, or after the session ended). */
static void close_deferred(void)
{
	int *fds;
	size_t n;

	pthread_mutex_lock(&ipcd->mu);
	fds = defer;
	n = ndefer;
	defer = NULL;
	ndefer = defer_cap = 0;
	pthread_mutex_unlock(&ipcd->mu);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
}

static time_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void anc_free(struct anc *a)
{
	cds_list_del(&a->link);
	close_fds(a->fds, a->nfds);
	held -= a->nfds;
	free(a);
}

/* Publish the earliest pending offset (1 + offset, or 0 for none). */
static void publish(struct rstate *rs)
{
	struct anc *first;
	uint64_t v = 0;

	if (!cds_list_empty(&rs->ancs)) {
		first = cds_list_first_entry(&rs->ancs, struct anc, link);
		v = first->at + 1;
	}
	/* Release: pairs with a reader's acquire load after its load of tail. */
	atomic_store_explicit(&rs->v.r->anc_at, v, memory_order_release);
}

/* Drop attachments that readers who ignore them have read past. */
void anc_sync(struct rstate *rs)
{
	struct anc *a, *t;
	uint64_t head;

	if (cds_list_empty(&rs->ancs) || !rs->v.r)
		return;
	head = atomic_load_explicit(&rs->v.r->head, memory_order_acquire);
	cds_list_for_each_entry_safe(a, t, &rs->ancs, link) {
		if (a->at >= head)
			break;
		anc_free(a);
		rs->nanc--;
	}
	publish(rs);
}

void anc_clear(struct rstate *rs)
{
	struct anc *a, *t;

	if (cds_list_empty(&rs->ancs))
		return;
	cds_list_for_each_entry_safe(a, t, &rs->ancs, link)
		anc_free(a);
	rs->nanc = 0;
	atomic_store(&rs->v.r->anc_at, 0);
}

/* The lock word held by thread `tid`? */
static bool holds(_Atomic uint32_t *lock, pid_t tid)
{
	return (atomic_load(lock) & ~IPCD_LOCK_WAITERS) == (uint32_t)tid;
}

int anc_bind(struct rstate *rs, const struct ipcd_anc_bind *b, pid_t tid)
{
	struct anc *a;
	int pidfd, fd, e;
	unsigned i;

	if (b->nfds == 0 || b->nfds > IPCD_ANC_MAX_FDS || b->reserved)
		return EINVAL;
	/* Only the writer holding the lock, for the bytes it has not
	 * published yet. */
	if (!holds(&rs->v.r->wlock, tid) ||
	    b->at != atomic_load(&rs->v.r->tail))
		return EINVAL;
	anc_sync(rs);
	/* Bound where nothing was published: their writer died before it
	 * published (we hold the lock now); they belong to no bytes. */
	while (!cds_list_empty(&rs->ancs)) {
		a = cds_list_entry(rs->ancs.prev, struct anc, link);
		if (a->at < b->at)
			break;
		anc_free(a);
		rs->nanc--;
	}
	/* Bounded, so that senders cannot use up the descriptors the daemon
	 * needs for channels; the kernel says the same of too many in flight. */
	if (rs->nanc >= ANC_MAX_PENDING || held + b->nfds > held_max)
		return ETOOMANYREFS;
	a = calloc(1, sizeof(*a) + b->nfds * sizeof(int));
	if (!a)
		return ENOMEM;
	pidfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
	if (pidfd < 0 && errno == EINVAL)
		pidfd = (int)syscall(SYS_pidfd_open, tid, 0);
	if (pidfd < 0) {
		e = errno == ENOSYS ? EOPNOTSUPP : errno;
		free(a);
		return e;
	}
	for (i = 0; i < b->nfds; i++) {
		fd = (int)syscall(SYS_pidfd_getfd, pidfd, b->fds[i], 0);
		if (fd < 0) {
			e = errno == ENOSYS ? EOPNOTSUPP : errno;
			close(pidfd);
			close_fds(a->fds, i);
			free(a);
			return e;
		}
		/* Our copies must not leak into what we run: none, but still. */
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		a->fds[i] = fd;
	}
	close(pidfd);
	a->at = b->at;
	a->len = b->len;
	a->nfds = b->nfds;
	held += b->nfds;
	cds_list_add_tail(&a->link, &rs->ancs);
	rs->nanc++;
	publish(rs);
	return 0;
}

static void claims_expire(time_t now)
{
	struct claim *c, *t;

	cds_list_for_each_entry_safe(c, t, &claims, link) {
		if (now < c->expires)
			continue;
		cds_list_del(&c->link);
		close_fds(c->fds, c->nfds);
		held -= c->nfds;
		free(c);
		nclaims--;
	}
}

int anc_take(struct rstate *rs, struct ipcd_anc_take *t, pid_t tid)
{
	struct anc *a;
	struct claim *c;

	if ((t->flags & ~IPCD_ANC_DROP) || t->reserved)
		return EINVAL;
	if (!holds(&rs->v.r->rlock, tid) ||
	    t->at != atomic_load(&rs->v.r->head))
		return EINVAL;
	anc_sync(rs);
	if (cds_list_empty(&rs->ancs))
		return ENOENT;
	a = cds_list_first_entry(&rs->ancs, struct anc, link);
	if (a->at != t->at)
		return ENOENT;
	t->len = a->len;
	t->nfds = a->nfds;
	t->token = 0;
	if (!(t->flags & IPCD_ANC_DROP)) {
		claims_expire(mono_now());
		c = nclaims < ANC_MAX_CLAIMS ?
			calloc(1, sizeof(*c) + a->nfds * sizeof(int)) : NULL;
		if (!c || getrandom(&c->token, sizeof(c->token), 0) != sizeof(c->token)) {
			free(c);
			return ENOMEM;	/* the attachment stays for a retry */
		}
		c->token |= 1;		/* never 0 */
		c->expires = mono_now() + IPCD_ANC_CLAIM_SECS;
		c->nfds = a->nfds;
		memcpy(c->fds, a->fds, a->nfds * sizeof(int));
		a->nfds = 0;		/* the claim owns them (and their count) */
		cds_list_add_tail(&c->link, &claims);
		nclaims++;
		t->token = c->token;
	}
	anc_free(a);
	rs->nanc--;
	publish(rs);
	return 0;
}

/* ---- the descriptor socket ------------------------------------------------ */

static struct claim *claim_find(uint64_t token)
{
	struct claim *c;

	cds_list_for_each_entry(c, &claims, link)
		if (c->token == token) {
			cds_list_del(&c->link);
			nclaims--;
			return c;
		}
	return NULL;
}

/* One connection: a token in, its descriptors out, then goodbye. */
static void serve(int cfd)
{
	struct timeval tv = { 1, 0 };
	union {
		char buf[CMSG_SPACE(IPCD_ANC_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { 0 };
	struct cmsghdr *cm;
	struct iovec iov;
	struct claim *c;
	uint64_t token;
	uint32_t n;

	setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (recv(cfd, &token, sizeof(token), 0) != sizeof(token))
		return;
	pthread_mutex_lock(&ipcd->mu);
	c = claim_find(token);
	pthread_mutex_unlock(&ipcd->mu);
	if (!c)
		return;		/* the client sees the connection close */
	n = c->nfds;
	iov.iov_base = &n;
	iov.iov_len = sizeof(n);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.buf;
	m.msg_controllen = CMSG_SPACE(c->nfds * sizeof(int));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(c->nfds * sizeof(int));
	memcpy(CMSG_DATA(cm), c->fds, c->nfds * sizeof(int));
	if (sendmsg(cfd, &m, MSG_NOSIGNAL) < 0)
		ipcd_log(LOG_WARNING, "cannot hand over %u passed descriptors: %s",
			 c->nfds, strerror(errno));
	for (unsigned i = 0; i < c->nfds; i++)
		close(c->fds[i]);	/* this thread may */
	pthread_mutex_lock(&ipcd->mu);
	held -= c->nfds;
	pthread_mutex_unlock(&ipcd->mu);
	free(c);
}

static void *sock_main(void *arg)
{
	struct pollfd pf[2] = {
		{ .fd = listen_fd, .events = POLLIN },
		{ .fd = wake_fd, .events = POLLIN },
	};
	uint64_t v;
	bool stop;
	int cfd;

	(void)arg;
	for (;;) {
		poll(pf, 2, 1000);
		if ((pf[1].revents & POLLIN) && read(wake_fd, &v, sizeof(v)) < 0)
			v = 0;
		pthread_mutex_lock(&ipcd->mu);
		stop = ipcd->stop;
		claims_expire(mono_now());
		pthread_mutex_unlock(&ipcd->mu);
		close_deferred();
		if (stop)
			break;
		if (!(pf[0].revents & POLLIN))
			continue;
		cfd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0)
			continue;
		serve(cfd);
		close(cfd);
	}
	return NULL;
}

/* The abstract socket name for daemon `pid`; returns the address length. */
static socklen_t anc_sock_name(struct sockaddr_un *sa, uint32_t pid)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, IPCD_ANC_SOCK_FMT, pid);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

int anc_start(struct ipcd_fs *fs)
{
	struct sockaddr_un sa;
	socklen_t len = anc_sock_name(&sa, (uint32_t)getpid());

	struct rlimit rl;

	(void)fs;
	/* Room for passed descriptors: the hard limit, half of it for them. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = 1024;
		held_max = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : rl.rlim_cur / 2;
	}
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (wake_fd < 0)
		return -1;
	listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, len) < 0 ||
	    listen(listen_fd, 64) < 0) {
		ipcd_log(LOG_WARNING, "no descriptor socket (%s): descriptors passed "
			 "on socket pairs cannot be received", strerror(errno));
		if (listen_fd >= 0)
			close(listen_fd);
		listen_fd = -1;
		/* Everything else works; the thread still closes what the
		 * session thread must not. */
	}
	if (pthread_create(&sock_thread, NULL, sock_main, NULL)) {
		if (listen_fd >= 0)
			close(listen_fd);
		listen_fd = -1;
		return -1;
	}
	sock_running = true;
	return 0;
}

/* After fs->stop is set; what is still held is closed by anc_end. */
void anc_stop(struct ipcd_fs *fs)
{
	struct claim *c, *t;
	uint64_t one = 1;

	(void)fs;
	if (sock_running) {
		if (write(wake_fd, &one, sizeof(one)) < 0)
			ipcd_log(LOG_WARNING, "cannot stop the descriptor thread: %s",
				 strerror(errno));
		pthread_join(sock_thread, NULL);
		sock_running = false;
	}
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
	pthread_mutex_lock(&ipcd->mu);
	cds_list_for_each_entry_safe(c, t, &claims, link) {
		cds_list_del(&c->link);
		close_fds(c->fds, c->nfds);
		held -= c->nfds;
		free(c);
	}
	nclaims = 0;
	pthread_mutex_unlock(&ipcd->mu);
}

/* Once the session is gone (no flush can wait for us): close the rest. */
void anc_end(void)
{
	close_deferred();
	if (wake_fd >= 0)
		close(wake_fd);
	wake_fd = -1;
}
