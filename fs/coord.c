/*
 * coord.c - the coordination core: one daemon thread that watches the rings
 * whose slow-path readers, writers or pollers wait, and answers them when a
 * fast-path peer moves data.  The daemon counts itself as a sleeper in those
 * rings, so peers wake it with the same futex wake they would give any
 * sleeping reader or writer; it sleeps on all those words at once with
 * futex_waitv, and burns no CPU while nothing moves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"

#define WAITV_MAX	128	/* FUTEX_WAITV_MAX */

void coord_watch(struct chan *ch)
{
	if (ch->watched)
		return;
	ch->watched = true;
	cds_list_add_tail(&ch->watch, &ipcd->watched);
}

/* Stop watching and stop counting as a sleeper (under mu). */
void coord_unwatch(struct chan *ch)
{
	struct rstate *rs;
	unsigned i;

	for (i = 0; i < ch->nrings; i++) {
		rs = &ch->rs[i];
		if (ch->map && rs->want_data)
			atomic_fetch_sub(&rs->v.r->rd_sleepers, 1);
		if (ch->map && rs->want_space)
			atomic_fetch_sub(&rs->v.r->wr_sleepers, 1);
		rs->want_data = rs->want_space = false;
	}
	if (!ch->watched)
		return;
	ch->watched = false;
	cds_list_del_init(&ch->watch);
}

void coord_kick(struct ipcd_fs *fs)
{
	atomic_fetch_add(&fs->kick, 1);
	syscall(SYS_futex, &fs->kick, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void add_wait(struct futex_waitv *w, unsigned *n, _Atomic uint32_t *word,
		     unsigned flags)
{
	if (*n >= WAITV_MAX)
		return;
	w[*n].val = atomic_load(word);
	w[*n].uaddr = (uintptr_t)word;
	w[*n].flags = FUTEX_32 | flags;
	w[*n].__reserved = 0;
	(*n)++;
}

/* CPU time of the calling thread. */
static uint64_t thread_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *coord_main(void *arg)
{
	struct ipcd_fs *fs = arg;
	struct futex_waitv *w = calloc(WAITV_MAX, sizeof(*w));
	struct chan *ch, *tmp;
	struct timespec deadline;
	unsigned n, watched, i;
	uint64_t t0;
	long ms;
	bool busy, again, sliced, wd[2], ws[2];

	if (!w)
		return NULL;
	rcu_register_thread();
	for (;;) {
		n = 0;
		watched = 0;
		busy = again = false;
		pthread_mutex_lock(&fs->mu);
		if (fs->stop) {
			pthread_mutex_unlock(&fs->mu);
			break;
		}
		/* Take each word's value before looking at the ring: a move after
		 * the look changes the word and the wait returns at once. */
		add_wait(w, &n, &fs->kick, FUTEX_PRIVATE_FLAG);
		cds_list_for_each_entry_safe(ch, tmp, &fs->watched, watch) {
			for (i = 0; i < ch->nrings; i++) {
				wd[i] = ch->rs[i].want_data;
				ws[i] = ch->rs[i].want_space;
				if (wd[i])
					add_wait(w, &n, &ch->rs[i].v.r->data_seq, 0);
				if (ws[i])
					add_wait(w, &n, &ch->rs[i].v.r->space_seq, 0);
			}
			t0 = thread_ns();
			chan_progress(ch);
			ch->core_ns += thread_ns() - t0;
			busy |= chan_busy(ch);
			/* A word we did not take: go round before sleeping. */
			for (i = 0; i < ch->nrings; i++)
				again |= (ch->rs[i].want_data && !wd[i]) ||
					 (ch->rs[i].want_space && !ws[i]);
			watched++;
		}
		sliced = fs->sliced;
		pthread_mutex_unlock(&fs->mu);
		atomic_store_explicit(&fs->core_ns, thread_ns(), memory_order_relaxed);

		/* A lock held by a peer, or more rings than one wait can take:
		 * look again soon.  Otherwise sleep; the long timeout only
		 * guards against a peer that zeroed the sleeper counts. */
		if (again)
			continue;
		if (watched == 0) {
			syscall(SYS_futex_waitv, w, n, 0, NULL, CLOCK_MONOTONIC);
			continue;
		}
		ms = busy ? 2 : (n >= WAITV_MAX || sliced) ? 10 : 1000;
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_nsec += (ms % 1000) * 1000000L;
		deadline.tv_sec += ms / 1000 + deadline.tv_nsec / 1000000000L;
		deadline.tv_nsec %= 1000000000L;
		syscall(SYS_futex_waitv, w, n, 0, &deadline, CLOCK_MONOTONIC);
	}
	rcu_unregister_thread();
	free(w);
	return NULL;
}

int coord_start(struct ipcd_fs *fs)
{
	return -pthread_create(&fs->coord, NULL, coord_main, fs);
}

void coord_stop(struct ipcd_fs *fs)
{
	pthread_mutex_lock(&fs->mu);
	fs->stop = true;
	pthread_mutex_unlock(&fs->mu);
	coord_kick(fs);
	pthread_join(fs->coord, NULL);
}
