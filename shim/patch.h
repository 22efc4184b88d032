/*
 * patch.h - redirecting the entry of a few known libc functions, so that
 * libc's own internal calls (stdio's __write, __read_nocancel, ...) reach the
 * shim too.  See patch.c for how, and on which builds.
 */
#ifndef IPCD_PATCH_H
#define IPCD_PATCH_H

#include <stddef.h>

/* One function to redirect. */
struct patch_site {
	const char *name;	/* libc dynamic symbol: "write", "__write_nocancel", ... */
	const char *version;	/* its symbol version ("GLIBC_2.15"), or NULL for the
				 * one patch.c knows (the default version) */
	void *handler;		/* the replacement, with the function's prototype */
	void **orig;		/* out: points to a function pointer of that prototype,
				 * set to code with the original behaviour, which never
				 * enters the handler */
};

/* At most this many sites per call. */
#define PATCH_MAX 32

/*
 * Redirect every site's libc function to its handler, or none of them.
 * Returns 0, or -errno: -ENOTSUP on another architecture, libc build or
 * function body than patch.c knows (or libc not found), -EINVAL for a bad
 * site list (NULL fields, two sites on one body, more than PATCH_MAX),
 * -ENOMEM (no trampoline page near libc), mprotect's error, or -EBUSY if the
 * code changed while being patched.  On failure nothing was changed, *orig
 * included.  A function already patched no longer matches: -ENOTSUP.  Meant
 * to run once; threads may be running meanwhile, as each entry changes with
 * one atomic write of an aligned word.
 */
__attribute__((visibility("hidden")))
int patch_apply(struct patch_site *sites, size_t n);

/* Why the last patch_apply failed, in a few words (a static string), for logs. */
__attribute__((visibility("hidden")))
const char *patch_error(void);

#endif
