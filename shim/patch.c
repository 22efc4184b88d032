/*
 * patch.c - redirecting the entry of named libc functions.  glibc calls its
 * own __write, __read_nocancel, __close_nocancel... directly, never through
 * the PLT, so interposing the exported symbol does not see stdio's I/O.  Here
 * the first instructions of a function's body are replaced by a jump to a
 * replacement (the handler), which every caller then reaches, libc's own
 * included.  The displaced instructions move to a trampoline that jumps back
 * behind them: calling the trampoline behaves exactly as the original
 * function, cancellation points and errno included, and never enters the
 * handler.
 *
 * Only bodies known byte for byte are touched.  A table per libc build (and
 * architecture) gives every byte of each supported function, with its
 * relocation fields left open, and how many leading bytes may move: whole
 * instructions, of which no branch in the body lands inside the moved part,
 * nor any direct branch elsewhere in that libc (checked over the whole of its
 * disassembly).  If the libc version, one symbol, one byte, or one moved
 * operand's target differs from the table, nothing is patched: -ENOTSUP.
 *
 * x86-64 only.  For each site, one slot of a page allocated within +-1 GiB of
 * libc holds an entry stub (jmp *0(%rip) to the handler, anywhere in memory)
 * and the trampoline (the moved instructions, a %rip-relative displacement
 * rebased, then jmp rel32 back).  The function's entry becomes a 5-byte
 * jmp rel32 to the stub, written with one aligned 8-byte store.
 *
 * Threads may be running: the shim patches when the first channel end comes
 * into a process, which may be late in its life.  A thread running an entry
 * meanwhile sees either the old or the new 8 bytes, never a mix (x86 fetches
 * an aligned word that a store wrote at once whole), and the trampolines and
 * *orig are complete before any entry changes.  A signal handler unwinding through a
 * trampoline (it has no unwind information) is not supported; unwinding
 * through the original body, as pthread_cancel does, is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <gnu/libc-version.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elfsym.h"
#include "patch.h"

static const char *patch_why = "no call yet";	/* written under patch_lock */

/* Serialises patch_apply calls: their checks, writes and patch_why. */
static pthread_mutex_t patch_lock = PTHREAD_MUTEX_INITIALIZER;

/* Why the last patch_apply failed (or "patched"): a static string. */
const char *patch_error(void)
{
	return patch_why;
}

static int patch_refuse(int err, const char *why)
{
	patch_why = why;
	return err;
}

#if defined(__x86_64__)

/*
 * A known function body.  hex lists every byte of it (st_size bytes) as two
 * hex digits each; "??" is a relocation field (a %rip-relative or call
 * displacement), whose value depends on the layout of the build.
 */
struct patch_body {
	const char *hex;
	unsigned size;		/* the symbol's st_size */
	unsigned steal;		/* leading bytes moved to the trampoline, >= JMP_LEN */
	int rip;		/* offset of a %rip-relative disp32 in them, or -1 */
	unsigned rip_end;	/* end of that instruction: the displacement's base */
	const char *rip_sym;	/* the libc symbol that operand must address */
};

/* A name (and version) under which a body is exported. */
struct patch_known {
	const char *name;
	const char *version;
	const struct patch_body *body;
};

#define JMP_LEN		5	/* jmp rel32 */
#define SLOT		32	/* bytes per site: stub at 0, trampoline at 16 */
#define TRAMP_OFF	16
#define STEAL_MAX	(SLOT - TRAMP_OFF - JMP_LEN)

/*
 * Debian 12, glibc 2.36 (2.36-9+deb12u*), x86-64, as objdump -d shows it.
 * No direct jump or call in this libc lands inside any moved part; the only
 * callers of posix_spawn@GLIBC_2.15 inside libc are system(), popen() and
 * wordexp().
 */

