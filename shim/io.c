/*
 * io.c - moving bytes on an accelerated fd through its ring, with the
 * semantics of a kernel pipe or socket pair: blocking unless O_NONBLOCK or
 * MSG_DONTWAIT, EPIPE with SIGPIPE when no reader is left (unless
 * MSG_NOSIGNAL), a message per call on message channels, and the
 * scatter/gather calls done as one read or write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define BOUNCE_STACK	16384

/* The end's rings, mapped at first use for an end that came from
 * elsewhere; NULL if it turns out not to be one. */
struct ipcd_chan *sfd_chan(struct sfd *s, int fd)
{
	struct ipcd_chan *c = atomic_load_explicit(&s->c, memory_order_acquire);

	if (__builtin_expect(c != NULL, 1))
		return c;
	if (!s->pending || !sfd_attach(s, fd))
		return NULL;
	return atomic_load(&s->c);
}

_Thread_local struct shim_call_mark shim_call_mark __attribute__((tls_model("initial-exec")));

/* How a blocking call on s waits: its socket time-out, and whether a
 * signal handler that comes during a spin must end it. */
static struct ipcd_wopt wopt(struct sfd *s, bool rd)
{
	struct ipcd_wopt w = {
		.timeout_ns = atomic_load_explicit(rd ? &s->rcvtimeo : &s->sndtimeo,
						   memory_order_relaxed),
		.wflags = atomic_load_explicit(&shim_handlers, memory_order_relaxed) ?
			  IPCD_WAIT_SIGSAFE : 0,
		.sigmark = atomic_load_explicit(&ipcd_sigwatch.interrupting,
						memory_order_relaxed),
	};

	/* A reading call that noted the count at its entry waits from then. */
	if (rd && shim_call_mark.set) {
		w.sigmark = shim_call_mark.mark;
		shim_call_mark.set = false;
	}
	return w;
}

static int ioflags(struct sfd *s, int msg_flags)
{
	int f = 0;

	if (atomic_load_explicit(&s->nonblock, memory_order_relaxed) ||
	    (msg_flags & MSG_DONTWAIT))
		f |= IPCD_NONBLOCK;
	if (msg_flags & MSG_PEEK)
		f |= IPCD_PEEK;
	return f;
}

/* ---- user memory --------------------------------------------------------- */

/*
 * The kernel answers a call whose buffer it cannot copy with EFAULT; the
 * shim copies through the ring itself, where such a buffer would kill the
 * program with SIGSEGV.  So a buffer is looked at before it is touched.
 * Memory on the main thread's stack above the caller's frame is mapped.
 * Memory the kernel has said can be read (or written) is remembered, a few
 * page ranges per thread, so that a program reusing its buffers pays
 * nothing after the first call.  Anything else is asked of the kernel,
 * without changing a byte: MADV_POPULATE_READ or _WRITE faults the pages
 * in as the copy would, and fails if one of them cannot be.
 *
 * What is remembered is not forgotten when the program unmaps or protects
 * the memory later: a call on a buffer that was good and no longer is
 * faults in the shim, as it would in the program itself (ipcd-shim(7)).
 */
#define SPANS		4

struct span {
	uintptr_t lo, hi;	/* [lo, hi), whole pages */
};

/* Per thread, so without a lock.  [0]: readable, [1]: writable.  A signal
 * handler may look at them between two stores of an update: the stores
 * are ordered so that every range it can see is good. */
static __thread struct span spans[2][SPANS] __attribute__((tls_model("initial-exec")));
static __thread unsigned span_next[2] __attribute__((tls_model("initial-exec")));

/* The top of the main thread's stack, as the loader found it. */
extern void *__libc_stack_end;

/* Are [a, end) all in memory already known to be good? */
static inline bool known(uintptr_t a, uintptr_t end, bool write)
{
	const uintptr_t reach = (uintptr_t)64 << 20;
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	uintptr_t top = (uintptr_t)__libc_stack_end;
	int d, i;

	if (end < a)
		return false;
	/* The main stack is mapped from here up, and writable. */
	if (top > here && top - here < reach && a > here && end <= top)
		return true;
	for (d = write; d < 2; d++)
		for (i = 0; i < SPANS; i++)
			if (a >= spans[d][i].lo && end <= spans[d][i].hi)
				return true;
	return false;
}

