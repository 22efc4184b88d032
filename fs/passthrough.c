/*
 * passthrough.c - FUSE passthrough on libfuse 3.14: negotiate it by patching
 * the INIT reply on its way to the kernel, register a channel's memfd as a
 * backing file, and answer OPEN with the backing id.  With passthrough, mmap
 * of a channel file maps the memfd itself while read and write still come to
 * the daemon.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fs.h"

/* The kernel ABI names Debian 12's uapi header is too old to have. */
#define PT_FUSE_INIT		26u
#define PT_INIT_EXT		(1u << 30)
#define PT_FLAGS2_PASSTHROUGH	(1u << 5)	/* FUSE_PASSTHROUGH is bit 37 */
#define PT_FOPEN_DIRECT_IO	(1u << 0)
#define PT_FOPEN_NOFLUSH	(1u << 5)
#define PT_FOPEN_PASSTHROUGH	(1u << 7)
#define PT_MAX_STACK_DEPTH	1u

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_DEV_IOC_BACKING_OPEN		_IOW(229, 1, struct pt_backing_map)
#define PT_DEV_IOC_BACKING_CLOSE	_IOW(229, 2, uint32_t)

_Static_assert(PT_DEV_IOC_BACKING_OPEN == 0x4010e501, "BACKING_OPEN number");
_Static_assert(PT_DEV_IOC_BACKING_CLOSE == 0x4004e502, "BACKING_CLOSE number");

/* Wire layouts we read or patch (kernel ABI, fixed forever). */
struct pt_in_header {
	uint32_t len, opcode;
	uint64_t unique, nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen, padding;
};
struct pt_init_in {
	uint32_t major, minor, max_readahead, flags, flags2;
};
struct pt_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};
struct pt_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};
#define PT_INIT_OUT_FLAGS	12
#define PT_INIT_OUT_MAX_WRITE	20
#define PT_INIT_OUT_FLAGS2	32
#define PT_INIT_OUT_STACK_DEPTH	36

static bool init_seen;
static sigset_t wait_mask;	/* the session thread's mask while it waits */

/*
 * The device is nonblocking and the session thread waits for it in ppoll,
 * the only place the stop signals (blocked everywhere else) are let in: a
 * signal that comes while a request is being served waits for the next
 * wait and ends it, instead of setting the exit flag just after the loop
 * looked at it and leaving the thread asleep in read.
 */
static ssize_t pt_wait_read(int fd, void *buf, size_t len)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	ssize_t n;

	for (;;) {
		n = read(fd, buf, len);
		if (n >= 0 || errno != EAGAIN)
			return n;
		if (ppoll(&pf, 1, NULL, &wait_mask) < 0 && errno == EINTR)
			return -1;
	}
}

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	struct ipcd_fs *fs = userdata;
	const struct pt_in_header *h = buf;
	struct pt_init_in in;
	ssize_t n = pt_wait_read(fd, buf, len);

	if (n < 0 || init_seen || (size_t)n < sizeof(*h) + sizeof(in) ||
	    h->opcode != PT_FUSE_INIT)
		return n;
	init_seen = true;
	memcpy(&in, (const char *)buf + sizeof(*h), sizeof(in));
	fs->init_unique = h->unique;
	fs->kernel_passthrough = (in.flags & PT_INIT_EXT) &&
				 (in.flags2 & PT_FLAGS2_PASSTHROUGH);
	return n;
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct ipcd_fs *fs = userdata;
	struct pt_out_header *oh = iov[0].iov_base;
	unsigned char *out;
	uint32_t v;

	if (count >= 2 && iov[0].iov_len == sizeof(*oh) && oh->error == 0 &&
	    oh->unique == fs->init_unique && fs->init_unique &&
	    iov[1].iov_len >= PT_INIT_OUT_STACK_DEPTH + 4) {
		out = iov[1].iov_base;
		memcpy(&v, out + PT_INIT_OUT_MAX_WRITE, 4);
		fs->max_write = v;
		if (fs->kernel_passthrough && fs->fastpath_mode != FASTPATH_OFF) {
			memcpy(&v, out + PT_INIT_OUT_FLAGS, 4);
			v |= PT_INIT_EXT;
			memcpy(out + PT_INIT_OUT_FLAGS, &v, 4);
			memcpy(&v, out + PT_INIT_OUT_FLAGS2, 4);
			v |= PT_FLAGS2_PASSTHROUGH;
			memcpy(out + PT_INIT_OUT_FLAGS2, &v, 4);
			v = PT_MAX_STACK_DEPTH;
			memcpy(out + PT_INIT_OUT_STACK_DEPTH, &v, 4);
		}
		fs->init_unique = 0;
	}
	return writev(fd, iov, count);
}

int pt_setup_io(struct ipcd_fs *fs)
{
	static const struct fuse_custom_io io = {
		.read = pt_read,
		.writev = pt_writev,
	};

	int fl = fcntl(fs->fuse_fd, F_GETFL);

	if (fl < 0 || fcntl(fs->fuse_fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	pthread_sigmask(SIG_SETMASK, NULL, &wait_mask);
	return fuse_session_custom_io(fs->se, &io, fs->fuse_fd);
}

int pt_backing_open(struct ipcd_fs *fs, int fd)
{
	struct pt_backing_map map = { .fd = fd };
	int id = ioctl(fs->fuse_fd, PT_DEV_IOC_BACKING_OPEN, &map);

	return id < 0 ? -errno : id;
}

void pt_backing_close(struct ipcd_fs *fs, int id)
{
	uint32_t v = (uint32_t)id;

	if (id > 0)
		ioctl(fs->fuse_fd, PT_DEV_IOC_BACKING_CLOSE, &v);
}

int pt_reply_open(fuse_req_t req, uint64_t fh, int backing_id)
{
	struct pt_open_out out = {
		.fh = fh,
		/* No flush: a close costs the closer no trip to us.  (The
		 * kernel refuses KEEP_CACHE, NONSEEKABLE and STREAM here.) */
		.open_flags = PT_FOPEN_DIRECT_IO | PT_FOPEN_PASSTHROUGH | PT_FOPEN_NOFLUSH,
		.backing_id = backing_id,
	};

	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

static bool has_cap_sys_admin(void)
{
	char line[256];
	unsigned long long eff = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return eff & (1ull << 21);	/* CAP_SYS_ADMIN */
}

/* What stands in the way of the fast path before mounting, or NULL. */
const char *pt_probe(char *why, size_t len)
{
	struct utsname u;
	int maj = 0, min = 0;

	if (!has_cap_sys_admin()) {
		snprintf(why, len, "the daemon lacks CAP_SYS_ADMIN, which FUSE "
			 "passthrough needs (run it as root)");
		return why;
	}
	if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &maj, &min) == 2 &&
	    (maj < 6 || (maj == 6 && min < 9))) {
		snprintf(why, len, "kernel %s has no FUSE passthrough (needs 6.9 "
			 "or later with CONFIG_FUSE_PASSTHROUGH)", u.release);
		return why;
	}
	return NULL;
}
