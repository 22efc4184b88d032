/*
 * create.c - the shim's start: find the real functions and an ipcd mount,
 * make channel pairs for pipe(), pipe2() and socketpair(), and after exec()
 * adopt the channel fds a preloaded parent passed down.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "shim.h"

#define FUSE_MAGIC	0x65735546

struct real real;
bool shim_on, shim_debug, shim_sockets = true;

static char mount_dir[4096], anon_dir[4096 + 8];
static dev_t mount_dev;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned long counter;

void shim_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (!shim_debug)
		return;
	n = snprintf(buf, sizeof(buf), "ipcd-shim[%d]: ", getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (real.write)
		real.write(2, buf, (size_t)n);
}

#define FIND(name) real.name = dlsym(RTLD_NEXT, #name)

static void find_real(void)
{
	FIND(pipe); FIND(pipe2); FIND(socketpair);
	FIND(read); FIND(write); FIND(readv); FIND(writev);
	FIND(recv); FIND(send); FIND(recvfrom); FIND(sendto);
	FIND(recvmsg); FIND(sendmsg);
	real.read_chk = dlsym(RTLD_NEXT, "__read_chk");
	real.recv_chk = dlsym(RTLD_NEXT, "__recv_chk");
	real.recvfrom_chk = dlsym(RTLD_NEXT, "__recvfrom_chk");
	FIND(close); FIND(close_range); FIND(dup); FIND(dup2); FIND(dup3);
	FIND(fcntl); FIND(fcntl64); FIND(ioctl);
	FIND(pread); FIND(pwrite); FIND(pread64); FIND(pwrite64); FIND(syscall); FIND(fstat); FIND(fstat64);
	FIND(fstatat); FIND(fstatat64); FIND(lseek); FIND(lseek64);
	FIND(shutdown); FIND(getsockopt); FIND(setsockopt);
	FIND(getsockname); FIND(getpeername);
	FIND(poll); FIND(ppoll); FIND(select); FIND(pselect);
	FIND(epoll_ctl); FIND(epoll_wait); FIND(epoll_pwait);
	real.poll_chk = dlsym(RTLD_NEXT, "__poll_chk");
	real.ppoll_chk = dlsym(RTLD_NEXT, "__ppoll_chk");
}

static bool env_off(const char *name)
{
	const char *v = getenv(name);

	return v && (!strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "no"));
}

/* Is there an ipcd mount with the fast path at `mnt`? */
static bool find_mount(const char *mnt)
{
	char status[256];
	struct statfs sfs;
	struct stat st;
	ssize_t n;

	if (statfs(mnt, &sfs) < 0 || sfs.f_type != FUSE_MAGIC ||
	    real.fstatat(AT_FDCWD, mnt, &st, 0) < 0)
		return false;
	n = getxattr(mnt, "user.ipcd.status", status, sizeof(status) - 1);
	if (n <= 0)
		return false;
	status[n] = 0;
	if (!strstr(status, "fastpath=on")) {
		shim_log("%s serves no fast path: %s", mnt, status);
		return false;
	}
	mount_dev = st.st_dev;
	/* Absolute, as the program may change directory. */
	if (!realpath(mnt, mount_dir))
		return false;
	snprintf(anon_dir, sizeof(anon_dir), "%s/.anon", mount_dir);
	if (mkdir(anon_dir, 01777) == 0)
		chmod(anon_dir, 01777);
	else if (errno != EEXIST)
		return false;
	return true;
}

static void init(void)
{
	const char *mnt = getenv("IPCD_MOUNT");
	const char *dbg = getenv("IPCD_DEBUG");

	find_real();
	shim_debug = dbg && *dbg && strcmp(dbg, "0");
	if (!real.read || !real.write || !real.close || !real.fcntl ||
	    !real.pipe2 || !real.fstatat) {
		shim_log("cannot find the real libc functions; staying out of the way");
		return;
	}
	if (env_off("IPCD_SHIM")) {
		shim_log("IPCD_SHIM=off: not intercepting");
		return;
	}
	shim_sockets = !env_off("IPCD_SHIM_SOCKETPAIR");
	shim_on = find_mount(mnt && *mnt ? mnt : "/ipcd");
	if (!shim_on) {
		shim_log("no ipcd mount with the fast path at %s: kernel pipes",
			 mnt && *mnt ? mnt : "/ipcd");
		return;
	}
	shim_adopt_inherited();
}

void shim_init(void)
{
	pthread_once(&init_once, init);
}

__attribute__((constructor)) static void shim_ctor(void)
{
	shim_init();
}

/*
 * The kernel tells the daemon of a file's last close with a release request
 * that it queues when close() runs but does not wait for.  The daemon reads
 * its requests in order, one at a time, so any request this thread makes
 * afterwards is answered only once that release was handled: the peer's
 * readers/writers counts in the ring are then up to date, as a kernel pipe's
 * are when close() returns.
 */
void shim_sync_close(void)
{
	char buf[256];
	int e = errno;

	if (getxattr(mount_dir, "user.ipcd.status", buf, sizeof(buf)) < 0)
		shim_log("cannot reach the daemon after a close: %s", strerror(errno));
	errno = e;
}

/* ---- making pairs ------------------------------------------------------- */

static const char *const labels[] = {
	[SK_PIPE] = "pipe", [SK_STREAM] = "stream",
	[SK_DGRAM] = "dgram", [SK_SEQPACKET] = "seqpacket",
};

static int set_role(int fd, uint32_t v, unsigned long cmd)
{
	return real.ioctl(fd, cmd, &v);
}

