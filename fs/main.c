/*
 * main.c - the ipcd daemon: options, start-up checks, mounting, the INIT
 * exchange that decides whether channels get the mmap fast path, and the
 * session loop.  Run as `ipcd [options] MOUNTPOINT`, or by mount(8) as
 * `ipcd SOURCE MOUNTPOINT -o OPTIONS`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "fs.h"

struct ipcd_fs *ipcd;
static bool log_stderr = true;

void ipcd_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (log_stderr) {
		fputs("ipcd: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	} else {
		vsyslog(prio, fmt, ap);
	}
	va_end(ap);
}

struct options {
	char *ring_size, *max_ring_size, *max_channels, *mem_limit, *fastpath, *coord, *queues;
	int help, version, foreground, debug;
	char *args[3];
	int nargs;
};

#define OPT(t, f) { t, offsetof(struct options, f), 1 }
static const struct fuse_opt opt_spec[] = {
	{ "ring_size=%s", offsetof(struct options, ring_size), 0 },
	{ "max_ring_size=%s", offsetof(struct options, max_ring_size), 0 },
	{ "max_channels=%s", offsetof(struct options, max_channels), 0 },
	{ "mem_limit=%s", offsetof(struct options, mem_limit), 0 },
	{ "fastpath=%s", offsetof(struct options, fastpath), 0 },
	{ "coord=%s", offsetof(struct options, coord), 0 },
	{ "queues=%s", offsetof(struct options, queues), 0 },
	OPT("-h", help),
	OPT("--help", help),
	OPT("-V", version),
	OPT("--version", version),
	OPT("-f", foreground),
	OPT("-d", debug),
	OPT("debug", debug),
	FUSE_OPT_END
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct options *o = data;

	(void)out;
	if (key == FUSE_OPT_KEY_NONOPT) {
		if (o->nargs >= 2) {
			fprintf(stderr, "ipcd: unexpected argument '%s'\n", arg);
			return -1;
		}
		o->args[o->nargs++] = strdup(arg);
		return 0;
	}
	if (key == FUSE_OPT_KEY_OPT && arg[0] == '-' && arg[1] != 'o') {
		fprintf(stderr, "ipcd: unknown option '%s' (see ipcd --help)\n", arg);
		return -1;
	}
	return 1;
}

static void usage(void)
{
	printf("usage: ipcd [options] MOUNTPOINT\n"
	       "       ipcd SOURCE MOUNTPOINT -o OPTIONS   (as run by mount -t fuse.ipcd)\n"
	       "\n"
	       "Mount an ipcd channel file system: every file is an IPC channel that\n"
	       "can be read and written like a pipe, or mapped for a shared-memory ring.\n"
	       "\n"
	       "options:\n"
	       "  -h, --help            this text\n"
	       "  -V, --version         version, and whether this machine gives the fast path\n"
	       "  -f                    stay in the foreground\n"
	       "  -d                    debug: foreground, and trace every request\n"
	       "  -o ring_size=N        ring capacity of a new channel (default 1M; k, M, G)\n"
	       "  -o max_ring_size=N    largest capacity a channel may ask for (default 64M)\n"
	       "  -o max_channels=N     most channels at once (default 65536)\n"
	       "  -o mem_limit=N        most ring memory in all (default half of RAM)\n"
	       "  -o fastpath=MODE      auto (default): mmap fast path when the kernel and\n"
	       "                        privileges allow, else slow path only, said once;\n"
	       "                        require: refuse to start without it; off: never\n"
	       "  -o coord=MODE         how processes sharing a channel end take turns:\n"
	       "                        lock (default): a lock word per operation;\n"
	       "                        queues: a ring per writing thread, no lock;\n"
	       "                        shared: one ring, reserved by fetch-and-add\n"
	       "  -o queues=N           rings a side has with coord=queues (default 8,\n"
	       "                        2 to %u; the first is the daemon's)\n"
	       "  -o OPT                any FUSE mount option (allow_other,\n"
	       "                        default_permissions, ...); as root both of\n"
	       "                        those are on by default\n"
	       "\n"
	       "See ipcd(8) and ipcd(7).\n", IPCD_QUEUES_MAX);
}

int ipcd_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_size_opt(const char *name, const char *s, uint64_t *out)
{
	if (!s)
		return 0;
	if (ipcd_parse_size(s, out) || *out == 0) {
		fprintf(stderr, "ipcd: bad value for %s: '%s'\n", name, s);
		return -1;
	}
	return 0;
}

static bool has_opt(const struct fuse_args *args, const char *name)
{
	size_t n = strlen(name);
	const char *p;
	int i;

	for (i = 0; i < args->argc; i++) {
		for (p = args->argv[i]; (p = strstr(p, name)); p += n)
			if ((p == args->argv[i] || p[-1] == ',' || p[-1] == 'o') &&
			    (p[n] == 0 || p[n] == ',' || p[n] == '='))
				return true;
	}
	return false;
}

static int check_mountpoint(const char *mnt)
{
	char real[PATH_MAX], line[4096], dir[4096], type[256];
	struct stat st;
	FILE *f;
	int busy = 0;

	if (stat(mnt, &st) < 0) {
		fprintf(stderr, "ipcd: mount point %s: %s\n", mnt, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "ipcd: mount point %s is not a directory\n", mnt);
		return -1;
	}
	if (!realpath(mnt, real))
		return 0;
	f = fopen("/proc/self/mounts", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %4095s %255s", dir, type) == 2 &&
		    !strcmp(dir, real) && !strncmp(type, "fuse", 4))
			busy = 1;
	if (f)
		fclose(f);
	if (busy) {
		fprintf(stderr, "ipcd: mount point %s is busy: a FUSE file system is "
			"already mounted there (unmount it with fusermount3 -u %s)\n",
			mnt, mnt);
		return -1;
	}
	return 0;
}

static int check_dev_fuse(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == ENOENT)
		fprintf(stderr, "ipcd: /dev/fuse does not exist: load the fuse module "
			"(modprobe fuse) or give this container the device\n");
	else
		fprintf(stderr, "ipcd: cannot open /dev/fuse: %s\n", strerror(errno));
	return -1;
}

static void print_version(void)
{
	char why[160];
	const char *w = pt_probe(why, sizeof(why));

	printf("ipcd %s\n", PACKAGE_VERSION);
	printf("libfuse %s, ring ABI %u\n", fuse_pkgversion(), IPCD_RING_VERSION);
#ifdef HAVE_FUSE_PASSTHROUGH_OPEN
	printf("passthrough: libfuse API\n");
#else
	printf("passthrough: negotiated by ipcd (INIT reply)\n");
#endif
	if (w)
		printf("fast path: unavailable here: %s\n", w);
	else
		printf("fast path: available here (the kernel confirms it at mount; "
		       "see the user.ipcd.status attribute of the mount)\n");
}

/* Run the INIT exchange now, before daemonizing, so that its outcome can
 * still stop start-up with a message on the terminal. */