static void remember(uintptr_t lo, uintptr_t hi, bool write)
{
	struct span *s = spans[write];
	unsigned i;

	for (i = 0; i < SPANS; i++) {
		if (s[i].lo >= s[i].hi || lo > s[i].hi || hi < s[i].lo)
			continue;
		/* Overlapping or touching: grown one end at a time, each
		 * state a good range. */
		if (lo < s[i].lo) {
			s[i].lo = lo;
			atomic_signal_fence(memory_order_seq_cst);
		}
		if (hi > s[i].hi)
			s[i].hi = hi;
		return;
	}
	i = span_next[write]++ % SPANS;
	s[i].hi = 0;		/* empty while it changes */
	atomic_signal_fence(memory_order_seq_cst);
	s[i].lo = lo;
	atomic_signal_fence(memory_order_seq_cst);
	s[i].hi = hi;
}

/* Can the page at a be read, or written?  Asked with MADV_POPULATE_READ
 * or _WRITE, which touch no byte and wake nobody; where the kernel cannot
 * populate the mapping (device memory, or a kernel without them), with a
 * futex operation on the word at a, which may wake a waiter there. */
static bool page_ok(uintptr_t a, bool write)
{
	static uint32_t none;	/* a futex nobody waits on */
	struct timespec zero = { 0, 0 };
	uintptr_t pg = (uintptr_t)getpagesize();
	uint32_t *w = (uint32_t *)(a & ~(uintptr_t)3);
	long r;

	if (madvise((void *)(a & ~(pg - 1)), pg,
		    write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0)
		return true;
	if (errno != EINVAL)
		return false;	/* not mapped, or it would fault */
	if (write)
		/* Atomically adds 0 to *w: a write that changes nothing. */
		r = real.syscall(SYS_futex, &none, FUTEX_WAKE_OP_PRIVATE, 0, (void *)0, w,
				 FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_EQ, 0));
	else
		/* Reads *w; returns at once, whatever it holds. */
		r = real.syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, 0x5a5a5a5a, &zero);
	return r >= 0 || errno != EFAULT;
}

/*
 * The readable segments of the program and the libraries loaded with it,
 * looked up once, when the first end comes (so that forked children find
 * them already): a write of a string constant or of a static buffer needs
 * no request.  (A library unloaded later stays listed, as above.)
 */
#define OBJ_SPANS	32
static struct span obj_spans[OBJ_SPANS];
static int n_obj_spans;
static struct shim_once obj_once = SHIM_ONCE_INIT;

static int obj_note(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t pg = (uintptr_t)getpagesize();

	(void)size;
	(void)arg;
	for (int i = 0; i < info->dlpi_phnum && n_obj_spans < OBJ_SPANS; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_R) || !ph->p_memsz)
			continue;
		/* The whole pages the segment is mapped on: all readable. */
		obj_spans[n_obj_spans].lo = lo & ~(pg - 1);
		obj_spans[n_obj_spans].hi = (lo + ph->p_memsz + pg - 1) & ~(pg - 1);
		n_obj_spans++;
	}
	return 0;
}

static void obj_spans_find(void)
{
	dl_iterate_phdr(obj_note, NULL);
}

void shim_user_objects(void)
{
	shim_once(&obj_once, obj_spans_find);
}

static bool in_objects(uintptr_t a, uintptr_t end)
{
	shim_user_objects();
	for (int i = 0; i < n_obj_spans; i++)
		if (a >= obj_spans[i].lo && end <= obj_spans[i].hi)
			return true;
	return false;
}

/* shim_user_span for memory not known to be good: one request over all
 * its pages, then, if one would fault, page by page to find it. */