/* Open both ends of a fresh anonymous channel; -1 with errno on failure. */
static int open_pair(int fds[2], enum skind kind, int flags)
{
	char path[sizeof(anon_dir) + 64];
	const char *k = NULL;
	int oflags = O_RDWR | ((flags & O_CLOEXEC) ? O_CLOEXEC : 0);
	int e;

	snprintf(path, sizeof(path), "%s/%d.%ld.%lu", anon_dir, getpid(),
		 (long)syscall(SYS_gettid), atomic_fetch_add(&counter, 1));
	if (mknod(path, S_IFREG | 0600, 0) < 0)
		return -1;
	if (kind == SK_STREAM)
		k = "duplex-stream";
	else if (kind != SK_PIPE)
		k = "duplex-message";
	else if (flags & O_DIRECT)
		k = "message";		/* a packet-mode pipe */
	fds[0] = fds[1] = -1;
	if ((k && setxattr(path, "user.ipcd.kind", k, strlen(k), 0) < 0) ||
	    setxattr(path, "user.ipcd.label", labels[kind], strlen(labels[kind]), 0) < 0)
		goto err;
	fds[0] = open(path, oflags);
	if (fds[0] < 0)
		goto err;
	fds[1] = open(path, oflags);
	if (fds[1] < 0)
		goto err;
	if (kind == SK_PIPE) {
		if (set_role(fds[0], IPCD_ROLE_READ, IPCD_IOC_SETROLE) < 0 ||
		    set_role(fds[1], IPCD_ROLE_WRITE, IPCD_IOC_SETROLE) < 0)
			goto err;
	} else if (set_role(fds[1], 1, IPCD_IOC_SETSIDE) < 0) {
		goto err;
	}
	unlink(path);
	return 0;
err:
	e = errno;
	if (fds[0] >= 0)
		real.close(fds[0]);
	if (fds[1] >= 0)
		real.close(fds[1]);
	unlink(path);
	errno = e;
	return -1;
}

static struct sfd *adopt(int fd, enum skind kind, unsigned roles, int nonblock)
{
	struct ipcd_chan *c;
	struct sfd *s;
	int acc = roles == (IPCD_ROLE_READ | IPCD_ROLE_WRITE) ? O_RDWR :
		  roles == IPCD_ROLE_WRITE ? O_WRONLY : O_RDONLY;
	int r = ipcd_attach(fd, acc, &c);

	if (r) {
		errno = -r;
		return NULL;
	}
	s = sfd_new(c, kind, roles);
	if (!s) {
		ipcd_detach(c);
		errno = ENOMEM;
		return NULL;
	}
	atomic_store(&s->nonblock, nonblock);
	if (fdtab_set(fd, s) < 0) {
		sfd_put(s);
		errno = ENOMEM;
		return NULL;
	}
	sfd_put(s);	/* the table holds it now */
	return s;
}

int shim_make_pair(int fds[2], enum skind kind, int flags)
{
	unsigned r0 = IPCD_ROLE_READ | IPCD_ROLE_WRITE, r1 = r0;
	int nb = !!(flags & O_NONBLOCK), e;

	if (open_pair(fds, kind, flags) < 0) {
		shim_log("cannot make a %s channel (%s): kernel object instead",
			 labels[kind], strerror(errno));
		return -1;
	}
	if (kind == SK_PIPE) {
		r0 = IPCD_ROLE_READ;
		r1 = IPCD_ROLE_WRITE;
	}
	if (nb) {
		real.fcntl(fds[0], F_SETFL, O_RDWR | O_NONBLOCK);
		real.fcntl(fds[1], F_SETFL, O_RDWR | O_NONBLOCK);
	}
	if (!adopt(fds[0], kind, r0, nb) || !adopt(fds[1], kind, r1, nb)) {
		e = errno;
		fdtab_clear(fds[0]);
		fdtab_clear(fds[1]);
		real.close(fds[0]);
		real.close(fds[1]);
		shim_log("cannot map a %s channel (%s): kernel object instead",
			 labels[kind], strerror(e));
		return -1;
	}
	shim_log("%s channel: fds %d and %d", labels[kind], fds[0], fds[1]);
	return 0;
}

/* Take fd into the table if it is a channel end the shim made, on our
 * mount: inherited across exec, or passed over a socket. */
void shim_adopt_fd(int fd, const char *how)
{
	char label[32];
	struct stat st;
	uint32_t got;
	enum skind kind;
	ssize_t n;
	int fl;

	if (!shim_on || real.fstatat(fd, "", &st, AT_EMPTY_PATH) < 0 ||
	    st.st_dev != mount_dev || !S_ISREG(st.st_mode))
		return;
	n = fgetxattr(fd, "user.ipcd.label", label, sizeof(label) - 1);
	if (n <= 0 || real.ioctl(fd, IPCD_IOC_GETROLE, &got) < 0)
		return;
	label[n] = 0;
	for (kind = SK_PIPE; kind <= SK_SEQPACKET; kind++)
		if (!strcmp(label, labels[kind]))
			break;
	if (kind > SK_SEQPACKET || !(got & 3))
		return;
	fl = real.fcntl(fd, F_GETFL);
	if (adopt(fd, kind, got & 3, fl >= 0 && (fl & O_NONBLOCK)))
		shim_log("adopted %s %s channel fd %d", how, label, fd);
}

/* After exec: take back the channel fds on our mount that we inherited. */
void shim_adopt_inherited(void)
{
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int fd;

	if (!d)
		return;
	while ((de = readdir(d))) {
		fd = atoi(de->d_name);
		if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(d))
			continue;
		shim_adopt_fd(fd, "inherited");
	}
	closedir(d);
}
