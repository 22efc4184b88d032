/*
 * pairs.c - channel ends coming into the process: pairs for pipe(),
 * pipe2() and socketpair(), and ends inherited across exec or received
 * over a socket.
 *
 * A pair is taken from the daemon's factory (ring.h, "Pairs of ends made
 * ahead of time"): the process keeps one connection per kind, asks for
 * pairs before it needs them, and they wait in its socket; pipe() then
 * costs one receive.  The connection is close-on-exec and shared with
 * forked children, so a subshell takes from its parent's supply at once.
 * Where the factory cannot be reached, the shim makes a pair itself through
 * the file system, as the daemon would (slower, same result).
 *
 * An inherited end costs nothing until it is used: at start the shim only
 * notes which descriptors are ends on the mount (statx without a trip to
 * the daemon, F_GETFL for the end), and maps the rings at first use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "coord.h"
#include "shim.h"

#define KINDS		(IPCD_ANON_MAX + 1)
#define ASK_FIRST	4	/* pairs a new connection asks for */
#define ASK_MAX		16	/* pairs kept coming, at most */
#define WAIT_MS		2000	/* longest wait for the factory */
#define WAIT_TRIES	20	/* and how many looks in that time */
#define WAIT_PAIRS	16	/* pairs a process may wait for, the first ones */

static const char *const labels[] = {
	[SK_PIPE] = "pipe", [SK_STREAM] = "stream",
	[SK_DGRAM] = "dgram", [SK_SEQPACKET] = "seqpacket",
};

/* The connection to the factory for one kind (under supply_mu). */
struct supply {
	int fd;			/* -1: none yet; -2: the factory is out of reach */
	unsigned expect;	/* pairs asked for and not received */
	unsigned ask;		/* how many to keep coming */
	unsigned taken;		/* pairs this process took from it */
	uint64_t ino;		/* fd's socket inode (0: not asked yet) */
	pid_t owner;		/* the process that connected (0: inherited) */
};
static struct supply supply[KINDS] SHIM_FORKED = {
	{ -1, 0, 0, 0, 0, 0 }, { -1, 0, 0, 0, 0, 0 }, { -1, 0, 0, 0, 0, 0 },
	{ -1, 0, 0, 0, 0, 0 }, { -1, 0, 0, 0, 0, 0 }, { -1, 0, 0, 0, 0, 0 }
};

static pthread_mutex_t supply_mu SHIM_FORKED = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned long counter;

static uint32_t anon_of(enum skind kind, int flags)
{
	switch (kind) {
	case SK_STREAM: return IPCD_ANON_STREAM;
	case SK_DGRAM: return IPCD_ANON_DGRAM;
	case SK_SEQPACKET: return IPCD_ANON_SEQPACKET;
	default: return (flags & O_DIRECT) ? IPCD_ANON_PACKET : IPCD_ANON_PIPE;
	}
}

static enum skind kind_of(uint32_t anon)
{
	switch (anon) {
	case IPCD_ANON_STREAM: return SK_STREAM;
	case IPCD_ANON_DGRAM: return SK_DGRAM;
	case IPCD_ANON_SEQPACKET: return SK_SEQPACKET;
	default: return SK_PIPE;
	}
}

/* Roles of end `end` of a channel of kind `kind`. */
static unsigned end_roles(enum skind kind, int end)
{
	if (kind == SK_PIPE)
		return end ? IPCD_ROLE_WRITE : IPCD_ROLE_READ;
	return IPCD_ROLE_READ | IPCD_ROLE_WRITE;
}

/* ---- the factory's supply ------------------------------------------------------ */

/*
 * Move fd out of the way of the program's own numbers, to SHIM_OWN_FDS or
 * above; -1 (fd closed) where the descriptor limit leaves no room there:
 * the shim then does without, rather than take a number the program
 * counts on.
 */
int shim_move_high(int fd)
{
	int hi = real.fcntl(fd, F_DUPFD_CLOEXEC, SHIM_OWN_FDS);

	real.close(fd);
	return hi;
}

/* Connect to the factory of our mount; -1 if it cannot be reached. */
static int supply_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	struct statx stx;
	dev_t dev = shim_mount_dev();
	socklen_t len;
	int fd, n;

	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, IPCD_PAIRS_SOCK_FMT,
		     major(dev), minor(dev));
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* The name is not protected: the peer must be the mount's owner,
	 * who runs the daemon, or anyone could hand us channels to spy on. */
	if (connect(fd, (struct sockaddr *)&sa, len) < 0 ||
	    real.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 ||
	    statx(AT_FDCWD, shim_mount_dir(), AT_STATX_DONT_SYNC, STATX_UID, &stx) < 0 ||
	    (cr.uid != stx.stx_uid && cr.uid != 0)) {
		real.close(fd);
		return -1;
	}
	return shim_move_high(fd);
}

static void supply_ask(struct supply *sp, unsigned k, unsigned count);

/* Connect for kind k and ask for its first pairs, if not done (under
 * supply_mu); false if the factory is out of reach. */
static bool supply_open(unsigned k)
{
	struct supply *sp = &supply[k];

	if (sp->fd == -1) {
		sp->fd = supply_connect();
		sp->ino = 0;
		sp->owner = shim_pid;
		sp->ask = ASK_FIRST;
		sp->expect = 0;
		if (sp->fd < 0 && (errno == EMFILE || errno == EINVAL)) {
			sp->fd = -1;	/* no room for it now; later perhaps */
		} else if (sp->fd < 0) {
			sp->fd = -2;
			shim_log("no pair factory for %s: making pairs here", shim_mount_dir());
		} else {
			supply_ask(sp, k, sp->ask);
		}
	}
	return sp->fd >= 0;
}

