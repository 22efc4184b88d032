/*
 * factory.c - pairs of anonymous channel ends, made by the daemon for the
 * processes that ask.  Making a channel and opening its two ends costs
 * several trips through the kernel to this daemon; a program that calls
 * pipe() should not wait for them.  So a process asks ahead, over the
 * abstract socket of ring.h ("Pairs of ends made ahead of time"), and the
 * factory thread makes each pair (ns_new_anon), opens both ends itself
 * through the mount (IPCD_PAIRS_DIR/<ino>, which only it may look up), and
 * sends them as one SCM_RIGHTS message.  The pairs wait in the process's
 * socket until it needs one: its pipe() is then one receive.
 *
 * The daemon itself keeps no open ends: an open file on the mount would
 * keep it from being unmounted.  Pairs in flight belong to the socket of the
 * process that asked, and go with it.
 *
 * Only the factory thread touches the connections; it takes ipcd->mu only
 * to make or hand over a channel, never across a call that waits for the
 * FUSE session.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"

#define KINDS		(IPCD_ANON_MAX + 1)
#define CONN_MAX	4096	/* connections served at once */
#define MAKERS		4	/* threads making pairs at once */
#define INVAL_BATCH	64	/* names the kernel is told to forget at once */
#define SPARE_MAX	32	/* pairs handed back, waiting to serve again */
#define SPARE_TTL_MS	1000	/* a spare nobody asked for by then is closed */

/* A process connected to ask for pairs. */
struct conn {
	uint64_t id;			/* never reused */
	int fd;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	unsigned inflight;		/* sent, not yet asked for again */
	unsigned want[KINDS];		/* asked for, not yet sent */
	unsigned making[KINDS];		/* of those, being made now */
	bool blocked;			/* its socket is full: wait for EPOLLOUT */
	struct conn *next;		/* in fac.conns */
};

/* A pair handed back (ring.h), made new again, for the next who asks. */
struct spare {
	uint32_t anon;
	uint64_t ino;			/* its channel */
	uid_t uid;
	gid_t gid;
	int fd[2];
	uint64_t map_len;
	uint64_t since;		/* when it came back (ms, monotonic) */
};

/* A pair to make, or made. */
struct job {
	uint64_t conn;			/* for whom */
	uint32_t anon;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int fd[2];			/* made: its two ends */
	uint64_t ino;			/* and its channel */
	uint64_t map_len;
	int err;			/* or why not */
	struct job *next;
};

static struct {
	/* The factory thread's own: the listening socket and connections. */
	int lfd, epfd;
	struct conn *conns;
	unsigned nconns;
	uint64_t next_id;
	unsigned fails;			/* pairs in a row that could not be made */
	struct spare spares[SPARE_MAX];
	unsigned nspares;
	pthread_t thread;
	bool started;
	/* Shared with the makers, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t work;		/* makers: a job, or stop */
	struct job *todo, *done;	/* jobs to make; made, for the factory */
	bool stop;
	char inval[INVAL_BATCH][24];	/* names to make the kernel forget */
	unsigned ninval;
	pthread_t makers[MAKERS];
	pid_t tids[MAKERS];		/* the makers, for look-ups (atomic) */
	unsigned nmakers;
	unsigned ended;			/* makers that have returned (atomic) */
	int evfd;			/* the factory: a job done, or stop */
	bool done_flag;			/* the factory thread has ended (atomic) */
} fac = { .lfd = -1, .epfd = -1, .evfd = -1, .mu = PTHREAD_MUTEX_INITIALIZER,
	  .work = PTHREAD_COND_INITIALIZER };

bool factory_lookup_ok(pid_t tid)
{
	unsigned i;

	for (i = 0; i < MAKERS && tid > 0; i++)
		if (tid == __atomic_load_n(&fac.tids[i], __ATOMIC_RELAXED))
			return true;
	return false;
}

/* ---- making pairs (the makers) ------------------------------------------------ */

