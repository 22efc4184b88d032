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

/* Payload bytes of everything queued (all messages); -EIO if corrupt. */
ssize_t ipcd_queued(const struct ipcd_chan *c);

/* The pid of the daemon serving the channel, as it wrote it in the ring. */
uint32_t ipcd_daemon_pid(const struct ipcd_chan *c);

/* ipcd_send and ipcd_recv honouring attachments (ringops.h): a send binds
 * its first bytes with anc->bind; a receive stops before an attachment and
 * takes one at its start with anc->take. */
ssize_t ipcd_send_anc(struct ipcd_chan *c, const void *buf, size_t len, int flags,
		      const struct ipcd_anc_ops *anc);
ssize_t ipcd_recv_anc(struct ipcd_chan *c, void *buf, size_t len, int flags,
		      const struct ipcd_anc_ops *anc);

#endif /* IPCD_CHANINT_H */
