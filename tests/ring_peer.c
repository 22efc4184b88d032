/*
 * ring_peer - a misbehaving peer for the fault tests: it maps a channel's
 * ring directly and damages it or sits on its lock.
 *
 *   ring_peer scribble PATH ROUNDS SEED   write random bytes over the headers
 *                                         and data, ROUNDS times
 *   ring_peer hold-lock PATH              take the producer lock, say
 *                                         "locked", and sleep until killed
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipcd/ring.h"

static unsigned char *map_chan(const char *path, size_t *len)
{
	struct ipcd_fileinfo fi;
	void *m;
	int fd = open(path, O_RDWR);

	/* A channel's size is 0: the daemon says how much to map. */
	if (fd < 0 || ioctl(fd, IPCD_IOC_GETINFO, &fi) < 0) {
		perror(path);
		exit(1);
	}
	*len = (size_t)fi.map_pages * 4096;
	m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	/* The fd stays open: a mapping alone does not count as an opener. */
	return m;
}

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(int argc, char **argv)
{
	unsigned char *m;
	struct ipcd_ring *r;
	size_t len, off;
	uint64_t seed;
	long i, rounds;

	if (argc < 3) {
		fprintf(stderr, "usage: ring_peer scribble|hold-lock PATH ...\n");
		return 2;
	}
	m = map_chan(argv[2], &len);
	/* The ring of role 0, where the directory says it is; where the
	 * daemon puts it if an earlier scribble damaged the directory. */
	{
		const struct ipcd_map *d = (const struct ipcd_map *)m;
		const struct ipcd_ring_desc *e;
		uint64_t at = IPCD_MAP_RING_SLOT;

		if (len < IPCD_MAP_HDR_SIZE) {
			fprintf(stderr, "ring_peer: %s: mapping too short\n", argv[2]);
			return 1;
		}
		if (d->magic == IPCD_RING_MAGIC && d->desc_off % 8 == 0 &&
		    d->desc_off <= IPCD_MAP_HDR_SIZE - sizeof(*e)) {
			e = (const struct ipcd_ring_desc *)(m + d->desc_off);
			if (e->hdr_off % 64 == 0 &&
			    e->hdr_off <= IPCD_MAP_HDR_SIZE - sizeof(*r))
				at = e->hdr_off;
		}
		r = (struct ipcd_ring *)(m + at);
	}
	if (!strcmp(argv[1], "scribble") && argc >= 5) {
		rounds = atol(argv[3]);
		seed = strtoull(argv[4], NULL, 0) | 1;
		for (i = 0; i < rounds; i++) {
			/* Mostly the ring header's live words, sometimes the
			 * directory, sometimes anywhere. */
			switch (rng(&seed) % 8) {
			case 0:
				off = rng(&seed) % len;
				break;
			case 1:
				off = rng(&seed) % IPCD_MAP_RING_SLOT;
				break;
			default:
				off = (size_t)((unsigned char *)r - m) +
				      rng(&seed) % sizeof(struct ipcd_ring);
			}
			m[off] = (unsigned char)rng(&seed);
			if (i % 64 == 0)
				usleep(100);
		}
		return 0;
	}
	if (!strcmp(argv[1], "hold-lock")) {
		uint32_t expect = 0, tid = (uint32_t)syscall(SYS_gettid);

		while (!atomic_compare_exchange_weak(&r->wlock, &expect, tid)) {
			expect = 0;
			usleep(1000);
		}
		printf("locked\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	fprintf(stderr, "ring_peer: bad command\n");
	return 2;
}