int shim_supply_list(unsigned *kinds, int *fds, uint64_t *inos, int max)
{
	struct statx stx;
	unsigned k;
	int n = 0;

	for (k = 0; k < KINDS && n < max; k++) {
		if (supply[k].fd < 0)
			continue;
		/* Asked once: a program run later is told the same socket. */
		if (!supply[k].ino) {
			if (statx(supply[k].fd, "", AT_EMPTY_PATH, STATX_INO, &stx) < 0)
				continue;
			supply[k].ino = stx.stx_ino;
		}
		kinds[n] = k;
		fds[n] = supply[k].fd;
		inos[n++] = supply[k].ino;
	}
	if (n < max && (fds[n] = shim_sites_fd(&inos[n])) >= 0)
		kinds[n++] = SHIM_SITES_KIND;
	return n;
}

void shim_supply_cloexec(bool on)
{
	unsigned k;

	uint64_t ino;
	int fd = shim_sites_fd(&ino);

	for (k = 0; k < KINDS; k++)
		if (supply[k].fd >= 0)
			real.fcntl(supply[k].fd, F_SETFD, on ? FD_CLOEXEC : 0);
	if (fd >= 0)
		real.fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

/*
 * A connection our parent had, which it let us inherit: ours if fd still
 * is that socket (we are the only thread yet).  Its pairs are shared with
 * the parent and its other children, as after a fork.
 */
void shim_supply_adopt(unsigned kind, int fd, uint64_t ino)
{
	struct statx stx;

	if (kind == SHIM_SITES_KIND) {
		shim_sites_adopt(fd, ino);
		return;
	}
	if (kind >= KINDS || supply[kind].fd != -1 ||
	    statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_TYPE, &stx) < 0 ||
	    !S_ISSOCK(stx.stx_mode) || stx.stx_ino != ino)
		return;
	real.fcntl(fd, F_SETFD, FD_CLOEXEC);
	supply[kind].fd = fd;
	supply[kind].ino = ino;
	supply[kind].owner = 0;
	supply[kind].ask = ASK_FIRST;
	supply[kind].expect = 0;
}

/* Ask for count pairs more of kind k, saying as many were taken (under
 * supply_mu); never waits. */
static void supply_ask(struct supply *sp, unsigned k, unsigned count)
{
	struct ipcd_pairs_req q = { .magic = IPCD_PAIRS_MAGIC, .anon = k, .count = count };

	if (count && real.send(sp->fd, &q, sizeof(q), MSG_DONTWAIT | MSG_NOSIGNAL) ==
		     sizeof(q))
		sp->expect += count;
}

/*
 * One message of the factory's from sock, without waiting (flags: more
 * recvmsg flags), into *m and its two ends into fds (end 0 first): the
 * length received, or -1 with errno.  fds are -1 unless a whole message
 * came with both ends; what came otherwise is closed.
 */
static ssize_t pair_recv(int sock, int flags, struct ipcd_pairs_msg *m, int fds[2])
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { m, sizeof(*m) };
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	ssize_t n;
	int got[2];

	fds[0] = fds[1] = -1;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	n = real.recvmsg(sock, &mh, MSG_DONTWAIT | flags);
	if (n <= 0)
		return n;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len < CMSG_LEN(sizeof(int)))
		return n;
	if (cm->cmsg_len != CMSG_LEN(2 * sizeof(int)) || (mh.msg_flags & MSG_CTRUNC) ||
	    n != sizeof(*m)) {
		/* The table could not take both, or not a pair as sent. */
		memcpy(got, CMSG_DATA(cm), sizeof(int));
		real.close(got[0]);
		if (cm->cmsg_len >= CMSG_LEN(2 * sizeof(int))) {
			memcpy(got, CMSG_DATA(cm), 2 * sizeof(int));
			real.close(got[1]);
		}
		return n;
	}
	memcpy(fds, CMSG_DATA(cm), 2 * sizeof(int));
	return n;
}

/*
 * Take a pair of kind k from the factory into fds (end 0, end 1), with
 * MSG_CMSG_CLOEXEC as cloexec says; *map_len is what to map.  0, or -1
 * with errno (EMFILE when the table is full, else the factory failed).
 */
static int supply_take(unsigned k, bool cloexec, int fds[2], uint64_t *map_len)
{
	struct supply *sp = &supply[k];
	/* A process waits for the factory for its first few pairs only (a
	 * pipeline should move its bytes through the rings); past those, no
	 * pair at hand means a kernel pipe at once, so that a burst of pipes
	 * costs what the kernel's cost. */
	bool may_wait = sp->taken < WAIT_PAIRS;
	struct ipcd_pairs_msg m;
	struct pollfd pf;
	ssize_t n = -1;
	int tries, e = EAGAIN;

	pthread_mutex_lock(&supply_mu);
	if (!supply_open(k)) {
		pthread_mutex_unlock(&supply_mu);
		errno = ENOTCONN;
		return -1;
	}
	for (tries = 0; tries < (may_wait ? WAIT_TRIES : 1); tries++) {
		n = pair_recv(sp->fd, cloexec ? MSG_CMSG_CLOEXEC : 0, &m, fds);
		if (n >= 0)
			break;
		e = errno;
		if (e != EAGAIN)
			break;
		/* Nothing waits: this process needs more than it keeps coming
		 * (or a sibling sharing the connection drained it).  Keep twice
		 * as many coming from now on, and ask for them all at once, so
		 * the factory makes them side by side.  A pair that arrives may
		 * go to a sibling first: wait again. */
		if (sp->ask < ASK_MAX)
			sp->ask = sp->ask * 2 > ASK_MAX ? ASK_MAX : sp->ask * 2;
		if (sp->expect < sp->ask)
			supply_ask(sp, k, sp->ask - sp->expect);
		else if (tries)
			supply_ask(sp, k, 1);
		if (!may_wait)
			break;
		pf.fd = sp->fd;
		pf.events = POLLIN;
		if (real.poll(&pf, 1, WAIT_MS / WAIT_TRIES) < 0 && errno != EINTR)
			break;
	}
	if (n < 0 || n != sizeof(m) || m.magic != IPCD_PAIRS_MAGIC || m.anon != k) {
		if (fds[0] >= 0) {
			real.close(fds[0]);
			real.close(fds[1]);
		}
		if (n == 0 || (n < 0 && e != EAGAIN && e != EINTR)) {
			real.close(sp->fd);
			sp->fd = -2;	/* the daemon went away: make our own */
		}
		pthread_mutex_unlock(&supply_mu);
		errno = n < 0 && e == EMFILE ? EMFILE : n < 0 && e == EAGAIN ? EAGAIN : ENOTCONN;
		return -1;
	}
	sp->taken++;
	if (sp->expect)
		sp->expect--;
	supply_ask(sp, k, 1);	/* one taken, one more */
	pthread_mutex_unlock(&supply_mu);
	if (fds[0] < 0) {
		errno = EMFILE;	/* the table could not take both */
		return -1;
	}
	*map_len = m.map_len;
	return 0;
}