/* Open end `end` of the channel at path as ring.h says pairs are opened. */
static int open_end(const char *path, unsigned end)
{
	return open(path, O_RDWR | O_NOATIME | O_CLOEXEC | (end ? O_APPEND : 0));
}

/* Tell the kernel to forget the names the makers opened pairs by (under
 * mu).  It then looks the directory up again once: so, in batches. */
static void inval_names(void)
{
	unsigned i;

	for (i = 0; i < fac.ninval; i++)
		fuse_lowlevel_notify_inval_entry(ipcd->se, ipcd->pairs_dir->ino,
						 fac.inval[i], strlen(fac.inval[i]));
	fac.ninval = 0;
}

/* Make j's pair: its ends in j->fd, or j->err. */
static void make_pair(struct job *j)
{
	char path[sizeof(ipcd->mnt) + 64], name[24];
	struct inode *in;
	fuse_ino_t ino = 0;

	j->err = 0;
	j->fd[0] = j->fd[1] = -1;
	pthread_mutex_lock(&ipcd->mu);
	in = ns_new_anon(j->anon);
	if (!in) {
		j->err = errno;
	} else {
		ino = in->ino;
		in->uid = j->uid;
		in->gid = j->gid;
		in->chan->cred_pid = j->pid;
		in->chan->cred_uid = j->uid;
		in->chan->cred_gid = j->gid;
		j->map_len = in->chan->map_len;
		j->ino = ino;
	}
	pthread_mutex_unlock(&ipcd->mu);
	if (j->err)
		return;
	snprintf(name, sizeof(name), "%llu", (unsigned long long)ino);
	snprintf(path, sizeof(path), "%s/%s/%s", ipcd->mnt, IPCD_PAIRS_DIR, name);
	j->fd[0] = open_end(path, 0);
	j->fd[1] = j->fd[0] >= 0 ? open_end(path, 1) : -1;
	if (j->fd[1] < 0) {
		j->err = errno;
		if (j->fd[0] >= 0)
			close(j->fd[0]);
		j->fd[0] = -1;
	}
	pthread_mutex_lock(&ipcd->mu);
	ns_drop_anon(in);	/* no longer to be found by number */
	pthread_mutex_unlock(&ipcd->mu);
	pthread_mutex_lock(&fac.mu);
	if (fac.ninval == INVAL_BATCH)
		inval_names();
	memcpy(fac.inval[fac.ninval++], name, sizeof(name));
	pthread_mutex_unlock(&fac.mu);
}