static size_t span_probe(uintptr_t a, size_t n, bool write)
{
	uintptr_t pg = (uintptr_t)getpagesize(), lo = a & ~(pg - 1), last, p;
	size_t good = 0;
	int e = errno;

	if (n > UINTPTR_MAX - a)
		n = UINTPTR_MAX - a;	/* the rest lies in the kernel's half */
	if (!n)
		return 0;
	if (!write && in_objects(a, a + n))
		return n;
	last = (a + n - 1) & ~(pg - 1);
	if (last > lo && last + pg > last &&
	    madvise((void *)lo, last + pg - lo,
		    write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) {
		remember(lo, last + pg, write);
		errno = e;
		return n;
	}
	for (p = lo;; p += pg) {
		if (!page_ok(p < a ? a : p, write))
			break;
		if (p == last) {
			good = n;
			break;
		}
	}
	if (good == n && last + pg > last)
		remember(lo, last + pg, write);
	else if (good < n && p > lo)
		remember(lo, p, write);
	if (good < n)
		good = p > a ? p - a : 0;
	errno = e;
	return good;
}

/*
 * After a second read into memory that was not known in full, as the bytes
 * took only its start: learn the rest of each piece, so that the next read
 * into it (which usually brings as little) takes the fast path.  Without
 * faulting in every page of a large buffer: its last page is looked at as
 * above, and the pages between must be mapped (mincore), as they are in
 * one mapping; a piece that spans mappings of differing rights is rare
 * enough not to be looked for.
 */
static __thread uintptr_t dest_seen __attribute__((tls_model("initial-exec")));

static void learn_dest(const struct iovec *iov, int cnt)
{
	uintptr_t pg = (uintptr_t)getpagesize(), a, lo, last, p, k;
	unsigned char vec[256];
	int i, e = errno;

	/* Only a buffer read into a second time is worth it: a program that
	 * reads once (a line, then the end) would pay these requests and
	 * the fault of a last page it never uses. */
	if (cnt > 0 && dest_seen != (uintptr_t)iov[0].iov_base) {
		dest_seen = (uintptr_t)iov[0].iov_base;
		return;
	}
	for (i = 0; i < cnt; i++) {
		a = (uintptr_t)iov[i].iov_base;
		if (!iov[i].iov_len || iov[i].iov_len > UINTPTR_MAX - a ||
		    known(a, a + iov[i].iov_len, true))
			continue;
		lo = a & ~(pg - 1);
		last = (a + iov[i].iov_len - 1) & ~(pg - 1);
		if (last + pg < last || !page_ok(a, true) || !page_ok(last, true))
			continue;
		for (p = lo + pg; p < last; p += k * pg) {
			k = (last - p) / pg < sizeof(vec) ? (last - p) / pg : sizeof(vec);
			if (mincore((void *)p, k * pg, vec) < 0)
				break;
		}
		if (p >= last)
			remember(lo, last + pg, true);
	}
	errno = e;
}

size_t shim_user_span(const void *p, size_t n, bool write)
{
	uintptr_t a = (uintptr_t)p;

	if (!n || known(a, a + n, write))
		return n;
	return span_probe(a, n, write);
}

bool shim_user_ok(const void *p, size_t n, bool write)
{
	return shim_user_span(p, n, write) == n;
}

static bool iov_known(const struct iovec *iov, int cnt, bool write)
{
	uintptr_t a;
	int i;

	for (i = 0; i < cnt; i++) {
		a = (uintptr_t)iov[i].iov_base;
		if (iov[i].iov_len && !known(a, a + iov[i].iov_len, write))
			return false;
	}
	return true;
}

/* Of the first n bytes the pieces of iov stand for, how many from the
 * first can be read (or written). */
static size_t iov_span(const struct iovec *iov, int cnt, size_t n, bool write)
{
	size_t at = 0, k, g;
	int i;

	for (i = 0; i < cnt && at < n; i++) {
		k = iov[i].iov_len < n - at ? iov[i].iov_len : n - at;
		g = shim_user_span(iov[i].iov_base, k, write);
		at += g;
		if (g < k)
			break;
	}
	return at;
}

/*
 * Where the kernel stops a copy that faults: after the whole buffers
 * before the fault.  A pipe's are pages; a stream socket's, what each send
 * put in one buffer (up to some 32 KiB).  Where the shim has no such
 * boundaries, it takes them every unit bytes from the start of the copy.
 */
static size_t fault_unit(const struct sfd *s)
{
	return s->kind == SK_PIPE ? PIPE_BUF : 32768;
}

/* ---- reading ---------------------------------------------------------------- */

/* What a read checks before it looks at its buffer: 1 to go on (*cp the
 * rings), else what the read gives. */
static ssize_t read_start(struct sfd *s, int fd, size_t len, int flags, struct ipcd_chan **cp)
{
	struct ipcd_chan *c = sfd_chan(s, fd);

	if (!c)
		return -EIO;
	/* No out-of-band byte is ever kept (shim_write): a stream has none
	 * to give; the other kinds have no such thing. */
	if (flags & MSG_OOB)
		return s->kind == SK_STREAM ? -EINVAL : -EOPNOTSUPP;
	if (!(s->roles & IPCD_ROLE_READ))
		return -EBADF;
	if (atomic_load(&s->shut_rd))
		return 0;
	if (len == 0 && !ipcd_is_message(c))
		return 0;	/* as the kernel: a zero-length read never waits */
	*cp = c;
	return 1;
}

/* The read itself, into memory that can be written; w: how the call
 * waits, as it was when it began. */
static ssize_t read_in(struct sfd *s, int fd, struct ipcd_chan *c, void *buf, size_t len,
		       int flags, size_t *full, struct shim_rx *rx, const struct ipcd_wopt *w)
{
	struct ipcd_anc_ops ops, *anc = NULL;	/* pipes carry no descriptors */
	struct shim_rx drop;
	ssize_t n, got = 0;

	if (s->kind == SK_DGRAM) {
		/* A datagram socket has no end of file: with its peer gone and
		 * nothing queued it has nothing to give, now or ever. */
		short rev = (short)ipcd_wait(c, POLLIN, 0);

		if ((rev & POLLHUP) && !(rev & POLLIN)) {
			if (ioflags(s, flags) & IPCD_NONBLOCK)
				return -EAGAIN;
			for (;;)
				if (real.poll(NULL, 0, -1) < 0 && errno == EINTR)
					return -EINTR;
		}
	}
	if (s->kind != SK_PIPE) {
		/* A socket pair end: descriptors may come with the bytes; with
		 * no room for them (no rx), the daemon closes them. */
		if (!rx) {
			drop.fd = fd;
			drop.c = c;
			drop.want = drop.cloexec = drop.taken = drop.lost = false;
			drop.nfds = 0;
			rx = &drop;
		}
		ops = (struct ipcd_anc_ops){ .take = shim_anc_take, .arg = rx };
		anc = &ops;
	}
	n = ipcd_recv_anc(c, buf, len, ioflags(s, flags) | (full ? IPCD_TRUNC : 0), anc, w);
	if (n == -EAGAIN && (ioflags(s, flags) & IPCD_NONBLOCK)) {
		/* "Nothing yet" must not hide an end of file a reaped child
		 * left: catch up with the daemon once. */
		hold_catch_up(s, fd);
		n = ipcd_recv_anc(c, buf, len, ioflags(s, flags) | (full ? IPCD_TRUNC : 0),
				  anc, w);
	}
	if (n >= 0 && full) {
		*full = (size_t)n;
		n = (size_t)n > len ? (ssize_t)len : n;
	}
	if (n <= 0 || !(flags & MSG_WAITALL) || ipcd_is_message(c))
		return n;
	/* MSG_WAITALL on a stream: keep reading until full, EOF or error. */
	got = n;
	while ((size_t)got < len) {
		/* Stops short of the next descriptors, as the kernel does. */
		n = ipcd_recv_anc(c, (char *)buf + got, len - (size_t)got,
				  ioflags(s, flags), anc, w);
		if (n <= 0)
			break;
		got += n;
	}
	return got;
}

/* Into the pieces of iov, at most len bytes of them (all can be written):
 * one read, through a bounce buffer when there are several. */
static ssize_t read_into(struct sfd *s, int fd, struct ipcd_chan *c, const struct iovec *iov,
			 int cnt, size_t len, int flags, size_t *full, struct shim_rx *rx,
			 const struct ipcd_wopt *w)
{
	char stack[BOUNCE_STACK], *b = stack;
	size_t at = 0, k;
	ssize_t n;
	int i;

	if (cnt == 1)
		return read_in(s, fd, c, iov[0].iov_base, len, flags, full, rx, w);
	if (len > sizeof(stack) && !(b = malloc(len)))
		return -ENOMEM;
	n = read_in(s, fd, c, b, len, flags, full, rx, w);
	for (i = 0; i < cnt && n > 0 && at < (size_t)n; i++) {
		k = iov[i].iov_len < (size_t)n - at ? iov[i].iov_len : (size_t)n - at;
		memcpy(iov[i].iov_base, b + at, k);
		at += k;
	}
	if (b != stack)
		free(b);
	return n;
}

/*
 * A message read into memory not known to be writable.  The kernel takes
 * the message, then copies it, and loses it (EFAULT) if the copy faults;
 * so does this, through a buffer of our own.  (Looking first at how long
 * the next message is would not do: another reader may take it before
 * this one does.)
 */
static ssize_t read_message(struct sfd *s, int fd, struct ipcd_chan *c, const struct iovec *iov,
			    int cnt, size_t len, int flags, size_t *full, struct shim_rx *rx,
			    const struct ipcd_wopt *w)
{
	char stack[BOUNCE_STACK], *b = stack;
	size_t max = ipcd_in(c)->msg_max, at = 0, k;
	ssize_t n;
	int i;

	if (len > max)
		len = max;	/* no message is longer */
	if (len > sizeof(stack) && !(b = malloc(len)))
		return -ENOMEM;
	n = read_in(s, fd, c, b, len, flags, full, rx, w);
	if (n > 0 && iov_span(iov, cnt, (size_t)n, true) < (size_t)n) {
		if (rx)
			shim_drop_rights(rx);
		n = -EFAULT;
	} else if (n >= 0) {
		learn_dest(iov, cnt);
	}
	for (i = 0; i < cnt && n > 0 && at < (size_t)n; i++) {
		k = iov[i].iov_len < (size_t)n - at ? iov[i].iov_len : (size_t)n - at;
		memcpy(iov[i].iov_base, b + at, k);
		at += k;
	}
	if (b != stack)
		free(b);
	return n;
}

/*
 * A stream read into memory not known to be writable.  The kernel faults
 * only on the bytes it copies, and only once it has something to copy:
 * this waits as the read would (a look at one byte, into memory of our
 * own), then looks at the pages the bytes there are now would go to, and
 * reads no more than those.  As the kernel does, it leaves the buffer it
 * could not copy queued, and returns the whole ones before it (EFAULT if
 * none).
 */
static ssize_t read_checked(struct sfd *s, int fd, struct ipcd_chan *c, const struct iovec *iov,
			    int cnt, size_t len, int flags, size_t *full, struct shim_rx *rx,
			    const struct ipcd_wopt *w)
{
	size_t want, good;
	ssize_t n, q;
	char one;

	if (ipcd_is_message(c))
		return read_message(s, fd, c, iov, cnt, len, flags, full, rx, w);
	n = read_in(s, fd, c, &one, 1, (flags & ~MSG_WAITALL) | MSG_PEEK, NULL, NULL, w);
	if (n <= 0)
		return n;	/* an error, or the end of the stream */
	q = ipcd_readable(c);
	want = (flags & MSG_WAITALL) || q <= 0 || (size_t)q > len ? len : (size_t)q;
	good = iov_span(iov, cnt, want, true);
	if (good < want) {
		good -= good % fault_unit(s);
		if (!good)
			return -EFAULT;
	}
	/* Another reader may take some meanwhile: this one then gets less,
	 * or waits, never more. */
	n = read_into(s, fd, c, iov, cnt, good, flags, full, rx, w);
	if (n >= 0 && good == want)
		learn_dest(iov, cnt);
	return n;
}

ssize_t shim_read(struct sfd *s, int fd, void *buf, size_t len, int flags,
		  size_t *full, struct shim_rx *rx)
{
	struct ipcd_wopt w = wopt(s, true);
	struct ipcd_chan *c;
	struct iovec one;
	ssize_t n = read_start(s, fd, len, flags, &c);

	if (n > 0) {
		if (__builtin_expect(known((uintptr_t)buf, (uintptr_t)buf + len, true), 1)) {
			n = read_in(s, fd, c, buf, len, flags, full, rx, &w);
		} else {
			one.iov_base = buf;
			one.iov_len = len;
			n = read_checked(s, fd, c, &one, 1, len, flags, full, rx, &w);
		}
	}
	if (!n && len && s->kind == SK_PIPE && s->m)
		shim_site_done(s->m);	/* every writer is gone */
	shim_prog_moved(n);
	return n;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;
	int i;

	for (i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* readv/recvmsg: one read into a bounce buffer, then scattered. */
ssize_t shim_readv(struct sfd *s, int fd, const struct iovec *iov, int cnt,
		   int flags, size_t *full, struct shim_rx *rx)
{
	size_t len = iov_total(iov, cnt);
	struct ipcd_wopt w;
	struct ipcd_chan *c;
	ssize_t n;

	if (cnt == 1)
		return shim_read(s, fd, iov[0].iov_base, iov[0].iov_len, flags, full, rx);
	w = wopt(s, true);
	n = read_start(s, fd, len, flags, &c);
	if (n <= 0)
		return n;
	if (iov_known(iov, cnt, true))
		n = read_into(s, fd, c, iov, cnt, len, flags, full, rx, &w);
	else
		n = read_checked(s, fd, c, iov, cnt, len, flags, full, rx, &w);
	shim_prog_moved(n);
	return n;
}

/* ---- writing ---------------------------------------------------------------- */

/* What a write checks before it looks at its bytes: 0 to go on (*cp the
 * rings), else -errno. */
static ssize_t write_start(struct sfd *s, int fd, struct ipcd_chan **cp)
{
	struct ipcd_chan *c = sfd_chan(s, fd);

	if (!c)
		return -EIO;
	if (!(s->roles & IPCD_ROLE_WRITE))
		return s->kind == SK_PIPE ? -EBADF : -EPIPE;
	*cp = c;
	return 0;
}

/* The end of a failed write: SIGPIPE where the kernel raises it. */
static ssize_t write_failed(struct sfd *s, ssize_t n, int flags)
{
	if (n == -EPIPE && s->kind == SK_DGRAM)
		return -ECONNREFUSED;	/* as a datagram socket whose peer is gone */
	/* The kernel raises SIGPIPE for pipes and stream sockets only. */
	if (n == -EPIPE && !(flags & MSG_NOSIGNAL) &&
	    (s->kind == SK_PIPE || s->kind == SK_STREAM))
		raise(SIGPIPE);
	return n;
}

/* The write itself, of bytes that can be read; w: how the call waits, as
 * it was when it began. */
static ssize_t write_out(struct sfd *s, int fd, struct ipcd_chan *c, const void *buf,
			 size_t len, int flags, struct shim_tx *tx, const struct ipcd_wopt *w)
{
	struct ipcd_anc_ops ops = { .bind = shim_anc_bind, .arg = tx };

	/* A write must not go into a ring whose last reader a reaped child
	 * was: catch up with the daemon once. */
	hold_catch_up(s, fd);
	return write_failed(s, ipcd_send_anc(c, buf, len, ioflags(s, flags),
					     tx ? &ops : NULL, w), flags);
}

/*
 * A write of len bytes of which only the first good can be read.  As the
 * kernel: a pipe with no reader left fails with EPIPE before it looks at
 * the bytes; a message goes whole or not at all (EFAULT); a stream takes
 * the whole buffers before the fault, and returns how many bytes (EFAULT
 * if none).
 */
static ssize_t write_fault(struct sfd *s, int fd, struct ipcd_chan *c, const void *buf,
			   size_t good, int flags, struct shim_tx *tx, const struct ipcd_wopt *w)
{
	if (s->kind == SK_PIPE) {
		hold_catch_up(s, fd);
		if (!ipcd_ring_readers(ipcd_out(c)))
			return write_failed(s, -EPIPE, flags);
	}
	good -= good % fault_unit(s);
	if (ipcd_is_message(c) || !good)
		return -EFAULT;
	return write_out(s, fd, c, buf, good, flags, tx, w);
}

/*
 * len bytes at buf, of which the first good can be read.  MSG_OOB on a
 * stream makes the last byte out-of-band data, which the kernel keeps
 * apart from the stream for recv(MSG_OOB): the shim has nowhere to keep it
 * (ipcd-shim(7)), so the stream gets the bytes before it, and the byte is
 * checked as the kernel would and then dropped.
 */
static ssize_t write_some(struct sfd *s, int fd, struct ipcd_chan *c, const void *buf,
			  size_t len, size_t good, int flags, struct shim_tx *tx,
			  const struct ipcd_wopt *w)
{
	ssize_t n;

	if (flags & MSG_OOB) {
		if (s->kind != SK_STREAM || !len)
			return -EOPNOTSUPP;
		n = len > 1 ? write_some(s, fd, c, buf, len - 1, good < len - 1 ? good : len - 1,
					 flags & ~MSG_OOB, tx, w) : 0;
		if (n < 0 || (size_t)n < len - 1)
			return n;
		if (good < len)
			return n ? n : -EFAULT;
		hold_catch_up(s, fd);
		if (!ipcd_ring_readers(ipcd_out(c)))
			return n ? n : write_failed(s, -EPIPE, flags);
		return n + 1;
	}
	if (good < len)
		return write_fault(s, fd, c, buf, good, flags, tx, w);
	return write_out(s, fd, c, buf, len, flags, tx, w);
}

ssize_t shim_write(struct sfd *s, int fd, const void *buf, size_t len, int flags,
		   struct shim_tx *tx)
{
	struct ipcd_wopt w = wopt(s, false);
	struct ipcd_chan *c;
	ssize_t n = write_start(s, fd, &c);
	size_t good = len;

	if (n)
		return n;
	if (!__builtin_expect(known((uintptr_t)buf, (uintptr_t)buf + len, false), 1))
		good = shim_user_span(buf, len, false);
	n = write_some(s, fd, c, buf, len, good, flags, tx, &w);
	shim_prog_moved(n);
	return n;
}

/* writev/sendmsg: gathered into one write, so PIPE_BUF atomicity and
 * message boundaries hold. */
ssize_t shim_writev(struct sfd *s, int fd, const struct iovec *iov, int cnt, int flags,
		    struct shim_tx *tx)
{
	char stack[BOUNCE_STACK], *b = stack;
	size_t len, good, at = 0, k;
	struct ipcd_wopt w;
	struct ipcd_chan *c;
	ssize_t n;
	int i;

	if (cnt == 1)
		return shim_write(s, fd, iov[0].iov_base, iov[0].iov_len, flags, tx);
	w = wopt(s, false);
	n = write_start(s, fd, &c);
	if (n)
		return n;
	len = iov_total(iov, cnt);
	if (len == 0)
		return write_some(s, fd, c, "", 0, 0, flags, tx, &w);
	good = iov_known(iov, cnt, false) ? len : iov_span(iov, cnt, len, false);
	if (good > sizeof(stack) && !(b = malloc(good)))
		return -ENOMEM;
	for (i = 0; i < cnt && at < good; i++) {
		k = iov[i].iov_len < good - at ? iov[i].iov_len : good - at;
		memcpy(b + at, iov[i].iov_base, k);
		at += k;
	}
	n = write_some(s, fd, c, b, len, good, flags, tx, &w);
	if (b != stack)
		free(b);
	shim_prog_moved(n);
	return n;
}