/* ---- pipes that carry nothing --------------------------------------------------- */

/* ---- making a pair here ---------------------------------------------------------- */

/* Open both ends of a fresh anonymous channel made here: what the factory
 * does, through the file system.  0, or -1 with errno. */
static int make_here(uint32_t anon, bool cloexec, int fds[2])
{
	static const char *const names[] = IPCD_ANON_NAMES;
	static int is_ipcd = -1;
	static bool anon_dir;
	char path[4200];
	int base = O_RDWR | O_NOATIME | (cloexec ? O_CLOEXEC : 0), e;

	/* Only the factory's socket said the mount was ipcd's so far: ask
	 * the mount itself before making files in it. */
	if (is_ipcd < 0)
		is_ipcd = getxattr(shim_mount_dir(), IPCD_XATTR_STATUS, NULL, 0) > 0;
	if (!is_ipcd) {
		shim_log("no ipcd mount with the fast path at %s: kernel pipes",
			 shim_mount_dir());
		errno = ENOTCONN;
		return -1;
	}

	if (!anon_dir) {
		snprintf(path, sizeof(path), "%s/.anon", shim_mount_dir());
		if (mkdir(path, 01777) == 0)
			chmod(path, 01777);
		anon_dir = true;
	}
	snprintf(path, sizeof(path), "%s/.anon/%d.%ld.%lu", shim_mount_dir(), getpid(),
		 (long)syscall(SYS_gettid), atomic_fetch_add(&counter, 1));
	if (mknod(path, S_IFREG | 0600, 0) < 0)
		return -1;
	fds[0] = fds[1] = -1;
	if (setxattr(path, IPCD_XATTR_ANON, names[anon], strlen(names[anon]), 0) < 0)
		goto err;
	fds[0] = (int)real.syscall(SYS_openat, AT_FDCWD, path, base);
	if (fds[0] < 0)
		goto err;
	fds[1] = (int)real.syscall(SYS_openat, AT_FDCWD, path, base | O_APPEND);
	if (fds[1] < 0)
		goto err;
	unlink(path);
	return 0;
err:
	e = errno;
	if (fds[0] >= 0)
		real.close(fds[0]);
	unlink(path);
	errno = e;
	return -1;
}

/* ---- pairs kept for another pipe ------------------------------------------------ */

static struct smap *smap_new(int fd, size_t len);

/*
 * When the last holder of an end of a pair lets go of it (hold.c), the
 * open file need not be closed: the pair's creator keeps it, or receives
 * it on its keep socket from whoever held it last (ring.h, "Keeping").
 * Once both ends are here and nobody holds either, the pair serves the next
 * pipe() of its kind for a few system calls and no trip to the daemon.
 * Kept files sit at high numbers, close-on-exec; a forked child closes its
 * copies, and makes and keeps its own pairs.
 */
#define KEEP_MAX	8
#define KEEP_BASE	768

struct kept {
	ino_t ino;		/* 0: a free slot */
	uint32_t anon;
	int fd[2];		/* -1: that end is not here */
	int fl[2];		/* its file status flags (SETFL_BITS), -1 unknown */
	struct smap *m;		/* its mapping, if we still have it */
	uint64_t order;		/* the oldest goes first when full */
};
static struct kept kept[KEEP_MAX] SHIM_FORKED;
static uint64_t keep_clock SHIM_FORKED;
static int keep_sock SHIM_FORKED = -1;		/* bound to our keep name, or -1 */
static int give_sock SHIM_FORKED = -1;		/* for handing ends over */
static pthread_mutex_t keep_mu SHIM_FORKED = PTHREAD_MUTEX_INITIALIZER;

/* What a handed-over end says of itself. */
struct give_msg {
	uint32_t magic;
	uint32_t end;
};
#define GIVE_MAGIC	0x4b454550u	/* "PEEK" */

size_t shim_map_len(int fd)
{
	struct statx stx;

	/* The daemon's answer for how much to map, without asking it. */
	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_BLOCKS, &stx) < 0)
		return 0;
	return (size_t)stx.stx_blocks * 512;
}

static ino_t ino_of(int fd)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO | STATX_TYPE,
		  &stx) < 0 || !S_ISREG(stx.stx_mode) ||
	    makedev(stx.stx_dev_major, stx.stx_dev_minor) != shim_mount_dev())
		return 0;
	return (ino_t)stx.stx_ino;
}

static void kept_drop(struct kept *k)
{
	int i;

	for (i = 0; i < 2; i++)
		if (k->fd[i] >= 0)
			real.close(k->fd[i]);
	if (k->m && atomic_fetch_sub(&k->m->refs, 1) == 1) {
		munmap(k->m->map, k->m->len);
		free(k->m);
	}
	memset(k, 0, sizeof(*k));
}

