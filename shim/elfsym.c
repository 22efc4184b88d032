/*
 * elfsym.c - the loaded objects' dynamic symbols, looked up through their GNU
 * hash tables (see elfsym.h).  Everything here only reads memory the loader
 * mapped; nothing allocates, so it may run in a constructor before anything
 * else is ready.
 */
#define _GNU_SOURCE
#include <link.h>
#include <string.h>

#include "elfsym.h"

struct elf_walk {
	struct elf_obj *v;
	int max, n;
};

/* ld.so relocates these entries in place, except for the vDSO's: take both. */
static uintptr_t elf_ptr(uintptr_t base, ElfW(Addr) v)
{
	return v < base ? base + v : v;
}

static int elf_note(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct elf_walk *w = arg;
	struct elf_obj *o;
	const ElfW(Dyn) *d = NULL;
	ElfW(Half) i;

	(void)size;
	if (w->n == w->max) {
		w->n = -1;
		return 1;
	}
	o = &w->v[w->n++];
	memset(o, 0, sizeof(*o));
	o->name = info->dlpi_name ? info->dlpi_name : "";
	o->base = info->dlpi_addr;
	o->lo = UINTPTR_MAX;
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];

		if (p->p_type == PT_DYNAMIC)
			d = (const ElfW(Dyn) *)(o->base + p->p_vaddr);
		if (p->p_type == PT_GNU_RELRO) {
			o->relro_lo = o->base + p->p_vaddr;
			o->relro_hi = o->relro_lo + p->p_memsz;
		}
		if (p->p_type != PT_LOAD)
			continue;
		if (o->base + p->p_vaddr < o->lo)
			o->lo = o->base + p->p_vaddr;
		if (o->base + p->p_vaddr + p->p_memsz > o->hi)
			o->hi = o->base + p->p_vaddr + p->p_memsz;
	}
	for (; d && d->d_tag != DT_NULL; d++)
		switch (d->d_tag) {
		case DT_SYMTAB:
			o->sym = (const ElfW(Sym) *)elf_ptr(o->base, d->d_un.d_ptr);
			break;
		case DT_STRTAB:
			o->str = (const char *)elf_ptr(o->base, d->d_un.d_ptr);
			break;
		case DT_GNU_HASH:
			o->gnu = (const uint32_t *)elf_ptr(o->base, d->d_un.d_ptr);
			break;
		case DT_VERSYM:
			o->versym = (const ElfW(Half) *)elf_ptr(o->base, d->d_un.d_ptr);
			break;
		case DT_VERDEF:
			o->verdef = (const ElfW(Verdef) *)elf_ptr(o->base, d->d_un.d_ptr);
			break;
		}
	if (!o->sym || !o->str)
		o->gnu = NULL;
	return 0;
}

int elf_objects(struct elf_obj *v, int max)
{
	struct elf_walk w = { v, max, 0 };

	dl_iterate_phdr(elf_note, &w);
	return w.n;
}

int elf_find(const struct elf_obj *v, int n, const void *addr)
{
	int i;

	for (i = 0; i < n; i++)
		if ((uintptr_t)addr >= v[i].lo && (uintptr_t)addr < v[i].hi)
			return i;
	return -1;
}

uint32_t elf_hash(const char *name)
{
	const unsigned char *c = (const unsigned char *)name;
	uint32_t h = 5381;

	for (; *c; c++)
		h = h * 33 + *c;
	return h;
}

/* Whether version index ndx of o is named version. */
static bool elf_version_is(const struct elf_obj *o, ElfW(Half) ndx, const char *version)
{
	const ElfW(Verdef) *vd = o->verdef;

	while (vd) {
		if (vd->vd_ndx == ndx) {
			const ElfW(Verdaux) *a = (const void *)((const char *)vd + vd->vd_aux);

			return !strcmp(o->str + a->vda_name, version);
		}
		if (!vd->vd_next)
			break;
		vd = (const void *)((const char *)vd + vd->vd_next);
	}
	return false;
}

const ElfW(Sym) *elf_lookup(const struct elf_obj *o, const char *name, uint32_t h,
			    const char *version)
{
	const uint32_t nbucket = o->gnu ? o->gnu[0] : 0, symoff = o->gnu ? o->gnu[1] : 0;
	const uint32_t nbloom = o->gnu ? o->gnu[2] : 0, shift = o->gnu ? o->gnu[3] : 0;
	const ElfW(Addr) *bloom;
	const uint32_t *bucket, *chain;
	const unsigned bits = sizeof(ElfW(Addr)) * 8;
	ElfW(Addr) word;
	uint32_t i;

	if (!nbucket || !nbloom)
		return NULL;
	bloom = (const ElfW(Addr) *)(o->gnu + 4);
	word = bloom[(h / bits) & (nbloom - 1)];
	if (!((word >> (h % bits)) & (word >> ((h >> shift) % bits)) & 1))
		return NULL;
	bucket = (const uint32_t *)(bloom + nbloom);
	chain = bucket + nbucket;
	i = bucket[h % nbucket];
	if (i < symoff)
		return NULL;
	for (;; i++) {
		const ElfW(Sym) *s = &o->sym[i];
		uint32_t c = chain[i - symoff];

		if ((c | 1) == (h | 1) && s->st_shndx != SHN_UNDEF &&
		    ELF_ST_BIND(s->st_info) != STB_LOCAL && !strcmp(o->str + s->st_name, name)) {
			ElfW(Half) vs = o->versym ? o->versym[i] : 1;

			if (version ? elf_version_is(o, vs & 0x7fff, version) : !(vs & 0x8000))
				return s;
		}
		if (c & 1)
			return NULL;
	}
}
