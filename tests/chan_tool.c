/*
 * chan_tool - move bytes between standard I/O and an ipcd channel over the
 * mmap fast path (the C API), for the tests and the README demo.
 *
 *   chan_tool send PATH [BLOCK]     copy stdin into the channel
 *   chan_tool recv PATH [BLOCK]     copy the channel to stdout until EOF
 *   chan_tool peek-recv PATH [BLOCK]
 *                                   the same, written to stdout straight from
 *                                   ring memory (ipcd_peek, ipcd_consume), at
 *                                   most BLOCK bytes a time; a message
 *                                   channel's messages one per line
 *   chan_tool sendmsg PATH MSG...   send each argument as one message
 *   chan_tool recvmsg PATH N        print N messages, one per line
 *   chan_tool mkchan PATH [stream|message] [CAPACITY]
 *   chan_tool seqsend PATH ID COUNT
 *                                   COUNT lines "ID SEQ", padded with dots to
 *                                   32 bytes, one write each (seq from 0)
 *   chan_tool wait-readers PATH N   wait until N readers have it open
 *   chan_tool gen BYTES [SEED]      write a deterministic pseudo-random stream
 *   chan_tool count-send PATH BLOCK stdin into the channel, printing the bytes
 *                                   sent so far to stderr after each send
 *
 * With CHAN_SIDE=1 in the environment, the tool takes side 1 of a duplex
 * channel.  Exit status: 0 done, 1 error (message on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "ipcd.h"

static int side_flag(void)
{
	const char *s = getenv("CHAN_SIDE");

	return s && !strcmp(s, "1") ? IPCD_SIDE1 : 0;
}

static int fail(const char *what, const char *path, int err)
{
	fprintf(stderr, "chan_tool: %s %s: %s\n", what, path, strerror(err));
	return 1;
}

static int do_send(const char *path, size_t block, int report)
{
	struct ipcd_chan *c;
	char *buf = malloc(block);
	unsigned long long total = 0;
	ssize_t n, w;
	int r = ipcd_open(path, O_WRONLY | side_flag(), &c);

	if (r)
		return fail("open", path, -r);
	while ((n = read(0, buf, block)) > 0) {
		/* A send cut short (a signal, the reader gone) says why at the
		 * next one, as write(2) does. */
		for (ssize_t done = 0; done < n; done += w) {
			w = ipcd_send(c, buf + done, (size_t)(n - done), 0);
			if (w <= 0) {
				ipcd_close(c);
				return fail("send", path, w < 0 ? (int)-w : EIO);
			}
			total += (unsigned long long)w;
			if (report)
				fprintf(stderr, "%llu\n", total);
		}
	}
	ipcd_close(c);
	free(buf);
	return n < 0 ? fail("read", "stdin", errno) : 0;
}