void shim_keep_flush(void)
{
	int i;

	pthread_mutex_lock(&keep_mu);
	for (i = 0; i < KEEP_MAX; i++)
		if (kept[i].ino)
			kept_drop(&kept[i]);
	pthread_mutex_unlock(&keep_mu);
}

/* The file status flags fcntl(F_SETFL) changes. */
#define SETFL_BITS	(O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK)

/* Keep a copy of fd as end `end` of pair ino, its flags fl (or -1), under
 * keep_mu. */
static void keep_add(int fd, ino_t ino, uint32_t anon, int end, int fl, struct smap *m)
{
	struct kept *k = NULL, *old = NULL;
	int i, hi;

	for (i = 0; i < KEEP_MAX; i++) {
		if (kept[i].ino == ino) {
			k = &kept[i];
			break;
		}
		if (!kept[i].ino && !k)
			k = &kept[i];
		if (kept[i].ino && (!old || kept[i].order < old->order))
			old = &kept[i];
	}
	if (!k) {
		kept_drop(old);	/* full: the oldest goes */
		k = old;
	}
	if (k->ino && k->fd[end] >= 0)
		return;	/* already here */
	hi = real.fcntl(fd, F_DUPFD_CLOEXEC, KEEP_BASE);
	if (hi < 0)
		return;		/* no room up there: not kept */
	if (!k->ino) {
		k->ino = ino;
		k->anon = anon;
		k->fd[0] = k->fd[1] = -1;
	}
	k->fl[end] = fl < 0 ? -1 : fl & SETFL_BITS;
	if (m && !k->m) {
		k->m = m;
		atomic_fetch_add(&m->refs, 1);
	}
	k->fd[end] = hi;
	k->order = ++keep_clock;
}

/* The abstract name IPCD_KEEP_SOCK_FMT of process id in sa; its length.
 * By hand: a child that hands an end back on its way out would otherwise
 * fault in stdio's formatting code just for this. */
static socklen_t keep_name(struct sockaddr_un *sa, uint64_t id)
{
	static const char prefix[] = IPCD_KEEP_SOCK_PREFIX;
	char digits[24];
	size_t n = 0, at = 1 + sizeof(prefix) - 1;

	do {
		digits[n++] = (char)('0' + id % 10);
		id /= 10;
	} while (id);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path + 1, prefix, sizeof(prefix) - 1);
	while (n)
		sa->sun_path[at++] = digits[--n];
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + at);
}

/* Send len bytes at p with descriptors fds[0..n) attached (n is 1 or 2),
 * on sock to sa (NULL: its peer), without waiting; whether all went. */
static bool send_fds(int sock, struct sockaddr_un *sa, socklen_t salen, const void *p,
		     size_t len, const int *fds, int n)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { (void *)p, len };
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;

	memset(&u, 0, sizeof(u));
	mh.msg_name = sa;
	mh.msg_namelen = sa ? salen : 0;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, (size_t)n * sizeof(int));
	return real.sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len;
}

/* Hand fd (end `end`) to the creator numbered `creator`; false if it
 * cannot take it. */
static bool give_away(int fd, int end, uint64_t creator)
{
	struct sockaddr_un sa;
	struct give_msg g = { GIVE_MAGIC, (uint32_t)end };

	if (give_sock < 0) {
		give_sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (give_sock < 0)
			return false;
		give_sock = shim_move_high(give_sock);
		if (give_sock < 0)
			return false;
	}
	return send_fds(give_sock, &sa, keep_name(&sa, creator), &g, sizeof(g), &fd, 1);
}

void shim_give_end(int fd, struct sfd *s, struct ipcd_ring *r0, int end)
{
	uint64_t creator = atomic_load(&r0->creator);
	uint32_t anon = r0->anon;
	ino_t ino;

	if (!anon || anon > IPCD_ANON_MAX || end < 0 || end > 1 || shim_in_vfork_child())
		return;
	/* A process that never asked its number made no pair. */
	if (creator != hold_known()) {
		if (creator)
			give_away(fd, end, creator);
		return;
	}
	ino = s && s->m && s->m->ino ? s->m->ino : ino_of(fd);
	if (!ino)
		return;
	if (s && s->m)
		s->m->ino = ino;
	pthread_mutex_lock(&keep_mu);
	keep_add(fd, ino, anon, end,
		 s ? O_NOATIME | (end ? O_APPEND : 0) | (atomic_load(&s->nonblock) ? O_NONBLOCK : 0)
		   : -1,
		 s ? s->m : NULL);
	pthread_mutex_unlock(&keep_mu);
}

/* Our keep socket, bound to our number (under keep_mu); -1 if none. */
static int keep_socket(void)
{
	struct sockaddr_un sa;
	socklen_t len;
	int one = 1, fd;

	if (keep_sock >= 0 || !hold_me())
		return keep_sock;
	len = keep_name(&sa, hold_me());
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (real.setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, len) < 0) {
		real.close(fd);
		return -1;
	}
	keep_sock = shim_move_high(fd);
	if (keep_sock < 0)
		return -1;
	/* Our forked children hand ends back through this one. */
	if (give_sock < 0) {
		give_sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (give_sock >= 0)
			give_sock = shim_move_high(give_sock);
	}
	return keep_sock;
}

/* One handed-over end as received: kept if it is an end of a pair of ours
 * from a process of our user, else closed (under keep_mu). */