/* read, __read: the cancellable read(2). */
static const struct patch_body b236_read = {
	"80 3d ?? ?? ?? ?? 00"			/* 00 cmpb $0,__libc_single_threaded(%rip) */
	"74 17"					/* 07 je 20 */
	"31 c0 0f 05"				/* 09 xor %eax,%eax; syscall */
	"48 3d 00 f0 ff ff 77 5b c3"		/* 0d cmp $-4096,%rax; ja 70; ret */
	"66 2e 0f 1f 84 00 00 00 00 00"		/* 16 nop */
	"48 83 ec 28 48 89 54 24 18"		/* 20 sub $0x28,%rsp; mov %rdx,0x18(%rsp) */
	"48 89 74 24 10 89 7c 24 08"		/* 29 mov %rsi,0x10(%rsp); mov %edi,8(%rsp) */
	"e8 ?? ?? ?? ??"			/* 32 call __pthread_enable_asynccancel */
	"48 8b 54 24 18 48 8b 74 24 10"		/* 37 reload %rdx, %rsi */
	"41 89 c0 8b 7c 24 08"			/* 41 mov %eax,%r8d; reload %edi */
	"31 c0 0f 05"				/* 48 xor %eax,%eax; syscall */
	"48 3d 00 f0 ff ff 77 34"		/* 4c cmp $-4096,%rax; ja 88 */
	"44 89 c7 48 89 44 24 08"		/* 54 mov %r8d,%edi; mov %rax,8(%rsp) */
	"e8 ?? ?? ?? ??"			/* 5c call __pthread_disable_asynccancel */
	"48 8b 44 24 08 48 83 c4 28 c3"		/* 61 mov 8(%rsp),%rax; add $0x28,%rsp; ret */
	"0f 1f 44 00 00"			/* 6b nop */
	"48 8b 15 ?? ?? ?? ?? f7 d8 64 89 02"	/* 70 errno = -%eax */
	"48 c7 c0 ff ff ff ff c3"		/* 7c mov $-1,%rax; ret */
	"0f 1f 40 00"				/* 84 nop */
	"48 8b 15 ?? ?? ?? ?? f7 d8 64 89 02"	/* 88 errno = -%eax */
	"48 c7 c0 ff ff ff ff eb b7",		/* 94 mov $-1,%rax; jmp 54 */
	157, 7, 2, 7, "__libc_single_threaded"
};

/* write, __write: the cancellable write(2). */
static const struct patch_body b236_write = {
	"80 3d ?? ?? ?? ?? 00"			/* 00 cmpb $0,__libc_single_threaded(%rip) */
	"74 17"					/* 07 je 20 */
	"b8 01 00 00 00 0f 05"			/* 09 mov $1,%eax; syscall */
	"48 3d 00 f0 ff ff 77 58 c3"		/* 10 cmp $-4096,%rax; ja 70; ret */
	"0f 1f 80 00 00 00 00"			/* 19 nop */
	"48 83 ec 28 48 89 54 24 18"		/* 20 sub $0x28,%rsp; mov %rdx,0x18(%rsp) */
	"48 89 74 24 10 89 7c 24 08"		/* 29 mov %rsi,0x10(%rsp); mov %edi,8(%rsp) */
	"e8 ?? ?? ?? ??"			/* 32 call __pthread_enable_asynccancel */
	"48 8b 54 24 18 48 8b 74 24 10"		/* 37 reload %rdx, %rsi */
	"41 89 c0 8b 7c 24 08"			/* 41 mov %eax,%r8d; reload %edi */
	"b8 01 00 00 00 0f 05"			/* 48 mov $1,%eax; syscall */
	"48 3d 00 f0 ff ff 77 31"		/* 4f cmp $-4096,%rax; ja 88 */
	"44 89 c7 48 89 44 24 08"		/* 57 mov %r8d,%edi; mov %rax,8(%rsp) */
	"e8 ?? ?? ?? ??"			/* 5f call __pthread_disable_asynccancel */
	"48 8b 44 24 08 48 83 c4 28 c3"		/* 64 mov 8(%rsp),%rax; add $0x28,%rsp; ret */
	"66 90"					/* 6e nop */
	"48 8b 15 ?? ?? ?? ?? f7 d8 64 89 02"	/* 70 errno = -%eax */
	"48 c7 c0 ff ff ff ff c3"		/* 7c mov $-1,%rax; ret */
	"0f 1f 40 00"				/* 84 nop */
	"48 8b 15 ?? ?? ?? ?? f7 d8 64 89 02"	/* 88 errno = -%eax */
	"48 c7 c0 ff ff ff ff eb ba",		/* 94 mov $-1,%rax; jmp 57 */
	157, 7, 2, 7, "__libc_single_threaded"
};