static void *maker_main(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	struct job *j;

	rcu_register_thread();	/* ns_inode looks up under RCU */
	__atomic_store_n(&fac.tids[me], (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
	pthread_mutex_lock(&fac.mu);
	for (;;) {
		while (!fac.todo && !fac.stop) {
			/* Idle: the names of what was made may go now. */
			if (fac.ninval)
				inval_names();
			pthread_cond_wait(&fac.work, &fac.mu);
		}
		if (fac.stop)
			break;
		j = fac.todo;
		fac.todo = j->next;
		pthread_mutex_unlock(&fac.mu);
		make_pair(j);
		pthread_mutex_lock(&fac.mu);
		j->next = fac.done;
		fac.done = j;
		eventfd_write(fac.evfd, 1);
	}
	pthread_mutex_unlock(&fac.mu);
	rcu_unregister_thread();
	__atomic_add_fetch(&fac.ended, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ---- connections (the factory thread) ------------------------------------------- */

static struct conn *conn_find(uint64_t id)
{
	struct conn *c;

	for (c = fac.conns; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void conn_close(struct conn *c)
{
	struct conn **p;

	epoll_ctl(fac.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	for (p = &fac.conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	fac.nconns--;
	free(c);
}

/* Send c the pair made by j; false if c must be dropped. */
static bool send_pair(struct conn *c, struct job *j)
{
	struct ipcd_pairs_msg m = { .magic = IPCD_PAIRS_MAGIC, .anon = j->anon,
				    .map_len = j->map_len };
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { &m, sizeof(m) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;
	ssize_t n;

	memset(cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
	memcpy(CMSG_DATA(cm), j->fd, sizeof(j->fd));
	n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
		/* Its socket is full: the pair is not wanted after all. */
		c->blocked = true;
		epoll_ctl(fac.epfd, EPOLL_CTL_MOD, c->fd,
			  &(struct epoll_event){ EPOLLIN | EPOLLOUT, { .ptr = c } });
		return true;
	}
	if (n < 0)
		return false;
	c->want[j->anon] = c->want[j->anon] ? c->want[j->anon] - 1 : 0;
	c->inflight++;
	return true;
}

/* A maker is done with j: hand the pair over, or say why not. */
static uint64_t now_ms(void);

/* Keep the pair fd (both ends, as the makers open them) of kind anon,
 * made for uid and gid, as a spare; or close it when there is no room. */
static void spare_add(uint32_t anon, uint64_t ino, uid_t uid, gid_t gid, const int fd[2],
		      uint64_t map_len)
{
	struct spare *sp;

	if (fac.nspares >= SPARE_MAX) {
		close(fd[0]);
		close(fd[1]);
		return;
	}
	sp = &fac.spares[fac.nspares++];
	sp->anon = anon;
	sp->ino = ino;
	sp->uid = uid;
	sp->gid = gid;
	sp->fd[0] = fd[0];
	sp->fd[1] = fd[1];
	sp->map_len = map_len;
	sp->since = now_ms();
}

static void job_done(struct job *j)
{
	struct conn *c = conn_find(j->conn);

	if (c && c->making[j->anon])
		c->making[j->anon]--;
	if (j->err) {
		/* Out of memory or channels: the process falls back to making
		 * its own; say so once, and drop what it asked for. */
		if (fac.fails++ == 0)
			ipcd_log(LOG_WARNING, "cannot make a channel pair: %s",
				 strerror(j->err));
		if (c)
			c->want[j->anon] = 0;
	} else {
		fac.fails = 0;
		if (c && send_pair(c, j)) {
			/* The message holds the ends now: these closes are
			 * theirs, and what the process never takes goes with
			 * its socket. */
			close(j->fd[0]);
			close(j->fd[1]);
		} else {
			if (c)
				conn_close(c);
			/* Made for a process that is gone: a pair nobody has
			 * touched serves the next one of its user. */
			spare_add(j->anon, j->ino, j->uid, j->gid, j->fd, j->map_len);
		}
	}
	free(j);
}

/* Send c a spare pair of kind k made for its user, if there is one; false
 * if there is none, or c cannot take it now (*gone: c must be dropped). */
static bool send_spare(struct conn *c, unsigned k, bool *gone)
{
	struct job j = { .conn = c->id, .anon = k };
	unsigned i;

	for (i = 0; i < fac.nspares; i++) {
		struct spare *sp = &fac.spares[i];

		if (sp->anon != k || sp->uid != c->uid || sp->gid != c->gid)
			continue;
		j.fd[0] = sp->fd[0];
		j.fd[1] = sp->fd[1];
		j.map_len = sp->map_len;
		/* Made, as SO_PEERCRED tells, by the process it goes to. */
		pthread_mutex_lock(&ipcd->mu);
		chan_set_cred((fuse_ino_t)sp->ino, c->pid);
		pthread_mutex_unlock(&ipcd->mu);
		if (!send_pair(c, &j)) {
			*gone = true;
			return false;
		}
		if (c->blocked)
			return false;	/* still ours: for later */
		close(sp->fd[0]);
		close(sp->fd[1]);
		*sp = fac.spares[--fac.nspares];
		return true;
	}
	return false;
}

/* Give every pair asked for and not being made: a spare one, or a job for
 * the makers. */
static void dispatch(void)
{
	struct job *j, *list = NULL;
	struct conn *c, *next;
	unsigned k;
	bool gone;

	for (c = fac.conns; c; c = next) {
		next = c->next;
		gone = false;
		for (k = 1; k < KINDS && !gone; k++)
			while (fac.nspares && !c->blocked && c->making[k] < c->want[k] &&
			       send_spare(c, k, &gone))
				;
		if (gone)
			conn_close(c);
	}
	for (c = fac.conns; c; c = c->next)
		for (k = 1; k < KINDS; k++)
			while (!c->blocked && c->making[k] < c->want[k]) {
				j = calloc(1, sizeof(*j));
				if (!j)
					break;
				j->conn = c->id;
				j->anon = k;
				j->pid = c->pid;
				j->uid = c->uid;
				j->gid = c->gid;
				j->next = list;
				list = j;
				c->making[k]++;
			}
	if (!list)
		return;
	pthread_mutex_lock(&fac.mu);
	while (list) {
		j = list;
		list = j->next;
		j->next = fac.todo;
		fac.todo = j;
	}
	pthread_cond_broadcast(&fac.work);
	pthread_mutex_unlock(&fac.mu);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Close the spares nobody asked for in SPARE_TTL_MS: a burst of short-lived
 * processes is served, and then their rings' memory goes. */
static void spares_expire(void)
{
	uint64_t t = now_ms();
	unsigned i = 0;

	while (i < fac.nspares) {
		struct spare *sp = &fac.spares[i];

		if (t - sp->since < SPARE_TTL_MS) {
			i++;
			continue;
		}
		close(sp->fd[0]);
		close(sp->fd[1]);
		*sp = fac.spares[--fac.nspares];
	}
}

/*
 * A pair c hands back (ring.h): both ends of one of our anonymous
 * channels, opened as the factory opens them, and nothing else open on it.
 * Kept to serve the next process of c's user that asks, made new again
 * (chan_recycle); anything else is closed.  The fds are ours either way.
 */
static void take_return(struct conn *c, const int fd[2])
{
	struct statx st[2];
	uint32_t anon = 0;
	uint64_t len = 0;
	int fl[2], i, r = -EBUSY;

	for (i = 0; i < 2; i++)
		fl[i] = fcntl(fd[i], F_GETFL);
	for (i = 0; i < 2; i++)
		if (statx(fd[i], "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO,
			  &st[i]) < 0)
			st[i].stx_mode = 0;
	if (fac.nspares < SPARE_MAX && S_ISREG(st[0].stx_mode) && S_ISREG(st[1].stx_mode) &&
	    makedev(st[0].stx_dev_major, st[0].stx_dev_minor) == ipcd->dev &&
	    makedev(st[1].stx_dev_major, st[1].stx_dev_minor) == ipcd->dev &&
	    st[0].stx_ino == st[1].stx_ino &&
	    fl[0] >= 0 && fl[1] >= 0 && (fl[0] & O_ACCMODE) == O_RDWR &&
	    (fl[1] & O_ACCMODE) == O_RDWR && !(fl[0] & O_APPEND) && (fl[1] & O_APPEND)) {
		pthread_mutex_lock(&ipcd->mu);
		r = chan_recycle((fuse_ino_t)st[0].stx_ino, c->uid, c->gid, &anon, &len);
		pthread_mutex_unlock(&ipcd->mu);
	}
	if (r < 0 || anon == IPCD_ANON_NONE || anon > IPCD_ANON_MAX) {
		close(fd[0]);
		close(fd[1]);
		return;
	}
	/* As the makers open them: blocking, end 1 appending. */
	for (i = 0; i < 2; i++)
		fcntl(fd[i], F_SETFL, O_NOATIME | (i ? O_APPEND : 0));
	spare_add(anon, st[0].stx_ino, c->uid, c->gid, fd, len);
}

/* Read c's requests and returns; false if c went away or misbehaved. */
static bool take_requests(struct conn *c)
{
	struct ipcd_pairs_req q;
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &q, sizeof(q) };
	struct msghdr mh;
	struct cmsghdr *cm;
	int fd[2], nfd;
	unsigned room;
	ssize_t n;

	for (;;) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		nfd = 0;
		cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfd = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfd > 2)
				nfd = 2;
			memcpy(fd, CMSG_DATA(cm), (size_t)nfd * sizeof(int));
		}
		if (n == sizeof(q) && q.magic == IPCD_PAIRS_RETURN && nfd == 2 &&
		    !(mh.msg_flags & MSG_CTRUNC) && !q.count && !q.reserved) {
			take_return(c, fd);
			continue;
		}
		while (nfd > 0)
			close(fd[--nfd]);
		if (n != sizeof(q) || q.magic != IPCD_PAIRS_MAGIC || (mh.msg_flags & MSG_CTRUNC) ||
		    q.anon == IPCD_ANON_NONE || q.anon > IPCD_ANON_MAX || q.reserved)
			return false;
		/* An ask for more says how many of those sent were taken. */
		c->inflight = q.count > c->inflight ? 0 : c->inflight - q.count;
		room = IPCD_PAIRS_INFLIGHT - c->inflight;
		c->want[q.anon] = q.count < room ? q.count : room;
	}
}

static void accept_conns(void)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct conn *c;
	int fd;

	while ((fd = accept4(fac.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		c = fac.nconns < CONN_MAX ? calloc(1, sizeof(*c)) : NULL;
		if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
			free(c);
			close(fd);
			continue;
		}
		c->id = ++fac.next_id;
		c->fd = fd;
		c->pid = cr.pid;
		c->uid = cr.uid;
		c->gid = cr.gid;
		c->next = fac.conns;
		fac.conns = c;
		fac.nconns++;
		epoll_ctl(fac.epfd, EPOLL_CTL_ADD, fd,
			  &(struct epoll_event){ EPOLLIN, { .ptr = c } });
	}
}

static void *factory_main(void *arg)
{
	struct epoll_event ev[32];
	struct job *done, *j;
	struct conn *c;
	eventfd_t v;
	bool stop = false;
	int n, i;

	(void)arg;
	rcu_register_thread();	/* a pair handed back is looked up (chan_recycle) */
	while (!stop) {
		/* While spares wait, wake now and then to let old ones go. */
		n = epoll_wait(fac.epfd, ev, 32, fac.nspares ? SPARE_TTL_MS / 4 : -1);
		for (i = 0; i < n; i++) {
			if (ev[i].data.ptr == &fac.lfd) {
				accept_conns();
			} else if (ev[i].data.ptr == &fac.evfd) {
				eventfd_read(fac.evfd, &v);
			} else {
				c = ev[i].data.ptr;
				if (ev[i].events & EPOLLOUT) {
					c->blocked = false;
					epoll_ctl(fac.epfd, EPOLL_CTL_MOD, c->fd,
						  &(struct epoll_event){ EPOLLIN, { .ptr = c } });
				}
				if ((ev[i].events & (EPOLLHUP | EPOLLERR)) || !take_requests(c))
					conn_close(c);
			}
		}
		pthread_mutex_lock(&fac.mu);
		done = fac.done;
		fac.done = NULL;
		stop = fac.stop;
		pthread_mutex_unlock(&fac.mu);
		while (done) {
			j = done;
			done = j->next;
			job_done(j);
		}
		if (!stop)
			dispatch();
		if (fac.nspares)
			spares_expire();
		if (fac.fails > 1)
			usleep(fac.fails < 10 ? 10000 : 200000);
	}
	rcu_unregister_thread();
	/* Release: what the thread did is seen by factory_stop's acquire. */
	__atomic_store_n(&fac.done_flag, true, __ATOMIC_RELEASE);
	return NULL;
}

/* ---- start and stop ----------------------------------------------------------- */

static void stop_makers(void);

int factory_start(struct ipcd_fs *fs)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int n;

	if (!fs->fastpath)
		return 0;	/* pairs are for the shim, which needs the fast path */
	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, IPCD_PAIRS_SOCK_FMT,
		     major(fs->dev), minor(fs->dev));
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	fac.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	fac.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fac.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (fac.lfd < 0 || fac.evfd < 0 || fac.epfd < 0)
		goto fail;
	if (bind(fac.lfd, (struct sockaddr *)&sa, len) < 0 || listen(fac.lfd, 128) < 0) {
		/* Another daemon of this device, or a squatter: no pairs made
		 * here; the shim makes its own. */
		ipcd_log(LOG_WARNING, "cannot offer channel pairs on @%s: %s",
			 sa.sun_path + 1, strerror(errno));
		goto fail;
	}
	epoll_ctl(fac.epfd, EPOLL_CTL_ADD, fac.lfd,
		  &(struct epoll_event){ EPOLLIN, { .ptr = &fac.lfd } });
	epoll_ctl(fac.epfd, EPOLL_CTL_ADD, fac.evfd,
		  &(struct epoll_event){ EPOLLIN, { .ptr = &fac.evfd } });
	for (fac.nmakers = 0; fac.nmakers < MAKERS; fac.nmakers++)
		if (pthread_create(&fac.makers[fac.nmakers], NULL, maker_main,
				   (void *)(uintptr_t)fac.nmakers))
			break;
	if (fac.nmakers == 0 || pthread_create(&fac.thread, NULL, factory_main, NULL)) {
		stop_makers();
		goto fail;
	}
	fac.started = true;
	return 0;
fail:
	if (fac.lfd >= 0)
		close(fac.lfd);
	if (fac.evfd >= 0)
		close(fac.evfd);
	if (fac.epfd >= 0)
		close(fac.epfd);
	fac.lfd = fac.evfd = fac.epfd = -1;
	return 0;	/* the daemon works without it */
}

static void stop_makers(void)
{
	unsigned i;

	pthread_mutex_lock(&fac.mu);
	fac.stop = true;
	pthread_cond_broadcast(&fac.work);
	pthread_mutex_unlock(&fac.mu);
	for (i = 0; i < fac.nmakers; i++)
		pthread_join(fac.makers[i], NULL);
	fac.nmakers = 0;
}

/* Whether every maker has ended (so none waits for an open). */
static bool makers_ended(void)
{
	return __atomic_load_n(&fac.ended, __ATOMIC_ACQUIRE) == fac.nmakers;
}

/*
 * Stop the threads, at the end of the session loop and before the
 * namespace goes.  A maker may be waiting for an open of its own that the
 * session has not answered: go on answering requests until every thread is
 * done (an unmounted or aborted session fails them instead).
 */
void factory_stop(struct ipcd_fs *fs)
{
	struct fuse_buf buf = { 0 };
	struct pollfd pf = { .fd = fs->fuse_fd, .events = POLLIN };
	struct job *j;

	if (!fac.started)
		return;
	pthread_mutex_lock(&fac.mu);
	fac.stop = true;
	pthread_cond_broadcast(&fac.work);
	pthread_mutex_unlock(&fac.mu);
	eventfd_write(fac.evfd, 1);
	while (!__atomic_load_n(&fac.done_flag, __ATOMIC_ACQUIRE) || !makers_ended()) {
		if (poll(&pf, 1, 10) <= 0)
			continue;
		if (fuse_session_receive_buf(fs->se, &buf) <= 0)
			break;
		fuse_session_process_buf(fs->se, &buf);
	}
	free(buf.mem);
	pthread_join(fac.thread, NULL);
	stop_makers();
	while ((j = fac.todo)) {
		fac.todo = j->next;
		free(j);
	}
	while ((j = fac.done)) {
		fac.done = j->next;
		if (!j->err) {
			close(j->fd[0]);
			close(j->fd[1]);
		}
		free(j);
	}
	while (fac.nspares) {
		fac.nspares--;
		close(fac.spares[fac.nspares].fd[0]);
		close(fac.spares[fac.nspares].fd[1]);
	}
	while (fac.conns)
		conn_close(fac.conns);
	close(fac.lfd);
	close(fac.evfd);
	close(fac.epfd);
	fac.lfd = fac.evfd = fac.epfd = -1;
	fac.started = false;
}