static void keep_in(struct msghdr *mh, size_t n, uid_t me)
{
	const struct give_msg *g = mh->msg_iov->iov_base;
	struct cmsghdr *cm;
	struct ucred uc;
	bool cred = false;
	int fd = -1, fl;
	ino_t ino;

	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET)
			continue;
		if (cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len >= CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
		if (cm->cmsg_type == SCM_CREDENTIALS && cm->cmsg_len >= CMSG_LEN(sizeof(uc))) {
			memcpy(&uc, CMSG_DATA(cm), sizeof(uc));
			cred = uc.uid == me || uc.uid == 0;
		}
	}
	if (fd < 0)
		return;
	fl = real.fcntl(fd, F_GETFL);
	ino = ino_of(fd);
	if (n == sizeof(*g) && g->magic == GIVE_MAGIC && g->end <= 1 && cred && ino &&
	    fl >= 0 && (fl & O_NOATIME) && !!(fl & O_APPEND) == (int)g->end)
		keep_add(fd, ino, 0, (int)g->end, fl, NULL);
	real.close(fd);
}

/* Take in what was handed to us, a batch per call (under keep_mu). */
static void keep_collect(void)
{
	enum { BATCH = KEEP_MAX };
	union {
		char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u[BATCH];
	struct give_msg g[BATCH];
	struct iovec iov[BATCH];
	struct mmsghdr mm[BATCH];
	int i, n, round;

	if (keep_sock < 0)
		return;
	for (round = 0; round < 4; round++) {
		memset(mm, 0, sizeof(mm));
		for (i = 0; i < BATCH; i++) {
			iov[i].iov_base = &g[i];
			iov[i].iov_len = sizeof(g[i]);
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
			mm[i].msg_hdr.msg_control = u[i].buf;
			mm[i].msg_hdr.msg_controllen = sizeof(u[i].buf);
		}
		n = real.recvmmsg(keep_sock, mm, BATCH, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
		if (n <= 0)
			return;
		for (i = 0; i < n; i++)
			keep_in(&mm[i].msg_hdr, mm[i].msg_len, getuid());
		if (n < BATCH)
			return;
	}
}

/* Whether end e of the pair mapped at m is held by nobody and open only in
 * its one open file. */
static bool end_free(struct smap *m, int e)
{
	return (atomic_load(&m->r0->ends_open) & (1u << e)) && hold_empty(m->r0, e);
}

/* Empty one ring for a new pipe: nothing queued, the pipe's size again.
 * False if it cannot be (attachments pending, damage, another opener). */
static bool ring_fresh(struct ipcd_ring *r, uint32_t anon)
{
	uint64_t we = atomic_load(&r->writers_epoch);

	if (atomic_load(&r->anc_at) || atomic_load(&r->state) ||
	    IPCD_WRITERS(we) != 1 || atomic_load(&r->readers) != 1 ||
	    atomic_load(&r->wlock) || atomic_load(&r->rlock))
		return false;
	atomic_store(&r->head, atomic_load(&r->tail));
	atomic_store(&r->limit, (anon == IPCD_ANON_PIPE || anon == IPCD_ANON_PACKET) &&
				r->capacity > IPCD_PIPE_SIZE ? IPCD_PIPE_SIZE : 0);
	return true;
}

/* Take a kept pair of kind anon: fds get the lowest free numbers, as
 * pipe() gives them.  Its mapping (with a reference for the caller) in *mp. */
static bool keep_take(uint32_t anon, bool cloexec, bool nb, int fds[2], struct smap **mp)
{
	struct kept *k;
	struct ipcd_ring *r1;
	int i, j;

	pthread_mutex_lock(&keep_mu);
	keep_collect();
	for (j = 0; j < KEEP_MAX; j++) {
		k = &kept[j];
		if (!k->ino || k->fd[0] < 0 || k->fd[1] < 0 || (k->anon && k->anon != anon))
			continue;
		if (!k->m) {
			k->m = smap_new(k->fd[0], shim_map_len(k->fd[0]));
			if (!k->m) {
				kept_drop(k);
				continue;
			}
			atomic_store(&k->m->refs, 1);
		}
		k->anon = k->m->r0->anon;
		if (k->anon != anon || atomic_load(&k->m->r0->creator) != hold_me())
			continue;
		if (!end_free(k->m, 0) || !end_free(k->m, 1))
			continue;	/* still held elsewhere: later */
		r1 = k->m->r1;
		/* Queues or a shared ring: only empty ones, their owners
		 * forgotten. */
		if (ipcd_map_recycle(k->m->map, k->m->len) ||
		    !ring_fresh(k->m->r0, anon) || (r1 && !ring_fresh(r1, anon))) {
			kept_drop(k);
			continue;
		}
		atomic_fetch_add(&k->m->r0->reuse, 1);
		for (i = 0; i < 2; i++) {
			fds[i] = real.fcntl(k->fd[i], cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
			if (fds[i] < 0) {
				if (i)
					real.close(fds[0]);
				pthread_mutex_unlock(&keep_mu);
				return false;
			}
		}
		for (i = 0; i < 2; i++) {
			int want = O_NOATIME | (nb ? O_NONBLOCK : 0) | (i ? O_APPEND : 0);

			real.close(k->fd[i]);
			if (k->fl[i] != want)
				real.fcntl(fds[i], F_SETFL, O_RDWR | want);
		}
		*mp = k->m;	/* the kept reference goes with it */
		k->m = NULL;
		memset(k, 0, sizeof(*k));
		pthread_mutex_unlock(&keep_mu);
		return true;
	}
	pthread_mutex_unlock(&keep_mu);
	return false;
}

/*
 * At exit: the pairs kept here whole go back to the factory (ring.h, "Pairs
 * made ahead of time"), to serve the next process that asks, rather than
 * being closed.  A short-lived shell that made a pipeline's pipes thus
 * saves the daemon making new ones for the next.  The daemon checks that
 * nothing else is open on them and that they are idle, and closes them if
 * not.
 */
/*
 * At exit, too: the pairs the factory sent ahead that this process never
 * took, which would close with its connection, though making each cost the
 * daemon more than handing one back.  Only on a connection this process
 * made: the children sharing one it inherited leave them to the others.
 */
static void supply_return(void)
{
	struct ipcd_pairs_req q = { IPCD_PAIRS_RETURN, 0, 0, 0 };
	struct ipcd_pairs_msg m;
	unsigned k, n;
	int fds[2];

	for (k = 0; k < KINDS; k++)
		if (supply[k].fd >= 0 && supply[k].owner == shim_pid)
			break;
	if (k == KINDS)
		return;	/* no connection of ours: no lock to touch */
	/* Never waits: another thread may be waiting for a pair under it. */
	if (pthread_mutex_trylock(&supply_mu))
		return;
	for (k = 0; k < KINDS; k++) {
		if (supply[k].fd < 0 || supply[k].owner != shim_pid)
			continue;
		for (n = 0; n < IPCD_PAIRS_INFLIGHT; n++) {
			if (pair_recv(supply[k].fd, MSG_CMSG_CLOEXEC, &m, fds) != sizeof(m) ||
			    fds[0] < 0)
				break;	/* nothing more, or not a pair as sent */
			q.anon = m.anon;
			send_fds(supply[k].fd, NULL, 0, &q, sizeof(q), fds, 2);
			real.close(fds[0]);
			real.close(fds[1]);
		}
	}
	pthread_mutex_unlock(&supply_mu);
}

void shim_keep_return(void)
{
	struct ipcd_pairs_req q = { IPCD_PAIRS_RETURN, 0, 0, 0 };
	struct kept *k;
	int j, conn, c;

	if (shim_in_vfork_child())
		return;
	supply_return();
	/* Nothing kept and no keep socket (a forked child's start): done,
	 * without touching the lock. */
	for (j = 0; j < KEEP_MAX && !kept[j].ino; j++)
		;
	if (j == KEEP_MAX && keep_sock < 0)
		return;
	pthread_mutex_lock(&keep_mu);
	if (keep_sock >= 0)
		keep_collect();
	for (j = 0; j < KEEP_MAX; j++) {
		k = &kept[j];
		if (!k->ino || k->fd[0] < 0 || k->fd[1] < 0)
			continue;
		pthread_mutex_lock(&supply_mu);
		conn = k->anon && k->anon < KINDS ? supply[k->anon].fd : -1;
		for (c = 0; c < (int)KINDS && conn < 0; c++)
			conn = supply[c].fd;
		pthread_mutex_unlock(&supply_mu);
		if (conn < 0)
			break;	/* no factory to take them: closed at exit */
		q.anon = k->anon;
		send_fds(conn, NULL, 0, &q, sizeof(q), k->fd, 2);
		kept_drop(k);	/* our copies and mapping: the message has its own */
	}
	pthread_mutex_unlock(&keep_mu);
}

/*
 * Before a child is made that may hold our pairs' ends last: the socket it
 * hands them back on.  Not sooner: a process that never makes one does not
 * pay for it.
 */
void shim_keep_ready(void)
{
	if (!hold_known() || shim_in_vfork_child())
		return;		/* never made a pair */
	pthread_mutex_lock(&keep_mu);
	keep_socket();
	pthread_mutex_unlock(&keep_mu);
}

/* After fork: the child shares the connections, and what it takes it
 * counts for itself. */
IPCD_FORK_TEXT void shim_pairs_after_fork(void)
{
	unsigned k;

	supply_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	for (k = 0; k < KINDS; k++)
		supply[k].expect = 0;
	shim_sites_after_fork();
	/* What the parent keeps is the parent's: close our copies (not the
	 * last ones, so nothing reaches the daemon), and its keep socket.
	 * Alone in this process now, and without freeing the entries'
	 * memory: a copy of the parent's, which would cost this child a
	 * fault on each page of malloc's code and data it touched. */
	keep_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	for (k = 0; k < KEEP_MAX; k++)
		if (kept[k].ino) {
			if (kept[k].fd[0] >= 0)
				real.close(kept[k].fd[0]);
			if (kept[k].fd[1] >= 0)
				real.close(kept[k].fd[1]);
			kept[k].ino = 0;
			kept[k].fd[0] = kept[k].fd[1] = -1;
			kept[k].m = NULL;
		}
	if (keep_sock >= 0)
		real.close(keep_sock);
	keep_sock = -1;
}

/*
 * The program ran out of descriptors: give back every one the shim holds
 * (kept pairs, sockets), so that the program gets as many as the kernel
 * would give it.  They come back when there is room again.
 */
void shim_own_fds_release(void)
{
	unsigned k;

	if (shim_in_vfork_child())
		return;
	shim_keep_flush();
	pthread_mutex_lock(&keep_mu);
	if (keep_sock >= 0)
		real.close(keep_sock);
	if (give_sock >= 0)
		real.close(give_sock);
	keep_sock = give_sock = -1;
	pthread_mutex_unlock(&keep_mu);
	pthread_mutex_lock(&supply_mu);
	for (k = 0; k < KINDS; k++) {
		if (supply[k].fd >= 0)
			real.close(supply[k].fd);
		supply[k].fd = -1;
	}
	pthread_mutex_unlock(&supply_mu);
	shim_sites_fd_release();
}

/*
 * The program closes fds first..last, or puts another file on them: what of
 * ours was there (all at SHIM_OWN_FDS and up) is forgotten, not closed by us,
 * and made again when needed.  Programs that close every descriptor they
 * did not open themselves do that.
 */
void shim_own_fds_gone(unsigned first, unsigned last)
{
	unsigned k;
	int i, e;

	if (last < SHIM_OWN_FDS || shim_in_vfork_child())
		return;
#define GONE(fd) ((fd) >= 0 && (unsigned)(fd) >= first && (unsigned)(fd) <= last)
	pthread_mutex_lock(&supply_mu);
	for (k = 0; k < KINDS; k++)
		if (GONE(supply[k].fd))
			supply[k].fd = -1;
	pthread_mutex_unlock(&supply_mu);
	{
		uint64_t ino;

		if (GONE(shim_sites_fd(&ino)))
			shim_sites_fd_gone();
	}
	pthread_mutex_lock(&keep_mu);
	if (GONE(keep_sock))
		keep_sock = -1;
	if (GONE(give_sock))
		give_sock = -1;
	for (i = 0; i < KEEP_MAX; i++) {
		bool lost = false;

		for (e = 0; e < 2 && kept[i].ino; e++)
			if (GONE(kept[i].fd[e])) {
				kept[i].fd[e] = -1;
				lost = true;
			}
		if (lost)
			kept_drop(&kept[i]);	/* half a pair serves no pipe */
	}
	pthread_mutex_unlock(&keep_mu);
#undef GONE
}

/* ---- ends ------------------------------------------------------------------------ */

/* Map the rings open as fd (len: from the daemon, or 0 to learn it). */
static struct smap *smap_new(int fd, size_t len)
{
	struct smap *m = calloc(1, sizeof(*m));
	int r;

	if (!m)
		return NULL;
	r = ipcd_ring_map(fd, len, &m->map, &m->len);
	if (r) {
		free(m);
		errno = -r;
		return NULL;
	}
	if (!shim_rings(m->map, m->len, &m->r0, &m->r1)) {
		munmap(m->map, m->len);
		free(m);
		errno = EIO;
		return NULL;
	}
	atomic_store(&m->refs, 0);
	return m;
}

/* Give s the rings of m as its end; 0 or -errno. */
static int sfd_bind(struct sfd *s, int fd, struct smap *m)
{
	struct ipcd_chan *c;
	int r;

	r = ipcd_chan_wrap(fd, m->map, m->len, s->roles,
			   s->kind == SK_PIPE ? 0 : (unsigned)(s->end > 0), &c);
	if (r)
		return r;
	ipcd_set_nonblock(c, atomic_load(&s->nonblock));
	atomic_fetch_add(&m->refs, 1);
	s->m = m;
	atomic_store(&s->c, c);
	return 0;
}

int shim_make_pair(int fds[2], enum skind kind, int flags, uint64_t site)
{
	bool cloexec = flags & O_CLOEXEC, nb = flags & O_NONBLOCK;
	uint32_t anon = anon_of(kind, flags);
	struct sfd *s[2] = { NULL, NULL };
	struct smap *m;
	uint64_t len = 0;
	int e, i;

	if (!shim_mount_ready()) {
		errno = ENOTCONN;
		return -1;
	}
	shim_first_end();
	m = NULL;
	if (!keep_take(anon, cloexec, nb, fds, &m)) {
		if (supply_take(anon, cloexec, fds, &len) < 0) {
			if (errno == EMFILE) {
				shim_own_fds_release();	/* make room, then let the kernel say */
				return -1;
			}
			if (errno == EAGAIN) {
				shim_log("no %s pair at hand: a kernel one", labels[kind]);
				return -1;	/* more are coming; the kernel's now */
			}
			if (make_here(anon, cloexec, fds) < 0) {
				shim_log("cannot make a %s channel (%s): kernel object instead",
					 labels[kind], strerror(errno));
				return -1;
			}
			len = shim_map_len(fds[0]);
		}
		for (i = 0; i < 2 && nb; i++)
			real.fcntl(fds[i], F_SETFL,
				   O_RDWR | O_NOATIME | O_NONBLOCK | (i ? O_APPEND : 0));
		m = smap_new(fds[0], (size_t)len);
		if (!m)
			goto fail;
		/* Ours to keep for another pipe (ring.h, "Keeping"). */
		if (shim_patched)
			atomic_store(&m->r0->creator, hold_me());
	} else {
		atomic_fetch_sub(&m->refs, 1);	/* the ends take it below */
	}
	for (i = 0; i < 2; i++) {
		s[i] = sfd_new(kind, end_roles(kind, i), i);
		if (!s[i])
			goto fail;
		atomic_store(&s[i]->nonblock, nb);
		s[i]->made_here = true;
		if (kind != SK_PIPE) {	/* SO_PEERCRED: who made the pair */
			s[i]->cred_pid = shim_pid;
			s[i]->cred_uid = getuid();
			s[i]->cred_gid = getgid();
		}
		if (sfd_bind(s[i], fds[i], m) < 0)
			goto fail;
	}
	shim_site_mark(m, site);	/* 0 clears what a kept pair had */
	atomic_fetch_add(&m->r0->served, 1);	/* ring.h, "Serving" */
	if (fdtab_set(fds[0], s[0], cloexec) < 0 || fdtab_set(fds[1], s[1], cloexec) < 0)
		goto fail;
	for (i = 0; i < 2; i++) {
		hold_mine(s[i]);
		sfd_put(s[i]);	/* the table holds them now */
	}
	if (!shim_patched)
		hold_untracked(m->r0);
	shim_log("%s channel: fds %d and %d (site %016llx)", labels[kind], fds[0], fds[1],
		 (unsigned long long)site);
	return 0;
fail:
	e = errno;
	for (i = 0; i < 2; i++) {
		struct sfd *old = fdtab_clear(fds[i]);

		if (old)
			sfd_put(old);
		if (s[i])
			sfd_put(s[i]);
		real.close(fds[i]);
	}
	if (m && atomic_load(&m->refs) == 0) {
		munmap(m->map, m->len);
		free(m);
	}
	shim_log("cannot map a %s channel (%s): kernel object instead",
		 labels[kind], strerror(e));
	errno = e;
	return -1;
}

/* ---- ends that came from elsewhere ------------------------------------------------ */

/*
 * Map the rings of s, an end noted on arrival, at its first use.  Its kind
 * comes from the ring; a pair's end has its roles by kind, a reopened one
 * by its access mode.  False if it is not one of ours after all.
 */
bool sfd_attach(struct sfd *s, int fd)
{
	struct smap *m;
	int fl;

	if (atomic_load(&s->c))
		return true;
	m = smap_new(fd, s->map_len ? s->map_len : shim_map_len(fd));
	if (!m) {
		if (s->end < 0) {
			/* A reopen for reading or writing only: the daemon
			 * serves it, but its close still needs catching up. */
			fl = real.fcntl(fd, F_GETFL);
			s->roles = (fl & O_ACCMODE) == O_RDONLY ? IPCD_ROLE_READ :
				   (fl & O_ACCMODE) == O_WRONLY ? IPCD_ROLE_WRITE :
				   IPCD_ROLE_READ | IPCD_ROLE_WRITE;
			s->pending = false;
			s->slow = true;
		}
		return false;
	}
	if (m->r0->anon == IPCD_ANON_NONE || m->r0->anon > IPCD_ANON_MAX) {
		munmap(m->map, m->len);
		free(m);
		return false;
	}
	s->kind = kind_of(m->r0->anon);
	if (s->end >= 0) {
		s->roles = end_roles(s->kind, s->end);
	} else {
		fl = real.fcntl(fd, F_GETFL);
		s->roles = (fl & O_ACCMODE) == O_RDONLY ? IPCD_ROLE_READ :
			   (fl & O_ACCMODE) == O_WRONLY ? IPCD_ROLE_WRITE :
			   IPCD_ROLE_READ | IPCD_ROLE_WRITE;
	}
	if (sfd_bind(s, fd, m) < 0) {
		munmap(m->map, m->len);
		free(m);
		return false;
	}
	s->pending = false;
	if (s->end >= 0 && s->inherited)
		hold_claim(s, fd);
	return true;
}

/*
 * The kind of anonymous channel fd is open on, for a file on our mount that
 * cannot be attached (a reopen for reading only cannot map the rings for
 * writing, and goes through the daemon): read from its first ring header,
 * mapped for reading.  -1 if it is no anonymous channel's.
 */
int shim_end_kind(int fd)
{
	struct statx stx;
	struct ipcd_map *m;
	uint32_t anon;

	if (!shim_on ||
	    statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) < 0 ||
	    stx.stx_dev_major != 0 || !S_ISREG(stx.stx_mode) || !shim_mount_ready() ||
	    makedev(stx.stx_dev_major, stx.stx_dev_minor) != shim_mount_dev())
		return -1;
	m = mmap(NULL, IPCD_MAP_HDR_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (m != MAP_FAILED) {
		anon = m->magic == IPCD_RING_MAGIC && m->version == IPCD_RING_VERSION ?
		       m->anon : IPCD_ANON_NONE;
		munmap(m, IPCD_MAP_HDR_SIZE);
	} else {
		/* Open for writing only: no mapping at all.  Ask the daemon. */
		static const char *const names[] = IPCD_ANON_NAMES;
		char v[16];
		ssize_t n = fgetxattr(fd, IPCD_XATTR_ANON, v, sizeof(v) - 1);

		anon = IPCD_ANON_NONE;
		if (n > 0) {
			v[n] = '\0';
			for (uint32_t a = 1; a <= IPCD_ANON_MAX; a++)
				if (!strcmp(v, names[a]))
					anon = a;
		}
	}
	return anon == IPCD_ANON_NONE || anon > IPCD_ANON_MAX ? -1 : (int)kind_of(anon);
}

/* Take fd into the table if it is an end on our mount: inherited across
 * exec, received over a socket, or reopened (through /proc).  Nothing is
 * asked of the daemon: the rings are mapped at first use. */
void shim_adopt_fd(int fd, const char *how, int cloexec)
{
	struct statx stx;
	struct sfd *s;
	int fl;

	/* FUSE mounts are on anonymous devices (major 0): only those are
	 * worth finding the mount for. */
	if (!shim_on ||
	    statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_BLOCKS,
		  &stx) < 0 ||
	    stx.stx_dev_major != 0 || !S_ISREG(stx.stx_mode) || !shim_mount_ready() ||
	    makedev(stx.stx_dev_major, stx.stx_dev_minor) != shim_mount_dev())
		return;
	fl = real.fcntl(fd, F_GETFL);
	if (fl < 0)
		return;
	shim_first_end();
	if (cloexec < 0) {
		int fdfl = real.fcntl(fd, F_GETFD);

		cloexec = fdfl >= 0 && (fdfl & FD_CLOEXEC);
	}
	/* A pair's end says which it is (ring.h); any other open is a reopen,
	 * which only an anonymous channel's ring lets us take (at attach). */
	s = sfd_new(SK_PIPE, 0, (fl & O_NOATIME) && (fl & O_ACCMODE) == O_RDWR ?
			       !!(fl & O_APPEND) : -1);
	if (!s)
		return;
	s->pending = true;
	s->map_len = (size_t)stx.stx_blocks * 512;
	s->inherited = !strcmp(how, "inherited");
	atomic_store(&s->nonblock, !!(fl & O_NONBLOCK));
	if (fdtab_set(fd, s, cloexec > 0) == 0)
		shim_log("noted %s channel fd %d (end %d)", how, fd, s->end);
	sfd_put(s);
}

/*
 * The kernel tells the daemon of a file's last close with a release request
 * that it queues when close() runs but does not wait for.  The daemon reads
 * its requests in order, one at a time, so any request this thread makes
 * afterwards is answered only once that release was handled: the peer's
 * counts in the ring are then up to date, as a kernel pipe's are when
 * close() returns.
 */
void shim_sync(int fd)
{
	int e = errno;

	if (real.ioctl(fd, IPCD_IOC_SYNC) < 0)
		shim_log("cannot reach the daemon to catch up: %s", strerror(errno));
	errno = e;
}