/* close, __close: the cancellable close(2). */
static const struct patch_body b236_close = {
	"80 3d ?? ?? ?? ?? 00"			/* 00 cmpb $0,__libc_single_threaded(%rip) */
	"74 17"					/* 07 je 20 */
	"b8 03 00 00 00 0f 05"			/* 09 mov $3,%eax; syscall */
	"48 3d 00 f0 ff ff 77 48 c3"		/* 10 cmp $-4096,%rax; ja 60; ret */
	"0f 1f 80 00 00 00 00"			/* 19 nop */
	"48 83 ec 18 89 7c 24 0c"		/* 20 sub $0x18,%rsp; mov %edi,0xc(%rsp) */
	"e8 ?? ?? ?? ??"			/* 28 call __pthread_enable_asynccancel */
	"8b 7c 24 0c 89 c2"			/* 2d reload %edi; mov %eax,%edx */
	"b8 03 00 00 00 0f 05"			/* 33 mov $3,%eax; syscall */
	"48 3d 00 f0 ff ff 77 36"		/* 3a cmp $-4096,%rax; ja 78 */
	"89 d7 89 44 24 0c"			/* 42 mov %edx,%edi; mov %eax,0xc(%rsp) */
	"e8 ?? ?? ?? ??"			/* 48 call __pthread_disable_asynccancel */
	"8b 44 24 0c 48 83 c4 18 c3"		/* 4d mov 0xc(%rsp),%eax; add $0x18,%rsp; ret */
	"66 2e 0f 1f 84 00 00 00 00 00"		/* 56 nop */
	"48 8b 15 ?? ?? ?? ?? f7 d8 64 89 02"	/* 60 errno = -%eax */
	"b8 ff ff ff ff c3"			/* 6c mov $-1,%eax; ret */
	"66 0f 1f 44 00 00"			/* 72 nop */
	"48 8b 0d ?? ?? ?? ?? f7 d8 64 89 01"	/* 78 errno = -%eax */
	"b8 ff ff ff ff eb b7",			/* 84 mov $-1,%eax; jmp 42 */
	139, 7, 2, 7, "__libc_single_threaded"
};

/*
 * The plain system call stubs: mov $nr,%eax (moved); syscall; a range check
 * of %rax; errno on failure.  Two flavours of the check and of the -1.
 */
#define B236_STUB_A(nr, ret)						\
	"b8 " nr " 0f 05"		/* 00 mov $nr,%eax; syscall */	\
	"48 3d 00 f0 ff ff 77 01 c3"	/* 07 cmp $-4096,%rax; ja 10; ret */ \
	"48 8b 15 ?? ?? ?? ?? f7 d8 64 89 02"	/* 10 errno = -%eax */	\
	ret " c3"			/* 1c return -1 */
#define B236_STUB_B(nr)							\
	"b8 " nr " 0f 05"		/* 00 mov $nr,%eax; syscall */	\
	"48 3d 01 f0 ff ff 73 01 c3"	/* 07 cmp $-4095,%rax; jae 10; ret */ \
	"48 8b 0d ?? ?? ?? ?? f7 d8 64 89 01"	/* 10 errno = -%eax */	\
	"48 83 c8 ff c3"		/* 1c or $-1,%rax; ret */
#define RET_RAX	"48 c7 c0 ff ff ff ff"	/* mov $-1,%rax */
#define RET_EAX	"b8 ff ff ff ff"	/* mov $-1,%eax */

/* lseek, lseek64, __lseek */
static const struct patch_body b236_lseek = {
	B236_STUB_A("08 00 00 00", RET_RAX), 36, 5, -1, 0, NULL
};
/* __write_nocancel */
static const struct patch_body b236_write_nc = {
	B236_STUB_A("01 00 00 00", RET_RAX), 36, 5, -1, 0, NULL
};
/* __close_nocancel */
static const struct patch_body b236_close_nc = {
	B236_STUB_A("03 00 00 00", RET_EAX), 34, 5, -1, 0, NULL
};
/* dup2, __dup2 */
static const struct patch_body b236_dup2 = {
	B236_STUB_B("21 00 00 00"), 33, 5, -1, 0, NULL
};
/* dup3 */
static const struct patch_body b236_dup3 = {
	B236_STUB_B("24 01 00 00"), 33, 5, -1, 0, NULL
};
/* close_range */
static const struct patch_body b236_close_range = {
	B236_STUB_B("b4 01 00 00"), 33, 5, -1, 0, NULL
};

