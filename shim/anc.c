/*
 * anc.c - descriptors passed with SCM_RIGHTS on socket pair channels.  They
 * travel beside the ring, through the daemon (ipcd/ring.h, "Attachments"):
 * the sender binds them to its bytes with one ioctl while it holds the
 * ring's write lock; the receiver that reaches those bytes takes them with
 * another and claims them on the daemon's descriptor socket.  A receive with
 * no room for them has the daemon close them, as the kernel does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"

/* Claim the descriptors of `token` from the daemon; count or -errno. */
static int claim(struct shim_rx *rx, uint64_t token, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(IPCD_ANC_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct msghdr m = { 0 };
	struct cmsghdr *cm;
	struct iovec iov;
	uint32_t n = 0;
	socklen_t alen;
	int sk, got = -EPROTO, k;

	k = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, IPCD_ANC_SOCK_FMT,
		     ipcd_daemon_pid(rx->c));
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k);
	sk = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sk < 0)
		return -errno;
	if (connect(sk, (struct sockaddr *)&sa, alen) < 0 ||
	    real.send(sk, &token, sizeof(token), MSG_NOSIGNAL) != sizeof(token)) {
		got = -errno;
		goto out;
	}
	iov.iov_base = &n;
	iov.iov_len = sizeof(n);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.buf;
	m.msg_controllen = sizeof(u.buf);
	if (real.recvmsg(sk, &m, rx->cloexec ? MSG_CMSG_CLOEXEC : 0) < 0) {
		got = -errno;
		goto out;
	}
	for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		if (got < 0)
			got = 0;
		for (int i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (got < IPCD_ANC_MAX_FDS)
				rx->fds[got++] = fd;
			else
				real.close(fd);
		}
	}
	if (got >= 0 && ((unsigned)got != nfds || (m.msg_flags & MSG_CTRUNC)))
		rx->lost = true;
out:
	real.close(sk);
	return got;
}

ssize_t shim_anc_take(void *arg, uint64_t at)
{
	struct shim_rx *rx = arg;
	struct ipcd_anc_take t = { .at = at };
	int got, e = errno;

	if (rx->taken)
		return -EXDEV;		/* one attachment per call: stop here */
	if (!rx->want)
		t.flags = IPCD_ANC_DROP;
	if (real.ioctl(rx->fd, IPCD_IOC_ANC_TAKE, &t) < 0) {
		int r = errno;

		errno = e;
		/* Gone meanwhile (read past by a reader that ignores them). */
		return r == ENOENT ? SSIZE_MAX : -r;
	}
	rx->taken = true;
	if (!rx->want) {
		rx->lost = t.nfds > 0;
	} else {
		got = claim(rx, t.token, t.nfds);
		if (got < 0) {
			shim_log("cannot claim %u passed descriptors: %s", t.nfds,
				 strerror(-got));
			rx->lost = true;
		} else {
			rx->nfds = got;
			for (int i = 0; i < got; i++)
				shim_adopt_fd(rx->fds[i], "received", rx->cloexec);
		}
	}
	errno = e;
	return t.len ? (ssize_t)t.len : SSIZE_MAX;
}

int shim_anc_bind(void *arg, uint64_t at, size_t n)
{
	struct shim_tx *tx = arg;
	struct ipcd_anc_bind b = { .at = at, .len = (uint32_t)n, .nfds = (uint32_t)tx->nfds };
	int e = errno, r = 0;

	memcpy(b.fds, tx->fds, (size_t)tx->nfds * sizeof(int));
	if (real.ioctl(tx->fd, IPCD_IOC_ANC_BIND, &b) < 0)
		r = -errno;
	errno = e;
	return r;
}

/* Are these credentials ours to send, as the kernel checks them? */
static bool creds_ok(const struct ucred *uc)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
		return false;
	if (eu == 0)
		return true;
	return uc->pid == getpid() &&
	       (uc->uid == ru || uc->uid == eu || uc->uid == su) &&
	       (uc->gid == rg || uc->gid == eg || uc->gid == sg);
}

