/*
 * chanint.h - parts of the C API (core/chan.c) that only the shim uses: they
 * are built into the shim and not exported from libipcd.
 */
#ifndef IPCD_CHANINT_H
#define IPCD_CHANINT_H

#include <stdint.h>
#include <sys/types.h>

#include "ipcd.h"

/* Values that change whenever the channel's readiness may have (for
 * edge-triggered epoll). */
void ipcd_marks(const struct ipcd_chan *c, uint64_t m[2]);

/* Payload bytes of everything queued (all messages); -EIO if corrupt. */
ssize_t ipcd_queued(const struct ipcd_chan *c);

#endif /* IPCD_CHANINT_H */
