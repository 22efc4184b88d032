/*
 * chanint.h - parts of the C API (core/chan.c) that only the shim uses: they
 * are built into the shim and not exported from libipcd.
 */
#ifndef IPCD_CHANINT_H
#define IPCD_CHANINT_H

#include <stdint.h>
#include <sys/types.h>

#include "ipcd.h"
#include "ringops.h"

/* Values that change whenever the channel's readiness may have (for
 * edge-triggered epoll). */
void ipcd_marks(const struct ipcd_chan *c, uint64_t m[2]);

/* Whether bytes or a record are there to read (a pad to skip counts; a
 * record reserved and not yet written does not), and whether there is
 * room for a write of need bytes (a reader left or not), as the channel's
 * coordination tells. */
int ipcd_has_data(const struct ipcd_chan *c);
int ipcd_has_room(struct ipcd_chan *c, size_t need);

/* Payload bytes of everything queued (all messages); -EIO if corrupt. */
ssize_t ipcd_queued(const struct ipcd_chan *c);

/* The pid of the daemon serving the channel, as it wrote it in the ring. */
uint32_t ipcd_daemon_pid(const struct ipcd_chan *c);

/* How ipcd_send_anc and ipcd_recv_anc wait: at most timeout_ns (0: no
 * limit; then -EAGAIN, as a socket's SO_RCVTIMEO/SO_SNDTIMEO), with
 * IPCD_WAIT_SIGSAFE or not in wflags, and then sigmark the count of
 * ipcd_sigwatch when the call began (ringops.h). */
struct ipcd_wopt {
	uint64_t timeout_ns;
	unsigned wflags;
	uint32_t sigmark;
};

/* ipcd_send and ipcd_recv honouring attachments (ringops.h): a send binds
 * its first bytes with anc->bind; a receive stops before an attachment and
 * takes one at its start with anc->take.  w may be NULL. */
ssize_t ipcd_send_anc(struct ipcd_chan *c, const void *buf, size_t len, int flags,
		      const struct ipcd_anc_ops *anc, const struct ipcd_wopt *w);
ssize_t ipcd_recv_anc(struct ipcd_chan *c, void *buf, size_t len, int flags,
		      const struct ipcd_anc_ops *anc, const struct ipcd_wopt *w);

/* A channel end open as fd on rings mapped at map (len bytes) by the
 * caller, who unmaps them after ipcd_detach: roles and side as the daemon
 * has them.  An anonymous channel's holders count in its rules. */
int ipcd_chan_wrap(int fd, void *map, size_t len, unsigned roles, unsigned side,
		   struct ipcd_chan **out);

/* Set O_NONBLOCK as the open file has it (for ipcd_send and ipcd_recv). */
void ipcd_set_nonblock(struct ipcd_chan *c, int on);

/* The views of the channel, for what the shim does on the rings itself. */
struct ipcd_view *ipcd_in(struct ipcd_chan *c);
struct ipcd_view *ipcd_out(struct ipcd_chan *c);

#endif /* IPCD_CHANINT_H */