ssize_t shim_sendmsg_anc(struct sfd *s, int fd, const struct msghdr *msg, int flags)
{
	struct shim_tx tx;
	struct cmsghdr *cm;
	struct ucred uc;
	size_t k, i;

	tx.fd = fd;
	tx.nfds = 0;
	/* As the kernel, which copies the whole control buffer first; one
	 * too short for a header holds nothing. */
	if (msg->msg_controllen > INT_MAX)
		return -ENOBUFS;
	if (!shim_user_ok(msg->msg_control, msg->msg_controllen, false))
		return -EFAULT;
	for (cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm;
	     cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
		if (cm->cmsg_len < sizeof(*cm) ||
		    cm->cmsg_len > msg->msg_controllen -
				   (size_t)((char *)cm - (char *)msg->msg_control))
			return -EINVAL;
		if (cm->cmsg_level != SOL_SOCKET)
			continue;	/* as the kernel: not for the socket layer */
		if (cm->cmsg_type == SCM_RIGHTS) {
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (k == 0 || tx.nfds + k > IPCD_ANC_MAX_FDS)
				return -EINVAL;
			for (i = 0; i < k; i++) {
				int d;

				memcpy(&d, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (real.fcntl(d, F_GETFD) < 0)
					return -EBADF;
				tx.fds[tx.nfds++] = d;
			}
		} else if (cm->cmsg_type == SCM_CREDENTIALS) {
			/* Checked as the kernel checks them; a socket pair
			 * channel delivers no credentials (see ipcd-shim(7)). */
			if (cm->cmsg_len != CMSG_LEN(sizeof(uc)))
				return -EINVAL;
			memcpy(&uc, CMSG_DATA(cm), sizeof(uc));
			if (!creds_ok(&uc))
				return -EPERM;
		} else {
			return -EINVAL;
		}
	}
	shim_rights_leaving(tx.fds, tx.nfds);
	/* A stream write of no bytes binds nothing, so its descriptors are
	 * not sent: as the kernel does. */
	return shim_writev(s, fd, msg->msg_iov, (int)msg->msg_iovlen, flags,
			   tx.nfds ? &tx : NULL);
}

/* Channel ends that leave with SCM_RIGHTS go where the holders protocol
 * cannot follow: they stay held until the daemon sees them closed. */
void shim_rights_leaving(const int *fds, int n)
{
	int i;

	for (i = 0; i < n && fdtab_any(); i++) {
		struct sfd *e = fdtab_get(fds[i]);

		if (e) {
			hold_sent(e);
			sfd_put(e);
		}
	}
}

/* The same for a message sent on a kernel socket. */
void shim_msg_leaving(const struct msghdr *msg)
{
	struct cmsghdr *cm;

	if (!fdtab_any() || !shim_user_ok(msg, sizeof(*msg), false) || !msg->msg_control ||
	    msg->msg_controllen < sizeof(struct cmsghdr) ||
	    !shim_user_ok(msg->msg_control, msg->msg_controllen, false))
		return;	/* (the call itself fails with EFAULT) */
	for (cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm;
	     cm = CMSG_NXTHDR((struct msghdr *)msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len >= CMSG_LEN(0))
			shim_rights_leaving((const int *)CMSG_DATA(cm),
					    (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int)));
}

/* Hand received descriptors to recvmsg's caller, as many as fit. */
void shim_put_rights(struct msghdr *msg, struct shim_rx *rx)
{
	size_t space = msg->msg_control ? msg->msg_controllen : 0;
	struct cmsghdr *cm;
	int fit = 0, i;

	if (rx->nfds > 0 && space >= CMSG_LEN(sizeof(int))) {
		fit = (int)((space - CMSG_LEN(0)) / sizeof(int));
		if (fit > rx->nfds)
			fit = rx->nfds;
		cm = (struct cmsghdr *)msg->msg_control;
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)fit * sizeof(int));
		memcpy(CMSG_DATA(cm), rx->fds, (size_t)fit * sizeof(int));
		msg->msg_controllen = CMSG_SPACE((size_t)fit * sizeof(int)) < space ?
				      CMSG_SPACE((size_t)fit * sizeof(int)) : space;
	} else {
		msg->msg_controllen = 0;
	}
	for (i = fit; i < rx->nfds; i++) {
		struct sfd *old = fdtab_clear(rx->fds[i]);

		real.close(rx->fds[i]);
		if (old)
			sfd_put(old);	/* noted, never used: nothing to let go */
	}
	if (fit < rx->nfds || rx->lost)
		msg->msg_flags |= MSG_CTRUNC;
}

/* Close the descriptors a receive took, which its caller will not get. */
void shim_drop_rights(struct shim_rx *rx)
{
	int i;

	for (i = 0; i < rx->nfds; i++) {
		struct sfd *old = fdtab_clear(rx->fds[i]);

		real.close(rx->fds[i]);
		if (old)
			sfd_put(old);	/* noted, never used: nothing to let go */
	}
	rx->nfds = 0;
}

/* After a recvmsg on a kernel socket: adopt the channel ends it passed. */
void shim_adopt_rights(const struct msghdr *msg, int flags)
{
	struct cmsghdr *cm;
	size_t k, i;

	if (!msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr))
		return;
	for (cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm;
	     cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			int d;

			memcpy(&d, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			shim_adopt_fd(d, "received", flags & MSG_CMSG_CLOEXEC);
		}
	}
}
