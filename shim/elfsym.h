/*
 * elfsym.h - the dynamic symbols of the objects loaded in this process, read
 * straight from their GNU hash tables.  dlsym() and dladdr() do the same job
 * but take the loader's locks and, for dladdr, scan every symbol: too slow
 * for a library that starts in every process of a pipeline.
 */
#ifndef IPCD_ELFSYM_H
#define IPCD_ELFSYM_H

#include <elf.h>
#include <link.h>
#include <stdbool.h>
#include <stdint.h>

/* One loaded object. */
struct elf_obj {
	const char *name;		/* its path as loaded ("" for the program) */
	uintptr_t base;			/* load bias */
	uintptr_t lo, hi;		/* its PT_LOAD segments span [lo, hi) */
	uintptr_t relro_lo, relro_hi;	/* PT_GNU_RELRO: read-only once relocated */
	const ElfW(Sym) *sym;
	const char *str;
	const uint32_t *gnu;		/* DT_GNU_HASH */
	const ElfW(Half) *versym;	/* DT_VERSYM, or NULL */
	const ElfW(Verdef) *verdef;	/* DT_VERDEF, or NULL */
};

#define ELF_MAX_OBJS	64

#if __ELF_NATIVE_CLASS == 64
#define ELF_ST_BIND(i)	ELF64_ST_BIND(i)
#define ELF_ST_TYPE(i)	ELF64_ST_TYPE(i)
#else
#define ELF_ST_BIND(i)	ELF32_ST_BIND(i)
#define ELF_ST_TYPE(i)	ELF32_ST_TYPE(i)
#endif

/*
 * The loaded objects in load order (the order in which the global scope is
 * searched): fills at most max, returns how many were found, or -1 if there
 * are more than max.  An object without a GNU hash table is listed with
 * gnu == NULL: its symbols cannot be searched here.
 */
__attribute__((visibility("hidden")))
int elf_objects(struct elf_obj *v, int max);

/* The object in v[0..n) whose segments hold addr, or -1. */
__attribute__((visibility("hidden")))
int elf_find(const struct elf_obj *v, int n, const void *addr);

/* The GNU hash of a name. */
__attribute__((visibility("hidden")))
uint32_t elf_hash(const char *name);

/*
 * The defined symbol name (hash h = elf_hash(name)) in o: the one of symbol
 * version version, or with version NULL the default one (the one an
 * unversioned reference binds to).  NULL if there is none.
 */
__attribute__((visibility("hidden")))
const ElfW(Sym) *elf_lookup(const struct elf_obj *o, const char *name, uint32_t h,
			    const char *version);

#endif