/* __read_nocancel: its number is set by a 2-byte xor, so three instructions move. */
static const struct patch_body b236_read_nc = {
	"31 c0 0f 05"				/* 00 xor %eax,%eax; syscall */
	"48 3d 00 f0 ff ff"			/* 04 cmp $-4096,%rax */
	"77 04 c3"				/* 0a ja 10; ret */
	"0f 1f 00"				/* 0d nop */
	"48 8b 15 ?? ?? ?? ?? f7 d8 64 89 02"	/* 10 errno = -%eax */
	RET_RAX " c3",				/* 1c mov $-1,%rax; ret */
	36, 10, -1, 0, NULL
};

/* posix_spawn@GLIBC_2.15 and posix_spawnp@GLIBC_2.15: __spawni with a mode. */
static const struct patch_body b236_spawn = {
	"48 83 ec 10 6a 00"			/* 00 sub $0x10,%rsp; push $0 (moved) */
	"e8 ?? ?? ?? ??"			/* 06 call __spawni */
	"48 83 c4 18 c3",			/* 0b add $0x18,%rsp; ret */
	16, 6, -1, 0, NULL
};
static const struct patch_body b236_spawnp = {
	"48 83 ec 10 6a 01"			/* 00 sub $0x10,%rsp; push $1 (moved) */
	"e8 ?? ?? ?? ??"			/* 06 call __spawni */
	"48 83 c4 18 c3",			/* 0b add $0x18,%rsp; ret */
	16, 6, -1, 0, NULL
};

static const struct patch_known known_236[] = {
	{ "read", "GLIBC_2.2.5", &b236_read },
	{ "__read", "GLIBC_2.2.5", &b236_read },
	{ "write", "GLIBC_2.2.5", &b236_write },
	{ "__write", "GLIBC_2.2.5", &b236_write },
	{ "close", "GLIBC_2.2.5", &b236_close },
	{ "__close", "GLIBC_2.2.5", &b236_close },
	{ "lseek", "GLIBC_2.2.5", &b236_lseek },
	{ "lseek64", "GLIBC_2.2.5", &b236_lseek },
	{ "__lseek", "GLIBC_2.2.5", &b236_lseek },
	{ "dup2", "GLIBC_2.2.5", &b236_dup2 },
	{ "__dup2", "GLIBC_2.2.5", &b236_dup2 },
	{ "dup3", "GLIBC_2.9", &b236_dup3 },
	{ "close_range", "GLIBC_2.34", &b236_close_range },
	{ "__read_nocancel", "GLIBC_PRIVATE", &b236_read_nc },
	{ "__write_nocancel", "GLIBC_PRIVATE", &b236_write_nc },
	{ "__close_nocancel", "GLIBC_PRIVATE", &b236_close_nc },
	{ "posix_spawn", "GLIBC_2.15", &b236_spawn },
	{ "posix_spawnp", "GLIBC_2.15", &b236_spawnp },
};

/* The libc builds known: gnu_get_libc_version(), and their bodies. */
static const struct patch_build {
	const char *version;
	const struct patch_known *known;
	size_t n;
} patch_builds[] = {
	{ "2.36", known_236, sizeof(known_236) / sizeof(known_236[0]) },
};

/* One site being patched. */
struct patch_work {
	const struct patch_body *body;
	uint8_t *fn;		/* the body's entry in libc */
	uint64_t *word;		/* the aligned 8 bytes that take the jump */
	uint64_t old, new;	/* their value before and after */
	void *old_orig;		/* *orig before, restored on failure */
};

static int patch_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Do the size bytes at p match hex (see struct patch_body), all of them? */
static bool patch_match(const uint8_t *p, size_t size, const char *hex)
{
	size_t i = 0;

	while (*hex) {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		if (i == size || !hex[1])
			return false;
		if (hex[0] != '?' || hex[1] != '?') {
			int hi = patch_hex(hex[0]), lo = patch_hex(hex[1]);

			if (hi < 0 || lo < 0 || p[i] != (uint8_t)(hi << 4 | lo))
				return false;
		}
		hex += 2;
		i++;
	}
	return i == size;
}

