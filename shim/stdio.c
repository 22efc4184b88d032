/*
 * stdio.c - libc's buffered streams reach the shim.
 *
 * printf, fwrite, fgets, fflush, fseek, fclose and the rest move a stream's
 * bytes through a table of functions per kind of stream (glibc's struct
 * _IO_jump_t), never through a symbol a preloaded library could take.  The
 * streams of fopen, fdopen, stdin, stdout and stderr, narrow or wide, use
 * one of two tables, _IO_file_jumps and _IO_wfile_jumps, and both read,
 * write, seek and close with the same four functions, _IO_file_read,
 * _IO_file_write, _IO_file_seek and _IO_file_close.  glibc exports all six.
 *
 * So those four entries of the two tables are pointed at the handlers here:
 * a channel end goes to the shim, any other descriptor to libc's own
 * function, which is called as before.  This changes no code, only eight
 * pointers on one page of libc's relocated read-only data, made writable for
 * that moment; each pointer changes with one aligned store, so streams in
 * use by other threads are safe.  Where the tables are not as described
 * (another libc, another layout, a function found twice or not at all),
 * nothing is changed and the caller patches libc's code instead (patch.c).
 *
 * The rest of libc that works on descriptors on its own (system, popen,
 * freopen, daemon ...) is reached by patching its code when first called
 * (libc.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elfsym.h"
#include "shim.h"

/* The shim's exported entry points do the work for a channel end. */
ssize_t read(int fd, void *buf, size_t len);
ssize_t write(int fd, const void *buf, size_t len);
off64_t lseek64(int fd, off64_t off, int whence);

typedef ssize_t (*io_read_fn)(FILE *, void *, ssize_t);
typedef ssize_t (*io_write_fn)(FILE *, const void *, ssize_t);
typedef int (*io_close_fn)(FILE *);

enum { IO_READ, IO_WRITE, IO_SEEK, IO_CLOSE, IO_FNS };

static const char *const io_names[IO_FNS] = {
	"_IO_file_read", "_IO_file_write", "_IO_file_seek", "_IO_file_close",
};
static const char *const table_names[] = { "_IO_file_jumps", "_IO_wfile_jumps" };
#define TABLES	(sizeof(table_names) / sizeof(table_names[0]))

/* libc's own functions, which the handlers call for other descriptors
 * (set before the tables point at the handlers; atomics, as threads that
 * read them never synchronised with the one that set them). */
static void *orig[IO_FNS];

static void *orig_fn(int f)
{
	return __atomic_load_n(&orig[f], __ATOMIC_ACQUIRE);
}

static ssize_t io_read(FILE *fp, void *buf, ssize_t n)
{
	if (!fdtab_has(fp->_fileno))
		return ((io_read_fn)orig_fn(IO_READ))(fp, buf, n);
	return read(fp->_fileno, buf, (size_t)n);
}

/* As libc's: write all of it, or mark the stream in error; keep the
 * stream's idea of its offset. */
static ssize_t io_write(FILE *fp, const void *data, ssize_t n)
{
	const char *p = data;
	ssize_t left = n, k;

	if (!fdtab_has(fp->_fileno))
		return ((io_write_fn)orig_fn(IO_WRITE))(fp, data, n);
	while (left > 0) {
		k = write(fp->_fileno, p, (size_t)left);
		if (k < 0) {
			fp->_flags |= _IO_ERR_SEEN;
			break;
		}
		left -= k;
		p += k;
	}
	n -= left;
	if (fp->_offset >= 0)
		fp->_offset += n;
	return n;
}

/* libc's is lseek64 on the stream's descriptor, which the shim's answers
 * as well (ESPIPE on an end, as on a pipe or a socket). */
static off64_t io_seek(FILE *fp, off64_t off, int whence)
{
	return lseek64(fp->_fileno, off, whence);
}

static int io_close(FILE *fp)
{
	if (!fdtab_has(fp->_fileno))
		return ((io_close_fn)orig_fn(IO_CLOSE))(fp);
	return shim_close_fd(fp->_fileno, real.close_nocancel ? real.close_nocancel : real.close);
}

static void *const handlers[IO_FNS] = {
	(void *)io_read, (void *)io_write, (void *)io_seek, (void *)io_close,
};

/* The one word of the n at tab that holds fn, or -1 (none, or several). */
static long slot_of(void *const *tab, size_t n, void *fn)
{
	long at = -1;
	size_t i;

	for (i = 0; i < n; i++)
		if (tab[i] == fn) {
			if (at >= 0)
				return -1;
			at = (long)i;
		}
	return at;
}

bool shim_stdio_hook(void)
{
	const struct elf_obj *o = shim_libc_obj();
	void **slot[TABLES][IO_FNS], *fns[IO_FNS];
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	size_t t, f, size;
	long pg = sysconf(_SC_PAGESIZE);

	if (!o || pg <= 0)
		return false;
	for (f = 0; f < IO_FNS; f++) {
		fns[f] = shim_libc_sym(io_names[f], NULL, NULL);
		if (!fns[f] || (uintptr_t)fns[f] < o->lo || (uintptr_t)fns[f] >= o->hi)
			return false;
	}
	for (t = 0; t < TABLES; t++) {
		void **tab = shim_libc_sym(table_names[t], NULL, &size);

		if (!tab || size < IO_FNS * sizeof(void *) || size % sizeof(void *) ||
		    (uintptr_t)tab < o->lo || (uintptr_t)tab + size > o->hi)
			return false;
		for (f = 0; f < IO_FNS; f++) {
			long at = slot_of(tab, size / sizeof(void *), fns[f]);

			if (at < 0)
				return false;
			slot[t][f] = &tab[at];
			if ((uintptr_t)slot[t][f] < lo)
				lo = (uintptr_t)slot[t][f];
			if ((uintptr_t)slot[t][f] + sizeof(void *) > hi)
				hi = (uintptr_t)slot[t][f] + sizeof(void *);
		}
	}
	/* glibc keeps the tables in its relocated read-only data (RELRO);
	 * anywhere else, they are not what this expects. */
	if (lo < o->relro_lo || hi > o->relro_hi)
		return false;
	lo &= ~(uintptr_t)(pg - 1);
	hi = (hi + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
	if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) < 0)
		return false;
	for (f = 0; f < IO_FNS; f++)
		__atomic_store_n(&orig[f], fns[f], __ATOMIC_RELEASE);
	for (t = 0; t < TABLES; t++)
		for (f = 0; f < IO_FNS; f++)
			__atomic_store_n(slot[t][f], handlers[f], __ATOMIC_RELEASE);
	if (mprotect((void *)lo, hi - lo, PROT_READ) < 0)
		shim_log("libc's stream tables stay writable: %s", strerror(errno));
	return true;
}