static int write_all(const char *p, size_t n)
{
	ssize_t w;

	while (n) {
		w = write(1, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int do_recv(const char *path, size_t block)
{
	struct ipcd_chan *c;
	char *buf = malloc(block);
	ssize_t n;
	int r = ipcd_open(path, O_RDONLY | side_flag(), &c);

	if (r)
		return fail("open", path, -r);
	while ((n = ipcd_recv(c, buf, block, 0)) > 0)
		if (write_all(buf, (size_t)n))
			return fail("write", "stdout", errno);
	ipcd_close(c);
	free(buf);
	return n < 0 ? fail("recv", path, (int)-n) : 0;
}

static int do_peek_recv(const char *path, size_t block)
{
	struct ipcd_chan *c;
	struct iovec iov[3];
	size_t n, i;
	ssize_t w;
	int msg, r = ipcd_open(path, O_RDONLY | side_flag(), &c);

	if (r)
		return fail("open", path, -r);
	msg = ipcd_is_message(c);
	while ((r = ipcd_peek(c, iov, 0)) > 0) {
		/* At most block bytes of what is shown, as it lies in the ring. */
		for (n = 0, i = 0; i < 2; i++) {
			if (!msg && iov[i].iov_len > block - n)
				iov[i].iov_len = block - n;
			n += iov[i].iov_len;
		}
		iov[2].iov_base = "\n";
		iov[2].iov_len = msg ? 1 : 0;
		w = writev(1, iov, 3);
		if (w != (ssize_t)(n + iov[2].iov_len))
			return fail("write", "stdout", w < 0 ? errno : EIO);
		r = ipcd_consume(c, msg ? 1 : n);
		if (r)
			return fail("consume", path, -r);
	}
	ipcd_close(c);
	return r < 0 ? fail("peek", path, -r) : 0;
}

static int do_seqsend(const char *path, const char *id, long count)
{
	struct ipcd_chan *c;
	char line[33];
	ssize_t w;
	long i;
	int r = ipcd_open(path, O_WRONLY | side_flag(), &c);

	if (r)
		return fail("open", path, -r);
	for (i = 0; i < count; i++) {
		int n = snprintf(line, sizeof(line), "%s %ld ", id, i);

		if (n < 0 || n > 31)
			return fail("seqsend", "line", EINVAL);
		memset(line + n, '.', (size_t)(31 - n));
		line[31] = '\n';
		w = ipcd_send(c, line, 32, 0);
		if (w != 32)
			return fail("send", path, w < 0 ? (int)-w : EIO);
	}
	ipcd_close(c);
	return 0;
}

static int do_sendmsg(const char *path, int argc, char **argv)
{
	struct ipcd_chan *c;
	ssize_t w;
	int i, r = ipcd_open(path, O_WRONLY | side_flag(), &c);

	if (r)
		return fail("open", path, -r);
	for (i = 0; i < argc; i++) {
		w = ipcd_send(c, argv[i], strlen(argv[i]), 0);
		if (w != (ssize_t)strlen(argv[i]))
			return fail("send", path, w < 0 ? (int)-w : EIO);
	}
	ipcd_close(c);
	return 0;
}

static int do_recvmsg(const char *path, long count)
{
	struct ipcd_chan *c;
	char buf[65536];
	ssize_t n;
	int r = ipcd_open(path, O_RDONLY | side_flag(), &c);

	if (r)
		return fail("open", path, -r);
	while (count-- > 0) {
		n = ipcd_recv(c, buf, sizeof(buf), 0);
		if (n < 0)
			return fail("recv", path, (int)-n);
		printf("%.*s\n", (int)n, buf);
	}
	ipcd_close(c);
	return 0;
}

static int do_wait_readers(const char *path, unsigned want)
{
	char info[512], *p;
	unsigned readers;
	ssize_t n;
	int i;

	for (i = 0; i < 2000; i++) {
		n = getxattr(path, IPCD_XATTR_INFO, info, sizeof(info) - 1);
		if (n < 0)
			return fail("getxattr", path, errno);
		info[n] = 0;
		p = strstr(info, "readers=");
		if (p && sscanf(p, "readers=%u", &readers) == 1 && readers >= want)
			return 0;
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
	fprintf(stderr, "chan_tool: %s: no %u readers after 10 s\n", path, want);
	return 1;
}

static int do_gen(unsigned long long bytes, uint64_t seed)
{
	uint64_t buf[8192];
	size_t i, n;

	seed = seed * 0x9e3779b97f4a7c15ull + 1;
	while (bytes) {
		for (i = 0; i < 8192; i++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			buf[i] = seed;
		}
		n = bytes < sizeof(buf) ? (size_t)bytes : sizeof(buf);
		if (write_all((const char *)buf, n))
			return fail("write", "stdout", errno);
		bytes -= n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	size_t block = 65536;
	int r;

	if (argc > 3 && (!strcmp(argv[1], "send") || !strcmp(argv[1], "recv") ||
			 !strcmp(argv[1], "peek-recv") || !strcmp(argv[1], "count-send")))
		block = strtoul(argv[3], NULL, 0);
	if (argc < 3 || block == 0) {
		fprintf(stderr, "usage: chan_tool send|recv|sendmsg|recvmsg|mkchan|"
			"wait-readers PATH ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "send"))
		return do_send(argv[2], block, 0);
	if (!strcmp(argv[1], "count-send"))
		return do_send(argv[2], block, 1);
	if (!strcmp(argv[1], "gen"))
		return do_gen(strtoull(argv[2], NULL, 0),
			      argc > 3 ? strtoull(argv[3], NULL, 0) : 1);
	if (!strcmp(argv[1], "recv"))
		return do_recv(argv[2], block);
	if (!strcmp(argv[1], "seqsend") && argc > 4)
		return do_seqsend(argv[2], argv[3], atol(argv[4]));
	if (!strcmp(argv[1], "peek-recv"))
		return do_peek_recv(argv[2], block);
	if (!strcmp(argv[1], "sendmsg"))
		return do_sendmsg(argv[2], argc - 3, argv + 3);
	if (!strcmp(argv[1], "recvmsg"))
		return do_recvmsg(argv[2], argc > 3 ? atol(argv[3]) : 1);
	if (!strcmp(argv[1], "wait-readers"))
		return do_wait_readers(argv[2], argc > 3 ? (unsigned)atoi(argv[3]) : 1);
	if (!strcmp(argv[1], "mkchan")) {
		r = ipcd_mkchan(argv[2], 0666,
				argc <= 3 ? 0 :
				!strcmp(argv[3], "message") ? IPCD_MESSAGE :
				!strcmp(argv[3], "duplex-stream") ? IPCD_DUPLEX :
				!strcmp(argv[3], "duplex-message") ? IPCD_DUPLEX | IPCD_MESSAGE : 0,
				argc > 4 ? strtoul(argv[4], NULL, 0) : 0);
		return r ? fail("mkchan", argv[2], -r) : 0;
	}
	fprintf(stderr, "chan_tool: unknown command %s\n", argv[1]);
	return 2;
}