/* The rel32 that reaches to from an instruction ending at next, if any. */
static bool patch_rel32(uintptr_t next, uintptr_t to, int32_t *out)
{
	int64_t d = (int64_t)(to - next);

	if (d < INT32_MIN || d > INT32_MAX)
		return false;
	*out = (int32_t)d;
	return true;
}

/* Where a %rip-relative operand moved out of w's body points. */
static uintptr_t patch_rip_target(const struct patch_work *w)
{
	int32_t d;

	memcpy(&d, w->fn + w->body->rip, sizeof(d));
	return (uintptr_t)w->fn + w->body->rip_end + (uintptr_t)(int64_t)d;
}

/*
 * Find site s in libc (its object o) and check it against the build's
 * table: fills w, or refuses.
 */
static int patch_check(const struct elf_obj *o, const struct patch_build *b,
		       const struct patch_site *s, struct patch_work *w)
{
	const struct patch_known *k = NULL;
	const ElfW(Sym) *sym;
	size_t i;

	for (i = 0; i < b->n && !k; i++)
		if (!strcmp(b->known[i].name, s->name))
			k = &b->known[i];
	if (!k)
		return patch_refuse(-ENOTSUP, "a function this libc build is not known for");
	if (s->version && strcmp(s->version, k->version))
		return patch_refuse(-ENOTSUP, "a symbol version whose body is not known");
	w->body = k->body;
	if (w->body->steal < JMP_LEN || w->body->steal > STEAL_MAX)
		return patch_refuse(-ENOTSUP, "a table entry moving too few or many bytes");
	sym = elf_lookup(o, k->name, elf_hash(k->name), k->version);
	if (!sym)
		return patch_refuse(-ENOTSUP, "a known function missing from libc");
	w->fn = (uint8_t *)(o->base + sym->st_value);
	if (ELF_ST_TYPE(sym->st_info) != STT_FUNC || sym->st_size != w->body->size)
		return patch_refuse(-ENOTSUP, "a function of another kind or size");
	if (!patch_match(w->fn, w->body->size, w->body->hex))
		return patch_refuse(-ENOTSUP, "a function body with unknown bytes");
	if (w->body->rip >= 0) {
		const ElfW(Sym) *t = elf_lookup(o, w->body->rip_sym, elf_hash(w->body->rip_sym), NULL);

		if (!t || patch_rip_target(w) != o->base + t->st_value)
			return patch_refuse(-ENOTSUP, "a moved operand addressing something unknown");
	}
	/* The jump must lie within one aligned 8-byte word, written at once. */
	if (((uintptr_t)w->fn & 7) + JMP_LEN > 8)
		return patch_refuse(-ENOTSUP, "a function entry not aligned for an atomic write");
	w->word = (uint64_t *)((uintptr_t)w->fn & ~(uintptr_t)7);
	memcpy(&w->old, w->word, sizeof(w->old));
	return 0;
}

/*
 * Map size bytes, read-write, within 1 GiB of [lo, hi), so that every rel32
 * between them fits (the limit is 2 GiB).  NULL if no room is found.
 */
static uint8_t *patch_near(uintptr_t lo, uintptr_t hi, size_t size)
{
	const uintptr_t step = 64 << 10, reach = (uintptr_t)1 << 30;
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t d;
	void *p;

	lo &= ~(pg - 1);
	hi = (hi + pg - 1) & ~(pg - 1);
	/* First where the kernel puts a new mapping: next to the libraries,
	 * as a rule, which is near enough.  One request, where a search from
	 * libc outwards first meets libc's own other segments. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		uintptr_t a = (uintptr_t)p;

		if ((a >= hi && a + size - lo < reach) || (a < lo && hi - a < reach))
			return p;
		munmap(p, size);
	}
	for (d = 0; d + size < reach; d += step) {
		uintptr_t at[2] = { hi + d, lo - size - d };
		int i;

		for (i = 0; i < 2; i++) {
			if ((i == 0 && at[0] < hi) || (i == 1 && lo < size + d))
				continue;	/* wrapped around */
			p = mmap((void *)at[i], size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (p == (void *)at[i])
				return p;
			if (p != MAP_FAILED)	/* a kernel that took it as a hint */
				munmap(p, size);
		}
	}
	return NULL;
}

