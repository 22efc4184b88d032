/*
 * coordtest.h - what check_coord.c and check_shared.c share: records that
 * carry their writer, sequence and a check of both, and a thread id that
 * no thread has any more.
 */
#ifndef IPCD_COORDTEST_H
#define IPCD_COORDTEST_H

#include <check.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A thread id that is no thread's any more. */
static inline uint32_t dead_tid(void)
{
	pid_t p = fork();
	int st;

	ck_assert_int_ge(p, 0);
	if (p == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(p, &st, 0), p);
	return (uint32_t)p;
}

/* A record: writer, sequence, a check of both, padding to len. */
struct rec {
	uint32_t writer, seq, check, len;
};

static inline void make_rec(unsigned char *buf, size_t len, uint32_t writer, uint32_t seq)
{
	struct rec r = { writer, seq, writer * 2654435761u ^ seq * 40503u, (uint32_t)len };
	size_t i;

	memcpy(buf, &r, sizeof(r));
	for (i = sizeof(r); i < len; i++)
		buf[i] = (unsigned char)(seq + i);
}

/* Whether buf holds one whole record of len bytes (then *out). */
static inline int check_rec(const unsigned char *buf, size_t len, struct rec *out)
{
	struct rec r;
	size_t i;

	if (len < sizeof(r))
		return 0;
	memcpy(&r, buf, sizeof(r));
	if (r.check != (r.writer * 2654435761u ^ r.seq * 40503u) || r.len != len)
		return 0;
	for (i = sizeof(r); i < len; i++)
		if (buf[i] != (unsigned char)(r.seq + i))
			return 0;
	*out = r;
	return 1;
}

#endif /* IPCD_COORDTEST_H */