static int do_init(struct fuse_session *se)
{
	struct fuse_buf buf = { 0 };
	int r;

	while (!ipcd->max_write) {
		r = fuse_session_receive_buf(se, &buf);
		if (r == -EINTR)
			continue;
		if (r <= 0) {
			if (!fuse_session_exited(se))
				fprintf(stderr, "ipcd: no INIT from the kernel: %s\n",
					strerror(r ? -r : ENODEV));
			free(buf.mem);
			return -1;
		}
		fuse_session_process_buf(se, &buf);
		if (fuse_session_exited(se))
			break;
	}
	free(buf.mem);
	return ipcd->max_write ? 0 : -1;
}

/* The mount point's absolute path and device number, as processes see
 * them (the pair socket's name); asked without a request to ourselves. */
static int mount_identity(struct ipcd_fs *fs, const char *mnt)
{
	struct statx stx;

	if (!realpath(mnt, fs->mnt) ||
	    statx(AT_FDCWD, fs->mnt, AT_STATX_DONT_SYNC, STATX_INO, &stx) < 0)
		return -1;
	fs->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	return 0;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static struct fuse_args args;
static struct options o;
static struct ipcd_fs fs;

/* Everything after the command line: returns the exit status. */
static int run(void)
{
	struct fuse_session *se;
	const char *mnt, *why;
	char whybuf[160];
	sigset_t stop_sigs, old_mask;
	int ret = 1;

	pthread_sigmask(SIG_SETMASK, NULL, &old_mask);
	if (o.help) {
		usage();
		return 0;
	}
	if (o.version) {
		print_version();
		return 0;
	}
	if (o.nargs == 0) {
		fprintf(stderr, "ipcd: no mount point given (see ipcd --help)\n");
		return 2;
	}
	mnt = o.args[o.nargs - 1];	/* with two, the first is mount's source */

	fs.ring_size = 1u << 20;
	fs.max_ring_size = 64u << 20;
	fs.max_channels = 65536;
	fs.mem_limit = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / 2;
	if (parse_size_opt("ring_size", o.ring_size, &fs.ring_size) ||
	    parse_size_opt("max_ring_size", o.max_ring_size, &fs.max_ring_size) ||
	    parse_size_opt("max_channels", o.max_channels, &fs.max_channels) ||
	    parse_size_opt("mem_limit", o.mem_limit, &fs.mem_limit))
		return 2;
	if (!ipcd_ring_map_size(fs.ring_size) || !ipcd_ring_map_size(fs.max_ring_size) ||
	    fs.ring_size > fs.max_ring_size) {
		fprintf(stderr, "ipcd: ring sizes must be powers of two from %u to %u, "
			"ring_size at most max_ring_size\n", IPCD_RING_MIN_CAPACITY,
			IPCD_RING_MAX_CAPACITY);
		return 2;
	}
	if (!o.fastpath || !strcmp(o.fastpath, "auto")) {
		fs.fastpath_mode = FASTPATH_AUTO;
	} else if (!strcmp(o.fastpath, "require")) {
		fs.fastpath_mode = FASTPATH_REQUIRE;
	} else if (!strcmp(o.fastpath, "off")) {
		fs.fastpath_mode = FASTPATH_OFF;
	} else {
		fprintf(stderr, "ipcd: fastpath must be auto, require or off, not '%s'\n",
			o.fastpath);
		return 2;
	}
	if (!o.coord || !strcmp(o.coord, "lock")) {
		fs.coord_default = IPCD_COORD_LOCK;
	} else if (!strcmp(o.coord, "queues")) {
		fs.coord_default = IPCD_COORD_QUEUES;
	} else if (!strcmp(o.coord, "shared")) {
		fs.coord_default = IPCD_COORD_SHARED;
	} else {
		fprintf(stderr, "ipcd: coord must be lock, queues or shared, not '%s'\n",
			o.coord);
		return 2;
	}
	fs.queues = 8;
	if (o.queues) {
		char *end;
		unsigned long q = strtoul(o.queues, &end, 10);

		if (*end || end == o.queues || q < 2 || q > IPCD_QUEUES_MAX) {
			fprintf(stderr, "ipcd: queues must be a number from 2 to %u, not '%s'\n",
				IPCD_QUEUES_MAX, o.queues);
			return 2;
		}
		fs.queues = (unsigned)q;
	}
	if (o.debug) {
		o.foreground = 1;
		fuse_opt_add_arg(&args, "-odebug");
	}
	if (check_dev_fuse() || check_mountpoint(mnt))
		return 1;

	why = fs.fastpath_mode == FASTPATH_OFF ? NULL : pt_probe(whybuf, sizeof(whybuf));
	if (why && fs.fastpath_mode == FASTPATH_REQUIRE) {
		fprintf(stderr, "ipcd: fastpath=require, but %s\n", why);
		return 1;
	}
	if (why) {
		snprintf(fs.fastpath_why, sizeof(fs.fastpath_why), "%s", why);
		fs.fastpath_mode = FASTPATH_OFF;
	} else if (fs.fastpath_mode == FASTPATH_OFF) {
		snprintf(fs.fastpath_why, sizeof(fs.fastpath_why), "fastpath=off");
	}

	if (!has_opt(&args, "fsname"))
		fuse_opt_add_arg(&args, "-ofsname=ipcd");
	if (!has_opt(&args, "subtype"))
		fuse_opt_add_arg(&args, "-osubtype=ipcd");
	if (getuid() == 0) {
		if (!has_opt(&args, "allow_other"))
			fuse_opt_add_arg(&args, "-oallow_other");
		if (!has_opt(&args, "default_permissions"))
			fuse_opt_add_arg(&args, "-odefault_permissions");
	}
	raise_fd_limit();

	pthread_mutex_init(&fs.mu, NULL);
	CDS_INIT_LIST_HEAD(&fs.watched);
	CDS_INIT_LIST_HEAD(&fs.chans);
	fs.rbuf = malloc(IPCD_RBUF_SIZE);
	if (!fs.rbuf) {
		fprintf(stderr, "ipcd: out of memory\n");
		return 1;
	}
	se = fuse_session_new(&args, &ipcd_ops, sizeof(ipcd_ops), &fs);
	if (!se) {
		fprintf(stderr, "ipcd: bad options (see ipcd --help)\n");
		return 2;
	}
	fs.se = se;
	if (fuse_set_signal_handlers(se))
		goto out_destroy;
	if (fuse_session_mount(se, mnt)) {
		fprintf(stderr, "ipcd: cannot mount on %s\n", mnt);
		goto out_signals;
	}
	fs.fuse_fd = fuse_session_fd(se);
	if (pt_setup_io(&fs)) {
		fprintf(stderr, "ipcd: cannot set up the FUSE channel\n");
		goto out_unmount;
	}
	/* From here the stop signals reach only the session thread's wait for
	 * a request (see pt_setup_io); the threads started below inherit the
	 * block. */
	sigemptyset(&stop_sigs);
	sigaddset(&stop_sigs, SIGHUP);
	sigaddset(&stop_sigs, SIGINT);
	sigaddset(&stop_sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask);
	if (do_init(se)) {
		if (fuse_session_exited(se))
			ret = 0;	/* stopped before it began: not an error */
		goto out_unmount;
	}
	if (fs.fastpath_mode != FASTPATH_OFF && !fs.kernel_passthrough) {
		snprintf(fs.fastpath_why, sizeof(fs.fastpath_why),
			 "the kernel did not offer FUSE passthrough at INIT "
			 "(needs CONFIG_FUSE_PASSTHROUGH)");
		if (fs.fastpath_mode == FASTPATH_REQUIRE) {
			fprintf(stderr, "ipcd: fastpath=require, but %s\n", fs.fastpath_why);
			goto out_unmount;
		}
	}
	fs.fastpath = fs.fastpath_mode != FASTPATH_OFF && fs.kernel_passthrough;
	if (mount_identity(&fs, mnt)) {
		fs.fastpath = false;	/* no pairs without knowing ourselves */
		snprintf(fs.fastpath_why, sizeof(fs.fastpath_why),
			 "cannot find the mount point's path and device");
	}
	if (!fs.fastpath)
		ipcd_log(LOG_WARNING, "fast path off: %s; channels work through read "
			 "and write only, and mmap fails with ENODEV", fs.fastpath_why);

	if (!o.foreground) {
		log_stderr = false;
		openlog("ipcd", LOG_PID, LOG_DAEMON);
		if (fuse_daemonize(0)) {
			log_stderr = true;
			goto out_unmount;
		}
	}
	/* The RCU tables start their helper threads: only after the fork. */
	rcu_register_thread();
	if (ns_init(&fs)) {
		ipcd_log(LOG_ERR, "out of memory");
		goto out_rcu;
	}
	if (coord_start(&fs)) {
		ipcd_log(LOG_ERR, "cannot start the coordination core");
		goto out_rcu;
	}
	if (anc_start(&fs)) {
		ipcd_log(LOG_ERR, "cannot start the descriptor socket thread");
		coord_stop(&fs);
		goto out_rcu;
	}
	factory_start(&fs);
	ret = fuse_session_loop(se) < 0 ? 1 : 0;
	factory_stop(&fs);
	coord_stop(&fs);
	anc_stop(&fs);
	ns_destroy(&fs);	/* answers what is still parked */
out_rcu:
	rcu_unregister_thread();
out_unmount:
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
	return ret;
}

int main(int argc, char *argv[])
{
	int ret, i;

	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	ipcd = &fs;
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0)
		ret = 2;
	else
		ret = run();
	ns_destroy(&fs);
	anc_end();	/* after the session: closing may need no answer */
	free(fs.rbuf);
	fuse_opt_free_args(&args);
	free(o.coord);
	free(o.queues);
	free(o.ring_size);
	free(o.max_ring_size);
	free(o.max_channels);
	free(o.mem_limit);
	free(o.fastpath);
	for (i = 0; i < o.nargs; i++)
		free(o.args[i]);
	return ret;
}