/*
 * Fill slot with w's entry stub and trampoline, and compute w->new, the
 * entry word with its jump to the stub.  False if a displacement does not fit.
 */
static bool patch_build(uint8_t *slot, struct patch_work *w, void *handler)
{
	const struct patch_body *b = w->body;
	uint8_t *tramp = slot + TRAMP_OFF, jmp[JMP_LEN], *entry;
	int32_t d;

	memset(slot, 0xcc, SLOT);			/* int3 in the gaps */
	/* Entry stub: jmp *0(%rip); .quad handler */
	memcpy(slot, "\xff\x25\0\0\0\0", 6);
	memcpy(slot + 6, &handler, sizeof(handler));

	/* Trampoline: the moved instructions, then jmp back behind them. */
	memcpy(tramp, w->fn, b->steal);
	if (b->rip >= 0) {
		if (!patch_rel32((uintptr_t)tramp + b->rip_end, patch_rip_target(w), &d))
			return false;
		memcpy(tramp + b->rip, &d, sizeof(d));
	}
	tramp[b->steal] = 0xe9;
	if (!patch_rel32((uintptr_t)tramp + b->steal + JMP_LEN, (uintptr_t)w->fn + b->steal, &d))
		return false;
	memcpy(tramp + b->steal + 1, &d, sizeof(d));

	/* The entry: jmp rel32 to the stub, inside the aligned word. */
	if (!patch_rel32((uintptr_t)w->fn + JMP_LEN, (uintptr_t)slot, &d))
		return false;
	jmp[0] = 0xe9;
	memcpy(jmp + 1, &d, sizeof(d));
	w->new = w->old;
	entry = (uint8_t *)&w->new + ((uintptr_t)w->fn & 7);
	memcpy(entry, jmp, JMP_LEN);
	return true;
}

/*
 * Swap *word from old to new if it holds old: one lock cmpxchg on the aligned
 * entry word.  An executing thread fetches the old or the new 8 bytes, never
 * half of each.  Locked, it is a full barrier: the trampolines and *orig
 * written before are visible before the jump that leads to them.  Written
 * in assembly, not as a C atomic, so that no sanitizer instruments a store
 * into libc's code (ThreadSanitizer has no writable shadow there).
 */
static bool patch_swap(uint64_t *word, uint64_t old, uint64_t new)
{
	uint64_t seen = old;

	__asm__ volatile("lock cmpxchgq %2, %1"
			 : "+a"(seen), "+m"(*word)
			 : "r"(new)
			 : "memory", "cc");
	return seen == old;
}

/*
 * Set prot on the pages holding the entry words of w[0..n).  If making them
 * writable fails part-way, those done are read-execute again.
 */
/*
 * Set prot on the pages holding the entry words of w[0..n): one call over
 * their whole span, as each call costs more than the pages between them.
 */
static int patch_protect(struct patch_work *w, size_t n, int prot)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo = UINTPTR_MAX, hi = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((uintptr_t)w[i].word < lo)
			lo = (uintptr_t)w[i].word;
		if ((uintptr_t)w[i].word + 8 > hi)
			hi = (uintptr_t)w[i].word + 8;
	}
	lo &= ~(pg - 1);
	hi = (hi + pg - 1) & ~(pg - 1);
	return mprotect((void *)lo, hi - lo, prot) ? -errno : 0;
}

static int patch_apply_locked(struct patch_site *sites, size_t n)
{
	struct patch_work w[PATCH_MAX];
	const struct patch_build *b = NULL;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	uint8_t *page = NULL;
	size_t i, j, size;
	struct elf_obj objs[ELF_MAX_OBJS];
	int err, nobj, lc;

	if (!n || n > PATCH_MAX)
		return patch_refuse(-EINVAL, "no sites, or more than PATCH_MAX");
	for (i = 0; i < n; i++)
		if (!sites[i].name || !sites[i].handler || !sites[i].orig)
			return patch_refuse(-EINVAL, "a site without name, handler or orig");
	for (i = 0; i < sizeof(patch_builds) / sizeof(patch_builds[0]) && !b; i++)
		if (!strcmp(gnu_get_libc_version(), patch_builds[i].version))
			b = &patch_builds[i];
	if (!b)
		return patch_refuse(-ENOTSUP, "a libc version not known");

	nobj = elf_objects(objs, ELF_MAX_OBJS);
	lc = nobj > 0 ? elf_find(objs, nobj, (const void *)gnu_get_libc_version) : -1;
	if (lc < 0 || !objs[lc].gnu)
		return patch_refuse(-ENOTSUP, "libc's own symbol table not found");
	for (i = 0; i < n; i++) {
		err = patch_check(&objs[lc], b, &sites[i], &w[i]);
		if (err)
			return err;
		for (j = 0; j < i; j++)
			if (w[j].fn == w[i].fn)
				return patch_refuse(-EINVAL, "two sites name one function body");
		if ((uintptr_t)w[i].fn < lo)
			lo = (uintptr_t)w[i].fn;
		if ((uintptr_t)w[i].fn + w[i].body->size > hi)
			hi = (uintptr_t)w[i].fn + w[i].body->size;
		if (w[i].body->rip >= 0) {
			uintptr_t to = patch_rip_target(&w[i]);

			lo = to < lo ? to : lo;
			hi = to + 1 > hi ? to + 1 : hi;
		}
	}

	/* Stubs and trampolines, complete and executable before any entry changes. */
	size = ((n * SLOT) + (size_t)sysconf(_SC_PAGESIZE) - 1) &
	       ~((size_t)sysconf(_SC_PAGESIZE) - 1);
	page = patch_near(lo, hi, size);
	if (!page)
		return patch_refuse(-ENOMEM, "no room for trampolines near libc");
	for (i = 0; i < n; i++)
		if (!patch_build(page + i * SLOT, &w[i], sites[i].handler)) {
			munmap(page, size);
			return patch_refuse(-ENOMEM, "trampolines out of reach of libc");
		}
	if (mprotect(page, size, PROT_READ | PROT_EXEC)) {
		err = -errno;
		munmap(page, size);
		return patch_refuse(err, "trampolines cannot be made executable");
	}
	/* *orig before the entries: a handler may run as soon as its entry changes. */
	for (i = 0; i < n; i++) {
		void *tramp = page + i * SLOT + TRAMP_OFF;

		memcpy(&w[i].old_orig, sites[i].orig, sizeof(void *));
		memcpy(sites[i].orig, &tramp, sizeof(void *));
	}

	/* The entries: read-write-execute meanwhile, as another thread may run there. */
	err = patch_protect(w, n, PROT_READ | PROT_WRITE | PROT_EXEC);
	if (err) {
		patch_why = "libc's code pages cannot be made writable";
		goto undo;
	}
	for (i = 0; i < n; i++) {
		/* It fails only if someone else changed the bytes since they were checked. */
		if (!patch_swap(w[i].word, w[i].old, w[i].new)) {
			while (i-- > 0)
				patch_swap(w[i].word, w[i].new, w[i].old);
			patch_protect(w, n, PROT_READ | PROT_EXEC);
			err = -EBUSY;
			patch_why = "a function body changed while being patched";
			page = NULL;	/* kept: a thread may still be on its way through */
			goto undo;
		}
	}
	/* Back to read-execute; this cannot fail where it just succeeded. */
	patch_protect(w, n, PROT_READ | PROT_EXEC);
	patch_why = "patched";
	return 0;

undo:
	for (i = 0; i < n; i++)
		memcpy(sites[i].orig, &w[i].old_orig, sizeof(void *));
	if (page)
		munmap(page, size);
	return err;
}

/* Redirect all sites or none; 0 or -errno (see patch.h). */
int patch_apply(struct patch_site *sites, size_t n)
{
	int err;

	pthread_mutex_lock(&patch_lock);
	err = patch_apply_locked(sites, n);
	pthread_mutex_unlock(&patch_lock);
	return err;
}

#else /* not x86-64 */

/* No entry patching here: refuse, change nothing. */
int patch_apply(struct patch_site *sites, size_t n)
{
	(void)sites;
	(void)n;
	pthread_mutex_lock(&patch_lock);
	patch_refuse(-ENOTSUP, "not x86-64: no entry patching on this architecture");
	pthread_mutex_unlock(&patch_lock);
	return -ENOTSUP;
}

#endif
